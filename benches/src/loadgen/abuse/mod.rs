//! `sluice-bench --mode abuse`: a normal producer, a normal reader and a new-connection
//! probe run against the server while one hostile client applies one attack of issue 22
//! per phase (see `attacks`). Each phase reports the normal clients' latency, the server's
//! peak RSS and descriptors (from `/proc`), what the server did with the hostile requests
//! (refusals and disconnects are counted, never failures), and how long after the attack
//! stopped a fresh client was answered promptly again. Only a failed or timed-out normal
//! request is an error (and so a non-zero exit).

pub mod attacks;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Result, anyhow};
use bytes::Bytes;
use clap::ValueEnum;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout, timeout_at};

use self::attacks::{Ports, SubscribeTarget, Tallies};
use super::api::{PreparedPut, Start};
use super::modes::Target;
use super::report::Stats;
use super::server::{self, Resources};
use super::{Api, Args, parse_bytes};

/// A normal request that takes longer than this is an error.
const NORMAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the probe opens a new connection (alternating gRPC and Kinesis).
const PROBE_PERIOD: Duration = Duration::from_millis(250);
/// How often the server's `/proc` entries are read.
const SAMPLE_PERIOD: Duration = Duration::from_millis(50);
/// How long the hostile client may take to close everything after its deadline.
const HOSTILE_GRACE: Duration = Duration::from_secs(10);
/// A fresh request answered within this counts as the server having recovered.
const RECOVERED_LATENCY: Duration = Duration::from_millis(50);
/// Records per request when preloading the subscribers' stream.
const PRELOAD_BATCH: usize = 500;

/// One phase of the abuse run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Attack {
    /// No hostile client: the normal clients alone, for reference.
    Baseline,
    /// ListStreams bodies of `--json-keys` distinct keys, `--attack-concurrency` at once.
    JsonKeys,
    /// `--amplify-bytes` bodies of empty items: a CBOR array and a JSON array, alternating.
    Amplify,
    /// `--idle-conns` idle connections and `--slowloris` byte-a-time headers, both listeners.
    Connections,
    /// One HTTP/2 connection per listener with `--h2-streams` half-sent `--h2-body` uploads.
    H2Uploads,
    /// `--subscribers` Subscribe/SubscribeToShard streams that never read, over a stream
    /// preloaded with `--abuse-preload`.
    StalledSubscribers,
}

/// The flags of `--mode abuse`.
#[derive(Debug, Clone, clap::Args)]
pub struct AbuseArgs {
    /// Abuse mode: run only this attack (default: every phase in turn, baseline first).
    #[arg(long, value_enum)]
    pub attack: Option<Attack>,
    /// Abuse mode: hostile requests in flight at once (json-keys, amplify).
    #[arg(long, default_value_t = 2)]
    pub attack_concurrency: usize,
    /// Abuse mode: distinct keys per JSON object (100,000 make about 1 MiB).
    #[arg(long, default_value_t = 100_000)]
    pub json_keys: usize,
    /// Abuse mode: size of each amplification body.
    #[arg(long, default_value = "15MiB")]
    pub amplify_bytes: String,
    /// Abuse mode: idle TCP connections, half on each listener.
    #[arg(long, default_value_t = 2_000)]
    pub idle_conns: usize,
    /// Abuse mode: slowloris connections (a header byte every 200 ms), half on each listener.
    #[arg(long, default_value_t = 100)]
    pub slowloris: usize,
    /// Abuse mode: HTTP/2 streams per listener, each sending half its body and stalling.
    #[arg(long, default_value_t = 60)]
    pub h2_streams: usize,
    /// Abuse mode: the body size each HTTP/2 upload announces (half is sent).
    #[arg(long, default_value = "8MiB")]
    pub h2_body: String,
    /// Abuse mode: stalled subscribers, half gRPC Subscribe, half Kinesis SubscribeToShard.
    #[arg(long, default_value_t = 100)]
    pub subscribers: usize,
    /// Abuse mode: data put into the subscribers' stream before their phase.
    #[arg(long, default_value = "32MiB")]
    pub abuse_preload: String,
    /// Abuse mode: the normal producer's records per PutRecords.
    #[arg(long, default_value_t = 10)]
    pub normal_batch: usize,
    /// Abuse mode: the normal producer's and reader's time between requests, ms.
    #[arg(long, default_value_t = 20)]
    pub normal_interval_ms: u64,
    /// Abuse mode: how long to wait after a phase for the server to answer promptly, s.
    #[arg(long, default_value_t = 120.0)]
    pub settle_timeout: f64,
    /// Abuse mode: the local address hostile connections come from (another loopback
    /// address than the normal clients' 127.0.0.1, so per-address limits can tell them apart).
    #[arg(long, default_value = "127.0.0.2")]
    pub hostile_source: std::net::IpAddr,
}

/// What one phase measured besides the normal clients' latency.
struct PhaseReport {
    attack: Attack,
    peaks: Peaks,
    tallies: Tallies,
    recovered: Option<Duration>,
}

/// Runs the phases against the stream `shards[0]` belongs to; the phases' stats and the
/// per-phase report (`abuse` in the JSON line).
pub(super) async fn run(
    args: &Args,
    target: &Target,
    shards: &[(String, String)],
    pid: Option<u32>,
) -> Result<(Vec<Stats>, Value)> {
    let ports = Ports {
        kinesis: authority(target.kinesis.as_deref())?,
        grpc: authority(target.grpc.as_deref())?,
        source: args.abuse.hostile_source,
    };
    let (stream, shard) = shards
        .first()
        .cloned()
        .ok_or_else(|| anyhow!("the normal stream has no shards"))?;
    let attacks = match args.abuse.attack {
        Some(a) => vec![a],
        None => Attack::value_variants().to_vec(),
    };
    let mut phases = Vec::new();
    let mut reports = Vec::new();
    for attack in attacks {
        let sub_target = match attack {
            Attack::StalledSubscribers => Some(prepare_subscribers(args, target, &ports).await?),
            _ => None,
        };
        let (stats, report) = phase(
            args,
            target,
            &ports,
            sub_target,
            attack,
            (&stream, &shard),
            pid,
        )
        .await?;
        phases.extend(stats);
        reports.push(report);
    }
    if !args.json_only {
        print_table(&phases, &reports);
    }
    let rows: Vec<Value> = reports.iter().map(PhaseReport::json).collect();
    Ok((phases, json!({ "abuse": rows })))
}

/// One phase: the attack and the normal clients until the deadline, then the wait for
/// the server to answer promptly again; `/proc` is sampled throughout.
async fn phase(
    args: &Args,
    target: &Target,
    ports: &Ports,
    sub_target: Option<SubscribeTarget>,
    attack: Attack,
    (stream, shard): (&str, &str),
    pid: Option<u32>,
) -> Result<(Vec<Stats>, PhaseReport)> {
    let sampler = Sampler::start(pid);
    let deadline = Instant::now() + Duration::from_secs_f64(args.duration.max(0.0));
    let hostile = spawn_hostile(
        attack,
        ports.clone(),
        args.abuse.clone(),
        sub_target,
        deadline,
    );
    let name = value_name(attack);
    let normal = normal_load(args, target, stream, shard, deadline, &name).await;
    let tallies = match timeout_at(deadline + HOSTILE_GRACE, hostile).await {
        Ok(Ok(t)) => t?,
        Ok(Err(_)) => {
            return Err(anyhow!(
                "the hostile client's thread ended without a result"
            ));
        }
        Err(_) => {
            return Err(anyhow!(
                "the hostile client did not stop after {HOSTILE_GRACE:?}"
            ));
        }
    };
    let settle = Duration::from_secs_f64(args.abuse.settle_timeout.max(0.0));
    let recovered = recovered(target, args.api, stream, shard, settle).await;
    let peaks = sampler.stop().await;
    Ok((
        normal?,
        PhaseReport {
            attack,
            peaks,
            tallies,
            recovered,
        },
    ))
}

/// Runs the hostile client on a thread and runtime of its own, as a separate client
/// would be: its tasks never delay the normal client's on the bench's runtime, so what
/// the normal client measures is the server's doing (the two still share the CPUs).
fn spawn_hostile(
    attack: Attack,
    ports: Ports,
    a: AbuseArgs,
    sub_target: Option<SubscribeTarget>,
    deadline: Instant,
) -> tokio::sync::oneshot::Receiver<Result<Tallies>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let result = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| anyhow!("the hostile client's runtime: {e}"))
            .and_then(|rt| rt.block_on(hostile(attack, ports, a, sub_target, deadline)));
        // The phase may have given up waiting; then nobody wants the result.
        let _ = tx.send(result);
    });
    rx
}

/// The hostile client of `attack`, until `deadline`.
async fn hostile(
    attack: Attack,
    ports: Ports,
    a: AbuseArgs,
    sub_target: Option<SubscribeTarget>,
    deadline: Instant,
) -> Result<Tallies> {
    let tallies = match attack {
        Attack::Baseline => {
            sleep_until(deadline).await;
            Vec::new()
        }
        Attack::JsonKeys => {
            attacks::json_keys(&ports, a.json_keys, a.attack_concurrency, deadline).await
        }
        Attack::Amplify => {
            let bytes = usize::try_from(parse_bytes(&a.amplify_bytes)?)?;
            attacks::amplify(&ports, bytes, a.attack_concurrency, deadline).await
        }
        Attack::Connections => {
            attacks::connections(&ports, a.idle_conns, a.slowloris, deadline).await
        }
        Attack::H2Uploads => {
            let bytes = usize::try_from(parse_bytes(&a.h2_body)?)?;
            attacks::half_uploads(&ports, a.h2_streams, bytes, deadline).await
        }
        Attack::StalledSubscribers => {
            let to = sub_target.ok_or_else(|| anyhow!("no subscribers' stream"))?;
            let grpc = a.subscribers.div_ceil(2);
            let kinesis = a.subscribers - grpc;
            attacks::stalled_subscribers(&ports, &to, grpc, kinesis, deadline).await
        }
    };
    Ok(tallies)
}

/// Creates and preloads `{stream}-abuse` (2 shards) and registers a consumer on it.
async fn prepare_subscribers(
    args: &Args,
    target: &Target,
    ports: &Ports,
) -> Result<SubscribeTarget> {
    let stream = format!("{}-abuse", args.stream);
    let mut client = target.client(Api::Grpc).await?;
    client.create_stream(&stream, 2).await?;
    let shards = client.shards(&stream).await?;
    let bytes = parse_bytes(&args.abuse.abuse_preload)?;
    let size = args.record_size.max(1);
    let data = Bytes::from(vec![b's'; size]);
    let requests = bytes.div_ceil((size * PRELOAD_BATCH) as u64);
    for r in 0..requests {
        let recs: Vec<(String, Bytes)> = (0..PRELOAD_BATCH)
            .map(|i| (format!("p{r}-{i}"), data.clone()))
            .collect();
        let out = client
            .put_records(&PreparedPut::new(true, &stream, &recs))
            .await?;
        if out.failed > 0 {
            return Err(anyhow!(
                "preloading {stream}: {} records refused",
                out.failed
            ));
        }
    }
    let consumer_arn = attacks::consumer_arn(&ports.kinesis, &stream, "abuse").await?;
    Ok(SubscribeTarget {
        grpc_url: target.grpc.clone().unwrap_or_default(),
        stream,
        shards,
        consumer_arn,
    })
}

/// The normal producer, reader and new-connection probe until `deadline`; their stats
/// named `PHASE/put`, `PHASE/get` and `PHASE/connect`.
async fn normal_load(
    args: &Args,
    target: &Target,
    stream: &str,
    shard: &str,
    deadline: Instant,
    phase: &str,
) -> Result<Vec<Stats>> {
    let period = Duration::from_millis(args.abuse.normal_interval_ms.max(1));
    let (put, get, connect) = tokio::join!(
        producer(args, target, stream, period, deadline),
        reader(args.api, target, stream, shard, period, deadline),
        prober(target, stream, shard, deadline),
    );
    let mut out = vec![put?, get?, connect];
    for st in &mut out {
        st.name = format!("{phase}/{}", st.name);
    }
    Ok(out)
}

/// Waits for the `k`th slot of a schedule; the time latency counts from (the slot, when
/// behind schedule), or `None` once the slot is past `deadline`.
async fn slot(first: Instant, period: Duration, k: u32, deadline: Instant) -> Option<Instant> {
    let at = first + period * k;
    if at >= deadline || Instant::now() >= deadline {
        return None;
    }
    if at > Instant::now() {
        sleep_until(at).await;
        return Some(Instant::now());
    }
    Some(at)
}

/// Runs one normal request under [`NORMAL_TIMEOUT`], timed from `from`; an error or a
/// timeout counts in `st.errors`.
async fn timed<T>(
    st: &mut Stats,
    from: Instant,
    what: &str,
    call: impl Future<Output = Result<T>>,
) -> Option<T> {
    let r = timeout(NORMAL_TIMEOUT, call).await;
    st.record(from.elapsed());
    st.ops += 1;
    let err = match r {
        Ok(Ok(v)) => return Some(v),
        Ok(Err(e)) => format!("{e:#}"),
        Err(_) => format!("no answer in {NORMAL_TIMEOUT:?}"),
    };
    if st.errors == 0 {
        eprintln!("normal {what} failed: {err}");
    }
    st.errors += 1;
    None
}

async fn producer(
    args: &Args,
    target: &Target,
    stream: &str,
    period: Duration,
    deadline: Instant,
) -> Result<Stats> {
    let mut client = target.client(args.api).await?;
    let size = args.record_size;
    let batch = args.abuse.normal_batch.max(1);
    let recs: Vec<(String, Bytes)> = (0..batch)
        .map(|i| (format!("n{i}"), Bytes::from(vec![b'n'; size])))
        .collect();
    let req = PreparedPut::new(args.api == Api::Grpc, stream, &recs);
    let mut st = Stats::new("put");
    let (start, first) = (std::time::Instant::now(), Instant::now());
    let mut k = 0;
    while let Some(from) = slot(first, period, k, deadline).await {
        if let Some(out) = timed(&mut st, from, "put", client.put_records(&req)).await {
            let ok = batch - out.failed.min(batch);
            st.records += ok as u64;
            st.bytes += (ok * size) as u64;
            st.errors += out.failed as u64;
        }
        k += 1;
    }
    st.elapsed = start.elapsed();
    Ok(st)
}

async fn reader(
    api: Api,
    target: &Target,
    stream: &str,
    shard: &str,
    period: Duration,
    deadline: Instant,
) -> Result<Stats> {
    let mut client = target.client(api).await?;
    let mut st = Stats::new("get");
    let (start, first) = (std::time::Instant::now(), Instant::now());
    let mut it = timed(
        &mut st,
        first,
        "iterator",
        client.iterator(stream, shard, Start::Latest),
    )
    .await;
    let mut k = 0;
    while let (Some(iterator), Some(from)) = (it.clone(), slot(first, period, k, deadline).await) {
        let got = timed(&mut st, from, "get", client.get_records(&iterator, 1000)).await;
        if let Some(g) = got {
            st.records += g.records;
            st.bytes += g.bytes;
            it = g.next;
        }
        k += 1;
    }
    st.elapsed = start.elapsed();
    Ok(st)
}

/// A new connection every [`PROBE_PERIOD`], gRPC and Kinesis in turn, each asked for a
/// LATEST iterator: what a client arriving during the attack sees.
async fn prober(target: &Target, stream: &str, shard: &str, deadline: Instant) -> Stats {
    let mut st = Stats::new("connect");
    let (start, first) = (std::time::Instant::now(), Instant::now());
    let mut k = 0;
    while let Some(from) = slot(first, PROBE_PERIOD, k, deadline).await {
        let api = if k % 2 == 0 { Api::Grpc } else { Api::Kinesis };
        let call = async {
            let mut c = target.client(api).await?;
            c.iterator(stream, shard, Start::Latest).await
        };
        timed(&mut st, from, "new connection", call).await;
        k += 1;
    }
    st.elapsed = start.elapsed();
    st
}

/// How long until a fresh connection's request is answered within
/// [`RECOVERED_LATENCY`], trying every 100 ms up to `limit`; `None` if it never was.
async fn recovered(
    target: &Target,
    api: Api,
    stream: &str,
    shard: &str,
    limit: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        let t = Instant::now();
        let call = async {
            let mut c = target.client(api).await?;
            c.iterator(stream, shard, Start::Latest).await
        };
        let ok = matches!(timeout(NORMAL_TIMEOUT, call).await, Ok(Ok(_)));
        if ok && t.elapsed() < RECOVERED_LATENCY {
            return Some(start.elapsed());
        }
        sleep(Duration::from_millis(100)).await;
    }
    None
}

/// The peaks of the server's `/proc` figures over a phase.
#[derive(Debug, Default, Clone, Copy)]
struct Peaks {
    start: Option<Resources>,
    end: Option<Resources>,
    rss_kib: u64,
    rss_anon_kib: u64,
    fds: u64,
}

/// Reads the server's `/proc` entries every [`SAMPLE_PERIOD`] until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Peaks>,
}

impl Sampler {
    fn start(pid: Option<u32>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut p = Peaks::default();
            let Some(pid) = pid else { return p };
            while !flag.load(Ordering::Relaxed) {
                if let Some(r) = server::resources(pid) {
                    p.start.get_or_insert(r);
                    p.end = Some(r);
                    p.rss_kib = p.rss_kib.max(r.rss_kib);
                    p.rss_anon_kib = p.rss_anon_kib.max(r.rss_anon_kib);
                    p.fds = p.fds.max(r.fds);
                }
                sleep(SAMPLE_PERIOD).await;
            }
            p
        });
        Sampler { stop, task }
    }

    async fn stop(self) -> Peaks {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

impl PhaseReport {
    fn json(&self) -> Value {
        let p = &self.peaks;
        let hostile: serde_json::Map<String, Value> = self
            .tallies
            .iter()
            .map(|(n, t)| (n.clone(), t.json()))
            .collect();
        json!({
            "attack": value_name(self.attack),
            "rss_kib_start": p.start.map(|r| r.rss_kib),
            "rss_kib_peak": p.rss_kib,
            "rss_anon_kib_peak": p.rss_anon_kib,
            "rss_kib_end": p.end.map(|r| r.rss_kib),
            "fds_start": p.start.map(|r| r.fds),
            "fds_peak": p.fds,
            "fds_end": p.end.map(|r| r.fds),
            "recovered_ms": self.recovered.map(|d| d.as_millis() as u64),
            "hostile": hostile,
        })
    }
}

fn print_table(phases: &[Stats], reports: &[PhaseReport]) {
    println!(
        "{:<20} {:>21} {:>21} {:>15} {:>6} {:>11} {:>10} {:>10} {:>8}",
        "attack",
        "put p50/p99/max ms",
        "get p50/p99/max ms",
        "connect p99/max",
        "errors",
        "RSS MiB",
        "fds",
        "recovered",
        "pushback"
    );
    let ms = |s: &Stats, q: f64| s.latency.value_at_quantile(q) as f64 / 1000.0;
    let lat = |s: &Stats| format!("{:.1}/{:.1}/{:.1}", ms(s, 0.5), ms(s, 0.99), ms(s, 1.0));
    let mib = |kib: u64| kib.div_ceil(1024);
    for (r, st) in reports.iter().zip(phases.chunks(3)) {
        let [put, get, conn] = st else { continue };
        let p = &r.peaks;
        println!(
            "{:<20} {:>21} {:>21} {:>15} {:>6} {:>11} {:>10} {:>10} {:>8}",
            value_name(r.attack),
            lat(put),
            lat(get),
            format!("{:.1}/{:.1}", ms(conn, 0.99), ms(conn, 1.0)),
            put.errors + get.errors + conn.errors,
            format!(
                "{}->{}",
                p.start.map_or(0, |s| mib(s.rss_kib)),
                mib(p.rss_kib)
            ),
            format!("{}->{}", p.start.map_or(0, |s| s.fds), p.fds),
            r.recovered
                .map_or_else(|| "never".to_owned(), |d| format!("{} ms", d.as_millis())),
            r.tallies.iter().map(|(_, t)| t.pushed_back()).sum::<u64>(),
        );
    }
}

/// `host:port` of an `http://host:port` endpoint.
fn authority(url: Option<&str>) -> Result<String> {
    let url = url.ok_or_else(|| anyhow!("abuse mode needs both endpoints (or --spawn-server)"))?;
    url.strip_prefix("http://")
        .map(|a| a.trim_end_matches('/').to_owned())
        .ok_or_else(|| anyhow!("endpoints are http://host:port, not {url}"))
}

/// The name clap knows a value by (`json-keys`).
fn value_name(v: impl ValueEnum) -> String {
    v.to_possible_value()
        .map_or_else(String::new, |p| p.get_name().to_owned())
}
