//! Polled-mode driver for virtio-net functions (virtio 1.x over PCI: SR-IOV
//! VFs of a virtio-net PF, and plain virtio-net-pci), in user space over
//! VFIO.
//!
//! # Using it
//!
//! ```no_run
//! use pollux_core::{Burst, Mempool, MempoolConfig, Port, PortConf};
//! use pollux_virtio::{VirtioNet, VirtioOpts};
//!
//! // The function must be bound to vfio-pci; the error says how if not.
//! let mut net = VirtioNet::open("0000:01:00.1".parse()?, VirtioOpts::default())?;
//! let pool = Mempool::new(MempoolConfig::new("rx", 4096), &*net.dma_memory())?;
//! net.configure(&PortConf::new(pool))?;
//! net.start()?;
//! let mut queues = net.take_queues()?;
//! let mut burst = Burst::new(32);
//! let n = queues.rx[0].rx_burst(&mut burst);
//! // The control side watches the device status and recovers from
//! // DEVICE_NEEDS_RESET:
//! net.service();
//! # let _ = n;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What it does with the device
//!
//! - Transport: the virtio PCI capabilities (common, notify, device
//!   configuration) found in configuration space and mapped from their BARs
//!   ([`transport`]). A legacy-only device (no common configuration
//!   capability) is refused with what to change.
//! - Features: `VIRTIO_F_VERSION_1` and `VIRTIO_F_ACCESS_PLATFORM` are
//!   required: a device without ACCESS_PLATFORM bypasses the IOMMU, so the
//!   DMA addresses VFIO maps would mean nothing to it (QEMU:
//!   `iommu_platform=on`). Used when offered: `RING_PACKED`, `MAC`,
//!   `STATUS` (link), `SPEED_DUPLEX`, `CTRL_VQ` with `CTRL_RX`
//!   (promiscuous, all-multicast, the multicast table) and `CTRL_MAC_ADDR`;
//!   `MQ` when the configuration asks for several queue pairs, with `RSS`
//!   when offered (flows spread over the pairs by a Toeplitz hash of their
//!   IP addresses and TCP/UDP ports, [`net::RSS_KEY`]; the hash itself is
//!   not reported to the application, which would need `HASH_REPORT`); `CSUM` and
//!   `GUEST_CSUM` when it asks for checksum offloads; `CTRL_VLAN` with
//!   [`pollux_core::RxOffloads::VLAN_FILTER`]; `RING_EVENT_IDX` only when
//!   asked for ([`VirtioOpts::event_idx`]).
//! - Queues: split virtqueues ([`vring`]), or packed ones ([`packed`]) when
//!   the device offers `VIRTIO_F_RING_PACKED`, behind one interface
//!   ([`vq`]); one buffer per frame with the `virtio_net_hdr` in the mbuf
//!   headroom ([`rx`], [`tx`]); one publication per burst and a
//!   notification only when the device asks for one.
//!   The control queue ([`ctrl`]) runs on the control side only, every
//!   command with a deadline.
//! - Recovery: a device that sets DEVICE_NEEDS_RESET is reset and brought
//!   up again from [`pollux_core::Port::service`], filters included.
//!
//! Not done yet: mergeable receive buffers (so frames are at most MTU
//! 1500), the RSS hash report (`VIRTIO_NET_F_HASH_REPORT`), and interrupts
//! (the driver polls).
//!
//! Sources: OASIS virtio 1.2 (cited per item in [`spec`]); DPDK's and
//! Linux's virtio-net drivers were read as descriptions of how QEMU's device
//! behaves.

#[cfg(target_endian = "big")]
compile_error!("pollux-virtio assumes a little-endian host, like virtio 1.x's rings");

pub mod ctrl;
pub mod error;
pub mod net;
pub mod packed;
pub mod rx;
pub mod spec;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod transport;
pub mod tx;
pub mod vq;
pub mod vring;

pub use error::VirtioError;
pub use net::{default_mac, identify, VirtioNet, VirtioOpts, VirtioRx, VirtioTx};

use pollux_core::Port;
use pollux_vfio::pci::PciAddr;
use pollux_vfio::{PciDriver, PciOpenOpts};

/// This driver, for the registry (`pollux::PCI_DRIVERS`).
pub static DRIVER: PciDriver = PciDriver {
    name: "net_virtio",
    description: "virtio-net function (virtio 1.x PCI: SR-IOV VF or virtio-net-pci)",
    ids: &[
        (spec::VENDOR_VIRTIO, spec::DEV_ID_NET_MODERN),
        (spec::VENDOR_VIRTIO, spec::DEV_ID_NET_TRANSITIONAL),
    ],
    open: open_for_registry,
};

fn open_for_registry(
    addr: PciAddr,
    o: &PciOpenOpts,
) -> Result<Box<dyn Port>, pollux_vfio::driver::DriverError> {
    let opts = VirtioOpts {
        vfio: o.vfio.clone(),
        container: o.container.clone(),
        mac: o.mac,
        ..VirtioOpts::default()
    };
    Ok(open_pci(addr, opts)?)
}

/// Opens the PCI function at `addr` with this driver, as a boxed [`Port`].
pub fn open_pci(addr: PciAddr, opts: VirtioOpts) -> Result<Box<dyn Port>, VirtioError> {
    Ok(Box::new(VirtioNet::open(addr, opts)?))
}
