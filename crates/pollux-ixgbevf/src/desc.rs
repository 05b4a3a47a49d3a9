//! Advanced receive and transmit descriptors, and rings of them in DMA
//! memory.
//!
//! Layouts: Linux ixgbevf `defines.h` (`union ixgbe_adv_rx_desc`,
//! `union ixgbe_adv_tx_desc`, `struct ixgbe_adv_tx_context_desc`), the 82599
//! datasheet's advanced descriptors; the same family as the 82576's, so the
//! layout matches pollux-igbvf's.
//! All fields are little endian.
//!
//! The device owns the ring memory as much as the driver does, so no Rust
//! reference to it ever exists: a [`DescRing`] holds the region and reads
//! and writes whole descriptors, or single words, with volatile accesses.

use std::mem::size_of;

/// The receive and transmit data descriptors and the ring are the same for
/// every Intel VF family: pollux-intel's.
pub use pollux_intel::desc::{AdvRxDesc, AdvTxDesc, DescRing};

/// Advanced transmit context descriptor: offload parameters for the data
/// descriptors that follow (VLAN tag, header lengths, checksum types);
/// `fceof_saidx` is the IPsec/FCoE word this driver leaves 0.
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdvTxCtxDesc {
    pub vlan_macip_lens: u32,
    pub fceof_saidx: u32,
    pub type_tucmd_mlhl: u32,
    pub mss_l4len_idx: u32,
}

const _: () = assert!(size_of::<AdvTxCtxDesc>() == 16);

impl AdvTxCtxDesc {
    /// Reinterprets the context descriptor as a ring slot (same layout).
    #[inline(always)]
    pub const fn as_tx_desc(&self) -> AdvTxDesc {
        AdvTxDesc {
            buffer_addr: self.vlan_macip_lens as u64 | (self.fceof_saidx as u64) << 32,
            cmd_type_len: self.type_tucmd_mlhl,
            olinfo_status: self.mss_l4len_idx,
        }
    }
}
