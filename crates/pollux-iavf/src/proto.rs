//! The virtual channel (virtchnl) between VF and PF, without I/O: messages
//! as checked little-endian views, reply validation, and the bring-up
//! conversation as a state machine.
//!
//! Like pollux-ixgbevf's mailbox core and the bond's LACP core, nothing
//! here touches a register, DMA memory or a clock: the edge
//! ([`crate::adminq`] and [`crate::ctl`]) moves admin queue descriptors and
//! buffers between the device and these types and says when a wait ran
//! out. A PF message is untrusted input: every decoding is checked, every
//! failure is a [`VcError`], never a panic, and no sequence of messages
//! makes a machine loop (each either advances it, is set aside as an
//! event, or ends it; see `fuzz_harness`).
//!
//! Opcodes, structures, sizes, capability bits and status codes:
//! `include/linux/avf/virtchnl.h` (Linux) and
//! `drivers/common/iavf/virtchnl.h` (DPDK); how replies are read: Linux
//! `iavf_virtchnl.c` (iavf_verify_api_ver, iavf_get_vf_config,
//! iavf_virtchnl_completion) and DPDK `iavf_vchnl.c`; how the PF answers:
//! Linux `i40e_virtchnl_pf.c` and `ice_virtchnl.c` (REQUEST_QUEUES is
//! answered only when refused; granted, the PF resets the VF instead).

use crate::regs::{self, AQ_BUF_SIZE};

// --- Opcodes (virtchnl.h enum virtchnl_ops) ---

pub const OP_UNKNOWN: u32 = 0;
pub const OP_VERSION: u32 = 1;
pub const OP_RESET_VF: u32 = 2;
pub const OP_GET_VF_RESOURCES: u32 = 3;
pub const OP_CONFIG_VSI_QUEUES: u32 = 6;
pub const OP_CONFIG_IRQ_MAP: u32 = 7;
pub const OP_ENABLE_QUEUES: u32 = 8;
pub const OP_DISABLE_QUEUES: u32 = 9;
pub const OP_ADD_ETH_ADDR: u32 = 10;
pub const OP_DEL_ETH_ADDR: u32 = 11;
pub const OP_ADD_VLAN: u32 = 12;
pub const OP_DEL_VLAN: u32 = 13;
pub const OP_CONFIG_PROMISCUOUS_MODE: u32 = 14;
pub const OP_GET_STATS: u32 = 15;
pub const OP_EVENT: u32 = 17;
pub const OP_CONFIG_RSS_KEY: u32 = 23;
pub const OP_CONFIG_RSS_LUT: u32 = 24;
pub const OP_GET_RSS_HENA_CAPS: u32 = 25;
pub const OP_SET_RSS_HENA: u32 = 26;
pub const OP_ENABLE_VLAN_STRIPPING: u32 = 27;
pub const OP_DISABLE_VLAN_STRIPPING: u32 = 28;
pub const OP_REQUEST_QUEUES: u32 = 29;

/// The name virtchnl.h gives an opcode, for errors and logs.
pub fn op_name(op: u32) -> &'static str {
    match op {
        OP_VERSION => "VERSION",
        OP_RESET_VF => "RESET_VF",
        OP_GET_VF_RESOURCES => "GET_VF_RESOURCES",
        OP_CONFIG_VSI_QUEUES => "CONFIG_VSI_QUEUES",
        OP_CONFIG_IRQ_MAP => "CONFIG_IRQ_MAP",
        OP_ENABLE_QUEUES => "ENABLE_QUEUES",
        OP_DISABLE_QUEUES => "DISABLE_QUEUES",
        OP_ADD_ETH_ADDR => "ADD_ETH_ADDR",
        OP_DEL_ETH_ADDR => "DEL_ETH_ADDR",
        OP_ADD_VLAN => "ADD_VLAN",
        OP_DEL_VLAN => "DEL_VLAN",
        OP_CONFIG_PROMISCUOUS_MODE => "CONFIG_PROMISCUOUS_MODE",
        OP_GET_STATS => "GET_STATS",
        OP_EVENT => "EVENT",
        OP_CONFIG_RSS_KEY => "CONFIG_RSS_KEY",
        OP_CONFIG_RSS_LUT => "CONFIG_RSS_LUT",
        OP_GET_RSS_HENA_CAPS => "GET_RSS_HENA_CAPS",
        OP_SET_RSS_HENA => "SET_RSS_HENA",
        OP_ENABLE_VLAN_STRIPPING => "ENABLE_VLAN_STRIPPING",
        OP_DISABLE_VLAN_STRIPPING => "DISABLE_VLAN_STRIPPING",
        OP_REQUEST_QUEUES => "REQUEST_QUEUES",
        _ => "unknown opcode",
    }
}

// --- Status codes (virtchnl.h enum virtchnl_status_code) ---

pub const STATUS_SUCCESS: i32 = 0;
pub const STATUS_ERR_PARAM: i32 = -5;
pub const STATUS_ERR_NO_MEMORY: i32 = -18;
pub const STATUS_ERR_OPCODE_MISMATCH: i32 = -38;
pub const STATUS_ERR_CQP_COMPL_ERROR: i32 = -39;
pub const STATUS_ERR_INVALID_VF_ID: i32 = -40;
pub const STATUS_ERR_ADMIN_QUEUE_ERROR: i32 = -53;
pub const STATUS_ERR_NOT_SUPPORTED: i32 = -64;

/// The name of a PF status code.
pub fn status_name(s: i32) -> &'static str {
    match s {
        STATUS_SUCCESS => "SUCCESS",
        STATUS_ERR_PARAM => "ERR_PARAM",
        STATUS_ERR_NO_MEMORY => "ERR_NO_MEMORY",
        STATUS_ERR_OPCODE_MISMATCH => "ERR_OPCODE_MISMATCH",
        STATUS_ERR_CQP_COMPL_ERROR => "ERR_CQP_COMPL_ERROR",
        STATUS_ERR_INVALID_VF_ID => "ERR_INVALID_VF_ID",
        STATUS_ERR_ADMIN_QUEUE_ERROR => "ERR_ADMIN_QUEUE_ERROR",
        STATUS_ERR_NOT_SUPPORTED => "ERR_NOT_SUPPORTED",
        _ => "unknown status",
    }
}

// --- Version (virtchnl.h VIRTCHNL_VERSION_MAJOR/MINOR) ---

pub const VERSION_MAJOR: u32 = 1;
pub const VERSION_MINOR: u32 = 1;
/// A 1.0 PF takes GET_VF_RESOURCES without a capability word.
pub const VERSION_MINOR_NO_VF_CAPS: u32 = 0;

// --- Capabilities (virtchnl.h VIRTCHNL_VF_OFFLOAD_*, VIRTCHNL_VF_CAP_*) ---

pub const CAP_L2: u32 = 1 << 0;
pub const CAP_RSS_AQ: u32 = 1 << 3;
pub const CAP_RSS_REG: u32 = 1 << 4;
pub const CAP_WB_ON_ITR: u32 = 1 << 5;
pub const CAP_REQ_QUEUES: u32 = 1 << 6;
pub const CAP_ADV_LINK_SPEED: u32 = 1 << 7;
pub const CAP_VLAN: u32 = 1 << 16;
pub const CAP_RX_POLLING: u32 = 1 << 17;
pub const CAP_RSS_PF: u32 = 1 << 19;

/// What this driver asks for in GET_VF_RESOURCES: base L2 offloads
/// (checksums), VLAN filters and stripping, RSS programmed through the PF,
/// polling, write-back on ITR, REQUEST_QUEUES and link speeds in Mbps.
pub const DRIVER_CAPS: u32 = CAP_L2
    | CAP_RSS_PF
    | CAP_VLAN
    | CAP_RX_POLLING
    | CAP_WB_ON_ITR
    | CAP_REQ_QUEUES
    | CAP_ADV_LINK_SPEED;

/// VSI type of the VF's LAN VSI (virtchnl.h VIRTCHNL_VSI_SRIOV).
pub const VSI_SRIOV: i32 = 6;

/// CONFIG_PROMISCUOUS_MODE flags (virtchnl.h FLAG_VF_UNICAST_PROMISC,
/// FLAG_VF_MULTICAST_PROMISC).
pub const FLAG_VF_UNICAST_PROMISC: u16 = 0x1;
pub const FLAG_VF_MULTICAST_PROMISC: u16 = 0x2;

/// virtchnl_ether_addr.type (virtchnl.h VIRTCHNL_ETHER_ADDR_*).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddrType {
    /// The VF's own unicast address.
    Primary = 1,
    /// Any other unicast or multicast filter.
    Extra = 2,
}

// --- Events (virtchnl.h enum virtchnl_event_codes) ---

pub const EVENT_LINK_CHANGE: i32 = 1;
pub const EVENT_RESET_IMPENDING: i32 = 2;
pub const EVENT_PF_DRIVER_CLOSE: i32 = 3;

// --- Structure sizes (virtchnl.h VIRTCHNL_CHECK_STRUCT_LEN) ---

pub const VERSION_INFO_LEN: usize = 8;
/// virtchnl_vf_resource without its vsi_res array.
pub const VF_RESOURCE_HDR_LEN: usize = 20;
pub const VSI_RESOURCE_LEN: usize = 16;
pub const TXQ_INFO_LEN: usize = 24;
pub const RXQ_INFO_LEN: usize = 40;
pub const QUEUE_PAIR_INFO_LEN: usize = 64;
/// virtchnl_vsi_queue_config_info without its qpair array.
pub const VSI_QUEUE_CONFIG_HDR_LEN: usize = 8;
pub const VECTOR_MAP_LEN: usize = 12;
pub const QUEUE_SELECT_LEN: usize = 12;
pub const ETHER_ADDR_LEN: usize = 8;
pub const PROMISC_INFO_LEN: usize = 4;
pub const RSS_HENA_LEN: usize = 8;
pub const VF_RES_REQUEST_LEN: usize = 2;
pub const PF_EVENT_LEN: usize = 16;
/// struct iavf_eth_stats: twelve u64 counters.
pub const ETH_STATS_LEN: usize = 96;

/// Little-endian readers over a byte slice that cannot panic: `None` past
/// the end.
fn le16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}
fn le32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}
fn le64(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// Why a PF message is not the answer to our request, or why a request
/// cannot be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VcError {
    #[error("{op}: message of {got} bytes, {need} needed")]
    Truncated {
        op: &'static str,
        need: usize,
        got: usize,
    },
    #[error("{op}: the PF answered {got_name} (opcode {got}) instead (out of order)", got_name = op_name(*got))]
    OutOfOrder { op: &'static str, got: u32 },
    #[error("{op}: the PF refused with status {status} ({})", status_name(*status))]
    PfError { op: &'static str, status: i32 },
    #[error("{op}: {what} {value:#x} in the PF's message is out of range")]
    BadValue {
        op: &'static str,
        what: &'static str,
        value: u64,
    },
    #[error(
        "VERSION: the PF speaks virtchnl {major}.{minor}; this driver speaks 1.0 and 1.1 \
         (a newer PF must answer 1.1)"
    )]
    VersionMismatch { major: u32, minor: u32 },
    #[error("GET_VF_RESOURCES: the PF's {num_vsis} VSI(s) include no SR-IOV LAN VSI (type 6)")]
    NoSriovVsi { num_vsis: u16 },
    #[error("{op} needs the {cap} capability, which the PF did not grant")]
    Unsupported { op: &'static str, cap: &'static str },
    #[error("{op}: request not encodable: {why}")]
    BadRequest { op: &'static str, why: &'static str },
    #[error("{op}: the PF announced a reset of this VF (RESET_IMPENDING) before answering")]
    ResetImpending { op: &'static str },
    #[error("{op}: the PF driver is closing (PF_DRIVER_CLOSE)")]
    PfClosed { op: &'static str },
    #[error("admin queue: {what}")]
    AdminQueue { what: String },
    #[error("{op}: {stage} timed out after {ms} ms (is the PF driver running?)")]
    Timeout {
        op: &'static str,
        stage: &'static str,
        ms: u64,
    },
    #[error("the conversation is over (it failed or finished)")]
    Finished,
}

impl VcError {
    /// The PF is resetting this VF or gone: the driver must wait for the
    /// reset and initialise again.
    pub fn needs_reset(&self) -> bool {
        matches!(
            self,
            VcError::ResetImpending { .. } | VcError::PfClosed { .. }
        )
    }
}

// --- Admin queue descriptor (iavf_adminq_cmd.h struct iavf_aq_desc) ---

/// One 32-byte admin queue descriptor, as plain values (the ring holds the
/// little-endian bytes; [`crate::adminq`] converts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AqDesc {
    pub flags: u16,
    pub opcode: u16,
    pub datalen: u16,
    pub retval: u16,
    /// A VF message's virtchnl opcode.
    pub cookie_high: u32,
    /// A VF message's virtchnl status.
    pub cookie_low: u32,
    pub param0: u32,
    pub param1: u32,
    pub addr_high: u32,
    pub addr_low: u32,
}

impl AqDesc {
    /// As the four little-endian qwords the ring holds.
    pub fn to_qwords(&self) -> [u64; 4] {
        [
            self.flags as u64
                | (self.opcode as u64) << 16
                | (self.datalen as u64) << 32
                | (self.retval as u64) << 48,
            self.cookie_high as u64 | (self.cookie_low as u64) << 32,
            self.param0 as u64 | (self.param1 as u64) << 32,
            self.addr_high as u64 | (self.addr_low as u64) << 32,
        ]
    }

    /// From the four qwords of a ring slot.
    pub fn from_qwords(q: [u64; 4]) -> AqDesc {
        AqDesc {
            flags: q[0] as u16,
            opcode: (q[0] >> 16) as u16,
            datalen: (q[0] >> 32) as u16,
            retval: (q[0] >> 48) as u16,
            cookie_high: q[1] as u32,
            cookie_low: (q[1] >> 32) as u32,
            param0: q[2] as u32,
            param1: (q[2] >> 32) as u32,
            addr_high: q[3] as u32,
            addr_low: (q[3] >> 32) as u32,
        }
    }

    /// The buffer address of an indirect descriptor.
    pub fn addr(&self) -> u64 {
        (self.addr_high as u64) << 32 | self.addr_low as u64
    }

    /// A message to the PF (iavf_aq_send_msg_to_pf): SI always, BUF and RD
    /// with a buffer, LB when it is larger than 512 bytes.
    pub fn send_msg_to_pf(v_opcode: u32, len: usize, buf_iova: u64) -> AqDesc {
        let mut d = AqDesc {
            flags: regs::AQ_FLAG_SI,
            opcode: regs::AQC_OPC_SEND_MSG_TO_PF,
            cookie_high: v_opcode,
            cookie_low: 0,
            ..AqDesc::default()
        };
        if len > 0 {
            d.flags |= regs::AQ_FLAG_BUF | regs::AQ_FLAG_RD;
            if len > regs::AQ_LARGE_BUF {
                d.flags |= regs::AQ_FLAG_LB;
            }
            d.datalen = len as u16;
            d.addr_high = (buf_iova >> 32) as u32;
            d.addr_low = buf_iova as u32;
        }
        d
    }

    /// A receive descriptor posted with a buffer (iavf_alloc_arq_bufs).
    pub fn arq_posted(buf_iova: u64, buf_len: usize) -> AqDesc {
        let mut flags = regs::AQ_FLAG_BUF;
        if buf_len > regs::AQ_LARGE_BUF {
            flags |= regs::AQ_FLAG_LB;
        }
        AqDesc {
            flags,
            datalen: buf_len as u16,
            addr_high: (buf_iova >> 32) as u32,
            addr_low: buf_iova as u32,
            ..AqDesc::default()
        }
    }
}

/// A message from the PF, as read from one receive queue element: the
/// virtchnl opcode and status the firmware copied into the descriptor's
/// cookies, and the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PfMessage<'a> {
    pub opcode: u32,
    pub status: i32,
    pub payload: &'a [u8],
}

impl<'a> PfMessage<'a> {
    /// Checks a written-back receive descriptor and the buffer it came
    /// with (`buf`: what the VF copied out, at most its buffer size).
    pub fn from_arq(desc: &AqDesc, buf: &'a [u8]) -> Result<PfMessage<'a>, VcError> {
        if desc.flags & regs::AQ_FLAG_ERR != 0 {
            return Err(VcError::AdminQueue {
                what: format!(
                    "receive element flagged ERR (retval {:#x}, virtchnl opcode {})",
                    desc.retval, desc.cookie_high
                ),
            });
        }
        if desc.opcode != regs::AQC_OPC_SEND_MSG_TO_VF {
            return Err(VcError::AdminQueue {
                what: format!(
                    "receive element with admin opcode {:#06x}, not send_msg_to_vf (0x0802)",
                    desc.opcode
                ),
            });
        }
        let len = desc.datalen as usize;
        if len > buf.len() {
            return Err(VcError::Truncated {
                op: op_name(desc.cookie_high),
                need: len,
                got: buf.len(),
            });
        }
        Ok(PfMessage {
            opcode: desc.cookie_high,
            status: desc.cookie_low as i32,
            payload: &buf[..len],
        })
    }
}

/// The link as a LINK_CHANGE event reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    pub up: bool,
    /// Mbit/s; 0 when unknown.
    pub speed_mbps: u32,
}

/// What a PF event means to the VF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PfEvent {
    LinkChange(LinkInfo),
    /// The PF is about to reset this VF (severity CERTAIN_DOOM).
    ResetImpending,
    /// The PF driver is going away.
    PfDriverClose,
    /// An event code this driver does not know; ignored.
    Unknown(i32),
    /// An EVENT message too short to hold a virtchnl_pf_event; ignored.
    Malformed {
        len: usize,
    },
}

/// The legacy link speed enum (virtchnl.h enum virtchnl_link_speed) in
/// Mbit/s; 0 for unknown or a combination of bits.
pub fn legacy_speed_mbps(v: u32) -> u32 {
    match v {
        0x01 => 2_500,
        0x02 => 100,
        0x04 => 1_000,
        0x08 => 10_000,
        0x10 => 40_000,
        0x20 => 20_000,
        0x40 => 25_000,
        0x80 => 5_000,
        _ => 0,
    }
}

impl PfEvent {
    /// Decodes a virtchnl_pf_event: the link in the advanced form (Mbit/s)
    /// when ADV_LINK_SPEED was granted, else the legacy enum.
    pub fn parse(payload: &[u8], adv_link_speed: bool) -> PfEvent {
        let (Some(code), Some(speed), Some(status)) =
            (le32(payload, 0), le32(payload, 4), payload.get(8).copied())
        else {
            return PfEvent::Malformed { len: payload.len() };
        };
        if payload.len() < PF_EVENT_LEN {
            return PfEvent::Malformed { len: payload.len() };
        }
        match code as i32 {
            EVENT_LINK_CHANGE => {
                let speed_mbps = if adv_link_speed {
                    // Linux iavf treats U32_MAX as "unknown".
                    if speed == u32::MAX {
                        0
                    } else {
                        speed
                    }
                } else {
                    legacy_speed_mbps(speed)
                };
                PfEvent::LinkChange(LinkInfo {
                    up: status != 0,
                    speed_mbps,
                })
            }
            EVENT_RESET_IMPENDING => PfEvent::ResetImpending,
            EVENT_PF_DRIVER_CLOSE => PfEvent::PfDriverClose,
            c => PfEvent::Unknown(c),
        }
    }

    /// Encodes an event as the PF sends it (tests and the software PF).
    pub fn encode(&self, adv_link_speed: bool) -> [u8; PF_EVENT_LEN] {
        let mut b = [0u8; PF_EVENT_LEN];
        let (code, speed, up, severity): (i32, u32, bool, i32) = match *self {
            PfEvent::LinkChange(l) => {
                let s = if adv_link_speed {
                    l.speed_mbps
                } else {
                    match l.speed_mbps {
                        2_500 => 0x01,
                        100 => 0x02,
                        1_000 => 0x04,
                        10_000 => 0x08,
                        40_000 => 0x10,
                        20_000 => 0x20,
                        25_000 => 0x40,
                        5_000 => 0x80,
                        _ => 0,
                    }
                };
                (EVENT_LINK_CHANGE, s, l.up, 0)
            }
            PfEvent::ResetImpending => (EVENT_RESET_IMPENDING, 0, false, 255),
            PfEvent::PfDriverClose => (EVENT_PF_DRIVER_CLOSE, 0, false, 255),
            PfEvent::Unknown(c) => (c, 0, false, 0),
            PfEvent::Malformed { .. } => (0, 0, false, 0),
        };
        b[0..4].copy_from_slice(&code.to_le_bytes());
        b[4..8].copy_from_slice(&speed.to_le_bytes());
        b[8] = up as u8;
        b[12..16].copy_from_slice(&severity.to_le_bytes());
        b
    }
}

// --- Requests ---

/// One queue pair of CONFIG_VSI_QUEUES (virtchnl_queue_pair_info). A
/// direction with `ring_len` 0 is left unconfigured (DPDK sends zeroes for
/// the pairs beyond a direction's queue count).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueuePairInfo {
    pub queue_id: u16,
    pub tx_ring_len: u16,
    pub tx_ring_iova: u64,
    pub rx_ring_len: u32,
    pub rx_ring_iova: u64,
    /// Bytes of each receive buffer (multiple of 128).
    pub rx_buf_size: u32,
    /// Largest frame to receive, FCS excluded.
    pub max_pkt_size: u32,
}

/// One vector of CONFIG_IRQ_MAP (virtchnl_vector_map).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VectorMap {
    pub vector_id: u16,
    pub rxq_map: u16,
    pub txq_map: u16,
    pub rxitr_idx: u16,
    pub txitr_idx: u16,
}

/// A request of the VF.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Version,
    ResetVf,
    /// With the capability word under 1.1, without under 1.0.
    GetVfResources {
        caps: Option<u32>,
    },
    ConfigVsiQueues {
        vsi: u16,
        pairs: Vec<QueuePairInfo>,
    },
    ConfigIrqMap {
        vsi: u16,
        vectors: Vec<VectorMap>,
    },
    EnableQueues {
        vsi: u16,
        rx: u32,
        tx: u32,
    },
    DisableQueues {
        vsi: u16,
        rx: u32,
        tx: u32,
    },
    AddEthAddr {
        vsi: u16,
        addrs: Vec<([u8; 6], AddrType)>,
    },
    DelEthAddr {
        vsi: u16,
        addrs: Vec<([u8; 6], AddrType)>,
    },
    AddVlan {
        vsi: u16,
        vids: Vec<u16>,
    },
    DelVlan {
        vsi: u16,
        vids: Vec<u16>,
    },
    ConfigPromisc {
        vsi: u16,
        flags: u16,
    },
    GetStats {
        vsi: u16,
    },
    ConfigRssKey {
        vsi: u16,
        key: Vec<u8>,
    },
    ConfigRssLut {
        vsi: u16,
        lut: Vec<u8>,
    },
    GetRssHenaCaps,
    SetRssHena(u64),
    EnableVlanStripping,
    DisableVlanStripping,
    RequestQueues(u16),
}

impl Request {
    /// The virtchnl opcode.
    pub fn opcode(&self) -> u32 {
        match self {
            Request::Version => OP_VERSION,
            Request::ResetVf => OP_RESET_VF,
            Request::GetVfResources { .. } => OP_GET_VF_RESOURCES,
            Request::ConfigVsiQueues { .. } => OP_CONFIG_VSI_QUEUES,
            Request::ConfigIrqMap { .. } => OP_CONFIG_IRQ_MAP,
            Request::EnableQueues { .. } => OP_ENABLE_QUEUES,
            Request::DisableQueues { .. } => OP_DISABLE_QUEUES,
            Request::AddEthAddr { .. } => OP_ADD_ETH_ADDR,
            Request::DelEthAddr { .. } => OP_DEL_ETH_ADDR,
            Request::AddVlan { .. } => OP_ADD_VLAN,
            Request::DelVlan { .. } => OP_DEL_VLAN,
            Request::ConfigPromisc { .. } => OP_CONFIG_PROMISCUOUS_MODE,
            Request::GetStats { .. } => OP_GET_STATS,
            Request::ConfigRssKey { .. } => OP_CONFIG_RSS_KEY,
            Request::ConfigRssLut { .. } => OP_CONFIG_RSS_LUT,
            Request::GetRssHenaCaps => OP_GET_RSS_HENA_CAPS,
            Request::SetRssHena(_) => OP_SET_RSS_HENA,
            Request::EnableVlanStripping => OP_ENABLE_VLAN_STRIPPING,
            Request::DisableVlanStripping => OP_DISABLE_VLAN_STRIPPING,
            Request::RequestQueues(_) => OP_REQUEST_QUEUES,
        }
    }

    pub fn name(&self) -> &'static str {
        op_name(self.opcode())
    }

    /// Whether the PF answers it: not RESET_VF ("PF does NOT respond!",
    /// virtchnl.h).
    pub fn expects_reply(&self) -> bool {
        !matches!(self, Request::ResetVf)
    }

    /// The capability the PF must have granted, if any.
    pub fn needs_cap(&self) -> Option<(u32, &'static str)> {
        match self {
            Request::ConfigRssKey { .. }
            | Request::ConfigRssLut { .. }
            | Request::GetRssHenaCaps
            | Request::SetRssHena(_) => Some((CAP_RSS_PF, "RSS_PF")),
            Request::AddVlan { .. }
            | Request::DelVlan { .. }
            | Request::EnableVlanStripping
            | Request::DisableVlanStripping => Some((CAP_VLAN, "VLAN")),
            Request::RequestQueues(_) => Some((CAP_REQ_QUEUES, "REQ_QUEUES")),
            _ => None,
        }
    }

    /// Checks what the encoding cannot express: empty lists the PF rejects
    /// (virtchnl_vc_validate_vf_msg: `num_elements == 0` is a format
    /// error), more than 16 queues, a message larger than an admin queue
    /// buffer.
    pub fn validate(&self) -> Result<(), VcError> {
        let op = self.name();
        let bad = |why| Err(VcError::BadRequest { op, why });
        match self {
            Request::ConfigVsiQueues { pairs, .. } if pairs.is_empty() => {
                return bad("no queue pairs")
            }
            Request::ConfigVsiQueues { pairs, .. } if pairs.len() > regs::MAX_QUEUES as usize => {
                return bad("more than 16 queue pairs")
            }
            Request::ConfigIrqMap { vectors, .. } if vectors.is_empty() => {
                return bad("no vectors")
            }
            Request::AddEthAddr { addrs, .. } | Request::DelEthAddr { addrs, .. }
                if addrs.is_empty() =>
            {
                return bad("no addresses")
            }
            Request::AddVlan { vids, .. } | Request::DelVlan { vids, .. } if vids.is_empty() => {
                return bad("no VLAN IDs")
            }
            Request::ConfigRssKey { key, .. } if key.is_empty() => return bad("empty key"),
            Request::ConfigRssLut { lut, .. } if lut.is_empty() => return bad("empty LUT"),
            Request::RequestQueues(0) => return bad("zero queue pairs"),
            _ => {}
        }
        if self.encode().len() > AQ_BUF_SIZE {
            return bad("larger than an admin queue buffer");
        }
        Ok(())
    }

    /// The message buffer, laid out as virtchnl.h's structures.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        let p16 = |b: &mut Vec<u8>, v: u16| b.extend_from_slice(&v.to_le_bytes());
        let p32 = |b: &mut Vec<u8>, v: u32| b.extend_from_slice(&v.to_le_bytes());
        let p64 = |b: &mut Vec<u8>, v: u64| b.extend_from_slice(&v.to_le_bytes());
        match self {
            Request::Version => {
                p32(&mut b, VERSION_MAJOR);
                p32(&mut b, VERSION_MINOR);
            }
            Request::ResetVf
            | Request::GetRssHenaCaps
            | Request::EnableVlanStripping
            | Request::DisableVlanStripping => {}
            Request::GetVfResources { caps } => {
                if let Some(c) = caps {
                    p32(&mut b, *c);
                }
            }
            Request::ConfigVsiQueues { vsi, pairs } => {
                p16(&mut b, *vsi);
                p16(&mut b, pairs.len() as u16);
                p32(&mut b, 0);
                for q in pairs {
                    // virtchnl_txq_info
                    p16(&mut b, *vsi);
                    p16(&mut b, q.queue_id);
                    p16(&mut b, q.tx_ring_len);
                    p16(&mut b, 0); // headwb_enabled (deprecated)
                    p64(&mut b, q.tx_ring_iova);
                    p64(&mut b, 0); // dma_headwb_addr (deprecated)
                                    // virtchnl_rxq_info
                    p16(&mut b, *vsi);
                    p16(&mut b, q.queue_id);
                    p32(&mut b, q.rx_ring_len);
                    p16(&mut b, 0); // hdr_size
                    p16(&mut b, 0); // splithdr_enabled (deprecated)
                    p32(&mut b, q.rx_buf_size);
                    p32(&mut b, q.max_pkt_size);
                    // crc_disable 0, rxdid 0 (the 32-byte legacy
                    // descriptor without RX_FLEX_DESC), flags 0, pad
                    p32(&mut b, 0);
                    p64(&mut b, q.rx_ring_iova);
                    p32(&mut b, 0); // rx_split_pos (deprecated)
                    p32(&mut b, 0); // pad2
                }
                // The legacy wire size: the structure was declared with a
                // one-element array and sized sizeof + n * element, so one
                // zeroed pair follows (72 + 64n; DPDK iavf_configure_queues,
                // the PF's virtchnl_vc_validate_vf_msg).
                legacy_pad(&mut b, QUEUE_PAIR_INFO_LEN);
            }
            Request::ConfigIrqMap { vsi, vectors } => {
                p16(&mut b, vectors.len() as u16);
                for v in vectors {
                    p16(&mut b, *vsi);
                    p16(&mut b, v.vector_id);
                    p16(&mut b, v.rxq_map);
                    p16(&mut b, v.txq_map);
                    p16(&mut b, v.rxitr_idx);
                    p16(&mut b, v.txitr_idx);
                }
                legacy_pad(&mut b, VECTOR_MAP_LEN); // 14 + 12n
            }
            Request::EnableQueues { vsi, rx, tx } | Request::DisableQueues { vsi, rx, tx } => {
                p16(&mut b, *vsi);
                p16(&mut b, 0);
                p32(&mut b, *rx);
                p32(&mut b, *tx);
            }
            Request::AddEthAddr { vsi, addrs } | Request::DelEthAddr { vsi, addrs } => {
                p16(&mut b, *vsi);
                p16(&mut b, addrs.len() as u16);
                for (a, t) in addrs {
                    b.extend_from_slice(a);
                    b.push(*t as u8);
                    b.push(0);
                }
                legacy_pad(&mut b, ETHER_ADDR_LEN); // 12 + 8n
            }
            Request::AddVlan { vsi, vids } | Request::DelVlan { vsi, vids } => {
                p16(&mut b, *vsi);
                p16(&mut b, vids.len() as u16);
                for v in vids {
                    p16(&mut b, *v & 0x0FFF);
                }
                legacy_pad(&mut b, 2); // 6 + 2n
            }
            Request::ConfigPromisc { vsi, flags } => {
                p16(&mut b, *vsi);
                p16(&mut b, *flags);
            }
            Request::GetStats { vsi } => {
                // virtchnl_queue_select; the PF ignores the queue fields.
                p16(&mut b, *vsi);
                p16(&mut b, 0);
                p32(&mut b, 0);
                p32(&mut b, 0);
            }
            Request::ConfigRssKey { vsi, key: data } | Request::ConfigRssLut { vsi, lut: data } => {
                // sizeof(struct) + n - 1: the 6-byte structure carries one
                // byte of the array and one of padding (DPDK
                // iavf_configure_rss_key, Linux iavf_set_rss_key).
                p16(&mut b, *vsi);
                p16(&mut b, data.len() as u16);
                b.extend_from_slice(data);
                b.push(0);
            }
            Request::SetRssHena(h) => p64(&mut b, *h),
            Request::RequestQueues(n) => p16(&mut b, *n),
        }
        b
    }
}

/// One zeroed array element after the real ones: virtchnl's list messages
/// (ether_addr_list, vlan_filter_list, vsi_queue_config_info,
/// irq_map_info) were declared with a one-element array and are sized on
/// the wire as `sizeof(struct) + n * sizeof(element)`, one element more
/// than they carry. PFs check that exact length
/// (virtchnl_vc_validate_vf_msg; Linux keeps it with
/// `virtchnl_struct_size`, DPDK allocates it so), and refuse a shorter
/// message.
fn legacy_pad(b: &mut Vec<u8>, element: usize) {
    b.resize(b.len() + element, 0);
}

// --- Replies ---// --- Replies ---

/// The PF's version (virtchnl_version_info).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionInfo {
    pub major: u32,
    pub minor: u32,
}

impl VersionInfo {
    pub fn parse(p: &[u8]) -> Result<VersionInfo, VcError> {
        let (Some(major), Some(minor)) = (le32(p, 0), le32(p, 4)) else {
            return Err(VcError::Truncated {
                op: "VERSION",
                need: VERSION_INFO_LEN,
                got: p.len(),
            });
        };
        Ok(VersionInfo { major, minor })
    }

    /// Whether this driver can talk to the PF: major 1, minor 0 or 1. Linux
    /// iavf_verify_api_ver refuses a PF newer than the VF; DPDK refuses
    /// anything but 1.1; 1.0 PFs are old i40e drivers and work without the
    /// capability word.
    pub fn check(self) -> Result<VersionInfo, VcError> {
        if self.major != VERSION_MAJOR || self.minor > VERSION_MINOR {
            return Err(VcError::VersionMismatch {
                major: self.major,
                minor: self.minor,
            });
        }
        Ok(self)
    }
}

/// What GET_VF_RESOURCES gave this VF, sanitised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VfResources {
    /// Capabilities granted (and asked for).
    pub caps: u32,
    pub vsi_id: u16,
    /// Queue pairs of the LAN VSI, 1..=16.
    pub num_queue_pairs: u16,
    pub max_vectors: u16,
    /// 0: the PF did not say.
    pub max_mtu: u16,
    pub rss_key_size: u16,
    pub rss_lut_size: u16,
    /// The address the PF assigned, if valid unicast.
    pub mac: Option<[u8; 6]>,
}

impl VfResources {
    pub fn has(&self, cap: u32) -> bool {
        self.caps & cap == cap
    }

    /// Decodes virtchnl_vf_resource and picks the SR-IOV VSI, as Linux
    /// iavf_vf_parse_hw_config and DPDK iavf_get_vf_resource do.
    /// `asked`: the capability word sent (the PF's grant is masked with it).
    pub fn parse(p: &[u8], asked: u32) -> Result<VfResources, VcError> {
        let op = "GET_VF_RESOURCES";
        if p.len() < VF_RESOURCE_HDR_LEN + VSI_RESOURCE_LEN {
            return Err(VcError::Truncated {
                op,
                need: VF_RESOURCE_HDR_LEN + VSI_RESOURCE_LEN,
                got: p.len(),
            });
        }
        let num_vsis = le16(p, 0).unwrap_or(0);
        let vf_qps = le16(p, 2).unwrap_or(0);
        let max_vectors = le16(p, 4).unwrap_or(0);
        let max_mtu = le16(p, 6).unwrap_or(0);
        let pf_caps = le32(p, 8).unwrap_or(0);
        let key = le32(p, 12).unwrap_or(0);
        let lut = le32(p, 16).unwrap_or(0);
        let need = VF_RESOURCE_HDR_LEN + VSI_RESOURCE_LEN * num_vsis as usize;
        if p.len() < need {
            return Err(VcError::Truncated {
                op,
                need,
                got: p.len(),
            });
        }
        let vsi = (0..num_vsis as usize)
            .map(|i| &p[VF_RESOURCE_HDR_LEN + i * VSI_RESOURCE_LEN..][..VSI_RESOURCE_LEN])
            .find(|v| le32(v, 4).map(|t| t as i32) == Some(VSI_SRIOV))
            .ok_or(VcError::NoSriovVsi { num_vsis })?;
        let vsi_id = le16(vsi, 0).unwrap_or(0);
        let vsi_qps = le16(vsi, 2).unwrap_or(0);
        if vsi_qps == 0 {
            return Err(VcError::BadValue {
                op,
                what: "queue pairs of the SR-IOV VSI",
                value: 0,
            });
        }
        let qps = if vf_qps == 0 {
            vsi_qps
        } else {
            vsi_qps.min(vf_qps)
        };
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&vsi[10..16]);
        let mac = (mac != [0; 6] && mac[0] & 1 == 0).then_some(mac);
        let caps = pf_caps & asked;
        let max_size = (AQ_BUF_SIZE - 5) as u32;
        if caps & CAP_RSS_PF != 0 {
            for (what, v) in [("RSS key size", key), ("RSS LUT size", lut)] {
                if v == 0 || v > max_size {
                    return Err(VcError::BadValue {
                        op,
                        what,
                        value: v as u64,
                    });
                }
            }
        }
        Ok(VfResources {
            caps,
            vsi_id,
            num_queue_pairs: qps.min(regs::MAX_QUEUES),
            max_vectors,
            max_mtu,
            rss_key_size: key.min(max_size) as u16,
            rss_lut_size: lut.min(max_size) as u16,
            mac,
        })
    }

    /// Encodes a reply as the PF sends it (tests and the software PF).
    pub fn encode(&self, vsi_type: i32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&self.num_queue_pairs.to_le_bytes());
        b.extend_from_slice(&self.max_vectors.to_le_bytes());
        b.extend_from_slice(&self.max_mtu.to_le_bytes());
        b.extend_from_slice(&self.caps.to_le_bytes());
        b.extend_from_slice(&(self.rss_key_size as u32).to_le_bytes());
        b.extend_from_slice(&(self.rss_lut_size as u32).to_le_bytes());
        b.extend_from_slice(&self.vsi_id.to_le_bytes());
        b.extend_from_slice(&self.num_queue_pairs.to_le_bytes());
        b.extend_from_slice(&vsi_type.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&self.mac.unwrap_or([0; 6]));
        b
    }
}

/// The VSI counters GET_STATS returns (struct iavf_eth_stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EthStats {
    pub rx_bytes: u64,
    pub rx_unicast: u64,
    pub rx_multicast: u64,
    pub rx_broadcast: u64,
    pub rx_discards: u64,
    pub rx_unknown_protocol: u64,
    pub tx_bytes: u64,
    pub tx_unicast: u64,
    pub tx_multicast: u64,
    pub tx_broadcast: u64,
    pub tx_discards: u64,
    pub tx_errors: u64,
}

impl EthStats {
    pub fn parse(p: &[u8]) -> Result<EthStats, VcError> {
        if p.len() < ETH_STATS_LEN {
            return Err(VcError::Truncated {
                op: "GET_STATS",
                need: ETH_STATS_LEN,
                got: p.len(),
            });
        }
        let f = |i: usize| le64(p, 8 * i).unwrap_or(0);
        Ok(EthStats {
            rx_bytes: f(0),
            rx_unicast: f(1),
            rx_multicast: f(2),
            rx_broadcast: f(3),
            rx_discards: f(4),
            rx_unknown_protocol: f(5),
            tx_bytes: f(6),
            tx_unicast: f(7),
            tx_multicast: f(8),
            tx_broadcast: f(9),
            tx_discards: f(10),
            tx_errors: f(11),
        })
    }

    pub fn encode(&self) -> [u8; ETH_STATS_LEN] {
        let mut b = [0u8; ETH_STATS_LEN];
        for (i, v) in [
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
        .into_iter()
        .enumerate()
        {
            b[8 * i..8 * i + 8].copy_from_slice(&v.to_le_bytes());
        }
        b
    }
}

/// A validated answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// SUCCESS, nothing to carry.
    Ack,
    Version(VersionInfo),
    Resources(VfResources),
    Stats(EthStats),
    /// GET_RSS_HENA_CAPS: the packet types the PF can hash.
    Hena(u64),
    /// REQUEST_QUEUES refused: the most queue pairs the PF can give.
    QueuesOffered(u16),
    /// REQUEST_QUEUES granted: the PF announced the VF reset that
    /// institutes them.
    QueuesGranted,
}

/// What one PF message did to a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// An event came before the reply: note it and keep waiting (same
    /// deadline).
    Event(PfEvent),
    /// The reply was taken.
    Reply(Answer),
}

/// One request and its reply.
#[derive(Clone, Debug)]
pub struct Transaction {
    req: Request,
    /// GET_VF_RESOURCES: the capability word asked for.
    asked: u32,
    adv_link: bool,
    done: bool,
}

impl Transaction {
    /// A transaction for `req` with the capabilities the PF granted
    /// (`granted`); fails without sending anything when the PF cannot
    /// understand it or the message is malformed.
    pub fn new(req: Request, granted: u32) -> Result<Transaction, VcError> {
        if let Some((cap, name)) = req.needs_cap() {
            if granted & cap != cap {
                return Err(VcError::Unsupported {
                    op: req.name(),
                    cap: name,
                });
            }
        }
        req.validate()?;
        let asked = match &req {
            Request::GetVfResources { caps: Some(c) } => *c,
            // A 1.0 PF grants what it grants; keep what this driver knows.
            Request::GetVfResources { caps: None } => DRIVER_CAPS,
            _ => 0,
        };
        Ok(Transaction {
            req,
            asked,
            adv_link: granted & CAP_ADV_LINK_SPEED != 0,
            done: false,
        })
    }

    pub fn request(&self) -> &Request {
        &self.req
    }

    /// Takes one PF message read after the request.
    pub fn on_message(&mut self, msg: &PfMessage<'_>) -> Result<Step, VcError> {
        if self.done {
            return Err(VcError::Finished);
        }
        let op = self.req.name();
        if msg.opcode == OP_EVENT {
            let ev = PfEvent::parse(msg.payload, self.adv_link);
            return match ev {
                PfEvent::ResetImpending if matches!(self.req, Request::RequestQueues(_)) => {
                    // i40e_vc_request_queues_msg / ice_vc_request_qs_msg:
                    // a granted request is answered by a VF reset.
                    self.done = true;
                    Ok(Step::Reply(Answer::QueuesGranted))
                }
                PfEvent::ResetImpending => {
                    self.done = true;
                    Err(VcError::ResetImpending { op })
                }
                PfEvent::PfDriverClose => {
                    self.done = true;
                    Err(VcError::PfClosed { op })
                }
                ev => Ok(Step::Event(ev)),
            };
        }
        self.done = true;
        if msg.opcode != self.req.opcode() {
            return Err(VcError::OutOfOrder {
                op,
                got: msg.opcode,
            });
        }
        if msg.status != STATUS_SUCCESS {
            return Err(VcError::PfError {
                op,
                status: msg.status,
            });
        }
        let p = msg.payload;
        let a = match &self.req {
            Request::Version => Answer::Version(VersionInfo::parse(p)?.check()?),
            Request::GetVfResources { .. } => Answer::Resources(VfResources::parse(p, self.asked)?),
            Request::GetStats { .. } => Answer::Stats(EthStats::parse(p)?),
            Request::GetRssHenaCaps => Answer::Hena(le64(p, 0).ok_or(VcError::Truncated {
                op,
                need: RSS_HENA_LEN,
                got: p.len(),
            })?),
            Request::RequestQueues(_) => {
                Answer::QueuesOffered(le16(p, 0).ok_or(VcError::Truncated {
                    op,
                    need: VF_RES_REQUEST_LEN,
                    got: p.len(),
                })?)
            }
            _ => Answer::Ack,
        };
        Ok(Step::Reply(a))
    }
}

/// What bring-up found out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub version: VersionInfo,
    pub res: VfResources,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Version,
    Resources(VersionInfo),
    Done(Outcome),
    Failed,
}

/// The bring-up conversation once the admin queue is up after a VF reset:
/// VERSION (ours 1.1, the PF's checked), then GET_VF_RESOURCES with the
/// capabilities asked for (1.1) or none (1.0).
///
/// Drive it: while [`BringUp::next_request`] gives a request, send it, feed
/// what the PF sends to [`BringUp::on_message`] until it says
/// [`Step::Reply`] or fails, and call [`BringUp::on_timeout`] when a wait
/// runs out. A RESET_IMPENDING ends it with [`VcError::ResetImpending`]:
/// the driver waits for the reset and starts over. At most
/// [`BringUp::MAX_REQUESTS`] requests are asked for.
#[derive(Clone, Debug)]
pub struct BringUp {
    caps: u32,
    state: State,
    events: Vec<PfEvent>,
}

impl BringUp {
    pub const MAX_REQUESTS: usize = 2;

    /// `caps`: the capability word to ask for.
    pub fn new(caps: u32) -> BringUp {
        BringUp {
            caps,
            state: State::Version,
            events: Vec::new(),
        }
    }

    pub fn next_request(&self) -> Option<Request> {
        match self.state {
            State::Version => Some(Request::Version),
            State::Resources(v) => Some(Request::GetVfResources {
                caps: (v.minor > VERSION_MINOR_NO_VF_CAPS).then_some(self.caps),
            }),
            State::Done(_) | State::Failed => None,
        }
    }

    pub fn outcome(&self) -> Option<Outcome> {
        match self.state {
            State::Done(o) => Some(o),
            _ => None,
        }
    }

    /// Events seen meanwhile (link changes, in order).
    pub fn events(&self) -> &[PfEvent] {
        &self.events
    }

    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done(_))
    }

    fn fail(&mut self, e: VcError) -> Result<Step, VcError> {
        self.state = State::Failed;
        Err(e)
    }

    /// A wait for the current request ran out: the conversation fails.
    pub fn on_timeout(&mut self, stage: &'static str, ms: u64) -> VcError {
        let op = self.next_request().map(|r| r.name()).unwrap_or("bring-up");
        self.state = State::Failed;
        VcError::Timeout { op, stage, ms }
    }

    /// Takes one PF message read after the current request.
    pub fn on_message(&mut self, msg: &PfMessage<'_>) -> Result<Step, VcError> {
        let Some(req) = self.next_request() else {
            return Err(VcError::Finished);
        };
        let mut t = match Transaction::new(req, CAP_ADV_LINK_SPEED & self.caps) {
            Ok(t) => t,
            Err(e) => return self.fail(e),
        };
        match t.on_message(msg) {
            Ok(Step::Event(ev)) => {
                self.events.push(ev);
                Ok(Step::Event(ev))
            }
            Ok(Step::Reply(a)) => {
                match (self.state, &a) {
                    (State::Version, Answer::Version(v)) => self.state = State::Resources(*v),
                    (State::Resources(v), Answer::Resources(r)) => {
                        self.state = State::Done(Outcome {
                            version: v,
                            res: *r,
                        })
                    }
                    _ => return self.fail(VcError::Finished),
                }
                Ok(Step::Reply(a))
            }
            Err(e) => self.fail(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(opcode: u32, status: i32, payload: &[u8]) -> PfMessage<'_> {
        PfMessage {
            opcode,
            status,
            payload,
        }
    }

    fn version(major: u32, minor: u32) -> Vec<u8> {
        let mut b = major.to_le_bytes().to_vec();
        b.extend_from_slice(&minor.to_le_bytes());
        b
    }

    fn resources(caps: u32, qps: u16, mac: [u8; 6]) -> Vec<u8> {
        VfResources {
            caps,
            vsi_id: 7,
            num_queue_pairs: qps,
            max_vectors: 5,
            max_mtu: 9000,
            rss_key_size: 52,
            rss_lut_size: 64,
            mac: Some(mac),
        }
        .encode(VSI_SRIOV)
    }

    #[test]
    fn requests_encode_as_virtchnl_h_lays_them_out() {
        assert_eq!(Request::Version.encode(), version(1, 1));
        assert!(Request::ResetVf.encode().is_empty());
        assert!(!Request::ResetVf.expects_reply());
        assert_eq!(
            Request::GetVfResources {
                caps: Some(DRIVER_CAPS)
            }
            .encode(),
            DRIVER_CAPS.to_le_bytes()
        );
        assert!(Request::GetVfResources { caps: None }.encode().is_empty());
        let q = Request::ConfigVsiQueues {
            vsi: 3,
            pairs: vec![
                QueuePairInfo {
                    queue_id: 0,
                    tx_ring_len: 512,
                    tx_ring_iova: 0x1000,
                    rx_ring_len: 256,
                    rx_ring_iova: 0x2000,
                    rx_buf_size: 2048,
                    max_pkt_size: 1518,
                },
                QueuePairInfo {
                    queue_id: 1,
                    ..QueuePairInfo::default()
                },
            ],
        }
        .encode();
        assert_eq!(
            q.len(),
            VSI_QUEUE_CONFIG_HDR_LEN + 3 * QUEUE_PAIR_INFO_LEN,
            "72 + 64n: the legacy one-element padding"
        );
        assert_eq!(&q[0..4], &[3, 0, 2, 0]);
        let tx = &q[8..8 + TXQ_INFO_LEN];
        assert_eq!(le16(tx, 4), Some(512));
        assert_eq!(le64(tx, 8), Some(0x1000));
        let rx = &q[8 + TXQ_INFO_LEN..8 + QUEUE_PAIR_INFO_LEN];
        assert_eq!(le16(rx, 0), Some(3));
        assert_eq!(le32(rx, 4), Some(256));
        assert_eq!(le32(rx, 12), Some(2048));
        assert_eq!(le32(rx, 16), Some(1518));
        assert_eq!(rx[21], 0, "rxdid 0: the legacy 32-byte descriptor");
        assert_eq!(le64(rx, 24), Some(0x2000));
        assert_eq!(le16(&q[8 + QUEUE_PAIR_INFO_LEN..], 2), Some(1));
        let m = Request::ConfigIrqMap {
            vsi: 3,
            vectors: vec![VectorMap {
                vector_id: 1,
                rxq_map: 0b11,
                txq_map: 0b11,
                rxitr_idx: 0,
                txitr_idx: 1,
            }],
        }
        .encode();
        assert_eq!(
            m,
            [1, 0, 3, 0, 1, 0, 3, 0, 3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            "14 + 12n"
        );
        assert_eq!(
            Request::EnableQueues {
                vsi: 3,
                rx: 0b101,
                tx: 0b1
            }
            .encode(),
            [3, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0]
        );
        assert_eq!(
            Request::AddEthAddr {
                vsi: 3,
                addrs: vec![([2, 1, 2, 3, 4, 5], AddrType::Primary)]
            }
            .encode(),
            [3, 0, 1, 0, 2, 1, 2, 3, 4, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            "12 + 8n"
        );
        assert_eq!(
            Request::AddVlan {
                vsi: 3,
                vids: vec![0x1064]
            }
            .encode(),
            [3, 0, 1, 0, 0x64, 0, 0, 0],
            "6 + 2n"
        );
        assert_eq!(
            Request::ConfigPromisc {
                vsi: 3,
                flags: FLAG_VF_UNICAST_PROMISC | FLAG_VF_MULTICAST_PROMISC
            }
            .encode(),
            [3, 0, 3, 0]
        );
        let k = Request::ConfigRssKey {
            vsi: 3,
            key: vec![0xAA; 52],
        }
        .encode();
        assert_eq!(k.len(), 6 + 52 - 1, "sizeof(virtchnl_rss_key) + n - 1");
        assert_eq!(Request::RequestQueues(8).encode(), [8, 0]);
        assert_eq!(Request::SetRssHena(0x1234).encode().len(), 8);
    }

    #[test]
    fn requests_check_caps_and_shape_before_sending() {
        let e = Transaction::new(Request::GetRssHenaCaps, CAP_L2).unwrap_err();
        assert_eq!(
            e,
            VcError::Unsupported {
                op: "GET_RSS_HENA_CAPS",
                cap: "RSS_PF"
            }
        );
        assert!(Transaction::new(
            Request::AddVlan {
                vsi: 0,
                vids: vec![]
            },
            CAP_VLAN
        )
        .is_err());
        assert!(Transaction::new(Request::RequestQueues(4), DRIVER_CAPS).is_ok());
        assert!(Transaction::new(
            Request::ConfigRssLut {
                vsi: 0,
                lut: vec![0; 5000]
            },
            CAP_RSS_PF
        )
        .is_err());
        assert!(Transaction::new(
            Request::ConfigVsiQueues {
                vsi: 0,
                pairs: vec![QueuePairInfo::default(); 17]
            },
            0
        )
        .is_err());
    }

    #[test]
    fn bring_up_version_then_resources() {
        let mut b = BringUp::new(DRIVER_CAPS);
        assert_eq!(b.next_request(), Some(Request::Version));
        b.on_message(&msg(OP_VERSION, 0, &version(1, 1))).unwrap();
        assert_eq!(
            b.next_request(),
            Some(Request::GetVfResources {
                caps: Some(DRIVER_CAPS)
            })
        );
        // The PF grants a subset (no WB_ON_ITR, no ADV_LINK_SPEED) plus a
        // bit we never asked for, which is masked off.
        let granted = CAP_L2 | CAP_VLAN | CAP_RSS_PF | (1 << 26);
        let r = resources(granted, 4, [2, 0, 0, 0, 0, 9]);
        b.on_message(&msg(OP_GET_VF_RESOURCES, 0, &r)).unwrap();
        let o = b.outcome().unwrap();
        assert_eq!(o.version, VersionInfo { major: 1, minor: 1 });
        assert_eq!(o.res.caps, CAP_L2 | CAP_VLAN | CAP_RSS_PF);
        assert_eq!(o.res.num_queue_pairs, 4);
        assert_eq!(o.res.vsi_id, 7);
        assert_eq!(o.res.mac, Some([2, 0, 0, 0, 0, 9]));
        assert_eq!((o.res.rss_key_size, o.res.rss_lut_size), (52, 64));
        assert_eq!(b.next_request(), None);
        assert_eq!(
            b.on_message(&msg(OP_VERSION, 0, &version(1, 1))),
            Err(VcError::Finished)
        );
    }

    #[test]
    fn a_1_0_pf_gets_no_capability_word() {
        let mut b = BringUp::new(DRIVER_CAPS);
        b.on_message(&msg(OP_VERSION, 0, &version(1, 0))).unwrap();
        assert_eq!(
            b.next_request(),
            Some(Request::GetVfResources { caps: None })
        );
        let r = resources(CAP_L2 | CAP_VLAN | CAP_RSS_REG, 1, [0; 6]);
        b.on_message(&msg(OP_GET_VF_RESOURCES, 0, &r)).unwrap();
        let o = b.outcome().unwrap();
        assert_eq!(o.res.caps, CAP_L2 | CAP_VLAN, "RSS_REG is not ours");
        assert_eq!(o.res.mac, None, "a zero MAC is no MAC");
    }

    #[test]
    fn version_mismatches_and_pf_errors_fail() {
        for (maj, min) in [(2, 0), (1, 2), (0, 9)] {
            let mut b = BringUp::new(DRIVER_CAPS);
            let e = b
                .on_message(&msg(OP_VERSION, 0, &version(maj, min)))
                .unwrap_err();
            assert!(matches!(e, VcError::VersionMismatch { .. }), "{e}");
            assert_eq!(b.next_request(), None);
        }
        let mut b = BringUp::new(DRIVER_CAPS);
        b.on_message(&msg(OP_VERSION, 0, &version(1, 1))).unwrap();
        let e = b
            .on_message(&msg(OP_GET_VF_RESOURCES, STATUS_ERR_PARAM, &[]))
            .unwrap_err();
        assert_eq!(
            e,
            VcError::PfError {
                op: "GET_VF_RESOURCES",
                status: -5
            }
        );
        assert!(e.to_string().contains("ERR_PARAM"), "{e}");
    }

    #[test]
    fn events_interleave_and_reset_impending_ends_bring_up() {
        let mut b = BringUp::new(DRIVER_CAPS);
        let link = PfEvent::LinkChange(LinkInfo {
            up: true,
            speed_mbps: 25_000,
        });
        let ev = link.encode(true);
        assert_eq!(
            b.on_message(&msg(OP_EVENT, 0, &ev)),
            Ok(Step::Event(link)),
            "the advanced form: ADV_LINK_SPEED is asked for"
        );
        assert_eq!(b.next_request(), Some(Request::Version), "still waiting");
        b.on_message(&msg(OP_VERSION, 0, &version(1, 1))).unwrap();
        let e = b
            .on_message(&msg(OP_EVENT, 0, &PfEvent::ResetImpending.encode(true)))
            .unwrap_err();
        assert!(e.needs_reset(), "{e}");
        assert_eq!(b.next_request(), None);
        assert_eq!(b.events(), &[link]);
    }

    #[test]
    fn replies_are_checked() {
        let t = |req: Request, m: PfMessage<'_>| {
            Transaction::new(req, DRIVER_CAPS)
                .unwrap()
                .on_message(&m)
                .map(|s| match s {
                    Step::Reply(a) => a,
                    Step::Event(e) => panic!("event {e:?}"),
                })
        };
        assert!(matches!(
            t(Request::Version, msg(OP_VERSION, 0, &[1, 0, 0])),
            Err(VcError::Truncated {
                need: 8,
                got: 3,
                ..
            })
        ));
        assert!(matches!(
            t(Request::GetStats { vsi: 0 }, msg(OP_GET_STATS, 0, &[0; 95])),
            Err(VcError::Truncated { .. })
        ));
        assert_eq!(
            t(Request::GetRssHenaCaps, msg(OP_GET_STATS, 0, &[0; 8])),
            Err(VcError::OutOfOrder {
                op: "GET_RSS_HENA_CAPS",
                got: OP_GET_STATS
            })
        );
        assert_eq!(
            t(
                Request::GetRssHenaCaps,
                msg(OP_GET_RSS_HENA_CAPS, 0, &7u64.to_le_bytes())
            ),
            Ok(Answer::Hena(7))
        );
        assert_eq!(
            t(
                Request::RequestQueues(16),
                msg(OP_REQUEST_QUEUES, 0, &[4, 0])
            ),
            Ok(Answer::QueuesOffered(4))
        );
        assert_eq!(
            t(
                Request::RequestQueues(16),
                msg(OP_EVENT, 0, &PfEvent::ResetImpending.encode(false))
            ),
            Ok(Answer::QueuesGranted)
        );
        let s = EthStats {
            rx_bytes: 1,
            tx_errors: 12,
            ..EthStats::default()
        };
        assert_eq!(
            t(
                Request::GetStats { vsi: 0 },
                msg(OP_GET_STATS, 0, &s.encode())
            ),
            Ok(Answer::Stats(s))
        );
        // Resources: no SR-IOV VSI, truncated VSI array, zero queues, bad
        // RSS sizes.
        let mut r = resources(DRIVER_CAPS, 4, [2, 0, 0, 0, 0, 1]);
        r[24..28].copy_from_slice(&5i32.to_le_bytes());
        assert!(matches!(
            VfResources::parse(&r, DRIVER_CAPS),
            Err(VcError::NoSriovVsi { num_vsis: 1 })
        ));
        let mut r = resources(DRIVER_CAPS, 4, [2, 0, 0, 0, 0, 1]);
        r[0] = 3;
        assert!(matches!(
            VfResources::parse(&r, DRIVER_CAPS),
            Err(VcError::Truncated { need: 68, .. })
        ));
        let r = resources(DRIVER_CAPS, 0, [2, 0, 0, 0, 0, 1]);
        assert!(matches!(
            VfResources::parse(&r, DRIVER_CAPS),
            Err(VcError::BadValue { .. })
        ));
        let mut r = resources(DRIVER_CAPS, 4, [2, 0, 0, 0, 0, 1]);
        r[12..16].copy_from_slice(&0u32.to_le_bytes());
        assert!(matches!(
            VfResources::parse(&r, DRIVER_CAPS),
            Err(VcError::BadValue {
                what: "RSS key size",
                ..
            })
        ));
        let r = resources(DRIVER_CAPS, 64, [1, 0, 0, 0, 0, 1]);
        let v = VfResources::parse(&r, DRIVER_CAPS).unwrap();
        assert_eq!(v.num_queue_pairs, 16, "clamped to 16");
        assert_eq!(v.mac, None, "a multicast MAC is no MAC");
    }

    #[test]
    fn link_events_in_both_forms() {
        for adv in [false, true] {
            for speed in [100, 1_000, 2_500, 5_000, 10_000, 20_000, 25_000, 40_000] {
                let l = PfEvent::LinkChange(LinkInfo {
                    up: true,
                    speed_mbps: speed,
                });
                assert_eq!(PfEvent::parse(&l.encode(adv), adv), l);
            }
        }
        let mut e = PfEvent::LinkChange(LinkInfo {
            up: true,
            speed_mbps: 100_000,
        })
        .encode(true);
        assert_eq!(
            PfEvent::parse(&e, false),
            PfEvent::LinkChange(LinkInfo {
                up: true,
                speed_mbps: 0
            }),
            "100000 is no legacy enum value"
        );
        e[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            PfEvent::parse(&e, true),
            PfEvent::LinkChange(LinkInfo {
                up: true,
                speed_mbps: 0
            })
        );
        assert_eq!(PfEvent::parse(&[1, 0], true), PfEvent::Malformed { len: 2 });
        assert_eq!(
            PfEvent::parse(&PfEvent::Unknown(9).encode(true), true),
            PfEvent::Unknown(9)
        );
    }

    #[test]
    fn aq_descriptors_round_trip_and_are_checked() {
        let d = AqDesc::send_msg_to_pf(OP_CONFIG_VSI_QUEUES, 1032, 0x1_2345_6000);
        assert_eq!(
            d.flags,
            regs::AQ_FLAG_SI | regs::AQ_FLAG_BUF | regs::AQ_FLAG_RD | regs::AQ_FLAG_LB
        );
        assert_eq!(AqDesc::from_qwords(d.to_qwords()), d);
        assert_eq!(d.addr(), 0x1_2345_6000);
        assert_eq!(
            AqDesc::send_msg_to_pf(OP_RESET_VF, 0, 0x1000).flags,
            regs::AQ_FLAG_SI,
            "no buffer"
        );
        let p = AqDesc::arq_posted(0x2000, 4096);
        assert_eq!(p.flags, regs::AQ_FLAG_BUF | regs::AQ_FLAG_LB);
        let buf = [9u8; 16];
        let ok = AqDesc {
            opcode: regs::AQC_OPC_SEND_MSG_TO_VF,
            datalen: 8,
            cookie_high: OP_VERSION,
            cookie_low: (-5i32) as u32,
            flags: regs::AQ_FLAG_DD | regs::AQ_FLAG_CMP,
            ..AqDesc::default()
        };
        let m = PfMessage::from_arq(&ok, &buf).unwrap();
        assert_eq!((m.opcode, m.status, m.payload.len()), (1, -5, 8));
        let long = AqDesc { datalen: 17, ..ok };
        assert!(matches!(
            PfMessage::from_arq(&long, &buf),
            Err(VcError::Truncated { need: 17, .. })
        ));
        let err = AqDesc {
            flags: regs::AQ_FLAG_ERR,
            ..ok
        };
        assert!(PfMessage::from_arq(&err, &buf).is_err());
        let foreign = AqDesc {
            opcode: 0x0001,
            ..ok
        };
        assert!(PfMessage::from_arq(&foreign, &buf).is_err());
    }
}
