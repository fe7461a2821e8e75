//! The running gateway: per account, a supervised `imsg rpc` child feeding one ordered ingest
//! loop (parse → journal check → skips and echo guard → access → route → journal `received` and
//! advance the cursor), then per-session workers (agent → plan → send each chunk → journal
//! `answered`). Messages of one session are answered strictly in order; sessions run
//! concurrently, bounded by `agent.maxConcurrency`.
//!
//! Never answering twice rests on the journal: a GUID is journaled before its cursor moves,
//! final states are never reopened, and a message found mid-send after a crash is marked
//! failed instead of being sent again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::access::{self, Decision};
use crate::agent::{Agent, Envelope};
use crate::config::{AccountConfig, Config};
use crate::imsg::supervisor::{self, wait_connected, CursorFn};
use crate::imsg::{sanitize_params, ConnectionSlot, SpawnSpec, SupervisorEvent, SupervisorOptions};
use crate::inbound::{self, EchoGuard, InboundMessage, SkipReason};
use crate::routing::{self, ReplyTarget};
use crate::state::{Inbound, JournalStatus, Store};

/// Run-time knobs that are not in the config file (tests shrink them).
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub healthy_after: Duration,
    pub health_interval: Duration,
    pub request_timeout: Duration,
    /// How long a reply waits for imsg to be (re)connected before it is given up.
    pub send_wait: Duration,
    /// DESIGN decision 6: how long a sent text is remembered to recognise its mirror.
    pub echo_window_ms: u64,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            healthy_after: Duration::from_secs(60),
            health_interval: Duration::from_secs(30),
            request_timeout: crate::imsg::DEFAULT_TIMEOUT,
            send_wait: Duration::from_secs(60),
            echo_window_ms: 10_000,
        }
    }
}

impl GatewayOptions {
    /// Defaults, overridden by `IMSG_GATEWAY_BACKOFF_MS`, `IMSG_GATEWAY_BACKOFF_MAX_MS` and
    /// `IMSG_GATEWAY_HEALTH_INTERVAL_MS`, `IMSG_GATEWAY_REQUEST_TIMEOUT_MS` (for test harnesses).
    pub fn from_env() -> Self {
        let mut o = GatewayOptions::default();
        let ms = |k: &str| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_millis)
        };
        if let Some(d) = ms("IMSG_GATEWAY_BACKOFF_MS") {
            o.backoff_initial = d;
        }
        if let Some(d) = ms("IMSG_GATEWAY_BACKOFF_MAX_MS") {
            o.backoff_max = d;
        }
        if let Some(d) = ms("IMSG_GATEWAY_HEALTH_INTERVAL_MS") {
            o.health_interval = d;
        }
        if let Some(d) = ms("IMSG_GATEWAY_REQUEST_TIMEOUT_MS") {
            o.request_timeout = d;
        }
        o
    }
}

/// How long handled GUIDs are remembered.
const JOURNAL_KEEP_DAYS: i64 = 30;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Runs every enabled account until `shutdown` turns true.
pub async fn run(
    config: Config,
    opts: GatewayOptions,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let store = Store::open(&config.state_dir)?;
    tracing::info!("state: {}", store.path().display());
    // libphonenumber's metadata loads on first use (about half a second in a debug build);
    // pay for it while imsg starts, not while the first person to write waits for a reply.
    let regions: Vec<String> = config.accounts.iter().map(|a| a.region.clone()).collect();
    tokio::task::spawn_blocking(move || {
        for region in regions {
            crate::outbound::normalize_handle("+1 415 555 0100", &region);
        }
    });
    // Rows older than this are far beyond any replay (restart, overflow, catch-up).
    let cutoff = (chrono::Utc::now() - chrono::Duration::days(JOURNAL_KEEP_DAYS))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    match store.prune(&cutoff) {
        Ok(0) => {}
        Ok(n) => tracing::info!("forgot {n} journal entries older than {JOURNAL_KEEP_DAYS} days"),
        Err(e) => tracing::warn!("pruning the journal failed: {e}"),
    }
    let store = Arc::new(Mutex::new(store));
    let agent = Arc::new(Agent::from_config(&config.agent));
    let permits = Arc::new(Semaphore::new(config.agent_max_concurrency.max(1)));
    let mut tasks = Vec::new();
    for account in config.accounts.iter().filter(|a| a.enabled) {
        let acct = AccountRuntime {
            account: Arc::new(account.clone()),
            store: store.clone(),
            agent: agent.clone(),
            permits: permits.clone(),
            echo: Arc::new(Mutex::new(EchoGuard::new(opts.echo_window_ms))),
            opts: opts.clone(),
        };
        tasks.push(tokio::spawn(acct.run(shutdown.clone())));
    }
    if tasks.is_empty() {
        anyhow::bail!("no enabled iMessage account in the config");
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

struct AccountRuntime {
    account: Arc<AccountConfig>,
    store: Arc<Mutex<Store>>,
    agent: Arc<Agent>,
    permits: Arc<Semaphore>,
    echo: Arc<Mutex<EchoGuard>>,
    opts: GatewayOptions,
}

/// One admitted message on its way to the agent.
struct Job {
    key: String,
    msg: InboundMessage,
    raw: Value,
    session: String,
    target: ReplyTarget,
}

impl AccountRuntime {
    fn id(&self) -> &str {
        &self.account.id
    }

    /// Every store access goes through here, so no lock guard outlives its statement (a
    /// second `lock()` on the same thread would deadlock the runtime).
    fn db<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let mut guard = self.store.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    async fn run(self, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let self_ = Arc::new(self);
        let spec = SpawnSpec {
            cli_path: self_.account.cli_path.clone(),
            db_path: self_.account.db_path.clone(),
            label: self_.account.id.clone(),
            request_timeout: self_.opts.request_timeout,
        };
        let mut sopts = SupervisorOptions::new(spec);
        sopts.backoff_initial = self_.opts.backoff_initial;
        sopts.backoff_max = self_.opts.backoff_max;
        sopts.healthy_after = self_.opts.healthy_after;
        sopts.health_interval = self_.opts.health_interval;
        sopts.health_timeout = self_.opts.request_timeout;
        sopts.attachments = self_.account.include_attachments;
        let cursor: CursorFn = {
            let store = self_.store.clone();
            let id = self_.account.id.clone();
            Arc::new(move || {
                let cursor = store.lock().unwrap().cursor(&id);
                match cursor {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(account = %id, "reading the cursor failed: {e}");
                        0
                    }
                }
            })
        };
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
        let (slot_tx, slot_rx) = watch::channel(None);
        let sup = tokio::spawn(supervisor::run(sopts, cursor, ev_tx, slot_tx, shutdown));

        let mut sessions: HashMap<String, mpsc::UnboundedSender<Job>> = HashMap::new();
        self_.resume_pending(&mut sessions, &slot_rx)?;
        while let Some(ev) = ev_rx.recv().await {
            match ev {
                SupervisorEvent::Message(raw) => self_.ingest(raw, &mut sessions, &slot_rx)?,
                SupervisorEvent::Rewind(rowid) => {
                    self_.db(|s| s.reset_cursor(self_.id(), rowid))?
                }
                SupervisorEvent::Position(rowid) => {
                    self_.db(|s| s.set_cursor(self_.id(), rowid))?
                }
                SupervisorEvent::Connected { protocol, version } => tracing::info!(
                    account = %self_.id(),
                    "connected to imsg {} (protocol {})",
                    version.as_deref().unwrap_or("(version unknown)"),
                    protocol.label()
                ),
                SupervisorEvent::Disconnected { reason } => {
                    tracing::warn!(account = %self_.id(), "imsg disconnected: {reason}")
                }
            }
        }
        let _ = sup.await;
        Ok(())
    }

    /// After a restart: admitted-but-unanswered messages go back to their sessions; a
    /// message caught mid-send is failed rather than risk a second reply.
    fn resume_pending(
        self: &Arc<Self>,
        sessions: &mut HashMap<String, mpsc::UnboundedSender<Job>>,
        slot: &ConnectionSlot,
    ) -> anyhow::Result<()> {
        let (pending, interrupted) = {
            self.db(|s| -> anyhow::Result<_> {
                Ok((
                    s.pending(self.id())?,
                    s.entries_with(self.id(), JournalStatus::Answering)?,
                ))
            })?
        };
        for e in interrupted {
            tracing::warn!(account = %self.id(), guid = %e.guid,
                "the gateway stopped while sending this reply; not sending again (it may or may not have arrived)");
            self.db(|s| {
                s.mark(
                    self.id(),
                    &e.guid,
                    JournalStatus::Failed,
                    Some("interrupted while sending; not resent to avoid a duplicate"),
                )
            })?;
        }
        for e in pending {
            let parsed = e
                .payload
                .as_deref()
                .and_then(|p| serde_json::from_str::<Value>(p).ok())
                .and_then(|raw| inbound::parse_message(&raw).ok().map(|m| (m, raw)));
            let Some((msg, raw)) = parsed else {
                self.db(|s| {
                    s.mark(
                        self.id(),
                        &e.guid,
                        JournalStatus::Failed,
                        Some("journaled payload unreadable"),
                    )
                })?;
                continue;
            };
            let Some(target) = routing::reply_target(&msg) else {
                self.finish(&e.guid, JournalStatus::Skipped, Some("no reply target"));
                continue;
            };
            tracing::info!(account = %self.id(), guid = %e.guid, "resuming a message admitted before the restart");
            let session = routing::session_key(&msg);
            self.dispatch(
                Job {
                    key: e.guid.clone(),
                    msg,
                    raw,
                    session,
                    target,
                },
                sessions,
                slot,
            );
        }
        Ok(())
    }

    fn skip(&self, msg: &InboundMessage, key: &str, reason: &str) -> anyhow::Result<()> {
        tracing::debug!(account = %self.id(), guid = %key, rowid = msg.rowid, chat_id = ?msg.chat_id,
            "not answered: {reason}");
        self.db(|s| {
            s.record_inbound(&Inbound {
                account: self.id(),
                guid: key,
                rowid: Some(msg.rowid),
                chat_id: msg.chat_id,
                status: JournalStatus::Skipped,
                reason: Some(reason),
                payload: None,
            })
        })?;
        Ok(())
    }

    fn ingest(
        self: &Arc<Self>,
        raw: Value,
        sessions: &mut HashMap<String, mpsc::UnboundedSender<Job>>,
        slot: &ConnectionSlot,
    ) -> anyhow::Result<()> {
        let msg = match inbound::parse_message(&raw) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(account = %self.id(), "not answered: {e}");
                if let Some(id) = raw.get("id").and_then(Value::as_i64) {
                    self.db(|s| s.set_cursor(self.id(), id))?;
                }
                return Ok(());
            }
        };
        let key = journal_key(&msg);
        // Bound first: a guard in the `if let` scrutinee would live through the block below,
        // and locking the store again there would deadlock.
        let existing = self.db(|s| s.entry(self.id(), &key))?;
        if let Some(entry) = existing {
            tracing::debug!(account = %self.id(), guid = %key, "not answered: {} (journal: {})",
                SkipReason::AlreadyHandled, entry.status.as_str());
            self.db(|s| s.set_cursor(self.id(), msg.rowid))?;
            return Ok(());
        }
        if let Some(reason) = inbound::skip_reason(&msg) {
            return self.skip(&msg, &key, reason.as_str());
        }
        if self.echo.lock().unwrap().is_mirror(&msg, now_ms()) {
            return self.skip(&msg, &key, SkipReason::MirrorEcho.as_str());
        }
        if let Decision::Drop { reason } = access::decide(&msg, &self.account) {
            tracing::info!(account = %self.id(), guid = %key, sender = %msg.sender, "dropped: {reason}");
            return self.skip(&msg, &key, &format!("access: {reason}"));
        }
        let Some(target) = routing::reply_target(&msg) else {
            return self.skip(
                &msg,
                &key,
                "no reply target (no chat id, guid, identifier or sender)",
            );
        };
        let session = routing::session_key(&msg);
        let payload = raw.to_string();
        let fresh = self.db(|s| {
            s.record_inbound(&Inbound {
                account: self.id(),
                guid: &key,
                rowid: Some(msg.rowid),
                chat_id: msg.chat_id,
                status: JournalStatus::Received,
                reason: None,
                payload: Some(&payload),
            })
        })?;
        if !fresh {
            return Ok(());
        }
        tracing::info!(account = %self.id(), guid = %key, session = %session, sender = %msg.sender,
            "admitted message {}", msg.rowid);
        self.dispatch(
            Job {
                key,
                msg,
                raw,
                session,
                target,
            },
            sessions,
            slot,
        );
        Ok(())
    }

    fn dispatch(
        self: &Arc<Self>,
        job: Job,
        sessions: &mut HashMap<String, mpsc::UnboundedSender<Job>>,
        slot: &ConnectionSlot,
    ) {
        let session = job.session.clone();
        let job = match sessions.get(&session) {
            Some(tx) => match tx.send(job) {
                Ok(()) => return,
                Err(mpsc::error::SendError(job)) => job,
            },
            None => job,
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let me = self.clone();
        let slot = slot.clone();
        tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                let mut slot = slot.clone();
                me.answer(job, &mut slot).await;
            }
        });
        let _ = tx.send(job);
        sessions.insert(session, tx);
    }

    fn finish(&self, key: &str, status: JournalStatus, reason: Option<&str>) {
        if let Err(e) = self.db(|s| s.mark(self.id(), key, status, reason)) {
            tracing::error!(account = %self.id(), guid = %key, "journal update failed: {e}");
        }
    }

    async fn answer(&self, job: Job, slot: &mut ConnectionSlot) {
        let Ok(_permit) = self.permits.acquire().await else {
            return;
        };
        let env = Envelope::from_inbound(&job.msg, &job.raw, &self.account, &job.session, false);
        let reply = match self.agent.reply(&env).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                tracing::info!(account = %self.id(), guid = %job.key, "not answered: the agent gave no reply");
                return self.finish(
                    &job.key,
                    JournalStatus::Skipped,
                    Some("agent gave no reply"),
                );
            }
            Err(e) => {
                tracing::warn!(account = %self.id(), guid = %job.key, "not answered: {e}");
                return self.finish(&job.key, JournalStatus::Failed, Some(&e.to_string()));
            }
        };
        let plan = crate::outbound::plan_reply(&reply, &job.target, &self.account);
        if plan.is_empty() {
            tracing::info!(account = %self.id(), guid = %job.key, "not answered: the reply is empty after planning");
            return self.finish(&job.key, JournalStatus::Skipped, Some("empty reply"));
        }
        let Some(conn) = wait_connected(slot, self.opts.send_wait).await else {
            let why = format!(
                "imsg not connected for {} s; reply dropped",
                self.opts.send_wait.as_secs()
            );
            tracing::warn!(account = %self.id(), guid = %job.key, "not answered: {why}");
            return self.finish(&job.key, JournalStatus::Failed, Some(&why));
        };
        self.finish(&job.key, JournalStatus::Answering, None);
        let chat_id = match &job.target {
            ReplyTarget::ChatId(id) => Some(*id),
            _ => job.msg.chat_id,
        };
        let chunks = plan.len();
        for (i, params) in plan.into_iter().enumerate() {
            let text = params
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            // Recorded before sending too: the mirror can arrive before the send is acknowledged.
            self.echo
                .lock()
                .unwrap()
                .record_sent(chat_id, &text, None, now_ms());
            let params = sanitize_params(conn.protocol, "send", params);
            match conn.client.request("send", params).await {
                Ok(result) => {
                    let guid = sent_guid(&result);
                    self.echo.lock().unwrap().record_sent(
                        chat_id,
                        &text,
                        guid.as_deref(),
                        now_ms(),
                    );
                }
                Err(e) => {
                    if lane_blocked(&e) {
                        tracing::warn!(account = %self.id(), "imsg's mutation lane is blocked; restarting the child");
                        conn.request_restart();
                    }
                    let why = format!(
                        "send of chunk {}/{chunks} failed: {e}{}",
                        i + 1,
                        if e.outcome_unknown() {
                            " (delivery outcome unknown; not retried)"
                        } else {
                            ""
                        }
                    );
                    tracing::warn!(account = %self.id(), guid = %job.key, "{why}");
                    return self.finish(&job.key, JournalStatus::Failed, Some(&why));
                }
            }
        }
        tracing::info!(account = %self.id(), guid = %job.key, "answered in {chunks} chunk(s)");
        self.finish(&job.key, JournalStatus::Answered, None);
    }
}

/// The journal key: the message GUID, or the rowid on schemas without GUIDs.
pub fn journal_key(msg: &InboundMessage) -> String {
    let g = msg.guid.trim();
    if g.is_empty() {
        format!("rowid:{}", msg.rowid)
    } else {
        g.to_string()
    }
}

/// The GUID of a sent message from a `send` result (`guid`, then string `message_id`).
pub fn sent_guid(result: &Value) -> Option<String> {
    ["guid", "message_id"].iter().find_map(|k| {
        result
            .get(*k)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(String::from)
    })
}

/// `-32004`, or a `-32001` whose send is still in flight: every later send on this child
/// fails until it is restarted (imsg-rpc-v1 §1.7, §6.6).
fn lane_blocked(e: &crate::imsg::RpcError) -> bool {
    use crate::imsg::client::{DELIVERY_OUTCOME_UNKNOWN, MUTATION_LANE_BLOCKED};
    match e {
        crate::imsg::RpcError::Remote { code, data, .. } => {
            *code == MUTATION_LANE_BLOCKED
                || (*code == DELIVERY_OUTCOME_UNKNOWN
                    && data
                        .as_ref()
                        .and_then(|d| d.get("disposition"))
                        .and_then(Value::as_str)
                        == Some("still_in_flight"))
        }
        _ => false,
    }
}
