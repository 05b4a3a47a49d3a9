//! Bond transmit cost: balance-xor layer3+4 txonly over two `null`
//! members (the comparison with DPDK's net_bonding over two net_null),
//! against txonly straight into one null port; and the hash per packet.
//!
//! `cargo bench -p pollux-bond`; throughput is per packet, so criterion's
//! "elem/s" is packets per second on one core. Bursts go to the ports' tx
//! queue handles (`take_queues`), as an lcore sends.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pollux_bond::hash::xmit_hash;
use pollux_bond::{BondConfig, BondPort, XmitHashPolicy};
use pollux_core::net::{udp_frame, UdpFrameSpec, UDP_FRAME_MIN};
use pollux_core::{AnonMemory, Burst, Mbuf, Mempool, MempoolConfig, Port, PortConf, TxQueue};
use pollux_soft::null::{NullOpts, NullPort};

const BURST: usize = 32;

fn pool() -> Mempool {
    Mempool::new(MempoolConfig::new("bench", 8192), &AnonMemory::default()).expect("mempool")
}

fn template() -> Vec<u8> {
    let mut f = vec![0u8; 64];
    assert!(udp_frame(&mut f, &UdpFrameSpec::default()));
    f.truncate(UDP_FRAME_MIN);
    f
}

/// testpmd's txonly with --txonly-multi-flow: allocate a burst, copy the
/// header template into each packet, vary the source address per packet.
#[inline]
fn fill(pool: &Mempool, burst: &mut Burst<Mbuf>, tmpl: &[u8], flow: &mut u32) {
    assert!(pool.alloc_bulk(burst, BURST));
    for m in burst.iter_mut() {
        m.set_len(64);
        let d = m.data_mut();
        d[..UDP_FRAME_MIN].copy_from_slice(tmpl);
        d[28..30].copy_from_slice(&(*flow as u16).to_be_bytes());
        *flow = flow.wrapping_add(1);
    }
}

fn txonly(c: &mut Criterion) {
    let p = pool();
    let tmpl = template();
    let mut g = c.benchmark_group("txonly_64B");
    g.throughput(Throughput::Elements(BURST as u64));

    let mut null = NullPort::new("null0", NullOpts::default());
    null.configure(&PortConf::new(p.clone())).unwrap();
    null.start().unwrap();
    let mut null_tx = null.take_queues().unwrap().tx.remove(0);
    let mut burst = Burst::new(BURST);
    let mut flow = 0u32;
    g.bench_function("null_direct", |b| {
        b.iter(|| {
            fill(&p, &mut burst, &tmpl, &mut flow);
            let n = null_tx.tx_burst(&mut burst);
            black_box(n);
        })
    });

    for (label, mode) in [
        ("bond_xor_l34_2null", "balance-xor"),
        ("bond_8023ad_l34_2null", "802.3ad"),
    ] {
        let members: Vec<(String, Box<dyn Port>)> = (0..2)
            .map(|i| {
                let n = format!("null{i}");
                (
                    n.clone(),
                    Box::new(NullPort::new(n, NullOpts::default())) as Box<dyn Port>,
                )
            })
            .collect();
        let args: Vec<(String, String)> = [("mode", mode), ("xmit_hash_policy", "layer3+4")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut bond =
            BondPort::new("bond0", BondConfig::from_args(&args).unwrap(), members).unwrap();
        bond.configure(&PortConf::new(p.clone())).unwrap();
        bond.start().unwrap();
        if mode == "802.3ad" && bond.core().tx_members().len() < 2 {
            // null members never answer LACP; after the fallback only one
            // port would carry traffic, which is not the comparison.
            continue;
        }
        let mut tx = bond.take_queues().unwrap().tx.remove(0);
        g.bench_function(label, |b| {
            b.iter(|| {
                fill(&p, &mut burst, &tmpl, &mut flow);
                let n = tx.tx_burst(&mut burst);
                debug_assert_eq!(n, BURST);
                black_box(n);
            })
        });
        let s = bond.stats();
        assert!(
            bond.member(0).unwrap().stats().opackets > 0
                && bond.member(1).unwrap().stats().opackets > 0,
            "{s:?}"
        );
    }
    g.finish();
    drop(burst);
    assert_eq!(p.available(), p.size());
}

fn hashing(c: &mut Criterion) {
    let mut f = vec![0u8; 64];
    assert!(udp_frame(&mut f, &UdpFrameSpec::default()));
    let mut g = c.benchmark_group("xmit_hash_64B_udp");
    g.throughput(Throughput::Elements(1));
    for policy in [
        XmitHashPolicy::Layer2,
        XmitHashPolicy::Layer23,
        XmitHashPolicy::Layer34,
        XmitHashPolicy::Encap34,
    ] {
        g.bench_with_input(
            BenchmarkId::from_parameter(policy.name()),
            &policy,
            |b, &policy| b.iter(|| xmit_hash(policy, black_box(&f), None)),
        );
    }
    g.finish();
}

criterion_group!(benches, txonly, hashing);
criterion_main!(benches);
