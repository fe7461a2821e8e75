//! Line framing and the request parser: turns one stdin line into a request or a framing
//! error, following the validation order of imsg-rpc-v1.md §1.2 (v1) or imsg-rpc.md §2
//! (legacy). Pure: bytes in, plain data out.

use serde_json::{Map, Value};

use super::errors::RpcError;

/// Which wire protocol the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// imsg 0.14+ (strict).
    V1,
    /// imsg 0.9 (lenient).
    Legacy,
}

/// The outcome of parsing one input line.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// Blank line: no output at all.
    Blank,
    /// A framing error, always answered (with this id, usually null).
    Framing { id: Value, error: RpcError },
    /// A request; `id` is `None` for a notification.
    Request(Request),
}

/// A well-framed request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: Option<Value>,
    pub method: String,
    /// `Err` when v1 params were present but not an object (answered only for identified
    /// requests); legacy coerces a non-object to `{}`.
    pub params: Result<Map<String, Value>, RpcError>,
}

/// Foundation's text for a top-level scalar, which imsg's parser rejects as a fragment.
const FRAGMENT_TEXT: &str =
    "JSON text did not start with array or object and option to allow fragments not set.";

/// Parses one line (without its trailing newline) per the protocol's rules.
pub fn parse_line(line: &[u8], protocol: Protocol) -> Parsed {
    let text = match std::str::from_utf8(line) {
        Ok(t) => t,
        Err(_) => {
            let data = match protocol {
                Protocol::V1 => "invalid utf8",
                Protocol::Legacy => FOUNDATION_PARSE_TEXT,
            };
            return Parsed::Framing {
                id: Value::Null,
                error: RpcError::parse_error(data),
            };
        }
    };
    let text = text.trim();
    if text.is_empty() {
        return Parsed::Blank;
    }
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let data = match protocol {
                Protocol::V1 => format!("{e}"),
                Protocol::Legacy => FOUNDATION_PARSE_TEXT.to_string(),
            };
            return Parsed::Framing {
                id: Value::Null,
                error: RpcError::parse_error(&data),
            };
        }
    };
    let obj = match value {
        Value::Object(o) => o,
        Value::Array(_) => {
            return Parsed::Framing {
                id: Value::Null,
                error: RpcError::invalid_request("request must be an object"),
            }
        }
        _ => {
            let data = match protocol {
                Protocol::V1 => FRAGMENT_TEXT,
                Protocol::Legacy => FOUNDATION_PARSE_TEXT,
            };
            return Parsed::Framing {
                id: Value::Null,
                error: RpcError::parse_error(data),
            };
        }
    };
    match protocol {
        Protocol::V1 => parse_v1(obj),
        Protocol::Legacy => parse_legacy(obj),
    }
}

/// Foundation's generic parse failure text (legacy emits it for every parse failure).
pub const FOUNDATION_PARSE_TEXT: &str =
    "The data couldn\u{2019}t be read because it isn\u{2019}t in the correct format.";

fn parse_v1(mut obj: Map<String, Value>) -> Parsed {
    let id = match obj.remove("id") {
        None => None,
        Some(v @ (Value::String(_) | Value::Number(_) | Value::Null)) => Some(v),
        Some(_) => {
            return Parsed::Framing {
                id: Value::Null,
                error: RpcError::invalid_request("id must be a string, number, or null"),
            }
        }
    };
    let echo = || id.clone().unwrap_or(Value::Null);
    match obj.get("jsonrpc") {
        Some(Value::String(s)) if s == "2.0" => {}
        _ => {
            return Parsed::Framing {
                id: echo(),
                error: RpcError::invalid_request("jsonrpc must be exactly 2.0"),
            }
        }
    }
    let method = match obj.get("method") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            return Parsed::Framing {
                id: echo(),
                error: RpcError::invalid_request("method is required"),
            }
        }
    };
    let params = match obj.remove("params") {
        None => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(RpcError::invalid_params(
            "params must be an object when present",
        )),
    };
    Parsed::Request(Request { id, method, params })
}

fn parse_legacy(mut obj: Map<String, Value>) -> Parsed {
    let id = obj.remove("id");
    let echo = || id.clone().unwrap_or(Value::Null);
    if let Some(Value::String(s)) = obj.get("jsonrpc") {
        if s != "2.0" {
            return Parsed::Framing {
                id: echo(),
                error: RpcError::invalid_request("jsonrpc must be 2.0"),
            };
        }
    }
    let method = match obj.get("method") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            return Parsed::Framing {
                id: echo(),
                error: RpcError::invalid_request("method is required"),
            }
        }
    };
    let params = match obj.remove("params") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    Parsed::Request(Request {
        id,
        method,
        params: Ok(params),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn framing(line: &str, p: Protocol) -> (Value, i64, Value) {
        match parse_line(line.as_bytes(), p) {
            Parsed::Framing { id, error } => (id, error.code, error.data),
            other => panic!("expected framing error, got {other:?}"),
        }
    }

    #[test]
    fn v1_order() {
        let v1 = Protocol::V1;
        assert_eq!(parse_line(b"  \r", v1), Parsed::Blank);
        assert_eq!(
            framing_bytes(b"\xff{}", v1),
            (Value::Null, -32700, json!("invalid utf8"))
        );
        assert_eq!(framing("{", v1).1, -32700);
        assert_eq!(framing("42", v1).1, -32700);
        assert_eq!(
            framing("[1]", v1),
            (Value::Null, -32600, json!("request must be an object"))
        );
        assert_eq!(
            framing(r#"{"id":true,"jsonrpc":"2.0","method":"x"}"#, v1),
            (
                Value::Null,
                -32600,
                json!("id must be a string, number, or null")
            )
        );
        assert_eq!(
            framing(r#"{"id":3,"method":"x"}"#, v1),
            (json!(3), -32600, json!("jsonrpc must be exactly 2.0"))
        );
        assert_eq!(
            framing(r#"{"id":"a","jsonrpc":"2.0","method":""}"#, v1),
            (json!("a"), -32600, json!("method is required"))
        );
        match parse_line(br#"{"jsonrpc":"2.0","method":"m","params":null}"#, v1) {
            Parsed::Request(r) => {
                assert_eq!(r.id, None);
                assert_eq!(r.params.unwrap_err().code, -32602);
            }
            other => panic!("{other:?}"),
        }
        match parse_line(br#"{"jsonrpc":"2.0","id":1.5,"method":"m"}"#, v1) {
            Parsed::Request(r) => assert_eq!(r.id, Some(json!(1.5))),
            other => panic!("{other:?}"),
        }
    }

    fn framing_bytes(line: &[u8], p: Protocol) -> (Value, i64, Value) {
        match parse_line(line, p) {
            Parsed::Framing { id, error } => (id, error.code, error.data),
            other => panic!("expected framing error, got {other:?}"),
        }
    }

    #[test]
    fn legacy_is_lenient() {
        let l = Protocol::Legacy;
        match parse_line(
            br#"{"jsonrpc":2.0,"id":{"a":1},"method":"m","params":[1]}"#,
            l,
        ) {
            Parsed::Request(r) => {
                assert_eq!(r.id, Some(json!({"a":1})));
                assert_eq!(r.params.unwrap(), Map::new());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            framing(r#"{"jsonrpc":"1.0","method":"m"}"#, l),
            (Value::Null, -32600, json!("jsonrpc must be 2.0"))
        );
        assert_eq!(framing("null", l).1, -32700);
    }
}
