//! Registers of the 82599 / X540 / X550 virtual function, as the VF sees
//! them in its BAR 0, and the bits of its descriptors.
//!
//! Sources, per group below: Linux `drivers/net/ethernet/intel/ixgbevf/`
//! `regs.h` (offsets), `defines.h` (register and descriptor bits), `mbx.h`
//! (mailbox), `ixgbevf.h` (RSS sizes, xcast modes); DPDK
//! `drivers/net/intel/ixgbe/base/ixgbe_type.h` for what those leave out
//! (packet types, the X550 link speed bit). They encode the 82599
//! datasheet's VF register chapter; X540 and X550 VFs keep the layout.
//!
//! Reads with side effects are kept apart in [`read_to_clear`]: only the
//! mailbox transport reads VFMAILBOX, and it keeps the cleared bits.

/// Register access: a mapped BAR, or a test double that plays the device
/// (shared with the other Intel VF PMDs).
pub use pollux_intel::Regs;

/// Smallest BAR 0 this driver accepts: the VF's register space ends with
/// VFRETA(15) at 0x323C (regs.h), inside the VF's 16 KiB BAR.
pub const BAR0_MIN_LEN: usize = 0x4000;

// --- General (regs.h IXGBE_VFCTRL, IXGBE_VFSTATUS, IXGBE_VFLINKS) ---

/// VF control; only the reset bit means anything to a VF.
pub const VFCTRL: u32 = 0x0000;
/// VF status (a read flushes posted writes: IXGBE_WRITE_FLUSH).
pub const VFSTATUS: u32 = 0x0008;
/// Link status as the PF's MAC sees it.
pub const VFLINKS: u32 = 0x0010;

/// VFCTRL.RST: VF software reset (defines.h IXGBE_CTRL_RST).
pub const CTRL_RST: u32 = 0x0400_0000;

/// VFLINKS.UP, bit 30 (defines.h IXGBE_LINKS_UP).
pub const LINKS_UP: u32 = 0x4000_0000;
/// VFLINKS speed, bits 29:28 (defines.h IXGBE_LINKS_SPEED_82599 and values).
pub const LINKS_SPEED_MASK: u32 = 0x3000_0000;
pub const LINKS_SPEED_10G: u32 = 0x3000_0000;
pub const LINKS_SPEED_1G: u32 = 0x2000_0000;
pub const LINKS_SPEED_100: u32 = 0x1000_0000;
/// X550: with 10G it means 2.5G, with 100M 5G; 00 is 10M (ixgbe_type.h
/// IXGBE_LINKS_SPEED_NON_STD, IXGBE_LINKS_SPEED_10_X550EM_A; DPDK
/// ixgbe_vf.c ixgbe_read_vflinks).
pub const LINKS_SPEED_NON_STD: u32 = 0x0800_0000;

// --- Interrupts (regs.h IXGBE_VTEI*). The driver polls; it masks all. ---

pub const VTEICR: u32 = 0x0100;
pub const VTEIMC: u32 = 0x010C;
pub const VTEIAC: u32 = 0x0110;
pub const VTEIAM: u32 = 0x0114;
/// The VF's three MSI-X causes (defines.h IXGBE_VF_IRQ_CLEAR_MASK).
pub const VF_IRQ_CLEAR_MASK: u32 = 7;

// --- Queues (regs.h IXGBE_VFRDBAL(x) ..: base + 0x40 * x, x < 8) ---

/// Queues a VF may have (defines.h IXGBE_VF_MAX_TX_QUEUES/_RX_QUEUES).
pub const MAX_QUEUES: u16 = 8;

pub const fn rdbal(q: u16) -> u32 {
    0x1000 + 0x40 * q as u32
}
pub const fn rdbah(q: u16) -> u32 {
    0x1004 + 0x40 * q as u32
}
pub const fn rdlen(q: u16) -> u32 {
    0x1008 + 0x40 * q as u32
}
pub const fn dca_rxctrl(q: u16) -> u32 {
    0x100C + 0x40 * q as u32
}
pub const fn rdh(q: u16) -> u32 {
    0x1010 + 0x40 * q as u32
}
pub const fn srrctl(q: u16) -> u32 {
    0x1014 + 0x40 * q as u32
}
pub const fn rdt(q: u16) -> u32 {
    0x1018 + 0x40 * q as u32
}
pub const fn rxdctl(q: u16) -> u32 {
    0x1028 + 0x40 * q as u32
}
pub const fn tdbal(q: u16) -> u32 {
    0x2000 + 0x40 * q as u32
}
pub const fn tdbah(q: u16) -> u32 {
    0x2004 + 0x40 * q as u32
}
pub const fn tdlen(q: u16) -> u32 {
    0x2008 + 0x40 * q as u32
}
pub const fn dca_txctrl(q: u16) -> u32 {
    0x200C + 0x40 * q as u32
}
pub const fn tdh(q: u16) -> u32 {
    0x2010 + 0x40 * q as u32
}
pub const fn tdt(q: u16) -> u32 {
    0x2018 + 0x40 * q as u32
}
pub const fn txdctl(q: u16) -> u32 {
    0x2028 + 0x40 * q as u32
}
pub const fn tdwbal(q: u16) -> u32 {
    0x2038 + 0x40 * q as u32
}
pub const fn tdwbah(q: u16) -> u32 {
    0x203C + 0x40 * q as u32
}

/// Packet split / pool receive type (regs.h IXGBE_VFPSRTYPE).
pub const VFPSRTYPE: u32 = 0x0300;
/// PSRTYPE header types, as Linux ixgbevf_setup_psrtype sets them
/// (defines.h IXGBE_PSRTYPE_*), and RQPL = 1 (bit 29) with more than one
/// rx queue ("PSRTYPE must be initialized in 82599").
pub const PSRTYPE_HEADERS: u32 = 0x10 | 0x20 | 0x100 | 0x200 | 0x1000;
pub const PSRTYPE_RQPL_2Q: u32 = 1 << 29;

/// SRRCTL.BSIZEPACKET in 1 KiB units, bits 6:0 (defines.h).
pub const SRRCTL_BSIZEPKT_SHIFT: u32 = 10;
pub const SRRCTL_BSIZEPKT_MASK: u32 = 0x7F;
/// SRRCTL.DESCTYPE: advanced, one buffer (defines.h).
pub const SRRCTL_DESCTYPE_ADV_ONEBUF: u32 = 0x0200_0000;
/// SRRCTL.DROP_EN: drop when the ring has no descriptor instead of holding
/// the packet buffer every pool shares (defines.h; Linux sets it).
pub const SRRCTL_DROP_EN: u32 = 0x1000_0000;

/// RXDCTL/TXDCTL.ENABLE (defines.h IXGBE_RXDCTL_ENABLE, IXGBE_TXDCTL_ENABLE).
pub const DCTL_ENABLE: u32 = 0x0200_0000;
/// RXDCTL.VME: strip the VLAN tag into the descriptor (defines.h).
pub const RXDCTL_VME: u32 = 0x4000_0000;
/// TXDCTL.SWFLSH: flush written-back descriptors (Linux writes it alone to
/// disable a tx queue before programming it).
pub const TXDCTL_SWFLSH: u32 = 0x0400_0000;
/// Prefetch, host and write-back thresholds (7 bits each at 0, 8, 16:
/// DPDK ixgbevf_dev_rxtx_start masks them with 0x7F).
pub const fn dctl_thresholds(p: u32, h: u32, w: u32) -> u32 {
    (p & 0x7F) | (h & 0x7F) << 8 | (w & 0x7F) << 16
}

/// DCA_TXCTRL: descriptor write-back relaxed ordering, off for in-order
/// completion bookkeeping (defines.h IXGBE_DCA_TXCTRL_DESC_WRO_EN; DPDK
/// clears it, "this hoses bookkeeping").
pub const DCA_TXCTRL_DESC_WRO_EN: u32 = 1 << 11;

// --- RSS of X550 VFs (regs.h IXGBE_VFMRQC .. IXGBE_VFRETA; ixgbevf.h sizes) ---

pub const VFMRQC: u32 = 0x3000;
pub const fn vfrssrk(i: u32) -> u32 {
    0x3100 + 4 * i
}
pub const fn vfreta(i: u32) -> u32 {
    0x3200 + 4 * i
}
pub const VFMRQC_RSSEN: u32 = 0x0000_0001;
pub const VFMRQC_RSS_FIELD_IPV4_TCP: u32 = 0x0001_0000;
pub const VFMRQC_RSS_FIELD_IPV4: u32 = 0x0002_0000;
pub const VFMRQC_RSS_FIELD_IPV6: u32 = 0x0010_0000;
pub const VFMRQC_RSS_FIELD_IPV6_TCP: u32 = 0x0020_0000;
/// Hash IPv4/UDP by ports too (ixgbe_type.h IXGBE_MRQC_RSS_FIELD_IPV4_UDP).
pub const VFMRQC_RSS_FIELD_IPV4_UDP: u32 = 0x0040_0000;
/// Hash IPv6/UDP by ports too (ixgbe_type.h IXGBE_MRQC_RSS_FIELD_IPV6_UDP).
pub const VFMRQC_RSS_FIELD_IPV6_UDP: u32 = 0x0080_0000;
/// Key registers (IXGBEVF_VFRSSRK_REGS) and bytes (IXGBEVF_RSS_HASH_KEY_SIZE).
pub const VFRSSRK_REGS: usize = 10;
pub const RSS_KEY_BYTES: usize = 40;
/// X550 VF RETA entries, one byte each, four per register
/// (IXGBEVF_X550_VFRETA_SIZE).
pub const X550_VFRETA_SIZE: usize = 64;
/// 82599/X540 RETA entries the PF reports with GET_RETA, 2 bits each, 16
/// per word (IXGBEVF_82599_RETA_SIZE).
pub const RETA_82599_SIZE: usize = 128;

// --- Statistics (regs.h IXGBE_VFGPRC ..): 32-bit packet counters, 36-bit
//     octet counters in LSB/MSB pairs; not cleared on read. ---

pub const VFGPRC: u32 = 0x101C;
pub const VFGPTC: u32 = 0x201C;
pub const VFGORC_LSB: u32 = 0x1020;
pub const VFGORC_MSB: u32 = 0x1024;
pub const VFGOTC_LSB: u32 = 0x2020;
pub const VFGOTC_MSB: u32 = 0x2024;
pub const VFMPRC: u32 = 0x1034;

// --- Mailbox (mbx.h IXGBE_VFMAILBOX, IXGBE_VFMBMEM and bits) ---

/// VF mailbox control. See [`read_to_clear`] before reading it.
pub const VFMAILBOX: u32 = 0x02FC;
/// Mailbox memory: 16 words shared with the PF.
pub const VFMBMEM: u32 = 0x0200;
/// Words in the mailbox memory (IXGBE_VFMAILBOX_SIZE).
pub const MBX_WORDS: usize = 16;

/// REQ: the VF posted a message.
pub const MBX_REQ: u32 = 0x01;
/// ACK: the VF read the PF's message.
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
    /// Bits of VFMAILBOX cleared by reading it (IXGBE_VFMAILBOX_R2C_BITS,
    /// 0xB0): PFSTS, PFACK and RSTD.
    pub const VFMAILBOX_R2C: u32 = super::MBX_PFSTS | super::MBX_PFACK | super::MBX_RSTD;
    const _: () = assert!(VFMAILBOX_R2C == 0xB0);
}

// --- Advanced descriptors (defines.h, IXGBE_ADVTXD_*) ---

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

/// IXGBE_RXDADV_ERR_TCPE / _IPE: checksum errors.
pub const RXD_ERR_TCPE: u32 = 0x4000_0000;
pub const RXD_ERR_IPE: u32 = 0x8000_0000;
/// CE | LE | PE | OSE | USE (IXGBE_RXDADV_ERR_FRAME_ERR_MASK).
pub const RXD_ERR_FRAME: u32 = 0x0100_0000 | 0x0200_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000;

/// RSS type in pkt_info bits 3:0 (IXGBE_RXDADV_RSSTYPE_MASK); 0: no hash.
pub const RSSTYPE_MASK: u16 = 0x000F;

/// olinfo_status: check context. Linux sets it on every data descriptor:
/// "Check Context must be set if Tx switch is enabled, which it always is
/// for case where virtual functions are running" (ixgbevf_tx_olinfo_status).
pub const TXD_CC: u32 = 0x0000_0080;

// --- PCI IDs (defines.h IXGBE_DEV_ID_*) ---

pub const VENDOR_INTEL: u16 = 0x8086;
pub const DEV_ID_82599_VF: u16 = 0x10ED;
pub const DEV_ID_82599_VF_HV: u16 = 0x152E;
pub const DEV_ID_X540_VF: u16 = 0x1515;
pub const DEV_ID_X540_VF_HV: u16 = 0x1530;
pub const DEV_ID_X550_VF: u16 = 0x1565;
pub const DEV_ID_X550_VF_HV: u16 = 0x1564;
pub const DEV_ID_X550EM_X_VF: u16 = 0x15A8;
pub const DEV_ID_X550EM_A_VF: u16 = 0x15C5;
