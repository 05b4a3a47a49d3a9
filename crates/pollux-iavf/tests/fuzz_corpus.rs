//! Replays the cargo-fuzz corpus (crates/pollux-iavf/fuzz/corpus) through
//! the fuzz harnesses on the stable toolchain, so every input the fuzzer
//! found interesting stays a regression test.

use std::path::Path;

use pollux_iavf::fuzz_harness;

fn replay(target: &str, f: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        let data = std::fs::read(&p).unwrap();
        f(&data);
        n += 1;
    }
    n
}

#[test]
fn corpus_replays_cleanly() {
    for (t, f) in [
        ("vc_bringup", fuzz_harness::vc_bringup as fn(&[u8])),
        ("vc_reply", fuzz_harness::vc_reply),
    ] {
        assert!(replay(t, f) > 0, "no corpus for {t}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
    #[test]
    fn harnesses_hold_on_random_input(data in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
        fuzz_harness::vc_bringup(&data);
        fuzz_harness::vc_reply(&data);
    }
}
