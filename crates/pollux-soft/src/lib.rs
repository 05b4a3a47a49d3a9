//! Software ports: Pollux's counterparts of DPDK's `net_null`, `net_ring`,
//! `net_af_packet` and `net_pcap`.
//!
//! They implement [`pollux_core::Port`] like a NIC driver does, so every
//! application, the bond and the tests run without hardware.
//!
//! - [`null::NullPort`]: rx hands out fresh mbufs of a set length, tx frees.
//! - [`ring::RingPort`]: ports joined back to back through lock-free rings.
//! - [`af_packet::AfPacketPort`]: a Linux interface through PACKET_MMAP rings.
//! - [`pcap::PcapPort`]: rx replays a pcap file, tx writes one.
//! - [`vdev`]: builds any of them from a DPDK-style device string
//!   (`null0`, `ring0`, `af_packet0,iface=veth0`, `pcap0,rx=in.pcap`).

pub mod af_packet;
pub mod null;
pub mod pcap;
pub mod ring;
pub mod vdev;

/// A fresh locally administered MAC address for a software port
/// (02:70:6f:xx:xx:xx, "po" for Pollux, then a process-wide counter).
pub(crate) fn next_mac() -> pollux_core::MacAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed).to_be_bytes();
    pollux_core::MacAddr([0x02, 0x70, 0x6f, n[1], n[2], n[3]])
}

/// Errors of building software ports.
#[derive(Debug, thiserror::Error)]
pub enum SoftError {
    #[error("bad device string {spec:?}: {why}")]
    BadSpec { spec: String, why: String },
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl SoftError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> SoftError {
        SoftError::Io {
            context: context.into(),
            source,
        }
    }
}
