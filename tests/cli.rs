//! The operator CLI end to end: stats, threads, history, show, verify, compact, export/import,
//! and its errors.
#![expect(
    clippy::expect_used,
    reason = "test code outside #[test] fns (helpers, closures): a panic is the failure report"
)]

use std::path::Path;
use std::process::{Command, Stdio};

use std::io::Write;

fn logsaver(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_logsaver")).args(args).output().expect("run logsaver");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn demo_store(dir: &Path) {
    let (code, _, err) = logsaver(&["demo", dir.to_str().expect("utf-8"), "--threads", "12", "--steps", "6"]);
    assert_eq!(code, 0, "{err}");
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn read_commands_report_the_store_as_text_and_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("s");
    demo_store(&store);
    let s = store.to_str().expect("utf-8");

    let (code, out, _) = logsaver(&["stats", s, "--json"]);
    assert_eq!(code, 0);
    let stats = json(&out);
    assert_eq!(stats["threads"], 12);
    assert_eq!(stats["checkpoints"], 72);
    assert!(stats["garbage_ratio"].as_f64().is_some());

    let (code, out, _) = logsaver(&["threads", s, "--json", "--limit", "5", "--offset", "10", "--sort", "thread"]);
    assert_eq!(code, 0);
    let threads = json(&out);
    assert_eq!(threads["total"], 12);
    assert_eq!(threads["threads"].as_array().map(Vec::len), Some(2));
    assert_eq!(threads["threads"][0]["thread_id"], "agent-0010");

    let (code, out, _) = logsaver(&["history", s, "agent-0003", "--json"]);
    assert_eq!(code, 0);
    let history = json(&out);
    assert_eq!(history.as_array().map(Vec::len), Some(6));
    assert_eq!(history[0]["parent_checkpoint_id"], history[1]["checkpoint_id"]);

    let (code, out, _) = logsaver(&["show", s, "agent-0003", "--json"]);
    assert_eq!(code, 0);
    let shown = json(&out);
    assert_eq!(shown["checkpoint_id"], history[0]["checkpoint_id"]);
    let channels = shown["channels"].as_array().expect("channels");
    assert!(channels.iter().any(|c| c["channel"] == "messages" && c["value"].is_array()), "json values shown decoded");

    let (code, out, _) = logsaver(&["history", s, "agent-0003"]);
    assert_eq!(code, 0);
    assert!(out.contains("newest first"));
}

#[test]
fn verify_passes_a_sound_store_and_names_file_and_offset_of_damage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("s");
    demo_store(&store);
    let s = store.to_str().expect("utf-8");
    let (code, out, _) = logsaver(&["verify", s]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no problems found"));
    // Damage the middle of the (only) segment's data.
    let segment = std::fs::read_dir(&store)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .expect("a segment");
    let mut bytes = std::fs::read(&segment).expect("read");
    let at = bytes.len() / 3;
    bytes[at] ^= 0xff;
    std::fs::write(&segment, &bytes).expect("write");
    let (code, out, _) = logsaver(&["verify", s, "--json"]);
    assert_eq!(code, 1, "{out}");
    let report = json(&out);
    let problems = report["problems"].as_array().expect("problems");
    assert!(!problems.is_empty());
    assert!(
        problems[0]["file"].as_str().is_some_and(|f| f.ends_with(".seg")) && problems[0]["offset"].as_u64().is_some()
    );
}

#[test]
fn export_import_round_trips_byte_for_byte_and_import_is_idempotent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    demo_store(&a);
    let (code, exported, _) = logsaver(&["export", a.to_str().expect("utf-8")]);
    assert_eq!(code, 0);
    assert!(exported.lines().count() > 72);
    for _ in 0..2 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_logsaver"))
            .args(["import", b.to_str().expect("utf-8")])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn import");
        child.stdin.take().expect("stdin").write_all(exported.as_bytes()).expect("feed");
        assert!(child.wait().expect("wait").success());
    }
    let (code, again, _) = logsaver(&["export", b.to_str().expect("utf-8")]);
    assert_eq!(code, 0);
    assert!(again == exported, "export a | import b | export b differs");
}

#[test]
fn compact_reports_sizes_and_errors_are_clear() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("s");
    demo_store(&store);
    let s = store.to_str().expect("utf-8");
    let (code, out, _) = logsaver(&["compact", s, "--json"]);
    assert_eq!(code, 0);
    let stats = json(&out);
    assert!(stats["bytes_before"].as_u64().is_some() && stats["bytes_after"].as_u64().is_some());

    let missing = dir.path().join("nothing-here");
    let (code, _, err) = logsaver(&["stats", missing.to_str().expect("utf-8")]);
    assert_eq!(code, 2);
    assert!(err.contains("no logsaver store") && err.contains("nothing-here"), "{err}");

    // Beside a running writer: the read commands work, the writing ones say what they need.
    let open = logsaver::LogStore::open(&store, logsaver::Options::default()).expect("hold the store");
    let (code, out, err) = logsaver(&["stats", s, "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(json(&out)["checkpoints"].as_u64().is_some_and(|n| n > 0));
    for command in ["compact", "import"] {
        let (code, _, err) = logsaver(&[command, s]);
        assert_eq!(code, 2, "{command}");
        assert!(err.contains("writer lock") && err.contains("beside a running writer"), "{command}: {err}");
    }
    drop(open);
}

#[test]
fn every_read_command_and_backup_work_beside_a_running_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("live");
    let s = store.to_str().expect("utf-8");
    // The writer: the demo, in its own process, writing with group commit from 4 threads.
    let mut writer = Command::new(env!("CARGO_BIN_EXE_logsaver"))
        .args(["demo", s, "--threads", "60", "--steps", "60", "--workers", "4"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the demo");
    let started = std::time::Instant::now();
    while !store.join("MANIFEST").exists() {
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "the demo did not start");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let mut rounds = 0;
    let mut rounds_beside_the_writer = 0;
    let mut last_checkpoints = 0;
    let mut backups = Vec::new();
    while writer.try_wait().expect("poll").is_none() || rounds < 2 {
        if writer.try_wait().expect("poll").is_none() {
            rounds_beside_the_writer += 1;
        }
        let (code, out, err) = logsaver(&["stats", s, "--json"]);
        assert_eq!(code, 0, "stats beside the writer: {err}");
        let checkpoints = json(&out)["checkpoints"].as_u64().expect("checkpoints");
        assert!(checkpoints >= last_checkpoints, "the view went back: {checkpoints} < {last_checkpoints}");
        last_checkpoints = checkpoints;
        let (code, out, err) = logsaver(&["threads", s, "--json", "--limit", "3"]);
        assert_eq!(code, 0, "threads: {err}");
        if let Some(thread) = json(&out).as_array().and_then(|t| t.first()).and_then(|t| t["thread_id"].as_str()) {
            let (code, _, err) = logsaver(&["history", s, thread, "--json"]);
            assert_eq!(code, 0, "history: {err}");
            let (code, _, err) = logsaver(&["show", s, thread, "--json"]);
            assert_eq!(code, 0, "show: {err}");
        }
        let (code, out, err) = logsaver(&["verify", s, "--json"]);
        assert_eq!(code, 0, "verify beside the writer: {out} {err}");
        let (code, out, err) = logsaver(&["export", s]);
        assert_eq!(code, 0, "export: {err}");
        assert!(out.lines().count() as u64 >= checkpoints, "export holds less than stats counted");
        let dest = dir.path().join(format!("backup-{rounds}"));
        let (code, _, err) = logsaver(&["backup", s, dest.to_str().expect("utf-8"), "--json"]);
        assert_eq!(code, 0, "backup: {err}");
        backups.push((dest, checkpoints));
        rounds += 1;
    }
    assert!(writer.wait().expect("demo").success());
    // The demo's writer left its metrics; stats shows them.
    let (code, out, err) = logsaver(&["stats", s, "--json"]);
    assert_eq!(code, 0, "{err}");
    let metrics = &json(&out)["writer_metrics"];
    assert!(metrics["operations"].as_array().is_some_and(|ops| !ops.is_empty()), "{out}");
    assert!(metrics["age_seconds"].as_f64().is_some(), "{out}");
    // Each backup opens, verifies and holds at least what stats counted just before it.
    for (dest, checkpoints) in backups {
        let d = dest.to_str().expect("utf-8");
        let (code, out, err) = logsaver(&["verify", d, "--json"]);
        assert_eq!(code, 0, "verify the backup: {out} {err}");
        let (code, out, err) = logsaver(&["stats", d, "--json"]);
        assert_eq!(code, 0, "{err}");
        assert!(json(&out)["checkpoints"].as_u64().expect("count") >= checkpoints);
    }
    assert!(rounds_beside_the_writer >= 1, "the writer finished before the commands ran");
}
