//! `pollux testpmd`: forward packets between ports, like dpdk-testpmd.
//!
//! Ports come from `--vdev` device strings (software ports) and `-a`
//! PCI addresses (NIC virtual functions, opened through the driver
//! registry). Streams are laid out as testpmd does (ports paired 0-1, 2-3,
//! one stream per port and queue) and shared round-robin among
//! `--nb-cores` forwarding lcores pinned to CPUs; each stream owns the
//! queue handles it polls, so lcores share nothing but the mempool. The
//! main thread keeps the ports' control sides: it runs their `service`
//! (mailbox, recovery, LACP), prints a stats table every `--stats-period`
//! seconds and a summary at the end; with `--json` the only thing on
//! stdout is one final JSON line.

mod fwd;
mod offload;
mod telemetry;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pollux_core::lcore::{self, StopFlag};
use pollux_core::mempool::{MempoolConfig, DEFAULT_DATA_ROOM};
use pollux_core::net::{UdpFrameSpec, UDP_FRAME_MIN};
use pollux_core::{
    AnonMemory, HugePages, MacAddr, Mempool, Port, PortConf, PortStats, QueueStats, RxQueue,
    TxQueue,
};
use serde::Serialize;

pub use fwd::FwdMode;
use fwd::{build_streams, FlowKey, FwdConfig, StreamQueues, StreamSpec};
use offload::CksumOffloads;
pub use telemetry::run_dir;

#[derive(clap::Args, Debug)]
pub struct TestpmdArgs {
    /// Software port (repeatable): null0[,size=64], ring0[,peer=ring1],
    /// af_packet0,iface=IF, pcap0,rx=FILE[,tx=FILE][,infinite_rx=1].
    #[arg(long = "vdev", value_name = "SPEC")]
    vdevs: Vec<String>,
    /// PCI address of a NIC function bound to vfio-pci (repeatable).
    #[arg(short = 'a', long = "allow", value_name = "PCI")]
    pci: Vec<String>,
    /// Also drive the VFs the SR-IOV device plugin gave this pod: the PCI
    /// addresses in PCIDEVICE_<RESOURCE> (every PCIDEVICE_* variable when no
    /// resource name is given).
    #[arg(long = "pci-from-env", value_name = "RESOURCE", num_args = 0..=1, default_missing_value = "")]
    pci_from_env: Option<String>,
    /// Also drive the VF named in this device-info file (Network Plumbing
    /// WG device-info-spec, as pollux-cni writes it); repeatable.
    #[arg(long = "device-info", value_name = "FILE")]
    device_info: Vec<std::path::PathBuf>,
    /// Control socket for `pollux bond show` (default:
    /// <run dir>/testpmd-<pid>.sock).
    #[arg(long)]
    socket: Option<std::path::PathBuf>,
    /// Forwarding mode.
    #[arg(long, value_enum, default_value = "io")]
    fwd: FwdMode,
    /// Packets per burst.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=512))]
    burst: u16,
    /// Length of generated packets (txonly, flowgen), FCS excluded.
    #[arg(long, default_value_t = 64)]
    txpkts: u16,
    /// Number of forwarding lcores.
    #[arg(long = "nb-cores", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=128))]
    nb_cores: u16,
    /// CPUs for the forwarding lcores, e.g. `1` or `2,3` (default: the CPUs
    /// after the first, as `dpdk-testpmd -l 0,1` does).
    #[arg(long, value_delimiter = ',')]
    cpus: Vec<usize>,
    /// Do not pin forwarding lcores to CPUs.
    #[arg(long)]
    no_pin: bool,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    duration: Option<f64>,
    /// Print exactly one JSON line on stdout at the end (the live table goes
    /// to stderr).
    #[arg(long)]
    json: bool,
    /// Seconds between live stats tables; 0 turns them off. Each table's
    /// per-port rates (packets since the previous table over the time
    /// since) are also in the JSON report's `periods`.
    #[arg(long, default_value_t = 1.0)]
    stats_period: f64,
    /// Receive queues per port.
    #[arg(long, default_value_t = 1)]
    rxq: u16,
    /// Transmit queues per port.
    #[arg(long, default_value_t = 1)]
    txq: u16,
    /// Receive descriptors per queue.
    #[arg(long, default_value_t = 512)]
    rxd: u16,
    /// Transmit descriptors per queue.
    #[arg(long, default_value_t = 512)]
    txd: u16,
    /// Mbufs in the pool (default: enough for every queue and cache).
    #[arg(long = "total-num-mbufs")]
    total_num_mbufs: Option<usize>,
    /// Bytes per mbuf, headroom included.
    #[arg(long = "mbuf-size", default_value_t = DEFAULT_DATA_ROOM)]
    mbuf_size: u16,
    /// Destination MAC for a port in mac/txonly/flowgen modes: PORT,MAC.
    #[arg(long = "eth-peer", value_name = "PORT,MAC")]
    eth_peer: Vec<String>,
    /// Source and destination IPv4 of generated packets: SRC,DST.
    #[arg(long = "tx-ip", value_name = "SRC,DST")]
    tx_ip: Option<String>,
    /// UDP ports of generated packets: SRC[,DST].
    #[arg(long = "tx-udp", value_name = "SRC[,DST]")]
    tx_udp: Option<String>,
    /// Number of flows in flowgen mode.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=65536))]
    flows: u32,
    /// txonly only: vary the IPv4 source address of every packet as DPDK
    /// 22.11 testpmd's option of the same name does, with the same
    /// per-packet work: source = (DST | n << 8) + lcore (n a per-lcore
    /// counter, 0-255, DST from --tx-ip), then the IPv4 total length, the
    /// whole IPv4 header checksum and the UDP length written anew. The UDP
    /// checksum stays 0; does not combine with --tx-offloads.
    #[arg(long = "txonly-multi-flow")]
    txonly_multi_flow: bool,
    /// Put the mbuf pool in normal 4 KiB pages, as DPDK's EAL option of
    /// the same name does (default: 2 MiB huge pages when the system has
    /// them, else normal pages).
    #[arg(long = "no-huge")]
    no_huge: bool,
    /// Leave promiscuous mode off (testpmd turns it on by default).
    #[arg(long)]
    no_promisc: bool,
    /// Transmit checksum offloads for every port, comma-separated:
    /// udp_cksum, tcp_cksum, ipv4_cksum. txonly and flowgen then leave
    /// the UDP checksum (the field holds the pseudo-header sum) and the
    /// IPv4 header checksum (the field is 0) to the port.
    #[arg(long = "tx-offloads", value_name = "LIST", value_parser = offload::parse_cksum_offloads)]
    tx_offloads: Option<CksumOffloads>,
    /// Receive checksum offloads for every port, comma-separated:
    /// udp_cksum, tcp_cksum, ipv4_cksum. rxonly then counts the frames
    /// the ports flag with a good or bad L4 checksum or a bad IPv4
    /// checksum.
    #[arg(long = "rx-offloads", value_name = "LIST", value_parser = offload::parse_cksum_offloads)]
    rx_offloads: Option<CksumOffloads>,
    /// Record which flows (addresses, protocol, ports) each queue
    /// receives, and report per port how many flows each queue saw and
    /// how many more than one queue saw (rxonly only).
    #[arg(long = "flow-queues")]
    flow_queues: bool,
}

/// Per-queue figures of the final report (the port's own queue counters).
#[derive(Debug, Serialize)]
struct QueueReport {
    queue: usize,
    rx_packets: u64,
    tx_packets: u64,
}

/// One stream's figures: which lcore ran it, on which queues.
#[derive(Debug, Serialize)]
struct StreamReport {
    lcore: usize,
    rx_port: usize,
    rx_queue: u16,
    tx_port: usize,
    tx_queue: u16,
    rx_packets: u64,
    tx_packets: u64,
    dropped: u64,
}

/// Per-port figures of the final report.
#[derive(Debug, Serialize)]
struct PortReport {
    name: String,
    rx_packets: u64,
    tx_packets: u64,
    rx_pps: f64,
    tx_pps: f64,
    rx_dropped: u64,
    tx_dropped: u64,
    errors: u64,
    queues: Vec<QueueReport>,
    /// Received frames the port flagged L4 checksum good (rxonly with
    /// --rx-offloads; absent otherwise), and the next two likewise.
    #[serde(skip_serializing_if = "Option::is_none")]
    rx_l4_cksum_good: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rx_l4_cksum_bad: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rx_ip_cksum_bad: Option<u64>,
}

/// The flows one port received (--flow-queues): RSS keeps each flow on
/// one queue when `on_several_queues` is 0.
#[derive(Debug, PartialEq, Eq, Serialize)]
struct PortFlows {
    port: usize,
    name: String,
    /// Distinct flows each polled queue received.
    queues: Vec<QueueFlows>,
    /// Distinct flows the port received.
    total: usize,
    /// Flows that more than one queue received.
    on_several_queues: usize,
}

/// Distinct flows one queue received.
#[derive(Debug, PartialEq, Eq, Serialize)]
struct QueueFlows {
    queue: u16,
    flows: usize,
}

/// The rates of one stats period (one live table), computed as the table
/// computes them: the packets counted since the previous table over the
/// exact time since it.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct PeriodSample {
    /// Seconds from the start of forwarding to the end of the period.
    t: f64,
    /// Per port, packets received per second over the period.
    rx_pps: Vec<f64>,
    /// Per port, packets sent per second over the period.
    tx_pps: Vec<f64>,
}

#[derive(Debug, Serialize)]
struct Report {
    duration_s: f64,
    ports: Vec<PortReport>,
    total_rx_pps: f64,
    total_tx_pps: f64,
    fwd: FwdMode,
    burst: u16,
    nb_cores: u16,
    streams: Vec<StreamReport>,
    mbufs_total: usize,
    mbufs_free_at_exit: usize,
    /// Whether the mbuf pool got 2 MiB huge pages (never with --no-huge).
    huge_pages: bool,
    /// The rates of every stats period, in order (none with
    /// --stats-period 0): the same statistic as dpdk-testpmd's
    /// "Throughput (since last show)".
    periods: Vec<PeriodSample>,
    /// Per port, the flows each queue received (--flow-queues only).
    #[serde(skip_serializing_if = "Option::is_none")]
    flows: Option<Vec<PortFlows>>,
}

fn parse_ipv4(s: &str) -> Result<[u8; 4]> {
    let ip: std::net::Ipv4Addr = s
        .trim()
        .parse()
        .with_context(|| format!("invalid IPv4 address {s:?}"))?;
    Ok(ip.octets())
}

impl TestpmdArgs {
    fn udp_spec(&self) -> Result<UdpFrameSpec> {
        let mut spec = UdpFrameSpec::default();
        if let Some(ips) = &self.tx_ip {
            let (s, d) = ips.split_once(',').context("--tx-ip takes SRC,DST")?;
            spec.src_ip = parse_ipv4(s)?;
            spec.dst_ip = parse_ipv4(d)?;
        }
        if let Some(ports) = &self.tx_udp {
            let (s, d) = ports.split_once(',').unwrap_or((ports, ports));
            spec.src_port = s
                .trim()
                .parse()
                .with_context(|| format!("invalid UDP port {s:?}"))?;
            spec.dst_port = d
                .trim()
                .parse()
                .with_context(|| format!("invalid UDP port {d:?}"))?;
        }
        Ok(spec)
    }

    fn validate(&self) -> Result<()> {
        if self.vdevs.is_empty()
            && self.pci.is_empty()
            && self.pci_from_env.is_none()
            && self.device_info.is_empty()
        {
            bail!("no ports: give at least one --vdev (e.g. --vdev null0) or -a <PCI address>");
        }
        if let Some(d) = self.duration {
            if !(d.is_finite() && d > 0.0) {
                bail!("--duration must be a positive number of seconds, got {d}");
            }
        }
        if !(self.stats_period.is_finite() && self.stats_period >= 0.0) {
            bail!("--stats-period must be 0 or more seconds");
        }
        let room = self.mbuf_size as usize;
        if room < pollux_core::mbuf::HEADROOM as usize + 64 {
            bail!(
                "--mbuf-size {room} is too small: at least {} bytes",
                pollux_core::mbuf::HEADROOM + 64
            );
        }
        let max_pkt = room - pollux_core::mbuf::HEADROOM as usize;
        if (self.txpkts as usize) < UDP_FRAME_MIN || self.txpkts as usize > max_pkt {
            bail!("--txpkts must be between {UDP_FRAME_MIN} and {max_pkt} (the mbuf data room)");
        }
        if self.rxq == 0 || self.txq == 0 {
            bail!("--rxq and --txq must be at least 1");
        }
        let mode = clap::ValueEnum::to_possible_value(&self.fwd)
            .map_or_else(|| format!("{:?}", self.fwd), |v| v.get_name().to_string());
        if self.flow_queues && self.fwd != FwdMode::Rxonly {
            bail!("--flow-queues records what rxonly receives: use it with --fwd rxonly, not --fwd {mode}");
        }
        if self.txonly_multi_flow {
            if self.fwd != FwdMode::Txonly {
                bail!("--txonly-multi-flow varies what txonly generates: use it with --fwd txonly, not --fwd {mode}");
            }
            if self.tx_offloads.is_some() {
                // DPDK's txonly computes the IPv4 header checksum itself and
                // sends no UDP checksum; mirroring its work leaves the port
                // nothing to do.
                bail!("--txonly-multi-flow writes the IPv4 header checksum in software and no UDP checksum, as DPDK's does: it does not combine with --tx-offloads");
            }
        }
        Ok(())
    }

    /// Where the mbuf pool's pages come from.
    fn huge_pages(&self) -> HugePages {
        if self.no_huge {
            HugePages::Never
        } else {
            HugePages::Prefer
        }
    }

    /// Whether rxonly counts the checksum flags of received frames.
    fn counts_rx_cksum(&self) -> bool {
        self.rx_offloads.is_some() && self.fwd == FwdMode::Rxonly
    }
}

/// PCI addresses from -a, the device plugin's environment and device-info
/// files, in that order, without duplicates.
fn pci_addresses(args: &TestpmdArgs) -> Result<Vec<pollux_pci::PciAddr>> {
    let mut out = Vec::new();
    for a in &args.pci {
        out.push(a.parse().with_context(|| format!("-a {a}"))?);
    }
    if let Some(resource) = &args.pci_from_env {
        let r = (!resource.is_empty()).then_some(resource.as_str());
        out.extend(pollux_sriov::pod::vfs_from_env(std::env::vars(), r)?);
    }
    if !args.device_info.is_empty() {
        out.extend(pollux_sriov::pod::vfs_from_device_info_files(
            &args.device_info,
        )?);
    }
    let mut seen = Vec::new();
    out.retain(|a| {
        let new = !seen.contains(a);
        seen.push(*a);
        new
    });
    Ok(out)
}

/// A `--vdev` string that names a bond (`bond0,...` or DPDK's
/// `net_bonding0,...`): its name and arguments.
fn bond_spec(spec: &str) -> Option<(String, Vec<(String, String)>)> {
    let mut parts = spec.split(',');
    let name = parts.next()?.trim();
    let id = name
        .strip_prefix("net_bonding")
        .or_else(|| name.strip_prefix("bond"))?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None;
    }
    let args = parts
        .filter(|a| !a.trim().is_empty())
        .map(|a| {
            let (k, v) = a.split_once('=').unwrap_or((a, ""));
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    Some((format!("bond{id}"), args))
}

/// Opens every port the arguments name: software ports, then PCI ports,
/// then bonds, which take their members out of the list.
/// The ports of a run, and the status snapshots of its bonds.
struct Opened {
    ports: Vec<Box<dyn Port>>,
    bonds: Vec<telemetry::Snapshot>,
}

fn open_ports(args: &TestpmdArgs) -> Result<Opened> {
    let mut soft = Vec::new();
    let mut bonds = Vec::new();
    for v in &args.vdevs {
        match bond_spec(v) {
            Some(b) => bonds.push(b),
            None => soft.push(pollux_soft::vdev::parse(v)?),
        }
    }
    let mut ports: Vec<(String, Box<dyn Port>)> = pollux_soft::vdev::create_all(&soft)?
        .into_iter()
        .zip(&soft)
        .map(|(p, s)| (s.name.clone(), p))
        .collect();
    for pci in pci_addresses(args)? {
        let port = pollux::open_pci(pci, &pollux_vfio::PciOpenOpts::default())
            .map_err(|e| anyhow::anyhow!("-a {pci}: {e}"))?;
        ports.push((pci.to_string(), port));
    }
    let mut snapshots = Vec::new();
    for (name, bargs) in bonds {
        let config =
            pollux_bond::BondConfig::from_args(&bargs).with_context(|| format!("--vdev {name}"))?;
        if config.members.is_empty() {
            bail!("--vdev {name}: a bond needs member=<port> arguments (port names as given to --vdev or -a)");
        }
        let mut members = Vec::new();
        for m in &config.members {
            let i = ports
                .iter()
                .position(|(n, _)| n == m || n.strip_prefix("0000:") == Some(m))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--vdev {name}: member {m} is not a port given before it with --vdev or -a"
                    )
                })?;
            let (n, p) = ports.remove(i);
            members.push((if n == *m { n } else { m.clone() }, p));
        }
        let bond = pollux_bond::BondPort::new(&name, config, members)
            .with_context(|| format!("--vdev {name}"))?;
        let (published, snapshot) = telemetry::Published::new(bond);
        snapshots.push(snapshot);
        ports.push((name, Box::new(published)));
    }
    if ports.is_empty() {
        bail!("no ports: give at least one --vdev (e.g. --vdev null0) or -a <PCI address>");
    }
    Ok(Opened {
        ports: ports.into_iter().map(|(_, p)| p).collect(),
        bonds: snapshots,
    })
}

fn default_pool_size(args: &TestpmdArgs, nb_ports: usize) -> usize {
    let per_port = (args.rxd as usize * args.rxq as usize)
        + (args.txd as usize * args.txq as usize)
        + 2 * args.burst as usize
        + pollux_soft::ring::DEFAULT_CAPACITY;
    let per_core = 512 + args.burst as usize * 4;
    (per_port * nb_ports + per_core * args.nb_cores as usize).max(8192)
}

/// CPUs for the main lcore and for `n` forwarding lcores. Like `-l 0,1`
/// when testpmd picks them: the first CPU is the main lcore's (DPDK pins
/// its main lcore the same way), forwarding starts after it and wraps
/// around when there are too few. With `--cpus` the main lcore stays
/// unpinned.
fn lcore_cpus(args: &TestpmdArgs, n: usize) -> (Option<usize>, Vec<Option<usize>>) {
    if args.no_pin {
        return (None, vec![None; n]);
    }
    if !args.cpus.is_empty() {
        let fwd = (0..n)
            .map(|i| Some(args.cpus[i % args.cpus.len()]))
            .collect();
        return (None, fwd);
    }
    let cpus = lcore::available_cpus();
    if cpus.is_empty() {
        return (None, vec![None; n]);
    }
    let skip = usize::from(cpus.len() > 1);
    let fwd = (0..n)
        .map(|i| Some(cpus[(skip + i) % cpus.len()]))
        .collect();
    ((skip == 1).then(|| cpus[0]), fwd)
}

/// Runs `pollux testpmd`.
pub fn run(args: TestpmdArgs) -> Result<()> {
    args.validate()?;
    let udp = args.udp_spec()?;
    let Opened { mut ports, bonds } = open_ports(&args)?;
    let nb_ports = ports.len();
    let uses_pci =
        !(args.pci.is_empty() && args.pci_from_env.is_none() && args.device_info.is_empty());

    let pool_size = args
        .total_num_mbufs
        .unwrap_or_else(|| default_pool_size(&args, nb_ports));
    let mut pcfg = MempoolConfig::new("testpmd", pool_size);
    pcfg.data_room = args.mbuf_size;
    pcfg.cache_size = 256.min(pool_size / 2);
    // PCI ports DMA into the pool: it must be mapped into their (shared,
    // process-wide) VFIO container. Software ports are happy with any memory.
    // The pool is all the packet memory testpmd allocates: --no-huge puts
    // it in normal pages either way.
    let pool = if !uses_pci {
        Mempool::new(pcfg, &AnonMemory::new(args.huge_pages()))
    } else {
        let dma = pollux_vfio::Container::process_default()
            .context("VFIO container")?
            .dma_memory(args.huge_pages());
        Mempool::new(pcfg, &dma)
    }
    .context("cannot create the mbuf pool")?;

    let mut out: Box<dyn Write> = if args.json {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let mut port_macs = Vec::new();
    let mut names = Vec::new();
    for (i, p) in ports.iter_mut().enumerate() {
        let info = p.info();
        let mut conf = PortConf::new(pool.clone());
        conf.port_id = i as u16;
        conf.rx_queues = args.rxq;
        conf.tx_queues = args.txq;
        conf.rx_desc = args.rxd;
        conf.tx_desc = args.txd;
        conf.tx_offloads = args.tx_offloads.map(|o| o.tx).unwrap_or_default();
        conf.rx_offloads = args.rx_offloads.map(|o| o.rx).unwrap_or_default();
        p.configure(&conf).with_context(|| {
            // The port judges what it can do; say what was asked of it and
            // what it offers, in the options' terms.
            let caps = &info.capabilities;
            let mut asked = String::new();
            if !conf.tx_offloads.is_empty() {
                asked += &format!(
                    " with --tx-offloads {} (it offers {})",
                    offload::tx_names(conf.tx_offloads),
                    offload::tx_names(caps.tx_offloads)
                );
            }
            if !conf.rx_offloads.is_empty() {
                asked += &format!(
                    " with --rx-offloads {} (it offers {})",
                    offload::rx_names(conf.rx_offloads),
                    offload::rx_names(caps.rx_offloads)
                );
            }
            format!("port {i} ({}): configure{asked}", info.name)
        })?;
        p.start()
            .with_context(|| format!("port {i} ({}): start", info.name))?;
        if !args.no_promisc {
            if let Err(e) = p.set_promiscuous(true) {
                tracing::warn!("port {i} ({}): promiscuous mode: {e}", info.name);
            }
        }
        let link = p.link();
        writeln!(
            out,
            "Port {i} ({}, {}): MAC {} link {link}",
            info.name,
            info.driver,
            p.mac_addr()
        )?;
        port_macs.push(p.mac_addr());
        names.push(info.name);
    }
    let mut peer_macs: Vec<MacAddr> = (0..nb_ports)
        .map(|i| MacAddr([0x02, 0, 0, 0, 0, i as u8]))
        .collect();
    for ep in &args.eth_peer {
        let (p, m) = ep.split_once(',').context("--eth-peer takes PORT,MAC")?;
        let p: usize = p
            .trim()
            .parse()
            .with_context(|| format!("invalid port {p:?} in --eth-peer"))?;
        if p >= nb_ports {
            bail!("--eth-peer {ep}: there is no port {p} ({nb_ports} ports)");
        }
        peer_macs[p] = m.trim().parse()?;
    }

    // Every handle goes to the one stream that polls it.
    let mut rx_handles: Vec<Vec<Option<Box<dyn RxQueue>>>> = Vec::new();
    let mut tx_handles: Vec<Vec<Option<Box<dyn TxQueue>>>> = Vec::new();
    for (i, p) in ports.iter_mut().enumerate() {
        let q = p
            .take_queues()
            .with_context(|| format!("port {i} ({}): queues", names[i]))?;
        rx_handles.push(q.rx.into_iter().map(Some).collect());
        tx_handles.push(q.tx.into_iter().map(Some).collect());
    }
    let queues = args.rxq.min(args.txq);
    let streams = build_streams(nb_ports, queues, args.fwd);
    let nb_cores = (args.nb_cores as usize).min(streams.len());
    let mut per_core: Vec<Vec<(StreamSpec, StreamQueues)>> =
        (0..nb_cores).map(|_| Vec::new()).collect();
    let mut stream_lcore = Vec::new();
    for (i, s) in streams.iter().enumerate() {
        let rx = if args.fwd.receives() {
            let h = rx_handles[s.rx_port][s.rx_queue as usize].take();
            Some(h.with_context(|| format!("rx queue {}/{} has no handle", s.rx_port, s.rx_queue))?)
        } else {
            None
        };
        // rxonly too: its queue gets the idle calls (see fwd::StreamQueues).
        let h = tx_handles[s.tx_port][s.tx_queue as usize].take();
        let tx = Some(
            h.with_context(|| format!("tx queue {}/{} has no handle", s.tx_port, s.tx_queue))?,
        );
        per_core[i % nb_cores].push((s.clone(), StreamQueues { rx, tx }));
        stream_lcore.push(i % nb_cores);
    }
    // Handles no stream uses (rxq != txq, or the unused direction of
    // txonly/rxonly) stay alive, idle, until the run ends.
    let idle = (rx_handles, tx_handles);
    let cfg = FwdConfig {
        mode: args.fwd,
        burst: args.burst as usize,
        txpkts: args.txpkts as usize,
        pool: pool.clone(),
        port_macs,
        peer_macs,
        udp,
        flows: args.flows,
        tx_offloads: args.tx_offloads.map(|o| o.tx).unwrap_or_default(),
        count_rx_cksum: args.counts_rx_cksum(),
        flow_queues: args.flow_queues,
        multi_flow: args.txonly_multi_flow,
    };
    writeln!(
        out,
        "{:?} forwarding{}: {} streams on {nb_cores} lcore(s), burst {}, {} mbufs in {} pages",
        args.fwd,
        if args.txonly_multi_flow {
            " (multi-flow)"
        } else {
            ""
        },
        streams.len(),
        args.burst,
        pool_size,
        if pool.is_huge() { "2 MiB" } else { "4 KiB" }
    )?;

    let stop = StopFlag::new();
    // Signals seen so far: a second signal exits at once (130). Kept apart
    // from the stop flag, which the --duration deadline sets too: a signal
    // that arrives while a timed run winds down is a first signal, and the
    // run still prints its report (the lab's side-by-side sends SIGINT near
    // the deadline).
    let signalled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Actions run in registration order: check, then record, then stop.
        signal_hook::flag::register_conditional_shutdown(sig, 130, signalled.clone())
            .context("cannot install signal handler")?;
        signal_hook::flag::register(sig, signalled.clone())
            .context("cannot install signal handler")?;
        signal_hook::flag::register(sig, stop.as_atomic())
            .context("cannot install signal handler")?;
    }
    let (main_cpu, cpus) = lcore_cpus(&args, nb_cores);
    print_stream_table(&mut out, &per_core, &cpus, &cfg)?;
    // The stats loop, the control socket and the signal handling then never
    // interrupt a forwarding lcore.
    if let Some(c) = main_cpu {
        if !lcore::pin_current(c) {
            tracing::warn!(cpu = c, "could not pin the main lcore; it runs unpinned");
        }
    }
    let socket_path = args
        .socket
        .clone()
        .unwrap_or_else(|| run_dir().join(format!("testpmd-{}.sock", std::process::id())));
    let server = match telemetry::Server::bind(&socket_path, bonds.clone()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("no control socket at {}: {e}", socket_path.display());
            None
        }
    };
    if let (Some(s), false) = (&server, bonds.is_empty()) {
        writeln!(
            out,
            "bond status: pollux bond show --socket {}",
            s.path().display()
        )?;
    }

    let start = Instant::now();
    let mut lcores = Vec::new();
    for (i, streams) in per_core.into_iter().enumerate() {
        let (cfg, stop2) = (cfg.clone(), stop.clone());
        lcores.push(lcore::launch(i, cpus[i], stop.clone(), move |ctx| {
            // Lcore ids as DPDK's testpmd has them under `-l 0,1,..`: the
            // main lcore is 0, forwarding lcores 1 and up (txonly
            // multi-flow puts the id in its source addresses).
            fwd::run_lcore(ctx.index + 1, streams, &cfg, &stop2)
        })?);
    }

    // Main lcore: the ports' control work, live stats until the deadline
    // or a signal.
    let deadline = args.duration.map(|d| start + Duration::from_secs_f64(d));
    let period = (args.stats_period > 0.0).then(|| Duration::from_secs_f64(args.stats_period));
    let mut next_tick = period.map(|p| start + p);
    let mut last = (start, vec![(0u64, 0u64); nb_ports]);
    let mut periods = Vec::new();
    while !stop.is_stopped() {
        for p in ports.iter_mut() {
            p.service();
        }
        let now = Instant::now();
        // A period that ends at the deadline is a whole one: shown and
        // recorded before the run stops.
        if let (Some(t), Some(p)) = (next_tick, period) {
            if now >= t {
                let cur = totals(&streams, nb_ports);
                let sample = period_sample(start, &cur, &last, now);
                print_live(&mut out, &names, &cur, &sample)?;
                periods.push(sample);
                last = (now, cur.iter().map(|c| (c.0, c.1)).collect());
                next_tick = Some(t + p);
            }
        }
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        if let Some(s) = &server {
            s.serve_pending();
        }
        let mut wake = now + Duration::from_millis(50);
        if let Some(d) = deadline {
            wake = wake.min(d);
        }
        if let Some(t) = next_tick {
            wake = wake.min(t);
        }
        std::thread::sleep(wake.saturating_duration_since(Instant::now()));
    }
    stop.stop();
    let mut failed = None;
    for l in lcores {
        if let Err(e) = l.join() {
            failed.get_or_insert(e);
        }
    }
    // The streams' handles went with their lcores; the idle ones go now,
    // before the ports stop.
    drop(idle);
    if let Some(e) = failed {
        bail!("forwarding lcore failed: {e}");
    }
    let elapsed = start.elapsed().as_secs_f64();

    let sums = totals(&streams, nb_ports);
    let mut stats = Vec::new();
    let mut qstats = Vec::new();
    for (i, p) in ports.iter_mut().enumerate() {
        if let Err(e) = p.stop() {
            tracing::warn!("port {i}: stop: {e}");
        }
        stats.push(p.stats());
        qstats.push(p.queue_stats());
    }
    drop(ports);
    let mut report = build_report(&names, &stats, &qstats, &sums, elapsed, &args, &pool);
    report.periods = periods;
    if args.counts_rx_cksum() {
        for s in &streams {
            let (c, p) = (&s.counters, &mut report.ports[s.rx_port]);
            for (sum, n) in [
                (&mut p.rx_l4_cksum_good, &c.rx_l4_cksum_good),
                (&mut p.rx_l4_cksum_bad, &c.rx_l4_cksum_bad),
                (&mut p.rx_ip_cksum_bad, &c.rx_ip_cksum_bad),
            ] {
                *sum.get_or_insert(0) += n.load(Ordering::Acquire);
            }
        }
    }
    if args.flow_queues {
        let seen: Vec<(usize, u16, HashSet<FlowKey>)> = streams
            .iter()
            .map(|s| {
                let mut f = s.counters.flows.lock().unwrap_or_else(|e| e.into_inner());
                (s.rx_port, s.rx_queue, std::mem::take(&mut *f))
            })
            .collect();
        report.flows = Some(flow_report(&names, &seen));
    }
    report.streams = streams
        .iter()
        .zip(&stream_lcore)
        .map(|(s, &lcore)| StreamReport {
            lcore,
            rx_port: s.rx_port,
            rx_queue: s.rx_queue,
            tx_port: s.tx_port,
            tx_queue: s.tx_queue,
            rx_packets: s.counters.rx.load(Ordering::Acquire),
            tx_packets: s.counters.tx.load(Ordering::Acquire),
            dropped: s.counters.dropped.load(Ordering::Acquire),
        })
        .collect();
    print_summary(&mut out, &report)?;
    for b in &bonds {
        writeln!(out, "{}", b.lock().unwrap_or_else(|e| e.into_inner()))?;
    }
    drop(server);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    if report.mbufs_free_at_exit != report.mbufs_total {
        bail!(
            "mbuf leak: {} of {} mbufs did not come back to the pool",
            report.mbufs_total - report.mbufs_free_at_exit,
            report.mbufs_total
        );
    }
    Ok(())
}

/// dpdk-testpmd's stream table: which lcore, on which CPU, forwards which
/// queue to which.
fn print_stream_table(
    out: &mut dyn Write,
    per_core: &[Vec<(StreamSpec, StreamQueues)>],
    cpus: &[Option<usize>],
    cfg: &FwdConfig,
) -> std::io::Result<()> {
    for (i, streams) in per_core.iter().enumerate() {
        let cpu = cpus[i].map_or_else(|| "any CPU".to_string(), |c| format!("CPU {c}"));
        writeln!(
            out,
            "Logical Core {i} ({cpu}) forwards packets on {} streams:",
            streams.len()
        )?;
        for (s, q) in streams {
            let rx = match q.rx {
                Some(_) => format!("RX P={}/Q={}", s.rx_port, s.rx_queue),
                None => "RX -".to_string(),
            };
            let tx = match q.tx {
                Some(_) if cfg.mode == FwdMode::Rxonly => "TX -".to_string(),
                Some(_) => format!(
                    "TX P={}/Q={} peer={}",
                    s.tx_port, s.tx_queue, cfg.peer_macs[s.tx_port]
                ),
                None => "TX -".to_string(),
            };
            writeln!(out, "  {rx} -> {tx}")?;
        }
    }
    Ok(())
}

/// Per port, from each stream's (receiving port, queue, flows): the
/// distinct flows of each queue and of the port, and how many of the
/// port's flows more than one queue received.
fn flow_report(names: &[String], seen: &[(usize, u16, HashSet<FlowKey>)]) -> Vec<PortFlows> {
    names
        .iter()
        .enumerate()
        .map(|(port, name)| {
            let mut queues = Vec::new();
            // Flow -> how many of the port's queues received it.
            let mut on_queues: HashMap<&FlowKey, usize> = HashMap::new();
            for (_, queue, flows) in seen.iter().filter(|(p, _, _)| *p == port) {
                queues.push(QueueFlows {
                    queue: *queue,
                    flows: flows.len(),
                });
                for f in flows {
                    *on_queues.entry(f).or_default() += 1;
                }
            }
            queues.sort_by_key(|q| q.queue);
            PortFlows {
                port,
                name: name.clone(),
                queues,
                total: on_queues.len(),
                on_several_queues: on_queues.values().filter(|&&n| n > 1).count(),
            }
        })
        .collect()
}

/// (rx, tx, dropped) per port from the stream counters: rx counts on the
/// receiving port, tx and dropped on the sending one.
fn totals(streams: &[StreamSpec], nb_ports: usize) -> Vec<(u64, u64, u64)> {
    let mut t = vec![(0, 0, 0); nb_ports];
    for s in streams {
        t[s.rx_port].0 += s.counters.rx.load(Ordering::Acquire);
        t[s.tx_port].1 += s.counters.tx.load(Ordering::Acquire);
        t[s.tx_port].2 += s.counters.dropped.load(Ordering::Acquire);
    }
    t
}

fn si(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// The rates of the period from the previous table (`last`: its time and
/// per-port rx, tx counts) to `now`, per port: the packets counted since,
/// over the exact time since. `cur` holds each port's (rx, tx, dropped)
/// now.
fn period_sample(
    start: Instant,
    cur: &[(u64, u64, u64)],
    last: &(Instant, Vec<(u64, u64)>),
    now: Instant,
) -> PeriodSample {
    let dt = now.duration_since(last.0).as_secs_f64().max(1e-9);
    let (rx_pps, tx_pps) = cur
        .iter()
        .zip(&last.1)
        .map(|(c, &(lr, lt))| {
            (
                c.0.saturating_sub(lr) as f64 / dt,
                c.1.saturating_sub(lt) as f64 / dt,
            )
        })
        .unzip();
    PeriodSample {
        t: now.duration_since(start).as_secs_f64(),
        rx_pps,
        tx_pps,
    }
}

/// The live table: each port's counts and the rates of the period that
/// just ended.
fn print_live(
    out: &mut dyn Write,
    names: &[String],
    cur: &[(u64, u64, u64)],
    sample: &PeriodSample,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{:>4} {:<14} {:>14} {:>10} {:>14} {:>10} {:>10}",
        "port", "name", "rx-packets", "rx-pps", "tx-packets", "tx-pps", "dropped"
    )?;
    for (i, (name, c)) in names.iter().zip(cur).enumerate() {
        writeln!(
            out,
            "{:>4} {:<14} {:>14} {:>10} {:>14} {:>10} {:>10}",
            i,
            name,
            c.0,
            si(sample.rx_pps[i]),
            c.1,
            si(sample.tx_pps[i]),
            c.2
        )?;
    }
    out.flush()
}

fn build_report(
    names: &[String],
    stats: &[PortStats],
    qstats: &[Vec<QueueStats>],
    flows: &[(u64, u64, u64)],
    elapsed: f64,
    args: &TestpmdArgs,
    pool: &Mempool,
) -> Report {
    let ports: Vec<PortReport> = names
        .iter()
        .zip(stats)
        .zip(flows)
        .zip(qstats)
        .map(|(((name, s), f), q)| PortReport {
            name: name.clone(),
            rx_packets: s.ipackets,
            tx_packets: s.opackets,
            rx_pps: s.ipackets as f64 / elapsed,
            tx_pps: s.opackets as f64 / elapsed,
            rx_dropped: s.imissed + s.rx_nombuf,
            tx_dropped: f.2,
            errors: s.ierrors + s.oerrors,
            queues: q
                .iter()
                .enumerate()
                .map(|(queue, q)| QueueReport {
                    queue,
                    rx_packets: q.rx_packets,
                    tx_packets: q.tx_packets,
                })
                .collect(),
            rx_l4_cksum_good: None,
            rx_l4_cksum_bad: None,
            rx_ip_cksum_bad: None,
        })
        .collect();
    Report {
        duration_s: elapsed,
        total_rx_pps: ports.iter().map(|p| p.rx_pps).sum(),
        total_tx_pps: ports.iter().map(|p| p.tx_pps).sum(),
        ports,
        fwd: args.fwd,
        burst: args.burst,
        nb_cores: args.nb_cores,
        streams: Vec::new(),
        mbufs_total: pool.size(),
        mbufs_free_at_exit: pool.available(),
        huge_pages: pool.is_huge(),
        periods: Vec::new(),
        flows: None,
    }
}

fn print_summary(out: &mut dyn Write, r: &Report) -> std::io::Result<()> {
    writeln!(
        out,
        "---------------------- summary ({:.2} s) ----------------------",
        r.duration_s
    )?;
    for (i, p) in r.ports.iter().enumerate() {
        writeln!(
            out,
            "port {i} {:<12} RX {:>14} ({:>9} pps)  TX {:>14} ({:>9} pps)  rx-dropped {} tx-dropped {} errors {}",
            p.name,
            p.rx_packets,
            si(p.rx_pps),
            p.tx_packets,
            si(p.tx_pps),
            p.rx_dropped,
            p.tx_dropped,
            p.errors
        )?;
    }
    for (i, p) in r.ports.iter().enumerate() {
        if let (Some(good), Some(bad), Some(ip_bad)) =
            (p.rx_l4_cksum_good, p.rx_l4_cksum_bad, p.rx_ip_cksum_bad)
        {
            writeln!(
                out,
                "  port {i} checksums: L4 good {good} L4 bad {bad} IPv4 bad {ip_bad}"
            )?;
        }
    }
    for f in r.flows.iter().flatten() {
        let queues: Vec<String> = f
            .queues
            .iter()
            .map(|q| format!("q{} {}", q.queue, q.flows))
            .collect();
        writeln!(
            out,
            "  port {} flows {} ({} on several queues): {}",
            f.port,
            f.total,
            f.on_several_queues,
            queues.join(", ")
        )?;
    }
    for (i, p) in r.ports.iter().enumerate() {
        if p.queues.len() > 1 {
            for q in &p.queues {
                writeln!(
                    out,
                    "  port {i} queue {} RX {:>14} TX {:>14}",
                    q.queue, q.rx_packets, q.tx_packets
                )?;
            }
        }
    }
    writeln!(
        out,
        "total RX {} pps, TX {} pps",
        si(r.total_rx_pps),
        si(r.total_tx_pps)
    )?;
    writeln!(
        out,
        "mbufs: {} of {} back in the pool",
        r.mbufs_free_at_exit, r.mbufs_total
    )?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use pollux_core::port::{RxOffloads, TxOffloads};

    /// `pollux testpmd ARGS` as clap parses it.
    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        args: TestpmdArgs,
    }

    fn parse(args: &[&str]) -> Result<TestpmdArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("testpmd").chain(args.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn offload_and_flow_options_parse() {
        let a = parse(&["--vdev", "null0"]).unwrap();
        assert_eq!(
            (a.tx_offloads, a.rx_offloads, a.flow_queues),
            (None, None, false)
        );
        let a = parse(&[
            "--vdev",
            "null0",
            "--tx-offloads",
            "udp_cksum,ipv4_cksum",
            "--rx-offloads=tcp_cksum",
            "--fwd",
            "rxonly",
            "--flow-queues",
        ])
        .unwrap();
        assert_eq!(
            a.tx_offloads.map(|o| o.tx),
            Some(TxOffloads::UDP_CKSUM | TxOffloads::IPV4_CKSUM)
        );
        assert_eq!(a.rx_offloads.map(|o| o.rx), Some(RxOffloads::TCP_CKSUM));
        assert!(a.flow_queues && a.counts_rx_cksum());
        a.validate().unwrap();
        // --rx-offloads configures any mode; only rxonly counts.
        let a = parse(&["--vdev", "null0", "--rx-offloads", "udp_cksum"]).unwrap();
        assert!(!a.counts_rx_cksum());
    }

    #[test]
    fn bad_offload_and_flow_options_are_refused() {
        for (opt, value) in [
            ("--tx-offloads", "bogus"),
            ("--tx-offloads", "udp_cksum,vlan_insert"),
            ("--rx-offloads", ""),
            ("--rx-offloads", "udp_cksum,,ipv4_cksum"),
        ] {
            let e = parse(&["--vdev", "null0", opt, value]).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
            // main prints the first line only: the valid names must be on it.
            let first = e.to_string().lines().next().unwrap_or_default().to_string();
            assert!(first.contains(opt), "{first}");
            assert!(
                first.contains("valid offloads: udp_cksum, tcp_cksum, ipv4_cksum"),
                "{first}"
            );
        }
        for mode in ["io", "mac", "macswap", "txonly", "flowgen"] {
            let a = parse(&["--vdev", "null0", "--fwd", mode, "--flow-queues"]).unwrap();
            let e = a.validate().unwrap_err().to_string();
            assert!(e.contains("--flow-queues") && e.contains("rxonly"), "{e}");
        }
    }

    #[test]
    fn no_huge_and_multi_flow_options_parse() {
        let a = parse(&["--vdev", "null0"]).unwrap();
        assert!(!a.no_huge && !a.txonly_multi_flow);
        assert_eq!(a.huge_pages(), HugePages::Prefer);
        let a = parse(&[
            "--vdev",
            "null0",
            "--no-huge",
            "--fwd",
            "txonly",
            "--txonly-multi-flow",
        ])
        .unwrap();
        assert!(a.txonly_multi_flow);
        assert_eq!(a.huge_pages(), HugePages::Never);
        a.validate().unwrap();
    }

    #[test]
    fn multi_flow_is_refused_outside_txonly_and_with_tx_offloads() {
        for mode in ["io", "mac", "macswap", "rxonly", "flowgen"] {
            let a = parse(&["--vdev", "null0", "--fwd", mode, "--txonly-multi-flow"]).unwrap();
            let e = a.validate().unwrap_err().to_string();
            assert!(
                e.contains("--txonly-multi-flow")
                    && e.contains(&format!("use it with --fwd txonly, not --fwd {mode}")),
                "{e}"
            );
        }
        let a = parse(&[
            "--vdev",
            "null0",
            "--fwd",
            "txonly",
            "--txonly-multi-flow",
            "--tx-offloads",
            "ipv4_cksum",
        ])
        .unwrap();
        let e = a.validate().unwrap_err().to_string();
        assert!(e.contains("does not combine with --tx-offloads"), "{e}");
    }

    #[test]
    fn a_period_rate_is_the_packets_since_the_last_table_over_the_exact_time_since() {
        let start = Instant::now();
        let last = (
            start + Duration::from_secs(1),
            vec![(100u64, 50u64), (0, 0)],
        );
        let now = start + Duration::from_millis(1250);
        let cur = [(600, 150, 7), (0, 25, 0)];
        let s = period_sample(start, &cur, &last, now);
        assert_eq!(
            s,
            PeriodSample {
                t: 1.25,
                rx_pps: vec![2000.0, 0.0],
                tx_pps: vec![400.0, 100.0],
            }
        );
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::json!({"t": 1.25, "rx_pps": [2000.0, 0.0], "tx_pps": [400.0, 100.0]})
        );
        // The live table shows these same rates.
        let mut table = Vec::new();
        let names = ["p0", "p1"].map(String::from);
        print_live(&mut table, &names, &cur, &s).unwrap();
        let table = String::from_utf8(table).unwrap();
        let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(row, ["0", "p0", "600", "2.0k", "150", "400", "7"]);
    }

    fn key(src: u8, port: u16) -> FlowKey {
        FlowKey {
            src: std::net::IpAddr::from([10, 0, 0, src]),
            dst: std::net::IpAddr::from([10, 0, 0, 100]),
            proto: 17,
            src_port: port,
            dst_port: 9,
        }
    }

    #[test]
    fn flow_report_counts_flows_per_queue_and_those_on_several() {
        let set = |keys: &[FlowKey]| keys.iter().copied().collect::<HashSet<_>>();
        let (a, b, c, d, e) = (key(1, 1), key(1, 2), key(2, 1), key(3, 1), key(4, 1));
        // Port 0: b on queues 0 and 1, d on queues 1 and 2; port 1 sees a
        // on its one queue (a flow of port 0 too: ports count apart).
        let seen = vec![
            (0, 1, set(&[b, d])),
            (0, 0, set(&[a, b, c])),
            (1, 0, set(&[a])),
            (0, 2, set(&[d, e])),
        ];
        let names = ["p0", "p1", "p2"].map(String::from);
        let r = flow_report(&names, &seen);
        let queues = |p: &PortFlows| {
            p.queues
                .iter()
                .map(|q| (q.queue, q.flows))
                .collect::<Vec<_>>()
        };
        assert_eq!(queues(&r[0]), vec![(0, 3), (1, 2), (2, 2)]);
        assert_eq!((r[0].total, r[0].on_several_queues), (5, 2));
        assert_eq!(queues(&r[1]), vec![(0, 1)]);
        assert_eq!((r[1].total, r[1].on_several_queues), (1, 0));
        assert_eq!((r[2].port, r[2].total, r[2].queues.len()), (2, 0, 0));
        let json = serde_json::to_value(&r[0]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "port": 0,
                "name": "p0",
                "queues": [
                    {"queue": 0, "flows": 3},
                    {"queue": 1, "flows": 2},
                    {"queue": 2, "flows": 2}
                ],
                "total": 5,
                "on_several_queues": 2
            })
        );
    }

    #[test]
    fn checksum_counts_appear_in_the_report_only_when_asked() {
        let mut p = PortReport {
            name: "p0".into(),
            rx_packets: 3,
            tx_packets: 0,
            rx_pps: 1.0,
            tx_pps: 0.0,
            rx_dropped: 0,
            tx_dropped: 0,
            errors: 0,
            queues: Vec::new(),
            rx_l4_cksum_good: None,
            rx_l4_cksum_bad: None,
            rx_ip_cksum_bad: None,
        };
        let json = serde_json::to_value(&p).unwrap();
        for k in ["rx_l4_cksum_good", "rx_l4_cksum_bad", "rx_ip_cksum_bad"] {
            assert!(json.get(k).is_none(), "{k} in {json}");
        }
        (p.rx_l4_cksum_good, p.rx_l4_cksum_bad, p.rx_ip_cksum_bad) = (Some(2), Some(1), Some(0));
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["rx_l4_cksum_good"], 2);
        assert_eq!(json["rx_l4_cksum_bad"], 1);
        assert_eq!(json["rx_ip_cksum_bad"], 0);
    }
}
