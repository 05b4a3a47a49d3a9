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
//! Beyond igbvf's path: the RSS hash goes into the mbuf when the
//! descriptor's RSS type is not 0 (Linux ixgbevf_rx_hash), and the receive
//! checksum bits are read as Linux ixgbevf_rx_checksum reads them.
//!
//! Nothing the device writes is trusted: a length beyond the buffer, a frame
//! spread over several descriptors (no scatter here) or an error bit drops
//! the frame and counts it; nothing panics.
//!
//! The engine is pollux-intel's, shared with pollux-igbvf; this family's
//! part is [`Ixgbevf`](crate::Ixgbevf): the 82599's receive error bits, the
//! RSS type field and L4CS alone for the L4 checksum.

pub use pollux_intel::rx::{packet_type, RxRingStats};

/// One receive queue.
pub type RxRing = pollux_intel::rx::RxRing<crate::Ixgbevf>;
