//! [`Device`]: a PCI function opened through VFIO.
//!
//! Before touching VFIO, [`Device::open`] checks in sysfs what the kernel
//! would otherwise report as a bare errno: the driver binding, the IOMMU
//! group and its other members, the group node and its permissions. Each
//! failure is a [`VfioError`] that says what to do.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use vfio_bindings::bindings::vfio::{
    VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_MSIX_IRQ_INDEX, VFIO_REGION_INFO_FLAG_MMAP,
    VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE,
};
use vfio_ioctls::{VfioDevice, VfioOps};

use crate::bar::Bar;
use crate::container::{open_error, Container};
use crate::error::{bind_commands, Result, VfioError};
use crate::irq::Interrupt;
use crate::pci::{PciAddr, Sysfs};

/// PCI command register and its bits (PCI Local Bus 3.0, section 6.2.2).
const PCI_COMMAND: u64 = 0x04;
const PCI_COMMAND_MEMORY: u16 = 1 << 1;
const PCI_COMMAND_MASTER: u16 = 1 << 2;

/// Where to look and what to allow when opening a device.
#[derive(Clone, Debug)]
pub struct OpenOpts {
    /// The sysfs root (`/sys`).
    pub sysfs_root: PathBuf,
    /// Where the group nodes live (`/dev/vfio`).
    pub dev_vfio: PathBuf,
    /// Accept a `noiommu-N` group (unprotected DMA). Off by default.
    pub noiommu: bool,
}

impl Default for OpenOpts {
    fn default() -> Self {
        OpenOpts {
            sysfs_root: PathBuf::from("/sys"),
            dev_vfio: PathBuf::from("/dev/vfio"),
            noiommu: false,
        }
    }
}

/// What [`preflight`] found out about a function that may be opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preflight {
    pub vendor: u16,
    pub device: u16,
    pub group: u32,
    /// The group node (`/dev/vfio/N`).
    pub group_node: PathBuf,
}

/// Checks in sysfs (and the existence of the group node) that `addr` can be
/// opened with VFIO, without opening anything. Fails with the error a person
/// can act on.
pub fn preflight(addr: PciAddr, opts: &OpenOpts) -> Result<Preflight> {
    let sysfs = Sysfs::new(&opts.sysfs_root);
    if !sysfs.exists(addr) {
        return Err(crate::pci::Error::NoSuchFunction {
            addr,
            root: opts.sysfs_root.clone(),
        }
        .into());
    }
    let vendor = sysfs.vendor(addr)?;
    let device = sysfs.device(addr)?;
    let driver = sysfs.driver(addr)?;
    if driver.as_deref() != Some("vfio-pci") {
        return Err(VfioError::NotBound {
            addr,
            commands: bind_commands(addr, driver.as_deref()),
            driver,
        });
    }
    let group = sysfs
        .iommu_group(addr)?
        .ok_or(VfioError::NoIommu { addr })?;
    let group_dir = opts.sysfs_root.join(format!("kernel/iommu_groups/{group}"));
    let noiommu = fs::read_to_string(group_dir.join("name"))
        .map(|n| n.trim() == "vfio-noiommu")
        .unwrap_or(false);
    if noiommu {
        return Err(if opts.noiommu {
            VfioError::NoIommuUnsupported { addr }
        } else {
            VfioError::NoIommuRefused { addr, group }
        });
    }
    let mut others = Vec::new();
    if let Ok(entries) = fs::read_dir(group_dir.join("devices")) {
        for e in entries.flatten() {
            let Ok(other) = e.file_name().to_string_lossy().parse::<PciAddr>() else {
                continue;
            };
            if other == addr {
                continue;
            }
            let drv = sysfs.driver(other).ok().flatten();
            // Bridges (pcieport) do not do DMA on their own and the kernel
            // accepts them in a viable group, as it does unbound functions.
            match drv.as_deref() {
                None | Some("vfio-pci") | Some("pci-stub") | Some("pcieport") => {}
                Some(d) => others.push(format!("{other} ({d})")),
            }
        }
    }
    if !others.is_empty() {
        others.sort();
        return Err(VfioError::GroupNotViable {
            addr,
            group,
            others,
        });
    }
    let group_node = opts.dev_vfio.join(group.to_string());
    if !group_node.exists() {
        return Err(VfioError::GroupNodeMissing {
            addr,
            path: group_node,
        });
    }
    Ok(Preflight {
        vendor,
        device,
        group,
        group_node,
    })
}

/// A PCI function opened with VFIO in a [`Container`].
pub struct Device {
    addr: PciAddr,
    vendor: u16,
    device: u16,
    group: u32,
    vfio: Arc<DevHandle>,
}

/// The open VFIO device; shared with the BAR mappings so the device (and its
/// group's membership in the container) outlives every mapping of it.
struct DevHandle {
    vfio: VfioDevice,
    container: Container,
}

impl Drop for DevHandle {
    fn drop(&mut self) {
        // Counted down before `vfio` drops and leaves the container: DMA
        // regions dropped later must not try to unmap from a domain that the
        // kernel tears down with the last group.
        self.container.inner.devices.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::ops::Deref for DevHandle {
    type Target = VfioDevice;
    fn deref(&self) -> &VfioDevice {
        &self.vfio
    }
}

impl Device {
    /// Opens `addr` in `container` after the [`preflight`] checks.
    pub fn open(container: &Container, addr: PciAddr, opts: &OpenOpts) -> Result<Device> {
        let pre = preflight(addr, opts)?;
        // Try the node ourselves first: the VFIO crate reports a failed open
        // without the errno's meaning.
        // EBUSY is left to VFIO: the group may already be open in this very
        // container for another function of it.
        if let Err(e) = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&pre.group_node)
        {
            if matches!(
                e.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::NotFound
            ) {
                return Err(open_error(&pre.group_node, e));
            }
        }
        let sysfs = Sysfs::new(&opts.sysfs_root);
        let ops: Arc<dyn VfioOps> = container.inner.vfio.clone();
        let vfio = VfioDevice::new(&sysfs.device_dir(addr), ops, false)
            .map_err(|e| open_device_error(addr, pre.group, e))?;
        container.inner.devices.fetch_add(1, Ordering::AcqRel);
        Ok(Device {
            addr,
            vendor: pre.vendor,
            device: pre.device,
            group: pre.group,
            vfio: Arc::new(DevHandle {
                vfio,
                container: container.clone(),
            }),
        })
    }

    /// The function's address.
    pub fn addr(&self) -> PciAddr {
        self.addr
    }

    /// PCI vendor ID.
    pub fn vendor_id(&self) -> u16 {
        self.vendor
    }

    /// PCI device ID.
    pub fn device_id(&self) -> u16 {
        self.device
    }

    /// IOMMU group number.
    pub fn group(&self) -> u32 {
        self.group
    }

    /// The container the device is open in.
    pub fn container(&self) -> &Container {
        &self.vfio.container
    }

    /// Maps BAR `index` (0-5) for register access.
    pub fn map_bar(&self, index: u32) -> Result<Bar> {
        let bad = |reason: &str| VfioError::Bar {
            addr: self.addr,
            index,
            reason: reason.to_string(),
        };
        if index > 5 {
            return Err(bad("no such BAR"));
        }
        let size = self.vfio.get_region_size(index) as usize;
        let flags = self.vfio.get_region_flags(index);
        if size == 0 {
            return Err(bad("not implemented by the device"));
        }
        if flags & VFIO_REGION_INFO_FLAG_MMAP == 0 {
            return Err(bad("VFIO does not allow mapping it (not page aligned?)"));
        }
        let offset = self.vfio.get_region_offset(index);
        let mut prot = 0;
        if flags & VFIO_REGION_INFO_FLAG_READ != 0 {
            prot |= libc::PROT_READ;
        }
        if flags & VFIO_REGION_INFO_FLAG_WRITE != 0 {
            prot |= libc::PROT_WRITE;
        }
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.vfio.vfio);
        // SAFETY: mapping a region of the VFIO device fd at the offset and
        // size VFIO reported; the result is checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                prot,
                libc::MAP_SHARED,
                fd,
                offset as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(VfioError::io(
                format!("{}: cannot map BAR {index}", self.addr),
                std::io::Error::last_os_error(),
            ));
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| bad("mapped at address 0"))?;
        let owner = BarMapping {
            ptr: p as usize,
            len: size,
            _dev: self.vfio.clone(),
        };
        // SAFETY: `ptr..ptr+size` is the mapping just made; `owner` unmaps it
        // only when dropped and keeps the device fd open until then.
        Ok(unsafe { Bar::from_raw_parts(ptr, size, Box::new(owner)) })
    }

    /// Reads `buf.len()` bytes of configuration space at `off`.
    pub fn config_read(&self, off: u64, buf: &mut [u8]) -> Result<()> {
        let base = self.vfio.get_region_offset(VFIO_PCI_CONFIG_REGION_INDEX);
        self.file()
            .read_exact_at(buf, base + off)
            .map_err(|e| VfioError::io(format!("{}: config read at {off:#x}", self.addr), e))
    }

    /// Writes `buf` to configuration space at `off`.
    pub fn config_write(&self, off: u64, buf: &[u8]) -> Result<()> {
        let base = self.vfio.get_region_offset(VFIO_PCI_CONFIG_REGION_INDEX);
        self.file()
            .write_all_at(buf, base + off)
            .map_err(|e| VfioError::io(format!("{}: config write at {off:#x}", self.addr), e))
    }

    /// Reads a 16-bit configuration register.
    pub fn config_read_u16(&self, off: u64) -> Result<u16> {
        let mut b = [0u8; 2];
        self.config_read(off, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    /// Writes a 16-bit configuration register.
    pub fn config_write_u16(&self, off: u64, val: u16) -> Result<()> {
        self.config_write(off, &val.to_le_bytes())
    }

    /// Lets the function master the bus (DMA) and decode its memory BARs.
    pub fn set_bus_master(&self, on: bool) -> Result<()> {
        let cmd = self.config_read_u16(PCI_COMMAND)?;
        let new = if on {
            cmd | PCI_COMMAND_MASTER | PCI_COMMAND_MEMORY
        } else {
            cmd & !PCI_COMMAND_MASTER
        };
        if new != cmd {
            self.config_write_u16(PCI_COMMAND, new)?;
        }
        Ok(())
    }

    /// Enables `vectors` MSI-X vectors, each signalled on its own eventfd
    /// (MSI-X enable in config space is done by the kernel's vfio-pci).
    pub fn enable_msix(&self, vectors: u32) -> Result<Vec<Interrupt>> {
        let irqs = (0..vectors)
            .map(|_| Interrupt::new())
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| VfioError::io(format!("{}: eventfd", self.addr), e))?;
        let available = self
            .vfio
            .get_irq_info(VFIO_PCI_MSIX_IRQ_INDEX)
            .map_or(0, |i| i.count);
        if vectors == 0 || vectors > available {
            return Err(VfioError::io(
                format!("{}: MSI-X", self.addr),
                std::io::Error::other(format!(
                    "{vectors} vectors asked for, the function has {available}"
                )),
            ));
        }
        self.vfio
            .enable_msix(irqs.iter().map(Interrupt::eventfd).collect())
            .map_err(|e| VfioError::vfio(format!("{}: enable MSI-X", self.addr), e))?;
        Ok(irqs)
    }

    /// Disables MSI-X (the vectors' eventfds stop being signalled).
    pub fn disable_msix(&self) -> Result<()> {
        self.vfio
            .disable_msix()
            .map_err(|e| VfioError::vfio(format!("{}: disable MSI-X", self.addr), e))
    }

    /// Function-level reset through VFIO (FLR, or whatever reset the kernel
    /// has for the function). A no-op when the function has none.
    pub fn reset(&self) {
        self.vfio.reset();
    }

    fn file(&self) -> std::mem::ManuallyDrop<fs::File> {
        use std::os::fd::FromRawFd;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.vfio.vfio);
        // SAFETY: the fd belongs to `self.vfio`, which outlives the borrow;
        // ManuallyDrop keeps the File from closing it.
        std::mem::ManuallyDrop::new(unsafe { fs::File::from_raw_fd(fd) })
    }
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("addr", &self.addr)
            .field(
                "id",
                &format_args!("{:04x}:{:04x}", self.vendor, self.device),
            )
            .field("group", &self.group)
            .finish()
    }
}

struct BarMapping {
    ptr: usize,
    len: usize,
    _dev: Arc<DevHandle>,
}

impl Drop for BarMapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping `map_bar` made; the Bar that
        // owned this is being dropped, so no access can follow.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

fn open_device_error(addr: PciAddr, group: u32, e: vfio_ioctls::VfioError) -> VfioError {
    use vfio_ioctls::VfioError as E;
    match e {
        E::OpenGroup(source, _) => open_error(format!("/dev/vfio/{group}"), source),
        E::GroupViable => VfioError::GroupNotViable {
            addr,
            group,
            others: vec![
                "(the kernel says so; see /sys/kernel/iommu_groups/{group}/devices)".into(),
            ],
        },
        E::ContainerSetIOMMU(errno) if errno.errno() == libc::EPERM => VfioError::vfio(
            format!(
                "{addr}: the IOMMU refused type1 mode (EPERM): it has no interrupt remapping. \
                 Enable it (intel_iommu=on with interrupt remapping; in QEMU: \
                 -machine kernel-irqchip=split -device intel-iommu,intremap=on) or load \
                 vfio_iommu_type1 with allow_unsafe_interrupts=1"
            ),
            E::ContainerSetIOMMU(errno),
        ),
        E::ContainerSetIOMMU(errno) if errno.errno() == libc::ENODEV => VfioError::vfio(
            format!("{addr}: no type1 IOMMU backend: `modprobe vfio_iommu_type1`"),
            E::ContainerSetIOMMU(errno),
        ),
        other => VfioError::vfio(format!("{addr}: cannot open with VFIO"), other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::fake::{FakeFn, FakeSysfs};
    use std::os::unix::fs::symlink;

    fn vf(addr: &str, driver: Option<&'static str>, group: Option<u32>) -> FakeFn<'static> {
        FakeFn {
            addr: addr.parse().unwrap(),
            vendor: 0x8086,
            device: 0x10ca,
            class: 0x020000,
            driver,
            iommu_group: group,
            numa_node: -1,
            netdevs: &[],
            total_vfs: None,
        }
    }

    struct Tree {
        _tmp: tempfile::TempDir,
        fake: FakeSysfs,
        opts: OpenOpts,
    }

    fn tree() -> Tree {
        let tmp = tempfile::tempdir().unwrap();
        let fake = FakeSysfs::new(&tmp.path().join("sys")).unwrap();
        let dev = tmp.path().join("dev-vfio");
        fs::create_dir_all(&dev).unwrap();
        let opts = OpenOpts {
            sysfs_root: fake.root().to_path_buf(),
            dev_vfio: dev,
            noiommu: false,
        };
        Tree {
            _tmp: tmp,
            fake,
            opts,
        }
    }

    fn add_to_group(t: &Tree, group: u32, addr: &str) {
        let link = t
            .fake
            .root()
            .join(format!("kernel/iommu_groups/{group}/devices/{addr}"));
        symlink("../../../../bus/pci/devices/".to_string() + addr, link).unwrap();
    }

    #[test]
    fn not_bound_prints_the_bind_commands() {
        let t = tree();
        t.fake
            .add(&vf("0000:00:05.0", Some("igbvf"), Some(7)))
            .unwrap();
        let e = preflight("00:05.0".parse().unwrap(), &t.opts).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, VfioError::NotBound { .. }), "{msg}");
        assert!(msg.contains("bound to igbvf"), "{msg}");
        assert!(
            msg.contains("echo 0000:00:05.0 > /sys/bus/pci/devices/0000:00:05.0/driver/unbind"),
            "{msg}"
        );
        assert!(
            msg.contains("echo vfio-pci > /sys/bus/pci/devices/0000:00:05.0/driver_override"),
            "{msg}"
        );
        assert!(
            msg.contains("echo 0000:00:05.0 > /sys/bus/pci/drivers_probe"),
            "{msg}"
        );

        t.fake.unbind("0000:00:05.0".parse().unwrap()).unwrap();
        let msg = preflight("00:05.0".parse().unwrap(), &t.opts)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("bound to no driver") && !msg.contains("unbind"),
            "{msg}"
        );
    }

    #[test]
    fn missing_function_is_named() {
        let t = tree();
        let e = preflight("00:09.0".parse().unwrap(), &t.opts).unwrap_err();
        assert!(
            e.to_string().contains("no PCI function 0000:00:09.0"),
            "{e}"
        );
    }

    #[test]
    fn no_iommu_group_means_no_iommu() {
        let t = tree();
        t.fake
            .add(&vf("0000:00:05.0", Some("vfio-pci"), None))
            .unwrap();
        let e = preflight("00:05.0".parse().unwrap(), &t.opts).unwrap_err();
        assert!(matches!(e, VfioError::NoIommu { .. }), "{e}");
        assert!(e.to_string().contains("intel_iommu=on"), "{e}");
    }

    #[test]
    fn noiommu_group_is_refused_unless_asked() {
        let mut t = tree();
        t.fake
            .add(&vf("0000:00:05.0", Some("vfio-pci"), Some(3)))
            .unwrap();
        fs::write(
            t.fake.root().join("kernel/iommu_groups/3/name"),
            "vfio-noiommu\n",
        )
        .unwrap();
        fs::write(t.opts.dev_vfio.join("noiommu-3"), "").unwrap();
        let e = preflight("00:05.0".parse().unwrap(), &t.opts).unwrap_err();
        assert!(
            matches!(e, VfioError::NoIommuRefused { group: 3, .. }),
            "{e}"
        );
        t.opts.noiommu = true;
        let e = preflight("00:05.0".parse().unwrap(), &t.opts).unwrap_err();
        assert!(matches!(e, VfioError::NoIommuUnsupported { .. }), "{e}");
    }

    #[test]
    fn group_with_a_kernel_bound_member_names_it() {
        let t = tree();
        t.fake
            .add(&vf("0000:00:05.0", Some("vfio-pci"), Some(9)))
            .unwrap();
        t.fake
            .add(&vf("0000:00:05.1", Some("e1000e"), Some(9)))
            .unwrap();
        t.fake.add(&vf("0000:00:05.2", None, Some(9))).unwrap();
        for a in ["0000:00:05.0", "0000:00:05.1", "0000:00:05.2"] {
            add_to_group(&t, 9, a);
        }
        fs::write(t.opts.dev_vfio.join("9"), "").unwrap();
        let e = preflight("00:05.0".parse().unwrap(), &t.opts).unwrap_err();
        match &e {
            VfioError::GroupNotViable { group, others, .. } => {
                assert_eq!(*group, 9);
                assert_eq!(others, &vec!["0000:00:05.1 (e1000e)".to_string()]);
            }
            _ => panic!("{e}"),
        }
    }

    #[test]
    fn missing_group_node_and_the_good_case() {
        let t = tree();
        t.fake
            .add(&vf("0000:00:05.0", Some("vfio-pci"), Some(4)))
            .unwrap();
        add_to_group(&t, 4, "0000:00:05.0");
        let e = preflight("00:05.0".parse().unwrap(), &t.opts).unwrap_err();
        assert!(matches!(e, VfioError::GroupNodeMissing { .. }), "{e}");
        assert!(e.to_string().contains("modprobe vfio-pci"), "{e}");
        fs::write(t.opts.dev_vfio.join("4"), "").unwrap();
        let p = preflight("00:05.0".parse().unwrap(), &t.opts).unwrap();
        assert_eq!((p.vendor, p.device, p.group), (0x8086, 0x10ca, 4));
        assert_eq!(p.group_node, t.opts.dev_vfio.join("4"));
    }
}
