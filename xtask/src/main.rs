//! `cargo xtask`: the project's own tasks.
//!
//! - `cargo xtask setup`: installs what the project needs (Debian packages,
//!   QEMU 11 in a trixie tree under the lab cache, the lab's guest kernel,
//!   virtme-ng).
//! - `cargo xtask test`: everything CI checks, in order, with a summary.
//! - `cargo xtask lab demo|shell|test [FILTER]|bench`: the QEMU lab.
//!
//! Adding a task: a variant in [`Task`] (or [`LabTask`]), a module for its
//! code, one arm in `main`.

mod cmd;
mod lab;
mod setup;
mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Pollux project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install what the project needs (idempotent; fast when done).
    Setup,
    /// Run every check CI runs: setup, fmt, clippy, tests, docs, the lab suite.
    Test,
    /// The QEMU lab: SR-IOV igb guests under TCG.
    Lab {
        #[command(subcommand)]
        task: LabTask,
    },
}

#[derive(Debug, Subcommand)]
enum LabTask {
    /// Boot the default topology, create and bind VFs, ping over a wire.
    Demo,
    /// Boot a guest and type commands into it (`:help` for lab commands).
    Shell(lab::ShellArgs),
    /// Build the workspace's binaries, then run the lab test suite, each
    /// test timed.
    Test {
        /// A test file (lab, igbvf, virtio, model, ixgbevf, bond, sriov) or a substring of
        /// test names.
        filter: Option<String>,
    },
    /// The long side-by-side measurements against DPDK (docs/performance.md).
    Bench,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::setup(),
        // The runner prints its own summary; its last line must stay
        // "N passed, N failed", so it reports failure by exit code only.
        Task::Test => return test::run_all(),
        Task::Lab { task } => match task {
            LabTask::Demo => lab::demo(),
            LabTask::Shell(args) => lab::shell(&args),
            LabTask::Test { filter } => lab::test(filter.as_deref()),
            LabTask::Bench => lab::bench(),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
