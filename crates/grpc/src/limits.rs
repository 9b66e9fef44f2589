//! The request side of the gRPC listener's limits, as a tower layer on tonic's server
//! ([`RequestLimitsLayer`]): each request's body is charged to the shared in-flight
//! budget (`sluice_net::Budget`) and must arrive within the body timeout.
//!
//! A gRPC message announces its length in its 5-byte prefix, so a message is charged
//! for all of it as soon as its prefix arrives, before its bytes are buffered by tonic;
//! the charge is held until the call has produced its reply (so a decoded PutRecords
//! waiting for its sync still counts), then given back. A message longer than the
//! largest the server decodes is not charged: tonic refuses it on its prefix.
//!
//! Over budget, the call fails with RESOURCE_EXHAUSTED and, in `x-sluice-error`,
//! `ProvisionedThroughputExceededException` for data calls or `LimitExceededException`
//! for the others (what Kinesis answers when it throttles each kind); a body that does
//! not arrive in time fails with DEADLINE_EXCEEDED and `RequestTimeoutException`.
//! Both are safe to retry: nothing of the request was applied.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use sluice_net::{Budget, Charge, ConnInfo, Throttled};
use tokio::time::Sleep;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::{Code, Status};

use crate::status::with_reason;

/// The gRPC listener's request limits.
#[derive(Debug, Clone)]
pub struct RequestLimitsLayer {
    budget: Budget,
    body_timeout: Duration,
    message_bytes_max: usize,
}

impl RequestLimitsLayer {
    /// Charges bodies to `budget`; each must arrive within `body_timeout`; messages over
    /// `message_bytes_max` are left to tonic to refuse.
    pub fn new(budget: Budget, body_timeout: Duration, message_bytes_max: usize) -> Self {
        RequestLimitsLayer {
            budget,
            body_timeout,
            message_bytes_max,
        }
    }
}

impl<S> tower_layer::Layer<S> for RequestLimitsLayer {
    type Service = RequestLimits<S>;

    fn layer(&self, inner: S) -> RequestLimits<S> {
        RequestLimits {
            inner,
            limits: self.clone(),
        }
    }
}

/// The service [`RequestLimitsLayer`] makes.
#[derive(Debug, Clone)]
pub struct RequestLimits<S> {
    inner: S,
    limits: RequestLimitsLayer,
}

impl<S, R> Service<http::Request<Body>> for RequestLimits<S>
where
    S: Service<http::Request<Body>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        // Requests that did not come through `sluice_net::Listener` (none in the server)
        // have no client to charge.
        let Some(info) = req.extensions().get::<ConnInfo>().cloned() else {
            return Box::pin(self.inner.call(req));
        };
        info.request_arrived();
        let limits = &self.limits;
        let charge = Arc::new(Mutex::new(limits.budget.none(&info.client)));
        let throttled_reason = throttled_reason(req.uri().path());
        let req = req.map(|body| {
            Body::new(LimitedBody {
                inner: body,
                budget: limits.budget.clone(),
                info,
                charge: charge.clone(),
                deadline: Box::pin(tokio::time::sleep(limits.body_timeout)),
                framing: Framing::default(),
                message_bytes_max: limits.message_bytes_max,
                throttled_reason,
                held: None,
                waiting: None,
            })
        });
        let reply = self.inner.call(req);
        Box::pin(async move {
            let reply = reply.await;
            drop(charge);
            reply
        })
    }
}

/// The Kinesis exception a throttled call names: data calls are throttled as Kinesis
/// throttles a shard, the rest as it throttles the control plane.
fn throttled_reason(path: &str) -> &'static str {
    let method = path.rsplit('/').next().unwrap_or("");
    match method {
        "PutRecord" | "PutRecords" | "GetRecords" | "GetShardIterator" | "Subscribe" => {
            "ProvisionedThroughputExceededException"
        }
        _ => "LimitExceededException",
    }
}

/// The status of a call refused by the budget.
pub fn throttled_status(reason: &'static str, why: Throttled) -> Status {
    with_reason(Code::ResourceExhausted, reason, &why.to_string())
}

/// The status of a call whose body did not arrive within the body timeout.
pub fn body_timeout_status() -> Status {
    with_reason(
        Code::DeadlineExceeded,
        "RequestTimeoutException",
        "The request body did not arrive within the server's body timeout.",
    )
}

/// Where the bytes of a stream of gRPC messages are: in a 5-byte prefix or in a body.
#[derive(Debug, Default)]
struct Framing {
    prefix: [u8; 5],
    prefix_len: usize,
    message_left: usize,
}

impl Framing {
    /// Reads `data`; returns the lengths (prefix included) of the messages whose prefix
    /// ended in it.
    fn scan(&mut self, mut data: &[u8], mut started: impl FnMut(usize)) {
        while !data.is_empty() {
            if self.message_left > 0 {
                let n = self.message_left.min(data.len());
                self.message_left -= n;
                data = &data[n..];
                continue;
            }
            let n = (5 - self.prefix_len).min(data.len());
            self.prefix[self.prefix_len..self.prefix_len + n].copy_from_slice(&data[..n]);
            self.prefix_len += n;
            data = &data[n..];
            if self.prefix_len == 5 {
                let [_, a, b, c, d] = self.prefix;
                let len = u32::from_be_bytes([a, b, c, d]) as usize;
                self.prefix_len = 0;
                self.message_left = len;
                started(5 + len);
            }
        }
    }
}

type Waiting = Pin<Box<dyn Future<Output = Result<Charge, Throttled>> + Send>>;

/// A request body charged to the budget and bounded in time (module docs).
struct LimitedBody {
    inner: Body,
    budget: Budget,
    info: ConnInfo,
    charge: Arc<Mutex<Charge>>,
    deadline: Pin<Box<Sleep>>,
    framing: Framing,
    message_bytes_max: usize,
    throttled_reason: &'static str,
    /// A frame whose messages wait for the budget before it is handed on.
    held: Option<Frame<Bytes>>,
    waiting: Option<Waiting>,
}

impl LimitedBody {
    /// Bytes of the messages that start in `data`, minus those tonic refuses anyway.
    fn starting_message_bytes(&mut self, data: &[u8]) -> usize {
        let max = self.message_bytes_max;
        let mut bytes = 0usize;
        self.framing.scan(data, |len| {
            if len - 5 <= max {
                bytes = bytes.saturating_add(len);
            }
        });
        bytes
    }

    fn absorb(&self, more: Charge) {
        self.charge
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .absorb(more);
    }

    /// Waits for the budget (at most the budget's own wait) for the held frame.
    fn poll_waiting(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let Some(waiting) = &mut self.waiting else {
            return Poll::Ready(None);
        };
        match waiting.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(more)) => {
                self.waiting = None;
                self.absorb(more);
                Poll::Ready(self.held.take().map(Ok))
            }
            Poll::Ready(Err(why)) => {
                self.waiting = None;
                self.held = None;
                Poll::Ready(Some(Err(throttled_status(self.throttled_reason, why))))
            }
        }
    }
}

impl http_body::Body for LimitedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.held = None;
            this.waiting = None;
            return Poll::Ready(Some(Err(body_timeout_status())));
        }
        if this.waiting.is_some() {
            return this.poll_waiting(cx);
        }
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        let bytes = frame
            .data_ref()
            .map_or(0, |data| this.starting_message_bytes(data));
        if bytes == 0 {
            return Poll::Ready(Some(Ok(frame)));
        }
        let budget = this.budget.clone();
        let client = this.info.client.clone();
        this.waiting = Some(Box::pin(async move { budget.charge(&client, bytes).await }));
        this.held = Some(frame);
        this.poll_waiting(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.held {
            Some(_) => SizeHint::default(),
            None => self.inner.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_found_by_their_prefix_however_the_frames_split_them() {
        let mut stream = Vec::new();
        for len in [0usize, 3, 70_000] {
            stream.push(0u8);
            stream.extend_from_slice(&(len as u32).to_be_bytes());
            stream.extend(std::iter::repeat_n(7u8, len));
        }
        for split in [1, 2, 4, 5, 6, 1000, stream.len()] {
            let mut framing = Framing::default();
            let mut lengths = Vec::new();
            for chunk in stream.chunks(split) {
                framing.scan(chunk, |len| lengths.push(len));
            }
            assert_eq!(lengths, vec![5, 8, 70_005], "split {split}");
        }
    }

    #[test]
    fn data_calls_are_throttled_as_data_calls() {
        assert_eq!(
            throttled_reason("/sluice.v1.Sluice/PutRecords"),
            "ProvisionedThroughputExceededException"
        );
        assert_eq!(
            throttled_reason("/sluice.v1.Sluice/CreateStream"),
            "LimitExceededException"
        );
        let status = throttled_status("LimitExceededException", Throttled::Server);
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(
            crate::status::reason(&status),
            Some("LimitExceededException")
        );
    }
}
