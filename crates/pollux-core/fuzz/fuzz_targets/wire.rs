#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pollux_core::fuzz_harness::wire(data));
