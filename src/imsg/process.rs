//! Spawning `<cliPath> rpc [--db <dbPath>]` and tearing it down.
//!
//! The child's stdout feeds a [`Client`], its stderr is logged line by line (never fatal,
//! each line capped at [`MAX_STDERR_LINE_BYTES`]), and shutdown closes stdin first (an imsg
//! child drains and exits at EOF), then kills it.
//!
//! The child runs in its own process group and is always killed as a group
//! ([`ProcessGroup`]): a `cliPath` wrapper that runs imsg without `exec` (or an ssh in front
//! of it) would otherwise leave imsg running after the wrapper is gone. Exec agents
//! (`crate::agent`) use the same [`ProcessGroup`].

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::client::{Client, Frame, LineReader, Notifications};

/// The longest stderr line logged; the rest of a longer line is dropped (its length is
/// logged). A log line is for a person, and a child must not grow our memory through it.
pub const MAX_STDERR_LINE_BYTES: usize = 8 * 1024;

/// The process group of a child spawned with `process_group(0)` (its id is the child's pid).
///
/// [`ProcessGroup::kill`] sends SIGKILL to every member, once: after the group is gone its id
/// may be reused, so a second signal could hit a stranger. Dropping an unkilled group kills
/// it, so no exit path (an error, a dropped future) leaves grandchildren behind.
#[derive(Debug)]
pub struct ProcessGroup {
    pgid: Option<libc::pid_t>,
}

impl ProcessGroup {
    /// The group led by `child`; call right after spawning (a reaped child has no id).
    pub fn of(child: &Child) -> ProcessGroup {
        // 0 or 1 would name our own group or every process we may signal: never kill those.
        let pgid = child
            .id()
            .and_then(|pid| libc::pid_t::try_from(pid).ok())
            .filter(|pid| *pid > 1);
        ProcessGroup { pgid }
    }

    /// SIGKILL to the whole group, whether or not its leader has exited; no-op the second
    /// time. ESRCH (nobody left in the group) is the common, fine case.
    pub fn kill(&mut self) {
        let Some(pgid) = self.pgid.take() else {
            return;
        };
        // SAFETY: kill(2) takes two integers and touches none of our memory.
        let rc = unsafe { libc::kill(-pgid, libc::SIGKILL) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::ESRCH) {
                tracing::debug!(pgid, "killing process group failed: {err}");
            }
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How to start the child.
#[derive(Debug, Clone)]
pub struct SpawnSpec {
    /// `imessage.cliPath`: a binary on PATH, a path, or a wrapper script.
    pub cli_path: String,
    pub db_path: Option<PathBuf>,
    /// Label used in logs (the account id).
    pub label: String,
    pub request_timeout: Duration,
}

impl SpawnSpec {
    pub fn args(&self) -> Vec<String> {
        let mut args = vec!["rpc".to_string()];
        if let Some(db) = &self.db_path {
            let s = db.to_string_lossy().trim().to_string();
            if !s.is_empty() {
                args.push("--db".into());
                args.push(s);
            }
        }
        args
    }
}

/// Why the child could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("imsg not found at {path}: {source}")]
    NotFound {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot start imsg at {path}: {source}")]
    Other {
        path: String,
        source: std::io::Error,
    },
}

/// A running `imsg rpc` child with its client.
pub struct ImsgProcess {
    /// First, so it drops first: the group is killed while the leader is not yet reaped (its
    /// id then cannot have been reused).
    group: ProcessGroup,
    pub child: Child,
    pub client: Client,
    pub notifications: Notifications,
    /// The last line the child wrote to stderr; closed when its stderr ends.
    last_stderr: tokio::sync::watch::Receiver<Option<String>>,
}

/// The longest stderr line kept for a failure's reason (the log has all of it).
const LAST_WORDS_CHARS: usize = 300;
/// How long a failure's reason waits for the rest of a dead child's stderr.
const LAST_WORDS_WAIT: Duration = Duration::from_millis(200);

impl ImsgProcess {
    pub fn spawn(spec: &SpawnSpec) -> Result<ImsgProcess, SpawnError> {
        let cli = spec.cli_path.trim();
        let cli = if cli.is_empty() { "imsg" } else { cli };
        let mut cmd = Command::new(cli);
        cmd.args(spec.args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so a wrapper's children can be killed with it (see ProcessGroup).
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                SpawnError::NotFound {
                    path: cli.to_string(),
                    source,
                }
            } else {
                SpawnError::Other {
                    path: cli.to_string(),
                    source,
                }
            }
        })?;
        let group = ProcessGroup::of(&child);
        let stdin = child.stdin.take().expect("stdin piped");
        let stdout = child.stdout.take().expect("stdout piped");
        let stderr = child.stderr.take().expect("stderr piped");
        let label = spec.label.clone();
        let (last_tx, last_stderr) = tokio::sync::watch::channel(None);
        tokio::spawn(async move {
            // Bytes, not `lines()`: a line that is not UTF-8 must not stop the draining, or the
            // child blocks on a full stderr pipe.
            let mut lines = LineReader::new(stderr, MAX_STDERR_LINE_BYTES);
            let mut buf = Vec::new();
            loop {
                let overlong = match lines.next_frame(&mut buf).await {
                    Ok(Frame::Line) => None,
                    Ok(Frame::TooLong { so_far }) => Some(so_far),
                    Ok(Frame::Resynced { total }) => {
                        tracing::debug!(account = %label, "imsg rpc stderr: the line above was {total} bytes long");
                        continue;
                    }
                    Ok(Frame::Eof) | Err(_) => break,
                };
                let line = strip_ansi(&String::from_utf8_lossy(&buf));
                let line = line.trim();
                if let Some(so_far) = overlong {
                    tracing::warn!(account = %label, "imsg rpc stderr: {line}… (line longer than {MAX_STDERR_LINE_BYTES} bytes, {so_far} so far; the rest is dropped)");
                } else if !line.is_empty() {
                    tracing::warn!(account = %label, "imsg rpc stderr: {line}");
                }
                if !line.is_empty() {
                    last_tx.send_replace(Some(line.chars().take(LAST_WORDS_CHARS).collect()));
                }
            }
        });
        let (client, notifications) = Client::new(stdout, stdin, spec.request_timeout, &spec.label);
        tracing::debug!(account = %spec.label, pid = child.id(), "started {cli} {}", spec.args().join(" "));
        Ok(ImsgProcess {
            group,
            child,
            client,
            notifications,
            last_stderr,
        })
    }

    /// The child's last stderr line, once its stderr has ended (or after a short wait): what
    /// an imsg that dies at start says about why, for the failure's reason and `status`.
    pub fn last_words(&self) -> impl std::future::Future<Output = Option<String>> + Send + 'static {
        let mut rx = self.last_stderr.clone();
        async move {
            let _ = tokio::time::timeout(LAST_WORDS_WAIT, async {
                while rx.changed().await.is_ok() {}
            })
            .await;
            let words = rx.borrow().clone();
            words
        }
    }

    /// Closes stdin, waits up to `grace` for the child to exit, then kills its process group
    /// (whatever a wrapper left running, or the child itself if it did not exit in time).
    pub async fn shutdown(mut self, grace: Duration) {
        // Bounded: a write blocked on a full pipe holds the writer until its own timeout.
        let _ = tokio::time::timeout(grace, self.client.close_input()).await;
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) => {
                tracing::debug!("imsg rpc exited: {status}");
                self.group.kill();
            }
            _ => {
                self.group.kill();
                let _ = self.child.kill().await;
                tracing::debug!("imsg rpc killed after {} ms", grace.as_millis());
            }
        }
    }

    /// Kills the child's whole process group at once (a child that stopped answering, or one
    /// that exited and may have left a wrapper's children behind), then reaps the child.
    pub async fn kill(mut self) {
        self.group.kill();
        // Also by pid: a leader that moved itself to another group is not reached above.
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
    }
}

/// True when `cli_path` names something runnable: an existing path, or a name found on PATH.
pub fn locate(cli_path: &str) -> Option<PathBuf> {
    let cli = cli_path.trim();
    if cli.contains('/') {
        let p = Path::new(cli);
        return p.is_file().then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(cli))
        .find(|p| p.is_file())
}

/// Drops ANSI escape sequences (`ESC [ ... letter`): a child that colours its stderr should
/// not put control codes into our log lines.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_codes_are_stripped_from_child_stderr() {
        assert_eq!(
            strip_ansi("\u{1b}[2m2026\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m fault"),
            "2026  WARN fault"
        );
        assert_eq!(strip_ansi("plain"), "plain");
    }

    #[test]
    fn spawn_args_carry_the_db_only_when_set() {
        let mut spec = SpawnSpec {
            cli_path: "imsg".into(),
            db_path: None,
            label: "t".into(),
            request_timeout: Duration::from_secs(1),
        };
        assert_eq!(spec.args(), vec!["rpc"]);
        spec.db_path = Some(PathBuf::from("/x/chat.db"));
        assert_eq!(spec.args(), vec!["rpc", "--db", "/x/chat.db"]);
    }

    #[tokio::test]
    async fn a_missing_binary_is_not_found_naming_it() {
        let spec = SpawnSpec {
            cli_path: "/nonexistent/imsg".into(),
            db_path: None,
            label: "t".into(),
            request_timeout: Duration::from_secs(1),
        };
        match ImsgProcess::spawn(&spec) {
            Err(e @ SpawnError::NotFound { .. }) => {
                assert!(e
                    .to_string()
                    .starts_with("imsg not found at /nonexistent/imsg"))
            }
            Err(e) => panic!("expected NotFound, got {e}"),
            Ok(_) => panic!("spawned a nonexistent binary"),
        }
    }
}
