//! The command line as a user sees it: output and exit codes of `config check`, `status`
//! (with and without `--probe`, text and JSON) and `chats`, against a tiny scripted imsg.

use std::fs;
use std::path::PathBuf;

use assert_cmd::Command;
use imsg_gateway::state::HealthEvent;
use serde_json::Value;

/// Answers `initialize` as v1 (or -32601 with MOCK_PROTOCOL=legacy), `status`, and `chats.list`.
const MOCK: &str = r#"#!/usr/bin/env python3
import json, os, sys
legacy = os.environ.get("MOCK_PROTOCOL") == "legacy"
for line in sys.stdin:
    if not line.strip(): continue
    req = json.loads(line); m, i = req["method"], req.get("id")
    if m in ("initialize", "status") and not legacy:
        ready = os.environ.get("MOCK_DB") != "down"
        db = {"path": "/mock/chat.db", "ready": ready}
        if not ready: db["error"] = "The configured Messages database does not exist."
        res = {"version": "0.14.0", "protocol_version": 1, "database": db, "methods": ["initialize", "status"]}
        print(json.dumps({"jsonrpc": "2.0", "id": i, "result": res}), flush=True)
    elif m == "chats.list":
        chats = [{"id": 3, "name": "Family", "identifier": "chat42", "service": "iMessage", "is_group": True,
                  "participants": ["+15550001111"], "last_message_at": "2026-01-01T00:00:00.000Z"},
                 {"id": 1, "name": "+15550002222", "identifier": "+15550002222", "service": "iMessage",
                  "is_group": False, "participants": ["+15550002222"], "last_message_at": "2025-12-31T00:00:00.000Z"}]
        print(json.dumps({"jsonrpc": "2.0", "id": i, "result": {"chats": chats[: req["params"]["limit"]]}}), flush=True)
    else:
        print(json.dumps({"jsonrpc": "2.0", "id": i, "error": {"code": -32601, "message": "Method not found", "data": m}}), flush=True)
"#;

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(cli_path: Option<&str>) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let mock = dir.path().join("imsg");
        fs::write(&mock, MOCK).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&mock, fs::Permissions::from_mode(0o755)).unwrap();
        let cli = cli_path
            .map(String::from)
            .unwrap_or_else(|| mock.display().to_string());
        let s = Setup { dir };
        s.write_config(&format!(
            r#"{{ imessage: {{ cliPath: "{cli}", dbPath: "/tmp/world.db" }}, state: {{ dir: "{}" }} }}"#,
            s.state_dir().display()
        ));
        s
    }
    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    fn config(&self) -> PathBuf {
        self.dir.path().join("config.json5")
    }
    fn write_config(&self, text: &str) {
        fs::write(self.config(), text).unwrap();
    }
    /// What a running gateway would have recorded about the default account.
    fn record_health(&self, events: &[HealthEvent<'_>]) {
        let store = imsg_gateway::state::Store::open(&self.state_dir()).unwrap();
        for e in events {
            store.record_health("default", e).unwrap();
        }
    }
    fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("imsg-gateway").unwrap();
        c.arg("--config")
            .arg(self.config())
            .env_remove("IMSG_GATEWAY_CONFIG");
        c
    }
}

fn stdout_json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn config_check_prints_the_resolved_config() {
    let s = Setup::new(None);
    let out = s.cmd().args(["config", "check"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = stdout_json(&out);
    let acct = &v["imessage"]["accounts"]["default"];
    assert_eq!(acct["dmPolicy"], "pairing", "defaults are filled in: {v}");
    assert_eq!(acct["textChunkLimit"], 4000);
    assert_eq!(acct["dbPath"], "/tmp/world.db");
    assert_eq!(v["state"]["dir"], s.state_dir().display().to_string());
    // The config warning (groups need a mention but there are no patterns) goes to stderr.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning:") && err.contains("mentionPatterns"),
        "{err}"
    );
}

#[test]
fn config_check_rejects_a_bad_value_naming_the_key() {
    let s = Setup::new(None);
    s.write_config(r#"{ imessage: { dmPolicy: "opne" } }"#);
    let out = s.cmd().args(["config", "check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("imessage.dmPolicy"), "{err}");
    assert!(err.contains("opne"), "{err}");
}

#[test]
fn config_check_rejects_duplicate_keys_and_non_finite_numbers() {
    let s = Setup::new(None);
    s.write_config(
        r#"{ imessage: { dmPolicy: "open", dmPolicy: "pairing", region: "US", region: "GB" } }"#,
    );
    let out = s.cmd().args(["config", "check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "error: {}: 2 problems:\n  - duplicate key imessage.dmPolicy\n  - duplicate key imessage.region\n",
            s.config().display()
        )
    );
    s.write_config("{ imessage: { textChunkLimit: NaN } }");
    let out = s.cmd().args(["config", "check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "error: {}: imessage.textChunkLimit: NaN is not a finite number\n",
            s.config().display()
        )
    );
}

#[test]
fn a_missing_config_file_is_exit_2_naming_the_path() {
    let s = Setup::new(None);
    let missing = s.dir.path().join("nope.json5");
    let out = Command::cargo_bin("imsg-gateway")
        .unwrap()
        .arg("--config")
        .arg(&missing)
        .args(["config", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&missing.display().to_string()));
}

#[test]
fn the_config_path_comes_from_the_environment() {
    let s = Setup::new(None);
    let out = Command::cargo_bin("imsg-gateway")
        .unwrap()
        .env("IMSG_GATEWAY_CONFIG", s.config())
        .args(["config", "check"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout_json(&out)["imessage"]["accounts"]["default"]["dbPath"],
        "/tmp/world.db"
    );
}

#[test]
fn bad_usage_is_exit_2() {
    let out = Command::cargo_bin("imsg-gateway")
        .unwrap()
        .arg("frobnicate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn status_without_state_says_so_and_creates_nothing() {
    let s = Setup::new(None);
    let out = s.cmd().arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("not created yet"), "{text}");
    assert!(text.contains("account default: cursor 0"), "{text}");
    assert!(!s.state_dir().exists());
}

#[test]
fn status_json_reads_cursor_and_counts_from_the_store() {
    let s = Setup::new(None);
    {
        let mut store = imsg_gateway::state::Store::open(&s.state_dir()).unwrap();
        use imsg_gateway::state::{Inbound, JournalStatus};
        for (guid, rowid, status) in [
            ("a", 3, JournalStatus::Received),
            ("b", 4, JournalStatus::Skipped),
            ("c", 9, JournalStatus::Received),
        ] {
            store
                .record_inbound(&Inbound {
                    account: "default",
                    guid,
                    rowid: Some(rowid),
                    chat_id: Some(1),
                    status,
                    reason: None,
                    payload: None,
                })
                .unwrap();
        }
        store
            .mark("default", "c", JournalStatus::Answered, None)
            .unwrap();
        // Kept open while `status` reads, as when `run` is running.
        let out = s.cmd().args(["status", "--json"]).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v = stdout_json(&out);
        assert_eq!(v["state_exists"], true);
        let a = &v["accounts"][0];
        assert_eq!(a["id"], "default");
        assert_eq!(a["cursor"], 9);
        assert_eq!(a["journal"]["received"], 1);
        assert_eq!(a["journal"]["skipped"], 1);
        assert_eq!(a["journal"]["answered"], 1);
        assert!(a.get("probe").is_none());
    }
}

#[test]
fn status_says_when_an_account_restarts_in_a_loop_or_skips_rows() {
    let s = Setup::new(None);
    let failed = HealthEvent::Failed("imsg rpc exited (exit status: 1)");
    s.record_health(&[
        HealthEvent::Started,
        failed.clone(),
        failed.clone(),
        failed.clone(),
        failed,
        HealthEvent::Skipped {
            rowid: 42,
            error: "imsg rpc error -32603 Internal error",
        },
    ]);
    let out = s.cmd().arg("status").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "imsg is restarting in a loop (4 failures in a row, 4 since the gateway started)"
        ),
        "{text}"
    );
    assert!(
        text.contains("1 row(s) imsg could not read were skipped (last: rowid 42)"),
        "{text}"
    );
    let out = s.cmd().args(["status", "--json"]).output().unwrap();
    let a = &stdout_json(&out)["accounts"][0];
    assert_eq!(a["health"]["failures_in_a_row"], 4);
    assert_eq!(a["health"]["skipped_rows"], 1);
    assert_eq!(a["health"]["last_skipped_rowid"], 42);
    assert!(a["problem"]
        .as_str()
        .unwrap()
        .contains("restarting in a loop"));
}

#[test]
fn status_gives_the_error_of_a_skipped_row() {
    let s = Setup::new(None);
    s.record_health(&[
        HealthEvent::Started,
        HealthEvent::Skipped {
            rowid: 9,
            error: "imsg rpc error -32603 Internal error: invalid UTF-8 in row 9",
        },
    ]);
    let out = s.cmd().arg("status").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1 row(s) imsg could not read were skipped (last: rowid 9)"),
        "{text}"
    );
    assert!(
        text.contains(": imsg rpc error -32603 Internal error: invalid UTF-8 in row 9"),
        "{text}"
    );
    assert!(!text.contains("restarting in a loop"), "{text}");
}

#[test]
fn a_gateway_whose_imsg_dies_at_start_says_what_it_wrote_on_stderr() {
    // The protocol side only says the pipe closed; the reason is on the child's stderr.
    let dir = tempfile::tempdir().unwrap();
    let dying = dir.path().join("dying-imsg");
    fs::write(
        &dying,
        "#!/bin/sh
echo 'boom: cannot open chat.db' >&2
exit 1
",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&dying, fs::Permissions::from_mode(0o755)).unwrap();
    let s = Setup::new(Some(&dying.display().to_string()));
    let mut gw = std::process::Command::new(assert_cmd::cargo::cargo_bin("imsg-gateway"))
        .arg("--config")
        .arg(s.config())
        .arg("run")
        .env_remove("IMSG_GATEWAY_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let text = loop {
        let out = s.cmd().arg("status").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if text.contains("restarting in a loop") || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let _ = gw.kill();
    let _ = gw.wait();
    assert!(text.contains("restarting in a loop"), "{text}");
    assert!(
        text.contains("its last stderr line: boom: cannot open chat.db"),
        "{text}"
    );
}

#[test]
fn a_second_gateway_on_the_same_state_dir_refuses_naming_the_first() {
    let s = Setup::new(None);
    let lock = imsg_gateway::state::DirLock::acquire(&s.state_dir()).unwrap();
    let out = s.cmd().arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "another imsg-gateway (pid {}) is already running on state dir {}",
            std::process::id(),
            s.state_dir().display()
        )),
        "{err}"
    );
    drop(lock);
}

#[test]
fn status_on_a_corrupt_state_file_names_it() {
    let s = Setup::new(None);
    fs::create_dir_all(s.state_dir()).unwrap();
    let file = s.state_dir().join("state.db");
    fs::write(&file, vec![b'x'; 4096]).unwrap();
    let out = s.cmd().arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&file.display().to_string()), "{err}");
    assert_eq!(fs::read(&file).unwrap(), vec![b'x'; 4096]);
}

fn probe_of(s: &Setup, envs: &[(&str, &str)]) -> (Option<i32>, Value) {
    let mut c = s.cmd();
    c.args(["status", "--probe", "--json"]);
    for (k, v) in envs {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let v = stdout_json(&out);
    (out.status.code(), v["accounts"][0]["probe"].clone())
}

#[test]
fn probe_reports_v1_version_and_readiness() {
    let s = Setup::new(None);
    let (code, p) = probe_of(&s, &[]);
    assert_eq!(code, Some(0), "{p}");
    assert_eq!(p["ok"], true);
    assert_eq!(p["protocol"], "v1");
    assert_eq!(p["version"], "0.14.0");
    assert_eq!(p["database_ready"], true);
    assert_eq!(p["problem"], Value::Null);
}

#[test]
fn probe_says_when_the_database_is_unavailable() {
    let s = Setup::new(None);
    let (code, p) = probe_of(&s, &[("MOCK_DB", "down")]);
    assert_eq!(code, Some(1));
    assert_eq!(p["database_ready"], false);
    let problem = p["problem"].as_str().unwrap();
    assert!(
        problem.contains("no Full Disk Access / database unavailable at /tmp/world.db"),
        "{problem}"
    );
}

#[test]
fn probe_falls_back_to_legacy() {
    let s = Setup::new(None);
    let (code, p) = probe_of(&s, &[("MOCK_PROTOCOL", "legacy")]);
    assert_eq!(code, Some(0), "{p}");
    assert_eq!(p["protocol"], "legacy");
    assert_eq!(p["database_ready"], true);
}

#[test]
fn probe_says_when_imsg_is_missing() {
    let s = Setup::new(Some("/nonexistent/bin/imsg"));
    let (code, p) = probe_of(&s, &[]);
    assert_eq!(code, Some(1));
    assert_eq!(p["problem"], "imsg not found at /nonexistent/bin/imsg");
}

#[test]
fn probe_says_when_the_program_does_not_speak_rpc() {
    let dir = tempfile::tempdir().unwrap();
    let not_rpc = dir.path().join("not-imsg");
    fs::write(
        &not_rpc,
        "#!/bin/sh\necho \"unknown command: $1\"\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&not_rpc, fs::Permissions::from_mode(0o755)).unwrap();
    let s = Setup::new(Some(&not_rpc.display().to_string()));
    let (code, p) = probe_of(&s, &[]);
    assert_eq!(code, Some(1));
    let problem = p["problem"].as_str().unwrap();
    assert!(problem.contains("does not speak rpc"), "{problem}");
}

#[test]
fn chats_lists_through_imsg() {
    let s = Setup::new(None);
    let out = s.cmd().args(["chats", "--limit", "5"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("[3] Family (chat42) group"), "{text}");
    assert!(
        lines[1].starts_with("[1] +15550002222 (+15550002222)"),
        "{text}"
    );
    let out = s
        .cmd()
        .args(["chats", "--limit", "1", "--json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["id"], 3);
}
