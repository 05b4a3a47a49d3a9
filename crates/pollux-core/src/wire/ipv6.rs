//! IPv6 fixed headers (RFC 8200). Extension headers are payload here.

use std::net::Ipv6Addr;

use super::{array, be16, be32, need, WireError};

/// Next Header of ICMPv6 (RFC 4443).
pub const IPPROTO_ICMPV6: u8 = 58;

mod field {
    use std::ops::Range;
    // RFC 8200 section 3 ("IPv6 Header Format"): Version (4 bits),
    // Traffic Class (8), Flow Label (20), Payload Length, Next Header,
    // Hop Limit, Source Address, Destination Address.
    pub const VER_TC_FLOW: usize = 0;
    pub const LENGTH: usize = 4;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
    pub const PAYLOAD: usize = 40;
}

/// An IPv6 packet: the fixed header and the Payload Length octets after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Length of the fixed header.
    pub const HEADER_LEN: usize = field::PAYLOAD;

    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Wraps `buffer` if it holds version 6 and the payload its Payload
    /// Length states. A jumbogram (Payload Length 0, RFC 2675) is
    /// accepted with an empty payload.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Ipv6Packet { buffer };
        let len = p.buffer.as_ref().len();
        need(len, field::PAYLOAD)?;
        if p.version() != 6 {
            return Err(WireError::Version(p.version()));
        }
        need(len, field::PAYLOAD + p.payload_len() as usize)?;
        Ok(p)
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FLOW] >> 4
    }

    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (be32(self.buffer.as_ref(), field::VER_TC_FLOW) >> 20) as u8
    }

    #[inline]
    pub fn flow_label(&self) -> u32 {
        be32(self.buffer.as_ref(), field::VER_TC_FLOW) & 0x000f_ffff
    }

    /// Payload Length: the octets after the fixed header.
    #[inline]
    pub fn payload_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        array::<16>(self.buffer.as_ref(), field::SRC.start).into()
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        array::<16>(self.buffer.as_ref(), field::DST.start).into()
    }

    /// The unfolded ones'-complement sum of the upper-layer pseudo-header
    /// (RFC 8200 section 8.1) for a payload with no extension headers:
    /// source, destination, Payload Length and Next Header.
    #[inline]
    pub fn pseudo_header_sum(&self) -> u32 {
        let b = self.buffer.as_ref();
        let mut sum = self.payload_len() as u32 + self.next_header() as u32;
        for at in (field::SRC.start..field::DST.end).step_by(2) {
            sum += be16(b, at) as u32;
        }
        sum
    }

    /// The payload (extension headers included), Payload Length octets.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..field::PAYLOAD + self.payload_len() as usize]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    #[inline]
    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.octets())
    }

    #[inline]
    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.octets())
    }

    /// Swaps source and destination.
    #[inline]
    pub fn swap_addrs(&mut self) {
        super::swap_ranges::<16>(self.buffer.as_mut(), field::SRC.start, field::DST.start)
    }

    #[inline]
    pub fn set_hop_limit(&mut self, h: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = h
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = field::PAYLOAD + self.payload_len() as usize;
        &mut self.buffer.as_mut()[field::PAYLOAD..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UDP datagram fe80::1 -> ff02::1:2 port 546 -> 547 with 4 bytes
    /// of data (a truncated DHCPv6 solicit), flow label 0x12345, traffic
    /// class 0xb8.
    const UDP6: [u8; 52] = [
        0x6b, 0x81, 0x23, 0x45, 0x00, 0x0c, 0x11, 0x01, 0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0x01, 0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 0x02, 0x02, 0x22,
        0x02, 0x23, 0x00, 0x0c, 0x00, 0x00, 0x01, 0x00, 0x00, 0x01,
    ];

    #[test]
    fn parses_and_swaps() {
        let p = Ipv6Packet::new_checked(&UDP6[..]).unwrap();
        assert_eq!(
            (p.version(), p.traffic_class(), p.flow_label()),
            (6, 0xb8, 0x12345)
        );
        assert_eq!(
            (p.payload_len(), p.next_header(), p.hop_limit()),
            (12, 17, 1)
        );
        assert_eq!(p.src_addr(), "fe80::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.dst_addr(), "ff02::1:2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.payload(), &UDP6[40..]);
        // fe80::1 + ff02::1:2 + Payload Length + Next Header.
        let sum = 0xfe80 + 1 + 0xff02 + 1 + 2 + 12 + 17;
        assert_eq!(p.pseudo_header_sum(), sum);
        let mut b = UDP6;
        let mut q = Ipv6Packet::new_checked(&mut b[..]).unwrap();
        q.swap_addrs();
        assert_eq!(q.src_addr(), p.dst_addr());
        q.set_src_addr(p.src_addr());
        q.set_dst_addr(p.dst_addr());
        q.set_hop_limit(1);
        q.payload_mut()[0] = 0x02;
        assert_eq!(b, UDP6);
    }

    #[test]
    fn refuses_bad_lengths() {
        for n in 0..UDP6.len() {
            assert!(Ipv6Packet::new_checked(&UDP6[..n]).is_err(), "{n} bytes");
        }
        let mut b = UDP6;
        b[0] = 0x4b;
        assert_eq!(Ipv6Packet::new_checked(&b[..]), Err(WireError::Version(4)));
        let mut b = UDP6;
        b[5] = 13;
        assert_eq!(
            Ipv6Packet::new_checked(&b[..]),
            Err(WireError::Truncated { need: 53, have: 52 })
        );
    }
}
