//! Replays the cargo-fuzz corpus (crates/pollux-bond/fuzz/corpus) through
//! the fuzz harnesses on the stable toolchain, so every input the fuzzer
//! found interesting stays a regression test.

use std::path::Path;

use pollux_bond::fuzz_harness;

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
        ("lacpdu", fuzz_harness::lacpdu as fn(&[u8])),
        ("marker", fuzz_harness::marker),
        ("xmit_hash", fuzz_harness::xmit_hash),
        ("lacp_rx", fuzz_harness::lacp_rx),
    ] {
        assert!(replay(t, f) > 0, "no corpus for {t}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
    #[test]
    fn harnesses_hold_on_random_input(data in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
        fuzz_harness::lacpdu(&data);
        fuzz_harness::marker(&data);
        fuzz_harness::xmit_hash(&data);
        fuzz_harness::lacp_rx(&data);
    }
}
