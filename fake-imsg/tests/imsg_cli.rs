//! The imsg commands a gateway runs outside RPC, as it sees them: `status --json`,
//! `chats --limit N [--json]`, `--version` (imsg-rpc.md §11, imsg-rpc-v1.md §3/§5.2), and
//! stderr without colour codes when it is not a terminal. Output is compared with literal
//! JSON written from the specs.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use fake_imsg::world::{InjectSpec, NewChat, World};
use serde_json::{json, Value};

const ALICE: &str = "+15551234567";
const BOB: &str = "+15550000001";

fn fake() -> Command {
    let mut c = Command::cargo_bin("fake-imsg").unwrap();
    for k in [
        "FAKE_IMSG_PROTOCOL",
        "FAKE_IMSG_LEVEL",
        "FAKE_IMSG_FAULTS",
        "FAKE_IMSG_LOG",
        "IMSG_VERSION",
    ] {
        c.env_remove(k);
    }
    c
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8(cmd.assert().success().get_output().stdout.clone()).unwrap()
}

fn json_lines(cmd: &mut Command) -> Vec<Value> {
    stdout(cmd)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

/// A DM with Alice (older) and a group "Trip" with Bob (newer), at fixed dates, each with one
/// unread inbound message.
fn world(dir: &Path) -> PathBuf {
    let db = dir.join("chat.db");
    let w = World::create(&db).unwrap();
    let at = |s: &str| fake_imsg::payload::parse_iso8601(s).unwrap();
    w.inject(&InjectSpec {
        new_chat: Some(NewChat {
            group: false,
            display_name: None,
            participants: vec![],
            service: "iMessage".into(),
        }),
        from: ALICE.into(),
        text: "hello".into(),
        date: Some(at("2026-01-15T18:04:05.123Z")),
        ..Default::default()
    })
    .unwrap();
    w.inject(&InjectSpec {
        new_chat: Some(NewChat {
            group: true,
            display_name: Some("Trip".into()),
            participants: vec![BOB.into()],
            service: "iMessage".into(),
        }),
        from: BOB.into(),
        text: "hi all".into(),
        date: Some(at("2026-01-16T09:00:00.000Z")),
        ..Default::default()
    })
    .unwrap();
    db
}

const SIP_MESSAGE: &str = "System Integrity Protection (SIP) is enabled.\nAdvanced IMCore features are intentionally disabled.\n\nTo enable advanced features:\n1. Disable SIP in Recovery mode (`csrutil disable`)\n2. Run `make build-dylib`\n3. Run `imsg launch`";

/// imsg-rpc.md §11 (and imsg's StatusCommand): one line with version, the feature flags, SIP,
/// the bridge probe and `rpc_methods` (the compiled list; v1-rpc §3 `supported_methods`).
#[test]
fn status_json_is_one_object_like_imsg_status() {
    let dir = tempfile::tempdir().unwrap();
    let db = world(dir.path());
    let out = stdout(fake().args(["status", "--json", "--db"]).arg(&db));
    assert_eq!(out.lines().count(), 1, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v,
        json!({
            "version": "0.14.0",
            "basic_features": true,
            "advanced_features": false,
            "typing_indicators": false,
            "read_receipts": false,
            "sip": "enabled",
            "message": SIP_MESSAGE,
            "bridge_version": 0,
            "v2_ready": false,
            "selectors": {},
            "rpc_methods": ["initialize", "status", "watch.unsubscribe", "chats.list",
                "messages.stats", "messages.history", "messages.search", "messages.after",
                "messages.scheduled", "watch.subscribe", "bridge.events.subscribe",
                "message.send_status", "send", "chats.create", "chats.delete",
                "chats.markUnread", "send.rich", "send.attachment", "send.multipart",
                "send.sticker", "poll.send", "messages.poll.send", "poll.vote",
                "messages.poll.vote", "poll.unvote", "polls.unvote", "messages.poll.unvote",
                "tapback", "typing", "read", "message.edit", "message.unsend",
                "message.delete", "message.notifyAnyways", "group.rename", "group.setIcon",
                "group.addParticipant", "group.removeParticipant", "group.leave",
                "contacts.shouldShareContact", "contacts.shareContactCard", "handles.check"],
        })
    );
    // Newest main: its version, chats.get, no send.tracked without the bridge selector, and
    // the capabilities block.
    let v: Value = serde_json::from_str(&stdout(
        fake()
            .args(["status", "--json", "--level", "v1-main", "--db"])
            .arg(&db),
    ))
    .unwrap();
    assert_eq!(v["version"], "0.15.10");
    let methods = v["rpc_methods"].as_array().unwrap();
    assert!(methods.contains(&json!("chats.get")));
    assert!(!methods.contains(&json!("send.tracked")));
    assert_eq!(
        v["capabilities"],
        json!({"engine": {"version": "0.15.10", "commit": "unknown", "built_at": "unknown"},
               "features": {}})
    );
    // imsg 0.9: its 22 methods.
    let v: Value = serde_json::from_str(&stdout(
        fake()
            .args(["status", "--json", "--protocol", "legacy", "--db"])
            .arg(&db),
    ))
    .unwrap();
    assert_eq!(v["version"], "0.9.0");
    assert_eq!(v["rpc_methods"].as_array().unwrap().len(), 22);
    assert_eq!(v["rpc_methods"][0], "chats.list");
    assert!(v.get("capabilities").is_none());
    // Without --json: the human report.
    let text = stdout(fake().args(["status", "--db"]).arg(&db));
    assert!(text.starts_with("imsg Status Report\n"), "{text}");
    assert!(text.contains("\n  0.14.0\n"), "{text}");
}

/// imsg-rpc.md §11 / imsg-rpc-v1.md §5.2: `chats --json` prints one chat object per line
/// (the `chats.list` item), newest activity first; without it `[id] name (identifier) last=`.
#[test]
fn chats_lists_one_chat_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = world(dir.path());
    let lines = json_lines(
        fake()
            .args(["chats", "--limit", "20", "--json", "--db"])
            .arg(&db),
    );
    assert_eq!(lines.len(), 2);
    let mut group = lines[0].clone();
    assert!(group["guid"]
        .as_str()
        .unwrap()
        .starts_with("iMessage;+;chat"));
    let ident = group["identifier"].as_str().unwrap().to_string();
    assert_eq!(group["guid"], json!(format!("iMessage;+;{ident}")));
    group["guid"] = json!("<guid>");
    group["identifier"] = json!("<identifier>");
    assert_eq!(
        group,
        json!({"id": 2, "identifier": "<identifier>", "guid": "<guid>", "name": "Trip",
               "display_name": "Trip", "service": "iMessage",
               "last_message_at": "2026-01-16T09:00:00.000Z", "participants": [BOB],
               "is_group": true, "unread_count": 1})
    );
    assert_eq!(
        lines[1],
        json!({"id": 1, "identifier": ALICE, "guid": "iMessage;-;+15551234567", "name": ALICE,
               "service": "iMessage", "last_message_at": "2026-01-15T18:04:05.123Z",
               "participants": [ALICE], "is_group": false, "unread_count": 1})
    );
    // The same objects as the chats.list items of the RPC.
    let one = json_lines(
        fake()
            .args(["chats", "--limit", "1", "--json", "--db"])
            .arg(&db),
    );
    assert_eq!(one, vec![lines[0].clone()]);
    // Text: one line per chat.
    let text = stdout(fake().args(["chats", "--limit", "20", "--db"]).arg(&db));
    assert_eq!(
        text,
        format!(
            "[2] Trip ({ident}) last=2026-01-16T09:00:00.000Z\n[1] {ALICE} ({ALICE}) last=2026-01-15T18:04:05.123Z\n"
        )
    );
    // A world that cannot be opened is an error, not an empty list.
    fake()
        .args(["chats", "--json", "--db"])
        .arg(dir.path().join("absent.db"))
        .assert()
        .failure();
}

/// imsg-rpc.md §11: `--version` (or `-V`) anywhere prints the bare version and a newline.
#[test]
fn version_is_bare() {
    assert_eq!(stdout(fake().arg("--version")), "0.14.0\n");
    assert_eq!(stdout(fake().arg("-V")), "0.14.0\n");
    assert_eq!(stdout(fake().args(["rpc", "--version"])), "0.14.0\n");
    assert_eq!(
        stdout(fake().args(["--version"]).env("FAKE_IMSG_LEVEL", "v1-main")),
        "0.15.10\n"
    );
    assert_eq!(
        stdout(fake().args(["--protocol", "legacy", "--version"])),
        "0.9.0\n"
    );
}

/// Diagnostics on stderr carry no ANSI colour codes when stderr is a pipe or a file.
#[test]
fn stderr_has_no_colour_when_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let out = fake()
        .args(["rpc", "--protocol", "legacy", "-v", "--db"])
        .arg(dir.path().join("absent.db"))
        .write_stdin("")
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("startup-error server"), "{err}");
    assert!(!err.contains('\u{1b}'), "ANSI escape in {err:?}");
}
