#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pollux_soft::fuzz_harness::pcap(data));
