//! What a PCI poll-mode driver tells the driver registry about itself.
//!
//! Each PMD crate exports one [`PciDriver`] (e.g. `pollux_igbvf::DRIVER`):
//! its name, the PCI IDs it drives and how to open a function as a
//! [`Port`]. The facade package `pollux` lists them (`pollux::PCI_DRIVERS`)
//! and opens any supported function by address or device string, so
//! `pollux testpmd -a`, `pollux devices` and applications find a new family
//! without naming it.

use pollux_core::{MacAddr, Port};

use crate::pci::PciAddr;
use crate::{Container, OpenOpts};

/// How to open a PCI function, whatever its driver.
#[derive(Clone, Debug, Default)]
pub struct PciOpenOpts {
    /// sysfs root, `/dev/vfio`.
    pub vfio: OpenOpts,
    /// Container to open the function in; `None`: the process's shared
    /// container, so one mempool serves every function.
    pub container: Option<Container>,
    /// MAC address to use when the PF assigned none.
    pub mac: Option<MacAddr>,
}

/// The error a driver's `open` returns: its own error type, boxed.
pub type DriverError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A driver's open function.
pub type OpenFn = fn(PciAddr, &PciOpenOpts) -> Result<Box<dyn Port>, DriverError>;

/// One PCI poll-mode driver.
#[derive(Debug)]
pub struct PciDriver {
    /// DPDK-style driver name (`net_igbvf`), as `Port::info` reports it.
    pub name: &'static str,
    /// What it drives, for people.
    pub description: &'static str,
    /// (vendor, device) IDs it drives.
    pub ids: &'static [(u16, u16)],
    /// Opens the function at an address with one of `ids`.
    pub open: OpenFn,
}

impl PciDriver {
    /// Whether this driver drives `vendor:device`.
    pub fn handles(&self, vendor: u16, device: u16) -> bool {
        self.ids.contains(&(vendor, device))
    }
}
