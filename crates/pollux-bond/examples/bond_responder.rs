//! A bond that answers ARP and ICMP echo for one IPv4 address: the
//! guest-side program of the lab tests against Linux bonding.
//!
//! ```text
//! bond_responder --member af_packet0,iface=veth0 --member af_packet1,iface=veth1 \
//!     --bond mode=802.3ad,lacp_rate=fast,xmit_hash_policy=layer3+4 \
//!     --ip 169.254.10.1 [--seconds N] [--status-every SECS]
//! ```
//!
//! Members are software-port device strings (pollux_soft::vdev) or, with
//! `--vf PCI`, igbvf, ixgbevf or iavf virtual functions bound to vfio-pci (the
//! driver chosen by the function's PCI ID; named `vf0`,
//! `vf1`, ... in order; the mempool then lives in their shared VFIO
//! container). `--bond`
//! takes the bond's device arguments (BondConfig::from_args). The bond's
//! status, in the layout of /proc/net/bonding, is printed between
//! `=== pollux bond status ===` and `=== end ===` every `--status-every`
//! seconds, on SIGUSR1, and at exit (SIGINT, SIGTERM or `--seconds`),
//! followed by one `counters:` line. Every received frame is answered or
//! dropped; nothing else is sent.
//!
//! One thread does everything: it polls every rx queue of the bond, sends
//! on tx queue 0, and calls the bond's `service()` every 10 ms (LACP,
//! link monitoring, announcements). The bond keeps each member's last tx
//! queue for its control frames, and an af_packet port has as many tx
//! queues as queue pairs and must have every rx queue polled: af_packet
//! members get `qpairs=2` unless the device string sets it, and the bond
//! as many rx queues.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pollux_bond::{BondConfig, BondPort};
use pollux_core::wire::{answer, Answer};
use pollux_core::{AnonMemory, Burst, Mempool, MempoolConfig, Port, PortConf};
use pollux_soft::vdev::Kind;

/// How often the bond's control side is serviced.
const SERVICE_EVERY: Duration = Duration::from_millis(10);

struct Opts {
    members: Vec<String>,
    vfs: Vec<String>,
    bond: String,
    ip: Ipv4Addr,
    seconds: Option<u64>,
    pool: usize,
    status_every: Option<u64>,
}

fn usage(why: &str) -> ! {
    eprintln!("bond_responder: {why}");
    eprintln!("usage: bond_responder --member SPEC... --bond ARGS --ip A.B.C.D [--seconds N] [--status-every S]");
    std::process::exit(2)
}

fn opts() -> Opts {
    let mut o = Opts {
        members: Vec::new(),
        vfs: Vec::new(),
        bond: String::new(),
        ip: Ipv4Addr::UNSPECIFIED,
        seconds: None,
        pool: 2048,
        status_every: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--member" => o.members.push(val()),
            "--vf" => o.vfs.push(val()),
            "--bond" => o.bond = val(),
            "--ip" => o.ip = val().parse().unwrap_or_else(|_| usage("bad --ip")),
            "--pool" => o.pool = val().parse().unwrap_or_else(|_| usage("bad --pool")),
            "--seconds" => {
                o.seconds = Some(val().parse().unwrap_or_else(|_| usage("bad --seconds")))
            }
            "--status-every" => {
                o.status_every = Some(
                    val()
                        .parse()
                        .unwrap_or_else(|_| usage("bad --status-every")),
                )
            }
            _ => usage(&format!("unknown argument {a}")),
        }
    }
    if (o.members.is_empty() && o.vfs.is_empty()) || o.ip.is_unspecified() {
        usage("--member or --vf, and --ip, are required");
    }
    o
}

#[derive(Default)]
struct Counters {
    rx: u64,
    arp_replies: u64,
    echo_replies: u64,
    ignored: u64,
    tx_failed: u64,
}

fn print_status(bond: &BondPort, c: &Counters) {
    println!("=== pollux bond status ===");
    print!("{}", bond.status());
    println!("=== end ===");
    let s = bond.status();
    let per: Vec<String> = (0..s.members.len())
        .map(|i| {
            let st = bond.member(i).map(|m| m.stats()).unwrap_or_default();
            format!(
                "{}:rx={},tx={}",
                s.members[i].name, st.ipackets, st.opackets
            )
        })
        .collect();
    let bx: Vec<String> = bond
        .xstats()
        .iter()
        .filter(|x| x.name.starts_with("bond_"))
        .map(|x| format!("{}={}", x.name, x.value))
        .collect();
    println!("xstats bond: {}", bx.join(" "));
    for (i, m) in s.members.iter().enumerate() {
        if let Some(l) = &m.lacp {
            println!(
                "lacp {}: lacpdu_rx={} lacpdu_tx={} illegal={} loopback={} mux={:?} rx={:?}",
                m.name,
                l.stats.lacpdu_rx,
                l.stats.lacpdu_tx,
                l.stats.lacpdu_illegal_rx,
                l.stats.lacpdu_loopback_rx,
                l.mux_state,
                l.rx_state
            );
        }
        if let Some(p) = bond.member(i) {
            let x: Vec<String> = p
                .xstats()
                .iter()
                .map(|x| format!("{}={}", x.name, x.value))
                .collect();
            println!("xstats {}: {}", m.name, x.join(" "));
        }
    }
    println!(
        "counters: rx={} arp_replies={} echo_replies={} ignored={} tx_failed={} members={} bond_tx_no_member={}",
        c.rx,
        c.arp_replies,
        c.echo_replies,
        c.ignored,
        c.tx_failed,
        per.join(","),
        bond.shell_counters().tx_no_member
    );
}

fn main() {
    let o = opts();
    let mut specs: Vec<_> = o
        .members
        .iter()
        .map(|s| pollux_soft::vdev::parse(s).unwrap_or_else(|e| usage(&e.to_string())))
        .collect();
    let mut rx_queues = 1u16;
    for s in &mut specs {
        if s.kind == Kind::AfPacket {
            if s.get("qpairs").is_none() {
                s.args.push(("qpairs".into(), "2".into()));
            }
            let q = s
                .get("qpairs")
                .and_then(|q| q.parse().ok())
                .unwrap_or_else(|| usage(&format!("{}: bad qpairs", s.name)));
            rx_queues = rx_queues.max(q);
        }
    }
    let ports = pollux_soft::vdev::create_all(&specs).unwrap_or_else(|e| {
        eprintln!("bond_responder: {e}");
        std::process::exit(1)
    });
    let mut args: Vec<(String, String)> = Vec::new();
    for kv in o.bond.split(',').filter(|s| !s.is_empty()) {
        let (k, v) = kv
            .split_once('=')
            .unwrap_or_else(|| usage(&format!("bad bond argument {kv:?}")));
        args.push((k.to_string(), v.to_string()));
    }
    let cfg = BondConfig::from_args(&args).unwrap_or_else(|e| usage(&e.to_string()));
    let mut members: Vec<(String, Box<dyn Port>)> =
        specs.iter().map(|s| s.name.clone()).zip(ports).collect();
    let mut memory: Option<Box<dyn pollux_core::MemoryProvider>> = None;
    for (k, pci) in o.vfs.iter().enumerate() {
        let addr = pci
            .parse()
            .unwrap_or_else(|_| usage(&format!("bad PCI address {pci}")));
        let vf = open_vf(addr).unwrap_or_else(|e| {
            eprintln!("bond_responder: VF {pci}: {e}");
            std::process::exit(1)
        });
        if memory.is_none() {
            // Every VF opened with default options is in the process's
            // shared container, so one pool serves them all.
            let c = pollux_vfio::Container::process_default().unwrap_or_else(|e| {
                eprintln!("bond_responder: VFIO container: {e}");
                std::process::exit(1)
            });
            memory = Some(Box::new(c.dma_memory(pollux_core::HugePages::Prefer)));
        }
        members.push((format!("vf{k}"), vf));
    }
    let mut bond = BondPort::new("bond0", cfg, members).unwrap_or_else(|e| {
        eprintln!("bond_responder: {e}");
        std::process::exit(1)
    });
    // VF members need their buffers in the VFIO container's IOVA space.
    let pool = match &memory {
        Some(m) => Mempool::new(MempoolConfig::new("responder", o.pool), m.as_ref()),
        None => Mempool::new(
            MempoolConfig::new("responder", o.pool),
            &AnonMemory::default(),
        ),
    }
    .expect("mempool");
    let mut conf = PortConf::new(pool.clone());
    conf.rx_queues = rx_queues;
    let mut queues = match bond
        .configure(&conf)
        .and_then(|_| bond.start())
        .and_then(|_| bond.take_queues())
    {
        Ok(q) => q,
        Err(e) => {
            eprintln!("bond_responder: {e}");
            std::process::exit(1);
        }
    };

    let stop = Arc::new(AtomicBool::new(false));
    let dump = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).expect("signal handler");
    }
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, dump.clone())
        .expect("signal handler");

    let ip = o.ip;
    println!(
        "bond_responder: {} answering for {} as {}",
        bond.name(),
        o.ip,
        bond.mac_addr()
    );
    let start = Instant::now();
    let end = o.seconds.map(|s| start + Duration::from_secs(s));
    let every = o.status_every.map(Duration::from_secs);
    let mut next_status = every.map(|e| start + e);
    let mut c = Counters::default();
    let mut rx = Burst::new(32);
    let mut tx = Burst::new(32);
    let mut next_service = start;
    while !stop.load(Ordering::Relaxed) && end.map_or(true, |e| Instant::now() < e) {
        if Instant::now() >= next_service {
            bond.service();
            next_service = Instant::now() + SERVICE_EVERY;
        }
        let mac = bond.mac_addr();
        let mut n = 0;
        for q in &mut queues.rx {
            let got = q.rx_burst(&mut rx);
            n += got;
            c.rx += got as u64;
            while let Some(mut m) = rx.pop_front() {
                // The core's one answering routine, shared with the
                // single-port responder.
                match answer(m.data_mut(), mac, ip) {
                    Some(Answer::Arp) => c.arp_replies += 1,
                    Some(Answer::Echo { len }) => {
                        m.set_len(len);
                        c.echo_replies += 1;
                    }
                    None => {
                        c.ignored += 1;
                        continue;
                    }
                }
                let _ = tx.push(m);
            }
            if !tx.is_empty() {
                queues.tx[0].tx_burst(&mut tx);
                c.tx_failed += tx.len() as u64;
                tx.clear();
            }
        }
        if n == 0 {
            // Idle: af_packet has no interrupt to wait on; a short sleep
            // keeps a TCG guest usable and still polls the bond far more
            // often than LACP needs.
            std::thread::sleep(Duration::from_micros(200));
        }
        if dump.swap(false, Ordering::Relaxed) || next_status.is_some_and(|t| Instant::now() >= t) {
            print_status(&bond, &c);
            next_status = every.map(|e| Instant::now() + e);
        }
    }
    print_status(&bond, &c);
    let _ = bond.stop();
    drop(queues);
}

/// Opens a VF with the PMD for its PCI ID (igbvf, ixgbevf or iavf).
fn open_vf(
    addr: pollux_vfio::pci::PciAddr,
) -> Result<Box<dyn Port>, Box<dyn std::error::Error + Send + Sync>> {
    let drivers = [
        &pollux_igbvf::DRIVER,
        &pollux_ixgbevf::DRIVER,
        &pollux_iavf::DRIVER,
    ];
    let opts = pollux_vfio::PciOpenOpts::default();
    let sysfs = pollux_pci::Sysfs::new(&opts.vfio.sysfs_root);
    let (vendor, device) = (sysfs.vendor(addr)?, sysfs.device(addr)?);
    let driver = drivers
        .iter()
        .find(|d| d.handles(vendor, device))
        .ok_or_else(|| format!("no VF driver here for PCI ID {vendor:04x}:{device:04x}"))?;
    (driver.open)(addr, &opts)
}
