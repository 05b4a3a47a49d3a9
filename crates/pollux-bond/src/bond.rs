//! The bond's protocol core: link monitoring, member selection for every
//! mode, MAC policy, failover announcements and LACP. No I/O, no clock:
//! [`BondPort`](crate::BondPort) (the I/O shell) feeds it link samples,
//! slow-protocol frames and `now`, and carries out the [`Action`]s it asks for.

use std::collections::VecDeque;
use std::time::Instant;

use pollux_core::{Duplex, LinkStatus, MacAddr};

use crate::config::{BondConfig, FailOverMac, LacpRate, Mode, PrimaryReselect};
use crate::hash::FastMod;
use crate::lacp::{Lacp, LacpSettings};
use crate::status::{
    ActiveAggregatorStatus, BondStatus, LacpStatus, MemberLacpStatus, MemberStatus,
};
use crate::wire::{self, WireError};

/// A member's link as the link monitor sees it (Linux's BOND_LINK_*).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    /// Up and usable.
    Up,
    /// Seen down, waiting out `downdelay`; still used meanwhile.
    Fail,
    /// Down; never sent to.
    Down,
    /// Seen up, waiting out `updelay`; not used yet.
    Back,
}

impl LinkState {
    /// The text of /proc/net/bonding's "MII Status" (bond_slave_link_status()).
    pub fn name(self) -> &'static str {
        match self {
            LinkState::Up => "up",
            LinkState::Fail => "going down",
            LinkState::Down => "down",
            LinkState::Back => "going back",
        }
    }

    fn usable(self) -> bool {
        matches!(self, LinkState::Up | LinkState::Fail)
    }
}

/// What the bond needs to know about a member to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberSpec {
    pub name: String,
    /// The member's own (permanent) MAC.
    pub mac: MacAddr,
}

/// Work for the I/O shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Program `mac` as the unicast address of member `member`.
    SetMemberMac { member: usize, mac: MacAddr },
    /// Send `frame` out of member `member` (LACPDU, marker response,
    /// failover announcement).
    Transmit { member: usize, frame: Vec<u8> },
    /// The active-backup active member changed: receive filters
    /// (promiscuous, all-multicast, multicast list) move to the new one.
    ActiveChanged {
        old: Option<usize>,
        new: Option<usize>,
    },
}

#[derive(Clone, Debug)]
struct Member {
    name: String,
    perm_mac: MacAddr,
    /// The MAC the bond has programmed (or left) on the member.
    mac: MacAddr,
    link: LinkState,
    since: Option<Instant>,
    speed_mbps: u32,
    duplex: Duplex,
    link_failures: u32,
}

/// Counters of the bond itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BondCounters {
    /// Changes of the active-backup active member.
    pub active_changes: u64,
    /// Failover announcements sent.
    pub announcements: u64,
    /// Slow-protocol frames taken out of the receive path.
    pub slow_rx: u64,
    /// Slow-protocol frames that failed validation.
    pub slow_rx_invalid: u64,
}

/// The protocol core of a bond. See the [module docs](self).
#[derive(Debug)]
pub struct Bond {
    cfg: BondConfig,
    members: Vec<Member>,
    mac: MacAddr,
    primary: Option<usize>,
    lacp: Option<Lacp>,
    lacp_generation: u64,
    active: Option<usize>,
    tx: Vec<usize>,
    tx_mod: FastMod,
    rx_ok: Vec<bool>,
    carrier: bool,
    next_link_check: Option<Instant>,
    announce: Option<(u8, Instant)>,
    actions: VecDeque<Action>,
    counters: BondCounters,
}

impl Bond {
    /// A bond over `members` (at least one), links unknown until the first
    /// [`Bond::handle_links`], which is due at once.
    pub fn new(
        cfg: &BondConfig,
        members: &[MemberSpec],
        now: Instant,
    ) -> Result<Bond, crate::BondError> {
        if members.is_empty() {
            return Err(crate::BondError::NoMembers);
        }
        let primary = match &cfg.primary {
            Some(p) => Some(
                members
                    .iter()
                    .position(|m| &m.name == p)
                    .ok_or_else(|| crate::BondError::UnknownPrimary(p.clone()))?,
            ),
            None => None,
        };
        let mac = cfg.mac.unwrap_or(members[0].mac);
        let mut b = Bond {
            cfg: cfg.clone(),
            members: members
                .iter()
                .map(|m| Member {
                    name: m.name.clone(),
                    perm_mac: m.mac,
                    mac: m.mac,
                    link: LinkState::Down,
                    since: None,
                    speed_mbps: 0,
                    duplex: Duplex::Unknown,
                    link_failures: 0,
                })
                .collect(),
            mac,
            primary,
            lacp: None,
            lacp_generation: 0,
            active: None,
            tx: Vec::new(),
            tx_mod: FastMod::new(1),
            rx_ok: vec![false; members.len()],
            carrier: false,
            next_link_check: Some(now),
            announce: None,
            actions: VecDeque::new(),
            counters: BondCounters::default(),
        };
        // Every mode but active-backup with fail_over_mac puts the bond MAC
        // on every member (bond_enslave()); with fail_over_mac=follow the
        // active member gets it when it becomes active.
        if !(cfg.mode == Mode::ActiveBackup && cfg.fail_over_mac != FailOverMac::None) {
            for i in 0..b.members.len() {
                b.program_mac(i, mac);
            }
        }
        if cfg.mode == Mode::Ieee8023ad {
            let srcs: Vec<MacAddr> = members.iter().map(|m| m.mac).collect();
            let settings = LacpSettings {
                system_priority: cfg.ad_actor_sys_prio,
                system: cfg.ad_actor_system.unwrap_or(mac),
                rate: cfg.lacp_rate,
                active: cfg.lacp_active,
                ad_select: cfg.ad_select,
                user_port_key: cfg.ad_user_port_key,
            };
            b.lacp = Some(Lacp::new(settings, &srcs, now));
            b.drain_lacp();
        }
        Ok(b)
    }

    fn program_mac(&mut self, i: usize, mac: MacAddr) {
        if self.members[i].mac != mac {
            self.members[i].mac = mac;
            self.actions
                .push_back(Action::SetMemberMac { member: i, mac });
        }
    }

    pub fn config(&self) -> &BondConfig {
        &self.cfg
    }

    /// The bond's MAC (with fail_over_mac=active, the active member's).
    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// Number of members.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Member names in order.
    pub fn member_name(&self, i: usize) -> &str {
        &self.members[i].name
    }

    /// Whether a link sample is due (the `miimon` tick).
    #[inline]
    pub fn link_check_due(&self, now: Instant) -> bool {
        self.next_link_check.is_some_and(|t| now >= t)
    }

    /// A link sample of every member, in member order, taken at a
    /// `miimon` tick (see [`Bond::link_check_due`]).
    pub fn handle_links(&mut self, now: Instant, links: &[LinkStatus]) {
        let mut changed = false;
        let mut primary_up = false;
        let mut lacp_changes = Vec::new();
        for (i, l) in links.iter().enumerate().take(self.members.len()) {
            let m = &mut self.members[i];
            if l.up {
                m.speed_mbps = l.speed_mbps;
                m.duplex = l.duplex;
            }
            let elapsed =
                |since: Option<Instant>| since.map_or(std::time::Duration::ZERO, |s| now - s);
            let next = match (m.link, l.up) {
                (LinkState::Up, false) if self.cfg.downdelay.is_zero() => Some(LinkState::Down),
                (LinkState::Up, false) => Some(LinkState::Fail),
                (LinkState::Fail, true) => Some(LinkState::Up),
                (LinkState::Fail, false) if elapsed(m.since) >= self.cfg.downdelay => {
                    Some(LinkState::Down)
                }
                (LinkState::Down, true) if self.cfg.updelay.is_zero() => Some(LinkState::Up),
                (LinkState::Down, true) => Some(LinkState::Back),
                (LinkState::Back, false) => Some(LinkState::Down),
                (LinkState::Back, true) if elapsed(m.since) >= self.cfg.updelay => {
                    Some(LinkState::Up)
                }
                _ => None,
            };
            if let Some(n) = next {
                if n == LinkState::Down && m.link.usable() {
                    m.link_failures += 1;
                }
                let was_usable = m.link.usable();
                if n == LinkState::Up && Some(i) == self.primary {
                    primary_up = true;
                }
                m.link = n;
                m.since = Some(now);
                changed = true;
                if was_usable != n.usable() {
                    lacp_changes.push(i);
                }
            }
        }
        for i in lacp_changes {
            self.lacp_link(i, now);
        }
        self.next_link_check = if self.cfg.miimon.is_zero() {
            // Link monitoring off: the first sample is the only one (Linux
            // takes slaves as up and never looks again).
            None
        } else {
            Some(now + self.cfg.miimon)
        };
        if changed {
            // bond_miimon_commit(): a new active member is chosen when the
            // active one is gone, or when the primary comes up; a member
            // that comes back does not take over otherwise (members have
            // equal priority), so there is no failback without a primary.
            let active_gone = self.active.map_or(true, |a| !self.members[a].link.usable());
            self.reselect(now, active_gone || primary_up);
        }
    }

    fn lacp_link(&mut self, i: usize, now: Instant) {
        let m = &self.members[i];
        let (up, speed, full) = (m.link.usable(), m.speed_mbps, m.duplex == Duplex::Full);
        if let Some(l) = &mut self.lacp {
            l.set_link(i, up, speed, full, now);
        }
        self.drain_lacp();
    }

    /// A slow-protocol frame (EtherType 0x8809 to 01:80:c2:00:00:02) that
    /// arrived on `member`. Only 802.3ad bonds consume them.
    pub fn handle_slow_frame(
        &mut self,
        now: Instant,
        member: usize,
        frame: &[u8],
    ) -> Result<(), WireError> {
        self.counters.slow_rx += 1;
        let r = match &mut self.lacp {
            Some(l) => l.handle_frame(member, frame, now),
            None => Ok(()),
        };
        if r.is_err() {
            self.counters.slow_rx_invalid += 1;
        }
        self.drain_lacp();
        self.after_lacp(now);
        r
    }

    /// Runs timers that are due: LACP machines and failover announcements.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(l) = &mut self.lacp {
            l.handle_timeout(now);
        }
        self.drain_lacp();
        self.after_lacp(now);
        if let Some((left, at)) = self.announce {
            if now >= at {
                self.send_announcement();
                self.announce = (left > 1).then(|| (left - 1, now + self.cfg.notify_gap()));
            }
        }
    }

    /// The earliest instant at which [`Bond::handle_timeout`] or a link
    /// sample has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.next_link_check,
            self.lacp.as_ref().and_then(|l| l.poll_timeout()),
            self.announce.map(|(_, t)| t),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next thing for the shell to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Members to transmit on, in member order; empty when the bond's
    /// carrier is off. Active-backup has at most one.
    #[inline]
    pub fn tx_members(&self) -> &[usize] {
        &self.tx
    }

    /// `hash % tx_members().len()` without a division.
    #[inline]
    pub fn tx_index(&self, hash: u32) -> usize {
        self.tx_mod.rem(hash) as usize
    }

    /// Whether frames received on `member` go up to the application.
    #[inline]
    pub fn rx_enabled(&self, member: usize) -> bool {
        self.rx_ok.get(member).copied().unwrap_or(false)
    }

    /// The bond's link: enough usable members (`min_links`) and at least one.
    pub fn carrier(&self) -> bool {
        self.carrier
    }

    /// The active-backup active member.
    pub fn active(&self) -> Option<usize> {
        self.active
    }

    /// The link monitor's view of a member.
    pub fn member_link(&self, i: usize) -> LinkState {
        self.members[i].link
    }

    pub fn counters(&self) -> BondCounters {
        self.counters
    }

    /// The LACP state (802.3ad only).
    pub fn lacp(&self) -> Option<&Lacp> {
        self.lacp.as_ref()
    }

    /// Sets the bond MAC (Port::set_mac_addr). With active-backup and a
    /// fail_over_mac policy the request is ignored, as on Linux.
    pub fn set_mac(&mut self, mac: MacAddr, now: Instant) {
        if self.cfg.mode == Mode::ActiveBackup && self.cfg.fail_over_mac != FailOverMac::None {
            return;
        }
        self.mac = mac;
        for i in 0..self.members.len() {
            self.program_mac(i, mac);
        }
        if self.cfg.ad_actor_system.is_none() {
            if let Some(l) = &mut self.lacp {
                l.set_system(mac, now);
            }
            self.drain_lacp();
        }
    }

    fn drain_lacp(&mut self) {
        if let Some(l) = &mut self.lacp {
            while let Some((member, frame)) = l.poll_transmit() {
                self.actions.push_back(Action::Transmit {
                    member,
                    frame: frame.to_vec(),
                });
            }
        }
    }

    fn after_lacp(&mut self, now: Instant) {
        let g = self.lacp.as_ref().map(|l| l.generation());
        if let Some(g) = g {
            if g != self.lacp_generation {
                self.lacp_generation = g;
                self.reselect(now, false);
            }
        }
    }

    /// Recomputes the active member and the transmit and receive sets.
    fn reselect(&mut self, now: Instant, choose_active: bool) {
        let n = self.members.len();
        let usable = |b: &Bond, i: usize| b.members[i].link.usable();
        match self.cfg.mode {
            Mode::ActiveBackup => {
                if choose_active {
                    let best = self.find_best();
                    if best != self.active {
                        self.change_active(best, now);
                    }
                }
                self.tx = self
                    .active
                    .filter(|&a| usable(self, a))
                    .into_iter()
                    .collect();
                for i in 0..n {
                    self.rx_ok[i] = Some(i) == self.active;
                }
            }
            Mode::BalanceRr | Mode::BalanceXor | Mode::Broadcast => {
                self.tx = (0..n).filter(|&i| usable(self, i)).collect();
                self.rx_ok.fill(true);
            }
            Mode::Ieee8023ad => {
                let l = self.lacp.as_ref().expect("802.3ad bond has LACP state");
                let tx: Vec<usize> = (0..n)
                    .filter(|&i| usable(self, i) && l.collecting_distributing(i))
                    .collect();
                let rx: Vec<bool> = (0..n).map(|i| l.collecting_distributing(i)).collect();
                self.tx = tx;
                self.rx_ok = rx;
            }
        }
        let links_up = match &self.lacp {
            Some(l) => l.active_aggregator().map_or(0, |a| l.active_ports(a)),
            None => (0..n).filter(|&i| usable(self, i)).count(),
        };
        self.carrier = !self.tx.is_empty() && links_up >= self.cfg.min_links as usize;
        if !self.carrier {
            self.tx.clear();
        }
        self.tx_mod = FastMod::new(self.tx.len() as u32);
    }

    /// bond_choose_primary_or_current() of Linux 6.x: the primary when it
    /// is up and primary_reselect allows; without a usable primary the
    /// first usable member plays its part (every member has the same
    /// priority). Only called when the active member is gone or the
    /// primary came up (see handle_links).
    fn choose_primary_or_current(&self) -> Option<usize> {
        let usable = |i: usize| self.members[i].link.usable();
        let curr = self.active;
        let prim = match self.primary.filter(|&p| usable(p)) {
            Some(p) => p,
            None => {
                let first = (0..self.members.len()).find(|&i| usable(i));
                match first {
                    Some(h) if Some(h) != curr => h,
                    _ => return curr.filter(|&c| usable(c)),
                }
            }
        };
        let Some(c) = curr.filter(|&c| usable(c)) else {
            return Some(prim);
        };
        match self.cfg.primary_reselect {
            PrimaryReselect::Always => Some(prim),
            PrimaryReselect::Better => {
                let (p, cm) = (&self.members[prim], &self.members[c]);
                let dup = |d: Duplex| (d == Duplex::Full) as u8;
                if p.speed_mbps < cm.speed_mbps
                    || (p.speed_mbps == cm.speed_mbps && dup(p.duplex) <= dup(cm.duplex))
                {
                    Some(c)
                } else {
                    Some(prim)
                }
            }
            PrimaryReselect::Failure => Some(c),
        }
    }

    /// bond_find_best_slave(): failing everything else, the member whose
    /// updelay is closest to done is taken at once.
    fn find_best(&mut self) -> Option<usize> {
        if let Some(s) = self.choose_primary_or_current() {
            return Some(s);
        }
        let back = (0..self.members.len())
            .filter(|&i| self.members[i].link == LinkState::Back)
            .min_by_key(|&i| self.members[i].since)?;
        self.members[back].link = LinkState::Up;
        Some(back)
    }

    fn change_active(&mut self, new: Option<usize>, now: Instant) {
        let old = self.active;
        self.active = new;
        if old.is_some() {
            self.counters.active_changes += 1;
        }
        if let Some(n) = new {
            match self.cfg.fail_over_mac {
                FailOverMac::None => {}
                FailOverMac::Active => self.mac = self.members[n].mac,
                FailOverMac::Follow => {
                    let taken = self.members[n].mac;
                    self.program_mac(n, self.mac);
                    if let Some(o) = old {
                        if o != n && self.members[o].mac == self.mac {
                            self.program_mac(o, taken);
                        }
                    }
                }
            }
            if self.cfg.num_grat_arp > 0 {
                self.announce = Some((self.cfg.num_grat_arp, now));
            }
        }
        self.actions.push_back(Action::ActiveChanged { old, new });
    }

    fn send_announcement(&mut self) {
        let Some(a) = self.active else { return };
        if !self.members[a].link.usable() {
            return;
        }
        if self.cfg.announce_ip.is_empty() {
            self.actions.push_back(Action::Transmit {
                member: a,
                frame: wire::rarp_announce(self.mac).to_vec(),
            });
            self.counters.announcements += 1;
        }
        for ip in self.cfg.announce_ip.clone() {
            self.actions.push_back(Action::Transmit {
                member: a,
                frame: wire::gratuitous_arp(self.mac, ip.octets()).to_vec(),
            });
            self.counters.announcements += 1;
        }
    }

    /// Status in the shape of /proc/net/bonding/bondN.
    pub fn status(&self, name: &str) -> BondStatus {
        let cfg = &self.cfg;
        let lacp = self.lacp.as_ref().map(|l| {
            let s = l.settings();
            LacpStatus {
                lacp_active: s.active,
                lacp_rate: cfg.lacp_rate,
                min_links: cfg.min_links,
                ad_select: cfg.ad_select,
                system_priority: s.system_priority,
                system_mac: s.system,
                active_aggregator: l.active_aggregator().map(|a| ActiveAggregatorStatus {
                    id: a.id,
                    ports: l.active_ports(a),
                    actor_key: a.actor_key,
                    partner_key: a.partner_key,
                    partner_mac: a.partner_system,
                }),
            }
        });
        let members = self
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| MemberStatus {
                name: m.name.clone(),
                mii_status: m.link,
                speed_mbps: (m.link.usable() && m.speed_mbps > 0).then_some(m.speed_mbps),
                duplex: if m.link.usable() {
                    m.duplex
                } else {
                    Duplex::Unknown
                },
                link_failure_count: m.link_failures,
                permanent_hw_addr: m.perm_mac,
                mac: m.mac,
                active: match cfg.mode {
                    Mode::ActiveBackup => self.active == Some(i),
                    _ => self.tx.contains(&i),
                },
                lacp: self.lacp.as_ref().map(|l| {
                    let p = &l.ports[i];
                    MemberLacpStatus {
                        aggregator_id: p.aggregator.map(|a| l.aggregators[a].id),
                        actor_churn_state: p.actor_churn,
                        partner_churn_state: p.partner_churn,
                        actor_churned_count: p.actor_churn_count,
                        partner_churned_count: p.partner_churn_count,
                        actor: p.actor,
                        partner: p.partner,
                        rx_state: p.rx,
                        mux_state: p.mux,
                        periodic_state: p.periodic,
                        selected: p.selected,
                        stats: p.stats,
                    }
                }),
            })
            .collect();
        BondStatus {
            name: name.to_string(),
            mode: cfg.mode,
            xmit_hash_policy: cfg.mode.uses_xmit_hash().then_some(cfg.xmit_hash_policy),
            fail_over_mac: (cfg.mode == Mode::ActiveBackup
                && cfg.fail_over_mac != FailOverMac::None)
                .then_some(cfg.fail_over_mac),
            primary: (cfg.mode == Mode::ActiveBackup)
                .then(|| self.primary.map(|p| self.members[p].name.clone())),
            primary_reselect: cfg.primary_reselect,
            active_member: self.active.map(|a| self.members[a].name.clone()),
            mii_status: self.carrier,
            miimon_ms: cfg.miimon.as_millis() as u64,
            updelay_ms: cfg.updelay.as_millis() as u64,
            downdelay_ms: cfg.downdelay.as_millis() as u64,
            peer_notif_delay_ms: cfg.peer_notif_delay.as_millis() as u64,
            mac: self.mac,
            lacp,
            members,
            counters: self.counters,
        }
    }

    /// LACP rate, for callers that print it.
    pub fn lacp_rate(&self) -> LacpRate {
        self.cfg.lacp_rate
    }
}
