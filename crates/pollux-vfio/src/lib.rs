//! PCI functions in sysfs and, through VFIO, their registers and DMA.
//!
//! - [`pci`]: PCI addresses and sysfs discovery (vendor, device, class,
//!   driver, IOMMU group, NUMA node, SR-IOV `physfn`/`virtfnN` links) under a
//!   configurable sysfs root, so tests run on a fake tree.

pub mod pci;
