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
use pollux::core::{AnonMemory, Burst, Mempool, MempoolConfig, Port, PortConf};

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

    let stop = StopFlag::new();
    let cpu = lcore::available_cpus().last().copied();
    let worker = lcore::launch(0, cpu, stop.clone(), move |ctx| {
        let mut burst = Burst::new(32);
        while !ctx.stop.is_stopped() {
            for (rx, tx) in [(0, 1), (1, 0)] {
                if ports[rx].rx_burst(0, &mut burst) > 0 {
                    ports[tx].tx_burst(0, &mut burst);
                    burst.clear(); // what the port did not take is dropped
                }
            }
        }
        ports
    })?;
    std::thread::sleep(Duration::from_secs(3));
    stop.stop();
    let mut ports = worker.join()?;
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
