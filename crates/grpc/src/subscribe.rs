//! Subscribe, served as a response body this module writes itself.
//!
//! The broker counts an event's record bytes against the subscription budgets until the
//! front-end drops the event's [`sluice_broker::HeldBytes`], which it must keep until the
//! transport has sent the event. Through tonic's streaming machinery the front-end cannot
//! know when that is: tonic encodes each message into a buffer of its own and hands the
//! frozen bytes to hyper. So each event here is encoded into one chunk of exactly its
//! size (the 5-byte gRPC message header, then prost's encoding) that owns the held bytes
//! (`Bytes::from_owner`): they go back to the budget when hyper's HTTP/2 stream has sent
//! the chunk and drops it, neither earlier (a client that does not read keeps them) nor
//! later (a client that reads never waits on its own old events).
//!
//! The call itself is the gRPC protocol as tonic speaks it: one request message (no
//! compression is offered, so a compressed one is refused), `content-type:
//! application/grpc`, a message per event, and trailers with the status (`grpc-status`,
//! `grpc-message`, `x-sluice-error`): OK when the subscription ends or the server shuts
//! down, the broker error's status when it ends with one. A call refused before it starts
//! is answered with the status alone, as tonic does.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes};
use http_body::Frame;
use http_body_util::{BodyExt, Limited, StreamBody};
use prost::Message;
use sluice_broker::{Delivery, HeldBytes, Subscription};
use sluice_proto::v1 as pb;
use tokio::sync::watch;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http;

use crate::convert;
use crate::service::SluiceService;
use crate::status::to_status;

/// The path of the method served here.
pub const SUBSCRIBE_PATH: &str = "/sluice.v1.Sluice/Subscribe";

/// The gRPC message header: a compression flag and a 32-bit big-endian length.
const MESSAGE_HEADER_BYTES: usize = 5;

/// Serves one Subscribe call: reads the request, opens the subscription, and answers with
/// its events as they come.
pub async fn serve(
    service: Arc<SluiceService>,
    request: http::Request<Body>,
    message_bytes_max: usize,
) -> http::Response<Body> {
    let opened = match read_request(request, message_bytes_max).await {
        Ok(r) => service.open_subscription(r).await,
        Err(status) => Err(status),
    };
    match opened {
        Ok((subscription, shutdown)) => {
            let mut response = http::Response::new(events(subscription, shutdown));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/grpc"),
            );
            response
        }
        Err(status) => status.into_http(),
    }
}

/// The request message: one uncompressed gRPC message of at most `bytes_max` bytes.
async fn read_request(
    request: http::Request<Body>,
    bytes_max: usize,
) -> Result<pb::SubscribeRequest, Status> {
    let invalid = |why: &str| {
        to_status(sluice_broker::Error::InvalidArgument(format!(
            "Invalid SubscribeRequest: {why}."
        )))
    };
    let limited = Limited::new(request.into_body(), bytes_max + MESSAGE_HEADER_BYTES);
    let mut body = limited
        .collect()
        .await
        .map_err(|_| invalid("the request body could not be read or is too large"))?
        .to_bytes();
    if body.len() < MESSAGE_HEADER_BYTES {
        return Err(invalid("no request message"));
    }
    let compressed = body.get_u8();
    let len = body.get_u32() as usize;
    if compressed != 0 {
        return Err(Status::unimplemented(
            "compressed requests are not supported by this server",
        ));
    }
    if len != body.len() {
        return Err(invalid("not exactly one request message"));
    }
    pb::SubscribeRequest::decode(body).map_err(|_| invalid("not a SubscribeRequest message"))
}

/// The response body: a message per event, then the trailers.
fn events(subscription: Subscription, shutdown: watch::Receiver<bool>) -> Body {
    let frames = futures_util::stream::unfold(Some((subscription, shutdown)), |state| async move {
        let (mut subscription, mut shutdown) = state?;
        let next = tokio::select! {
            biased;
            // A shutdown (or a server gone) ends the call normally.
            _ = shutdown.wait_for(|stop| *stop) => None,
            next = subscription.next() => next,
        };
        let frame = match next {
            Some(Ok(delivery)) => Frame::data(message(delivery)),
            Some(Err(e)) => return Some((Ok(Frame::trailers(trailers(&to_status(e)))), None)),
            None => return Some((Ok(Frame::trailers(trailers(&Status::ok("")))), None)),
        };
        Some((Ok::<_, Infallible>(frame), Some((subscription, shutdown))))
    });
    Body::new(StreamBody::new(frames))
}

/// One event as a gRPC message, in a chunk of exactly its size that holds the event's
/// bytes against the budgets until it is dropped.
pub fn message(delivery: Delivery) -> Bytes {
    let event = convert::subscribe_event(delivery.event);
    let len = event.encoded_len();
    let mut bytes = Vec::with_capacity(MESSAGE_HEADER_BYTES + len);
    bytes.put_u8(0);
    bytes.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    event.encode_raw(&mut bytes);
    debug_assert_eq!(bytes.len(), MESSAGE_HEADER_BYTES + len);
    Bytes::from_owner(HeldChunk {
        bytes,
        _held: delivery.held,
    })
}

/// Encoded bytes and the budget they hold.
struct HeldChunk {
    bytes: Vec<u8>,
    _held: HeldBytes,
}

impl AsRef<[u8]> for HeldChunk {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// The trailers that end a call with `status`.
fn trailers(status: &Status) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    if let Err(e) = status.add_header(&mut headers) {
        tracing::warn!(error = %e, "a status could not be written as trailers");
        let _ = Status::internal("the call failed").add_header(&mut headers);
    }
    headers
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use sluice_broker::{RecordView, SubscribeEvent, TimestampMs};

    use super::*;

    #[test]
    fn an_event_is_one_grpc_message_of_prosts_encoding() {
        let event = SubscribeEvent {
            records: (0..3u8)
                .map(|i| RecordView {
                    sequence_number: format!("4959{i}"),
                    approximate_arrival_timestamp: TimestampMs(1_700_000_000_000 + u64::from(i)),
                    partition_key: format!("key-{i}"),
                    data: Bytes::from(vec![i; 70_000]),
                })
                .collect(),
            continuation_sequence_number: "49590".into(),
            millis_behind_latest: 12,
            child_shards: Vec::new(),
        };
        let expected = convert::subscribe_event(event.clone()).encode_to_vec();
        let chunk = message(Delivery {
            event,
            held: HeldBytes::none(),
        });
        assert_eq!(chunk[0], 0, "not compressed");
        assert_eq!(&chunk[1..5], (expected.len() as u32).to_be_bytes());
        assert_eq!(&chunk[5..], expected.as_slice());
    }
}
