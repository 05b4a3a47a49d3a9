//! The rx/tx descriptor paths against rings in plain memory, with the
//! device played by `pollux_ixgbevf::testing` as the datasheet describes it.

use pollux_core::{
    AnonMemory, Burst, HugePages, MacAddr, Mbuf, MemoryProvider, Mempool, MempoolConfig,
    PacketType, RxFlags, TxFlags,
};
use pollux_ixgbevf::desc::{AdvRxDesc, AdvTxDesc, DescRing};
use pollux_ixgbevf::regs;
use pollux_ixgbevf::rx::RxRing;
use pollux_ixgbevf::testing::{SentFrame, SimRx, SimTx};
use pollux_ixgbevf::tx::TxRing;
use pollux_vfio::Bar;

mod common;
use common::sim::{deliver, process};

fn pool(n: usize) -> Mempool {
    let mut cfg = MempoolConfig::new("t", n);
    cfg.cache_size = 0;
    Mempool::new(cfg, &AnonMemory::new(HugePages::Never)).unwrap()
}

fn ring<D: Copy>(n: u16) -> DescRing<D> {
    let r = AnonMemory::new(HugePages::Never)
        .allocate(n as usize * 16)
        .unwrap();
    DescRing::new(r, n).unwrap()
}

fn frame(len: usize, seed: u8) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect();
    f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f
}

struct Rx {
    bar: Bar,
    q: RxRing,
    dev: SimRx,
    pool: Mempool,
}

fn rx_setup(n: u16, pool_size: usize) -> Rx {
    let bar = Bar::plain_memory(0x4000);
    let pool = pool(pool_size);
    let mut q = RxRing::new(ring(n), pool.clone(), 3, 0);
    assert_eq!(q.arm(), 0);
    bar.write32(regs::rdt(0), q.initial_tail());
    Rx {
        bar,
        q,
        dev: SimRx::default(),
        pool,
    }
}

#[test]
fn rx_delivers_frames_with_metadata_and_refills() {
    let mut t = rx_setup(64, 256);
    let f1 = frame(60, 1);
    let f2 = frame(1514, 2);
    assert!(deliver(&mut t.dev, &t.bar, 0, t.q.ring(), &f1, 0, 0, 0, 0));
    assert!(deliver(
        &mut t.dev,
        &t.bar,
        0,
        t.q.ring(),
        &f2,
        regs::RXD_STAT_VP | regs::RXD_STAT_IPCS | regs::RXD_STAT_L4CS | regs::RXD_ERR_TCPE,
        0x0064,
        regs::PKTTYPE_IPV4 | regs::PKTTYPE_TCP | 0x1,
        0xdead_beef,
    ));
    let mut b = Burst::new(32);
    assert_eq!(t.q.rx_burst(&t.bar, &mut b), 2);
    let m: Vec<Mbuf> = b.drain().collect();
    assert_eq!(m[0].data(), &f1[..]);
    assert_eq!(m[0].rx().port, 3);
    assert_eq!(m[0].rx().packet_type, PacketType::ETHER);
    assert_eq!(m[1].data(), &f2[..]);
    assert_eq!(m[1].rx().vlan_tci, 0x64);
    assert_eq!(
        m[1].rx().flags,
        RxFlags::VLAN_STRIPPED | RxFlags::IP_CKSUM_GOOD | RxFlags::L4_CKSUM_BAD | RxFlags::RSS_HASH
    );
    assert_eq!(
        m[1].rx().rss_hash,
        0xdead_beef,
        "RSS type 1 (IPv4/TCP): the hash is valid"
    );
    assert!(
        !m[0].rx().flags.contains(RxFlags::RSS_HASH),
        "RSS type 0: no hash"
    );
    assert_eq!(
        m[1].rx().packet_type,
        PacketType::ETHER | PacketType::VLAN | PacketType::IPV4 | PacketType::TCP
    );
    // The ring kept all its buffers: the pool lent 63 to the ring plus the
    // two we hold.
    assert_eq!(t.pool.in_use(), 64 + 2);
    drop(m);
    assert_eq!(t.pool.in_use(), 64);
    assert_eq!(t.q.stats.packets, 2);
    assert_eq!(t.q.stats.bytes, 60 + 1514);
}

#[test]
fn rx_tail_moves_in_batches_and_wraps() {
    let mut t = rx_setup(32, 256);
    // 32 descriptors: free_thresh = 8; the device has 31 to start with.
    let mut b = Burst::new(64);
    let mut total = 0;
    for round in 0..20 {
        let mut delivered = 0;
        while deliver(
            &mut t.dev,
            &t.bar,
            0,
            t.q.ring(),
            &frame(64, round),
            0,
            0,
            0,
            0,
        ) {
            delivered += 1;
        }
        assert!(delivered > 0, "the device starved in round {round}");
        let got = t.q.rx_burst(&t.bar, &mut b);
        assert_eq!(got, delivered);
        total += got;
        b.clear();
        // Never gives the device the slot in front of its head: head != tail
        // after the doorbell unless nothing is held back.
        let tail = t.bar.read32(regs::rdt(0)) as u16;
        assert!(tail < 32);
    }
    assert!(total > 32 * 5, "wrapped several times");
    assert_eq!(t.q.stats.packets as usize, total);
    assert_eq!(t.pool.in_use(), 32);
}

#[test]
fn rx_burst_stops_at_spare_room_and_leaves_the_rest() {
    let mut t = rx_setup(64, 256);
    for i in 0..10 {
        assert!(deliver(
            &mut t.dev,
            &t.bar,
            0,
            t.q.ring(),
            &frame(100, i),
            0,
            0,
            0,
            0
        ));
    }
    let mut b = Burst::new(4);
    assert_eq!(t.q.rx_burst(&t.bar, &mut b), 4);
    assert_eq!(t.q.rx_burst(&t.bar, &mut b), 0, "full burst takes nothing");
    b.clear();
    let mut b = Burst::new(32);
    assert_eq!(t.q.rx_burst(&t.bar, &mut b), 6);
    assert_eq!(b.as_slice()[0].data(), &frame(100, 4)[..], "order kept");
}

#[test]
fn rx_survives_a_confused_device() {
    let mut t = rx_setup(32, 128);
    let good = frame(80, 9);
    // Length beyond the buffer, zero length, a frame error, and a frame in
    // two pieces (not EOP then EOP): all dropped and counted, no panic.
    t.dev
        .deliver_raw(t.q.ring(), 0, (60_000u64 << 32) | regs::RXD_STAT_EOP as u64);
    t.dev.deliver_raw(t.q.ring(), 0, regs::RXD_STAT_EOP as u64);
    t.dev.deliver_raw(
        t.q.ring(),
        0,
        (64u64 << 32) | (regs::RXD_STAT_EOP | 0x0100_0000) as u64, // CE: a CRC error
    );
    t.dev.deliver_raw(t.q.ring(), 0, 2048u64 << 32);
    t.dev
        .deliver_raw(t.q.ring(), 0, (100u64 << 32) | regs::RXD_STAT_EOP as u64);
    assert!(deliver(
        &mut t.dev,
        &t.bar,
        0,
        t.q.ring(),
        &good,
        0,
        0,
        0,
        0
    ));
    let mut b = Burst::new(32);
    assert_eq!(t.q.rx_burst(&t.bar, &mut b), 1);
    assert_eq!(b.as_slice()[0].data(), &good[..]);
    assert_eq!(t.q.stats.errors, 4);
    // Random garbage with DD set in every slot: never panics, never yields
    // a packet longer than a buffer.
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..2000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        t.dev.deliver_raw(t.q.ring(), seed, seed.rotate_left(29));
        let mut b = Burst::new(8);
        t.q.rx_burst(&t.bar, &mut b);
        for m in b.iter() {
            assert!(m.len() <= 2048);
        }
    }
}

#[test]
fn rx_pool_exhaustion_counts_and_recovers() {
    let mut t = rx_setup(32, 40);
    // 32 in the ring, 8 left.
    for i in 0..20 {
        assert!(deliver(
            &mut t.dev,
            &t.bar,
            0,
            t.q.ring(),
            &frame(64, i),
            0,
            0,
            0,
            0
        ));
    }
    let mut held = Burst::new(64);
    let got = t.q.rx_burst(&t.bar, &mut held);
    assert_eq!(got, 8, "only as many as the pool could replace");
    assert_eq!(t.q.stats.nombuf, 1);
    held.clear();
    assert_eq!(
        t.q.rx_burst(&t.bar, &mut held),
        8,
        "more after buffers came back"
    );
    held.clear();
    assert_eq!(t.q.rx_burst(&t.bar, &mut held), 4, "and the rest");
    assert_eq!(t.q.stats.packets, 20);
}

struct Tx {
    bar: Bar,
    q: TxRing,
    dev: SimTx,
    pool: Mempool,
}

fn tx_setup(n: u16, pool_size: usize) -> Tx {
    Tx {
        bar: Bar::plain_memory(0x4000),
        q: TxRing::new(ring(n), 0),
        dev: SimTx::default(),
        pool: pool(pool_size),
    }
}

fn pkts(pool: &Mempool, n: usize, len: usize) -> Burst<Mbuf> {
    let mut b = Burst::new(n.max(1));
    for i in 0..n {
        let mut m = pool.alloc().unwrap();
        assert!(m.copy_from(&frame(len, i as u8)));
        b.push(m).unwrap();
    }
    b
}

#[test]
fn tx_sends_frames_as_written_and_reclaims() {
    let mut t = tx_setup(64, 128);
    let mut b = pkts(&t.pool, 10, 60);
    assert_eq!(t.q.tx_burst(&t.bar, &mut b), 10);
    assert!(b.is_empty());
    assert_eq!(
        t.bar.read32(regs::tdt(0)),
        11,
        "one doorbell for the burst: a context descriptor (MACLEN 14) and ten data"
    );
    let mut out = Vec::new();
    assert_eq!(
        process(&mut t.dev, &t.bar, 0, t.q.ring(), true, &mut out),
        10
    );
    for (i, f) in out.iter().enumerate() {
        assert_eq!(f.bytes, frame(60, i as u8));
        assert_eq!(f.cmd_type_len & 0xFFFF, 60);
        let want =
            regs::TXD_DTYP_DATA | regs::TXD_DCMD_DEXT | regs::TXD_DCMD_IFCS | regs::TXD_DCMD_EOP;
        assert_eq!(f.cmd_type_len & want, want);
        assert_eq!(f.olinfo_status >> regs::TXD_PAYLEN_SHIFT, 60);
        assert_ne!(
            f.olinfo_status & regs::TXD_CC,
            0,
            "CC on every data descriptor"
        );
        let c = f.context.expect("context 0 in force");
        assert_eq!((c[0] >> regs::TXCTX_MACLEN_SHIFT) & 0x7F, 14);
        assert_eq!(c[0] >> 16, 0, "no VLAN");
    }
    // RS only on the burst's last descriptor (threshold 16 not reached).
    let rs: Vec<bool> = out
        .iter()
        .map(|f| f.cmd_type_len & regs::TXD_DCMD_RS != 0)
        .collect();
    assert_eq!(rs.iter().filter(|x| **x).count(), 1);
    assert!(rs[9]);
    assert_eq!(t.pool.in_use(), 10, "buffers held until reclaimed");
    assert_eq!(t.q.reclaim(), 11);
    assert_eq!(t.pool.in_use(), 0);
}

#[test]
fn tx_full_ring_leaves_packets_with_the_caller() {
    let mut t = tx_setup(32, 128);
    let mut b = pkts(&t.pool, 40, 64);
    // 31 usable descriptors, one of them the context, the device does
    // nothing meanwhile.
    assert_eq!(t.q.tx_burst(&t.bar, &mut b), 30);
    assert_eq!(b.len(), 10);
    assert_eq!(t.q.tx_burst(&t.bar, &mut b), 0);
    let mut out = Vec::new();
    process(&mut t.dev, &t.bar, 0, t.q.ring(), false, &mut out);
    assert_eq!(
        t.q.tx_burst(&t.bar, &mut b),
        10,
        "room again after completion, same context"
    );
    process(&mut t.dev, &t.bar, 0, t.q.ring(), false, &mut out);
    assert_eq!(out.len(), 40);
    t.q.reclaim();
    assert_eq!(t.pool.in_use(), 0);
}

#[test]
fn tx_offloads_write_a_context_descriptor_once() {
    let mut t = tx_setup(64, 128);
    let mut b = pkts(&t.pool, 3, 74);
    for m in b.iter_mut() {
        let o = m.tx_mut();
        o.flags = TxFlags::VLAN_INSERT | TxFlags::IPV4 | TxFlags::IPV4_CKSUM | TxFlags::UDP_CKSUM;
        o.vlan_tci = 100;
        o.l2_len = 14;
        o.l3_len = 20;
        o.l4_len = 8;
    }
    assert_eq!(t.q.tx_burst(&t.bar, &mut b), 3);
    assert_eq!(t.bar.read32(regs::tdt(0)), 4, "one context + three data");
    let mut out: Vec<SentFrame> = Vec::new();
    process(&mut t.dev, &t.bar, 0, t.q.ring(), true, &mut out);
    assert_eq!(out.len(), 3);
    for f in &out {
        assert_ne!(f.cmd_type_len & regs::TXD_DCMD_VLE, 0);
        assert_eq!(
            f.olinfo_status & (regs::TXD_POPTS_IXSM | regs::TXD_POPTS_TXSM),
            regs::TXD_POPTS_IXSM | regs::TXD_POPTS_TXSM
        );
        let c = f.context.expect("context");
        assert_eq!(c[0] >> 16, 100, "VLAN tag");
        assert_eq!((c[0] >> 9) & 0x7F, 14, "MACLEN");
        assert_eq!(c[0] & 0x1FF, 20, "IPLEN");
        assert_eq!(c[2] & regs::TXCTX_TUCMD_IPV4, regs::TXCTX_TUCMD_IPV4);
        assert_eq!(c[2] & regs::TXCTX_TUCMD_L4T_TCP, 0, "UDP");
    }
    // A different VLAN needs a new context; the same does not.
    let mut b = pkts(&t.pool, 1, 74);
    {
        let o = b.iter_mut().next().unwrap().tx_mut();
        o.flags = TxFlags::VLAN_INSERT;
        o.vlan_tci = 200;
        o.l2_len = 14;
    }
    t.q.tx_burst(&t.bar, &mut b);
    assert_eq!(t.bar.read32(regs::tdt(0)), 6);
    out.clear();
    process(&mut t.dev, &t.bar, 0, t.q.ring(), true, &mut out);
    assert_eq!(out[0].context.unwrap()[0] >> 16, 200);
}

#[test]
fn tx_drops_empty_and_oversized_packets_and_counts_them() {
    let mut t = tx_setup(32, 16);
    let mut b = Burst::new(4);
    b.push(t.pool.alloc().unwrap()).unwrap();
    assert_eq!(t.q.tx_burst(&t.bar, &mut b), 1);
    assert_eq!(t.q.stats.errors, 1);
    assert_eq!(
        t.bar.read32(regs::tdt(0)),
        0,
        "nothing to send, no doorbell"
    );
    assert_eq!(t.pool.in_use(), 0);
}

#[test]
fn tx_reset_returns_in_flight_buffers() {
    let mut t = tx_setup(32, 64);
    let mut b = pkts(&t.pool, 20, 64);
    t.q.tx_burst(&t.bar, &mut b);
    assert_eq!(t.pool.in_use(), 20);
    t.q.reset();
    assert_eq!(t.pool.in_use(), 0);
    assert_eq!(t.q.stats.errors, 20);
    assert_eq!(t.q.free_descs(), 31);
    // After a reset the context is written again before the first packet.
    let mut b = pkts(&t.pool, 1, 64);
    t.q.tx_burst(&t.bar, &mut b);
    assert_eq!(t.q.free_descs(), 29);
}

#[test]
fn rx_to_tx_forwarding_round_trip_keeps_every_buffer() {
    let mut rx = rx_setup(128, 512);
    let mut tx = TxRing::new(ring(128), 0);
    let mut dev_tx = SimTx::default();
    let bar_tx = Bar::plain_memory(0x4000);
    let mut b = Burst::new(32);
    let mut sent = Vec::new();
    let mut delivered = 0;
    for round in 0..200u32 {
        for _ in 0..(round % 40) {
            if deliver(
                &mut rx.dev,
                &rx.bar,
                0,
                rx.q.ring(),
                &frame(64 + (round as usize % 100), round as u8),
                0,
                0,
                0,
                0,
            ) {
                delivered += 1;
            }
        }
        rx.q.rx_burst(&rx.bar, &mut b);
        for m in b.iter_mut() {
            // macswap-ish: touch the frame like an application would.
            let d = m.data_mut();
            d[0..6].copy_from_slice(&MacAddr([2, 0, 0, 0, 0, 2]).0);
        }
        tx.tx_burst(&bar_tx, &mut b);
        process(&mut dev_tx, &bar_tx, 0, tx.ring(), false, &mut sent);
    }
    // Drain what is still in the rx ring and the burst.
    for _ in 0..1000 {
        rx.q.rx_burst(&rx.bar, &mut b);
        tx.tx_burst(&bar_tx, &mut b);
        process(&mut dev_tx, &bar_tx, 0, tx.ring(), false, &mut sent);
        if b.is_empty() && sent.len() == delivered {
            break;
        }
    }
    tx.reclaim();
    assert_eq!(sent.len(), delivered);
    assert_eq!(rx.pool.in_use(), 128, "only the rx ring's buffers are out");
    let _ = AdvTxDesc::default();
    let _ = AdvRxDesc::default();
}

/// A packet from a pool the device cannot reach (not mapped in the VF's
/// IOMMU domain) is taken, dropped and counted, never given to the device;
/// the check runs once per change of pool, not per packet.
#[test]
fn tx_refuses_packets_the_device_cannot_reach() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let mut t = tx_setup(64, 128);
    let foreign = pool(16);
    let (reach_lo, reach_len) = t.pool.iova_range();
    let asked = Arc::new(AtomicUsize::new(0));
    let asked2 = asked.clone();
    t.q.set_dma_check(Box::new(move |iova, len| {
        asked2.fetch_add(1, Ordering::Relaxed);
        iova.0 >= reach_lo.0 && iova.0 + len <= reach_lo.0 + reach_len as u64
    }));
    let mut b = Burst::new(16);
    for (p, n) in [(&t.pool, 4), (&foreign, 3), (&t.pool, 2)] {
        let mut part = pkts(p, n, 60);
        while let Some(m) = part.pop_front() {
            b.push(m).unwrap();
        }
    }
    assert_eq!(t.q.tx_burst(&t.bar, &mut b), 9, "all taken");
    assert_eq!(
        t.bar.read32(regs::tdt(0)),
        7,
        "only the reachable six (and their context) were given to the device"
    );
    assert_eq!((t.q.stats.unreachable, t.q.stats.errors), (3, 3));
    assert_eq!(t.q.stats.packets, 6);
    assert_eq!(asked.load(Ordering::Relaxed), 3, "asked per change of pool");
    assert_eq!(foreign.available(), 16, "the refused buffers went back");
    let mut sent = Vec::new();
    process(&mut t.dev, &t.bar, 0, t.q.ring(), true, &mut sent);
    assert_eq!(sent.len(), 6);
}
