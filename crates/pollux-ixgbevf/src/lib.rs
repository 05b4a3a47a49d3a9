//! Polled-mode driver for Intel 82599, X540 and X550 SR-IOV virtual
//! functions (what Linux's `ixgbevf` and DPDK's `net_ixgbe_vf` drive: PCI
//! IDs 8086:10ed, 152e, 1515, 1530, 1565, 1564, 15a8, 15c5), in user space
//! over VFIO.
//!
//! # Using it
//!
//! ```no_run
//! use pollux_core::{Burst, HugePages, Mempool, MempoolConfig, Port, PortConf, RxQueue};
//! use pollux_ixgbevf::{IxgbeVf, IxgbeVfOpts};
//!
//! // The VF must be bound to vfio-pci; the error says how if it is not.
//! let mut vf = IxgbeVf::open("0000:03:10.0".parse()?, IxgbeVfOpts::default())?;
//! // Buffers must live in memory mapped into the VF's IOMMU domain:
//! let pool = Mempool::new(MempoolConfig::new("rx", 8192), &vf.dma_memory(HugePages::Prefer))?;
//! let mut conf = PortConf::new(pool);
//! // As many queue pairs as the PF gives (GET_QUEUES), or fewer:
//! conf.rx_queues = vf.info().capabilities.max_rx_queues;
//! conf.tx_queues = vf.info().capabilities.max_tx_queues;
//! vf.configure(&conf)?;
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
//! [`open_pci`] does the same behind `Box<dyn Port>`, and [`DRIVER`] is
//! this crate's entry in the facade's registry (`pollux::PCI_DRIVERS`), so
//! `pollux testpmd -a <VF>` and `pollux devices` know the family.
//!
//! # What the driver does with the PF
//!
//! Bring-up follows what the Linux ixgbe PF expects over the mailbox
//! ([`proto::BringUp`], an I/O-free state machine; [`mbx`] moves its
//! messages through the registers): VF reset (VFCTRL.RST, then VFMAILBOX
//! polled until RSTI and RSTD are gone, with a deadline), VF_RESET, whose
//! reply carries the MAC the administrator assigned, if any, and the
//! multicast filter type; SET_MAC_ADDR when the PF assigned none (or the
//! application asked for another, which the PF grants a trusted VF only);
//! API_NEGOTIATE from 1.5 down to 1.0; GET_QUEUES (API >= 1.1). API 1.5
//! changes the mailbox handshake itself (the VF holds the buffer through
//! REQ until the PF's ACK and reads replies without taking it, Linux
//! `ixgbevf_mbx_ops`); both handshakes are implemented and every VF reset
//! starts over with the legacy one. Then SET_LPE (max frame), SET_MULTICAST
//! (up to 30 MTA vectors, computed for the PF's filter type), SET_VLAN and
//! UPDATE_XCAST_MODE (API >= 1.2; promiscuous >= 1.3) as configured. The PF
//! forgets all of it at every VF reset, so it is sent again after each.
//! The PF answers UPDATE_XCAST_MODE with the mode it granted (an untrusted
//! VF gets at most MULTI); a downgrade is an error, not a silent success.
//!
//! From [`Port::service`] the driver watches the mailbox: after a PF reset
//! (RSTI/RSTD, a PF control message without CTS, or a reply refused
//! without CTS) it re-initialises the VF by itself once the PF is back,
//! without a burst ever waiting (the handles resynchronise on an epoch, as
//! in pollux-igbvf).
//!
//! RSS: X550-family VFs program their own (VFRSSRK, VFRETA over the
//! configured rx queues, VFMRQC hashing IPv4/IPv6 alone and with TCP and
//! UDP ports);
//! 82599/X540 VFs receive by the PF's RSS and can read its key and RETA
//! ([`IxgbeVf::pf_rss`], API >= 1.2). The hash is in the mbuf
//! ([`pollux_core::RxFlags::RSS_HASH`]) whenever the descriptor says it
//! computed one.
//!
//! Transmit: every data descriptor has CC (check context) set and runs
//! under a context descriptor (MACLEN, VLAN tag, checksum types), written
//! only when it changes, as Linux's ixgbevf requires with the PF's transmit
//! switch on.
//!
//! # What is not done
//!
//! - Scatter (a frame must fit one receive buffer), TSO, IPsec offload
//!   (API 1.4), SCTP checksum offload.
//! - SET_MACVLAN (extra unicast filters) is encoded and understood by the
//!   protocol core, but the `Port` API has no call for it.
//! - The Hyper-V IDs (152e, 1530, 1564) are driven like the others, over the
//!   hardware mailbox, as DPDK does; Linux talks to the PF through PCI
//!   config space there instead, which this driver does not.
//! - API 1.6/1.7 (E610, GET_PF_LINK_STATE, feature negotiation) are not
//!   proposed; the 82599 UDP checksum-zero erratum is not worked around.
//! - Linux drops frames to link-local destinations (01:80:c2:00:00:0x)
//!   before they reach the PF; this driver sends what it is given.

#[cfg(target_endian = "big")]
compile_error!("pollux-ixgbevf assumes a little-endian host, like the device's descriptors");

pub mod desc;
pub mod error;
/// Entry points for the fuzz targets and the corpus replay: behind the
/// `testing` feature.
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod fuzz_harness;
pub mod mbx;
pub mod proto;
pub mod regs;
pub mod rx;
pub mod stats;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tx;
pub mod vf;

pub use error::IxgbeVfError;
pub use pollux_intel::Family;
pub use vf::{default_mac, identify, IxgbeVf, IxgbeVfOpts, IxgbeVfRx, IxgbeVfTx, Model};

use pollux_core::Port;
use pollux_vfio::pci::PciAddr;
use pollux_vfio::{PciDriver, PciOpenOpts};

/// The 82599 / X540 / X550 family, as pollux-intel's shared rings and
/// queue set see it: its queue registers, the receive descriptor bits it
/// does not share with the 82576, CC on every data descriptor and its
/// transmit context descriptor.
#[derive(Debug)]
pub enum Ixgbevf {}

impl Family for Ixgbevf {
    const RX_HANDLE: &'static str = "IxgbeVfRx";
    const TX_HANDLE: &'static str = "IxgbeVfTx";
    const RXD_ERR_FRAME: u32 = regs::RXD_ERR_FRAME;
    const RXD_ERR_IPE: u32 = regs::RXD_ERR_IPE;
    const RXD_ERR_TCPE: u32 = regs::RXD_ERR_TCPE;
    /// L4CS alone says the TCP/UDP checksum was checked (Linux
    /// ixgbevf_rx_checksum looks at no other bit).
    const RXD_L4_CHECKED: u32 = regs::RXD_STAT_L4CS;
    const RSSTYPE_MASK: u16 = regs::RSSTYPE_MASK;
    const LB_VLAN_SWAP: bool = false;
    /// CC on every data descriptor (ixgbevf_tx_olinfo_status).
    const TXD_CC: u32 = regs::TXD_CC;

    #[inline(always)]
    fn rdt(q: u16) -> u32 {
        regs::rdt(q)
    }
    #[inline(always)]
    fn tdt(q: u16) -> u32 {
        regs::tdt(q)
    }

    type TxCtx = desc::AdvTxCtxDesc;
    /// Every packet is sent under a context descriptor.
    #[inline(always)]
    fn context_for(off: &pollux_core::TxOffload) -> Option<desc::AdvTxCtxDesc> {
        Some(tx::context_for(off))
    }
    #[inline(always)]
    fn ctx_desc(c: &desc::AdvTxCtxDesc) -> pollux_intel::desc::AdvTxDesc {
        c.as_tx_desc()
    }
}

/// This driver, for the registry (`pollux::PCI_DRIVERS`).
pub static DRIVER: PciDriver = PciDriver {
    name: "net_ixgbevf",
    description: "Intel 82599 / X540 / X550 SR-IOV virtual function",
    ids: &[
        (regs::VENDOR_INTEL, regs::DEV_ID_82599_VF),
        (regs::VENDOR_INTEL, regs::DEV_ID_82599_VF_HV),
        (regs::VENDOR_INTEL, regs::DEV_ID_X540_VF),
        (regs::VENDOR_INTEL, regs::DEV_ID_X540_VF_HV),
        (regs::VENDOR_INTEL, regs::DEV_ID_X550_VF),
        (regs::VENDOR_INTEL, regs::DEV_ID_X550_VF_HV),
        (regs::VENDOR_INTEL, regs::DEV_ID_X550EM_X_VF),
        (regs::VENDOR_INTEL, regs::DEV_ID_X550EM_A_VF),
    ],
    open: open_for_registry,
};

fn open_for_registry(
    addr: PciAddr,
    o: &PciOpenOpts,
) -> Result<Box<dyn Port>, pollux_vfio::driver::DriverError> {
    let opts = IxgbeVfOpts {
        vfio: o.vfio.clone(),
        container: o.container.clone(),
        mac: o.mac,
        ..IxgbeVfOpts::default()
    };
    Ok(open_pci(addr, opts)?)
}

/// Opens the PCI function at `addr` with this driver, as a boxed [`Port`].
/// Fails with [`IxgbeVfError::UnknownDevice`] for functions it does not
/// drive.
pub fn open_pci(addr: PciAddr, opts: IxgbeVfOpts) -> Result<Box<dyn Port>, IxgbeVfError> {
    identify(addr, &opts.vfio)?;
    Ok(Box::new(IxgbeVf::open(addr, opts)?))
}
