//! The driver registry: every PCI poll-mode driver Pollux has, and one call
//! that opens any supported device from a PCI address or a device string.
//!
//! Each PMD crate describes itself in a [`PciDriver`] (`pollux_igbvf::DRIVER`,
//! ...); this list is the only place that names them, so the CLI and
//! applications open a new family without naming it.

use pollux_core::{error_chain as chain, Port};
use pollux_pci::{PciAddr, Sysfs};
use pollux_vfio::{PciDriver, PciOpenOpts};

/// Every PCI driver Pollux has. A new PMD adds its `DRIVER` here.
pub static PCI_DRIVERS: &[&PciDriver] = &[
    &pollux_igbvf::DRIVER,
    &pollux_ixgbevf::DRIVER,
    &pollux_iavf::DRIVER,
    &pollux_virtio::DRIVER,
];

/// The driver for a PCI ID, if Pollux has one.
pub fn pci_driver(vendor: u16, device: u16) -> Option<&'static PciDriver> {
    PCI_DRIVERS
        .iter()
        .copied()
        .find(|d| d.handles(vendor, device))
}

/// Why a device could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The function's ID has no Pollux driver.
    #[error(
        "{addr}: no Pollux driver for PCI ID {vendor:04x}:{device:04x} (drivers: {})",
        PCI_DRIVERS.iter().map(|d| d.name).collect::<Vec<_>>().join(", ")
    )]
    UnknownDevice {
        addr: PciAddr,
        vendor: u16,
        device: u16,
    },
    /// sysfs could not tell what the function is.
    #[error(transparent)]
    Pci(#[from] pollux_pci::Error),
    /// The driver failed to open it.
    #[error("{addr} ({driver}): {}", chain(&**.source))]
    Driver {
        addr: PciAddr,
        driver: &'static str,
        source: pollux_vfio::driver::DriverError,
    },
    /// A software device string that does not parse or open.
    #[error(transparent)]
    Vdev(#[from] pollux_soft::SoftError),
}

/// Opens the PCI function at `addr` with the driver for its ID.
pub fn open_pci(addr: PciAddr, opts: &PciOpenOpts) -> Result<Box<dyn Port>, OpenError> {
    let sysfs = Sysfs::new(&opts.vfio.sysfs_root);
    if !sysfs.exists(addr) {
        return Err(pollux_pci::Error::NoSuchFunction {
            addr,
            root: opts.vfio.sysfs_root.clone(),
        }
        .into());
    }
    let vendor = sysfs.vendor(addr)?;
    let device = sysfs.device(addr)?;
    let driver = pci_driver(vendor, device).ok_or(OpenError::UnknownDevice {
        addr,
        vendor,
        device,
    })?;
    (driver.open)(addr, opts).map_err(|source| OpenError::Driver {
        addr,
        driver: driver.name,
        source,
    })
}

/// Opens a device from a string: a PCI address (`0000:03:10.0`, or
/// `03:10.0` in domain 0) goes to the driver for its ID; anything else is a
/// software device string (`null0,size=64`, `af_packet0,iface=eth0`,
/// `pcap0,rx=in.pcap`; see `pollux_soft::vdev`). A ring pair needs both
/// ends at once: use [`crate::soft::vdev::create_all`] (`pollux::soft::vdev::create_all`) for those.
pub fn open(device: &str, opts: &PciOpenOpts) -> Result<Box<dyn Port>, OpenError> {
    if let Ok(addr) = device.trim().parse::<PciAddr>() {
        return open_pci(addr, opts);
    }
    let spec = pollux_soft::vdev::parse(device)?;
    let mut ports = pollux_soft::vdev::create_all(std::slice::from_ref(&spec))?;
    Ok(ports.remove(0))
}
