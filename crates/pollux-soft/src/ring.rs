//! `ring`: ports joined back to back through lock-free rings.
//!
//! [`ring_pair`] makes two ports on the ends of one "wire": what one sends,
//! the other receives. [`ring_loopback`] makes one port that receives what
//! it sends (what DPDK's `net_ring` does for `--vdev net_ring0`). A [`Wire`]
//! handle cuts and restores the wire, so bond tests can pull a cable: while
//! it is down both ends report link down, tx drops what it is given
//! (counting it in `oerrors`) and rx delivers nothing.
//!
//! Ring ports have no filters: every frame on the wire is delivered, as if
//! promiscuous. Each side uses one single-producer/single-consumer ring per
//! direction; a port has one rx and one tx queue.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pollux_core::ring::{channel, Consumer, Mode, Producer};
use pollux_core::{
    Burst, Capabilities, LinkStatus, MacAddr, Mbuf, Port, PortConf, PortError, PortInfo, PortStats,
    RxOffloads, TxOffloads,
};

use crate::SoftError;

/// Default number of packets a wire holds in each direction.
pub const DEFAULT_CAPACITY: usize = 1024;

/// Cuts and restores the wire between ring ports.
#[derive(Clone, Debug)]
pub struct Wire(Arc<AtomicBool>);

impl Wire {
    fn new() -> Wire {
        Wire(Arc::new(AtomicBool::new(true)))
    }

    /// Brings the wire up or down.
    pub fn set_up(&self, up: bool) {
        self.0.store(up, Ordering::Release);
    }

    /// Whether the wire is up.
    pub fn is_up(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// One end of a ring wire. See the [module docs](self).
pub struct RingPort {
    name: String,
    mac: MacAddr,
    port_id: u16,
    rx: Consumer<Mbuf>,
    tx: Producer<Mbuf>,
    wire: Wire,
    configured: bool,
    started: bool,
    mc_addrs: Vec<MacAddr>,
    promiscuous: bool,
    allmulti: bool,
    stats: PortStats,
}

impl std::fmt::Debug for RingPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingPort")
            .field("name", &self.name)
            .field("mac", &self.mac)
            .field("wire_up", &self.wire.is_up())
            .field("started", &self.started)
            .finish()
    }
}

impl RingPort {
    fn new(name: String, rx: Consumer<Mbuf>, tx: Producer<Mbuf>, wire: Wire) -> RingPort {
        RingPort {
            name,
            mac: crate::next_mac(),
            port_id: 0,
            rx,
            tx,
            wire,
            configured: false,
            started: false,
            mc_addrs: Vec::new(),
            promiscuous: false,
            allmulti: false,
            stats: PortStats::default(),
        }
    }

    /// The wire this port is on.
    pub fn wire(&self) -> Wire {
        self.wire.clone()
    }

    /// The multicast list last set with `set_mc_addr_list`.
    pub fn mc_addrs(&self) -> &[MacAddr] {
        &self.mc_addrs
    }

    /// Promiscuous and all-multicast flags as last set.
    pub fn rx_modes(&self) -> (bool, bool) {
        (self.promiscuous, self.allmulti)
    }

    /// Packets waiting on the wire for this port.
    pub fn pending(&self) -> usize {
        self.rx.ring().len()
    }
}

/// Two ports on the ends of one wire.
pub fn ring_pair(
    name_a: impl Into<String>,
    name_b: impl Into<String>,
    capacity: usize,
) -> Result<(RingPort, RingPort), SoftError> {
    let bad = |e: pollux_core::ring::CapacityError| SoftError::Other(e.to_string());
    let (a_tx, b_rx) = channel(capacity, Mode::Single, Mode::Single).map_err(bad)?;
    let (b_tx, a_rx) = channel(capacity, Mode::Single, Mode::Single).map_err(bad)?;
    let wire = Wire::new();
    Ok((
        RingPort::new(name_a.into(), a_rx, a_tx, wire.clone()),
        RingPort::new(name_b.into(), b_rx, b_tx, wire),
    ))
}

/// One port that receives what it sends.
pub fn ring_loopback(name: impl Into<String>, capacity: usize) -> Result<RingPort, SoftError> {
    let (tx, rx) = channel(capacity, Mode::Single, Mode::Single)
        .map_err(|e| SoftError::Other(e.to_string()))?;
    Ok(RingPort::new(name.into(), rx, tx, Wire::new()))
}

impl Port for RingPort {
    fn info(&self) -> PortInfo {
        PortInfo {
            driver: "net_ring".into(),
            name: self.name.clone(),
            capabilities: Capabilities {
                max_rx_queues: 1,
                max_tx_queues: 1,
                min_desc: 1,
                max_desc: u16::MAX,
                desc_align: 1,
                max_frame: u16::MAX as u32,
                rx_offloads: RxOffloads::empty(),
                tx_offloads: TxOffloads::empty(),
                max_mc_addrs: 64,
                promiscuous: true,
                allmulticast: true,
            },
        }
    }

    fn configure(&mut self, conf: &PortConf) -> Result<(), PortError> {
        if self.started {
            return Err(PortError::Started);
        }
        conf.validate(&self.info().capabilities)?;
        self.port_id = conf.port_id;
        self.configured = true;
        Ok(())
    }

    fn start(&mut self) -> Result<(), PortError> {
        if !self.configured {
            return Err(PortError::NotConfigured);
        }
        self.started = true;
        Ok(())
    }

    fn stop(&mut self) -> Result<(), PortError> {
        self.started = false;
        Ok(())
    }

    #[inline]
    fn rx_burst(&mut self, queue: u16, pkts: &mut Burst<Mbuf>) -> usize {
        if !self.started || queue != 0 || !self.wire.is_up() {
            return 0;
        }
        let before = pkts.len();
        let n = self.rx.dequeue_burst(pkts, pkts.spare());
        if n > 0 {
            for m in &mut pkts.as_mut_slice()[before..] {
                self.stats.ibytes += m.len() as u64;
                let rx = m.rx_mut();
                rx.port = self.port_id;
                rx.queue = 0;
            }
            self.stats.ipackets += n as u64;
        }
        n
    }

    #[inline]
    fn tx_burst(&mut self, queue: u16, pkts: &mut Burst<Mbuf>) -> usize {
        if !self.started || queue != 0 {
            return 0;
        }
        if !self.wire.is_up() {
            // A cut cable: the frames leave the port and are lost.
            let n = pkts.len();
            pkts.clear();
            self.stats.oerrors += n as u64;
            return n;
        }
        let bytes: u64 = pkts.iter().map(|m| m.len() as u64).sum();
        let n = self.tx.enqueue_burst(pkts);
        let unsent: u64 = pkts.iter().map(|m| m.len() as u64).sum();
        self.stats.opackets += n as u64;
        self.stats.obytes += bytes - unsent;
        n
    }

    fn link(&mut self) -> LinkStatus {
        if self.started && self.wire.is_up() {
            LinkStatus::up(10_000)
        } else {
            LinkStatus::DOWN
        }
    }

    fn mac_addr(&self) -> MacAddr {
        self.mac
    }

    fn set_mac_addr(&mut self, mac: MacAddr) -> Result<(), PortError> {
        pollux_core::port::require_unicast(mac)?;
        self.mac = mac;
        Ok(())
    }

    fn set_promiscuous(&mut self, on: bool) -> Result<(), PortError> {
        self.promiscuous = on;
        Ok(())
    }

    fn set_allmulticast(&mut self, on: bool) -> Result<(), PortError> {
        self.allmulti = on;
        Ok(())
    }

    fn set_mc_addr_list(&mut self, addrs: &[MacAddr]) -> Result<(), PortError> {
        pollux_core::port::require_multicast(addrs)?;
        self.mc_addrs = addrs.to_vec();
        Ok(())
    }

    fn stats(&self) -> PortStats {
        self.stats
    }

    fn reset_stats(&mut self) {
        self.stats = PortStats::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pollux_core::{AnonMemory, Mempool, MempoolConfig};

    fn pool(n: usize) -> Mempool {
        Mempool::new(MempoolConfig::new("ring-test", n), &AnonMemory::default()).unwrap()
    }

    fn started(p: &mut RingPort, pool: &Mempool) {
        p.configure(&PortConf::new(pool.clone())).unwrap();
        p.start().unwrap();
    }

    #[test]
    fn a_pair_carries_packets_both_ways_in_order() {
        let pool = pool(128);
        let (mut a, mut b) = ring_pair("ring0", "ring1", 16).unwrap();
        started(&mut a, &pool);
        started(&mut b, &pool);
        let mut burst = Burst::new(32);
        for i in 0..20u8 {
            let mut m = pool.alloc().unwrap();
            m.copy_from(&[i; 60]);
            burst.push(m).unwrap();
        }
        assert_eq!(a.tx_burst(0, &mut burst), 16, "wire holds 16");
        assert_eq!(burst.len(), 4, "the rest stays with the caller");
        let mut got = Burst::new(32);
        assert_eq!(b.rx_burst(0, &mut got), 16);
        assert!(got
            .iter()
            .enumerate()
            .all(|(i, m)| m.data() == [i as u8; 60]));
        assert_eq!(b.tx_burst(0, &mut got), 16);
        let mut back = Burst::new(32);
        assert_eq!(a.rx_burst(0, &mut back), 16);
        assert_eq!(a.stats().opackets, 16);
        assert_eq!(a.stats().obytes, 16 * 60);
        assert_eq!(b.stats().ipackets, 16);
        drop((burst, back));
        assert_eq!(pool.available(), 128);
    }

    #[test]
    fn a_cut_wire_drops_and_reports_down() {
        let pool = pool(16);
        let (mut a, mut b) = ring_pair("ring0", "ring1", 16).unwrap();
        started(&mut a, &pool);
        started(&mut b, &pool);
        let wire = a.wire();
        wire.set_up(false);
        assert!(!a.link().up && !b.link().up);
        let mut burst = Burst::new(4);
        burst.push(pool.alloc().unwrap()).unwrap();
        assert_eq!(a.tx_burst(0, &mut burst), 1);
        assert_eq!(a.stats().oerrors, 1);
        wire.set_up(true);
        assert_eq!(b.rx_burst(0, &mut burst), 0);
        assert!(a.link().up);
        assert_eq!(pool.available(), 16);
    }

    #[test]
    fn loopback_receives_what_it_sends() {
        let pool = pool(8);
        let mut p = ring_loopback("ring0", 8).unwrap();
        started(&mut p, &pool);
        let mut b = Burst::new(8);
        assert!(pool.alloc_bulk(&mut b, 3));
        assert_eq!(p.tx_burst(0, &mut b), 3);
        assert_eq!(p.rx_burst(0, &mut b), 3);
    }

    #[test]
    fn packets_left_on_a_dropped_wire_go_back_to_the_pool() {
        let pool = pool(8);
        {
            let (mut a, _b) = ring_pair("ring0", "ring1", 8).unwrap();
            started(&mut a, &pool);
            let mut b = Burst::new(8);
            assert!(pool.alloc_bulk(&mut b, 5));
            a.tx_burst(0, &mut b);
            assert_eq!(pool.available(), 3);
        }
        assert_eq!(pool.available(), 8);
    }
}
