//! Transmit queue: the advanced transmit descriptor path.
//!
//! One data descriptor per packet (no multi-segment mbufs in pollux-core).
//! Unlike igbvf, every data descriptor has CC (check context) set: Linux
//! sets it on every packet because the PF's transmit switch is always on
//! with VFs (ixgbevf_tx_olinfo_status), and writes a context descriptor for
//! every packet (ixgbevf_tx_csum's `no_csum` path: MACLEN and VLAN tag at
//! least). Here a context descriptor goes out when the packet's parameters
//! differ from the last context written (the device keeps context 0 until
//! it is replaced), and always as the first descriptor after a reset. The device reports completion only for descriptors with RS set:
//! RS goes on every `rs_thresh`-th descriptor and on the last one of each
//! burst, and reclaiming frees everything up to the oldest RS descriptor
//! whose DD is set. The doorbell (TDT) is written once per burst, after a
//! write barrier.
//!
//! The engine is pollux-intel's, shared with pollux-igbvf; this family's
//! part is [`Ixgbevf`](crate::Ixgbevf): CC on every data descriptor and a
//! context descriptor for every packet (`context_for`).

use pollux_core::TxFlags;

use crate::desc::AdvTxCtxDesc;
use crate::regs;

pub use pollux_intel::tx::{DmaCheck, TxRingStats};

/// One transmit queue.
pub type TxRing = pollux_intel::tx::TxRing<crate::Ixgbevf>;

/// MACLEN when the packet gives no `l2_len`: an untagged Ethernet header.
const DEFAULT_MACLEN: u32 = 14;

/// The context descriptor a packet is sent under (every packet has one:
/// CC is always set).
#[inline(always)]
pub(crate) fn context_for(off: &pollux_core::TxOffload) -> AdvTxCtxDesc {
    let f = off.flags;
    let maclen = if off.l2_len == 0 {
        DEFAULT_MACLEN
    } else {
        off.l2_len as u32 & 0x7F
    };
    let csum = TxFlags::IPV4_CKSUM | TxFlags::TCP_CKSUM | TxFlags::UDP_CKSUM;
    let iplen = if f.intersects(csum) {
        off.l3_len as u32 & 0x1FF
    } else {
        0
    };
    let mut vlan_macip_lens = iplen | maclen << regs::TXCTX_MACLEN_SHIFT;
    if f.contains(TxFlags::VLAN_INSERT) {
        vlan_macip_lens |= (off.vlan_tci as u32) << regs::TXCTX_VLAN_SHIFT;
    }
    let mut tucmd = regs::TXD_DCMD_DEXT | regs::TXD_DTYP_CTXT;
    if (f.contains(TxFlags::IPV4) && f.intersects(csum)) || f.contains(TxFlags::IPV4_CKSUM) {
        tucmd |= regs::TXCTX_TUCMD_IPV4;
    }
    if f.contains(TxFlags::TCP_CKSUM) {
        tucmd |= regs::TXCTX_TUCMD_L4T_TCP;
    } else if f.contains(TxFlags::UDP_CKSUM) {
        tucmd |= regs::TXCTX_TUCMD_L4T_UDP;
    }
    let l4len = if f.intersects(TxFlags::TCP_CKSUM | TxFlags::UDP_CKSUM) {
        (off.l4_len as u32) << regs::TXCTX_L4LEN_SHIFT
    } else {
        0
    };
    AdvTxCtxDesc {
        vlan_macip_lens,
        fceof_saidx: 0,
        type_tucmd_mlhl: tucmd,
        mss_l4len_idx: l4len,
    }
}
