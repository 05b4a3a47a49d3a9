//! The plugin's state on the host: a cache directory (mode 0700, files
//! 0600) holding
//!
//! - `lock/<pci>.lock`: one flock per VF, taken with a timeout by every
//!   operation that touches the VF;
//! - `alloc/<pci>`: the allocation record (owning container, interface,
//!   netns, network), present while the VF is attached;
//! - `state/<containerID>:<ifname>.json`: the attachment record: the
//!   validated configuration, the stdin document (for IPAM DEL), the mode,
//!   and the VF's original state. It is written *before* ADD changes
//!   anything, so a DEL after an ADD killed half way still knows what to
//!   restore.
//!
//! Container IDs and interface names are checked before they become file
//! names (the CNI spec's character rules; `:` separates the two and
//! appears in neither), so no input reaches outside the directory.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use pollux_core::MacAddr;
use pollux_pci::PciAddr;
use pollux_sriov::netlink::VfState;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Conf;
use crate::{Error, Result};

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// A container ID as the CNI spec allows it: alphanumerics, then
/// alphanumerics, `_`, `.` and `-`.
pub fn check_container_id(id: &str) -> Result<()> {
    let mut chars = id.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && id.len() <= 1024;
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidEnv(format!(
            "CNI_CONTAINERID {id:?} invalid: must start with a letter or digit, then letters, digits, '_', '.', '-'"
        )))
    }
}

/// An interface name as the CNI spec and Linux allow it: 1-15 bytes, not
/// `.` or `..`, no `/`, `:` or whitespace.
pub fn check_ifname(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c == '\0');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidEnv(format!(
            "CNI_IFNAME {name:?} invalid: 1-15 characters, not . or .., no '/', ':' or whitespace"
        )))
    }
}

/// How the VF is handed to the pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum Mode {
    /// Bound to a userspace driver on the host; nothing moves.
    Dpdk { driver: String },
    /// A kernel netdev, moved into the pod's namespace.
    Netdev { host_ifname: String },
}

/// A netdev's own state, for netdevice mode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkOrig {
    pub name: String,
    pub mac: Option<MacAddr>,
    pub mtu: Option<u32>,
    pub up: bool,
}

/// Where an ADD got to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Record written, changes under way (or interrupted).
    Adding,
    /// ADD completed.
    Added,
}

/// The attachment record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub network: String,
    pub container_id: String,
    pub ifname: String,
    pub netns: String,
    pub conf: Conf,
    /// The stdin document of ADD, re-used for IPAM DEL/CHECK.
    pub stdin: Value,
    pub mode: Mode,
    pub pf: PciAddr,
    pub pf_ifname: String,
    pub vf_index: u32,
    pub orig_vf: VfState,
    pub orig_link: Option<LinkOrig>,
    pub phase: Phase,
    /// The ADD result, once there is one.
    pub result: Option<Value>,
}

/// The allocation record of a VF.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alloc {
    pub container_id: String,
    pub ifname: String,
    pub netns: String,
    pub network: String,
}

/// The cache directory.
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

/// A held VF lock; released on drop.
#[derive(Debug)]
pub struct VfLock {
    _file: File,
}

impl Cache {
    /// Opens (creating as needed) the cache directory and its
    /// subdirectories with mode 0700; tightens a looser existing mode.
    pub fn open(root: &Path) -> Result<Self> {
        for d in [
            root.to_owned(),
            root.join("lock"),
            root.join("alloc"),
            root.join("state"),
        ] {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&d)
                .map_err(io_err("creating cache directory", &d))?;
            let meta =
                fs::symlink_metadata(&d).map_err(io_err("inspecting cache directory", &d))?;
            if !meta.is_dir() {
                return Err(Error::Io {
                    op: "cache path is not a directory:",
                    path: d,
                    source: io::Error::from(io::ErrorKind::AlreadyExists),
                });
            }
            if meta.permissions().mode() & 0o777 != 0o700 {
                fs::set_permissions(&d, fs::Permissions::from_mode(0o700))
                    .map_err(io_err("setting mode 0700 on", &d))?;
            }
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of allocation records (what `pollux vf create` consults).
    pub fn alloc_dir(&self) -> PathBuf {
        self.root.join("alloc")
    }

    /// Takes the VF's lock, waiting at most `timeout`.
    pub fn lock_vf(&self, vf: PciAddr, timeout: Duration) -> Result<VfLock> {
        let path = self.root.join("lock").join(format!("{vf}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err("opening lock file", &path))?;
        let deadline = Instant::now() + timeout;
        loop {
            // SAFETY: the fd belongs to `file`, open for the whole call;
            // flock has no memory arguments.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(VfLock { _file: file });
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) && e.kind() != io::ErrorKind::Interrupted
            {
                return Err(Error::Io {
                    op: "locking",
                    path,
                    source: e,
                });
            }
            if Instant::now() >= deadline {
                return Err(Error::Locked {
                    vf: vf.to_string(),
                    timeout,
                });
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn alloc_path(&self, vf: PciAddr) -> PathBuf {
        self.root.join("alloc").join(vf.to_string())
    }

    /// The state record path of an attachment; checks both parts.
    pub fn state_path(&self, container_id: &str, ifname: &str) -> Result<PathBuf> {
        check_container_id(container_id)?;
        check_ifname(ifname)?;
        let p = self
            .root
            .join("state")
            .join(format!("{container_id}:{ifname}.json"));
        debug_assert_eq!(p.parent(), Some(self.root.join("state").as_path()));
        Ok(p)
    }

    pub fn read_alloc(&self, vf: PciAddr) -> Result<Option<Alloc>> {
        read_json(&self.alloc_path(vf))
    }

    pub fn write_alloc(&self, vf: PciAddr, a: &Alloc) -> Result<()> {
        write_json(&self.alloc_path(vf), a)
    }

    pub fn remove_alloc(&self, vf: PciAddr) -> Result<()> {
        remove(&self.alloc_path(vf))
    }

    /// Every allocation record, by VF.
    pub fn allocs(&self) -> Result<Vec<(PciAddr, Alloc)>> {
        let dir = self.alloc_dir();
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err("listing", &dir))? {
            let e = e.map_err(io_err("listing", &dir))?;
            let Some(vf) = e
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<PciAddr>().ok())
            else {
                continue;
            };
            if let Some(a) = read_json::<Alloc>(&e.path())? {
                out.push((vf, a));
            }
        }
        Ok(out)
    }

    pub fn read_state(&self, container_id: &str, ifname: &str) -> Result<Option<Record>> {
        read_json(&self.state_path(container_id, ifname)?)
    }

    pub fn write_state(&self, r: &Record) -> Result<()> {
        write_json(&self.state_path(&r.container_id, &r.ifname)?, r)
    }

    pub fn remove_state(&self, container_id: &str, ifname: &str) -> Result<()> {
        remove(&self.state_path(container_id, ifname)?)
    }

    /// Every attachment record; unreadable ones are returned as errors
    /// alongside, so GC can go on with the rest.
    pub fn states(&self) -> Result<(Vec<Record>, Vec<Error>)> {
        let dir = self.root.join("state");
        let mut recs = Vec::new();
        let mut errs = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err("listing", &dir))? {
            let e = e.map_err(io_err("listing", &dir))?;
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            match read_json::<Record>(&p) {
                Ok(Some(r)) => recs.push(r),
                Ok(None) => {}
                Err(err) => errs.push(err),
            }
        }
        recs.sort_by(|a, b| (&a.container_id, &a.ifname).cmp(&(&b.container_id, &b.ifname)));
        Ok((recs, errs))
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| Error::Io {
            op: "decoding cached",
            path: path.to_owned(),
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("reading", path)(e)),
    }
}

/// Writes through a temporary file, fsync and rename, so a reader (or a
/// DEL after kill -9) sees the old or the new record, never half of one.
fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(v).map_err(|e| Error::Io {
        op: "encoding",
        path: path.to_owned(),
        source: io::Error::new(io::ErrorKind::InvalidData, e),
    })?;
    // Appended, not an extension swap: PCI addresses contain dots.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp.{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err("creating", &tmp))?;
    f.write_all(&bytes)
        .and_then(|_| f.sync_all())
        .map_err(io_err("writing", &tmp))?;
    fs::rename(&tmp, path).map_err(io_err("renaming into place", path))?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("removing", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_modes() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("cache");
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        let c = Cache::open(&root).unwrap();
        for d in ["", "lock", "alloc", "state"] {
            let m = fs::metadata(root.join(d)).unwrap().permissions().mode() & 0o777;
            assert_eq!(m, 0o700, "{d}");
        }
        let vf: PciAddr = "0000:00:10.0".parse().unwrap();
        let a = Alloc {
            container_id: "c1".into(),
            ifname: "net1".into(),
            netns: "/run/netns/x".into(),
            network: "n".into(),
        };
        c.write_alloc(vf, &a).unwrap();
        let m = fs::metadata(root.join("alloc/0000:00:10.0"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(m, 0o600);
        assert_eq!(c.read_alloc(vf).unwrap(), Some(a));
        c.remove_alloc(vf).unwrap();
        c.remove_alloc(vf).unwrap();
        assert_eq!(c.read_alloc(vf).unwrap(), None);
        // A file where the cache directory should be.
        let f = t.path().join("file");
        fs::write(&f, "").unwrap();
        assert!(Cache::open(&f).is_err());
    }

    #[test]
    fn names_cannot_escape() {
        let t = tempfile::tempdir().unwrap();
        let c = Cache::open(t.path()).unwrap();
        for bad in [
            "", "../x", "a/b", ".hidden", "-x", "a:b", "a b", "..", "x\0",
        ] {
            let e = c.state_path(bad, "net1").unwrap_err();
            assert_eq!(e.code(), 4, "{bad:?}");
        }
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "sixteen-chars-xx"] {
            let e = c.state_path("c1", bad).unwrap_err();
            assert_eq!(e.code(), 4, "{bad:?}");
        }
        let p = c.state_path("abc_1.2-3", "net1").unwrap();
        assert_eq!(p, t.path().join("state/abc_1.2-3:net1.json"));
    }

    #[test]
    fn lock_times_out_while_held_and_frees_on_drop() {
        let t = tempfile::tempdir().unwrap();
        let c = Cache::open(t.path()).unwrap();
        let vf: PciAddr = "0000:00:10.0".parse().unwrap();
        let held = c.lock_vf(vf, Duration::from_secs(1)).unwrap();
        let start = Instant::now();
        let e = c.lock_vf(vf, Duration::from_millis(100)).unwrap_err();
        assert_eq!(e.code(), 11, "{e}");
        assert!(start.elapsed() >= Duration::from_millis(100));
        drop(held);
        c.lock_vf(vf, Duration::from_millis(100)).unwrap();
    }

    #[test]
    fn corrupt_records_are_errors() {
        let t = tempfile::tempdir().unwrap();
        let c = Cache::open(t.path()).unwrap();
        fs::write(t.path().join("state/c1:net1.json"), "{not json").unwrap();
        assert!(c.read_state("c1", "net1").is_err());
        let (recs, errs) = c.states().unwrap();
        assert!(recs.is_empty());
        assert_eq!(errs.len(), 1);
    }
}
