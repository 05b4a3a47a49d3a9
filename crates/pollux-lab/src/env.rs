//! Where the lab's parts live on the host, and how to override them.
//!
//! | part | default | override |
//! | --- | --- | --- |
//! | cache folder | `$XDG_CACHE_HOME/pollux-lab` or `~/.cache/pollux-lab` | `POLLUX_LAB_CACHE` |
//! | QEMU (>= 10.1: igb, virtio-net `sriov-pf`, `vfio-user-pci`) | `<cache>/qemu/qemu-system-x86_64`: Debian trixie-backports' QEMU 11 in a trixie tree, run through that tree's own loader | `POLLUX_LAB_QEMU` (path to the binary) |
//! | guest kernel | newest `<cache>/kernel/<release>/boot/vmlinuz-<release>` | `POLLUX_LAB_KERNEL` (path to a bzImage/vmlinuz) |
//! | virtme-ng | `<cache>/venv/bin/vng` | `POLLUX_LAB_VNG` |
//! | guest agent | `pollux-lab-agent` next to the running test or xtask binary | `POLLUX_LAB_AGENT` |
//! | host build output | the workspace's `target/` | `CARGO_TARGET_DIR` |
//!
//! A kernel given with `POLLUX_LAB_KERNEL` needs its modules in
//! `<root>/lib/modules/<release>` where `<root>` is the nearest ancestor of
//! the image that has a `lib/modules` folder (the layout `dpkg-deb -x` of a
//! Debian `linux-image-*` package produces), with `modules.dep` made by
//! `depmod -b <root> <release>`. It also needs `CONFIG_PCI_IOV`, `CONFIG_INTEL_IOMMU`,
//! and the igb, vfio-pci and virtio_net drivers (as modules or built in).
//!
//! `cargo xtask setup` installs the defaults.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// The oldest QEMU the lab runs: 10.1 added virtio-net SR-IOV (`sriov-pf`)
/// and the vfio-user client (`-device vfio-user-pci`); igb came in 8.0.
pub const MIN_QEMU: (u32, u32) = (10, 1);

/// Name of the guest agent binary.
pub const AGENT_BIN: &str = "pollux-lab-agent";

const FIX: &str = "run `cargo xtask setup` (as root) to install the lab";

/// The folder where provisioning keeps the guest kernel and virtme-ng.
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("POLLUX_LAB_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(p).join("pollux-lab");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/pollux-lab")
}

/// `<cache>/kernel`: one folder per extracted kernel release.
pub fn kernel_cache_dir() -> PathBuf {
    cache_dir().join("kernel")
}

/// `<cache>/qemu`: the QEMU the lab runs by default. Debian's QEMU 11 comes
/// from trixie-backports and needs trixie's libc (2.38+), which bookworm
/// hosts lack, so `cargo xtask setup` debootstraps a minimal trixie tree into
/// `<cache>/qemu/tree`, installs `qemu-system-x86` there, and writes the
/// wrapper [`qemu_wrapper`] that starts the tree's QEMU through the tree's own
/// dynamic loader and libraries. Nothing is installed on the host.
pub fn qemu_dir() -> PathBuf {
    cache_dir().join("qemu")
}

/// The debootstrapped trixie tree under [`qemu_dir`].
pub fn qemu_tree() -> PathBuf {
    qemu_dir().join("tree")
}

/// The wrapper script that runs the tree's QEMU (exists once provisioning
/// finished: it is written last).
pub fn qemu_wrapper() -> PathBuf {
    qemu_dir().join("qemu-system-x86_64")
}

/// The wrapper's text for a tree at `tree`. QEMU looks for its firmware in
/// paths compiled in (`/usr/share/seabios`, ...), which are the host's, so
/// every firmware folder of the tree is given with `-L`; `QEMU_MODULE_DIR`
/// keeps it from loading the host's own (other build's) modules, which aborts
/// with "Only modules from the same build can be loaded".
pub fn qemu_wrapper_script(tree: &Path) -> String {
    let t = tree.to_string_lossy();
    format!(
        "#!/bin/sh\n\
         # Written by `cargo xtask setup` (Pollux): Debian trixie-backports' QEMU\n\
         # from the trixie tree {t}, run through that tree's own loader and\n\
         # libraries, because it needs a newer libc than the host has.\n\
         T='{t}'\n\
         export QEMU_MODULE_DIR=\"$T/usr/lib/x86_64-linux-gnu/qemu\"\n\
         exec \"$T/lib64/ld-linux-x86-64.so.2\" \\\n\
         \x20   --library-path \"$T/usr/lib/x86_64-linux-gnu:$T/lib/x86_64-linux-gnu\" \\\n\
         \x20   \"$T/usr/bin/qemu-system-x86_64\" \\\n\
         \x20   -L \"$T/usr/share/qemu\" -L \"$T/usr/share/seabios\" \"$@\"\n"
    )
}

/// `<cache>/venv`: the Python venv holding virtme-ng.
pub fn venv_dir() -> PathBuf {
    cache_dir().join("venv")
}

/// The host's build output folder: `CARGO_TARGET_DIR`, else the workspace's
/// `target/` (found from this crate's location at compile time).
pub fn target_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("CARGO_TARGET_DIR") {
        let p = PathBuf::from(p);
        return if p.is_absolute() {
            p
        } else {
            workspace_root().join(p)
        };
    }
    workspace_root().join("target")
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| here.to_path_buf())
}

/// The cargo profile folder the running binary was built in (`debug` unless
/// the test runs from a release build).
fn profile() -> &'static str {
    let exe = std::env::current_exe().unwrap_or_default();
    if exe.components().any(|c| c.as_os_str() == "release") {
        "release"
    } else {
        "debug"
    }
}

/// A binary of the workspace built on the host (e.g. `pollux`), as the guest
/// sees it: the guest mounts the host's root read-only, so the host path works
/// unchanged inside the guest. Build it first (`cargo build --workspace --bins`).
pub fn host_binary(name: &str) -> Result<PathBuf> {
    built(&target_dir().join(profile()).join(name), "--bins")
}

/// An example of the workspace built on the host (`target/<profile>/examples/<name>`).
/// Build it first (`cargo build --workspace --examples`).
pub fn host_example(name: &str) -> Result<PathBuf> {
    built(
        &target_dir().join(profile()).join("examples").join(name),
        "--examples",
    )
}

fn built(path: &Path, flag: &str) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path.to_path_buf())
    } else {
        Err(Error::Setup(format!(
            "{} is not built; run `cargo build --workspace {flag}` first (cargo xtask lab test does)",
            path.display()
        )))
    }
}

/// Everything a boot needs, found and checked.
#[derive(Debug, Clone)]
pub struct LabEnv {
    /// The QEMU system emulator.
    pub qemu: PathBuf,
    /// Its version, e.g. (10, 0, 2).
    pub qemu_version: (u32, u32, u32),
    /// The guest kernel image.
    pub kernel: PathBuf,
    /// Its release string (`uname -r` in the guest).
    pub kernel_release: String,
    /// virtme-ng's `vng`.
    pub vng: PathBuf,
    /// The guest agent binary (a host path the guest sees too).
    pub agent: PathBuf,
}

impl LabEnv {
    /// Finds every part, honouring the `POLLUX_LAB_*` overrides, and says
    /// exactly what is missing.
    pub fn discover() -> Result<LabEnv> {
        let (qemu, qemu_version) = find_qemu()?;
        let (kernel, kernel_release) = find_kernel()?;
        Ok(LabEnv {
            qemu,
            qemu_version,
            kernel,
            kernel_release,
            vng: find_vng()?,
            agent: find_agent()?,
        })
    }
}

/// Finds QEMU and checks its version and its igb device.
pub fn find_qemu() -> Result<(PathBuf, (u32, u32, u32))> {
    let qemu = match std::env::var_os("POLLUX_LAB_QEMU") {
        Some(p) => PathBuf::from(p),
        None => {
            let w = qemu_wrapper();
            if !w.is_file() {
                return Err(Error::Setup(format!(
                    "the lab's QEMU 11 is not installed at {} (Debian trixie-backports' qemu-system-x86 in a trixie tree); {FIX}, or set POLLUX_LAB_QEMU to a QEMU >= {}.{}",
                    w.display(),
                    MIN_QEMU.0,
                    MIN_QEMU.1
                )));
            }
            w
        }
    };
    let out = Command::new(&qemu)
        .arg("--version")
        .output()
        .map_err(|e| Error::Setup(format!("cannot run {}: {e}", qemu.display())))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = parse_qemu_version(&text).ok_or_else(|| {
        Error::Setup(format!(
            "cannot read the version of {} from {text:?}",
            qemu.display()
        ))
    })?;
    if (version.0, version.1) < MIN_QEMU {
        return Err(Error::Setup(format!(
            "{} is QEMU {}.{}.{}; the lab needs QEMU >= {}.{} (virtio-net SR-IOV and the vfio-user client); {FIX}, or set POLLUX_LAB_QEMU",
            qemu.display(),
            version.0,
            version.1,
            version.2,
            MIN_QEMU.0,
            MIN_QEMU.1
        )));
    }
    Ok((qemu, version))
}

/// Reads "QEMU emulator version 10.0.2 (Debian ...)".
pub fn parse_qemu_version(text: &str) -> Option<(u32, u32, u32)> {
    let rest = text.split("version ").nth(1)?;
    let v = rest
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()?;
    let mut it = v.split('.').map(|p| p.parse::<u32>().ok());
    let major = it.next()??;
    let minor = it.next().flatten().unwrap_or(0);
    let patch = it.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

/// Finds the guest kernel image and its release.
pub fn find_kernel() -> Result<(PathBuf, String)> {
    if let Some(p) = std::env::var_os("POLLUX_LAB_KERNEL") {
        let image = PathBuf::from(p);
        if !image.is_file() {
            return Err(Error::Setup(format!(
                "POLLUX_LAB_KERNEL={} is not a file",
                image.display()
            )));
        }
        let release = kernel_release_of(&image)?;
        return Ok((image, release));
    }
    let dir = kernel_cache_dir();
    let mut found: Vec<(PathBuf, String)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let release = e.file_name().to_string_lossy().into_owned();
            let image = e.path().join("boot").join(format!("vmlinuz-{release}"));
            // A release is usable only once provisioning finished it.
            if image.is_file() && e.path().join(".complete").is_file() {
                found.push((image, release));
            }
        }
    }
    found.sort_by(|a, b| compare_releases(&a.1, &b.1));
    found.pop().ok_or_else(|| {
        Error::Setup(format!(
            "no guest kernel in {}; {FIX}, or set POLLUX_LAB_KERNEL to a vmlinuz",
            dir.display()
        ))
    })
}

/// The release of a kernel image, from its modules folder next to it.
fn kernel_release_of(image: &Path) -> Result<String> {
    let root = image
        .ancestors()
        .skip(1)
        // vng stops below "/" too; the host's own modules are not the guest's.
        .take_while(|p| *p != Path::new("/"))
        .find(|p| p.join("lib/modules").is_dir())
        .ok_or_else(|| {
            Error::Setup(format!(
                "no lib/modules folder above {}: the lab loads igb, vfio-pci and virtio_net as modules and needs them there",
                image.display()
            ))
        })?;
    let name = image
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let modules = root.join("lib/modules");
    if let Some(rel) = name.strip_prefix("vmlinuz-") {
        if modules.join(rel).is_dir() {
            return Ok(rel.to_owned());
        }
    }
    let releases: Vec<String> = std::fs::read_dir(&modules)
        .map_err(|e| Error::Setup(format!("cannot read {}: {e}", modules.display())))?
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    match releases.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(Error::Setup(format!(
            "cannot tell which of {releases:?} in {} belongs to {}; name the image vmlinuz-<release>",
            modules.display(),
            image.display()
        ))),
    }
}

/// Orders kernel releases like `6.12.9+deb12` < `6.12.95+deb12` by their
/// numeric parts.
fn compare_releases(a: &str, b: &str) -> std::cmp::Ordering {
    let nums = |s: &str| -> Vec<u64> {
        s.split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    nums(a).cmp(&nums(b)).then_with(|| a.cmp(b))
}

/// Finds virtme-ng's `vng`.
pub fn find_vng() -> Result<PathBuf> {
    let vng = match std::env::var_os("POLLUX_LAB_VNG") {
        Some(p) => PathBuf::from(p),
        None => venv_dir().join("bin/vng"),
    };
    if vng.is_file() {
        Ok(vng)
    } else {
        Err(Error::Setup(format!(
            "virtme-ng is not installed at {}; {FIX}, or set POLLUX_LAB_VNG",
            vng.display()
        )))
    }
}

/// Finds the guest agent binary.
pub fn find_agent() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("POLLUX_LAB_AGENT") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error::Setup(format!(
                "POLLUX_LAB_AGENT={} is not a file",
                p.display()
            )))
        };
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        // Test binaries live in target/<profile>/deps/, xtask in target/<profile>/.
        for dir in exe.ancestors().skip(1).take(2) {
            candidates.push(dir.join(AGENT_BIN));
        }
    }
    candidates.push(target_dir().join(profile()).join(AGENT_BIN));
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            Error::Setup(format!(
                "the guest agent is not built (looked at {candidates:?}); run `cargo build -p pollux-lab --bins`, or set POLLUX_LAB_AGENT"
            ))
        })
}

/// Finds a program on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_versions_parse() {
        assert_eq!(
            parse_qemu_version(
                "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\n"
            ),
            Some((10, 0, 2))
        );
        assert_eq!(
            parse_qemu_version("QEMU emulator version 7.2.15 (Debian 1:7.2+dfsg-7+deb12u16)"),
            Some((7, 2, 15))
        );
        assert_eq!(
            parse_qemu_version("QEMU emulator version 9.1"),
            Some((9, 1, 0))
        );
        assert_eq!(parse_qemu_version("something else"), None);
    }

    #[test]
    fn kernel_releases_order_numerically() {
        let mut v = vec![
            "6.12.95+deb12-amd64",
            "6.12.9+deb12-amd64",
            "6.1.0-26-amd64",
        ];
        v.sort_by(|a, b| compare_releases(a, b));
        assert_eq!(
            v,
            vec![
                "6.1.0-26-amd64",
                "6.12.9+deb12-amd64",
                "6.12.95+deb12-amd64"
            ]
        );
    }

    #[test]
    fn kernel_release_comes_from_the_modules_next_to_the_image() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("boot")).unwrap();
        std::fs::create_dir_all(root.join("lib/modules/6.12.1-test")).unwrap();
        let img = root.join("boot/bzImage");
        std::fs::write(&img, b"x").unwrap();
        assert_eq!(kernel_release_of(&img).unwrap(), "6.12.1-test");

        std::fs::create_dir_all(root.join("lib/modules/6.12.2-test")).unwrap();
        let e = kernel_release_of(&img).unwrap_err().to_string();
        assert!(e.contains("cannot tell which"), "{e}");
        let named = root.join("boot/vmlinuz-6.12.2-test");
        std::fs::write(&named, b"x").unwrap();
        assert_eq!(kernel_release_of(&named).unwrap(), "6.12.2-test");

        let lone = tempfile::tempdir().unwrap();
        let img = lone.path().join("vmlinuz");
        std::fs::write(&img, b"x").unwrap();
        let e = kernel_release_of(&img).unwrap_err().to_string();
        assert!(e.contains("no lib/modules"), "{e}");
    }

    #[test]
    fn missing_built_binaries_say_how_to_build_them() {
        let e = built(Path::new("/nonexistent/pollux"), "--bins")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cargo build --workspace --bins"), "{e}");
    }
}
