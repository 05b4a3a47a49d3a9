//! UDP headers (RFC 768).

use std::net::Ipv4Addr;

use super::{be16, need, pseudo_sum_v4, WireError};
use crate::net::internet_checksum;

mod field {
    // RFC 768, "Format": Source Port, Destination Port, Length (header
    // and data, in octets), Checksum.
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
    pub const PAYLOAD: usize = 8;
}

/// A UDP datagram: header and the Length octets it states (anything the
/// buffer holds after them is not payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    pub const HEADER_LEN: usize = field::PAYLOAD;

    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Wraps `buffer` if it holds a header whose Length covers the header
    /// and fits in the buffer.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = UdpPacket { buffer };
        let have = p.buffer.as_ref().len();
        need(have, field::PAYLOAD)?;
        let len = p.len() as usize;
        if len < field::PAYLOAD {
            return Err(WireError::Length(len));
        }
        need(have, len)?;
        Ok(p)
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Length: header and data.
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Checksum; 0 means none was computed (RFC 768, IPv4 only).
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..self.len() as usize]
    }

    /// Whether the checksum over the IPv4 pseudo-header is right (or absent).
    #[inline]
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let len = self.len() as usize;
        self.checksum() == 0
            || internet_checksum(
                &self.buffer.as_ref()[..len],
                pseudo_sum_v4(src.octets(), dst.octets(), super::IPPROTO_UDP, len),
            ) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    #[inline]
    pub fn set_src_port(&mut self, p: u16) {
        self.buffer.as_mut()[field::SRC_PORT..field::SRC_PORT + 2].copy_from_slice(&p.to_be_bytes())
    }

    #[inline]
    pub fn set_dst_port(&mut self, p: u16) {
        self.buffer.as_mut()[field::DST_PORT..field::DST_PORT + 2].copy_from_slice(&p.to_be_bytes())
    }

    /// Writes Length (header and data).
    #[inline]
    pub fn set_len(&mut self, len: u16) {
        self.buffer.as_mut()[field::LENGTH..field::LENGTH + 2].copy_from_slice(&len.to_be_bytes())
    }

    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        self.buffer.as_mut()[field::CHECKSUM..field::CHECKSUM + 2].copy_from_slice(&c.to_be_bytes())
    }

    /// Computes and writes the checksum over the IPv4 pseudo-header; a
    /// sum of 0 is sent as 0xffff (RFC 768, "Fields").
    #[inline]
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let len = self.len() as usize;
        let c = internet_checksum(
            &self.buffer.as_ref()[..len],
            pseudo_sum_v4(src.octets(), dst.octets(), super::IPPROTO_UDP, len),
        );
        self.set_checksum(if c == 0 { 0xffff } else { c })
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = self.len() as usize;
        &mut self.buffer.as_mut()[field::PAYLOAD..len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DNS query header's first 4 bytes from 10.0.2.15:40000 to
    /// 10.0.2.3:53, checksum as Linux computes it.
    const DNS: [u8; 12] = [
        0x9c, 0x40, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, 0x12, 0x34, 0x01, 0x00,
    ];

    #[test]
    fn parses_and_checksums() {
        let (s, d) = (Ipv4Addr::new(10, 0, 2, 15), Ipv4Addr::new(10, 0, 2, 3));
        let mut b = DNS;
        let mut p = UdpPacket::new_checked(&mut b[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port(), p.len()), (40000, 53, 12));
        assert_eq!(p.payload(), &[0x12, 0x34, 0x01, 0x00]);
        assert!(p.verify_checksum_v4(s, d)); // absent
        p.fill_checksum_v4(s, d);
        assert_ne!(p.checksum(), 0);
        assert!(p.verify_checksum_v4(s, d));
        assert!(!p.verify_checksum_v4(d, d));
        p.set_len(12);
        p.set_src_port(53);
        p.set_dst_port(40000);
        p.payload_mut()[0] = 0;
        assert_eq!((p.src_port(), p.dst_port(), b[8]), (53, 40000, 0));
    }

    #[test]
    fn refuses_bad_lengths() {
        for n in 0..DNS.len() {
            assert!(UdpPacket::new_checked(&DNS[..n]).is_err(), "{n} bytes");
        }
        let mut b = DNS;
        b[5] = 7;
        assert_eq!(UdpPacket::new_checked(&b[..]), Err(WireError::Length(7)));
        // Trailing bytes beyond Length are not payload.
        let mut b = DNS;
        b[5] = 8;
        assert!(UdpPacket::new_checked(&b[..]).unwrap().payload().is_empty());
    }
}
