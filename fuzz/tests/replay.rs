#![allow(clippy::unwrap_used)]
//! The fuzz targets without nightly Rust: each body runs over its seed corpus
//! (`corpus/<target>/`, plus built-in seeds) and deterministic mutations of every seed
//! (every single-byte flip, every truncation, seeded random splices). Seeded:
//! `SLUICE_SEED`; `SLUICE_FUZZ_ITERATIONS` sets the random mutations per target.

use std::path::Path;

type Target = fn(&[u8]);

/// The built-in seeds, then whatever a libFuzzer run left in `corpus/<target>/`.
fn seeds(target: &str, builtin: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out = builtin.to_vec();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            out.push(std::fs::read(e.path()).unwrap());
        }
    }
    out
}

fn replay(target: &str, body: Target, builtin: &[Vec<u8>]) {
    let seed: u64 = std::env::var("SLUICE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let iterations: u64 = std::env::var("SLUICE_FUZZ_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000);
    let corpus = seeds(target, builtin);
    let mut runs = 0u64;
    for input in &corpus {
        body(input);
        runs += 1;
    }
    // Every byte flip and truncation of the built-in seeds (a corpus left by libFuzzer
    // can hold thousands of inputs; those are replayed as they are, above).
    for input in builtin {
        for i in 0..input.len().min(512) {
            let mut flipped = input.clone();
            flipped[i] ^= 0xFF;
            body(&flipped);
            body(&input[..i]);
            runs += 2;
        }
    }
    let mut rng = sluice_storage::SplitMix(seed);
    for _ in 0..iterations {
        let a = &corpus[(rng.next_u64() % corpus.len() as u64) as usize];
        let b = &corpus[(rng.next_u64() % corpus.len() as u64) as usize];
        let mut input: Vec<u8> = a[..(rng.next_u64() as usize) % (a.len() + 1)].to_vec();
        input.extend_from_slice(&b[(rng.next_u64() as usize) % (b.len() + 1)..]);
        for _ in 0..rng.next_u64() % 4 {
            if !input.is_empty() {
                let i = (rng.next_u64() as usize) % input.len();
                input[i] = rng.next_u64() as u8;
            }
        }
        body(&input);
        runs += 1;
    }
    eprintln!("{target}: {runs} inputs, seed {seed}");
}

fn frame_seed() -> Vec<u8> {
    let mut out = Vec::new();
    let record = sluice_storage::RecordIn {
        partition_key: b"key",
        explicit_hash_key: Some([9; 16]),
        data: b"hello",
    };
    sluice_storage::frame::encode(
        &record,
        sluice_storage::SeqNo(5),
        sluice_storage::TimestampMs(7),
        &mut out,
    );
    out
}

#[test]
fn frame_decode() {
    replay(
        "frame_decode",
        sluice_fuzz::frame_decode,
        &[frame_seed(), vec![]],
    );
}

#[test]
fn journal_open() {
    replay(
        "journal_open",
        sluice_fuzz::journal_open,
        &[sluice_fuzz::journal_seed(), vec![1]],
    );
}

#[test]
fn iterator_token() {
    replay(
        "iterator_token",
        sluice_fuzz::iterator_token,
        &[b"stream-name-and-more".to_vec()],
    );
}

#[test]
fn sequence_number() {
    replay(
        "sequence_number",
        sluice_fuzz::sequence_number,
        &[
            b"49680444907961408714430917178124627629505947486392418306".to_vec(),
            b"0".to_vec(),
        ],
    );
}

#[test]
fn kinesis_json() {
    let put = br#"{"StreamName":"s","Records":[{"Data":"aGVsbG8=","PartitionKey":"k","ExplicitHashKey":"1"}],"Limit":10,"Timestamp":1.5,"Tags":{"a":"b"},"ShardFilter":{"Type":"AT_LATEST"}}"#;
    replay(
        "kinesis_json",
        sluice_fuzz::kinesis_json,
        &[put.to_vec(), b"[1,2,{}]".to_vec()],
    );
}

#[test]
fn kinesis_cbor() {
    // {"StreamName": "s", "Data": h'68656c6c6f', "Limit": 10, "Timestamp": 1(1500)}
    let body = vec![
        0xA4, 0x6A, b'S', b't', b'r', b'e', b'a', b'm', b'N', b'a', b'm', b'e', 0x61, b's', 0x64,
        b'D', b'a', b't', b'a', 0x45, b'h', b'e', b'l', b'l', b'o', 0x65, b'L', b'i', b'm', b'i',
        b't', 0x0A, 0x69, b'T', b'i', b'm', b'e', b's', b't', b'a', b'm', b'p', 0xC1, 0x19, 0x05,
        0xDC,
    ];
    replay("kinesis_cbor", sluice_fuzz::kinesis_cbor, &[body]);
}

#[test]
fn grpc_messages() {
    use prost::Message as _;
    let put = sluice_proto::v1::PutRecordsRequest {
        stream_name: "s".into(),
        records: vec![sluice_proto::v1::PutRecordsRequestEntry {
            partition_key: "k".into(),
            explicit_hash_key: Some("1".into()),
            data: prost::bytes::Bytes::from_static(b"hello"),
        }],
    };
    let mut seed = vec![14];
    seed.extend(put.encode_to_vec());
    replay("grpc_messages", sluice_fuzz::grpc_messages, &[seed]);
}
