//! The codec of the generated client and server: prost's, except that an encoder
//! reserves a message's whole encoded length before writing it, and the decoder of
//! PutRecords requests starts with room for a 512 KiB request twice over
//! ([`DECODE_BUFFER_BYTES`]).
//!
//! tonic's encode buffer starts at 8 KiB and prost writes into it field by field, so a
//! 10 MiB GetRecords reply grew it by doubling: a dozen reallocations that copied the
//! data about once more (perf: `memmove` and `BytesMut::put_slice` were a quarter of the
//! server's time during catch-up reads). One `reserve` of `encoded_len` makes it one copy.
//!
//! On the way in, tonic appends each HTTP/2 DATA frame to an 8 KiB buffer and, once it
//! has read the message's length, reserves that length on top of what it holds: a
//! PutRecords request that arrived in one frame was copied a second time by the
//! reallocation (6 % of the server's CPU under ingest). Starting at 1 MiB, its buffer
//! already has that room: 5 % less server CPU per GiB ingested (docs/BENCHMARKS.md).
//!
//! The decoder of requests ([`RequestDecoder`]) answers a message prost cannot decode
//! with INVALID_ARGUMENT and the reason `SerializationException` in
//! [`REASON_METADATA_KEY`], not tonic's INTERNAL with the decoder's text, and counts a
//! PutRecords request's entries before decoding it: an entry costs 2 bytes on the wire
//! and about 80 in memory, so 18 MiB of empty entries would have become 750 MB.

use std::any::TypeId;
use std::marker::PhantomData;

use prost::Message;
use prost::bytes::Buf;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};
use tonic_prost::{ProstCodec, ProstDecoder};

/// The first capacity of a PutRecords request's decode buffer: twice a 512 KiB request and its header,
/// so that tonic's `reserve(len)`, made while the first DATA frame already holds the
/// message, fits without reallocating (and copying) it.
pub const DECODE_BUFFER_BYTES: usize = 1024 * 1024 + 16 * 1024;

/// The response metadata key holding the reason (a Kinesis exception name) of a failed
/// call; `sluice-grpc` sets it on every error it answers.
pub const REASON_METADATA_KEY: &str = "x-sluice-error";

/// The most entries a PutRecords request may carry into the decoder: the largest
/// `limits.put_records_max` the server accepts. The broker applies the configured limit.
pub const PUT_RECORDS_ENTRIES_MAX: usize = 100_000;

/// [`ProstCodec`] with encoders that reserve before they write.
#[derive(Debug, Clone, Copy)]
pub struct SluiceCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SluiceCodec<T, U> {
    fn default() -> Self {
        SluiceCodec(PhantomData)
    }
}

impl<T, U> Codec for SluiceCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ReservingEncoder<T>;
    type Decoder = RequestDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ReservingEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        RequestDecoder::new(decode_buffer_settings::<U>())
    }
}

/// prost's decoder, with a request that does not decode answered as the client's
/// mistake (module docs). Responses (a client decoding a reply) keep prost's errors.
#[derive(Debug)]
pub struct RequestDecoder<U> {
    prost: ProstDecoder<U>,
}

impl<U: Message + Default + 'static> RequestDecoder<U> {
    /// A decoder starting with buffers of `settings`.
    pub fn new(settings: BufferSettings) -> RequestDecoder<U> {
        RequestDecoder {
            prost: ProstCodec::<U, U>::raw_decoder(settings),
        }
    }
}

impl<U: Message + Default + 'static> Decoder for RequestDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        if TypeId::of::<U>() == TypeId::of::<crate::v1::PutRecordsRequest>() {
            let bytes = buf.chunk();
            check_put_records_entries(&bytes[..bytes.len().min(buf.remaining())])?;
        }
        self.prost.decode(buf).map_err(request_error::<U>)
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.prost.buffer_settings()
    }
}

/// prost's error for a request (tonic's INTERNAL) as INVALID_ARGUMENT with the reason
/// `SerializationException`; other statuses unchanged.
fn request_error<U>(status: Status) -> Status {
    let name = message_name::<U>();
    if status.code() == Code::Internal && name.ends_with("Request") {
        refused(
            Code::InvalidArgument,
            "SerializationException",
            format!("The request is not a valid {name}: {}", status.message()),
        )
    } else {
        status
    }
}

/// A status with the reason in its metadata and as a `[Reason] ` message prefix, as
/// `sluice-grpc` writes every error.
fn refused(code: Code, reason: &'static str, message: String) -> Status {
    let mut status = Status::new(code, format!("[{reason}] {message}"));
    status
        .metadata_mut()
        .insert(REASON_METADATA_KEY, MetadataValue::from_static(reason));
    status
}

/// `PutRecordsRequest` from `sluice_proto::v1::PutRecordsRequest`.
fn message_name<U>() -> &'static str {
    let full = std::any::type_name::<U>();
    full.rsplit("::").next().unwrap_or(full)
}

/// Refuses a PutRecords request with more than [`PUT_RECORDS_ENTRIES_MAX`] entries,
/// counted on the wire before anything is decoded. A message too broken to count is left
/// to prost, which reports it.
fn check_put_records_entries(bytes: &[u8]) -> Result<(), Status> {
    let entries = count_field(bytes, PUT_RECORDS_FIELD).unwrap_or(0);
    if entries > PUT_RECORDS_ENTRIES_MAX {
        return Err(refused(
            Code::InvalidArgument,
            "ValidationException",
            format!(
                "1 validation error detected: Value '{entries}' at 'records' failed to satisfy constraint: Member must have length between 1 and {PUT_RECORDS_ENTRIES_MAX}"
            ),
        ));
    }
    Ok(())
}

/// `PutRecordsRequest.records`.
const PUT_RECORDS_FIELD: u64 = 2;

/// How many times top-level field `field` occurs in an encoded message; `None` if the
/// message is malformed. Reads only keys and lengths.
fn count_field(mut bytes: &[u8], field: u64) -> Option<usize> {
    use prost::encoding::decode_varint;
    let mut count = 0;
    while !bytes.is_empty() {
        let key = decode_varint(&mut bytes).ok()?;
        if key >> 3 == field {
            count += 1;
        }
        let skip = match key & 7 {
            0 => {
                decode_varint(&mut bytes).ok()?;
                0
            }
            1 => 8,
            2 => usize::try_from(decode_varint(&mut bytes).ok()?).ok()?,
            5 => 4,
            _ => return None,
        };
        bytes = bytes.get(skip..)?;
    }
    Some(count)
}

/// A PutRecords request starts with [`DECODE_BUFFER_BYTES`] of room; every other message
/// with tonic's default, so a small call (or a client keeping a decoded `Bytes` field,
/// which shares the buffer) does not hold a megabyte.
fn decode_buffer_settings<U: 'static>() -> BufferSettings {
    if TypeId::of::<U>() == TypeId::of::<crate::v1::PutRecordsRequest>() {
        // 32 KiB: tonic's default yield threshold, unchanged.
        BufferSettings::new(DECODE_BUFFER_BYTES, 32 * 1024)
    } else {
        BufferSettings::default()
    }
}

/// Encodes a prost message after reserving room for all of it.
#[derive(Debug, Clone, Copy)]
pub struct ReservingEncoder<T>(PhantomData<T>);

impl<T: Message> Encoder for ReservingEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.reserve(item.encoded_len());
        item.encode(buf)
            .map_err(|e| Status::internal(format!("cannot encode the message: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1 as pb;

    #[test]
    fn only_put_records_requests_start_with_a_large_decode_buffer() {
        // BufferSettings has no accessors; its Debug output names the size.
        let big = format!("{:?}", decode_buffer_settings::<pb::PutRecordsRequest>());
        assert!(
            big.contains(&format!("buffer_size: {DECODE_BUFFER_BYTES}")),
            "{big}"
        );
        let small = format!("{:?}", decode_buffer_settings::<pb::GetRecordsResponse>());
        assert_eq!(small, format!("{:?}", BufferSettings::default()));
    }

    #[test]
    fn a_request_that_does_not_decode_is_the_clients_mistake() {
        let error = pb::PutRecordRequest::decode(&[0x0a, 0x05, b'a'][..]).unwrap_err();
        // What tonic's prost decoder makes of it.
        let prost_status = || Status::internal(error.to_string());
        let status = request_error::<pb::PutRecordRequest>(prost_status());
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.metadata().get(REASON_METADATA_KEY).unwrap(),
            "SerializationException"
        );
        assert_eq!(
            status.message(),
            format!(
                "[SerializationException] The request is not a valid PutRecordRequest: {error}"
            )
        );
        // A reply that does not decode stays an internal error of the client.
        let status = request_error::<pb::PutRecordResponse>(prost_status());
        assert_eq!(status.code(), Code::Internal);
    }

    #[test]
    fn put_records_entries_are_counted_before_decoding() {
        let request = |n: usize| {
            pb::PutRecordsRequest {
                stream_name: "s".into(),
                records: vec![pb::PutRecordsRequestEntry::default(); n],
            }
            .encode_to_vec()
        };
        assert!(check_put_records_entries(&request(PUT_RECORDS_ENTRIES_MAX)).is_ok());
        let status = check_put_records_entries(&request(PUT_RECORDS_ENTRIES_MAX + 1)).unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.metadata().get(REASON_METADATA_KEY).unwrap(),
            "ValidationException"
        );
        assert_eq!(
            count_field(&[0x12, 0x00, 0x0a, 0x01, b's', 0x12, 0x00], 2),
            Some(2)
        );
        assert_eq!(count_field(&[0x12, 0x05], 2), None);
    }

    #[test]
    fn messages_round_trip_through_the_generated_types() {
        // The codec only changes buffer sizing; the bytes are prost's.
        let m = pb::GetRecordsResponse {
            records: vec![pb::Record {
                data: vec![7u8; 100_000].into(),
                partition_key: "k".into(),
                sequence_number: "1".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let bytes = m.encode_to_vec();
        assert_eq!(pb::GetRecordsResponse::decode(&bytes[..]).unwrap(), m);
    }
}
