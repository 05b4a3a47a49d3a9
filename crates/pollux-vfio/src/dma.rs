//! [`DmaMemory`]: memory pinned and mapped into a container's IOMMU domain.
//!
//! Each allocation is its own mapping: 2 MiB huge pages from a hugetlb memfd
//! when the system has them (fewer IOTLB misses, fewer pinned-page records),
//! normal pages otherwise. VFIO's type1 backend pins the pages when they are
//! mapped and unpins them on unmap; the IOVA comes from the container's
//! allocator, so it is unrelated to the virtual or physical address. The
//! region is unmapped from the IOMMU, its IOVA range freed and the memory
//! released when the [`DmaRegion`] is dropped.

use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::Ordering;

use pollux_core::{DmaRegion, HugePages, Iova, MemError, MemoryProvider};

use crate::container::Container;
use crate::error::VfioError;
use pollux_core::error_chain;

const HUGE_2M: usize = 2 << 20;
const PAGE_4K: usize = 4096;

/// A [`MemoryProvider`] for devices of one [`Container`].
#[derive(Clone, Debug)]
pub struct DmaMemory {
    container: Container,
    huge: HugePages,
}

impl DmaMemory {
    /// Memory for `container`, huge pages as `huge` says.
    pub fn new(container: Container, huge: HugePages) -> DmaMemory {
        DmaMemory { container, huge }
    }

    /// The container the memory is mapped into.
    pub fn container(&self) -> &Container {
        &self.container
    }

    /// Maps `len` bytes; the VFIO-typed twin of [`MemoryProvider::allocate`].
    pub fn allocate_region(&self, len: usize) -> Result<DmaRegion, VfioError> {
        if self.container.devices() == 0 {
            return Err(VfioError::NoDomain);
        }
        let (map, huge) = match self.huge {
            HugePages::Never => (map_plain(len)?, false),
            HugePages::Prefer => match map_huge(len) {
                Ok(m) => (m, true),
                Err(e) => {
                    tracing::debug!(len, error = %e, "no huge pages for DMA memory, using 4 KiB pages");
                    (map_plain(len)?, false)
                }
            },
            HugePages::Require => (
                map_huge(len).map_err(|source| VfioError::NoHugePages { len, source })?,
                true,
            ),
        };
        let map_len = map.len();
        let align = if huge { HUGE_2M } else { PAGE_4K } as u64;
        let inner = &self.container.inner;
        let iova = inner
            .iova
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .alloc(map_len as u64, align)
            .ok_or(VfioError::IovaExhausted {
                len: map_len as u64,
            })?;
        let mut map = map;
        let ptr = map.as_mut_ptr();
        // SAFETY: `ptr..ptr+map_len` is a mapping this function owns and that
        // lives in the `Mapping` below until after the IOMMU mapping is
        // removed in its Drop; no Rust reference to it exists (memmap2 hands
        // out slices only on request, and we never ask).
        let mapped = unsafe { inner.vfio.vfio_dma_map(iova, map_len, ptr) };
        if let Err(e) = mapped {
            inner
                .iova
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .free(iova);
            return Err(map_error(map_len, e));
        }
        let owner = Mapping {
            container: self.container.clone(),
            iova,
            len: map_len,
            _map: map,
        };
        let ptr = NonNull::new(ptr).ok_or(VfioError::NoDomain)?;
        // SAFETY: the memory is valid for `map_len` bytes while `owner` lives
        // (it holds the mapping), and the device reaches exactly these bytes
        // at `iova` (we just mapped them there).
        Ok(unsafe { DmaRegion::from_raw_parts(ptr, map_len, Iova(iova), huge, Box::new(owner)) })
    }
}

impl MemoryProvider for DmaMemory {
    fn allocate(&self, len: usize) -> Result<DmaRegion, MemError> {
        if len == 0 {
            return Err(MemError::Empty);
        }
        self.allocate_region(len).map_err(|e| match e {
            VfioError::NoHugePages { len, source } => MemError::NoHugePages { len, source },
            other => MemError::Provider(error_chain(&other)),
        })
    }

    fn name(&self) -> &str {
        "vfio"
    }
}

/// Keeps one allocation mapped; undoes everything on drop.
struct Mapping {
    container: Container,
    iova: u64,
    len: usize,
    _map: memmap2::MmapMut,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        let inner = &self.container.inner;
        // When the last group left the container the kernel already dropped
        // the domain and every mapping in it; unmapping then fails harmlessly.
        if inner.devices.load(Ordering::Acquire) > 0 {
            if let Err(e) = inner.vfio.vfio_dma_unmap(self.iova, self.len) {
                tracing::warn!(iova = self.iova, len = self.len, error = %e, "DMA unmap failed");
            }
        }
        inner
            .iova
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .free(self.iova);
        // `_map` is unmapped from the process after this, so the device lost
        // its access before the memory went back to the kernel.
    }
}

fn map_plain(len: usize) -> Result<memmap2::MmapMut, VfioError> {
    memmap2::MmapOptions::new()
        .len(len.next_multiple_of(PAGE_4K))
        .populate()
        .map_anon()
        .map_err(|e| VfioError::io(format!("cannot map {len} bytes of memory for DMA"), e))
}

fn map_huge(len: usize) -> io::Result<memmap2::MmapMut> {
    let len = len.next_multiple_of(HUGE_2M);
    // SAFETY: memfd_create with a valid NUL-terminated name; the result is
    // checked before use and owned by the OwnedFd below.
    let fd = unsafe {
        libc::memfd_create(
            c"pollux-dma".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_HUGETLB | libc::MFD_HUGE_2MB,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.set_len(len as u64)?;
    // SAFETY: the memfd is private to this process and never truncated while
    // mapped, so the mapping stays valid; the mapping keeps its own reference
    // to the file.
    unsafe {
        memmap2::MmapOptions::new()
            .len(len)
            .populate()
            .map_mut(&file)
    }
}

fn map_error(len: usize, e: vfio_ioctls::VfioError) -> VfioError {
    if let vfio_ioctls::VfioError::IommuDmaMap(errno) = &e {
        if errno.errno() == libc::ENOMEM {
            let mut rl = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit writes into the struct we pass.
            let ok = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut rl) } == 0;
            if ok && rl.rlim_cur != libc::RLIM_INFINITY {
                return VfioError::MemlockTooLow {
                    needed: len as u64,
                    limit: format!("{} bytes", rl.rlim_cur),
                    source: io::Error::from_raw_os_error(libc::ENOMEM),
                };
            }
        }
    }
    VfioError::vfio(format!("cannot map {len} bytes into the IOMMU"), e)
}
