//! [`VirtioError`]: the driver's one error type.

use pollux_core::{MemError, PortError};
use pollux_vfio::pci::PciAddr;
use pollux_vfio::VfioError;

use crate::ctrl::CtrlError;
use crate::transport::CapError;

/// Errors of the virtio-net driver.
#[derive(Debug, thiserror::Error)]
pub enum VirtioError {
    /// Opening the function through VFIO failed.
    #[error(transparent)]
    Vfio(#[from] VfioError),

    /// The function is not a virtio network device.
    #[error(
        "{addr} is {vendor:04x}:{device:04x}, not a virtio network device (1af4:1041, or \
         transitional 1af4:1000); pollux-virtio drives only those"
    )]
    UnknownDevice {
        addr: PciAddr,
        vendor: u16,
        device: u16,
    },

    /// The capabilities do not describe a usable modern device.
    #[error("{dev}: {source}")]
    Caps {
        dev: String,
        #[source]
        source: CapError,
    },

    /// A feature the driver cannot work without is not offered.
    #[error("{dev}: the device does not offer {feature}: {why}")]
    MissingFeature {
        dev: String,
        feature: &'static str,
        why: &'static str,
    },

    /// The device did not accept the features (FEATURES_OK did not stay set).
    #[error("{dev}: the device refused the features {features} (FEATURES_OK not kept)")]
    FeaturesRefused { dev: String, features: String },

    /// A reset or status change did not complete in time.
    #[error("{dev}: {what} did not complete within {ms} ms")]
    Timeout {
        dev: String,
        what: &'static str,
        ms: u64,
    },

    /// The device set DEVICE_NEEDS_RESET or FAILED during bring-up.
    #[error("{dev}: the device reports status {status:#04x} during {what}")]
    DeviceStatus {
        dev: String,
        status: u8,
        what: &'static str,
    },

    /// A control-queue command failed.
    #[error("{dev}: {source}")]
    Ctrl {
        dev: String,
        #[source]
        source: CtrlError,
    },

    /// Ring or command memory.
    #[error("{dev}: cannot get DMA memory for {what}")]
    Memory {
        dev: String,
        what: &'static str,
        #[source]
        source: MemError,
    },

    /// The receive pool ran dry while filling a queue.
    #[error(
        "{dev}: rx queue {queue}: the pool has no free buffer to fill the queue ({need} needed)"
    )]
    PoolEmpty {
        dev: String,
        queue: u16,
        need: usize,
    },

    /// A configuration the driver or the device cannot do.
    #[error("{0}")]
    Config(String),
}

impl From<VirtioError> for PortError {
    fn from(e: VirtioError) -> PortError {
        match e {
            VirtioError::Timeout { ms, .. } => PortError::Timeout {
                what: e.to_string(),
                ms,
            },
            VirtioError::Ctrl {
                source: CtrlError::Timeout { ms, .. },
                ..
            } => PortError::Timeout {
                what: e.to_string(),
                ms,
            },
            VirtioError::Ctrl { .. } | VirtioError::FeaturesRefused { .. } => {
                PortError::Refused(e.to_string())
            }
            VirtioError::Config(s) => PortError::InvalidConfig(s),
            other => PortError::Other(pollux_core::error_chain(&other)),
        }
    }
}
