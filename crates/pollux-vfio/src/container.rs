//! [`Container`]: one IOMMU domain (a VFIO type1 container) shared by the
//! devices of a process, and the IOVA space of that domain.
//!
//! Every device opened in a container sees every DMA mapping made in it, so
//! one mempool serves all ports of a process (a bond over two VFs, or a
//! forwarding loop between them). [`Container::process_default`] is the one a
//! process gets unless it asks for another; drivers use it by default, so two
//! VFs opened independently still share their memory.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use vfio_ioctls::VfioContainer;

use crate::dma::DmaMemory;
use crate::error::{Result, VfioError};
use crate::iova::IovaAllocator;
use pollux_core::HugePages;

pub(crate) struct ContainerInner {
    pub(crate) vfio: Arc<VfioContainer>,
    pub(crate) iova: Mutex<IovaAllocator>,
    /// Devices opened in this container; DMA can be mapped only while some
    /// group is attached (type1 sets the IOMMU up with the first group).
    pub(crate) devices: AtomicUsize,
}

/// A VFIO container (IOMMU domain). Cloning gives another handle to the same
/// container; it closes when the last handle, device and DMA region are gone.
#[derive(Clone)]
pub struct Container {
    pub(crate) inner: Arc<ContainerInner>,
}

static PROCESS_DEFAULT: Mutex<Weak<ContainerInner>> = Mutex::new(Weak::new());

impl Container {
    /// Opens a new container (`/dev/vfio/vfio`).
    pub fn new() -> Result<Container> {
        let vfio = VfioContainer::new(None).map_err(|e| match e {
            vfio_ioctls::VfioError::OpenContainer(source) => open_error("/dev/vfio/vfio", source),
            other => VfioError::vfio(
                "the kernel's VFIO does not offer the type1v2 IOMMU backend \
                 (try `modprobe vfio_iommu_type1`)",
                other,
            ),
        })?;
        Ok(Container {
            inner: Arc::new(ContainerInner {
                vfio: Arc::new(vfio),
                iova: Mutex::new(IovaAllocator::default()),
                devices: AtomicUsize::new(0),
            }),
        })
    }

    /// The process's shared container, opened on first use and closed when
    /// nothing uses it anymore.
    pub fn process_default() -> Result<Container> {
        let mut slot = PROCESS_DEFAULT.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(inner) = slot.upgrade() {
            return Ok(Container { inner });
        }
        let c = Container::new()?;
        *slot = Arc::downgrade(&c.inner);
        Ok(c)
    }

    /// A memory provider whose regions every device of this container can
    /// reach; give it to [`pollux_core::Mempool::new`].
    pub fn dma_memory(&self, huge: HugePages) -> DmaMemory {
        DmaMemory::new(self.clone(), huge)
    }

    /// Number of devices open in this container.
    pub fn devices(&self) -> usize {
        self.inner.devices.load(Ordering::Acquire)
    }

    /// Bytes of IOVA space mapped right now.
    pub fn mapped_bytes(&self) -> u64 {
        self.inner
            .iova
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allocated()
    }

    /// Whether `[iova, iova + len)` is DMA memory mapped into this
    /// container, so its devices can reach it. Drivers check their receive
    /// pool with it: a pool in other memory would have the device write to
    /// addresses the IOMMU refuses.
    pub fn maps(&self, iova: pollux_core::Iova, len: u64) -> bool {
        self.inner
            .iova
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(iova.0, len)
    }

    /// Whether two handles name the same container.
    pub fn same_as(&self, other: &Container) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl fmt::Debug for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Container")
            .field("devices", &self.devices())
            .field("mapped_bytes", &self.mapped_bytes())
            .finish()
    }
}

/// Turns an open(2) failure on a VFIO node into the error a person can act on.
pub(crate) fn open_error(path: impl AsRef<Path>, source: io::Error) -> VfioError {
    let path = path.as_ref().to_path_buf();
    match source.kind() {
        io::ErrorKind::PermissionDenied => VfioError::Permission { path, source },
        io::ErrorKind::NotFound => VfioError::io(
            format!(
                "{} does not exist: load VFIO with `modprobe vfio-pci vfio_iommu_type1`",
                path.display()
            ),
            source,
        ),
        _ if source.raw_os_error() == Some(libc::EBUSY) => VfioError::io(
            format!(
                "{} is busy: another process (a DPDK application, another Pollux run) holds \
                 the group; stop it first",
                path.display()
            ),
            source,
        ),
        _ => VfioError::io(format!("cannot open {}", path.display()), source),
    }
}
