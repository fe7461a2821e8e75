//! Agents: what answers an admitted message. The [`Envelope`] is the contract; the backends
//! are `echo` (replies `echo: <text>`), `exec` (a command per message, envelope JSON on stdin,
//! reply on stdout) and `http` (POST the envelope, reply in the response).
//!
//! Every backend returns `Ok(None)` for "no reply" and an [`AgentError`] that says why a
//! message got no answer; the gateway logs it and never retries on its own.
//!
//! What an agent sends back is bounded (DESIGN decision 11): a reply longer than
//! `agent.maxReplyBytes` is an error ([`AgentError::ReplyTooLarge`]), not a truncated answer,
//! because half an answer can say the opposite of the whole one; the exec agent is killed as
//! soon as it passes the cap. Of an exec agent's stderr only the last
//! [`STDERR_TAIL_BYTES`] are kept (for the log and the error), though all of it is read so
//! the agent never blocks on a full pipe. An exec agent runs in its own process group, killed
//! as a whole when it times out, passes the cap, or exits: an agent run through `sh -c` or a
//! wrapper leaves nothing running behind it.

mod envelope;

pub use envelope::{body_text, ChatType, ContextMessage, Envelope, EnvelopeAttachment, ReplyTo};

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::time::Instant;

use crate::config::AgentConfig;
use crate::imsg::process::ProcessGroup;

/// How much of an exec agent's stderr is kept: its end, where the error usually is.
pub const STDERR_TAIL_BYTES: usize = 2 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("agent command {command:?} could not start: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("agent command {command:?} timed out after {timeout_ms} ms and was killed")]
    Timeout { command: String, timeout_ms: u64 },
    #[error("agent command {command:?} exited with {status}; stderr: {stderr}")]
    Exit {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("agent command {command:?} failed: {source}")]
    Io {
        command: String,
        source: std::io::Error,
    },
    #[error("agent command is empty (agent.command)")]
    EmptyCommand,
    /// `agent` names it: `agent command "..."` or `http agent <url>`.
    #[error(
        "agent reply exceeded agent.maxReplyBytes ({max} bytes), from {agent}; nothing was sent"
    )]
    ReplyTooLarge { agent: String, max: usize },
    #[error("http agent {url}: {detail}")]
    Http { url: String, detail: String },
    #[error("http agent {url} answered {status}: {body}")]
    HttpStatus {
        url: String,
        status: u16,
        body: String,
    },
}

/// A configured backend.
#[derive(Debug, Clone)]
pub enum Agent {
    Echo,
    Exec {
        command: Vec<String>,
        timeout: Duration,
        max_reply_bytes: usize,
    },
    Http {
        client: reqwest::Client,
        url: String,
        timeout: Duration,
        max_reply_bytes: usize,
    },
}

impl Agent {
    pub fn from_config(cfg: &AgentConfig) -> Agent {
        match cfg {
            AgentConfig::Echo => Agent::Echo,
            AgentConfig::Exec {
                command,
                timeout_ms,
                max_reply_bytes,
            } => Agent::Exec {
                command: command.clone(),
                timeout: Duration::from_millis(*timeout_ms),
                max_reply_bytes: *max_reply_bytes,
            },
            AgentConfig::Http {
                url,
                timeout_ms,
                max_reply_bytes,
            } => Agent::Http {
                client: reqwest::Client::new(),
                url: url.clone(),
                timeout: Duration::from_millis(*timeout_ms),
                max_reply_bytes: *max_reply_bytes,
            },
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Agent::Echo => "echo",
            Agent::Exec { .. } => "exec",
            Agent::Http { .. } => "http",
        }
    }

    /// The reply's text to one message; `Ok(None)` = no text (see [`Agent::reply_full`]).
    pub async fn reply(&self, env: &Envelope) -> Result<Option<String>, AgentError> {
        Ok(self
            .reply_full(env)
            .await?
            .map(|r| r.text)
            .filter(|t| !t.is_empty()))
    }

    /// The reply to one message, with any files; `Ok(None)` = the agent chose not to answer.
    pub async fn reply_full(&self, env: &Envelope) -> Result<Option<Reply>, AgentError> {
        match self {
            Agent::Echo => Ok(Some(Reply::text(format!("echo: {}", env.text)))),
            Agent::Exec {
                command,
                timeout,
                max_reply_bytes,
            } => Ok(run_exec(command, *timeout, *max_reply_bytes, env)
                .await?
                .and_then(|out| exec_reply(&out))),
            Agent::Http {
                client,
                url,
                timeout,
                max_reply_bytes,
            } => run_http(client, url, *timeout, *max_reply_bytes, env).await,
        }
    }
}

/// What an agent answered: text (possibly empty) and files to send after it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    pub text: String,
    /// Paths, sent one `send` each after the text, in order.
    pub files: Vec<String>,
}

impl Reply {
    pub fn text(t: impl Into<String>) -> Reply {
        Reply {
            text: t.into(),
            files: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.text.trim().is_empty() && self.files.is_empty()
    }
}

/// The keys of a structured reply object; an object with any other key is plain text (an
/// agent may well answer with JSON meant for the chat).
const REPLY_KEYS: [&str; 3] = ["text", "reply", "files"];

/// A reply object `{"text"|"reply": "...", "files": ["path", ...]}`; `Err` names the problem.
fn reply_object(o: &serde_json::Map<String, Value>) -> Result<Option<Reply>, String> {
    let text = match o.get("reply").or_else(|| o.get("text")) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.trim().to_string(),
        Some(other) => return Err(format!("\"text\" must be a string, got {other}")),
    };
    let files = match o.get("files") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|f| match f {
                Value::String(p) if !p.trim().is_empty() => Ok(p.trim().to_string()),
                other => Err(format!("\"files\" must be an array of paths, got {other}")),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(format!("\"files\" must be an array of paths, got {other}")),
    };
    let r = Reply { text, files };
    Ok((!r.is_empty()).then_some(r))
}

/// An exec agent's stdout: plain text, or a reply object when it is a JSON object of
/// [`REPLY_KEYS`] only.
fn exec_reply(out: &str) -> Option<Reply> {
    let t = out.trim();
    if t.starts_with('{') {
        if let Ok(Value::Object(o)) = serde_json::from_str::<Value>(t) {
            if !o.is_empty() && o.keys().all(|k| REPLY_KEYS.contains(&k.as_str())) {
                match reply_object(&o) {
                    Ok(r) => return r,
                    Err(e) => tracing::warn!(
                        "the agent's reply object is not usable ({e}); sending it as text"
                    ),
                }
            }
        }
    }
    non_empty(t).map(Reply::text)
}

fn non_empty(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// Reads `r` to its end, or until it has sent more than `max` bytes (`None`; the rest is
/// left unread).
async fn read_capped<R: AsyncRead + Unpin>(
    mut r: R,
    max: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Some(out));
        }
        if out.len() + n > max {
            return Ok(None);
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

/// Reads `r` to its end and keeps only its last `keep` bytes.
async fn read_tail<R: AsyncRead + Unpin>(mut r: R, keep: usize) -> (Vec<u8>, bool) {
    let mut tail = Vec::new();
    let mut cut = false;
    let mut chunk = vec![0u8; 16 * 1024];
    while let Ok(n) = r.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        tail.extend_from_slice(&chunk[..n]);
        // Trim only now and then, so a chatty agent costs a copy per `keep` bytes, not per read.
        if tail.len() > 2 * keep.max(chunk.len()) {
            tail.drain(..tail.len() - keep);
            cut = true;
        }
    }
    if tail.len() > keep {
        tail.drain(..tail.len() - keep);
        cut = true;
    }
    (tail, cut)
}

/// The stderr tail as text: trimmed, starting at a character boundary (the cut may have
/// fallen inside a UTF-8 sequence), `…` in front when the start was dropped.
fn tail_text(tail: &[u8], cut: bool) -> String {
    let start = if cut {
        tail.iter()
            .take(4)
            .position(|b| b & 0xC0 != 0x80)
            .unwrap_or(0)
    } else {
        0
    };
    let text = String::from_utf8_lossy(&tail[start..]);
    let text = text.trim();
    if cut && !text.is_empty() {
        format!("…{text}")
    } else {
        text.to_string()
    }
}

/// How the wait for an exec agent ended.
enum Ended {
    /// The agent exited; its stdout, if it was already read to the end.
    Exited(std::process::ExitStatus, Option<Vec<u8>>),
    TooLarge,
    Failed(std::io::Error),
}

fn joined<T>(r: Result<std::io::Result<T>, tokio::task::JoinError>) -> std::io::Result<T> {
    r.map_err(std::io::Error::other)?
}

async fn run_exec(
    command: &[String],
    timeout: Duration,
    max_reply_bytes: usize,
    env: &Envelope,
) -> Result<Option<String>, AgentError> {
    let (program, args) = command.split_first().ok_or(AgentError::EmptyCommand)?;
    let shown = command.join(" ");
    let deadline = Instant::now() + timeout;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group: whatever the agent starts (`sh -c`, a wrapper) is killed with it.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| AgentError::Spawn {
            command: shown.clone(),
            source,
        })?;
    // Declared after `child`, so it drops first: if this future is dropped, the group is
    // killed while the leader is unreaped and its id cannot have been reused.
    let mut group = ProcessGroup::of(&child);
    let input = serde_json::to_vec(env).expect("envelope serialises");
    let mut stdin = child.stdin.take().expect("stdin piped");
    // Written concurrently with reading: a large envelope must not deadlock on a full pipe.
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&input).await;
        let _ = stdin.write_all(b"\n").await;
        let _ = stdin.shutdown().await;
    });
    // stdout and stderr are read at once, each by its own task: an agent blocked on one full
    // pipe while we wait on the other would never finish.
    let stdout = child.stdout.take().expect("stdout piped");
    let stderr = child.stderr.take().expect("stderr piped");
    let mut reply_task = tokio::spawn(read_capped(stdout, max_reply_bytes));
    let stderr_task = tokio::spawn(read_tail(stderr, STDERR_TAIL_BYTES));

    let ended = tokio::time::timeout_at(deadline, async {
        let mut reply = None;
        loop {
            tokio::select! {
                r = &mut reply_task, if reply.is_none() => match joined(r) {
                    Ok(Some(bytes)) => reply = Some(bytes),
                    Ok(None) => return Ended::TooLarge,
                    Err(e) => return Ended::Failed(e),
                },
                status = child.wait() => return match status {
                    Ok(status) => Ended::Exited(status, reply),
                    Err(e) => Ended::Failed(e),
                },
            }
        }
    })
    .await;

    // Whatever happened, nothing of the agent may outlive this call; its pipes close with it.
    group.kill();
    writer.abort();
    let failed = match ended {
        Ok(Ended::Exited(status, reply)) => Ok((status, reply)),
        Err(_) => Err(AgentError::Timeout {
            command: shown.clone(),
            timeout_ms: timeout.as_millis() as u64,
        }),
        Ok(Ended::TooLarge) => Err(AgentError::ReplyTooLarge {
            agent: format!("agent command {shown:?}"),
            max: max_reply_bytes,
        }),
        Ok(Ended::Failed(source)) => Err(AgentError::Io {
            command: shown.clone(),
            source,
        }),
    };
    let (status, reply) = match failed {
        Ok(done) => done,
        Err(e) => {
            // Reap it (the group kill reached it unless it left the group).
            let _ = child.kill().await;
            reply_task.abort();
            stderr_task.abort();
            return Err(e);
        }
    };
    // The agent has exited; its output ends once the rest of its group is gone.
    let reply = match reply {
        Some(r) => Some(r),
        None => match tokio::time::timeout_at(deadline, &mut reply_task).await {
            Ok(r) => joined(r).map_err(|source| AgentError::Io {
                command: shown.clone(),
                source,
            })?,
            Err(_) => {
                reply_task.abort();
                stderr_task.abort();
                return Err(AgentError::Timeout {
                    command: shown,
                    timeout_ms: timeout.as_millis() as u64,
                });
            }
        },
    };
    let stderr = match tokio::time::timeout_at(deadline, stderr_task).await {
        Ok(Ok((tail, cut))) => tail_text(&tail, cut),
        _ => String::new(),
    };
    let Some(reply) = reply else {
        return Err(AgentError::ReplyTooLarge {
            agent: format!("agent command {shown:?}"),
            max: max_reply_bytes,
        });
    };
    if !status.success() {
        return Err(AgentError::Exit {
            command: shown,
            status: status.to_string(),
            stderr,
        });
    }
    if !stderr.is_empty() {
        tracing::debug!("agent stderr: {stderr}");
    }
    Ok(non_empty(&String::from_utf8_lossy(&reply)))
}

/// The response body, read chunk by chunk so a body longer than `max` is never held whole
/// (`None`). Decoded as UTF-8 (invalid bytes replaced).
async fn body_capped(
    resp: &mut reqwest::Response,
    max: usize,
) -> Result<Option<String>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > max {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(String::from_utf8_lossy(&body).into_owned()))
}

async fn run_http(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
    max_reply_bytes: usize,
    env: &Envelope,
) -> Result<Option<Reply>, AgentError> {
    let err = |detail: String| AgentError::Http {
        url: url.to_string(),
        detail,
    };
    let mut resp = client
        .post(url)
        .timeout(timeout)
        .json(env)
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                err(format!("timed out after {} ms", timeout.as_millis()))
            } else {
                err(e.to_string())
            }
        })?;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().contains("json"));
    let body = body_capped(&mut resp, max_reply_bytes)
        .await
        .map_err(|e| err(e.to_string()))?;
    let Some(body) = body else {
        // An error page that large is not worth reading either.
        return Err(AgentError::ReplyTooLarge {
            agent: format!("http agent {url}"),
            max: max_reply_bytes,
        });
    };
    if !status.is_success() {
        let mut body = body.trim().to_string();
        if body.len() > 300 {
            body = body.chars().take(300).collect::<String>() + "…";
        }
        return Err(AgentError::HttpStatus {
            url: url.to_string(),
            status: status.as_u16(),
            body,
        });
    }
    if !is_json {
        return Ok(non_empty(&body).map(Reply::text));
    }
    if body.trim().is_empty() {
        return Ok(None);
    }
    let value: Value = serde_json::from_str(&body)
        .map_err(|e| err(format!("response is not valid JSON ({e})")))?;
    match &value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(non_empty(s).map(Reply::text)),
        Value::Object(o) => reply_object(o).map_err(err),
        other => Err(err(format!(
            "expected {{\"reply\": \"...\"}} or {{\"text\": \"...\"}}, got {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_output_is_text_or_a_reply_object() {
        assert_eq!(exec_reply(" hi \n"), Some(Reply::text("hi")));
        assert_eq!(
            exec_reply(r#"{"text": "see", "files": ["/tmp/a.pdf"]}"#),
            Some(Reply {
                text: "see".into(),
                files: vec!["/tmp/a.pdf".into()]
            })
        );
        assert_eq!(
            exec_reply(r#"{"files": ["/tmp/a.pdf"]}"#),
            Some(Reply {
                text: String::new(),
                files: vec!["/tmp/a.pdf".into()]
            })
        );
        // JSON meant for the chat stays text: other keys, or not an object.
        let other = r#"{"answer": 42}"#;
        assert_eq!(exec_reply(other), Some(Reply::text(other)));
        assert_eq!(exec_reply("[1, 2]"), Some(Reply::text("[1, 2]")));
        // A reply object that does not hold up is sent as the text it is, with a warning.
        let bad = r#"{"files": "/tmp/a.pdf"}"#;
        assert_eq!(exec_reply(bad), Some(Reply::text(bad)));
        assert_eq!(exec_reply(r#"{"text": "", "files": []}"#), None);
        assert_eq!(exec_reply("   "), None);
    }
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    use tokio::net::TcpListener;

    fn envelope(text: &str) -> Envelope {
        Envelope {
            account: "default".into(),
            chat_type: ChatType::Direct,
            chat_id: Some(12),
            chat_guid: Some("iMessage;-;+15551234567".into()),
            chat_identifier: Some("+15551234567".into()),
            group_name: None,
            group_members: vec![],
            sender: "+15551234567".into(),
            sender_raw: "+1 (555) 123-4567".into(),
            sender_name: None,
            text: text.into(),
            attachments: vec![],
            session_key: "main".into(),
            message_guid: "GUID-1".into(),
            message_id: 42,
            timestamp: Some("2026-01-15T18:04:05.123Z".into()),
            was_mentioned: false,
            context: vec![],
            reply_to: None,
        }
    }

    fn exec(cmd: &[&str], timeout_ms: u64) -> Agent {
        exec_capped(
            cmd,
            timeout_ms,
            crate::config::DEFAULT_AGENT_MAX_REPLY_BYTES,
        )
    }

    fn exec_capped(cmd: &[&str], timeout_ms: u64, max_reply_bytes: usize) -> Agent {
        Agent::Exec {
            command: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: Duration::from_millis(timeout_ms),
            max_reply_bytes,
        }
    }

    fn fixture(name: &str) -> String {
        format!("{}/fixtures/agents/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    #[tokio::test]
    async fn echo_replies_with_the_text() {
        let r = Agent::Echo.reply(&envelope("hi there")).await.unwrap();
        assert_eq!(r.as_deref(), Some("echo: hi there"));
    }

    #[tokio::test]
    async fn exec_fixture_upper_cases() {
        let agent = exec(&[&fixture("upper.sh")], 10_000);
        let r = agent.reply(&envelope("hello, World")).await.unwrap();
        assert_eq!(r.as_deref(), Some("HELLO, WORLD"));
    }

    #[tokio::test]
    async fn exec_gets_the_whole_envelope_on_stdin() {
        let agent = exec(&["sh", "-c", "cat"], 10_000);
        let r = agent.reply(&envelope("x")).await.unwrap().unwrap();
        let v: Value = serde_json::from_str(&r).unwrap();
        assert_eq!(v["chat_type"], "direct");
        assert_eq!(v["chat_id"], 12);
        assert_eq!(v["sender"], "+15551234567");
        assert_eq!(v["sender_raw"], "+1 (555) 123-4567");
        assert_eq!(v["session_key"], "main");
        assert_eq!(v["message_guid"], "GUID-1");
        assert_eq!(v["message_id"], 42);
        assert_eq!(v["context"], serde_json::json!([]));
        assert!(v.get("reply_to").is_none());
        let back: Envelope = serde_json::from_value(v).unwrap();
        assert_eq!(back, envelope("x"));
    }

    #[tokio::test]
    async fn exec_timeout_kills_and_errors() {
        let agent = exec(&["sh", "-c", "sleep 30; echo late"], 200);
        let started = std::time::Instant::now();
        let err = agent.reply(&envelope("x")).await.unwrap_err();
        assert!(
            matches!(
                err,
                AgentError::Timeout {
                    timeout_ms: 200,
                    ..
                }
            ),
            "{err}"
        );
        // Guards against a hang only.
        assert!(started.elapsed() < Duration::from_secs(20));
    }

    #[tokio::test]
    async fn exec_nonzero_exit_is_an_error_with_stderr() {
        let agent = exec(&["sh", "-c", "echo partial; echo boom >&2; exit 3"], 10_000);
        let err = agent.reply(&envelope("x")).await.unwrap_err();
        match &err {
            AgentError::Exit { stderr, status, .. } => {
                assert_eq!(stderr, "boom");
                assert!(status.contains('3'), "{status}");
            }
            other => panic!("expected Exit, got {other}"),
        }
    }

    #[tokio::test]
    async fn exec_empty_stdout_is_no_reply() {
        let agent = exec(&["sh", "-c", "cat >/dev/null; printf '  \\n'"], 10_000);
        assert_eq!(agent.reply(&envelope("x")).await.unwrap(), None);
        let agent = exec(&[&fixture("upper.sh")], 10_000);
        assert_eq!(agent.reply(&envelope("")).await.unwrap(), None);
    }

    #[tokio::test]
    async fn exec_missing_program_is_a_spawn_error() {
        let agent = exec(&["/nonexistent/agent"], 1000);
        let err = agent.reply(&envelope("x")).await.unwrap_err();
        assert!(matches!(err, AgentError::Spawn { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/agent"));
    }

    #[tokio::test]
    async fn exec_reply_up_to_max_reply_bytes_is_kept_and_longer_is_an_error() {
        let agent = exec_capped(&["sh", "-c", "printf 0123456789"], 10_000, 10);
        let r = agent.reply(&envelope("x")).await.unwrap();
        assert_eq!(r.as_deref(), Some("0123456789"));
        let agent = exec_capped(&["sh", "-c", "printf 0123456789X"], 10_000, 10);
        let err = agent.reply(&envelope("x")).await.unwrap_err();
        assert!(
            matches!(err, AgentError::ReplyTooLarge { max: 10, .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn exec_endless_stdout_is_stopped_at_the_cap_not_the_timeout() {
        // `yes` never ends: without a cap this buffers until the timeout.
        let agent = exec(&["yes"], 60_000);
        let err = agent.reply(&envelope("x")).await.unwrap_err();
        assert!(
            matches!(err, AgentError::ReplyTooLarge { max: 1_048_576, .. }),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "agent reply exceeded agent.maxReplyBytes (1048576 bytes), from agent command \"yes\"; nothing was sent"
        );
    }

    #[tokio::test]
    async fn exec_keeps_only_the_tail_of_a_long_stderr() {
        let script =
            "head -c 100000 /dev/zero | tr '\\0' e >&2; printf ' the real error' >&2; exit 1";
        let agent = exec(&["sh", "-c", script], 10_000);
        let err = agent.reply(&envelope("x")).await.unwrap_err();
        let AgentError::Exit { stderr, .. } = &err else {
            panic!("expected Exit, got {err}");
        };
        assert!(
            stderr.len() <= STDERR_TAIL_BYTES + '…'.len_utf8(),
            "{}",
            stderr.len()
        );
        assert!(
            stderr.starts_with('…') && stderr.ends_with("eee the real error"),
            "{stderr}"
        );
        assert!(err.to_string().len() < STDERR_TAIL_BYTES + 200);
    }

    #[tokio::test]
    async fn exec_a_full_stderr_pipe_does_not_block_the_reply() {
        // 1 MB on stderr first: far more than a pipe holds, so it must be read meanwhile.
        let script = "cat >/dev/null; head -c 1000000 /dev/zero >&2; echo done";
        let agent = exec(&["sh", "-c", script], 10_000);
        let r = agent.reply(&envelope("x")).await.unwrap();
        assert_eq!(r.as_deref(), Some("done"));
    }

    #[test]
    fn stderr_tail_starts_at_a_char_boundary() {
        let text = "é".repeat(50);
        let bytes = text.as_bytes();
        // A cut one byte into a two-byte 'é'.
        let tail = tail_text(&bytes[bytes.len() - 9..], true);
        assert_eq!(tail, format!("…{}", "é".repeat(4)));
        assert_eq!(tail_text(b"  whole  ", false), "whole");
    }

    /// A one-request HTTP server: answers with `status`, `content_type` and `body`, and hands
    /// back the request body it received.
    async fn serve_once(
        status: &'static str,
        content_type: &'static str,
        body: &'static str,
    ) -> (String, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/agent", listener.local_addr().unwrap());
        let handle = tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            let mut reader = BufReader::new(sock);
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).await.unwrap();
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut buf = vec![0u8; len];
            reader.read_exact(&mut buf).await.unwrap();
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            reader.get_mut().write_all(resp.as_bytes()).await.unwrap();
            String::from_utf8(buf).unwrap()
        });
        (url, handle)
    }

    fn http(url: String) -> Agent {
        Agent::Http {
            client: reqwest::Client::new(),
            url,
            timeout: Duration::from_secs(10),
            max_reply_bytes: crate::config::DEFAULT_AGENT_MAX_REPLY_BYTES,
        }
    }

    #[tokio::test]
    async fn http_posts_the_envelope_and_reads_reply() {
        let (url, server) =
            serve_once("200 OK", "application/json", r#"{"reply":"hello back"}"#).await;
        let r = http(url).reply(&envelope("hello")).await.unwrap();
        assert_eq!(r.as_deref(), Some("hello back"));
        let sent: Value = serde_json::from_str(&server.await.unwrap()).unwrap();
        assert_eq!(sent["text"], "hello");
        assert_eq!(sent["message_guid"], "GUID-1");
    }

    #[tokio::test]
    async fn http_accepts_text_field_and_plain_text() {
        let (url, _s) = serve_once("200 OK", "application/json", r#"{"text":"via text"}"#).await;
        assert_eq!(
            http(url).reply(&envelope("x")).await.unwrap().as_deref(),
            Some("via text")
        );
        let (url, _s) = serve_once("200 OK", "text/plain; charset=utf-8", "  plain reply \n").await;
        assert_eq!(
            http(url).reply(&envelope("x")).await.unwrap().as_deref(),
            Some("plain reply")
        );
        let (url, _s) = serve_once("200 OK", "application/json", r#"{"reply":null}"#).await;
        assert_eq!(http(url).reply(&envelope("x")).await.unwrap(), None);
    }

    #[tokio::test]
    async fn http_non_2xx_is_an_error_without_reply() {
        let (url, _s) = serve_once("503 Service Unavailable", "text/plain", "overloaded").await;
        let err = http(url).reply(&envelope("x")).await.unwrap_err();
        match err {
            AgentError::HttpStatus { status, body, .. } => {
                assert_eq!(status, 503);
                assert_eq!(body, "overloaded");
            }
            other => panic!("expected HttpStatus, got {other}"),
        }
    }

    #[tokio::test]
    async fn http_reply_over_max_reply_bytes_is_an_error() {
        let (url, _s) = serve_once("200 OK", "text/plain", "0123456789X").await;
        let agent = Agent::Http {
            client: reqwest::Client::new(),
            url: url.clone(),
            timeout: Duration::from_secs(10),
            max_reply_bytes: 10,
        };
        let err = agent.reply(&envelope("x")).await.unwrap_err();
        assert!(
            matches!(err, AgentError::ReplyTooLarge { max: 10, .. }),
            "{err}"
        );
        assert!(err.to_string().contains(&url), "{err}");
    }

    #[tokio::test]
    async fn http_unreachable_is_an_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        drop(listener);
        let err = http(url.clone()).reply(&envelope("x")).await.unwrap_err();
        assert!(err.to_string().contains(&url), "{err}");
    }
}
