//! Transmit hashing, computed as Linux bonding computes it, so that a flow
//! lands on the same member index as it would on Linux.
//!
//! The formulas are those of Documentation/networking/bonding.rst
//! ("xmit_hash_policy") as implemented by `__bond_xmit_hash()` in
//! drivers/net/bonding/bond_main.c (Linux 6.x):
//!
//! - `layer2`: `h = dst_mac[5] ^ src_mac[5] ^ ethertype`.
//! - `layer2+3`: `h = layer2 ^ src_ip ^ dst_ip; h ^= h >> 16; h ^= h >> 8`.
//! - `layer3+4`: `h = ports ^ src_ip ^ dst_ip; h ^= h >> 16; h ^= h >> 8;
//!   h >>= 1`, where `ports` are the first four bytes of the TCP, UDP,
//!   UDP-Lite, SCTP, DCCP or ESP header (bytes 4..8 for AH); for ICMP and
//!   ICMPv6 messages that carry an identifier (echo, timestamp) it is
//!   `type | code << 8 | id << 16` instead; ICMP errors are hashed on the
//!   offending packet they quote; fragments and other protocols use 0.
//! - `encap2+3`, `encap3+4`: the same over the innermost headers that
//!   Linux's flow dissector reaches (802.1Q/802.1ad tags, PPPoE, GRE and
//!   transparent Ethernet bridging, IP-in-IP, IPv6 extension headers, ...),
//!   with the layer2 part from the outer Ethernet header.
//! - `vlan+srcmac`: `vlan_tci ^ src_mac[0..3] ^ src_mac[3..6]`.
//!
//! The member is then `usable[h % usable.len()]` (bond_xmit_3ad_xor_slave_get()).
//!
//! Linux reads the IP addresses and the port word with plain loads (`__force
//! u32` of big-endian fields), so the result depends on the CPU's byte
//! order; these functions reproduce a little-endian host (x86, arm64 as
//! run), which is what the lab and every supported Pollux target are. An
//! IPv6 address enters as the XOR of its four 32-bit words
//! (ipv6_addr_hash()).
//!
//! Where Linux does not hash the packet at all the result cannot be
//! reproduced: `encap3+4` uses `skb->hash` when the stack already has an
//! L4 hash (locally generated TCP, or an RSS hash from the receiving NIC),
//! and TIPC keepalives hash on a random number. Pollux always computes
//! from the headers, which is what Linux does for frames it forwards from
//! a device without an RSS hash, such as AF_PACKET or a veth.
//!
//! As on Linux, an 802.1Q tag in the frame (rather than in the mbuf's
//! transmit metadata, Linux's hardware-accelerated tag) hides the IP
//! headers from `layer2+3` and `layer3+4`, which then fall back to
//! `layer2`; the `encap` policies look through it.

use std::net::{Ipv4Addr, Ipv6Addr};

use pollux_core::wire::{EthernetFrame, IcmpPacket, Ipv4Packet, Ipv6Packet, VlanTag};

use crate::config::XmitHashPolicy;

const ETH_HLEN: usize = EthernetFrame::<&[u8]>::HEADER_LEN;
const IPV4_HLEN: usize = Ipv4Packet::<&[u8]>::HEADER_LEN;
const IPV6_HLEN: usize = Ipv6Packet::<&[u8]>::HEADER_LEN;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_ICMP: i32 = 1;
const IPPROTO_ICMPV6: i32 = 58;

/// Flow keys, as much of Linux's `struct flow_keys` as the bond hashes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Flow {
    addrs: Addrs,
    /// The port word as Linux loads it.
    ports: u32,
    icmp_type: u8,
    icmp_code: u8,
    /// Host-order ICMP identifier, 0 when the message has none.
    icmp_id: u16,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Addrs {
    #[default]
    None,
    /// Source and destination as little-endian loads.
    V4(u32, u32),
    /// ipv6_addr_hash() of source and destination.
    V6(u32, u32),
    /// TIPC's node key (flow_get_u32_src only; dst is 0).
    Tipc(u32),
}

impl Flow {
    #[inline]
    fn src_dst(&self) -> (u32, u32) {
        match self.addrs {
            Addrs::None => (0, 0),
            Addrs::V4(s, d) | Addrs::V6(s, d) => (s, d),
            Addrs::Tipc(k) => (k, 0),
        }
    }
}

#[inline]
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// An IPv4 address as Linux's `__force u32` load of it on a
/// little-endian host.
#[inline]
fn ipv4_load(a: Ipv4Addr) -> u32 {
    u32::from_le_bytes(a.octets())
}

/// ipv6_addr_hash(): the XOR of the address's four 32-bit loads.
#[inline]
fn ipv6_addr_hash(a: Ipv6Addr) -> u32 {
    let o = a.octets();
    le32(&o, 0) ^ le32(&o, 4) ^ le32(&o, 8) ^ le32(&o, 12)
}

/// The IPv4 header at `at`, when the frame holds its fixed part.
///
/// Not [`Ipv4Packet::new_checked`]: Linux's dissectors read the
/// addresses and protocol of a header whose Total Length (or, in
/// `bond_flow_ip()`, IHL) is wrong, and the hash must match theirs bit
/// for bit. Only the fixed-header accessors are used, which the length
/// check here keeps in bounds.
#[inline]
fn ipv4_at(f: &[u8], at: usize) -> Option<Ipv4Packet<&[u8]>> {
    match f.get(at..) {
        Some(b) if b.len() >= IPV4_HLEN => Some(Ipv4Packet::new_unchecked(b)),
        _ => None,
    }
}

/// The IPv6 fixed header at `at`, with Payload Length unchecked as in
/// Linux's dissectors (see [`ipv4_at`]).
#[inline]
fn ipv6_at(f: &[u8], at: usize) -> Option<Ipv6Packet<&[u8]>> {
    match f.get(at..) {
        Some(b) if b.len() >= IPV6_HLEN => Some(Ipv6Packet::new_unchecked(b)),
        _ => None,
    }
}

/// bond_eth_hash(): 0 for frames shorter than an Ethernet header.
#[inline]
fn eth_hash(f: &[u8]) -> u32 {
    match EthernetFrame::new_checked(f) {
        Ok(e) => (e.dst_addr().0[5] ^ e.src_addr().0[5]) as u32 ^ e.ethertype() as u32,
        Err(_) => 0,
    }
}

/// proto_ports_offset() of include/net/ip.h.
#[inline]
fn ports_offset(proto: i32) -> Option<usize> {
    match proto {
        6 | 17 | 33 | 50 | 132 | 136 => Some(0), // TCP UDP DCCP ESP SCTP UDPLITE
        51 => Some(4),                           // AH: the SPI
        _ => None,
    }
}

/// __skb_flow_get_ports(). The word is the first four bytes of whichever
/// transport header `proto` names (the SPI for AH), loaded as Linux does,
/// not one protocol's fields, so it is read here rather than through a
/// UDP or TCP view (whose length checks Linux does not make either).
#[inline]
fn get_ports(f: &[u8], thoff: usize, proto: i32) -> u32 {
    match ports_offset(proto) {
        Some(p) if thoff + p + 4 <= f.len() => le32(f, thoff + p),
        _ => 0,
    }
}

fn icmp_has_id(t: u8) -> bool {
    // ICMP echo reply/request, timestamp/reply, ICMPv6 echo request/reply;
    // Linux does not tell v4 from v6 here and neither do we.
    matches!(t, 0 | 8 | 13 | 14 | 128 | 129)
}

/// skb_flow_get_icmp_tci(): leaves the fields alone when truncated.
fn get_icmp(f: &[u8], thoff: usize, fk: &mut Flow) {
    let Some(Ok(icmp)) = f.get(thoff..).map(IcmpPacket::new_checked) else {
        return;
    };
    fk.icmp_type = icmp.msg_type();
    fk.icmp_code = icmp.msg_code();
    fk.icmp_id = if icmp_has_id(icmp.msg_type()) {
        match icmp.echo_ident() {
            0 => 1,
            id => id,
        }
    } else {
        0
    };
}

/// bond_flow_ip().
fn flow_ip(
    f: &[u8],
    l2_proto: u16,
    nhoff: &mut usize,
    ip_proto: &mut i32,
    l34: bool,
    fk: &mut Flow,
) -> bool {
    match l2_proto {
        ETH_P_IP => {
            let Some(ip) = ipv4_at(f, *nhoff) else {
                return false;
            };
            fk.addrs = Addrs::V4(ipv4_load(ip.src_addr()), ipv4_load(ip.dst_addr()));
            // As bond_flow_ip(): IHL taken as it is, even below 5.
            *nhoff += ip.header_len();
            // ip_is_fragment(): MF or a fragment offset.
            if !ip.is_fragment() {
                *ip_proto = ip.protocol() as i32;
            }
        }
        ETH_P_IPV6 => {
            let Some(ip) = ipv6_at(f, *nhoff) else {
                return false;
            };
            fk.addrs = Addrs::V6(ipv6_addr_hash(ip.src_addr()), ipv6_addr_hash(ip.dst_addr()));
            *nhoff += IPV6_HLEN;
            *ip_proto = ip.next_header() as i32;
        }
        _ => return false,
    }
    if l34 && *ip_proto >= 0 {
        fk.ports = get_ports(f, *nhoff, *ip_proto);
    }
    true
}

/// bond_flow_dissect() for the non-encap policies.
fn dissect_plain(f: &[u8], l2_proto: u16, l34: bool, fk: &mut Flow) -> bool {
    let mut nhoff = ETH_HLEN;
    let mut ip_proto = -1;
    if !flow_ip(f, l2_proto, &mut nhoff, &mut ip_proto, l34, fk) {
        return false;
    }
    if ip_proto == IPPROTO_ICMP || ip_proto == IPPROTO_ICMPV6 {
        get_icmp(f, nhoff, fk);
        let is_err = if ip_proto == IPPROTO_ICMP {
            // icmp_is_err(): unreachable, source quench, redirect, time
            // exceeded, parameter problem.
            matches!(fk.icmp_type, 3 | 4 | 5 | 11 | 12)
        } else {
            // icmpv6_is_err(): unreachable, too big, time exceeded, parameter problem.
            matches!(fk.icmp_type, 1..=4)
        };
        if !is_err {
            return true;
        }
        nhoff += 8;
        return flow_ip(f, l2_proto, &mut nhoff, &mut ip_proto, l34, fk);
    }
    true
}

/// Most headers the flow dissector parses (MAX_FLOW_DISSECT_HDRS).
const MAX_DISSECT_HDRS: u32 = 15;

enum Step {
    Proto,
    IpProto,
    Good,
    Bad,
}

/// __skb_flow_dissect() with the bonding dissector's keys (addresses,
/// ports, ICMP) and no flags, as bond_flow_dissect() calls it for the
/// encap policies. Other keys the bonding dissector has (VLAN, flow
/// label, GRE key) do not enter the hash and are not extracted.
fn dissect_encap(f: &[u8], mut proto: u16, fk: &mut Flow) -> bool {
    let hlen = f.len();
    let mut nhoff = ETH_HLEN;
    let mut ip_proto: u8 = 0;
    let mut num_hdrs = 0u32;
    let mut fragment = false;
    let mut step = Step::Proto;
    loop {
        step = match step {
            Step::Good => return true,
            Step::Bad => return false,
            Step::Proto => {
                let r = match proto {
                    ETH_P_IP => match ipv4_at(f, nhoff) {
                        // __skb_flow_dissect() refuses an IHL below 5 but
                        // not a short Total Length or an IHL past the end.
                        Some(ip) if ip.header_len() >= IPV4_HLEN => {
                            nhoff += ip.header_len();
                            ip_proto = ip.protocol();
                            fk.addrs =
                                Addrs::V4(ipv4_load(ip.src_addr()), ipv4_load(ip.dst_addr()));
                            if ip.is_fragment() {
                                // A fragment; without FLOW_DISSECTOR_F_PARSE_1ST_FRAG
                                // the dissector stops at the IP header.
                                fragment = true;
                                Step::Good
                            } else {
                                Step::IpProto
                            }
                        }
                        _ => Step::Bad,
                    },
                    ETH_P_IPV6 => match ipv6_at(f, nhoff) {
                        Some(ip) => {
                            ip_proto = ip.next_header();
                            nhoff += IPV6_HLEN;
                            fk.addrs = Addrs::V6(
                                ipv6_addr_hash(ip.src_addr()),
                                ipv6_addr_hash(ip.dst_addr()),
                            );
                            Step::IpProto
                        }
                        None => Step::Bad,
                    },
                    0x8100 | 0x88a8 => match f.get(nhoff..).map(VlanTag::new_checked) {
                        Some(Ok(tag)) => {
                            proto = tag.ethertype();
                            nhoff += VlanTag::<&[u8]>::HEADER_LEN;
                            Step::Proto
                        }
                        _ => Step::Bad,
                    },
                    0x8864 => {
                        // PPPoE session: ver 1, type 1, code 0, then the PPP protocol.
                        if nhoff + 8 > hlen || f[nhoff] != 0x11 || f[nhoff + 1] != 0 {
                            Step::Bad
                        } else {
                            let ppp = be16(f, nhoff + 6);
                            nhoff += 8;
                            match ppp {
                                0x0021 => {
                                    proto = ETH_P_IP;
                                    Step::Proto
                                }
                                0x0057 => {
                                    proto = ETH_P_IPV6;
                                    Step::Proto
                                }
                                0x0281 => {
                                    proto = 0x8847;
                                    Step::Proto
                                }
                                0x0283 => {
                                    proto = 0x8848;
                                    Step::Proto
                                }
                                p if p & 0x0101 == 0x0001 => Step::Good,
                                _ => Step::Bad,
                            }
                        }
                    }
                    0x88ca => {
                        // TIPC: the source node (word 3) is the key.
                        if nhoff + 16 > hlen {
                            Step::Bad
                        } else {
                            fk.addrs = Addrs::Tipc(le32(f, nhoff + 12));
                            Step::Good
                        }
                    }
                    // MPLS: the bonding dissector has no MPLS keys, so
                    // __skb_flow_dissect_mpls() stops at once.
                    0x8847 | 0x8848 => Step::Good,
                    0x8906 => {
                        // FCoE
                        if hlen < nhoff + 14 {
                            Step::Bad
                        } else {
                            Step::Good
                        }
                    }
                    0x0806 | 0x8035 => Step::Good, // ARP, RARP: no ARP key
                    0x4305 => {
                        // batman-adv unicast (compat version 15) with an inner Ethernet header.
                        if nhoff + 24 > hlen || f[nhoff] != 0x40 || f[nhoff + 1] != 15 {
                            Step::Bad
                        } else {
                            proto = be16(f, nhoff + 22);
                            nhoff += 24;
                            Step::Proto
                        }
                    }
                    0x88f7 => {
                        // PTP over Ethernet: 34-byte header.
                        if nhoff + 34 > hlen {
                            Step::Bad
                        } else {
                            Step::Good
                        }
                    }
                    0x88fb | 0x892f => {
                        // PRP / HSR tag.
                        if nhoff + 6 > hlen {
                            Step::Bad
                        } else {
                            proto = be16(f, nhoff + 4);
                            nhoff += 6;
                            Step::Proto
                        }
                    }
                    _ => Step::Bad,
                };
                match r {
                    Step::Proto => {
                        num_hdrs += 1;
                        if num_hdrs <= MAX_DISSECT_HDRS {
                            Step::Proto
                        } else {
                            Step::Good
                        }
                    }
                    other => other,
                }
            }
            Step::IpProto => {
                let r = match ip_proto {
                    47 => dissect_gre(f, &mut proto, &mut nhoff),
                    0 | 43 | 60 if proto == ETH_P_IPV6 => {
                        // Hop-by-hop, routing, destination options.
                        if nhoff + 2 > hlen {
                            Step::Bad
                        } else {
                            ip_proto = f[nhoff];
                            nhoff += (f[nhoff + 1] as usize + 1) << 3;
                            Step::IpProto
                        }
                    }
                    44 if proto == ETH_P_IPV6 => {
                        if nhoff + 8 > hlen {
                            Step::Bad
                        } else {
                            fragment = true;
                            ip_proto = f[nhoff];
                            nhoff += 8;
                            Step::Good
                        }
                    }
                    4 => {
                        proto = ETH_P_IP;
                        Step::Proto
                    }
                    41 => {
                        proto = ETH_P_IPV6;
                        Step::Proto
                    }
                    137 => {
                        proto = 0x8847;
                        Step::Proto
                    }
                    1 | 58 => {
                        get_icmp(f, nhoff, fk);
                        Step::Good
                    }
                    _ => Step::Good,
                };
                if !fragment {
                    fk.ports = get_ports(f, nhoff, ip_proto as i32);
                }
                match r {
                    Step::Proto | Step::IpProto => {
                        num_hdrs += 1;
                        if num_hdrs <= MAX_DISSECT_HDRS {
                            r
                        } else {
                            Step::Good
                        }
                    }
                    other => other,
                }
            }
        };
    }
}

/// __skb_flow_dissect_gre().
fn dissect_gre(f: &[u8], proto: &mut u16, nhoff: &mut usize) -> Step {
    const CSUM: u16 = 0x8000;
    const ROUTING: u16 = 0x4000;
    const KEY: u16 = 0x2000;
    const SEQ: u16 = 0x1000;
    const ACK: u16 = 0x0080;
    let hlen = f.len();
    if *nhoff + 4 > hlen {
        return Step::Bad;
    }
    let flags = be16(f, *nhoff);
    if flags & ROUTING != 0 {
        return Step::Good;
    }
    let ver = flags & 0x0007;
    if ver > 1 {
        return Step::Good;
    }
    *proto = be16(f, *nhoff + 2);
    if ver == 1 && !(*proto == 0x880b && flags & KEY != 0) {
        return Step::Good;
    }
    let mut off = 4;
    if flags & CSUM != 0 {
        off += 4;
    }
    if flags & KEY != 0 {
        if *nhoff + off + 4 > hlen {
            return Step::Bad;
        }
        off += 4;
    }
    if flags & SEQ != 0 {
        off += 4;
    }
    if ver == 0 {
        if *proto == 0x6558 {
            // Transparent Ethernet bridging: an inner Ethernet header.
            if *nhoff + off + 14 > hlen {
                return Step::Bad;
            }
            *proto = be16(f, *nhoff + off + 12);
            off += 14;
        }
    } else {
        // PPTP: PPP inside.
        if flags & ACK != 0 {
            off += 4;
        }
        if *nhoff + off + 4 > hlen {
            return Step::Bad;
        }
        match u16::from_be_bytes([f[*nhoff + off + 2], f[*nhoff + off + 3]]) {
            0x21 => *proto = ETH_P_IP,
            0x57 => *proto = ETH_P_IPV6,
            _ => {}
        }
        off += 4;
    }
    *nhoff += off;
    Step::Proto
}

/// bond_ip_hash().
#[inline]
fn ip_hash(mut h: u32, fk: &Flow, drop_low_bit: bool) -> u32 {
    let (s, d) = fk.src_dst();
    h ^= d ^ s;
    h ^= h >> 16;
    h ^= h >> 8;
    if drop_low_bit {
        h >> 1
    } else {
        h
    }
}

/// The Linux bonding transmit hash of `frame` (Ethernet header first)
/// under `policy`. `vlan_tci` is the tag the frame will be sent with when
/// it is carried in metadata rather than in the frame (only `vlan+srcmac`
/// uses it, as only it reads `skb->vlan_tci` on Linux).
pub fn xmit_hash(policy: XmitHashPolicy, frame: &[u8], vlan_tci: Option<u16>) -> u32 {
    if policy == XmitHashPolicy::VlanSrcMac {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return 0;
        };
        let s = eth.src_addr().0;
        let vendor = u32::from_be_bytes([0, s[0], s[1], s[2]]);
        let dev = u32::from_be_bytes([0, s[3], s[4], s[5]]);
        return vlan_tci.unwrap_or(0) as u32 ^ vendor ^ dev;
    }
    if policy == XmitHashPolicy::Layer2 {
        return eth_hash(frame);
    }
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return eth_hash(frame);
    };
    let l2_proto = eth.ethertype();
    let mut fk = Flow::default();
    let ok = match policy {
        XmitHashPolicy::Encap23 | XmitHashPolicy::Encap34 => {
            dissect_encap(frame, l2_proto, &mut fk)
        }
        _ => dissect_plain(frame, l2_proto, policy == XmitHashPolicy::Layer34, &mut fk),
    };
    if !ok {
        return eth_hash(frame);
    }
    let (h, l34) = match policy {
        XmitHashPolicy::Layer23 | XmitHashPolicy::Encap23 => (eth_hash(frame), false),
        _ => {
            let h = if fk.icmp_id != 0 {
                fk.icmp_type as u32 | (fk.icmp_code as u32) << 8 | (fk.icmp_id as u32) << 16
            } else {
                fk.ports
            };
            (h, true)
        }
    };
    ip_hash(h, &fk, l34)
}

/// `a % d` by multiplication (Lemire, Kaser and Kurz, "Faster remainder by
/// direct computation", 2019): exact for every `u32` `a` and nonzero `d`,
/// so the member chosen is Linux's `hash % count`, without a division per
/// packet.
#[derive(Clone, Copy, Debug)]
pub struct FastMod {
    d: u32,
    m: u64,
}

impl FastMod {
    /// A remainder by `d` (at least 1).
    pub fn new(d: u32) -> FastMod {
        let d = d.max(1);
        FastMod {
            d,
            m: (u64::MAX / d as u64).wrapping_add(1),
        }
    }

    /// The divisor.
    pub fn divisor(&self) -> u32 {
        self.d
    }

    #[inline(always)]
    pub fn rem(&self, a: u32) -> u32 {
        let low = self.m.wrapping_mul(a as u64);
        ((low as u128 * self.d as u128) >> 64) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use XmitHashPolicy::*;

    const A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
    const B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

    fn eth(dst: [u8; 6], src: [u8; 6], et: u16) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&et.to_be_bytes());
        f
    }

    fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, frag: u16) -> Vec<u8> {
        let mut ip = vec![0x45, 0, 0, 0, 0, 0];
        ip.extend_from_slice(&frag.to_be_bytes());
        ip.extend_from_slice(&[64, proto, 0, 0]);
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        ip
    }

    fn udp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut f = eth(B, A, 0x0800);
        f.extend(ipv4(src, dst, 17, 0));
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&[0, 8, 0, 0]);
        f
    }

    // Vectors worked out by hand from bonding.rst's formulas, with the
    // address and port words loaded little-endian as an x86 Linux does.

    #[test]
    fn layer2_vector() {
        // dst[5] ^ src[5] ^ ethertype = 0x02 ^ 0x01 ^ 0x0800 = 0x0803.
        let f = udp4([198, 18, 0, 1], [198, 18, 0, 2], 9, 9);
        assert_eq!(xmit_hash(Layer2, &f, None), 0x0803);
        assert_eq!(xmit_hash(Layer2, &f, None) % 2, 1);
    }

    #[test]
    fn layer23_vector() {
        // h = 0x0803 ^ 0x010012c6 (198.18.0.1) ^ 0x020012c6 (198.18.0.2)
        //   = 0x03000803; h ^= h >> 16 (0x0300) -> 0x03000b03; h ^= h >> 8 (0x0003000b) -> 0x03030b08.
        let f = udp4([198, 18, 0, 1], [198, 18, 0, 2], 9, 9);
        assert_eq!(xmit_hash(Layer23, &f, None), 0x0303_0b08);
    }

    #[test]
    fn layer34_vector() {
        // ports word: bytes 00 09 00 09 -> 0x09000900; ^ addresses 0x03000000
        // = 0x0a000900; ^ >> 16 -> 0x0a000300; ^ >> 8 -> 0x0a0a0303; >> 1 -> 0x05050181.
        let f = udp4([198, 18, 0, 1], [198, 18, 0, 2], 9, 9);
        assert_eq!(xmit_hash(Layer34, &f, None), 0x0505_0181);
        // Source port 1024 (bytes 04 00): 0x09000004 ^ 0x03000000 = 0x0a000004;
        // -> 0x0a000a04 -> 0x0a0a0a0e -> >> 1 = 0x05050507.
        let f = udp4([198, 18, 0, 1], [198, 18, 0, 2], 1024, 9);
        assert_eq!(xmit_hash(Layer34, &f, None), 0x0505_0507);
    }

    #[test]
    fn layer34_icmp_echo_uses_type_code_id() {
        let mut f = eth(B, A, 0x0800);
        f.extend(ipv4([10, 0, 0, 1], [10, 0, 0, 2], 1, 0));
        f.extend_from_slice(&[8, 0, 0, 0, 0x12, 0x34, 0, 1]);
        // h = 8 | 0 << 8 | 0x1234 << 16 = 0x12340008; addresses 0x0100000a ^ 0x0200000a = 0x03000000
        // -> 0x11340008 -> ^>>16 0x1134 -> 0x1134113c -> ^>>8 0x00113411 -> 0x1125252d -> >>1 = 0x08929296.
        assert_eq!(xmit_hash(Layer34, &f, None), 0x0892_9296);
        // An echo with identifier 0 hashes as identifier 1.
        let mut z = f.clone();
        z[38..40].copy_from_slice(&[0, 0]);
        let mut one = f.clone();
        one[38..40].copy_from_slice(&[0, 1]);
        assert_eq!(xmit_hash(Layer34, &z, None), xmit_hash(Layer34, &one, None));
    }

    #[test]
    fn layer34_icmp_error_hashes_the_quoted_flow() {
        let quoted = udp4([10, 0, 0, 2], [10, 0, 0, 9], 5000, 53);
        let mut f = eth(B, A, 0x0800);
        f.extend(ipv4([10, 0, 0, 1], [10, 0, 0, 2], 1, 0));
        f.extend_from_slice(&[3, 3, 0, 0, 0, 0, 0, 0]); // port unreachable
        f.extend_from_slice(&quoted[14..]);
        // Addresses and ports of the quoted packet replace the outer ones.
        assert_eq!(
            xmit_hash(Layer34, &f, None),
            xmit_hash(Layer34, &quoted, None)
        );
    }

    #[test]
    fn fragments_and_unknown_protocols_use_no_ports() {
        let mut f = eth(B, A, 0x0800);
        f.extend(ipv4([10, 0, 0, 1], [10, 0, 0, 2], 17, 0x2000)); // MF set
        f.extend_from_slice(&[0x13, 0x88, 0, 53, 0, 8, 0, 0]);
        // 0 ^ 0x03000000 -> 0x03000300 -> 0x03030303 -> >>1 = 0x01818181
        assert_eq!(xmit_hash(Layer34, &f, None), 0x0181_8181);
        // Non-IP falls back to layer2 in layer2+3 and layer3+4.
        let arp = eth(B, A, 0x0806);
        assert_eq!(xmit_hash(Layer34, &arp, None), 0x03 ^ 0x0806);
        // So does an in-band 802.1Q tag.
        let mut v = eth(B, A, 0x8100);
        v.extend_from_slice(&[0, 5, 0x08, 0]);
        v.extend(ipv4([10, 0, 0, 1], [10, 0, 0, 2], 17, 0));
        v.extend_from_slice(&[0, 1, 0, 2, 0, 8, 0, 0]);
        assert_eq!(xmit_hash(Layer34, &v, None), 0x03 ^ 0x8100);
    }

    #[test]
    fn ipv6_addresses_fold_to_one_word() {
        let mut f = eth(B, A, 0x86dd);
        f.extend_from_slice(&[0x60, 0, 0, 0, 0, 8, 17, 64]);
        let src = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let dst = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&[0, 9, 0, 9, 0, 8, 0, 0]);
        // ipv6_addr_hash(src) = 0x000080fe ^ 0x01000000 = 0x010080fe, dst = 0x020080fe;
        // h = 0x09000900 ^ 0x03000000 = 0x0a000900 -> 0x05050181 as for IPv4.
        assert_eq!(xmit_hash(Layer34, &f, None), 0x0505_0181);
    }

    #[test]
    fn encap_policies_see_through_tunnels_and_tags() {
        let inner = udp4([10, 1, 0, 1], [10, 1, 0, 2], 4000, 80);
        // IP-in-IP: encap3+4 hashes the inner addresses and ports.
        let mut ipip = eth(B, A, 0x0800);
        ipip.extend(ipv4([192, 0, 2, 1], [192, 0, 2, 2], 4, 0));
        ipip.extend_from_slice(&inner[14..]);
        assert_eq!(
            xmit_hash(Encap34, &ipip, None),
            xmit_hash(Layer34, &inner, None)
        );
        assert_ne!(
            xmit_hash(Layer34, &ipip, None),
            xmit_hash(Layer34, &inner, None)
        );
        // GRE with a key and transparent Ethernet bridging.
        let mut gre = eth(B, A, 0x0800);
        gre.extend(ipv4([192, 0, 2, 1], [192, 0, 2, 2], 47, 0));
        gre.extend_from_slice(&[0x20, 0, 0x65, 0x58, 0, 0, 0, 42]);
        gre.extend_from_slice(&inner);
        assert_eq!(
            xmit_hash(Encap34, &gre, None),
            xmit_hash(Layer34, &inner, None)
        );
        // Two stacked VLAN tags.
        let mut qq = eth(B, A, 0x88a8);
        qq.extend_from_slice(&[0, 10, 0x81, 0x00, 0, 20, 0x08, 0x00]);
        qq.extend_from_slice(&inner[14..]);
        assert_eq!(
            xmit_hash(Encap34, &qq, None),
            xmit_hash(Layer34, &inner, None)
        );
        // encap2+3 keeps the outer MACs and EtherType for its layer2 part.
        let mut q = eth(B, A, 0x8100);
        q.extend_from_slice(&[0, 10, 0x08, 0x00]);
        q.extend_from_slice(&inner[14..]);
        let l2 = 0x03 ^ 0x8100u32;
        let mut h = l2 ^ u32::from_le_bytes([10, 1, 0, 1]) ^ u32::from_le_bytes([10, 1, 0, 2]);
        h ^= h >> 16;
        h ^= h >> 8;
        assert_eq!(xmit_hash(Encap23, &q, None), h);
        // ARP under encap3+4: dissected (no addresses), ports 0 -> 0.
        assert_eq!(xmit_hash(Encap34, &eth(B, A, 0x0806), None), 0);
    }

    #[test]
    fn vlan_srcmac() {
        let f = eth(B, [0x00, 0x1b, 0x21, 0xaa, 0xbb, 0xcc], 0x0800);
        assert_eq!(
            xmit_hash(VlanSrcMac, &f, Some(100)),
            100 ^ 0x001b21 ^ 0xaabbcc
        );
    }

    #[test]
    fn fastmod_is_exact() {
        for d in [1u32, 2, 3, 5, 7, 8, 100, 65535, u32::MAX] {
            let m = FastMod::new(d);
            for a in [
                0u32,
                1,
                2,
                3,
                99,
                1 << 31,
                u32::MAX,
                u32::MAX - 1,
                0x0505_0181,
            ] {
                assert_eq!(m.rem(a), a % d, "{a} % {d}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..160), p in 0u8..6) {
            let policy = [Layer2, Layer34, Layer23, Encap23, Encap34, VlanSrcMac][p as usize];
            let _ = xmit_hash(policy, &bytes, Some(7));
        }

        #[test]
        fn fastmod_matches_remainder(a in proptest::num::u32::ANY, d in 1u32..) {
            proptest::prop_assert_eq!(FastMod::new(d).rem(a), a % d);
        }
    }
}
