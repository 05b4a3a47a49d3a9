//! Replays the cargo-fuzz corpus (crates/pollux-core/fuzz/corpus) through
//! the fuzz harness on the stable toolchain, so every input the fuzzer
//! found interesting, and the hand-built frames it started from, stay
//! regression tests.

use pollux_core::fuzz_harness;

#[path = "../../../tests/support/fuzz_corpus.rs"]
mod corpus;
use corpus::replay;

#[test]
fn corpus_replays_cleanly() {
    assert!(replay("wire", fuzz_harness::wire) > 0, "no corpus for wire");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]
    #[test]
    fn harness_holds_on_random_input(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
        fuzz_harness::wire(&data);
    }

    /// Random bytes behind a valid Ethernet/IPv4 prefix reach the L3 and
    /// L4 views more often than fully random ones do.
    #[test]
    fn harness_holds_behind_ipv4_headers(
        ihl in 0u8..16, total in 0u16..120, proto in proptest::sample::select(vec![1u8, 6, 17, 58]),
        tail in proptest::collection::vec(proptest::num::u8::ANY, 0..120),
    ) {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0, 0x40 | ihl, 0];
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&tail);
        fuzz_harness::wire(&f);
    }
}
