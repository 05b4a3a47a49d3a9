//! The data plane end to end, as an application sees it through the facade
//! alone: every name below is a `pollux::...` path, never a member crate's.
//! Software ports only (null, ring pairs, pcap files in a temporary
//! directory), so no hardware and no root.
//!
//! What is judged where: frames are stamped with a sequence number and
//! read back at the far end of a ring wire or from a pcap file parsed here
//! by hand, so a count is checked against frames someone else saw, not
//! only against the port's own counters. Nothing is timed: waits poll with
//! a deadline that only keeps a broken build from hanging the suite.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pollux::bond::{BondConfig, BondPort};
use pollux::core::lcore::{self, StopFlag};
use pollux::core::net::{udp_frame, UdpFrameSpec};
use pollux::core::{
    AnonMemory, Burst, Mbuf, Mempool, MempoolConfig, Port, PortConf, PortError, PortStats, RxQueue,
    TxQueue,
};
use pollux::soft::ring::{ring_pair, RingPort};
use pollux::vfio::PciOpenOpts;

/// How long a wait may take before the test calls it a hang. Generous on
/// purpose: this machine has two cores and a lab VM beside the tests.
const PATIENCE: Duration = Duration::from_secs(60);

/// Offset of the sequence number: the first payload bytes of a UDP/IPv4
/// frame (Ethernet 14 + IPv4 20 + UDP 8).
const SEQ_AT: usize = 42;

fn pool(name: &str, n: usize) -> Mempool {
    Mempool::new(MempoolConfig::new(name, n), &AnonMemory::default()).unwrap()
}

/// A pool without per-lcore caches, so what one thread sees free is all
/// there is.
fn pool_uncached(name: &str, n: usize) -> Mempool {
    let mut c = MempoolConfig::new(name, n);
    c.cache_size = 0;
    Mempool::new(c, &AnonMemory::default()).unwrap()
}

/// A `len`-byte UDP/IPv4 frame from source port `flow` carrying `seq`.
fn frame(pool: &Mempool, flow: u16, seq: u32, len: usize) -> Option<Mbuf> {
    let mut m = pool.alloc()?;
    assert!(m.set_len(len));
    let spec = UdpFrameSpec {
        src_port: flow,
        ..UdpFrameSpec::default()
    };
    assert!(udp_frame(m.data_mut(), &spec));
    m.data_mut()[SEQ_AT..SEQ_AT + 4].copy_from_slice(&seq.to_be_bytes());
    Some(m)
}

fn seq_of(data: &[u8]) -> u32 {
    u32::from_be_bytes(data[SEQ_AT..SEQ_AT + 4].try_into().unwrap())
}

fn src_port_of(data: &[u8]) -> u16 {
    u16::from_be_bytes([data[34], data[35]])
}

/// Configures `port` with `queues` queues each way and starts it.
fn bring_up(port: &mut dyn Port, pool: &Mempool, port_id: u16, queues: u16) {
    let mut conf = PortConf::new(pool.clone());
    conf.port_id = port_id;
    conf.rx_queues = queues;
    conf.tx_queues = queues;
    port.configure(&conf).unwrap();
    port.start().unwrap();
}

/// Polls `done` until it holds; fails the test with `what` at `deadline`.
fn wait_for(deadline: Instant, what: &str, mut done: impl FnMut() -> bool) {
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Sends every frame of `burst` on `tx`, retrying what the queue leaves
/// (a full ring); returns how many it took before `deadline`.
fn send_all(tx: &mut dyn TxQueue, burst: &mut Burst<Mbuf>, deadline: Instant) -> usize {
    let mut sent = 0;
    while !burst.is_empty() && Instant::now() < deadline {
        let n = tx.tx_burst(burst);
        sent += n;
        if n == 0 {
            std::thread::yield_now();
        }
    }
    sent
}

/// Receives on `rx` until `n` frames are in hand or `deadline`.
fn receive(rx: &mut dyn RxQueue, n: usize, deadline: Instant) -> Vec<Mbuf> {
    let mut got = Vec::new();
    let mut burst = Burst::new(64);
    while got.len() < n && Instant::now() < deadline {
        if rx.rx_burst(&mut burst) == 0 {
            std::thread::yield_now();
        }
        got.extend(burst.drain());
    }
    got
}

fn sum_stats<'a>(all: impl IntoIterator<Item = &'a PortStats>) -> PortStats {
    let mut s = PortStats::default();
    for x in all {
        s.ipackets += x.ipackets;
        s.opackets += x.opackets;
        s.ibytes += x.ibytes;
        s.obytes += x.obytes;
        s.imissed += x.imissed;
        s.ierrors += x.ierrors;
        s.oerrors += x.oerrors;
        s.rx_nombuf += x.rx_nombuf;
    }
    s
}

/// A port configured with four queues each way is split by `take_queues`
/// into four rx and four tx handles, and each rx/tx pair moves to its own
/// lcore, which forwards exactly `PER_QUEUE` frames from rx queue `i` of
/// one port to tx queue `i` of another while the control thread reads the
/// counters. Proves the split: every frame an lcore receives is stamped
/// with that lcore's queue and the port's id, nothing is lost or counted
/// twice (N in, N out), and on both ports the per-queue counters are
/// `PER_QUEUE` each and add up to the port counters.
///
/// Null ports, because they are the facade's only software ports with
/// more than one queue that need no network interface: ring and pcap
/// ports have one queue each way (see `ring_pipeline_...` for frames
/// checked at a far end).
#[test]
fn four_queues_split_onto_four_lcores_forward_exactly() {
    const QUEUES: u16 = 4;
    const PER_QUEUE: u64 = 32 * 64;
    const TOTAL: u64 = PER_QUEUE * QUEUES as u64;
    const LEN: u64 = 60;
    const SRC_ID: u16 = 7;
    let pool = pool("split", 4096);
    let opts = PciOpenOpts::default();
    let mut src = pollux::open("null0,size=60", &opts).unwrap();
    let mut dst = pollux::open("null1", &opts).unwrap();
    bring_up(&mut src, &pool, SRC_ID, QUEUES);
    bring_up(&mut dst, &pool, SRC_ID + 1, QUEUES);
    let src_q = src.take_queues().unwrap();
    let dst_q = dst.take_queues().unwrap();
    assert_eq!((src_q.rx.len(), src_q.tx.len()), (4, 4));
    assert_eq!((dst_q.rx.len(), dst_q.tx.len()), (4, 4));
    let (src_tx, dst_rx) = (src_q.tx, dst_q.rx); // not polled, kept alive

    let deadline = Instant::now() + PATIENCE;
    let stop = StopFlag::new();
    let lcores: Vec<_> = src_q
        .rx
        .into_iter()
        .zip(dst_q.tx)
        .enumerate()
        .map(|(i, (mut rx, mut tx))| {
            lcore::launch(i, None, stop.clone(), move |ctx| {
                let (mut got, mut sent, mut misplaced) = (0u64, 0u64, 0u64);
                let mut burst = Burst::new(32);
                while got < PER_QUEUE && !ctx.stop.is_stopped() && Instant::now() < deadline {
                    let n = rx.rx_burst(&mut burst);
                    got += n as u64;
                    for m in burst.iter() {
                        let meta = m.rx();
                        if (meta.port, meta.queue as usize) != (SRC_ID, i) {
                            misplaced += 1;
                        }
                    }
                    sent += send_all(&mut tx, &mut burst, deadline) as u64;
                }
                (got, sent, misplaced)
            })
            .unwrap()
        })
        .collect();

    // The control side reads while the lcores run: counters only grow.
    let mut last = (0, 0);
    wait_for(deadline, "every frame forwarded", || {
        let now = (src.stats().ipackets, dst.stats().opackets);
        assert!(now.0 >= last.0 && now.1 >= last.1, "{now:?} after {last:?}");
        assert!(src.link().up && dst.link().up);
        last = now;
        now.1 >= TOTAL
    });
    stop.stop();
    for (i, l) in lcores.into_iter().enumerate() {
        assert_eq!(
            l.join().unwrap(),
            (PER_QUEUE, PER_QUEUE, 0),
            "lcore {i}: (received, sent, received with another queue's stamp)"
        );
    }

    let (s, d) = (src.stats(), dst.stats());
    assert_eq!((s.ipackets, s.ibytes, s.opackets), (TOTAL, TOTAL * LEN, 0));
    assert_eq!((d.opackets, d.obytes, d.ipackets), (TOTAL, TOTAL * LEN, 0));
    assert_eq!((s.rx_nombuf, d.oerrors), (0, 0));
    let (sq, dq) = (src.queue_stats(), dst.queue_stats());
    assert_eq!((sq.len(), dq.len()), (4, 4));
    for (i, (a, b)) in sq.iter().zip(&dq).enumerate() {
        assert_eq!(
            (a.rx_packets, a.rx_bytes),
            (PER_QUEUE, PER_QUEUE * LEN),
            "rx {i}"
        );
        assert_eq!(
            (b.tx_packets, b.tx_bytes),
            (PER_QUEUE, PER_QUEUE * LEN),
            "tx {i}"
        );
    }
    assert_eq!(sq.iter().map(|q| q.rx_packets).sum::<u64>(), s.ipackets);
    assert_eq!(dq.iter().map(|q| q.tx_packets).sum::<u64>(), d.opackets);

    drop((src_tx, dst_rx));
    src.stop().unwrap();
    dst.stop().unwrap();
    drop((src, dst));
    assert_eq!(pool.available(), pool.size(), "every mbuf back");
}

/// Two ring pairs built from device strings (`ring0,peer=ring1`, ...) and
/// three lcores, each owning the queue handles of its stage: lcore 0 sends
/// `N` numbered frames into ring0, lcore 1 forwards ring1's rx to ring2's
/// tx, lcore 2 receives on ring3. The rings hold 128 frames, so a sender
/// that gets ahead meets a full ring and retries what `tx_burst` left it.
/// Proves that frames cross two wires and a forwarding lcore exactly once
/// and in order (the collector checks every sequence number), and that all
/// four ports count `N` frames of 64 bytes, their per-queue counters equal
/// to their port counters.
#[test]
fn ring_pipeline_over_three_lcores_delivers_every_frame_once_in_order() {
    const N: u32 = 20_000;
    const LEN: usize = 64;
    let pool = pool("pipeline", 2048);
    let specs = [
        "ring0,peer=ring1,capacity=128",
        "ring1",
        "ring2,peer=ring3,capacity=128",
        "ring3",
    ]
    .iter()
    .map(|s| pollux::soft::vdev::parse(s))
    .collect::<Result<Vec<_>, _>>()
    .unwrap();
    let mut ports = pollux::soft::vdev::create_all(&specs).unwrap();
    assert_eq!(ports.len(), 4);
    let mut queues = Vec::new();
    for (id, p) in ports.iter_mut().enumerate() {
        assert_eq!(p.info().driver, "net_ring");
        bring_up(p, &pool, id as u16, 1);
        queues.push(p.take_queues().unwrap());
    }
    let mut into_ring0 = queues[0].tx.pop().unwrap();
    let mut from_ring1 = queues[1].rx.pop().unwrap();
    let mut into_ring2 = queues[2].tx.pop().unwrap();
    let mut from_ring3 = queues[3].rx.pop().unwrap();

    let deadline = Instant::now() + PATIENCE;
    let stop = StopFlag::new();
    let injector = {
        let pool = pool.clone();
        lcore::launch(0, None, stop.clone(), move |_| {
            let (mut next, mut sent) = (0u32, 0usize);
            let mut burst = Burst::new(32);
            while sent < N as usize && Instant::now() < deadline {
                while !burst.is_full() && next < N {
                    let Some(m) = frame(&pool, 9, next, LEN) else {
                        break;
                    };
                    burst.push(m).unwrap();
                    next += 1;
                }
                let n = into_ring0.tx_burst(&mut burst);
                sent += n;
                if n == 0 {
                    std::thread::yield_now();
                }
            }
            sent
        })
        .unwrap()
    };
    let forwarder = lcore::launch(1, None, stop.clone(), move |_| {
        let mut moved = 0usize;
        let mut burst = Burst::new(32);
        while moved < N as usize && Instant::now() < deadline {
            // What ring2 did not take stays at the front and goes first.
            from_ring1.rx_burst(&mut burst);
            let n = into_ring2.tx_burst(&mut burst);
            moved += n;
            if n == 0 {
                std::thread::yield_now();
            }
        }
        moved
    })
    .unwrap();
    let collector = lcore::launch(2, None, stop.clone(), move |_| {
        let (mut expect, mut wrong) = (0u32, Vec::new());
        let mut burst = Burst::new(32);
        while expect < N && Instant::now() < deadline {
            if from_ring3.rx_burst(&mut burst) == 0 {
                std::thread::yield_now();
            }
            for m in burst.drain() {
                if seq_of(m.data()) != expect || m.len() != LEN {
                    wrong.push((expect, seq_of(m.data()), m.len()));
                }
                expect += 1;
            }
        }
        (expect, wrong)
    })
    .unwrap();

    wait_for(deadline, "ring3 received every frame", || {
        assert!(ports.iter_mut().all(|p| p.link().up));
        ports[3].stats().ipackets >= N as u64
    });
    stop.stop();
    assert_eq!(injector.join().unwrap(), N as usize, "injected");
    assert_eq!(forwarder.join().unwrap(), N as usize, "forwarded");
    let (received, wrong) = collector.join().unwrap();
    assert_eq!(received, N, "collected");
    assert!(wrong.is_empty(), "(expected, got, len): {wrong:?}");

    let n = N as u64;
    let bytes = n * LEN as u64;
    let want = [
        (0, 0, n, bytes), // (ipackets, ibytes, opackets, obytes)
        (n, bytes, 0, 0),
        (0, 0, n, bytes),
        (n, bytes, 0, 0),
    ];
    for (i, (p, w)) in ports.iter().zip(want).enumerate() {
        let s = p.stats();
        assert_eq!((s.ipackets, s.ibytes, s.opackets, s.obytes), w, "ring{i}");
        assert_eq!((s.oerrors, s.ierrors), (0, 0), "ring{i}");
        let q = p.queue_stats();
        assert_eq!(q.len(), 1, "ring{i}");
        assert_eq!((q[0].rx_packets, q[0].tx_packets), (s.ipackets, s.opackets));
    }

    drop(queues);
    for p in &mut ports {
        p.stop().unwrap();
    }
    drop(ports);
    assert_eq!(pool.available(), pool.size(), "every mbuf back");
}

/// bonding.rst's layer3+4 formula for a UDP/IPv4 frame, written out from
/// the documentation (the port and address words loaded as a
/// little-endian host loads them), so the test does not ask the bond's own
/// hash where a frame should go.
fn documented_layer34(frame: &[u8]) -> u32 {
    let mut h = u32::from_le_bytes(frame[34..38].try_into().unwrap());
    h ^= u32::from_le_bytes(frame[26..30].try_into().unwrap())
        ^ u32::from_le_bytes(frame[30..34].try_into().unwrap());
    h ^= h >> 16;
    h ^= h >> 8;
    h >> 1
}

/// A balance-xor bond over the near ends of two ring pairs, built through
/// `pollux::bond` from device-style arguments, started, and its link up.
/// Returns the bond and the far ends (started, queues taken).
fn xor_bond_over_two_rings(pool: &Mempool) -> (BondPort, Vec<(RingPort, pollux::core::Queues)>) {
    let (a0, b0) = ring_pair("a0", "b0", 4096).unwrap();
    let (a1, b1) = ring_pair("a1", "b1", 4096).unwrap();
    let args: Vec<(String, String)> = [
        ("mode", "balance-xor"),
        ("xmit_hash_policy", "layer3+4"),
        ("member", "a0"),
        ("member", "a1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = BondConfig::from_args(&args).unwrap();
    let members: Vec<(String, Box<dyn Port>)> =
        vec![("a0".into(), Box::new(a0)), ("a1".into(), Box::new(a1))];
    let mut bond = BondPort::new("bond0", config, members).unwrap();
    // Ring ports have one tx queue, none to spare for the bond's control
    // frames: the bond accepts them and sends those through queue 0.
    bond.configure(&PortConf::new(pool.clone())).unwrap();
    bond.start().unwrap();
    let far = [b0, b1]
        .into_iter()
        .enumerate()
        .map(|(i, mut b)| {
            bring_up(&mut b, pool, 10 + i as u16, 1);
            let q = b.take_queues().unwrap();
            (b, q)
        })
        .collect();
    let deadline = Instant::now() + PATIENCE;
    wait_for(deadline, "bond link up", || bond.link().up);
    (bond, far)
}

/// A balance-xor bond (layer3+4) over two ring ports, through the facade:
/// its tx handle on an lcore sends `N` frames of 64 flows while the
/// control thread services the bond. Proves: every frame arrives exactly
/// once at the far end of the member bonding.rst's layer3+4 formula names
/// for its flow, in order per flow, both members carrying some; frames
/// the far ends send come up through the bond's rx handle, all of them;
/// and the bond's counters are the sum of its members' (and what the
/// members sent is what their far ends received).
#[test]
fn balance_xor_bond_over_two_rings_spreads_by_flow_and_sums_members() {
    const N: u32 = 2048;
    const FLOWS: u32 = 64;
    const BACK: usize = 100; // frames each far end sends to the bond
    let pool = pool("bond", 4096);
    let (mut bond, mut far) = xor_bond_over_two_rings(&pool);
    assert_eq!(bond.info().driver, "net_bonding");
    let mut q = bond.take_queues().unwrap();
    assert_eq!((q.rx.len(), q.tx.len()), (1, 1));
    assert!(matches!(bond.take_queues(), Err(PortError::QueuesTaken(_))));

    let deadline = Instant::now() + PATIENCE;
    let mut bond_tx = q.tx.pop().unwrap();
    let sender = {
        let pool = pool.clone();
        lcore::launch(0, None, StopFlag::new(), move |_| {
            let mut burst = Burst::new(32);
            let mut sent = 0;
            for seq in 0..N {
                let flow = 1024 + (seq % FLOWS) as u16 * 7;
                burst.push(frame(&pool, flow, seq, 64).unwrap()).unwrap();
                if burst.is_full() || seq + 1 == N {
                    sent += send_all(&mut bond_tx, &mut burst, deadline);
                }
            }
            (sent, bond_tx)
        })
        .unwrap()
    };
    // The control thread services the bond until the far ends hold it all.
    wait_for(deadline, "N frames on the members' wires", || {
        bond.service();
        far.iter().map(|(b, _)| b.pending()).sum::<usize>() >= N as usize
    });
    let (sent, bond_tx) = sender.join().unwrap();
    assert_eq!(sent, N as usize, "the bond took every frame");

    let mut per_member = [0usize; 2];
    let mut want_per_member = [0usize; 2];
    let mut seen = vec![false; N as usize];
    let mut last_of_flow: HashMap<u16, u32> = HashMap::new();
    for (k, (b, bq)) in far.iter_mut().enumerate() {
        let n = b.pending();
        for m in receive(&mut bq.rx[0], n, deadline) {
            let d = m.data();
            assert_eq!(d[12..14], [0x08, 0x00], "only our UDP frames: {d:02x?}");
            let seq = seq_of(d);
            assert!(
                !std::mem::replace(&mut seen[seq as usize], true),
                "{seq} twice"
            );
            assert_eq!(
                documented_layer34(d) as usize % 2,
                k,
                "flow {} on member {k}",
                src_port_of(d)
            );
            if let Some(prev) = last_of_flow.insert(src_port_of(d), seq) {
                assert!(seq > prev, "flow {} reordered", src_port_of(d));
            }
            per_member[k] += 1;
        }
    }
    for seq in 0..N {
        let f = frame(&pool, 1024 + (seq % FLOWS) as u16 * 7, seq, 64).unwrap();
        want_per_member[documented_layer34(f.data()) as usize % 2] += 1;
    }
    assert!(seen.iter().all(|&s| s), "every frame arrived");
    assert_eq!(per_member, want_per_member);
    assert!(per_member.iter().all(|&n| n > 0), "{per_member:?}");

    // The other way: what the far ends send comes up through the bond.
    for (k, (_, bq)) in far.iter_mut().enumerate() {
        let mut burst = Burst::new(BACK);
        for i in 0..BACK {
            let seq = (k * BACK + i) as u32;
            burst
                .push(frame(&pool, 2000 + k as u16, seq, 64).unwrap())
                .unwrap();
        }
        assert_eq!(send_all(&mut bq.tx[0], &mut burst, deadline), BACK);
    }
    let up = receive(&mut q.rx[0], 2 * BACK, deadline);
    let mut seqs: Vec<u32> = up.iter().map(|m| seq_of(m.data())).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..2 * BACK as u32).collect::<Vec<_>>());
    drop(up);

    // The bond's counters are its members', and the members' are the wire's.
    let members: Vec<PortStats> = (0..2).map(|i| bond.member(i).unwrap().stats()).collect();
    let s = bond.stats();
    assert_eq!(s, sum_stats(&members));
    for (k, (b, _)) in far.iter().enumerate() {
        let fs = b.stats();
        assert_eq!(members[k].opackets, fs.ipackets, "member {k} -> far end");
        assert_eq!(members[k].ipackets, fs.opackets, "far end -> member {k}");
    }
    assert_eq!((s.opackets, s.obytes), (N as u64, N as u64 * 64));
    assert_eq!(
        (s.ipackets, s.ibytes),
        (2 * BACK as u64, 2 * BACK as u64 * 64)
    );

    drop((q, bond_tx));
    bond.stop().unwrap();
    drop((bond, far));
    assert_eq!(pool.available(), pool.size(), "every mbuf back");
}

/// The bond's stop, as its docs state it: after `stop` its handles send and
/// receive nothing (frames stay with the caller, frames on the members'
/// wires stay there), `start` is refused while those handles live, and
/// once they are dropped it starts again and the frames that waited on the
/// wire come up.
#[test]
fn a_stopped_bond_silences_its_handles_and_restarts_once_they_are_dropped() {
    let pool = pool("bond-stop", 1024);
    let (mut bond, mut far) = xor_bond_over_two_rings(&pool);
    let mut q = bond.take_queues().unwrap();
    bond.stop().unwrap();
    assert!(!bond.link().up);

    let deadline = Instant::now() + PATIENCE;
    let mut burst = Burst::new(8);
    for seq in 0..4 {
        burst.push(frame(&pool, 9, seq, 64).unwrap()).unwrap();
    }
    assert_eq!(q.tx[0].tx_burst(&mut burst), 0, "stopped: sends nothing");
    assert_eq!(burst.len(), 4, "the frames are still the caller's");
    drop(burst);
    let mut from_far = Burst::new(3);
    for seq in 100..103 {
        from_far.push(frame(&pool, 9, seq, 64).unwrap()).unwrap();
    }
    assert_eq!(send_all(&mut far[0].1.tx[0], &mut from_far, deadline), 3);
    let mut got = Burst::new(8);
    assert_eq!(q.rx[0].rx_burst(&mut got), 0, "stopped: receives nothing");
    assert!(far.iter().all(|(b, _)| b.stats().ipackets == 0));

    let e = bond.start().unwrap_err();
    assert!(matches!(e, PortError::QueuesTaken(_)), "{e}");
    assert!(e.to_string().contains("bond0"), "{e}");
    drop(q);
    bond.start().unwrap();
    let mut q = bond.take_queues().unwrap();
    wait_for(deadline, "bond link up again", || bond.link().up);
    let up = receive(&mut q.rx[0], 3, deadline);
    let seqs: Vec<u32> = up.iter().map(|m| seq_of(m.data())).collect();
    assert_eq!(seqs, [100, 101, 102], "the frames that waited on the wire");

    drop((up, q));
    bond.stop().unwrap();
    drop((bond, far));
    assert_eq!(pool.available(), pool.size(), "every mbuf back");
}

/// The life cycle of a port as the `Port` docs state it, on a two-queue
/// null port opened by device string: clear errors out of order
/// (`NotConfigured`, `NotStarted`, `InvalidConfig`, `Started`), queues
/// handed out once per start (`QueuesTaken` the second time); after
/// `stop` every handle receives nothing and sends nothing (the frames stay
/// the caller's, the counters stand still) and the link is down; `start`
/// is refused while the old handles live and works once they are dropped;
/// and after the handles are dropped the port takes a new configuration
/// (three queues) whose handles carry their own queue numbers.
#[test]
fn stop_silences_handles_restart_waits_for_them_and_reconfigure_works_after() {
    let pool = pool("lifecycle", 1024);
    let mut p = pollux::open("null0,size=64", &PciOpenOpts::default()).unwrap();
    assert!(matches!(p.start(), Err(PortError::NotConfigured)));
    assert!(matches!(p.take_queues(), Err(PortError::NotStarted)));
    let mut conf = PortConf::new(pool.clone());
    conf.rx_queues = 2;
    conf.tx_queues = 2;
    let max = p.info().capabilities.max_rx_queues;
    for bad in [0, max + 1] {
        let mut c = conf.clone();
        c.rx_queues = bad;
        let e = p.configure(&c).unwrap_err();
        assert!(matches!(e, PortError::InvalidConfig(_)), "{e}");
        assert!(e.to_string().contains("rx queues"), "{e}");
    }
    p.configure(&conf).unwrap();
    assert!(matches!(p.take_queues(), Err(PortError::NotStarted)));
    p.start().unwrap();
    assert!(p.link().up);
    let mut q = p.take_queues().unwrap();
    assert_eq!((q.rx.len(), q.tx.len()), (2, 2));
    let e = p.take_queues().unwrap_err();
    assert!(matches!(e, PortError::QueuesTaken(_)), "{e}");
    assert!(matches!(p.configure(&conf), Err(PortError::Started)));

    let mut b = Burst::new(8);
    for (rx, tx) in q.rx.iter_mut().zip(&mut q.tx) {
        assert_eq!(rx.rx_burst(&mut b), 8);
        assert_eq!(tx.tx_burst(&mut b), 8);
    }
    let running = p.stats();
    assert_eq!((running.ipackets, running.opackets), (16, 16));

    p.stop().unwrap();
    assert!(!p.link().up);
    for rx in &mut q.rx {
        assert_eq!(rx.rx_burst(&mut b), 0, "stopped: receives nothing");
    }
    assert!(b.is_empty());
    assert!(pool.alloc_bulk(&mut b, 3));
    for tx in &mut q.tx {
        assert_eq!(tx.tx_burst(&mut b), 0, "stopped: sends nothing");
        assert_eq!(b.len(), 3, "the frames are still the caller's");
    }
    b.clear();
    assert_eq!(p.stats(), running, "stopped handles count nothing");

    let e = p.start().unwrap_err();
    assert!(matches!(e, PortError::QueuesTaken(_)), "{e}");
    assert!(e.to_string().contains("null0"), "{e}");
    drop(q);
    p.start().unwrap();
    let mut q = p.take_queues().unwrap();
    assert_eq!(q.rx[1].rx_burst(&mut b), 8, "the new handles work");
    b.clear();
    assert_eq!(p.stats().ipackets, 24, "and count on from before");

    // While stopped with no handle out, the port takes a new configuration.
    p.stop().unwrap();
    drop(q);
    conf.rx_queues = 3;
    conf.tx_queues = 3;
    conf.port_id = 5;
    p.configure(&conf).unwrap();
    p.start().unwrap();
    let mut q = p.take_queues().unwrap();
    assert_eq!((q.rx.len(), q.tx.len()), (3, 3));
    for (i, (rx, tx)) in q.rx.iter_mut().zip(&mut q.tx).enumerate() {
        assert_eq!(rx.rx_burst(&mut b), 8);
        assert!(b
            .iter()
            .all(|m| (m.rx().port, m.rx().queue) == (5, i as u16)));
        assert_eq!(tx.tx_burst(&mut b), 8);
    }
    let qs = p.queue_stats();
    assert_eq!(qs.len(), 3);
    assert!(
        qs.iter().all(|s| (s.rx_packets, s.tx_packets) == (8, 8)),
        "{qs:?}"
    );

    p.stop().unwrap();
    drop((q, p));
    assert_eq!(pool.available(), pool.size(), "every mbuf back");
}

/// A stop does not lose what is on the wire: frames ring1 sends while
/// ring0 is stopped wait there; ring0's old rx handle returns nothing;
/// once it is dropped and ring0 restarted, the new handle receives them
/// all, in order.
#[test]
fn frames_on_a_ring_wire_survive_a_stop_and_restart_of_the_receiver() {
    let pool = pool("wire-stop", 256);
    let specs = [
        pollux::soft::vdev::parse("ring0,peer=ring1").unwrap(),
        pollux::soft::vdev::parse("ring1").unwrap(),
    ];
    let mut ports = pollux::soft::vdev::create_all(&specs).unwrap();
    let mut queues = Vec::new();
    for (id, p) in ports.iter_mut().enumerate() {
        bring_up(p, &pool, id as u16, 1);
        queues.push(p.take_queues().unwrap());
    }
    ports[0].stop().unwrap();
    let deadline = Instant::now() + PATIENCE;
    let mut b = Burst::new(16);
    for seq in 0..10 {
        b.push(frame(&pool, 9, seq, 64).unwrap()).unwrap();
    }
    assert_eq!(send_all(&mut queues[1].tx[0], &mut b, deadline), 10);
    assert_eq!(queues[0].rx[0].rx_burst(&mut b), 0, "stopped: nothing");
    assert_eq!(ports[0].stats().ipackets, 0);

    assert!(matches!(ports[0].start(), Err(PortError::QueuesTaken(_))));
    queues[0] = Default::default(); // the old handles go
    ports[0].start().unwrap();
    queues[0] = ports[0].take_queues().unwrap();
    let got = receive(&mut queues[0].rx[0], 10, deadline);
    let seqs: Vec<u32> = got.iter().map(|m| seq_of(m.data())).collect();
    assert_eq!(seqs, (0..10).collect::<Vec<_>>());
    assert_eq!(ports[0].stats().ipackets, 10);

    drop((got, queues));
    drop(ports);
    assert_eq!(pool.available(), pool.size(), "every mbuf back");
}

/// A pool far smaller than the rx rings (64 buffers for four queues of 512
/// descriptors), what the API does with it: software ports take buffers
/// when they receive, not at configure, so `configure` accepts it; rx then
/// hands out what the pool has, and once the application holds every
/// buffer each queue's rx returns nothing and counts `rx_nombuf` (also
/// under its xstats name). Proves no buffer is lost or counted twice at
/// any point (held + free = size), that reception resumes once buffers
/// come back, and that the counters agree with what was received. A pool
/// whose buffers cannot hold a frame is the case `configure` refuses, with
/// a message that says why.
#[test]
fn a_pool_smaller_than_the_rx_rings_counts_nombuf_and_loses_nothing() {
    const SIZE: usize = 64;
    let pool = pool_uncached("tiny", SIZE);
    let mut p = pollux::open("null0,size=64", &PciOpenOpts::default()).unwrap();
    let mut conf = PortConf::new(pool.clone());
    conf.rx_queues = 4;
    conf.tx_queues = 4;
    assert!(usize::from(conf.rx_queues) * usize::from(conf.rx_desc) > SIZE);
    p.configure(&conf).unwrap();
    p.start().unwrap();
    let mut q = p.take_queues().unwrap();

    let mut held: Vec<Burst<Mbuf>> = Vec::new();
    let mut received = 0usize;
    loop {
        let mut round = 0;
        for rx in &mut q.rx {
            let mut b = Burst::new(32);
            let n = rx.rx_burst(&mut b);
            assert_eq!(b.len(), n);
            round += n;
            held.push(b);
            let in_hand: usize = held.iter().map(Burst::len).sum();
            assert_eq!(in_hand + pool.available(), SIZE, "a buffer went missing");
        }
        received += round;
        if round == 0 {
            break;
        }
        assert!(received <= SIZE, "handed out more than the pool has");
    }
    assert!(received > 0);
    let s = p.stats();
    assert_eq!(s.ipackets as usize, received);
    assert!(s.rx_nombuf > 0, "an empty pool is counted: {s:?}");
    let qs = p.queue_stats();
    assert_eq!(qs.iter().map(|q| q.rx_packets).sum::<u64>(), s.ipackets);
    let xstat = |name: &str| {
        p.xstats()
            .into_iter()
            .find(|x| x.name == name)
            .unwrap()
            .value
    };
    assert_eq!(xstat("rx_mbuf_allocation_errors"), s.rx_nombuf);
    assert_eq!(xstat("rx_good_packets"), s.ipackets);

    // Give the buffers back (as a transmit would): reception resumes.
    let queues = q.tx.len();
    for (i, b) in held.iter_mut().enumerate() {
        let n = b.len();
        assert_eq!(q.tx[i % queues].tx_burst(b), n);
    }
    assert_eq!(pool.available(), SIZE);
    let mut b = Burst::new(32);
    assert_eq!(q.rx[3].rx_burst(&mut b), 32, "reception resumes");
    drop(b);
    assert_eq!(p.stats().opackets as usize, received);

    p.stop().unwrap();
    drop((q, held, p));
    assert_eq!(pool.available(), SIZE, "every mbuf back");

    // Buffers too small for the frames: configure says so.
    let mut c = MempoolConfig::new("too-small", 16);
    c.data_room = pollux::core::mbuf::HEADROOM + 32;
    let small = Mempool::new(c, &AnonMemory::default()).unwrap();
    let mut p = pollux::open("null1,size=64", &PciOpenOpts::default()).unwrap();
    let e = p.configure(&PortConf::new(small)).unwrap_err();
    assert!(matches!(e, PortError::InvalidConfig(_)), "{e}");
    assert!(e.to_string().contains("does not fit"), "{e}");
}

/// Classic pcap, microsecond timestamps, little-endian, Ethernet.
fn write_pcap(path: &std::path::Path, frames: &[Vec<u8>]) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]); // thiszone, sigfigs
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    for (i, f) in frames.iter().enumerate() {
        out.extend_from_slice(&(i as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    std::fs::write(path, out).unwrap();
}

/// The frames of a classic pcap file of either byte order and timestamp
/// resolution, read here rather than by the port that wrote it.
fn read_pcap(path: &std::path::Path) -> Vec<Vec<u8>> {
    let d = std::fs::read(path).unwrap();
    assert!(d.len() >= 24, "{}: no pcap header", path.display());
    let magic = u32::from_le_bytes(d[0..4].try_into().unwrap());
    let le = match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d => true,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => false,
        m => panic!("{}: not a pcap file (magic {m:08x})", path.display()),
    };
    let word = |b: &[u8]| {
        let b: [u8; 4] = b.try_into().unwrap();
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    assert_eq!(word(&d[20..24]), 1, "link type Ethernet");
    let mut frames = Vec::new();
    let mut at = 24;
    while at < d.len() {
        let len = word(&d[at + 8..at + 12]) as usize;
        assert_eq!(word(&d[at + 12..at + 16]) as usize, len, "not truncated");
        frames.push(d[at + 16..at + 16 + len].to_vec());
        at += 16 + len;
    }
    assert_eq!(at, d.len(), "{}: cut in a record", path.display());
    frames
}

/// A pcap replay through a pool of 8 buffers with bursts of 32, the
/// received frames written out through the same port's tx file: each burst
/// stops where the pool runs dry and counts `rx_nombuf`, and the record
/// that found no buffer is the next one delivered. Proves, from the output
/// file read back by hand, that every record of the input went through
/// exactly once, in order and byte for byte, and that no buffer was lost.
#[test]
fn pcap_replay_through_a_tiny_pool_delivers_every_record_once() {
    const RECORDS: usize = 100;
    const POOL: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let (rx_path, tx_path) = (dir.path().join("in.pcap"), dir.path().join("out.pcap"));
    let scratch = pool_uncached("pcap-scratch", 1);
    let input: Vec<Vec<u8>> = (0..RECORDS)
        .map(|i| {
            let m = frame(&scratch, 9, i as u32, 60 + i % 40).unwrap();
            m.data().to_vec()
        })
        .collect();
    write_pcap(&rx_path, &input);

    let pool = pool_uncached("pcap", POOL);
    let device = format!("pcap0,rx={},tx={}", rx_path.display(), tx_path.display());
    let mut p = pollux::open(&device, &PciOpenOpts::default()).unwrap();
    assert_eq!(p.info().driver, "net_pcap");
    p.configure(&PortConf::new(pool.clone())).unwrap();
    p.start().unwrap();
    let mut q = p.take_queues().unwrap();

    let deadline = Instant::now() + PATIENCE;
    let (mut received, mut short_bursts) = (0, 0);
    let mut b = Burst::new(32);
    while received < RECORDS {
        assert!(Instant::now() < deadline, "replay stalled at {received}");
        let n = q.rx[0].rx_burst(&mut b);
        assert!(n <= POOL, "{n} frames from a pool of {POOL}");
        short_bursts += usize::from(n < b.capacity() && received + n < RECORDS);
        received += n;
        assert_eq!(q.tx[0].tx_burst(&mut b), n);
    }
    assert_eq!(q.rx[0].rx_burst(&mut b), 0, "the file is done");
    let s = p.stats();
    assert_eq!((s.ipackets, s.opackets), (RECORDS as u64, RECORDS as u64));
    assert_eq!(s.ierrors, 0);
    assert!(
        s.rx_nombuf >= short_bursts as u64 && short_bursts > 0,
        "every burst cut short by the pool is counted: {s:?}, {short_bursts} short"
    );

    p.stop().unwrap();
    drop(q); // the tx handle completes the file when dropped
    drop(p);
    assert_eq!(pool.available(), POOL, "every mbuf back");
    let output = read_pcap(&tx_path);
    assert_eq!(output.len(), RECORDS);
    for (i, (o, w)) in output.iter().zip(&input).enumerate() {
        assert_eq!(o, w, "record {i}");
    }
}

/// Every mbuf comes home after a run on two lcores (null to ring, null to
/// null) that stops with frames still in flight: 256 on a ring wire nobody
/// reads and a full burst the wire refused in an lcore's hands. Proves the
/// pool's count is exact at each step (out of the pool: exactly the frames
/// on the wire and in hand; nothing stays in the lcores' mempool caches
/// as "used" after they exit), and that dropping the burst, the handles
/// and the ports gives every buffer back (`available() == size()`) only
/// then, not before.
#[test]
fn every_mbuf_returns_to_the_pool_after_a_run_stopped_mid_flight() {
    let pool = pool("homecoming", 2048);
    let opts = PciOpenOpts::default();
    let specs = ["ring0,peer=ring1,capacity=256", "ring1"]
        .iter()
        .map(|s| pollux::soft::vdev::parse(s).unwrap())
        .collect::<Vec<_>>();
    let mut rings = pollux::soft::vdev::create_all(&specs).unwrap();
    let mut null = pollux::open("null0,size=64", &opts).unwrap();
    bring_up(&mut null, &pool, 0, 2);
    for (id, r) in rings.iter_mut().enumerate() {
        bring_up(r, &pool, 1 + id as u16, 1);
    }
    let nq = null.take_queues().unwrap();
    let mut r0 = rings[0].take_queues().unwrap();
    let r1 = rings[1].take_queues().unwrap();

    // lcore 0: null rx 0 -> ring0, and ring1 never reads, so the wire fills
    // up and the lcore keeps a full burst the wire refused; it says so
    // once that happened. lcore 1: null rx 1 -> null tx 1, buffers cycling
    // through its mempool cache; it says so once it ran.
    let stop = StopFlag::new();
    let (refused, cycled) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let mut handles = nq.rx.into_iter().zip(nq.tx).collect::<Vec<_>>();
    let (mut rx1, mut tx1) = handles.pop().unwrap();
    let (mut rx0, _tx0) = handles.pop().unwrap();
    let mut ring_tx = r0.tx.pop().unwrap();
    let a = {
        let refused = refused.clone();
        lcore::launch(0, None, stop.clone(), move |ctx| {
            let mut burst = Burst::new(32);
            while !ctx.stop.is_stopped() {
                rx0.rx_burst(&mut burst);
                if ring_tx.tx_burst(&mut burst) == 0 && burst.is_full() {
                    refused.store(true, Ordering::Release);
                }
            }
            burst // frames still in the application's hands
        })
        .unwrap()
    };
    let b = {
        let cycled = cycled.clone();
        lcore::launch(1, None, stop.clone(), move |ctx| {
            let mut burst = Burst::new(32);
            while !ctx.stop.is_stopped() {
                rx1.rx_burst(&mut burst);
                tx1.tx_burst(&mut burst);
                cycled.store(true, Ordering::Release);
            }
        })
        .unwrap()
    };
    let deadline = Instant::now() + PATIENCE;
    wait_for(
        deadline,
        "ring0's wire full and the null loop running",
        || refused.load(Ordering::Acquire) && cycled.load(Ordering::Acquire),
    );
    stop.stop();
    let left_in_hand = a.join().unwrap();
    b.join().unwrap();
    null.stop().unwrap();

    let on_wire = rings[0].stats().opackets as usize;
    assert_eq!(on_wire, 256, "the wire holds its capacity");
    assert_eq!(
        left_in_hand.len(),
        32,
        "the lcore kept what the wire refused"
    );
    assert_eq!(
        pool.in_use(),
        on_wire + left_in_hand.len(),
        "out of the pool: exactly the frames on the wire and in hand"
    );
    drop(left_in_hand);
    assert_eq!(pool.in_use(), on_wire);
    drop((handles, r0, r1));
    assert_eq!(pool.in_use(), on_wire, "the wire still holds its frames");
    drop(rings); // the wire and what waits on it
    drop(null);
    assert_eq!(pool.in_use(), 0);
    assert_eq!(pool.available(), pool.size(), "every mbuf back");
}
