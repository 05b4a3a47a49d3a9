//! The one answering routine of the project's responders (the single-port
//! `examples/responder.rs` and the bond's `bond_responder`): an ARP request
//! for our address or an ICMP echo request to it becomes its reply, in
//! place, read and written through the checked views.

use std::net::Ipv4Addr;

use super::{
    ArpOp, ArpPacket, EthernetFrame, IcmpPacket, Ipv4Packet, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST,
    IPPROTO_ICMP,
};
use crate::net::{MacAddr, ETHERTYPE_ARP, ETHERTYPE_IPV4};

/// What [`answer`] made of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// An ARP reply (RFC 826) of the same length as the request.
    Arp,
    /// An ICMP echo reply (RFC 792) of `len` bytes: the request's IP packet
    /// without any Ethernet padding; set the frame to this length.
    Echo {
        /// Length of the reply frame.
        len: usize,
    },
}

/// Turns `frame`, if it is an ARP request for `ip` or an ICMP echo request
/// to `ip`, into its reply from `mac`/`ip`, in place; `None` (and the frame
/// untouched) for anything else, a short or malformed frame included.
///
/// The echo reply goes back with TTL 64 (RFC 1700's default, what Linux
/// sends) and fresh IPv4 and ICMP checksums.
pub fn answer(frame: &mut [u8], mac: MacAddr, ip: Ipv4Addr) -> Option<Answer> {
    let mut eth = EthernetFrame::new_checked(frame).ok()?;
    let peer = eth.src_addr();
    match eth.ethertype() {
        ETHERTYPE_ARP => {
            let mut arp = ArpPacket::new_checked(eth.payload_mut()).ok()?;
            if arp.op() != ArpOp::Request || arp.tpa() != ip {
                return None;
            }
            let (sha, spa) = (arp.sha(), arp.spa());
            arp.set_op(ArpOp::Reply);
            arp.set_sha(mac);
            arp.set_spa(ip);
            arp.set_tha(sha);
            arp.set_tpa(spa);
            eth.set_dst_addr(sha);
            eth.set_src_addr(mac);
            Some(Answer::Arp)
        }
        ETHERTYPE_IPV4 => {
            let mut pkt = Ipv4Packet::new_checked(eth.payload_mut()).ok()?;
            if pkt.protocol() != IPPROTO_ICMP
                || pkt.dst_addr() != ip
                || !IcmpPacket::new_checked(pkt.payload())
                    .is_ok_and(|i| i.msg_type() == ICMP_ECHO_REQUEST)
            {
                return None;
            }
            let total = pkt.total_len() as usize;
            pkt.swap_addrs();
            pkt.set_ttl(64);
            pkt.fill_checksum();
            // Checked just above: at least an ICMP header.
            let mut icmp = IcmpPacket::new_unchecked(pkt.payload_mut());
            icmp.set_msg_type(ICMP_ECHO_REPLY);
            icmp.fill_checksum();
            eth.set_dst_addr(peer);
            eth.set_src_addr(mac);
            Some(Answer::Echo {
                len: EthernetFrame::<&[u8]>::HEADER_LEN + total,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::internet_checksum;

    const ME: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const PEER: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
    const IP: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

    fn arp_request(tpa: Ipv4Addr) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&MacAddr::BROADCAST.0);
        f.extend_from_slice(&PEER.0);
        f.extend_from_slice(&ETHERTYPE_ARP.to_be_bytes());
        f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&PEER.0);
        f.extend_from_slice(&[169, 254, 1, 2]);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&tpa.octets());
        f.resize(60, 0);
        f
    }

    fn echo_request(dst: Ipv4Addr, pad: usize) -> Vec<u8> {
        let mut ip = vec![0x45, 0, 0, 28 + 8, 0, 1, 0x40, 0, 63, IPPROTO_ICMP, 0, 0];
        ip.extend_from_slice(&[169, 254, 1, 2]);
        ip.extend_from_slice(&dst.octets());
        let c = internet_checksum(&ip, 0);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let mut icmp = vec![
            ICMP_ECHO_REQUEST,
            0,
            0,
            0,
            0,
            7,
            0,
            1,
            1,
            2,
            3,
            4,
            5,
            6,
            7,
            8,
        ];
        let c = internet_checksum(&icmp, 0);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let mut f = Vec::new();
        f.extend_from_slice(&ME.0);
        f.extend_from_slice(&PEER.0);
        f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&icmp);
        f.resize(f.len() + pad, 0xee);
        f
    }

    #[test]
    fn arp_request_for_us_becomes_the_reply() {
        let mut f = arp_request(IP);
        assert_eq!(answer(&mut f, ME, IP), Some(Answer::Arp));
        assert_eq!(&f[0..6], &PEER.0, "to the asker");
        assert_eq!(&f[6..12], &ME.0);
        assert_eq!(&f[20..22], &[0, 2], "op reply");
        assert_eq!(&f[22..28], &ME.0, "sha");
        assert_eq!(&f[28..32], &IP.octets(), "spa");
        assert_eq!(&f[32..38], &PEER.0, "tha");
        assert_eq!(&f[38..42], &[169, 254, 1, 2], "tpa");
        let mut other = arp_request(Ipv4Addr::new(169, 254, 1, 9));
        let before = other.clone();
        assert_eq!(answer(&mut other, ME, IP), None);
        assert_eq!(other, before, "untouched");
    }

    #[test]
    fn echo_request_becomes_a_reply_with_valid_checksums_and_no_padding() {
        let mut f = echo_request(IP, 10);
        let len = match answer(&mut f, ME, IP) {
            Some(Answer::Echo { len }) => len,
            a => panic!("{a:?}"),
        };
        assert_eq!(len, 14 + 36);
        let f = &f[..len];
        assert_eq!(&f[0..6], &PEER.0);
        assert_eq!(&f[6..12], &ME.0);
        assert_eq!(&f[26..30], &IP.octets(), "source is us");
        assert_eq!(&f[30..34], &[169, 254, 1, 2]);
        assert_eq!(f[22], 64, "TTL");
        assert_eq!(internet_checksum(&f[14..34], 0), 0, "IPv4 checksum");
        assert_eq!(f[34], ICMP_ECHO_REPLY);
        assert_eq!(internet_checksum(&f[34..], 0), 0, "ICMP checksum");
        assert_eq!(&f[38..42], &[0, 7, 0, 1], "id and sequence kept");
    }

    #[test]
    fn every_prefix_and_other_frames_are_left_alone() {
        for full in [arp_request(IP), echo_request(IP, 0)] {
            for n in 0..full.len() - 1 {
                let mut f = full[..n].to_vec();
                let _ = answer(&mut f, ME, IP);
            }
        }
        let mut to_other = echo_request(Ipv4Addr::new(10, 0, 0, 1), 0);
        assert_eq!(answer(&mut to_other, ME, IP), None);
        let mut reply = echo_request(IP, 0);
        reply[34] = ICMP_ECHO_REPLY;
        assert_eq!(answer(&mut reply, ME, IP), None, "a reply is not answered");
    }
}
