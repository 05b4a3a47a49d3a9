//! The [`Port`] trait: what every NIC driver, software port and bond offers.
//!
//! It follows DPDK's ethdev, with Rust ownership in place of the pointer
//! arrays: `rx_burst` appends received [`Mbuf`]s to a [`Burst`], `tx_burst`
//! takes packets from the front of one and leaves what it could not send.
//! Burst calls never fail; control calls return a [`PortError`].

use std::fmt;

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

/// A network port: NIC driver, software port or bond.
///
/// Control calls return errors; burst calls never fail and never block.
/// A port is used by one thread at a time (`&mut self`); to poll several
/// ports from several lcores, give each lcore its own ports or put a port
/// behind a lock.
pub trait Port: Send {
    /// Driver, name and capabilities.
    fn info(&self) -> PortInfo;

    /// Sets queues, descriptors, offloads and the receive pool. Only while
    /// stopped.
    fn configure(&mut self, conf: &PortConf) -> Result<(), PortError>;

    /// Starts receiving and sending.
    fn start(&mut self) -> Result<(), PortError>;

    /// Stops; packets the port still held are returned to their pools.
    fn stop(&mut self) -> Result<(), PortError>;

    /// Appends up to `pkts.spare()` received packets; returns how many.
    fn rx_burst(&mut self, queue: u16, pkts: &mut Burst<Mbuf>) -> usize;

    /// Sends packets from the front of `pkts`; returns how many it took.
    /// Packets it did not take stay in `pkts`, still the caller's.
    fn tx_burst(&mut self, queue: u16, pkts: &mut Burst<Mbuf>) -> usize;

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
    #[inline]
    fn rx_burst(&mut self, queue: u16, pkts: &mut Burst<Mbuf>) -> usize {
        (**self).rx_burst(queue, pkts)
    }
    #[inline]
    fn tx_burst(&mut self, queue: u16, pkts: &mut Burst<Mbuf>) -> usize {
        (**self).tx_burst(queue, pkts)
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
