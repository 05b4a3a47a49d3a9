//! `pollux-cni`: a CNI plugin that hands SR-IOV VFs to pods, in DPDK mode
//! (the VF stays on vfio-pci / uio on the host and only its PF-side
//! configuration changes) or netdevice mode (the VF netdev moves into the
//! pod's network namespace).
//!
//! It reads sriov-cni's network configuration as is ([`config`]), speaks
//! every CNI spec version from 0.1.0 to 1.1.0 (ADD and DEL in all, CHECK
//! from 0.4.0, STATUS and GC at 1.1.0, VERSION) with results and errors in
//! the configuration's own version ([`cni`], [`spec`]; rscni-plugin's
//! types), reads a `prevResult` of any of them when it is not first in a
//! chain, delegates IPAM to the plugin named in `ipam.type` found in
//! `CNI_PATH` ([`ipam`]), and keeps its state
//! in a private cache directory ([`state`]) so DEL can restore every
//! attribute ADD changed, even after ADD was killed half way.
//!
//! The operations themselves are in [`plugin`], written against the
//! [`host::Host`] trait so unit tests drive them on a fake sysfs tree with
//! an in-memory model of the PF; the binary uses [`host::RealHost`]
//! (rtnetlink and network namespaces) and the lab tests judge it against
//! iproute2 on a real igb PF.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

pub mod cni;
pub mod config;
/// Entry points for the fuzz targets and the corpus replay: a test double,
/// behind the `testing` feature.
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod fuzz_harness;
pub mod host;
pub mod ipam;
pub mod plugin;
pub mod spec;
pub mod state;

pub use rscni_plugin::error::Error as CniError;

/// Plugin-specific error codes (the CNI spec reserves 100 and up for
/// plugins).
pub mod codes {
    /// Spec: invalid necessary environment variables.
    pub const INVALID_ENV: u32 = 4;
    /// Spec: failed to decode content.
    pub const DECODE: u32 = 6;
    /// Spec: invalid network config.
    pub const INVALID_CONFIG: u32 = 7;
    /// Spec: try again later.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// Cache directory or other local I/O failed.
    pub const IO: u32 = 100;
    /// The VF is allocated to another live attachment.
    pub const VF_ALLOCATED: u32 = 101;
    /// The kernel or the PF driver refused a VF or link operation.
    pub const VF_CONFIG: u32 = 102;
    /// The device is not a usable VF (not a VF, no netdev and no userspace
    /// driver, no PF netdev).
    pub const DEVICE: u32 = 103;
    /// CHECK found the attachment differs from its configuration.
    pub const CHECK_MISMATCH: u32 = 104;
    /// The IPAM plugin could not be run or gave an unreadable answer.
    pub const IPAM: u32 = 105;
}

/// Errors of the plugin.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A network configuration that breaks a rule.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A bad CNI_* environment variable.
    #[error("invalid environment: {0}")]
    InvalidEnv(String),
    /// Another operation holds the VF's lock.
    #[error("VF {vf} is locked by another CNI operation; gave up after {timeout:?}")]
    Locked { vf: String, timeout: Duration },
    /// The VF belongs to another live attachment.
    #[error(
        "VF {vf} is already allocated to container {owner} interface {ifname} (netns {netns})"
    )]
    Allocated {
        vf: String,
        owner: String,
        ifname: String,
        netns: String,
    },
    /// VF control through sysfs or rtnetlink failed.
    #[error(transparent)]
    Sriov(#[from] pollux_sriov::Error),
    /// The device cannot be used.
    #[error("{0}")]
    Device(String),
    /// Local file I/O failed.
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The attachment differs from its configuration.
    #[error("CHECK: {0}")]
    Check(String),
    /// The IPAM plugin failed; its own code is passed through.
    #[error("IPAM plugin {plugin}: {msg}")]
    Ipam {
        plugin: String,
        code: u32,
        msg: String,
        details: String,
    },
    /// Errors from the protocol layer, already in CNI terms.
    #[error(transparent)]
    Cni(#[from] CniError),
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The CNI error code of this error.
    pub fn code(&self) -> u32 {
        match self {
            Error::InvalidConfig(_) => codes::INVALID_CONFIG,
            Error::InvalidEnv(_) => codes::INVALID_ENV,
            Error::Locked { .. } => codes::TRY_AGAIN_LATER,
            Error::Allocated { .. } => codes::VF_ALLOCATED,
            Error::Sriov(e) => match e {
                pollux_sriov::Error::Invalid(_) => codes::INVALID_CONFIG,
                pollux_sriov::Error::NotVf(_) | pollux_sriov::Error::NoNetdev(_) => codes::DEVICE,
                pollux_sriov::Error::Pci(pollux_pci::Error::NoSuchFunction { .. }) => codes::DEVICE,
                pollux_sriov::Error::Timeout { .. } => codes::TRY_AGAIN_LATER,
                _ => codes::VF_CONFIG,
            },
            Error::Device(_) => codes::DEVICE,
            Error::Io { .. } => codes::IO,
            Error::Check(_) => codes::CHECK_MISMATCH,
            Error::Ipam { code, .. } => *code,
            Error::Cni(e) => u32::from(e),
        }
    }

    /// The spec's error result as the protocol layer carries it.
    pub fn into_cni(self) -> CniError {
        match self {
            Error::Cni(e) => e,
            Error::Ipam {
                code,
                msg,
                details,
                plugin,
            } => CniError::Custom(code, format!("IPAM plugin {plugin}: {msg}"), details),
            other => {
                let code = other.code();
                // The message is the error itself; the details carry the
                // chain of causes (OS errors, kernel refusals).
                let mut details = Vec::new();
                let mut src = std::error::Error::source(&other);
                while let Some(s) = src {
                    details.push(s.to_string());
                    src = s.source();
                }
                let msg = other.to_string();
                match code {
                    codes::INVALID_ENV => CniError::InvalidEnvValue(msg),
                    codes::INVALID_CONFIG => CniError::InvalidNetworkConfig(msg),
                    codes::TRY_AGAIN_LATER => CniError::TryAgainLater(msg),
                    c => CniError::Custom(c, msg, details.join(": ")),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
