//! Register offsets and bits of the AVF VF register space (BAR 0), the
//! admin queue descriptor, and the receive and transmit descriptors.
//!
//! Sources: Linux `drivers/net/ethernet/intel/iavf/iavf_register.h`,
//! `iavf_adminq_cmd.h`, `iavf_type.h` (identical to DPDK
//! `drivers/common/iavf/iavf_register.h`, `iavf_adminq_cmd.h`,
//! `iavf_type.h`, which encode the "Ethernet Adaptive Virtual Function
//! Hardware Architecture Specification" rev 1.0).

/// Size of BAR 0: the register map ends with VFQF_HLUT(15) at 0xD03C; the
/// X710 VF's BAR 0 is 64 KiB.
pub const BAR0_SIZE: u64 = 0x1_0000;
/// Size of BAR 3, which holds the MSI-X table (offset 0) and PBA (offset
/// [`MSIX_PBA`]) as on the X710 VF.
pub const BAR3_SIZE: u64 = 0x4000;
/// MSI-X PBA offset in BAR 3.
pub const MSIX_PBA: u32 = 0x2000;

/// Queues a VF can have (virtchnl.h: "Each VF can have a maximum of sixteen
/// queues"; i40e `I40E_MAX_VF_QUEUES`).
pub const MAX_QUEUES: usize = 16;

/// QTX_TAIL1(q), q = 0..15.
pub const QTX_TAIL1: u64 = 0x0000;
/// QRX_TAIL1(q), q = 0..15.
pub const QRX_TAIL1: u64 = 0x2000;
/// VFINT_ITRN1(i, v) = 0x2800 + i * 64 + v * 4, i = 0..2, v = 0..15.
pub const VFINT_ITRN1: u64 = 0x2800;
/// VFINT_DYN_CTLN1(v), v = 0..15 (MSI-X vector v + 1).
pub const VFINT_DYN_CTLN1: u64 = 0x3800;
/// VFINT_ICR01: interrupt causes of vector 0 (read clears).
pub const VFINT_ICR01: u64 = 0x4800;
/// VFINT_ITR01(i), i = 0..2.
pub const VFINT_ITR01: u64 = 0x4C00;
/// VFINT_ICR0_ENA1: causes enabled on vector 0.
pub const VFINT_ICR0_ENA1: u64 = 0x5000;
/// VFINT_STAT_CTL01.
pub const VFINT_STAT_CTL01: u64 = 0x5400;
/// VFINT_DYN_CTL01: vector 0 control.
pub const VFINT_DYN_CTL01: u64 = 0x5C00;
/// Admin receive queue base, high half.
pub const VF_ARQBAH1: u64 = 0x6000;
/// Admin transmit queue head.
pub const VF_ATQH1: u64 = 0x6400;
/// Admin transmit queue length and enable.
pub const VF_ATQLEN1: u64 = 0x6800;
/// Admin receive queue base, low half.
pub const VF_ARQBAL1: u64 = 0x6C00;
/// Admin receive queue tail.
pub const VF_ARQT1: u64 = 0x7000;
/// Admin receive queue head.
pub const VF_ARQH1: u64 = 0x7400;
/// Admin transmit queue base, high half.
pub const VF_ATQBAH1: u64 = 0x7800;
/// Admin transmit queue base, low half.
pub const VF_ATQBAL1: u64 = 0x7C00;
/// Admin receive queue length and enable.
pub const VF_ARQLEN1: u64 = 0x8000;
/// Admin transmit queue tail.
pub const VF_ATQT1: u64 = 0x8400;
/// VFGEN_RSTAT: VF reset state.
pub const VFGEN_RSTAT: u64 = 0x8800;
/// VFQF_HENA(i), i = 0..1 (RSS_REG mode only).
pub const VFQF_HENA: u64 = 0xC400;
/// VFQF_HKEY(i), i = 0..12 (RSS_REG mode only).
pub const VFQF_HKEY: u64 = 0xCC00;
/// VFQF_HLUT(i), i = 0..15 (RSS_REG mode only).
pub const VFQF_HLUT: u64 = 0xD000;

/// Admin queue length registers: ring length (entries), bits 9:0.
pub const AQLEN_LEN_MASK: u32 = 0x3FF;
/// Admin queue length registers: VF error.
pub const AQLEN_VFE: u32 = 1 << 28;
/// Admin queue length registers: overflow.
pub const AQLEN_OVFL: u32 = 1 << 29;
/// Admin queue length registers: critical error.
pub const AQLEN_CRIT: u32 = 1 << 30;
/// Admin queue length registers: queue enable.
pub const AQLEN_ENABLE: u32 = 1 << 31;
/// Head/tail registers: bits 9:0.
pub const AQ_PTR_MASK: u32 = 0x3FF;

/// VFGEN_RSTAT states (virtchnl.h `enum virtchnl_vfr_states`).
pub const VFR_INPROGRESS: u32 = 0;
/// Reset completed by hardware.
pub const VFR_COMPLETED: u32 = 1;
/// The PF has set the VF up again.
pub const VFR_VFACTIVE: u32 = 2;

/// DYN_CTL: interrupt enable.
pub const DYN_INTENA: u32 = 1 << 0;
/// DYN_CTL: clear the pending bit.
pub const DYN_CLEARPBA: u32 = 1 << 1;
/// DYN_CTL: software interrupt trigger.
pub const DYN_SWINT_TRIG: u32 = 1 << 2;
/// DYN_CTLN: write back on ITR expiry without an interrupt.
pub const DYN_WB_ON_ITR: u32 = 1 << 30;
/// ICR01 / ICR0_ENA1: admin queue cause.
pub const ICR0_ADMINQ: u32 = 1 << 30;
/// ICR01: queue 0 cause (a queue mapped to vector 0).
pub const ICR0_QUEUE_0: u32 = 1 << 1;

/// Admin queue descriptor size.
pub const AQ_DESC_LEN: usize = 32;
/// AQ flag: descriptor done.
pub const AQ_FLAG_DD: u16 = 1 << 0;
/// AQ flag: completed.
pub const AQ_FLAG_CMP: u16 = 1 << 1;
/// AQ flag: error.
pub const AQ_FLAG_ERR: u16 = 1 << 2;
/// AQ flag: large buffer (> 512 bytes).
pub const AQ_FLAG_LB: u16 = 1 << 9;
/// AQ flag: the buffer is read by the device (indirect command data).
pub const AQ_FLAG_RD: u16 = 1 << 10;
/// AQ flag: an indirect buffer is attached.
pub const AQ_FLAG_BUF: u16 = 1 << 12;
/// AQ flag: silent (no interrupt on completion).
pub const AQ_FLAG_SI: u16 = 1 << 13;
/// AQ opcode: queue shutdown (a direct firmware command).
pub const AQC_QUEUE_SHUTDOWN: u16 = 0x0003;
/// AQ opcode: VF to PF message.
pub const AQC_SEND_MSG_TO_PF: u16 = 0x0801;
/// AQ opcode: PF to VF message.
pub const AQC_SEND_MSG_TO_VF: u16 = 0x0802;
/// AQ return code: function not implemented.
pub const AQ_RC_ENOSYS: u16 = 17;
/// AQ return code: argument too long.
pub const AQ_RC_E2BIG: u16 = 7;
/// AQ return code: bad address.
pub const AQ_RC_EFAULT: u16 = 11;
/// Largest admin queue buffer (`IAVF_MAX_AQ_BUF_SIZE`, DPDK
/// `IAVF_AQ_BUF_SZ`).
pub const AQ_MAX_BUF: usize = 4096;

/// Transmit descriptor: data.
pub const TX_DTYPE_DATA: u64 = 0x0;
/// Transmit descriptor: context.
pub const TX_DTYPE_CONTEXT: u64 = 0x1;
/// Transmit descriptor: written back as done.
pub const TX_DTYPE_DESC_DONE: u64 = 0xF;
/// Data descriptor command (bits 13:4 of qword 1): end of packet.
pub const TX_CMD_EOP: u64 = 0x0001;
/// Report status (write back DESC_DONE).
pub const TX_CMD_RS: u64 = 0x0002;
/// Insert CRC (always done by the model's wire).
pub const TX_CMD_ICRC: u64 = 0x0004;
/// Insert L2TAG1 as an 802.1Q tag.
pub const TX_CMD_IL2TAG1: u64 = 0x0008;
/// IIPT field (2 bits at 0x0020).
pub const TX_CMD_IIPT_MASK: u64 = 0x0060;
/// IIPT: IPv6.
pub const TX_CMD_IIPT_IPV6: u64 = 0x0020;
/// IIPT: IPv4 without checksum offload.
pub const TX_CMD_IIPT_IPV4: u64 = 0x0040;
/// IIPT: IPv4 with header checksum offload.
pub const TX_CMD_IIPT_IPV4_CSUM: u64 = 0x0060;
/// L4T field (2 bits at 0x0100).
pub const TX_CMD_L4T_MASK: u64 = 0x0300;
/// L4T: TCP.
pub const TX_CMD_L4T_TCP: u64 = 0x0100;
/// L4T: SCTP.
pub const TX_CMD_L4T_SCTP: u64 = 0x0200;
/// L4T: UDP.
pub const TX_CMD_L4T_UDP: u64 = 0x0300;
/// Context descriptor command: TSO.
pub const TX_CTX_TSO: u64 = 0x01;
/// Context descriptor command: insert L2TAG2.
pub const TX_CTX_IL2TAG2: u64 = 0x04;

/// Receive descriptor status bits (qword 1).
pub const RX_STATUS_DD: u64 = 1 << 0;
/// End of frame.
pub const RX_STATUS_EOF: u64 = 1 << 1;
/// L2TAG1 holds a stripped VLAN tag.
pub const RX_STATUS_L2TAG1P: u64 = 1 << 2;
/// L3/L4 checksums were checked.
pub const RX_STATUS_L3L4P: u64 = 1 << 3;
/// UMBCAST field (2 bits at bit 9): 0 unicast, 1 multicast, 2 broadcast.
pub const RX_STATUS_UMBCAST_SHIFT: u32 = 9;
/// FLTSTAT field (2 bits at bit 12); 3 = RSS hash in qword 0.
pub const RX_STATUS_FLTSTAT_RSS: u64 = 3 << 12;
/// Error field shift (qword 1).
pub const RX_ERROR_SHIFT: u32 = 19;
/// IPv4 header checksum error.
pub const RX_ERROR_IPE: u64 = 1 << 3;
/// L4 checksum error.
pub const RX_ERROR_L4E: u64 = 1 << 4;
/// Packet type shift (8 bits).
pub const RX_PTYPE_SHIFT: u32 = 30;
/// Packet buffer length shift (14 bits).
pub const RX_LEN_SHIFT: u32 = 38;
