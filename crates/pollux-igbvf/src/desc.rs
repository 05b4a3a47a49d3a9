//! Advanced receive and transmit descriptors, and rings of them in DMA
//! memory.
//!
//! Layouts: 82576 datasheet, advanced receive descriptor (read and
//! write-back formats) and advanced transmit data/context descriptors; the
//! same structs are `union e1000_adv_rx_desc`, `e1000_adv_tx_desc` and
//! `e1000_adv_tx_context_desc` in DPDK `e1000_82575.h` and QEMU `igb_regs.h`.
//! All fields are little endian.
//!
//! The device owns the ring memory as much as the driver does, so no Rust
//! reference to it ever exists: a [`DescRing`] (pollux-intel's) holds the
//! region and reads and writes whole descriptors, or single words, with
//! volatile accesses. The context descriptor is this family's.

use std::mem::size_of;

/// The receive and transmit data descriptors and the ring are the same for
/// every Intel VF family: pollux-intel's.
pub use pollux_intel::desc::{AdvRxDesc, AdvTxDesc, DescRing};

/// Advanced transmit context descriptor: offload parameters for the data
/// descriptors that follow (VLAN tag, header lengths, checksum types).
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdvTxCtxDesc {
    pub vlan_macip_lens: u32,
    pub seqnum_seed: u32,
    pub type_tucmd_mlhl: u32,
    pub mss_l4len_idx: u32,
}

const _: () = assert!(size_of::<AdvTxCtxDesc>() == 16);

impl AdvTxCtxDesc {
    /// Reinterprets the context descriptor as a ring slot (same layout).
    #[inline(always)]
    pub const fn as_tx_desc(&self) -> AdvTxDesc {
        AdvTxDesc {
            buffer_addr: self.vlan_macip_lens as u64 | (self.seqnum_seed as u64) << 32,
            cmd_type_len: self.type_tucmd_mlhl,
            olinfo_status: self.mss_l4len_idx,
        }
    }
}
