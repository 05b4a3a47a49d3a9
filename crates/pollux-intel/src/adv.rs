//! Bits of the advanced descriptors that the 82576 / I350 and the 82599 /
//! X540 / X550 share (DPDK `e1000_82575.h` / `e1000_defines.h` and
//! `ixgbe_type.h`, Linux igbvf and ixgbevf `defines.h` agree on these).
//! Where the families differ (receive error bits, the checksum status bits
//! read, RSS, check context) the value comes from the [`Family`].
//!
//! [`Family`]: crate::Family

/// Receive write-back status bits, low byte of status_error.
pub const RXD_STAT_DD: u32 = 0x01;
pub const RXD_STAT_EOP: u32 = 0x02;
pub const RXD_STAT_VP: u32 = 0x08;
pub const RXD_STAT_UDPCS: u32 = 0x10;
pub const RXD_STAT_L4CS: u32 = 0x20;
pub const RXD_STAT_IPCS: u32 = 0x40;
/// Loopback (I350: VLAN tag of loopback packets is big endian).
pub const RXD_STAT_LB: u32 = 0x0004_0000;

/// Packet type bits of pkt_info (E1000_RXDADV_PKTTYPE_*, IXGBE_RXDADV_PKTTYPE_*).
pub const PKTTYPE_IPV4: u16 = 0x0010;
pub const PKTTYPE_IPV4_EX: u16 = 0x0020;
pub const PKTTYPE_IPV6: u16 = 0x0040;
pub const PKTTYPE_IPV6_EX: u16 = 0x0080;
pub const PKTTYPE_TCP: u16 = 0x0100;
pub const PKTTYPE_UDP: u16 = 0x0200;
pub const PKTTYPE_SCTP: u16 = 0x0400;
/// The type field holds an EtherType filter index instead.
pub const PKTTYPE_ETQF: u16 = 0x8000;

/// Transmit descriptor command/type bits (E1000_ADVTXD_*, IXGBE_ADVTXD_*).
/// DTYP, the descriptor type field of cmd_type_len.
pub const TXD_DTYP_MASK: u32 = 0x00F0_0000;
pub const TXD_DTYP_CTXT: u32 = 0x0020_0000;
pub const TXD_DTYP_DATA: u32 = 0x0030_0000;
pub const TXD_DCMD_EOP: u32 = 0x0100_0000;
pub const TXD_DCMD_IFCS: u32 = 0x0200_0000;
pub const TXD_DCMD_RS: u32 = 0x0800_0000;
pub const TXD_DCMD_DEXT: u32 = 0x2000_0000;
pub const TXD_DCMD_VLE: u32 = 0x4000_0000;
/// Write-back status in olinfo_status: descriptor done.
pub const TXD_STAT_DD: u32 = 0x01;
/// olinfo_status fields: checksum requests and the payload length.
pub const TXD_POPTS_IXSM: u32 = 0x0100;
pub const TXD_POPTS_TXSM: u32 = 0x0200;
pub const TXD_PAYLEN_SHIFT: u32 = 14;
/// Context descriptor fields (E1000_ADVTXD_MACLEN_SHIFT, TUCMD_*; the same
/// in IXGBE_ADVTXD_*). The context descriptors themselves differ in one
/// word and stay with their PMDs.
pub const TXCTX_MACLEN_SHIFT: u32 = 9;
pub const TXCTX_VLAN_SHIFT: u32 = 16;
pub const TXCTX_TUCMD_IPV4: u32 = 0x0000_0400;
pub const TXCTX_TUCMD_L4T_UDP: u32 = 0x0000_0000;
pub const TXCTX_TUCMD_L4T_TCP: u32 = 0x0000_0800;
pub const TXCTX_L4LEN_SHIFT: u32 = 8;
