//! Checked zero-copy views of the headers the data path reads, in the
//! manner of smoltcp's `wire`.
//!
//! Each view wraps any `T: AsRef<[u8]>` (a `&[u8]`, a `&mut [u8]`, an
//! mbuf's data) without copying:
//!
//! - `new_unchecked(buf)` wraps without looking; an accessor may panic if
//!   the buffer is too short. For code that has already checked.
//! - `new_checked(buf)` checks the buffer's length and every length field
//!   of the header (IPv4 IHL and total length, TCP data offset, UDP
//!   length, IPv6 payload length) against the buffer once, so that no
//!   accessor and no `payload()` can panic afterwards, whatever the bytes.
//! - Accessors read network-order fields; setters exist only where `T:
//!   AsMut<[u8]>` and only for what the data path writes (addresses, the
//!   ICMP type, checksums, ports).
//!
//! Accessors are `#[inline]` and compile to the loads a hand-written
//! offset would; no view allocates. Field offsets are in a private `mod
//! field` in each file, next to the section of the standard they come
//! from.
//!
//! The views: [`EthernetFrame`], [`VlanTag`] (and [`l3_of`], which walks
//! up to two tags to the network header), [`ArpPacket`], [`Ipv4Packet`],
//! [`Ipv6Packet`], [`UdpPacket`], [`TcpPacket`], [`IcmpPacket`]. MAC
//! addresses are [`MacAddr`](crate::net::MacAddr), IP addresses
//! `std::net::Ipv4Addr` and `Ipv6Addr`.

mod answer;
mod arp;
mod ethernet;
mod icmp;
mod ipv4;
mod ipv6;
mod tcp;
mod udp;

pub use answer::{answer, Answer};
pub use arp::{ArpOp, ArpPacket};
pub use ethernet::{l3_of, EthernetFrame, VlanTag, L3, TPID_QINQ};
pub use icmp::{IcmpPacket, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST};
pub use ipv4::{Ipv4Packet, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};
pub use ipv6::{Ipv6Packet, IPPROTO_ICMPV6};
pub use tcp::TcpPacket;
pub use udp::UdpPacket;

/// Why bytes are not a header a view can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer is shorter than the header (or than what its length
    /// fields say follows).
    #[error("{have} bytes, {need} needed")]
    Truncated { need: usize, have: usize },
    /// The IP version nibble is not the view's.
    #[error("IP version {0}")]
    Version(u8),
    /// A header length field (IPv4 IHL, TCP data offset) smaller than
    /// the fixed header.
    #[error("header length {0} is shorter than the fixed header")]
    HeaderLen(usize),
    /// A total or payload length field smaller than the header it covers.
    #[error("length field {0} is shorter than the header")]
    Length(usize),
    /// A header the view does not read (ARP for other than Ethernet/IPv4).
    #[error("unsupported header")]
    Unsupported,
}

/// `Err(Truncated)` unless `have >= need`.
#[inline]
pub(crate) fn need(have: usize, need: usize) -> Result<(), WireError> {
    if have < need {
        Err(WireError::Truncated { need, have })
    } else {
        Ok(())
    }
}

#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
pub(crate) fn array<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[at..at + N]);
    a
}

/// Swaps the `n` bytes at `a` with the `n` bytes at `b` (ranges apart).
#[inline]
pub(crate) fn swap_ranges<const N: usize>(buf: &mut [u8], a: usize, b: usize) {
    let x: [u8; N] = array(buf, a);
    buf.copy_within(b..b + N, a);
    buf[b..b + N].copy_from_slice(&x);
}

/// The ones'-complement sum (RFC 1071) of an IPv4 pseudo-header (RFC 768
/// "Fields", RFC 9293 section 3.1), unfolded: the `initial` of
/// [`internet_checksum`](crate::net::internet_checksum).
#[inline]
pub(crate) fn pseudo_sum_v4(src: [u8; 4], dst: [u8; 4], proto: u8, len: usize) -> u32 {
    be16(&src, 0) as u32
        + be16(&src, 2) as u32
        + be16(&dst, 0) as u32
        + be16(&dst, 2) as u32
        + proto as u32
        + len as u32
}
