//! Transmit queue: the advanced transmit descriptor path.
//!
//! One data descriptor per packet (no multi-segment mbufs in pollux-core),
//! preceded by a context descriptor when the packet asks for VLAN insertion
//! or checksum offload with parameters that differ from the last context
//! written. The device reports completion only for descriptors with RS set:
//! RS goes on every `rs_thresh`-th descriptor and on the last one of each
//! burst, and reclaiming frees everything up to the oldest RS descriptor
//! whose DD is set. The doorbell (TDT) is written once per burst, after a
//! write barrier.
//!
//! The engine is pollux-intel's, shared with pollux-ixgbevf; this family's
//! part is [`Igbvf`](crate::Igbvf): a context descriptor only for packets
//! that ask for VLAN insertion or checksum offload (`context_for`).

use pollux_core::TxFlags;

use crate::desc::AdvTxCtxDesc;
use crate::regs;

pub use pollux_intel::tx::{DmaCheck, TxRingStats};

/// One transmit queue.
pub type TxRing = pollux_intel::tx::TxRing<crate::Igbvf>;

/// The context descriptor a packet needs, if any.
#[inline(always)]
pub(crate) fn context_for(off: &pollux_core::TxOffload) -> Option<AdvTxCtxDesc> {
    let f = off.flags;
    let wants =
        TxFlags::VLAN_INSERT | TxFlags::IPV4_CKSUM | TxFlags::TCP_CKSUM | TxFlags::UDP_CKSUM;
    if !f.intersects(wants) {
        return None;
    }
    let mut vlan_macip_lens =
        (off.l3_len as u32 & 0x1FF) | (off.l2_len as u32) << regs::TXCTX_MACLEN_SHIFT;
    if f.contains(TxFlags::VLAN_INSERT) {
        vlan_macip_lens |= (off.vlan_tci as u32) << regs::TXCTX_VLAN_SHIFT;
    }
    let mut tucmd = regs::TXD_DCMD_DEXT | regs::TXD_DTYP_CTXT;
    if f.contains(TxFlags::IPV4) || f.contains(TxFlags::IPV4_CKSUM) {
        tucmd |= regs::TXCTX_TUCMD_IPV4;
    }
    if f.contains(TxFlags::TCP_CKSUM) {
        tucmd |= regs::TXCTX_TUCMD_L4T_TCP;
    } else if f.contains(TxFlags::UDP_CKSUM) {
        tucmd |= regs::TXCTX_TUCMD_L4T_UDP;
    }
    Some(AdvTxCtxDesc {
        vlan_macip_lens,
        seqnum_seed: 0,
        type_tucmd_mlhl: tucmd,
        mss_l4len_idx: (off.l4_len as u32) << regs::TXCTX_L4LEN_SHIFT,
    })
}
