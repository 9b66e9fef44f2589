//! `sluice-kinesis`: the Kinesis wire protocol in front of the broker, so the AWS CLI,
//! boto3 and the AWS SDKs work against Sluice with only the endpoint changed.
//!
//! `POST /` with `X-Amz-Target: Kinesis_20131202.<Operation>` and an AWS JSON 1.1
//! (`application/x-amz-json-1.1`) or CBOR (`application/x-amz-cbor-1.1`) body, over HTTP/1.1
//! or HTTP/2 (`router`). Requests are parsed into one value model (`value`), handled once
//! per operation (`ops`), and errors are written as `{"__type", "message"}` with Kinesis's
//! names (`errors`). SubscribeToShard answers an AWS event stream (`eventstream`). This
//! crate only translates: all behaviour lives in `sluice-broker`.

#![warn(missing_docs)]

mod cbor;
pub mod errors;
pub mod eventstream;
mod ops;
mod router;
pub mod value;

pub use router::{KinesisConfig, router, serve};
