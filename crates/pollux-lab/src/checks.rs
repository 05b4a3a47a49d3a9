//! Several checks in one boot: a boot costs 15-20 s of CI's budget, so a lab
//! test file runs the checks that share a topology in one guest, each timed,
//! and a failing check does not hide the others' results.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

/// One named check, run once.
pub type Check<'a> = (&'static str, Box<dyn FnOnce() + 'a>);

/// Runs `checks` in order, printing each one's wall time and outcome. A
/// check that panics is recorded and the next one runs, unless the panic
/// says the guest itself was lost ([`crate::is_guest_loss`]), when the rest
/// cannot run. Panics at the end with every failure's message, so the lab's
/// run folder is kept.
pub fn run_checks(title: &str, checks: Vec<Check<'_>>) {
    let mut failed: Vec<String> = Vec::new();
    let mut times: Vec<String> = Vec::new();
    for (name, check) in checks {
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
}
