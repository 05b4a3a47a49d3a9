//! Several checks in one boot: a boot costs 15-20 s of CI's budget, so a lab
//! test file runs the checks that share a topology in one guest, each timed,
//! and a failing check does not hide the others' results.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

/// One named check, run once.
pub type Check<'a> = (&'static str, Box<dyn FnOnce() + 'a>);

/// Environment variable naming the checks to run (comma-separated
/// substrings of their names), for working on one check without running
/// its file's others. A run it filters never passes: it ends by failing
/// with the names of the checks it left out.
pub const CHECKS_ENV: &str = "POLLUX_LAB_CHECKS";

/// Runs `checks` in order, printing each one's wall time and outcome. A
/// check that panics is recorded and the next one runs, unless the panic
/// says the guest itself was lost ([`crate::is_guest_loss`]), when the rest
/// cannot run. Panics at the end with every failure's message, so the lab's
/// run folder is kept, and with the names of checks [`CHECKS_ENV`] left out.
pub fn run_checks(title: &str, checks: Vec<Check<'_>>) {
    let filter: Option<Vec<String>> = std::env::var(CHECKS_ENV)
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect());
    let mut failed: Vec<String> = Vec::new();
    let mut times: Vec<String> = Vec::new();
    let mut left_out: Vec<&str> = Vec::new();
    for (name, check) in checks {
        if let Some(f) = &filter {
            if !f.iter().any(|s| !s.is_empty() && name.contains(s.as_str())) {
                left_out.push(name);
                continue;
            }
        }
        let t = Instant::now();
        let r = catch_unwind(AssertUnwindSafe(check));
        let secs = t.elapsed().as_secs_f64();
        let ok = r.is_ok();
        times.push(format!(
            "{secs:>5.0} s  {}  {name}",
            if ok { "ok    " } else { "FAILED" }
        ));
        eprintln!(
            "{title}: check {name} {} in {secs:.0} s",
            if ok { "passed" } else { "FAILED" }
        );
        if let Err(e) = r {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            let lost = crate::is_guest_loss(&msg);
            failed.push(format!("{name}: {msg}"));
            if lost {
                failed.push("(the guest was lost; the remaining checks did not run)".into());
                break;
            }
        }
    }
    eprintln!("{title}: wall time per check\n{}", times.join("\n"));
    assert!(
        failed.is_empty(),
        "{title}: failed checks:\n{}",
        failed.join("\n\n")
    );
    assert!(
        left_out.is_empty(),
        "{title}: the checks that ran passed, but {CHECKS_ENV} left out {}",
        left_out.join(", ")
    );
}
