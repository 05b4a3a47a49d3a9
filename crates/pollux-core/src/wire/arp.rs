//! ARP for IPv4 over Ethernet (RFC 826), the only kind the data path
//! answers or learns from.

use std::net::Ipv4Addr;

use super::{array, be16, need, WireError};
use crate::net::{MacAddr, ETHERTYPE_IPV4};

mod field {
    use std::ops::Range;
    // RFC 826, "Packet format": ar$hrd, ar$pro, ar$hln, ar$pln, ar$op,
    // then ar$sha, ar$spa, ar$tha, ar$tpa sized by ar$hln and ar$pln
    // (6 and 4 for Ethernet/IPv4).
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OP: usize = 6;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// ar$hrd of Ethernet (RFC 826; IANA ARP parameters).
const HTYPE_ETHERNET: u16 = 1;

/// An ARP operation (RFC 826 ar$op; RFC 903 adds the reverse ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpOp {
    Request,
    Reply,
    Other(u16),
}

impl From<u16> for ArpOp {
    #[inline]
    fn from(v: u16) -> ArpOp {
        match v {
            1 => ArpOp::Request,
            2 => ArpOp::Reply,
            v => ArpOp::Other(v),
        }
    }
}

impl From<ArpOp> for u16 {
    #[inline]
    fn from(op: ArpOp) -> u16 {
        match op {
            ArpOp::Request => 1,
            ArpOp::Reply => 2,
            ArpOp::Other(v) => v,
        }
    }
}

/// An Ethernet/IPv4 ARP packet (the bytes after the Ethernet header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Length of an Ethernet/IPv4 ARP packet.
    pub const LEN: usize = field::TPA.end;

    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// Wraps `buffer` if it holds an ARP packet for Ethernet addresses and
    /// IPv4 (hardware type 1, protocol 0x0800, lengths 6 and 4).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        need(b.len(), Self::LEN)?;
        if be16(b, field::HTYPE) != HTYPE_ETHERNET
            || be16(b, field::PTYPE) != ETHERTYPE_IPV4
            || b[field::HLEN] != 6
            || b[field::PLEN] != 4
        {
            return Err(WireError::Unsupported);
        }
        Ok(ArpPacket { buffer })
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn op(&self) -> ArpOp {
        be16(self.buffer.as_ref(), field::OP).into()
    }

    /// Sender hardware address.
    #[inline]
    pub fn sha(&self) -> MacAddr {
        MacAddr(array(self.buffer.as_ref(), field::SHA.start))
    }

    /// Sender protocol address.
    #[inline]
    pub fn spa(&self) -> Ipv4Addr {
        array::<4>(self.buffer.as_ref(), field::SPA.start).into()
    }

    /// Target hardware address.
    #[inline]
    pub fn tha(&self) -> MacAddr {
        MacAddr(array(self.buffer.as_ref(), field::THA.start))
    }

    /// Target protocol address.
    #[inline]
    pub fn tpa(&self) -> Ipv4Addr {
        array::<4>(self.buffer.as_ref(), field::TPA.start).into()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Writes the fixed part for Ethernet/IPv4 (hardware and protocol
    /// types and lengths), which [`Self::new_checked`] requires.
    #[inline]
    pub fn fill_ethernet_ipv4(&mut self) {
        let b = self.buffer.as_mut();
        b[field::HTYPE..field::HTYPE + 2].copy_from_slice(&HTYPE_ETHERNET.to_be_bytes());
        b[field::PTYPE..field::PTYPE + 2].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
    }

    #[inline]
    pub fn set_op(&mut self, op: ArpOp) {
        self.buffer.as_mut()[field::OP..field::OP + 2].copy_from_slice(&u16::from(op).to_be_bytes())
    }

    #[inline]
    pub fn set_sha(&mut self, a: MacAddr) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&a.0)
    }

    #[inline]
    pub fn set_spa(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&a.octets())
    }

    #[inline]
    pub fn set_tha(&mut self, a: MacAddr) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&a.0)
    }

    #[inline]
    pub fn set_tpa(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&a.octets())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "who-has 10.0.2.2 tell 10.0.2.15" from 52:54:00:12:34:56, as
    /// tcpdump -xx shows it after the Ethernet header.
    const REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x0a,
        0x00, 0x02, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x02, 0x02,
    ];

    #[test]
    fn parses_and_builds_a_request() {
        let p = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(p.op(), ArpOp::Request);
        assert_eq!(p.sha(), MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
        assert_eq!(p.spa(), Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(p.tha(), MacAddr::ZERO);
        assert_eq!(p.tpa(), Ipv4Addr::new(10, 0, 2, 2));
        let mut b = [0xeeu8; 28];
        let mut q = ArpPacket::new_unchecked(&mut b[..]);
        q.fill_ethernet_ipv4();
        q.set_op(ArpOp::Request);
        q.set_sha(p.sha());
        q.set_spa(p.spa());
        q.set_tha(MacAddr::ZERO);
        q.set_tpa(p.tpa());
        assert_eq!(b, REQUEST);
        assert_eq!(u16::from(ArpOp::from(3)), 3);
    }

    #[test]
    fn refuses_short_and_foreign_packets() {
        for n in 0..REQUEST.len() {
            assert!(ArpPacket::new_checked(&REQUEST[..n]).is_err(), "{n} bytes");
        }
        for (at, v) in [(1, 6), (2, 0x86), (4, 8), (5, 16)] {
            let mut b = REQUEST;
            b[at] = v;
            assert_eq!(
                ArpPacket::new_checked(&b[..]).unwrap_err(),
                WireError::Unsupported
            );
        }
    }
}
