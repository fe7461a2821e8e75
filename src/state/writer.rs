//! The store thread: the running gateway's one connection to the state database, group
//! commit, and checkpoints off the hot path.
//!
//! Every store call of the gateway is a closure queued here and run on the blocking pool by
//! one drain at a time (never on a runtime worker). Calls that arrive
//! while a commit is on its way to the disk are run together in the next transaction (one
//! failing call never undoes another: see [`run_batch`]), and committed once:
//! durability is unchanged (`synchronous=FULL`, a caller hears "done" only after the commit
//! that holds its writes), but ten sessions journaling at once cost one fsync, not ten.
//! Calls run in the order they were submitted, so a write submitted after another is never
//! durable before it. A busy database (another process holds the write lock) is waited
//! for with backoff, never fatal.
//!
//! Not every call needs its commit at once. A call somebody waits for ([`Db::submit`])
//! starts a drain; a write nobody waits for ([`Db::detach`]) and a result wanted only
//! later ([`Db::submit_later`]) wait for the next drain, which runs at the latest
//! [`DEFER`] after them. Under a flood that folds a reply's acknowledgement and the plans
//! of the replies behind it into the commit the next message needs anyway, instead of a
//! commit (and an fsync) each.
//!
//! WAL checkpoints run on a thread of their own: SQLite's automatic checkpoint copies the
//! WAL into the database inside whichever commit crosses 1,000 pages, with two fsyncs, and
//! the reply waiting on that commit paid for it. A checkpoint that falls [`WAL_LIMIT`]
//! frames behind is run by the drain itself, so the WAL stays bounded.
//!
//! The queue is not bounded here but by its producers: the ingest loop has at most 64
//! batches on their way to the disk, and a session at most its lookahead of plans and a few
//! acknowledgements.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::{StateError, Store};

/// Most calls in one transaction: a bound on how long one commit can keep a caller waiting.
const MAX_BATCH: usize = 512;

/// A commit slower than this is logged (debug): the disk holding up every caller in it.
const SLOW_COMMIT: Duration = Duration::from_millis(2);

/// How long a write nobody waits for may stay queued before a drain commits it.
pub const DEFER: Duration = Duration::from_millis(10);

/// Commits between two background checkpoints (a send's journal writes dirty a few pages
/// each, so this is about SQLite's own 1,000-page interval).
const CHECKPOINT_EVERY: u64 = 64;

/// WAL frames past which the drain checkpoints itself instead of waiting for the thread
/// (32 MiB at 4 KiB pages): the thread's passive checkpoints cannot restart the WAL while
/// commits keep landing beside them.
const WAL_LIMIT: i64 = 8192;

/// One submitted call: runs (perhaps more than once, while the database is busy), then
/// hears how its transaction ended.
trait Op: Send {
    /// Runs inside the batch's transaction; `false` when the database was busy.
    fn run(&mut self, store: &mut Store) -> bool;
    /// Whether the call's own result is an error (its savepoint is rolled back).
    fn failed(&self) -> bool;
    /// The transaction committed (`None`) or failed: hands the result over.
    fn finish(self: Box<Self>, commit: Option<&StateError>);
}

struct Call<T, F> {
    f: F,
    result: Option<Result<T, StateError>>,
    reply: Option<tokio::sync::oneshot::Sender<Result<T, StateError>>>,
    /// Logged when nobody waits for the result (`Db::detach`) and it is an error.
    detached: Option<String>,
}

impl<T, F> Op for Call<T, F>
where
    T: Send + 'static,
    F: FnMut(&mut Store) -> Result<T, StateError> + Send + 'static,
{
    fn run(&mut self, store: &mut Store) -> bool {
        let r = (self.f)(store);
        let busy = matches!(&r, Err(e) if e.is_busy());
        self.result = Some(r);
        !busy
    }

    fn failed(&self) -> bool {
        matches!(self.result, Some(Err(_)))
    }

    fn finish(mut self: Box<Self>, commit: Option<&StateError>) {
        let result = match (commit, self.result.take()) {
            (Some(e), _) => Err(e.duplicate()),
            (None, Some(r)) => r,
            (None, None) => return,
        };
        if let Some(what) = &self.detached {
            if let Err(e) = &result {
                tracing::error!("{what} failed: {e}");
            }
        }
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(result);
        }
    }
}

/// A call with its place in the order.
type Queued = (u64, Box<dyn Op>);

/// A handle on the store; clones share it.
#[derive(Clone)]
pub struct Db(Arc<Shared>);

struct Shared {
    queue: Mutex<Queue>,
    store: Mutex<Store>,
    checkpoints: Arc<Checkpoints>,
}

struct Queue {
    /// Calls with their place in the order.
    calls: VecDeque<Queued>,
    /// The place the next call takes.
    next: u64,
    /// Calls up to this place are wanted now: a drain runs until it has committed them.
    wanted: u64,
    /// Whether a drain is running on the blocking pool (at most one is).
    draining: bool,
    /// Whether a timer will start a drain for calls not wanted yet.
    armed: bool,
    /// When the oldest call no drain has taken yet must be committed: [`DEFER`] after it
    /// was queued. A drain that takes every queued call clears it, so the timer never
    /// commits a call that has only just arrived because an older one armed it.
    deadline: Option<tokio::time::Instant>,
}

impl Queue {
    fn wants_drain(&self) -> bool {
        self.calls.front().is_some_and(|(at, _)| *at <= self.wanted)
    }
}

/// When a queued call's commit is needed.
#[derive(Clone, Copy, PartialEq)]
enum Need {
    Now,
    Later,
}

impl Db {
    pub fn new(store: Store) -> Db {
        // Checkpoints move to their own thread (see the module doc). A store that cannot
        // start one keeps SQLite's automatic checkpoints: slower, still correct.
        let checkpoints = Arc::new(Checkpoints::default());
        let background = store
            .conn
            .execute_batch("PRAGMA wal_autocheckpoint=0")
            .map_err(|e| e.to_string())
            .and_then(|()| Checkpoints::start(&checkpoints, store.path().to_path_buf()));
        if let Err(e) = background {
            tracing::warn!("state database checkpoints stay in the commits: {e}");
            let _ = store.conn.execute_batch("PRAGMA wal_autocheckpoint=1000");
        }
        Db(Arc::new(Shared {
            queue: Mutex::new(Queue {
                calls: VecDeque::new(),
                // Places start at 1: `wanted` 0 wants nothing.
                next: 1,
                wanted: 0,
                draining: false,
                armed: false,
                deadline: None,
            }),
            store: Mutex::new(store),
            checkpoints,
        }))
    }

    /// Submits `f` now (its place in the order is taken at once) and returns its result
    /// once the transaction holding it has committed.
    pub fn submit<T, F>(&self, f: F) -> impl std::future::Future<Output = Result<T, StateError>>
    where
        T: Send + 'static,
        F: FnMut(&mut Store) -> Result<T, StateError> + Send + 'static,
    {
        self.queue_call(f, Need::Now).committed()
    }

    /// [`Db::submit`] for a result wanted only later: `f` takes its place in the order
    /// now, but its commit waits for the next drain (at most [`DEFER`] away). The handle
    /// says whether its result is then wanted at once ([`Later::wanted`]) or whenever that
    /// drain comes ([`Later::committed`]).
    pub fn submit_later<T, F>(&self, f: F) -> Later<T>
    where
        T: Send + 'static,
        F: FnMut(&mut Store) -> Result<T, StateError> + Send + 'static,
    {
        self.queue_call(f, Need::Later)
    }

    fn queue_call<T, F>(&self, f: F, need: Need) -> Later<T>
    where
        T: Send + 'static,
        F: FnMut(&mut Store) -> Result<T, StateError> + Send + 'static,
    {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let at = self.send(
            Box::new(Call {
                f,
                result: None,
                reply: Some(reply),
                detached: None,
            }),
            need,
        );
        Later {
            rx,
            at,
            shared: self.0.clone(),
        }
    }

    /// [`Db::submit`], awaited.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnMut(&mut Store) -> Result<T, StateError> + Send + 'static,
    {
        self.submit(f).await
    }

    /// Submits a write nobody waits for (its failure is logged as `what`), committed with
    /// the next drain, at most [`DEFER`] later: for records whose loss a restart repairs,
    /// such as a reply's last acknowledgement, which the history check finds again.
    pub fn detach<F>(&self, what: impl Into<String>, f: F)
    where
        F: FnMut(&mut Store) -> Result<(), StateError> + Send + 'static,
    {
        self.send(
            Box::new(Call {
                f,
                result: None,
                reply: None,
                detached: Some(what.into()),
            }),
            Need::Later,
        );
    }

    /// Asks for the commit of every call up to `place` ([`Later::place`]) now, without
    /// waiting for it.
    pub fn want(&self, place: u64) {
        want(&self.0, place);
    }

    /// Waits until everything submitted before it is committed.
    pub async fn flush(&self) -> Result<(), StateError> {
        self.call(|_| Ok(())).await
    }

    /// Queues `op` and returns its place in the order.
    fn send(&self, op: Box<dyn Op>, need: Need) -> u64 {
        let mut q = self.0.queue.lock().unwrap_or_else(|p| p.into_inner());
        let at = q.next;
        q.next += 1;
        q.calls.push_back((at, op));
        if need == Need::Now {
            q.wanted = at;
        }
        start(&self.0, &mut q);
        at
    }
}

/// A call submitted with [`Db::submit_later`].
pub struct Later<T> {
    rx: tokio::sync::oneshot::Receiver<Result<T, StateError>>,
    at: u64,
    shared: Arc<Shared>,
}

impl<T> Later<T> {
    /// Its result, asking for its commit now: when this is called, not when the future is
    /// first polled, so the disk can work while the caller does something else first.
    pub fn wanted(self) -> impl std::future::Future<Output = Result<T, StateError>> {
        self.want();
        self.committed()
    }

    /// Its place in the order: [`Db::want`] of it asks for its commit and every call's
    /// before it.
    pub fn place(&self) -> u64 {
        self.at
    }

    /// Asks for its commit now without waiting for it (a no-op once it is committed).
    pub fn want(&self) {
        if self.rx.is_empty() {
            want(&self.shared, self.at);
        }
    }

    /// Its result, once a drain somebody else asked for (or the timer) has committed it.
    pub async fn committed(self) -> Result<T, StateError> {
        self.rx
            .await
            .unwrap_or_else(|_| Err(StateError::stopped("the store stopped")))
    }
}

/// Calls up to place `at` are wanted now.
fn want(shared: &Arc<Shared>, at: u64) {
    let mut q = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
    q.wanted = q.wanted.max(at);
    start(shared, &mut q);
}

/// Starts a drain when calls are wanted now, or arms the timer for calls that can wait.
fn start(shared: &Arc<Shared>, q: &mut Queue) {
    if q.draining {
        return;
    }
    if q.wants_drain() {
        q.draining = true;
        let shared = shared.clone();
        // On the blocking pool, not a thread of our own: the runtime then knows work is
        // in flight, so a paused clock (tests, the simulator) does not jump past it.
        tokio::task::spawn_blocking(move || drain(&shared));
    } else if !q.calls.is_empty() {
        let deadline = *q
            .deadline
            .get_or_insert_with(|| tokio::time::Instant::now() + DEFER);
        if q.armed {
            return;
        }
        q.armed = true;
        let shared = shared.clone();
        // The runtime's timer: under a paused clock the deferred calls land when the
        // clock moves on, as they would in real time.
        tokio::spawn(async move {
            let mut until = deadline;
            loop {
                tokio::time::sleep_until(until).await;
                let later = {
                    let mut q = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
                    // The calls this timer was armed for went with a drain somebody else
                    // asked for; those queued since wait their own full interval. A commit
                    // started here while a message is on its way would make its reply wait
                    // for it.
                    let later = q.deadline.filter(|d| *d > tokio::time::Instant::now());
                    if later.is_none() {
                        q.armed = false;
                        q.deadline = None;
                        q.wanted = q.wanted.max(q.next - 1);
                        start(&shared, &mut q);
                    }
                    later
                };
                match later {
                    Some(d) => until = d,
                    None => return,
                }
            }
        });
    }
}

/// Runs batches until every call wanted now is committed.
fn drain(shared: &Arc<Shared>) {
    let mut store = shared.store.lock().unwrap_or_else(|p| p.into_inner());
    let mut wait = Duration::from_millis(20);
    let mut waited = Duration::ZERO;
    let mut warned = false;
    let mut again: Vec<Queued> = Vec::new();
    loop {
        let batch: Vec<Queued> = {
            let mut q = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            for op in again.drain(..).rev() {
                q.calls.push_front(op);
            }
            if !q.wants_drain() {
                q.draining = false;
                // Calls that can wait are left for the timer.
                start(shared, &mut q);
                return;
            }
            // Everything queued goes in, wanted or not: one commit carries it all.
            let n = q.calls.len().min(MAX_BATCH);
            if n == q.calls.len() {
                q.deadline = None;
            }
            q.calls.drain(..n).collect()
        };
        again = run_batch(&mut store, batch);
        if again.is_empty() {
            shared.checkpoints.committed(&store);
            if warned {
                tracing::info!("the state database is writable again");
                warned = false;
            }
            wait = Duration::from_millis(20);
            waited = Duration::ZERO;
            continue;
        }
        if !warned && waited >= Duration::from_secs(5) {
            tracing::warn!("the state database is locked by another process; waiting for it");
            warned = true;
        }
        std::thread::sleep(wait);
        waited += wait;
        wait = (wait * 2).min(Duration::from_secs(1));
    }
}

/// Runs `batch` in one transaction. Returns the calls to run again because the database was
/// busy (in order: once one call meets a busy database, the ones after it wait too).
///
/// A call's writes must be undone alone when it fails, which takes a savepoint around it:
/// two more statements, and a copy of every page it touches the first time. Calls almost
/// never fail, so the batch first runs without them; only when one does fail (or meets a
/// busy database) is the whole transaction rolled back and the batch run again, call by
/// call in savepoints. Calls may run more than once already (a busy database), so running
/// them again is safe.
fn run_batch(store: &mut Store, batch: Vec<Queued>) -> Vec<Queued> {
    match run_ops(store, batch, false) {
        Ok(again) => again,
        Err(batch) => run_ops(store, batch, true).unwrap_or_else(|batch| batch),
    }
}

/// [`run_batch`], with a savepoint around each call or without. Without, the first call that
/// fails rolls the transaction back and hands the batch back whole, in order (`Err`).
fn run_ops(
    store: &mut Store,
    batch: Vec<Queued>,
    savepoints: bool,
) -> Result<Vec<Queued>, Vec<Queued>> {
    if let Err(e) = store.run_cached("BEGIN IMMEDIATE") {
        let e = store.sql(e);
        if e.is_busy() {
            return Ok(batch);
        }
        for (_, op) in batch {
            op.finish(Some(&e));
        }
        return Ok(Vec::new());
    }
    let mut done: Vec<Queued> = Vec::with_capacity(batch.len());
    let mut again: Vec<Queued> = Vec::new();
    let mut lost: Option<StateError> = None;
    let mut ops = batch.into_iter();
    while let Some((at, mut op)) = ops.next() {
        if !again.is_empty() || lost.is_some() {
            again.push((at, op));
            continue;
        }
        if savepoints {
            if let Err(e) = store.run_cached("SAVEPOINT call") {
                lost = Some(store.sql(e));
                again.push((at, op));
                continue;
            }
        }
        let ran = op.run(store);
        let undo = !ran || op.failed();
        if !savepoints && undo {
            if !store.conn.is_autocommit() {
                let _ = store.conn.execute_batch("ROLLBACK");
            }
            done.push((at, op));
            done.extend(ops);
            return Err(done);
        }
        if savepoints {
            let end = if undo {
                store
                    .run_cached("ROLLBACK TO call")
                    .and_then(|()| store.run_cached("RELEASE call"))
            } else {
                store.run_cached("RELEASE call")
            };
            if let Err(e) = end {
                lost = Some(store.sql(e));
            }
        }
        if store.conn.is_autocommit() && lost.is_none() {
            // SQLite rolled the whole transaction back (an I/O error, a full disk).
            lost = Some(StateError::stopped(
                "the state database rolled a transaction back",
            ));
        }
        if ran {
            done.push((at, op));
        } else {
            again.push((at, op));
        }
    }
    if let Some(e) = lost {
        if !store.conn.is_autocommit() {
            let _ = store.conn.execute_batch("ROLLBACK");
        }
        for (_, op) in done {
            op.finish(Some(&e));
        }
        // Nothing of the later calls ran for good: they are run again.
        return Ok(again);
    }
    let started = std::time::Instant::now();
    let committed = store.run_cached("COMMIT");
    let took = started.elapsed();
    if took > SLOW_COMMIT {
        // The disk, not the gateway: every caller in the batch waited this long.
        tracing::debug!(
            "a state commit of {} call(s) took {} ms",
            done.len(),
            took.as_millis()
        );
    }
    match committed {
        Ok(()) => {
            for (_, op) in done {
                op.finish(None);
            }
            Ok(again)
        }
        Err(e) => {
            let e = store.sql(e);
            if !store.conn.is_autocommit() {
                let _ = store.conn.execute_batch("ROLLBACK");
            }
            if e.is_busy() {
                done.extend(again);
                return Ok(done);
            }
            for (_, op) in done {
                op.finish(Some(&e));
            }
            Ok(again)
        }
    }
}

/// The checkpoint thread's side of the store: how many commits it has not covered yet,
/// and how long the WAL was at its last checkpoint.
#[derive(Default)]
struct Checkpoints {
    state: Mutex<Pending>,
    wake: Condvar,
    /// Frames in the WAL when the last checkpoint ran.
    wal_frames: AtomicI64,
    /// The thread runs (it stops when the store is dropped).
    running: AtomicBool,
}

#[derive(Default)]
struct Pending {
    commits: u64,
    stop: bool,
}

impl Checkpoints {
    fn start(this: &Arc<Checkpoints>, path: PathBuf) -> Result<(), String> {
        let conn = rusqlite::Connection::open(&path).map_err(|e| e.to_string())?;
        conn.busy_timeout(Duration::from_secs(5))
            .and_then(|()| conn.execute_batch("PRAGMA synchronous=FULL"))
            .map_err(|e| e.to_string())?;
        let me = this.clone();
        std::thread::Builder::new()
            .name("state-checkpoint".into())
            .spawn(move || me.run(conn, &path))
            .map_err(|e| e.to_string())?;
        this.running.store(true, Ordering::Release);
        Ok(())
    }

    /// Called by the drain after each commit.
    fn committed(&self, store: &Store) {
        if !self.running.load(Ordering::Acquire) {
            return;
        }
        if self.wal_frames.load(Ordering::Relaxed) > WAL_LIMIT {
            // The thread could not keep up: this commit's caller pays for one checkpoint.
            match store
                .conn
                .query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(1))
            {
                Ok(frames) => tracing::debug!("state WAL checkpointed in line at {frames} frames"),
                Err(e) => tracing::warn!("checkpointing the state database failed: {e}"),
            }
            self.wal_frames.store(0, Ordering::Relaxed);
        }
        let mut p = self.state.lock().unwrap_or_else(|p| p.into_inner());
        p.commits += 1;
        if p.commits >= CHECKPOINT_EVERY {
            self.wake.notify_one();
        }
    }

    fn run(&self, conn: rusqlite::Connection, path: &std::path::Path) {
        loop {
            {
                let mut p = self.state.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    if p.stop {
                        return;
                    }
                    if p.commits >= CHECKPOINT_EVERY {
                        break;
                    }
                    // The last commits of a burst are covered once it is over.
                    let (next, timeout) = self
                        .wake
                        .wait_timeout(p, Duration::from_millis(100))
                        .unwrap_or_else(|e| e.into_inner());
                    p = next;
                    if timeout.timed_out() && p.commits > 0 {
                        break;
                    }
                }
                p.commits = 0;
            }
            match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1)) {
                Ok(frames) => self.wal_frames.store(frames, Ordering::Relaxed),
                Err(e) => tracing::warn!("checkpointing {} failed: {e}", path.display()),
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let mut p = self
            .checkpoints
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        p.stop = true;
        self.checkpoints.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Inbound, JournalStatus};

    fn inbound<'a>(guid: &'a str, rowid: i64) -> Inbound<'a> {
        Inbound {
            account: "default",
            guid,
            rowid: Some(rowid),
            chat_id: Some(1),
            status: JournalStatus::Received,
            reason: None,
            payload: Some("{}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_submitted_together_commit_together_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::new(Store::open(dir.path()).unwrap());
        let mut waits = Vec::new();
        for i in 0..200i64 {
            let guid = format!("g{i}");
            waits.push(db.submit(move |s| s.record_inbound(&inbound(&guid, i + 1))));
        }
        let answered = db.submit(|s| s.begin_answer("default", "g199", "[]"));
        for w in waits {
            assert!(w.await.unwrap(), "each message is newly journaled");
        }
        assert!(
            answered.await.unwrap(),
            "a later call sees the earlier ones' writes"
        );
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.cursor("default").unwrap(), 200);
        assert_eq!(
            store.entry("default", "g199").unwrap().unwrap().status,
            JournalStatus::Answering
        );
    }

    #[tokio::test]
    async fn a_failing_call_undoes_only_its_own_writes() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::new(Store::open(dir.path()).unwrap());
        let a = db.submit(|s| s.record_inbound(&inbound("a", 1)));
        let bad = db.submit(|s| {
            s.record_inbound(&inbound("b", 2))?;
            s.conn
                .execute_batch("INSERT INTO no_such_table VALUES(1)")
                .map_err(|e| s.sql(e))
        });
        let c = db.submit(|s| s.record_inbound(&inbound("c", 3)));
        assert!(a.await.unwrap());
        assert!(bad.await.is_err());
        assert!(c.await.unwrap());
        db.flush().await.unwrap();
        let (a, b, c) = db
            .call(|s| {
                Ok((
                    s.entry("default", "a")?.is_some(),
                    s.entry("default", "b")?.is_some(),
                    s.entry("default", "c")?.is_some(),
                ))
            })
            .await
            .unwrap();
        assert!(a && !b && c, "only the failing call's writes are gone");
    }

    #[tokio::test]
    async fn calls_beside_a_failing_one_are_committed_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::new(Store::open(dir.path()).unwrap());
        db.call(|s| {
            s.conn
                .execute_batch("CREATE TABLE n(v INTEGER); INSERT INTO n VALUES(0);")
                .map_err(|e| s.sql(e))
        })
        .await
        .unwrap();
        fn bump(s: &mut Store) -> Result<(), StateError> {
            s.conn
                .execute_batch("UPDATE n SET v = v + 1")
                .map_err(|e| s.sql(e))
        }
        // Queued before any drain starts, so the four share one batch: the first pass
        // (without savepoints) runs the first bump, meets the failure and starts over.
        let a = db.submit_later(bump);
        let bad = db.submit_later(|s| {
            bump(s)?;
            s.conn
                .execute_batch("INSERT INTO no_such_table VALUES(1)")
                .map_err(|e| s.sql(e))
        });
        let c = db.submit_later(bump);
        let v = db.submit(|s| {
            s.conn
                .query_row("SELECT v FROM n", [], |r| r.get::<_, i64>(0))
                .map_err(|e| s.sql(e))
        });
        assert!(a.committed().await.is_ok());
        assert!(bad.committed().await.is_err());
        assert!(c.committed().await.is_ok());
        assert_eq!(
            v.await.unwrap(),
            2,
            "each good call once, the failing one not at all"
        );
    }

    #[tokio::test]
    async fn detached_writes_land_before_a_flush_returns() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::new(Store::open(dir.path()).unwrap());
        for i in 0..50i64 {
            let guid = format!("d{i}");
            db.detach("journaling", move |s| {
                s.record_inbound(&inbound(&guid, i + 1)).map(|_| ())
            });
        }
        db.flush().await.unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.cursor("default").unwrap(), 50);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_nobody_waits_for_is_committed_within_the_deferral() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::new(Store::open(dir.path()).unwrap());
        db.detach("journaling", |s| {
            s.record_inbound(&inbound("late", 7)).map(|_| ())
        });
        let other = Store::open(dir.path()).unwrap();
        assert_eq!(other.cursor("default").unwrap(), 0, "not committed at once");
        tokio::time::sleep(DEFER + Duration::from_millis(1)).await;
        // The drain runs on the blocking pool; a flush-free read waits for it in real time.
        let t = std::time::Instant::now();
        while other.cursor("default").unwrap() != 7 {
            assert!(t.elapsed() < Duration::from_secs(10), "never committed");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_call_rides_along_with_the_next_commit_somebody_waits_for() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::new(Store::open(dir.path()).unwrap());
        let later = db.submit_later(|s| s.record_inbound(&inbound("a", 1)));
        db.call(|s| s.record_inbound(&inbound("b", 2)))
            .await
            .unwrap();
        // Well before the deferral runs out: only the commit of "b" can have carried "a".
        let a = tokio::time::timeout(Duration::from_millis(1), later.committed()).await;
        assert!(matches!(a, Ok(Ok(true))), "{a:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_call_waits_its_own_deferral_after_an_earlier_one_was_carried() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::new(Store::open(dir.path()).unwrap());
        // "a" arms the timer; the commit "b" waits for carries it 8 ms later.
        let a = db.submit_later(|s| s.record_inbound(&inbound("a", 1)));
        tokio::time::sleep(Duration::from_millis(8)).await;
        db.call(|s| s.record_inbound(&inbound("b", 2)))
            .await
            .unwrap();
        assert!(a.committed().await.unwrap());
        // "c" arrives 1 ms later. The interval "a" armed runs out 1 ms after that, and a
        // commit started then would be one a reply arriving meanwhile has to wait for.
        tokio::time::sleep(Duration::from_millis(1)).await;
        let queued = tokio::time::Instant::now();
        assert!(db
            .submit_later(|s| s.record_inbound(&inbound("c", 3)))
            .committed()
            .await
            .unwrap());
        let waited = queued.elapsed();
        assert!(waited >= DEFER, "committed {waited:?} after it was queued");
        assert!(
            waited < DEFER * 2,
            "committed {waited:?} after it was queued"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_call_that_is_wanted_commits_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::new(Store::open(dir.path()).unwrap());
        let later = db.submit_later(|s| s.record_inbound(&inbound("a", 1)));
        let a = tokio::time::timeout(Duration::from_millis(1), later.wanted()).await;
        assert!(matches!(a, Ok(Ok(true))), "{a:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_call_is_committed_from_when_it_is_wanted_not_when_it_is_awaited() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::new(Store::open(dir.path()).unwrap());
        let later = db.submit_later(|s| s.record_inbound(&inbound("a", 1)));
        // A session wants its plan's commit as soon as the plan is queued and awaits it
        // only when the reply before it has been sent: the disk works meanwhile.
        let wanted = later.wanted();
        // Well before the deferral runs out.
        tokio::time::sleep(Duration::from_millis(1)).await;
        let other = Store::open(dir.path()).unwrap();
        assert_eq!(other.cursor("default").unwrap(), 1);
        assert!(matches!(wanted.await, Ok(true)));
    }

    #[tokio::test(start_paused = true)]
    async fn want_asks_for_the_commit_and_the_handle_stays_with_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::new(Store::open(dir.path()).unwrap());
        let first = db.submit_later(|s| s.record_inbound(&inbound("a", 1)));
        let second = db.submit_later(|s| s.record_inbound(&inbound("b", 2)));
        // A session asks for the commit of the plan at the head of its queue; the one
        // queued behind it rides along with that commit, long before the deferral.
        first.want();
        tokio::time::sleep(Duration::from_millis(1)).await;
        let other = Store::open(dir.path()).unwrap();
        assert_eq!(other.cursor("default").unwrap(), 2);
        assert!(matches!(first.committed().await, Ok(true)));
        // Already committed: asking again is a no-op and the result is there.
        second.want();
        let b = tokio::time::timeout(Duration::from_millis(1), second.committed()).await;
        assert!(matches!(b, Ok(Ok(true))), "{b:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_is_copied_into_the_database_off_the_commits() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::new(Store::open(dir.path()).unwrap());
        let file = Store::file_in(dir.path());
        let before = std::fs::metadata(&file).unwrap().len();
        let big = "x".repeat(2000);
        for i in 0..(2 * CHECKPOINT_EVERY as i64) {
            let (guid, big) = (format!("g{i}"), big.clone());
            db.call(move |s| {
                s.record_inbound(&Inbound {
                    payload: Some(&big),
                    ..inbound(&guid, i + 1)
                })
            })
            .await
            .unwrap();
        }
        // Automatic checkpoints are off on the writer: only the thread grows the file.
        let t = std::time::Instant::now();
        while std::fs::metadata(&file).unwrap().len() <= before {
            assert!(t.elapsed() < Duration::from_secs(10), "no checkpoint ran");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
