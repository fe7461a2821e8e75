//! Supervision of one account's `imsg rpc` child.
//!
//! Keeps a connection open for as long as the gateway runs: connect (through a
//! [`Connector`]: a child process in production), negotiate, wait for the database (v1
//! `database.ready`), catch up from the durable cursor with `messages.after` (v1), subscribe,
//! then watch for the peer ending, its stdout closing, or it no longer answering a health
//! request. Any of those kills it and reconnects with capped exponential backoff. Messages are
//! handed to the gateway in order on one channel; dedupe of the seams (catch-up vs. live,
//! overflow resume, restarts) is the gateway's journal's job.
//!
//! Two things are never left to chance: with no cursor yet, the tail rowid is established and
//! reported ([`SupervisorEvent::Position`]) before subscribing, so a restart replays what
//! arrived meanwhile; and a row imsg keeps failing to read is found (`unreadable`: by
//! `messages.after` on v1, by `since_rowid` probes on legacy), the readable rows its failing
//! reads hid are read back from history, and it is reported ([`SupervisorEvent::Unreadable`])
//! and stepped over, so one bad row never wedges an account.
//!
//! Backpressure: every message handed over holds a [`Credit`] from the account's in-flight
//! budget until the gateway is done with it, so a flood or a 20,000-row catch-up waits for
//! replies instead of filling memory. Catch-up pages wait for credit; the live watch cannot
//! be paused, so the client drops what its queue cannot hold and the supervisor then resumes
//! the stream after the last message it handed over (the position only moves past a message
//! once the gateway has it).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use serde_json::Value;
use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};

use super::client::{Client, Notification, Notifications};
use super::connector::{Connector, Link};
use super::process::SpawnError;
use super::protocol::{negotiate, ChatIds, Negotiated, Page, Protocol, Request, Subscribed};
use super::unreadable;

/// Timings and knobs; the defaults are the production figures, tests shrink them.
#[derive(Debug, Clone)]
pub struct SupervisorOptions {
    /// The account id, for logs.
    pub label: String,
    pub request_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// A child that stayed up this long resets the backoff.
    pub healthy_after: Duration,
    pub health_interval: Duration,
    pub health_timeout: Duration,
    pub shutdown_grace: Duration,
    /// `watch.subscribe` / `messages.after` `attachments`.
    pub attachments: bool,
    /// `messages.after` page size (1…500).
    pub catchup_page: u32,
    /// The account's in-flight budget: one permit per message handed over and not yet done.
    pub inflight: Arc<Semaphore>,
}

/// Messages of one account handed to the gateway and not yet answered (or skipped), at most.
/// Deep enough to keep every session's planning lookahead and the agents busy, small enough
/// that a flood costs a few MB.
pub const MAX_INFLIGHT: usize = 512;

/// How many events wait for the gateway; messages are bounded by credit, the rest are few.
pub const EVENT_QUEUE: usize = 256;

/// A message's share of the in-flight budget, released when dropped: the gateway keeps it
/// with the message until the reply is sent or the message is not answered.
#[derive(Debug)]
pub struct Credit(#[allow(dead_code)] OwnedSemaphorePermit);

impl SupervisorOptions {
    pub fn new(label: &str) -> Self {
        SupervisorOptions {
            label: label.to_string(),
            request_timeout: super::client::DEFAULT_TIMEOUT,
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            healthy_after: Duration::from_secs(60),
            health_interval: Duration::from_secs(30),
            health_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(2),
            attachments: false,
            catchup_page: 200,
            inflight: Arc::new(Semaphore::new(MAX_INFLIGHT)),
        }
    }
}

/// What the supervisor tells the gateway, in order.
#[derive(Debug)]
pub enum SupervisorEvent {
    /// One message payload, from the live watch or a catch-up page, with its credit.
    Message(Value, Credit),
    /// A catch-up page consumed every row up to this rowid: once the messages sent before it
    /// are journaled, the cursor may move here.
    Position(i64),
    /// The Messages database was replaced (its newest rowid is below our cursor): rowids are
    /// not portable across databases, so the cursor must be set back to this value.
    Rewind(i64),
    /// imsg keeps failing to read this row: it was stepped over (the cursor may move past
    /// it once everything before it is journaled).
    Unreadable {
        rowid: i64,
        error: String,
    },
    /// The connection has stayed up long enough to count as healthy.
    Stable,
    Connected {
        protocol: Protocol,
        version: Option<String>,
    },
    Disconnected {
        reason: String,
    },
}

/// The live connection, for senders.
#[derive(Debug, Clone)]
pub struct Connection {
    pub client: Client,
    pub protocol: Protocol,
    /// Counts connections from 1: a sender that failed on one waits for a later one.
    pub epoch: u64,
    restart: Arc<Notify>,
}

impl Connection {
    /// Asks the supervisor to replace this child (a poisoned mutation lane, `-32004`).
    pub fn request_restart(&self) {
        self.restart.notify_one();
    }
}

pub type ConnectionSlot = watch::Receiver<Option<Connection>>;

/// The durable cursor, as the gateway last committed it (`None`: never established).
pub type CursorRx = watch::Receiver<Option<i64>>;

/// Runs until `shutdown` turns true. Returns when the peer has been stopped.
pub async fn run(
    opts: SupervisorOptions,
    connector: Arc<dyn Connector>,
    cursor: CursorRx,
    events: mpsc::Sender<SupervisorEvent>,
    slot: watch::Sender<Option<Connection>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let label = opts.label.clone();
    let mut backoff = opts.backoff_initial;
    // Highest rowid handed to the gateway by this supervisor (the durable cursor may lag it).
    let mut position: Option<i64> = None;
    let mut first_start = true;
    let mut reported_not_found = false;
    let mut epoch = 0;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let started = Instant::now();
        let outcome = match connector.connect() {
            Ok(link) => {
                reported_not_found = false;
                epoch += 1;
                tracing::info!(account = %label, pid = ?link.pid, "started {}", connector.describe());
                let mut session = Session {
                    opts: &opts,
                    events: &events,
                    slot: &slot,
                    position: &mut position,
                    first_start,
                    cursor: &cursor,
                    restart: Arc::new(Notify::new()),
                    epoch,
                };
                let o = session.run(link, &mut shutdown).await;
                first_start = false;
                o
            }
            Err(e @ SpawnError::NotFound { .. }) => {
                if !reported_not_found {
                    tracing::error!(account = %label, "{e}");
                    reported_not_found = true;
                }
                Outcome::Failed(e.to_string())
            }
            Err(e) => Outcome::Failed(e.to_string()),
        };
        slot.send_replace(None);
        match outcome {
            Outcome::Shutdown => return,
            Outcome::Failed(reason) => {
                let _ = events
                    .send(SupervisorEvent::Disconnected {
                        reason: reason.clone(),
                    })
                    .await;
                if started.elapsed() >= opts.healthy_after {
                    backoff = opts.backoff_initial;
                }
                tracing::warn!(account = %label, "imsg rpc: {reason}; restarting in {} ms", backoff.as_millis());
                if sleep_or_shutdown(backoff, &mut shutdown).await {
                    return;
                }
                backoff = (backoff * 2).min(opts.backoff_max);
            }
        }
    }
}

enum Outcome {
    Shutdown,
    Failed(String),
}

/// Resolves once shutdown is requested (the borrow guard is dropped before returning).
async fn wait_shutdown(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Sleeps `d` unless the gateway starts shutting down first; true when it did.
pub(crate) async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = wait_shutdown(shutdown) => true,
    }
}

struct Session<'a> {
    opts: &'a SupervisorOptions,
    events: &'a mpsc::Sender<SupervisorEvent>,
    slot: &'a watch::Sender<Option<Connection>>,
    position: &'a mut Option<i64>,
    first_start: bool,
    cursor: &'a CursorRx,
    restart: Arc<Notify>,
    epoch: u64,
}

impl Session<'_> {
    fn label(&self) -> &str {
        &self.opts.label
    }

    /// Where to resume from: the durable cursor or what this supervisor already handed out.
    fn resume_point(&self) -> Option<i64> {
        // `None` (nothing known) orders below every rowid.
        (*self.cursor.borrow()).max(*self.position)
    }

    fn advance(&mut self, rowid: i64) {
        *self.position = (*self.position).max(Some(rowid));
    }

    /// An event for the gateway; waits while its queue is full. False once the gateway is
    /// gone.
    async fn emit(&self, ev: SupervisorEvent) -> bool {
        self.events.send(ev).await.is_ok()
    }

    /// Hands one message to the gateway once the account has credit for it, and only then
    /// counts it as handed over: a hand-over cut short (the child died meanwhile) leaves the
    /// position before it, so the message is read again.
    async fn hand_over(&mut self, msg: Value) {
        let Ok(permit) = self.opts.inflight.clone().acquire_owned().await else {
            return;
        };
        let id = msg.get("id").and_then(Value::as_i64);
        if self
            .emit(SupervisorEvent::Message(msg, Credit(permit)))
            .await
        {
            if let Some(id) = id {
                self.advance(id);
            }
        }
    }

    /// Notifications were dropped: the live stream cannot be paused, so it is stopped and
    /// resumed after the last message handed over (v1: through a catch-up, which waits for
    /// credit). What is still queued came before the drop and is read again from there.
    async fn on_overflow(
        &mut self,
        client: &Client,
        notes: &mut Notifications,
        protocol: Protocol,
        subscription: i64,
    ) -> Result<i64, String> {
        let from = self.resume_point();
        tracing::warn!(account = %self.label(), resume_after_rowid = ?from,
            "messages arrive faster than they are answered and imsg's notifications were cut off; resuming the watch after the last message handed over");
        let _ = client
            .call_with_timeout(
                protocol,
                &Request::Unsubscribe { subscription },
                self.opts.request_timeout,
            )
            .await;
        while notes.try_recv().is_ok() {}
        client.clear_overflow();
        self.resume(client, protocol, from).await
    }

    async fn run(&mut self, mut link: Link, shutdown: &mut watch::Receiver<bool>) -> Outcome {
        let client = link.client.clone();
        let outcome = tokio::select! {
            o = self.serve(&client, &mut link.notifications, shutdown) => o,
            what = link.peer.ended() => Outcome::Failed(what),
        };
        self.slot.send_replace(None);
        match outcome {
            Outcome::Shutdown => {
                link.peer.shutdown(self.opts.shutdown_grace).await;
                Outcome::Shutdown
            }
            Outcome::Failed(reason) => {
                let words = link.peer.last_words();
                link.peer.kill().await;
                // A child that dies at start says why on stderr, not on the protocol.
                Outcome::Failed(match words.await {
                    Some(w) => format!("{reason}; its last stderr line: {w}"),
                    None => reason,
                })
            }
        }
    }

    async fn serve(
        &mut self,
        client: &Client,
        notes: &mut Notifications,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Outcome {
        // Setup (negotiate, db wait, catch-up, subscribe) races the shutdown signal.
        let mut setup_shutdown = shutdown.clone();
        let setup = tokio::select! {
            r = self.setup(client, &mut setup_shutdown) => r,
            _ = wait_shutdown(shutdown) => return Outcome::Shutdown,
        };
        let (negotiated, mut subscription) = match setup {
            Ok(Some(x)) => x,
            Ok(None) => return Outcome::Shutdown,
            Err(reason) => return Outcome::Failed(reason),
        };
        let protocol = negotiated.protocol;
        let mut health = tokio::time::interval(self.opts.health_interval);
        health.tick().await;
        let restart = self.restart.clone();
        let stable = tokio::time::sleep(self.opts.healthy_after);
        tokio::pin!(stable);
        let mut reported_stable = false;
        loop {
            tokio::select! {
                _ = &mut stable, if !reported_stable => {
                    reported_stable = true;
                    self.emit(SupervisorEvent::Stable).await;
                }
                _ = restart.notified() => {
                    return Outcome::Failed("restart requested (mutation lane blocked)".into());
                }
                _ = client.overflowed() => {
                    let resumed = tokio::select! {
                        r = self.on_overflow(client, notes, protocol, subscription) => r,
                        _ = wait_shutdown(shutdown) => return Outcome::Shutdown,
                    };
                    match resumed {
                        Ok(sub) => subscription = sub,
                        Err(reason) => return Outcome::Failed(reason),
                    }
                }
                _ = wait_shutdown(shutdown) => {
                    let _ = client
                        .call_with_timeout(protocol, &Request::Unsubscribe { subscription }, Duration::from_secs(1))
                        .await;
                    return Outcome::Shutdown;
                }
                note = notes.recv() => {
                    let Some(note) = note else {
                        return Outcome::Failed("imsg rpc stdout closed".into());
                    };
                    // Stepping over a bad row can take a while (legacy probes): shutdown wins.
                    let handled = tokio::select! {
                        r = self.on_notification(client, notes, protocol, subscription, note) => r,
                        _ = wait_shutdown(shutdown) => return Outcome::Shutdown,
                    };
                    match handled {
                        Ok(Some(new_sub)) => subscription = new_sub,
                        Ok(None) => {}
                        Err(reason) => return Outcome::Failed(reason),
                    }
                }
                _ = health.tick() => {
                    match client.call_with_timeout(protocol, &health_probe(protocol), self.opts.health_timeout).await {
                        Ok(_) => {}
                        Err(e) if e.is_transport() => {
                            return Outcome::Failed(format!("health check failed, imsg stopped answering: {e}"));
                        }
                        Err(e) => tracing::debug!(account = %self.label(), "health check answered with an error: {e}"),
                    }
                }
            }
        }
    }

    /// Negotiates, waits for the database, catches up and subscribes.
    /// `Ok(None)` means shutdown was requested meanwhile.
    async fn setup(
        &mut self,
        client: &Client,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<(Negotiated, i64)>, String> {
        let timeout = self.opts.request_timeout;
        let mut negotiated = negotiate(client, timeout)
            .await
            .map_err(|e| format!("initialize failed: {e}"))?;
        tracing::info!(account = %self.label(), protocol = negotiated.protocol.label(),
            version = negotiated.version.as_deref().unwrap_or("unknown"), "imsg rpc negotiated");
        // v1 degraded startup: the child is fine, the database is not (yet). Poll, don't restart.
        let mut wait = self.opts.backoff_initial;
        let mut warned = false;
        while !negotiated.can_watch() {
            if !warned {
                tracing::warn!(account = %self.label(),
                    "imsg database not ready at {}: {}; polling status",
                    negotiated.database_path.as_deref().unwrap_or("?"),
                    negotiated.database_error.as_deref().unwrap_or("no detail"));
                warned = true;
            }
            if sleep_or_shutdown(wait, shutdown).await {
                return Ok(None);
            }
            wait = (wait * 2).min(self.opts.backoff_max);
            let status = client
                .call_with_timeout(Protocol::V1, &Request::Status, timeout)
                .await
                .map_err(|e| format!("status failed: {e}"))?;
            negotiated = Negotiated::from_status(status);
        }
        if warned {
            tracing::info!(account = %self.label(), "imsg database is ready");
        }
        self.slot.send_replace(Some(Connection {
            client: client.clone(),
            protocol: negotiated.protocol,
            epoch: self.epoch,
            restart: self.restart.clone(),
        }));
        self.emit(SupervisorEvent::Connected {
            protocol: negotiated.protocol,
            version: negotiated.version.clone(),
        })
        .await;
        let mut from = self.resume_point();
        if from.is_none() {
            // No cursor yet: pin the tail down and report it before subscribing, so a restart
            // (of imsg or of the gateway) replays whatever arrives from here on.
            match find_tail(client, negotiated.protocol).await {
                Ok(tail) => {
                    tracing::info!(account = %self.label(), "no cursor yet: starting from the tail, rowid {tail}");
                    self.advance(tail);
                    self.emit(SupervisorEvent::Position(tail)).await;
                    from = Some(tail);
                }
                Err(e) => tracing::warn!(account = %self.label(),
                    "no cursor yet and finding the newest message failed ({e}): subscribing at the tail; what arrives before the first message is journaled is not replayed after a restart"),
            }
        }
        // Checked once per gateway start (a database is swapped while the gateway is down, far
        // more often than while it runs); it costs a few requests, which a child that crashes
        // after N requests cannot afford on every restart.
        if let Some(cur) = from.filter(|c| *c > 0) {
            if self.first_start && !cursor_row_exists(client, negotiated.protocol, cur).await {
                // A lower bound (a chat left out) says nothing about a replaced database.
                if let Some((newest, true)) = newest_rowid(client, negotiated.protocol).await {
                    if newest < cur {
                        tracing::warn!(account = %self.label(),
                            "the Messages database looks replaced (newest rowid {newest} < cursor {cur}); rewinding the cursor to {newest}");
                        *self.position = Some(newest);
                        from = Some(newest);
                        self.emit(SupervisorEvent::Rewind(newest)).await;
                    }
                }
            }
        }
        let sub = self.resume(client, negotiated.protocol, from).await?;
        Ok(Some((negotiated, sub)))
    }

    /// v1: catch up with `messages.after` from `from`, then subscribe from where it ended.
    /// Legacy: subscribe with `since_rowid` (it replays everything after it). `from` 0 means
    /// "from the first row" (the database was empty when the tail was taken).
    async fn resume(
        &mut self,
        client: &Client,
        protocol: Protocol,
        from: Option<i64>,
    ) -> Result<i64, String> {
        let mut since = from;
        if let (Protocol::V1, Some(f)) = (protocol, from) {
            since = Some(self.catch_up(client, f).await?);
        }
        let result = client
            .call(
                protocol,
                &Request::Subscribe {
                    after: since,
                    attachments: self.opts.attachments,
                },
            )
            .await
            .map_err(|e| format!("watch.subscribe failed: {e}"))?;
        let sub = Subscribed::from_result(&result)?.subscription;
        tracing::info!(account = %self.label(), subscription = sub, since_rowid = ?since, "watching");
        Ok(sub)
    }

    async fn catch_up(&mut self, client: &Client, from: i64) -> Result<i64, String> {
        let mut since = from;
        let mut total = 0usize;
        // After a page imsg could not read: one row at a time until the bad row is found.
        let mut single = false;
        loop {
            let limit = if single { 1 } else { self.opts.catchup_page };
            let page = match unreadable::messages_after(client, since, limit, self.opts.attachments)
                .await
            {
                Ok(p) => p,
                Err(e) if e.row_level() => {
                    if !single {
                        tracing::warn!(account = %self.label(),
                            "messages.after from rowid {since} failed ({e}); reading one row at a time to find the row imsg cannot read");
                        single = true;
                        continue;
                    }
                    let bad =
                        unreadable::narrow_after(client, since, self.opts.attachments).await?;
                    self.step_over(client, Protocol::V1, since, bad, &e.to_string())
                        .await?;
                    since = bad;
                    continue;
                }
                Err(e) => return Err(format!("messages.after failed: {e}")),
            };
            let Page {
                messages,
                next_rowid,
                has_more,
            } = Page::from_result(page);
            let next = next_rowid.unwrap_or(since);
            total += messages.len();
            for m in messages {
                self.hand_over(m).await;
            }
            let next = next.max(since);
            self.emit(SupervisorEvent::Position(next)).await;
            self.advance(next);
            let moved = next != since;
            since = next;
            if single && moved {
                // Back to full pages once past a row that reads; a later failure narrows again.
                single = false;
            }
            if !has_more {
                break;
            }
            if !moved {
                // Guards against a server that says has_more without moving: never spin.
                tracing::warn!(account = %self.label(), "messages.after did not advance from {since}; stopping catch-up");
                break;
            }
        }
        if total > 0 {
            tracing::info!(account = %self.label(), "caught up {total} message(s) after rowid {from}");
        }
        Ok(since)
    }

    /// Legacy: the watch failed. Its batch fails again on every re-subscription from the same
    /// rowid, so unless the database was only busy, the bad row is pinned down and stepped
    /// over; re-subscribing then starts after it.
    async fn step_over_legacy(
        &mut self,
        client: &Client,
        notes: &mut Notifications,
        error: &str,
    ) -> Result<(), String> {
        let Some(since) = self.resume_point() else {
            // Watching from the tail with nothing handed out: re-subscribing at the new tail
            // is past the row already.
            return Ok(());
        };
        if unreadable::looks_transient(error) {
            tokio::time::sleep(self.opts.backoff_initial).await;
            return Ok(());
        }
        tracing::warn!(account = %self.label(),
            "the watch fails from rowid {since} ({error}); finding the row imsg cannot read with since_rowid probes");
        let Some(bad) = unreadable::pin_down_legacy(client, notes, since).await? else {
            tracing::info!(account = %self.label(), "the watch reads from rowid {since} again");
            return Ok(());
        };
        self.step_over(client, Protocol::Legacy, since, bad, error)
            .await
    }

    /// `bad` cannot be read, and the reads that failed on it also hid the rows between
    /// `since` and it (legacy: the rest of its watch batch; v1: the row `messages.after`
    /// scanned it with to tell `has_more`). Hands those over, read back from history, then
    /// reports `bad` and moves past it.
    async fn step_over(
        &mut self,
        client: &Client,
        protocol: Protocol,
        since: i64,
        bad: i64,
        error: &str,
    ) -> Result<(), String> {
        let hidden = unreadable::read_back(
            client,
            protocol,
            self.label(),
            since,
            bad,
            self.opts.attachments,
            self.opts.catchup_page,
        )
        .await?;
        if !hidden.is_empty() {
            tracing::info!(account = %self.label(),
                "read back {} message(s) between rowid {since} and {bad} from messages.history: the reads that failed on rowid {bad} held them", hidden.len());
        }
        for m in hidden {
            self.hand_over(m).await;
        }
        tracing::error!(account = %self.label(), rowid = bad,
            "SKIPPING rowid {bad}: imsg cannot read it ({error}); it will not be answered");
        self.emit(SupervisorEvent::Unreadable {
            rowid: bad,
            error: error.to_string(),
        })
        .await;
        self.emit(SupervisorEvent::Position(bad)).await;
        self.advance(bad);
        Ok(())
    }

    /// Returns a new subscription id when the stream had to be restarted.
    async fn on_notification(
        &mut self,
        client: &Client,
        notes: &mut Notifications,
        protocol: Protocol,
        subscription: i64,
        note: Notification,
    ) -> Result<Option<i64>, String> {
        let sub_of = |p: &Value| p.get("subscription").and_then(Value::as_i64);
        match note.method.as_str() {
            "message" => {
                if sub_of(&note.params).is_some_and(|s| s != subscription) {
                    tracing::debug!(account = %self.label(), "message for an old subscription ignored");
                    return Ok(None);
                }
                let mut params = note.params;
                let Some(msg) = params.get_mut("message").map(Value::take) else {
                    tracing::debug!(account = %self.label(), "message notification without a message ignored");
                    return Ok(None);
                };
                self.hand_over(msg).await;
                Ok(None)
            }
            "watch.overflow" => {
                if sub_of(&note.params).is_some_and(|s| s != subscription) {
                    return Ok(None);
                }
                let known = self.resume_point().unwrap_or(0);
                let resume = note
                    .params
                    .get("resume_after_rowid")
                    .and_then(Value::as_i64)
                    .unwrap_or(known);
                tracing::warn!(account = %self.label(), resume_after_rowid = resume, "watch overflowed; catching up");
                // Replay from the overflow point (never skip); the journal drops what we had.
                let from = if resume > 0 { resume } else { known };
                self.resume(client, protocol, Some(from)).await.map(Some)
            }
            "error" => {
                if sub_of(&note.params).is_some_and(|s| s != subscription) {
                    return Ok(None);
                }
                tracing::warn!(account = %self.label(), "watch error: {}; re-subscribing", note.params);
                if protocol == Protocol::Legacy {
                    let error = note
                        .params
                        .pointer("/error/message")
                        .and_then(Value::as_str)
                        .unwrap_or("no detail");
                    self.step_over_legacy(client, notes, error).await?;
                }
                let from = self.resume_point();
                self.resume(client, protocol, from).await.map(Some)
            }
            other => {
                tracing::debug!(account = %self.label(), "ignoring notification {other}");
                Ok(None)
            }
        }
    }
}

/// The rowid to watch from when there is no cursor yet: the newest row now. v1 estimates it
/// from the most recent chats, then walks `messages.after` to the exact end; legacy (no
/// `messages.after`) uses the estimate, and the journal and skip rules absorb the few rows
/// an estimate can replay.
async fn find_tail(client: &Client, protocol: Protocol) -> Result<i64, String> {
    let (estimate, _) = newest_rowid(client, protocol)
        .await
        .ok_or_else(|| "chats.list/messages.history did not answer".to_string())?;
    if protocol != Protocol::V1 {
        return Ok(estimate);
    }
    let mut since = estimate;
    for _ in 0..10_000 {
        let page = client
            .call(
                protocol,
                &Request::After {
                    since_rowid: since,
                    limit: 500,
                    attachments: false,
                },
            )
            .await;
        let page = match page {
            Ok(p) => Page::from_result(p),
            // An unreadable row near the tail: the catch-up that follows narrows it down.
            Err(e) if e.row_level() => return Ok(since),
            Err(e) => return Err(e.to_string()),
        };
        let next = page.next_rowid.unwrap_or(since).max(since);
        if !page.has_more || next == since {
            return Ok(next);
        }
        since = next;
    }
    Ok(since)
}

/// v1 only: whether the database still holds the cursor's row or anything after it, in which
/// case it was not replaced. This exact test runs before the `newest_rowid` heuristic, whose
/// date-ordered view can miss a late-synced row and rewind a healthy database (replaying
/// messages the gateway never journaled). Legacy has no `messages.after`: always `false`.
async fn cursor_row_exists(client: &Client, protocol: Protocol, cursor: i64) -> bool {
    if protocol != Protocol::V1 {
        return false;
    }
    let req = Request::After {
        since_rowid: cursor - 1,
        limit: 1,
        attachments: false,
    };
    match client.call(protocol, &req).await {
        Ok(page) => {
            let page = Page::from_result(page);
            // A page can be empty with has_more (coalesced preview rows): still rows after it.
            !page.messages.is_empty() || page.has_more
        }
        // imsg failed on a row it read there: there are rows.
        Err(e) if e.row_level() => true,
        Err(_) => false,
    }
}

/// The newest message rowid in the database, from the most recently active chats (imsg has
/// no "max rowid" method), and whether every one of them could be read. `Some((0, true))`
/// for a database without chats; `None` when unknown. A chat whose newest row imsg cannot
/// read is left out rather than ending the estimate (v1's walk to the end and both levels'
/// unreadable-row handling find that row later), which makes the figure a lower bound only.
async fn newest_rowid(client: &Client, protocol: Protocol) -> Option<(i64, bool)> {
    let chats = client
        .call(protocol, &Request::ChatsList { limit: 5 })
        .await
        .ok()?;
    let mut newest = 0;
    let mut complete = true;
    for (id, _) in ChatIds::from_result(&chats).0 {
        let req = Request::History {
            chat_id: id,
            limit: 1,
            attachments: false,
            end: None,
        };
        let page = match client.call(protocol, &req).await {
            Ok(p) => Page::from_result(p),
            Err(e) if e.row_level() => {
                tracing::warn!("the newest row of chat {id} is unreadable ({e}); the tail is estimated without it");
                complete = false;
                continue;
            }
            Err(_) => return None,
        };
        let first = page.rowids().next();
        if let Some(m) = first {
            newest = newest.max(m);
        }
    }
    Some((newest, complete))
}

fn health_probe(protocol: Protocol) -> Request {
    match protocol {
        Protocol::V1 => Request::Status,
        Protocol::Legacy => Request::ChatsList { limit: 1 },
    }
}
