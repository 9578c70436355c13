//! The concurrent model test (see `logsaver::testing::concurrent`): threads racing every kind of
//! call on overlapping threads, the store checked against the reference fed the same calls in
//! commit order, live, after reopen, after a full replay and after a power cut, in every
//! durability mode. Bounded in time: a fixed set of seeds.

use logsaver::Durability;
use logsaver::testing::concurrent::run_concurrent_model;

#[test]
fn concurrent_calls_match_the_reference_in_commit_order() {
    let mut total = logsaver::testing::concurrent::ConcurrentReport::default();
    // More with CONCURRENT_MODEL_SEEDS=n (a longer soak); the default keeps CI's run short.
    let seeds: u64 = std::env::var("CONCURRENT_MODEL_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(100);
    for seed in 1..=seeds {
        for durability in [Durability::Sync, Durability::Flush, Durability::None] {
            let report = run_concurrent_model(seed, durability, 4, 60, 2)
                .unwrap_or_else(|e| panic!("seed {seed} {durability:?}: {e}"));
            total.calls += report.calls;
            total.committed += report.committed;
            total.reads_checked += report.reads_checked;
            total.compactions += report.compactions;
            total.states_compared += report.states_compared;
            total.deltas += report.deltas;
            total.deltas_stored_whole += report.deltas_stored_whole;
        }
    }
    println!("concurrent model: {total:?}");
    assert!(
        total.committed > seeds * 500 && total.reads_checked > seeds * 100 && total.compactions > seeds * 50,
        "{total:?}"
    );
    assert!(total.deltas > seeds * 10, "the runs stored values as deltas: {total:?}");
}
