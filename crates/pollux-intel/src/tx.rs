//! Transmit queue: the advanced transmit descriptor path.
//!
//! One data descriptor per packet (no multi-segment mbufs in pollux-core),
//! preceded by a context descriptor when the packet asks for VLAN insertion
//! or checksum offload with parameters that differ from the last context
//! written. The device reports completion only for descriptors with RS set:
//! RS goes on every `rs_thresh`-th descriptor and on the last one of each
//! burst, and reclaiming frees everything up to the oldest RS descriptor
//! whose DD is set. The doorbell (TDT) is written once per burst, after a
//! write barrier.
//!
//! Per family ([`Family`]): the tail register, the context descriptor and
//! when a packet needs one (igbvf: only for VLAN insertion or checksum
//! offload; ixgbevf: every packet, since CC is set on every data descriptor
//! there), and the olinfo bits every data descriptor carries.

use std::collections::VecDeque;

use pollux_core::{Burst, Mbuf, PoolReach, TxFlags};

use std::marker::PhantomData;

use crate::adv;
use crate::desc::{AdvTxDesc, DescRing};
use crate::family::Family;
use crate::regs::Regs;
use pollux_core::barrier::{dma_rmb, dma_wmb};

/// Largest buffer one data descriptor carries (DTALEN is 16 bits; the
/// 82576 datasheet caps a buffer at 16 KiB - 1; Linux ixgbevf allows 16 KiB,
/// IXGBE_MAX_DATA_PER_TXD, and 16 KiB - 1 keeps it inside DTALEN's 16 bits).
const MAX_DATA_LEN: usize = 16383;

/// Counters of one transmit queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxRingStats {
    pub packets: u64,
    pub bytes: u64,
    /// Packets taken but dropped (empty, too long, from memory the device
    /// cannot reach, or flushed by a reset).
    pub errors: u64,
    /// Of `errors`: packets whose buffer lies outside the device's IOMMU
    /// domain (a pool not made from the VF's container).
    pub unreachable: u64,
}

pub use pollux_core::DmaCheck;

/// One transmit queue of family `F`.
pub struct TxRing<F: Family> {
    ring: DescRing<AdvTxDesc>,
    sw: Box<[Option<Mbuf>]>,
    /// Next descriptor to fill.
    tail: u16,
    /// Oldest descriptor not yet reclaimed.
    clean: u16,
    /// Descriptors free for new packets (ring length - 1 at most).
    free: u16,
    /// Descriptors with RS set, oldest first.
    rs_pending: VecDeque<u16>,
    /// Descriptors written since the last RS.
    since_rs: u16,
    rs_thresh: u16,
    /// The context descriptor the device holds in slot 0, if any.
    ctx: Option<F::TxCtx>,
    tail_reg: u32,
    /// Which pools the device can reach.
    reach: PoolReach,
    pub stats: TxRingStats,
    _family: PhantomData<fn() -> F>,
}

impl<F: Family> TxRing<F> {
    /// A queue over `ring`; `queue` is the VF queue register index (ixgbevf:
    /// not always the handle's index, with DCB the PF names the one tx
    /// queue).
    pub fn new(ring: DescRing<AdvTxDesc>, queue: u16) -> TxRing<F> {
        let n = ring.len();
        TxRing {
            sw: (0..n).map(|_| None).collect(),
            tail: 0,
            clean: 0,
            free: n - 1,
            rs_pending: VecDeque::with_capacity(n as usize),
            since_rs: 0,
            rs_thresh: (n / 4).clamp(1, 32),
            ctx: None,
            ring,
            tail_reg: F::tdt(queue),
            reach: PoolReach::default(),
            stats: TxRingStats::default(),
            _family: PhantomData,
        }
    }

    /// Refuse packets whose pool the device cannot reach: `check` says
    /// whether an IOVA range is mapped for the device. Such packets are
    /// taken, dropped and counted (`errors`, `unreachable`) instead of
    /// handing the device an address outside its IOMMU domain. Without a
    /// check (plain-memory tests) every pool is accepted.
    pub fn set_dma_check(&mut self, check: DmaCheck) {
        self.reach = PoolReach::new(check);
    }

    /// The descriptor ring.
    pub fn ring(&self) -> &DescRing<AdvTxDesc> {
        &self.ring
    }

    /// Descriptors free right now.
    pub fn free_descs(&self) -> u16 {
        self.free
    }

    /// Forgets everything in flight (the packets are dropped and counted as
    /// errors) and starts over at descriptor 0. Call while the queue is
    /// disabled.
    pub fn reset(&mut self) {
        // What the device finished before it stopped was sent.
        self.reclaim();
        let mut dropped = 0;
        for s in self.sw.iter_mut() {
            if s.take().is_some() {
                dropped += 1;
            }
        }
        self.stats.errors += dropped;
        // Descriptors the device completed were counted when taken; those it
        // did not are the errors counted above, so undo their packet count.
        self.stats.packets = self.stats.packets.saturating_sub(dropped);
        for i in 0..self.ring.len() {
            self.ring.write(i, AdvTxDesc::default());
        }
        self.tail = 0;
        self.clean = 0;
        self.free = self.ring.len() - 1;
        self.rs_pending.clear();
        self.since_rs = 0;
        self.ctx = None;
    }

    /// Frees the buffers of completed descriptors. Returns how many
    /// descriptors came back.
    #[inline]
    pub fn reclaim(&mut self) -> u16 {
        let n = self.ring.len();
        let mut freed = 0;
        while let Some(&rs) = self.rs_pending.front() {
            // olinfo_status (word 3) carries DD in the write-back format.
            if self.ring.read_word(rs, 3) & adv::TXD_STAT_DD == 0 {
                break;
            }
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

    #[inline(always)]
    fn advance(&mut self) -> u16 {
        let i = self.tail;
        self.tail = if i + 1 == self.ring.len() { 0 } else { i + 1 };
        i
    }

    /// Sends packets from the front of `pkts`; returns how many it took.
    #[inline]
    pub fn tx_burst(&mut self, regs: &impl Regs, pkts: &mut Burst<Mbuf>) -> usize {
        if self.free < self.rs_thresh {
            self.reclaim();
        }
        let mut taken = 0;
        let mut last: Option<(u16, bool)> = None;
        while let Some(m) = pkts.pop_front() {
            let len = m.len();
            if len == 0 || len > MAX_DATA_LEN {
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
            let off = *m.tx();
            let ctx = F::context_for(&off);
            let need_ctx = ctx.is_some() && ctx != self.ctx;
            let need = 1 + need_ctx as u16;
            if self.free < need {
                self.reclaim();
                if self.free < need {
                    // Ring full: the packet stays the caller's.
                    let _ = pkts.push_front(m);
                    break;
                }
            }
            if need_ctx {
                if let Some(c) = ctx {
                    let i = self.advance();
                    self.ring.write(i, F::ctx_desc(&c));
                    self.sw[i as usize] = None;
                    self.ctx = ctx;
                }
            }
            let mut cmd = adv::TXD_DTYP_DATA
                | adv::TXD_DCMD_DEXT
                | adv::TXD_DCMD_IFCS
                | adv::TXD_DCMD_EOP
                | len as u32;
            let mut olinfo = (len as u32) << adv::TXD_PAYLEN_SHIFT | F::TXD_CC;
            if off.flags.contains(TxFlags::VLAN_INSERT) {
                cmd |= adv::TXD_DCMD_VLE;
            }
            if off.flags.contains(TxFlags::IPV4_CKSUM) {
                olinfo |= adv::TXD_POPTS_IXSM;
            }
            if off
                .flags
                .intersects(TxFlags::TCP_CKSUM | TxFlags::UDP_CKSUM)
            {
                olinfo |= adv::TXD_POPTS_TXSM;
            }
            self.since_rs += need;
            let rs = self.since_rs >= self.rs_thresh;
            if rs {
                cmd |= adv::TXD_DCMD_RS;
                self.since_rs = 0;
            }
            let i = self.advance();
            self.ring.write(
                i,
                AdvTxDesc {
                    buffer_addr: m.data_iova().0,
                    cmd_type_len: cmd,
                    olinfo_status: olinfo,
                },
            );
            if rs {
                self.rs_pending.push_back(i);
            }
            self.sw[i as usize] = Some(m);
            self.free -= need;
            self.stats.packets += 1;
            self.stats.bytes += len as u64;
            last = Some((i, rs));
            taken += 1;
        }
        if let Some((i, rs)) = last {
            if !rs {
                // Report completion of the burst's last packet too, so its
                // buffers come back even if no more traffic follows. The
                // device has not seen this descriptor yet (tail not moved).
                let cmd = self.ring.read_word(i, 2);
                self.ring.write_word(i, 2, cmd | adv::TXD_DCMD_RS);
                self.rs_pending.push_back(i);
                self.since_rs = 0;
            }
            // Descriptor writes above must be visible to the device before
            // the tail write tells it to fetch them.
            dma_wmb();
            regs.write32(self.tail_reg, self.tail as u32);
        }
        taken
    }
}

impl<F: Family> std::fmt::Debug for TxRing<F> {
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
