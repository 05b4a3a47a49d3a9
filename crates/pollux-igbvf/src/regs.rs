//! Registers of the 82576 / I350 virtual function, as the VF sees them in
//! its BAR 0.
//!
//! Sources, per group below: the Intel 82576 GbE Controller datasheet (its
//! VF register summary in the register chapter, and the PF/VF mailbox in the
//! virtualization chapter), the I350 datasheet (same VF layout), and the shared
//! Intel code as published in DPDK `drivers/net/intel/e1000/base/`
//! (`e1000_regs.h`, `e1000_defines.h`, `e1000_82575.h`, `e1000_mbx.h`) and
//! Linux `drivers/net/ethernet/intel/igbvf/{regs.h,mbx.h}`. QEMU's model
//! (`hw/net/igbvf.c`, `vf_to_pf_addr`) implements exactly these offsets.
//!
//! Reads that clear bits on read are kept apart in [`read_to_clear`]; the
//! mailbox driver is the only user and it keeps the cleared bits itself.

/// Register access: a mapped BAR, or a test double that plays the device
/// (shared with the other Intel VF PMDs).
pub use pollux_intel::Regs;

/// Smallest BAR 0 this driver accepts (the VF's is 16 KiB).
pub const BAR0_MIN_LEN: usize = 0x4000;

// --- General control and status (e1000_regs.h E1000_CTRL/E1000_STATUS;
//     in the VF, CTRL is VTCTRL) ---

/// VF control (VTCTRL). Only the reset bit has a meaning for a VF.
pub const CTRL: u32 = 0x0000;
/// Device status, shared with the PF (read only).
pub const STATUS: u32 = 0x0008;

/// CTRL.RST: VF software reset (e1000_defines.h E1000_CTRL_RST).
pub const CTRL_RST: u32 = 1 << 26;

/// STATUS.FD: full duplex (E1000_STATUS_FD).
pub const STATUS_FD: u32 = 1 << 0;
/// STATUS.LU: link up (E1000_STATUS_LU).
pub const STATUS_LU: u32 = 1 << 1;
/// STATUS speed field (E1000_STATUS_SPEED_100 = 0x40, _1000 = 0x80).
pub const STATUS_SPEED_100: u32 = 1 << 6;
pub const STATUS_SPEED_1000: u32 = 1 << 7;

// --- Interrupts (e1000_regs.h E1000_EIMS/EIMC). The driver polls; it only
//     masks everything. ---

/// Extended interrupt mask clear.
pub const EIMC: u32 = 0x1528;
/// The VF's three MSI-X causes (two queues and the mailbox).
pub const EIMC_ALL: u32 = 0x7;

// --- Queues (e1000_regs.h E1000_RDBAL(n) .. E1000_TXDCTL(n), n < 4: base +
//     n * 0x100). A VF has queues 0 and 1. ---

pub const fn rdbal(q: u16) -> u32 {
    0x2800 + q as u32 * 0x100
}
pub const fn rdbah(q: u16) -> u32 {
    0x2804 + q as u32 * 0x100
}
pub const fn rdlen(q: u16) -> u32 {
    0x2808 + q as u32 * 0x100
}
pub const fn srrctl(q: u16) -> u32 {
    0x280C + q as u32 * 0x100
}
pub const fn rdh(q: u16) -> u32 {
    0x2810 + q as u32 * 0x100
}
pub const fn rdt(q: u16) -> u32 {
    0x2818 + q as u32 * 0x100
}
pub const fn rxdctl(q: u16) -> u32 {
    0x2828 + q as u32 * 0x100
}
pub const fn tdbal(q: u16) -> u32 {
    0x3800 + q as u32 * 0x100
}
pub const fn tdbah(q: u16) -> u32 {
    0x3804 + q as u32 * 0x100
}
pub const fn tdlen(q: u16) -> u32 {
    0x3808 + q as u32 * 0x100
}
pub const fn tdh(q: u16) -> u32 {
    0x3810 + q as u32 * 0x100
}
pub const fn tdt(q: u16) -> u32 {
    0x3818 + q as u32 * 0x100
}
pub const fn txdctl(q: u16) -> u32 {
    0x3828 + q as u32 * 0x100
}

/// SRRCTL.BSIZEPACKET: receive buffer size in 1 KiB units, bits 6:0
/// (e1000_82575.h E1000_SRRCTL_BSIZEPKT_SHIFT = 10).
pub const SRRCTL_BSIZEPKT_SHIFT: u32 = 10;
pub const SRRCTL_BSIZEPKT_MASK: u32 = 0x7F;
/// SRRCTL.DESCTYPE = advanced, one buffer (E1000_SRRCTL_DESCTYPE_ADV_ONEBUF).
pub const SRRCTL_DESCTYPE_ADV_ONEBUF: u32 = 0x0200_0000;
/// SRRCTL.DROP_EN: drop when the ring is empty instead of stalling the
/// shared packet buffer for every pool (E1000_SRRCTL_DROP_EN).
pub const SRRCTL_DROP_EN: u32 = 0x8000_0000;

/// RXDCTL/TXDCTL.ENABLE (E1000_RXDCTL_QUEUE_ENABLE, E1000_TXDCTL_QUEUE_ENABLE).
pub const DCTL_ENABLE: u32 = 1 << 25;
/// Prefetch, host and write-back thresholds, at bits 0, 8 and 16.
pub const fn dctl_thresholds(p: u32, h: u32, w: u32) -> u32 {
    (p & 0x1F) | (h & 0x1F) << 8 | (w & 0x1F) << 16
}

// --- Statistics (e1000_regs.h E1000_VFGPRC ..). 32 bits, wrapping, not
//     cleared on read or by a VF reset. ---

/// Good packets received.
pub const VFGPRC: u32 = 0x0F10;
/// Good packets transmitted.
pub const VFGPTC: u32 = 0x0F14;
/// Good octets received (with FCS).
pub const VFGORC: u32 = 0x0F18;
/// Good octets transmitted (with FCS).
pub const VFGOTC: u32 = 0x0F34;
/// Multicast packets received.
pub const VFMPRC: u32 = 0x0F3C;
/// Good packets received by loopback from another pool.
pub const VFGPRLBC: u32 = 0x0F40;
/// Good packets transmitted to another pool by loopback.
pub const VFGPTLBC: u32 = 0x0F44;

// --- Mailbox (e1000_regs.h E1000_V2PMAILBOX(0) = 0xC40, E1000_VMBMEM(0) =
//     0x800; bits from e1000_mbx.h E1000_V2PMAILBOX_*) ---

/// VF-to-PF mailbox control. See [`read_to_clear`] before reading it.
pub const V2PMAILBOX: u32 = 0x0C40;
/// Mailbox memory: 16 words shared with the PF.
pub const VMBMEM: u32 = 0x0800;
/// Words in the mailbox memory (E1000_VFMAILBOX_SIZE).
pub const MBX_WORDS: usize = 16;

/// REQ: the VF posted a message (write).
pub const MBX_REQ: u32 = 0x01;
/// ACK: the VF read the PF's message (write).
pub const MBX_ACK: u32 = 0x02;
/// VFU: the VF owns the buffer.
pub const MBX_VFU: u32 = 0x04;
/// PFU: the PF owns the buffer.
pub const MBX_PFU: u32 = 0x08;
/// PFSTS: the PF wrote a message (read to clear).
pub const MBX_PFSTS: u32 = 0x10;
/// PFACK: the PF read our message (read to clear).
pub const MBX_PFACK: u32 = 0x20;
/// RSTI: the PF is resetting the shared resources.
pub const MBX_RSTI: u32 = 0x40;
/// RSTD: the PF finished a reset (read to clear).
pub const MBX_RSTD: u32 = 0x80;

/// Registers whose read has a side effect.
pub mod read_to_clear {
    /// Bits of V2PMAILBOX cleared by reading it (E1000_V2PMAILBOX_R2C_BITS):
    /// PFSTS, PFACK and RSTD. Whoever reads the register must remember them.
    pub const V2PMAILBOX_R2C: u32 = super::MBX_PFSTS | super::MBX_PFACK | super::MBX_RSTD;
}

// --- Mailbox messages (e1000_mbx.h; Linux igb PF igb_rcv_msg_from_vf) ---

pub const MSG_VF_RESET: u32 = 0x01;
pub const MSG_SET_MAC_ADDR: u32 = 0x02;
pub const MSG_SET_MULTICAST: u32 = 0x03;
pub const MSG_SET_VLAN: u32 = 0x04;
pub const MSG_SET_LPE: u32 = 0x05;
pub const MSG_SET_PROMISC: u32 = 0x06;
/// An unsolicited PF message (link change, reset notice).
pub const MSG_PF_CONTROL: u32 = 0x0100;
/// Message type bits of word 0.
pub const MSGTYPE_ACK: u32 = 0x8000_0000;
pub const MSGTYPE_NACK: u32 = 0x4000_0000;
/// Clear-to-send: the PF considers this VF reset and configurable.
pub const MSGTYPE_CTS: u32 = 0x2000_0000;
/// MSGINFO field: bits 23:16 of word 0.
pub const MSGINFO_SHIFT: u32 = 16;
pub const MSGINFO_MASK: u32 = 0xFF << MSGINFO_SHIFT;
/// SET_VLAN info: add (else remove).
pub const SET_VLAN_ADD: u32 = 1 << MSGINFO_SHIFT;
/// SET_PROMISC info bits.
pub const SET_PROMISC_UNICAST: u32 = 0x01 << MSGINFO_SHIFT;
pub const SET_PROMISC_MULTICAST: u32 = 0x02 << MSGINFO_SHIFT;
/// SET_MULTICAST: more than 30 addresses, go multicast promiscuous.
pub const SET_MULTICAST_OVERFLOW: u32 = 0x80 << MSGINFO_SHIFT;
/// Hashes one SET_MULTICAST message carries (16 bits each after word 0).
pub const MAX_MC_HASHES: usize = 30;

// --- Advanced descriptors (e1000_82575.h, e1000_defines.h) ---

/// The receive write-back status bits, the packet types and the transmit
/// descriptor bits that every Intel VF family shares (pollux-intel's).
pub use pollux_intel::adv::{
    PKTTYPE_ETQF, PKTTYPE_IPV4, PKTTYPE_IPV4_EX, PKTTYPE_IPV6, PKTTYPE_IPV6_EX, PKTTYPE_SCTP,
    PKTTYPE_TCP, PKTTYPE_UDP, RXD_STAT_DD, RXD_STAT_EOP, RXD_STAT_IPCS, RXD_STAT_L4CS, RXD_STAT_LB,
    RXD_STAT_UDPCS, RXD_STAT_VP, TXCTX_L4LEN_SHIFT, TXCTX_MACLEN_SHIFT, TXCTX_TUCMD_IPV4,
    TXCTX_TUCMD_L4T_TCP, TXCTX_TUCMD_L4T_UDP, TXCTX_VLAN_SHIFT, TXD_DCMD_DEXT, TXD_DCMD_EOP,
    TXD_DCMD_IFCS, TXD_DCMD_RS, TXD_DCMD_VLE, TXD_DTYP_CTXT, TXD_DTYP_DATA, TXD_DTYP_MASK,
    TXD_PAYLEN_SHIFT, TXD_POPTS_IXSM, TXD_POPTS_TXSM, TXD_STAT_DD,
};

/// Receive errors (E1000_RXDEXT_STATERR_*).
pub const RXD_ERR_TCPE: u32 = 0x2000_0000;
pub const RXD_ERR_IPE: u32 = 0x4000_0000;
/// CE | SE | SEQ | CXE | RXE: frame errors (E1000_RXDEXT_ERR_FRAME_ERR_MASK).
pub const RXD_ERR_FRAME: u32 = 0x0100_0000 | 0x0200_0000 | 0x0400_0000 | 0x1000_0000 | 0x8000_0000;

/// PCI device IDs (Linux igbvf `E1000_DEV_ID_82576_VF`, `E1000_DEV_ID_I350_VF`).
pub const VENDOR_INTEL: u16 = 0x8086;
pub const DEV_ID_82576_VF: u16 = 0x10CA;
pub const DEV_ID_82576_VF_HV: u16 = 0x152D;
pub const DEV_ID_I350_VF: u16 = 0x1520;
pub const DEV_ID_I350_VF_HV: u16 = 0x152F;
