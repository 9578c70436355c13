//! `logsaver demo`: a fleet of simulated agents. Each step of each agent makes a few concurrent
//! `put_writes` (its tasks) and one `put`, with a growing message list and small channels, the
//! way a LangGraph agent loop does.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use logsaver::{
    Blob, ChannelVersion, Checkpoint, CheckpointSaver, Config, Error, ListQuery, LogStore, Options, Result,
    next_version,
};

use crate::DemoArgs;

/// Run the demo.
pub fn run(args: &DemoArgs) -> Result<()> {
    prepare_dir(&args.dir)?;
    let options = Options::with_durability(args.durability);
    let total_steps = args.threads * args.steps;
    println!(
        "logsaver demo: {} agent threads x {} steps, {} workers, {} tasks per step, durability {}",
        args.threads, args.steps, args.workers, args.tasks, args.durability
    );
    println!("store: {}", args.dir.display());

    let store = LogStore::open(&args.dir, options.clone())?;
    let progress = ProgressBar::new(total_steps as u64);
    progress.set_style(
        ProgressStyle::with_template("{bar:40.cyan/blue} {pos}/{len} steps {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let next_thread = AtomicUsize::new(0);
    let failure = std::sync::Mutex::new(None::<Error>);
    std::thread::scope(|scope| {
        for _ in 0..args.workers.max(1) {
            scope.spawn(|| {
                loop {
                    let thread = next_thread.fetch_add(1, Ordering::Relaxed);
                    if thread >= args.threads {
                        return;
                    }
                    if let Err(error) = run_agent(&store, thread, args, &progress) {
                        if let Ok(mut first) = failure.lock() {
                            first.get_or_insert(error);
                        }
                        return;
                    }
                }
            });
        }
    });
    progress.finish_and_clear();
    if let Some(error) = failure.into_inner().ok().flatten() {
        return Err(error);
    }
    let elapsed = started.elapsed();
    let stats = store.stats();
    let secs = elapsed.as_secs_f64();
    println!("\nwrote {total_steps} steps in {secs:.2} s");
    println!("  throughput     {:>10.0} steps/s", total_steps as f64 / secs);
    println!("  write calls    {:>10} ({:.0}/s)", stats.commits, stats.commits as f64 / secs);
    println!(
        "  bytes written  {:>10.1} MB ({:.1} MB/s)",
        stats.bytes_written as f64 / 1e6,
        stats.bytes_written as f64 / 1e6 / secs
    );
    println!(
        "  fsyncs         {:>10} ({:.2} per step, {:.1} write calls per fsync: group commit)",
        stats.fsyncs,
        stats.fsyncs as f64 / total_steps as f64,
        stats.commits as f64 / stats.fsyncs.max(1) as f64
    );
    println!("  segments       {:>10}", stats.segments);
    let space = store.space();
    let values = store.value_space();
    println!(
        "  bytes per step {:>10.0} on disk; the state stored whole every step would be {:.0} ({:.1}x less: {} of {} values are deltas, compressed {})",
        space.record_bytes as f64 / total_steps as f64,
        values.logical_bytes as f64 / total_steps as f64,
        values.ratio(),
        values.deltas,
        values.values,
        values.compressed
    );
    store.close()?;
    drop(store);

    let reopen_started = Instant::now();
    let store = LogStore::open(&args.dir, options)?;
    let reopen = reopen_started.elapsed();
    let report = store.recovery_report();
    println!(
        "\nreopened in {:.1} ms: scanned {} segments, {} frames, {} records ({:.1} MB)",
        reopen.as_secs_f64() * 1e3,
        report.segments,
        report.frames,
        report.records,
        report.bytes as f64 / 1e6
    );
    let stats = store.stats();
    println!(
        "  index: {} threads, {} checkpoints, {} blobs, {} write records",
        stats.threads, stats.checkpoints, stats.blobs, stats.write_records
    );
    if stats.checkpoints != total_steps as u64 {
        return Err(Error::InvalidArgument(format!(
            "expected {total_steps} checkpoints after reopen, found {}",
            stats.checkpoints
        )));
    }
    println!("  verified: every step survived the reopen");
    print_history(&store, &thread_name(0))?;
    store.close()
}

/// Create the directory, replacing an earlier demo store (and refusing to touch anything else:
/// every file must be one a store writes).
fn prepare_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        let entries = fs::read_dir(dir).map_err(|e| Error::Io { op: "list directory", path: dir.into(), source: e })?;
        let mut ours = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let base = name.strip_suffix(".tmp").unwrap_or(&name);
            let store_file =
                ["LOCK", "MANIFEST", "INDEX", logsaver::METRICS_FILE].contains(&base) || base.ends_with(".seg");
            if !store_file {
                return Err(Error::InvalidArgument(format!(
                    "{} holds {name}, which is not a logsaver file; pick another directory",
                    dir.display()
                )));
            }
            if name != logsaver::LOCK_FILE {
                ours.push(entry.path());
            }
        }
        // Take the lock first so a running store is never pulled out from under its owner.
        drop(LogStore::open(dir, Options::default())?);
        for path in ours.iter().filter(|p| p.exists()) {
            fs::remove_file(path).map_err(|e| Error::Io { op: "remove", path: path.clone(), source: e })?;
        }
    }
    Ok(())
}

fn thread_name(n: usize) -> String {
    format!("agent-{n:04}")
}

/// One agent's conversation: `args.steps` steps.
fn run_agent(store: &LogStore, n: usize, args: &DemoArgs, progress: &ProgressBar) -> Result<()> {
    let thread = thread_name(n);
    let mut rng = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    let mut messages: Vec<String> = Vec::new();
    let mut checkpoint = Checkpoint::empty(store.next_checkpoint_id());
    let mut config = Config::thread(&thread);
    for step in 0..args.steps {
        // The tasks of this step write concurrently against the current checkpoint.
        if step > 0 {
            let task_config = config.clone();
            std::thread::scope(|scope| -> Result<()> {
                let handles: Vec<_> = (0..args.tasks)
                    .map(|task| {
                        let (task_config, thread) = (&task_config, &thread);
                        scope.spawn(move || {
                            let writes = vec![
                                (
                                    "messages".to_string(),
                                    Blob::new(
                                        "msgpack",
                                        format!("task {task} output at step {step}").repeat(4).into_bytes(),
                                    ),
                                ),
                                ("branch:to:agent".to_string(), Blob::new("null", Vec::new())),
                            ];
                            store.put_writes(
                                task_config,
                                &writes,
                                &format!("{thread}-s{step}-t{task}"),
                                &format!("~__pregel_pull, task{task}"),
                            )
                        })
                    })
                    .collect();
                for handle in handles {
                    handle.join().map_err(|_| Error::InvalidArgument("a task thread panicked".into()))??;
                }
                Ok(())
            })?;
        }
        // The step's new state: one more message (150-650 bytes), a counter, sometimes a scratch value.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let length = 150 + (rng % 500) as usize;
        messages.push(format!(
            "{{\"role\":\"{}\",\"content\":\"{}\"}}",
            if step % 2 == 0 { "user" } else { "ai" },
            "x".repeat(length)
        ));
        let mut new_versions = std::collections::BTreeMap::new();
        let mut update = |name: &str, value: Blob, checkpoint: &mut Checkpoint| {
            let version = next_version(checkpoint.channel_versions.get(name));
            checkpoint.channel_values.insert(name.into(), value);
            checkpoint.channel_versions.insert(name.into(), version.clone());
            new_versions.insert(name.to_string(), version);
        };
        let mut body = String::from("[");
        for (i, message) in messages.iter().enumerate() {
            let _ = write!(body, "{}{message}", if i > 0 { "," } else { "" });
        }
        body.push(']');
        update("messages", Blob::new("json", body.into_bytes()), &mut checkpoint);
        update("step", Blob::new("json", step.to_string().into_bytes()), &mut checkpoint);
        if step % 3 == 0 {
            update("scratch", Blob::new("json", format!("{{\"note\":{step}}}").into_bytes()), &mut checkpoint);
        }
        checkpoint.id = store.next_checkpoint_id();
        checkpoint.ts = format!("2026-11-21T00:{:02}:{:02}+00:00", step / 60, step % 60);
        checkpoint.updated_channels = Some(new_versions.keys().cloned().collect());
        checkpoint
            .versions_seen
            .insert("agent".into(), new_versions.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
        let metadata = serde_json::json!({
            "source": if step == 0 { "input" } else { "loop" },
            "step": step as i64 - 1,
            "run_id": format!("run-{n}"),
            "parents": {},
        });
        let metadata = metadata.as_object().cloned().unwrap_or_default();
        let mut values_only = checkpoint.clone();
        values_only.channel_values.retain(|channel, _| new_versions.contains_key(channel));
        config = store.put(&config, &values_only, &metadata, &new_versions)?;
        progress.inc(1);
    }
    Ok(())
}

fn print_history(store: &LogStore, thread: &str) -> Result<()> {
    let history = store.list(&ListQuery::thread(thread))?;
    println!("\nhistory of {thread} ({} checkpoints, newest first):", history.len());
    println!(
        "  {:<36}  {:>4}  {:<6}  {:<20}  {:>8}  {:>6}",
        "checkpoint id", "step", "source", "parent", "state B", "writes"
    );
    for tuple in &history {
        let step = tuple.metadata.get("step").and_then(serde_json::Value::as_i64).unwrap_or_default();
        let source = tuple.metadata.get("source").and_then(|s| s.as_str()).unwrap_or("?");
        let parent = tuple
            .parent_config
            .as_ref()
            .and_then(|p| p.checkpoint_id.as_deref())
            .map_or("-".into(), |id| format!("{}..", id.get(..18).unwrap_or(id)));
        let size: usize = tuple.checkpoint.channel_values.values().map(|b| b.bytes.len()).sum();
        println!(
            "  {:<36}  {:>4}  {:<6}  {:<20}  {:>8}  {:>6}",
            tuple.checkpoint.id,
            step,
            source,
            parent,
            size,
            tuple.pending_writes.len()
        );
    }
    let versions: Vec<String> = history
        .first()
        .map(|t| t.checkpoint.channel_versions.iter().map(|(c, v)| format!("{c}={}", short_version(v))).collect())
        .unwrap_or_default();
    println!("  latest channel versions: {}", versions.join(", "));
    Ok(())
}

fn short_version(version: &ChannelVersion) -> String {
    version.counter().map_or_else(|| version.to_string(), |n| n.to_string())
}
