//! The legacy (imsg 0.9) surface over pipes, `--protocol legacy`: lenient parser and params,
//! the 22 method names, error strings of imsg-rpc.md §8, shapes, watch batching and its chat
//! filter, and the §10 startup-error server.

mod rpc_support;

use rpc_support::*;
use serde_json::{json, Value};

fn invalid(data: &str) -> Value {
    json!({"code": -32602, "message": "Invalid params", "data": data})
}

#[test]
fn legacy_framing_and_unknown_methods() {
    let f = Fixture::new();
    let mut rpc = Rpc::legacy(&f.db);
    // Missing or non-string jsonrpc is accepted; any id is echoed.
    rpc.send_raw(br#"{"id":{"k":[1]},"method":"watch.unsubscribe","params":{"subscription":"4"}}"#);
    assert_eq!(
        rpc.next(),
        json!({"jsonrpc":"2.0","id":{"k":[1]},"result":{"ok":true}})
    );
    rpc.send_raw(br#"{"jsonrpc":2.0,"id":true,"method":"watch.unsubscribe","params":[1]}"#);
    assert_eq!(
        rpc.next(),
        error(
            json!(true),
            -32602,
            "Invalid params",
            json!("subscription is required")
        )
    );
    rpc.send_raw(br#"{"jsonrpc":"1.0","id":3,"method":"chats.list"}"#);
    assert_eq!(
        rpc.next(),
        error(
            json!(3),
            -32600,
            "Invalid Request",
            json!("jsonrpc must be 2.0")
        )
    );
    rpc.send_raw(br#"{"jsonrpc":"2.0","id":4}"#);
    assert_eq!(
        rpc.next(),
        error(
            json!(4),
            -32600,
            "Invalid Request",
            json!("method is required")
        )
    );
    rpc.send_raw(b"[]");
    assert_eq!(
        rpc.next(),
        error(
            Value::Null,
            -32600,
            "Invalid Request",
            json!("request must be an object")
        )
    );
    rpc.send_raw(b"true");
    let e = rpc.next();
    assert_eq!(
        (e["id"].clone(), e["error"]["code"].clone()),
        (Value::Null, json!(-32700))
    );
    // Failed notifications are answered with id null; successful ones are silent.
    rpc.send_raw(br#"{"jsonrpc":"2.0","method":"$/cancelRequest"}"#);
    assert_eq!(
        rpc.next(),
        error(
            Value::Null,
            -32601,
            "Method not found",
            json!("$/cancelRequest")
        )
    );
    rpc.send_raw(br#"{"jsonrpc":"2.0","method":"chats.list"}"#);
    assert!(rpc.quiet_for(200));
    for m in [
        "status",
        "initialize",
        "messages.after",
        "chats.get",
        "typing.start",
        "messages.search",
    ] {
        assert_eq!(
            rpc.err(m, json!({})),
            json!({"code": -32601, "message": "Method not found", "data": m})
        );
    }
}

#[test]
fn legacy_reads_and_shapes() {
    let f = Fixture::new();
    let mut rpc = Rpc::legacy(&f.db);
    let r = rpc.ok("chats.list", json!({"limit": 0}));
    let chats = r["chats"].as_array().unwrap();
    assert_eq!(chats.len(), 1, "limit clamps to 1");
    let r = rpc.ok("chats.list", json!({"limit": "10"}));
    let mut dm = r["chats"][1].clone();
    assert_iso(&dm["last_message_at"]);
    dm["last_message_at"] = json!("<date>");
    assert_eq!(
        dm,
        json!({"id": 1, "identifier": ALICE, "guid": format!("iMessage;-;{ALICE}"), "name": ALICE,
               "service": "iMessage", "last_message_at": "<date>", "participants": [ALICE],
               "is_group": false})
    );
    assert_eq!(
        rpc.err("messages.history", json!({"chat_id": "x"})),
        invalid("chat_id is required")
    );
    assert_eq!(
        rpc.err(
            "messages.history",
            json!({"chat_id": 1, "start": "yesterday"})
        ),
        json!({"code": -32603, "message": "Internal error", "data": "Invalid ISO8601 date: yesterday"})
    );
    let r = rpc.ok("messages.history", json!({"chat_id": "1", "limit": 0}));
    let msgs = r["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 1);
    let mut m = msgs[0].clone();
    scrub_message(&mut m);
    m.as_object_mut().unwrap().remove("destination_caller_id");
    assert_eq!(
        m,
        json!({"id": "<id>", "chat_id": 1, "guid": "<guid>", "sender": ALICE, "is_from_me": false,
               "text": "hello", "created_at": "<date>", "attachments": [], "reactions": [],
               "chat_identifier": ALICE, "chat_guid": format!("iMessage;-;{ALICE}"),
               "chat_name": ALICE, "participants": [ALICE], "is_group": false})
    );
    let r = rpc.ok(
        "messages.history",
        json!({"chat_id": 2, "participants": "+15550000002, "}),
    );
    assert_eq!(r["messages"], json!([]));
}

#[test]
fn legacy_watch() {
    let f = Fixture::new();
    let mut rpc = Rpc::legacy(&f.db);
    assert_eq!(
        rpc.err("watch.subscribe", json!({"debounce_ms": "soon"})),
        invalid("debounce_ms must be a non-negative integer")
    );
    assert_eq!(
        rpc.err("watch.subscribe", json!({"start": "nope"})),
        json!({"code": -32603, "message": "Internal error", "data": "Invalid ISO8601 date: nope"})
    );
    assert_eq!(
        rpc.ok(
            "watch.subscribe",
            json!({"chat_id": "bogus", "debounceMs": 0})
        ),
        json!({"subscription": 1})
    );
    say(&f.world(), 2, BOB, "legacy live");
    let n = rpc.notification();
    assert_eq!(n["method"], "message");
    assert_eq!(n["params"]["subscription"], 1);
    assert_eq!(n["params"]["message"]["text"], "legacy live");
    assert!(
        n["params"]["message"].get("is_read").is_none(),
        "no v1 fields"
    );
    assert_eq!(
        rpc.err("watch.unsubscribe", json!({})),
        invalid("subscription is required")
    );
}

#[test]
fn legacy_send_typing_read_and_bridge_methods() {
    let f = Fixture::new();
    let mut rpc = Rpc::legacy(&f.db);
    let cases: Vec<(&str, Value, &str)> = vec![
        ("send", json!({}), "to is required for direct sends"),
        ("send", json!({"chat_id": 999}), "text or file is required"),
        ("send", json!({"chat_id": 999, "text": "x"}), "unknown chat_id 999"),
        ("send", json!({"chat_id": 1, "to": "+15551234567", "text": "hi"}), "use to or chat_*; not both"),
        ("send", json!({"to": ALICE, "text": "x", "service": "iMessage"}), "invalid service"),
        ("send", json!({"to": ALICE, "text": "x", "transport": "carrier"}), "invalid transport"),
        ("send", json!({"to": "+15559990000", "text": "x", "transport": "bridge"}), "bridge transport requires an existing chat target"),
        ("typing", json!({}), "to is required"),
        ("typing", json!({"to": "+123", "service": "fax"}), "fax"),
        ("read", json!({"chat_id": 999}), "unknown chat_id 999"),
        ("group.rename", json!({"name": "x"}), "chat_guid, chat_identifier, or chat_id is required"),
        ("tapback", json!({"chat_id": 1}), "message_id or message_guid is required"),
        ("tapback", json!({"chat_id": 1, "message_id": "g"}), "reaction, kind, or emoji is required"),
        ("tapback", json!({"chat_id": 1, "messageGuid": "g", "reaction": "wow"}), "unsupported tapback reaction wow; use love, like, dislike, laugh, emphasize, or question"),
        ("chats.create", json!({}), "addresses is required (non-empty array of phone/email)"),
    ];
    for (m, p, data) in cases {
        assert_eq!(rpc.err(m, p.clone()), invalid(data), "{m} {p}");
    }
    let r = rpc.ok(
        "send",
        json!({"to": ALICE, "text": "hi", "service": "auto", "region": "US"}),
    );
    let id = r["id"].as_i64().unwrap();
    let guid = r["guid"].as_str().unwrap();
    assert_eq!(
        r,
        json!({"ok": true, "transport": "applescript", "id": id, "guid": guid})
    );
    assert_eq!(
        rpc.ok("chats.list", json!({}))["chats"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    rpc.ok("send", json!({"to": "new@example.com", "text": "first"}));
    let chats = rpc.ok("chats.list", json!({}));
    assert_eq!(
        chats["chats"][0]["identifier"], "new@example.com",
        "a fresh list after a send"
    );
    assert_eq!(
        rpc.ok("typing", json!({"to": "+123", "typing": true})),
        json!({"ok": true})
    );
    assert_eq!(rpc.ok("read", json!({"chat_id": 1})), json!({"ok": true}));
    let e = rpc.err(
        "tapback",
        json!({"chat_identifier": ALICE, "message_id": guid, "reaction": "heart"}),
    );
    assert_eq!(e["code"], -32603);
    assert!(e["data"]
        .as_str()
        .unwrap()
        .contains("System Integrity Protection"));
    let missing = f.path("gone.png");
    assert_eq!(
        rpc.err("send", json!({"chat_id": 1, "file": missing})),
        json!({"code": -32603, "message": "Internal error",
               "data": format!("AppleScript failed: Attachment not found at {}", missing.display())})
    );
}

#[test]
fn legacy_startup_error_server() {
    let f = Fixture::empty();
    let mut rpc = Rpc::start_env(&f.db, &[], &[("FAKE_IMSG_PROTOCOL", "legacy")]);
    for (id, method) in [
        (json!("startup"), "chats.list"),
        (json!(2), "no.such.method"),
    ] {
        let r = rpc.call(id.clone(), method, json!({"limit": 1}));
        assert_eq!(r["id"], id);
        assert_eq!(r["error"]["code"], -32603);
        assert_eq!(r["error"]["message"], "Internal error");
        let text = r["error"]["data"].as_str().unwrap();
        assert!(
            text.contains("Permission Error") && text.contains("Full Disk Access"),
            "{text}"
        );
        assert!(text.contains(&f.db.display().to_string()));
    }
    rpc.send_raw(br#"{"method":"chats.list"}"#);
    assert_eq!(
        rpc.next()["id"],
        Value::Null,
        "id-less requests get id null"
    );
    rpc.send_raw(b"{oops");
    assert_eq!(
        rpc.next()["error"]["code"],
        -32700,
        "parse errors stay parse errors"
    );
    let (code, rest) = rpc.finish();
    assert_eq!(code, 1);
    assert!(rest.is_empty());
}

#[test]
fn legacy_answers_a_subscribe_that_arrives_right_before_eof() {
    // imsg 0.9 reads the next line only after answering the previous one, so a subscribe
    // followed by EOF is answered like any other (v1 instead refuses it as shutting down).
    let f = Fixture::new();
    let mut rpc = f.rpc_with_faults(
        "{delay_ms: {method: 'chats.list', ms: 300}}",
        &["--protocol", "legacy"],
    );
    rpc.send(&json!({"jsonrpc":"2.0","id":"slow","method":"chats.list","params":{"limit":1}}));
    rpc.send(&json!({"jsonrpc":"2.0","id":"sub","method":"watch.subscribe","params":{}}));
    let (code, rest) = rpc.finish();
    assert_eq!(code, 0);
    let ids: Vec<&Value> = rest.iter().map(|v| &v["id"]).collect();
    assert_eq!(ids, vec![&json!("slow"), &json!("sub")], "in input order");
    assert_eq!(
        rest[1],
        json!({"jsonrpc": "2.0", "id": "sub", "result": {"subscription": 1}})
    );
}

/// imsg-rpc.md §7.5: "File-only sends are not verified and return at once" — the example
/// `{"chat_id":1,"file":"/tmp/a.png"}` answers `{"ok":true,"transport":"applescript"}`.
#[test]
fn legacy_file_only_send_is_not_verified() {
    let f = Fixture::new();
    let mut rpc = Rpc::legacy(&f.db);
    let file = f.path("a.png");
    std::fs::write(&file, b"png").unwrap();
    assert_eq!(
        rpc.ok("send", json!({"chat_id": 1, "file": file})),
        json!({"ok": true, "transport": "applescript"})
    );
    assert_eq!(
        rpc.ok("send", json!({"to": "+14155551212", "file": file})),
        json!({"ok": true, "transport": "applescript"})
    );
    // A text send is verified: `id` (and `guid`) of the row it found.
    let r = rpc.ok("send", json!({"chat_id": 1, "text": "hi"}));
    let sent = f.world().sent(0).unwrap();
    assert_eq!(r["id"], json!(sent.last().unwrap().id));
}

/// imsg-rpc.md §7.1 / §13.12: chat identifier, guid, name, service and participants are
/// cached for the life of the process, in `chats.list` and in message payloads; a rename is
/// not seen until restart, while `last_message_at` stays fresh.
#[test]
fn legacy_chat_info_is_cached_for_the_process() {
    let f = Fixture::new();
    let mut rpc = Rpc::legacy(&f.db);
    let before = rpc.ok("chats.list", json!({"limit": 10}));
    let trip = |v: &Value| {
        v["chats"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == 2)
            .cloned()
            .unwrap()
    };
    assert_eq!(trip(&before)["name"], "Trip");
    rpc.ok("watch.subscribe", json!({"debounce_ms": 0}));
    let conn = rusqlite::Connection::open(&f.db).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    conn.execute(
        "UPDATE chat SET display_name = 'Renamed' WHERE ROWID = 2",
        [],
    )
    .unwrap();
    drop(conn);
    say(&f.world(), 2, CAROL, "after the rename");
    let n = rpc.notification();
    assert_eq!(n["params"]["message"]["text"], "after the rename");
    assert_eq!(n["params"]["message"]["chat_name"], "Trip");
    let after = rpc.ok("chats.list", json!({"limit": 10}));
    assert_eq!(trip(&after)["name"], "Trip");
    assert_ne!(
        trip(&after)["last_message_at"],
        trip(&before)["last_message_at"],
        "last_message_at is always fresh"
    );
    let h = rpc.ok("messages.history", json!({"chat_id": 2, "limit": 1}));
    assert_eq!(h["messages"][0]["chat_name"], "Trip");
}

/// imsg-rpc.md §6.4 / §13.10: a row with no chat join reports `chat_id` 0 and empty chat
/// fields (`chat_identifier`/`chat_guid`/`chat_name` `""`, `participants` `[]`).
#[test]
fn legacy_watch_emits_unjoined_rows_with_chat_id_0() {
    let f = Fixture::new();
    let mut rpc = Rpc::legacy(&f.db);
    assert_eq!(
        rpc.ok("watch.subscribe", json!({"debounce_ms": 0})),
        json!({"subscription": 1})
    );
    f.world()
        .inject(&fake_imsg::world::InjectSpec {
            chat_id: Some(1),
            from: ALICE.into(),
            text: "no join yet".into(),
            unjoined: true,
            ..Default::default()
        })
        .unwrap();
    let m = rpc.notification()["params"]["message"].clone();
    assert_eq!(m["text"], "no join yet");
    assert_eq!(m["chat_id"], 0);
    assert_eq!(m["chat_identifier"], "");
    assert_eq!(m["chat_guid"], "");
    assert_eq!(m["chat_name"], "");
    assert_eq!(m["participants"], json!([]));
    assert_eq!(m["is_group"], false);
}

/// imsg-rpc.md §7.3 / §13.9: each poll fetches at most 100 rows; a larger backlog is drained
/// one batch per trigger (file event or the 5 s fallback poll).
#[test]
fn legacy_watch_replays_100_rows_per_trigger() {
    let f = Fixture::new();
    let w = f.world();
    for i in 0..110 {
        say(&w, 1, ALICE, &format!("backlog {i}"));
    }
    let mut rpc = Rpc::legacy(&f.db);
    rpc.ok("watch.subscribe", json!({"since_rowid": -1}));
    let ids: Vec<i64> = (0..100)
        .map(|_| {
            rpc.notification()["params"]["message"]["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(ids, (1..=100).collect::<Vec<i64>>());
    assert!(rpc.quiet_for(1000), "the rest waits for the next trigger");
    // The fallback poll (5 s) brings the next batch.
    assert_eq!(rpc.notification()["params"]["message"]["id"], 101);
}

/// A watch `message` notification with the placeholder-shaped `guid` and `created_at` checked
/// and replaced; any other line is returned as it is, for the assertion to show.
fn alice_dm_notification(mut n: Value) -> Value {
    if n["method"] != "message" {
        return n;
    }
    let m = &mut n["params"]["message"];
    assert!(
        m["guid"].as_str().is_some_and(|g| !g.is_empty()),
        "guid: {m}"
    );
    m["guid"] = json!("<guid>");
    assert_iso(&m["created_at"]);
    m["created_at"] = json!("<date>");
    m.as_object_mut().unwrap().remove("destination_caller_id");
    n
}

fn alice_dm_message(id: i64, text: &str) -> Value {
    json!({"jsonrpc": "2.0", "method": "message", "params": {"subscription": 1, "message": {
        "id": id, "chat_id": 1, "guid": "<guid>", "sender": ALICE, "is_from_me": false,
        "text": text, "created_at": "<date>", "attachments": [], "reactions": [],
        "chat_identifier": ALICE, "chat_guid": format!("iMessage;-;{ALICE}"), "chat_name": ALICE,
        "participants": [ALICE], "is_group": false}}})
}

/// imsg-rpc.md §7.3: a poll fetches at most 100 rows with `ROWID > cursor` *plus the chat
/// filter*, so other chats' rows never take up a filtered watch's batch: the watched chat's
/// row behind 150 rows of another chat comes with the first poll, not a 5 s fallback later.
#[test]
fn legacy_watch_chat_filter_is_part_of_the_batch_query() {
    let f = Fixture::new();
    let w = f.world();
    for i in 0..150 {
        say(&w, 2, BOB, &format!("other chat {i}"));
    }
    let watched = say(&w, 1, ALICE, "behind the other chat");
    assert_eq!(watched.id, 153);
    let mut rpc = Rpc::legacy(&f.db);
    assert_eq!(
        rpc.ok("watch.subscribe", json!({"chat_id": 1, "since_rowid": -1})),
        json!({"subscription": 1})
    );
    assert_eq!(
        alice_dm_notification(rpc.notification()),
        alice_dm_message(1, "hello")
    );
    assert!(
        !rpc.quiet_for(2500),
        "row 153 of chat 1 is in the first batch, not behind 100 rows of chat 2"
    );
    assert_eq!(
        alice_dm_notification(rpc.notification()),
        alice_dm_message(153, "behind the other chat")
    );
    assert!(rpc.quiet_for(300));
}

/// imsg-rpc.md §7.3: the chat filter is in the query, so a row of another chat is never read
/// and one that cannot be read does not fail (§7.3 "Error notification") a watch of chat 1.
#[test]
fn legacy_watch_never_reads_rows_of_other_chats() {
    let f = Fixture::new();
    let w = f.world();
    let bad = say(&w, 2, BOB, "soon unreadable");
    say(&w, 1, ALICE, "after the bad row");
    drop(w);
    let c = rusqlite::Connection::open(&f.db).unwrap();
    c.execute(
        "UPDATE message SET text = X'00FF' WHERE ROWID = ?1",
        [bad.id],
    )
    .unwrap();
    drop(c);
    let mut rpc = Rpc::legacy(&f.db);
    assert_eq!(
        rpc.ok("watch.subscribe", json!({"chat_id": 1, "since_rowid": -1})),
        json!({"subscription": 1})
    );
    assert_eq!(
        alice_dm_notification(rpc.notification()),
        alice_dm_message(1, "hello")
    );
    assert_eq!(
        alice_dm_notification(rpc.notification()),
        alice_dm_message(4, "after the bad row")
    );
    assert!(rpc.quiet_for(300));
}

/// imsg-rpc.md §7.3 / §6.4: the filter matches a chat_message_join row of the watched chat,
/// so a message joined to chats 1 and 2 is a chat-2 row for a chat-2 watch (not skipped as
/// a row of its lowest chat) and reports `chat_id` 2.
#[test]
fn legacy_watch_of_a_chat_sees_rows_also_joined_to_a_lower_chat() {
    let f = Fixture::new();
    let w = f.world();
    let both = say(&w, 1, ALICE, "in both chats");
    w.join_message(both.id, 2).unwrap();
    let mut rpc = Rpc::legacy(&f.db);
    assert_eq!(
        rpc.ok("watch.subscribe", json!({"chat_id": 2, "since_rowid": 2})),
        json!({"subscription": 1})
    );
    let n = rpc.notification();
    let m = &n["params"]["message"];
    assert_eq!(
        json!([
            m["id"],
            m["chat_id"],
            m["text"],
            m["chat_name"],
            m["is_group"]
        ]),
        json!([3, 2, "in both chats", "Trip", true]),
        "{n}"
    );
    assert!(rpc.quiet_for(300));
}
