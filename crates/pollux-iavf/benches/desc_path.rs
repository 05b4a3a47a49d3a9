//! Cycles per packet of the rx and tx descriptor paths against rings in
//! plain memory, the device played by `pollux_iavf::testing`; comparable
//! to pollux-ixgbevf's desc_path bench (same burst, ring and frame sizes).
//!
//! Only the driver's side is timed: the simulated device's work (filling
//! descriptors before an rx burst, completing them after a tx burst) is
//! outside the timed region via `iter_custom`. Criterion reports time per
//! burst of 32; the summary line printed at the end gives TSC cycles per
//! packet on x86-64.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pollux_core::{AnonMemory, Burst, HugePages, MemoryProvider, Mempool, MempoolConfig};
use pollux_iavf::desc::DescRing;
use pollux_iavf::regs;
use pollux_iavf::rx::RxRing;
use pollux_iavf::testing::{SimRx, SimTx};
use pollux_iavf::tx::TxRing;
use pollux_vfio::Bar;

#[path = "../tests/common/sim.rs"]
mod sim;
use sim::{deliver, process};

const BURST: usize = 32;
const RING: u16 = 512;

fn ring<D: Copy>(n: u16, size: usize) -> DescRing<D> {
    let r = AnonMemory::new(HugePages::Never)
        .allocate(n as usize * size)
        .expect("ring memory");
    DescRing::new(r, n).expect("ring")
}

fn pool(n: usize) -> Mempool {
    Mempool::new(
        MempoolConfig::new("bench", n),
        &AnonMemory::new(HugePages::Prefer),
    )
    .expect("pool")
}

const PTYPE: u8 = regs::PTYPE_IPV4_UDP;
const STATUS: u64 = regs::RXD_STATUS_L3L4P | regs::RXD_FLTSTAT_RSS_HASH << regs::RXD_FLTSTAT_SHIFT;

fn bench_rx(c: &mut Criterion) {
    let bar = Bar::plain_memory(0x10000);
    let pool = pool(4096);
    let mut q = RxRing::new(ring(RING, 32), pool.clone(), 0, 0);
    assert_eq!(q.arm(), 0);
    bar.write32(regs::qrx_tail(0), q.initial_tail());
    let mut dev = SimRx::default();
    let frame = vec![0x5a_u8; 64];
    let mut out = Burst::new(BURST);
    let mut g = c.benchmark_group("iavf_desc_path");
    g.throughput(Throughput::Elements(BURST as u64));
    g.bench_function("rx_burst_32x64B", |b| {
        b.iter_custom(|iters| {
            let mut t = Duration::ZERO;
            for _ in 0..iters {
                for _ in 0..BURST {
                    deliver(
                        &mut dev,
                        &bar,
                        0,
                        q.ring(),
                        &frame,
                        STATUS,
                        PTYPE,
                        0,
                        0x1234,
                    );
                }
                let s = Instant::now();
                let n = q.rx_burst(&bar, &mut out);
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
    let bar = Bar::plain_memory(0x10000);
    let pool = pool(4096);
    let mut q = TxRing::new(ring(RING, 16), 0);
    let mut dev = SimTx::default();
    let mut sent = Vec::with_capacity(1024);
    let mut b = Burst::new(BURST);
    let mut g = c.benchmark_group("iavf_desc_path");
    g.throughput(Throughput::Elements(BURST as u64));
    g.bench_function("tx_burst_32x64B", |bch| {
        bch.iter_custom(|iters| {
            let mut t = Duration::ZERO;
            for _ in 0..iters {
                while !b.is_full() {
                    let mut m = pool.alloc().expect("pool");
                    m.set_len(64);
                    let _ = b.push(m);
                }
                let s = Instant::now();
                let n = q.tx_burst(&bar, &mut b);
                t += s.elapsed();
                assert_eq!(n, BURST);
                process(&mut dev, &bar, 0, q.ring(), false, &mut sent);
                sent.clear();
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
        let bar = Bar::plain_memory(0x10000);
        let pool = pool(4096);
        let mut rxq = RxRing::new(ring(RING, 32), pool.clone(), 0, 0);
        rxq.arm();
        bar.write32(regs::qrx_tail(0), rxq.initial_tail());
        let mut dev = SimRx::default();
        let frame = vec![0x5a_u8; 64];
        let mut out = Burst::new(BURST);
        let (mut rx_cycles, mut rx_pkts) = (0u64, 0u64);
        for _ in 0..20_000 {
            for _ in 0..BURST {
                deliver(
                    &mut dev,
                    &bar,
                    0,
                    rxq.ring(),
                    &frame,
                    STATUS,
                    PTYPE,
                    0,
                    0x1234,
                );
            }
            let s = tsc();
            rx_pkts += rxq.rx_burst(&bar, &mut out) as u64;
            rx_cycles += tsc() - s;
            out.clear();
        }
        let mut txq = TxRing::new(ring(RING, 16), 0);
        let mut tdev = SimTx::default();
        let mut sent = Vec::new();
        let (mut tx_cycles, mut tx_pkts) = (0u64, 0u64);
        for _ in 0..20_000 {
            while !out.is_full() {
                let mut m = pool.alloc().expect("pool");
                m.set_len(64);
                let _ = out.push(m);
            }
            let s = tsc();
            tx_pkts += txq.tx_burst(&bar, &mut out) as u64;
            tx_cycles += tsc() - s;
            process(&mut tdev, &bar, 0, txq.ring(), false, &mut sent);
            sent.clear();
        }
        println!(
            "iavf descriptor path, TSC cycles per packet (burst {BURST}): rx {:.1}, tx {:.1}",
            rx_cycles as f64 / rx_pkts.max(1) as f64,
            tx_cycles as f64 / tx_pkts.max(1) as f64
        );
    }
}

criterion_group!(benches, bench_rx, bench_tx, cycles_summary);
criterion_main!(benches);
