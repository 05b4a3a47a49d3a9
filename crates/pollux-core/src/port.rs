//! The [`Port`] trait: what every NIC driver, software port and bond offers,
//! and the per-queue handles ([`RxQueue`], [`TxQueue`]) its data path is
//! split into.
//!
//! It follows DPDK's ethdev. A port is configured and started through its
//! control side ([`Port`]); then [`Port::take_queues`] hands out one
//! [`RxQueue`] and one [`TxQueue`] per configured queue. Each handle is
//! `Send` and owned by the one lcore that polls it, as DPDK polls each
//! queue from exactly one lcore; a burst takes no lock and does no atomic
//! read-modify-write. The control side stays with the thread that owns the
//! port, and link, statistics, MAC, filters, [`Port::service`] and
//! [`Port::stop`] work while the queues run.
//!
//! Rust ownership takes the place of DPDK's pointer arrays: `rx_burst`
//! appends received [`Mbuf`]s to a [`Burst`], `tx_burst` takes packets from
//! the front of one and leaves what it could not send. Burst calls never
//! fail and never block; control calls return a [`PortError`].

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::{Burst, MacAddr, Mbuf, Mempool};

bitflags::bitflags! {
    /// Receive offloads a port can do or is asked to do.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct RxOffloads: u32 {
        const VLAN_STRIP = 1 << 0;
        const IPV4_CKSUM = 1 << 1;
        const UDP_CKSUM = 1 << 2;
        const TCP_CKSUM = 1 << 3;
        const RSS_HASH = 1 << 4;
        const VLAN_FILTER = 1 << 5;
    }
}

bitflags::bitflags! {
    /// Transmit offloads a port can do or is asked to do.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct TxOffloads: u32 {
        const VLAN_INSERT = 1 << 0;
        const IPV4_CKSUM = 1 << 1;
        const UDP_CKSUM = 1 << 2;
        const TCP_CKSUM = 1 << 3;
    }
}

/// What a port can do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub max_rx_queues: u16,
    pub max_tx_queues: u16,
    /// Descriptor count limits per queue (`min`, `max`, multiple of `align`).
    pub min_desc: u16,
    pub max_desc: u16,
    pub desc_align: u16,
    /// Largest frame without FCS.
    pub max_frame: u32,
    pub rx_offloads: RxOffloads,
    pub tx_offloads: TxOffloads,
    /// Multicast filter entries, 0 when there is no filter.
    pub max_mc_addrs: u16,
    pub promiscuous: bool,
    pub allmulticast: bool,
}

/// Static facts about a port.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortInfo {
    /// Driver name (`net_null`, `net_igbvf`, ...).
    pub driver: String,
    /// Device name (`null0`, a PCI address, ...).
    pub name: String,
    pub capabilities: Capabilities,
}

/// How to set a port up; passed to [`Port::configure`].
#[derive(Clone, Debug)]
pub struct PortConf {
    /// Number the application gives this port; stamped on received mbufs.
    pub port_id: u16,
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub rx_desc: u16,
    pub tx_desc: u16,
    /// Where receive buffers come from.
    pub rx_pool: Mempool,
    pub rx_offloads: RxOffloads,
    pub tx_offloads: TxOffloads,
    /// MTU to set, if any.
    pub mtu: Option<u16>,
}

impl PortConf {
    /// One queue each way, 512 descriptors, no offloads.
    pub fn new(rx_pool: Mempool) -> PortConf {
        PortConf {
            port_id: 0,
            rx_queues: 1,
            tx_queues: 1,
            rx_desc: 512,
            tx_desc: 512,
            rx_pool,
            rx_offloads: RxOffloads::empty(),
            tx_offloads: TxOffloads::empty(),
            mtu: None,
        }
    }

    /// Checks the request against what the port can do.
    pub fn validate(&self, caps: &Capabilities) -> Result<(), PortError> {
        let bad = |what: String| Err(PortError::InvalidConfig(what));
        if self.rx_queues == 0 || self.rx_queues > caps.max_rx_queues {
            return bad(format!(
                "{} rx queues (1..={})",
                self.rx_queues, caps.max_rx_queues
            ));
        }
        if self.tx_queues == 0 || self.tx_queues > caps.max_tx_queues {
            return bad(format!(
                "{} tx queues (1..={})",
                self.tx_queues, caps.max_tx_queues
            ));
        }
        for (dir, n) in [("rx", self.rx_desc), ("tx", self.tx_desc)] {
            let align = caps.desc_align.max(1);
            if n < caps.min_desc || n > caps.max_desc || n % align != 0 {
                return bad(format!(
                    "{n} {dir} descriptors ({}..={}, multiple of {align})",
                    caps.min_desc, caps.max_desc
                ));
            }
        }
        let rx_extra = self.rx_offloads - caps.rx_offloads;
        if !rx_extra.is_empty() {
            return Err(PortError::Unsupported(format!("rx offloads {rx_extra:?}")));
        }
        let tx_extra = self.tx_offloads - caps.tx_offloads;
        if !tx_extra.is_empty() {
            return Err(PortError::Unsupported(format!("tx offloads {tx_extra:?}")));
        }
        Ok(())
    }
}

/// Link duplex.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Duplex {
    #[default]
    Unknown,
    Half,
    Full,
}

/// Link state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStatus {
    pub up: bool,
    /// Mbit/s, 0 when unknown.
    pub speed_mbps: u32,
    pub duplex: Duplex,
}

impl LinkStatus {
    /// A link that is down.
    pub const DOWN: LinkStatus = LinkStatus {
        up: false,
        speed_mbps: 0,
        duplex: Duplex::Unknown,
    };

    /// An up, full-duplex link of `speed_mbps`.
    pub fn up(speed_mbps: u32) -> LinkStatus {
        LinkStatus {
            up: true,
            speed_mbps,
            duplex: Duplex::Full,
        }
    }
}

impl fmt::Display for LinkStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.up {
            return f.write_str("down");
        }
        let d = match self.duplex {
            Duplex::Full => "full-duplex",
            Duplex::Half => "half-duplex",
            Duplex::Unknown => "unknown duplex",
        };
        write!(f, "up {} Mbps {d}", self.speed_mbps)
    }
}

/// Port counters, as DPDK's `rte_eth_stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets received.
    pub ipackets: u64,
    /// Packets sent.
    pub opackets: u64,
    /// Bytes received (no FCS).
    pub ibytes: u64,
    /// Bytes sent (no FCS).
    pub obytes: u64,
    /// Packets the hardware dropped for lack of descriptors.
    pub imissed: u64,
    /// Packets received with errors.
    pub ierrors: u64,
    /// Packets that failed to send.
    pub oerrors: u64,
    /// Receive buffer allocations that failed.
    pub rx_nombuf: u64,
}

impl PortStats {
    /// The basic counters under DPDK's xstats names, for `Port::xstats`
    /// implementations to extend.
    pub fn xstats(&self) -> Vec<Xstat> {
        vec![
            Xstat::new("rx_good_packets", self.ipackets),
            Xstat::new("tx_good_packets", self.opackets),
            Xstat::new("rx_good_bytes", self.ibytes),
            Xstat::new("tx_good_bytes", self.obytes),
            Xstat::new("rx_missed_errors", self.imissed),
            Xstat::new("rx_errors", self.ierrors),
            Xstat::new("tx_errors", self.oerrors),
            Xstat::new("rx_mbuf_allocation_errors", self.rx_nombuf),
        ]
    }
}

/// Per-queue counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_errors: u64,
}

/// A named extended statistic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Xstat {
    pub name: String,
    pub value: u64,
}

impl Xstat {
    pub fn new(name: impl Into<String>, value: u64) -> Xstat {
        Xstat {
            name: name.into(),
            value,
        }
    }
}

/// Errors of port control operations.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error("not supported by this port: {0}")]
    Unsupported(String),
    #[error("port is not configured")]
    NotConfigured,
    #[error("port must be stopped for this")]
    Started,
    #[error("port is not started")]
    NotStarted,
    #[error("the queues are already taken: {0}")]
    QueuesTaken(String),
    #[error("{what} timed out after {ms} ms")]
    Timeout { what: String, ms: u64 },
    #[error("the device refused: {0}")]
    Refused(String),
    #[error("I/O error: {context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl PortError {
    /// An `Io` error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> PortError {
        PortError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Checks an address for `Port::set_mac_addr`: unicast and not all zero.
pub fn require_unicast(mac: MacAddr) -> Result<(), PortError> {
    if mac.is_valid_unicast() {
        Ok(())
    } else {
        Err(PortError::InvalidConfig(format!(
            "{mac} is not a unicast address"
        )))
    }
}

/// Checks a list for `Port::set_mc_addr_list`: multicast addresses only.
pub fn require_multicast(addrs: &[MacAddr]) -> Result<(), PortError> {
    match addrs.iter().find(|a| !a.is_multicast()) {
        Some(a) => Err(PortError::InvalidConfig(format!(
            "{a} is not a multicast address"
        ))),
        None => Ok(()),
    }
}

/// The receive side of one queue of a started port.
///
/// Owned by the one lcore that polls it: `&mut self`, no lock, no atomic
/// read-modify-write. After [`Port::stop`] a handle receives nothing; the
/// buffers it holds go back to their pool when it is dropped (a hardware
/// driver keeps them until its device can no longer write them).
pub trait RxQueue: Send {
    /// Appends up to `pkts.spare()` received packets; returns how many.
    /// Never blocks.
    fn rx_burst(&mut self, pkts: &mut Burst<Mbuf>) -> usize;
}

/// The transmit side of one queue of a started port. See [`RxQueue`].
pub trait TxQueue: Send {
    /// Sends packets from the front of `pkts`; returns how many it took.
    /// Packets it did not take stay in `pkts`, still the caller's. Never
    /// blocks.
    fn tx_burst(&mut self, pkts: &mut Burst<Mbuf>) -> usize;
}

impl<Q: RxQueue + ?Sized> RxQueue for Box<Q> {
    #[inline]
    fn rx_burst(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
        (**self).rx_burst(pkts)
    }
}

impl<Q: TxQueue + ?Sized> TxQueue for Box<Q> {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
        (**self).tx_burst(pkts)
    }
}

/// The queue handles of a started port, indexed by queue number.
#[derive(Default)]
pub struct Queues {
    pub rx: Vec<Box<dyn RxQueue>>,
    pub tx: Vec<Box<dyn TxQueue>>,
}

impl fmt::Debug for Queues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queues")
            .field("rx", &self.rx.len())
            .field("tx", &self.tx.len())
            .finish()
    }
}

/// A network port: NIC driver, software port or bond; its control side.
///
/// Life: [`configure`](Port::configure), [`start`](Port::start),
/// [`take_queues`](Port::take_queues) (handles to the lcores), bursts on the
/// handles while this side does control work and calls
/// [`service`](Port::service) every 10 to 100 ms, [`stop`](Port::stop), drop
/// the handles. A port starts again only when the previous start's handles
/// are gone ([`PortError::QueuesTaken`] otherwise).
pub trait Port: Send {
    /// Driver, name and capabilities.
    fn info(&self) -> PortInfo;

    /// Sets queues, descriptors, offloads and the receive pool. Only while
    /// stopped.
    fn configure(&mut self, conf: &PortConf) -> Result<(), PortError>;

    /// Starts receiving and sending.
    fn start(&mut self) -> Result<(), PortError>;

    /// Stops. Handles still out receive and send nothing from now on.
    fn stop(&mut self) -> Result<(), PortError>;

    /// Hands out the handles of every configured queue. Once per start:
    /// [`PortError::NotStarted`] before it, [`PortError::QueuesTaken`] when
    /// they are out already.
    fn take_queues(&mut self) -> Result<Queues, PortError>;

    /// Control-side periodic work that must not run in a burst: link
    /// monitoring, a NIC's mailbox and its recovery from a PF reset,
    /// counter sampling, a bond's LACP machines. Call it every 10 to 100 ms
    /// from the thread that owns the port. It may wait on the device, each
    /// wait bounded by the port's timeouts. The default does nothing.
    fn service(&mut self) {}

    /// Current link state.
    fn link(&mut self) -> LinkStatus;

    /// The port's MAC address.
    fn mac_addr(&self) -> MacAddr;

    /// Changes the port's MAC address.
    fn set_mac_addr(&mut self, mac: MacAddr) -> Result<(), PortError>;

    /// Receive every unicast frame.
    fn set_promiscuous(&mut self, on: bool) -> Result<(), PortError> {
        let _ = on;
        Err(PortError::Unsupported("promiscuous mode".into()))
    }

    /// Receive every multicast frame.
    fn set_allmulticast(&mut self, on: bool) -> Result<(), PortError> {
        let _ = on;
        Err(PortError::Unsupported("all-multicast mode".into()))
    }

    /// Replaces the multicast filter list.
    fn set_mc_addr_list(&mut self, addrs: &[MacAddr]) -> Result<(), PortError> {
        let _ = addrs;
        Err(PortError::Unsupported("multicast filter".into()))
    }

    /// Counters.
    fn stats(&self) -> PortStats;

    /// Per-queue counters, indexed by queue.
    fn queue_stats(&self) -> Vec<QueueStats> {
        Vec::new()
    }

    /// Named extended counters: at least [`PortStats::xstats`], plus
    /// whatever the port counts beyond the basic stats.
    fn xstats(&self) -> Vec<Xstat> {
        self.stats().xstats()
    }

    /// Zeroes the counters.
    fn reset_stats(&mut self);
}

impl<P: Port + ?Sized> Port for Box<P> {
    fn info(&self) -> PortInfo {
        (**self).info()
    }
    fn configure(&mut self, conf: &PortConf) -> Result<(), PortError> {
        (**self).configure(conf)
    }
    fn start(&mut self) -> Result<(), PortError> {
        (**self).start()
    }
    fn stop(&mut self) -> Result<(), PortError> {
        (**self).stop()
    }
    fn take_queues(&mut self) -> Result<Queues, PortError> {
        (**self).take_queues()
    }
    fn service(&mut self) {
        (**self).service()
    }
    fn link(&mut self) -> LinkStatus {
        (**self).link()
    }
    fn mac_addr(&self) -> MacAddr {
        (**self).mac_addr()
    }
    fn set_mac_addr(&mut self, mac: MacAddr) -> Result<(), PortError> {
        (**self).set_mac_addr(mac)
    }
    fn set_promiscuous(&mut self, on: bool) -> Result<(), PortError> {
        (**self).set_promiscuous(on)
    }
    fn set_allmulticast(&mut self, on: bool) -> Result<(), PortError> {
        (**self).set_allmulticast(on)
    }
    fn set_mc_addr_list(&mut self, addrs: &[MacAddr]) -> Result<(), PortError> {
        (**self).set_mc_addr_list(addrs)
    }
    fn stats(&self) -> PortStats {
        (**self).stats()
    }
    fn queue_stats(&self) -> Vec<QueueStats> {
        (**self).queue_stats()
    }
    fn xstats(&self) -> Vec<Xstat> {
        (**self).xstats()
    }
    fn reset_stats(&mut self) {
        (**self).reset_stats()
    }
}

/// Counters of one queue direction: written by the one handle that owns the
/// queue, read by the control side at any time.
///
/// One writer means an update is a relaxed load and a relaxed store, not an
/// atomic read-modify-write: on x86 two plain moves, no locked instruction
/// on the burst path. Readers see each counter torn-free (64-bit atomics),
/// possibly a burst behind. Control-side resets are baselines
/// ([`StatsBase`]), never writes, so the single-writer rule holds.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct QueueCounters {
    packets: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    dropped: AtomicU64,
}

/// A snapshot of [`QueueCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueCounts {
    pub packets: u64,
    pub bytes: u64,
    pub errors: u64,
    /// Receive: buffer allocation failures. Transmit: packets dropped.
    pub dropped: u64,
}

#[inline(always)]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

impl QueueCounters {
    /// Shared zeroed counters.
    pub fn new_shared() -> Arc<QueueCounters> {
        Arc::new(QueueCounters::default())
    }

    /// Adds `packets` and `bytes`. Only the queue's owner calls this.
    #[inline(always)]
    pub fn add(&self, packets: u64, bytes: u64) {
        bump(&self.packets, packets);
        bump(&self.bytes, bytes);
    }

    /// Adds errors. Only the queue's owner calls this.
    #[inline]
    pub fn add_errors(&self, n: u64) {
        bump(&self.errors, n);
    }

    /// Adds to `dropped`. Only the queue's owner calls this.
    #[inline]
    pub fn add_dropped(&self, n: u64) {
        bump(&self.dropped, n);
    }

    /// Sets every counter, for a queue that keeps its own totals and
    /// publishes them after each burst. Only the queue's owner calls this.
    #[inline(always)]
    pub fn store(&self, c: QueueCounts) {
        self.packets.store(c.packets, Ordering::Relaxed);
        self.bytes.store(c.bytes, Ordering::Relaxed);
        self.errors.store(c.errors, Ordering::Relaxed);
        self.dropped.store(c.dropped, Ordering::Relaxed);
    }

    /// The current values.
    pub fn get(&self) -> QueueCounts {
        QueueCounts {
            packets: self.packets.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// The counter values at the last `reset_stats`, subtracted from the live
/// ones: a reset from the control side that never writes a queue's
/// counters. Subtraction wraps like the counters do, so a count that
/// restarted (a queue configured anew) never underflows into a panic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsBase(PortStats);

impl StatsBase {
    /// Records `now` as the new zero.
    pub fn reset(&mut self, now: PortStats) {
        self.0 = now;
    }

    /// Forgets the baseline (the counters themselves restarted at zero).
    pub fn clear(&mut self) {
        self.0 = PortStats::default();
    }

    /// `now` relative to the last reset.
    pub fn since(&self, now: PortStats) -> PortStats {
        let b = &self.0;
        PortStats {
            ipackets: now.ipackets.wrapping_sub(b.ipackets),
            opackets: now.opackets.wrapping_sub(b.opackets),
            ibytes: now.ibytes.wrapping_sub(b.ibytes),
            obytes: now.obytes.wrapping_sub(b.obytes),
            imissed: now.imissed.wrapping_sub(b.imissed),
            ierrors: now.ierrors.wrapping_sub(b.ierrors),
            oerrors: now.oerrors.wrapping_sub(b.oerrors),
            rx_nombuf: now.rx_nombuf.wrapping_sub(b.rx_nombuf),
        }
    }
}

/// Sums per-queue counters into port counters: rx counters' `errors` are
/// `ierrors` and `dropped` `rx_nombuf`; tx counters' `errors` are `oerrors`.
pub fn sum_queue_counters<'a>(
    rx: impl IntoIterator<Item = &'a QueueCounters>,
    tx: impl IntoIterator<Item = &'a QueueCounters>,
) -> PortStats {
    let mut s = PortStats::default();
    for c in rx {
        let c = c.get();
        s.ipackets += c.packets;
        s.ibytes += c.bytes;
        s.ierrors += c.errors;
        s.rx_nombuf += c.dropped;
    }
    for c in tx {
        let c = c.get();
        s.opackets += c.packets;
        s.obytes += c.bytes;
        s.oerrors += c.errors;
    }
    s
}

/// Per-queue counters from the counters of each direction.
pub fn queue_stats_of(rx: &[Arc<QueueCounters>], tx: &[Arc<QueueCounters>]) -> Vec<QueueStats> {
    (0..rx.len().max(tx.len()))
        .map(|i| {
            let r = rx.get(i).map(|c| c.get()).unwrap_or_default();
            let t = tx.get(i).map(|c| c.get()).unwrap_or_default();
            QueueStats {
                rx_packets: r.packets,
                rx_bytes: r.bytes,
                tx_packets: t.packets,
                tx_bytes: t.bytes,
                rx_errors: r.errors,
            }
        })
        .collect()
}

/// Whether a port is started, as its queue handles see it: the control side
/// sets it, every burst reads it with one relaxed load. A handle that sees
/// "stopped" does nothing; after a stop the control side waits for nothing
/// from the handles (software ports) or quiesces its device first (PMDs).
#[derive(Clone, Debug, Default)]
pub struct RunFlag(Arc<AtomicBool>);

impl RunFlag {
    pub fn new() -> RunFlag {
        RunFlag::default()
    }

    pub fn set(&self, running: bool) {
        self.0.store(running, Ordering::Release);
    }

    #[inline(always)]
    pub fn is_running(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Tells a port whether the handles of its last [`Port::take_queues`] are
/// still alive: each handle carries a [`Lease`], and the port refuses to
/// hand out or rebuild queues while any lease is held. Taking and dropping
/// a lease are reference-count updates at hand-out and drop, never in a
/// burst.
#[derive(Debug, Default)]
pub struct Leases(Arc<()>);

/// Held by a queue handle; see [`Leases`].
#[derive(Debug)]
pub struct Lease(#[allow(dead_code)] Arc<()>);

impl Leases {
    pub fn new() -> Leases {
        Leases::default()
    }

    /// A lease for one handle.
    pub fn lease(&self) -> Lease {
        Lease(self.0.clone())
    }

    /// How many handles are alive.
    pub fn outstanding(&self) -> usize {
        Arc::strong_count(&self.0) - 1
    }

    /// `Ok` when no handle is alive, else [`PortError::QueuesTaken`].
    pub fn check_none(&self, port: &str) -> Result<(), PortError> {
        match self.outstanding() {
            0 => Ok(()),
            n => Err(PortError::QueuesTaken(format!(
                "{port}: {n} queue handle(s) of the last start are still alive; drop them first"
            ))),
        }
    }
}

/// A port together with all of its queue handles, for code that polls every
/// queue of a port from one thread (tests, single-lcore applications, a
/// bond's view of a member in a test).
pub struct Polled<P: Port> {
    port: P,
    queues: Queues,
}

impl<P: Port> Polled<P> {
    /// Takes the queues of a started port.
    pub fn new(mut port: P) -> Result<Polled<P>, PortError> {
        let queues = port.take_queues()?;
        Ok(Polled { port, queues })
    }

    /// Starts a configured port and takes its queues.
    pub fn start(mut port: P) -> Result<Polled<P>, PortError> {
        port.start()?;
        Polled::new(port)
    }

    /// Receives on queue `queue` (nothing for a queue that does not exist).
    #[inline]
    pub fn rx_burst(&mut self, queue: u16, pkts: &mut Burst<Mbuf>) -> usize {
        match self.queues.rx.get_mut(queue as usize) {
            Some(q) => q.rx_burst(pkts),
            None => 0,
        }
    }

    /// Sends on queue `queue` (nothing for a queue that does not exist).
    #[inline]
    pub fn tx_burst(&mut self, queue: u16, pkts: &mut Burst<Mbuf>) -> usize {
        match self.queues.tx.get_mut(queue as usize) {
            Some(q) => q.tx_burst(pkts),
            None => 0,
        }
    }

    /// The control side.
    pub fn port(&self) -> &P {
        &self.port
    }

    /// The control side, mutable.
    pub fn port_mut(&mut self) -> &mut P {
        &mut self.port
    }

    /// Stops the port and drops the handles; the port can start again.
    pub fn stop(mut self) -> Result<P, PortError> {
        let r = self.port.stop();
        drop(self.queues);
        r.map(|()| self.port)
    }

    /// The port and its handles, apart.
    pub fn into_parts(self) -> (P, Queues) {
        (self.port, self.queues)
    }
}

impl<P: Port + fmt::Debug> fmt::Debug for Polled<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Polled")
            .field("port", &self.port)
            .field("queues", &self.queues)
            .finish()
    }
}
