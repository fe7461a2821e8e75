//! The running gateway: per account, a supervised imsg connection feeding one ordered ingest
//! loop (parse → journal check → skips and echo guard → access → route → journal `received` and
//! advance the cursor), then per-session workers (agent → plan → journal the plan as
//! `answering` → send each chunk, journaling each acknowledgement → `answered`). Messages of
//! one session are answered strictly in order; sessions run concurrently, bounded by
//! `agent.maxConcurrency` (the permit covers the agent only, never a wait for imsg).
//!
//! Nothing is given up while it can still be delivered (DESIGN decision 10): a chunk that never
//! reached imsg waits for the next connection, however long imsg is away; a chunk whose
//! outcome is unknown because the connection died under it, or because the gateway itself
//! died, is looked up in the chat's history before it is sent again. Only `-32001` and a
//! refusal that will not change are final, each logged with why.
//!
//! Never answering twice rests on the journal: a GUID is journaled before its cursor moves,
//! final states are never reopened, and the chunks already acknowledged are never resent.
//! The store runs off the runtime's workers ([`Db`], one drain on the blocking pool), so
//! SQLite never stalls the runtime, writes that arrive together are committed together, and a busy database is waited for rather
//! than fatal.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use crate::access::pairing::{pairing_message, random_code};
use crate::access::{self, Decision, GroupContext, Policy, SkipKind, SkipLog};
use crate::agent::{Agent, ContextMessage, Envelope};
use crate::clock::{Clock, SystemClock};
use crate::config::{AccountConfig, Config};
use crate::imsg::protocol::{ErrorCode, Page, Request, SendReceipt};
use crate::imsg::supervisor::{self, Credit};
use crate::imsg::{
    Connection, ConnectionSlot, Connector, ProcessConnector, ReadError, RpcError, SpawnSpec,
    SupervisorEvent, SupervisorOptions,
};
use crate::inbound::{self, EchoGuard, InboundMessage, SkipReason};
use crate::outbound::{SendParams, Target};
use crate::routing;
use crate::state::{
    iso_ms, Db, DirLock, HealthEvent, Inbound, JournalEntry, JournalStatus, PairJournal,
    StateError, Store, Upsert,
};

/// Run-time knobs that are not in the config file: production uses the defaults, in-process
/// tests set the fields (no environment variable changes them).
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub healthy_after: Duration,
    pub health_interval: Duration,
    pub request_timeout: Duration,
    /// DESIGN decision 6: how long a sent text is remembered to recognise its mirror.
    pub echo_window_ms: u64,
    /// Backoff of a send imsg asked us to retry (busy, database unavailable).
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// The wall clock (the echo window, pairing expiry, log throttling); timers are tokio's.
    pub clock: Arc<dyn Clock>,
    /// How often the outbox (messages the CLI asks the running gateway to send) is checked.
    pub outbox_interval: Duration,
    /// Repeated "not answered" lines of one chat for one reason: at most one per interval.
    pub skip_log_interval_ms: u64,
    /// Where pairing codes come from: the OS CSPRNG in production; the simulator's scripted
    /// runs use a fixed sequence so their transcripts can be compared.
    pub pairing_codes: PairingCodes,
}

/// A source of pairing codes (see [`GatewayOptions::pairing_codes`]).
#[derive(Clone)]
pub struct PairingCodes(pub Arc<dyn Fn() -> String + Send + Sync>);

impl std::fmt::Debug for PairingCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PairingCodes")
    }
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            healthy_after: Duration::from_secs(60),
            health_interval: Duration::from_secs(30),
            request_timeout: crate::imsg::DEFAULT_TIMEOUT,
            echo_window_ms: 10_000,
            retry_initial: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
            clock: Arc::new(SystemClock),
            outbox_interval: Duration::from_millis(500),
            skip_log_interval_ms: 60_000,
            pairing_codes: PairingCodes(Arc::new(random_code)),
        }
    }
}

/// Opens an account's imsg: a child process in production, an in-memory imsg in tests.
pub type ConnectorFor =
    Arc<dyn Fn(&AccountConfig, &GatewayOptions) -> Arc<dyn Connector> + Send + Sync>;

/// `<cliPath> rpc [--db <dbPath>]` per connection.
pub fn process_connector() -> ConnectorFor {
    Arc::new(|account: &AccountConfig, opts: &GatewayOptions| {
        Arc::new(ProcessConnector {
            spec: SpawnSpec {
                cli_path: account.cli_path.clone(),
                db_path: account.db_path.clone(),
                label: account.id.clone(),
                request_timeout: opts.request_timeout,
            },
        }) as Arc<dyn Connector>
    })
}

/// How long handled GUIDs are remembered.
const JOURNAL_KEEP_DAYS: i64 = 30;
/// Most messages ingested (looked up and journaled) in one transaction.
const INGEST_BATCH: usize = 256;
/// Replies of one session planned ahead of the one being sent.
const SESSION_LOOKAHEAD: usize = 64;
/// Plans a session's sending stage keeps committed or on their way to the disk ahead of
/// itself: a commit takes a few sends' time, so at half the lookahead none waits for one.
const PLAN_RUNWAY: u64 = SESSION_LOOKAHEAD as u64 / 2;
/// How many recent rows of a chat are searched for a chunk whose delivery is unknown.
const RECONCILE_HISTORY: u32 = 100;

/// Runs every enabled account until `shutdown` turns true, each with its own imsg child.
pub async fn run(
    config: Config,
    opts: GatewayOptions,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    run_with(config, opts, process_connector(), shutdown).await
}

/// [`run`], with the imsg connections opened by `connect`.
pub async fn run_with(
    config: Config,
    opts: GatewayOptions,
    connect: ConnectorFor,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let lock = DirLock::acquire(&config.state_dir)?;
    let mut store = Store::open(&config.state_dir)?;
    store.use_clock(opts.clock.clone());
    tracing::info!(
        "state: {} (lock {})",
        store.path().display(),
        lock.path().display()
    );
    // libphonenumber's metadata loads on first use (about half a second in a debug build);
    // pay for it while imsg starts, not while the first person to write waits for a reply.
    // A thread of its own, not the blocking pool: the runtime waits for the pool's tasks
    // when it is dropped, so a SIGTERM right after start waited for the load (seconds on a
    // loaded machine) before the process could exit.
    let regions: Vec<String> = config.accounts.iter().map(|a| a.region.clone()).collect();
    let _ = std::thread::Builder::new()
        .name("phone-metadata".into())
        .spawn(move || {
            for region in regions {
                crate::outbound::normalize_handle("+1 415 555 0100", &region);
            }
        });
    // Rows older than this are far beyond any replay (restart, overflow, catch-up).
    let keep_ms = JOURNAL_KEEP_DAYS as u64 * 24 * 3600 * 1000;
    let cutoff = crate::clock::rfc3339_ms(opts.clock.now_ms().saturating_sub(keep_ms) as i64);
    match store.prune(&cutoff) {
        Ok(0) => {}
        Ok(n) => tracing::info!("forgot {n} journal entries older than {JOURNAL_KEEP_DAYS} days"),
        Err(e) => tracing::warn!("pruning the journal failed: {e}"),
    }
    let db = Db::new(store);
    let agent = Arc::new(Agent::from_config(&config.agent));
    let permits = Arc::new(Semaphore::new(config.agent_max_concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for account in config.accounts.iter().filter(|a| a.enabled) {
        let shared = AccountShared {
            account: Arc::new(account.clone()),
            db: db.clone(),
            agent: agent.clone(),
            permits: permits.clone(),
            opts: opts.clone(),
            connector: connect(account, &opts),
            state_dir: config.state_dir.clone(),
        };
        tasks.spawn(supervise_account(shared, shutdown.clone()));
    }
    if tasks.is_empty() {
        anyhow::bail!("no enabled iMessage account in the config");
    }
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tasks.abort_all();
                return Err(e);
            }
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => {}
        }
    }
    // Writes nobody waited for (acknowledgements, final outcomes) are on disk before the
    // lock is let go and the process exits.
    db.flush().await?;
    drop(lock);
    Ok(())
}

/// What every incarnation of one account's runtime shares.
#[derive(Clone)]
struct AccountShared {
    account: Arc<AccountConfig>,
    db: Db,
    agent: Arc<Agent>,
    permits: Arc<Semaphore>,
    opts: GatewayOptions,
    connector: Arc<dyn Connector>,
    state_dir: std::path::PathBuf,
}

/// Runs one account, restarting it with backoff when it fails for any reason but an
/// unusable state store, which stops the gateway (nothing can be promised without it).
async fn supervise_account(
    shared: AccountShared,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let id = shared.account.id.clone();
    let mut backoff = shared.opts.backoff_initial;
    loop {
        let started = tokio::time::Instant::now();
        let run = tokio::spawn(AccountRuntime::start(shared.clone(), shutdown.clone()));
        let why = match run.await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => {
                if e.downcast_ref::<StateError>().is_some() {
                    return Err(e.context(format!("account {id}: the state store is unusable")));
                }
                format!("{e:#}")
            }
            Err(e) if e.is_panic() => {
                let p = e.into_panic();
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into())
            }
            Err(e) => e.to_string(),
        };
        if *shutdown.borrow() {
            return Ok(());
        }
        // A failure after a healthy stretch is a new one, not the next in a loop.
        if started.elapsed() >= shared.opts.healthy_after {
            backoff = shared.opts.backoff_initial;
        }
        tracing::error!(account = %id, "account failed: {why}; restarting it in {} ms", backoff.as_millis());
        if supervisor::sleep_or_shutdown(backoff, &mut shutdown.clone()).await {
            return Ok(());
        }
        backoff = (backoff * 2).min(shared.opts.backoff_max);
    }
}

struct AccountRuntime {
    account: Arc<AccountConfig>,
    db: Db,
    agent: Arc<Agent>,
    permits: Arc<Semaphore>,
    echo: Mutex<EchoGuard>,
    /// The account's access settings, compiled once.
    policy: Policy,
    /// Unanswered group messages, for the next mention (memory only).
    context: Mutex<GroupContext<ContextMessage>>,
    skips: Mutex<SkipLog>,
    /// Where inbound attachments are copied from (imsg on another Mac), if anywhere.
    remote_host: Option<String>,
    state_dir: std::path::PathBuf,
    opts: GatewayOptions,
    cursor: watch::Sender<Option<i64>>,
    /// No inbound message above this rowid is journaled (every rowid ingested or journaled
    /// raises it), so a message above it needs no journal read to be known fresh.
    journaled_upto: AtomicI64,
    shutdown: watch::Receiver<bool>,
}

/// An ingested batch whose journal commit is on its way: once it lands, the cursor it
/// moved is published.
struct Recording {
    commit:
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<bool>, StateError>> + Send>>,
    top: Option<i64>,
}

/// Batches whose commits the ingest does not wait for before taking the next one; past
/// this it waits.
const MAX_RECORDING: usize = 64;

/// One message on its way to its chat.
struct Job {
    key: String,
    session: String,
    work: Work,
    /// The inbound message's share of the in-flight budget, held until its reply is sent
    /// (`None` for the gateway's own messages and resumed ones: the journal bounds those).
    credit: Option<Credit>,
}

enum Work {
    /// Admitted, the agent has not answered yet.
    Ask {
        msg: Box<InboundMessage>,
        target: Target,
        was_mentioned: bool,
        /// Earlier unanswered messages of the group, oldest first.
        context: Vec<ContextMessage>,
    },
    /// The reply is planned (and journaled); some chunks may be out already.
    Deliver(Delivery),
}

struct Delivery {
    /// `send` params, one per chunk, as planned.
    plan: Vec<SendParams>,
    /// The first chunk not known to be delivered.
    next: usize,
    /// Whether `next` may have been delivered already (a connection or the gateway died
    /// while it was being sent): the chat's history decides before it is sent again.
    uncertain: bool,
    /// The chat to search, and the rowid the reply must come after.
    chat_id: Option<i64>,
    after_rowid: i64,
}

/// The commit of a reply's plan: whether it moved to `answering`.
type Journaled = crate::state::Later<bool>;

/// A reply planned and submitted to the journal, on its way to the sending stage.
struct Ready {
    key: String,
    delivery: Delivery,
    /// Whether the plan was journaled (`begin_answer`); `None` when it was before (a resumed
    /// or queued delivery).
    journaled: Option<Journaled>,
    /// Released once the reply is sent.
    credit: Option<Credit>,
}

/// A session's worker: its queue and how many jobs are queued or running.
struct SessionTx {
    tx: mpsc::UnboundedSender<Job>,
    inflight: Arc<AtomicUsize>,
}

type Sessions = HashMap<String, SessionTx>;

impl AccountRuntime {
    fn id(&self) -> &str {
        &self.account.id
    }

    async fn start(shared: AccountShared, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let id = shared.account.id.clone();
        let (durable, journaled_upto) = shared
            .db
            .call({
                let id = id.clone();
                move |s| {
                    s.record_health(&id, &HealthEvent::Started)?;
                    Ok((s.cursor_opt(&id)?, s.max_journaled_rowid(&id)?))
                }
            })
            .await?;
        let (cursor_tx, cursor_rx) = watch::channel(durable);
        let me = Arc::new(AccountRuntime {
            account: shared.account.clone(),
            db: shared.db.clone(),
            agent: shared.agent.clone(),
            permits: shared.permits.clone(),
            echo: Mutex::new(EchoGuard::new(shared.opts.echo_window_ms)),
            policy: Policy::new(&shared.account),
            context: Mutex::new(GroupContext::new(shared.account.history_limit)),
            skips: Mutex::new(SkipLog::new(shared.opts.skip_log_interval_ms)),
            remote_host: crate::attachments::remote_host_for(
                shared.account.remote_host.as_deref(),
                &shared.account.cli_path,
            ),
            state_dir: shared.state_dir.clone(),
            opts: shared.opts.clone(),
            cursor: cursor_tx,
            journaled_upto: AtomicI64::new(journaled_upto),
            shutdown: shutdown.clone(),
        });
        if let Some(h) = &me.remote_host {
            tracing::info!(account = %id, "imsg runs on {h}: inbound attachments are copied from there with scp");
        }
        let mut sopts = SupervisorOptions::new(&id);
        sopts.request_timeout = me.opts.request_timeout;
        sopts.backoff_initial = me.opts.backoff_initial;
        sopts.backoff_max = me.opts.backoff_max;
        sopts.healthy_after = me.opts.healthy_after;
        sopts.health_interval = me.opts.health_interval;
        sopts.health_timeout = me.opts.request_timeout;
        // Always: an attachment-only message needs its attachments' kinds for the placeholder;
        // includeAttachments decides only whether paths are handed to the agent.
        sopts.attachments = true;
        let (ev_tx, mut ev_rx) = mpsc::channel(supervisor::EVENT_QUEUE);
        let (slot_tx, slot_rx) = watch::channel(None);
        // The supervisor is aborted if this runtime fails, so a restarted account never has
        // two imsg children.
        let mut sup = AbortOnDrop(tokio::spawn(supervisor::run(
            sopts,
            shared.connector.clone(),
            cursor_rx,
            ev_tx,
            slot_tx,
            shutdown,
        )));

        let mut sessions: Sessions = HashMap::new();
        me.resume_pending(&mut sessions, &slot_rx).await?;
        // Messages that arrived together are ingested together: one read and one commit
        // for the lot (a catch-up page, a burst), other events in their place in the order.
        let mut pending: Vec<(Value, Credit)> = Vec::new();
        let mut outbox = tokio::time::interval(me.opts.outbox_interval);
        outbox.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Ingested batches whose commits are on their way, oldest first.
        let mut recording: std::collections::VecDeque<Recording> = Default::default();
        loop {
            let first = tokio::select! {
                ev = ev_rx.recv() => match ev {
                    Some(ev) => ev,
                    None => break,
                },
                _ = outbox.tick() => {
                    me.claim_outbox(&mut sessions, &slot_rx).await?;
                    continue;
                }
                fresh = async { recording.front_mut().map(|r| r.commit.as_mut()).unwrap().await },
                    if !recording.is_empty() =>
                {
                    let r = recording.pop_front().expect("a batch is recording");
                    me.recorded(&fresh?, r.top);
                    continue;
                }
            };
            let mut batch = vec![first];
            while batch.len() < INGEST_BATCH {
                match ev_rx.try_recv() {
                    Ok(ev) => batch.push(ev),
                    Err(_) => break,
                }
            }
            for ev in batch {
                let ev = match ev {
                    SupervisorEvent::Message(raw, credit) => {
                        pending.push((raw, credit));
                        continue;
                    }
                    other => other,
                };
                recording.extend(
                    me.ingest(std::mem::take(&mut pending), &mut sessions, &slot_rx)
                        .await?,
                );
                // The cursor of every batch before the event is published first: a rewind
                // must not be overtaken by an older batch's position.
                me.settle(&mut recording).await?;
                me.on_event(ev).await?;
            }
            recording.extend(
                me.ingest(std::mem::take(&mut pending), &mut sessions, &slot_rx)
                    .await?,
            );
            if recording.len() >= MAX_RECORDING {
                me.settle(&mut recording).await?;
            }
        }
        me.settle(&mut recording).await?;
        // The supervisor ends only at shutdown: anything else is a failure of the account,
        // which is restarted, never an account that quietly stops answering.
        match (&mut sup.0).await {
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            _ if !*me.shutdown.borrow() => anyhow::bail!("imsg's supervisor stopped"),
            _ => Ok(()),
        }
    }

    /// Commits every batch still recording and publishes their cursors, in order.
    async fn settle(
        &self,
        recording: &mut std::collections::VecDeque<Recording>,
    ) -> anyhow::Result<()> {
        if recording.is_empty() {
            return Ok(());
        }
        self.db.flush().await?;
        while let Some(r) = recording.pop_front() {
            let fresh = r.commit.await?;
            self.recorded(&fresh, r.top);
        }
        Ok(())
    }

    /// A batch's journal commit landed: its cursor is durable.
    fn recorded(&self, fresh: &[bool], top: Option<i64>) {
        if let Some(n) = fresh.iter().position(|f| !f) {
            // Cannot happen while one gateway holds the state dir; the begin_answer check
            // keeps such a reply from being sent twice regardless.
            tracing::warn!(account = %self.id(), "message {n} of a batch was journaled meanwhile by someone else");
        }
        if let Some(t) = top {
            self.cursor_moved(t);
        }
    }

    async fn on_event(&self, ev: SupervisorEvent) -> anyhow::Result<()> {
        match ev {
            SupervisorEvent::Message(..) => unreachable!("messages are ingested in batches"),
            SupervisorEvent::Rewind(rowid) => {
                let id = self.id().to_string();
                self.db.call(move |s| s.reset_cursor(&id, rowid)).await?;
                self.cursor.send_replace(Some(rowid));
            }
            SupervisorEvent::Position(rowid) => self.set_cursor(rowid).await?,
            SupervisorEvent::Unreadable { rowid, error } => self.unreadable(rowid, &error).await?,
            SupervisorEvent::Connected { protocol, version } => {
                tracing::info!(
                    account = %self.id(),
                    "connected to imsg {} (protocol {})",
                    version.as_deref().unwrap_or("(version unknown)"),
                    protocol.label()
                );
                self.health(HealthEvent::Connected).await?;
            }
            SupervisorEvent::Stable => self.health(HealthEvent::Stable).await?,
            SupervisorEvent::Disconnected { reason } => {
                tracing::warn!(account = %self.id(), "imsg disconnected: {reason}");
                let id = self.id().to_string();
                self.db
                    .call(move |s| s.record_health(&id, &HealthEvent::Failed(&reason)))
                    .await?;
            }
        }
        Ok(())
    }

    async fn health(&self, ev: HealthEvent<'static>) -> Result<(), StateError> {
        let id = self.id().to_string();
        self.db.call(move |s| s.record_health(&id, &ev)).await
    }

    /// The cursor moved in the store (never back): tell the supervisor.
    fn cursor_moved(&self, rowid: i64) {
        self.cursor.send_if_modified(|c| match c {
            Some(cur) if *cur >= rowid => false,
            _ => {
                *c = Some(rowid);
                true
            }
        });
    }

    async fn set_cursor(&self, rowid: i64) -> Result<(), StateError> {
        let id = self.id().to_string();
        self.db.call(move |s| s.set_cursor(&id, rowid)).await?;
        self.cursor_moved(rowid);
        Ok(())
    }

    async fn unreadable(&self, rowid: i64, error: &str) -> Result<(), StateError> {
        let id = self.id().to_string();
        let reason = format!("unreadable: imsg cannot read this row ({error}); skipped");
        let error = error.to_string();
        self.journaled_upto.fetch_max(rowid, Ordering::Relaxed);
        self.db
            .call(move |s| {
                s.record_health(
                    &id,
                    &HealthEvent::Skipped {
                        rowid,
                        error: &error,
                    },
                )?;
                s.record_inbound(&Inbound {
                    account: &id,
                    guid: &format!("rowid:{rowid}"),
                    rowid: Some(rowid),
                    chat_id: None,
                    status: JournalStatus::Skipped,
                    reason: Some(&reason),
                    payload: None,
                })
            })
            .await?;
        self.cursor_moved(rowid);
        Ok(())
    }

    /// After a restart: admitted-but-unanswered messages go back to their sessions, and a
    /// reply caught mid-send continues after its chunks are reconciled with the chat's history.
    async fn resume_pending(
        self: &Arc<Self>,
        sessions: &mut Sessions,
        slot: &ConnectionSlot,
    ) -> anyhow::Result<()> {
        let id = self.id().to_string();
        let (mut entries, interrupted) = self
            .db
            .call(move |s| {
                Ok((
                    s.pending(&id)?,
                    s.entries_with(&id, JournalStatus::Answering)?,
                ))
            })
            .await?;
        entries.extend(interrupted);
        entries.sort_by_key(|e| e.rowid);
        for e in entries {
            match self.resumed_job(&e) {
                Ok(job) => self.dispatch(job, sessions, slot),
                Err(why) => {
                    tracing::warn!(account = %self.id(), guid = %e.guid, "not resumed after the restart: {why}");
                    self.finish(&e.guid, JournalStatus::Failed, Some(&why));
                }
            }
        }
        Ok(())
    }

    fn resumed_job(&self, e: &JournalEntry) -> Result<Job, String> {
        let parsed = e
            .payload
            .as_deref()
            .and_then(|p| serde_json::from_str::<Value>(p).ok())
            .and_then(|raw| inbound::parse_message(&raw).ok());
        if parsed.is_none() && e.status == JournalStatus::Answering {
            // A reply of the gateway's own (a pairing code, a CLI notification): no inbound
            // payload, only the plan.
            return Ok(Job {
                key: e.guid.clone(),
                session: format!("own:{}", e.guid),
                work: Work::Deliver(self.interrupted(
                    e,
                    "a message",
                    e.chat_id,
                    e.rowid.unwrap_or(0),
                )?),
                credit: None,
            });
        }
        let Some(mut msg) = parsed else {
            return Err("journaled payload unreadable".into());
        };
        msg.is_group = self.policy.is_group(&msg);
        let session = routing::session_key(&msg);
        let work = if e.status == JournalStatus::Answering {
            Work::Deliver(self.interrupted(e, "a reply", e.chat_id.or(msg.chat_id), msg.rowid)?)
        } else {
            let target = routing::reply_target(&msg).ok_or("no reply target")?;
            tracing::info!(account = %self.id(), guid = %e.guid, "resuming a message admitted before the restart");
            Work::Ask {
                was_mentioned: self.policy.mentioned(&msg),
                msg: Box::new(msg),
                target,
                // Context is memory only: a restart costs it, never the message.
                context: Vec::new(),
            }
        };
        Ok(Job {
            key: e.guid.clone(),
            session,
            work,
            credit: None,
        })
    }

    /// A reply caught mid-send by the restart: it continues from its next chunk, after that
    /// chunk is looked up in the chat's history.
    fn interrupted(
        &self,
        e: &JournalEntry,
        what: &str,
        chat_id: Option<i64>,
        after_rowid: i64,
    ) -> Result<Delivery, String> {
        let plan: Vec<SendParams> = e
            .plan
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok())
            .ok_or("interrupted while sending, with no journaled plan to reconcile; not resent to avoid a duplicate")?;
        let next = (e.sent.max(0) as usize).min(plan.len());
        tracing::info!(account = %self.id(), guid = %e.guid,
            "resuming {what} interrupted by the restart: {next} of {} chunk(s) acknowledged; checking the chat's history before sending more", plan.len());
        Ok(Delivery {
            plan,
            next,
            uncertain: true,
            chat_id,
            after_rowid,
        })
    }

    async fn ingest(
        self: &Arc<Self>,
        raws: Vec<(Value, Credit)>,
        sessions: &mut Sessions,
        slot: &ConnectionSlot,
    ) -> anyhow::Result<Option<Recording>> {
        if raws.is_empty() {
            return Ok(None);
        }
        // Rows seen but not journaled (unparsable, from me, already handled) still move the
        // cursor.
        let mut cursor: Option<i64> = None;
        let mut parsed = Vec::with_capacity(raws.len());
        for (raw, credit) in raws {
            match inbound::parse_message(&raw) {
                Ok(m) if m.is_from_me => {
                    // Never answered, so there is nothing to remember or look up: the journal
                    // keeps what others sent (each reply would otherwise add a row of its
                    // own, a second insert per answered message), and the cursor moves past
                    // it with the batch.
                    tracing::debug!(account = %self.id(), guid = %journal_key(&m), rowid = m.rowid,
                        chat_id = ?m.chat_id, "not answered: {}", SkipReason::FromMe);
                    cursor = cursor.max(Some(m.rowid));
                }
                Ok(mut m) => {
                    // A chat the operator listed in `groups` is a group, for access and routing.
                    m.is_group = self.policy.is_group(&m);
                    parsed.push((journal_key(&m), m, raw, credit))
                }
                Err(e) => {
                    tracing::warn!(account = %self.id(), "not answered: {e}");
                    if let Some(id) = raw.get("id").and_then(Value::as_i64) {
                        cursor = cursor.max(Some(id));
                    }
                }
            }
        }
        // A message above every rowid ever journaled cannot be journaled yet: a fresh batch
        // needs no read of the journal (a read waits for every queued write to commit).
        let upto = self.journaled_upto.load(Ordering::Relaxed);
        let keys: Vec<String> = parsed
            .iter()
            .filter(|(_, m, ..)| m.rowid <= upto)
            .map(|(k, ..)| k.clone())
            .collect();
        let top_seen = parsed.iter().map(|(_, m, ..)| m.rowid).max();
        if let Some(t) = top_seen {
            self.journaled_upto.fetch_max(t, Ordering::Relaxed);
        }
        // Approvals are read once per batch, and only when a DM in it consults them: an
        // approval made with the CLI while the gateway runs counts from the sender's next
        // message on.
        let needs_approvals = parsed
            .iter()
            .any(|(_, m, ..)| self.policy.consults_approvals(m));
        let (known_keys, approved) = if keys.is_empty() && !needs_approvals {
            (HashSet::new(), HashSet::new())
        } else {
            let id = self.id().to_string();
            self.db
                .call(move |s| {
                    let known = s.known(&id, &keys)?;
                    let approved = if needs_approvals {
                        s.approved_senders(&id)?
                    } else {
                        HashSet::new()
                    };
                    let known_keys: HashSet<String> = keys
                        .iter()
                        .zip(known)
                        .filter(|(_, known)| *known)
                        .map(|(k, _)| k.clone())
                        .collect();
                    Ok((known_keys, approved))
                })
                .await?
        };
        struct Row {
            key: String,
            msg: InboundMessage,
            raw: Value,
            status: JournalStatus,
            reason: Option<String>,
            admit: Option<Admitted>,
            /// An unknown DM sender under `dmPolicy: "pairing"` (the normalised id).
            pair: Option<String>,
            credit: Credit,
        }
        struct Admitted {
            session: String,
            target: Target,
            was_mentioned: bool,
            context: Vec<ContextMessage>,
        }
        let mut rows: Vec<Row> = Vec::new();
        let mut seen = HashSet::new();
        for (key, msg, raw, credit) in parsed {
            if known_keys.contains(&key) || !seen.insert(key.clone()) {
                tracing::debug!(account = %self.id(), guid = %key, "not answered: {}",
                    SkipReason::AlreadyHandled);
                cursor = cursor.max(Some(msg.rowid));
                continue;
            }
            let skip = |reason: String| (JournalStatus::Skipped, Some(reason), None);
            let now = self.opts.clock.now_ms();
            let mut pair = None;
            let decision = if let Some(r) = inbound::skip_reason(&msg) {
                Err(r.as_str().to_string())
            } else if self.echo.lock().unwrap().is_mirror(&msg, now) {
                Err(SkipReason::MirrorEcho.as_str().to_string())
            } else {
                let is_approved = self.policy.consults_approvals(&msg)
                    && approved.contains(&self.policy.sender_id(&msg));
                Ok(access::decide(&self.policy, &msg, is_approved))
            };
            let (status, reason, admit) = match decision {
                Err(r) => skip(r),
                Ok(Decision::Drop(s)) => {
                    self.not_answered(&msg, &s.kind, &s.text, now);
                    skip(format!("access: {}", s.text))
                }
                Ok(Decision::Context(s)) => {
                    // Only said when it is true: historyLimit 0 keeps nothing.
                    let kept = match msg.chat_id {
                        Some(chat) if self.account.history_limit > 0 => {
                            self.context
                                .lock()
                                .unwrap()
                                .keep(chat, context_of(&msg, &self.policy));
                            " [kept as context]"
                        }
                        _ => "",
                    };
                    self.not_answered(&msg, &s.kind, &s.text, now);
                    skip(format!("access: {}{kept}", s.text))
                }
                Ok(Decision::Pair { sender }) => {
                    pair = Some(sender);
                    skip(String::new())
                }
                Ok(Decision::Admit { was_mentioned }) => match routing::reply_target(&msg) {
                    Some(target) => {
                        let context = match msg.chat_id.filter(|_| msg.is_group) {
                            Some(chat) => self.context.lock().unwrap().take(chat),
                            None => Vec::new(),
                        };
                        (
                            JournalStatus::Received,
                            None,
                            Some(Admitted {
                                session: routing::session_key(&msg),
                                target,
                                was_mentioned,
                                context,
                            }),
                        )
                    }
                    None => {
                        skip("no reply target (no chat id, guid, identifier or sender)".to_string())
                    }
                },
            };
            if let Some(r) = &reason {
                tracing::debug!(account = %self.id(), guid = %key, rowid = msg.rowid,
                    chat_id = ?msg.chat_id, "not answered: {r}");
            }
            rows.push(Row {
                key,
                msg,
                raw,
                status,
                reason,
                admit,
                pair,
                credit,
            });
        }
        // The pairing flow first, each in its own transaction (rare: strangers); the batch's
        // cursor then moves past them with the rest.
        let mut own_replies = Vec::new();
        for row in rows.iter().filter(|r| r.pair.is_some()) {
            cursor = cursor.max(Some(row.msg.rowid));
            if let Some(job) = self
                .pair(row.pair.as_deref().unwrap_or_default(), &row.key, &row.msg)
                .await?
            {
                own_replies.push(job);
            }
        }
        rows.retain(|r| r.pair.is_none());
        /// What the store thread journals, owned so it can cross to it.
        struct Owned {
            guid: String,
            rowid: i64,
            chat_id: Option<i64>,
            status: JournalStatus,
            reason: Option<String>,
            payload: Option<String>,
        }
        let items: Vec<Owned> = rows
            .iter()
            .map(|r| Owned {
                guid: r.key.clone(),
                rowid: r.msg.rowid,
                chat_id: r.msg.chat_id,
                status: r.status,
                reason: r.reason.clone(),
                // `to_string` of serde_json, not `Value`'s `Display`: half the cost.
                payload: r
                    .admit
                    .as_ref()
                    .map(|_| serde_json::to_string(&r.raw).expect("a JSON value serialises")),
            })
            .collect();
        // Submitted, then the admitted messages are dispatched before its commit: the store
        // keeps submission order, so no reply's plan (and so no send) can be durable before
        // the message it answers, and the agent starts while the disk works. The commit is
        // not asked for: the first plan that is needed carries it (one commit for the
        // message and its reply), else the store's timer does; the run loop publishes the
        // cursor once it lands. Every row here passed the `known` check above and only this
        // loop journals inbound messages, so all are fresh; the commit's answer is checked
        // all the same before the cursor moves.
        let committed = {
            let id = self.id().to_string();
            self.db.submit_later(move |s| {
                let batch: Vec<Inbound<'_>> = items
                    .iter()
                    .map(|o| Inbound {
                        account: &id,
                        guid: &o.guid,
                        rowid: Some(o.rowid),
                        chat_id: o.chat_id,
                        status: o.status,
                        reason: o.reason.as_deref(),
                        payload: o.payload.as_deref(),
                    })
                    .collect();
                s.record_batch(&id, &batch, cursor)
            })
        };
        let top = rows.iter().map(|r| r.msg.rowid).chain(cursor).max();
        for job in own_replies {
            self.dispatch(job, sessions, slot);
        }
        for row in rows {
            let Some(a) = row.admit else {
                continue;
            };
            // Debug: at info, a message's one line is its outcome ("answered in ...", or
            // why it was not), and a flood does not pay for two.
            tracing::debug!(account = %self.id(), guid = %row.key, session = %a.session,
                sender = %row.msg.sender, "admitted message {}", row.msg.rowid);
            self.dispatch(
                Job {
                    key: row.key,
                    session: a.session,
                    work: Work::Ask {
                        msg: Box::new(row.msg),
                        target: a.target,
                        was_mentioned: a.was_mentioned,
                        context: a.context,
                    },
                    credit: Some(row.credit),
                },
                sessions,
                slot,
            );
        }
        Ok(Some(Recording {
            commit: Box::pin(committed.committed()),
            top,
        }))
    }

    /// Logs a message not answered for a policy reason: at info, but for one chat and one
    /// reason at most once per interval, with how many were not logged in between.
    fn not_answered(&self, msg: &InboundMessage, kind: &SkipKind, why: &str, now_ms: u64) {
        let chat = msg.chat_id.map(|c| c.to_string()).unwrap_or_default();
        let quiet = self.skips.lock().unwrap().should_log(&chat, *kind, now_ms);
        match quiet {
            Some(0) => tracing::info!(account = %self.id(), chat_id = ?msg.chat_id,
                sender = %msg.sender, "not answered: {why}"),
            Some(n) => tracing::info!(account = %self.id(), chat_id = ?msg.chat_id,
                sender = %msg.sender, "not answered: {why} ({n} more like it since the last line)"),
            None => tracing::debug!(account = %self.id(), chat_id = ?msg.chat_id,
                sender = %msg.sender, "not answered: {why}"),
        }
    }

    /// The pairing flow for an unknown DM sender (reference §3.5): a new request gets the
    /// code, once; a pending, rejected or capped one gets nothing. Returns the code's
    /// delivery, already journaled.
    async fn pair(
        &self,
        sender: &str,
        key: &str,
        msg: &InboundMessage,
    ) -> anyhow::Result<Option<Job>> {
        // Never skipped: the message must be journaled whatever happens to its code. A DM
        // without a chat selector still has its sender (an empty one never gets here).
        let target =
            routing::reply_target(msg).unwrap_or_else(|| crate::outbound::handle_target(sender));
        let now = self.opts.clock.now_ms() as i64;
        let reply_key = format!("pairing:{key}");
        // The code's message is ours, not the agent's: no response prefix.
        let plain = AccountConfig {
            response_prefix: None,
            ..(*self.account).clone()
        };
        let (id, key2, sender2, rowid, chat_id) = (
            self.id().to_string(),
            key.to_string(),
            sender.to_string(),
            msg.rowid,
            msg.chat_id,
        );
        let (target2, reply_key2) = (target.clone(), reply_key.clone());
        let codes = self.opts.pairing_codes.0.clone();
        let done = self
            .db
            .call(move |s| {
                let journal = |u: &Upsert| -> PairJournal {
                    match u {
                        Upsert::Created(r) => PairJournal {
                            reason: format!("access: pairing code sent to {} (approve with: imsg-gateway pairing approve {})", r.sender, r.code),
                            reply: Some((
                                reply_key2.clone(),
                                serde_json::to_string(&crate::outbound::plan_reply(
                                    &pairing_message(&r.sender, &r.code),
                                    &target2,
                                    &plain,
                                ))
                                .expect("a plan serialises"),
                            )),
                        },
                        Upsert::Pending(r) => PairJournal {
                            reason: format!("access: {} is waiting for pairing approval (code {}, expires in {} min); no new code is sent (approve with: imsg-gateway pairing approve {})", r.sender, r.code, access::pairing::minutes_left(r.expires_ms, now), r.code),
                            reply: None,
                        },
                        Upsert::Rejected(r) => PairJournal {
                            reason: format!("access: the pairing request of {} was rejected; nothing is sent until {}", r.sender, iso_ms(r.expires_ms)),
                            reply: None,
                        },
                        Upsert::Approved => PairJournal {
                            reason: format!("access: {sender2} was approved while this message was on its way; their next message is answered"),
                            reply: None,
                        },
                        Upsert::Full => PairJournal {
                            reason: format!("access: {} pairing requests are already pending, so {sender2} gets no code and no request (approve or reject one: imsg-gateway pairing list)", access::pairing::MAX_PENDING),
                            reply: None,
                        },
                    }
                };
                s.pair_inbound(&id, &key2, rowid, &sender2, chat_id, now, &mut || codes(), &journal)
            })
            .await?;
        let Some((outcome, journal)) = done else {
            return Ok(None);
        };
        let why = journal.reason.trim_start_matches("access: ");
        let kind = match outcome {
            Upsert::Created(_) => {
                tracing::info!(account = %self.id(), guid = %key, sender = %sender, "not answered: {why}");
                None
            }
            Upsert::Pending(_) => Some(SkipKind::PairingPending),
            Upsert::Rejected(_) => Some(SkipKind::PairingRejected),
            Upsert::Full => Some(SkipKind::PairingFull),
            Upsert::Approved => Some(SkipKind::PairingPending),
        };
        if let Some(kind) = kind {
            self.not_answered(msg, &kind, why, now as u64);
        }
        let Some((_, plan)) = journal.reply else {
            return Ok(None);
        };
        let plan: Vec<SendParams> = serde_json::from_str(&plan)?;
        Ok(Some(Job {
            key: reply_key,
            session: format!("pairing:{sender}"),
            work: Work::Deliver(Delivery {
                plan,
                next: 0,
                uncertain: false,
                chat_id: msg.chat_id,
                after_rowid: msg.rowid,
            }),
            credit: None,
        }))
    }

    /// Sends what the CLI queued for this account (`pairing approve --notify`).
    async fn claim_outbox(
        self: &Arc<Self>,
        sessions: &mut Sessions,
        slot: &ConnectionSlot,
    ) -> anyhow::Result<()> {
        let id = self.id().to_string();
        let after = (*self.cursor.borrow()).unwrap_or(0);
        let claimed = self.db.call(move |s| s.claim_outbox(&id, after)).await?;
        for (key, plan, chat_id) in claimed {
            let plan: Vec<SendParams> = match serde_json::from_str(&plan) {
                Ok(p) => p,
                Err(e) => {
                    self.final_failure(&key, &format!("the queued message is not a plan: {e}"));
                    continue;
                }
            };
            tracing::info!(account = %self.id(), key = %key, "sending a message queued by the CLI");
            self.dispatch(
                Job {
                    session: format!("own:{key}"),
                    key,
                    work: Work::Deliver(Delivery {
                        plan,
                        next: 0,
                        uncertain: false,
                        chat_id,
                        after_rowid: after,
                    }),
                    credit: None,
                },
                sessions,
                slot,
            );
        }
        Ok(())
    }

    fn dispatch(self: &Arc<Self>, job: Job, sessions: &mut Sessions, slot: &ConnectionSlot) {
        let session = job.session.clone();
        let job = match sessions.get(&session) {
            Some(s) => {
                s.inflight.fetch_add(1, Ordering::SeqCst);
                match s.tx.send(job) {
                    Ok(()) => return,
                    Err(mpsc::error::SendError(job)) => {
                        s.inflight.fetch_sub(1, Ordering::SeqCst);
                        job
                    }
                }
            }
            None => job,
        };
        // Idle workers exit: with nothing queued or running, dropping the queue ends the
        // worker, and only this loop adds to a queue, so nothing can slip in meanwhile.
        sessions.retain(|_, s| s.inflight.load(Ordering::SeqCst) > 0);
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let inflight = Arc::new(AtomicUsize::new(1));
        let me = self.clone();
        let mut slot = slot.clone();
        let worker_inflight = inflight.clone();
        tokio::spawn(async move {
            // Two stages: the agent answers and the plan is journaled for the next replies
            // while the one before them is being sent, so a session's replies wait on imsg,
            // not on the disk. Sends stay strictly in order.
            let (ready_tx, mut ready_rx) = mpsc::channel::<Ready>(SESSION_LOOKAHEAD);
            let done = || {
                worker_inflight.fetch_sub(1, Ordering::SeqCst);
            };
            // How far ahead of the sending stage plans have had their commit asked for.
            // Asking for each plan's commit as it is queued would start a commit per plan;
            // asking only when the sending stage meets a plan not yet durable would make
            // it wait a whole commit every so often. The sending stage keeps a runway of
            // [`PLAN_RUNWAY`] plans whose commit is on its way ahead of itself, and asks
            // for every plan queued so far whenever it gets shorter: one commit per run of
            // plans, and no send waits for one.
            let planned = AtomicU64::new(0);
            let wanted_through = AtomicU64::new(0);
            let latest = AtomicU64::new(0);
            let plan = async {
                let ready_tx = ready_tx;
                while let Some(job) = rx.recv().await {
                    match me.prepare(job).await {
                        Some(r) => {
                            let seq = planned.load(Ordering::Relaxed) + 1;
                            if let Some(j) = &r.journaled {
                                latest.store(j.place(), Ordering::Relaxed);
                                // Nothing queued before it: it is the next to go out (or
                                // the one after the reply being sent), so its commit is
                                // asked for now.
                                if ready_tx.capacity() == ready_tx.max_capacity() {
                                    j.want();
                                    wanted_through.store(seq, Ordering::Relaxed);
                                }
                            }
                            planned.store(seq, Ordering::Relaxed);
                            if ready_tx.send(r).await.is_err() {
                                break;
                            }
                        }
                        None => done(),
                    }
                }
            };
            let send = async {
                let mut sent = 0u64;
                while let Some(r) = ready_rx.recv().await {
                    sent += 1;
                    let upto = planned.load(Ordering::Relaxed);
                    let covered = wanted_through.load(Ordering::Relaxed);
                    if covered < sent + PLAN_RUNWAY && upto > covered {
                        me.db.want(latest.load(Ordering::Relaxed));
                        wanted_through.store(upto, Ordering::Relaxed);
                    }
                    me.send_ready(r, &mut slot).await;
                    done();
                }
            };
            tokio::join!(plan, send);
        });
        let _ = tx.send(job);
        sessions.insert(session, SessionTx { tx, inflight });
    }

    /// Journals a final outcome. Not waited for: the store keeps submission order, so
    /// whatever reads the journal after this sees it, and a crash before its commit leaves
    /// the entry where a restart finishes it again.
    fn finish(&self, key: &str, status: JournalStatus, reason: Option<&str>) {
        let (id, key2, reason) = (
            self.id().to_string(),
            key.to_string(),
            reason.map(String::from),
        );
        self.db.detach(
            format!(
                "account {}: journaling {key} as {}",
                self.id(),
                status.as_str()
            ),
            move |s| s.mark(&id, &key2, status, reason.as_deref()).map(|_| ()),
        );
    }

    /// The first stage of a session: the agent's answer, planned, its plan submitted to the
    /// journal. `None` when there is nothing to send.
    async fn prepare(&self, job: Job) -> Option<Ready> {
        let credit = job.credit;
        let ready = match job.work {
            Work::Deliver(d) => Some(Ready {
                key: job.key,
                delivery: d,
                journaled: None,
                credit: None,
            }),
            Work::Ask {
                msg,
                target,
                was_mentioned,
                context,
            } => {
                let mut env = Envelope {
                    context,
                    ..Envelope::from_inbound(&msg, &self.account, &job.session, was_mentioned)
                };
                crate::attachments::prepare(
                    &mut env.attachments,
                    self.remote_host.as_deref(),
                    &self.state_dir,
                    self.id(),
                    &job.key,
                )
                .await;
                self.ask(&job.key, env, &msg, &target).await
            }
        };
        ready.map(|r| Ready { credit, ..r })
    }

    /// The second stage: once its plan is durable, the reply is sent.
    async fn send_ready(&self, r: Ready, slot: &mut ConnectionSlot) {
        if let Some(journaled) = r.journaled {
            match journaled.wanted().await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::debug!(account = %self.id(), guid = %r.key, "already handled; not sending");
                    return;
                }
                Err(e) => {
                    tracing::error!(account = %self.id(), guid = %r.key, "journaling the reply failed: {e}; not sending");
                    return;
                }
            }
        }
        self.deliver(&r.key, r.delivery, slot).await;
        // Only now may the supervisor hand over another message in its place.
        drop(r.credit);
    }

    /// Runs the agent and journals the plan; `None` when there is nothing to send.
    async fn ask(
        &self,
        key: &str,
        env: Envelope,
        msg: &InboundMessage,
        target: &Target,
    ) -> Option<Ready> {
        let reply = {
            let Ok(_permit) = self.permits.acquire().await else {
                return None;
            };
            self.agent.reply_full(&env).await
        };
        let reply = match reply {
            Ok(Some(r)) => r,
            Ok(None) => {
                tracing::info!(account = %self.id(), guid = %key, "not answered: the agent gave no reply");
                self.finish(key, JournalStatus::Skipped, Some("agent gave no reply"));
                return None;
            }
            Err(e) => {
                tracing::warn!(account = %self.id(), guid = %key, "not answered: {e}");
                self.finish(key, JournalStatus::Failed, Some(&e.to_string()));
                return None;
            }
        };
        let mut files = Vec::new();
        let mut refused = Vec::new();
        for f in &reply.files {
            match crate::outbound::files::check(f, self.account.media_max_mb) {
                Ok(_) => files.push(f.clone()),
                Err(e) => {
                    tracing::warn!(account = %self.id(), guid = %key, "not sending the agent's file {e}");
                    refused.push(e);
                }
            }
        }
        let mut plan = crate::outbound::plan_send(&reply.text, &files, target, &self.account);
        if !refused.is_empty() {
            // The person in the chat should know something was meant to come with it.
            let notice = refused
                .iter()
                .map(|e| {
                    let name = std::path::Path::new(&e.path)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| e.path.clone());
                    format!("(a file could not be sent: {name}, {})", e.why)
                })
                .collect::<Vec<_>>()
                .join("\n");
            let plain = AccountConfig {
                response_prefix: None,
                ..(*self.account).clone()
            };
            plan.extend(crate::outbound::plan_send(&notice, &[], target, &plain));
        }
        if plan.is_empty() {
            tracing::info!(account = %self.id(), guid = %key, "not answered: the reply is empty after planning");
            self.finish(key, JournalStatus::Skipped, Some("empty reply"));
            return None;
        }
        let text = serde_json::to_string(&plan).expect("a plan serialises");
        let (id, key2) = (self.id().to_string(), key.to_string());
        // Queued, not yet wanted: the session's worker asks for its commit (see `dispatch`),
        // and nothing is sent before it is durable.
        let journaled = self
            .db
            .submit_later(move |s| s.begin_answer(&id, &key2, &text));
        let chat_id = match target {
            Target::ChatId(id) => Some(*id),
            _ => msg.chat_id,
        };
        Some(Ready {
            key: key.to_string(),
            delivery: Delivery {
                plan,
                next: 0,
                uncertain: false,
                chat_id,
                after_rowid: msg.rowid,
            },
            journaled: Some(journaled),
            credit: None,
        })
    }

    /// A live connection newer than `after_epoch`; `None` once the gateway is shutting down.
    /// Waits as long as it takes: a reply is never dropped because imsg is away.
    async fn connection(&self, slot: &mut ConnectionSlot, after_epoch: u64) -> Option<Connection> {
        let mut shutdown = self.shutdown.clone();
        loop {
            if *shutdown.borrow() {
                return None;
            }
            let current = slot.borrow_and_update().clone();
            if let Some(c) = current {
                if c.epoch > after_epoch && !c.client.is_closed() {
                    return Some(c);
                }
            }
            tokio::select! {
                r = slot.changed() => if r.is_err() { return None },
                r = shutdown.changed() => if r.is_err() { return None },
            }
        }
    }

    fn final_failure(&self, key: &str, why: &str) {
        tracing::warn!(account = %self.id(), guid = %key, "not answered (final): {why}");
        self.finish(key, JournalStatus::Failed, Some(why));
    }

    async fn deliver(&self, key: &str, mut d: Delivery, slot: &mut ConnectionSlot) {
        let n = d.plan.len();
        let mut after_epoch = 0u64;
        let mut backoff = self.opts.retry_initial;
        while d.next < n {
            let Some(conn) = self.connection(slot, after_epoch).await else {
                tracing::info!(account = %self.id(), guid = %key,
                    "shutting down with chunk {}/{n} not sent; it is sent after the restart", d.next + 1);
                return;
            };
            let params = &d.plan[d.next];
            let text = params.text.clone().unwrap_or_default();
            let k = d.next + 1;
            let file_only = params.is_file_only();
            let params = params.to_json();
            if d.uncertain && file_only {
                // History cannot tell one attachment from another reliably; never twice wins.
                tracing::warn!(account = %self.id(), guid = %key,
                    "chunk {k}/{n} (a file) may or may not have been sent before the interruption; not resent");
                if self.chunk_sent(key, d.next, n, None) {
                    return;
                }
                // Still uncertain: acknowledgements are not waited for, so the chunks after
                // it may have gone out too; only a chunk missing from history ends the doubt.
                d.next += 1;
                continue;
            }
            if d.uncertain {
                let Some(chat) = d.chat_id else {
                    let why = format!("chunk {k}/{n} may or may not have been delivered, and the chat has no id to check its history; not resent");
                    return self.final_failure(key, &why);
                };
                match self
                    .find_in_history(&conn, chat, d.after_rowid, &text)
                    .await
                {
                    Ok(Some(row)) => {
                        tracing::info!(account = %self.id(), guid = %key,
                            "chunk {k}/{n} was delivered before the interruption (row {row} in chat {chat}); not sending it again");
                        if self.chunk_sent(key, d.next, n, Some(row)) {
                            return;
                        }
                        d.after_rowid = d.after_rowid.max(row);
                        // The next chunk is checked too (see above); sends go out in order,
                        // so the first chunk not in history is where sending resumes.
                        d.next += 1;
                        continue;
                    }
                    Ok(None) => {
                        tracing::info!(account = %self.id(), guid = %key,
                            "chunk {k}/{n} is not in chat {chat}'s history; sending it");
                        d.uncertain = false;
                    }
                    Err(e) if e.is_transport() => {
                        tracing::warn!(account = %self.id(), guid = %key,
                            "chunk {k}/{n}: the chat's history could not be read ({e}); checking again on the next connection");
                        if matches!(e, RpcError::Timeout { .. }) {
                            // An imsg that answers its health checks but not this read would
                            // otherwise be kept, and the session would wait behind it for good.
                            conn.request_restart();
                        }
                        after_epoch = conn.epoch;
                        continue;
                    }
                    Err(e) if e.retryable() => {
                        tracing::warn!(account = %self.id(), guid = %key,
                            "chunk {k}/{n}: the chat's history could not be read now ({e}); checking again in {} ms", backoff.as_millis());
                        supervisor::sleep_or_shutdown(backoff, &mut self.shutdown.clone()).await;
                        backoff = (backoff * 2).min(self.opts.retry_max);
                        continue;
                    }
                    Err(e) => {
                        let why = format!("chunk {k}/{n} may or may not have been delivered and the chat's history could not be read ({e}); not resent");
                        return self.final_failure(key, &why);
                    }
                }
            }
            // Recorded before sending too: the mirror can arrive before the send is acknowledged.
            let now = self.opts.clock.now_ms();
            self.echo
                .lock()
                .unwrap()
                .record_sent(d.chat_id, &text, None, now);
            match conn
                .client
                .call(conn.protocol, &Request::Send(params))
                .await
            {
                Ok(result) => {
                    let SendReceipt { row_id: row, guid } = SendReceipt::from_result(&result);
                    let now = self.opts.clock.now_ms();
                    self.echo
                        .lock()
                        .unwrap()
                        .record_sent(d.chat_id, &text, guid.as_deref(), now);
                    if self.chunk_sent(key, d.next, n, row) {
                        return;
                    }
                    if let Some(r) = row {
                        d.after_rowid = d.after_rowid.max(r);
                    }
                    d.next += 1;
                    backoff = self.opts.retry_initial;
                }
                Err(e) if e.never_sent() => {
                    tracing::info!(account = %self.id(), guid = %key,
                        "chunk {k}/{n} did not reach imsg ({e}); sending it on the next connection");
                    after_epoch = conn.epoch;
                }
                Err(e @ (RpcError::Closed | RpcError::Timeout { .. })) => {
                    tracing::warn!(account = %self.id(), guid = %key,
                        "chunk {k}/{n}: {e}; its delivery is unknown, so the chat's history is checked on the next connection before sending it again");
                    if matches!(e, RpcError::Timeout { .. }) {
                        // A send still queued in this imsg could go out later; only a new
                        // child makes the history check final.
                        conn.request_restart();
                    }
                    d.uncertain = true;
                    after_epoch = conn.epoch;
                }
                Err(e) if e.error_code() == Some(ErrorCode::MutationLaneBlocked) => {
                    tracing::warn!(account = %self.id(), guid = %key,
                        "chunk {k}/{n}: imsg's mutation lane is blocked ({e}); restarting imsg and sending it again (it was not started)");
                    conn.request_restart();
                    after_epoch = conn.epoch;
                }
                Err(e) if file_only && e.may_have_completed() => {
                    // imsg cannot verify an attachment-only send without its bridge (imsg-rpc
                    // v1 §4.8): it most likely went out. Resending could send it twice, and
                    // the chunks after it are not at risk, so it counts as sent.
                    tracing::info!(account = %self.id(), guid = %key,
                        "chunk {k}/{n} (a file) was handed to Messages but imsg cannot verify it ({e}); counted as sent, not retried");
                    if self.chunk_sent(key, d.next, n, None) {
                        return;
                    }
                    d.next += 1;
                }
                Err(e) if e.error_code() == Some(ErrorCode::DeliveryOutcomeUnknown) => {
                    if e.lane_blocked() {
                        tracing::warn!(account = %self.id(), "imsg's mutation lane is blocked; restarting the child");
                        conn.request_restart();
                    }
                    let why = format!("send of chunk {k}/{n} failed: {e} (delivery outcome unknown; not retried, so it is never sent twice)");
                    return self.final_failure(key, &why);
                }
                Err(e) if e.retryable() => {
                    tracing::warn!(account = %self.id(), guid = %key,
                        "chunk {k}/{n}: {e}; retrying in {} ms", backoff.as_millis());
                    supervisor::sleep_or_shutdown(backoff, &mut self.shutdown.clone()).await;
                    backoff = (backoff * 2).min(self.opts.retry_max);
                }
                Err(e) => {
                    let why = format!("imsg refused chunk {k}/{n}: {e}");
                    return self.final_failure(key, &why);
                }
            }
        }
        // Only reached when every chunk was journaled before this delivery began (a restart
        // after the last acknowledgement): the last chunk's own commit did the rest otherwise.
        tracing::info!(account = %self.id(), guid = %key, "answered in {n} chunk(s)");
        self.finish(key, JournalStatus::Answered, None);
    }

    /// Journals chunk `index` of `n` as delivered; the last one also marks the reply
    /// answered, in the same commit. Returns whether the reply is done.
    ///
    /// Not waited for: a crash before its commit leaves the chunk "maybe sent", which the
    /// history check settles, so the next reply need not wait for the disk.
    fn chunk_sent(&self, key: &str, index: usize, n: usize, row: Option<i64>) -> bool {
        let (id, key2) = (self.id().to_string(), key.to_string());
        let last = index + 1 == n;
        self.db.detach(
            format!(
                "account {}: journaling chunk {} of {key}",
                self.id(),
                index + 1
            ),
            move |s| {
                if last {
                    s.last_chunk_sent(&id, &key2, index, row).map(|_| ())
                } else {
                    s.chunk_sent(&id, &key2, index, row)
                }
            },
        );
        if last {
            tracing::info!(account = %self.id(), guid = %key, "answered in {n} chunk(s)");
        }
        last
    }

    /// A from-me row in `chat` after `after_rowid` with exactly this text, that no other
    /// reply has claimed: the chunk went out before the interruption.
    async fn find_in_history(
        &self,
        conn: &Connection,
        chat: i64,
        after_rowid: i64,
        text: &str,
    ) -> Result<Option<i64>, RpcError> {
        let req = Request::History {
            chat_id: chat,
            limit: RECONCILE_HISTORY,
            attachments: false,
            end: None,
        };
        let messages = match conn.client.call(conn.protocol, &req).await {
            Ok(page) => {
                let page = Page::from_result(page);
                // A full page that does not reach the inbound message: the chat moved on
                // (or the reply waited behind a long queue), and the chunk may be older.
                let reached = page.rowids().any(|r| r <= after_rowid);
                if reached || (page.messages.len() as u32) < RECONCILE_HISTORY {
                    page.messages
                } else {
                    tracing::info!(account = %self.id(), chat_id = chat,
                        "chat {chat} has more than {RECONCILE_HISTORY} rows after rowid {after_rowid}; reading them all");
                    self.rows_after(conn, chat, after_rowid).await?
                }
            }
            Err(e) if e.row_level() => {
                tracing::warn!(account = %self.id(), chat_id = chat,
                    "chat {chat}'s recent history holds a row imsg cannot read ({e}); reading around it");
                self.rows_after(conn, chat, after_rowid).await?
            }
            Err(e) => return Err(e),
        };
        let id = self.id().to_string();
        let claimed: HashSet<i64> = self
            .db
            .call(move |s| s.sent_row_ids(&id, chat))
            .await
            .map(|v| v.into_iter().collect())
            .unwrap_or_default();
        let want = text.trim();
        let found = messages
            .iter()
            .filter(|m| m.get("is_from_me").and_then(Value::as_bool) == Some(true))
            .filter_map(|m| {
                let rowid = m.get("id").and_then(Value::as_i64)?;
                let t = m.get("text").and_then(Value::as_str)?;
                (rowid > after_rowid && t.trim() == want && !claimed.contains(&rowid))
                    .then_some(rowid)
            })
            .min();
        Ok(found)
    }

    /// Every readable row of `chat` after `after_rowid`, page by page, stepping over rows
    /// imsg cannot read.
    async fn rows_after(
        &self,
        conn: &Connection,
        chat: i64,
        after_rowid: i64,
    ) -> Result<Vec<Value>, RpcError> {
        crate::imsg::readable_rows_after(&conn.client, conn.protocol, self.id(), chat, after_rowid)
            .await
            .map_err(|e| match e {
                // Kept as imsg said it: busy and unavailable are tried again, a closed
                // connection waits for the next one.
                ReadError::Request { error, .. } => error,
                ReadError::Rows(why) if conn.client.is_closed() => {
                    tracing::debug!(account = %self.id(), "{why}");
                    RpcError::Closed
                }
                ReadError::Rows(why) => RpcError::Remote {
                    code: ErrorCode::Internal.code(),
                    message: why,
                    data: None,
                },
            })
    }
}

/// Ends the wrapped task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
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

/// An unanswered group message as the agent will see it later, in `context`.
fn context_of(msg: &InboundMessage, policy: &Policy) -> ContextMessage {
    ContextMessage {
        sender: policy.sender_id(msg),
        // As the agent would have seen it: a photo is `<media:image>`, not an empty string.
        text: crate::agent::body_text(msg),
        message_guid: msg.guid.clone(),
        timestamp: msg.created_at.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_state_database_locked_longer_than_sqlites_busy_timeout_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::new(Store::open(dir.path()).unwrap());
        let other = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
        other.execute_batch("BEGIN EXCLUSIVE").unwrap();
        // Longer than the 5 s busy timeout that used to end the gateway.
        let holder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5_500));
            other.execute_batch("COMMIT").unwrap();
        });
        db.call(|s| s.set_cursor("default", 5)).await.unwrap();
        holder.join().unwrap();
        assert_eq!(db.call(|s| s.cursor("default")).await.unwrap(), 5);
    }

    #[test]
    fn only_busy_database_and_retry_safe_errors_are_retried() {
        let remote = |code: i64, data: Option<Value>| RpcError::Remote {
            code,
            message: "x".into(),
            data,
        };
        assert!(remote(-32000, None).retryable());
        assert!(remote(-32002, None).retryable());
        assert!(remote(-32603, Some(json!({"retry_safe": true}))).retryable());
        assert!(!remote(-32602, None).retryable());
        assert!(!remote(-32001, Some(json!({"retry_safe": false}))).retryable());
        assert!(!RpcError::Closed.retryable());
    }
}
