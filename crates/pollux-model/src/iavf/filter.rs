//! What the PF programs into the switch for a VF, and what the receive
//! parser computes: MAC/VLAN filtering, packet classification (the XL710
//! packet types drivers decode), checksum verification and the Toeplitz
//! RSS hash.
//!
//! - Filtering (i40e's VSI filters for a VF): unicast to the VF's MAC and
//!   to added unicast filters; broadcast always; multicast only to added
//!   addresses; a trusted VF's unicast/multicast promiscuous modes widen
//!   that. Once the VF adds a VLAN filter, tagged frames pass only for
//!   added VLANs (untagged and priority-tagged frames always pass, as i40e
//!   keeps the VLAN 0 filter).
//! - Packet types: the non-tunnelled entries of the XL710 ptype table
//!   (DPDK `iavf_get_default_ptype_table`, Linux libie): 1 L2, 11 ARP,
//!   22-28 IPv4 frag/other/UDP/TCP/SCTP/ICMP, 88-94 the same for IPv6.
//! - RSS: the Toeplitz hash (Microsoft "RSS hashing functions") over the
//!   addresses and, for TCP/UDP/SCTP, the ports, when the packet's
//!   classifier type (`pctype`) is enabled in HENA. The hash is written
//!   here rather than taken from `crate::toeplitz` (written concurrently,
//!   not yet in the crate when this module was).

use super::virtchnl::pctype;

/// Ethernet header length.
pub const ETH_HLEN: usize = 14;
/// 802.1Q TPID.
pub const TPID_8021Q: u16 = 0x8100;
/// 802.1ad TPID.
pub const TPID_8021AD: u16 = 0x88a8;

/// XL710 packet types (DPDK `iavf_get_default_ptype_table`).
pub mod ptype {
    /// L2 payload.
    pub const L2: u8 = 1;
    /// ARP.
    pub const ARP: u8 = 11;
    /// IPv4 fragment.
    pub const IPV4_FRAG: u8 = 22;
    /// IPv4 other.
    pub const IPV4_OTHER: u8 = 23;
    /// IPv4 UDP.
    pub const IPV4_UDP: u8 = 24;
    /// IPv4 TCP.
    pub const IPV4_TCP: u8 = 26;
    /// IPv4 SCTP.
    pub const IPV4_SCTP: u8 = 27;
    /// IPv4 ICMP.
    pub const IPV4_ICMP: u8 = 28;
    /// IPv6 fragment.
    pub const IPV6_FRAG: u8 = 88;
    /// IPv6 other.
    pub const IPV6_OTHER: u8 = 89;
    /// IPv6 UDP.
    pub const IPV6_UDP: u8 = 90;
    /// IPv6 TCP.
    pub const IPV6_TCP: u8 = 92;
    /// IPv6 SCTP.
    pub const IPV6_SCTP: u8 = 93;
    /// IPv6 ICMPv6.
    pub const IPV6_ICMP: u8 = 94;
}

/// IP protocol numbers.
pub const IPPROTO_ICMP: u8 = 1;
/// TCP.
pub const IPPROTO_TCP: u8 = 6;
/// UDP.
pub const IPPROTO_UDP: u8 = 17;
/// SCTP.
pub const IPPROTO_SCTP: u8 = 132;
/// ICMPv6.
pub const IPPROTO_ICMPV6: u8 = 58;

/// What the receive parser found in a frame (offsets into the frame as
/// it will be written, i.e. after any VLAN stripping).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Packet type for the descriptor.
    pub ptype: u8,
    /// Classifier type for RSS (0: none).
    pub pctype: u32,
    /// Offset of the L3 header.
    pub l3: usize,
    /// IPv4 (4), IPv6 (6) or neither (0).
    pub ip: u8,
    /// Offset of the L4 header (0: none parsed).
    pub l4: usize,
    /// L4 protocol.
    pub proto: u8,
    /// L4 length (from the IP header).
    pub l4_len: usize,
    /// The IP packet is a fragment.
    pub frag: bool,
}
pub use crate::checksum::{crc32c, fold, ones_sum};

fn be16(f: &[u8], at: usize) -> u16 {
    match f.get(at..at + 2) {
        Some(b) => u16::from_be_bytes([b[0], b[1]]),
        None => 0,
    }
}

/// The outer VLAN tag of a frame: (TPID, TCI).
pub fn vlan_tag(f: &[u8]) -> Option<(u16, u16)> {
    let t = be16(f, 12);
    (f.len() >= 18 && (t == TPID_8021Q || t == TPID_8021AD)).then(|| (t, be16(f, 14)))
}

/// Parses L2 to L4 of `f`.
pub fn parse(f: &[u8]) -> Parsed {
    let mut p = Parsed {
        ptype: ptype::L2,
        pctype: pctype::L2_PAYLOAD,
        ..Parsed::default()
    };
    let mut at = 12;
    let mut et = be16(f, at);
    while (et == TPID_8021Q || et == TPID_8021AD) && f.len() >= at + 6 {
        at += 4;
        et = be16(f, at);
    }
    let l3 = at + 2;
    p.l3 = l3;
    match et {
        0x0806 => p.ptype = ptype::ARP,
        0x0800 if f.len() >= l3 + 20 && f[l3] >> 4 == 4 => {
            let ihl = (f[l3] & 0xf) as usize * 4;
            let total = be16(f, l3 + 2) as usize;
            if ihl < 20 || f.len() < l3 + ihl {
                return p;
            }
            p.ip = 4;
            p.proto = f[l3 + 9];
            p.frag = be16(f, l3 + 6) & 0x3fff != 0;
            p.l4 = l3 + ihl;
            p.l4_len = total.saturating_sub(ihl).min(f.len() - p.l4);
            (p.ptype, p.pctype) = if p.frag {
                (ptype::IPV4_FRAG, pctype::FRAG_IPV4)
            } else {
                match p.proto {
                    IPPROTO_UDP => (ptype::IPV4_UDP, pctype::IPV4_UDP),
                    IPPROTO_TCP => (ptype::IPV4_TCP, pctype::IPV4_TCP),
                    IPPROTO_SCTP => (ptype::IPV4_SCTP, pctype::IPV4_SCTP),
                    IPPROTO_ICMP => (ptype::IPV4_ICMP, pctype::IPV4_OTHER),
                    _ => (ptype::IPV4_OTHER, pctype::IPV4_OTHER),
                }
            };
        }
        0x86dd if f.len() >= l3 + 40 && f[l3] >> 4 == 6 => {
            p.ip = 6;
            p.proto = f[l3 + 6];
            p.l4 = l3 + 40;
            p.l4_len = (be16(f, l3 + 4) as usize).min(f.len() - p.l4);
            (p.ptype, p.pctype) = match p.proto {
                44 => {
                    p.frag = true;
                    (ptype::IPV6_FRAG, pctype::FRAG_IPV6)
                }
                IPPROTO_UDP => (ptype::IPV6_UDP, pctype::IPV6_UDP),
                IPPROTO_TCP => (ptype::IPV6_TCP, pctype::IPV6_TCP),
                IPPROTO_SCTP => (ptype::IPV6_SCTP, pctype::IPV6_SCTP),
                IPPROTO_ICMPV6 => (ptype::IPV6_ICMP, pctype::IPV6_OTHER),
                _ => (ptype::IPV6_OTHER, pctype::IPV6_OTHER),
            };
        }
        _ => {}
    }
    p
}

/// The pseudo-header sum for an L4 segment of `len` bytes.
pub fn pseudo_sum(f: &[u8], p: &Parsed, len: usize) -> u32 {
    let mut s = 0;
    if p.ip == 4 {
        s = ones_sum(f.get(p.l3 + 12..p.l3 + 20).unwrap_or(&[]), s);
    } else if p.ip == 6 {
        s = ones_sum(f.get(p.l3 + 8..p.l3 + 40).unwrap_or(&[]), s);
    }
    s = ones_sum(&[0, p.proto], s);
    ones_sum(&(len as u32).to_be_bytes(), s)
}

/// Whether the IPv4 header checksum of `f` is right.
pub fn ipv4_header_ok(f: &[u8], p: &Parsed) -> bool {
    f.get(p.l3..p.l4)
        .is_some_and(|h| fold(ones_sum(h, 0)) == 0xffff)
}

/// Whether the L4 checksum of a TCP/UDP/SCTP packet is right (`None`: not
/// checked).
pub fn l4_ok(f: &[u8], p: &Parsed) -> Option<bool> {
    if p.frag || p.l4 == 0 {
        return None;
    }
    let seg = f.get(p.l4..p.l4 + p.l4_len)?;
    match p.proto {
        IPPROTO_UDP if p.ip == 4 && be16(f, p.l4 + 6) == 0 => Some(true),
        IPPROTO_TCP | IPPROTO_UDP => {
            let s = ones_sum(seg, pseudo_sum(f, p, seg.len()));
            Some(fold(s) == 0xffff)
        }
        IPPROTO_SCTP if seg.len() >= 12 => {
            let mut c = seg.to_vec();
            let want = u32::from_le_bytes([c[8], c[9], c[10], c[11]]);
            c[8..12].fill(0);
            Some(crc32c(&c) == want)
        }
        _ => None,
    }
}

/// The RSS hash input of a parsed packet: addresses, then ports for
/// TCP/UDP/SCTP; `None` for packets not hashed (L2, ARP).
pub fn rss_input(f: &[u8], p: &Parsed) -> Option<Vec<u8>> {
    let addrs = match p.ip {
        4 => f.get(p.l3 + 12..p.l3 + 20)?,
        6 => f.get(p.l3 + 8..p.l3 + 40)?,
        _ => return None,
    };
    let mut v = addrs.to_vec();
    if !p.frag && matches!(p.proto, IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP) {
        v.extend_from_slice(f.get(p.l4..p.l4 + 4)?);
    }
    Some(v)
}

/// The receive filter state a frame is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Filter<'a> {
    /// The VF's MAC.
    pub mac: [u8; 6],
    /// Added MAC filters.
    pub macs: &'a std::collections::BTreeSet<[u8; 6]>,
    /// Added VLAN filters.
    pub vlans: &'a std::collections::BTreeSet<u16>,
    /// Unicast promiscuous.
    pub promisc_uc: bool,
    /// Multicast promiscuous.
    pub promisc_mc: bool,
}

/// Why a frame was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Shorter than an Ethernet header.
    Runt,
    /// Destination MAC not among the VF's filters.
    Mac,
    /// VLAN not among the VF's filters.
    Vlan,
}

impl Filter<'_> {
    /// Whether the switch forwards `f` to the VF.
    pub fn accepts(&self, f: &[u8]) -> Result<(), Refused> {
        if f.len() < ETH_HLEN {
            return Err(Refused::Runt);
        }
        let mut dst = [0u8; 6];
        dst.copy_from_slice(&f[..6]);
        let ok = if dst == [0xff; 6] {
            true
        } else if dst[0] & 1 != 0 {
            self.promisc_mc || self.promisc_uc || self.macs.contains(&dst)
        } else {
            self.promisc_uc || dst == self.mac || self.macs.contains(&dst)
        };
        if !ok {
            return Err(Refused::Mac);
        }
        if let Some((_, tci)) = vlan_tag(f) {
            let vid = tci & 0xfff;
            if vid != 0 && !self.vlans.is_empty() && !self.vlans.contains(&vid) {
                return Err(Refused::Vlan);
            }
        }
        Ok(())
    }
}
