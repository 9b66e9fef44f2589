"""The classic AWS CLI walkthrough, run literally with `aws kinesis ... --endpoint-url`
against the real server: create-stream, describe-stream until ACTIVE, put-record x N,
get-shard-iterator with each of the five types, get-records."""

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

AWS = Path(sys.executable).parent / "aws"
# A bound on one `aws` run, reached only if it hangs: the CLI loads its service models
# anew each time (a second or two of CPU), so a starved machine needs minutes, not seconds.
AWS_TIMEOUT_S = 300


def aws(server, *args):
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_PAGER": "", "AWS_MAX_ATTEMPTS": "1"}
    out = subprocess.run([str(AWS), "kinesis", *args, "--endpoint-url", server.endpoint, "--output", "json"],
                         capture_output=True, text=True, env=env, timeout=AWS_TIMEOUT_S)
    if out.returncode != 0:
        raise AssertionError(f"aws kinesis {' '.join(args)} failed ({out.returncode}): {out.stderr}")
    return json.loads(out.stdout) if out.stdout.strip() else None


def records(server, iterator):
    out = aws(server, "get-records", "--shard-iterator", iterator)
    return [base64.b64decode(r["Data"]).decode() for r in out["Records"]], out


@pytest.mark.skipif(not AWS.exists(), reason="the AWS CLI is installed by tests/run.sh")
def test_the_aws_cli_walkthrough(server):
    assert aws(server, "create-stream", "--stream-name", "cli-walk", "--shard-count", "1") is None
    deadline = time.monotonic() + 60
    while True:
        d = aws(server, "describe-stream", "--stream-name", "cli-walk")["StreamDescription"]
        if d["StreamStatus"] == "ACTIVE" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert d["StreamStatus"] == "ACTIVE"
    shard = d["Shards"][0]["ShardId"]
    seqs, times = [], []
    for i in range(1, 7):
        # AWS CLI v1 (from PyPI) sends a blob argument's text as its bytes, as the
        # classic walkthrough does with `--data testdata`.
        if i == 4:
            # The CLI sends --timestamp in whole seconds: put test4 in a later second
            # than test3, so a whole second lies between them. (A lower bound: a slower
            # machine only puts test4 later.)
            time.sleep(1.05 - time.time() % 1)
        r = aws(server, "put-record", "--stream-name", "cli-walk", "--partition-key", "pk", "--data", f"test{i}")
        seqs.append(r["SequenceNumber"])

    def iterator(kind, *extra):
        return aws(server, "get-shard-iterator", "--stream-name", "cli-walk", "--shard-id", shard,
                   "--shard-iterator-type", kind, *extra)["ShardIterator"]

    data, out = records(server, iterator("TRIM_HORIZON"))
    assert data == [f"test{i}" for i in range(1, 7)]
    times = [r["ApproximateArrivalTimestamp"] for r in out["Records"]]
    assert records(server, iterator("AT_SEQUENCE_NUMBER", "--starting-sequence-number", seqs[5]))[0] == ["test6"]
    assert records(server, iterator("AFTER_SEQUENCE_NUMBER", "--starting-sequence-number", seqs[4]))[0] == ["test6"]
    latest = iterator("LATEST")
    data, out = records(server, latest)
    assert data == [] and out["MillisBehindLatest"] == 0
    aws(server, "put-record", "--stream-name", "cli-walk", "--partition-key", "pk", "--data", "test7")
    assert records(server, out["NextShardIterator"])[0] == ["test7"]
    # The CLI prints arrival times as epoch seconds; ask from the second test4 arrived in,
    # which starts after test3 arrived.
    t3, t4 = float(times[2]), float(times[3])
    assert int(t4) > t3
    from4 = records(server, iterator("AT_TIMESTAMP", "--timestamp", str(int(t4))))[0]
    assert from4 == ["test4", "test5", "test6", "test7"]
    aws(server, "delete-stream", "--stream-name", "cli-walk")
