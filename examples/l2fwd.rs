//! A minimal forwarding application on the Pollux API: two ports, one
//! pinned lcore, io forwarding both ways for a few seconds, then the stats
//! and a leak check. Ports are software ports by default:
//!
//! ```sh
//! cargo run --release --example l2fwd                     # null0 <-> null1
//! cargo run --release --example l2fwd -- ring0,peer=ring1 ring1
//! ```

use std::time::Duration;

use pollux::core::lcore::{self, StopFlag};
use pollux::core::{AnonMemory, Burst, Mempool, MempoolConfig, Port, PortConf, RxQueue, TxQueue};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let specs = if args.is_empty() {
        vec!["null0".to_string(), "null1".to_string()]
    } else {
        args
    };
    let specs = specs
        .iter()
        .map(|s| pollux::soft::vdev::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ports = pollux::soft::vdev::create_all(&specs)?;
    if ports.len() != 2 {
        return Err("l2fwd forwards between exactly two ports".into());
    }

    let pool = Mempool::new(MempoolConfig::new("l2fwd", 8192), &AnonMemory::default())?;
    for (id, port) in ports.iter_mut().enumerate() {
        let mut conf = PortConf::new(pool.clone());
        conf.port_id = id as u16;
        port.configure(&conf)?;
        port.start()?;
        println!(
            "port {id}: {} {} link {}",
            port.info().name,
            port.mac_addr(),
            port.link()
        );
    }

    // The data path: queue 0 of each port, handed to one lcore. The ports'
    // control sides stay here.
    let mut q0 = ports[0].take_queues()?;
    let mut q1 = ports[1].take_queues()?;
    let (mut rx0, mut tx0) = (q0.rx.remove(0), q0.tx.remove(0));
    let (mut rx1, mut tx1) = (q1.rx.remove(0), q1.tx.remove(0));
    let stop = StopFlag::new();
    let cpu = lcore::available_cpus().last().copied();
    let worker = lcore::launch(0, cpu, stop.clone(), move |ctx| {
        let mut burst = Burst::new(32);
        while !ctx.stop.is_stopped() {
            for (rx, tx) in [(&mut rx0, &mut tx1), (&mut rx1, &mut tx0)] {
                if rx.rx_burst(&mut burst) > 0 {
                    tx.tx_burst(&mut burst);
                    burst.clear(); // what the port did not take is dropped
                }
            }
        }
    })?;
    // Control work while the lcore forwards (a NIC's mailbox, a bond's LACP).
    let until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < until {
        ports.iter_mut().for_each(|p| p.service());
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.stop();
    worker.join()?;
    drop((q0, q1));
    for (id, port) in ports.iter_mut().enumerate() {
        port.stop()?;
        let s = port.stats();
        println!(
            "port {id}: rx {} tx {} ({:.1} Mpps each way)",
            s.ipackets,
            s.opackets,
            s.opackets as f64 / 3e6
        );
    }
    drop(ports);
    assert_eq!(
        pool.available(),
        pool.size(),
        "every mbuf is back in the pool"
    );
    Ok(())
}
