#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pollux_bond::fuzz_harness::marker(data));
