//! A software test bed: bonds over `ring` port pairs on a manual clock.
#![allow(dead_code)]

use std::time::Duration;

use pollux_bond::{BondConfig, BondPort, ManualClock};
use pollux_core::net::{udp_frame, UdpFrameSpec};
use pollux_core::{AnonMemory, Burst, MacAddr, Mbuf, Mempool, MempoolConfig, Port, PortConf};
use pollux_soft::ring::{ring_pair, RingPort, Wire};

pub fn pool(n: usize) -> Mempool {
    let mut c = MempoolConfig::new("bond-test", n);
    c.cache_size = 0;
    Mempool::new(c, &AnonMemory::default()).unwrap()
}

pub fn start(p: &mut dyn Port, pool: &Mempool) {
    p.configure(&PortConf::new(pool.clone())).unwrap();
    p.start().unwrap();
}

/// A bond over `n` ring pairs: the bond holds the `a` ends, the test (or
/// another bond) the `b` ends.
pub struct Bed {
    pub clock: ManualClock,
    pub pool: Mempool,
    pub wires: Vec<Wire>,
    pub peers: Vec<RingPort>,
}

/// Makes `n` ring pairs; returns the bond-side ports (named `a0`, ...) and
/// keeps the other ends in the bed.
/// Named member ports, as `BondPort::new` takes them.
pub type Members = Vec<(String, Box<dyn Port>)>;

pub fn pairs(n: usize, _pool: &Mempool) -> (Members, Vec<RingPort>, Vec<Wire>) {
    let mut mine = Vec::new();
    let mut peers = Vec::new();
    let mut wires = Vec::new();
    for i in 0..n {
        let (a, b) = ring_pair(format!("a{i}"), format!("b{i}"), 4096).unwrap();
        wires.push(a.wire());
        mine.push((format!("a{i}"), Box::new(a) as Box<dyn Port>));
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
pub fn make_bond(n: usize, kv: &[(&str, &str)]) -> (BondPort, Bed) {
    let pool = pool(8192);
    let clock = ManualClock::new();
    let (mine, mut peers, wires) = pairs(n, &pool);
    let cfg = BondConfig::from_args(&args(kv)).unwrap();
    let mut b = BondPort::with_clock("bond0", cfg, mine, Box::new(clock.clone())).unwrap();
    start(&mut b, &pool);
    for p in &mut peers {
        start(p, &pool);
    }
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

/// Everything waiting on a ring port.
pub fn drain(p: &mut dyn Port) -> Vec<Mbuf> {
    let mut out = Vec::new();
    let mut b = Burst::new(256);
    loop {
        let n = p.rx_burst(0, &mut b);
        out.extend(b.drain());
        if n == 0 {
            return out;
        }
    }
}

/// Sends all of `frames` through `p`, failing the test if it takes fewer.
pub fn send_all(p: &mut dyn Port, frames: Vec<Mbuf>) {
    let mut b = Burst::new(frames.len().max(1));
    let n = frames.len();
    b.extend(frames);
    assert_eq!(
        p.tx_burst(0, &mut b),
        n,
        "the bond did not take every frame"
    );
}

/// Advances the clock in `step`s for `total`, polling `bonds` (their
/// receive path, so LACPDUs are read) after each step; data frames they
/// receive are returned per bond.
pub fn run(
    clock: &ManualClock,
    bonds: &mut [&mut BondPort],
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

/// What a [`FilterPort`] was asked to do.
#[derive(Clone, Debug, Default)]
pub struct FilterLog {
    pub mc: Vec<MacAddr>,
    pub allmulti: bool,
    pub promisc: bool,
}

/// Wraps a port to record (or refuse) receive-filter and MAC changes, as
/// a VF without a multicast filter or without trust would.
pub struct FilterPort {
    inner: Box<dyn Port>,
    log: std::sync::Arc<std::sync::Mutex<FilterLog>>,
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
    ) -> (FilterPort, std::sync::Arc<std::sync::Mutex<FilterLog>>) {
        let log = std::sync::Arc::new(std::sync::Mutex::new(FilterLog::default()));
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

fn refused(what: &str) -> pollux_core::PortError {
    pollux_core::PortError::Unsupported(what.into())
}

impl Port for FilterPort {
    fn info(&self) -> pollux_core::PortInfo {
        self.inner.info()
    }
    fn configure(&mut self, conf: &PortConf) -> Result<(), pollux_core::PortError> {
        self.inner.configure(conf)
    }
    fn start(&mut self) -> Result<(), pollux_core::PortError> {
        self.inner.start()
    }
    fn stop(&mut self) -> Result<(), pollux_core::PortError> {
        self.inner.stop()
    }
    fn rx_burst(&mut self, q: u16, pkts: &mut Burst<Mbuf>) -> usize {
        self.inner.rx_burst(q, pkts)
    }
    fn tx_burst(&mut self, q: u16, pkts: &mut Burst<Mbuf>) -> usize {
        self.inner.tx_burst(q, pkts)
    }
    fn link(&mut self) -> pollux_core::LinkStatus {
        self.inner.link()
    }
    fn mac_addr(&self) -> MacAddr {
        self.inner.mac_addr()
    }
    fn set_mac_addr(&mut self, mac: MacAddr) -> Result<(), pollux_core::PortError> {
        if self.no_mac {
            return Err(pollux_core::PortError::Refused(
                "MAC change (VF not trusted)".into(),
            ));
        }
        self.inner.set_mac_addr(mac)
    }
    fn set_promiscuous(&mut self, on: bool) -> Result<(), pollux_core::PortError> {
        if self.no_promisc {
            return Err(refused("promiscuous"));
        }
        self.log.lock().unwrap().promisc = on;
        Ok(())
    }
    fn set_allmulticast(&mut self, on: bool) -> Result<(), pollux_core::PortError> {
        if self.no_allmulti {
            return Err(refused("all-multicast"));
        }
        self.log.lock().unwrap().allmulti = on;
        Ok(())
    }
    fn set_mc_addr_list(&mut self, addrs: &[MacAddr]) -> Result<(), pollux_core::PortError> {
        if self.no_mc {
            return Err(refused("multicast filter"));
        }
        self.log.lock().unwrap().mc = addrs.to_vec();
        Ok(())
    }
    fn stats(&self) -> pollux_core::PortStats {
        self.inner.stats()
    }
    fn reset_stats(&mut self) {
        self.inner.reset_stats()
    }
}
