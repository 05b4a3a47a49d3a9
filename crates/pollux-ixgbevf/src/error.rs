//! [`IxgbeVfError`]: the driver's one error type.

use pollux_core::{MemError, PortError};
use pollux_vfio::pci::PciAddr;
use pollux_vfio::VfioError;

use crate::proto::MbxError;

/// Errors of the ixgbevf driver.
#[derive(Debug, thiserror::Error)]
pub enum IxgbeVfError {
    /// Opening the function through VFIO failed.
    #[error(transparent)]
    Vfio(#[from] VfioError),

    /// The function is not a VF this driver drives.
    #[error(
        "{addr} is {vendor:04x}:{device:04x}, not an Intel 82599, X540 or X550 virtual function \
         (8086:10ed, 152e, 1515, 1530, 1565, 1564, 15a8, 15c5); pollux-ixgbevf drives only those"
    )]
    UnknownDevice {
        addr: PciAddr,
        vendor: u16,
        device: u16,
    },

    /// The PF keeps its reset bits set: its driver is not up.
    #[error(
        "the PF of {addr} did not finish its reset within {ms} ms (VFMAILBOX.RSTI/RSTD stay set): \
         is the PF's kernel driver (ixgbe) loaded and its interface up (`ip link set <pf> up`)?"
    )]
    PfNotReady { addr: PciAddr, ms: u64 },

    /// A mailbox conversation failed: timeout, refusal, bad reply.
    #[error("{addr}: mailbox: {error}{hint}")]
    Mailbox {
        addr: PciAddr,
        /// In the message, not a `source` (it would print twice).
        error: MbxError,
        /// What might help, with a leading separator, or empty.
        hint: &'static str,
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

impl IxgbeVfError {
    /// The PF refused or does not consider the VF reset.
    pub fn mailbox(&self) -> Option<&MbxError> {
        match self {
            IxgbeVfError::Mailbox { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl From<IxgbeVfError> for PortError {
    fn from(e: IxgbeVfError) -> PortError {
        match &e {
            IxgbeVfError::Mailbox { error, .. } => match error {
                MbxError::Timeout { ms, .. } => PortError::Timeout {
                    what: e.to_string(),
                    ms: *ms,
                },
                MbxError::Nack { .. } | MbxError::NoMac { .. } => PortError::Refused(e.to_string()),
                MbxError::Unsupported { .. } => PortError::Unsupported(e.to_string()),
                _ => PortError::Other(chain(&e)),
            },
            IxgbeVfError::QueueTimeout { ms, .. } | IxgbeVfError::PfNotReady { ms, .. } => {
                PortError::Timeout {
                    what: e.to_string(),
                    ms: *ms,
                }
            }
            IxgbeVfError::Config(s) => PortError::InvalidConfig(s.clone()),
            _ => PortError::Other(chain(&e)),
        }
    }
}

/// The error and its sources on one line ([`pollux_core::error_chain`]).
pub use pollux_core::error_chain as chain;
