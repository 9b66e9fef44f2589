#![allow(clippy::unwrap_used)]
//! The real `sluice` binary on a loopback port: start-up, the gRPC API, health,
//! reflection, graceful shutdown, restart, and refusals at start-up.
//!
//! Each server is started with `--grpc-listen 127.0.0.1:0` and a tempdir data dir; the
//! test learns the port from the `listening ... grpc_addr=IP:PORT` log line on standard
//! error. Every wait is bounded, and every server is killed if a test fails.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use sluice_proto::v1 as pb;
use sluice_proto::v1::sluice_client::SluiceClient;
use tonic::transport::Channel;

const START_TIMEOUT: Duration = Duration::from_secs(60);
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A running `sluice` and what it has logged so far.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    /// The thread copying standard error into `log`; it ends when the process has exited
    /// and every line is in `log`.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(data_dir: &Path) -> Server {
        let mut child = sluice()
            .args([
                "--grpc-listen",
                "127.0.0.1:0",
                "--kinesis-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let lines = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Keep the line before announcing it: whoever wakes on the announcement
                // may read the kept log at once.
                lines.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = grpc_addr(&line) {
                        let reader = Some(reader);
                        return Server {
                            child,
                            addr,
                            log,
                            reader,
                        };
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "sluice did not report its address: {:?}",
                        log.lock().unwrap()
                    );
                }
            }
        }
    }

    async fn client(&self) -> SluiceClient<Channel> {
        SluiceClient::new(self.channel().await)
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .connect()
            .await
            .unwrap()
    }

    /// Sends SIGTERM and waits for the exit.
    fn terminate(mut self) -> ExitStatus {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let status = wait_bounded(&mut self.child);
        // The process has exited, but its last lines may still be on their way through the
        // pipe: wait for the reader to reach the end before looking at the log.
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        let log = self.log.lock().unwrap().clone();
        assert!(
            log.iter().any(|l| l.contains("stopped")),
            "no clean stop in the log: {log:?}"
        );
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sluice() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command.env("SLUICE_LOG", "info");
    command
}

fn grpc_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.split("grpc_addr=").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

fn wait_bounded(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + EXIT_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sluice did not exit within {EXIT_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `sluice` with `args` to its exit; returns the status, stdout and stderr.
fn run_to_exit(command: &mut Command) -> (ExitStatus, String, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_bounded(&mut child);
    let output = child.wait_with_output().unwrap();
    (
        status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, f).await.unwrap()
}

fn trim_horizon() -> Option<pb::StartingPosition> {
    Some(pb::StartingPosition {
        r#type: pb::ShardIteratorType::TrimHorizon.into(),
        sequence_number: None,
        timestamp_ms: None,
    })
}

async fn create_active_stream(client: &mut SluiceClient<Channel>, name: &str) -> String {
    client
        .create_stream(pb::CreateStreamRequest {
            stream_name: name.into(),
            shard_count: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    loop {
        let described = client
            .describe_stream(pb::DescribeStreamRequest {
                stream_name: name.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .stream_description
            .unwrap();
        if described.stream_status() == pb::StreamStatus::Active {
            return described.shards[0].shard_id.clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn put_five(client: &mut SluiceClient<Channel>, stream: &str) -> Vec<String> {
    let mut sequence_numbers = Vec::new();
    for i in 1..=3 {
        let put = client
            .put_record(pb::PutRecordRequest {
                stream_name: stream.into(),
                partition_key: "key".into(),
                explicit_hash_key: None,
                data: format!("test{i}").into_bytes().into(),
            })
            .await
            .unwrap()
            .into_inner();
        sequence_numbers.push(put.sequence_number);
    }
    let batch = client
        .put_records(pb::PutRecordsRequest {
            stream_name: stream.into(),
            records: (4..=5)
                .map(|i| pb::PutRecordsRequestEntry {
                    partition_key: "key".into(),
                    explicit_hash_key: None,
                    data: format!("test{i}").into_bytes().into(),
                })
                .collect(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.failed_record_count, 0);
    sequence_numbers.extend(batch.records.into_iter().map(|r| r.sequence_number));
    sequence_numbers
}

/// Reads the whole shard from TRIM_HORIZON: (sequence number, data) pairs.
async fn read_all(
    client: &mut SluiceClient<Channel>,
    stream: &str,
    shard: &str,
) -> Vec<(String, String)> {
    let mut iterator = client
        .get_shard_iterator(pb::GetShardIteratorRequest {
            stream_name: stream.into(),
            shard_id: shard.into(),
            starting_position: trim_horizon(),
        })
        .await
        .unwrap()
        .into_inner()
        .shard_iterator;
    let mut records = Vec::new();
    loop {
        let page = client
            .get_records(pb::GetRecordsRequest {
                shard_iterator: iterator.clone(),
                limit: None,
            })
            .await
            .unwrap()
            .into_inner();
        let empty = page.records.is_empty();
        records.extend(page.records.into_iter().map(|r| {
            (
                r.sequence_number,
                String::from_utf8(r.data.to_vec()).unwrap(),
            )
        }));
        match page.next_shard_iterator {
            Some(next) if !(empty && page.millis_behind_latest == 0) => iterator = next,
            _ => return records,
        }
    }
}

fn expected(sequence_numbers: &[String]) -> Vec<(String, String)> {
    sequence_numbers
        .iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), format!("test{}", i + 1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_survive_a_graceful_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (shard, sequence_numbers) = bounded(async {
        let mut client = server.client().await;
        let shard = create_active_stream(&mut client, "walk").await;
        let sequence_numbers = put_five(&mut client, "walk").await;
        assert_eq!(
            read_all(&mut client, "walk", &shard).await,
            expected(&sequence_numbers)
        );
        (shard, sequence_numbers)
    })
    .await;
    assert_eq!(server.terminate().code(), Some(0));

    let server = Server::start(dir.path());
    bounded(async {
        let mut client = server.client().await;
        assert_eq!(
            read_all(&mut client, "walk", &shard).await,
            expected(&sequence_numbers)
        );
    })
    .await;
    assert_eq!(server.terminate().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_pushes_committed_records() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    bounded(async {
        let mut client = server.client().await;
        let shard = create_active_stream(&mut client, "live").await;
        let sequence_numbers = put_five(&mut client, "live").await;
        let mut events = client
            .subscribe(pb::SubscribeRequest {
                stream_name: "live".into(),
                shard_id: shard,
                starting_position: trim_horizon(),
            })
            .await
            .unwrap()
            .into_inner();
        let mut seen = Vec::new();
        while seen.len() < sequence_numbers.len() {
            let event = events.message().await.unwrap().unwrap();
            seen.extend(event.records.into_iter().map(|r| r.sequence_number));
        }
        assert_eq!(seen, sequence_numbers);
    })
    .await;
    // A live subscription must not hold up a graceful stop.
    assert_eq!(server.terminate().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_are_served() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    bounded(async {
        let channel = server.channel().await;
        let mut health = HealthClient::new(channel.clone());
        for service in ["", "sluice.v1.Sluice"] {
            let reply = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(reply.status(), ServingStatus::Serving, "{service:?}");
        }

        let mut reflection = ServerReflectionClient::new(channel);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut replies = reflection
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let reply = replies.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
            panic!("unexpected reflection reply {reply:?}");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        for name in [
            "sluice.v1.Sluice",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
        ] {
            assert!(
                names.iter().any(|n| n == name),
                "{name} missing from {names:?}"
            );
        }
    })
    .await;
    assert_eq!(server.terminate().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_the_kinesis_reason() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    bounded(async {
        let mut client = server.client().await;
        let status = client
            .describe_stream(pb::DescribeStreamRequest {
                stream_name: "absent".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert_eq!(
            status
                .metadata()
                .get("x-sluice-error")
                .unwrap()
                .to_str()
                .unwrap(),
            "ResourceNotFoundException"
        );
        assert!(
            status.message().starts_with("[ResourceNotFoundException] "),
            "{status:?}"
        );

        let status = client
            .get_records(pb::GetRecordsRequest {
                shard_iterator: "forged".into(),
                limit: None,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

        let status = client
            .get_shard_iterator(pb::GetShardIteratorRequest {
                stream_name: "absent".into(),
                shard_id: "shardId-000000000000".into(),
                starting_position: None,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    })
    .await;
    assert_eq!(server.terminate().code(), Some(0));
}

#[test]
fn an_unknown_config_key_stops_start_up_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, "[storage]\nsegment_sise_max = \"1MiB\"\n").unwrap();
    let (status, _, stderr) = run_to_exit(
        sluice()
            .arg("--config")
            .arg(&config)
            .args([
                "--grpc-listen",
                "127.0.0.1:0",
                "--kinesis-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(dir.path().join("data")),
    );
    assert!(!status.success(), "{status:?}");
    assert!(stderr.contains("segment_sise_max"), "{stderr}");
    assert!(
        !dir.path().join("data").exists(),
        "start-up went on after the bad key"
    );
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (status, _, stderr) = run_to_exit(
        sluice()
            .args(["--grpc-listen", &addr, "--data-dir"])
            .arg(dir.path()),
    );
    assert!(!status.success(), "{status:?}");
    assert!(
        stderr.contains(&format!("cannot listen for gRPC on {addr}")),
        "{stderr}"
    );
}

#[test]
fn an_unusable_data_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let (status, _, stderr) = run_to_exit(
        sluice()
            .args([
                "--grpc-listen",
                "127.0.0.1:0",
                "--kinesis-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(&file),
    );
    assert!(!status.success(), "{status:?}");
    assert!(stderr.contains("data directory"), "{stderr}");
}

#[test]
fn print_config_shows_environment_and_flags() {
    let (status, stdout, stderr) =
        run_to_exit(sluice().env("SLUICE_STORAGE_SYNC_MODE", "interval").args([
            "--grpc-listen",
            "127.0.0.1:5555",
            "--print-config",
        ]));
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("sync_mode = \"interval\""), "{stdout}");
    assert!(
        stdout.contains("grpc_listen = \"127.0.0.1:5555\""),
        "{stdout}"
    );
}
