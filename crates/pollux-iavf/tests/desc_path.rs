//! The rx/tx descriptor paths against rings in plain memory, the device
//! played by `pollux_iavf::testing` as the descriptor layouts describe it.

use pollux_core::{
    AnonMemory, Burst, HugePages, Mbuf, MemoryProvider, Mempool, MempoolConfig, PacketType,
    RxFlags, TxFlags,
};
use pollux_iavf::desc::{DescRing, RxDesc};
use pollux_iavf::regs;
use pollux_iavf::rx::RxRing;
use pollux_iavf::testing::{SimRx, SimTx};
use pollux_iavf::tx::TxRing;
use pollux_vfio::Bar;

mod common;
use common::sim::{deliver, process};

fn pool(n: usize) -> Mempool {
    let mut cfg = MempoolConfig::new("t", n);
    cfg.cache_size = 0;
    Mempool::new(cfg, &AnonMemory::new(HugePages::Never)).unwrap()
}

fn ring<D: Copy>(n: u16, size: usize) -> DescRing<D> {
    let r = AnonMemory::new(HugePages::Never)
        .allocate(n as usize * size)
        .unwrap();
    DescRing::new(r, n).unwrap()
}

fn frame(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

struct Rx {
    bar: Bar,
    q: RxRing,
    dev: SimRx,
    pool: Mempool,
}

fn rx_setup(n: u16, pool_size: usize) -> Rx {
    let bar = Bar::plain_memory(0x10000);
    let pool = pool(pool_size);
    let mut q = RxRing::new(ring(n, 32), pool.clone(), 3, 0);
    assert_eq!(q.arm(), 0);
    bar.write32(regs::qrx_tail(0), q.initial_tail());
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
    let (f1, f2, f3) = (frame(60, 1), frame(1514, 2), frame(200, 3));
    assert!(deliver(&mut t.dev, &t.bar, 0, t.q.ring(), &f1, 0, 1, 0, 0));
    let rss = regs::RXD_FLTSTAT_RSS_HASH << regs::RXD_FLTSTAT_SHIFT;
    assert!(deliver(
        &mut t.dev,
        &t.bar,
        0,
        t.q.ring(),
        &f2,
        regs::RXD_STATUS_L2TAG1P | regs::RXD_STATUS_L3L4P | regs::RXD_ERROR_L4E | rss,
        regs::PTYPE_IPV4_TCP,
        0x0064,
        0xdead_beef,
    ));
    assert!(deliver(
        &mut t.dev,
        &t.bar,
        0,
        t.q.ring(),
        &f3,
        regs::RXD_STATUS_L3L4P | regs::RXD_ERROR_IPE,
        regs::PTYPE_IPV4_UDP,
        0,
        0
    ));
    let mut b = Burst::new(32);
    assert_eq!(t.q.rx_burst(&t.bar, &mut b), 3);
    let m: Vec<Mbuf> = b.drain().collect();
    assert_eq!(m[0].data(), &f1[..]);
    assert_eq!(m[0].rx().port, 3);
    assert_eq!(m[0].rx().flags, RxFlags::empty(), "no L3L4P, no FLTSTAT");
    assert_eq!(m[1].data(), &f2[..]);
    assert_eq!(m[1].rx().vlan_tci, 0x64);
    assert_eq!(
        m[1].rx().flags,
        RxFlags::VLAN_STRIPPED | RxFlags::IP_CKSUM_GOOD | RxFlags::L4_CKSUM_BAD | RxFlags::RSS_HASH
    );
    assert_eq!(m[1].rx().rss_hash, 0xdead_beef);
    assert_eq!(
        m[1].rx().packet_type,
        PacketType::ETHER | PacketType::VLAN | PacketType::IPV4 | PacketType::TCP
    );
    assert_eq!(
        m[2].rx().flags,
        RxFlags::IP_CKSUM_BAD | RxFlags::L4_CKSUM_GOOD
    );
    assert_eq!(t.pool.in_use(), 64 + 3);
    drop(m);
    assert_eq!(t.pool.in_use(), 64);
    assert_eq!((t.q.stats.packets, t.q.stats.bytes), (3, 60 + 1514 + 200));
}

#[test]
fn rx_tail_moves_in_batches_and_wraps() {
    let mut t = rx_setup(64, 256);
    let mut b = Burst::new(128);
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
            1,
            0,
            0,
        ) {
            delivered += 1;
        }
        assert!(delivered > 0, "the device starved in round {round}");
        assert_eq!(t.q.rx_burst(&t.bar, &mut b), delivered);
        total += delivered;
        b.clear();
        assert!(t.bar.read32(regs::qrx_tail(0)) < 64);
    }
    assert!(total > 64 * 5, "wrapped several times");
    assert_eq!(t.pool.in_use(), 64);
}

#[test]
fn rx_survives_a_confused_device() {
    let mut t = rx_setup(64, 256);
    let len = |l: u64| l << regs::RXD_LEN_PBUF_SHIFT;
    let eof = regs::RXD_STATUS_EOF;
    // Too long, zero length, RXE, OVERSIZE, a frame in two pieces.
    t.dev.deliver_raw(t.q.ring(), 0, len(9000) | eof);
    t.dev.deliver_raw(t.q.ring(), 0, eof);
    t.dev
        .deliver_raw(t.q.ring(), 0, len(64) | eof | regs::RXD_ERROR_RXE);
    t.dev
        .deliver_raw(t.q.ring(), 0, len(64) | eof | regs::RXD_ERROR_OVERSIZE);
    t.dev.deliver_raw(t.q.ring(), 0, len(2048));
    t.dev.deliver_raw(t.q.ring(), 0, len(100) | eof);
    let good = frame(80, 9);
    assert!(deliver(
        &mut t.dev,
        &t.bar,
        0,
        t.q.ring(),
        &good,
        0,
        1,
        0,
        0
    ));
    let mut b = Burst::new(32);
    assert_eq!(t.q.rx_burst(&t.bar, &mut b), 1);
    assert_eq!(b.as_slice()[0].data(), &good[..]);
    assert_eq!(t.q.stats.errors, 5);
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
    let _ = RxDesc::default();
}

#[test]
fn rx_pool_exhaustion_counts_and_recovers() {
    let mut t = rx_setup(64, 72);
    for i in 0..20 {
        assert!(deliver(
            &mut t.dev,
            &t.bar,
            0,
            t.q.ring(),
            &frame(64, i),
            0,
            1,
            0,
            0
        ));
    }
    let mut held = Burst::new(64);
    assert_eq!(
        t.q.rx_burst(&t.bar, &mut held),
        8,
        "as many as the pool could replace"
    );
    assert_eq!(t.q.stats.nombuf, 1);
    held.clear();
    assert_eq!(t.q.rx_burst(&t.bar, &mut held), 8);
    held.clear();
    assert_eq!(t.q.rx_burst(&t.bar, &mut held), 4);
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
    let bar = Bar::plain_memory(0x10000);
    let pool = pool(128);
    let mut q = TxRing::new(ring(64, 16), 0);
    let mut dev = SimTx::default();
    let mut b = pkts(&pool, 10, 60);
    assert_eq!(q.tx_burst(&bar, &mut b), 10);
    assert_eq!(
        bar.read32(regs::qtx_tail(0)),
        10,
        "one doorbell, no context descriptor"
    );
    let mut out = Vec::new();
    assert_eq!(process(&mut dev, &bar, 0, q.ring(), true, &mut out), 10);
    for (i, f) in out.iter().enumerate() {
        assert_eq!(f.bytes, frame(60, i as u8));
        assert_eq!(f.desc.dtype(), regs::TXD_DTYPE_DATA);
        assert_eq!(f.desc.cmd() & (regs::TXD_CMD_EOP | regs::TXD_CMD_ICRC), 5);
        assert_eq!(f.desc.offset(), 0, "no offload, no offsets");
    }
    let rs = out
        .iter()
        .filter(|f| f.desc.cmd() & regs::TXD_CMD_RS != 0)
        .count();
    assert_eq!(rs, 1, "RS on the burst's last only (threshold 16)");
    assert_eq!(pool.in_use(), 10);
    assert_eq!(q.reclaim(), 10);
    assert_eq!(pool.in_use(), 0);
}

#[test]
fn tx_offloads_fill_the_data_descriptor() {
    let bar = Bar::plain_memory(0x10000);
    let pool = pool(128);
    let mut q = TxRing::new(ring(64, 16), 0);
    let mut dev = SimTx::default();
    let mut b = pkts(&pool, 2, 74);
    for (i, m) in b.iter_mut().enumerate() {
        let o = m.tx_mut();
        o.flags = TxFlags::VLAN_INSERT | TxFlags::IPV4 | TxFlags::IPV4_CKSUM;
        o.flags |= if i == 0 {
            TxFlags::UDP_CKSUM
        } else {
            TxFlags::TCP_CKSUM
        };
        o.vlan_tci = 100;
        o.l2_len = 14;
        o.l3_len = 20;
        o.l4_len = if i == 0 { 8 } else { 20 };
    }
    assert_eq!(q.tx_burst(&bar, &mut b), 2);
    let mut out = Vec::new();
    process(&mut dev, &bar, 0, q.ring(), false, &mut out);
    for (i, f) in out.iter().enumerate() {
        let c = f.desc.cmd();
        assert_ne!(c & regs::TXD_CMD_IL2TAG1, 0);
        assert_eq!(f.desc.l2tag1(), 100);
        assert_eq!(c & 0x60, regs::TXD_CMD_IIPT_IPV4_CSUM);
        let l4t = if i == 0 {
            regs::TXD_CMD_L4T_UDP
        } else {
            regs::TXD_CMD_L4T_TCP
        };
        assert_eq!(c & 0x300, l4t);
        let off = f.desc.offset();
        assert_eq!(off & 0x7F, 7, "MACLEN 14 bytes in words");
        assert_eq!((off >> 7) & 0x7F, 5, "IPLEN 20 bytes in dwords");
        assert_eq!((off >> 14) & 0xF, if i == 0 { 2 } else { 5 });
    }
}

#[test]
fn tx_full_ring_short_frames_and_reset() {
    let bar = Bar::plain_memory(0x10000);
    let pool = pool(128);
    let mut q = TxRing::new(ring(64, 16), 0);
    let mut dev = SimTx::default();
    let mut b = pkts(&pool, 70, 64);
    assert_eq!(q.tx_burst(&bar, &mut b), 63);
    assert_eq!(b.len(), 7, "the rest stay the caller's");
    let mut out = Vec::new();
    process(&mut dev, &bar, 0, q.ring(), false, &mut out);
    assert_eq!(q.tx_burst(&bar, &mut b), 7, "room again after completion");
    let mut short = pkts(&pool, 1, 16);
    assert_eq!(q.tx_burst(&bar, &mut short), 1, "taken");
    assert_eq!(q.stats.errors, 1, "and dropped: under 17 bytes");
    q.reset();
    assert_eq!(pool.in_use(), 0, "in-flight buffers freed");
    assert_eq!(q.free_descs(), 63);
}
