//! `null`: the port that costs nothing, for measuring everything else.
//!
//! Same contract as DPDK's `net_null` (with `copy=0`): rx hands out freshly
//! allocated mbufs whose length is set and whose bytes are left as they are;
//! tx frees what it is given. The two can be compared packet for packet.

use std::sync::Arc;

use pollux_core::{
    Burst, Capabilities, Lease, Leases, LinkStatus, MacAddr, Mbuf, Mempool, Port, PortConf,
    PortError, PortInfo, PortStats, QueueCounters, QueueStats, Queues, RunFlag, RxOffloads,
    RxQueue, StatsBase, TxOffloads, TxQueue,
};

use crate::QueueStatsBase;

/// Largest queue count a null port accepts.
pub const MAX_QUEUES: u16 = 16;

/// Options of a null port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NullOpts {
    /// Length of received packets (DPDK's `size`, default 64).
    pub size: u16,
    /// Receive nothing (DPDK's `no-rx`).
    pub no_rx: bool,
}

impl Default for NullOpts {
    fn default() -> NullOpts {
        NullOpts {
            size: 64,
            no_rx: false,
        }
    }
}

/// A null port. See the [module docs](self).
#[derive(Debug)]
pub struct NullPort {
    name: String,
    opts: NullOpts,
    mac: MacAddr,
    port_id: u16,
    pool: Option<Mempool>,
    rx_queues: u16,
    tx_queues: u16,
    started: bool,
    run: RunFlag,
    leases: Leases,
    taken: bool,
    rx: Vec<Arc<QueueCounters>>,
    tx: Vec<Arc<QueueCounters>>,
    base: StatsBase,
    qbase: QueueStatsBase,
}

impl NullPort {
    /// A null port named `name`.
    pub fn new(name: impl Into<String>, opts: NullOpts) -> NullPort {
        NullPort {
            name: name.into(),
            opts,
            mac: crate::next_mac(),
            port_id: 0,
            pool: None,
            rx_queues: 0,
            tx_queues: 0,
            started: false,
            run: RunFlag::new(),
            leases: Leases::new(),
            taken: false,
            rx: Vec::new(),
            tx: Vec::new(),
            base: StatsBase::default(),
            qbase: QueueStatsBase::default(),
        }
    }
}

/// Receive queue of a [`NullPort`]: fresh mbufs of the configured size.
struct NullRx {
    pool: Mempool,
    size: usize,
    no_rx: bool,
    port_id: u16,
    queue: u16,
    run: RunFlag,
    counters: Arc<QueueCounters>,
    _lease: Lease,
}

impl RxQueue for NullRx {
    #[inline]
    fn rx_burst(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
        if self.no_rx || !self.run.is_running() {
            return 0;
        }
        let n = pkts.spare();
        if n == 0 {
            return 0;
        }
        if !self.pool.alloc_bulk(pkts, n) {
            self.counters.add_dropped(n as u64);
            return 0;
        }
        let first = pkts.len() - n;
        for m in &mut pkts.as_mut_slice()[first..] {
            m.set_len(self.size);
            let rx = m.rx_mut();
            rx.port = self.port_id;
            rx.queue = self.queue;
        }
        self.counters.add(n as u64, (n * self.size) as u64);
        n
    }
}

/// Transmit queue of a [`NullPort`]: frees what it is given.
struct NullTx {
    run: RunFlag,
    counters: Arc<QueueCounters>,
    _lease: Lease,
}

impl TxQueue for NullTx {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
        if !self.run.is_running() {
            return 0;
        }
        let n = pkts.len();
        let bytes: usize = pkts.iter().map(Mbuf::len).sum();
        pkts.clear();
        self.counters.add(n as u64, bytes as u64);
        n
    }
}

impl Port for NullPort {
    fn info(&self) -> PortInfo {
        PortInfo {
            driver: "net_null".into(),
            name: self.name.clone(),
            capabilities: Capabilities {
                max_rx_queues: MAX_QUEUES,
                max_tx_queues: MAX_QUEUES,
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
        if self.opts.size as usize
            > conf.rx_pool.data_room() as usize - pollux_core::mbuf::HEADROOM as usize
        {
            return Err(PortError::InvalidConfig(format!(
                "packet size {} does not fit the pool's {}-byte buffers",
                self.opts.size,
                conf.rx_pool.data_room()
            )));
        }
        self.pool = Some(conf.rx_pool.clone());
        self.port_id = conf.port_id;
        self.rx_queues = conf.rx_queues;
        self.tx_queues = conf.tx_queues;
        self.rx = (0..conf.rx_queues)
            .map(|_| QueueCounters::new_shared())
            .collect();
        self.tx = (0..conf.tx_queues)
            .map(|_| QueueCounters::new_shared())
            .collect();
        self.base.clear();
        self.qbase.clear();
        Ok(())
    }

    fn start(&mut self) -> Result<(), PortError> {
        if self.pool.is_none() {
            return Err(PortError::NotConfigured);
        }
        if !self.started {
            self.leases.check_none(&self.name)?;
            self.taken = false;
        }
        self.started = true;
        self.run.set(true);
        Ok(())
    }

    fn stop(&mut self) -> Result<(), PortError> {
        self.started = false;
        self.run.set(false);
        Ok(())
    }

    fn take_queues(&mut self) -> Result<Queues, PortError> {
        if !self.started {
            return Err(PortError::NotStarted);
        }
        if self.taken {
            return Err(PortError::QueuesTaken(self.name.clone()));
        }
        let Some(pool) = &self.pool else {
            return Err(PortError::NotConfigured);
        };
        self.taken = true;
        let rx = self
            .rx
            .iter()
            .enumerate()
            .map(|(q, c)| {
                Box::new(NullRx {
                    pool: pool.clone(),
                    size: self.opts.size as usize,
                    no_rx: self.opts.no_rx,
                    port_id: self.port_id,
                    queue: q as u16,
                    run: self.run.clone(),
                    counters: c.clone(),
                    _lease: self.leases.lease(),
                }) as Box<dyn RxQueue>
            })
            .collect();
        let tx = self
            .tx
            .iter()
            .map(|c| {
                Box::new(NullTx {
                    run: self.run.clone(),
                    counters: c.clone(),
                    _lease: self.leases.lease(),
                }) as Box<dyn TxQueue>
            })
            .collect();
        Ok(Queues { rx, tx })
    }

    fn link(&mut self) -> LinkStatus {
        // DPDK's null PMD reports a 10 Gbps full-duplex link once started.
        if self.started {
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

    fn set_promiscuous(&mut self, _on: bool) -> Result<(), PortError> {
        Ok(())
    }

    fn set_allmulticast(&mut self, _on: bool) -> Result<(), PortError> {
        Ok(())
    }

    fn set_mc_addr_list(&mut self, addrs: &[MacAddr]) -> Result<(), PortError> {
        pollux_core::port::require_multicast(addrs)
    }

    fn stats(&self) -> PortStats {
        self.base.since(pollux_core::port::sum_queue_counters(
            self.rx.iter().map(|c| &**c),
            self.tx.iter().map(|c| &**c),
        ))
    }

    fn queue_stats(&self) -> Vec<QueueStats> {
        self.qbase
            .since(pollux_core::port::queue_stats_of(&self.rx, &self.tx))
    }

    fn reset_stats(&mut self) {
        let now = pollux_core::port::sum_queue_counters(
            self.rx.iter().map(|c| &**c),
            self.tx.iter().map(|c| &**c),
        );
        self.base.reset(now);
        self.qbase
            .reset(pollux_core::port::queue_stats_of(&self.rx, &self.tx));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pollux_core::{AnonMemory, MempoolConfig, Polled};

    fn pool(n: usize) -> Mempool {
        Mempool::new(MempoolConfig::new("null-test", n), &AnonMemory::default()).unwrap()
    }

    #[test]
    fn rx_gives_sized_mbufs_and_tx_frees_them() {
        let pool = pool(256);
        let mut p = NullPort::new(
            "null0",
            NullOpts {
                size: 60,
                no_rx: false,
            },
        );
        assert!(matches!(p.take_queues(), Err(PortError::NotStarted)));
        let mut conf = PortConf::new(pool.clone());
        conf.port_id = 3;
        p.configure(&conf).unwrap();
        let mut p = Polled::start(p).unwrap();
        let mut b = Burst::new(32);
        assert_eq!(p.rx_burst(0, &mut b), 32);
        assert!(b.iter().all(|m| m.len() == 60 && m.rx().port == 3));
        assert_eq!(pool.available(), 256 - 32);
        assert_eq!(p.tx_burst(0, &mut b), 32);
        assert!(b.is_empty());
        assert_eq!(pool.available(), 256);
        let s = p.port().stats();
        assert_eq!(
            (s.ipackets, s.opackets, s.ibytes, s.obytes),
            (32, 32, 32 * 60, 32 * 60)
        );
        assert_eq!(p.port().queue_stats()[0].rx_packets, 32);
        p.port_mut().reset_stats();
        assert_eq!(p.port().stats(), PortStats::default());
        assert_eq!(
            p.port().queue_stats(),
            vec![QueueStats::default()],
            "a reset zeroes the per-queue counters too"
        );
        // Stopped: the handles still out do nothing.
        p.port_mut().stop().unwrap();
        assert_eq!(p.rx_burst(0, &mut b), 0);
    }

    #[test]
    fn queues_are_handed_out_once_per_start() {
        let mut p = NullPort::new("null0", NullOpts::default());
        let mut conf = PortConf::new(pool(64));
        conf.rx_queues = 2;
        conf.tx_queues = 3;
        p.configure(&conf).unwrap();
        p.start().unwrap();
        let q = p.take_queues().unwrap();
        assert_eq!((q.rx.len(), q.tx.len()), (2, 3));
        assert!(matches!(p.take_queues(), Err(PortError::QueuesTaken(_))));
        p.stop().unwrap();
        assert!(
            matches!(p.start(), Err(PortError::QueuesTaken(_))),
            "handles of the last start are alive"
        );
        drop(q);
        p.start().unwrap();
        assert!(p.take_queues().is_ok());
    }

    #[test]
    fn two_threads_poll_their_own_queues_while_control_reads_stats() {
        let pool = pool(4096);
        let mut p = NullPort::new("null0", NullOpts::default());
        let mut conf = PortConf::new(pool.clone());
        conf.rx_queues = 2;
        conf.tx_queues = 2;
        p.configure(&conf).unwrap();
        p.start().unwrap();
        let q = p.take_queues().unwrap();
        let threads: Vec<_> =
            q.rx.into_iter()
                .zip(q.tx)
                .map(|(mut rx, mut tx)| {
                    std::thread::spawn(move || {
                        let mut b = Burst::new(32);
                        for _ in 0..10_000 {
                            rx.rx_burst(&mut b);
                            tx.tx_burst(&mut b);
                            assert!(b.is_empty());
                        }
                    })
                })
                .collect();
        let mut last = 0;
        while !threads.iter().all(|t| t.is_finished()) {
            let s = p.stats().ipackets;
            assert!(s >= last, "counters never go back");
            last = s;
        }
        threads.into_iter().for_each(|t| t.join().unwrap());
        let s = p.stats();
        assert_eq!((s.ipackets, s.opackets), (2 * 320_000, 2 * 320_000));
        let qs = p.queue_stats();
        assert_eq!(qs.len(), 2);
        assert!(qs.iter().all(|q| q.rx_packets == 320_000));
        assert_eq!(pool.available(), pool.size());
    }

    #[test]
    fn an_empty_pool_counts_nombuf() {
        let pool = pool(16);
        let mut p = NullPort::new("null0", NullOpts::default());
        p.configure(&PortConf::new(pool.clone())).unwrap();
        let mut p = Polled::start(p).unwrap();
        let mut b = Burst::new(32);
        assert_eq!(p.rx_burst(0, &mut b), 0);
        assert_eq!(p.port().stats().rx_nombuf, 32);
        drop(b);
        assert_eq!(pool.available(), 16);
    }

    #[test]
    fn bad_config_is_refused() {
        let mut p = NullPort::new("null0", NullOpts::default());
        let mut conf = PortConf::new(pool(8));
        conf.rx_queues = 99;
        assert!(matches!(
            p.configure(&conf),
            Err(PortError::InvalidConfig(_))
        ));
        assert!(matches!(p.start(), Err(PortError::NotConfigured)));
    }
}
