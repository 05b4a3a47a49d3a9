#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pollux_ixgbevf::fuzz_harness::mbx_bringup(data));
