//! Damage to the metadata files between restarts: a flipped byte in the middle of the
//! journal or anywhere in the snapshot stops start-up with a typed error naming the file and
//! the frame's offset (never a panic, never a silently shorter history); a torn tail, the
//! only damage a crash can do, is cut off and the history before it kept.

// Test helpers panic on failure, as the tests themselves do.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{config, open_sim, state};
use sluice_shards::{CreateStream, Error, HashKey, ShardId, ShardManager};
use sluice_storage::{FileSystem, SimFs, TimestampMs};

const FILE_HEADER_BYTES: usize = 16;
const FRAME_HEADER_BYTES: usize = 20;

fn journal() -> PathBuf {
    Path::new(common::DATA).join("meta/journal")
}

/// A disk whose journal holds several events.
fn history() -> SimFs {
    let fs = SimFs::new();
    let m = open_sim(&fs, config(), 10).unwrap();
    m.create_stream(&CreateStream::new("a", 2), TimestampMs(10))
        .unwrap();
    m.create_stream(&CreateStream::new("b", 1), TimestampMs(11))
        .unwrap();
    m.split_shard(
        "a",
        ShardId::new(0).unwrap(),
        HashKey(1 << 125),
        TimestampMs(12),
    )
    .unwrap();
    common::settle(&m, 12);
    let tags = BTreeMap::from([("team".to_string(), "ingest".to_string())]);
    m.add_tags("b", &tags, TimestampMs(13)).unwrap();
    m.increase_retention("b", 48, TimestampMs(14)).unwrap();
    fs
}

/// The offsets of the frames in a journal or snapshot file.
fn frame_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut pos = FILE_HEADER_BYTES;
    while pos + FRAME_HEADER_BYTES <= bytes.len() {
        out.push(pos);
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        pos += FRAME_HEADER_BYTES + len;
    }
    out
}

fn assert_corrupt_at(err: Error, path: &Path, position: usize) {
    match err {
        Error::Corrupt {
            path: p,
            position: at,
            reason,
        } => {
            assert_eq!(p, path, "{reason}");
            assert_eq!(at, position as u64, "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn a_flipped_byte_in_the_middle_of_the_journal_names_file_and_offset() {
    let fs = history();
    let bytes = fs.read_file(&journal()).unwrap();
    let frames = frame_offsets(&bytes);
    assert_eq!(frames.len(), 5);
    // Every byte of every frame but the last (whose damage is indistinguishable from a torn
    // write) is detected, at the offset of its frame.
    for (i, &start) in frames[..frames.len() - 1].iter().enumerate() {
        for at in start..frames[i + 1] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x10;
            fs.overwrite_file(&journal(), &damaged).unwrap();
            let err = open_sim(&fs, config(), 20).unwrap_err();
            assert_corrupt_at(err, &journal(), start);
        }
    }
    fs.overwrite_file(&journal(), &bytes).unwrap();
    assert_eq!(state(&open_sim(&fs, config(), 20).unwrap(), 20).len(), 2);
}

#[test]
fn a_damaged_file_header_is_a_typed_error() {
    let fs = history();
    let bytes = fs.read_file(&journal()).unwrap();
    let mut damaged = bytes.clone();
    damaged[0] = b'X';
    fs.overwrite_file(&journal(), &damaged).unwrap();
    assert_corrupt_at(open_sim(&fs, config(), 20).unwrap_err(), &journal(), 0);
    let mut newer = bytes.clone();
    newer[8] = 2;
    fs.overwrite_file(&journal(), &newer).unwrap();
    let err = open_sim(&fs, config(), 20).unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnsupportedVersion {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_torn_tail_is_truncated_and_the_history_before_it_kept() {
    let fs = history();
    let before = state(&open_sim(&fs, config(), 20).unwrap(), 20);
    let bytes = fs.read_file(&journal()).unwrap();
    let last = *frame_offsets(&bytes).last().unwrap();
    for keep in [1, 5, FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + 3] {
        // Append a prefix of a copy of the last frame, as a torn append would leave.
        let mut torn = bytes.clone();
        torn.extend_from_slice(&bytes[last..last + keep]);
        fs.overwrite_file(&journal(), &torn).unwrap();
        let m = open_sim(&fs, config(), 20).unwrap();
        assert_eq!(state(&m, 20), before, "keep {keep}");
        assert_eq!(
            fs.read_file(&journal()).unwrap(),
            bytes,
            "keep {keep}: tail not cut"
        );
    }
}

#[test]
fn damage_to_the_snapshot_is_a_typed_error() {
    let fs = history();
    let m = open_sim(&fs, config(), 20).unwrap();
    let before = state(&m, 20);
    m.compact().unwrap();
    drop(m);
    assert_eq!(state(&open_sim(&fs, config(), 20).unwrap(), 20), before);
    let snapshot = Path::new(common::DATA).join("meta/snapshot");
    let bytes = fs.read_file(&snapshot).unwrap();
    for at in [
        FILE_HEADER_BYTES + 2,
        FILE_HEADER_BYTES + FRAME_HEADER_BYTES + 9,
        bytes.len() - 1,
    ] {
        let mut damaged = bytes.clone();
        damaged[at] ^= 1;
        fs.overwrite_file(&snapshot, &damaged).unwrap();
        assert_corrupt_at(
            open_sim(&fs, config(), 20).unwrap_err(),
            &snapshot,
            FILE_HEADER_BYTES,
        );
    }
}

/// A one-shard stream holding `parent_records` records, then split in two: the disk, the
/// open manager, and the journal's bytes before the split.
fn split_stream(parent_records: usize) -> (SimFs, ShardManager, Vec<u8>) {
    let fs = SimFs::new();
    let m = open_sim(&fs, config(), 10).unwrap();
    m.create_stream(&CreateStream::new("s", 1), TimestampMs(10))
        .unwrap();
    for i in 0..parent_records {
        common::put(&m, "s", format!("k{i}").as_bytes(), b"in-parent", 11);
    }
    let before_split = fs.read_file(&journal()).unwrap();
    m.split_shard(
        "s",
        ShardId::new(0).unwrap(),
        HashKey(1 << 127),
        TimestampMs(12),
    )
    .unwrap();
    common::settle(&m, 12);
    assert!(
        fs.read_file(&journal()).unwrap().starts_with(&before_split),
        "the split was compacted into a snapshot; the test needs it in the journal"
    );
    (fs, m, before_split)
}

/// A journal whose last event (a split) is lost while the children already hold records:
/// returns the disk, the journal's bytes before the split, and the children's records.
fn split_then_put() -> (SimFs, Vec<u8>, Vec<Vec<u8>>) {
    let (fs, m, before_split) = split_stream(3);
    let mut data = Vec::new();
    let mut children = std::collections::BTreeSet::new();
    for i in 0..40 {
        let d = format!("child-record-{i}").into_bytes();
        let (shard, _) = common::put(&m, "s", format!("key-{i}").as_bytes(), &d, 13);
        children.insert(shard);
        data.push(d);
    }
    assert_eq!(children.len(), 2, "both children should get records");
    (fs, before_split, data)
}

#[test]
fn a_lost_journal_tail_sets_aside_shards_holding_records_never_deletes_them() {
    let lost_found = Path::new(common::DATA).join(sluice_shards::LOST_FOUND_DIR);
    for damage in ["truncate", "zero"] {
        let (fs, before_split, data) = split_then_put();
        let mut bytes = fs.read_file(&journal()).unwrap();
        match damage {
            "truncate" => bytes.truncate(before_split.len()),
            _ => bytes[before_split.len()..].fill(0),
        }
        fs.overwrite_file(&journal(), &bytes).unwrap();

        let m = open_sim(&fs, config(), 20).unwrap();
        let d = m.describe_stream("s", TimestampMs(20)).unwrap();
        assert_eq!(
            d.shards.len(),
            1,
            "{damage}: the split is gone with the journal tail"
        );
        let parent = m
            .shard("s", ShardId::new(0).unwrap(), TimestampMs(20))
            .unwrap()
            .log
            .unwrap();
        assert_eq!(
            parent
                .read(sluice_storage::SeqNo(0), 100, 1 << 20)
                .unwrap()
                .records
                .len(),
            3
        );
        assert_eq!(common::shard_dirs(&fs, d.uid), vec!["shardId-000000000000"]);

        // Both children's directories, records and all, are in lost+found.
        let mut set_aside = fs.list_dir(&lost_found).unwrap();
        set_aside.sort();
        assert_eq!(
            set_aside,
            vec![
                format!("{:020}-shardId-000000000001", d.uid),
                format!("{:020}-shardId-000000000002", d.uid)
            ],
            "{damage}"
        );
        let mut kept = Vec::new();
        for dir in &set_aside {
            for name in fs.list_dir(&lost_found.join(dir)).unwrap() {
                if name.ends_with(".log") {
                    kept.extend(fs.read_file(&lost_found.join(dir).join(name)).unwrap());
                }
            }
        }
        for d in &data {
            assert!(
                kept.windows(d.len()).any(|w| w == &d[..]),
                "{damage}: {} not in lost+found",
                String::from_utf8_lossy(d)
            );
        }
        // The stream takes writes again, and a second start-up changes nothing.
        common::put(&m, "s", b"after", b"after", 21);
        drop(m);
        let m = open_sim(&fs, config(), 22).unwrap();
        assert_eq!(
            m.describe_stream("s", TimestampMs(22))
                .unwrap()
                .shards
                .len(),
            1
        );
        assert_eq!(fs.list_dir(&lost_found).unwrap().len(), 2, "{damage}");
    }
}

#[test]
fn empty_children_of_an_unjournaled_split_are_still_removed() {
    let (fs, m, before_split) = split_stream(0);
    // Reading the children creates their (empty) logs.
    for child in 0..3 {
        m.shard("s", ShardId::new(child).unwrap(), TimestampMs(13))
            .unwrap();
    }
    let uid = m.describe_stream("s", TimestampMs(13)).unwrap().uid;
    assert_eq!(common::shard_dirs(&fs, uid).len(), 3);
    drop(m);
    fs.overwrite_file(&journal(), &before_split).unwrap();
    let m = open_sim(&fs, config(), 20).unwrap();
    let d = m.describe_stream("s", TimestampMs(20)).unwrap();
    assert_eq!(common::shard_dirs(&fs, d.uid), vec!["shardId-000000000000"]);
    assert!(!fs.exists(&Path::new(common::DATA).join(sluice_shards::LOST_FOUND_DIR)));
}
