//! The world library API as the rpc server and the conformance harness use it: history and
//! catch-up ordering (imsg-rpc-v1.md §4.3/§4.4), reaction state (imsg-rpc.md §6.6), unjoined
//! rows, chat lookups, and the payload rules for `reply_to_guid` and `is_group`.

use fake_imsg::payload::{self, Level, MessageOpts};
use fake_imsg::world::{ChatRow, HistoryQuery, InjectSpec, NewChat, World};
use serde_json::json;

const SCENARIO: &str = r#"{
  now: "2026-01-15T18:00:00Z",
  me: "me@icloud.com",
  people: { a: "+15550000001", b: { handle: "b@example.com", name: "Bea" } },
  chats: [
    { participants: ["a"], messages: [
        { label: "m1", from: "a", text: "one", at: "-10m" },
        { from: "me", text: "two", at: "-9m" },
        { from: "a", react: "love", to: "m1", at: "-8m" },
        { from: "a", text: "same time low", at: "-5m" },
        { from: "a", text: "same time high", at: "-5m", read: false },
    ] },
    { group: true, name: "", participants: ["a", "b"], messages: [
        { label: "g1", from: "b", text: "group hello", at: "-7m" },
        { from: "a", text: "reply", reply_to: "g1", at: "-6m" },
    ] },
    { participants: ["+15550000009"] },
  ],
}"#;

fn world() -> (tempfile::TempDir, World) {
    let dir = tempfile::tempdir().unwrap();
    let w = World::build_from_scenario_str(SCENARIO, &dir.path().join("w.db")).unwrap();
    (dir, w)
}

fn ts(s: &str) -> i64 {
    payload::parse_iso8601(s).unwrap()
}

#[test]
fn history_is_newest_first_with_rowid_tiebreak_and_no_tapbacks() {
    let (_d, w) = world();
    let q = HistoryQuery {
        chat_id: 1,
        limit: 50,
        ..Default::default()
    };
    let texts: Vec<String> = w.history(&q).unwrap().into_iter().map(|m| m.text).collect();
    assert_eq!(texts, ["same time high", "same time low", "two", "one"]);
    let q = HistoryQuery {
        chat_id: 1,
        limit: 2,
        start: Some(ts("2026-01-15T17:50:00Z")),
        end: Some(ts("2026-01-15T17:55:00Z")),
        ..Default::default()
    };
    let texts: Vec<String> = w.history(&q).unwrap().into_iter().map(|m| m.text).collect();
    assert_eq!(texts, ["two", "one"], "start inclusive, end exclusive");
    let q = HistoryQuery {
        chat_id: 2,
        limit: 50,
        participants: vec!["B@EXAMPLE.COM".into()],
        ..Default::default()
    };
    let texts: Vec<String> = w.history(&q).unwrap().into_iter().map(|m| m.text).collect();
    assert_eq!(
        texts,
        ["group hello"],
        "participants match case-insensitively"
    );
    let q = HistoryQuery {
        chat_id: 99,
        limit: 5,
        ..Default::default()
    };
    assert!(w.history(&q).unwrap().is_empty());
}

#[test]
fn messages_after_is_rowid_ascending_and_filters() {
    let (_d, w) = world();
    let all = w.messages_after(0, None, 100, true).unwrap();
    let ids: Vec<i64> = all.iter().map(|m| m.id).collect();
    assert_eq!(
        ids,
        [1, 2, 3, 4, 5, 6, 7],
        "ROWIDs follow dates across chats"
    );
    let no_tapbacks: Vec<i64> = w
        .messages_after(0, None, 100, false)
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(no_tapbacks, [1, 2, 4, 5, 6, 7]);
    let page: Vec<i64> = w
        .messages_after(1, Some(1), 2, false)
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(page, [2, 6], "chat 1 rows after 1, limit 2");
    assert!(w.messages_after(999, None, 100, true).unwrap().is_empty());
}

#[test]
fn reactions_are_the_current_state() {
    let (_d, w) = world();
    let m1 = w.message(1).unwrap().unwrap();
    let r = w.reactions_for(&m1.guid).unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].associated_message_type, 2000);
    let spec = |kind: &str| InjectSpec {
        chat_id: Some(1),
        from: "+15550000001".into(),
        reaction: Some((kind.into(), m1.guid.clone())),
        ..Default::default()
    };
    let again = w.inject(&spec("love")).unwrap();
    let r = w.reactions_for(&m1.guid).unwrap();
    assert_eq!(
        r.iter().map(|x| x.id).collect::<Vec<_>>(),
        [again.id],
        "repeat add replaces"
    );
    w.inject(&spec("laugh")).unwrap();
    w.inject(&spec("-love")).unwrap();
    let r = w.reactions_for(&m1.guid).unwrap();
    assert_eq!(
        r.iter()
            .map(|x| x.associated_message_type)
            .collect::<Vec<_>>(),
        [2003],
        "removal deletes the matching add only"
    );
    let v = payload::message_json(
        &w,
        &m1,
        None,
        Level::V1,
        &MessageOpts {
            include_reactions: true,
            ..Default::default()
        },
    );
    assert_eq!(v["reactions"][0]["type"], json!("laugh"));
    assert_eq!(v["reactions"][0]["emoji"], json!("😂"));
    let v = payload::message_json(&w, &m1, None, Level::V1, &MessageOpts::default());
    assert_eq!(v["reactions"], json!([]), "only filled when asked");
}

#[test]
fn reply_to_guid_strips_the_part_prefix() {
    let (_d, w) = world();
    let parent = w.message(4).unwrap().unwrap();
    let reply = w.message(5).unwrap().unwrap();
    assert_eq!(
        reply.associated_message_guid.as_deref(),
        Some(format!("p:0/{}", parent.guid).as_str())
    );
    let v = payload::message_json(&w, &reply, None, Level::Legacy, &MessageOpts::default());
    assert_eq!(v["reply_to_guid"], json!(parent.guid));
    assert_eq!(v["thread_originator_guid"], json!(parent.guid));
    assert_eq!(v["reply_to_text"], json!("group hello"));
    assert_eq!(v["reply_to_sender"], json!("b@example.com"));
    assert!(v.get("thread_originator_part").is_none(), "v1 only");
    assert!(v.get("is_read").is_none(), "v1 only");
    // A tapback's associated guid is not a reply.
    let tap = w.message(3).unwrap().unwrap();
    let v = payload::message_json(&w, &tap, None, Level::V1, &MessageOpts::default());
    assert!(v.get("reply_to_guid").is_none());
    assert!(
        v.get("is_reaction").is_none(),
        "reaction fields only when asked"
    );
}

#[test]
fn chat_names_and_groups() {
    let (_d, w) = world();
    let group = w.chat(2).unwrap().unwrap();
    assert!(group.is_group());
    let legacy = payload::chat_json(&group, Level::Legacy);
    assert_eq!(
        legacy["name"],
        json!(""),
        "IFNULL: an empty display name stays empty"
    );
    assert!(legacy.get("unread_count").is_none());
    let v1 = payload::chat_json(&group, Level::V1);
    assert_eq!(v1["name"], json!(group.identifier));
    let dm = w.chat(1).unwrap().unwrap();
    assert!(!dm.is_group());
    assert_eq!(dm.unread_count, 1);
    assert_eq!(
        w.chats(10, false)
            .unwrap()
            .iter()
            .map(|c| c.id)
            .collect::<Vec<_>>(),
        [1, 2],
        "only chats with messages, newest activity first"
    );
    assert_eq!(
        w.chats(10, true)
            .unwrap()
            .iter()
            .map(|c| c.id)
            .collect::<Vec<_>>(),
        [1]
    );
    assert_eq!(w.all_chats().unwrap().len(), 3);
    assert_eq!(
        w.direct_chat_for_handle("+15550000001", &["SMS", "iMessage"])
            .unwrap()
            .map(|c| c.id),
        Some(1)
    );
    assert_eq!(
        w.chat_by_guid("iMessage;-;+15550000009")
            .unwrap()
            .map(|c| c.id),
        Some(3)
    );
    assert_eq!(
        w.chat_by_identifier(&group.identifier)
            .unwrap()
            .map(|c| c.id),
        Some(2)
    );
}

#[test]
fn is_group_follows_the_guid_or_identifier() {
    let chat = |guid: &str, identifier: &str| ChatRow {
        id: 1,
        guid: guid.into(),
        identifier: identifier.into(),
        display_name: None,
        service: "iMessage".into(),
        participants: vec![],
        last_message_date: None,
        account_id: None,
        account_login: None,
        last_addressed_handle: None,
        unread_count: 0,
        contact_name: None,
    };
    assert!(chat("iMessage;+;chat123", "chat123").is_group());
    assert!(chat("", "any;+;chat9").is_group());
    assert!(!chat("iMessage;-;+15551234567", "+15551234567").is_group());
    assert!(!chat("", "").is_group());
}

#[test]
fn unjoined_rows_then_join() {
    let (_d, w) = world();
    let m = w
        .inject(&InjectSpec {
            chat_id: Some(1),
            from: "+15550000001".into(),
            text: "late join".into(),
            unjoined: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(m.chat_id, None);
    let v = payload::message_json(&w, &m, None, Level::V1, &MessageOpts::default());
    assert_eq!(v["chat_id"], json!(0));
    assert_eq!(v["chat_guid"], json!(""));
    let after = w.messages_after(7, None, 10, false).unwrap();
    assert_eq!(after.len(), 1, "unjoined rows are in an all-chats scan");
    assert!(w.messages_after(7, Some(1), 10, false).unwrap().is_empty());
    w.join_message(m.id, 1).unwrap();
    assert_eq!(w.message(m.id).unwrap().unwrap().chat_id, Some(1));
    assert!(w.join_message(m.id, 42).is_err());
}

#[test]
fn two_handles_on_one_world_see_each_others_writes() {
    let (_d, w) = world();
    let other = World::open(w.path()).unwrap();
    let v0 = w.data_version().unwrap();
    let m = other
        .inject(&InjectSpec {
            new_chat: Some(NewChat {
                group: false,
                display_name: None,
                participants: vec![],
                service: "SMS".into(),
            }),
            from: "+15550000077".into(),
            text: "from elsewhere".into(),
            ..Default::default()
        })
        .unwrap();
    assert_ne!(w.data_version().unwrap(), v0);
    assert_eq!(w.max_rowid().unwrap(), m.id);
    assert_eq!(
        w.message_by_guid(&m.guid).unwrap().unwrap().text,
        "from elsewhere"
    );
    let chat = w.chat(m.chat_id.unwrap()).unwrap().unwrap();
    assert_eq!(chat.guid, "SMS;-;+15550000077");
    assert!(w.has_read_state());
}

#[test]
fn open_and_create_refuse_the_wrong_state() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("w.db");
    assert!(World::open(&p).is_err());
    World::create(&p).unwrap();
    assert!(World::create(&p)
        .unwrap_err()
        .to_string()
        .contains("already exists"));
    assert_eq!(World::open_or_create(&p).unwrap().max_rowid().unwrap(), 0);
}

#[test]
fn custom_tapbacks_carry_their_emoji() {
    let (_d, w) = world();
    let target = w.message(2).unwrap().unwrap();
    let tap = w
        .inject(&InjectSpec {
            chat_id: Some(1),
            from: "+15550000001".into(),
            reaction: Some(("custom:🎉".into(), target.guid.clone())),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(tap.associated_message_type, 2006);
    assert_eq!(tap.text, "Reacted 🎉 to \u{201c}two\u{201d}");
    let opts = MessageOpts {
        reaction_fields: true,
        ..Default::default()
    };
    let v = payload::message_json(&w, &tap, None, Level::V1, &opts);
    assert_eq!(v["reaction_type"], json!("custom"));
    assert_eq!(v["reaction_emoji"], json!("🎉"));
    assert_eq!(v["reacted_to_guid"], json!(target.guid));
    assert_eq!(v["is_reaction_add"], json!(true));
    let err = w
        .inject(&InjectSpec {
            chat_id: Some(1),
            from: "+15550000001".into(),
            reaction: Some(("love".into(), "NO-SUCH-GUID".into())),
            ..Default::default()
        })
        .unwrap_err();
    assert!(err.to_string().contains("NO-SUCH-GUID"), "{err}");
}

#[test]
fn a_plain_chat_db_without_side_tables_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("chat.db");
    World::create(&p).unwrap();
    {
        let c = rusqlite::Connection::open(&p).unwrap();
        c.execute_batch("DROP TABLE fake_imsg_meta; DROP TABLE fake_imsg_contact;")
            .unwrap();
    }
    let w = World::open(&p).unwrap();
    assert_eq!(w.me(), None);
    let m = w
        .inject(&InjectSpec {
            new_chat: Some(NewChat {
                service: "iMessage".into(),
                ..Default::default()
            }),
            from: "+15550000001".into(),
            text: "hi".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(m.destination_caller_id, None);
    w.set_contact_name("+15550000001", "Ann").unwrap();
    assert_eq!(w.contact_name("+15550000001").as_deref(), Some("Ann"));
}
