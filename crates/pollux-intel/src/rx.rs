//! Receive queue: the advanced receive descriptor path.
//!
//! Every descriptor the device may write holds a buffer whose [`Mbuf`] sits
//! in the software ring at the same index. When the device sets DD, the
//! driver swaps a fresh buffer into the slot, rewrites the descriptor in
//! read format and hands the received mbuf to the caller; the tail moves in
//! batches (one doorbell per `free_thresh` descriptors) after a write
//! barrier. One slot always stays out of the device's hands so that head ==
//! tail means empty.
//!
//! Nothing the device writes is trusted: a length beyond the buffer, a frame
//! spread over several descriptors (no scatter here) or an error bit drops
//! the frame and counts it; nothing panics.
//!
//! Per family ([`Family`]): the tail register, the receive error bits, the
//! status bits read for the L4 checksum (igbvf: L4CS or UDPCS, as DPDK's
//! igb does; ixgbevf: L4CS alone, as Linux ixgbevf_rx_checksum), the RSS
//! hash (ixgbevf: into the mbuf when the descriptor's RSS type is not 0,
//! Linux ixgbevf_rx_hash) and the I350's big-endian VLAN tag on loopback.

use pollux_core::mbuf::HEADROOM;
use pollux_core::{Burst, Mbuf, Mempool, PacketType, RxFlags};

use std::marker::PhantomData;

use crate::adv;
use crate::desc::{AdvRxDesc, DescRing};
use crate::family::Family;
use crate::regs::Regs;
use pollux_core::barrier::{dma_rmb, dma_wmb};

/// Counters of one receive queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxRingStats {
    pub packets: u64,
    pub bytes: u64,
    /// Frames dropped for device-reported errors, bad lengths or scatter.
    pub errors: u64,
    /// Times the pool had no buffer to refill a slot.
    pub nombuf: u64,
}

/// One receive queue of family `F`.
pub struct RxRing<F: Family> {
    ring: DescRing<AdvRxDesc>,
    sw: Box<[Option<Mbuf>]>,
    pool: Mempool,
    /// Next descriptor to look at.
    next: u16,
    /// Descriptors refilled since the last doorbell.
    nb_hold: u16,
    free_thresh: u16,
    /// Inside a frame that spans descriptors: drop until its EOP.
    discard: bool,
    port: u16,
    queue: u16,
    tail_reg: u32,
    /// I350 writes the VLAN tag of loopback frames big endian (only read
    /// when `F::LB_VLAN_SWAP`).
    vlan_swap_on_lb: bool,
    pub stats: RxRingStats,
    _family: PhantomData<fn() -> F>,
}

impl<F: Family> RxRing<F> {
    /// A queue over `ring` taking buffers from `pool`; `queue` is the VF
    /// queue number (its tail register), `port` what mbufs are stamped with.
    pub fn new(ring: DescRing<AdvRxDesc>, pool: Mempool, port: u16, queue: u16) -> RxRing<F> {
        let n = ring.len();
        RxRing {
            sw: (0..n).map(|_| None).collect(),
            // At most 32 held back, DPDK's IGB_DEFAULT_RX_FREE_THRESH and
            // IXGBE_DEFAULT_RX_FREE_THRESH: the
            // more the driver holds, the fewer buffers the device has while
            // the polling thread is descheduled, when frames are lost.
            free_thresh: (n / 4).clamp(1, 32),
            ring,
            pool,
            next: 0,
            nb_hold: 0,
            discard: false,
            port,
            queue,
            tail_reg: F::rdt(queue),
            vlan_swap_on_lb: false,
            stats: RxRingStats::default(),
            _family: PhantomData,
        }
    }

    /// Treat the VLAN field of loopback frames as big endian (I350 erratum,
    /// as DPDK's igb_rxtx.c handles it). Without effect unless the family
    /// has `LB_VLAN_SWAP`.
    pub fn set_vlan_swap_on_loopback(&mut self, on: bool) {
        self.vlan_swap_on_lb = on;
    }

    /// The descriptor ring (for programming RDBA/RDLEN, and for tests that
    /// play the device).
    pub fn ring(&self) -> &DescRing<AdvRxDesc> {
        &self.ring
    }

    /// The pool buffers come from.
    pub fn pool(&self) -> &Mempool {
        &self.pool
    }

    /// Bytes of each buffer the device may write (SRRCTL.BSIZEPACKET is this
    /// in KiB, rounded down).
    pub fn buf_size(&self) -> u32 {
        (self.pool.data_room() as u32).saturating_sub(HEADROOM as u32)
    }

    /// Gives every slot a buffer (allocating where empty) and rewrites all
    /// descriptors in read format; the queue starts over at descriptor 0.
    /// Call while the queue is disabled. Returns how many buffers were
    /// missing when the pool ran dry (0 on success).
    pub fn arm(&mut self) -> usize {
        let mut missing = 0;
        for i in 0..self.ring.len() {
            let slot = &mut self.sw[i as usize];
            if slot.is_none() {
                *slot = self.pool.alloc();
            }
            match slot {
                Some(m) => self.ring.write(i, AdvRxDesc::read_format(m.data_iova())),
                None => missing += 1,
            }
        }
        self.next = 0;
        self.nb_hold = 0;
        self.discard = false;
        missing
    }

    /// The tail value that gives the device every armed descriptor but one.
    pub fn initial_tail(&self) -> u32 {
        self.ring.len() as u32 - 1
    }

    /// Returns every buffer to its pool. Call while the queue is disabled.
    pub fn release(&mut self) {
        for s in self.sw.iter_mut() {
            *s = None;
        }
    }

    /// Appends up to `out.spare()` received packets to `out`.
    #[inline]
    pub fn rx_burst(&mut self, regs: &impl Regs, out: &mut Burst<Mbuf>) -> usize {
        let max = out.spare();
        let n = self.ring.len();
        let mut got = 0;
        while got < max {
            let i = self.next;
            let qw1 = self.ring.read_qword(i, 1);
            let status = qw1 as u32;
            if status & adv::RXD_STAT_DD == 0 {
                break;
            }
            dma_rmb();
            let qw0 = self.ring.read_qword(i, 0);
            let Some(fresh) = self.pool.alloc() else {
                // Leave the descriptor done; it is retried next call.
                self.stats.nombuf += 1;
                break;
            };
            self.ring
                .write(i, AdvRxDesc::read_format(fresh.data_iova()));
            let done = self.sw[i as usize].replace(fresh);
            self.next = if i + 1 == n { 0 } else { i + 1 };
            self.nb_hold += 1;
            let wb = AdvRxDesc { qw0, qw1 };
            let Some(m) = done else {
                // A slot without a buffer cannot have been armed: the device
                // wrote a descriptor we never gave it. Drop the event.
                self.stats.errors += 1;
                continue;
            };
            if let Some(m) = self.complete(m, &wb) {
                // Cannot fail: got < max = spare at entry.
                if out.push(m).is_ok() {
                    got += 1;
                }
            }
        }
        if self.nb_hold > self.free_thresh {
            let tail = if self.next == 0 { n - 1 } else { self.next - 1 };
            // Descriptor rewrites above must reach memory before the device
            // learns from the tail that it may use them.
            dma_wmb();
            regs.write32(self.tail_reg, tail as u32);
            self.nb_hold = 0;
        }
        got
    }

    /// Turns a written-back descriptor and its buffer into a packet, or
    /// drops it.
    #[inline(always)]
    fn complete(&mut self, mut m: Mbuf, wb: &AdvRxDesc) -> Option<Mbuf> {
        let status = wb.status_error();
        if self.discard || status & adv::RXD_STAT_EOP == 0 {
            // A frame larger than one buffer: drop every piece; count it once.
            if status & adv::RXD_STAT_EOP != 0 {
                self.discard = false;
                self.stats.errors += 1;
            } else {
                self.discard = true;
            }
            return None;
        }
        if status & F::RXD_ERR_FRAME != 0 {
            self.stats.errors += 1;
            return None;
        }
        let len = wb.length() as usize;
        let off = m.headroom();
        if len == 0 || len > self.buf_size() as usize || !m.set_window(off, len) {
            self.stats.errors += 1;
            return None;
        }
        let meta = m.rx_mut();
        meta.port = self.port;
        meta.queue = self.queue;
        let mut flags = RxFlags::empty();
        if status & adv::RXD_STAT_VP != 0 {
            flags |= RxFlags::VLAN_STRIPPED;
            let tag = wb.vlan();
            meta.vlan_tci =
                if F::LB_VLAN_SWAP && self.vlan_swap_on_lb && status & adv::RXD_STAT_LB != 0 {
                    tag.swap_bytes()
                } else {
                    tag
                };
        }
        if F::RSSTYPE_MASK != 0 && wb.pkt_info() & F::RSSTYPE_MASK != 0 {
            flags |= RxFlags::RSS_HASH;
            meta.rss_hash = wb.rss_hash();
        }
        if status & adv::RXD_STAT_IPCS != 0 {
            flags |= if status & F::RXD_ERR_IPE != 0 {
                RxFlags::IP_CKSUM_BAD
            } else {
                RxFlags::IP_CKSUM_GOOD
            };
        }
        if status & F::RXD_L4_CHECKED != 0 {
            flags |= if status & F::RXD_ERR_TCPE != 0 {
                RxFlags::L4_CKSUM_BAD
            } else {
                RxFlags::L4_CKSUM_GOOD
            };
        }
        meta.flags = flags;
        meta.packet_type = packet_type(wb.pkt_info(), status);
        self.stats.packets += 1;
        self.stats.bytes += len as u64;
        Some(m)
    }
}

/// Maps the descriptor's packet type bits to [`PacketType`].
#[inline(always)]
pub fn packet_type(pkt_info: u16, status: u32) -> PacketType {
    let mut t = PacketType::ETHER;
    if status & adv::RXD_STAT_VP != 0 {
        t |= PacketType::VLAN;
    }
    if pkt_info & adv::PKTTYPE_ETQF != 0 {
        return t;
    }
    if pkt_info & adv::PKTTYPE_IPV4 != 0 {
        t |= PacketType::IPV4;
    }
    if pkt_info & adv::PKTTYPE_IPV4_EX != 0 {
        t |= PacketType::IPV4_EXT;
    }
    if pkt_info & adv::PKTTYPE_IPV6 != 0 {
        t |= PacketType::IPV6;
    }
    if pkt_info & adv::PKTTYPE_IPV6_EX != 0 {
        t |= PacketType::IPV6_EXT;
    }
    if pkt_info & adv::PKTTYPE_TCP != 0 {
        t |= PacketType::TCP;
    }
    if pkt_info & adv::PKTTYPE_UDP != 0 {
        t |= PacketType::UDP;
    }
    if pkt_info & adv::PKTTYPE_SCTP != 0 {
        t |= PacketType::SCTP;
    }
    t
}

impl<F: Family> std::fmt::Debug for RxRing<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RxRing")
            .field("queue", &self.queue)
            .field("ring", &self.ring)
            .field("next", &self.next)
            .field("stats", &self.stats)
            .finish()
    }
}
