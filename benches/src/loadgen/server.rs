//! Starting the server under test: `sluice` on loopback port 0 with a data directory (a
//! temporary one unless given), its addresses read from the `listening` log line, its log
//! kept in `server.log` beside the data. Also reads a process's resident memory and open
//! file descriptors from `/proc`, for the many-shards run.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

/// How long a spawned server may take to log its addresses.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

/// A running `sluice` process, killed on drop.
pub struct Spawned {
    child: Child,
    /// The gRPC endpoint, `http://127.0.0.1:PORT`.
    pub grpc: String,
    /// The Kinesis endpoint, `http://127.0.0.1:PORT`.
    pub kinesis: String,
    /// From spawn to the `listening` line.
    pub startup: Duration,
}

impl Spawned {
    /// Starts `bin` on `data_dir` with extra `env` (`KEY=VALUE`), and waits for it to listen.
    pub fn start(bin: &Path, data_dir: &Path, env: &[String]) -> Result<Spawned> {
        let log_path = data_dir
            .parent()
            .unwrap_or(data_dir)
            .join(format!("{}.server.log", dir_name(data_dir)));
        let mut cmd = Command::new(bin);
        cmd.arg("--data-dir")
            .arg(data_dir)
            .args([
                "--grpc-listen",
                "127.0.0.1:0",
                "--kinesis-listen",
                "127.0.0.1:0",
            ])
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for kv in env {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow!("--server-env takes KEY=VALUE, not {kv}"))?;
            cmd.env(k, v);
        }
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow!("no stderr pipe"))?;
        let (tx, rx) = mpsc::channel();
        let mut log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        // Reads the log for the addresses, then keeps draining it so the server never
        // blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "{line}");
                if !sent {
                    if let Some(addrs) = addresses(&line) {
                        let _ = tx.send(addrs);
                        sent = true;
                    }
                }
            }
        });
        let deadline = started + STARTUP_TIMEOUT;
        loop {
            match rx.recv_timeout(Duration::from_millis(5)) {
                Ok((grpc, kinesis)) => {
                    return Ok(Spawned {
                        child,
                        grpc: format!("http://{grpc}"),
                        kinesis: format!("http://{kinesis}"),
                        startup: started.elapsed(),
                    });
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if let Some(status) = child.try_wait()? {
                        bail!(
                            "the server exited ({status}) before listening; see {}",
                            log_path.display()
                        );
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!(
                        "the server did not log its addresses; see {}",
                        log_path.display()
                    );
                }
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server with SIGKILL and reaps it.
    pub fn kill(mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Stops the server with SIGTERM (a clean stop: it syncs and writes every log's
    /// recovery point) and waits for it to exit, at most [`STARTUP_TIMEOUT`].
    pub fn terminate(mut self) -> Result<()> {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32)
            .ok_or_else(|| anyhow!("no process id"))?;
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("the server exited with {status} on SIGTERM");
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        bail!("the server did not exit within {STARTUP_TIMEOUT:?} of SIGTERM")
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dir_name(p: &Path) -> String {
    p.file_name()
        .map_or_else(|| "data".to_owned(), |n| n.to_string_lossy().into_owned())
}

/// `(grpc_addr, kinesis_addr)` from the server's `listening` line.
fn addresses(line: &str) -> Option<(String, String)> {
    if !line.contains("listening") {
        return None;
    }
    let field = |name: &str| {
        let rest = &line[line.find(name)? + name.len()..];
        let value: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']'))
            .collect();
        (!value.is_empty()).then_some(value)
    };
    Some((field("grpc_addr=")?, field("kinesis_addr=")?))
}

/// What `/proc` says about a server process.
#[derive(Debug, Clone, Copy)]
pub struct Resources {
    /// Resident memory, KiB (`VmRSS`), including mapped segment pages.
    pub rss_kib: u64,
    /// Anonymous resident memory, KiB (`RssAnon`): the heap, without the page cache
    /// pages the segment mappings make resident (those are the kernel's to reclaim).
    pub rss_anon_kib: u64,
    /// Open file descriptors.
    pub fds: u64,
}

/// Resident memory and open file descriptors of process `pid`, from `/proc`.
pub fn resources(pid: u32) -> Option<Resources> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(Resources {
        rss_kib: field("VmRSS:")?,
        rss_anon_kib: field("RssAnon:").unwrap_or(0),
        fds,
    })
}

/// A data directory: `given` as is (kept), or a new temporary one under `parent`.
pub fn data_dir(
    given: Option<&Path>,
    parent: Option<&Path>,
) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    if let Some(dir) = given {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        return Ok((dir.to_path_buf(), None));
    }
    let tmp = match parent {
        Some(p) => tempfile::Builder::new()
            .prefix("sluice-bench-")
            .tempdir_in(p)?,
        None => tempfile::Builder::new().prefix("sluice-bench-").tempdir()?,
    };
    Ok((tmp.path().join("data"), Some(tmp)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_come_from_the_listening_line() {
        let line = "2026-01-01T00:00:00Z  INFO sluice_server::startup: listening grpc_addr=127.0.0.1:4000 kinesis_addr=127.0.0.1:4001 data_dir=/tmp/x";
        assert_eq!(
            addresses(line),
            Some(("127.0.0.1:4000".into(), "127.0.0.1:4001".into()))
        );
        assert_eq!(addresses("INFO opened grpc_addr=1"), None);
    }
}
