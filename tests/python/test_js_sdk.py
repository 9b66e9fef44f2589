"""SubscribeToShard through a real SDK that supports it: the AWS SDK for JavaScript v3,
over an HTTP/2 event stream (tests/js/subscribe.mjs), against the real server."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

JS = Path(__file__).resolve().parents[1] / "js"


def test_subscribe_to_shard_with_the_javascript_sdk(server):
    node = shutil.which("node")
    if node is None or not (JS / "node_modules" / "@aws-sdk").exists():
        if os.environ.get("CI") == "true":
            pytest.fail("node and tests/js/node_modules are required in CI (tests/run.sh installs them)")
        pytest.skip("node or tests/js/node_modules missing; run `npm ci` in tests/js")
    # A bound reached only if the script hangs (it stops itself after 240 s).
    out = subprocess.run([node, str(JS / "subscribe.mjs"), server.endpoint], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["first"] == ["live1", "live2", "live3"], "records pushed live, in order"
    assert result["second"] == ["later1", "later2"], "resumed after ContinuationSequenceNumber, no gap, no repeat"
    assert result["continuation"].isdigit()
