//! Transmit virtqueue: one descriptor per packet, completions reclaimed in
//! bursts.
//!
//! Each packet's `virtio_net_hdr` is written into the 12 bytes of headroom
//! in front of its data, and one device-readable descriptor covers header
//! and frame: `VIRTIO_F_VERSION_1` implies any descriptor layout (5.1.6.6,
//! 2.6.4), so header and data need not be separate. `avail.idx` is
//! published and the device notified once per burst, and only when the
//! device asked to be (`used.flags` without NO_NOTIFY, or `avail_event`
//! with event indices). Used entries are reclaimed when the free
//! descriptors run low; a descriptor id comes back at most once, and an id
//! that was not in flight is counted, not trusted.

use pollux_core::{Burst, Mbuf, PoolReach, TxFlags};

use crate::spec;
use crate::transport::Notifier;
use crate::vq::Vq;

/// Counters of one transmit queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxVqStats {
    pub packets: u64,
    pub bytes: u64,
    /// Packets taken but dropped (empty, too long, no headroom for the
    /// header, from memory the device cannot reach, or flushed by a reset).
    pub errors: u64,
    /// Of `errors`: packets whose buffer lies outside the device's IOMMU
    /// domain.
    pub unreachable: u64,
    /// Used entries that named no descriptor in flight.
    pub device_faults: u64,
    /// Notifications sent to the device (bursts published while it had
    /// notifications enabled).
    pub notifies: u64,
}

pub use pollux_core::DmaCheck;

/// Largest frame one descriptor carries here (no TSO).
const MAX_FRAME: usize = 65535 - spec::NET_HDR_LEN;

/// One transmit virtqueue.
pub struct TxVq {
    vq: Vq,
    notifier: Notifier,
    sw: Box<[Option<Mbuf>]>,
    /// Descriptor ids not in flight.
    free: Vec<u16>,
    /// The device computes L4 checksums (VIRTIO_NET_F_CSUM negotiated).
    csum: bool,
    free_thresh: u16,
    /// Which pools the device can reach.
    reach: PoolReach,
    pub stats: TxVqStats,
}

impl TxVq {
    /// A queue over `vq`.
    pub fn new(vq: Vq, notifier: Notifier) -> TxVq {
        let n = vq.size();
        TxVq {
            sw: (0..n).map(|_| None).collect(),
            free: (0..n).rev().collect(),
            free_thresh: (n / 4).clamp(1, 32),
            vq,
            notifier,
            csum: false,
            reach: PoolReach::default(),
            stats: TxVqStats::default(),
        }
    }

    /// Let the device complete L4 checksums.
    pub fn set_csum(&mut self, csum: bool) {
        self.csum = csum;
    }

    /// Refuse packets whose pool the device cannot reach (see
    /// [`DmaCheck`]); without a check every pool is accepted.
    pub fn set_dma_check(&mut self, check: DmaCheck) {
        self.reach = PoolReach::new(check);
    }

    /// The virtqueue.
    pub fn vq(&self) -> &Vq {
        &self.vq
    }

    /// Descriptors free right now.
    pub fn free_descs(&self) -> usize {
        self.free.len()
    }

    /// Starts over for a device that has just been reset: what the device
    /// completed was sent, the rest is dropped and counted as errors, and
    /// the queue is zeroed. Only while the device does not own the queue.
    pub fn reset(&mut self) {
        self.reclaim();
        let mut dropped = 0;
        for s in self.sw.iter_mut() {
            if s.take().is_some() {
                dropped += 1;
            }
        }
        self.stats.errors += dropped;
        // Counted as sent when taken; they were not.
        self.stats.packets = self.stats.packets.saturating_sub(dropped);
        self.vq.reset();
        self.free = (0..self.vq.size()).rev().collect();
    }

    /// Frees the buffers the device has finished with; returns how many.
    #[inline]
    pub fn reclaim(&mut self) -> usize {
        let mut freed = 0;
        loop {
            match self.vq.pop_used() {
                Ok(Some((id, _))) => match self.sw.get_mut(id as usize).and_then(Option::take) {
                    Some(m) => {
                        drop(m);
                        self.free.push(id as u16);
                        freed += 1;
                    }
                    None => self.stats.device_faults += 1,
                },
                Ok(None) => break,
                Err(_) => {
                    self.stats.device_faults += 1;
                    break;
                }
            }
        }
        freed
    }

    /// Sends packets from the front of `pkts`; returns how many it took.
    #[inline]
    pub fn tx_burst(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
        if self.free.len() < self.free_thresh as usize {
            self.reclaim();
        }
        let mut taken = 0;
        let mut posted = false;
        while let Some(mut m) = pkts.pop_front() {
            let len = m.len();
            if len == 0 || len > MAX_FRAME {
                self.stats.errors += 1;
                taken += 1;
                continue;
            }
            if !self.reach.reachable(&m) {
                self.stats.errors += 1;
                self.stats.unreachable += 1;
                taken += 1;
                continue;
            }
            let Some(id) = self.free.pop().or_else(|| {
                self.reclaim();
                self.free.pop()
            }) else {
                // Ring full: the packet stays the caller's.
                let _ = pkts.push_front(m);
                break;
            };
            let off = *m.tx();
            let Some(hdr) = m.prepend(spec::NET_HDR_LEN) else {
                self.free.push(id);
                self.stats.errors += 1;
                taken += 1;
                continue;
            };
            write_header(hdr, &off, self.csum);
            self.vq.post1(id, m.data_iova().0, m.len() as u32, false);
            posted = true;
            self.sw[id as usize] = Some(m);
            self.stats.packets += 1;
            self.stats.bytes += len as u64;
            taken += 1;
        }
        if posted && self.vq.publish() {
            self.notifier.notify();
            self.stats.notifies += 1;
        }
        taken
    }
}

/// Writes a `virtio_net_hdr` (5.1.6): no GSO; with `csum` (the device
/// completes checksums) and a TCP or UDP checksum asked for, NEEDS_CSUM
/// from the L4 header's start with the checksum field's offset in it. The
/// checksum field must hold the pseudo-header sum, as for every offloading
/// NIC (the device adds the rest).
#[inline(always)]
pub fn write_header(hdr: &mut [u8], off: &pollux_core::TxOffload, csum: bool) {
    hdr.fill(0);
    let l4 = if off.flags.contains(TxFlags::TCP_CKSUM) {
        Some(16u16) // offsetof(struct tcphdr, check)
    } else if off.flags.contains(TxFlags::UDP_CKSUM) {
        Some(6u16) // offsetof(struct udphdr, check)
    } else {
        None
    };
    if let (true, Some(csum_offset)) = (csum, l4) {
        let start = off.l2_len as u16 + off.l3_len;
        hdr[0] = spec::NET_HDR_F_NEEDS_CSUM;
        hdr[6..8].copy_from_slice(&start.to_le_bytes());
        hdr[8..10].copy_from_slice(&csum_offset.to_le_bytes());
    }
}

impl std::fmt::Debug for TxVq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxVq")
            .field("vq", &self.vq)
            .field("free", &self.free.len())
            .field("stats", &self.stats)
            .finish()
    }
}
