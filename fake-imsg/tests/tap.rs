//! `fake-imsg tap` at its boundary: bytes through the pipes, the JSON-lines log, exit codes.

use std::io::Write;
use std::process::{Command, Stdio};

fn tap() -> Command {
    Command::new(assert_cmd::cargo::cargo_bin("fake-imsg"))
}

fn log_records(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every log line is JSON"))
        .collect()
}

#[test]
fn passes_lines_through_cat_and_logs_both_directions() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tap.jsonl");
    let mut child = tap()
        .args(["tap", "--log"])
        .arg(&log)
        .args(["--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let input = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"chats.list\"}\nsecond line\n";
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    // stdin dropped: EOF reaches cat through the tap, cat exits, the tap exits.
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "tap exited with {:?}", out.status);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), input);

    let recs = log_records(&log);
    let ins: Vec<_> = recs
        .iter()
        .filter(|r| r["dir"] == "in")
        .map(|r| r["line"].clone())
        .collect();
    let outs: Vec<_> = recs
        .iter()
        .filter(|r| r["dir"] == "out")
        .map(|r| r["line"].clone())
        .collect();
    let expected = vec![
        serde_json::json!("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"chats.list\"}"),
        serde_json::json!("second line"),
    ];
    assert_eq!(ins, expected);
    assert_eq!(outs, expected);
    for r in &recs {
        assert!(
            r["ts_ms"].as_u64().unwrap() > 1_600_000_000_000,
            "ts_ms is unix ms: {r}"
        );
    }
}

#[test]
fn appends_to_an_existing_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tap.jsonl");
    std::fs::write(&log, "{\"dir\":\"out\",\"ts_ms\":1,\"line\":\"old\"}\n").unwrap();
    let out = tap()
        .args(["tap", "--log"])
        .arg(&log)
        .args(["--", "echo", "fresh"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "fresh\n");
    let lines: Vec<_> = log_records(&log)
        .iter()
        .map(|r| r["line"].clone())
        .collect();
    assert_eq!(
        lines,
        vec![serde_json::json!("old"), serde_json::json!("fresh")]
    );
}

#[test]
fn exits_with_the_childs_exit_code_and_passes_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tap.jsonl");
    let out = tap()
        .args(["tap", "--log"])
        .arg(&log)
        .args(["--", "sh", "-c", "echo oops >&2; echo partial; exit 7"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(String::from_utf8(out.stderr).unwrap(), "oops\n");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "partial\n");
    // stderr is passed through, not recorded.
    let recs = log_records(&log);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["dir"], "out");
}

#[test]
fn a_command_that_cannot_start_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = tap()
        .args(["tap", "--log"])
        .arg(dir.path().join("tap.jsonl"))
        .args(["--", "/nonexistent/imsg", "rpc"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("/nonexistent/imsg"), "stderr: {err}");
}

#[test]
fn a_missing_command_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = tap()
        .args(["tap", "--log"])
        .arg(dir.path().join("tap.jsonl"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "clap usage errors exit 2");
}
