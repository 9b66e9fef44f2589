//! Code generated from `proto/sluice/v1/sluice.proto`, and nothing else.
//!
//! `v1` holds the messages (prost), the client (`v1::sluice_client::SluiceClient`) and the
//! server trait (`v1::sluice_server::{Sluice, SluiceServer}`) of the `sluice.v1` package.
//! `FILE_DESCRIPTOR_SET` is the encoded descriptor set of the same file, for gRPC
//! reflection. The proto file is the contract; read it for the meaning of every field.

#![warn(missing_docs)]

pub mod codec;

/// The `sluice.v1` package: messages, client and server.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("sluice.v1");
}

/// The encoded `FileDescriptorSet` of `sluice.proto`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/sluice_descriptor.bin"));
