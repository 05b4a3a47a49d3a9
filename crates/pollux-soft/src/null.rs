//! `null`: the port that costs nothing, for measuring everything else.
//!
//! Same contract as DPDK's `net_null` (with `copy=0`): rx hands out freshly
//! allocated mbufs whose length is set and whose bytes are left as they are;
//! tx frees what it is given. The two can be compared packet for packet.

use pollux_core::{
    Burst, Capabilities, LinkStatus, MacAddr, Mbuf, Mempool, Port, PortConf, PortError, PortInfo,
    PortStats, QueueStats, RxOffloads, TxOffloads,
};

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

#[derive(Clone, Copy, Default)]
struct QueueCounters {
    rx_packets: u64,
    rx_bytes: u64,
    tx_packets: u64,
    tx_bytes: u64,
}

/// A null port. See the [module docs](self).
#[derive(Debug)]
pub struct NullPort {
    name: String,
    opts: NullOpts,
    mac: MacAddr,
    port_id: u16,
    pool: Option<Mempool>,
    started: bool,
    queues: Vec<QueueCounters>,
    rx_nombuf: u64,
}

impl std::fmt::Debug for QueueCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueCounters")
            .field("rx", &self.rx_packets)
            .field("tx", &self.tx_packets)
            .finish()
    }
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
            started: false,
            queues: vec![QueueCounters::default(); MAX_QUEUES as usize],
            rx_nombuf: 0,
        }
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
        Ok(())
    }

    fn start(&mut self) -> Result<(), PortError> {
        if self.pool.is_none() {
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
        if !self.started || self.opts.no_rx {
            return 0;
        }
        let Some(pool) = &self.pool else { return 0 };
        let Some(q) = self.queues.get_mut(queue as usize) else {
            return 0;
        };
        let n = pkts.spare();
        if n == 0 {
            return 0;
        }
        if !pool.alloc_bulk(pkts, n) {
            self.rx_nombuf += n as u64;
            return 0;
        }
        let size = self.opts.size as usize;
        let first = pkts.len() - n;
        for m in &mut pkts.as_mut_slice()[first..] {
            m.set_len(size);
            let rx = m.rx_mut();
            rx.port = self.port_id;
            rx.queue = queue;
        }
        q.rx_packets += n as u64;
        q.rx_bytes += (n * size) as u64;
        n
    }

    #[inline]
    fn tx_burst(&mut self, queue: u16, pkts: &mut Burst<Mbuf>) -> usize {
        if !self.started {
            return 0;
        }
        let Some(q) = self.queues.get_mut(queue as usize) else {
            return 0;
        };
        let n = pkts.len();
        let bytes: usize = pkts.iter().map(Mbuf::len).sum();
        pkts.clear();
        q.tx_packets += n as u64;
        q.tx_bytes += bytes as u64;
        n
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
        let mut s = PortStats {
            rx_nombuf: self.rx_nombuf,
            ..Default::default()
        };
        for q in &self.queues {
            s.ipackets += q.rx_packets;
            s.ibytes += q.rx_bytes;
            s.opackets += q.tx_packets;
            s.obytes += q.tx_bytes;
        }
        s
    }

    fn queue_stats(&self) -> Vec<QueueStats> {
        self.queues
            .iter()
            .map(|q| QueueStats {
                rx_packets: q.rx_packets,
                rx_bytes: q.rx_bytes,
                tx_packets: q.tx_packets,
                tx_bytes: q.tx_bytes,
                rx_errors: 0,
            })
            .collect()
    }

    fn reset_stats(&mut self) {
        self.queues.fill(QueueCounters::default());
        self.rx_nombuf = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pollux_core::{AnonMemory, MempoolConfig};

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
        assert_eq!(p.rx_burst(0, &mut Burst::new(4)), 0, "not started");
        let mut conf = PortConf::new(pool.clone());
        conf.port_id = 3;
        p.configure(&conf).unwrap();
        p.start().unwrap();
        let mut b = Burst::new(32);
        assert_eq!(p.rx_burst(0, &mut b), 32);
        assert!(b.iter().all(|m| m.len() == 60 && m.rx().port == 3));
        assert_eq!(pool.available(), 256 - 32);
        assert_eq!(p.tx_burst(0, &mut b), 32);
        assert!(b.is_empty());
        assert_eq!(pool.available(), 256);
        let s = p.stats();
        assert_eq!(
            (s.ipackets, s.opackets, s.ibytes, s.obytes),
            (32, 32, 32 * 60, 32 * 60)
        );
    }

    #[test]
    fn an_empty_pool_counts_nombuf() {
        let pool = pool(16);
        let mut p = NullPort::new("null0", NullOpts::default());
        p.configure(&PortConf::new(pool.clone())).unwrap();
        p.start().unwrap();
        let mut b = Burst::new(32);
        assert_eq!(p.rx_burst(0, &mut b), 0);
        assert_eq!(p.stats().rx_nombuf, 32);
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
