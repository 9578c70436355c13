//! Model-based crash testing on the power-loss simulator: random operation sequences with
//! power cuts between and inside calls, checked against reference models of what is durable
//! and what is visible (see `logsaver::testing::model`). The fuzz target `model` explores the
//! same harness with coverage guidance; this test runs a fixed set of random sequences.
mod common;

use common::noise;
use logsaver::Durability;
use logsaver::testing::model::{ModelOp, decode_ops, run_model};

#[test]
fn random_sequences_survive_crashes_in_every_durability_mode() {
    let mut totals = (0, 0, 0, 0, 0, 0, 0, 0, 0);
    for seed in 0..150u64 {
        for durability in [Durability::Sync, Durability::Flush, Durability::None] {
            let ops = decode_ops(&noise(seed, 150));
            let report =
                run_model(&ops, durability).unwrap_or_else(|e| panic!("seed {seed} {durability:?}: {e}\nops: {ops:?}"));
            totals.0 += report.calls;
            totals.1 += report.crashes;
            totals.2 += report.torn_writes;
            totals.3 += report.recoveries;
            totals.4 += report.compactions;
            totals.5 += report.retentions;
            totals.6 += report.full_replays;
            totals.7 += report.deltas;
            totals.8 += report.deltas_stored_whole;
        }
    }
    println!(
        "model: {} calls, {} power cuts, {} torn writes, {} recoveries checked, {} compactions, {} retention passes, {} full replays, {} deltas seen at recoveries, {} deltas stored whole by compaction",
        totals.0, totals.1, totals.2, totals.3, totals.4, totals.5, totals.6, totals.7, totals.8
    );
    assert!(totals.1 > 300 && totals.3 >= totals.1 && totals.4 > 50 && totals.5 > 50 && totals.6 > 50, "{totals:?}");
    assert!(totals.7 > 300, "the runs stored values as deltas: {totals:?}");
    assert!(totals.8 > 0, "compaction stored deltas whole in some runs: {totals:?}");
}

#[test]
fn crash_at_every_io_of_a_put_recovers_a_valid_state() {
    // Fill a few segments, then cut the power at each I/O of one more put in turn.
    for nth_io in 1..=12u8 {
        for durability in [Durability::Sync, Durability::Flush] {
            let mut ops: Vec<ModelOp> = (0..12)
                .map(|i| ModelOp::Put { thread: i % 3, sub_ns: i % 2 == 0, size: 900, keep_b: i % 4 == 0 })
                .collect();
            ops.push(ModelOp::CrashDuring { nth_io, seed: u64::from(nth_io) * 31 });
            ops.push(ModelOp::Put { thread: 0, sub_ns: false, size: 10, keep_b: true });
            ops.push(ModelOp::Reopen);
            run_model(&ops, durability).unwrap_or_else(|e| panic!("nth_io {nth_io} {durability:?}: {e}"));
        }
    }
}
