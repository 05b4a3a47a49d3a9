//! IPv4 headers (RFC 791).

use std::net::Ipv4Addr;

use super::{array, be16, need, WireError};
use crate::net::internet_checksum;

/// Protocol number of ICMP (IANA protocol numbers).
pub const IPPROTO_ICMP: u8 = 1;
/// Protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// Protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;

mod field {
    use std::ops::Range;
    // RFC 791 section 3.1 ("Internet Header Format"): Version and IHL
    // share the first octet, then Type of Service, Total Length,
    // Identification, Flags (3 bits) and Fragment Offset (13 bits), Time
    // to Live, Protocol, Header Checksum, Source and Destination Address;
    // options up to IHL * 4 octets.
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLG_OFF: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
    pub const FIXED_END: usize = 20;
}

/// Flags: More Fragments (RFC 791 section 3.1, "Flags" bit 2).
const MF: u16 = 0x2000;
/// Flags: Don't Fragment (bit 1).
const DF: u16 = 0x4000;
const OFFSET_MASK: u16 = 0x1fff;

/// An IPv4 packet: header, options and the payload up to Total Length
/// (Ethernet padding after it is not payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Length of the header without options.
    pub const HEADER_LEN: usize = field::FIXED_END;

    /// Wraps `buffer` without checking it. The fixed-header accessors
    /// need [`Self::HEADER_LEN`] bytes; `payload()` and the checksum
    /// need the lengths the header states.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps `buffer` if it holds version 4, an IHL of at least 5 whose
    /// header fits, and a Total Length that covers the header and fits.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Ipv4Packet { buffer };
        let len = p.buffer.as_ref().len();
        need(len, field::FIXED_END)?;
        if p.version() != 4 {
            return Err(WireError::Version(p.version()));
        }
        let hl = p.header_len();
        if hl < field::FIXED_END {
            return Err(WireError::HeaderLen(hl));
        }
        need(len, hl)?;
        let total = p.total_len() as usize;
        if total < hl {
            return Err(WireError::Length(total));
        }
        need(len, total)?;
        Ok(p)
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// IHL in octets (the field counts 32-bit words).
    #[inline]
    pub fn header_len(&self) -> usize {
        ((self.buffer.as_ref()[field::VER_IHL] & 0x0f) as usize) * 4
    }

    /// Type of Service, now DSCP and ECN (RFC 2474, RFC 3168).
    #[inline]
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }

    /// Total Length: header and payload, in octets.
    #[inline]
    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    #[inline]
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT)
    }

    #[inline]
    fn flg_off(&self) -> u16 {
        be16(self.buffer.as_ref(), field::FLG_OFF)
    }

    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.flg_off() & DF != 0
    }

    #[inline]
    pub fn more_frags(&self) -> bool {
        self.flg_off() & MF != 0
    }

    /// Fragment Offset in octets (the field counts 8-octet units).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.flg_off() & OFFSET_MASK) << 3
    }

    /// A fragment, first or later: its payload may not start with (or
    /// hold) the transport header, so flow hashes leave L4 out.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.flg_off() & (MF | OFFSET_MASK) != 0
    }

    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        array::<4>(self.buffer.as_ref(), field::SRC.start).into()
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        array::<4>(self.buffer.as_ref(), field::DST.start).into()
    }

    /// Whether the header checksum (over IHL octets) is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        internet_checksum(&self.buffer.as_ref()[..self.header_len()], 0) == 0
    }

    /// The unfolded ones'-complement sum of the TCP/UDP pseudo-header
    /// (RFC 9293 section 3.1, RFC 768): source, destination, protocol and
    /// the payload's length (Total Length - IHL). The `initial` of
    /// [`internet_checksum`] over the transport segment.
    #[inline]
    pub fn pseudo_header_sum(&self) -> u32 {
        let len = (self.total_len() as usize).saturating_sub(self.header_len());
        super::pseudo_sum_v4(
            self.src_addr().octets(),
            self.dst_addr().octets(),
            self.protocol(),
            len,
        )
    }

    /// The options, between the fixed header and IHL.
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::FIXED_END..self.header_len()]
    }

    /// The payload: from IHL to Total Length.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..self.total_len() as usize]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Writes Version 4 and the IHL of a `header_len`-octet header (a
    /// multiple of 4, from 20 to 60).
    #[inline]
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        debug_assert!(header_len % 4 == 0 && (20..=60).contains(&header_len));
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | (header_len / 4) as u8 & 0x0f
    }

    #[inline]
    pub fn set_tos(&mut self, tos: u8) {
        self.buffer.as_mut()[field::TOS] = tos
    }

    #[inline]
    pub fn set_total_len(&mut self, len: u16) {
        self.buffer.as_mut()[field::LENGTH..field::LENGTH + 2].copy_from_slice(&len.to_be_bytes())
    }

    #[inline]
    pub fn set_ident(&mut self, id: u16) {
        self.buffer.as_mut()[field::IDENT..field::IDENT + 2].copy_from_slice(&id.to_be_bytes())
    }

    /// Writes the Flags and the Fragment Offset (`offset` in octets, a
    /// multiple of 8).
    #[inline]
    pub fn set_fragment(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let mut w = (offset >> 3) & OFFSET_MASK;
        if dont_frag {
            w |= DF;
        }
        if more_frags {
            w |= MF;
        }
        self.buffer.as_mut()[field::FLG_OFF..field::FLG_OFF + 2].copy_from_slice(&w.to_be_bytes())
    }

    #[inline]
    pub fn set_protocol(&mut self, p: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = p
    }

    #[inline]
    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.octets())
    }

    #[inline]
    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.octets())
    }

    /// Swaps source and destination. The header checksum stays right: a
    /// ones'-complement sum does not change when its words trade places.
    #[inline]
    pub fn swap_addrs(&mut self) {
        super::swap_ranges::<4>(self.buffer.as_mut(), field::SRC.start, field::DST.start)
    }

    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl
    }

    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&c.to_be_bytes())
    }

    /// Computes and writes the header checksum (RFC 791 section 3.1,
    /// "Header Checksum").
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = internet_checksum(&self.buffer.as_ref()[..self.header_len()], 0);
        self.set_checksum(c)
    }

    /// The payload, from IHL to Total Length.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (h, t) = (self.header_len(), self.total_len() as usize);
        &mut self.buffer.as_mut()[h..t]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ICMP echo request 10.0.2.15 -> 10.0.2.2 (ping -c1 -s 0), the
    /// IPv4 header and the 8-byte ICMP message, as tcpdump -xx shows it.
    pub(crate) const PING: [u8; 28] = [
        0x45, 0x00, 0x00, 0x1c, 0x5c, 0x3e, 0x40, 0x00, 0x40, 0x01, 0xc6, 0x92, 0x0a, 0x00, 0x02,
        0x0f, 0x0a, 0x00, 0x02, 0x02, 0x08, 0x00, 0xf4, 0xa4, 0x03, 0x5a, 0x00, 0x01,
    ];

    #[test]
    fn parses_a_ping() {
        let p = Ipv4Packet::new_checked(&PING[..]).unwrap();
        assert_eq!((p.version(), p.header_len(), p.total_len()), (4, 20, 28));
        assert_eq!(
            (p.ident(), p.ttl(), p.protocol(), p.tos()),
            (0x5c3e, 64, IPPROTO_ICMP, 0)
        );
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!(p.src_addr(), Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(10, 0, 2, 2));
        assert!(p.verify_checksum());
        assert_eq!(p.checksum(), 0xc692);
        assert_eq!(p.payload(), &PING[20..]);
        assert!(p.options().is_empty());
        // Source, destination, protocol and 8 octets of payload.
        assert_eq!(
            p.pseudo_header_sum(),
            0x0a00 + 0x020f + 0x0a00 + 0x0202 + 1 + 8
        );
        // Ethernet padding after Total Length is not payload.
        let mut padded = [0u8; 46];
        padded[..28].copy_from_slice(&PING);
        assert_eq!(
            Ipv4Packet::new_checked(&padded[..])
                .unwrap()
                .payload()
                .len(),
            8
        );
    }

    #[test]
    fn builds_and_swaps() {
        let mut b = PING;
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        p.swap_addrs();
        assert!(p.verify_checksum());
        assert_eq!(p.src_addr(), Ipv4Addr::new(10, 0, 2, 2));
        p.set_src_addr(Ipv4Addr::new(10, 0, 2, 15));
        p.set_dst_addr(Ipv4Addr::new(10, 0, 2, 2));
        p.set_ttl(63);
        p.fill_checksum();
        assert!(p.verify_checksum());
        p.set_ttl(64);
        p.fill_checksum();
        // Rebuilt field by field, the header is the captured one.
        let mut c = [0u8; 28];
        let mut q = Ipv4Packet::new_unchecked(&mut c[..]);
        q.set_version_and_header_len(20);
        q.set_tos(0);
        q.set_total_len(28);
        q.set_ident(0x5c3e);
        q.set_fragment(true, false, 0);
        q.set_ttl(64);
        q.set_protocol(IPPROTO_ICMP);
        q.set_src_addr(Ipv4Addr::new(10, 0, 2, 15));
        q.set_dst_addr(Ipv4Addr::new(10, 0, 2, 2));
        q.fill_checksum();
        assert_eq!(&c[..20], &PING[..20]);
        q = Ipv4Packet::new_unchecked(&mut c[..]);
        q.set_fragment(false, true, 1480);
        assert!(q.more_frags() && !q.dont_frag() && q.frag_offset() == 1480);
        p.payload_mut()[0] = 0;
        assert_eq!(&b[..20], &PING[..20]);
        assert_eq!(b[20], 0);
    }

    #[test]
    fn fragments() {
        let mut b = PING;
        b[6] = 0x20; // MF, offset 0: the first fragment
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(p.more_frags() && p.is_fragment());
        b[6] = 0x00;
        b[7] = 0xb9; // offset 185 * 8, the last fragment
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(!p.more_frags() && p.is_fragment());
        assert_eq!(p.frag_offset(), 1480);
    }

    #[test]
    fn refuses_bad_lengths() {
        for n in 0..PING.len() {
            assert!(Ipv4Packet::new_checked(&PING[..n]).is_err(), "{n} bytes");
        }
        let with = |at: usize, v: u8| {
            let mut b = PING;
            b[at] = v;
            Ipv4Packet::new_checked(b).map(|_| ())
        };
        assert_eq!(with(0, 0x65), Err(WireError::Version(6)));
        assert_eq!(with(0, 0x44), Err(WireError::HeaderLen(16)));
        assert_eq!(with(0, 0x40), Err(WireError::HeaderLen(0)));
        assert_eq!(
            with(0, 0x48),
            Err(WireError::Truncated { need: 32, have: 28 })
        );
        assert_eq!(with(3, 19), Err(WireError::Length(19)));
        assert_eq!(
            with(3, 29),
            Err(WireError::Truncated { need: 29, have: 28 })
        );
        let mut b = PING;
        (b[0], b[3]) = (0x46, 20);
        assert_eq!(Ipv4Packet::new_checked(&b[..]), Err(WireError::Length(20)));
    }
}
