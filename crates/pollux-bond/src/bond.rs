//! The bond's protocol core: link monitoring, member selection for every
//! mode, MAC policy, failover announcements and LACP. No I/O, no clock:
//! [`BondPort`](crate::BondPort) (the I/O shell) feeds it link samples,
//! slow-protocol frames and `now`, and carries out the [`Action`]s it asks for.

use std::collections::VecDeque;
use std::time::Instant;

use pollux_core::wire::ArpOp;
use pollux_core::{Duplex, LinkStatus, MacAddr};

use crate::alb::{self, Rlb, Tlb, Usable, TLB_HASH_TABLE_SIZE};
use crate::config::{BondConfig, FailOverMac, LacpRate, Mode, PrimaryReselect};
use crate::hash::FastMod;
use crate::lacp::{Lacp, LacpSettings};
use crate::status::{
    ActiveAggregatorStatus, AlbStatus, BondStatus, LacpStatus, MemberLacpStatus, MemberStatus,
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
    /// balance-alb: the receive filters of member `member` changed (it
    /// goes promiscuous, or back, to receive a failed member's MAC; see
    /// [`Bond::alb_promiscuous`]).
    FiltersChanged { member: usize },
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
    /// balance-tlb/alb: learning packets sent.
    pub learning_packets: u64,
    /// balance-alb: ARP requests for the bond's addresses answered.
    pub arp_replies: u64,
    /// balance-alb: ARP updates sent to clients whose member changed.
    pub arp_updates: u64,
    /// balance-alb: frames passed up that were not ARP requests for the
    /// bond's addresses (never counted by a correct receive path).
    pub arp_rx_invalid: u64,
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
    /// balance-tlb/alb: the transmit flow table.
    tlb: Option<Tlb>,
    /// balance-alb: the receive client table.
    rlb: Option<Rlb>,
    /// balance-tlb/alb: when every member next sends learning packets.
    next_lp: Option<Instant>,
    /// balance-alb: the next monitor tick with work (client updates,
    /// client rebalance, end of promiscuous mode).
    alb_tick: Option<Instant>,
    /// balance-alb: the clients are to be assigned again (a member came up).
    rlb_rebalance: bool,
    /// balance-alb: the member put in promiscuous mode to receive a failed
    /// member's MAC, and until when (rlb_teach_disabled_mac_on_primary()).
    promisc: Option<(usize, Instant)>,
}

/// How long the active member stays promiscuous after it was taught a
/// failed member's MAC (RLB_PROMISC_TIMEOUT, bond_alb.h: 10 s).
const RLB_PROMISC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

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
            tlb: cfg.mode.is_alb_family().then(|| Tlb::new(now)),
            rlb: (cfg.mode == Mode::BalanceAlb).then(Rlb::new),
            next_lp: cfg.mode.is_alb_family().then_some(now + cfg.lp_interval),
            alb_tick: None,
            rlb_rebalance: false,
            promisc: None,
        };
        // Every mode but active-backup with fail_over_mac puts the bond MAC
        // on every member (bond_enslave()); with fail_over_mac=follow the
        // active member gets it when it becomes active. balance-tlb and
        // balance-alb leave every member its own MAC; the active member
        // gets the bond's (bond_alb_init_slave(), alb_set_slave_mac_addr()).
        let own_macs = cfg.mode.is_alb_family()
            || (cfg.mode == Mode::ActiveBackup && cfg.fail_over_mac != FailOverMac::None);
        if !own_macs {
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
        let alb_changes = if self.tlb.is_some() {
            lacp_changes.clone()
        } else {
            Vec::new()
        };
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
            if !alb_changes.is_empty() {
                self.alb_link_changes(now, &alb_changes);
            }
            self.reselect(now, active_gone || primary_up);
            if !alb_changes.is_empty() {
                self.alb_after_changes(now);
            }
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
        self.alb_timeout(now);
    }

    /// The earliest instant at which [`Bond::handle_timeout`] or a link
    /// sample has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.next_link_check,
            self.lacp.as_ref().and_then(|l| l.poll_timeout()),
            self.announce.map(|(_, t)| t),
            self.next_lp,
            self.alb_tick,
            self.tlb.as_ref().map(|t| t.next_rebalance()),
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
        if self.cfg.mode.is_alb_family() {
            // Only the member that carries the bond's MAC changes
            // (bond_alb_set_mac_address()).
            self.mac = mac;
            if let Some(a) = self.active {
                self.program_mac(a, mac);
                self.send_learning(a, mac);
            }
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
            Mode::BalanceTlb | Mode::BalanceAlb => {
                // One active member carries the bond's MAC; every usable
                // member transmits. Linux marks the others inactive
                // (bond_set_slave_inactive_flags()), and an inactive member
                // delivers nothing in balance-tlb and only unicast in
                // balance-alb (bond_should_deliver_exact_match()); the
                // receive handles drop an alb backup's broadcast and
                // multicast frames themselves.
                if choose_active {
                    let best = self.find_best();
                    if best != self.active {
                        self.change_active(best, now);
                    }
                }
                self.tx = (0..n).filter(|&i| usable(self, i)).collect();
                let alb = self.cfg.mode == Mode::BalanceAlb;
                for i in 0..n {
                    self.rx_ok[i] = alb || Some(i) == self.active;
                }
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
        if self.cfg.mode.is_alb_family() {
            return self.alb_change_active(new, now);
        }
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

    fn usable_loads(&self) -> Vec<Usable> {
        (0..self.members.len())
            .filter(|&i| self.members[i].link.usable())
            .map(|i| Usable {
                member: i,
                speed_mbps: self.members[i].speed_mbps,
            })
            .collect()
    }

    /// balance-tlb/alb: the transmit flow table the handles follow, one
    /// member per bucket ([`alb::NO_MEMBER`]: the active member).
    pub fn tlb_table(&self) -> Option<&[u8; TLB_HASH_TABLE_SIZE]> {
        self.tlb.as_ref().map(|t| t.table())
    }

    /// balance-tlb/alb: whether [`Bond::handle_tlb_load`] is due.
    pub fn tlb_rebalance_due(&self, now: Instant) -> bool {
        self.tlb.as_ref().is_some_and(|t| now >= t.next_rebalance())
    }

    /// balance-tlb/alb, every rebalance interval: the bytes each bucket
    /// has sent since start (the transmit handles' counters summed) and
    /// the bytes sent outside the table. Assigns the buckets again.
    pub fn handle_tlb_load(
        &mut self,
        now: Instant,
        totals: &[u64; TLB_HASH_TABLE_SIZE],
        unbalanced: u64,
    ) {
        let usable = self.usable_loads();
        let active = self.active;
        if let Some(t) = &mut self.tlb {
            t.rebalance(now, totals, unbalanced, &usable, active);
        }
    }

    /// balance-alb: the member kept promiscuous to receive a failed
    /// member's MAC, if any.
    pub fn alb_promiscuous(&self) -> Option<usize> {
        self.promisc.map(|(m, _)| m)
    }

    /// A member's current MAC (balance-tlb/alb give each its own).
    pub fn member_mac(&self, i: usize) -> MacAddr {
        self.members[i].mac
    }

    /// balance-alb: an ARP frame a receive handle passed up from `member`.
    /// A request for one of the bond's addresses is answered with the MAC
    /// of the member chosen for the asking peer (a new peer gets the next
    /// member; a known one keeps its own). Anything else is counted and
    /// ignored.
    pub fn handle_arp(&mut self, _now: Instant, _member: usize, frame: &[u8]) {
        let Some((_, a)) = wire::untagged_arp(frame) else {
            self.counters.arp_rx_invalid += 1;
            return;
        };
        let our = a.tpa();
        let ours = self.cfg.ip.contains(&our);
        if a.op() != ArpOp::Request || !ours || a.spa() == our {
            self.counters.arp_rx_invalid += 1;
            return;
        }
        let usable = self.usable_loads();
        let Some(rlb) = &mut self.rlb else {
            self.counters.arp_rx_invalid += 1;
            return;
        };
        let (our, peer_ip, peer_mac) = (our.octets(), a.spa().octets(), a.sha());
        let Some(m) = rlb.on_request(peer_ip, peer_mac, our, &usable) else {
            return;
        };
        let frame = wire::arp_reply(self.members[m].mac, our, peer_mac, peer_ip);
        self.actions.push_back(Action::Transmit {
            member: m,
            frame: frame.to_vec(),
        });
        self.counters.arp_replies += 1;
    }

    /// alb_send_learning_packets(): one learning packet with `mac` as its
    /// source out of `member`.
    fn send_learning(&mut self, member: usize, mac: MacAddr) {
        if !self.members[member].link.usable() {
            return;
        }
        self.actions.push_back(Action::Transmit {
            member,
            frame: wire::learning_packet(mac).to_vec(),
        });
        self.counters.learning_packets += 1;
    }

    /// bond_alb_handle_link_change() for members whose usability changed:
    /// a failed member's flows and clients move to the others (and, when
    /// it is not the active member, the active one is taught its MAC); a
    /// member that came up makes a rebalance of both tables due.
    fn alb_link_changes(&mut self, now: Instant, changed: &[usize]) {
        let usable = self.usable_loads();
        let active = self.active;
        let mut down = false;
        for &i in changed {
            if self.members[i].link.usable() {
                if let Some(t) = &mut self.tlb {
                    t.rebalance_soon(now);
                }
                if self.rlb.is_some() {
                    self.rlb_rebalance = true;
                    self.alb_tick.get_or_insert(now);
                }
            } else {
                down = true;
                if self.rlb.is_some() && Some(i) != active {
                    let mac = self.members[i].mac;
                    self.teach_disabled_mac(now, mac);
                }
            }
        }
        if down {
            if let Some(t) = &mut self.tlb {
                t.move_off(&usable, active.filter(|&a| self.members[a].link.usable()));
            }
            if let Some(r) = &mut self.rlb {
                r.move_off(&usable);
            }
        }
    }

    /// After link changes and the choice of the active member: the first
    /// round of client updates goes out at once (Linux waits for its next
    /// 100 ms monitor tick), the retries at the following ticks.
    fn alb_after_changes(&mut self, now: Instant) {
        if self.rlb.as_ref().is_some_and(|r| r.pending()) {
            self.send_client_updates();
            self.alb_tick = Some(now + alb::ALB_TICK);
        }
    }

    /// rlb_teach_disabled_mac_on_primary(): the active member goes
    /// promiscuous (for RLB_PROMISC_TIMEOUT) and sends learning packets
    /// with the failed member's MAC, so that frames peers still send to
    /// that MAC reach it until they learn the new one.
    fn teach_disabled_mac(&mut self, now: Instant, mac: MacAddr) {
        let Some(a) = self.active.filter(|&a| self.members[a].link.usable()) else {
            return;
        };
        let was = self.promisc.map(|(m, _)| m);
        self.promisc = Some((a, now + RLB_PROMISC_TIMEOUT));
        if was != Some(a) {
            if let Some(w) = was {
                self.actions.push_back(Action::FiltersChanged { member: w });
            }
            self.actions.push_back(Action::FiltersChanged { member: a });
        }
        self.send_learning(a, mac);
        self.alb_tick.get_or_insert(now + alb::ALB_TICK);
    }

    /// One round of ARP updates to the clients still to be told, each
    /// RLB_ARP_BURST_SIZE times, from its member's MAC (rlb_update_client()).
    fn send_client_updates(&mut self) {
        let Some(r) = &mut self.rlb else { return };
        for c in r.take_updates() {
            let frame = wire::arp_reply(self.members[c.member].mac, c.our_ip, c.mac, c.ip);
            if !self.members[c.member].link.usable() {
                continue;
            }
            for _ in 0..alb::RLB_ARP_BURST_SIZE {
                self.actions.push_back(Action::Transmit {
                    member: c.member,
                    frame: frame.to_vec(),
                });
                self.counters.arp_updates += 1;
            }
        }
    }

    /// bond_alb_handle_active_change(): the new active member takes the
    /// bond's MAC from the old one (or from whichever member has it) and
    /// gives it its own (alb_swap_mac_addr()); both send learning packets
    /// with their new MACs (alb_fasten_mac_swap()). In balance-alb their
    /// clients are told, and a member that cannot send any more has its
    /// new MAC taught on the active member.
    fn alb_change_active(&mut self, new: Option<usize>, now: Instant) {
        let old = self.active;
        if old == new {
            return;
        }
        self.active = new;
        if old.is_some() {
            self.counters.active_changes += 1;
        }
        self.actions.push_back(Action::ActiveChanged { old, new });
        let Some(n) = new else { return };
        let bond_mac = self.mac;
        let swap = old.filter(|&o| o != n).or_else(|| {
            (0..self.members.len()).find(|&i| i != n && self.members[i].mac == bond_mac)
        });
        let Some(s) = swap else {
            self.program_mac(n, bond_mac);
            self.send_learning(n, bond_mac);
            return;
        };
        let (ms, mn) = (self.members[s].mac, self.members[n].mac);
        self.program_mac(s, mn);
        self.program_mac(n, ms);
        let mut disabled = None;
        for i in [s, n] {
            if self.members[i].link.usable() {
                let mac = self.members[i].mac;
                self.send_learning(i, mac);
                if let Some(r) = &mut self.rlb {
                    // rlb_req_update_slave_clients(): its clients were
                    // given its old MAC.
                    r.mark_member(i);
                }
            } else {
                disabled = Some(i);
            }
        }
        if let Some(d) = disabled.filter(|_| self.rlb.is_some()) {
            let mac = self.members[d].mac;
            self.teach_disabled_mac(now, mac);
        }
    }

    /// The periodic work of bond_alb_monitor(): learning packets from
    /// every member every `lp_interval`, client updates and rebalance,
    /// the end of promiscuous mode.
    fn alb_timeout(&mut self, now: Instant) {
        if let Some(t) = self.next_lp {
            if now >= t {
                for i in 0..self.members.len() {
                    let mac = self.members[i].mac;
                    self.send_learning(i, mac);
                }
                self.next_lp = Some(now + self.cfg.lp_interval);
            }
        }
        let Some(t) = self.alb_tick else { return };
        if now < t {
            return;
        }
        if self.rlb_rebalance {
            self.rlb_rebalance = false;
            let usable = self.usable_loads();
            if let Some(r) = &mut self.rlb {
                r.rebalance(&usable);
            }
        }
        if self.rlb.as_ref().is_some_and(|r| r.pending()) {
            self.send_client_updates();
        }
        if let Some((m, until)) = self.promisc {
            if now >= until {
                self.promisc = None;
                self.actions.push_back(Action::FiltersChanged { member: m });
            }
        }
        let more = self.rlb.as_ref().is_some_and(|r| r.pending());
        self.alb_tick = if more {
            Some(now + alb::ALB_TICK)
        } else {
            self.promisc.map(|(_, until)| until)
        };
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
                    Mode::BalanceTlb | Mode::BalanceAlb => {
                        self.tx.contains(&i) || self.active == Some(i)
                    }
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
            // bond_mode_uses_xmit_hash(): also balance-tlb/alb without
            // tlb_dynamic_lb.
            xmit_hash_policy: (cfg.mode.uses_xmit_hash()
                || (cfg.mode.is_alb_family() && !cfg.tlb_dynamic_lb))
                .then_some(cfg.xmit_hash_policy),
            fail_over_mac: (cfg.mode == Mode::ActiveBackup
                && cfg.fail_over_mac != FailOverMac::None)
                .then_some(cfg.fail_over_mac),
            primary: cfg
                .mode
                .uses_primary()
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
            alb: self.tlb.as_ref().map(|t| AlbStatus {
                tlb_dynamic_lb: cfg.tlb_dynamic_lb,
                lp_interval_s: cfg.lp_interval.as_secs(),
                ip: cfg.ip.clone(),
                tlb_rebalances: t.rebalances(),
                tlb_load_bytes_per_s: t.loads(self.members.len(), self.active),
                clients: self
                    .rlb
                    .as_ref()
                    .map(|r| r.clients().copied().collect())
                    .unwrap_or_default(),
            }),
        }
    }

    /// LACP rate, for callers that print it.
    pub fn lacp_rate(&self) -> LacpRate {
        self.cfg.lacp_rate
    }
}
