//! JSON5 scenarios compiled into worlds.
//!
//! A scenario names people (handles with optional contact names), chats (DM or group,
//! iMessage or SMS) and their past messages with labels, so tapbacks and replies can point at
//! earlier messages. Times are absolute RFC 3339 or relative to `now` (`"-2h"`). A `generate`
//! block adds a seeded, deterministic busy world. All messages are written in date order (so
//! ROWIDs ascend with time, as on a real Mac), in one transaction. Errors name the file and
//! the key path, e.g. `fixtures/worlds/x.json5: chats[0].messages[2].from: unknown person "mum"`.
//! The format is documented in fake-imsg/README.md.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::write::{AttachmentSource, NewMessage};
use super::{dates, tapback, Result, World, WorldError};

const MINUTE: i64 = 60_000_000_000;

/// Builds a world at `out` from scenario text. `base` is the directory fixture paths are
/// relative to (the scenario's own directory).
pub(crate) fn build(text: &str, file: &str, base: Option<&Path>, out: &Path) -> Result<World> {
    let root: Value = json5::from_str(text)
        .map_err(|e| WorldError::Scenario(format!("{file}: not valid JSON5: {e}")))?;
    let plan = Planner::new(file, base.map(Path::to_path_buf)).plan(&root)?;
    if out.exists() {
        return Err(WorldError::Invalid(format!(
            "world file {} already exists",
            out.display()
        )));
    }
    let world = World::create(out)?;
    if let Err(e) = write_plan(&world, &plan) {
        drop(world);
        for suffix in ["", "-wal", "-shm"] {
            let mut p = out.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(p));
        }
        return Err(e);
    }
    Ok(world)
}

/// A deterministic PRNG (splitmix64): same seed, same world.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            lo
        } else {
            lo + self.below((hi - lo + 1) as u64) as i64
        }
    }
    fn guid(&mut self) -> String {
        let a = self.next();
        let b = self.next();
        let b = (b & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
        let a = (a & 0xFFFF_FFFF_FFFF_0FFF) | 0x4000;
        format!(
            "{:08X}-{:04X}-{:04X}-{:04X}-{:012X}",
            a >> 32,
            (a >> 16) & 0xFFFF,
            a & 0xFFFF,
            b >> 48,
            b & 0xFFFF_FFFF_FFFF
        )
    }
}

struct PlannedChat {
    group: bool,
    service: String,
    participants: Vec<String>,
    name: Option<String>,
    identifier: Option<String>,
}

struct PlannedMessage {
    chat: usize,
    seq: usize,
    /// Sender handle id; resolved to a handle ROWID at write time. None: from me in a group.
    sender: Option<String>,
    msg: NewMessage,
}

struct Plan {
    me: Option<String>,
    contacts: Vec<(String, String)>,
    chats: Vec<PlannedChat>,
    messages: Vec<PlannedMessage>,
}

/// What a label points at.
#[derive(Clone)]
struct Target {
    guid: String,
    text: String,
    chat: usize,
}

struct Planner {
    file: String,
    base: Option<PathBuf>,
    now: i64,
    rng: Rng,
    people: HashMap<String, String>,
    contacts: Vec<(String, String)>,
    me: Option<String>,
    labels: HashMap<String, Target>,
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

impl Planner {
    fn new(file: &str, base: Option<PathBuf>) -> Self {
        Planner {
            file: file.to_string(),
            base,
            now: dates::now_apple_ns(),
            rng: Rng(1),
            people: HashMap::new(),
            contacts: Vec::new(),
            me: None,
            labels: HashMap::new(),
        }
    }

    fn err(&self, path: &str, msg: impl std::fmt::Display) -> WorldError {
        WorldError::Scenario(format!("{}: {path}: {msg}", self.file))
    }

    fn object<'a>(&self, v: &'a Value, path: &str) -> Result<&'a Map<String, Value>> {
        v.as_object()
            .ok_or_else(|| self.err(path, format!("expected an object, got {}", kind(v))))
    }

    fn check_keys(&self, o: &Map<String, Value>, path: &str, allowed: &[&str]) -> Result<()> {
        for k in o.keys() {
            if !allowed.contains(&k.as_str()) {
                return Err(self.err(
                    path,
                    format!("unknown key {k:?} (allowed: {})", allowed.join(", ")),
                ));
            }
        }
        Ok(())
    }

    fn string(&self, o: &Map<String, Value>, key: &str, path: &str) -> Result<Option<String>> {
        match o.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.err(
                &format!("{path}.{key}"),
                format!("expected a string, got {}", kind(v)),
            )),
        }
    }

    fn boolean(&self, o: &Map<String, Value>, key: &str, path: &str) -> Result<Option<bool>> {
        match o.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.err(
                &format!("{path}.{key}"),
                format!("expected true or false, got {}", kind(v)),
            )),
        }
    }

    fn int(&self, o: &Map<String, Value>, key: &str, path: &str) -> Result<Option<i64>> {
        match o.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_i64().filter(|n| *n >= 0).map(Some).ok_or_else(|| {
                self.err(
                    &format!("{path}.{key}"),
                    format!("expected a non-negative integer, got {v}"),
                )
            }),
        }
    }

    fn ratio(&self, o: &Map<String, Value>, key: &str, path: &str) -> Result<f64> {
        match o.get(key) {
            None | Some(Value::Null) => Ok(0.0),
            Some(v) => v
                .as_f64()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| {
                    self.err(
                        &format!("{path}.{key}"),
                        format!("expected a ratio between 0 and 1, got {v}"),
                    )
                }),
        }
    }

    fn int_pair(
        &self,
        o: &Map<String, Value>,
        key: &str,
        path: &str,
        default: (i64, i64),
    ) -> Result<(i64, i64)> {
        match o.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => {
                let pair = v.as_array().and_then(|a| match a.as_slice() {
                    [lo, hi] => Some((lo.as_i64()?, hi.as_i64()?)),
                    _ => None,
                });
                pair.filter(|(lo, hi)| *lo >= 0 && lo <= hi).ok_or_else(|| {
                    self.err(
                        &format!("{path}.{key}"),
                        format!("expected [min, max] with 0 <= min <= max, got {v}"),
                    )
                })
            }
        }
    }

    fn time(&self, s: &str, path: &str) -> Result<i64> {
        if let Some(off) = dates::parse_relative(s) {
            return Ok(self.now + off);
        }
        dates::parse_iso8601(s).ok_or_else(|| {
            self.err(
                path,
                format!("bad time {s:?}: expected RFC 3339 with a zone (2026-01-15T18:04:05Z) or an offset from now like \"-2h\", \"-1d30m\""),
            )
        })
    }

    /// A `from`/participant reference: a person alias, or a raw phone/email handle.
    fn handle(&self, s: &str, path: &str) -> Result<String> {
        if let Some(h) = self.people.get(s) {
            return Ok(h.clone());
        }
        if looks_like_handle(s) {
            return Ok(s.to_string());
        }
        let mut known: Vec<&str> = self.people.keys().map(String::as_str).collect();
        known.sort();
        Err(self.err(
            path,
            format!(
                "unknown person {s:?}: not in people ({}) and not a phone number or email",
                known.join(", ")
            ),
        ))
    }

    fn plan(mut self, root: &Value) -> Result<Plan> {
        let o = self.object(root, "(top level)")?;
        self.check_keys(
            o,
            "(top level)",
            &["now", "me", "seed", "people", "chats", "generate"],
        )?;
        if let Some(now) = self.string(o, "now", "(top level)")? {
            self.now = dates::parse_iso8601(&now).ok_or_else(|| {
                self.err(
                    "now",
                    format!("bad time {now:?}: expected RFC 3339 with a zone"),
                )
            })?;
        }
        if let Some(seed) = self.int(o, "seed", "(top level)")? {
            self.rng = Rng(seed as u64);
        }
        self.me = self.string(o, "me", "(top level)")?;
        if let Some(me) = &self.me {
            if !looks_like_handle(me) {
                return Err(self.err("me", format!("{me:?} is not a phone number or email")));
            }
        }
        if let Some(people) = o.get("people") {
            self.people(people)?;
        }
        let mut chats = Vec::new();
        let mut messages = Vec::new();
        if let Some(list) = o.get("chats") {
            let arr = list.as_array().ok_or_else(|| {
                self.err("chats", format!("expected an array, got {}", kind(list)))
            })?;
            // Labels first, so a tapback or reply may point at any message of the file.
            for (ci, c) in arr.iter().enumerate() {
                self.collect_labels(c, ci)?;
            }
            for (ci, c) in arr.iter().enumerate() {
                self.chat(c, ci, &mut chats, &mut messages)?;
            }
        }
        if let Some(g) = o.get("generate") {
            self.generate(g, &mut chats, &mut messages)?;
        }
        messages.sort_by_key(|m| (m.msg.date, m.seq));
        Ok(Plan {
            me: self.me,
            contacts: self.contacts,
            chats,
            messages,
        })
    }

    fn people(&mut self, v: &Value) -> Result<()> {
        let o = self.object(v, "people")?;
        for (alias, p) in o {
            let path = format!("people.{alias}");
            if alias == "me" {
                return Err(self.err(
                    &path,
                    "\"me\" is reserved for the local user (set top-level `me`)",
                ));
            }
            let (handle, name) = match p {
                Value::String(h) => (h.clone(), None),
                Value::Object(po) => {
                    self.check_keys(po, &path, &["handle", "name"])?;
                    let h = self
                        .string(po, "handle", &path)?
                        .ok_or_else(|| self.err(&path, "missing key \"handle\""))?;
                    (h, self.string(po, "name", &path)?)
                }
                other => {
                    return Err(self.err(
                        &path,
                        format!(
                            "expected a handle string or {{handle, name}}, got {}",
                            kind(other)
                        ),
                    ))
                }
            };
            if !looks_like_handle(&handle) {
                return Err(self.err(
                    &path,
                    format!("handle {handle:?} is not a phone number (+15551234567) or email"),
                ));
            }
            if let Some(n) = name {
                self.contacts.push((handle.clone(), n));
            }
            self.people.insert(alias.clone(), handle);
        }
        Ok(())
    }

    fn collect_labels(&mut self, c: &Value, ci: usize) -> Result<()> {
        let Some(msgs) = c.get("messages").and_then(Value::as_array) else {
            return Ok(());
        };
        for (mi, m) in msgs.iter().enumerate() {
            let path = format!("chats[{ci}].messages[{mi}]");
            let Some(o) = m.as_object() else { continue };
            if let Some(label) = self.string(o, "label", &path)? {
                let guid = match self.string(o, "guid", &path)? {
                    Some(g) => g,
                    None => self.rng.guid(),
                };
                let text = self.string(o, "text", &path)?.unwrap_or_default();
                let t = Target {
                    guid,
                    text,
                    chat: ci,
                };
                if self.labels.insert(label.clone(), t).is_some() {
                    return Err(self.err(
                        &format!("{path}.label"),
                        format!("duplicate label {label:?}"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn chat(
        &mut self,
        c: &Value,
        ci: usize,
        chats: &mut Vec<PlannedChat>,
        messages: &mut Vec<PlannedMessage>,
    ) -> Result<()> {
        let path = format!("chats[{ci}]");
        let o = self.object(c, &path)?;
        self.check_keys(
            o,
            &path,
            &[
                "group",
                "name",
                "service",
                "participants",
                "identifier",
                "messages",
            ],
        )?;
        let service = self
            .string(o, "service", &path)?
            .unwrap_or_else(|| "iMessage".into());
        if service != "iMessage" && service != "SMS" {
            return Err(self.err(
                &format!("{path}.service"),
                format!("unknown service {service:?}: expected \"iMessage\" or \"SMS\""),
            ));
        }
        let plist = o
            .get("participants")
            .ok_or_else(|| self.err(&path, "missing key \"participants\""))?;
        let parr = plist.as_array().filter(|a| !a.is_empty()).ok_or_else(|| {
            self.err(
                &format!("{path}.participants"),
                "expected a non-empty array of people or handles",
            )
        })?;
        let mut participants = Vec::new();
        for (pi, p) in parr.iter().enumerate() {
            let ppath = format!("{path}.participants[{pi}]");
            let s = p
                .as_str()
                .ok_or_else(|| self.err(&ppath, format!("expected a string, got {}", kind(p))))?;
            if s == "me" {
                return Err(self.err(
                    &ppath,
                    "leave \"me\" out: participants are the other parties",
                ));
            }
            let h = self.handle(s, &ppath)?;
            if !participants.contains(&h) {
                participants.push(h);
            }
        }
        let group = self
            .boolean(o, "group", &path)?
            .unwrap_or(participants.len() > 1);
        if !group && participants.len() != 1 {
            return Err(self.err(
                &format!("{path}.participants"),
                format!(
                    "a direct chat has exactly one participant, got {}",
                    participants.len()
                ),
            ));
        }
        let name = self.string(o, "name", &path)?;
        let identifier = self.string(o, "identifier", &path)?;
        if let Some(id) = &identifier {
            if !group {
                return Err(self.err(
                    &format!("{path}.identifier"),
                    "only group chats take an identifier",
                ));
            }
            if id.is_empty() || id.contains(';') {
                return Err(self.err(
                    &format!("{path}.identifier"),
                    format!("bad identifier {id:?}: expected like \"chat123456789\""),
                ));
            }
        }
        let identifier = match identifier {
            Some(i) => Some(i),
            None if group => Some(format!(
                "chat{:018}",
                self.rng.next() % 1_000_000_000_000_000_000
            )),
            None => None,
        };
        chats.push(PlannedChat {
            group,
            service: service.clone(),
            participants: participants.clone(),
            name,
            identifier,
        });
        let chat_idx = chats.len() - 1;
        let Some(list) = o.get("messages") else {
            return Ok(());
        };
        let arr = list.as_array().ok_or_else(|| {
            self.err(
                &format!("{path}.messages"),
                format!("expected an array, got {}", kind(list)),
            )
        })?;
        let mut prev: Option<i64> = None;
        for (mi, m) in arr.iter().enumerate() {
            let mpath = format!("{path}.messages[{mi}]");
            let first_default = self.now - (arr.len() - mi) as i64 * MINUTE;
            let pm = self.message(
                m,
                &mpath,
                chat_idx,
                ci,
                &service,
                group,
                &participants,
                prev,
                first_default,
                messages.len(),
            )?;
            prev = Some(pm.msg.date);
            messages.push(pm);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn message(
        &mut self,
        m: &Value,
        path: &str,
        chat_idx: usize,
        ci: usize,
        service: &str,
        group: bool,
        participants: &[String],
        prev: Option<i64>,
        first_default: i64,
        seq: usize,
    ) -> Result<PlannedMessage> {
        let o = self.object(m, path)?;
        self.check_keys(
            o,
            path,
            &[
                "label",
                "guid",
                "from",
                "text",
                "at",
                "read",
                "attachments",
                "react",
                "to",
                "reply_to",
                "unjoined",
            ],
        )?;
        let from = self.string(o, "from", path)?.ok_or_else(|| {
            self.err(path, "missing key \"from\" (a person, a handle, or \"me\")")
        })?;
        let is_from_me = from == "me";
        let handle = if is_from_me {
            if group {
                None
            } else {
                Some(participants[0].clone())
            }
        } else {
            Some(self.handle(&from, &format!("{path}.from"))?)
        };
        let date = match self.string(o, "at", path)? {
            Some(at) => self.time(&at, &format!("{path}.at"))?,
            None => prev.map(|p| p + MINUTE).unwrap_or(first_default),
        };
        let label = self.string(o, "label", path)?;
        let guid = match &label {
            Some(l) => self.labels[l].guid.clone(),
            None => match self.string(o, "guid", path)? {
                Some(g) => g,
                None => self.rng.guid(),
            },
        };
        let mut text = self.string(o, "text", path)?.unwrap_or_default();
        let read = self.boolean(o, "read", path)?.unwrap_or(true);
        let mut msg = NewMessage {
            guid,
            join_chat: if self.boolean(o, "unjoined", path)?.unwrap_or(false) {
                None
            } else {
                Some(chat_idx as i64)
            },
            is_from_me,
            date,
            is_read: !is_from_me && read,
            date_read: if !is_from_me && read {
                date + MINUTE
            } else {
                0
            },
            service: service.to_string(),
            destination_caller_id: self.me.clone(),
            account: self.me.as_ref().map(|m| account_of(m)),
            ..Default::default()
        };
        let target = |this: &Self, key: &str| -> Result<Option<Target>> {
            match this.string(o, key, path)? {
                None => Ok(None),
                Some(l) => this.labels.get(&l).cloned().map(Some).ok_or_else(|| {
                    this.err(
                        &format!("{path}.{key}"),
                        format!("no message has label {l:?}"),
                    )
                }),
            }
        };
        match (self.string(o, "react", path)?, target(self, "to")?) {
            (Some(kind), Some(t)) => {
                let tb = tapback::parse_kind(&kind)
                    .map_err(|e| self.err(&format!("{path}.react"), e))?;
                if t.chat != ci {
                    return Err(self.err(
                        &format!("{path}.to"),
                        "a tapback must target a message of the same chat",
                    ));
                }
                if text.is_empty() {
                    text = tapback::row_text(tb.code, tb.emoji.as_deref(), &t.text);
                }
                msg.associated_message_guid = Some(format!("p:0/{}", t.guid));
                msg.associated_message_type = tb.code;
                msg.associated_message_emoji = tb.emoji;
            }
            (Some(_), None) => {
                return Err(self.err(
                    path,
                    "\"react\" needs \"to\": the label of the message it targets",
                ))
            }
            (None, Some(_)) => {
                return Err(self.err(
                    path,
                    "\"to\" is only for tapbacks: add \"react\" (or use \"reply_to\")",
                ))
            }
            (None, None) => {}
        }
        if let Some(t) = target(self, "reply_to")? {
            msg.thread_originator_guid = Some(t.guid.clone());
            msg.thread_originator_part = Some(format!("0:0:{}", t.text.chars().count()));
            msg.reply_to_guid = Some(t.guid.clone());
            msg.associated_message_guid = Some(format!("p:0/{}", t.guid));
        }
        msg.text = text;
        if let Some(list) = o.get("attachments") {
            let arr = list.as_array().ok_or_else(|| {
                self.err(
                    &format!("{path}.attachments"),
                    format!("expected an array, got {}", kind(list)),
                )
            })?;
            for (ai, a) in arr.iter().enumerate() {
                let src = self.attachment(a, &format!("{path}.attachments[{ai}]"))?;
                let g = self.rng.guid();
                msg.attachments.push((g, src));
            }
        }
        Ok(PlannedMessage {
            chat: chat_idx,
            seq,
            sender: handle,
            msg,
        })
    }

    fn attachment(&self, a: &Value, path: &str) -> Result<AttachmentSource> {
        match a {
            Value::String(p) => self.fixture(p, path),
            Value::Object(o) => {
                self.check_keys(o, path, &["path", "name", "bytes", "mime", "missing"])?;
                if let Some(p) = self.string(o, "path", path)? {
                    return self.fixture(&p, &format!("{path}.path"));
                }
                let name = self.string(o, "name", path)?.ok_or_else(|| {
                    self.err(
                        path,
                        "give \"path\" (a fixture file) or \"name\" (with bytes/mime) ",
                    )
                })?;
                let bytes = self.int(o, "bytes", path)?.unwrap_or(1024);
                if bytes > 64 * 1024 * 1024 {
                    return Err(self.err(
                        &format!("{path}.bytes"),
                        format!("{bytes} is over the 64 MiB limit for synthesized files"),
                    ));
                }
                let mime = self.string(o, "mime", path)?;
                if self.boolean(o, "missing", path)?.unwrap_or(false) {
                    Ok(AttachmentSource::Missing { name, bytes, mime })
                } else {
                    Ok(AttachmentSource::Synth { name, bytes, mime })
                }
            }
            other => Err(self.err(
                path,
                format!("expected a file path or an object, got {}", kind(other)),
            )),
        }
    }

    fn fixture(&self, p: &str, path: &str) -> Result<AttachmentSource> {
        let mut full = PathBuf::from(p);
        if full.is_relative() {
            if let Some(base) = &self.base {
                full = base.join(full);
            }
        }
        if !full.is_file() {
            return Err(self.err(
                path,
                format!("attachment file {} does not exist", full.display()),
            ));
        }
        Ok(AttachmentSource::Copy(full))
    }

    fn generate(
        &mut self,
        g: &Value,
        chats: &mut Vec<PlannedChat>,
        messages: &mut Vec<PlannedMessage>,
    ) -> Result<()> {
        let path = "generate";
        let o = self.object(g, path)?;
        self.check_keys(
            o,
            path,
            &[
                "seed",
                "people",
                "dms",
                "groups",
                "group_size",
                "messages",
                "span",
                "from_me",
                "attachments",
                "missing_attachments",
                "attachment_bytes",
                "reactions",
                "replies",
                "sms",
                "unread",
            ],
        )?;
        let mut rng = Rng(self.int(o, "seed", path)?.unwrap_or(42) as u64);
        let n_people = self.int(o, "people", path)?.unwrap_or(20).max(1);
        let dms = self.int(o, "dms", path)?.unwrap_or(10);
        let groups = self.int(o, "groups", path)?.unwrap_or(3);
        let (gmin, gmax) = self.int_pair(o, "group_size", path, (3, 6))?;
        let n_messages = self.int(o, "messages", path)?.unwrap_or(500);
        if n_messages > 1_000_000 || n_people > 100_000 || dms + groups > 100_000 {
            return Err(self.err(
                path,
                "too big: at most 1,000,000 messages, 100,000 people and 100,000 chats",
            ));
        }
        let span = match self.string(o, "span", path)? {
            Some(s) => dates::parse_relative(&format!("+{}", s.trim_start_matches(['+', '-'])))
                .filter(|d| *d > 0)
                .ok_or_else(|| {
                    self.err(
                        "generate.span",
                        format!("bad span {s:?}: expected like \"30d\""),
                    )
                })?,
            None => 30 * 24 * 60 * MINUTE,
        };
        let from_me = self.ratio(o, "from_me", path)?;
        let p_att = self.ratio(o, "attachments", path)?;
        let p_missing = self.ratio(o, "missing_attachments", path)?;
        let (bmin, bmax) = self.int_pair(o, "attachment_bytes", path, (2_000, 40_000))?;
        let p_react = self.ratio(o, "reactions", path)?;
        let p_reply = self.ratio(o, "replies", path)?;
        let p_sms = self.ratio(o, "sms", path)?;
        let p_unread = self.ratio(o, "unread", path)?;
        if dms + groups == 0 {
            return Err(self.err(path, "generate needs at least one of dms, groups"));
        }
        if gmin < 2 && groups > 0 {
            return Err(self.err(
                "generate.group_size",
                "a group has at least 2 other participants",
            ));
        }

        let people: Vec<String> = (0..n_people)
            .map(|i| format!("+1555{:07}", 1_000_000 + i))
            .collect();
        for (i, h) in people.iter().enumerate() {
            let name = format!(
                "{} {}",
                FIRST[i % FIRST.len()],
                LAST[(i / FIRST.len()) % LAST.len()]
            );
            self.contacts.push((h.clone(), name));
        }
        let first_chat = chats.len();
        for i in 0..dms {
            let h = people[(i as usize) % people.len()].clone();
            let service = if rng.chance(p_sms) { "SMS" } else { "iMessage" };
            chats.push(PlannedChat {
                group: false,
                service: service.into(),
                participants: vec![h],
                name: None,
                identifier: None,
            });
        }
        for i in 0..groups {
            let size = rng.range(gmin, gmax).min(people.len() as i64).max(1) as usize;
            let mut members: Vec<String> = Vec::new();
            while members.len() < size {
                let h = people[rng.below(people.len() as u64) as usize].clone();
                if !members.contains(&h) {
                    members.push(h);
                }
            }
            chats.push(PlannedChat {
                group: true,
                service: "iMessage".into(),
                participants: members,
                name: if i % 4 == 3 {
                    None
                } else {
                    Some(format!(
                        "{} {}",
                        GROUP_NAMES[(i as usize) % GROUP_NAMES.len()],
                        i + 1
                    ))
                },
                identifier: Some(format!(
                    "chat{:018}",
                    rng.next() % 1_000_000_000_000_000_000
                )),
            });
        }
        let n_chats = chats.len() - first_chat;
        // Zipf-like weights so a few chats are busy and most are quiet, like a real phone.
        let weights: Vec<f64> = (0..n_chats).map(|i| 1.0 / (i as f64 + 1.0)).collect();
        let total: f64 = weights.iter().sum();
        let mut times: Vec<(i64, usize)> = (0..n_messages)
            .map(|_| {
                let t = self.now - span + rng.below(span as u64) as i64;
                let mut x = (rng.next() >> 11) as f64 / (1u64 << 53) as f64 * total;
                let mut ci = 0;
                while ci + 1 < n_chats && x >= weights[ci] {
                    x -= weights[ci];
                    ci += 1;
                }
                (t, first_chat + ci)
            })
            .collect();
        times.sort();
        let mut history: HashMap<usize, Vec<Target>> = HashMap::new();
        for (t, chat) in times {
            let c = &chats[chat];
            let seq = messages.len();
            let mine = rng.chance(from_me);
            let sender = if mine {
                if c.group {
                    None
                } else {
                    Some(c.participants[0].clone())
                }
            } else {
                Some(c.participants[rng.below(c.participants.len() as u64) as usize].clone())
            };
            let read = mine || !rng.chance(p_unread);
            let mut msg = NewMessage {
                guid: rng.guid(),
                join_chat: Some(chat as i64),
                is_from_me: mine,
                date: t,
                is_read: !mine && read,
                date_read: if !mine && read { t + MINUTE } else { 0 },
                service: c.service.clone(),
                destination_caller_id: self.me.clone(),
                account: self.me.as_ref().map(|m| account_of(m)),
                ..Default::default()
            };
            let past = history.entry(chat).or_default();
            if !past.is_empty() && rng.chance(p_react) {
                let target = past[rng.below(past.len() as u64) as usize].clone();
                let code = 2000 + rng.below(6) as i64;
                msg.text = tapback::row_text(code, None, &target.text);
                msg.associated_message_guid = Some(format!("p:0/{}", target.guid));
                msg.associated_message_type = code;
            } else {
                let words = rng.range(1, 14) as usize;
                let mut text: Vec<&str> = (0..words)
                    .map(|_| WORDS[rng.below(WORDS.len() as u64) as usize])
                    .collect();
                if let Some(first) = text.first_mut() {
                    *first = WORDS_CAP[rng.below(WORDS_CAP.len() as u64) as usize];
                }
                msg.text = text.join(" ");
                if !past.is_empty() && rng.chance(p_reply) {
                    let parent = past[rng.below(past.len() as u64) as usize].clone();
                    msg.thread_originator_guid = Some(parent.guid.clone());
                    msg.thread_originator_part =
                        Some(format!("0:0:{}", parent.text.chars().count()));
                    msg.reply_to_guid = Some(parent.guid.clone());
                    msg.associated_message_guid = Some(format!("p:0/{}", parent.guid));
                }
                if rng.chance(p_att) {
                    let (name, mime) =
                        ATTACHMENT_KINDS[rng.below(ATTACHMENT_KINDS.len() as u64) as usize];
                    let name = format!("{}_{seq}.{}", name, name_ext(mime));
                    let bytes = rng.range(bmin, bmax);
                    let src = if rng.chance(p_missing) {
                        AttachmentSource::Missing {
                            name,
                            bytes,
                            mime: Some(mime.into()),
                        }
                    } else {
                        AttachmentSource::Synth {
                            name,
                            bytes,
                            mime: Some(mime.into()),
                        }
                    };
                    msg.attachments.push((rng.guid(), src));
                }
                past.push(Target {
                    guid: msg.guid.clone(),
                    text: msg.text.clone(),
                    chat,
                });
            }
            messages.push(PlannedMessage {
                chat,
                seq,
                sender,
                msg,
            });
        }
        Ok(())
    }
}

fn account_of(me: &str) -> String {
    if me.contains('@') {
        format!("e:{me}")
    } else {
        format!("p:{me}")
    }
}

fn name_ext(mime: &str) -> &'static str {
    match mime {
        "image/jpeg" => "jpeg",
        "image/png" => "png",
        "image/heic" => "heic",
        "application/pdf" => "pdf",
        "video/quicktime" => "mov",
        "audio/x-caf" => "caf",
        _ => "bin",
    }
}

/// A phone number (`+` then digits, or digits) or an email address.
fn looks_like_handle(s: &str) -> bool {
    let digits = s.strip_prefix('+').unwrap_or(s);
    (!digits.is_empty() && digits.len() <= 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        || (s.contains('@') && !s.starts_with('@') && !s.ends_with('@') && !s.contains(' '))
}

fn write_plan(world: &World, plan: &Plan) -> Result<()> {
    let tx = world.begin()?;
    if let Some(me) = &plan.me {
        world.set_meta("me", me)?;
    }
    for (h, n) in &plan.contacts {
        world.set_contact_name(h, n)?;
    }
    let mut chat_ids = Vec::with_capacity(plan.chats.len());
    for c in &plan.chats {
        let id = world.insert_chat(
            c.group,
            &c.service,
            &c.participants,
            c.name.as_deref(),
            c.identifier.clone(),
        )?;
        chat_ids.push(id);
    }
    let mut handles: HashMap<(String, String), i64> = HashMap::new();
    for pm in &plan.messages {
        let mut msg = pm.msg.clone();
        let service = plan.chats[pm.chat].service.clone();
        msg.handle_rowid = match pm.sender.clone() {
            Some(h) => {
                let key = (h.clone(), service.clone());
                match handles.get(&key) {
                    Some(r) => *r,
                    None => {
                        let r = world.ensure_handle(&h, &service)?;
                        handles.insert(key, r);
                        r
                    }
                }
            }
            None => 0,
        };
        msg.join_chat = msg.join_chat.map(|_| chat_ids[pm.chat]);
        world.insert_message(&msg)?;
    }
    tx.commit()
}

const FIRST: [&str; 16] = [
    "Ana", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kai",
    "Lena", "Mateo", "Nora", "Omar", "Priya",
];
const LAST: [&str; 8] = [
    "Alvarez", "Brooks", "Chen", "Dubois", "Eriksen", "Fischer", "Gupta", "Haddad",
];
const GROUP_NAMES: [&str; 6] = [
    "Book club",
    "Climbing",
    "Work crew",
    "Cousins",
    "Band",
    "Neighbours",
];
const ATTACHMENT_KINDS: [(&str, &str); 6] = [
    ("IMG", "image/jpeg"),
    ("IMG", "image/heic"),
    ("Screenshot", "image/png"),
    ("document", "application/pdf"),
    ("video", "video/quicktime"),
    ("Audio Message", "audio/x-caf"),
];
const WORDS_CAP: [&str; 12] = [
    "Hey", "Ok", "So", "Did", "Can", "Thanks", "Sure", "Lol", "Wait", "Yes", "No", "Maybe",
];
const WORDS: [&str; 40] = [
    "the", "a", "we", "you", "dinner", "tomorrow", "tonight", "at", "seven", "sounds", "good",
    "see", "later", "running", "late", "call", "me", "when", "free", "meeting", "moved", "to",
    "friday", "bring", "snacks", "train", "is", "delayed", "again", "great", "idea", "weekend",
    "plans", "photo", "from", "trip", "love", "it", "haha", "?",
];
