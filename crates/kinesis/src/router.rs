//! The HTTP side: `POST /` with `X-Amz-Target`, content negotiation (JSON or CBOR),
//! SigV4 syntax checks, request ids, error bodies, and the event-stream response of
//! SubscribeToShard. Serves HTTP/1.1 and HTTP/2 (h2c with prior knowledge) on one port.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sluice_broker::Broker;
use tokio::sync::watch;

use crate::errors::ApiError;
use crate::ops;
use crate::value::{self, Value};

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
}

impl Default for KinesisConfig {
    fn default() -> Self {
        KinesisConfig {
            body_bytes_max: 16 * 1024 * 1024,
        }
    }
}

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

    fn parse(self, body: &[u8]) -> Result<Value, ApiError> {
        match self {
            Format::Json => value::from_json(body),
            Format::Cbor => value::from_cbor(body),
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
}

/// The Kinesis API as an axum router. When `stop` turns true, open SubscribeToShard
/// streams end, so a graceful shutdown is not held up by subscriptions.
pub fn router(broker: Arc<Broker>, config: &KinesisConfig, stop: watch::Receiver<bool>) -> Router {
    Router::new()
        .route("/", axum::routing::post(handle))
        .fallback(axum::routing::any(handle))
        .layer(DefaultBodyLimit::max(config.body_bytes_max))
        .with_state(AppState { broker, stop })
}

/// Serves the Kinesis API on `listener` until `stop` turns true (or its sender is
/// dropped); in-flight requests finish first and subscriptions end.
pub async fn serve(
    listener: tokio::net::TcpListener,
    broker: Arc<Broker>,
    config: KinesisConfig,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = router(broker, &config, stop.clone());
    // Small replies must not wait for the client's delayed ACK (Nagle: up to 40 ms).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(stopped(stop))
        .await
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn handle(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let broker = &state.broker;
    let format = Format::of(&headers);
    let request_id = request_id();
    let op = match target(&headers) {
        Ok(op) => op,
        Err(e) => return error_response(format, &request_id, &e),
    };
    if let Err(e) = check_signature(&headers) {
        return error_response(format, &request_id, &e);
    }
    let parsed = match format.parse(&body) {
        Ok(v) => v,
        Err(e) => return error_response(format, &request_id, &e),
    };
    tracing::debug!(op, request_id, "kinesis request");
    if op == "SubscribeToShard" {
        return match ops::subscribe_to_shard(
            broker,
            &parsed,
            format.encoder(),
            format.content_type(),
        )
        .await
        {
            Ok(stream) => {
                let stream =
                    futures_util::StreamExt::take_until(stream, stopped(state.stop.clone()));
                let mut r = Body::from_stream(stream).into_response();
                set(
                    &mut r,
                    header::CONTENT_TYPE.as_str(),
                    "application/vnd.amazon.eventstream",
                );
                set(&mut r, "x-amzn-RequestId", &request_id);
                r
            }
            Err(e) => error_response(format, &request_id, &e),
        };
    }
    match ops::dispatch(broker, op, &parsed).await {
        Ok(Some(v)) => ok_response(format, &request_id, (format.encoder())(&v)),
        Ok(None) => ok_response(format, &request_id, Vec::new()),
        Err(e) => error_response(format, &request_id, &e),
    }
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
