//! The modes of `sluice-bench`: producers (batched or single puts, full speed or paced),
//! catch-up readers, tailing readers, Subscribe consumers matched to acknowledged puts,
//! and the SIGKILL-and-restart probe. Each returns [`Stats`] per phase.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use serde_json::{Value, json};
use sluice_proto::v1 as pb;
use tokio::task::JoinSet;
use tokio::time::Instant as TokioInstant;

use super::api::{Client, PreparedPut, Start};
use super::report::Stats;
use super::server::{self, Spawned};
use super::{Api, Args, Mode};

/// Distinct prepared batches per stream (shared by all producers), so keys vary between
/// requests.
const PREPARED_BATCHES: usize = 8;

/// Where the load goes.
#[derive(Clone)]
pub struct Target {
    pub grpc: Option<String>,
    pub kinesis: Option<String>,
    pub signed: bool,
}

impl Target {
    /// A gRPC client of the target (whatever protocol carries the load).
    pub async fn grpc_client(
        &self,
    ) -> Result<sluice_proto::v1::sluice_client::SluiceClient<tonic::transport::Channel>> {
        self.client(Api::Grpc)
            .await?
            .as_grpc()
            .ok_or_else(|| anyhow!("not a gRPC client"))
    }

    pub(super) async fn client(&self, api: Api) -> Result<Client> {
        match api {
            Api::Grpc => {
                let url = self
                    .grpc
                    .as_deref()
                    .ok_or_else(|| anyhow!("no gRPC endpoint: give --grpc or --spawn-server"))?;
                Client::grpc(url).await
            }
            Api::Kinesis => {
                let url = self.kinesis.as_deref().ok_or_else(|| {
                    anyhow!("no Kinesis endpoint: give --kinesis or --spawn-server")
                })?;
                Client::kinesis(url, self.signed)
            }
        }
    }

    /// `n` clients for workers. gRPC workers share `connections` HTTP/2 connections;
    /// Kinesis workers get one HTTP/1.1 connection each.
    async fn clients(&self, api: Api, n: usize, connections: usize) -> Result<Vec<Client>> {
        let mut out = Vec::with_capacity(n);
        match api {
            Api::Grpc => {
                let mut conns = Vec::new();
                for _ in 0..connections.clamp(1, n.max(1)) {
                    conns.push(self.client(Api::Grpc).await?);
                }
                for i in 0..n {
                    let c = conns[i % conns.len()]
                        .as_grpc()
                        .ok_or_else(|| anyhow!("not a gRPC client"))?;
                    out.push(Client::Grpc(c));
                }
            }
            Api::Kinesis => {
                for _ in 0..n {
                    out.push(self.client(Api::Kinesis).await?);
                }
            }
        }
        Ok(out)
    }
}

/// What a run produced.
pub struct Outcome {
    pub header: Value,
    pub phases: Vec<Stats>,
    pub extra: Value,
}

/// Partition keys drawn from the configured distribution (xorshift; no dependency).
#[derive(Clone)]
struct Keys {
    hot: f64,
    fixed: bool,
    count: u64,
    state: u64,
}

impl Keys {
    fn new(spec: &str, count: u64, seed: u64) -> Result<Keys> {
        let (hot, fixed) = match spec {
            "uniform" => (0.0, false),
            "fixed" => (0.0, true),
            s => match s.strip_prefix("hot:").and_then(|f| f.parse::<f64>().ok()) {
                Some(f) if (0.0..=1.0).contains(&f) => (f, false),
                _ => bail!("--keys takes uniform, fixed or hot:F with 0 <= F <= 1, not {s}"),
            },
        };
        Ok(Keys {
            hot,
            fixed,
            count: count.max(1),
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        })
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }

    fn next(&mut self) -> String {
        if self.fixed {
            return "k0".to_owned();
        }
        let r = self.next_u64();
        if self.hot > 0.0 && (r >> 11) as f64 / (1u64 << 53) as f64 <= self.hot {
            return "hot".to_owned();
        }
        format!("k{}", self.next_u64() % self.count)
    }
}

/// Payload bytes for records: slices of one random buffer, so building a batch copies
/// nothing.
fn payload_pool(size: usize) -> Bytes {
    let mut k = Keys {
        hot: 0.0,
        fixed: false,
        count: 1,
        state: 0x2545_F491_4F6C_DD1D,
    };
    let n = size * 2 + 4096;
    Bytes::from((0..n).map(|_| k.next_u64() as u8).collect::<Vec<u8>>())
}

/// The name clap knows a value by (`single-put`).
fn value_name(v: impl clap::ValueEnum) -> String {
    v.to_possible_value()
        .map_or_else(String::new, |p| p.get_name().to_owned())
}

fn header(args: &Args) -> Value {
    let mut h = json!({
        "mode": value_name(args.mode),
        "api": value_name(args.api),
        "streams": args.streams,
        "shards": args.shards,
        "batch": args.batch,
        "record_size": args.record_size,
        "keys": args.keys,
        "concurrency": args.concurrency,
        "duration_s": args.duration,
    });
    if let Some(r) = args.rate {
        h["rate"] = json!(r);
    }
    h
}

pub async fn run(
    args: &Args,
    target: &Target,
    preload: Option<u64>,
    pid: Option<u32>,
    spawned: &mut Option<Spawned>,
    dir: &Path,
) -> Result<Outcome> {
    let streams = args.stream_names();
    if !args.no_create {
        let mut admin = target.client(args.api).await?;
        for s in &streams {
            admin.create_stream(s, args.shards).await?;
        }
    }
    let mut admin = target.client(args.api).await?;
    let mut shards = Vec::new();
    for s in &streams {
        for id in admin.shards(s).await? {
            shards.push((s.clone(), id));
        }
    }
    let mut phases = Vec::new();
    let mut extra = json!({});
    if args.fill_shards {
        let mut grpc = target.grpc_client().await?;
        let t = Instant::now();
        for s in &streams {
            super::admin::fill(&mut grpc, s, args.shards).await?;
        }
        extra["fill_shards_ms"] = json!(t.elapsed().as_millis() as u64);
    }
    if let Some(bytes) = preload {
        let records = bytes.div_ceil(args.record_size.max(1) as u64);
        let mut pre = args.clone();
        pre.rate = None;
        pre.duration = args.preload_timeout;
        pre.count = Some(records);
        let mut st = put_phase(&pre, target, &streams, false).await?;
        st.name = "preload".into();
        phases.push(st);
        if let Some(r) = pid.and_then(server::resources) {
            extra["rss_kib_after_preload"] = json!(r.rss_kib);
            extra["rss_anon_kib_after_preload"] = json!(r.rss_anon_kib);
            extra["fds_after_preload"] = json!(r.fds);
        }
    }
    match args.mode {
        Mode::Put => phases.push(put_phase(args, target, &streams, false).await?),
        Mode::SinglePut => phases.push(put_phase(args, target, &streams, true).await?),
        Mode::Get => phases.push(get_phase(args, target, &shards, None).await?),
        Mode::Admin => {
            let spawned_dir = spawned.as_ref().map(|_| dir.to_path_buf());
            let (st, admin) =
                super::admin::run(args, target, &streams, &shards, spawned_dir).await?;
            phases.extend(st);
            extra["admin"] = admin;
        }
        Mode::Mixed => {
            let deadline = TokioInstant::now() + args.duration();
            let readers = {
                let (args, shards, target) = (args.clone(), shards.clone(), target.clone());
                tokio::spawn(
                    async move { get_phase(&args, &target, &shards, Some(deadline)).await },
                )
            };
            let put = put_phase(args, target, &streams, false).await?;
            let get = readers.await??;
            phases.push(put);
            phases.push(get);
        }
        Mode::Subscribe => phases.extend(subscribe_phase(args, target, &shards).await?),
        Mode::Restart => {
            let bin = args
                .spawn_server
                .as_deref()
                .ok_or_else(|| anyhow!("--mode restart needs --spawn-server"))?;
            let (st, ms) = restart(args, bin, dir, spawned, &streams).await?;
            extra["restart_listening_ms"] = json!(ms.0);
            extra["restart_serving_ms"] = json!(ms.1);
            phases.push(st);
        }
        Mode::Abuse => {
            let (st, mut report) = super::abuse::run(args, target, &shards, pid).await?;
            phases.extend(st);
            extra["abuse"] = report["abuse"].take();
        }
    }
    let pid = spawned.as_ref().map(Spawned::pid).or(pid);
    if let Some(r) = pid.and_then(server::resources) {
        extra["server_rss_kib"] = json!(r.rss_kib);
        extra["server_rss_anon_kib"] = json!(r.rss_anon_kib);
        extra["server_fds"] = json!(r.fds);
    }
    if let Some(s) = spawned {
        extra["server_startup_ms"] = json!(s.startup.as_millis() as u64);
    }
    Ok(Outcome {
        header: header(args),
        phases,
        extra,
    })
}

/// Producers until the deadline or the record budget: PutRecords batches, or PutRecord
/// calls when `single`.
pub(super) async fn put_phase(
    args: &Args,
    target: &Target,
    streams: &[String],
    single: bool,
) -> Result<Stats> {
    let clients = target
        .clients(args.api, args.concurrency, args.connections)
        .await?;
    let budget = Arc::new(AtomicI64::new(
        args.count
            .map_or(i64::MAX, |c| i64::try_from(c).unwrap_or(i64::MAX)),
    ));
    let per_request = if single { 1 } else { args.batch };
    // Each producer's share of the rate, as the time between its requests.
    let period = args
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(per_request as f64 * args.concurrency as f64 / r));
    let pool = payload_pool(args.record_size);
    let start = Instant::now();
    let deadline = TokioInstant::now() + args.duration();
    // Built once and shared: per producer, 100 streams of Kinesis batches came to gigabytes
    // of JSON built at start-up on the machine under test.
    let prepared: Arc<Vec<Vec<PreparedPut>>> = Arc::new(if single {
        Vec::new()
    } else {
        let mut keys = Keys::new(&args.keys, args.key_count, 0)?;
        let grpc = args.api == Api::Grpc;
        streams
            .iter()
            .map(|s| {
                (0..PREPARED_BATCHES)
                    .map(|b| {
                        let recs: Vec<(String, Bytes)> = (0..args.batch)
                            .map(|i| {
                                let off = (b * 17 + i * 7) % (pool.len() / 2);
                                (keys.next(), pool.slice(off..off + args.record_size))
                            })
                            .collect();
                        PreparedPut::new(grpc, s, &recs)
                    })
                    .collect()
            })
            .collect()
    });
    let mut set = JoinSet::new();
    for (w, mut client) in clients.into_iter().enumerate() {
        let mut keys = Keys::new(&args.keys, args.key_count, w as u64 + 1)?;
        let streams = streams.to_vec();
        let prepared = prepared.clone();
        let (budget, pool, size) = (budget.clone(), pool.clone(), args.record_size);
        let name = if single { "single-put" } else { "put" };
        set.spawn(async move {
            let mut st = Stats::new(name);
            let first = TokioInstant::now()
                + period.map_or(Duration::ZERO, |p| p.mul_f64((w as f64) / 7.3 % 1.0));
            let mut k = 0u64;
            loop {
                let scheduled = match period {
                    Some(p) => {
                        let at = first + p.mul_f64(k as f64);
                        // Behind schedule or not, the run ends at the deadline.
                        let now = TokioInstant::now();
                        if at >= deadline || now >= deadline {
                            break;
                        }
                        if at > now {
                            // Early: wait, and time the request from when it is sent.
                            // tokio's timer fires up to a millisecond late; that lateness
                            // is the load generator's, not the server's.
                            tokio::time::sleep_until(at).await;
                            TokioInstant::now()
                        } else {
                            // Behind schedule (the previous request took too long): the
                            // time since the request was due counts as latency, so a slow
                            // server cannot hide behind fewer requests sent.
                            at
                        }
                    }
                    None => TokioInstant::now(),
                };
                if TokioInstant::now() >= deadline
                    || budget.fetch_sub(per_request as i64, Ordering::Relaxed) <= 0
                {
                    break;
                }
                let stream_i = (w + k as usize) % streams.len();
                let result = if single {
                    let off = (k as usize * 7 + w * 131) % (pool.len() / 2);
                    client
                        .put_record(
                            &streams[stream_i],
                            &keys.next(),
                            pool.slice(off..off + size),
                        )
                        .await
                        .map(|_| 0usize)
                } else {
                    // Each producer walks the batches in its own order.
                    let batch = (k as usize / streams.len() + w) % PREPARED_BATCHES;
                    let req = &prepared[stream_i][batch];
                    client.put_records(req).await.map(|o| o.failed)
                };
                st.record(scheduled.elapsed());
                st.ops += 1;
                match result {
                    Ok(failed) => {
                        let ok = per_request - failed.min(per_request);
                        st.records += ok as u64;
                        st.bytes += (ok * size) as u64;
                        st.errors += failed as u64;
                    }
                    Err(e) => {
                        if st.errors == 0 {
                            eprintln!("put failed: {e:#}");
                        }
                        st.errors += 1;
                    }
                }
                k += 1;
            }
            st
        });
    }
    let mut total = Stats::new(if single { "single-put" } else { "put" });
    while let Some(st) = set.join_next().await {
        total.merge(&st?);
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

/// Reads every shard from TRIM_HORIZON, one task per shard per reader. Without a
/// deadline (get mode) each task stops once it has caught up; with one (mixed mode) it
/// keeps tailing until then.
pub(super) async fn get_phase(
    args: &Args,
    target: &Target,
    shards: &[(String, String)],
    tail_until: Option<TokioInstant>,
) -> Result<Stats> {
    let readers = if tail_until.is_some() {
        args.readers.max(1)
    } else {
        1
    };
    let n = shards.len() * readers;
    let clients = target.clients(args.api, n, args.connections).await?;
    let deadline = tail_until.unwrap_or_else(|| TokioInstant::now() + args.duration());
    let start = Instant::now();
    let mut set = JoinSet::new();
    for (i, mut client) in clients.into_iter().enumerate() {
        let (stream, shard) = shards[i % shards.len()].clone();
        let limit = args.get_limit;
        let tail = tail_until.is_some();
        set.spawn(async move {
            let mut st = Stats::new("get");
            let mut it = match client.iterator(&stream, &shard, Start::TrimHorizon).await {
                Ok(it) => it,
                Err(e) => {
                    eprintln!("GetShardIterator failed: {e:#}");
                    st.errors += 1;
                    return st;
                }
            };
            while TokioInstant::now() < deadline {
                let t = Instant::now();
                match client.get_records(&it, limit).await {
                    Ok(r) => {
                        st.record(t.elapsed());
                        st.ops += 1;
                        st.records += r.records;
                        st.bytes += r.bytes;
                        let Some(next) = r.next else { break };
                        it = next;
                        if r.records == 0 && r.millis_behind == 0 {
                            if !tail {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                    Err(e) => {
                        eprintln!("GetRecords failed: {e:#}");
                        st.errors += 1;
                        break;
                    }
                }
            }
            st.elapsed = start.elapsed();
            st
        });
    }
    let mut total = Stats::new("get");
    while let Some(st) = set.join_next().await {
        total.merge(&st?);
    }
    Ok(total)
}

/// Acknowledgement and delivery times of records in flight, matched by sequence number.
#[derive(Default)]
struct Matcher {
    pending: HashMap<String, Half>,
}

enum Half {
    Acked(Instant),
    Delivered(Instant),
}

impl Matcher {
    /// Notes one side; returns the ack-to-delivery latency once both are known
    /// (zero when the delivery came first).
    fn note(&mut self, seq: String, half: Half) -> Option<Duration> {
        match (self.pending.remove(&seq), half) {
            (Some(Half::Acked(a)), Half::Delivered(d))
            | (Some(Half::Delivered(d)), Half::Acked(a)) => Some(d.saturating_duration_since(a)),
            (Some(old), _) => {
                self.pending.insert(seq, old);
                None
            }
            (None, half) => {
                self.pending.insert(seq, half);
                None
            }
        }
    }
}

/// One gRPC Subscribe stream per shard from LATEST, and paced producers whose records
/// carry their send time. Reports the puts, and deliveries timed from the put's
/// acknowledgement (`deliver`) and from its send (`send-to-deliver`).
async fn subscribe_phase(
    args: &Args,
    target: &Target,
    shards: &[(String, String)],
) -> Result<Vec<Stats>> {
    let mut grpc = target
        .client(Api::Grpc)
        .await?
        .as_grpc()
        .ok_or_else(|| anyhow!("subscribe needs gRPC"))?;
    let epoch = Instant::now();
    let matcher = Arc::new(Mutex::new(Matcher::default()));
    let deliver = Arc::new(Mutex::new((
        Stats::new("deliver"),
        Stats::new("send-to-deliver"),
    )));
    let mut subs = JoinSet::new();
    let stop = TokioInstant::now() + args.duration() + Duration::from_secs(3);
    for (stream, shard) in shards {
        let req = pb::SubscribeRequest {
            stream_name: stream.clone(),
            shard_id: shard.clone(),
            starting_position: Some(pb::StartingPosition {
                r#type: pb::ShardIteratorType::Latest as i32,
                sequence_number: None,
                timestamp_ms: None,
            }),
        };
        let mut events = grpc
            .subscribe(req)
            .await
            .map_err(|s| anyhow!("Subscribe: {s}"))?
            .into_inner();
        let (matcher, deliver) = (matcher.clone(), deliver.clone());
        subs.spawn(async move {
            loop {
                let next = tokio::time::timeout_at(stop, events.message()).await;
                let event = match next {
                    Ok(Ok(Some(e))) => e,
                    Ok(Ok(None)) | Err(_) => return Ok::<(), anyhow::Error>(()),
                    Ok(Err(s)) => return Err(anyhow!("Subscribe stream: {s}")),
                };
                let now = Instant::now();
                let mut m = matcher.lock().map_err(|_| anyhow!("poisoned"))?;
                let mut d = deliver.lock().map_err(|_| anyhow!("poisoned"))?;
                for r in event.records {
                    let sent = r
                        .data
                        .get(..8)
                        .and_then(|b| b.try_into().ok())
                        .map(u64::from_le_bytes);
                    if let Some(ns) = sent {
                        let at = epoch + Duration::from_nanos(ns);
                        d.1.record(now.saturating_duration_since(at));
                        d.1.ops += 1;
                        d.1.records += 1;
                        d.1.bytes += r.data.len() as u64;
                    }
                    if let Some(lat) = m.note(r.sequence_number, Half::Delivered(now)) {
                        d.0.record(lat);
                        d.0.ops += 1;
                        d.0.records += 1;
                        d.0.bytes += r.data.len() as u64;
                    }
                }
            }
        });
    }
    // Producers: paced (default 10,000 records/s), each record stamped with its send time.
    let rate = args.rate.unwrap_or(10_000.0).max(1.0);
    let period = Duration::from_secs_f64(args.batch as f64 * args.concurrency as f64 / rate);
    let deadline = TokioInstant::now() + args.duration();
    let clients = target
        .clients(Api::Grpc, args.concurrency, args.connections)
        .await?;
    let start = Instant::now();
    let mut producers = JoinSet::new();
    let stream = shards.first().map(|(s, _)| s.clone()).unwrap_or_default();
    for (w, mut client) in clients.into_iter().enumerate() {
        let mut keys = Keys::new(&args.keys, args.key_count, w as u64 + 1)?;
        let (matcher, deliver, stream) = (matcher.clone(), deliver.clone(), stream.clone());
        let (batch, size) = (args.batch, args.record_size.max(8));
        producers.spawn(async move {
            let mut st = Stats::new("put");
            let first = TokioInstant::now() + period.mul_f64((w as f64 * 0.37) % 1.0);
            let mut k = 0u64;
            loop {
                let at = first + period.mul_f64(k as f64);
                if at >= deadline || TokioInstant::now() >= deadline {
                    break;
                }
                tokio::time::sleep_until(at).await;
                let sent = epoch.elapsed().as_nanos() as u64;
                let recs: Vec<(String, Bytes)> = (0..batch)
                    .map(|_| {
                        let mut d = vec![0u8; size];
                        d[..8].copy_from_slice(&sent.to_le_bytes());
                        (keys.next(), Bytes::from(d))
                    })
                    .collect();
                let req = PreparedPut::new(true, &stream, &recs);
                let result = client.put_records(&req).await;
                let acked = Instant::now();
                st.record(at.elapsed());
                st.ops += 1;
                match result {
                    Ok(o) => {
                        st.errors += o.failed as u64;
                        st.records += (batch - o.failed.min(batch)) as u64;
                        st.bytes += ((batch - o.failed.min(batch)) * size) as u64;
                        let mut m = match matcher.lock() {
                            Ok(m) => m,
                            Err(_) => break,
                        };
                        let mut late = Vec::new();
                        for (_, seq) in o
                            .sequence_numbers
                            .into_iter()
                            .filter(|(_, s)| !s.is_empty())
                        {
                            if let Some(lat) = m.note(seq, Half::Acked(acked)) {
                                late.push(lat);
                            }
                        }
                        drop(m);
                        // Delivered before the ack arrived: counted here, as zero latency.
                        if !late.is_empty() {
                            if let Ok(mut d) = deliver.lock() {
                                for lat in late {
                                    d.0.record(lat);
                                    d.0.ops += 1;
                                    d.0.records += 1;
                                    d.0.bytes += size as u64;
                                }
                            }
                        }
                    }
                    Err(e) => {
                        if st.errors == 0 {
                            eprintln!("put failed: {e:#}");
                        }
                        st.errors += 1;
                    }
                }
                k += 1;
            }
            st
        });
    }
    let mut put = Stats::new("put");
    while let Some(st) = producers.join_next().await {
        put.merge(&st?);
    }
    put.elapsed = start.elapsed();
    // Wait (bounded) for the last deliveries, then stop the consumers. The bound is only
    // reached when deliveries are really missing (each one then counts as an error), so it
    // is generous: a loaded machine may lag seconds behind the producers.
    let drain_until = TokioInstant::now() + Duration::from_secs(30);
    loop {
        let waiting = matcher
            .lock()
            .map_err(|_| anyhow!("poisoned"))?
            .pending
            .len();
        if waiting == 0 || TokioInstant::now() >= drain_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    subs.abort_all();
    while let Some(r) = subs.join_next().await {
        if let Ok(Err(e)) = r {
            return Err(e);
        }
    }
    let (mut d0, mut d1) = {
        let d = deliver.lock().map_err(|_| anyhow!("poisoned"))?;
        (d.0.clone(), d.1.clone())
    };
    let undelivered = matcher
        .lock()
        .map_err(|_| anyhow!("poisoned"))?
        .pending
        .len() as u64;
    d0.errors = undelivered;
    d0.elapsed = put.elapsed;
    d1.elapsed = put.elapsed;
    Ok(vec![put, d0, d1])
}

/// SIGKILLs (or SIGTERMs) the spawned server, starts it again on the same data directory, and times
/// how long until it logs its addresses and until a put and a read of every stream
/// succeed. Returns the put made after the restart and the two times in ms.
async fn restart(
    args: &Args,
    bin: &Path,
    dir: &Path,
    spawned: &mut Option<Spawned>,
    streams: &[String],
) -> Result<(Stats, (u64, u64))> {
    if let Some(s) = spawned.take() {
        match args.stop {
            super::Stop::Kill => s.kill()?,
            super::Stop::Term => {
                let t = Instant::now();
                s.terminate()?;
                eprintln!("clean stop took {} ms", t.elapsed().as_millis());
            }
        }
    }
    let started = Instant::now();
    let s = Spawned::start(bin, dir, &args.server_env)?;
    let listening = started.elapsed();
    let target = Target {
        grpc: Some(s.grpc.clone()),
        kinesis: Some(s.kinesis.clone()),
        signed: !args.unsigned,
    };
    *spawned = Some(s);
    let mut st = Stats::new("after-restart");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut client = loop {
        match target.client(args.api).await {
            Ok(c) => break c,
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    };
    for stream in streams {
        let shards = client.shards(stream).await?;
        let t = Instant::now();
        client
            .put_record(stream, "restart", Bytes::from_static(b"after restart"))
            .await
            .context("put after restart")?;
        st.record(t.elapsed());
        st.ops += 1;
        st.records += 1;
        for shard in shards.iter().take(1) {
            let it = client.iterator(stream, shard, Start::Latest).await?;
            client.get_records(&it, 1).await?;
        }
    }
    let serving = started.elapsed();
    st.elapsed = serving;
    Ok((
        st,
        (listening.as_millis() as u64, serving.as_millis() as u64),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_keys_take_their_share() {
        let mut k = Keys::new("hot:0.5", 1000, 3).unwrap();
        let hot = (0..10_000).filter(|_| k.next() == "hot").count();
        assert!((4_000..6_000).contains(&hot), "{hot}");
        let mut f = Keys::new("fixed", 1000, 3).unwrap();
        assert_eq!(f.next(), f.next());
        assert!(Keys::new("hot:2", 10, 1).is_err());
    }

    #[test]
    fn matcher_pairs_ack_and_delivery_in_either_order() {
        let mut m = Matcher::default();
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(3);
        assert_eq!(m.note("1".into(), Half::Acked(t0)), None);
        assert_eq!(
            m.note("1".into(), Half::Delivered(t1)),
            Some(Duration::from_millis(3))
        );
        assert_eq!(m.note("2".into(), Half::Delivered(t0)), None);
        assert_eq!(m.note("2".into(), Half::Acked(t1)), Some(Duration::ZERO));
        assert!(m.pending.is_empty());
    }
}
