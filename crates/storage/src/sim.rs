//! A simulated disk for crash and fault tests: [`SimFs`].
//!
//! Fault model (what a real machine can do to us, and what this disk reproduces):
//! - File contents: every file keeps its *live* bytes (what reads see) and its *durable*
//!   bytes (what survives a power loss). `sync_data` copies live to durable.
//! - Names: creates, renames and removes change the live namespace at once and the durable
//!   namespace only when the parent directory is synced (`sync_dir`). Directories created
//!   with `create_dir_all` are durable at once (a simplification: the engine syncs the parent
//!   after creating shard directories anyway).
//! - Crash: [`SimFs::crash`] throws away everything not durable. With
//!   [`CrashMode::TornTail`] a random prefix of each file's unsynced appended bytes survives,
//!   as a torn write would leave it.
//! - Power cut: [`SimFs::power_cut_after`] lets N more mutating operations succeed, tears the
//!   next one (a write may land partly) and fails every mutating operation after it, until
//!   `crash` is called. Looping N over every value crashes a workload at every boundary.
//! - I/O errors: the Nth write or sync from now can fail with any `io::ErrorKind` (EIO,
//!   ENOSPC...), a write optionally torn at a byte (a failed write never lands whole); the
//!   Nth open, create or map can fail (EMFILE, ENOMEM...); the disk can be made full.
//! - `syncfs`: by default it returns success and makes nothing durable, as on a FUSE file
//!   system; [`SimFs::set_syncfs_flushes`] models one whose `syncfs` flushes every file.
//! - Gates ([`Gate`]): file syncs, or the next write after it has landed a prefix, wait
//!   until the test lets them through, so a test puts events of several threads in an exact
//!   order without sleeping.
//!
//! Everything is deterministic: the only randomness is the seed given to `TornTail`.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::fs::{FileHandle, FileSystem, FsInfo, Mapping};

mod gate;

pub use gate::Gate;
use gate::{GateInner, GatePass};

/// What survives a simulated crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Only synced bytes and synced names survive.
    DropUnsynced,
    /// As `DropUnsynced`, but each file whose unsynced change was an append keeps a random
    /// prefix of the appended bytes (a torn write). The seed picks the prefix lengths.
    TornTail {
        /// Seed for the prefix lengths.
        seed: u64,
    },
    /// Everything written survives, synced or not, as when the process is killed
    /// (SIGKILL) and the kernel's page cache is not lost: a write the kill cut short
    /// keeps the bytes it had landed.
    KeepWritten,
}

/// Counts of the operations the simulated disk has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Mutating operations (writes, truncations, syncs, creates, renames, removes).
    pub mutations: u64,
    /// `write_all_at` calls.
    pub writes: u64,
    /// `sync_data`, `sync_filesystem` and `sync_dir` calls.
    pub syncs: u64,
    /// `create_new`, `open` and `map` calls.
    pub opens: u64,
}

/// An in-memory disk with separate live and durable state. Cloning shares the disk.
#[derive(Debug, Clone, Default)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Dir,
    File(u64),
}

#[derive(Debug, Default)]
struct Inode {
    live: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct Planned {
    countdown: u64,
    kind: io::ErrorKind,
    tear_bytes: Option<usize>,
}

#[derive(Debug, Default)]
struct State {
    live: BTreeMap<PathBuf, Node>,
    durable: BTreeMap<PathBuf, Node>,
    inodes: HashMap<u64, Inode>,
    inode_next: u64,
    stats: SimStats,
    write_fault: Option<Planned>,
    sync_fault: Option<Planned>,
    power_cut: Option<Planned>,
    powered_off: bool,
    disk_full: bool,
    /// The error kind a torn write fails with once its prefix has landed.
    write_fault_pending_kind: Option<io::ErrorKind>,
    /// Directory renames whose parent has not been synced yet.
    dir_renames: Vec<(PathBuf, PathBuf)>,
    /// How long a file sync takes, to make syncs overlap with appends as on a real disk.
    sync_delay: std::time::Duration,
    /// Planned failure of an open, create or map.
    open_fault: Option<Planned>,
    /// Whether `syncfs` makes every file durable (false: it flushes nothing, as on FUSE).
    syncfs_flushes: bool,
    /// Where file syncs wait, if a test gates them.
    sync_gate: Option<Arc<GateInner>>,
    /// The gate of the next write, and how many bytes it lands before waiting there.
    write_gate: Option<(Arc<GateInner>, usize)>,
}

enum Op<'a> {
    Write(&'a [u8]),
    Sync,
    Other,
}

impl State {
    /// Decides whether a mutating operation may proceed. `Ok(None)`: go ahead.
    /// `Ok(Some(n))`: a write lands only its first `n` bytes, then fails. `Err`: fails.
    fn admit(&mut self, op: &Op<'_>) -> io::Result<Option<usize>> {
        self.stats.mutations += 1;
        match op {
            Op::Write(_) => self.stats.writes += 1,
            Op::Sync => self.stats.syncs += 1,
            Op::Other => {}
        }
        if self.powered_off {
            return Err(io::Error::other("simulated power cut: the disk is gone"));
        }
        if let Some(plan) = self.power_cut.as_mut() {
            if plan.countdown == 0 {
                self.powered_off = true;
                let tear = plan.tear_bytes;
                self.power_cut = None;
                return match (op, tear) {
                    (Op::Write(buf), Some(n)) => Ok(Some(torn_len(n, buf))),
                    _ => Err(io::Error::other("simulated power cut: the disk is gone")),
                };
            }
            plan.countdown -= 1;
        }
        let slot = match op {
            Op::Write(_) => &mut self.write_fault,
            Op::Sync => &mut self.sync_fault,
            Op::Other => return Ok(None),
        };
        if let Some(plan) = slot.as_mut() {
            if plan.countdown == 0 {
                let plan = *plan;
                *slot = None;
                return match (op, plan.tear_bytes) {
                    (Op::Write(buf), Some(n)) => {
                        // Signal a torn write through the error kind of the plan.
                        self.write_fault_pending_kind = Some(plan.kind);
                        Ok(Some(torn_len(n, buf)))
                    }
                    _ => Err(io::Error::new(plan.kind, "simulated I/O fault")),
                };
            }
            plan.countdown -= 1;
        }
        Ok(None)
    }

    /// Makes every live byte and name durable (what survives a killed process).
    fn keep_written(&mut self) {
        self.durable = self.live.clone();
        for inode in self.inodes.values_mut() {
            inode.durable = inode.live.clone();
        }
    }

    /// Counts an open, create or map and fails it if one is planned to fail now.
    fn admit_open(&mut self) -> io::Result<()> {
        self.stats.opens += 1;
        if let Some(plan) = self.open_fault.as_mut() {
            if plan.countdown == 0 {
                let kind = plan.kind;
                self.open_fault = None;
                return Err(io::Error::new(kind, "simulated failure to open"));
            }
            plan.countdown -= 1;
        }
        Ok(())
    }

    fn inode(&mut self, id: u64) -> io::Result<&mut Inode> {
        self.inodes
            .get_mut(&id)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "stale simulated inode"))
    }

    fn file_at(&self, path: &Path) -> io::Result<u64> {
        match self.live.get(path) {
            Some(Node::File(id)) => Ok(*id),
            Some(Node::Dir) => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{} is a directory", path.display()),
            )),
            None => Err(not_found(path)),
        }
    }
}

/// The bytes a torn write lands: at most `n`, and never the whole buffer (a write that
/// fails has not written everything).
fn torn_len(n: usize, buf: &[u8]) -> usize {
    n.min(buf.len().saturating_sub(1))
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

impl SimFs {
    /// A new, empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    /// A shareable handle to this disk as a [`FileSystem`].
    pub fn shared(&self) -> Arc<dyn FileSystem> {
        Arc::new(self.clone())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock is a bug in a test; keep going with the state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Operation counts so far.
    pub fn stats(&self) -> SimStats {
        self.lock().stats
    }

    /// The `n`th write from now (0 = the next) fails with `kind`; with `tear_bytes`, its
    /// first bytes land before it fails (never all of them: a failed write is incomplete).
    pub fn fail_nth_write(&self, n: u64, kind: io::ErrorKind, tear_bytes: Option<usize>) {
        self.lock().write_fault = Some(Planned {
            countdown: n,
            kind,
            tear_bytes,
        });
    }

    /// The `n`th sync from now (0 = the next) fails with `kind`.
    pub fn fail_nth_sync(&self, n: u64, kind: io::ErrorKind) {
        self.lock().sync_fault = Some(Planned {
            countdown: n,
            kind,
            tear_bytes: None,
        });
    }

    /// The `n`th open, create or map from now (0 = the next) fails with `kind` (EMFILE is
    /// `io::ErrorKind::Other` with its message; any kind will do).
    pub fn fail_nth_open(&self, n: u64, kind: io::ErrorKind) {
        self.lock().open_fault = Some(Planned {
            countdown: n,
            kind,
            tear_bytes: None,
        });
    }

    /// Whether `syncfs` makes every file's data durable (as on ext4, xfs or btrfs). Off
    /// by default: `syncfs` then succeeds and flushes nothing, as on a FUSE file system.
    pub fn set_syncfs_flushes(&self, flushes: bool) {
        self.lock().syncfs_flushes = flushes;
    }

    /// From now on every file sync (`sync_data`, `sync_filesystem`; not `sync_dir`) waits at
    /// the returned gate before it takes effect. Replaces an earlier sync gate.
    pub fn gate_syncs(&self) -> Gate {
        let (gate, inner) = Gate::new();
        self.lock().sync_gate = Some(inner);
        gate
    }

    /// The next write lands its first `land_first` bytes (visible to reads and to syncs),
    /// then waits at the returned gate; once released, the rest lands, unless the rest
    /// fails (a power cut or a planned fault meanwhile applies to it as to a new write).
    pub fn gate_next_write(&self, land_first: usize) -> Gate {
        let (gate, inner) = Gate::new();
        self.lock().write_gate = Some((inner, land_first));
        gate
    }

    /// While full, every write that would grow a file fails with `StorageFull` (ENOSPC).
    pub fn set_disk_full(&self, full: bool) {
        self.lock().disk_full = full;
    }

    /// Cancels planned faults (not a power cut already in effect).
    pub fn clear_faults(&self) {
        let mut s = self.lock();
        s.write_fault = None;
        s.sync_fault = None;
        s.open_fault = None;
        s.disk_full = false;
    }

    /// Lets `ops` more mutating operations succeed; the next one fails (a write lands its
    /// first `tear_bytes` bytes, if given, short of the whole write) and so does every one
    /// after it until [`crash`].
    ///
    /// [`crash`]: SimFs::crash
    pub fn power_cut_after(&self, ops: u64, tear_bytes: Option<usize>) {
        self.lock().power_cut = Some(Planned {
            countdown: ops,
            kind: io::ErrorKind::Other,
            tear_bytes,
        });
    }

    /// Makes every file sync take `delay` (outside the disk's lock), as a real disk would.
    pub fn set_sync_delay(&self, delay: std::time::Duration) {
        self.lock().sync_delay = delay;
    }

    /// Whether a power cut has happened and `crash` has not been called since.
    pub fn is_powered_off(&self) -> bool {
        self.lock().powered_off
    }

    /// Simulates the machine losing power and booting again: everything not durable is
    /// lost (see [`CrashMode`]). Planned faults are cleared and the disk works again.
    pub fn crash(&self, mode: CrashMode) {
        let mut s = self.lock();
        if mode == CrashMode::KeepWritten {
            s.keep_written();
        }
        let mut rng = match mode {
            CrashMode::DropUnsynced | CrashMode::KeepWritten => None,
            CrashMode::TornTail { seed } => Some(SplitMix(seed)),
        };
        s.live = s.durable.clone();
        let referenced: std::collections::HashSet<u64> = s
            .durable
            .values()
            .filter_map(|n| match n {
                Node::File(id) => Some(*id),
                Node::Dir => None,
            })
            .collect();
        s.inodes.retain(|id, _| referenced.contains(id));
        let mut ids: Vec<u64> = s.inodes.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let Some(inode) = s.inodes.get_mut(&id) else {
                continue;
            };
            let appended = inode.live.len() > inode.durable.len()
                && inode.live[..inode.durable.len()] == inode.durable[..];
            let mut survivor = inode.durable.clone();
            if let (true, Some(rng)) = (appended, rng.as_mut()) {
                let extra = inode.live.len() - inode.durable.len();
                let keep = (rng.next_u64() % (extra as u64 + 1)) as usize;
                survivor.extend_from_slice(&inode.live[inode.durable.len()..][..keep]);
            }
            inode.live = survivor.clone();
            inode.durable = survivor;
        }
        s.power_cut = None;
        s.powered_off = false;
        s.write_fault = None;
        s.sync_fault = None;
        s.open_fault = None;
        s.write_fault_pending_kind = None;
        s.dir_renames.clear();
    }

    /// The live bytes of a file, for tests that inspect or damage files.
    pub fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut s = self.lock();
        let id = s.file_at(path)?;
        Ok(s.inode(id)?.live.clone())
    }

    /// Replaces a file's bytes, live and durable, bypassing faults: damage done "between
    /// restarts", as a bad disk or an operator would.
    pub fn overwrite_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut s = self.lock();
        let id = s.file_at(path)?;
        let inode = s.inode(id)?;
        inode.live = bytes.to_vec();
        inode.durable = bytes.to_vec();
        Ok(())
    }
}

/// A small deterministic generator (SplitMix64) so the crate needs no `rand`.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next pseudo-random value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
}

#[derive(Debug)]
struct SimFile {
    fs: SimFs,
    id: u64,
}

struct SnapshotMapping(Vec<u8>);

impl Mapping for SnapshotMapping {
    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl SimFile {
    /// Waits at the sync gate, if any, then sleeps for the disk's sync delay, both outside
    /// its lock. The pass keeps the operation counted at the gate until it has taken effect.
    fn before_sync(&self) -> Option<GatePass> {
        let (gate, delay) = {
            let s = self.fs.lock();
            (s.sync_gate.clone(), s.sync_delay)
        };
        let pass = gate.map(|g| g.enter());
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        pass
    }

    /// Lands `buf[..land]` at `start` (growing the file with zeros if needed).
    fn land(s: &mut State, id: u64, start: usize, buf: &[u8]) -> io::Result<()> {
        let inode = s.inode(id)?;
        if inode.live.len() < start + buf.len() {
            inode.live.resize(start + buf.len(), 0);
        }
        inode.live[start..start + buf.len()].copy_from_slice(buf);
        Ok(())
    }

    /// The rest of a gated write, after its gate: it fails if the power went meanwhile or a
    /// fault is planned for it.
    fn land_rest(&self, start: usize, rest: &[u8]) -> io::Result<()> {
        let mut s = self.fs.lock();
        match s.admit(&Op::Write(rest))? {
            None => Self::land(&mut s, self.id, start, rest),
            Some(n) => {
                Self::land(&mut s, self.id, start, &rest[..n])?;
                let kind = s
                    .write_fault_pending_kind
                    .take()
                    .unwrap_or(io::ErrorKind::Other);
                Err(io::Error::new(kind, "simulated torn write"))
            }
        }
    }
}

impl FileHandle for SimFile {
    fn len(&self) -> io::Result<u64> {
        let mut s = self.fs.lock();
        Ok(s.inode(self.id)?.live.len() as u64)
    }

    fn read_exact_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut s = self.fs.lock();
        let live = &s.inode(self.id)?.live;
        let start = usize::try_from(pos).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let end = start
            .checked_add(buf.len())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        let src = live.get(start..end).ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write_all_at(&self, pos: u64, buf: &[u8]) -> io::Result<()> {
        let mut s = self.fs.lock();
        let torn = s.admit(&Op::Write(buf))?;
        let start = usize::try_from(pos).map_err(|_| io::ErrorKind::InvalidInput)?;
        let grows = start + buf.len() > s.inode(self.id)?.live.len();
        if grows && s.disk_full && torn.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "simulated disk full",
            ));
        }
        if torn.is_none() {
            if let Some((gate, first)) = s.write_gate.take() {
                let first = first.min(buf.len());
                Self::land(&mut s, self.id, start, &buf[..first])?;
                drop(s);
                let _pass = gate.enter();
                return self.land_rest(start + first, &buf[first..]);
            }
        }
        let land = torn.unwrap_or(buf.len());
        Self::land(&mut s, self.id, start, &buf[..land])?;
        if torn.is_some() {
            let kind = s
                .write_fault_pending_kind
                .take()
                .unwrap_or(io::ErrorKind::Other);
            return Err(io::Error::new(kind, "simulated torn write"));
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut s = self.fs.lock();
        s.admit(&Op::Other)?;
        let len = usize::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        s.inode(self.id)?.live.resize(len, 0);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let _pass = self.before_sync();
        let mut s = self.fs.lock();
        s.admit(&Op::Sync)?;
        let inode = s.inode(self.id)?;
        inode.durable = inode.live.clone();
        Ok(())
    }

    /// By default nothing becomes durable, as on a FUSE file system whose `syncfs` does not
    /// reach the file system below. With [`SimFs::set_syncfs_flushes`], every file's data
    /// becomes durable; directory entries do not (a real `syncfs` also syncs them, so the
    /// simulation stays the stricter of the two).
    fn sync_filesystem(&self) -> io::Result<()> {
        let _pass = self.before_sync();
        let mut s = self.fs.lock();
        s.admit(&Op::Sync)?;
        s.inode(self.id)?;
        if s.syncfs_flushes {
            for inode in s.inodes.values_mut() {
                inode.durable = inode.live.clone();
            }
        }
        Ok(())
    }

    fn map(&self, _len_min: u64) -> io::Result<Arc<dyn Mapping>> {
        let mut s = self.fs.lock();
        s.admit_open()?;
        Ok(Arc::new(SnapshotMapping(s.inode(self.id)?.live.clone())))
    }
}

/// Moves every entry at or below `from` to the same place below `to`; returns how many.
fn move_subtree(map: &mut BTreeMap<PathBuf, Node>, from: &Path, to: &Path) -> usize {
    let keys: Vec<PathBuf> = map
        .keys()
        .filter(|p| p.starts_with(from))
        .cloned()
        .collect();
    for key in &keys {
        if let (Some(node), Ok(rest)) = (map.remove(key), key.strip_prefix(from)) {
            let dest = if rest.as_os_str().is_empty() {
                to.to_path_buf()
            } else {
                to.join(rest)
            };
            map.insert(dest, node);
        }
    }
    keys.len()
}

fn parent_of(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new(""))
}

impl FileSystem for SimFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        for dir in path.ancestors() {
            if dir.as_os_str().is_empty() {
                continue;
            }
            match s.live.get(dir) {
                Some(Node::File(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} is a file", dir.display()),
                    ));
                }
                Some(Node::Dir) => {}
                None => {
                    s.live.insert(dir.to_path_buf(), Node::Dir);
                    s.durable.insert(dir.to_path_buf(), Node::Dir);
                }
            }
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let s = self.lock();
        if s.live.get(path) != Some(&Node::Dir) {
            return Err(not_found(path));
        }
        Ok(s.live
            .keys()
            .filter(|p| parent_of(p) == path)
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
            .collect())
    }

    fn exists(&self, path: &Path) -> bool {
        self.lock().live.contains_key(path)
    }

    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        let mut s = self.lock();
        if s.live.get(parent_of(path)) != Some(&Node::Dir) {
            return Err(not_found(parent_of(path)));
        }
        if s.live.contains_key(path) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", path.display()),
            ));
        }
        s.admit_open()?;
        s.admit(&Op::Other)?;
        let id = s.inode_next;
        s.inode_next += 1;
        s.inodes.insert(id, Inode::default());
        s.live.insert(path.to_path_buf(), Node::File(id));
        Ok(Arc::new(SimFile {
            fs: self.clone(),
            id,
        }))
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        let mut s = self.lock();
        let id = s.file_at(path)?;
        s.admit_open()?;
        Ok(Arc::new(SimFile {
            fs: self.clone(),
            id,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.lock();
        match s.live.get(from).copied() {
            None => Err(not_found(from)),
            Some(Node::File(id)) => {
                s.admit(&Op::Other)?;
                s.live.remove(from);
                s.live.insert(to.to_path_buf(), Node::File(id));
                Ok(())
            }
            Some(Node::Dir) => {
                if s.live.contains_key(to) {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} exists", to.display()),
                    ));
                }
                s.admit(&Op::Other)?;
                let moved = move_subtree(&mut s.live, from, to);
                debug_assert!(moved > 0);
                s.dir_renames.push((from.to_path_buf(), to.to_path_buf()));
                Ok(())
            }
        }
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.file_at(path)?;
        s.admit(&Op::Other)?;
        s.live.remove(path);
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        if s.live.get(path) != Some(&Node::Dir) {
            return Err(not_found(path));
        }
        s.admit(&Op::Other)?;
        s.live.retain(|p, _| !p.starts_with(path));
        Ok(())
    }

    fn fs_info(&self, _dir: &Path) -> io::Result<FsInfo> {
        let flushes = self.lock().syncfs_flushes;
        Ok(FsInfo {
            name: if flushes {
                "simfs"
            } else {
                "simfs (syncfs flushes nothing)"
            }
            .to_owned(),
            syncfs_flushes_data: flushes,
        })
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        if s.live.get(path) != Some(&Node::Dir) {
            return Err(not_found(path));
        }
        s.admit(&Op::Sync)?;
        // A renamed directory keeps its durable contents under its new name.
        let renames: Vec<(PathBuf, PathBuf)> = s
            .dir_renames
            .iter()
            .filter(|(from, to)| parent_of(from) == path || parent_of(to) == path)
            .cloned()
            .collect();
        s.dir_renames
            .retain(|(from, to)| parent_of(from) != path && parent_of(to) != path);
        for (from, to) in renames {
            move_subtree(&mut s.durable, &from, &to);
        }
        let live_children: Vec<(PathBuf, Node)> = s
            .live
            .iter()
            .filter(|(p, _)| parent_of(p) == path)
            .map(|(p, n)| (p.clone(), *n))
            .collect();
        let gone: Vec<PathBuf> = s
            .durable
            .keys()
            .filter(|p| parent_of(p) == path && !s.live.contains_key(*p))
            .cloned()
            .collect();
        for p in gone {
            // A removed directory takes its whole durable subtree with it.
            s.durable.retain(|q, _| !q.starts_with(&p));
        }
        for (p, n) in live_children {
            s.durable.insert(p, n);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
