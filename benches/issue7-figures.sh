#!/bin/bash
# Every issue-7 figure of docs/BENCHMARKS.md for one server binary, appended to OUT.
# Usage: benches/issue7-figures.sh target/release/sluice OUT   (after cargo build --release -p sluice-server -p sluice-benches)
# About 6 minutes on the 2-vCPU machine; needs about 12 GB free under target/.
cd "$(dirname "$0")/.."
# Both paths are taken from the repository's root.
S=${1:?usage: benches/issue7-figures.sh SERVER_BINARY OUT_FILE}; OUT=${2:?usage: benches/issue7-figures.sh SERVER_BINARY OUT_FILE}
B="target/release/sluice-bench --spawn-server $S --tmp-parent target"
summ() { python3 -c "
import json,sys
for line in sys.stdin:
    line=line.strip()
    if not line.startswith('{'): continue
    d=json.loads(line)
    for p in d['phases']:
        print('  %s: %.1f MB/s %.0f rec/s p50 %.2f p99 %.2f p999 %.2f max %.2f ms errors %d' % (p['name'],p['mb_per_s'],p['records_per_s'],p['p50_ms'],p['p99_ms'],p['p999_ms'],p['max_ms'],p['errors']))
    extra={k:v for k,v in d.items() if k not in ('phases',)}
    keep=[k for k in extra if k.startswith(('server_','rss','fds','restart'))]
    if keep: print('  ', {k:extra[k] for k in keep})
"; }
ddr() { echo "dd: $(dd if=/dev/zero of=target/ddtest bs=1M count=2048 conv=fdatasync 2>&1 | tail -1 | awk '{print $(NF-1), $NF}')"; rm -f target/ddtest; sync; }
{
echo "== $S start $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
for i in 1 2 3; do
ddr
echo "grpc put:"; $B --mode put --shards 4 --batch 500 --concurrency 8 --duration 10 2>/dev/null | summ
ddr
echo "kinesis put:"; $B --api kinesis --mode put --shards 4 --batch 500 --concurrency 8 --duration 10 2>/dev/null | summ
done
ddr
for i in 1 2; do echo "single-put grpc c64:"; $B --mode single-put --shards 4 --concurrency 64 --duration 10 2>/dev/null | summ; done
for i in 1 2; do echo "single-put kinesis c64:"; $B --api kinesis --mode single-put --shards 4 --concurrency 64 --duration 10 2>/dev/null | summ; done
for i in 1 2 3; do echo "put --rate 250000:"; $B --mode put --shards 4 --batch 500 --concurrency 8 --rate 250000 --duration 10 2>/dev/null | summ; done
for i in 1 2; do echo "get 2GiB:"; $B --mode get --shards 4 --preload 2GiB --duration 60 2>/dev/null | summ; done
echo "subscribe:"; $B --mode subscribe --shards 4 --batch 50 --concurrency 8 --rate 10000 --duration 10 2>/dev/null | summ
for i in 1 2; do echo "put only:"; $B --mode put --shards 4 --concurrency 8 --duration 10 2>/dev/null | summ; echo "mixed:"; $B --mode mixed --shards 4 --concurrency 8 --duration 10 2>/dev/null | summ; done
echo "1000 shards 1 GiB:"; $B --mode put --streams 100 --shards 10 --batch 500 --concurrency 8 --count 1048576 --duration 300 2>/dev/null | summ
echo "1000 shards 10 GiB:"; $B --mode put --streams 100 --shards 10 --batch 500 --concurrency 8 --count 10485760 --duration 600 2>/dev/null | summ
rm -rf target/restart-data
echo "restart fill 10GiB:"; $B --data-dir target/restart-data --server-env SLUICE_STORAGE_SYNC_MODE=interval --mode restart --preload 10GiB --preload-timeout 600 2>/dev/null | summ
du -sh target/restart-data
for i in 1 2; do echo "restart again:"; $B --data-dir target/restart-data --no-create --mode restart 2>/dev/null | summ; done
rm -rf target/restart-data
echo "== end $(date -u +%H:%M:%S)"
} >> $OUT 2>&1
