//! An in-memory imsg for in-process runtime tests: a small model of `imsg rpc` (protocol v1
//! or legacy) over a world of rows, served over `tokio::io::duplex` through the gateway's
//! [`Connector`] seam, so the real supervisor and gateway run against it under a paused clock.
//! It is deliberately independent of fake-imsg's server (threads and real time), and written
//! from the protocol spec: initialize/status, chats.list, messages.history, messages.after,
//! watch.subscribe/unsubscribe with `message`/`error` notifications, and send writing a
//! from-me row. Faults are switched on by the test: kill the connection (like SIGKILL), die
//! after carrying out a send but before answering, garbage lines, dropped and delayed
//! responses, duplicate notifications, and rows imsg cannot read. Such a row fails whatever
//! read touches it as fake-imsg's does: a `messages.history` page, a `messages.after` page
//! (which scans one row more than it returns), and a whole watch batch (100 rows after the
//! cursor on legacy, 500 on v1), not just the row.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use imsg_gateway::imsg::connector::BoxFuture;
use imsg_gateway::imsg::{Client, Connector, Link, Peer, SpawnError};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: i64,
    pub chat_id: i64,
    pub guid: String,
    pub sender: String,
    pub text: String,
    pub is_from_me: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    V1,
    Legacy,
}

/// Switchable misbehaviour; counters count requests across connections.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// Die (close both pipes) when a request arrives with this probability in 1/1000.
    pub kill_per_mille: u32,
    /// Die on `initialize` (right after start), in 1/1000.
    pub kill_at_start_per_mille: u32,
    /// Carry out a `send`, then die without answering, with this probability in 1/1000.
    pub die_after_send_per_mille: u32,
    /// Write a garbage line before a response, in 1/1000.
    pub garbage_per_mille: u32,
    /// Never answer a request, in 1/1000.
    pub drop_per_mille: u32,
    /// Delay a response by up to this many ms.
    pub max_delay_ms: u64,
    /// Write every `message` notification twice.
    pub duplicate: bool,
    /// Refuse every request until this is cleared (imsg "down": the connection dies at once).
    pub down: bool,
    /// Die on every `send` before carrying it out (imsg up, but sends never get through).
    pub die_on_send: bool,
    /// Stop reading requests right after answering `initialize` (writes to it fail with a
    /// broken pipe: they never reach imsg), and die a second later.
    pub deaf_after_initialize: bool,
    /// Right after carrying out the Nth send (counted across connections), answer nothing
    /// more on that connection: a frozen imsg, for catching the gateway mid-reply.
    pub freeze_after_sends: Option<u64>,
    /// How the next `messages.history` requests are misanswered, one entry each, in order
    /// (across connections); the rest are answered as usual.
    pub history: Vec<HistoryFault>,
}

/// One misanswered `messages.history`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryFault {
    /// Answered as usual (to misanswer a later one).
    Answered,
    /// Never answered, on a connection that otherwise goes on answering.
    Unanswered,
    /// `-32000` Server busy.
    Busy,
    /// `-32002` Database unavailable.
    Unavailable,
}

struct World {
    rows: Vec<Row>,
    unreadable: HashSet<i64>,
    chats: BTreeMap<i64, bool>,
    next_guid: u64,
}

struct Inner {
    level: Level,
    world: Mutex<World>,
    changed: Notify,
    faults: Mutex<Faults>,
    rng: Mutex<u64>,
    current: Mutex<Option<tokio::task::AbortHandle>>,
    requests: Mutex<Vec<Value>>,
    connections: Mutex<u64>,
    sends: Mutex<u64>,
    deaths: Mutex<u64>,
}

/// The imsg; clones share one world.
#[derive(Clone)]
pub struct MemImsg {
    inner: Arc<Inner>,
}

impl MemImsg {
    pub fn new(level: Level, seed: u64) -> MemImsg {
        MemImsg {
            inner: Arc::new(Inner {
                level,
                world: Mutex::new(World {
                    rows: Vec::new(),
                    unreadable: HashSet::new(),
                    chats: BTreeMap::new(),
                    next_guid: 1,
                }),
                changed: Notify::new(),
                faults: Mutex::new(Faults::default()),
                rng: Mutex::new(seed.max(1)),
                current: Mutex::new(None),
                requests: Mutex::new(Vec::new()),
                connections: Mutex::new(0),
                sends: Mutex::new(0),
                deaths: Mutex::new(0),
            }),
        }
    }

    pub fn connector(&self) -> Arc<dyn Connector> {
        Arc::new(self.clone())
    }

    pub fn set_faults(&self, f: Faults) {
        *self.inner.faults.lock().unwrap() = f;
    }

    pub fn faults(&self) -> Faults {
        self.inner.faults.lock().unwrap().clone()
    }

    /// A message from `sender` into `chat_id` (a group when `group`); returns its rowid.
    pub fn inject(&self, chat_id: i64, group: bool, sender: &str, text: &str) -> i64 {
        self.add_row(chat_id, group, sender, text, false)
    }

    /// A row imsg cannot read (like fake-imsg's invalid UTF-8 text).
    pub fn inject_unreadable(&self, chat_id: i64, sender: &str) -> i64 {
        let id = self.add_row(chat_id, false, sender, "\u{fffd}", false);
        self.inner.world.lock().unwrap().unreadable.insert(id);
        id
    }

    /// A row sent from one of my devices (not through the gateway).
    pub fn inject_from_me(&self, chat_id: i64, text: &str) -> i64 {
        self.add_row(chat_id, false, "", text, true)
    }

    fn add_row(&self, chat_id: i64, group: bool, sender: &str, text: &str, me: bool) -> i64 {
        let id = {
            let mut w = self.inner.world.lock().unwrap();
            let id = w.rows.last().map_or(1, |r| r.id + 1);
            let guid = format!("GUID-{}", w.next_guid);
            w.next_guid += 1;
            w.chats.entry(chat_id).or_insert(group);
            w.rows.push(Row {
                id,
                chat_id,
                guid,
                sender: if me {
                    String::new()
                } else {
                    sender.to_string()
                },
                text: text.to_string(),
                is_from_me: me,
            });
            id
        };
        self.inner.changed.notify_waiters();
        id
    }

    /// Every from-me row, in order.
    pub fn sent(&self) -> Vec<Row> {
        let w = self.inner.world.lock().unwrap();
        w.rows.iter().filter(|r| r.is_from_me).cloned().collect()
    }

    /// How many from-me rows there are (cheap, for polling).
    pub fn sent_count(&self) -> usize {
        let w = self.inner.world.lock().unwrap();
        w.rows.iter().filter(|r| r.is_from_me).count()
    }

    pub fn rows(&self) -> Vec<Row> {
        self.inner.world.lock().unwrap().rows.clone()
    }

    /// Kills the current connection, as SIGKILL would.
    /// Kills the current connection; whether it was alive (a fault may have ended it).
    pub fn kill(&self) -> bool {
        match self.inner.current.lock().unwrap().take() {
            Some(h) => {
                let alive = !h.is_finished();
                h.abort();
                alive
            }
            None => false,
        }
    }

    pub fn requests(&self) -> Vec<Value> {
        self.inner.requests.lock().unwrap().clone()
    }

    pub fn connections(&self) -> u64 {
        *self.inner.connections.lock().unwrap()
    }

    /// Connections that died of a fault (not counting [`MemImsg::kill`]).
    pub fn deaths(&self) -> u64 {
        *self.inner.deaths.lock().unwrap()
    }

    fn die(&self) {
        *self.inner.deaths.lock().unwrap() += 1;
    }

    fn roll(&self, per_mille: u32) -> bool {
        per_mille > 0 && self.rand() % 1000 < per_mille as u64
    }

    fn rand(&self) -> u64 {
        let mut s = self.inner.rng.lock().unwrap();
        // xorshift64: deterministic for a seed, no dependency.
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s
    }

    /// Row `id` was written `id` seconds after this instant, so dates order like rowids.
    const EPOCH_MS: i64 = 1_796_126_400_000; // 2026-12-01T12:00:00Z

    fn created_ms(id: i64) -> i64 {
        Self::EPOCH_MS + id * 1000
    }

    fn created_at(id: i64) -> String {
        chrono::DateTime::from_timestamp_millis(Self::created_ms(id))
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string()
    }

    fn message_json(&self, r: &Row) -> Value {
        let group = self
            .inner
            .world
            .lock()
            .unwrap()
            .chats
            .get(&r.chat_id)
            .copied()
            .unwrap_or(false);
        let identifier = if group {
            format!("chat{}", r.chat_id)
        } else {
            format!("+1555010{:04}", r.chat_id)
        };
        let guid = if group {
            format!("iMessage;+;chat{}", r.chat_id)
        } else {
            format!("iMessage;-;{identifier}")
        };
        json!({
            "id": r.id, "chat_id": r.chat_id, "guid": r.guid, "sender": r.sender,
            "is_from_me": r.is_from_me, "text": r.text,
            "created_at": Self::created_at(r.id), "attachments": [], "reactions": [],
            "chat_identifier": identifier, "chat_guid": guid, "is_group": group,
            "participants": if group { json!([r.sender]) } else { json!([identifier]) },
        })
    }

    fn after(&self, since: i64, limit: usize) -> Result<(Vec<Value>, i64, bool), ()> {
        let (rows, bad) = {
            let w = self.inner.world.lock().unwrap();
            let start = w.rows.partition_point(|r| r.id <= since);
            let rows: Vec<Row> = w.rows[start..].iter().take(limit + 1).cloned().collect();
            (rows, w.unreadable.clone())
        };
        // imsg scans `limit + 1` rows to tell `has_more`: a bad one among them fails the page.
        if rows.iter().any(|r| bad.contains(&r.id)) {
            return Err(());
        }
        let page: Vec<Row> = rows.iter().take(limit).cloned().collect();
        let next = page.last().map_or(since, |r| r.id);
        Ok((
            page.iter().map(|r| self.message_json(r)).collect(),
            next,
            rows.len() > limit,
        ))
    }

    /// A `messages.history` answer: the chat's rows newest first, within `start`/`end`.
    fn history(&self, p: &Value) -> Result<Value, Value> {
        let chat = p["chat_id"].as_i64().unwrap_or(0);
        let limit = p["limit"].as_u64().unwrap_or(50).max(1) as usize;
        let date = |k: &str| {
            p[k].as_str().map(|s| {
                chrono::DateTime::parse_from_rfc3339(s)
                    .map(|d| d.timestamp_millis())
                    .map_err(|_| s.to_string())
            })
        };
        match (date("start").transpose(), date("end").transpose()) {
            (Ok(start), Ok(end)) => {
                let (rows, bad): (Vec<Row>, bool) = {
                    let w = self.inner.world.lock().unwrap();
                    let rows: Vec<Row> = w
                        .rows
                        .iter()
                        .rev()
                        .filter(|r| r.chat_id == chat)
                        .filter(|r| start.is_none_or(|s| Self::created_ms(r.id) >= s))
                        .filter(|r| end.is_none_or(|e| Self::created_ms(r.id) < e))
                        .take(limit)
                        .cloned()
                        .collect();
                    let bad = rows.iter().any(|r| w.unreadable.contains(&r.id));
                    (rows, bad)
                };
                if bad {
                    Err(unreadable_error())
                } else {
                    Ok(
                        json!({"messages": rows.iter().map(|r| self.message_json(r)).collect::<Vec<_>>()}),
                    )
                }
            }
            (Err(s), _) | (_, Err(s)) => Err(json!({"code": -32603,
                "message": "Internal error", "data": format!("Invalid ISO8601 date: {s}")})),
        }
    }

    fn max_rowid(&self) -> i64 {
        self.inner
            .world
            .lock()
            .unwrap()
            .rows
            .last()
            .map_or(0, |r| r.id)
    }

    /// One connection: read requests, answer them, run the watch.
    async fn serve(self, r: tokio::io::DuplexStream, w: tokio::io::DuplexStream) {
        let out = Arc::new(tokio::sync::Mutex::new(w));
        let mut lines = BufReader::new(r).lines();
        let mut next_sub = 0i64;
        /// The watchers of this connection by subscription id, stopped with it.
        struct Guard(Vec<(i64, JoinHandle<()>)>);
        impl Drop for Guard {
            fn drop(&mut self) {
                for (_, h) in &self.0 {
                    h.abort();
                }
            }
        }
        let mut guard = Guard(Vec::new());
        let mut deaf = false;
        while let Ok(Some(line)) = lines.next_line().await {
            let Ok(req) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            self.inner.requests.lock().unwrap().push(req.clone());
            let faults = self.faults();
            if faults.down || self.roll(faults.kill_per_mille) {
                return self.die();
            }
            if req["method"] == "initialize" && self.roll(faults.kill_at_start_per_mille) {
                return self.die();
            }
            let id = req["id"].clone();
            let method = req["method"].as_str().unwrap_or("").to_string();
            let p = req["params"].clone();
            let v1 = self.inner.level == Level::V1;
            let result: Result<Value, Value> = match method.as_str() {
                "initialize" | "status" if v1 => Ok(json!({
                    "version": "0.14.0", "protocol_version": 1,
                    "database": {"path": "/mem/chat.db", "ready": true},
                    "methods": ["initialize", "status", "chats.list", "messages.history",
                                "messages.after", "watch.subscribe", "watch.unsubscribe", "send"]})),
                "chats.list" => {
                    let limit = p["limit"].as_u64().unwrap_or(20) as usize;
                    let w = self.inner.world.lock().unwrap();
                    let mut last: BTreeMap<i64, i64> = BTreeMap::new();
                    for r in &w.rows {
                        last.insert(r.chat_id, r.id);
                    }
                    let mut chats: Vec<(i64, i64)> = last.into_iter().collect();
                    chats.sort_by_key(|(_, id)| -id);
                    Ok(
                        json!({"chats": chats.iter().take(limit).map(|(c, last)| json!({
                        "id": c, "name": "", "identifier": "", "service": "iMessage",
                        "last_message_at": Self::created_at(*last),
                        "is_group": w.chats.get(c).copied().unwrap_or(false), "participants": []}))
                        .collect::<Vec<_>>()}),
                    )
                }
                "messages.history" if !faults.history.is_empty() => {
                    let fault = self.inner.faults.lock().unwrap().history.remove(0);
                    match fault {
                        HistoryFault::Answered => self.history(&p),
                        HistoryFault::Unanswered => continue,
                        HistoryFault::Busy => Err(json!({"code": -32000, "message": "Server busy",
                            "data": "outstanding request limit exceeded"})),
                        HistoryFault::Unavailable => Err(json!({"code": -32002,
                            "message": "Database unavailable",
                            "data": {"path": "/mem/chat.db", "detail": "The configured Messages database could not be opened.", "retryable": true}})),
                    }
                }
                "messages.history" => self.history(&p),
                "messages.after" if v1 => {
                    let since = p["since_rowid"].as_i64().unwrap_or(0).max(0);
                    let limit = p["limit"].as_u64().unwrap_or(100) as usize;
                    match self.after(since, limit) {
                        Ok((m, next, more)) => {
                            Ok(json!({"messages": m, "next_rowid": next, "has_more": more}))
                        }
                        Err(()) => Err(unreadable_error()),
                    }
                }
                "watch.subscribe" => {
                    next_sub += 1;
                    let sub = next_sub;
                    let since = match p.get("since_rowid").and_then(Value::as_i64) {
                        None | Some(0) => self.max_rowid(),
                        Some(n) if n < 0 => 0,
                        Some(n) => n,
                    };
                    let me = self.clone();
                    let out2 = out.clone();
                    // The response line goes out before the first notification.
                    let gate = Arc::new(Notify::new());
                    let gate2 = gate.clone();
                    let h = tokio::spawn(async move {
                        gate2.notified().await;
                        me.watch(sub, since, out2).await;
                    });
                    guard.0.push((sub, h));
                    let line = json!({"jsonrpc": "2.0", "id": id, "result": {"subscription": sub}});
                    write(&out, &line.to_string()).await;
                    gate.notify_one();
                    continue;
                }
                "watch.unsubscribe" => {
                    let sub = p["subscription"].as_i64();
                    guard.0.retain(|(s, h)| {
                        let keep = Some(*s) != sub;
                        if !keep {
                            h.abort();
                        }
                        keep
                    });
                    Ok(json!({"ok": true}))
                }
                "send" if faults.die_on_send => return self.die(),
                "send" => {
                    let chat = p["chat_id"].as_i64();
                    let text = p["text"].as_str().unwrap_or("").to_string();
                    match chat {
                        Some(c) => {
                            let row = self.add_row(c, false, "", &text, true);
                            let n = {
                                let mut n = self.inner.sends.lock().unwrap();
                                *n += 1;
                                *n
                            };
                            if faults.freeze_after_sends == Some(n) {
                                std::future::pending::<()>().await;
                            }
                            if self.roll(faults.die_after_send_per_mille) {
                                return self.die();
                            }
                            let guid = {
                                let w = self.inner.world.lock().unwrap();
                                w.rows
                                    .last()
                                    .filter(|r| r.id == row)
                                    .map(|r| r.guid.clone())
                            };
                            Ok(json!({"ok": true, "id": row, "guid": guid}))
                        }
                        None => Err(json!({"code": -32602, "message": "Invalid params",
                            "data": "chat_id is required in this model"})),
                    }
                }
                _ => Err(json!({"code": -32601, "message": "Method not found", "data": method})),
            };
            if self.roll(faults.drop_per_mille) {
                continue;
            }
            if faults.max_delay_ms > 0 {
                let d = self.rand() % (faults.max_delay_ms + 1);
                tokio::time::sleep(Duration::from_millis(d)).await;
            }
            if self.roll(faults.garbage_per_mille) {
                write(&out, "garbage: not json {").await;
            }
            let line = match result {
                Ok(r) => json!({"jsonrpc": "2.0", "id": id, "result": r}),
                Err(e) => json!({"jsonrpc": "2.0", "id": id, "error": e}),
            };
            write(&out, &line.to_string()).await;
            if method == "initialize" && faults.deaf_after_initialize {
                deaf = true;
                break;
            }
        }
        if deaf {
            drop(lines);
            self.die();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn watch(
        self,
        sub: i64,
        mut cursor: i64,
        out: Arc<tokio::sync::Mutex<tokio::io::DuplexStream>>,
    ) {
        // A first poll that takes a moment, like imsg's: a client that re-subscribes in a
        // loop then lets the paused clock run, so a test waiting on it times out, not hangs.
        tokio::time::sleep(Duration::from_millis(1)).await;
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let batch = match self.inner.level {
                Level::Legacy => 100,
                Level::V1 => 500,
            };
            loop {
                let (rows, bad) = {
                    let w = self.inner.world.lock().unwrap();
                    let start = w.rows.partition_point(|r| r.id <= cursor);
                    let rows: Vec<Row> = w.rows[start..].iter().take(batch).cloned().collect();
                    let bad = rows.iter().any(|r| w.unreadable.contains(&r.id));
                    (rows, bad)
                };
                if bad {
                    let line = json!({"jsonrpc": "2.0", "method": "error", "params": {
                        "subscription": sub, "error": {"message": unreadable_error()["data"]}}});
                    write(&out, &line.to_string()).await;
                    return;
                }
                let full = rows.len() == batch;
                for r in rows {
                    cursor = r.id;
                    let line = json!({"jsonrpc": "2.0", "method": "message",
                        "params": {"subscription": sub, "message": self.message_json(&r)}})
                    .to_string();
                    write(&out, &line).await;
                    if self.faults().duplicate {
                        write(&out, &line).await;
                    }
                }
                if !full {
                    break;
                }
            }
            changed.await;
        }
    }
}

/// What fake-imsg answers for a row whose text is not UTF-8.
fn unreadable_error() -> Value {
    json!({"code": -32603, "message": "Internal error",
           "data": "Conversion error from type Text at index: 5, invalid utf-8 sequence of 1 bytes from index 0"})
}

async fn write(out: &Arc<tokio::sync::Mutex<tokio::io::DuplexStream>>, line: &str) {
    let mut w = out.lock().await;
    let _ = w.write_all(line.as_bytes()).await;
    let _ = w.write_all(b"\n").await;
    let _ = w.flush().await;
}

struct MemPeer {
    task: Option<JoinHandle<()>>,
}

impl Peer for MemPeer {
    fn ended(&mut self) -> BoxFuture<'_, String> {
        Box::pin(async move {
            match self.task.as_mut() {
                Some(t) => match t.await {
                    Ok(()) => "imsg exited".to_string(),
                    Err(_) => "imsg was killed".to_string(),
                },
                None => std::future::pending().await,
            }
        })
    }

    fn shutdown(mut self: Box<Self>, _grace: Duration) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if let Some(t) = self.task.take() {
                t.abort();
            }
        })
    }

    fn kill(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if let Some(t) = self.task.take() {
                t.abort();
            }
        })
    }
}

impl Connector for MemImsg {
    fn describe(&self) -> String {
        "in-memory imsg".into()
    }

    fn connect(&self) -> Result<Link, SpawnError> {
        *self.inner.connections.lock().unwrap() += 1;
        // One pipe each way, like a child's stdin and stdout: either end can close alone.
        let (to_imsg, from_gateway) = tokio::io::duplex(1 << 16);
        let (to_gateway, from_imsg) = tokio::io::duplex(1 << 16);
        let (client, notifications) =
            Client::new(from_imsg, to_imsg, Duration::from_secs(10), "mem");
        let task = tokio::spawn(self.clone().serve(from_gateway, to_gateway));
        *self.inner.current.lock().unwrap() = Some(task.abort_handle());
        Ok(Link {
            client,
            notifications,
            pid: None,
            peer: Box::new(MemPeer { task: Some(task) }),
        })
    }
}
