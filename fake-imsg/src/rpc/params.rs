//! Params readers: the strict v1 validator (closed key sets, alias conflicts, exact type
//! messages; imsg-rpc-v1.md §1.5/§1.6) and the lenient legacy coercions (imsg-rpc.md §5).
//! Pure functions over the params object.

use serde_json::{Map, Value};

use super::errors::RpcError;

/// Strict v1 params of one method. Key groups list a canonical key and its aliases.
pub struct Strict<'a> {
    map: &'a Map<String, Value>,
}

type R<T> = Result<T, RpcError>;

fn bad(msg: String) -> RpcError {
    RpcError::invalid_params(msg)
}

impl<'a> Strict<'a> {
    /// Checks the closed key set (first unknown key in sorted order) and alias conflicts.
    pub fn new(method: &str, map: &'a Map<String, Value>, groups: &[&[&str]]) -> R<Strict<'a>> {
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort();
        for k in keys {
            if !groups.iter().any(|g| g.contains(&k.as_str())) {
                return Err(bad(format!("unknown {method} param: {k}")));
            }
        }
        for g in groups {
            if g.iter().filter(|k| map.contains_key(**k)).count() > 1 {
                return Err(bad(format!("use only one of {}", g.join(", "))));
            }
        }
        Ok(Strict { map })
    }

    /// The key (as spelled by the caller) and value of a group, if supplied.
    pub fn get(&self, group: &[&'static str]) -> Option<(&'static str, &'a Value)> {
        group.iter().find_map(|k| self.map.get(*k).map(|v| (*k, v)))
    }

    pub fn has(&self, group: &[&'static str]) -> bool {
        self.get(group).is_some()
    }

    fn present(&self, group: &[&'static str]) -> R<Option<(&'static str, &'a Value)>> {
        match self.get(group) {
            Some((k, Value::Null)) => Err(bad(format!("{k} must not be null"))),
            other => Ok(other),
        }
    }

    pub fn int(&self, group: &[&'static str]) -> R<Option<i64>> {
        match self.present(group)? {
            None => Ok(None),
            Some((k, v)) => match v.as_i64() {
                Some(n) if v.is_i64() || v.is_u64() => Ok(Some(n)),
                _ => Err(bad(format!("{k} must be an integer"))),
            },
        }
    }

    pub fn bool(&self, group: &[&'static str]) -> R<Option<bool>> {
        match self.present(group)? {
            None => Ok(None),
            Some((_, Value::Bool(b))) => Ok(Some(*b)),
            Some((k, _)) => Err(bad(format!("{k} must be a boolean"))),
        }
    }

    pub fn string(&self, group: &[&'static str]) -> R<Option<String>> {
        match self.present(group)? {
            None => Ok(None),
            Some((_, Value::String(s))) => Ok(Some(s.clone())),
            Some((k, _)) => Err(bad(format!("{k} must be a string"))),
        }
    }

    pub fn strings(&self, group: &[&'static str]) -> R<Option<Vec<String>>> {
        match self.present(group)? {
            None => Ok(None),
            Some((k, Value::Array(a))) => a
                .iter()
                .map(|e| e.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| bad(format!("{k} must be an array of strings"))),
            Some((k, _)) => Err(bad(format!("{k} must be an array of strings"))),
        }
    }

    pub fn objects(&self, group: &[&'static str]) -> R<Option<Vec<Value>>> {
        match self.present(group)? {
            None => Ok(None),
            Some((_, Value::Array(a))) if a.iter().all(Value::is_object) => Ok(Some(a.clone())),
            Some((k, _)) => Err(bad(format!("{k} must be an array of objects"))),
        }
    }

    /// An optional positive integer (`<key> must be a positive integer` otherwise).
    pub fn positive(&self, group: &[&'static str]) -> R<Option<i64>> {
        match self.int(group)? {
            Some(n) if n <= 0 => Err(bad(format!("{} must be a positive integer", group[0]))),
            other => Ok(other),
        }
    }

    /// An optional ISO 8601 date (apple ns); bad → `Invalid ISO8601 date: <v>` (-32602).
    pub fn date(&self, group: &[&'static str]) -> R<Option<i64>> {
        match self.string(group)? {
            None => Ok(None),
            Some(s) => crate::payload::parse_iso8601(&s)
                .map(Some)
                .ok_or_else(|| bad(format!("Invalid ISO8601 date: {s}"))),
        }
    }
}

/// Legacy coercions over a lenient params object.
pub struct Lenient<'a> {
    pub map: &'a Map<String, Value>,
}

impl<'a> Lenient<'a> {
    fn first(&self, keys: &[&str]) -> Option<&'a Value> {
        keys.iter().find_map(|k| self.map.get(*k))
    }

    /// Numbers become decimal strings; other non-strings count as missing.
    pub fn string(&self, keys: &[&str]) -> Option<String> {
        match self.first(keys)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(match n.as_i64() {
                Some(i) => i.to_string(),
                None => n.to_string(),
            }),
            _ => None,
        }
    }

    /// Numbers truncate toward zero; integer strings parse; anything else is missing.
    pub fn int(&self, keys: &[&str]) -> Option<i64> {
        match self.first(keys)? {
            Value::Number(n) => n.as_i64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite())
                    .map(|f| f.trunc() as i64)
            }),
            Value::String(s) => s.parse::<i64>().ok(),
            _ => None,
        }
    }

    pub fn bool(&self, keys: &[&str]) -> Option<bool> {
        match self.first(keys)? {
            Value::Bool(b) => Some(*b),
            Value::Number(n) => Some(n.as_f64() != Some(0.0)),
            Value::String(s) if s == "true" => Some(true),
            Value::String(s) if s == "false" => Some(false),
            _ => None,
        }
    }

    pub fn strings(&self, keys: &[&str]) -> Vec<String> {
        match self.first(keys) {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|e| match e {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect(),
            Some(Value::String(s)) => s
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        }
    }

    pub fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn strict_keys_and_types() {
        let m = obj(json!({"zeta": 1, "extra": 2, "limit": 1}));
        let e = Strict::new("messages.history", &m, &[&["limit"]])
            .err()
            .unwrap();
        assert_eq!(e.data, json!("unknown messages.history param: extra"));
        let m = obj(json!({"unread_only": true, "unreadOnly": false}));
        let e = Strict::new("chats.list", &m, &[&["unread_only", "unreadOnly"]])
            .err()
            .unwrap();
        assert_eq!(e.data, json!("use only one of unread_only, unreadOnly"));
        let m = obj(json!({"limit": 1.0, "b": 1, "s": 3, "n": null, "a": ["x", 1]}));
        let p = Strict::new("m", &m, &[&["limit"], &["b"], &["s"], &["n"], &["a"]]).unwrap();
        assert_eq!(
            p.int(&["limit"]).unwrap_err().data,
            json!("limit must be an integer")
        );
        assert_eq!(
            p.bool(&["b"]).unwrap_err().data,
            json!("b must be a boolean")
        );
        assert_eq!(
            p.string(&["s"]).unwrap_err().data,
            json!("s must be a string")
        );
        assert_eq!(p.int(&["n"]).unwrap_err().data, json!("n must not be null"));
        assert_eq!(
            p.strings(&["a"]).unwrap_err().data,
            json!("a must be an array of strings")
        );
        let m = obj(json!({"debounceMs": true}));
        let p = Strict::new("watch.subscribe", &m, &[&["debounce_ms", "debounceMs"]]).unwrap();
        assert_eq!(
            p.int(&["debounce_ms", "debounceMs"]).unwrap_err().data,
            json!("debounceMs must be an integer")
        );
    }

    #[test]
    fn lenient_coercions() {
        let m = obj(
            json!({"a": 10.9, "b": "42", "c": "4.2", "d": 1, "e": "x, ,y", "f": [1, "z", null]}),
        );
        let p = Lenient { map: &m };
        assert_eq!(p.int(&["a"]), Some(10));
        assert_eq!(p.int(&["b"]), Some(42));
        assert_eq!(p.int(&["c"]), None);
        assert_eq!(p.bool(&["d"]), Some(true));
        assert_eq!(p.string(&["d"]), Some("1".into()));
        assert_eq!(p.strings(&["e"]), vec!["x", "y"]);
        assert_eq!(p.strings(&["f"]), vec!["1", "z"]);
    }
}
