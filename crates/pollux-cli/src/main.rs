//! `pollux`: testpmd-style forwarding, device status, VF control, bond status.

// Doc comments on the argument structs are clap's help text, written for a
// terminal (`SRC[,DST]`, `PCIDEVICE_<RESOURCE>`), not rustdoc markup.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bond;
mod devices;
mod testpmd;
mod vf;

#[derive(Parser, Debug)]
#[command(name = "pollux", version, about = "Pollux userspace data plane tools")]
struct Cli {
    /// Log filter (as RUST_LOG), e.g. `info` or `pollux_igbvf=debug`.
    #[arg(long, global = true, default_value = "warn")]
    log: String,
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Forward packets between ports, like dpdk-testpmd.
    Testpmd(testpmd::TestpmdArgs),
    /// Network PCI functions with driver, PF/VF relation, IOMMU group, NUMA node.
    Devices(devices::DevicesArgs),
    /// Create, bind, configure and show SR-IOV virtual functions.
    #[command(subcommand)]
    Vf(vf::VfCommand),
    /// Status of the bonds of a running testpmd, as /proc/net/bonding shows it.
    #[command(subcommand)]
    Bond(bond::BondCommand),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // Help and version go to stdout with success; real errors are
            // one line on stderr and exit code 2.
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            let msg = e.to_string();
            let first = msg
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("bad arguments");
            eprintln!("{first}");
            eprintln!("run `pollux --help` for usage");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.cmd {
        Command::Testpmd(args) => testpmd::run(args),
        Command::Devices(args) => devices::run(&args),
        Command::Vf(cmd) => vf::run(cmd),
        Command::Bond(cmd) => bond::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
