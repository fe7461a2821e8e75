//! The chat.db-shaped world: schema, scenarios, reads and writes.
//!
//! A world is a SQLite file with the subset of the macOS Messages `chat.db` schema that imsg
//! reads (`schema`), so real imsg can be pointed at it with `--db`, and a copy of a real
//! `chat.db` can be opened here (missing optional columns read as NULL). Dates are Apple-epoch
//! nanoseconds (`dates`). Several processes share one world: WAL mode, a 5 s busy timeout, and
//! every write is one short `BEGIN IMMEDIATE` transaction (`write`). Scenario files (JSON5)
//! compile into a world (`scenario`). Reads live in `read`. A connection that writes on a
//! request path can leave its WAL checkpoints to a thread of their own (`checkpoint`).

mod checkpoint;
pub mod dates;
pub mod read;
pub mod scenario;
pub mod schema;
pub mod tapback;
mod typedstream;
mod write;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// Errors of the world store. Each names the bad value or the file.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    /// SQLite failed on this world file.
    #[error("sqlite error on {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    /// A file could not be read, written or copied.
    #[error("{0}")]
    Io(String),
    /// A chat, message, handle or file named by the caller does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A bad argument (wrong kind, empty handle, file already exists...).
    #[error("{0}")]
    Invalid(String),
    /// A scenario file is malformed; the text names the file and the key.
    #[error("{0}")]
    Scenario(String),
}

/// Result of world operations.
pub type Result<T> = std::result::Result<T, WorldError>;

/// An open world file.
pub struct World {
    conn: Connection,
    path: PathBuf,
    /// Columns of `message` present in this file (a real chat.db may lack newer ones).
    message_cols: HashSet<String>,
    /// Whether our side tables (`fake_imsg_meta`, `fake_imsg_contact`) exist.
    has_side_tables: std::cell::Cell<bool>,
    /// `defer_checkpoints` was called (and the checkpointer has not failed to start).
    deferred: std::cell::Cell<bool>,
    /// The checkpoint thread of a deferred world, started by its first commit.
    checkpointer: std::cell::RefCell<Option<checkpoint::Checkpointer>>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A `chat` row with its participants and activity.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRow {
    /// chat.ROWID
    pub id: i64,
    /// "iMessage;+;chat123..." / "iMessage;-;+15551234567" / "SMS;-;+1555..." ("" allowed)
    pub guid: String,
    /// chat.chat_identifier ("chat123..." for groups, the handle for DMs)
    pub identifier: String,
    pub display_name: Option<String>,
    /// chat.service_name: "iMessage" | "SMS"
    pub service: String,
    /// handle.id values via chat_handle_join, sorted, deduped, non-empty
    pub participants: Vec<String>,
    /// newest chat_message_join.message_date (apple ns)
    pub last_message_date: Option<i64>,
    pub account_id: Option<String>,
    pub account_login: Option<String>,
    pub last_addressed_handle: Option<String>,
    /// inbound (is_from_me=0) rows with is_read=0
    pub unread_count: i64,
    /// The world's contact name for a direct chat's handle (our stand-in for Contacts).
    pub contact_name: Option<String>,
}

impl ChatRow {
    /// imsg's rule: the guid or the identifier contains `;+;`.
    pub fn is_group(&self) -> bool {
        self.guid.contains(";+;") || self.identifier.contains(";+;")
    }
}

/// An `attachment` row.
#[derive(Debug, Clone, PartialEq)]
pub struct AttachmentRow {
    pub rowid: i64,
    /// raw attachment.filename (may start with "~/")
    pub filename: String,
    pub transfer_name: String,
    pub uti: String,
    pub mime_type: String,
    pub total_bytes: i64,
    pub is_sticker: bool,
}

impl AttachmentRow {
    /// `filename` with a leading `~` expanded to $HOME; "" if the filename is empty.
    pub fn original_path(&self) -> String {
        expand_tilde(&self.filename)
    }

    /// True when the path is empty, absent, or a directory.
    pub fn missing(&self) -> bool {
        let p = self.original_path();
        p.is_empty() || !Path::new(&p).is_file()
    }
}

pub(crate) fn expand_tilde(filename: &str) -> String {
    if filename == "~" || filename.starts_with("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return format!("{}{}", home.to_string_lossy(), &filename[1..]);
        }
    }
    filename.to_string()
}

/// A `message` row with its sender, chat and attachments.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRow {
    /// message.ROWID
    pub id: i64,
    pub guid: String,
    /// lowest joined chat ROWID; None = not joined yet
    pub chat_id: Option<i64>,
    /// handle.id, else destination_caller_id, else ""
    pub sender: String,
    pub is_from_me: bool,
    pub text: String,
    /// apple ns
    pub date: i64,
    pub is_read: bool,
    /// apple ns, 0 = unread
    pub date_read: i64,
    /// message.service
    pub service: String,
    /// raw, e.g. "p:0/ABC-..." (tapbacks and replies)
    pub associated_message_guid: Option<String>,
    /// 0 normal; 2000-2006 tapback add; 3000-3006 remove
    pub associated_message_type: i64,
    /// custom emoji for 2006/3006
    pub associated_message_emoji: Option<String>,
    pub thread_originator_guid: Option<String>,
    /// message.thread_originator_part (e.g. "0:0:5")
    pub thread_originator_part: Option<String>,
    /// message.reply_to_guid column
    pub reply_to_guid: Option<String>,
    pub destination_caller_id: Option<String>,
    pub balloon_bundle_id: Option<String>,
    /// always loaded
    pub attachments: Vec<AttachmentRow>,
}

impl MessageRow {
    /// A tapback add or removal row (associated_message_type 2000..=3006).
    pub fn is_reaction(&self) -> bool {
        (2000..=3006).contains(&self.associated_message_type)
    }
}

/// Row counts of a world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub chats: i64,
    /// Message rows that are not tapbacks.
    pub messages: i64,
    pub attachments: i64,
    /// Tapback rows.
    pub reactions: i64,
}

/// Parameters of `World::history`.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    pub chat_id: i64,
    pub limit: usize,
    /// Sender handles to keep (case-insensitive); empty = all.
    pub participants: Vec<String>,
    /// Inclusive, apple ns.
    pub start: Option<i64>,
    /// Exclusive, apple ns.
    pub end: Option<i64>,
}

/// What `World::inject` writes.
#[derive(Debug, Clone, Default)]
pub struct InjectSpec {
    /// existing chat; None + new_chat => create one
    pub chat_id: Option<i64>,
    /// create the chat (and handles) if it does not exist
    pub new_chat: Option<NewChat>,
    /// sender handle ("+15551234567" / "a@b.com"); created in `handle` if new
    pub from: String,
    pub text: String,
    /// files; copied into the world's attachments dir
    pub attachments: Vec<PathBuf>,
    /// (kind: love|like|dislike|laugh|emphasis|question, target guid); `-love` removes,
    /// `custom:🎉` (or a bare emoji) is a custom tapback
    pub reaction: Option<(String, String)>,
    pub reply_to_guid: Option<String>,
    /// default false; true lets tests write "mirror" rows
    pub is_from_me: bool,
    /// default now
    pub date: Option<i64>,
    /// write the row but NOT its chat_message_join (fault emulation)
    pub unjoined: bool,
}

/// A chat to create on inject.
#[derive(Debug, Clone, Default)]
pub struct NewChat {
    pub group: bool,
    pub display_name: Option<String>,
    pub participants: Vec<String>,
    /// "iMessage"|"SMS"
    pub service: String,
}

/// What `send` writes (is_from_me = 1).
#[derive(Debug, Clone, Default)]
pub struct OutgoingSpec {
    pub chat_id: i64,
    pub text: String,
    pub file: Option<PathBuf>,
    pub service: String,
}

impl World {
    /// Creates a new world file with the schema, in WAL mode. Fails if the file exists.
    pub fn create(path: &Path) -> Result<World> {
        if path.exists() {
            return Err(WorldError::Invalid(format!(
                "world file {} already exists",
                path.display()
            )));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(WorldError::NotFound(format!(
                    "directory {} of world file {} does not exist",
                    dir.display(),
                    path.display()
                )));
            }
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sql_err(path, e))?;
        configure(&conn, path)?;
        conn.execute_batch(&format!("BEGIN;{}COMMIT;", schema::SCHEMA))
            .map_err(|e| sql_err(path, e))?;
        Self::from_conn(conn, path)
    }

    /// Opens an existing world (or a copy of a real chat.db). Fails if the file is absent.
    pub fn open(path: &Path) -> Result<World> {
        if !path.is_file() {
            return Err(WorldError::NotFound(format!(
                "world file {} does not exist",
                path.display()
            )));
        }
        // NO_MUTEX (rusqlite's default): a Connection is never shared between threads, so
        // SQLite's per-call connection mutex is pure overhead on every column read.
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sql_err(path, e))?;
        configure(&conn, path)?;
        Self::from_conn(conn, path)
    }

    /// Opens the world, creating an empty one if the file does not exist.
    pub fn open_or_create(path: &Path) -> Result<World> {
        if path.exists() {
            Self::open(path)
        } else {
            Self::create(path)
        }
    }

    fn from_conn(conn: Connection, path: &Path) -> Result<World> {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let message_cols = table_columns(&conn, "message").map_err(|e| sql_err(&path, e))?;
        if message_cols.is_empty() {
            return Err(WorldError::Invalid(format!(
                "{} is not a chat.db: it has no message table",
                path.display()
            )));
        }
        let has_side_tables = !table_columns(&conn, "fake_imsg_meta")
            .map_err(|e| sql_err(&path, e))?
            .is_empty();
        ensure_read_indexes(&conn, &path);
        Ok(World {
            conn,
            path,
            message_cols,
            has_side_tables: std::cell::Cell::new(has_side_tables),
            deferred: std::cell::Cell::new(false),
            checkpointer: std::cell::RefCell::new(None),
        })
    }

    /// Takes WAL checkpoints off this connection's commits and runs them on a thread of their
    /// own (see `checkpoint`), for a connection that writes on a request path. The thread
    /// starts with the first commit, so a connection that only reads costs nothing.
    pub fn defer_checkpoints(&self) -> Result<()> {
        self.conn
            .execute_batch("PRAGMA wal_autocheckpoint=0")
            .map_err(|e| self.err(e))?;
        self.deferred.set(true);
        Ok(())
    }

    /// After each commit of this connection: hands the WAL to the checkpointer.
    pub(crate) fn committed(&self) {
        if !self.deferred.get() {
            return;
        }
        let mut cp = self.checkpointer.borrow_mut();
        if cp.is_none() {
            match self.start_checkpointer() {
                Ok(c) => *cp = Some(c),
                Err(e) => {
                    // Without a checkpointer nothing would copy the WAL back: let SQLite's
                    // own checkpoints do it again.
                    tracing::warn!(
                        "world {}: no background checkpoints: {e}",
                        self.path.display()
                    );
                    self.deferred.set(false);
                    let _ = self.conn.execute_batch("PRAGMA wal_autocheckpoint=1000");
                    return;
                }
            }
        }
        if let Some(c) = cp.as_ref() {
            c.committed();
        }
    }

    fn start_checkpointer(&self) -> Result<checkpoint::Checkpointer> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| self.err(e))?;
        // A checkpoint syncs the way its own connection says; match the writer's.
        conn.execute_batch("PRAGMA synchronous=NORMAL")
            .map_err(|e| self.err(e))?;
        checkpoint::Checkpointer::start(conn)
            .map_err(|e| WorldError::Io(format!("cannot start the checkpoint thread: {e}")))
    }

    /// The world file (absolute).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where attachment files of this world are copied: `<dir of world>/Attachments`.
    pub fn attachments_dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
            .join("Attachments")
    }

    /// Compiles a JSON5 scenario file into a new world at `out` (which must not exist).
    pub fn build_from_scenario_file(scenario: &Path, out: &Path) -> Result<World> {
        let text = std::fs::read_to_string(scenario).map_err(|e| {
            WorldError::Io(format!("cannot read scenario {}: {e}", scenario.display()))
        })?;
        scenario::build(
            &text,
            &scenario.display().to_string(),
            scenario.parent(),
            out,
        )
    }

    /// Compiles JSON5 scenario text into a new world at `out`; fixture paths are relative to
    /// the current directory.
    pub fn build_from_scenario_str(json5: &str, out: &Path) -> Result<World> {
        scenario::build(json5, "<scenario>", None, out)
    }

    /// Whether `message` has the read-state columns (`is_read`, `date_read`).
    pub fn has_read_state(&self) -> bool {
        self.message_cols.contains("is_read") && self.message_cols.contains("date_read")
    }

    /// MAX(message.ROWID), 0 if there are no messages.
    pub fn max_rowid(&self) -> Result<i64> {
        self.conn
            .prepare_cached("SELECT IFNULL(MAX(ROWID), 0) FROM message")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(|e| self.err(e))
    }

    /// PRAGMA data_version: changes when another connection commits (cheap change probe).
    pub fn data_version(&self) -> Result<i64> {
        // Polled before every memoised read and by every watcher: keep it prepared.
        self.conn
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(|e| self.err(e))
    }

    /// Row counts, for the `world build` summary.
    pub fn summary(&self) -> Result<Summary> {
        let count = |sql: &str| -> Result<i64> {
            self.conn
                .query_row(sql, [], |r| r.get(0))
                .map_err(|e| self.err(e))
        };
        let reactions = if self.message_cols.contains("associated_message_type") {
            count(
                "SELECT COUNT(*) FROM message WHERE associated_message_type BETWEEN 2000 AND 3006",
            )?
        } else {
            0
        };
        Ok(Summary {
            chats: count("SELECT COUNT(*) FROM chat")?,
            messages: count("SELECT COUNT(*) FROM message")? - reactions,
            attachments: count("SELECT COUNT(*) FROM attachment")?,
            reactions,
        })
    }

    /// The local account (`me` of the scenario), used as destination_caller_id.
    pub fn me(&self) -> Option<String> {
        self.meta("me")
    }

    /// The world's contact name for a handle (our stand-in for the Contacts database).
    pub fn contact_name(&self, handle: &str) -> Option<String> {
        if !self.has_side_tables.get() || handle.is_empty() {
            return None;
        }
        self.conn
            .prepare_cached("SELECT name FROM fake_imsg_contact WHERE handle = ?1 COLLATE NOCASE")
            .and_then(|mut s| s.query_row([handle], |r| r.get(0)))
            .ok()
    }

    /// Records (or renames) a contact name for a handle.
    pub fn set_contact_name(&self, handle: &str, name: &str) -> Result<()> {
        self.ensure_side_tables()?;
        self.conn
            .execute(
                "INSERT INTO fake_imsg_contact (handle, name) VALUES (?1, ?2)
                 ON CONFLICT(handle) DO UPDATE SET name = excluded.name",
                [handle, name],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    fn meta(&self, key: &str) -> Option<String> {
        if !self.has_side_tables.get() {
            return None;
        }
        self.conn
            .prepare_cached("SELECT value FROM fake_imsg_meta WHERE key = ?1")
            .and_then(|mut s| s.query_row([key], |r| r.get(0)))
            .ok()
    }

    pub(crate) fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.ensure_side_tables()?;
        self.conn
            .execute(
                "INSERT INTO fake_imsg_meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [key, value],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    fn ensure_side_tables(&self) -> Result<()> {
        if !self.has_side_tables.get() {
            self.conn
                .execute_batch(
                    "CREATE TABLE IF NOT EXISTS fake_imsg_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                     CREATE TABLE IF NOT EXISTS fake_imsg_contact (handle TEXT PRIMARY KEY, name TEXT NOT NULL);",
                )
                .map_err(|e| self.err(e))?;
            ensure_read_indexes(&self.conn, &self.path);
            self.has_side_tables.set(true);
        }
        Ok(())
    }

    pub(crate) fn err(&self, e: rusqlite::Error) -> WorldError {
        sql_err(&self.path, e)
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }
}

fn sql_err(path: &Path, source: rusqlite::Error) -> WorldError {
    WorldError::Sqlite {
        path: path.display().to_string(),
        source,
    }
}

fn configure(conn: &Connection, path: &Path) -> Result<()> {
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| sql_err(path, e))?;
    // WAL lets the rpc server read while inject/simulator write from other processes.
    let _mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(|e| sql_err(path, e))?;
    // A world is a fixture, not a user's data: under WAL, NORMAL keeps it consistent across
    // crashes and only skips the fsync per commit, which made every `send` wait on the disk.
    conn.execute_batch("PRAGMA synchronous=NORMAL")
        .map_err(|e| sql_err(path, e))?;
    Ok(())
}

/// Adds the indexes of `schema::READ_INDEXES` that this file lacks (an older world, or a copy
/// of a real chat.db), so reads stay fast. Best effort: a read-only or busy file keeps working,
/// only slower.
fn ensure_read_indexes(conn: &Connection, path: &Path) {
    for index in schema::READ_INDEXES {
        let present = conn
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?1",
                [index.name],
                |_| Ok(()),
            )
            .is_ok();
        if present {
            continue;
        }
        let Ok(cols) = table_columns(conn, index.table) else {
            continue;
        };
        if !index.columns.iter().all(|c| cols.contains(*c)) {
            continue;
        }
        if let Err(e) = conn.execute_batch(index.sql) {
            tracing::debug!(
                "world {}: index {} not created ({e}); reads stay correct but slower",
                path.display(),
                index.name
            );
        }
    }
}

fn table_columns(conn: &Connection, table: &str) -> rusqlite::Result<HashSet<String>> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})"))?;
    let cols = stmt
        .query_map([], |r| r.get::<_, String>(1))?
        .collect::<rusqlite::Result<HashSet<_>>>()?;
    Ok(cols)
}
