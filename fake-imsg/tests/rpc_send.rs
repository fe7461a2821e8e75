//! `send`, `typing`, `read` over pipes (imsg-rpc-v1.md §4.8/§4.10): validation order and
//! words, target resolution, rows written into the world, attachments.

mod rpc_support;

use rpc_support::*;
use serde_json::{json, Value};

fn invalid(data: &str) -> Value {
    json!({"code": -32602, "message": "Invalid params", "data": data})
}

#[test]
fn send_validation_in_imsg_order() {
    let f = Fixture::new();
    let mut rpc = Rpc::v1(&f.db);
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"chat_id": 1, "text": "x", "chatId": 1}),
            "unknown send param: chatId",
        ),
        (
            json!({"text": 5, "service": "bad"}),
            "text must be a string",
        ),
        (json!({"chat_id": 1, "file": true}), "file must be a string"),
        (
            json!({"chat_id": 1, "text": "x", "attempt_id": "a"}),
            "attempt_id is only supported by send.tracked",
        ),
        (
            json!({"chat_id": 1, "text": "x", "formatting": [1]}),
            "formatting must be an array of objects",
        ),
        (
            json!({"service": "iMessage", "transport": "pigeon"}),
            "invalid service",
        ),
        (json!({"transport": "pigeon"}), "invalid transport"),
        (json!({"region": 1}), "region must be a string"),
        (
            json!({"allowSMSFallback": "yes"}),
            "allowSMSFallback must be a boolean",
        ),
        (json!({"replyTo": 3}), "replyTo must be a string"),
        (
            json!({}),
            "exactly one of chat_id, chat_identifier, or chat_guid is required",
        ),
        (
            json!({"to": ALICE, "chat_id": 1, "text": "x"}),
            "use to or exactly one chat selector; not both",
        ),
        (
            json!({"chat_id": 1, "chat_guid": "g", "text": "x"}),
            "exactly one of chat_id, chat_identifier, or chat_guid is required",
        ),
        (
            json!({"to": "", "text": "x"}),
            "to must be a non-empty string",
        ),
        (
            json!({"chat_id": 0, "text": "x"}),
            "chat_id must be a positive integer",
        ),
        (
            json!({"chat_identifier": "", "text": "x"}),
            "chat_identifier must be a non-empty string",
        ),
        (
            json!({"chat_guid": "", "text": "x"}),
            "chat_guid must be a non-empty string",
        ),
        (json!({"chat_id": 999}), "text or file is required"),
        (json!({"chat_id": 999, "text": "x"}), "unknown chat_id 999"),
        (
            json!({"chat_id": 1, "text": "x", "reply_to": "G"}),
            "reply_to requires bridge transport; AppleScript fallback cannot send threaded replies",
        ),
        (
            json!({"to": "+15559999999", "text": "x", "transport": "bridge"}),
            "bridge transport requires an existing chat target",
        ),
        (
            json!({"to": "Alice Smith", "text": "x"}),
            "Invalid chat target: Contacts access is unavailable, so \"Alice Smith\" cannot be resolved. Specify a phone number or email instead.",
        ),
    ];
    for (params, data) in cases {
        assert_eq!(rpc.err("send", params.clone()), invalid(data), "{params}");
    }
    assert!(f.world().sent(0).unwrap().is_empty(), "nothing was sent");
    // An explicit bridge send to a known chat: the bridge is not running (not started).
    assert_eq!(
        rpc.err(
            "send",
            json!({"chat_id": 1, "text": "x", "transport": "BRIDGE"})
        ),
        json!({"code": -32603, "message": "Delivery failed before dispatch",
               "data": {"retry_safe": true, "disposition": "not_started", "transport": "bridge_v2",
                        "operation": "send",
                        "detail": "The bridge is not started. Run imsg launch explicitly before using bridge methods."}})
    );
}

fn check_send_result(r: &Value, chat_guid: &str) -> (i64, String) {
    let id = r["id"].as_i64().expect("numeric id");
    let guid = r["guid"].as_str().expect("guid").to_string();
    assert_eq!(
        r,
        &json!({"ok": true, "transport": "applescript", "id": id, "guid": guid,
                "message_id": guid, "chat_guid": chat_guid, "service": "iMessage"})
    );
    (id, guid)
}

#[test]
fn send_targets_resolve_and_write_rows() {
    let f = Fixture::new();
    let mut rpc = Rpc::v1(&f.db);
    // Warm every read worker's view of chats.list before the sends change it.
    for _ in 0..8 {
        assert_eq!(
            rpc.ok("chats.list", json!({}))["chats"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }
    let dm = format!("iMessage;-;{ALICE}");
    let (id, guid) =
        check_send_result(&rpc.ok("send", json!({"chat_id": 1, "text": "by id"})), &dm);
    let w = f.world();
    let row = w.message(id).unwrap().unwrap();
    assert_eq!(
        (
            row.is_from_me,
            row.text.as_str(),
            row.chat_id,
            row.guid.as_str()
        ),
        (true, "by id", Some(1), guid.as_str())
    );
    // `to` finds the existing DM, after E.164 normalisation.
    let r = rpc.ok(
        "send",
        json!({"to": "(555) 123-4567", "text": "by to", "service": "imessage", "region": "US"}),
    );
    let (id, _) = check_send_result(&r, &dm);
    assert_eq!(w.message(id).unwrap().unwrap().chat_id, Some(1));
    let r = rpc.ok("send", json!({"chat_guid": dm, "text": "by guid"}));
    check_send_result(&r, &dm);
    let r = rpc.ok(
        "send",
        json!({"chat_identifier": ALICE, "text": "by identifier"}),
    );
    check_send_result(&r, &dm);
    // A group by id.
    let group = w.chat(2).unwrap().unwrap();
    let r = rpc.ok("send", json!({"chat_id": 2, "text": "to the group"}));
    check_send_result(&r, &group.guid);
    // A new handle: Messages creates the DM chat.
    let r = rpc.ok(
        "send",
        json!({"to": "new@example.com", "text": "first contact"}),
    );
    check_send_result(&r, "iMessage;-;new@example.com");
    let chats = rpc.ok("chats.list", json!({}));
    assert_eq!(chats["chats"][0]["identifier"], "new@example.com");
    assert_eq!(
        chats["chats"][0]["participants"],
        json!(["new@example.com"])
    );
    let texts: Vec<String> = w.sent(0).unwrap().into_iter().map(|m| m.text).collect();
    assert_eq!(
        texts,
        vec![
            "by id",
            "by to",
            "by guid",
            "by identifier",
            "to the group",
            "first contact"
        ]
    );
    // Unknown chat guid: AppleScript fails.
    let e = rpc.err(
        "send",
        json!({"chat_guid": "iMessage;+;chat000nope", "text": "x"}),
    );
    assert_eq!(e["code"], -32603);
    assert!(e["data"]
        .as_str()
        .unwrap()
        .starts_with("AppleScript failed:"));
}

/// Sends one at a time (which the reader runs itself) and the memoized `chats.list` between
/// them: every list sees the send before it.
#[test]
fn a_list_after_a_send_sees_it_and_the_file_is_current_at_eof() {
    let f = Fixture::new();
    let mut rpc = Rpc::v1(&f.db);
    let first = |rpc: &mut Rpc| {
        // Twice: the second is answered from the memo when nothing changed.
        let a = rpc.ok("chats.list", json!({}));
        let b = rpc.ok("chats.list", json!({}));
        assert_eq!(a, b);
        a["chats"][0]["id"].as_i64().unwrap()
    };
    assert_eq!(first(&mut rpc), 2);
    for (i, chat) in [1, 2, 1, 1, 2].into_iter().enumerate() {
        rpc.ok("send", json!({"chat_id": chat, "text": format!("n{i}")}));
        assert_eq!(first(&mut rpc), chat, "after send {i}");
    }
    let (code, _) = rpc.finish();
    assert_eq!(code, 0);
    // The WAL was checkpointed when the server closed its writer: a copy of the world file
    // alone has every row.
    let copy = f.path("copy.db");
    std::fs::copy(&f.db, &copy).unwrap();
    let texts: Vec<String> = fake_imsg::world::World::open(&copy)
        .unwrap()
        .sent(0)
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, ["n0", "n1", "n2", "n3", "n4"]);
}

#[test]
fn send_files_become_attachments() {
    let f = Fixture::new();
    let mut rpc = Rpc::v1(&f.db);
    let file = f.path("note.txt");
    std::fs::write(&file, b"attached bytes").unwrap();
    let r = rpc.ok(
        "send",
        json!({"chat_id": 1, "text": "see file", "file": file}),
    );
    assert_eq!(r["ok"], true);
    let sent = f.world().sent(0).unwrap();
    assert_eq!(sent.len(), 2, "text then file, two rows");
    assert_eq!(sent[0].text, "see file");
    assert_eq!(sent[0].id, r["id"].as_i64().unwrap());
    let att = &sent[1].attachments[0];
    assert_eq!(att.transfer_name, "note.txt");
    assert_eq!(att.total_bytes, 14);
    assert!(!att.missing());
    assert_ne!(
        att.original_path(),
        file.display().to_string(),
        "copied into the world"
    );
    let missing = f.path("absent.png");
    assert_eq!(
        rpc.err("send", json!({"chat_id": 1, "file": missing})),
        json!({"code": -32603, "message": "Delivery failed before dispatch",
               "data": {"retry_safe": true, "disposition": "not_started", "transport": "applescript",
                        "operation": "send",
                        "detail": format!("Attachment not found at {}", missing.display())}})
    );
}

#[test]
fn typing_and_read() {
    let f = Fixture::new();
    let mut rpc = Rpc::v1(&f.db);
    for (m, p) in [
        ("typing", json!({"to": ALICE})),
        ("typing", json!({"chat_id": 2, "typing": false})),
        ("typing", json!({"to": ALICE, "service": "SMS"})),
        ("read", json!({"chat_guid": "iMessage;-;+15551234567"})),
        ("read", json!({"chat_id": 1})),
    ] {
        assert_eq!(rpc.ok(m, p), json!({"ok": true}));
    }
    let cases: Vec<(&str, Value, &str)> = vec![
        ("typing", json!({"to": ALICE, "service": "fax"}), "fax"),
        (
            "typing",
            json!({"to": ALICE, "typing": "yes"}),
            "typing must be a boolean",
        ),
        (
            "typing",
            json!({}),
            "exactly one of chat_id, chat_identifier, or chat_guid is required",
        ),
        ("typing", json!({"chat_id": 999}), "unknown chat_id 999"),
        (
            "read",
            json!({"to": ALICE, "service": "sms"}),
            "unknown read param: service",
        ),
        (
            "read",
            json!({"to": ALICE, "chat_id": 1}),
            "use to or exactly one chat selector; not both",
        ),
        ("read", json!({"chat_id": 999}), "unknown chat_id 999"),
    ];
    for (m, p, data) in cases {
        assert_eq!(rpc.err(m, p.clone()), invalid(data), "{m} {p}");
    }
}

/// The answer to every file-only send while the database is up (imsg-rpc-v1.md §2, §4.8):
/// imsg looks for an outgoing row whose attachment has the path it staged, but Messages
/// stores its own copy elsewhere, so none is found and the outcome is unknown.
fn attachment_outcome_unknown() -> Value {
    json!({"code": -32001, "message": "Delivery outcome unknown",
           "data": {"retry_safe": false, "disposition": "may_have_completed",
                    "transport": "applescript", "operation": "send",
                    "detail": "Messages automation returned success, but no matching outgoing attachment row was observed within 8 seconds."}})
}

#[test]
fn file_only_send_is_an_unknown_outcome_but_still_sent() {
    let f = Fixture::new();
    let mut rpc = Rpc::v1(&f.db);
    let file = f.path("a.png");
    std::fs::write(&file, b"png").unwrap();
    let before = f.world().sent(0).unwrap().len();
    for (id, params) in [
        ("chat", json!({"chat_id": 1, "file": file})),
        (
            "guid",
            json!({"chat_guid": "iMessage;-;+15551234567", "file": file}),
        ),
        ("to", json!({"to": ALICE, "file": file})),
        ("new", json!({"to": "+15557654321", "file": file})),
    ] {
        let line = json!({"jsonrpc": "2.0", "id": id, "method": "send", "params": params});
        rpc.send_raw(line.to_string().as_bytes());
        let mut want = attachment_outcome_unknown();
        want = json!({"jsonrpc": "2.0", "id": id, "error": want});
        assert_eq!(rpc.response(&json!(id)), want, "{params}");
    }
    // Each one was sent all the same: an outgoing row carrying the attachment.
    let sent = f.world().sent(0).unwrap();
    assert_eq!(sent.len(), before + 4);
    for row in &sent[before..] {
        assert!(row.is_from_me);
        assert_eq!(row.text, "");
        assert_eq!(row.attachments.len(), 1, "{row:?}");
        assert_eq!(row.attachments[0].transfer_name, "a.png");
    }
    assert_eq!(sent[before].chat_id, Some(1));
    // Text and file together: verified by the text row, as before.
    let r = rpc.ok("send", json!({"chat_id": 1, "text": "see", "file": file}));
    let sent = f.world().sent(0).unwrap();
    let text_row = &sent[sent.len() - 2];
    assert_eq!(text_row.text, "see");
    assert_eq!(
        r,
        json!({"ok": true, "transport": "applescript", "id": text_row.id,
               "guid": text_row.guid, "message_id": text_row.guid,
               "chat_guid": "iMessage;-;+15551234567", "service": "iMessage"})
    );
}

/// With the database down imsg cannot verify anything, so a file-only send by a direct
/// target answers a plain success (imsg-rpc-v1.md §4.8 "DB down"), and one by chat_id -32002.
#[test]
fn file_only_send_with_the_database_down() {
    let f = Fixture::new();
    let file = f.path("a.png");
    std::fs::write(&file, b"png").unwrap();
    let mut rpc = f.rpc_with_faults("{database_unavailable: true}", &[]);
    assert_eq!(
        rpc.ok("send", json!({"to": ALICE, "file": file})),
        json!({"ok": true, "transport": "applescript"})
    );
    assert_eq!(
        rpc.err("send", json!({"chat_id": 1, "file": file}))["code"],
        -32002
    );
}
