//! A software stand-in for the device side of the descriptor rings, for
//! tests and benches that run without hardware.
//!
//! It does what the 82576 does with a ring, from the datasheet's
//! description (and QEMU's `igb_write_packet_to_guest`/`igb_start_xmit`):
//! fetch descriptors between head and tail, copy frames into/out of the
//! buffers they point to, write back the descriptor with DD last. The rings
//! and buffers must live in memory whose IOVA is its virtual address
//! ([`pollux_core::AnonMemory`]), and the registers in a
//! [`pollux_vfio::Bar::plain_memory`], where the driver's tail writes land.
//!
//! Like a device, it writes and reads through whatever address a
//! descriptor holds, so `SimRx::deliver` and `SimTx::process` are
//! `unsafe`; the module exists only with the `testing` feature. The device
//! double is pollux-intel's, shared with pollux-ixgbevf.

/// The device side of one receive ring (pollux-intel's, with this
/// family's registers); igbvf's descriptors carry no RSS hash, so pass 0
/// as `rss`.
pub type SimRx = pollux_intel::testing::SimRx<crate::Igbvf>;
/// The device side of one transmit ring (pollux-intel's, with this
/// family's registers): a data descriptor uses the context when it asks
/// for VLAN insertion or a checksum.
pub type SimTx = pollux_intel::testing::SimTx<crate::Igbvf>;

pub use pollux_intel::testing::{reg, SentFrame};
