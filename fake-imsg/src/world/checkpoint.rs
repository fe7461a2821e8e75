//! WAL checkpoints off the writer's thread, for a connection that commits in a loop (the rpc
//! server's sends).
//!
//! SQLite's automatic checkpoint runs inside the COMMIT that takes the WAL past 1000 pages:
//! that commit also copies every page back into the database file and waits on two fsyncs,
//! so one `send` in every ~80 paid for all of them. A deferred world instead turns the
//! automatic checkpoint off and hands the work to a thread with a connection of its own,
//! which runs `PRAGMA wal_checkpoint(PASSIVE)` every [`BATCH`] commits, or [`IDLE`] after a
//! commit it has not covered yet. A passive checkpoint never blocks the writer nor readers.
//!
//! The WAL can only restart from its beginning once a checkpoint has copied all of it and
//! no writer appended since, which a checkpoint running beside a busy writer rarely sees;
//! left alone the file would grow for as long as the sends kept coming. So once a checkpoint
//! finds a WAL of [`FRAME_LIMIT`] frames or more, the writer's next commit waits for a
//! checkpoint that starts after it: with the writer paused that one copies everything
//! (unless another process holds an old snapshot, which stops SQLite's own checkpoints too)
//! and the next write starts the WAL over. The writer waits the same way when the
//! checkpointer falls [`BEHIND_LIMIT`] commits behind, so a slow checkpoint cannot let the
//! WAL grow while it runs either.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

/// Commits between two background checkpoints: about SQLite's 1000-page default at the
/// dozen pages a send dirties.
pub(crate) const BATCH: u64 = 64;
/// WAL frames (pages) past which the writer waits for a checkpoint to copy them all: 32 MiB
/// at 4 KiB pages. Every such wait costs the writer the checkpoint's two fsyncs (a few ms
/// here), so the limit sets how rarely it pays them: at 4096 frames the waits took 3% of a
/// long run of sends, at 16384 1%.
pub(crate) const FRAME_LIMIT: i64 = 8192;
/// Commits not yet covered by a finished checkpoint at which the writer waits for one: the
/// checkpointer fell this far behind (slow fsyncs), and the WAL grows by the dozen pages of
/// each.
pub(crate) const BEHIND_LIMIT: u64 = 512;
/// How long the last commits of a burst wait to be checkpointed.
pub(crate) const IDLE: Duration = Duration::from_millis(20);

#[derive(Default)]
struct State {
    /// Commits of the writer so far.
    commits: u64,
    /// Commits that a finished checkpoint started after (their frames were copied).
    covered: u64,
    /// The checkpointer is waiting for work (a commit must wake it).
    idle: bool,
    /// The last checkpoint found a WAL of `FRAME_LIMIT` frames or more.
    wal_long: bool,
    /// The writer waits for a checkpoint.
    urgent: bool,
    stop: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the checkpointer.
    work: Condvar,
    /// Wakes a writer waiting for a checkpoint.
    done: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The checkpoint thread of one writing connection; on drop it checkpoints what is left,
/// stops and is joined.
pub(crate) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing the world that `conn` (a connection of its own) opens.
    pub(crate) fn start(conn: Connection) -> std::io::Result<Checkpointer> {
        let shared = Arc::new(Shared::default());
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("wal-checkpoint".into())
            .spawn(move || run(&theirs, &conn))?;
        Ok(Checkpointer {
            shared,
            thread: Some(thread),
        })
    }

    /// Counts a commit of the writer; wakes the checkpointer when it has work, and waits for
    /// it when the WAL has grown too long.
    pub(crate) fn committed(&self) {
        let mut st = self.shared.lock();
        st.commits += 1;
        let behind = st.commits - st.covered;
        // 1: the checkpointer sleeps without a deadline until something is pending.
        let wait = st.wal_long || behind >= BEHIND_LIMIT;
        if st.idle && (behind == 1 || behind >= BATCH || wait) {
            self.shared.work.notify_one();
        }
        if wait {
            st.urgent = true;
            let target = st.commits;
            while st.covered < target && !st.stop {
                st = self.shared.done.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            st.urgent = false;
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.work.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(shared: &Shared, conn: &Connection) {
    let mut timed_out = false;
    loop {
        let mut st = shared.lock();
        let (target, writer_waits) = loop {
            if st.stop && st.commits == st.covered {
                return;
            }
            let behind = st.commits - st.covered;
            if behind >= BATCH || (behind > 0 && (timed_out || st.urgent || st.stop)) {
                break (st.commits, st.urgent);
            }
            st.idle = true;
            // Nothing pending: sleep until a commit; something pending: at most IDLE.
            if behind == 0 {
                st = shared.work.wait(st).unwrap_or_else(|e| e.into_inner());
                timed_out = false;
            } else {
                let (g, r) = shared
                    .work
                    .wait_timeout(st, IDLE)
                    .unwrap_or_else(|e| e.into_inner());
                st = g;
                timed_out = r.timed_out();
            }
            st.idle = false;
        };
        drop(st);
        timed_out = false;
        // (busy, frames in the WAL when the checkpoint began, frames copied so far).
        let frames = conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
            })
            .map_err(|e| tracing::debug!("background checkpoint failed: {e}"));
        let mut st = shared.lock();
        st.covered = st.covered.max(target);
        // Even when it copied every frame it saw, a running writer has appended since: only a
        // whole copy made while it waits lets the WAL start over (with its next write).
        st.wal_long = matches!(frames, Ok((log, copied))
            if log >= FRAME_LIMIT && (!writer_waits || copied < log));
        shared.done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::world::{OutgoingSpec, World};

    #[test]
    fn a_deferred_writer_keeps_the_wal_bounded_and_its_commits_visible() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("chat.db");
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/worlds/family-group.json5");
        drop(World::build_from_scenario_file(&fixture, &db).unwrap());
        let w = World::open(&db).unwrap();
        w.defer_checkpoints().unwrap();
        let reader = World::open(&db).unwrap();
        let before = reader.sent(0).unwrap().len();
        let page: u64 = w
            .conn()
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap();
        // A send dirties about a dozen pages; allow a few more.
        let bound = (FRAME_LIMIT as u64 + BEHIND_LIMIT * 16) * (page + 24);
        let wal = dir.path().join("chat.db-wal");
        let sends = 4_000;
        let mut largest = 0;
        for i in 0..sends {
            let row = w
                .record_send(&OutgoingSpec {
                    chat_id: 2,
                    text: format!("n{i}"),
                    ..Default::default()
                })
                .unwrap();
            if i % 100 == 0 {
                assert_eq!(
                    reader.max_rowid().unwrap(),
                    row.id,
                    "committed before return"
                );
            }
            largest = largest.max(std::fs::metadata(&wal).unwrap().len());
        }
        assert!(
            (sends as u64) * 12 * page > bound,
            "enough sends to outgrow the bound"
        );
        assert!(
            largest <= bound,
            "WAL grew to {largest} bytes (bound {bound})"
        );
        // The checkpointer stops with the world; the rows are all there.
        drop(w);
        assert_eq!(reader.sent(0).unwrap().len(), before + sends);
    }
}
