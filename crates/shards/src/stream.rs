//! A stream's metadata: name, status lifecycle, retention, record size, tags, and the
//! argument rules of the operations that create or change it.
//!
//! Status is never stored as a mutable field: it is computed from the times journaled with
//! each change (`ready_at`, `updating_until`, the deletion times) and a caller's `now`, so
//! the delays Kinesis shows (CREATING, UPDATING, DELETING) are deterministic in tests and
//! need no background timer.

use std::collections::BTreeMap;
use std::fmt;

use sluice_storage::TimestampMs;

use crate::error::{Error, Result};
use crate::lineage::{Lineage, ShardInfo};

/// A stream's status, as Kinesis reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStatus {
    /// Just created; no shard is usable until it turns ACTIVE.
    Creating,
    /// Serving, and open to every operation.
    Active,
    /// A reshard was applied; puts and reads work, further changes wait.
    Updating,
    /// Being deleted; only describe works until it is gone.
    Deleting,
}

/// Retention bounds in hours (Kinesis: 24 ..= 8760).
pub const RETENTION_HOURS_MIN: u32 = 24;
/// The longest retention in hours.
pub const RETENTION_HOURS_MAX: u32 = 8760;
/// Smallest `MaxRecordSizeInKiB`.
pub const RECORD_SIZE_KIB_MIN: u32 = 1024;
/// Largest `MaxRecordSizeInKiB`.
pub const RECORD_SIZE_KIB_MAX: u32 = 10240;
/// Most tags on one stream.
pub const TAGS_PER_STREAM_MAX: usize = 50;
/// Most tags in one AddTagsToStream call.
pub const TAGS_PER_ADD_MAX: usize = 200;
/// Most keys in one RemoveTagsFromStream call.
pub const TAG_KEYS_PER_REMOVE_MAX: usize = 50;

/// What CreateStream needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateStream {
    /// `[a-zA-Z0-9_.-]{1,128}`.
    pub name: String,
    /// At least 1.
    pub shard_count: u32,
    /// 24 ..= 8760; Kinesis starts every stream at 24.
    pub retention_hours: u32,
    /// `MaxRecordSizeInKiB`, 1024 ..= 10240.
    pub max_record_size_kib: u32,
    /// Initial tags (same rules as AddTagsToStream).
    pub tags: BTreeMap<String, String>,
}

impl CreateStream {
    /// A request with Kinesis defaults: 24 h retention, 1 MiB records, no tags.
    pub fn new(name: impl Into<String>, shard_count: u32) -> CreateStream {
        CreateStream {
            name: name.into(),
            shard_count,
            retention_hours: RETENTION_HOURS_MIN,
            max_record_size_kib: RECORD_SIZE_KIB_MIN,
            tags: BTreeMap::new(),
        }
    }
}

/// A stream as DescribeStream / DescribeStreamSummary show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamDescription {
    /// The stream's name.
    pub name: String,
    /// `arn:aws:kinesis:{region}:{account}:stream/{name}`.
    pub arn: String,
    /// Unique per creation: a name reused after deletion gets a new uid.
    pub uid: u64,
    /// Status at the `now` of the call.
    pub status: StreamStatus,
    /// `RetentionPeriodHours`.
    pub retention_hours: u32,
    /// `MaxRecordSizeInKiB`.
    pub max_record_size_kib: u32,
    /// `StreamCreationTimestamp`.
    pub created: TimestampMs,
    /// `OpenShardCount` (0 while CREATING).
    pub open_shard_count: usize,
    /// Every shard in id order, expired ones included (their lineage stays describable);
    /// empty while CREATING, as Kinesis shows it.
    pub shards: Vec<ShardInfo>,
}

/// One entry of ListStreams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSummary {
    /// The stream's name.
    pub name: String,
    /// Its ARN.
    pub arn: String,
    /// Status at the `now` of the call.
    pub status: StreamStatus,
    /// `StreamCreationTimestamp`.
    pub created: TimestampMs,
}

/// One page of ListStreams, in lexicographic name order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPage {
    /// The streams of this page.
    pub streams: Vec<StreamSummary>,
    /// Whether more streams follow the last one.
    pub has_more: bool,
}

/// One page of ListTagsForStream, sorted by key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagPage {
    /// `(key, value)` pairs.
    pub tags: Vec<(String, String)>,
    /// Whether more tags follow.
    pub has_more: bool,
}

/// A stream's durable metadata: what the journal and snapshot hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamMeta {
    pub uid: u64,
    pub name: String,
    pub created: TimestampMs,
    /// CREATING until this time.
    pub ready_at: TimestampMs,
    /// UPDATING until this time (if later than `ready_at`).
    pub updating_until: TimestampMs,
    pub retention_hours: u32,
    pub max_record_size_kib: u32,
    pub tags: BTreeMap<String, String>,
    /// Times of the UpdateShardCount calls, for the per-24 h quota.
    pub count_updates: Vec<TimestampMs>,
    /// Set by DeleteStream: DELETING from `at` until `gone_at`, then gone.
    pub deleting: Option<Deleting>,
    pub lineage: Lineage,
}

/// The deletion times of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deleting {
    pub at: TimestampMs,
    pub gone_at: TimestampMs,
}

impl StreamStatus {
    /// The Kinesis spelling (`CREATING`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            StreamStatus::Creating => "CREATING",
            StreamStatus::Active => "ACTIVE",
            StreamStatus::Updating => "UPDATING",
            StreamStatus::Deleting => "DELETING",
        }
    }
}

impl fmt::Display for StreamStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl StreamMeta {
    /// The status at `now`; `None` once deletion has completed (the stream is gone).
    pub fn status(&self, now: TimestampMs) -> Option<StreamStatus> {
        if let Some(d) = self.deleting {
            return (now < d.gone_at).then_some(StreamStatus::Deleting);
        }
        Some(if now < self.ready_at {
            StreamStatus::Creating
        } else if now < self.updating_until {
            StreamStatus::Updating
        } else {
            StreamStatus::Active
        })
    }

    /// Retention in milliseconds.
    pub fn retention_ms(&self) -> u64 {
        u64::from(self.retention_hours) * 3_600_000
    }

    /// UpdateShardCount calls in the 24 hours before `now`.
    pub fn count_updates_within_day(&self, now: TimestampMs) -> usize {
        let day_ago = now.0.saturating_sub(24 * 3_600_000);
        self.count_updates.iter().filter(|t| t.0 > day_ago).count()
    }
}

/// Checks a stream name: `[a-zA-Z0-9_.-]{1,128}`.
pub fn validate_stream_name(name: &str) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if name.is_empty() || name.len() > 128 {
        return Err(Error::InvalidArgument(format!(
            "Stream name {name:?} must be 1 to 128 characters long (it has {}).",
            name.chars().count()
        )));
    }
    if let Some(bad) = name.chars().find(|c| !ok_char(*c)) {
        return Err(Error::InvalidArgument(format!(
            "Stream name {name:?} contains {bad:?}; it must match [a-zA-Z0-9_.-]+."
        )));
    }
    Ok(())
}

/// Checks a retention period against 24 ..= 8760 hours, with the Kinesis messages.
pub fn validate_retention_hours(hours: u32) -> Result<()> {
    if hours < RETENTION_HOURS_MIN {
        return Err(Error::InvalidArgument(format!(
            "Minimum allowed retention period is {RETENTION_HOURS_MIN} hours. Requested retention period ({hours} hours) is too short."
        )));
    }
    if hours > RETENTION_HOURS_MAX {
        return Err(Error::InvalidArgument(format!(
            "Maximum allowed retention period is {RETENTION_HOURS_MAX} hours. Requested retention period ({hours} hours) is too long."
        )));
    }
    Ok(())
}

/// Checks `MaxRecordSizeInKiB` against 1024 ..= 10240.
pub fn validate_max_record_size_kib(kib: u32) -> Result<()> {
    if !(RECORD_SIZE_KIB_MIN..=RECORD_SIZE_KIB_MAX).contains(&kib) {
        return Err(Error::InvalidArgument(format!(
            "MaxRecordSizeInKiB {kib} is outside {RECORD_SIZE_KIB_MIN} ..= {RECORD_SIZE_KIB_MAX}."
        )));
    }
    Ok(())
}

/// Checks one tag: key 1..=128 and value 0..=256 characters of Unicode letters, digits,
/// white space and `_ . / = + - % @ :`, the key not starting with `aws:`.
pub fn validate_tag(key: &str, value: &str) -> Result<()> {
    let ok_char = |c: char| c.is_alphanumeric() || c.is_whitespace() || "_./=+-%@:".contains(c);
    let key_len = key.chars().count();
    if !(1..=128).contains(&key_len) {
        return Err(Error::InvalidArgument(format!(
            "Tag key {key:?} must be 1 to 128 characters long (it has {key_len})."
        )));
    }
    if value.chars().count() > 256 {
        return Err(Error::InvalidArgument(format!(
            "Tag value of key {key:?} is longer than 256 characters."
        )));
    }
    if key.to_ascii_lowercase().starts_with("aws:") {
        return Err(Error::InvalidArgument(format!(
            "Tag key {key:?} uses the reserved prefix aws:."
        )));
    }
    if let Some(bad) = key.chars().chain(value.chars()).find(|c| !ok_char(*c)) {
        return Err(Error::InvalidArgument(format!(
            "Tag {key:?} contains the character {bad:?}; allowed are letters, digits, white space and _ . / = + - % @ :."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(r: Result<()>) -> String {
        match r {
            Err(Error::InvalidArgument(m)) => m,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn stream_names_follow_the_kinesis_pattern() {
        for ok in ["a", "A.b-c_9", ".", "..", &"x".repeat(128)] {
            validate_stream_name(ok).unwrap();
        }
        assert!(invalid(validate_stream_name("")).contains("1 to 128"));
        assert!(invalid(validate_stream_name(&"x".repeat(129))).contains("1 to 128"));
        assert!(invalid(validate_stream_name("a/b")).contains("'/'"));
        assert!(invalid(validate_stream_name("é")).contains("[a-zA-Z0-9_.-]"));
    }

    #[test]
    fn retention_bounds_use_the_kinesis_messages() {
        validate_retention_hours(24).unwrap();
        validate_retention_hours(8760).unwrap();
        assert!(
            invalid(validate_retention_hours(23))
                .starts_with("Minimum allowed retention period is 24 hours")
        );
        assert!(
            invalid(validate_retention_hours(8761))
                .starts_with("Maximum allowed retention period is 8760 hours")
        );
    }

    #[test]
    fn record_size_bounds_are_enforced() {
        validate_max_record_size_kib(1024).unwrap();
        validate_max_record_size_kib(10240).unwrap();
        assert!(invalid(validate_max_record_size_kib(1023)).contains("1023"));
        assert!(invalid(validate_max_record_size_kib(10241)).contains("10241"));
    }

    #[test]
    fn tag_rules_are_enforced() {
        validate_tag("team", "").unwrap();
        validate_tag("a b/c=d+e-f%g@h:i_j.k", "Ünïcode 42").unwrap();
        assert!(invalid(validate_tag("", "v")).contains("1 to 128"));
        assert!(invalid(validate_tag(&"k".repeat(129), "v")).contains("1 to 128"));
        assert!(invalid(validate_tag("k", &"v".repeat(257))).contains("256"));
        assert!(invalid(validate_tag("aws:owner", "v")).contains("aws:"));
        assert!(invalid(validate_tag("k", "semi;colon")).contains("';'"));
    }

    #[test]
    fn status_follows_the_journaled_times() {
        let mut m = StreamMeta {
            uid: 1,
            name: "s".into(),
            created: TimestampMs(100),
            ready_at: TimestampMs(150),
            updating_until: TimestampMs(150),
            retention_hours: 24,
            max_record_size_kib: 1024,
            tags: BTreeMap::new(),
            count_updates: vec![],
            deleting: None,
            lineage: Lineage::initial(1, TimestampMs(100)),
        };
        assert_eq!(m.status(TimestampMs(149)), Some(StreamStatus::Creating));
        assert_eq!(m.status(TimestampMs(150)), Some(StreamStatus::Active));
        m.updating_until = TimestampMs(200);
        assert_eq!(m.status(TimestampMs(199)), Some(StreamStatus::Updating));
        assert_eq!(m.status(TimestampMs(200)), Some(StreamStatus::Active));
        m.deleting = Some(Deleting {
            at: TimestampMs(300),
            gone_at: TimestampMs(310),
        });
        assert_eq!(m.status(TimestampMs(305)), Some(StreamStatus::Deleting));
        assert_eq!(m.status(TimestampMs(310)), None);
    }
}
