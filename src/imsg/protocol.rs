//! Protocol negotiation and the per-protocol key sets.
//!
//! `initialize {protocol_version: 1}` answered means protocol v1 (imsg 0.14+, strict keys);
//! `-32601` means the legacy 0.4–0.9 surface. v1 rejects any undocumented key, so every
//! request we build goes through [`sanitize_params`], which keeps only the keys that protocol
//! documents for that method.

use serde_json::{json, Map, Value};
use std::time::Duration;

use super::client::{Client, RpcError};

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
        .request_with_timeout("initialize", json!({"protocol_version": 1}), timeout)
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
