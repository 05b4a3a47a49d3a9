//! One virtqueue as the queue code sees it, split or packed: make buffers
//! available in a batch, publish the batch (and learn whether the device
//! wants to be notified), take used buffers back.
//!
//! The two layouts differ in where things are written (2.7, 2.8) but not in
//! what the receive, transmit and control queues do with them, so those are
//! written once against [`Vq`]; the `match` per call is on a value that
//! never changes for a queue, a branch the CPU predicts.

use pollux_core::barrier::{dma_mb, dma_rmb, dma_wmb};
use pollux_core::{DmaRegion, Iova};

use crate::packed::{self, PackedRing};
use crate::spec;
use crate::vring::{need_event, SplitRing};

/// One descriptor of a buffer: address, length, device-writable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seg {
    pub addr: u64,
    pub len: u32,
    pub write: bool,
}

/// The device said something no device may say: a used index more than a
/// queue ahead (split). The queue is out of step with the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault;

/// A split or packed virtqueue and the driver's position in it.
pub enum Vq {
    Split(SplitQ),
    Packed(PackedQ),
}

/// The driver's state of a split virtqueue.
#[derive(Debug)]
pub struct SplitQ {
    ring: SplitRing,
    /// Next `avail.idx` to publish, and the one last published.
    avail_idx: u16,
    published: u16,
    /// Next used element to take, and `used.idx` as last read.
    last_used: u16,
    used_seen: u16,
    event_idx: bool,
}

/// The driver's state of a packed virtqueue.
#[derive(Debug)]
pub struct PackedQ {
    ring: PackedRing,
    /// Next descriptor position to make available, and its wrap counter.
    next_avail: u16,
    avail_wrap: bool,
    /// The first descriptor of the batch not yet published: its position
    /// and the flags to give it last (2.8.21: a batch is handed over by
    /// its first descriptor's flags).
    head: Option<(u16, u16)>,
    /// Position and wrap counter at the last publish.
    published: (u16, bool),
    /// Next descriptor position the device will mark used, and its wrap
    /// counter.
    next_used: u16,
    used_wrap: bool,
    /// Descriptors in each buffer's chain, by buffer id (the device writes
    /// one used descriptor per chain and skips the rest, 2.8.9).
    chain: Box<[u16]>,
    event_idx: bool,
}

impl Vq {
    /// A split queue over `region` (sized by [`crate::vring::ring_bytes`]).
    pub fn split(region: DmaRegion, size: u16, event_idx: bool) -> Option<Vq> {
        Some(Vq::Split(SplitQ {
            ring: SplitRing::new(region, size)?,
            avail_idx: 0,
            published: 0,
            last_used: 0,
            used_seen: 0,
            event_idx,
        }))
    }

    /// A packed queue over `region` (sized by [`packed::packed_bytes`]).
    pub fn packed(region: DmaRegion, size: u16, event_idx: bool) -> Option<Vq> {
        Some(Vq::Packed(PackedQ {
            ring: PackedRing::new(region, size)?,
            next_avail: 0,
            avail_wrap: true,
            head: None,
            published: (0, true),
            next_used: 0,
            used_wrap: true,
            chain: vec![1; size as usize].into_boxed_slice(),
            event_idx,
        }))
    }

    /// Bytes a queue of `size` needs.
    pub fn bytes(size: u16, packed: bool) -> usize {
        if packed {
            packed::packed_bytes(size)
        } else {
            crate::vring::ring_bytes(size)
        }
    }

    /// Number of entries.
    #[inline(always)]
    pub fn size(&self) -> u16 {
        match self {
            Vq::Split(q) => q.ring.size(),
            Vq::Packed(q) => q.ring.size(),
        }
    }

    /// Whether this is a packed queue.
    pub fn is_packed(&self) -> bool {
        matches!(self, Vq::Packed(_))
    }

    /// `queue_desc`, `queue_driver`, `queue_device`.
    pub fn addresses(&self) -> (Iova, Iova, Iova) {
        match self {
            Vq::Split(q) => q.ring.addresses(),
            Vq::Packed(q) => q.ring.addresses(),
        }
    }

    /// Starts over for a device that has just been reset: rings zeroed,
    /// positions at their start, and no used-buffer notifications wanted
    /// (the driver polls). Only while the device does not own the queue.
    pub fn reset(&mut self) {
        match self {
            Vq::Split(q) => {
                q.ring.zero();
                q.ring
                    .view()
                    .set_avail_flags(spec::VRING_AVAIL_F_NO_INTERRUPT);
                q.avail_idx = 0;
                q.published = 0;
                q.last_used = 0;
                q.used_seen = 0;
            }
            Vq::Packed(q) => {
                q.ring.zero();
                q.ring
                    .view()
                    .set_event(true, 0, packed::EVENT_FLAGS_DISABLE);
                q.next_avail = 0;
                q.avail_wrap = true;
                q.head = None;
                q.published = (0, true);
                q.next_used = 0;
                q.used_wrap = true;
                q.chain.fill(1);
            }
        }
    }

    /// [`Vq::post`] for a buffer of one descriptor (every rx and tx packet):
    /// the same stores without the chain loop.
    #[inline(always)]
    pub fn post1(&mut self, id: u16, addr: u64, len: u32, write: bool) {
        match self {
            Vq::Split(q) => {
                let v = q.ring.view();
                let flags = if write { spec::VRING_DESC_F_WRITE } else { 0 };
                v.write_desc(id, addr, len, flags, 0);
                v.set_avail_ring(q.avail_idx, id);
                q.avail_idx = q.avail_idx.wrapping_add(1);
            }
            Vq::Packed(_) => self.post(id, &[Seg { addr, len, write }]),
        }
    }

    /// Makes buffer `id` (its descriptors `segs`, at most the queue size)
    /// available; it reaches the device at the next [`Vq::publish`]. The
    /// caller keeps ids unique among buffers the device holds and, for a
    /// split queue, leaves descriptors `id..id + segs.len()` to this buffer.
    #[inline(always)]
    pub fn post(&mut self, id: u16, segs: &[Seg]) {
        match self {
            Vq::Split(q) => {
                let v = q.ring.view();
                let n = segs.len() as u16;
                for (k, s) in segs.iter().enumerate() {
                    let k = k as u16;
                    let mut flags = if s.write { spec::VRING_DESC_F_WRITE } else { 0 };
                    let next = id.wrapping_add(k + 1);
                    if k + 1 < n {
                        flags |= spec::VRING_DESC_F_NEXT;
                    }
                    v.write_desc(id.wrapping_add(k), s.addr, s.len, flags, next);
                }
                v.set_avail_ring(q.avail_idx, id);
                q.avail_idx = q.avail_idx.wrapping_add(1);
            }
            Vq::Packed(q) => {
                let v = q.ring.view();
                let n = segs.len() as u16;
                for (k, s) in segs.iter().enumerate() {
                    let mut flags = packed::avail_flags(q.avail_wrap);
                    if s.write {
                        flags |= spec::VRING_DESC_F_WRITE;
                    }
                    if (k as u16) + 1 < n {
                        flags |= spec::VRING_DESC_F_NEXT;
                    }
                    // 2.8.6: the buffer id goes in the last descriptor.
                    v.write_body(q.next_avail, s.addr, s.len, id);
                    if q.head.is_none() {
                        q.head = Some((q.next_avail, flags));
                    } else {
                        v.write_flags(q.next_avail, flags);
                    }
                    q.next_avail += 1;
                    if q.next_avail == v.size() {
                        q.next_avail = 0;
                        q.avail_wrap = !q.avail_wrap;
                    }
                }
                if let Some(c) = q.chain.get_mut(id as usize) {
                    *c = n;
                }
            }
        }
    }

    /// Hands the buffers posted since the last call to the device; returns
    /// whether the device asked to be notified of them.
    #[inline]
    pub fn publish(&mut self) -> bool {
        match self {
            Vq::Split(q) => {
                if q.avail_idx == q.published {
                    return false;
                }
                let v = q.ring.view();
                let old = q.published;
                // Descriptors and ring entries before the index that
                // publishes them.
                dma_wmb();
                v.set_avail_idx(q.avail_idx);
                q.published = q.avail_idx;
                // The index store before the load of what the device wants
                // (2.7.13.4).
                dma_mb();
                if q.event_idx {
                    need_event(v.avail_event(), q.avail_idx, old)
                } else {
                    v.used_flags() & spec::VRING_USED_F_NO_NOTIFY == 0
                }
            }
            Vq::Packed(q) => {
                let Some((pos, flags)) = q.head.take() else {
                    return false;
                };
                let v = q.ring.view();
                // Every other descriptor of the batch before the first one's
                // flags, which hand the batch over (2.8.21).
                dma_wmb();
                v.write_flags(pos, flags);
                let old = q.published;
                q.published = (q.next_avail, q.avail_wrap);
                // The flags store before the load of the device's event
                // suppression (2.8.22).
                dma_mb();
                let (desc, eflags) = v.event(false);
                let eflags = if q.event_idx || eflags != packed::EVENT_FLAGS_DESC {
                    eflags
                } else {
                    packed::EVENT_FLAGS_ENABLE
                };
                packed::need_notify(desc, eflags, old, q.published, v.size())
            }
        }
    }

    /// Takes the next used buffer: (id, bytes written). `Ok(None)` when
    /// there is none; `Err` when the device is out of step.
    #[inline(always)]
    pub fn pop_used(&mut self) -> Result<Option<(u32, u32)>, Fault> {
        match self {
            Vq::Split(q) => {
                let v = q.ring.view();
                if q.last_used == q.used_seen {
                    let used = v.used_idx();
                    if used == q.last_used {
                        return Ok(None);
                    }
                    if used.wrapping_sub(q.last_used) > v.size() {
                        return Err(Fault);
                    }
                    // The used elements were written before used.idx.
                    dma_rmb();
                    q.used_seen = used;
                }
                let e = v.used_elem(q.last_used);
                q.last_used = q.last_used.wrapping_add(1);
                Ok(Some(e))
            }
            Vq::Packed(q) => {
                let v = q.ring.view();
                if !packed::is_used(v.flags(q.next_used), q.used_wrap) {
                    return Ok(None);
                }
                // The id and length were written before the flags.
                dma_rmb();
                let (_, len, id, _) = v.read(q.next_used);
                let skip = q.chain.get(id as usize).copied().unwrap_or(1).max(1);
                let mut next = q.next_used as u32 + skip as u32;
                if next >= v.size() as u32 {
                    next -= v.size() as u32;
                    q.used_wrap = !q.used_wrap;
                }
                q.next_used = next as u16;
                Ok(Some((id as u32, len)))
            }
        }
    }
}

impl std::fmt::Debug for Vq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Vq::Split(q) => f
                .debug_struct("Vq::Split")
                .field("ring", &q.ring)
                .field("avail_idx", &q.avail_idx)
                .field("last_used", &q.last_used)
                .finish(),
            Vq::Packed(q) => f
                .debug_struct("Vq::Packed")
                .field("ring", &q.ring)
                .field("next_avail", &q.next_avail)
                .field("next_used", &q.next_used)
                .finish(),
        }
    }
}
