//! Cycles per packet of the rx and tx virtqueue paths against queues in
//! plain memory, the device played by `pollux_virtio::testing`.
//!
//! Only the driver's side is timed: the software device's work (posting
//! used entries before an rx burst, consuming available ones after a tx
//! burst) happens outside the timed region via `iter_custom`, as in
//! igbvf's `desc_path` bench, so the two figures compare. The summary line
//! at the end prints TSC cycles per packet on x86-64.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pollux_core::{
    AnonMemory, Burst, HugePages, Mbuf, Mempool, MempoolConfig, Port, PortConf, Queues,
};
use pollux_virtio::testing::FakeDevice;
use pollux_virtio::{VirtioNet, VirtioOpts};

const BURST: usize = 32;
const QUEUE: u16 = 512;

/// A started port over the software device, its queues and pool.
fn setup() -> (Arc<FakeDevice>, VirtioNet, Queues, Mempool) {
    let dev = FakeDevice::new(
        FakeDevice::qemu_like_features(),
        1,
        QUEUE,
        [2, 0, 0, 0, 0, 1],
    );
    let mut net = VirtioNet::from_transport(
        "bench".into(),
        dev.transport(),
        Arc::new(AnonMemory::new(HugePages::Never)),
        VirtioOpts::default(),
    )
    .expect("port");
    let pool = Mempool::new(
        MempoolConfig::new("bench", 4096),
        &AnonMemory::new(HugePages::Prefer),
    )
    .expect("pool");
    let mut c = PortConf::new(pool.clone());
    c.rx_desc = QUEUE;
    c.tx_desc = QUEUE;
    net.configure(&c).expect("configure");
    // SAFETY: the port's queues and buffers are AnonMemory that outlives
    // the server, dropped right after the start.
    let server = unsafe { dev.serve_control() };
    net.start().expect("start");
    drop(server);
    let q = net.take_queues().expect("queues");
    (dev, net, q, pool)
}

fn deliver(dev: &FakeDevice, frame: &[u8]) {
    for _ in 0..BURST {
        // SAFETY: the port's rx queue and buffers are AnonMemory (setup).
        assert!(unsafe { dev.deliver(0, frame, 0) });
    }
}

fn fill(pool: &Mempool, b: &mut Burst<Mbuf>) {
    while !b.is_full() {
        let mut m = pool.alloc().expect("pool");
        m.set_len(64);
        let _ = b.push(m);
    }
}

fn bench_rx(c: &mut Criterion) {
    let (dev, _net, mut q, _pool) = setup();
    let frame = vec![0x5a_u8; 64];
    let mut out = Burst::new(BURST);
    let mut g = c.benchmark_group("virtio_vq_path");
    g.throughput(Throughput::Elements(BURST as u64));
    g.bench_function("rx_burst_32x64B", |b| {
        b.iter_custom(|iters| {
            let mut t = Duration::ZERO;
            for _ in 0..iters {
                deliver(&dev, &frame);
                let s = Instant::now();
                let n = q.rx[0].rx_burst(&mut out);
                t += s.elapsed();
                assert_eq!(n, BURST);
                out.clear();
            }
            t
        })
    });
    g.finish();
}

fn bench_tx(c: &mut Criterion) {
    let (dev, _net, mut q, pool) = setup();
    let mut b = Burst::new(BURST);
    let mut g = c.benchmark_group("virtio_vq_path");
    g.throughput(Throughput::Elements(BURST as u64));
    g.bench_function("tx_burst_32x64B", |bch| {
        bch.iter_custom(|iters| {
            let mut t = Duration::ZERO;
            for _ in 0..iters {
                fill(&pool, &mut b);
                let s = Instant::now();
                let n = q.tx[0].tx_burst(&mut b);
                t += s.elapsed();
                assert_eq!(n, BURST);
                // SAFETY: the port's tx queue and buffers are AnonMemory.
                let sent = unsafe { dev.transmit(0) };
                assert_eq!(sent.len(), BURST);
            }
            t
        })
    });
    g.finish();
}

/// Prints cycles per packet for both paths, measured with the TSC.
fn cycles_summary(_: &mut Criterion) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no preconditions on x86-64.
        let tsc = || unsafe { core::arch::x86_64::_rdtsc() };
        let (dev, _net, mut q, pool) = setup();
        let frame = vec![0x5a_u8; 64];
        let mut out = Burst::new(BURST);
        let (mut rx_cycles, mut rx_pkts) = (0u64, 0u64);
        for _ in 0..20_000 {
            deliver(&dev, &frame);
            let s = tsc();
            rx_pkts += q.rx[0].rx_burst(&mut out) as u64;
            rx_cycles += tsc() - s;
            out.clear();
        }
        let (mut tx_cycles, mut tx_pkts) = (0u64, 0u64);
        for _ in 0..20_000 {
            fill(&pool, &mut out);
            let s = tsc();
            tx_pkts += q.tx[0].tx_burst(&mut out) as u64;
            tx_cycles += tsc() - s;
            // SAFETY: as in bench_tx.
            let _ = unsafe { dev.transmit(0) };
        }
        println!(
            "virtio virtqueue path, TSC cycles per packet (burst {BURST}): rx {:.1}, tx {:.1}",
            rx_cycles as f64 / rx_pkts.max(1) as f64,
            tx_cycles as f64 / tx_pkts.max(1) as f64
        );
    }
}

criterion_group!(benches, bench_rx, bench_tx, cycles_summary);
criterion_main!(benches);
