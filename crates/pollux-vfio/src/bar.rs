//! [`Bar`]: a memory-mapped PCI BAR with typed volatile register access.
//!
//! No Rust reference over MMIO ever exists: a `Bar` holds a pointer and a
//! length, and every access is one volatile load or store of the register's
//! width: 32 bits for NIC registers (QEMU's igb model ignores narrower
//! accesses), 8 and 16 bits where a device defines such registers (virtio's
//! common configuration). An offset outside the BAR or not aligned to the
//! access reads as all ones and writes nothing, as a PCIe master abort would, instead of
//! panicking in a data path; debug builds assert.

use std::any::Any;
use std::fmt;
use std::ptr::NonNull;

/// A mapped BAR (or, for tests and benches, plain memory standing in for one).
pub struct Bar {
    ptr: NonNull<u8>,
    len: usize,
    _owner: Box<dyn Any + Send + Sync>,
}

// SAFETY: the BAR is device memory reachable from any thread; every access is
// a single volatile load or store, which the device serialises.
unsafe impl Send for Bar {}
// SAFETY: as above; `&Bar` only allows volatile loads and stores.
unsafe impl Sync for Bar {}

impl Bar {
    /// Wraps a mapping.
    ///
    /// # Safety
    /// `ptr` must be valid for volatile 32-bit reads and writes of `len`
    /// bytes for as long as `owner` lives, and nothing may hold a Rust
    /// reference to that memory.
    pub unsafe fn from_raw_parts(
        ptr: NonNull<u8>,
        len: usize,
        owner: Box<dyn Any + Send + Sync>,
    ) -> Bar {
        Bar {
            ptr,
            len,
            _owner: owner,
        }
    }

    /// Plain zeroed memory posing as a BAR of `len` bytes: registers read back
    /// what was written. For tests and benches that play the device.
    pub fn plain_memory(len: usize) -> Bar {
        let len = len.next_multiple_of(4).max(4);
        let mut map = memmap2::MmapOptions::new()
            .len(len)
            .map_anon()
            .expect("anonymous mapping for a test BAR");
        let ptr = NonNull::new(map.as_mut_ptr()).expect("mmap never returns null");
        // SAFETY: the anonymous mapping is valid for `len` bytes while it
        // lives in the owner box, and no slice of it is ever taken.
        unsafe { Bar::from_raw_parts(ptr, len, Box::new(map)) }
    }

    /// Size in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-length BAR.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Pointer to the `T`-sized register at `off`, or `None` when it is
    /// outside the BAR or not aligned to its size.
    #[inline(always)]
    fn reg<T>(&self, off: u32) -> Option<*mut T> {
        let off = off as usize;
        let size = std::mem::size_of::<T>();
        if off % size != 0 || off + size > self.len {
            debug_assert!(
                false,
                "{size}-byte register at {off:#x} outside a {}-byte BAR or unaligned",
                self.len
            );
            return None;
        }
        // SAFETY: off + size <= len, so the pointer stays inside the mapping.
        Some(unsafe { self.ptr.as_ptr().add(off) }.cast::<T>())
    }

    /// Reads the 32-bit register at byte offset `off`.
    #[inline(always)]
    pub fn read32(&self, off: u32) -> u32 {
        match self.reg::<u32>(off) {
            // SAFETY: in bounds and 4-byte aligned (the mapping is page
            // aligned); volatile because the device changes it.
            Some(p) => u32::from_le(unsafe { p.read_volatile() }),
            None => u32::MAX,
        }
    }

    /// Writes the 32-bit register at byte offset `off`.
    #[inline(always)]
    pub fn write32(&self, off: u32, val: u32) {
        if let Some(p) = self.reg::<u32>(off) {
            // SAFETY: in bounds and aligned; volatile so the store happens
            // exactly once and in program order with other volatile accesses.
            unsafe { p.write_volatile(val.to_le()) }
        }
    }

    /// Reads the 16-bit register at byte offset `off` (for devices whose
    /// registers are 16 bits wide and must be accessed so, as virtio's
    /// common configuration).
    #[inline(always)]
    pub fn read16(&self, off: u32) -> u16 {
        match self.reg::<u16>(off) {
            // SAFETY: in bounds and 2-byte aligned; volatile as in read32.
            Some(p) => u16::from_le(unsafe { p.read_volatile() }),
            None => u16::MAX,
        }
    }

    /// Writes the 16-bit register at byte offset `off`.
    #[inline(always)]
    pub fn write16(&self, off: u32, val: u16) {
        if let Some(p) = self.reg::<u16>(off) {
            // SAFETY: in bounds and aligned; volatile as in write32.
            unsafe { p.write_volatile(val.to_le()) }
        }
    }

    /// Reads the 8-bit register at byte offset `off`.
    #[inline(always)]
    pub fn read8(&self, off: u32) -> u8 {
        match self.reg::<u8>(off) {
            // SAFETY: in bounds; volatile as in read32.
            Some(p) => unsafe { p.read_volatile() },
            None => u8::MAX,
        }
    }

    /// Writes the 8-bit register at byte offset `off`.
    #[inline(always)]
    pub fn write8(&self, off: u32, val: u8) {
        if let Some(p) = self.reg::<u8>(off) {
            // SAFETY: in bounds; volatile as in write32.
            unsafe { p.write_volatile(val) }
        }
    }
}

impl fmt::Debug for Bar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bar")
            .field("va", &self.ptr)
            .field("len", &self.len)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_memory_reads_back_and_rejects_bad_offsets_in_release() {
        let bar = Bar::plain_memory(64);
        assert_eq!(bar.read32(8), 0);
        bar.write32(8, 0xdead_beef);
        assert_eq!(bar.read32(8), 0xdead_beef);
        assert_eq!(bar.len(), 64);
        bar.write16(2, 0x1234);
        bar.write8(1, 0x56);
        assert_eq!(bar.read32(0), 0x1234_5600);
        assert_eq!(bar.read16(2), 0x1234);
        assert_eq!(bar.read8(1), 0x56);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "outside")]
    fn out_of_range_asserts_in_debug() {
        let bar = Bar::plain_memory(16);
        bar.read32(16);
    }
}
