//! `pollux bond show`: asks a running `pollux testpmd` for the status of
//! its bonds over its control socket and prints it in the layout of
//! /proc/net/bonding/bondN (or JSON).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

#[derive(clap::Subcommand, Debug)]
pub enum BondCommand {
    /// Status of the bonds of a running testpmd.
    Show {
        /// Control socket of the testpmd to ask (default: the only one in
        /// the run directory, /run/pollux for root).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// JSON instead of the /proc/net/bonding layout.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: BondCommand) -> Result<()> {
    match cmd {
        BondCommand::Show { socket, json } => {
            let path = match socket {
                Some(p) => p,
                None => only_socket()?,
            };
            let mut s = UnixStream::connect(&path)
                .with_context(|| format!("cannot reach testpmd at {}", path.display()))?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.set_write_timeout(Some(Duration::from_secs(2)))?;
            writeln!(s, "{}", if json { "bond show json" } else { "bond show" })?;
            let mut reply = String::new();
            s.read_to_string(&mut reply)
                .with_context(|| format!("no answer from testpmd at {}", path.display()))?;
            if let Some(e) = reply.strip_prefix("error: ") {
                bail!("testpmd: {}", e.trim());
            }
            print!("{reply}");
            Ok(())
        }
    }
}

fn only_socket() -> Result<PathBuf> {
    let dir = crate::testpmd::run_dir();
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    // testpmd-<pid>.sock of a process that is still alive (a
                    // killed testpmd leaves its socket behind).
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .and_then(|n| n.strip_prefix("testpmd-")?.strip_suffix(".sock"))
                        .and_then(|pid| pid.parse::<u32>().ok())
                        .is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    match found.len() {
        0 => bail!(
            "no running pollux testpmd found in {} (is one running? give --socket)",
            dir.display()
        ),
        1 => Ok(found.remove(0)),
        _ => bail!(
            "{} testpmd processes are running; pick one with --socket: {}",
            found.len(),
            found
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
