//! Operator commands: stats, threads, history, show, verify, compact, export, import.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use indicatif::{ProgressBar, ProgressStyle};
use logsaver::{
    Blob, ChannelVersion, Checkpoint, CheckpointSaver, CheckpointTuple, Config, Error, ListQuery, LogStore, Metadata,
    Options, Result,
};
use serde_json::{Value, json};

/// Open an existing store for a command that changes it (never create one).
pub fn open_existing(dir: &Path, options: Options) -> Result<LogStore> {
    if !dir.join("MANIFEST").exists() {
        return Err(Error::InvalidArgument(format!("no logsaver store at {} (no MANIFEST file)", dir.display())));
    }
    LogStore::open(dir, Options { auto_compaction: None, ..options })
}

/// Open an existing store for a read command: nothing on disk changes, and it works beside a
/// writer in another process (see `LogStore::open_read_only`).
pub fn open_for_reading(dir: &Path) -> Result<LogStore> {
    LogStore::open_read_only(dir, Options::default())
}

fn print_json(value: &Value) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// The time in a uuid6/uuid7/uuid1 checkpoint id, as RFC 3339 (UTC), if it has one.
fn id_time(id: &str) -> Option<String> {
    let uuid = uuid::Uuid::try_parse(id).ok()?;
    let (secs, _) = uuid.get_timestamp()?.to_unix();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Some(format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60))
}

/// `logsaver stats DIR`
pub fn stats(dir: &Path, as_json: bool) -> Result<()> {
    let store = open_for_reading(dir)?;
    let stats = store.stats();
    let space = store.space();
    let values = store.value_space();
    // What the index holds per entry (see docs/design.md, "The index").
    let index_bytes = stats.checkpoints * 64 + stats.blobs * 40 + stats.write_records * 24 + stats.threads * 96;
    let value = json!({
        "dir": dir.display().to_string(),
        "segments": space.segments.len(),
        "file_bytes": space.file_bytes,
        "record_bytes": space.record_bytes,
        "live_bytes": space.live_bytes,
        "dead_bytes": space.record_bytes - space.live_bytes.min(space.record_bytes),
        "garbage_ratio": space.garbage_ratio(),
        "threads": stats.threads,
        "checkpoints": stats.checkpoints,
        "blobs": stats.blobs,
        "write_records": stats.write_records,
        "index_memory_bytes_estimate": index_bytes,
        "values": {
            "live": values.values,
            "whole": values.whole,
            "deltas": values.deltas,
            "compressed": values.compressed,
            "longest_chain": values.longest_chain,
            "logical_bytes": values.logical_bytes,
            "stored_bytes": values.stored_bytes,
            "ratio": values.ratio(),
            "cache_budget_bytes": values.cache.budget_bytes,
        },
        "opened_from_snapshot": store.recovery_report().used_snapshot,
        "writer_metrics": writer_metrics(dir),
    });
    if as_json {
        print_json(&value);
        return Ok(());
    }
    println!("store {}", dir.display());
    println!("  segments        {:>12}", space.segments.len());
    println!("  on disk         {:>12}", human(space.file_bytes));
    println!("  records         {:>12}", human(space.record_bytes));
    println!("  live            {:>12}", human(space.live_bytes));
    println!("  dead            {:>12}", human(space.record_bytes.saturating_sub(space.live_bytes)));
    println!("  garbage ratio   {:>11.1}%", space.garbage_ratio() * 100.0);
    println!("  threads         {:>12}", stats.threads);
    println!("  checkpoints     {:>12}", stats.checkpoints);
    println!("  blobs           {:>12}", stats.blobs);
    println!("  write records   {:>12}", stats.write_records);
    println!("  index memory    {:>12} (estimate)", human(index_bytes));
    println!("values");
    println!("  live            {:>12}", values.values);
    println!("  whole / deltas  {:>12}", format!("{} / {}", values.whole, values.deltas));
    println!("  compressed      {:>12}", values.compressed);
    println!("  longest chain   {:>12}", values.longest_chain);
    println!("  logical         {:>12}", human(values.logical_bytes));
    println!("  stored          {:>12}", human(values.stored_bytes));
    println!("  ratio           {:>11.1}x", values.ratio());
    println!("  cache budget    {:>12}", human(values.cache.budget_bytes));
    print_writer_metrics(value.get("writer_metrics").unwrap_or(&Value::Null));
    Ok(())
}

/// The writer's last `METRICS.json`, with its age in seconds; null if there is none (a writer
/// leaves it every `metrics_interval` and at close).
fn writer_metrics(dir: &Path) -> Value {
    let Ok(text) = std::fs::read_to_string(dir.join(logsaver::METRICS_FILE)) else { return Value::Null };
    let Ok(mut metrics) = serde_json::from_str::<Value>(&text) else { return Value::Null };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    if let Some(taken) = metrics.get("taken_at_unix").and_then(Value::as_f64)
        && let Some(object) = metrics.as_object_mut()
    {
        object.insert("age_seconds".into(), json!((now - taken).max(0.0)));
    }
    metrics
}

#[expect(
    clippy::indexing_slicing,
    reason = "serde_json::Value's index returns Null for a missing key or a non-object; it never panics"
)]
fn print_writer_metrics(metrics: &Value) {
    if metrics.is_null() {
        return;
    }
    println!(
        "writer metrics ({:.0} s old, over {:.0} s of uptime)",
        metrics["age_seconds"].as_f64().unwrap_or(0.0),
        metrics["uptime_seconds"].as_f64().unwrap_or(0.0)
    );
    for op in metrics["operations"].as_array().into_iter().flatten() {
        let latency = &op["latency_us"];
        let calls = latency["count"].as_u64().unwrap_or(0);
        if calls == 0 {
            continue;
        }
        println!(
            "  {:<16}{calls:>10} calls  p50 {:>9.1} µs  p99 {:>9.1} µs  max {:>10.1} µs  {} errors",
            op["op"].as_str().unwrap_or("?"),
            latency["p50"].as_f64().unwrap_or(0.0),
            latency["p99"].as_f64().unwrap_or(0.0),
            latency["max"].as_f64().unwrap_or(0.0),
            op["errors"].as_u64().unwrap_or(0)
        );
    }
    println!(
        "  fdatasync       {:>10} calls  p50 {:>9.1} µs  p99 {:>9.1} µs; {:.1} calls per commit group",
        metrics["fsyncs"].as_u64().unwrap_or(0),
        metrics["fsync_us"]["p50"].as_f64().unwrap_or(0.0),
        metrics["fsync_us"]["p99"].as_f64().unwrap_or(0.0),
        metrics["group_size"]["mean"].as_f64().unwrap_or(0.0)
    );
    println!(
        "  bytes written {:>12}, read {:>12}",
        human(metrics["bytes_written"].as_u64().unwrap_or(0)),
        human(metrics["bytes_read"].as_u64().unwrap_or(0))
    );
}

/// `logsaver threads DIR`
pub fn threads(dir: &Path, sort: &str, limit: usize, offset: usize, as_json: bool) -> Result<()> {
    let store = open_for_reading(dir)?;
    let mut threads = store.threads();
    match sort {
        "checkpoints" => threads.sort_by(|a, b| b.checkpoints.cmp(&a.checkpoints).then(a.thread_id.cmp(&b.thread_id))),
        "bytes" => threads.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.thread_id.cmp(&b.thread_id))),
        "updated" => threads.sort_by(|a, b| b.latest_checkpoint_id.cmp(&a.latest_checkpoint_id)),
        _ => {}
    }
    let total = threads.len();
    let page: Vec<_> = threads.into_iter().skip(offset).take(limit).collect();
    if as_json {
        let rows: Vec<Value> = page
            .iter()
            .map(|t| {
                json!({
                    "thread_id": t.thread_id, "namespaces": t.namespaces, "checkpoints": t.checkpoints,
                    "bytes": t.bytes, "latest_checkpoint_id": t.latest_checkpoint_id,
                    "last_update": t.latest_checkpoint_id.as_deref().and_then(id_time),
                })
            })
            .collect();
        print_json(&json!({"total": total, "offset": offset, "threads": rows}));
        return Ok(());
    }
    println!("{:<40} {:>4} {:>11} {:>10}  last update", "thread", "ns", "checkpoints", "bytes");
    for t in &page {
        let updated = t.latest_checkpoint_id.as_deref().and_then(id_time).unwrap_or_else(|| "-".into());
        println!("{:<40} {:>4} {:>11} {:>10}  {updated}", t.thread_id, t.namespaces, t.checkpoints, human(t.bytes));
    }
    println!("({} of {total} threads, from {offset})", page.len());
    Ok(())
}

fn size_of(tuple: &CheckpointTuple) -> usize {
    tuple.checkpoint.channel_values.values().map(|b| b.bytes.len()).sum()
}

/// `logsaver history DIR THREAD`
pub fn history(dir: &Path, thread: &str, ns: Option<&str>, as_json: bool) -> Result<()> {
    let store = open_for_reading(dir)?;
    let mut query = ListQuery::thread(thread);
    query.checkpoint_ns = ns.map(str::to_owned);
    let tuples = store.list(&query)?;
    if tuples.is_empty() {
        return Err(Error::InvalidArgument(format!("thread {thread:?} has no checkpoints in {}", dir.display())));
    }
    // A fork: a checkpoint with more than one child.
    let mut children: BTreeMap<(String, String), usize> = BTreeMap::new();
    for t in &tuples {
        if let Some(parent) = t.parent_config.as_ref().and_then(|p| p.checkpoint_id.clone()) {
            *children.entry((t.config.checkpoint_ns.clone(), parent)).or_default() += 1;
        }
    }
    let rows: Vec<Value> = tuples
        .iter()
        .map(|t| {
            let id = t.checkpoint.id.clone();
            json!({
                "checkpoint_ns": t.config.checkpoint_ns,
                "checkpoint_id": id,
                "step": t.metadata.get("step"),
                "source": t.metadata.get("source"),
                "parent_checkpoint_id": t.parent_config.as_ref().and_then(|p| p.checkpoint_id.clone()),
                "bytes": size_of(t),
                "pending_writes": t.pending_writes.len(),
                "children": children.get(&(t.config.checkpoint_ns.clone(), id)).copied().unwrap_or(0),
            })
        })
        .collect();
    if as_json {
        print_json(&Value::Array(rows));
        return Ok(());
    }
    println!("history of {thread} ({} checkpoints, newest first)", tuples.len());
    println!(
        "{:<12} {:<36} {:>5} {:<7} {:<36} {:>9} {:>6}",
        "ns", "checkpoint", "step", "source", "parent", "bytes", "writes"
    );
    for row in &rows {
        let fork = if row["children"].as_u64().unwrap_or(0) > 1 { "  <- fork" } else { "" };
        println!(
            "{:<12} {:<36} {:>5} {:<7} {:<36} {:>9} {:>6}{fork}",
            row["checkpoint_ns"].as_str().unwrap_or(""),
            row["checkpoint_id"].as_str().unwrap_or(""),
            row["step"].to_string(),
            row["source"].as_str().unwrap_or("-"),
            row["parent_checkpoint_id"].as_str().unwrap_or("-"),
            row["bytes"],
            row["pending_writes"],
        );
    }
    Ok(())
}

/// A value as JSON for `show`: msgpack decoded, others as their tag and size.
fn shown(blob: &Blob) -> Value {
    if blob.type_tag == "msgpack"
        && let Ok(value) = rmpv::decode::read_value(&mut &blob.bytes[..])
    {
        return msgpack_to_json(&value);
    }
    if blob.type_tag == "json"
        && let Ok(value) = serde_json::from_slice::<Value>(&blob.bytes)
    {
        return value;
    }
    json!({"type": blob.type_tag, "bytes": blob.bytes.len()})
}

fn msgpack_to_json(value: &rmpv::Value) -> Value {
    use rmpv::Value as M;
    match value {
        M::Nil => Value::Null,
        M::Boolean(b) => json!(b),
        M::Integer(i) => i.as_i64().map(|n| json!(n)).or_else(|| i.as_u64().map(|n| json!(n))).unwrap_or(Value::Null),
        M::F32(f) => json!(f),
        M::F64(f) => json!(f),
        M::String(s) => json!(s.as_str().unwrap_or("<invalid utf-8>")),
        M::Binary(b) => json!({"binary": B64.encode(b)}),
        M::Array(items) => Value::Array(items.iter().map(msgpack_to_json).collect()),
        M::Map(entries) => {
            let mut map = serde_json::Map::new();
            for (k, v) in entries {
                let key = match k {
                    M::String(s) => s.as_str().unwrap_or("?").to_owned(),
                    other => other.to_string(),
                };
                map.insert(key, msgpack_to_json(v));
            }
            Value::Object(map)
        }
        // LangGraph packs objects (messages, pydantic models, ...) as msgpack extensions whose
        // payload is itself msgpack: show it decoded when it is.
        M::Ext(code, data) => match rmpv::decode::read_value(&mut &data[..]) {
            Ok(inner) => json!({"ext": code, "value": msgpack_to_json(&inner)}),
            Err(_) => json!({"ext": code, "bytes": data.len()}),
        },
    }
}

/// `logsaver show DIR THREAD [CHECKPOINT]`
pub fn show(dir: &Path, thread: &str, checkpoint: Option<&str>, ns: &str, as_json: bool) -> Result<()> {
    let store = open_for_reading(dir)?;
    let config =
        Config { thread_id: thread.into(), checkpoint_ns: ns.into(), checkpoint_id: checkpoint.map(str::to_owned) };
    let Some(tuple) = store.get_tuple(&config)? else {
        return Err(Error::InvalidArgument(format!("no checkpoint {config:?} in {}", dir.display())));
    };
    let channels: Vec<Value> = tuple
        .checkpoint
        .channel_versions
        .iter()
        .map(|(channel, version)| {
            let value = tuple.checkpoint.channel_values.get(channel);
            json!({
                "channel": channel,
                "version": version_json(version),
                "type": value.map(|b| b.type_tag.clone()),
                "bytes": value.map(|b| b.bytes.len()),
                "value": value.map(shown),
            })
        })
        .collect();
    let writes: Vec<Value> = tuple
        .pending_writes
        .iter()
        .map(|w| json!({"task_id": w.task_id, "task_path": w.task_path, "idx": w.idx, "channel": w.channel, "type": w.value.type_tag, "bytes": w.value.bytes.len(), "value": shown(&w.value)}))
        .collect();
    let value = json!({
        "thread_id": thread,
        "checkpoint_ns": ns,
        "checkpoint_id": tuple.checkpoint.id,
        "parent_checkpoint_id": tuple.parent_config.as_ref().and_then(|p| p.checkpoint_id.clone()),
        "ts": tuple.checkpoint.ts,
        "v": tuple.checkpoint.v,
        "metadata": tuple.metadata,
        "channels": channels,
        "pending_writes": writes,
    });
    if as_json {
        print_json(&value);
        return Ok(());
    }
    println!("checkpoint {} of {thread} (ns {ns:?})", tuple.checkpoint.id);
    println!("  ts       {}", tuple.checkpoint.ts);
    println!("  parent   {}", value.get("parent_checkpoint_id").and_then(Value::as_str).unwrap_or("-"));
    println!("  metadata {}", serde_json::to_string(&tuple.metadata).unwrap_or_default());
    println!("  channels:");
    for c in &channels {
        let preview = serde_json::to_string(&c["value"]).unwrap_or_default();
        let preview: String = preview.chars().take(100).collect();
        println!(
            "    {:<24} v={:<10} {:>8} B  {preview}",
            c["channel"].as_str().unwrap_or(""),
            short(&c["version"]),
            c["bytes"]
        );
    }
    println!("  pending writes: {}", writes.len());
    for w in &writes {
        println!(
            "    {} [{}] {} -> {}",
            w["task_id"].as_str().unwrap_or(""),
            w["idx"],
            w["channel"].as_str().unwrap_or(""),
            w["bytes"]
        );
    }
    Ok(())
}

fn short(version: &Value) -> String {
    let text = match version {
        Value::String(s) => s.split('.').next().unwrap_or(s).trim_start_matches('0').to_owned(),
        other => other.to_string(),
    };
    if text.is_empty() { "0".into() } else { text }
}

fn version_json(version: &ChannelVersion) -> Value {
    match version {
        ChannelVersion::Int(n) => json!(n),
        ChannelVersion::Float(x) => json!(x),
        ChannelVersion::Str(s) => json!(s),
    }
}

fn version_from_json(value: &Value) -> Result<ChannelVersion> {
    match value {
        Value::String(s) => Ok(ChannelVersion::Str(s.clone())),
        Value::Number(n) if n.is_i64() => Ok(ChannelVersion::Int(n.as_i64().unwrap_or_default())),
        Value::Number(n) => Ok(ChannelVersion::Float(n.as_f64().unwrap_or_default())),
        other => Err(Error::InvalidArgument(format!("channel version {other} is not a string or number"))),
    }
}

fn bar(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(&format!("{{bar:40}} {{pos}}/{{len}} {what} {{per_sec}}"))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// `logsaver verify DIR`: exit status non-zero if anything is wrong.
pub fn verify(dir: &Path, as_json: bool) -> Result<bool> {
    // Replay every frame read-only (no snapshot), listing damage instead of stopping at the
    // first; nothing on disk changes.
    let progress = if as_json { ProgressBar::hidden() } else { bar(0, "records") };
    let (report, checked) = LogStore::verify_dir(dir, &mut |done, total| {
        progress.set_length(total);
        progress.set_position(done);
    })?;
    progress.finish_and_clear();
    let mut problems: Vec<Value> = Vec::new();
    for damage in report.skipped.iter().chain(report.torn_tail.iter()) {
        problems.push(
            json!({"file": damage.file.display().to_string(), "offset": damage.offset, "problem": damage.reason}),
        );
    }
    for p in &checked.problems {
        problems.push(json!({"file": p.file.display().to_string(), "offset": p.offset, "problem": p.what}));
    }
    if as_json {
        print_json(&json!({
            "segments": report.segments, "frames": report.frames, "records_replayed": report.records,
            "records_checked": checked.records_checked, "references_checked": checked.references_checked,
            "problems": problems,
        }));
    } else {
        println!(
            "verified {}: {} segments, {} frames, {} records replayed; {} records read back, {} blob references checked",
            dir.display(),
            report.segments,
            report.frames,
            report.records,
            checked.records_checked,
            checked.references_checked
        );
        for p in &problems {
            println!(
                "PROBLEM {} at offset {}: {}",
                p["file"].as_str().unwrap_or(""),
                p["offset"],
                p["problem"].as_str().unwrap_or("")
            );
        }
        println!("{}", if problems.is_empty() { "no problems found" } else { "problems found" });
    }
    Ok(problems.is_empty())
}

/// `logsaver compact DIR`
/// `logsaver backup DIR DEST`
pub fn backup(dir: &Path, dest: &Path, as_json: bool) -> Result<()> {
    let store = open_for_reading(dir)?;
    let stats = store.backup(dest)?;
    if as_json {
        print_json(&json!({
            "dest": dest.display().to_string(),
            "segments": stats.segments,
            "bytes": stats.bytes,
            "seconds": stats.elapsed.as_secs_f64(),
        }));
    } else {
        println!(
            "backed up {} to {}: {} segments, {} in {:.2} s",
            dir.display(),
            dest.display(),
            stats.segments,
            human(stats.bytes),
            stats.elapsed.as_secs_f64()
        );
    }
    Ok(())
}

pub fn compact(dir: &Path, as_json: bool) -> Result<()> {
    let store = open_existing(dir, Options::default())?;
    let before = store.space();
    let spinner = if as_json { ProgressBar::hidden() } else { ProgressBar::new_spinner() };
    spinner.set_message(format!(
        "compacting {} ({} segments, {:.0}% garbage)",
        dir.display(),
        before.segments.len(),
        before.garbage_ratio() * 100.0
    ));
    spinner.enable_steady_tick(std::time::Duration::from_millis(100));
    let stats = store.compact()?;
    spinner.finish_and_clear();
    store.close()?;
    drop(store);
    let after_bytes: u64 = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0);
    let value = json!({
        "bytes_before": before.file_bytes, "bytes_after": after_bytes,
        "segments_rewritten": stats.segments_rewritten, "segments_written": stats.segments_written,
        "bytes_copied": stats.bytes_copied, "records_copied": stats.records_copied,
        "records_dropped": stats.records_dropped, "seconds": stats.elapsed.as_secs_f64(),
    });
    if as_json {
        print_json(&value);
    } else {
        println!(
            "compacted {}: {} -> {} ({} segments rewritten, {} copied, {} records dropped) in {:.2} s",
            dir.display(),
            human(before.file_bytes),
            human(after_bytes),
            stats.segments_rewritten,
            human(stats.bytes_copied),
            stats.records_dropped,
            stats.elapsed.as_secs_f64()
        );
    }
    Ok(())
}

fn blob_json(blob: &Blob) -> Value {
    json!({"type": blob.type_tag, "b64": B64.encode(&blob.bytes)})
}

fn blob_from_json(value: &Value) -> Result<Blob> {
    let tag = value["type"].as_str().ok_or_else(|| Error::InvalidArgument("value without \"type\"".into()))?;
    let bytes = B64
        .decode(value["b64"].as_str().unwrap_or_default())
        .map_err(|e| Error::InvalidArgument(format!("bad base64 value: {e}")))?;
    Ok(Blob::new(tag, bytes))
}

/// `logsaver export DIR`: JSON Lines on stdout, threads and namespaces sorted, checkpoints
/// oldest first, each followed by its pending writes.
pub fn export(dir: &Path) -> Result<()> {
    let store = open_for_reading(dir)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let io = |e: std::io::Error| Error::Io { op: "write", path: "<stdout>".into(), source: e };
    for thread in store.threads() {
        let mut tuples = store.list(&ListQuery::thread(&thread.thread_id))?;
        tuples.sort_by(|a, b| {
            (&a.config.checkpoint_ns, &a.checkpoint.id).cmp(&(&b.config.checkpoint_ns, &b.checkpoint.id))
        });
        for t in tuples {
            let c = &t.checkpoint;
            let line = json!({
                "kind": "checkpoint",
                "thread_id": t.config.thread_id,
                "checkpoint_ns": t.config.checkpoint_ns,
                "checkpoint_id": c.id,
                "parent_checkpoint_id": t.parent_config.as_ref().and_then(|p| p.checkpoint_id.clone()),
                "v": c.v,
                "ts": c.ts,
                "channel_versions": c.channel_versions.iter().map(|(k, v)| (k.clone(), version_json(v))).collect::<serde_json::Map<_, _>>(),
                "versions_seen": c.versions_seen.iter().map(|(node, vs)| (node.clone(), Value::Object(vs.iter().map(|(k, v)| (k.clone(), version_json(v))).collect()))).collect::<serde_json::Map<_, _>>(),
                "updated_channels": c.updated_channels,
                "channel_values": c.channel_values.iter().map(|(k, b)| (k.clone(), blob_json(b))).collect::<serde_json::Map<_, _>>(),
                "metadata": t.metadata,
            });
            writeln!(out, "{line}").map_err(io)?;
            for w in &t.pending_writes {
                let line = json!({
                    "kind": "write", "thread_id": t.config.thread_id, "checkpoint_ns": t.config.checkpoint_ns,
                    "checkpoint_id": c.id, "task_id": w.task_id, "task_path": w.task_path, "idx": w.idx,
                    "channel": w.channel, "value": blob_json(&w.value),
                });
                writeln!(out, "{line}").map_err(io)?;
            }
        }
    }
    out.flush().map_err(io)
}

/// `logsaver import DIR`: JSON Lines from stdin (as `export` writes them). Idempotent: a
/// checkpoint is an upsert, a write already present is kept.
pub fn import(dir: &Path) -> Result<u64> {
    let store = LogStore::open(dir, Options { auto_compaction: None, ..Options::default() })?;
    let mut count = 0;
    for (n, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.map_err(|e| Error::Io { op: "read", path: "<stdin>".into(), source: e })?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |what: String| Error::InvalidArgument(format!("line {}: {what}", n + 1));
        let v: Value = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
        // A missing field reads as null, as `v[key]` would.
        let field = |key: &str| v.get(key).unwrap_or(&Value::Null);
        let text = |key: &str| field(key).as_str().map(str::to_owned).ok_or_else(|| bad(format!("missing {key:?}")));
        let config =
            Config { thread_id: text("thread_id")?, checkpoint_ns: text("checkpoint_ns")?, checkpoint_id: None };
        match field("kind").as_str() {
            Some("checkpoint") => {
                let mut checkpoint = Checkpoint::empty(text("checkpoint_id")?);
                checkpoint.v = field("v").as_i64().ok_or_else(|| bad("missing \"v\"".into()))?;
                checkpoint.ts = text("ts")?;
                for (k, version) in field("channel_versions").as_object().into_iter().flatten() {
                    checkpoint.channel_versions.insert(k.clone(), version_from_json(version)?);
                }
                for (node, versions) in field("versions_seen").as_object().into_iter().flatten() {
                    let mut seen = BTreeMap::new();
                    for (k, version) in versions.as_object().into_iter().flatten() {
                        seen.insert(k.clone(), version_from_json(version)?);
                    }
                    checkpoint.versions_seen.insert(node.clone(), seen);
                }
                checkpoint.updated_channels = field("updated_channels")
                    .as_array()
                    .map(|a| a.iter().filter_map(|c| c.as_str().map(str::to_owned)).collect());
                for (k, blob) in field("channel_values").as_object().into_iter().flatten() {
                    checkpoint.channel_values.insert(k.clone(), blob_from_json(blob)?);
                }
                let metadata: Metadata = field("metadata").as_object().cloned().unwrap_or_default();
                // Every value is stored; versions without a value stay without one.
                let new_versions = checkpoint
                    .channel_versions
                    .iter()
                    .filter(|(k, _)| checkpoint.channel_values.contains_key(*k))
                    .map(|(k, ver)| (k.clone(), ver.clone()))
                    .collect();
                let parent =
                    Config { checkpoint_id: field("parent_checkpoint_id").as_str().map(str::to_owned), ..config };
                store.put(&parent, &checkpoint, &metadata, &new_versions)?;
            }
            Some("write") => {
                let target = Config { checkpoint_id: Some(text("checkpoint_id")?), ..config };
                let idx = field("idx").as_i64().ok_or_else(|| bad("missing \"idx\"".into()))?;
                let write = (idx, text("channel")?, blob_from_json(field("value"))?);
                store.put_raw_writes(&target, &text("task_id")?, &text("task_path")?, &[write])?;
            }
            other => return Err(bad(format!("unknown kind {other:?}"))),
        }
        count += 1;
    }
    store.close()?;
    Ok(count)
}
