//! `ixgbevf`: the Intel 82599 / X540 / X550 SR-IOV virtual function, the
//! device Linux's `ixgbevf` and DPDK's `net_ixgbe_vf` drive, with the PF
//! behind its mailbox modelled as Linux's `ixgbe` PF driver answers.
//!
//! Sources: Linux `drivers/net/ethernet/intel/ixgbevf/` (what the VF
//! driver writes and expects: `regs.h`, `defines.h`, `mbx.[ch]`, `vf.c`,
//! `ixgbevf_main.c`, kernel 6.x with mailbox API 1.5), Linux
//! `drivers/net/ethernet/intel/ixgbe/ixgbe_sriov.c` (how the PF answers),
//! DPDK 22.11 `drivers/net/ixgbe/` (`base/ixgbe_vf.c`, `base/ixgbe_mbx.c`,
//! `ixgbe_ethdev.c`, `ixgbe_rxtx.c`), and the Intel 82599 datasheet for
//! register semantics. Constants carry the name they have there.
//!
//! # The function
//! - IDs 8086:10ed (82599 VF, default), 1515 (X540 VF), 1565 (X550 VF),
//!   15a8 (X550EM_x VF), 15c5 (X550EM_a VF); class 02/00/00.
//! - BAR 0: 16 KiB of registers, 64-bit. BAR 3: 16 KiB, 64-bit, MSI-X table
//!   at 0 and PBA at 0x2000 (82599 VF config space); QEMU emulates the
//!   table and PBA itself, the rest of BAR 3 reads 0.
//! - 3 MSI-X vectors: ixgbevf asks for one per queue pair (up to two) plus
//!   one for "other" (mailbox); DPDK uses vector 0 for the mailbox.
//!
//! # Modelled
//! - Registers (32-bit accesses only, anything else is a violation):
//!   VFCTRL.RST (self-clearing: the VF's queues and interrupt registers
//!   back to reset, the PF's reset event, RSTD), VFSTATUS, VFLINKS (up at
//!   10 Gb/s with the host link, down while a PF reset is in progress),
//!   VFFRTIMER, VTEICR/EICS/EIMS/EIMC/EIAC/EIAM, VTEITR, VTIVAR,
//!   VTIVAR_MISC, VFPSRTYPE, the mailbox (VFMAILBOX, VFMBMEM: see [`mbx`]),
//!   eight queue register sets (the first `--queues` carry traffic), the
//!   statistics (VFGPRC, VFGORC, VFMPRC, VFGPTC, VFGOTC: 32-bit packet
//!   and 36-bit octet counters, not cleared by reads; octets are frame
//!   bytes without FCS) and, on X550, VFMRQC/VFRSSRK/VFRETA. Unknown
//!   offsets read 0 and ignore writes.
//! - Interrupts (MSI-X only): cause bits of VTEICR are the vectors (bits
//!   2:0). Queue causes map through VTIVAR (valid bit 7), the mailbox
//!   cause through VTIVAR_MISC. A set, unmasked cause sends its vector,
//!   then EIAC clears the cause and EIAM masks it; an EIMS write sends
//!   the vectors of pending causes it unmasks. VTEICR reads clear; writes
//!   of 1 clear. No throttling (EITR is stored only).
//! - Receive ([`filter`], [`queues`]): the PF's switch, RSS (82599/X540:
//!   the PF's key and 128-entry RETA over 2^VFPSRTYPE.RQPL queues, hashing
//!   IPv4, TCP/IPv4, IPv6, TCP/IPv6 as ixgbe_setup_mrqc does; X550: the
//!   VF's own VFMRQC/VFRSSRK/VFRETA when VFMRQC.RSSEN), VLAN stripping
//!   (RXDCTL.VME), IPv4 header and TCP/UDP checksum status, RLPML (X540
//!   and later), multi-descriptor frames.
//! - Transmit ([`queues`], [`pkt`]): context and data descriptors, VLAN
//!   insertion, IPv4/TCP/UDP checksums and SCTP CRC32c, TCP segmentation
//!   (IPv4 and IPv6), MAC and VLAN anti-spoofing (as ixgbe enables by
//!   default), padding to 60 bytes, DD write-back on RS, head write-back.
//! - The PF ([`mbx`]): both mailbox handshakes (legacy and API 1.5), API
//!   1.0 to 1.5, and the PF's own events: `pf_event("reset")` (or
//!   `reset-start` / `reset-done` apart), `pf_event("ping")`, and a ping on
//!   every link change.
//!
//! # Not modelled
//! Legacy and header-split receive descriptors, RSC, IPsec offload
//! (messages refused), DCB/traffic classes and port VLANs (GET_QUEUES
//! reports none), interrupt throttling, flow director, timestamps, MACsec,
//! Tx descriptor write-back batching (WTHRESH: every RS descriptor is
//! written back at once), the PF's own traffic (the MTA holds this VF's
//! hashes only). A frame the rx engine cannot place whole is dropped (no
//! partial writes); packets bigger than 256 KiB are refused.

pub mod filter;
pub mod mbx;
pub mod pkt;
pub mod queues;
pub mod regs;

use std::time::Instant;

use self::filter::{classify, RxDrop};
use self::mbx::{MacType, MbxOut, Pf, PfConfig, MSG_NAMES};
use self::queues::{RxFail, RxMeta, RxQueue, TxOut, TxQueue};
use self::regs::*;
use crate::model::{Ctx, Model};
use crate::pci::{BarSpec, FunctionSpec};

/// Intel's vendor ID.
pub const VENDOR: u16 = 0x8086;
/// 82599 VF.
pub const DEV_82599_VF: u16 = 0x10ed;
/// X540 VF.
pub const DEV_X540_VF: u16 = 0x1515;
/// X550 VF.
pub const DEV_X550_VF: u16 = 0x1565;
/// X550EM_x VF.
pub const DEV_X550EM_X_VF: u16 = 0x15a8;
/// X550EM_a VF.
pub const DEV_X550EM_A_VF: u16 = 0x15c5;
/// The default MAC (locally administered).
pub const DEFAULT_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x10, 0xed, 0x00];
/// MSI-X vectors.
pub const MSIX_VECTORS: u16 = 3;

/// The mac type a device ID implies.
pub fn mac_type(device: u16) -> Option<MacType> {
    match device {
        DEV_82599_VF => Some(MacType::M82599),
        DEV_X540_VF => Some(MacType::X540),
        DEV_X550_VF | DEV_X550EM_X_VF | DEV_X550EM_A_VF => Some(MacType::X550),
        _ => None,
    }
}

/// Interrupt registers.
#[derive(Debug, Clone, Default)]
struct Irq {
    eicr: u32,
    eims: u32,
    eiac: u32,
    eiam: u32,
    eitr: [u32; 3],
    ivar: [u32; 4],
    ivar_misc: u32,
    rscint: [u32; 4],
}

/// The VF's statistics registers.
#[derive(Debug, Clone, Copy, Default)]
struct HwStats {
    gprc: u32,
    gorc: u64,
    mprc: u32,
    gptc: u32,
    gotc: u64,
}

/// The model's own counters.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    rx_frames: u64,
    rx_bytes: u64,
    tx_frames: u64,
    tx_bytes: u64,
    rx_no_desc: u64,
    rx_filtered_addr: u64,
    rx_filtered_vlan: u64,
    rx_too_long: u64,
    rx_runt: u64,
    rx_disabled: u64,
    rx_queue_off: u64,
    rx_dma: u64,
    tx_spoofed: u64,
    tx_malformed: u64,
    tx_tso_packets: u64,
    vf_resets: u64,
    flrs: u64,
    pf_resets: u64,
    vf_reset_msgs: u64,
    /// Frames delivered per receive queue (the RSS check's judge).
    rx_queue_frames: [u64; MAX_QUEUES],
}

/// The 82599/X540/X550 VF model.
#[derive(Debug)]
pub struct Ixgbevf {
    device: u16,
    mac_type: MacType,
    queues: usize,
    pf: Pf,
    rx: Vec<RxQueue>,
    tx: Vec<TxQueue>,
    irq: Irq,
    psrtype: u32,
    vfmrqc: u32,
    vfrssrk: [u32; 10],
    vfreta: [u32; 16],
    stats: HwStats,
    counters: Counters,
    start: Instant,
    /// The PF's anti-spoofing for this VF (`ip link set PF vf N spoofchk`).
    spoofchk: bool,
}

impl Ixgbevf {
    /// A VF with device ID `device`, MAC `mac` and `queues` queue pairs
    /// (1 to 8; the 82599 PF's usual layout gives 2).
    pub fn new(device: u16, mac: [u8; 6], queues: u16) -> Result<Self, String> {
        let mac_type = mac_type(device).ok_or_else(|| {
            format!("device ID {device:04x} is not an ixgbe VF (10ed, 1515, 1565, 15a8, 15c5)")
        })?;
        if !(1..=MAX_QUEUES as u16).contains(&queues) {
            return Err(format!("--queues {queues}: 1 to {MAX_QUEUES}"));
        }
        if !mbx::valid_unicast(&mac) {
            return Err(format!("{} is not a unicast MAC", mbx::fmt_mac(&mac)));
        }
        // The PF's RETA as ixgbe_setup_reta fills it (i % rss_i, with the
        // PF's 4 RSS queues) and a fixed key (ixgbe uses a random one).
        let cfg = PfConfig {
            mac_type,
            queues: queues as u32,
            trusted: false,
            mac,
            rss_key: crate::toeplitz::MS_KEY,
            reta: std::array::from_fn(|i| (i % 4) as u8),
        };
        Ok(Ixgbevf {
            device,
            mac_type,
            queues: queues as usize,
            pf: Pf::new(cfg),
            rx: vec![RxQueue::default(); MAX_QUEUES],
            tx: vec![TxQueue::default(); MAX_QUEUES],
            irq: Irq::default(),
            psrtype: 0,
            vfmrqc: 0,
            vfrssrk: [0; 10],
            vfreta: [0; 16],
            stats: HwStats::default(),
            counters: Counters::default(),
            start: Instant::now(),
            spoofchk: true,
        })
    }

    /// The default 82599 VF with two queue pairs.
    pub fn default_82599() -> Self {
        Self::new(DEV_82599_VF, DEFAULT_MAC, 2).expect("valid defaults")
    }

    /// Models `ip link set ... trust on|off` (promiscuous and all-multicast
    /// need it).
    pub fn with_trust(mut self, trusted: bool) -> Self {
        let mut cfg = self.pf.config().clone();
        cfg.trusted = trusted;
        self.pf = Pf::new(cfg);
        self
    }

    /// Models `ip link set PF vf N spoofchk on|off`: with it off, frames
    /// the VF sends with a source MAC other than its own (a bond member's
    /// LACPDUs from its permanent MAC after the bond gave it the bond's)
    /// and VLANs it did not join go out. ixgbe turns both the MAC and the
    /// VLAN anti-spoof bits off with it (ixgbe_ndo_set_vf_spoofchk).
    pub fn with_spoofchk(mut self, on: bool) -> Self {
        self.spoofchk = on;
        self
    }

    /// The PF side (tests, inspection).
    pub fn pf(&self) -> &Pf {
        &self.pf
    }

    /// The device ID.
    pub fn device(&self) -> u16 {
        self.device
    }

    fn log_out(ctx: &mut Ctx<'_>, v: Vec<(String, String)>) {
        for (what, why) in v {
            ctx.log.log(what, why);
        }
    }

    // --- interrupts ---

    fn cause(&mut self, ctx: &mut Ctx<'_>, bits: u32) {
        self.irq.eicr |= bits & EICR_MASK;
        self.deliver(ctx);
    }

    fn deliver(&mut self, ctx: &mut Ctx<'_>) {
        let pending = self.irq.eicr & self.irq.eims & EICR_MASK;
        for v in 0..3 {
            let bit = 1u32 << v;
            if pending & bit == 0 {
                continue;
            }
            ctx.interrupt(v);
            if self.irq.eiac & bit != 0 {
                self.irq.eicr &= !bit;
            }
            if self.irq.eiam & bit != 0 {
                self.irq.eims &= !bit;
            }
        }
    }

    /// The EICR bit of queue `q`'s rx (dir 0) or tx (dir 1) cause.
    fn queue_cause(&self, q: usize, dir: u32) -> u32 {
        let reg = self.irq.ivar.get(q / 2).copied().unwrap_or(0);
        let e = (reg >> (16 * (q as u32 & 1) + 8 * dir)) & 0xff;
        if e & IVAR_ALLOC_VAL != 0 && (e & 0x7f) < 3 {
            1 << (e & 0x7f)
        } else {
            0
        }
    }

    fn mbx_cause(&self) -> u32 {
        let e = self.irq.ivar_misc & 0xff;
        if e & IVAR_ALLOC_VAL != 0 && (e & 0x7f) < 3 {
            1 << (e & 0x7f)
        } else {
            0
        }
    }

    fn mbx_done(&mut self, ctx: &mut Ctx<'_>, out: MbxOut) {
        if out.vf_reset_msg {
            self.counters.vf_reset_msgs += 1;
            // ixgbe_vf_reset_msg clears TDWBAL/H, "not cleared by an FLR".
            for t in &mut self.tx {
                t.wbal = 0;
                t.wbah = 0;
            }
        }
        Self::log_out(ctx, out.violations);
        if out.irq {
            let c = self.mbx_cause();
            self.cause(ctx, c);
        }
    }

    fn check_ivar(ctx: &mut Ctx<'_>, reg: &str, v: u32, bytes: u32) {
        for i in 0..bytes {
            let e = (v >> (8 * i)) & 0xff;
            if e & IVAR_ALLOC_VAL != 0 && (e & 0x7f) >= 3 {
                ctx.log.log(
                    format!("{reg} = {v:#010x}"),
                    format!(
                        "entry {i} maps a cause to MSI-X vector {}, the VF has 3 \
                         (IXGBE_VF_IRQ_CLEAR_MASK)",
                        e & 0x7f
                    ),
                );
            }
        }
    }

    // --- resets ---

    /// VFCTRL.RST: the VF's queues and interrupt registers back to reset
    /// (head write-back addresses stay), the PF's reset event, RSTD.
    fn vf_reset(&mut self) {
        self.counters.vf_resets += 1;
        for q in &mut self.rx {
            *q = RxQueue::default();
        }
        for t in &mut self.tx {
            let (wbal, wbah) = (t.wbal, t.wbah);
            *t = TxQueue::default();
            t.wbal = wbal;
            t.wbah = wbah;
        }
        self.irq = Irq::default();
        self.psrtype = 0;
        self.vfmrqc = 0;
        self.pf.vf_reset_event();
    }

    // --- receive ---

    fn rss(&self, p: &pkt::Parsed) -> Option<(u32, u32, usize)> {
        match self.mac_type {
            MacType::M82599 | MacType::X540 => {
                let fields = MRQC_IPV4 | MRQC_IPV4_TCP | MRQC_IPV6 | MRQC_IPV6_TCP;
                let (input, ty) = pkt::rss_input(p, fields)?;
                let cfg = self.pf.config();
                let h = crate::toeplitz::hash(&cfg.rss_key, &input);
                let rqpl = (self.psrtype >> PSRTYPE_RQPL_SHIFT) & 7;
                let nq = (1usize << rqpl.min(3)).min(self.queues);
                let e = cfg.reta[(h & 0x7f) as usize] as usize;
                let q = if nq.is_power_of_two() {
                    e & (nq - 1)
                } else {
                    e % nq
                };
                Some((h, ty, q))
            }
            MacType::X550 => {
                if self.vfmrqc & MRQC_RSSEN == 0 {
                    return None;
                }
                let (input, ty) = pkt::rss_input(p, self.vfmrqc)?;
                let key: Vec<u8> = self.vfrssrk.iter().flat_map(|w| w.to_le_bytes()).collect();
                let h = crate::toeplitz::hash(&key, &input);
                let i = (h & 0x3f) as usize;
                let e = ((self.vfreta[i / 4] >> (8 * (i % 4))) & 0xff) as usize;
                Some((h, ty, e % self.queues))
            }
        }
    }

    fn rx_frame(&mut self, ctx: &mut Ctx<'_>, frame: &[u8]) -> bool {
        let class = match classify(&self.pf.filters, frame) {
            Ok(c) => c,
            Err(d) => {
                match d {
                    RxDrop::Runt => self.counters.rx_runt += 1,
                    RxDrop::Address => self.counters.rx_filtered_addr += 1,
                    RxDrop::Vlan => self.counters.rx_filtered_vlan += 1,
                    RxDrop::TooLong => self.counters.rx_too_long += 1,
                    RxDrop::Disabled => self.counters.rx_disabled += 1,
                }
                return false;
            }
        };
        // Parse past the outer tag for the queue choice and offloads.
        let mut l3 = 12;
        let mut etype = u16::from_be_bytes([frame[12], frame[13]]);
        let mut tags = 0;
        while etype == pkt::TPID_8021Q && tags < 2 && l3 + 6 <= frame.len() {
            l3 += 4;
            tags += 1;
            etype = u16::from_be_bytes([frame[l3], frame[l3 + 1]]);
        }
        let parsed = pkt::parse_l3(frame, etype, l3 + 2);
        let (rss, rss_type, q) = match self.rss(&parsed) {
            Some((h, t, q)) => (h, t, q),
            None => (0, 0, 0),
        };
        let q = q.min(self.queues - 1);
        if !self.rx[q].enabled {
            self.counters.rx_queue_off += 1;
            return false;
        }
        let strip = class.tci.is_some() && self.rx[q].rxdctl & RXDCTL_VME != 0;
        let data: std::borrow::Cow<'_, [u8]> = if strip {
            let mut v = frame[..12].to_vec();
            v.extend_from_slice(&frame[16..]);
            v.into()
        } else {
            frame.into()
        };
        if self.mac_type != MacType::M82599 && self.rx[q].rxdctl & RXDCTL_RLPML_EN != 0 {
            let max = (self.rx[q].rxdctl & RXDCTL_RLPML_MASK) as usize;
            if data.len() > max {
                self.counters.rx_too_long += 1;
                return false;
            }
        }
        let (ptype, mut status, errors) = pkt::rx_offload_bits(&parsed);
        if class.tci.is_some() {
            status |= RXD_STAT_VP;
        }
        if class.inexact {
            status |= RXD_STAT_PIF;
        }
        let meta = RxMeta {
            pkt_info: rss_type | ptype,
            rss,
            status,
            errors,
            vlan: class.tci.unwrap_or(0),
        };
        match self.rx[q].receive(ctx, &data, &meta) {
            Ok(()) => {}
            Err(RxFail::NoDescriptor) => {
                self.counters.rx_no_desc += 1;
                return false;
            }
            Err(RxFail::Dma) => {
                self.counters.rx_dma += 1;
                return false;
            }
        }
        self.counters.rx_frames += 1;
        self.counters.rx_queue_frames[q] += 1;
        self.counters.rx_bytes += frame.len() as u64;
        self.stats.gprc = self.stats.gprc.wrapping_add(1);
        self.stats.gorc = (self.stats.gorc + frame.len() as u64) & 0xF_FFFF_FFFF;
        if class.multicast {
            self.stats.mprc = self.stats.mprc.wrapping_add(1);
        }
        let c = self.queue_cause(q, 0);
        self.cause(ctx, c);
        true
    }

    // --- transmit ---

    fn tx_run(&mut self, ctx: &mut Ctx<'_>, q: usize) {
        if q >= self.queues || !self.pf.filters.rx_tx_enabled {
            // Queues beyond those the PF gave, or VFTE clear: the PF's
            // switch does not fetch them.
            return;
        }
        let mut out = TxOut::default();
        self.tx[q].process(ctx, q, &mut out);
        Self::log_out(ctx, out.violations);
        self.counters.tx_malformed += out.malformed;
        self.counters.tx_tso_packets += out.tso;
        for mut f in out.frames {
            if !self.spoof_ok(&f) {
                self.counters.tx_spoofed += 1;
                continue;
            }
            if f.len() < 60 {
                f.resize(60, 0);
            }
            self.counters.tx_frames += 1;
            self.counters.tx_bytes += f.len() as u64;
            self.stats.gptc = self.stats.gptc.wrapping_add(1);
            self.stats.gotc = (self.stats.gotc + f.len() as u64) & 0xF_FFFF_FFFF;
            ctx.send_frame(&f);
        }
        if out.wrote_back {
            let c = self.queue_cause(q, 1);
            self.cause(ctx, c);
        }
    }

    /// MAC and VLAN anti-spoofing (ixgbe enables both for every VF).
    fn spoof_ok(&self, f: &[u8]) -> bool {
        if !self.spoofchk {
            return f.len() >= 14;
        }
        if f.len() < 14 || !self.pf.filters.is_own_unicast(&f[6..12]) {
            return false;
        }
        if u16::from_be_bytes([f[12], f[13]]) == pkt::TPID_8021Q && f.len() >= 16 {
            let vid = u16::from_be_bytes([f[14], f[15]]) & 0xfff;
            return self.pf.filters.has_vlan(vid);
        }
        true
    }

    // --- registers ---

    fn queue_of(off: u64, base: u64) -> Option<(usize, u64)> {
        let rel = off.checked_sub(base)?;
        let q = (rel / Q_STRIDE) as usize;
        (q < MAX_QUEUES).then_some((q, rel % Q_STRIDE))
    }

    fn read_reg(&mut self, ctx: &mut Ctx<'_>, off: u64) -> u32 {
        match off {
            VFLINKS if ctx.link_up && !self.pf.resetting() => LINKS_UP | LINKS_SPEED_10G,
            VFCTRL | VFSTATUS | VFLINKS => 0,
            VFFRTIMER => self.start.elapsed().as_micros() as u32,
            VTEICR => std::mem::take(&mut self.irq.eicr),
            VTEIMS => self.irq.eims,
            VTEIAC => self.irq.eiac,
            VTEIAM => self.irq.eiam,
            o if (VTEITR0..VTEITR0 + 12).contains(&o) => {
                self.irq.eitr[((o - VTEITR0) / 4) as usize]
            }
            o if (VTIVAR0..VTIVAR0 + 16).contains(&o) => {
                self.irq.ivar[((o - VTIVAR0) / 4) as usize]
            }
            VTIVAR_MISC => self.irq.ivar_misc,
            o if (VTRSCINT0..VTRSCINT0 + 16).contains(&o) => {
                self.irq.rscint[((o - VTRSCINT0) / 4) as usize]
            }
            o if (VFMBMEM..VFMBMEM + 64).contains(&o) => {
                self.pf.read_mem(((o - VFMBMEM) / 4) as usize)
            }
            VFMAILBOX => self.pf.read_mailbox(),
            VFPSRTYPE => self.psrtype,
            VFGPRC => self.stats.gprc,
            VFGORC_LSB => self.stats.gorc as u32,
            VFGORC_MSB => (self.stats.gorc >> 32) as u32,
            VFMPRC => self.stats.mprc,
            VFGPTC => self.stats.gptc,
            VFGOTC_LSB => self.stats.gotc as u32,
            VFGOTC_MSB => (self.stats.gotc >> 32) as u32,
            VFMRQC if self.mac_type == MacType::X550 => self.vfmrqc,
            o if self.mac_type == MacType::X550 && (VFRSSRK0..VFRSSRK0 + 40).contains(&o) => {
                self.vfrssrk[((o - VFRSSRK0) / 4) as usize]
            }
            o if self.mac_type == MacType::X550 && (VFRETA0..VFRETA0 + 64).contains(&o) => {
                self.vfreta[((o - VFRETA0) / 4) as usize]
            }
            o if (RX_BASE..RX_BASE + Q_STRIDE * MAX_QUEUES as u64).contains(&o) => {
                let (q, f) = Self::queue_of(o, RX_BASE).expect("in range");
                let r = &self.rx[q];
                match f {
                    rxq::BAL => r.bal,
                    rxq::BAH => r.bah,
                    rxq::LEN => r.len,
                    rxq::DCA => r.dca,
                    rxq::HEAD => r.head,
                    rxq::SRRCTL => r.srrctl,
                    rxq::TAIL => r.tail,
                    rxq::RXDCTL => r.rxdctl | if r.enabled { DCTL_ENABLE } else { 0 },
                    rxq::RSCCTL => r.rscctl,
                    _ => 0,
                }
            }
            o if (TX_BASE..TX_BASE + Q_STRIDE * MAX_QUEUES as u64).contains(&o) => {
                let (q, f) = Self::queue_of(o, TX_BASE).expect("in range");
                let t = &self.tx[q];
                match f {
                    txq::BAL => t.bal,
                    txq::BAH => t.bah,
                    txq::LEN => t.len,
                    txq::DCA => t.dca,
                    txq::HEAD => t.head,
                    txq::TAIL => t.tail,
                    txq::TXDCTL => t.txdctl | if t.enabled { DCTL_ENABLE } else { 0 },
                    txq::WBAL => t.wbal,
                    txq::WBAH => t.wbah,
                    _ => 0,
                }
            }
            _ => 0,
        }
    }

    fn write_reg(&mut self, ctx: &mut Ctx<'_>, off: u64, v: u32) {
        match off {
            VFCTRL if v & CTRL_RST != 0 => self.vf_reset(),
            VTEICR => self.irq.eicr &= !v,
            VTEICS => self.cause(ctx, v),
            VTEIMS => {
                self.irq.eims |= v & EICR_MASK;
                self.deliver(ctx);
            }
            VTEIMC => self.irq.eims &= !v,
            VTEIAC => self.irq.eiac = v & EICR_MASK,
            VTEIAM => self.irq.eiam = v & EICR_MASK,
            o if (VTEITR0..VTEITR0 + 12).contains(&o) => {
                self.irq.eitr[((o - VTEITR0) / 4) as usize] = v;
            }
            o if (VTIVAR0..VTIVAR0 + 16).contains(&o) => {
                Self::check_ivar(ctx, &format!("VTIVAR({})", (o - VTIVAR0) / 4), v, 4);
                self.irq.ivar[((o - VTIVAR0) / 4) as usize] = v;
            }
            VTIVAR_MISC => {
                Self::check_ivar(ctx, "VTIVAR_MISC", v, 1);
                self.irq.ivar_misc = v;
            }
            o if (VTRSCINT0..VTRSCINT0 + 16).contains(&o) => {
                self.irq.rscint[((o - VTRSCINT0) / 4) as usize] = v;
            }
            o if (VFMBMEM..VFMBMEM + 64).contains(&o) => {
                let mut out = MbxOut::default();
                self.pf.write_mem(((o - VFMBMEM) / 4) as usize, v, &mut out);
                self.mbx_done(ctx, out);
            }
            VFMAILBOX => {
                let mut out = MbxOut::default();
                self.pf.write_mailbox(v, &mut out);
                self.mbx_done(ctx, out);
            }
            VFPSRTYPE => self.psrtype = v,
            VFMRQC if self.mac_type == MacType::X550 => self.vfmrqc = v,
            o if self.mac_type == MacType::X550 && (VFRSSRK0..VFRSSRK0 + 40).contains(&o) => {
                self.vfrssrk[((o - VFRSSRK0) / 4) as usize] = v;
            }
            o if self.mac_type == MacType::X550 && (VFRETA0..VFRETA0 + 64).contains(&o) => {
                self.vfreta[((o - VFRETA0) / 4) as usize] = v;
            }
            o if (RX_BASE..RX_BASE + Q_STRIDE * MAX_QUEUES as u64).contains(&o) => {
                let (q, f) = Self::queue_of(o, RX_BASE).expect("in range");
                self.write_rx(ctx, q, f, v);
            }
            o if (TX_BASE..TX_BASE + Q_STRIDE * MAX_QUEUES as u64).contains(&o) => {
                let (q, f) = Self::queue_of(o, TX_BASE).expect("in range");
                self.write_tx(ctx, q, f, v);
            }
            // Statistics and the rest are read-only or unmodelled.
            _ => {}
        }
    }

    fn write_rx(&mut self, ctx: &mut Ctx<'_>, q: usize, f: u64, v: u32) {
        let r = &mut self.rx[q];
        let ring_reg = |name: &str, ctx: &mut Ctx<'_>, enabled: bool| {
            if enabled {
                ctx.log.log(
                    format!("VF{name}({q}) = {v:#x}"),
                    "ring registers written while the queue is enabled (82599 datasheet \
                     7.1.9: disable the queue, RXDCTL.ENABLE clear, first)",
                );
                false
            } else {
                true
            }
        };
        match f {
            rxq::BAL if ring_reg("RDBAL", ctx, r.enabled) => r.bal = v,
            rxq::BAH if ring_reg("RDBAH", ctx, r.enabled) => r.bah = v,
            rxq::LEN if ring_reg("RDLEN", ctx, r.enabled) => r.len = v,
            rxq::HEAD if ring_reg("RDH", ctx, r.enabled) => r.head = v,
            rxq::DCA => r.dca = v,
            rxq::SRRCTL => r.srrctl = v,
            rxq::RSCCTL => r.rscctl = v,
            rxq::TAIL => {
                let count = r.count();
                if v >= count.max(1) {
                    ctx.log.log(
                        format!("VFRDT({q}) = {v}"),
                        format!("tail beyond the {count}-descriptor ring"),
                    );
                } else {
                    r.tail = v;
                }
            }
            rxq::RXDCTL => {
                r.rxdctl = v & !DCTL_ENABLE;
                if v & DCTL_ENABLE != 0 && !r.enabled {
                    match r.check() {
                        None => r.enabled = true,
                        Some(why) => ctx.log.log(format!("VFRXDCTL({q}) enable"), why),
                    }
                } else if v & DCTL_ENABLE == 0 {
                    r.enabled = false;
                }
            }
            _ => {}
        }
    }

    fn write_tx(&mut self, ctx: &mut Ctx<'_>, q: usize, f: u64, v: u32) {
        let t = &mut self.tx[q];
        let enabled = t.enabled;
        let ring_ok = |name: &str, ctx: &mut Ctx<'_>| {
            if enabled {
                ctx.log.log(
                    format!("VF{name}({q}) = {v:#x}"),
                    "ring registers written while the queue is enabled (82599 datasheet \
                     7.2.1.2: disable the queue, TXDCTL.ENABLE clear, first)",
                );
                false
            } else {
                true
            }
        };
        match f {
            txq::BAL if ring_ok("TDBAL", ctx) => t.bal = v,
            txq::BAH if ring_ok("TDBAH", ctx) => t.bah = v,
            txq::LEN if ring_ok("TDLEN", ctx) => t.len = v,
            txq::HEAD if ring_ok("TDH", ctx) => t.head = v,
            txq::DCA => t.dca = v,
            txq::WBAL => t.wbal = v,
            txq::WBAH => t.wbah = v,
            txq::TAIL => {
                let count = t.count();
                if v >= count.max(1) {
                    ctx.log.log(
                        format!("VFTDT({q}) = {v}"),
                        format!("tail beyond the {count}-descriptor ring (82599 datasheet, TDT)"),
                    );
                    return;
                }
                t.tail = v;
                self.tx_run(ctx, q);
            }
            txq::TXDCTL => {
                t.txdctl = v & !(DCTL_ENABLE | TXDCTL_SWFLSH);
                if v & DCTL_ENABLE != 0 && !t.enabled {
                    match t.check() {
                        None => {
                            t.enabled = true;
                            t.ctx = [None, None];
                            self.tx_run(ctx, q);
                        }
                        Some(why) => ctx.log.log(format!("VFTXDCTL({q}) enable"), why),
                    }
                } else if v & DCTL_ENABLE == 0 {
                    t.enabled = false;
                }
            }
            _ => {}
        }
    }

    fn bad_access(ctx: &mut Ctx<'_>, dir: &str, bar: u8, offset: u64, len: usize) -> bool {
        if len == 4 && offset % 4 == 0 {
            return false;
        }
        ctx.log.log(
            format!("BAR {bar} {dir} of {len} bytes at {offset:#x}"),
            "the VF's registers are 32-bit and 32-bit aligned (82599 datasheet 8.1: \
             register accesses are DWORD)",
        );
        true
    }
}

impl Model for Ixgbevf {
    fn spec(&self) -> FunctionSpec {
        FunctionSpec {
            vendor: VENDOR,
            device: self.device,
            class: (0x02, 0x00, 0x00),
            revision: 1,
            bars: vec![
                BarSpec {
                    index: 0,
                    size: 0x4000,
                    is_64: true,
                },
                BarSpec {
                    index: 3,
                    size: 0x4000,
                    is_64: true,
                },
            ],
            msix_vectors: MSIX_VECTORS,
            msix_bar: 3,
            msix_table: 0,
            msix_pba: 0x2000,
        }
    }

    fn bar_read(&mut self, ctx: &mut Ctx<'_>, bar: u8, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if Self::bad_access(ctx, "read", bar, offset, data.len()) || bar != 0 {
            return;
        }
        let v = self.read_reg(ctx, offset);
        data.copy_from_slice(&v.to_le_bytes());
    }

    fn bar_write(&mut self, ctx: &mut Ctx<'_>, bar: u8, offset: u64, data: &[u8]) {
        if Self::bad_access(ctx, "write", bar, offset, data.len()) || bar != 0 {
            return;
        }
        let v = u32::from_le_bytes(data.try_into().expect("4 bytes checked"));
        self.write_reg(ctx, offset, v);
    }

    /// FLR: registers to power-on, statistics cleared, the PF's VFLR
    /// handling (its reset event; CTS is kept, as ixgbe_vf_reset_event
    /// keeps it). TDWBAL/H survive, as ixgbe notes an FLR does not clear
    /// them.
    fn reset(&mut self) {
        self.vf_reset();
        self.counters.vf_resets -= 1;
        self.counters.flrs += 1;
        self.stats = HwStats::default();
    }

    fn frame_in(&mut self, ctx: &mut Ctx<'_>, frame: &[u8]) -> bool {
        self.rx_frame(ctx, frame)
    }

    /// The PF pings its VFs on every link change (ixgbe_ping_all_vfs from
    /// the watchdog); VFLINKS follows the host link.
    fn link_changed(&mut self, ctx: &mut Ctx<'_>, _up: bool) {
        let mut out = MbxOut::default();
        self.pf.ping(&mut out);
        self.mbx_done(ctx, out);
    }

    /// `reset` (a PF reset: reset-start then reset-done), `reset-start`
    /// (RSTI, CTS cleared, a control message without CTS, the VF's queues
    /// stopped), `reset-done` (RSTI clear, RSTD), `ping`.
    fn pf_event(&mut self, ctx: &mut Ctx<'_>, event: &str) -> Result<(), String> {
        let mut out = MbxOut::default();
        match event {
            "reset" | "reset-start" => {
                self.counters.pf_resets += 1;
                self.pf.pf_reset_start(&mut out);
                for q in &mut self.rx {
                    q.enabled = false;
                }
                for t in &mut self.tx {
                    t.enabled = false;
                }
                if event == "reset" {
                    self.pf.pf_reset_done(&mut out);
                }
            }
            "reset-done" => {
                if !self.pf.resetting() {
                    return Err("no PF reset in progress (pf reset-start first)".into());
                }
                self.pf.pf_reset_done(&mut out);
            }
            "ping" => self.pf.ping(&mut out),
            // `ip link set PF vf N spoofchk on|off` at run time.
            "spoofchk-on" | "spoofchk-off" => self.spoofchk = event == "spoofchk-on",
            // `ip link set PF vf N trust on|off` at run time.
            "trust-on" | "trust-off" => self.pf.set_trusted(event == "trust-on"),
            _ => {
                return Err(format!(
                "ixgbevf knows the PF events reset, reset-start, reset-done, ping, spoofchk-on, spoofchk-off, trust-on, trust-off; not {event:?}"
            ))
            }
        }
        self.mbx_done(ctx, out);
        Ok(())
    }

    fn counters(&self) -> Vec<(String, u64)> {
        let c = &self.counters;
        let mut v: Vec<(String, u64)> = [
            ("rx_frames", c.rx_frames),
            ("rx_bytes", c.rx_bytes),
            ("tx_frames", c.tx_frames),
            ("tx_bytes", c.tx_bytes),
            ("rx_drop_no_descriptor", c.rx_no_desc),
            ("rx_drop_filtered_address", c.rx_filtered_addr),
            ("rx_drop_filtered_vlan", c.rx_filtered_vlan),
            ("rx_drop_too_long", c.rx_too_long),
            ("rx_drop_runt", c.rx_runt),
            ("rx_drop_vf_disabled", c.rx_disabled),
            ("rx_drop_queue_disabled", c.rx_queue_off),
            ("rx_drop_dma", c.rx_dma),
            ("tx_drop_spoofed", c.tx_spoofed),
            ("tx_drop_malformed", c.tx_malformed),
            ("tx_tso_packets", c.tx_tso_packets),
            ("vf_resets", c.vf_resets),
            ("flrs", c.flrs),
            ("pf_resets", c.pf_resets),
            ("mbx_failures", self.pf.failures),
            ("mbx_api", self.pf.api() as u64),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (q, n) in c.rx_queue_frames.iter().enumerate().take(self.queues) {
            v.push((format!("rx_q{q}_frames"), *n));
        }
        for (i, (_, name)) in MSG_NAMES.iter().enumerate() {
            v.push((format!("mbx_{name}"), self.pf.msg_counts[i]));
        }
        v.push(("mbx_unknown".into(), self.pf.msg_counts[MSG_NAMES.len()]));
        v
    }
}

#[cfg(test)]
mod tests;
