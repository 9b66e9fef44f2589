//! The two wire protocols the load generator speaks, behind one [`Client`]: gRPC through
//! `sluice-proto`'s generated client, and the Kinesis HTTP API (AWS JSON 1.1 over
//! HTTP/1.1), written by hand on hyper so the tool stays light and can be pointed at any
//! Kinesis-compatible server. Kinesis requests carry a dummy SigV4-shaped `Authorization`
//! header (servers that check its shape accept it) unless `--unsigned` is given.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sluice_proto::v1 as pb;
use sluice_proto::v1::sluice_client::SluiceClient;
use tokio::sync::Mutex;
use tonic::transport::{Channel, Endpoint};

/// The largest gRPC message: a GetRecords reply holds up to 10 MiB of data.
const MESSAGE_BYTES_MAX: usize = 32 * 1024 * 1024;

/// Where a shard iterator starts.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// The oldest record.
    TrimHorizon,
    /// After the newest record.
    Latest,
}

/// What one PutRecords call did.
#[derive(Debug, Default)]
pub struct PutOutcome {
    /// Records the server refused in an otherwise successful call.
    pub failed: usize,
    /// `(shard id, sequence number)` of each record, in request order (failed ones empty).
    pub sequence_numbers: Vec<(String, String)>,
}

/// What one GetRecords call returned.
#[derive(Debug, Default)]
pub struct GetOutcome {
    /// Records returned.
    pub records: u64,
    /// Payload bytes returned (decoded).
    pub bytes: u64,
    /// The next iterator; `None` at the end of a closed shard.
    pub next: Option<String>,
    /// How far behind the tip the read is.
    pub millis_behind: u64,
}

/// One connection to a server, through either protocol.
pub enum Client {
    /// gRPC (`sluice.v1.Sluice`); clones share one HTTP/2 connection.
    Grpc(SluiceClient<Channel>),
    /// The Kinesis HTTP API over one HTTP/1.1 connection.
    Kinesis(KinesisHttp),
}

impl Client {
    /// A gRPC client for `endpoint` (`http://host:port`), connected now.
    pub async fn grpc(endpoint: &str) -> Result<Client> {
        let channel = Endpoint::from_shared(endpoint.to_owned())
            .with_context(|| format!("bad gRPC endpoint {endpoint}"))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            // Large receive windows, so a 10 MiB GetRecords reply is not paced by
            // WINDOW_UPDATE round trips.
            .initial_stream_window_size(16 * 1024 * 1024)
            .initial_connection_window_size(64 * 1024 * 1024)
            .connect()
            .await
            .with_context(|| format!("connecting to {endpoint}"))?;
        Ok(Client::Grpc(
            SluiceClient::new(channel)
                .max_decoding_message_size(MESSAGE_BYTES_MAX)
                .max_encoding_message_size(MESSAGE_BYTES_MAX),
        ))
    }

    /// A Kinesis HTTP client for `endpoint` (`http://host:port`); connects on first use.
    pub fn kinesis(endpoint: &str, signed: bool) -> Result<Client> {
        Ok(Client::Kinesis(KinesisHttp::new(endpoint, signed)?))
    }

    /// Creates a stream; a stream that already exists is not an error.
    pub async fn create_stream(&mut self, name: &str, shards: u32) -> Result<()> {
        match self {
            Client::Grpc(c) => {
                let r = c
                    .create_stream(pb::CreateStreamRequest {
                        stream_name: name.to_owned(),
                        shard_count: shards,
                        ..Default::default()
                    })
                    .await;
                match r {
                    Ok(_) => Ok(()),
                    Err(s) if s.message().contains("ResourceInUse") => Ok(()),
                    Err(s) => Err(anyhow!("CreateStream {name}: {s}")),
                }
            }
            Client::Kinesis(k) => {
                let body = json!({"StreamName": name, "ShardCount": shards});
                match k.call("CreateStream", &body).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.to_string().contains("ResourceInUse") => Ok(()),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// The ids of the stream's open shards, waiting (up to 30 s) for it to be ACTIVE.
    pub async fn shards(&mut self, name: &str) -> Result<Vec<String>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ids = self.list_shards(name).await;
            match ids {
                Ok(ids) if !ids.is_empty() => return Ok(ids),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                _ if tokio::time::Instant::now() >= deadline => {
                    bail!("stream {name} has no shards after 30 s")
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    async fn list_shards(&mut self, name: &str) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let (page, more) = match self {
                Client::Grpc(c) => {
                    let r = c
                        .list_shards(pb::ListShardsRequest {
                            stream_name: name.to_owned(),
                            exclusive_start_shard_id: after.clone(),
                            max_results: Some(1000),
                        })
                        .await
                        .map_err(|s| anyhow!("ListShards {name}: {s}"))?
                        .into_inner();
                    let page: Vec<(String, bool)> = r
                        .shards
                        .into_iter()
                        .map(|s| {
                            let open = s
                                .sequence_number_range
                                .is_none_or(|r| r.ending_sequence_number.is_none());
                            (s.shard_id, open)
                        })
                        .collect();
                    (page, r.next_exclusive_start_shard_id.is_some())
                }
                Client::Kinesis(k) => {
                    let mut body = json!({"StreamName": name, "MaxResults": 1000});
                    if let Some(a) = &after {
                        body["ExclusiveStartShardId"] = json!(a);
                    }
                    let v = k.call("ListShards", &body).await?;
                    let page = v["Shards"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|s| {
                                    let open =
                                        s["SequenceNumberRange"]["EndingSequenceNumber"].is_null();
                                    Some((s["ShardId"].as_str()?.to_owned(), open))
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    (page, v["NextToken"].is_string())
                }
            };
            let n = page.len();
            after = page.last().map(|(id, _)| id.clone());
            ids.extend(page.into_iter().filter(|(_, open)| *open).map(|(id, _)| id));
            if !more || n == 0 {
                return Ok(ids);
            }
        }
    }

    /// PutRecords.
    pub async fn put_records(&mut self, req: &PreparedPut) -> Result<PutOutcome> {
        match (self, req) {
            (Client::Grpc(c), PreparedPut::Grpc(r)) => {
                let r = c
                    .put_records(r.clone())
                    .await
                    .map_err(|s| anyhow!("PutRecords: {s}"))?
                    .into_inner();
                Ok(PutOutcome {
                    failed: r.failed_record_count as usize,
                    sequence_numbers: r
                        .records
                        .into_iter()
                        .map(|e| (e.shard_id, e.sequence_number))
                        .collect(),
                })
            }
            (Client::Kinesis(k), PreparedPut::Kinesis(body)) => {
                let v = k.call_raw("PutRecords", body.clone()).await?;
                let failed = v["FailedRecordCount"].as_u64().unwrap_or(0) as usize;
                let seqs = v["Records"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|r| {
                                (
                                    r["ShardId"].as_str().unwrap_or("").to_owned(),
                                    r["SequenceNumber"].as_str().unwrap_or("").to_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(PutOutcome {
                    failed,
                    sequence_numbers: seqs,
                })
            }
            _ => bail!("request prepared for the other protocol"),
        }
    }

    /// PutRecord: one record, returning `(shard id, sequence number)`.
    pub async fn put_record(
        &mut self,
        stream: &str,
        key: &str,
        data: Bytes,
    ) -> Result<(String, String)> {
        match self {
            Client::Grpc(c) => {
                let r = c
                    .put_record(pb::PutRecordRequest {
                        stream_name: stream.to_owned(),
                        partition_key: key.to_owned(),
                        explicit_hash_key: None,
                        data,
                    })
                    .await
                    .map_err(|s| anyhow!("PutRecord: {s}"))?
                    .into_inner();
                Ok((r.shard_id, r.sequence_number))
            }
            Client::Kinesis(k) => {
                let body =
                    json!({"StreamName": stream, "PartitionKey": key, "Data": B64.encode(&data)});
                let v = k.call("PutRecord", &body).await?;
                Ok((
                    v["ShardId"].as_str().unwrap_or("").to_owned(),
                    v["SequenceNumber"].as_str().unwrap_or("").to_owned(),
                ))
            }
        }
    }

    /// GetShardIterator.
    pub async fn iterator(&mut self, stream: &str, shard: &str, start: Start) -> Result<String> {
        match self {
            Client::Grpc(c) => {
                let r = c
                    .get_shard_iterator(pb::GetShardIteratorRequest {
                        stream_name: stream.to_owned(),
                        shard_id: shard.to_owned(),
                        starting_position: Some(position(start)),
                    })
                    .await
                    .map_err(|s| anyhow!("GetShardIterator: {s}"))?;
                Ok(r.into_inner().shard_iterator)
            }
            Client::Kinesis(k) => {
                let kind = match start {
                    Start::TrimHorizon => "TRIM_HORIZON",
                    Start::Latest => "LATEST",
                };
                let body =
                    json!({"StreamName": stream, "ShardId": shard, "ShardIteratorType": kind});
                let v = k.call("GetShardIterator", &body).await?;
                v["ShardIterator"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow!("GetShardIterator: no ShardIterator in the reply"))
            }
        }
    }

    /// GetRecords.
    pub async fn get_records(&mut self, iterator: &str, limit: u32) -> Result<GetOutcome> {
        match self {
            Client::Grpc(c) => {
                let r = c
                    .get_records(pb::GetRecordsRequest {
                        shard_iterator: iterator.to_owned(),
                        limit: Some(limit),
                    })
                    .await
                    .map_err(|s| anyhow!("GetRecords: {s}"))?
                    .into_inner();
                Ok(GetOutcome {
                    records: r.records.len() as u64,
                    bytes: r.records.iter().map(|r| r.data.len() as u64).sum(),
                    next: r.next_shard_iterator,
                    millis_behind: r.millis_behind_latest,
                })
            }
            Client::Kinesis(k) => {
                let body = json!({"ShardIterator": iterator, "Limit": limit});
                let v = k.call("GetRecords", &body).await?;
                let records = v["Records"].as_array().map_or(&[][..], Vec::as_slice);
                Ok(GetOutcome {
                    records: records.len() as u64,
                    bytes: records
                        .iter()
                        .map(|r| base64_len(r["Data"].as_str().unwrap_or("")))
                        .sum(),
                    next: v["NextShardIterator"].as_str().map(str::to_owned),
                    millis_behind: v["MillisBehindLatest"].as_u64().unwrap_or(0),
                })
            }
        }
    }

    /// The gRPC client, for Subscribe (only gRPC has it here).
    pub fn as_grpc(&self) -> Option<SluiceClient<Channel>> {
        match self {
            Client::Grpc(c) => Some(c.clone()),
            Client::Kinesis(_) => None,
        }
    }
}

/// A PutRecords request encoded once and sent many times, so the load generator spends
/// its CPU on the wire rather than on building requests.
#[derive(Clone)]
pub enum PreparedPut {
    /// The gRPC message (payloads are shared `Bytes`).
    Grpc(pb::PutRecordsRequest),
    /// The JSON body.
    Kinesis(Bytes),
}

impl PreparedPut {
    /// Prepares `records` (`(partition key, data)`) for `stream` in the client's protocol.
    pub fn new(grpc: bool, stream: &str, records: &[(String, Bytes)]) -> PreparedPut {
        if grpc {
            PreparedPut::Grpc(pb::PutRecordsRequest {
                stream_name: stream.to_owned(),
                records: records
                    .iter()
                    .map(|(k, d)| pb::PutRecordsRequestEntry {
                        partition_key: k.clone(),
                        explicit_hash_key: None,
                        data: d.clone(),
                    })
                    .collect(),
            })
        } else {
            let recs: Vec<Value> = records
                .iter()
                .map(|(k, d)| json!({"PartitionKey": k, "Data": B64.encode(d)}))
                .collect();
            let body = json!({"StreamName": stream, "Records": recs});
            PreparedPut::Kinesis(Bytes::from(body.to_string()))
        }
    }
}

fn position(start: Start) -> pb::StartingPosition {
    let kind = match start {
        Start::TrimHorizon => pb::ShardIteratorType::TrimHorizon,
        Start::Latest => pb::ShardIteratorType::Latest,
    };
    pb::StartingPosition {
        r#type: kind as i32,
        sequence_number: None,
        timestamp_ms: None,
    }
}

/// The decoded length of a base64 string, without decoding it.
fn base64_len(s: &str) -> u64 {
    let pad = s.bytes().rev().take_while(|&b| b == b'=').count();
    (s.len() / 4 * 3).saturating_sub(pad) as u64
}

/// A Kinesis JSON client over one kept-alive HTTP/1.1 connection, reconnecting after an
/// error.
pub struct KinesisHttp {
    authority: String,
    signed: bool,
    conn: Mutex<Option<http1::SendRequest<Full<Bytes>>>>,
}

impl KinesisHttp {
    fn new(endpoint: &str, signed: bool) -> Result<KinesisHttp> {
        let authority = endpoint
            .strip_prefix("http://")
            .ok_or_else(|| anyhow!("--kinesis takes http://host:port, not {endpoint}"))?
            .trim_end_matches('/')
            .to_owned();
        Ok(KinesisHttp {
            authority,
            signed,
            conn: Mutex::new(None),
        })
    }

    async fn call(&self, op: &str, body: &Value) -> Result<Value> {
        self.call_raw(op, Bytes::from(body.to_string())).await
    }

    async fn call_raw(&self, op: &str, body: Bytes) -> Result<Value> {
        let mut guard = self.conn.lock().await;
        let result = self.send(&mut guard, op, body).await;
        if result.is_err() {
            *guard = None;
        }
        result
    }

    async fn send(
        &self,
        conn: &mut Option<http1::SendRequest<Full<Bytes>>>,
        op: &str,
        body: Bytes,
    ) -> Result<Value> {
        if conn.as_ref().is_none_or(|c| c.is_closed()) {
            let tcp = tokio::net::TcpStream::connect(&self.authority)
                .await
                .with_context(|| format!("connecting to {}", self.authority))?;
            tcp.set_nodelay(true)?;
            let (send, connection) = http1::handshake(TokioIo::new(tcp)).await?;
            tokio::spawn(connection);
            *conn = Some(send);
        }
        let Some(send) = conn.as_mut() else {
            bail!("no connection");
        };
        send.ready().await?;
        let mut req = hyper::Request::post("/")
            .header("host", &self.authority)
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", format!("Kinesis_20131202.{op}"));
        if self.signed {
            req = req.header("x-amz-date", "20260101T000000Z").header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/kinesis/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=00",
            );
        }
        let resp = send.send_request(req.body(Full::new(body))?).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let v: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .with_context(|| format!("{op}: the reply is not JSON ({status})"))?
        };
        if !status.is_success() {
            let kind = v["__type"].as_str().unwrap_or("?");
            let msg = v["message"].as_str().unwrap_or("");
            bail!("{op}: {status} {kind}: {msg}");
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_length_is_the_decoded_length() {
        for n in 0..10 {
            let s = B64.encode(vec![7u8; n]);
            assert_eq!(base64_len(&s), n as u64);
        }
    }
}
