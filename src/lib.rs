//! Pollux: a userspace data plane for NIC virtual functions.
//!
//! This facade re-exports the member crates so an application needs one
//! dependency:
//!
//! - [`core`]: mbufs, mempools, rings, bursts, the [`Port`](core::Port) trait
//!   and the lcore runtime.
//! - [`soft`]: software ports (null, ring, af_packet, pcap).
//! - [`pci`]: PCI addresses and sysfs discovery (no VFIO).
//! - [`vfio`]: VFIO containers/devices, BARs, DMA memory.
//! - [`igbvf`]: the 82576/I350 VF poll-mode driver.
//! - [`ixgbevf`]: the 82599/X540/X550 VF poll-mode driver.
//! - [`iavf`]: the Intel Adaptive Virtual Function (X710/XL710/X722/E810 VF) poll-mode driver.
//! - [`virtio`]: the virtio-net poll-mode driver (virtio 1.x PCI: SR-IOV VFs
//!   and virtio-net-pci).
//! - [`bond`]: bonding over any ports (balance-rr, active-backup,
//!   balance-xor, broadcast, 802.3ad/LACP).
//! - [`sriov`]: the host side: VF lifecycle, binding, VF configuration over
//!   rtnetlink, and how a pod finds its VFs.

pub use pollux_bond as bond;
pub use pollux_core as core;
pub use pollux_iavf as iavf;
pub use pollux_igbvf as igbvf;
pub use pollux_ixgbevf as ixgbevf;
pub use pollux_pci as pci;
pub use pollux_soft as soft;
pub use pollux_sriov as sriov;
pub use pollux_vfio as vfio;
pub use pollux_virtio as virtio;

mod registry;
pub use registry::{open, open_pci, pci_driver, OpenError, PCI_DRIVERS};
