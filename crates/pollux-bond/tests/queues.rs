//! The bond as a control side plus per-queue handles: handing out queues,
//! stop and restart, the members' control queues, the slow-frame ring, and
//! a bond whose rx and tx handles run on two threads while a third
//! services it.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use pollux_bond::wire::{MarkerInfo, MarkerKind, MarkerPdu, FRAME_LEN};
use pollux_bond::{BondConfig, BondError, BondPort, ManualClock};
use pollux_core::{Burst, MacAddr, Mbuf, Port, PortConf, PortError, PortStats};
use pollux_soft::null::{NullOpts, NullPort};
use pollux_soft::ring::ring_pair;

fn nulls(n: usize) -> Members {
    (0..n)
        .map(|i| {
            let name = format!("null{i}");
            let p = NullPort::new(name.clone(), NullOpts::default());
            (name, Box::new(p) as Box<dyn Port>)
        })
        .collect()
}

fn is_udp(m: &Mbuf) -> bool {
    m.data()[12..14] == [8, 0]
}

#[test]
fn queues_are_handed_out_once_per_start_and_stop_silences_them() {
    let pool = pool(4096);
    let (mine, peers, _wires) = pairs(2, &pool);
    let cfg = BondConfig::from_args(&args(&[("mode", "balance-xor")])).unwrap();
    let mut bond = BondPort::new("bond0", cfg, mine).unwrap();
    let mut peers: Vec<_> = peers
        .into_iter()
        .map(|mut p| {
            start(&mut p, &pool);
            pollux_core::Polled::new(p).unwrap()
        })
        .collect();
    bond.configure(&PortConf::new(pool.clone())).unwrap();
    assert!(matches!(bond.take_queues(), Err(PortError::NotStarted)));
    bond.start().unwrap();
    let mut q = bond.take_queues().unwrap();
    assert_eq!((q.rx.len(), q.tx.len()), (1, 1));
    assert!(matches!(bond.take_queues(), Err(PortError::QueuesTaken(_))));

    let mut b = Burst::new(64);
    b.extend((0..20).map(|i| udp(&pool, 1000 + i as u16, 80, i)));
    assert_eq!(q.tx[0].tx_burst(&mut b), 20);
    let arrived: usize = peers.iter_mut().map(|p| drain(p).len()).sum();
    assert_eq!(arrived, 20);
    send_all(&mut peers[1], vec![udp(&pool, 1, 1, 7)]);
    assert_eq!(q.rx[0].rx_burst(&mut b), 1);
    b.clear();

    bond.stop().unwrap();
    send_all(&mut peers[0], vec![udp(&pool, 1, 1, 8)]);
    assert_eq!(q.rx[0].rx_burst(&mut b), 0, "stopped: receives nothing");
    b.push(udp(&pool, 1, 1, 9)).unwrap();
    assert_eq!(q.tx[0].tx_burst(&mut b), 0, "stopped: sends nothing");
    assert_eq!(b.len(), 1, "and leaves the packet with the caller");
    let e = bond.start().unwrap_err();
    assert!(
        matches!(e, PortError::QueuesTaken(_)),
        "the last start's handles are alive: {e}"
    );
    drop(q);
    bond.start().unwrap();
    let mut q = bond.take_queues().unwrap();
    // The frame that arrived while stopped is still on the wire.
    assert_eq!(q.rx[0].rx_burst(&mut b), 1);
    assert_eq!(q.tx[0].tx_burst(&mut b), 2);
}

#[test]
fn members_get_one_tx_queue_more_than_the_bond_when_they_have_it() {
    let pool = pool(1024);
    let cfg = BondConfig::from_args(&args(&[("mode", "balance-xor")])).unwrap();
    let mut bond = BondPort::new("bond0", cfg, nulls(2)).unwrap();
    let caps = bond.info().capabilities;
    assert_eq!(caps.max_tx_queues, pollux_soft::null::MAX_QUEUES);
    assert_eq!(caps.max_rx_queues, pollux_soft::null::MAX_QUEUES);
    let mut conf = PortConf::new(pool.clone());
    conf.rx_queues = 2;
    conf.tx_queues = 3;
    bond.configure(&conf).unwrap();
    bond.start().unwrap();
    let q = bond.take_queues().unwrap();
    assert_eq!((q.rx.len(), q.tx.len()), (2, 3));
    // Each member was configured with 2 rx and 4 tx queues: the last is
    // the bond's control queue.
    assert_eq!(bond.member(0).unwrap().queue_stats().len(), 4);
    assert_eq!(bond.queue_stats().len(), 3);
    drop(q);
    bond.stop().unwrap();
    // Every queue the members have: none to spare, the shared path.
    conf.tx_queues = pollux_soft::null::MAX_QUEUES;
    bond.configure(&conf).unwrap();
    bond.start().unwrap();
    let q = bond.take_queues().unwrap();
    assert_eq!(q.tx.len(), pollux_soft::null::MAX_QUEUES as usize);
    assert_eq!(
        bond.member(0).unwrap().queue_stats().len(),
        pollux_soft::null::MAX_QUEUES as usize
    );
}

/// Members with one transmit queue (plain ring ports): LACPDUs wait for the
/// bond's transmit queue 0 and leave at its next call, an empty one
/// included, as DPDK's bonding does without dedicated queues.
#[test]
fn without_a_spare_tx_queue_control_frames_leave_with_queue_0() {
    let pool = pool(1024);
    let clock = ManualClock::new();
    let cfg = BondConfig::from_args(&args(&[("mode", "802.3ad"), ("lacp_rate", "fast")])).unwrap();
    let mut members: Members = Vec::new();
    let mut peers = Vec::new();
    for i in 0..2 {
        let (a, b) = ring_pair(format!("s{i}"), format!("t{i}"), 256).unwrap();
        assert_eq!(a.info().capabilities.max_tx_queues, 1);
        members.push((format!("s{i}"), Box::new(a) as Box<dyn Port>));
        peers.push(b);
    }
    let mut bond = BondPort::with_clock("bond0", cfg, members, Box::new(clock.clone())).unwrap();
    start(&mut bond, &pool);
    let mut peers: Vec<_> = peers
        .into_iter()
        .map(|mut p| {
            start(&mut p, &pool);
            pollux_core::Polled::new(p).unwrap()
        })
        .collect();
    let mut q = bond.take_queues().unwrap();
    for _ in 0..100 {
        clock.advance(ms(10));
        bond.service();
    }
    let mut b = Burst::new(64);
    for p in peers.iter_mut() {
        assert_eq!(p.rx_burst(0, &mut b), 0, "nothing before queue 0 runs");
    }
    let queued = bond.shell_counters().ctrl_tx;
    assert!(queued >= 2, "LACPDUs queued: {queued}");
    assert_eq!(q.tx[0].tx_burst(&mut b), 0, "an empty burst sends no data");
    let mut got = 0;
    for p in peers.iter_mut() {
        let n = p.rx_burst(0, &mut b);
        assert!(n >= 1, "each member sent its LACPDUs");
        assert!(
            b.iter().all(|m| m.data()[12..14] == [0x88, 0x09]),
            "slow protocols"
        );
        got += n as u64;
        b.clear();
    }
    assert_eq!(got, queued);
    assert_eq!(bond.shell_counters().ctrl_tx_failed, 0);
    drop(q);
    drop(peers);
    drop(bond);
    assert_eq!(pool.available(), pool.size());
}

#[test]
fn control_frames_use_the_members_last_tx_queue_without_any_tx_burst() {
    let pool = pool(1024);
    let clock = ManualClock::new();
    let cfg = BondConfig::from_args(&args(&[("mode", "802.3ad"), ("lacp_rate", "fast")])).unwrap();
    let mut bond = BondPort::with_clock("bond0", cfg, nulls(2), Box::new(clock.clone())).unwrap();
    start(&mut bond, &pool);
    // Nobody took the bond's queues, nobody sends: LACP still speaks.
    for _ in 0..300 {
        clock.advance(ms(10));
        bond.service();
    }
    for i in 0..2 {
        let qs = bond.member(i).unwrap().queue_stats();
        assert_eq!(qs.len(), 2);
        assert_eq!(
            qs[0].tx_packets, 0,
            "member {i}: queue 0 is the data path's"
        );
        assert!(
            qs[1].tx_packets >= 3,
            "member {i}: LACPDUs on the control queue: {qs:?}"
        );
    }
    let c = bond.shell_counters();
    assert_eq!(
        c.ctrl_tx,
        (0..2)
            .map(|i| bond.member(i).unwrap().queue_stats()[1].tx_packets)
            .sum::<u64>()
    );
    assert_eq!(c.ctrl_tx_failed, 0);
    assert_eq!(pool.available(), pool.size(), "sent frames were freed");
}

#[test]
fn slow_frames_wait_in_a_bounded_ring_and_inactive_members_drop() {
    let (mut bond, mut bed) = make_bond(1, &[("mode", "802.3ad")]);
    drain(&mut bed.peers[0]);
    // Not collecting yet (no partner): data frames are dropped and counted.
    send_all(&mut bed.peers[0], vec![udp(&bed.pool, 1, 1, 1)]);
    assert!(drain(&mut bond).is_empty());
    assert_eq!(bond.shell_counters().rx_dropped_inactive, 1);
    // 300 marker requests before the control side looks: the ring to it
    // holds 256, the rest are dropped and counted.
    let info = MarkerInfo {
        kind: MarkerKind::Information,
        requester_port: 3,
        requester_system: MacAddr([2, 0, 0, 0, 0, 0x33]),
        transaction_id: 42,
    };
    let mut f = [0u8; FRAME_LEN];
    MarkerPdu::new_unchecked(&mut f[..]).emit(MacAddr([2, 0, 0, 0, 0, 0x33]), &info);
    let frames = (0..300)
        .map(|_| {
            let mut m = bed.pool.alloc().unwrap();
            assert!(m.copy_from(&f));
            m
        })
        .collect();
    send_all(&mut bed.peers[0], frames);
    // A burst that only found slow frames returns 0: poll more than once.
    let mut got = Vec::new();
    for _ in 0..10 {
        got.extend(drain(&mut bond));
    }
    assert!(got.is_empty());
    let c = bond.shell_counters();
    assert_eq!(c.slow_rx_dropped, 300 - 256);
    assert_eq!(
        c.rx_dropped_inactive, 1,
        "slow frames are not 'inactive' drops"
    );
    bond.service();
    let s = bond.status().members[0].lacp.as_ref().unwrap().stats;
    assert_eq!((s.marker_rx, s.marker_response_tx), (256, 256));
    let responses = drain(&mut bed.peers[0])
        .iter()
        .filter(|m| m.data()[14] == 2)
        .count();
    assert_eq!(responses, 256);
    let x = bond.xstats();
    let get = |n: &str| x.iter().find(|x| x.name == n).unwrap().value;
    assert_eq!(get("bond_slow_rx_dropped"), 44);
    assert_eq!(get("bond_rx_dropped_inactive"), 1);

    bond.reset_stats();
    assert_eq!(bond.shell_counters(), Default::default());
    assert_eq!(bond.stats(), PortStats::default());
    send_all(&mut bed.peers[0], vec![udp(&bed.pool, 1, 1, 2)]);
    drain(&mut bond);
    assert_eq!(bond.shell_counters().rx_dropped_inactive, 1, "counts on");
}

#[test]
fn the_bond_services_its_members() {
    let pool = pool(256);
    let (mine, _peers, _w) = pairs(2, &pool);
    let mut logs = Vec::new();
    let mut wrapped = Vec::new();
    for (n, p) in mine {
        let (port, log) = FilterPort::new(p, false, false, false, false);
        logs.push(log);
        wrapped.push((n, Box::new(port) as Box<dyn Port>));
    }
    let cfg = BondConfig::from_args(&args(&[("mode", "balance-xor")])).unwrap();
    let mut b = BondPort::new("bond0", cfg, wrapped).unwrap();
    let services = |logs: &[std::sync::Arc<std::sync::Mutex<FilterLog>>]| -> Vec<usize> {
        logs.iter().map(|l| l.lock().unwrap().services).collect()
    };
    // Their control sides are the bond's: nobody else can service them,
    // started or not.
    b.service();
    assert_eq!(services(&logs), [1, 1]);
    start(&mut b, &pool);
    let before = services(&logs);
    for _ in 0..3 {
        b.service();
    }
    let after = services(&logs);
    assert!(
        after.iter().zip(&before).all(|(a, b)| a - b == 3),
        "{after:?}"
    );
}

#[test]
fn at_most_32_members() {
    let cfg = BondConfig::from_args(&args(&[("mode", "balance-xor")])).unwrap();
    assert!(BondPort::new("bond0", cfg.clone(), nulls(32)).is_ok());
    let e = BondPort::new("bond0", cfg, nulls(33)).unwrap_err();
    assert!(matches!(e, BondError::TooManyMembers(33)), "{e}");
}

/// A bond's rx handle and tx handle each on a thread of their own, while
/// the test thread, owning the bond's control side, runs `service()` and
/// reads status and counters. Before the split this needed a lock around
/// the whole bond; now nothing is shared but the handles' atomics.
#[test]
fn rx_and_tx_handles_run_on_their_own_threads_while_the_control_side_services() {
    const A_TO_B: u32 = 20_000;
    const B_TO_A: u32 = 4_000;
    let pool = pool(16384);
    let clock = ManualClock::new();
    let mut am = Vec::new();
    let mut bm = Vec::new();
    for i in 0..2 {
        let (a, b) = ring_pair(format!("a{i}"), format!("b{i}"), 4096).unwrap();
        am.push((format!("a{i}"), member(a)));
        bm.push((format!("b{i}"), member(b)));
    }
    // lacp_rate=slow: the partner's information stays current for 90 s of
    // virtual time (9000 control steps), so a descheduled rx thread cannot
    // make A time B out and drop frames.
    let kv = [
        ("mode", "802.3ad"),
        ("lacp_rate", "slow"),
        ("xmit_hash_policy", "layer3+4"),
    ];
    let cfg = BondConfig::from_args(&args(&kv)).unwrap();
    let mut a = BondPort::with_clock("bondA", cfg.clone(), am, Box::new(clock.clone())).unwrap();
    start(&mut a, &pool);
    let mut b = Bonded::start(
        BondPort::with_clock("bondB", cfg, bm, Box::new(clock.clone())).unwrap(),
        &pool,
    );
    let q = a.take_queues().unwrap();
    let (mut a_rx, mut a_tx) = (
        q.rx.into_iter().next().unwrap(),
        q.tx.into_iter().next().unwrap(),
    );

    let go = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let a_got = Arc::new(AtomicU64::new(0));

    let rx_thread = {
        let (stop, a_got) = (stop.clone(), a_got.clone());
        std::thread::spawn(move || {
            let mut burst = Burst::new(32);
            let mut seqs = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if a_rx.rx_burst(&mut burst) == 0 {
                    std::thread::yield_now();
                }
                for m in burst.drain() {
                    assert!(is_udp(&m), "only data reaches the application");
                    seqs.push(seq_of(&m));
                }
                a_got.store(seqs.len() as u64, Ordering::Relaxed);
            }
            seqs
        })
    };
    let tx_thread = {
        let (go, pool) = (go.clone(), pool.clone());
        std::thread::spawn(move || {
            while !go.load(Ordering::Relaxed) {
                std::thread::yield_now();
            }
            let mut burst = Burst::new(32);
            let mut next = 0u32;
            while next < A_TO_B || !burst.is_empty() {
                while next < A_TO_B && !burst.is_full() {
                    burst
                        .push(udp(&pool, 1024 + (next % 64) as u16, 80, next))
                        .unwrap();
                    next += 1;
                }
                if a_tx.tx_burst(&mut burst) == 0 {
                    std::thread::yield_now();
                }
            }
        })
    };

    let deadline = Instant::now() + Duration::from_secs(20);
    // (flow, sequence) of every data frame B received, in order.
    let mut b_got: Vec<(u16, u32)> = Vec::new();
    let mut b_sent = 0u32;
    let mut last = PortStats::default();
    let mut busy_steps = 0u64;
    let mut link_dips = 0u64;
    let mut rx_burst = Burst::new(256);
    while !(b_got.len() == A_TO_B as usize && a_got.load(Ordering::Relaxed) == B_TO_A as u64) {
        assert!(
            Instant::now() < deadline,
            "stuck: B got {} of {A_TO_B}, A got {} of {B_TO_A}, A {:?}\n{}\n{}",
            b_got.len(),
            a_got.load(Ordering::Relaxed),
            a.shell_counters(),
            a.status(),
            b.status()
        );
        clock.advance(ms(10));
        a.service();
        // At most 8 bursts of 256 per step, freed as they come: the tx
        // thread refills the wires meanwhile, so collecting everything
        // first could empty the pool; and the cap makes the transfer span
        // many control steps.
        for _ in 0..8 {
            let n = b.rx(&mut rx_burst);
            for m in rx_burst.drain() {
                if is_udp(&m) {
                    b_got.push((src_port_of(&m), seq_of(&m)));
                }
            }
            if n == 0 {
                break;
            }
        }
        b.service();
        let both = |p: &BondPort| p.core().tx_members() == [0, 1];
        if !go.load(Ordering::Relaxed) && both(&a) && both(&b) {
            go.store(true, Ordering::Relaxed);
        }
        if go.load(Ordering::Relaxed) && b_got.len() < A_TO_B as usize {
            // A step with A's data not all through: B takes at most 2048
            // a step, so 20 000 need at least 10 steps after `go`, and
            // all but the last are counted here.
            busy_steps += 1;
        }
        if go.load(Ordering::Relaxed) {
            let mut burst = Burst::new(32);
            while b_sent < B_TO_A && !burst.is_full() {
                burst
                    .push(udp(&pool, 2048 + (b_sent % 16) as u16, 81, b_sent))
                    .unwrap();
                b_sent += 1;
            }
            b.tx(&mut burst);
            b_sent -= burst.len() as u32;
            // Read everything the control side offers while the handles run.
            let st = a.status();
            assert!(st.mii_status, "A stays up");
            assert!(st.to_string().contains("Number of ports: 2"));
            let s = a.stats();
            assert!(s.opackets >= last.opackets && s.ipackets >= last.ipackets);
            last = s;
            assert_eq!(a.shell_counters().slow_rx_dropped, 0);
            if a.link().speed_mbps != 20_000 {
                link_dips += 1;
            }
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    stop.store(true, Ordering::Relaxed);
    tx_thread.join().unwrap();
    let a_seqs = rx_thread.join().unwrap();
    assert_eq!(link_dips, 0, "both links carried traffic throughout");

    // Every frame arrived once, in order per flow.
    let mut last_per_flow = HashMap::new();
    for &(flow, seq) in &b_got {
        if let Some(prev) = last_per_flow.insert(flow, seq) {
            assert!(seq > prev, "flow {flow} out of order");
        }
    }
    let mut seqs: Vec<u32> = b_got.iter().map(|&(_, seq)| seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..A_TO_B).collect::<Vec<_>>());
    let mut a_seqs = a_seqs;
    a_seqs.sort_unstable();
    assert_eq!(a_seqs, (0..B_TO_A).collect::<Vec<_>>());
    let via: Vec<u64> = (0..2)
        .map(|i| b.member(i).unwrap().stats().ipackets)
        .collect();
    assert!(
        via.iter().all(|&n| n > A_TO_B as u64 / 10),
        "both links used: {via:?}"
    );
    let s = a.stats();
    assert!(s.opackets >= A_TO_B as u64, "{s:?}");
    assert!(
        busy_steps >= 9,
        "{busy_steps} control steps overlapped the traffic"
    );

    // The handles died with their threads: the bond starts again.
    a.stop().unwrap();
    a.start().unwrap();
    drop(a);
    drop(b);
    assert_eq!(pool.available(), pool.size(), "no mbuf lost");
}
