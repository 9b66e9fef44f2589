//! Property test: after any random sequence of create, split, merge, update-shard-count,
//! put, delete, compaction and reopen, every stream's open shards tile `0 ..= 2^128-1`
//! exactly, every key routes to exactly one open shard, lineage is a DAG where each closed
//! shard has one or two children, and replaying the journal (with or without a snapshot)
//! gives the same state as the live manager.

// Test helpers panic on failure, as the tests themselves do.
#![allow(clippy::unwrap_used)]

mod common;

use common::{check_stream, config, open_sim, put, settle, state};
use proptest::prelude::*;
use proptest::sample::Index;
use sluice_shards::{CreateStream, HashKey, ShardManager, ShardState};
use sluice_storage::{SimFs, TimestampMs};

#[derive(Debug, Clone)]
enum Op {
    Create {
        shards: u32,
    },
    Split {
        stream: Index,
        shard: Index,
        cut: u128,
    },
    Merge {
        stream: Index,
        pair: Index,
    },
    Update {
        stream: Index,
        target: Index,
    },
    Put {
        stream: Index,
        key: u64,
    },
    Delete {
        stream: Index,
    },
    Compact,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (1u32..5).prop_map(|shards| Op::Create { shards }),
        4 => (any::<Index>(), any::<Index>(), any::<u128>()).prop_map(|(stream, shard, cut)| Op::Split { stream, shard, cut }),
        3 => (any::<Index>(), any::<Index>()).prop_map(|(stream, pair)| Op::Merge { stream, pair }),
        3 => (any::<Index>(), any::<Index>()).prop_map(|(stream, target)| Op::Update { stream, target }),
        2 => (any::<Index>(), any::<u64>()).prop_map(|(stream, key)| Op::Put { stream, key }),
        1 => any::<Index>().prop_map(|stream| Op::Delete { stream }),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
    ]
}

struct Model {
    fs: SimFs,
    mgr: Option<ShardManager>,
    names: Vec<String>,
    created: usize,
    now: u64,
}

impl Model {
    fn m(&self) -> &ShardManager {
        self.mgr
            .as_ref()
            .expect("a manager is open between operations")
    }

    fn apply(&mut self, op: &Op) {
        self.now += 1;
        let now = TimestampMs(self.now);
        let pick = |i: &Index, names: &[String]| {
            (!names.is_empty()).then(|| names[i.index(names.len())].clone())
        };
        match op {
            Op::Create { shards } => {
                let name = format!("s{}", self.created);
                self.created += 1;
                self.m()
                    .create_stream(&CreateStream::new(name.clone(), *shards), now)
                    .unwrap();
                self.names.push(name);
            }
            Op::Split { stream, shard, cut } => {
                let Some(name) = pick(stream, &self.names) else {
                    return;
                };
                let open = self.open(&name);
                let (id, start, end) = open[shard.index(open.len())];
                if end - start < 3 {
                    return;
                }
                let key = start + 2 + cut % (end - start - 2);
                self.m().split_shard(&name, id, HashKey(key), now).unwrap();
                settle(self.m(), self.now);
            }
            Op::Merge { stream, pair } => {
                let Some(name) = pick(stream, &self.names) else {
                    return;
                };
                let open = self.open(&name);
                if open.len() < 2 {
                    return;
                }
                let i = pair.index(open.len() - 1);
                self.m()
                    .merge_shards(&name, open[i].0, open[i + 1].0, now)
                    .unwrap();
                settle(self.m(), self.now);
            }
            Op::Update { stream, target } => {
                let Some(name) = pick(stream, &self.names) else {
                    return;
                };
                let current = self.open(&name).len() as u32;
                let (lo, hi) = (current.div_ceil(2), (2 * current).min(24));
                let target = lo + target.index((hi - lo + 1) as usize) as u32;
                let out = self.m().update_shard_count(&name, target, now).unwrap();
                assert_eq!((out.current, out.target), (current, target));
                settle(self.m(), self.now);
                assert_eq!(self.open(&name).len() as u32, target);
            }
            Op::Put { stream, key } => {
                let Some(name) = pick(stream, &self.names) else {
                    return;
                };
                put(self.m(), &name, &key.to_le_bytes(), b"data", self.now);
            }
            Op::Delete { stream } => {
                let Some(name) = pick(stream, &self.names) else {
                    return;
                };
                self.m().delete_stream(&name, now).unwrap();
                self.names.retain(|n| *n != name);
            }
            Op::Compact => self.m().compact().unwrap(),
            Op::Reopen => self.reopen_and_compare(),
        }
    }

    /// Open shards as (id, start, end), sorted by range.
    fn open(&self, name: &str) -> Vec<(sluice_shards::ShardId, u128, u128)> {
        let d = self
            .m()
            .describe_stream(name, TimestampMs(self.now))
            .unwrap();
        let mut open: Vec<_> = d
            .shards
            .iter()
            .filter(|s| s.state() == ShardState::Open)
            .map(|s| (s.id(), s.range().start().0, s.range().end().0))
            .collect();
        open.sort_by_key(|s| s.1);
        open
    }

    fn reopen_and_compare(&mut self) {
        let live = state(self.m(), self.now);
        // Drop the live manager first: a data directory has one owner at a time.
        self.mgr = None;
        self.mgr = Some(open_sim(&self.fs, config(), self.now).unwrap());
        assert_eq!(
            state(self.m(), self.now),
            live,
            "replay differs from the live state"
        );
    }

    fn check(&self, probes: &[u128]) {
        let listed: Vec<String> = state(self.m(), self.now)
            .into_iter()
            .map(|d| d.name)
            .collect();
        let mut expected = self.names.clone();
        expected.sort();
        assert_eq!(listed, expected);
        for name in &self.names {
            check_stream(self.m(), name, self.now, probes);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn reshards_keep_the_tiling_routing_lineage_and_replay(
        ops in prop::collection::vec(op(), 1..24),
        probes in prop::collection::vec(any::<u128>(), 8),
    ) {
        let fs = SimFs::new();
        let m = open_sim(&fs, config(), 0).unwrap();
        let mut model = Model { fs, mgr: Some(m), names: Vec::new(), created: 0, now: 0 };
        let mut probes = probes;
        probes.extend([0, u128::MAX, 1 << 127]);
        for op in &ops {
            model.apply(op);
            model.check(&probes);
        }
        model.reopen_and_compare();
        model.check(&probes);
        model.m().compact().unwrap();
        model.reopen_and_compare();
    }
}
