//! Serving an HTTP service (the Kinesis API) on a [`Listener`]: HTTP/1.1 and h2c (prior
//! knowledge) on one port through hyper-util's `auto` builder, with the limits the
//! connection layer cannot see:
//!
//! - HTTP/1.1: `header_read_timeout` for each request's headers, counted from when the
//!   connection starts waiting for them, so it also closes a keep-alive connection that
//!   stays silent between requests;
//! - HTTP/2: `max_concurrent_streams` per connection.
//!
//! Each request carries its connection's [`ConnInfo`] as an extension (for the budget).
//! On `stop`, accepting ends and every connection is asked to finish (GOAWAY, or close
//! after the current HTTP/1.1 response); `serve` returns once all have.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;

use crate::conn::ConnInfo;
use crate::listener::Listener;

/// The HTTP limits of a listener.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// How long an HTTP/1.1 request's headers may take to arrive.
    pub header_read_timeout: Duration,
    /// Streams open at once on one HTTP/2 connection.
    pub h2_streams_max: u32,
}

/// Serves `service` on `listener` until `stop` resolves, then waits for open connections
/// to finish.
pub async fn serve<S, B>(
    listener: Listener,
    service: S,
    limits: HttpLimits,
    stop: impl Future<Output = ()>,
) where
    S: tower_service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_streams_max);
    let graceful = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let (conn, info) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        let service = service.clone();
        let per_request = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            info.request_arrived();
            req.extensions_mut().insert::<ConnInfo>(info.clone());
            let mut service = service.clone();
            tower_service::Service::call(&mut service, req)
        });
        let connection = builder
            .serve_connection(TokioIo::new(conn), per_request)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
