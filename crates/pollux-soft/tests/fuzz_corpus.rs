//! Replays the cargo-fuzz corpus (crates/pollux-soft/fuzz/corpus) through
//! the fuzz harness on the stable toolchain, so every file the fuzzer
//! found interesting, and the pcap files and af_packet ring frames it
//! started from, stay regression tests.

use pollux_soft::fuzz_harness;

#[path = "../../../tests/support/fuzz_corpus.rs"]
mod corpus;
use corpus::replay;

#[test]
fn corpus_replays_cleanly() {
    assert!(replay("pcap", fuzz_harness::pcap) > 0, "no corpus for pcap");
    assert!(
        replay("af_packet_rx", fuzz_harness::af_packet_rx) > 0,
        "no corpus for af_packet_rx"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
    /// Ring frames whose header fields are near the frame's own length, as
    /// the kernel's are, so most reach the copy and checksum completion.
    #[test]
    fn af_packet_rx_holds_near_sane_headers(
        bits in proptest::num::u8::ANY,
        frame in proptest::collection::vec(proptest::num::u8::ANY, 0..120),
        ethertype in proptest::sample::select(vec![0x0800u16, 0x86dd, 0x8100, 0x0806]),
        proto in proptest::sample::select(vec![6u8, 17, 1]),
        slack in 0usize..3, cut in 0usize..3, mac_off in 0u16..80,
    ) {
        let mut f = frame;
        if f.len() >= 24 {
            f[12..14].copy_from_slice(&ethertype.to_be_bytes());
            f[14] = if ethertype == 0x86dd { 0x60 } else { 0x45 };
            f[23] = proto;
        }
        let snap = f.len().saturating_sub(cut) as u16;
        let mut d = vec![bits];
        for v in [snap.saturating_sub(slack as u16), snap, mac_off, 0x2064, 0x88a8] {
            d.extend_from_slice(&v.to_le_bytes());
        }
        d.extend(std::iter::repeat(0).take(mac_off.into()));
        d.extend_from_slice(&f);
        fuzz_harness::af_packet_rx(&d);
    }
}
