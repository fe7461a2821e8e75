//! Inbound messages: normalises `message` notification payloads (legacy 0.9 and v1 shapes)
//! into [`InboundMessage`], decides which rows are skipped without a reply
//! ([`skip_reason`], DESIGN decision 6), and recognises mirror echoes of what the gateway
//! itself just sent ([`EchoGuard`]). Everything here is pure: no I/O, time is a parameter.

use std::collections::{HashMap, VecDeque};

use serde_json::{Map, Value};

/// One attachment of an inbound message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InboundAttachment {
    /// Absolute path (`original_path`, or the documented-but-wrong `path`).
    pub path: Option<String>,
    pub mime_type: Option<String>,
    pub transfer_name: Option<String>,
    /// `total_bytes`, or the documented-but-wrong `byte_size`.
    pub total_bytes: Option<u64>,
    pub missing: bool,
}

/// One `message` notification's payload, normalised.
///
/// Optional strings that imsg sends as `""` (unknown chat, old schema) are `None` here, so
/// callers only have to check one thing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InboundMessage {
    pub rowid: i64,
    pub guid: String,
    pub chat_id: Option<i64>,
    pub chat_guid: Option<String>,
    pub chat_identifier: Option<String>,
    pub chat_name: Option<String>,
    pub participants: Vec<String>,
    pub is_group: bool,
    pub sender: String,
    /// The sender's name from Contacts, when imsg knows it.
    pub sender_name: Option<String>,
    pub is_from_me: bool,
    pub text: String,
    pub created_at: Option<String>,
    pub attachments: Vec<InboundAttachment>,
    pub is_reaction: bool,
    pub reply_to_guid: Option<String>,
    pub reply_to_text: Option<String>,
    pub reply_to_sender: Option<String>,
    pub destination_caller_id: Option<String>,
}

/// Why a payload could not be turned into an [`InboundMessage`]; the text names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad message payload: {0}")]
pub struct ParseError(pub String);

/// Parses one message object. Also accepts the whole notification `params`
/// (`{"subscription":1,"message":{...}}`) and unwraps it.
pub fn parse_message(value: &Value) -> Result<InboundMessage, ParseError> {
    let obj = value
        .as_object()
        .ok_or_else(|| ParseError(format!("expected a JSON object, got {}", kind(value))))?;
    let obj = match obj.get("message") {
        Some(Value::Object(inner)) if !obj.contains_key("id") => inner,
        _ => obj,
    };

    let rowid = match obj.get("id").or_else(|| obj.get("rowid")) {
        None | Some(Value::Null) => return Err(ParseError("missing field `id`".into())),
        Some(v) => v.as_i64().ok_or_else(|| {
            ParseError(format!("field `id`: expected an integer, got {}", show(v)))
        })?,
    };
    let chat_id = opt_i64(obj, "chat_id")?;
    let chat_guid = opt_string(obj, "chat_guid")?;
    let chat_identifier = opt_string(obj, "chat_identifier")?;
    let is_group = match opt_bool(obj, "is_group")? {
        Some(b) => b,
        // Same rule imsg applies (spec 6.2) when an old payload lacks the flag.
        None => [&chat_guid, &chat_identifier]
            .iter()
            .any(|s| s.as_deref().is_some_and(|s| s.contains(";+;"))),
    };
    let participants = match obj.get("participants") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    ParseError(format!(
                        "field `participants[{i}]`: expected a string, got {}",
                        show(v)
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(v) => {
            return Err(ParseError(format!(
                "field `participants`: expected an array, got {}",
                show(v)
            )))
        }
    };
    let attachments = match obj.get("attachments") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| parse_attachment(i, v))
            .collect::<Result<Vec<_>, _>>()?,
        Some(v) => {
            return Err(ParseError(format!(
                "field `attachments`: expected an array, got {}",
                show(v)
            )))
        }
    };
    let reaction_type = opt_string(obj, "reaction_type")?;
    let reacted_to = opt_string(obj, "reacted_to_guid")?;
    let associated_type = opt_i64(obj, "associated_message_type")?;
    let is_reaction = opt_bool(obj, "is_reaction")?.unwrap_or(false)
        || reaction_type.is_some()
        || reacted_to.is_some()
        || associated_type.is_some_and(|t| (2000..=3006).contains(&t));

    Ok(InboundMessage {
        rowid,
        guid: opt_string(obj, "guid")?.unwrap_or_default(),
        chat_id,
        chat_guid,
        chat_identifier,
        chat_name: opt_string(obj, "chat_name")?,
        participants,
        is_group,
        sender: opt_string(obj, "sender")?
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        is_from_me: opt_bool(obj, "is_from_me")?.unwrap_or(false),
        text: match obj.get("text") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => {
                return Err(ParseError(format!(
                    "field `text`: expected a string, got {}",
                    show(v)
                )))
            }
        },
        created_at: opt_string(obj, "created_at")?,
        attachments,
        is_reaction,
        reply_to_guid: opt_string(obj, "reply_to_guid")?,
        reply_to_text: opt_string(obj, "reply_to_text")?,
        reply_to_sender: opt_string(obj, "reply_to_sender")?,
        destination_caller_id: opt_string(obj, "destination_caller_id")?,
        // A display extra: a name of the wrong type is left out, never a reason to drop the
        // message.
        sender_name: obj
            .get("sender_name")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(String::from),
    })
}

fn parse_attachment(i: usize, v: &Value) -> Result<InboundAttachment, ParseError> {
    let obj = v.as_object().ok_or_else(|| {
        ParseError(format!(
            "field `attachments[{i}]`: expected an object, got {}",
            show(v)
        ))
    })?;
    let field = |name: &str| format!("attachments[{i}].{name}");
    let path = match opt_string_named(obj, "original_path", &field("original_path"))? {
        Some(p) => Some(p),
        None => opt_string_named(obj, "path", &field("path"))?,
    };
    let total_bytes = match opt_u64_named(obj, "total_bytes", &field("total_bytes"))? {
        Some(n) => Some(n),
        None => opt_u64_named(obj, "byte_size", &field("byte_size"))?,
    };
    let missing = match obj.get("missing") {
        None | Some(Value::Null) => path.is_none(),
        Some(v) => as_bool(v).ok_or_else(|| {
            ParseError(format!(
                "field `{}`: expected a boolean, got {}",
                field("missing"),
                show(v)
            ))
        })?,
    };
    Ok(InboundAttachment {
        path,
        mime_type: opt_string_named(obj, "mime_type", &field("mime_type"))?,
        transfer_name: opt_string_named(obj, "transfer_name", &field("transfer_name"))?,
        total_bytes,
        missing,
    })
}

fn opt_string(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, ParseError> {
    opt_string_named(obj, key, key)
}

/// A string field; absent, `null` and blank all mean "not there".
fn opt_string_named(
    obj: &Map<String, Value>,
    key: &str,
    name: &str,
) -> Result<Option<String>, ParseError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(ParseError(format!(
            "field `{name}`: expected a string, got {}",
            show(v)
        ))),
    }
}

fn opt_i64(obj: &Map<String, Value>, key: &str) -> Result<Option<i64>, ParseError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| {
            ParseError(format!(
                "field `{key}`: expected an integer, got {}",
                show(v)
            ))
        }),
    }
}

fn opt_u64_named(
    obj: &Map<String, Value>,
    key: &str,
    name: &str,
) -> Result<Option<u64>, ParseError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            ParseError(format!(
                "field `{name}`: expected a non-negative integer, got {}",
                show(v)
            ))
        }),
    }
}

fn opt_bool(obj: &Map<String, Value>, key: &str) -> Result<Option<bool>, ParseError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => as_bool(v).map(Some).ok_or_else(|| {
            ParseError(format!(
                "field `{key}`: expected a boolean, got {}",
                show(v)
            ))
        }),
    }
}

/// Booleans, plus the 0/1 integers some older builds and SQLite-backed tools emit.
fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        _ => None,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn show(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 60 {
        let cut: String = text.chars().take(57).collect();
        format!("{cut}...")
    } else {
        text
    }
}

/// Why a message is not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Sent from this Mac (including the gateway's own replies coming back).
    FromMe,
    /// A tapback or other reaction.
    Reaction,
    /// No text and no attachment.
    Empty,
    /// The row has no chat (`chat_id` missing or <= 0).
    NoChat,
    /// An inbound row that mirrors something the gateway just sent.
    MirrorEcho,
    /// The GUID is already in the handled journal.
    AlreadyHandled,
}

impl SkipReason {
    /// A short phrase for logs ("not answered: <reason>").
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::FromMe => "sent from me",
            SkipReason::Reaction => "reaction",
            SkipReason::Empty => "empty text and no attachment",
            SkipReason::NoChat => "no chat (chat_id missing or <= 0)",
            SkipReason::MirrorEcho => "mirror of a message the gateway just sent",
            SkipReason::AlreadyHandled => "already handled",
        }
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The stateless skips of DESIGN decision 6, in order: from me, reaction, no chat, empty.
/// Mirror echoes need history ([`EchoGuard`]) and duplicates need the journal.
pub fn skip_reason(msg: &InboundMessage) -> Option<SkipReason> {
    if msg.is_from_me {
        return Some(SkipReason::FromMe);
    }
    if msg.is_reaction {
        return Some(SkipReason::Reaction);
    }
    if msg.chat_id.is_none_or(|id| id <= 0) {
        return Some(SkipReason::NoChat);
    }
    if msg.text.trim().is_empty() && msg.attachments.is_empty() {
        return Some(SkipReason::Empty);
    }
    None
}

/// How many recent sends the guard remembers at most, whatever the window.
const ECHO_GUARD_CAPACITY: usize = 512;

#[derive(Debug, Clone)]
struct SentRecord {
    chat_id: Option<i64>,
    text: String,
    guid: Option<String>,
    at_ms: u64,
}

/// Decision 6 of DESIGN.md: recognises inbound rows that mirror what the gateway sent within
/// the last `window_ms` (same chat and same text, or a `reply_to_guid` naming a sent message).
/// Pure: the caller passes `now_ms`. Memory is bounded by the window and a fixed capacity.
#[derive(Debug, Clone)]
pub struct EchoGuard {
    window_ms: u64,
    sent: VecDeque<SentRecord>,
    /// How many remembered sends have each text, by the chat they went to: every inbound
    /// row is checked against the guard, and a scan of up to 512 sends each time was a
    /// visible share of a catch-up's CPU.
    texts: Index,
    /// The same for the guids imsg gave the sends.
    guids: Index,
}

/// Counts of remembered keys, by chat (`None`: a send not addressed by chat id, which
/// matches every chat).
#[derive(Debug, Clone, Default)]
struct Index(HashMap<Option<i64>, HashMap<String, u32>>);

impl Index {
    fn add(&mut self, chat: Option<i64>, key: &str) {
        *self
            .0
            .entry(chat)
            .or_default()
            .entry(key.to_string())
            .or_default() += 1;
    }

    fn remove(&mut self, chat: Option<i64>, key: &str) {
        if let Some(keys) = self.0.get_mut(&chat) {
            if let Some(n) = keys.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    keys.remove(key);
                }
            }
            if keys.is_empty() {
                self.0.remove(&chat);
            }
        }
    }

    /// Whether a send into `chat` (or one addressed otherwise) had `key`. Decision 6 scopes
    /// both rules to the chat we sent into: a user's real threaded reply to the bot in
    /// another chat must still be answered.
    fn matches(&self, chat: Option<i64>, key: &str) -> bool {
        let has = |c: Option<i64>| self.0.get(&c).is_some_and(|keys| keys.contains_key(key));
        has(None) || (chat.is_some() && has(chat))
    }
}

impl EchoGuard {
    pub fn new(window_ms: u64) -> Self {
        EchoGuard {
            window_ms,
            sent: VecDeque::new(),
            texts: Index::default(),
            guids: Index::default(),
        }
    }

    /// Records one sent chunk. `chat_id` is `None` when the send was addressed otherwise.
    pub fn record_sent(
        &mut self,
        chat_id: Option<i64>,
        text: &str,
        guid: Option<&str>,
        now_ms: u64,
    ) {
        self.expire(now_ms);
        if self.sent.len() >= ECHO_GUARD_CAPACITY {
            self.pop();
        }
        let record = SentRecord {
            chat_id,
            text: text.trim().to_string(),
            guid: guid
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(str::to_string),
            at_ms: now_ms,
        };
        self.texts.add(chat_id, &record.text);
        if let Some(g) = &record.guid {
            self.guids.add(chat_id, g);
        }
        self.sent.push_back(record);
    }

    /// True when `msg` mirrors a recent send. Matches are not consumed: answering an echo of
    /// our own reply could loop, which is worse than ignoring a user repeating it at once.
    pub fn is_mirror(&mut self, msg: &InboundMessage, now_ms: u64) -> bool {
        self.expire(now_ms);
        let text = msg.text.trim();
        let by_guid = msg
            .reply_to_guid
            .as_deref()
            .map(str::trim)
            .is_some_and(|g| !g.is_empty() && self.guids.matches(msg.chat_id, g));
        by_guid || (!text.is_empty() && self.texts.matches(msg.chat_id, text))
    }

    /// How many sends are remembered now (for tests and status).
    pub fn len(&self) -> usize {
        self.sent.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    fn pop(&mut self) {
        if let Some(old) = self.sent.pop_front() {
            self.texts.remove(old.chat_id, &old.text);
            if let Some(g) = &old.guid {
                self.guids.remove(old.chat_id, g);
            }
        }
    }

    fn expire(&mut self, now_ms: u64) {
        while let Some(front) = self.sent.front() {
            if now_ms.saturating_sub(front.at_ms) > self.window_ms {
                self.pop();
            } else {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v1_payload() -> Value {
        json!({"id":5,"chat_id":1,"guid":"msg-guid-5","sender":"+15550001111","is_from_me":false,
               "text":"hello","created_at":"2026-01-15T18:04:05.123Z","attachments":[],"reactions":[],
               "chat_identifier":"iMessage;+;chat123","chat_guid":"iMessage;+;chat123",
               "chat_name":"Group Chat","participants":["+15550001111","me@icloud.com"],"is_group":true})
    }

    #[test]
    fn parses_a_v1_message() {
        let m = parse_message(&v1_payload()).unwrap();
        assert_eq!(m.rowid, 5);
        assert_eq!(m.chat_id, Some(1));
        assert_eq!(m.guid, "msg-guid-5");
        assert!(m.is_group);
        assert_eq!(m.participants.len(), 2);
        assert_eq!(m.chat_name.as_deref(), Some("Group Chat"));
        assert_eq!(skip_reason(&m), None);
    }

    #[test]
    fn the_contact_name_is_read_once_and_never_refuses_a_message() {
        let mut p = v1_payload();
        assert_eq!(parse_message(&p).unwrap().sender_name, None);
        p["sender_name"] = json!("Mom");
        assert_eq!(
            parse_message(&p).unwrap().sender_name.as_deref(),
            Some("Mom")
        );
        for odd in [json!(" "), json!(7), json!(null)] {
            p["sender_name"] = odd;
            assert_eq!(parse_message(&p).unwrap().sender_name, None);
        }
    }

    #[test]
    fn unwraps_notification_params() {
        let m = parse_message(&json!({"subscription":1,"message":v1_payload()})).unwrap();
        assert_eq!(m.rowid, 5);
    }

    #[test]
    fn tolerates_sparse_legacy_payloads_and_doc_field_names() {
        let m = parse_message(&json!({"id":9,"chat_id":3,"sender":"a@b.c","text":"x",
            "chat_guid":"", "attachments":[{"path":"/tmp/a.jpg","byte_size":12,"mime_type":"image/jpeg"}]}))
        .unwrap();
        assert_eq!(m.guid, "");
        assert_eq!(m.chat_guid, None);
        assert!(!m.is_group);
        assert!(!m.is_from_me);
        assert_eq!(m.attachments[0].path.as_deref(), Some("/tmp/a.jpg"));
        assert_eq!(m.attachments[0].total_bytes, Some(12));
        assert!(!m.attachments[0].missing);
        let m = parse_message(&json!({"id":9,"chat_identifier":"any;+;x","attachments":[{"original_path":"","total_bytes":3}]})).unwrap();
        assert!(m.is_group, "derived from ;+; when is_group is absent");
        assert!(m.attachments[0].missing);
    }

    #[test]
    fn errors_name_the_bad_field() {
        let e = parse_message(&json!({"chat_id":1})).unwrap_err();
        assert!(e.to_string().contains("`id`"), "{e}");
        let e = parse_message(&json!({"id":"7"})).unwrap_err();
        assert!(
            e.to_string().contains("field `id`") && e.to_string().contains("\"7\""),
            "{e}"
        );
        let e = parse_message(&json!({"id":1,"chat_id":"x"})).unwrap_err();
        assert!(e.to_string().contains("chat_id"), "{e}");
        let e = parse_message(&json!({"id":1,"attachments":[{"total_bytes":-1}]})).unwrap_err();
        assert!(e.to_string().contains("attachments[0].total_bytes"), "{e}");
        let e = parse_message(&json!([1])).unwrap_err();
        assert!(e.to_string().contains("an array"), "{e}");
    }

    #[test]
    fn skip_reasons() {
        let base = parse_message(&v1_payload()).unwrap();
        let mut m = base.clone();
        m.is_from_me = true;
        assert_eq!(skip_reason(&m), Some(SkipReason::FromMe));
        let mut r = v1_payload();
        r["is_reaction"] = json!(true);
        assert_eq!(
            skip_reason(&parse_message(&r).unwrap()),
            Some(SkipReason::Reaction)
        );
        let mut r = v1_payload();
        r["associated_message_type"] = json!(2001);
        assert_eq!(
            skip_reason(&parse_message(&r).unwrap()),
            Some(SkipReason::Reaction)
        );
        let mut r = v1_payload();
        r["reacted_to_guid"] = json!("msg-guid-1");
        assert_eq!(
            skip_reason(&parse_message(&r).unwrap()),
            Some(SkipReason::Reaction)
        );
        let mut m = base.clone();
        m.text = "  \n".into();
        assert_eq!(skip_reason(&m), Some(SkipReason::Empty));
        m.attachments.push(InboundAttachment::default());
        assert_eq!(skip_reason(&m), None);
        let mut m = base.clone();
        m.chat_id = Some(0);
        assert_eq!(skip_reason(&m), Some(SkipReason::NoChat));
        m.chat_id = None;
        assert_eq!(skip_reason(&m), Some(SkipReason::NoChat));
    }

    #[test]
    fn echo_guard_matches_same_chat_and_text_within_the_window() {
        let mut g = EchoGuard::new(5_000);
        g.record_sent(Some(1), "echo: hello ", Some("sent-1"), 1_000);
        let mut m = parse_message(&v1_payload()).unwrap();
        m.text = "echo: hello".into();
        assert!(g.is_mirror(&m, 2_000));
        m.chat_id = Some(2);
        assert!(!g.is_mirror(&m, 2_000), "other chat");
        m.chat_id = Some(1);
        m.text = "echo: hello!".into();
        assert!(!g.is_mirror(&m, 2_000), "other text");
        m.reply_to_guid = Some("sent-1".into());
        assert!(g.is_mirror(&m, 2_000), "reply_to_guid of a sent message");
        m.chat_id = Some(2);
        assert!(
            !g.is_mirror(&m, 2_000),
            "a threaded reply to our message from another chat is a real message"
        );
        m.chat_id = Some(1);
        m.text = "echo: hello".into();
        assert!(!g.is_mirror(&m, 6_001), "outside the window");
        assert!(g.is_empty());
    }

    #[test]
    fn the_spec_tapback_event_is_a_reaction() {
        // imsg-rpc.md 7.3, verbatim apart from the elided timestamp.
        let line = r#"{"jsonrpc":"2.0","method":"message","params":{"subscription":1,"message":{"id":6,"chat_id":1,"guid":"reaction-guid-6","sender":"me@icloud.com","is_from_me":false,"text":"Liked \u201chello\u201d","created_at":"2026-01-15T18:04:05.123Z","attachments":[],"reactions":[],"is_reaction":true,"reaction_type":"like","reaction_emoji":"\ud83d\udc4d","is_reaction_add":true,"reacted_to_guid":"msg-guid-5","chat_identifier":"iMessage;+;chat123","chat_guid":"iMessage;+;chat123","chat_name":"Group Chat","participants":["+123","me@icloud.com"],"is_group":true}}}"#;
        let v: Value = serde_json::from_str(line).unwrap();
        let m = parse_message(&v["params"]).unwrap();
        assert_eq!(m.rowid, 6);
        assert!(m.is_reaction);
        assert_eq!(skip_reason(&m), Some(SkipReason::Reaction));
    }

    /// The guard's first form, a scan of every remembered send: the index must answer
    /// exactly as it did.
    fn scan_is_mirror(
        sent: &[(Option<i64>, String, Option<String>, u64)],
        window: u64,
        msg: &InboundMessage,
        now: u64,
    ) -> bool {
        let text = msg.text.trim();
        let reply_to = msg.reply_to_guid.as_deref().map(str::trim);
        let start = sent.len().saturating_sub(ECHO_GUARD_CAPACITY);
        sent[start..].iter().any(|(chat, t, guid, at)| {
            let live = now.saturating_sub(*at) <= window;
            let by_guid = guid.is_some() && guid.as_deref() == reply_to;
            let same_chat = match (chat, msg.chat_id) {
                (Some(a), Some(b)) => *a == b,
                (None, _) => true,
                (Some(_), None) => false,
            };
            live && same_chat && (by_guid || (!text.is_empty() && t == text))
        })
    }

    proptest::proptest! {
        #[test]
        fn echo_guard_index_answers_as_a_scan_would(
            steps in proptest::collection::vec(
                (proptest::bool::ANY, proptest::option::of(1i64..4), 0usize..300, proptest::option::of(0usize..300), 0u64..40),
                1..1_500,
            ),
            forever in proptest::bool::ANY,
        ) {
            // A few texts and guids that differ only in blanks, then enough others that
            // the oldest sends leave the guard once it is full.
            let pick = |fixed: [&str; 4], i: usize| match fixed.get(i) {
                Some(s) => s.to_string(),
                None => format!("t{i}"),
            };
            // A window that never closes fills the guard to its capacity instead.
            let window = if forever { u64::MAX } else { 100 };
            let mut g = EchoGuard::new(window);
            let mut log: Vec<(Option<i64>, String, Option<String>, u64)> = Vec::new();
            let mut now = 0u64;
            for (send, chat, text, guid, dt) in steps {
                now += dt;
                let text = pick(["a", " a ", "b", ""], text);
                let guid = guid.map(|i| pick(["g1", " g1", "g2", " "], i));
                if send {
                    g.record_sent(chat, &text, guid.as_deref(), now);
                    let kept = guid.as_deref().map(str::trim).filter(|x| !x.is_empty()).map(str::to_string);
                    log.push((chat, text.trim().to_string(), kept, now));
                } else {
                    let m = InboundMessage {
                        chat_id: chat,
                        text,
                        reply_to_guid: guid,
                        ..InboundMessage::default()
                    };
                    proptest::prop_assert_eq!(g.is_mirror(&m, now), scan_is_mirror(&log, window, &m, now));
                }
            }
        }
    }

    #[test]
    fn echo_guard_is_bounded() {
        let mut g = EchoGuard::new(u64::MAX);
        for i in 0..10_000u64 {
            g.record_sent(Some(1), &format!("t{i}"), None, i);
        }
        assert_eq!(g.len(), ECHO_GUARD_CAPACITY);
    }
}
