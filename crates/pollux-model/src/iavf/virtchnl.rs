//! The PF side of virtchnl, the VF-PF protocol carried by the admin queue,
//! as an I/O-free state machine: [`Pf::handle`] takes one message (opcode
//! and payload) and returns the reply, what the device must do (enable
//! queues, reset the VF) and, when the VF broke the protocol, why.
//!
//! Message layouts, opcodes, capability flags and status codes are those
//! of Linux `include/linux/avf/virtchnl.h` (= DPDK
//! `drivers/common/iavf/virtchnl.h`); sizes are checked exactly as its
//! `virtchnl_vc_validate_vf_msg` does, including the legacy sizes of the
//! variable-length messages (`*_LEGACY_SIZEOF`: one element of padding,
//! e.g. CONFIG_VSI_QUEUES is 72 + 64 n bytes). Answers follow the i40e PF
//! (`drivers/net/ethernet/intel/i40e/i40e_virtchnl_pf.c`) and, where i40e
//! is lax, ice (`ice_virtchnl.c`): a message failing validation gets
//! ERR_PARAM, a known opcode the PF does not implement gets
//! ERR_NOT_SUPPORTED, and configuration before GET_VF_RESOURCES gets
//! ERR_PARAM (ice's `ICE_VF_STATE_ACTIVE` check).
//!
//! Messages are read through checked views ([`View`] and the typed views
//! built on it): every field read is bounds-checked against the payload,
//! and the payload is never copied.

use std::collections::BTreeSet;

/// virtchnl opcodes (virtchnl.h `enum virtchnl_ops`).
pub mod op {
    /// Version negotiation.
    pub const VERSION: u32 = 1;
    /// VF reset request (no reply).
    pub const RESET_VF: u32 = 2;
    /// Resources and capabilities.
    pub const GET_VF_RESOURCES: u32 = 3;
    /// Deprecated single Tx queue configuration.
    pub const CONFIG_TX_QUEUE: u32 = 4;
    /// Deprecated single Rx queue configuration.
    pub const CONFIG_RX_QUEUE: u32 = 5;
    /// Queue pair configuration.
    pub const CONFIG_VSI_QUEUES: u32 = 6;
    /// Vector to queue map.
    pub const CONFIG_IRQ_MAP: u32 = 7;
    /// Enable queues.
    pub const ENABLE_QUEUES: u32 = 8;
    /// Disable queues.
    pub const DISABLE_QUEUES: u32 = 9;
    /// Add MAC filters.
    pub const ADD_ETH_ADDR: u32 = 10;
    /// Remove MAC filters.
    pub const DEL_ETH_ADDR: u32 = 11;
    /// Add VLAN filters.
    pub const ADD_VLAN: u32 = 12;
    /// Remove VLAN filters.
    pub const DEL_VLAN: u32 = 13;
    /// Promiscuous modes.
    pub const CONFIG_PROMISCUOUS_MODE: u32 = 14;
    /// VSI statistics.
    pub const GET_STATS: u32 = 15;
    /// PF to VF event.
    pub const EVENT: u32 = 17;
    /// RSS hash function.
    pub const CONFIG_RSS_HFUNC: u32 = 18;
    /// RDMA message.
    pub const RDMA: u32 = 20;
    /// RDMA vector map.
    pub const CONFIG_RDMA_IRQ_MAP: u32 = 21;
    /// RDMA vector map release.
    pub const RELEASE_RDMA_IRQ_MAP: u32 = 22;
    /// RSS key.
    pub const CONFIG_RSS_KEY: u32 = 23;
    /// RSS lookup table.
    pub const CONFIG_RSS_LUT: u32 = 24;
    /// Hashable packet types.
    pub const GET_RSS_HENA_CAPS: u32 = 25;
    /// Set hashed packet types.
    pub const SET_RSS_HENA: u32 = 26;
    /// VLAN stripping on.
    pub const ENABLE_VLAN_STRIPPING: u32 = 27;
    /// VLAN stripping off.
    pub const DISABLE_VLAN_STRIPPING: u32 = 28;
    /// Ask for another number of queue pairs.
    pub const REQUEST_QUEUES: u32 = 29;
    /// ADq channels on.
    pub const ENABLE_CHANNELS: u32 = 30;
    /// ADq channels off.
    pub const DISABLE_CHANNELS: u32 = 31;
    /// Cloud filter add.
    pub const ADD_CLOUD_FILTER: u32 = 32;
    /// Cloud filter delete.
    pub const DEL_CLOUD_FILTER: u32 = 33;
    /// Flexible descriptor ids.
    pub const GET_SUPPORTED_RXDIDS: u32 = 44;
    /// Advanced RSS add.
    pub const ADD_RSS_CFG: u32 = 45;
    /// Advanced RSS delete.
    pub const DEL_RSS_CFG: u32 = 46;
    /// Flow director add.
    pub const ADD_FDIR_FILTER: u32 = 47;
    /// Flow director delete.
    pub const DEL_FDIR_FILTER: u32 = 48;
    /// VLAN v2 capabilities.
    pub const GET_OFFLOAD_VLAN_V2_CAPS: u32 = 51;
    /// VLAN v2 filter add.
    pub const ADD_VLAN_V2: u32 = 52;
    /// VLAN v2 filter delete.
    pub const DEL_VLAN_V2: u32 = 53;
    /// VLAN v2 stripping on.
    pub const ENABLE_VLAN_STRIPPING_V2: u32 = 54;
    /// VLAN v2 stripping off.
    pub const DISABLE_VLAN_STRIPPING_V2: u32 = 55;
    /// VLAN v2 insertion on.
    pub const ENABLE_VLAN_INSERTION_V2: u32 = 56;
    /// VLAN v2 insertion off.
    pub const DISABLE_VLAN_INSERTION_V2: u32 = 57;
    /// PTP capabilities.
    pub const PTP_GET_CAPS: u32 = 60;
    /// PTP time.
    pub const PTP_GET_TIME: u32 = 61;
    /// QoS capabilities.
    pub const GET_QOS_CAPS: u32 = 66;
    /// Queue bandwidth.
    pub const CONFIG_QUEUE_BW: u32 = 112;
    /// Quanta.
    pub const CONFIG_QUANTA: u32 = 113;

    /// A printable name for counters and logs.
    pub fn name(op: u32) -> &'static str {
        match op {
            VERSION => "version",
            RESET_VF => "reset_vf",
            GET_VF_RESOURCES => "get_vf_resources",
            CONFIG_TX_QUEUE => "config_tx_queue",
            CONFIG_RX_QUEUE => "config_rx_queue",
            CONFIG_VSI_QUEUES => "config_vsi_queues",
            CONFIG_IRQ_MAP => "config_irq_map",
            ENABLE_QUEUES => "enable_queues",
            DISABLE_QUEUES => "disable_queues",
            ADD_ETH_ADDR => "add_eth_addr",
            DEL_ETH_ADDR => "del_eth_addr",
            ADD_VLAN => "add_vlan",
            DEL_VLAN => "del_vlan",
            CONFIG_PROMISCUOUS_MODE => "config_promiscuous_mode",
            GET_STATS => "get_stats",
            EVENT => "event",
            CONFIG_RSS_KEY => "config_rss_key",
            CONFIG_RSS_LUT => "config_rss_lut",
            GET_RSS_HENA_CAPS => "get_rss_hena_caps",
            SET_RSS_HENA => "set_rss_hena",
            ENABLE_VLAN_STRIPPING => "enable_vlan_stripping",
            DISABLE_VLAN_STRIPPING => "disable_vlan_stripping",
            REQUEST_QUEUES => "request_queues",
            GET_OFFLOAD_VLAN_V2_CAPS => "get_offload_vlan_v2_caps",
            _ => "other",
        }
    }
}

/// virtchnl status codes (`enum virtchnl_status_code`).
pub mod status {
    /// Success.
    pub const SUCCESS: i32 = 0;
    /// Bad parameter (also what i40e/ice answer to a malformed message).
    pub const ERR_PARAM: i32 = -5;
    /// Size mismatch (what `virtchnl_vc_validate_vf_msg` returns; the PFs
    /// answer ERR_PARAM for it).
    pub const ERR_OPCODE_MISMATCH: i32 = -38;
    /// Not supported.
    pub const ERR_NOT_SUPPORTED: i32 = -64;
}

/// Capability flags (`VIRTCHNL_VF_OFFLOAD_*`, `VIRTCHNL_VF_CAP_*`).
pub mod cap {
    /// Base L2 offloads (checksum, TSO).
    pub const L2: u32 = 1 << 0;
    /// RSS through the admin queue (not offered).
    pub const RSS_AQ: u32 = 1 << 3;
    /// RSS through VF registers (not offered).
    pub const RSS_REG: u32 = 1 << 4;
    /// Descriptor write-back on ITR expiry without interrupts.
    pub const WB_ON_ITR: u32 = 1 << 5;
    /// REQUEST_QUEUES.
    pub const REQ_QUEUES: u32 = 1 << 6;
    /// Link speed in Mbps in LINK_CHANGE events.
    pub const ADV_LINK_SPEED: u32 = 1 << 7;
    /// VLAN v2 (not offered).
    pub const VLAN_V2: u32 = 1 << 15;
    /// VLAN filtering and stripping (v1).
    pub const VLAN: u32 = 1 << 16;
    /// Polling mode.
    pub const RX_POLLING: u32 = 1 << 17;
    /// RSS configured through virtchnl messages to the PF.
    pub const RSS_PF: u32 = 1 << 19;
    /// Flexible Rx descriptors (not offered).
    pub const RX_FLEX_DESC: u32 = 1 << 26;
    /// What this model offers; a VF gets the intersection with what it
    /// asks for (L2 always, as i40e does).
    pub const OFFERED: u32 =
        L2 | RSS_PF | VLAN | RX_POLLING | WB_ON_ITR | REQ_QUEUES | ADV_LINK_SPEED;
    /// What a 1.0 VF gets (i40e: L2 | RSS_REG | VLAN for VF_IS_V10; the
    /// model does not offer RSS_REG, so L2 | VLAN).
    pub const V10: u32 = L2 | VLAN;
}

/// PF events (`enum virtchnl_event_codes`).
pub mod event {
    /// Link state change.
    pub const LINK_CHANGE: i32 = 1;
    /// The PF is about to reset the VF.
    pub const RESET_IMPENDING: i32 = 2;
    /// Severity of informational events.
    pub const SEVERITY_INFO: i32 = 0;
    /// Severity of RESET_IMPENDING.
    pub const SEVERITY_CERTAIN_DOOM: i32 = 255;
    /// Legacy link speed enum: 10 Gb/s (`VIRTCHNL_LINK_SPEED_10GB`).
    pub const LINK_SPEED_10GB: u32 = 1 << 3;
}

/// The VSI type of a VF's LAN VSI (`VIRTCHNL_VSI_SRIOV`).
pub const VSI_SRIOV: u32 = 6;
/// The VSI id the model gives its one VSI.
pub const VSI_ID: u16 = 3;
/// RSS key size (i40e `I40E_HKEY_ARRAY_SIZE` = 13 registers of 4 bytes).
pub const RSS_KEY_SIZE: usize = 52;
/// RSS LUT size (i40e `I40E_VF_HLUT_ARRAY_SIZE` = 16 registers of 4).
pub const RSS_LUT_SIZE: usize = 64;
/// Largest frame, told to the VF as `max_mtu` (i40e `I40E_MAX_RXBUFFER`
/// 9728 less Ethernet header, FCS and one VLAN tag).
pub const MAX_MTU: u16 = 9706;
/// Ring length limit (i40e `I40E_MAX_TX_QLEN`/`I40E_MAX_RX_QLEN`).
pub const MAX_RING_LEN: u32 = 0x1FE0;
/// MAC filters an untrusted VF may hold, default and broadcast included
/// (i40e `I40E_VC_MAX_MAC_ADDR_PER_VF` = 16 + 1 + 1).
pub const MAX_MACS_UNTRUSTED: usize = 18;
/// MAC filters a trusted VF may hold (the model's own bound).
pub const MAX_MACS_TRUSTED: usize = 256;
/// VLAN filters an untrusted VF may hold (i40e `I40E_VC_MAX_VLAN_PER_VF`).
pub const MAX_VLANS_UNTRUSTED: usize = 16;
/// Size of `struct virtchnl_eth_stats` (12 u64 counters).
pub const ETH_STATS_LEN: usize = 96;

/// Hashable packet classifier types (i40e `enum i40e_filter_pctype`, DPDK
/// `IAVF_FILTER_PCTYPE_*`).
pub mod pctype {
    /// IPv4 UDP, unicast (expanded set).
    pub const IPV4_UNICAST_UDP: u32 = 29;
    /// IPv4 UDP, multicast (expanded set).
    pub const IPV4_MULTICAST_UDP: u32 = 30;
    /// IPv4 UDP.
    pub const IPV4_UDP: u32 = 31;
    /// IPv4 TCP SYN without ACK (expanded set).
    pub const IPV4_TCP_SYN_NO_ACK: u32 = 32;
    /// IPv4 TCP.
    pub const IPV4_TCP: u32 = 33;
    /// IPv4 SCTP.
    pub const IPV4_SCTP: u32 = 34;
    /// IPv4 other.
    pub const IPV4_OTHER: u32 = 35;
    /// IPv4 fragment.
    pub const FRAG_IPV4: u32 = 36;
    /// IPv6 UDP, unicast (expanded set).
    pub const IPV6_UNICAST_UDP: u32 = 39;
    /// IPv6 UDP, multicast (expanded set).
    pub const IPV6_MULTICAST_UDP: u32 = 40;
    /// IPv6 UDP.
    pub const IPV6_UDP: u32 = 41;
    /// IPv6 TCP SYN without ACK (expanded set).
    pub const IPV6_TCP_SYN_NO_ACK: u32 = 42;
    /// IPv6 TCP.
    pub const IPV6_TCP: u32 = 43;
    /// IPv6 SCTP.
    pub const IPV6_SCTP: u32 = 44;
    /// IPv6 other.
    pub const IPV6_OTHER: u32 = 45;
    /// IPv6 fragment.
    pub const FRAG_IPV6: u32 = 46;
    /// L2 payload.
    pub const L2_PAYLOAD: u32 = 63;

    /// i40e `I40E_DEFAULT_RSS_HENA_EXPANDED`: what GET_RSS_HENA_CAPS
    /// answers and what HENA is after a reset.
    pub const DEFAULT_HENA: u64 = (1 << IPV4_UDP)
        | (1 << IPV4_SCTP)
        | (1 << IPV4_TCP)
        | (1 << IPV4_OTHER)
        | (1 << FRAG_IPV4)
        | (1 << IPV6_UDP)
        | (1 << IPV6_TCP)
        | (1 << IPV6_SCTP)
        | (1 << IPV6_OTHER)
        | (1 << FRAG_IPV6)
        | (1 << L2_PAYLOAD)
        | (1 << IPV4_TCP_SYN_NO_ACK)
        | (1 << IPV4_UNICAST_UDP)
        | (1 << IPV4_MULTICAST_UDP)
        | (1 << IPV6_TCP_SYN_NO_ACK)
        | (1 << IPV6_UNICAST_UDP)
        | (1 << IPV6_MULTICAST_UDP);
}

/// A checked, zero-copy view of a message: every read is bounds-checked
/// and reads past the end yield 0 (messages are size-validated first, so
/// that only happens for fields a short legacy message does not have).
#[derive(Debug, Clone, Copy)]
pub struct View<'a>(pub &'a [u8]);

impl<'a> View<'a> {
    /// Length of the message.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// `n` bytes at `off`, clamped to the message.
    pub fn bytes(&self, off: usize, n: usize) -> &'a [u8] {
        let start = off.min(self.0.len());
        let end = off.saturating_add(n).min(self.0.len());
        &self.0[start..end]
    }
    fn le<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut b = [0u8; N];
        let src = self.bytes(off, N);
        b[..src.len()].copy_from_slice(src);
        b
    }
    /// u8 at `off`.
    pub fn u8(&self, off: usize) -> u8 {
        self.0.get(off).copied().unwrap_or(0)
    }
    /// Little-endian u16 at `off`.
    pub fn u16(&self, off: usize) -> u16 {
        u16::from_le_bytes(self.le(off))
    }
    /// Little-endian u32 at `off`.
    pub fn u32(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.le(off))
    }
    /// Little-endian u64 at `off`.
    pub fn u64(&self, off: usize) -> u64 {
        u64::from_le_bytes(self.le(off))
    }
    /// The sub-view of `n` bytes at `off`.
    pub fn sub(&self, off: usize, n: usize) -> View<'a> {
        View(self.bytes(off, n))
    }
}

/// `struct virtchnl_txq_info` (24 bytes).
#[derive(Debug, Clone, Copy)]
pub struct TxqInfo<'a>(View<'a>);
impl TxqInfo<'_> {
    /// VSI id.
    pub fn vsi_id(&self) -> u16 {
        self.0.u16(0)
    }
    /// Queue id.
    pub fn queue_id(&self) -> u16 {
        self.0.u16(2)
    }
    /// Descriptors (multiple of 8).
    pub fn ring_len(&self) -> u16 {
        self.0.u16(4)
    }
    /// Ring base.
    pub fn dma_ring_addr(&self) -> u64 {
        self.0.u64(8)
    }
}

/// `struct virtchnl_rxq_info` (40 bytes).
#[derive(Debug, Clone, Copy)]
pub struct RxqInfo<'a>(View<'a>);
impl RxqInfo<'_> {
    /// VSI id.
    pub fn vsi_id(&self) -> u16 {
        self.0.u16(0)
    }
    /// Queue id.
    pub fn queue_id(&self) -> u16 {
        self.0.u16(2)
    }
    /// Descriptors (multiple of 32).
    pub fn ring_len(&self) -> u32 {
        self.0.u32(4)
    }
    /// Header buffer size (header split only).
    pub fn hdr_size(&self) -> u16 {
        self.0.u16(8)
    }
    /// Header split (deprecated).
    pub fn splithdr_enabled(&self) -> u16 {
        self.0.u16(10)
    }
    /// Data buffer size.
    pub fn databuffer_size(&self) -> u32 {
        self.0.u32(12)
    }
    /// Largest frame.
    pub fn max_pkt_size(&self) -> u32 {
        self.0.u32(16)
    }
    /// Descriptor id (flexible descriptors only).
    pub fn rxdid(&self) -> u8 {
        self.0.u8(21)
    }
    /// Ring base.
    pub fn dma_ring_addr(&self) -> u64 {
        self.0.u64(24)
    }
}

/// `struct virtchnl_vsi_queue_config_info`: 8-byte header, then
/// `num_queue_pairs` × 64-byte `virtchnl_queue_pair_info`.
#[derive(Debug, Clone, Copy)]
pub struct VsiQueueConfig<'a>(View<'a>);
impl<'a> VsiQueueConfig<'a> {
    /// VSI id.
    pub fn vsi_id(&self) -> u16 {
        self.0.u16(0)
    }
    /// Pairs that follow.
    pub fn num_queue_pairs(&self) -> u16 {
        self.0.u16(2)
    }
    /// Pair `i`: its Tx and Rx parts.
    pub fn pair(&self, i: usize) -> (TxqInfo<'a>, RxqInfo<'a>) {
        let at = 8 + 64 * i;
        (
            TxqInfo(self.0.sub(at, 24)),
            RxqInfo(self.0.sub(at + 24, 40)),
        )
    }
}

/// `struct virtchnl_irq_map_info`: u16 count, then 12-byte
/// `virtchnl_vector_map`s.
#[derive(Debug, Clone, Copy)]
pub struct IrqMapInfo<'a>(View<'a>);
impl IrqMapInfo<'_> {
    /// Maps that follow.
    pub fn num_vectors(&self) -> u16 {
        self.0.u16(0)
    }
    /// Map `i`: (vsi_id, vector_id, rxq_map, txq_map).
    pub fn map(&self, i: usize) -> (u16, u16, u16, u16) {
        let at = 2 + 12 * i;
        (
            self.0.u16(at),
            self.0.u16(at + 2),
            self.0.u16(at + 4),
            self.0.u16(at + 6),
        )
    }
}

/// `struct virtchnl_queue_select` (12 bytes).
#[derive(Debug, Clone, Copy)]
pub struct QueueSelect<'a>(View<'a>);
impl QueueSelect<'_> {
    /// VSI id.
    pub fn vsi_id(&self) -> u16 {
        self.0.u16(0)
    }
    /// Rx queue bitmap.
    pub fn rx_queues(&self) -> u32 {
        self.0.u32(4)
    }
    /// Tx queue bitmap.
    pub fn tx_queues(&self) -> u32 {
        self.0.u32(8)
    }
}

/// `struct virtchnl_ether_addr_list`: 4-byte header, 8-byte entries.
#[derive(Debug, Clone, Copy)]
pub struct EtherAddrList<'a>(View<'a>);
impl EtherAddrList<'_> {
    /// VSI id.
    pub fn vsi_id(&self) -> u16 {
        self.0.u16(0)
    }
    /// Entries.
    pub fn num_elements(&self) -> u16 {
        self.0.u16(2)
    }
    /// Address `i`.
    pub fn addr(&self, i: usize) -> [u8; 6] {
        let mut a = [0u8; 6];
        let b = self.0.bytes(4 + 8 * i, 6);
        a[..b.len()].copy_from_slice(b);
        a
    }
}

/// `struct virtchnl_vlan_filter_list`: 4-byte header, u16 ids.
#[derive(Debug, Clone, Copy)]
pub struct VlanFilterList<'a>(View<'a>);
impl VlanFilterList<'_> {
    /// VSI id.
    pub fn vsi_id(&self) -> u16 {
        self.0.u16(0)
    }
    /// Entries.
    pub fn num_elements(&self) -> u16 {
        self.0.u16(2)
    }
    /// VLAN id `i`.
    pub fn vlan(&self, i: usize) -> u16 {
        self.0.u16(4 + 2 * i)
    }
}

/// Why a message is malformed: the status to answer and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// What `virtchnl_vc_validate_vf_msg` returns.
    pub status: i32,
    /// The expected length, when the length was wrong.
    pub expected: Option<u32>,
}

/// `virtchnl_vc_validate_vf_msg` of virtchnl.h: the exact length each
/// opcode must have, for a VF that negotiated `version`.
pub fn validate(version: (u32, u32), opcode: u32, msg: View<'_>) -> Result<(), Invalid> {
    let len = msg.len() as u32;
    let mut bad_format = false;
    // Legacy size of a list with `n` elements: header + (n + pad) elements.
    let list = |legacy: u32, hdr: u32, elem: u32, n: u32| hdr + elem * n + (legacy - hdr);
    let valid: u32 = match opcode {
        op::VERSION => 8,
        op::RESET_VF => 0,
        op::GET_VF_RESOURCES => {
            if version == (1, 1) {
                4
            } else {
                0
            }
        }
        op::CONFIG_TX_QUEUE => 24,
        op::CONFIG_RX_QUEUE => 40,
        op::CONFIG_VSI_QUEUES => {
            if len >= 72 {
                let n = msg.u16(2) as u32;
                bad_format = n == 0;
                list(72, 8, 64, n)
            } else {
                72
            }
        }
        op::CONFIG_IRQ_MAP => {
            if len >= 14 {
                let n = msg.u16(0) as u32;
                bad_format = n == 0;
                list(14, 2, 12, n)
            } else {
                14
            }
        }
        op::ENABLE_QUEUES | op::DISABLE_QUEUES | op::GET_STATS => 12,
        op::ADD_ETH_ADDR | op::DEL_ETH_ADDR => {
            if len >= 12 {
                let n = msg.u16(2) as u32;
                bad_format = n == 0;
                list(12, 4, 8, n)
            } else {
                12
            }
        }
        op::ADD_VLAN | op::DEL_VLAN => {
            if len >= 6 {
                let n = msg.u16(2) as u32;
                bad_format = n == 0;
                list(6, 4, 2, n)
            } else {
                6
            }
        }
        op::CONFIG_PROMISCUOUS_MODE => 4,
        op::RDMA => {
            bad_format = len == 0;
            len
        }
        op::RELEASE_RDMA_IRQ_MAP => 0,
        op::CONFIG_RDMA_IRQ_MAP => {
            if len >= 16 {
                msg.u32(0).saturating_mul(12).saturating_add(16)
            } else {
                16
            }
        }
        // __vss_byone: 4 + n + (6 - 1 - 4).
        op::CONFIG_RSS_KEY | op::CONFIG_RSS_LUT => {
            if len >= 6 {
                5 + msg.u16(2) as u32
            } else {
                6
            }
        }
        op::CONFIG_RSS_HFUNC => 8,
        op::GET_RSS_HENA_CAPS => 0,
        op::SET_RSS_HENA => 8,
        op::ENABLE_VLAN_STRIPPING | op::DISABLE_VLAN_STRIPPING => 0,
        op::REQUEST_QUEUES => 2,
        op::ENABLE_CHANNELS => {
            if len >= 24 {
                let n = msg.u32(0);
                bad_format = n == 0;
                8u32.saturating_add(16u32.saturating_mul(n))
                    .saturating_add(16)
            } else {
                24
            }
        }
        op::DISABLE_CHANNELS => 0,
        op::ADD_CLOUD_FILTER | op::DEL_CLOUD_FILTER => 272,
        op::GET_SUPPORTED_RXDIDS => 0,
        op::ADD_RSS_CFG | op::DEL_RSS_CFG => 2444,
        op::ADD_FDIR_FILTER => 2616,
        op::DEL_FDIR_FILTER => 12,
        op::GET_OFFLOAD_VLAN_V2_CAPS => 0,
        // __vss_byelem: 8 + 32 (n - 1) + 32.
        op::ADD_VLAN_V2 | op::DEL_VLAN_V2 => {
            if len >= 40 {
                let n = msg.u16(2) as u32;
                bad_format = n == 0;
                8 + 32 * n
            } else {
                40
            }
        }
        op::ENABLE_VLAN_STRIPPING_V2
        | op::DISABLE_VLAN_STRIPPING_V2
        | op::ENABLE_VLAN_INSERTION_V2
        | op::DISABLE_VLAN_INSERTION_V2 => 16,
        op::GET_QOS_CAPS => 0,
        op::CONFIG_QUEUE_BW => {
            if len >= 16 {
                let n = msg.u16(2) as u32;
                bad_format = n == 0;
                4 + 12 * n
            } else {
                16
            }
        }
        op::CONFIG_QUANTA => {
            if len >= 12 {
                bad_format = msg.u16(0) == 0 || msg.u16(10) == 0;
            }
            12
        }
        op::PTP_GET_CAPS => 48,
        op::PTP_GET_TIME => 16,
        // EVENT, UNKNOWN and anything else: "always errors coming from
        // the VF".
        _ => {
            return Err(Invalid {
                status: status::ERR_PARAM,
                expected: None,
            })
        }
    };
    if bad_format || valid != len {
        return Err(Invalid {
            status: status::ERR_OPCODE_MISMATCH,
            expected: Some(valid),
        });
    }
    Ok(())
}

/// A reply or event for the VF's admin receive queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// virtchnl opcode (cookie_high).
    pub opcode: u32,
    /// virtchnl status (cookie_low).
    pub status: i32,
    /// Payload.
    pub data: Vec<u8>,
}

/// What the device must do after a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Start these Rx and Tx queues (bitmaps) from ring head 0.
    EnableQueues {
        /// Rx queues.
        rx: u32,
        /// Tx queues.
        tx: u32,
    },
    /// Stop these queues.
    DisableQueues {
        /// Rx queues.
        rx: u32,
        /// Tx queues.
        tx: u32,
    },
    /// Reset the VF now (RESET_VF: no event).
    ResetNow,
    /// Tell the VF a reset is coming (RESET_IMPENDING), then reset it
    /// (REQUEST_QUEUES granted).
    ResetNotify,
    /// Send a LINK_CHANGE event after the reply.
    LinkEvent,
}

/// The result of one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The reply, if the PF sends one.
    pub reply: Option<Message>,
    /// What the device must do, in order, after the reply.
    pub effects: Vec<Effect>,
    /// A protocol violation by the VF: (what, why).
    pub violation: Option<(String, String)>,
}

/// One queue pair's configuration from CONFIG_VSI_QUEUES.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCfg {
    /// Tx ring base (128-byte aligned).
    pub tx_ring: u64,
    /// Tx descriptors (0: not configured).
    pub tx_len: u16,
    /// Rx ring base.
    pub rx_ring: u64,
    /// Rx descriptors (0: not configured).
    pub rx_len: u16,
    /// Rx data buffer size, in the 128-byte units the hardware keeps
    /// (`rx_ctx.dbuff = databuffer_size >> 7`), in bytes.
    pub rx_buf: u32,
    /// Largest frame received.
    pub rx_max_frame: u32,
    /// Rx descriptor size: 32 (i40e: `rx_ctx.dsize = 1` always) or 16.
    pub rx_desc_len: u8,
}

/// Device statistics as `struct virtchnl_eth_stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EthStats {
    /// Received bytes.
    pub rx_bytes: u64,
    /// Received unicast frames.
    pub rx_unicast: u64,
    /// Received multicast frames.
    pub rx_multicast: u64,
    /// Received broadcast frames.
    pub rx_broadcast: u64,
    /// Received frames dropped for want of descriptors or queues.
    pub rx_discards: u64,
    /// Received frames of no known protocol.
    pub rx_unknown_protocol: u64,
    /// Sent bytes.
    pub tx_bytes: u64,
    /// Sent unicast frames.
    pub tx_unicast: u64,
    /// Sent multicast frames.
    pub tx_multicast: u64,
    /// Sent broadcast frames.
    pub tx_broadcast: u64,
    /// Frames not sent (spoof check).
    pub tx_discards: u64,
    /// Malformed transmit requests.
    pub tx_errors: u64,
}

impl EthStats {
    /// The 96-byte wire form.
    pub fn to_bytes(self) -> Vec<u8> {
        [
            self.rx_bytes,
            self.rx_unicast,
            self.rx_multicast,
            self.rx_broadcast,
            self.rx_discards,
            self.rx_unknown_protocol,
            self.tx_bytes,
            self.tx_unicast,
            self.tx_multicast,
            self.tx_broadcast,
            self.tx_discards,
            self.tx_errors,
        ]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
    }
}

/// The PF's fixed view of this VF.
#[derive(Debug, Clone)]
pub struct PfConfig {
    /// The VF's MAC address (administratively set).
    pub mac: [u8; 6],
    /// Queue pairs at start.
    pub queues: u16,
    /// MSI-X vectors of the function (vector 0 included).
    pub max_vectors: u16,
    /// Trusted VF: promiscuous modes and more filters allowed.
    pub trusted: bool,
    /// Link speed in Mb/s reported in LINK_CHANGE events.
    pub speed_mbps: u32,
}

/// The PF side of virtchnl for one VF.
#[derive(Debug, Clone)]
pub struct Pf {
    cfg: PfConfig,
    /// Version the VF announced (kept across VF resets, as i40e keeps
    /// `vf->vf_ver`).
    pub version: (u32, u32),
    /// Capabilities granted at the last GET_VF_RESOURCES.
    pub caps: u32,
    /// GET_VF_RESOURCES answered since the last reset (ice
    /// `ICE_VF_STATE_ACTIVE`).
    pub active: bool,
    /// Queue pairs of the VSI.
    pub num_qps: u16,
    /// Queue pairs asked for with REQUEST_QUEUES, applied at the reset.
    pub req_qps: Option<u16>,
    /// Per queue pair configuration.
    pub queue: [QueueCfg; crate::iavf::regs::MAX_QUEUES],
    /// MSI-X vector of each Rx queue.
    pub rx_vector: [Option<u16>; crate::iavf::regs::MAX_QUEUES],
    /// MSI-X vector of each Tx queue.
    pub tx_vector: [Option<u16>; crate::iavf::regs::MAX_QUEUES],
    /// MAC filters besides the default MAC and broadcast.
    pub macs: BTreeSet<[u8; 6]>,
    /// VLAN filters (VLAN 0 is implicit).
    pub vlans: BTreeSet<u16>,
    /// VLAN stripping into L2TAG1.
    pub strip: bool,
    /// Unicast promiscuous (trusted VFs only).
    pub promisc_uc: bool,
    /// Multicast promiscuous (trusted VFs only).
    pub promisc_mc: bool,
    /// RSS key.
    pub rss_key: [u8; RSS_KEY_SIZE],
    /// RSS lookup table.
    pub rss_lut: [u8; RSS_LUT_SIZE],
    /// Hashed packet classifier types.
    pub hena: u64,
}

fn is_multicast(a: &[u8; 6]) -> bool {
    a[0] & 1 != 0
}

impl Pf {
    /// A PF with the VF freshly reset.
    /// `ip link set PF vf N trust on|off` at run time.
    pub fn set_trusted(&mut self, on: bool) {
        self.cfg.trusted = on;
    }

    pub fn new(cfg: PfConfig) -> Self {
        let q = cfg.queues.clamp(1, crate::iavf::regs::MAX_QUEUES as u16);
        let mut pf = Pf {
            cfg,
            version: (0, 0),
            caps: 0,
            active: false,
            num_qps: q,
            req_qps: None,
            queue: Default::default(),
            rx_vector: [None; crate::iavf::regs::MAX_QUEUES],
            tx_vector: [None; crate::iavf::regs::MAX_QUEUES],
            macs: BTreeSet::new(),
            vlans: BTreeSet::new(),
            strip: true,
            promisc_uc: false,
            promisc_mc: false,
            rss_key: [0; RSS_KEY_SIZE],
            rss_lut: [0; RSS_LUT_SIZE],
            hena: pctype::DEFAULT_HENA,
        };
        pf.reset_vf();
        pf
    }

    /// The configuration.
    pub fn config(&self) -> &PfConfig {
        &self.cfg
    }

    /// What a VF reset leaves (virtchnl.h, RESET_VF: queues stopped and
    /// unconfigured, filters other than the default MAC cleared; i40e
    /// rebuilds the VSI, so RSS, stripping and promiscuous modes return to
    /// their defaults: key and LUT zero, "RSS effectively disabled until
    /// set up by the VF"). The negotiated version survives; a pending
    /// REQUEST_QUEUES takes effect.
    pub fn reset_vf(&mut self) {
        if let Some(n) = self.req_qps.take() {
            self.num_qps = n.clamp(1, crate::iavf::regs::MAX_QUEUES as u16);
        }
        self.active = false;
        self.caps = 0;
        self.queue = Default::default();
        self.rx_vector = [None; crate::iavf::regs::MAX_QUEUES];
        self.tx_vector = [None; crate::iavf::regs::MAX_QUEUES];
        self.macs.clear();
        self.vlans.clear();
        self.strip = true;
        self.promisc_uc = false;
        self.promisc_mc = false;
        self.rss_key = [0; RSS_KEY_SIZE];
        self.rss_lut = [0; RSS_LUT_SIZE];
        self.hena = pctype::DEFAULT_HENA;
    }

    /// Whether `mac` is one of the VF's unicast addresses (the default MAC
    /// or an added unicast filter): what the spoof check lets out.
    pub fn owns_unicast(&self, mac: &[u8; 6]) -> bool {
        *mac == self.cfg.mac || (!is_multicast(mac) && self.macs.contains(mac))
    }

    /// The LINK_CHANGE event for `up`, in the format negotiated
    /// (`link_event_adv` with Mb/s under ADV_LINK_SPEED, else the legacy
    /// speed enum), as i40e's `i40e_set_vf_link_state` builds it.
    pub fn link_event(&self, up: bool) -> Message {
        let mut d = vec![0u8; 16];
        d[0..4].copy_from_slice(&event::LINK_CHANGE.to_le_bytes());
        let speed = if !up {
            0
        } else if self.caps & cap::ADV_LINK_SPEED != 0 {
            self.cfg.speed_mbps
        } else {
            event::LINK_SPEED_10GB
        };
        d[4..8].copy_from_slice(&speed.to_le_bytes());
        d[8] = up as u8;
        d[12..16].copy_from_slice(&event::SEVERITY_INFO.to_le_bytes());
        Message {
            opcode: op::EVENT,
            status: status::SUCCESS,
            data: d,
        }
    }

    /// The RESET_IMPENDING event (i40e `i40e_vc_notify_vf_reset`).
    pub fn reset_event() -> Message {
        let mut d = vec![0u8; 16];
        d[0..4].copy_from_slice(&event::RESET_IMPENDING.to_le_bytes());
        d[12..16].copy_from_slice(&event::SEVERITY_CERTAIN_DOOM.to_le_bytes());
        Message {
            opcode: op::EVENT,
            status: status::SUCCESS,
            data: d,
        }
    }

    /// Handles one message from the VF.
    pub fn handle(&mut self, opcode: u32, msg: &[u8], stats: &EthStats) -> Outcome {
        let m = View(msg);
        let mut out = Outcome::default();
        if let Err(inv) = validate(self.version, opcode, m) {
            let why = match inv.expected {
                Some(n) => format!(
                    "{} bytes where virtchnl_vc_validate_vf_msg (virtchnl.h) requires {n} for this \
                     opcode (or a zero element count)",
                    msg.len()
                ),
                None => "not an opcode a VF may send (virtchnl.h virtchnl_vc_validate_vf_msg: \
                         EVENT, UNKNOWN and unknown opcodes are always errors from the VF)"
                    .to_string(),
            };
            out.violation = Some((
                format!(
                    "virtchnl opcode {opcode} ({}), {} bytes",
                    op::name(opcode),
                    msg.len()
                ),
                why,
            ));
            out.reply = Some(reply(opcode, status::ERR_PARAM));
            return out;
        }
        let needs_active = !matches!(opcode, op::VERSION | op::RESET_VF | op::GET_VF_RESOURCES);
        if needs_active && !self.active {
            out.violation = Some((
                format!("virtchnl {} before GET_VF_RESOURCES", op::name(opcode)),
                "virtchnl.h: the VF must get its resources before configuring queues, \
                 interrupts and filters (ice refuses: ICE_VF_STATE_ACTIVE)"
                    .into(),
            ));
            out.reply = Some(reply(opcode, status::ERR_PARAM));
            return out;
        }
        let st = match opcode {
            op::VERSION => {
                self.version = (m.u32(0), m.u32(4));
                let minor = if self.version == (1, 0) { 0 } else { 1 };
                let mut d = 1u32.to_le_bytes().to_vec();
                d.extend_from_slice(&(minor as u32).to_le_bytes());
                out.reply = Some(Message {
                    opcode,
                    status: status::SUCCESS,
                    data: d,
                });
                return out;
            }
            op::RESET_VF => {
                out.effects.push(Effect::ResetNow);
                return out;
            }
            op::GET_VF_RESOURCES => {
                let asked = if self.version == (1, 1) {
                    m.u32(0)
                } else {
                    cap::V10
                };
                self.caps = (asked & cap::OFFERED) | cap::L2;
                self.active = true;
                out.reply = Some(Message {
                    opcode,
                    status: status::SUCCESS,
                    data: self.resources(),
                });
                out.effects.push(Effect::LinkEvent);
                return out;
            }
            op::CONFIG_VSI_QUEUES => self.config_queues(VsiQueueConfig(m), &mut out),
            op::CONFIG_IRQ_MAP => self.config_irq_map(IrqMapInfo(m), &mut out),
            op::ENABLE_QUEUES | op::DISABLE_QUEUES => {
                let q = QueueSelect(m);
                let (rx, tx) = (q.rx_queues(), q.tx_queues());
                let all = (1u32 << self.num_qps) - 1;
                if !self.vsi_ok(q.vsi_id(), &mut out) {
                    status::ERR_PARAM
                } else if (rx == 0 && tx == 0) || (rx | tx) & !all != 0 {
                    out.violation = Some((
                        format!("virtchnl {} rx {rx:#x} tx {tx:#x}", op::name(opcode)),
                        format!(
                            "queue bitmaps must name some of the VSI's {} queues (i40e \
                             i40e_vc_isvalid_vqs_bitmaps, ice ice_vc_isvalid_q_id)",
                            self.num_qps
                        ),
                    ));
                    status::ERR_PARAM
                } else if opcode == op::ENABLE_QUEUES {
                    out.effects.push(Effect::EnableQueues { rx, tx });
                    out.effects.push(Effect::LinkEvent);
                    status::SUCCESS
                } else {
                    out.effects.push(Effect::DisableQueues { rx, tx });
                    status::SUCCESS
                }
            }
            op::ADD_ETH_ADDR => self.add_macs(EtherAddrList(m), &mut out),
            op::DEL_ETH_ADDR => self.del_macs(EtherAddrList(m), &mut out),
            op::ADD_VLAN | op::DEL_VLAN => self.vlan_filters(opcode, VlanFilterList(m), &mut out),
            op::CONFIG_PROMISCUOUS_MODE => {
                let flags = m.u16(2);
                if !self.vsi_ok(m.u16(0), &mut out) {
                    status::ERR_PARAM
                } else if !self.cfg.trusted {
                    // i40e: "Lie to the VF on purpose": success, no effect.
                    status::SUCCESS
                } else if flags > 3 {
                    status::ERR_PARAM
                } else {
                    self.promisc_uc = flags & 1 != 0;
                    self.promisc_mc = flags & 2 != 0;
                    status::SUCCESS
                }
            }
            op::GET_STATS => {
                if self.vsi_ok(m.u16(0), &mut out) {
                    out.reply = Some(Message {
                        opcode,
                        status: status::SUCCESS,
                        data: stats.to_bytes(),
                    });
                    return out;
                }
                status::ERR_PARAM
            }
            op::CONFIG_RSS_KEY => {
                let n = m.u16(2) as usize;
                if !self.vsi_ok(m.u16(0), &mut out) {
                    status::ERR_PARAM
                } else if n != RSS_KEY_SIZE {
                    out.violation = Some((
                        format!("virtchnl config_rss_key of {n} bytes"),
                        format!("the key must be the rss_key_size the PF gave ({RSS_KEY_SIZE}; i40e checks)"),
                    ));
                    status::ERR_PARAM
                } else {
                    self.rss_key.copy_from_slice(m.bytes(4, RSS_KEY_SIZE));
                    status::SUCCESS
                }
            }
            op::CONFIG_RSS_LUT => {
                let n = m.u16(2) as usize;
                let lut = m.bytes(4, n);
                if !self.vsi_ok(m.u16(0), &mut out) {
                    status::ERR_PARAM
                } else if n != RSS_LUT_SIZE || lut.iter().any(|&q| q as u16 >= self.num_qps) {
                    out.violation = Some((
                        format!("virtchnl config_rss_lut of {n} entries"),
                        format!(
                            "the LUT must have rss_lut_size ({RSS_LUT_SIZE}) entries, each below \
                             the {} queue pairs (i40e i40e_vc_config_rss_lut)",
                            self.num_qps
                        ),
                    ));
                    status::ERR_PARAM
                } else {
                    self.rss_lut.copy_from_slice(lut);
                    status::SUCCESS
                }
            }
            op::GET_RSS_HENA_CAPS => {
                out.reply = Some(Message {
                    opcode,
                    status: status::SUCCESS,
                    data: pctype::DEFAULT_HENA.to_le_bytes().to_vec(),
                });
                return out;
            }
            op::SET_RSS_HENA => {
                self.hena = m.u64(0);
                status::SUCCESS
            }
            op::ENABLE_VLAN_STRIPPING | op::DISABLE_VLAN_STRIPPING => {
                self.strip = opcode == op::ENABLE_VLAN_STRIPPING;
                status::SUCCESS
            }
            op::REQUEST_QUEUES => {
                let n = m.u16(0);
                let max = crate::iavf::regs::MAX_QUEUES as u16;
                if n == 0 {
                    out.violation = Some((
                        "virtchnl request_queues of 0 pairs".into(),
                        "a VF needs at least one queue pair (ice ice_vc_request_qs_msg)".into(),
                    ));
                    status::ERR_PARAM
                } else if n > max {
                    // i40e: answer with the most it can give, no reset.
                    out.reply = Some(Message {
                        opcode,
                        status: status::SUCCESS,
                        data: max.to_le_bytes().to_vec(),
                    });
                    return out;
                } else {
                    // i40e: granted; the VF is reset with notice, no reply.
                    self.req_qps = Some(n);
                    out.effects.push(Effect::ResetNotify);
                    return out;
                }
            }
            _ => {
                out.violation = Some((
                    format!("virtchnl opcode {opcode}"),
                    format!(
                        "an opcode whose capability was not negotiated (granted caps {:#x}); the \
                         PF answers VIRTCHNL_STATUS_ERR_NOT_SUPPORTED",
                        self.caps
                    ),
                ));
                status::ERR_NOT_SUPPORTED
            }
        };
        if out.reply.is_none() {
            out.reply = Some(reply(opcode, st));
        }
        out
    }

    fn vsi_ok(&self, vsi: u16, out: &mut Outcome) -> bool {
        if vsi == VSI_ID {
            return true;
        }
        out.violation = Some((
            format!("virtchnl vsi_id {vsi}"),
            format!("not the VSI the PF gave in GET_VF_RESOURCES ({VSI_ID})"),
        ));
        false
    }

    /// `struct virtchnl_vf_resource` with one `virtchnl_vsi_resource` (36
    /// bytes).
    fn resources(&self) -> Vec<u8> {
        let mut d = Vec::with_capacity(36);
        d.extend_from_slice(&1u16.to_le_bytes()); // num_vsis
        d.extend_from_slice(&self.num_qps.to_le_bytes());
        d.extend_from_slice(&self.cfg.max_vectors.to_le_bytes());
        d.extend_from_slice(&MAX_MTU.to_le_bytes());
        d.extend_from_slice(&self.caps.to_le_bytes());
        d.extend_from_slice(&(RSS_KEY_SIZE as u32).to_le_bytes());
        d.extend_from_slice(&(RSS_LUT_SIZE as u32).to_le_bytes());
        d.extend_from_slice(&VSI_ID.to_le_bytes());
        d.extend_from_slice(&self.num_qps.to_le_bytes());
        d.extend_from_slice(&VSI_SRIOV.to_le_bytes());
        d.extend_from_slice(&0u16.to_le_bytes()); // qset_handle
        d.extend_from_slice(&self.cfg.mac);
        d
    }

    fn config_queues(&mut self, q: VsiQueueConfig<'_>, out: &mut Outcome) -> i32 {
        if !self.vsi_ok(q.vsi_id(), out) {
            return status::ERR_PARAM;
        }
        let n = q.num_queue_pairs() as usize;
        let mut bad = |what: String, why: &str| {
            out.violation = Some((what, why.to_string()));
            status::ERR_PARAM
        };
        if n > self.num_qps as usize {
            return bad(
                format!("virtchnl config_vsi_queues of {n} pairs"),
                "more pairs than the VSI has (virtchnl.h: an error is returned and no queues are configured)",
            );
        }
        let mut new = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = q.pair(i);
            let id = tx.queue_id();
            let what = |f: &str| format!("virtchnl config_vsi_queues pair {i} (queue {id}): {f}");
            if id >= self.num_qps
                || tx.vsi_id() != VSI_ID
                || rx.vsi_id() != VSI_ID
                || rx.queue_id() != id
            {
                return bad(
                    what("ids"),
                    "queue ids must be below the VSI's queue pairs, and vsi_id and queue_id the \
                     same for both queues (virtchnl.h; i40e i40e_vc_config_queues_msg)",
                );
            }
            let (tl, rl) = (tx.ring_len() as u32, rx.ring_len());
            if tl % 8 != 0 || tl > MAX_RING_LEN {
                return bad(
                    what(&format!("tx ring_len {tl}")),
                    "Tx ring length must be a multiple of 8 up to 8160 (virtchnl.h; i40e I40E_MAX_TX_QLEN)",
                );
            }
            if rl % 32 != 0 || rl > MAX_RING_LEN {
                return bad(
                    what(&format!("rx ring_len {rl}")),
                    "Rx ring length must be a multiple of 32 up to 8160 (virtchnl.h; i40e I40E_MAX_RX_QLEN)",
                );
            }
            if rl > 0 {
                if rx.splithdr_enabled() != 0 && rx.hdr_size() > 2048 - 64 {
                    return bad(what("hdr_size"), "header buffer above 1984 bytes (i40e)");
                }
                let db = rx.databuffer_size();
                if !(128..=16 * 1024 - 128).contains(&db) {
                    return bad(
                        what(&format!("databuffer_size {db}")),
                        "Rx data buffer must be 128..16256 bytes (i40e i40e_config_vsi_rx_queue; \
                         the hardware keeps it in 128-byte units)",
                    );
                }
                let mp = rx.max_pkt_size();
                if !(64..16 * 1024).contains(&mp) {
                    return bad(
                        what(&format!("max_pkt_size {mp}")),
                        "largest frame must be 64..16383 bytes (i40e i40e_config_vsi_rx_queue)",
                    );
                }
            }
            for (ring, name) in [(tx.dma_ring_addr(), "tx"), (rx.dma_ring_addr(), "rx")] {
                if ring % 128 != 0 {
                    return bad(
                        what(&format!("{name} ring at {ring:#x}")),
                        "the queue context keeps the ring base in 128-byte units (i40e: base = \
                         dma_ring_addr / 128): a ring must be 128-byte aligned",
                    );
                }
            }
            new.push((
                id as usize,
                QueueCfg {
                    tx_ring: tx.dma_ring_addr(),
                    tx_len: tl as u16,
                    rx_ring: rx.dma_ring_addr(),
                    rx_len: rl as u16,
                    rx_buf: rx.databuffer_size() >> 7 << 7,
                    rx_max_frame: rx.max_pkt_size(),
                    rx_desc_len: 32,
                },
            ));
        }
        for (id, c) in new {
            if let Some(slot) = self.queue.get_mut(id) {
                *slot = c;
            }
        }
        status::SUCCESS
    }

    fn config_irq_map(&mut self, m: IrqMapInfo<'_>, out: &mut Outcome) -> i32 {
        let n = m.num_vectors() as usize;
        if n > self.cfg.max_vectors as usize {
            out.violation = Some((
                format!("virtchnl config_irq_map of {n} vectors"),
                format!("the VF has {} vectors (max_vectors)", self.cfg.max_vectors),
            ));
            return status::ERR_PARAM;
        }
        let all = (1u32 << self.num_qps) - 1;
        let mut maps = Vec::with_capacity(n);
        for i in 0..n {
            let (vsi, vec, rxm, txm) = m.map(i);
            if !self.vsi_ok(vsi, out) {
                return status::ERR_PARAM;
            }
            if vec >= self.cfg.max_vectors || (rxm as u32 | txm as u32) & !all != 0 {
                out.violation = Some((
                    format!(
                        "virtchnl config_irq_map entry {i}: vector {vec}, rx {rxm:#x}, tx {txm:#x}"
                    ),
                    format!(
                        "vector ids must be below max_vectors ({}) and queue maps name only the \
                         VSI's {} queues (i40e i40e_vc_config_irq_map_msg)",
                        self.cfg.max_vectors, self.num_qps
                    ),
                ));
                return status::ERR_PARAM;
            }
            maps.push((vec, rxm, txm));
        }
        for (vec, rxm, txm) in maps {
            for q in 0..crate::iavf::regs::MAX_QUEUES {
                if rxm & (1 << q) != 0 {
                    self.rx_vector[q] = Some(vec);
                }
                if txm & (1 << q) != 0 {
                    self.tx_vector[q] = Some(vec);
                }
            }
        }
        status::SUCCESS
    }

    fn add_macs(&mut self, l: EtherAddrList<'_>, out: &mut Outcome) -> i32 {
        if !self.vsi_ok(l.vsi_id(), out) {
            return status::ERR_PARAM;
        }
        let n = l.num_elements() as usize;
        let mut add = Vec::new();
        for i in 0..n {
            let a = l.addr(i);
            if a == [0xff; 6] || a == [0; 6] {
                out.violation = Some((
                    format!("virtchnl add_eth_addr {}", fmt_mac(&a)),
                    "broadcast and zero are not filters a VF may add (i40e i40e_check_vf_permission)".into(),
                ));
                return status::ERR_PARAM;
            }
            if !self.cfg.trusted && !is_multicast(&a) && a != self.cfg.mac {
                // i40e: the administratively set MAC may not be overridden
                // by an untrusted VF; not a protocol violation.
                return status::ERR_PARAM;
            }
            if a != self.cfg.mac && !self.macs.contains(&a) && !add.contains(&a) {
                add.push(a);
            }
        }
        let limit = if self.cfg.trusted {
            MAX_MACS_TRUSTED
        } else {
            MAX_MACS_UNTRUSTED
        };
        // Default MAC and broadcast count, as in i40e_count_filters.
        if 2 + self.macs.len() + add.len() > limit {
            return status::ERR_PARAM;
        }
        self.macs.extend(add);
        status::SUCCESS
    }

    fn del_macs(&mut self, l: EtherAddrList<'_>, out: &mut Outcome) -> i32 {
        if !self.vsi_ok(l.vsi_id(), out) {
            return status::ERR_PARAM;
        }
        let n = l.num_elements() as usize;
        let addrs: Vec<[u8; 6]> = (0..n).map(|i| l.addr(i)).collect();
        if let Some(a) = addrs.iter().find(|a| **a == [0xff; 6] || **a == [0; 6]) {
            out.violation = Some((
                format!("virtchnl del_eth_addr {}", fmt_mac(a)),
                "broadcast and zero are not filters a VF may delete (i40e i40e_vc_del_mac_addr_msg)".into(),
            ));
            return status::ERR_PARAM;
        }
        let mut st = status::SUCCESS;
        for a in addrs {
            // The default MAC stays (it is administratively set); drivers
            // delete it on close and add it again on open.
            if a != self.cfg.mac && !self.macs.remove(&a) {
                // i40e: deleting a filter that is not there fails.
                st = status::ERR_PARAM;
            }
        }
        st
    }

    fn vlan_filters(&mut self, opcode: u32, l: VlanFilterList<'_>, out: &mut Outcome) -> i32 {
        if !self.vsi_ok(l.vsi_id(), out) {
            return status::ERR_PARAM;
        }
        if self.caps & cap::VLAN == 0 {
            out.violation = Some((
                format!("virtchnl {}", op::name(opcode)),
                "VIRTCHNL_VF_OFFLOAD_VLAN was not negotiated".into(),
            ));
            return status::ERR_PARAM;
        }
        let ids: Vec<u16> = (0..l.num_elements() as usize).map(|i| l.vlan(i)).collect();
        if let Some(v) = ids.iter().find(|v| **v > 4095) {
            out.violation = Some((
                format!("virtchnl {} VLAN {v}", op::name(opcode)),
                "VLAN ids are 12 bits (i40e I40E_MAX_VLANID)".into(),
            ));
            return status::ERR_PARAM;
        }
        if opcode == op::ADD_VLAN {
            let new: BTreeSet<u16> = ids.into_iter().filter(|v| *v != 0).collect();
            let total = self.vlans.union(&new).count();
            if !self.cfg.trusted && total > MAX_VLANS_UNTRUSTED {
                // i40e_check_vf_vlan_cap: -EPERM, not a protocol error.
                return status::ERR_PARAM;
            }
            self.vlans.extend(new);
        } else {
            for v in ids {
                self.vlans.remove(&v);
            }
        }
        status::SUCCESS
    }
}

fn reply(opcode: u32, st: i32) -> Message {
    Message {
        opcode,
        status: st,
        data: Vec::new(),
    }
}

/// aa:bb:cc:dd:ee:ff.
pub fn fmt_mac(a: &[u8; 6]) -> String {
    a.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
