//! One stream's shards and their history: ids, hash ranges, parents, open/closed/expired
//! state, the routing table of open shards, and the planners for split, merge and uniform
//! scaling.
//!
//! Pure code: no files, no logs, no clock. A reshard is planned here ([`ReshardPlan`]), the
//! manager seals the parents' logs to learn their ending sequences, and the resulting
//! [`Reshard`] is journaled and then applied with [`Lineage::apply`]. Replay applies the same
//! [`Reshard`] values, so the live and replayed lineages cannot differ.
//!
//! Invariants (checked by [`Lineage::check`] after every change):
//! - ids are dense: shard `i` is at index `i`, and ids are never reused;
//! - the open shards tile `0 ..= 2^128-1` with no gap or overlap;
//! - a shard's parents have smaller ids and are closed (or expired), so lineage is a DAG;
//! - a shard's range and starting sequence never change once created.

use std::fmt;

use sluice_storage::{SeqNo, TimestampMs};

use crate::hash_range::{HashKey, HashRange, uniform_boundaries, uniform_layout, uniform_step};

/// A shard's id: its index within the stream, written `shardId-` plus 12 zero-padded digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId(u64);

/// Whether a shard takes puts, only serves reads, or is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardState {
    /// Receives puts for its hash range and is readable.
    Open,
    /// Split or merged: no new puts, readable until its records age out.
    Closed,
    /// Closed and past retention: its log is deleted, its lineage stays describable.
    Expired,
}

/// Everything known about one shard. A value: it does not change when the stream does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    id: ShardId,
    range: HashRange,
    parent: Option<ShardId>,
    adjacent_parent: Option<ShardId>,
    created: TimestampMs,
    closed: Option<ShardClose>,
    expired: Option<TimestampMs>,
}

/// When and where a shard was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardClose {
    /// The time of the split, merge or resize that closed it.
    pub at: TimestampMs,
    /// The sequence after its last record (its log's `next_seq` when sealed): the shard holds
    /// exactly the records `0 .. end`.
    pub end: SeqNo,
}

/// A new shard made by a reshard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NewShard {
    pub id: ShardId,
    pub range: HashRange,
    pub parent: ShardId,
    pub adjacent_parent: Option<ShardId>,
}

/// What a split, merge or resize does to a lineage, before the parents are sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReshardPlan {
    /// New shards, in id order.
    pub creates: Vec<NewShard>,
    /// Shards to close: existing open ones first (in id order), then any new intermediate
    /// shards that are closed in the same change.
    pub closes: Vec<ShardId>,
}

/// Which operation a reshard came from (kept in the journal for history and quotas).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReshardKind {
    Split,
    Merge,
    /// UpdateShardCount with uniform scaling to this many shards.
    UniformScaling {
        target: u32,
    },
}

/// A planned reshard with the parents' ending sequences filled in: one journal record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reshard {
    pub kind: ReshardKind,
    pub at: TimestampMs,
    pub creates: Vec<NewShard>,
    pub closes: Vec<(ShardId, SeqNo)>,
}

/// One stream's shards, indexed by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lineage {
    shards: Vec<ShardInfo>,
}

/// The open shards sorted by range, for binary-search routing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RouteTable {
    starts: Vec<HashKey>,
    ids: Vec<ShardId>,
}

impl ShardId {
    /// The largest index that fits in 12 digits.
    pub const INDEX_MAX: u64 = 999_999_999_999;

    /// The shard with this index; `None` past [`ShardId::INDEX_MAX`].
    pub fn new(index: u64) -> Option<ShardId> {
        (index <= Self::INDEX_MAX).then_some(ShardId(index))
    }

    /// The shard's index within its stream.
    pub fn index(self) -> u64 {
        self.0
    }

    /// Parses `shardId-` followed by exactly 12 digits; `None` otherwise (front-ends answer
    /// ResourceNotFound for such ids, as no shard has them).
    pub fn parse(text: &str) -> Option<ShardId> {
        let digits = text.strip_prefix("shardId-")?;
        if digits.len() != 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok().map(ShardId)
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shardId-{:012}", self.0)
    }
}

impl ShardInfo {
    /// The shard's id.
    pub fn id(&self) -> ShardId {
        self.id
    }

    /// The hash keys it owns (owned, while open); never changes.
    pub fn range(&self) -> HashRange {
        self.range
    }

    /// `ParentShardId`: the split shard, or the lower shard of a merge.
    pub fn parent(&self) -> Option<ShardId> {
        self.parent
    }

    /// `AdjacentParentShardId`: the upper shard of a merge.
    pub fn adjacent_parent(&self) -> Option<ShardId> {
        self.adjacent_parent
    }

    /// When the shard was created (stream creation or the reshard that made it).
    pub fn created(&self) -> TimestampMs {
        self.created
    }

    /// The sequence of its first record: always 0, as every shard has its own log.
    pub fn starting_seq(&self) -> SeqNo {
        SeqNo(0)
    }

    /// When and at which sequence it was closed; `None` while open.
    pub fn closed(&self) -> Option<ShardClose> {
        self.closed
    }

    /// The sequence of its last record once closed; `None` while open or if it closed empty.
    pub fn ending_seq(&self) -> Option<SeqNo> {
        self.closed.and_then(|c| c.end.0.checked_sub(1)).map(SeqNo)
    }

    /// When its log was deleted by retention; `None` unless expired.
    pub fn expired(&self) -> Option<TimestampMs> {
        self.expired
    }

    /// Open, closed or expired.
    pub fn state(&self) -> ShardState {
        match (self.closed, self.expired) {
            (None, _) => ShardState::Open,
            (Some(_), None) => ShardState::Closed,
            (Some(_), Some(_)) => ShardState::Expired,
        }
    }
}

impl Lineage {
    /// The shards of a new stream: ids `0 .. count` over [`uniform_layout`].
    pub fn initial(count: u32, at: TimestampMs) -> Lineage {
        let shards = uniform_layout(count)
            .into_iter()
            .zip(0u64..)
            .map(|(range, i)| ShardInfo {
                id: ShardId(i),
                range,
                parent: None,
                adjacent_parent: None,
                created: at,
                closed: None,
                expired: None,
            })
            .collect();
        Lineage { shards }
    }

    /// Every shard ever made, in id order.
    pub fn all(&self) -> &[ShardInfo] {
        &self.shards
    }

    /// A shard by id.
    pub fn get(&self, id: ShardId) -> Option<&ShardInfo> {
        usize::try_from(id.0).ok().and_then(|i| self.shards.get(i))
    }

    /// The id the next new shard gets.
    pub fn next_id(&self) -> ShardId {
        ShardId(self.shards.len() as u64)
    }

    /// The open shards, sorted by hash range.
    pub fn open_sorted(&self) -> Vec<&ShardInfo> {
        let mut open: Vec<&ShardInfo> = self.shards.iter().filter(|s| s.closed.is_none()).collect();
        open.sort_by_key(|s| s.range.start());
        open
    }

    /// How many shards are open.
    pub fn open_count(&self) -> usize {
        self.shards.iter().filter(|s| s.closed.is_none()).count()
    }

    /// The shards made from `id` by a later split or merge.
    pub fn children(&self, id: ShardId) -> Vec<ShardId> {
        self.shards
            .iter()
            .filter(|s| s.parent == Some(id) || s.adjacent_parent == Some(id))
            .map(|s| s.id)
            .collect()
    }

    /// The routing table of the open shards.
    pub fn route_table(&self) -> RouteTable {
        let open = self.open_sorted();
        RouteTable {
            starts: open.iter().map(|s| s.range.start()).collect(),
            ids: open.iter().map(|s| s.id).collect(),
        }
    }

    /// Plans SplitShard: two children of `parent`, the lower id taking the lower half.
    /// The caller has checked that `parent` is open and `at` obeys the split rule.
    pub fn plan_split(&self, parent: &ShardInfo, at: HashKey) -> Option<ReshardPlan> {
        let (lower, upper) = parent.range.split_at(at)?;
        let first = self.next_id();
        let creates = vec![
            new_shard(first, lower, parent.id, None),
            new_shard(ShardId(first.0 + 1), upper, parent.id, None),
        ];
        Some(ReshardPlan {
            creates,
            closes: vec![parent.id],
        })
    }

    /// Plans MergeShards of `lower` and the shard directly above it, `upper`.
    pub fn plan_merge(&self, lower: &ShardInfo, upper: &ShardInfo) -> Option<ReshardPlan> {
        let range = lower.range.merge_with_upper(&upper.range)?;
        let child = new_shard(self.next_id(), range, lower.id, Some(upper.id));
        Some(ReshardPlan {
            creates: vec![child],
            closes: vec![lower.id, upper.id],
        })
    }

    /// Plans UpdateShardCount with uniform scaling to `target` open shards, leaving as few
    /// intermediate shards as Kinesis does (see [`target_boundaries`] for the rule and the
    /// measurements behind it): the boundaries of the new layout are chosen first, reusing
    /// an existing boundary where one is close enough; open shards are split at every chosen
    /// boundary strictly inside them (a shard cut twice is split twice, its intermediate
    /// upper piece closing at once); then the pieces inside each new range are merged, lowest
    /// first, until one remains. Scaling down therefore only merges disjoint adjacent pairs.
    /// With `s` splits the plan creates `3s + current - target` shards. An empty plan means
    /// nothing to do. Linear in the shards after one sort, so 10,000 shards plan in
    /// milliseconds.
    pub fn plan_uniform(&self, target: u32) -> ReshardPlan {
        let open = self.open_sorted();
        let existing: Vec<HashKey> = open.iter().skip(1).map(|s| s.range.start()).collect();
        let boundaries = target_boundaries(&existing, target);
        let mut work = Planner {
            next: self.next_id().0,
            plan: ReshardPlan {
                creates: Vec::new(),
                closes: Vec::new(),
            },
        };
        let pieces = work.split_all(&open, &boundaries);
        work.merge_all(pieces, &boundaries);
        let first_new = self.next_id();
        // Existing shards close first, in id order, then intermediates.
        work.plan.closes.sort_by_key(|id| (*id >= first_new, *id));
        work.plan
    }

    /// Applies a journaled reshard. `Err` names the broken rule; on replay that means the
    /// journal is corrupt, live it is a bug (the change was planned from this lineage).
    pub fn apply(&mut self, change: &Reshard) -> Result<(), String> {
        for new in &change.creates {
            self.apply_create(new, change.at)?;
        }
        for &(id, end) in &change.closes {
            let shard = usize::try_from(id.0)
                .ok()
                .and_then(|i| self.shards.get_mut(i))
                .ok_or_else(|| format!("reshard closes unknown shard {id}"))?;
            if shard.closed.is_some() {
                return Err(format!("reshard closes {id}, which is already closed"));
            }
            shard.closed = Some(ShardClose { at: change.at, end });
        }
        self.check()
    }

    /// Marks a closed shard expired (its log deleted by retention).
    pub fn expire(&mut self, id: ShardId, at: TimestampMs) -> Result<(), String> {
        let shard = usize::try_from(id.0)
            .ok()
            .and_then(|i| self.shards.get_mut(i))
            .ok_or_else(|| format!("expiry of unknown shard {id}"))?;
        match shard.state() {
            ShardState::Closed => {
                shard.expired = Some(at);
                Ok(())
            }
            state => Err(format!("expiry of {id}, which is {state:?}")),
        }
    }

    /// Checks the invariants in the module doc. O(n log n).
    pub fn check(&self) -> Result<(), String> {
        let mut next = HashKey(0);
        let mut covered_all = false;
        for s in self.open_sorted() {
            if covered_all || s.range.start() != next {
                return Err(format!(
                    "open shards do not tile the hash-key space at {} ({} starts at {})",
                    next,
                    s.id,
                    s.range.start()
                ));
            }
            match s.range.end().0.checked_add(1) {
                Some(n) => next = HashKey(n),
                None => covered_all = true,
            }
        }
        if !covered_all {
            return Err(format!("open shards end before 2^128-1, at {next}"));
        }
        for (i, s) in self.shards.iter().enumerate() {
            if s.id.0 != i as u64 {
                return Err(format!("shard at index {i} has id {}", s.id));
            }
            for p in [s.parent, s.adjacent_parent].into_iter().flatten() {
                let closed = self.get(p).is_some_and(|ps| ps.closed.is_some());
                if p >= s.id || !closed {
                    return Err(format!(
                        "{} has parent {p}, which is not an older closed shard",
                        s.id
                    ));
                }
            }
        }
        Ok(())
    }

    /// Rebuilds a lineage from decoded shards (snapshot), checking the invariants.
    pub fn from_shards(shards: Vec<ShardInfo>) -> Result<Lineage, String> {
        let lineage = Lineage { shards };
        lineage.check()?;
        Ok(lineage)
    }

    fn apply_create(&mut self, new: &NewShard, at: TimestampMs) -> Result<(), String> {
        if new.id != self.next_id() {
            return Err(format!(
                "reshard creates {}, expected {}",
                new.id,
                self.next_id()
            ));
        }
        for p in [Some(new.parent), new.adjacent_parent]
            .into_iter()
            .flatten()
        {
            if self.get(p).is_none() {
                return Err(format!("{} names unknown parent {p}", new.id));
            }
        }
        self.shards.push(ShardInfo {
            id: new.id,
            range: new.range,
            parent: Some(new.parent),
            adjacent_parent: new.adjacent_parent,
            created: at,
            closed: None,
            expired: None,
        });
        Ok(())
    }
}

impl ShardInfo {
    /// A shard as decoded from a snapshot; [`Lineage::from_shards`] checks the whole set.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_parts(
        id: ShardId,
        range: HashRange,
        parent: Option<ShardId>,
        adjacent_parent: Option<ShardId>,
        created: TimestampMs,
        closed: Option<ShardClose>,
        expired: Option<TimestampMs>,
    ) -> ShardInfo {
        ShardInfo {
            id,
            range,
            parent,
            adjacent_parent,
            created,
            closed,
            expired,
        }
    }
}

impl ShardId {
    /// The id from a decoded index (journal, snapshot), unchecked against the 12 digits.
    pub(crate) fn from_index(index: u64) -> ShardId {
        ShardId(index)
    }
}

impl RouteTable {
    /// The open shard owning `key`: a binary search over the sorted range starts.
    pub fn lookup(&self, key: HashKey) -> Option<(usize, ShardId)> {
        let slot = self.starts.partition_point(|s| *s <= key).checked_sub(1)?;
        self.ids.get(slot).map(|id| (slot, *id))
    }

    /// The open shards' ids in range order.
    pub fn ids(&self) -> &[ShardId] {
        &self.ids
    }
}

/// The working state of [`Lineage::plan_uniform`]: ids handed out and the plan so far.
struct Planner {
    next: u64,
    plan: ReshardPlan,
}

impl Planner {
    fn alloc(&mut self) -> ShardId {
        let id = ShardId(self.next);
        self.next += 1;
        id
    }

    /// Splits the open shards (sorted by range) at every boundary strictly inside them, in
    /// key order; returns the pieces in key order.
    fn split_all(
        &mut self,
        open: &[&ShardInfo],
        boundaries: &[HashKey],
    ) -> Vec<(ShardId, HashRange)> {
        let mut pieces = Vec::with_capacity(open.len() + boundaries.len());
        let mut next = boundaries.iter().peekable();
        for shard in open {
            let (mut id, mut range) = (shard.id, shard.range);
            while next.next_if(|b| **b <= range.start()).is_some() {}
            while let Some(&b) = next.next_if(|b| **b <= range.end()) {
                let Some((lower, upper)) = range.split_at(b) else {
                    continue;
                };
                let (lower_id, upper_id) = (self.alloc(), self.alloc());
                self.plan.creates.push(new_shard(lower_id, lower, id, None));
                self.plan.creates.push(new_shard(upper_id, upper, id, None));
                self.plan.closes.push(id);
                pieces.push((lower_id, lower));
                (id, range) = (upper_id, upper);
            }
            pieces.push((id, range));
        }
        pieces
    }

    /// Merges the pieces (in key order) lying between two consecutive boundaries, lowest
    /// first, so each new range ends as one shard. Every boundary starts a piece.
    fn merge_all(&mut self, pieces: Vec<(ShardId, HashRange)>, boundaries: &[HashKey]) {
        let mut next = boundaries.iter().peekable();
        let mut acc: Option<(ShardId, HashRange)> = None;
        for (id, range) in pieces {
            let starts_range = next.next_if(|b| **b == range.start()).is_some();
            let Some((acc_id, acc_range)) = acc.filter(|_| !starts_range) else {
                acc = Some((id, range));
                continue;
            };
            let Some(merged) = acc_range.merge_with_upper(&range) else {
                // Pieces come from a tiling in key order, so they are always adjacent.
                acc = Some((id, range));
                continue;
            };
            let child = self.alloc();
            self.plan
                .creates
                .push(new_shard(child, merged, acc_id, Some(id)));
            self.plan.closes.push(acc_id);
            self.plan.closes.push(id);
            acc = Some((child, merged));
        }
    }
}

/// The range starts (other than 0) of the layout UpdateShardCount leaves: the uniform
/// boundaries of `target` shards (`k * floor(2^128 / target)`), except that where an
/// `existing` boundary (an open shard's start, sorted) is close enough, that boundary is
/// kept instead of splitting next to it. "Close enough" is an eighth of a target range
/// when scaling up (or keeping the count), and half a target range when scaling down, where
/// the nearest existing boundary is always used: scaling down is then pure merging.
///
/// The rule reproduces the totals of open and closed shards measured on Kinesis after one
/// UNIFORM_SCALING call (2 -> 4: 6, 4 -> 5: 15, 10 -> 13: 37, 4 -> 2: 6, 5 -> 3: 7). For
/// 10 -> 13 the boundaries 4/13 and 9/13 lie a tenth of a target range from 0.3 and 0.7 and
/// are kept as they are, while 5/13 lies a fifth of a range from 0.4 and is split at, so
/// the threshold lies between a tenth and a fifth; 4 -> 5 splits at all four (a quarter
/// away); 5 -> 3 merges two pairs without any split. The price is that the new shards are
/// only nearly uniform (each boundary within the tolerance of the uniform one), as on
/// Kinesis.
pub(crate) fn target_boundaries(existing: &[HashKey], target: u32) -> Vec<HashKey> {
    let step = uniform_step(target);
    let current = existing.len() + 1;
    let tolerance = if target as usize >= current {
        step / 8
    } else {
        step / 2
    };
    let mut chosen: Vec<HashKey> = Vec::with_capacity(target.saturating_sub(1) as usize);
    let mut above = 0;
    for b in uniform_boundaries(target) {
        while existing.get(above).is_some_and(|e| *e < b) {
            above += 1;
        }
        let below = above.checked_sub(1).and_then(|i| existing.get(i));
        let nearest = [below, existing.get(above)]
            .into_iter()
            .flatten()
            .copied()
            .min_by_key(|e| e.0.abs_diff(b.0));
        let last = chosen.last().copied().unwrap_or(HashKey(0));
        let keep = nearest.filter(|e| *e > last && e.0.abs_diff(b.0) <= tolerance);
        chosen.push(keep.unwrap_or(b));
    }
    chosen
}

fn new_shard(
    id: ShardId,
    range: HashRange,
    parent: ShardId,
    adjacent_parent: Option<ShardId>,
) -> NewShard {
    NewShard {
        id,
        range,
        parent,
        adjacent_parent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reshard(plan: ReshardPlan, kind: ReshardKind) -> Reshard {
        Reshard {
            kind,
            at: TimestampMs(5),
            creates: plan.creates,
            closes: plan.closes.into_iter().map(|id| (id, SeqNo(0))).collect(),
        }
    }

    fn ranges_of_open(l: &Lineage) -> Vec<HashRange> {
        l.open_sorted().iter().map(|s| s.range()).collect()
    }

    #[test]
    fn shard_ids_print_with_twelve_digits_and_parse_back() {
        assert_eq!(ShardId(7).to_string(), "shardId-000000000007");
        assert_eq!(ShardId::parse("shardId-000000000007"), Some(ShardId(7)));
        for bad in [
            "shardId-7",
            "shardid-000000000007",
            "shardId-00000000000a",
            "shardId-0000000000070",
        ] {
            assert_eq!(ShardId::parse(bad), None, "{bad}");
        }
        assert_eq!(ShardId::new(ShardId::INDEX_MAX + 1), None);
    }

    #[test]
    fn split_gives_the_lower_id_the_lower_half() {
        let mut l = Lineage::initial(1, TimestampMs(0));
        let parent = l.get(ShardId(0)).unwrap().clone();
        let plan = l.plan_split(&parent, HashKey(1 << 127)).unwrap();
        l.apply(&reshard(plan, ReshardKind::Split)).unwrap();
        let lower = l.get(ShardId(1)).unwrap();
        let upper = l.get(ShardId(2)).unwrap();
        assert_eq!(lower.range().end(), HashKey((1 << 127) - 1));
        assert_eq!(upper.range().start(), HashKey(1 << 127));
        assert_eq!(lower.parent(), Some(ShardId(0)));
        assert_eq!(upper.adjacent_parent(), None);
        assert_eq!(l.get(ShardId(0)).unwrap().state(), ShardState::Closed);
        assert_eq!(l.children(ShardId(0)), vec![ShardId(1), ShardId(2)]);
    }

    #[test]
    fn merge_records_both_parents() {
        let mut l = Lineage::initial(2, TimestampMs(0));
        let (a, b) = (
            l.get(ShardId(0)).unwrap().clone(),
            l.get(ShardId(1)).unwrap().clone(),
        );
        assert!(
            l.plan_merge(&b, &a).is_none(),
            "reversed order is not adjacent"
        );
        let plan = l.plan_merge(&a, &b).unwrap();
        l.apply(&reshard(plan, ReshardKind::Merge)).unwrap();
        let child = l.get(ShardId(2)).unwrap();
        assert_eq!(child.range(), HashRange::FULL);
        assert_eq!(
            (child.parent(), child.adjacent_parent()),
            (Some(ShardId(0)), Some(ShardId(1)))
        );
    }

    #[test]
    fn uniform_scaling_reaches_a_nearly_uniform_layout() {
        for (from, to) in [
            (1, 2),
            (2, 4),
            (3, 5),
            (5, 3),
            (4, 2),
            (3, 6),
            (7, 4),
            (6, 6),
        ] {
            let mut l = Lineage::initial(from, TimestampMs(0));
            let plan = l.plan_uniform(to);
            if from == to {
                assert!(plan.creates.is_empty());
            }
            l.apply(&reshard(plan, ReshardKind::UniformScaling { target: to }))
                .unwrap();
            let open = ranges_of_open(&l);
            assert_eq!(open.len(), to as usize, "{from} -> {to}");
            // Scaling up moves a boundary by at most an eighth of a range, down by half.
            let slack = uniform_step(to) / if to >= from { 8 } else { 2 };
            for (r, uniform) in open.iter().zip(uniform_layout(to)) {
                assert!(
                    r.start().0.abs_diff(uniform.start().0) <= slack,
                    "{from} -> {to}"
                );
            }
            if from.is_power_of_two() && to.is_power_of_two() {
                // Their boundaries are exact multiples of each other's.
                assert_eq!(open, uniform_layout(to), "{from} -> {to}");
            }
        }
    }

    /// Total shards (open and closed) after one UNIFORM_SCALING call from a new stream.
    fn total_after_uniform(from: u32, to: u32) -> usize {
        let mut l = Lineage::initial(from, TimestampMs(0));
        let plan = l.plan_uniform(to);
        l.apply(&reshard(plan, ReshardKind::UniformScaling { target: to }))
            .unwrap();
        assert_eq!(l.open_count(), to as usize, "{from} -> {to}");
        l.all().len()
    }

    #[test]
    fn uniform_scaling_leaves_as_many_shards_as_kinesis() {
        // Open and closed shards after one call, as measured on Kinesis itself (issue 13).
        for (from, to, kinesis) in [(2, 4, 6), (4, 5, 15), (10, 13, 37), (4, 2, 6), (5, 3, 7)] {
            assert_eq!(total_after_uniform(from, to), kinesis, "{from} -> {to}");
        }
    }

    #[test]
    fn scaling_down_only_merges_disjoint_pairs() {
        let mut l = Lineage::initial(5, TimestampMs(0));
        let plan = l.plan_uniform(3);
        assert_eq!(plan.creates.len(), 2);
        assert!(plan.creates.iter().all(|c| c.adjacent_parent.is_some()));
        let mut closed = plan.closes.clone();
        closed.sort();
        closed.dedup();
        assert_eq!(closed.len(), 4, "each parent is merged once");
        l.apply(&reshard(plan, ReshardKind::UniformScaling { target: 3 }))
            .unwrap();
        // The kept boundaries are the old ones nearest to 1/3 and 2/3: 2/5 and 3/5.
        let starts: Vec<u128> = ranges_of_open(&l).iter().map(|r| r.start().0).collect();
        let fifth = uniform_layout(5)[1].start().0;
        assert_eq!(starts, vec![0, 2 * fifth, 3 * fifth]);
    }

    #[test]
    fn a_boundary_within_an_eighth_of_a_range_is_kept_not_split_next_to() {
        // 10 -> 13: 4/13 and 9/13 lie 1/130 from 0.3 and 0.7 and keep them.
        let l = Lineage::initial(10, TimestampMs(0));
        let existing: Vec<HashKey> = uniform_boundaries(10);
        let chosen = target_boundaries(&existing, 13);
        let uniform = uniform_boundaries(13);
        assert_eq!(chosen.len(), 12);
        for (k, (c, u)) in chosen.iter().zip(&uniform).enumerate() {
            let kept = [3usize, 8].contains(&k);
            assert_eq!(c != u, kept, "boundary {}/13", k + 1);
        }
        assert_eq!(chosen[3], existing[2]);
        assert_eq!(chosen[8], existing[6]);
        assert_eq!(l.plan_uniform(13).creates.len(), 27);
    }

    #[test]
    fn apply_refuses_a_change_that_leaves_a_gap() {
        let mut l = Lineage::initial(2, TimestampMs(0));
        let bad = Reshard {
            kind: ReshardKind::Split,
            at: TimestampMs(1),
            creates: vec![],
            closes: vec![(ShardId(0), SeqNo(0))],
        };
        assert!(l.apply(&bad).unwrap_err().contains("tile"));
    }

    #[test]
    fn route_table_finds_the_owner_of_boundaries() {
        let l = Lineage::initial(4, TimestampMs(0));
        let t = l.route_table();
        assert_eq!(t.lookup(HashKey(0)).map(|x| x.1), Some(ShardId(0)));
        assert_eq!(
            t.lookup(HashKey((1 << 126) - 1)).map(|x| x.1),
            Some(ShardId(0))
        );
        assert_eq!(t.lookup(HashKey(1 << 126)).map(|x| x.1), Some(ShardId(1)));
        assert_eq!(t.lookup(HashKey::MAX).map(|x| x.1), Some(ShardId(3)));
    }

    /// A lineage reached by random splits and merges from a uniform start.
    fn random_lineage(start: u32, ops: &[(bool, u16)]) -> Lineage {
        let mut l = Lineage::initial(start, TimestampMs(0));
        for &(split, pick) in ops {
            let open: Vec<ShardInfo> = l.open_sorted().into_iter().cloned().collect();
            let i = usize::from(pick) % open.len();
            let plan = if split {
                let r = open[i].range();
                let mid = HashKey(r.start().0 + (r.end().0 - r.start().0) / 2 + 1);
                if !r.split_allowed(mid) {
                    continue;
                }
                l.plan_split(&open[i], mid)
            } else if i + 1 < open.len() {
                l.plan_merge(&open[i], &open[i + 1])
            } else {
                None
            };
            if let Some(plan) = plan {
                l.apply(&reshard(plan, ReshardKind::Split)).unwrap();
            }
        }
        l
    }

    proptest::proptest! {
        #[test]
        fn uniform_scaling_tiles_with_target_shards_of_at_most_two_parents(
            start in 1u32..40,
            ops in proptest::collection::vec((proptest::bool::ANY, proptest::num::u16::ANY), 0..12),
            ratio in 0.5f64..=2.0,
        ) {
            let mut l = random_lineage(start, &ops);
            let current = l.open_count() as u32;
            let target = ((f64::from(current) * ratio).round() as u32)
                .clamp(current.div_ceil(2), 2 * current)
                .max(1);
            let before = l.all().len();
            let plan = l.plan_uniform(target);
            let splits = plan.creates.iter().filter(|c| c.adjacent_parent.is_none()).count() / 2;
            let created = plan.creates.len();
            l.apply(&reshard(plan, ReshardKind::UniformScaling { target })).unwrap();
            proptest::prop_assert_eq!(l.open_count(), target as usize);
            proptest::prop_assert_eq!(created + target as usize, 3 * splits + current as usize);
            proptest::prop_assert_eq!(l.all().len(), before + created);
            // Each new range starts near its uniform boundary (within half a range).
            let step = uniform_step(target);
            for (s, uniform) in l.open_sorted().iter().skip(1).zip(uniform_boundaries(target)) {
                proptest::prop_assert!(s.range().start().0.abs_diff(uniform.0) <= step / 2);
            }
            for s in l.all() {
                let parents = [s.parent(), s.adjacent_parent()].into_iter().flatten().count();
                proptest::prop_assert!(parents <= 2);
            }
            // `apply` ran `check`: the open shards tile the key space, parents are older.
        }
    }
}
