//! [`BondPort`]: the I/O shell around the [`Bond`] core, split as DPDK's
//! bonding PMD is: a control side that is a [`Port`], and per-queue
//! [`RxQueue`] and [`TxQueue`] handles that the lcores own.
//!
//! - The control side owns the members' control sides, the protocol core,
//!   the clock and the receive filters. [`Port::service`] samples links,
//!   runs the core's timers, feeds it the slow-protocol frames the receive
//!   handles passed up, and sends what the core asks for.
//! - After every change of the core's transmit members or receive set,
//!   the control side publishes both as two 32-bit masks in one
//!   `AtomicU64`. A transmit handle loads it once per burst (Acquire) and
//!   rebuilds its own member list only when the word changed; a receive
//!   handle loads it after each member read that returned frames. No
//!   lock, no atomic read-modify-write on the burst path.
//! - Bond receive handle `q` owns receive handle `q` of every member, bond
//!   transmit handle `q` transmit handle `q` of every member. In 802.3ad
//!   mode a receive handle takes slow-protocol frames out of the stream
//!   and passes them to the control side through a single-producer,
//!   single-consumer ring.
//! - Every member is configured with one transmit queue more than the
//!   bond has; the control side keeps that last queue of each member for
//!   LACPDUs, marker responses and failover announcements (DPDK's
//!   "dedicated queues"), so they never wait for the application's
//!   `tx_burst`.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pollux_core::ring::{channel, Consumer, Mode as RingMode, Producer};
use pollux_core::wire::{ArpOp, EthernetFrame, Ipv4Packet, Ipv6Packet, IPPROTO_ICMPV6};
use pollux_core::{
    Burst, Capabilities, Duplex, Lease, Leases, LinkStatus, MacAddr, Mbuf, Mempool, Port, PortConf,
    PortError, PortInfo, PortStats, QueueStats, Queues, RunFlag, RxOffloads, RxQueue, TxFlags,
    TxOffloads, TxQueue, Xstat,
};

use crate::alb::{NO_MEMBER, TLB_HASH_TABLE_SIZE};
use crate::bond::{Action, Bond, MemberSpec};
use crate::config::{BondConfig, Mode, XmitHashPolicy, MAX_MEMBERS};
use crate::hash::{xmit_hash, FastMod};
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
/// Slow-protocol frames one receive handle can pass up between two
/// [`Port::service`] calls; more are dropped and counted. LACP sends at
/// most three a second per member, so only a flood fills it.
const SLOW_RING: usize = 256;

/// Counters of the I/O shell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ShellCounters {
    /// Frames received on members that do not deliver (backups,
    /// non-collecting ports) and dropped. Counted by the receive handles.
    pub rx_dropped_inactive: u64,
    /// Transmit calls that found no usable member (packets left with the
    /// caller). Counted by the transmit handles.
    pub tx_no_member: u64,
    /// Control frames (LACPDUs, marker responses, announcements) sent.
    pub ctrl_tx: u64,
    /// Control frames that could not be sent (no buffer, member ring full).
    pub ctrl_tx_failed: u64,
    /// Broadcast copies that could not be made (pool empty). Counted by
    /// the transmit handles.
    pub broadcast_copy_failed: u64,
    /// Member control operations that failed after start (set MAC, filters).
    pub member_op_failed: u64,
    /// Slow-protocol frames a receive handle dropped because the control
    /// side had not taken the earlier ones yet (`service` not called, or a
    /// flood). Counted by the receive handles.
    pub slow_rx_dropped: u64,
}

impl ShellCounters {
    fn since(self, base: ShellCounters) -> ShellCounters {
        ShellCounters {
            rx_dropped_inactive: self
                .rx_dropped_inactive
                .wrapping_sub(base.rx_dropped_inactive),
            tx_no_member: self.tx_no_member.wrapping_sub(base.tx_no_member),
            ctrl_tx: self.ctrl_tx.wrapping_sub(base.ctrl_tx),
            ctrl_tx_failed: self.ctrl_tx_failed.wrapping_sub(base.ctrl_tx_failed),
            broadcast_copy_failed: self
                .broadcast_copy_failed
                .wrapping_sub(base.broadcast_copy_failed),
            member_op_failed: self.member_op_failed.wrapping_sub(base.member_op_failed),
            slow_rx_dropped: self.slow_rx_dropped.wrapping_sub(base.slow_rx_dropped),
        }
    }
}

/// A counter with one writer, the queue handle that owns it: an update is
/// a relaxed load and a relaxed store, not a read-modify-write. The
/// control side only reads it.
#[derive(Debug, Default)]
struct Counter(AtomicU64);

impl Counter {
    #[inline]
    fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The shell counters one receive handle writes.
#[derive(Debug, Default)]
#[repr(align(64))]
struct RxCounters {
    dropped_inactive: Counter,
    slow_dropped: Counter,
}

/// The shell counters one transmit handle writes.
#[derive(Debug)]
#[repr(align(64))]
struct TxCounters {
    no_member: Counter,
    broadcast_copy_failed: Counter,
    /// Control frames queue 0 took from the control side but no member
    /// queue accepted (shared control path only).
    ctrl_failed: Counter,
    /// balance-tlb/alb: bytes sent per bucket of the flow table, read by
    /// the control side at every rebalance.
    tlb_bytes: [Counter; TLB_HASH_TABLE_SIZE],
    /// balance-tlb/alb: bytes sent outside the table (on the active member).
    unbalanced: Counter,
}

impl Default for TxCounters {
    fn default() -> TxCounters {
        TxCounters {
            no_member: Counter::default(),
            broadcast_copy_failed: Counter::default(),
            ctrl_failed: Counter::default(),
            tlb_bytes: std::array::from_fn(|_| Counter::default()),
            unbalanced: Counter::default(),
        }
    }
}

/// What balance-tlb and balance-alb transmit handles need of the control
/// side besides the member masks, published with plain stores after every
/// change and read with plain loads: the active member, the flow table
/// (one byte per bucket, eight to a word) and each member's MAC (frames
/// that leave on a member other than the active one carry that member's
/// MAC as their source, as bond_alb.c's bond_do_alb_xmit() writes it).
#[derive(Debug)]
struct AlbShared {
    active: AtomicU64,
    table: [AtomicU64; TLB_HASH_TABLE_SIZE / 8],
    macs: [AtomicU64; MAX_MEMBERS],
}

impl Default for AlbShared {
    fn default() -> AlbShared {
        AlbShared {
            active: AtomicU64::new(u64::MAX),
            table: std::array::from_fn(|_| AtomicU64::new(u64::MAX)),
            macs: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

fn mac_word(m: MacAddr) -> u64 {
    let mut b = [0u8; 8];
    b[..6].copy_from_slice(&m.0);
    u64::from_le_bytes(b)
}

fn word_mac(w: u64) -> [u8; 6] {
    let b = w.to_le_bytes();
    [b[0], b[1], b[2], b[3], b[4], b[5]]
}

/// Stores `v` only when it differs: a store invalidates the line in every
/// lcore's cache.
fn store_if_changed(a: &AtomicU64, v: u64) {
    if a.load(Ordering::Relaxed) != v {
        a.store(v, Ordering::Release);
    }
}

/// Where the bond's control frames (LACPDUs, marker responses,
/// announcements) leave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CtrlPath {
    /// Each member's last transmit queue, kept by the control side: frames
    /// leave from `service` whatever the application does (DPDK bonding's
    /// "dedicated queues").
    Dedicated,
    /// Members with no transmit queue to spare (ring, pcap, af_packet
    /// ports): the control side queues frames in a single-producer ring
    /// per member and the bond's transmit queue 0 sends them at its next
    /// call, an empty burst included, as DPDK's bonding does without
    /// dedicated queues.
    Shared,
}

/// Depth of a member's control-frame ring on the shared path.
const CTRL_RING: usize = 64;

/// The members the data path uses, as published by the control side: bit
/// `i` of the low half is set when member `i` transmits, bit `i` of the
/// high half when member `i`'s received frames go up.
fn view_word(core: &Bond) -> u64 {
    let tx = core.tx_members().iter().fold(0u32, |m, &i| m | 1 << i);
    let rx = (0..core.member_count())
        .filter(|&i| core.rx_enabled(i))
        .fold(0u32, |m, i| m | 1 << i);
    tx as u64 | (rx as u64) << 32
}

/// A transmit handle's copy of the transmit members: the ascending list
/// the low half of the view word stands for (what
/// [`Bond::tx_members`] returns), and `% len` as the core computes it, so
/// [`TxView::index`] is [`Bond::tx_index`].
#[derive(Clone, Copy, Debug)]
struct TxView {
    word: u64,
    list: [u8; MAX_MEMBERS],
    /// Member to position in `list` ([`NO_MEMBER`]: not transmitting).
    pos: [u8; MAX_MEMBERS],
    len: usize,
    modulo: FastMod,
}

impl TxView {
    fn new(word: u64) -> TxView {
        let mut list = [0u8; MAX_MEMBERS];
        let mut pos = [NO_MEMBER; MAX_MEMBERS];
        let mut len = 0;
        let mut mask = word as u32;
        while mask != 0 {
            let m = mask.trailing_zeros() as u8;
            list[len] = m;
            pos[m as usize] = len as u8;
            len += 1;
            mask &= mask - 1;
        }
        TxView {
            word,
            list,
            pos,
            len,
            modulo: FastMod::new(len as u32),
        }
    }

    /// `hash % len`: the position in the list, as [`Bond::tx_index`].
    #[inline]
    fn index(&self, hash: u32) -> usize {
        self.modulo.rem(hash) as usize
    }
}

/// A slow-protocol frame (802.3ad) or an ARP request for one of the
/// bond's addresses (balance-alb) on its way from a receive handle to the
/// control side.
struct SlowFrame {
    member: usize,
    frame: Mbuf,
}

/// Member queues taken at start, waiting for [`Port::take_queues`]:
/// `rx[q][member]`, `tx[q][member]`.
struct Pending {
    rx: Vec<Vec<Box<dyn RxQueue>>>,
    tx: Vec<Vec<Box<dyn TxQueue>>>,
    slow: Vec<Producer<SlowFrame>>,
    /// Shared path: the consumer ends, for transmit queue 0.
    ctrl: Vec<Consumer<Mbuf>>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Applied {
    promiscuous: bool,
    allmulticast: bool,
}

/// A bond of member ports, the control side. See the [crate
/// docs](crate#control-side-and-queue-handles) for the contract.
pub struct BondPort {
    name: String,
    cfg: BondConfig,
    core: Bond,
    specs: Vec<MemberSpec>,
    members: Vec<Box<dyn Port>>,
    clock: Box<dyn Clock>,
    pool: Option<Mempool>,
    rx_queues: u16,
    tx_queues: u16,
    started: bool,
    run: RunFlag,
    leases: Leases,
    /// The member queues of this start, until `take_queues`.
    pending: Option<Pending>,
    ctrl_path: CtrlPath,
    /// Each member's dedicated control transmit queue (its last one).
    ctrl_tx: Vec<Box<dyn TxQueue>>,
    /// Shared path: the producer end of each member's control ring.
    ctrl_ring: Vec<Producer<Mbuf>>,
    /// One per bond receive queue (802.3ad and balance-alb).
    slow_rx: Vec<Consumer<SlowFrame>>,
    view: Arc<AtomicU64>,
    /// balance-tlb/alb: the rest of what the transmit handles follow.
    alb: Arc<AlbShared>,
    /// balance-tlb/alb: what per-queue counters of earlier configurations
    /// counted per bucket, and outside the table.
    tlb_retired: Box<[u64; TLB_HASH_TABLE_SIZE]>,
    unbalanced_retired: u64,
    links: Vec<LinkStatus>,
    promiscuous: bool,
    allmulticast: bool,
    mc_list: Vec<MacAddr>,
    applied: Vec<Applied>,
    /// The control side's own counts (ctrl_tx, ctrl_tx_failed,
    /// member_op_failed).
    ctl: ShellCounters,
    /// What per-queue counters of earlier configurations counted.
    retired: ShellCounters,
    /// Counter values at the last `reset_stats`.
    base: ShellCounters,
    rx_counters: Vec<Arc<RxCounters>>,
    tx_counters: Vec<Arc<TxCounters>>,
}

impl std::fmt::Debug for BondPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BondPort")
            .field("name", &self.name)
            .field("mode", &self.cfg.mode)
            .field("members", &self.cfg.members)
            .field("started", &self.started)
            .field("queues_out", &self.leases.outstanding())
            .finish()
    }
}

impl BondPort {
    /// A bond named `name` over `members` (name, port), configured by
    /// `config`. When `config.members` is not empty it must name exactly
    /// the supplied ports; member order (hashing, round-robin, the first
    /// member's MAC as the bond's) is `config.members`' order, or the
    /// supplied order when the configuration names none. At most
    /// [`MAX_MEMBERS`] members. Uses the monotonic clock.
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
        let core = Bond::new(&config, &specs, clock.now())?;
        let n = members.len();
        Ok(BondPort {
            name: name.into(),
            cfg: config,
            core,
            specs,
            members: members.into_iter().map(|(_, p)| p).collect(),
            clock,
            pool: None,
            rx_queues: 0,
            tx_queues: 0,
            started: false,
            run: RunFlag::new(),
            leases: Leases::new(),
            pending: None,
            ctrl_path: CtrlPath::Dedicated,
            ctrl_tx: Vec::new(),
            ctrl_ring: Vec::new(),
            slow_rx: Vec::new(),
            view: Arc::new(AtomicU64::new(0)),
            alb: Arc::default(),
            tlb_retired: Box::new([0; TLB_HASH_TABLE_SIZE]),
            unbalanced_retired: 0,
            links: vec![LinkStatus::DOWN; n],
            promiscuous: false,
            allmulticast: false,
            mc_list: Vec::new(),
            applied: vec![Applied::default(); n],
            ctl: ShellCounters::default(),
            retired: ShellCounters::default(),
            base: ShellCounters::default(),
            rx_counters: Vec::new(),
            tx_counters: Vec::new(),
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

    /// A member port's control side, read-only.
    pub fn member(&self, i: usize) -> Option<&dyn Port> {
        self.members.get(i).map(|p| &**p)
    }

    /// Shell counters: the control side's own, plus what every queue
    /// handle counted, since the last `reset_stats`.
    pub fn shell_counters(&self) -> ShellCounters {
        self.raw_counters().since(self.base)
    }

    fn raw_counters(&self) -> ShellCounters {
        let mut c = self.ctl;
        let r = self.retired;
        c.rx_dropped_inactive = c.rx_dropped_inactive.wrapping_add(r.rx_dropped_inactive);
        c.slow_rx_dropped = c.slow_rx_dropped.wrapping_add(r.slow_rx_dropped);
        c.tx_no_member = c.tx_no_member.wrapping_add(r.tx_no_member);
        c.broadcast_copy_failed = c
            .broadcast_copy_failed
            .wrapping_add(r.broadcast_copy_failed);
        for q in &self.rx_counters {
            c.rx_dropped_inactive = c.rx_dropped_inactive.wrapping_add(q.dropped_inactive.get());
            c.slow_rx_dropped = c.slow_rx_dropped.wrapping_add(q.slow_dropped.get());
        }
        for q in &self.tx_counters {
            c.tx_no_member = c.tx_no_member.wrapping_add(q.no_member.get());
            c.broadcast_copy_failed = c
                .broadcast_copy_failed
                .wrapping_add(q.broadcast_copy_failed.get());
            c.ctrl_tx_failed = c.ctrl_tx_failed.wrapping_add(q.ctrl_failed.get());
            c.ctrl_tx = c.ctrl_tx.wrapping_sub(q.ctrl_failed.get());
        }
        c
    }

    /// The same as [`Port::service`], under the name earlier versions
    /// used.
    pub fn poll(&mut self) {
        self.service_now();
    }

    fn service_now(&mut self) {
        let now = self.clock.now();
        self.service_at(now);
    }

    fn service_at(&mut self, now: Instant) {
        // The members' own periodic work (a VF's mailbox and reset
        // recovery, counter sampling): their control sides are ours, so
        // nobody else can call it.
        for m in &mut self.members {
            m.service();
        }
        if !self.started {
            return;
        }
        if self.core.link_check_due(now) {
            for (l, m) in self.links.iter_mut().zip(self.members.iter_mut()) {
                *l = m.link();
            }
            self.core.handle_links(now, &self.links);
        }
        // Frames the receive handles passed up since the last call; they
        // arrived at most one service interval ago.
        let lacp = self.cfg.mode == Mode::Ieee8023ad;
        for ring in &mut self.slow_rx {
            while let Some(f) = ring.dequeue() {
                if lacp {
                    let _ = self.core.handle_slow_frame(now, f.member, f.frame.data());
                } else {
                    self.core.handle_arp(now, f.member, f.frame.data());
                }
            }
        }
        if self.core.tlb_rebalance_due(now) {
            let (totals, unbalanced) = self.tlb_totals();
            self.core.handle_tlb_load(now, &totals, unbalanced);
        }
        self.core.handle_timeout(now);
        self.run_actions();
        self.publish();
    }

    /// balance-tlb/alb: the bytes each bucket sent since the bond was made,
    /// and the bytes sent outside the table: every transmit handle's
    /// single-writer counters summed (plain loads).
    fn tlb_totals(&self) -> ([u64; TLB_HASH_TABLE_SIZE], u64) {
        let mut t = *self.tlb_retired;
        let mut u = self.unbalanced_retired;
        for q in &self.tx_counters {
            for (b, c) in q.tlb_bytes.iter().enumerate() {
                t[b] = t[b].wrapping_add(c.get());
            }
            u = u.wrapping_add(q.unbalanced.get());
        }
        (t, u)
    }

    /// Tells the queue handles about the core's current member sets (and,
    /// in balance-tlb/alb, the active member, the flow table and the
    /// members' MACs; those before the masks, so a handle that sees new
    /// masks sees a table at least as new).
    fn publish(&mut self) {
        if let Some(table) = self.core.tlb_table() {
            for (k, chunk) in table.chunks(8).enumerate() {
                let mut w = [0u8; 8];
                w.copy_from_slice(chunk);
                store_if_changed(&self.alb.table[k], u64::from_le_bytes(w));
            }
            let active = self.core.active().map_or(u64::MAX, |a| a as u64);
            store_if_changed(&self.alb.active, active);
            for i in 0..self.members.len() {
                store_if_changed(&self.alb.macs[i], mac_word(self.core.member_mac(i)));
            }
        }
        let w = if self.started {
            view_word(&self.core)
        } else {
            0
        };
        // Stored only when it changed: a store invalidates the line in
        // every lcore's cache.
        if self.view.load(Ordering::Relaxed) != w {
            self.view.store(w, Ordering::Release);
        }
    }

    /// Carries out what the core asked for. Failures after start cannot be
    /// returned to anyone; they are counted and logged.
    fn run_actions(&mut self) {
        while let Some(a) = self.core.poll_action() {
            if let Err(e) = self.do_action(a) {
                self.ctl.member_op_failed += 1;
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
            Action::FiltersChanged { member } => self.apply_filters(member),
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

    /// Sends a control frame on the member's dedicated queue. Before
    /// start there is none and nothing to say: start begins LACP anew.
    fn send_control(&mut self, member: usize, frame: &[u8]) {
        if !self.started {
            return;
        }
        if self.ctrl_path == CtrlPath::Shared {
            return self.queue_control(member, frame);
        }
        let (Some(pool), Some(q)) = (&self.pool, self.ctrl_tx.get_mut(member)) else {
            self.ctl.ctrl_tx_failed += 1;
            return;
        };
        let Some(mut m) = pool.alloc() else {
            self.ctl.ctrl_tx_failed += 1;
            return;
        };
        if !m.copy_from(frame) {
            self.ctl.ctrl_tx_failed += 1;
            return;
        }
        let mut b = Burst::new(1);
        let _ = b.push(m);
        if q.tx_burst(&mut b) == 1 {
            self.ctl.ctrl_tx += 1;
        } else {
            self.ctl.ctrl_tx_failed += 1;
        }
    }

    /// Shared path: hands a control frame to transmit queue 0.
    fn queue_control(&mut self, member: usize, frame: &[u8]) {
        let (Some(pool), Some(ring)) = (&self.pool, self.ctrl_ring.get_mut(member)) else {
            self.ctl.ctrl_tx_failed += 1;
            return;
        };
        let Some(mut m) = pool.alloc() else {
            self.ctl.ctrl_tx_failed += 1;
            return;
        };
        if !m.copy_from(frame) || ring.enqueue(m).is_err() {
            self.ctl.ctrl_tx_failed += 1;
            return;
        }
        self.ctl.ctrl_tx += 1;
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
        // balance-alb: the active member also receives a failed member's
        // MAC for a while (rlb_teach_disabled_mac_on_primary()).
        let mut want_promisc = (user && self.promiscuous) || self.core.alb_promiscuous() == Some(i);
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

    fn member_error(&self, i: usize, what: &str, e: PortError) -> PortError {
        PortError::Other(format!(
            "bond {}: member {}: {what}{e}",
            self.name, self.specs[i].name
        ))
    }

    /// Starts the members, takes their queues (the last transmit queue of
    /// each is the control queue) and a fresh core.
    fn start_inner(&mut self) -> Result<(), PortError> {
        let n = self.members.len();
        for i in 0..n {
            if let Err(e) = self.members[i].start() {
                return Err(self.member_error(i, "", e));
            }
        }
        // Every member's queues now: the control queues must be ours
        // before the first LACPDU, whether or not anyone takes the bond's.
        let (rxq, txq) = (self.rx_queues as usize, self.tx_queues as usize);
        let mut pending = Pending {
            rx: (0..rxq).map(|_| Vec::with_capacity(n)).collect(),
            tx: (0..txq).map(|_| Vec::with_capacity(n)).collect(),
            slow: Vec::new(),
            ctrl: Vec::new(),
        };
        let extra = usize::from(self.ctrl_path == CtrlPath::Dedicated);
        let mut ctrl = Vec::with_capacity(n);
        for i in 0..n {
            let q = match self.members[i].take_queues() {
                Ok(q) => q,
                Err(e) => return Err(self.member_error(i, "taking its queues: ", e)),
            };
            if q.rx.len() != rxq || q.tx.len() != txq + extra {
                return Err(self.member_error(
                    i,
                    "",
                    PortError::Other(format!(
                        "handed out {} rx and {} tx queues where {rxq} and {} were configured",
                        q.rx.len(),
                        q.tx.len(),
                        txq + extra
                    )),
                ));
            }
            let mut tx = q.tx;
            if extra == 1 {
                ctrl.extend(tx.pop());
            }
            for (k, h) in q.rx.into_iter().enumerate() {
                pending.rx[k].push(h);
            }
            for (k, h) in tx.into_iter().enumerate() {
                pending.tx[k].push(h);
            }
        }
        self.ctrl_tx = ctrl;
        self.ctrl_ring.clear();
        if self.ctrl_path == CtrlPath::Shared {
            for _ in 0..n {
                let (p, c) = channel(CTRL_RING, RingMode::Single, RingMode::Single)
                    .map_err(|e| PortError::Other(e.to_string()))?;
                self.ctrl_ring.push(p);
                pending.ctrl.push(c);
            }
        }
        self.slow_rx.clear();
        if self.cfg.mode == Mode::Ieee8023ad || self.cfg.mode == Mode::BalanceAlb {
            for _ in 0..rxq {
                let (p, c) = channel(SLOW_RING, RingMode::Single, RingMode::Single)
                    .map_err(|e| PortError::Other(e.to_string()))?;
                pending.slow.push(p);
                self.slow_rx.push(c);
            }
        }
        self.pending = Some(pending);

        let now = self.clock.now();
        self.core = Bond::new(&self.cfg, &self.specs, now).map_err(PortError::from)?;
        self.applied = vec![Applied::default(); n];
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
        self.run.set(true);
        for a in deferred {
            if let Err(e) = self.do_action(a) {
                self.ctl.member_op_failed += 1;
                tracing::warn!(bond = %self.name, "{e}");
            }
        }
        self.service_at(now);
        Ok(())
    }

    /// Stops the handles and the members and gives the members' queues
    /// back; returns the first member error.
    fn halt(&mut self) -> Result<(), PortError> {
        self.started = false;
        self.run.set(false);
        self.publish();
        self.pending = None;
        self.ctrl_tx.clear();
        self.ctrl_ring.clear();
        let mut r = Ok(());
        for i in 0..self.members.len() {
            if let Err(e) = self.members[i].stop() {
                if r.is_ok() {
                    r = Err(self.member_error(i, "stop: ", e));
                }
            }
        }
        r
    }

    fn sum_member_stats(&self) -> PortStats {
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
}

/// Bond receive queue `q`: receive queue `q` of every member.
struct BondRx {
    members: Vec<Box<dyn RxQueue>>,
    view: Arc<AtomicU64>,
    /// 802.3ad: where slow-protocol frames go up; balance-alb: where ARP
    /// requests for the bond's addresses go up.
    slow: Option<Producer<SlowFrame>>,
    /// balance-alb: the bond's addresses (fixed at configuration). With
    /// them the handle passes up ARP requests for them, not slow frames.
    arp_ips: Option<Box<[[u8; 4]]>>,
    /// balance-alb: who the active member is (the others' broadcast and
    /// multicast frames are dropped).
    alb: Option<Arc<AlbShared>>,
    next: usize,
    hold: Vec<Mbuf>,
    run: RunFlag,
    counters: Arc<RxCounters>,
    _lease: Lease,
}

/// Whether a receive handle passes `m` up to the control side: a
/// slow-protocol frame in 802.3ad mode, an ARP request for one of the
/// bond's addresses in balance-alb (checked view: no panic on any frame).
#[inline]
fn is_slow(arp_ips: &Option<Box<[[u8; 4]]>>, m: &Mbuf) -> bool {
    match arp_ips {
        None => wire::slow_subtype(m.data()).is_some(),
        Some(ips) => wire::untagged_arp(m.data()).is_some_and(|(_, a)| {
            a.op() == ArpOp::Request && a.spa() != a.tpa() && ips.contains(&a.tpa().octets())
        }),
    }
}

impl BondRx {
    /// Hands a slow-protocol frame to the control side, or drops it when
    /// the control side is that far behind.
    #[inline]
    fn pass_up(slow: &mut Producer<SlowFrame>, counters: &RxCounters, member: usize, frame: Mbuf) {
        if slow.enqueue(SlowFrame { member, frame }).is_err() {
            counters.slow_dropped.add(1);
        }
    }

    /// Frames `start..` of `pkts` came from member `i`, which delivers:
    /// they stay, except slow-protocol frames in 802.3ad mode.
    #[inline]
    fn keep(&mut self, i: usize, start: usize, pkts: &mut Burst<Mbuf>) {
        let Some(slow) = &mut self.slow else { return };
        let ips = &self.arp_ips;
        if !pkts.as_slice()[start..].iter().any(|m| is_slow(ips, m)) {
            return;
        }
        // Rare: pull the slow frames out, keeping the order of the rest.
        self.hold.clear();
        self.hold.extend(pkts.drain());
        for (k, m) in self.hold.drain(..).enumerate() {
            if k >= start && is_slow(&self.arp_ips, &m) {
                Self::pass_up(slow, &self.counters, i, m);
            } else {
                let _ = pkts.push(m);
            }
        }
    }

    /// balance-alb: frames `start..` of `pkts` came from a member that is
    /// not the active one: its broadcast and multicast frames are dropped
    /// and counted (the active member has the same ones).
    #[inline]
    fn drop_group(&mut self, start: usize, pkts: &mut Burst<Mbuf>) {
        let group = |m: &Mbuf| m.data().first().is_some_and(|b| b & 1 != 0);
        if !pkts.as_slice()[start..].iter().any(group) {
            return;
        }
        self.hold.clear();
        self.hold.extend(pkts.drain());
        let mut dropped = 0;
        for (k, m) in self.hold.drain(..).enumerate() {
            if k >= start && group(&m) {
                dropped += 1;
            } else {
                let _ = pkts.push(m);
            }
        }
        self.counters.dropped_inactive.add(dropped);
    }

    /// Frames `start..` of `pkts` came from member `i`, which does not
    /// deliver (a backup, a port not collecting): they are dropped and
    /// counted, except slow-protocol frames in 802.3ad mode.
    #[inline]
    fn drop_inactive(&mut self, i: usize, start: usize, pkts: &mut Burst<Mbuf>) {
        let got = (pkts.len() - start) as u64;
        let ips = &self.arp_ips;
        let slow = match &mut self.slow {
            Some(slow) if pkts.as_slice()[start..].iter().any(|m| is_slow(ips, m)) => slow,
            _ => {
                pkts.truncate(start);
                self.counters.dropped_inactive.add(got);
                return;
            }
        };
        self.hold.clear();
        self.hold.extend(pkts.drain());
        let mut dropped = 0;
        for (k, m) in self.hold.drain(..).enumerate() {
            if k < start {
                let _ = pkts.push(m);
            } else if is_slow(&self.arp_ips, &m) {
                Self::pass_up(slow, &self.counters, i, m);
            } else {
                dropped += 1;
            }
        }
        if dropped > 0 {
            self.counters.dropped_inactive.add(dropped);
        }
    }
}

impl RxQueue for BondRx {
    #[inline]
    fn rx_burst(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
        if !self.run.is_running() {
            return 0;
        }
        let before = pkts.len();
        let n = self.members.len();
        // Start from a different member each call, as DPDK's bonding does,
        // so no member is starved when the caller's burst fills up.
        let first = self.next;
        self.next = if first + 1 == n { 0 } else { first + 1 };
        for k in 0..n {
            if pkts.spare() == 0 {
                break;
            }
            let i = if first + k >= n {
                first + k - n
            } else {
                first + k
            };
            let start = pkts.len();
            if self.members[i].rx_burst(pkts) == 0 {
                continue;
            }
            // Whether member i delivers, read after its frames are in
            // hand: each frame is judged by a view at least as new as its
            // arrival, as Linux judges a frame when it processes it. So a
            // frame sent after the control side enabled its member is
            // never dropped by a burst that began before.
            let rx_mask = (self.view.load(Ordering::Acquire) >> 32) as u32;
            if rx_mask & (1 << i) != 0 {
                if let Some(alb) = &self.alb {
                    if alb.active.load(Ordering::Acquire) != i as u64 {
                        self.drop_group(start, pkts);
                    }
                }
                self.keep(i, start, pkts);
            } else {
                self.drop_inactive(i, start, pkts);
            }
        }
        pkts.len() - before
    }
}

/// How a transmit handle spreads packets over two or more members.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spread {
    Hash(XmitHashPolicy),
    RoundRobin,
    Broadcast,
    /// balance-tlb/alb: IP flows by the control side's flow table
    /// (`dynamic`, tlb_dynamic_lb=1) or by the xmit hash; everything else
    /// on the active member. `alb`: balance-alb's choice of frames and
    /// buckets (bond_xmit_alb_slave_get()) rather than balance-tlb's.
    Tlb {
        dynamic: bool,
        policy: XmitHashPolicy,
        alb: bool,
    },
}

/// Bond transmit queue `q`: transmit queue `q` of every member.
struct BondTx {
    members: Vec<Box<dyn TxQueue>>,
    /// Queue 0 on the shared control path: each member's control frames.
    ctrl: Vec<Consumer<Mbuf>>,
    ctrl_burst: Burst<Mbuf>,
    view: Arc<AtomicU64>,
    cache: TxView,
    spread: Spread,
    /// balance-tlb/alb: the active member, the flow table, the MACs.
    alb: Option<Arc<AlbShared>>,
    /// balance-tlb/alb: position of the active member in `cache.list`,
    /// read once per burst.
    active_pos: usize,
    rr: u32,
    pool: Mempool,
    per_member: Vec<Burst<Mbuf>>,
    hold: Vec<Mbuf>,
    run: RunFlag,
    counters: Arc<TxCounters>,
    _lease: Lease,
}

/// balance-alb's bucket of a frame, or `None` when the frame is not
/// spread (bond_xmit_alb_slave_get()): _simple_hash() of the destination
/// IPv4 address, unless the frame is broadcast, to 255.255.255.255 or
/// IGMP; of the destination IPv6 address, unless the frame is broadcast or
/// to 33:33:00:00:00:01, from ::, or a neighbour solicitation or
/// advertisement. ARP and everything else leave on the active member.
#[inline]
fn alb_bucket(d: &[u8]) -> Option<u8> {
    let eth = EthernetFrame::new_checked(d).ok()?;
    if eth.dst_addr() == MacAddr::BROADCAST {
        return None;
    }
    match eth.ethertype() {
        pollux_core::net::ETHERTYPE_IPV4 => {
            let ip = ip_fixed_header::<IPV4_HLEN>(d).map(Ipv4Packet::new_unchecked)?;
            let dst = ip.dst_addr();
            if dst == Ipv4Addr::BROADCAST || ip.protocol() == IPPROTO_IGMP {
                return None;
            }
            Some(crate::alb::simple_hash(&dst.octets()))
        }
        pollux_core::net::ETHERTYPE_IPV6 => {
            let ip = ip_fixed_header::<IPV6_HLEN>(d).map(Ipv6Packet::new_unchecked)?;
            if eth.dst_addr() == MacAddr([0x33, 0x33, 0, 0, 0, 1])
                || ip.src_addr().is_unspecified()
                || is_icmpv6_nd(d)
            {
                return None;
            }
            Some(crate::alb::simple_hash(&ip.dst_addr().octets()))
        }
        _ => None,
    }
}

const ETH_HLEN: usize = EthernetFrame::<&[u8]>::HEADER_LEN;
const IPV4_HLEN: usize = Ipv4Packet::<&[u8]>::HEADER_LEN;
const IPV6_HLEN: usize = Ipv6Packet::<&[u8]>::HEADER_LEN;
/// IANA protocol number of IGMP.
const IPPROTO_IGMP: u8 = 2;

/// The bytes after the Ethernet header when they hold at least an IP
/// fixed header of `N` octets. The IP views go over these with
/// `new_unchecked` and only fixed-header accessors: like Linux's
/// bond_xmit_{tlb,alb}_slave_get(), the choice does not depend on the
/// length fields, so `new_checked` would refuse frames Linux spreads.
#[inline]
fn ip_fixed_header<const N: usize>(d: &[u8]) -> Option<&[u8]> {
    d.get(ETH_HLEN..).filter(|b| b.len() >= N)
}

/// bond_is_icmpv6_nd(): Next Header ICMPv6 and, right after the fixed
/// header, the type of a neighbour solicitation (135) or advertisement
/// (136). Only the type octet need be there.
#[inline]
fn is_icmpv6_nd(d: &[u8]) -> bool {
    match (
        ip_fixed_header::<IPV6_HLEN>(d).map(Ipv6Packet::new_unchecked),
        d.get(ETH_HLEN + IPV6_HLEN),
    ) {
        (Some(ip), Some(t)) => ip.next_header() == IPPROTO_ICMPV6 && matches!(t, 135 | 136),
        _ => false,
    }
}

/// Whether balance-tlb spreads a frame (bond_xmit_tlb_slave_get()):
/// unicast IPv4, and unicast IPv6 but neighbour solicitations and
/// advertisements. Everything else leaves on the active member.
#[inline]
fn tlb_balanced(d: &[u8]) -> bool {
    let Ok(eth) = EthernetFrame::new_checked(d) else {
        return false;
    };
    if eth.dst_addr().is_multicast() {
        return false;
    }
    match eth.ethertype() {
        pollux_core::net::ETHERTYPE_IPV4 => true,
        pollux_core::net::ETHERTYPE_IPV6 => !is_icmpv6_nd(d),
        _ => false,
    }
}

impl BondTx {
    /// balance-tlb/alb: the position in `cache.list` of the member `m`
    /// leaves on. Counts the frame's bytes for its bucket (single-writer
    /// counters, no read-modify-write) and, when that member is not the
    /// active one, writes the member's MAC as the source (bond_do_alb_xmit()).
    #[inline]
    fn tlb_pick(
        &mut self,
        m: &mut Mbuf,
        dynamic: bool,
        policy: XmitHashPolicy,
        alb: bool,
    ) -> usize {
        let len = m.len() as u64;
        let mut j = self.active_pos;
        let alb_b = if alb { alb_bucket(m.data()) } else { None };
        if alb_b.is_some() || (!alb && tlb_balanced(m.data())) {
            let t = m.tx();
            let vlan = t.flags.contains(TxFlags::VLAN_INSERT).then_some(t.vlan_tci);
            // balance-alb hashes the destination address into its bucket;
            // balance-tlb (and the xmit-hash spread) take the xmit hash.
            let h = match alb_b {
                Some(b) if dynamic => b as u32,
                _ => xmit_hash(policy, m.data(), vlan),
            };
            if dynamic {
                let b = (h & 0xff) as usize;
                self.counters.tlb_bytes[b].add(len);
                if let Some(alb) = &self.alb {
                    let w = alb.table[b >> 3].load(Ordering::Relaxed);
                    let member = (w >> ((b & 7) * 8)) as u8;
                    if let Some(&p) = self.cache.pos.get(member as usize) {
                        if p != NO_MEMBER {
                            j = p as usize;
                        }
                    }
                }
            } else {
                j = self.cache.index(h);
            }
        } else {
            self.counters.unbalanced.add(len);
        }
        if j != self.active_pos {
            if let Some(alb) = &self.alb {
                let member = self.cache.list[j] as usize;
                let mac = word_mac(alb.macs[member].load(Ordering::Relaxed));
                if let Some(src) = m.data_mut().get_mut(6..12) {
                    src.copy_from_slice(&mac);
                }
            }
        }
        j
    }

    /// Sends the control frames the control side queued, each on its own
    /// member (shared control path; nothing to do otherwise).
    #[inline]
    fn flush_control(&mut self) {
        for (i, c) in self.ctrl.iter_mut().enumerate() {
            if c.ring().is_empty() {
                continue;
            }
            c.dequeue_burst(&mut self.ctrl_burst, CTRL_RING);
            self.members[i].tx_burst(&mut self.ctrl_burst);
            if !self.ctrl_burst.is_empty() {
                self.counters.ctrl_failed.add(self.ctrl_burst.len() as u64);
                self.ctrl_burst.clear();
            }
        }
    }

    fn distribute(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
        let cnt = self.cache.len;
        let mut total = 0;
        loop {
            let n = pkts.len().min(TX_CHUNK);
            if n == 0 {
                break;
            }
            for _ in 0..n {
                let Some(m) = pkts.pop_front() else { break };
                let mut m = m;
                let j = match self.spread {
                    Spread::Hash(policy) => {
                        let t = m.tx();
                        let vlan = t.flags.contains(TxFlags::VLAN_INSERT).then_some(t.vlan_tci);
                        self.cache.index(xmit_hash(policy, m.data(), vlan))
                    }
                    Spread::Tlb {
                        dynamic,
                        policy,
                        alb,
                    } => self.tlb_pick(&mut m, dynamic, policy, alb),
                    _ => {
                        let j = self.cache.index(self.rr);
                        self.rr = self.rr.wrapping_add(1);
                        j
                    }
                };
                // Room is guaranteed: each burst holds TX_CHUNK >= n.
                let _ = self.per_member[j].push(m);
            }
            let mut unsent = 0;
            for j in 0..cnt {
                if self.per_member[j].is_empty() {
                    continue;
                }
                let member = self.cache.list[j] as usize;
                self.members[member].tx_burst(&mut self.per_member[j]);
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

    fn broadcast(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
        let cnt = self.cache.len;
        let mut total = 0;
        loop {
            let n = pkts.len().min(TX_CHUNK);
            if n == 0 {
                break;
            }
            let mut failed = 0;
            for _ in 0..n {
                let Some(m) = pkts.pop_front() else { break };
                for j in 0..cnt - 1 {
                    let copy = self.pool.alloc().and_then(|mut c| {
                        c.copy_from(m.data()).then(|| {
                            *c.tx_mut() = *m.tx();
                            c
                        })
                    });
                    match copy {
                        Some(c) => {
                            let _ = self.per_member[j].push(c);
                        }
                        None => failed += 1,
                    }
                }
                let _ = self.per_member[cnt - 1].push(m);
            }
            if failed > 0 {
                self.counters.broadcast_copy_failed.add(failed);
            }
            for j in 0..cnt {
                let member = self.cache.list[j] as usize;
                self.members[member].tx_burst(&mut self.per_member[j]);
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

impl TxQueue for BondTx {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
        if !self.run.is_running() {
            return 0;
        }
        if !self.ctrl.is_empty() {
            self.flush_control();
        }
        if pkts.is_empty() {
            return 0;
        }
        let w = self.view.load(Ordering::Acquire);
        if w != self.cache.word {
            self.cache = TxView::new(w);
        }
        if let Some(alb) = &self.alb {
            // The active member's position, once per burst; when it is not
            // transmitting (a view in between), the first member stands in.
            let a = alb.active.load(Ordering::Acquire);
            self.active_pos = match self.cache.pos.get(a as usize) {
                Some(&p) if p != NO_MEMBER && a < MAX_MEMBERS as u64 => p as usize,
                _ => 0,
            };
        }
        match self.cache.len {
            0 => {
                self.counters.no_member.add(1);
                0
            }
            1 => {
                let m = self.cache.list[0] as usize;
                self.members[m].tx_burst(pkts)
            }
            _ if self.spread == Spread::Broadcast => self.broadcast(pkts),
            _ => self.distribute(pkts),
        }
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
        // Every member's last transmit queue becomes the bond's control
        // queue when the members have one to spare (see `configure`); the
        // bond offers all of theirs and decides at configure time.
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

    /// Configures every member like the bond, with one transmit queue
    /// more: the member's last transmit queue carries the bond's control
    /// frames.
    fn configure(&mut self, conf: &PortConf) -> Result<(), PortError> {
        if self.started {
            return Err(PortError::Started);
        }
        // One more transmit queue on every member for control frames when
        // all of them have it; otherwise the shared path through queue 0.
        let need = conf.tx_queues + 1;
        let spare = self
            .members
            .iter()
            .all(|m| m.info().capabilities.max_tx_queues >= need);
        self.ctrl_path = if spare {
            CtrlPath::Dedicated
        } else {
            tracing::info!(
                bond = %self.name,
                "members have no transmit queue to spare: control frames go out with transmit \
                 queue 0, which must then be called at least every 100 ms (an empty burst does)"
            );
            CtrlPath::Shared
        };
        conf.validate(&self.info().capabilities)?;
        let mut member_conf = conf.clone();
        member_conf.tx_queues = conf.tx_queues + u16::from(spare);
        for i in 0..self.members.len() {
            if let Err(e) = self.members[i].configure(&member_conf) {
                return Err(self.member_error(i, "", e));
            }
        }
        self.pool = Some(conf.rx_pool.clone());
        self.rx_queues = conf.rx_queues;
        self.tx_queues = conf.tx_queues;
        // New per-queue counters; what the old ones counted stays counted.
        let old = self.raw_counters();
        self.retired = ShellCounters {
            ctrl_tx: 0,
            ctrl_tx_failed: 0,
            member_op_failed: 0,
            ..old
        };
        let (totals, unbalanced) = self.tlb_totals();
        *self.tlb_retired = totals;
        self.unbalanced_retired = unbalanced;
        self.rx_counters = (0..conf.rx_queues).map(|_| Arc::default()).collect();
        self.tx_counters = (0..conf.tx_queues).map(|_| Arc::default()).collect();
        Ok(())
    }

    fn start(&mut self) -> Result<(), PortError> {
        if self.pool.is_none() {
            return Err(PortError::NotConfigured);
        }
        if self.started {
            return Ok(());
        }
        // The handles of the last start hold the members' queues.
        self.leases.check_none(&self.name)?;
        let r = self.start_inner();
        if r.is_err() {
            let _ = self.halt();
        }
        r
    }

    /// Stops the members and the bond's queue handles (they return 0 from
    /// now on) and gives the control queues back. A new start needs the
    /// handles dropped first.
    fn stop(&mut self) -> Result<(), PortError> {
        self.halt()
    }

    fn take_queues(&mut self) -> Result<Queues, PortError> {
        if !self.started {
            return Err(PortError::NotStarted);
        }
        let Some(pending) = self.pending.take() else {
            return Err(PortError::QueuesTaken(self.name.clone()));
        };
        let Some(pool) = &self.pool else {
            return Err(PortError::NotConfigured);
        };
        let n = self.members.len();
        let mut slow = pending.slow.into_iter();
        let rx = pending
            .rx
            .into_iter()
            .zip(&self.rx_counters)
            .map(|(members, counters)| {
                Box::new(BondRx {
                    members,
                    view: self.view.clone(),
                    slow: slow.next(),
                    arp_ips: (self.cfg.mode == Mode::BalanceAlb)
                        .then(|| self.cfg.ip.iter().map(|ip| ip.octets()).collect()),
                    alb: (self.cfg.mode == Mode::BalanceAlb).then(|| self.alb.clone()),
                    next: 0,
                    hold: Vec::with_capacity(1024),
                    run: self.run.clone(),
                    counters: counters.clone(),
                    _lease: self.leases.lease(),
                }) as Box<dyn RxQueue>
            })
            .collect();
        let spread = match self.cfg.mode {
            Mode::BalanceRr => Spread::RoundRobin,
            Mode::Broadcast => Spread::Broadcast,
            Mode::BalanceTlb | Mode::BalanceAlb => Spread::Tlb {
                dynamic: self.cfg.tlb_dynamic_lb,
                policy: self.cfg.xmit_hash_policy,
                alb: self.cfg.mode == Mode::BalanceAlb,
            },
            _ => Spread::Hash(self.cfg.xmit_hash_policy),
        };
        let alb = self.cfg.mode.is_alb_family().then(|| self.alb.clone());
        let word = self.view.load(Ordering::Acquire);
        let mut ctrl = Some(pending.ctrl);
        let tx = pending
            .tx
            .into_iter()
            .zip(&self.tx_counters)
            .map(|(members, counters)| {
                Box::new(BondTx {
                    members,
                    // Queue 0 (the first) sends the shared control frames.
                    ctrl: ctrl.take().unwrap_or_default(),
                    ctrl_burst: Burst::new(CTRL_RING),
                    view: self.view.clone(),
                    cache: TxView::new(word),
                    spread,
                    alb: alb.clone(),
                    active_pos: 0,
                    rr: 0,
                    pool: pool.clone(),
                    per_member: (0..n).map(|_| Burst::new(TX_CHUNK)).collect(),
                    hold: Vec::with_capacity(1024),
                    run: self.run.clone(),
                    counters: counters.clone(),
                    _lease: self.leases.lease(),
                }) as Box<dyn TxQueue>
            })
            .collect();
        Ok(Queues { rx, tx })
    }

    /// The bond's periodic work: the members' own `service`, link
    /// monitoring at `miimon`, the
    /// slow-protocol frames the receive handles passed up, LACP timers and
    /// transmissions, failover announcements; then the member sets are
    /// published to the handles. Call it every 10 to 100 ms (LACP partners
    /// time a bond out that stays silent for 3 s with `lacp_rate=fast`).
    fn service(&mut self) {
        self.service_now();
    }

    /// Services the bond, then reports its link.
    fn link(&mut self) -> LinkStatus {
        self.service_now();
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
        pollux_core::port::require_unicast(mac)?;
        let now = self.clock.now();
        self.cfg.mac = Some(mac);
        self.core.set_mac(mac, now);
        while let Some(a) = self.core.poll_action() {
            self.do_action(a).map_err(PortError::from)?;
        }
        self.publish();
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
        pollux_core::port::require_multicast(addrs)?;
        self.mc_list = addrs.to_vec();
        self.apply_all_filters().map_err(PortError::from)
    }

    /// The members' counters summed (control frames included, as on the
    /// wire).
    fn stats(&self) -> PortStats {
        self.sum_member_stats()
    }

    /// Per bond queue, the members' counters of that queue summed (the
    /// control queues are not bond queues).
    fn queue_stats(&self) -> Vec<QueueStats> {
        let nq = self.rx_queues.max(self.tx_queues) as usize;
        let mut v = vec![QueueStats::default(); nq];
        for m in &self.members {
            for (q, s) in m.queue_stats().into_iter().enumerate().take(nq) {
                let d = &mut v[q];
                if q < self.rx_queues as usize {
                    d.rx_packets += s.rx_packets;
                    d.rx_bytes += s.rx_bytes;
                    d.rx_errors += s.rx_errors;
                }
                if q < self.tx_queues as usize {
                    d.tx_packets += s.tx_packets;
                    d.tx_bytes += s.tx_bytes;
                }
            }
        }
        v
    }

    fn xstats(&self) -> Vec<Xstat> {
        let c = self.shell_counters();
        let b = self.core.counters();
        let mut v = self.stats().xstats();
        v.extend([
            Xstat::new("bond_rx_dropped_inactive", c.rx_dropped_inactive),
            Xstat::new("bond_tx_no_member", c.tx_no_member),
            Xstat::new("bond_ctrl_tx", c.ctrl_tx),
            Xstat::new("bond_ctrl_tx_failed", c.ctrl_tx_failed),
            Xstat::new("bond_broadcast_copy_failed", c.broadcast_copy_failed),
            Xstat::new("bond_member_op_failed", c.member_op_failed),
            Xstat::new("bond_slow_rx_dropped", c.slow_rx_dropped),
            Xstat::new("bond_active_changes", b.active_changes),
            Xstat::new("bond_announcements", b.announcements),
            Xstat::new("bond_slow_rx", b.slow_rx),
            Xstat::new("bond_slow_rx_invalid", b.slow_rx_invalid),
        ]);
        for (i, m) in self.members.iter().enumerate() {
            let x = m.stats();
            let n = &self.specs[i].name;
            v.push(Xstat::new(format!("{n}_rx_packets"), x.ipackets));
            v.push(Xstat::new(format!("{n}_tx_packets"), x.opackets));
        }
        v
    }

    /// Resets the members' counters and the shell's (the handles' by
    /// baseline; they are never written from here).
    fn reset_stats(&mut self) {
        for m in &mut self.members {
            m.reset_stats();
        }
        self.base = self.raw_counters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tx_view_is_the_core_list_and_its_modulo() {
        // Every member set a bond of 5 can have, and then the widest masks.
        let mut words: Vec<u64> = (0..32u64).map(|m| m | 0xdead_0000_0000).collect();
        words.extend([u32::MAX as u64, 0x8000_0001, 0x8000_0000]);
        for w in words {
            let v = TxView::new(w);
            let want: Vec<u8> = (0..32).filter(|i| w & (1 << i) != 0).collect();
            assert_eq!(&v.list[..v.len], &want[..], "{w:#x}");
            let len = want.len().max(1) as u32;
            for h in [0u32, 1, 2, 7, 0x0505_0181, u32::MAX] {
                assert_eq!(v.index(h) as u32, h % len, "{w:#x}: {h}");
            }
        }
    }

    #[test]
    fn the_view_word_carries_the_core_sets() {
        use crate::config::BondConfig;
        let members: Vec<MemberSpec> = (0..3u8)
            .map(|i| MemberSpec {
                name: format!("m{i}"),
                mac: MacAddr([2, 0, 0, 0, 0, i + 1]),
            })
            .collect();
        let t0 = Instant::now();
        let mut cfg = BondConfig::new(Mode::ActiveBackup, &["m0", "m1", "m2"]);
        cfg.miimon = Duration::from_millis(100);
        let mut b = Bond::new(&cfg, &members, t0).unwrap();
        assert_eq!(view_word(&b), 0, "no link sampled yet");
        let up = LinkStatus::up(1000);
        b.handle_links(t0, &[LinkStatus::DOWN, up, up]);
        // Active-backup: m1 transmits and receives, nobody else.
        assert_eq!(view_word(&b), 0b010 | 0b010 << 32);
        let mut cfg = BondConfig::new(Mode::BalanceXor, &["m0", "m1", "m2"]);
        cfg.miimon = Duration::from_millis(100);
        let mut b = Bond::new(&cfg, &members, t0).unwrap();
        b.handle_links(t0, &[up, LinkStatus::DOWN, up]);
        assert_eq!(view_word(&b), 0b101 | 0b111 << 32);
        let v = TxView::new(view_word(&b));
        for h in 0..100 {
            assert_eq!(
                v.list[v.index(h)] as usize,
                b.tx_members()[b.tx_index(h)],
                "hash {h}"
            );
        }
    }
}
