//! Entry points shared by the cargo-fuzz targets (crates/pollux-core/fuzz)
//! and the corpus replay test, so the stable test suite runs every input
//! the fuzzer ever kept. Each asserts invariants beyond "does not panic".

use crate::net::{ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use crate::wire::{
    l3_of, ArpPacket, EthernetFrame, IcmpPacket, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket,
    VlanTag, IPPROTO_ICMP, IPPROTO_UDP,
};

/// Every view over arbitrary bytes, as a frame and as each header on its
/// own: `new_checked` refuses or every accessor answers, payloads lie
/// within the buffer, and the in-place rewrites the data path makes
/// (address swaps, checksum fills) keep the views valid and verify.
pub fn wire(data: &[u8]) {
    views(data);
    if let Ok(l3) = l3_of(data) {
        assert!(l3.offset <= data.len() && l3.tags <= 2);
        let mut f = data.to_vec();
        let mut eth = EthernetFrame::new_checked(&mut f[..]).expect("l3_of checked it");
        eth.swap_addrs();
        assert_eq!(
            eth.dst_addr(),
            EthernetFrame::new_unchecked(data).src_addr()
        );
        let l3buf = &mut f[l3.offset..];
        match l3.ethertype {
            ETHERTYPE_ARP => {
                let _ = ArpPacket::new_checked(&l3buf[..]).map(|a| (a.op(), a.sha(), a.tpa()));
            }
            ETHERTYPE_IPV4 => {
                if let Ok(mut ip) = Ipv4Packet::new_checked(&mut l3buf[..]) {
                    let was_ok = ip.verify_checksum();
                    ip.swap_addrs();
                    assert_eq!(ip.verify_checksum(), was_ok, "a swap keeps the sum");
                    ip.fill_checksum();
                    assert!(ip.verify_checksum());
                    let (s, d, proto) = (ip.src_addr(), ip.dst_addr(), ip.protocol());
                    let frag = ip.is_fragment();
                    let l4 = ip.payload_mut();
                    if proto == IPPROTO_UDP && !frag {
                        if let Ok(mut u) = UdpPacket::new_checked(&mut l4[..]) {
                            u.fill_checksum_v4(s, d);
                            assert!(u.verify_checksum_v4(s, d));
                        }
                    }
                    if proto == IPPROTO_ICMP && !frag {
                        if let Ok(mut i) = IcmpPacket::new_checked(&mut l4[..]) {
                            i.fill_checksum();
                            assert!(i.verify_checksum());
                        }
                    }
                }
            }
            ETHERTYPE_IPV6 => {
                if let Ok(mut ip) = Ipv6Packet::new_checked(&mut l3buf[..]) {
                    let (s, d) = (ip.src_addr(), ip.dst_addr());
                    ip.swap_addrs();
                    assert_eq!((ip.src_addr(), ip.dst_addr()), (d, s));
                    views(ip.payload());
                }
            }
            _ => {}
        }
    }
}

/// Each view's `new_checked` at offset 0 of `b`, and every accessor of
/// the ones that accept it.
fn views(b: &[u8]) {
    if let Ok(e) = EthernetFrame::new_checked(b) {
        let _ = (e.dst_addr(), e.src_addr(), e.ethertype());
        assert_eq!(e.payload().len(), b.len() - 14);
    }
    if let Ok(t) = VlanTag::new_checked(b) {
        let _ = (
            t.tci(),
            t.pcp(),
            t.dei(),
            t.vid(),
            t.ethertype(),
            t.payload(),
        );
    }
    if let Ok(a) = ArpPacket::new_checked(b) {
        let _ = (a.op(), a.sha(), a.spa(), a.tha(), a.tpa());
    }
    if let Ok(p) = Ipv4Packet::new_checked(b) {
        let _ = (
            p.version(),
            p.tos(),
            p.ident(),
            p.dont_frag(),
            p.more_frags(),
        );
        let _ = (p.frag_offset(), p.is_fragment(), p.ttl(), p.protocol());
        let _ = (
            p.checksum(),
            p.src_addr(),
            p.dst_addr(),
            p.verify_checksum(),
            p.pseudo_header_sum(),
        );
        assert!(p.header_len() >= 20 && p.options().len() == p.header_len() - 20);
        assert_eq!(p.payload().len(), p.total_len() as usize - p.header_len());
    }
    if let Ok(p) = Ipv6Packet::new_checked(b) {
        let _ = (
            p.version(),
            p.traffic_class(),
            p.flow_label(),
            p.next_header(),
        );
        let _ = (
            p.hop_limit(),
            p.src_addr(),
            p.dst_addr(),
            p.pseudo_header_sum(),
        );
        assert_eq!(p.payload().len(), p.payload_len() as usize);
    }
    if let Ok(u) = UdpPacket::new_checked(b) {
        let _ = (u.src_port(), u.dst_port(), u.checksum());
        let a = std::net::Ipv4Addr::UNSPECIFIED;
        let _ = u.verify_checksum_v4(a, a);
        assert_eq!(u.payload().len() + 8, u.len() as usize);
    }
    if let Ok(t) = TcpPacket::new_checked(b) {
        let _ = (t.src_port(), t.dst_port(), t.seq_number(), t.ack_number());
        let _ = (
            t.flags(),
            t.window_len(),
            t.checksum(),
            t.urgent_at(),
            t.options(),
        );
        assert_eq!(t.payload().len() + t.header_len(), b.len());
    }
    if let Ok(i) = IcmpPacket::new_checked(b) {
        let _ = (i.msg_type(), i.msg_code(), i.checksum(), i.echo_ident());
        let _ = (i.echo_seq_no(), i.verify_checksum(), i.data());
    }
}
