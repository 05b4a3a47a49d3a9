//! ARP and ICMP echo responder on an 82576/I350 VF.
//!
//! ```text
//! responder -a <PCI address> [--ip 169.254.1.1] [--mac 02:..] [--duration SECS] [--report-link] [--mcast MAC]...
//! ```
//!
//! `--mcast MAC` (repeatable) joins multicast groups through the PF
//! (SET_MULTICAST); frames to any multicast address are counted as `mcast`.
//!
//! With `--report-link` it prints `link up (N)` / `link down (N)` each time
//! the port's link changes (polled every 20 ms), N counting the ups and the
//! downs.
//!
//! Answers ARP requests for `--ip` and ICMP echo requests to it, in place
//! (the request's buffer becomes the reply), until `--duration` runs out or
//! a line `stop` arrives on stdin. Prints `responder ready mac=<MAC> ip=<IP>` once the
//! port is started and, at the end, its counters and whether every buffer
//! came back to the pool (`pool_free=N/N`).

use std::time::{Duration, Instant};

use pollux::core::net::internet_checksum;
use pollux::core::{
    Burst, HugePages, MacAddr, Mbuf, Mempool, MempoolConfig, Port, PortConf, RxQueue, TxQueue,
};
use pollux::igbvf::{IgbVf, IgbVfOpts};

struct Args {
    pci: String,
    ip: [u8; 4],
    mac: Option<MacAddr>,
    duration: Option<f64>,
    report_link: bool,
    mcast: Vec<MacAddr>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        pci: String::new(),
        ip: [169, 254, 1, 1],
        mac: None,
        duration: None,
        report_link: false,
        mcast: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().ok_or(format!("{k} needs a value"));
        match k.as_str() {
            "-a" | "--allow" => a.pci = v()?,
            "--ip" => {
                let s = v()?;
                let ip: std::net::Ipv4Addr = s.parse().map_err(|e| format!("--ip {s}: {e}"))?;
                a.ip = ip.octets();
            }
            "--mac" => {
                let s = v()?;
                a.mac = Some(s.parse().map_err(|e| format!("--mac {s}: {e:?}"))?);
            }
            "--duration" => {
                let s = v()?;
                a.duration = Some(s.parse().map_err(|e| format!("--duration {s}: {e}"))?);
            }
            "--report-link" => a.report_link = true,
            "--mcast" => {
                let s = v()?;
                a.mcast
                    .push(s.parse().map_err(|e| format!("--mcast {s}: {e:?}"))?);
            }
            _ => return Err(format!("unknown argument {k}")),
        }
    }
    if a.pci.is_empty() {
        return Err(
            "usage: responder -a <PCI address> [--ip A.B.C.D] [--mac MAC] [--duration SECS]".into(),
        );
    }
    Ok(a)
}

#[derive(Default)]
struct Counters {
    rx: u64,
    arp: u64,
    icmp: u64,
    ignored: u64,
    mcast: u64,
    /// Multicast frames per destination address.
    mcast_by_dst: std::collections::BTreeMap<[u8; 6], u64>,
}

/// Turns a request in `m` into its reply in place; false if `m` is not a
/// request for us.
fn answer(m: &mut Mbuf, mac: MacAddr, ip: [u8; 4], c: &mut Counters) -> bool {
    let d = m.data_mut();
    if d.len() < 42 {
        return false;
    }
    let ethertype = u16::from_be_bytes([d[12], d[13]]);
    match ethertype {
        0x0806 => {
            // ARP over Ethernet/IPv4, request (op 1) for our address.
            let a = &d[14..42];
            if a[0..2] != [0, 1] || a[2..4] != [8, 0] || a[6..8] != [0, 1] || a[24..28] != ip {
                return false;
            }
            let (sha, spa) = (
                <[u8; 6]>::try_from(&a[8..14]).unwrap_or_default(),
                [a[14], a[15], a[16], a[17]],
            );
            d[0..6].copy_from_slice(&sha);
            d[6..12].copy_from_slice(&mac.0);
            let a = &mut d[14..42];
            a[7] = 2;
            a[8..14].copy_from_slice(&mac.0);
            a[14..18].copy_from_slice(&ip);
            a[18..24].copy_from_slice(&sha);
            a[24..28].copy_from_slice(&spa);
            c.arp += 1;
            true
        }
        0x0800 => {
            let ihl = ((d[14] & 0x0f) as usize) * 4;
            let total = u16::from_be_bytes([d[16], d[17]]) as usize;
            if d[14] >> 4 != 4 || ihl < 20 || d[23] != 1 || d[30..34] != ip {
                return false;
            }
            let icmp = 14 + ihl;
            if total < ihl + 8 || 14 + total > d.len() || d[icmp] != 8 {
                return false;
            }
            // Ethernet and IP addresses swap; the IP header checksum does not
            // change when its words only trade places.
            let src_mac: [u8; 6] = <[u8; 6]>::try_from(&d[6..12]).unwrap_or_default();
            d[0..6].copy_from_slice(&src_mac);
            d[6..12].copy_from_slice(&mac.0);
            let src_ip = [d[26], d[27], d[28], d[29]];
            d[26..30].copy_from_slice(&ip);
            d[30..34].copy_from_slice(&src_ip);
            d[icmp] = 0;
            d[icmp + 2] = 0;
            d[icmp + 3] = 0;
            let sum = internet_checksum(&d[icmp..14 + total], 0);
            d[icmp + 2..icmp + 4].copy_from_slice(&sum.to_be_bytes());
            // Trailing Ethernet padding is not part of the reply.
            m.set_len(14 + total);
            c.icmp += 1;
            true
        }
        _ => false,
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let addr = args.pci.parse()?;
    let opts = IgbVfOpts {
        mac: args.mac,
        ..IgbVfOpts::default()
    };
    let mut vf = IgbVf::open(addr, opts).map_err(|e| pollux::igbvf::error::chain(&e))?;
    let pool = Mempool::new(
        MempoolConfig::new("responder", 2048),
        &vf.dma_memory(HugePages::Prefer),
    )?;
    let size = pool.size();
    vf.configure(&PortConf::new(pool.clone()))?;
    vf.start()?;
    // One thread does everything here: it polls queue 0 and, every 20 ms,
    // the control side (mailbox watch, PF-reset recovery, link).
    let mut q = vf.take_queues()?;
    let (rxq, txq) = (&mut q.rx[0], &mut q.tx[0]);
    if !args.mcast.is_empty() {
        vf.set_mc_addr_list(&args.mcast)?;
    }
    let t0 = Instant::now();
    while !vf.link().up && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mac = vf.mac_addr();
    let ip = std::net::Ipv4Addr::from(args.ip);
    println!("responder ready mac={mac} ip={ip} link={}", vf.link());
    let deadline = args
        .duration
        .map(|d| Instant::now() + Duration::from_secs_f64(d));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            for line in std::io::stdin().lines() {
                if line.map(|l| l.trim() == "stop").unwrap_or(false) {
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    break;
                }
            }
        });
    }
    let mut rx = Burst::new(32);
    let mut tx = Burst::new(32);
    let mut c = Counters::default();
    let mut link_up = vf.link().up;
    let (mut ups, mut downs) = (u32::from(link_up), 0u32);
    if args.report_link && link_up {
        println!("link up ({ups})");
    }
    let mut next_link = Instant::now();
    loop {
        if Instant::now() >= next_link {
            next_link = Instant::now() + Duration::from_millis(20);
            vf.service();
            let up = vf.link().up;
            if up != link_up {
                link_up = up;
                if up {
                    ups += 1;
                } else {
                    downs += 1;
                }
                if args.report_link {
                    println!(
                        "link {} ({})",
                        if up { "up" } else { "down" },
                        if up { ups } else { downs }
                    );
                }
            }
        }
        let n = rxq.rx_burst(&mut rx);
        c.rx += n as u64;
        for mut m in rx.drain() {
            let d = m.data();
            if d.len() >= 6 && d[0] & 1 == 1 && d[..6] != [0xff; 6] {
                c.mcast += 1;
                let dst: [u8; 6] = d[..6].try_into().unwrap_or_default();
                *c.mcast_by_dst.entry(dst).or_default() += 1;
            }
            if answer(&mut m, mac, args.ip, &mut c) {
                let _ = tx.push(m);
            } else {
                c.ignored += 1;
            }
        }
        if !tx.is_empty() {
            txq.tx_burst(&mut tx);
            // A reply that did not fit is dropped: ping retries, ARP too.
            tx.clear();
        }
        if n == 0 {
            if deadline.is_some_and(|d| Instant::now() >= d)
                || stop.load(std::sync::atomic::Ordering::Relaxed)
            {
                break;
            }
            std::thread::yield_now();
        }
    }
    drop(q);
    vf.stop()?;
    let s = vf.stats();
    let recoveries = vf.recoveries();
    drop(vf);
    for (dst, n) in &c.mcast_by_dst {
        println!("responder mcast {}={n}", MacAddr(*dst));
    }
    println!(
        "responder done rx={} arp={} icmp={} ignored={} mcast={} tx={} recoveries={} pool_free={}/{}",
        c.rx,
        c.arp,
        c.icmp,
        c.ignored,
        c.mcast,
        s.opackets,
        recoveries,
        pool.available(),
        size
    );
    Ok(())
}

fn main() {
    // The driver's own log (PF resets, recoveries) on stderr with RUST_LOG,
    // e.g. RUST_LOG=pollux_igbvf=debug.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    if let Err(e) = run() {
        eprintln!("responder: {e}");
        std::process::exit(1);
    }
}
