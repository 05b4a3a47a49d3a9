//! PCI functions in sysfs and, through VFIO, their registers and DMA.
//!
//! - [`pci`] (the `pollux-pci` crate): PCI addresses and sysfs discovery (vendor, device, class,
//!   driver, IOMMU group, NUMA node, SR-IOV `physfn`/`virtfnN` links) under a
//!   configurable sysfs root, so tests run on a fake tree.
//! - [`Container`]: one IOMMU domain (VFIO type1 container, through rust-vmm's
//!   `vfio-ioctls`), shared by the devices of a process; its
//!   [`DmaMemory`] provider hands out memory pinned and mapped into it, for
//!   mempools and descriptor rings.
//! - [`Device`]: a function opened in a container after checks that turn the
//!   usual VFIO failures (not bound to vfio-pci, group not viable, no
//!   permission, no IOMMU) into errors that say what to do; BAR mapping with
//!   typed volatile access ([`Bar`]), configuration space, bus mastering,
//!   function reset.
//!
//! ```no_run
//! use pollux_core::{HugePages, Mempool, MempoolConfig};
//! use pollux_vfio::{Container, Device, OpenOpts};
//!
//! let container = Container::process_default()?;
//! let dev = Device::open(&container, "0000:00:04.0".parse()?, &OpenOpts::default())?;
//! let bar0 = dev.map_bar(0)?;
//! let status = bar0.read32(0x8);
//! // Buffers every device of the container can reach:
//! let pool = Mempool::new(MempoolConfig::new("rx", 4096), &container.dma_memory(HugePages::Prefer))?;
//! # let _ = (status, pool);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod bar;
pub mod container;
pub mod device;
pub mod dma;
pub mod driver;
pub mod error;
pub mod iova;
pub mod irq;
/// PCI discovery lives in `pollux-pci`; re-exported so `pollux_vfio::pci` keeps working.
pub use pollux_pci as pci;

pub use bar::Bar;
pub use container::Container;
pub use device::{preflight, Device, OpenOpts, Preflight};
pub use dma::DmaMemory;
pub use driver::{PciDriver, PciOpenOpts};
pub use error::{bind_commands, VfioError};
pub use iova::IovaAllocator;
pub use irq::Interrupt;
