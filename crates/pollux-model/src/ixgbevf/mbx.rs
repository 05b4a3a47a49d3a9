//! The PF side of the VF mailbox, as an I/O-free state machine: the
//! VFMAILBOX register and the 16-word VFMBMEM as the VF sees them, and the
//! PF driver (Linux `ixgbe_sriov.c`) answering the VF's messages.
//!
//! # The register (82599 datasheet, VFMailbox; ixgbevf `mbx.h`)
//! - REQ (bit 0) and ACK (bit 1) are write-only requests to the PF and read
//!   as 0: the 1.5 driver writes back what it read with one bit added
//!   (`ixgbevf_write_mbx_vf`, `ixgbevf_release_mbx_lock_vf`), so a
//!   request bit that read back as set would be sent twice.
//! - VFU (bit 2) is read-write: the VF owns the buffer. PFU (bit 3) is
//!   never seen set: this PF writes the buffer instantly, or waits for VFU
//!   to drop.
//! - PFSTS (bit 4), PFACK (bit 5) and RSTD (bit 7) are read-to-clear
//!   (`IXGBE_VFMAILBOX_R2C_BITS` = 0xB0, which the VF caches in
//!   `hw->mbx.vf_mailbox` precisely because a read clears them);
//!   RSTI (bit 6) is read-only, set while the PF resets.
//!
//! # The handshakes
//! Legacy (`ixgbevf_mbx_ops_legacy`, DPDK 22.11's `ixgbe_mbx.c`): write VFU,
//! read it back, write the message, write REQ alone (dropping VFU); the PF
//! reads the message, sets PFACK, writes its reply and sets PFSTS; the VF
//! polls PFSTS, takes VFU, reads, and writes ACK alone (dropping VFU).
//!
//! API 1.5 (`ixgbevf_mbx_ops`): write VFU keeping the other bits, write the
//! message, write REQ keeping VFU, poll PFACK, then release VFU; the PF's
//! reply can only be written once VFU is released (the PF's lock fails
//! while the VF holds the buffer), so this model holds the reply until the
//! VF drops VFU. The VF then sees PFSTS, reads the buffer without taking
//! VFU, and writes ACK.
//!
//! Replies are never overwritten by a later PF message until the VF has
//! acknowledged them (a link ping that comes meanwhile waits); a control
//! message (ping) is overwritten by whatever follows it, as the PF's
//! `ixgbe_write_mbx` overwrites the buffer.
//!
//! # The PF (ixgbe_sriov.c, `ixgbe_rcv_msg_from_vf`)
//! Messages other than VF_RESET before the VF's reset (clear to send)
//! fail without CTS; an ACK from a VF that is not clear to send makes the
//! PF send a FAILURE message (`ixgbe_rcv_ack_from_vf`), which is how a VF
//! driver notices a PF reset and resets itself. Everything else follows
//! the PF's handlers; differences are noted where they are.

use std::collections::VecDeque;

use super::regs::*;

/// Which VF: decides what the PF answers to the RSS queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacType {
    /// 82599 VF (8086:10ed).
    M82599,
    /// X540 VF (8086:1515).
    X540,
    /// X550 family VFs (8086:1565, 15a8, 15c5): own RSS registers.
    X550,
}

/// Mailbox message kinds counted by the model.
pub const MSG_NAMES: [(u32, &str); 16] = [
    (VF_RESET, "reset"),
    (VF_SET_MAC_ADDR, "set_mac_addr"),
    (VF_SET_MULTICAST, "set_multicast"),
    (VF_SET_VLAN, "set_vlan"),
    (VF_SET_LPE, "set_lpe"),
    (VF_SET_MACVLAN, "set_macvlan"),
    (VF_API_NEGOTIATE, "api_negotiate"),
    (VF_GET_QUEUES, "get_queues"),
    (VF_GET_RETA, "get_reta"),
    (VF_GET_RSS_KEY, "get_rss_key"),
    (VF_UPDATE_XCAST_MODE, "update_xcast_mode"),
    (VF_IPSEC_ADD, "ipsec_add"),
    (VF_IPSEC_DEL, "ipsec_del"),
    (VF_GET_LINK_STATE, "get_link_state"),
    (VF_GET_PF_LINK_STATE, "get_pf_link_state"),
    (VF_FEATURES_NEGOTIATE, "features_negotiate"),
];

/// What the PF has programmed for this VF (the switch's view of it).
#[derive(Debug, Clone)]
pub struct VfFilters {
    /// The VF's MAC address.
    pub mac: [u8; 6],
    /// Extra unicast filters (SET_MACVLAN).
    pub macvlans: Vec<[u8; 6]>,
    /// Multicast hashes (12-bit MTA vectors).
    pub mc_hashes: Vec<u16>,
    /// VLAN filter bitmap (4096 bits).
    pub vlans: [u64; 64],
    /// Largest frame the VF receives, FCS included (MAXFRS: never below
    /// 1518, and it only grows, as `ixgbe_set_vf_lpe` programs it).
    pub max_frame: u32,
    /// Multicast mode (regs::xcast).
    pub xcast: u32,
    /// VMOLR.ROMPE: accept multicast matching the MTA.
    pub rompe: bool,
    /// VFRE/VFTE: the PF lets the VF's rx/tx through.
    pub rx_tx_enabled: bool,
}

impl VfFilters {
    fn new(mac: [u8; 6]) -> Self {
        let mut f = VfFilters {
            mac,
            macvlans: Vec::new(),
            mc_hashes: Vec::new(),
            vlans: [0; 64],
            max_frame: STD_MAX_FRAME,
            xcast: xcast::NONE,
            rompe: false,
            rx_tx_enabled: false,
        };
        f.set_vlan(0, true);
        f
    }

    /// Whether VLAN `vid` is in the filter table.
    pub fn has_vlan(&self, vid: u16) -> bool {
        let vid = (vid & 0xfff) as usize;
        self.vlans[vid / 64] & (1 << (vid % 64)) != 0
    }

    fn set_vlan(&mut self, vid: u16, on: bool) {
        let vid = (vid & 0xfff) as usize;
        if on {
            self.vlans[vid / 64] |= 1 << (vid % 64);
        } else {
            self.vlans[vid / 64] &= !(1 << (vid % 64));
        }
    }

    /// Whether `mac` is one of the VF's unicast addresses.
    pub fn is_own_unicast(&self, mac: &[u8]) -> bool {
        mac == self.mac || self.macvlans.iter().any(|m| m == mac)
    }
}

/// Fixed configuration of the modelled PF.
#[derive(Debug, Clone)]
pub struct PfConfig {
    /// The VF's type.
    pub mac_type: MacType,
    /// Queues the PF gives the VF (GET_QUEUES).
    pub queues: u32,
    /// `ip link set ... trust on`.
    pub trusted: bool,
    /// The MAC the PF assigned.
    pub mac: [u8; 6],
    /// The PF's RSS key (82599/X540: shared with the VF's pool).
    pub rss_key: [u8; 40],
    /// The PF's RSS redirection table (128 entries).
    pub reta: [u8; 128],
}

/// What one mailbox access asks of the device around it.
#[derive(Debug, Default)]
pub struct MbxOut {
    /// Raise the mailbox ("other") interrupt cause.
    pub irq: bool,
    /// Violations: (what, rule).
    pub violations: Vec<(String, String)>,
    /// The VF_RESET message was handled (the VF's queues stay as they are;
    /// the counters note it).
    pub vf_reset_msg: bool,
}

#[derive(Debug, Clone)]
struct PfMsg {
    words: Vec<u32>,
    reply: bool,
}

/// The mailbox and the PF behind it.
#[derive(Debug)]
pub struct Pf {
    cfg: PfConfig,
    mem: [u32; MBX_WORDS],
    vfu: bool,
    pfsts: bool,
    pfack: bool,
    rsti: bool,
    rstd: bool,
    /// PF messages waiting for VFU to drop (or for a reply's ACK).
    pending: VecDeque<PfMsg>,
    /// A delivered reply the VF has not acknowledged yet.
    unread_reply: bool,
    /// The VF wrote VFMBMEM since its last request.
    written: bool,
    /// Clear to send: the VF has done its VF_RESET handshake.
    cts: bool,
    /// Negotiated API (regs::api).
    api: u32,
    /// The switch state for this VF.
    pub filters: VfFilters,
    /// Messages handled, by kind (index into MSG_NAMES, last: unknown).
    pub msg_counts: [u64; MSG_NAMES.len() + 1],
    /// Replies with FAILURE.
    pub failures: u64,
}

impl Pf {
    /// A PF that is up, with the VF just created.
    pub fn new(cfg: PfConfig) -> Self {
        let mac = cfg.mac;
        Pf {
            cfg,
            mem: [0; MBX_WORDS],
            vfu: false,
            pfsts: false,
            pfack: false,
            rsti: false,
            // The PF has completed its own reset (CTRL_EXT.PFRSTD).
            rstd: true,
            pending: VecDeque::new(),
            unread_reply: false,
            written: false,
            cts: false,
            api: api::V10,
            filters: VfFilters::new(mac),
            msg_counts: [0; MSG_NAMES.len() + 1],
            failures: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &PfConfig {
        &self.cfg
    }

    /// `ip link set PF vf N trust on|off` at run time: what the VF may ask
    /// for from its next message on.
    pub fn set_trusted(&mut self, on: bool) {
        self.cfg.trusted = on;
    }

    /// Negotiated API version (regs::api).
    pub fn api(&self) -> u32 {
        self.api
    }

    /// Clear to send.
    pub fn cts(&self) -> bool {
        self.cts
    }

    /// A read of VFMAILBOX: read-to-clear bits clear.
    pub fn read_mailbox(&mut self) -> u32 {
        let mut v = 0;
        if self.vfu {
            v |= MB_VFU;
        }
        if self.pfsts {
            v |= MB_PFSTS;
        }
        if self.pfack {
            v |= MB_PFACK;
        }
        if self.rsti {
            v |= MB_RSTI;
        }
        if self.rstd {
            v |= MB_RSTD;
        }
        self.pfsts = false;
        self.pfack = false;
        self.rstd = false;
        v
    }

    /// Peeks VFMAILBOX without the read side effects (tests, counters).
    pub fn peek_mailbox(&self) -> u32 {
        (self.vfu as u32 * MB_VFU)
            | (self.pfsts as u32 * MB_PFSTS)
            | (self.pfack as u32 * MB_PFACK)
            | (self.rsti as u32 * MB_RSTI)
            | (self.rstd as u32 * MB_RSTD)
    }

    /// A read of VFMBMEM word `i` (allowed with or without VFU: the 1.5
    /// read path and DPDK's interrupt handler read it unlocked).
    pub fn read_mem(&self, i: usize) -> u32 {
        self.mem.get(i).copied().unwrap_or(0)
    }

    /// A write of VFMBMEM word `i`.
    pub fn write_mem(&mut self, i: usize, v: u32, out: &mut MbxOut) {
        if !self.vfu {
            out.violations.push((
                format!("VFMBMEM[{i}] = {v:#x}"),
                "written without owning the mailbox (VFMAILBOX.VFU clear): the VF must \
                 take VFU before writing a message (82599 datasheet, PF/VF mailbox; \
                 ixgbevf_write_mbx_vf)"
                    .into(),
            ));
            return;
        }
        if let Some(w) = self.mem.get_mut(i) {
            *w = v;
            self.written = true;
            // The VF overwrote the buffer: any reply in it is gone.
            self.unread_reply = false;
        }
    }

    /// A write of VFMAILBOX.
    pub fn write_mailbox(&mut self, v: u32, out: &mut MbxOut) {
        let had_vfu = self.vfu;
        // VFU is the only read-write bit; PFU is never set here so the VF
        // always gets the buffer.
        self.vfu = v & MB_VFU != 0;
        if v & MB_ACK != 0 {
            self.vf_ack(out);
        }
        if v & MB_REQ != 0 {
            if !had_vfu {
                out.violations.push((
                    format!("VFMAILBOX = {v:#x} (REQ)"),
                    "request without owning the mailbox: the message must be written \
                     under VFU and REQ set before VFU is dropped (ixgbevf_write_mbx_vf)"
                        .into(),
                ));
            } else if !self.written {
                out.violations.push((
                    format!("VFMAILBOX = {v:#x} (REQ)"),
                    "request with no message written to VFMBMEM since the last one".into(),
                ));
            } else {
                self.vf_request(out);
            }
        }
        self.try_deliver(out);
    }

    /// The VF acknowledged a PF message (ixgbe_rcv_ack_from_vf).
    fn vf_ack(&mut self, out: &mut MbxOut) {
        self.unread_reply = false;
        if !self.cts {
            // "if device isn't clear to send it shouldn't be reading either"
            self.failures += 1;
            self.pending.push_back(PfMsg {
                words: vec![MSG_FAILURE],
                reply: false,
            });
        }
        let _ = out;
    }

    /// The VF's REQ: read the message, acknowledge it, queue the reply.
    fn vf_request(&mut self, out: &mut MbxOut) {
        self.written = false;
        self.pfack = true;
        out.irq = true;
        let msg = self.mem;
        if let Some(reply) = self.handle(msg, out) {
            self.pending.push_back(PfMsg {
                words: reply,
                reply: true,
            });
        }
    }

    /// Writes waiting PF messages into the buffer while the VF does not
    /// own it.
    fn try_deliver(&mut self, out: &mut MbxOut) {
        while !self.vfu && !self.unread_reply {
            let Some(m) = self.pending.pop_front() else {
                break;
            };
            for (i, w) in m.words.iter().enumerate().take(MBX_WORDS) {
                self.mem[i] = *w;
            }
            self.pfsts = true;
            self.unread_reply = m.reply;
            out.irq = true;
        }
    }

    /// A PF control message (`ixgbe_ping_vf`): CTS if the VF is clear to
    /// send.
    pub fn ping(&mut self, out: &mut MbxOut) {
        let mut w = PF_CONTROL_MSG;
        if self.cts {
            w |= MSG_CTS;
        }
        self.pending.push_back(PfMsg {
            words: vec![w],
            reply: false,
        });
        self.try_deliver(out);
    }

    /// The VF reset itself (VFCTRL.RST, FLR): the PF's
    /// `ixgbe_vf_reset_event` (filters, API back to 1.0) and the mailbox
    /// back to idle; reset done is signalled with RSTD.
    pub fn vf_reset_event(&mut self) {
        self.reset_filters();
        self.api = api::V10;
        self.vfu = false;
        self.pfsts = false;
        self.pfack = false;
        self.pending.clear();
        self.unread_reply = false;
        self.written = false;
        self.rstd = true;
    }

    /// A PF reset begins (`ixgbe_down`: VFs lose CTS and are pinged, VFRE
    /// and VFTE cleared; the hardware sets RSTI).
    pub fn pf_reset_start(&mut self, out: &mut MbxOut) {
        self.cts = false;
        self.filters.rx_tx_enabled = false;
        self.vfu = false;
        self.pending.clear();
        self.unread_reply = false;
        self.ping(out);
        self.rsti = true;
    }

    /// The PF reset is done (CTRL_EXT.PFRSTD: RSTI clears, RSTD sets).
    pub fn pf_reset_done(&mut self, out: &mut MbxOut) {
        self.rsti = false;
        self.rstd = true;
        self.filters.max_frame = STD_MAX_FRAME;
        out.irq = true;
    }

    /// Whether a PF reset is in progress.
    pub fn resetting(&self) -> bool {
        self.rsti
    }

    fn reset_filters(&mut self) {
        let (mac, en, max) = (
            self.filters.mac,
            self.filters.rx_tx_enabled,
            self.filters.max_frame,
        );
        self.filters = VfFilters::new(mac);
        self.filters.rx_tx_enabled = en;
        self.filters.max_frame = max;
    }

    fn count(&mut self, id: u32) {
        let i = MSG_NAMES
            .iter()
            .position(|(m, _)| *m == id)
            .unwrap_or(MSG_NAMES.len());
        self.msg_counts[i] += 1;
    }

    /// ixgbe_rcv_msg_from_vf: the reply to `msg`, if any.
    fn handle(&mut self, mut msg: [u32; MBX_WORDS], out: &mut MbxOut) -> Option<Vec<u32>> {
        let w0 = msg[0];
        if w0 & (MSG_SUCCESS | MSG_FAILURE) != 0 {
            out.violations.push((
                format!("mailbox message {w0:#010x}"),
                "a VF message carries a result bit (SUCCESS/FAILURE): ixgbe's PF \
                 treats it as already processed and ignores it (ixgbe_rcv_msg_from_vf)"
                    .into(),
            ));
            return None;
        }
        let id = w0 & 0xFFFF;
        self.count(id);
        if w0 == VF_RESET {
            out.vf_reset_msg = true;
            return Some(self.vf_reset_msg());
        }
        if !self.cts {
            self.failures += 1;
            return Some(vec![w0 | MSG_FAILURE]);
        }
        let info = (w0 >> MSGINFO_SHIFT) & 0xFF;
        let ok = match id {
            VF_SET_MAC_ADDR => self.set_mac(&msg, out),
            VF_SET_MULTICAST => {
                let n = info as usize;
                if n > MAX_VF_MC_ENTRIES {
                    out.violations.push((
                        format!("SET_MULTICAST with {n} entries"),
                        "at most 30 hashes fit a message (IXGBE_MAX_VF_MC_ENTRIES)".into(),
                    ));
                }
                let n = n.min(MAX_VF_MC_ENTRIES);
                self.filters.mc_hashes = (0..n)
                    .map(|i| {
                        let w = msg[1 + i / 2];
                        (if i % 2 == 0 { w } else { w >> 16 } & 0xFFFF) as u16
                    })
                    .collect();
                self.filters.rompe = true;
                true
            }
            VF_SET_VLAN => {
                let vid = (msg[1] & 0xFFF) as u16;
                let add = info != 0;
                // VLAN 0 is not removed (ixgbe_set_vf_vlan_msg).
                if add || vid != 0 {
                    self.filters.set_vlan(vid, add);
                }
                true
            }
            VF_SET_LPE => self.set_lpe(msg[1], out),
            VF_SET_MACVLAN => self.set_macvlan(info, &msg, out),
            VF_API_NEGOTIATE => match msg[1] {
                api::V10 | api::V11 | api::V12 | api::V13 | api::V14 | api::V15 => {
                    self.api = msg[1];
                    true
                }
                _ => false,
            },
            VF_GET_QUEUES => {
                if self.needs_api(api::V11, "GET_QUEUES", out) {
                    msg[1] = self.cfg.queues;
                    msg[2] = self.cfg.queues;
                    msg[3] = 0;
                    msg[4] = 0;
                    true
                } else {
                    false
                }
            }
            VF_GET_RETA => {
                if self.cfg.mac_type == MacType::X550 {
                    // rss_query_enabled cannot be set for X550 VFs
                    // (ixgbe_ndo_set_vf_rss_query_en): -EPERM.
                    false
                } else if self.needs_api(api::V12, "GET_RETA", out) {
                    // 128 entries, 2 bits each, 16 per word.
                    for (i, w) in msg[1..9].iter_mut().enumerate() {
                        *w = (0..16).fold(0u32, |acc, j| {
                            acc | ((self.cfg.reta[16 * i + j] as u32 & 3) << (2 * j))
                        });
                    }
                    true
                } else {
                    false
                }
            }
            VF_GET_RSS_KEY => {
                if self.cfg.mac_type == MacType::X550 {
                    false
                } else if self.needs_api(api::V12, "GET_RSS_KEY", out) {
                    for (i, w) in msg[1..11].iter_mut().enumerate() {
                        let k = &self.cfg.rss_key[4 * i..4 * i + 4];
                        *w = u32::from_le_bytes([k[0], k[1], k[2], k[3]]);
                    }
                    true
                } else {
                    false
                }
            }
            VF_UPDATE_XCAST_MODE => self.update_xcast(&mut msg, out),
            VF_GET_LINK_STATE => {
                // ixgbe answers at 1.2 and later; ixgbevf asks whatever the
                // API (ixgbevf_up_complete), so a failure here is normal.
                if self.api >= api::V12 {
                    msg[1] = 1;
                    true
                } else {
                    false
                }
            }
            VF_IPSEC_ADD | VF_IPSEC_DEL | VF_GET_PF_LINK_STATE | VF_FEATURES_NEGOTIATE => false,
            _ => {
                out.violations.push((
                    format!("mailbox message {w0:#010x}"),
                    "unknown message type (ixgbe_rcv_msg_from_vf: \"Unhandled Msg\")".into(),
                ));
                false
            }
        };
        if !ok {
            self.failures += 1;
        }
        msg[0] = w0 | if ok { MSG_SUCCESS } else { MSG_FAILURE } | MSG_CTS;
        Some(msg.to_vec())
    }

    fn needs_api(&self, min: u32, what: &str, out: &mut MbxOut) -> bool {
        if self.api >= min && self.api != api::V20 {
            return true;
        }
        out.violations.push((
            format!("{what} at mailbox API index {}", self.api),
            format!(
                "{what} needs API index {min} or later (ixgbe_pfvf_api_rev); the VF \
                 driver checks its negotiated API before sending it"
            ),
        ));
        false
    }

    /// ixgbe_vf_reset_msg.
    fn vf_reset_msg(&mut self) -> Vec<u32> {
        self.reset_filters();
        self.api = api::V10;
        self.mem = [0; MBX_WORDS];
        self.filters.rx_tx_enabled = true;
        self.cts = true;
        let m = self.filters.mac;
        // The PF assigned the MAC: SUCCESS with it (the PF's pf_set_mac
        // case); word 3 is the multicast filter type (mc_filter_type 0).
        vec![
            VF_RESET | MSG_SUCCESS,
            u32::from_le_bytes([m[0], m[1], m[2], m[3]]),
            u32::from_le_bytes([m[4], m[5], 0, 0]),
            0,
        ]
    }

    fn set_mac(&mut self, msg: &[u32; MBX_WORDS], out: &mut MbxOut) -> bool {
        let mac = msg_mac(msg);
        if !valid_unicast(&mac) {
            out.violations.push((
                format!("SET_MAC_ADDR {}", fmt_mac(&mac)),
                "not a valid unicast address (ixgbe_set_vf_mac_addr refuses it)".into(),
            ));
            return false;
        }
        // The MAC is PF-assigned but not locked by the administrator:
        // changes are accepted, as ixgbe does when pf_set_mac is false.
        self.filters.mac = mac;
        true
    }

    fn set_lpe(&mut self, max_frame: u32, out: &mut MbxOut) -> bool {
        if !(MIN_LPE..=MAX_JUMBO_FRAME).contains(&max_frame) {
            out.violations.push((
                format!("SET_LPE {max_frame}"),
                format!("max frame outside {MIN_LPE}..={MAX_JUMBO_FRAME} (ixgbe_set_vf_lpe)"),
            ));
            return false;
        }
        // 82599: VFs on API 1.0 cannot do jumbo frames (ixgbe_set_vf_lpe;
        // this PF runs jumbo-capable for VFs on 1.1 and later).
        if self.cfg.mac_type == MacType::M82599 && self.api == api::V10 && max_frame > STD_MAX_FRAME
        {
            return false;
        }
        self.filters.max_frame = self.filters.max_frame.max(max_frame);
        true
    }

    fn set_macvlan(&mut self, index: u32, msg: &[u32; MBX_WORDS], out: &mut MbxOut) -> bool {
        if index <= 1 {
            self.filters.macvlans.clear();
        }
        if index == 0 {
            return true;
        }
        let mac = msg_mac(msg);
        if !valid_unicast(&mac) {
            out.violations.push((
                format!("SET_MACVLAN {} (index {index})", fmt_mac(&mac)),
                "not a valid unicast address (ixgbe_set_vf_macvlan_msg refuses it)".into(),
            ));
            return false;
        }
        // The RAR entries left for VF MACVLANs are finite (ixgbe: "no space").
        if self.filters.macvlans.len() >= 16 {
            return false;
        }
        if !self.filters.macvlans.contains(&mac) {
            self.filters.macvlans.push(mac);
        }
        true
    }

    fn update_xcast(&mut self, msg: &mut [u32; MBX_WORDS], out: &mut MbxOut) -> bool {
        let mut mode = msg[1];
        if !self.needs_api(api::V12, "UPDATE_XCAST_MODE", out) {
            return false;
        }
        if self.api == api::V12 && mode == xcast::PROMISC {
            out.violations.push((
                "UPDATE_XCAST_MODE PROMISC at API 1.2".into(),
                "promiscuous mode needs API 1.3 (ixgbevf_update_xcast_mode checks it)".into(),
            ));
            return false;
        }
        if mode > xcast::PROMISC {
            out.violations.push((
                format!("UPDATE_XCAST_MODE {mode}"),
                "unknown mode (enum ixgbevf_xcast_modes)".into(),
            ));
            return false;
        }
        if mode > xcast::MULTI && !self.cfg.trusted {
            mode = xcast::MULTI;
        }
        if mode == xcast::PROMISC && self.cfg.mac_type == MacType::M82599 {
            // "if (hw->mac.type <= ixgbe_mac_82599EB) return -EOPNOTSUPP"
            return false;
        }
        // PROMISC also needs the PF itself promiscuous; this PF is.
        self.filters.xcast = mode;
        self.filters.rompe = mode != xcast::NONE;
        msg[1] = mode;
        true
    }
}

/// The MAC in words 1-2 of a message (the bytes of the message buffer).
fn msg_mac(msg: &[u32; MBX_WORDS]) -> [u8; 6] {
    let a = msg[1].to_le_bytes();
    let b = msg[2].to_le_bytes();
    [a[0], a[1], a[2], a[3], b[0], b[1]]
}

/// Not multicast, not all zeros (is_valid_ether_addr).
pub fn valid_unicast(mac: &[u8; 6]) -> bool {
    mac[0] & 1 == 0 && mac.iter().any(|&b| b != 0)
}

/// aa:bb:cc:dd:ee:ff.
pub fn fmt_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The 12-bit MTA vector of a multicast address for filter type 0, bits
/// 47:36 (ixgbevf_mta_vector, case 0; the PF reports type 0).
pub fn mta_vector(mac: &[u8]) -> u16 {
    if mac.len() < 6 {
        return 0;
    }
    (((mac[4] >> 4) as u16) | ((mac[5] as u16) << 4)) & 0xFFF
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pf() -> Pf {
        Pf::new(PfConfig {
            mac_type: MacType::M82599,
            queues: 2,
            trusted: false,
            mac: [0x02, 0, 0, 0x10, 0xed, 0],
            rss_key: crate::toeplitz::MS_KEY,
            reta: std::array::from_fn(|i| (i % 4) as u8),
        })
    }

    /// The legacy handshake as ixgbevf_write_mbx_vf_legacy and
    /// ixgbevf_read_mbx_vf_legacy do it, register access by register
    /// access.
    fn legacy_send(p: &mut Pf, msg: &[u32], out: &mut MbxOut) {
        p.write_mailbox(MB_VFU, out);
        assert_ne!(p.read_mailbox() & MB_VFU, 0);
        for (i, w) in msg.iter().enumerate() {
            p.write_mem(i, *w, out);
        }
        p.write_mailbox(MB_REQ, out);
    }

    fn legacy_read(p: &mut Pf, n: usize, out: &mut MbxOut) -> Vec<u32> {
        p.write_mailbox(MB_VFU, out);
        let r: Vec<u32> = (0..n).map(|i| p.read_mem(i)).collect();
        p.write_mailbox(MB_ACK, out);
        r
    }

    #[test]
    fn legacy_reset_handshake() {
        let mut p = pf();
        let mut out = MbxOut::default();
        legacy_send(&mut p, &[VF_RESET], &mut out);
        let st = p.read_mailbox();
        assert_ne!(st & MB_PFACK, 0);
        assert_ne!(st & MB_PFSTS, 0, "the reply is there as VFU was dropped");
        assert_eq!(p.read_mailbox() & (MB_PFACK | MB_PFSTS), 0, "read to clear");
        let r = legacy_read(&mut p, 4, &mut out);
        assert_eq!(r[0], VF_RESET | MSG_SUCCESS);
        assert_eq!(r[1], u32::from_le_bytes([2, 0, 0, 0x10]));
        assert_eq!(r[2], 0xed);
        assert!(p.cts());
        assert!(out.violations.is_empty(), "{:?}", out.violations);
    }

    #[test]
    fn messages_before_reset_fail_without_cts() {
        let mut p = pf();
        let mut out = MbxOut::default();
        legacy_send(&mut p, &[VF_API_NEGOTIATE, api::V13, 0], &mut out);
        let r = legacy_read(&mut p, 3, &mut out);
        assert_eq!(r[0], VF_API_NEGOTIATE | MSG_FAILURE);
        // The ACK of a VF that is not clear to send brings a FAILURE.
        assert_ne!(p.read_mailbox() & MB_PFSTS, 0);
        assert_eq!(p.read_mem(0), MSG_FAILURE);
        assert!(out.violations.is_empty());
    }

    #[test]
    fn malformed_input_is_logged_not_fatal() {
        let mut p = pf();
        let mut out = MbxOut::default();
        p.write_mem(0, 1, &mut out); // no VFU
        p.write_mailbox(MB_REQ, &mut out); // REQ without VFU
        p.write_mailbox(MB_VFU, &mut out);
        p.write_mailbox(MB_REQ | MB_VFU, &mut out); // nothing written
        p.write_mem(99, 1, &mut out); // beyond the buffer: ignored
        assert_eq!(out.violations.len(), 3, "{:?}", out.violations);
        legacy_send(&mut p, &[VF_RESET], &mut out);
        let _ = legacy_read(&mut p, 4, &mut out);
        legacy_send(&mut p, &[0x77], &mut out);
        let r = legacy_read(&mut p, 1, &mut out);
        assert_eq!(r[0], 0x77 | MSG_FAILURE | MSG_CTS);
        legacy_send(
            &mut p,
            &[VF_SET_MULTICAST | (200 << 16), 0x1234_5678],
            &mut out,
        );
        let r = legacy_read(&mut p, 1, &mut out);
        assert_eq!(r[0], VF_SET_MULTICAST | (200 << 16) | MSG_SUCCESS | MSG_CTS);
        assert_eq!(p.filters.mc_hashes.len(), 30);
        assert_eq!(out.violations.len(), 5, "{:?}", out.violations);
    }
}
