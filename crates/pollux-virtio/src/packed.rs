//! Packed virtqueues (virtio 1.2, 2.8), negotiated with
//! `VIRTIO_F_RING_PACKED`.
//!
//! One ring of `N` 16-byte descriptors (`addr` le64, `len` le32, `id` le16,
//! `flags` le16) that both sides write in place, and two 4-byte event
//! suppression structures (`desc` le16, `flags` le16): the driver's
//! (`queue_driver`) and the device's (`queue_device`).
//!
//! The driver makes a descriptor available by writing it with `AVAIL` set
//! to its wrap counter and `USED` to the inverse, the flags last (2.8.21);
//! the device marks it used by writing, at its own next position, the
//! buffer id, the length written and flags with `AVAIL` and `USED` both
//! equal to its wrap counter (2.8.9). Each side's wrap counter starts at 1
//! and flips every time its position wraps (2.8.1).
//!
//! As for split queues, nothing here holds a Rust reference to the ring: a
//! [`PackedView`] does single volatile accesses, and every index wraps
//! modulo the queue size.

use std::ptr::NonNull;

use pollux_core::{DmaRegion, Iova};

/// `VIRTQ_DESC_F_AVAIL` (2.8.1).
pub const DESC_F_AVAIL: u16 = 1 << 7;
/// `VIRTQ_DESC_F_USED` (2.8.1).
pub const DESC_F_USED: u16 = 1 << 15;
/// Event suppression flags (2.8.10): notify always, never, or at `desc`.
pub const EVENT_FLAGS_ENABLE: u16 = 0;
pub const EVENT_FLAGS_DISABLE: u16 = 1;
pub const EVENT_FLAGS_DESC: u16 = 2;

/// Offset of the driver event suppression area in a [`PackedRing`]'s
/// region: after the descriptors, on a cache line of its own.
pub const fn driver_event_offset(n: u16) -> usize {
    (16 * n as usize).next_multiple_of(64)
}

/// Offset of the device event suppression area: on a cache line of its own.
pub const fn device_event_offset(n: u16) -> usize {
    driver_event_offset(n) + 64
}

/// Bytes of DMA memory a [`PackedRing`] of `n` entries needs.
pub const fn packed_bytes(n: u16) -> usize {
    device_event_offset(n) + 4
}

/// The flags that mark a descriptor available under wrap counter `wrap`.
#[inline(always)]
pub const fn avail_flags(wrap: bool) -> u16 {
    if wrap {
        DESC_F_AVAIL
    } else {
        DESC_F_USED
    }
}

/// Whether `flags` mark a descriptor used under wrap counter `wrap`.
#[inline(always)]
pub const fn is_used(flags: u16, wrap: bool) -> bool {
    let avail = flags & DESC_F_AVAIL != 0;
    let used = flags & DESC_F_USED != 0;
    avail == used && used == wrap
}

/// A packed virtqueue's descriptor ring and event structures, by address.
#[derive(Debug, Clone, Copy)]
pub struct PackedView {
    ring: NonNull<u8>,
    driver_event: NonNull<u8>,
    device_event: NonNull<u8>,
    size: u16,
}

// SAFETY: addresses and a size; every access is a single volatile load or
// store of memory the owner keeps alive (as RingView).
unsafe impl Send for PackedView {}
// SAFETY: as above.
unsafe impl Sync for PackedView {}

impl PackedView {
    /// A view of the areas at these addresses.
    ///
    /// # Safety
    /// `ring` must be valid for volatile reads and writes of `16 * size`
    /// bytes (16-byte aligned) and each event pointer of 4 bytes (4-byte
    /// aligned), for as long as the view is used, with no Rust reference to
    /// that memory meanwhile; `size` must not be 0.
    pub unsafe fn from_raw(
        ring: NonNull<u8>,
        driver_event: NonNull<u8>,
        device_event: NonNull<u8>,
        size: u16,
    ) -> PackedView {
        debug_assert!(size > 0);
        PackedView {
            ring,
            driver_event,
            device_event,
            size,
        }
    }

    /// Number of descriptors.
    #[inline(always)]
    pub fn size(&self) -> u16 {
        self.size
    }

    #[inline(always)]
    fn slot(&self, i: u16) -> usize {
        16 * (if i < self.size { i } else { i % self.size }) as usize
    }

    /// Writes descriptor `i`'s address, length and id, not its flags.
    #[inline(always)]
    pub fn write_body(&self, i: u16, addr: u64, len: u32, id: u16) {
        let off = self.slot(i);
        // SAFETY: off + 14 <= 16 * size (the slot wraps); fields aligned to
        // their width in a 16-byte aligned ring.
        unsafe {
            let p = self.ring.as_ptr().add(off);
            p.cast::<u64>().write_volatile(addr.to_le());
            p.add(8).cast::<u32>().write_volatile(len.to_le());
            p.add(12).cast::<u16>().write_volatile(id.to_le());
        }
    }

    /// Writes descriptor `i`'s flags (the store that hands it over).
    #[inline(always)]
    pub fn write_flags(&self, i: u16, flags: u16) {
        let off = self.slot(i);
        // SAFETY: as in `write_body`.
        unsafe {
            self.ring
                .as_ptr()
                .add(off + 14)
                .cast::<u16>()
                .write_volatile(flags.to_le())
        }
    }

    /// Reads descriptor `i`'s flags.
    #[inline(always)]
    pub fn flags(&self, i: u16) -> u16 {
        let off = self.slot(i);
        // SAFETY: as in `write_body`.
        u16::from_le(unsafe {
            self.ring
                .as_ptr()
                .add(off + 14)
                .cast::<u16>()
                .read_volatile()
        })
    }

    /// Reads descriptor `i`: (address, length, id, flags).
    #[inline(always)]
    pub fn read(&self, i: u16) -> (u64, u32, u16, u16) {
        let off = self.slot(i);
        // SAFETY: as in `write_body`.
        unsafe {
            let p = self.ring.as_ptr().add(off);
            (
                u64::from_le(p.cast::<u64>().read_volatile()),
                u32::from_le(p.add(8).cast::<u32>().read_volatile()),
                u16::from_le(p.add(12).cast::<u16>().read_volatile()),
                u16::from_le(p.add(14).cast::<u16>().read_volatile()),
            )
        }
    }

    /// Writes an event suppression structure: `driver` (ours) or the
    /// device's (the device side).
    #[inline(always)]
    pub fn set_event(&self, driver: bool, desc: u16, flags: u16) {
        let p = if driver {
            self.driver_event
        } else {
            self.device_event
        };
        // SAFETY: 4 valid, 4-byte aligned bytes (from_raw's contract).
        unsafe {
            p.as_ptr().cast::<u16>().write_volatile(desc.to_le());
            p.as_ptr()
                .add(2)
                .cast::<u16>()
                .write_volatile(flags.to_le());
        }
    }

    /// Reads an event suppression structure: (desc, flags).
    #[inline(always)]
    pub fn event(&self, driver: bool) -> (u16, u16) {
        let p = if driver {
            self.driver_event
        } else {
            self.device_event
        };
        // SAFETY: as in `set_event`.
        unsafe {
            (
                u16::from_le(p.as_ptr().cast::<u16>().read_volatile()),
                u16::from_le(p.as_ptr().add(2).cast::<u16>().read_volatile()),
            )
        }
    }
}

/// A packed virtqueue the driver owns.
pub struct PackedRing {
    region: DmaRegion,
    view: PackedView,
}

impl PackedRing {
    /// A zeroed queue of `size` entries (1 to 32768; packed queues need not
    /// be powers of two) at the start of `region`.
    pub fn new(region: DmaRegion, size: u16) -> Option<PackedRing> {
        if size == 0 || size > crate::spec::MAX_QUEUE_SIZE || region.len() < packed_bytes(size) {
            return None;
        }
        let base = NonNull::new(region.as_ptr())?;
        // SAFETY: the region is page aligned and at least packed_bytes(size)
        // long, so the ring and both 64-byte-aligned event areas are in it;
        // it lives as long as the view (both in `self`).
        let view = unsafe {
            PackedView::from_raw(
                base,
                NonNull::new_unchecked(base.as_ptr().add(driver_event_offset(size))),
                NonNull::new_unchecked(base.as_ptr().add(device_event_offset(size))),
                size,
            )
        };
        let r = PackedRing { region, view };
        r.zero();
        Some(r)
    }

    /// Zeroes the ring and the event structures (a queue the device has
    /// never seen); only while the device does not own the queue.
    pub fn zero(&self) {
        for i in 0..self.view.size {
            self.view.write_body(i, 0, 0, 0);
            self.view.write_flags(i, 0);
        }
        self.view.set_event(true, 0, 0);
        self.view.set_event(false, 0, 0);
    }

    /// The view the queue's code uses.
    #[inline(always)]
    pub fn view(&self) -> &PackedView {
        &self.view
    }

    /// Number of descriptors.
    pub fn size(&self) -> u16 {
        self.view.size
    }

    /// Device addresses of the ring and the driver and device event areas
    /// (what `queue_desc`, `queue_driver` and `queue_device` get).
    pub fn addresses(&self) -> (Iova, Iova, Iova) {
        let b = self.region.iova().0;
        let n = self.size();
        (
            Iova(b),
            Iova(b + driver_event_offset(n) as u64),
            Iova(b + device_event_offset(n) as u64),
        )
    }
}

impl std::fmt::Debug for PackedRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedRing")
            .field("size", &self.size())
            .field("iova", &self.region.iova())
            .finish()
    }
}

/// Whether a driver that moved its next-available position from `old`
/// (wrap counter `old_wrap`) to `new` (`new_wrap`) must notify a device
/// whose event suppression structure says (`desc`, `flags`) (2.8.10,
/// 2.8.22). Positions are brought into `new`'s lap before the comparison
/// of 2.7.10.1 (`vring_need_event`).
#[inline(always)]
pub fn need_notify(
    desc: u16,
    flags: u16,
    (old, old_wrap): (u16, bool),
    (new, new_wrap): (u16, bool),
    size: u16,
) -> bool {
    match flags {
        EVENT_FLAGS_DISABLE => false,
        EVENT_FLAGS_DESC => {
            // desc: bit 15 the wrap counter, bits 0..14 the offset.
            let (off, ewrap) = (desc & 0x7fff, desc & 0x8000 != 0);
            let lap = |pos: u16, w: bool| {
                if w == new_wrap {
                    pos
                } else {
                    pos.wrapping_sub(size)
                }
            };
            crate::vring::need_event(lap(off, ewrap), new, lap(old, old_wrap))
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_is_avail_equal_to_used_equal_to_the_wrap_counter() {
        assert!(!is_used(avail_flags(true), true));
        assert!(!is_used(avail_flags(false), false));
        assert!(is_used(DESC_F_AVAIL | DESC_F_USED, true));
        assert!(is_used(0, false));
        assert!(!is_used(DESC_F_AVAIL | DESC_F_USED, false));
    }

    #[test]
    fn layout_keeps_event_areas_on_their_own_lines() {
        assert_eq!(driver_event_offset(256), 4096);
        assert_eq!(device_event_offset(256), 4160);
        assert_eq!(packed_bytes(256), 4164);
        assert_eq!(driver_event_offset(3), 64);
    }

    #[test]
    fn notification_rules() {
        let t = true;
        assert!(!need_notify(0, EVENT_FLAGS_DISABLE, (0, t), (5, t), 256));
        assert!(need_notify(0, EVENT_FLAGS_ENABLE, (0, t), (5, t), 256));
        // Event at 3 in the same lap: passed going 0 -> 5, not 4 -> 5.
        assert!(need_notify(
            0x8000 | 3,
            EVENT_FLAGS_DESC,
            (0, t),
            (5, t),
            256
        ));
        assert!(!need_notify(
            0x8000 | 3,
            EVENT_FLAGS_DESC,
            (4, t),
            (5, t),
            256
        ));
        // Across the wrap: 250 (lap 1) -> 4 (lap 2) passes 254 of lap 1
        // and 2 of lap 2, not 10 of lap 2.
        assert!(need_notify(
            0x8000 | 254,
            EVENT_FLAGS_DESC,
            (250, t),
            (4, !t),
            256
        ));
        assert!(need_notify(2, EVENT_FLAGS_DESC, (250, t), (4, !t), 256));
        assert!(!need_notify(10, EVENT_FLAGS_DESC, (250, t), (4, !t), 256));
    }
}
