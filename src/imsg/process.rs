//! Spawning `<cliPath> rpc [--db <dbPath>]` and tearing it down.
//!
//! The child's stdout feeds a [`Client`], its stderr is logged line by line (never fatal),
//! and shutdown closes stdin first (an imsg child drains and exits at EOF), then kills it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::client::{Client, Notification};

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
    pub child: Child,
    pub client: Client,
    pub notifications: mpsc::UnboundedReceiver<Notification>,
}

impl ImsgProcess {
    pub fn spawn(spec: &SpawnSpec) -> Result<ImsgProcess, SpawnError> {
        let cli = spec.cli_path.trim();
        let cli = if cli.is_empty() { "imsg" } else { cli };
        let mut cmd = Command::new(cli);
        cmd.args(spec.args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
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
        let stdin = child.stdin.take().expect("stdin piped");
        let stdout = child.stdout.take().expect("stdout piped");
        let stderr = child.stderr.take().expect("stderr piped");
        let label = spec.label.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let line = strip_ansi(&line);
                let line = line.trim();
                if !line.is_empty() {
                    tracing::warn!(account = %label, "imsg rpc stderr: {line}");
                }
            }
        });
        let (client, notifications) = Client::new(stdout, stdin, spec.request_timeout, &spec.label);
        tracing::debug!(account = %spec.label, pid = child.id(), "started {cli} {}", spec.args().join(" "));
        Ok(ImsgProcess {
            child,
            client,
            notifications,
        })
    }

    /// Closes stdin, waits up to `grace` for the child to exit, then kills it.
    pub async fn shutdown(mut self, grace: Duration) {
        // Bounded: a write blocked on a full pipe holds the writer until its own timeout.
        let _ = tokio::time::timeout(grace, self.client.close_input()).await;
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) => tracing::debug!("imsg rpc exited: {status}"),
            _ => {
                let _ = self.child.kill().await;
                tracing::debug!("imsg rpc killed after {} ms", grace.as_millis());
            }
        }
    }

    /// Kills at once (a child that stopped answering).
    pub async fn kill(mut self) {
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
