//! Shared pieces of the Intel VF poll-mode drivers (pollux-igbvf for the
//! 82576 / I350, pollux-ixgbevf for the 82599 / X540 / X550), the way DPDK
//! shares `drivers/net/intel/common`:
//!
//! - [`desc`]: the advanced receive and transmit descriptors and a ring of
//!   them in DMA memory, accessed only with volatile loads and stores;
//! - [`rx`], [`tx`]: the ring engines (refill, DD check, buffer swap,
//!   batched tail, RS tracking, reclaim);
//! - [`queues`]: the queue set that hands the rings to lcores as
//!   [`RxQueue`](pollux_core::RxQueue) / [`TxQueue`](pollux_core::TxQueue)
//!   handles and resynchronises them after a stop or a PF reset;
//! - [`stats`]: wrap-safe 32- and 36-bit hardware counters;
//! - [`regs`]: the register-access trait;
//! - `testing` (feature `testing`): the device side of the rings in
//!   software, and the queue set's checks each PMD runs with its family.
//!
//! What differs between the families (register offsets, a few descriptor
//! bits, the transmit context descriptor) is a [`Family`]: a zero-sized
//! type each PMD defines. Everything on the burst path is generic over it,
//! so each PMD gets its own monomorphised copy with the constants folded
//! in; nothing is dispatched dynamically inside a burst.

#[cfg(target_endian = "big")]
compile_error!("pollux-intel assumes a little-endian host, like the device's descriptors");

pub mod adv;
pub mod desc;
pub mod family;
pub mod queues;
pub mod regs;
pub mod rx;
pub mod stats;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tx;

pub use family::Family;
pub use regs::Regs;
