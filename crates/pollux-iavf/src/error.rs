//! [`IavfError`]: the driver's one error type.

use pollux_core::{MemError, PortError};
use pollux_vfio::pci::PciAddr;
use pollux_vfio::VfioError;

use crate::proto::VcError;

/// Errors of the iavf driver.
#[derive(Debug, thiserror::Error)]
pub enum IavfError {
    /// Opening the function through VFIO failed.
    #[error(transparent)]
    Vfio(#[from] VfioError),

    /// The function is not a VF this driver drives.
    #[error(
        "{addr} is {vendor:04x}:{device:04x}, not an Intel Adaptive Virtual Function \
         (8086:1889, 154c, 37cd); pollux-iavf drives only those"
    )]
    UnknownDevice {
        addr: PciAddr,
        vendor: u16,
        device: u16,
    },

    /// VFGEN_RSTAT never said the VF reset was done.
    #[error(
        "{addr}: the VF reset did not complete within {ms} ms (VFGEN_RSTAT {rstat:#x}, neither \
         COMPLETED nor VFACTIVE): is the PF's driver (i40e or ice) loaded and its interface up?"
    )]
    PfNotReady { addr: PciAddr, ms: u64, rstat: u32 },

    /// A virtchnl conversation failed: timeout, refusal, bad reply.
    #[error("{addr}: virtchnl: {error}{hint}")]
    Virtchnl {
        addr: PciAddr,
        /// In the message, not a `source` (it would print twice).
        error: VcError,
        /// What might help, with a leading separator, or empty.
        hint: &'static str,
    },

    /// REQUEST_QUEUES refused.
    #[error(
        "{addr}: asked the PF for {asked} queue pairs; it can give at most {offered} \
         (raise the VF's share on the host or configure fewer queues)"
    )]
    QueuesRefused {
        addr: PciAddr,
        asked: u16,
        offered: u16,
    },

    /// Descriptor ring or admin queue memory.
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

impl IavfError {
    /// The virtchnl error, if that is what failed.
    pub fn virtchnl(&self) -> Option<&VcError> {
        match self {
            IavfError::Virtchnl { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl From<IavfError> for PortError {
    fn from(e: IavfError) -> PortError {
        match &e {
            IavfError::Virtchnl { error, .. } => match error {
                VcError::Timeout { ms, .. } => PortError::Timeout {
                    what: e.to_string(),
                    ms: *ms,
                },
                VcError::PfError { .. } => PortError::Refused(e.to_string()),
                VcError::Unsupported { .. } => PortError::Unsupported(e.to_string()),
                _ => PortError::Other(chain(&e)),
            },
            IavfError::QueuesRefused { .. } => PortError::Refused(e.to_string()),
            IavfError::PfNotReady { ms, .. } => PortError::Timeout {
                what: e.to_string(),
                ms: *ms,
            },
            IavfError::Config(s) => PortError::InvalidConfig(s.clone()),
            _ => PortError::Other(chain(&e)),
        }
    }
}

/// The error and its sources on one line ([`pollux_core::error_chain`]).
pub use pollux_core::error_chain as chain;
