//! Fuzz target `frame_decode`: see `sluice_fuzz::frame_decode` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::frame_decode(data));
