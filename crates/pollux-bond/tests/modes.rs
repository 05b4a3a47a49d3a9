//! balance-rr, active-backup, balance-xor and broadcast over `ring`
//! ports on a virtual clock. The peer ends are plain ring ports read by the
//! test: what arrives there is what the bond put on the wire. The test
//! drives the bond's control side (`service`, `link`) and its queue
//! handles (bursts) in turn.

mod common;

use common::*;
use pollux_bond::{BondConfig, BondError, BondPort, LinkState};
use pollux_core::{Burst, Mbuf, Port};

fn udp_only(v: Vec<Mbuf>) -> Vec<Mbuf> {
    v.into_iter()
        .filter(|m| m.data()[12..14] == [0x08, 0x00])
        .collect()
}

fn seqs(v: &[Mbuf]) -> Vec<u32> {
    v.iter().map(seq_of).collect()
}

#[test]
fn balance_rr_rotates_strictly_and_keeps_order_per_member() {
    let (mut bond, mut bed) = make_bond(3, &[("mode", "balance-rr")]);
    let frames = (0..300).map(|i| udp(&bed.pool, 9, 9, i)).collect();
    send_all(&mut bond, frames);
    for (k, p) in bed.peers.iter_mut().enumerate() {
        let got = udp_only(drain(p));
        let want: Vec<u32> = (0..300).filter(|i| i % 3 == k as u32).collect();
        assert_eq!(seqs(&got), want, "member {k}");
    }
    // The rotation carries over from one burst to the next.
    send_all(&mut bond, vec![udp(&bed.pool, 9, 9, 1000)]);
    send_all(&mut bond, vec![udp(&bed.pool, 9, 9, 1001)]);
    assert_eq!(seqs(&udp_only(drain(&mut bed.peers[0]))), [1000]);
    assert_eq!(seqs(&udp_only(drain(&mut bed.peers[1]))), [1001]);
}

#[test]
fn balance_rr_fails_over_after_downdelay_and_recovers_after_updelay() {
    let (mut bond, mut bed) = make_bond(
        2,
        &[
            ("mode", "0"),
            ("miimon", "100"),
            ("downdelay", "200"),
            ("updelay", "300"),
        ],
    );
    // As on Linux, updelay applies to links that are up at start too.
    assert_eq!(bond.core().member_link(0), LinkState::Back);
    assert!(!bond.link().up);
    bed.clock.advance(ms(300));
    assert!(bond.link().up);
    bed.wires[1].set_up(false);
    // During downdelay the member is still used: its frames are lost
    // (the ring counts them as oerrors).
    bed.clock.advance(ms(100));
    bond.service();
    send_all(
        &mut bond,
        (0..10).map(|i| udp(&bed.pool, 9, 9, i)).collect(),
    );
    assert_eq!(bond.core().member_link(1), LinkState::Fail);
    assert_eq!(udp_only(drain(&mut bed.peers[0])).len(), 5);
    assert_eq!(bond.member(0).unwrap().stats().opackets, 5);
    bed.clock.advance(ms(200));
    bond.service();
    assert_eq!(bond.core().member_link(1), LinkState::Down);
    send_all(
        &mut bond,
        (0..10).map(|i| udp(&bed.pool, 9, 9, i)).collect(),
    );
    assert_eq!(
        seqs(&udp_only(drain(&mut bed.peers[0]))),
        (0..10).collect::<Vec<_>>()
    );
    // Back up: not used until updelay has passed.
    bed.wires[1].set_up(true);
    bed.clock.advance(ms(100));
    bond.service();
    assert_eq!(bond.core().member_link(1), LinkState::Back);
    send_all(&mut bond, (0..4).map(|i| udp(&bed.pool, 9, 9, i)).collect());
    assert_eq!(udp_only(drain(&mut bed.peers[0])).len(), 4);
    bed.clock.advance(ms(300));
    bond.service();
    assert_eq!(bond.core().member_link(1), LinkState::Up);
    send_all(&mut bond, (0..4).map(|i| udp(&bed.pool, 9, 9, i)).collect());
    assert_eq!(udp_only(drain(&mut bed.peers[0])).len(), 2);
    assert_eq!(udp_only(drain(&mut bed.peers[1])).len(), 2);
    assert_eq!(bond.status().members[1].link_failure_count, 1);
}

#[test]
fn min_links_holds_the_bond_down_and_leaves_packets_with_the_caller() {
    let (mut bond, mut bed) = make_bond(2, &[("mode", "balance-xor"), ("min_links", "2")]);
    assert!(bond.link().up);
    bed.wires[0].set_up(false);
    bed.clock.advance(ms(100));
    assert!(!bond.link().up, "one link left, two required");
    let mut b = Burst::new(4);
    b.push(udp(&bed.pool, 9, 9, 1)).unwrap();
    assert_eq!(bond.tx(&mut b), 0);
    assert_eq!(b.len(), 1, "unsent packets stay with the caller");
    assert_eq!(bond.shell_counters().tx_no_member, 1);
    assert!(udp_only(drain(&mut bed.peers[1])).is_empty());
    bed.wires[0].set_up(true);
    bed.clock.advance(ms(100));
    assert!(bond.link().up);
    assert_eq!(bond.tx(&mut b), 1);
    assert!(!bond
        .status()
        .to_string()
        .contains("MII Status: down\nMII Polling"));
}

#[test]
fn active_backup_sends_on_one_member_and_fails_over_with_an_announcement() {
    let (mut bond, mut bed) = make_bond(
        2,
        &[
            ("mode", "active-backup"),
            ("announce_ip", "169.254.7.1"),
            ("num_grat_arp", "2"),
        ],
    );
    let bond_mac = bond.mac_addr();
    assert_eq!(
        bond_mac,
        bond.member(0).unwrap().mac_addr(),
        "bond takes the first member's MAC"
    );
    assert_eq!(
        bond.member(1).unwrap().mac_addr(),
        bond_mac,
        "fail_over_mac=none: all share it"
    );
    assert_eq!(bond.core().active(), Some(0));
    send_all(
        &mut bond,
        (0..20).map(|i| udp(&bed.pool, 9, 9, i)).collect(),
    );
    assert_eq!(udp_only(drain(&mut bed.peers[0])).len(), 20);
    assert!(udp_only(drain(&mut bed.peers[1])).is_empty());
    // Frames arriving on the backup are not delivered.
    send_all(&mut bed.peers[1], vec![udp(&bed.pool, 1, 1, 77)]);
    assert!(drain(&mut bond).is_empty());
    assert_eq!(bond.shell_counters().rx_dropped_inactive, 1);

    bed.wires[0].set_up(false);
    bed.clock.advance(ms(100));
    bond.service();
    assert_eq!(bond.core().active(), Some(1));
    let st = bond.status().to_string();
    assert!(st.contains("Currently Active Slave: a1"), "{st}");
    // Gratuitous ARP for the configured address, from the bond's MAC, on
    // the new active member; the second one a miimon later.
    let arp = |v: Vec<Mbuf>| -> Vec<Mbuf> {
        v.into_iter()
            .filter(|m| m.data()[12..14] == [8, 6])
            .collect()
    };
    let first = arp(drain(&mut bed.peers[1]));
    assert_eq!(first.len(), 1);
    assert_eq!(src_mac(&first[0]), bond_mac);
    assert_eq!(&first[0].data()[28..32], &[169, 254, 7, 1]);
    assert_eq!(&first[0].data()[38..42], &[169, 254, 7, 1]);
    bed.clock.advance(ms(100));
    bond.service();
    assert_eq!(arp(drain(&mut bed.peers[1])).len(), 1);
    bed.clock.advance(ms(500));
    bond.service();
    assert!(arp(drain(&mut bed.peers[1])).is_empty(), "num_grat_arp=2");

    send_all(
        &mut bond,
        (0..20).map(|i| udp(&bed.pool, 9, 9, i)).collect(),
    );
    assert_eq!(
        seqs(&udp_only(drain(&mut bed.peers[1]))),
        (0..20).collect::<Vec<_>>()
    );
    send_all(&mut bed.peers[1], vec![udp(&bed.pool, 1, 1, 78)]);
    assert_eq!(seqs(&drain(&mut bond)), [78]);

    // Without a primary there is no failback: Linux 6.12 stays on the
    // member that took over (seen in the lab against Linux bonding).
    bed.wires[0].set_up(true);
    bed.clock.advance(ms(100));
    bond.service();
    assert_eq!(bond.core().member_link(0), LinkState::Up);
    assert_eq!(bond.core().active(), Some(1));
    assert_eq!(bond.core().counters().active_changes, 1);
    // Until the new active member fails in turn.
    bed.wires[1].set_up(false);
    bed.clock.advance(ms(100));
    bond.service();
    assert_eq!(bond.core().active(), Some(0));
}

#[test]
fn active_backup_without_an_ip_announces_with_rarp() {
    let (mut bond, mut bed) = make_bond(2, &[("mode", "active-backup")]);
    drain(&mut bed.peers[0]);
    bed.wires[0].set_up(false);
    bed.clock.advance(ms(100));
    bond.service();
    let got = drain(&mut bed.peers[1]);
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].data()[12..14], &[0x80, 0x35]);
    assert_eq!(&got[0].data()[0..6], &[0xff; 6]);
    assert_eq!(src_mac(&got[0]), bond.mac_addr());
}

#[test]
fn primary_and_primary_reselect() {
    // primary=a1: active from the start; reselect=failure keeps a0 after
    // a1 failed and came back.
    let (mut bond, bed) = make_bond(
        2,
        &[
            ("mode", "active-backup"),
            ("primary", "a1"),
            ("primary_reselect", "failure"),
        ],
    );
    assert_eq!(bond.core().active(), Some(1));
    bed.wires[1].set_up(false);
    bed.clock.advance(ms(100));
    bond.service();
    assert_eq!(bond.core().active(), Some(0));
    bed.wires[1].set_up(true);
    bed.clock.advance(ms(100));
    bond.service();
    assert_eq!(
        bond.core().active(),
        Some(0),
        "failure: stay until the active fails"
    );
    let st = bond.status().to_string();
    assert!(
        st.contains("Primary Slave: a1 (primary_reselect failure)"),
        "{st}"
    );

    let (mut bond, bed) = make_bond(2, &[("mode", "active-backup"), ("primary", "a1")]);
    bed.wires[1].set_up(false);
    bed.clock.advance(ms(100));
    bond.service();
    assert_eq!(bond.core().active(), Some(0));
    bed.wires[1].set_up(true);
    bed.clock.advance(ms(100));
    bond.service();
    assert_eq!(
        bond.core().active(),
        Some(1),
        "always: the primary takes over again"
    );
}

#[test]
fn fail_over_mac_active_and_follow() {
    let (mut bond, bed) = make_bond(2, &[("mode", "active-backup"), ("fail_over_mac", "active")]);
    let (m0, m1) = (
        bond.member(0).unwrap().mac_addr(),
        bond.member(1).unwrap().mac_addr(),
    );
    assert_ne!(m0, m1, "members keep their own MACs");
    assert_eq!(bond.mac_addr(), m0);
    bed.wires[0].set_up(false);
    bed.clock.advance(ms(100));
    bond.service();
    assert_eq!(
        bond.mac_addr(),
        m1,
        "the bond's MAC follows the active member"
    );
    assert_eq!(bond.member(0).unwrap().mac_addr(), m0);

    let (mut bond, bed) = make_bond(2, &[("mode", "active-backup"), ("fail_over_mac", "follow")]);
    let (m0, m1) = (
        bond.member(0).unwrap().mac_addr(),
        bond.member(1).unwrap().mac_addr(),
    );
    let bm = bond.mac_addr();
    assert_eq!(bm, m0);
    bed.wires[0].set_up(false);
    bed.clock.advance(ms(100));
    bond.service();
    assert_eq!(bond.mac_addr(), bm, "the bond keeps its MAC");
    assert_eq!(
        bond.member(1).unwrap().mac_addr(),
        bm,
        "the new active member gets it"
    );
    assert_eq!(
        bond.member(0).unwrap().mac_addr(),
        m1,
        "the old one gets the new one's"
    );
    assert!(bond.status().to_string().contains("(fail_over_mac follow)"));
}

/// bonding.rst's layer3+4 formula for a UDP/IPv4 frame, written out from
/// the documentation (the port and address words loaded as a little-endian
/// host loads them), independently of the crate's dissector.
fn documented_layer34(sport: u16, dport: u16, sip: [u8; 4], dip: [u8; 4]) -> u32 {
    let [s1, s0] = sport.to_be_bytes();
    let [d1, d0] = dport.to_be_bytes();
    let mut h = u32::from_le_bytes([s1, s0, d1, d0]);
    h ^= u32::from_le_bytes(sip) ^ u32::from_le_bytes(dip);
    h ^= h >> 16;
    h ^= h >> 8;
    h >> 1
}

#[test]
fn balance_xor_layer34_puts_each_flow_where_the_documented_formula_says() {
    for members in [2usize, 3, 4] {
        let (mut bond, mut bed) = make_bond(
            members,
            &[("mode", "balance-xor"), ("xmit_hash_policy", "layer3+4")],
        );
        let mut frames = Vec::new();
        for round in 0..4u32 {
            for flow in 0..64u16 {
                frames.push(udp(
                    &bed.pool,
                    1024 + flow * 7,
                    80 + flow % 3,
                    round * 1000 + flow as u32,
                ));
            }
        }
        send_all(&mut bond, frames);
        let mut seen = 0;
        for (k, p) in bed.peers.iter_mut().enumerate() {
            let got = udp_only(drain(p));
            seen += got.len();
            let mut last: std::collections::HashMap<u16, u32> = Default::default();
            for m in &got {
                let (sp, dp) = (
                    src_port_of(m),
                    u16::from_be_bytes([m.data()[36], m.data()[37]]),
                );
                let want =
                    documented_layer34(sp, dp, [198, 18, 0, 1], [198, 18, 0, 2]) as usize % members;
                assert_eq!(want, k, "flow {sp}->{dp} with {members} members");
                let s = seq_of(m);
                if let Some(prev) = last.insert(sp, s) {
                    assert!(s > prev, "flow {sp} out of order");
                }
            }
        }
        assert_eq!(seen, 256);
    }
}

#[test]
fn balance_xor_moves_flows_off_a_failed_member() {
    let (mut bond, mut bed) = make_bond(
        2,
        &[("mode", "balance-xor"), ("xmit_hash_policy", "layer3+4")],
    );
    bed.wires[1].set_up(false);
    bed.clock.advance(ms(100));
    bond.service();
    send_all(
        &mut bond,
        (0..50)
            .map(|i| udp(&bed.pool, 2000 + i as u16, 80, i))
            .collect(),
    );
    assert_eq!(udp_only(drain(&mut bed.peers[0])).len(), 50);
    assert_eq!(
        bond.member(1).unwrap().stats().oerrors,
        0,
        "nothing sent to the down member"
    );
}

#[test]
fn broadcast_sends_every_frame_on_every_member() {
    let (mut bond, mut bed) = make_bond(3, &[("mode", "broadcast")]);
    send_all(
        &mut bond,
        (0..40).map(|i| udp(&bed.pool, 9, 9, i)).collect(),
    );
    for p in &mut bed.peers {
        assert_eq!(seqs(&udp_only(drain(p))), (0..40).collect::<Vec<_>>());
    }
    bed.wires[2].set_up(false);
    bed.clock.advance(ms(100));
    bond.service();
    send_all(&mut bond, (0..5).map(|i| udp(&bed.pool, 9, 9, i)).collect());
    assert_eq!(udp_only(drain(&mut bed.peers[0])).len(), 5);
    assert_eq!(udp_only(drain(&mut bed.peers[1])).len(), 5);
    assert_eq!(bond.member(2).unwrap().stats().oerrors, 0);
    assert_eq!(bed.pool.available(), 8192, "copies and originals all freed");
}

#[test]
fn receive_from_all_members_in_load_balancing_modes() {
    let (mut bond, mut bed) = make_bond(2, &[("mode", "balance-xor")]);
    send_all(
        &mut bed.peers[0],
        (0..10).map(|i| udp(&bed.pool, 1, 1, i)).collect(),
    );
    send_all(
        &mut bed.peers[1],
        (10..20).map(|i| udp(&bed.pool, 1, 1, i)).collect(),
    );
    let mut got = seqs(&drain(&mut bond));
    got.sort();
    assert_eq!(got, (0..20).collect::<Vec<_>>());
}

#[test]
fn members_are_matched_to_the_configured_names() {
    // Two members, configured names in another order than supplied.
    let pool = pool(64);
    let (mine, _peers, _w) = pairs(2, &pool);
    let mut mine: Vec<(String, Box<dyn Port>)> = mine.into_iter().rev().collect();
    let cfg =
        BondConfig::from_args(&args(&[("mode", "1"), ("member", "a0"), ("member", "a1")])).unwrap();
    let b = BondPort::new("bond0", cfg.clone(), std::mem::take(&mut mine)).unwrap();
    assert_eq!(b.status().members[0].name, "a0", "configuration order wins");
    let (mine, _p, _w) = pairs(1, &pool);
    let e = BondPort::new("bond0", cfg, mine).unwrap_err();
    assert!(
        matches!(e, BondError::MissingMember(ref n) if n == "a1"),
        "{e}"
    );
    let (mine, _p, _w) = pairs(3, &pool);
    let cfg = BondConfig::from_args(&args(&[("member", "a0"), ("member", "a1")])).unwrap();
    assert!(matches!(
        BondPort::new("b", cfg, mine),
        Err(BondError::UnexpectedMember(_))
    ));
    let cfg = BondConfig::from_args(&args(&[("mode", "1")])).unwrap();
    assert!(matches!(
        BondPort::new("b", cfg, Vec::new()),
        Err(BondError::NoMembers)
    ));
}
