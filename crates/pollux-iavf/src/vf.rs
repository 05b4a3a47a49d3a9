//! [`IavfVf`]: one Adaptive Virtual Function as a [`Port`].
//!
//! Life of a VF (the queue handles and their recovery as in pollux-igbvf
//! and pollux-ixgbevf):
//! 1. [`IavfVf::open`]: identify the function, open it through VFIO, map
//!    BAR 0, wait for VFGEN_RSTAT, bring the admin queue up, ask the PF
//!    for a reset (RESET_VF) so nothing a previous user configured
//!    survives, and run the bring-up conversation (VERSION,
//!    GET_VF_RESOURCES); then ADD_ETH_ADDR for the VF's MAC.
//! 2. [`Port::configure`]: as many queue pairs as asked (REQUEST_QUEUES and
//!    the VF reset it brings when the PF gave fewer), rings in DMA memory.
//! 3. [`Port::start`]: CONFIG_VSI_QUEUES, CONFIG_IRQ_MAP, RSS (key, LUT,
//!    hash types), VLAN stripping, tails, ENABLE_QUEUES.
//! 4. [`Port::take_queues`]: one [`IavfRx`] and one [`IavfTx`] per queue,
//!    each owning its ring, polled by one lcore. A burst touches its ring
//!    and its own tail register, nothing else.
//! 5. [`Port::service`] on the control thread (every 10 to 100 ms) drains
//!    the PF's messages (LINK_CHANGE, RESET_IMPENDING), samples GET_STATS,
//!    and recovers from a VF reset by itself (see `QueueSet`); no burst
//!    waits for it.
//! 6. [`Port::stop`] / drop: DISABLE_QUEUES (or a VF reset, or bus
//!    mastering off when the PF does not answer); buffers go back to their
//!    pools only after the device stopped.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pollux_core::{
    Burst, Capabilities, HugePages, Lease, Leases, LinkStatus, MacAddr, Mbuf, Port, PortConf,
    PortError, PortInfo, PortStats, QueueCounters, QueueCounts, QueueStats, Queues, RxOffloads,
    RxQueue, StatsBase, TxOffloads, TxQueue, Xstat,
};
use pollux_vfio::pci::{PciAddr, Sysfs};
use pollux_vfio::{Bar, Container, Device, DmaMemory, OpenOpts};

use crate::adminq::AdminQueue;
use crate::ctl::{Ctl, CtlOpts};
use crate::desc::DescRing;
use crate::error::IavfError;
use crate::proto::{self, QueuePairInfo};
use crate::regs;
use crate::rx::{rx_buf_size, RxRing};
use crate::tx::TxRing;

/// Which AVF this is, by PCI ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// 8086:1889, the Adaptive VF ID (E810, and X710 with the AVF ID).
    Adaptive,
    /// 8086:154c, X710/XL710/XXV710 VF.
    X710,
    /// 8086:37cd, X722 VF.
    X722,
}

impl Model {
    pub fn from_ids(vendor: u16, device: u16) -> Option<Model> {
        if vendor != regs::VENDOR_INTEL {
            return None;
        }
        Some(match device {
            regs::DEV_ID_ADAPTIVE_VF => Model::Adaptive,
            regs::DEV_ID_VF => Model::X710,
            regs::DEV_ID_X722_VF => Model::X722,
            _ => return None,
        })
    }
}

/// How to open a VF.
#[derive(Clone, Debug)]
pub struct IavfOpts {
    /// sysfs root, `/dev/vfio`, noiommu opt-in.
    pub vfio: OpenOpts,
    /// Container to open the VF in; `None`: [`Container::process_default`].
    pub container: Option<Container>,
    /// How long one virtchnl request may take.
    pub aq_timeout: Duration,
    /// How long a VF reset may take.
    pub reset_timeout: Duration,
    /// MAC address to use when the PF assigned none; given, it is asked
    /// for even over the PF's (which the PF grants only a trusted VF).
    pub mac: Option<MacAddr>,
    /// RSS key; `None`: [`crate::ctl::DEFAULT_RSS_KEY`] repeated to the
    /// PF's key size.
    pub rss_key: Option<Vec<u8>>,
    /// Ask the PF to reset the VF at open (RESET_VF), so no queue or filter
    /// of a previous user survives.
    pub reset_on_open: bool,
    /// Page size for descriptor rings.
    pub ring_pages: HugePages,
}

impl Default for IavfOpts {
    fn default() -> Self {
        IavfOpts {
            vfio: OpenOpts::default(),
            container: None,
            aq_timeout: Duration::from_secs(2),
            reset_timeout: Duration::from_secs(5),
            mac: None,
            rss_key: None,
            reset_on_open: true,
            ring_pages: HugePages::Never,
        }
    }
}

/// How often the driver looks at the admin queue while polled.
const CHECK_EVERY: Duration = Duration::from_millis(50);
/// How often GET_STATS is sampled.
const STATS_EVERY: Duration = Duration::from_secs(1);
/// How long to wait before retrying a failed re-initialisation.
const RETRY_AFTER: Duration = Duration::from_millis(250);
/// How long an announced reset may take to begin before the driver asks
/// for it itself (Linux iavf_reset_task polls IAVF_RESET_WAIT_DETECTED_COUNT
/// times for ARQLEN.ENABLE to drop).
const RESET_START_WAIT: Duration = Duration::from_secs(1);
/// Ethernet header + FCS added to the MTU.
const FRAME_OVERHEAD: u32 = 14 + 4;
/// Largest frame the hardware takes (i40e/ice IAVF_MAX_RXBUFFER 9728).
const MAX_FRAME: u32 = 9728;
/// Multicast filters offered: i40e and ice give an untrusted VF 16 to 18
/// MAC filters (I40E_VC_MAX_MAC_ADDR_PER_VF, ICE_MAX_MACADDR_PER_VF); one
/// is the VF's own.
const MAX_MC_ADDRS: u16 = 16;

/// One queue of a [`QueueSet`]: its ring while no handle holds it, and the
/// counters its handle publishes.
struct Slot<R> {
    ring: Mutex<Option<R>>,
    counters: QueueCounters,
}

impl<R> Slot<R> {
    fn new(ring: R) -> Slot<R> {
        Slot {
            ring: Mutex::new(Some(ring)),
            counters: QueueCounters::default(),
        }
    }

    fn parked(&self) -> MutexGuard<'_, Option<R>> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Clone, Copy, Debug)]
struct RingLayout {
    iova: u64,
    len: u16,
    initial_tail: u32,
}

const RUNNING: u32 = 1;
const EPOCH: u32 = 2;

/// The queues of one configuration, shared by the control side and the
/// handles; see pollux-ixgbevf's `QueueSet` for the protocol. `state` is
/// the only thing a burst reads besides its own ring: its low bit says
/// whether the queues run, the rest is an epoch the control side advances
/// whenever the device's DMA stopped (stop, VF reset). A handle that sees a
/// new epoch resynchronises in software (rx descriptors rewritten, in-flight
/// transmits freed) and moves its rx tail only once the running bit is set;
/// the control side never waits for a handle.
struct QueueSet {
    bar: Arc<Bar>,
    state: AtomicU32,
    rx_layout: Vec<RingLayout>,
    tx_layout: Vec<RingLayout>,
    rx_buf_size: u32,
    max_pkt: u32,
    rx: Vec<Slot<RxRing>>,
    tx: Vec<Slot<TxRing>>,
}

impl QueueSet {
    fn epoch(&self) -> u32 {
        self.state.load(Ordering::Acquire) & !RUNNING
    }

    /// Advances the epoch with the queues stopped; call only once the
    /// device's DMA stopped (queues disabled or the VF reset done).
    fn next_epoch(&self) -> u32 {
        let e = self.epoch().wrapping_add(EPOCH);
        // Release: the stop of the device happens before any handle acts
        // on the new epoch (frees buffers, rewrites descriptors).
        self.state.store(e, Ordering::Release);
        e
    }

    fn set_running(&self, epoch: u32) {
        // Release: the queue configuration and tails written before this
        // are in place before a handle moves a tail again.
        self.state.store(epoch | RUNNING, Ordering::Release);
    }

    fn arm_parked(&self) -> Result<(), (u16, usize)> {
        for (i, s) in self.rx.iter().enumerate() {
            if let Some(r) = s.parked().as_mut() {
                let missing = r.arm();
                if missing > 0 {
                    return Err((i as u16, missing));
                }
            }
        }
        for s in &self.tx {
            if let Some(t) = s.parked().as_mut() {
                t.reset();
                s.counters.store(counts_tx(t));
            }
        }
        Ok(())
    }

    fn release_parked(&self) {
        for s in &self.rx {
            if let Some(r) = s.parked().as_mut() {
                r.release();
            }
        }
        for s in &self.tx {
            if let Some(t) = s.parked().as_mut() {
                t.reset();
                s.counters.store(counts_tx(t));
            }
        }
    }

    fn masks(&self) -> (u32, u32) {
        let m = |n: usize| ((1u64 << n) - 1) as u32;
        (m(self.rx.len()), m(self.tx.len()))
    }

    fn pairs(&self) -> Vec<QueuePairInfo> {
        let n = self.rx.len().max(self.tx.len());
        (0..n)
            .map(|i| {
                let mut p = QueuePairInfo {
                    queue_id: i as u16,
                    ..QueuePairInfo::default()
                };
                if let Some(t) = self.tx_layout.get(i) {
                    p.tx_ring_len = t.len;
                    p.tx_ring_iova = t.iova;
                }
                if let Some(r) = self.rx_layout.get(i) {
                    p.rx_ring_len = r.len as u32;
                    p.rx_ring_iova = r.iova;
                    p.rx_buf_size = self.rx_buf_size;
                    p.max_pkt_size = self.max_pkt;
                }
                p
            })
            .collect()
    }

    fn counters(&self) -> PortStats {
        pollux_core::port::sum_queue_counters(
            self.rx.iter().map(|s| &s.counters),
            self.tx.iter().map(|s| &s.counters),
        )
    }
}

fn counts_rx(r: &RxRing) -> QueueCounts {
    QueueCounts {
        packets: r.stats.packets,
        bytes: r.stats.bytes,
        errors: r.stats.errors,
        dropped: r.stats.nombuf,
    }
}

fn counts_tx(t: &TxRing) -> QueueCounts {
    QueueCounts {
        packets: t.stats.packets,
        bytes: t.stats.bytes,
        errors: t.stats.errors,
        dropped: 0,
    }
}

/// A receive queue of an [`IavfVf`], owned by the lcore that polls it.
pub struct IavfRx {
    ring: Option<RxRing>,
    set: Arc<QueueSet>,
    queue: usize,
    seen: u32,
    kick: bool,
    _lease: Lease,
}

/// A transmit queue of an [`IavfVf`], owned by the lcore that polls it.
pub struct IavfTx {
    ring: Option<TxRing>,
    set: Arc<QueueSet>,
    queue: usize,
    seen: u32,
    _lease: Lease,
}

impl IavfRx {
    #[cold]
    fn sync(&mut self, st: u32) {
        let Some(r) = self.ring.as_mut() else {
            self.seen = st;
            return;
        };
        if (st ^ self.seen) & !RUNNING != 0 {
            // A new epoch: the device stopped. Every slot still has its
            // buffer, so this rewrites the descriptors; should one be
            // missing, `seen` stays behind and the next burst retries.
            if r.arm() > 0 {
                return;
            }
            self.kick = true;
        }
        if st & RUNNING != 0 && self.kick {
            // The rewritten descriptors reach memory before the tail lets
            // the device fetch them.
            pollux_core::barrier::dma_wmb();
            self.set
                .bar
                .write32(regs::qrx_tail(self.queue as u16), r.initial_tail());
            self.kick = false;
        }
        self.seen = st;
    }
}

impl RxQueue for IavfRx {
    #[inline]
    fn rx_burst(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
        let st = self.set.state.load(Ordering::Acquire);
        if st != self.seen {
            self.sync(st);
        }
        if self.seen & RUNNING == 0 || self.kick {
            return 0;
        }
        let Some(r) = self.ring.as_mut() else {
            return 0;
        };
        let n = r.rx_burst(&*self.set.bar, pkts);
        self.set.rx[self.queue].counters.store(counts_rx(r));
        n
    }
}

impl IavfTx {
    #[cold]
    fn sync(&mut self, st: u32) {
        if (st ^ self.seen) & !RUNNING != 0 {
            if let Some(t) = self.ring.as_mut() {
                t.reset();
                self.set.tx[self.queue].counters.store(counts_tx(t));
            }
        }
        self.seen = st;
    }
}

impl TxQueue for IavfTx {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
        let st = self.set.state.load(Ordering::Acquire);
        if st != self.seen {
            self.sync(st);
        }
        if st & RUNNING == 0 {
            return 0;
        }
        let Some(t) = self.ring.as_mut() else {
            return 0;
        };
        let n = t.tx_burst(&*self.set.bar, pkts);
        self.set.tx[self.queue].counters.store(counts_tx(t));
        n
    }
}

impl Drop for IavfRx {
    fn drop(&mut self) {
        *self.set.rx[self.queue].parked() = self.ring.take();
    }
}

impl Drop for IavfTx {
    fn drop(&mut self) {
        *self.set.tx[self.queue].parked() = self.ring.take();
    }
}

impl std::fmt::Debug for IavfRx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IavfRx")
            .field("queue", &self.queue)
            .finish()
    }
}

impl std::fmt::Debug for IavfTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IavfTx")
            .field("queue", &self.queue)
            .finish()
    }
}

/// Where a reset recovery is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Announced (RESET_IMPENDING) but not yet visible.
    WaitStart,
    /// Visible; waiting for VFGEN_RSTAT to say done.
    WaitDone,
}

#[derive(Clone, Copy, Debug)]
struct Recovery {
    phase: Phase,
    since: Instant,
    /// The epoch the queues come back in, once the reset stopped them.
    epoch: Option<u32>,
}

/// Reads the PCI ID from sysfs and checks that this driver handles it.
pub fn identify(addr: PciAddr, opts: &OpenOpts) -> Result<Model, IavfError> {
    let sysfs = Sysfs::new(&opts.sysfs_root);
    if !sysfs.exists(addr) {
        return Err(IavfError::Vfio(
            pollux_vfio::pci::Error::NoSuchFunction {
                addr,
                root: opts.sysfs_root.clone(),
            }
            .into(),
        ));
    }
    let vendor = sysfs.vendor(addr).map_err(pollux_vfio::VfioError::from)?;
    let device = sysfs.device(addr).map_err(pollux_vfio::VfioError::from)?;
    Model::from_ids(vendor, device).ok_or(IavfError::UnknownDevice {
        addr,
        vendor,
        device,
    })
}

/// An Adaptive Virtual Function. See the [module docs](self).
pub struct IavfVf {
    addr: PciAddr,
    model: Model,
    bar: Arc<Bar>,
    dev: Device,
    ctl: Ctl,
    opts: IavfOpts,
    queues: Option<Arc<QueueSet>>,
    vlan_strip: bool,
    started: bool,
    leases: Leases,
    taken: bool,
    recovery: Option<Recovery>,
    next_check: Instant,
    next_stats: Instant,
    recoveries: u64,
    base: StatsBase,
    bus_master_off: bool,
}

impl IavfVf {
    /// Opens the VF at `addr`: VFIO, BAR 0, VF reset and bring-up with the
    /// PF.
    pub fn open(addr: PciAddr, opts: IavfOpts) -> Result<IavfVf, IavfError> {
        let model = identify(addr, &opts.vfio)?;
        let container = match &opts.container {
            Some(c) => c.clone(),
            None => Container::process_default()?,
        };
        let dev = Device::open(&container, addr, &opts.vfio)?;
        dev.set_bus_master(true)?;
        let bar = Arc::new(dev.map_bar(0)?);
        if bar.len() < regs::BAR0_MIN_LEN {
            return Err(IavfError::Config(format!(
                "{addr}: BAR 0 is {} bytes, an AVF has {}",
                bar.len(),
                regs::BAR0_MIN_LEN
            )));
        }
        let mem = container.dma_memory(HugePages::Never);
        let aq = AdminQueue::new(&mem).map_err(|source| IavfError::Memory {
            addr,
            what: "the admin queue",
            source,
        })?;
        let ctl = Ctl::new(
            addr,
            aq,
            CtlOpts {
                aq_timeout: opts.aq_timeout,
                reset_timeout: opts.reset_timeout,
                mac: opts.mac,
                ..CtlOpts::default()
            },
        );
        let mut vf = IavfVf {
            addr,
            model,
            bar,
            dev,
            ctl,
            queues: None,
            vlan_strip: false,
            started: false,
            leases: Leases::new(),
            taken: false,
            recovery: None,
            next_check: Instant::now(),
            next_stats: Instant::now(),
            recoveries: 0,
            base: StatsBase::default(),
            bus_master_off: false,
            opts,
        };
        let bar = vf.bar.clone();
        vf.ctl.init(&*bar, vf.opts.reset_timeout)?;
        if vf.opts.reset_on_open {
            vf.ctl.reset_vf(&*bar)?;
        }
        vf.ctl.restore_filters(&*bar)?;
        let res = vf.ctl.resources().copied();
        tracing::info!(
            vf = %addr, model = ?model, mac = %vf.ctl.mac(),
            caps = format_args!("{:#x}", res.map(|r| r.caps).unwrap_or(0)),
            queues = res.map(|r| r.num_queue_pairs).unwrap_or(0), "iavf up"
        );
        Ok(vf)
    }

    /// Fault injection (`testing` only): writes `tail` to transmit queue
    /// `queue`'s doorbell (QTX_TAIL) as is, whatever its ring holds.
    #[cfg(feature = "testing")]
    pub fn write_tx_tail_unchecked(&self, queue: u16, tail: u32) {
        self.bar.write32(regs::qtx_tail(queue), tail);
    }

    pub fn addr(&self) -> PciAddr {
        self.addr
    }

    pub fn model(&self) -> Model {
        self.model
    }

    /// The control plane (resources, counters, version).
    pub fn ctl(&self) -> &Ctl {
        &self.ctl
    }

    pub fn container(&self) -> &Container {
        self.dev.container()
    }

    /// A memory provider the VF can DMA to.
    pub fn dma_memory(&self, huge: HugePages) -> DmaMemory {
        self.container().dma_memory(huge)
    }

    /// How often the driver re-initialised the VF after a reset.
    pub fn recoveries(&self) -> u64 {
        self.recoveries
    }

    /// Adds or removes a VLAN filter (ADD_VLAN / DEL_VLAN).
    pub fn vlan_filter(&mut self, vid: u16, on: bool) -> Result<(), IavfError> {
        self.ctl.vlan_filter(&*self.bar, vid, on)
    }

    fn granted_pairs(&self) -> u16 {
        self.ctl
            .resources()
            .map(|r| r.num_queue_pairs)
            .unwrap_or(1)
            .max(1)
    }

    /// Configures, maps and enables the queues for `epoch`: parked rings
    /// re-armed, their rx tails given, tx tails 0 (DPDK
    /// iavf_dev_rx/tx_queue_start), ENABLE_QUEUES, then the running bit.
    fn bring_up(&mut self, epoch: u32) -> Result<(), IavfError> {
        let addr = self.addr;
        let Some(q) = self.queues.clone() else {
            return Err(IavfError::Config("not configured".into()));
        };
        let bar = self.bar.clone();
        q.arm_parked()
            .map_err(|(queue, need)| IavfError::PoolEmpty { addr, queue, need })?;
        self.ctl.config_queues(&*bar, q.pairs())?;
        self.ctl
            .map_queues(&*bar, q.rx.len() as u16, q.tx.len() as u16)?;
        let key = self.opts.rss_key.clone();
        self.ctl
            .config_rss(&*bar, q.rx.len() as u16, key.as_deref())?;
        if self.ctl.has(proto::CAP_VLAN) {
            self.ctl.set_vlan_strip(&*bar, self.vlan_strip)?;
        }
        // Parked rings were re-armed on this thread: their descriptors
        // reach memory before the tails let the device fetch them.
        pollux_core::barrier::dma_wmb();
        for (i, l) in q.rx_layout.iter().enumerate() {
            let t = if q.rx[i].parked().is_some() {
                l.initial_tail
            } else {
                0
            };
            bar.write32(regs::qrx_tail(i as u16), t);
        }
        for i in 0..q.tx_layout.len() {
            bar.write32(regs::qtx_tail(i as u16), 0);
        }
        let (rx, tx) = q.masks();
        self.ctl.enable_queues(&*bar, rx, tx)?;
        q.set_running(epoch);
        Ok(())
    }

    /// Stops the device's DMA: DISABLE_QUEUES; failing that, a VF reset
    /// waited for; failing that, bus mastering off.
    fn quiesce(&mut self) {
        let bar = self.bar.clone();
        if let Some(q) = self.queues.clone() {
            let (rx, tx) = q.masks();
            if !self.ctl.reset_pending && self.ctl.disable_queues(&*bar, rx, tx).is_ok() {
                return;
            }
        }
        self.ctl.request_reset(&*bar);
        if let Err(e) = self.ctl.wait_reset_done(&*bar, self.opts.reset_timeout) {
            tracing::warn!(vf = %self.addr, error = %e, "no VF reset: bus mastering off");
            let _ = self.dev.set_bus_master(false);
            self.bus_master_off = true;
        }
    }

    /// One step of reset recovery. Never waits for the handles; waits on
    /// the device only as long as one admin queue conversation may take.
    fn recovery_step(&mut self, now: Instant) {
        let bar = self.bar.clone();
        let mut rec = self.recovery.unwrap_or(Recovery {
            phase: Phase::WaitStart,
            since: now,
            epoch: None,
        });
        if rec.phase == Phase::WaitStart {
            if self.ctl.reset_seen(&*bar) {
                rec.phase = Phase::WaitDone;
                rec.since = now;
            } else if now.duration_since(rec.since) >= RESET_START_WAIT {
                // Announced but never begun: ask for it.
                tracing::debug!(vf = %self.addr, "announced reset did not begin; RESET_VF");
                self.ctl.request_reset(&*bar);
                rec.phase = Phase::WaitDone;
                rec.since = now;
            }
        }
        if rec.phase == Phase::WaitDone && regs::rstat_done(bar.read32(regs::VFGEN_RSTAT)) {
            // The reset is done: the PF stopped every queue, the device
            // issues no more DMA for them.
            if rec.epoch.is_none() {
                rec.epoch = self.queues.as_ref().map(|q| q.next_epoch());
            }
            let res = (|| {
                self.ctl.init(&*bar, Duration::ZERO)?;
                self.ctl.restore_filters(&*bar)?;
                if self.started {
                    if let Some(e) = rec.epoch {
                        self.bring_up(e)?;
                    }
                }
                Ok::<(), IavfError>(())
            })();
            match res {
                Ok(()) => {
                    self.recovery = None;
                    self.recoveries += 1;
                    tracing::info!(vf = %self.addr, mac = %self.ctl.mac(), "re-initialised after VF reset");
                    return;
                }
                Err(e) => {
                    tracing::debug!(vf = %self.addr, error = %e, "re-initialisation failed; will retry");
                    self.next_check = now + RETRY_AFTER;
                    if self.ctl.reset_pending {
                        rec.phase = Phase::WaitStart;
                        rec.since = now;
                    }
                }
            }
        }
        self.recovery = Some(rec);
    }

    /// Admin queue watch and recovery at most every [`CHECK_EVERY`],
    /// counters every [`STATS_EVERY`].
    fn housekeeping(&mut self, now: Instant) {
        if now < self.next_check {
            return;
        }
        self.next_check = now + CHECK_EVERY;
        let bar = self.bar.clone();
        if self.recovery.is_none() {
            self.ctl.drain(&*bar);
        }
        if self.ctl.reset_pending || self.recovery.is_some() {
            self.recovery_step(now);
            return;
        }
        if now >= self.next_stats {
            self.next_stats = now + STATS_EVERY;
            if let Err(e) = self.ctl.sample_stats(&*bar) {
                tracing::debug!(vf = %self.addr, error = %e, "GET_STATS");
            }
        }
    }

    fn sw_stats(&self) -> PortStats {
        self.queues
            .as_ref()
            .map(|q| q.counters())
            .unwrap_or_default()
    }
}

impl Port for IavfVf {
    fn info(&self) -> PortInfo {
        let granted = self.granted_pairs();
        let max_q = if self.ctl.has(proto::CAP_REQ_QUEUES) {
            regs::MAX_QUEUES.max(granted)
        } else {
            granted
        };
        let mtu = self.ctl.resources().map(|r| r.max_mtu).unwrap_or(0) as u32;
        let vlan = self.ctl.has(proto::CAP_VLAN);
        let mut rx_offloads =
            RxOffloads::IPV4_CKSUM | RxOffloads::UDP_CKSUM | RxOffloads::TCP_CKSUM;
        if vlan {
            rx_offloads |= RxOffloads::VLAN_STRIP | RxOffloads::VLAN_FILTER;
        }
        if self.ctl.has(proto::CAP_RSS_PF) {
            rx_offloads |= RxOffloads::RSS_HASH;
        }
        PortInfo {
            driver: "net_iavf".into(),
            name: self.addr.to_string(),
            capabilities: Capabilities {
                max_rx_queues: max_q,
                max_tx_queues: max_q,
                // Linux iavf: IAVF_MIN_RXD 64 .. IAVF_MAX_RXD 4096, in
                // multiples of IAVF_REQ_DESCRIPTOR_MULTIPLE 32 (virtchnl.h:
                // rx ring_len a multiple of 32).
                min_desc: 64,
                max_desc: 4096,
                desc_align: 32,
                max_frame: if mtu == 0 {
                    MAX_FRAME
                } else {
                    (mtu + FRAME_OVERHEAD).min(MAX_FRAME)
                },
                rx_offloads,
                tx_offloads: TxOffloads::VLAN_INSERT
                    | TxOffloads::IPV4_CKSUM
                    | TxOffloads::UDP_CKSUM
                    | TxOffloads::TCP_CKSUM,
                max_mc_addrs: MAX_MC_ADDRS,
                promiscuous: true,
                allmulticast: true,
            },
        }
    }

    fn configure(&mut self, conf: &PortConf) -> Result<(), PortError> {
        if self.started {
            return Err(PortError::Started);
        }
        let caps = self.info().capabilities;
        conf.validate(&caps)?;
        let (pool_iova, pool_len) = conf.rx_pool.iova_range();
        if !self.container().maps(pool_iova, pool_len as u64) {
            return Err(PortError::InvalidConfig(format!(
                "rx pool {:?} is not DMA memory of this VF's VFIO container; build it with \
                 IavfVf::dma_memory (or Container::dma_memory of the same container)",
                conf.rx_pool.name()
            )));
        }
        let buf = rx_buf_size(&conf.rx_pool);
        if buf < 1024 {
            return Err(PortError::InvalidConfig(format!(
                "rx pool buffers hold {buf} bytes after the headroom; the VF needs at least 1024"
            )));
        }
        let max_pkt = conf.mtu.map(|m| m as u32).unwrap_or(1500) + FRAME_OVERHEAD;
        if max_pkt + 4 > buf || max_pkt > caps.max_frame {
            return Err(PortError::InvalidConfig(format!(
                "MTU {} needs {max_pkt}-byte frames (+4 for a VLAN tag) but rx buffers hold {buf} \
                 (no scatter) and the PF allows {}",
                conf.mtu.unwrap_or(1500),
                caps.max_frame
            )));
        }
        self.leases.check_none(&self.addr.to_string())?;
        if let Some(q) = self.queues.take() {
            q.release_parked();
        }
        let bar = self.bar.clone();
        let pairs = conf.rx_queues.max(conf.tx_queues);
        if pairs > self.granted_pairs() {
            let got = self.ctl.request_queues(&*bar, pairs)?;
            self.ctl.restore_filters(&*bar)?;
            if got < pairs {
                return Err(PortError::Refused(format!(
                    "{}: asked for {pairs} queue pairs, the PF gave {got}",
                    self.addr
                )));
            }
        }
        let mem = self.dma_memory(self.opts.ring_pages);
        let ring_mem = |n: u16, size: usize| -> Result<pollux_core::DmaRegion, PortError> {
            mem.allocate_region((n as usize * size).next_multiple_of(4096))
                .map_err(|e| PortError::Other(crate::error::chain(&e)))
        };
        let mut rx = Vec::new();
        let mut rx_layout = Vec::new();
        for q in 0..conf.rx_queues {
            let ring = DescRing::new(ring_mem(conf.rx_desc, 32)?, conf.rx_desc)
                .ok_or_else(|| PortError::Other("rx ring region too small".into()))?;
            let r = RxRing::new(ring, conf.rx_pool.clone(), conf.port_id, q);
            rx_layout.push(RingLayout {
                iova: r.ring().iova().0,
                len: conf.rx_desc,
                initial_tail: r.initial_tail(),
            });
            rx.push(Slot::new(r));
        }
        let mut tx = Vec::new();
        let mut tx_layout = Vec::new();
        for q in 0..conf.tx_queues {
            let ring = DescRing::new(ring_mem(conf.tx_desc, 16)?, conf.tx_desc)
                .ok_or_else(|| PortError::Other("tx ring region too small".into()))?;
            let mut t = TxRing::new(ring, q);
            let container = self.container().clone();
            t.set_dma_check(Box::new(move |iova, len| container.maps(iova, len)));
            tx_layout.push(RingLayout {
                iova: t.ring().iova().0,
                len: conf.tx_desc,
                initial_tail: 0,
            });
            tx.push(Slot::new(t));
        }
        self.vlan_strip = conf.rx_offloads.contains(RxOffloads::VLAN_STRIP);
        self.queues = Some(Arc::new(QueueSet {
            bar,
            state: AtomicU32::new(0),
            rx_layout,
            tx_layout,
            rx_buf_size: buf,
            max_pkt,
            rx,
            tx,
        }));
        self.base.clear();
        Ok(())
    }

    fn start(&mut self) -> Result<(), PortError> {
        let Some(q) = self.queues.clone() else {
            return Err(PortError::NotConfigured);
        };
        if self.started {
            return Ok(());
        }
        self.leases.check_none(&self.addr.to_string())?;
        let bar = self.bar.clone();
        if self.bus_master_off {
            self.dev.set_bus_master(true).map_err(IavfError::from)?;
            self.bus_master_off = false;
        }
        if self.ctl.reset_pending {
            self.ctl.init(&*bar, self.opts.reset_timeout)?;
            self.ctl.restore_filters(&*bar)?;
        }
        let epoch = q.next_epoch();
        if let Err(e) = self.bring_up(epoch) {
            self.quiesce();
            q.next_epoch();
            q.release_parked();
            return Err(e.into());
        }
        self.started = true;
        self.taken = false;
        self.recovery = None;
        self.next_check = Instant::now() + CHECK_EVERY;
        Ok(())
    }

    fn stop(&mut self) -> Result<(), PortError> {
        if !self.started {
            return Ok(());
        }
        self.started = false;
        self.recovery = None;
        self.quiesce();
        if let Some(q) = &self.queues {
            q.next_epoch();
            q.release_parked();
        }
        Ok(())
    }

    fn take_queues(&mut self) -> Result<Queues, PortError> {
        if !self.started {
            return Err(PortError::NotStarted);
        }
        let Some(q) = self.queues.clone() else {
            return Err(PortError::NotConfigured);
        };
        if self.taken {
            return Err(PortError::QueuesTaken(self.addr.to_string()));
        }
        self.taken = true;
        let seen = q.state.load(Ordering::Acquire);
        let rx = (0..q.rx.len())
            .map(|i| {
                Box::new(IavfRx {
                    ring: q.rx[i].parked().take(),
                    set: q.clone(),
                    queue: i,
                    seen,
                    kick: false,
                    _lease: self.leases.lease(),
                }) as Box<dyn RxQueue>
            })
            .collect();
        let tx = (0..q.tx.len())
            .map(|i| {
                Box::new(IavfTx {
                    ring: q.tx[i].parked().take(),
                    set: q.clone(),
                    queue: i,
                    seen,
                    _lease: self.leases.lease(),
                }) as Box<dyn TxQueue>
            })
            .collect();
        Ok(Queues { rx, tx })
    }

    fn service(&mut self) {
        self.housekeeping(Instant::now());
    }

    fn link(&mut self) -> LinkStatus {
        self.next_check = Instant::now();
        self.housekeeping(Instant::now());
        self.ctl.link()
    }

    fn mac_addr(&self) -> MacAddr {
        self.ctl.mac()
    }

    fn set_mac_addr(&mut self, mac: MacAddr) -> Result<(), PortError> {
        pollux_core::port::require_unicast(mac)?;
        self.ctl.set_mac(&*self.bar, mac)?;
        Ok(())
    }

    fn set_promiscuous(&mut self, on: bool) -> Result<(), PortError> {
        let (_, mc) = self.ctl.promisc();
        self.ctl.set_promisc(&*self.bar, on, mc)?;
        Ok(())
    }

    fn set_allmulticast(&mut self, on: bool) -> Result<(), PortError> {
        let (uc, _) = self.ctl.promisc();
        self.ctl.set_promisc(&*self.bar, uc, on)?;
        Ok(())
    }

    fn set_mc_addr_list(&mut self, addrs: &[MacAddr]) -> Result<(), PortError> {
        pollux_core::port::require_multicast(addrs)?;
        if addrs.len() > MAX_MC_ADDRS as usize {
            return Err(PortError::InvalidConfig(format!(
                "{} multicast addresses; the PF gives a VF at most {MAX_MC_ADDRS}",
                addrs.len()
            )));
        }
        self.ctl.set_multicast(&*self.bar, addrs)?;
        Ok(())
    }

    fn stats(&self) -> PortStats {
        let mut s = self.base.since(self.sw_stats());
        s.imissed = self.ctl.stats.rx_discards.total();
        s
    }

    fn queue_stats(&self) -> Vec<QueueStats> {
        let Some(q) = &self.queues else {
            return Vec::new();
        };
        (0..q.rx.len().max(q.tx.len()))
            .map(|i| {
                let r = q.rx.get(i).map(|s| s.counters.get()).unwrap_or_default();
                let t = q.tx.get(i).map(|s| s.counters.get()).unwrap_or_default();
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

    fn xstats(&self) -> Vec<Xstat> {
        let mut x = self.stats().xstats();
        let h = &self.ctl.stats;
        x.extend([
            Xstat::new("hw_rx_bytes", h.rx_bytes.total()),
            Xstat::new("hw_rx_unicast_packets", h.rx_unicast.total()),
            Xstat::new("hw_rx_multicast_packets", h.rx_multicast.total()),
            Xstat::new("hw_rx_broadcast_packets", h.rx_broadcast.total()),
            Xstat::new("hw_rx_discards", h.rx_discards.total()),
            Xstat::new("hw_rx_unknown_protocol", h.rx_unknown_protocol.total()),
            Xstat::new("hw_tx_bytes", h.tx_bytes.total()),
            Xstat::new("hw_tx_unicast_packets", h.tx_unicast.total()),
            Xstat::new("hw_tx_multicast_packets", h.tx_multicast.total()),
            Xstat::new("hw_tx_broadcast_packets", h.tx_broadcast.total()),
            Xstat::new("hw_tx_discards", h.tx_discards.total()),
            Xstat::new("hw_tx_errors", h.tx_errors.total()),
            Xstat::new("vf_reset_recoveries", self.recoveries),
            Xstat::new("pf_events", self.ctl.events),
            Xstat::new("aq_messages_sent", self.ctl.admin_queue().sent),
            Xstat::new("aq_messages_received", self.ctl.admin_queue().received),
        ]);
        x
    }

    fn reset_stats(&mut self) {
        self.base.reset(self.sw_stats());
        self.ctl.stats.reset();
    }
}

impl Drop for IavfVf {
    fn drop(&mut self) {
        let bar = self.bar.clone();
        if self.started {
            self.quiesce();
        }
        // A reset leaves the PF with no filter or queue of ours.
        if !self.ctl.reset_pending {
            self.ctl.request_reset(&*bar);
            let _ = self.ctl.wait_reset_done(&*bar, self.opts.reset_timeout);
        }
        let _ = self.dev.set_bus_master(false);
        if let Some(q) = &self.queues {
            q.next_epoch();
            q.release_parked();
        }
    }
}

impl std::fmt::Debug for IavfVf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IavfVf")
            .field("addr", &self.addr)
            .field("model", &self.model)
            .field("mac", &self.ctl.mac())
            .field("started", &self.started)
            .field("reset_pending", &self.ctl.reset_pending)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pollux_core::{AnonMemory, MemoryProvider, Mempool, MempoolConfig};
    use std::sync::atomic::AtomicBool;

    fn ring<D: Copy>(n: u16, size: usize) -> DescRing<D> {
        let r = AnonMemory::new(HugePages::Never)
            .allocate(n as usize * size)
            .unwrap();
        DescRing::new(r, n).unwrap()
    }

    fn set(pool: &Mempool) -> Arc<QueueSet> {
        let rx = RxRing::new(ring(64, 32), pool.clone(), 0, 0);
        let tx = TxRing::new(ring(64, 16), 0);
        let layout = |iova, initial_tail| RingLayout {
            iova,
            len: 64,
            initial_tail,
        };
        Arc::new(QueueSet {
            bar: Arc::new(Bar::plain_memory(0x10000)),
            state: AtomicU32::new(0),
            rx_layout: vec![layout(rx.ring().iova().0, rx.initial_tail())],
            tx_layout: vec![layout(tx.ring().iova().0, 0)],
            rx_buf_size: 2048,
            max_pkt: 1518,
            rx: vec![Slot::new(rx)],
            tx: vec![Slot::new(tx)],
        })
    }

    fn handles(q: &Arc<QueueSet>, leases: &Leases) -> (IavfRx, IavfTx) {
        let seen = q.state.load(Ordering::Acquire);
        (
            IavfRx {
                ring: q.rx[0].parked().take(),
                set: q.clone(),
                queue: 0,
                seen,
                kick: false,
                _lease: leases.lease(),
            },
            IavfTx {
                ring: q.tx[0].parked().take(),
                set: q.clone(),
                queue: 0,
                seen,
                _lease: leases.lease(),
            },
        )
    }

    #[test]
    fn queue_pairs_describe_every_ring() {
        let pool = Mempool::new(
            MempoolConfig::new("vf-pairs", 128),
            &AnonMemory::new(HugePages::Never),
        )
        .unwrap();
        let q = set(&pool);
        let p = q.pairs();
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].tx_ring_len, p[0].rx_ring_len), (64, 64));
        assert_eq!((p[0].rx_buf_size, p[0].max_pkt_size), (2048, 1518));
        assert_eq!(q.masks(), (1, 1));
    }

    /// Reset recovery against handles polled on another thread: the
    /// control side never waits for a handle and a burst never waits for
    /// the control side; each handle resynchronises at its next burst and
    /// gives the device its rx tail only once the queues run; in-flight
    /// transmits are freed at each new epoch; every buffer is back at the
    /// end.
    #[test]
    fn recovery_against_handles_polled_elsewhere() {
        let mut cfg = MempoolConfig::new("vf-test", 512);
        cfg.cache_size = 0;
        let pool = Mempool::new(cfg, &AnonMemory::new(HugePages::Never)).unwrap();
        let q = set(&pool);
        let leases = Leases::new();
        let e = q.next_epoch();
        q.arm_parked().unwrap();
        q.set_running(e);
        let (mut rx, mut tx) = handles(&q, &leases);
        let done = Arc::new(AtomicBool::new(false));
        let (done2, pool2) = (done.clone(), pool.clone());
        let poller = std::thread::spawn(move || {
            let (mut bursts, mut refused) = (0u64, 0u64);
            let mut b = Burst::new(8);
            while !done2.load(Ordering::Relaxed) {
                assert_eq!(rx.rx_burst(&mut b), 0, "no device writes here");
                pool2.alloc_bulk(&mut b, 8);
                b.iter_mut().for_each(|m| assert!(m.set_len(60)));
                if tx.tx_burst(&mut b) == 0 && !b.is_empty() {
                    refused += 1;
                }
                b.clear();
                bursts += 1;
            }
            (bursts, refused, rx, tx)
        });
        for _ in 0..50 {
            // What recovery does: the reset stopped the device, new epoch,
            // queues configured again (tail 0), then running.
            let e = q.next_epoch();
            q.arm_parked().unwrap();
            q.bar.write32(regs::qrx_tail(0), 0);
            std::thread::sleep(Duration::from_millis(1));
            assert_eq!(q.bar.read32(regs::qrx_tail(0)), 0, "no tail while stopped");
            q.set_running(e);
            let t0 = Instant::now();
            while q.bar.read32(regs::qrx_tail(0)) != 63 {
                assert!(
                    t0.elapsed() < Duration::from_secs(5),
                    "the handle never kicked"
                );
                std::thread::yield_now();
            }
        }
        done.store(true, Ordering::Relaxed);
        let (bursts, refused, rx, tx) = poller.join().unwrap();
        assert!(
            bursts > 50 && refused > 0,
            "{bursts} bursts, {refused} refused"
        );
        assert!(
            q.tx[0].counters.get().errors > 0,
            "in-flight frames dropped"
        );
        drop((rx, tx));
        assert!(q.rx[0].parked().is_some() && q.tx[0].parked().is_some());
        assert_eq!(leases.outstanding(), 0);
        q.next_epoch();
        q.release_parked();
        assert_eq!(pool.available(), 512, "every buffer back");
    }

    #[test]
    fn an_idle_handle_catches_up_later() {
        let pool = Mempool::new(
            MempoolConfig::new("vf-test2", 256),
            &AnonMemory::new(HugePages::Never),
        )
        .unwrap();
        let q = set(&pool);
        let leases = Leases::new();
        let e = q.next_epoch();
        q.arm_parked().unwrap();
        let (mut rx, mut tx) = handles(&q, &leases);
        let mut b = Burst::new(4);
        assert!(pool.alloc_bulk(&mut b, 4));
        b.iter_mut().for_each(|m| assert!(m.set_len(60)));
        assert_eq!(tx.tx_burst(&mut b), 0, "armed but not running");
        assert_eq!(b.len(), 4, "the packets stay the caller's");
        q.set_running(e);
        assert_eq!(tx.tx_burst(&mut b), 4);
        for _ in 0..3 {
            let e = q.next_epoch();
            q.set_running(e);
        }
        assert_eq!(rx.rx_burst(&mut b), 0);
        assert_eq!(
            q.bar.read32(regs::qrx_tail(0)),
            63,
            "tail given on the first burst"
        );
        assert!(pool.alloc_bulk(&mut b, 4));
        b.iter_mut().for_each(|m| assert!(m.set_len(60)));
        assert_eq!(tx.tx_burst(&mut b), 4);
        assert_eq!(
            q.bar.read32(regs::qtx_tail(0)),
            4,
            "the tx ring started over at 0"
        );
    }

    #[test]
    fn models_from_every_id() {
        for (id, m) in [
            (0x1889, Model::Adaptive),
            (0x154C, Model::X710),
            (0x37CD, Model::X722),
        ] {
            assert_eq!(Model::from_ids(0x8086, id), Some(m));
            assert!(crate::DRIVER.handles(0x8086, id));
        }
        assert_eq!(Model::from_ids(0x8086, 0x10ED), None, "an ixgbe VF");
        assert_eq!(Model::from_ids(0x1af4, 0x1889), None);
    }
}
