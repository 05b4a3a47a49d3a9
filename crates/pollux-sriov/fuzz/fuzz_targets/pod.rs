#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pollux_sriov::fuzz_harness::pod(data));
