//! The v1 read and control methods over the world: `initialize`, `status`, `chats.list`,
//! `chats.get`, `messages.history|after|search|stats|scheduled`, `message.send_status`, and
//! the answers a stock Mac without the bridge gives to bridge-only methods
//! (imsg-rpc-v1.md §3, §4.1-4.4, §4.9, §4.11).

use serde_json::{json, Map, Value};

use crate::payload::{chat_json, iso8601, message_json, Level, MessageOpts};
use crate::world::{ChatRow, HistoryQuery, MessageRow, World};

use super::db::Memoized;
use super::errors::{RpcError, BRIDGE_NOT_STARTED};
use super::lanes::{supported, usable, ApiLevel};
use super::params::Strict;
use super::server::Shared;

type R = Result<Value, RpcError>;

fn wrap(e: crate::world::WorldError) -> RpcError {
    RpcError::internal(e.to_string())
}

/// The `status` / `initialize` snapshot.
pub fn status_json(sh: &Shared) -> Value {
    let probe = sh.db.probe();
    let database = match probe {
        Ok(read_state) => json!({
            "path": sh.db.path_str(),
            "ready": true,
            "features": {"unread_state": read_state, "scheduled_messages": true,
                         "reactions": true, "reply_context": true,
                         "routing_metadata": true, "balloon_payloads": true},
        }),
        Err(d) => json!({"path": sh.db.path_str(), "ready": false, "error": d.detail()}),
    };
    let version = super::lanes::imsg_version(sh.protocol, sh.level);
    let mut v = json!({
        "version": version,
        "protocol_version": 1,
        "database": database,
        "bridge": {"ready": false, "error": BRIDGE_NOT_STARTED},
        "contacts": {"available": false},
        "methods": usable(sh.level, probe.is_ok()),
        "supported_methods": supported(sh.level),
    });
    if sh.level == ApiLevel::Main {
        v["capabilities"] = capabilities(version);
    }
    v
}

/// The `capabilities` block of imsg `main` (a dev build, no bridge: no features).
pub fn capabilities(version: &str) -> Value {
    json!({
        "engine": {"version": version, "commit": "unknown", "built_at": "unknown"},
        "features": {},
    })
}

pub fn initialize(sh: &Shared, params: &Map<String, Value>) -> R {
    let p = Strict::new("initialize", params, &[&["protocol_version"]])?;
    if let Some(n) = p.int(&["protocol_version"])? {
        if n != 1 {
            return Err(RpcError::invalid_params(format!(
                "unsupported protocol_version {n}; supported version is 1"
            )));
        }
    }
    Ok(status_json(sh))
}

pub fn status(sh: &Shared, params: &Map<String, Value>) -> R {
    Strict::new("status", params, &[])?;
    Ok(status_json(sh))
}

/// The memo key of a repeatable read with valid params (only `chats.list` today).
pub fn memo_key(sh: &Shared, method: &str, params: &Map<String, Value>) -> Option<String> {
    if method != "chats.list" || sh.db.forced_down {
        return None;
    }
    match sh.protocol {
        super::framing::Protocol::V1 => {
            const UNREAD: &[&str] = &["unread_only", "unreadOnly"];
            let p = Strict::new("chats.list", params, &[&["limit"], UNREAD]).ok()?;
            let limit = p.positive(&["limit"]).ok()?.unwrap_or(20);
            let unread = p.bool(UNREAD).ok()?.unwrap_or(false);
            Some(format!("chats.list/v1/{limit}/{unread}"))
        }
        super::framing::Protocol::Legacy => {
            let limit = super::params::Lenient { map: params }
                .int(&["limit"])
                .unwrap_or(20)
                .max(1);
            Some(format!("chats.list/legacy/{limit}"))
        }
    }
}

pub fn chats_list(sh: &Shared, params: &Map<String, Value>) -> Result<Memoized, RpcError> {
    const UNREAD: &[&str] = &["unread_only", "unreadOnly"];
    let p = Strict::new("chats.list", params, &[&["limit"], UNREAD])?;
    let limit = p.positive(&["limit"])?.unwrap_or(20);
    let unread_only = p.bool(UNREAD)?.unwrap_or(false);
    let key = format!("chats.list/v1/{limit}/{unread_only}");
    sh.db.run_memo(&key, |w| {
        if unread_only && !w.has_read_state() {
            return Err(RpcError::invalid_params(
                "unread_only is unavailable because this Messages database has no read-state column",
            ));
        }
        let chats = w.chats(limit as usize, unread_only).map_err(wrap)?;
        Ok(chats_result(chat_items(w, &chats)))
    })
}

/// The v1 chat objects of a list (`chats.list`, `imsg chats --json`).
pub fn chat_items(w: &World, chats: &[ChatRow]) -> Vec<Value> {
    // imsg-rpc-v1.md §5.2: `unread_count` is omitted on schemas without read state.
    let read_state = w.has_read_state();
    chats
        .iter()
        .map(|c| {
            let mut v = chat_json(c, Level::V1);
            if let (false, Some(o)) = (read_state, v.as_object_mut()) {
                o.remove("unread_count");
            }
            v
        })
        .collect()
}

/// `{"chats": [..]}`, moving the list in (`json!` would serialize a copy of it).
pub fn chats_result(list: Vec<Value>) -> Value {
    let mut o = Map::new();
    o.insert("chats".into(), Value::Array(list));
    Value::Object(o)
}

fn required_chat_id(p: &Strict) -> Result<i64, RpcError> {
    p.positive(&["chat_id"])?
        .ok_or_else(|| RpcError::invalid_params("chat_id is required"))
}

pub fn chats_get(sh: &Shared, params: &Map<String, Value>) -> R {
    let p = Strict::new("chats.get", params, &[&["chat_id"]])?;
    let id = required_chat_id(&p)?;
    sh.db.run(|w| {
        let c = w
            .chat(id)
            .map_err(wrap)?
            .ok_or_else(|| RpcError::invalid_params(format!("Chat not found: {id}")))?;
        let mut v = json!({
            "id": c.id, "identifier": c.identifier, "guid": c.guid,
            "name": crate::payload::chat_name(&c, Level::V1), "service": c.service, "is_group": c.is_group(),
            "participants": c.participants,
        });
        for (k, val) in [
            ("account_id", &c.account_id),
            ("account_login", &c.account_login),
            ("last_addressed_handle", &c.last_addressed_handle),
        ] {
            if let Some(s) = val.as_ref().filter(|s| !s.is_empty()) {
                v[k] = json!(s);
            }
        }
        Ok(v)
    })
}

pub fn messages_history(sh: &Shared, params: &Map<String, Value>) -> R {
    let p = Strict::new(
        "messages.history",
        params,
        &[
            &["chat_id"],
            &["limit"],
            &["participants"],
            &["start"],
            &["end"],
            &["attachments"],
            &["convert_attachments"],
        ],
    )?;
    let chat_id = required_chat_id(&p)?;
    let limit = p.positive(&["limit"])?.unwrap_or(50);
    let participants = p.strings(&["participants"])?.unwrap_or_default();
    let start = p.string(&["start"])?;
    let end = p.string(&["end"])?;
    let attachments = p.bool(&["attachments"])?.unwrap_or(false);
    p.bool(&["convert_attachments"])?;
    sh.db.run(|w| {
        // imsg opens the database before it builds the date filter, so a bad date with the
        // database down is -32002.
        let date = |s: Option<String>| -> Result<Option<i64>, RpcError> {
            s.map(|s| {
                crate::payload::parse_iso8601(&s)
                    .ok_or_else(|| RpcError::invalid_params(format!("Invalid ISO8601 date: {s}")))
            })
            .transpose()
        };
        let (start, end) = (date(start)?, date(end)?);
        history(
            sh,
            w,
            Level::V1,
            HistoryQuery {
                chat_id,
                limit: limit as usize,
                participants,
                start,
                end,
            },
            attachments,
        )
    })
}

/// Shared by both levels: newest first, reactions always filled.
pub fn history(sh: &Shared, w: &World, level: Level, q: HistoryQuery, attachments: bool) -> R {
    let chat_id = q.chat_id;
    let rows = w.history(&q).map_err(wrap)?;
    let chat = w
        .chat_uncounted(chat_id)
        .map_err(wrap)?
        .map(|c| sh.describe_chat(c));
    let opts = MessageOpts {
        attachments,
        include_reactions: true,
        reaction_fields: false,
    };
    let msgs: Vec<Value> = rows
        .into_iter()
        .map(|mut m| {
            m.chat_id = Some(chat_id);
            message_json(w, &m, chat.as_ref(), level, &opts)
        })
        .collect();
    Ok(json!({ "messages": msgs }))
}

pub fn messages_after(sh: &Shared, params: &Map<String, Value>) -> R {
    const LIMIT_TEXT: &str = "limit must be an integer between 1 and 500";
    let p = Strict::new(
        "messages.after",
        params,
        &[
            &["since_rowid"],
            &["chat_id"],
            &["limit"],
            &["attachments"],
            &["convert_attachments"],
            &["include_reactions"],
        ],
    )?;
    let mut since = p
        .int(&["since_rowid"])?
        .ok_or_else(|| RpcError::invalid_params("since_rowid must be an integer"))?;
    if since < 0 {
        match sh.level {
            ApiLevel::V014 => {
                return Err(RpcError::invalid_params(
                    "since_rowid must be a non-negative integer",
                ))
            }
            ApiLevel::Main => since = 0,
        }
    }
    let chat_id = p.positive(&["chat_id"])?;
    let limit = match p.int(&["limit"]) {
        Ok(None) => 100,
        Ok(Some(n)) if (1..=500).contains(&n) => n as usize,
        Err(e)
            if e.data
                .as_str()
                .is_some_and(|s| s.ends_with("must not be null")) =>
        {
            return Err(e)
        }
        _ => return Err(RpcError::invalid_params(LIMIT_TEXT)),
    };
    let attachments = p.bool(&["attachments"])?.unwrap_or(false);
    p.bool(&["convert_attachments"])?;
    let include_reactions = p.bool(&["include_reactions"])?.unwrap_or(false);
    sh.db.run(|w| {
        let mut rows = w
            .messages_after(since, chat_id, limit + 1, include_reactions)
            .map_err(wrap)?;
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        let next = rows.last().map(|m| m.id).unwrap_or(since);
        let opts = MessageOpts {
            attachments,
            include_reactions,
            reaction_fields: include_reactions,
        };
        let msgs = payloads(w, rows, &opts);
        Ok(json!({"messages": msgs, "next_rowid": next, "has_more": has_more}))
    })
}

/// Message payloads with their chats; rows without a chat join are skipped (never chat_id 0).
fn payloads(w: &World, rows: Vec<MessageRow>, opts: &MessageOpts) -> Vec<Value> {
    let mut chats: std::collections::HashMap<i64, Option<ChatRow>> = Default::default();
    rows.into_iter()
        .filter_map(|m| {
            let cid = m.chat_id?;
            let chat = chats
                .entry(cid)
                .or_insert_with(|| w.chat_uncounted(cid).ok().flatten());
            Some(message_json(w, &m, chat.as_ref(), Level::V1, opts))
        })
        .collect()
}

pub fn messages_search(sh: &Shared, params: &Map<String, Value>) -> R {
    let p = Strict::new(
        "messages.search",
        params,
        &[&["query"], &["match"], &["limit"], &["attachments"]],
    )?;
    let query = p.string(&["query"])?.unwrap_or_default();
    if query.trim().is_empty() {
        return Err(RpcError::invalid_params("query is required"));
    }
    let exact = match p.string(&["match"])?.as_deref() {
        None | Some("contains") => false,
        Some("exact") => true,
        Some(_) => return Err(RpcError::invalid_params("match must be contains or exact")),
    };
    let limit = match p.int(&["limit"])? {
        None => 50,
        Some(n) if (1..=100).contains(&n) => n as usize,
        Some(_) => {
            return Err(RpcError::invalid_params(
                "limit must be an integer between 1 and 100",
            ))
        }
    };
    let attachments = p.bool(&["attachments"])?.unwrap_or(false);
    sh.db.run(|w| {
        let needle = query.to_lowercase();
        let mut hits = Vec::new();
        let mut cursor = 0;
        loop {
            let rows = w.messages_after(cursor, None, 1000, false).map_err(wrap)?;
            let done = rows.len() < 1000;
            for m in rows {
                cursor = m.id;
                let t = m.text.to_lowercase();
                if (exact && t == needle) || (!exact && t.contains(&needle)) {
                    hits.push(m);
                }
            }
            if done {
                break;
            }
        }
        hits.sort_by(|a, b| b.date.cmp(&a.date).then(b.id.cmp(&a.id)));
        hits.truncate(limit);
        let opts = MessageOpts {
            attachments,
            include_reactions: true,
            reaction_fields: false,
        };
        Ok(json!({ "messages": payloads(w, hits, &opts) }))
    })
}

pub fn messages_stats(sh: &Shared, params: &Map<String, Value>) -> R {
    let p = Strict::new("messages.stats", params, &[&["chat_id"]])?;
    let chat_id = p.positive(&["chat_id"])?;
    sh.db.run(|w| {
        let chats = w.all_chats().map_err(wrap)?;
        let rows = w
            .messages_after(0, chat_id, usize::MAX / 2, false)
            .map_err(wrap)?;
        let sent = rows.iter().filter(|m| m.is_from_me).count();
        Ok(json!({
            "total_messages": rows.len(),
            "sent_messages": sent,
            "received_messages": rows.len() - sent,
            "chats": chats.len(),
        }))
    })
}

pub fn messages_scheduled(sh: &Shared, params: &Map<String, Value>) -> R {
    let p = Strict::new("messages.scheduled", params, &[&["chat_id"], &["limit"]])?;
    p.positive(&["chat_id"])?;
    p.positive(&["limit"])?;
    sh.db.run(|_| Ok(json!({"messages": []})))
}

pub fn send_status(sh: &Shared, params: &Map<String, Value>) -> R {
    let p = Strict::new("message.send_status", params, &[&["guid"]])?;
    let guid = p.string(&["guid"])?.unwrap_or_default().trim().to_string();
    if guid.is_empty() {
        return Err(RpcError::invalid_params("guid is required"));
    }
    let now = chrono::Utc::now();
    let checked_at = now.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    sh.db.run(|w| {
        let Some(m) = w.message_by_guid(&guid).map_err(wrap)? else {
            return Ok(json!({"ok": true, "guid": guid, "send_state": "pending",
                             "service": null, "checked_at": checked_at,
                             "status_fields": null}));
        };
        let delivered = iso8601(m.date);
        let date_read = if m.date_read > 0 {
            json!(iso8601(m.date_read))
        } else {
            Value::Null
        };
        Ok(json!({
            "ok": true, "guid": m.guid, "send_state": "delivered", "service": m.service,
            "checked_at": checked_at, "delivered_at": delivered,
            "status_fields": {"is_sent": true, "is_delivered": true, "is_finished": true,
                              "error": 0, "date_delivered": delivered, "date_read": date_read,
                              "is_delayed": false, "is_prepared": true,
                              "is_pending_satellite_send": false, "was_downgraded": false},
        }))
    })
}

/// A bridge-only mutation on a Mac whose bridge is not running.
pub fn bridge_mutation(method: &str) -> R {
    Err(RpcError::not_started(
        "bridge_v2",
        method,
        BRIDGE_NOT_STARTED,
    ))
}

/// `send.tracked` (main): validates `attempt_id`, needs the database (it checks the id is
/// unused), then refuses AppleScript.
pub fn send_tracked(sh: &Shared, params: &Map<String, Value>) -> R {
    let attempt = params
        .get("attempt_id")
        .and_then(Value::as_str)
        .unwrap_or("");
    if uuid::Uuid::parse_str(attempt).is_err() {
        return Err(RpcError::invalid_params("attempt_id must be a UUID"));
    }
    sh.db.run(|_| Ok(()))?;
    Err(RpcError::invalid_params(
        "send.tracked requires bridge transport",
    ))
}
