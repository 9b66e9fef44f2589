//! Fuzz target `journal_open`: see `sluice_fuzz::journal_open` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::journal_open(data));
