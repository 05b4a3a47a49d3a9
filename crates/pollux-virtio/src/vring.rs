//! Split virtqueues in DMA memory (virtio 1.2, 2.7).
//!
//! A split virtqueue of `N` entries is three areas the driver allocates and
//! the device reads or writes:
//!
//! - the descriptor table, `N` x 16 bytes: `addr` le64, `len` le32,
//!   `flags` le16, `next` le16 (2.7.5);
//! - the driver area ("available ring"): `flags` le16, `idx` le16,
//!   `ring[N]` le16, `used_event` le16 (2.7.6);
//! - the device area ("used ring"): `flags` le16, `idx` le16,
//!   `ring[N]` of { `id` le32, `len` le32 }, `avail_event` le16 (2.7.8).
//!
//! Both sides write into this memory, so no Rust reference to it ever
//! exists: a [`RingView`] holds raw pointers and does single volatile
//! accesses. [`SplitRing`] is the driver's own queue: one [`DmaRegion`] with
//! the used ring on a page of its own, so the device's writes never share a
//! cache line with the driver's (as Linux's `vring_size` and DPDK's
//! `VIRTIO_VRING_ALIGN` place it for legacy devices).

use std::ptr::NonNull;

use pollux_core::{DmaRegion, Iova};

/// Bytes of the descriptor table of `n` entries.
pub const fn desc_bytes(n: u16) -> usize {
    16 * n as usize
}

/// Bytes of the driver area of `n` entries (with `used_event`).
pub const fn avail_bytes(n: u16) -> usize {
    6 + 2 * n as usize
}

/// Bytes of the device area of `n` entries (with `avail_event`).
pub const fn used_bytes(n: u16) -> usize {
    6 + 8 * n as usize
}

/// Offset of the device area in a [`SplitRing`]'s region: 4 bytes into a
/// page of its own.
///
/// The device area needs only 4-byte alignment (2.7). A used element is 8
/// bytes at offset 4 + 8 i of the area, so in a page-aligned area element
/// 511 (and every 512th after it) straddles two pages: its `id` at the end
/// of one, its `len` at the start of the next. Pages contiguous in IOVA
/// need not be behind an IOMMU, and QEMU (9.0 to 11.1 at least) writes such
/// an element through an IOMMU with one translation: `id` lands right and
/// `len` in the first 4 bytes of the guest-physically next page, so the
/// driver reads length 0 and 4 bytes of an unrelated guest page are
/// overwritten (`address_space_write_continue_cached` in QEMU's
/// system/physmem.c continues linearly after the first IOMMU page). The
/// lab's virtio check found it: descriptor 511 of a 1024-entry queue came
/// back with length 0 every time (docs/lab.md). Starting the area at page
/// offset 4 puts every element on an 8-byte boundary, inside one page,
/// whatever the queue size and whatever backs the memory. DPDK and Linux
/// page-align the area and are safe only while the two pages happen to be
/// physically adjacent (huge pages, THP) or the queue has at most 256
/// entries.
pub const fn used_offset(n: u16) -> usize {
    (desc_bytes(n) + avail_bytes(n)).next_multiple_of(4096) + 4
}

/// Bytes of DMA memory a [`SplitRing`] of `n` entries needs.
pub const fn ring_bytes(n: u16) -> usize {
    used_offset(n) + used_bytes(n)
}

/// One split virtqueue's three areas, by address, for volatile access from
/// either side. Indices into the rings wrap modulo the queue size here, so
/// no index can leave the areas.
#[derive(Debug, Clone, Copy)]
pub struct RingView {
    desc: NonNull<u8>,
    avail: NonNull<u8>,
    used: NonNull<u8>,
    size: u16,
    mask: u16,
}

// SAFETY: a view is three addresses and a size; every access through it is
// a single volatile load or store, which the memory system serialises, and
// the owners of the memory ([`SplitRing`], or the caller of `from_raw`)
// keep it alive.
unsafe impl Send for RingView {}
// SAFETY: as above; `&RingView` only allows volatile loads and stores.
unsafe impl Sync for RingView {}

impl RingView {
    /// A view of the areas at these addresses.
    ///
    /// # Safety
    /// `size` must be a power of two, and the three pointers valid for
    /// volatile reads and writes of [`desc_bytes`], [`avail_bytes`] and
    /// [`used_bytes`] of `size` respectively (16-, 2- and 4-byte aligned)
    /// for as long as the view is used, with no Rust reference to that
    /// memory existing meanwhile.
    pub unsafe fn from_raw(
        desc: NonNull<u8>,
        avail: NonNull<u8>,
        used: NonNull<u8>,
        size: u16,
    ) -> RingView {
        debug_assert!(size.is_power_of_two());
        RingView {
            desc,
            avail,
            used,
            size,
            mask: size.wrapping_sub(1),
        }
    }

    /// Number of entries.
    #[inline(always)]
    pub fn size(&self) -> u16 {
        self.size
    }

    /// `ptr + off` as a `*mut T`.
    ///
    /// # Safety
    /// `off + size_of::<T>()` must lie within the area `base` starts.
    #[inline(always)]
    unsafe fn at<T>(base: NonNull<u8>, off: usize) -> *mut T {
        // SAFETY: the caller keeps `off` inside the area.
        unsafe { base.as_ptr().add(off).cast::<T>() }
    }

    // ---- descriptor table ----

    /// Writes descriptor `i`: buffer address, length, flags, next.
    #[inline(always)]
    pub fn write_desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let off = 16 * (i & self.mask) as usize;
        // SAFETY: off + 16 <= desc_bytes(size) (i is masked); the table is
        // 16-byte aligned, so each field is aligned to its width.
        unsafe {
            Self::at::<u64>(self.desc, off).write_volatile(addr.to_le());
            Self::at::<u32>(self.desc, off + 8).write_volatile(len.to_le());
            Self::at::<u16>(self.desc, off + 12).write_volatile(flags.to_le());
            Self::at::<u16>(self.desc, off + 14).write_volatile(next.to_le());
        }
    }

    /// Reads descriptor `i`: (address, length, flags, next).
    #[inline(always)]
    pub fn read_desc(&self, i: u16) -> (u64, u32, u16, u16) {
        let off = 16 * (i & self.mask) as usize;
        // SAFETY: as in `write_desc`.
        unsafe {
            (
                u64::from_le(Self::at::<u64>(self.desc, off).read_volatile()),
                u32::from_le(Self::at::<u32>(self.desc, off + 8).read_volatile()),
                u16::from_le(Self::at::<u16>(self.desc, off + 12).read_volatile()),
                u16::from_le(Self::at::<u16>(self.desc, off + 14).read_volatile()),
            )
        }
    }

    // ---- driver area ----

    #[inline(always)]
    fn avail16(&self, off: usize) -> *mut u16 {
        debug_assert!(off + 2 <= avail_bytes(self.size));
        // SAFETY: callers pass offsets inside the driver area (flags 0,
        // idx 2, ring 4 + 2 * masked slot, used_event 4 + 2 * size).
        unsafe { Self::at::<u16>(self.avail, off) }
    }

    /// Sets `avail.flags`.
    #[inline(always)]
    pub fn set_avail_flags(&self, flags: u16) {
        // SAFETY: offset 0 of the driver area, 2-byte aligned.
        unsafe { self.avail16(0).write_volatile(flags.to_le()) }
    }

    /// Reads `avail.flags`.
    #[inline(always)]
    pub fn avail_flags(&self) -> u16 {
        // SAFETY: as in `set_avail_flags`.
        u16::from_le(unsafe { self.avail16(0).read_volatile() })
    }

    /// Publishes `avail.idx`.
    #[inline(always)]
    pub fn set_avail_idx(&self, idx: u16) {
        // SAFETY: offset 2 of the driver area.
        unsafe { self.avail16(2).write_volatile(idx.to_le()) }
    }

    /// Reads `avail.idx`.
    #[inline(always)]
    pub fn avail_idx(&self) -> u16 {
        // SAFETY: as in `set_avail_idx`.
        u16::from_le(unsafe { self.avail16(2).read_volatile() })
    }

    /// Writes `avail.ring[idx % size] = id`.
    #[inline(always)]
    pub fn set_avail_ring(&self, idx: u16, id: u16) {
        let off = 4 + 2 * (idx & self.mask) as usize;
        // SAFETY: masked slot inside the ring array.
        unsafe { self.avail16(off).write_volatile(id.to_le()) }
    }

    /// Reads `avail.ring[idx % size]`.
    #[inline(always)]
    pub fn avail_ring(&self, idx: u16) -> u16 {
        let off = 4 + 2 * (idx & self.mask) as usize;
        // SAFETY: as in `set_avail_ring`.
        u16::from_le(unsafe { self.avail16(off).read_volatile() })
    }

    /// Writes `used_event` (with `VIRTIO_F_RING_EVENT_IDX`).
    #[inline(always)]
    pub fn set_used_event(&self, idx: u16) {
        let off = 4 + 2 * self.size as usize;
        // SAFETY: the last field of the driver area.
        unsafe { self.avail16(off).write_volatile(idx.to_le()) }
    }

    // ---- device area ----

    /// Reads `used.flags`.
    #[inline(always)]
    pub fn used_flags(&self) -> u16 {
        // SAFETY: offset 0 of the device area, 4-byte aligned.
        u16::from_le(unsafe { Self::at::<u16>(self.used, 0).read_volatile() })
    }

    /// Sets `used.flags` (the device side).
    #[inline(always)]
    pub fn set_used_flags(&self, flags: u16) {
        // SAFETY: as in `used_flags`.
        unsafe { Self::at::<u16>(self.used, 0).write_volatile(flags.to_le()) }
    }

    /// Reads `used.idx`.
    #[inline(always)]
    pub fn used_idx(&self) -> u16 {
        // SAFETY: offset 2 of the device area.
        u16::from_le(unsafe { Self::at::<u16>(self.used, 2).read_volatile() })
    }

    /// Sets `used.idx` (the device side, and the driver when it zeroes a
    /// queue the device does not own).
    #[inline(always)]
    pub fn set_used_idx(&self, idx: u16) {
        // SAFETY: as in `used_idx`.
        unsafe { Self::at::<u16>(self.used, 2).write_volatile(idx.to_le()) }
    }

    /// Reads `used.ring[idx % size]`: (descriptor id, bytes written).
    #[inline(always)]
    pub fn used_elem(&self, idx: u16) -> (u32, u32) {
        let off = 4 + 8 * (idx & self.mask) as usize;
        // SAFETY: masked element inside the used ring, 4-byte aligned.
        unsafe {
            (
                u32::from_le(Self::at::<u32>(self.used, off).read_volatile()),
                u32::from_le(Self::at::<u32>(self.used, off + 4).read_volatile()),
            )
        }
    }

    /// Writes `used.ring[idx % size]` (the device side).
    #[inline(always)]
    pub fn set_used_elem(&self, idx: u16, id: u32, len: u32) {
        let off = 4 + 8 * (idx & self.mask) as usize;
        // SAFETY: as in `used_elem`.
        unsafe {
            Self::at::<u32>(self.used, off).write_volatile(id.to_le());
            Self::at::<u32>(self.used, off + 4).write_volatile(len.to_le());
        }
    }

    /// Reads `avail_event` (with `VIRTIO_F_RING_EVENT_IDX`).
    #[inline(always)]
    pub fn avail_event(&self) -> u16 {
        let off = 4 + 8 * self.size as usize;
        // SAFETY: the last field of the device area, 2-byte aligned.
        u16::from_le(unsafe { Self::at::<u16>(self.used, off).read_volatile() })
    }

    /// Writes `avail_event` (the device side).
    #[inline(always)]
    pub fn set_avail_event(&self, idx: u16) {
        let off = 4 + 8 * self.size as usize;
        // SAFETY: as in `avail_event`.
        unsafe { Self::at::<u16>(self.used, off).write_volatile(idx.to_le()) }
    }
}

/// `vring_need_event` (2.7.10.1): with event indices, whether moving the
/// index from `old` to `new` passes `event`, the index the other side asked
/// to be told about.
#[inline(always)]
pub fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

/// A split virtqueue the driver owns: its memory and a view of it.
pub struct SplitRing {
    region: DmaRegion,
    view: RingView,
}

impl SplitRing {
    /// A zeroed queue of `size` entries (a power of two up to 32768) at the
    /// start of `region`; `None` when the size is not one or the region is
    /// too small.
    pub fn new(region: DmaRegion, size: u16) -> Option<SplitRing> {
        if !size.is_power_of_two()
            || size > crate::spec::MAX_QUEUE_SIZE
            || region.len() < ring_bytes(size)
        {
            return None;
        }
        let base = NonNull::new(region.as_ptr())?;
        // SAFETY: the region is page aligned and at least ring_bytes(size)
        // long, so the three areas (at 0, desc_bytes and used_offset) are in
        // it and aligned; it lives as long as the view (both in `self`), and
        // no reference to it is ever made.
        let view = unsafe {
            RingView::from_raw(
                base,
                NonNull::new_unchecked(base.as_ptr().add(desc_bytes(size))),
                NonNull::new_unchecked(base.as_ptr().add(used_offset(size))),
                size,
            )
        };
        let ring = SplitRing { region, view };
        ring.zero();
        Some(ring)
    }

    /// Zeroes the three areas: the state of a queue the device has never
    /// seen. Only while the device does not own the queue (before
    /// DRIVER_OK, after a reset).
    pub fn zero(&self) {
        let v = &self.view;
        for i in 0..v.size {
            v.write_desc(i, 0, 0, 0, 0);
            v.set_avail_ring(i, 0);
            v.set_used_elem(i, 0, 0);
        }
        v.set_avail_flags(0);
        v.set_avail_idx(0);
        v.set_used_event(0);
        v.set_used_flags(0);
        v.set_used_idx(0);
        v.set_avail_event(0);
    }

    /// The view the queue's code reads and writes through.
    #[inline(always)]
    pub fn view(&self) -> &RingView {
        &self.view
    }

    /// Number of entries.
    #[inline(always)]
    pub fn size(&self) -> u16 {
        self.view.size
    }

    /// Device addresses of the descriptor table, driver area and device area
    /// (what `queue_desc`, `queue_driver` and `queue_device` get).
    pub fn addresses(&self) -> (Iova, Iova, Iova) {
        let b = self.region.iova().0;
        (
            Iova(b),
            Iova(b + desc_bytes(self.size()) as u64),
            Iova(b + used_offset(self.size()) as u64),
        )
    }
}

impl std::fmt::Debug for SplitRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SplitRing")
            .field("size", &self.size())
            .field("iova", &self.region.iova())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pollux_core::{AnonMemory, HugePages, MemoryProvider};

    fn ring(n: u16) -> SplitRing {
        let mem = AnonMemory::new(HugePages::Never);
        SplitRing::new(mem.allocate(ring_bytes(n)).unwrap(), n).unwrap()
    }

    #[test]
    fn layout_matches_the_spec_sizes() {
        assert_eq!(desc_bytes(256), 4096);
        assert_eq!(avail_bytes(256), 518);
        assert_eq!(used_bytes(256), 2054);
        assert_eq!(used_offset(256), 8192 + 4);
        let r = ring(256);
        let (d, a, u) = r.addresses();
        assert_eq!(a.0 - d.0, 4096);
        assert_eq!(u.0 - d.0, 8196);
    }

    #[test]
    fn sizes_that_are_not_powers_of_two_are_refused() {
        let mem = AnonMemory::new(HugePages::Never);
        assert!(SplitRing::new(mem.allocate(ring_bytes(256)).unwrap(), 255).is_none());
        assert!(SplitRing::new(mem.allocate(ring_bytes(256)).unwrap(), 512).is_none());
        assert!(SplitRing::new(mem.allocate(ring_bytes(256)).unwrap(), 0).is_none());
    }

    #[test]
    fn indices_wrap_inside_the_rings() {
        let r = ring(8);
        let v = r.view();
        v.write_desc(9, 0xabc, 64, 2, 3);
        assert_eq!(v.read_desc(1), (0xabc, 64, 2, 3));
        v.set_avail_ring(65535, 7);
        assert_eq!(v.avail_ring(7), 7);
        v.set_used_elem(8, 5, 60);
        assert_eq!(v.used_elem(0), (5, 60));
        v.set_used_event(0x1234);
        v.set_avail_event(0x4321);
        assert_eq!(v.avail_event(), 0x4321);
        assert_eq!(v.avail_idx(), 0, "used_event is not avail.idx");
    }

    #[test]
    fn no_used_element_straddles_a_page_at_any_size() {
        for shift in 1..=15 {
            let n = 1u16 << shift;
            let base = used_offset(n);
            assert_eq!(base % 4, 0, "the device area is 4-byte aligned (2.7)");
            for i in 0..n as usize {
                let (start, end) = (base + 4 + 8 * i, base + 4 + 8 * i + 7);
                assert_eq!(start / 4096, end / 4096, "element {i} of {n} straddles");
            }
            // The page-aligned layout DPDK and Linux use straddles from 512.
            let aligned = used_offset(n) - 4;
            let straddles = (0..n as usize)
                .any(|i| (aligned + 4 + 8 * i) / 4096 != (aligned + 11 + 8 * i) / 4096);
            assert_eq!(straddles, n >= 512, "{n}");
        }
    }

    #[test]
    fn need_event_is_the_specs_formula() {
        // Moving 10 -> 12 passes event 10 and 11, not 12 or 9.
        assert!(need_event(10, 12, 10));
        assert!(need_event(11, 12, 10));
        assert!(!need_event(12, 12, 10));
        assert!(!need_event(9, 12, 10));
        // Across the u16 wrap.
        assert!(need_event(65535, 1, 65534));
        assert!(!need_event(1, 1, 65534));
    }
}
