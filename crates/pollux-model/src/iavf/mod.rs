//! `iavf`: the Intel Ethernet Adaptive Virtual Function (the VF of
//! X710/XL710/XXV710 under i40e and of E810 under ice), as Linux's `iavf`
//! and DPDK's `net_iavf` drive it.
//!
//! What is modelled:
//! - PCI identity 8086:1889 (AVF, default) or 8086:154c (X710 VF), class
//!   0x020000; BAR 0 of 64 KiB (registers, [`regs`]), BAR 3 of 16 KiB with
//!   the MSI-X table at 0 and PBA at 0x2000 (as the X710 VF); queues + 1
//!   MSI-X vectors (vector 0 for the admin queue).
//! - The registers the drivers use (Linux `iavf_register.h`): the admin
//!   queue pair ([`adminq`]), QTX_TAIL1/QRX_TAIL1, VFINT_DYN_CTL01 and
//!   VFINT_DYN_CTLN1 (INTENA, CLEARPBA, SWINT_TRIG, WB_ON_ITR), ITR
//!   registers (stored; no moderation timing), VFINT_ICR01 (read clears)
//!   and ICR0_ENA1, VFGEN_RSTAT, and VFQF_HENA/HKEY/HLUT as plain storage.
//!   Accesses must be 32-bit and aligned; unknown offsets read 0.
//! - The PF side of virtchnl ([`virtchnl`]) as i40e/ice answer, with
//!   LINK_CHANGE events after GET_VF_RESOURCES and ENABLE_QUEUES and on
//!   link changes, and RESET_IMPENDING before a PF-initiated reset.
//! - Resets. RESET_VF: the VF is reset at once (the admin queue registers
//!   clear, which is how the drivers see the reset, Linux
//!   `iavf_reset_task`); VFGEN_RSTAT then reads INPROGRESS, COMPLETED and
//!   VFACTIVE on successive reads (the PF's cleanup, i40e
//!   `i40e_cleanup_reset_vf`, is modelled as taking two register reads, as
//!   the model has no timers). `pf reset` and a granted REQUEST_QUEUES
//!   first send RESET_IMPENDING; the reset happens when the driver gives
//!   back the ARQ descriptor that held the event, or at its next read of
//!   ARQLEN/ATQLEN/VFGEN_RSTAT. FLR: the same reset, from power-on.
//! - Queues ([`queues`]): up to 16 pairs, 32-byte legacy receive
//!   descriptors (i40e always programs `dsize = 1`), multi-descriptor
//!   frames, VLAN stripping into L2TAG1, RSS hash and packet type,
//!   checksum verification; transmit data and context descriptors, VLAN
//!   insertion (L2TAG1/L2TAG2), IPv4/TCP/UDP/SCTP checksum offload, TSO,
//!   DESC_DONE write-back on RS.
//! - Interrupts: a queue's cause raises the vector CONFIG_IRQ_MAP gave it,
//!   an ARQ message raises vector 0 when ICR0_ENA1.ADMINQ is set. A vector
//!   fires when its INTENA is set and then clears INTENA (the driver
//!   re-arms it after each interrupt, Linux `iavf_update_enable_itr`,
//!   `iavf_misc_irq_enable`); a cause while disarmed stays pending and
//!   fires when INTENA is written again.
//! - Filtering, spoof check and RSS ([`filter`]).
//!
//! What is not: flexible descriptors, VLAN v2, advanced RSS/FDIR, ADq,
//! RDMA, PTP, header split, interrupt moderation timing, Tx head
//! write-back (deprecated in AVF 1.0), RSS_REG/RSS_AQ modes (not
//! offered), port VLANs, statistics beyond what the model counts.

pub mod adminq;
pub mod filter;
pub mod queues;
pub mod regs;
pub mod virtchnl;

#[cfg(test)]
mod tests;

use adminq::{AdminQueue, Command};
use filter::{Filter, Refused};
use queues::{Lens, RxDrop, RxMeta, RxRing, TxRing};
use regs::*;
use virtchnl::{op, Effect, EthStats, Pf, PfConfig};

use crate::model::{Ctx, Model};
use crate::pci::{BarSpec, FunctionSpec};

/// AVF device ID (E810 VF and any AVF-capable VF).
pub const DEVICE_AVF: u16 = 0x1889;
/// X710/XL710 VF device ID.
pub const DEVICE_X710_VF: u16 = 0x154c;
/// Intel.
pub const VENDOR_INTEL: u16 = 0x8086;
/// The MAC a VF gets without `--mac` (locally administered).
pub const DEFAULT_MAC: [u8; 6] = [0x02, 0x00, 0x50, 0x4c, 0x58, 0x01];

/// How the model is set up.
#[derive(Debug, Clone)]
pub struct IavfConfig {
    /// PCI device ID.
    pub device_id: u16,
    /// The VF's MAC.
    pub mac: [u8; 6],
    /// Queue pairs (1..=16); MSI-X vectors are one more.
    pub queues: u16,
    /// Trusted VF (promiscuous modes).
    pub trusted: bool,
    /// The PF's MAC anti-spoofing (`ip link set PF vf N spoofchk`; on by
    /// default, as i40e and ice have it).
    pub spoofchk: bool,
}

impl Default for IavfConfig {
    fn default() -> Self {
        IavfConfig {
            device_id: DEVICE_AVF,
            mac: DEFAULT_MAC,
            queues: 4,
            trusted: false,
            spoofchk: true,
        }
    }
}

impl IavfConfig {
    /// Checks the device ID (8086:1889 or 8086:154c) and queue count
    /// (1..=16).
    pub fn check(&self) -> Result<(), String> {
        if self.device_id != DEVICE_AVF && self.device_id != DEVICE_X710_VF {
            return Err(format!(
                "device {:04x}: the iavf model is 8086:1889 (AVF) or 8086:154c (X710 VF)",
                self.device_id
            ));
        }
        if !(1..=MAX_QUEUES as u16).contains(&self.queues) {
            return Err(format!("{} queue pairs: a VF has 1 to 16", self.queues));
        }
        Ok(())
    }
}

/// Counted events (model counters).
#[derive(Debug, Clone, Default)]
struct Counters {
    rx_frames: u64,
    tx_frames: u64,
    rx_drop_filter_mac: u64,
    rx_drop_filter_vlan: u64,
    rx_drop_runt: u64,
    rx_drop_queue_off: u64,
    rx_drop_no_desc: u64,
    rx_drop_oversize: u64,
    rx_drop_dma: u64,
    tx_drop_spoof: u64,
    tx_drop_malformed: u64,
    vc_msgs: Vec<u64>,
    vc_errors: u64,
    vf_resets: u64,
    pf_resets: u64,
    irq_fired: u64,
    arq_dropped: u64,
    /// Frames delivered per receive queue (the RSS check's judge; the
    /// same counter names as the ixgbevf model's).
    rx_queue_frames: [u64; MAX_QUEUES],
    /// Tail writes to a disabled ATQ (ignored).
    atq_tail_while_disabled: u64,
}

/// The AVF model.
#[derive(Debug)]
pub struct Iavf {
    cfg: IavfConfig,
    pf: Pf,
    aq: AdminQueue,
    rx: [RxRing; MAX_QUEUES],
    tx: [TxRing; MAX_QUEUES],
    dyn_ctl0: u32,
    dyn_ctln: [u32; MAX_QUEUES],
    itr0: [u32; 3],
    itrn: [[u32; MAX_QUEUES]; 3],
    icr0: u32,
    icr0_ena: u32,
    stat_ctl0: u32,
    pending: [bool; MAX_QUEUES + 1],
    rstat: u32,
    rstat_steps: u8,
    /// A PF-initiated reset waits for the RESET_IMPENDING event to be
    /// consumed: `Some(slot)` once the event is in ARQ descriptor `slot`.
    pf_reset: Option<Option<u32>>,
    hena_regs: [u32; 2],
    hkey_regs: [u32; 13],
    hlut_regs: [u32; 16],
    link_up_seen: bool,
    stats: EthStats,
    n: Counters,
}

impl Iavf {
    /// A model set up by `cfg`.
    pub fn new(cfg: IavfConfig) -> Self {
        let queues = cfg.queues.clamp(1, MAX_QUEUES as u16);
        let cfg = IavfConfig { queues, ..cfg };
        let pf = Pf::new(PfConfig {
            mac: cfg.mac,
            queues,
            max_vectors: queues + 1,
            trusted: cfg.trusted,
            speed_mbps: 10_000,
        });
        Iavf {
            cfg,
            pf,
            aq: AdminQueue::default(),
            rx: [RxRing::default(); MAX_QUEUES],
            tx: [TxRing::default(); MAX_QUEUES],
            dyn_ctl0: 0,
            dyn_ctln: [0; MAX_QUEUES],
            itr0: [0; 3],
            itrn: [[0; MAX_QUEUES]; 3],
            icr0: 0,
            icr0_ena: 0,
            stat_ctl0: 0,
            pending: [false; MAX_QUEUES + 1],
            // The PF set the VF up long before the driver loads.
            rstat: VFR_VFACTIVE,
            rstat_steps: 0,
            pf_reset: None,
            hena_regs: [0; 2],
            hkey_regs: [0; 13],
            hlut_regs: [0; 16],
            link_up_seen: true,
            stats: EthStats::default(),
            n: Counters {
                vc_msgs: vec![0; 128],
                ..Counters::default()
            },
        }
    }

    /// The PF state (for tests and inspection).
    pub fn pf(&self) -> &Pf {
        &self.pf
    }

    /// MSI-X vectors.
    pub fn vectors(&self) -> u16 {
        self.cfg.queues + 1
    }

    // ---- interrupts -------------------------------------------------

    fn fire(&mut self, ctx: &mut Ctx<'_>, v: usize) {
        self.pending[v] = false;
        if v == 0 {
            self.dyn_ctl0 &= !DYN_INTENA;
        } else if let Some(c) = self.dyn_ctln.get_mut(v - 1) {
            *c &= !DYN_INTENA;
        }
        self.n.irq_fired += 1;
        ctx.interrupt(v);
    }

    fn armed(&self, v: usize) -> bool {
        if v == 0 {
            self.dyn_ctl0 & DYN_INTENA != 0
        } else {
            self.dyn_ctln
                .get(v - 1)
                .is_some_and(|c| c & DYN_INTENA != 0)
        }
    }

    /// A cause on vector `v` (queue causes; the admin cause goes through
    /// [`Iavf::raise_adminq`]).
    fn raise(&mut self, ctx: &mut Ctx<'_>, v: usize) {
        if v > self.cfg.queues as usize {
            return;
        }
        if v == 0 {
            self.icr0 |= ICR0_QUEUE_0;
        }
        if self.armed(v) {
            self.fire(ctx, v);
        } else {
            self.pending[v] = true;
        }
    }

    fn raise_adminq(&mut self, ctx: &mut Ctx<'_>) {
        self.icr0 |= ICR0_ADMINQ;
        if self.icr0_ena & ICR0_ADMINQ == 0 {
            return;
        }
        if self.armed(0) {
            self.fire(ctx, 0);
        } else {
            self.pending[0] = true;
        }
    }

    fn write_dyn_ctl(&mut self, ctx: &mut Ctx<'_>, v: usize, val: u32) {
        let stored = val & !(DYN_CLEARPBA | DYN_SWINT_TRIG);
        if v == 0 {
            self.dyn_ctl0 = stored;
        } else if let Some(c) = self.dyn_ctln.get_mut(v - 1) {
            *c = stored;
        } else {
            return;
        }
        if val & DYN_INTENA == 0 {
            return;
        }
        if val & DYN_SWINT_TRIG != 0 || self.pending[v] {
            self.fire(ctx, v);
        }
    }

    // ---- admin queue ------------------------------------------------

    fn post(&mut self, ctx: &mut Ctx<'_>, msg: virtchnl::Message, reset_event: bool) {
        if !self.aq.post(ctx, msg, reset_event) {
            self.n.arq_dropped += 1;
        }
        self.flush_arq(ctx);
    }

    fn flush_arq(&mut self, ctx: &mut Ctx<'_>) {
        let done = self.aq.flush(ctx);
        if done.is_empty() {
            return;
        }
        for d in &done {
            if d.reset_event && self.pf_reset.is_some() {
                self.pf_reset = Some(Some(d.slot));
            }
        }
        self.raise_adminq(ctx);
    }

    fn process_atq(&mut self, ctx: &mut Ctx<'_>) {
        // One lap of the ring at most per tail write.
        for _ in 0..=AQLEN_LEN_MASK {
            let Some(cmd) = self.aq.next_command(ctx) else {
                break;
            };
            if let Command::ToPf { opcode, msg } = cmd {
                self.virtchnl(ctx, opcode, &msg);
            }
        }
    }

    fn virtchnl(&mut self, ctx: &mut Ctx<'_>, opcode: u32, msg: &[u8]) {
        if let Some(c) = self.n.vc_msgs.get_mut(opcode as usize) {
            *c += 1;
        }
        let out = self.pf.handle(opcode, msg, &self.stats);
        if let Some((what, why)) = out.violation {
            ctx.log.log(what, why);
        }
        if let Some(r) = out.reply {
            if r.status != 0 {
                self.n.vc_errors += 1;
            }
            self.post(ctx, r, false);
        }
        for e in out.effects {
            match e {
                Effect::EnableQueues { rx, tx } => self.enable_queues(ctx, rx, tx),
                Effect::DisableQueues { rx, tx } => {
                    for q in 0..MAX_QUEUES {
                        if rx & (1 << q) != 0 {
                            self.rx[q].enabled = false;
                        }
                        if tx & (1 << q) != 0 {
                            self.tx[q].enabled = false;
                        }
                    }
                }
                Effect::ResetNow => self.vf_reset(),
                Effect::ResetNotify => self.pf_initiated_reset(ctx),
                Effect::LinkEvent => {
                    let m = self.pf.link_event(ctx.link_up);
                    self.link_up_seen = ctx.link_up;
                    self.post(ctx, m, false);
                }
            }
        }
    }

    fn enable_queues(&mut self, ctx: &mut Ctx<'_>, rx: u32, tx: u32) {
        for q in 0..MAX_QUEUES {
            let c = self.pf.queue[q];
            if rx & (1 << q) != 0 && !self.rx[q].enabled {
                let r = &mut self.rx[q];
                r.base = c.rx_ring;
                r.len = c.rx_len;
                r.buf = c.rx_buf;
                r.max_frame = c.rx_max_frame;
                r.desc_len = c.rx_desc_len;
                r.head = 0;
                r.enabled = true;
            }
            if tx & (1 << q) != 0 && !self.tx[q].enabled {
                let t = &mut self.tx[q];
                t.base = c.tx_ring;
                t.len = c.tx_len;
                t.head = 0;
                t.enabled = true;
                self.transmit(ctx, q);
            }
        }
    }

    // ---- resets -----------------------------------------------------

    /// The VF reset itself: everything the VF owns back to its reset
    /// state; VFGEN_RSTAT walks INPROGRESS → COMPLETED → VFACTIVE.
    fn vf_reset(&mut self) {
        self.n.vf_resets += 1;
        self.aq.reset();
        self.pf.reset_vf();
        self.rx = [RxRing::default(); MAX_QUEUES];
        self.tx = [TxRing::default(); MAX_QUEUES];
        self.dyn_ctl0 = 0;
        self.dyn_ctln = [0; MAX_QUEUES];
        self.itr0 = [0; 3];
        self.itrn = [[0; MAX_QUEUES]; 3];
        self.icr0 = 0;
        self.icr0_ena = 0;
        self.stat_ctl0 = 0;
        self.pending = [false; MAX_QUEUES + 1];
        self.pf_reset = None;
        self.stats = EthStats::default();
        self.rstat = VFR_INPROGRESS;
        self.rstat_steps = 2;
    }

    fn pf_initiated_reset(&mut self, ctx: &mut Ctx<'_>) {
        self.n.pf_resets += 1;
        self.pf_reset = Some(None);
        self.post(ctx, Pf::reset_event(), true);
        // A VF that cannot hear the event (ARQ off) is reset at once.
        if !self.aq.arq.enabled() {
            self.vf_reset();
        }
    }

    /// The driver looks at reset state: a pending PF reset happens now.
    fn reset_observed(&mut self) {
        if self.pf_reset.is_some() {
            self.vf_reset();
        }
    }

    // ---- data path --------------------------------------------------

    fn transmit(&mut self, ctx: &mut Ctx<'_>, q: usize) {
        let Some(ring) = self.tx.get_mut(q) else {
            return;
        };
        let pass = ring.gather(ctx, q);
        for p in pass.packets {
            if p.bad {
                self.n.tx_drop_malformed += 1;
                self.stats.tx_errors += 1;
                continue;
            }
            for frame in self.offload(ctx, q, p) {
                self.send(ctx, frame);
            }
        }
        if pass.written_back > 0 {
            if let Some(v) = self.pf.tx_vector[q] {
                self.raise(ctx, v as usize);
            }
        }
    }

    fn offload(&mut self, ctx: &mut Ctx<'_>, q: usize, p: queues::TxPacket) -> Vec<Vec<u8>> {
        let mut f = p.data;
        let lens = Lens::from_offset(p.offset);
        let flen = f.len();
        let bad = |ctx: &mut Ctx<'_>, n: &mut Counters, why: String| {
            ctx.log.log(
                format!("Tx queue {q}: packet of {flen} bytes"),
                format!("{why} (iavf_type.h, iavf_txrx.c iavf_tx_enable_csum/iavf_tso)"),
            );
            n.tx_drop_malformed += 1;
            Vec::new()
        };
        if f.len() < MIN_TX_FRAME_LEN {
            return bad(ctx, &mut self.n, "shorter than an Ethernet header".into());
        }
        let (ctx_q0, ctx_q1) = p.ctx.unwrap_or((0, 0));
        let ctx_cmd = (ctx_q1 >> 4) & 0xffff;
        let mut frames = if ctx_cmd & TX_CTX_TSO != 0 {
            let mss = ((ctx_q1 >> 50) & 0x3fff) as usize;
            let ipv4 = p.cmd & TX_CMD_IIPT_MASK != TX_CMD_IIPT_IPV6;
            if p.cmd & TX_CMD_L4T_MASK != TX_CMD_L4T_TCP {
                return bad(
                    ctx,
                    &mut self.n,
                    "TSO of a non-TCP packet (L4T must be TCP)".into(),
                );
            }
            match queues::tso(&f, lens, mss, ipv4) {
                Ok(s) => s,
                Err(e) => return bad(ctx, &mut self.n, e),
            }
        } else {
            if let Err(e) = queues::checksum_offload(&mut f, p.cmd, lens) {
                return bad(ctx, &mut self.n, e);
            }
            vec![f]
        };
        for fr in &mut frames {
            if p.cmd & TX_CMD_IL2TAG1 != 0 {
                queues::insert_vlan(fr, filter::TPID_8021Q, p.l2tag1);
            }
            if ctx_cmd & TX_CTX_IL2TAG2 != 0 {
                let tag = (ctx_q0 >> 32) as u16;
                queues::insert_vlan(fr, filter::TPID_8021Q, tag);
            }
        }
        frames
    }

    fn send(&mut self, ctx: &mut Ctx<'_>, frame: Vec<u8>) {
        let Some(src) = frame.get(6..12) else {
            self.n.tx_drop_malformed += 1;
            return;
        };
        let mut mac = [0u8; 6];
        mac.copy_from_slice(src);
        if self.cfg.spoofchk && !self.pf.owns_unicast(&mac) {
            // i40e MAC anti-spoof: the switch drops it.
            self.n.tx_drop_spoof += 1;
            self.stats.tx_discards += 1;
            return;
        }
        self.n.tx_frames += 1;
        self.stats.tx_bytes += frame.len() as u64;
        match frame[0] {
            _ if frame[..6] == [0xff; 6] => self.stats.tx_broadcast += 1,
            b if b & 1 != 0 => self.stats.tx_multicast += 1,
            _ => self.stats.tx_unicast += 1,
        }
        ctx.send_frame(&frame);
    }

    fn receive(&mut self, ctx: &mut Ctx<'_>, frame: &[u8]) -> bool {
        let filter = Filter {
            mac: self.cfg.mac,
            macs: &self.pf.macs,
            vlans: &self.pf.vlans,
            promisc_uc: self.pf.promisc_uc,
            promisc_mc: self.pf.promisc_mc,
        };
        if let Err(r) = filter.accepts(frame) {
            match r {
                Refused::Runt => self.n.rx_drop_runt += 1,
                Refused::Mac => self.n.rx_drop_filter_mac += 1,
                Refused::Vlan => self.n.rx_drop_filter_vlan += 1,
            }
            return false;
        }
        let mut f = frame.to_vec();
        let mut meta = RxMeta {
            umbcast: if f[..6] == [0xff; 6] {
                2
            } else if f[0] & 1 != 0 {
                1
            } else {
                0
            },
            ..RxMeta::default()
        };
        if self.pf.strip {
            if let Some((filter::TPID_8021Q, tci)) = filter::vlan_tag(&f) {
                f.drain(12..16);
                meta.l2tag1 = Some(tci);
            }
        }
        let p = filter::parse(&f);
        meta.ptype = p.ptype;
        if p.ip == 4 || p.ip == 6 {
            meta.l3l4p = true;
            if p.ip == 4 && !filter::ipv4_header_ok(&f, &p) {
                meta.errors |= RX_ERROR_IPE;
            }
            if filter::l4_ok(&f, &p) == Some(false) {
                meta.errors |= RX_ERROR_L4E;
            }
        }
        let mut q = 0usize;
        if self.pf.hena & (1u64 << (p.pctype & 63)) != 0 {
            if let Some(input) = filter::rss_input(&f, &p) {
                let h = crate::toeplitz::hash(&self.pf.rss_key, &input);
                meta.rss = Some(h);
                q = self.pf.rss_lut[(h as usize) % virtchnl::RSS_LUT_SIZE] as usize;
            }
        }
        let Some(ring) = self.rx.get_mut(q) else {
            self.n.rx_drop_queue_off += 1;
            return false;
        };
        match ring.receive(ctx, &f, &meta) {
            Ok(()) => {
                self.n.rx_frames += 1;
                self.n.rx_queue_frames[q] += 1;
                self.stats.rx_bytes += f.len() as u64;
                match meta.umbcast {
                    2 => self.stats.rx_broadcast += 1,
                    1 => self.stats.rx_multicast += 1,
                    _ => self.stats.rx_unicast += 1,
                }
                if let Some(v) = self.pf.rx_vector[q] {
                    self.raise(ctx, v as usize);
                }
                true
            }
            Err(e) => {
                self.stats.rx_discards += 1;
                match e {
                    RxDrop::QueueOff => self.n.rx_drop_queue_off += 1,
                    RxDrop::NoDesc => self.n.rx_drop_no_desc += 1,
                    RxDrop::Oversize => self.n.rx_drop_oversize += 1,
                    RxDrop::Dma => self.n.rx_drop_dma += 1,
                }
                false
            }
        }
    }

    // ---- registers --------------------------------------------------

    fn read_reg(&mut self, off: u64) -> u32 {
        let idx = |base: u64, n: usize| -> Option<usize> {
            let i = off.checked_sub(base)? / 4;
            (i < n as u64).then_some(i as usize)
        };
        match off {
            VF_ATQBAL1 => self.aq.atq.bal,
            VF_ATQBAH1 => self.aq.atq.bah,
            VF_ATQLEN1 => {
                self.reset_observed();
                self.aq.atq.len
            }
            VF_ATQH1 => self.aq.atq.head,
            VF_ATQT1 => self.aq.atq.tail,
            VF_ARQBAL1 => self.aq.arq.bal,
            VF_ARQBAH1 => self.aq.arq.bah,
            VF_ARQLEN1 => {
                self.reset_observed();
                self.aq.arq.len
            }
            VF_ARQH1 => self.aq.arq.head,
            VF_ARQT1 => self.aq.arq.tail,
            VFGEN_RSTAT => {
                self.reset_observed();
                let v = self.rstat;
                if self.rstat_steps > 0 {
                    self.rstat_steps -= 1;
                    self.rstat = if self.rstat_steps == 0 {
                        VFR_VFACTIVE
                    } else {
                        VFR_COMPLETED
                    };
                }
                v
            }
            VFINT_ICR01 => std::mem::take(&mut self.icr0),
            VFINT_ICR0_ENA1 => self.icr0_ena,
            VFINT_DYN_CTL01 => self.dyn_ctl0,
            VFINT_STAT_CTL01 => self.stat_ctl0,
            _ => {
                if let Some(i) = idx(QTX_TAIL1, MAX_QUEUES) {
                    self.tx[i].tail
                } else if let Some(i) = idx(QRX_TAIL1, MAX_QUEUES) {
                    self.rx[i].tail
                } else if let Some(i) = idx(VFINT_DYN_CTLN1, MAX_QUEUES) {
                    self.dyn_ctln[i]
                } else if let Some(i) = idx(VFINT_ITR01, 3) {
                    self.itr0[i]
                } else if let Some(i) = idx(VFINT_ITRN1, 3 * 16) {
                    self.itrn[i / 16][i % 16]
                } else if let Some(i) = idx(VFQF_HENA, 2) {
                    self.hena_regs[i]
                } else if let Some(i) = idx(VFQF_HKEY, 13) {
                    self.hkey_regs[i]
                } else if let Some(i) = idx(VFQF_HLUT, 16) {
                    self.hlut_regs[i]
                } else {
                    0
                }
            }
        }
    }

    fn write_reg(&mut self, ctx: &mut Ctx<'_>, off: u64, v: u32) {
        let idx = |base: u64, n: usize| -> Option<usize> {
            let i = off.checked_sub(base)? / 4;
            (i < n as u64).then_some(i as usize)
        };
        match off {
            VF_ATQBAL1 => self.aq.atq.bal = v,
            VF_ATQBAH1 => self.aq.atq.bah = v,
            VF_ATQLEN1 => self.aq.atq.len = v,
            VF_ATQH1 => self.aq.atq.head = v & AQ_PTR_MASK,
            VF_ATQT1 => {
                self.aq.atq.tail = v & AQ_PTR_MASK;
                // A tail write to a disabled ATQ goes nowhere, as on the
                // hardware, and is no violation: Linux iavf does it on
                // every remove. iavf_remove sends RESET_VF, and 50 ms later,
                // finding the ATQ head (cleared by the reset) short of its
                // next_to_use, "kicks it once" more (iavf_main.c,
                // iavf_remove); seen in the lab.
                if self.aq.atq.tail != 0 && !self.aq.atq.enabled() {
                    self.n.atq_tail_while_disabled += 1;
                }
                self.process_atq(ctx);
            }
            VF_ARQBAL1 => self.aq.arq.bal = v,
            VF_ARQBAH1 => self.aq.arq.bah = v,
            VF_ARQLEN1 => self.aq.arq.len = v,
            VF_ARQH1 => self.aq.arq.head = v & AQ_PTR_MASK,
            VF_ARQT1 => {
                self.aq.arq.tail = v & AQ_PTR_MASK;
                if let Some(Some(slot)) = self.pf_reset {
                    if self.aq.arq.tail == slot {
                        // The driver took the RESET_IMPENDING event.
                        self.vf_reset();
                        return;
                    }
                }
                self.flush_arq(ctx);
            }
            // VFR_STATE is read-write to the VF (XL710 datasheet,
            // VFGEN_RSTAT1): FreeBSD's iavf writes INPROGRESS before it asks
            // for a reset, so that it cannot mistake the COMPLETED of an
            // earlier reset for this one's. The value holds until the next
            // reset moves it on.
            VFGEN_RSTAT => {
                self.rstat = v & 0x3;
                self.rstat_steps = 0;
            }
            VFINT_ICR01 => {}
            VFINT_ICR0_ENA1 => {
                self.icr0_ena = v;
                if v & ICR0_ADMINQ != 0 && self.pending[0] && self.armed(0) {
                    self.fire(ctx, 0);
                }
            }
            VFINT_DYN_CTL01 => self.write_dyn_ctl(ctx, 0, v),
            VFINT_STAT_CTL01 => self.stat_ctl0 = v,
            _ => {
                if let Some(i) = idx(QTX_TAIL1, MAX_QUEUES) {
                    self.write_tx_tail(ctx, i, v);
                } else if let Some(i) = idx(QRX_TAIL1, MAX_QUEUES) {
                    self.write_rx_tail(ctx, i, v);
                } else if let Some(i) = idx(VFINT_DYN_CTLN1, MAX_QUEUES) {
                    self.write_dyn_ctl(ctx, i + 1, v);
                } else if let Some(i) = idx(VFINT_ITR01, 3) {
                    self.itr0[i] = v & 0xfff;
                } else if let Some(i) = idx(VFINT_ITRN1, 3 * 16) {
                    self.itrn[i / 16][i % 16] = v & 0xfff;
                } else if let Some(i) = idx(VFQF_HENA, 2) {
                    self.hena_regs[i] = v;
                } else if let Some(i) = idx(VFQF_HKEY, 13) {
                    self.hkey_regs[i] = v;
                } else if let Some(i) = idx(VFQF_HLUT, 16) {
                    self.hlut_regs[i] = v;
                }
            }
        }
    }

    fn write_tx_tail(&mut self, ctx: &mut Ctx<'_>, q: usize, v: u32) {
        let t = &mut self.tx[q];
        if t.enabled && v >= t.len as u32 {
            ctx.log.log(
                format!("QTX_TAIL({q}) = {v} on a ring of {}", t.len),
                "the tail indexes the ring configured with CONFIG_VSI_QUEUES",
            );
            return;
        }
        t.tail = v;
        self.transmit(ctx, q);
    }

    fn write_rx_tail(&mut self, ctx: &mut Ctx<'_>, q: usize, v: u32) {
        let r = &mut self.rx[q];
        if r.enabled && v >= r.len as u32 {
            ctx.log.log(
                format!("QRX_TAIL({q}) = {v} on a ring of {}", r.len),
                "the tail indexes the ring configured with CONFIG_VSI_QUEUES",
            );
            return;
        }
        // Written before CONFIG_VSI_QUEUES/ENABLE_QUEUES by Linux
        // (iavf_configure allocates Rx buffers first): kept for the start.
        r.tail = v;
    }
}

/// Shortest transmit frame.
const MIN_TX_FRAME_LEN: usize = queues::MIN_TX_FRAME;

impl Model for Iavf {
    fn spec(&self) -> FunctionSpec {
        FunctionSpec {
            vendor: VENDOR_INTEL,
            device: self.cfg.device_id,
            class: (0x02, 0x00, 0x00),
            revision: 1,
            bars: vec![
                BarSpec {
                    index: 0,
                    size: BAR0_SIZE,
                    is_64: true,
                },
                BarSpec {
                    index: 3,
                    size: BAR3_SIZE,
                    is_64: true,
                },
            ],
            msix_vectors: self.vectors(),
            msix_bar: 3,
            msix_table: 0,
            msix_pba: MSIX_PBA,
        }
    }

    fn bar_read(&mut self, ctx: &mut Ctx<'_>, bar: u8, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if bar != 0 {
            return; // BAR 3: QEMU serves the MSI-X table and PBA itself.
        }
        if data.len() != 4 || offset % 4 != 0 {
            ctx.log.log(
                format!("BAR 0 read of {} bytes at {offset:#x}", data.len()),
                "AVF registers are 32-bit and read with aligned 32-bit accesses (rd32)",
            );
            return;
        }
        let v = self.read_reg(offset);
        data.copy_from_slice(&v.to_le_bytes());
    }

    fn bar_write(&mut self, ctx: &mut Ctx<'_>, bar: u8, offset: u64, data: &[u8]) {
        if bar != 0 {
            return;
        }
        let Ok(b) = <[u8; 4]>::try_from(data) else {
            ctx.log.log(
                format!("BAR 0 write of {} bytes at {offset:#x}", data.len()),
                "AVF registers are 32-bit and written with aligned 32-bit accesses (wr32)",
            );
            return;
        };
        if offset % 4 != 0 {
            ctx.log.log(
                format!("BAR 0 write at {offset:#x}"),
                "unaligned register access (registers are 32-bit aligned)",
            );
            return;
        }
        self.write_reg(ctx, offset, u32::from_le_bytes(b));
    }

    fn reset(&mut self) {
        // FLR: the VF is reset and the PF (on VFLR) cleans up; the
        // negotiated version stays with the PF.
        self.vf_reset();
    }

    fn frame_in(&mut self, ctx: &mut Ctx<'_>, frame: &[u8]) -> bool {
        self.receive(ctx, frame)
    }

    fn link_changed(&mut self, ctx: &mut Ctx<'_>, up: bool) {
        if self.pf.active && up != self.link_up_seen {
            self.link_up_seen = up;
            let m = self.pf.link_event(up);
            self.post(ctx, m, false);
        }
    }

    fn pf_event(&mut self, ctx: &mut Ctx<'_>, event: &str) -> Result<(), String> {
        match event {
            "reset" => {
                self.pf_initiated_reset(ctx);
                Ok(())
            }
            // `ip link set PF vf N spoofchk on|off` at run time.
            "spoofchk-on" | "spoofchk-off" => {
                self.cfg.spoofchk = event == "spoofchk-on";
                Ok(())
            }
            // `ip link set PF vf N trust on|off` at run time.
            "trust-on" | "trust-off" => {
                self.cfg.trusted = event == "trust-on";
                self.pf.set_trusted(self.cfg.trusted);
                Ok(())
            }
            _ => Err(format!(
                "iavf knows the PF events reset, spoofchk-on, spoofchk-off, trust-on, trust-off; not {event:?}"
            )),
        }
    }

    fn counters(&self) -> Vec<(String, u64)> {
        let n = &self.n;
        let mut c: Vec<(String, u64)> = vec![
            ("rx_frames".into(), n.rx_frames),
            ("tx_frames".into(), n.tx_frames),
            ("rx_drop_filtered_address".into(), n.rx_drop_filter_mac),
            ("rx_drop_filtered_vlan".into(), n.rx_drop_filter_vlan),
            ("rx_drop_runt".into(), n.rx_drop_runt),
            ("rx_drop_queue_disabled".into(), n.rx_drop_queue_off),
            ("rx_drop_no_descriptor".into(), n.rx_drop_no_desc),
            ("rx_drop_too_long".into(), n.rx_drop_oversize),
            ("rx_drop_dma".into(), n.rx_drop_dma),
            ("tx_drop_spoofed".into(), n.tx_drop_spoof),
            ("tx_drop_malformed".into(), n.tx_drop_malformed),
            ("vc_errors".into(), n.vc_errors),
            ("vf_resets".into(), n.vf_resets),
            ("pf_resets".into(), n.pf_resets),
            ("irq_fired".into(), n.irq_fired),
            ("arq_dropped".into(), n.arq_dropped),
            ("atq_tail_while_disabled".into(), n.atq_tail_while_disabled),
            ("arq_backlog".into(), self.aq.backlog() as u64),
        ];
        for (q, v) in n
            .rx_queue_frames
            .iter()
            .enumerate()
            .take(self.cfg.queues as usize)
        {
            c.push((format!("rx_q{q}_frames"), *v));
        }
        for (opc, &cnt) in n.vc_msgs.iter().enumerate() {
            if cnt > 0 {
                let name = match op::name(opc as u32) {
                    "other" => format!("vc_op_{opc}"),
                    s => format!("vc_{s}"),
                };
                c.push((name, cnt));
            }
        }
        c
    }
}
