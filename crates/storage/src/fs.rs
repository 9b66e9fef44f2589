//! The file-system seam: every byte the storage engine reads or writes goes through
//! [`FileSystem`] and [`FileHandle`].
//!
//! Two implementations exist: [`RealFs`] (std files, `fdatasync`, `memmap2` mappings) and
//! [`crate::sim::SimFs`] (an in-memory disk that keeps live and durable bytes apart and
//! injects faults). Keeping the seam this small is what lets the crash tests run thousands of
//! power losses per second without touching a real disk.

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// A read-only view of a file's bytes.
///
/// The real implementation is a memory map whose length may exceed the file's current
/// length (so an active segment never needs remapping); callers only touch bytes below a
/// length they know to be written.
pub trait Mapping: Send + Sync {
    /// The mapped bytes. Bytes past the file's written length must not be read.
    fn bytes(&self) -> &[u8];
}

/// An open file.
pub trait FileHandle: Send + Sync + Debug {
    /// The file's current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Fills `buf` from `pos`; fails with `UnexpectedEof` past the end.
    fn read_exact_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `buf` at `pos`, growing the file if needed.
    fn write_all_at(&self, pos: u64, buf: &[u8]) -> io::Result<()>;
    /// Truncates or extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes every write so far durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// Makes every write so far to *every* file of the file system this one is on durable
    /// (`syncfs`): one call instead of one `fdatasync` per file when many files wait. An
    /// error may belong to any file written since this one was opened.
    fn sync_filesystem(&self) -> io::Result<()>;
    /// Maps the file for reading with a mapping of at least `len_min` bytes (or the file
    /// length, if larger).
    fn map(&self, len_min: u64) -> io::Result<Arc<dyn Mapping>>;
}

/// What start-up learns of the file system holding a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsInfo {
    /// A name for the logs: `ext4`, `xfs`, `btrfs`, or the `statfs` magic number in hex.
    pub name: String,
    /// Whether `syncfs` is known to write every file's data to stable storage there. It
    /// is not on FUSE, where it returns success without reaching the file system below.
    pub syncfs_flushes_data: bool,
}

/// `statfs` magic numbers of the local file systems whose `syncfs` writes back every
/// file's data and waits for it (`sync_filesystem` in the kernel calls their `sync_fs`).
/// ext2, ext3 and ext4 share one number.
const SYNCFS_FLUSHES: [(u64, &str); 3] = [
    (0xEF53, "ext4"),
    (0x5846_5342, "xfs"),
    (0x9123_683E, "btrfs"),
];

/// Names of a few other magic numbers, for the log line only.
const OTHER_NAMES: [(u64, &str); 6] = [
    (0x6573_5546, "fuse"),
    (0x0102_1994, "tmpfs"),
    (0x794C_7630, "overlayfs"),
    (0x6969, "nfs"),
    (0x2FC1_2FC1, "zfs"),
    (0xF2F5_2010, "f2fs"),
];

/// Describes a file system by its `statfs` magic number.
pub fn fs_info_from_magic(magic: u64) -> FsInfo {
    let magic = magic & 0xFFFF_FFFF;
    if let Some((_, name)) = SYNCFS_FLUSHES.iter().find(|(m, _)| *m == magic) {
        return FsInfo {
            name: (*name).to_owned(),
            syncfs_flushes_data: true,
        };
    }
    let name = OTHER_NAMES
        .iter()
        .find(|(m, _)| *m == magic)
        .map_or_else(|| format!("{magic:#x}"), |(_, n)| (*n).to_owned());
    FsInfo {
        name,
        syncfs_flushes_data: false,
    }
}

/// The operations on names and directories that the engine needs.
pub trait FileSystem: Send + Sync + Debug {
    /// Creates a directory and its parents (no-op if it exists).
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// The names of the entries of a directory, in no particular order.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Whether a file or directory exists at `path`.
    fn exists(&self, path: &Path) -> bool;
    /// Creates a new, empty file opened for reading and writing; fails if it exists.
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>>;
    /// Opens an existing file for reading and writing.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>>;
    /// Renames a file within a directory, replacing any file at `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything below it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creates, renames, removes) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// What kind of file system holds `dir`, and whether its `syncfs` flushes data.
    fn fs_info(&self, dir: &Path) -> io::Result<FsInfo>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

impl RealFs {
    /// A shareable handle to the real file system.
    pub fn shared() -> Arc<dyn FileSystem> {
        Arc::new(RealFs)
    }
}

#[derive(Debug)]
struct RealFile {
    file: File,
}

struct RealMapping {
    map: memmap2::Mmap,
}

impl Mapping for RealMapping {
    fn bytes(&self) -> &[u8] {
        &self.map
    }
}

impl FileHandle for RealFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn read_exact_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<()> {
        FileExt::read_exact_at(&self.file, buf, pos)
    }

    fn write_all_at(&self, pos: u64, buf: &[u8]) -> io::Result<()> {
        FileExt::write_all_at(&self.file, buf, pos)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn sync_filesystem(&self) -> io::Result<()> {
        rustix::fs::syncfs(&self.file).map_err(io::Error::from)
    }

    fn map(&self, len_min: u64) -> io::Result<Arc<dyn Mapping>> {
        let len = len_min.max(self.len()?);
        if len == 0 {
            return Ok(Arc::new(EmptyMapping));
        }
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "mapping too large"))?;
        // SAFETY: the mapping is read-only and shared. Sluice is the only writer of its data
        // directory, and readers only touch bytes below a length that was written before the
        // mapping was read (the engine never truncates a file that is mapped by a reader
        // except below lengths no reader has been handed). A mapping longer than the file is
        // allowed by mmap(2); pages past the end are never touched.
        let map = unsafe { memmap2::MmapOptions::new().len(len).map(&self.file)? };
        Ok(Arc::new(RealMapping { map }))
    }
}

struct EmptyMapping;

impl Mapping for EmptyMapping {
    fn bytes(&self) -> &[u8] {
        &[]
    }
}

impl FileSystem for RealFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        Ok(Arc::new(RealFile { file }))
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Arc::new(RealFile { file }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn fs_info(&self, dir: &Path) -> io::Result<FsInfo> {
        let st = rustix::fs::statfs(dir).map_err(io::Error::from)?;
        // `f_type` is a signed word on some targets; the magic numbers are 32-bit.
        #[allow(clippy::unnecessary_cast)]
        let magic = st.f_type as i64 as u64;
        Ok(fs_info_from_magic(magic))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_mapping_may_be_longer_than_the_file_and_sees_later_writes() {
        let dir = tempfile::tempdir().unwrap();
        let fs = RealFs;
        let file = fs.create_new(&dir.path().join("f")).unwrap();
        file.write_all_at(0, b"abc").unwrap();
        let map = file.map(1 << 20).unwrap();
        assert_eq!(map.bytes().len(), 1 << 20);
        assert_eq!(&map.bytes()[..3], b"abc");
        file.write_all_at(3, b"def").unwrap();
        assert_eq!(&map.bytes()[..6], b"abcdef");
    }

    #[test]
    fn only_known_local_file_systems_are_trusted_with_syncfs() {
        assert!(fs_info_from_magic(0xEF53).syncfs_flushes_data);
        assert!(fs_info_from_magic(0x5846_5342).syncfs_flushes_data);
        assert!(fs_info_from_magic(0x9123_683E).syncfs_flushes_data);
        let fuse = fs_info_from_magic(0x6573_5546);
        assert_eq!(fuse.name, "fuse");
        assert!(!fuse.syncfs_flushes_data);
        assert!(!fs_info_from_magic(0x1234).syncfs_flushes_data);
        // Sign-extended words name the same file system.
        assert_eq!(fs_info_from_magic(0xFFFF_FFFF_9123_683E).name, "btrfs");
        // The real call answers for a real directory.
        let dir = tempfile::tempdir().unwrap();
        assert!(!RealFs.fs_info(dir.path()).unwrap().name.is_empty());
    }

    #[test]
    fn create_new_refuses_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        RealFs.create_new(&path).unwrap();
        let err = RealFs.create_new(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    }
}
