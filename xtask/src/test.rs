//! `cargo xtask test`: every check CI runs, in order, each printed before it
//! runs. A failed step does not stop the later ones (their results are still
//! worth knowing); the summary's last line is `N passed, N failed`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::{cmd, lab, setup};

struct Step {
    name: &'static str,
    run: fn() -> Result<()>,
}

fn fmt() -> Result<()> {
    cmd::run(cmd::cargo().args(["fmt", "--all", "--", "--check"]))
}

fn clippy() -> Result<()> {
    cmd::run(cmd::cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The lab tests only build with the `lab` feature, so lint them too.
    cmd::run(cmd::cargo().args([
        "clippy",
        "-p",
        "pollux-lab",
        "--all-targets",
        "--features",
        "lab",
        "--",
        "-D",
        "warnings",
    ]))
}

fn unit_tests() -> Result<()> {
    cmd::run(cmd::cargo().args(["test", "--workspace"]))
}

fn docs() -> Result<()> {
    cmd::run(cmd::cargo().env("RUSTDOCFLAGS", "-D warnings").args([
        "doc",
        "--workspace",
        "--no-deps",
    ]))
}

fn lab_suite() -> Result<()> {
    lab::test(None)
}

/// The steps, in order. Add a step here.
const STEPS: &[Step] = &[
    Step {
        name: "setup (cargo xtask setup)",
        run: setup::setup,
    },
    Step {
        name: "format (cargo fmt --check)",
        run: fmt,
    },
    Step {
        name: "lint (cargo clippy -D warnings)",
        run: clippy,
    },
    Step {
        name: "tests (cargo test --workspace)",
        run: unit_tests,
    },
    Step {
        name: "docs (cargo doc -D warnings)",
        run: docs,
    },
    Step {
        name: "lab suite (cargo xtask lab test)",
        run: lab_suite,
    },
];

/// Runs every step and prints the summary.
pub fn run_all() -> ExitCode {
    let started = Instant::now();
    let mut results: Vec<(&str, Duration, Result<()>)> = Vec::new();
    for (i, step) in STEPS.iter().enumerate() {
        println!("\n==> [{}/{}] {}", i + 1, STEPS.len(), step.name);
        let t = Instant::now();
        let r = (step.run)();
        if let Err(e) = &r {
            eprintln!("==> {} FAILED: {e:#}", step.name);
        }
        results.push((step.name, t.elapsed(), r));
    }
    println!(
        "\n==> summary ({:.0} s in all)",
        started.elapsed().as_secs_f64()
    );
    let mut failed = 0;
    for (name, took, r) in &results {
        let verdict = if r.is_ok() { "ok  " } else { "FAIL" };
        println!("  {verdict} {name} ({:.0} s)", took.as_secs_f64());
        if let Err(e) = r {
            failed += 1;
            let first = format!("{e:#}");
            println!("       {}", first.lines().next().unwrap_or_default());
        }
    }
    println!("{} passed, {failed} failed", results.len() - failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
