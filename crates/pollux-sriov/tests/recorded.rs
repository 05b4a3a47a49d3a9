//! Decoding a reply the kernel really sent: the RTM_NEWLINK (and ACK) that
//! Linux 6.12's igb PF returned in the lab for `pollux vf show` after
//! `pollux vf set <pf> 0 mac 02:00:00:00:00:01 vlan 100 qos 3 spoofchk off
//! trust on` (recorded with POLLUX_NETLINK_RECORD by
//! crates/pollux-lab/tests/sriov.rs). iproute2 read the same state in that
//! run.

use netlink_packet_route::RouteNetlinkMessage;
use pollux_sriov::netlink::{decode_replies, parse_vfs, LinkState, VlanProto};

fn datagrams() -> Vec<Vec<u8>> {
    include_str!("fixtures/igb-newlink.hex")
        .lines()
        .map(|l| {
            (0..l.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&l[i..i + 2], 16).unwrap())
                .collect()
        })
        .collect()
}

#[test]
fn igb_reply_decodes_to_what_iproute2_showed() {
    let dgrams = datagrams();
    // The request's sequence number is in the reply header (bytes 8..12).
    let seq = u32::from_ne_bytes(dgrams[0][8..12].try_into().unwrap());
    let mut msgs = Vec::new();
    let mut done = false;
    for d in &dgrams {
        let (end, mut m) = decode_replies("recorded", seq, d).unwrap();
        msgs.append(&mut m);
        done |= end;
    }
    assert!(done, "the ACK ends the exchange");
    let link = msgs
        .iter()
        .find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(l),
            _ => None,
        })
        .expect("an RTM_NEWLINK");
    let vfs = parse_vfs(link).unwrap();
    assert_eq!(vfs.len(), 2, "{vfs:?}");
    let v0 = &vfs[0];
    assert_eq!(v0.index, 0);
    assert_eq!(v0.mac.to_string(), "02:00:00:00:00:01");
    assert_eq!(
        (v0.vlan.id, v0.vlan.qos, v0.vlan.proto),
        (100, 3, VlanProto::Dot1Q)
    );
    assert_eq!((v0.spoofchk, v0.trust), (Some(false), Some(true)));
    assert_eq!(v0.link_state, Some(LinkState::Auto));
    assert_eq!((v0.min_tx_rate, v0.max_tx_rate), (0, 0));
    let v1 = &vfs[1];
    assert_eq!(v1.index, 1);
    assert!(v1.mac.is_zero());
    assert_eq!(v1.vlan.id, 0);
    assert_eq!((v1.spoofchk, v1.trust), (Some(true), Some(false)));
}

#[test]
fn every_truncation_and_corruption_of_the_real_reply_is_handled() {
    let d = &datagrams()[0];
    let seq = u32::from_ne_bytes(d[8..12].try_into().unwrap());
    for cut in 0..d.len() {
        let _ = decode_replies("recorded", seq, &d[..cut]);
    }
    for i in 0..d.len() {
        for x in [0x01, 0x80, 0xff] {
            let mut b = d.clone();
            b[i] ^= x;
            if let Ok((_, msgs)) = decode_replies("recorded", seq, &b) {
                for m in msgs {
                    if let RouteNetlinkMessage::NewLink(l) = m {
                        let _ = parse_vfs(&l);
                    }
                }
            }
        }
    }
}
