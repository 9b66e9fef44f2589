//! GetRecords written straight from the broker's page.
//!
//! The generated handler builds a `pb::GetRecordsResponse`: per record a message struct,
//! a 56-character sequence-number `String` and a partition-key `String`, which prost then
//! measures, copies and drops, each pass over 10,000 records' worth of scattered heap
//! objects. Here the reply is written field by field into tonic's encode buffer from the
//! page itself ([`sluice_broker::GetRecordsPage`]): digits from a stack buffer, key and
//! data from the segment's memory map, so what is left per byte is the read's CRC check
//! and this one copy on the way to the socket. The bytes are exactly prost's encoding of the same response
//! (same fields, same order, defaults omitted alike), which the tests check.
//!
//! [`SluiceRoutes`] serves `/sluice.v1.Sluice/GetRecords` this way through tonic's own
//! unary machinery (framing, limits, status codes) and hands every other path to the
//! generated server.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{BufMut, BytesMut};
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
use sluice_broker::{GetRecordsPage, ReadRecord, seqnum};
use sluice_proto::codec::RequestDecoder;
use sluice_proto::v1 as pb;
use sluice_proto::v1::sluice_server::SluiceServer;
use tonic::body::Body;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::{NamedService, UnaryService};
use tonic::{Request, Response, Status};

use crate::SERVICE_NAME;
use crate::convert;
use crate::service::SluiceService;
use crate::subscribe::SUBSCRIBE_PATH;

/// The path of the method served here.
pub const GET_RECORDS_PATH: &str = "/sluice.v1.Sluice/GetRecords";

/// Room for one record's framing besides its key and data: the record's own tag and
/// length (1 + 5), the sequence number's (1 + 1 + up to 58 digits), the timestamp's
/// (1 + 10), the data's and the key's tags and lengths (2 x (1 + 5)).
const RECORD_FRAMING_MAX: usize = 6 + 60 + 11 + 12;

/// The `sluice.v1.Sluice` service: the generated server for every method but
/// GetRecords, which is written from the broker's page (module docs), and Subscribe,
/// whose body `subscribe` writes so that each event holds its budget until sent.
/// GetRecords gets the same message size limits as the generated server; compression
/// is not configured on either (were it ever enabled on the generated server, it would
/// have to be applied here too).
#[derive(Debug, Clone)]
pub struct SluiceRoutes {
    generated: SluiceServer<SluiceService>,
    service: Arc<SluiceService>,
    message_bytes_max: usize,
}

impl SluiceRoutes {
    /// Serves `service`, reading and writing messages of at most `message_bytes_max`.
    pub fn new(service: SluiceService, message_bytes_max: usize) -> SluiceRoutes {
        let service = Arc::new(service);
        SluiceRoutes {
            generated: SluiceServer::from_arc(service.clone())
                .max_decoding_message_size(message_bytes_max)
                .max_encoding_message_size(message_bytes_max),
            service,
            message_bytes_max,
        }
    }
}

impl NamedService for SluiceRoutes {
    const NAME: &'static str = SERVICE_NAME;
}

impl Service<http::Request<Body>> for SluiceRoutes {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let max = Some(self.message_bytes_max);
        match req.uri().path() {
            GET_RECORDS_PATH => {
                let method = GetRecordsMethod(self.service.clone());
                Box::pin(async move {
                    let mut grpc = tonic::server::Grpc::new(GetRecordsCodec)
                        .apply_max_message_size_config(max, max);
                    Ok(grpc.unary(method, req).await)
                })
            }
            SUBSCRIBE_PATH => {
                let (service, max) = (self.service.clone(), self.message_bytes_max);
                Box::pin(async move { Ok(crate::subscribe::serve(service, req, max).await) })
            }
            _ => self.generated.call(req),
        }
    }
}

/// GetRecords as a tonic unary method returning the broker's page.
#[derive(Debug, Clone)]
struct GetRecordsMethod(Arc<SluiceService>);

impl UnaryService<pb::GetRecordsRequest> for GetRecordsMethod {
    type Response = GetRecordsPage;
    type Future = BoxFuture<Response<GetRecordsPage>, Status>;

    fn call(&mut self, request: Request<pb::GetRecordsRequest>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { service.get_records_page(request).await })
    }
}

/// Decodes the request with prost; encodes the reply with [`encode_page`].
#[derive(Debug, Clone, Copy, Default)]
pub struct GetRecordsCodec;

impl Codec for GetRecordsCodec {
    type Encode = GetRecordsPage;
    type Decode = pb::GetRecordsRequest;
    type Encoder = PageEncoder;
    type Decoder = RequestDecoder<pb::GetRecordsRequest>;

    fn encoder(&mut self) -> PageEncoder {
        PageEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        RequestDecoder::new(BufferSettings::default())
    }
}

/// Writes a page as a `GetRecordsResponse`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PageEncoder;

impl Encoder for PageEncoder {
    type Item = GetRecordsPage;
    type Error = Status;

    fn encode(&mut self, page: GetRecordsPage, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        encode_page(page, buf);
        Ok(())
    }
}

/// Writes `page` into `buf` as the protobuf encoding of the `GetRecordsResponse` that
/// `convert::get_records_response` makes of it, byte for byte.
pub fn encode_page(page: GetRecordsPage, buf: &mut impl Reserve) {
    let children: Vec<pb::ChildShard> = page
        .child_shards
        .into_iter()
        .map(convert::child_shard)
        .collect();
    let bound = reply_bound(
        &page.records,
        page.next_shard_iterator.as_deref(),
        &children,
    );
    buf.reserve_bytes(bound);
    let mut numbers = seqnum::Encoder::default();
    for r in &page.records {
        encode_record(r, numbers.digits(r.sequence_number), buf);
    }
    if let Some(next) = &page.next_shard_iterator {
        put_present(2, next.as_bytes(), buf);
    }
    if page.millis_behind_latest != 0 {
        encode_key(3, WireType::Varint, buf);
        encode_varint(page.millis_behind_latest, buf);
    }
    for c in &children {
        prost::encoding::message::encode(4, c, buf);
    }
}

/// At least the encoded length of a reply of `records`, `next` and `children`.
fn reply_bound(records: &[ReadRecord], next: Option<&str>, children: &[pb::ChildShard]) -> usize {
    let records: usize = records
        .iter()
        // A key that is not UTF-8 is written lossily: up to 3 bytes per byte.
        .map(|r| r.data.len() + r.partition_key.len() * 3 + RECORD_FRAMING_MAX)
        .sum();
    let next = next.map_or(0, |s| s.len() + 6);
    let children: usize = children.iter().map(|c| c.encoded_len() + 6).sum();
    records + next + 11 + children
}

/// One `records` entry (field 1): `Record { sequence_number = 1,
/// approximate_arrival_timestamp_ms = 2, data = 3, partition_key = 4 }`, with proto3's
/// defaults (empty, zero) left out as prost leaves them out.
fn encode_record(r: &ReadRecord, digits: &[u8], buf: &mut impl BufMut) {
    let key = r.partition_key_text();
    let ts = convert::timestamp_ms(r.approximate_arrival_timestamp);
    let len = len_delimited_len(1, digits.len())
        + if ts != 0 {
            key_len(2) + encoded_len_varint(ts as u64)
        } else {
            0
        }
        + len_delimited_len(3, r.data.len())
        + len_delimited_len(4, key.len());
    encode_key(1, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
    put_len_delimited(1, digits, buf);
    if ts != 0 {
        encode_key(2, WireType::Varint, buf);
        // int64 on the wire: the two's complement as a varint, as prost writes it.
        encode_varint(ts as u64, buf);
    }
    put_len_delimited(3, &r.data, buf);
    put_len_delimited(4, key.as_bytes(), buf);
}

/// The encoded length of a `string` or `bytes` field holding `len` bytes (0 when empty:
/// proto3 leaves the default out).
fn len_delimited_len(tag: u32, len: usize) -> usize {
    if len == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(len as u64) + len
    }
}

/// Writes a `string` or `bytes` field unless it is empty (the default, left out).
fn put_len_delimited(tag: u32, bytes: &[u8], buf: &mut impl BufMut) {
    if !bytes.is_empty() {
        put_present(tag, bytes, buf);
    }
}

/// Writes a length-delimited field, even an empty one (a present `optional string`).
fn put_present(tag: u32, bytes: &[u8], buf: &mut impl BufMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(bytes.len() as u64, buf);
    buf.put_slice(bytes);
}

/// A buffer that can grow once for a whole reply before it is written.
pub trait Reserve: BufMut {
    /// Makes room for `additional` more bytes.
    fn reserve_bytes(&mut self, additional: usize);
}

impl Reserve for EncodeBuf<'_> {
    fn reserve_bytes(&mut self, additional: usize) {
        self.reserve(additional);
    }
}

impl Reserve for BytesMut {
    fn reserve_bytes(&mut self, additional: usize) {
        self.reserve(additional);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use proptest::prelude::*;
    use sluice_broker::seqnum::SequenceNumber;
    use sluice_broker::{ChildShard, HashKeyRange, TimestampMs};

    use super::*;

    /// What prost writes for the generated response of the same page.
    fn with_prost(page: GetRecordsPage) -> Vec<u8> {
        let output: sluice_broker::GetRecordsOutput = page.into();
        convert::get_records_response(output).encode_to_vec()
    }

    fn direct(page: GetRecordsPage) -> Vec<u8> {
        let mut buf = BytesMut::new();
        encode_page(page, &mut buf);
        buf.to_vec()
    }

    /// How a test record differs from its predecessor (kind of step and its size), its
    /// arrival time, data and key.
    type Spec = (u8, u64, u64, Vec<u8>, Vec<u8>);

    fn record() -> impl Strategy<Value = Spec> {
        (
            0u8..4,
            prop_oneof![Just(0u64), 0u64..5_000_000_000_000, Just(u64::MAX)],
            0u64..3,
            prop::collection::vec(any::<u8>(), 0..300),
            prop_oneof![
                Just(Vec::new()),
                "[a-zA-Z0-9é€😀]{1,20}".prop_map(String::into_bytes),
                prop::collection::vec(any::<u8>(), 1..20),
            ],
        )
    }

    fn page(
        records: Vec<Spec>,
        next: Option<String>,
        millis: u64,
        children: usize,
    ) -> GetRecordsPage {
        let mut n = SequenceNumber {
            shard_created_s: 1_700_000_000,
            shard_index: 3,
            counter: 1,
            incarnation: 4,
            arrival_s: 1_700_000_100,
        };
        let records = records
            .into_iter()
            .map(|(kind, ts, jump, data, key)| {
                // Mostly consecutive numbers (the encoder's fast path), some jumps.
                match kind {
                    0 => n.arrival_s += jump,
                    1 => n.counter += jump * 1_000,
                    2 => n.shard_index = n.shard_index.wrapping_add(jump as u32),
                    _ => {}
                }
                n.counter += 1;
                ReadRecord {
                    sequence_number: n,
                    approximate_arrival_timestamp: TimestampMs(ts),
                    partition_key: Bytes::from(key),
                    data: Bytes::from(data),
                }
            })
            .collect();
        let child_shards = (0..children)
            .map(|i| ChildShard {
                shard_id: format!("shardId-00000000000{i}"),
                parent_shards: vec!["shardId-000000000000".into()],
                hash_key_range: HashKeyRange {
                    starting_hash_key: "0".into(),
                    ending_hash_key: "340282366920938463463374607431768211455".into(),
                },
            })
            .collect();
        GetRecordsPage {
            records,
            next_shard_iterator: next,
            millis_behind_latest: millis,
            child_shards,
        }
    }

    proptest! {
        #[test]
        fn the_direct_encoding_is_prosts_byte_for_byte(
            records in prop::collection::vec(record(), 0..40),
            next in prop_oneof![Just(None), Just(Some(String::new())), "[A-Za-z0-9_-]{1,200}".prop_map(Some)],
            millis in prop_oneof![Just(0u64), any::<u64>()],
            children in 0usize..3,
        ) {
            let p = page(records, next, millis, children);
            prop_assert_eq!(direct(p.clone()), with_prost(p));
        }
    }

    #[test]
    fn a_reply_decodes_to_the_generated_response() {
        let p = page(
            vec![
                (
                    3,
                    1_700_000_000_123,
                    0,
                    b"payload".to_vec(),
                    b"key".to_vec(),
                ),
                (3, 0, 0, Vec::new(), vec![0xff, b'k']),
            ],
            Some("iterator".into()),
            42,
            1,
        );
        let reply = pb::GetRecordsResponse::decode(&direct(p.clone())[..]).expect("decodes");
        assert_eq!(reply.records.len(), 2);
        assert_eq!(
            reply.records[0].sequence_number,
            p.records[0].sequence_number.encode()
        );
        assert_eq!(reply.records[0].data, Bytes::from_static(b"payload"));
        assert_eq!(
            reply.records[0].approximate_arrival_timestamp_ms,
            1_700_000_000_123
        );
        assert_eq!(reply.records[1].partition_key, "\u{fffd}k");
        assert_eq!(reply.next_shard_iterator.as_deref(), Some("iterator"));
        assert_eq!(reply.millis_behind_latest, 42);
        assert_eq!(reply.child_shards.len(), 1);
    }

    #[test]
    fn the_reservation_covers_the_reply() {
        // One growth for the whole reply: the bound is never below what is written, even
        // with every field at its longest and keys that are not UTF-8.
        let p = page(
            (0..500)
                .map(|i| (i as u8 % 4, u64::MAX, 2, vec![7; 1024], vec![0xff; 256]))
                .collect(),
            Some("x".repeat(300)),
            u64::MAX,
            2,
        );
        let children: Vec<pb::ChildShard> = p
            .child_shards
            .iter()
            .cloned()
            .map(convert::child_shard)
            .collect();
        let bound = reply_bound(&p.records, p.next_shard_iterator.as_deref(), &children);
        let written = direct(p).len();
        assert!(bound >= written, "bound {bound} < written {written}");
        assert!(
            bound < written + written / 8,
            "bound {bound} far above {written}"
        );
    }
}
