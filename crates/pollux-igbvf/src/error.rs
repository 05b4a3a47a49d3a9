//! [`IgbVfError`]: the driver's one error type.

use pollux_core::{MemError, PortError};
use pollux_vfio::pci::PciAddr;
use pollux_vfio::VfioError;

/// Errors of the igbvf driver.
#[derive(Debug, thiserror::Error)]
pub enum IgbVfError {
    /// Opening the function through VFIO failed.
    #[error(transparent)]
    Vfio(#[from] VfioError),

    /// The function is not an 82576 or I350 virtual function.
    #[error(
        "{addr} is {vendor:04x}:{device:04x}, not an Intel 82576 or I350 virtual function \
         (8086:10ca, 8086:1520); pollux-igbvf drives only those"
    )]
    UnknownDevice {
        addr: PciAddr,
        vendor: u16,
        device: u16,
    },

    /// The PF keeps the reset-in-progress bit set: its driver is not up.
    #[error(
        "the PF of {addr} did not finish its reset within {ms} ms (V2PMAILBOX.RSTI stays set): \
         is the PF's kernel driver loaded and its interface up (`ip link set <pf> up`)?"
    )]
    PfNotReady { addr: PciAddr, ms: u64 },

    /// A mailbox step did not complete in time.
    #[error("{addr}: mailbox: {what} timed out after {ms} ms (is the PF driver running?)")]
    MailboxTimeout {
        addr: PciAddr,
        what: &'static str,
        ms: u64,
    },

    /// The PF refused a request.
    #[error("{addr}: the PF refused {request} (reply {reply:#010x}){hint}")]
    Refused {
        addr: PciAddr,
        request: &'static str,
        reply: u32,
        /// What might make it agree, with a leading separator, or empty.
        hint: &'static str,
    },

    /// The PF answered with something that is not a reply to our request.
    #[error("{addr}: unexpected mailbox reply {reply:#010x} to {request}")]
    Protocol {
        addr: PciAddr,
        request: &'static str,
        reply: u32,
    },

    /// A queue did not report itself enabled or disabled in time.
    #[error("{addr}: {dir} queue {queue} did not {action} within {ms} ms")]
    QueueTimeout {
        addr: PciAddr,
        dir: &'static str,
        queue: u16,
        action: &'static str,
        ms: u64,
    },

    /// Descriptor ring or buffer memory.
    #[error("{addr}: cannot get DMA memory for {what}")]
    Memory {
        addr: PciAddr,
        what: &'static str,
        #[source]
        source: MemError,
    },

    /// The receive pool ran dry while filling a ring.
    #[error(
        "{addr}: rx queue {queue}: the pool has no free buffer to fill the ring ({need} needed)"
    )]
    PoolEmpty {
        addr: PciAddr,
        queue: u16,
        need: usize,
    },

    /// A configuration the driver or the device cannot do.
    #[error("{0}")]
    Config(String),
}

impl From<IgbVfError> for PortError {
    fn from(e: IgbVfError) -> PortError {
        match e {
            IgbVfError::MailboxTimeout { what, ms, .. } => PortError::Timeout {
                what: what.to_string(),
                ms,
            },
            IgbVfError::QueueTimeout { ms, .. } | IgbVfError::PfNotReady { ms, .. } => {
                PortError::Timeout {
                    what: e.to_string(),
                    ms,
                }
            }
            IgbVfError::Refused { .. } => PortError::Refused(e.to_string()),
            IgbVfError::Config(s) => PortError::InvalidConfig(s),
            other => PortError::Other(chain(&other)),
        }
    }
}

/// The error and its sources on one line ([`pollux_core::error_chain`]).
pub use pollux_core::error_chain as chain;
