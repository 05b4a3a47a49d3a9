//! Receive virtqueue: buffers posted in bursts, frames taken from the used
//! ring.
//!
//! Descriptor `i` always carries the buffer held in software slot `i`; it is
//! one device-writable descriptor over the mbuf's buffer from 12 bytes
//! before its data offset, so the device writes the `virtio_net_hdr` into
//! the headroom and the frame lands where the mbuf's data starts, with no
//! copy (DPDK's virtio PMD lays its buffers out the same way). Without
//! `VIRTIO_NET_F_MRG_RXBUF` every frame fits one buffer (5.1.6.3.1: at
//! least 1526 bytes each).
//!
//! Nothing the device writes is trusted: a used index that runs more than
//! a queue ahead, a descriptor id out of range or not posted, a length
//! shorter than the header or longer than the buffer each drop the entry,
//! are counted, and never panic.

use pollux_core::barrier::{dma_mb, dma_rmb, dma_wmb};
use pollux_core::mbuf::HEADROOM;
use pollux_core::{Burst, Mbuf, Mempool, PacketType, RxFlags};

use crate::spec;
use crate::transport::Notifier;
use crate::vring::{need_event, SplitRing};

/// Counters of one receive queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxVqStats {
    pub packets: u64,
    pub bytes: u64,
    /// Used entries dropped: bad id, bad length.
    pub errors: u64,
    /// Times the pool had no buffer to refill a slot.
    pub nombuf: u64,
    /// Times the used index ran more than a queue ahead of the driver.
    pub device_faults: u64,
}

/// One receive virtqueue.
pub struct RxVq {
    ring: SplitRing,
    notifier: Notifier,
    sw: Box<[Option<Mbuf>]>,
    pool: Mempool,
    /// Next `avail.idx` to publish.
    avail_idx: u16,
    /// `avail.idx` as last published.
    published: u16,
    /// Next used entry to look at.
    last_used: u16,
    event_idx: bool,
    /// Checksum flags in the header are to be reported (GUEST_CSUM).
    csum: bool,
    port: u16,
    queue: u16,
    pub stats: RxVqStats,
}

impl RxVq {
    /// A queue over `ring` filled from `pool`; `queue` is the port's rx
    /// queue number, `port` what mbufs are stamped with.
    pub fn new(ring: SplitRing, notifier: Notifier, pool: Mempool, port: u16, queue: u16) -> RxVq {
        RxVq {
            sw: (0..ring.size()).map(|_| None).collect(),
            ring,
            notifier,
            pool,
            avail_idx: 0,
            published: 0,
            last_used: 0,
            event_idx: false,
            csum: false,
            port,
            queue,
            stats: RxVqStats::default(),
        }
    }

    /// Use event indices (`VIRTIO_F_RING_EVENT_IDX` negotiated) and report
    /// checksum flags (`VIRTIO_NET_F_GUEST_CSUM` negotiated).
    pub fn set_features(&mut self, event_idx: bool, csum: bool) {
        self.event_idx = event_idx;
        self.csum = csum;
    }

    /// Replaces the notifier (after the queue was programmed anew).
    pub fn set_notifier(&mut self, n: Notifier) {
        self.notifier = n;
    }

    /// The queue's memory.
    pub fn ring(&self) -> &SplitRing {
        &self.ring
    }

    /// Bytes the device may write into each buffer: header and frame.
    pub fn buf_len(&self) -> u32 {
        (self.pool.data_room() as u32).saturating_sub(HEADROOM as u32) + spec::NET_HDR_LEN as u32
    }

    /// Starts the queue over for a device that has just been reset: the
    /// rings zeroed, every slot given a buffer (allocating where empty) and
    /// made available. Call only while the device does not own the queue.
    /// Returns how many buffers the pool could not give (0 on success).
    pub fn arm(&mut self) -> usize {
        self.ring.zero();
        let v = *self.ring.view();
        // The driver polls; it wants no used-buffer notifications.
        v.set_avail_flags(spec::VRING_AVAIL_F_NO_INTERRUPT);
        let len = self.buf_len();
        let mut missing = 0;
        let mut idx = 0u16;
        for i in 0..v.size() {
            let slot = &mut self.sw[i as usize];
            if slot.is_none() {
                *slot = self.pool.alloc();
            }
            match slot {
                Some(m) => {
                    let addr = m.data_iova().0 - spec::NET_HDR_LEN as u64;
                    v.write_desc(i, addr, len, spec::VRING_DESC_F_WRITE, 0);
                    v.set_avail_ring(idx, i);
                    idx = idx.wrapping_add(1);
                }
                None => missing += 1,
            }
        }
        // Descriptors and ring entries before the index that publishes them.
        dma_wmb();
        v.set_avail_idx(idx);
        self.avail_idx = idx;
        self.published = idx;
        self.last_used = 0;
        missing
    }

    /// Tells the device buffers are there (after DRIVER_OK).
    pub fn kick(&self) {
        self.notifier.notify();
    }

    /// Returns every buffer to its pool. Only while the device does not own
    /// the queue.
    pub fn release(&mut self) {
        for s in self.sw.iter_mut() {
            *s = None;
        }
    }

    /// Appends up to `out.spare()` received frames to `out`.
    #[inline]
    pub fn rx_burst(&mut self, out: &mut Burst<Mbuf>) -> usize {
        let v = *self.ring.view();
        let used = v.used_idx();
        let mut pending = used.wrapping_sub(self.last_used);
        if pending == 0 {
            return 0;
        }
        if pending > v.size() {
            // The device claims more completions than there are buffers.
            self.stats.device_faults += 1;
            tracing::debug!(
                queue = self.queue,
                used,
                last_used = self.last_used,
                "used index runs ahead"
            );
            return 0;
        }
        // The used entries and the buffers were written before used.idx.
        dma_rmb();
        let max = out.spare();
        let mut got = 0;
        while pending > 0 && got < max {
            let Some(fresh) = self.pool.alloc() else {
                self.stats.nombuf += 1;
                break;
            };
            let (id, len) = v.used_elem(self.last_used);
            self.last_used = self.last_used.wrapping_add(1);
            pending -= 1;
            let Some(m) = self.take_slot(id) else {
                // Not a descriptor of ours that the device had: drop the
                // entry and keep the fresh buffer for nothing.
                self.stats.errors += 1;
                tracing::debug!(
                    queue = self.queue,
                    id,
                    len,
                    "used entry names no posted buffer"
                );
                continue;
            };
            let i = id as u16;
            let addr = fresh.data_iova().0 - spec::NET_HDR_LEN as u64;
            v.write_desc(i, addr, self.buf_len(), spec::VRING_DESC_F_WRITE, 0);
            v.set_avail_ring(self.avail_idx, i);
            self.avail_idx = self.avail_idx.wrapping_add(1);
            self.sw[i as usize] = Some(fresh);
            if let Some(m) = self.complete(m, len) {
                if out.push(m).is_ok() {
                    got += 1;
                }
            }
        }
        if self.avail_idx != self.published {
            self.publish();
        }
        got
    }

    /// The buffer of descriptor `id`, if the device had it.
    #[inline(always)]
    fn take_slot(&mut self, id: u32) -> Option<Mbuf> {
        self.sw.get_mut(id as usize)?.take()
    }

    /// Makes the refilled descriptors available and notifies the device if
    /// it asked to be.
    #[inline]
    fn publish(&mut self) {
        let v = self.ring.view();
        let old = self.published;
        // Descriptors and ring entries before the index that publishes them.
        dma_wmb();
        v.set_avail_idx(self.avail_idx);
        self.published = self.avail_idx;
        // The index store before the load of what the device wants (2.7.13.4).
        dma_mb();
        let notify = if self.event_idx {
            need_event(v.avail_event(), self.avail_idx, old)
        } else {
            v.used_flags() & spec::VRING_USED_F_NO_NOTIFY == 0
        };
        if notify {
            self.notifier.notify();
        }
    }

    /// Turns a used buffer into a frame, or drops it.
    #[inline(always)]
    fn complete(&mut self, mut m: Mbuf, len: u32) -> Option<Mbuf> {
        let hdr = spec::NET_HDR_LEN as u32;
        if len <= hdr || len > self.buf_len() {
            self.stats.errors += 1;
            tracing::debug!(
                queue = self.queue,
                len,
                buf = self.buf_len(),
                "used length out of range"
            );
            return None;
        }
        let frame = (len - hdr) as usize;
        // The header the device wrote sits in the headroom, just before the
        // frame: read its flags through the mbuf's own window, then move the
        // window onto the frame.
        let Some(start) = m.headroom().checked_sub(spec::NET_HDR_LEN) else {
            self.stats.errors += 1;
            return None;
        };
        if !m.set_window(start, frame + spec::NET_HDR_LEN) {
            self.stats.errors += 1;
            return None;
        }
        let flags = if self.csum {
            csum_flags(m.data()[0])
        } else {
            RxFlags::empty()
        };
        m.adj(spec::NET_HDR_LEN);
        let meta = m.rx_mut();
        meta.port = self.port;
        meta.queue = self.queue;
        meta.flags = flags;
        meta.packet_type = PacketType::ETHER;
        self.stats.packets += 1;
        self.stats.bytes += frame as u64;
        Some(m)
    }
}

/// Receive checksum flags from the header (5.1.6.4): DATA_VALID means the
/// device checked it; NEEDS_CSUM means the frame came from a local sender
/// that left the checksum to be completed, so it has no wire error.
#[inline(always)]
pub fn csum_flags(hdr_flags: u8) -> RxFlags {
    if hdr_flags & (spec::NET_HDR_F_DATA_VALID | spec::NET_HDR_F_NEEDS_CSUM) != 0 {
        RxFlags::L4_CKSUM_GOOD
    } else {
        RxFlags::empty()
    }
}

impl std::fmt::Debug for RxVq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RxVq")
            .field("queue", &self.queue)
            .field("ring", &self.ring)
            .field("avail_idx", &self.avail_idx)
            .field("last_used", &self.last_used)
            .field("stats", &self.stats)
            .finish()
    }
}
