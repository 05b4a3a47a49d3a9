//! A software test bed: bonds over `ring` port pairs on a manual clock.
//!
//! A bond under test is a [`Bonded`]: its control side (what it derefs to)
//! and the handles of its one rx and one tx queue, all driven from the
//! test thread. The test loop calls `service()` on the control side and
//! bursts on the handles, as an application's control thread and lcores
//! would.
#![allow(dead_code)]

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pollux_bond::{BondConfig, BondPort, ManualClock};
use pollux_core::net::{udp_frame, UdpFrameSpec};
use pollux_core::{
    AnonMemory, Burst, LinkStatus, MacAddr, Mbuf, Mempool, MempoolConfig, Polled, Port, PortConf,
    PortError, PortInfo, PortStats, QueueStats, Queues, TxQueue, Xstat,
};
use pollux_soft::ring::{ring_pair, RingPort, Wire};

pub fn pool(n: usize) -> Mempool {
    let mut c = MempoolConfig::new("bond-test", n);
    c.cache_size = 0;
    Mempool::new(c, &AnonMemory::default()).unwrap()
}

/// Configures (one queue each way) and starts a port.
pub fn start(p: &mut dyn Port, pool: &Mempool) {
    p.configure(&PortConf::new(pool.clone())).unwrap();
    p.start().unwrap();
}

/// Bursts on queue 0 of something the test polls.
pub trait Io {
    fn rx(&mut self, pkts: &mut Burst<Mbuf>) -> usize;
    fn tx(&mut self, pkts: &mut Burst<Mbuf>) -> usize;
}

impl<P: Port> Io for Polled<P> {
    fn rx(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
        self.rx_burst(0, pkts)
    }
    fn tx(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
        self.tx_burst(0, pkts)
    }
}

/// A started bond and its queue handles. Derefs to the control side.
pub struct Bonded(pub Polled<BondPort>);

impl Bonded {
    /// Configures and starts `bond` and takes its queues.
    pub fn start(mut bond: BondPort, pool: &Mempool) -> Bonded {
        start(&mut bond, pool);
        Bonded(Polled::new(bond).unwrap())
    }
}

impl Deref for Bonded {
    type Target = BondPort;
    fn deref(&self) -> &BondPort {
        self.0.port()
    }
}

impl DerefMut for Bonded {
    fn deref_mut(&mut self) -> &mut BondPort {
        self.0.port_mut()
    }
}

impl Io for Bonded {
    fn rx(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
        self.0.rx_burst(0, pkts)
    }
    fn tx(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
        self.0.tx_burst(0, pkts)
    }
}

/// A bond over `n` ring pairs: the bond holds the `a` ends, the test (or
/// another bond) the `b` ends.
pub struct Bed {
    pub clock: ManualClock,
    pub pool: Mempool,
    pub wires: Vec<Wire>,
    pub peers: Vec<Polled<RingPort>>,
}

/// Named member ports, as `BondPort::new` takes them.
pub type Members = Vec<(String, Box<dyn Port>)>;

/// A ring port as a bond member: with the second tx queue the bond needs
/// ([`ExtraTx`]).
pub fn member(p: RingPort) -> Box<dyn Port> {
    Box::new(ExtraTx::new(Box::new(p)))
}

/// Makes `n` ring pairs; returns the bond-side ports (named `a0`, ...,
/// ready to be members), the other ends and the wires.
pub fn pairs(n: usize, _pool: &Mempool) -> (Members, Vec<RingPort>, Vec<Wire>) {
    let mut mine = Vec::new();
    let mut peers = Vec::new();
    let mut wires = Vec::new();
    for i in 0..n {
        let (a, b) = ring_pair(format!("a{i}"), format!("b{i}"), 4096).unwrap();
        wires.push(a.wire());
        mine.push((format!("a{i}"), member(a)));
        peers.push(b);
    }
    (mine, peers, wires)
}

pub fn args(s: &[(&str, &str)]) -> Vec<(String, String)> {
    s.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A started bond over `n` ring pairs whose peer ends are started plain
/// ring ports, the clock at zero.
pub fn make_bond(n: usize, kv: &[(&str, &str)]) -> (Bonded, Bed) {
    let pool = pool(8192);
    let clock = ManualClock::new();
    let (mine, peers, wires) = pairs(n, &pool);
    let cfg = BondConfig::from_args(&args(kv)).unwrap();
    let b = BondPort::with_clock("bond0", cfg, mine, Box::new(clock.clone())).unwrap();
    let b = Bonded::start(b, &pool);
    let peers = peers
        .into_iter()
        .map(|mut p| {
            start(&mut p, &pool);
            Polled::new(p).unwrap()
        })
        .collect();
    (
        b,
        Bed {
            clock,
            pool,
            wires,
            peers,
        },
    )
}

/// A UDP/IPv4 frame whose payload starts with `seq`.
pub fn udp(pool: &Mempool, src_port: u16, dst_port: u16, seq: u32) -> Mbuf {
    let mut m = pool.alloc().expect("pool empty");
    assert!(m.set_len(64));
    let spec = UdpFrameSpec {
        src_port,
        dst_port,
        ..UdpFrameSpec::default()
    };
    assert!(udp_frame(m.data_mut(), &spec));
    m.data_mut()[42..46].copy_from_slice(&seq.to_be_bytes());
    m
}

pub fn seq_of(m: &Mbuf) -> u32 {
    let d = m.data();
    u32::from_be_bytes([d[42], d[43], d[44], d[45]])
}

pub fn src_port_of(m: &Mbuf) -> u16 {
    let d = m.data();
    u16::from_be_bytes([d[34], d[35]])
}

/// Everything waiting on queue 0.
pub fn drain(p: &mut (impl Io + ?Sized)) -> Vec<Mbuf> {
    let mut out = Vec::new();
    let mut b = Burst::new(256);
    loop {
        let n = p.rx(&mut b);
        out.extend(b.drain());
        if n == 0 {
            return out;
        }
    }
}

/// Sends all of `frames` on queue 0, failing the test if it takes fewer.
pub fn send_all(p: &mut (impl Io + ?Sized), frames: Vec<Mbuf>) {
    let mut b = Burst::new(frames.len().max(1));
    let n = frames.len();
    b.extend(frames);
    assert_eq!(p.tx(&mut b), n, "not every frame was taken");
}

/// Advances the clock in `step`s for `total`; after each step every bond
/// reads its rx queue (so LACPDUs go up to its control side) and then
/// runs `service()`. Data frames they receive are returned per bond.
pub fn run(
    clock: &ManualClock,
    bonds: &mut [&mut Bonded],
    total: Duration,
    step: Duration,
) -> Vec<Vec<Mbuf>> {
    let mut got: Vec<Vec<Mbuf>> = bonds.iter().map(|_| Vec::new()).collect();
    let mut t = Duration::ZERO;
    while t < total {
        clock.advance(step);
        t += step;
        for (i, b) in bonds.iter_mut().enumerate() {
            got[i].extend(drain(&mut **b));
            b.service();
        }
    }
    got
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn src_mac(m: &Mbuf) -> MacAddr {
    let mut a = [0u8; 6];
    a.copy_from_slice(&m.data()[6..12]);
    MacAddr(a)
}

/// A member port with one more tx queue than `inner` has, when `inner`
/// has only one: the bond keeps each member's last tx queue for its
/// control frames. pollux-soft's ring ports have one tx queue; here the
/// added queue and queue 0 send through it in turn, under a mutex, as two
/// queues of a NIC share its one link. The lock is the test member's, not
/// the bond's. An `inner` with two or more tx queues is passed through.
pub struct ExtraTx {
    inner: Box<dyn Port>,
    add: bool,
}

impl ExtraTx {
    pub fn new(inner: Box<dyn Port>) -> ExtraTx {
        let add = inner.info().capabilities.max_tx_queues < 2;
        ExtraTx { inner, add }
    }
}

struct SharedTx(Arc<Mutex<Box<dyn TxQueue>>>);

impl TxQueue for SharedTx {
    fn tx_burst(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
        self.0.lock().unwrap().tx_burst(pkts)
    }
}

impl Port for ExtraTx {
    fn info(&self) -> PortInfo {
        let mut i = self.inner.info();
        i.capabilities.max_tx_queues += self.add as u16;
        i
    }
    fn configure(&mut self, conf: &PortConf) -> Result<(), PortError> {
        let mut c = conf.clone();
        if self.add {
            if c.tx_queues != 2 {
                return Err(PortError::InvalidConfig(format!(
                    "{} tx queues (ExtraTx makes exactly 2)",
                    c.tx_queues
                )));
            }
            c.tx_queues = 1;
        }
        self.inner.configure(&c)
    }
    fn start(&mut self) -> Result<(), PortError> {
        self.inner.start()
    }
    fn stop(&mut self) -> Result<(), PortError> {
        self.inner.stop()
    }
    fn take_queues(&mut self) -> Result<Queues, PortError> {
        let mut q = self.inner.take_queues()?;
        if self.add {
            let only = q.tx.pop().expect("one tx queue");
            let shared = Arc::new(Mutex::new(only));
            q.tx.push(Box::new(SharedTx(shared.clone())));
            q.tx.push(Box::new(SharedTx(shared)));
        }
        Ok(q)
    }
    fn service(&mut self) {
        self.inner.service()
    }
    fn link(&mut self) -> LinkStatus {
        self.inner.link()
    }
    fn mac_addr(&self) -> MacAddr {
        self.inner.mac_addr()
    }
    fn set_mac_addr(&mut self, mac: MacAddr) -> Result<(), PortError> {
        self.inner.set_mac_addr(mac)
    }
    fn set_promiscuous(&mut self, on: bool) -> Result<(), PortError> {
        self.inner.set_promiscuous(on)
    }
    fn set_allmulticast(&mut self, on: bool) -> Result<(), PortError> {
        self.inner.set_allmulticast(on)
    }
    fn set_mc_addr_list(&mut self, addrs: &[MacAddr]) -> Result<(), PortError> {
        self.inner.set_mc_addr_list(addrs)
    }
    fn stats(&self) -> PortStats {
        self.inner.stats()
    }
    fn queue_stats(&self) -> Vec<QueueStats> {
        self.inner.queue_stats()
    }
    fn xstats(&self) -> Vec<Xstat> {
        self.inner.xstats()
    }
    fn reset_stats(&mut self) {
        self.inner.reset_stats()
    }
}

/// What a [`FilterPort`] was asked to do.
#[derive(Clone, Debug, Default)]
pub struct FilterLog {
    pub mc: Vec<MacAddr>,
    pub allmulti: bool,
    pub promisc: bool,
    /// `service` calls.
    pub services: usize,
}

/// Wraps a port to record (or refuse) receive-filter and MAC changes, as
/// a VF without a multicast filter or without trust would.
pub struct FilterPort {
    inner: Box<dyn Port>,
    log: Arc<Mutex<FilterLog>>,
    no_mc: bool,
    no_allmulti: bool,
    no_promisc: bool,
    no_mac: bool,
}

impl FilterPort {
    pub fn new(
        inner: Box<dyn Port>,
        no_mc: bool,
        no_allmulti: bool,
        no_promisc: bool,
        no_mac: bool,
    ) -> (FilterPort, Arc<Mutex<FilterLog>>) {
        let log = Arc::new(Mutex::new(FilterLog::default()));
        (
            FilterPort {
                inner,
                log: log.clone(),
                no_mc,
                no_allmulti,
                no_promisc,
                no_mac,
            },
            log,
        )
    }
}

fn refused(what: &str) -> PortError {
    PortError::Unsupported(what.into())
}

impl Port for FilterPort {
    fn info(&self) -> PortInfo {
        self.inner.info()
    }
    fn configure(&mut self, conf: &PortConf) -> Result<(), PortError> {
        self.inner.configure(conf)
    }
    fn start(&mut self) -> Result<(), PortError> {
        self.inner.start()
    }
    fn stop(&mut self) -> Result<(), PortError> {
        self.inner.stop()
    }
    fn take_queues(&mut self) -> Result<Queues, PortError> {
        self.inner.take_queues()
    }
    fn service(&mut self) {
        self.log.lock().unwrap().services += 1;
        self.inner.service()
    }
    fn link(&mut self) -> LinkStatus {
        self.inner.link()
    }
    fn mac_addr(&self) -> MacAddr {
        self.inner.mac_addr()
    }
    fn set_mac_addr(&mut self, mac: MacAddr) -> Result<(), PortError> {
        if self.no_mac {
            return Err(PortError::Refused("MAC change (VF not trusted)".into()));
        }
        self.inner.set_mac_addr(mac)
    }
    fn set_promiscuous(&mut self, on: bool) -> Result<(), PortError> {
        if self.no_promisc {
            return Err(refused("promiscuous"));
        }
        self.log.lock().unwrap().promisc = on;
        Ok(())
    }
    fn set_allmulticast(&mut self, on: bool) -> Result<(), PortError> {
        if self.no_allmulti {
            return Err(refused("all-multicast"));
        }
        self.log.lock().unwrap().allmulti = on;
        Ok(())
    }
    fn set_mc_addr_list(&mut self, addrs: &[MacAddr]) -> Result<(), PortError> {
        if self.no_mc {
            return Err(refused("multicast filter"));
        }
        self.log.lock().unwrap().mc = addrs.to_vec();
        Ok(())
    }
    fn stats(&self) -> PortStats {
        self.inner.stats()
    }
    fn reset_stats(&mut self) {
        self.inner.reset_stats()
    }
}
