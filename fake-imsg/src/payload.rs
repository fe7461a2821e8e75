//! Wire JSON for chats, messages and attachments: turns world rows into imsg's shapes
//! (legacy 0.9 per imsg-rpc.md §6, v1 0.14+ per imsg-rpc-v1.md §5). Optional fields are
//! omitted, never null. Contact names come from the world's contact table (our stand-in for
//! the Contacts database).

use serde_json::{json, Map, Value};

use crate::world::read::strip_part_prefix;
use crate::world::{tapback, AttachmentRow, ChatRow, MessageRow, World};

/// Protocol level of the shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// imsg 0.9 shapes (imsg-rpc.md)
    Legacy,
    /// imsg 0.14+ shapes (imsg-rpc-v1.md)
    V1,
}

/// What to include in a message object.
#[derive(Debug, Clone, Default)]
pub struct MessageOpts {
    /// Fill `attachments` (otherwise `[]`).
    pub attachments: bool,
    /// Fill `reactions` (otherwise `[]`).
    pub include_reactions: bool,
    /// Add `is_reaction`, `reaction_type`, ... on tapback rows.
    pub reaction_fields: bool,
}

/// `2026-01-15T18:04:05.123Z`; NULL/0 -> `2001-01-01T00:00:00.000Z`.
pub fn iso8601(apple_ns: i64) -> String {
    crate::world::dates::iso8601(apple_ns)
}

/// RFC 3339 with zone, fraction optional -> apple ns.
pub fn parse_iso8601(s: &str) -> Option<i64> {
    crate::world::dates::parse_iso8601(s)
}

/// The chat `name` rule: legacy is SQL `IFNULL(display_name, chat_identifier)` (an empty
/// display name stays empty); v1 prefers a non-empty display name, then the contact name of
/// a direct chat, then the identifier.
pub fn chat_name(chat: &ChatRow, level: Level) -> String {
    match level {
        Level::Legacy => chat
            .display_name
            .clone()
            .unwrap_or_else(|| chat.identifier.clone()),
        Level::V1 => chat
            .display_name
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(|| chat.contact_name.clone().filter(|_| !chat.is_group()))
            .unwrap_or_else(|| chat.identifier.clone()),
    }
}

/// A chat object (`chats.list`). Members are built as values directly: `json!(x)` goes
/// through `to_value`, a serializer round trip per field, which showed up as a sizable part
/// of an uncached `chats.list`.
pub fn chat_json(chat: &ChatRow, level: Level) -> Value {
    let string = |s: &str| Value::String(s.to_string());
    let mut o = Map::new();
    o.insert("id".into(), Value::from(chat.id));
    o.insert("identifier".into(), string(&chat.identifier));
    if level == Level::Legacy || !chat.guid.is_empty() {
        o.insert("guid".into(), string(&chat.guid));
    }
    o.insert("name".into(), Value::String(chat_name(chat, level)));
    o.insert("service".into(), string(&chat.service));
    o.insert(
        "last_message_at".into(),
        Value::String(iso8601(chat.last_message_date.unwrap_or(0))),
    );
    o.insert(
        "participants".into(),
        Value::Array(
            chat.participants
                .iter()
                .cloned()
                .map(Value::String)
                .collect(),
        ),
    );
    let group = chat.is_group();
    o.insert("is_group".into(), Value::Bool(group));
    if !group {
        if let Some(n) = &chat.contact_name {
            o.insert("contact_name".into(), string(n));
        }
    }
    if level == Level::V1 {
        let opt = |o: &mut Map<String, Value>, k: &str, v: &Option<String>| {
            if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                o.insert(k.into(), string(v));
            }
        };
        opt(&mut o, "display_name", &chat.display_name);
        opt(&mut o, "account_id", &chat.account_id);
        opt(&mut o, "account_login", &chat.account_login);
        opt(&mut o, "last_addressed_handle", &chat.last_addressed_handle);
        o.insert("unread_count".into(), Value::from(chat.unread_count));
    }
    Value::Object(o)
}

/// A message object. `chat` is the chat to describe it with (the rpc server may pass a cached
/// one); when None it is looked up from `m.chat_id`. An unjoined row gets `chat_id` 0 and
/// empty chat fields.
pub fn message_json(
    world: &World,
    m: &MessageRow,
    chat: Option<&ChatRow>,
    level: Level,
    opts: &MessageOpts,
) -> Value {
    let looked_up;
    let chat = match chat {
        Some(c) => Some(c),
        None => {
            looked_up = m
                .chat_id
                .and_then(|id| world.chat_uncounted(id).ok().flatten());
            looked_up.as_ref()
        }
    };
    let mut o = Map::new();
    o.insert("id".into(), json!(m.id));
    o.insert(
        "chat_id".into(),
        json!(m.chat_id.or(chat.map(|c| c.id)).unwrap_or(0)),
    );
    o.insert("guid".into(), json!(m.guid));
    o.insert("sender".into(), json!(m.sender));
    o.insert("is_from_me".into(), json!(m.is_from_me));
    o.insert("text".into(), json!(m.text));
    o.insert("created_at".into(), json!(iso8601(m.date)));
    let attachments: Vec<Value> = if opts.attachments {
        m.attachments.iter().map(attachment_json).collect()
    } else {
        Vec::new()
    };
    o.insert("attachments".into(), Value::Array(attachments));
    let reactions: Vec<Value> = if opts.include_reactions && !m.guid.is_empty() {
        world
            .reactions_for(&m.guid)
            .unwrap_or_default()
            .iter()
            .filter_map(|r| reaction_json(world, r))
            .collect()
    } else {
        Vec::new()
    };
    o.insert("reactions".into(), Value::Array(reactions));
    o.insert(
        "chat_identifier".into(),
        json!(chat.map(|c| c.identifier.clone()).unwrap_or_default()),
    );
    o.insert(
        "chat_guid".into(),
        json!(chat.map(|c| c.guid.clone()).unwrap_or_default()),
    );
    o.insert(
        "chat_name".into(),
        json!(chat.map(|c| chat_name(c, level)).unwrap_or_default()),
    );
    o.insert(
        "participants".into(),
        json!(chat.map(|c| c.participants.clone()).unwrap_or_default()),
    );
    o.insert(
        "is_group".into(),
        json!(chat.map(ChatRow::is_group).unwrap_or(false)),
    );

    let reply_to = if m.is_reaction() {
        None
    } else {
        m.associated_message_guid
            .as_deref()
            .map(strip_part_prefix)
            .filter(|g| !g.is_empty())
            .map(str::to_string)
    };
    if let Some(r) = &reply_to {
        o.insert("reply_to_guid".into(), json!(r));
    }
    if !m.is_reaction() {
        if let Some(t) = &m.thread_originator_guid {
            o.insert("thread_originator_guid".into(), json!(t));
            if level == Level::V1 {
                if let Some(part) = &m.thread_originator_part {
                    o.insert("thread_originator_part".into(), json!(part));
                }
            }
        }
        let parent_guid = m.thread_originator_guid.clone().or(reply_to);
        if let Some(parent) = parent_guid.and_then(|g| world.message_by_guid(&g).ok().flatten()) {
            o.insert("reply_to_text".into(), json!(parent.text));
            o.insert("reply_to_sender".into(), json!(parent.sender));
        }
    }
    if let Some(d) = &m.destination_caller_id {
        o.insert("destination_caller_id".into(), json!(d));
    }
    if !m.is_from_me {
        if let Some(name) = world.contact_name(&m.sender) {
            o.insert("sender_name".into(), json!(name));
        }
    }
    if level == Level::V1 {
        if let Some(b) = &m.balloon_bundle_id {
            o.insert("balloon_bundle_id".into(), json!(b));
        }
        if !m.is_from_me && world.has_read_state() {
            o.insert("is_read".into(), json!(m.is_read));
            if m.is_read && m.date_read != 0 {
                o.insert("date_read".into(), json!(iso8601(m.date_read)));
            }
        }
    }
    if opts.reaction_fields && m.is_reaction() {
        o.insert("is_reaction".into(), json!(true));
        if let Some((kind, emoji)) = tapback::describe(
            m.associated_message_type,
            m.associated_message_emoji.as_deref(),
        ) {
            o.insert("reaction_type".into(), json!(kind));
            o.insert("reaction_emoji".into(), json!(emoji));
        }
        o.insert(
            "is_reaction_add".into(),
            json!((2000..=2006).contains(&m.associated_message_type)),
        );
        if let Some(g) = &m.associated_message_guid {
            o.insert("reacted_to_guid".into(), json!(strip_part_prefix(g)));
        }
    }
    Value::Object(o)
}

/// An entry of a message's `reactions` array; None for a custom tapback whose emoji is
/// unreadable.
pub fn reaction_json(world: &World, r: &MessageRow) -> Option<Value> {
    let (kind, emoji) = tapback::describe(
        r.associated_message_type,
        r.associated_message_emoji.as_deref(),
    )?;
    let mut o = Map::new();
    o.insert("id".into(), json!(r.id));
    o.insert("type".into(), json!(kind));
    o.insert("emoji".into(), json!(emoji));
    o.insert("sender".into(), json!(r.sender));
    if !r.is_from_me {
        if let Some(name) = world.contact_name(&r.sender) {
            o.insert("sender_name".into(), json!(name));
        }
    }
    o.insert("is_from_me".into(), json!(r.is_from_me));
    o.insert("created_at".into(), json!(iso8601(r.date)));
    Some(Value::Object(o))
}

/// An attachment object (`total_bytes` and `original_path`, as the code emits).
pub fn attachment_json(a: &AttachmentRow) -> Value {
    json!({
        "filename": a.filename,
        "transfer_name": a.transfer_name,
        "uti": a.uti,
        "mime_type": a.mime_type,
        "total_bytes": a.total_bytes,
        "is_sticker": a.is_sticker,
        "original_path": a.original_path(),
        "missing": a.missing(),
    })
}
