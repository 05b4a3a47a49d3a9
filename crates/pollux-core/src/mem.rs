//! Memory that buffers live in, and the providers that hand it out.
//!
//! A [`MemoryProvider`] turns a byte count into a [`DmaRegion`]: a virtual
//! mapping plus the I/O virtual address a device uses for it. This crate has
//! [`AnonMemory`] (anonymous pages, 2 MiB huge pages when the system has
//! them); `pollux-vfio` adds memory mapped into an IOMMU domain.

use std::any::Any;
use std::fmt;
use std::ptr::NonNull;

/// An I/O virtual address: what a device puts on the bus to reach memory.
///
/// A distinct type from virtual addresses so the two cannot be confused (the
/// same idea as vm-memory's `GuestAddress`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Iova(pub u64);

impl Iova {
    /// The address `bytes` further on.
    #[inline]
    pub const fn offset(self, bytes: u64) -> Iova {
        Iova(self.0 + bytes)
    }
}

impl fmt::Display for Iova {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// Errors of memory providers.
#[derive(Debug, thiserror::Error)]
pub enum MemError {
    #[error("cannot map {len} bytes of {kind} memory")]
    Map {
        len: usize,
        kind: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("huge pages were required but none could be mapped ({len} bytes); reserve some with `echo 512 > /proc/sys/vm/nr_hugepages`")]
    NoHugePages {
        len: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("zero-length region requested")]
    Empty,
    #[error("{0}")]
    Provider(String),
}

/// A contiguous region of memory that a device can reach at [`DmaRegion::iova`].
///
/// The region stays mapped as long as the value lives; the owner object
/// (a mapping, an IOMMU mapping guard) is dropped with it.
pub struct DmaRegion {
    ptr: NonNull<u8>,
    len: usize,
    iova: Iova,
    huge: bool,
    _owner: Box<dyn Any + Send + Sync>,
}

// SAFETY: the region is plain memory owned by `_owner`, which is Send + Sync;
// the raw pointer is only an address into it.
unsafe impl Send for DmaRegion {}
// SAFETY: as above; shared access hands out only the address, and callers that
// write through it coordinate among themselves (the mempool gives each buffer
// to one owner at a time).
unsafe impl Sync for DmaRegion {}

impl DmaRegion {
    /// Wraps memory that a provider mapped.
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes for as long as
    /// `owner` lives, must not be accessed through other paths except by the
    /// device at `iova`, and `iova..iova+len` must reach the same bytes from
    /// the device's side (or, for memory no device will use, be any value the
    /// provider documents).
    pub unsafe fn from_raw_parts(
        ptr: NonNull<u8>,
        len: usize,
        iova: Iova,
        huge: bool,
        owner: Box<dyn Any + Send + Sync>,
    ) -> DmaRegion {
        DmaRegion {
            ptr,
            len,
            iova,
            huge,
            _owner: owner,
        }
    }

    /// Start of the region in this process.
    #[inline]
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-length region (providers never return one).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Device-side address of the first byte.
    #[inline]
    pub fn iova(&self) -> Iova {
        self.iova
    }

    /// Whether the region is backed by huge pages.
    pub fn is_huge(&self) -> bool {
        self.huge
    }
}

impl fmt::Debug for DmaRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DmaRegion")
            .field("va", &self.ptr)
            .field("len", &self.len)
            .field("iova", &self.iova)
            .field("huge", &self.huge)
            .finish()
    }
}

/// Something that can hand out DMA-capable memory.
pub trait MemoryProvider: fmt::Debug + Send + Sync {
    /// Maps at least `len` bytes, zeroed.
    fn allocate(&self, len: usize) -> Result<DmaRegion, MemError>;

    /// Short name for logs (`anon`, `vfio`).
    fn name(&self) -> &str;
}

/// Whether [`AnonMemory`] uses 2 MiB huge pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HugePages {
    /// Try huge pages, fall back to normal pages.
    #[default]
    Prefer,
    /// Fail when no huge pages are available.
    Require,
    /// Normal pages only.
    Never,
}

/// Anonymous memory, for software ports and tests.
///
/// The IOVA it reports is the virtual address: correct for software ports
/// (which never hand the address to a device), and for nothing else.
#[derive(Clone, Copy, Debug, Default)]
pub struct AnonMemory {
    pub huge: HugePages,
}

const HUGE_2M: usize = 2 << 20;

impl AnonMemory {
    /// Normal or huge pages, as `huge` says.
    pub fn new(huge: HugePages) -> AnonMemory {
        AnonMemory { huge }
    }
}

impl MemoryProvider for AnonMemory {
    fn allocate(&self, len: usize) -> Result<DmaRegion, MemError> {
        if len == 0 {
            return Err(MemError::Empty);
        }
        let (map, huge) = match self.huge {
            HugePages::Never => (map_anon(len, false)?, false),
            HugePages::Prefer => match map_anon(len.next_multiple_of(HUGE_2M), true) {
                Ok(m) => (m, true),
                Err(_) => (map_anon(len, false)?, false),
            },
            HugePages::Require => match map_anon(len.next_multiple_of(HUGE_2M), true) {
                Ok(m) => (m, true),
                Err(MemError::Map { source, .. }) => {
                    return Err(MemError::NoHugePages { len, source })
                }
                Err(e) => return Err(e),
            },
        };
        let mut map = map;
        let ptr = NonNull::new(map.as_mut_ptr()).ok_or(MemError::Empty)?;
        let iova = Iova(ptr.as_ptr() as u64);
        // SAFETY: `map` is a private anonymous mapping of at least `len`
        // bytes that lives as long as the region (it is the owner); the IOVA
        // of anonymous memory is documented to be its virtual address.
        Ok(unsafe { DmaRegion::from_raw_parts(ptr, map.len(), iova, huge, Box::new(map)) })
    }

    fn name(&self) -> &str {
        "anon"
    }
}

fn map_anon(len: usize, huge: bool) -> Result<memmap2::MmapMut, MemError> {
    let mut opts = memmap2::MmapOptions::new();
    opts.len(len).populate();
    if huge {
        // 21 = log2(2 MiB), the x86-64 huge page size.
        opts.huge(Some(21));
    }
    opts.map_anon().map_err(|source| MemError::Map {
        len,
        kind: if huge { "huge-page" } else { "anonymous" },
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anon_memory_is_zeroed_and_writable() {
        let r = AnonMemory::new(HugePages::Never).allocate(10_000).unwrap();
        assert!(r.len() >= 10_000);
        assert_eq!(r.iova().0, r.as_ptr() as u64);
        // SAFETY: the region is valid for `len` bytes and nothing else uses it.
        unsafe {
            assert_eq!(*r.as_ptr().add(9_999), 0);
            r.as_ptr().add(9_999).write(7);
            assert_eq!(*r.as_ptr().add(9_999), 7);
        }
    }

    #[test]
    fn zero_length_is_an_error() {
        assert!(matches!(
            AnonMemory::default().allocate(0),
            Err(MemError::Empty)
        ));
    }
}
