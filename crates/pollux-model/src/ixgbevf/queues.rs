//! The VF's receive and transmit descriptor engines (82599 datasheet 7.1
//! and 7.2; descriptor layouts from ixgbevf `defines.h`).
//!
//! Receive: advanced one-buffer descriptors (SRRCTL.DESCTYPE 1). A
//! descriptor's read format is the packet buffer address (bytes 0-7) and a
//! header address (bytes 8-15, unused); the write-back format is
//! pkt_info/hdr_info (bytes 0-3: RSS type bits 3:0, packet type bits
//! 16:4), the RSS hash (bytes 4-7), status/error (bytes 8-11), length
//! (bytes 12-13) and VLAN tag (bytes 14-15). A frame longer than one
//! buffer (SRRCTL.BSIZEPKT, 1 KiB units) takes as many descriptors as it
//! needs, EOP on the last; the status, type and hash fields are written in
//! each. A frame is written only when all the descriptors it needs are
//! free (between RDH and RDT), else it is dropped.
//!
//! Transmit: advanced context descriptors (DTYP 2) and data descriptors
//! (DTYP 3); DD is written back in the status dword of descriptors with
//! RS, and the head is written to TDWBAL/H when its enable bit is set.
//! The engine runs on a TDT write (and when the queue is enabled) and
//! stops at the first packet whose EOP descriptor is not yet behind the
//! tail, to resume on the next TDT write.

use super::pkt::{self, TxContext};
use super::regs::*;
use crate::model::Ctx;

/// Descriptor size.
pub const DESC: u64 = 16;
/// Largest ring accepted (RDLEN/TDLEN are 20-bit byte counts).
pub const MAX_RING_BYTES: u32 = 1 << 20;
/// Largest packet gathered for transmission (TSO's 256 KiB plus headers).
pub const MAX_TX_PACKET: usize = 256 * 1024 + 512;

/// One receive queue's registers.
#[derive(Debug, Clone)]
pub struct RxQueue {
    /// RDBAL.
    pub bal: u32,
    /// RDBAH.
    pub bah: u32,
    /// RDLEN.
    pub len: u32,
    /// DCA_RXCTRL (stored).
    pub dca: u32,
    /// RDH.
    pub head: u32,
    /// RDT.
    pub tail: u32,
    /// SRRCTL.
    pub srrctl: u32,
    /// RXDCTL without ENABLE.
    pub rxdctl: u32,
    /// RSCCTL (stored).
    pub rscctl: u32,
    /// Enabled.
    pub enabled: bool,
}

impl Default for RxQueue {
    fn default() -> Self {
        RxQueue {
            bal: 0,
            bah: 0,
            len: 0,
            dca: 0,
            head: 0,
            tail: 0,
            srrctl: SRRCTL_DEFAULT,
            rxdctl: 0,
            rscctl: 0,
            enabled: false,
        }
    }
}

/// What the rx engine tells the frame's descriptors.
#[derive(Debug, Clone, Copy, Default)]
pub struct RxMeta {
    /// pkt_info: RSS type and packet type.
    pub pkt_info: u32,
    /// RSS hash.
    pub rss: u32,
    /// Status bits (DD and EOP are added).
    pub status: u32,
    /// Error bits.
    pub errors: u32,
    /// VLAN tag field.
    pub vlan: u16,
}

/// Why the rx engine did not take a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxFail {
    /// Not enough free descriptors.
    NoDescriptor,
    /// A DMA was refused (logged by the context).
    Dma,
}

impl RxQueue {
    /// Descriptors in the ring.
    pub fn count(&self) -> u32 {
        self.len / DESC as u32
    }

    /// Ring base.
    pub fn base(&self) -> u64 {
        ((self.bah as u64) << 32) | (self.bal as u64 & !0x7f)
    }

    /// Buffer size in bytes (BSIZEPKT 0 reads as the 2 KiB default).
    pub fn buf_size(&self) -> usize {
        match self.srrctl & SRRCTL_BSIZEPKT_MASK {
            0 => 2048,
            n => n as usize * 1024,
        }
    }

    /// Why the ring cannot be enabled, if it cannot.
    pub fn check(&self) -> Option<String> {
        if self.len == 0 || self.len % 128 != 0 || self.len > MAX_RING_BYTES {
            return Some(format!(
                "RDLEN {:#x}: must be a non-zero multiple of 128 bytes (8 descriptors) \
                 up to {MAX_RING_BYTES:#x} (82599 datasheet, RDLEN)",
                self.len
            ));
        }
        if self.bal & 0x7f != 0 {
            return Some(format!(
                "RDBAL {:#x}: the ring must be 128-byte aligned (82599 datasheet, RDBAL)",
                self.bal
            ));
        }
        if self.srrctl & SRRCTL_DESCTYPE_MASK != SRRCTL_DESCTYPE_ADV_ONEBUF {
            return Some(format!(
                "SRRCTL {:#x}: descriptor type {} is not advanced one-buffer, the only \
                 type modelled (and the one ixgbevf and DPDK use)",
                self.srrctl,
                (self.srrctl & SRRCTL_DESCTYPE_MASK) >> 25
            ));
        }
        if self.head >= self.count() || self.tail >= self.count() {
            return Some(format!(
                "RDH {} / RDT {} beyond the {}-descriptor ring",
                self.head,
                self.tail,
                self.count()
            ));
        }
        None
    }

    /// Writes `frame` into the ring at RDH.
    pub fn receive(
        &mut self,
        ctx: &mut Ctx<'_>,
        frame: &[u8],
        meta: &RxMeta,
    ) -> Result<(), RxFail> {
        let count = self.count();
        if count == 0 || self.head >= count {
            return Err(RxFail::NoDescriptor);
        }
        let bsize = self.buf_size();
        let needed = frame.len().div_ceil(bsize).max(1);
        let free = (self.tail + count - self.head) % count;
        if needed as u32 > free {
            return Err(RxFail::NoDescriptor);
        }
        let base = self.base();
        let mut addrs = Vec::with_capacity(needed);
        for i in 0..needed as u32 {
            let idx = (self.head + i) % count;
            let mut d = [0u8; 16];
            ctx.dma_read(base + idx as u64 * DESC, &mut d)
                .map_err(|_| RxFail::Dma)?;
            addrs.push((
                idx,
                u64::from_le_bytes(d[0..8].try_into().expect("8 bytes")),
            ));
        }
        for (chunk, (_, addr)) in frame.chunks(bsize).zip(&addrs) {
            ctx.dma_write(*addr, chunk).map_err(|_| RxFail::Dma)?;
        }
        let n = addrs.len();
        for (i, ((idx, _), chunk)) in addrs.iter().zip(frame.chunks(bsize)).enumerate() {
            let mut status = meta.status | RXD_STAT_DD;
            if i + 1 == n {
                status |= RXD_STAT_EOP;
            }
            let mut wb = [0u8; 16];
            wb[0..4].copy_from_slice(&meta.pkt_info.to_le_bytes());
            wb[4..8].copy_from_slice(&meta.rss.to_le_bytes());
            wb[8..12].copy_from_slice(&(status | meta.errors).to_le_bytes());
            wb[12..14].copy_from_slice(&(chunk.len() as u16).to_le_bytes());
            wb[14..16].copy_from_slice(&meta.vlan.to_le_bytes());
            ctx.dma_write(base + *idx as u64 * DESC, &wb)
                .map_err(|_| RxFail::Dma)?;
        }
        self.head = (self.head + n as u32) % count;
        Ok(())
    }
}

/// One transmit queue's registers and contexts.
#[derive(Debug, Clone, Default)]
pub struct TxQueue {
    /// TDBAL.
    pub bal: u32,
    /// TDBAH.
    pub bah: u32,
    /// TDLEN.
    pub len: u32,
    /// DCA_TXCTRL (stored).
    pub dca: u32,
    /// TDH.
    pub head: u32,
    /// TDT.
    pub tail: u32,
    /// TXDCTL without ENABLE and SWFLSH.
    pub txdctl: u32,
    /// TDWBAL.
    pub wbal: u32,
    /// TDWBAH.
    pub wbah: u32,
    /// Enabled.
    pub enabled: bool,
    /// The two context slots (82599: 2 per queue).
    pub ctx: [Option<TxContext>; 2],
}

/// What one run of the tx engine produced.
#[derive(Debug, Default)]
pub struct TxOut {
    /// Frames to send, in order.
    pub frames: Vec<Vec<u8>>,
    /// Descriptors written back (RS) or head written back.
    pub wrote_back: bool,
    /// Violations: (what, rule).
    pub violations: Vec<(String, String)>,
    /// Packets dropped as malformed.
    pub malformed: u64,
    /// Packets segmented (TSO).
    pub tso: u64,
}

/// A data descriptor.
#[derive(Debug, Clone, Copy)]
struct DataDesc {
    addr: u64,
    cmd: u32,
    olinfo: u32,
}

impl TxQueue {
    /// Descriptors in the ring.
    pub fn count(&self) -> u32 {
        self.len / DESC as u32
    }

    /// Ring base.
    pub fn base(&self) -> u64 {
        ((self.bah as u64) << 32) | (self.bal as u64 & !0x7f)
    }

    /// Why the ring cannot be enabled, if it cannot.
    pub fn check(&self) -> Option<String> {
        if self.len == 0 || self.len % 128 != 0 || self.len > MAX_RING_BYTES {
            return Some(format!(
                "TDLEN {:#x}: must be a non-zero multiple of 128 bytes (8 descriptors) \
                 up to {MAX_RING_BYTES:#x} (82599 datasheet, TDLEN)",
                self.len
            ));
        }
        if self.bal & 0x7f != 0 {
            return Some(format!(
                "TDBAL {:#x}: the ring must be 128-byte aligned (82599 datasheet, TDBAL)",
                self.bal
            ));
        }
        if self.head >= self.count() || self.tail >= self.count() {
            return Some(format!(
                "TDH {} / TDT {} beyond the {}-descriptor ring",
                self.head,
                self.tail,
                self.count()
            ));
        }
        None
    }

    fn read_desc(&self, ctx: &mut Ctx<'_>, idx: u32) -> Option<[u8; 16]> {
        let mut d = [0u8; 16];
        ctx.dma_read(self.base() + idx as u64 * DESC, &mut d).ok()?;
        Some(d)
    }

    fn write_back(&self, ctx: &mut Ctx<'_>, idx: u32) {
        let _ = ctx.dma_write(
            self.base() + idx as u64 * DESC + 12,
            &TXD_STAT_DD.to_le_bytes(),
        );
    }

    /// Processes descriptors from TDH to TDT; `q` names the queue in
    /// violations.
    pub fn process(&mut self, ctx: &mut Ctx<'_>, q: usize, out: &mut TxOut) {
        let count = self.count();
        if !self.enabled || count == 0 || self.head >= count || self.tail >= count {
            return;
        }
        let mut any_rs = false;
        'packets: while self.head != self.tail {
            let Some(d) = self.read_desc(ctx, self.head) else {
                break;
            };
            let cmd = u32::from_le_bytes(d[8..12].try_into().expect("4 bytes"));
            let dtyp = cmd & TXD_DTYP_MASK;
            if cmd & TXD_CMD_DEXT == 0 || (dtyp != TXD_DTYP_CTXT && dtyp != TXD_DTYP_DATA) {
                out.violations.push((
                    format!(
                        "tx queue {q} descriptor {} (cmd_type {cmd:#010x})",
                        self.head
                    ),
                    "not an advanced context (DTYP 2) or data (DTYP 3) descriptor with DEXT: \
                     legacy and reserved descriptor types are not modelled (ixgbevf and \
                     DPDK write advanced descriptors only)"
                        .into(),
                ));
                if cmd & TXD_CMD_RS != 0 {
                    self.write_back(ctx, self.head);
                    any_rs = true;
                }
                self.head = (self.head + 1) % count;
                continue;
            }
            if dtyp == TXD_DTYP_CTXT {
                let w = |i: usize| u32::from_le_bytes(d[i..i + 4].try_into().expect("4 bytes"));
                let mss_l4len_idx = w(12);
                let idx = ((mss_l4len_idx >> TXD_IDX_SHIFT) & 7) as usize;
                if idx > 1 {
                    out.violations.push((
                        format!("tx queue {q} context descriptor {} IDX {idx}", self.head),
                        "a queue has two context slots, IDX 0 and 1 (82599 datasheet 7.2.3.2)"
                            .into(),
                    ));
                }
                self.ctx[idx & 1] = Some(TxContext::from_desc(w(0), cmd, mss_l4len_idx));
                if cmd & TXD_CMD_RS != 0 {
                    self.write_back(ctx, self.head);
                    any_rs = true;
                }
                self.head = (self.head + 1) % count;
                continue;
            }
            // A data packet: gather its descriptors up to EOP.
            let mut descs: Vec<(u32, DataDesc)> = Vec::new();
            let mut idx = self.head;
            let mut eop = false;
            while idx != self.tail {
                let Some(d) = self.read_desc(ctx, idx) else {
                    break 'packets;
                };
                let dd = DataDesc {
                    addr: u64::from_le_bytes(d[0..8].try_into().expect("8 bytes")),
                    cmd: u32::from_le_bytes(d[8..12].try_into().expect("4 bytes")),
                    olinfo: u32::from_le_bytes(d[12..16].try_into().expect("4 bytes")),
                };
                if dd.cmd & TXD_DTYP_MASK != TXD_DTYP_DATA || dd.cmd & TXD_CMD_DEXT == 0 {
                    out.violations.push((
                        format!("tx queue {q} descriptor {idx} (cmd_type {:#010x})", dd.cmd),
                        "a packet's data descriptors must follow each other up to EOP; this \
                         one is not a data descriptor (82599 datasheet 7.2.3)"
                            .into(),
                    ));
                    // Drop what was gathered, resume at this descriptor.
                    self.finish(ctx, &descs, &mut any_rs);
                    self.head = idx;
                    out.malformed += 1;
                    continue 'packets;
                }
                descs.push((idx, dd));
                idx = (idx + 1) % count;
                if dd.cmd & TXD_CMD_EOP != 0 {
                    eop = true;
                    break;
                }
            }
            if !eop {
                // The rest of the packet is not behind the tail yet.
                break;
            }
            self.build(&descs, ctx, q, out);
            self.finish(ctx, &descs, &mut any_rs);
            self.head = idx;
        }
        if self.wbal & TDWBAL_HEAD_WB_ENABLE != 0 {
            let a = ((self.wbah as u64) << 32) | (self.wbal as u64 & !3);
            let _ = ctx.dma_write(a, &self.head.to_le_bytes());
            out.wrote_back = true;
        }
        out.wrote_back |= any_rs;
    }

    fn finish(&self, ctx: &mut Ctx<'_>, descs: &[(u32, DataDesc)], any_rs: &mut bool) {
        for (i, d) in descs {
            if d.cmd & TXD_CMD_RS != 0 {
                self.write_back(ctx, *i);
                *any_rs = true;
            }
        }
    }

    /// Gathers the packet of `descs` and applies its offloads.
    fn build(&self, descs: &[(u32, DataDesc)], ctx: &mut Ctx<'_>, q: usize, out: &mut TxOut) {
        let Some(&(first_idx, first)) = descs.first() else {
            return;
        };
        let what = format!("tx queue {q} packet at descriptor {first_idx}");
        let mut frame = Vec::new();
        for (i, d) in descs {
            let n = (d.cmd & TXD_DTALEN_MASK) as usize;
            if n == 0 {
                out.violations.push((
                    format!("tx queue {q} descriptor {i}"),
                    "data descriptor with DTALEN 0 (82599 datasheet 7.2.3.2.4: at least 1)".into(),
                ));
                continue;
            }
            if frame.len() + n > MAX_TX_PACKET {
                out.violations
                    .push((what, format!("packet longer than {MAX_TX_PACKET} bytes")));
                out.malformed += 1;
                return;
            }
            let at = frame.len();
            frame.resize(at + n, 0);
            if ctx.dma_read(d.addr, &mut frame[at..]).is_err() {
                out.malformed += 1;
                return;
            }
        }
        let tse = first.cmd & TXD_CMD_TSE != 0;
        let vle = first.cmd & TXD_CMD_VLE != 0;
        let ixsm = first.olinfo & TXD_POPTS_IXSM != 0;
        let txsm = first.olinfo & TXD_POPTS_TXSM != 0;
        let paylen = (first.olinfo >> TXD_PAYLEN_SHIFT) as usize;
        let idx = ((first.olinfo >> TXD_IDX_SHIFT) & 7) as usize;
        let c = if tse || vle || ixsm || txsm {
            if idx > 1 {
                out.violations.push((
                    what.clone(),
                    format!("context IDX {idx}: a queue has slots 0 and 1"),
                ));
            }
            match self.ctx[idx & 1] {
                Some(c) => Some(c),
                None => {
                    out.violations.push((
                        what,
                        format!(
                            "offloads (TSE {tse} VLE {vle} IXSM {ixsm} TXSM {txsm}) asked \
                             with context slot {} never written (82599 datasheet 7.2.3.2.3)",
                            idx & 1
                        ),
                    ));
                    out.malformed += 1;
                    return;
                }
            }
        } else {
            None
        };
        let mut frames = if tse {
            let c = c.expect("set when tse");
            let hdr = c.maclen + c.iplen + c.l4len;
            if paylen + hdr != frame.len() {
                out.violations.push((
                    what.clone(),
                    format!(
                        "TSO PAYLEN {paylen} + header {hdr} is not the {} bytes the \
                         descriptors hold (82599 datasheet 7.2.3.2.4)",
                        frame.len()
                    ),
                ));
            }
            match pkt::tso_segments(&frame, &c) {
                Ok(s) => {
                    out.tso += 1;
                    s
                }
                Err(e) => {
                    out.violations.push((what, e));
                    out.malformed += 1;
                    return;
                }
            }
        } else {
            if paylen != frame.len() {
                out.violations.push((
                    what.clone(),
                    format!(
                        "PAYLEN {paylen} is not the {} bytes the descriptors hold (82599 \
                         datasheet 7.2.3.2.4: the whole packet length without TSO)",
                        frame.len()
                    ),
                ));
            }
            if let Some(c) = &c {
                if ixsm || txsm {
                    if let Err(e) = pkt::insert_checksums(&mut frame, c, ixsm, txsm) {
                        out.violations.push((what, e));
                        out.malformed += 1;
                        return;
                    }
                }
            }
            vec![frame]
        };
        if vle {
            let tag = c.map(|c| c.vlan).unwrap_or(0);
            for f in &mut frames {
                if f.len() >= 12 {
                    let mut t = pkt::TPID_8021Q.to_be_bytes().to_vec();
                    t.extend_from_slice(&tag.to_be_bytes());
                    f.splice(12..12, t);
                }
            }
        }
        out.frames.extend(frames);
    }
}
