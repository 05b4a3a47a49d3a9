//! Small wire helpers the core and the tools share: MAC addresses, the
//! Internet checksum, and building the UDP test frames of `txonly`.

use std::fmt;
use std::str::FromStr;

/// EtherType of IPv4 (IEEE 802.3 / IANA).
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of an 802.1Q VLAN tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// EtherType of the slow protocols (LACP, marker), IEEE 802.3 Annex 57A.
pub const ETHERTYPE_SLOW: u16 = 0x8809;

/// An Ethernet MAC address, the only MAC type of the workspace (the data
/// plane's ports and the host-control crates' VF settings and state).
///
/// `Display` and `Debug` print `02:00:5e:10:00:ff`, lower case; `FromStr`
/// reads that, upper case, `-` separators and one-digit bytes too
/// ([`MacParseError`] otherwise). With the `serde` feature it serializes as
/// the `Display` string and deserializes through `FromStr`.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// 00:00:00:00:00:00
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// Group (multicast or broadcast) bit set.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// Locally administered bit set.
    pub fn is_local(&self) -> bool {
        self.0[0] & 2 == 2
    }

    /// All zero: no address (a VF the PF has not given one).
    pub fn is_zero(&self) -> bool {
        *self == MacAddr::ZERO
    }

    /// A unicast address that is not all zero.
    pub fn is_valid_unicast(&self) -> bool {
        !self.is_multicast() && !self.is_zero()
    }

    /// The bytes.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A string that is not a MAC address: [`MacAddr`]'s `FromStr` takes six
/// bytes of one or two hex digits each, separated by `:` or `-`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex bytes like 02:00:00:00:00:01")]
pub struct MacParseError(pub String);

impl FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<MacAddr, MacParseError> {
        let err = || MacParseError(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for b in &mut out {
            let p = parts.next().ok_or_else(err)?;
            // All hex digits: from_str_radix alone would take a sign ("+f").
            if p.is_empty() || p.len() > 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(err());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<MacAddr, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The Internet checksum (RFC 1071) of `data`, folded and complemented,
/// starting from a partial sum `initial`.
pub fn internet_checksum(data: &[u8], initial: u32) -> u16 {
    let mut sum = initial as u64;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u16::from_be_bytes([c[0], c[1]]) as u64;
    }
    if let [last] = chunks.remainder() {
        sum += (*last as u64) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Addresses of a UDP/IPv4 test frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpFrameSpec {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub src_ip: [u8; 4],
    pub dst_ip: [u8; 4],
    pub src_port: u16,
    pub dst_port: u16,
}

impl Default for UdpFrameSpec {
    /// testpmd's txonly defaults: 198.18.0.1 -> 198.18.0.2, ports 9 -> 9
    /// (RFC 2544 benchmarking addresses).
    fn default() -> UdpFrameSpec {
        UdpFrameSpec {
            src_mac: MacAddr([0x02, 0, 0, 0, 0, 0x01]),
            dst_mac: MacAddr([0x02, 0, 0, 0, 0, 0x02]),
            src_ip: [198, 18, 0, 1],
            dst_ip: [198, 18, 0, 2],
            src_port: 9,
            dst_port: 9,
        }
    }
}

/// Smallest frame `udp_frame` builds: Ethernet 14 + IPv4 20 + UDP 8.
pub const UDP_FRAME_MIN: usize = 42;

/// Writes a UDP/IPv4 frame of `out.len()` bytes (FCS excluded) with a
/// correct IPv4 header checksum and a zero (absent) UDP checksum.
/// Returns false when `out` is shorter than [`UDP_FRAME_MIN`] or longer than
/// an IPv4 packet can be.
pub fn udp_frame(out: &mut [u8], spec: &UdpFrameSpec) -> bool {
    use crate::wire::{EthernetFrame, Ipv4Packet, UdpPacket, IPPROTO_UDP};
    let len = out.len();
    if !(UDP_FRAME_MIN..=14 + 65535).contains(&len) {
        return false;
    }
    let ip_len = (len - 14) as u16;
    let mut eth = EthernetFrame::new_unchecked(&mut *out);
    eth.set_dst_addr(spec.dst_mac);
    eth.set_src_addr(spec.src_mac);
    eth.set_ethertype(ETHERTYPE_IPV4);
    let mut ip = Ipv4Packet::new_unchecked(eth.payload_mut());
    ip.set_version_and_header_len(20);
    ip.set_tos(0);
    ip.set_total_len(ip_len);
    ip.set_ident(0);
    ip.set_fragment(true, false, 0);
    ip.set_ttl(64);
    ip.set_protocol(IPPROTO_UDP);
    ip.set_src_addr(spec.src_ip.into());
    ip.set_dst_addr(spec.dst_ip.into());
    ip.fill_checksum();
    let mut udp = UdpPacket::new_unchecked(ip.payload_mut());
    udp.set_src_port(spec.src_port);
    udp.set_dst_port(spec.dst_port);
    udp.set_len(ip_len - 20);
    udp.set_checksum(0);
    udp.payload_mut().fill(0);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parse_and_print() {
        let m: MacAddr = "02:00:5E:10:00:ff".parse().unwrap();
        assert_eq!(m.to_string(), "02:00:5e:10:00:ff");
        assert!(m.is_local() && !m.is_multicast());
        assert!("01:80:c2:00:00:02"
            .parse::<MacAddr>()
            .unwrap()
            .is_multicast());
        for bad in [
            "",
            "02:00",
            "02:00:00:00:00:00:00",
            "zz:00:00:00:00:00",
            "002:0:0:0:0:0",
            "02:00:00:00:00",
            "0g:00:00:00:00:00",
            "+2:00:00:00:00:00",
            "02:00:00:00:00:-1",
            "02::00:00:00:00",
            "02:00:00:00:00:00:",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        let m: MacAddr = "2-0-5e-10-0-FF".parse().unwrap();
        assert_eq!(m.to_string(), "02:00:5e:10:00:ff");
        assert!(MacAddr::ZERO.is_zero() && !MacAddr::ZERO.is_valid_unicast());
        assert!(!m.is_zero() && m.is_valid_unicast());
        let e = "xx".parse::<MacAddr>().unwrap_err().to_string();
        assert!(e.starts_with("invalid MAC address \"xx\""), "{e}");
    }

    #[cfg(feature = "serde")]
    #[test]
    fn mac_serde_is_the_string() {
        let m = MacAddr([0x02, 0xaa, 0, 0, 0, 0x01]);
        let j = serde_json::to_string(&m).unwrap();
        assert_eq!(j, "\"02:aa:00:00:00:01\"");
        assert_eq!(serde_json::from_str::<MacAddr>(&j).unwrap(), m);
        assert_eq!(
            serde_json::from_str::<MacAddr>("\"02:AA:00:00:00:01\"").unwrap(),
            m
        );
        let e = serde_json::from_str::<MacAddr>("\"02:aa\"").unwrap_err();
        assert!(e.to_string().contains("invalid MAC address"), "{e}");
        assert!(serde_json::from_str::<MacAddr>("[2,0,0,0,0,1]").is_err());
    }

    #[test]
    fn checksum_of_rfc1071_example() {
        // RFC 1071 section 3 example: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(internet_checksum(&d, 0), !0xddf2);
    }

    #[test]
    fn udp_frame_header_verifies() {
        let mut f = [0u8; 60];
        assert!(udp_frame(&mut f, &UdpFrameSpec::default()));
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        // A correct header sums to zero.
        assert_eq!(internet_checksum(&f[14..34], 0), 0);
        assert_eq!(u16::from_be_bytes([f[16], f[17]]), 46);
        assert_eq!(u16::from_be_bytes([f[38], f[39]]), 26);
        assert!(!udp_frame(&mut [0u8; 41], &UdpFrameSpec::default()));
    }
}
