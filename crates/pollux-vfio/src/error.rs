//! [`VfioError`]: everything that can go wrong between a PCI address and a
//! mapped BAR or DMA region, worded so the person at the console knows what
//! to type next.

use std::io;
use std::path::PathBuf;

use crate::pci::PciAddr;

/// Errors of the VFIO layer.
#[derive(Debug, thiserror::Error)]
pub enum VfioError {
    /// Reading sysfs failed.
    #[error(transparent)]
    Sysfs(#[from] crate::pci::Error),

    /// The function is bound to another driver (or none).
    #[error(
        "{addr} is bound to {}, not vfio-pci; bind it with:\n{commands}",
        driver.as_deref().unwrap_or("no driver")
    )]
    NotBound {
        addr: PciAddr,
        driver: Option<String>,
        /// Shell commands that bind it to vfio-pci.
        commands: String,
    },

    /// The kernel put the function in no IOMMU group: no IOMMU is enabled.
    #[error(
        "{addr} has no IOMMU group: the kernel runs without an IOMMU. Enable VT-d/AMD-Vi in \
         the firmware and boot with intel_iommu=on (or amd_iommu=on); Pollux refuses to run \
         without an IOMMU unless asked for noiommu mode explicitly"
    )]
    NoIommu { addr: PciAddr },

    /// The group is a `noiommu-N` group and noiommu mode was not asked for.
    #[error(
        "{addr} is in the no-IOMMU group noiommu-{group}: DMA would be unprotected. \
         Refusing; pass the explicit noiommu option if this is really wanted"
    )]
    NoIommuRefused { addr: PciAddr, group: u32 },

    /// noiommu mode was asked for but this build cannot do it.
    #[error(
        "noiommu mode for {addr} is not supported by this build (it needs physical addresses \
         from /proc/self/pagemap); enable the IOMMU instead"
    )]
    NoIommuUnsupported { addr: PciAddr },

    /// Another function of the group is bound to a kernel driver.
    #[error(
        "IOMMU group {group} of {addr} is not viable: every function in it must be bound to \
         vfio-pci (or no driver); these are not: {}",
        others.join(", ")
    )]
    GroupNotViable {
        addr: PciAddr,
        group: u32,
        /// `address (driver)` of each offending function.
        others: Vec<String>,
    },

    /// `/dev/vfio/N` does not exist.
    #[error(
        "{} does not exist although {addr} is bound to vfio-pci: is the vfio-pci module \
         loaded and udev running? try `modprobe vfio-pci vfio_iommu_type1`",
        path.display()
    )]
    GroupNodeMissing { addr: PciAddr, path: PathBuf },

    /// `/dev/vfio/N` or `/dev/vfio/vfio` cannot be opened for lack of rights.
    #[error(
        "no permission to open {}: run as root, or give this user the device with \
         `chown $USER {}`",
        path.display(), path.display()
    )]
    Permission {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Pinning memory failed because of RLIMIT_MEMLOCK.
    #[error(
        "cannot pin {needed} bytes for DMA: RLIMIT_MEMLOCK is {limit}; raise it \
         (`ulimit -l unlimited`, or LimitMEMLOCK=infinity in a systemd unit) or run as root"
    )]
    MemlockTooLow {
        needed: u64,
        limit: String,
        #[source]
        source: io::Error,
    },

    /// Huge pages were required and none could be had.
    #[error(
        "no 2 MiB huge pages for {len} bytes of DMA memory; reserve some with \
         `echo 512 > /proc/sys/vm/nr_hugepages`"
    )]
    NoHugePages {
        len: usize,
        #[source]
        source: io::Error,
    },

    /// The container has no group yet, so there is no IOMMU domain to map into.
    #[error("the VFIO container has no device yet: open a device before allocating DMA memory")]
    NoDomain,

    /// The IOVA space of the container is used up.
    #[error("no free IOVA range of {len} bytes left in the container")]
    IovaExhausted { len: u64 },

    /// A BAR that is missing, too small or cannot be mapped.
    #[error("{addr}: BAR {index}: {reason}")]
    Bar {
        addr: PciAddr,
        index: u32,
        reason: String,
    },

    /// An error from the VFIO ioctls.
    #[error("{context}")]
    Vfio {
        context: String,
        #[source]
        source: vfio_ioctls::VfioError,
    },

    /// Another OS error.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl VfioError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> VfioError {
        VfioError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn vfio(context: impl Into<String>, source: vfio_ioctls::VfioError) -> VfioError {
        VfioError::Vfio {
            context: context.into(),
            source,
        }
    }
}

/// Result of this crate's VFIO modules.
pub type Result<T, E = VfioError> = std::result::Result<T, E>;

/// The shell commands that bind `addr` to vfio-pci, given its current driver.
pub fn bind_commands(addr: PciAddr, driver: Option<&str>) -> String {
    let mut s = String::from("  modprobe vfio-pci\n");
    if driver.is_some() {
        s += &format!("  echo {addr} > /sys/bus/pci/devices/{addr}/driver/unbind\n");
    }
    s += &format!("  echo vfio-pci > /sys/bus/pci/devices/{addr}/driver_override\n");
    s += &format!("  echo {addr} > /sys/bus/pci/drivers_probe");
    s
}
