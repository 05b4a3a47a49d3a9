//! `null`: the port that costs nothing, for measuring everything else.
//!
//! Same contract as DPDK's `net_null` (with `copy=0`): rx hands out freshly
//! allocated mbufs whose length is set and whose bytes are left as they are;
//! tx frees what it is given. The two can be compared packet for packet.

use std::sync::Arc;

use pollux_core::{
    Burst, Capabilities, Lease, LinkStatus, MacAddr, Mbuf, Mempool, Port, PortConf, PortError,
    PortInfo, PortStats, QueueCounters, QueueStats, Queues, RunFlag, RxOffloads, RxQueue,
    TxOffloads, TxQueue,
};

use crate::control::{Counters, Lifecycle};

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
    life: Lifecycle,
    opts: NullOpts,
    mac: MacAddr,
    port_id: u16,
    pool: Option<Mempool>,
    /// One per configured queue, made anew by each `configure`.
    counters: Counters,
}

impl NullPort {
    /// A null port named `name`.
    pub fn new(name: impl Into<String>, opts: NullOpts) -> NullPort {
        NullPort {
            life: Lifecycle::new(name),
            opts,
            mac: crate::next_mac(),
            port_id: 0,
            pool: None,
            counters: Counters::default(),
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
            name: self.life.name().to_string(),
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
        self.life.check_configure(conf, &self.info().capabilities)?;
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
        self.counters = Counters::new(conf.rx_queues, conf.tx_queues);
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
            let Some(pool) = &self.pool else {
                return Err(PortError::NotConfigured);
            };
            let rx = self
                .counters
                .rx()
                .iter()
                .enumerate()
                .map(|(q, c)| {
                    Box::new(NullRx {
                        pool: pool.clone(),
                        size: self.opts.size as usize,
                        no_rx: self.opts.no_rx,
                        port_id: self.port_id,
                        queue: q as u16,
                        run: life.run(),
                        counters: c.clone(),
                        _lease: life.lease(),
                    }) as Box<dyn RxQueue>
                })
                .collect();
            let tx = self
                .counters
                .tx()
                .iter()
                .map(|c| {
                    Box::new(NullTx {
                        run: life.run(),
                        counters: c.clone(),
                        _lease: life.lease(),
                    }) as Box<dyn TxQueue>
                })
                .collect();
            Ok(Queues { rx, tx })
        })
    }

    fn link(&mut self) -> LinkStatus {
        // DPDK's null PMD reports a 10 Gbps full-duplex link once started.
        if self.life.is_started() {
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
