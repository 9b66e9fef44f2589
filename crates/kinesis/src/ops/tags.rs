//! Stream tags, by stream name (AddTagsToStream...) or by ARN (TagResource...).

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_broker::Broker;

use super::{OpResult, opt_count, stream_name};
use crate::errors::ApiError;
use crate::value::{Fields, Value};

fn tags_value(tags: &[(String, String)]) -> Value {
    Value::Array(
        tags.iter()
            .map(|(k, v)| Value::map([("Key", Value::str(k)), ("Value", Value::str(v))]))
            .collect(),
    )
}

fn string_list(f: &Fields<'_>, member: &str) -> Result<Vec<String>, ApiError> {
    let list = f
        .opt_array(member)?
        .ok_or_else(|| ApiError::missing(member))?;
    list.iter()
        .map(|v| match v {
            Value::Str(s) => Ok(s.clone()),
            _ => Err(ApiError::serialization(format!(
                "class {member} member can not be converted to a String"
            ))),
        })
        .collect()
}

/// The stream a resource ARN names (consumer ARNs have no tags of their own here).
fn resource_stream(b: &Broker, f: &Fields<'_>) -> Result<String, ApiError> {
    let arn = f.str("ResourceARN")?;
    b.config()
        .manager
        .stream_name_from_arn(arn)
        .map(str::to_owned)
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "ResourceARN {arn} is not a stream ARN of this broker; only streams have tags."
            ))
        })
}

pub(super) async fn add(b: &Arc<Broker>, f: &Fields<'_>) -> OpResult {
    add_to(b, stream_name(b, f)?, f).await
}

pub(super) async fn remove(b: &Arc<Broker>, f: &Fields<'_>) -> OpResult {
    remove_from(b, stream_name(b, f)?, f).await
}

pub(super) async fn list(b: &Arc<Broker>, f: &Fields<'_>) -> OpResult {
    let name = stream_name(b, f)?;
    let limit = opt_count(f, "Limit", 1, 50)?;
    let (tags, more) = b
        .list_tags(&name, f.opt_str("ExclusiveStartTagKey")?, limit)
        .await?;
    Ok(Some(Value::map([
        ("Tags", tags_value(&tags)),
        ("HasMoreTags", Value::Bool(more)),
    ])))
}

pub(super) async fn tag_resource(b: &Arc<Broker>, f: &Fields<'_>) -> OpResult {
    add_to(b, resource_stream(b, f)?, f).await
}

pub(super) async fn untag_resource(b: &Arc<Broker>, f: &Fields<'_>) -> OpResult {
    remove_from(b, resource_stream(b, f)?, f).await
}

/// Adds the request's `Tags` to a stream (AddTagsToStream and TagResource).
async fn add_to(b: &Arc<Broker>, name: String, f: &Fields<'_>) -> OpResult {
    let tags: BTreeMap<String, String> = f
        .opt_string_map("Tags")?
        .ok_or_else(|| ApiError::missing("Tags"))?
        .into_iter()
        .collect();
    b.add_tags(&name, tags).await?;
    Ok(None)
}

/// Removes the request's `TagKeys` from a stream (RemoveTagsFromStream and UntagResource).
async fn remove_from(b: &Arc<Broker>, name: String, f: &Fields<'_>) -> OpResult {
    b.remove_tags(&name, string_list(f, "TagKeys")?).await?;
    Ok(None)
}

pub(super) async fn list_for_resource(b: &Arc<Broker>, f: &Fields<'_>) -> OpResult {
    let name = resource_stream(b, f)?;
    let (tags, _) = b.list_tags(&name, None, Some(50)).await?;
    Ok(Some(Value::map([("Tags", tags_value(&tags))])))
}
