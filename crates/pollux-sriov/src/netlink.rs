//! VF configuration through the PF over rtnetlink, and the link operations
//! of the CNI plugin's netdevice mode.
//!
//! Messages are built and parsed by rust-netlink's netlink-packet-route
//! (`LinkAttribute::VfInfoList`, `VfInfo::*`); this module adds the request
//! and acknowledgement loop over a blocking netlink-sys socket with a receive
//! timeout, and turns kernel error codes into messages that say which
//! attribute the PF driver refused.
//!
//! Each VF attribute is set by its own RTM_SETLINK: the kernel's
//! do_setvfinfo (net/core/rtnetlink.c) applies nested IFLA_VF_* attributes
//! in order and stops at the first refusal, so one message for all would
//! leave an unknown subset applied and hide which attribute failed.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::str::FromStr;
use std::time::Duration;

use std::net::IpAddr;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    LinkAttribute, LinkExtentMask, LinkFlags, LinkMessage, LinkVfInfo, VfInfo, VfInfoLinkState,
    VfInfoMac, VfInfoRate, VfInfoSpoofCheck, VfInfoTrust, VfInfoVlan, VfLinkState, VfVlan,
    VfVlanInfo, VlanProtocol,
};
use netlink_packet_route::route::{
    RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use pollux_core::MacAddr;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// VLAN tag protocol of a VF's port VLAN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum VlanProto {
    #[default]
    #[serde(rename = "802.1Q")]
    Dot1Q,
    #[serde(rename = "802.1ad")]
    Dot1Ad,
}

impl FromStr for VlanProto {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        // sriov-cni accepts these spellings case-insensitively
        // (pkg/config: "802.1q" and "802.1ad").
        match s.to_ascii_lowercase().as_str() {
            "802.1q" => Ok(VlanProto::Dot1Q),
            "802.1ad" => Ok(VlanProto::Dot1Ad),
            _ => Err(Error::Invalid(format!(
                "invalid VLAN protocol {s:?} (expected 802.1Q or 802.1ad)"
            ))),
        }
    }
}

impl fmt::Display for VlanProto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VlanProto::Dot1Q => "802.1Q",
            VlanProto::Dot1Ad => "802.1ad",
        })
    }
}

/// Administrative link state of a VF (IFLA_VF_LINK_STATE_*).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    #[default]
    Auto,
    Enable,
    Disable,
}

impl FromStr for LinkState {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(LinkState::Auto),
            "enable" => Ok(LinkState::Enable),
            "disable" => Ok(LinkState::Disable),
            _ => Err(Error::Invalid(format!(
                "invalid link state {s:?} (expected auto, enable or disable)"
            ))),
        }
    }
}

impl fmt::Display for LinkState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LinkState::Auto => "auto",
            LinkState::Enable => "enable",
            LinkState::Disable => "disable",
        })
    }
}

/// A port VLAN: id 0-4095 (0 clears), priority 0-7, tag protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Vlan {
    pub id: u16,
    pub qos: u8,
    pub proto: VlanProto,
}

/// One VF attribute to set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VfAttr {
    Mac(MacAddr),
    Vlan(Vlan),
    /// Minimum and maximum TX rate in Mbit/s (0: no limit).
    Rate {
        min: u32,
        max: u32,
    },
    SpoofCheck(bool),
    Trust(bool),
    LinkState(LinkState),
}

impl VfAttr {
    /// The attribute's name as `ip link set ... vf N` spells it.
    pub fn name(&self) -> &'static str {
        match self {
            VfAttr::Mac(_) => "mac",
            VfAttr::Vlan(_) => "vlan",
            VfAttr::Rate { .. } => "rate",
            VfAttr::SpoofCheck(_) => "spoofchk",
            VfAttr::Trust(_) => "trust",
            VfAttr::LinkState(_) => "state",
        }
    }
}

/// What the kernel reports about one VF (IFLA_VF_INFO).
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VfState {
    pub index: u32,
    pub mac: MacAddr,
    pub vlan: Vlan,
    pub min_tx_rate: u32,
    pub max_tx_rate: u32,
    /// `None` when the driver does not report it (the kernel sends -1).
    pub spoofchk: Option<bool>,
    pub trust: Option<bool>,
    pub link_state: Option<LinkState>,
}

/// The interesting parts of a link.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    pub mac: Option<MacAddr>,
    pub mtu: Option<u32>,
    pub up: bool,
    /// VF info, when asked for with RTEXT_FILTER_VF.
    pub vfs: Vec<VfState>,
}

/// Builds the RTM_SETLINK that sets one VF attribute on PF `ifindex`.
pub fn set_vf_message(ifindex: u32, vf: u32, attr: VfAttr) -> LinkMessage {
    let info = match attr {
        VfAttr::Mac(m) => VfInfo::Mac(VfInfoMac::new(vf, &m.0)),
        // IFLA_VF_VLAN always means 802.1Q to the kernel; 802.1ad needs the
        // IFLA_VF_VLAN_LIST form (as iproute2 does for `proto`).
        VfAttr::Vlan(v) if v.proto == VlanProto::Dot1Q => {
            VfInfo::Vlan(VfInfoVlan::new(vf, v.id.into(), v.qos.into()))
        }
        VfAttr::Vlan(v) => VfInfo::VlanList(vec![VfVlan::Info(VfVlanInfo::new(
            vf,
            v.id.into(),
            v.qos.into(),
            VlanProtocol::Ieee8021Ad,
        ))]),
        VfAttr::Rate { min, max } => VfInfo::Rate(VfInfoRate::new(vf, min, max)),
        VfAttr::SpoofCheck(b) => VfInfo::SpoofCheck(VfInfoSpoofCheck::new(vf, b)),
        VfAttr::Trust(b) => VfInfo::Trust(VfInfoTrust::new(vf, b)),
        VfAttr::LinkState(s) => VfInfo::LinkState(VfInfoLinkState::new(
            vf,
            match s {
                LinkState::Auto => VfLinkState::Auto,
                LinkState::Enable => VfLinkState::Enable,
                LinkState::Disable => VfLinkState::Disable,
            },
        )),
    };
    let mut msg = LinkMessage::default();
    msg.header.index = ifindex;
    msg.attributes
        .push(LinkAttribute::VfInfoList(vec![LinkVfInfo(vec![info])]));
    msg
}

/// Reads the VF states out of an RTM_NEWLINK (sent for RTEXT_FILTER_VF).
///
/// The kernel fills every attribute of one IFLA_VF_INFO with the same VF
/// number and keeps VLAN ids below 4096 and priorities below 8
/// (`rtnl_fill_vfinfo`); a reply that breaks either is refused rather
/// than truncated into a different, plausible VF state.
pub fn parse_vfs(msg: &LinkMessage) -> Result<Vec<VfState>> {
    let bad = |detail: String| Error::Decode {
        op: "IFLA_VFINFO_LIST".to_owned(),
        detail,
    };
    let mut out = Vec::new();
    for attr in &msg.attributes {
        let LinkAttribute::VfInfoList(list) = attr else {
            continue;
        };
        for LinkVfInfo(infos) in list {
            let mut st = VfState::default();
            let mut index = None;
            let mut vf_id = |id: u32| match index {
                Some(i) if i != id => Err(bad(format!(
                    "IFLA_VF_INFO {} names VF {i} and VF {id}",
                    out.len()
                ))),
                _ => {
                    index = Some(id);
                    Ok(())
                }
            };
            for i in infos {
                match i {
                    VfInfo::Mac(m) => {
                        vf_id(m.vf_id)?;
                        st.mac.0.copy_from_slice(&m.mac[..6]);
                    }
                    VfInfo::Vlan(v) => {
                        vf_id(v.vf_id)?;
                        st.vlan.id = u16::try_from(v.vlan_id)
                            .ok()
                            .filter(|id| *id < 4096)
                            .ok_or_else(|| bad(format!("VLAN id {} above 4095", v.vlan_id)))?;
                        st.vlan.qos = u8::try_from(v.qos)
                            .ok()
                            .filter(|q| *q < 8)
                            .ok_or_else(|| bad(format!("VLAN priority {} above 7", v.qos)))?;
                    }
                    VfInfo::VlanList(l) => {
                        // The kernel lists one entry (the port VLAN);
                        // it carries the protocol.
                        if let Some(VfVlan::Info(v)) = l.first() {
                            st.vlan.proto = if v.protocol == VlanProtocol::Ieee8021Ad {
                                VlanProto::Dot1Ad
                            } else {
                                VlanProto::Dot1Q
                            };
                        }
                    }
                    VfInfo::Rate(r) => {
                        vf_id(r.vf_id)?;
                        st.min_tx_rate = r.min_tx_rate;
                        st.max_tx_rate = r.max_tx_rate;
                    }
                    VfInfo::SpoofCheck(s) => {
                        vf_id(s.vf_id)?;
                        st.spoofchk = Some(s.enabled);
                    }
                    VfInfo::Trust(t) => {
                        vf_id(t.vf_id)?;
                        st.trust = Some(t.enabled);
                    }
                    VfInfo::LinkState(l) => {
                        vf_id(l.vf_id)?;
                        st.link_state = match l.state {
                            VfLinkState::Auto => Some(LinkState::Auto),
                            VfLinkState::Enable => Some(LinkState::Enable),
                            VfLinkState::Disable => Some(LinkState::Disable),
                            _ => None,
                        }
                    }
                    _ => {}
                }
            }
            // The kernel reports -1 for "not supported" in spoofchk and
            // trust; netlink-packet-route folds that into false, so an
            // unsupported setting reads as off (iproute2 omits it).
            st.index = index.unwrap_or(out.len() as u32);
            if out.iter().any(|o: &VfState| o.index == st.index) {
                return Err(bad(format!("VF {} listed twice", st.index)));
            }
            out.push(st);
        }
    }
    Ok(out)
}

fn link_info(msg: &LinkMessage) -> Result<LinkInfo> {
    let mut li = LinkInfo {
        index: msg.header.index,
        up: msg.header.flags.contains(LinkFlags::Up),
        ..Default::default()
    };
    for a in &msg.attributes {
        match a {
            LinkAttribute::IfName(n) => li.name = n.clone(),
            LinkAttribute::Address(a) if a.len() == 6 => {
                let mut m = [0u8; 6];
                m.copy_from_slice(a);
                li.mac = Some(MacAddr(m));
            }
            LinkAttribute::Mtu(m) => li.mtu = Some(*m),
            _ => {}
        }
    }
    li.vfs = parse_vfs(msg)?;
    Ok(li)
}

/// Message for the errno of a refused request, naming what the PF driver
/// does not support.
fn hint(e: &io::Error) -> String {
    match e.raw_os_error().unwrap_or(0) {
        libc::EOPNOTSUPP => "the PF driver does not support this (EOPNOTSUPP)".to_owned(),
        libc::EPROTONOSUPPORT => {
            "the PF driver does not support this VLAN protocol (EPROTONOSUPPORT)".to_owned()
        }
        libc::EINVAL => "the PF driver rejected the value (EINVAL)".to_owned(),
        libc::ENODEV => "no such device (ENODEV)".to_owned(),
        libc::EPERM => "operation not permitted (EPERM): needs CAP_NET_ADMIN".to_owned(),
        libc::EBUSY => "device busy (EBUSY)".to_owned(),
        _ => e.to_string(),
    }
}

/// A blocking rtnetlink socket with a receive timeout.
#[derive(Debug)]
pub struct Rtnl {
    sock: Socket,
    seq: u32,
    timeout: Duration,
}

impl Rtnl {
    /// Opens a NETLINK_ROUTE socket in the calling thread's network
    /// namespace; every receive gives up after `timeout`.
    pub fn open(timeout: Duration) -> Result<Self> {
        let nl = |op: &str, source| Error::Netlink {
            op: op.to_owned(),
            source,
        };
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(|e| nl("socket", e))?;
        sock.bind_auto().map_err(|e| nl("bind", e))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(|e| nl("connect", e))?;
        sock.set_ext_ack(true).ok();
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: timeout.subsec_micros() as libc::suseconds_t,
        };
        // SAFETY: the fd is the open netlink socket owned by `sock`; `tv`
        // is a valid timeval that lives across the call and its size is
        // passed exactly.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(nl("setsockopt(SO_RCVTIMEO)", io::Error::last_os_error()));
        }
        Ok(Self {
            sock,
            seq: 0,
            timeout,
        })
    }

    /// Sends one request and collects the replies until the ACK (or DONE).
    fn request(
        &mut self,
        op: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        hdr.sequence_number = seq;
        let mut req = NetlinkMessage::new(hdr, NetlinkPayload::from(msg));
        req.finalize();
        let mut buf = vec![0u8; req.buffer_len()];
        req.serialize(&mut buf);
        self.sock.send(&buf, 0).map_err(|source| Error::Netlink {
            op: format!("send ({op})"),
            source,
        })?;
        let mut replies = Vec::new();
        // Large enough for the RTM_NEWLINK of a PF with 64 VFs and their stats.
        let mut rbuf = vec![0u8; 256 * 1024];
        loop {
            let n = match self.sock.recv(&mut &mut rbuf[..], 0) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(Error::Timeout {
                        what: format!("the kernel's netlink reply to {op}"),
                        timeout: self.timeout,
                    })
                }
                Err(source) => {
                    return Err(Error::Netlink {
                        op: format!("recv ({op})"),
                        source,
                    })
                }
            };
            record(&rbuf[..n]);
            let (done, mut got) = decode_replies(op, seq, &rbuf[..n])?;
            replies.append(&mut got);
            if done {
                return Ok(replies);
            }
        }
    }

    /// The link named `name`, with its VF info; `None` if there is none.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<LinkInfo>> {
        if name.is_empty() || name.len() > 15 {
            return Err(Error::Invalid(format!("invalid interface name {name:?}")));
        }
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_owned()));
        m.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::Vf]));
        self.get_link(&format!("RTM_GETLINK {name}"), m)
    }

    /// The link with index `index`, with its VF info.
    pub fn link_by_index(&mut self, index: u32) -> Result<Option<LinkInfo>> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::Vf]));
        self.get_link(&format!("RTM_GETLINK #{index}"), m)
    }

    fn get_link(&mut self, op: &str, m: LinkMessage) -> Result<Option<LinkInfo>> {
        match self.request(op, RouteNetlinkMessage::GetLink(m), 0) {
            Ok(replies) => {
                for r in replies {
                    if let RouteNetlinkMessage::NewLink(l) = r {
                        return link_info(&l).map(Some);
                    }
                }
                Err(Error::Decode {
                    op: op.to_owned(),
                    detail: "no RTM_NEWLINK in the reply".into(),
                })
            }
            Err(Error::Kernel { source, .. }) if source.raw_os_error() == Some(libc::ENODEV) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Sets one attribute of VF `vf` of the PF netdev `pf_ifindex`.
    pub fn set_vf(&mut self, pf_ifindex: u32, vf: u32, attr: VfAttr) -> Result<()> {
        let op = format!("setting {} of VF {vf}", attr.name());
        self.request(
            &op,
            RouteNetlinkMessage::SetLink(set_vf_message(pf_ifindex, vf, attr)),
            0,
        )
        .map(drop)
    }

    /// Renames / re-addresses / moves / brings up or down a link; each
    /// `Some` is applied, in one RTM_SETLINK.
    pub fn set_link(&mut self, index: u32, change: &LinkChange) -> Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        if let Some(up) = change.up {
            m.header.change_mask = LinkFlags::Up;
            if up {
                m.header.flags = LinkFlags::Up;
            }
        }
        if let Some(n) = &change.name {
            m.attributes.push(LinkAttribute::IfName(n.clone()));
        }
        if let Some(mac) = change.mac {
            m.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
        }
        if let Some(mtu) = change.mtu {
            m.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(fd) = change.netns_fd {
            m.attributes.push(LinkAttribute::NetNsFd(fd));
        }
        self.request(
            &format!("RTM_SETLINK #{index}"),
            RouteNetlinkMessage::SetLink(m),
            0,
        )
        .map(drop)
    }
}

impl Rtnl {
    /// Adds address `addr/prefix` to link `index` (RTM_NEWADDR, create).
    pub fn add_address(&mut self, index: u32, addr: IpAddr, prefix: u8) -> Result<()> {
        let mut m = AddressMessage::default();
        m.header.family = match addr {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.attributes.push(AddressAttribute::Local(addr));
        m.attributes.push(AddressAttribute::Address(addr));
        self.request(
            &format!("adding address {addr}/{prefix} to #{index}"),
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Adds a route to `dst/prefix` via `gw` (if any) out of link `index`
    /// in the main table (RTM_NEWROUTE, create).
    pub fn add_route(
        &mut self,
        index: u32,
        dst: IpAddr,
        prefix: u8,
        gw: Option<IpAddr>,
    ) -> Result<()> {
        let mut m = RouteMessage::default();
        m.header.address_family = match dst {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        m.header.destination_prefix_length = prefix;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Boot;
        m.header.scope = if gw.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        m.header.kind = RouteType::Unicast;
        if prefix != 0 {
            m.attributes.push(RouteAttribute::Destination(dst.into()));
        }
        if let Some(g) = gw {
            m.attributes.push(RouteAttribute::Gateway(g.into()));
        }
        m.attributes.push(RouteAttribute::Oif(index));
        self.request(
            &format!("adding route {dst}/{prefix} on #{index}"),
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }
}

/// Changes of [`Rtnl::set_link`].
#[derive(Clone, Debug, Default)]
pub struct LinkChange {
    pub name: Option<String>,
    pub mac: Option<MacAddr>,
    pub mtu: Option<u32>,
    pub up: Option<bool>,
    /// Move into the network namespace of this fd.
    pub netns_fd: Option<RawFd>,
}

/// With `POLLUX_NETLINK_RECORD=<file>`, every datagram received is
/// appended to the file as one line of hex: how the kernel replies used as
/// unit-test fixtures were recorded (in the lab, from the igb PF).
fn record(dgram: &[u8]) {
    let Some(path) = std::env::var_os("POLLUX_NETLINK_RECORD") else {
        return;
    };
    let mut line: String = dgram.iter().map(|b| format!("{b:02x}")).collect();
    line.push('\n');
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
}

/// Decodes one datagram of replies to request `seq`. Returns whether the
/// exchange is over (ACK, error or DONE) and the route messages seen.
/// Replies to other sequence numbers are skipped.
pub fn decode_replies(
    op: &str,
    seq: u32,
    mut buf: &[u8],
) -> Result<(bool, Vec<RouteNetlinkMessage>)> {
    let mut out = Vec::new();
    let mut done = false;
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < 16 || len > buf.len() {
            return Err(Error::Decode {
                op: op.to_owned(),
                detail: format!("message length {len} with {} bytes left", buf.len()),
            });
        }
        let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[..len]).map_err(|e| {
            Error::Decode {
                op: op.to_owned(),
                detail: e.to_string(),
            }
        })?;
        let advance = ((len + 3) & !3).min(buf.len());
        buf = &buf[advance..];
        if msg.header.sequence_number != seq {
            continue;
        }
        match msg.payload {
            NetlinkPayload::Error(e) => {
                if let Some(code) = e.code {
                    // The kernel sends a negative errno; i32::MIN (found by
                    // the vf_info fuzz target) has no negation.
                    let Some(errno) = code.get().checked_neg().filter(|e| *e > 0) else {
                        return Err(Error::Decode {
                            op: op.to_owned(),
                            detail: format!("NLMSG_ERROR carries {code}, not a negative errno"),
                        });
                    };
                    let source = io::Error::from_raw_os_error(errno);
                    return Err(Error::Kernel {
                        op: op.to_owned(),
                        hint: hint(&source),
                        source,
                    });
                }
                done = true;
            }
            NetlinkPayload::Done(_) => done = true,
            NetlinkPayload::InnerMessage(m) => out.push(m),
            _ => {}
        }
    }
    Ok((done, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    /// A netlink attribute as include/uapi/linux/netlink.h lays it out:
    /// u16 length (header included), u16 type, payload, padding to 4.
    fn nla(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(payload);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }
    fn u32s(v: &[u32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_ne_bytes()).collect()
    }

    // include/uapi/linux/if_link.h
    const IFLA_IFNAME: u16 = 3;
    const IFLA_MTU: u16 = 4;
    const IFLA_ADDRESS: u16 = 1;
    const IFLA_VFINFO_LIST: u16 = 22;
    const IFLA_VF_INFO: u16 = 1;
    const IFLA_VF_MAC: u16 = 1;
    const IFLA_VF_VLAN: u16 = 2;
    const IFLA_VF_TX_RATE: u16 = 3;
    const IFLA_VF_SPOOFCHK: u16 = 4;
    const IFLA_VF_LINK_STATE: u16 = 5;
    const IFLA_VF_RATE: u16 = 6;
    const IFLA_VF_TRUST: u16 = 9;
    const IFLA_VF_VLAN_LIST: u16 = 12;
    const IFLA_VF_VLAN_INFO: u16 = 1;
    const RTM_NEWLINK: u16 = 16;
    const RTM_SETLINK: u16 = 19;
    const NLMSG_ERROR: u16 = 2;

    /// One IFLA_VF_INFO as net/core/rtnetlink.c rtnl_fill_vfinfo fills it.
    #[allow(clippy::too_many_arguments)]
    fn vf_info(
        vf: u32,
        mac: [u8; 6],
        vlan: u32,
        qos: u32,
        proto: u16,
        rate: (u32, u32),
        spoof: u32,
        trust: u32,
        state: u32,
    ) -> Vec<u8> {
        let mut mac32 = [0u8; 32];
        mac32[..6].copy_from_slice(&mac);
        let mut body = Vec::new();
        body.extend(nla(IFLA_VF_MAC, &[&vf.to_ne_bytes()[..], &mac32].concat()));
        body.extend(nla(IFLA_VF_VLAN, &u32s(&[vf, vlan, qos])));
        let mut vinfo = u32s(&[vf, vlan, qos]);
        vinfo.extend_from_slice(&proto.to_be_bytes());
        vinfo.extend_from_slice(&[0, 0]);
        body.extend(nla(IFLA_VF_VLAN_LIST, &nla(IFLA_VF_VLAN_INFO, &vinfo)));
        body.extend(nla(IFLA_VF_TX_RATE, &u32s(&[vf, rate.1])));
        body.extend(nla(IFLA_VF_RATE, &u32s(&[vf, rate.0, rate.1])));
        body.extend(nla(IFLA_VF_SPOOFCHK, &u32s(&[vf, spoof])));
        body.extend(nla(IFLA_VF_LINK_STATE, &u32s(&[vf, state])));
        body.extend(nla(IFLA_VF_TRUST, &u32s(&[vf, trust])));
        nla(IFLA_VF_INFO, &body)
    }

    /// An RTM_NEWLINK for PF `eth0` (ifindex 2) with two VFs, laid out
    /// byte by byte from the uapi headers.
    fn newlink_reply(seq: u32) -> Vec<u8> {
        let mut list = vf_info(0, [2, 0, 0, 0, 0, 1], 100, 3, 0x8100, (0, 0), 0, 1, 1);
        list.extend(vf_info(1, [0; 6], 0, 0, 0x88a8, (10, 1000), 1, 0, 2));
        newlink_with_vfs(seq, &list)
    }

    /// An RTM_NEWLINK for `eth0` with `list` as its IFLA_VFINFO_LIST.
    fn newlink_with_vfs(seq: u32, list: &[u8]) -> Vec<u8> {
        let mut ifinfo = vec![0u8; 16]; // struct ifinfomsg
        ifinfo[4..8].copy_from_slice(&2i32.to_ne_bytes());
        ifinfo[8..12].copy_from_slice(&1u32.to_ne_bytes()); // IFF_UP
        let mut attrs = Vec::new();
        attrs.extend(nla(IFLA_IFNAME, b"eth0\0"));
        attrs.extend(nla(IFLA_MTU, &1500u32.to_ne_bytes()));
        attrs.extend(nla(IFLA_ADDRESS, &[0x52, 0x54, 0, 0x12, 0x34, 0x56]));
        attrs.extend(nla(IFLA_VFINFO_LIST, list));
        let body = [ifinfo, attrs].concat();
        let mut msg = Vec::new();
        msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
        msg.extend_from_slice(&0u16.to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend(body);
        msg
    }

    fn error_reply(seq: u32, errno: i32) -> Vec<u8> {
        let mut msg = Vec::new();
        msg.extend_from_slice(&36u32.to_ne_bytes());
        msg.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        msg.extend_from_slice(&0u16.to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&(-errno).to_ne_bytes());
        // The request's header, echoed.
        msg.extend_from_slice(&[0u8; 16]);
        msg
    }

    /// VF info no kernel sends (found by the vf_info fuzz target's
    /// invariants): a VLAN id or priority that would be truncated into a
    /// plausible one, attributes naming two VFs, a VF listed twice.
    #[test]
    fn impossible_vf_info_is_refused_not_truncated() {
        let one =
            |vf, vlan, qos| vf_info(vf, [2, 0, 0, 0, 0, 1], vlan, qos, 0x8100, (0, 0), 0, 1, 1);
        let mut mixed = one(0, 100, 3);
        // Rewrite the VF number of IFLA_VF_VLAN (after the 4-byte VF_INFO
        // header and the 40-byte IFLA_VF_MAC).
        mixed[4 + 40 + 4..4 + 40 + 8].copy_from_slice(&1u32.to_ne_bytes());
        let cases = [
            (one(0, 0x1_0064, 0), "VLAN id 65636 above 4095"),
            (one(0, 4096, 0), "VLAN id 4096 above 4095"),
            (one(0, 100, 8), "VLAN priority 8 above 7"),
            (mixed, "names VF 0 and VF 1"),
            ([one(3, 1, 1), one(3, 2, 2)].concat(), "VF 3 listed twice"),
        ];
        for (list, why) in cases {
            let (_, msgs) = decode_replies("get", 1, &newlink_with_vfs(1, &list)).unwrap();
            let RouteNetlinkMessage::NewLink(l) = &msgs[0] else {
                panic!("{msgs:?}")
            };
            let e = parse_vfs(l).unwrap_err().to_string();
            assert!(e.contains(why), "{e} / {why}");
        }
        let ok = [one(0, 4095, 7), one(1, 0, 0)].concat();
        let (_, msgs) = decode_replies("get", 1, &newlink_with_vfs(1, &ok)).unwrap();
        let RouteNetlinkMessage::NewLink(l) = &msgs[0] else {
            panic!("{msgs:?}")
        };
        let vfs = parse_vfs(l).unwrap();
        assert_eq!(
            (vfs[0].vlan.id, vfs[0].vlan.qos, vfs[1].index),
            (4095, 7, 1)
        );
    }

    #[test]
    fn parses_kernel_vf_info() {
        let mut dgram = newlink_reply(7);
        dgram.extend(error_reply(7, 0));
        let (done, msgs) = decode_replies("get", 7, &dgram).unwrap();
        assert!(done);
        let RouteNetlinkMessage::NewLink(l) = &msgs[0] else {
            panic!("{msgs:?}")
        };
        let li = link_info(l).unwrap();
        assert_eq!(li.name, "eth0");
        assert_eq!(li.index, 2);
        assert!(li.up);
        assert_eq!(li.mtu, Some(1500));
        assert_eq!(li.mac.unwrap().to_string(), "52:54:00:12:34:56");
        assert_eq!(li.vfs.len(), 2);
        let v0 = &li.vfs[0];
        assert_eq!(v0.index, 0);
        assert_eq!(v0.mac.to_string(), "02:00:00:00:00:01");
        assert_eq!(
            v0.vlan,
            Vlan {
                id: 100,
                qos: 3,
                proto: VlanProto::Dot1Q
            }
        );
        assert_eq!(
            (v0.spoofchk, v0.trust, v0.link_state),
            (Some(false), Some(true), Some(LinkState::Enable))
        );
        let v1 = &li.vfs[1];
        assert_eq!(v1.index, 1);
        assert!(v1.mac.is_zero());
        assert_eq!(v1.vlan.proto, VlanProto::Dot1Ad);
        assert_eq!((v1.min_tx_rate, v1.max_tx_rate), (10, 1000));
        assert_eq!(
            (v1.spoofchk, v1.trust, v1.link_state),
            (Some(true), Some(false), Some(LinkState::Disable))
        );
    }

    #[test]
    fn kernel_errors_name_the_refusal() {
        let e = decode_replies("setting rate of VF 0", 3, &error_reply(3, libc::EOPNOTSUPP))
            .unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("setting rate of VF 0") && s.contains("EOPNOTSUPP"),
            "{s}"
        );
        let e =
            decode_replies("setting vlan", 3, &error_reply(3, libc::EPROTONOSUPPORT)).unwrap_err();
        assert!(e.to_string().contains("VLAN protocol"), "{e}");
        // A reply for another request is skipped, not taken as ours.
        let (done, msgs) = decode_replies("x", 4, &error_reply(3, libc::EINVAL)).unwrap();
        assert!(!done && msgs.is_empty());
    }

    #[test]
    fn error_codes_that_are_not_errnos_are_decode_errors() {
        for code in [i32::MIN, 1, i32::MAX] {
            let mut b = error_reply(4, 0);
            b[16..20].copy_from_slice(&code.to_ne_bytes());
            let e = decode_replies("get", 4, &b).unwrap_err();
            assert!(matches!(e, Error::Decode { .. }), "{code}: {e}");
            assert!(e.to_string().contains("not a negative errno"), "{e}");
        }
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        let good = newlink_reply(1);
        for cut in [17, 20, 40, good.len() - 3] {
            let mut b = good[..cut].to_vec();
            // Keep the declared length: the message claims more than it has.
            b[..4].copy_from_slice(&(good.len() as u32).to_ne_bytes());
            assert!(decode_replies("get", 1, &b).is_err(), "cut at {cut}");
        }
        // Corrupt the length of an attribute inside.
        let mut b = good.clone();
        b[32] = 0xff;
        b[33] = 0x7f;
        let _ = decode_replies("get", 1, &b); // must not panic
        let mut b = good;
        b[0..4].copy_from_slice(&3u32.to_ne_bytes());
        assert!(decode_replies("get", 1, &b).is_err());
        // Every prefix, every single-byte corruption: never a panic.
        let good = newlink_reply(1);
        for i in 0..good.len() {
            let _ = decode_replies("get", 1, &good[..i]);
            let mut b = good.clone();
            b[i] ^= 0xa5;
            let _ = decode_replies("get", 1, &b);
        }
    }

    /// The SETLINK for each attribute, compared with the uapi layout
    /// byte for byte.
    #[test]
    fn set_vf_messages_match_uapi_layout() {
        let emit = |m: LinkMessage| {
            let mut b = vec![0u8; m.buffer_len()];
            m.emit(&mut b);
            b
        };
        let ifinfo = |idx: i32| {
            let mut h = vec![0u8; 16];
            h[4..8].copy_from_slice(&idx.to_ne_bytes());
            h
        };
        let wrap = |inner: Vec<u8>| {
            [ifinfo(5), nla(IFLA_VFINFO_LIST, &nla(IFLA_VF_INFO, &inner))].concat()
        };
        let mut mac32 = [0u8; 32];
        mac32[..6].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
        let cases = [
            (
                VfAttr::Mac("02:00:00:00:00:09".parse().unwrap()),
                nla(IFLA_VF_MAC, &[&3u32.to_ne_bytes()[..], &mac32].concat()),
            ),
            (
                VfAttr::Vlan(Vlan {
                    id: 100,
                    qos: 5,
                    proto: VlanProto::Dot1Q,
                }),
                nla(IFLA_VF_VLAN, &u32s(&[3, 100, 5])),
            ),
            (
                VfAttr::Vlan(Vlan {
                    id: 7,
                    qos: 0,
                    proto: VlanProto::Dot1Ad,
                }),
                nla(
                    IFLA_VF_VLAN_LIST,
                    &nla(
                        IFLA_VF_VLAN_INFO,
                        &[u32s(&[3, 7, 0]), vec![0x88, 0xa8, 0, 0]].concat(),
                    ),
                ),
            ),
            (
                VfAttr::Rate { min: 0, max: 100 },
                nla(IFLA_VF_RATE, &u32s(&[3, 0, 100])),
            ),
            (
                VfAttr::SpoofCheck(false),
                nla(IFLA_VF_SPOOFCHK, &u32s(&[3, 0])),
            ),
            (VfAttr::Trust(true), nla(IFLA_VF_TRUST, &u32s(&[3, 1]))),
            (
                VfAttr::LinkState(LinkState::Disable),
                nla(IFLA_VF_LINK_STATE, &u32s(&[3, 2])),
            ),
        ];
        for (attr, want) in cases {
            assert_eq!(emit(set_vf_message(5, 3, attr)), wrap(want), "{attr:?}");
        }
        let _ = RTM_SETLINK;
    }

    #[test]
    fn value_parsers() {
        // MAC addresses are pollux_core::MacAddr's, tested there.
        assert_eq!("802.1Q".parse::<VlanProto>().unwrap(), VlanProto::Dot1Q);
        assert_eq!("802.1AD".parse::<VlanProto>().unwrap(), VlanProto::Dot1Ad);
        assert!("qinq".parse::<VlanProto>().is_err());
        assert_eq!("disable".parse::<LinkState>().unwrap(), LinkState::Disable);
        assert!("on".parse::<LinkState>().is_err());
    }
}
