//! Slow-protocol frames: LACPDUs and marker PDUs as checked zero-copy
//! views (in the manner of smoltcp's `wire`), and the announcement frames
//! an active-backup failover sends.
//!
//! Layouts are IEEE 802.1AX-2014 section 6.4.2.3 (LACPDU, figure 6-7) and
//! 6.5.3.3 (marker PDU, figure 6-11), carried in IEEE 802.3 Annex 57A slow
//! protocol frames: destination 01:80:c2:00:00:02, EtherType 0x8809, then
//! a subtype octet (1 = LACP, 2 = marker). Both PDUs are 110 octets after
//! the EtherType, so both frames are 124 octets without FCS.
//!
//! [`Lacpdu::new_checked`] and [`MarkerPdu::new_checked`] validate
//! untrusted bytes once; after that no accessor can panic.

use std::net::Ipv4Addr;

use pollux_core::net::{ETHERTYPE_ARP, ETHERTYPE_SLOW};
use pollux_core::wire::{ArpOp, ArpPacket, EthernetFrame};
use pollux_core::MacAddr;
use serde::Serialize;

/// The slow-protocols multicast address (IEEE 802.3 Annex 57A).
pub const SLOW_PROTOCOLS_MAC: MacAddr = MacAddr([0x01, 0x80, 0xc2, 0x00, 0x00, 0x02]);
/// Slow-protocol subtype of LACP.
pub const SUBTYPE_LACP: u8 = 1;
/// Slow-protocol subtype of the marker protocol.
pub const SUBTYPE_MARKER: u8 = 2;
/// Length of an LACPDU or marker frame, Ethernet header included, FCS not.
pub const FRAME_LEN: usize = 124;

/// Why bytes are not a valid LACPDU or marker PDU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("frame of {0} bytes is too short")]
    Truncated(usize),
    #[error("EtherType {0:#06x} is not the slow protocols' 0x8809")]
    NotSlowProtocol(u16),
    #[error("slow-protocol subtype {0} is not the one expected")]
    Subtype(u8),
    #[error("protocol version 0 is invalid")]
    Version,
    #[error("TLV at offset {offset}: type {tlv_type} length {len}, expected type {want_type} length {want_len}")]
    Tlv {
        offset: usize,
        tlv_type: u8,
        len: u8,
        want_type: u8,
        want_len: u8,
    },
}

/// Actor or partner state octet (802.1AX-2014 6.4.2.3 item m).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PortState(pub u8);

impl PortState {
    pub const ACTIVITY: u8 = 0x01;
    pub const TIMEOUT: u8 = 0x02;
    pub const AGGREGATION: u8 = 0x04;
    pub const SYNCHRONIZATION: u8 = 0x08;
    pub const COLLECTING: u8 = 0x10;
    pub const DISTRIBUTING: u8 = 0x20;
    pub const DEFAULTED: u8 = 0x40;
    pub const EXPIRED: u8 = 0x80;

    #[inline]
    pub fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    #[inline]
    pub fn set(&mut self, bit: u8, on: bool) {
        if on {
            self.0 |= bit
        } else {
            self.0 &= !bit
        }
    }

    /// LACP_Activity: active (true) or passive.
    pub fn activity(self) -> bool {
        self.has(Self::ACTIVITY)
    }
    /// LACP_Timeout: short (true) or long.
    pub fn short_timeout(self) -> bool {
        self.has(Self::TIMEOUT)
    }
    pub fn aggregation(self) -> bool {
        self.has(Self::AGGREGATION)
    }
    pub fn synchronization(self) -> bool {
        self.has(Self::SYNCHRONIZATION)
    }
    pub fn collecting(self) -> bool {
        self.has(Self::COLLECTING)
    }
    pub fn distributing(self) -> bool {
        self.has(Self::DISTRIBUTING)
    }
    pub fn defaulted(self) -> bool {
        self.has(Self::DEFAULTED)
    }
    pub fn expired(self) -> bool {
        self.has(Self::EXPIRED)
    }
}

impl std::fmt::Debug for PortState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const NAMES: [&str; 8] = ["ACT", "TMO", "AGG", "SYN", "COL", "DIS", "DEF", "EXP"];
        write!(f, "{:#04x}[", self.0)?;
        let mut first = true;
        for (i, n) in NAMES.iter().enumerate() {
            if self.0 & (1 << i) != 0 {
                if !first {
                    f.write_str(" ")?;
                }
                f.write_str(n)?;
                first = false;
            }
        }
        f.write_str("]")
    }
}

impl Serialize for PortState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.0)
    }
}

/// One side's information in an LACPDU (the Actor or Partner TLV).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct LacpInfo {
    pub system_priority: u16,
    #[serde(serialize_with = "ser_mac")]
    pub system: MacAddr,
    pub key: u16,
    pub port_priority: u16,
    pub port: u16,
    pub state: PortState,
}

pub(crate) fn ser_mac<S: serde::Serializer>(m: &MacAddr, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&m.to_string())
}

mod field {
    use std::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const SUBTYPE: usize = 14;
    pub const VERSION: usize = 15;

    // LACPDU TLVs: type, length, then the info fields.
    pub const ACTOR_TLV: usize = 16;
    pub const PARTNER_TLV: usize = 36;
    pub const COLLECTOR_TLV: usize = 56;
    pub const COLLECTOR_MAX_DELAY: Range<usize> = 58..60;
    pub const LACP_TERMINATOR: usize = 72;
    /// Through the terminator TLV: everything a receiver needs.
    pub const LACP_MIN_LEN: usize = 74;
    // Offsets inside an info TLV, from the TLV's type octet.
    pub const INFO_SYS_PRIO: usize = 2;
    pub const INFO_SYS: usize = 4;
    pub const INFO_KEY: usize = 10;
    pub const INFO_PORT_PRIO: usize = 12;
    pub const INFO_PORT: usize = 14;
    pub const INFO_STATE: usize = 16;

    // Marker PDU.
    pub const MARKER_TLV: usize = 16;
    pub const MARKER_PORT: Range<usize> = 18..20;
    pub const MARKER_SYSTEM: Range<usize> = 20..26;
    pub const MARKER_TRANSACTION: Range<usize> = 26..30;
    pub const MARKER_TERMINATOR: usize = 32;
    pub const MARKER_MIN_LEN: usize = 34;
}

/// TLV types and lengths (802.1AX-2014 6.4.2.3, 6.5.3.3).
const TLV_ACTOR: (u8, u8) = (1, 20);
const TLV_PARTNER: (u8, u8) = (2, 20);
const TLV_COLLECTOR: (u8, u8) = (3, 16);
const TLV_TERMINATOR: (u8, u8) = (0, 0);
const TLV_MARKER_INFO: u8 = 1;
const TLV_MARKER_RESPONSE: u8 = 2;
const MARKER_TLV_LEN: u8 = 16;

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn check_header(b: &[u8], min: usize, subtype: u8) -> Result<(), WireError> {
    if b.len() < min {
        return Err(WireError::Truncated(b.len()));
    }
    let et = be16(b, field::ETHERTYPE.start);
    if et != ETHERTYPE_SLOW {
        return Err(WireError::NotSlowProtocol(et));
    }
    if b[field::SUBTYPE] != subtype {
        return Err(WireError::Subtype(b[field::SUBTYPE]));
    }
    if b[field::VERSION] == 0 {
        return Err(WireError::Version);
    }
    Ok(())
}

fn check_tlv(b: &[u8], offset: usize, (want_type, want_len): (u8, u8)) -> Result<(), WireError> {
    let (t, l) = (b[offset], b[offset + 1]);
    if t != want_type || l != want_len {
        return Err(WireError::Tlv {
            offset,
            tlv_type: t,
            len: l,
            want_type,
            want_len,
        });
    }
    Ok(())
}

/// The kind of a slow-protocol frame, by its first bytes only (no other
/// validation): what the receive path uses to take frames out of a burst.
pub fn slow_subtype(frame: &[u8]) -> Option<u8> {
    if frame.len() > field::SUBTYPE
        && frame[field::ETHERTYPE] == ETHERTYPE_SLOW.to_be_bytes()
        && frame[field::DST] == SLOW_PROTOCOLS_MAC.0
    {
        Some(frame[field::SUBTYPE])
    } else {
        None
    }
}

/// A zero-copy view of an LACPDU frame (Ethernet header included).
#[derive(Clone, Copy, Debug)]
pub struct Lacpdu<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Lacpdu<T> {
    /// Wraps bytes without checking them; accessors may panic on short
    /// buffers. Use for buffers you build yourself.
    pub fn new_unchecked(buffer: T) -> Lacpdu<T> {
        Lacpdu { buffer }
    }

    /// Wraps untrusted bytes, rejecting anything that is not a
    /// well-formed LACPDU: too short, not EtherType 0x8809 subtype 1,
    /// version 0, or Actor/Partner/Collector TLVs of the wrong type or
    /// length. Version 1 PDUs must also carry the Terminator TLV where
    /// 802.1AX puts it; later versions may put further TLVs there
    /// (802.1AX-2014 6.4.2.4: a receiver processes the version 1 fields of
    /// a newer PDU).
    pub fn new_checked(buffer: T) -> Result<Lacpdu<T>, WireError> {
        let b = buffer.as_ref();
        check_header(b, field::LACP_MIN_LEN, SUBTYPE_LACP)?;
        check_tlv(b, field::ACTOR_TLV, TLV_ACTOR)?;
        check_tlv(b, field::PARTNER_TLV, TLV_PARTNER)?;
        check_tlv(b, field::COLLECTOR_TLV, TLV_COLLECTOR)?;
        if b[field::VERSION] == 1 {
            check_tlv(b, field::LACP_TERMINATOR, TLV_TERMINATOR)?;
        }
        Ok(Lacpdu { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn dst(&self) -> MacAddr {
        mac_at(self.buffer.as_ref(), field::DST.start)
    }

    pub fn src(&self) -> MacAddr {
        mac_at(self.buffer.as_ref(), field::SRC.start)
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }

    pub fn actor(&self) -> LacpInfo {
        info_at(self.buffer.as_ref(), field::ACTOR_TLV)
    }

    pub fn partner(&self) -> LacpInfo {
        info_at(self.buffer.as_ref(), field::PARTNER_TLV)
    }

    pub fn collector_max_delay(&self) -> u16 {
        be16(self.buffer.as_ref(), field::COLLECTOR_MAX_DELAY.start)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Lacpdu<T> {
    /// Writes a complete version 1 LACPDU into the first [`FRAME_LEN`]
    /// bytes (the buffer must have at least that many).
    pub fn emit(&mut self, src: MacAddr, actor: &LacpInfo, partner: &LacpInfo, max_delay: u16) {
        let b = &mut self.buffer.as_mut()[..FRAME_LEN];
        b.fill(0);
        b[field::DST].copy_from_slice(&SLOW_PROTOCOLS_MAC.0);
        b[field::SRC].copy_from_slice(&src.0);
        b[field::ETHERTYPE].copy_from_slice(&ETHERTYPE_SLOW.to_be_bytes());
        b[field::SUBTYPE] = SUBTYPE_LACP;
        b[field::VERSION] = 1;
        put_info(b, field::ACTOR_TLV, TLV_ACTOR.0, actor);
        put_info(b, field::PARTNER_TLV, TLV_PARTNER.0, partner);
        b[field::COLLECTOR_TLV] = TLV_COLLECTOR.0;
        b[field::COLLECTOR_TLV + 1] = TLV_COLLECTOR.1;
        b[field::COLLECTOR_MAX_DELAY].copy_from_slice(&max_delay.to_be_bytes());
        // Terminator (type 0, length 0) and the reserved octets stay zero.
    }
}

fn mac_at(b: &[u8], at: usize) -> MacAddr {
    let mut m = [0u8; 6];
    m.copy_from_slice(&b[at..at + 6]);
    MacAddr(m)
}

fn info_at(b: &[u8], tlv: usize) -> LacpInfo {
    LacpInfo {
        system_priority: be16(b, tlv + field::INFO_SYS_PRIO),
        system: mac_at(b, tlv + field::INFO_SYS),
        key: be16(b, tlv + field::INFO_KEY),
        port_priority: be16(b, tlv + field::INFO_PORT_PRIO),
        port: be16(b, tlv + field::INFO_PORT),
        state: PortState(b[tlv + field::INFO_STATE]),
    }
}

fn put_info(b: &mut [u8], tlv: usize, tlv_type: u8, i: &LacpInfo) {
    b[tlv] = tlv_type;
    b[tlv + 1] = TLV_ACTOR.1;
    b[tlv + field::INFO_SYS_PRIO..][..2].copy_from_slice(&i.system_priority.to_be_bytes());
    b[tlv + field::INFO_SYS..][..6].copy_from_slice(&i.system.0);
    b[tlv + field::INFO_KEY..][..2].copy_from_slice(&i.key.to_be_bytes());
    b[tlv + field::INFO_PORT_PRIO..][..2].copy_from_slice(&i.port_priority.to_be_bytes());
    b[tlv + field::INFO_PORT..][..2].copy_from_slice(&i.port.to_be_bytes());
    b[tlv + field::INFO_STATE] = i.state.0;
}

/// Marker PDU kinds (802.1AX-2014 6.5.3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkerKind {
    Information,
    Response,
}

/// The content of a marker PDU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarkerInfo {
    pub kind: MarkerKind,
    pub requester_port: u16,
    pub requester_system: MacAddr,
    pub transaction_id: u32,
}

/// A zero-copy view of a marker PDU frame.
#[derive(Clone, Copy, Debug)]
pub struct MarkerPdu<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> MarkerPdu<T> {
    pub fn new_unchecked(buffer: T) -> MarkerPdu<T> {
        MarkerPdu { buffer }
    }

    /// Wraps untrusted bytes, rejecting anything but a well-formed marker
    /// information or response PDU.
    pub fn new_checked(buffer: T) -> Result<MarkerPdu<T>, WireError> {
        let b = buffer.as_ref();
        check_header(b, field::MARKER_MIN_LEN, SUBTYPE_MARKER)?;
        let t = b[field::MARKER_TLV];
        let want = if t == TLV_MARKER_RESPONSE {
            TLV_MARKER_RESPONSE
        } else {
            TLV_MARKER_INFO
        };
        check_tlv(b, field::MARKER_TLV, (want, MARKER_TLV_LEN))?;
        check_tlv(b, field::MARKER_TERMINATOR, TLV_TERMINATOR)?;
        Ok(MarkerPdu { buffer })
    }

    pub fn src(&self) -> MacAddr {
        mac_at(self.buffer.as_ref(), field::SRC.start)
    }

    pub fn info(&self) -> MarkerInfo {
        let b = self.buffer.as_ref();
        let t = &b[field::MARKER_TRANSACTION];
        MarkerInfo {
            kind: if b[field::MARKER_TLV] == TLV_MARKER_RESPONSE {
                MarkerKind::Response
            } else {
                MarkerKind::Information
            },
            requester_port: be16(b, field::MARKER_PORT.start),
            requester_system: mac_at(b, field::MARKER_SYSTEM.start),
            transaction_id: u32::from_be_bytes([t[0], t[1], t[2], t[3]]),
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> MarkerPdu<T> {
    /// Writes a complete marker PDU into the first [`FRAME_LEN`] bytes.
    pub fn emit(&mut self, src: MacAddr, m: &MarkerInfo) {
        let b = &mut self.buffer.as_mut()[..FRAME_LEN];
        b.fill(0);
        b[field::DST].copy_from_slice(&SLOW_PROTOCOLS_MAC.0);
        b[field::SRC].copy_from_slice(&src.0);
        b[field::ETHERTYPE].copy_from_slice(&ETHERTYPE_SLOW.to_be_bytes());
        b[field::SUBTYPE] = SUBTYPE_MARKER;
        b[field::VERSION] = 1;
        b[field::MARKER_TLV] = match m.kind {
            MarkerKind::Information => TLV_MARKER_INFO,
            MarkerKind::Response => TLV_MARKER_RESPONSE,
        };
        b[field::MARKER_TLV + 1] = MARKER_TLV_LEN;
        b[field::MARKER_PORT].copy_from_slice(&m.requester_port.to_be_bytes());
        b[field::MARKER_SYSTEM].copy_from_slice(&m.requester_system.0);
        b[field::MARKER_TRANSACTION].copy_from_slice(&m.transaction_id.to_be_bytes());
    }
}

/// Length of the announcement frames below, padded to the Ethernet minimum.
pub const ANNOUNCE_LEN: usize = 60;

/// A gratuitous ARP request announcing that `ip` is at `mac`: sender and
/// target IP both `ip`, target hardware address zero, broadcast, as Linux
/// sends for NETDEV_NOTIFY_PEERS (net/ipv4/devinet.c inetdev_send_gratuitous_arp).
pub fn gratuitous_arp(mac: MacAddr, ip: [u8; 4]) -> [u8; ANNOUNCE_LEN] {
    let ip = Ipv4Addr::from(ip);
    arp_frame(
        MacAddr::BROADCAST,
        ETHERTYPE_ARP,
        ArpOp::Request,
        (mac, ip),
        (MacAddr::ZERO, ip),
    )
}

/// An Ethernet/IPv4 ARP (or RARP) frame padded to [`ANNOUNCE_LEN`]: from
/// the sender's MAC to `dst`, sender and target (hardware, protocol)
/// addresses as given.
fn arp_frame(
    dst: MacAddr,
    ethertype: u16,
    op: ArpOp,
    (sha, spa): (MacAddr, Ipv4Addr),
    (tha, tpa): (MacAddr, Ipv4Addr),
) -> [u8; ANNOUNCE_LEN] {
    let mut f = [0u8; ANNOUNCE_LEN];
    let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
    eth.set_dst_addr(dst);
    eth.set_src_addr(sha);
    eth.set_ethertype(ethertype);
    let mut arp = ArpPacket::new_unchecked(eth.payload_mut());
    arp.fill_ethernet_ipv4();
    arp.set_op(op);
    arp.set_sha(sha);
    arp.set_spa(spa);
    arp.set_tha(tha);
    arp.set_tpa(tpa);
    f
}

/// EtherType of RARP.
pub const ETHERTYPE_RARP: u16 = 0x8035;

/// An L2 announcement for a MAC with no IP to announce: a broadcast RARP
/// "request reverse" whose source is `mac`, the frame QEMU's
/// announce-self and VMware send so that switches learn a moved MAC.
pub fn rarp_announce(mac: MacAddr) -> [u8; ANNOUNCE_LEN] {
    // RFC 903: op 3, sender and target hardware address both `mac`, no
    // protocol addresses.
    let none = Ipv4Addr::UNSPECIFIED;
    arp_frame(
        MacAddr::BROADCAST,
        ETHERTYPE_RARP,
        ArpOp::Other(3),
        (mac, none),
        (mac, none),
    )
}

/// EtherType of the learning packets of balance-tlb and balance-alb:
/// ETH_P_LOOPBACK (include/uapi/linux/if_ether.h), as bond_alb.c sends.
pub const ETHERTYPE_LOOPBACK: u16 = 0x9000;

/// A learning packet (bond_alb.c `struct learning_pkt`, sent by
/// alb_send_lp_vid()): destination and source both `mac`, EtherType
/// ETH_P_LOOPBACK, zero padding to the 60-byte minimum (ETH_ZLEN). A
/// switch learns `mac` on the port it came in on; no host takes it.
/// Untagged only: a Pollux bond has no VLAN devices above it to send
/// one per VLAN for.
pub fn learning_packet(mac: MacAddr) -> [u8; ANNOUNCE_LEN] {
    let mut f = [0u8; ANNOUNCE_LEN];
    let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
    eth.set_dst_addr(mac);
    eth.set_src_addr(mac);
    eth.set_ethertype(ETHERTYPE_LOOPBACK);
    f
}

/// ARP operation codes (RFC 826).
pub const ARP_REQUEST: u16 = 1;
pub const ARP_REPLY: u16 = 2;

/// An Ethernet header and the ARP packet after it.
pub type EthArp<'a> = (EthernetFrame<&'a [u8]>, ArpPacket<&'a [u8]>);

/// The Ethernet header and ARP packet of an untagged Ethernet/IPv4 ARP
/// frame, through the core's checked views; `None` for anything else
/// (shorter than 42 bytes, another EtherType, ARP for other addresses).
#[inline]
pub fn untagged_arp(frame: &[u8]) -> Option<EthArp<'_>> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != ETHERTYPE_ARP {
        return None;
    }
    let arp = ArpPacket::new_checked(&frame[EthernetFrame::<&[u8]>::HEADER_LEN..]).ok()?;
    Some((eth, arp))
}

/// Length of an Ethernet header and an Ethernet/IPv4 ARP body.
pub const ARP_FRAME_LEN: usize = EthernetFrame::<&[u8]>::HEADER_LEN + ArpPacket::<&[u8]>::LEN;

/// An ARP reply from `src_mac`/`src_ip` to `dst_mac`/`dst_ip`, Ethernet
/// destination `dst_mac`, padded to 60 bytes: the reply balance-alb sends
/// to a peer's request, and the update it sends when the peer's member
/// changes (what bond_alb.c's rlb_update_client() builds with arp_create()).
pub fn arp_reply(
    src_mac: MacAddr,
    src_ip: [u8; 4],
    dst_mac: MacAddr,
    dst_ip: [u8; 4],
) -> [u8; ANNOUNCE_LEN] {
    arp_frame(
        dst_mac,
        ETHERTYPE_ARP,
        ArpOp::Reply,
        (src_mac, src_ip.into()),
        (dst_mac, dst_ip.into()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An LACPDU as Linux bonding sends it, byte for byte: actor system
    /// 02:00:00:00:00:aa priority 65535, key 0x0f (1000 Mb/s full duplex,
    /// Linux's key encoding), port priority 255, port 1, state 0x3f
    /// (active, short timeout, aggregation, in sync, collecting,
    /// distributing); partner system 02:00:00:00:00:bb, key 0x0f, port 2,
    /// state 0x3d; collector max delay 0.
    fn linux_lacpdu() -> Vec<u8> {
        let mut v = vec![
            0x01, 0x80, 0xc2, 0x00, 0x00, 0x02, // dst
            0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // src (slave's permanent MAC)
            0x88, 0x09, 0x01, 0x01, // slow protocols, LACP, version 1
            0x01, 0x14, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0xaa, 0x00, 0x0f, 0x00, 0xff,
            0x00, 0x01, 0x3f, 0x00, 0x00, 0x00, // actor TLV
            0x02, 0x14, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0xbb, 0x00, 0x0f, 0x00, 0xff,
            0x00, 0x02, 0x3d, 0x00, 0x00, 0x00, // partner TLV
            0x03, 0x10, 0x00, 0x00, // collector TLV, max delay 0
        ];
        v.extend_from_slice(&[0; 12]); // collector reserved
        v.extend_from_slice(&[0, 0]); // terminator
        v.extend_from_slice(&[0; 50]); // reserved
        assert_eq!(v.len(), FRAME_LEN);
        v
    }

    #[test]
    fn parses_and_rebuilds_a_linux_lacpdu() {
        let bytes = linux_lacpdu();
        let p = Lacpdu::new_checked(&bytes[..]).unwrap();
        let a = p.actor();
        assert_eq!(a.system, MacAddr([2, 0, 0, 0, 0, 0xaa]));
        assert_eq!(
            (a.system_priority, a.key, a.port_priority, a.port),
            (65535, 15, 255, 1)
        );
        assert!(a.state.synchronization() && a.state.collecting() && a.state.distributing());
        assert!(a.state.short_timeout() && !a.state.defaulted());
        let pa = p.partner();
        assert_eq!((pa.port, pa.state.0), (2, 0x3d));
        assert_eq!(p.src(), MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
        let mut out = [0xeeu8; FRAME_LEN];
        Lacpdu::new_unchecked(&mut out[..]).emit(p.src(), &a, &pa, 0);
        assert_eq!(&out[..], &bytes[..]);
    }

    #[test]
    fn rejects_malformed_lacpdus() {
        let good = linux_lacpdu();
        assert_eq!(
            Lacpdu::new_checked(&good[..73]).unwrap_err(),
            WireError::Truncated(73)
        );
        let mut b = good.clone();
        b[13] = 0x08;
        assert!(matches!(
            Lacpdu::new_checked(&b[..]),
            Err(WireError::NotSlowProtocol(_))
        ));
        let mut b = good.clone();
        b[14] = 2;
        assert_eq!(
            Lacpdu::new_checked(&b[..]).unwrap_err(),
            WireError::Subtype(2)
        );
        let mut b = good.clone();
        b[15] = 0;
        assert_eq!(Lacpdu::new_checked(&b[..]).unwrap_err(), WireError::Version);
        for (at, v) in [
            (16, 2),
            (17, 19),
            (36, 1),
            (37, 21),
            (56, 4),
            (57, 0),
            (72, 5),
            (73, 1),
        ] {
            let mut b = good.clone();
            b[at] = v;
            assert!(
                matches!(Lacpdu::new_checked(&b[..]), Err(WireError::Tlv { .. })),
                "byte {at} = {v}"
            );
        }
        // A version 2 PDU may carry other TLVs where v1 has the terminator.
        let mut b = good.clone();
        b[15] = 2;
        b[72] = 0x04;
        b[73] = 0x06;
        assert!(Lacpdu::new_checked(&b[..]).is_ok());
        // The reserved tail may be missing.
        assert!(Lacpdu::new_checked(&good[..74]).is_ok());
    }

    #[test]
    fn marker_information_round_trip_and_validation() {
        let m = MarkerInfo {
            kind: MarkerKind::Information,
            requester_port: 7,
            requester_system: MacAddr([2, 0, 0, 0, 0, 9]),
            transaction_id: 0xdead_beef,
        };
        let mut b = [0u8; FRAME_LEN];
        MarkerPdu::new_unchecked(&mut b[..]).emit(MacAddr([2, 0, 0, 0, 0, 1]), &m);
        assert_eq!(
            &b[..34],
            &[
                0x01, 0x80, 0xc2, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x88, 0x09, 2, 1, 1, 16, 0, 7, 2, 0,
                0, 0, 0, 9, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0
            ]
        );
        let p = MarkerPdu::new_checked(&b[..]).unwrap();
        assert_eq!(p.info(), m);
        let mut r = b;
        r[16] = 2;
        assert_eq!(
            MarkerPdu::new_checked(&r[..]).unwrap().info().kind,
            MarkerKind::Response
        );
        for (at, v) in [(16, 3), (17, 15), (32, 1), (14, 1)] {
            let mut x = b;
            x[at] = v;
            assert!(MarkerPdu::new_checked(&x[..]).is_err(), "byte {at} = {v}");
        }
        assert!(MarkerPdu::new_checked(&b[..33]).is_err());
    }

    #[test]
    fn announcements() {
        let mac = MacAddr([2, 0, 0, 0, 0, 5]);
        let g = gratuitous_arp(mac, [169, 254, 0, 1]);
        assert_eq!(&g[12..22], &[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(&g[28..32], &g[38..42]);
        let r = rarp_announce(mac);
        assert_eq!(&r[12..14], &[0x80, 0x35]);
        assert_eq!(&r[20..22], &[0, 3]);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            if let Ok(p) = Lacpdu::new_checked(&bytes[..]) {
                let _ = (p.actor(), p.partner(), p.collector_max_delay(), p.src(), p.dst());
            }
            if let Ok(p) = MarkerPdu::new_checked(&bytes[..]) {
                let _ = (p.info(), p.src());
            }
            let _ = slow_subtype(&bytes);
        }

        #[test]
        fn emitted_lacpdus_parse_back(
            sp in proptest::num::u16::ANY, sys in proptest::array::uniform6(proptest::num::u8::ANY),
            key in proptest::num::u16::ANY, pp in proptest::num::u16::ANY, port in proptest::num::u16::ANY,
            st in proptest::num::u8::ANY, pst in proptest::num::u8::ANY, delay in proptest::num::u16::ANY,
        ) {
            let actor = LacpInfo { system_priority: sp, system: MacAddr(sys), key, port_priority: pp, port, state: PortState(st) };
            let partner = LacpInfo { state: PortState(pst), port: port.wrapping_add(1), ..actor };
            let mut b = [0u8; FRAME_LEN];
            Lacpdu::new_unchecked(&mut b[..]).emit(MacAddr([2, 0, 0, 0, 0, 1]), &actor, &partner, delay);
            let p = Lacpdu::new_checked(&b[..]).unwrap();
            proptest::prop_assert_eq!(p.actor(), actor);
            proptest::prop_assert_eq!(p.partner(), partner);
            proptest::prop_assert_eq!(p.collector_max_delay(), delay);
        }
    }

    #[test]
    fn arp_views_refuse_short_and_foreign_frames() {
        let me = MacAddr([2, 0, 0, 0, 0, 1]);
        let peer = MacAddr([2, 0, 0, 0, 0, 9]);
        let f = arp_reply(me, [169, 254, 0, 1], peer, [169, 254, 0, 9]);
        let (e, v) = untagged_arp(&f).unwrap();
        assert_eq!(u16::from(v.op()), ARP_REPLY);
        assert_eq!(v.sha(), me);
        assert_eq!((e.src_addr(), e.dst_addr()), (me, peer));
        assert_eq!(v.spa(), Ipv4Addr::new(169, 254, 0, 1));
        assert_eq!(v.tha(), peer);
        assert_eq!(v.tpa(), Ipv4Addr::new(169, 254, 0, 9));
        for n in 0..ARP_FRAME_LEN {
            assert!(untagged_arp(&f[..n]).is_none(), "{n} bytes");
        }
        assert!(untagged_arp(&f[..ARP_FRAME_LEN]).is_some());
        let mut g = f;
        g[19] = 16; // IPv6-sized protocol addresses
        assert!(untagged_arp(&g).is_none());
        assert!(untagged_arp(&learning_packet(me)).is_none());
        // Byte for byte what the raw-offset builder wrote before the views.
        assert_eq!(
            &f[..42],
            &[
                2, 0, 0, 0, 0, 9, 2, 0, 0, 0, 0, 1, 8, 6, 0, 1, 8, 0, 6, 4, 0, 2, 2, 0, 0, 0, 0, 1,
                169, 254, 0, 1, 2, 0, 0, 0, 0, 9, 169, 254, 0, 9
            ]
        );
        assert!(f[42..].iter().all(|&b| b == 0));
        let lp = learning_packet(me);
        assert_eq!(&lp[0..6], &me.0);
        assert_eq!(&lp[6..12], &me.0);
        assert_eq!(&lp[12..14], &[0x90, 0x00]);
    }
}
