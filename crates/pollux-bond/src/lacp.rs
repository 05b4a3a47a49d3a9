//! IEEE 802.1AX Link Aggregation Control Protocol, with no I/O and no clock.
//!
//! [`Lacp`] holds one [`LacpPort`] per bond member and one aggregator per
//! member (as Linux does, so aggregator IDs are 1..=members). Inputs are
//! link changes ([`Lacp::set_link`]), received slow-protocol frames
//! ([`Lacp::handle_frame`]) and the passage of time
//! ([`Lacp::handle_timeout`]); each takes `now` explicitly. Outputs are
//! frames to send ([`Lacp::poll_transmit`]), the next instant anything
//! changes by itself ([`Lacp::poll_timeout`]) and which ports may carry
//! traffic ([`Lacp::collecting_distributing`]). Tests drive two of these
//! through an in-memory wire on a virtual clock, as quinn-proto's tests do.
//!
//! The machines are those of 802.1AX-2014 section 6.4: Receive (figure
//! 6-18), Periodic Transmission (6-19), Selection Logic (6.4.14), Mux with
//! coupled control (6-22: one COLLECTING_DISTRIBUTING state), Transmit
//! (6.4.16, at most three LACPDUs per Fast_Periodic_Time) and the Actor and
//! Partner Churn Detection machines (6.4.17). Where the standard leaves a
//! choice, Linux bonding's (drivers/net/bonding/bond_3ad.c) is taken, so
//! that a Pollux bond and a Linux bond see each other the way two Linux
//! bonds would:
//!
//! - the port key is `ad_user_port_key << 6 | speed << 1 | full_duplex`,
//!   and a port whose speed changes starts over (BEGIN);
//! - the Partner administrative defaults are system 00:00:00:00:00:00,
//!   priority 65535, key 1, port 1, port priority 255, state 0;
//! - a bond uses one aggregator at a time, chosen by `ad_select`; ports of
//!   other aggregators are STANDBY (their Mux waits, Synchronization stays
//!   FALSE, so the partner does not send on them either);
//! - if the active aggregator has no partner at all (nothing answers LACP)
//!   its ports still carry traffic, Linux's fallback for a non-LACP switch;
//!   unlike Linux, only once they are DEFAULTED (the partner had a short
//!   timeout, 3 s, to answer), so a bond never sends on a link whose
//!   partner is still negotiating;
//! - an LACPDU whose actor system is our own is a loop and is dropped.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use pollux_core::MacAddr;
use serde::Serialize;

use crate::config::{AdSelect, LacpRate};
use crate::wire::{
    self, LacpInfo, Lacpdu, MarkerInfo, MarkerKind, MarkerPdu, PortState, WireError, FRAME_LEN,
};

/// Fast_Periodic_Time (802.1AX-2014 6.4.4).
pub const FAST_PERIODIC_TIME: Duration = Duration::from_secs(1);
/// Slow_Periodic_Time.
pub const SLOW_PERIODIC_TIME: Duration = Duration::from_secs(30);
/// Short_Timeout_Time: three fast periods.
pub const SHORT_TIMEOUT_TIME: Duration = Duration::from_secs(3);
/// Long_Timeout_Time: three slow periods.
pub const LONG_TIMEOUT_TIME: Duration = Duration::from_secs(90);
/// Churn_Detection_Time.
pub const CHURN_DETECTION_TIME: Duration = Duration::from_secs(60);
/// Aggregate_Wait_Time.
pub const AGGREGATE_WAIT_TIME: Duration = Duration::from_secs(2);
/// Most LACPDUs a port sends in one Fast_Periodic_Time (6.4.16).
pub const MAX_TX_PER_PERIOD: usize = 3;

/// Receive machine states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RxState {
    Initialize,
    PortDisabled,
    Expired,
    LacpDisabled,
    Defaulted,
    Current,
}

/// Periodic Transmission machine states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PeriodicState {
    NoPeriodic,
    FastPeriodic,
    SlowPeriodic,
    PeriodicTx,
}

/// Mux machine states (coupled control).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MuxState {
    Detached,
    Waiting,
    Attached,
    CollectingDistributing,
}

/// The Selected variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Selected {
    Unselected,
    Selected,
    Standby,
}

/// Churn Detection machine states, printed as Linux prints them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChurnState {
    /// ACTOR/PARTNER_CHURN_MONITOR ("monitoring").
    Monitoring,
    /// NO_ACTOR/PARTNER_CHURN ("none").
    None,
    /// ACTOR/PARTNER_CHURN ("churned").
    Churned,
}

impl ChurnState {
    pub fn name(self) -> &'static str {
        match self {
            ChurnState::Monitoring => "monitoring",
            ChurnState::None => "none",
            ChurnState::Churned => "churned",
        }
    }
}

/// Per-port LACP counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LacpStats {
    pub lacpdu_rx: u64,
    pub lacpdu_tx: u64,
    /// LACPDUs that failed validation.
    pub lacpdu_illegal_rx: u64,
    /// LACPDUs carrying our own system ID (a loop).
    pub lacpdu_loopback_rx: u64,
    /// Slow-protocol frames of an unknown subtype.
    pub unknown_rx: u64,
    pub marker_rx: u64,
    pub marker_response_tx: u64,
    pub marker_response_rx: u64,
    /// LACPDUs held back by the three-per-second limit.
    pub tx_rate_limited: u64,
}

/// LACP settings of a bond.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LacpSettings {
    pub system_priority: u16,
    pub system: MacAddr,
    pub rate: LacpRate,
    pub active: bool,
    pub ad_select: AdSelect,
    pub user_port_key: u16,
}

/// One aggregation port.
#[derive(Clone, Debug)]
pub struct LacpPort {
    /// Actor operational information (what we send as Actor).
    pub actor: LacpInfo,
    /// Partner operational information.
    pub partner: LacpInfo,
    partner_admin: LacpInfo,
    /// The member's own MAC, the source of its LACPDUs.
    pub src_mac: MacAddr,
    port_enabled: bool,
    lacp_enabled: bool,
    begin: bool,
    speed_mbps: u32,
    pub rx: RxState,
    pub periodic: PeriodicState,
    pub mux: MuxState,
    pub selected: Selected,
    /// Index into the aggregators.
    pub aggregator: Option<usize>,
    ready_n: bool,
    ntt: bool,
    port_moved: bool,
    current_while: Option<Instant>,
    periodic_timer: Option<Instant>,
    wait_while: Option<Instant>,
    pub actor_churn: ChurnState,
    actor_churn_timer: Option<Instant>,
    pub actor_churn_count: u32,
    pub partner_churn: ChurnState,
    partner_churn_timer: Option<Instant>,
    pub partner_churn_count: u32,
    tx_times: [Option<Instant>; MAX_TX_PER_PERIOD],
    tx_next: usize,
    pub stats: LacpStats,
}

/// An aggregator (802.1AX-2014 6.4.6).
#[derive(Clone, Debug)]
pub struct Aggregator {
    /// Aggregator_Identifier, 1-based.
    pub id: u16,
    /// Member indices attached to it, in the order they joined.
    pub ports: Vec<usize>,
    pub actor_key: u16,
    pub partner_system: MacAddr,
    pub partner_system_priority: u16,
    pub partner_key: u16,
    /// Made of an individual (non-aggregatable) link.
    pub individual: bool,
    /// The bond's active aggregator.
    pub active: bool,
}

impl Aggregator {
    fn clear(&mut self) {
        self.ports.clear();
        self.actor_key = 0;
        self.partner_system = MacAddr::ZERO;
        self.partner_system_priority = 0;
        self.partner_key = 0;
        self.individual = false;
        self.active = false;
    }

    /// Whether a partner answered (a non-zero partner system).
    pub fn has_partner(&self) -> bool {
        self.partner_system != MacAddr::ZERO
    }
}

/// AD_LINK_SPEED_* of bond_3ad.c: the speed part of Linux's port key.
fn speed_code(mbps: u32) -> u16 {
    match mbps {
        1 => 1,
        10 => 2,
        100 => 3,
        1000 => 4,
        2500 => 5,
        5000 => 6,
        10_000 => 7,
        14_000 => 8,
        20_000 => 9,
        25_000 => 10,
        40_000 => 11,
        50_000 => 12,
        56_000 => 13,
        100_000 => 14,
        200_000 => 15,
        400_000 => 16,
        800_000 => 17,
        _ => 0,
    }
}

fn expired(t: Option<Instant>, now: Instant) -> bool {
    t.is_some_and(|t| now >= t)
}

/// The LACP state of a whole bond. See the [module docs](self).
#[derive(Debug)]
pub struct Lacp {
    settings: LacpSettings,
    pub ports: Vec<LacpPort>,
    pub aggregators: Vec<Aggregator>,
    pending: VecDeque<(usize, [u8; FRAME_LEN])>,
    /// Bumped whenever collecting/distributing or the active aggregator
    /// may have changed, so the bond knows to recompute its member sets.
    generation: u64,
}

impl Lacp {
    /// LACP over ports whose LACPDUs leave from `src_macs`, all links down
    /// until [`Lacp::set_link`] says otherwise.
    pub fn new(settings: LacpSettings, src_macs: &[MacAddr], now: Instant) -> Lacp {
        let mut actor_state = PortState(PortState::AGGREGATION);
        actor_state.set(PortState::ACTIVITY, settings.active);
        actor_state.set(PortState::TIMEOUT, settings.rate == LacpRate::Fast);
        let partner_admin = LacpInfo {
            system_priority: 0xffff,
            system: MacAddr::ZERO,
            key: 1,
            port_priority: 0xff,
            port: 1,
            state: PortState(0),
        };
        let ports = src_macs
            .iter()
            .enumerate()
            .map(|(i, &mac)| LacpPort {
                actor: LacpInfo {
                    system_priority: settings.system_priority,
                    system: settings.system,
                    key: settings.user_port_key << 6,
                    port_priority: 0xff,
                    port: i as u16 + 1,
                    state: actor_state,
                },
                partner: partner_admin,
                partner_admin,
                src_mac: mac,
                port_enabled: false,
                lacp_enabled: false,
                begin: true,
                speed_mbps: 0,
                rx: RxState::Initialize,
                periodic: PeriodicState::NoPeriodic,
                mux: MuxState::Detached,
                selected: Selected::Unselected,
                aggregator: None,
                ready_n: false,
                ntt: false,
                port_moved: false,
                current_while: None,
                periodic_timer: None,
                wait_while: None,
                actor_churn: ChurnState::Monitoring,
                actor_churn_timer: None,
                actor_churn_count: 0,
                partner_churn: ChurnState::Monitoring,
                partner_churn_timer: None,
                partner_churn_count: 0,
                tx_times: [None; MAX_TX_PER_PERIOD],
                tx_next: 0,
                stats: LacpStats::default(),
            })
            .collect();
        let aggregators = (0..src_macs.len())
            .map(|i| Aggregator {
                id: i as u16 + 1,
                ports: Vec::new(),
                actor_key: 0,
                partner_system: MacAddr::ZERO,
                partner_system_priority: 0,
                partner_key: 0,
                individual: false,
                active: false,
            })
            .collect();
        let mut l = Lacp {
            settings,
            ports,
            aggregators,
            pending: VecDeque::new(),
            generation: 0,
        };
        l.run(now);
        l
    }

    pub fn settings(&self) -> &LacpSettings {
        &self.settings
    }

    /// Changes with every event that may change which ports carry traffic.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A link came up (with its speed and duplex) or went down, as the
    /// bond's link monitor decided after updelay/downdelay.
    pub fn set_link(
        &mut self,
        port: usize,
        up: bool,
        speed_mbps: u32,
        full_duplex: bool,
        now: Instant,
    ) {
        let user = self.settings.user_port_key << 6;
        let Some(p) = self.ports.get_mut(port) else {
            return;
        };
        if up {
            p.port_enabled = true;
            p.speed_mbps = speed_mbps;
            let speed = speed_code(speed_mbps);
            let key = user | speed << 1 | full_duplex as u16;
            if key != p.actor.key {
                let old_speed = (p.actor.key >> 1) & 0x1f;
                p.actor.key = key;
                // Only a full-duplex port takes part in LACP, and a speed
                // change starts the port over (ad_update_actor_keys()).
                p.lacp_enabled = full_duplex;
                if full_duplex && old_speed != speed {
                    p.begin = true;
                }
            }
        } else {
            p.port_enabled = false;
            if p.actor.key != user {
                p.actor.key = user;
                p.lacp_enabled = false;
            }
        }
        self.generation += 1;
        self.run(now);
    }

    /// Changes the actor system ID (the bond MAC changed).
    pub fn set_system(&mut self, system: MacAddr, now: Instant) {
        self.settings.system = system;
        for p in &mut self.ports {
            p.actor.system = system;
            p.ntt = true;
        }
        self.run(now);
    }

    /// A slow-protocol frame (LACPDU or marker) received on `port`.
    /// Malformed frames are counted and returned as errors; they change nothing.
    pub fn handle_frame(
        &mut self,
        port: usize,
        frame: &[u8],
        now: Instant,
    ) -> Result<(), WireError> {
        if port >= self.ports.len() {
            return Ok(());
        }
        match wire::slow_subtype(frame) {
            Some(wire::SUBTYPE_LACP) => match Lacpdu::new_checked(frame) {
                Ok(pdu) => {
                    self.handle_lacpdu(port, &pdu.actor(), &pdu.partner(), now);
                    Ok(())
                }
                Err(e) => {
                    self.ports[port].stats.lacpdu_illegal_rx += 1;
                    Err(e)
                }
            },
            Some(wire::SUBTYPE_MARKER) => match MarkerPdu::new_checked(frame) {
                Ok(m) => {
                    let info = m.info();
                    let p = &mut self.ports[port];
                    match info.kind {
                        MarkerKind::Information => {
                            // Marker responder (802.1AX-2014 6.5.4.2): the
                            // same TLV back, as a response.
                            p.stats.marker_rx += 1;
                            p.stats.marker_response_tx += 1;
                            let resp = MarkerInfo {
                                kind: MarkerKind::Response,
                                ..info
                            };
                            let mut b = [0u8; FRAME_LEN];
                            MarkerPdu::new_unchecked(&mut b[..]).emit(p.src_mac, &resp);
                            self.pending.push_back((port, b));
                        }
                        MarkerKind::Response => p.stats.marker_response_rx += 1,
                    }
                    Ok(())
                }
                Err(e) => {
                    self.ports[port].stats.unknown_rx += 1;
                    Err(e)
                }
            },
            other => {
                self.ports[port].stats.unknown_rx += 1;
                Err(WireError::Subtype(other.unwrap_or(0)))
            }
        }
    }

    /// The Receive machine's LACPDU-received transitions (to CURRENT).
    fn handle_lacpdu(&mut self, i: usize, actor: &LacpInfo, partner: &LacpInfo, now: Instant) {
        self.ports[i].stats.lacpdu_rx += 1;
        if actor.system == self.settings.system {
            // Our own LACPDU came back (bond_3ad.c: "illegal loopback").
            self.ports[i].stats.lacpdu_loopback_rx += 1;
            return;
        }
        if !matches!(
            self.ports[i].rx,
            RxState::Expired | RxState::Defaulted | RxState::Current
        ) {
            return;
        }
        // port_moved: the partner port now answering here was the partner
        // of another of our ports that is disabled.
        for (j, q) in self.ports.iter_mut().enumerate() {
            if j != i
                && q.rx == RxState::PortDisabled
                && q.partner.system == actor.system
                && q.partner.system_priority == actor.system_priority
                && q.partner.port == actor.port
                && q.partner.port_priority == actor.port_priority
            {
                q.port_moved = true;
            }
        }
        let p = &mut self.ports[i];
        // update_Selected
        let o = &p.partner;
        if actor.port != o.port
            || actor.port_priority != o.port_priority
            || actor.system != o.system
            || actor.system_priority != o.system_priority
            || actor.key != o.key
            || actor.state.aggregation() != o.state.aggregation()
        {
            p.selected = Selected::Unselected;
        }
        // update_NTT
        let a = &p.actor;
        const NTT_BITS: u8 = PortState::ACTIVITY
            | PortState::TIMEOUT
            | PortState::SYNCHRONIZATION
            | PortState::AGGREGATION;
        if partner.port != a.port
            || partner.port_priority != a.port_priority
            || partner.system != a.system
            || partner.system_priority != a.system_priority
            || partner.key != a.key
            || partner.state.0 & NTT_BITS != a.state.0 & NTT_BITS
        {
            p.ntt = true;
        }
        // recordPDU
        let matched = (partner.port == a.port
            && partner.port_priority == a.port_priority
            && partner.system == a.system
            && partner.system_priority == a.system_priority
            && partner.key == a.key
            && partner.state.aggregation() == a.state.aggregation())
            || !actor.state.aggregation();
        let both_passive = !a.state.activity() && !actor.state.activity();
        p.partner = *actor;
        p.partner.state.set(
            PortState::SYNCHRONIZATION,
            matched && actor.state.synchronization() && !both_passive,
        );
        p.actor.state.set(PortState::DEFAULTED, false);
        p.current_while = Some(
            now + if p.actor.state.short_timeout() {
                SHORT_TIMEOUT_TIME
            } else {
                LONG_TIMEOUT_TIME
            },
        );
        p.actor.state.set(PortState::EXPIRED, false);
        p.rx = RxState::Current;
        self.generation += 1;
        self.run(now);
    }

    /// Runs the timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.run(now);
    }

    /// The next instant at which [`Lacp::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut take = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        for p in &self.ports {
            take(p.current_while);
            take(p.periodic_timer);
            take(p.wait_while);
            if p.actor_churn == ChurnState::Monitoring {
                take(p.actor_churn_timer);
            }
            if p.partner_churn == ChurnState::Monitoring {
                take(p.partner_churn_timer);
            }
            if p.ntt && self.may_transmit(p) {
                // Held back by the rate limit: due when the oldest of the
                // last three transmissions is a period old.
                take(p.next_tx_slot());
            }
        }
        t
    }

    /// The next frame to send: `(port, frame)`.
    pub fn poll_transmit(&mut self) -> Option<(usize, [u8; FRAME_LEN])> {
        self.pending.pop_front()
    }

    /// Whether `port` may carry traffic: it is in COLLECTING_DISTRIBUTING
    /// in the active aggregator, or the active aggregator has no partner
    /// and the port is DEFAULTED (the fallback for a partner that does not
    /// speak LACP).
    pub fn collecting_distributing(&self, port: usize) -> bool {
        let Some(p) = self.ports.get(port) else {
            return false;
        };
        if !p.port_enabled {
            return false;
        }
        match p.aggregator {
            Some(a) if self.aggregators[a].active => {
                p.mux == MuxState::CollectingDistributing
                    || (!self.aggregators[a].has_partner() && p.rx == RxState::Defaulted)
            }
            _ => false,
        }
    }

    /// The active aggregator, if any.
    pub fn active_aggregator(&self) -> Option<&Aggregator> {
        self.aggregators.iter().find(|a| a.active)
    }

    /// Ports of an aggregator whose link is up (__agg_active_ports()).
    pub fn active_ports(&self, agg: &Aggregator) -> usize {
        agg.ports
            .iter()
            .filter(|&&p| self.ports[p].port_enabled)
            .count()
    }

    fn bandwidth(&self, agg: &Aggregator) -> u64 {
        agg.ports
            .iter()
            .filter(|&&p| self.ports[p].port_enabled)
            .map(|&p| self.ports[p].speed_mbps as u64)
            .sum()
    }

    fn may_transmit(&self, p: &LacpPort) -> bool {
        p.port_enabled && p.lacp_enabled && (p.actor.state.activity() || p.partner.state.activity())
    }

    /// Runs every machine until nothing changes, then the Transmit machine.
    fn run(&mut self, now: Instant) {
        // Each pass can only move machines forward; 32 passes is far more
        // than any chain of transitions needs, and bounds a bug.
        for _ in 0..32 {
            let mut changed = false;
            for i in 0..self.ports.len() {
                changed |= self.rx_machine(i, now);
                changed |= self.periodic_machine(i, now);
            }
            changed |= self.selection_logic();
            for i in 0..self.ports.len() {
                changed |= self.mux_machine(i, now);
                changed |= self.churn_machines(i, now);
            }
            for p in &mut self.ports {
                if p.begin {
                    p.begin = false;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
            self.generation += 1;
        }
        self.transmit_machine(now);
    }

    fn record_default(p: &mut LacpPort) {
        p.partner = p.partner_admin;
        p.actor.state.set(PortState::DEFAULTED, true);
    }

    fn enter_initialize(p: &mut LacpPort) {
        p.selected = Selected::Unselected;
        Self::record_default(p);
        p.actor.state.set(PortState::EXPIRED, false);
        p.port_moved = false;
        p.current_while = None;
        // UCT to PORT_DISABLED
        p.rx = RxState::PortDisabled;
        p.partner.state.set(PortState::SYNCHRONIZATION, false);
    }

    fn rx_machine(&mut self, i: usize, now: Instant) -> bool {
        let p = &mut self.ports[i];
        let before = (p.rx, p.selected, p.partner, p.actor.state);
        if p.begin {
            Self::enter_initialize(p);
        } else if !p.port_enabled && !p.port_moved {
            if p.rx != RxState::PortDisabled {
                p.rx = RxState::PortDisabled;
                p.current_while = None;
                p.partner.state.set(PortState::SYNCHRONIZATION, false);
            }
        } else {
            match p.rx {
                RxState::PortDisabled => {
                    if p.port_moved {
                        Self::enter_initialize(p);
                    } else if p.port_enabled && p.lacp_enabled {
                        p.rx = RxState::Expired;
                        p.partner.state.set(PortState::SYNCHRONIZATION, false);
                        p.partner.state.set(PortState::TIMEOUT, true);
                        p.current_while = Some(now + SHORT_TIMEOUT_TIME);
                        p.actor.state.set(PortState::EXPIRED, true);
                    } else if p.port_enabled {
                        p.rx = RxState::LacpDisabled;
                        p.selected = Selected::Unselected;
                        Self::record_default(p);
                        p.partner.state.set(PortState::AGGREGATION, false);
                        p.actor.state.set(PortState::EXPIRED, false);
                    }
                }
                RxState::Expired if expired(p.current_while, now) => {
                    p.rx = RxState::Defaulted;
                    p.current_while = None;
                    // update_Default_Selected
                    let (a, o) = (&p.partner_admin, &p.partner);
                    if a.port != o.port
                        || a.port_priority != o.port_priority
                        || a.system != o.system
                        || a.system_priority != o.system_priority
                        || a.key != o.key
                        || a.state.aggregation() != o.state.aggregation()
                    {
                        p.selected = Selected::Unselected;
                    }
                    Self::record_default(p);
                    p.actor.state.set(PortState::EXPIRED, false);
                }
                RxState::Current if expired(p.current_while, now) => {
                    p.rx = RxState::Expired;
                    p.partner.state.set(PortState::SYNCHRONIZATION, false);
                    p.partner.state.set(PortState::TIMEOUT, true);
                    p.current_while = Some(now + SHORT_TIMEOUT_TIME);
                    p.actor.state.set(PortState::EXPIRED, true);
                }
                RxState::LacpDisabled if p.lacp_enabled => {
                    p.rx = RxState::PortDisabled;
                    p.partner.state.set(PortState::SYNCHRONIZATION, false);
                }
                _ => {}
            }
        }
        before != (p.rx, p.selected, p.partner, p.actor.state)
    }

    fn periodic_machine(&mut self, i: usize, now: Instant) -> bool {
        let p = &mut self.ports[i];
        let before = (p.periodic, p.ntt);
        if p.begin
            || !p.lacp_enabled
            || !p.port_enabled
            || (!p.actor.state.activity() && !p.partner.state.activity())
        {
            p.periodic = PeriodicState::NoPeriodic;
            p.periodic_timer = None;
        } else {
            let short = p.partner.state.short_timeout();
            let next = match p.periodic {
                PeriodicState::NoPeriodic => Some(PeriodicState::FastPeriodic),
                PeriodicState::FastPeriodic if expired(p.periodic_timer, now) => {
                    Some(PeriodicState::PeriodicTx)
                }
                PeriodicState::FastPeriodic if !short => Some(PeriodicState::SlowPeriodic),
                PeriodicState::SlowPeriodic if expired(p.periodic_timer, now) || short => {
                    Some(PeriodicState::PeriodicTx)
                }
                PeriodicState::PeriodicTx if short => Some(PeriodicState::FastPeriodic),
                PeriodicState::PeriodicTx => Some(PeriodicState::SlowPeriodic),
                _ => None,
            };
            if let Some(s) = next {
                p.periodic = s;
                match s {
                    PeriodicState::FastPeriodic => {
                        p.periodic_timer = Some(now + FAST_PERIODIC_TIME)
                    }
                    PeriodicState::SlowPeriodic => {
                        p.periodic_timer = Some(now + SLOW_PERIODIC_TIME)
                    }
                    PeriodicState::PeriodicTx => {
                        p.periodic_timer = None;
                        p.ntt = true;
                    }
                    PeriodicState::NoPeriodic => p.periodic_timer = None,
                }
            }
        }
        before != (p.periodic, p.ntt)
    }

    /// Selection Logic (6.4.14) and the choice of the bond's one active
    /// aggregator (ad_select, as bond_3ad.c's ad_agg_selection_logic()).
    fn selection_logic(&mut self) -> bool {
        let mut changed = false;
        // A port that is UNSELECTED and has detached from its old
        // aggregator picks a new one.
        for i in 0..self.ports.len() {
            let (sel, mux) = (self.ports[i].selected, self.ports[i].mux);
            if sel != Selected::Unselected || mux != MuxState::Detached {
                continue;
            }
            if let Some(a) = self.ports[i].aggregator.take() {
                let agg = &mut self.aggregators[a];
                agg.ports.retain(|&p| p != i);
                if agg.ports.is_empty() {
                    agg.clear();
                }
            }
            let p = &self.ports[i];
            let individual = !p.actor.state.aggregation()
                || !p.partner.state.aggregation()
                || p.actor.key & 1 == 0;
            let found = if individual {
                None
            } else {
                self.aggregators.iter().position(|g| {
                    !g.ports.is_empty()
                        && !g.individual
                        && g.has_partner()
                        && g.actor_key == p.actor.key
                        && g.partner_system == p.partner.system
                        && g.partner_system_priority == p.partner.system_priority
                        && g.partner_key == p.partner.key
                })
            };
            let a = match found {
                Some(a) => a,
                None => match self.aggregators.iter().position(|g| g.ports.is_empty()) {
                    Some(a) => {
                        let g = &mut self.aggregators[a];
                        g.individual = individual;
                        g.actor_key = p.actor.key;
                        g.partner_system = p.partner.system;
                        g.partner_system_priority = p.partner.system_priority;
                        g.partner_key = p.partner.key;
                        g.active = false;
                        a
                    }
                    // Cannot happen: there are as many aggregators as ports.
                    None => continue,
                },
            };
            self.aggregators[a].ports.push(i);
            let p = &mut self.ports[i];
            p.aggregator = Some(a);
            p.selected = Selected::Selected;
            changed = true;
        }

        // The active aggregator.
        let current = self.aggregators.iter().position(|g| g.active);
        let device_up = |l: &Lacp, a: usize| l.active_ports(&l.aggregators[a]) > 0;
        let mut best = current.filter(|&a| device_up(self, a));
        for a in 0..self.aggregators.len() {
            if device_up(self, a) {
                best = Some(self.better_aggregator(best, a));
            }
        }
        if let (Some(b), Some(cur)) = (best, current) {
            if self.settings.ad_select == AdSelect::Stable {
                let c = &self.aggregators[cur];
                let keep = !c.ports.is_empty()
                    && self.active_ports(c) > 0
                    && (c.has_partner() || !self.aggregators[b].has_partner())
                    && !(c.actor_key == 0 && self.aggregators[b].actor_key != 0);
                if keep {
                    best = Some(cur);
                }
            }
        }
        if best != current {
            for (a, g) in self.aggregators.iter_mut().enumerate() {
                g.active = Some(a) == best;
            }
            changed = true;
        }

        // Ports of other aggregators stand by.
        for p in &mut self.ports {
            if p.selected == Selected::Unselected {
                continue;
            }
            if let Some(a) = p.aggregator {
                let want = if self.aggregators[a].active {
                    Selected::Selected
                } else {
                    Selected::Standby
                };
                if p.selected != want {
                    p.selected = want;
                    changed = true;
                }
            }
        }
        changed
    }

    /// ad_agg_selection_test(): is `curr` a better active aggregator than `best`?
    fn better_aggregator(&self, best: Option<usize>, curr: usize) -> usize {
        let Some(b) = best else { return curr };
        let (bg, cg) = (&self.aggregators[b], &self.aggregators[curr]);
        if !cg.individual && bg.individual {
            return curr;
        }
        if cg.individual && !bg.individual {
            return b;
        }
        if cg.has_partner() && !bg.has_partner() {
            return curr;
        }
        if !cg.has_partner() && bg.has_partner() {
            return b;
        }
        if self.settings.ad_select == AdSelect::Count {
            let (na, nb) = (self.active_ports(cg), self.active_ports(bg));
            if na != nb {
                return if na > nb { curr } else { b };
            }
        }
        if self.bandwidth(cg) > self.bandwidth(bg) {
            curr
        } else {
            b
        }
    }

    fn aggregator_ready(&self, a: usize) -> bool {
        self.aggregators[a]
            .ports
            .iter()
            .all(|&p| self.ports[p].ready_n)
    }

    fn mux_machine(&mut self, i: usize, now: Instant) -> bool {
        let ready = self.ports[i]
            .aggregator
            .is_some_and(|a| self.aggregator_ready(a));
        let p = &mut self.ports[i];
        let before = (p.mux, p.ready_n, p.actor.state);
        let next = if p.begin {
            (p.mux != MuxState::Detached).then_some(MuxState::Detached)
        } else {
            match p.mux {
                MuxState::Detached if p.selected != Selected::Unselected => Some(MuxState::Waiting),
                MuxState::Waiting if p.selected == Selected::Unselected => Some(MuxState::Detached),
                MuxState::Waiting => {
                    if expired(p.wait_while, now) {
                        p.wait_while = None;
                        p.ready_n = true;
                    }
                    // Ready is recomputed on the next pass once Ready_N changed.
                    (p.selected == Selected::Selected && p.ready_n && ready)
                        .then_some(MuxState::Attached)
                }
                MuxState::Attached if p.selected != Selected::Selected => Some(MuxState::Detached),
                MuxState::Attached if p.partner.state.synchronization() => {
                    Some(MuxState::CollectingDistributing)
                }
                MuxState::CollectingDistributing
                    if p.selected != Selected::Selected || !p.partner.state.synchronization() =>
                {
                    Some(MuxState::Attached)
                }
                _ => None,
            }
        };
        if let Some(s) = next {
            p.mux = s;
            let st = &mut p.actor.state;
            match s {
                MuxState::Detached => {
                    st.set(PortState::SYNCHRONIZATION, false);
                    st.set(PortState::COLLECTING, false);
                    st.set(PortState::DISTRIBUTING, false);
                    p.ready_n = false;
                    p.wait_while = None;
                    p.ntt = true;
                }
                MuxState::Waiting => {
                    p.wait_while = Some(now + AGGREGATE_WAIT_TIME);
                }
                MuxState::Attached => {
                    st.set(PortState::SYNCHRONIZATION, true);
                    st.set(PortState::COLLECTING, false);
                    st.set(PortState::DISTRIBUTING, false);
                    p.ntt = true;
                }
                MuxState::CollectingDistributing => {
                    st.set(PortState::COLLECTING, true);
                    st.set(PortState::DISTRIBUTING, true);
                    p.ntt = true;
                }
            }
        }
        before != (p.mux, p.ready_n, p.actor.state)
    }

    fn churn_machines(&mut self, i: usize, now: Instant) -> bool {
        let p = &mut self.ports[i];
        let before = (
            p.actor_churn,
            p.partner_churn,
            p.actor_churn_timer,
            p.partner_churn_timer,
        );
        let enabled = !p.begin && p.port_enabled;
        churn_step(
            enabled,
            p.actor.state.synchronization(),
            &mut p.actor_churn,
            &mut p.actor_churn_timer,
            &mut p.actor_churn_count,
            now,
        );
        churn_step(
            enabled,
            p.partner.state.synchronization(),
            &mut p.partner_churn,
            &mut p.partner_churn_timer,
            &mut p.partner_churn_count,
            now,
        );
        before
            != (
                p.actor_churn,
                p.partner_churn,
                p.actor_churn_timer,
                p.partner_churn_timer,
            )
    }

    /// The Transmit machine: one LACPDU per port with NTT, at most three
    /// per Fast_Periodic_Time.
    fn transmit_machine(&mut self, now: Instant) {
        for i in 0..self.ports.len() {
            let p = &self.ports[i];
            if !p.ntt || !self.may_transmit(p) {
                continue;
            }
            let p = &mut self.ports[i];
            if let Some(oldest) = p.tx_times[p.tx_next] {
                if now < oldest + FAST_PERIODIC_TIME {
                    p.stats.tx_rate_limited += 1;
                    continue;
                }
            }
            let mut b = [0u8; FRAME_LEN];
            Lacpdu::new_unchecked(&mut b[..]).emit(p.src_mac, &p.actor, &p.partner, 0);
            p.tx_times[p.tx_next] = Some(now);
            p.tx_next = (p.tx_next + 1) % MAX_TX_PER_PERIOD;
            p.ntt = false;
            p.stats.lacpdu_tx += 1;
            self.pending.push_back((i, b));
        }
    }
}

impl LacpPort {
    /// When the rate limit next allows a transmission, if it holds one back.
    fn next_tx_slot(&self) -> Option<Instant> {
        self.tx_times[self.tx_next].map(|t| t + FAST_PERIODIC_TIME)
    }

    /// Whether the port's link is up as far as LACP knows.
    pub fn port_enabled(&self) -> bool {
        self.port_enabled
    }

    pub fn speed_mbps(&self) -> u32 {
        self.speed_mbps
    }
}

/// One Churn Detection machine (802.1AX-2014 figures 6-23, 6-24).
fn churn_step(
    enabled: bool,
    sync: bool,
    state: &mut ChurnState,
    timer: &mut Option<Instant>,
    count: &mut u32,
    now: Instant,
) {
    if !enabled {
        // BEGIN or !port_enabled: CHURN_MONITOR, timer restarted once the
        // port is enabled.
        *state = ChurnState::Monitoring;
        *timer = None;
        return;
    }
    match *state {
        ChurnState::Monitoring => {
            if sync {
                *state = ChurnState::None;
                *timer = None;
            } else if timer.is_none() {
                *timer = Some(now + CHURN_DETECTION_TIME);
            } else if expired(*timer, now) {
                *state = ChurnState::Churned;
                *timer = None;
                *count += 1;
            }
        }
        ChurnState::None => {
            if !sync {
                *state = ChurnState::Monitoring;
                *timer = Some(now + CHURN_DETECTION_TIME);
            }
        }
        ChurnState::Churned => {
            if sync {
                *state = ChurnState::None;
            }
        }
    }
}
