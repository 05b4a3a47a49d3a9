//! Network namespaces: running code inside one, and telling whether one
//! still exists.
//!
//! A thread's network namespace is its own (setns(2) with CLONE_NEWNET
//! changes only the calling thread), so [`run_in`] switches a fresh scoped
//! thread and lets it end there: no thread of the caller's ever changes
//! namespace, and a failed switch back cannot leak a thread into the wrong
//! namespace.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::thread;

use crate::{Error, Result};

/// NSFS_MAGIC of include/uapi/linux/magic.h: the file system of namespace
/// files (`/proc/<pid>/ns/net`, and bind mounts of them in /run/netns).
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Opens a network namespace file.
pub fn open(path: &Path) -> Result<File> {
    File::open(path).map_err(|source| Error::Io {
        op: "opening network namespace",
        path: path.to_owned(),
        source,
    })
}

/// Is `path` a live network namespace? False when the file is gone or is
/// no longer a namespace (the bind mount was removed, leaving an empty
/// file behind), which is what a deleted pod sandbox leaves.
pub fn is_live(path: &Path) -> bool {
    let Ok(f) = File::open(path) else {
        return false;
    };
    // SAFETY: an all-zero statfs is a valid value of this plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: the fd is open for the duration of the call and `st` is a
    // valid, writable statfs.
    let rc = unsafe { libc::fstatfs(f.as_raw_fd(), &mut st) };
    rc == 0 && st.f_type as i64 == NSFS_MAGIC
}

/// Runs `f` on a new thread that has joined the network namespace at
/// `path`.
pub fn run_in<T: Send>(path: &Path, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let ns = open(path)?;
    thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: `ns` is an open namespace fd that outlives the call;
            // setns affects only this thread, which ends after `f`.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(Error::Io {
                    op: "entering network namespace",
                    path: path.to_owned(),
                    source: std::io::Error::last_os_error(),
                });
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(Error::Invalid("a netns worker thread panicked".into())))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_namespace_is_live_and_plain_files_are_not() {
        assert!(is_live(Path::new("/proc/self/ns/net")));
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("ns");
        std::fs::write(&f, "").unwrap();
        assert!(!is_live(&f));
        assert!(!is_live(&t.path().join("missing")));
    }

    #[test]
    fn run_in_own_namespace_and_missing_one() {
        let v = run_in(Path::new("/proc/self/ns/net"), || Ok(42)).unwrap();
        assert_eq!(v, 42);
        let e = run_in(Path::new("/nonexistent/ns"), || Ok(())).unwrap_err();
        assert!(e.to_string().contains("opening network namespace"), "{e}");
        // A regular file is not a namespace: setns refuses it.
        let t = tempfile::NamedTempFile::new().unwrap();
        let e = run_in(t.path(), || Ok(())).unwrap_err();
        assert!(e.to_string().contains("entering network namespace"), "{e}");
    }
}
