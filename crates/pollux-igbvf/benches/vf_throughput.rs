//! Throughput on a real VF: `POLLUX_BENCH_VF=<PCI address> cargo bench -p
//! pollux-igbvf --bench vf_throughput`. The VF must be bound to vfio-pci and
//! its PF up. Without the variable the bench says why it measured nothing
//! and exits successfully, so `cargo bench` works everywhere; the lab runs
//! it once on the emulated VF so it cannot rot.
//!
//! - `tx_burst_32x64B`: time for bursts of 32 64-byte frames the VF accepts
//!   (the rate at which the device drains the ring bounds it).
//! - `rx_poll`: time of one rx_burst poll, whatever arrives.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pollux_core::{Burst, HugePages, Mempool, MempoolConfig, Port, PortConf, RxQueue, TxQueue};
use pollux_igbvf::{IgbVf, IgbVfOpts};

fn vf_bench(c: &mut Criterion) {
    let Ok(addr) = std::env::var("POLLUX_BENCH_VF") else {
        println!(
            "vf_throughput: measured nothing: set POLLUX_BENCH_VF=<PCI address of an 82576/I350 \
             VF bound to vfio-pci> to run it on hardware"
        );
        return;
    };
    let addr = match addr.parse() {
        Ok(a) => a,
        Err(e) => panic!("POLLUX_BENCH_VF={addr}: {e}"),
    };
    let mut vf = IgbVf::open(addr, IgbVfOpts::default())
        .unwrap_or_else(|e| panic!("{}", pollux_igbvf::error::chain(&e)));
    let pool = Mempool::new(
        MempoolConfig::new("bench", 8192),
        &vf.dma_memory(HugePages::Prefer),
    )
    .expect("mempool in the VF's IOMMU domain");
    vf.configure(&PortConf::new(pool.clone()))
        .expect("configure");
    vf.start().expect("start");
    let mut queues = vf.take_queues().expect("queues");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !vf.link().up && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let src = vf.mac_addr();
    let mut frame = [0u8; 64];
    frame[..6].copy_from_slice(&[0xff; 6]);
    frame[6..12].copy_from_slice(&src.0);
    frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());

    let mut g = c.benchmark_group("igbvf_vf");
    g.throughput(Throughput::Elements(32));
    g.measurement_time(Duration::from_secs(5));
    let mut burst = Burst::new(32);
    let mut sent = 0u64;
    let start = Instant::now();
    g.bench_function("tx_burst_32x64B", |b| {
        b.iter(|| {
            while !burst.is_full() {
                let Some(mut m) = pool.alloc() else { break };
                m.copy_from(&frame);
                let _ = burst.push(m);
            }
            sent += queues.tx[0].tx_burst(&mut burst) as u64;
        })
    });
    let secs = start.elapsed().as_secs_f64();
    burst.clear();
    let mut rx = Burst::new(32);
    let mut got = 0u64;
    g.bench_function("rx_poll", |b| {
        b.iter(|| {
            got += queues.rx[0].rx_burst(&mut rx) as u64;
            rx.clear();
        })
    });
    g.finish();
    println!(
        "vf_throughput on {addr}: tx {sent} frames accepted in {secs:.1} s ({:.0} pps), rx {got} frames seen",
        sent as f64 / secs
    );
    vf.stop().expect("stop");
}

criterion_group!(benches, vf_bench);
criterion_main!(benches);
