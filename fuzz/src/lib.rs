//! The bodies of Sluice's fuzz targets: every decoder that reads bytes from disk or the
//! network must return an error on bad input, never panic, hang or allocate without
//! bound, and what it accepts must survive a round trip.
//!
//! Each `fuzz_targets/*.rs` is a one-line libFuzzer wrapper around a function here, so the
//! same bodies also run without nightly Rust: `tests/replay.rs` drives them over seed
//! corpora and deterministic mutations of them with plain `cargo test`.

#![warn(missing_docs)]

use std::path::Path;

use sluice_broker::iterator::{IteratorKey, Position};
use sluice_broker::seqnum::SequenceNumber;
use sluice_kinesis::value::{Fields, from_cbor, from_json};
use sluice_proto::v1 as pb;
use sluice_shards::{ManagerConfig, ShardManager};
use sluice_storage::frame;
use sluice_storage::{FileSystem, SegmentCache, SeqNo, SimFs, TimestampMs};

/// The record frame decoder, on the raw bytes and again with the CRC fixed up (so the
/// fuzzer reaches the field checks behind it); a frame it accepts re-encodes to itself.
pub fn frame_decode(data: &[u8]) {
    check_frame(data);
    if data.len() >= frame::FRAME_HEADER_BYTES {
        let mut fixed = data.to_vec();
        let len = u32::from_le_bytes([fixed[0], fixed[1], fixed[2], fixed[3]]) as usize;
        let end = (8 + len).min(fixed.len());
        let crc = crc32c::crc32c(&fixed[8..end]);
        fixed[4..8].copy_from_slice(&crc.to_le_bytes());
        check_frame(&fixed);
    }
}

fn check_frame(data: &[u8]) {
    let Ok(f) = frame::decode(data) else {
        return;
    };
    assert!(f.frame_len <= data.len());
    let record = sluice_storage::RecordIn {
        partition_key: f.partition_key,
        explicit_hash_key: f.explicit_hash_key,
        data: f.data,
    };
    let mut again = Vec::new();
    frame::encode_in_batch(&record, f.seq, f.timestamp, f.more, &mut again);
    assert_eq!(
        &again[..],
        &data[..f.frame_len],
        "an accepted frame re-encodes to itself"
    );
}

/// The metadata journal and snapshot decoders, through their only public entry:
/// `ShardManager::open` on a simulated disk whose `meta/journal` (first byte even) or
/// `meta/snapshot` (odd) holds the input. Opening returns a manager or an error.
pub fn journal_open(data: &[u8]) {
    let Some((selector, bytes)) = data.split_first() else {
        return;
    };
    let fs = SimFs::new();
    let meta = Path::new("/data/meta");
    let name = if selector.is_multiple_of(2) {
        "journal"
    } else {
        "snapshot"
    };
    if fs.create_dir_all(meta).is_err() {
        return;
    }
    let path = meta.join(name);
    if fs.create_new(&path).is_err() || fs.overwrite_file(&path, bytes).is_err() {
        return;
    }
    let opened = ShardManager::open(
        fs.shared(),
        Path::new("/data"),
        ManagerConfig::default(),
        SegmentCache::new(4),
        TimestampMs(1_000_000),
    );
    if let Ok(m) = opened {
        // Whatever the journal said must be describable.
        if let Ok(page) = m.list_streams(None, 100, TimestampMs(1_000_000)) {
            for s in page.streams {
                let _ = m.describe_stream(&s.name, TimestampMs(1_000_000));
            }
        }
    }
}

/// A valid journal, for seeding `journal_open` (the first byte selects the journal).
pub fn journal_seed() -> Vec<u8> {
    let fs = SimFs::new();
    let now = TimestampMs(1_000_000);
    let config = ManagerConfig {
        journal_compact_bytes: 1 << 30,
        ..ManagerConfig::default()
    };
    let opened = ShardManager::open(
        fs.shared(),
        Path::new("/data"),
        config,
        SegmentCache::new(4),
        now,
    );
    let Ok(m) = opened else {
        return vec![0];
    };
    let _ = m.create_stream(&sluice_shards::CreateStream::new("a", 2), now);
    let _ = m.update_shard_count("a", 3, TimestampMs(1_000_001));
    let _ = m.create_stream(&sluice_shards::CreateStream::new("b", 1), now);
    let _ = m.delete_stream("b", TimestampMs(1_000_002));
    drop(m);
    let mut out = vec![0];
    out.extend(
        fs.read_file(Path::new("/data/meta/journal"))
            .unwrap_or_default(),
    );
    out
}

/// The shard-iterator token: any string is refused or decodes to a position; a token made
/// from the input's position round-trips, and changing any one of its characters gets it
/// refused (or, for a non-canonical base64 spelling, decodes to the same position).
pub fn iterator_token(data: &[u8]) {
    let key = IteratorKey::from_bytes([7; 32]);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = key.decode(text);
    }
    if data.len() < 2 {
        return;
    }
    // A stream name as the broker makes them (1 to 128 of [a-zA-Z0-9_.-]): `encode`
    // asserts that precondition, so the input is mapped onto it.
    const NAME_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-";
    let mut stream: String = data[2..data.len().min(130)]
        .iter()
        .map(|b| char::from(NAME_CHARS[usize::from(*b) % NAME_CHARS.len()]))
        .collect();
    if stream.is_empty() {
        stream.push('s');
    }
    let p = Position {
        stream,
        stream_uid: u64::from(data[0]),
        shard_index: u32::from(data[1]),
        seq: SeqNo(data.len() as u64),
        min_ts: data[0]
            .is_multiple_of(2)
            .then_some(TimestampMs(u64::from(data[1]))),
        issued: TimestampMs(1_000_000),
    };
    let token = key.encode(&p);
    assert_eq!(key.decode(&token), Some(p.clone()), "a token round-trips");
    let mut altered = token.into_bytes();
    let i = usize::from(data[1]) % altered.len();
    altered[i] = if altered[i] == b'A' { b'B' } else { b'A' };
    if let Ok(text) = String::from_utf8(altered) {
        let decoded = key.decode(&text);
        assert!(
            decoded.is_none() || decoded == Some(p),
            "an altered token was accepted"
        );
    }
}

/// The sequence-number decoder: refused or decoded; a decoded number re-encodes to a
/// string that decodes to the same number.
pub fn sequence_number(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(n) = SequenceNumber::decode(text) {
        let again = SequenceNumber::decode(&n.encode());
        assert_eq!(again, Ok(n), "a decoded sequence number round-trips");
    }
}

/// Every typed accessor the Kinesis operations use, on every member name they read.
fn kinesis_fields(v: &sluice_kinesis::value::Value) {
    let Ok(f) = Fields::of(v) else {
        return;
    };
    const NAMES: [&str; 14] = [
        "StreamName",
        "StreamARN",
        "ShardId",
        "PartitionKey",
        "ExplicitHashKey",
        "Data",
        "Records",
        "Limit",
        "ShardIteratorType",
        "Timestamp",
        "StartingSequenceNumber",
        "Tags",
        "ShardFilter",
        "EnforceConsumerDeletion",
    ];
    for name in NAMES {
        let _ = f.opt_str(name);
        let _ = f.str(name);
        let _ = f.opt_int(name);
        let _ = f.opt_bool(name);
        let _ = f.opt_blob(name);
        let _ = f.opt_timestamp(name);
        let _ = f.opt_string_map(name);
        if let Ok(Some(inner)) = f.opt_struct(name) {
            let _ = inner.opt_str("Type");
            let _ = inner.opt_timestamp("Timestamp");
        }
        if let Ok(Some(items)) = f.opt_array(name) {
            for item in items.iter().take(64) {
                kinesis_fields(item);
            }
        }
    }
}

/// Kinesis AWS JSON 1.1 request bodies, then the accessors.
pub fn kinesis_json(data: &[u8]) {
    if let Ok(v) = from_json(data) {
        kinesis_fields(&v);
    }
}

/// Kinesis CBOR request bodies, then the accessors.
pub fn kinesis_cbor(data: &[u8]) {
    if let Ok(v) = from_cbor(data) {
        kinesis_fields(&v);
    }
}

/// gRPC request messages: the first byte picks the type, the rest is its protobuf body;
/// a decoded message re-encodes and decodes to itself.
pub fn grpc_messages(data: &[u8]) {
    let Some((selector, body)) = data.split_first() else {
        return;
    };
    match selector % 19 {
        0 => roundtrip::<pb::CreateStreamRequest>(body),
        1 => roundtrip::<pb::DeleteStreamRequest>(body),
        2 => roundtrip::<pb::DescribeStreamRequest>(body),
        3 => roundtrip::<pb::ListStreamsRequest>(body),
        4 => roundtrip::<pb::ListShardsRequest>(body),
        5 => roundtrip::<pb::SplitShardRequest>(body),
        6 => roundtrip::<pb::MergeShardsRequest>(body),
        7 => roundtrip::<pb::UpdateShardCountRequest>(body),
        8 => roundtrip::<pb::IncreaseStreamRetentionPeriodRequest>(body),
        9 => roundtrip::<pb::DecreaseStreamRetentionPeriodRequest>(body),
        10 => roundtrip::<pb::AddTagsToStreamRequest>(body),
        11 => roundtrip::<pb::RemoveTagsFromStreamRequest>(body),
        12 => roundtrip::<pb::ListTagsForStreamRequest>(body),
        13 => roundtrip::<pb::PutRecordRequest>(body),
        14 => roundtrip::<pb::PutRecordsRequest>(body),
        15 => roundtrip::<pb::GetShardIteratorRequest>(body),
        16 => roundtrip::<pb::GetRecordsRequest>(body),
        17 => roundtrip::<pb::SubscribeRequest>(body),
        _ => roundtrip::<pb::PutRecordsRequestEntry>(body),
    }
}

fn roundtrip<M: prost::Message + Default + PartialEq + std::fmt::Debug>(body: &[u8]) {
    let Ok(m) = M::decode(body) else {
        return;
    };
    let again = M::decode(&m.encode_to_vec()[..]);
    assert_eq!(again.as_ref(), Ok(&m), "a decoded message round-trips");
}
