//! Property: any input line (random bytes, deep nesting, huge strings, invalid UTF-8, JSON
//! token soup) gets at most one well-formed response, and the server keeps serving: a valid
//! request after it still answers. One server per protocol serves every case.

mod rpc_support;

use std::sync::{Mutex, OnceLock};

use proptest::prelude::*;
use rpc_support::*;
use serde_json::{json, Value};

struct Server {
    _fixture: Fixture,
    rpc: Rpc,
    n: u64,
}

fn server(legacy: bool) -> &'static Mutex<Server> {
    static V1: OnceLock<Mutex<Server>> = OnceLock::new();
    static LEGACY: OnceLock<Mutex<Server>> = OnceLock::new();
    let cell = if legacy { &LEGACY } else { &V1 };
    cell.get_or_init(|| {
        let f = Fixture::new();
        let rpc = if legacy {
            Rpc::legacy(&f.db)
        } else {
            Rpc::v1(&f.db)
        };
        Mutex::new(Server {
            _fixture: f,
            rpc,
            n: 0,
        })
    })
}

fn well_formed(v: &Value) -> bool {
    let o = match v.as_object() {
        Some(o) => o,
        None => return false,
    };
    o.get("jsonrpc") == Some(&json!("2.0"))
        && o.contains_key("id")
        && (o.contains_key("result")
            ^ o.get("error").is_some_and(|e| {
                e["code"].is_i64() && e["message"].is_string() && e.get("data").is_some()
            }))
}

/// Sends the line, then a sentinel on the control lane; returns the lines in between.
fn probe(legacy: bool, line: &[u8]) -> Vec<String> {
    let mut s = server(legacy).lock().unwrap_or_else(|e| e.into_inner());
    s.n += 1;
    let sentinel = json!(format!("sentinel-{}", s.n));
    s.rpc.send_raw(line);
    s.rpc
        .send(&json!({"jsonrpc": "2.0", "id": sentinel, "method": "fuzz.sentinel"}));
    let mut between = Vec::new();
    loop {
        let l = s.rpc.raw_line();
        if let Ok(v) = serde_json::from_str::<Value>(&l) {
            if v.get("id") == Some(&sentinel) {
                assert_eq!(v["error"]["code"], -32601, "the server still answers: {v}");
                return between;
            }
        }
        between.push(l);
    }
}

fn check(line: Vec<u8>) -> Result<(), TestCaseError> {
    let line: Vec<u8> = line
        .into_iter()
        .map(|b| if b == b'\n' { b' ' } else { b })
        .collect();
    for legacy in [false, true] {
        let out = probe(legacy, &line);
        prop_assert!(out.len() <= 1, "more than one response: {out:?}");
        for l in &out {
            let v: Value =
                serde_json::from_str(l).map_err(|e| TestCaseError::fail(format!("{e}: {l}")))?;
            prop_assert!(well_formed(&v), "malformed response {l}");
        }
    }
    Ok(())
}

fn soup() -> impl Strategy<Value = Vec<u8>> {
    let tokens = prop::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "\"jsonrpc\"",
        "\"2.0\"",
        "\"id\"",
        "1",
        "-0.5e3",
        "null",
        "true",
        "\"method\"",
        "\"params\"",
        "\"fuzz\"",
        "\"x\\u0000\"",
        " ",
        "\"\\ud800\"",
    ]);
    prop::collection::vec(tokens, 0..40).prop_map(|t| t.concat().into_bytes())
}

fn nested() -> impl Strategy<Value = Vec<u8>> {
    (1usize..5000, any::<bool>()).prop_map(|(d, obj)| {
        let (open, close) = if obj { ("{\"a\":", "}") } else { ("[", "]") };
        let mut s = open.repeat(d);
        s.push('1');
        s.push_str(&close.repeat(d));
        s.into_bytes()
    })
}

fn huge() -> impl Strategy<Value = Vec<u8>> {
    (0usize..3_000_000, any::<bool>()).prop_map(|(n, with_id)| {
        let id = if with_id { "\"id\":9," } else { "" };
        format!(
            "{{\"jsonrpc\":\"2.0\",{id}\"method\":\"fuzz.huge\",\"params\":{{\"s\":\"{}\"}}}}",
            "x".repeat(n)
        )
        .into_bytes()
    })
}

fn bad_utf8() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(128u8..=255, 1..20).prop_map(|b| {
        let mut v = br#"{"jsonrpc":"2.0","id":1,"method":""#.to_vec();
        v.extend(b);
        v.extend(br#""}"#);
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(line in prop::collection::vec(any::<u8>(), 0..2000)) {
        check(line)?;
    }

    #[test]
    fn json_token_soup(line in soup()) {
        check(line)?;
    }

    #[test]
    fn deep_nesting(line in nested()) {
        check(line)?;
    }

    #[test]
    fn invalid_utf8(line in bad_utf8()) {
        check(line)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn huge_strings(line in huge()) {
        check(line)?;
    }
}
