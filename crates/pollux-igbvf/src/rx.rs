//! Receive queue: the advanced receive descriptor path.
//!
//! Every descriptor the device may write holds a buffer whose
//! [`Mbuf`](pollux_core::Mbuf) sits in the software ring at the same index.
//! When the device sets DD, the driver swaps a fresh buffer into the slot,
//! rewrites the descriptor in read format and hands the received mbuf to
//! the caller; the tail moves in batches (one doorbell per `free_thresh`
//! descriptors) after a write barrier. One slot always stays out of the
//! device's hands so that head == tail means empty.
//!
//! Nothing the device writes is trusted: a length beyond the buffer, a frame
//! spread over several descriptors (no scatter here) or an error bit drops
//! the frame and counts it; nothing panics.
//!
//! The engine is pollux-intel's, shared with pollux-ixgbevf; this family's
//! part is [`Igbvf`](crate::Igbvf): the 82576's receive error bits, L4CS or
//! UDPCS for the L4 checksum (as DPDK's igb), and the I350's big-endian VLAN
//! tag of loopback frames.

pub use pollux_intel::rx::{packet_type, RxRingStats};

/// One receive queue.
pub type RxRing = pollux_intel::rx::RxRing<crate::Igbvf>;
