//! Every fault of the faults file, over pipes, plus the environment switches
//! (FAKE_IMSG_FAULTS, FAKE_IMSG_PID_FILE).

mod rpc_support;

use rpc_support::*;
use serde_json::{json, Value};

fn with_faults(f: &Fixture, text: &str) -> Rpc {
    f.rpc_with_faults(text, &[])
}

#[test]
fn exit_after_requests_and_ms() {
    let f = Fixture::new();
    let mut rpc = with_faults(&f, "{exit_after_requests: 2}");
    rpc.ok("chats.list", json!({}));
    rpc.ok("status", json!({}));
    assert_eq!(rpc.wait_exit(), 1);
    let mut rpc = with_faults(&f, "{exit_after_ms: 200}");
    rpc.ok("status", json!({}));
    assert_eq!(rpc.wait_exit(), 1);
}

#[test]
fn garbage_and_partial_lines() {
    let f = Fixture::new();
    let mut rpc = with_faults(&f, "{garbage_line_after: 1, partial_line_after: 2}");
    rpc.send(&json!({"jsonrpc":"2.0","id":1,"method":"status"}));
    assert_eq!(
        serde_json::from_str::<Value>(&rpc.raw_line()).unwrap()["id"],
        1
    );
    let garbage = rpc.raw_line();
    assert!(
        serde_json::from_str::<Value>(&garbage).is_err(),
        "{garbage}"
    );
    rpc.send(&json!({"jsonrpc":"2.0","id":2,"method":"chats.list"}));
    assert_eq!(
        serde_json::from_str::<Value>(&rpc.raw_line()).unwrap()["id"],
        2
    );
    let partial = rpc.raw_line();
    assert!(partial.starts_with('{'));
    assert!(
        serde_json::from_str::<Value>(&partial).is_err(),
        "{partial}"
    );
    // The server keeps serving.
    assert_eq!(rpc.ok("read", json!({"chat_id": 1})), json!({"ok": true}));
}

#[test]
fn delay_and_drop_response() {
    let f = Fixture::new();
    let mut rpc = with_faults(
        &f,
        "{delay_ms: {method: 'status', ms: 50}, drop_response: {method: 'chats.list', nth: 1}}",
    );
    rpc.send(&json!({"jsonrpc":"2.0","id":"dropped","method":"chats.list"}));
    assert_eq!(rpc.ok("status", json!({}))["protocol_version"], 1);
    assert_eq!(
        rpc.ok("chats.list", json!({}))["chats"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(rpc.quiet_for(200));
    let (code, rest) = rpc.finish();
    assert_eq!(code, 0);
    assert!(rest.iter().all(|v| v["id"] != "dropped"), "{rest:?}");
}

#[test]
fn database_unavailable() {
    let f = Fixture::new();
    let mut rpc = with_faults(&f, "{database_unavailable: true}");
    let unreadable = "The configured Messages database could not be opened read-only. Verify the path and grant Full Disk Access to the supervising process, then retry.";
    assert_eq!(
        rpc.ok("status", json!({}))["database"],
        json!({"path": f.db.display().to_string(), "ready": false, "error": unreadable})
    );
    assert_eq!(rpc.err("chats.list", json!({}))["code"], -32002);
    let mut legacy = f.rpc_with_faults("{database_unavailable: true}", &["--protocol", "legacy"]);
    let e = legacy.err("chats.list", json!({}));
    assert_eq!(e["code"], -32603);
    assert!(e["data"].as_str().unwrap().contains("Full Disk Access"));
    assert_eq!(legacy.finish().0, 1);
}

#[test]
fn send_outcome_unknown_writes_the_row() {
    let f = Fixture::new();
    let mut rpc = with_faults(&f, "{send_outcome_unknown_on: 1}");
    let e = rpc.err("send", json!({"chat_id": 1, "text": "maybe"}));
    assert_eq!(e["code"], -32001);
    assert_eq!(e["message"], "Delivery outcome unknown");
    let mut data = e["data"].clone();
    assert!(data["detail"].is_string());
    data["detail"] = json!("<detail>");
    assert_eq!(
        data,
        json!({"retry_safe": false, "disposition": "may_have_completed",
                            "transport": "applescript", "operation": "send", "detail": "<detail>"})
    );
    assert_eq!(f.world().sent(0).unwrap()[0].text, "maybe");
    assert_eq!(
        rpc.ok("send", json!({"chat_id": 1, "text": "fine"}))["ok"],
        true
    );
}

#[test]
fn send_poison_blocks_the_mutation_lane() {
    let f = Fixture::new();
    let mut rpc = with_faults(&f, "{send_poison_on: 1}");
    let e = rpc.err("send", json!({"chat_id": 1, "text": "stuck"}));
    assert_eq!(e["code"], -32001);
    assert_eq!(e["data"]["disposition"], "still_in_flight");
    assert_eq!(e["data"]["retry_safe"], false);
    let blocked = json!({"code": -32004, "message": "Mutation lane blocked",
        "data": {"retry_safe": false, "disposition": "still_in_flight", "transport": "applescript",
                 "operation": "send",
                 "detail": "A prior send remains in flight. Restart the RPC child before sending another mutation."}});
    assert_eq!(
        rpc.err("send", json!({"chat_id": 1, "text": "next"})),
        blocked
    );
    assert_eq!(rpc.err("typing", json!({"chat_id": 1})), blocked);
    // Reads and watch keep working.
    assert_eq!(
        rpc.ok("chats.list", json!({}))["chats"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(rpc.ok("watch.subscribe", json!({}))["subscription"], 1);
    assert_eq!(
        f.world().sent(0).unwrap().len(),
        1,
        "blocked sends never ran"
    );
}

#[test]
fn duplicate_notifications() {
    let f = Fixture::new();
    let mut rpc = with_faults(&f, "{duplicate_notification: true}");
    rpc.ok("watch.subscribe", json!({"debounce_ms": 0}));
    say(&f.world(), 1, ALICE, "twice");
    let a = rpc.notification();
    let b = rpc.notification();
    assert_eq!(a, b);
    assert_eq!(a["params"]["message"]["text"], "twice");
}

#[test]
fn mirror_echo_rows() {
    for mode in ["text", "reply_to"] {
        let f = Fixture::new();
        let mut rpc = with_faults(&f, &format!("{{mirror_echo: '{mode}'}}"));
        rpc.ok("watch.subscribe", json!({"debounce_ms": 0}));
        let sent = rpc.ok("send", json!({"chat_id": 1, "text": "echo me"}));
        let own = rpc.notification()["params"]["message"].clone();
        let mirror = rpc.notification()["params"]["message"].clone();
        assert_eq!(own["is_from_me"], true);
        assert_eq!(own["guid"], sent["guid"]);
        assert_eq!(mirror["is_from_me"], false);
        assert_eq!(mirror["chat_id"], 1);
        assert_eq!(mirror["sender"], ALICE);
        match mode {
            "text" => assert_eq!(mirror["text"], "echo me"),
            _ => {
                assert_eq!(mirror["reply_to_guid"], sent["guid"]);
                assert_ne!(mirror["text"], "echo me");
            }
        }
    }
}

#[test]
fn unjoined_ms_holds_injected_rows() {
    let f = Fixture::new();
    let mut rpc = with_faults(&f, "{unjoined_ms: 1500}");
    rpc.ok("watch.subscribe", json!({"debounce_ms": 0}));
    say(&f.world(), 1, ALICE, "held");
    assert!(rpc.quiet_for(400), "the row is not joined yet");
    assert_eq!(rpc.notification()["params"]["message"]["text"], "held");
}

/// imsg 0.9 filters a chat watch in its batch query (imsg-rpc.md §7.3): a row not yet joined
/// to the chat is not read at all, so it is delivered once it is joined, unless a later row
/// of that chat moved the cursor past it first.
#[test]
fn a_legacy_chat_watch_delivers_a_row_once_it_is_joined() {
    let f = Fixture::new();
    let mut rpc = f.rpc_with_faults("{unjoined_ms: 600}", &["--protocol", "legacy"]);
    rpc.ok("watch.subscribe", json!({"chat_id": 1}));
    say(&f.world(), 1, ALICE, "held");
    assert!(rpc.quiet_for(300), "the row is not joined yet");
    let n = rpc.notification();
    assert_eq!(n["params"]["message"]["text"], "held");
    assert_eq!(n["params"]["message"]["chat_id"], 1);
    // A later row of the chat read first moves the cursor past a row still unjoined.
    say(&f.world(), 1, ALICE, "lost");
    rpc.ok("send", json!({"chat_id": 1, "text": "mine"}));
    assert_eq!(rpc.notification()["params"]["message"]["text"], "mine");
    assert!(rpc.quiet_for(1200), "imsg 0.9 never reads it");
}

#[test]
fn environment_switches() {
    let f = Fixture::new();
    let faults = f.faults("{exit_after_requests: 1}");
    let pid_file = f.path("pid");
    let mut rpc = Rpc::start_env(
        &f.db,
        &[],
        &[
            ("FAKE_IMSG_FAULTS", faults.to_str().unwrap()),
            ("FAKE_IMSG_PID_FILE", pid_file.to_str().unwrap()),
        ],
    );
    rpc.ok("status", json!({}));
    assert_eq!(rpc.wait_exit(), 1);
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pid > 0);
    let bad = f.faults("{no_such_fault: 1}");
    let out = std::process::Command::new(bin())
        .args(["rpc", "--db"])
        .arg(&f.db)
        .arg("--faults")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no_such_fault"));
    let help = std::process::Command::new(bin())
        .args(["rpc", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for name in [
        "exit_after_requests",
        "exit_after_ms",
        "garbage_line_after",
        "partial_line_after",
        "delay_ms",
        "drop_response",
        "database_unavailable",
        "send_outcome_unknown_on",
        "send_poison_on",
        "duplicate_notification",
        "mirror_echo",
        "unjoined_ms",
    ] {
        assert!(help.contains(name), "--help documents {name}");
    }
}

/// imsg-rpc-v1.md §2-§4: with the database down, a request that needs it is refused with
/// -32002 before any other refusal the database would otherwise decide (an unknown chat, a
/// date check, staging a file, the transport rules, shutdown); only the shape of the params
/// (unknown keys, types) is checked first, because params are parsed before the DB is
/// touched. Raw lines in, literal JSON lines out.
#[test]
fn database_unavailable_is_answered_before_other_refusals() {
    let f = Fixture::new();
    // The slow initialize keeps the control lane busy, so the subscribe is still queued
    // when stdin closes.
    let p = f.faults("{database_unavailable: true, delay_ms: {method: 'initialize', ms: 300}}");
    let mut rpc = Rpc::start(&f.db, &["--faults", p.to_str().unwrap()]);
    let down = |id: &str| {
        json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32002, "message": "Database unavailable",
               "data": {"path": f.db.display().to_string(),
                        "detail": "The configured Messages database could not be opened read-only. Verify the path and grant Full Disk Access to the supervising process, then retry.",
                        "retryable": true}}})
    };
    let lines = [
        r#"{"jsonrpc":"2.0","id":"hist","method":"messages.history","params":{"chat_id":1,"start":"yesterday"}}"#,
        r#"{"jsonrpc":"2.0","id":"file","method":"send","params":{"chat_id":1,"file":"/nonexistent/a.png"}}"#,
        r#"{"jsonrpc":"2.0","id":"reply","method":"send","params":{"chat_id":1,"text":"x","reply_to":"G"}}"#,
        r#"{"jsonrpc":"2.0","id":"bridge","method":"send","params":{"chat_id":1,"text":"x","transport":"bridge"}}"#,
        r#"{"jsonrpc":"2.0","id":"unread","method":"chats.list","params":{"unread_only":true}}"#,
    ];
    for line in lines {
        rpc.send_raw(line.as_bytes());
        let v: Value = serde_json::from_str(line).unwrap();
        let id = v["id"].as_str().unwrap();
        assert_eq!(rpc.response(&json!(id)), down(id), "{line}");
    }
    // The shape of the params still comes first.
    rpc.send_raw(
        br#"{"jsonrpc":"2.0","id":"shape","method":"watch.subscribe","params":{"chatId":1}}"#,
    );
    assert_eq!(
        rpc.response(&json!("shape")),
        json!({"jsonrpc": "2.0", "id": "shape", "error": {"code": -32602, "message": "Invalid params",
               "data": "unknown watch.subscribe param: chatId"}})
    );
    rpc.send_raw(br#"{"jsonrpc":"2.0","id":"init","method":"initialize"}"#);
    rpc.send_raw(br#"{"jsonrpc":"2.0","id":"sub","method":"watch.subscribe","params":{}}"#);
    let (code, rest) = rpc.finish();
    assert_eq!(code, 0);
    let sub: Vec<&Value> = rest.iter().filter(|v| v["id"] == "sub").collect();
    assert_eq!(sub, vec![&down("sub")], "{rest:?}");
    // send.tracked (level v1-main) always needs the database (it checks attempt_id is unused).
    let mut main = Rpc::start(
        &f.db,
        &["--level", "v1-main", "--faults", p.to_str().unwrap()],
    );
    main.send_raw(br#"{"jsonrpc":"2.0","id":"tracked","method":"send.tracked","params":{"chat_guid":"iMessage;-;+15551234567","text":"x","attempt_id":"1b4e28ba-2fa1-11d2-883f-0016d3cca427"}}"#);
    assert_eq!(main.response(&json!("tracked")), down("tracked"));
}
