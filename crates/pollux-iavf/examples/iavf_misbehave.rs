//! A driver that misbehaves on purpose, for the lab: it brings an AVF up
//! with `pollux-iavf`, sends a few frames properly, and then does one thing
//! a correct driver never does. A device model must log it as a violation.
//!
//! ```text
//! iavf_misbehave <PCI address> tail-past-ring
//! ```
//!
//! `tail-past-ring`: the transmit doorbell (QTX_TAIL of queue 0) is written
//! with the ring's length plus one, an index no descriptor has (the tail
//! indexes a descriptor of the ring whose length CONFIG_VSI_QUEUES gave).
//!
//! Built only with the `testing` feature, which is where the fault
//! injection lives.

use std::process::ExitCode;
use std::time::Duration;

use pollux_core::{Burst, HugePages, MacAddr, Mempool, MempoolConfig, Port, PortConf};
use pollux_iavf::{IavfOpts, IavfVf};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(pci), Some(fault)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: iavf_misbehave <PCI address> tail-past-ring");
        return ExitCode::from(2);
    };
    if fault != "tail-past-ring" {
        eprintln!("iavf_misbehave: unknown fault {fault:?}; known: tail-past-ring");
        return ExitCode::from(2);
    }
    match run(pci) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("iavf_misbehave: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(pci: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut vf = IavfVf::open(pci.parse()?, IavfOpts::default())?;
    let pool = Mempool::new(
        MempoolConfig::new("misbehave", 1024),
        &vf.dma_memory(HugePages::Prefer),
    )?;
    let conf = PortConf::new(pool.clone());
    let ring = conf.tx_desc;
    vf.configure(&conf)?;
    vf.start()?;
    let mut q = vf.take_queues()?;
    // A few good frames first (broadcast, an experimental EtherType), so
    // the fault comes on a ring the device has been using.
    let mut burst = Burst::new(4);
    for _ in 0..4 {
        let mut m = pool.alloc().ok_or("pool empty")?;
        let frame = m.append(60).ok_or("mbuf too small")?;
        frame.fill(0);
        frame[..6].copy_from_slice(&MacAddr::BROADCAST.0);
        frame[6..12].copy_from_slice(&vf.mac_addr().0);
        frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
        if burst.push(m).is_err() {
            return Err("burst full".into());
        }
    }
    let sent = q.tx[0].tx_burst(&mut burst);
    std::thread::sleep(Duration::from_millis(200));
    let tail = u32::from(ring) + 1;
    vf.write_tx_tail_unchecked(0, tail);
    println!(
        "sent {sent} good frames, then wrote QTX_TAIL(0) = {tail} on a ring of {ring} descriptors"
    );
    std::thread::sleep(Duration::from_millis(200));
    Ok(())
}
