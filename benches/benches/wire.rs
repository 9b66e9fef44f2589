//! Criterion benchmarks of the per-record work between the socket and the log on the put
//! and read paths: sequence-number encoding and decoding (once per record each way), a
//! 500 x 1 KiB PutRecords request decoded from protobuf (gRPC) and parsed from AWS JSON
//! (Kinesis: the parse only; the base64 payloads are still text, decoded later per
//! record) and from CBOR (payloads are byte strings), the 500-entry PutRecords reply
//! written as AWS JSON, and a 1,000-record GetRecords reply encoded for gRPC through the
//! generated message and directly.

use std::hint::black_box;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use sluice_broker::seqnum::{SequenceNumber, ShardOrigin};
use sluice_proto::v1 as pb;
use sluice_storage::SeqNo;

const RECORDS: usize = 500;
const RECORD_BYTES: usize = 1024;
/// The shard the benchmarks' numbers belong to.
const SHARD: ShardOrigin = ShardOrigin {
    stream_uid: 12,
    created_ms: 1_700_000_000_000,
    index: 3,
};

fn seqnum(c: &mut Criterion) {
    let mut g = c.benchmark_group("seqnum");
    let shard = ShardOrigin {
        stream_uid: 12,
        created_ms: 1_763_000_000_123,
        index: 7,
    };
    let n = SequenceNumber::for_record(shard, SeqNo(1_234_567), 1_763_000_100_456);
    let text = n.encode();
    g.bench_function("encode", |b| b.iter(|| black_box(&n).encode()));
    // The put and read paths: 500 consecutive records of one shard and second.
    g.bench_function("encode_500_consecutive", |b| {
        b.iter(|| {
            let mut enc = sluice_broker::seqnum::Encoder::default();
            (0..500u64)
                .map(|i| {
                    enc.encode(SequenceNumber::for_record(
                        shard,
                        SeqNo(1_234_567 + i),
                        1_763_000_100_456,
                    ))
                })
                .map(|s| s.len())
                .sum::<usize>()
        })
    });
    g.bench_function("decode", |b| {
        b.iter(|| SequenceNumber::decode(black_box(&text)))
    });
    g.finish();
}

fn put_records_request() -> pb::PutRecordsRequest {
    pb::PutRecordsRequest {
        stream_name: "bench".into(),
        records: (0..RECORDS)
            .map(|i| pb::PutRecordsRequestEntry {
                data: vec![(i % 251) as u8; RECORD_BYTES].into(),
                partition_key: format!("key-{i}"),
                explicit_hash_key: None,
            })
            .collect(),
    }
}

fn put_records_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("put_records_500x1KiB");
    g.throughput(Throughput::Bytes((RECORDS * RECORD_BYTES) as u64));
    let encoded = bytes::Bytes::from(put_records_request().encode_to_vec());
    g.bench_function("grpc_protobuf_decode", |b| {
        b.iter(|| pb::PutRecordsRequest::decode(black_box(encoded.clone())))
    });
    let records: Vec<serde_json::Value> = (0..RECORDS)
        .map(|i| {
            serde_json::json!({
                "Data": B64.encode(vec![(i % 251) as u8; RECORD_BYTES]),
                "PartitionKey": format!("key-{i}"),
            })
        })
        .collect();
    let json = serde_json::to_vec(&serde_json::json!({"StreamName": "bench", "Records": records}))
        .expect("json");
    g.bench_function("kinesis_json_parse", |b| {
        b.iter(|| sluice_kinesis::value::from_json(black_box(&json)))
    });
    let cbor = {
        use sluice_kinesis::value::Value;
        let records = (0..RECORDS)
            .map(|i| {
                Value::map([
                    (
                        "Data",
                        Value::Bytes(vec![(i % 251) as u8; RECORD_BYTES].into()),
                    ),
                    ("PartitionKey", Value::str(format!("key-{i}"))),
                ])
            })
            .collect();
        sluice_kinesis::value::to_cbor(&Value::map([
            ("StreamName", Value::str("bench")),
            ("Records", Value::Array(records)),
        ]))
    };
    g.bench_function("kinesis_cbor_parse", |b| {
        b.iter(|| sluice_kinesis::value::from_cbor(black_box(&cbor)))
    });
    g.finish();
}

/// A PutRecords response of 500 entries written as AWS JSON: every entry carries a
/// 56-digit sequence number and a shard id, each a JSON string.
fn put_records_reply(c: &mut Criterion) {
    use sluice_kinesis::value::{Value, to_json};
    let mut g = c.benchmark_group("put_records_reply");
    g.throughput(Throughput::Elements(RECORDS as u64));
    let entries: Vec<Value> = (0..RECORDS as u64)
        .map(|i| {
            let n = SequenceNumber::for_record(SHARD, SeqNo((1 << 40) + i), 1_700_000_000_123);
            Value::map([
                ("SequenceNumber", Value::str(n.encode())),
                ("ShardId", Value::str("shardId-000000000003")),
            ])
        })
        .collect();
    let reply = Value::map([
        ("FailedRecordCount", Value::Int(0)),
        ("Records", Value::Array(entries)),
    ]);
    g.bench_function("kinesis_json_write", |b| {
        b.iter(|| to_json(black_box(&reply)))
    });
    g.finish();
}

/// A GetRecords reply of 1,000 x 1 KiB records whose keys and data are slices of one
/// buffer (as they are slices of a segment's map), encoded for gRPC two ways: through the
/// generated message (`RecordView`s, `pb::Record`s, prost; the path before the direct
/// encoder) and written straight from the page (`sluice_grpc::get_records`). Both include
/// dropping what they built.
fn get_records_reply(c: &mut Criterion) {
    use bytes::{Bytes, BytesMut};
    use criterion::BatchSize;
    use sluice_broker::{GetRecordsOutput, GetRecordsPage, ReadRecord, TimestampMs};
    const READ: usize = 1000;
    let mut g = c.benchmark_group("get_records_reply");
    g.throughput(Throughput::Elements(READ as u64));
    let key = b"partition-key-000042";
    let mut backing = Vec::with_capacity(READ * (RECORD_BYTES + key.len()));
    for i in 0..READ {
        backing.extend_from_slice(key);
        backing.extend((0..RECORD_BYTES).map(|j| (i + j) as u8));
    }
    let backing = Bytes::from(backing);
    let stride = RECORD_BYTES + key.len();
    let page = GetRecordsPage {
        records: (0..READ)
            .map(|i| ReadRecord {
                sequence_number: SequenceNumber::for_record(
                    SHARD,
                    SeqNo((1 << 40) + i as u64),
                    1_700_000_000_123,
                ),
                approximate_arrival_timestamp: TimestampMs(1_700_000_000_123),
                partition_key: backing.slice(i * stride..i * stride + key.len()),
                data: backing.slice(i * stride + key.len()..(i + 1) * stride),
            })
            .collect(),
        next_shard_iterator: Some("A".repeat(120)),
        millis_behind_latest: 0,
        child_shards: Vec::new(),
    };
    g.bench_function("grpc_generated_prost", |b| {
        b.iter_batched(
            || page.clone(),
            |p| {
                let output: GetRecordsOutput = p.into();
                sluice_grpc::convert::get_records_response(output)
                    .encode_to_vec()
                    .len()
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("grpc_direct", |b| {
        b.iter_batched(
            || page.clone(),
            |p| {
                let mut buf = BytesMut::new();
                sluice_grpc::get_records::encode_page(p, &mut buf);
                buf.len()
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(
    benches,
    seqnum,
    put_records_decode,
    put_records_reply,
    get_records_reply
);
criterion_main!(benches);
