//! Micro benchmarks of the packet core: mempool bulk alloc/free, ring
//! bursts, and io forwarding null -> null per packet.
//!
//! `cargo bench --bench core`; throughput is reported per packet (element),
//! so criterion's "elem/s" is packets per second on one core.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pollux::core::ring::{channel, Mode};
use pollux::core::{
    AnonMemory, Burst, Mbuf, Mempool, MempoolConfig, Port, PortConf, RxQueue, TxQueue,
};
use pollux::soft::null::{NullOpts, NullPort};

fn pool(n: usize) -> Mempool {
    Mempool::new(MempoolConfig::new("bench", n), &AnonMemory::default()).expect("mempool")
}

fn mempool_bulk(c: &mut Criterion) {
    let mut g = c.benchmark_group("mempool_bulk_alloc_free");
    let p = pool(8192);
    for n in [8usize, 32] {
        g.throughput(Throughput::Elements(n as u64));
        let mut b: Burst<Mbuf> = Burst::new(n);
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |bench, &n| {
            bench.iter(|| {
                assert!(p.alloc_bulk(&mut b, n));
                black_box(&b);
                b.clear();
            })
        });
    }
    g.finish();
    assert_eq!(p.available(), p.size());
}

fn ring_burst(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring_burst");
    for (label, pm, cm) in [
        ("spsc", Mode::Single, Mode::Single),
        ("mpmc", Mode::Multi, Mode::Multi),
    ] {
        for n in [8usize, 32] {
            g.throughput(Throughput::Elements(n as u64));
            let (mut tx, mut rx) = channel::<u64>(1024, pm, cm).expect("ring");
            let mut src: Burst<u64> = Burst::new(n);
            let mut dst: Burst<u64> = Burst::new(n);
            g.bench_with_input(BenchmarkId::new(label, n), &n, |bench, &n| {
                bench.iter(|| {
                    src.extend(0..n as u64);
                    tx.enqueue_burst(&mut src);
                    rx.dequeue_burst(&mut dst, n);
                    black_box(&dst);
                    dst.clear();
                })
            });
        }
    }
    g.finish();
}

fn io_forward(c: &mut Criterion) {
    let p = pool(8192);
    let mut a = NullPort::new("null0", NullOpts::default());
    let mut b = NullPort::new("null1", NullOpts::default());
    for port in [&mut a, &mut b] {
        port.configure(&PortConf::new(p.clone()))
            .expect("configure");
        port.start().expect("start");
    }
    let mut rx = a.take_queues().expect("queues").rx.remove(0);
    let mut tx = b.take_queues().expect("queues").tx.remove(0);
    let mut g = c.benchmark_group("io_forward_null");
    g.throughput(Throughput::Elements(32));
    let mut burst = Burst::new(32);
    g.bench_function("burst32", |bench| {
        bench.iter(|| {
            let n = rx.rx_burst(&mut burst);
            let sent = tx.tx_burst(&mut burst);
            debug_assert_eq!(n, sent);
            burst.clear();
        })
    });
    g.finish();
    drop((rx, tx));
    assert_eq!(p.available(), p.size());
}

criterion_group!(benches, mempool_bulk, ring_burst, io_forward);
criterion_main!(benches);
