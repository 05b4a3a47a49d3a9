#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pollux_iavf::fuzz_harness::vc_bringup(data));
