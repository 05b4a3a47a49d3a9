//! [`Ctl`]: the VF's control plane over any register access — VF reset
//! handling, the admin queue, the virtchnl conversations, and what the PF
//! must be told again after every reset. [`crate::IavfVf`] runs it over its
//! BAR; tests run it over `testing::SimPf` (feature `testing`).
//!
//! Every wait has a deadline: a reset within `reset_timeout`, a message
//! within `aq_timeout`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use pollux_core::{LinkStatus, MacAddr};
use pollux_vfio::pci::PciAddr;

use crate::adminq::AdminQueue;
use crate::error::IavfError;
use crate::proto::{
    self, AddrType, Answer, BringUp, EthStats, PfEvent, PfMessage, QueuePairInfo, Request, Step,
    Transaction, VcError, VectorMap, VersionInfo, VfResources,
};
use crate::regs::{self, Regs};
use crate::stats::VfStats;

/// How long to sleep between polls of the receive queue and VFGEN_RSTAT.
const POLL: Duration = Duration::from_micros(50);
/// ITR interval for write-back on vector 0 when WB_ON_ITR is not granted:
/// DPDK's IAVF_QUEUE_ITR_INTERVAL_DEFAULT (32 us) in 2 us units.
const ITR_INTERVAL_DEFAULT: u32 = 32 / 2;
/// WB_ON_ITR interval: DPDK writes 2 (4 us) "to make sure that we leave
/// time for aggregation to occur, but don't increase latency dramatically".
const ITR_INTERVAL_WB_ON_ITR: u32 = 2;

/// How the control plane waits and what it asks for.
#[derive(Clone, Debug)]
pub struct CtlOpts {
    /// How long one virtchnl request may take.
    pub aq_timeout: Duration,
    /// How long a VF reset may take (VFGEN_RSTAT).
    pub reset_timeout: Duration,
    /// The capability word for GET_VF_RESOURCES.
    pub caps: u32,
    /// MAC to use when the PF assigned none; `None`: derived from the PCI
    /// address.
    pub mac: Option<MacAddr>,
}

impl Default for CtlOpts {
    fn default() -> Self {
        CtlOpts {
            aq_timeout: Duration::from_secs(2),
            reset_timeout: Duration::from_secs(5),
            caps: proto::DRIVER_CAPS,
            mac: None,
        }
    }
}

/// The MAC used when neither the PF nor the caller gives one: locally
/// administered, unicast, `02:41:` + domain low byte, bus, device, function.
pub fn default_mac(addr: PciAddr) -> MacAddr {
    MacAddr([
        0x02,
        0x41,
        addr.domain() as u8,
        addr.bus(),
        addr.device(),
        addr.function(),
    ])
}

/// The control plane of one VF.
#[derive(Debug)]
pub struct Ctl {
    addr: PciAddr,
    aq: AdminQueue,
    opts: CtlOpts,
    version: Option<VersionInfo>,
    res: Option<VfResources>,
    mac: MacAddr,
    user_mac: bool,
    mc: Vec<MacAddr>,
    vlans: BTreeSet<u16>,
    promisc: bool,
    allmulti: bool,
    vlan_strip: Option<bool>,
    link: LinkStatus,
    /// The PF announced, or the driver noticed, a reset of this VF: the
    /// admin queue and everything configured through it are gone until
    /// re-initialised.
    pub reset_pending: bool,
    /// PF counters, sampled with GET_STATS.
    pub stats: VfStats,
    /// Events seen, replies discarded as stale.
    pub events: u64,
    pub stale: u64,
    buf: Vec<u8>,
}

impl Ctl {
    /// A control plane that has not talked to the PF yet.
    pub fn new(addr: PciAddr, aq: AdminQueue, opts: CtlOpts) -> Ctl {
        Ctl {
            addr,
            aq,
            mac: opts.mac.unwrap_or_else(|| default_mac(addr)),
            user_mac: opts.mac.is_some(),
            opts,
            version: None,
            res: None,
            mc: Vec::new(),
            vlans: BTreeSet::new(),
            promisc: false,
            allmulti: false,
            vlan_strip: None,
            link: LinkStatus::DOWN,
            reset_pending: true,
            stats: VfStats::default(),
            events: 0,
            stale: 0,
            buf: Vec::with_capacity(regs::AQ_BUF_SIZE),
        }
    }

    pub fn addr(&self) -> PciAddr {
        self.addr
    }
    /// What GET_VF_RESOURCES gave, once initialised.
    pub fn resources(&self) -> Option<&VfResources> {
        self.res.as_ref()
    }
    pub fn version(&self) -> Option<VersionInfo> {
        self.version
    }
    pub fn caps(&self) -> u32 {
        self.res.map(|r| r.caps).unwrap_or(0)
    }
    pub fn has(&self, cap: u32) -> bool {
        self.caps() & cap == cap
    }
    pub fn mac(&self) -> MacAddr {
        self.mac
    }
    pub fn admin_queue(&self) -> &AdminQueue {
        &self.aq
    }
    pub fn vsi(&self) -> u16 {
        self.res.map(|r| r.vsi_id).unwrap_or(0)
    }
    pub fn promisc(&self) -> (bool, bool) {
        (self.promisc, self.allmulti)
    }
    pub fn vlans(&self) -> &BTreeSet<u16> {
        &self.vlans
    }

    /// The link as the last LINK_CHANGE said; down while a reset is
    /// pending.
    pub fn link(&self) -> LinkStatus {
        if self.reset_pending {
            LinkStatus::DOWN
        } else {
            self.link
        }
    }

    fn err(&self, error: VcError, hint: &'static str) -> IavfError {
        IavfError::Virtchnl {
            addr: self.addr,
            error,
            hint,
        }
    }

    // ---- reset ----

    /// Whether a reset of the VF has begun or is under way: the admin queue
    /// was disabled under us (ARQLEN.ENABLE clear), or VFGEN_RSTAT says
    /// neither COMPLETED nor VFACTIVE.
    pub fn reset_seen(&self, r: &impl Regs) -> bool {
        !AdminQueue::enabled(r) || !regs::rstat_done(r.read32(regs::VFGEN_RSTAT))
    }

    /// Waits (at most `timeout`) until VFGEN_RSTAT says COMPLETED or
    /// VFACTIVE.
    pub fn wait_reset_done(&self, r: &impl Regs, timeout: Duration) -> Result<(), IavfError> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = r.read32(regs::VFGEN_RSTAT);
            if regs::rstat_done(v) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(IavfError::PfNotReady {
                    addr: self.addr,
                    ms: timeout.as_millis() as u64,
                    rstat: v,
                });
            }
            std::thread::sleep(POLL.max(Duration::from_micros(200)));
        }
    }

    /// Asks the PF to reset this VF (RESET_VF, which it never answers).
    /// VFGEN_RSTAT is set to INPROGRESS first so the old COMPLETED state is
    /// not mistaken for the new reset's end (FreeBSD iavf_request_reset).
    pub fn request_reset(&mut self, r: &impl Regs) {
        r.write32(regs::VFGEN_RSTAT, regs::VFR_INPROGRESS);
        let deadline = Instant::now() + self.opts.aq_timeout;
        let ms = self.opts.aq_timeout.as_millis() as u64;
        if let Err(e) = self.aq.send(r, proto::OP_RESET_VF, &[], deadline, ms) {
            // A wedged send queue (the firmware never took a message):
            // program it anew and try once more.
            tracing::debug!(vf = %self.addr, error = %e, "RESET_VF not sent; admin queue re-initialised");
            self.aq.shutdown(r);
            let again = self.aq.init(r).and_then(|()| {
                let deadline = Instant::now() + self.opts.aq_timeout;
                self.aq.send(r, proto::OP_RESET_VF, &[], deadline, ms)
            });
            if let Err(e) = again {
                tracing::warn!(vf = %self.addr, error = %e, "RESET_VF not sent");
            }
        }
        self.reset_pending = true;
        self.link = LinkStatus::DOWN;
    }

    /// Admin queue up and the bring-up conversation (VERSION,
    /// GET_VF_RESOURCES) once VFGEN_RSTAT says the reset is done.
    /// `reset_wait`: how long to wait for that.
    pub fn init(&mut self, r: &impl Regs, reset_wait: Duration) -> Result<(), IavfError> {
        self.wait_reset_done(r, reset_wait)?;
        self.aq.shutdown(r);
        self.aq.init(r).map_err(|e| self.err(e, ""))?;
        self.reset_pending = false;
        self.link = LinkStatus::DOWN;
        let mut b = BringUp::new(self.opts.caps);
        while let Some(req) = b.next_request() {
            let res = self.exchange(r, &req, |m| b.on_message(m));
            match res {
                Ok(()) => {}
                Err(VcError::Timeout { stage, ms, .. }) => {
                    let e = b.on_timeout(stage, ms);
                    return Err(self.err(e, ""));
                }
                Err(e) => {
                    if e.needs_reset() || self.reset_seen(r) {
                        self.reset_pending = true;
                    }
                    return Err(self.err(e, ""));
                }
            }
        }
        for ev in b.events().to_vec() {
            self.note(ev);
        }
        let o = b.outcome().ok_or_else(|| self.err(VcError::Finished, ""))?;
        if o.version.minor < proto::VERSION_MINOR {
            tracing::warn!(vf = %self.addr, "the PF speaks virtchnl 1.0: no capability negotiation");
        }
        self.version = Some(o.version);
        self.res = Some(o.res);
        if !self.user_mac {
            if let Some(m) = o.res.mac {
                self.mac = MacAddr(m);
            }
        }
        self.stats.rebaseline();
        tracing::debug!(vf = %self.addr, caps = format_args!("{:#x}", o.res.caps),
            queues = o.res.num_queue_pairs, vsi = o.res.vsi_id, "PF agreed");
        Ok(())
    }

    /// RESET_VF, the wait for it, and [`Ctl::init`]: a clean VF.
    pub fn reset_vf(&mut self, r: &impl Regs) -> Result<(), IavfError> {
        self.request_reset(r);
        self.init(r, self.opts.reset_timeout)
    }

    // ---- messages ----

    fn note(&mut self, ev: PfEvent) {
        self.events += 1;
        match ev {
            PfEvent::LinkChange(l) => {
                self.link = if l.up {
                    LinkStatus::up(l.speed_mbps)
                } else {
                    LinkStatus::DOWN
                };
                tracing::debug!(vf = %self.addr, link = %self.link, "link change");
            }
            PfEvent::ResetImpending => {
                if !self.reset_pending {
                    tracing::warn!(vf = %self.addr, "the PF announced a reset of this VF");
                }
                self.reset_pending = true;
            }
            PfEvent::PfDriverClose => {
                tracing::warn!(vf = %self.addr, "the PF driver is closing");
                self.reset_pending = true;
            }
            PfEvent::Unknown(c) => tracing::debug!(vf = %self.addr, code = c, "unknown PF event"),
            PfEvent::Malformed { len } => {
                tracing::debug!(vf = %self.addr, len, "malformed PF event")
            }
        }
    }

    /// Handles whatever the PF sent unasked: events are noted, replies to
    /// nothing we wait for are dropped. Notices a reset that disabled the
    /// admin queue.
    pub fn drain(&mut self, r: &impl Regs) {
        if !AdminQueue::enabled(r) {
            if !self.reset_pending {
                tracing::warn!(vf = %self.addr, "admin queue disabled: VF reset");
            }
            self.reset_pending = true;
            return;
        }
        let adv = self.has(proto::CAP_ADV_LINK_SPEED);
        for _ in 0..regs::AQ_LEN {
            let mut buf = std::mem::take(&mut self.buf);
            let got = self.aq.receive(r, &mut buf);
            let ev = match &got {
                Ok(Some(d)) => match PfMessage::from_arq(d, &buf) {
                    Ok(m) if m.opcode == proto::OP_EVENT => Some(PfEvent::parse(m.payload, adv)),
                    Ok(m) => {
                        self.stale += 1;
                        tracing::debug!(vf = %self.addr, op = proto::op_name(m.opcode), "stale PF reply dropped");
                        None
                    }
                    Err(e) => {
                        tracing::debug!(vf = %self.addr, error = %e, "bad receive element dropped");
                        None
                    }
                },
                Ok(None) => {
                    self.buf = buf;
                    break;
                }
                Err(e) => {
                    tracing::debug!(vf = %self.addr, error = %e, "receive queue");
                    self.buf = buf;
                    break;
                }
            };
            self.buf = buf;
            if let Some(ev) = ev {
                self.note(ev);
            }
        }
    }

    /// Sends `req` and feeds PF messages to `on_message` until it takes a
    /// reply, all within one deadline. Events it passes back are noted.
    fn exchange(
        &mut self,
        r: &impl Regs,
        req: &Request,
        mut on_message: impl FnMut(&PfMessage<'_>) -> Result<Step, VcError>,
    ) -> Result<(), VcError> {
        self.drain(r);
        if self.reset_pending {
            return Err(VcError::ResetImpending { op: req.name() });
        }
        let ms = self.opts.aq_timeout.as_millis() as u64;
        let deadline = Instant::now() + self.opts.aq_timeout;
        self.aq.send(r, req.opcode(), &req.encode(), deadline, ms)?;
        if !req.expects_reply() {
            return Ok(());
        }
        let mut buf = std::mem::take(&mut self.buf);
        let res = loop {
            match self.aq.receive(r, &mut buf) {
                Ok(Some(d)) => {
                    let step = PfMessage::from_arq(&d, &buf).and_then(|m| on_message(&m));
                    match step {
                        Ok(Step::Reply(_)) => break Ok(()),
                        Ok(Step::Event(ev)) => self.note(ev),
                        Err(e) => break Err(e),
                    }
                }
                Ok(None) => {
                    if Instant::now() >= deadline {
                        break Err(VcError::Timeout {
                            op: req.name(),
                            stage: "waiting for the PF's reply",
                            ms,
                        });
                    }
                    std::thread::sleep(POLL);
                }
                Err(e) => break Err(e),
            }
        };
        self.buf = buf;
        res
    }

    /// One request after bring-up.
    pub fn request(
        &mut self,
        r: &impl Regs,
        req: Request,
        hint: &'static str,
    ) -> Result<Answer, IavfError> {
        let mut t = Transaction::new(req.clone(), self.caps()).map_err(|e| self.err(e, hint))?;
        let mut answer = None;
        let res = self.exchange(r, &req, |m| {
            let s = t.on_message(m)?;
            if let Step::Reply(a) = &s {
                answer = Some(a.clone());
            }
            Ok(s)
        });
        match res {
            Ok(()) => Ok(answer.unwrap_or(Answer::Ack)),
            Err(e) => {
                if e.needs_reset() || matches!(e, VcError::AdminQueue { .. }) && self.reset_seen(r)
                {
                    self.reset_pending = true;
                }
                Err(self.err(e, hint))
            }
        }
    }

    // ---- configuration ----

    /// CONFIG_VSI_QUEUES for every pair.
    pub fn config_queues(
        &mut self,
        r: &impl Regs,
        pairs: Vec<QueuePairInfo>,
    ) -> Result<(), IavfError> {
        let vsi = self.vsi();
        self.request(
            r,
            Request::ConfigVsiQueues { vsi, pairs },
            "; ring lengths must be multiples of 32 and frames at most the PF's max MTU",
        )?;
        Ok(())
    }

    /// CONFIG_IRQ_MAP: every queue to one vector, as DPDK does without rx
    /// interrupts (iavf_config_rx_queues_irqs): vector 1 with write-back on
    /// ITR when granted, else vector 0 with its interrupt (never delivered:
    /// MSI-X stays off) armed so the ITR writes descriptors back.
    pub fn map_queues(&mut self, r: &impl Regs, nrx: u16, ntx: u16) -> Result<(), IavfError> {
        let wb_on_itr =
            self.has(proto::CAP_WB_ON_ITR) && self.res.map(|x| x.max_vectors >= 2).unwrap_or(false);
        let vector = if wb_on_itr {
            r.write32(
                regs::vfint_dyn_ctln1(0),
                regs::DYN_CTLN_WB_ON_ITR | ITR_INTERVAL_WB_ON_ITR << regs::DYN_CTL_INTERVAL_SHIFT,
            );
            1
        } else {
            r.write32(
                regs::VFINT_DYN_CTL01,
                regs::DYN_CTL_INTENA | ITR_INTERVAL_DEFAULT << regs::DYN_CTL_INTERVAL_SHIFT,
            );
            0
        };
        let mask = |n: u16| ((1u32 << n) - 1) as u16;
        let vsi = self.vsi();
        self.request(
            r,
            Request::ConfigIrqMap {
                vsi,
                vectors: vec![VectorMap {
                    vector_id: vector,
                    rxq_map: mask(nrx),
                    txq_map: mask(ntx),
                    rxitr_idx: 0,
                    txitr_idx: 1,
                }],
            },
            "",
        )?;
        Ok(())
    }

    pub fn enable_queues(&mut self, r: &impl Regs, rx: u32, tx: u32) -> Result<(), IavfError> {
        let vsi = self.vsi();
        self.request(r, Request::EnableQueues { vsi, rx, tx }, "")?;
        Ok(())
    }

    pub fn disable_queues(&mut self, r: &impl Regs, rx: u32, tx: u32) -> Result<(), IavfError> {
        let vsi = self.vsi();
        self.request(r, Request::DisableQueues { vsi, rx, tx }, "")?;
        Ok(())
    }

    /// RSS over `nrx` queues: key, LUT (entry i is queue i mod nrx), and
    /// every packet type the PF can hash (GET_RSS_HENA_CAPS, SET_RSS_HENA).
    /// Only with RSS_PF; without it the PF's default applies.
    pub fn config_rss(
        &mut self,
        r: &impl Regs,
        nrx: u16,
        key: Option<&[u8]>,
    ) -> Result<(), IavfError> {
        let Some(res) = self.res else { return Ok(()) };
        if !res.has(proto::CAP_RSS_PF) {
            return Ok(());
        }
        let vsi = res.vsi_id;
        let key_src = key.unwrap_or(&DEFAULT_RSS_KEY);
        let key: Vec<u8> = (0..res.rss_key_size as usize)
            .map(|i| key_src[i % key_src.len().max(1)])
            .collect();
        self.request(r, Request::ConfigRssKey { vsi, key }, "")?;
        let n = nrx.max(1) as usize;
        let lut = (0..res.rss_lut_size as usize)
            .map(|i| (i % n) as u8)
            .collect();
        self.request(r, Request::ConfigRssLut { vsi, lut }, "")?;
        if let Answer::Hena(h) = self.request(r, Request::GetRssHenaCaps, "")? {
            self.request(r, Request::SetRssHena(h), "")?;
        }
        Ok(())
    }

    /// VLAN stripping on or off (ENABLE/DISABLE_VLAN_STRIPPING).
    pub fn set_vlan_strip(&mut self, r: &impl Regs, on: bool) -> Result<(), IavfError> {
        if !self.has(proto::CAP_VLAN) {
            if on {
                return Err(self.err(
                    VcError::Unsupported {
                        op: "ENABLE_VLAN_STRIPPING",
                        cap: "VLAN",
                    },
                    "",
                ));
            }
            return Ok(());
        }
        let req = if on {
            Request::EnableVlanStripping
        } else {
            Request::DisableVlanStripping
        };
        self.request(r, req, "")?;
        self.vlan_strip = Some(on);
        Ok(())
    }

    const MAC_HINT: &'static str = "; the administrator set this VF's MAC: change it with \
        `ip link set <pf> vf N mac ...` or allow the VF to with `ip link set <pf> vf N trust on`";

    /// Tells the PF our own address (ADD_ETH_ADDR, primary).
    pub fn add_own_mac(&mut self, r: &impl Regs) -> Result<(), IavfError> {
        let vsi = self.vsi();
        self.request(
            r,
            Request::AddEthAddr {
                vsi,
                addrs: vec![(self.mac.0, AddrType::Primary)],
            },
            Self::MAC_HINT,
        )?;
        Ok(())
    }

    /// Changes the VF's address: the new one added first, the old one
    /// removed once the PF took it.
    pub fn set_mac(&mut self, r: &impl Regs, mac: MacAddr) -> Result<(), IavfError> {
        let vsi = self.vsi();
        let old = self.mac;
        self.request(
            r,
            Request::AddEthAddr {
                vsi,
                addrs: vec![(mac.0, AddrType::Primary)],
            },
            Self::MAC_HINT,
        )?;
        self.mac = mac;
        self.user_mac = true;
        if old != mac {
            if let Err(e) = self.request(
                r,
                Request::DelEthAddr {
                    vsi,
                    addrs: vec![(old.0, AddrType::Primary)],
                },
                "",
            ) {
                tracing::debug!(vf = %self.addr, error = %e, "old MAC not removed");
            }
        }
        Ok(())
    }

    /// Replaces the multicast filters (DEL_ETH_ADDR of the old list,
    /// ADD_ETH_ADDR of the new, as extra addresses).
    pub fn set_multicast(&mut self, r: &impl Regs, addrs: &[MacAddr]) -> Result<(), IavfError> {
        let vsi = self.vsi();
        let extra = |l: &[MacAddr]| l.iter().map(|m| (m.0, AddrType::Extra)).collect::<Vec<_>>();
        if !self.mc.is_empty() {
            let old = extra(&self.mc);
            self.request(r, Request::DelEthAddr { vsi, addrs: old }, "")?;
            self.mc.clear();
        }
        if !addrs.is_empty() {
            for chunk in addrs.chunks(MAX_ADDRS_PER_MSG) {
                self.request(
                    r,
                    Request::AddEthAddr {
                        vsi,
                        addrs: extra(chunk),
                    },
                    "; an untrusted VF gets a limited number of filters",
                )?;
                self.mc.extend_from_slice(chunk);
            }
        }
        Ok(())
    }

    /// Adds or removes a VLAN filter.
    pub fn vlan_filter(&mut self, r: &impl Regs, vid: u16, on: bool) -> Result<(), IavfError> {
        let vid = vid & 0x0FFF;
        let vsi = self.vsi();
        let req = if on {
            Request::AddVlan {
                vsi,
                vids: vec![vid],
            }
        } else {
            Request::DelVlan {
                vsi,
                vids: vec![vid],
            }
        };
        self.request(
            r,
            req,
            "; the PF refuses VLAN changes when it set a port VLAN with `ip link set <pf> vf N vlan`",
        )?;
        if on {
            self.vlans.insert(vid);
        } else {
            self.vlans.remove(&vid);
        }
        Ok(())
    }

    /// Unicast promiscuous and all-multicast (CONFIG_PROMISCUOUS_MODE). An
    /// untrusted VF's request is acknowledged by i40e without effect (it
    /// "lies to the VF on purpose"), which the VF cannot tell.
    pub fn set_promisc(&mut self, r: &impl Regs, uc: bool, mc: bool) -> Result<(), IavfError> {
        let mut flags = 0;
        if uc {
            flags |= proto::FLAG_VF_UNICAST_PROMISC;
        }
        if mc {
            flags |= proto::FLAG_VF_MULTICAST_PROMISC;
        }
        let vsi = self.vsi();
        self.request(
            r,
            Request::ConfigPromisc { vsi, flags },
            "; the PF allows promiscuous modes only to a trusted VF (`ip link set <pf> vf N trust on`)",
        )?;
        self.promisc = uc;
        self.allmulti = mc;
        Ok(())
    }

    /// GET_STATS, folded into the wrap-safe totals.
    pub fn sample_stats(&mut self, r: &impl Regs) -> Result<EthStats, IavfError> {
        let vsi = self.vsi();
        match self.request(r, Request::GetStats { vsi }, "")? {
            Answer::Stats(s) => {
                self.stats.update(&s);
                Ok(s)
            }
            _ => Err(self.err(VcError::Finished, "")),
        }
    }

    /// REQUEST_QUEUES for `n` pairs. Granted, the PF resets the VF: this
    /// waits for that reset and initialises again, and the resources then
    /// tell how many pairs the VF has.
    pub fn request_queues(&mut self, r: &impl Regs, n: u16) -> Result<u16, IavfError> {
        let res = self.request(r, Request::RequestQueues(n), "");
        match res {
            Ok(Answer::QueuesOffered(offered)) if offered < n => Err(IavfError::QueuesRefused {
                addr: self.addr,
                asked: n,
                offered,
            }),
            Ok(_) => self.after_granted(r),
            // No answer: a granted request whose reset notice was lost, if
            // the reset shows.
            Err(IavfError::Virtchnl {
                error: VcError::Timeout { .. },
                ..
            }) if self.reset_seen(r) => self.after_granted(r),
            Err(e) => Err(e),
        }
    }

    fn after_granted(&mut self, r: &impl Regs) -> Result<u16, IavfError> {
        self.reset_pending = true;
        // The reset first has to begin, then end.
        let deadline = Instant::now() + self.opts.reset_timeout;
        while !self.reset_seen(r) {
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        self.init(r, self.opts.reset_timeout)?;
        Ok(self.res.map(|x| x.num_queue_pairs).unwrap_or(1))
    }

    /// Everything the PF forgets at a VF reset: our MAC, multicast and VLAN
    /// filters, promiscuous modes, VLAN stripping.
    pub fn restore_filters(&mut self, r: &impl Regs) -> Result<(), IavfError> {
        self.add_own_mac(r)?;
        let mc = std::mem::take(&mut self.mc);
        self.set_multicast(r, &mc)?;
        for vid in self.vlans.clone() {
            self.vlan_filter(r, vid, true)?;
        }
        if self.promisc || self.allmulti {
            let (uc, mc) = (self.promisc, self.allmulti);
            self.set_promisc(r, uc, mc)?;
        }
        if let Some(on) = self.vlan_strip {
            self.set_vlan_strip(r, on)?;
        }
        Ok(())
    }
}

/// Addresses per ADD_ETH_ADDR (Linux iavf_add_ether_addrs splits lists to
/// fit IAVF_MAX_AQ_BUF_SIZE; 100 keeps well inside one buffer).
const MAX_ADDRS_PER_MSG: usize = 100;

/// The default RSS key: Microsoft's 40-byte "Verifying the RSS Hash
/// Calculation" key, repeated over the PF's key size (52 bytes on i40e and
/// ice).
pub const DEFAULT_RSS_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// The control plane against the software PF, through the admin queue
/// registers and DMA memory.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{LinkInfo, OP_ADD_VLAN, OP_GET_STATS, OP_GET_VF_RESOURCES};
    use crate::testing::{Fault, PfSetup, SimMemory, SimPf};

    fn setup(s: PfSetup) -> (SimPf, Ctl) {
        let mem = SimMemory::new(1 << 20);
        let pf = SimPf::new(s, &mem);
        let aq = AdminQueue::new(&mem).unwrap();
        let opts = CtlOpts {
            aq_timeout: Duration::from_millis(50),
            reset_timeout: Duration::from_millis(50),
            ..CtlOpts::default()
        };
        let ctl = Ctl::new("0000:18:02.0".parse().unwrap(), aq, opts);
        (pf, ctl)
    }

    fn up(s: PfSetup) -> (SimPf, Ctl) {
        let (pf, mut c) = setup(s);
        c.init(&pf, Duration::from_millis(50)).unwrap();
        (pf, c)
    }

    fn clean(pf: &SimPf) {
        let v = &pf.st.borrow().violations;
        assert!(v.is_empty(), "PF saw violations: {v:?}");
    }

    fn ops(pf: &SimPf) -> Vec<u32> {
        pf.st.borrow().log.iter().map(|(o, _)| *o).collect()
    }

    #[test]
    fn bring_up_reset_and_start_as_the_pf_expects() {
        let (pf, mut c) = up(PfSetup::default());
        assert_eq!(ops(&pf), [proto::OP_VERSION, OP_GET_VF_RESOURCES]);
        let r = *c.resources().unwrap();
        assert_eq!(r.caps, proto::DRIVER_CAPS);
        assert_eq!((r.vsi_id, r.num_queue_pairs), (3, 4));
        assert_eq!(c.mac(), default_mac("0000:18:02.0".parse().unwrap()));
        // A reset of our own, then everything again.
        c.reset_vf(&pf).unwrap();
        assert_eq!(pf.st.borrow().resets, 1);
        assert!(!c.reset_pending);
        c.restore_filters(&pf).unwrap();
        assert_eq!(
            pf.st.borrow().macs,
            vec![(c.mac().0, AddrType::Primary as u8)]
        );
        // Start: queues, IRQ map, RSS, stripping, enable.
        let pairs = (0..2)
            .map(|q| QueuePairInfo {
                queue_id: q,
                tx_ring_len: 512,
                tx_ring_iova: 0x10_0000,
                rx_ring_len: 512,
                rx_ring_iova: 0x20_0000,
                rx_buf_size: 2048,
                max_pkt_size: 1518,
            })
            .collect();
        c.config_queues(&pf, pairs).unwrap();
        c.map_queues(&pf, 2, 2).unwrap();
        c.config_rss(&pf, 2, None).unwrap();
        c.set_vlan_strip(&pf, true).unwrap();
        c.enable_queues(&pf, 0b11, 0b11).unwrap();
        {
            let st = pf.st.borrow();
            assert_eq!(st.queues.len(), 2);
            assert_eq!(st.irq_map, vec![(1, 0b11, 0b11)], "vector 1 with WB_ON_ITR");
            assert_eq!(st.rss_key.len(), 52);
            assert_eq!(&st.rss_key[..4], &DEFAULT_RSS_KEY[..4]);
            assert_eq!(st.rss_lut.len(), 64);
            assert!(st.rss_lut.chunks(2).all(|p| p == [0, 1]));
            assert_ne!(st.hena, 0);
            assert_eq!(st.vlan_strip, Some(true));
            assert_eq!(st.enabled, (0b11, 0b11));
        }
        assert_ne!(
            pf.read32(regs::vfint_dyn_ctln1(0)) & regs::DYN_CTLN_WB_ON_ITR,
            0
        );
        // The link comes as an event after ENABLE_QUEUES.
        assert_eq!(c.link(), LinkStatus::DOWN);
        c.drain(&pf);
        assert_eq!(c.link(), LinkStatus::up(25_000));
        c.disable_queues(&pf, 0b11, 0b11).unwrap();
        assert_eq!(pf.st.borrow().enabled, (0, 0));
        clean(&pf);
    }

    #[test]
    fn a_subset_of_caps_is_taken_as_granted() {
        let (pf, mut c) = up(PfSetup {
            caps: proto::CAP_L2 | proto::CAP_VLAN,
            link: LinkInfo {
                up: true,
                speed_mbps: 10_000,
            },
            ..PfSetup::default()
        });
        assert_eq!(c.caps(), proto::CAP_L2 | proto::CAP_VLAN);
        c.restore_filters(&pf).unwrap();
        c.config_rss(&pf, 4, None).unwrap();
        assert!(!ops(&pf).contains(&proto::OP_CONFIG_RSS_KEY), "no RSS_PF");
        c.map_queues(&pf, 1, 1).unwrap();
        assert_eq!(
            pf.st.borrow().irq_map,
            vec![(0, 1, 1)],
            "vector 0 without WB_ON_ITR"
        );
        assert_ne!(pf.read32(regs::VFINT_DYN_CTL01) & regs::DYN_CTL_INTENA, 0);
        let e = c.request_queues(&pf, 8).unwrap_err();
        assert!(e.to_string().contains("REQ_QUEUES"), "{e}");
        c.enable_queues(&pf, 1, 1).unwrap();
        c.drain(&pf);
        assert_eq!(c.link(), LinkStatus::up(10_000), "the legacy speed enum");
        clean(&pf);
    }

    #[test]
    fn a_1_0_pf_and_a_newer_one() {
        let (pf, c) = up(PfSetup {
            version: (1, 0),
            ..PfSetup::default()
        });
        assert_eq!(c.version(), Some(VersionInfo { major: 1, minor: 0 }));
        assert!(pf.st.borrow().log[1].1.is_empty(), "no capability word");
        clean(&pf);
        let (pf, mut c) = setup(PfSetup {
            version: (2, 0),
            ..PfSetup::default()
        });
        let e = c.init(&pf, Duration::from_millis(50)).unwrap_err();
        assert!(
            matches!(
                e.virtchnl(),
                Some(VcError::VersionMismatch { major: 2, .. })
            ),
            "{e}"
        );
    }

    #[test]
    fn pf_errors_timeouts_and_garbage_are_typed_errors() {
        let (pf, mut c) = up(PfSetup {
            port_vlan: true,
            ..PfSetup::default()
        });
        let e = c.vlan_filter(&pf, 5, true).unwrap_err();
        assert!(matches!(e.virtchnl(), Some(VcError::PfError { .. })), "{e}");
        assert!(e.to_string().contains("port VLAN"), "{e}");
        let faults = [
            (Fault::Silent, "timeout"),
            (Fault::Payload(vec![1, 2, 3]), "truncated"),
            (Fault::WrongOpcode(OP_ADD_VLAN), "out of order"),
            (Fault::Status(proto::STATUS_ERR_NOT_SUPPORTED), "pf error"),
        ];
        for (f, what) in faults {
            pf.st.borrow_mut().faults.push((OP_GET_STATS, f));
            let t = Instant::now();
            let e = c.sample_stats(&pf).unwrap_err();
            let v = e.virtchnl().cloned().unwrap();
            let ok = match what {
                "timeout" => matches!(v, VcError::Timeout { ms: 50, .. }),
                "truncated" => matches!(
                    v,
                    VcError::Truncated {
                        need: 96,
                        got: 3,
                        ..
                    }
                ),
                "out of order" => matches!(
                    v,
                    VcError::OutOfOrder {
                        got: OP_ADD_VLAN,
                        ..
                    }
                ),
                _ => matches!(v, VcError::PfError { status: -64, .. }),
            };
            assert!(ok, "{what}: {e}");
            assert!(t.elapsed() < Duration::from_secs(2), "bounded");
            // The channel works again afterwards.
            c.sample_stats(&pf).unwrap();
        }
        // A PF that never takes the message: ATQH stays; only a reset
        // brings the admin queue back.
        pf.st.borrow_mut().faults.push((OP_GET_STATS, Fault::Deaf));
        let e = c.sample_stats(&pf).unwrap_err();
        assert!(matches!(e.virtchnl(), Some(VcError::Timeout { .. })), "{e}");
        assert!(c.sample_stats(&pf).is_err(), "the queue is wedged");
        c.reset_vf(&pf).unwrap();
        c.sample_stats(&pf).unwrap();
        clean(&pf);
    }

    #[test]
    fn events_and_stale_replies_interleave_with_replies() {
        let (pf, mut c) = up(PfSetup::default());
        let l = PfEvent::LinkChange(LinkInfo {
            up: true,
            speed_mbps: 40_000,
        });
        pf.st
            .borrow_mut()
            .faults
            .push((OP_GET_STATS, Fault::EventFirst(l)));
        pf.st.borrow_mut().stats.rx_unicast = 7;
        c.sample_stats(&pf).unwrap();
        assert_eq!(c.link(), LinkStatus::up(40_000));
        // A late reply to something else, and garbage events, are drained
        // before the next request.
        pf.send_raw(OP_ADD_VLAN, 0, &[]);
        pf.send_raw(proto::OP_EVENT, 0, &[1, 2]);
        pf.event(PfEvent::Unknown(77));
        pf.st.borrow_mut().stats.rx_unicast = 10;
        c.sample_stats(&pf).unwrap();
        assert_eq!(c.stale, 1);
        assert_eq!(c.stats.rx_unicast.total(), 3);
        // Link down.
        pf.event(PfEvent::LinkChange(LinkInfo {
            up: false,
            speed_mbps: 0,
        }));
        c.drain(&pf);
        assert!(!c.link().up);
        clean(&pf);
    }

    #[test]
    fn reset_impending_mid_bring_up_and_a_reset_under_us() {
        let (pf, mut c) = setup(PfSetup {
            reset_completes: false,
            ..PfSetup::default()
        });
        pf.st
            .borrow_mut()
            .faults
            .push((OP_GET_VF_RESOURCES, Fault::ResetInstead));
        let e = c.init(&pf, Duration::from_millis(50)).unwrap_err();
        assert!(e.virtchnl().is_some_and(|v| v.needs_reset()), "{e}");
        assert!(c.reset_pending);
        assert_eq!(c.link(), LinkStatus::DOWN);
        assert!(c.reset_seen(&pf));
        let e = c.init(&pf, Duration::from_millis(20)).unwrap_err();
        assert!(
            matches!(
                e,
                IavfError::PfNotReady {
                    ms: 20,
                    rstat: 0,
                    ..
                }
            ),
            "{e}"
        );
        pf.complete_reset();
        c.init(&pf, Duration::from_millis(50)).unwrap();
        assert!(!c.reset_pending);
        // A reset the PF does without telling: the disabled admin queue
        // gives it away.
        pf.reset_vf();
        c.drain(&pf);
        assert!(c.reset_pending);
        assert_eq!(c.link(), LinkStatus::DOWN);
        let e = c.sample_stats(&pf).unwrap_err();
        assert!(e.virtchnl().is_some_and(|v| v.needs_reset()), "{e}");
        pf.complete_reset();
        c.init(&pf, Duration::from_millis(50)).unwrap();
        c.sample_stats(&pf).unwrap();
        clean(&pf);
    }

    #[test]
    fn request_queues_granted_by_a_reset_or_refused() {
        let (pf, mut c) = up(PfSetup::default());
        assert_eq!(c.request_queues(&pf, 8).unwrap(), 8);
        assert_eq!(c.resources().unwrap().num_queue_pairs, 8);
        assert_eq!(pf.st.borrow().resets, 1);
        let e = c.request_queues(&pf, 32).unwrap_err();
        assert!(
            matches!(
                e,
                IavfError::QueuesRefused {
                    asked: 32,
                    offered: 16,
                    ..
                }
            ),
            "{e}"
        );
        clean(&pf);
    }

    #[test]
    fn filters_are_sent_and_restored_after_a_reset() {
        let (pf, mut c) = up(PfSetup {
            trusted: true,
            ..PfSetup::default()
        });
        c.restore_filters(&pf).unwrap();
        let mc = [
            MacAddr([1, 0, 0x5e, 0, 0, 1]),
            MacAddr([1, 0, 0x5e, 0, 0, 2]),
        ];
        c.set_multicast(&pf, &mc).unwrap();
        c.vlan_filter(&pf, 100, true).unwrap();
        c.set_promisc(&pf, true, true).unwrap();
        let new = MacAddr([2, 9, 9, 9, 9, 9]);
        c.set_mac(&pf, new).unwrap();
        let snapshot = |pf: &SimPf| {
            let st = pf.st.borrow();
            let mut m = st.macs.clone();
            m.sort();
            (m, st.vlans.clone(), st.promisc_flags)
        };
        let before = snapshot(&pf);
        assert_eq!(before.0.len(), 3, "new primary and two multicast");
        assert_eq!(before.2, 3);
        c.reset_vf(&pf).unwrap();
        assert!(snapshot(&pf).0.is_empty(), "the PF forgot");
        c.restore_filters(&pf).unwrap();
        assert_eq!(snapshot(&pf), before);
        assert_eq!(c.mac(), new, "the chosen MAC survives the reset");
        clean(&pf);
        // An administrator's MAC is kept and ours refused.
        let admin = [2, 0xaa, 0, 0, 0, 1];
        let (pf, mut c) = up(PfSetup {
            admin_mac: Some(admin),
            ..PfSetup::default()
        });
        assert_eq!(c.mac().0, admin);
        let e = c.set_mac(&pf, MacAddr([2, 1, 1, 1, 1, 1])).unwrap_err();
        assert!(e.to_string().contains("trust on"), "{e}");
        assert_eq!(c.mac().0, admin);
        clean(&pf);
    }
}
