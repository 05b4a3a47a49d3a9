//! The PF/VF mailbox protocol, without I/O: messages as checked views,
//! reply validation, and the bring-up conversation as a state machine.
//!
//! Like the bond's LACP core, nothing here touches a register or a clock:
//! the edge ([`crate::mbx`]) moves words between the mailbox memory and
//! these types and says when a wait ran out. A PF reply is untrusted input:
//! every decoding is checked and every failure is a [`MbxError`], never a
//! panic, and no sequence of replies makes the machines loop (each reply
//! either advances them or ends them; see `fuzz_harness`).
//!
//! Message layout and codes: Linux `ixgbevf/mbx.h` (IXGBE_VF_*, IXGBE_VT_*,
//! `enum ixgbe_pfvf_api_rev`), the replies as Linux `ixgbevf/vf.c` and DPDK
//! `base/ixgbe_vf.c` read them (`ixgbevf_reset_hw_vf`,
//! `ixgbevf_negotiate_api_version`, `ixgbevf_get_queues`,
//! `ixgbevf_get_reta_locked`, `ixgbevf_get_rss_key_locked`,
//! `ixgbevf_update_xcast_mode`), and the PF's side as the Linux ixgbe PF
//! answers (every reply after a VF reset carries CTS; a VF the PF does not
//! consider reset gets FAILURE without CTS).

use crate::regs::MBX_WORDS;

// --- Message codes (mbx.h) ---

pub const MSG_VF_RESET: u32 = 0x01;
pub const MSG_SET_MAC_ADDR: u32 = 0x02;
pub const MSG_SET_MULTICAST: u32 = 0x03;
pub const MSG_SET_VLAN: u32 = 0x04;
pub const MSG_SET_LPE: u32 = 0x05;
pub const MSG_SET_MACVLAN: u32 = 0x06;
pub const MSG_API_NEGOTIATE: u32 = 0x08;
pub const MSG_GET_QUEUES: u32 = 0x09;
pub const MSG_GET_RETA: u32 = 0x0A;
pub const MSG_GET_RSS_KEY: u32 = 0x0B;
pub const MSG_UPDATE_XCAST_MODE: u32 = 0x0C;
/// An unsolicited PF message (reset notice, link change ping).
pub const MSG_PF_CONTROL: u32 = 0x0100;

/// Word 0 bits: SUCCESS (ACK), FAILURE (NACK), clear-to-send.
pub const MSGTYPE_ACK: u32 = 0x8000_0000;
pub const MSGTYPE_NACK: u32 = 0x4000_0000;
pub const MSGTYPE_CTS: u32 = 0x2000_0000;
/// Message code: the low 16 bits of word 0.
pub const MSG_CODE_MASK: u32 = 0xFFFF;
/// MSGINFO: bits 23:16 of word 0.
pub const MSGINFO_SHIFT: u32 = 16;
pub const MSGINFO_MASK: u32 = 0xFF << MSGINFO_SHIFT;

/// Words of the VF_RESET reply (IXGBE_VF_PERMADDR_MSG_LEN) and the word
/// holding the multicast filter type (IXGBE_VF_MC_TYPE_WORD).
pub const PERMADDR_MSG_LEN: usize = 4;
pub const MC_TYPE_WORD: usize = 3;
/// GET_QUEUES reply words (IXGBE_VF_TX_QUEUES .. IXGBE_VF_DEF_QUEUE).
pub const GQ_TX_QUEUES: usize = 1;
pub const GQ_RX_QUEUES: usize = 2;
pub const GQ_TRANS_VLAN: usize = 3;
pub const GQ_DEF_QUEUE: usize = 4;
/// Multicast hashes one SET_MULTICAST carries (16 bits each after word 0;
/// vf.c: "We have 30 16 bit words available").
pub const MAX_MC_HASHES: usize = 30;
/// Queues the reply may grant (IXGBE_VF_MAX_TX_QUEUES/_RX_QUEUES).
pub const MAX_VF_QUEUES: u32 = 8;

/// A mailbox API version. The wire values are the positions in
/// `enum ixgbe_pfvf_api_rev` (1.0 = 0, the never used 2.0 = 1, 1.1 = 2 ..).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Api {
    V10,
    V11,
    V12,
    V13,
    V14,
    V15,
}

impl Api {
    /// Highest first: the order the driver proposes them in (Linux
    /// ixgbevf_negotiate_api; 1.0 last, and kept when even it is refused,
    /// as DPDK does).
    pub const NEGOTIATION_ORDER: [Api; 6] =
        [Api::V15, Api::V14, Api::V13, Api::V12, Api::V11, Api::V10];

    /// The value API_NEGOTIATE carries in word 1.
    pub const fn wire(self) -> u32 {
        match self {
            Api::V10 => 0,
            Api::V11 => 2,
            Api::V12 => 3,
            Api::V13 => 4,
            Api::V14 => 5,
            Api::V15 => 6,
        }
    }

    /// The version of a wire value.
    pub const fn from_wire(v: u32) -> Option<Api> {
        match v {
            0 => Some(Api::V10),
            2 => Some(Api::V11),
            3 => Some(Api::V12),
            4 => Some(Api::V13),
            5 => Some(Api::V14),
            6 => Some(Api::V15),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Api::V10 => "1.0",
            Api::V11 => "1.1",
            Api::V12 => "1.2",
            Api::V13 => "1.3",
            Api::V14 => "1.4",
            Api::V15 => "1.5",
        }
    }

    /// The mailbox handshake this version uses once negotiated.
    pub const fn handshake(self) -> Handshake {
        match self {
            Api::V15 => Handshake::V15,
            _ => Handshake::Legacy,
        }
    }
}

impl std::fmt::Display for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How the VF moves one message through the mailbox registers. Linux
/// `ixgbevf/mbx.c` has one operation table for each: `ixgbevf_mbx_ops_legacy`
/// (every VF reset starts here) and `ixgbevf_mbx_ops`, taken once API 1.5 is
/// negotiated (`ixgbevf_negotiate_api`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Handshake {
    /// Send: take VFU, write, write REQ alone (which drops VFU), wait
    /// PFACK. Receive: wait PFSTS, take VFU, read, write ACK (drops VFU).
    Legacy,
    /// Send: take VFU, write, set REQ keeping VFU, wait PFACK, then drop
    /// VFU. Receive: wait PFSTS, read without taking VFU, set ACK.
    V15,
}

/// UPDATE_XCAST_MODE modes (`enum ixgbevf_xcast_modes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum XcastMode {
    None = 0,
    Multi = 1,
    AllMulti = 2,
    Promisc = 3,
}

impl XcastMode {
    /// The mode of a wire value.
    pub const fn from_wire(v: u32) -> Option<XcastMode> {
        match v {
            0 => Some(XcastMode::None),
            1 => Some(XcastMode::Multi),
            2 => Some(XcastMode::AllMulti),
            3 => Some(XcastMode::Promisc),
            _ => None,
        }
    }

    /// API 1.2 brought the message; 1.3 the promiscuous mode (vf.c
    /// ixgbevf_update_xcast_mode).
    pub const fn min_api(self) -> Api {
        match self {
            XcastMode::Promisc => Api::V13,
            _ => Api::V12,
        }
    }
}

/// A request of the VF.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Reset,
    SetMac([u8; 6]),
    /// Up to [`MAX_MC_HASHES`] 12-bit MTA vectors.
    SetMulticast(Vec<u16>),
    SetVlan {
        vid: u16,
        add: bool,
    },
    /// Largest frame the VF wants, header and FCS included.
    SetLpe {
        max_frame: u32,
    },
    /// Extra unicast filter `index` (1-based; 0 with no address clears the
    /// VF's list: vf.c ixgbevf_set_uc_addr_vf).
    SetMacvlan {
        index: u8,
        mac: Option<[u8; 6]>,
    },
    Negotiate(Api),
    GetQueues,
    GetReta,
    GetRssKey,
    UpdateXcast(XcastMode),
}

/// A message as it goes into the mailbox memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    words: [u32; MBX_WORDS],
    len: usize,
}

impl Message {
    /// The words to write (1 to 16).
    pub fn words(&self) -> &[u32] {
        &self.words[..self.len]
    }
}

impl Request {
    /// The message code.
    pub fn code(&self) -> u32 {
        match self {
            Request::Reset => MSG_VF_RESET,
            Request::SetMac(_) => MSG_SET_MAC_ADDR,
            Request::SetMulticast(_) => MSG_SET_MULTICAST,
            Request::SetVlan { .. } => MSG_SET_VLAN,
            Request::SetLpe { .. } => MSG_SET_LPE,
            Request::SetMacvlan { .. } => MSG_SET_MACVLAN,
            Request::Negotiate(_) => MSG_API_NEGOTIATE,
            Request::GetQueues => MSG_GET_QUEUES,
            Request::GetReta => MSG_GET_RETA,
            Request::GetRssKey => MSG_GET_RSS_KEY,
            Request::UpdateXcast(_) => MSG_UPDATE_XCAST_MODE,
        }
    }

    /// The request's name as mbx.h spells it, for errors.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Reset => "VF_RESET",
            Request::SetMac(_) => "SET_MAC_ADDR",
            Request::SetMulticast(_) => "SET_MULTICAST",
            Request::SetVlan { .. } => "SET_VLAN",
            Request::SetLpe { .. } => "SET_LPE",
            Request::SetMacvlan { .. } => "SET_MACVLAN",
            Request::Negotiate(_) => "API_NEGOTIATE",
            Request::GetQueues => "GET_QUEUES",
            Request::GetReta => "GET_RETA",
            Request::GetRssKey => "GET_RSS_KEY",
            Request::UpdateXcast(_) => "UPDATE_XCAST_MODE",
        }
    }

    /// The lowest API version under which the PF understands it.
    pub fn min_api(&self) -> Api {
        match self {
            Request::GetQueues => Api::V11,
            Request::GetReta | Request::GetRssKey => Api::V12,
            Request::UpdateXcast(m) => m.min_api(),
            _ => Api::V10,
        }
    }

    /// How many words of the reply to read: what Linux and DPDK read back
    /// for it (the reset reply's 4, GET_RETA's 1 + 128 / 16, GET_RSS_KEY's
    /// 1 + 10, GET_QUEUES' 5, otherwise the request's own length).
    pub fn reply_len(&self) -> usize {
        match self {
            Request::Reset => PERMADDR_MSG_LEN,
            Request::GetReta => 1 + crate::regs::RETA_82599_SIZE / 16,
            Request::GetRssKey => 1 + crate::regs::RSS_KEY_BYTES / 4,
            Request::GetQueues => 5,
            other => other.encode().len,
        }
    }

    /// The message words.
    pub fn encode(&self) -> Message {
        let mut w = [0u32; MBX_WORDS];
        w[0] = self.code();
        let len = match self {
            Request::Reset | Request::GetReta | Request::GetRssKey => 1,
            Request::SetMac(mac) => {
                let [a, b] = mac_words(*mac);
                w[1] = a;
                w[2] = b;
                3
            }
            Request::SetMulticast(hashes) => {
                let n = hashes.len().min(MAX_MC_HASHES);
                w[0] |= (n as u32) << MSGINFO_SHIFT;
                for (i, h) in hashes.iter().take(n).enumerate() {
                    // The PF reads the words after word 0 as an array of
                    // little-endian u16 (vf.c vector_list).
                    w[1 + i / 2] |= ((*h & 0x0FFF) as u32) << (16 * (i % 2));
                }
                MBX_WORDS
            }
            Request::SetVlan { vid, add } => {
                w[0] |= (*add as u32) << MSGINFO_SHIFT;
                w[1] = (*vid & 0x0FFF) as u32;
                2
            }
            Request::SetLpe { max_frame } => {
                w[1] = *max_frame;
                2
            }
            Request::SetMacvlan { index, mac } => {
                w[0] |= (*index as u32) << MSGINFO_SHIFT;
                if let Some(m) = mac {
                    let [a, b] = mac_words(*m);
                    w[1] = a;
                    w[2] = b;
                }
                3
            }
            Request::Negotiate(api) => {
                w[1] = api.wire();
                3
            }
            Request::GetQueues => 5,
            Request::UpdateXcast(m) => {
                w[1] = *m as u32;
                2
            }
        };
        Message { words: w, len }
    }
}

/// A MAC address as the two mailbox words the PF reads as six bytes.
pub fn mac_words(mac: [u8; 6]) -> [u32; 2] {
    [
        u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]),
        u32::from_le_bytes([mac[4], mac[5], 0, 0]),
    ]
}

/// The MAC address in two mailbox words.
pub fn words_mac(w1: u32, w2: u32) -> [u8; 6] {
    let a = w1.to_le_bytes();
    let b = w2.to_le_bytes();
    [a[0], a[1], a[2], a[3], b[0], b[1]]
}

fn valid_unicast(m: [u8; 6]) -> bool {
    m[0] & 1 == 0 && m != [0; 6]
}

/// The 12-bit multicast table vector of `addr` for the PF's filter type
/// (vf.c ixgbevf_mta_vector; the type comes in the VF_RESET reply). An
/// unknown type gives 0, as there.
pub fn mta_vector(mc_filter_type: u8, addr: [u8; 6]) -> u16 {
    let (a4, a5) = (addr[4] as u16, addr[5] as u16);
    let v = match mc_filter_type {
        0 => (a4 >> 4) | (a5 << 4),
        1 => (a4 >> 3) | (a5 << 5),
        2 => (a4 >> 2) | (a5 << 6),
        3 => a4 | (a5 << 8),
        _ => 0,
    };
    v & 0x0FFF
}

/// Why a PF reply is not the answer to our request, or why a request
/// cannot be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MbxError {
    #[error("{request}: reply of {got} words, {need} needed")]
    Truncated {
        request: &'static str,
        need: usize,
        got: usize,
    },
    #[error("{request}: reply {got:#010x} is for message {:#x}, not {sent:#x} (out of order)", got & MSG_CODE_MASK)]
    OutOfOrder {
        request: &'static str,
        sent: u32,
        got: u32,
    },
    #[error("{request}: the PF refused (reply {reply:#010x})")]
    Nack { request: &'static str, reply: u32 },
    #[error(
        "{request}: the PF refused without clear-to-send (reply {reply:#010x}): it does not \
         consider this VF reset; the VF must reset again"
    )]
    NotClearToSend { request: &'static str, reply: u32 },
    #[error("{request}: reply {reply:#010x} is neither SUCCESS nor FAILURE (or both)")]
    NoStatus { request: &'static str, reply: u32 },
    #[error("{request} needs mailbox API {needs} or later; the PF agreed to {api}")]
    Unsupported {
        request: &'static str,
        api: Api,
        needs: Api,
    },
    #[error("{request}: {what} {value:#x} in the reply is out of range")]
    BadValue {
        request: &'static str,
        what: &'static str,
        value: u32,
    },
    #[error("{request}: no usable MAC address: the PF assigned none and refused ours")]
    NoMac { request: &'static str },
    #[error("{request}: {stage} timed out after {ms} ms (is the PF driver running?)")]
    Timeout {
        request: &'static str,
        stage: &'static str,
        ms: u64,
    },
    #[error("the mailbox conversation is over (it failed or finished)")]
    Finished,
}

impl MbxError {
    /// The PF no longer considers the VF reset (it reset, or forgot us).
    pub fn lost_cts(&self) -> bool {
        matches!(self, MbxError::NotClearToSend { .. })
    }
}

/// Word 0 of a PF message, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header(pub u32);

impl Header {
    pub const fn code(self) -> u32 {
        self.0 & MSG_CODE_MASK
    }
    pub const fn ack(self) -> bool {
        self.0 & MSGTYPE_ACK != 0
    }
    pub const fn nack(self) -> bool {
        self.0 & MSGTYPE_NACK != 0
    }
    pub const fn cts(self) -> bool {
        self.0 & MSGTYPE_CTS != 0
    }
    pub const fn info(self) -> u8 {
        ((self.0 & MSGINFO_MASK) >> MSGINFO_SHIFT) as u8
    }
    /// An unsolicited PF control message.
    pub const fn is_control(self) -> bool {
        self.code() == MSG_PF_CONTROL
    }
}

/// What an unsolicited PF message means to the VF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PfEvent {
    /// A control message with CTS: the PF still knows us (a link ping).
    Ping,
    /// A control message without CTS: the PF reset and forgot this VF
    /// (Linux ixgbe_ping_all_vfs after a PF reset).
    ResetNotice,
    /// Anything else: a stale or foreign message, ignored.
    Other(u32),
}

/// Classifies a message the PF sent without being asked.
pub fn classify_unsolicited(word0: u32) -> PfEvent {
    let h = Header(word0);
    match (h.is_control(), h.cts()) {
        (true, true) => PfEvent::Ping,
        (true, false) => PfEvent::ResetNotice,
        (false, _) => PfEvent::Other(word0),
    }
}

/// A reply as a checked view over the words read from the mailbox.
#[derive(Clone, Copy, Debug)]
pub struct Reply<'a> {
    words: &'a [u32],
}

impl<'a> Reply<'a> {
    /// At least word 0, and at most the mailbox's 16 words are looked at.
    pub fn new_checked(request: &'static str, words: &'a [u32]) -> Result<Reply<'a>, MbxError> {
        if words.is_empty() {
            return Err(MbxError::Truncated {
                request,
                need: 1,
                got: 0,
            });
        }
        Ok(Reply {
            words: &words[..words.len().min(MBX_WORDS)],
        })
    }

    pub fn header(&self) -> Header {
        Header(self.words[0])
    }

    /// Payload word `i` (1..), if the reply has it.
    pub fn word(&self, i: usize) -> Option<u32> {
        self.words.get(i).copied()
    }

    fn need(&self, request: &'static str, n: usize) -> Result<(), MbxError> {
        if self.words.len() < n {
            return Err(MbxError::Truncated {
                request,
                need: n,
                got: self.words.len(),
            });
        }
        Ok(())
    }
}

/// The queues the PF gives the VF (GET_QUEUES), sanitised as Linux and
/// DPDK ixgbevf_get_queues do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    /// Transmit queues, 1..=8.
    pub tx: u16,
    /// Receive queues, 1..=8.
    pub rx: u16,
    /// Traffic classes (IXGBE_VF_TRANS_VLAN): more than 1 means DCB, one tx
    /// queue (at `default_queue`) and one rx queue per class.
    pub tcs: u16,
    /// The tx queue to use with DCB, < `tx`.
    pub default_queue: u16,
}

impl QueueConfig {
    /// What a VF has without GET_QUEUES (API 1.0): one queue each
    /// (ixgbe_init_ops_vf max_tx_queues = max_rx_queues = 1).
    pub const SINGLE: QueueConfig = QueueConfig {
        tx: 1,
        rx: 1,
        tcs: 0,
        default_queue: 0,
    };

    /// The tx queue registers the driver may use, in order.
    pub fn tx_queue_regs(&self) -> Vec<u16> {
        if self.tcs > 1 {
            vec![self.default_queue]
        } else {
            (0..self.tx).collect()
        }
    }

    /// How many rx queues the driver may use.
    pub fn rx_queues(&self) -> u16 {
        if self.tcs > 1 {
            self.tcs.min(self.rx)
        } else {
            self.rx
        }
    }
}

/// A validated answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// SUCCESS, nothing to carry.
    Ack,
    /// The VF_RESET reply: the administrator's MAC, if the PF has one, and
    /// the multicast filter type for [`mta_vector`].
    Reset {
        mac: Option<[u8; 6]>,
        mc_filter_type: u8,
    },
    Queues(QueueConfig),
    /// GET_RETA: 128 entries of 2 bits, as the PF compresses the 82599
    /// RETA for a VF (vf.c ixgbevf_get_reta_locked).
    Reta(Vec<u8>),
    /// GET_RSS_KEY: the 40-byte key.
    RssKey([u8; 40]),
    /// UPDATE_XCAST_MODE: the mode the PF granted, from word 1 (the Linux PF
    /// grants an untrusted VF at most MULTI and says so there:
    /// ixgbe_sriov.c ixgbe_update_vf_xcast_mode, `msgbuf[1] = xcast_mode`);
    /// `None` when word 1 holds no mode.
    Xcast(Option<XcastMode>),
}

/// Checks `words` as the reply to `req` (not an unsolicited message:
/// [`Header::is_control`] first). Never panics.
pub fn check_reply(req: &Request, words: &[u32]) -> Result<Answer, MbxError> {
    let name = req.name();
    let r = Reply::new_checked(name, words)?;
    let h = r.header();
    if h.code() != req.code() {
        return Err(MbxError::OutOfOrder {
            request: name,
            sent: req.code(),
            got: h.0,
        });
    }
    if h.ack() == h.nack() {
        return Err(MbxError::NoStatus {
            request: name,
            reply: h.0,
        });
    }
    if let Request::Reset = req {
        // The reset reply carries no CTS (the PF sets clear-to-send after
        // writing it) but always the filter type, SUCCESS or not.
        r.need(name, PERMADDR_MSG_LEN)?;
        let t = r.word(MC_TYPE_WORD).unwrap_or(0);
        if t > 3 {
            return Err(MbxError::BadValue {
                request: name,
                what: "multicast filter type",
                value: t,
            });
        }
        let mac = if h.ack() {
            let m = words_mac(r.word(1).unwrap_or(0), r.word(2).unwrap_or(0));
            if !valid_unicast(m) {
                return Err(MbxError::BadValue {
                    request: name,
                    what: "permanent MAC address (first word)",
                    value: r.word(1).unwrap_or(0),
                });
            }
            Some(m)
        } else {
            None
        };
        return Ok(Answer::Reset {
            mac,
            mc_filter_type: t as u8,
        });
    }
    if h.nack() {
        return Err(if h.cts() {
            MbxError::Nack {
                request: name,
                reply: h.0,
            }
        } else {
            MbxError::NotClearToSend {
                request: name,
                reply: h.0,
            }
        });
    }
    match req {
        Request::GetQueues => {
            r.need(name, 5)?;
            let clamp = |v: u32| -> u16 {
                if v == 0 || v > MAX_VF_QUEUES {
                    MAX_VF_QUEUES as u16
                } else {
                    v as u16
                }
            };
            let tx = clamp(r.word(GQ_TX_QUEUES).unwrap_or(0));
            let rx = clamp(r.word(GQ_RX_QUEUES).unwrap_or(0));
            let mut tcs = r.word(GQ_TRANS_VLAN).unwrap_or(0);
            // "in case of unknown state assume we cannot tag frames"
            if tcs > rx as u32 {
                tcs = 1;
            }
            let mut def = r.word(GQ_DEF_QUEUE).unwrap_or(0);
            // "default to queue 0 on out-of-bounds queue number"
            if def >= tx as u32 {
                def = 0;
            }
            Ok(Answer::Queues(QueueConfig {
                tx,
                rx,
                tcs: tcs as u16,
                default_queue: def as u16,
            }))
        }
        Request::GetReta => {
            let n = crate::regs::RETA_82599_SIZE / 16;
            r.need(name, 1 + n)?;
            let mut reta = Vec::with_capacity(crate::regs::RETA_82599_SIZE);
            for i in 0..n {
                let w = r.word(1 + i).unwrap_or(0);
                for j in 0..16 {
                    reta.push(((w >> (2 * j)) & 0x3) as u8);
                }
            }
            Ok(Answer::Reta(reta))
        }
        Request::GetRssKey => {
            r.need(name, 1 + crate::regs::RSS_KEY_BYTES / 4)?;
            let mut key = [0u8; 40];
            for i in 0..10 {
                key[4 * i..4 * i + 4].copy_from_slice(&r.word(1 + i).unwrap_or(0).to_le_bytes());
            }
            Ok(Answer::RssKey(key))
        }
        Request::UpdateXcast(_) => Ok(Answer::Xcast(r.word(1).and_then(XcastMode::from_wire))),
        _ => Ok(Answer::Ack),
    }
}

/// What one reply did to a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// An unsolicited PF message came before the reply; keep waiting for
    /// the reply (same deadline).
    Unsolicited(PfEvent),
    /// The reply was taken; look at `next_request` again.
    Advanced,
}

/// One request and its reply, for requests after bring-up.
#[derive(Clone, Debug)]
pub struct Transaction {
    req: Request,
    answer: Option<Answer>,
}

impl Transaction {
    /// A transaction for `req` under the negotiated `api`; fails without
    /// sending anything when the PF cannot understand it.
    pub fn new(req: Request, api: Api) -> Result<Transaction, MbxError> {
        let needs = req.min_api();
        if api < needs {
            return Err(MbxError::Unsupported {
                request: req.name(),
                api,
                needs,
            });
        }
        Ok(Transaction { req, answer: None })
    }

    pub fn request(&self) -> &Request {
        &self.req
    }

    /// Takes one message read after the request; `Ok(Some)` is the answer.
    pub fn on_reply(&mut self, words: &[u32]) -> Result<Option<Answer>, MbxError> {
        if self.answer.is_some() {
            return Err(MbxError::Finished);
        }
        let w0 = *words.first().ok_or(MbxError::Truncated {
            request: self.req.name(),
            need: 1,
            got: 0,
        })?;
        if Header(w0).is_control() {
            return Ok(None);
        }
        let a = check_reply(&self.req, words)?;
        self.answer = Some(a.clone());
        Ok(Some(a))
    }
}

/// What the driver wants from bring-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BringUpConfig {
    /// The MAC to set when the PF assigned none (or `prefer_mac`).
    pub fallback_mac: [u8; 6],
    /// The application chose `fallback_mac`: ask for it even when the PF
    /// assigned another (the PF agrees only for a trusted VF).
    pub prefer_mac: bool,
    /// The highest API version to propose.
    pub max_api: Api,
}

/// What bring-up found out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The MAC the PF assigned, if any.
    pub perm_mac: Option<[u8; 6]>,
    /// The MAC in force.
    pub mac: [u8; 6],
    /// The PF refused `fallback_mac` and the VF keeps the PF's.
    pub mac_refused: bool,
    pub mc_filter_type: u8,
    pub api: Api,
    pub queues: QueueConfig,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Reset,
    SetMac,
    Negotiate(usize),
    GetQueues,
    Done,
    Failed,
}

/// The bring-up conversation after a VF reset: VF_RESET, SET_MAC_ADDR when
/// needed, API_NEGOTIATE from the highest version down, GET_QUEUES.
///
/// Drive it: while [`BringUp::next_request`] gives a request, send it with
/// [`BringUp::handshake`], read messages until [`BringUp::on_reply`]
/// says [`Step::Advanced`] or fails, and call [`BringUp::on_timeout`] when a
/// wait runs out. At most [`BringUp::MAX_REQUESTS`] requests are asked for.
#[derive(Clone, Debug)]
pub struct BringUp {
    cfg: BringUpConfig,
    state: State,
    api: Api,
    perm_mac: Option<[u8; 6]>,
    mac: [u8; 6],
    mac_refused: bool,
    mc_filter_type: u8,
    queues: QueueConfig,
    events: Vec<PfEvent>,
}

impl BringUp {
    /// VF_RESET, SET_MAC_ADDR, six API versions, GET_QUEUES.
    pub const MAX_REQUESTS: usize = 3 + Api::NEGOTIATION_ORDER.len();

    pub fn new(cfg: BringUpConfig) -> BringUp {
        BringUp {
            mac: cfg.fallback_mac,
            cfg,
            state: State::Reset,
            api: Api::V10,
            perm_mac: None,
            mac_refused: false,
            mc_filter_type: 0,
            queues: QueueConfig::SINGLE,
            events: Vec::new(),
        }
    }

    /// The request to send now, if the conversation goes on.
    pub fn next_request(&self) -> Option<Request> {
        match self.state {
            State::Reset => Some(Request::Reset),
            State::SetMac => Some(Request::SetMac(self.cfg.fallback_mac)),
            State::Negotiate(i) => Some(Request::Negotiate(self.proposals()[i])),
            State::GetQueues => Some(Request::GetQueues),
            State::Done | State::Failed => None,
        }
    }

    /// The handshake for the next message: legacy until 1.5 is agreed.
    pub fn handshake(&self) -> Handshake {
        self.api.handshake()
    }

    /// Unsolicited PF messages seen meanwhile.
    pub fn events(&self) -> &[PfEvent] {
        &self.events
    }

    /// The result, once done.
    pub fn outcome(&self) -> Option<Outcome> {
        (self.state == State::Done).then_some(Outcome {
            perm_mac: self.perm_mac,
            mac: self.mac,
            mac_refused: self.mac_refused,
            mc_filter_type: self.mc_filter_type,
            api: self.api,
            queues: self.queues,
        })
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn proposals(&self) -> &'static [Api] {
        let skip = Api::NEGOTIATION_ORDER
            .iter()
            .position(|a| *a <= self.cfg.max_api)
            .unwrap_or(Api::NEGOTIATION_ORDER.len() - 1);
        &Api::NEGOTIATION_ORDER[skip..]
    }

    fn after_mac(&mut self) {
        self.state = State::Negotiate(0);
    }

    fn after_api(&mut self) {
        self.state = if self.api >= Api::V11 {
            State::GetQueues
        } else {
            State::Done
        };
    }

    fn fail(&mut self, e: MbxError) -> Result<Step, MbxError> {
        self.state = State::Failed;
        Err(e)
    }

    /// A wait for the current request ran out: the conversation fails.
    pub fn on_timeout(&mut self, stage: &'static str, ms: u64) -> MbxError {
        let request = self.next_request().map(|r| r.name()).unwrap_or("mailbox");
        self.state = State::Failed;
        MbxError::Timeout { request, stage, ms }
    }

    /// Takes one message read after the current request.
    pub fn on_reply(&mut self, words: &[u32]) -> Result<Step, MbxError> {
        let Some(req) = self.next_request() else {
            return Err(MbxError::Finished);
        };
        let Some(&w0) = words.first() else {
            return self.fail(MbxError::Truncated {
                request: req.name(),
                need: 1,
                got: 0,
            });
        };
        if Header(w0).is_control() {
            let ev = classify_unsolicited(w0);
            self.events.push(ev);
            // A reset notice while we bring the VF up from its own reset
            // is about the state we are leaving; the reply will tell.
            return Ok(Step::Unsolicited(ev));
        }
        let ans = match (check_reply(&req, words), self.state) {
            (Ok(a), _) => a,
            // An older version refused with CTS: propose the next one.
            (Err(MbxError::Nack { .. }), State::Negotiate(i)) => {
                if i + 1 < self.proposals().len() {
                    self.state = State::Negotiate(i + 1);
                } else {
                    // Even 1.0 refused: keep the reset's 1.0, as DPDK does.
                    self.api = Api::V10;
                    self.after_api();
                }
                return Ok(Step::Advanced);
            }
            // A refused MAC with the PF's own to fall back on (vf.c
            // ixgbevf_set_rar_vf: "if nacked the address was rejected, use
            // perm_addr").
            (Err(MbxError::Nack { .. }), State::SetMac) if self.perm_mac.is_some() => {
                self.mac = self.perm_mac.unwrap_or(self.mac);
                self.mac_refused = true;
                self.after_mac();
                return Ok(Step::Advanced);
            }
            (Err(MbxError::Nack { request, .. }), State::SetMac) => {
                return self.fail(MbxError::NoMac { request });
            }
            (Err(e), _) => return self.fail(e),
        };
        match (self.state, ans) {
            (
                State::Reset,
                Answer::Reset {
                    mac,
                    mc_filter_type,
                },
            ) => {
                self.perm_mac = mac;
                self.mc_filter_type = mc_filter_type;
                match mac {
                    Some(m) if !self.cfg.prefer_mac || m == self.cfg.fallback_mac => {
                        self.mac = m;
                        self.after_mac();
                    }
                    _ => self.state = State::SetMac,
                }
            }
            (State::SetMac, Answer::Ack) => {
                self.mac = self.cfg.fallback_mac;
                self.after_mac();
            }
            (State::Negotiate(i), Answer::Ack) => {
                self.api = self.proposals()[i];
                self.after_api();
            }
            (State::GetQueues, Answer::Queues(q)) => {
                self.queues = q;
                self.state = State::Done;
            }
            (_, a) => {
                // check_reply answers each request with its own kind.
                debug_assert!(false, "unexpected answer {a:?}");
                return self.fail(MbxError::Finished);
            }
        }
        Ok(Step::Advanced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BringUpConfig {
        BringUpConfig {
            fallback_mac: [2, 0x50, 0, 0, 4, 0],
            prefer_mac: false,
            max_api: Api::V15,
        }
    }

    fn ack(code: u32) -> u32 {
        code | MSGTYPE_ACK | MSGTYPE_CTS
    }
    fn nack(code: u32) -> u32 {
        code | MSGTYPE_NACK | MSGTYPE_CTS
    }

    fn reset_ack(mac: [u8; 6], t: u32) -> Vec<u32> {
        let [a, b] = mac_words(mac);
        vec![MSG_VF_RESET | MSGTYPE_ACK, a, b, t]
    }

    #[test]
    fn encodes_as_mbx_h_lays_it_out() {
        assert_eq!(Request::Reset.encode().words(), &[1]);
        assert_eq!(Request::Negotiate(Api::V15).encode().words(), &[8, 6, 0]);
        assert_eq!(Request::Negotiate(Api::V11).encode().words(), &[8, 2, 0]);
        assert_eq!(
            Request::SetVlan {
                vid: 0x1064,
                add: true
            }
            .encode()
            .words(),
            &[4 | 1 << 16, 0x064]
        );
        assert_eq!(
            Request::UpdateXcast(XcastMode::AllMulti).encode().words(),
            &[0x0c, 2]
        );
        let m = Request::SetMac([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]).encode();
        assert_eq!(m.words(), &[2, 0x3322_1102, 0x5544]);
        let mc = Request::SetMulticast(vec![0x123, 0x456, 0x789]).encode();
        assert_eq!(mc.words().len(), 16);
        assert_eq!(mc.words()[0], 3 | 3 << 16);
        assert_eq!(mc.words()[1], 0x0456_0123);
        assert_eq!(mc.words()[2], 0x789);
        let many = Request::SetMulticast(vec![1; 40]).encode();
        assert_eq!(Header(many.words()[0]).info(), 30);
        for (a, w) in [(Api::V10, 0), (Api::V12, 3), (Api::V14, 5)] {
            assert_eq!(a.wire(), w);
            assert_eq!(Api::from_wire(w), Some(a));
        }
        assert_eq!(
            Api::from_wire(1),
            None,
            "2.0 is Solaris-only, never proposed"
        );
    }

    #[test]
    fn mta_vectors_for_each_filter_type() {
        let a = [0x01, 0x00, 0x5e, 0x00, 0xab, 0xcd];
        assert_eq!(mta_vector(0, a), ((0xab >> 4) | (0xcd << 4)) & 0xfff);
        assert_eq!(mta_vector(1, a), ((0xab >> 3) | (0xcd << 5)) & 0xfff);
        assert_eq!(mta_vector(2, a), ((0xab >> 2) | (0xcd << 6)) & 0xfff);
        assert_eq!(mta_vector(3, a), (0xab | (0xcd << 8)) & 0xfff);
        assert_eq!(mta_vector(9, a), 0);
    }

    #[test]
    fn bring_up_with_admin_mac_and_api_15() {
        let mut b = BringUp::new(cfg());
        assert_eq!(b.next_request(), Some(Request::Reset));
        assert_eq!(b.handshake(), Handshake::Legacy);
        let pf_mac = [2, 9, 9, 9, 9, 9];
        assert_eq!(b.on_reply(&reset_ack(pf_mac, 1)), Ok(Step::Advanced));
        assert_eq!(b.next_request(), Some(Request::Negotiate(Api::V15)));
        b.on_reply(&[ack(MSG_API_NEGOTIATE), 6, 0]).unwrap();
        assert_eq!(b.handshake(), Handshake::V15, "1.5 switches the handshake");
        assert_eq!(b.next_request(), Some(Request::GetQueues));
        b.on_reply(&[ack(MSG_GET_QUEUES), 2, 2, 0, 0]).unwrap();
        let o = b.outcome().unwrap();
        assert_eq!(
            (o.mac, o.perm_mac, o.api, o.mc_filter_type),
            (pf_mac, Some(pf_mac), Api::V15, 1)
        );
        assert_eq!(
            o.queues,
            QueueConfig {
                tx: 2,
                rx: 2,
                tcs: 0,
                default_queue: 0
            }
        );
        assert_eq!(b.next_request(), None);
    }

    #[test]
    fn every_negotiation_outcome() {
        for (accept_at, want) in [
            (0, Api::V15),
            (1, Api::V14),
            (2, Api::V13),
            (3, Api::V12),
            (4, Api::V11),
            (5, Api::V10),
            (6, Api::V10),
        ] {
            let mut b = BringUp::new(cfg());
            b.on_reply(&reset_ack([2, 1, 1, 1, 1, 1], 0)).unwrap();
            let mut i = 0;
            while let Some(Request::Negotiate(v)) = b.next_request() {
                assert_eq!(v, Api::NEGOTIATION_ORDER[i]);
                let w = if i == accept_at {
                    ack(MSG_API_NEGOTIATE)
                } else {
                    nack(MSG_API_NEGOTIATE)
                };
                b.on_reply(&[w, v.wire(), 0]).unwrap();
                i += 1;
            }
            if want >= Api::V11 {
                assert_eq!(b.next_request(), Some(Request::GetQueues));
                b.on_reply(&[ack(MSG_GET_QUEUES), 4, 4, 1, 0]).unwrap();
            }
            let o = b.outcome().unwrap();
            assert_eq!(o.api, want, "accept at {accept_at}");
            assert_eq!(b.handshake(), want.handshake());
            if want == Api::V10 {
                assert_eq!(o.queues, QueueConfig::SINGLE);
            }
        }
    }

    #[test]
    fn max_api_caps_the_proposals() {
        let mut b = BringUp::new(BringUpConfig {
            max_api: Api::V13,
            ..cfg()
        });
        b.on_reply(&reset_ack([2, 1, 1, 1, 1, 1], 0)).unwrap();
        assert_eq!(b.next_request(), Some(Request::Negotiate(Api::V13)));
    }

    #[test]
    fn no_admin_mac_sets_ours_and_a_refusal_without_fallback_fails() {
        let mut b = BringUp::new(cfg());
        b.on_reply(&[MSG_VF_RESET | MSGTYPE_NACK, 0, 0, 0]).unwrap();
        assert_eq!(b.next_request(), Some(Request::SetMac(cfg().fallback_mac)));
        b.on_reply(&[ack(MSG_SET_MAC_ADDR)]).unwrap();
        assert!(matches!(
            b.next_request(),
            Some(Request::Negotiate(Api::V15))
        ));

        let mut b = BringUp::new(cfg());
        b.on_reply(&[MSG_VF_RESET | MSGTYPE_NACK, 0, 0, 0]).unwrap();
        let e = b.on_reply(&[nack(MSG_SET_MAC_ADDR)]).unwrap_err();
        assert_eq!(
            e,
            MbxError::NoMac {
                request: "SET_MAC_ADDR"
            }
        );
        assert_eq!(b.next_request(), None);
        assert_eq!(b.on_reply(&[ack(1)]), Err(MbxError::Finished));
    }

    #[test]
    fn a_preferred_mac_the_pf_refuses_falls_back_to_the_pfs() {
        let mut b = BringUp::new(BringUpConfig {
            prefer_mac: true,
            ..cfg()
        });
        let pf = [2, 7, 7, 7, 7, 7];
        b.on_reply(&reset_ack(pf, 0)).unwrap();
        assert_eq!(b.next_request(), Some(Request::SetMac(cfg().fallback_mac)));
        b.on_reply(&[nack(MSG_SET_MAC_ADDR)]).unwrap();
        b.on_reply(&[nack(MSG_API_NEGOTIATE)]).unwrap();
        b.on_reply(&[ack(MSG_API_NEGOTIATE)]).unwrap();
        b.on_reply(&[ack(MSG_GET_QUEUES), 1, 1, 0, 0]).unwrap();
        let o = b.outcome().unwrap();
        assert_eq!((o.mac, o.mac_refused, o.api), (pf, true, Api::V14));
    }

    #[test]
    fn bad_replies_are_typed_errors() {
        let reset = Request::Reset;
        assert!(matches!(
            check_reply(&reset, &[]),
            Err(MbxError::Truncated { need: 1, .. })
        ));
        assert!(matches!(
            check_reply(&reset, &[MSG_VF_RESET | MSGTYPE_ACK, 0]),
            Err(MbxError::Truncated {
                need: 4,
                got: 2,
                ..
            })
        ));
        assert!(matches!(
            check_reply(&reset, &[MSG_SET_LPE | MSGTYPE_ACK, 0, 0, 0]),
            Err(MbxError::OutOfOrder { sent: 1, .. })
        ));
        assert!(matches!(
            check_reply(&reset, &[MSG_VF_RESET, 0, 0, 0]),
            Err(MbxError::NoStatus { .. })
        ));
        assert!(matches!(
            check_reply(
                &reset,
                &[MSG_VF_RESET | MSGTYPE_ACK | MSGTYPE_NACK, 0, 0, 0]
            ),
            Err(MbxError::NoStatus { .. })
        ));
        assert!(
            matches!(
                check_reply(&reset, &reset_ack([1, 0, 0, 0, 0, 0], 0)),
                Err(MbxError::BadValue { .. })
            ),
            "a multicast permanent address"
        );
        assert!(matches!(
            check_reply(&reset, &reset_ack([2, 0, 0, 0, 0, 1], 4)),
            Err(MbxError::BadValue { .. })
        ));
        let lpe = Request::SetLpe { max_frame: 1518 };
        assert!(matches!(
            check_reply(&lpe, &[nack(MSG_SET_LPE)]),
            Err(MbxError::Nack { .. })
        ));
        let e = check_reply(&lpe, &[MSG_SET_LPE | MSGTYPE_NACK]).unwrap_err();
        assert!(e.lost_cts(), "{e}");
        let q = Request::GetQueues;
        assert!(matches!(
            check_reply(&q, &[ack(MSG_GET_QUEUES), 1, 1]),
            Err(MbxError::Truncated { .. })
        ));
        // Out-of-range counts are clamped as the sources do, never trusted.
        assert_eq!(
            check_reply(&q, &[ack(MSG_GET_QUEUES), 0, 99, 77, 55]),
            Ok(Answer::Queues(QueueConfig {
                tx: 8,
                rx: 8,
                tcs: 1,
                default_queue: 0
            }))
        );
    }

    #[test]
    fn garbage_during_bring_up_fails_once_and_stays_failed() {
        let mut b = BringUp::new(cfg());
        assert!(b.on_reply(&[0xdead_beef]).is_err());
        assert_eq!(b.next_request(), None);
        let mut b = BringUp::new(cfg());
        b.on_reply(&reset_ack([2, 1, 1, 1, 1, 1], 0)).unwrap();
        let e = b.on_reply(&[MSG_API_NEGOTIATE | MSGTYPE_NACK]).unwrap_err();
        assert!(
            e.lost_cts(),
            "a negotiation NACK without CTS is not a version refusal"
        );
        let mut b = BringUp::new(cfg());
        let e = b.on_timeout("waiting for the PF's reply", 50);
        assert!(matches!(
            e,
            MbxError::Timeout {
                request: "VF_RESET",
                ms: 50,
                ..
            }
        ));
        assert!(!b.is_done());
    }

    #[test]
    fn control_messages_before_a_reply_are_set_aside() {
        let mut b = BringUp::new(cfg());
        assert_eq!(
            b.on_reply(&[MSG_PF_CONTROL]),
            Ok(Step::Unsolicited(PfEvent::ResetNotice))
        );
        assert_eq!(
            b.on_reply(&[MSG_PF_CONTROL | MSGTYPE_CTS]),
            Ok(Step::Unsolicited(PfEvent::Ping))
        );
        assert_eq!(
            b.next_request(),
            Some(Request::Reset),
            "still waiting for the reset reply"
        );
        b.on_reply(&reset_ack([2, 1, 1, 1, 1, 1], 2)).unwrap();
        assert_eq!(b.events().len(), 2);
    }

    #[test]
    fn transactions_check_the_api_before_sending() {
        let e = Transaction::new(Request::UpdateXcast(XcastMode::Promisc), Api::V12).unwrap_err();
        assert_eq!(
            e,
            MbxError::Unsupported {
                request: "UPDATE_XCAST_MODE",
                api: Api::V12,
                needs: Api::V13
            }
        );
        assert!(Transaction::new(Request::GetQueues, Api::V10).is_err());
        let mut t = Transaction::new(Request::GetRssKey, Api::V12).unwrap();
        assert_eq!(t.on_reply(&[MSG_PF_CONTROL | MSGTYPE_CTS]), Ok(None));
        let mut w = vec![ack(MSG_GET_RSS_KEY)];
        w.extend((0..10u32).map(|i| i * 0x0101_0101));
        let Some(Answer::RssKey(k)) = t.on_reply(&w).unwrap() else {
            panic!()
        };
        assert_eq!(&k[4..8], &[1, 1, 1, 1]);
        assert_eq!(t.on_reply(&w), Err(MbxError::Finished));
        let mut t = Transaction::new(Request::GetReta, Api::V13).unwrap();
        let mut w = vec![ack(MSG_GET_RETA)];
        w.extend([0x4444_4444u32; 8]);
        let Some(Answer::Reta(r)) = t.on_reply(&w).unwrap() else {
            panic!()
        };
        assert_eq!(r.len(), 128);
        assert!(r.chunks(2).all(|c| c == [0, 1]));
    }
}
