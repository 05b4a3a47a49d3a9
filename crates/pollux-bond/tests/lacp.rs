//! 802.3ad: Pollux bonds negotiating with each other over `ring` wires on
//! a virtual clock. Each side is a complete bond; neither is scripted.
//! Every step of the loop reads each bond's rx queue (LACPDUs go up to its
//! control side) and runs its `service()` (LACP machines, LACPDUs out on
//! the members' control queues).

mod common;

use std::time::Duration;

use common::*;
use pollux_bond::lacp::{ChurnState, MuxState, RxState};
use pollux_bond::wire::{MarkerInfo, MarkerKind, MarkerPdu, FRAME_LEN};
use pollux_bond::{BondConfig, BondPort, ManualClock};
use pollux_core::{MacAddr, Mempool, Port};
use pollux_soft::ring::{ring_loopback, ring_pair, RingPort, Wire};

struct Pair {
    clock: ManualClock,
    pool: Mempool,
    a: Bonded,
    b: Bonded,
    wires: Vec<Wire>,
}

/// Two 802.3ad bonds joined by `n` wires, member i of A to member i of B.
fn pair(n: usize, a_kv: &[(&str, &str)], b_kv: &[(&str, &str)]) -> Pair {
    let pool = pool(16384);
    let clock = ManualClock::new();
    let mut am = Vec::new();
    let mut bm = Vec::new();
    let mut wires = Vec::new();
    for i in 0..n {
        let (a, b) = ring_pair(format!("a{i}"), format!("b{i}"), 4096).unwrap();
        wires.push(a.wire());
        am.push((format!("a{i}"), member(a)));
        bm.push((format!("b{i}"), member(b)));
    }
    let mk = |kv: &[(&str, &str)], m| {
        let mut all = vec![("mode", "802.3ad")];
        all.extend_from_slice(kv);
        let cfg = BondConfig::from_args(&args(&all)).unwrap();
        let b = BondPort::with_clock("bond0", cfg, m, Box::new(clock.clone())).unwrap();
        Bonded::start(b, &pool)
    };
    let a = mk(a_kv, am);
    let b = mk(b_kv, bm);
    Pair {
        clock,
        pool,
        a,
        b,
        wires,
    }
}

impl Pair {
    fn run(&mut self, total: Duration) {
        run(&self.clock, &mut [&mut self.a, &mut self.b], total, ms(10));
    }
}

fn distributing(b: &BondPort) -> Vec<usize> {
    b.core().tx_members().to_vec()
}

fn mux(b: &BondPort, i: usize) -> MuxState {
    b.core().lacp().unwrap().ports[i].mux
}

#[test]
fn two_bonds_aggregate_both_links_and_carry_traffic() {
    let mut p = pair(
        2,
        &[("lacp_rate", "fast"), ("xmit_hash_policy", "layer3+4")],
        &[("lacp_rate", "fast")],
    );
    assert!(
        distributing(&p.a).is_empty(),
        "nothing carries traffic before LACP agrees"
    );
    p.run(ms(5000));
    for (me, other) in [(&p.a, &p.b), (&p.b, &p.a)] {
        assert_eq!(distributing(me), [0, 1]);
        let st = me.status();
        let l = st.lacp.as_ref().unwrap();
        let agg = l.active_aggregator.as_ref().unwrap();
        assert_eq!(agg.ports, 2);
        assert_eq!(
            agg.partner_mac,
            other.mac_addr(),
            "partner is the other bond's system"
        );
        for m in &st.members {
            let ml = m.lacp.as_ref().unwrap();
            assert_eq!(
                ml.aggregator_id,
                Some(agg.id),
                "both ports in one aggregator"
            );
            // 0x3f: active, short timeout, aggregatable, in sync, collecting, distributing.
            assert_eq!(ml.actor.state.0, 0x3f);
            assert_eq!(ml.partner.state.0, 0x3f);
            assert_eq!(ml.actor_churn_state, ChurnState::None);
            assert_eq!(ml.partner_churn_state, ChurnState::None);
        }
        // 10 Gb/s full duplex ring ports: Linux's key 7 << 1 | 1.
        assert_eq!(agg.actor_key, 15);
        assert!(me.core().carrier());
    }
    assert!(p.a.link().up);
    assert_eq!(p.a.link().speed_mbps, 20_000);
    // Traffic from A spreads over both links by flow and all of it arrives at B.
    let frames = (0..200)
        .map(|i| udp(&p.pool, 1000 + (i % 50) as u16, 80, i))
        .collect();
    send_all(&mut p.a, frames);
    let got = drain(&mut p.b);
    let data: Vec<_> = got
        .into_iter()
        .filter(|m| m.data()[12..14] == [8, 0])
        .collect();
    assert_eq!(data.len(), 200);
    let via: Vec<u64> = (0..2)
        .map(|i| p.b.member(i).unwrap().stats().ipackets)
        .collect();
    assert!(via[0] > 20 && via[1] > 20, "both links used: {via:?}");
    // Per-flow order.
    let mut last = std::collections::HashMap::new();
    for m in &data {
        if let Some(prev) = last.insert(src_port_of(m), seq_of(m)) {
            assert!(seq_of(m) > prev);
        }
    }
    // The status reads like Linux's.
    let text = p.a.status().to_string();
    for want in [
        "Bonding Mode: IEEE 802.3ad Dynamic link aggregation",
        "Transmit Hash Policy: layer3+4 (1)",
        "MII Status: up",
        "LACP rate: fast",
        "Aggregator selection policy (ad_select): stable",
        "\tNumber of ports: 2",
        "Slave Interface: a1",
        "    port state: 63",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let json = serde_json::to_value(p.a.status()).unwrap();
    assert_eq!(json["mode"], "802.3ad");
    assert_eq!(json["members"][0]["lacp"]["actor"]["state"], 63);
}

#[test]
fn lacpdus_are_rate_limited_and_periodic() {
    let mut p = pair(1, &[("lacp_rate", "fast")], &[("lacp_rate", "slow")]);
    p.run(ms(10_000));
    let sa = p.a.status().members[0].lacp.as_ref().unwrap().stats;
    let sb = p.b.status().members[0].lacp.as_ref().unwrap().stats;
    // B was asked for fast LACPDUs (A's short timeout): about one a
    // second plus the handshake; A was asked for slow ones: the handshake
    // and then one per 30 s.
    assert!((10..=16).contains(&sb.lacpdu_tx), "B sent {}", sb.lacpdu_tx);
    assert!(sa.lacpdu_tx <= 8, "A sent {}", sa.lacpdu_tx);
    // Never more than three in any second.
    assert!(sa.lacpdu_tx <= 3 * 10 && sb.lacpdu_tx <= 3 * 10);
    assert_eq!(distributing(&p.a), [0]);
    assert_eq!(distributing(&p.b), [0]);
}

/// Runs until `cond` holds, returning the virtual time it took.
fn until(p: &mut Pair, max: Duration, mut cond: impl FnMut(&Pair) -> bool) -> Option<Duration> {
    let start = p.clock.elapsed();
    while p.clock.elapsed() - start < max {
        if cond(p) {
            return Some(p.clock.elapsed() - start);
        }
        p.run(ms(10));
    }
    None
}

/// Stops polling B (a hung partner: link up, no LACPDUs), returning when
/// B sent its last LACPDU relative to now.
fn silence_b(p: &mut Pair) -> Duration {
    let tx = |p: &Pair| {
        p.b.status().members[0]
            .lacp
            .as_ref()
            .unwrap()
            .stats
            .lacpdu_tx
    };
    // Run in 10 ms steps and remember when B last sent.
    let mut last_tx_at = p.clock.elapsed();
    let mut n = tx(p);
    for _ in 0..3100 {
        p.run(ms(10));
        if tx(p) != n {
            n = tx(p);
            last_tx_at = p.clock.elapsed();
        }
        // Stop right after a transmission, so the timeout is measured from it.
        if p.clock.elapsed() - last_tx_at == Duration::ZERO && p.clock.elapsed() > ms(6000) {
            break;
        }
    }
    p.clock.elapsed() - last_tx_at
}

fn a_only(p: &mut Pair, total: Duration) {
    run(&p.clock, &mut [&mut p.a], total, ms(10));
}

#[test]
fn partner_times_out_after_3_s_with_lacp_rate_fast() {
    let mut p = pair(1, &[("lacp_rate", "fast")], &[("lacp_rate", "fast")]);
    p.run(ms(5000));
    assert_eq!(distributing(&p.a), [0]);
    let since = silence_b(&mut p);
    assert_eq!(since, Duration::ZERO);
    // The partner's last LACPDU was read within 10 ms of being sent; its
    // information is current for Short_Timeout_Time (3 s).
    a_only(&mut p, ms(2950));
    assert_eq!(distributing(&p.a), [0], "still current before 3 s");
    a_only(&mut p, ms(100));
    assert!(distributing(&p.a).is_empty(), "expired at 3 s");
    let lp = &p.a.core().lacp().unwrap().ports[0];
    assert_eq!(lp.rx, RxState::Expired);
    assert!(lp.actor.state.expired());
    assert!(!p.a.link().up);
    // Another short timeout in EXPIRED and the partner is defaulted.
    a_only(&mut p, ms(3000));
    let lp = &p.a.core().lacp().unwrap().ports[0];
    assert_eq!(lp.rx, RxState::Defaulted);
    assert!(lp.actor.state.defaulted());
    // B comes back: they agree again.
    assert!(until(&mut p, ms(10_000), |p| distributing(&p.a) == [0]).is_some());
}

#[test]
fn partner_times_out_after_90_s_with_lacp_rate_slow() {
    let mut p = pair(1, &[("lacp_rate", "slow")], &[("lacp_rate", "slow")]);
    p.run(ms(5000));
    assert_eq!(distributing(&p.a), [0]);
    silence_b(&mut p);
    a_only(&mut p, ms(89_900));
    assert_eq!(distributing(&p.a), [0], "still current before 90 s");
    a_only(&mut p, ms(200));
    assert!(distributing(&p.a).is_empty(), "expired at 90 s");
}

#[test]
fn a_failed_link_leaves_the_aggregation_and_rejoins() {
    let mut p = pair(
        2,
        &[("lacp_rate", "fast"), ("xmit_hash_policy", "layer3+4")],
        &[("lacp_rate", "fast")],
    );
    p.run(ms(5000));
    assert_eq!(distributing(&p.a), [0, 1]);
    p.wires[1].set_up(false);
    p.run(ms(100));
    assert_eq!(distributing(&p.a), [0], "miimon noticed within 100 ms");
    assert_eq!(distributing(&p.b), [0]);
    // All traffic goes over the remaining link, none is lost.
    send_all(
        &mut p.a,
        (0..100)
            .map(|i| udp(&p.pool, 3000 + i as u16, 80, i))
            .collect(),
    );
    let got: Vec<_> = drain(&mut p.b)
        .into_iter()
        .filter(|m| m.data()[12..14] == [8, 0])
        .collect();
    assert_eq!(got.len(), 100);
    assert_eq!(p.a.status().members[1].link_failure_count, 1);
    p.wires[1].set_up(true);
    let t = until(&mut p, ms(10_000), |p| {
        distributing(&p.a) == [0, 1] && distributing(&p.b) == [0, 1]
    });
    // Aggregate_Wait_Time (2 s) is the bulk of it.
    let t = t.expect("the link rejoins");
    assert!(t >= ms(2000) && t < ms(4000), "rejoined after {t:?}");
}

#[test]
fn min_links_in_802_3ad() {
    let mut p = pair(
        2,
        &[("lacp_rate", "fast"), ("min_links", "2")],
        &[("lacp_rate", "fast")],
    );
    p.run(ms(5000));
    assert!(p.a.link().up);
    p.wires[0].set_up(false);
    p.run(ms(100));
    assert!(!p.a.link().up);
    assert!(p.b.link().up, "B has no min_links");
    assert!(p.a.status().to_string().contains("MII Status: down"));
}

#[test]
fn links_to_two_partners_form_two_aggregators_and_the_standby_one_churns() {
    // A's a0 goes to bond B, a1 to bond C: two partner systems, two
    // aggregators, one of them active.
    let pool = pool(16384);
    let clock = ManualClock::new();
    let (a0, b0) = ring_pair("a0", "b0", 1024).unwrap();
    let (a1, c0) = ring_pair("a1", "c0", 1024).unwrap();
    let mk = |name: &str, members: Vec<(String, Box<dyn Port>)>| {
        let cfg =
            BondConfig::from_args(&args(&[("mode", "802.3ad"), ("lacp_rate", "fast")])).unwrap();
        let b = BondPort::with_clock(name, cfg, members, Box::new(clock.clone())).unwrap();
        Bonded::start(b, &pool)
    };
    let bx = |n: &str, p: RingPort| (n.to_string(), member(p));
    let mut a = mk("bondA", vec![bx("a0", a0), bx("a1", a1)]);
    let mut b = mk("bondB", vec![bx("b0", b0)]);
    let mut c = mk("bondC", vec![bx("c0", c0)]);
    run(&clock, &mut [&mut a, &mut b, &mut c], ms(10_000), ms(10));
    let st = a.status();
    let agg = |i: usize| st.members[i].lacp.as_ref().unwrap().aggregator_id.unwrap();
    assert_ne!(agg(0), agg(1), "different partners, different aggregators");
    assert_eq!(
        distributing(&a),
        [0],
        "stable: the first aggregator stays active"
    );
    assert_eq!(distributing(&b), [0]);
    assert!(distributing(&c).is_empty(), "A tells C it is not in sync");
    assert_eq!(mux(&a, 1), MuxState::Waiting);
    let l1 = st.members[1].lacp.as_ref().unwrap();
    assert_eq!(l1.actor_churn_state, ChurnState::Monitoring);
    // Churn_Detection_Time after the port came up (the first 10 s are past).
    run(&clock, &mut [&mut a, &mut b, &mut c], ms(50_100), ms(10));
    let st = a.status();
    let l1 = st.members[1].lacp.as_ref().unwrap();
    assert_eq!(l1.actor_churn_state, ChurnState::Churned);
    assert_eq!(l1.actor_churned_count, 1);
    let l0 = st.members[0].lacp.as_ref().unwrap();
    assert_eq!(l0.actor_churn_state, ChurnState::None);
    let cs = c.status();
    let cl = cs.members[0].lacp.as_ref().unwrap();
    assert_eq!(
        cl.partner_churn_state,
        ChurnState::Churned,
        "C sees its partner never sync"
    );
    assert_eq!(
        cl.actor_churn_state,
        ChurnState::None,
        "C itself is in sync"
    );
    assert!(a
        .status()
        .to_string()
        .contains("Actor Churn State: churned"));

    // B fails: the aggregator to C takes over.
    drop(b);
    run(&clock, &mut [&mut a, &mut c], ms(10_000), ms(10));
    assert_eq!(distributing(&a), [1]);
    assert_eq!(distributing(&c), [0]);
}

#[test]
fn ad_select_count_prefers_the_aggregator_with_more_ports() {
    for (policy, want) in [("count", vec![1usize, 2]), ("bandwidth", vec![1, 2])] {
        let pool = pool(16384);
        let clock = ManualClock::new();
        let (a0, b0) = ring_pair("a0", "b0", 1024).unwrap();
        let (a1, c0) = ring_pair("a1", "c0", 1024).unwrap();
        let (a2, c1) = ring_pair("a2", "c1", 1024).unwrap();
        let bx = |n: &str, p: RingPort| (n.to_string(), member(p));
        let mk = |name: &str, kv: &[(&str, &str)], members: Vec<(String, Box<dyn Port>)>| {
            let mut all = vec![("mode", "802.3ad"), ("lacp_rate", "fast")];
            all.extend_from_slice(kv);
            let cfg = BondConfig::from_args(&args(&all)).unwrap();
            let b = BondPort::with_clock(name, cfg, members, Box::new(clock.clone())).unwrap();
            Bonded::start(b, &pool)
        };
        let mut a = mk(
            "bondA",
            &[("ad_select", policy)],
            vec![bx("a0", a0), bx("a1", a1), bx("a2", a2)],
        );
        let mut b = mk("bondB", &[], vec![bx("b0", b0)]);
        let mut c = mk("bondC", &[], vec![bx("c0", c0), bx("c1", c1)]);
        run(&clock, &mut [&mut a, &mut b, &mut c], ms(10_000), ms(10));
        assert_eq!(distributing(&a), want, "ad_select={policy}");
        assert_eq!(distributing(&c), [0, 1]);
        assert!(distributing(&b).is_empty());
    }
}

#[test]
fn own_lacpdus_coming_back_are_a_loop_and_ignored() {
    let pool = pool(1024);
    let clock = ManualClock::new();
    let lo = ring_loopback("lo0", 64).unwrap();
    let cfg = BondConfig::from_args(&args(&[("mode", "802.3ad"), ("lacp_rate", "fast")])).unwrap();
    let a = BondPort::with_clock(
        "bond0",
        cfg,
        vec![("lo0".into(), member(lo))],
        Box::new(clock.clone()),
    )
    .unwrap();
    let mut a = Bonded::start(a, &pool);
    run(&clock, &mut [&mut a], ms(5000), ms(10));
    let s = a.status().members[0].lacp.as_ref().unwrap().stats;
    assert!(s.lacpdu_loopback_rx >= 3);
    assert_eq!(
        mux(&a, 0),
        MuxState::Attached,
        "never collecting with itself"
    );
    // Linux's fallback: nothing answers LACP, so the port is used alone.
    assert_eq!(distributing(&a), [0]);
}

#[test]
fn marker_information_gets_a_response_and_garbage_is_counted() {
    let (mut bond, mut bed) = make_bond(1, &[("mode", "802.3ad")]);
    drain(&mut bed.peers[0]);
    let info = MarkerInfo {
        kind: MarkerKind::Information,
        requester_port: 3,
        requester_system: MacAddr([2, 0, 0, 0, 0, 0x33]),
        transaction_id: 42,
    };
    let mut f = [0u8; FRAME_LEN];
    MarkerPdu::new_unchecked(&mut f[..]).emit(MacAddr([2, 0, 0, 0, 0, 0x33]), &info);
    let mut m = bed.pool.alloc().unwrap();
    m.copy_from(&f);
    let mut bad = bed.pool.alloc().unwrap();
    let mut g = f;
    g[14] = 1; // an "LACPDU" with marker TLVs
    bad.copy_from(&g[..60]);
    send_all(&mut bed.peers[0], vec![m, bad]);
    assert!(
        drain(&mut bond).is_empty(),
        "slow-protocol frames never reach the application"
    );
    // The rx handle passed them up; the control side answers at its next
    // service(), on the member's control queue.
    assert_eq!(
        bond.status().members[0]
            .lacp
            .as_ref()
            .unwrap()
            .stats
            .marker_rx,
        0
    );
    bond.service();
    let got = drain(&mut bed.peers[0]);
    let resp: Vec<_> = got.iter().filter(|m| m.data()[14] == 2).collect();
    assert_eq!(resp.len(), 1);
    let r = MarkerPdu::new_checked(resp[0].data()).unwrap();
    assert_eq!(
        r.info(),
        MarkerInfo {
            kind: MarkerKind::Response,
            ..info
        }
    );
    assert_eq!(r.src(), bond.member(0).unwrap().mac_addr());
    let s = bond.status().members[0].lacp.as_ref().unwrap().stats;
    assert_eq!(
        (s.marker_rx, s.marker_response_tx, s.lacpdu_illegal_rx),
        (1, 1, 1)
    );
    assert_eq!(bond.core().counters().slow_rx_invalid, 1);
}

#[test]
fn members_join_the_slow_protocols_multicast_group() {
    use pollux_bond::wire::SLOW_PROTOCOLS_MAC;
    let pool = pool(256);
    let (mine, _peers, _w) = pairs(3, &pool);
    let mut logs = Vec::new();
    let mut wrapped = Vec::new();
    // a0 has a filter, a1 only all-multicast, a2 only promiscuous mode.
    for (i, (n, p)) in mine.into_iter().enumerate() {
        let (port, log) = FilterPort::new(p, i >= 1, i >= 2, false, false);
        logs.push(log);
        wrapped.push((n, Box::new(port) as Box<dyn Port>));
    }
    let cfg = BondConfig::from_args(&args(&[("mode", "802.3ad")])).unwrap();
    let mut b = BondPort::new("bond0", cfg, wrapped).unwrap();
    start(&mut b, &pool);
    let l: Vec<_> = logs.iter().map(|l| l.lock().unwrap().clone()).collect();
    assert_eq!(l[0].mc, [SLOW_PROTOCOLS_MAC]);
    assert!(!l[0].allmulti && !l[0].promisc);
    assert!(l[1].allmulti && !l[1].promisc);
    assert!(l[2].promisc);
    // The application's multicast list goes to every member, plus the
    // slow-protocols address.
    let group = MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]);
    b.set_mc_addr_list(&[group]).unwrap();
    assert_eq!(logs[0].lock().unwrap().mc, [group, SLOW_PROTOCOLS_MAC]);

    // A member that can receive no multicast at all cannot run LACP.
    let (mine, _peers, _w) = pairs(1, &pool);
    let (n, p) = mine.into_iter().next().unwrap();
    let (port, _log) = FilterPort::new(p, true, true, true, false);
    let cfg = BondConfig::from_args(&args(&[("mode", "802.3ad")])).unwrap();
    let mut b = BondPort::new("bond0", cfg, vec![(n, Box::new(port) as Box<dyn Port>)]).unwrap();
    b.configure(&pollux_core::PortConf::new(pool.clone()))
        .unwrap();
    let e = b.start().unwrap_err().to_string();
    assert!(e.contains("01:80:c2:00:00:02"), "{e}");
}

#[test]
fn a_member_that_refuses_the_bond_mac_fails_start() {
    let pool = pool(256);
    let (mine, _peers, _w) = pairs(2, &pool);
    let mut wrapped = Vec::new();
    for (i, (n, p)) in mine.into_iter().enumerate() {
        let (port, _) = FilterPort::new(p, false, false, false, i == 1);
        wrapped.push((n, Box::new(port) as Box<dyn Port>));
    }
    let cfg = BondConfig::from_args(&args(&[("mode", "balance-xor")])).unwrap();
    let mut b = BondPort::new("bond0", cfg, wrapped).unwrap();
    b.configure(&pollux_core::PortConf::new(pool.clone()))
        .unwrap();
    let e = b.start().unwrap_err().to_string();
    assert!(e.contains("a1") && e.contains("set MAC"), "{e}");
}
