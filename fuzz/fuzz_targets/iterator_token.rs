//! Fuzz target `iterator_token`: see `sluice_fuzz::iterator_token` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::iterator_token(data));
