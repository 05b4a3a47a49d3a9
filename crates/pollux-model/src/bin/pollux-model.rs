//! `pollux-model serve <kind> --socket PATH`: serves a device model to one
//! vfio-user client (QEMU 11's `-device vfio-user-pci,socket=PATH`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::{Parser, Subcommand, ValueEnum};
use pollux_model::dma_test::DmaTest;
use pollux_model::host::ServeOpts;
use pollux_model::ixgbevf::Ixgbevf;
use pollux_model::model::ViolationLog;
use pollux_model::wire::WireSpec;

#[derive(Debug, Parser)]
#[command(name = "pollux-model", about = "Device models served over vfio-user")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Serve one model on a unix socket until the client disconnects.
    Serve {
        /// The model.
        kind: Kind,
        /// The vfio-user socket to create (must not exist).
        #[arg(long)]
        socket: PathBuf,
        /// Vendor and device ID, VVVV:DDDD (hex).
        #[arg(long, value_parser = parse_id)]
        device_id: Option<(u16, u16)>,
        /// Append every violation to this file as it happens.
        #[arg(long)]
        violations: Option<PathBuf>,
        /// The wire to the far end: dgram:LOCAL_ADDR:PORT,REMOTE_ADDR:PORT
        /// or unix:LOCAL_PATH,REMOTE_PATH.
        #[arg(long)]
        wire: Option<WireSpec>,
        /// The function's MAC address (NIC models).
        #[arg(long)]
        mac: Option<String>,
        /// Queue pairs (NIC models).
        #[arg(long)]
        queues: Option<u16>,
        /// The PF trusts the VF (ixgbevf: all-multicast and promiscuous
        /// modes; `ip link set PF vf N trust on`).
        #[arg(long)]
        trusted: bool,
        /// The PF does not check the source MAC (and, ixgbevf, VLAN) of what
        /// the VF sends (`ip link set PF vf N spoofchk off`).
        #[arg(long)]
        no_spoofchk: bool,
        /// Link state at start.
        #[arg(long, value_enum, default_value = "up")]
        link: Link,
        /// A unix socket for the control channel (counters, link up|down,
        /// pf EVENT, violations; one command per line).
        #[arg(long)]
        control: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Link {
    Up,
    Down,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    /// The host's own test device: DMA a pattern on a doorbell, raise MSI-X.
    DmaTest,
    /// Intel 82599/X540/X550 SR-IOV VF (ixgbevf, net_ixgbe_vf); --device-id
    /// 8086:10ed (default), 8086:1515, 8086:1565, 8086:15a8, 8086:15c5.
    Ixgbevf,
    /// Intel Ethernet Adaptive VF (iavf, net_iavf); --device-id 8086:1889
    /// (AVF, default) or 8086:154c (X710 VF); --queues (default 4).
    Iavf,
}

fn parse_id(s: &str) -> Result<(u16, u16), String> {
    let (v, d) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: expected VVVV:DDDD"))?;
    let hex = |x: &str| {
        u16::from_str_radix(x, 16)
            .map_err(|e| format!("{x:?} in {s:?} is not a 16-bit hex ID: {e}"))
    };
    Ok((hex(v)?, hex(d)?))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "pollux_model=info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let Cmd::Serve {
        kind,
        socket,
        device_id,
        violations,
        wire,
        link,
        control,
        mac,
        queues,
        trusted,
        no_spoofchk,
    } = cli.cmd;
    if matches!(kind, Kind::DmaTest) && (mac.is_some() || queues.is_some() || trusted) {
        eprintln!("pollux-model: dma-test is not a NIC: it takes no --mac, --queues or --trusted");
        return ExitCode::from(2);
    }
    let opts = ServeOpts {
        wire,
        link_down: link == Link::Down,
        control,
    };
    let log = match violations {
        None => ViolationLog::default(),
        Some(path) => {
            let file = match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
            {
                Ok(f) => Arc::new(Mutex::new(f)),
                Err(e) => {
                    eprintln!("pollux-model: cannot open {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            };
            ViolationLog::with_sink(Box::new(move |v| {
                if let Ok(mut f) = file.lock() {
                    let _ = writeln!(f, "{v}");
                }
            }))
        }
    };
    let r = match kind {
        Kind::DmaTest => {
            let m = match device_id {
                Some((v, d)) => DmaTest::with_id(v, d),
                None => DmaTest::new(),
            };
            pollux_model::host::serve(m, log, &socket, &opts).map(|h| {
                let h = h.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                eprintln!(
                    "pollux-model: client gone; {} DMAs done, {:?}, {} violations",
                    h.model().done(),
                    h.stats(),
                    h.log().total()
                );
            })
        }
        Kind::Ixgbevf => {
            let device = match device_id {
                None => pollux_model::ixgbevf::DEV_82599_VF,
                Some((pollux_model::ixgbevf::VENDOR, d)) => d,
                Some((v, _)) => {
                    eprintln!("pollux-model: ixgbevf: vendor {v:04x} is not Intel (8086)");
                    return ExitCode::from(2);
                }
            };
            let mac = match mac.as_deref().map(pollux_model::model::parse_unicast_mac) {
                None => pollux_model::ixgbevf::DEFAULT_MAC,
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    eprintln!("pollux-model: --mac {e}");
                    return ExitCode::from(2);
                }
            };
            let m = match Ixgbevf::new(device, mac, queues.unwrap_or(2)) {
                Ok(m) => m.with_trust(trusted).with_spoofchk(!no_spoofchk),
                Err(e) => {
                    eprintln!("pollux-model: ixgbevf: {e}");
                    return ExitCode::from(2);
                }
            };
            pollux_model::host::serve(m, log, &socket, &opts).map(|h| {
                let h = h.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                eprintln!(
                    "pollux-model: client gone; {:?}, {} violations",
                    h.stats(),
                    h.log().total()
                );
            })
        }
        Kind::Iavf => {
            use pollux_model::iavf::{Iavf, IavfConfig};
            let mut cfg = IavfConfig {
                trusted,
                spoofchk: !no_spoofchk,
                ..IavfConfig::default()
            };
            match device_id {
                None => {}
                Some((pollux_model::iavf::VENDOR_INTEL, d)) => cfg.device_id = d,
                Some((v, _)) => {
                    eprintln!("pollux-model: iavf: vendor {v:04x} is not Intel (8086)");
                    return ExitCode::from(2);
                }
            }
            if let Some(q) = queues {
                cfg.queues = q;
            }
            match mac.as_deref().map(pollux_model::model::parse_unicast_mac) {
                None => {}
                Some(Ok(m)) => cfg.mac = m,
                Some(Err(e)) => {
                    eprintln!("pollux-model: --mac {e}");
                    return ExitCode::from(2);
                }
            }
            if let Err(e) = cfg.check() {
                eprintln!("pollux-model: iavf: {e}");
                return ExitCode::from(2);
            }
            pollux_model::host::serve(Iavf::new(cfg), log, &socket, &opts).map(|h| {
                let h = h.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                eprintln!(
                    "pollux-model: client gone; {:?}, {} violations",
                    h.stats(),
                    h.log().total()
                );
            })
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pollux-model: {e}");
            ExitCode::FAILURE
        }
    }
}
