//! The database resource: opens the world lazily per worker thread, keyed by the file's
//! device+inode so a replaced `chat.db` rotates new requests to the new file and a removed
//! one answers -32002 until it reappears (imsg-rpc-v1.md §6.3/§6.4).

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value;

use crate::world::World;

use super::errors::{RpcError, DB_MISSING, DB_UNREADABLE};
use super::out::encode;

/// Why the database is not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Down {
    Missing,
    Unreadable,
}

impl Down {
    pub fn detail(self) -> &'static str {
        match self {
            Down::Missing => DB_MISSING,
            Down::Unreadable => DB_UNREADABLE,
        }
    }
}

struct Cached {
    key: (u64, u64),
    path: PathBuf,
    world: World,
    /// Encoded results keyed by request, valid while the data version is unchanged. Kept
    /// encoded: one string is cheap to store, copy and evict, where a `Value` tree costs
    /// about as much to clone and to drop as the query that built it.
    memo: HashMap<String, (i64, String)>,
}

/// A memoizable result: the value and its wire encoding (`out::encode`).
pub struct Memoized {
    pub value: Value,
    pub encoded: String,
}

thread_local! {
    static CACHE: RefCell<Option<Cached>> = const { RefCell::new(None) };
}

/// Where the database is and whether a fault forces it down.
#[derive(Debug, Clone)]
pub struct Db {
    pub path: PathBuf,
    pub forced_down: bool,
}

impl Db {
    pub fn path_str(&self) -> String {
        self.path.display().to_string()
    }

    /// The -32002 error for a down database.
    pub fn error(&self, down: Down) -> RpcError {
        RpcError::db_unavailable(&self.path_str(), down.detail())
    }

    /// Runs `f` on this thread's open world, reopening when the file changed.
    pub fn with<T>(&self, f: impl FnOnce(&World) -> T) -> Result<T, Down> {
        self.with_cached(|c| f(&c.world))
    }

    /// Runs `f` on this thread's cache entry (world, file identity, memo), reopening the
    /// world when the file changed: one `stat` per call.
    fn with_cached<T>(&self, f: impl FnOnce(&mut Cached) -> T) -> Result<T, Down> {
        let key = self.identity()?;
        CACHE.with(|c| Ok(f(self.current(&mut c.borrow_mut(), key, false)?)))
    }

    /// Runs `f` on the server's writing connection (see [`Writer`]), reopening it when the
    /// file changed.
    pub fn write<T>(&self, writer: &Writer, f: impl FnOnce(&World) -> T) -> Result<T, Down> {
        let key = self.identity()?;
        let mut slot = writer.slot.lock().unwrap_or_else(|e| e.into_inner());
        Ok(f(&self.current(&mut slot, key, true)?.world))
    }

    /// The file's (device, inode), or why it cannot be used.
    fn identity(&self) -> Result<(u64, u64), Down> {
        if self.forced_down {
            return Err(Down::Unreadable);
        }
        let meta = std::fs::metadata(&self.path).map_err(|_| Down::Missing)?;
        if meta.is_dir() {
            return Err(Down::Unreadable);
        }
        Ok((meta.dev(), meta.ino()))
    }

    /// The entry of `slot` for the file with identity `key`, opening it if the slot is empty
    /// or holds another file.
    fn current<'c>(
        &self,
        slot: &'c mut Option<Cached>,
        key: (u64, u64),
        writes: bool,
    ) -> Result<&'c mut Cached, Down> {
        let fresh = match slot.as_ref() {
            Some(cached) => cached.key != key || cached.path != self.path,
            None => true,
        };
        if fresh {
            *slot = None;
            let world = open_checked(&self.path).ok_or(Down::Unreadable)?;
            if writes {
                // Sends must not checkpoint inside their commits.
                if let Err(e) = world.defer_checkpoints() {
                    tracing::debug!("checkpoints stay in the commits: {e}");
                }
            }
            *slot = Some(Cached {
                key,
                path: self.path.clone(),
                world,
                memo: HashMap::new(),
            });
        }
        Ok(slot.as_mut().expect("just cached"))
    }

    /// Like `with`, mapping a down database to its -32002 error.
    pub fn run<T>(&self, f: impl FnOnce(&World) -> Result<T, RpcError>) -> Result<T, RpcError> {
        match self.with(f) {
            Ok(r) => r,
            Err(d) => Err(self.error(d)),
        }
    }

    /// Like `run`, but reuses the last result for `key` while no connection has committed
    /// since (SQLite's `data_version`): repeated polls such as `chats.list` skip the query.
    /// The result comes with its encoding, which the response line reuses.
    pub fn run_memo(
        &self,
        key: &str,
        f: impl FnOnce(&World) -> Result<Value, RpcError>,
    ) -> Result<Memoized, RpcError> {
        let run = self.with_cached(|cached| {
            let version = cached.world.data_version().ok();
            if let (Some(v), Some((at, encoded))) = (version, cached.memo.get(key)) {
                if *at == v {
                    if let Ok(value) = serde_json::from_str(encoded) {
                        return Ok(Memoized {
                            value,
                            encoded: encoded.clone(),
                        });
                    }
                }
            }
            let value = f(&cached.world)?;
            let encoded = encode(&value);
            if let Some(v) = version {
                remember(&mut cached.memo, key, v, encoded.clone());
            }
            Ok(Memoized { value, encoded })
        });
        match run {
            Ok(r) => r,
            Err(d) => Err(self.error(d)),
        }
    }

    /// This thread's view of the database version: (file identity, `data_version` of this
    /// thread's connection). Any commit by another connection changes it.
    pub fn version(&self) -> Option<((u64, u64), i64)> {
        self.with_cached(|c| c.world.data_version().ok().map(|v| (c.key, v)))
            .ok()
            .flatten()
    }

    /// Drops this thread's memoized results: a connection does not see its own commits in
    /// `data_version`, so a thread that writes through its own connection calls this after
    /// writing (writes through a [`Writer`] are another connection's and need not).
    pub fn forget(&self) {
        CACHE.with(|c| {
            if let Some(cached) = c.borrow_mut().as_mut() {
                cached.memo.clear();
            }
        });
    }

    /// Opens a connection of its own (watchers keep their generation).
    pub fn open_own(&self) -> Result<World, Down> {
        if self.forced_down {
            return Err(Down::Unreadable);
        }
        if !self.path.exists() {
            return Err(Down::Missing);
        }
        open_checked(&self.path).ok_or(Down::Unreadable)
    }

    /// Whether the database can be used right now.
    pub fn probe(&self) -> Result<bool, Down> {
        self.with(|w| w.has_read_state())
    }
}

/// The one connection the server writes through, whichever thread runs the write (a lane
/// worker, or the reader running a mutation itself when nothing else is outstanding). Being
/// no thread's own connection, its commits move every other connection's `data_version`,
/// so no memo outlives them; and one writer means one checkpoint thread. Closed on drop or
/// by `close`.
#[derive(Default)]
pub struct Writer {
    slot: Mutex<Option<Cached>>,
}

impl Writer {
    /// Closes the connection (its last commits are checkpointed first).
    pub fn close(&self) {
        let cached = self.slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(cached);
    }
}

/// Most results a memo keeps: a client polls with a few distinct requests, and one that
/// varies its params (every `chats.list` a new `limit`) must not make the server hoard an
/// answer per variant.
pub const MEMO_CAP: usize = 64;

/// Stores `encoded` for `key` at `version` in a memo (this thread's, or the server's shared
/// one), first dropping results of other versions (never served again) and, if it is still
/// full, everything.
pub fn remember<V: PartialEq + Copy>(
    memo: &mut HashMap<String, (V, String)>,
    key: &str,
    version: V,
    encoded: String,
) {
    if memo.len() >= MEMO_CAP && !memo.contains_key(key) {
        memo.retain(|_, (v, _)| *v == version);
        if memo.len() >= MEMO_CAP {
            memo.clear();
        }
    }
    memo.insert(key.to_string(), (version, encoded));
}

/// Opens a world and proves it readable (a garbage file opens lazily in SQLite).
fn open_checked(path: &Path) -> Option<World> {
    let w = World::open(path).ok()?;
    w.max_rowid().ok()?;
    Some(w)
}

/// `~` expansion and absolute path for `--db`.
pub fn expand_path(p: &str) -> PathBuf {
    let expanded = if p == "~" || p.starts_with("~/") {
        let home = std::env::var("HOME").unwrap_or_default();
        PathBuf::from(format!("{home}{}", &p[1..]))
    } else {
        PathBuf::from(p)
    };
    if expanded.is_absolute() {
        expanded
    } else {
        std::env::current_dir()
            .map(|d| d.join(&expanded))
            .unwrap_or(expanded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memo_keeps_at_most_its_cap_and_prefers_the_current_version() {
        let mut memo = HashMap::new();
        for i in 0..MEMO_CAP {
            remember(&mut memo, &format!("old/{i}"), 1, format!("r{i}"));
        }
        assert_eq!(memo.len(), MEMO_CAP);
        // Full: a new version's result evicts every result of other versions.
        remember(&mut memo, "new/0", 2, "n0".into());
        assert_eq!(memo.len(), 1);
        for i in 1..3 * MEMO_CAP {
            remember(&mut memo, &format!("new/{i}"), 2, format!("n{i}"));
            assert!(memo.len() <= MEMO_CAP, "memo grew to {}", memo.len());
        }
        // Replacing a present key never evicts.
        let before = memo.len();
        let key = memo.keys().next().unwrap().clone();
        remember(&mut memo, &key, 2, "again".into());
        assert_eq!(memo.len(), before);
        assert_eq!(memo[&key], (2, "again".to_string()));
    }
}
