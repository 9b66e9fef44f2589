//! The metadata journal and its snapshot: CRC-framed events in an append-only file, replayed
//! at start-up and compacted into a snapshot when the file grows.
//!
//! Both files start with a 16-byte header, then frames:
//!
//! | offset | width | meaning |
//! |---|---|---|
//! | 0 | 8 | magic: `SLCJRNL\0` (journal) or `SLCSNAP\0` (snapshot) |
//! | 8 | 4 | format version, u32 LE (currently 1) |
//! | 12 | 4 | reserved, zero |
//!
//! Frame (all integers little-endian):
//!
//! | offset | width | meaning |
//! |---|---|---|
//! | 0 | 4 | `len`: body bytes |
//! | 4 | 8 | `lsn`: the event's number; consecutive, from 1 |
//! | 12 | 4 | CRC32C of bytes 0..12 (the header checksum) |
//! | 16 | 4 | CRC32C of the body |
//! | 20 | len | body: one event (journal) or the whole catalogue (snapshot), see `codec` |
//!
//! The header checksum makes `len` trustworthy before the body is read, which is what lets
//! replay tell a torn tail from damage: a torn write leaves a *prefix* of the last frame, so
//! an incomplete header, a frame running past the end of the file, a bad body checksum on
//! the frame that ends exactly at end of file, or all-zero bytes to the end are a torn tail
//! and are truncated; anything else that fails a check is [`Error::Corrupt`] naming the file
//! and the frame's offset. (A flipped bit in the body of the very last frame looks the same
//! as a torn write and is truncated like one.)
//!
//! Every append is synced before the caller applies the event. A snapshot records the lsn
//! of the last event it contains; replay skips journal frames up to it, so a crash between
//! writing a snapshot and resetting the journal replays nothing twice.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_storage::fs::{FileHandle, FileSystem};

use crate::catalogue::{Catalogue, Event};
use crate::codec::{decode_catalogue, decode_event, encode_catalogue, encode_event};
use crate::error::{Error, Result};

/// The journal's file name in the metadata directory.
pub const JOURNAL_FILE: &str = "journal";
/// The snapshot's file name in the metadata directory.
pub const SNAPSHOT_FILE: &str = "snapshot";
/// Magic bytes at the start of the journal.
pub const JOURNAL_MAGIC: [u8; 8] = *b"SLCJRNL\0";
/// Magic bytes at the start of the snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"SLCSNAP\0";
/// The format version written and read by this build.
pub const FORMAT_VERSION: u32 = 1;

const FILE_HEADER_BYTES: usize = 16;
const FRAME_LEN_OFFSET: usize = 0;
const FRAME_LSN_OFFSET: usize = FRAME_LEN_OFFSET + 4;
const FRAME_HEAD_CRC_OFFSET: usize = FRAME_LSN_OFFSET + 8;
const FRAME_BODY_CRC_OFFSET: usize = FRAME_HEAD_CRC_OFFSET + 4;
const FRAME_HEADER_BYTES: usize = FRAME_BODY_CRC_OFFSET + 4;
/// The largest journal event body (a resize of 10,000 shards needs under 1 MiB).
const EVENT_BYTES_MAX: usize = 64 << 20;

const _: () = assert!(FRAME_HEADER_BYTES == 20);

/// The open journal, positioned at its end.
#[derive(Debug)]
pub(crate) struct Journal {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    path: PathBuf,
    file: Arc<dyn FileHandle>,
    len_bytes: u64,
    lsn_next: u64,
}

/// What start-up found on disk.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub catalogue: Catalogue,
    pub journal: Journal,
    /// Bytes of torn tail cut from the journal.
    pub truncated_bytes: u64,
    /// The journal file and the offset its tail was cut at, when it was.
    pub truncated_at: Option<(PathBuf, u64)>,
    /// Events replayed from the journal (after the snapshot).
    pub replayed: u64,
}

/// A frame found by [`scan_frames`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame<'a> {
    pub offset: usize,
    pub lsn: u64,
    pub body: &'a [u8],
}

/// How a frame scan ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tail {
    /// The last frame ended exactly at end of file.
    Clean,
    /// A torn write: cut the file at this offset.
    Torn { at: usize },
    /// Damage at this offset.
    Corrupt { at: usize, reason: String },
}

/// Appends one frame to `out`.
pub(crate) fn encode_frame(lsn: u64, body: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    let len = u32::try_from(body.len()).expect("frame bodies are bounded below 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    let head_crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&head_crc.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    out.extend_from_slice(body);
    debug_assert_eq!(out.len() - start, FRAME_HEADER_BYTES + body.len());
}

/// Reads frames from `bytes[from..]` until the end or the first bad frame, with the rules
/// in the module doc. `body_bytes_max` bounds `len`.
pub(crate) fn scan_frames(
    bytes: &[u8],
    from: usize,
    body_bytes_max: usize,
) -> (Vec<Frame<'_>>, Tail) {
    let mut frames = Vec::new();
    let mut pos = from;
    loop {
        let rest = bytes.get(pos..).unwrap_or(&[]);
        if rest.is_empty() {
            return (frames, Tail::Clean);
        }
        match read_frame(rest, body_bytes_max) {
            Ok((lsn, body)) => {
                let next = pos + FRAME_HEADER_BYTES + body.len();
                frames.push(Frame {
                    offset: pos,
                    lsn,
                    body,
                });
                pos = next;
            }
            Err(FrameError::Torn) => return (frames, Tail::Torn { at: pos }),
            Err(FrameError::Corrupt(reason)) => return (frames, Tail::Corrupt { at: pos, reason }),
        }
    }
}

/// Writes a new, empty journal (via a synced temporary file and a rename).
pub(crate) fn create_journal(
    fs: &Arc<dyn FileSystem>,
    dir: &Path,
    lsn_next: u64,
) -> Result<Journal> {
    let path = dir.join(JOURNAL_FILE);
    let mut bytes = Vec::with_capacity(FILE_HEADER_BYTES);
    file_header(JOURNAL_MAGIC, &mut bytes);
    write_atomically(fs.as_ref(), dir, JOURNAL_FILE, &bytes)?;
    let file = fs.open(&path).map_err(|e| Error::io(&path, e))?;
    Ok(Journal {
        fs: Arc::clone(fs),
        dir: dir.to_path_buf(),
        path,
        file,
        len_bytes: bytes.len() as u64,
        lsn_next,
    })
}

/// Loads the snapshot (if any), replays the journal after it, truncates a torn tail, and
/// returns the catalogue with the journal open for appends. Creates an empty journal in
/// an empty directory.
pub(crate) fn recover(fs: &Arc<dyn FileSystem>, dir: &Path) -> Result<Recovered> {
    fs.create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    for tmp in [JOURNAL_FILE, SNAPSHOT_FILE].map(|n| dir.join(format!("{n}.tmp"))) {
        if fs.exists(&tmp) {
            fs.remove_file(&tmp).map_err(|e| Error::io(&tmp, e))?;
        }
    }
    let (mut catalogue, snapshot_lsn) = load_snapshot(fs.as_ref(), dir)?;
    let path = dir.join(JOURNAL_FILE);
    if !fs.exists(&path) {
        let journal = create_journal(fs, dir, snapshot_lsn + 1)?;
        return Ok(Recovered {
            catalogue,
            journal,
            truncated_bytes: 0,
            truncated_at: None,
            replayed: 0,
        });
    }
    let file = fs.open(&path).map_err(|e| Error::io(&path, e))?;
    let bytes = read_all(file.as_ref(), &path)?;
    check_file_header(&bytes, JOURNAL_MAGIC, &path)?;
    let (frames, tail) = scan_frames(&bytes, FILE_HEADER_BYTES, EVENT_BYTES_MAX);
    let mut lsn_last = snapshot_lsn;
    let mut replayed = 0;
    let mut lsn_prev: Option<u64> = None;
    for frame in &frames {
        let at = frame.offset as u64;
        if let Some(prev) = lsn_prev.filter(|p| frame.lsn != p + 1) {
            return Err(Error::corrupt(
                &path,
                at,
                format!("event {} follows event {prev}", frame.lsn),
            ));
        }
        lsn_prev = Some(frame.lsn);
        let event = decode_event(frame.body).map_err(|r| Error::corrupt(&path, at, r))?;
        if frame.lsn <= snapshot_lsn {
            continue;
        }
        if frame.lsn != lsn_last + 1 {
            return Err(Error::corrupt(
                &path,
                at,
                format!(
                    "event {} follows the snapshot's event {lsn_last}",
                    frame.lsn
                ),
            ));
        }
        catalogue.apply(&event).map_err(|r| {
            Error::corrupt(&path, at, format!("event {} cannot apply: {r}", frame.lsn))
        })?;
        lsn_last = frame.lsn;
        replayed += 1;
    }
    let len_bytes = match tail {
        Tail::Clean => bytes.len() as u64,
        Tail::Corrupt { at, reason } => return Err(Error::corrupt(&path, at as u64, reason)),
        Tail::Torn { at } => {
            file.set_len(at as u64).map_err(|e| Error::io(&path, e))?;
            file.sync_data().map_err(|e| Error::io(&path, e))?;
            tracing::warn!(
                file = %path.display(),
                offset = at,
                truncated_bytes = bytes.len() - at,
                "journal tail truncated at {}:{at}: an unfinished (torn) last write, or damage to the last events",
                path.display()
            );
            at as u64
        }
    };
    let truncated_bytes = bytes.len() as u64 - len_bytes;
    let truncated_at = (truncated_bytes > 0).then(|| (path.clone(), len_bytes));
    let journal = Journal {
        fs: Arc::clone(fs),
        dir: dir.to_path_buf(),
        path,
        file,
        len_bytes,
        lsn_next: lsn_last + 1,
    };
    Ok(Recovered {
        catalogue,
        journal,
        truncated_bytes,
        truncated_at,
        replayed,
    })
}

impl Journal {
    /// Appends one event and syncs it. On `Err` whether the event is durable is unknown:
    /// the caller must stop changing the catalogue (poison) until the journal is reopened.
    pub fn append(&mut self, event: &Event) -> Result<()> {
        let mut body = Vec::new();
        encode_event(event, &mut body);
        assert!(
            body.len() <= EVENT_BYTES_MAX,
            "event of {} bytes exceeds the frame limit",
            body.len()
        );
        let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + body.len());
        encode_frame(self.lsn_next, &body, &mut frame);
        self.file
            .write_all_at(self.len_bytes, &frame)
            .map_err(|e| Error::io(&self.path, e))?;
        self.file
            .sync_data()
            .map_err(|e| Error::io(&self.path, e))?;
        self.len_bytes += frame.len() as u64;
        self.lsn_next += 1;
        Ok(())
    }

    /// The journal's length in bytes.
    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    /// Writes `catalogue` (the state after every appended event) as the snapshot, then
    /// replaces the journal with an empty one. On `Err` the caller must poison, as which
    /// files are durable is unknown.
    pub fn compact(&mut self, catalogue: &Catalogue) -> Result<()> {
        let mut body = Vec::new();
        encode_catalogue(catalogue, &mut body);
        let mut bytes = Vec::with_capacity(FILE_HEADER_BYTES + FRAME_HEADER_BYTES + body.len());
        file_header(SNAPSHOT_MAGIC, &mut bytes);
        encode_frame(self.lsn_next - 1, &body, &mut bytes);
        write_atomically(self.fs.as_ref(), &self.dir, SNAPSHOT_FILE, &bytes)?;
        *self = create_journal(&self.fs, &self.dir, self.lsn_next)?;
        tracing::info!(dir = %self.dir.display(), snapshot_bytes = bytes.len(), "metadata journal compacted");
        Ok(())
    }
}

enum FrameError {
    Torn,
    Corrupt(String),
}

/// Decodes the frame at the start of `rest` (which runs to end of file).
fn read_frame(rest: &[u8], body_bytes_max: usize) -> Result<(u64, &[u8]), FrameError> {
    let Some(head) = rest.get(..FRAME_HEADER_BYTES) else {
        return Err(FrameError::Torn);
    };
    let le32 = |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    if crc32c::crc32c(&head[..FRAME_HEAD_CRC_OFFSET]) != le32(FRAME_HEAD_CRC_OFFSET) {
        if rest.iter().all(|b| *b == 0) {
            return Err(FrameError::Torn);
        }
        return Err(FrameError::Corrupt("frame header checksum mismatch".into()));
    }
    let len = le32(FRAME_LEN_OFFSET) as usize;
    let mut lsn = [0u8; 8];
    lsn.copy_from_slice(&head[FRAME_LSN_OFFSET..FRAME_HEAD_CRC_OFFSET]);
    let lsn = u64::from_le_bytes(lsn);
    if len > body_bytes_max {
        return Err(FrameError::Corrupt(format!(
            "frame body of {len} bytes exceeds {body_bytes_max}"
        )));
    }
    let Some(body) = rest.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len) else {
        return Err(FrameError::Torn);
    };
    if crc32c::crc32c(body) != le32(FRAME_BODY_CRC_OFFSET) {
        if rest.len() == FRAME_HEADER_BYTES + len {
            return Err(FrameError::Torn);
        }
        return Err(FrameError::Corrupt(format!(
            "body checksum mismatch in event {lsn}"
        )));
    }
    Ok((lsn, body))
}

fn file_header(magic: [u8; 8], out: &mut Vec<u8>) {
    out.extend_from_slice(&magic);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    debug_assert_eq!(out.len(), FILE_HEADER_BYTES);
}

fn check_file_header(bytes: &[u8], magic: [u8; 8], path: &Path) -> Result<()> {
    let Some(head) = bytes.get(..FILE_HEADER_BYTES) else {
        return Err(Error::corrupt(
            path,
            0,
            format!("file of {} bytes is shorter than its header", bytes.len()),
        ));
    };
    if head[..8] != magic {
        return Err(Error::corrupt(path, 0, "bad magic number"));
    }
    let found = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    if found != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found,
            supported: FORMAT_VERSION,
        });
    }
    Ok(())
}

/// The snapshot's catalogue and last lsn; an empty catalogue and 0 without a snapshot.
fn load_snapshot(fs: &dyn FileSystem, dir: &Path) -> Result<(Catalogue, u64)> {
    let path = dir.join(SNAPSHOT_FILE);
    if !fs.exists(&path) {
        return Ok((Catalogue::default(), 0));
    }
    let file = fs.open(&path).map_err(|e| Error::io(&path, e))?;
    let bytes = read_all(file.as_ref(), &path)?;
    check_file_header(&bytes, SNAPSHOT_MAGIC, &path)?;
    // The snapshot was synced before it was renamed into place, so even a "torn" frame is
    // damage here.
    let (frames, tail) = scan_frames(&bytes, FILE_HEADER_BYTES, usize::MAX);
    let at = FILE_HEADER_BYTES as u64;
    match (&frames[..], tail) {
        ([frame], Tail::Clean) => {
            let catalogue =
                decode_catalogue(frame.body).map_err(|r| Error::corrupt(&path, at, r))?;
            Ok((catalogue, frame.lsn))
        }
        (_, Tail::Corrupt { at, reason }) => Err(Error::corrupt(&path, at as u64, reason)),
        (_, Tail::Torn { at }) => Err(Error::corrupt(
            &path,
            at as u64,
            "snapshot frame is incomplete or damaged",
        )),
        (frames, Tail::Clean) => Err(Error::corrupt(
            &path,
            at,
            format!("snapshot holds {} frames instead of one", frames.len()),
        )),
    }
}

fn read_all(file: &dyn FileHandle, path: &Path) -> Result<Vec<u8>> {
    let len = file.len().map_err(|e| Error::io(path, e))?;
    let len =
        usize::try_from(len).map_err(|_| Error::corrupt(path, 0, "file too large to read"))?;
    let mut bytes = vec![0u8; len];
    file.read_exact_at(0, &mut bytes)
        .map_err(|e| Error::io(path, e))?;
    Ok(bytes)
}

/// Writes `name` in `dir` crash-safely: `name.tmp`, sync, rename over `name`, sync the dir.
fn write_atomically(fs: &dyn FileSystem, dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    if fs.exists(&tmp) {
        fs.remove_file(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    let file = fs.create_new(&tmp).map_err(|e| Error::io(&tmp, e))?;
    file.write_all_at(0, bytes)
        .map_err(|e| Error::io(&tmp, e))?;
    file.sync_data().map_err(|e| Error::io(&tmp, e))?;
    fs.rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    fs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frames_file(bodies: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        file_header(JOURNAL_MAGIC, &mut out);
        for (i, b) in bodies.iter().enumerate() {
            encode_frame(i as u64 + 1, b, &mut out);
        }
        out
    }

    fn scan(bytes: &[u8]) -> (Vec<u64>, Tail) {
        let (frames, tail) = scan_frames(bytes, FILE_HEADER_BYTES, EVENT_BYTES_MAX);
        (frames.iter().map(|f| f.lsn).collect(), tail)
    }

    #[test]
    fn frames_round_trip() {
        let bytes = frames_file(&[b"one", b"", b"three"]);
        let (frames, tail) = scan_frames(&bytes, FILE_HEADER_BYTES, EVENT_BYTES_MAX);
        assert_eq!(tail, Tail::Clean);
        let bodies: Vec<&[u8]> = frames.iter().map(|f| f.body).collect();
        assert_eq!(bodies, vec![&b"one"[..], b"", b"three"]);
    }

    #[test]
    fn zero_filled_tail_is_torn() {
        let mut bytes = frames_file(&[b"one"]);
        let end = bytes.len();
        bytes.extend_from_slice(&[0u8; 40]);
        assert_eq!(scan(&bytes), (vec![1], Tail::Torn { at: end }));
    }

    #[test]
    fn oversized_length_with_a_good_header_checksum_is_corrupt() {
        let mut bytes = Vec::new();
        file_header(JOURNAL_MAGIC, &mut bytes);
        encode_frame(1, &[7u8; 100], &mut bytes);
        let (_, tail) = scan_frames(&bytes, FILE_HEADER_BYTES, 10);
        assert!(matches!(tail, Tail::Corrupt { at: 16, .. }), "{tail:?}");
    }

    #[test]
    fn bad_magic_and_unknown_version_are_typed_errors() {
        let p = Path::new("/m/journal");
        let mut bytes = frames_file(&[]);
        bytes[8] = 9;
        assert!(matches!(
            check_file_header(&bytes, JOURNAL_MAGIC, p),
            Err(Error::UnsupportedVersion { found: 9, .. })
        ));
        bytes[0] = b'X';
        assert!(matches!(
            check_file_header(&bytes, JOURNAL_MAGIC, p),
            Err(Error::Corrupt { position: 0, .. })
        ));
        assert!(matches!(
            check_file_header(&bytes[..5], JOURNAL_MAGIC, p),
            Err(Error::Corrupt { .. })
        ));
    }

    proptest! {
        /// Every prefix of a valid file reads as whole frames plus, at most, a torn tail.
        #[test]
        fn any_truncation_is_a_torn_tail(bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..6), cut in any::<prop::sample::Index>()) {
            let refs: Vec<&[u8]> = bodies.iter().map(|b| b.as_slice()).collect();
            let bytes = frames_file(&refs);
            let cut = FILE_HEADER_BYTES + cut.index(bytes.len() - FILE_HEADER_BYTES + 1);
            let (lsns, tail) = scan(&bytes[..cut]);
            prop_assert!(matches!(tail, Tail::Clean | Tail::Torn { .. }), "{:?}", tail);
            let expected: Vec<u64> = (1..).take(lsns.len()).collect();
            prop_assert_eq!(lsns, expected);
        }

        /// A flipped byte is never accepted: it is corruption, or a torn tail when it is in
        /// the last frame.
        #[test]
        fn any_flipped_byte_is_detected(bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 2..6), at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let refs: Vec<&[u8]> = bodies.iter().map(|b| b.as_slice()).collect();
            let mut bytes = frames_file(&refs);
            let clean_len = bytes.len();
            let at = FILE_HEADER_BYTES + at.index(clean_len - FILE_HEADER_BYTES);
            bytes[at] ^= 1 << bit;
            let (frames, tail) = scan_frames(&bytes, FILE_HEADER_BYTES, EVENT_BYTES_MAX);
            let last_start = frames_file(&refs[..refs.len() - 1]).len();
            prop_assert!(frames.iter().all(|f| f.offset + FRAME_HEADER_BYTES + f.body.len() <= at));
            if at < last_start {
                prop_assert!(matches!(tail, Tail::Corrupt { .. }), "{:?}", tail);
            } else {
                prop_assert!(!matches!(tail, Tail::Clean), "{:?}", tail);
            }
        }
    }
}
