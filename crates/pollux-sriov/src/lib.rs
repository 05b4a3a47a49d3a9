//! Host control of SR-IOV virtual functions.
//!
//! - [`lifecycle`]: creating VFs (`sriov_numvfs`), binding them to a driver
//!   (`driver_override`, `unbind`, `drivers_probe`), function reset; every
//!   sysfs write and every wait for the kernel has a timeout.
//! - [`netlink`]: per-VF configuration through the PF over rtnetlink
//!   (`IFLA_VFINFO_LIST` / `IFLA_VF_*`, encoded by rust-netlink's
//!   netlink-packet-route) and parsing of the kernel's VF info; link moves,
//!   renames, MAC, MTU and up/down for the CNI plugin's netdevice mode.
//! - [`netns`]: running a closure inside a network namespace on a thread of
//!   its own.
//! - [`pod`]: how a pod's data plane finds its VFs: the device plugin's
//!   `PCIDEVICE_<RESOURCE>` variables and device-info files (Network Plumbing
//!   WG device-info-spec 1.1.0).
//!
//! PCI discovery itself (addresses, `physfn`/`virtfnN`, drivers, IOMMU
//! groups) is the `pollux-pci` crate, re-exported as [`pci`].

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use pollux_pci::PciAddr;

/// Entry points for the fuzz targets and the corpus replay: a test double,
/// behind the `testing` feature.
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod fuzz_harness;
pub mod lifecycle;
pub mod netlink;
pub mod netns;
pub mod pod;

pub use pollux_pci as pci;

/// Errors of VF control.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading sysfs failed (see the PCI discovery error).
    #[error(transparent)]
    Pci(#[from] pci::Error),
    /// A sysfs or file write failed.
    #[error("cannot write {value:?} to {path}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    /// A file operation other than a sysfs write failed.
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The kernel did not finish something in time.
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout { what: String, timeout: Duration },
    /// The function is not an SR-IOV physical function.
    #[error("{0} is not an SR-IOV physical function (no sriov_totalvfs)")]
    NotPf(PciAddr),
    /// The function is not a virtual function.
    #[error("{0} is not an SR-IOV virtual function (no physfn link)")]
    NotVf(PciAddr),
    /// More VFs asked for than the PF supports.
    #[error("{pf} supports at most {total} VFs, {asked} asked for")]
    TooManyVfs { pf: PciAddr, asked: u32, total: u32 },
    /// A VF count change was refused because VFs are in use.
    #[error(
        "{pf} has {current} VFs and {in_use}; changing the count would destroy them (use --force)"
    )]
    VfsInUse {
        pf: PciAddr,
        current: u32,
        in_use: String,
    },
    /// The driver asked for is not loaded.
    #[error("driver {driver} is not loaded (no {path}); try `modprobe {driver}`")]
    DriverNotLoaded { driver: String, path: PathBuf },
    /// The function has no network interface where one is needed.
    #[error("{0} has no network interface (its PF must be bound to a kernel netdev driver)")]
    NoNetdev(PciAddr),
    /// Bad input (arguments, values).
    #[error("{0}")]
    Invalid(String),
    /// A netlink request failed at the socket level.
    #[error("netlink {op}")]
    Netlink {
        op: String,
        #[source]
        source: io::Error,
    },
    /// The kernel refused a netlink request.
    #[error("{op}: {hint}")]
    Kernel {
        op: String,
        hint: String,
        #[source]
        source: io::Error,
    },
    /// A netlink reply could not be decoded.
    #[error("malformed netlink reply to {op}: {detail}")]
    Decode { op: String, detail: String },
    /// A device-info file or environment variable is malformed.
    #[error("{what}: {detail}")]
    Pod { what: String, detail: String },
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
