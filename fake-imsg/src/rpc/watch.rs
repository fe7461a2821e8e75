//! `watch.subscribe` / `watch.unsubscribe`: the subscription registry (64 cap, ids never
//! reused) and one watcher thread per subscription that polls the world's data version every
//! 2 ms, applies the debounce, the since_rowid cursor, filters (legacy reads only the watched
//! chat's rows; v1 reads every row and filters them), the unjoined-row rule (20 retries, then
//! drop fail-closed) and `buffer_limit` overflow (imsg-rpc-v1.md §4.5-4.7, imsg-rpc.md
//! §7.3-7.4).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::payload::{message_json, Level, MessageOpts};
use crate::world::{ChatRow, MessageRow, World};

use super::errors::{notification, RpcError};
use super::framing::Protocol;
use super::params::{Lenient, Strict};
use super::server::{Reply, Shared};

/// At most this many pending+active subscriptions (v1).
pub const MAX_SUBSCRIPTIONS: usize = 64;
/// How often a watcher probes the world for changes.
const PROBE: Duration = Duration::from_millis(2);
/// Fallback poll even without a change signal.
const FALLBACK: Duration = Duration::from_secs(5);
/// Polls an unjoined row is retried before it is dropped.
const UNJOINED_RETRIES: u32 = 20;
/// Least interval between retries of an unjoined row (imsg: ~10 s over 20 polls).
const UNJOINED_RETRY_MIN: Duration = Duration::from_millis(500);

/// One subscription's control block.
pub struct Sub {
    pub id: i64,
    cancelled: AtomicBool,
    /// Held while a notification is written, so cancellation waits for it.
    emit: Mutex<()>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Sub {
    fn cancel(&self) {
        {
            let _g = self.emit.lock().unwrap_or_else(|e| e.into_inner());
            self.cancelled.store(true, Ordering::SeqCst);
        }
        let handle = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Writes lines unless cancelled; false once cancelled.
    fn emit(&self, sh: &Shared, lines: &[Value]) -> bool {
        let _g = self.emit.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_cancelled() {
            return false;
        }
        sh.out.notify_all(lines);
        true
    }
}

#[derive(Default)]
struct RegInner {
    next_id: i64,
    subs: HashMap<i64, Arc<Sub>>,
}

/// Every live subscription of the process.
#[derive(Default)]
pub struct Registry {
    inner: Mutex<RegInner>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, RegInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reserve(&self, cap: usize) -> Option<Arc<Sub>> {
        let mut g = self.lock();
        if g.subs.len() >= cap {
            return None;
        }
        g.next_id += 1;
        let sub = Arc::new(Sub {
            id: g.next_id,
            cancelled: AtomicBool::new(false),
            emit: Mutex::new(()),
            thread: Mutex::new(None),
        });
        g.subs.insert(sub.id, sub.clone());
        Some(sub)
    }

    fn remove(&self, id: i64) -> Option<Arc<Sub>> {
        self.lock().subs.remove(&id)
    }

    /// Cancels and awaits one subscription (unknown ids are fine).
    pub fn cancel(&self, id: i64) {
        if let Some(s) = self.remove(id) {
            s.cancel();
        }
    }

    /// Cancels and awaits every subscription, silently.
    pub fn cancel_all(&self) {
        let subs: Vec<Arc<Sub>> = self.lock().subs.drain().map(|(_, s)| s).collect();
        for s in subs {
            s.cancel();
        }
    }
}

/// What a watcher emits.
#[derive(Debug, Clone)]
struct Spec {
    chat_id: Option<i64>,
    participants: Vec<String>,
    start: Option<i64>,
    end: Option<i64>,
    attachments: bool,
    include_reactions: bool,
    debounce: Duration,
    buffer_limit: Option<usize>,
    cursor: i64,
    level: Level,
}

/// `watch.subscribe` (v1, strict).
pub fn subscribe_v1(sh: &Arc<Shared>, params: &Map<String, Value>) -> Reply {
    match parse_v1(params, sh.faults.default_debounce_ms.unwrap_or(500)) {
        Err(e) => Err(e).into(),
        Ok((mut spec, since)) => start(sh, &mut spec, since, MAX_SUBSCRIPTIONS),
    }
}

fn parse_v1(
    params: &Map<String, Value>,
    default_debounce: u64,
) -> Result<(Spec, Option<i64>), RpcError> {
    const DEB: &[&str] = &["debounce_ms", "debounceMs"];
    const BUF: &[&str] = &["buffer_limit", "bufferLimit"];
    let p = Strict::new(
        "watch.subscribe",
        params,
        &[
            &["chat_id"],
            &["since_rowid"],
            &["participants"],
            &["start"],
            &["end"],
            &["attachments"],
            &["convert_attachments"],
            &["include_reactions"],
            DEB,
            BUF,
        ],
    )?;
    let chat_id = p.positive(&["chat_id"])?;
    let since = p.int(&["since_rowid"])?;
    let participants = p.strings(&["participants"])?.unwrap_or_default();
    let start = p.date(&["start"])?;
    let end = p.date(&["end"])?;
    let attachments = p.bool(&["attachments"])?.unwrap_or(false);
    p.bool(&["convert_attachments"])?;
    let include_reactions = p.bool(&["include_reactions"])?.unwrap_or(false);
    let debounce = match p.int(DEB)? {
        Some(n) if n < 0 => {
            let k = p.get(DEB).map(|(k, _)| k).unwrap_or("debounce_ms");
            return Err(RpcError::invalid_params(format!(
                "{k} must be a non-negative integer"
            )));
        }
        Some(n) => n as u64,
        None => default_debounce,
    };
    let buffer_limit = match p.int(BUF)? {
        Some(n) if !(1..=4096).contains(&n) => {
            let k = p.get(BUF).map(|(k, _)| k).unwrap_or("buffer_limit");
            return Err(RpcError::invalid_params(format!(
                "{k} must be an integer between 1 and 4096"
            )));
        }
        Some(n) => n as usize,
        None => 256,
    };
    Ok((
        Spec {
            chat_id,
            participants,
            start,
            end,
            attachments,
            include_reactions,
            debounce: Duration::from_millis(debounce),
            buffer_limit: Some(buffer_limit),
            cursor: 0,
            level: Level::V1,
        },
        since,
    ))
}

/// `watch.subscribe` (legacy, lenient; validation order debounce, start, end).
pub fn subscribe_legacy(sh: &Arc<Shared>, params: &Map<String, Value>) -> Reply {
    let p = Lenient { map: params };
    let deb_key = ["debounce_ms", "debounceMs"].into_iter().find(|k| p.has(k));
    let debounce = match deb_key {
        None => sh.faults.default_debounce_ms.unwrap_or(500),
        Some(k) => match p.int(&[k]) {
            Some(n) if n >= 0 => n as u64,
            _ => {
                return Err(RpcError::invalid_params(
                    "debounce_ms must be a non-negative integer",
                ))
                .into()
            }
        },
    };
    let mut dates = [None, None];
    for (i, k) in ["start", "end"].iter().enumerate() {
        if let Some(s) = p.string(&[k]) {
            match crate::payload::parse_iso8601(&s) {
                Some(d) => dates[i] = Some(d),
                None => {
                    return Err(RpcError::internal(format!("Invalid ISO8601 date: {s}"))).into()
                }
            }
        }
    }
    let mut spec = Spec {
        chat_id: p.int(&["chat_id"]),
        participants: p.strings(&["participants"]),
        start: dates[0],
        end: dates[1],
        attachments: p.bool(&["attachments"]).unwrap_or(false),
        include_reactions: p.bool(&["include_reactions"]).unwrap_or(false),
        debounce: Duration::from_millis(debounce),
        buffer_limit: None,
        cursor: 0,
        level: Level::Legacy,
    };
    let since = p.int(&["since_rowid"]);
    start(sh, &mut spec, since, usize::MAX)
}

fn start(sh: &Arc<Shared>, spec: &mut Spec, since: Option<i64>, cap: usize) -> Reply {
    // v1 §1.8: a subscribe still queued at EOF is refused. Legacy imsg reads a line only after
    // answering the previous one, so it answers such a subscribe normally (the subscription is
    // then cancelled silently with the rest), and it has no -32000 at all.
    // imsg needs the database before it reserves a subscription, so a down database is
    // answered -32002 even when the subscribe was still queued at EOF.
    let world = match sh.db.open_own() {
        Ok(w) => w,
        Err(d) => {
            return match sh.protocol {
                Protocol::V1 => Err(sh.db.error(d)),
                Protocol::Legacy => Err(RpcError::internal(
                    "unable to open database file (code: 14)",
                )),
            }
            .into()
        }
    };
    if sh.protocol == Protocol::V1 && sh.shutting_down.load(Ordering::SeqCst) {
        return Err(RpcError::busy("server is shutting down")).into();
    }
    spec.cursor = match since {
        None | Some(0) => match world.max_rowid() {
            Ok(m) => m,
            Err(e) => return Err(RpcError::internal(e.to_string())).into(),
        },
        Some(n) if n < 0 => 0,
        Some(n) => n,
    };
    let Some(sub) = sh.watch.reserve(cap) else {
        return Err(RpcError::busy("subscription limit exceeded")).into();
    };
    let mut result = json!({"subscription": sub.id});
    if let Some(b) = spec.buffer_limit {
        result["buffer_limit"] = json!(b);
    }
    let sh2 = sh.clone();
    let spec = spec.clone();
    let after = Box::new(move || {
        let sub2 = sub.clone();
        let handle = std::thread::spawn(move || run(sh2, sub2, spec, world));
        *sub.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
    });
    Reply {
        result: Ok(result),
        after: Some(after),
        encoded: None,
    }
}

/// `watch.unsubscribe` (both levels).
pub fn unsubscribe(sh: &Shared, params: &Map<String, Value>) -> Result<Value, RpcError> {
    let id = match sh.protocol {
        Protocol::V1 => {
            let p = Strict::new("watch.unsubscribe", params, &[&["subscription"]])?;
            match p.int(&["subscription"])? {
                None => return Err(RpcError::invalid_params("subscription is required")),
                Some(n) if n <= 0 => {
                    return Err(RpcError::invalid_params(
                        "subscription must be a positive integer",
                    ))
                }
                Some(n) => n,
            }
        }
        Protocol::Legacy => Lenient { map: params }
            .int(&["subscription"])
            .ok_or_else(|| RpcError::invalid_params("subscription is required"))?,
    };
    sh.watch.cancel(id);
    Ok(json!({"ok": true}))
}

enum PollEnd {
    /// Caught up (or waiting behind an unjoined row).
    Idle,
    /// The stream ended (overflow, error, cancellation).
    Stop,
}

struct Watcher {
    sh: Arc<Shared>,
    sub: Arc<Sub>,
    spec: Spec,
    world: World,
    /// (rowid, polls seen unjoined)
    unjoined: Option<(i64, u32)>,
    next_retry: Option<Instant>,
    chats: HashMap<i64, ChatRow>,
}

fn run(sh: Arc<Shared>, sub: Arc<Sub>, spec: Spec, world: World) {
    let mut w = Watcher {
        sh,
        sub,
        spec,
        world,
        unjoined: None,
        next_retry: None,
        chats: HashMap::new(),
    };
    // The watcher's connection never writes, so its data_version moves on every commit by
    // anyone else (this process's send included).
    let mut last_dv = w.world.data_version().unwrap_or(0);
    let mut changed_at: Option<Instant> = None;
    let mut due = true; // the initial poll runs at once
    let mut last_poll = Instant::now();
    loop {
        if w.sub.is_cancelled() {
            return;
        }
        let now = Instant::now();
        let dv = w.world.data_version().unwrap_or(last_dv);
        if dv != last_dv {
            last_dv = dv;
            changed_at.get_or_insert(now);
        }
        if let Some(t) = changed_at {
            if now.duration_since(t) >= w.spec.debounce {
                changed_at = None;
                due = true;
            }
        }
        if w.next_retry.is_some_and(|t| now >= t) {
            w.next_retry = None;
            due = true;
        }
        if now.duration_since(last_poll) >= FALLBACK {
            due = true;
        }
        if due {
            due = false;
            last_poll = now;
            if let PollEnd::Stop = w.poll() {
                return;
            }
        }
        std::thread::sleep(PROBE);
    }
}

impl Watcher {
    /// The row's chat, or why it has none yet: `Err(Some(t))` while the `unjoined_ms`
    /// fault holds it (until `t`), `Err(None)` when it has no chat join at all.
    fn chat_of(&mut self, row: &MessageRow) -> Result<i64, Option<Instant>> {
        let chat = row.chat_id.ok_or(None)?;
        match self.joined_at(row) {
            Some(t) if Instant::now() < t => Err(Some(t)),
            _ => Ok(chat),
        }
    }

    /// When the `unjoined_ms` fault lets a row count as joined to its chat (`None`: not
    /// held by the fault).
    fn joined_at(&self, row: &MessageRow) -> Option<Instant> {
        let ms = self.sh.faults.unjoined_ms?;
        if row.id <= self.sh.startup_max_rowid || row.is_from_me {
            return None;
        }
        let mut seen = self.sh.first_seen.lock().unwrap_or_else(|e| e.into_inner());
        let t = *seen.entry(row.id).or_insert_with(Instant::now);
        Some(t + Duration::from_millis(ms))
    }

    fn keep(&self, row: &MessageRow, chat: i64) -> bool {
        if self.spec.chat_id.is_some_and(|c| c != chat) {
            return false;
        }
        if !self.spec.participants.is_empty()
            && !self
                .spec
                .participants
                .iter()
                .any(|p| p.eq_ignore_ascii_case(&row.sender))
        {
            return false;
        }
        if self.spec.start.is_some_and(|s| row.date < s) {
            return false;
        }
        if self.spec.end.is_some_and(|e| row.date >= e) {
            return false;
        }
        true
    }

    fn fail(&self, text: String) -> PollEnd {
        let n = notification(
            "error",
            json!({"subscription": self.sub.id, "error": {"message": text}}),
        );
        self.sub.emit(&self.sh, &[n]);
        if self.sh.protocol == Protocol::V1 {
            self.sh.watch.remove(self.sub.id);
        }
        PollEnd::Stop
    }

    fn poll(&mut self) -> PollEnd {
        let page = if self.spec.level == Level::V1 {
            500
        } else {
            100
        };
        let mut accepted: Vec<Value> = Vec::new();
        let mut last_accepted: Option<i64> = None;
        let start_cursor = self.spec.cursor;
        // imsg 0.9 puts the chat filter in the batch query (imsg-rpc.md §7.3), so other chats'
        // rows neither fill its batch nor get read at all; v1 scans every row and filters
        // before buffer admission (imsg-rpc-v1.md §4.5).
        let query_chat = match self.spec.level {
            Level::Legacy => self.spec.chat_id,
            Level::V1 => None,
        };
        loop {
            let rows = match self.world.messages_after(
                self.spec.cursor,
                query_chat,
                page,
                self.spec.include_reactions,
            ) {
                Ok(r) => r,
                Err(e) => {
                    self.flush(&accepted);
                    return self.fail(e.to_string());
                }
            };
            let full = rows.len() == page;
            for row in rows {
                // imsg 0.9 emits a row with no chat join at once, as chat_id 0 (imsg-rpc.md
                // §6.4); the retry-then-drop rule is 0.10.0+.
                let chat = match self.chat_of(&row) {
                    Err(held) if query_chat.is_some() => {
                        // imsg 0.9's chat query joins through chat_message_join, so a row
                        // not joined yet is not read at all: the cursor stays before it
                        // (unless a later row of the chat moves it on), and the join's own
                        // write is the change that has it read again.
                        if let Some(t) = held {
                            self.next_retry = Some(self.next_retry.map_or(t, |r| r.min(t)));
                        }
                        continue;
                    }
                    Err(_) if self.spec.level == Level::Legacy => Some(0),
                    c => c.ok(),
                };
                let Some(chat) = chat else {
                    let tries = match self.unjoined {
                        Some((id, n)) if id == row.id => n + 1,
                        _ => 1,
                    };
                    if tries > UNJOINED_RETRIES {
                        tracing::warn!("dropping row {} with no chat join", row.id);
                        self.unjoined = None;
                        self.spec.cursor = row.id;
                        continue;
                    }
                    self.unjoined = Some((row.id, tries));
                    self.next_retry =
                        Some(Instant::now() + self.spec.debounce.max(UNJOINED_RETRY_MIN));
                    return self.finish(accepted);
                };
                if self.unjoined.is_some_and(|(id, _)| id == row.id) {
                    self.unjoined = None;
                }
                if !self.keep(&row, chat) {
                    self.spec.cursor = row.id;
                    continue;
                }
                if let Some(limit) = self.spec.buffer_limit {
                    if accepted.len() >= limit {
                        let resume = last_accepted.unwrap_or(start_cursor);
                        if !self.flush(&accepted) {
                            return PollEnd::Stop;
                        }
                        let n = notification(
                            "watch.overflow",
                            json!({"subscription": self.sub.id, "resume_after_rowid": resume,
                                   "reason": "buffer_limit_exceeded", "terminal": true}),
                        );
                        self.sub.emit(&self.sh, &[n]);
                        self.sh.watch.remove(self.sub.id);
                        return PollEnd::Stop;
                    }
                }
                let payload = self.payload(&row, chat);
                accepted.push(payload);
                last_accepted = Some(row.id);
                self.spec.cursor = row.id;
            }
            // imsg 0.9 fetches one batch of 100 per trigger; the rest of a backlog waits for
            // the next file event or the 5 s fallback poll (imsg-rpc.md §7.3).
            if !full || self.spec.level == Level::Legacy {
                return self.finish(accepted);
            }
        }
    }

    fn finish(&self, accepted: Vec<Value>) -> PollEnd {
        if self.flush(&accepted) {
            PollEnd::Idle
        } else {
            PollEnd::Stop
        }
    }

    fn payload(&mut self, row: &MessageRow, chat: i64) -> Value {
        // A message carries no unread count, and counting walks every unread row of the chat:
        // on a backlog that was most of a watcher's time per message.
        if self.spec.level == Level::V1 {
            if let Ok(Some(c)) = self.world.chat_uncounted(chat) {
                self.chats.insert(chat, c);
            }
        } else if chat != 0 && !self.chats.contains_key(&chat) {
            // Legacy: the process-wide chat cache decides the chat fields.
            if let Ok(Some(c)) = self.world.chat_uncounted(chat) {
                self.chats.insert(chat, self.sh.describe_chat(c));
            }
        }
        let mut row = row.clone();
        row.chat_id = (chat != 0).then_some(chat);
        let opts = MessageOpts {
            attachments: self.spec.attachments,
            include_reactions: self.spec.include_reactions,
            reaction_fields: self.spec.include_reactions,
        };
        message_json(
            &self.world,
            &row,
            self.chats.get(&chat),
            self.spec.level,
            &opts,
        )
    }

    /// Emits accepted messages; false once the subscription is cancelled.
    fn flush(&self, accepted: &[Value]) -> bool {
        for m in accepted {
            let n = notification(
                "message",
                json!({"subscription": self.sub.id, "message": m}),
            );
            let lines = if self.sh.faults.duplicate_notification {
                vec![n.clone(), n]
            } else {
                vec![n]
            };
            if !self.sub.emit(&self.sh, &lines) {
                return false;
            }
        }
        true
    }
}
