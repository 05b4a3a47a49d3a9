//! Polled-mode driver for Intel 82576 and I350 SR-IOV virtual functions
//! (`igbvf`: PCI IDs 8086:10ca and 8086:1520), in user space over VFIO.
//!
//! # Using it
//!
//! ```no_run
//! use pollux_core::{Burst, HugePages, Mempool, MempoolConfig, Port, PortConf, RxQueue};
//! use pollux_igbvf::{IgbVf, IgbVfOpts};
//!
//! // The VF must be bound to vfio-pci; the error says how if it is not.
//! let mut vf = IgbVf::open("0000:00:04.0".parse()?, IgbVfOpts::default())?;
//! // Buffers must live in memory mapped into the VF's IOMMU domain:
//! let pool = Mempool::new(MempoolConfig::new("rx", 4096), &vf.dma_memory(HugePages::Prefer))?;
//! vf.configure(&PortConf::new(pool))?;
//! vf.start()?;
//! // One handle per queue, for the lcore that polls it:
//! let mut queues = vf.take_queues()?;
//! let mut burst = Burst::new(32);
//! let n = queues.rx[0].rx_burst(&mut burst);
//! // Meanwhile the control side runs the mailbox watch and PF-reset recovery:
//! vf.service();
//! # let _ = n;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`open_pci`] does the same behind `Box<dyn Port>` for any PCI function
//! this crate drives, for applications that take `-a <PCI address>`.
//!
//! # Several VFs in one process
//!
//! Every VF opened with default options joins the process's shared VFIO
//! container ([`pollux_vfio::Container::process_default`]): one IOMMU
//! domain, so one mempool from [`IgbVf::dma_memory`] of any of them serves
//! all (a bond over two VFs forwards a buffer received on one out of the
//! other). To keep VFs apart, give [`IgbVfOpts::container`] a
//! [`pollux_vfio::Container::new`] of their own, and use that container's
//! memory for their pools.
//!
//! # What the driver does with the PF
//!
//! Bring-up follows what the Linux igb PF expects over the mailbox: VF
//! reset (VTCTRL.RST) and VF_RESET, whose reply carries the MAC the
//! administrator assigned, if any; then SET_MAC_ADDR, SET_LPE (max frame),
//! SET_MULTICAST, SET_VLAN and SET_PROMISC (multicast) as configured. The
//! PF forgets all of it at every VF reset, so it is sent again after each.
//! From [`Port::service`] the driver watches the mailbox: after a PF reset (RSTI/RSTD,
//! or a PF message without clear-to-send) it re-initialises the VF by
//! itself once the PF is back.
//!
//! # The QEMU igb model
//!
//! The lab runs on QEMU's 82576 model. Where it differs from hardware the
//! driver does what hardware needs and the difference is noted where it
//! bites: rx queue 1 never receives there ([`Port::info`]); VF promiscuous
//! and all-multicast are not modelled (set_allmulticast is accepted by the
//! PF and has no effect); a VF reset never raises RSTD
//! (see `reset_handshake` in [`vf`]); the PF forgets a VF's MAC at every VF
//! reset unless the administrator set one ([`IgbVfOpts::mac`]).
//!
//! # Multicast
//!
//! [`Port::set_mc_addr_list`] sends SET_MULTICAST with one 12-bit hash per
//! group ([`mbx::mc_hash`]); the Linux PF sets those bits in the MTA (one
//! table shared by every pool) and VMOLR.ROMPE for the VF's pool, and the
//! device then delivers every multicast frame whose hash bit is set, QEMU's
//! model included (lab test `multicast_joined_through_the_pf_is_delivered`:
//! 500 of 500 frames to 01:80:c2:00:00:02). Filtering is by hash, so groups
//! that collide arrive too: 33:33:00:00:00:02 hashes like
//! 01:80:c2:00:00:02, and any group the PF's own stack joins is delivered
//! to every pool with ROMPE. Applications filter on the destination.

#[cfg(target_endian = "big")]
compile_error!("pollux-igbvf assumes a little-endian host, like the device's descriptors");

pub mod desc;
pub mod error;
pub mod mbx;
pub mod regs;
pub mod rx;
pub mod stats;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tx;
pub mod vf;

pub use error::IgbVfError;
pub use pollux_intel::Family;
pub use vf::{default_mac, identify, IgbVf, IgbVfOpts, IgbVfRx, IgbVfTx, Model};

use pollux_core::Port;
use pollux_vfio::pci::PciAddr;
use pollux_vfio::{PciDriver, PciOpenOpts};

/// The 82576 / I350 family, as pollux-intel's shared rings and queue set
/// see it: its queue registers, the receive descriptor bits it does not
/// share with the 82599 and its transmit context descriptor.
#[derive(Debug)]
pub enum Igbvf {}

impl Family for Igbvf {
    const RX_HANDLE: &'static str = "IgbVfRx";
    const TX_HANDLE: &'static str = "IgbVfTx";
    const RXD_ERR_FRAME: u32 = regs::RXD_ERR_FRAME;
    const RXD_ERR_IPE: u32 = regs::RXD_ERR_IPE;
    const RXD_ERR_TCPE: u32 = regs::RXD_ERR_TCPE;
    /// L4CS or UDPCS, as DPDK's igb reads them.
    const RXD_L4_CHECKED: u32 = regs::RXD_STAT_L4CS | regs::RXD_STAT_UDPCS;
    /// This driver reads no RSS hash (a VF of the 82576 has one queue pair
    /// per pool and no RSS).
    const RSSTYPE_MASK: u16 = 0;
    const LB_VLAN_SWAP: bool = true;
    const TXD_CC: u32 = 0;

    #[inline(always)]
    fn rdt(q: u16) -> u32 {
        regs::rdt(q)
    }
    #[inline(always)]
    fn tdt(q: u16) -> u32 {
        regs::tdt(q)
    }

    type TxCtx = desc::AdvTxCtxDesc;
    #[inline(always)]
    fn context_for(off: &pollux_core::TxOffload) -> Option<desc::AdvTxCtxDesc> {
        tx::context_for(off)
    }
    #[inline(always)]
    fn ctx_desc(c: &desc::AdvTxCtxDesc) -> pollux_intel::desc::AdvTxDesc {
        c.as_tx_desc()
    }
}

/// This driver, for the registry (`pollux::PCI_DRIVERS`).
pub static DRIVER: PciDriver = PciDriver {
    name: "net_igbvf",
    description: "Intel 82576 / I350 SR-IOV virtual function",
    ids: &[
        (regs::VENDOR_INTEL, regs::DEV_ID_82576_VF),
        (regs::VENDOR_INTEL, regs::DEV_ID_82576_VF_HV),
        (regs::VENDOR_INTEL, regs::DEV_ID_I350_VF),
        (regs::VENDOR_INTEL, regs::DEV_ID_I350_VF_HV),
    ],
    open: open_for_registry,
};

fn open_for_registry(
    addr: PciAddr,
    o: &PciOpenOpts,
) -> Result<Box<dyn Port>, pollux_vfio::driver::DriverError> {
    let opts = IgbVfOpts {
        vfio: o.vfio.clone(),
        container: o.container.clone(),
        mac: o.mac,
        ..IgbVfOpts::default()
    };
    Ok(open_pci(addr, opts)?)
}

/// Opens the PCI function at `addr` with this driver, as a boxed [`Port`].
/// Fails with [`IgbVfError::UnknownDevice`] for functions it does not
/// drive. Applications that take any PCI function use the registry in the
/// facade (`pollux::open`).
pub fn open_pci(addr: PciAddr, opts: IgbVfOpts) -> Result<Box<dyn Port>, IgbVfError> {
    identify(addr, &opts.vfio)?;
    Ok(Box::new(IgbVf::open(addr, opts)?))
}
