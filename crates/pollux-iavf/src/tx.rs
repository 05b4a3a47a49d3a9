//! Transmit queue: the 16-byte data descriptor path.
//!
//! One data descriptor per packet (no multi-segment mbufs in pollux-core):
//! EOP and ICRC always, IL2TAG1 with the tag in L2TAG1 for VLAN insertion,
//! and for checksum offload the offsets (MACLEN in 2-byte words, IPLEN and
//! L4LEN in 4-byte words) with IIPT and L4T, as Linux
//! iavf_tx_enable_csum and DPDK iavf_txd_enable_offload fill them. No
//! offload this driver does needs a context descriptor (those carry TSO,
//! tunnelling and the outer L2TAG2), so none is ever written.
//!
//! The device reports completion only for descriptors with RS set, by
//! writing DTYPE 0xF (DESC_DONE) into them: RS goes on every
//! `rs_thresh`-th descriptor and on the last one of each burst, and
//! reclaiming frees everything up to the oldest RS descriptor that is
//! done. The doorbell (QTX_TAIL) is written once per burst, after a write
//! barrier.

use std::collections::VecDeque;

use pollux_core::barrier::{dma_rmb, dma_wmb};
use pollux_core::{Burst, Mbuf, PoolReach, TxFlags};

use crate::desc::{DescRing, TxDesc};
use crate::regs::{self, Regs};

/// Counters of one transmit queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxRingStats {
    pub packets: u64,
    pub bytes: u64,
    /// Packets taken but dropped (too short, too long, from memory the
    /// device cannot reach, or flushed by a reset).
    pub errors: u64,
    /// Of `errors`: packets whose buffer lies outside the device's IOMMU
    /// domain.
    pub unreachable: u64,
}

pub use pollux_core::DmaCheck;

/// One transmit queue.
pub struct TxRing {
    ring: DescRing<TxDesc>,
    sw: Box<[Option<Mbuf>]>,
    tail: u16,
    clean: u16,
    free: u16,
    rs_pending: VecDeque<u16>,
    since_rs: u16,
    rs_thresh: u16,
    tail_reg: u32,
    reach: PoolReach,
    pub stats: TxRingStats,
}

impl TxRing {
    /// A queue over `ring`; `queue` is the VF queue number (its tail).
    pub fn new(ring: DescRing<TxDesc>, queue: u16) -> TxRing {
        let n = ring.len();
        TxRing {
            sw: (0..n).map(|_| None).collect(),
            tail: 0,
            clean: 0,
            free: n - 1,
            rs_pending: VecDeque::with_capacity(n as usize),
            since_rs: 0,
            rs_thresh: (n / 4).clamp(1, 32),
            ring,
            tail_reg: regs::qtx_tail(queue),
            reach: PoolReach::default(),
            stats: TxRingStats::default(),
        }
    }

    /// Refuse packets whose pool the device cannot reach (see
    /// pollux-ixgbevf's TxRing::set_dma_check).
    pub fn set_dma_check(&mut self, check: DmaCheck) {
        self.reach = PoolReach::new(check);
    }

    pub fn ring(&self) -> &DescRing<TxDesc> {
        &self.ring
    }

    pub fn free_descs(&self) -> u16 {
        self.free
    }

    /// Forgets everything in flight (dropped, counted as errors) and starts
    /// over at descriptor 0. Call while the queue is disabled.
    pub fn reset(&mut self) {
        self.reclaim();
        let mut dropped = 0;
        for s in self.sw.iter_mut() {
            if s.take().is_some() {
                dropped += 1;
            }
        }
        self.stats.errors += dropped;
        self.stats.packets = self.stats.packets.saturating_sub(dropped);
        for i in 0..self.ring.len() {
            self.ring.write(i, TxDesc::default());
        }
        self.tail = 0;
        self.clean = 0;
        self.free = self.ring.len() - 1;
        self.rs_pending.clear();
        self.since_rs = 0;
    }

    /// Frees the buffers of completed descriptors; returns how many
    /// descriptors came back.
    #[inline]
    pub fn reclaim(&mut self) -> u16 {
        let n = self.ring.len();
        let mut freed = 0;
        while let Some(&rs) = self.rs_pending.front() {
            if self.ring.read_qword(rs, 1) & regs::TXD_DTYPE_MASK != regs::TXD_DTYPE_DESC_DONE {
                break;
            }
            // DESC_DONE was read first; nothing of the descriptors is read
            // after, but the buffers freed below must not be reused before
            // the device's reads of them, which DESC_DONE orders.
            dma_rmb();
            loop {
                let j = self.clean;
                self.sw[j as usize] = None;
                self.clean = if j + 1 == n { 0 } else { j + 1 };
                freed += 1;
                if j == rs {
                    break;
                }
            }
            self.rs_pending.pop_front();
        }
        self.free += freed;
        freed
    }

    /// Sends packets from the front of `pkts`; returns how many it took.
    #[inline]
    pub fn tx_burst(&mut self, regs: &impl Regs, pkts: &mut Burst<Mbuf>) -> usize {
        if self.free < self.rs_thresh {
            self.reclaim();
        }
        let n = self.ring.len();
        let mut taken = 0;
        let mut last: Option<(u16, bool)> = None;
        while let Some(m) = pkts.pop_front() {
            let len = m.len();
            if !(regs::TX_MIN_PKT_LEN..=regs::TXD_MAX_BUF).contains(&len) {
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
            if self.free == 0 {
                self.reclaim();
                if self.free == 0 {
                    // Ring full: the packet stays the caller's.
                    let _ = pkts.push_front(m);
                    break;
                }
            }
            let (mut cmd, offset, tag) = offload_fields(m.tx());
            self.since_rs += 1;
            let rs = self.since_rs >= self.rs_thresh;
            if rs {
                cmd |= regs::TXD_CMD_RS;
                self.since_rs = 0;
            }
            let i = self.tail;
            self.tail = if i + 1 == n { 0 } else { i + 1 };
            self.ring
                .write(i, TxDesc::data(m.data_iova().0, cmd, offset, len, tag));
            if rs {
                self.rs_pending.push_back(i);
            }
            self.sw[i as usize] = Some(m);
            self.free -= 1;
            self.stats.packets += 1;
            self.stats.bytes += len as u64;
            last = Some((i, rs));
            taken += 1;
        }
        if let Some((i, rs)) = last {
            if !rs {
                // Completion for the burst's last packet too, so its buffer
                // comes back even if no more traffic follows. The device
                // has not seen this descriptor yet (tail not moved).
                let q = self.ring.read_qword(i, 1);
                self.ring
                    .write_qword(i, 1, q | regs::TXD_CMD_RS << regs::TXD_CMD_SHIFT);
                self.rs_pending.push_back(i);
                self.since_rs = 0;
            }
            // Descriptor writes above reach memory before the tail write
            // tells the device to fetch them.
            dma_wmb();
            regs.write32(self.tail_reg, self.tail as u32);
        }
        taken
    }
}

/// CMD (without RS), OFFSET and L2TAG1 of a packet's data descriptor.
#[inline(always)]
pub fn offload_fields(off: &pollux_core::TxOffload) -> (u64, u64, u16) {
    let f = off.flags;
    let mut cmd = regs::TXD_CMD_EOP | regs::TXD_CMD_ICRC;
    let mut tag = 0;
    if f.contains(TxFlags::VLAN_INSERT) {
        cmd |= regs::TXD_CMD_IL2TAG1;
        tag = off.vlan_tci;
    }
    let l4 = f.intersects(TxFlags::TCP_CKSUM | TxFlags::UDP_CKSUM);
    if !f.contains(TxFlags::IPV4_CKSUM) && !l4 {
        return (cmd, 0, tag);
    }
    let l2 = if off.l2_len == 0 {
        14
    } else {
        off.l2_len as u64
    };
    let mut offset = (l2 >> 1) << regs::TXD_MACLEN_SHIFT;
    if f.contains(TxFlags::IPV4_CKSUM) {
        cmd |= regs::TXD_CMD_IIPT_IPV4_CSUM;
    } else if f.contains(TxFlags::IPV6) {
        cmd |= regs::TXD_CMD_IIPT_IPV6;
    } else {
        cmd |= regs::TXD_CMD_IIPT_IPV4;
    }
    offset |= ((off.l3_len as u64 >> 2) & 0x7F) << regs::TXD_IPLEN_SHIFT;
    if f.contains(TxFlags::TCP_CKSUM) {
        cmd |= regs::TXD_CMD_L4T_TCP;
        offset |= ((off.l4_len as u64 >> 2) & 0xF) << regs::TXD_L4LEN_SHIFT;
    } else if f.contains(TxFlags::UDP_CKSUM) {
        cmd |= regs::TXD_CMD_L4T_UDP;
        // The UDP header is 8 bytes whatever l4_len says.
        offset |= (8 >> 2) << regs::TXD_L4LEN_SHIFT;
    }
    (cmd, offset & 0x3FFFF, tag)
}

impl std::fmt::Debug for TxRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxRing")
            .field("ring", &self.ring)
            .field("tail", &self.tail)
            .field("clean", &self.clean)
            .field("free", &self.free)
            .field("stats", &self.stats)
            .finish()
    }
}
