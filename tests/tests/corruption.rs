#![allow(clippy::unwrap_used)]
//! Damage on disk between restarts of the real server: flipped bytes, zeroed ranges and
//! truncations in sealed and active segments, their indexes, the recovery point and the
//! metadata journal and snapshot of a stopped `sluice`'s data directory; then start it.
//!
//! What must hold: start-up never panics (it either starts or exits with a clean error
//! naming the damaged file and offset); no damaged byte is ever returned as a record (every
//! record read is one that was acknowledged, byte for byte, at its sequence number); damage
//! to an index or a recovery point loses nothing (they are rebuilt from the log); and when
//! acknowledged records are lost, the log names the damaged file and where the damage is.
//! Damage never leads to a sequence number given twice (issue 22, item 13): new records are
//! numbered above every acknowledged one, the damaged bytes are set aside in `lost+found`,
//! reads step over the lost numbers, and `sluice --repair` sets a damaged sealed segment
//! aside and starts where a plain start refuses.
//!
//! Seeded: `SLUICE_SEED` picks the offsets; it is printed in every failure.

mod support;

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use sluice_proto::v1 as pb;
use sluice_storage::SplitMix;
use support::{Client, Server};

/// Small segments and index intervals, so the data directory has sealed segments with
/// real indexes, an active segment and a recovery point in every shard.
const ENV: &[(&str, &str)] = &[
    ("SLUICE_STORAGE_SEGMENT_SIZE_MAX", "4KiB"),
    ("SLUICE_STORAGE_INDEX_INTERVAL", "256B"),
    ("SLUICE_STORAGE_CHECKPOINT_INTERVAL", "2KiB"),
    ("SLUICE_STORAGE_SEGMENT_AGE_MAX", "never"),
    ("SLUICE_STORAGE_JOURNAL_COMPACT_SIZE", "1KiB"),
];

/// Acknowledged records: data -> (shard id, sequence number).
type Acked = HashMap<Vec<u8>, (String, String)>;

#[derive(Debug, Clone, Copy)]
enum Damage {
    Flip,
    Zero,
    Truncate,
}

/// Writes the pristine data directory: two shards, a split, a few hundred records.
fn pristine(dir: &Path) -> Acked {
    let server = Server::start_with_env(dir, ENV);
    let mut acked = Acked::new();
    support::run_async(async {
        let mut client = server.client().await;
        support::create_active(&mut client, "c", 2).await;
        for i in 0..240u32 {
            if i == 120 {
                client
                    .split_shard(pb::SplitShardRequest {
                        stream_name: "c".into(),
                        shard_to_split: "shardId-000000000000".into(),
                        new_starting_hash_key: "85070591730234615865843651857942052864".into(),
                    })
                    .await
                    .unwrap();
                support::wait_active(&mut client, "c").await;
            }
            let data = format!("record-{i:04}-{}", "x".repeat((i % 97) as usize));
            let reply =
                support::put(&mut client, "c", &format!("key-{}", i % 7), data.as_bytes()).await;
            acked.insert(data.into_bytes(), (reply.shard_id, reply.sequence_number));
        }
    });
    assert!(server.terminate().success());
    acked
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Every file of the data directory that holds records or metadata, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if !["LOCK", "iterator.key", "consumers.json"]
                .iter()
                .any(|n| path.ends_with(n))
            {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The bytes of every segment log start-up set aside under `lost+found/`.
fn lost_found_bytes(dir: &Path) -> Vec<u8> {
    let root = dir.join("lost+found");
    if !root.exists() {
        return Vec::new();
    }
    files(&root)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .flat_map(|p| std::fs::read(p).unwrap())
        .collect()
}

/// Damages `path` at a seeded offset; returns the offset.
fn damage(path: &Path, how: Damage, rng: &mut SplitMix) -> u64 {
    let mut bytes = std::fs::read(path).unwrap();
    if bytes.is_empty() {
        return 0;
    }
    let at = rng.below(bytes.len() as u64) as usize;
    match how {
        Damage::Flip => bytes[at] ^= 1 << rng.below(8),
        Damage::Zero => {
            let end = (at + 1 + rng.below(64) as usize).min(bytes.len());
            bytes[at..end].fill(0);
        }
        Damage::Truncate => bytes.truncate(at),
    }
    std::fs::write(path, bytes).unwrap();
    at as u64
}

/// A server started on a damaged directory; killed on drop.
struct Running {
    child: std::process::Child,
    addr: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The log once a line mentions `text`, or after `timeout` whatever it holds.
    fn log_mentions(&self, text: &str, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if log.iter().any(|l| l.contains(text)) || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    async fn client(&self) -> Client {
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .timeout(Duration::from_secs(30))
            .connect()
            .await
            .unwrap();
        pb::sluice_client::SluiceClient::new(channel)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a start on a damaged directory went.
enum Start {
    Up(Running),
    Failed { code: Option<i32>, log: Vec<String> },
}

/// Starts `sluice` on `dir`; a start-up failure is an outcome, not a panic.
fn start(dir: &Path) -> Start {
    start_with(dir, ENV, &[])
}

/// [`start`] with other settings and extra command-line arguments.
fn start_with(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Start {
    let mut child = Command::new(support::binary("sluice"))
        .args(["--grpc-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(args)
        .envs(env.iter().copied())
        .env("SLUICE_LOG", "info")
        .env("SLUICE_KINESIS_LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let lines = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            lines.lock().unwrap().push(line.clone());
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + support::START_TIMEOUT;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                if let Some(addr) = line.split("grpc_addr=").nth(1) {
                    let addr = addr.split_whitespace().next().unwrap().to_owned();
                    return Start::Up(Running { child, addr, log });
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = support::wait_bounded(&mut child, support::EXIT_TIMEOUT);
                let log = log.lock().unwrap().clone();
                return Start::Failed {
                    code: status.code(),
                    log,
                };
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!(
                    "sluice hung during start-up on a damaged directory: {:?}",
                    log.lock().unwrap()
                );
            }
        }
    }
}

/// Reads every shard from its start; a read that fails is reported, not fatal.
async fn read_everything(client: &mut Client) -> (Vec<(String, pb::Record)>, Vec<String>) {
    let mut records = Vec::new();
    let mut errors = Vec::new();
    let Ok(shards) = client
        .list_shards(pb::ListShardsRequest {
            stream_name: "c".into(),
            ..Default::default()
        })
        .await
    else {
        return (records, vec!["ListShards failed".into()]);
    };
    for shard in shards.into_inner().shards {
        let position = support::position(pb::ShardIteratorType::TrimHorizon);
        let first = match support::iterator(client, "c", &shard.shard_id, position).await {
            Ok(it) => Some(it),
            Err(e) => {
                errors.push(e.message().to_owned());
                None
            }
        };
        read_from(client, &shard.shard_id, first, &mut records, &mut errors).await;
    }
    (records, errors)
}

/// Reads `shard` from the iterator `first` (if any) until it has caught up, adding the
/// records to `records` and the messages of failed reads to `errors`.
async fn read_from(
    client: &mut Client,
    shard: &str,
    first: Option<String>,
    records: &mut Vec<(String, pb::Record)>,
    errors: &mut Vec<String>,
) {
    let mut next = first;
    for _ in 0..10_000 {
        let Some(shard_iterator) = next.take() else {
            break;
        };
        let request = pb::GetRecordsRequest {
            shard_iterator,
            limit: Some(1000),
        };
        match client.get_records(request).await {
            Ok(reply) => {
                let reply = reply.into_inner();
                let caught_up = reply.records.is_empty() && reply.millis_behind_latest == 0;
                records.extend(reply.records.into_iter().map(|r| (shard.to_owned(), r)));
                if !caught_up {
                    next = reply.next_shard_iterator;
                }
            }
            Err(e) => errors.push(e.message().to_owned()),
        }
    }
}

#[test]
fn damaged_data_directories_never_panic_or_return_damaged_records() {
    let seed = std::env::var("SLUICE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7u64);
    let mut rng = SplitMix(seed);
    let root = tempfile::tempdir().unwrap();
    let clean = root.path().join("clean");
    let acked = pristine(&clean);
    let targets = files(&clean);
    let kinds = [
        ".log",
        ".sidx",
        ".tidx",
        "checkpoint",
        "journal",
        "snapshot",
    ];
    let mut cases = 0;
    for (case, how) in [Damage::Flip, Damage::Zero, Damage::Truncate]
        .into_iter()
        .cycle()
        .take(3 * kinds.len())
        .enumerate()
    {
        let kind = kinds[case / 3];
        let candidates: Vec<&PathBuf> = targets
            .iter()
            .filter(|p| p.to_string_lossy().ends_with(kind))
            .collect();
        let Some(original) = candidates.get(rng.below(candidates.len() as u64) as usize) else {
            continue;
        };
        let dir = root.path().join(format!("case-{case}"));
        copy_dir(&clean, &dir);
        let path = dir.join(original.strip_prefix(&clean).unwrap());
        let at = damage(&path, how, &mut rng);
        // The shard directory (or `meta`) and the file name: enough to tell this file from
        // every other in the log.
        let components: Vec<String> = path
            .components()
            .rev()
            .take(2)
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let name = format!("{}/{}", components[1], components[0]);
        let ctx = format!("seed {seed}: {how:?} at {at} in {}", path.display());
        cases += 1;
        match start(&dir) {
            Start::Failed { code, log } => {
                let text = log.join("\n");
                assert!(
                    !text.contains("panicked"),
                    "{ctx}: start-up panicked:\n{text}"
                );
                assert!(
                    code.is_some_and(|c| c != 0 && c != 101),
                    "{ctx}: exit {code:?}"
                );
                assert!(
                    text.contains(&name),
                    "{ctx}: the error does not name the file:\n{text}"
                );
                eprintln!("{ctx}: refused to start (exit {code:?})");
            }
            Start::Up(server) => {
                let (records, errors) = support::run_async(async {
                    let mut client = server.client().await;
                    read_everything(&mut client).await
                });
                for (shard, r) in &records {
                    let known = acked.get(&r.data[..]);
                    assert_eq!(
                        known,
                        Some(&(shard.clone(), r.sequence_number.clone())),
                        "{ctx}: returned a record that was not acknowledged there: {:?}",
                        String::from_utf8_lossy(&r.data)
                    );
                }
                let lost = acked.len() - records.len();
                let rebuildable = [".sidx", ".tidx", "checkpoint"]
                    .iter()
                    .any(|k| name.ends_with(k));
                if rebuildable {
                    assert_eq!(
                        lost, 0,
                        "{ctx}: a damaged index or recovery point lost records: {errors:?}"
                    );
                }
                if lost > 0 {
                    // The report may be logged while the reads ran: unless a read error
                    // names the file, wait (bounded) for the line to come through the pipe
                    // before judging.
                    let logged = if errors.iter().any(|e| e.contains(&name)) {
                        server.log()
                    } else {
                        server.log_mentions(&name, Duration::from_secs(10))
                    };
                    let text = format!("{}\n{}", logged.join("\n"), errors.join("\n"));
                    assert!(
                        text.contains(&name),
                        "{ctx}: {lost} records lost, damage not reported:\n{text}"
                    );
                }
                if lost > 0 && name.starts_with("meta/") {
                    // Metadata damage may hide shards, never delete them: every record no
                    // longer served is still on disk, set aside in lost+found.
                    let kept = lost_found_bytes(&dir);
                    let served: std::collections::HashSet<&[u8]> =
                        records.iter().map(|(_, r)| &r.data[..]).collect();
                    for data in acked.keys().filter(|d| !served.contains(&d[..])) {
                        assert!(
                            kept.windows(data.len()).any(|w| w == &data[..]),
                            "{ctx}: {} neither served nor in lost+found",
                            String::from_utf8_lossy(data)
                        );
                    }
                }
                eprintln!(
                    "{ctx}: started, {} records readable, {lost} lost, {} read errors",
                    records.len(),
                    errors.len()
                );
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(cases >= 12, "only {cases} damage cases ran");
}

/// Sequence numbers compare as the integers they spell.
fn seq_key(seq: &str) -> (usize, &str) {
    (seq.len(), seq)
}

/// Puts `n` records of about 200 bytes into stream `stream`; returns data -> number.
fn put_many(server: &Server, stream: &str, shards: u32, n: u32, tag: &str) -> Acked {
    support::run_async(async {
        let mut client = server.client().await;
        if shards > 0 {
            support::create_active(&mut client, stream, shards).await;
        }
        let mut acked = Acked::new();
        for i in 0..n {
            let data = format!("{tag}-{i:05}-{}", "y".repeat(180));
            let reply = support::put(&mut client, stream, "k", data.as_bytes()).await;
            acked.insert(data.into_bytes(), (reply.shard_id, reply.sequence_number));
        }
        acked
    })
}

/// The segment logs of shard 0 of the data directory's only stream, oldest first.
fn shard0_segments(dir: &Path) -> Vec<PathBuf> {
    files(&dir.join("streams"))
        .into_iter()
        .filter(|p| {
            p.to_string_lossy().contains("shardId-000000000000")
                && p.extension().is_some_and(|e| e == "log")
        })
        .collect()
}

/// Every `.damaged` file set aside under `lost+found/`.
fn set_aside(dir: &Path) -> Vec<PathBuf> {
    let root = dir.join("lost+found");
    if !root.exists() {
        return Vec::new();
    }
    files(&root)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "damaged"))
        .collect()
}

/// Reads the stream; every record must be one acknowledged at its number, with no read
/// error. Returns the numbers read.
fn read_known(server: &Running, acked: &Acked, ctx: &str) -> Vec<String> {
    let (records, errors) = support::run_async(async {
        let mut client = server.client().await;
        read_everything_of(&mut client, "d").await
    });
    assert!(errors.is_empty(), "{ctx}: read errors {errors:?}");
    for (shard, r) in &records {
        assert_eq!(
            acked.get(&r.data[..]),
            Some(&(shard.clone(), r.sequence_number.clone())),
            "{ctx}: a record read is not the one acknowledged at its number"
        );
    }
    records
        .into_iter()
        .map(|(_, r)| r.sequence_number)
        .collect()
}

async fn read_everything_of(
    client: &mut Client,
    stream: &str,
) -> (Vec<(String, pb::Record)>, Vec<String>) {
    let shard = "shardId-000000000000";
    let position = support::position(pb::ShardIteratorType::TrimHorizon);
    let mut records = Vec::new();
    let mut errors = Vec::new();
    let first = support::iterator(client, stream, shard, position)
        .await
        .ok();
    read_from(client, shard, first, &mut records, &mut errors).await;
    (records, errors)
}

/// Puts `n` more records and checks each is numbered above every acknowledged one.
fn put_above(server: &Running, acked: &mut Acked, n: u32, ctx: &str) {
    let top = acked
        .values()
        .map(|(_, s)| s.clone())
        .max_by(|a, b| seq_key(a).cmp(&seq_key(b)));
    let top = top.unwrap();
    support::run_async(async {
        let mut client = server.client().await;
        for i in 0..n {
            let data = format!("{ctx}-after-{i}");
            let reply = support::put(&mut client, "d", "k", data.as_bytes()).await;
            assert!(
                seq_key(&reply.sequence_number) > seq_key(&top),
                "{ctx}: new record numbered {} at or below acknowledged {top}",
                reply.sequence_number
            );
            acked.insert(data.into_bytes(), (reply.shard_id, reply.sequence_number));
        }
    });
}

/// Issue 22, item 13: a flipped byte inside the active segment made recovery drop the
/// acknowledged records after it and give their numbers to new records.
#[test]
fn damage_in_an_active_segment_never_gives_a_number_twice() {
    const ACTIVE: &[(&str, &str)] = &[
        ("SLUICE_STORAGE_SEGMENT_SIZE_MAX", "1MiB"),
        ("SLUICE_STORAGE_INDEX_INTERVAL", "256B"),
        ("SLUICE_STORAGE_CHECKPOINT_INTERVAL", "16MiB"),
        ("SLUICE_STORAGE_SEGMENT_AGE_MAX", "never"),
    ];
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let server = Server::start_with_env(&dir, ACTIVE);
    let mut acked = put_many(&server, "d", 1, 200, "active");
    // Killed, so the newest recovery point is far behind and recovery reads the damage.
    server.kill();
    let active = shard0_segments(&dir).pop().unwrap();
    let bytes = std::fs::read(&active).unwrap();
    let at = bytes.len() / 2;
    let mut damaged = bytes.clone();
    damaged[at] ^= 0x20;
    std::fs::write(&active, &damaged).unwrap();
    let Start::Up(server) = start_with(&dir, ACTIVE, &[]) else {
        panic!("did not start after damage in the active segment");
    };
    let log = server.log().join("\n");
    assert!(log.contains("damage in the active segment"), "{log}");
    assert!(log.contains(&active.file_name().unwrap().to_string_lossy().into_owned()));
    let read = read_known(&server, &acked, "after damage");
    assert!(
        read.len() < 200 && !read.is_empty(),
        "{} records read",
        read.len()
    );
    // Every lost record is in the bytes set aside, but the one the flip hit.
    let aside: Vec<u8> = set_aside(&dir)
        .iter()
        .flat_map(|p| std::fs::read(p).unwrap())
        .collect();
    let lost: Vec<&Vec<u8>> = acked
        .iter()
        .filter(|(_, (_, seq))| !read.contains(seq))
        .map(|(data, _)| data)
        .collect();
    let kept = lost
        .iter()
        .filter(|d| aside.windows(d.len()).any(|w| w == &d[..]))
        .count();
    assert!(
        kept + 1 >= lost.len(),
        "{kept} of {} lost records set aside",
        lost.len()
    );
    let lost = lost.len();
    put_above(&server, &mut acked, 10, "active");
    let read = read_known(&server, &acked, "after new puts");
    assert_eq!(read.len(), 200 - lost + 10);
    drop(server);
    let Start::Up(server) = start_with(&dir, ACTIVE, &[]) else {
        panic!("did not restart");
    };
    assert_eq!(
        read_known(&server, &acked, "after a restart").len(),
        read.len()
    );
}

/// Issue 22, item 13: a damaged sealed segment stopped start-up with a clean error and no
/// way forward but deleting files by hand. `sluice --repair` sets it aside and starts.
#[test]
fn repair_sets_damaged_sealed_segments_aside_and_starts() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let server = Server::start_with_env(&dir, ENV);
    let mut acked = put_many(&server, "d", 1, 300, "sealed");
    assert!(server.terminate().success());
    let segments = shard0_segments(&dir);
    assert!(segments.len() > 8, "{} segments", segments.len());
    // One sealed segment loses its header and its indexes: start-up cannot describe it.
    let header_hit = segments[2].clone();
    let mut bytes = std::fs::read(&header_hit).unwrap();
    bytes[3] ^= 0xff;
    std::fs::write(&header_hit, &bytes).unwrap();
    for ext in ["sidx", "tidx"] {
        std::fs::remove_file(header_hit.with_extension(ext)).unwrap();
    }
    // Another gets a flipped byte in a record: start-up succeeds, reads fail there.
    let record_hit = segments[5].clone();
    let mut bytes = std::fs::read(&record_hit).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&record_hit, &bytes).unwrap();
    let name = header_hit
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    match start_with(&dir, ENV, &[]) {
        Start::Failed { code, log } => {
            let text = log.join("\n");
            assert_eq!(code, Some(1), "{text}");
            assert!(
                text.contains(&name),
                "the error does not name the file: {text}"
            );
            assert!(
                text.contains("--repair"),
                "the error does not say what to do: {text}"
            );
        }
        Start::Up(_) => panic!("started on a sealed segment without a header"),
    }
    let Start::Up(server) = start_with(&dir, ENV, &["--repair"]) else {
        panic!("--repair did not start");
    };
    let log = server.log().join("\n");
    assert_eq!(
        log.matches("repair: sealed segment damaged").count(),
        2,
        "{log}"
    );
    assert_eq!(set_aside(&dir).len(), 2, "{:?}", set_aside(&dir));
    let read = read_known(&server, &acked, "after --repair");
    assert!(
        read.len() < 300 && read.len() > 250,
        "{} records read",
        read.len()
    );
    put_above(&server, &mut acked, 10, "repaired");
    assert!(server_stop(server));
    let Start::Up(server) = start_with(&dir, ENV, &[]) else {
        panic!("did not start after the repair");
    };
    assert_eq!(
        read_known(&server, &acked, "after a plain restart").len(),
        read.len() + 10
    );
}

/// Stops a server started by `start_with` with SIGTERM; true on exit status 0.
fn server_stop(mut server: Running) -> bool {
    let pid = rustix::process::Pid::from_child(&server.child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    support::wait_bounded(&mut server.child, support::EXIT_TIMEOUT).success()
}
