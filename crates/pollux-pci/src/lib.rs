//! PCI addresses and sysfs discovery.
//!
//! Everything here reads the kernel's view of PCI functions under a
//! configurable sysfs root ([`Sysfs::new`]), so unit tests run on a fake tree
//! laid out as the kernel lays it out (`bus/pci/devices/<addr>` symlinks into
//! `devices/pci<dom>:<bus>/...`, `driver`, `iommu_group`, `physfn` and
//! `virtfnN` symlinks). The attribute names and formats are those of
//! Documentation/ABI/testing/sysfs-bus-pci in Linux.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Errors of PCI address parsing and sysfs discovery.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A PCI address string that is not `DDDD:BB:DD.F` or `BB:DD.F`.
    #[error("invalid PCI address {input:?}: {reason} (expected DDDD:BB:DD.F or BB:DD.F, hex)")]
    InvalidAddr { input: String, reason: &'static str },
    /// No function with this address under the sysfs root.
    #[error("no PCI function {addr} under {root}")]
    NoSuchFunction { addr: PciAddr, root: PathBuf },
    /// Reading a sysfs attribute or link failed.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A sysfs attribute held something the kernel does not write there.
    #[error("unexpected content {value:?} in {path}: {reason}")]
    Malformed {
        path: PathBuf,
        value: String,
        reason: &'static str,
    },
}

/// Result of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A PCI function address: domain, bus, device (0-31), function (0-7).
///
/// Parses the full `0000:00:19.0` and the short `00:19.0` form (domain 0),
/// case-insensitively; displays in the full lower-case form the kernel uses
/// for sysfs names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddr {
    domain: u32,
    bus: u8,
    device: u8,
    function: u8,
}

impl PciAddr {
    /// Builds an address; `None` when device > 31 or function > 7. Domains
    /// above 0xffff exist (Intel VMD) and print with more than four digits,
    /// as the kernel's `%04x` does.
    pub fn new(domain: u32, bus: u8, device: u8, function: u8) -> Option<Self> {
        (device < 32 && function < 8).then_some(Self {
            domain,
            bus,
            device,
            function,
        })
    }
    pub fn domain(&self) -> u32 {
        self.domain
    }
    pub fn bus(&self) -> u8 {
        self.bus
    }
    pub fn device(&self) -> u8 {
        self.device
    }
    pub fn function(&self) -> u8 {
        self.function
    }
}

impl fmt::Display for PciAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The kernel's format, drivers/pci/probe.c pci_setup_device():
        // "%04x:%02x:%02x.%d".
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

impl FromStr for PciAddr {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self> {
        let bad = |reason| Error::InvalidAddr {
            input: input.to_owned(),
            reason,
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(bad("empty"));
        }
        let (head, function) = s
            .rsplit_once('.')
            .ok_or_else(|| bad("no '.' before the function"))?;
        let parts: Vec<&str> = head.split(':').collect();
        let (domain, bus, device) = match parts.as_slice() {
            [d, b, dev] => (Some(*d), *b, *dev),
            [b, dev] => (None, *b, *dev),
            _ => return Err(bad("wrong number of ':' separated fields")),
        };
        fn hex<T: TryFrom<u32>>(field: &str, max_digits: usize) -> Option<T> {
            if field.is_empty()
                || field.len() > max_digits
                || !field.bytes().all(|c| c.is_ascii_hexdigit())
            {
                return None;
            }
            T::try_from(u32::from_str_radix(field, 16).ok()?).ok()
        }
        let domain = match domain {
            Some(d) => hex::<u32>(d, 8).ok_or_else(|| bad("domain is not 1-8 hex digits"))?,
            None => 0,
        };
        let bus = hex::<u8>(bus, 2).ok_or_else(|| bad("bus is not 1-2 hex digits"))?;
        let device = hex::<u8>(device, 2).ok_or_else(|| bad("device is not 1-2 hex digits"))?;
        if device > 31 {
            return Err(bad("device is above 0x1f"));
        }
        let function = hex::<u8>(function, 1).ok_or_else(|| bad("function is not one digit"))?;
        if function > 7 {
            return Err(bad("function is above 7"));
        }
        Ok(Self {
            domain,
            bus,
            device,
            function,
        })
    }
}

impl serde::Serialize for PciAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PciAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The driver a function is bound to, sorted into the kinds that matter to a
/// userspace data plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DriverKind {
    /// A kernel network (or other) driver owns the function.
    Kernel,
    /// A userspace-I/O driver: vfio-pci, uio_pci_generic or igb_uio.
    Userspace,
    /// No driver is bound.
    None,
}

/// Drivers that hand a function to userspace (DPDK mode in sriov-cni's terms:
/// sriov-cni pkg/utils lists vfio-pci, uio_pci_generic and igb_uio).
pub const USERSPACE_DRIVERS: [&str; 3] = ["vfio-pci", "uio_pci_generic", "igb_uio"];

impl DriverKind {
    /// Kind of the driver `name` (`None` when unbound).
    pub fn of(name: Option<&str>) -> Self {
        match name {
            None => DriverKind::None,
            Some(n) if USERSPACE_DRIVERS.contains(&n) => DriverKind::Userspace,
            Some(_) => DriverKind::Kernel,
        }
    }
}

/// What sysfs says about one PCI function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciFunction {
    pub addr: PciAddr,
    pub vendor: u16,
    pub device: u16,
    /// 24-bit class code: base class, sub class, programming interface.
    pub class: u32,
    /// Bound driver's name, `None` if unbound.
    pub driver: Option<String>,
    /// `driver_override` if set (the kernel prints `(null)` when not).
    pub driver_override: Option<String>,
    /// IOMMU group number; `None` without an IOMMU.
    pub iommu_group: Option<u32>,
    /// NUMA node; `None` when the kernel reports -1 or has no NUMA.
    pub numa_node: Option<u32>,
    /// Names of the network interfaces under `net/`, sorted.
    pub netdevs: Vec<String>,
    /// For a VF: its PF (`physfn` link).
    pub physfn: Option<PciAddr>,
    /// For a PF: SR-IOV capability (`sriov_totalvfs`, `sriov_numvfs`).
    pub sriov: Option<SriovCaps>,
    /// For a PF: its VFs by index (`virtfnN` links), sorted by N.
    pub virtfns: Vec<(u32, PciAddr)>,
}

/// SR-IOV counts of a PF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SriovCaps {
    pub total_vfs: u32,
    pub num_vfs: u32,
}

impl PciFunction {
    /// Network controller class (base class 0x02).
    pub fn is_network(&self) -> bool {
        self.class >> 16 == 0x02
    }
    /// Is this function a VF (has a `physfn` link)?
    pub fn is_vf(&self) -> bool {
        self.physfn.is_some()
    }
    pub fn driver_kind(&self) -> DriverKind {
        DriverKind::of(self.driver.as_deref())
    }
    /// Known name of the vendor:device pair, if in [`device_name`]'s table.
    pub fn name(&self) -> Option<&'static str> {
        device_name(self.vendor, self.device)
    }
}

/// Names of the NICs Pollux meets (from the PCI ID repository's pci.ids).
/// `pollux devices` reads the system's pci.ids when present and falls back to
/// this table.
pub fn device_name(vendor: u16, device: u16) -> Option<&'static str> {
    Some(match (vendor, device) {
        (0x8086, 0x10c9) => "82576 Gigabit Network Connection",
        (0x8086, 0x10ca) => "82576 Virtual Function",
        (0x8086, 0x1520) => "I350 Ethernet Controller Virtual Function",
        (0x8086, 0x1521) => "I350 Gigabit Network Connection",
        (0x8086, 0x10fb) => "82599ES 10-Gigabit SFI/SFP+ Network Connection",
        (0x8086, 0x10ed) => "82599 Ethernet Controller Virtual Function",
        (0x8086, 0x1572) => "Ethernet Controller X710 for 10GbE SFP+",
        (0x8086, 0x154c) => "Ethernet Virtual Function 700 Series",
        (0x8086, 0x1889) => "Ethernet Adaptive Virtual Function",
        (0x8086, 0x100e) => "82540EM Gigabit Ethernet Controller",
        (0x8086, 0x10d3) => "82574L Gigabit Network Connection",
        (0x8086, 0x15bc) => "Ethernet Connection (7) I219-V",
        (0x1af4, 0x1000) => "Virtio network device",
        (0x1af4, 0x1041) => "Virtio 1.0 network device",
        (0x15b3, 0x1016) => "MT27710 Family [ConnectX-4 Lx Virtual Function]",
        (0x15b3, 0x101e) => "ConnectX Family mlx5Gen Virtual Function",
        _ => return None,
    })
}

/// Looks up `vendor:device` in a pci.ids file (format of the PCI ID
/// repository: vendor lines `vvvv  Name`, device lines `\tdddd  Name`).
/// `None` when the file is missing or lacks the pair.
pub fn pci_ids_name(pci_ids: &Path, vendor: u16, device: u16) -> Option<String> {
    let text = fs::read(pci_ids).ok()?;
    let text = String::from_utf8_lossy(&text);
    let vendor_key = format!("{vendor:04x}");
    let device_key = format!("{device:04x}");
    let mut in_vendor = false;
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if !line.starts_with('\t') {
            // A new vendor (or the class section `C xx`, which ends the
            // vendor list).
            if in_vendor {
                return None;
            }
            in_vendor = line.len() > 4
                && line[..4].eq_ignore_ascii_case(&vendor_key)
                && line.as_bytes()[4] == b' ';
        } else if in_vendor && !line.starts_with("\t\t") {
            let rest = &line[1..];
            if rest.len() > 4
                && rest[..4].eq_ignore_ascii_case(&device_key)
                && rest.as_bytes()[4] == b' '
            {
                return Some(rest[4..].trim().to_owned());
            }
        }
    }
    None
}

/// The sysfs tree rooted at some directory (`/sys` on a real system).
#[derive(Clone, Debug)]
pub struct Sysfs {
    root: PathBuf,
}

impl Default for Sysfs {
    fn default() -> Self {
        Self::new("/sys")
    }
}

impl Sysfs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/bus/pci/devices`.
    pub fn pci_devices_dir(&self) -> PathBuf {
        self.root.join("bus/pci/devices")
    }

    /// `<root>/bus/pci/drivers`.
    pub fn pci_drivers_dir(&self) -> PathBuf {
        self.root.join("bus/pci/drivers")
    }

    /// `<root>/bus/pci/devices/<addr>`.
    pub fn device_dir(&self, addr: PciAddr) -> PathBuf {
        self.pci_devices_dir().join(addr.to_string())
    }

    /// `<root>/bus/pci/devices/<addr>/<attr>`.
    pub fn attr_path(&self, addr: PciAddr, attr: &str) -> PathBuf {
        self.device_dir(addr).join(attr)
    }

    /// Every PCI function the kernel lists, sorted by address. Entries whose
    /// names are not PCI addresses are skipped.
    pub fn list(&self) -> Result<Vec<PciAddr>> {
        let dir = self.pci_devices_dir();
        let entries = fs::read_dir(&dir).map_err(|source| Error::Read {
            path: dir.clone(),
            source,
        })?;
        let mut out = Vec::new();
        for e in entries {
            let e = e.map_err(|source| Error::Read {
                path: dir.clone(),
                source,
            })?;
            if let Some(addr) = e.file_name().to_str().and_then(|n| n.parse().ok()) {
                out.push(addr);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Does the function exist?
    pub fn exists(&self, addr: PciAddr) -> bool {
        self.device_dir(addr).exists()
    }

    fn require(&self, addr: PciAddr) -> Result<()> {
        if self.exists(addr) {
            Ok(())
        } else {
            Err(Error::NoSuchFunction {
                addr,
                root: self.root.clone(),
            })
        }
    }

    /// Reads attribute `attr` of `addr`, trimmed; `Ok(None)` if absent.
    pub fn read_attr(&self, addr: PciAddr, attr: &str) -> Result<Option<String>> {
        let path = self.attr_path(addr, attr);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).trim().to_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Read { path, source }),
        }
    }

    fn read_hex(&self, addr: PciAddr, attr: &str, max: u32) -> Result<u32> {
        let path = self.attr_path(addr, attr);
        let v = self.read_attr(addr, attr)?.ok_or_else(|| Error::Read {
            path: path.clone(),
            source: io::Error::from(io::ErrorKind::NotFound),
        })?;
        let digits = v.strip_prefix("0x").unwrap_or(&v);
        match u32::from_str_radix(digits, 16) {
            Ok(n) if n <= max => Ok(n),
            _ => Err(Error::Malformed {
                path,
                value: v,
                reason: "not a hex number in range",
            }),
        }
    }

    fn read_dec_opt(&self, addr: PciAddr, attr: &str) -> Result<Option<u32>> {
        match self.read_attr(addr, attr)? {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| Error::Malformed {
                path: self.attr_path(addr, attr),
                value: v,
                reason: "not a decimal number",
            }),
        }
    }

    /// Target file name of symlink `attr` of `addr`, `Ok(None)` if absent.
    fn link_name(&self, addr: PciAddr, attr: &str) -> Result<Option<String>> {
        let path = self.attr_path(addr, attr);
        match fs::read_link(&path) {
            Ok(target) => Ok(target
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_owned)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Read { path, source }),
        }
    }

    fn link_addr(&self, addr: PciAddr, attr: &str) -> Result<Option<PciAddr>> {
        match self.link_name(addr, attr)? {
            None => Ok(None),
            Some(name) => name.parse().map(Some).map_err(|_| Error::Malformed {
                path: self.attr_path(addr, attr),
                value: name,
                reason: "link does not point at a PCI function",
            }),
        }
    }

    /// Vendor ID.
    pub fn vendor(&self, addr: PciAddr) -> Result<u16> {
        self.require(addr)?;
        self.read_hex(addr, "vendor", 0xffff).map(|v| v as u16)
    }

    /// Device ID.
    pub fn device(&self, addr: PciAddr) -> Result<u16> {
        self.require(addr)?;
        self.read_hex(addr, "device", 0xffff).map(|v| v as u16)
    }

    /// 24-bit class code.
    pub fn class(&self, addr: PciAddr) -> Result<u32> {
        self.require(addr)?;
        self.read_hex(addr, "class", 0xff_ffff)
    }

    /// Name of the bound driver, `None` if unbound.
    pub fn driver(&self, addr: PciAddr) -> Result<Option<String>> {
        self.require(addr)?;
        self.link_name(addr, "driver")
    }

    /// `driver_override`, `None` when unset (`(null)`) or unsupported.
    pub fn driver_override(&self, addr: PciAddr) -> Result<Option<String>> {
        self.require(addr)?;
        Ok(self
            .read_attr(addr, "driver_override")?
            .filter(|v| !v.is_empty() && v != "(null)"))
    }

    /// IOMMU group number, `None` without an IOMMU (no `iommu_group` link).
    pub fn iommu_group(&self, addr: PciAddr) -> Result<Option<u32>> {
        self.require(addr)?;
        match self.link_name(addr, "iommu_group")? {
            None => Ok(None),
            Some(n) => n.parse().map(Some).map_err(|_| Error::Malformed {
                path: self.attr_path(addr, "iommu_group"),
                value: n,
                reason: "IOMMU group link name is not a number",
            }),
        }
    }

    /// NUMA node, `None` if the kernel says -1 or has no `numa_node`.
    pub fn numa_node(&self, addr: PciAddr) -> Result<Option<u32>> {
        self.require(addr)?;
        match self.read_attr(addr, "numa_node")? {
            None => Ok(None),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if n < 0 => Ok(None),
                Ok(n) if n <= u32::MAX as i64 => Ok(Some(n as u32)),
                _ => Err(Error::Malformed {
                    path: self.attr_path(addr, "numa_node"),
                    value: v,
                    reason: "not a NUMA node number",
                }),
            },
        }
    }

    /// Network interface names under `net/` (and, for virtio-net, under the
    /// `virtioN/net/` child device), sorted; empty if none.
    pub fn netdevs(&self, addr: PciAddr) -> Result<Vec<String>> {
        self.require(addr)?;
        let mut names = Vec::new();
        let dev = self.device_dir(addr);
        let mut dirs = vec![dev.join("net")];
        for e in fs::read_dir(&dev).map_err(|source| Error::Read {
            path: dev.clone(),
            source,
        })? {
            let e = e.map_err(|source| Error::Read {
                path: dev.clone(),
                source,
            })?;
            if e.file_name().to_string_lossy().starts_with("virtio") {
                dirs.push(e.path().join("net"));
            }
        }
        for dir in dirs {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(Error::Read { path: dir, source }),
            };
            for e in entries {
                let e = e.map_err(|source| Error::Read {
                    path: dir.clone(),
                    source,
                })?;
                if let Some(n) = e.file_name().to_str() {
                    names.push(n.to_owned());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// The PF of a VF (`physfn`), `None` for anything else.
    pub fn physfn(&self, addr: PciAddr) -> Result<Option<PciAddr>> {
        self.require(addr)?;
        self.link_addr(addr, "physfn")
    }

    /// The VFs of a PF by index (`virtfnN`), sorted by index.
    pub fn virtfns(&self, addr: PciAddr) -> Result<Vec<(u32, PciAddr)>> {
        self.require(addr)?;
        let dir = self.device_dir(addr);
        let entries = fs::read_dir(&dir).map_err(|source| Error::Read {
            path: dir.clone(),
            source,
        })?;
        let mut out = Vec::new();
        for e in entries {
            let e = e.map_err(|source| Error::Read {
                path: dir.clone(),
                source,
            })?;
            let name = e.file_name();
            let Some(idx) = name
                .to_str()
                .and_then(|n| n.strip_prefix("virtfn"))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let attr = format!("virtfn{idx}");
            if let Some(vf) = self.link_addr(addr, &attr)? {
                out.push((idx, vf));
            }
        }
        out.sort();
        Ok(out)
    }

    /// VF `index` of PF `pf`, `None` if that `virtfnN` link is absent.
    pub fn virtfn(&self, pf: PciAddr, index: u32) -> Result<Option<PciAddr>> {
        self.require(pf)?;
        self.link_addr(pf, &format!("virtfn{index}"))
    }

    /// The index of VF `vf` under its PF, with the PF; `None` if not a VF.
    pub fn vf_index(&self, vf: PciAddr) -> Result<Option<(PciAddr, u32)>> {
        let Some(pf) = self.physfn(vf)? else {
            return Ok(None);
        };
        Ok(self
            .virtfns(pf)?
            .into_iter()
            .find(|(_, a)| *a == vf)
            .map(|(i, _)| (pf, i)))
    }

    /// SR-IOV counts, `None` if the function has no SR-IOV capability.
    pub fn sriov(&self, addr: PciAddr) -> Result<Option<SriovCaps>> {
        self.require(addr)?;
        let Some(total_vfs) = self.read_dec_opt(addr, "sriov_totalvfs")? else {
            return Ok(None);
        };
        let num_vfs = self.read_dec_opt(addr, "sriov_numvfs")?.unwrap_or(0);
        Ok(Some(SriovCaps { total_vfs, num_vfs }))
    }

    /// Everything about one function.
    pub fn function(&self, addr: PciAddr) -> Result<PciFunction> {
        self.require(addr)?;
        Ok(PciFunction {
            addr,
            vendor: self.vendor(addr)?,
            device: self.device(addr)?,
            class: self.class(addr)?,
            driver: self.driver(addr)?,
            driver_override: self.driver_override(addr)?,
            iommu_group: self.iommu_group(addr)?,
            numa_node: self.numa_node(addr)?,
            netdevs: self.netdevs(addr)?,
            physfn: self.physfn(addr)?,
            sriov: self.sriov(addr)?,
            virtfns: self.virtfns(addr)?,
        })
    }

    /// The PCI function behind network interface `ifname`
    /// (`class/net/<ifname>/device`), `None` for a non-PCI interface.
    pub fn netdev_pci_addr(&self, ifname: &str) -> Result<Option<PciAddr>> {
        if ifname.is_empty() || ifname.contains('/') || ifname == "." || ifname == ".." {
            return Ok(None);
        }
        let path = self.root.join("class/net").join(ifname).join("device");
        match fs::read_link(&path) {
            Ok(t) => Ok(t
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse().ok())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Read { path, source }),
        }
    }
}

/// Builds fake sysfs trees laid out as the kernel lays them out. Public so
/// that other crates' unit tests (pollux-sriov, pollux-cni, the CLI) use the
/// same layout; it only ever writes below the root it is given. Behind the
/// `testing` feature: it is a test double, not something an application links.
#[cfg(any(test, feature = "testing"))]
pub mod fake {
    use super::PciAddr;
    use std::fs;
    use std::io;
    use std::os::unix::fs::symlink;
    use std::path::{Path, PathBuf};

    /// One function to create.
    #[derive(Clone, Debug)]
    pub struct FakeFn<'a> {
        pub addr: PciAddr,
        pub vendor: u16,
        pub device: u16,
        pub class: u32,
        pub driver: Option<&'a str>,
        pub iommu_group: Option<u32>,
        /// Written as is; the kernel writes -1 without NUMA.
        pub numa_node: i32,
        pub netdevs: &'a [&'a str],
        pub total_vfs: Option<u32>,
    }

    /// A fake sysfs root.
    #[derive(Debug)]
    pub struct FakeSysfs {
        root: PathBuf,
    }

    impl FakeSysfs {
        /// Lays out the skeleton (`bus/pci/{devices,drivers}`, `devices`,
        /// `kernel/iommu_groups`, `class/net`) under `root`.
        pub fn new(root: &Path) -> io::Result<Self> {
            for d in [
                "bus/pci/devices",
                "bus/pci/drivers",
                "devices",
                "kernel/iommu_groups",
                "class/net",
            ] {
                fs::create_dir_all(root.join(d))?;
            }
            fs::write(root.join("bus/pci/drivers_probe"), "")?;
            Ok(Self {
                root: root.to_owned(),
            })
        }

        pub fn root(&self) -> &Path {
            &self.root
        }

        /// Real directory of a function: `devices/pci<dom>:<bus>/<addr>`.
        pub fn real_dir(&self, addr: PciAddr) -> PathBuf {
            self.root
                .join(format!(
                    "devices/pci{:04x}:{:02x}",
                    addr.domain(),
                    addr.bus()
                ))
                .join(addr.to_string())
        }

        /// Creates a function with its attributes and links.
        pub fn add(&self, f: &FakeFn<'_>) -> io::Result<()> {
            let dir = self.real_dir(f.addr);
            fs::create_dir_all(&dir)?;
            fs::write(dir.join("vendor"), format!("0x{:04x}\n", f.vendor))?;
            fs::write(dir.join("device"), format!("0x{:04x}\n", f.device))?;
            fs::write(dir.join("class"), format!("0x{:06x}\n", f.class))?;
            fs::write(dir.join("numa_node"), format!("{}\n", f.numa_node))?;
            fs::write(dir.join("driver_override"), "(null)\n")?;
            fs::write(dir.join("reset"), "")?;
            symlink(
                format!(
                    "../../../devices/pci{:04x}:{:02x}/{}",
                    f.addr.domain(),
                    f.addr.bus(),
                    f.addr
                ),
                self.root.join("bus/pci/devices").join(f.addr.to_string()),
            )?;
            if let Some(g) = f.iommu_group {
                let gdir = self.root.join(format!("kernel/iommu_groups/{g}/devices"));
                fs::create_dir_all(&gdir)?;
                symlink(
                    format!("../../../../kernel/iommu_groups/{g}"),
                    dir.join("iommu_group"),
                )?;
            }
            if let Some(d) = f.driver {
                self.bind(f.addr, d)?;
            }
            for n in f.netdevs {
                self.add_netdev(f.addr, n)?;
            }
            if let Some(t) = f.total_vfs {
                fs::write(dir.join("sriov_totalvfs"), format!("{t}\n"))?;
                fs::write(dir.join("sriov_numvfs"), "0\n")?;
                fs::write(dir.join("sriov_drivers_autoprobe"), "1\n")?;
            }
            Ok(())
        }

        /// Makes `driver` the function's driver (creates the driver dir).
        pub fn bind(&self, addr: PciAddr, driver: &str) -> io::Result<()> {
            let ddir = self.root.join("bus/pci/drivers").join(driver);
            fs::create_dir_all(&ddir)?;
            for f in ["bind", "unbind", "new_id"] {
                if !ddir.join(f).exists() {
                    fs::write(ddir.join(f), "")?;
                }
            }
            let link = self.real_dir(addr).join("driver");
            let _ = fs::remove_file(&link);
            symlink(format!("../../../bus/pci/drivers/{driver}"), link)
        }

        /// Removes the `driver` link.
        pub fn unbind(&self, addr: PciAddr) -> io::Result<()> {
            match fs::remove_file(self.real_dir(addr).join("driver")) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        }

        /// Adds a `net/<name>` entry and the `class/net/<name>` link.
        pub fn add_netdev(&self, addr: PciAddr, name: &str) -> io::Result<()> {
            let ndir = self.real_dir(addr).join("net").join(name);
            fs::create_dir_all(&ndir)?;
            let class = self.root.join("class/net").join(name);
            let _ = fs::remove_file(&class);
            let rel = format!(
                "../../devices/pci{:04x}:{:02x}/{}/net/{}",
                addr.domain(),
                addr.bus(),
                addr,
                name
            );
            symlink(rel, &class)?;
            let dev = ndir.join("device");
            let _ = fs::remove_file(&dev);
            symlink("../../../".to_string() + &addr.to_string(), dev)
        }

        /// Adds a VF `index` at `vf` under `pf`: the function, `physfn`,
        /// `virtfnN`, and updates `sriov_numvfs` to the count of links.
        pub fn add_vf(&self, pf: PciAddr, index: u32, vf: &FakeFn<'_>) -> io::Result<()> {
            self.attach_vf(pf, index, vf)?;
            let pdir = self.real_dir(pf);
            let n = fs::read_dir(&pdir)?
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("virtfn"))
                .count();
            fs::write(pdir.join("sriov_numvfs"), format!("{n}\n"))
        }

        /// Like [`add_vf`](Self::add_vf) but leaves `sriov_numvfs` alone:
        /// for code that plays the kernel while someone else writes that
        /// file, where a rewrite after the links appear could undo their
        /// next write.
        pub fn attach_vf(&self, pf: PciAddr, index: u32, vf: &FakeFn<'_>) -> io::Result<()> {
            self.add(vf)?;
            let vdir = self.real_dir(vf.addr);
            let pdir = self.real_dir(pf);
            symlink(format!("../{pf}"), vdir.join("physfn"))?;
            // The virtfn link last: code under test waits for it.
            symlink(
                format!("../{}", vf.addr),
                pdir.join(format!("virtfn{index}")),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{FakeFn, FakeSysfs};
    use super::*;

    fn a(s: &str) -> PciAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_full_and_short() {
        let x = a("0000:00:19.0");
        assert_eq!(
            (x.domain(), x.bus(), x.device(), x.function()),
            (0, 0, 0x19, 0)
        );
        assert_eq!(a("00:19.0"), x);
        assert_eq!(a("0001:AF:1f.7").to_string(), "0001:af:1f.7");
        assert_eq!(a("3:4.5").to_string(), "0000:03:04.5");
        assert_eq!(a(" 0000:02:10.1\n").to_string(), "0000:02:10.1");
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "0000:00:00.0",
            "ffff:ff:1f.7",
            "0000:03:10.2",
            "10000:00:01.0",
        ] {
            assert_eq!(a(s).to_string(), s);
        }
    }

    #[test]
    fn parse_errors_say_why() {
        let cases = [
            ("", "empty"),
            ("0000:00:19", "no '.'"),
            ("00.0", "wrong number"),
            ("0:0:0:0.0", "wrong number"),
            ("0000:00:20.0", "device is above"),
            ("0000:00:19.8", "function is above"),
            ("0000:100:19.0", "bus is not"),
            ("0000:0g:19.0", "bus is not"),
            ("0000:00:19.", "function is not"),
            ("123456789:00:19.0", "domain is not"),
            ("+000:00:19.0", "domain is not"),
            ("0000:00:-1.0", "device is not"),
        ];
        for (input, want) in cases {
            let e = input.parse::<PciAddr>().unwrap_err().to_string();
            assert!(e.contains(want), "{input:?}: {e}");
            assert!(e.contains("expected DDDD:BB:DD.F"), "{e}");
        }
    }

    #[test]
    fn new_checks_ranges() {
        assert!(PciAddr::new(0, 0, 32, 0).is_none());
        assert!(PciAddr::new(0, 0, 0, 8).is_none());
        assert_eq!(
            PciAddr::new(0, 2, 0x10, 1).unwrap().to_string(),
            "0000:02:10.1"
        );
    }

    fn fn_<'a>(
        addr: &str,
        device: u16,
        driver: Option<&'a str>,
        netdevs: &'a [&'a str],
    ) -> FakeFn<'a> {
        FakeFn {
            addr: a(addr),
            vendor: 0x8086,
            device,
            class: 0x020000,
            driver,
            iommu_group: Some(7),
            numa_node: -1,
            netdevs,
            total_vfs: None,
        }
    }

    /// A PF 0000:00:02.0 (igb, eth0, 8 VFs possible) with VF0 on vfio-pci
    /// and VF1 on igbvf, plus a SATA controller.
    fn tree() -> (tempfile::TempDir, Sysfs) {
        let t = tempfile::tempdir().unwrap();
        let f = FakeSysfs::new(t.path()).unwrap();
        let mut pf = fn_("0000:00:02.0", 0x10c9, Some("igb"), &["eth0"]);
        pf.total_vfs = Some(8);
        pf.numa_node = 0;
        f.add(&pf).unwrap();
        let mut vf0 = fn_("0000:00:10.0", 0x10ca, Some("vfio-pci"), &[]);
        vf0.iommu_group = Some(12);
        f.add_vf(a("0000:00:02.0"), 0, &vf0).unwrap();
        let mut vf1 = fn_("0000:00:10.2", 0x10ca, Some("igbvf"), &["eth1"]);
        vf1.iommu_group = Some(13);
        f.add_vf(a("0000:00:02.0"), 1, &vf1).unwrap();
        let mut sata = fn_("0000:00:1f.2", 0x2922, Some("ahci"), &[]);
        sata.class = 0x010601;
        sata.iommu_group = None;
        f.add(&sata).unwrap();
        (t, Sysfs::new(f.root()))
    }

    #[test]
    fn discovers_pf() {
        let (_t, s) = tree();
        let pf = s.function(a("00:02.0")).unwrap();
        assert_eq!((pf.vendor, pf.device, pf.class), (0x8086, 0x10c9, 0x020000));
        assert!(pf.is_network() && !pf.is_vf());
        assert_eq!(pf.driver.as_deref(), Some("igb"));
        assert_eq!(pf.driver_kind(), DriverKind::Kernel);
        assert_eq!(pf.iommu_group, Some(7));
        assert_eq!(pf.numa_node, Some(0));
        assert_eq!(pf.netdevs, vec!["eth0"]);
        assert_eq!(pf.physfn, None);
        assert_eq!(
            pf.sriov,
            Some(SriovCaps {
                total_vfs: 8,
                num_vfs: 2
            })
        );
        assert_eq!(
            pf.virtfns,
            vec![(0, a("0000:00:10.0")), (1, a("0000:00:10.2"))]
        );
        assert_eq!(pf.name(), Some("82576 Gigabit Network Connection"));
        assert_eq!(pf.driver_override, None);
    }

    #[test]
    fn discovers_vfs() {
        let (_t, s) = tree();
        let vf = s.function(a("0000:00:10.0")).unwrap();
        assert!(vf.is_vf());
        assert_eq!(vf.physfn, Some(a("0000:00:02.0")));
        assert_eq!(vf.driver_kind(), DriverKind::Userspace);
        assert_eq!(vf.iommu_group, Some(12));
        assert_eq!(vf.numa_node, None);
        assert!(vf.netdevs.is_empty());
        assert_eq!(vf.sriov, None);
        assert_eq!(vf.name(), Some("82576 Virtual Function"));
        assert_eq!(
            s.vf_index(a("0000:00:10.2")).unwrap(),
            Some((a("0000:00:02.0"), 1))
        );
        assert_eq!(s.vf_index(a("0000:00:02.0")).unwrap(), None);
        assert_eq!(
            s.virtfn(a("0000:00:02.0"), 1).unwrap(),
            Some(a("0000:00:10.2"))
        );
        assert_eq!(s.virtfn(a("0000:00:02.0"), 5).unwrap(), None);
        assert_eq!(s.netdev_pci_addr("eth1").unwrap(), Some(a("0000:00:10.2")));
        assert_eq!(s.netdev_pci_addr("nope").unwrap(), None);
        assert_eq!(s.netdev_pci_addr("../x").unwrap(), None);
    }

    #[test]
    fn lists_sorted_and_skips_junk() {
        let (t, s) = tree();
        fs::create_dir(t.path().join("bus/pci/devices/not-an-address")).unwrap();
        let l = s.list().unwrap();
        let names: Vec<String> = l.iter().map(|x| x.to_string()).collect();
        assert_eq!(
            names,
            [
                "0000:00:02.0",
                "0000:00:10.0",
                "0000:00:10.2",
                "0000:00:1f.2"
            ]
        );
        let sata = s.function(a("0000:00:1f.2")).unwrap();
        assert!(!sata.is_network());
        // virtio-net hangs its netdev below the virtio child device.
        let dir = FakeSysfs::new(t.path())
            .unwrap()
            .real_dir(a("0000:00:1f.2"));
        fs::create_dir_all(dir.join("virtio3/net/ens3")).unwrap();
        assert_eq!(s.netdevs(a("0000:00:1f.2")).unwrap(), ["ens3"]);
        assert_eq!(sata.iommu_group, None);
    }

    #[test]
    fn unbound_and_override() {
        let (t, s) = tree();
        let f = FakeSysfs::new(t.path()).unwrap();
        f.unbind(a("0000:00:10.2")).unwrap();
        let dir = f.real_dir(a("0000:00:10.2"));
        fs::write(dir.join("driver_override"), "vfio-pci\n").unwrap();
        let vf = s.function(a("0000:00:10.2")).unwrap();
        assert_eq!(vf.driver, None);
        assert_eq!(vf.driver_kind(), DriverKind::None);
        assert_eq!(vf.driver_override.as_deref(), Some("vfio-pci"));
    }

    #[test]
    fn missing_and_malformed() {
        let (t, s) = tree();
        let e = s.function(a("0000:05:00.0")).unwrap_err();
        assert!(matches!(e, Error::NoSuchFunction { .. }), "{e}");
        let dir = FakeSysfs::new(t.path())
            .unwrap()
            .real_dir(a("0000:00:02.0"));
        fs::write(dir.join("class"), "garbage\n").unwrap();
        let e = s.function(a("0000:00:02.0")).unwrap_err();
        assert!(e.to_string().contains("garbage"), "{e}");
        fs::write(dir.join("class"), "0x020000\n").unwrap();
        fs::write(dir.join("numa_node"), "x\n").unwrap();
        assert!(matches!(
            s.numa_node(a("0000:00:02.0")),
            Err(Error::Malformed { .. })
        ));
        fs::write(dir.join("numa_node"), "1\n").unwrap();
        fs::write(dir.join("sriov_numvfs"), "two\n").unwrap();
        assert!(matches!(
            s.sriov(a("0000:00:02.0")),
            Err(Error::Malformed { .. })
        ));
        // The kernel's sysfs root with no PCI bus at all.
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            Sysfs::new(empty.path()).list(),
            Err(Error::Read { .. })
        ));
    }

    #[test]
    fn pci_ids_lookup() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("pci.ids");
        fs::write(
            &p,
            "# comment\n1af4  Red Hat, Inc.\n\t1000  Virtio network device\n\
             8086  Intel Corporation\n\t10c9  82576 Gigabit Network Connection\n\
             \t\t8086 a03c  Ethernet Server Adapter\n\t10ca  82576 Virtual Function\n\
             C 02  Network controller\n",
        )
        .unwrap();
        assert_eq!(
            pci_ids_name(&p, 0x8086, 0x10ca).as_deref(),
            Some("82576 Virtual Function")
        );
        assert_eq!(
            pci_ids_name(&p, 0x1af4, 0x1000).as_deref(),
            Some("Virtio network device")
        );
        assert_eq!(pci_ids_name(&p, 0x1af4, 0x10ca), None);
        assert_eq!(pci_ids_name(&t.path().join("none"), 0x8086, 0x10ca), None);
    }
}
