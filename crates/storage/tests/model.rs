//! Model test: random appends (rolling small segments), reads, seeks by time, retention,
//! clean reopens and crashes, checked step by step against an in-memory reference.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use proptest::prelude::*;
use sluice_storage::{CrashMode, Log};

#[derive(Debug, Clone)]
enum Op {
    Append { n: u8, data_max: u16, dt: u8 },
    Read { from: u16, max: u8 },
    Seek { back: u8 },
    Retention { keep_ms: u16 },
    Reopen,
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u8..6, 0u16..900, 0u8..4).prop_map(|(n, data_max, dt)| Op::Append { n, data_max, dt }),
        3 => (any::<u16>(), 1u8..20).prop_map(|(from, max)| Op::Read { from, max }),
        2 => any::<u8>().prop_map(|back| Op::Seek { back }),
        1 => (0u16..400).prop_map(|keep_ms| Op::Retention { keep_ms }),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
    ]
}

/// The reference: every record ever acknowledged with its time, and the trim horizon.
struct Model {
    records: Vec<(Rec, u64)>,
    trim: usize,
    now: u64,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn log_behaves_like_a_vector(ops in proptest::collection::vec(op(), 1..60), seed in any::<u64>()) {
        let (sim, fs, dir) = sim();
        let config = small_config();
        let mut log: Log = open(&fs, &dir, &config).unwrap();
        let mut m = Model { records: Vec::new(), trim: 0, now: 1 };
        let mut rng = sluice_storage::SplitMix(seed);
        for op in ops {
            match op {
                Op::Append { n, data_max, dt } => {
                    m.now += u64::from(dt);
                    let batch: Vec<Rec> = (0..n).map(|i| random_rec(&mut rng, (m.records.len() + i as usize) as u64, u64::from(data_max))).collect();
                    let ins: Vec<_> = batch.iter().map(Rec::as_in).collect();
                    let a = log.append(&ins, ts(m.now)).unwrap();
                    prop_assert_eq!(a.first.0 as usize, m.records.len());
                    m.records.extend(batch.into_iter().map(|r| (r, m.now)));
                }
                Op::Read { from, max } => {
                    let from = u64::from(from) % (m.records.len() as u64 + 1);
                    let b = log.read(seq(from), usize::from(max), usize::MAX).unwrap();
                    let start = (from as usize).max(m.trim);
                    let expect = (m.records.len() - start).min(usize::from(max));
                    prop_assert_eq!(b.records.len(), expect);
                    for (i, r) in b.records.iter().enumerate() {
                        prop_assert_eq!(r.seq.0 as usize, start + i);
                        prop_assert!(m.records[start + i].0.matches(r));
                        prop_assert_eq!(r.timestamp.0, m.records[start + i].1);
                    }
                }
                Op::Seek { back } => {
                    let t = m.now.saturating_sub(u64::from(back));
                    let expect = m.records.iter().enumerate().skip(m.trim).find(|(_, (_, rt))| *rt >= t).map_or(m.records.len(), |(i, _)| i);
                    prop_assert_eq!(log.seek_time(ts(t)).unwrap().0 as usize, expect);
                }
                Op::Retention { keep_ms } => {
                    let out = log.apply_retention(ts(m.now), u64::from(keep_ms)).unwrap();
                    let trim = out.trim_horizon.0 as usize;
                    let cutoff = m.now.saturating_sub(u64::from(keep_ms));
                    prop_assert!(trim >= m.trim, "the trim horizon went back");
                    prop_assert!(m.records[m.trim..trim].iter().all(|(_, t)| *t < cutoff), "a young record was deleted");
                    m.trim = trim;
                }
                Op::Reopen => {
                    drop(log);
                    log = open(&fs, &dir, &config).unwrap();
                }
                Op::Crash => {
                    drop(log);
                    sim.crash(CrashMode::TornTail { seed: rng.next_u64() });
                    log = open(&fs, &dir, &config).unwrap();
                }
            }
            prop_assert_eq!(log.next_seq().0 as usize, m.records.len());
            prop_assert_eq!(log.trim_horizon().0 as usize, m.trim);
        }
        let all = read_all(&log);
        prop_assert_eq!(all.len(), m.records.len() - m.trim);
    }
}
