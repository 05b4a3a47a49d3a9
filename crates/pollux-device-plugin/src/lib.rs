//! `pollux-device-plugin`: a kubelet device plugin for SR-IOV VFs (and other
//! network PCI functions) that a DPDK-mode data plane drives through
//! vfio-pci.
//!
//! It speaks the kubelet device plugin API v1beta1 ([`api`], compiled from
//! `proto/api.proto`) over unix sockets ([`uds`]) and reads the SR-IOV
//! network device plugin's `config.json` unchanged ([`config`]), so it can
//! stand in for that plugin on nodes whose pods take vfio-pci VFs:
//!
//! - [`devices`]: the node's network functions from sysfs (pollux-pci),
//!   which resource each belongs to, and its health: bound to the selected
//!   driver, its `/dev/vfio/<group>` present, its PF's link not down.
//! - [`allocate`]: `GetPreferredAllocation` (one NUMA node first, then
//!   spread over PFs) and `Allocate` (the `/dev/vfio` nodes, the
//!   `PCIDEVICE_*` variables, the device-info file written with
//!   pollux-sriov's writer, the one pollux-cni uses, and CDI names), computed
//!   without I/O.
//! - [`cdi`]: a CDI spec per resource (`cdiVersion` 0.5.0).
//! - [`server`]: the `DevicePlugin` gRPC service of a resource.
//! - [`plugin`]: the scanner that streams health changes, and the
//!   supervisors that register each resource and register again when the
//!   kubelet restarts.
//!
//! The binary is `src/main.rs`; the crate's README compares it with the
//! SR-IOV network device plugin.

#![forbid(unsafe_code)]

use std::io;
use std::path::PathBuf;

pub mod allocate;
pub mod api;
pub mod cdi;
pub mod config;
pub mod devices;
pub mod plugin;
pub mod server;
pub mod uds;

/// Errors of the device plugin.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is malformed or asks for what is not supported.
    #[error("{0}")]
    Config(String),
    /// Reading sysfs failed.
    #[error(transparent)]
    Pci(#[from] pollux_pci::Error),
    /// Writing a device-info file failed.
    #[error(transparent)]
    Sriov(#[from] pollux_sriov::Error),
    /// A file operation failed.
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A resource cannot be described in CDI.
    #[error("CDI: {0}")]
    Cdi(String),
    /// A background task failed.
    #[error("task failed: {0}")]
    Task(String),
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
