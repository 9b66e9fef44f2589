#!/usr/bin/env bash
# The project's test command (the README's, and what CI runs): formatting, lints, and
# every test in the workspace, from a clean clone with nothing but cargo installed.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== python virtualenv (target/venv) and the JavaScript SDK (tests/js/node_modules)"
# tests/tests/python_grpc.rs runs a Python grpcio client against the real server, and
# tests/python runs boto3, the AWS CLI and the AWS SDK for JavaScript v3 against it; they
# fail in CI (CI=true) without these. The venv is reused when present.
venv=target/venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    grpcio==1.85.1 grpcio-tools==1.85.1 boto3==1.44.5 awscli==1.46.3 pytest==9.2.0
export SLUICE_PYTHON="$PWD/$venv/bin/python"
(cd tests/js && npm ci --no-audit --no-fund --loglevel=error)

echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"

echo "== fuzz targets (fuzz/, its own workspace): replay on stable"
# The replay drives every target's body over seeds and their deterministic mutations with
# plain cargo; that is the CI smoke run. libFuzzer runs are opt-in, because cargo-fuzz
# must be installed and its sanitizer build takes about ten minutes cold:
#   SLUICE_FUZZ_SECONDS=60 tests/run.sh   (after `cargo install cargo-fuzz`)
cargo test --manifest-path fuzz/Cargo.toml --locked 2>&1 | tee -a "$log"
if [ -n "${SLUICE_FUZZ_SECONDS:-}" ]; then
    if ! command -v cargo-fuzz >/dev/null 2>&1; then
        echo "SLUICE_FUZZ_SECONDS is set but cargo-fuzz is not installed (cargo install cargo-fuzz)"
        exit 1
    fi
    for target in frame_decode journal_open iterator_token sequence_number kinesis_json kinesis_cbor grpc_messages; do
        fuzz_log=$(mktemp)
        if ! (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- \
                -max_total_time="$SLUICE_FUZZ_SECONDS" -seed="${SLUICE_SEED:-1}") >"$fuzz_log" 2>&1; then
            tail -40 "$fuzz_log"
            echo "fuzz target $target failed (seed ${SLUICE_SEED:-1})"
            exit 1
        fi
        echo "fuzz $target: $(grep -E '^Done [0-9]+ runs' "$fuzz_log")"
        rm -f "$fuzz_log"
    done
fi

echo "== Kinesis protocol: boto3, the AWS CLI and the JavaScript SDK against the real server"
SLUICE_BIN="$PWD/target/debug/sluice" "$venv/bin/python" -m pytest -q tests/python 2>&1 | tee -a "$log"

echo "== storage throughput probe (smoke run, not a timing assertion)"
cargo run --quiet --release --locked -p sluice-benches --bin storage-throughput -- \
    --threads 2 --logs 2 --batch 100 --seconds 1 --dir target

echo "== sluice-bench smoke runs against a spawned server (errors fail; not a timing assertion)"
cargo build --quiet --locked -p sluice-server -p sluice-benches --bin sluice --bin sluice-bench
bench=(target/debug/sluice-bench --spawn-server target/debug/sluice --tmp-parent target --json-only)
"${bench[@]}" --mode put --duration 2 --concurrency 4 --batch 100
"${bench[@]}" --mode put --api kinesis --duration 1 --concurrency 2 --batch 50 --keys hot:0.5
"${bench[@]}" --mode single-put --duration 1 --concurrency 16
"${bench[@]}" --mode get --preload 8MiB --duration 5
"${bench[@]}" --mode subscribe --duration 2 --rate 1000 --batch 10 --concurrency 2
"${bench[@]}" --mode mixed --duration 2 --concurrency 2 --batch 100
"${bench[@]}" --mode restart --preload 1MiB
"${bench[@]}" --mode abuse --duration 1 --json-keys 2000 --amplify-bytes 256KiB --idle-conns 50 \
    --slowloris 10 --h2-streams 4 --h2-body 1MiB --subscribers 6 --abuse-preload 2MiB
"${bench[@]}" --mode admin --duration 2 --concurrency 2 --batch 10 --rate 500 --admin-shards 50 --admin-records 10

# One closing line with the totals of every test binary and the pytest run above.
awk '/^test result:|^[0-9]+ (passed|failed).* in [0-9.]+s/ {
         for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
