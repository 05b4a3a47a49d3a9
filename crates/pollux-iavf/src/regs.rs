//! Registers of the Adaptive Virtual Function as the VF sees them in its
//! BAR 0, and the bits of its descriptors.
//!
//! Sources, per group below: Linux `drivers/net/ethernet/intel/iavf/`
//! `iavf_register.h` (offsets and register bits), `iavf_adminq_cmd.h`
//! (admin queue descriptor and flags), `iavf_type.h` and DPDK
//! `drivers/common/iavf/iavf_type.h` (receive and transmit descriptor
//! layouts, packet types), `include/linux/avf/virtchnl.h` (reset states).
//! They encode Intel's Ethernet Adaptive Virtual Function Hardware
//! Architecture Specification; the register map is the same on X710/XL710,
//! X722 and E810 VFs.

/// Register access: a mapped BAR, or a test double that plays the device.
pub trait Regs {
    /// One 32-bit load.
    fn read32(&self, off: u32) -> u32;
    /// One 32-bit store.
    fn write32(&self, off: u32, val: u32);
}

impl Regs for pollux_vfio::Bar {
    #[inline(always)]
    fn read32(&self, off: u32) -> u32 {
        pollux_vfio::Bar::read32(self, off)
    }
    #[inline(always)]
    fn write32(&self, off: u32, val: u32) {
        pollux_vfio::Bar::write32(self, off, val)
    }
}

/// Smallest BAR 0 this driver accepts: the last register it may touch is
/// VFQF_HLUT(15) at 0xD03C (iavf_register.h); AVF BAR 0 is 64 KiB.
pub const BAR0_MIN_LEN: usize = 0x10000;

// --- Admin queue (iavf_register.h IAVF_VF_ATQ*1 / IAVF_VF_ARQ*1) ---

pub const VF_ATQBAL: u32 = 0x7C00;
pub const VF_ATQBAH: u32 = 0x7800;
pub const VF_ATQLEN: u32 = 0x6800;
pub const VF_ATQH: u32 = 0x6400;
pub const VF_ATQT: u32 = 0x8400;
pub const VF_ARQBAL: u32 = 0x6C00;
pub const VF_ARQBAH: u32 = 0x6000;
pub const VF_ARQLEN: u32 = 0x8000;
pub const VF_ARQH: u32 = 0x7400;
pub const VF_ARQT: u32 = 0x7000;

/// ATQLEN/ARQLEN.ENABLE, bit 31 (IAVF_VF_ATQLEN1_ATQENABLE_MASK). A PF
/// reset of the VF clears ARQLEN.ENABLE, which is how Linux's iavf watchdog
/// notices a reset it was not told about.
pub const AQLEN_ENABLE: u32 = 1 << 31;
/// ATQLEN/ARQLEN.CRIT, bit 30: the queue hit a critical error.
pub const AQLEN_CRIT: u32 = 1 << 30;
/// ATQLEN/ARQLEN.OVFL, bit 29: a message was lost for lack of buffers.
pub const AQLEN_OVFL: u32 = 1 << 29;
/// ATQLEN/ARQLEN.VFE, bit 28: VF error.
pub const AQLEN_VFE: u32 = 1 << 28;
/// Length field of ATQLEN/ARQLEN (entries), bits 9:0.
pub const AQLEN_LEN_MASK: u32 = 0x3FF;
/// ARQH head, bits 9:0 (IAVF_VF_ARQH1_ARQH_MASK).
pub const AQH_MASK: u32 = 0x3FF;

// --- Reset status (iavf_register.h IAVF_VFGEN_RSTAT; virtchnl.h
//     enum virtchnl_vfr_states) ---

pub const VFGEN_RSTAT: u32 = 0x8800;
pub const RSTAT_STATE_MASK: u32 = 0x3;
/// The PF started a reset of this VF.
pub const VFR_INPROGRESS: u32 = 0;
/// The reset is done.
pub const VFR_COMPLETED: u32 = 1;
/// The PF finished its side too: the VF may talk to it.
pub const VFR_VFACTIVE: u32 = 2;

/// Whether a VFGEN_RSTAT value says the VF may (re)initialise: COMPLETED
/// or VFACTIVE, as DPDK iavf_check_vf_reset_done and Linux
/// iavf_check_reset_complete accept. An all-ones read (a function that
/// is being reset reads 0xDEADBEEF or all ones, masked to 3) is not done.
pub const fn rstat_done(v: u32) -> bool {
    matches!(v & RSTAT_STATE_MASK, VFR_COMPLETED | VFR_VFACTIVE)
}

// --- Interrupts (iavf_register.h IAVF_VFINT_*). The driver polls; the
//     PF still requires every queue mapped to a vector. ---

pub const VFINT_DYN_CTL01: u32 = 0x5C00;
pub const fn vfint_dyn_ctln1(i: u32) -> u32 {
    0x3800 + 4 * i
}
pub const VFINT_ICR0_ENA1: u32 = 0x5000;
pub const DYN_CTL_INTENA: u32 = 1 << 0;
pub const DYN_CTL_ITR_INDX_SHIFT: u32 = 3;
pub const DYN_CTL_ITR_INDX_MASK: u32 = 0x3 << 3;
pub const DYN_CTL_INTERVAL_SHIFT: u32 = 5;
/// VFINT_DYN_CTLN1.WB_ON_ITR, bit 30: write descriptors back when the ITR
/// expires even with the interrupt disabled (the WB_ON_ITR capability).
pub const DYN_CTLN_WB_ON_ITR: u32 = 1 << 30;

// --- Queue tails (iavf_register.h IAVF_QRX_TAIL1, IAVF_QTX_TAIL1) ---

/// Queue pairs a VF may have without LARGE_NUM_QPAIRS (virtchnl.h: "Each
/// VF can have a maximum of sixteen queues").
pub const MAX_QUEUES: u16 = 16;

#[inline(always)]
pub const fn qrx_tail(q: u16) -> u32 {
    0x2000 + 4 * q as u32
}
#[inline(always)]
pub const fn qtx_tail(q: u16) -> u32 {
    4 * q as u32
}

// --- Admin queue descriptor (iavf_adminq_cmd.h struct iavf_aq_desc) ---

/// AQ descriptor flags.
pub const AQ_FLAG_DD: u16 = 0x0001;
pub const AQ_FLAG_CMP: u16 = 0x0002;
pub const AQ_FLAG_ERR: u16 = 0x0004;
pub const AQ_FLAG_VFE: u16 = 0x0008;
pub const AQ_FLAG_LB: u16 = 0x0200;
pub const AQ_FLAG_RD: u16 = 0x0400;
pub const AQ_FLAG_VFC: u16 = 0x0800;
pub const AQ_FLAG_BUF: u16 = 0x1000;
pub const AQ_FLAG_SI: u16 = 0x2000;
/// Buffers larger than this need AQ_FLAG_LB (iavf_type.h IAVF_AQ_LARGE_BUF).
pub const AQ_LARGE_BUF: usize = 512;
/// The only admin queue opcodes a VF uses: a message to the PF, and what
/// the VF receives from it (iavf_adminq_cmd.h iavf_aqc_opc_send_msg_to_pf,
/// _to_vf).
pub const AQC_OPC_SEND_MSG_TO_PF: u16 = 0x0801;
pub const AQC_OPC_SEND_MSG_TO_VF: u16 = 0x0802;
/// Admin queue entries and buffer size (Linux iavf.h IAVF_AQ_LEN 32,
/// IAVF_MAX_AQ_BUF_SIZE 4096).
pub const AQ_LEN: u16 = 32;
pub const AQ_BUF_SIZE: usize = 4096;

// --- Legacy 32-byte receive descriptor, write-back qword 1
//     (iavf_type.h enum iavf_rx_desc_status_bits, _error_bits,
//     IAVF_RXD_QW1_*) ---

pub const RXD_STATUS_DD: u64 = 1 << 0;
pub const RXD_STATUS_EOF: u64 = 1 << 1;
pub const RXD_STATUS_L2TAG1P: u64 = 1 << 2;
pub const RXD_STATUS_L3L4P: u64 = 1 << 3;
pub const RXD_STATUS_CRCP: u64 = 1 << 4;
pub const RXD_STATUS_IPV6EXADD: u64 = 1 << 15;
/// FLTSTAT, status bits 13:12: 3 means qword 0's high half is the RSS hash
/// (IAVF_RX_DESC_FLTSTAT_RSS_HASH).
pub const RXD_FLTSTAT_SHIFT: u32 = 12;
pub const RXD_FLTSTAT_MASK: u64 = 0x3 << 12;
pub const RXD_FLTSTAT_RSS_HASH: u64 = 3;
/// Error bits start at bit 19 (IAVF_RXD_QW1_ERROR_SHIFT).
pub const RXD_ERROR_SHIFT: u32 = 19;
pub const RXD_ERROR_RXE: u64 = 1 << 19;
pub const RXD_ERROR_HBO: u64 = 1 << 21;
pub const RXD_ERROR_IPE: u64 = 1 << 22;
pub const RXD_ERROR_L4E: u64 = 1 << 23;
pub const RXD_ERROR_EIPE: u64 = 1 << 24;
pub const RXD_ERROR_OVERSIZE: u64 = 1 << 25;
/// Packet type, bits 37:30 (IAVF_RXD_QW1_PTYPE_SHIFT, 8 bits).
pub const RXD_PTYPE_SHIFT: u32 = 30;
pub const RXD_PTYPE_MASK: u64 = 0xFF << 30;
/// Packet buffer length, bits 51:38 (IAVF_RXD_QW1_LENGTH_PBUF_SHIFT, 14 bits).
pub const RXD_LEN_PBUF_SHIFT: u32 = 38;
pub const RXD_LEN_PBUF_MASK: u64 = 0x3FFF << 38;

// --- Transmit data descriptor, qword 1 (iavf_type.h IAVF_TXD_QW1_*,
//     enum iavf_tx_desc_cmd_bits, enum iavf_tx_desc_length_fields) ---

pub const TXD_DTYPE_MASK: u64 = 0xF;
pub const TXD_DTYPE_DATA: u64 = 0x0;
pub const TXD_DTYPE_CONTEXT: u64 = 0x1;
/// What the device writes into DTYPE of a descriptor with RS set once it is
/// done with it (IAVF_TX_DESC_DTYPE_DESC_DONE).
pub const TXD_DTYPE_DESC_DONE: u64 = 0xF;
pub const TXD_CMD_SHIFT: u32 = 4;
pub const TXD_CMD_EOP: u64 = 0x0001;
pub const TXD_CMD_RS: u64 = 0x0002;
pub const TXD_CMD_ICRC: u64 = 0x0004;
pub const TXD_CMD_IL2TAG1: u64 = 0x0008;
pub const TXD_CMD_IIPT_IPV6: u64 = 0x0020;
pub const TXD_CMD_IIPT_IPV4: u64 = 0x0040;
pub const TXD_CMD_IIPT_IPV4_CSUM: u64 = 0x0060;
pub const TXD_CMD_L4T_TCP: u64 = 0x0100;
pub const TXD_CMD_L4T_SCTP: u64 = 0x0200;
pub const TXD_CMD_L4T_UDP: u64 = 0x0300;
pub const TXD_OFFSET_SHIFT: u32 = 16;
/// MACLEN in 2-byte words (7 bits at 0), IPLEN in 4-byte words (7 bits at
/// 7), L4LEN in 4-byte words (4 bits at 14), within the offset field.
pub const TXD_MACLEN_SHIFT: u32 = 0;
pub const TXD_IPLEN_SHIFT: u32 = 7;
pub const TXD_L4LEN_SHIFT: u32 = 14;
pub const TXD_BUF_SZ_SHIFT: u32 = 34;
pub const TXD_L2TAG1_SHIFT: u32 = 48;
/// Largest buffer one data descriptor carries: 14 bits of TX_BUF_SZ.
pub const TXD_MAX_BUF: usize = 0x3FFF;
/// Shortest frame the transmitter accepts (DPDK iavf_rxtx.h
/// IAVF_TX_MIN_PKT_LEN).
pub const TX_MIN_PKT_LEN: usize = 17;

// --- Packet types of the legacy descriptor (the decoded table in Linux
//     iavf_common.c iavf_ptype_lookup / DPDK iavf_common.c): the
//     non-tunnelled entries the driver reports. ---

pub const PTYPE_L2_MAC_PAY2: u8 = 1;
pub const PTYPE_L2_ARP: u8 = 11;
pub const PTYPE_IPV4_FRAG: u8 = 22;
pub const PTYPE_IPV4: u8 = 23;
pub const PTYPE_IPV4_UDP: u8 = 24;
pub const PTYPE_IPV4_TCP: u8 = 26;
pub const PTYPE_IPV4_SCTP: u8 = 27;
pub const PTYPE_IPV4_ICMP: u8 = 28;
pub const PTYPE_IPV6_FRAG: u8 = 88;
pub const PTYPE_IPV6: u8 = 89;
pub const PTYPE_IPV6_UDP: u8 = 90;
pub const PTYPE_IPV6_TCP: u8 = 92;
pub const PTYPE_IPV6_SCTP: u8 = 93;
pub const PTYPE_IPV6_ICMP: u8 = 94;

// --- PCI IDs (Linux iavf_devids.h / DPDK iavf_devids.h) ---

pub const VENDOR_INTEL: u16 = 0x8086;
/// Adaptive VF (E810 and X710 VFs with the AVF device ID).
pub const DEV_ID_ADAPTIVE_VF: u16 = 0x1889;
/// X710/XL710/XXV710 VF.
pub const DEV_ID_VF: u16 = 0x154C;
/// X722 VF.
pub const DEV_ID_X722_VF: u16 = 0x37CD;
