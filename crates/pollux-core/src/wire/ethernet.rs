//! Ethernet II frames (IEEE 802.3-2018 clause 3.1.1, the Length/Type
//! field as a Type of 0x0600 and above) and IEEE 802.1Q tags.

use super::{array, be16, need, WireError};
use crate::net::{MacAddr, ETHERTYPE_VLAN};

/// TPID of an IEEE 802.1ad service tag (802.1Q-2018 clause 9.5, table 9-1).
pub const TPID_QINQ: u16 = 0x88a8;

mod field {
    use std::ops::Range;
    // IEEE 802.3-2018 clause 3.1.1 (MAC frame format, figure 3-1):
    // Destination Address, Source Address, Length/Type.
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: usize = 12;
    pub const PAYLOAD: usize = 14;
    // IEEE 802.1Q-2018 clause 9.6 (VLAN tag format), counted from after
    // the TPID that took the EtherType's place: the TCI (PCP 3 bits, DEI
    // 1 bit, VID 12 bits), then the EtherType of what follows.
    pub const TCI: usize = 0;
    pub const INNER_ETHERTYPE: usize = 2;
    pub const TAG_PAYLOAD: usize = 4;
}

/// An Ethernet II frame: destination, source, EtherType, payload (FCS not
/// included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Length of the header.
    pub const HEADER_LEN: usize = field::PAYLOAD;

    /// Wraps `buffer` without checking it; accessors panic when it is
    /// shorter than [`Self::HEADER_LEN`].
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps `buffer` if it holds an Ethernet header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        need(buffer.as_ref().len(), field::PAYLOAD)?;
        Ok(EthernetFrame { buffer })
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn dst_addr(&self) -> MacAddr {
        MacAddr(array(self.buffer.as_ref(), field::DST.start))
    }

    #[inline]
    pub fn src_addr(&self) -> MacAddr {
        MacAddr(array(self.buffer.as_ref(), field::SRC.start))
    }

    /// The EtherType (a TPID when the frame is tagged).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ETHERTYPE)
    }

    /// Everything after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    #[inline]
    pub fn set_dst_addr(&mut self, a: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.0)
    }

    #[inline]
    pub fn set_src_addr(&mut self, a: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.0)
    }

    #[inline]
    pub fn set_ethertype(&mut self, t: u16) {
        self.buffer.as_mut()[field::ETHERTYPE..field::ETHERTYPE + 2]
            .copy_from_slice(&t.to_be_bytes())
    }

    /// Swaps destination and source (a reply's addresses, testpmd's macswap).
    #[inline]
    pub fn swap_addrs(&mut self) {
        super::swap_ranges::<6>(self.buffer.as_mut(), field::DST.start, field::SRC.start)
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

/// An IEEE 802.1Q tag as it follows its TPID: the TCI and the EtherType
/// of what it encloses. Wrap the bytes after the TPID, e.g. an
/// [`EthernetFrame::payload`] whose EtherType was 0x8100 or 0x88a8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanTag<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanTag<T> {
    /// Length of the tag after its TPID.
    pub const HEADER_LEN: usize = field::TAG_PAYLOAD;

    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        VlanTag { buffer }
    }

    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        need(buffer.as_ref().len(), field::TAG_PAYLOAD)?;
        Ok(VlanTag { buffer })
    }

    /// The whole Tag Control Information.
    #[inline]
    pub fn tci(&self) -> u16 {
        be16(self.buffer.as_ref(), field::TCI)
    }

    /// Priority Code Point (802.1Q-2018 clause 9.6.1).
    #[inline]
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Drop Eligible Indicator (802.1Q-2018 clause 9.6.1).
    #[inline]
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// VLAN identifier (802.1Q-2018 clause 9.6.1).
    #[inline]
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// EtherType of the enclosed frame (another TPID if stacked).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), field::INNER_ETHERTYPE)
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::TAG_PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanTag<T> {
    #[inline]
    pub fn set_tci(&mut self, tci: u16) {
        self.buffer.as_mut()[field::TCI..field::TCI + 2].copy_from_slice(&tci.to_be_bytes())
    }
}

/// Where the network header of a frame starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L3 {
    /// The EtherType after the tags.
    pub ethertype: u16,
    /// Offset of the network header from the frame's first byte.
    pub offset: usize,
    /// The outermost tag's TCI, if the frame has a tag.
    pub outer_tci: Option<u16>,
    /// Tags walked: 0, 1 or 2.
    pub tags: u8,
}

/// Walks an Ethernet frame's tags (802.1Q 0x8100 or 802.1ad 0x88a8, at
/// most two, as a QinQ frame has) to the EtherType and offset of the
/// network header. A third tag is left as the EtherType. Refuses a frame
/// truncated within its header or its tags.
#[inline]
pub fn l3_of(frame: &[u8]) -> Result<L3, WireError> {
    let eth = EthernetFrame::new_checked(frame)?;
    let mut l3 = L3 {
        ethertype: eth.ethertype(),
        offset: EthernetFrame::<&[u8]>::HEADER_LEN,
        outer_tci: None,
        tags: 0,
    };
    while l3.tags < 2 && matches!(l3.ethertype, ETHERTYPE_VLAN | TPID_QINQ) {
        let tag = VlanTag::new_checked(&frame[l3.offset..])?;
        l3.outer_tci.get_or_insert(tag.tci());
        l3.ethertype = tag.ethertype();
        l3.offset += VlanTag::<&[u8]>::HEADER_LEN;
        l3.tags += 1;
    }
    Ok(l3)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as tcpdump -xx shows an ARP request from 52:54:00:12:34:56,
    /// tagged VLAN 100 priority 5 inside service VLAN 10.
    const QINQ: [u8; 22] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x88, 0xa8, 0x00,
        0x0a, 0x81, 0x00, 0xa0, 0x64, 0x08, 0x06,
    ];

    #[test]
    fn parses_and_builds_a_header() {
        let f = EthernetFrame::new_checked(&QINQ[..]).unwrap();
        assert_eq!(f.dst_addr(), MacAddr::BROADCAST);
        assert_eq!(f.src_addr(), MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
        assert_eq!(f.ethertype(), TPID_QINQ);
        assert_eq!(f.payload().len(), 8);
        let mut b = [0u8; 14];
        let mut g = EthernetFrame::new_unchecked(&mut b[..]);
        g.set_dst_addr(MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
        g.set_src_addr(MacAddr::BROADCAST);
        g.set_ethertype(TPID_QINQ);
        g.swap_addrs();
        assert_eq!(&b[..], &QINQ[..14]);
    }

    #[test]
    fn walks_two_tags() {
        let l3 = l3_of(&QINQ).unwrap();
        assert_eq!(
            l3,
            L3 {
                ethertype: 0x0806,
                offset: 22,
                outer_tci: Some(10),
                tags: 2
            }
        );
        let t = VlanTag::new_checked(&QINQ[18..]).unwrap();
        assert_eq!(
            (t.pcp(), t.dei(), t.vid(), t.ethertype()),
            (5, false, 100, 0x0806)
        );
        let mut u = [0u8; 4];
        VlanTag::new_unchecked(&mut u[..]).set_tci(0x1fff);
        let t = VlanTag::new_checked(&u[..]).unwrap();
        assert_eq!((t.pcp(), t.dei(), t.vid()), (0, true, 0xfff));
    }

    #[test]
    fn refuses_truncated_headers_and_tags() {
        for n in 0..QINQ.len() {
            assert!(l3_of(&QINQ[..n]).is_err(), "{n} bytes");
        }
        assert_eq!(
            EthernetFrame::new_checked(&QINQ[..13]).unwrap_err(),
            WireError::Truncated { need: 14, have: 13 }
        );
        assert!(VlanTag::new_checked(&QINQ[14..17]).is_err());
        // Untagged: the header alone is enough.
        let mut u = QINQ;
        u[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(l3_of(&u[..14]).unwrap().offset, 14);
    }
}
