//! JSON5 text to a `serde_json::Value`, refusing three things that `json5::from_str::<Value>`
//! lets through: a key repeated in one object (json5 keeps the last one silently), a
//! non-finite number (`NaN`, `Infinity`, or a literal too large for an f64 such as `1e309`:
//! serde_json has no such numbers and turned them into `null`, which the walk then read as
//! "use the default"), and nesting deep enough to overflow the stack in json5's recursive
//! descent.
//!
//! The text goes through json5's own `Deserializer` once, but into a tree built by the
//! [`Node`] seed here instead of `Value`'s `Deserialize`. The seed sees every key as json5
//! decoded it, every number as parsed, and every object or array as it opens, so all three
//! checks use json5's reading of strings, escapes, comments and identifiers rather than a
//! second scanner that could disagree with it. Depth is refused as the 65th container opens,
//! before json5 recurses into it. A non-finite number stops the parse too, so it is reported
//! alone: json5's error then carries its position, from which it is quoted as written
//! (`1e309`, not the infinity it parsed to).

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The deepest nesting of objects and arrays accepted; the real config needs five levels.
pub const MAX_DEPTH: usize = 64;

/// Why the text could not be turned into a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Malformed JSON5, in json5's words (with line and column).
    Syntax(String),
    /// The text nests objects and arrays deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A number that is not finite, at `path`, as written in the text.
    NonFinite { path: String, literal: String },
}

/// The parsed tree and the duplicate keys found in it (key paths, in document order). With
/// duplicates the tree holds the last value of each key, as json5 would.
#[derive(Debug)]
pub struct Parsed {
    pub value: Value,
    pub duplicates: Vec<String>,
}

/// Parses `text` as one JSON5 value.
pub fn parse(text: &str) -> Result<Parsed, ParseError> {
    let mut state = State::default();
    let mut de = json5::Deserializer::from_str(text);
    let result = Node { state: &mut state }.deserialize(&mut de);
    let value = match result {
        Ok(v) => v,
        Err(e) => {
            return Err(match state.stopped.take() {
                Some(Stop::TooDeep) => ParseError::TooDeep,
                Some(Stop::NonFinite { path, value }) => ParseError::NonFinite {
                    path,
                    literal: e
                        .position()
                        .and_then(|p| literal_at(text, p))
                        .unwrap_or_else(|| describe(value)),
                },
                None => ParseError::Syntax(e.to_string()),
            });
        }
    };
    // The Deserializer has no public way to ask whether input is left over, so the trailing
    // text check is json5::from_str's. It reparses the same first value, which the pass
    // above has just shown to be within MAX_DEPTH, and then stops at what follows it.
    json5::from_str::<IgnoredAny>(text).map_err(|e| ParseError::Syntax(e.to_string()))?;
    Ok(Parsed {
        value,
        duplicates: state.duplicates,
    })
}

/// One step of a key path.
#[derive(Debug)]
enum Seg {
    Key(String),
    Index(usize),
}

/// Why the seed stopped the parse (json5 then reports a custom error, which `parse` maps).
#[derive(Debug)]
enum Stop {
    TooDeep,
    NonFinite { path: String, value: f64 },
}

#[derive(Debug, Default)]
struct State {
    /// Where the value being read sits; its length is the number of containers around it.
    path: Vec<Seg>,
    duplicates: Vec<String>,
    stopped: Option<Stop>,
}

impl State {
    /// The current key path in the walk's spelling: `imessage.allowFrom[0]`.
    fn path_string(&self) -> String {
        let mut out = String::new();
        for seg in &self.path {
            match seg {
                Seg::Key(k) if out.is_empty() => out.push_str(k),
                Seg::Key(k) => {
                    out.push('.');
                    out.push_str(k);
                }
                Seg::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }

    fn stop<E: de::Error>(&mut self, why: Stop) -> E {
        self.stopped = Some(why);
        // Never shown: `parse` replaces it using `stopped`.
        E::custom("stopped by the config reader")
    }

    /// Called as an object or array opens, before anything inside it is read.
    fn enter<E: de::Error>(&mut self) -> Result<(), E> {
        if self.path.len() >= MAX_DEPTH {
            return Err(self.stop(Stop::TooDeep));
        }
        Ok(())
    }
}

/// A seed that reads one value at the current path of `state`; also its own visitor.
struct Node<'s> {
    state: &'s mut State,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON5 value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Value, E> {
        match serde_json::Number::from_f64(f) {
            Some(n) => Ok(Value::Number(n)),
            None => {
                let path = self.state.path_string();
                Err(self.state.stop(Stop::NonFinite { path, value: f }))
            }
        }
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_string()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.state.enter()?;
        let mut items = Vec::new();
        loop {
            self.state.path.push(Seg::Index(items.len()));
            let item = seq.next_element_seed(Node {
                state: &mut *self.state,
            })?;
            self.state.path.pop();
            match item {
                Some(v) => items.push(v),
                None => break,
            }
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.state.enter()?;
        let mut obj = Map::new();
        // Keys already reported here, so a key written three times is reported once.
        let mut reported: HashSet<String> = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            self.state.path.push(Seg::Key(key.clone()));
            let value = map.next_value_seed(Node {
                state: &mut *self.state,
            })?;
            if obj.insert(key.clone(), value).is_some() && reported.insert(key) {
                let path = self.state.path_string();
                self.state.duplicates.push(path);
            }
            self.state.path.pop();
        }
        Ok(Value::Object(obj))
    }
}

/// The number as written at `pos` (json5 reports a number's error where its sign or first
/// digit is), so `1e309` is shown as written and not as the infinity it parses to.
fn literal_at(text: &str, pos: json5::Position) -> Option<String> {
    let start = offset_of(text, pos)?;
    let literal: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        .collect();
    (!literal.is_empty()).then_some(literal)
}

/// The byte offset of a json5 `Position`: the inverse of `Position::from_offset`, counting
/// lines and columns the same way (CR LF is one line break; columns count chars).
fn offset_of(text: &str, pos: json5::Position) -> Option<usize> {
    let (mut line, mut column) = (0, 0);
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if line == pos.line && column == pos.column {
            return Some(i);
        }
        if json5::char::is_json5_line_terminator(c) {
            if c == '\r' && chars.peek().is_some_and(|&(_, n)| n == '\n') {
                chars.next();
            }
            line += 1;
            column = 0;
        } else {
            column += 1;
        }
    }
    (line == pos.line && column == pos.column).then_some(text.len())
}

/// A non-finite number in JSON5's spelling, for when its text cannot be found.
fn describe(f: f64) -> String {
    match f {
        f if f.is_nan() => "NaN".to_string(),
        f if f > 0.0 => "Infinity".to_string(),
        _ => "-Infinity".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dups(text: &str) -> Vec<String> {
        parse(text).unwrap().duplicates
    }

    #[test]
    fn config_duplicate_keys_are_found_with_their_path() {
        assert_eq!(dups("{a: 1, a: 2}"), ["a"]);
        assert_eq!(dups("{a: {b: 1, c: 2, b: 3}}"), ["a.b"]);
        // Quoted, single-quoted, unquoted and escaped spellings are the same key.
        assert_eq!(dups(r#"{a: 1, "a": 2, 'a': 3, "\u0061": 4}"#), ["a"]);
        assert_eq!(dups(r"{\u0061b: 1, ab: 2}"), ["ab"]);
        // Each key reported once, in document order.
        assert_eq!(dups("{b: 1, a: 1, b: 2, a: 2, b: 3}"), ["b", "a"]);
        assert_eq!(dups("{x: [{k: 1}, {j: 1, k: 1, k: 2}]}"), ["x[1].k"]);
        // The last value wins, as it did before.
        assert_eq!(
            parse("{a: 1, a: 2}").unwrap().value,
            serde_json::json!({"a": 2})
        );
    }

    #[test]
    fn config_not_duplicates() {
        // The same key in sibling objects, in array elements, and keys or braces inside
        // strings and comments are not duplicates.
        assert!(dups("{a: {k: 1}, b: {k: 1}}").is_empty());
        assert!(dups("[{k: 1}, {k: 2}]").is_empty());
        assert!(dups(r#"{a: "a: 1, a: 2 } {", b: 'a', c: "\"a\": 1"}"#).is_empty());
        assert!(dups("{a: 1, // a: 2 }\n /* a: 3, { */ b: 2}").is_empty());
        assert!(dups("{a: 1, A: 2, 'a ': 3}").is_empty());
    }

    #[test]
    fn config_depth_is_bounded_before_recursing() {
        let nest = |n: usize, open: &str, close: &str| open.repeat(n) + &close.repeat(n);
        assert!(parse(&nest(MAX_DEPTH, "[", "]")).is_ok());
        assert!(parse(&nest(MAX_DEPTH - 1, "{a:", "}").replace("{a:}", "{a:[]}")).is_ok());
        assert_eq!(
            parse(&nest(MAX_DEPTH + 1, "[", "]")).unwrap_err(),
            ParseError::TooDeep
        );
        assert_eq!(
            parse(&(nest(MAX_DEPTH, "{a:", "}").replace("{a:}", "{a:[]}"))).unwrap_err(),
            ParseError::TooDeep
        );
        // Far too deep, and unterminated: refused on the way down, no stack overflow.
        assert_eq!(
            parse(&"{a:[".repeat(100_000)).unwrap_err(),
            ParseError::TooDeep
        );
        // Brackets in strings and comments do not count.
        let quiet = format!(
            "{{a: \"{}\", /* {} */ b: 1}}",
            "[".repeat(100),
            "{".repeat(100)
        );
        assert!(parse(&quiet).is_ok());
    }

    #[test]
    fn config_non_finite_numbers_are_refused_as_written() {
        for (text, path, literal) in [
            ("{a: NaN}", "a", "NaN"),
            ("{a: -NaN}", "a", "-NaN"),
            ("{a: {b: Infinity}}", "a.b", "Infinity"),
            ("{a: [1, -Infinity]}", "a[1]", "-Infinity"),
            ("{a:\r\n  {b: 1e309}}", "a.b", "1e309"),
            ("{\u{2028}'x y': +1.5E+400 }", "x y", "+1.5E+400"),
            ("NaN", "", "NaN"),
        ] {
            assert_eq!(
                parse(text).unwrap_err(),
                ParseError::NonFinite {
                    path: path.into(),
                    literal: literal.into()
                },
                "{text:?}"
            );
        }
    }

    #[test]
    fn config_syntax_errors_are_json5s_own() {
        for text in ["{a: 1,,}", "{a: 1} x", "{a: 1} {", "", "{a: [1}", "{a: 'x}"] {
            let ours = parse(text).unwrap_err();
            let theirs = json5::from_str::<Value>(text).unwrap_err().to_string();
            assert_eq!(ours, ParseError::Syntax(theirs), "{text:?}");
        }
    }

    /// A generated document: how each part is written, and what json5 must read from it.
    #[derive(Debug, Clone)]
    enum Doc {
        Leaf(&'static str, Value),
        Array(Vec<(&'static str, Doc)>),
        /// (gap, key as written, key as decoded, value)
        Object(Vec<(&'static str, &'static str, &'static str, Doc)>),
    }

    /// Spellings that trip up hand-written scanners: quoting styles, escapes in quoted and
    /// unquoted keys, and brackets, quotes and comment markers inside strings.
    const KEYS: &[(&str, &str)] = &[
        ("a", "a"),
        ("'a'", "a"),
        ("\"b\"", "b"),
        ("\"\\u0062\"", "b"),
        ("\\u0061", "a"),
        ("'{a:['", "{a:["),
        ("\"a\\\"\"", "a\""),
    ];
    const GAPS: &[&str] = &[" ", "\n", "// a: {\n", "/* [ } a: */", "\r\n"];

    fn doc() -> impl Strategy<Value = Doc> {
        let leaf = prop_oneof![
            Just(Doc::Leaf("1", serde_json::json!(1))),
            Just(Doc::Leaf("-2.5e3", serde_json::json!(-2500.0))),
            Just(Doc::Leaf("0x1F", serde_json::json!(31))),
            Just(Doc::Leaf("null", Value::Null)),
            Just(Doc::Leaf("'} ] // /*'", serde_json::json!("} ] // /*"))),
            Just(Doc::Leaf(
                r#""say \"a\": {""#,
                serde_json::json!("say \"a\": {")
            )),
        ];
        let gap = prop::sample::select(GAPS);
        let key = prop::sample::select(KEYS);
        leaf.prop_recursive(5, 64, 5, move |inner| {
            prop_oneof![
                prop::collection::vec((gap.clone(), inner.clone()), 0..5).prop_map(Doc::Array),
                prop::collection::vec((gap.clone(), key.clone(), inner), 0..5).prop_map(
                    |entries| Doc::Object(
                        entries
                            .into_iter()
                            .map(|(g, (k, d), v)| (g, k, d, v))
                            .collect()
                    )
                ),
            ]
        })
    }

    fn render(doc: &Doc) -> String {
        match doc {
            Doc::Leaf(text, _) => text.to_string(),
            Doc::Array(items) => {
                let items: Vec<String> = items
                    .iter()
                    .map(|(g, d)| format!("{g}{}", render(d)))
                    .collect();
                format!("[{}]", items.join(","))
            }
            Doc::Object(entries) => {
                let entries: Vec<String> = entries
                    .iter()
                    .map(|(g, k, _, d)| format!("{g}{k}{g}:{g}{}", render(d)))
                    .collect();
                // A trailing comma, where JSON5 allows one.
                let comma = if entries.is_empty() { "" } else { "," };
                format!("{{{}{comma}}}", entries.join(","))
            }
        }
    }

    /// The tree json5 must give (last key wins) and the duplicate key paths, from the
    /// generated structure rather than from any reading of the text.
    fn expect(doc: &Doc, path: &str, dups: &mut Vec<String>) -> Value {
        match doc {
            Doc::Leaf(_, v) => v.clone(),
            Doc::Array(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, (_, d))| expect(d, &format!("{path}[{i}]"), dups))
                    .collect(),
            ),
            Doc::Object(entries) => {
                let mut obj = Map::new();
                let mut counted: Vec<&str> = Vec::new();
                for (_, _, key, d) in entries {
                    let kpath = if path.is_empty() {
                        key.to_string()
                    } else {
                        format!("{path}.{key}")
                    };
                    let v = expect(d, &kpath, dups);
                    if obj.insert(key.to_string(), v).is_some() && !counted.contains(key) {
                        dups.push(kpath);
                        counted.push(key);
                    }
                }
                Value::Object(obj)
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn config_tree_and_duplicates_match_the_document(doc in doc()) {
            let text = render(&doc);
            let mut dups = Vec::new();
            let want = expect(&doc, "", &mut dups);
            let parsed = parse(&text).unwrap();
            // Also exactly what json5 alone gives, so nothing else changed.
            prop_assert_eq!(&parsed.value, &json5::from_str::<Value>(&text).unwrap());
            prop_assert_eq!(parsed.value, want);
            prop_assert_eq!(parsed.duplicates, dups);
        }

        #[test]
        fn config_offset_of_inverts_json5_positions(
            text in "[a\r\n\u{2028}\u{e9}]{0,12}",
            cut in 0usize..13,
        ) {
            let boundaries: Vec<usize> =
                text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
            let offset = boundaries[cut % boundaries.len()];
            // json5 never reports a position between the CR and LF of one line break.
            prop_assume!(!(text[..offset].ends_with('\r') && text[offset..].starts_with('\n')));
            let pos = json5::Position::from_offset(offset, &text);
            prop_assert_eq!(offset_of(&text, pos), Some(offset));
        }
    }
}
