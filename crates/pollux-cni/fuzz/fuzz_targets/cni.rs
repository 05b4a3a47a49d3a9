#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pollux_cni::fuzz_harness::cni(data));
