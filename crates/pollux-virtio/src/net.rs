//! [`VirtioNet`]: one virtio-net function as a [`Port`].
//!
//! Life of a device (virtio 1.2, 3.1.1 "Driver Requirements: Device
//! Initialization"):
//! 1. [`VirtioNet::open`]: identify the function, open it through VFIO,
//!    find its virtio capabilities and map them, reset the device and read
//!    what it offers: features, MAC, queue pairs, queue sizes. A device
//!    without `VIRTIO_F_VERSION_1` or `VIRTIO_F_ACCESS_PLATFORM` is refused
//!    here with what to change.
//! 2. [`Port::configure`]: the virtqueues in DMA memory of the container.
//! 3. [`Port::start`]: reset, ACKNOWLEDGE and DRIVER, the features the
//!    configuration needs, FEATURES_OK (read back), every queue programmed
//!    and enabled, receive queues filled, DRIVER_OK; then, over the control
//!    queue, the number of queue pairs and the receive filters.
//! 4. [`Port::take_queues`]: one [`VirtioRx`] and one [`VirtioTx`] per
//!    queue pair, each owning its virtqueue, polled by one lcore. A burst
//!    touches its virtqueue and, when the device asked for it, its notify
//!    register; nothing else.
//! 5. [`Port::service`] reads the device status: after DEVICE_NEEDS_RESET
//!    the driver resets and re-initialises the device by itself. Handles
//!    that hold a queue start it over at their next burst and say so; the
//!    device gets DRIVER_OK again once every queue has (a virtqueue cannot
//!    be given back to a device while its driver still writes it).
//! 6. [`Port::stop`] / drop: a device reset, after which the device owns no
//!    buffer; buffers go back to their pools when the queues are started
//!    over or released.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pollux_core::{
    Burst, Capabilities, Duplex, HugePages, Lease, Leases, LinkStatus, MacAddr, Mbuf,
    MemoryProvider, Port, PortConf, PortError, PortInfo, PortStats, QueueCounters, QueueCounts,
    QueueStats, Queues, RxOffloads, RxQueue, StatsBase, TxOffloads, TxQueue, Xstat,
};
use pollux_vfio::pci::{PciAddr, Sysfs};
use pollux_vfio::{Container, Device, OpenOpts};

use crate::ctrl::{self, Command, ControlVq};
use crate::error::VirtioError;
use crate::rx::RxVq;
use crate::spec::{self, bit};
use crate::transport::{find_caps, PciTransport, Transport};
use crate::tx::TxVq;
use crate::vq::Vq;

/// How to open a virtio-net function.
#[derive(Clone, Debug)]
pub struct VirtioOpts {
    /// sysfs root, `/dev/vfio`, noiommu opt-in.
    pub vfio: OpenOpts,
    /// Container to open the function in; `None`: the process's shared
    /// container.
    pub container: Option<Container>,
    /// MAC address to use when the device offers none (no
    /// `VIRTIO_NET_F_MAC`). `None`: [`default_mac`].
    pub mac: Option<MacAddr>,
    /// How long a reset or a control command may take.
    pub timeout: Duration,
    /// Negotiate `VIRTIO_F_RING_EVENT_IDX` when offered (default: no, as
    /// DPDK's net_virtio).
    ///
    /// A polled driver wants no interrupts, so event indices could only
    /// change its notifications, and QEMU's device makes them more
    /// frequent: while it drains a transmit queue it moves `avail_event`
    /// along behind what it consumed (`virtqueue_pop`), so bursts arriving
    /// meanwhile notify, where `VRING_USED_F_NO_NOTIFY` keeps the driver
    /// quiet until the queue is drained. On the lab's virtio VF the
    /// difference was within the noise of single pairs (txonly 0.48 of
    /// DPDK's with them, 0.55 to 0.64 without; docs/performance.md).
    pub event_idx: bool,
    /// Use packed virtqueues (`VIRTIO_F_RING_PACKED`, 2.8) when the device
    /// offers them (default: yes; QEMU offers them with `packed=on`).
    pub packed: bool,
}

impl Default for VirtioOpts {
    fn default() -> Self {
        VirtioOpts {
            vfio: OpenOpts::default(),
            container: None,
            mac: None,
            timeout: Duration::from_secs(1),
            event_idx: false,
            packed: true,
        }
    }
}

/// The MAC used when the device gives none: locally administered, unicast,
/// `02:51:` + domain low byte, bus, device, function.
pub fn default_mac(addr: PciAddr) -> MacAddr {
    MacAddr([
        0x02,
        0x51,
        addr.domain() as u8,
        addr.bus(),
        addr.device(),
        addr.function(),
    ])
}

/// Features the driver can use, whatever the configuration.
const BASE_FEATURES: u64 = bit(spec::F_VERSION_1)
    | bit(spec::F_ACCESS_PLATFORM)
    | bit(spec::NET_F_MAC)
    | bit(spec::NET_F_STATUS)
    | bit(spec::NET_F_SPEED_DUPLEX)
    | bit(spec::NET_F_CTRL_VQ)
    | bit(spec::NET_F_CTRL_RX)
    | bit(spec::NET_F_CTRL_MAC_ADDR);

/// Ethernet header and one VLAN tag on top of the MTU, without FCS.
const FRAME_OVERHEAD: u32 = 14 + 4;

/// The Toeplitz key sent with `MQ_RSS_CONFIG`: the key of Microsoft's
/// "Verifying the RSS Hash Calculation" (the one most NICs and DPDK's
/// test vectors use), cut to the device's `rss_max_key_size`.
pub const RSS_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// Queue index of rx queue `k`, tx queue `k` and the control queue
/// (5.1.2).
const fn rx_index(k: u16) -> u16 {
    2 * k
}
const fn tx_index(k: u16) -> u16 {
    2 * k + 1
}

/// One queue of a [`QueueSet`]: its virtqueue while no handle holds it,
/// the counters its handle publishes, and the epoch its virtqueue was last
/// started over for.
struct Slot<R> {
    vq: Mutex<Option<R>>,
    counters: QueueCounters,
    ready: AtomicU32,
}

impl<R> Slot<R> {
    fn new(vq: R) -> Slot<R> {
        Slot {
            vq: Mutex::new(Some(vq)),
            counters: QueueCounters::default(),
            ready: AtomicU32::new(0),
        }
    }

    /// The virtqueue, if no handle holds it. A poisoned lock still holds a
    /// consistent `Option`.
    fn parked(&self) -> MutexGuard<'_, Option<R>> {
        self.vq.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Running bit of [`QueueSet::state`]; the other bits are the epoch.
const RUNNING: u32 = 1;
const EPOCH: u32 = 2;

/// The queues of one configuration, shared by the control side and the
/// handles.
///
/// `state` is all a burst reads besides its own virtqueue: one acquire
/// load. Its low bit says whether the queues run; the rest is an epoch the
/// control side advances after every device reset. A reset device has
/// forgotten every queue position, so a virtqueue must be started over
/// (zeroed, receive buffers posted again, transmits in flight freed) before
/// the device may see it again. Parked virtqueues are started over by the
/// control side; a handle that holds one does it at its next burst and
/// stores the epoch into its slot's `ready` (release). The control side
/// sets DRIVER_OK, which is when the device may look at the queues, only
/// after every slot is ready for the current epoch (acquire), and then the
/// running bit. So the device never reads a virtqueue its driver is
/// rewriting, and no burst waits for anything.
struct QueueSet {
    state: AtomicU32,
    /// Where every rx and tx virtqueue is, for programming the device.
    layout: Vec<QueueLayout>,
    rx: Vec<Slot<RxVq>>,
    tx: Vec<Slot<TxVq>>,
}

/// A virtqueue's index, size and area addresses: fixed from configure on.
#[derive(Clone, Copy, Debug)]
struct QueueLayout {
    index: u16,
    size: u16,
    desc: u64,
    driver: u64,
    device: u64,
}

impl QueueLayout {
    fn of(index: u16, vq: &Vq) -> QueueLayout {
        let (d, a, u) = vq.addresses();
        QueueLayout {
            index,
            size: vq.size(),
            desc: d.0,
            driver: a.0,
            device: u.0,
        }
    }
}

impl QueueSet {
    fn epoch(&self) -> u32 {
        self.state.load(Ordering::Acquire) & !RUNNING
    }

    /// Advances the epoch with the queues stopped; call after a reset.
    fn next_epoch(&self) -> u32 {
        let e = self.epoch().wrapping_add(EPOCH).max(EPOCH);
        // Release: the device reset before this happens before any handle
        // acts on the new epoch (frees transmits, rewrites descriptors).
        self.state.store(e, Ordering::Release);
        e
    }

    fn set_running(&self, epoch: u32) {
        self.state.store(epoch | RUNNING, Ordering::Release);
    }

    /// Starts every parked virtqueue over for `epoch`. `Err` with the rx
    /// queue whose pool ran dry.
    fn start_over_parked(&self, epoch: u32) -> Result<(), (u16, usize)> {
        for (i, s) in self.rx.iter().enumerate() {
            if let Some(r) = s.parked().as_mut() {
                let missing = r.arm();
                if missing > 0 {
                    return Err((i as u16, missing));
                }
                s.counters.store(counts_rx(r));
                s.ready.store(epoch, Ordering::Release);
            }
        }
        for s in &self.tx {
            if let Some(t) = s.parked().as_mut() {
                t.reset();
                s.counters.store(counts_tx(t));
                s.ready.store(epoch, Ordering::Release);
            }
        }
        Ok(())
    }

    /// Whether every virtqueue was started over for `epoch`.
    fn all_ready(&self, epoch: u32) -> bool {
        self.rx
            .iter()
            .map(|s| &s.ready)
            .chain(self.tx.iter().map(|s| &s.ready))
            .all(|r| r.load(Ordering::Acquire) == epoch)
    }

    /// Returns the buffers of every parked virtqueue. Only after a reset.
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

    fn counters(&self) -> PortStats {
        pollux_core::port::sum_queue_counters(
            self.rx.iter().map(|s| &s.counters),
            self.tx.iter().map(|s| &s.counters),
        )
    }

    /// (device faults, rx notifications, tx notifications) of the parked
    /// virtqueues (a queue a handle holds reports when it is given back).
    fn parked_counts(&self) -> (u64, u64, u64) {
        let (mut faults, mut rxn, mut txn) = (0, 0, 0);
        for s in &self.rx {
            if let Some(r) = s.parked().as_ref() {
                faults += r.stats.device_faults;
                rxn += r.stats.notifies;
            }
        }
        for s in &self.tx {
            if let Some(t) = s.parked().as_ref() {
                faults += t.stats.device_faults;
                txn += t.stats.notifies;
            }
        }
        (faults, rxn, txn)
    }
}

fn counts_rx(r: &RxVq) -> QueueCounts {
    QueueCounts {
        packets: r.stats.packets,
        bytes: r.stats.bytes,
        errors: r.stats.errors + r.stats.device_faults,
        dropped: r.stats.nombuf,
    }
}

fn counts_tx(t: &TxVq) -> QueueCounts {
    QueueCounts {
        packets: t.stats.packets,
        bytes: t.stats.bytes,
        errors: t.stats.errors + t.stats.device_faults,
        dropped: 0,
    }
}

/// A receive queue of a [`VirtioNet`], owned by the lcore that polls it.
pub struct VirtioRx {
    vq: Option<RxVq>,
    set: Arc<QueueSet>,
    queue: usize,
    seen: u32,
    /// Started over for the current epoch; the device is to be told about
    /// the posted buffers once the queues run.
    kick: bool,
    _lease: Lease,
}

/// A transmit queue of a [`VirtioNet`], owned by the lcore that polls it.
pub struct VirtioTx {
    vq: Option<TxVq>,
    set: Arc<QueueSet>,
    queue: usize,
    seen: u32,
    _lease: Lease,
}

impl VirtioRx {
    /// A state change (see [`QueueSet`]); runs once per reset or start.
    #[cold]
    fn sync(&mut self, st: u32) {
        let slot = &self.set.rx[self.queue];
        let Some(r) = self.vq.as_mut() else {
            self.seen = st;
            return;
        };
        let epoch = st & !RUNNING;
        if slot.ready.load(Ordering::Relaxed) != epoch {
            // Every slot of a held virtqueue has its buffer (a burst swaps
            // a fresh one in before it gives one away), so this only
            // rewrites the rings. Should the pool be dry, `seen` stays
            // behind and the next burst tries again.
            if r.arm() > 0 {
                return;
            }
            slot.counters.store(counts_rx(r));
            slot.ready.store(epoch, Ordering::Release);
            self.kick = true;
        }
        if st & RUNNING != 0 && self.kick {
            r.kick();
            self.kick = false;
        }
        self.seen = st;
    }
}

impl RxQueue for VirtioRx {
    #[inline]
    fn rx_burst(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
        let st = self.set.state.load(Ordering::Acquire);
        if st != self.seen {
            self.sync(st);
        }
        if self.seen & RUNNING == 0 {
            return 0;
        }
        let Some(r) = self.vq.as_mut() else {
            return 0;
        };
        let n = r.rx_burst(pkts);
        self.set.rx[self.queue].counters.store(counts_rx(r));
        n
    }
}

impl VirtioTx {
    #[cold]
    fn sync(&mut self, st: u32) {
        let slot = &self.set.tx[self.queue];
        let epoch = st & !RUNNING;
        if let Some(t) = self.vq.as_mut() {
            if slot.ready.load(Ordering::Relaxed) != epoch {
                // The device was reset: what it had not sent is freed here
                // and the virtqueue starts over.
                t.reset();
                slot.counters.store(counts_tx(t));
                slot.ready.store(epoch, Ordering::Release);
            }
        }
        self.seen = st;
    }
}

impl TxQueue for VirtioTx {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
        let st = self.set.state.load(Ordering::Acquire);
        if st != self.seen {
            self.sync(st);
        }
        if st & RUNNING == 0 {
            return 0;
        }
        let Some(t) = self.vq.as_mut() else {
            return 0;
        };
        let n = t.tx_burst(pkts);
        self.set.tx[self.queue].counters.store(counts_tx(t));
        n
    }
}

// A dropped handle parks its virtqueue: the device may still own its
// buffers, so they are freed only after a reset.
impl Drop for VirtioRx {
    fn drop(&mut self) {
        *self.set.rx[self.queue].parked() = self.vq.take();
    }
}

impl Drop for VirtioTx {
    fn drop(&mut self) {
        *self.set.tx[self.queue].parked() = self.vq.take();
    }
}

impl std::fmt::Debug for VirtioRx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioRx")
            .field("queue", &self.queue)
            .finish()
    }
}

impl std::fmt::Debug for VirtioTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioTx")
            .field("queue", &self.queue)
            .finish()
    }
}

/// What the device offered at open.
#[derive(Clone, Copy, Debug)]
struct Offer {
    features: u64,
    max_pairs: u16,
    rx_size: u16,
    tx_size: u16,
    ctrl_size: u16,
    /// With `VIRTIO_NET_F_RSS`: what the device's configuration says.
    rss: Option<RssOffer>,
}

/// The RSS limits a device offers (5.1.4: `rss_max_key_size`,
/// `rss_max_indirection_table_length`, `supported_hash_types`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RssOffer {
    max_key: u8,
    max_table: u16,
    hash_types: u32,
}

impl RssOffer {
    /// The `MQ_RSS_CONFIG` command spreading flows over `pairs` queue
    /// pairs: every supported IP, TCP and UDP hash type, the largest
    /// power-of-two table the device and the driver allow with queues
    /// round-robin, and [`RSS_KEY`]. `None` when the device's limits leave
    /// no usable configuration (no hash type, no key, no table).
    fn command(&self, pairs: u16) -> Option<Command> {
        let hash_types = self.hash_types & spec::hash::ALL;
        let limit = (self.max_table as usize).min(ctrl::MAX_RSS_TABLE);
        let key_len = (self.max_key as usize).min(RSS_KEY.len());
        if hash_types == 0 || limit == 0 || key_len == 0 || pairs == 0 {
            return None;
        }
        // The largest power of two not above the limit.
        let len = 1usize << (usize::BITS - 1 - limit.leading_zeros());
        Some(Command::Rss {
            hash_types,
            table: (0..len).map(|i| (i % pairs as usize) as u16).collect(),
            max_tx_vq: pairs,
            key: RSS_KEY[..key_len].to_vec(),
        })
    }
}

impl Offer {
    fn has(&self, f: u32) -> bool {
        self.features & bit(f) != 0
    }
}

/// The receive filters, kept so they can be sent again after every reset.
#[derive(Clone, Debug, Default)]
struct Filters {
    promisc: bool,
    allmulti: bool,
    mc: Vec<MacAddr>,
    vlans: std::collections::BTreeSet<u16>,
    /// The application set the MAC (sent with MAC_ADDR_SET).
    user_mac: bool,
}

/// A virtio-net function. See the [module docs](self).
pub struct VirtioNet {
    name: String,
    addr: Option<PciAddr>,
    transport: Box<dyn Transport>,
    memory: Arc<dyn MemoryProvider>,
    /// Where virtqueues come from: huge pages when there are any (fewer TLB
    /// misses for the device and the driver), else 4 KiB pages.
    ring_memory: Arc<dyn MemoryProvider>,
    dma_check: Option<Arc<dyn Fn(pollux_core::Iova, u64) -> bool + Send + Sync>>,
    dev: Option<Device>,
    opts: VirtioOpts,
    offer: Offer,
    /// Features negotiated at the last start.
    features: u64,
    mac: MacAddr,
    filters: Filters,
    /// Queue pairs of the configuration.
    pairs: u16,
    queues: Option<Arc<QueueSet>>,
    ctrl: Option<ControlVq>,
    started: bool,
    leases: Leases,
    taken: bool,
    /// A re-initialisation waiting for handles to start their queues over.
    pending: Option<u32>,
    recoveries: u64,
    base: StatsBase,
}

impl VirtioNet {
    /// Opens the virtio-net function at `addr`.
    pub fn open(addr: PciAddr, opts: VirtioOpts) -> Result<VirtioNet, VirtioError> {
        identify(addr, &opts.vfio)?;
        let container = match &opts.container {
            Some(c) => c.clone(),
            None => Container::process_default()?,
        };
        let dev = Device::open(&container, addr, &opts.vfio)?;
        dev.set_bus_master(true)?;
        let mut cfg = [0u8; 256];
        dev.config_read(0, &mut cfg)?;
        let caps = find_caps(&cfg).map_err(|source| VirtioError::Caps {
            dev: addr.to_string(),
            source,
        })?;
        let mut bars: [Option<Arc<pollux_vfio::Bar>>; 6] = Default::default();
        let transport = PciTransport::new(&caps, |i| {
            let slot = bars.get_mut(i as usize).ok_or_else(|| format!("BAR {i}"))?;
            if slot.is_none() {
                *slot = Some(Arc::new(
                    dev.map_bar(i as u32)
                        .map_err(|e| pollux_core::error_chain(&e))?,
                ));
            }
            Ok(slot.clone().expect("set above"))
        })
        .map_err(|e| VirtioError::Config(format!("{addr}: {e}")))?;
        let check_container = container.clone();
        let mut net = VirtioNet::from_transport(
            addr.to_string(),
            Box::new(transport),
            Arc::new(container.dma_memory(HugePages::Never)),
            opts,
        )?;
        // Virtqueues in huge pages where the system has them (one each).
        net.ring_memory = Arc::new(container.dma_memory(HugePages::Prefer));
        net.addr = Some(addr);
        net.dma_check = Some(Arc::new(move |iova, len| check_container.maps(iova, len)));
        net.dev = Some(dev);
        tracing::info!(dev = %addr, mac = %net.mac, features = ?spec::feature_names(net.offer.features), "virtio-net up");
        Ok(net)
    }

    /// A port over any [`Transport`] (the device double of the `testing`
    /// feature, or a transport of another bus), with virtqueues from
    /// `memory`. The device is reset and read as in [`VirtioNet::open`].
    pub fn from_transport(
        name: String,
        transport: Box<dyn Transport>,
        memory: Arc<dyn MemoryProvider>,
        opts: VirtioOpts,
    ) -> Result<VirtioNet, VirtioError> {
        let mut net = VirtioNet {
            name,
            addr: None,
            transport,
            ring_memory: memory.clone(),
            memory,
            dma_check: None,
            dev: None,
            mac: opts.mac.unwrap_or(MacAddr([0x02, 0x51, 0, 0, 0, 1])),
            opts,
            offer: Offer {
                features: 0,
                max_pairs: 1,
                rx_size: 0,
                tx_size: 0,
                ctrl_size: 0,
                rss: None,
            },
            features: 0,
            filters: Filters::default(),
            pairs: 1,
            queues: None,
            ctrl: None,
            started: false,
            leases: Leases::new(),
            taken: false,
            pending: None,
            recoveries: 0,
            base: StatsBase::default(),
        };
        net.reset()?;
        net.read_offer()?;
        Ok(net)
    }

    /// The PCI address (`None` for a port over another transport).
    pub fn addr(&self) -> Option<PciAddr> {
        self.addr
    }

    /// The features the device offered at open.
    pub fn offered_features(&self) -> u64 {
        self.offer.features
    }

    /// The features negotiated at the last start.
    pub fn negotiated_features(&self) -> u64 {
        self.features
    }

    /// How often the driver re-initialised the device after
    /// DEVICE_NEEDS_RESET.
    pub fn recoveries(&self) -> u64 {
        self.recoveries
    }

    /// A memory provider the device can DMA to: give it to `Mempool::new`
    /// for the pool in [`PortConf::rx_pool`] and for packets to send.
    pub fn dma_memory(&self) -> Arc<dyn MemoryProvider> {
        self.memory.clone()
    }

    /// Adds or removes a VLAN from the device's filter (`CTRL_VLAN`, which
    /// is negotiated when the configuration asks for
    /// [`RxOffloads::VLAN_FILTER`]).
    pub fn vlan_filter(&mut self, vid: u16, on: bool) -> Result<(), VirtioError> {
        let vid = vid & 0x0fff;
        if self.started && self.features & bit(spec::NET_F_CTRL_VLAN) != 0 {
            self.command(&Command::Vlan { vid, add: on })?;
        }
        if on {
            self.filters.vlans.insert(vid);
        } else {
            self.filters.vlans.remove(&vid);
        }
        Ok(())
    }

    // ---- device status ----

    /// Resets the device and waits for it to say so (3.1.1, 4.1.4.3.2:
    /// "the driver MUST wait for a read of device_status to return 0").
    fn reset(&mut self) -> Result<(), VirtioError> {
        self.transport.set_status(0);
        let deadline = Instant::now() + self.opts.timeout;
        while self.transport.status() != 0 {
            if Instant::now() >= deadline {
                return Err(VirtioError::Timeout {
                    dev: self.name.clone(),
                    what: "device reset",
                    ms: self.opts.timeout.as_millis() as u64,
                });
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        Ok(())
    }

    fn add_status(&self, s: u8) {
        let cur = self.transport.status();
        self.transport.set_status(cur | s);
    }

    /// Reads the features, configuration and queue sizes the device offers.
    fn read_offer(&mut self) -> Result<(), VirtioError> {
        let dev = self.name.clone();
        self.add_status(spec::STATUS_ACKNOWLEDGE);
        self.add_status(spec::STATUS_DRIVER);
        let features = self.transport.device_features();
        if features & bit(spec::F_VERSION_1) == 0 {
            return Err(VirtioError::MissingFeature {
                dev: dev.clone(),
                feature: "VIRTIO_F_VERSION_1",
                why: "this driver speaks virtio 1.x only",
            });
        }
        if features & bit(spec::F_ACCESS_PLATFORM) == 0 {
            return Err(VirtioError::MissingFeature {
                dev: dev.clone(),
                feature: "VIRTIO_F_ACCESS_PLATFORM",
                why: "without it the device ignores the IOMMU and would read and write guest \
                      physical addresses instead of the DMA addresses VFIO maps; give QEMU's \
                      virtio-net `iommu_platform=on` (for a virtio VF, on the PF and every VF), \
                      or use a device that sets it",
            });
        }
        let mut max_pairs = 1;
        if features & bit(spec::NET_F_MQ) != 0 && features & bit(spec::NET_F_CTRL_VQ) != 0 {
            let mut b = [0u8; 2];
            self.transport
                .read_device_config(spec::netcfg::MAX_VIRTQUEUE_PAIRS, &mut b);
            // 5.1.4.1: 1 to 0x8000; a device outside that range is read as 1.
            let p = u16::from_le_bytes(b);
            if (spec::MQ_PAIRS_MIN..=spec::MQ_PAIRS_MAX).contains(&p) {
                max_pairs = p;
            }
        }
        // The queues beyond the first pair may not exist yet: QEMU's device
        // has one pair and the control queue until MQ is negotiated
        // (virtio_net_set_multiqueue), and shows only those in num_queues
        // and queue_size. So the pairs come from max_virtqueue_pairs, and
        // the sizes from the queues a device without MQ has: pair 0 and the
        // control queue at index 2 (5.1.2); `init_device` checks every queue
        // again once the features are set.
        let rx_size = self.transport.queue_max_size(rx_index(0));
        let tx_size = self.transport.queue_max_size(tx_index(0));
        let ctrl_size = if features & bit(spec::NET_F_CTRL_VQ) != 0 {
            self.transport.queue_max_size(2)
        } else {
            0
        };
        if rx_size < 2 || tx_size < 2 {
            return Err(VirtioError::Config(format!(
                "{}: the device's first queue pair has sizes {rx_size}/{tx_size}",
                self.name
            )));
        }
        let rss = if features & bit(spec::NET_F_RSS) != 0 {
            let [max_key] = self.read_config_stable::<1>(spec::netcfg::RSS_MAX_KEY_SIZE);
            let max_table = u16::from_le_bytes(
                self.read_config_stable(spec::netcfg::RSS_MAX_INDIRECTION_TABLE_LENGTH),
            );
            let hash_types =
                u32::from_le_bytes(self.read_config_stable(spec::netcfg::SUPPORTED_HASH_TYPES));
            Some(RssOffer {
                max_key,
                max_table,
                hash_types,
            })
        } else {
            None
        };
        self.offer = Offer {
            features,
            max_pairs,
            rx_size,
            tx_size,
            ctrl_size,
            rss,
        };
        if !self.filters.user_mac && features & bit(spec::NET_F_MAC) != 0 {
            self.mac = MacAddr(self.read_config_stable(spec::netcfg::MAC));
        }
        Ok(())
    }

    /// Reads `N` bytes of device configuration with the generation check of
    /// 4.1.4.3.1 (reread while the generation changes, at most a few times).
    fn read_config_stable<const N: usize>(&self, off: u32) -> [u8; N] {
        let mut b = [0u8; N];
        for _ in 0..8 {
            let g = self.transport.config_generation();
            self.transport.read_device_config(off, &mut b);
            if self.transport.config_generation() == g {
                break;
            }
        }
        b
    }

    /// The features the configuration needs, of those offered.
    fn wanted_features(&self, conf_rx: RxOffloads, conf_tx: TxOffloads, pairs: u16) -> u64 {
        let mut want = BASE_FEATURES;
        if self.opts.event_idx {
            want |= bit(spec::F_RING_EVENT_IDX);
        }
        if self.opts.packed {
            want |= bit(spec::F_RING_PACKED);
        }
        if pairs > 1 {
            want |= bit(spec::NET_F_MQ);
            // Flows spread by the hash of their addresses and ports, each
            // flow on one queue, when the device can do it and its limits
            // allow a configuration.
            if self.offer.rss.and_then(|r| r.command(pairs)).is_some() {
                want |= bit(spec::NET_F_RSS);
            }
        }
        if conf_tx.intersects(TxOffloads::TCP_CKSUM | TxOffloads::UDP_CKSUM) {
            want |= bit(spec::NET_F_CSUM);
        }
        if conf_rx.intersects(RxOffloads::TCP_CKSUM | RxOffloads::UDP_CKSUM) {
            want |= bit(spec::NET_F_GUEST_CSUM);
        }
        if conf_rx.contains(RxOffloads::VLAN_FILTER) {
            want |= bit(spec::NET_F_CTRL_VLAN);
        }
        let mut f = want & self.offer.features;
        // CTRL_RX, CTRL_VLAN, CTRL_MAC_ADDR, MQ and RSS depend on CTRL_VQ
        // (5.1.3.1).
        if f & bit(spec::NET_F_CTRL_VQ) == 0 {
            f &= !(bit(spec::NET_F_CTRL_RX)
                | bit(spec::NET_F_CTRL_VLAN)
                | bit(spec::NET_F_CTRL_MAC_ADDR)
                | bit(spec::NET_F_MQ)
                | bit(spec::NET_F_RSS));
        }
        // This driver configures RSS through the MQ class, with MQ.
        if f & bit(spec::NET_F_MQ) == 0 {
            f &= !bit(spec::NET_F_RSS);
        }
        f
    }

    /// Reset, feature negotiation, every queue programmed and enabled: all
    /// of device initialisation but DRIVER_OK (3.1.1 steps 1 to 7). The
    /// virtqueue memory is fixed from configure on, so queues a handle
    /// holds are programmed from the layout; the device reads none of them
    /// before DRIVER_OK.
    fn init_device(&mut self) -> Result<(), VirtioError> {
        let dev = self.name.clone();
        let Some(q) = self.queues.clone() else {
            return Err(VirtioError::Config("not configured".into()));
        };
        self.reset()?;
        self.add_status(spec::STATUS_ACKNOWLEDGE);
        self.add_status(spec::STATUS_DRIVER);
        self.transport.set_driver_features(self.features);
        self.add_status(spec::STATUS_FEATURES_OK);
        if self.transport.status() & spec::STATUS_FEATURES_OK == 0 {
            self.transport.set_status(spec::STATUS_FAILED);
            return Err(VirtioError::FeaturesRefused {
                dev,
                features: spec::feature_names(self.features).join(","),
            });
        }
        // Every queue this configuration uses must exist now that the
        // features are set, at least as large as the driver made it.
        let ctrl = self.ctrl.as_ref().map(|c| (c.index(), c.vq().size()));
        for (index, size) in q.layout.iter().map(|l| (l.index, l.size)).chain(ctrl) {
            let max = self.transport.queue_max_size(index);
            if max < size {
                self.transport.set_status(spec::STATUS_FAILED);
                return Err(VirtioError::Config(format!(
                    "{dev}: queue {index} holds {max} entries once the features are set; the \
                     driver needs {size} (num_queues {})",
                    self.transport.num_queues()
                )));
            }
        }
        for l in &q.layout {
            self.transport
                .setup_queue(l.index, l.size, l.desc, l.driver, l.device);
            self.transport.enable_queue(l.index);
        }
        if let Some(c) = self.ctrl.as_mut() {
            c.reset();
            let (d, a, u) = c.vq().addresses();
            let index = c.index();
            self.transport
                .setup_queue(index, c.vq().size(), d.0, a.0, u.0);
            self.transport.enable_queue(index);
        }
        Ok(())
    }

    /// DRIVER_OK once every virtqueue was started over for `epoch`, then
    /// the queue pairs and the receive filters over the control queue, and
    /// the queues run. `Ok(false)`: a handle has not started its queue over
    /// yet; call again.
    fn finish(&mut self, epoch: u32) -> Result<bool, VirtioError> {
        let Some(q) = self.queues.clone() else {
            return Err(VirtioError::Config("not configured".into()));
        };
        if !q.all_ready(epoch) {
            return Ok(false);
        }
        self.add_status(spec::STATUS_DRIVER_OK);
        let st = self.transport.status();
        if st & (spec::STATUS_DEVICE_NEEDS_RESET | spec::STATUS_FAILED) != 0 {
            return Err(VirtioError::DeviceStatus {
                dev: self.name.clone(),
                status: st,
                what: "DRIVER_OK",
            });
        }
        let rss = (self.features & bit(spec::NET_F_RSS) != 0)
            .then(|| self.offer.rss.and_then(|r| r.command(self.pairs)))
            .flatten();
        if let Some(rss) = rss {
            // 5.1.6.5.7.1: with RSS, its configuration also sets the queue
            // pairs in use (`max_tx_vq`); DPDK's and Linux's drivers send
            // it instead of VQ_PAIRS_SET.
            self.command(&rss)?;
        } else if self.features & bit(spec::NET_F_MQ) != 0 {
            // 5.1.6.5.5: the device uses one pair until told otherwise.
            self.command(&Command::QueuePairs(self.pairs))?;
        }
        self.restore_filters()?;
        // Parked receive queues: tell the device their buffers are there.
        for s in &q.rx {
            if let Some(r) = s.parked().as_ref() {
                r.kick();
            }
        }
        q.set_running(epoch);
        Ok(true)
    }

    /// Sends the receive filters the device forgot at its reset.
    fn restore_filters(&mut self) -> Result<(), VirtioError> {
        let f = self.filters.clone();
        if f.user_mac && self.features & bit(spec::NET_F_CTRL_MAC_ADDR) != 0 {
            self.command(&Command::MacAddrSet(self.mac))?;
        }
        if self.features & bit(spec::NET_F_CTRL_RX) != 0 {
            // QEMU's device starts promiscuous (virtio_net_reset sets
            // promisc = 1); say what this port is.
            self.command(&Command::Promisc(f.promisc))?;
            self.command(&Command::AllMulti(f.allmulti))?;
            if !f.mc.is_empty() {
                self.command(&Command::MacTableSet {
                    unicast: Vec::new(),
                    multicast: f.mc.clone(),
                })?;
            }
        }
        if self.features & bit(spec::NET_F_CTRL_VLAN) != 0 {
            for vid in &f.vlans {
                self.command(&Command::Vlan {
                    vid: *vid,
                    add: true,
                })?;
            }
        }
        Ok(())
    }

    /// Sends one control command (only after DRIVER_OK).
    fn command(&mut self, cmd: &Command) -> Result<(), VirtioError> {
        let dev = self.name.clone();
        let Some(c) = self.ctrl.as_mut() else {
            return Err(VirtioError::Config(format!(
                "{}: the device has no control queue (VIRTIO_NET_F_CTRL_VQ) for {}",
                self.name,
                cmd.name()
            )));
        };
        c.send(cmd)
            .map_err(|source| VirtioError::Ctrl { dev, source })
    }

    /// Resets the device and starts the queues over for a new epoch, up to
    /// DRIVER_OK, which [`VirtioNet::finish`] gives.
    fn reinit(&mut self) -> Result<u32, VirtioError> {
        let dev = self.name.clone();
        let Some(q) = self.queues.clone() else {
            return Err(VirtioError::Config("not configured".into()));
        };
        // init_device resets the device first: the queues stop, and only
        // then does the epoch move.
        self.init_device()?;
        let epoch = q.next_epoch();
        q.start_over_parked(epoch)
            .map_err(|(queue, need)| VirtioError::PoolEmpty {
                dev: dev.clone(),
                queue,
                need,
            })?;
        Ok(epoch)
    }

    /// Device status watch and a pending re-initialisation.
    fn housekeeping(&mut self) {
        if !self.started {
            return;
        }
        if self.pending.is_none() {
            let st = self.transport.status();
            if st & (spec::STATUS_DEVICE_NEEDS_RESET | spec::STATUS_FAILED) == 0
                && st & spec::STATUS_DRIVER_OK != 0
            {
                return;
            }
            tracing::warn!(dev = %self.name, status = format_args!("{st:#04x}"), "device needs a reset");
            match self.reinit() {
                Ok(e) => self.pending = Some(e),
                Err(e) => {
                    tracing::warn!(dev = %self.name, error = %pollux_core::error_chain(&e), "re-initialisation failed; will retry");
                    return;
                }
            }
        }
        if let Some(epoch) = self.pending {
            match self.finish(epoch) {
                Ok(true) => {
                    self.pending = None;
                    self.recoveries += 1;
                    tracing::info!(dev = %self.name, "re-initialised");
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(dev = %self.name, error = %pollux_core::error_chain(&e), "re-initialisation failed; will retry");
                    self.pending = None;
                }
            }
        }
    }

    fn sw_stats(&self) -> PortStats {
        self.queues
            .as_ref()
            .map(|q| q.counters())
            .unwrap_or_default()
    }

    fn link_status(&self) -> LinkStatus {
        if self.features & bit(spec::NET_F_STATUS) != 0
            || (!self.started && self.offer.has(spec::NET_F_STATUS))
        {
            let s = u16::from_le_bytes(self.read_config_stable(spec::netcfg::STATUS));
            if s & spec::NET_S_LINK_UP == 0 {
                return LinkStatus::DOWN;
            }
        }
        if self.started && self.pending.is_some() {
            return LinkStatus::DOWN;
        }
        let mut l = LinkStatus::up(0);
        if self.offer.has(spec::NET_F_SPEED_DUPLEX) {
            let speed = u32::from_le_bytes(self.read_config_stable(spec::netcfg::SPEED));
            let [duplex] = self.read_config_stable(spec::netcfg::DUPLEX);
            // 5.1.4: 0xffffffff and 0xff are "unknown".
            l.speed_mbps = if speed == u32::MAX { 0 } else { speed };
            l.duplex = match duplex {
                0 => Duplex::Half,
                1 => Duplex::Full,
                _ => Duplex::Unknown,
            };
        }
        l
    }
}

/// The largest power of two not above `want` nor `max` (at least 2).
fn queue_size(want: u16, max: u16) -> u16 {
    let n = want.min(max).max(2);
    1 << (15 - n.leading_zeros() as u16)
}

impl Port for VirtioNet {
    fn info(&self) -> PortInfo {
        let o = &self.offer;
        let ctrl_rx = o.has(spec::NET_F_CTRL_VQ) && o.has(spec::NET_F_CTRL_RX);
        let mut rx_offloads = RxOffloads::empty();
        if o.has(spec::NET_F_GUEST_CSUM) {
            rx_offloads |= RxOffloads::TCP_CKSUM | RxOffloads::UDP_CKSUM;
        }
        if o.has(spec::NET_F_CTRL_VQ) && o.has(spec::NET_F_CTRL_VLAN) {
            rx_offloads |= RxOffloads::VLAN_FILTER;
        }
        let mut tx_offloads = TxOffloads::empty();
        if o.has(spec::NET_F_CSUM) {
            tx_offloads |= TxOffloads::TCP_CKSUM | TxOffloads::UDP_CKSUM;
        }
        PortInfo {
            driver: "net_virtio".into(),
            name: self.name.clone(),
            capabilities: Capabilities {
                max_rx_queues: o.max_pairs,
                max_tx_queues: o.max_pairs,
                // Any count is accepted and rounded down to a power of two
                // within the device's queue size (a split virtqueue's size
                // is a power of two, 2.7).
                min_desc: 1,
                max_desc: u16::MAX,
                desc_align: 1,
                // No mergeable buffers: a frame must fit one buffer.
                max_frame: 1500 + FRAME_OVERHEAD,
                rx_offloads,
                tx_offloads,
                max_mc_addrs: if ctrl_rx {
                    ctrl::MAX_MAC_ENTRIES as u16
                } else {
                    0
                },
                promiscuous: ctrl_rx,
                allmulticast: ctrl_rx,
            },
        }
    }

    fn configure(&mut self, conf: &PortConf) -> Result<(), PortError> {
        if self.started {
            return Err(PortError::Started);
        }
        conf.validate(&self.info().capabilities)?;
        if conf.rx_queues != conf.tx_queues {
            return Err(PortError::InvalidConfig(format!(
                "{} rx and {} tx queues: virtio-net queues come in pairs and the device spreads \
                 received frames over every pair in use, so ask for as many of each",
                conf.rx_queues, conf.tx_queues
            )));
        }
        let (pool_iova, pool_len) = conf.rx_pool.iova_range();
        if let Some(check) = &self.dma_check {
            if !check(pool_iova, pool_len as u64) {
                return Err(PortError::InvalidConfig(format!(
                    "rx pool {:?} is not DMA memory of this function's VFIO container; build \
                     it with VirtioNet::dma_memory (or Container::dma_memory of the same \
                     container)",
                    conf.rx_pool.name()
                )));
            }
        }
        let room =
            (conf.rx_pool.data_room() as u32).saturating_sub(pollux_core::mbuf::HEADROOM as u32);
        let max_frame = conf.mtu.map_or(1500, u32::from) + FRAME_OVERHEAD;
        if conf.mtu.is_some_and(|m| m > 1500) {
            return Err(PortError::Unsupported(format!(
                "MTU {}: this driver posts one buffer per frame (no VIRTIO_NET_F_MRG_RXBUF), \
                 up to MTU 1500",
                conf.mtu.unwrap_or(0)
            )));
        }
        if room < max_frame {
            return Err(PortError::InvalidConfig(format!(
                "rx pool buffers hold {room} bytes after the headroom; frames need {max_frame}"
            )));
        }
        self.leases.check_none(&self.name)?;
        if let Some(q) = self.queues.take() {
            q.release_parked();
        }
        let pairs = conf.rx_queues;
        self.features = self.wanted_features(conf.rx_offloads, conf.tx_offloads, pairs);
        if pairs > 1 && self.features & bit(spec::NET_F_MQ) == 0 {
            return Err(PortError::Unsupported(format!(
                "{pairs} queue pairs: the device does not offer VIRTIO_NET_F_MQ with a \
                 control queue (QEMU offers it only for a multi-queue tap netdev)"
            )));
        }
        let event_idx = self.features & bit(spec::F_RING_EVENT_IDX) != 0;
        let rx_csum = self.features & bit(spec::NET_F_GUEST_CSUM) != 0;
        let tx_csum = self.features & bit(spec::NET_F_CSUM) != 0;
        let name = self.name.clone();
        let mem = self.ring_memory.clone();
        let packed = self.features & bit(spec::F_RING_PACKED) != 0;
        let alloc = |size: u16, what: &str| -> Result<Vq, PortError> {
            let region = mem.allocate(Vq::bytes(size, packed)).map_err(|e| {
                PortError::Other(format!(
                    "{name}: DMA memory for {what}: {}",
                    pollux_core::error_chain(&e)
                ))
            })?;
            let vq = if packed {
                Vq::packed(region, size, event_idx)
            } else {
                Vq::split(region, size, event_idx)
            };
            vq.ok_or_else(|| PortError::Other(format!("{name}: {what}: bad queue size {size}")))
        };
        let rx_size = queue_size(conf.rx_desc, self.offer.rx_size);
        let tx_size = queue_size(conf.tx_desc, self.offer.tx_size);
        if rx_size != conf.rx_desc || tx_size != conf.tx_desc {
            tracing::info!(dev = %self.name, rx = rx_size, tx = tx_size, "queue sizes rounded to the device's limits and powers of two");
        }
        let mut layout = Vec::new();
        let mut rx = Vec::new();
        for k in 0..pairs {
            let ring = alloc(rx_size, "an rx queue")?;
            layout.push(QueueLayout::of(rx_index(k), &ring));
            let n = self.transport.notifier(rx_index(k));
            let mut r = RxVq::new(ring, n, conf.rx_pool.clone(), conf.port_id, k);
            r.set_csum(rx_csum);
            rx.push(Slot::new(r));
        }
        let mut tx = Vec::new();
        for k in 0..pairs {
            let ring = alloc(tx_size, "a tx queue")?;
            layout.push(QueueLayout::of(tx_index(k), &ring));
            let n = self.transport.notifier(tx_index(k));
            let mut t = TxVq::new(ring, n);
            t.set_csum(tx_csum);
            if let Some(check) = self.dma_check.clone() {
                t.set_dma_check(Box::new(move |iova, len| check(iova, len)));
            }
            tx.push(Slot::new(t));
        }
        self.ctrl = None;
        if self.features & bit(spec::NET_F_CTRL_VQ) != 0 {
            let index = if self.features & bit(spec::NET_F_MQ) != 0 {
                2 * self.offer.max_pairs
            } else {
                2
            };
            let ring = alloc(queue_size(64, self.offer.ctrl_size), "the control queue")?;
            let buf = self.ring_memory.allocate(ctrl::BUF_BYTES).map_err(|e| {
                PortError::Other(format!(
                    "{}: DMA memory for control commands: {}",
                    self.name,
                    pollux_core::error_chain(&e)
                ))
            })?;
            let n = self.transport.notifier(index);
            self.ctrl = Some(
                ControlVq::new(ring, buf, n, self.opts.timeout)
                    .ok_or_else(|| PortError::Other("control queue too small".into()))?,
            );
        }
        self.queues = Some(Arc::new(QueueSet {
            state: AtomicU32::new(0),
            layout,
            rx,
            tx,
        }));
        self.pairs = pairs;
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
        self.leases.check_none(&self.name)?;
        let res = self.reinit().and_then(|epoch| self.finish(epoch));
        match res {
            Ok(true) => {}
            Ok(false) => {
                // Every queue is parked (no handle is alive): cannot happen.
                let _ = self.reset();
                return Err(PortError::Other(format!(
                    "{}: queues not ready at start",
                    self.name
                )));
            }
            Err(e) => {
                let _ = self.reset();
                q.next_epoch();
                q.release_parked();
                return Err(e.into());
            }
        }
        self.started = true;
        self.taken = false;
        self.pending = None;
        tracing::info!(dev = %self.name, negotiated = ?spec::feature_names(self.features), "started");
        Ok(())
    }

    fn stop(&mut self) -> Result<(), PortError> {
        if !self.started {
            return Ok(());
        }
        self.started = false;
        self.pending = None;
        let res = self.reset();
        if let Some(q) = &self.queues {
            // Handles still out see the new epoch, stop, and free what they
            // had in flight at their next burst; parked virtqueues give
            // their buffers back now.
            q.next_epoch();
            q.release_parked();
        }
        res.map_err(PortError::from)
    }

    fn take_queues(&mut self) -> Result<Queues, PortError> {
        if !self.started {
            return Err(PortError::NotStarted);
        }
        let Some(q) = self.queues.clone() else {
            return Err(PortError::NotConfigured);
        };
        if self.taken {
            return Err(PortError::QueuesTaken(self.name.clone()));
        }
        self.taken = true;
        let seen = q.state.load(Ordering::Acquire);
        let rx = (0..q.rx.len())
            .map(|i| {
                Box::new(VirtioRx {
                    vq: q.rx[i].parked().take(),
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
                Box::new(VirtioTx {
                    vq: q.tx[i].parked().take(),
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
        self.housekeeping();
    }

    fn link(&mut self) -> LinkStatus {
        self.housekeeping();
        self.link_status()
    }

    fn mac_addr(&self) -> MacAddr {
        self.mac
    }

    fn set_mac_addr(&mut self, mac: MacAddr) -> Result<(), PortError> {
        if !mac.is_valid_unicast() {
            return Err(PortError::InvalidConfig(format!(
                "{mac} is not a unicast address"
            )));
        }
        if !self.offer.has(spec::NET_F_CTRL_MAC_ADDR) || !self.offer.has(spec::NET_F_CTRL_VQ) {
            return Err(PortError::Unsupported(
                "changing the MAC address: the device does not offer VIRTIO_NET_F_CTRL_MAC_ADDR"
                    .into(),
            ));
        }
        if self.started {
            self.command(&Command::MacAddrSet(mac))?;
        }
        self.mac = mac;
        self.filters.user_mac = true;
        Ok(())
    }

    fn set_promiscuous(&mut self, on: bool) -> Result<(), PortError> {
        self.rx_mode(Command::Promisc(on))?;
        self.filters.promisc = on;
        Ok(())
    }

    fn set_allmulticast(&mut self, on: bool) -> Result<(), PortError> {
        self.rx_mode(Command::AllMulti(on))?;
        self.filters.allmulti = on;
        Ok(())
    }

    fn set_mc_addr_list(&mut self, addrs: &[MacAddr]) -> Result<(), PortError> {
        pollux_core::port::require_multicast(addrs)?;
        if addrs.len() > ctrl::MAX_MAC_ENTRIES {
            return Err(PortError::InvalidConfig(format!(
                "{} multicast addresses; the device's table holds {}",
                addrs.len(),
                ctrl::MAX_MAC_ENTRIES
            )));
        }
        self.rx_mode(Command::MacTableSet {
            unicast: Vec::new(),
            multicast: addrs.to_vec(),
        })?;
        self.filters.mc = addrs.to_vec();
        Ok(())
    }

    fn stats(&self) -> PortStats {
        self.base.since(self.sw_stats())
    }

    fn queue_stats(&self) -> Vec<QueueStats> {
        let Some(q) = &self.queues else {
            return Vec::new();
        };
        let rx: Vec<_> = q.rx.iter().map(|s| s.counters.get()).collect();
        let tx: Vec<_> = q.tx.iter().map(|s| s.counters.get()).collect();
        rx.iter()
            .zip(tx.iter())
            .map(|(r, t)| QueueStats {
                rx_packets: r.packets,
                rx_bytes: r.bytes,
                tx_packets: t.packets,
                tx_bytes: t.bytes,
                rx_errors: r.errors,
            })
            .collect()
    }

    fn xstats(&self) -> Vec<Xstat> {
        let mut x = self.stats().xstats();
        x.push(Xstat::new("recoveries", self.recoveries));
        let (faults, rxn, txn) = self
            .queues
            .as_ref()
            .map_or((0, 0, 0), |q| q.parked_counts());
        // Of the queues no handle holds (all of them once the handles are
        // dropped, as at the end of a run).
        x.push(Xstat::new("parked_device_faults", faults));
        x.push(Xstat::new("parked_rx_notifies", rxn));
        x.push(Xstat::new("parked_tx_notifies", txn));
        x.push(Xstat::new("features", self.features));
        x
    }

    fn reset_stats(&mut self) {
        self.base.reset(self.sw_stats());
    }
}

impl VirtioNet {
    /// Sends a receive-mode command now if the device runs, else keeps it
    /// for the next start; refused when the device has no `CTRL_RX`.
    fn rx_mode(&mut self, cmd: Command) -> Result<(), PortError> {
        if !self.offer.has(spec::NET_F_CTRL_VQ) || !self.offer.has(spec::NET_F_CTRL_RX) {
            return Err(PortError::Unsupported(format!(
                "{}: the device does not offer VIRTIO_NET_F_CTRL_RX",
                cmd.name()
            )));
        }
        if self.started && self.pending.is_none() {
            self.command(&cmd)?;
        }
        Ok(())
    }
}

impl Drop for VirtioNet {
    fn drop(&mut self) {
        if let Some(q) = &self.queues {
            let (faults, rx_notifies, tx_notifies) = q.parked_counts();
            let s = self.sw_stats();
            tracing::info!(
                dev = %self.name,
                rx = s.ipackets,
                tx = s.opackets,
                rx_notifies,
                tx_notifies,
                faults,
                "closing"
            );
        }
        // The device forgets every queue and stops its DMA; then buffers
        // may go back.
        let _ = self.reset();
        if let Some(q) = &self.queues {
            q.next_epoch();
            q.release_parked();
        }
        if let Some(d) = &self.dev {
            let _ = d.set_bus_master(false);
        }
    }
}

impl std::fmt::Debug for VirtioNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioNet")
            .field("name", &self.name)
            .field("mac", &self.mac)
            .field("features", &spec::feature_names(self.features))
            .field("started", &self.started)
            .finish()
    }
}

/// Reads the PCI ID from sysfs and checks that this driver handles it.
pub fn identify(addr: PciAddr, opts: &OpenOpts) -> Result<(), VirtioError> {
    let sysfs = Sysfs::new(&opts.sysfs_root);
    if !sysfs.exists(addr) {
        return Err(VirtioError::Vfio(
            pollux_vfio::pci::Error::NoSuchFunction {
                addr,
                root: opts.sysfs_root.clone(),
            }
            .into(),
        ));
    }
    let vendor = sysfs.vendor(addr).map_err(pollux_vfio::VfioError::from)?;
    let device = sysfs.device(addr).map_err(pollux_vfio::VfioError::from)?;
    match (vendor, device) {
        (spec::VENDOR_VIRTIO, spec::DEV_ID_NET_MODERN | spec::DEV_ID_NET_TRANSITIONAL) => Ok(()),
        _ => Err(VirtioError::UnknownDevice {
            addr,
            vendor,
            device,
        }),
    }
}
