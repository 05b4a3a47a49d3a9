//! A software stand-in for the device side of the descriptor rings, for
//! tests and benches that run without hardware.
//!
//! It does what the 82599 does with a ring, from the datasheet's
//! description of the advanced descriptors: fetch descriptors between head
//! and tail, copy frames into/out of the buffers they point to, write back
//! the descriptor with DD last. [`SimPf`] plays the PF behind the mailbox. The rings
//! and buffers must live in memory whose IOVA is its virtual address
//! ([`pollux_core::AnonMemory`]), and the registers in a
//! [`pollux_vfio::Bar::plain_memory`], where the driver's tail writes land.
//!
//! Like a device, it writes and reads through whatever address a
//! descriptor holds, so `SimRx::deliver` and `SimTx::process` are
//! `unsafe`; the module exists only with the `testing` feature. The ring
//! side is pollux-intel's, shared with pollux-igbvf.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::proto::{self, Api, Handshake};
use crate::regs::{self, Regs};

/// The device side of one receive ring (pollux-intel's, with this
/// family's registers).
pub type SimRx = pollux_intel::testing::SimRx<crate::Ixgbevf>;
/// The device side of one transmit ring (pollux-intel's, with this
/// family's registers): CC says a data descriptor uses context 0.
pub type SimTx = pollux_intel::testing::SimTx<crate::Ixgbevf>;

pub use pollux_intel::testing::{reg, SentFrame};

/// What the simulated PF does with one request instead of answering it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Takes the request (PFACK) and never answers.
    Silent,
    /// Never even takes it (no PFACK).
    Deaf,
    /// Answers with this word 0 and zeros.
    Garbage(u32),
    /// Sends a control ping (with CTS) before the reply.
    PingFirst,
    /// Answers FAILURE with CTS.
    Nack,
    /// Answers FAILURE without CTS (it forgot the VF).
    LostCts,
}

/// How the simulated PF is set up, as an administrator would set it.
#[derive(Clone, Debug)]
pub struct PfSetup {
    /// The highest API version the PF agrees to.
    pub max_api: Api,
    /// `ip link set <pf> vf N mac ...`.
    pub admin_mac: Option<[u8; 6]>,
    /// `ip link set <pf> vf N trust on`.
    pub trusted: bool,
    /// GET_QUEUES reply words 1..=4: tx, rx, traffic classes, default queue.
    pub queues: [u32; 4],
    /// The multicast filter type the reset reply carries.
    pub mc_filter_type: u32,
    /// A port VLAN: the VF may not change VLAN filters.
    pub port_vlan: bool,
    /// GET_RETA/GET_RSS_KEY allowed (`ip link set <pf> vf N query_rss on`).
    pub rss_query: bool,
    /// Promiscuous xcast mode is refused (an 82599 PF: "mac.type <=
    /// ixgbe_mac_82599EB").
    pub promisc_unsupported: bool,
}

impl Default for PfSetup {
    fn default() -> Self {
        PfSetup {
            max_api: Api::V15,
            admin_mac: None,
            trusted: false,
            queues: [2, 2, 0, 0],
            mc_filter_type: 0,
            port_vlan: false,
            rss_query: true,
            promisc_unsupported: false,
        }
    }
}

/// The PF's view of the VF and the mailbox.
#[derive(Debug, Default)]
pub struct PfState {
    pub setup: PfSetup,
    vfu: bool,
    rsti: bool,
    /// Read-to-clear bits waiting for the VF's next read.
    r2c: u32,
    mem: [u32; regs::MBX_WORDS],
    /// A message is in the memory and not yet acknowledged.
    outstanding: bool,
    outbox: VecDeque<Vec<u32>>,
    /// The handshake the PF expects (legacy until it agreed to 1.5).
    pub handshake: Option<Handshake>,
    pub cts: bool,
    pub api: Option<Api>,
    /// Every request the PF took, word by word.
    pub log: Vec<Vec<u32>>,
    /// Handshake rules the VF broke.
    pub violations: Vec<String>,
    pub mac: Option<[u8; 6]>,
    pub max_frame: u32,
    pub mc_hashes: Vec<u16>,
    pub vlans: BTreeSet<u16>,
    pub xcast: u32,
    pub macvlans: Vec<[u8; 6]>,
    pub vf_resets: u32,
    /// The VF has yet to read the PF's agreement to 1.5; the 1.5
    /// handshake starts once it acknowledged it.
    switch_on_ack: bool,
    /// Faults to apply, the first matching a request's code used once.
    pub faults: Vec<(u32, Fault)>,
    regs: HashMap<u32, u32>,
}

/// A PF behind the mailbox registers of a VF, answering as the Linux ixgbe
/// PF does (ixgbe_sriov.c ixgbe_rcv_msg_from_vf: FAILURE without CTS to a
/// VF it does not consider reset, SUCCESS or FAILURE with CTS otherwise;
/// the reset reply without CTS and with the filter type in word 3), and
/// checking that the VF keeps the handshake it negotiated: in the legacy
/// one the VF holds VFU to read, in the 1.5 one it holds VFU through REQ
/// until PFACK and reads without it. The PF writes a reply only while the
/// VF does not hold the buffer. Registers other than the mailbox are plain
/// memory.
#[derive(Debug, Default)]
pub struct SimPf(pub RefCell<PfState>);

impl SimPf {
    pub fn new(setup: PfSetup) -> SimPf {
        let pf = SimPf::default();
        pf.0.borrow_mut().setup = setup;
        pf
    }

    /// The PF resets: RSTI while it is down, then RSTD and a control
    /// message without CTS once it is back; it forgot the VF.
    pub fn pf_reset(&self, back: bool) {
        let mut st = self.0.borrow_mut();
        st.cts = false;
        st.api = None;
        // The VF learns of the reset only from this; it reads the notice
        // in the handshake it had, and goes back to the legacy one with
        // its own reset (VFCTRL.RST below).
        st.rsti = !back;
        if back {
            st.r2c |= regs::MBX_RSTD;
            st.outbox.push_back(vec![proto::MSG_PF_CONTROL]);
            Self::deliver(&mut st);
        }
    }

    /// A control ping with CTS (link change).
    pub fn ping(&self) {
        let mut st = self.0.borrow_mut();
        st.outbox
            .push_back(vec![proto::MSG_PF_CONTROL | proto::MSGTYPE_CTS]);
        Self::deliver(&mut st);
    }

    /// Sets a plain register (VFLINKS, counters).
    pub fn set_reg(&self, off: u32, val: u32) {
        self.0.borrow_mut().regs.insert(off, val);
    }

    fn hs(st: &PfState) -> Handshake {
        st.handshake.unwrap_or(Handshake::Legacy)
    }

    fn deliver(st: &mut PfState) {
        if st.vfu || st.outstanding {
            return;
        }
        if let Some(m) = st.outbox.pop_front() {
            st.mem = [0; regs::MBX_WORDS];
            for (i, w) in m.iter().take(regs::MBX_WORDS).enumerate() {
                st.mem[i] = *w;
            }
            st.outstanding = true;
            st.r2c |= regs::MBX_PFSTS;
        }
    }

    fn take_request(st: &mut PfState) {
        // The VF flushed PFSTS before writing: an unread message is gone.
        st.outstanding = false;
        let msg = st.mem.to_vec();
        let code = msg[0] & proto::MSG_CODE_MASK;
        st.log.push(msg.clone());
        let fault = st
            .faults
            .iter()
            .position(|(c, _)| *c == code)
            .map(|i| st.faults.remove(i).1);
        if fault == Some(Fault::Deaf) {
            return;
        }
        st.r2c |= regs::MBX_PFACK;
        let reply = match fault {
            Some(Fault::Silent) | Some(Fault::Deaf) => return,
            Some(Fault::Garbage(w)) => vec![w, 0, 0, 0, 0],
            Some(Fault::Nack) => vec![msg[0] | proto::MSGTYPE_NACK | proto::MSGTYPE_CTS],
            Some(Fault::LostCts) => vec![msg[0] | proto::MSGTYPE_NACK],
            Some(Fault::PingFirst) => {
                st.outbox
                    .push_back(vec![proto::MSG_PF_CONTROL | proto::MSGTYPE_CTS]);
                Self::answer(st, &msg)
            }
            None => Self::answer(st, &msg),
        };
        st.outbox.push_back(reply);
        // The PF switches to the 1.5 handshake once it agreed to 1.5 (the
        // agreement itself goes out in the old one: the VF reads it so).
        if code == proto::MSG_API_NEGOTIATE && st.api == Some(Api::V15) {
            st.switch_on_ack = true;
        }
    }

    fn answer(st: &mut PfState, msg: &[u32]) -> Vec<u32> {
        let code = msg[0] & proto::MSG_CODE_MASK;
        let info = (msg[0] & proto::MSGINFO_MASK) >> proto::MSGINFO_SHIFT;
        if code == proto::MSG_VF_RESET {
            st.cts = true;
            st.api = Some(Api::V10);
            st.handshake = Some(Handshake::Legacy);
            st.mac = st.setup.admin_mac;
            st.vlans.clear();
            st.mc_hashes.clear();
            st.xcast = 0;
            return match st.mac {
                Some(m) => {
                    let [a, b] = proto::mac_words(m);
                    vec![
                        proto::MSG_VF_RESET | proto::MSGTYPE_ACK,
                        a,
                        b,
                        st.setup.mc_filter_type,
                    ]
                }
                None => vec![
                    proto::MSG_VF_RESET | proto::MSGTYPE_NACK,
                    0,
                    0,
                    st.setup.mc_filter_type,
                ],
            };
        }
        if !st.cts {
            return vec![msg[0] | proto::MSGTYPE_NACK];
        }
        let api = st.api.unwrap_or(Api::V10);
        let mut reply = vec![msg[0]];
        let ok = match code {
            proto::MSG_SET_MAC_ADDR => {
                let m = proto::words_mac(msg[1], msg[2]);
                if st.setup.admin_mac.is_some_and(|a| a != m) && !st.setup.trusted {
                    false
                } else {
                    st.mac = Some(m);
                    true
                }
            }
            proto::MSG_SET_MULTICAST => {
                let n = (info as usize).min(proto::MAX_MC_HASHES);
                st.mc_hashes = (0..n)
                    .map(|i| (msg[1 + i / 2] >> (16 * (i % 2))) as u16)
                    .collect();
                true
            }
            proto::MSG_SET_VLAN => {
                if st.setup.port_vlan {
                    false
                } else {
                    let vid = (msg[1] & 0xFFF) as u16;
                    if info != 0 {
                        st.vlans.insert(vid);
                    } else {
                        st.vlans.remove(&vid);
                    }
                    true
                }
            }
            proto::MSG_SET_LPE => {
                let ok = (68..=9728).contains(&msg[1]);
                if ok {
                    st.max_frame = msg[1];
                }
                ok
            }
            proto::MSG_SET_MACVLAN => {
                if info == 0 {
                    st.macvlans.clear();
                } else {
                    st.macvlans.push(proto::words_mac(msg[1], msg[2]));
                }
                true
            }
            proto::MSG_API_NEGOTIATE => match Api::from_wire(msg[1]) {
                Some(v) if v <= st.setup.max_api => {
                    st.api = Some(v);
                    true
                }
                _ => false,
            },
            proto::MSG_GET_QUEUES if api >= Api::V11 => {
                reply.extend_from_slice(&st.setup.queues);
                true
            }
            proto::MSG_GET_RETA if api >= Api::V12 && st.setup.rss_query => {
                // Queue 0, 1, 0, 1, ... two bits per entry.
                reply.extend([0x4444_4444u32; 8]);
                true
            }
            proto::MSG_GET_RSS_KEY if api >= Api::V12 && st.setup.rss_query => {
                reply.extend((0..10u32).map(|i| 0x0101_0101 * i));
                true
            }
            proto::MSG_UPDATE_XCAST_MODE if api >= Api::V12 => {
                let mut mode = msg[1];
                if mode == 3 && (api < Api::V13 || st.setup.promisc_unsupported) {
                    false
                } else {
                    if mode > 1 && !st.setup.trusted {
                        mode = 1;
                    }
                    st.xcast = mode;
                    reply.push(mode);
                    true
                }
            }
            _ => false,
        };
        reply[0] |= if ok {
            proto::MSGTYPE_ACK
        } else {
            proto::MSGTYPE_NACK
        } | proto::MSGTYPE_CTS;
        reply
    }
}

impl Regs for SimPf {
    fn read32(&self, off: u32) -> u32 {
        let mut st = self.0.borrow_mut();
        match off {
            regs::VFMAILBOX => {
                let v = st.r2c
                    | if st.vfu { regs::MBX_VFU } else { 0 }
                    | if st.rsti { regs::MBX_RSTI } else { 0 };
                st.r2c = 0;
                v
            }
            o if (regs::VFMBMEM..regs::VFMBMEM + 64).contains(&o) => {
                if Self::hs(&st) == Handshake::Legacy && !st.vfu {
                    st.violations
                        .push("legacy handshake: read the buffer without VFU".into());
                }
                st.mem[((o - regs::VFMBMEM) / 4) as usize]
            }
            o => st.regs.get(&o).copied().unwrap_or(0),
        }
    }

    fn write32(&self, off: u32, val: u32) {
        let mut st = self.0.borrow_mut();
        match off {
            regs::VFMAILBOX => {
                let held = st.vfu;
                let hs = Self::hs(&st);
                if val & regs::MBX_REQ != 0 {
                    if !held {
                        st.violations.push("REQ without holding VFU".into());
                    }
                    match (hs, val & regs::MBX_VFU != 0) {
                        (Handshake::Legacy, true) => {
                            st.violations.push("legacy handshake: REQ kept VFU".into())
                        }
                        (Handshake::V15, false) => {
                            st.violations.push("1.5 handshake: REQ dropped VFU".into())
                        }
                        _ => {}
                    }
                }
                if val & regs::MBX_ACK != 0 {
                    match (hs, held) {
                        (Handshake::Legacy, false) => st
                            .violations
                            .push("legacy handshake: ACK without VFU".into()),
                        (Handshake::V15, true) => st
                            .violations
                            .push("1.5 handshake: ACK while holding VFU".into()),
                        _ => {}
                    }
                    st.outstanding = false;
                    if std::mem::take(&mut st.switch_on_ack) {
                        st.handshake = Some(Handshake::V15);
                    }
                }
                // VFU: the VF gets the buffer unless the PF holds it (never
                // here); any write without VFU gives it back.
                st.vfu = val & regs::MBX_VFU != 0;
                if val & regs::MBX_REQ != 0 {
                    Self::take_request(&mut st);
                }
                Self::deliver(&mut st);
            }
            o if (regs::VFMBMEM..regs::VFMBMEM + 64).contains(&o) => {
                if !st.vfu {
                    st.violations.push("wrote the buffer without VFU".into());
                }
                st.mem[((o - regs::VFMBMEM) / 4) as usize] = val;
            }
            regs::VFCTRL if val & regs::CTRL_RST != 0 => {
                st.vf_resets += 1;
                st.cts = false;
                st.api = None;
                st.handshake = Some(Handshake::Legacy);
                st.switch_on_ack = false;
                st.vfu = false;
                st.outstanding = false;
                st.outbox.clear();
                // The reset clears the queue enables.
                for q in 0..regs::MAX_QUEUES {
                    st.regs.remove(&regs::rxdctl(q));
                    st.regs.remove(&regs::txdctl(q));
                }
            }
            o => {
                st.regs.insert(o, val);
            }
        }
    }
}
