#!/usr/bin/env bash
# The project's test command (the README's, and what CI runs): formatting, lints, and
# every test in the workspace, from a clean clone with nothing but cargo installed.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== python virtualenv for the gRPC interop test (target/venv)"
# tests/tests/python_grpc.rs runs a Python grpcio client against the real server; it
# fails in CI (CI=true) without this interpreter. The venv is reused when present.
venv=target/venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    grpcio==1.85.1 grpcio-tools==1.85.1
export SLUICE_PYTHON="$PWD/$venv/bin/python"

echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"

echo "== storage throughput probe (smoke run, not a timing assertion)"
cargo run --quiet --release --locked -p sluice-benches --bin storage-throughput -- \
    --threads 2 --logs 2 --batch 100 --seconds 1 --dir target

# One closing line with the totals of every test binary above.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
