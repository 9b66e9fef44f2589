//! What every end-to-end test shares: finding the real binaries, running a `sluice` server
//! on a loopback port with a tempdir data dir, running `sluice-cli`, and gRPC helpers
//! (create a stream, put, read a shard to its end, read a whole stream in lineage order).
//!
//! **Finding the binaries.** A test binary lives in `target/<profile>/deps/`; cargo puts
//! the workspace's binaries one level up, in `target/<profile>/`. `cargo test --workspace`
//! (what `tests/run.sh` runs) builds both `sluice` and `sluice-cli` there, because their
//! packages have integration tests. When a test is run alone (`cargo test -p
//! sluice-tests`), a binary may be missing or older than the sources; [`binary`] then
//! runs `cargo build -p sluice-server -p sluice-cli` once (cargo releases its build lock
//! before it runs tests, so this cannot deadlock). `CARGO_BIN_EXE_*` is not an option:
//! cargo sets it only for binaries of the package under test, and a bin-only package
//! cannot be a dependency.
//!
//! **Processes.** Every server is started with `--grpc-listen 127.0.0.1:0` and learns
//! its port from the `listening ... grpc_addr=IP:PORT` line the server logs on standard
//! error. [`Server`] kills its process on drop (and prints the server's log when the test
//! is failing); every wait is bounded; [`cli`] kills a `sluice-cli` that overruns.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

pub mod hostile;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant, SystemTime};

use sluice_proto::v1 as pb;
use sluice_proto::v1::sluice_client::SluiceClient;
use tonic::transport::Channel;

/// The longest a server may take to report its address.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest a process may take to exit once asked.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest one `sluice-cli` call may run.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a whole test may run.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(180);

/// The gRPC client type.
pub type Client = SluiceClient<Channel>;

/// The path of a workspace binary (`sluice` or `sluice-cli`), built if missing or stale.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let dir = profile_dir();
    BUILT.get_or_init(|| {
        let names = ["sluice", "sluice-cli"];
        let newest = newest_source_mtime();
        let fresh = |n: &str| mtime(&dir.join(n)).is_some_and(|m| m >= newest);
        if names.iter().all(|n| fresh(n)) {
            return;
        }
        let mut build = Command::new(env!("CARGO"));
        build.current_dir(workspace_root()).args([
            "build",
            "-p",
            "sluice-server",
            "-p",
            "sluice-cli",
        ]);
        if dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build.status().unwrap();
        assert!(status.success(), "building sluice and sluice-cli failed");
    });
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing", path.display());
    path
}

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs `body` on a multi-threaded runtime, bounded by [`TEST_TIMEOUT`].
pub fn run_async<T, F: std::future::Future<Output = T>>(body: F) -> T {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::time::timeout(TEST_TIMEOUT, body)
            .await
            .expect("the test ran past its time limit")
    })
}

/// A running `sluice` server; killed (SIGKILL) when dropped.
pub struct Server {
    child: Option<Child>,
    /// The bound gRPC address.
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    /// The data dir [`Server::start_temp`] made; removed after the process is killed.
    temp_dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts `sluice` on `data_dir` with the default configuration.
    pub fn start(data_dir: &Path) -> Server {
        Server::start_with_env(data_dir, &[])
    }

    /// Starts `sluice` on `data_dir` with extra `SLUICE_*` environment settings.
    pub fn start_with_env(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        Server::start_with_open_files(data_dir, env, None)
    }

    /// Starts `sluice` with extra settings on a temporary data dir that lives as long as
    /// the server, for tests that never look at the files.
    pub fn start_temp(env: &[(&str, &str)]) -> Server {
        Server::start_temp_with_open_files(env, None)
    }

    /// [`Server::start_temp`] with an open-files limit, as [`Server::start_with_open_files`].
    pub fn start_temp_with_open_files(env: &[(&str, &str)], open_files_max: Option<u64>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Server::start_with_open_files(dir.path(), env, open_files_max);
        server.temp_dir = Some(dir);
        server
    }

    /// Starts `sluice` with extra settings and, if given, an open-files limit (soft and
    /// hard, so the server cannot raise it).
    pub fn start_with_open_files(
        data_dir: &Path,
        env: &[(&str, &str)],
        open_files_max: Option<u64>,
    ) -> Server {
        let mut command = Command::new(binary("sluice"));
        if let Some(limit) = open_files_max {
            use std::os::unix::process::CommandExt as _;
            let limit = rustix::process::Rlimit {
                current: Some(limit),
                maximum: Some(limit),
            };
            // SAFETY: between fork and exec the closure only makes the setrlimit system
            // call, which is async-signal-safe, and allocates nothing.
            unsafe {
                command.pre_exec(move || {
                    rustix::process::setrlimit(rustix::process::Resource::Nofile, limit)
                        .map_err(std::io::Error::from)
                });
            }
        }
        command
            .args(["--grpc-listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("SLUICE_LOG", "info")
            // The Kinesis-compatible HTTP listener is not under test here; port 0 keeps
            // parallel tests from fighting over its default port.
            .env("SLUICE_KINESIS_LISTEN", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Keep the line before announcing it: whoever wakes on the announcement
                // may read the kept log at once.
                lines.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let mut server = Server {
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            temp_dir: None,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!("sluice did not report its address: {:?}", server.log())
            });
            if let Some(addr) = logged_addr(&line, "grpc_addr=") {
                server.addr = addr;
                return server;
            }
        }
    }

    /// The Kinesis listener's address, from the server's `listening` line.
    pub fn kinesis_addr(&self) -> SocketAddr {
        self.log()
            .iter()
            .find_map(|line| logged_addr(line, "kinesis_addr="))
            .expect("the server logs its Kinesis address")
    }

    /// `http://IP:PORT`, for `--endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A connected gRPC client with large message limits and a per-call timeout.
    pub async fn client(&self) -> Client {
        let channel = Channel::from_shared(self.endpoint())
            .unwrap()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .connect()
            .await
            .unwrap();
        SluiceClient::new(channel)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }

    /// Runs `sluice-cli --endpoint <this server>` with `args`.
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        cli(&self.endpoint(), args)
    }

    /// What the server has logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends SIGTERM and waits (bounded) for the exit.
    pub fn terminate(mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let pid = rustix::process::Pid::from_child(&child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        wait_bounded(&mut child, EXIT_TIMEOUT)
    }

    /// Sends SIGKILL (unless the process is dead already) and reaps the process.
    pub fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        let _ = child.kill();
        child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- sluice log ---\n{}", self.log().join("\n"));
        }
    }
}

/// The result of one `sluice-cli` run.
#[derive(Debug)]
pub struct CliOutput {
    /// The exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CliOutput {
    /// Standard output as JSON, after checking the command succeeded.
    pub fn json(&self) -> serde_json::Value {
        assert_eq!(self.code, Some(0), "sluice-cli failed: {self:?}");
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// Checks the command succeeded.
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code, Some(0), "sluice-cli failed: {self:?}");
        self
    }
}

/// A long-running `sluice-cli` (such as `tail`) whose stdout lines arrive on a channel;
/// killed when dropped.
pub struct CliProcess {
    child: Child,
    /// Standard output, one line per message.
    pub lines: mpsc::Receiver<String>,
}

impl CliProcess {
    /// Starts `sluice-cli --endpoint ENDPOINT ARGS...`.
    pub fn spawn(endpoint: &str, args: &[&str]) -> CliProcess {
        let mut child = Command::new(binary("sluice-cli"))
            .arg("--endpoint")
            .arg(endpoint)
            .args(args)
            .env_remove("SLUICE_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        CliProcess { child, lines }
    }

    /// The next `n` lines, waiting at most `timeout` in all.
    pub fn take_lines(&self, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = Vec::with_capacity(n);
        while lines.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(_) => panic!(
                    "only {} of {n} lines within {timeout:?}: {lines:?}",
                    lines.len()
                ),
            }
        }
        lines
    }

    /// Waits (bounded) for the exit.
    pub fn wait(mut self) -> ExitStatus {
        wait_bounded(&mut self.child, EXIT_TIMEOUT)
    }
}

impl Drop for CliProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `sluice-cli --endpoint ENDPOINT ARGS...`, killed after [`CLI_TIMEOUT`].
pub fn cli(endpoint: &str, args: &[&str]) -> CliOutput {
    let mut child = Command::new(binary("sluice-cli"))
        .arg("--endpoint")
        .arg(endpoint)
        .args(args)
        .env_remove("SLUICE_ENDPOINT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = read_in_background(child.stdout.take().unwrap());
    let stderr = read_in_background(child.stderr.take().unwrap());
    let status = wait_bounded(&mut child, CLI_TIMEOUT);
    CliOutput {
        code: status.code(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Waits for `child` to exit; kills it and panics after `timeout`.
pub fn wait_bounded(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process {} did not exit within {timeout:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Milliseconds since the epoch now.
pub fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

/// The reason (`ResourceNotFoundException`...) a status carries in `x-sluice-error`.
pub fn reason(status: &tonic::Status) -> Option<String> {
    status
        .metadata()
        .get("x-sluice-error")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Checks a failed call: its gRPC code, its reason in metadata and as message prefix.
pub fn assert_status(status: &tonic::Status, code: tonic::Code, reason_expected: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(
        reason(status).as_deref(),
        Some(reason_expected),
        "{status:?}"
    );
    let prefix = format!("[{reason_expected}] ");
    assert!(status.message().starts_with(&prefix), "{status:?}");
    assert!(
        status.message().len() > prefix.len(),
        "no message: {status:?}"
    );
}

/// Creates a stream and waits (bounded) until it is ACTIVE.
pub async fn create_active(client: &mut Client, stream_name: &str, shard_count: u32) {
    client
        .create_stream(pb::CreateStreamRequest {
            stream_name: stream_name.to_owned(),
            shard_count,
            ..Default::default()
        })
        .await
        .unwrap();
    wait_active(client, stream_name).await;
}

/// Waits (bounded) until a stream is ACTIVE.
pub async fn wait_active(client: &mut Client, stream_name: &str) {
    for _ in 0..600 {
        let description = client
            .describe_stream(pb::DescribeStreamRequest {
                stream_name: stream_name.to_owned(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .stream_description
            .unwrap();
        if description.stream_status == pb::StreamStatus::Active as i32 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{stream_name} did not become ACTIVE");
}

/// Puts one record; returns the shard and sequence number.
pub async fn put(
    client: &mut Client,
    stream_name: &str,
    key: &str,
    data: &[u8],
) -> pb::PutRecordResponse {
    client
        .put_record(pb::PutRecordRequest {
            stream_name: stream_name.to_owned(),
            partition_key: key.to_owned(),
            explicit_hash_key: None,
            data: data.to_vec().into(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// A starting position without a value.
pub fn position(kind: pb::ShardIteratorType) -> pb::StartingPosition {
    pb::StartingPosition {
        r#type: kind as i32,
        sequence_number: None,
        timestamp_ms: None,
    }
}

/// A shard iterator.
pub async fn iterator(
    client: &mut Client,
    stream_name: &str,
    shard_id: &str,
    position: pb::StartingPosition,
) -> Result<String, tonic::Status> {
    client
        .get_shard_iterator(pb::GetShardIteratorRequest {
            stream_name: stream_name.to_owned(),
            shard_id: shard_id.to_owned(),
            starting_position: Some(position),
        })
        .await
        .map(|r| r.into_inner().shard_iterator)
}

/// One GetRecords call.
pub async fn get(client: &mut Client, shard_iterator: &str) -> pb::GetRecordsResponse {
    client
        .get_records(pb::GetRecordsRequest {
            shard_iterator: shard_iterator.to_owned(),
            limit: None,
        })
        .await
        .unwrap()
        .into_inner()
}

/// A shard read from `position`: to its end if closed (then `children` is its
/// `ChildShards`), or until caught up if open.
pub struct ShardRead {
    /// The records, in order.
    pub records: Vec<pb::Record>,
    /// Whether the shard was read to its end (NextShardIterator absent).
    pub ended: bool,
    /// The children reported at the end.
    pub children: Vec<pb::ChildShard>,
}

/// Reads a shard from `position` to its end (closed) or until caught up (open).
pub async fn read_shard(
    client: &mut Client,
    stream_name: &str,
    shard_id: &str,
    position: pb::StartingPosition,
) -> ShardRead {
    let mut next = Some(
        iterator(client, stream_name, shard_id, position)
            .await
            .unwrap(),
    );
    let mut read = ShardRead {
        records: Vec::new(),
        ended: false,
        children: Vec::new(),
    };
    for _ in 0..100_000 {
        let Some(it) = next else {
            read.ended = true;
            return read;
        };
        let reply = get(client, &it).await;
        let empty = reply.records.is_empty();
        read.records.extend(reply.records);
        read.children.extend(reply.child_shards);
        next = reply.next_shard_iterator;
        if next.is_some() && empty && reply.millis_behind_latest == 0 {
            return read;
        }
    }
    panic!("{shard_id} was not read to its end in 100,000 calls");
}

/// Every shard of a stream, following pages.
pub async fn list_shards(client: &mut Client, stream_name: &str) -> Vec<pb::Shard> {
    let mut shards = Vec::new();
    let mut start = None;
    for _ in 0..1000 {
        let page = client
            .list_shards(pb::ListShardsRequest {
                stream_name: stream_name.to_owned(),
                exclusive_start_shard_id: start.take(),
                max_results: None,
            })
            .await
            .unwrap()
            .into_inner();
        shards.extend(page.shards);
        match page.next_exclusive_start_shard_id {
            Some(next) => start = Some(next),
            None => return shards,
        }
    }
    panic!("ListShards did not end");
}

/// The parents of a shard, from its description.
pub fn parents(shard: &pb::Shard) -> Vec<String> {
    [&shard.parent_shard_id, &shard.adjacent_parent_shard_id]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
}

/// Reads a whole stream as a Kinesis consumer must to keep per-key order: a shard only
/// after every parent was read to its end. Checks that each closed shard ends with
/// `ChildShards` that agree with ListShards. Returns `(shard id, record)` in read order.
pub async fn read_in_lineage_order(
    client: &mut Client,
    stream_name: &str,
) -> Vec<(String, pb::Record)> {
    let shards = list_shards(client, stream_name).await;
    let lineage: BTreeMap<String, Vec<String>> = shards
        .iter()
        .map(|s| (s.shard_id.clone(), parents(s)))
        .collect();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    while done.len() < lineage.len() {
        let next = lineage
            .iter()
            .find(|(id, ps)| {
                !done.contains(*id)
                    && ps
                        .iter()
                        .all(|p| done.contains(p) || !lineage.contains_key(p))
            })
            .map(|(id, _)| id.clone())
            .expect("a shard's parents can always be read first");
        let trim_horizon = position(pb::ShardIteratorType::TrimHorizon);
        let read = read_shard(client, stream_name, &next, trim_horizon).await;
        let expected_children: BTreeSet<&String> = lineage
            .iter()
            .filter(|(_, ps)| ps.contains(&next))
            .map(|(id, _)| id)
            .collect();
        let children: BTreeSet<&String> = read.children.iter().map(|c| &c.shard_id).collect();
        assert_eq!(read.ended, !expected_children.is_empty(), "{next}");
        assert_eq!(children, expected_children, "ChildShards of {next}");
        out.extend(read.records.into_iter().map(|r| (next.clone(), r)));
        done.insert(next);
    }
    out
}

/// Starts reading a pipe to its end on a thread.
fn read_in_background(
    mut pipe: impl std::io::Read + Send + 'static,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// The address after `key` (`grpc_addr=`, `kinesis_addr=`) in the server's
/// `listening ... grpc_addr=IP:PORT kinesis_addr=IP:PORT` line.
fn logged_addr(line: &str, key: &str) -> Option<SocketAddr> {
    let rest = line.split(key).nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// `target/<profile>`: the parent of the `deps` directory holding this test binary.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    deps.parent().unwrap().to_path_buf()
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time of the sources the binaries are built from.
fn newest_source_mtime() -> SystemTime {
    let root = workspace_root();
    let mut newest = mtime(&root.join("Cargo.lock")).unwrap_or(SystemTime::UNIX_EPOCH);
    let mut pending = vec![root.join("crates"), root.join("proto")];
    // The walk is bounded by the size of the source tree; `target` is never inside it.
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() && name != "target" && name != "tests" {
                pending.push(path);
            } else if let Some(m) = mtime(&path) {
                let source = path
                    .extension()
                    .is_some_and(|e| e == "rs" || e == "proto" || e == "toml");
                if source && m > newest {
                    newest = m;
                }
            }
        }
    }
    newest
}
