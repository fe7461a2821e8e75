//! Protocol v1 over pipes: framing, params strictness, every method's success and error
//! paths, lanes and bounds, the EOF sequence. Expectations are literal JSON from
//! imsg-rpc-v1.md.

mod rpc_support;

use rpc_support::*;
use serde_json::{json, Value};

#[test]
fn framing_errors_in_parser_order() {
    let f = Fixture::new();
    let mut rpc = Rpc::v1(&f.db);
    rpc.send_raw(b"\xff\xfe{}");
    assert_eq!(
        rpc.next(),
        json!({"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error","data":"invalid utf8"}})
    );
    rpc.send_raw(b"{not json");
    let e = rpc.next();
    assert_eq!(e["id"], Value::Null);
    assert_eq!(e["error"]["code"], -32700);
    assert_eq!(e["error"]["message"], "Parse error");
    assert!(e["error"]["data"].is_string());
    rpc.send_raw(b"42");
    assert_eq!(rpc.next()["error"]["code"], -32700);
    rpc.send_raw(br#"[{"jsonrpc":"2.0","id":1,"method":"status"}]"#);
    assert_eq!(
        rpc.next(),
        error(
            Value::Null,
            -32600,
            "Invalid Request",
            json!("request must be an object")
        )
    );
    rpc.send_raw(br#"{"jsonrpc":"2.0","id":true,"method":"status"}"#);
    assert_eq!(
        rpc.next(),
        error(
            Value::Null,
            -32600,
            "Invalid Request",
            json!("id must be a string, number, or null")
        )
    );
    rpc.send_raw(br#"{"id":7,"method":"status"}"#);
    assert_eq!(
        rpc.next(),
        error(
            json!(7),
            -32600,
            "Invalid Request",
            json!("jsonrpc must be exactly 2.0")
        )
    );
    rpc.send_raw(br#"{"jsonrpc":"2.0","method":"status"}"#.as_ref());
    // id-less, valid: a notification, silent. Framing errors of id-less lines are answered:
    rpc.send_raw(br#"{"jsonrpc":"2.0","method":""}"#);
    assert_eq!(
        rpc.next(),
        error(
            Value::Null,
            -32600,
            "Invalid Request",
            json!("method is required")
        )
    );
    rpc.send_raw(br#"{"jsonrpc":"2.0","id":"p","method":"status","params":[1]}"#);
    assert_eq!(
        rpc.next(),
        error(
            json!("p"),
            -32602,
            "Invalid params",
            json!("params must be an object when present")
        )
    );
    // Bad params on a notification: silent. Blank lines: silent.
    rpc.send_raw(br#"{"jsonrpc":"2.0","method":"status","params":null}"#);
    rpc.send_raw(b"   ");
    rpc.send_raw(br#"{"jsonrpc":"2.0","method":"nope"}"#);
    assert!(rpc.quiet_for(300));
    // id null is a request; float ids are accepted and echoed.
    let r = rpc.call(Value::Null, "watch.unsubscribe", json!({"subscription": 5}));
    assert_eq!(r, json!({"jsonrpc":"2.0","id":null,"result":{"ok":true}}));
    let r = rpc.call(json!(1.5), "nope.method", json!({}));
    assert_eq!(
        r,
        error(json!(1.5), -32601, "Method not found", json!("nope.method"))
    );
    let (code, rest) = rpc.finish();
    assert_eq!(code, 0);
    assert!(rest.is_empty(), "{rest:?}");
}

#[test]
fn params_strictness_and_aliases() {
    let f = Fixture::new();
    let mut rpc = Rpc::v1(&f.db);
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "messages.history",
            json!({"chat_id":1,"extra":1}),
            "unknown messages.history param: extra",
        ),
        (
            "watch.subscribe",
            json!({"chatId":1}),
            "unknown watch.subscribe param: chatId",
        ),
        (
            "chats.list",
            json!({"unread_only":true,"unreadOnly":true}),
            "use only one of unread_only, unreadOnly",
        ),
        (
            "send",
            json!({"to":"+1","text":"x","reply_to":"a","message_guid":"b"}),
            "use only one of reply_to, replyTo, reply_to_guid, message_guid",
        ),
        (
            "chats.list",
            json!({"limit":null}),
            "limit must not be null",
        ),
        (
            "chats.list",
            json!({"limit":"5"}),
            "limit must be an integer",
        ),
        (
            "chats.list",
            json!({"limit":5.0}),
            "limit must be an integer",
        ),
        (
            "chats.list",
            json!({"limit":true}),
            "limit must be an integer",
        ),
        (
            "chats.list",
            json!({"limit":0}),
            "limit must be a positive integer",
        ),
        (
            "chats.list",
            json!({"unreadOnly":1}),
            "unreadOnly must be a boolean",
        ),
        (
            "messages.history",
            json!({"chat_id":1,"participants":["a",1]}),
            "participants must be an array of strings",
        ),
        ("messages.history", json!({}), "chat_id is required"),
        (
            "messages.history",
            json!({"chat_id":0}),
            "chat_id must be a positive integer",
        ),
        (
            "messages.history",
            json!({"chat_id":1,"start":"yesterday"}),
            "Invalid ISO8601 date: yesterday",
        ),
        (
            "messages.history",
            json!({"chat_id":1,"limit":-1}),
            "limit must be a positive integer",
        ),
        ("status", json!({"x":1}), "unknown status param: x"),
        (
            "initialize",
            json!({"protocol_version":2}),
            "unsupported protocol_version 2; supported version is 1",
        ),
        (
            "initialize",
            json!({"protocol_version":"1"}),
            "protocol_version must be an integer",
        ),
        (
            "initialize",
            json!({"client":"x"}),
            "unknown initialize param: client",
        ),
        (
            "messages.after",
            json!({}),
            "since_rowid must be an integer",
        ),
        (
            "messages.after",
            json!({"since_rowid":-1}),
            "since_rowid must be a non-negative integer",
        ),
        (
            "messages.after",
            json!({"since_rowid":0,"limit":501}),
            "limit must be an integer between 1 and 500",
        ),
        (
            "messages.after",
            json!({"since_rowid":0,"limit":0}),
            "limit must be an integer between 1 and 500",
        ),
        (
            "messages.after",
            json!({"since_rowid":0,"chat_id":-3}),
            "chat_id must be a positive integer",
        ),
        (
            "watch.subscribe",
            json!({"debounce_ms":-1}),
            "debounce_ms must be a non-negative integer",
        ),
        (
            "watch.subscribe",
            json!({"debounceMs":-1}),
            "debounceMs must be a non-negative integer",
        ),
        (
            "watch.subscribe",
            json!({"buffer_limit":0}),
            "buffer_limit must be an integer between 1 and 4096",
        ),
        (
            "watch.subscribe",
            json!({"bufferLimit":4097}),
            "bufferLimit must be an integer between 1 and 4096",
        ),
        (
            "watch.subscribe",
            json!({"end":"nope"}),
            "Invalid ISO8601 date: nope",
        ),
        ("watch.unsubscribe", json!({}), "subscription is required"),
        (
            "watch.unsubscribe",
            json!({"subscription":0}),
            "subscription must be a positive integer",
        ),
        (
            "message.send_status",
            json!({"guid":"  "}),
            "guid is required",
        ),
        ("message.send_status", json!({}), "guid is required"),
    ];
    for (method, params, data) in cases {
        let e = rpc.err(method, params.clone());
        assert_eq!(
            e,
            json!({"code":-32602,"message":"Invalid params","data":data}),
            "{method} {params}"
        );
    }
    // Empty params and omitted params are equivalent.
    rpc.send(&json!({"jsonrpc":"2.0","id":"np","method":"chats.list"}));
    let a = rpc.response(&json!("np"));
    let b = rpc.ok("chats.list", json!({}));
    assert_eq!(a["result"], b);
}

#[test]
fn status_and_initialize_with_database() {
    let f = Fixture::new();
    let mut rpc = Rpc::v1(&f.db);
    let s = rpc.ok("initialize", json!({"protocol_version": 1}));
    let path = f.db.display().to_string();
    let mut expected = json!({
        "version": "0.14.0",
        "protocol_version": 1,
        "database": {"path": path, "ready": true,
                     "features": {"unread_state": true, "scheduled_messages": true, "reactions": true,
                                  "reply_context": true, "routing_metadata": true, "balloon_payloads": true}},
        "bridge": {"ready": false,
                   "error": "The bridge is not started. Run imsg launch explicitly before using bridge methods."},
        "contacts": {"available": false},
        "methods": ["initialize","status","watch.unsubscribe","chats.list","messages.stats",
                    "messages.history","messages.search","messages.after","messages.scheduled",
                    "watch.subscribe","message.send_status","send","typing","read"],
        "supported_methods": ["initialize","status","watch.unsubscribe","chats.list","messages.stats",
            "messages.history","messages.search","messages.after","messages.scheduled","watch.subscribe",
            "bridge.events.subscribe","message.send_status","send","chats.create","chats.delete",
            "chats.markUnread","send.rich","send.attachment","send.multipart","send.sticker","poll.send",
            "messages.poll.send","poll.vote","messages.poll.vote","poll.unvote","polls.unvote",
            "messages.poll.unvote","tapback","typing","read","message.edit","message.unsend",
            "message.delete","message.notifyAnyways","group.rename","group.setIcon",
            "group.addParticipant","group.removeParticipant","group.leave",
            "contacts.shouldShareContact","contacts.shareContactCard","handles.check"]
    });
    assert_eq!(s, expected);
    assert_eq!(rpc.ok("status", json!({})), expected);
    // The main level adds chats.get / send.tracked and capabilities.
    let mut main = Rpc::start(&f.db, &["--level", "v1-main"]);
    let s = main.ok("status", json!({}));
    expected["version"] = json!("0.15.10");
    assert_eq!(s["version"], "0.15.10");
    assert_eq!(s["methods"][4], "chats.get");
    assert!(s["supported_methods"]
        .as_array()
        .unwrap()
        .contains(&json!("send.tracked")));
    assert_eq!(s["capabilities"]["engine"]["version"], "0.15.10");
    assert_eq!(s["capabilities"]["features"], json!({}));
}

#[test]
fn degraded_start_then_database_appears() {
    let f = Fixture::empty();
    let mut rpc = Rpc::v1(&f.db);
    let path = f.db.display().to_string();
    let missing = "The configured Messages database does not exist. Create or copy chat.db at this path, then retry.";
    let s = rpc.ok("status", json!({}));
    assert_eq!(
        s["database"],
        json!({"path": path, "ready": false, "error": missing})
    );
    assert_eq!(
        s["methods"],
        json!([
            "initialize",
            "status",
            "watch.unsubscribe",
            "send",
            "typing",
            "read"
        ])
    );
    let down = json!({"code":-32002,"message":"Database unavailable",
                      "data":{"path": path, "detail": missing, "retryable": true}});
    assert_eq!(rpc.err("chats.list", json!({})), down);
    assert_eq!(rpc.err("messages.history", json!({"chat_id": 1})), down);
    assert_eq!(rpc.err("messages.after", json!({"since_rowid": 0})), down);
    assert_eq!(rpc.err("watch.subscribe", json!({})), down);
    assert_eq!(rpc.err("send", json!({"chat_id": 1, "text": "x"})), down);
    assert_eq!(rpc.err("typing", json!({"chat_id": 1})), down);
    // Validation errors come first.
    assert_eq!(
        rpc.err("messages.history", json!({}))["data"],
        "chat_id is required"
    );
    // Direct sends, typing and read work without the database.
    assert_eq!(
        rpc.ok("send", json!({"to": ALICE, "text": "hi"})),
        json!({"ok": true, "transport": "applescript"})
    );
    assert_eq!(rpc.ok("typing", json!({"to": ALICE})), json!({"ok": true}));
    assert_eq!(rpc.ok("read", json!({"to": ALICE})), json!({"ok": true}));
    // The file appears: new requests use it.
    let w = fake_imsg::world::World::create(&f.db).unwrap();
    inject(&w, None, Some((false, vec![], None)), ALICE, "late");
    let s = rpc.ok("status", json!({}));
    assert_eq!(s["database"]["ready"], true);
    assert_eq!(rpc.ok("chats.list", json!({}))["chats"][0]["id"], 1);
    // An unreadable file gets the other detail text.
    let g = Fixture::empty();
    std::fs::write(&g.db, b"this is not sqlite at all, just text").unwrap();
    let mut rpc = Rpc::v1(&g.db);
    assert_eq!(
        rpc.err("chats.list", json!({}))["data"]["detail"],
        "The configured Messages database could not be opened read-only. Verify the path and grant Full Disk Access to the supervising process, then retry."
    );
}

#[test]
fn chats_list_and_get() {
    let f = Fixture::new();
    let mut rpc = Rpc::v1(&f.db);
    let r = rpc.ok("chats.list", json!({"limit": 10}));
    let chats = r["chats"].as_array().unwrap();
    assert_eq!(chats.len(), 2);
    // Newest activity first: the group was written last.
    let mut group = chats[0].clone();
    let mut dm = chats[1].clone();
    assert_iso(&dm["last_message_at"]);
    dm["last_message_at"] = json!("<date>");
    assert_eq!(
        dm,
        json!({"id": 1, "identifier": ALICE, "guid": format!("iMessage;-;{ALICE}"), "name": ALICE,
               "service": "iMessage", "last_message_at": "<date>", "participants": [ALICE],
               "is_group": false, "unread_count": 1})
    );
    let gid = group["identifier"].as_str().unwrap().to_string();
    assert_eq!(group["guid"], json!(format!("iMessage;+;{gid}")));
    group["last_message_at"] = json!("<date>");
    group["identifier"] = json!("<id>");
    group["guid"] = json!("<guid>");
    assert_eq!(
        group,
        json!({"id": 2, "identifier": "<id>", "guid": "<guid>", "name": "Trip", "display_name": "Trip",
               "service": "iMessage", "last_message_at": "<date>", "participants": [BOB, CAROL],
               "is_group": true, "unread_count": 1})
    );
    assert_eq!(
        rpc.ok("chats.list", json!({"limit": 1}))["chats"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        rpc.ok("chats.list", json!({"unreadOnly": true}))["chats"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // chats.get only exists on the main level.
    assert_eq!(
        rpc.err("chats.get", json!({"chat_id": 1})),
        json!({"code": -32601, "message": "Method not found", "data": "chats.get"})
    );
    let mut main = Rpc::start(&f.db, &["--level", "v1-main"]);
    assert_eq!(
        main.ok("chats.get", json!({"chat_id": 1})),
        json!({"id": 1, "identifier": ALICE, "guid": format!("iMessage;-;{ALICE}"), "name": ALICE,
               "service": "iMessage", "is_group": false, "participants": [ALICE]})
    );
    assert_eq!(
        main.err("chats.get", json!({}))["data"],
        "chat_id is required"
    );
    assert_eq!(
        main.err("chats.get", json!({"chat_id": -1}))["data"],
        "chat_id must be a positive integer"
    );
    assert_eq!(
        main.err("chats.get", json!({"chat_id": 99})),
        json!({"code": -32602, "message": "Invalid params", "data": "Chat not found: 99"})
    );
    // main tolerates a negative messages.after cursor as 0.
    let r = main.ok("messages.after", json!({"since_rowid": -5}));
    assert_eq!(r["messages"].as_array().unwrap().len(), 2);
}

#[test]
fn history_shapes_and_filters() {
    let f = Fixture::new();
    let w = f.world();
    say(&w, 1, ALICE, "second");
    let mut rpc = Rpc::v1(&f.db);
    let r = rpc.ok("messages.history", json!({"chat_id": 1}));
    let msgs = r["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2);
    let mut newest = msgs[0].clone();
    scrub_message(&mut newest);
    assert!(
        newest.get("destination_caller_id").is_none()
            || newest["destination_caller_id"].is_string()
    );
    newest
        .as_object_mut()
        .unwrap()
        .remove("destination_caller_id");
    assert_eq!(
        newest,
        json!({"id": "<id>", "chat_id": 1, "guid": "<guid>", "sender": ALICE, "is_from_me": false,
               "text": "second", "created_at": "<date>", "attachments": [], "reactions": [],
               "chat_identifier": ALICE, "chat_guid": format!("iMessage;-;{ALICE}"), "chat_name": ALICE,
               "participants": [ALICE], "is_group": false, "is_read": false})
    );
    assert_eq!(msgs[1]["text"], "hello");
    let r = rpc.ok("messages.history", json!({"chat_id": 1, "limit": 1}));
    assert_eq!(r["messages"].as_array().unwrap().len(), 1);
    let r = rpc.ok(
        "messages.history",
        json!({"chat_id": 2, "participants": [CAROL]}),
    );
    assert_eq!(r["messages"], json!([]));
    let r = rpc.ok(
        "messages.history",
        json!({"chat_id": 1, "start": "2000-01-01T00:00:00Z", "end": "2001-01-01T00:00:00.000Z"}),
    );
    assert_eq!(r["messages"], json!([]));
    assert_eq!(
        rpc.ok("messages.history", json!({"chat_id": 99})),
        json!({"messages": []})
    );
}

#[test]
fn messages_after_pages() {
    let f = Fixture::new();
    let w = f.world();
    for i in 0..5 {
        say(
            &w,
            1 + (i % 2),
            if i % 2 == 0 { ALICE } else { BOB },
            &format!("m{i}"),
        );
    }
    let mut rpc = Rpc::v1(&f.db);
    let r = rpc.ok("messages.after", json!({"since_rowid": 0, "limit": 3}));
    let ids: Vec<i64> = r["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![1, 2, 3]);
    assert_eq!(r["next_rowid"], 3);
    assert_eq!(r["has_more"], true);
    let r = rpc.ok("messages.after", json!({"since_rowid": 3, "limit": 500}));
    let ids: Vec<i64> = r["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![4, 5, 6, 7]);
    assert_eq!(
        (r["next_rowid"].clone(), r["has_more"].clone()),
        (json!(7), json!(false))
    );
    let r = rpc.ok(
        "messages.after",
        json!({"since_rowid": 0, "chat_id": 2, "limit": 2}),
    );
    let ids: Vec<i64> = r["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![2, 4]);
    assert!(r["messages"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["chat_id"] == 2));
    assert_eq!(r["has_more"], true);
    assert_eq!(
        rpc.ok("messages.after", json!({"since_rowid": 999})),
        json!({"messages": [], "next_rowid": 999, "has_more": false})
    );
}

#[test]
fn send_status_and_bridge_methods() {
    let f = Fixture::new();
    let mut rpc = Rpc::v1(&f.db);
    let sent = rpc.ok("send", json!({"chat_id": 1, "text": "tracked?"}));
    let guid = sent["guid"].as_str().unwrap().to_string();
    let mut st = rpc.ok("message.send_status", json!({"guid": format!(" {guid} ")}));
    assert_iso(&st["checked_at"]);
    assert_eq!(st["guid"], json!(guid));
    assert_eq!(st["ok"], true);
    assert!(
        ["pending", "sent", "delivered", "failed"].contains(&st["send_state"].as_str().unwrap())
    );
    assert!(st["status_fields"].is_object());
    st["checked_at"] = json!("<date>");
    let mut unknown = rpc.ok("message.send_status", json!({"guid": "NOPE"}));
    unknown["checked_at"] = json!("<date>");
    assert_eq!(
        unknown,
        json!({"ok": true, "guid": "NOPE", "send_state": "pending", "service": null,
               "checked_at": "<date>", "status_fields": null})
    );
    let not_started = |op: &str| {
        json!({"code": -32603, "message": "Delivery failed before dispatch",
               "data": {"retry_safe": true, "disposition": "not_started", "transport": "bridge_v2",
                        "operation": op,
                        "detail": "The bridge is not started. Run imsg launch explicitly before using bridge methods."}})
    };
    for m in [
        "tapback",
        "send.rich",
        "message.edit",
        "group.rename",
        "chats.create",
        "poll.send",
    ] {
        assert_eq!(rpc.err(m, json!({"chat_id": 1})), not_started(m), "{m}");
    }
    let bridge_read = json!({"code": -32003, "message": "Bridge unavailable",
        "data": {"detail": "The bridge is not started. Run imsg launch explicitly before using bridge methods.",
                 "retryable": true}});
    assert_eq!(rpc.err("handles.check", json!({})), bridge_read);
    assert_eq!(
        rpc.err("contacts.shouldShareContact", json!({})),
        bridge_read
    );
    let e = rpc.err("bridge.events.subscribe", json!({}));
    assert_eq!(
        (
            e["code"].clone(),
            e["message"].clone(),
            e["data"]["retryable"].clone()
        ),
        (
            json!(-32003),
            json!("Bridge events unavailable"),
            json!(true)
        )
    );
    for m in ["status.get", "typing.start", "send.tracked", "ping"] {
        assert_eq!(
            rpc.err(m, json!({})),
            json!({"code": -32601, "message": "Method not found", "data": m})
        );
    }
    let r = rpc.ok("messages.search", json!({"query": "TRACKED"}));
    assert_eq!(r["messages"].as_array().unwrap().len(), 1);
    assert_eq!(
        rpc.err("messages.search", json!({"query": ""}))["data"],
        "query is required"
    );
}

#[test]
fn notifications_run_silently() {
    let f = Fixture::new();
    let mut rpc = Rpc::v1(&f.db);
    rpc.send(
        &json!({"jsonrpc": "2.0", "method": "send", "params": {"chat_id": 1, "text": "quiet"}}),
    );
    rpc.send(&json!({"jsonrpc": "2.0", "method": "send", "params": {"chat_id": 999, "text": "x"}}));
    rpc.send(&json!({"jsonrpc": "2.0", "method": "no.such"}));
    // The mutation lane is FIFO: once this answers, the notification send has run.
    let r = rpc.ok("read", json!({"chat_id": 1}));
    assert_eq!(r, json!({"ok": true}));
    assert!(rpc.quiet_for(200));
    let sent = f.world().sent(0).unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].text, "quiet");
}

#[test]
fn outstanding_bound_and_eof_drain() {
    let f = Fixture::new();
    let mut rpc = f.rpc_with_faults("{delay_ms: {method: \"send\", ms: 100}}", &[]);
    // 128 sends outstanding (1 running + 127 queued), then the 129th identified is busy.
    let mut batch = String::new();
    for i in 0..128 {
        batch.push_str(
            &json!({"jsonrpc":"2.0","id":i,"method":"send","params":{"chat_id":1,"text":format!("n{i}")}})
                .to_string(),
        );
        batch.push('\n');
    }
    batch.push_str(r#"{"jsonrpc":"2.0","id":"busy","method":"chats.list"}"#);
    rpc.send_raw(batch.as_bytes());
    let busy = rpc.response(&json!("busy"));
    assert_eq!(
        busy,
        error(
            json!("busy"),
            -32000,
            "Server busy",
            json!("outstanding request limit exceeded")
        )
    );
    // Control lane is independent of the mutation lane... but bounded by the same counter;
    // close stdin now: every accepted send still drains, in FIFO order, and the exit is 0.
    let (code, rest) = rpc.finish();
    assert_eq!(code, 0);
    let ids: Vec<i64> = rest.iter().filter_map(|v| v["id"].as_i64()).collect();
    // The first send may have answered before "busy" and been queued in pending.
    assert!(ids.len() >= 127, "{}", ids.len());
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "mutations answer in input order"
    );
    assert_eq!(f.world().sent(0).unwrap().len(), 128);
}

#[test]
fn lanes_unsubscribe_not_blocked_by_slow_send() {
    let f = Fixture::new();
    let mut rpc = f.rpc_with_faults("{delay_ms: {method: \"send\", ms: 3000}}", &[]);
    rpc.send(
        &json!({"jsonrpc":"2.0","id":"slow","method":"send","params":{"chat_id":1,"text":"s"}}),
    );
    let sub = rpc.ok("watch.subscribe", json!({}));
    let r = rpc.ok(
        "watch.unsubscribe",
        json!({"subscription": sub["subscription"]}),
    );
    assert_eq!(r, json!({"ok": true}));
    let c = rpc.ok("chats.list", json!({}));
    assert_eq!(c["chats"].as_array().unwrap().len(), 2);
    // Only now does the slow send answer.
    assert!(!rpc.has_response(&json!("slow")));
    let s = rpc.response(&json!("slow"));
    assert_eq!(s["result"]["ok"], true);
}

#[test]
fn eof_answers_a_queued_subscribe_with_shutting_down() {
    let f = Fixture::new();
    let mut rpc = f.rpc_with_faults("{delay_ms: {method: 'initialize', ms: 500}}", &[]);
    rpc.send(&json!({"jsonrpc":"2.0","id":"init","method":"initialize"}));
    rpc.send(&json!({"jsonrpc":"2.0","id":"sub","method":"watch.subscribe","params":{}}));
    rpc.send(
        &json!({"jsonrpc":"2.0","id":"s","method":"send","params":{"chat_id":1,"text":"drained"}}),
    );
    let (code, rest) = rpc.finish();
    assert_eq!(code, 0);
    let by_id = |id: &str| rest.iter().find(|v| v["id"] == id).cloned().unwrap();
    assert_eq!(by_id("init")["result"]["protocol_version"], 1);
    assert_eq!(
        by_id("sub"),
        error(
            json!("sub"),
            -32000,
            "Server busy",
            json!("server is shutting down")
        )
    );
    assert_eq!(by_id("s")["result"]["ok"], true);
    assert_eq!(rest.len(), 3);
}

#[test]
fn replaced_database_rotates_new_requests() {
    let f = Fixture::new();
    let mut rpc = Rpc::v1(&f.db);
    for _ in 0..6 {
        assert_eq!(
            rpc.ok("chats.list", json!({}))["chats"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }
    let other = f.path("other.db");
    {
        let w = fake_imsg::world::World::create(&other).unwrap();
        inject(
            &w,
            None,
            Some((false, vec![], None)),
            "+15557770000",
            "other world",
        );
    }
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", f.db.display()));
    }
    std::fs::rename(&other, &f.db).unwrap();
    let chats = rpc.ok("chats.list", json!({}));
    assert_eq!(chats["chats"].as_array().unwrap().len(), 1);
    assert_eq!(chats["chats"][0]["identifier"], "+15557770000");
    std::fs::remove_file(&f.db).unwrap();
    assert_eq!(rpc.err("chats.list", json!({}))["code"], -32002);
}

/// imsg-rpc-v1.md §5.2: `unread_count` is "omitted on schemas without read state" (and
/// §4.1: `unread_only` is then refused; §3: `features.unread_state` false).
#[test]
fn unread_count_is_omitted_without_read_state() {
    let f = Fixture::new();
    {
        let mut rpc = Rpc::v1(&f.db);
        let chats = rpc.ok("chats.list", json!({}));
        assert!(chats["chats"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["unread_count"].is_i64()));
    }
    let conn = rusqlite::Connection::open(&f.db).unwrap();
    let indexes: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND sql LIKE '%is_read%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    for i in indexes {
        conn.execute(&format!("DROP INDEX {i}"), []).unwrap();
    }
    conn.execute("ALTER TABLE message DROP COLUMN is_read", [])
        .unwrap();
    drop(conn);
    let mut rpc = Rpc::v1(&f.db);
    assert_eq!(
        rpc.ok("status", json!({}))["database"]["features"]["unread_state"],
        false
    );
    let chats = rpc.ok("chats.list", json!({}));
    let chats = chats["chats"].as_array().unwrap();
    assert_eq!(chats.len(), 2);
    for c in chats {
        assert!(c.get("unread_count").is_none(), "{c}");
    }
    assert_eq!(
        rpc.err("chats.list", json!({"unread_only": true})),
        json!({"code": -32602, "message": "Invalid params",
               "data": "unread_only is unavailable because this Messages database has no read-state column"})
    );
}

/// The §4.4 vectors, literally: 502 equal-timestamp rows; interleaved chats (odd rows chat 1,
/// even rows chat 2); `since_rowid` 999 on a small database.
#[test]
fn messages_after_spec_vectors() {
    fn page(r: &Value) -> (Vec<i64>, Value, Value) {
        let ids = r["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_i64().unwrap())
            .collect();
        (ids, r["next_rowid"].clone(), r["has_more"].clone())
    }
    let f = Fixture::empty();
    let w = fake_imsg::world::World::create(&f.db).unwrap();
    let at = fake_imsg::world::dates::parse_iso8601("2026-01-15T18:00:00Z");
    let mut spec = fake_imsg::world::InjectSpec {
        new_chat: Some(fake_imsg::world::NewChat {
            group: false,
            display_name: None,
            participants: vec![ALICE.into()],
            service: "iMessage".into(),
        }),
        from: ALICE.into(),
        text: "same instant".into(),
        date: at,
        ..Default::default()
    };
    let first = w.inject(&spec).unwrap();
    spec.new_chat = None;
    spec.chat_id = first.chat_id;
    for _ in 1..502 {
        w.inject(&spec).unwrap();
    }
    let mut rpc = Rpc::v1(&f.db);
    let r = rpc.ok("messages.after", json!({"since_rowid": 0, "limit": 500}));
    assert_eq!(page(&r), ((1..=500).collect(), json!(500), json!(true)));
    let r = rpc.ok("messages.after", json!({"since_rowid": 500, "limit": 500}));
    assert_eq!(page(&r), (vec![501, 502], json!(502), json!(false)));

    let f = Fixture::empty();
    let w = fake_imsg::world::World::create(&f.db).unwrap();
    inject(
        &w,
        None,
        Some((false, vec![ALICE.into()], None)),
        ALICE,
        "r1",
    );
    inject(&w, None, Some((false, vec![BOB.into()], None)), BOB, "r2");
    for i in 3..=6 {
        if i % 2 == 1 {
            say(&w, 1, ALICE, &format!("r{i}"));
        } else {
            say(&w, 2, BOB, &format!("r{i}"));
        }
    }
    let mut rpc = Rpc::v1(&f.db);
    let r = rpc.ok(
        "messages.after",
        json!({"since_rowid": 0, "chat_id": 2, "limit": 2}),
    );
    assert_eq!(page(&r), (vec![2, 4], json!(4), json!(true)));
    let r = rpc.ok(
        "messages.after",
        json!({"since_rowid": 4, "chat_id": 2, "limit": 2}),
    );
    assert_eq!(page(&r), (vec![6], json!(6), json!(false)));
    assert_eq!(
        rpc.ok("messages.after", json!({"since_rowid": 999})),
        json!({"messages": [], "next_rowid": 999, "has_more": false})
    );
}
