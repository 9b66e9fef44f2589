//! Fuzz target `sequence_number`: see `sluice_fuzz::sequence_number` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::sequence_number(data));
