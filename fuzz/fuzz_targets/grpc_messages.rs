//! Fuzz target `grpc_messages`: see `sluice_fuzz::grpc_messages` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::grpc_messages(data));
