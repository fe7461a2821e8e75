//! The durable store: one SQLite database, `state.db`, in `state.dir`.
//!
//! Holds the watch cursor per account and the journal of handled message GUIDs (with the
//! raw payload while a message is in flight, so a crash never loses it). Invariants:
//! the cursor only moves past a message in the same transaction that journals it, and a
//! message journaled as answered/skipped/failed is never handed to an agent again.
//! A reply being sent keeps its plan (the `send` params of every chunk) and how many chunks
//! imsg acknowledged, so a restart continues it after reconciling with the chat's history
//! instead of guessing. `health` records, per account, how the imsg connection is doing, for
//! `status`. Pairing requests, approvals and the CLI's outbox live here too ([`pairing`]).
//! The directory is 0700, the file 0600, the journal mode WAL so the CLI can read
//! while `run` writes. A busy database is waited for, never fatal; one gateway at a time holds
//! the state dir's lock ([`DirLock`]). A file that is not our database is an error naming it,
//! never a reset.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use crate::clock::{rfc3339_ms, Clock, SystemClock};

mod pairing;
mod writer;

pub use pairing::{iso_ms, Approval, PairJournal, PairingError, PairingRequest, Upsert};
pub use writer::{Db, Later};

/// File name inside `state.dir`.
pub const STATE_FILE: &str = "state.db";
/// The lock file a running gateway holds in `state.dir` (with its pid in it).
pub const LOCK_FILE: &str = "gateway.lock";
const SCHEMA_VERSION: i64 = 4;
/// How long one statement waits on a lock held by another process before we back off and
/// retry it (the retry itself is unbounded: a busy database is waited for, never fatal).
const BUSY_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create state directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open state file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state file {path} is corrupt or not an imsg-gateway state database ({detail}); move it aside to start with a fresh state")]
    Corrupt { path: PathBuf, detail: String },
    #[error("state file {path} was written by a newer imsg-gateway (schema {found}, this build knows {known})")]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("another imsg-gateway (pid {pid}) is already running on state dir {dir}; stop it first, or give this one another state.dir")]
    Locked { dir: PathBuf, pid: String },
    #[error("state file {path}: {source}")]
    Sql {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

/// Where a journaled message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum JournalStatus {
    /// Seen and admitted; the agent has not answered yet (payload kept for a restart).
    Received,
    /// The reply is being sent; a crash here must not cause a second reply.
    Answering,
    Answered,
    Skipped,
    Failed,
}

impl JournalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JournalStatus::Received => "received",
            JournalStatus::Answering => "answering",
            JournalStatus::Answered => "answered",
            JournalStatus::Skipped => "skipped",
            JournalStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<JournalStatus> {
        Some(match s {
            "received" => JournalStatus::Received,
            "answering" => JournalStatus::Answering,
            "answered" => JournalStatus::Answered,
            "skipped" => JournalStatus::Skipped,
            "failed" => JournalStatus::Failed,
            _ => return None,
        })
    }

    /// Final: the message will never be handed to an agent again.
    pub fn is_final(self) -> bool {
        !matches!(self, JournalStatus::Received)
    }
}

/// One journal row.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalEntry {
    pub account: String,
    pub guid: String,
    pub rowid: Option<i64>,
    pub chat_id: Option<i64>,
    pub status: JournalStatus,
    pub reason: Option<String>,
    pub payload: Option<String>,
    pub updated_at: String,
    /// While answering: the JSON array of `send` params, one per chunk.
    pub plan: Option<String>,
    /// While answering: how many chunks of the plan imsg has acknowledged (or history showed).
    pub sent: i64,
}

/// How one account's imsg connection is doing, for `status`.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct Health {
    pub account: String,
    /// Whether a connection is up right now (as of `updated_at`).
    pub connected: bool,
    /// Connection failures since the last connection that stayed healthy.
    pub failures_in_a_row: i64,
    /// Connection failures since the gateway started.
    pub restarts: i64,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// Rows imsg could not read, skipped so the account goes on.
    pub skipped_rows: i64,
    pub last_skipped_rowid: Option<i64>,
    pub updated_at: String,
}

/// What happened to an account's connection.
#[derive(Debug, Clone, PartialEq)]
pub enum HealthEvent<'a> {
    /// The gateway (re)started: counters of the previous run are history.
    Started,
    Connected,
    /// A connection stayed up long enough to count as healthy again.
    Stable,
    Failed(&'a str),
    Skipped {
        rowid: i64,
        error: &'a str,
    },
}

/// What to journal about an inbound message.
#[derive(Debug, Clone)]
pub struct Inbound<'a> {
    pub account: &'a str,
    pub guid: &'a str,
    pub rowid: Option<i64>,
    pub chat_id: Option<i64>,
    pub status: JournalStatus,
    pub reason: Option<&'a str>,
    /// Kept only while the status is `Received`.
    pub payload: Option<&'a str>,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Stamps rows' times: the runtime's clock, so a simulated hour moves them too.
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// The state file for a state dir.
    pub fn file_in(dir: &Path) -> PathBuf {
        dir.join(STATE_FILE)
    }

    /// Opens (creating when needed) `state.db` in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StateError> {
        private_dir(dir)?;
        let path = Self::file_in(dir);
        // Create the file ourselves so it is 0600 from its first byte.
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| StateError::Io {
                path: path.clone(),
                source,
            })?;
        let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o600));
        Self::open_file(&path)
    }

    /// Opens an existing state file without creating anything (for `status`).
    pub fn open_existing(dir: &Path) -> Result<Option<Store>, StateError> {
        let path = Self::file_in(dir);
        if !path.exists() {
            return Ok(None);
        }
        Self::open_file(&path).map(Some)
    }

    fn open_file(path: &Path) -> Result<Store, StateError> {
        // Switching a new file to WAL and migrating it take locks that SQLite's busy handler
        // does not always wait for; two processes opening one new store at once (the CLI
        // beside a starting gateway) retry instead of failing.
        let mut attempt = 0u32;
        loop {
            match Self::open_file_once(path) {
                Err(e) if e.is_busy() && attempt < 100 => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(10 + 5 * u64::from(attempt.min(20))));
                }
                r => return r,
            }
        }
    }

    fn open_file_once(path: &Path) -> Result<Store, StateError> {
        let sql = |source| StateError::Sql {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        // Room for every hot statement, savepoints and commits included (the default is 16,
        // fewer than the hot path uses, which would parse some of them again and again).
        conn.set_prepared_statement_cache_capacity(64);
        let corrupt = |e: rusqlite::Error| classify(path, e);
        // The first statement that reads the header tells a non-database file apart.
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(corrupt)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::debug!("state file {} journal mode is {mode}", path.display());
        }
        // temp_store=MEMORY: every store call runs in a savepoint, whose journal of page
        // images otherwise goes to a temporary file, one write per page it touches.
        conn.execute_batch(
            "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY;",
        )
        .map_err(corrupt)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(corrupt)?;
        if version > SCHEMA_VERSION {
            return Err(StateError::TooNew {
                path: path.to_path_buf(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        if version < SCHEMA_VERSION {
            // Another process (the CLI beside a starting gateway) may be migrating the same
            // file: the version is read again under the write lock, and the steps it still
            // needs run in that one transaction.
            conn.execute_batch("BEGIN IMMEDIATE").map_err(corrupt)?;
            let migrated = (|| -> rusqlite::Result<()> {
                let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
                if v < 1 {
                    conn.execute_batch(
                    "CREATE TABLE IF NOT EXISTS cursor(
                         account TEXT PRIMARY KEY, rowid INTEGER NOT NULL, updated_at TEXT NOT NULL);
                     CREATE TABLE IF NOT EXISTS journal(
                         account TEXT NOT NULL, guid TEXT NOT NULL, rowid INTEGER, chat_id INTEGER,
                         status TEXT NOT NULL, reason TEXT, payload TEXT,
                         received_at TEXT NOT NULL, updated_at TEXT NOT NULL,
                         PRIMARY KEY(account, guid));
                     CREATE INDEX IF NOT EXISTS journal_by_status ON journal(account, status);
                     CREATE TABLE IF NOT EXISTS outbox(
                         id INTEGER PRIMARY KEY, account TEXT NOT NULL, params TEXT NOT NULL,
                         status TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
                     PRAGMA user_version = 1;",
                )
                ?;
                }
                if v < 2 {
                    conn.execute_batch(
                        "ALTER TABLE journal ADD COLUMN plan TEXT;
                     ALTER TABLE journal ADD COLUMN sent INTEGER NOT NULL DEFAULT 0;
                     ALTER TABLE journal ADD COLUMN sent_ids TEXT;
                     CREATE INDEX IF NOT EXISTS journal_by_chat ON journal(account, chat_id, rowid);
                     CREATE TABLE IF NOT EXISTS health(
                         account TEXT PRIMARY KEY, connected INTEGER NOT NULL DEFAULT 0,
                         failures_in_a_row INTEGER NOT NULL DEFAULT 0,
                         restarts INTEGER NOT NULL DEFAULT 0, last_error TEXT, last_error_at TEXT,
                         skipped_rows INTEGER NOT NULL DEFAULT 0, last_skipped_rowid INTEGER,
                         updated_at TEXT NOT NULL);
                     PRAGMA user_version = 2;",
                    )?;
                }
                if v < 3 {
                    conn.execute_batch(
                    "CREATE TABLE IF NOT EXISTS pairing(
                         account TEXT NOT NULL, sender TEXT NOT NULL, code TEXT NOT NULL UNIQUE,
                         chat_id INTEGER, created_ms INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL,
                         status TEXT NOT NULL, PRIMARY KEY(account, sender));
                     CREATE TABLE IF NOT EXISTS approved(
                         account TEXT NOT NULL, sender TEXT NOT NULL, code TEXT, chat_id INTEGER,
                         approved_ms INTEGER NOT NULL, PRIMARY KEY(account, sender));
                     PRAGMA user_version = 3;",
                )
                ?;
                }
                if v < 4 {
                    // Only open entries are ever looked up by status (to resume them after
                    // a restart): an index of every entry's status cost three b-tree writes
                    // per message (its insert and two moves), this one two.
                    conn.execute_batch(
                        "DROP INDEX IF EXISTS journal_by_status;
                     CREATE INDEX IF NOT EXISTS journal_open ON journal(account, rowid)
                         WHERE status IN ('received', 'answering');
                     PRAGMA user_version = 4;",
                    )?;
                }
                Ok(())
            })();
            match migrated {
                Ok(()) => conn.execute_batch("COMMIT").map_err(corrupt)?,
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    return Err(corrupt(e));
                }
            }
        }
        if version == SCHEMA_VERSION {
            // A file claiming our schema must have our tables.
            conn.query_row(
                "SELECT count(*) FROM journal JOIN cursor LIMIT 1",
                [],
                |_| Ok(()),
            )
            .map_err(corrupt)?;
        }
        Ok(Store {
            conn,
            path: path.to_path_buf(),
            clock: Arc::new(SystemClock),
        })
    }

    /// Times written from now on come from `clock` (the gateway's runtime clock).
    pub fn use_clock(&mut self, clock: Arc<dyn Clock>) {
        self.clock = clock;
    }

    fn now(&self) -> String {
        rfc3339_ms(self.clock.now_ms() as i64)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` all or nothing: a transaction of its own, or a savepoint inside the store
    /// thread's batch (a transaction cannot nest; a savepoint can).
    fn atomically<T>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        let top = self.conn.is_autocommit();
        self.run_cached("SAVEPOINT atomically")
            .map_err(|e| self.sql(e))?;
        let out = f(self);
        let end = if out.is_ok() {
            self.run_cached("RELEASE atomically")
        } else {
            self.run_cached("ROLLBACK TO atomically")
                .and_then(|()| self.run_cached("RELEASE atomically"))
        };
        if let Err(e) = end {
            // A failed outermost RELEASE (the commit) leaves the transaction open.
            if top && !self.conn.is_autocommit() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            return Err(self.sql(e));
        }
        out
    }

    /// A statement on the hot path, parsed once per connection.
    fn exec_cached(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
        self.conn.prepare_cached(sql)?.execute(params)
    }

    /// A statement without parameters or rows (a savepoint, a commit), parsed once.
    pub(crate) fn run_cached(&self, sql: &str) -> rusqlite::Result<()> {
        self.exec_cached(sql, []).map(|_| ())
    }

    fn sql(&self, source: rusqlite::Error) -> StateError {
        classify(&self.path, source)
    }

    /// The watch cursor (highest rowid fully journaled); 0 when none.
    pub fn cursor(&self, account: &str) -> Result<i64, StateError> {
        Ok(self.cursor_opt(account)?.unwrap_or(0))
    }

    /// The watch cursor, or `None` before the gateway ever established where to watch from
    /// (a cursor of 0 means "from the first row": the database was empty at the tail).
    pub fn cursor_opt(&self, account: &str) -> Result<Option<i64>, StateError> {
        self.conn
            .query_row(
                "SELECT rowid FROM cursor WHERE account = ?1",
                [account],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// Moves the cursor forward (never back; use [`Store::reset_cursor`] for that).
    pub fn set_cursor(&self, account: &str, rowid: i64) -> Result<(), StateError> {
        set_cursor_on(&self.conn, account, rowid, &self.now()).map_err(|e| self.sql(e))
    }

    /// Sets the cursor to exactly `rowid` (a replaced Messages database).
    pub fn reset_cursor(&self, account: &str, rowid: i64) -> Result<(), StateError> {
        self.conn
            .execute(
                "INSERT INTO cursor(account, rowid, updated_at) VALUES(?1, ?2, ?3)
                 ON CONFLICT(account) DO UPDATE SET rowid = excluded.rowid, updated_at = excluded.updated_at",
                params![account, rowid, self.now()],
            )
            .map(|_| ())
            .map_err(|e| self.sql(e))
    }

    /// All cursors, by account.
    pub fn cursors(&self) -> Result<BTreeMap<String, i64>, StateError> {
        let mut stmt = self
            .conn
            .prepare("SELECT account, rowid FROM cursor ORDER BY account")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }

    /// The journal entry of a message, if any.
    pub fn entry(&self, account: &str, guid: &str) -> Result<Option<JournalEntry>, StateError> {
        self.conn
            .query_row(
                &format!("SELECT {ENTRY_COLUMNS} FROM journal WHERE account = ?1 AND guid = ?2"),
                params![account, guid],
                row_to_entry,
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// Journals an inbound message and moves the cursor past it, in one transaction.
    /// Returns `false` (and changes nothing but the cursor) when the GUID is already journaled.
    pub fn record_inbound(&mut self, m: &Inbound<'_>) -> Result<bool, StateError> {
        let inserted = self.record_batch(m.account, std::slice::from_ref(m), None)?;
        Ok(inserted[0])
    }

    /// Journals messages that arrived together, and moves the cursor past them (and to
    /// `cursor`, for rows seen but not journaled), in one transaction: one commit for the
    /// lot, durability unchanged. Returns, per message, whether it was newly journaled.
    pub fn record_batch(
        &mut self,
        account: &str,
        items: &[Inbound<'_>],
        cursor: Option<i64>,
    ) -> Result<Vec<bool>, StateError> {
        let path = self.path.clone();
        let err = |e| classify(&path, e);
        self.atomically(|s| {
        let tx = &s.conn;
        let ts = self.now();
        let mut out = Vec::with_capacity(items.len());
        let mut top = cursor;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO journal(account, guid, rowid, chat_id, status, reason, payload, received_at, updated_at)
                     VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
                     ON CONFLICT(account, guid) DO NOTHING",
                )
                .map_err(err)?;
            for m in items {
                let payload = if m.status == JournalStatus::Received {
                    m.payload
                } else {
                    None
                };
                let n = insert
                    .execute(params![
                        m.account,
                        m.guid,
                        m.rowid,
                        m.chat_id,
                        m.status.as_str(),
                        m.reason,
                        payload,
                        ts
                    ])
                    .map_err(err)?;
                out.push(n == 1);
                if let Some(r) = m.rowid {
                    top = top.max(Some(r));
                }
            }
        }
        if let Some(rowid) = top {
            set_cursor_on(tx, account, rowid, &ts).map_err(err)?;
        }
                Ok(out)
        })
    }

    /// The highest rowid of an inbound message journaled for `account` (0 when none).
    pub fn max_journaled_rowid(&self, account: &str) -> Result<i64, StateError> {
        self.conn
            .query_row(
                "SELECT COALESCE(max(rowid), 0) FROM journal WHERE account = ?1",
                [account],
                |r| r.get(0),
            )
            .map_err(|e| self.sql(e))
    }

    /// Which of these GUIDs are journaled already (one read for a batch).
    pub fn known(&self, account: &str, guids: &[String]) -> Result<Vec<bool>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM journal WHERE account = ?1 AND guid = ?2")
            .map_err(|e| self.sql(e))?;
        guids
            .iter()
            .map(|g| {
                stmt.exists(params![account, g])
                    .map_err(|e| classify(&self.path, e))
            })
            .collect()
    }

    /// Moves a message on. A final status is never changed again; returns whether it moved.
    pub fn mark(
        &self,
        account: &str,
        guid: &str,
        status: JournalStatus,
        reason: Option<&str>,
    ) -> Result<bool, StateError> {
        let allowed_from: &[&str] = match status {
            JournalStatus::Received => &[],
            JournalStatus::Answering => &["received"],
            _ => &["received", "answering"],
        };
        if allowed_from.is_empty() {
            return Ok(false);
        }
        let changed = self
            .exec_cached(
                "UPDATE journal SET status = ?3, reason = COALESCE(?4, reason),
                     payload = NULL, plan = NULL, updated_at = ?5
                 WHERE account = ?1 AND guid = ?2 AND (status = ?6 OR status = ?7)",
                params![
                    account,
                    guid,
                    status.as_str(),
                    reason,
                    self.now(),
                    allowed_from[0],
                    allowed_from.get(1).copied().unwrap_or(allowed_from[0]),
                ],
            )
            .map_err(|e| self.sql(e))?;
        Ok(changed == 1)
    }

    /// Messages still `received` (admitted, not answered), oldest first, to resume after a crash.
    pub fn pending(&self, account: &str) -> Result<Vec<JournalEntry>, StateError> {
        self.entries_with(account, JournalStatus::Received)
    }

    /// Entries in a status, oldest first.
    pub fn entries_with(
        &self,
        account: &str,
        status: JournalStatus,
    ) -> Result<Vec<JournalEntry>, StateError> {
        let mut stmt = self
            .conn
            .prepare(&entries_with_sql(status))
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![account, status.as_str()], row_to_entry)
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }

    /// Journal counts by status (`account = None`: all accounts).
    pub fn counts(&self, account: Option<&str>) -> Result<BTreeMap<String, u64>, StateError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT status, count(*) FROM journal WHERE ?1 IS NULL OR account = ?1 GROUP BY status",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([account], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }

    /// Forgets final journal entries last updated before `cutoff` (RFC 3339); returns how
    /// many. Entries newer than any plausible replay (restart, overflow, catch-up) are kept,
    /// as is everything still in flight.
    pub fn prune(&self, cutoff: &str) -> Result<usize, StateError> {
        self.conn
            .execute(
                "DELETE FROM journal WHERE status IN ('answered', 'skipped', 'failed') AND updated_at < ?1",
                [cutoff],
            )
            .map_err(|e| self.sql(e))
    }

    /// A reply is about to be sent: `received` → `answering`, keeping the plan (a JSON array
    /// of `send` params) and the inbound payload until the reply is final. Returns whether it
    /// moved (false when the message is already final or already answering).
    pub fn begin_answer(&self, account: &str, guid: &str, plan: &str) -> Result<bool, StateError> {
        let changed = self
            .exec_cached(
                "UPDATE journal SET status = 'answering', plan = ?3, sent = 0, sent_ids = NULL,
                     updated_at = ?4
                 WHERE account = ?1 AND guid = ?2 AND status = 'received'",
                params![account, guid, plan, self.now()],
            )
            .map_err(|e| self.sql(e))?;
        Ok(changed == 1)
    }

    /// Chunk `index` of an answering reply was acknowledged by imsg (or found in the chat's
    /// history), as the outgoing row `row_id` when known.
    pub fn chunk_sent(
        &self,
        account: &str,
        guid: &str,
        index: usize,
        row_id: Option<i64>,
    ) -> Result<(), StateError> {
        // The row id is appended in SQL: one statement per acknowledged chunk, no read first.
        self.exec_cached(
            "UPDATE journal SET sent = max(sent, ?3),
                 sent_ids = CASE WHEN ?4 IS NULL THEN sent_ids
                                 ELSE json_insert(COALESCE(sent_ids, '[]'), '$[#]', ?4) END,
                 updated_at = ?5
             WHERE account = ?1 AND guid = ?2 AND status = 'answering'",
            params![account, guid, index as i64 + 1, row_id, self.now()],
        )
        .map(|_| ())
        .map_err(|e| self.sql(e))
    }

    /// The last chunk of a reply was acknowledged: records it and marks the message
    /// answered in one transaction (one commit, not two, per reply on the hot path).
    pub fn last_chunk_sent(
        &self,
        account: &str,
        guid: &str,
        index: usize,
        row_id: Option<i64>,
    ) -> Result<bool, StateError> {
        // One statement, one row rewrite: the chunk's record and the final status together.
        let changed = self
            .exec_cached(
                "UPDATE journal SET sent = max(sent, ?3),
                     sent_ids = CASE WHEN ?4 IS NULL THEN sent_ids
                                     ELSE json_insert(COALESCE(sent_ids, '[]'), '$[#]', ?4) END,
                     status = 'answered', payload = NULL, plan = NULL, updated_at = ?5
                 WHERE account = ?1 AND guid = ?2 AND status = 'answering'",
                params![account, guid, index as i64 + 1, row_id, self.now()],
            )
            .map_err(|e| self.sql(e))?;
        Ok(changed == 1)
    }

    /// Outgoing row ids already attributed to replies in a chat (acknowledged sends and
    /// reconciled ones), so reconciling one reply never claims another reply's row.
    pub fn sent_row_ids(&self, account: &str, chat_id: i64) -> Result<Vec<i64>, StateError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT sent_ids FROM journal WHERE account = ?1 AND chat_id = ?2
                     AND sent_ids IS NOT NULL
                 ORDER BY rowid DESC LIMIT 500",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![account, chat_id], |r| r.get::<_, String>(0))
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for text in rows {
            let text = text.map_err(|e| self.sql(e))?;
            let ids: Vec<i64> = serde_json::from_str(&text).unwrap_or_default();
            out.extend(ids);
        }
        Ok(out)
    }

    /// Records what happened to an account's imsg connection.
    pub fn record_health(&self, account: &str, event: &HealthEvent<'_>) -> Result<(), StateError> {
        let ts = self.now();
        self.conn
            .execute(
                "INSERT INTO health(account, updated_at) VALUES(?1, ?2)
                 ON CONFLICT(account) DO NOTHING",
                params![account, ts],
            )
            .map_err(|e| self.sql(e))?;
        let (sql, extra): (&str, Option<String>) = match event {
            HealthEvent::Started => (
                "UPDATE health SET connected = 0, failures_in_a_row = 0, restarts = 0,
                     updated_at = ?2 WHERE account = ?1",
                None,
            ),
            HealthEvent::Connected => (
                "UPDATE health SET connected = 1, updated_at = ?2 WHERE account = ?1",
                None,
            ),
            HealthEvent::Stable => (
                "UPDATE health SET failures_in_a_row = 0, updated_at = ?2 WHERE account = ?1",
                None,
            ),
            HealthEvent::Failed(e) => (
                "UPDATE health SET connected = 0, failures_in_a_row = failures_in_a_row + 1,
                     restarts = restarts + 1, last_error = ?3, last_error_at = ?2,
                     updated_at = ?2 WHERE account = ?1",
                Some(e.to_string()),
            ),
            HealthEvent::Skipped { rowid, error } => {
                self.conn
                    .execute(
                        "UPDATE health SET skipped_rows = skipped_rows + 1,
                             last_skipped_rowid = ?3, last_error = ?4, last_error_at = ?2,
                             updated_at = ?2 WHERE account = ?1",
                        params![account, ts, rowid, error],
                    )
                    .map_err(|e| self.sql(e))?;
                return Ok(());
            }
        };
        match extra {
            Some(x) => self.conn.execute(sql, params![account, ts, x]),
            None => self.conn.execute(sql, params![account, ts]),
        }
        .map(|_| ())
        .map_err(|e| self.sql(e))
    }

    /// The health of an account's connection, if the gateway ever ran it.
    pub fn health(&self, account: &str) -> Result<Option<Health>, StateError> {
        self.conn
            .query_row(
                "SELECT account, connected, failures_in_a_row, restarts, last_error,
                     last_error_at, skipped_rows, last_skipped_rowid, updated_at
                 FROM health WHERE account = ?1",
                [account],
                |r| {
                    Ok(Health {
                        account: r.get(0)?,
                        connected: r.get::<_, i64>(1)? != 0,
                        failures_in_a_row: r.get(2)?,
                        restarts: r.get(3)?,
                        last_error: r.get(4)?,
                        last_error_at: r.get(5)?,
                        skipped_rows: r.get(6)?,
                        last_skipped_rowid: r.get(7)?,
                        updated_at: r.get(8)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// The most recent journal entries (newest first), for `status`.
    pub fn recent(&self, limit: usize) -> Result<Vec<JournalEntry>, StateError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {ENTRY_COLUMNS} FROM journal ORDER BY updated_at DESC LIMIT ?1"
            ))
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([limit as i64], row_to_entry)
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }
}

impl StateError {
    /// The store could not run a call at all (its thread is gone, its transaction was lost).
    pub(crate) fn stopped(why: &str) -> StateError {
        StateError::Sql {
            path: PathBuf::new(),
            source: rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
                Some(why.to_string()),
            ),
        }
    }

    /// The same error again, for every call of a transaction that failed as a whole.
    pub(crate) fn duplicate(&self) -> StateError {
        match self {
            StateError::Sql {
                path,
                source: rusqlite::Error::SqliteFailure(f, m),
            } => StateError::Sql {
                path: path.clone(),
                source: rusqlite::Error::SqliteFailure(*f, m.clone()),
            },
            StateError::Corrupt { path, detail } => StateError::Corrupt {
                path: path.clone(),
                detail: detail.clone(),
            },
            other => StateError::stopped(&other.to_string()),
        }
    }

    /// Another process holds a lock on the database right now: wait and retry.
    pub fn is_busy(&self) -> bool {
        use rusqlite::ErrorCode;
        matches!(self, StateError::Sql { source: rusqlite::Error::SqliteFailure(f, _), .. }
            if matches!(f.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
    }
}

/// Creates the state dir (and parents) owner-only, and makes an existing one owner-only.
fn private_dir(dir: &Path) -> Result<(), StateError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StateError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    Ok(())
}

/// The running gateway's hold on a state dir: an exclusive lock on `gateway.lock` with the
/// holder's pid in it, released when this value (or the process) goes away.
#[derive(Debug)]
pub struct DirLock {
    _file: fs::File,
    path: PathBuf,
}

impl DirLock {
    /// Takes the lock, or says which pid holds it.
    pub fn acquire(dir: &Path) -> Result<DirLock, StateError> {
        use std::io::{Read, Seek, Write};
        private_dir(dir)?;
        let path = dir.join(LOCK_FILE);
        let io = |source| StateError::Io {
            path: path.clone(),
            source,
        };
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(StateError::Locked {
                    dir: dir.to_path_buf(),
                    pid: if pid.is_empty() {
                        "unknown".into()
                    } else {
                        pid.to_string()
                    },
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(DirLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn set_cursor_on(conn: &Connection, account: &str, rowid: i64, ts: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO cursor(account, rowid, updated_at) VALUES(?1, ?2, ?3)
         ON CONFLICT(account) DO UPDATE SET rowid = max(rowid, excluded.rowid), updated_at = excluded.updated_at",
    )?
    .execute(params![account, rowid, ts])
    .map(|_| ())
}

fn row_to_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<JournalEntry> {
    let status: String = r.get(4)?;
    Ok(JournalEntry {
        account: r.get(0)?,
        guid: r.get(1)?,
        rowid: r.get(2)?,
        chat_id: r.get(3)?,
        status: JournalStatus::parse(&status).unwrap_or(JournalStatus::Failed),
        reason: r.get(5)?,
        payload: r.get(6)?,
        updated_at: r.get(7)?,
        plan: r.get(8)?,
        sent: r.get(9)?,
    })
}

const ENTRY_COLUMNS: &str =
    "account, guid, rowid, chat_id, status, reason, payload, updated_at, plan, sent";

fn classify(path: &Path, e: rusqlite::Error) -> StateError {
    use rusqlite::ErrorCode;
    match &e {
        rusqlite::Error::SqliteFailure(f, msg)
            if matches!(f.code, ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) =>
        {
            StateError::Corrupt {
                path: path.to_path_buf(),
                detail: msg.clone().unwrap_or_else(|| e.to_string()),
            }
        }
        rusqlite::Error::SqliteFailure(_, Some(msg)) if msg.contains("no such table") => {
            StateError::Corrupt {
                path: path.to_path_buf(),
                detail: msg.clone(),
            }
        }
        _ => StateError::Sql {
            path: path.to_path_buf(),
            source: e,
        },
    }
}

/// The query of [`Store::entries_with`]: for an open status, its own term lets SQLite read
/// the partial index `journal_open` instead of the whole journal.
fn entries_with_sql(status: JournalStatus) -> String {
    let open = match status {
        JournalStatus::Received | JournalStatus::Answering => {
            " AND status IN ('received', 'answering')"
        }
        _ => "",
    };
    format!(
        "SELECT {ENTRY_COLUMNS} FROM journal WHERE account = ?1 AND status = ?2{open}
         ORDER BY rowid, received_at"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbound<'a>(guid: &'a str, rowid: i64, status: JournalStatus) -> Inbound<'a> {
        Inbound {
            account: "default",
            guid,
            rowid: Some(rowid),
            chat_id: Some(1),
            status,
            reason: None,
            payload: Some(r#"{"id":1}"#),
        }
    }

    #[test]
    fn cursor_moves_only_with_the_journal_and_never_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        assert_eq!(s.cursor("default").unwrap(), 0);
        assert!(s
            .record_inbound(&inbound("g1", 5, JournalStatus::Received))
            .unwrap());
        assert_eq!(s.cursor("default").unwrap(), 5);
        // A lower rowid (catch-up replay) never moves the cursor back.
        assert!(s
            .record_inbound(&inbound("g0", 3, JournalStatus::Skipped))
            .unwrap());
        assert_eq!(s.cursor("default").unwrap(), 5);
        s.set_cursor("default", 4).unwrap();
        assert_eq!(s.cursor("default").unwrap(), 5);
        s.set_cursor("default", 9).unwrap();
        assert_eq!(s.cursor("default").unwrap(), 9);
        assert_eq!(s.cursor("other").unwrap(), 0);
        s.reset_cursor("default", 2).unwrap();
        assert_eq!(s.cursor("default").unwrap(), 2);
    }

    #[test]
    fn a_handled_message_is_never_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        assert!(s
            .record_inbound(&inbound("g1", 1, JournalStatus::Received))
            .unwrap());
        // Seen again (restart, overflow replay): not inserted again.
        assert!(!s
            .record_inbound(&inbound("g1", 1, JournalStatus::Received))
            .unwrap());
        assert_eq!(s.pending("default").unwrap().len(), 1);
        assert_eq!(
            s.pending("default").unwrap()[0].payload.as_deref(),
            Some(r#"{"id":1}"#)
        );
        assert!(s
            .mark("default", "g1", JournalStatus::Answering, None)
            .unwrap());
        assert!(s
            .mark("default", "g1", JournalStatus::Answered, None)
            .unwrap());
        // Final states stay final.
        assert!(!s
            .mark("default", "g1", JournalStatus::Failed, Some("late"))
            .unwrap());
        assert!(!s
            .mark("default", "g1", JournalStatus::Answering, None)
            .unwrap());
        assert!(!s
            .mark("default", "g1", JournalStatus::Received, None)
            .unwrap());
        let e = s.entry("default", "g1").unwrap().unwrap();
        assert_eq!(e.status, JournalStatus::Answered);
        assert_eq!(e.payload, None, "payload is dropped once handled");
        assert!(s.pending("default").unwrap().is_empty());
        assert!(!s
            .record_inbound(&inbound("g1", 1, JournalStatus::Received))
            .unwrap());
        assert_eq!(
            s.entry("default", "g1").unwrap().unwrap().status,
            JournalStatus::Answered
        );
    }

    #[test]
    fn skipped_rows_keep_their_reason_and_counts_add_up() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        let mut m = inbound("g1", 1, JournalStatus::Skipped);
        m.reason = Some("sent from me");
        s.record_inbound(&m).unwrap();
        s.record_inbound(&inbound("g2", 2, JournalStatus::Received))
            .unwrap();
        s.mark(
            "default",
            "g2",
            JournalStatus::Failed,
            Some("agent timed out"),
        )
        .unwrap();
        let e = s.entry("default", "g1").unwrap().unwrap();
        assert_eq!(e.reason.as_deref(), Some("sent from me"));
        assert_eq!(e.payload, None);
        assert_eq!(
            s.entry("default", "g2").unwrap().unwrap().reason.as_deref(),
            Some("agent timed out")
        );
        let counts = s.counts(None).unwrap();
        assert_eq!(counts.get("skipped"), Some(&1));
        assert_eq!(counts.get("failed"), Some(&1));
        assert_eq!(s.counts(Some("nobody")).unwrap().len(), 0);
    }

    #[test]
    fn acknowledged_chunks_count_and_claim_their_rows() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.record_inbound(&inbound("g1", 5, JournalStatus::Received))
            .unwrap();
        assert!(s.begin_answer("default", "g1", "[{},{},{}]").unwrap());
        s.chunk_sent("default", "g1", 0, Some(10)).unwrap();
        s.chunk_sent("default", "g1", 1, None).unwrap();
        s.chunk_sent("default", "g1", 2, Some(12)).unwrap();
        let e = s.entry("default", "g1").unwrap().unwrap();
        assert_eq!((e.status, e.sent), (JournalStatus::Answering, 3));
        assert_eq!(e.plan.as_deref(), Some("[{},{},{}]"));
        assert_eq!(s.sent_row_ids("default", 1).unwrap(), vec![10, 12]);
        assert!(s.last_chunk_sent("default", "g1", 3, Some(14)).unwrap());
        let e = s.entry("default", "g1").unwrap().unwrap();
        assert_eq!(
            (e.status, e.plan, e.sent),
            (JournalStatus::Answered, None, 4)
        );
        assert_eq!(s.sent_row_ids("default", 1).unwrap(), vec![10, 12, 14]);
        // A final reply takes no more acknowledgements.
        s.chunk_sent("default", "g1", 4, Some(13)).unwrap();
        assert!(!s.last_chunk_sent("default", "g1", 4, Some(13)).unwrap());
        assert_eq!(s.sent_row_ids("default", 1).unwrap(), vec![10, 12, 14]);
    }

    #[test]
    fn a_version_3_store_moves_to_the_index_of_open_entries_keeping_them() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = Store::open(dir.path()).unwrap();
            s.record_inbound(&inbound("open", 2, JournalStatus::Received))
                .unwrap();
            s.record_inbound(&inbound("done", 1, JournalStatus::Skipped))
                .unwrap();
        }
        // Back to what a version 3 gateway left: the index of every entry's status.
        let file = dir.path().join("state.db");
        let c = Connection::open(&file).unwrap();
        c.execute_batch(
            "DROP INDEX journal_open;
             CREATE INDEX journal_by_status ON journal(account, status);
             PRAGMA user_version = 3;",
        )
        .unwrap();
        drop(c);
        let s = Store::open(dir.path()).unwrap();
        let indexes: Vec<String> = s
            .conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'journal' AND sql IS NOT NULL ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(indexes, ["journal_by_chat", "journal_open"]);
        let version: i64 = s
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 4);
        let pending: Vec<String> = s
            .pending("default")
            .unwrap()
            .into_iter()
            .map(|e| e.guid)
            .collect();
        assert_eq!(pending, ["open"]);
        // The lookup a restart makes reads the open entries' index, not the whole journal.
        let plan: Vec<String> = s
            .conn
            .prepare(&format!(
                "EXPLAIN QUERY PLAN {}",
                entries_with_sql(JournalStatus::Received)
            ))
            .unwrap()
            .query_map(params!["default", "received"], |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(plan.iter().any(|d| d.contains("journal_open")), "{plan:?}");
    }

    #[test]
    fn two_processes_creating_one_store_at_once_both_succeed() {
        // The CLI (or the simulator) opening the store while a gateway creates it used to
        // run the same migration twice ("duplicate column name: plan").
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().to_path_buf();
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let p = path.clone();
                    std::thread::spawn(move || Store::open(&p).map(|_| ()))
                })
                .collect();
            for t in threads {
                t.join().unwrap().expect("every opener succeeds");
            }
        }
    }

    #[test]
    fn files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("nested/state");
        let s = Store::open(&state).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(s.path()), 0o600);
        assert_eq!(s.path(), state.join("state.db"));
    }

    #[test]
    fn two_handles_on_one_file_see_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = Store::open(dir.path()).unwrap();
        let reader = Store::open_existing(dir.path()).unwrap().expect("exists");
        writer
            .record_inbound(&inbound("g1", 7, JournalStatus::Received))
            .unwrap();
        assert_eq!(reader.cursor("default").unwrap(), 7);
        assert_eq!(
            reader.entry("default", "g1").unwrap().unwrap().status,
            JournalStatus::Received
        );
        assert_eq!(reader.cursors().unwrap().get("default"), Some(&7));
    }

    #[test]
    fn open_existing_without_a_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Store::open_existing(dir.path()).unwrap().is_none());
        assert!(!dir.path().join("state.db").exists());
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state.db");
        let junk = b"this is not a sqlite database, just some text that is long enough to be read as a header.......";
        fs::write(&file, junk).unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(matches!(err, StateError::Corrupt { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&file.display().to_string()), "{text}");
        assert!(text.contains("corrupt"), "{text}");
        assert_eq!(fs::read(&file).unwrap(), junk, "never silently reset");
    }

    #[test]
    fn a_foreign_sqlite_file_claiming_our_schema_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state.db");
        let c = Connection::open(&file).unwrap();
        c.execute_batch("CREATE TABLE other(x); PRAGMA user_version = 1;")
            .unwrap();
        drop(c);
        let err = Store::open(dir.path()).unwrap_err();
        assert!(matches!(err, StateError::Corrupt { .. }), "{err:?}");
    }

    #[test]
    fn prune_forgets_only_old_final_entries() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.record_inbound(&inbound("done", 1, JournalStatus::Skipped))
            .unwrap();
        s.record_inbound(&inbound("open", 2, JournalStatus::Received))
            .unwrap();
        assert_eq!(s.prune("2000-01-01T00:00:00.000Z").unwrap(), 0);
        assert_eq!(s.prune("9999-01-01T00:00:00.000Z").unwrap(), 1);
        assert!(s.entry("default", "done").unwrap().is_none());
        assert!(
            s.entry("default", "open").unwrap().is_some(),
            "in-flight entries stay"
        );
        assert_eq!(s.cursor("default").unwrap(), 2, "the cursor is untouched");
    }

    #[test]
    fn times_come_from_the_clock_it_is_given() {
        // The simulator moves the gateway's clock ahead; what the store stamps, and so what
        // ages out, must move with it.
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.use_clock(Arc::new(crate::clock::ManualClock::at(1_900_000_000_000)));
        s.record_health("default", &HealthEvent::Failed("imsg rpc exited"))
            .unwrap();
        let h = s.health("default").unwrap().unwrap();
        assert_eq!(h.updated_at, "2030-03-17T17:46:40.000Z");
        assert_eq!(h.last_error_at.as_deref(), Some("2030-03-17T17:46:40.000Z"));
        s.record_inbound(&inbound("done", 1, JournalStatus::Skipped))
            .unwrap();
        assert_eq!(s.prune("2030-03-17T17:46:40.000Z").unwrap(), 0);
        assert_eq!(s.prune("2030-03-17T17:46:40.001Z").unwrap(), 1);
    }

    #[test]
    fn reopening_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = Store::open(dir.path()).unwrap();
            s.record_inbound(&inbound("g1", 3, JournalStatus::Received))
                .unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.cursor("default").unwrap(), 3);
        assert_eq!(s.pending("default").unwrap()[0].guid, "g1");
    }
}
