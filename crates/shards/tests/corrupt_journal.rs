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
use sluice_shards::{CreateStream, Error, HashKey, ShardId};
use sluice_storage::{SimFs, TimestampMs};

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
