//! The world CLI as a user sees it: `world build`, `world chats`, `inject`, `sent`, their
//! JSON lines (compared with literal objects written from imsg-rpc-v1.md §5.3/§5.4) and
//! their errors and exit codes.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use fake_imsg::world::{OutgoingSpec, World};
use serde_json::{json, Value};

fn fake() -> Command {
    Command::cargo_bin("fake-imsg").unwrap()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/worlds")
        .join(name)
}

fn build(dir: &Path, scenario: &str) -> PathBuf {
    let out = dir.join("world.db");
    fake()
        .args(["world", "build"])
        .arg(fixture(scenario))
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    out
}

fn run_json(cmd: &mut Command) -> Vec<Value> {
    let out = cmd.assert().success().get_output().stdout.clone();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

fn inject(db: &Path, args: &[&str]) -> Value {
    let mut cmd = fake();
    cmd.arg("inject").arg("--db").arg(db).args(args);
    let mut lines = run_json(&mut cmd);
    assert_eq!(lines.len(), 1, "inject prints exactly one line");
    lines.remove(0)
}

/// Checks the guid is an uppercase UUID (Apple's shape), then returns it.
fn take_guid(v: &Value) -> String {
    let g = v["guid"].as_str().expect("guid is a string").to_string();
    assert_eq!(g.len(), 36, "{g}");
    assert_eq!(g, g.to_uppercase(), "{g}");
    assert_eq!(g.matches('-').count(), 4, "{g}");
    g
}

#[test]
fn builds_each_shipped_scenario_with_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    for (name, expected) in [
        (
            "single-dm.json5",
            "1 chats, 4 messages, 0 attachments, 0 reactions",
        ),
        (
            "family-group.json5",
            "3 chats, 10 messages, 2 attachments, 2 reactions",
        ),
    ] {
        let out = dir.path().join(name.replace(".json5", ".db"));
        let assert = fake()
            .args(["world", "build"])
            .arg(fixture(name))
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        let stdout = String::from_utf8(assert.get_output().stdout.clone()).unwrap();
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
        assert!(stdout.trim_end().ends_with(expected), "{stdout}");
    }
    let out = dir.path().join("busy.db");
    let assert = fake()
        .args(["world", "build"])
        .arg(fixture("busy.json5"))
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let stdout = String::from_utf8(assert.get_output().stdout.clone()).unwrap();
    let counts: Vec<i64> = stdout
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let n = counts.len();
    let (chats, messages, attachments, reactions) =
        (counts[n - 4], counts[n - 3], counts[n - 2], counts[n - 1]);
    assert!(chats >= 24, "dozens of chats: {stdout}");
    assert!(messages >= 2000, "thousands of messages: {stdout}");
    assert!(attachments > 0 && reactions > 0, "{stdout}");
}

#[test]
fn busy_world_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let wa = build(&a, "busy.json5");
    let wb = build(&b, "busy.json5");
    let dump = |p: &Path| {
        let w = World::open(p).unwrap();
        w.messages_after(0, None, 100_000, true)
            .unwrap()
            .into_iter()
            .map(|m| (m.guid, m.text, m.date, m.chat_id, m.sender))
            .collect::<Vec<_>>()
    };
    assert_eq!(dump(&wa), dump(&wb));
}

#[test]
fn world_chats_prints_v1_chat_objects() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(dir.path(), "single-dm.json5");
    let chats = run_json(fake().args(["world", "chats", "--db"]).arg(&db));
    assert_eq!(
        chats,
        vec![json!({
            "id": 1,
            "identifier": "+15551234567",
            "guid": "iMessage;-;+15551234567",
            "name": "Alice Moreau",
            "contact_name": "Alice Moreau",
            "service": "iMessage",
            "last_message_at": "2026-01-15T16:15:00.000Z",
            "participants": ["+15551234567"],
            "is_group": false,
            "account_id": "7B3D2C1A-0000-4000-8000-000000000001",
            "account_login": "E:me@icloud.com",
            "last_addressed_handle": "me@icloud.com",
            "unread_count": 0
        })]
    );
}

#[test]
fn inject_into_a_dm_prints_the_v1_message() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(dir.path(), "single-dm.json5");
    let got = inject(
        &db,
        &[
            "--chat-id",
            "1",
            "--from",
            "+15551234567",
            "--text",
            "are we still on?",
            "--date",
            "2026-01-15T18:04:05.123Z",
        ],
    );
    let guid = take_guid(&got);
    assert_eq!(
        got,
        json!({
            "id": 5,
            "chat_id": 1,
            "guid": guid,
            "sender": "+15551234567",
            "sender_name": "Alice Moreau",
            "is_from_me": false,
            "text": "are we still on?",
            "created_at": "2026-01-15T18:04:05.123Z",
            "attachments": [],
            "reactions": [],
            "destination_caller_id": "me@icloud.com",
            "is_read": false,
            "chat_identifier": "+15551234567",
            "chat_guid": "iMessage;-;+15551234567",
            "chat_name": "Alice Moreau",
            "participants": ["+15551234567"],
            "is_group": false
        })
    );
}

#[test]
fn inject_into_a_group_with_an_attachment() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(dir.path(), "family-group.json5");
    let photo = dir.path().join("beach.jpg");
    std::fs::write(&photo, b"\xFF\xD8\xFF\xE0 not really a jpeg").unwrap();
    let got = inject(
        &db,
        &[
            "--chat-id",
            "1",
            "--from",
            "sister@example.com",
            "--text",
            "beach!",
            "--attach",
            photo.to_str().unwrap(),
            "--date",
            "2026-01-15T18:05:00Z",
        ],
    );
    let guid = take_guid(&got);
    let path = got["attachments"][0]["filename"]
        .as_str()
        .unwrap()
        .to_string();
    let attachments_dir = dir.path().canonicalize().unwrap().join("Attachments");
    assert!(
        Path::new(&path).starts_with(&attachments_dir) && path.ends_with("/beach.jpg"),
        "copied under the world's Attachments folder: {path}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(&photo).unwrap()
    );
    assert_eq!(
        got,
        json!({
            "id": 13,
            "chat_id": 1,
            "guid": guid,
            "sender": "sister@example.com",
            "sender_name": "Sam",
            "is_from_me": false,
            "text": "beach!",
            "created_at": "2026-01-15T18:05:00.000Z",
            "attachments": [{
                "filename": path,
                "transfer_name": "beach.jpg",
                "uti": "public.jpeg",
                "mime_type": "image/jpeg",
                "total_bytes": 22,
                "is_sticker": false,
                "original_path": path,
                "missing": false
            }],
            "reactions": [],
            "destination_caller_id": "+15550000000",
            "is_read": false,
            "chat_identifier": "chat123456789012345678",
            "chat_guid": "iMessage;+;chat123456789012345678",
            "chat_name": "Family",
            "participants": ["+15551110001", "+15551110002", "sister@example.com"],
            "is_group": true
        })
    );
}

#[test]
fn inject_new_chats_creates_or_reuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(dir.path(), "single-dm.json5");
    // An existing DM is reused.
    let again = inject(
        &db,
        &["--new-chat", "--from", "+15551234567", "--text", "x"],
    );
    assert_eq!(again["chat_id"], json!(1));
    // A new SMS DM.
    let sms = inject(
        &db,
        &[
            "--new-chat",
            "--service",
            "SMS",
            "--from",
            "+15557654321",
            "--text",
            "y",
        ],
    );
    assert_eq!(sms["chat_id"], json!(2));
    assert_eq!(sms["chat_guid"], json!("SMS;-;+15557654321"));
    assert_eq!(sms["chat_identifier"], json!("+15557654321"));
    assert_eq!(sms["is_group"], json!(false));
    // A new named group; the sender joins the participants.
    let group = inject(
        &db,
        &[
            "--new-chat",
            "--group",
            "--name",
            "Trip",
            "--participant",
            "+15550000009",
            "--from",
            "+15550000008",
            "--text",
            "hi all",
        ],
    );
    assert_eq!(group["chat_id"], json!(3));
    let ident = group["chat_identifier"].as_str().unwrap();
    assert!(ident.starts_with("chat") && ident[4..].chars().all(|c| c.is_ascii_digit()));
    assert_eq!(group["chat_guid"], json!(format!("iMessage;+;{ident}")));
    assert_eq!(group["chat_name"], json!("Trip"));
    assert_eq!(
        group["participants"],
        json!(["+15550000008", "+15550000009"])
    );
    assert_eq!(group["is_group"], json!(true));
}

#[test]
fn sent_lists_what_record_send_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(dir.path(), "single-dm.json5");
    let before = World::open(&db).unwrap().max_rowid().unwrap();
    let row = World::open(&db)
        .unwrap()
        .record_send(&OutgoingSpec {
            chat_id: 1,
            text: "on my way".into(),
            file: None,
            service: "iMessage".into(),
        })
        .unwrap();
    let lines = run_json(
        fake()
            .args(["sent", "--db"])
            .arg(&db)
            .args(["--since-rowid", &before.to_string()]),
    );
    let created_at = fake_imsg::payload::iso8601(row.date);
    assert_eq!(
        lines,
        vec![json!({
            "id": before + 1,
            "chat_id": 1,
            "guid": row.guid,
            "sender": "+15551234567",
            "is_from_me": true,
            "text": "on my way",
            "created_at": created_at,
            "attachments": [],
            "reactions": [],
            "destination_caller_id": "me@icloud.com",
            "chat_identifier": "+15551234567",
            "chat_guid": "iMessage;-;+15551234567",
            "chat_name": "Alice Moreau",
            "participants": ["+15551234567"],
            "is_group": false
        })]
    );
    // Without a cursor, the scenario's own outgoing rows come first, oldest first.
    let all = run_json(fake().args(["sent", "--db"]).arg(&db));
    let texts: Vec<&str> = all.iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["Yes, Saturday works.", "Perfect", "on my way"]);
}

#[test]
fn reactions_are_rows_and_aggregate_on_their_target() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(dir.path(), "single-dm.json5");
    let mine = inject(
        &db,
        &[
            "--chat-id",
            "1",
            "--from-me",
            "--text",
            "hello",
            "--date",
            "2026-01-15T18:00:00Z",
        ],
    );
    let target = take_guid(&mine);
    let tap = inject(
        &db,
        &[
            "--chat-id",
            "1",
            "--from",
            "+15551234567",
            "--reaction",
            "like",
            "--to",
            &target,
            "--date",
            "2026-01-15T18:01:00Z",
        ],
    );
    let tap_guid = take_guid(&tap);
    assert_eq!(
        tap,
        json!({
            "id": 6,
            "chat_id": 1,
            "guid": tap_guid,
            "sender": "+15551234567",
            "sender_name": "Alice Moreau",
            "is_from_me": false,
            "text": "Liked \u{201c}hello\u{201d}",
            "created_at": "2026-01-15T18:01:00.000Z",
            "attachments": [],
            "reactions": [],
            "is_reaction": true,
            "reaction_type": "like",
            "reaction_emoji": "👍",
            "is_reaction_add": true,
            "reacted_to_guid": target,
            "destination_caller_id": "me@icloud.com",
            "is_read": false,
            "chat_identifier": "+15551234567",
            "chat_guid": "iMessage;-;+15551234567",
            "chat_name": "Alice Moreau",
            "participants": ["+15551234567"],
            "is_group": false
        })
    );
    let sent = run_json(
        fake()
            .args(["sent", "--db"])
            .arg(&db)
            .args(["--since-rowid", "4"]),
    );
    assert_eq!(
        sent[0]["reactions"],
        json!([{
            "id": 6,
            "type": "like",
            "emoji": "👍",
            "sender": "+15551234567",
            "sender_name": "Alice Moreau",
            "is_from_me": false,
            "created_at": "2026-01-15T18:01:00.000Z"
        }])
    );
    // Removing the like empties the current state.
    inject(
        &db,
        &[
            "--chat-id",
            "1",
            "--from",
            "+15551234567",
            "--reaction",
            "-like",
            "--to",
            &target,
        ],
    );
    let sent = run_json(
        fake()
            .args(["sent", "--db"])
            .arg(&db)
            .args(["--since-rowid", "4"]),
    );
    assert_eq!(sent[0]["reactions"], json!([]));
}

#[test]
fn an_attachment_whose_file_is_gone_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(dir.path(), "single-dm.json5");
    let file = dir.path().join("report.pdf");
    std::fs::write(&file, b"%PDF-1.4").unwrap();
    let got = inject(
        &db,
        &[
            "--chat-id",
            "1",
            "--from-me",
            "--attach",
            file.to_str().unwrap(),
        ],
    );
    let path = got["attachments"][0]["original_path"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_file(&path).unwrap();
    let sent = run_json(
        fake()
            .args(["sent", "--db"])
            .arg(&db)
            .args(["--since-rowid", "4"]),
    );
    assert_eq!(
        sent[0]["attachments"],
        json!([{
            "filename": path,
            "transfer_name": "report.pdf",
            "uti": "com.adobe.pdf",
            "mime_type": "application/pdf",
            "total_bytes": 8,
            "is_sticker": false,
            "original_path": path,
            "missing": true
        }])
    );
}

#[test]
fn scenario_missing_attachment_records_a_row_without_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(dir.path(), "family-group.json5");
    let world = World::open(&db).unwrap();
    let history = world
        .history(&fake_imsg::world::HistoryQuery {
            chat_id: 3,
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    let voice = &history[0].attachments[0];
    let v = fake_imsg::payload::attachment_json(voice);
    assert_eq!(v["transfer_name"], json!("Audio Message.caf"));
    assert_eq!(v["uti"], json!("com.apple.coreaudio-format"));
    assert_eq!(v["mime_type"], json!("audio/x-caf"));
    assert_eq!(v["total_bytes"], json!(20480));
    assert_eq!(v["missing"], json!(true));
}

#[test]
fn unknown_chat_is_a_clear_error_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(dir.path(), "single-dm.json5");
    let out = fake()
        .arg("inject")
        .arg("--db")
        .arg(&db)
        .args(["--chat-id", "99", "--from", "+15551234567", "--text", "x"])
        .assert()
        .code(2)
        .get_output()
        .clone();
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("unknown chat id 99"), "{err}");
}

#[test]
fn missing_attachment_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(dir.path(), "single-dm.json5");
    let out = fake()
        .arg("inject")
        .arg("--db")
        .arg(&db)
        .args([
            "--chat-id",
            "1",
            "--from",
            "+15551234567",
            "--attach",
            "/nonexistent/cat.jpg",
        ])
        .assert()
        .code(2)
        .get_output()
        .clone();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("/nonexistent/cat.jpg") && err.contains("does not exist"),
        "{err}"
    );
    assert_eq!(
        World::open(&db).unwrap().max_rowid().unwrap(),
        4,
        "nothing written"
    );
}

#[test]
fn missing_world_file_is_a_clear_error() {
    let out = fake()
        .args(["sent", "--db", "/nonexistent/world.db"])
        .assert()
        .failure()
        .get_output()
        .clone();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("/nonexistent/world.db"), "{err}");
}

#[test]
fn bad_scenarios_name_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("{ chats: [ { participants: [\"mum\"] } ] }", "chats[0].participants[0]: unknown person \"mum\""),
        ("{ chats: [ { participants: [\"+15551234567\"], messages: [ { from: \"+15551234567\", at: \"yesterday\" } ] } ] }", "chats[0].messages[0].at: bad time \"yesterday\""),
        ("{ chats: [ { participants: [\"+15551234567\"], messages: [ { from: \"+15551234567\", react: \"love\", to: \"nope\" } ] } ] }", "chats[0].messages[0].to: no message has label \"nope\""),
        ("{ chats: [ { participants: [\"+15551234567\"], colour: \"red\" } ] }", "chats[0]: unknown key \"colour\""),
        ("{ chats: [ { participants: [\"+15551234567\"], messages: [ { from: \"+15551234567\", attachments: [\"no-such.jpg\"] } ] } ] }", "chats[0].messages[0].attachments[0]: attachment file"),
        ("{ chats: [ ", "not valid JSON5"),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let scenario = dir.path().join(format!("bad{i}.json5"));
        std::fs::write(&scenario, text).unwrap();
        let out = dir.path().join(format!("bad{i}.db"));
        let res = fake()
            .args(["world", "build"])
            .arg(&scenario)
            .arg("--out")
            .arg(&out)
            .assert()
            .code(2)
            .get_output()
            .clone();
        let err = String::from_utf8(res.stderr).unwrap();
        assert!(
            err.contains(&format!("bad{i}.json5")),
            "names the file: {err}"
        );
        assert!(err.contains(expected), "case {i}: {err}");
        assert!(!out.exists(), "no half-built world left behind");
    }
}

#[test]
fn build_refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(dir.path(), "single-dm.json5");
    let res = fake()
        .args(["world", "build"])
        .arg(fixture("family-group.json5"))
        .arg("--out")
        .arg(&db)
        .assert()
        .code(2)
        .get_output()
        .clone();
    let err = String::from_utf8(res.stderr).unwrap();
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(World::open(&db).unwrap().all_chats().unwrap().len(), 1);
    fake()
        .args(["world", "build"])
        .arg(fixture("family-group.json5"))
        .arg("--out")
        .arg(&db)
        .arg("--force")
        .assert()
        .success();
    assert_eq!(World::open(&db).unwrap().all_chats().unwrap().len(), 3);
}
