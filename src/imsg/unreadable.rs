//! Rows imsg cannot read: finding one, and what it hides, so it can be stepped over.
//!
//! On protocol v1 a failing `messages.after` page is narrowed down one row at a time
//! ([`narrow_after`]). Legacy imsg (0.9) has no `messages.after`: its watch reads the 100
//! rows after its cursor per poll, and a batch holding a bad row fails whole (one `error`
//! notification), again on every re-subscription from there. [`pin_down_legacy`] finds the
//! row with `watch.subscribe {since_rowid}` probes.
//!
//! On both, the reads that fail on a bad row also fail for some readable rows before it (the
//! rest of a legacy batch; on v1 the row before it, since `messages.after` scans `limit + 1`
//! rows to tell `has_more`), and no read by rowid reaches those. [`read_back`] reads them from
//! `messages.history`, chat by chat, stepping over a bad row there by date (history has no
//! rowid bounds). Every search here is the same [`Edge`] search; the supervisor decides what
//! to report and where to resume.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::client::{Client, Notifications, RpcError};
use super::protocol::{ChatIds, Page, Protocol, Request, Subscribed};
use crate::clock::rfc3339_ms;

/// How many doublings a search may take before giving up: 2^40 covers any rowid gap, and
/// in milliseconds (the date search) about 35 years.
const MAX_DOUBLINGS: u32 = 40;
/// How long a probe subscription may stay silent before it counts as having nothing after
/// its rowid. imsg polls as soon as it subscribes, so a batch that reads or fails shows at
/// once; silence only means there are no rows after it.
const PROBE_FIRST: Duration = Duration::from_secs(2);
/// After a probe's last notification, how long without another one ends its first batch
/// (whose notifications come back to back; the next batch is seconds away).
const PROBE_SETTLE: Duration = Duration::from_millis(500);
/// The most recently active chats read back from (hidden rows are at most 99: one batch).
const READ_BACK_CHATS: u32 = 100;
/// Pages of history per chat at most, so a read-back always ends.
const READ_BACK_PAGES: u32 = 500;

/// Whether a legacy watch `error` (a bare message, no code) says the database was busy: a
/// condition that passes, never a reason to skip a row.
pub(super) fn looks_transient(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("locked") || m.contains("busy")
}

/// Why a read-back from `messages.history` stopped.
#[derive(Debug)]
pub enum ReadError {
    /// A request failed as a whole, not because of a row: the connection, a busy or
    /// unavailable database. Its error says whether trying again can help.
    Request {
        method: &'static str,
        error: RpcError,
    },
    /// The reads failed around rows in a way no search could step past.
    Rows(String),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Request { method, error } => write!(f, "{method} failed: {error}"),
            ReadError::Rows(why) => f.write_str(why),
        }
    }
}

impl From<ReadError> for String {
    fn from(e: ReadError) -> String {
        e.to_string()
    }
}

fn history_failed(error: RpcError) -> ReadError {
    ReadError::Request {
        method: "messages.history",
        error,
    }
}

/// The search for the edge above `lo` where a property that holds at `lo` first stops
/// holding, over values too sparse to walk one by one (rowids with gaps, milliseconds):
/// steps that double until one does not hold, then bisection. Found means the property
/// holds at `x - 1` and not at `x`.
#[derive(Debug, Clone)]
pub(super) struct Edge {
    lo: i64,
    /// The lowest value known not to hold, once one is.
    hi: Option<i64>,
    step: i64,
    doublings: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    Try(i64),
    Found(i64),
    GaveUp,
}

impl Edge {
    /// The property holds at `lo`; nothing is known above it.
    pub(super) fn above(lo: i64) -> Edge {
        Edge {
            lo,
            hi: None,
            step: 1,
            doublings: 0,
        }
    }

    /// The property holds at `lo` and not at `hi`.
    pub(super) fn between(lo: i64, hi: i64) -> Edge {
        Edge {
            hi: Some(hi),
            ..Edge::above(lo)
        }
    }

    pub(super) fn next(&self) -> Next {
        match self.hi {
            None if self.doublings >= MAX_DOUBLINGS => Next::GaveUp,
            None => Next::Try(self.lo.saturating_add(self.step)),
            Some(hi) if hi - self.lo <= 1 => Next::Found(hi),
            Some(hi) => Next::Try(self.lo + (hi - self.lo) / 2),
        }
    }

    pub(super) fn record(&mut self, x: i64, holds: bool) {
        if !holds {
            self.hi = Some(x);
        } else {
            self.lo = x;
            if self.hi.is_none() {
                self.step = self.step.saturating_mul(2);
                self.doublings += 1;
            }
        }
    }

    /// Runs the search with `holds` answering each try; `None` when it gave up.
    async fn find<F, Fut, E>(mut self, mut holds: F) -> Result<Option<i64>, E>
    where
        F: FnMut(i64) -> Fut,
        Fut: Future<Output = Result<bool, E>>,
    {
        loop {
            match self.next() {
                Next::Try(x) => {
                    let h = holds(x).await?;
                    self.record(x, h);
                }
                Next::Found(x) => return Ok(Some(x)),
                Next::GaveUp => return Ok(None),
            }
        }
    }
}

/// v1 `messages.after {since_rowid, limit}` with the catch-up's options.
pub(super) async fn messages_after(
    client: &Client,
    since: i64,
    limit: u32,
    attachments: bool,
) -> Result<Value, RpcError> {
    client
        .call(
            Protocol::V1,
            &Request::After {
                since_rowid: since,
                limit,
                attachments,
            },
        )
        .await
}

/// v1: `messages.after {since_rowid: since, limit: 1}` fails, so the first row after `since`
/// is unreadable; rowids have gaps, so it is the `x` whose one-row page reads (or is empty)
/// while `x - 1`'s fails.
pub(super) async fn narrow_after(
    client: &Client,
    since: i64,
    attachments: bool,
) -> Result<i64, String> {
    let fails = |x: i64| async move {
        match messages_after(client, x, 1, attachments).await {
            Ok(_) => Ok(false),
            Err(e) if e.row_level() => Ok(true),
            Err(e) => Err(format!("messages.after failed: {e}")),
        }
    };
    Edge::above(since).find(fails).await?.ok_or_else(|| {
        format!("imsg cannot read the rows after rowid {since} and no readable row was found")
    })
}

/// Legacy: the first watch batch after `since` fails. Subscribes a probe and listens to its
/// first batch: an `error` in it is a failure, messages alone or silence are not.
async fn probe_fails(
    client: &Client,
    notes: &mut Notifications,
    since: i64,
) -> Result<bool, String> {
    let req = Request::Subscribe {
        after: Some(since),
        attachments: false,
    };
    let result = client
        .call(Protocol::Legacy, &req)
        .await
        .map_err(|e| format!("watch.subscribe (probe) failed: {e}"))?;
    let sub = Subscribed::from_result(&result)?.subscription;
    let mut deadline = Instant::now() + PROBE_FIRST;
    let verdict = loop {
        let note = match tokio::time::timeout_at(deadline, notes.recv()).await {
            Err(_) => break Ok(false),
            Ok(None) => break Err("imsg rpc stdout closed".to_string()),
            Ok(Some(n)) => n,
        };
        // Earlier subscriptions' leftovers are not this probe's answer.
        if note.params.get("subscription").and_then(Value::as_i64) != Some(sub) {
            continue;
        }
        match note.method.as_str() {
            "error" => break Ok(true),
            // imsg may emit the rows before a bad one and then fail: wait for the batch's end.
            "message" => deadline = Instant::now() + PROBE_SETTLE,
            _ => {}
        }
    };
    let _ = client
        .call_with_timeout(
            Protocol::Legacy,
            &Request::Unsubscribe { subscription: sub },
            Duration::from_secs(1),
        )
        .await;
    verdict
}

/// Legacy: the watch failed from `since` (the highest rowid handed out). Returns the rowid
/// imsg cannot read, or `None` when the batch after `since` reads now (the failure passed).
pub(super) async fn pin_down_legacy(
    client: &Client,
    notes: &mut Notifications,
    since: i64,
) -> Result<Option<i64>, String> {
    if !probe_fails(client, notes, since).await? {
        return Ok(None);
    }
    // The probes can share one `&mut notes` only one at a time, so the search runs here.
    let mut edge = Edge::above(since);
    let bad = loop {
        match edge.next() {
            Next::Try(x) => {
                let fails = probe_fails(client, notes, x).await?;
                edge.record(x, fails);
            }
            Next::Found(x) => break x,
            Next::GaveUp => {
                return Err(format!(
                    "imsg's watch cannot read the rows after rowid {since} and no readable row was found"
                ))
            }
        }
    };
    // A row is about to be skipped: ask both sides of the edge again, so a failure that came
    // and went during the search is not taken for a bad row.
    if !probe_fails(client, notes, bad - 1).await? || probe_fails(client, notes, bad).await? {
        return Err(format!(
            "the row imsg's watch cannot read after rowid {since} could not be pinned down: imsg answered differently when asked again"
        ));
    }
    Ok(Some(bad))
}

/// Milliseconds since the epoch of a message's `created_at`.
fn created_ms(m: &Value) -> Option<i64> {
    let s = m.get("created_at")?.as_str()?;
    Some(
        chrono::DateTime::parse_from_rfc3339(s)
            .ok()?
            .timestamp_millis(),
    )
}

fn rowid(m: &Value) -> Option<i64> {
    m.get("id").and_then(Value::as_i64)
}

/// One chat's history, read newest first, for the read-back.
struct History<'a> {
    client: &'a Client,
    protocol: Protocol,
    label: &'a str,
    chat: i64,
    attachments: bool,
    page: u32,
}

impl History<'_> {
    /// The newest `limit` rows dated before `end` (ms, exclusive).
    async fn rows(&self, limit: u32, end: Option<i64>) -> Result<Vec<Value>, RpcError> {
        let req = Request::History {
            chat_id: self.chat,
            limit,
            attachments: self.attachments,
            end: end.map(rfc3339_ms),
        };
        let page = self.client.call(self.protocol, &req).await?;
        Ok(Page::from_result(page).messages)
    }

    /// Whether the newest `limit` rows before `end` read; errors that are not about a row
    /// end the read-back.
    async fn reads(&self, limit: u32, end: Option<i64>) -> Result<bool, ReadError> {
        match self.rows(limit, end).await {
            Ok(_) => Ok(true),
            Err(e) if e.row_level() => Ok(false),
            Err(e) => Err(history_failed(e)),
        }
    }

    /// The newest rows before `end` up to the first unreadable one, and an `end` that leaves
    /// that row out: the latest millisecond at which the next older row reads. `newest` is
    /// the chat's last activity, for when the bad row is the newest row.
    async fn around_bad_row(
        &self,
        end: Option<i64>,
        newest: Option<i64>,
    ) -> Result<(Vec<Value>, i64), ReadError> {
        let limit = self.page as i64;
        let first_bad = Edge::between(0, limit)
            .find(|k| async move { self.reads(k as u32, end).await })
            .await?
            .unwrap_or(limit);
        let readable = match first_bad - 1 {
            0 => Vec::new(),
            k => self.rows(k as u32, end).await.map_err(history_failed)?,
        };
        let Some(anchor) = readable
            .iter()
            .filter_map(created_ms)
            .min()
            .or(end)
            .or(newest.map(|n| n + 1))
        else {
            return Err(ReadError::Rows(format!(
                "chat {} has an unreadable row and no date to read past it from",
                self.chat
            )));
        };
        let reads_before = |t: i64| async move { self.reads(1, Some(t)).await };
        if reads_before(anchor).await? {
            // The bad row shares the millisecond of the oldest readable one.
            return Ok((readable, anchor));
        }
        let back = Edge::above(0)
            .find(|off| async move { Ok(!reads_before(anchor - off).await?) })
            .await?
            .ok_or_else(|| {
                ReadError::Rows(format!(
                    "chat {}: no readable row found before an unreadable one",
                    self.chat
                ))
            })?;
        let past = anchor - back;
        tracing::warn!(account = %self.label, chat_id = self.chat,
            "messages.history cannot read a row of chat {} dated between {} and {}; reading on before it",
            self.chat, rfc3339_ms(past), rfc3339_ms(anchor));
        Ok((readable, past))
    }

    /// Collects this chat's rows with `since < id < bad` into `found`. Returns whether the
    /// chat has rows after `since` at all (chats come newest first: one that has none ends
    /// the read-back).
    async fn read_back(
        &self,
        since: i64,
        bad: i64,
        newest: Option<i64>,
        found: &mut BTreeMap<i64, Value>,
    ) -> Result<bool, ReadError> {
        let mut end: Option<i64> = None;
        let mut any_after = false;
        for _ in 0..READ_BACK_PAGES {
            let (rows, stepped) = match self.rows(self.page, end).await {
                Ok(rows) => (rows, None),
                Err(e) if e.row_level() => {
                    // A bad row of this chat: its rowid is unknown, but it is newer than
                    // what follows, so it may be one of the rows after `since`.
                    any_after = true;
                    let (rows, past) = self.around_bad_row(end, newest).await?;
                    (rows, Some(past))
                }
                Err(e) => return Err(history_failed(e)),
            };
            let full = rows.len() as u32 >= self.page;
            let mut reached_since = false;
            for m in &rows {
                match rowid(m) {
                    Some(id) if id <= since => reached_since = true,
                    Some(id) => {
                        any_after = true;
                        if id < bad {
                            found.entry(id).or_insert_with(|| m.clone());
                        }
                    }
                    None => {}
                }
            }
            if reached_since {
                return Ok(any_after);
            }
            end = match stepped {
                Some(past) => Some(past),
                None if !full => return Ok(any_after),
                None => {
                    let Some(oldest) = rows.iter().filter_map(created_ms).min() else {
                        return Ok(any_after);
                    };
                    // `end` is exclusive: one millisecond more keeps the rows that share the
                    // oldest one's; a page all in one millisecond moves past it.
                    Some(if end == Some(oldest + 1) {
                        oldest
                    } else {
                        oldest + 1
                    })
                }
            };
        }
        tracing::warn!(account = %self.label, chat_id = self.chat,
            "read back {READ_BACK_PAGES} pages of chat {} without reaching rowid {since}; stopping there", self.chat);
        Ok(any_after)
    }
}

/// The most recently active chats, newest first, with their last activity (ms).
async fn recent_chats(
    client: &Client,
    protocol: Protocol,
) -> Result<Vec<(i64, Option<i64>)>, ReadError> {
    let chats = client
        .call(
            protocol,
            &Request::ChatsList {
                limit: READ_BACK_CHATS,
            },
        )
        .await
        .map_err(|error| ReadError::Request {
            method: "chats.list",
            error,
        })?;
    Ok(ChatIds::from_result(&chats)
        .0
        .into_iter()
        .map(|(id, last)| {
            let newest = last
                .as_deref()
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                .map(|d| d.timestamp_millis());
            (id, newest)
        })
        .collect())
}

/// The readable rows of one chat with a rowid above `since`, in rowid order, read from
/// `messages.history` and stepping over rows imsg cannot read (by date, as [`read_back`]
/// does): for a history check that a plain page cannot answer because a row of it fails.
pub async fn readable_rows_after(
    client: &Client,
    protocol: Protocol,
    label: &str,
    chat: i64,
    since: i64,
) -> Result<Vec<Value>, ReadError> {
    // The chat's last activity dates a bad row that is its newest.
    let newest = recent_chats(client, protocol)
        .await?
        .into_iter()
        .find(|(id, _)| *id == chat)
        .and_then(|(_, newest)| newest);
    let history = History {
        client,
        protocol,
        label,
        chat,
        attachments: false,
        page: 100,
    };
    let mut found = BTreeMap::new();
    history
        .read_back(since, i64::MAX, newest, &mut found)
        .await?;
    Ok(found.into_values().collect())
}

/// The rows with `since < id < bad` that the reads failing on `bad` hid, read from
/// `messages.history` of the most recently active chats, in rowid order. Tapbacks and rows
/// without a chat are not in any history; the gateway never answers those anyway.
pub(super) async fn read_back(
    client: &Client,
    protocol: Protocol,
    label: &str,
    since: i64,
    bad: i64,
    attachments: bool,
    page: u32,
) -> Result<Vec<Value>, String> {
    if bad - since <= 1 {
        return Ok(Vec::new());
    }
    let mut found = BTreeMap::new();
    for (chat_id, newest) in recent_chats(client, protocol).await? {
        let history = History {
            client,
            protocol,
            label,
            chat: chat_id,
            attachments,
            page,
        };
        if !history.read_back(since, bad, newest, &mut found).await? {
            break;
        }
    }
    Ok(found.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a search against a plain predicate, counting the tries.
    fn search(mut edge: Edge, holds: impl Fn(i64) -> bool) -> (Next, usize) {
        let mut tries = 0;
        loop {
            match edge.next() {
                Next::Try(x) => {
                    tries += 1;
                    edge.record(x, holds(x));
                }
                done => return (done, tries),
            }
        }
    }

    #[test]
    fn the_edge_is_found_across_any_gap_in_few_tries() {
        for (lo, edge) in [(0, 1), (10, 11), (10, 12), (5, 1_000), (7, 1 << 38)] {
            let (found, tries) = search(Edge::above(lo), |x| x < edge);
            assert_eq!(found, Next::Found(edge), "lo {lo}, edge {edge}");
            assert!(tries <= 2 * 40, "{tries} tries for edge {edge}");
        }
    }

    #[test]
    fn a_bounded_edge_is_bisected_and_a_missing_one_given_up() {
        assert_eq!(search(Edge::between(0, 200), |k| k < 37).0, Next::Found(37));
        assert_eq!(search(Edge::between(0, 200), |_| true).0, Next::Found(200));
        assert_eq!(search(Edge::between(0, 1), |_| true).0, Next::Found(1));
        assert_eq!(search(Edge::above(0), |_| true).0, Next::GaveUp);
    }

    #[test]
    fn only_busy_database_errors_count_as_passing() {
        assert!(looks_transient("database is locked (code: 5)"));
        assert!(looks_transient("SQLITE_BUSY"));
        assert!(!looks_transient(
            "Conversion error from type Text at index: 5, invalid utf-8 sequence"
        ));
    }
}
