//! [`BondPort`]: the I/O shell around the [`Bond`] core. It is itself a
//! [`Port`], so anything that drives a port drives a bond.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pollux_core::{
    Burst, Capabilities, Duplex, LinkStatus, MacAddr, Mbuf, Mempool, Port, PortConf, PortError,
    PortInfo, PortStats, RxOffloads, TxFlags, TxOffloads, Xstat,
};

use crate::bond::{Action, Bond, MemberSpec};
use crate::config::{BondConfig, Mode};
use crate::hash::xmit_hash;
use crate::status::BondStatus;
use crate::wire::{self, SLOW_PROTOCOLS_MAC};
use crate::BondError;

/// Where a [`BondPort`] gets `now` from.
pub trait Clock: Send {
    fn now(&self) -> Instant;
}

/// The monotonic clock ([`Instant::now`]), what a real bond uses.
#[derive(Clone, Copy, Debug, Default)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    #[inline]
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to: tests run LACP's 90-second
/// timeouts in microseconds with it. Clones share the same time.
#[derive(Clone, Debug)]
pub struct ManualClock {
    base: Instant,
    offset_ns: Arc<AtomicU64>,
}

impl ManualClock {
    pub fn new() -> ManualClock {
        ManualClock {
            base: Instant::now(),
            offset_ns: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, d: Duration) {
        self.offset_ns
            .fetch_add(d.as_nanos() as u64, Ordering::SeqCst);
    }

    /// Time since the clock was made.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.offset_ns.load(Ordering::SeqCst))
    }
}

impl Default for ManualClock {
    fn default() -> ManualClock {
        ManualClock::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.base + self.elapsed()
    }
}

/// Most packets routed to members per round of a transmit burst.
const TX_CHUNK: usize = 256;
/// Receive scratch room for members whose frames are not delivered.
const RX_SCRATCH: usize = 64;

/// Counters of the I/O shell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ShellCounters {
    /// Frames received on members that do not deliver (backups,
    /// non-collecting ports) and dropped.
    pub rx_dropped_inactive: u64,
    /// Transmit calls that found no usable member (packets left with the caller).
    pub tx_no_member: u64,
    /// Control frames (LACPDUs, marker responses, announcements) sent.
    pub ctrl_tx: u64,
    /// Control frames that could not be sent (no buffer, member ring full).
    pub ctrl_tx_failed: u64,
    /// Broadcast copies that could not be made (pool empty).
    pub broadcast_copy_failed: u64,
    /// Member control operations that failed after start (set MAC, filters).
    pub member_op_failed: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Applied {
    promiscuous: bool,
    allmulticast: bool,
}

/// A bond of member ports. See the [crate docs](crate) for the contract.
pub struct BondPort {
    name: String,
    cfg: BondConfig,
    core: Bond,
    specs: Vec<MemberSpec>,
    members: Vec<Box<dyn Port>>,
    clock: Box<dyn Clock>,
    pool: Option<Mempool>,
    started: bool,
    next_service: Instant,
    links: Vec<LinkStatus>,
    scratch: Burst<Mbuf>,
    per_member: Vec<Burst<Mbuf>>,
    hold: Vec<Mbuf>,
    rx_next: usize,
    rr: u32,
    promiscuous: bool,
    allmulticast: bool,
    mc_list: Vec<MacAddr>,
    applied: Vec<Applied>,
    counters: ShellCounters,
}

impl std::fmt::Debug for BondPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BondPort")
            .field("name", &self.name)
            .field("mode", &self.cfg.mode)
            .field("members", &self.cfg.members)
            .field("started", &self.started)
            .finish()
    }
}

impl BondPort {
    /// A bond named `name` over `members` (name, port), configured by
    /// `config`. When `config.members` is not empty it must name exactly
    /// the supplied ports; member order (hashing, round-robin, the first
    /// member's MAC as the bond's) is `config.members`' order, or the
    /// supplied order when the configuration names none. Uses the
    /// monotonic clock.
    pub fn new(
        name: impl Into<String>,
        config: BondConfig,
        members: Vec<(String, Box<dyn Port>)>,
    ) -> Result<BondPort, BondError> {
        BondPort::with_clock(name, config, members, Box::new(MonotonicClock))
    }

    /// [`BondPort::new`] with another clock (a [`ManualClock`] in tests).
    pub fn with_clock(
        name: impl Into<String>,
        mut config: BondConfig,
        members: Vec<(String, Box<dyn Port>)>,
        clock: Box<dyn Clock>,
    ) -> Result<BondPort, BondError> {
        if members.is_empty() {
            return Err(BondError::NoMembers);
        }
        for (i, (n, _)) in members.iter().enumerate() {
            if members[..i].iter().any(|(m, _)| m == n) {
                return Err(BondError::DuplicateMember(n.clone()));
            }
        }
        let members = if config.members.is_empty() {
            config.members = members.iter().map(|(n, _)| n.clone()).collect();
            members
        } else {
            let mut given: Vec<Option<(String, Box<dyn Port>)>> =
                members.into_iter().map(Some).collect();
            let mut ordered = Vec::with_capacity(given.len());
            for want in &config.members {
                let slot = given
                    .iter_mut()
                    .find(|g| g.as_ref().is_some_and(|(n, _)| n == want))
                    .ok_or_else(|| BondError::MissingMember(want.clone()))?;
                ordered.extend(slot.take());
            }
            if let Some((extra, _)) = given.into_iter().flatten().next() {
                return Err(BondError::UnexpectedMember(extra));
            }
            ordered
        };
        config.validate()?;
        let specs: Vec<MemberSpec> = members
            .iter()
            .map(|(n, p)| MemberSpec {
                name: n.clone(),
                mac: p.mac_addr(),
            })
            .collect();
        let now = clock.now();
        let core = Bond::new(&config, &specs, now)?;
        let n = members.len();
        Ok(BondPort {
            name: name.into(),
            cfg: config,
            core,
            specs,
            members: members.into_iter().map(|(_, p)| p).collect(),
            clock,
            pool: None,
            started: false,
            next_service: now,
            links: vec![LinkStatus::DOWN; n],
            scratch: Burst::new(RX_SCRATCH),
            per_member: (0..n).map(|_| Burst::new(TX_CHUNK)).collect(),
            hold: Vec::with_capacity(1024),
            rx_next: 0,
            rr: 0,
            promiscuous: false,
            allmulticast: false,
            mc_list: Vec::new(),
            applied: vec![Applied::default(); n],
            counters: ShellCounters::default(),
        })
    }

    /// The bond's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configuration in force.
    pub fn config(&self) -> &BondConfig {
        &self.cfg
    }

    /// State in the shape of /proc/net/bonding/bondN ([`BondStatus`]
    /// implements `Display` for that and `Serialize` for JSON).
    pub fn status(&self) -> BondStatus {
        self.core.status(&self.name)
    }

    /// The protocol core, read-only.
    pub fn core(&self) -> &Bond {
        &self.core
    }

    /// A member port, read-only.
    pub fn member(&self, i: usize) -> Option<&dyn Port> {
        self.members.get(i).map(|p| &**p)
    }

    /// Shell counters.
    pub fn shell_counters(&self) -> ShellCounters {
        self.counters
    }

    /// Runs the bond's periodic work now: link monitoring at `miimon`,
    /// LACP timers and transmissions, failover announcements.
    /// `rx_burst`, `tx_burst` and `link` do this already; call `poll` when
    /// neither is called for a while (at least every 100 ms, or LACP
    /// partners time the bond out).
    pub fn poll(&mut self) {
        let now = self.clock.now();
        self.service_at(now);
    }

    #[inline]
    fn service(&mut self) {
        let now = self.clock.now();
        if now >= self.next_service {
            self.service_at(now);
        }
    }

    fn service_at(&mut self, now: Instant) {
        if !self.started {
            return;
        }
        if self.core.link_check_due(now) {
            for (l, m) in self.links.iter_mut().zip(self.members.iter_mut()) {
                *l = m.link();
            }
            self.core.handle_links(now, &self.links);
        }
        self.core.handle_timeout(now);
        self.run_actions();
        self.next_service = self
            .core
            .poll_timeout()
            .unwrap_or(now + Duration::from_secs(1))
            .max(now);
    }

    /// Carries out what the core asked for. Failures after start cannot be
    /// returned to anyone; they are counted and logged.
    fn run_actions(&mut self) {
        while let Some(a) = self.core.poll_action() {
            if let Err(e) = self.do_action(a) {
                self.counters.member_op_failed += 1;
                tracing::warn!(bond = %self.name, "{e}");
            }
        }
    }

    fn do_action(&mut self, a: Action) -> Result<(), BondError> {
        match a {
            Action::SetMemberMac { member, mac } => {
                self.members[member].set_mac_addr(mac).map_err(|e| {
                    BondError::member(&self.specs[member].name, format!("set MAC {mac}"), e)
                })
            }
            Action::Transmit { member, frame } => {
                self.send_control(member, &frame);
                Ok(())
            }
            Action::ActiveChanged { old, new } => {
                let mut r = Ok(());
                for i in [old, new].into_iter().flatten() {
                    if let Err(e) = self.apply_filters(i) {
                        r = Err(e);
                    }
                }
                r
            }
        }
    }

    fn send_control(&mut self, member: usize, frame: &[u8]) {
        let Some(pool) = &self.pool else { return };
        let Some(mut m) = pool.alloc() else {
            self.counters.ctrl_tx_failed += 1;
            return;
        };
        if !m.copy_from(frame) {
            self.counters.ctrl_tx_failed += 1;
            return;
        }
        let mut b = Burst::new(1);
        let _ = b.push(m);
        if self.members[member].tx_burst(0, &mut b) == 1 {
            self.counters.ctrl_tx += 1;
        } else {
            self.counters.ctrl_tx_failed += 1;
        }
    }

    /// Puts the bond's receive filters on member `i` as the mode wants:
    /// every member, or only the active one in active-backup; plus the
    /// slow-protocols address on every 802.3ad member, falling back to
    /// all-multicast and then promiscuous mode when the member has no
    /// multicast filter.
    fn apply_filters(&mut self, i: usize) -> Result<(), BondError> {
        let lacp = self.cfg.mode == Mode::Ieee8023ad;
        let user = self.cfg.mode != Mode::ActiveBackup || self.core.active() == Some(i);
        let name = self.specs[i].name.clone();
        let mut list = if user {
            self.mc_list.clone()
        } else {
            Vec::new()
        };
        if lacp && !list.contains(&SLOW_PROTOCOLS_MAC) {
            list.push(SLOW_PROTOCOLS_MAC);
        }
        let mut want_allmulti = user && self.allmulticast;
        let mut want_promisc = user && self.promiscuous;
        let port = &mut self.members[i];
        let mut first_err = None;
        if let Err(e) = port.set_mc_addr_list(&list) {
            if lacp {
                want_allmulti = true;
            } else if !list.is_empty() {
                first_err = Some(BondError::member(&name, "set multicast list", e));
            }
        }
        let applied = &mut self.applied[i];
        if want_allmulti != applied.allmulticast {
            match port.set_allmulticast(want_allmulti) {
                Ok(()) => applied.allmulticast = want_allmulti,
                Err(e) if lacp && want_allmulti && !(user && self.allmulticast) => {
                    // Last resort for the slow-protocols address.
                    tracing::info!(member = %name, "no multicast filter or all-multicast ({e}); using promiscuous mode for LACP");
                    want_promisc = true;
                }
                Err(e) => {
                    first_err.get_or_insert(BondError::member(&name, "set all-multicast", e));
                }
            }
        }
        if want_promisc != applied.promiscuous {
            match port.set_promiscuous(want_promisc) {
                Ok(()) => applied.promiscuous = want_promisc,
                Err(e) if lacp && want_promisc && !(user && self.promiscuous) => {
                    return Err(BondError::NoSlowProtocolsRx {
                        member: name,
                        why: e.to_string(),
                    })
                }
                Err(e) => {
                    first_err.get_or_insert(BondError::member(&name, "set promiscuous", e));
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn apply_all_filters(&mut self) -> Result<(), BondError> {
        let mut r = Ok(());
        for i in 0..self.members.len() {
            if let Err(e) = self.apply_filters(i) {
                if matches!(e, BondError::NoSlowProtocolsRx { .. }) {
                    return Err(e);
                }
                r = r.and(Err(e));
            }
        }
        r
    }

    /// The 802.3ad receive path: frames of a member that collects go up,
    /// except slow-protocol frames, which go to LACP.
    #[inline]
    fn rx_lacp_member(&mut self, i: usize, queue: u16, pkts: &mut Burst<Mbuf>) {
        if self.core.rx_enabled(i) {
            let start = pkts.len();
            if self.members[i].rx_burst(queue, pkts) == 0 {
                return;
            }
            if !pkts.as_slice()[start..]
                .iter()
                .any(|m| wire::slow_subtype(m.data()).is_some())
            {
                return;
            }
            // Rare: pull the slow frames out, keeping the order of the rest.
            let now = self.clock.now();
            self.hold.clear();
            self.hold.extend(pkts.drain());
            let mut hold = std::mem::take(&mut self.hold);
            for (k, m) in hold.drain(..).enumerate() {
                if k >= start && wire::slow_subtype(m.data()).is_some() {
                    let _ = self.core.handle_slow_frame(now, i, m.data());
                } else {
                    let _ = pkts.push(m);
                }
            }
            self.hold = hold;
            self.run_actions();
        } else {
            if self.members[i].rx_burst(queue, &mut self.scratch) == 0 {
                return;
            }
            let now = self.clock.now();
            while let Some(m) = self.scratch.pop_front() {
                if wire::slow_subtype(m.data()).is_some() {
                    let _ = self.core.handle_slow_frame(now, i, m.data());
                } else {
                    self.counters.rx_dropped_inactive += 1;
                }
            }
            self.run_actions();
        }
    }

    fn tx_distribute(&mut self, queue: u16, pkts: &mut Burst<Mbuf>) -> usize {
        let cnt = self.core.tx_members().len();
        let policy = self.cfg.xmit_hash_policy;
        let rr = self.cfg.mode == Mode::BalanceRr;
        let mut total = 0;
        loop {
            let n = pkts.len().min(TX_CHUNK);
            if n == 0 {
                break;
            }
            for _ in 0..n {
                let Some(m) = pkts.pop_front() else { break };
                let j = if rr {
                    let j = self.core.tx_index(self.rr);
                    self.rr = self.rr.wrapping_add(1);
                    j
                } else {
                    let t = m.tx();
                    let vlan = t.flags.contains(TxFlags::VLAN_INSERT).then_some(t.vlan_tci);
                    self.core.tx_index(xmit_hash(policy, m.data(), vlan))
                };
                // Room is guaranteed: each burst holds TX_CHUNK >= n.
                let _ = self.per_member[j].push(m);
            }
            let mut unsent = 0;
            for j in 0..cnt {
                if self.per_member[j].is_empty() {
                    continue;
                }
                let member = self.core.tx_members()[j];
                self.members[member].tx_burst(queue, &mut self.per_member[j]);
                unsent += self.per_member[j].len();
                self.hold.extend(self.per_member[j].drain());
            }
            total += n - unsent;
            if unsent > 0 {
                // Give what no member took back to the caller, in front.
                while let Some(m) = self.hold.pop() {
                    let _ = pkts.push_front(m);
                }
                break;
            }
        }
        total
    }

    fn tx_broadcast(&mut self, queue: u16, pkts: &mut Burst<Mbuf>) -> usize {
        let cnt = self.core.tx_members().len();
        let Some(pool) = self.pool.clone() else {
            return 0;
        };
        let mut total = 0;
        loop {
            let n = pkts.len().min(TX_CHUNK);
            if n == 0 {
                break;
            }
            for _ in 0..n {
                let Some(m) = pkts.pop_front() else { break };
                for j in 0..cnt - 1 {
                    let copy = pool.alloc().and_then(|mut c| {
                        c.copy_from(m.data()).then(|| {
                            *c.tx_mut() = *m.tx();
                            c
                        })
                    });
                    match copy {
                        Some(c) => {
                            let _ = self.per_member[j].push(c);
                        }
                        None => self.counters.broadcast_copy_failed += 1,
                    }
                }
                let _ = self.per_member[cnt - 1].push(m);
            }
            for j in 0..cnt {
                let member = self.core.tx_members()[j];
                self.members[member].tx_burst(queue, &mut self.per_member[j]);
                // What a member could not take is that member's loss; the
                // frame went out on the others (Linux's broadcast counts
                // success if any slave sent).
                self.per_member[j].clear();
            }
            total += n;
        }
        total
    }
}

impl Port for BondPort {
    fn info(&self) -> PortInfo {
        let mut caps: Option<Capabilities> = None;
        for m in &self.members {
            let c = m.info().capabilities;
            caps = Some(match caps {
                None => c,
                Some(a) => Capabilities {
                    max_rx_queues: a.max_rx_queues.min(c.max_rx_queues),
                    max_tx_queues: a.max_tx_queues.min(c.max_tx_queues),
                    min_desc: a.min_desc.max(c.min_desc),
                    max_desc: a.max_desc.min(c.max_desc),
                    desc_align: a.desc_align.max(c.desc_align),
                    max_frame: a.max_frame.min(c.max_frame),
                    rx_offloads: a.rx_offloads & c.rx_offloads,
                    tx_offloads: a.tx_offloads & c.tx_offloads,
                    max_mc_addrs: a.max_mc_addrs.min(c.max_mc_addrs),
                    promiscuous: a.promiscuous && c.promiscuous,
                    allmulticast: a.allmulticast && c.allmulticast,
                },
            });
        }
        let mut caps = caps.unwrap_or_default();
        if self.cfg.mode == Mode::Ieee8023ad {
            // One multicast entry is the bond's own.
            caps.max_mc_addrs = caps.max_mc_addrs.saturating_sub(1);
        }
        caps.rx_offloads &= RxOffloads::all();
        caps.tx_offloads &= TxOffloads::all();
        PortInfo {
            driver: "net_bonding".into(),
            name: self.name.clone(),
            capabilities: caps,
        }
    }

    fn configure(&mut self, conf: &PortConf) -> Result<(), PortError> {
        if self.started {
            return Err(PortError::Started);
        }
        conf.validate(&self.info().capabilities)?;
        for (i, m) in self.members.iter_mut().enumerate() {
            m.configure(conf).map_err(|e| {
                PortError::Other(format!(
                    "bond {}: member {}: {e}",
                    self.name, self.specs[i].name
                ))
            })?;
        }
        self.pool = Some(conf.rx_pool.clone());
        Ok(())
    }

    fn start(&mut self) -> Result<(), PortError> {
        let Some(_) = &self.pool else {
            return Err(PortError::NotConfigured);
        };
        for (i, m) in self.members.iter_mut().enumerate() {
            m.start().map_err(|e| {
                PortError::Other(format!(
                    "bond {}: member {}: {e}",
                    self.name, self.specs[i].name
                ))
            })?;
        }
        let now = self.clock.now();
        self.core = Bond::new(&self.cfg, &self.specs, now).map_err(PortError::from)?;
        self.applied = vec![Applied::default(); self.members.len()];
        // MACs first, synchronously, so a member that refuses fails start.
        let mut deferred = Vec::new();
        while let Some(a) = self.core.poll_action() {
            match a {
                Action::SetMemberMac { .. } => self.do_action(a).map_err(PortError::from)?,
                other => deferred.push(other),
            }
        }
        self.apply_all_filters().map_err(PortError::from)?;
        self.started = true;
        for a in deferred {
            let _ = self.do_action(a);
        }
        self.service_at(now);
        Ok(())
    }

    fn stop(&mut self) -> Result<(), PortError> {
        self.started = false;
        let mut r = Ok(());
        for m in &mut self.members {
            if let Err(e) = m.stop() {
                r = Err(e);
            }
        }
        r
    }

    #[inline]
    fn rx_burst(&mut self, queue: u16, pkts: &mut Burst<Mbuf>) -> usize {
        self.service();
        if !self.started {
            return 0;
        }
        let before = pkts.len();
        let n = self.members.len();
        let lacp = self.cfg.mode == Mode::Ieee8023ad;
        // Start from a different member each call, as DPDK's bonding does,
        // so no member is starved when the caller's burst fills up.
        let first = self.rx_next;
        self.rx_next = if first + 1 == n { 0 } else { first + 1 };
        for k in 0..n {
            if pkts.spare() == 0 {
                break;
            }
            let i = if first + k >= n {
                first + k - n
            } else {
                first + k
            };
            if lacp {
                self.rx_lacp_member(i, queue, pkts);
            } else if self.core.rx_enabled(i) {
                self.members[i].rx_burst(queue, pkts);
            } else {
                let got = self.members[i].rx_burst(queue, &mut self.scratch);
                self.counters.rx_dropped_inactive += got as u64;
                self.scratch.clear();
            }
        }
        pkts.len() - before
    }

    #[inline]
    fn tx_burst(&mut self, queue: u16, pkts: &mut Burst<Mbuf>) -> usize {
        self.service();
        if !self.started || pkts.is_empty() {
            return 0;
        }
        let tx = self.core.tx_members();
        match tx.len() {
            0 => {
                self.counters.tx_no_member += 1;
                0
            }
            1 => {
                let m = tx[0];
                self.members[m].tx_burst(queue, pkts)
            }
            _ if self.cfg.mode == Mode::Broadcast => self.tx_broadcast(queue, pkts),
            _ => self.tx_distribute(queue, pkts),
        }
    }

    fn link(&mut self) -> LinkStatus {
        self.service();
        if !self.started || !self.core.carrier() {
            return LinkStatus::DOWN;
        }
        let tx = self.core.tx_members();
        let speed = match self.cfg.mode {
            // Broadcast is as fast as its slowest member (bond_mode_bcast_speed()).
            Mode::Broadcast => tx
                .iter()
                .map(|&i| self.links[i].speed_mbps)
                .min()
                .unwrap_or(0),
            _ => tx.iter().map(|&i| self.links[i].speed_mbps).sum(),
        };
        LinkStatus {
            up: true,
            speed_mbps: speed,
            duplex: Duplex::Full,
        }
    }

    fn mac_addr(&self) -> MacAddr {
        self.core.mac()
    }

    fn set_mac_addr(&mut self, mac: MacAddr) -> Result<(), PortError> {
        if !mac.is_valid_unicast() {
            return Err(PortError::InvalidConfig(format!(
                "{mac} is not a unicast address"
            )));
        }
        let now = self.clock.now();
        self.cfg.mac = Some(mac);
        self.core.set_mac(mac, now);
        while let Some(a) = self.core.poll_action() {
            self.do_action(a).map_err(PortError::from)?;
        }
        Ok(())
    }

    fn set_promiscuous(&mut self, on: bool) -> Result<(), PortError> {
        self.promiscuous = on;
        self.apply_all_filters().map_err(PortError::from)
    }

    fn set_allmulticast(&mut self, on: bool) -> Result<(), PortError> {
        self.allmulticast = on;
        self.apply_all_filters().map_err(PortError::from)
    }

    fn set_mc_addr_list(&mut self, addrs: &[MacAddr]) -> Result<(), PortError> {
        if let Some(a) = addrs.iter().find(|a| !a.is_multicast()) {
            return Err(PortError::InvalidConfig(format!(
                "{a} is not a multicast address"
            )));
        }
        self.mc_list = addrs.to_vec();
        self.apply_all_filters().map_err(PortError::from)
    }

    fn stats(&self) -> PortStats {
        let mut s = PortStats::default();
        for m in &self.members {
            let x = m.stats();
            s.ipackets += x.ipackets;
            s.opackets += x.opackets;
            s.ibytes += x.ibytes;
            s.obytes += x.obytes;
            s.imissed += x.imissed;
            s.ierrors += x.ierrors;
            s.oerrors += x.oerrors;
            s.rx_nombuf += x.rx_nombuf;
        }
        s
    }

    fn xstats(&self) -> Vec<Xstat> {
        let s = self.stats();
        let c = self.counters;
        let b = self.core.counters();
        let mut v = vec![
            Xstat::new("rx_good_packets", s.ipackets),
            Xstat::new("tx_good_packets", s.opackets),
            Xstat::new("rx_good_bytes", s.ibytes),
            Xstat::new("tx_good_bytes", s.obytes),
            Xstat::new("rx_missed_errors", s.imissed),
            Xstat::new("rx_errors", s.ierrors),
            Xstat::new("tx_errors", s.oerrors),
            Xstat::new("rx_mbuf_allocation_errors", s.rx_nombuf),
            Xstat::new("bond_rx_dropped_inactive", c.rx_dropped_inactive),
            Xstat::new("bond_tx_no_member", c.tx_no_member),
            Xstat::new("bond_ctrl_tx", c.ctrl_tx),
            Xstat::new("bond_ctrl_tx_failed", c.ctrl_tx_failed),
            Xstat::new("bond_broadcast_copy_failed", c.broadcast_copy_failed),
            Xstat::new("bond_member_op_failed", c.member_op_failed),
            Xstat::new("bond_active_changes", b.active_changes),
            Xstat::new("bond_announcements", b.announcements),
            Xstat::new("bond_slow_rx", b.slow_rx),
            Xstat::new("bond_slow_rx_invalid", b.slow_rx_invalid),
        ];
        for (i, m) in self.members.iter().enumerate() {
            let x = m.stats();
            let n = &self.specs[i].name;
            v.push(Xstat::new(format!("{n}_rx_packets"), x.ipackets));
            v.push(Xstat::new(format!("{n}_tx_packets"), x.opackets));
        }
        v
    }

    fn reset_stats(&mut self) {
        for m in &mut self.members {
            m.reset_stats();
        }
        self.counters = ShellCounters::default();
    }
}
