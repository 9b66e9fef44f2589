//! The HTTP side: `POST /` with `X-Amz-Target`, content negotiation (JSON or CBOR),
//! SigV4 syntax checks, request ids, error bodies, and the event-stream response of
//! SubscribeToShard. Serves HTTP/1.1 and HTTP/2 (h2c with prior knowledge) on one port,
//! on a `sluice_net::Listener` (connection caps and timeouts).
//!
//! A request's body is read under the shared in-flight budget and the body timeout
//! (`sluice_net::body`), then parsed within the bounds of `value::ParseLimits`: on the
//! runtime thread when it is small, on the blocking pool (at most one parse per CPU at a
//! time) when it is not, so a large body never holds a runtime thread for long. Once
//! parsed, the request is charged for what it decoded into instead of its wire size
//! (whichever is larger), until its reply is ready.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sluice_broker::Broker;
use sluice_net::body::{BodyError, BodyLimits, read_body};
use sluice_net::http::HttpLimits;
use sluice_net::{Budget, Charge, ConnInfo, Listener, Throttled};
use tokio::sync::{Semaphore, watch};

use crate::errors::ApiError;
use crate::ops;
use crate::value::{self, ParseLimits, Value};

/// The target prefix of every Kinesis operation.
const TARGET_PREFIX: &str = "Kinesis_20131202.";
const JSON: &str = "application/x-amz-json-1.1";
const CBOR: &str = "application/x-amz-cbor-1.1";

/// Settings of the Kinesis listener.
#[derive(Debug, Clone)]
pub struct KinesisConfig {
    /// The largest request body accepted, bytes. Default 16 MiB: a 10 MiB record grows by a
    /// third in base64.
    pub body_bytes_max: usize,
    /// How long a request body may take to arrive. Default 60 s.
    pub body_timeout: Duration,
    /// The in-flight request bytes, shared with the gRPC listener. Default: a budget of
    /// its own of 256 MiB, 64 MiB per client, waiting 250 ms.
    pub budget: Budget,
    /// HTTP limits: header timeout, HTTP/2 streams per connection.
    pub http: HttpLimits,
}

impl Default for KinesisConfig {
    fn default() -> Self {
        KinesisConfig {
            body_bytes_max: 16 * 1024 * 1024,
            body_timeout: Duration::from_secs(60),
            budget: Budget::new(256 << 20, 64 << 20, Duration::from_millis(250)),
            http: HttpLimits {
                header_read_timeout: Duration::from_secs(30),
                h2_streams_max: 100,
            },
        }
    }
}

/// Bodies up to this size are parsed on the runtime thread; larger ones on the blocking
/// pool, so a 16 MiB body (tens of milliseconds of parse) never holds a runtime thread
/// for its whole parse. Measured against parsing every body inline (docs/BENCHMARKS.md,
/// "Issue 22, network limits"): the same ingest rate and normal-client latency within
/// the noise, since hostile bodies stop early at their tree limit either way.
const PARSE_INLINE_BYTES_MAX: usize = 64 * 1024;

/// The request's wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Cbor,
}

impl Format {
    fn of(headers: &HeaderMap) -> Format {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if ct.to_ascii_lowercase().contains("cbor") {
            Format::Cbor
        } else {
            Format::Json
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Json => JSON,
            Format::Cbor => CBOR,
        }
    }

    /// The tree and its estimated size.
    fn parse(self, body: &[u8], limits: ParseLimits) -> Result<(Value, usize), ApiError> {
        match self {
            Format::Json => value::from_json_limited(body, limits),
            Format::Cbor => value::from_cbor_limited(body, limits),
        }
    }

    fn encoder(self) -> fn(&Value) -> Vec<u8> {
        match self {
            Format::Json => value::to_json,
            Format::Cbor => value::to_cbor,
        }
    }
}

/// What every request handler shares.
#[derive(Clone)]
struct AppState {
    broker: Arc<Broker>,
    /// Turns true when the server stops: open SubscribeToShard streams end then.
    stop: watch::Receiver<bool>,
    budget: Budget,
    body: BodyLimits,
    /// One slot per CPU for parsing large bodies on the blocking pool.
    parse_slots: Arc<Semaphore>,
}

/// The Kinesis API as an axum router. When `stop` turns true, open SubscribeToShard
/// streams end, so a graceful shutdown is not held up by subscriptions.
pub fn router(broker: Arc<Broker>, config: &KinesisConfig, stop: watch::Receiver<bool>) -> Router {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    Router::new()
        .route("/", axum::routing::post(handle))
        .fallback(axum::routing::any(handle))
        .with_state(AppState {
            broker,
            stop,
            budget: config.budget.clone(),
            body: BodyLimits {
                bytes_max: config.body_bytes_max,
                timeout: config.body_timeout,
            },
            parse_slots: Arc::new(Semaphore::new(cpus)),
        })
}

/// Serves the Kinesis API on `listener` until `stop` turns true (or its sender is
/// dropped); in-flight requests finish first and subscriptions end.
pub async fn serve(
    listener: Listener,
    broker: Arc<Broker>,
    config: KinesisConfig,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = router(broker, &config, stop.clone());
    sluice_net::http::serve(listener, app, config.http, stopped(stop)).await;
    Ok(())
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn handle(State(state): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let headers = &parts.headers;
    let format = Format::of(headers);
    let request_id = request_id();
    let op = match target(headers) {
        Ok(op) => op,
        Err(e) => return error_response(format, &request_id, &e),
    };
    if let Err(e) = check_signature(headers) {
        return error_response(format, &request_id, &e);
    }
    let info = parts
        .extensions
        .get::<ConnInfo>()
        .cloned()
        .unwrap_or_else(|| ConnInfo::detached(std::net::SocketAddr::from(([0, 0, 0, 0], 0))));
    let mut charge = state.budget.none(&info.client);
    let parsed = match read_request(&state, headers, body, format, op, &mut charge).await {
        Ok(v) => v,
        Err(e) => return error_response(format, &request_id, &e),
    };
    tracing::debug!(op, request_id, "kinesis request");
    if op == "SubscribeToShard" {
        drop(charge);
        return subscribe(&state, &parsed, format, &request_id).await;
    }
    let reply = match ops::dispatch(&state.broker, op, &parsed).await {
        Ok(Some(v)) => ok_response(format, &request_id, (format.encoder())(&v)),
        Ok(None) => ok_response(format, &request_id, Vec::new()),
        Err(e) => error_response(format, &request_id, &e),
    };
    drop(charge);
    reply
}

/// Reads and parses the body, charging it to the budget (module docs).
async fn read_request(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    format: Format,
    op: &str,
    charge: &mut Charge,
) -> Result<Value, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let body = read_body(body, declared, state.body, charge)
        .await
        .map_err(|e| body_error(e, op))?;
    let limits = ParseLimits::for_body(body.len(), state.broker.config().put_records_max);
    let (parsed, tree_bytes) = if body.len() <= PARSE_INLINE_BYTES_MAX {
        format.parse(&body, limits)?
    } else {
        let _slot = state
            .parse_slots
            .acquire()
            .await
            .map_err(|_| ApiError::internal("the parse slots are closed"))?;
        tokio::task::spawn_blocking(move || format.parse(&body, limits))
            .await
            .map_err(|e| ApiError::internal(format!("parsing a request failed: {e}")))??
    };
    // The body is gone; what stays is the tree.
    if tree_bytes > charge.bytes() {
        let more = tree_bytes - charge.bytes();
        charge.grow(more).await.map_err(|why| throttled(why, op))?;
    } else {
        charge.shrink_to(tree_bytes);
    }
    Ok(parsed)
}

async fn subscribe(state: &AppState, parsed: &Value, format: Format, request_id: &str) -> Response {
    match ops::subscribe_to_shard(
        &state.broker,
        parsed,
        format.encoder(),
        format.content_type(),
    )
    .await
    {
        Ok(stream) => {
            let stream = futures_util::StreamExt::take_until(stream, stopped(state.stop.clone()));
            let mut r = Body::from_stream(stream).into_response();
            set(
                &mut r,
                header::CONTENT_TYPE.as_str(),
                "application/vnd.amazon.eventstream",
            );
            set(&mut r, "x-amzn-RequestId", request_id);
            r
        }
        Err(e) => error_response(format, request_id, &e),
    }
}

/// The error a client gets when its body could not be read.
fn body_error(e: BodyError, op: &str) -> ApiError {
    match e {
        BodyError::TooLarge { bytes_max } => ApiError {
            status: 413,
            ..ApiError::validation(format!(
                "The request body is larger than {bytes_max} bytes, the largest this server reads."
            ))
        },
        BodyError::Throttled(why) => throttled(why, op),
        BodyError::TimedOut => ApiError {
            status: 408,
            ..ApiError::new(
                "RequestTimeoutException",
                "The request body did not arrive within the server's body timeout.",
            )
        },
        BodyError::Failed => ApiError::serialization("The request body could not be read."),
    }
}

/// A request refused by the in-flight budget: throttled as Kinesis throttles a shard for
/// data calls, as it throttles the control plane for the others. Both are retried with
/// backoff by the AWS SDKs.
fn throttled(why: Throttled, op: &str) -> ApiError {
    let kind = match op {
        "PutRecord" | "PutRecords" | "GetRecords" | "GetShardIterator" | "SubscribeToShard" => {
            "ProvisionedThroughputExceededException"
        }
        _ => "LimitExceededException",
    };
    ApiError::new(kind, format!("Rate exceeded: {why}."))
}

/// The operation named by `X-Amz-Target`.
fn target(headers: &HeaderMap) -> Result<&str, ApiError> {
    let t = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    t.strip_prefix(TARGET_PREFIX)
        .filter(|op| !op.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                "UnknownOperationException",
                if t.is_empty() {
                    "Missing X-Amz-Target header".to_owned()
                } else {
                    format!("Unknown target {t}")
                },
            )
        })
}

/// Accepts any credentials, unsigned requests included; a request that is signed must be
/// signed in the SigV4 shape, as the service checks before it looks at the signature.
fn check_signature(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(());
    };
    let complete = auth.starts_with("AWS4-HMAC-SHA256 ")
        && ["Credential=", "SignedHeaders=", "Signature="]
            .iter()
            .all(|p| auth.contains(p))
        && (headers.contains_key("x-amz-date") || headers.contains_key(header::DATE));
    if complete {
        Ok(())
    } else {
        Err(ApiError::new(
            "IncompleteSignatureException",
            "Authorization header requires AWS4-HMAC-SHA256 with Credential, SignedHeaders and Signature, and an X-Amz-Date or Date header.",
        ))
    }
}

fn ok_response(format: Format, request_id: &str, body: Vec<u8>) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    set(&mut r, header::CONTENT_TYPE.as_str(), format.content_type());
    set(&mut r, "x-amzn-RequestId", request_id);
    r
}

fn error_response(format: Format, request_id: &str, e: &ApiError) -> Response {
    if e.status >= 500 {
        let detail = e.detail.as_deref().unwrap_or(&e.message);
        tracing::error!(kind = e.kind, request_id, error = %detail, "kinesis request failed");
    }
    let body = (format.encoder())(&Value::map([
        ("__type", Value::str(e.kind)),
        ("message", Value::str(&e.message)),
    ]));
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (status, body).into_response();
    set(&mut r, header::CONTENT_TYPE.as_str(), format.content_type());
    set(&mut r, "x-amzn-RequestId", request_id);
    set(&mut r, "x-amzn-ErrorType", e.kind);
    r
}

fn set(r: &mut Response, name: &str, value: &str) {
    if let (Ok(n), Ok(v)) = (
        header::HeaderName::try_from(name),
        HeaderValue::from_str(value),
    ) {
        r.headers_mut().insert(n, v);
    }
}

/// A random UUID (version 4) for `x-amzn-RequestId`.
fn request_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        b = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
            .to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}
