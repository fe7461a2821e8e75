//! JSON-RPC error values with imsg's codes, messages and `data` shapes
//! (imsg-rpc-v1.md §2, imsg-rpc.md §4), and the envelopes that carry them.

use serde_json::{json, Map, Value};

/// The detail text of every "bridge not started" answer.
pub const BRIDGE_NOT_STARTED: &str =
    "The bridge is not started. Run imsg launch explicitly before using bridge methods.";
/// -32002 detail when the database file does not exist.
pub const DB_MISSING: &str =
    "The configured Messages database does not exist. Create or copy chat.db at this path, then retry.";
/// -32002 detail when the file exists but cannot be opened.
pub const DB_UNREADABLE: &str = "The configured Messages database could not be opened read-only. Verify the path and grant Full Disk Access to the supervising process, then retry.";

/// One JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: &'static str,
    pub data: Value,
}

impl RpcError {
    pub fn new(code: i64, message: &'static str, data: impl Into<Value>) -> RpcError {
        RpcError {
            code,
            message,
            data: data.into(),
        }
    }
    pub fn parse_error(data: &str) -> RpcError {
        RpcError::new(-32700, "Parse error", data)
    }
    pub fn invalid_request(data: &str) -> RpcError {
        RpcError::new(-32600, "Invalid Request", data)
    }
    pub fn method_not_found(method: &str) -> RpcError {
        RpcError::new(-32601, "Method not found", method)
    }
    pub fn invalid_params(data: impl Into<String>) -> RpcError {
        RpcError::new(-32602, "Invalid params", data.into())
    }
    pub fn internal(data: impl Into<String>) -> RpcError {
        RpcError::new(-32603, "Internal error", data.into())
    }
    pub fn busy(data: &str) -> RpcError {
        RpcError::new(-32000, "Server busy", data)
    }
    /// -32002 with the path and the detail text.
    pub fn db_unavailable(path: &str, detail: &str) -> RpcError {
        RpcError::new(
            -32002,
            "Database unavailable",
            json!({"path": path, "detail": detail, "retryable": true}),
        )
    }
    pub fn bridge_unavailable() -> RpcError {
        RpcError::new(
            -32003,
            "Bridge unavailable",
            json!({"detail": BRIDGE_NOT_STARTED, "retryable": true}),
        )
    }
    pub fn bridge_events_unavailable() -> RpcError {
        RpcError::new(
            -32003,
            "Bridge events unavailable",
            json!({"detail": "The bridge event log is unavailable because the bridge is not started. Run imsg launch explicitly before using bridge methods.", "retryable": true}),
        )
    }
    /// -32603 "Delivery failed before dispatch" (retry-safe).
    pub fn not_started(transport: &str, operation: &str, detail: &str) -> RpcError {
        RpcError::new(
            -32603,
            "Delivery failed before dispatch",
            delivery_data("not_started", transport, operation, detail),
        )
    }
    /// -32001 "Delivery outcome unknown".
    pub fn outcome_unknown(disposition: &str, operation: &str, detail: &str) -> RpcError {
        RpcError::new(
            -32001,
            "Delivery outcome unknown",
            delivery_data(disposition, "applescript", operation, detail),
        )
    }
}

/// The delivery data object shared by -32001, -32004 and not-started -32603.
pub fn delivery_data(disposition: &str, transport: &str, operation: &str, detail: &str) -> Value {
    json!({
        "retry_safe": disposition == "not_started",
        "disposition": disposition,
        "transport": transport,
        "operation": operation,
        "detail": detail,
    })
}

/// -32004 built from the poisoning failure's delivery data.
pub fn lane_blocked(poison: &Value) -> RpcError {
    let mut data = poison.clone();
    let op = data
        .get("operation")
        .and_then(Value::as_str)
        .unwrap_or("send")
        .to_string();
    data["detail"] = Value::String(format!(
        "A prior {op} remains in flight. Restart the RPC child before sending another mutation."
    ));
    RpcError::new(-32004, "Mutation lane blocked", data)
}

/// `{"jsonrpc":"2.0","id":..,"result":..}`
pub fn result_envelope(id: &Value, result: Value) -> Value {
    // Built by hand: `json!` would serialize `result` into a fresh copy (`to_value`), which
    // for a chat list costs more than the query.
    envelope([
        ("jsonrpc", Value::from("2.0")),
        ("id", id.clone()),
        ("result", result),
    ])
}

/// `{"jsonrpc":"2.0","id":..,"error":{..}}`
pub fn error_envelope(id: &Value, e: &RpcError) -> Value {
    json!({"jsonrpc": "2.0", "id": id,
           "error": {"code": e.code, "message": e.message, "data": e.data}})
}

/// A server notification.
pub fn notification(method: &str, params: Value) -> Value {
    envelope([
        ("jsonrpc", Value::from("2.0")),
        ("method", Value::from(method)),
        ("params", params),
    ])
}

/// An object of these members, moved in (the same object `json!` builds, without copying).
fn envelope<const N: usize>(members: [(&str, Value); N]) -> Value {
    let mut m = Map::new();
    for (k, v) in members {
        m.insert(k.to_string(), v);
    }
    Value::Object(m)
}
