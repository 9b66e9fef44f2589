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

use std::any::TypeId;
use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic_prost::{ProstCodec, ProstDecoder};

/// The first capacity of a PutRecords request's decode buffer: twice a 512 KiB request and its header,
/// so that tonic's `reserve(len)`, made while the first DATA frame already holds the
/// message, fits without reallocating (and copying) it.
pub const DECODE_BUFFER_BYTES: usize = 1024 * 1024 + 16 * 1024;

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
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ReservingEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(decode_buffer_settings::<U>())
    }
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
