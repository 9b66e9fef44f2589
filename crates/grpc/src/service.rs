//! [`SluiceService`]: the `sluice.v1.Sluice` handlers. Each one decodes its request
//! (`convert`), calls the broker once, and encodes the reply or the error (`status`).
//! Nothing here decides anything the broker should.
//!
//! Subscribe is served by `subscribe`, which writes the response body itself so that each
//! event's bytes count against the subscription budgets until they are sent; the handler
//! here opens the broker's [`Subscription`]. A subscription is read only when the client's
//! stream asks for the next message, and ends when the broker ends it (with an error, sent
//! as the call's status), when the client goes away, or when the server shuts down, so a
//! graceful shutdown never waits for a subscription's five-minute lifetime.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::StreamExt;
use sluice_broker::{Broker, GetRecordsPage, Subscription};
use sluice_proto::v1 as pb;
use sluice_proto::v1::sluice_server::Sluice;
use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::status::to_status;

/// The response stream of Subscribe.
pub type SubscribeStream = Pin<Box<dyn Stream<Item = Result<pb::SubscribeEvent, Status>> + Send>>;

/// The `sluice.v1.Sluice` service over one broker.
#[derive(Debug, Clone)]
pub struct SluiceService {
    broker: Arc<Broker>,
    shutdown: watch::Receiver<bool>,
}

impl SluiceService {
    /// A service over `broker`. Subscriptions end once `shutdown` turns true.
    pub fn new(broker: Arc<Broker>, shutdown: watch::Receiver<bool>) -> SluiceService {
        SluiceService { broker, shutdown }
    }
}

type Reply<T> = Result<Response<T>, Status>;

impl SluiceService {
    /// GetRecords up to the broker's page, before any encoding.
    pub async fn get_records_page(
        &self,
        request: Request<pb::GetRecordsRequest>,
    ) -> Reply<GetRecordsPage> {
        let r = request.into_inner();
        let page = self
            .broker
            .get_records_page(&r.shard_iterator, convert::limit(r.limit))
            .await;
        reply(page)
    }
}

fn reply<T>(result: sluice_broker::Result<T>) -> Reply<T> {
    result.map(Response::new).map_err(to_status)
}

#[tonic::async_trait]
impl Sluice for SluiceService {
    async fn create_stream(
        &self,
        request: Request<pb::CreateStreamRequest>,
    ) -> Reply<pb::CreateStreamResponse> {
        let create = convert::create_stream(request.into_inner());
        reply(
            self.broker
                .create_stream(create)
                .await
                .map(|()| pb::CreateStreamResponse {}),
        )
    }

    async fn delete_stream(
        &self,
        request: Request<pb::DeleteStreamRequest>,
    ) -> Reply<pb::DeleteStreamResponse> {
        let r = request.into_inner();
        reply(
            self.broker
                .delete_stream(&r.stream_name)
                .await
                .map(|()| pb::DeleteStreamResponse {}),
        )
    }

    async fn describe_stream(
        &self,
        request: Request<pb::DescribeStreamRequest>,
    ) -> Reply<pb::DescribeStreamResponse> {
        let r = request.into_inner();
        let view = self
            .broker
            .describe_stream(
                &r.stream_name,
                convert::limit(r.limit),
                r.exclusive_start_shard_id.as_deref(),
            )
            .await;
        reply(view.map(|v| pb::DescribeStreamResponse {
            stream_description: Some(convert::stream_description(v)),
        }))
    }

    async fn list_streams(
        &self,
        request: Request<pb::ListStreamsRequest>,
    ) -> Reply<pb::ListStreamsResponse> {
        let r = request.into_inner();
        let list = self
            .broker
            .list_streams(
                r.exclusive_start_stream_name.as_deref(),
                convert::limit(r.limit),
            )
            .await;
        reply(list.map(convert::list_streams_response))
    }

    async fn list_shards(
        &self,
        request: Request<pb::ListShardsRequest>,
    ) -> Reply<pb::ListShardsResponse> {
        let r = request.into_inner();
        let list = self
            .broker
            .list_shards(
                &r.stream_name,
                r.exclusive_start_shard_id.as_deref(),
                convert::limit(r.max_results),
            )
            .await;
        reply(list.map(convert::list_shards_response))
    }

    async fn split_shard(
        &self,
        request: Request<pb::SplitShardRequest>,
    ) -> Reply<pb::SplitShardResponse> {
        let r = request.into_inner();
        let done = self
            .broker
            .split_shard(&r.stream_name, &r.shard_to_split, &r.new_starting_hash_key)
            .await;
        reply(done.map(|()| pb::SplitShardResponse {}))
    }

    async fn merge_shards(
        &self,
        request: Request<pb::MergeShardsRequest>,
    ) -> Reply<pb::MergeShardsResponse> {
        let r = request.into_inner();
        let done = self
            .broker
            .merge_shards(
                &r.stream_name,
                &r.shard_to_merge,
                &r.adjacent_shard_to_merge,
            )
            .await;
        reply(done.map(|()| pb::MergeShardsResponse {}))
    }

    async fn update_shard_count(
        &self,
        request: Request<pb::UpdateShardCountRequest>,
    ) -> Reply<pb::UpdateShardCountResponse> {
        let r = request.into_inner();
        let update = self
            .broker
            .update_shard_count(&r.stream_name, r.target_shard_count)
            .await;
        reply(update.map(|u| pb::UpdateShardCountResponse {
            stream_name: r.stream_name,
            current_shard_count: u.current_shard_count,
            target_shard_count: u.target_shard_count,
        }))
    }

    async fn increase_stream_retention_period(
        &self,
        request: Request<pb::IncreaseStreamRetentionPeriodRequest>,
    ) -> Reply<pb::IncreaseStreamRetentionPeriodResponse> {
        let r = request.into_inner();
        let done = self
            .broker
            .increase_retention(&r.stream_name, r.retention_period_hours)
            .await;
        reply(done.map(|()| pb::IncreaseStreamRetentionPeriodResponse {}))
    }

    async fn decrease_stream_retention_period(
        &self,
        request: Request<pb::DecreaseStreamRetentionPeriodRequest>,
    ) -> Reply<pb::DecreaseStreamRetentionPeriodResponse> {
        let r = request.into_inner();
        let done = self
            .broker
            .decrease_retention(&r.stream_name, r.retention_period_hours)
            .await;
        reply(done.map(|()| pb::DecreaseStreamRetentionPeriodResponse {}))
    }

    async fn add_tags_to_stream(
        &self,
        request: Request<pb::AddTagsToStreamRequest>,
    ) -> Reply<pb::AddTagsToStreamResponse> {
        let r = request.into_inner();
        let done = self.broker.add_tags(&r.stream_name, r.tags).await;
        reply(done.map(|()| pb::AddTagsToStreamResponse {}))
    }

    async fn remove_tags_from_stream(
        &self,
        request: Request<pb::RemoveTagsFromStreamRequest>,
    ) -> Reply<pb::RemoveTagsFromStreamResponse> {
        let r = request.into_inner();
        let done = self.broker.remove_tags(&r.stream_name, r.tag_keys).await;
        reply(done.map(|()| pb::RemoveTagsFromStreamResponse {}))
    }

    async fn list_tags_for_stream(
        &self,
        request: Request<pb::ListTagsForStreamRequest>,
    ) -> Reply<pb::ListTagsForStreamResponse> {
        let r = request.into_inner();
        let page = self
            .broker
            .list_tags(
                &r.stream_name,
                r.exclusive_start_tag_key.as_deref(),
                convert::limit(r.limit),
            )
            .await;
        reply(page.map(|(tags, has_more)| convert::list_tags_response(tags, has_more)))
    }

    async fn put_record(
        &self,
        request: Request<pb::PutRecordRequest>,
    ) -> Reply<pb::PutRecordResponse> {
        let (stream, input) = convert::put_record_input(request.into_inner());
        let put = self.broker.put_record(&stream, input).await;
        reply(put.map(|out| pb::PutRecordResponse {
            shard_id: out.shard_id,
            sequence_number: out.sequence_number,
        }))
    }

    async fn put_records(
        &self,
        request: Request<pb::PutRecordsRequest>,
    ) -> Reply<pb::PutRecordsResponse> {
        let r = request.into_inner();
        let inputs = r
            .records
            .into_iter()
            .map(convert::put_records_entry)
            .collect();
        let put = self.broker.put_records(&r.stream_name, inputs).await;
        reply(put.map(convert::put_records_response))
    }

    async fn get_shard_iterator(
        &self,
        request: Request<pb::GetShardIteratorRequest>,
    ) -> Reply<pb::GetShardIteratorResponse> {
        let r = request.into_inner();
        let position = convert::starting_position(r.starting_position).map_err(to_status)?;
        let iterator = self
            .broker
            .get_shard_iterator(&r.stream_name, &r.shard_id, position)
            .await;
        reply(iterator.map(|shard_iterator| pb::GetShardIteratorResponse { shard_iterator }))
    }

    /// The generated route to this handler is not used: [`crate::SluiceRoutes`] serves
    /// GetRecords by writing [`SluiceService::get_records_page`]'s page directly, the same
    /// bytes prost writes for this handler's reply (`get_records` tests).
    async fn get_records(
        &self,
        request: Request<pb::GetRecordsRequest>,
    ) -> Reply<pb::GetRecordsResponse> {
        let page = self.get_records_page(request).await?;
        Ok(page.map(|p| convert::get_records_response(p.into())))
    }

    type SubscribeStream = SubscribeStream;

    /// The generated route to this handler is not used: [`crate::SluiceRoutes`] serves
    /// Subscribe with [`crate::subscribe::serve`], whose messages hold each event's bytes
    /// against the subscription budgets until they are sent. Through this handler tonic
    /// encodes each event into its own buffer, so the bytes go back when tonic takes the
    /// event, before it is sent.
    async fn subscribe(&self, request: Request<pb::SubscribeRequest>) -> Reply<SubscribeStream> {
        let (subscription, mut shutdown) = self.open_subscription(request.into_inner()).await?;
        let events = futures_util::stream::unfold(subscription, |mut s| async move {
            let event = s.next().await?;
            Some((
                event
                    .map(|d| convert::subscribe_event(d.event))
                    .map_err(to_status),
                s,
            ))
        });
        let stopped = async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        Ok(Response::new(Box::pin(events.take_until(stopped))))
    }
}

impl SluiceService {
    /// Opens the broker subscription a Subscribe call asks for, with the watch that ends
    /// it when the server shuts down.
    pub async fn open_subscription(
        &self,
        r: pb::SubscribeRequest,
    ) -> Result<(Subscription, watch::Receiver<bool>), Status> {
        let position = convert::starting_position(r.starting_position).map_err(to_status)?;
        let subscription = self
            .broker
            .subscribe(&r.stream_name, &r.shard_id, position)
            .await
            .map_err(to_status)?;
        Ok((subscription, self.shutdown.clone()))
    }
}
