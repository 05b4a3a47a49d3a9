//! Receive and transmit queues: the descriptor rings the driver gives
//! with CONFIG_VSI_QUEUES and moves with the QRX_TAIL/QTX_TAIL registers.
//!
//! Receive (legacy descriptors, `union iavf_32byte_rx_desc` and
//! `iavf_16byte_rx_desc` of `iavf_type.h`): the read format holds the
//! buffer address (qword 0) and header address (qword 1); the model writes
//! back qword 0 = L2TAG1 (bits 31:16) and the RSS hash (63:32), qword 1 =
//! status (DD, EOF, L2TAG1P, L3L4P, UMBCAST, FLTSTAT), error (IPE, L4E),
//! packet type and buffer length; a 32-byte descriptor's qwords 2 and 3
//! are zeroed. A frame longer than the buffer spans descriptors, EOF on
//! the last; metadata is written on every one.
//!
//! Transmit (`struct iavf_tx_desc`, `iavf_tx_context_desc`): data
//! descriptors (DTYPE 0) give buffers, the command (EOP, RS, IL2TAG1, IIPT,
//! L4T), offsets (MACLEN in 2-byte words, IPLEN and L4LEN in 4-byte words)
//! and L2TAG1; a context descriptor (DTYPE 1) before a packet gives TSO
//! (TSO_LEN, MSS) and L2TAG2. Descriptors with RS are written back with
//! DTYPE 0xF (DESC_DONE), which Linux and DPDK poll. Checksum offload is
//! Intel's: the driver seeds the L4 checksum field with the pseudo-header
//! sum and the device folds the sum over the L4 bytes into it
//! (`rte_net_intel_cksum_prepare`); TSO segments get their checksums
//! computed in full.

use super::filter::{self, fold, ones_sum, Parsed};
use super::regs::*;
use crate::model::Ctx;

/// Largest packet gathered from transmit descriptors (a TSO packet of 256
/// KiB, the XL710's limit).
pub const MAX_TX_PACKET: usize = 256 * 1024;
/// Smallest frame the model sends (an Ethernet header).
pub const MIN_TX_FRAME: usize = filter::ETH_HLEN;

/// A receive ring.
#[derive(Debug, Clone, Copy, Default)]
pub struct RxRing {
    /// Base IOVA.
    pub base: u64,
    /// Descriptors.
    pub len: u16,
    /// Buffer size.
    pub buf: u32,
    /// Largest frame.
    pub max_frame: u32,
    /// Descriptor size (16 or 32).
    pub desc_len: u8,
    /// Started with ENABLE_QUEUES.
    pub enabled: bool,
    /// Next descriptor the device fills.
    pub head: u16,
    /// QRX_TAIL as written.
    pub tail: u32,
}

/// A transmit ring.
#[derive(Debug, Clone, Copy, Default)]
pub struct TxRing {
    /// Base IOVA.
    pub base: u64,
    /// Descriptors.
    pub len: u16,
    /// Started with ENABLE_QUEUES.
    pub enabled: bool,
    /// Next descriptor the device reads.
    pub head: u16,
    /// QTX_TAIL as written.
    pub tail: u32,
}

/// Per-frame receive metadata for the write-back.
#[derive(Debug, Clone, Copy, Default)]
pub struct RxMeta {
    /// Stripped VLAN TCI.
    pub l2tag1: Option<u16>,
    /// RSS hash.
    pub rss: Option<u32>,
    /// Packet type.
    pub ptype: u8,
    /// L3L4P: checksums were checked.
    pub l3l4p: bool,
    /// Error bits (IPE, L4E).
    pub errors: u64,
    /// 0 unicast, 1 multicast, 2 broadcast.
    pub umbcast: u64,
}

/// Why a receive failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxDrop {
    /// The queue is not started or not configured.
    QueueOff,
    /// Not enough descriptors given by the driver.
    NoDesc,
    /// Longer than the queue's largest frame.
    Oversize,
    /// A DMA was refused (logged).
    Dma,
}

impl RxRing {
    /// Descriptors the driver has made available.
    pub fn available(&self) -> u32 {
        let len = self.len as u32;
        if len == 0 || self.tail >= len {
            return 0;
        }
        (self.tail + len - self.head as u32) % len
    }

    /// Writes `frame` into the ring.
    pub fn receive(
        &mut self,
        ctx: &mut Ctx<'_>,
        frame: &[u8],
        meta: &RxMeta,
    ) -> Result<(), RxDrop> {
        if !self.enabled || self.len == 0 || self.buf == 0 {
            return Err(RxDrop::QueueOff);
        }
        if frame.len() > self.max_frame as usize {
            return Err(RxDrop::Oversize);
        }
        let buf = self.buf as usize;
        let need = frame.len().div_ceil(buf).max(1);
        if (self.available() as usize) < need {
            return Err(RxDrop::NoDesc);
        }
        let dl = if self.desc_len == 16 { 16 } else { 32 };
        let chunks: Vec<&[u8]> = if frame.is_empty() {
            vec![frame]
        } else {
            frame.chunks(buf).collect()
        };
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let at = self.base.wrapping_add(self.head as u64 * dl as u64);
            let mut rd = [0u8; 8];
            ctx.dma_read(at, &mut rd).map_err(|_| RxDrop::Dma)?;
            let pkt_addr = u64::from_le_bytes(rd);
            ctx.dma_write(pkt_addr, chunk).map_err(|_| RxDrop::Dma)?;
            let mut status = RX_STATUS_DD | (meta.umbcast << RX_STATUS_UMBCAST_SHIFT);
            if i == last {
                status |= RX_STATUS_EOF;
            }
            let mut q0 = 0u64;
            if let Some(t) = meta.l2tag1 {
                status |= RX_STATUS_L2TAG1P;
                q0 |= (t as u64) << 16;
            }
            if let Some(h) = meta.rss {
                status |= RX_STATUS_FLTSTAT_RSS;
                q0 |= (h as u64) << 32;
            }
            if meta.l3l4p {
                status |= RX_STATUS_L3L4P;
            }
            let q1 = status
                | (meta.errors << RX_ERROR_SHIFT)
                | ((meta.ptype as u64) << RX_PTYPE_SHIFT)
                | ((chunk.len() as u64 & 0x3fff) << RX_LEN_SHIFT);
            let mut wb = [0u8; 32];
            wb[0..8].copy_from_slice(&q0.to_le_bytes());
            wb[8..16].copy_from_slice(&q1.to_le_bytes());
            ctx.dma_write(at, &wb[..dl]).map_err(|_| RxDrop::Dma)?;
            self.head = ((self.head as u32 + 1) % self.len as u32) as u16;
        }
        Ok(())
    }
}

/// One packet gathered from the transmit ring.
#[derive(Debug, Clone, Default)]
pub struct TxPacket {
    /// Bytes from the data descriptors.
    pub data: Vec<u8>,
    /// Command of the first data descriptor.
    pub cmd: u64,
    /// Offsets of the first data descriptor.
    pub offset: u64,
    /// L2TAG1 of the first data descriptor.
    pub l2tag1: u16,
    /// Context descriptor qwords, if one preceded the packet.
    pub ctx: Option<(u64, u64)>,
    /// Descriptors to write back as done (RS set).
    pub rs: Vec<u16>,
    /// The packet is malformed (already logged): drop it.
    pub bad: bool,
}

/// What one pass over a transmit ring produced.
#[derive(Debug, Default)]
pub struct TxPass {
    /// Complete packets.
    pub packets: Vec<TxPacket>,
    /// Descriptors written back.
    pub written_back: usize,
}

impl TxRing {
    /// Reads descriptors from head to tail, gathering complete packets
    /// (through EOP); a packet whose EOP is not yet before tail stays for
    /// the next tail write.
    pub fn gather(&mut self, ctx: &mut Ctx<'_>, q: usize) -> TxPass {
        let mut pass = TxPass::default();
        let len = self.len as u32;
        if !self.enabled || len == 0 || self.tail >= len {
            return pass;
        }
        let mut idx = self.head as u32;
        let mut cur = TxPacket::default();
        let mut started = false;
        // Bound the walk to one lap of the ring.
        for _ in 0..len {
            if idx == self.tail {
                break;
            }
            let at = self.base.wrapping_add(idx as u64 * 16);
            let mut raw = [0u8; 16];
            if ctx.dma_read(at, &mut raw).is_err() {
                // Logged; consume what is there so the ring moves on.
                self.head = self.tail as u16;
                return pass;
            }
            let q0 = u64::from_le_bytes(raw[0..8].try_into().unwrap_or([0; 8]));
            let q1 = u64::from_le_bytes(raw[8..16].try_into().unwrap_or([0; 8]));
            match q1 & 0xf {
                TX_DTYPE_DATA => {
                    let cmd = (q1 >> 4) & 0x3ff;
                    let size = ((q1 >> 34) & 0x3fff) as usize;
                    if !started {
                        cur.cmd = cmd;
                        cur.offset = (q1 >> 16) & 0x3ffff;
                        cur.l2tag1 = (q1 >> 48) as u16;
                        started = true;
                    }
                    if cmd & TX_CMD_RS != 0 {
                        cur.rs.push(idx as u16);
                    }
                    if cur.data.len() + size > MAX_TX_PACKET {
                        if !cur.bad {
                            ctx.log.log(
                                format!("Tx queue {q} descriptor {idx}: packet beyond {MAX_TX_PACKET} bytes"),
                                "XL710 datasheet: a packet is at most 256 KiB (TSO)",
                            );
                        }
                        cur.bad = true;
                    } else if size > 0 {
                        let mut b = vec![0u8; size];
                        if ctx.dma_read(q0, &mut b).is_ok() {
                            cur.data.extend_from_slice(&b);
                        } else {
                            cur.bad = true;
                        }
                    }
                    idx = (idx + 1) % len;
                    if cmd & TX_CMD_EOP != 0 {
                        pass.packets.push(std::mem::take(&mut cur));
                        started = false;
                        self.head = idx as u16;
                    }
                }
                TX_DTYPE_CONTEXT => {
                    if started {
                        ctx.log.log(
                            format!(
                                "Tx queue {q} descriptor {idx}: context descriptor inside a packet"
                            ),
                            "a context descriptor comes before the packet's first data descriptor \
                             (iavf_txrx.c iavf_tso / iavf_tx_map)",
                        );
                        cur.bad = true;
                    } else {
                        cur.ctx = Some((q0, q1));
                    }
                    idx = (idx + 1) % len;
                    if !started && cur.ctx.is_some() && idx == self.tail {
                        // Context with no data yet: wait for the rest.
                        break;
                    }
                }
                other => {
                    ctx.log.log(
                        format!("Tx queue {q} descriptor {idx}: DTYPE {other:#x}"),
                        "a VF queue takes data (0) and context (1) descriptors (iavf_type.h); \
                         the descriptor is skipped",
                    );
                    idx = (idx + 1) % len;
                    if !started {
                        cur.ctx = None;
                        self.head = idx as u16;
                    } else {
                        cur.bad = true;
                    }
                }
            }
        }
        // Write back every RS descriptor of the completed packets.
        for p in &pass.packets {
            for &i in &p.rs {
                let at = self.base.wrapping_add(i as u64 * 16 + 8);
                if ctx.dma_write(at, &TX_DTYPE_DESC_DONE.to_le_bytes()).is_ok() {
                    pass.written_back += 1;
                }
            }
        }
        pass
    }
}

/// Inserts an 802.1Q tag with `tci` after the MAC addresses.
pub fn insert_vlan(f: &mut Vec<u8>, tpid: u16, tci: u16) {
    if f.len() < 12 {
        return;
    }
    let mut tag = tpid.to_be_bytes().to_vec();
    tag.extend_from_slice(&tci.to_be_bytes());
    f.splice(12..12, tag);
}

/// Header lengths from a data descriptor's offset field.
#[derive(Debug, Clone, Copy)]
pub struct Lens {
    /// MAC header (MACLEN × 2).
    pub mac: usize,
    /// IP header (IPLEN × 4).
    pub ip: usize,
    /// L4 header (L4LEN × 4).
    pub l4: usize,
}

impl Lens {
    /// From the 18-bit offset field.
    pub fn from_offset(off: u64) -> Lens {
        Lens {
            mac: (off & 0x7f) as usize * 2,
            ip: ((off >> 7) & 0x7f) as usize * 4,
            l4: ((off >> 14) & 0xf) as usize * 4,
        }
    }
}

/// Applies IIPT/L4T checksum offloads to `f` (Intel semantics: the L4
/// checksum field holds the pseudo-header seed). Returns an error string
/// when the offsets do not fit the packet.
pub fn checksum_offload(f: &mut [u8], cmd: u64, lens: Lens) -> Result<(), String> {
    let l3 = lens.mac;
    let l4 = lens.mac + lens.ip;
    let iipt = cmd & TX_CMD_IIPT_MASK;
    let l4t = cmd & TX_CMD_L4T_MASK;
    if iipt == TX_CMD_IIPT_IPV4_CSUM {
        if lens.ip < 20 || f.len() < l4 {
            return Err(format!(
                "IPv4 checksum with MACLEN {} IPLEN {}",
                lens.mac, lens.ip
            ));
        }
        f[l3 + 10] = 0;
        f[l3 + 11] = 0;
        let c = !fold(ones_sum(&f[l3..l4], 0));
        f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    }
    if l4t != 0 {
        let field = match l4t {
            TX_CMD_L4T_TCP => 16,
            TX_CMD_L4T_UDP => 6,
            _ => 8,
        };
        if lens.ip == 0 || f.len() < l4 + field + 2 {
            return Err(format!(
                "L4 checksum with MACLEN {} IPLEN {} on a {}-byte packet",
                lens.mac,
                lens.ip,
                f.len()
            ));
        }
        if l4t == TX_CMD_L4T_SCTP {
            f[l4 + 8..l4 + 12].fill(0);
            let c = filter::crc32c(&f[l4..]);
            f[l4 + 8..l4 + 12].copy_from_slice(&c.to_le_bytes());
        } else {
            let mut c = !fold(ones_sum(&f[l4..], 0));
            if l4t == TX_CMD_L4T_UDP && c == 0 {
                c = 0xffff;
            }
            f[l4 + field..l4 + field + 2].copy_from_slice(&c.to_be_bytes());
        }
    }
    Ok(())
}

/// Splits a TCP packet into MSS-sized segments with fresh IP lengths, IPv4
/// ids, sequence numbers, flags and checksums (XL710 TSO).
pub fn tso(f: &[u8], lens: Lens, mss: usize, ipv4: bool) -> Result<Vec<Vec<u8>>, String> {
    let hdr = lens.mac + lens.ip + lens.l4;
    if mss == 0 || lens.ip < 20 || lens.l4 < 20 || f.len() < hdr {
        return Err(format!(
            "TSO with MSS {mss}, MACLEN {} IPLEN {} L4LEN {} on a {}-byte packet",
            lens.mac,
            lens.ip,
            lens.l4,
            f.len()
        ));
    }
    let (l3, l4) = (lens.mac, lens.mac + lens.ip);
    let payload = &f[hdr..];
    let n = payload.len().div_ceil(mss).max(1);
    let seq0 = u32::from_be_bytes([f[l4 + 4], f[l4 + 5], f[l4 + 6], f[l4 + 7]]);
    let id0 = u16::from_be_bytes([f[l3 + 4], f[l3 + 5]]);
    let flags0 = f[l4 + 13];
    let mut out = Vec::with_capacity(n);
    for (i, chunk) in payload.chunks(mss.max(1)).enumerate().take(n) {
        let mut s = f[..hdr].to_vec();
        s.extend_from_slice(chunk);
        let l4len = s.len() - l4;
        if ipv4 {
            let tot = (s.len() - l3) as u16;
            s[l3 + 2..l3 + 4].copy_from_slice(&tot.to_be_bytes());
            s[l3 + 4..l3 + 6].copy_from_slice(&id0.wrapping_add(i as u16).to_be_bytes());
            s[l3 + 10] = 0;
            s[l3 + 11] = 0;
            let c = !fold(ones_sum(&s[l3..l4], 0));
            s[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        } else {
            let pl = (s.len() - l3 - 40) as u16;
            s[l3 + 4..l3 + 6].copy_from_slice(&pl.to_be_bytes());
        }
        let seq = seq0.wrapping_add((i * mss) as u32);
        s[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
        let last = i + 1 == n;
        let mut fl = flags0;
        if !last {
            fl &= !0x09; // FIN, PSH only on the last segment
        }
        if i > 0 {
            fl &= !0x80; // CWR only on the first
        }
        s[l4 + 13] = fl;
        s[l4 + 16] = 0;
        s[l4 + 17] = 0;
        let p = Parsed {
            ip: if ipv4 { 4 } else { 6 },
            l3,
            l4,
            proto: filter::IPPROTO_TCP,
            ..Parsed::default()
        };
        let c = !fold(ones_sum(&s[l4..], filter::pseudo_sum(&s, &p, l4len)));
        s[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
        out.push(s);
    }
    Ok(out)
}
