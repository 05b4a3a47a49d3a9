//! balance-tlb and balance-alb on ring ports and a manual clock:
//! distribution by load, rebalancing, failover with the MAC swap and
//! learning packets, ARP replies with per-peer MACs, ARP updates after a
//! member fails.

mod common;

use common::*;
use pollux_bond::alb::NO_MEMBER;
use pollux_bond::hash::xmit_hash;
use pollux_bond::wire::untagged_arp;
use pollux_bond::XmitHashPolicy;
use pollux_core::net::{udp_frame, UdpFrameSpec};
use pollux_core::wire::ArpOp;
use pollux_core::{MacAddr, Mbuf, Mempool, Port};

const ETHERTYPE_LOOPBACK: [u8; 2] = [0x90, 0x00];

fn ethertype(m: &Mbuf) -> [u8; 2] {
    [m.data()[12], m.data()[13]]
}

fn udp_only(v: Vec<Mbuf>) -> Vec<Mbuf> {
    v.into_iter().filter(|m| ethertype(m) == [8, 0]).collect()
}

fn learning(v: &[Mbuf]) -> Vec<MacAddr> {
    v.iter()
        .filter(|m| ethertype(m) == ETHERTYPE_LOOPBACK)
        .map(|m| {
            assert_eq!(m.data()[0..6], m.data()[6..12], "dst = src");
            src_mac(m)
        })
        .collect()
}

fn arp_replies(v: &[Mbuf]) -> Vec<(MacAddr, [u8; 4], MacAddr, [u8; 4])> {
    v.iter()
        .filter_map(|m| untagged_arp(m.data()))
        .filter(|(_, a)| a.op() == ArpOp::Reply)
        .map(|(e, a)| {
            assert_eq!(e.src_addr(), a.sha(), "Ethernet source = sender MAC");
            (a.sha(), a.spa().octets(), a.tha(), a.tpa().octets())
        })
        .collect()
}

/// A UDP frame of flow `port` to `dst_ip`, `len` bytes long.
fn flow(pool: &Mempool, port: u16, len: usize) -> Mbuf {
    let mut m = pool.alloc().expect("pool empty");
    assert!(m.set_len(len));
    let spec = UdpFrameSpec {
        src_port: port,
        dst_port: 80,
        ..UdpFrameSpec::default()
    };
    assert!(udp_frame(m.data_mut(), &spec));
    m
}

fn bucket(port: u16) -> usize {
    let pool = pool(4);
    let m = flow(&pool, port, 64);
    (xmit_hash(XmitHashPolicy::Layer34, m.data(), None) & 0xff) as usize
}

/// An ARP request from `ip`/`mac` for `target`, broadcast.
fn arp_request(pool: &Mempool, mac: MacAddr, ip: [u8; 4], target: [u8; 4]) -> Mbuf {
    let mut m = pool.alloc().unwrap();
    assert!(m.set_len(60));
    let d = m.data_mut();
    d.fill(0);
    d[0..6].copy_from_slice(&[0xff; 6]);
    d[6..12].copy_from_slice(&mac.0);
    d[12..14].copy_from_slice(&[0x08, 0x06]);
    d[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    d[22..28].copy_from_slice(&mac.0);
    d[28..32].copy_from_slice(&ip);
    d[38..42].copy_from_slice(&target);
    m
}

fn peer_mac(i: u8) -> MacAddr {
    MacAddr([0x02, 0xee, 0, 0, 0, i])
}

fn peer_ip(i: u8) -> [u8; 4] {
    [169, 254, 1, i]
}

const BOND_IP: [u8; 4] = [169, 254, 0, 1];

fn mac_of(bond: &Bonded, i: usize) -> MacAddr {
    bond.member(i).unwrap().mac_addr()
}

#[test]
fn tlb_spreads_flows_by_the_table_and_rewrites_the_source_on_other_members() {
    let (mut bond, mut bed) = make_bond(
        2,
        &[("mode", "balance-tlb"), ("xmit_hash_policy", "layer3+4")],
    );
    let st = bond.status();
    assert_eq!(st.active_member.as_deref(), Some("a0"));
    assert_eq!(
        st.alb.as_ref().unwrap().tlb_rebalances,
        1,
        "first rebalance at start"
    );
    let table = *bond.core().tlb_table().unwrap();
    assert!(table.iter().all(|&m| m != NO_MEMBER));
    let on1 = table.iter().filter(|&&m| m == 1).count();
    assert_eq!(on1, 128, "idle buckets spread evenly");
    let (m0, m1) = (mac_of(&bond, 0), mac_of(&bond, 1));
    assert_eq!(
        m0,
        bond.mac_addr(),
        "the active member carries the bond's MAC"
    );
    assert_ne!(m1, m0, "the others keep their own");
    send_all(
        &mut bond,
        (0..64).map(|p| flow(&bed.pool, 3000 + p, 64)).collect(),
    );
    let got: Vec<Vec<Mbuf>> = bed.peers.iter_mut().map(|p| udp_only(drain(p))).collect();
    assert_eq!(got[0].len() + got[1].len(), 64);
    assert!(!got[0].is_empty() && !got[1].is_empty());
    for (member, frames) in got.iter().enumerate() {
        for m in frames {
            let b = bucket(src_port_of(m));
            assert_eq!(
                table[b] as usize,
                member,
                "flow {} on its bucket's member",
                src_port_of(m)
            );
        }
    }
    // On the active member the application's source stays; on the other
    // the member's MAC is written (bond_do_alb_xmit()).
    assert!(got[0]
        .iter()
        .all(|m| src_mac(m) == MacAddr([2, 0, 0, 0, 0, 1])));
    assert!(got[1].iter().all(|m| src_mac(m) == m1));
    // Broadcast and non-IP leave on the active member.
    let mut arp = arp_request(&bed.pool, m0, BOND_IP, peer_ip(1));
    arp.data_mut()[0..6].copy_from_slice(&[0xff; 6]);
    send_all(&mut bond, vec![arp]);
    assert_eq!(drain(&mut bed.peers[0]).len(), 1);
    assert!(drain(&mut bed.peers[1]).is_empty());
}

#[test]
fn tlb_rebalances_heavy_flows_apart_every_ten_seconds() {
    let (mut bond, mut bed) = make_bond(
        2,
        &[("mode", "balance-tlb"), ("xmit_hash_policy", "layer3+4")],
    );
    let table = *bond.core().tlb_table().unwrap();
    // Two flows whose buckets are on the same member now.
    let mut same = None;
    'outer: for a in 4000..4100u16 {
        for b in a + 1..4100 {
            let (ba, bb) = (bucket(a), bucket(b));
            if ba != bb && table[ba] == table[bb] {
                same = Some((a, b));
                break 'outer;
            }
        }
    }
    let (a, b) = same.expect("two flows on one member");
    // 10.2 s of 1500-byte frames on both: they are the heavy buckets.
    for _ in 0..34 {
        send_all(
            &mut bond,
            (0..20)
                .flat_map(|_| [flow(&bed.pool, a, 1500), flow(&bed.pool, b, 1500)])
                .collect(),
        );
        for p in &mut bed.peers {
            drain(p);
        }
        bed.clock.advance(ms(300));
        bond.service();
    }
    let st = bond.status();
    let alb = st.alb.as_ref().unwrap();
    assert_eq!(alb.tlb_rebalances, 2, "one more rebalance after 10 s");
    let table = *bond.core().tlb_table().unwrap();
    assert_ne!(
        table[bucket(a)],
        table[bucket(b)],
        "the two heavy flows are on different members after the rebalance"
    );
    let l = &alb.tlb_load_bytes_per_s;
    let (hi, lo) = (l[0].max(l[1]), l[0].min(l[1]));
    assert!(hi - lo <= hi / 10, "loads balanced within 10%: {l:?}");
    // And frames follow the new table.
    send_all(
        &mut bond,
        vec![flow(&bed.pool, a, 64), flow(&bed.pool, b, 64)],
    );
    let n0 = udp_only(drain(&mut bed.peers[0])).len();
    let n1 = udp_only(drain(&mut bed.peers[1])).len();
    assert_eq!((n0, n1), (1, 1));
}

#[test]
fn tlb_failover_swaps_the_macs_and_sends_learning_packets() {
    let (mut bond, mut bed) = make_bond(2, &[("mode", "balance-tlb")]);
    let bond_mac = bond.mac_addr();
    let (m0, m1) = (mac_of(&bond, 0), mac_of(&bond, 1));
    assert_eq!(learning(&drain(&mut bed.peers[0])), [bond_mac], "at start");
    // Learning packets every lp_interval (1 s) from every member, each
    // with its own MAC.
    run(&bed.clock, &mut [&mut bond], ms(1000), ms(100));
    assert_eq!(learning(&drain(&mut bed.peers[0])), [m0]);
    assert_eq!(learning(&drain(&mut bed.peers[1])), [m1]);
    // The active member fails: member 1 takes over with the bond's MAC.
    bed.wires[0].set_up(false);
    bed.clock.advance(ms(100));
    bond.service();
    let st = bond.status();
    assert_eq!(st.active_member.as_deref(), Some("a1"));
    assert_eq!(mac_of(&bond, 1), bond_mac, "the bond's MAC moved");
    assert_eq!(mac_of(&bond, 0), m1, "and the failed member got the other");
    assert_eq!(bond.mac_addr(), bond_mac);
    let seen = drain(&mut bed.peers[1]);
    assert_eq!(
        learning(&seen),
        [bond_mac],
        "switches relearn the bond's MAC"
    );
    assert!(
        drain(&mut bed.peers[0]).is_empty(),
        "nothing on the dead link"
    );
    // Its flows moved: everything on member 1, with the bond's MAC.
    send_all(
        &mut bond,
        (0..32).map(|p| flow(&bed.pool, 5000 + p, 64)).collect(),
    );
    let got = udp_only(drain(&mut bed.peers[1]));
    assert_eq!(got.len(), 32);
    assert!(bond.core().tlb_table().unwrap().iter().all(|&m| m == 1));
    // It comes back: buckets spread again at once (a rebalance is due);
    // the bond's MAC stays where it is (no primary).
    bed.wires[0].set_up(true);
    bed.clock.advance(ms(100));
    bond.service();
    assert_eq!(bond.status().active_member.as_deref(), Some("a1"));
    let on0 = bond
        .core()
        .tlb_table()
        .unwrap()
        .iter()
        .filter(|&&m| m == 0)
        .count();
    assert!(on0 >= 100, "{on0} buckets back on member 0");
}

#[test]
fn tlb_dynamic_lb_0_spreads_by_the_xmit_hash() {
    let (mut bond, mut bed) = make_bond(
        2,
        &[
            ("mode", "balance-tlb"),
            ("tlb_dynamic_lb", "0"),
            ("xmit_hash_policy", "layer3+4"),
        ],
    );
    let frames: Vec<Mbuf> = (0..64).map(|p| flow(&bed.pool, 6000 + p, 64)).collect();
    let want: Vec<usize> = frames
        .iter()
        .map(|m| (xmit_hash(XmitHashPolicy::Layer34, m.data(), None) % 2) as usize)
        .collect();
    send_all(&mut bond, frames);
    for (member, p) in bed.peers.iter_mut().enumerate() {
        let got = udp_only(drain(p));
        assert_eq!(got.len(), want.iter().filter(|&&w| w == member).count());
    }
}

#[test]
fn alb_answers_arp_with_a_members_mac_chosen_per_peer() {
    let (mut bond, mut bed) = make_bond(
        2,
        &[
            ("mode", "balance-alb"),
            ("ip", "169.254.0.1"),
            ("miimon", "10"),
        ],
    );
    let (m0, m1) = (mac_of(&bond, 0), mac_of(&bond, 1));
    for p in &mut bed.peers {
        drain(p);
    }
    // Four peers ask (through peer end 0, as a switch floods them).
    send_all(
        &mut bed.peers[0],
        (1..=4)
            .map(|i| arp_request(&bed.pool, peer_mac(i), peer_ip(i), BOND_IP))
            .collect(),
    );
    // An ARP request for another address and a truncated ARP frame go up
    // to the application as they are.
    let mut short = arp_request(&bed.pool, peer_mac(9), peer_ip(9), BOND_IP);
    assert!(short.set_len(30));
    send_all(
        &mut bed.peers[0],
        vec![
            arp_request(&bed.pool, peer_mac(8), peer_ip(8), [169, 254, 0, 77]),
            short,
        ],
    );
    let up = drain(&mut bond);
    assert_eq!(
        up.len(),
        2,
        "requests for the bond's address are the bond's"
    );
    bond.service();
    let r0 = arp_replies(&drain(&mut bed.peers[0]));
    let r1 = arp_replies(&drain(&mut bed.peers[1]));
    assert_eq!(r0.len(), 2);
    assert_eq!(r1.len(), 2);
    for (mac, ip, tmac, tip) in &r0 {
        assert_eq!((*mac, *ip), (m0, BOND_IP));
        assert!(*tip == peer_ip(1) || *tip == peer_ip(3));
        assert_eq!(*tmac, peer_mac(tip[3]));
    }
    for (mac, ip, _, tip) in &r1 {
        assert_eq!((*mac, *ip), (m1, BOND_IP));
        assert!(*tip == peer_ip(2) || *tip == peer_ip(4));
    }
    // Asking again gives the same answer. The copy of the broadcast that
    // reaches the other member is dropped there, as Linux drops an
    // inactive member's broadcasts; a unicast request to that member's
    // MAC is answered.
    send_all(
        &mut bed.peers[0],
        vec![arp_request(&bed.pool, peer_mac(2), peer_ip(2), BOND_IP)],
    );
    send_all(
        &mut bed.peers[1],
        vec![arp_request(&bed.pool, peer_mac(2), peer_ip(2), BOND_IP)],
    );
    let mut unicast = arp_request(&bed.pool, peer_mac(4), peer_ip(4), BOND_IP);
    unicast.data_mut()[0..6].copy_from_slice(&m1.0);
    send_all(&mut bed.peers[1], vec![unicast]);
    assert!(drain(&mut bond).is_empty());
    bond.service();
    let again = arp_replies(&drain(&mut bed.peers[1]));
    assert_eq!(again.len(), 2, "{again:?}");
    assert!(again.iter().all(|r| r.0 == m1));
    assert!(drain(&mut bed.peers[0]).is_empty());
    let st = bond.status();
    let clients = &st.alb.as_ref().unwrap().clients;
    assert_eq!(clients.len(), 4);
    assert_eq!(st.counters.arp_replies, 6);
    assert_eq!(st.counters.arp_rx_invalid, 0);
    assert_eq!(bond.shell_counters().rx_dropped_inactive, 1);
}

#[test]
fn alb_spreads_by_the_destination_address_hash() {
    let (mut bond, mut bed) = make_bond(2, &[("mode", "balance-alb"), ("ip", "169.254.0.1")]);
    let table = *bond.core().tlb_table().unwrap();
    let m1 = mac_of(&bond, 1);
    let frames: Vec<Mbuf> = (1..=40u8)
        .map(|i| {
            let mut m = bed.pool.alloc().unwrap();
            assert!(m.set_len(64));
            let spec = UdpFrameSpec {
                dst_ip: [10, 0, 0, i],
                ..UdpFrameSpec::default()
            };
            assert!(udp_frame(m.data_mut(), &spec));
            m
        })
        .collect();
    send_all(&mut bond, frames);
    let mut n = 0;
    for (member, p) in bed.peers.iter_mut().enumerate() {
        for m in udp_only(drain(p)) {
            let dst = [m.data()[30], m.data()[31], m.data()[32], m.data()[33]];
            // _simple_hash() of the destination address is the bucket.
            let b = pollux_bond::alb::simple_hash(&dst) as usize;
            assert_eq!(table[b] as usize, member, "{dst:?}");
            if member == 1 {
                assert_eq!(src_mac(&m), m1);
            }
            n += 1;
        }
    }
    assert_eq!(n, 40);
    // IPv4 broadcast leaves on the active member.
    let mut m = bed.pool.alloc().unwrap();
    assert!(m.set_len(64));
    let spec = UdpFrameSpec {
        dst_ip: [255, 255, 255, 255],
        dst_mac: MacAddr([2, 0, 0, 0, 0, 9]),
        ..UdpFrameSpec::default()
    };
    assert!(udp_frame(m.data_mut(), &spec));
    let b = pollux_bond::alb::simple_hash(&[255; 4]) as usize;
    send_all(&mut bond, vec![m]);
    assert_eq!(
        udp_only(drain(&mut bed.peers[0])).len(),
        1,
        "bucket {b} ignored"
    );
    assert!(drain(&mut bed.peers[1]).is_empty());
}

#[test]
fn tlb_receives_on_the_active_member_only() {
    let (mut bond, mut bed) = make_bond(2, &[("mode", "balance-tlb")]);
    send_all(
        &mut bed.peers[0],
        (0..5).map(|i| udp(&bed.pool, 1, 1, i)).collect(),
    );
    send_all(
        &mut bed.peers[1],
        (5..9).map(|i| udp(&bed.pool, 1, 1, i)).collect(),
    );
    let got: Vec<u32> = drain(&mut bond).iter().map(seq_of).collect();
    assert_eq!(got, [0, 1, 2, 3, 4]);
    assert_eq!(bond.shell_counters().rx_dropped_inactive, 4);
    // After failover the other member receives.
    bed.wires[0].set_up(false);
    bed.clock.advance(ms(100));
    bond.service();
    send_all(
        &mut bed.peers[1],
        (9..12).map(|i| udp(&bed.pool, 1, 1, i)).collect(),
    );
    let got: Vec<u32> = drain(&mut bond).iter().map(seq_of).collect();
    assert_eq!(got, [9, 10, 11]);
}

#[test]
fn alb_tells_a_failed_members_peers_the_new_mac() {
    let (mut bond, mut bed) = make_bond(
        3,
        &[
            ("mode", "balance-alb"),
            ("ip", "169.254.0.1"),
            ("miimon", "10"),
        ],
    );
    let macs: Vec<MacAddr> = (0..3).map(|i| mac_of(&bond, i)).collect();
    send_all(
        &mut bed.peers[0],
        (1..=6)
            .map(|i| arp_request(&bed.pool, peer_mac(i), peer_ip(i), BOND_IP))
            .collect(),
    );
    drain(&mut bond);
    bond.service();
    for p in &mut bed.peers {
        drain(p);
    }
    // Member 2 (not the active one) fails: its two peers move to the
    // others and are told at once, twice each (RLB_ARP_BURST_SIZE).
    bed.wires[2].set_up(false);
    bed.clock.advance(ms(10));
    bond.service();
    let st = bond.status();
    let clients = st.alb.as_ref().unwrap().clients.clone();
    assert!(clients.iter().all(|c| c.member != 2));
    let mut told = Vec::new();
    let mut taught = Vec::new();
    for (i, p) in bed.peers.iter_mut().enumerate().take(2) {
        let got = drain(p);
        taught.extend(learning(&got));
        for (mac, ip, tmac, tip) in arp_replies(&got) {
            assert_eq!(mac, macs[i], "an update carries its member's MAC");
            assert_eq!(ip, BOND_IP);
            assert_eq!(tmac, peer_mac(tip[3]), "sent to the peer");
            told.push(tip);
        }
    }
    told.sort();
    assert_eq!(told.len(), 4, "two peers, two replies each: {told:?}");
    assert_eq!(told[0], told[1]);
    assert_eq!(told[2], told[3]);
    // The active member was taught the failed member's MAC and listens
    // for it (rlb_teach_disabled_mac_on_primary()).
    assert_eq!(taught, [macs[2]]);
    assert_eq!(bond.core().alb_promiscuous(), Some(0));
    // Repeated at the next three 100 ms ticks (RLB_UPDATE_RETRY), then no more.
    let mut rounds = 0;
    for _ in 0..6 {
        bed.clock.advance(ms(100));
        bond.service();
        let n: usize = bed
            .peers
            .iter_mut()
            .map(|p| arp_replies(&drain(p)).len())
            .sum();
        if n > 0 {
            assert_eq!(n, 4);
            rounds += 1;
        }
    }
    assert_eq!(rounds, 3);
    // Promiscuous mode ends after RLB_PROMISC_TIMEOUT (10 s).
    run(&bed.clock, &mut [&mut bond], ms(10_000), ms(500));
    assert_eq!(bond.core().alb_promiscuous(), None);
}

#[test]
fn alb_failover_of_the_active_member_swaps_macs_and_updates_peers() {
    let (mut bond, mut bed) = make_bond(
        2,
        &[
            ("mode", "balance-alb"),
            ("ip", "169.254.0.1"),
            ("miimon", "10"),
        ],
    );
    let bond_mac = bond.mac_addr();
    let m1 = mac_of(&bond, 1);
    send_all(
        &mut bed.peers[0],
        (1..=4)
            .map(|i| arp_request(&bed.pool, peer_mac(i), peer_ip(i), BOND_IP))
            .collect(),
    );
    drain(&mut bond);
    bond.service();
    for p in &mut bed.peers {
        drain(p);
    }
    bed.wires[0].set_up(false);
    bed.clock.advance(ms(10));
    bond.service();
    assert_eq!(bond.status().active_member.as_deref(), Some("a1"));
    assert_eq!(mac_of(&bond, 1), bond_mac);
    assert_eq!(mac_of(&bond, 0), m1);
    let got = drain(&mut bed.peers[1]);
    // Learning packets: the bond's MAC (now member 1's) and, taught on the
    // active member, the failed member's new MAC.
    let mut lp = learning(&got);
    lp.sort();
    let mut want = vec![bond_mac, m1];
    want.sort();
    assert_eq!(lp, want);
    // Every peer now points at member 1's MAC, the bond's.
    let mut told: Vec<[u8; 4]> = arp_replies(&got)
        .into_iter()
        .map(|(mac, _, _, tip)| {
            assert_eq!(mac, bond_mac);
            tip
        })
        .collect();
    told.sort();
    told.dedup();
    assert_eq!(told.len(), 4, "{told:?}");
    assert!(drain(&mut bed.peers[0]).is_empty());
}

#[test]
fn short_and_garbled_frames_pass_both_paths_without_panic() {
    for mode in ["balance-tlb", "balance-alb"] {
        let (mut bond, mut bed) = make_bond(2, &[("mode", mode), ("ip", "169.254.0.1")]);
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut frames = |pool: &Mempool| -> Vec<Mbuf> {
            let mut v = Vec::new();
            for len in 1..=70usize {
                for ethertype in [[8u8, 6], [8, 0], [0x86, 0xdd]] {
                    let mut m = pool.alloc().unwrap();
                    assert!(m.set_len(len));
                    for b in m.data_mut() {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        *b = x as u8;
                    }
                    let d = m.data_mut();
                    if len >= 14 {
                        d[0] &= 0xfe;
                        d[12..14].copy_from_slice(&ethertype);
                    }
                    if len >= 42 && ethertype == [8, 6] {
                        // An ARP request for the bond's address with a
                        // garbled body around it.
                        d[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
                        d[38..42].copy_from_slice(&BOND_IP);
                    }
                    v.push(m);
                }
            }
            v
        };
        let sent = frames(&bed.pool);
        let n = sent.len();
        send_all(&mut bed.peers[0], sent);
        let up = drain(&mut bond).len();
        bond.service();
        assert!(up <= n);
        let out = frames(&bed.pool);
        send_all(&mut bond, out);
        for p in &mut bed.peers {
            drain(p);
        }
        bed.clock.advance(ms(100));
        bond.service();
        let st = bond.status();
        assert_eq!(
            st.counters.arp_rx_invalid, 0,
            "{mode}: only valid requests go up"
        );
        if mode == "balance-alb" {
            assert_eq!(
                st.counters.arp_replies, 29,
                "one per request of 42 bytes or more"
            );
        }
    }
}
