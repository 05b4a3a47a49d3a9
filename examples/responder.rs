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

use std::net::Ipv4Addr;

use pollux::core::wire::{answer, Answer};
use pollux::core::{
    Burst, HugePages, MacAddr, Mbuf, Mempool, MempoolConfig, Port, PortConf, RxQueue, TxQueue,
};

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

/// Turns a request in `m` into its reply in place (the core's one
/// answering routine, [`answer`]); false if `m` is not a request for us.
fn answer_mbuf(m: &mut Mbuf, mac: MacAddr, ip: Ipv4Addr, c: &mut Counters) -> bool {
    match answer(m.data_mut(), mac, ip) {
        Some(Answer::Arp) => c.arp += 1,
        Some(Answer::Echo { len }) => {
            // Trailing Ethernet padding is not part of the reply.
            m.set_len(len);
            c.icmp += 1;
        }
        None => return false,
    }
    true
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    // Any PCI function a Pollux PMD drives (igbvf, virtio-net), found
    // through the driver registry, in the process's shared VFIO container.
    let opts = pollux::vfio::PciOpenOpts {
        mac: args.mac,
        ..Default::default()
    };
    let mut vf = pollux::open(&args.pci, &opts).map_err(|e| pollux::core::error_chain(&e))?;
    let pool = Mempool::new(
        MempoolConfig::new("responder", 2048),
        &pollux::vfio::Container::process_default()?.dma_memory(HugePages::Prefer),
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
            if answer_mbuf(&mut m, mac, Ipv4Addr::from(args.ip), &mut c) {
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
    // igbvf's PF-reset recoveries, virtio's DEVICE_NEEDS_RESET ones.
    let recoveries: u64 = vf
        .xstats()
        .iter()
        .filter(|x| x.name.ends_with("recoveries"))
        .map(|x| x.value)
        .sum();
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

#[cfg(test)]
mod tests {
    use pollux::core::net::internet_checksum;
    use pollux::core::{AnonMemory, Mempool, MempoolConfig};

    use super::*;

    const ME: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
    const PEER: MacAddr = MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    const IP: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

    fn mbuf(pool: &Mempool, bytes: &[u8]) -> Mbuf {
        let mut m = pool.alloc().unwrap();
        assert!(m.set_len(bytes.len()));
        m.data_mut().copy_from_slice(bytes);
        m
    }

    /// "who-has 169.254.1.1 tell 169.254.1.2" from PEER, padded to 60.
    fn arp_request() -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&PEER.0);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&PEER.0);
        f.extend_from_slice(&[169, 254, 1, 2, 0, 0, 0, 0, 0, 0, 169, 254, 1, 1]);
        f.resize(60, 0);
        f
    }

    /// `ping -c1 -s 4 169.254.1.1` from 169.254.1.2, padded to 60.
    fn echo_request() -> Vec<u8> {
        let mut f = ME.0.to_vec();
        f.extend_from_slice(&PEER.0);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[0x45, 0, 0, 32, 0x12, 0x34, 0x40, 0, 64, 1, 0, 0]);
        f.extend_from_slice(&[169, 254, 1, 2, 169, 254, 1, 1]);
        let c = internet_checksum(&f[14..34], 0);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&[8, 0, 0, 0, 0x03, 0x5a, 0, 1, b'a', b'b', b'c', b'd']);
        let c = internet_checksum(&f[34..46], 0);
        f[36..38].copy_from_slice(&c.to_be_bytes());
        f.resize(60, 0);
        f
    }

    #[test]
    fn answers_arp_and_ping_and_ignores_the_rest() {
        let pool = Mempool::new(MempoolConfig::new("resp", 16), &AnonMemory::default()).unwrap();
        let mut c = Counters::default();

        let mut m = mbuf(&pool, &arp_request());
        assert!(answer_mbuf(&mut m, ME, IP, &mut c));
        let d = m.data();
        assert_eq!(&d[0..12], &[PEER.0, ME.0].concat()[..]);
        assert_eq!(&d[20..22], &[0, 2]);
        assert_eq!(&d[22..28], &ME.0);
        assert_eq!(&d[28..32], &IP.octets());
        assert_eq!(&d[32..38], &PEER.0);
        assert_eq!(&d[38..42], &[169, 254, 1, 2]);

        let mut m = mbuf(&pool, &echo_request());
        assert!(answer_mbuf(&mut m, ME, IP, &mut c));
        let d = m.data();
        assert_eq!(d.len(), 46, "padding dropped");
        assert_eq!(&d[0..12], &[PEER.0, ME.0].concat()[..]);
        assert_eq!(&d[26..34], &[169, 254, 1, 1, 169, 254, 1, 2]);
        assert_eq!(internet_checksum(&d[14..34], 0), 0);
        assert_eq!(d[34], 0, "echo reply");
        assert_eq!(internet_checksum(&d[34..46], 0), 0);
        assert_eq!((c.arp, c.icmp), (1, 1));

        // Not for us, not a request, or cut short: left alone.
        let mut other = arp_request();
        other[41] = 9;
        let mut bad_ihl = echo_request();
        bad_ihl[14] = 0x44;
        let mut reply = echo_request();
        reply[34] = 0;
        let req = echo_request();
        for f in [&other[..], &bad_ihl[..], &reply[..], &req[..40], &req[..13]] {
            let mut m = mbuf(&pool, f);
            assert!(!answer_mbuf(&mut m, ME, IP, &mut c));
            assert_eq!(m.data(), f);
        }
    }
}
