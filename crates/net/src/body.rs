//! Reading a whole HTTP request body (the Kinesis API's JSON or CBOR) under the budget,
//! a size limit and a deadline.
//!
//! A body with a `Content-Length` is charged for all of it before its first byte is
//! read, and refused at once if it declares more than the limit; one without is charged
//! frame by frame. The whole body must arrive within the deadline: a client that sends
//! half and stalls gives its bytes back when the deadline passes.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::Body;

use crate::budget::{Charge, Throttled};

/// The limits of one body.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// The largest body accepted.
    pub bytes_max: usize,
    /// How long the whole body may take to arrive.
    pub timeout: Duration,
}

/// Why a body was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// It is larger than [`BodyLimits::bytes_max`] (declared or sent).
    TooLarge {
        /// The limit.
        bytes_max: usize,
    },
    /// The budget refused it.
    Throttled(Throttled),
    /// It did not arrive within [`BodyLimits::timeout`].
    TimedOut,
    /// The connection failed while it was read (logged; the client is gone or broken).
    Failed,
}

/// Reads `body` (which declared `declared` bytes, if it did), charging it to `charge`.
pub async fn read_body<B>(
    body: B,
    declared: Option<usize>,
    limits: BodyLimits,
    charge: &mut Charge,
) -> Result<Bytes, BodyError>
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    if let Some(n) = declared {
        if n > limits.bytes_max {
            return Err(BodyError::TooLarge {
                bytes_max: limits.bytes_max,
            });
        }
    }
    let read = async {
        if let Some(n) = declared {
            charge.grow(n).await.map_err(BodyError::Throttled)?;
        }
        collect(body, declared, limits.bytes_max, charge).await
    };
    tokio::time::timeout(limits.timeout, read)
        .await
        .unwrap_or(Err(BodyError::TimedOut))
}

async fn collect<B>(
    body: B,
    declared: Option<usize>,
    bytes_max: usize,
    charge: &mut Charge,
) -> Result<Bytes, BodyError>
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let mut body = std::pin::pin!(body);
    // Chunks are copied into one buffer as they come: a chunk is a slice of the
    // connection's read buffer, and holding many small chunks would hold many buffers
    // (a 15 MB body trickled in small reads pinned several times its size). A body that
    // arrives in one chunk is kept as it is.
    let mut first: Option<Bytes> = None;
    let mut all: Option<BytesMut> = None;
    let mut total = 0usize;
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let frame = frame.map_err(|e| {
            tracing::debug!(error = %e, "a request body could not be read");
            BodyError::Failed
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        total = total.saturating_add(data.len());
        if total > bytes_max {
            return Err(BodyError::TooLarge { bytes_max });
        }
        if total > declared.unwrap_or(0) {
            let more = total - charge.bytes().max(declared.unwrap_or(0));
            charge.grow(more).await.map_err(BodyError::Throttled)?;
        }
        match (&mut all, first.take()) {
            (Some(all), _) => all.extend_from_slice(&data),
            (None, None) => first = Some(data),
            (None, Some(head)) => {
                let mut buffer = BytesMut::with_capacity(declared.unwrap_or(0).max(total));
                buffer.extend_from_slice(&head);
                buffer.extend_from_slice(&data);
                all = Some(buffer);
            }
        }
    }
    Ok(match (all, first) {
        (Some(all), _) => all.freeze(),
        (None, Some(only)) => only,
        (None, None) => Bytes::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::Budget;
    use crate::gate::Client;
    use http_body_util::{Full, StreamBody};
    use std::net::IpAddr;

    fn limits() -> BodyLimits {
        BodyLimits {
            bytes_max: 1000,
            timeout: Duration::from_secs(30),
        }
    }

    fn budget() -> (Budget, std::sync::Arc<Client>) {
        (
            Budget::new(1 << 20, 1 << 20, Duration::from_secs(1)),
            Client::detached(IpAddr::from([127, 0, 0, 2])),
        )
    }

    type FrameResult = Result<http_body::Frame<Bytes>, std::convert::Infallible>;
    type Frames = Vec<FrameResult>;

    fn chunked(
        parts: &[&'static [u8]],
    ) -> StreamBody<futures_util::stream::Iter<std::vec::IntoIter<FrameResult>>> {
        let frames: Frames = parts
            .iter()
            .map(|p| Ok(http_body::Frame::data(Bytes::from_static(p))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn bodies_are_read_whole_and_charged() {
        let (budget, client) = budget();
        let mut charge = budget.none(&client);
        let body = read_body(chunked(&[b"ab", b"cd"]), None, limits(), &mut charge)
            .await
            .unwrap();
        assert_eq!(&body[..], b"abcd");
        assert_eq!(charge.bytes(), 4);
        let mut charge = budget.none(&client);
        let body = read_body(
            Full::new(Bytes::from_static(b"xyz")),
            Some(3),
            limits(),
            &mut charge,
        )
        .await
        .unwrap();
        assert_eq!(&body[..], b"xyz");
        assert_eq!(charge.bytes(), 3);
    }

    #[tokio::test]
    async fn too_large_bodies_are_refused_declared_or_sent() {
        let (budget, client) = budget();
        let mut charge = budget.none(&client);
        let e = read_body(Full::new(Bytes::new()), Some(1001), limits(), &mut charge).await;
        assert_eq!(e, Err(BodyError::TooLarge { bytes_max: 1000 }));
        assert_eq!(charge.bytes(), 0);
        let big: &'static [u8] = &[0u8; 600];
        let e = read_body(chunked(&[big, big]), None, limits(), &mut charge).await;
        assert_eq!(e, Err(BodyError::TooLarge { bytes_max: 1000 }));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_times_out() {
        use futures_util::StreamExt;
        let (budget, client) = budget();
        let mut charge = budget.none(&client);
        // Half of what it declares, then nothing: with the clock paused, only the
        // deadline can end the wait.
        let half: Frames = vec![Ok(http_body::Frame::data(Bytes::from_static(b"half")))];
        let stalled = futures_util::stream::iter(half).chain(futures_util::stream::pending());
        let e = read_body(StreamBody::new(stalled), Some(8), limits(), &mut charge).await;
        assert_eq!(e, Err(BodyError::TimedOut));
    }

    #[tokio::test]
    async fn a_body_over_the_clients_share_is_throttled_before_it_is_read() {
        let client = Client::detached(IpAddr::from([127, 0, 0, 2]));
        let budget = Budget::new(1 << 20, 100, Duration::from_secs(1));
        let mut charge = budget.none(&client);
        let e = read_body(Full::new(Bytes::new()), Some(500), limits(), &mut charge).await;
        assert_eq!(e, Err(BodyError::Throttled(Throttled::Client)));
    }
}
