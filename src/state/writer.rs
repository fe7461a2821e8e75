//! The store thread: the running gateway's one connection to the state database, and group
//! commit.
//!
//! Every store call of the gateway is a closure queued here and run on the blocking pool by
//! one drain at a time (never on a runtime worker). Calls that arrive
//! while a commit is on its way to the disk are run together in the next transaction, each
//! in a savepoint of its own (one failing call never undoes another), and committed once:
//! durability is unchanged (`synchronous=FULL`, a caller hears "done" only after the commit
//! that holds its writes), but ten sessions journaling at once cost one fsync, not ten.
//! Calls run in the order they were submitted, so a write submitted after another is never
//! durable before it. A busy database (another process holds the write lock) is waited
//! for with backoff, never fatal.
//!
//! The queue is not bounded here but by its producers: the ingest loop waits for each batch,
//! and a session has at most its lookahead of plans and a few acknowledgements in flight.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{StateError, Store};

/// Most calls in one transaction: a bound on how long one commit can keep a caller waiting.
const MAX_BATCH: usize = 512;

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

/// A handle on the store; clones share it.
#[derive(Clone)]
pub struct Db(Arc<Shared>);

struct Shared {
    queue: Mutex<Queue>,
    store: Mutex<Store>,
}

struct Queue {
    calls: VecDeque<Box<dyn Op>>,
    /// Whether a drain is running on the blocking pool (at most one is).
    draining: bool,
}

impl Db {
    pub fn new(store: Store) -> Db {
        Db(Arc::new(Shared {
            queue: Mutex::new(Queue {
                calls: VecDeque::new(),
                draining: false,
            }),
            store: Mutex::new(store),
        }))
    }

    /// Submits `f` now (its place in the order is taken at once) and returns its result
    /// once the transaction holding it has committed.
    pub fn submit<T, F>(&self, f: F) -> impl std::future::Future<Output = Result<T, StateError>>
    where
        T: Send + 'static,
        F: FnMut(&mut Store) -> Result<T, StateError> + Send + 'static,
    {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.send(Box::new(Call {
            f,
            result: None,
            reply: Some(reply),
            detached: None,
        }));
        async move {
            rx.await
                .unwrap_or_else(|_| Err(StateError::stopped("the store stopped")))
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

    /// Submits a write nobody waits for (its failure is logged as `what`): for records
    /// whose loss a restart repairs, such as a reply's last acknowledgement, which the
    /// history check finds again.
    pub fn detach<F>(&self, what: impl Into<String>, f: F)
    where
        F: FnMut(&mut Store) -> Result<(), StateError> + Send + 'static,
    {
        self.send(Box::new(Call {
            f,
            result: None,
            reply: None,
            detached: Some(what.into()),
        }));
    }

    /// Waits until everything submitted before it is committed.
    pub async fn flush(&self) -> Result<(), StateError> {
        self.call(|_| Ok(())).await
    }

    fn send(&self, op: Box<dyn Op>) {
        let mut q = self.0.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.calls.push_back(op);
        if !q.draining {
            q.draining = true;
            let shared = self.0.clone();
            // On the blocking pool, not a thread of our own: the runtime then knows work is
            // in flight, so a paused clock (tests, the simulator) does not jump past it.
            tokio::task::spawn_blocking(move || drain(&shared));
        }
    }
}

/// Runs batches until the queue is empty.
fn drain(shared: &Shared) {
    let mut store = shared.store.lock().unwrap_or_else(|p| p.into_inner());
    let mut wait = Duration::from_millis(20);
    let mut waited = Duration::ZERO;
    let mut warned = false;
    let mut again: Vec<Box<dyn Op>> = Vec::new();
    loop {
        let batch: Vec<Box<dyn Op>> = {
            let mut q = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            for op in again.drain(..).rev() {
                q.calls.push_front(op);
            }
            if q.calls.is_empty() {
                q.draining = false;
                return;
            }
            let n = q.calls.len().min(MAX_BATCH);
            q.calls.drain(..n).collect()
        };
        again = run_batch(&mut store, batch);
        if again.is_empty() {
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
fn run_batch(store: &mut Store, batch: Vec<Box<dyn Op>>) -> Vec<Box<dyn Op>> {
    if let Err(e) = store.conn.execute_batch("BEGIN IMMEDIATE") {
        let e = store.sql(e);
        if e.is_busy() {
            return batch;
        }
        for op in batch {
            op.finish(Some(&e));
        }
        return Vec::new();
    }
    let mut done: Vec<Box<dyn Op>> = Vec::with_capacity(batch.len());
    let mut again: Vec<Box<dyn Op>> = Vec::new();
    let mut lost: Option<StateError> = None;
    for mut op in batch {
        if !again.is_empty() || lost.is_some() {
            again.push(op);
            continue;
        }
        if let Err(e) = store.conn.execute_batch("SAVEPOINT call") {
            lost = Some(store.sql(e));
            again.push(op);
            continue;
        }
        let ran = op.run(store);
        let undo = !ran || op.failed();
        let end = if undo {
            "ROLLBACK TO call; RELEASE call"
        } else {
            "RELEASE call"
        };
        if let Err(e) = store.conn.execute_batch(end) {
            lost = Some(store.sql(e));
        }
        if store.conn.is_autocommit() && lost.is_none() {
            // SQLite rolled the whole transaction back (an I/O error, a full disk).
            lost = Some(StateError::stopped(
                "the state database rolled a transaction back",
            ));
        }
        if ran {
            done.push(op);
        } else {
            again.push(op);
        }
    }
    if let Some(e) = lost {
        if !store.conn.is_autocommit() {
            let _ = store.conn.execute_batch("ROLLBACK");
        }
        for op in done {
            op.finish(Some(&e));
        }
        // Nothing of the later calls ran for good: they are run again.
        return again;
    }
    match store.conn.execute_batch("COMMIT") {
        Ok(()) => {
            for op in done {
                op.finish(None);
            }
            again
        }
        Err(e) => {
            let e = store.sql(e);
            if !store.conn.is_autocommit() {
                let _ = store.conn.execute_batch("ROLLBACK");
            }
            if e.is_busy() {
                done.extend(again);
                return done;
            }
            for op in done {
                op.finish(Some(&e));
            }
            again
        }
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
}
