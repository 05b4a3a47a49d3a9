//! The Pollux packet core.
//!
//! Everything a polled-mode driver, a software port or a forwarding loop
//! needs, and nothing that touches a device:
//!
//! - [`Mbuf`]: a handle to one packet buffer in DMA-capable memory. Whoever
//!   holds the handle owns the bytes; a driver that gives a buffer to its
//!   device keeps the handle in its software ring, so no `&[u8]` over the
//!   buffer can exist while the device may write it.
//! - [`Mempool`]: fixed-size buffers carved from one [`DmaRegion`], a
//!   lock-free free list ([`Ring`]) and a per-lcore cache in front of it.
//! - [`Ring`], [`ring::channel`]: bounded lock-free rings with the semantics
//!   of DPDK's `rte_ring` (bulk = all or nothing, burst = as many as fit).
//! - [`Burst`]: the fixed-capacity packet vector that `rx_burst` fills and
//!   `tx_burst` drains from the front; what a port could not send stays in it.
//! - [`Port`]: the ethdev-like control trait implemented by hardware PMDs,
//!   software ports and the bond, and the per-queue [`RxQueue`] and
//!   [`TxQueue`] handles its data path is split into, one lcore each.
//! - [`lcore`]: polling threads pinned to cores, with a clean stop signal.
//! - [`wire`]: checked zero-copy views of the Ethernet, 802.1Q, ARP, IPv4,
//!   IPv6, UDP, TCP and ICMP headers the data path reads, fuzzed.
//! - [`MacAddr`]: the workspace's one MAC address type, for the data plane
//!   and host control alike; with the `serde` feature it is serialized as
//!   its `02:00:00:00:00:01` string.
//!
//! Unsafe code is confined to the modules that manage raw memory (`ring`,
//! `burst`, `mbuf`, `mempool`, `mem`, `lcore`, and the barrier instructions of
//! `barrier`); each block states the
//! invariant it relies on.

pub mod barrier;
pub mod burst;
/// Entry points for the fuzz targets and the corpus replay: a test double,
/// behind the `testing` feature.
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod fuzz_harness;
pub mod lcore;
pub mod mbuf;
pub mod mem;
pub mod mempool;
pub mod net;
pub mod port;
pub mod ring;
pub mod wire;

pub use burst::Burst;
pub use mbuf::{Mbuf, PacketType, RxFlags, RxMeta, TxFlags, TxOffload};
pub use mem::{AnonMemory, DmaRegion, HugePages, Iova, MemError, MemoryProvider};
pub use mempool::{DmaCheck, Mempool, MempoolConfig, MempoolError, PoolReach};
pub use net::MacAddr;
pub use port::{
    Capabilities, Duplex, Lease, Leases, LinkStatus, Polled, Port, PortConf, PortError, PortInfo,
    PortStats, QueueCounters, QueueCounts, QueueStats, Queues, RunFlag, RxOffloads, RxQueue,
    StatsBase, TxOffloads, TxQueue, Xstat,
};
pub use ring::Ring;

/// An error and its sources on one line (`outer: inner: root`), for places
/// that take a string: a `PortError::Other`, a CLI's one-line message. A
/// source whose message the line already holds (error types that print
/// their source themselves) is not repeated.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = c.source();
    }
    s
}
