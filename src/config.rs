//! Configuration: reads the JSON5 config file, validates every key and value with errors that
//! name the key path, and resolves each iMessage account with defaults filled in
//! (DESIGN decision 1).
//!
//! Parsing is in two steps: `parse` turns the text into a `serde_json::Value` with the
//! `json5` crate, refusing duplicate keys, non-finite numbers and nesting deeper than 64
//! levels, then our own walk checks the value. A serde derive would stop at the
//! first problem and describe it in serde's words; the walk reports every problem as
//! `<key path>: <what is wrong>, got <value>`, suggests the nearest known key for typos, and
//! checks combinations (`dmPolicy: "open"` needs `"*"` in `allowFrom`). Files larger than
//! [`MAX_CONFIG_BYTES`] are refused without being read whole.
//!
//! Accounts: each `imessage.accounts.<id>` overrides the top-level `imessage` keys one by one
//! (an account's `groups` replaces the top-level map). Unlike the reference (§7.2), schema
//! defaults are never written into accounts, so a top-level `groupPolicy` reaches them.

mod parse;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_json::{json, Map, Value};

use parse::ParseError;

use crate::access::{AllowEntry, MentionPatterns};

/// The largest config file read. A real one is a few KiB; a mistaken `--config` (a log, a
/// disk image) must not be read into memory whole.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The largest value of an integer key: far past any sensible setting, and within what each
/// consumer holds: `usize` on any 32- or 64-bit target (`textChunkLimit`), a byte count in
/// `u64` (`mediaMaxMb`), a `Duration` (`timeoutMs`), and tokio's semaphore, which panics
/// above 2^61 permits on 64-bit targets (`maxConcurrency`; larger values used to crash `run`).
const MAX_INT: u64 = u32::MAX as u64;

/// A config error, always naming the file (origin) and, for bad content, the key path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{origin}: cannot read config: {message}")]
    Io { origin: String, message: String },
    #[error("{origin}: invalid JSON5: {message}")]
    Syntax { origin: String, message: String },
    /// One or more problems; with several, `message` lists them one per line.
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// How outgoing messages are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Service {
    #[default]
    Auto,
    Imessage,
    Sms,
}

impl Service {
    /// The wire and config spelling (`auto`, `imessage`, `sms`).
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Auto => "auto",
            Service::Imessage => "imessage",
            Service::Sms => "sms",
        }
    }
}

/// Who may DM the assistant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DmPolicy {
    #[default]
    Pairing,
    Allowlist,
    Open,
    Disabled,
}

impl DmPolicy {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DmPolicy::Pairing => "pairing",
            DmPolicy::Allowlist => "allowlist",
            DmPolicy::Open => "open",
            DmPolicy::Disabled => "disabled",
        }
    }
}

/// Which groups the assistant answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupPolicy {
    #[default]
    Open,
    Allowlist,
    Disabled,
}

impl GroupPolicy {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupPolicy::Open => "open",
            GroupPolicy::Allowlist => "allowlist",
            GroupPolicy::Disabled => "disabled",
        }
    }
}

/// How long replies are split (DESIGN decision 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChunkMode {
    #[default]
    Length,
    Newline,
}

impl ChunkMode {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ChunkMode::Length => "length",
            ChunkMode::Newline => "newline",
        }
    }
}

/// Per-group settings (`imessage.groups.<chat_id or "*">`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupConfig {
    pub require_mention: Option<bool>,
}

/// One iMessage account, fully resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountConfig {
    /// `"default"` when there is no `imessage.accounts`.
    pub id: String,
    /// `imessage.accounts.<id>.name`, a display name.
    pub name: Option<String>,
    /// False when the top level or the account says `enabled: false`.
    pub enabled: bool,
    /// `~` expanded; validated as a safe executable name or path.
    pub cli_path: String,
    /// `~` expanded, made absolute.
    pub db_path: Option<PathBuf>,
    pub service: Service,
    /// Upper-case ISO 3166 code, checked against libphonenumber's regions.
    pub region: String,
    pub dm_policy: DmPolicy,
    pub allow_from: Vec<String>,
    pub group_policy: GroupPolicy,
    pub group_allow_from: Vec<String>,
    /// Key: chat_id as a decimal string, or `"*"`.
    pub groups: BTreeMap<String, GroupConfig>,
    pub include_attachments: bool,
    pub media_max_mb: u64,
    pub text_chunk_limit: usize,
    pub chunk_mode: ChunkMode,
    /// `imessage.maxChunksPerReply`: a longer reply is cut to this many chunks, the last one
    /// ending with a visible marker (DESIGN decision 11).
    pub max_chunks_per_reply: usize,
    /// `imessage.historyLimit`: unanswered group messages kept per chat as context for the
    /// next mention (0 keeps none).
    pub history_limit: usize,
    /// `imessage.remoteHost`: the Mac imsg runs on when `cliPath` reaches it over SSH; inbound
    /// attachments are copied from there with scp. Unset: detected from a `cliPath` script.
    pub remote_host: Option<String>,
    /// `routing.groupChat.mentionPatterns` (global, copied into every account), compiled.
    pub mention_patterns: MentionPatterns,
    /// `messages.responsePrefix` (global, copied into every account).
    pub response_prefix: Option<String>,
}

impl Default for AccountConfig {
    fn default() -> Self {
        AccountConfig {
            id: "default".to_string(),
            name: None,
            enabled: true,
            cli_path: "imsg".to_string(),
            db_path: None,
            service: Service::Auto,
            region: "US".to_string(),
            dm_policy: DmPolicy::Pairing,
            allow_from: Vec::new(),
            group_policy: GroupPolicy::Open,
            group_allow_from: Vec::new(),
            groups: BTreeMap::new(),
            include_attachments: false,
            media_max_mb: 16,
            text_chunk_limit: 4000,
            chunk_mode: ChunkMode::Length,
            max_chunks_per_reply: DEFAULT_MAX_CHUNKS_PER_REPLY,
            history_limit: DEFAULT_HISTORY_LIMIT,
            remote_host: None,
            mention_patterns: MentionPatterns::default(),
            response_prefix: None,
        }
    }
}

/// Default `imessage.historyLimit`.
pub const DEFAULT_HISTORY_LIMIT: usize = 20;
/// Upper bound of `imessage.historyLimit`: kept context is memory, and an agent prompt.
pub const MAX_HISTORY_LIMIT: u64 = 1000;
/// Default cap on chunks per reply (`imessage.maxChunksPerReply`).
pub const DEFAULT_MAX_CHUNKS_PER_REPLY: usize = 20;
/// Default cap on an agent's reply (`agent.maxReplyBytes`): 1 MiB.
pub const DEFAULT_AGENT_MAX_REPLY_BYTES: usize = 1024 * 1024;
/// Default agent timeout (`agent.timeoutMs`).
pub const DEFAULT_AGENT_TIMEOUT_MS: u64 = 60_000;
/// Default bound on concurrent agent calls (`agent.maxConcurrency`).
pub const DEFAULT_AGENT_MAX_CONCURRENCY: usize = 8;

/// The agent backend (`agent.kind`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentConfig {
    Echo,
    Exec {
        command: Vec<String>,
        timeout_ms: u64,
        /// `agent.maxReplyBytes`: a longer reply is an error, never a half answer.
        max_reply_bytes: usize,
    },
    Http {
        url: String,
        timeout_ms: u64,
        /// `agent.maxReplyBytes`, as for `Exec`.
        max_reply_bytes: usize,
    },
}

/// The whole resolved configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Sorted by id.
    pub accounts: Vec<AccountConfig>,
    pub agent: AgentConfig,
    pub agent_max_concurrency: usize,
    /// `state.dir`, default `~/.imsg-gateway/state`; `~` expanded, made absolute.
    pub state_dir: PathBuf,
    /// Legal but probably unintended settings, for `config check` and the startup log.
    pub warnings: Vec<String>,
}

impl Config {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let io = |e: std::io::Error| ConfigError::Io {
            origin: origin.clone(),
            message: e.to_string(),
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut bytes = Vec::new();
        // One byte past the limit is enough to know the file is too large.
        (&file)
            .take(MAX_CONFIG_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > MAX_CONFIG_BYTES {
            // A regular file's metadata gives its size; of a pipe we only know it is larger.
            let size = match file.metadata() {
                Ok(m) if m.is_file() && m.len() > MAX_CONFIG_BYTES => format!("{} bytes", m.len()),
                _ => format!("more than {MAX_CONFIG_BYTES} bytes"),
            };
            return Err(ConfigError::Invalid {
                origin,
                message: format!(
                    "config file is too large: {size} (the limit is {} MiB)",
                    MAX_CONFIG_BYTES >> 20
                ),
            });
        }
        let text = String::from_utf8(bytes).map_err(|_| {
            io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "stream did not contain valid UTF-8",
            ))
        })?;
        Config::from_json5_str(&text, &origin)
    }

    /// Parses and validates config text; `origin` names it in errors (usually the path).
    pub fn from_json5_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            message,
        };
        let parsed = parse::parse(text).map_err(|e| match e {
            ParseError::Syntax(message) => ConfigError::Syntax {
                origin: origin.to_string(),
                message,
            },
            ParseError::TooDeep => invalid(format!(
                "config nests deeper than {} levels",
                parse::MAX_DEPTH
            )),
            ParseError::NonFinite { path, literal } => {
                let what = if path.is_empty() { "the config" } else { &path };
                invalid(format!("{what}: {literal} is not a finite number"))
            }
        })?;
        let mut walk = Walk::default();
        // The walk still runs: the tree holds each duplicate's last value, and its problems
        // are worth reporting in the same pass.
        for path in parsed.duplicates {
            walk.err(format!("duplicate key {path}"));
        }
        let config = walk.config(&parsed.value);
        if walk.errors.is_empty() {
            let mut config = config.expect("no errors means a config");
            config.warnings = walk.warnings;
            return Ok(config);
        }
        let message = if walk.errors.len() == 1 {
            walk.errors.remove(0)
        } else {
            format!(
                "{} problems:\n  - {}",
                walk.errors.len(),
                walk.errors.join("\n  - ")
            )
        };
        Err(invalid(message))
    }

    /// `$IMSG_GATEWAY_CONFIG`, else `~/.imsg-gateway/config.json5`.
    pub fn default_path() -> PathBuf {
        match std::env::var_os("IMSG_GATEWAY_CONFIG") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => home_dir().join(".imsg-gateway").join("config.json5"),
        }
    }

    /// The resolved config in the file's own shape, every key present with defaults filled
    /// in, each account spelled out under `imessage.accounts`. Loading it again gives the
    /// same config.
    pub fn resolved_json(&self) -> Value {
        let accounts: Map<String, Value> = self
            .accounts
            .iter()
            .map(|a| (a.id.clone(), account_json(a)))
            .collect();
        let first = self.accounts.first().cloned().unwrap_or_default();
        let agent = match &self.agent {
            AgentConfig::Echo => json!({"kind": "echo"}),
            AgentConfig::Exec {
                command,
                timeout_ms,
                max_reply_bytes,
            } => json!({"kind": "exec", "command": command, "timeoutMs": timeout_ms,
                        "maxReplyBytes": max_reply_bytes}),
            AgentConfig::Http {
                url,
                timeout_ms,
                max_reply_bytes,
            } => {
                json!({"kind": "http", "url": url, "timeoutMs": timeout_ms,
                       "maxReplyBytes": max_reply_bytes})
            }
        };
        let mut agent = agent;
        agent["maxConcurrency"] = json!(self.agent_max_concurrency);
        json!({
            "imessage": {"accounts": accounts},
            "routing": {"groupChat": {"mentionPatterns": first.mention_patterns.sources()}},
            "messages": {"responsePrefix": first.response_prefix},
            "agent": agent,
            "state": {"dir": self.state_dir.display().to_string()},
        })
    }
}

fn account_json(a: &AccountConfig) -> Value {
    let groups: Map<String, Value> = a
        .groups
        .iter()
        .map(|(k, g)| {
            let mut o = Map::new();
            if let Some(r) = g.require_mention {
                o.insert("requireMention".into(), json!(r));
            }
            (k.clone(), Value::Object(o))
        })
        .collect();
    json!({
        "name": a.name,
        "enabled": a.enabled,
        "cliPath": a.cli_path,
        "dbPath": a.db_path.as_ref().map(|p| p.display().to_string()),
        "service": a.service.as_str(),
        "region": a.region,
        "dmPolicy": a.dm_policy.as_str(),
        "allowFrom": a.allow_from,
        "groupPolicy": a.group_policy.as_str(),
        "groupAllowFrom": a.group_allow_from,
        "groups": groups,
        "includeAttachments": a.include_attachments,
        "mediaMaxMb": a.media_max_mb,
        "textChunkLimit": a.text_chunk_limit,
        "chunkMode": a.chunk_mode.as_str(),
        "maxChunksPerReply": a.max_chunks_per_reply,
        "historyLimit": a.history_limit,
        "remoteHost": a.remote_host,
    })
}

fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// `~` and `~/...` to the home directory, then relative paths against the working directory.
fn expand_path(raw: &str) -> PathBuf {
    let p = if raw == "~" {
        home_dir()
    } else if let Some(rest) = raw.strip_prefix("~/") {
        home_dir().join(rest)
    } else {
        PathBuf::from(raw)
    };
    if p.is_absolute() {
        p
    } else {
        std::env::current_dir().map(|cwd| cwd.join(&p)).unwrap_or(p)
    }
}

const TOP_KEYS: &[&str] = &["imessage", "routing", "messages", "agent", "state"];
const IMESSAGE_KEYS: &[&str] = &[
    "enabled",
    "cliPath",
    "dbPath",
    "service",
    "region",
    "dmPolicy",
    "allowFrom",
    "groupPolicy",
    "groupAllowFrom",
    "groups",
    "includeAttachments",
    "mediaMaxMb",
    "textChunkLimit",
    "chunkMode",
    "maxChunksPerReply",
    "historyLimit",
    "remoteHost",
    "accounts",
];
const ACCOUNT_KEYS: &[&str] = &[
    "name",
    "enabled",
    "cliPath",
    "dbPath",
    "service",
    "region",
    "dmPolicy",
    "allowFrom",
    "groupPolicy",
    "groupAllowFrom",
    "groups",
    "includeAttachments",
    "mediaMaxMb",
    "textChunkLimit",
    "chunkMode",
    "maxChunksPerReply",
    "historyLimit",
    "remoteHost",
];
const GROUP_KEYS: &[&str] = &["requireMention"];
const ROUTING_KEYS: &[&str] = &["groupChat"];
const GROUP_CHAT_KEYS: &[&str] = &["mentionPatterns"];
const MESSAGES_KEYS: &[&str] = &["responsePrefix"];
const AGENT_KEYS: &[&str] = &[
    "kind",
    "command",
    "url",
    "timeoutMs",
    "maxConcurrency",
    "maxReplyBytes",
];
const STATE_KEYS: &[&str] = &["dir"];

/// A value and the key path it was read from (for error messages about combinations).
#[derive(Debug, Clone)]
struct At<T> {
    value: T,
    path: String,
}

/// One layer of `imessage` keys: the top level, or one account's overrides.
#[derive(Debug, Clone, Default)]
struct Layer {
    name: Option<At<String>>,
    enabled: Option<At<bool>>,
    cli_path: Option<At<String>>,
    db_path: Option<At<PathBuf>>,
    service: Option<At<Service>>,
    region: Option<At<String>>,
    dm_policy: Option<At<DmPolicy>>,
    allow_from: Option<At<Vec<String>>>,
    group_policy: Option<At<GroupPolicy>>,
    group_allow_from: Option<At<Vec<String>>>,
    groups: Option<At<BTreeMap<String, GroupConfig>>>,
    include_attachments: Option<At<bool>>,
    media_max_mb: Option<At<u64>>,
    text_chunk_limit: Option<At<usize>>,
    chunk_mode: Option<At<ChunkMode>>,
    max_chunks_per_reply: Option<At<usize>>,
    history_limit: Option<At<usize>>,
    remote_host: Option<At<String>>,
}

impl Layer {
    /// Shallow override: every key set in `self` wins over `base`.
    fn over(self, base: &Layer) -> Layer {
        Layer {
            name: self.name,
            enabled: self.enabled.or_else(|| base.enabled.clone()),
            cli_path: self.cli_path.or_else(|| base.cli_path.clone()),
            db_path: self.db_path.or_else(|| base.db_path.clone()),
            service: self.service.or_else(|| base.service.clone()),
            region: self.region.or_else(|| base.region.clone()),
            dm_policy: self.dm_policy.or_else(|| base.dm_policy.clone()),
            allow_from: self.allow_from.or_else(|| base.allow_from.clone()),
            group_policy: self.group_policy.or_else(|| base.group_policy.clone()),
            group_allow_from: self
                .group_allow_from
                .or_else(|| base.group_allow_from.clone()),
            groups: self.groups.or_else(|| base.groups.clone()),
            include_attachments: self
                .include_attachments
                .or_else(|| base.include_attachments.clone()),
            media_max_mb: self.media_max_mb.or_else(|| base.media_max_mb.clone()),
            text_chunk_limit: self
                .text_chunk_limit
                .or_else(|| base.text_chunk_limit.clone()),
            chunk_mode: self.chunk_mode.or_else(|| base.chunk_mode.clone()),
            max_chunks_per_reply: self
                .max_chunks_per_reply
                .or_else(|| base.max_chunks_per_reply.clone()),
            history_limit: self.history_limit.or_else(|| base.history_limit.clone()),
            remote_host: self.remote_host.or_else(|| base.remote_host.clone()),
        }
    }
}

fn val<T>(a: Option<At<T>>) -> Option<T> {
    a.map(|a| a.value)
}

/// The validating walk; collects every error and warning.
#[derive(Default)]
struct Walk {
    errors: Vec<String>,
    warnings: Vec<String>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn show(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 60 {
        format!("{}...", text.chars().take(57).collect::<String>())
    } else {
        text
    }
}

fn quoted_list(options: &[&str]) -> String {
    options
        .iter()
        .map(|o| format!("\"{o}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An integer literal or a float with no fraction (`4e3`), as f64: exact for every integer
/// up to MAX_INT, which is all a bound check needs.
fn whole_number(v: &Value) -> Option<f64> {
    match (v.as_u64(), v.as_f64()) {
        (Some(n), _) => Some(n as f64),
        (None, Some(f)) if f.fract() == 0.0 => Some(f),
        _ => None,
    }
}

/// Levenshtein distance, ignoring case (for "did you mean" suggestions).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The known key closest to `key`, if it is close enough to be a typo.
fn suggest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4) && *d < k.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

impl Walk {
    fn err(&mut self, msg: String) {
        self.errors.push(msg);
    }

    /// The object at `path`; `None` (and an error) when it is not one.
    fn any_object<'v>(&mut self, v: &'v Value, path: &str) -> Option<&'v Map<String, Value>> {
        let obj = v.as_object();
        if obj.is_none() {
            let what = if path.is_empty() { "the config" } else { path };
            self.err(format!("{what}: expected an object, got {}", show(v)));
        }
        obj
    }

    /// The object at `path`, with every key not in `known` reported.
    fn object<'v>(
        &mut self,
        v: &'v Value,
        path: &str,
        known: &[&str],
    ) -> Option<&'v Map<String, Value>> {
        let obj = self.any_object(v, path)?;
        for key in obj.keys().filter(|k| !known.contains(&k.as_str())) {
            let hint = if path.is_empty() && key == "channels" {
                " (this gateway reads the imessage section at the top level: imessage.*)"
                    .to_string()
            } else {
                suggest(key, known)
                    .map(|s| format!(" (did you mean {s}?)"))
                    .unwrap_or_else(|| format!(" (known keys: {})", known.join(", ")))
            };
            self.err(format!("unknown key {}{hint}", join(path, key)));
        }
        Some(obj)
    }

    fn bool(&mut self, obj: &Map<String, Value>, path: &str, key: &str) -> Option<At<bool>> {
        let path = join(path, key);
        match obj.get(key)? {
            Value::Null => None,
            Value::Bool(b) => Some(At { value: *b, path }),
            v => {
                self.err(format!("{path}: expected true or false, got {}", show(v)));
                None
            }
        }
    }

    fn string(&mut self, obj: &Map<String, Value>, path: &str, key: &str) -> Option<At<String>> {
        let path = join(path, key);
        match obj.get(key)? {
            Value::Null => None,
            Value::String(s) => Some(At {
                value: s.clone(),
                path,
            }),
            v => {
                self.err(format!("{path}: expected a string, got {}", show(v)));
                None
            }
        }
    }

    fn non_empty_string(
        &mut self,
        obj: &Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Option<At<String>> {
        let s = self.string(obj, path, key)?;
        if s.value.trim().is_empty() {
            self.err(format!("{}: must not be empty", s.path));
            return None;
        }
        Some(s)
    }

    /// An integer in `1..=MAX_INT`.
    fn positive_int(&mut self, obj: &Map<String, Value>, path: &str, key: &str) -> Option<At<u64>> {
        let path = join(path, key);
        let v = obj.get(key)?;
        if v.is_null() {
            return None;
        }
        let whole = whole_number(v);
        match whole {
            Some(f) if (1.0..=MAX_INT as f64).contains(&f) => Some(At {
                value: f as u64,
                path,
            }),
            Some(f) if f > MAX_INT as f64 => {
                self.err(format!(
                    "{path}: expected a positive integer of at most {MAX_INT}, got {}",
                    show(v)
                ));
                None
            }
            _ => {
                self.err(format!(
                    "{path}: expected a positive integer, got {}",
                    show(v)
                ));
                None
            }
        }
    }

    /// `remoteHost`: `host` or `user@host`, as ssh and scp take it.
    fn remote_host(&mut self, obj: &Map<String, Value>, path: &str) -> Option<At<String>> {
        let h = self.non_empty_string(obj, path, "remoteHost")?;
        let v = h.value.trim();
        let ok = v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
            && !v.starts_with('-');
        if !ok {
            self.err(format!(
                "{}: expected a host name or user@host for ssh/scp, got {}",
                h.path,
                show(&Value::String(h.value.clone()))
            ));
            return None;
        }
        Some(At {
            value: v.to_string(),
            path: h.path,
        })
    }

    /// An integer in `min..=max`.
    fn bounded_int(
        &mut self,
        obj: &Map<String, Value>,
        path: &str,
        key: &str,
        min: u64,
        max: u64,
    ) -> Option<At<usize>> {
        let path = join(path, key);
        let v = obj.get(key)?;
        if v.is_null() {
            return None;
        }
        let whole = whole_number(v);
        match whole {
            Some(f) if (min as f64..=max as f64).contains(&f) => Some(At {
                value: f as usize,
                path,
            }),
            _ => {
                self.err(format!(
                    "{path}: expected an integer from {min} to {max}, got {}",
                    show(v)
                ));
                None
            }
        }
    }

    fn one_of<T: Copy>(
        &mut self,
        obj: &Map<String, Value>,
        path: &str,
        key: &str,
        options: &[(&str, T)],
    ) -> Option<At<T>> {
        let path = join(path, key);
        let v = obj.get(key)?;
        if v.is_null() {
            return None;
        }
        if let Some(found) = v
            .as_str()
            .and_then(|s| options.iter().find(|(name, _)| *name == s))
        {
            return Some(At {
                value: found.1,
                path,
            });
        }
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        let hint = v
            .as_str()
            .and_then(|s| suggest(s, &names))
            .map(|s| format!(" (did you mean \"{s}\"?)"))
            .unwrap_or_default();
        self.err(format!(
            "{path}: expected one of {}, got {}{hint}",
            quoted_list(&names),
            show(v)
        ));
        None
    }

    /// An array of strings (numbers are accepted and written as decimal strings, so
    /// `allowFrom: [15550001111]` works).
    fn string_list(
        &mut self,
        obj: &Map<String, Value>,
        path: &str,
        key: &str,
        numbers_ok: bool,
    ) -> Option<At<Vec<String>>> {
        let path = join(path, key);
        let v = obj.get(key)?;
        let items = match v {
            Value::Null => return None,
            Value::Array(items) => items,
            v => {
                self.err(format!(
                    "{path}: expected an array of strings, got {}",
                    show(v)
                ));
                return None;
            }
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::String(s) if !s.trim().is_empty() => out.push(s.trim().to_string()),
                Value::String(_) => {
                    self.err(format!("{path}[{i}]: must not be empty"));
                    ok = false;
                }
                Value::Number(n) if numbers_ok && n.is_u64() => out.push(n.to_string()),
                v => {
                    let what = if numbers_ok {
                        "a string or a number"
                    } else {
                        "a string"
                    };
                    self.err(format!("{path}[{i}]: expected {what}, got {}", show(v)));
                    ok = false;
                }
            }
        }
        ok.then_some(At { value: out, path })
    }

    fn allow_list(
        &mut self,
        obj: &Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Option<At<Vec<String>>> {
        let list = self.string_list(obj, path, key, true)?;
        let mut ok = true;
        for (i, entry) in list.value.iter().enumerate() {
            let lower = entry.to_ascii_lowercase();
            for prefix in ["chat_id:", "chatid:", "chat:"] {
                if let Some(rest) = lower.strip_prefix(prefix) {
                    if rest.trim().parse::<u64>().is_err() {
                        self.err(format!(
                            "{}[{i}]: expected chat_id:<number>, got \"{entry}\"",
                            list.path
                        ));
                        ok = false;
                    }
                }
            }
        }
        ok.then_some(list)
    }

    fn groups(
        &mut self,
        obj: &Map<String, Value>,
        path: &str,
    ) -> Option<At<BTreeMap<String, GroupConfig>>> {
        let path = join(path, "groups");
        let v = obj.get("groups")?;
        if v.is_null() {
            return None;
        }
        let map = self.any_object(v, &path)?;
        let mut out = BTreeMap::new();
        for (key, g) in map {
            let gpath = join(&path, key);
            let id = key.trim();
            if id != "*" && !(id.parse::<u64>().is_ok_and(|n| n > 0)) {
                self.err(format!(
                    "{gpath}: a groups key must be a chat_id (a positive integer) or \"*\""
                ));
                continue;
            }
            let Some(gobj) = self.object(g, &gpath, GROUP_KEYS) else {
                continue;
            };
            let require_mention = val(self.bool(gobj, &gpath, "requireMention"));
            out.insert(id.to_string(), GroupConfig { require_mention });
        }
        Some(At { value: out, path })
    }

    fn cli_path(&mut self, obj: &Map<String, Value>, path: &str) -> Option<At<String>> {
        let s = self.non_empty_string(obj, path, "cliPath")?;
        let raw = s.value.trim();
        let bad = raw.chars().find(|c| {
            matches!(
                c,
                ';' | '&' | '|' | '`' | '$' | '<' | '>' | '"' | '\'' | '\r' | '\n' | '\0'
            )
        });
        let path_like =
            raw.starts_with('.') || raw.starts_with('~') || raw.contains('/') || raw.contains('\\');
        let bare_ok = !raw.starts_with('-')
            && raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'));
        if let Some(c) = bad {
            self.err(format!(
                "{}: not a safe executable path (contains {c:?}): \"{raw}\"; use a wrapper script for anything that needs a shell",
                s.path
            ));
            return None;
        }
        if !path_like && !bare_ok {
            self.err(format!(
                "{}: not a safe executable name: \"{raw}\" (a bare name may use only letters, digits, '.', '_', '+', '-' and must not start with '-')",
                s.path
            ));
            return None;
        }
        let value = if raw == "~" || raw.starts_with("~/") {
            expand_path(raw).display().to_string()
        } else {
            raw.to_string()
        };
        Some(At {
            value,
            path: s.path,
        })
    }

    fn region(&mut self, obj: &Map<String, Value>, path: &str) -> Option<At<String>> {
        let s = self.string(obj, path, "region")?;
        let code = s.value.trim().to_ascii_uppercase();
        if phonenumber::country::Id::from_str(&code).is_err() {
            self.err(format!(
                "{}: expected an ISO 3166 region code such as \"US\" or \"GB\", got \"{}\"",
                s.path, s.value
            ));
            return None;
        }
        Some(At {
            value: code,
            path: s.path,
        })
    }

    /// One layer of `imessage` keys (top level or one account).
    fn layer(&mut self, obj: &Map<String, Value>, path: &str) -> Layer {
        Layer {
            name: self.string(obj, path, "name").and_then(|n| {
                let t = n.value.trim().to_string();
                (!t.is_empty()).then_some(At {
                    value: t,
                    path: n.path,
                })
            }),
            enabled: self.bool(obj, path, "enabled"),
            cli_path: self.cli_path(obj, path),
            db_path: self.non_empty_string(obj, path, "dbPath").map(|s| At {
                value: expand_path(s.value.trim()),
                path: s.path,
            }),
            service: self.one_of(
                obj,
                path,
                "service",
                &[
                    ("auto", Service::Auto),
                    ("imessage", Service::Imessage),
                    ("sms", Service::Sms),
                ],
            ),
            region: self.region(obj, path),
            dm_policy: self.one_of(
                obj,
                path,
                "dmPolicy",
                &[
                    ("pairing", DmPolicy::Pairing),
                    ("allowlist", DmPolicy::Allowlist),
                    ("open", DmPolicy::Open),
                    ("disabled", DmPolicy::Disabled),
                ],
            ),
            allow_from: self.allow_list(obj, path, "allowFrom"),
            group_policy: self.one_of(
                obj,
                path,
                "groupPolicy",
                &[
                    ("open", GroupPolicy::Open),
                    ("allowlist", GroupPolicy::Allowlist),
                    ("disabled", GroupPolicy::Disabled),
                ],
            ),
            group_allow_from: self.allow_list(obj, path, "groupAllowFrom"),
            groups: self.groups(obj, path),
            include_attachments: self.bool(obj, path, "includeAttachments"),
            media_max_mb: self.positive_int(obj, path, "mediaMaxMb"),
            text_chunk_limit: self.positive_int(obj, path, "textChunkLimit").map(|n| At {
                value: usize::try_from(n.value).expect("MAX_INT fits usize"),
                path: n.path,
            }),
            chunk_mode: self.one_of(
                obj,
                path,
                "chunkMode",
                &[
                    ("length", ChunkMode::Length),
                    ("newline", ChunkMode::Newline),
                ],
            ),
            max_chunks_per_reply: self
                .positive_int(obj, path, "maxChunksPerReply")
                .map(|n| At {
                    value: n.value as usize,
                    path: n.path,
                }),
            history_limit: self.bounded_int(obj, path, "historyLimit", 0, MAX_HISTORY_LIMIT),
            remote_host: self.remote_host(obj, path),
        }
    }

    fn config(&mut self, root: &Value) -> Option<Config> {
        let root = self.object(root, "", TOP_KEYS)?;
        let empty = Map::new();

        // imessage.*
        let imessage = match root.get("imessage").filter(|v| !v.is_null()) {
            Some(v) => self.object(v, "imessage", IMESSAGE_KEYS),
            None => Some(&empty),
        };
        let imessage = imessage.unwrap_or(&empty);
        let top = self.layer(imessage, "imessage");
        let mut layers: Vec<(String, Layer)> = Vec::new();
        match imessage.get("accounts") {
            None | Some(Value::Null) => layers.push(("default".to_string(), top.clone())),
            Some(v) => {
                if let Some(accounts) = self.any_object(v, "imessage.accounts") {
                    if accounts.is_empty() {
                        layers.push(("default".to_string(), top.clone()));
                    }
                    let mut seen: BTreeMap<String, String> = BTreeMap::new();
                    for (id, a) in accounts {
                        let apath = format!("imessage.accounts.{id}");
                        let id_ok = !id.is_empty()
                            && id.len() <= 64
                            && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                            && id
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                        if !id_ok {
                            self.err(format!(
                                "{apath}: an account id must be 1-64 letters, digits, '_' or '-', starting with a letter or digit"
                            ));
                            continue;
                        }
                        if let Some(other) = seen.insert(id.to_ascii_lowercase(), id.clone()) {
                            self.err(format!(
                                "{apath}: account ids must differ in more than letter case (also \"{other}\")"
                            ));
                            continue;
                        }
                        let Some(aobj) = self.object(a, &apath, ACCOUNT_KEYS) else {
                            continue;
                        };
                        let layer = self.layer(aobj, &apath).over(&top);
                        layers.push((id.clone(), layer));
                    }
                }
            }
        }

        // routing.groupChat.mentionPatterns
        let mut mention_patterns = MentionPatterns::default();
        if let Some(routing) = root.get("routing").filter(|v| !v.is_null()) {
            if let Some(r) = self.object(routing, "routing", ROUTING_KEYS) {
                if let Some(gc) = r.get("groupChat").filter(|v| !v.is_null()) {
                    if let Some(gc) = self.object(gc, "routing.groupChat", GROUP_CHAT_KEYS) {
                        let sources = val(self.string_list(
                            gc,
                            "routing.groupChat",
                            "mentionPatterns",
                            false,
                        ))
                        .unwrap_or_default();
                        match MentionPatterns::compile(&sources) {
                            Ok(m) => mention_patterns = m,
                            Err(bad) => {
                                for b in bad {
                                    self.err(format!(
                                        "routing.groupChat.mentionPatterns[{}]: invalid regular expression {}: {}",
                                        b.index,
                                        show(&Value::String(b.pattern)),
                                        b.error
                                    ));
                                }
                            }
                        }
                    }
                }
            }
        }

        // messages.responsePrefix
        let mut response_prefix = None;
        if let Some(messages) = root.get("messages").filter(|v| !v.is_null()) {
            if let Some(m) = self.object(messages, "messages", MESSAGES_KEYS) {
                response_prefix = val(self.string(m, "messages", "responsePrefix"))
                    .filter(|p| !p.trim().is_empty());
            }
        }

        let (agent, agent_max_concurrency) = self.agent(root.get("agent"));

        let mut state_dir = home_dir().join(".imsg-gateway").join("state");
        if let Some(state) = root.get("state").filter(|v| !v.is_null()) {
            if let Some(s) = self.object(state, "state", STATE_KEYS) {
                if let Some(dir) = self.non_empty_string(s, "state", "dir") {
                    state_dir = expand_path(dir.value.trim());
                }
            }
        }

        let top_enabled = val(top.enabled.clone()).unwrap_or(true);
        let mut accounts = Vec::new();
        for (id, layer) in layers {
            self.check_combinations(&layer);
            self.unusable_entries(&layer);
            let d = AccountConfig::default();
            let account = AccountConfig {
                id,
                name: val(layer.name),
                enabled: top_enabled && val(layer.enabled).unwrap_or(true),
                cli_path: val(layer.cli_path).unwrap_or(d.cli_path),
                db_path: val(layer.db_path),
                service: val(layer.service).unwrap_or(d.service),
                region: val(layer.region).unwrap_or(d.region),
                dm_policy: val(layer.dm_policy).unwrap_or(d.dm_policy),
                allow_from: val(layer.allow_from.clone()).unwrap_or_default(),
                group_policy: val(layer.group_policy).unwrap_or(d.group_policy),
                // Unset, it is allowFrom (reference §3.1); an explicit [] stays empty, and
                // under groupPolicy "allowlist" then admits no one.
                group_allow_from: val(layer.group_allow_from)
                    .unwrap_or_else(|| val(layer.allow_from.clone()).unwrap_or_default()),
                groups: val(layer.groups).unwrap_or_default(),
                include_attachments: val(layer.include_attachments)
                    .unwrap_or(d.include_attachments),
                media_max_mb: val(layer.media_max_mb).unwrap_or(d.media_max_mb),
                text_chunk_limit: val(layer.text_chunk_limit).unwrap_or(d.text_chunk_limit),
                chunk_mode: val(layer.chunk_mode).unwrap_or(d.chunk_mode),
                max_chunks_per_reply: val(layer.max_chunks_per_reply)
                    .unwrap_or(d.max_chunks_per_reply),
                history_limit: val(layer.history_limit).unwrap_or(d.history_limit),
                remote_host: val(layer.remote_host),
                mention_patterns: mention_patterns.clone(),
                response_prefix: response_prefix.clone(),
            };
            self.account_warnings(&account);
            accounts.push(account);
        }
        if !accounts.is_empty() && accounts.iter().all(|a| !a.enabled) {
            self.warnings.push(
                "every iMessage account is disabled: the gateway will not receive anything".into(),
            );
        }
        Some(Config {
            accounts,
            agent: agent?,
            agent_max_concurrency,
            state_dir,
            warnings: Vec::new(),
        })
    }

    fn check_combinations(&mut self, layer: &Layer) {
        if let Some(policy) = &layer.dm_policy {
            if policy.value == DmPolicy::Open {
                let has_star = layer
                    .allow_from
                    .as_ref()
                    .is_some_and(|a| a.value.iter().any(|e| e == "*"));
                if !has_star {
                    let allow_path = layer
                        .allow_from
                        .as_ref()
                        .map(|a| a.path.clone())
                        .unwrap_or_else(|| {
                            policy.path.trim_end_matches("dmPolicy").to_string() + "allowFrom"
                        });
                    let msg = format!(
                        "{}: \"open\" requires {allow_path} to include \"*\"",
                        policy.path
                    );
                    // Top-level problems inherited by several accounts are reported once.
                    if !self.errors.contains(&msg) {
                        self.err(msg);
                    }
                }
            }
        }
    }

    /// Allowlist entries that can never match (neither a handle nor a chat selector) are
    /// legal, but almost certainly a mistake: a name where a number was meant.
    fn unusable_entries(&mut self, layer: &Layer) {
        let region = layer
            .region
            .as_ref()
            .map(|r| r.value.clone())
            .unwrap_or_else(|| AccountConfig::default().region);
        for list in [&layer.allow_from, &layer.group_allow_from]
            .into_iter()
            .flatten()
        {
            for (i, entry) in list.value.iter().enumerate() {
                if let AllowEntry::Unusable(_) = AllowEntry::parse(entry, &region) {
                    let msg = format!(
                        "{}[{i}]: {} is neither a phone number, an email address, \"*\" nor a chat_id:/chat_guid:/chat_identifier: selector, so it never matches anyone",
                        list.path,
                        show(&Value::String(entry.clone()))
                    );
                    if !self.warnings.contains(&msg) {
                        self.warnings.push(msg);
                    }
                }
            }
        }
    }

    fn account_warnings(&mut self, a: &AccountConfig) {
        if a.group_policy == GroupPolicy::Disabled || !a.mention_patterns.is_empty() {
            return;
        }
        let which = if a.id == "default" {
            "imessage".to_string()
        } else {
            format!("imessage.accounts.{}", a.id)
        };
        let explicit: Vec<&String> = a
            .groups
            .iter()
            .filter(|(_, g)| g.require_mention == Some(true))
            .map(|(k, _)| k)
            .collect();
        let wildcard_off = a
            .groups
            .get("*")
            .is_some_and(|g| g.require_mention == Some(false));
        let msg = if !explicit.is_empty() {
            format!(
                "{which}.groups ({}) sets requireMention but routing.groupChat.mentionPatterns is empty: those group messages cannot mention the assistant and will not be answered",
                explicit.iter().map(|k| format!("\"{k}\"")).collect::<Vec<_>>().join(", ")
            )
        } else if !wildcard_off {
            format!(
                "{which}: groups require a mention by default but routing.groupChat.mentionPatterns is empty, so group messages will not be answered; add mention patterns or set {which}.groups.\"*\".requireMention to false"
            )
        } else {
            return;
        };
        if !self.warnings.contains(&msg) {
            self.warnings.push(msg);
        }
    }

    fn agent(&mut self, v: Option<&Value>) -> (Option<AgentConfig>, usize) {
        let empty = Map::new();
        let obj = match v.filter(|v| !v.is_null()) {
            None => &empty,
            Some(v) => match self.object(v, "agent", AGENT_KEYS) {
                Some(o) => o,
                None => return (None, DEFAULT_AGENT_MAX_CONCURRENCY),
            },
        };
        let kind = self
            .one_of(
                obj,
                "agent",
                "kind",
                &[("echo", "echo"), ("exec", "exec"), ("http", "http")],
            )
            .map(|k| k.value);
        let errors_before = self.errors.len();
        let kind = match kind {
            Some(k) => k,
            None if obj.get("kind").is_some_and(|k| !k.is_null()) => "invalid",
            None => "echo",
        };
        let timeout_ms =
            val(self.positive_int(obj, "agent", "timeoutMs")).unwrap_or(DEFAULT_AGENT_TIMEOUT_MS);
        let max = val(self.positive_int(obj, "agent", "maxConcurrency"))
            .map(|n| usize::try_from(n).expect("MAX_INT fits usize"))
            .unwrap_or(DEFAULT_AGENT_MAX_CONCURRENCY);
        let max_reply_bytes = val(self.positive_int(obj, "agent", "maxReplyBytes"))
            .map(|n| n as usize)
            .unwrap_or(DEFAULT_AGENT_MAX_REPLY_BYTES);
        let command = self.string_list(obj, "agent", "command", false);
        let url = self.non_empty_string(obj, "agent", "url");
        if command.is_some() && kind != "exec" {
            self.warnings.push(format!(
                "agent.command is ignored: agent.kind is \"{kind}\", not \"exec\""
            ));
        }
        if url.is_some() && kind != "http" {
            self.warnings.push(format!(
                "agent.url is ignored: agent.kind is \"{kind}\", not \"http\""
            ));
        }
        if kind == "echo" && obj.contains_key("timeoutMs") {
            self.warnings
                .push("agent.timeoutMs is ignored: the echo agent answers at once".into());
        }
        if kind == "echo" && obj.contains_key("maxReplyBytes") {
            self.warnings.push(
                "agent.maxReplyBytes is ignored: the echo agent's reply is the message itself"
                    .into(),
            );
        }
        let agent = match kind {
            "echo" => Some(AgentConfig::Echo),
            "exec" => match command {
                Some(c) if !c.value.is_empty() => Some(AgentConfig::Exec {
                    command: c.value,
                    timeout_ms,
                    max_reply_bytes,
                }),
                Some(c) => {
                    self.err(format!("{}: must name a program to run, got []", c.path));
                    None
                }
                None => {
                    if !obj.contains_key("command") {
                        self.err(
                            "agent.command: required when agent.kind is \"exec\" (for example [\"/usr/local/bin/my-agent\", \"--json\"])"
                                .into(),
                        );
                    }
                    None
                }
            },
            "http" => match url {
                Some(u) => {
                    let t = u.value.trim();
                    if t.starts_with("http://") || t.starts_with("https://") {
                        Some(AgentConfig::Http {
                            url: t.to_string(),
                            timeout_ms,
                            max_reply_bytes,
                        })
                    } else {
                        self.err(format!(
                            "{}: expected an http:// or https:// URL, got \"{}\"",
                            u.path, u.value
                        ));
                        None
                    }
                }
                None => {
                    if !obj.contains_key("url") {
                        self.err("agent.url: required when agent.kind is \"http\"".into());
                    }
                    None
                }
            },
            _ => None,
        };
        if self.errors.len() > errors_before {
            return (None, max);
        }
        (agent, max)
    }
}
