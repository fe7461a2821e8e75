//! The database resource: opens the world lazily per worker thread, keyed by the file's
//! device+inode so a replaced `chat.db` rotates new requests to the new file and a removed
//! one answers -32002 until it reappears (imsg-rpc-v1.md §6.3/§6.4).

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::world::World;

use super::errors::{RpcError, DB_MISSING, DB_UNREADABLE};

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
    /// Rendered results keyed by request, valid while the data version is unchanged.
    memo: HashMap<String, (i64, Value)>,
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
        if self.forced_down {
            return Err(Down::Unreadable);
        }
        let meta = std::fs::metadata(&self.path).map_err(|_| Down::Missing)?;
        if meta.is_dir() {
            return Err(Down::Unreadable);
        }
        let key = (meta.dev(), meta.ino());
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            let fresh = match c.as_ref() {
                Some(cached) => cached.key != key || cached.path != self.path,
                None => true,
            };
            if fresh {
                *c = None;
                let world = open_checked(&self.path).ok_or(Down::Unreadable)?;
                *c = Some(Cached {
                    key,
                    path: self.path.clone(),
                    world,
                    memo: HashMap::new(),
                });
            }
            Ok(f(&c.as_ref().expect("just cached").world))
        })
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
    pub fn run_memo(
        &self,
        key: &str,
        f: impl FnOnce(&World) -> Result<Value, RpcError>,
    ) -> Result<Value, RpcError> {
        self.run(|_| Ok(()))?;
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            let cached = c.as_mut().expect("opened by run");
            let version = cached.world.data_version().ok();
            if let (Some(v), Some((at, value))) = (version, cached.memo.get(key)) {
                if *at == v {
                    return Ok(value.clone());
                }
            }
            let out = f(&cached.world)?;
            if let Some(v) = version {
                cached.memo.insert(key.to_string(), (v, out.clone()));
            }
            Ok(out)
        })
    }

    /// This thread's view of the database version: (file identity, `data_version` of this
    /// thread's connection). Any commit by another connection changes it.
    pub fn version(&self) -> Option<((u64, u64), i64)> {
        let meta = std::fs::metadata(&self.path).ok()?;
        let key = (meta.dev(), meta.ino());
        self.with(|w| w.data_version().ok())
            .ok()
            .flatten()
            .map(|v| (key, v))
    }

    /// Drops this thread's memoized results: a connection does not see its own commits in
    /// `data_version`, so writers call this after writing.
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
