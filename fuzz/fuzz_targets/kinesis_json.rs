//! Fuzz target `kinesis_json`: see `sluice_fuzz::kinesis_json` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::kinesis_json(data));
