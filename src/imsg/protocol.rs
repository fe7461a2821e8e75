//! imsg's protocol in one place: negotiation, the requests the gateway makes ([`Request`],
//! typed), what their results mean ([`Page`], [`Subscribed`], [`ChatIds`],
//! [`SendReceipt`]), the error codes it acts on ([`ErrorCode`]) and the per-level key sets.
//!
//! `initialize {protocol_version: 1}` answered means protocol v1 (imsg 0.14+, strict keys);
//! `-32601` means the legacy 0.4–0.9 surface. v1 rejects any undocumented key, so every
//! request builds its params for the level it goes to ([`Request::params`]), keeping only
//! the keys that level documents for the method ([`sanitize_params`]).

use serde_json::{json, Map, Value};
use std::time::Duration;

use super::client::{Client, RpcError};

/// The error codes of imsg's answers that the gateway tells apart (imsg-rpc-v1 §6; legacy
/// uses the JSON-RPC ones only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// `-32601`: on `initialize`, the legacy (pre-v1) surface.
    MethodNotFound,
    /// `-32602`: the caller's fault (a key, a type, an unknown chat); asking again is useless.
    InvalidParams,
    /// `-32603`: a runtime failure (and, on legacy, an unreadable database or row).
    Internal,
    /// `-32000`: server busy or shutting down; asking later may work.
    ServerBusy,
    /// `-32001`: delivery outcome unknown; never retried automatically.
    DeliveryOutcomeUnknown,
    /// `-32002`: database unavailable; retryable, the child keeps running.
    DatabaseUnavailable,
    /// `-32004`: mutation lane blocked; only a restart of the child clears it.
    MutationLaneBlocked,
    /// Any other code.
    Other(i64),
}

impl ErrorCode {
    pub fn from_code(code: i64) -> ErrorCode {
        match code {
            -32601 => ErrorCode::MethodNotFound,
            -32602 => ErrorCode::InvalidParams,
            -32603 => ErrorCode::Internal,
            -32000 => ErrorCode::ServerBusy,
            -32001 => ErrorCode::DeliveryOutcomeUnknown,
            -32002 => ErrorCode::DatabaseUnavailable,
            -32004 => ErrorCode::MutationLaneBlocked,
            other => ErrorCode::Other(other),
        }
    }

    pub fn code(self) -> i64 {
        match self {
            ErrorCode::MethodNotFound => -32601,
            ErrorCode::InvalidParams => -32602,
            ErrorCode::Internal => -32603,
            ErrorCode::ServerBusy => -32000,
            ErrorCode::DeliveryOutcomeUnknown => -32001,
            ErrorCode::DatabaseUnavailable => -32002,
            ErrorCode::MutationLaneBlocked => -32004,
            ErrorCode::Other(c) => c,
        }
    }
}

/// A request the gateway makes of imsg.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// `initialize {protocol_version: 1}` (v1; legacy answers `-32601`).
    Initialize,
    /// `status` (v1).
    Status,
    /// `chats.list`: the `limit` most recently active chats.
    ChatsList { limit: u32 },
    /// `messages.history`: a chat's newest `limit` rows, dated before `end` (ISO 8601) when
    /// given.
    History {
        chat_id: i64,
        limit: u32,
        attachments: bool,
        end: Option<String>,
    },
    /// `messages.after` (v1 only): up to `limit` rows after `since_rowid`, tapbacks included.
    After {
        since_rowid: i64,
        limit: u32,
        attachments: bool,
    },
    /// `watch.subscribe` after rowid `after` (`None`: at the tail), tapbacks included so the
    /// gateway's own filter drops them and the cursor covers them.
    Subscribe {
        after: Option<i64>,
        attachments: bool,
    },
    /// `watch.unsubscribe`.
    Unsubscribe { subscription: i64 },
    /// `send` with a planned chunk's params (`outbound::SendParams::to_json`).
    Send(Value),
}

impl Request {
    pub fn method(&self) -> &'static str {
        match self {
            Request::Initialize => "initialize",
            Request::Status => "status",
            Request::ChatsList { .. } => "chats.list",
            Request::History { .. } => "messages.history",
            Request::After { .. } => "messages.after",
            Request::Subscribe { .. } => "watch.subscribe",
            Request::Unsubscribe { .. } => "watch.unsubscribe",
            Request::Send(_) => "send",
        }
    }

    /// The params for `protocol`: only the keys that level documents for the method.
    pub fn params(&self, protocol: Protocol) -> Value {
        let raw = match self {
            Request::Initialize => json!({"protocol_version": 1}),
            Request::Status => json!({}),
            Request::ChatsList { limit } => json!({"limit": limit}),
            Request::History {
                chat_id,
                limit,
                attachments,
                end,
            } => json!({"chat_id": chat_id, "limit": limit, "attachments": attachments,
                        "end": end}),
            Request::After {
                since_rowid,
                limit,
                attachments,
            } => json!({"since_rowid": since_rowid, "limit": limit,
                        "attachments": attachments, "include_reactions": true}),
            // imsg reads `since_rowid: 0` as "at the tail"; -1 is "from the first row".
            Request::Subscribe { after, attachments } => json!({
                "since_rowid": after.map(|a| if a > 0 { a } else { -1 }),
                "attachments": attachments,
                "include_reactions": true,
            }),
            Request::Unsubscribe { subscription } => json!({"subscription": subscription}),
            Request::Send(p) => p.clone(),
        };
        sanitize_params(protocol, self.method(), raw)
    }
}

/// A page of messages (`messages.after`, `messages.history`): missing fields read as an
/// empty, final page.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    pub messages: Vec<Value>,
    /// `messages.after`: where the next page starts.
    pub next_rowid: Option<i64>,
    /// `messages.after`: rows remain after this page (it can be empty and still have more).
    pub has_more: bool,
}

impl Page {
    pub fn from_result(mut result: Value) -> Page {
        let messages = match result.get_mut("messages").map(Value::take) {
            Some(Value::Array(m)) => m,
            _ => Vec::new(),
        };
        Page {
            messages,
            next_rowid: result.get("next_rowid").and_then(Value::as_i64),
            has_more: result.get("has_more").and_then(Value::as_bool) == Some(true),
        }
    }

    /// The rowid of each message, where it has one.
    pub fn rowids(&self) -> impl Iterator<Item = i64> + '_ {
        self.messages
            .iter()
            .filter_map(|m| m.get("id").and_then(Value::as_i64))
    }
}

/// `watch.subscribe`'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscribed {
    pub subscription: i64,
}

impl Subscribed {
    pub fn from_result(result: &Value) -> Result<Subscribed, String> {
        result
            .get("subscription")
            .and_then(Value::as_i64)
            .map(|subscription| Subscribed { subscription })
            .ok_or_else(|| format!("watch.subscribe answered without a subscription id: {result}"))
    }
}

/// `chats.list`'s chats, as the ids and last activity the gateway reads from it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatIds(pub Vec<(i64, Option<String>)>);

impl ChatIds {
    pub fn from_result(result: &Value) -> ChatIds {
        ChatIds(
            result
                .get("chats")
                .and_then(Value::as_array)
                .map(|chats| {
                    chats
                        .iter()
                        .filter_map(|c| {
                            let id = c.get("id").and_then(Value::as_i64)?;
                            let last = c
                                .get("last_message_at")
                                .and_then(Value::as_str)
                                .map(String::from);
                            Some((id, last))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        )
    }
}

/// What a `send` answer says of the row it wrote.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SendReceipt {
    /// The outgoing row's rowid (v1 `id`).
    pub row_id: Option<i64>,
    /// Its GUID: `guid`, else a string `message_id`.
    pub guid: Option<String>,
}

impl SendReceipt {
    pub fn from_result(result: &Value) -> SendReceipt {
        SendReceipt {
            row_id: result.get("id").and_then(Value::as_i64),
            guid: ["guid", "message_id"].iter().find_map(|k| {
                result
                    .get(*k)
                    .and_then(Value::as_str)
                    .filter(|s| !s.trim().is_empty())
                    .map(String::from)
            }),
        }
    }
}

/// Which `imsg rpc` surface the child speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    V1,
    Legacy,
}

impl Protocol {
    pub fn label(self) -> &'static str {
        match self {
            Protocol::V1 => "v1",
            Protocol::Legacy => "legacy",
        }
    }
}

/// What `initialize` told us (v1), or the little we know about a legacy child.
#[derive(Debug, Clone, PartialEq)]
pub struct Negotiated {
    pub protocol: Protocol,
    pub version: Option<String>,
    /// v1: `database.ready`; legacy: assumed true (it cannot say).
    pub database_ready: bool,
    pub database_path: Option<String>,
    pub database_error: Option<String>,
    /// v1 `methods` (usable now); empty for legacy.
    pub methods: Vec<String>,
    /// The raw `initialize` result (Null for legacy).
    pub raw: Value,
}

impl Negotiated {
    /// Reads a v1 `initialize`/`status` result.
    pub fn from_status(raw: Value) -> Negotiated {
        let db = raw.get("database");
        Negotiated {
            protocol: Protocol::V1,
            version: raw.get("version").and_then(Value::as_str).map(String::from),
            database_ready: db
                .and_then(|d| d.get("ready"))
                .and_then(Value::as_bool)
                .unwrap_or(false),
            database_path: db
                .and_then(|d| d.get("path"))
                .and_then(Value::as_str)
                .map(String::from),
            database_error: db
                .and_then(|d| d.get("error"))
                .and_then(Value::as_str)
                .map(String::from),
            methods: raw
                .get("methods")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            raw,
        }
    }

    fn legacy() -> Negotiated {
        Negotiated {
            protocol: Protocol::Legacy,
            version: None,
            database_ready: true,
            database_path: None,
            database_error: None,
            methods: Vec::new(),
            raw: Value::Null,
        }
    }

    /// v1: the watch can be started (database ready and the method listed).
    pub fn can_watch(&self) -> bool {
        match self.protocol {
            Protocol::Legacy => true,
            Protocol::V1 => {
                self.database_ready
                    && (self.methods.is_empty()
                        || self.methods.iter().any(|m| m == "watch.subscribe"))
            }
        }
    }
}

/// Sends `initialize {protocol_version: 1}`; `-32601` selects the legacy surface.
pub async fn negotiate(client: &Client, timeout: Duration) -> Result<Negotiated, RpcError> {
    match client
        .call_with_timeout(Protocol::V1, &Request::Initialize, timeout)
        .await
    {
        Ok(result) => Ok(Negotiated::from_status(result)),
        Err(e) if e.is_method_not_found() => Ok(Negotiated::legacy()),
        Err(e) => Err(e),
    }
}

/// The documented parameter keys of the methods the gateway calls.
pub fn known_keys(protocol: Protocol, method: &str) -> Option<&'static [&'static str]> {
    const SEND_V1: &[&str] = &[
        "to",
        "chat_id",
        "chat_identifier",
        "chat_guid",
        "text",
        "file",
        "service",
        "region",
        "transport",
        "text_formatting",
        "reply_to",
        "allow_sms_fallback",
    ];
    const SEND_LEGACY: &[&str] = &[
        "to",
        "chat_id",
        "chat_identifier",
        "chat_guid",
        "text",
        "file",
        "service",
        "region",
        "transport",
    ];
    const WATCH_V1: &[&str] = &[
        "chat_id",
        "since_rowid",
        "participants",
        "start",
        "end",
        "attachments",
        "convert_attachments",
        "include_reactions",
        "debounce_ms",
        "buffer_limit",
    ];
    const WATCH_LEGACY: &[&str] = &[
        "chat_id",
        "since_rowid",
        "participants",
        "start",
        "end",
        "attachments",
        "convert_attachments",
        "include_reactions",
        "debounce_ms",
    ];
    match (protocol, method) {
        (Protocol::V1, "send") => Some(SEND_V1),
        (Protocol::Legacy, "send") => Some(SEND_LEGACY),
        (Protocol::V1, "watch.subscribe") => Some(WATCH_V1),
        (Protocol::Legacy, "watch.subscribe") => Some(WATCH_LEGACY),
        (_, "watch.unsubscribe") => Some(&["subscription"]),
        (_, "chats.list") => Some(&["limit", "unread_only"]),
        (Protocol::V1, "messages.after") => Some(&[
            "since_rowid",
            "chat_id",
            "limit",
            "attachments",
            "convert_attachments",
            "include_reactions",
        ]),
        (_, "messages.history") => Some(&[
            "chat_id",
            "limit",
            "participants",
            "start",
            "end",
            "attachments",
        ]),
        (Protocol::V1, "status") => Some(&[]),
        (Protocol::V1, "initialize") => Some(&["protocol_version"]),
        _ => None,
    }
}

/// Drops keys the protocol does not document for `method` (and JSON nulls, which v1 rejects).
/// Unknown methods pass through unchanged.
pub fn sanitize_params(protocol: Protocol, method: &str, params: Value) -> Value {
    let Some(keys) = known_keys(protocol, method) else {
        return params;
    };
    let Value::Object(map) = params else {
        return params;
    };
    let mut out = Map::new();
    for (k, v) in map {
        if v.is_null() {
            continue;
        }
        if keys.contains(&k.as_str()) {
            out.insert(k, v);
        } else {
            tracing::debug!(
                "not sending {method} param {k:?}: the {} protocol does not know it",
                protocol.label()
            );
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_request_carries_only_what_its_level_documents() {
        let send = Request::Send(json!({"chat_id": 3, "text": "hi", "reply_to": "G1",
                                        "text_formatting": null}));
        assert_eq!(
            send.params(Protocol::V1),
            json!({"chat_id": 3, "text": "hi", "reply_to": "G1"})
        );
        assert_eq!(
            send.params(Protocol::Legacy),
            json!({"chat_id": 3, "text": "hi"})
        );
        let from_start = Request::Subscribe {
            after: Some(0),
            attachments: true,
        };
        assert_eq!(from_start.method(), "watch.subscribe");
        assert_eq!(
            from_start.params(Protocol::Legacy),
            json!({"since_rowid": -1, "attachments": true, "include_reactions": true})
        );
        let at_tail = Request::Subscribe {
            after: None,
            attachments: false,
        };
        assert_eq!(
            at_tail.params(Protocol::V1),
            json!({"attachments": false, "include_reactions": true})
        );
        let history = Request::History {
            chat_id: 5,
            limit: 1,
            attachments: false,
            end: None,
        };
        assert_eq!(
            history.params(Protocol::Legacy),
            json!({"chat_id": 5, "limit": 1, "attachments": false})
        );
        assert_eq!(
            Request::After {
                since_rowid: 9,
                limit: 500,
                attachments: false
            }
            .params(Protocol::V1),
            json!({"since_rowid": 9, "limit": 500, "attachments": false,
                   "include_reactions": true})
        );
        assert_eq!(
            Request::Initialize.params(Protocol::V1),
            json!({"protocol_version": 1})
        );
        assert_eq!(
            Request::Unsubscribe { subscription: 4 }.params(Protocol::V1),
            json!({"subscription": 4})
        );
    }

    #[test]
    fn error_codes_are_told_apart_and_keep_their_number() {
        for code in [
            -32601, -32602, -32603, -32000, -32001, -32002, -32004, -32003,
        ] {
            assert_eq!(ErrorCode::from_code(code).code(), code);
        }
        assert_eq!(ErrorCode::from_code(-32003), ErrorCode::Other(-32003));
        let remote = |code: i64, data: Value| RpcError::Remote {
            code,
            message: "x".into(),
            data: Some(data),
        };
        assert!(remote(-32603, json!("invalid utf8")).row_level());
        assert!(!remote(-32002, json!({})).row_level());
        assert!(!remote(-32601, json!("messages.after")).row_level());
        assert!(!RpcError::Closed.row_level());
        assert!(remote(-32001, json!({"disposition": "still_in_flight"})).lane_blocked());
        assert!(remote(-32004, json!({})).lane_blocked());
        assert!(!remote(-32001, json!({"disposition": "may_have_completed"})).lane_blocked());
        assert!(remote(-32001, json!({"disposition": "may_have_completed"})).may_have_completed());
    }

    #[test]
    fn results_read_as_the_spec_writes_them() {
        let page = Page::from_result(json!({"messages": [{"id": 7}, {"id": 9}],
                                            "next_rowid": 9, "has_more": true}));
        assert_eq!(page.rowids().collect::<Vec<_>>(), vec![7, 9]);
        assert_eq!((page.next_rowid, page.has_more), (Some(9), true));
        assert_eq!(Page::from_result(json!({})), Page::default());
        assert_eq!(
            Subscribed::from_result(&json!({"subscription": 3})),
            Ok(Subscribed { subscription: 3 })
        );
        assert!(Subscribed::from_result(&json!({"ok": true})).is_err());
        assert_eq!(
            ChatIds::from_result(&json!({"chats": [
                {"id": 1, "last_message_at": "2026-01-01T00:00:00.000Z"}, {"name": "no id"}]})),
            ChatIds(vec![(1, Some("2026-01-01T00:00:00.000Z".into()))])
        );
        assert_eq!(
            SendReceipt::from_result(&json!({"ok": true, "id": 41, "guid": "G"})),
            SendReceipt {
                row_id: Some(41),
                guid: Some("G".into())
            }
        );
        assert_eq!(
            SendReceipt::from_result(&json!({"ok": true, "message_id": "M", "guid": " "})).guid,
            Some("M".into())
        );
    }
}
