//! Watch semantics over pipes (imsg-rpc-v1.md §4.5-4.7): tail, resume, replay, debounce,
//! filters, reactions, attachments, unjoined rows, overflow, unsubscribe ordering, the
//! subscription cap, and rows written by another process or by `send`.

mod rpc_support;

use fake_imsg::world::InjectSpec;
use rpc_support::*;
use serde_json::{json, Value};

fn sub_id(r: &Value) -> i64 {
    r["subscription"].as_i64().unwrap()
}

fn msg_of(n: &Value) -> Value {
    assert_eq!(n["method"], "message", "{n}");
    n["params"]["message"].clone()
}

#[test]
fn tail_emits_only_new_rows_with_the_v1_shape() {
    let f = Fixture::new();
    let mut rpc = Rpc::v1(&f.db);
    let r = rpc.ok("watch.subscribe", json!({"debounce_ms": 0}));
    assert_eq!(r, json!({"subscription": 1, "buffer_limit": 256}));
    assert!(rpc.quiet_for(200), "nothing old replays");
    let w = f.world();
    say(&w, 1, ALICE, "new one");
    let n = rpc.notification();
    assert_eq!(n["jsonrpc"], "2.0");
    assert!(n.get("id").is_none());
    assert_eq!(n["params"]["subscription"], 1);
    let mut m = msg_of(&n);
    scrub_message(&mut m);
    m.as_object_mut().unwrap().remove("destination_caller_id");
    assert_eq!(
        m,
        json!({"id": "<id>", "chat_id": 1, "guid": "<guid>", "sender": ALICE, "is_from_me": false,
               "text": "new one", "created_at": "<date>", "attachments": [], "reactions": [],
               "chat_identifier": ALICE, "chat_guid": format!("iMessage;-;{ALICE}"),
               "chat_name": ALICE, "participants": [ALICE], "is_group": false, "is_read": false})
    );
    assert!(rpc.quiet_for(100));
}

#[test]
fn resume_and_replay_cursors() {
    let f = Fixture::new();
    let w = f.world();
    say(&w, 1, ALICE, "third");
    let mut rpc = Rpc::v1(&f.db);
    let a = sub_id(&rpc.ok(
        "watch.subscribe",
        json!({"since_rowid": 1, "debounce_ms": 0}),
    ));
    let ids: Vec<i64> = (0..2)
        .map(|_| msg_of(&rpc.notification())["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![2, 3]);
    rpc.ok("watch.unsubscribe", json!({"subscription": a}));
    let b = sub_id(&rpc.ok(
        "watch.subscribe",
        json!({"since_rowid": -1, "debounce_ms": 0}),
    ));
    assert_eq!(b, a + 1, "ids increase and are never reused");
    let got: Vec<(i64, i64)> = (0..3)
        .map(|_| {
            let n = rpc.notification();
            (
                n["params"]["subscription"].as_i64().unwrap(),
                msg_of(&n)["id"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, vec![(b, 1), (b, 2), (b, 3)]);
    // explicit 0 = tail
    let c = sub_id(&rpc.ok(
        "watch.subscribe",
        json!({"since_rowid": 0, "debounce_ms": 0}),
    ));
    rpc.ok("watch.unsubscribe", json!({"subscription": b}));
    assert!(rpc.quiet_for(200));
    say(&w, 2, BOB, "fresh");
    let n = rpc.notification();
    assert_eq!(n["params"]["subscription"], c);
    assert_eq!(msg_of(&n)["text"], "fresh");
}

#[test]
fn debounce_coalesces_but_delivers_everything_in_order() {
    let f = Fixture::new();
    let mut rpc = Rpc::v1(&f.db);
    rpc.ok("watch.subscribe", json!({"debounceMs": 200}));
    let w = f.world();
    for i in 0..5 {
        say(&w, 1, ALICE, &format!("burst {i}"));
    }
    let texts: Vec<Value> = (0..5)
        .map(|_| msg_of(&rpc.notification())["text"].clone())
        .collect();
    assert_eq!(
        texts,
        (0..5)
            .map(|i| json!(format!("burst {i}")))
            .collect::<Vec<_>>()
    );
}

#[test]
fn filters_reactions_attachments_and_own_sends() {
    let f = Fixture::new();
    let mut rpc = Rpc::v1(&f.db);
    let only_group = sub_id(&rpc.ok("watch.subscribe", json!({"chat_id": 2, "debounce_ms": 0})));
    let only_carol = sub_id(&rpc.ok(
        "watch.subscribe",
        json!({"participants": [CAROL], "debounce_ms": 0}),
    ));
    let future = sub_id(&rpc.ok(
        "watch.subscribe",
        json!({"start": "2200-01-01T00:00:00Z", "debounce_ms": 0}),
    ));
    let rich = sub_id(&rpc.ok(
        "watch.subscribe",
        json!({"include_reactions": true, "attachments": true, "debounce_ms": 0}),
    ));
    let w = f.world();
    let file = f.path("photo.jpg");
    std::fs::write(&file, b"\xff\xd8\xff fake jpeg").unwrap();
    let target = say(&w, 1, ALICE, "to react to");
    w.inject(&InjectSpec {
        chat_id: Some(1),
        from: ALICE.into(),
        text: String::new(),
        attachments: vec![file.clone()],
        ..Default::default()
    })
    .unwrap();
    w.inject(&InjectSpec {
        chat_id: Some(1),
        from: ALICE.into(),
        text: String::new(),
        reaction: Some(("love".into(), target.guid.clone())),
        ..Default::default()
    })
    .unwrap();
    say(&w, 2, CAROL, "carol in group");
    let sent = rpc.ok("send", json!({"chat_id": 2, "text": "from me"}));
    // rich sees all five rows, in order, with the reaction extension and attachments.
    let mut rich_msgs = Vec::new();
    let mut others: Vec<(i64, String)> = Vec::new();
    while rich_msgs.len() < 5 || others.len() < 3 {
        let n = rpc.notification();
        let s = n["params"]["subscription"].as_i64().unwrap();
        let m = msg_of(&n);
        if s == rich {
            rich_msgs.push(m);
        } else {
            others.push((s, m["text"].as_str().unwrap().to_string()));
        }
    }
    let texts: Vec<&str> = rich_msgs
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts[0], "to react to");
    assert_eq!(texts[3], "carol in group");
    assert_eq!(texts[4], "from me");
    let att = &rich_msgs[1]["attachments"][0];
    assert_eq!(att["transfer_name"], "photo.jpg");
    assert_eq!(att["missing"], false);
    assert!(att["total_bytes"].as_i64().unwrap() > 0);
    assert!(att["original_path"]
        .as_str()
        .unwrap()
        .ends_with("photo.jpg"));
    let reaction = &rich_msgs[2];
    assert_eq!(reaction["is_reaction"], true);
    assert_eq!(reaction["reaction_type"], "love");
    assert_eq!(reaction["is_reaction_add"], true);
    assert_eq!(reaction["reacted_to_guid"], json!(target.guid));
    let own = &rich_msgs[4];
    assert_eq!(own["is_from_me"], true);
    assert_eq!(own["id"], sent["id"]);
    assert_eq!(own["guid"], sent["guid"]);
    others.sort();
    assert_eq!(
        others,
        vec![
            (only_group, "carol in group".to_string()),
            (only_group, "from me".to_string()),
            (only_carol, "carol in group".to_string()),
        ]
    );
    let _ = future;
    assert!(rpc.quiet_for(200), "the future-dated filter emits nothing");
}

#[test]
fn overflow_is_terminal_with_resume_cursor() {
    let f = Fixture::new();
    let w = f.world();
    for i in 0..8 {
        say(&w, 1, ALICE, &format!("m{i}"));
    }
    let mut rpc = Rpc::v1(&f.db);
    let r = rpc.ok(
        "watch.subscribe",
        json!({"since_rowid": -1, "buffer_limit": 3, "debounce_ms": 0}),
    );
    assert_eq!(r, json!({"subscription": 1, "buffer_limit": 3}));
    let ids: Vec<i64> = (0..3)
        .map(|_| msg_of(&rpc.notification())["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![1, 2, 3]);
    assert_eq!(
        rpc.notification(),
        json!({"jsonrpc": "2.0", "method": "watch.overflow",
               "params": {"subscription": 1, "resume_after_rowid": 3,
                          "reason": "buffer_limit_exceeded", "terminal": true}})
    );
    say(&w, 1, ALICE, "after overflow");
    assert!(rpc.quiet_for(300));
    assert_eq!(
        rpc.ok("watch.unsubscribe", json!({"subscription": 1})),
        json!({"ok": true})
    );
    // Resume with messages.after from the cursor.
    let r = rpc.ok("messages.after", json!({"since_rowid": 3}));
    assert_eq!(r["messages"][0]["id"], 4);
}

#[test]
fn no_notification_after_unsubscribe_response() {
    let f = Fixture::new();
    let mut rpc = Rpc::v1(&f.db);
    let id = sub_id(&rpc.ok("watch.subscribe", json!({"debounce_ms": 0})));
    let db = f.db.clone();
    let writer = std::thread::spawn(move || {
        let w = fake_imsg::world::World::open(&db).unwrap();
        for i in 0..200 {
            say(&w, 1, ALICE, &format!("flood {i}"));
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(50));
    rpc.send(
        &json!({"jsonrpc": "2.0", "id": "u", "method": "watch.unsubscribe",
                     "params": {"subscription": id}}),
    );
    // Read in order: everything after the response must not be for this subscription.
    loop {
        let v = rpc.next();
        if v.get("id") == Some(&json!("u")) {
            assert_eq!(v["result"], json!({"ok": true}));
            break;
        }
        assert_eq!(v["params"]["subscription"], id);
    }
    writer.join().unwrap();
    assert!(rpc.quiet_for(300));
}

#[test]
fn unjoined_rows_wait_then_release_in_order() {
    let f = Fixture::new();
    let mut rpc = Rpc::v1(&f.db);
    rpc.ok("watch.subscribe", json!({"debounce_ms": 0}));
    let w = f.world();
    let ghost = w
        .inject(&InjectSpec {
            chat_id: Some(1),
            from: ALICE.into(),
            text: "late join".into(),
            unjoined: true,
            ..Default::default()
        })
        .unwrap();
    say(&w, 2, BOB, "behind it");
    assert!(
        rpc.quiet_for(300),
        "later rows wait behind the unjoined one"
    );
    w.join_message(ghost.id, 1).unwrap();
    let a = msg_of(&rpc.notification());
    let b = msg_of(&rpc.notification());
    assert_eq!(
        (a["text"].clone(), a["chat_id"].clone()),
        (json!("late join"), json!(1))
    );
    assert_eq!(b["text"], "behind it");
}

#[test]
fn unjoined_row_is_dropped_after_retries() {
    let f = Fixture::new();
    let mut rpc = Rpc::v1(&f.db);
    rpc.ok("watch.subscribe", json!({"debounce_ms": 0}));
    let w = f.world();
    w.inject(&InjectSpec {
        chat_id: Some(1),
        from: ALICE.into(),
        text: "never joined".into(),
        unjoined: true,
        ..Default::default()
    })
    .unwrap();
    say(&w, 1, ALICE, "released");
    // ~20 retries at 500 ms; the guard timeout is generous.
    let m = msg_of(&rpc.notification());
    assert_eq!(m["text"], "released");
    assert_ne!(m["chat_id"], 0);
}

#[test]
fn subscription_cap_and_ids() {
    let f = Fixture::new();
    let mut rpc = Rpc::v1(&f.db);
    for i in 1..=64 {
        assert_eq!(sub_id(&rpc.ok("watch.subscribe", json!({}))), i);
    }
    assert_eq!(
        rpc.err("watch.subscribe", json!({})),
        json!({"code": -32000, "message": "Server busy", "data": "subscription limit exceeded"})
    );
    rpc.ok("watch.unsubscribe", json!({"subscription": 1}));
    assert_eq!(sub_id(&rpc.ok("watch.subscribe", json!({}))), 65);
    assert_eq!(
        rpc.ok("watch.unsubscribe", json!({"subscription": 999})),
        json!({"ok": true})
    );
    let (code, rest) = rpc.finish();
    assert_eq!(code, 0);
    assert!(rest.is_empty(), "EOF ends subscriptions silently: {rest:?}");
}
