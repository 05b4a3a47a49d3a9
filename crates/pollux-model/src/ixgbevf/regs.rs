//! Register offsets and bits of the 82599/X540/X550 virtual function, as
//! the drivers use them.
//!
//! Sources: Linux `drivers/net/ethernet/intel/ixgbevf/regs.h`,
//! `defines.h`, `mbx.h`, `vf.h` (ixgbevf, kernel 6.x) and DPDK 22.11
//! `drivers/net/ixgbe/base/ixgbe_type.h`, `ixgbe_vf.h`, `ixgbe_mbx.h`.

// --- BAR 0 registers (regs.h) ---

/// VFCTRL: control (RST bit 26).
pub const VFCTRL: u64 = 0x0000;
/// VFSTATUS (read by the drivers as a flush).
pub const VFSTATUS: u64 = 0x0008;
/// VFLINKS: link state and speed.
pub const VFLINKS: u64 = 0x0010;
/// VFFRTIMER: free running timer.
pub const VFFRTIMER: u64 = 0x0048;
/// VFRXMEMWRAP.
pub const VFRXMEMWRAP: u64 = 0x3190;
/// VTEICR: interrupt cause (read clears, write 1 clears).
pub const VTEICR: u64 = 0x0100;
/// VTEICS: interrupt cause set.
pub const VTEICS: u64 = 0x0104;
/// VTEIMS: interrupt mask set (reads the mask).
pub const VTEIMS: u64 = 0x0108;
/// VTEIMC: interrupt mask clear.
pub const VTEIMC: u64 = 0x010C;
/// VTEIAC: auto clear.
pub const VTEIAC: u64 = 0x0110;
/// VTEIAM: auto mask.
pub const VTEIAM: u64 = 0x0114;
/// VTEITR(n) = 0x820 + 4n.
pub const VTEITR0: u64 = 0x0820;
/// VTIVAR(n) = 0x120 + 4n: rx/tx cause of queues 2n and 2n+1.
pub const VTIVAR0: u64 = 0x0120;
/// VTIVAR_MISC: the "other" (mailbox) cause.
pub const VTIVAR_MISC: u64 = 0x0140;
/// VTRSCINT(n) = 0x180 + 4n (stored only).
pub const VTRSCINT0: u64 = 0x0180;
/// VFMBMEM: 16 words of mailbox memory.
pub const VFMBMEM: u64 = 0x0200;
/// VFMAILBOX: the mailbox control register.
pub const VFMAILBOX: u64 = 0x02FC;
/// VFPSRTYPE (RQPL in bits 31:29).
pub const VFPSRTYPE: u64 = 0x0300;

/// Rx queue block: VFRDBAL(n) = 0x1000 + 0x40 n, fields at these offsets.
pub const RX_BASE: u64 = 0x1000;
/// Tx queue block: VFTDBAL(n) = 0x2000 + 0x40 n.
pub const TX_BASE: u64 = 0x2000;
/// Stride between queues.
pub const Q_STRIDE: u64 = 0x40;
/// Queue register sets in the BAR (82599 VF: 8).
pub const MAX_QUEUES: usize = 8;

/// Offsets inside an rx queue block.
pub mod rxq {
    /// RDBAL.
    pub const BAL: u64 = 0x00;
    /// RDBAH.
    pub const BAH: u64 = 0x04;
    /// RDLEN.
    pub const LEN: u64 = 0x08;
    /// DCA_RXCTRL.
    pub const DCA: u64 = 0x0C;
    /// RDH.
    pub const HEAD: u64 = 0x10;
    /// SRRCTL.
    pub const SRRCTL: u64 = 0x14;
    /// RDT.
    pub const TAIL: u64 = 0x18;
    /// RXDCTL.
    pub const RXDCTL: u64 = 0x28;
    /// RSCCTL.
    pub const RSCCTL: u64 = 0x2C;
}

/// Offsets inside a tx queue block.
pub mod txq {
    /// TDBAL.
    pub const BAL: u64 = 0x00;
    /// TDBAH.
    pub const BAH: u64 = 0x04;
    /// TDLEN.
    pub const LEN: u64 = 0x08;
    /// DCA_TXCTRL.
    pub const DCA: u64 = 0x0C;
    /// TDH.
    pub const HEAD: u64 = 0x10;
    /// TDT.
    pub const TAIL: u64 = 0x18;
    /// TXDCTL.
    pub const TXDCTL: u64 = 0x28;
    /// TDWBAL (head write-back address low, enable bit 0).
    pub const WBAL: u64 = 0x38;
    /// TDWBAH.
    pub const WBAH: u64 = 0x3C;
}

/// VFGPRC: good packets received.
pub const VFGPRC: u64 = 0x101C;
/// VFGORC_LSB.
pub const VFGORC_LSB: u64 = 0x1020;
/// VFGORC_MSB.
pub const VFGORC_MSB: u64 = 0x1024;
/// VFMPRC: multicast packets received.
pub const VFMPRC: u64 = 0x1034;
/// VFGPTC: good packets transmitted.
pub const VFGPTC: u64 = 0x201C;
/// VFGOTC_LSB.
pub const VFGOTC_LSB: u64 = 0x2020;
/// VFGOTC_MSB.
pub const VFGOTC_MSB: u64 = 0x2024;

/// X550 VF: VFMRQC (DPDK ixgbe_vf.h).
pub const VFMRQC: u64 = 0x3000;
/// X550 VF: VFRSSRK(n) = 0x3100 + 4n, 10 registers.
pub const VFRSSRK0: u64 = 0x3100;
/// X550 VF: VFRETA(n) = 0x3200 + 4n, 16 registers of 4 entries.
pub const VFRETA0: u64 = 0x3200;

// --- bits (defines.h, ixgbe_type.h) ---

/// VFCTRL.RST (IXGBE_CTRL_RST).
pub const CTRL_RST: u32 = 1 << 26;
/// VFLINKS: link up (IXGBE_LINKS_UP).
pub const LINKS_UP: u32 = 1 << 30;
/// VFLINKS: 10 Gb/s (IXGBE_LINKS_SPEED_10G_82599).
pub const LINKS_SPEED_10G: u32 = 0x3000_0000;
/// RXDCTL/TXDCTL: queue enable.
pub const DCTL_ENABLE: u32 = 1 << 25;
/// TXDCTL: software flush (IXGBE_TXDCTL_SWFLSH), self-clearing here.
pub const TXDCTL_SWFLSH: u32 = 1 << 26;
/// RXDCTL: VLAN strip (IXGBE_RXDCTL_VME).
pub const RXDCTL_VME: u32 = 1 << 30;
/// RXDCTL: RLPML enable (X540 and later).
pub const RXDCTL_RLPML_EN: u32 = 1 << 15;
/// RXDCTL: RLPML value.
pub const RXDCTL_RLPML_MASK: u32 = 0x3FFF;
/// SRRCTL.BSIZEPKT (1 KiB units).
pub const SRRCTL_BSIZEPKT_MASK: u32 = 0x7F;
/// SRRCTL descriptor type field.
pub const SRRCTL_DESCTYPE_MASK: u32 = 0x0E00_0000;
/// SRRCTL descriptor type: advanced one buffer.
pub const SRRCTL_DESCTYPE_ADV_ONEBUF: u32 = 0x0200_0000;
/// SRRCTL reset value (BSIZEHEADER 256, BSIZEPKT 2 KiB; DPDK
/// ixgbe_virt_clr_reg writes this as the default).
pub const SRRCTL_DEFAULT: u32 = (0x100 << 2) | (0x800 >> 10);
/// PSRTYPE.RQPL shift (DPDK IXGBE_PSRTYPE_RQPL_SHIFT).
pub const PSRTYPE_RQPL_SHIFT: u32 = 29;
/// TDWBAL: head write-back enable.
pub const TDWBAL_HEAD_WB_ENABLE: u32 = 1;
/// IVAR: allocation valid (IXGBE_IVAR_ALLOC_VAL).
pub const IVAR_ALLOC_VAL: u32 = 0x80;
/// The three VF MSI-X causes (IXGBE_VF_IRQ_CLEAR_MASK).
pub const EICR_MASK: u32 = 0x7;

/// VFMRQC: RSS enable.
pub const MRQC_RSSEN: u32 = 0x0000_0001;
/// MRQC: hash TCP/IPv4.
pub const MRQC_IPV4_TCP: u32 = 0x0001_0000;
/// MRQC: hash IPv4.
pub const MRQC_IPV4: u32 = 0x0002_0000;
/// MRQC: hash IPv6.
pub const MRQC_IPV6: u32 = 0x0010_0000;
/// MRQC: hash TCP/IPv6.
pub const MRQC_IPV6_TCP: u32 = 0x0020_0000;
/// MRQC: hash UDP/IPv4.
pub const MRQC_IPV4_UDP: u32 = 0x0040_0000;
/// MRQC: hash UDP/IPv6.
pub const MRQC_IPV6_UDP: u32 = 0x0080_0000;

// --- mailbox (mbx.h) ---

/// VFMAILBOX.REQ: request for PF ready (write only here).
pub const MB_REQ: u32 = 0x01;
/// VFMAILBOX.ACK: VF acknowledges a PF message (write only here).
pub const MB_ACK: u32 = 0x02;
/// VFMAILBOX.VFU: the VF owns the buffer.
pub const MB_VFU: u32 = 0x04;
/// VFMAILBOX.PFU: the PF owns the buffer.
pub const MB_PFU: u32 = 0x08;
/// VFMAILBOX.PFSTS: the PF wrote a message (read clears).
pub const MB_PFSTS: u32 = 0x10;
/// VFMAILBOX.PFACK: the PF acknowledged the VF's message (read clears).
pub const MB_PFACK: u32 = 0x20;
/// VFMAILBOX.RSTI: PF reset in progress.
pub const MB_RSTI: u32 = 0x40;
/// VFMAILBOX.RSTD: PF reset done (read clears).
pub const MB_RSTD: u32 = 0x80;
/// The read-to-clear bits (IXGBE_VFMAILBOX_R2C_BITS).
pub const MB_R2C_BITS: u32 = 0xB0;
/// Mailbox size in words.
pub const MBX_WORDS: usize = 16;

/// Message result: success (IXGBE_VT_MSGTYPE_SUCCESS, formerly ACK).
pub const MSG_SUCCESS: u32 = 0x8000_0000;
/// Message result: failure (IXGBE_VT_MSGTYPE_FAILURE, formerly NACK).
pub const MSG_FAILURE: u32 = 0x4000_0000;
/// Clear to send.
pub const MSG_CTS: u32 = 0x2000_0000;
/// Message info field shift (bits 23:16).
pub const MSGINFO_SHIFT: u32 = 16;

/// VF requests reset.
pub const VF_RESET: u32 = 0x01;
/// VF sets its MAC address.
pub const VF_SET_MAC_ADDR: u32 = 0x02;
/// VF sets its multicast hash list.
pub const VF_SET_MULTICAST: u32 = 0x03;
/// VF adds or removes a VLAN.
pub const VF_SET_VLAN: u32 = 0x04;
/// VF sets its maximum frame size.
pub const VF_SET_LPE: u32 = 0x05;
/// VF sets a unicast (MACVLAN) filter.
pub const VF_SET_MACVLAN: u32 = 0x06;
/// API negotiation.
pub const VF_API_NEGOTIATE: u32 = 0x08;
/// Queue configuration (API 1.1).
pub const VF_GET_QUEUES: u32 = 0x09;
/// RSS redirection table (API 1.2, 82599/X540).
pub const VF_GET_RETA: u32 = 0x0a;
/// RSS key (API 1.2, 82599/X540).
pub const VF_GET_RSS_KEY: u32 = 0x0b;
/// Multicast/promiscuous mode (API 1.2).
pub const VF_UPDATE_XCAST_MODE: u32 = 0x0c;
/// IPsec SA add (API 1.4).
pub const VF_IPSEC_ADD: u32 = 0x0d;
/// IPsec SA delete (API 1.4).
pub const VF_IPSEC_DEL: u32 = 0x0e;
/// Link state (API 1.2 in ixgbe's PF).
pub const VF_GET_LINK_STATE: u32 = 0x10;
/// Newer PFs' link-state query (E610 era); known, not modelled.
pub const VF_GET_PF_LINK_STATE: u32 = 0x11;
/// Newer PFs' feature negotiation (E610 era); known, not modelled.
pub const VF_FEATURES_NEGOTIATE: u32 = 0x12;
/// PF control message (ping).
pub const PF_CONTROL_MSG: u32 = 0x0100;

/// Mailbox API versions (enum ixgbe_pfvf_api_rev).
pub mod api {
    /// 1.0.
    pub const V10: u32 = 0;
    /// 2.0 (Solaris); not accepted.
    pub const V20: u32 = 1;
    /// 1.1.
    pub const V11: u32 = 2;
    /// 1.2.
    pub const V12: u32 = 3;
    /// 1.3.
    pub const V13: u32 = 4;
    /// 1.4.
    pub const V14: u32 = 5;
    /// 1.5.
    pub const V15: u32 = 6;
}

/// UPDATE_XCAST_MODE modes (enum ixgbevf_xcast_modes).
pub mod xcast {
    /// Broadcast only.
    pub const NONE: u32 = 0;
    /// The multicast list.
    pub const MULTI: u32 = 1;
    /// All multicast.
    pub const ALLMULTI: u32 = 2;
    /// Promiscuous.
    pub const PROMISC: u32 = 3;
}

// --- descriptors (defines.h, ixgbe_type.h) ---

/// Rx status: descriptor done.
pub const RXD_STAT_DD: u32 = 0x01;
/// Rx status: end of packet.
pub const RXD_STAT_EOP: u32 = 0x02;
/// Rx status: VLAN packet.
pub const RXD_STAT_VP: u32 = 0x08;
/// Rx status: UDP checksum calculated.
pub const RXD_STAT_UDPCS: u32 = 0x10;
/// Rx status: L4 checksum calculated.
pub const RXD_STAT_L4CS: u32 = 0x20;
/// Rx status: IPv4 checksum calculated.
pub const RXD_STAT_IPCS: u32 = 0x40;
/// Rx status: passed an inexact (hash) filter.
pub const RXD_STAT_PIF: u32 = 0x80;
/// Rx error: TCP/UDP checksum error.
pub const RXDADV_ERR_TCPE: u32 = 0x4000_0000;
/// Rx error: IPv4 checksum error.
pub const RXDADV_ERR_IPE: u32 = 0x8000_0000;
/// Rx packet type: IPv4.
pub const PKTTYPE_IPV4: u32 = 0x0010;
/// Rx packet type: IPv4 with options.
pub const PKTTYPE_IPV4_EX: u32 = 0x0020;
/// Rx packet type: IPv6.
pub const PKTTYPE_IPV6: u32 = 0x0040;
/// Rx packet type: TCP.
pub const PKTTYPE_TCP: u32 = 0x0100;
/// Rx packet type: UDP.
pub const PKTTYPE_UDP: u32 = 0x0200;
/// Rx packet type: SCTP.
pub const PKTTYPE_SCTP: u32 = 0x0400;
/// RSS type: TCP/IPv4.
pub const RSSTYPE_IPV4_TCP: u32 = 1;
/// RSS type: IPv4.
pub const RSSTYPE_IPV4: u32 = 2;
/// RSS type: TCP/IPv6.
pub const RSSTYPE_IPV6_TCP: u32 = 3;
/// RSS type: IPv6.
pub const RSSTYPE_IPV6: u32 = 5;
/// RSS type: UDP/IPv4.
pub const RSSTYPE_IPV4_UDP: u32 = 7;
/// RSS type: UDP/IPv6.
pub const RSSTYPE_IPV6_UDP: u32 = 8;

/// Tx cmd_type_len: descriptor type field.
pub const TXD_DTYP_MASK: u32 = 0x00F0_0000;
/// Tx descriptor type: advanced context.
pub const TXD_DTYP_CTXT: u32 = 0x0020_0000;
/// Tx descriptor type: advanced data.
pub const TXD_DTYP_DATA: u32 = 0x0030_0000;
/// Tx command: end of packet.
pub const TXD_CMD_EOP: u32 = 0x0100_0000;
/// Tx command: insert FCS.
pub const TXD_CMD_IFCS: u32 = 0x0200_0000;
/// Tx command: report status.
pub const TXD_CMD_RS: u32 = 0x0800_0000;
/// Tx command: extended (advanced) descriptor.
pub const TXD_CMD_DEXT: u32 = 0x2000_0000;
/// Tx command: insert VLAN.
pub const TXD_CMD_VLE: u32 = 0x4000_0000;
/// Tx command: TCP segmentation.
pub const TXD_CMD_TSE: u32 = 0x8000_0000;
/// Tx data length (DTALEN).
pub const TXD_DTALEN_MASK: u32 = 0xFFFF;
/// Tx write-back status: descriptor done.
pub const TXD_STAT_DD: u32 = 0x01;
/// olinfo: context index shift (bits 6:4).
pub const TXD_IDX_SHIFT: u32 = 4;
/// olinfo: POPTS IXSM (insert IPv4 checksum).
pub const TXD_POPTS_IXSM: u32 = 0x100;
/// olinfo: POPTS TXSM (insert L4 checksum).
pub const TXD_POPTS_TXSM: u32 = 0x200;
/// olinfo: PAYLEN shift.
pub const TXD_PAYLEN_SHIFT: u32 = 14;
/// Context TUCMD: IPv4.
pub const TUCMD_IPV4: u32 = 0x0000_0400;
/// Context TUCMD: L4 type field.
pub const TUCMD_L4T_MASK: u32 = 0x0000_1800;
/// Context TUCMD: L4 type UDP.
pub const TUCMD_L4T_UDP: u32 = 0x0000_0000;
/// Context TUCMD: L4 type TCP.
pub const TUCMD_L4T_TCP: u32 = 0x0000_0800;
/// Context TUCMD: L4 type SCTP.
pub const TUCMD_L4T_SCTP: u32 = 0x0000_1000;
/// Context: MACLEN shift (vlan_macip_lens bits 15:9).
pub const CTX_MACLEN_SHIFT: u32 = 9;
/// Context: VLAN shift (vlan_macip_lens bits 31:16).
pub const CTX_VLAN_SHIFT: u32 = 16;
/// Context: L4LEN shift (mss_l4len_idx bits 15:8).
pub const CTX_L4LEN_SHIFT: u32 = 8;
/// Context: MSS shift (mss_l4len_idx bits 31:16).
pub const CTX_MSS_SHIFT: u32 = 16;

/// Largest frame a VF may ask for (IXGBE_MAX_JUMBO_FRAME_SIZE).
pub const MAX_JUMBO_FRAME: u32 = 9728;
/// Smallest max frame SET_LPE accepts (ETH_MIN_MTU in ixgbe_set_vf_lpe).
pub const MIN_LPE: u32 = 68;
/// Standard max frame with FCS (ETH_FRAME_LEN + ETH_FCS_LEN).
pub const STD_MAX_FRAME: u32 = 1518;
/// Multicast hashes per VF (IXGBE_MAX_VF_MC_ENTRIES).
pub const MAX_VF_MC_ENTRIES: usize = 30;
