//! Transmit queue: the advanced transmit descriptor path.
//!
//! One data descriptor per packet (no multi-segment mbufs in pollux-core).
//! Unlike igbvf, every data descriptor has CC (check context) set: Linux
//! sets it on every packet because the PF's transmit switch is always on
//! with VFs (ixgbevf_tx_olinfo_status), and writes a context descriptor for
//! every packet (ixgbevf_tx_csum's `no_csum` path: MACLEN and VLAN tag at
//! least). Here a context descriptor goes out when the packet's parameters
//! differ from the last context written (the device keeps context 0 until
//! it is replaced), and always as the first descriptor after a reset. The device reports completion only for descriptors with RS set:
//! RS goes on every `rs_thresh`-th descriptor and on the last one of each
//! burst, and reclaiming frees everything up to the oldest RS descriptor
//! whose DD is set. The doorbell (TDT) is written once per burst, after a
//! write barrier.

use std::collections::VecDeque;

use pollux_core::{Burst, Mbuf, PoolReach, TxFlags};

use crate::desc::{AdvTxCtxDesc, AdvTxDesc, DescRing};
use crate::regs::{self, Regs};
use pollux_core::barrier::{dma_rmb, dma_wmb};

/// Largest buffer one data descriptor carries here (Linux allows 16 KiB,
/// IXGBE_MAX_DATA_PER_TXD; 16 KiB - 1 keeps it inside DTALEN's 16 bits).
const MAX_DATA_LEN: usize = 16383;
/// MACLEN when the packet gives no `l2_len`: an untagged Ethernet header.
const DEFAULT_MACLEN: u32 = 14;

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

/// One transmit queue.
pub struct TxRing {
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
    ctx: Option<AdvTxCtxDesc>,
    tail_reg: u32,
    /// Which pools the device can reach.
    reach: PoolReach,
    pub stats: TxRingStats,
}

impl TxRing {
    /// A queue over `ring`; `queue` is the VF queue register index (not
    /// always the handle's index: with DCB the PF names the one tx queue).
    pub fn new(ring: DescRing<AdvTxDesc>, queue: u16) -> TxRing {
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
            tail_reg: regs::tdt(queue),
            reach: PoolReach::default(),
            stats: TxRingStats::default(),
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
            if self.ring.read_word(rs, 3) & regs::TXD_STAT_DD == 0 {
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
            let ctx = context_for(&off);
            let need_ctx = Some(ctx) != self.ctx;
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
                let i = self.advance();
                self.ring.write(i, ctx.as_tx_desc());
                self.sw[i as usize] = None;
                self.ctx = Some(ctx);
            }
            let mut cmd = regs::TXD_DTYP_DATA
                | regs::TXD_DCMD_DEXT
                | regs::TXD_DCMD_IFCS
                | regs::TXD_DCMD_EOP
                | len as u32;
            let mut olinfo = (len as u32) << regs::TXD_PAYLEN_SHIFT | regs::TXD_CC;
            if off.flags.contains(TxFlags::VLAN_INSERT) {
                cmd |= regs::TXD_DCMD_VLE;
            }
            if off.flags.contains(TxFlags::IPV4_CKSUM) {
                olinfo |= regs::TXD_POPTS_IXSM;
            }
            if off
                .flags
                .intersects(TxFlags::TCP_CKSUM | TxFlags::UDP_CKSUM)
            {
                olinfo |= regs::TXD_POPTS_TXSM;
            }
            self.since_rs += need;
            let rs = self.since_rs >= self.rs_thresh;
            if rs {
                cmd |= regs::TXD_DCMD_RS;
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
                self.ring.write_word(i, 2, cmd | regs::TXD_DCMD_RS);
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

/// The context descriptor a packet is sent under (every packet has one:
/// CC is always set).
#[inline(always)]
fn context_for(off: &pollux_core::TxOffload) -> AdvTxCtxDesc {
    let f = off.flags;
    let maclen = if off.l2_len == 0 {
        DEFAULT_MACLEN
    } else {
        off.l2_len as u32 & 0x7F
    };
    let csum = TxFlags::IPV4_CKSUM | TxFlags::TCP_CKSUM | TxFlags::UDP_CKSUM;
    let iplen = if f.intersects(csum) {
        off.l3_len as u32 & 0x1FF
    } else {
        0
    };
    let mut vlan_macip_lens = iplen | maclen << regs::TXCTX_MACLEN_SHIFT;
    if f.contains(TxFlags::VLAN_INSERT) {
        vlan_macip_lens |= (off.vlan_tci as u32) << regs::TXCTX_VLAN_SHIFT;
    }
    let mut tucmd = regs::TXD_DCMD_DEXT | regs::TXD_DTYP_CTXT;
    if (f.contains(TxFlags::IPV4) && f.intersects(csum)) || f.contains(TxFlags::IPV4_CKSUM) {
        tucmd |= regs::TXCTX_TUCMD_IPV4;
    }
    if f.contains(TxFlags::TCP_CKSUM) {
        tucmd |= regs::TXCTX_TUCMD_L4T_TCP;
    } else if f.contains(TxFlags::UDP_CKSUM) {
        tucmd |= regs::TXCTX_TUCMD_L4T_UDP;
    }
    let l4len = if f.intersects(TxFlags::TCP_CKSUM | TxFlags::UDP_CKSUM) {
        (off.l4_len as u32) << regs::TXCTX_L4LEN_SHIFT
    } else {
        0
    };
    AdvTxCtxDesc {
        vlan_macip_lens,
        fceof_saidx: 0,
        type_tucmd_mlhl: tucmd,
        mss_l4len_idx: l4len,
    }
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
