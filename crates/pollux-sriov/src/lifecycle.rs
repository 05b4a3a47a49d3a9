//! VF lifecycle in sysfs: VF count, driver binding, function reset.
//!
//! The attributes and their semantics are those of Linux
//! Documentation/ABI/testing/sysfs-bus-pci: `sriov_numvfs` (VFs cannot be
//! added incrementally: a non-zero count must go to 0 first, the kernel
//! refuses otherwise with EBUSY), `sriov_drivers_autoprobe`,
//! `driver_override` (an empty write clears it), `drivers/<d>/unbind`,
//! `drivers_probe`, and `reset`.
//!
//! A sysfs write can block in the kernel for as long as a driver's probe or
//! remove takes (creating VFs runs the VF drivers' probes synchronously). A
//! write therefore runs on a helper thread and the caller stops waiting after
//! its timeout; the thread stays blocked in the kernel until the write ends,
//! which no user-space code can shorten, so a timeout means "state unknown,
//! look again", and the error says so.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use pollux_pci::{DriverKind, PciAddr, Sysfs};

use crate::{Error, Result};

/// Timeouts of lifecycle operations.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// One sysfs write.
    pub write: Duration,
    /// The kernel finishing what a write started (links appearing).
    pub settle: Duration,
    /// How long to look for a default driver after `drivers_probe` (which
    /// the kernel runs synchronously; this covers deferred probes).
    pub probe: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        // Creating 8 VFs under TCG takes a few seconds; real hardware with
        // 64 VFs and their drivers' probes can take tens of seconds.
        Self {
            write: Duration::from_secs(30),
            settle: Duration::from_secs(30),
            probe: Duration::from_secs(1),
        }
    }
}

/// Writes `value` to the sysfs attribute `path`, giving up after `timeout`.
pub fn write_attr(path: &Path, value: &str, timeout: Duration) -> Result<()> {
    let (tx, rx) = mpsc::channel();
    let p = path.to_owned();
    let v = value.to_owned();
    thread::Builder::new()
        .name("sysfs-write".into())
        .spawn(move || {
            // No O_CREAT: a missing attribute is an error, as in the kernel's
            // tree. The value goes out in one write(2), as sysfs requires.
            let r = OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&p)
                .and_then(|mut f| f.write_all(v.as_bytes()));
            let _ = tx.send(r);
        })
        .map_err(|source| Error::Io {
            op: "spawning a writer thread for",
            path: path.to_owned(),
            source,
        })?;
    match rx.recv_timeout(timeout) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(Error::Write {
            path: path.to_owned(),
            value: value.trim_end().to_owned(),
            source,
        }),
        Err(_) => Err(Error::Timeout {
            what: format!(
                "the kernel to accept {:?} in {} (the write may still complete)",
                value.trim_end(),
                path.display()
            ),
            timeout,
        }),
    }
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes.
pub fn wait_until(
    what: impl FnOnce() -> String,
    timeout: Duration,
    mut cond: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if cond()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: what(),
                timeout,
            });
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Why VFs of a PF count as in use, if they do.
///
/// A VF is in use when a CNI allocation record names it (files
/// `<alloc_dir>/<pci-address>`) or when it is bound to a userspace driver,
/// where some data plane may have it open.
pub fn vfs_in_use(sysfs: &Sysfs, pf: PciAddr, alloc_dir: Option<&Path>) -> Result<Vec<String>> {
    let mut why = Vec::new();
    for (idx, vf) in sysfs.virtfns(pf)? {
        if let Some(dir) = alloc_dir {
            if dir.join(vf.to_string()).exists() {
                why.push(format!("VF {idx} ({vf}) is allocated to a pod"));
                continue;
            }
        }
        if let Some(d) = sysfs.driver(vf)? {
            if DriverKind::of(Some(&d)) == DriverKind::Userspace {
                why.push(format!("VF {idx} ({vf}) is bound to {d}"));
            }
        }
    }
    Ok(why)
}

/// Options of [`create_vfs`].
#[derive(Clone, Debug, Default)]
pub struct CreateOpts {
    /// Change a non-zero count even if VFs are in use.
    pub force: bool,
    /// Set `sriov_drivers_autoprobe` first (false: VFs come up without a
    /// driver, so nothing races a later bind to vfio-pci).
    pub autoprobe: Option<bool>,
    /// Where CNI allocation records live, for the in-use check.
    pub alloc_dir: Option<PathBuf>,
    pub timeouts: Timeouts,
}

/// Sets the VF count of `pf` to `num`: writes 0, then `num`, and waits for
/// every `virtfnN` link. Returns the VFs by index.
pub fn create_vfs(
    sysfs: &Sysfs,
    pf: PciAddr,
    num: u32,
    opts: &CreateOpts,
) -> Result<Vec<(u32, PciAddr)>> {
    let caps = sysfs.sriov(pf)?.ok_or(Error::NotPf(pf))?;
    if num > caps.total_vfs {
        return Err(Error::TooManyVfs {
            pf,
            asked: num,
            total: caps.total_vfs,
        });
    }
    if caps.num_vfs == num && sysfs.virtfns(pf)?.len() == num as usize && opts.autoprobe.is_none() {
        return sysfs.virtfns(pf).map_err(Into::into);
    }
    if caps.num_vfs != 0 && !opts.force {
        let why = vfs_in_use(sysfs, pf, opts.alloc_dir.as_deref())?;
        if !why.is_empty() {
            return Err(Error::VfsInUse {
                pf,
                current: caps.num_vfs,
                in_use: why.join(", "),
            });
        }
    }
    let t = opts.timeouts;
    let numvfs = sysfs.attr_path(pf, "sriov_numvfs");
    if caps.num_vfs != 0 {
        write_attr(&numvfs, "0", t.write)?;
        wait_until(
            || format!("the VFs of {pf} to go away"),
            t.settle,
            || Ok(sysfs.virtfns(pf)?.is_empty()),
        )?;
    }
    if let Some(a) = opts.autoprobe {
        write_attr(
            &sysfs.attr_path(pf, "sriov_drivers_autoprobe"),
            if a { "1" } else { "0" },
            t.write,
        )?;
    }
    if num != 0 {
        write_attr(&numvfs, &num.to_string(), t.write)?;
        wait_until(
            || format!("{num} virtfn links under {pf}"),
            t.settle,
            || {
                let v = sysfs.virtfns(pf)?;
                Ok(v.len() == num as usize
                    && v.iter().enumerate().all(|(i, (n, _))| *n == i as u32))
            },
        )?;
    }
    sysfs.virtfns(pf).map_err(Into::into)
}

fn driver_dir(sysfs: &Sysfs, driver: &str) -> Result<PathBuf> {
    if driver.is_empty() || driver.contains('/') || driver == "." || driver == ".." {
        return Err(Error::Invalid(format!("invalid driver name {driver:?}")));
    }
    let dir = sysfs.pci_drivers_dir().join(driver);
    if !dir.is_dir() {
        return Err(Error::DriverNotLoaded {
            driver: driver.to_owned(),
            path: dir,
        });
    }
    Ok(dir)
}

/// Unbinds `addr` from its driver, if any, and waits for the `driver` link
/// to go. Returns the driver it had.
pub fn unbind(sysfs: &Sysfs, addr: PciAddr, t: Timeouts) -> Result<Option<String>> {
    let Some(cur) = sysfs.driver(addr)? else {
        return Ok(None);
    };
    let unbind = sysfs.pci_drivers_dir().join(&cur).join("unbind");
    write_attr(&unbind, &addr.to_string(), t.write)?;
    wait_until(
        || format!("{addr} to leave {cur}"),
        t.settle,
        || Ok(sysfs.driver(addr)?.is_none()),
    )?;
    Ok(Some(cur))
}

/// Binds `addr` to `driver` through `driver_override`: sets the override,
/// unbinds the current driver, asks the bus to probe, and waits until the
/// `driver` link names `driver`. A function already on `driver` is left
/// alone.
pub fn bind(sysfs: &Sysfs, addr: PciAddr, driver: &str, t: Timeouts) -> Result<()> {
    if !sysfs.exists(addr) {
        sysfs.function(addr)?;
    }
    let _ = driver_dir(sysfs, driver)?;
    if sysfs.driver(addr)?.as_deref() == Some(driver) {
        return Ok(());
    }
    write_attr(&sysfs.attr_path(addr, "driver_override"), driver, t.write)?;
    unbind(sysfs, addr, t)?;
    write_attr(
        &sysfs.root().join("bus/pci/drivers_probe"),
        &addr.to_string(),
        t.write,
    )?;
    wait_until(
        || format!("{driver} to bind {addr}"),
        t.settle,
        || Ok(sysfs.driver(addr)?.as_deref() == Some(driver)),
    )
}

/// Unbinds `addr`, clears `driver_override` and, if `probe`, asks the bus
/// to probe so the default driver (igbvf for an 82576 VF) takes it again.
/// Returns the driver that took it, if any did within the settle timeout
/// (none may: the default driver may not be loaded, or the PF's
/// `sriov_drivers_autoprobe` be off, see [`autoprobe_blocked`]).
pub fn restore_default_driver(
    sysfs: &Sysfs,
    addr: PciAddr,
    probe: bool,
    t: Timeouts,
) -> Result<Option<String>> {
    if !sysfs.exists(addr) {
        sysfs.function(addr)?;
    }
    unbind(sysfs, addr, t)?;
    // An empty write clears the override (drivers/pci/pci-sysfs.c,
    // driver_override_store: a lone newline counts as empty).
    write_attr(&sysfs.attr_path(addr, "driver_override"), "\n", t.write)?;
    if !probe {
        return Ok(None);
    }
    write_attr(
        &sysfs.root().join("bus/pci/drivers_probe"),
        &addr.to_string(),
        t.write,
    )?;
    // drivers_probe is synchronous: when the write returns, a driver that
    // matched has bound. Look once more after a short settle for drivers
    // that defer their probe.
    let deadline = Instant::now() + t.probe;
    loop {
        if let Some(d) = sysfs.driver(addr)? {
            return Ok(Some(d));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// True when `addr` is a VF whose PF has `sriov_drivers_autoprobe` off: the
/// kernel then binds no driver to it except through `driver_override`
/// (drivers/pci/pci-driver.c, pci_device_can_probe), so
/// [`restore_default_driver`] leaves it without one.
pub fn autoprobe_blocked(sysfs: &Sysfs, addr: PciAddr) -> Result<bool> {
    let Some(pf) = sysfs.physfn(addr)? else {
        return Ok(false);
    };
    Ok(sysfs.read_attr(pf, "sriov_drivers_autoprobe")?.as_deref() == Some("0"))
}

/// Resets the function through its `reset` attribute (FLR or whatever
/// reset method the kernel picked).
pub fn reset(sysfs: &Sysfs, addr: PciAddr, t: Timeouts) -> Result<()> {
    if !sysfs.exists(addr) {
        sysfs.function(addr)?;
    }
    let path = sysfs.attr_path(addr, "reset");
    if !path.exists() {
        return Err(Error::Invalid(format!(
            "{addr} has no reset attribute: the kernel knows no reset method for it"
        )));
    }
    write_attr(&path, "1", t.write)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use pollux_pci::fake::{FakeFn, FakeSysfs};
    use std::fs;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    pub(crate) fn a(s: &str) -> PciAddr {
        s.parse().unwrap()
    }

    pub(crate) const PF: &str = "0000:00:02.0";

    /// A PF on igb with up to 4 VFs, none created, plus the drivers igbvf
    /// and vfio-pci.
    pub(crate) fn tree() -> (tempfile::TempDir, FakeSysfs, Sysfs) {
        let t = tempfile::tempdir().unwrap();
        let f = FakeSysfs::new(t.path()).unwrap();
        f.add(&FakeFn {
            addr: a(PF),
            vendor: 0x8086,
            device: 0x10c9,
            class: 0x020000,
            driver: Some("igb"),
            iommu_group: Some(3),
            numa_node: -1,
            netdevs: &["eth0"],
            total_vfs: Some(4),
        })
        .unwrap();
        for d in ["igbvf", "vfio-pci"] {
            let dd = t.path().join("bus/pci/drivers").join(d);
            fs::create_dir_all(&dd).unwrap();
            fs::write(dd.join("bind"), "").unwrap();
            fs::write(dd.join("unbind"), "").unwrap();
        }
        let s = Sysfs::new(t.path());
        (t, f, s)
    }

    /// Plays the kernel's part on a fake tree: reacts to writes of
    /// sriov_numvfs, drivers/*/unbind and drivers_probe as the PCI core
    /// does, until dropped.
    pub(crate) struct FakeKernel {
        stop: Arc<AtomicBool>,
        th: Option<thread::JoinHandle<()>>,
    }

    impl Drop for FakeKernel {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            if let Some(t) = self.th.take() {
                let _ = t.join();
            }
        }
    }

    pub(crate) fn fake_kernel(root: &Path) -> FakeKernel {
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let root = root.to_owned();
        let th = thread::spawn(move || {
            let f = FakeSysfs::new(&root).unwrap();
            let pf = a(PF);
            let pfdir = f.real_dir(pf);
            let mut created = 0u32;
            while !st.load(Ordering::SeqCst) {
                // sriov_numvfs; an empty read is a write caught between
                // truncate and data, not a request for 0.
                let want: Option<u32> = fs::read_to_string(pfdir.join("sriov_numvfs"))
                    .ok()
                    .and_then(|s| s.trim().parse().ok());
                if let Some(want) = want.filter(|&w| w != created) {
                    if want == 0 {
                        for i in 0..created {
                            let vf = a(&format!("0000:00:10.{i}"));
                            let _ = fs::remove_file(pfdir.join(format!("virtfn{i}")));
                            let _ =
                                fs::remove_file(root.join("bus/pci/devices").join(vf.to_string()));
                            let _ = fs::remove_dir_all(f.real_dir(vf));
                        }
                    } else if created == 0 {
                        let autoprobe = fs::read_to_string(pfdir.join("sriov_drivers_autoprobe"))
                            .map(|s| s.trim() == "1")
                            .unwrap_or(true);
                        for i in 0..want {
                            let vf = FakeFn {
                                addr: a(&format!("0000:00:10.{i}")),
                                vendor: 0x8086,
                                device: 0x10ca,
                                class: 0x020000,
                                driver: autoprobe.then_some("igbvf"),
                                iommu_group: Some(10 + i),
                                numa_node: -1,
                                netdevs: &[],
                                total_vfs: None,
                            };
                            // Never rewrites sriov_numvfs: the code under
                            // test may write it again as soon as the last
                            // link is there, and that write must not be lost.
                            f.attach_vf(pf, i, &vf).unwrap();
                        }
                    }
                    created = want;
                }
                // unbind and drivers_probe
                if let Ok(drivers) = fs::read_dir(root.join("bus/pci/drivers")) {
                    for d in drivers.flatten() {
                        let ub = d.path().join("unbind");
                        if let Ok(s) = fs::read_to_string(&ub) {
                            if let Ok(addr) = s.trim().parse::<PciAddr>() {
                                // Consume the request before acting on it,
                                // so a next request written once the effect
                                // shows is not wiped.
                                fs::write(&ub, "").unwrap();
                                let _ = f.unbind(addr);
                            }
                        }
                    }
                }
                let probe = root.join("bus/pci/drivers_probe");
                if let Ok(s) = fs::read_to_string(&probe) {
                    if let Ok(addr) = s.trim().parse::<PciAddr>() {
                        fs::write(&probe, "").unwrap();
                        let ov = fs::read_to_string(f.real_dir(addr).join("driver_override"))
                            .unwrap_or_default();
                        let ov = ov.trim();
                        let drv = if ov.is_empty() || ov == "(null)" {
                            "igbvf"
                        } else {
                            ov
                        };
                        if root.join("bus/pci/drivers").join(drv).is_dir() {
                            f.bind(addr, drv).unwrap();
                        }
                    }
                }
                thread::sleep(Duration::from_millis(2));
            }
        });
        FakeKernel { stop, th: Some(th) }
    }

    fn quick() -> Timeouts {
        Timeouts {
            write: Duration::from_secs(5),
            settle: Duration::from_secs(5),
            // The fake kernel answers drivers_probe from a polling thread,
            // not synchronously as Linux does.
            probe: Duration::from_secs(5),
        }
    }

    #[test]
    fn create_writes_zero_then_n_and_waits_for_links() {
        let (t, _f, s) = tree();
        let _k = fake_kernel(t.path());
        let opts = CreateOpts {
            timeouts: quick(),
            autoprobe: Some(false),
            ..Default::default()
        };
        let vfs = create_vfs(&s, a(PF), 2, &opts).unwrap();
        assert_eq!(vfs, vec![(0, a("0000:00:10.0")), (1, a("0000:00:10.1"))]);
        assert_eq!(s.driver(a("0000:00:10.0")).unwrap(), None, "autoprobe off");
        assert!(autoprobe_blocked(&s, a("0000:00:10.0")).unwrap());
        // 2 -> 3 goes through 0: the old VFs disappear and come back.
        let vfs = create_vfs(&s, a(PF), 3, &opts).unwrap();
        assert_eq!(vfs.len(), 3);
        assert_eq!(s.sriov(a(PF)).unwrap().unwrap().num_vfs, 3);
        let vfs = create_vfs(&s, a(PF), 0, &opts).unwrap();
        assert!(vfs.is_empty());
    }

    #[test]
    fn create_refuses_bad_counts_and_in_use() {
        let (t, _f, s) = tree();
        let _k = fake_kernel(t.path());
        let opts = CreateOpts {
            timeouts: quick(),
            autoprobe: Some(false),
            alloc_dir: Some(t.path().join("alloc")),
            ..Default::default()
        };
        let e = create_vfs(&s, a(PF), 5, &opts).unwrap_err();
        assert!(!autoprobe_blocked(&s, a(PF)).unwrap(), "a PF is no VF");
        assert!(e.to_string().contains("at most 4 VFs"), "{e}");
        create_vfs(&s, a(PF), 2, &opts).unwrap();
        fs::create_dir_all(t.path().join("alloc")).unwrap();
        fs::write(t.path().join("alloc/0000:00:10.1"), "{}").unwrap();
        let e = create_vfs(&s, a(PF), 1, &opts).unwrap_err();
        assert!(
            e.to_string().contains("VF 1 (0000:00:10.1) is allocated"),
            "{e}"
        );
        assert!(e.to_string().contains("--force"), "{e}");
        assert_eq!(s.virtfns(a(PF)).unwrap().len(), 2, "nothing changed");
        let forced = CreateOpts {
            force: true,
            ..opts.clone()
        };
        assert_eq!(create_vfs(&s, a(PF), 1, &forced).unwrap().len(), 1);
        let e = create_vfs(&s, a("0000:00:10.0"), 1, &opts).unwrap_err();
        assert!(matches!(e, Error::NotPf(_)), "{e}");
    }

    #[test]
    fn bind_unbind_restore() {
        let (t, _f, s) = tree();
        let _k = fake_kernel(t.path());
        let opts = CreateOpts {
            timeouts: quick(),
            autoprobe: Some(true),
            ..Default::default()
        };
        create_vfs(&s, a(PF), 1, &opts).unwrap();
        let vf = a("0000:00:10.0");
        assert_eq!(s.driver(vf).unwrap().as_deref(), Some("igbvf"));
        bind(&s, vf, "vfio-pci", quick()).unwrap();
        assert_eq!(s.driver(vf).unwrap().as_deref(), Some("vfio-pci"));
        assert_eq!(s.driver_override(vf).unwrap().as_deref(), Some("vfio-pci"));
        // In use now: a count change needs --force.
        let e = create_vfs(&s, a(PF), 0, &opts).unwrap_err();
        assert!(e.to_string().contains("bound to vfio-pci"), "{e}");
        assert!(!autoprobe_blocked(&s, vf).unwrap());
        let back = restore_default_driver(&s, vf, true, quick()).unwrap();
        assert_eq!(back.as_deref(), Some("igbvf"));
        assert_eq!(s.driver_override(vf).unwrap(), None);
        assert_eq!(unbind(&s, vf, quick()).unwrap().as_deref(), Some("igbvf"));
        assert_eq!(unbind(&s, vf, quick()).unwrap(), None);
        let e = bind(&s, vf, "igb_uio", quick()).unwrap_err();
        assert!(e.to_string().contains("modprobe igb_uio"), "{e}");
        let e = bind(&s, vf, "../x", quick()).unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e}");
        let e = bind(&s, a("0000:09:00.0"), "vfio-pci", quick()).unwrap_err();
        assert!(e.to_string().contains("no PCI function"), "{e}");
    }

    #[test]
    fn waits_time_out_with_a_clear_error() {
        // No fake kernel: nobody creates the links.
        let (_t, _f, s) = tree();
        let opts = CreateOpts {
            timeouts: Timeouts {
                write: Duration::from_secs(2),
                settle: Duration::from_millis(100),
                probe: Duration::from_millis(100),
            },
            ..Default::default()
        };
        let e = create_vfs(&s, a(PF), 2, &opts).unwrap_err();
        assert!(matches!(e, Error::Timeout { .. }), "{e}");
        assert!(e.to_string().contains("2 virtfn links"), "{e}");
    }

    #[test]
    fn write_to_missing_attribute_fails_and_reset_writes_one() {
        let (_t, f, s) = tree();
        let e = write_attr(
            &s.attr_path(a(PF), "nonexistent"),
            "1",
            Duration::from_secs(2),
        )
        .unwrap_err();
        assert!(matches!(e, Error::Write { .. }), "{e}");
        reset(&s, a(PF), quick()).unwrap();
        assert_eq!(
            fs::read_to_string(f.real_dir(a(PF)).join("reset")).unwrap(),
            "1"
        );
        fs::remove_file(f.real_dir(a(PF)).join("reset")).unwrap();
        let e = reset(&s, a(PF), quick()).unwrap_err();
        assert!(e.to_string().contains("no reset attribute"), "{e}");
    }

    #[test]
    fn blocked_write_times_out() {
        // A FIFO with no reader blocks open(2) for writing, as a sysfs store
        // that waits on a driver blocks write(2).
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let start = Instant::now();
        let e = write_attr(&fifo, "1", Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, Error::Timeout { .. }), "{e}");
        assert!(start.elapsed() < Duration::from_secs(2));
        // Unblock the helper thread so it does not outlive the test forever.
        let _ = fs::read(&fifo);
    }
}
