//! txonly over a balance-xor layer3+4 bond of two `null` ports, the
//! counterpart of
//! `dpdk-testpmd --vdev net_null0 --vdev net_null1
//!  --vdev 'net_bonding0,mode=2,slave=net_null0,slave=net_null1,xmit_policy=l34'
//!  -- --forward-mode=txonly --txonly-multi-flow`.
//!
//! `cargo run --release -p pollux-bond --example bond_txonly -- [seconds] [direct|tlb]`
//! prints packets per second; `direct` sends straight into one null port
//! instead, for the bond's overhead; `tlb` makes the bond balance-tlb
//! (layer3+4 flow buckets, rebalanced by load every 10 s), the
//! counterpart of DPDK's `net_bonding0,mode=5`. The loop sends on the port's tx queue
//! handle; the bond (balance-xor, no LACP) needs no `service` calls for
//! that, but gets one a second as an application's control thread would.

use std::time::{Duration, Instant};

use pollux_bond::{BondConfig, BondPort};
use pollux_core::net::{udp_frame, UdpFrameSpec, UDP_FRAME_MIN};
use pollux_core::{AnonMemory, Burst, Mempool, MempoolConfig, Port, PortConf};
use pollux_soft::null::{NullOpts, NullPort};

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let variant = args.next();
    let direct = variant.as_deref() == Some("direct");
    let tlb = variant.as_deref() == Some("tlb");
    let pool =
        Mempool::new(MempoolConfig::new("txonly", 8192), &AnonMemory::default()).expect("mempool");
    let mut port: Box<dyn Port> = if direct {
        Box::new(NullPort::new("null0", NullOpts::default()))
    } else {
        let members: Vec<(String, Box<dyn Port>)> = (0..2)
            .map(|i| {
                let n = format!("null{i}");
                (
                    n.clone(),
                    Box::new(NullPort::new(n, NullOpts::default())) as Box<dyn Port>,
                )
            })
            .collect();
        let args: Vec<(String, String)> = vec![
            (
                "mode".into(),
                if tlb { "balance-tlb" } else { "balance-xor" }.into(),
            ),
            ("xmit_hash_policy".into(), "layer3+4".into()),
        ];
        Box::new(
            BondPort::new(
                "bond0",
                BondConfig::from_args(&args).expect("config"),
                members,
            )
            .expect("bond"),
        )
    };
    port.configure(&PortConf::new(pool.clone()))
        .expect("configure");
    port.start().expect("start");
    let mut txq = port.take_queues().expect("queues").tx.remove(0);
    let _ = core_affinity::get_core_ids()
        .and_then(|c| c.last().copied())
        .map(core_affinity::set_for_current);

    let mut tmpl = vec![0u8; 64];
    assert!(udp_frame(&mut tmpl, &UdpFrameSpec::default()));
    tmpl.truncate(UDP_FRAME_MIN);
    let mut burst = Burst::new(32);
    let mut flow = 0u16;
    let mut sent = 0u64;
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut next_service = start;
    while Instant::now() < end {
        if Instant::now() >= next_service {
            port.service();
            next_service += Duration::from_secs(1);
        }
        for _ in 0..1024 {
            if !pool.alloc_bulk(&mut burst, 32) {
                break;
            }
            for m in burst.iter_mut() {
                m.set_len(64);
                let d = m.data_mut();
                d[..UDP_FRAME_MIN].copy_from_slice(&tmpl);
                d[28..30].copy_from_slice(&flow.to_be_bytes());
                flow = flow.wrapping_add(1);
            }
            sent += txq.tx_burst(&mut burst) as u64;
            burst.clear();
        }
    }
    let t = start.elapsed().as_secs_f64();
    let s = port.stats();
    println!(
        "{}: {:.2} Mpps ({} packets in {:.2} s; member tx total {})",
        if direct {
            "null direct"
        } else if tlb {
            "bond tlb l34 over 2 null"
        } else {
            "bond xor l34 over 2 null"
        },
        sent as f64 / t / 1e6,
        sent,
        t,
        s.opackets
    );
}
