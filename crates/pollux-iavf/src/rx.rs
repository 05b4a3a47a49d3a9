//! Receive queue: the legacy 32-byte receive descriptor path.
//!
//! Every descriptor the device may write holds a buffer whose [`Mbuf`]
//! sits in the software ring at the same index. When the device sets DD,
//! the driver swaps a fresh buffer into the slot, rewrites the descriptor
//! in read format and hands the received mbuf to the caller; the tail
//! (QRX_TAIL) moves in batches, at most once per burst, after a write
//! barrier. One slot always stays out of the device's hands so that head
//! == tail means empty.
//!
//! What goes into the mbuf, as Linux iavf_rx_checksum / iavf_rx_hash and
//! DPDK iavf_rxd_to_pkt_flags read the write-back: the stripped VLAN tag
//! when L2TAG1P is set; the RSS hash when FLTSTAT is 3; checksum status
//! only when L3L4P says the device checked (IPE/EIPE for the IPv4 header,
//! L4E for TCP/UDP/SCTP); the packet type from the PTYPE table.
//!
//! Nothing the device writes is trusted: a length beyond the buffer, a
//! frame spread over several descriptors (no scatter here), RXE or
//! OVERSIZE drops the frame and counts it; nothing panics.

use pollux_core::barrier::{dma_rmb, dma_wmb};
use pollux_core::mbuf::HEADROOM;
use pollux_core::{Burst, Mbuf, Mempool, PacketType, RxFlags};

use crate::desc::{DescRing, RxDesc};
use crate::regs::{self, Regs};

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

/// One receive queue.
pub struct RxRing {
    ring: DescRing<RxDesc>,
    sw: Box<[Option<Mbuf>]>,
    pool: Mempool,
    next: u16,
    nb_hold: u16,
    free_thresh: u16,
    /// Inside a frame that spans descriptors: drop until its EOF.
    discard: bool,
    port: u16,
    queue: u16,
    tail_reg: u32,
    /// Bytes of each buffer the device may write (the rxq_info
    /// databuffer_size).
    buf_size: u32,
    pub stats: RxRingStats,
}

/// Receive buffer size for a pool: what follows the headroom, rounded down
/// to the 128-byte unit of the queue context (i40e: `dbuff = size >> 7`),
/// at most 16 KiB - 128 (virtchnl's databuffer_size limit on i40e).
pub fn rx_buf_size(pool: &Mempool) -> u32 {
    let data = (pool.data_room() as u32).saturating_sub(HEADROOM as u32);
    (data & !127).min(16 * 1024 - 128)
}

impl RxRing {
    /// A queue over `ring` taking buffers from `pool`; `queue` is the VF
    /// queue number (its tail register, and what mbufs are stamped with),
    /// `port` the port id stamped on mbufs.
    pub fn new(ring: DescRing<RxDesc>, pool: Mempool, port: u16, queue: u16) -> RxRing {
        let n = ring.len();
        RxRing {
            sw: (0..n).map(|_| None).collect(),
            // At most 32 held back, DPDK's IAVF_DEFAULT_RX_FREE_THRESH.
            free_thresh: (n / 4).clamp(1, 32),
            buf_size: rx_buf_size(&pool),
            ring,
            pool,
            next: 0,
            nb_hold: 0,
            discard: false,
            port,
            queue,
            tail_reg: regs::qrx_tail(queue),
            stats: RxRingStats::default(),
        }
    }

    /// The descriptor ring.
    pub fn ring(&self) -> &DescRing<RxDesc> {
        &self.ring
    }

    pub fn pool(&self) -> &Mempool {
        &self.pool
    }

    pub fn buf_size(&self) -> u32 {
        self.buf_size
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
                Some(m) => self.ring.write(i, RxDesc::read_format(m.data_iova())),
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
            if qw1 & regs::RXD_STATUS_DD == 0 {
                break;
            }
            // DD was read first; the rest of the write-back is read after.
            dma_rmb();
            let qw0 = self.ring.read_qword(i, 0);
            let Some(fresh) = self.pool.alloc() else {
                // Leave the descriptor done; it is retried next call.
                self.stats.nombuf += 1;
                break;
            };
            self.ring.write(i, RxDesc::read_format(fresh.data_iova()));
            let done = self.sw[i as usize].replace(fresh);
            self.next = if i + 1 == n { 0 } else { i + 1 };
            self.nb_hold += 1;
            let wb = RxDesc {
                qw0,
                qw1,
                qw2: 0,
                qw3: 0,
            };
            let Some(m) = done else {
                // A slot without a buffer was never armed: the device wrote
                // a descriptor we did not give it. Drop the event.
                self.stats.errors += 1;
                continue;
            };
            if let Some(m) = self.complete(m, &wb) {
                if out.push(m).is_ok() {
                    got += 1;
                }
            }
        }
        if self.nb_hold > self.free_thresh {
            let tail = if self.next == 0 { n - 1 } else { self.next - 1 };
            // The descriptor rewrites above reach memory before the device
            // learns from the tail that it may use them.
            dma_wmb();
            regs.write32(self.tail_reg, tail as u32);
            self.nb_hold = 0;
        }
        got
    }

    #[inline(always)]
    fn complete(&mut self, mut m: Mbuf, wb: &RxDesc) -> Option<Mbuf> {
        let q = wb.qw1;
        if self.discard || q & regs::RXD_STATUS_EOF == 0 {
            // A frame larger than one buffer: drop every piece; count once.
            if q & regs::RXD_STATUS_EOF != 0 {
                self.discard = false;
                self.stats.errors += 1;
            } else {
                self.discard = true;
            }
            return None;
        }
        if q & (regs::RXD_ERROR_RXE | regs::RXD_ERROR_OVERSIZE) != 0 {
            self.stats.errors += 1;
            return None;
        }
        let len = wb.length() as usize;
        let off = m.headroom();
        if len == 0 || len > self.buf_size as usize || !m.set_window(off, len) {
            self.stats.errors += 1;
            return None;
        }
        let ptype = wb.ptype();
        let meta = m.rx_mut();
        meta.port = self.port;
        meta.queue = self.queue;
        let mut flags = RxFlags::empty();
        let mut pt = packet_type(ptype);
        if q & regs::RXD_STATUS_L2TAG1P != 0 {
            flags |= RxFlags::VLAN_STRIPPED;
            meta.vlan_tci = wb.l2tag1();
            pt |= PacketType::VLAN;
        }
        if (q & regs::RXD_FLTSTAT_MASK) >> regs::RXD_FLTSTAT_SHIFT == regs::RXD_FLTSTAT_RSS_HASH {
            flags |= RxFlags::RSS_HASH;
            meta.rss_hash = wb.rss_hash();
        }
        if q & regs::RXD_STATUS_L3L4P != 0 {
            if pt.contains(PacketType::IPV4) {
                flags |= if q & (regs::RXD_ERROR_IPE | regs::RXD_ERROR_EIPE) != 0 {
                    RxFlags::IP_CKSUM_BAD
                } else {
                    RxFlags::IP_CKSUM_GOOD
                };
            }
            // Linux iavf_rx_checksum: an IPv6 packet with extension
            // headers the device could not parse has no L4 verdict.
            let v6_ext = pt.contains(PacketType::IPV6) && q & regs::RXD_STATUS_IPV6EXADD != 0;
            if pt.intersects(PacketType::TCP | PacketType::UDP | PacketType::SCTP) && !v6_ext {
                flags |= if q & regs::RXD_ERROR_L4E != 0 {
                    RxFlags::L4_CKSUM_BAD
                } else {
                    RxFlags::L4_CKSUM_GOOD
                };
            }
        }
        meta.flags = flags;
        meta.packet_type = pt;
        self.stats.packets += 1;
        self.stats.bytes += len as u64;
        Some(m)
    }
}

/// The non-tunnelled rows of the PTYPE table; tunnelled and unknown types
/// report Ethernet only.
#[inline(always)]
pub fn packet_type(ptype: u8) -> PacketType {
    let e = PacketType::ETHER;
    match ptype {
        regs::PTYPE_L2_ARP => e | PacketType::ARP,
        regs::PTYPE_IPV4_FRAG | regs::PTYPE_IPV4 | regs::PTYPE_IPV4_ICMP => e | PacketType::IPV4,
        regs::PTYPE_IPV4_UDP => e | PacketType::IPV4 | PacketType::UDP,
        regs::PTYPE_IPV4_TCP => e | PacketType::IPV4 | PacketType::TCP,
        regs::PTYPE_IPV4_SCTP => e | PacketType::IPV4 | PacketType::SCTP,
        regs::PTYPE_IPV6_FRAG | regs::PTYPE_IPV6 | regs::PTYPE_IPV6_ICMP => e | PacketType::IPV6,
        regs::PTYPE_IPV6_UDP => e | PacketType::IPV6 | PacketType::UDP,
        regs::PTYPE_IPV6_TCP => e | PacketType::IPV6 | PacketType::TCP,
        regs::PTYPE_IPV6_SCTP => e | PacketType::IPV6 | PacketType::SCTP,
        _ => e,
    }
}

impl std::fmt::Debug for RxRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RxRing")
            .field("queue", &self.queue)
            .field("ring", &self.ring)
            .field("next", &self.next)
            .field("stats", &self.stats)
            .finish()
    }
}
