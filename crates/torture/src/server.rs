//! Process control: start the real `sluice` on loopback ports with the torture settings,
//! learn its gRPC address from its log, and kill it with SIGKILL.
//!
//! Every wait is bounded. The server's standard error is kept (the last lines) so a
//! failure to restart can show why.

use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use sluice_proto::v1::sluice_client::SluiceClient;
use tonic::transport::{Channel, Endpoint};

/// The gRPC client type.
pub type Client = SluiceClient<Channel>;

/// The longest a server may take to report its address.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Log lines kept per server process.
const LOG_LINES_KEPT: usize = 200;

/// The settings that make every crash window frequent: tiny segments (a roll every few
/// puts), age-based rolls and maintenance (retention) many times a second, frequent
/// recovery points, a journal compacted at almost every change, and no daily cap on
/// resharding.
pub const TORTURE_ENV: &[(&str, &str)] = &[
    ("SLUICE_KINESIS_LISTEN", "127.0.0.1:0"),
    ("SLUICE_LOG", "info"),
    ("SLUICE_STORAGE_SEGMENT_SIZE_MAX", "4KiB"),
    ("SLUICE_STORAGE_SEGMENT_AGE_MAX", "50ms"),
    ("SLUICE_STORAGE_CHECKPOINT_INTERVAL", "8KiB"),
    ("SLUICE_STORAGE_INDEX_INTERVAL", "256B"),
    ("SLUICE_STORAGE_JOURNAL_COMPACT_SIZE", "1KiB"),
    ("SLUICE_BROKER_MAINTENANCE_INTERVAL", "10ms"),
    ("SLUICE_LIMITS_SHARD_COUNT_UPDATES_PER_DAY_MAX", "1000000"),
];

/// A running `sluice` process; killed (SIGKILL) when dropped.
pub struct Server {
    child: Option<Child>,
    /// The bound gRPC address, once reported.
    pub addr: Option<SocketAddr>,
    log: Arc<Mutex<VecDeque<String>>>,
    lines: mpsc::Receiver<String>,
}

impl Server {
    /// Spawns `binary` on `data_dir` without waiting for it to be ready.
    pub fn spawn(binary: &Path, data_dir: &Path) -> std::io::Result<Server> {
        let mut command = Command::new(binary);
        command
            .args(["--grpc-listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .envs(TORTURE_ENV.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn()?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, lines) = mpsc::channel();
        if let Some(stderr) = child.stderr.take() {
            let keep = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    // Keep the line before announcing it: whoever wakes on the
                    // announcement may read the kept log at once.
                    {
                        let mut kept = keep.lock().unwrap_or_else(|e| e.into_inner());
                        if kept.len() == LOG_LINES_KEPT {
                            kept.pop_front();
                        }
                        kept.push_back(line.clone());
                    }
                    let _ = tx.send(line);
                }
            });
        }
        Ok(Server {
            child: Some(child),
            addr: None,
            log,
            lines,
        })
    }

    /// Waits until the server logs its gRPC address; an error if it exits or takes longer
    /// than the start timeout.
    pub fn wait_ready(&mut self) -> Result<SocketAddr, String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = grpc_addr(&line) {
                        self.addr = Some(addr);
                        return Ok(addr);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!("no address within {START_TIMEOUT:?}"));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.as_mut().map(|c| c.wait());
                    return Err(format!("the server exited during start-up: {status:?}"));
                }
            }
        }
    }

    /// A client of the running server with a per-call timeout.
    pub async fn client(&self) -> Result<Client, String> {
        let addr = self.addr.ok_or("the server has no address yet")?;
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(20))
            .connect()
            .await
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        Ok(SluiceClient::new(channel)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20))
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The last lines the server logged.
    pub fn log_tail(&self) -> Vec<String> {
        let kept = self.log.lock().unwrap_or_else(|e| e.into_inner());
        kept.iter().cloned().collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The address in a `listening grpc_addr=IP:PORT kinesis_addr=...` line.
fn grpc_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.split("grpc_addr=").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// The data directory: the one given, or a fresh one under the system temp directory.
pub fn data_dir(given: Option<PathBuf>, seed: u64) -> std::io::Result<PathBuf> {
    let dir = match given {
        Some(dir) => dir,
        None => {
            std::env::temp_dir().join(format!("sluice-torture-{}-{seed:016x}", std::process::id()))
        }
    };
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_read_from_the_listening_line() {
        let line = "INFO sluice: listening grpc_addr=127.0.0.1:4567 kinesis_addr=127.0.0.1:4568";
        assert_eq!(
            grpc_addr(line),
            Some(SocketAddr::from(([127, 0, 0, 1], 4567)))
        );
        assert_eq!(grpc_addr("starting"), None);
    }
}
