"""Fixtures for the Kinesis-protocol tests: a real `sluice` server on loopback ports with its
own data directory, and boto3 clients pointed at it.

The server binary is `$SLUICE_BIN`, or `target/debug/sluice` (built by `cargo test`).
"""

import os
import re
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30


def sluice_bin():
    path = Path(os.environ.get("SLUICE_BIN", ROOT / "target" / "debug" / "sluice"))
    if not path.exists():
        pytest.fail(f"sluice binary not found at {path}; run `cargo build --bin sluice` first")
    return path


class Server:
    """A running `sluice` with both listeners on free loopback ports."""

    def __init__(self, env=None):
        self.dir = tempfile.TemporaryDirectory()
        self.lines = []
        self.proc = subprocess.Popen(
            [str(sluice_bin()), "--grpc-listen", "127.0.0.1:0", "--kinesis-listen", "127.0.0.1:0",
             "--data-dir", self.dir.name],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
            env={**os.environ, "NO_COLOR": "1", **(env or {})},
        )
        found = threading.Event()

        def read():
            for line in self.proc.stderr:
                self.lines.append(line)
                m = re.search(r"kinesis_addr=(\S+)", re.sub(r"\x1b\[[0-9;]*m", "", line))
                if m:
                    self.kinesis = m.group(1)
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(START_TIMEOUT_S):
            self.stop()
            raise RuntimeError("sluice did not report its Kinesis address:\n" + "".join(self.lines))
        self.endpoint = f"http://{self.kinesis}"

    def client(self, validate=True):
        return boto3.client(
            "kinesis", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret",
            config=Config(parameter_validation=validate, retries={"max_attempts": 1},
                          connect_timeout=5, read_timeout=30),
        )

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.dir.cleanup()


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.stop()


@pytest.fixture
def kinesis(server):
    return server.client()


@pytest.fixture
def raw(server):
    """A client that skips botocore's own parameter checks, to reach the server's."""
    return server.client(validate=False)


_names = iter(range(10**6))


@pytest.fixture
def stream_name():
    return f"py-{os.getpid()}-{next(_names)}"


# A bound on waiting for a state the server reaches by itself (ACTIVE, deleted); reached
# only if it never does, so it is generous for a loaded machine.
STATE_TIMEOUT_S = 30


def wait_active(client, name, timeout_s=STATE_TIMEOUT_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        d = client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        if d["StreamStatus"] == "ACTIVE":
            return d
        time.sleep(0.05)
    raise AssertionError(f"{name} never became ACTIVE")
