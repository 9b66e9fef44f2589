//! Compiles `proto/sluice/v1/sluice.proto` without a system `protoc`: `protox` parses it
//! into a descriptor set, which is written to `OUT_DIR` for gRPC reflection and handed to
//! `tonic-prost-build` to generate the messages, the client and the server.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../../proto");
    let proto_file = proto_root.join("sluice/v1/sluice.proto");
    println!("cargo:rerun-if-changed={}", proto_file.display());

    let fds = protox::compile([&proto_file], [&proto_root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("sluice_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Payloads become `bytes::Bytes`, which the broker takes without a copy; tag maps
        // become `BTreeMap`, which the broker takes as they are.
        .bytes(".sluice.v1")
        .btree_map(".sluice.v1")
        // prost's codec, reserving each message's length before encoding it.
        .codec_path("crate::codec::SluiceCodec")
        .compile_fds(fds)?;
    Ok(())
}
