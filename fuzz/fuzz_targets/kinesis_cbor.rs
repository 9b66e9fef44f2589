//! Fuzz target `kinesis_cbor`: see `sluice_fuzz::kinesis_cbor` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::kinesis_cbor(data));
