//! Polled-mode driver for Intel Ethernet Adaptive Virtual Functions (what
//! Linux's `iavf` and DPDK's `net_iavf` drive: VFs of X710/XL710/XXV710 and
//! X722 under i40e, and of E810 under ice; PCI IDs 8086:1889, 154c, 37cd),
//! in user space over VFIO.
//!
//! # Using it
//!
//! ```no_run
//! use pollux_core::{Burst, HugePages, Mempool, MempoolConfig, Port, PortConf, RxQueue};
//! use pollux_iavf::{IavfOpts, IavfVf};
//!
//! // The VF must be bound to vfio-pci; the error says how if it is not.
//! let mut vf = IavfVf::open("0000:18:02.0".parse()?, IavfOpts::default())?;
//! // Buffers must live in memory mapped into the VF's IOMMU domain:
//! let pool = Mempool::new(MempoolConfig::new("rx", 8192), &vf.dma_memory(HugePages::Prefer))?;
//! let mut conf = PortConf::new(pool);
//! // Up to 16 queue pairs; more than the PF gave are asked for
//! // (REQUEST_QUEUES) when the PF allows it:
//! conf.rx_queues = 4;
//! conf.tx_queues = 4;
//! vf.configure(&conf)?;
//! vf.start()?;
//! // One handle per queue, for the lcore that polls it:
//! let mut queues = vf.take_queues()?;
//! let mut burst = Burst::new(32);
//! let n = queues.rx[0].rx_burst(&mut burst);
//! // Meanwhile the control side drains the PF's messages (link, resets),
//! // samples the counters and recovers from VF resets:
//! vf.service();
//! # let _ = n;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`open_pci`] does the same behind `Box<dyn Port>`, and [`DRIVER`] is
//! this crate's entry in the facade's registry (`pollux::PCI_DRIVERS`).
//!
//! # What the driver does with the PF
//!
//! All control goes through the VF's admin queue ([`adminq`]: ATQ and ARQ
//! rings of 32-byte descriptors in DMA memory, 32 entries with 4 KiB
//! buffers, the ARQ pre-posted) as virtchnl messages ([`proto`], an
//! I/O-free state machine with checked views of virtchnl.h's structures;
//! [`ctl`] drives it over the registers). Every wait has a deadline.
//!
//! - Reset: VFGEN_RSTAT polled until COMPLETED or VFACTIVE; at open the VF
//!   asks for a reset of its own (RESET_VF, after setting VFGEN_RSTAT to
//!   INPROGRESS so the old state is not mistaken for the end of the new
//!   one) so nothing of a previous user survives.
//! - Bring-up: VERSION (1.1; a 1.0 PF works without capability
//!   negotiation, a newer one is refused), GET_VF_RESOURCES asking for L2,
//!   RSS_PF, VLAN, RX_POLLING, WB_ON_ITR, REQ_QUEUES and ADV_LINK_SPEED and
//!   taking whatever subset the PF grants (the SR-IOV VSI, its queue pairs,
//!   the MAC the administrator set, the RSS key and LUT sizes).
//! - Start: CONFIG_VSI_QUEUES (every pair: ring base and length, buffer
//!   size, max frame, the legacy 32-byte rx descriptor), CONFIG_IRQ_MAP
//!   (all queues on one vector, with write-back on ITR when granted, as
//!   DPDK does without rx interrupts: the PF requires a map even for a
//!   polling VF), CONFIG_RSS_KEY / CONFIG_RSS_LUT over the configured rx
//!   queues and GET_RSS_HENA_CAPS → SET_RSS_HENA (hash every type the PF
//!   can), ENABLE/DISABLE_VLAN_STRIPPING, ENABLE_QUEUES.
//! - Filters: ADD/DEL_ETH_ADDR (own MAC as primary, multicast as extra),
//!   ADD/DEL_VLAN, CONFIG_PROMISCUOUS_MODE; all sent again after every
//!   reset, as the PF forgets them.
//! - REQUEST_QUEUES when asked for more pairs than granted: a refusal says
//!   how many the PF can give (an error); a grant comes as a VF reset, which
//!   the driver waits for and initialises again after.
//! - From [`Port::service`]: PF events (LINK_CHANGE in Mbit/s when
//!   ADV_LINK_SPEED was granted, else the legacy speed enum;
//!   RESET_IMPENDING; PF_DRIVER_CLOSE), GET_STATS once a second into
//!   wrap-safe totals, and reset recovery: a reset announced, or noticed
//!   from a disabled admin queue, is waited for (and asked for if it does
//!   not begin within a second), then the admin queue and everything above
//!   are set up again, without a burst ever waiting (the handles
//!   resynchronise on an epoch, as in pollux-ixgbevf).
//!
//! # Data path
//!
//! Receive: legacy 32-byte descriptors; status DD/EOF, length, packet type,
//! L2TAG1 (stripped VLAN), the RSS hash when FLTSTAT says so, checksum
//! verdicts when L3L4P says the device checked ([`rx`]). Transmit: 16-byte
//! data descriptors with EOP/RS/ICRC, IL2TAG1 for VLAN insertion and
//! MACLEN/IPLEN/L4LEN with IIPT/L4T for checksum offload; no offload here
//! needs a context descriptor ([`tx`]). Completion by DTYPE DESC_DONE on RS
//! descriptors; one tail write per burst.
//!
//! # What is not done
//!
//! - Scatter (a frame must fit one receive buffer), TSO, tunnel offloads,
//!   QinQ (L2TAG2), SCTP checksum offload on transmit.
//! - Flexible receive descriptors (RX_FLEX_DESC), VLAN_V2, ADV_RSS_PF,
//!   FDIR, LARGE_NUM_QPAIRS (more than 16 pairs), CRC keeping, PTP, QoS:
//!   not asked for.
//! - Rx interrupts: the driver polls; MSI-X stays off.
//! - An untrusted VF's CONFIG_PROMISCUOUS_MODE is acknowledged by i40e and
//!   ignored; the driver cannot tell.

#[cfg(target_endian = "big")]
compile_error!("pollux-iavf assumes a little-endian host, like the device's descriptors");

pub mod adminq;
pub mod ctl;
pub mod desc;
pub mod error;
/// Entry points for the fuzz targets and the corpus replay: behind the
/// `testing` feature.
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod fuzz_harness;
pub mod proto;
pub mod regs;
pub mod rx;
pub mod stats;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tx;
pub mod vf;

pub use error::IavfError;
pub use vf::{identify, IavfOpts, IavfRx, IavfTx, IavfVf, Model};

use pollux_core::Port;
use pollux_vfio::pci::PciAddr;
use pollux_vfio::{PciDriver, PciOpenOpts};

/// This driver, for the registry (`pollux::PCI_DRIVERS`).
pub static DRIVER: PciDriver = PciDriver {
    name: "net_iavf",
    description: "Intel Ethernet Adaptive Virtual Function (X710/XL710/XXV710/X722/E810 VF)",
    ids: &[
        (regs::VENDOR_INTEL, regs::DEV_ID_ADAPTIVE_VF),
        (regs::VENDOR_INTEL, regs::DEV_ID_VF),
        (regs::VENDOR_INTEL, regs::DEV_ID_X722_VF),
    ],
    open: open_for_registry,
};

fn open_for_registry(
    addr: PciAddr,
    o: &PciOpenOpts,
) -> Result<Box<dyn Port>, pollux_vfio::driver::DriverError> {
    let opts = IavfOpts {
        vfio: o.vfio.clone(),
        container: o.container.clone(),
        mac: o.mac,
        ..IavfOpts::default()
    };
    Ok(open_pci(addr, opts)?)
}

/// Opens the PCI function at `addr` with this driver, as a boxed [`Port`].
/// Fails with [`IavfError::UnknownDevice`] for functions it does not drive.
pub fn open_pci(addr: PciAddr, opts: IavfOpts) -> Result<Box<dyn Port>, IavfError> {
    identify(addr, &opts.vfio)?;
    Ok(Box::new(IavfVf::open(addr, opts)?))
}
