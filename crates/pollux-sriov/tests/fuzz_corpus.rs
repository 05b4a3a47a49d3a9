//! Replays the cargo-fuzz corpus (crates/pollux-sriov/fuzz/corpus) through
//! the fuzz harness on the stable toolchain, so every input the fuzzer
//! found interesting, and the recorded kernel replies, device-info files
//! and device plugin environments it started from, stay regression tests.

use pollux_sriov::fuzz_harness;

#[path = "../../../tests/support/fuzz_corpus.rs"]
mod corpus;
use corpus::replay;

#[test]
fn corpus_replays_cleanly() {
    assert!(
        replay("vf_info", fuzz_harness::vf_info) > 0,
        "no corpus for vf_info"
    );
    assert!(replay("pod", fuzz_harness::pod) > 0, "no corpus for pod");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
    /// Random bytes written over the recorded igb reply: deep enough to
    /// reach the VF attributes, which fully random bytes rarely are.
    #[test]
    fn harness_holds_on_corrupted_real_replies(
        edits in proptest::collection::vec((proptest::num::usize::ANY, proptest::num::u8::ANY), 1..8),
    ) {
        let mut d = recorded()[0].clone();
        for (at, b) in edits {
            let i = at % d.len();
            d[i] = b;
        }
        fuzz_harness::vf_info(&d);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]
    /// Device plugin variables and device-info files built from PCI
    /// address fragments, so most are nearly valid.
    #[test]
    fn pod_harness_holds_on_near_valid_input(
        vals in proptest::collection::vec("(0000:)?0[0-3]:0[0-2]\\.[0-7]( ?, ?(0000:)?03:02\\.[0-9a-f])*,?", 1..4),
        names in proptest::collection::vec("PCIDEVICE_[A-C](_INFO)?", 1..4),
        version in "[12]\\.[0-9]\\.0",
    ) {
        let env: String = names.iter().zip(&vals).map(|(k, v)| format!("{k}={v}\n")).collect();
        fuzz_harness::pod(env.as_bytes());
        let di = format!(r#"{{"type":"pci","version":"{version}","pci":{{"pci-address":"{}"}}}}"#, vals[0]);
        fuzz_harness::pod(di.as_bytes());
    }
}

fn recorded() -> Vec<Vec<u8>> {
    include_str!("fixtures/igb-newlink.hex")
        .lines()
        .map(|l| {
            (0..l.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&l[i..i + 2], 16).unwrap())
                .collect()
        })
        .collect()
}
