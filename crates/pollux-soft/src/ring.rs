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
//! direction; a port has one rx and one tx queue. The rx handle owns the
//! ring's consumer end and the tx handle its producer end while they live
//! (so a burst is the ring's lock-free single-thread path and nothing
//! else), and gives it back to the port when dropped; what waits on the
//! wire ([`RingPort::pending`]) and the wire itself stay visible from the
//! control side.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pollux_core::ring::{channel, Consumer, Mode, Producer};
use pollux_core::{
    Burst, Capabilities, Lease, LinkStatus, MacAddr, Mbuf, Port, PortConf, PortError, PortInfo,
    PortStats, QueueCounters, QueueStats, Queues, RunFlag, RxOffloads, RxQueue, TxOffloads,
    TxQueue,
};

use crate::control::{Counters, Lifecycle};
use crate::{Dock, Docked, SoftError};

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
    #[inline]
    pub fn is_up(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// One end of a ring wire. See the [module docs](self).
pub struct RingPort {
    life: Lifecycle,
    mac: MacAddr,
    port_id: u16,
    rx: Dock<Consumer<Mbuf>>,
    tx: Dock<Producer<Mbuf>>,
    /// Packets the rx ring holds at most.
    rx_capacity: usize,
    wire: Wire,
    /// One rx and one tx queue; the tx counters are also the peer's
    /// `peer_tx_counters`.
    counters: Counters,
    /// The tx counters of the port that sends into our rx ring (our own for
    /// a loopback port): its packets sent minus ours received is what
    /// waits on the wire. Every enqueue and dequeue of the ring is counted
    /// there, and these counters are never zeroed (resets are baselines).
    peer_tx_counters: Arc<QueueCounters>,
    mc_addrs: Vec<MacAddr>,
    promiscuous: bool,
    allmulti: bool,
}

impl std::fmt::Debug for RingPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingPort")
            .field("name", &self.life.name())
            .field("mac", &self.mac)
            .field("wire_up", &self.wire.is_up())
            .field("started", &self.life.is_started())
            .field("handles", &self.life.handles())
            .finish()
    }
}

impl RingPort {
    fn new(
        name: String,
        rx: Consumer<Mbuf>,
        tx: Producer<Mbuf>,
        wire: Wire,
        tx_counters: Arc<QueueCounters>,
        peer_tx_counters: Arc<QueueCounters>,
    ) -> RingPort {
        RingPort {
            life: Lifecycle::new(name),
            mac: crate::next_mac(),
            port_id: 0,
            rx_capacity: rx.ring().capacity(),
            rx: Dock::new(rx),
            tx: Dock::new(tx),
            wire,
            counters: Counters::with(vec![QueueCounters::new_shared()], vec![tx_counters]),
            peer_tx_counters,
            mc_addrs: Vec::new(),
            promiscuous: false,
            allmulti: false,
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

    /// Packets waiting on the wire for this port (a snapshot: while the
    /// queues run it may be a burst behind).
    pub fn pending(&self) -> usize {
        // Our received count first: the sender's count, read after it, is
        // at least as recent, so the difference is not negative unless the
        // sender has yet to store the count of a burst we already took.
        let received = self.counters.rx()[0].get().packets;
        let sent = self.peer_tx_counters.get().packets;
        (sent.wrapping_sub(received) as i64).clamp(0, self.rx_capacity as i64) as usize
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
    let a_sent = QueueCounters::new_shared();
    let b_sent = QueueCounters::new_shared();
    Ok((
        RingPort::new(
            name_a.into(),
            a_rx,
            a_tx,
            wire.clone(),
            a_sent.clone(),
            b_sent.clone(),
        ),
        RingPort::new(name_b.into(), b_rx, b_tx, wire, b_sent, a_sent),
    ))
}

/// One port that receives what it sends.
pub fn ring_loopback(name: impl Into<String>, capacity: usize) -> Result<RingPort, SoftError> {
    let (tx, rx) = channel(capacity, Mode::Single, Mode::Single)
        .map_err(|e| SoftError::Other(e.to_string()))?;
    let sent = QueueCounters::new_shared();
    Ok(RingPort::new(
        name.into(),
        rx,
        tx,
        Wire::new(),
        sent.clone(),
        sent,
    ))
}

/// The rx queue of a [`RingPort`]: the consumer end of its rx ring.
struct RingRx {
    ring: Docked<Consumer<Mbuf>>,
    wire: Wire,
    run: RunFlag,
    port_id: u16,
    counters: Arc<QueueCounters>,
    /// Last, so the ring end is back in its dock before the lease goes.
    _lease: Lease,
}

impl RxQueue for RingRx {
    #[inline]
    fn rx_burst(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
        if !self.run.is_running() || !self.wire.is_up() {
            return 0;
        }
        let before = pkts.len();
        let n = self.ring.get().dequeue_burst(pkts, pkts.spare());
        if n > 0 {
            let mut bytes = 0u64;
            for m in &mut pkts.as_mut_slice()[before..] {
                bytes += m.len() as u64;
                let rx = m.rx_mut();
                rx.port = self.port_id;
                rx.queue = 0;
            }
            self.counters.add(n as u64, bytes);
        }
        n
    }
}

/// The tx queue of a [`RingPort`]: the producer end of its tx ring.
struct RingTx {
    ring: Docked<Producer<Mbuf>>,
    wire: Wire,
    run: RunFlag,
    counters: Arc<QueueCounters>,
    /// Last, so the ring end is back in its dock before the lease goes.
    _lease: Lease,
}

impl TxQueue for RingTx {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
        if !self.run.is_running() {
            return 0;
        }
        if !self.wire.is_up() {
            // A cut cable: the frames leave the port and are lost.
            let n = pkts.len();
            pkts.clear();
            self.counters.add_errors(n as u64);
            return n;
        }
        let bytes: u64 = pkts.iter().map(|m| m.len() as u64).sum();
        let n = self.ring.get().enqueue_burst(pkts);
        if n > 0 {
            let unsent: u64 = pkts.iter().map(|m| m.len() as u64).sum();
            self.counters.add(n as u64, bytes - unsent);
        }
        n
    }
}

impl Port for RingPort {
    fn info(&self) -> PortInfo {
        PortInfo {
            driver: "net_ring".into(),
            name: self.life.name().to_string(),
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
        self.life.check_configure(conf, &self.info().capabilities)?;
        self.port_id = conf.port_id;
        self.life.set_configured();
        Ok(())
    }

    fn start(&mut self) -> Result<(), PortError> {
        self.life.start()
    }

    fn stop(&mut self) -> Result<(), PortError> {
        self.life.stop();
        Ok(())
    }

    fn take_queues(&mut self) -> Result<Queues, PortError> {
        self.life.take_queues(|life| {
            let (Some(rx), Some(tx)) = (self.rx.undock(), self.tx.undock()) else {
                // Cannot happen: start checked that no handle is alive.
                // Whatever was undocked goes back when dropped here.
                return Err(PortError::QueuesTaken(format!(
                    "{}: a ring end is still held by a handle",
                    life.name()
                )));
            };
            let rx = RingRx {
                ring: rx,
                wire: self.wire.clone(),
                run: life.run(),
                port_id: self.port_id,
                counters: self.counters.rx()[0].clone(),
                _lease: life.lease(),
            };
            let tx = RingTx {
                ring: tx,
                wire: self.wire.clone(),
                run: life.run(),
                counters: self.counters.tx()[0].clone(),
                _lease: life.lease(),
            };
            Ok(Queues {
                rx: vec![Box::new(rx)],
                tx: vec![Box::new(tx)],
            })
        })
    }

    fn link(&mut self) -> LinkStatus {
        if self.life.is_started() && self.wire.is_up() {
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
        self.counters.stats()
    }

    fn queue_stats(&self) -> Vec<QueueStats> {
        self.counters.queue_stats()
    }

    fn reset_stats(&mut self) {
        self.counters.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pollux_core::{AnonMemory, Mempool, MempoolConfig, Polled};

    fn pool(n: usize) -> Mempool {
        Mempool::new(MempoolConfig::new("ring-test", n), &AnonMemory::default()).unwrap()
    }

    fn started(mut p: RingPort, pool: &Mempool) -> Polled<RingPort> {
        p.configure(&PortConf::new(pool.clone())).unwrap();
        Polled::start(p).unwrap()
    }

    #[test]
    fn a_pair_carries_packets_both_ways_in_order() {
        let pool = pool(128);
        let (a, b) = ring_pair("ring0", "ring1", 16).unwrap();
        let (mut a, mut b) = (started(a, &pool), started(b, &pool));
        let mut burst = Burst::new(32);
        for i in 0..20u8 {
            let mut m = pool.alloc().unwrap();
            m.copy_from(&[i; 60]);
            burst.push(m).unwrap();
        }
        assert_eq!(a.tx_burst(0, &mut burst), 16, "wire holds 16");
        assert_eq!(burst.len(), 4, "the rest stays with the caller");
        assert_eq!(b.port().pending(), 16);
        assert_eq!(a.port().pending(), 0);
        let mut got = Burst::new(32);
        assert_eq!(b.rx_burst(0, &mut got), 16);
        assert_eq!(b.port().pending(), 0);
        assert!(got
            .iter()
            .enumerate()
            .all(|(i, m)| m.data() == [i as u8; 60]));
        assert_eq!(b.tx_burst(0, &mut got), 16);
        let mut back = Burst::new(32);
        assert_eq!(a.rx_burst(0, &mut back), 16);
        assert_eq!(a.port().stats().opackets, 16);
        assert_eq!(a.port().stats().obytes, 16 * 60);
        assert_eq!(b.port().stats().ipackets, 16);
        assert_eq!(a.port().queue_stats()[0].rx_packets, 16);
        a.port_mut().reset_stats();
        assert_eq!(a.port().stats(), PortStats::default());
        assert_eq!(a.port().queue_stats(), vec![QueueStats::default()]);
        assert_eq!(b.tx_burst(0, &mut back), 16);
        assert_eq!(a.port().pending(), 16, "a reset does not change what waits");
        drop((burst, back));
        drop((a, b));
        assert_eq!(pool.available(), 128);
    }

    #[test]
    fn a_cut_wire_drops_and_reports_down() {
        let pool = pool(16);
        let (a, b) = ring_pair("ring0", "ring1", 16).unwrap();
        let (mut a, mut b) = (started(a, &pool), started(b, &pool));
        let wire = a.port().wire();
        wire.set_up(false);
        assert!(!a.port_mut().link().up && !b.port_mut().link().up);
        let mut burst = Burst::new(4);
        burst.push(pool.alloc().unwrap()).unwrap();
        assert_eq!(a.tx_burst(0, &mut burst), 1);
        assert!(burst.is_empty());
        assert_eq!(a.port().stats().oerrors, 1);
        assert_eq!(a.port().stats().opackets, 0);
        assert_eq!(b.port().pending(), 0, "nothing reached the wire");
        wire.set_up(true);
        assert_eq!(b.rx_burst(0, &mut burst), 0);
        assert!(a.port_mut().link().up);
        assert_eq!(pool.available(), 16);
    }

    #[test]
    fn loopback_receives_what_it_sends() {
        let pool = pool(8);
        let mut p = started(ring_loopback("ring0", 8).unwrap(), &pool);
        let mut b = Burst::new(8);
        assert!(pool.alloc_bulk(&mut b, 3));
        assert_eq!(p.tx_burst(0, &mut b), 3);
        assert_eq!(p.port().pending(), 3);
        assert_eq!(p.rx_burst(0, &mut b), 3);
        assert_eq!(p.port().pending(), 0);
    }

    #[test]
    fn packets_left_on_a_dropped_wire_go_back_to_the_pool() {
        let pool = pool(8);
        {
            let (a, _b) = ring_pair("ring0", "ring1", 8).unwrap();
            let mut a = started(a, &pool);
            let mut b = Burst::new(8);
            assert!(pool.alloc_bulk(&mut b, 5));
            a.tx_burst(0, &mut b);
            assert_eq!(pool.available(), 3);
        }
        assert_eq!(pool.available(), 8);
    }

    #[test]
    fn queues_are_handed_out_once_per_start_and_come_back_on_drop() {
        let pool = pool(8);
        let mut p = ring_loopback("ring0", 8).unwrap();
        assert!(matches!(p.take_queues(), Err(PortError::NotStarted)));
        p.configure(&PortConf::new(pool.clone())).unwrap();
        p.start().unwrap();
        let mut q = p.take_queues().unwrap();
        assert_eq!((q.rx.len(), q.tx.len()), (1, 1));
        assert!(matches!(p.take_queues(), Err(PortError::QueuesTaken(_))));
        let mut b = Burst::new(8);
        assert!(pool.alloc_bulk(&mut b, 2));
        assert_eq!(q.tx[0].tx_burst(&mut b), 2);

        // Stopped: the handles still out do nothing, and the port starts
        // again only once they are gone.
        p.stop().unwrap();
        assert_eq!(q.rx[0].rx_burst(&mut b), 0);
        assert!(pool.alloc_bulk(&mut b, 1));
        assert_eq!(q.tx[0].tx_burst(&mut b), 0);
        assert_eq!(b.len(), 1, "still the caller's");
        assert!(matches!(p.start(), Err(PortError::QueuesTaken(_))));
        drop(q);
        p.start().unwrap();

        // The new handles got the ring ends back, packets on the wire too.
        let mut q = p.take_queues().unwrap();
        assert_eq!(p.pending(), 2);
        assert_eq!(q.rx[0].rx_burst(&mut b), 2);
        assert_eq!(b.len(), 3);
        assert_eq!(q.tx[0].tx_burst(&mut b), 3);
        drop((b, q, p));
        assert_eq!(pool.available(), 8);
    }

    #[test]
    fn each_end_runs_on_its_own_thread_while_control_watches() {
        const N: u64 = 100_000;
        let pool = pool(1024);
        let (a, b) = ring_pair("ring0", "ring1", 256).unwrap();
        let (mut a, mut b) = (a, b);
        for p in [&mut a, &mut b] {
            p.configure(&PortConf::new(pool.clone())).unwrap();
            p.start().unwrap();
        }
        let mut qa = a.take_queues().unwrap();
        let mut qb = b.take_queues().unwrap();
        let mut tx = qa.tx.pop().unwrap();
        let mut rx = qb.rx.pop().unwrap();
        let sender = {
            let pool = pool.clone();
            std::thread::spawn(move || {
                let mut burst = Burst::new(32);
                let mut seq = 0u64;
                while seq < N {
                    while !burst.is_full() && seq + (burst.len() as u64) < N {
                        let Some(mut m) = pool.alloc() else { break };
                        m.copy_from(&(seq + burst.len() as u64).to_be_bytes());
                        burst.push(m).unwrap();
                    }
                    seq += tx.tx_burst(&mut burst) as u64;
                    std::thread::yield_now();
                }
            })
        };
        let receiver = std::thread::spawn(move || {
            let mut burst = Burst::new(32);
            let mut next = 0u64;
            while next < N {
                rx.rx_burst(&mut burst);
                for m in burst.drain() {
                    let got = u64::from_be_bytes(m.data().try_into().unwrap());
                    assert_eq!(got, next, "in order, none lost");
                    next += 1;
                }
            }
        });
        let mut last = (0, 0);
        while !(sender.is_finished() && receiver.is_finished()) {
            let (sent, got) = (a.stats().opackets, b.stats().ipackets);
            assert!(sent >= last.0 && got >= last.1, "counters never go back");
            assert!(b.pending() <= 256);
            last = (sent, got);
            std::thread::yield_now();
        }
        sender.join().unwrap();
        receiver.join().unwrap();
        assert_eq!((a.stats().opackets, b.stats().ipackets), (N, N));
        assert_eq!(a.stats().obytes, 8 * N);
        assert_eq!(b.pending(), 0);
        drop((qa, qb));
        assert_eq!(pool.available(), 1024);
    }
}
