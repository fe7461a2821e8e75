//! Agents: what answers an admitted message. The [`Envelope`] is the contract; the backends
//! are `echo` (replies `echo: <text>`), `exec` (a command per message, envelope JSON on stdin,
//! reply on stdout) and `http` (POST the envelope, reply in the response).
//!
//! Every backend returns `Ok(None)` for "no reply" and an [`AgentError`] that says why a
//! message got no answer; the gateway logs it and never retries on its own.

mod envelope;

pub use envelope::{ChatType, ContextMessage, Envelope, EnvelopeAttachment, ReplyTo};

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::config::AgentConfig;

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
    },
    Http {
        client: reqwest::Client,
        url: String,
        timeout: Duration,
    },
}

impl Agent {
    pub fn from_config(cfg: &AgentConfig) -> Agent {
        match cfg {
            AgentConfig::Echo => Agent::Echo,
            AgentConfig::Exec {
                command,
                timeout_ms,
            } => Agent::Exec {
                command: command.clone(),
                timeout: Duration::from_millis(*timeout_ms),
            },
            AgentConfig::Http { url, timeout_ms } => Agent::Http {
                client: reqwest::Client::new(),
                url: url.clone(),
                timeout: Duration::from_millis(*timeout_ms),
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

    /// The reply to one message; `Ok(None)` = the agent chose not to answer.
    pub async fn reply(&self, env: &Envelope) -> Result<Option<String>, AgentError> {
        match self {
            Agent::Echo => Ok(Some(format!("echo: {}", env.text))),
            Agent::Exec { command, timeout } => run_exec(command, *timeout, env).await,
            Agent::Http {
                client,
                url,
                timeout,
            } => run_http(client, url, *timeout, env).await,
        }
    }
}

fn non_empty(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

async fn run_exec(
    command: &[String],
    timeout: Duration,
    env: &Envelope,
) -> Result<Option<String>, AgentError> {
    let (program, args) = command.split_first().ok_or(AgentError::EmptyCommand)?;
    let shown = command.join(" ");
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| AgentError::Spawn {
            command: shown.clone(),
            source,
        })?;
    let input = serde_json::to_vec(env).expect("envelope serialises");
    let mut stdin = child.stdin.take().expect("stdin piped");
    // Written concurrently with reading: a large envelope must not deadlock on a full pipe.
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&input).await;
        let _ = stdin.write_all(b"\n").await;
        let _ = stdin.shutdown().await;
    });
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(source)) => {
            return Err(AgentError::Io {
                command: shown,
                source,
            })
        }
        // Dropping the future drops the child, and kill_on_drop kills it.
        Err(_) => {
            writer.abort();
            return Err(AgentError::Timeout {
                command: shown,
                timeout_ms: timeout.as_millis() as u64,
            });
        }
    };
    let _ = writer.await;
    if !output.status.success() {
        return Err(AgentError::Exit {
            command: shown,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !stderr.trim().is_empty() {
        tracing::debug!("agent stderr: {}", stderr.trim());
    }
    Ok(non_empty(&String::from_utf8_lossy(&output.stdout)))
}

async fn run_http(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
    env: &Envelope,
) -> Result<Option<String>, AgentError> {
    let err = |detail: String| AgentError::Http {
        url: url.to_string(),
        detail,
    };
    let resp = client
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
    let body = resp.text().await.map_err(|e| err(e.to_string()))?;
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
        return Ok(non_empty(&body));
    }
    if body.trim().is_empty() {
        return Ok(None);
    }
    let value: Value = serde_json::from_str(&body)
        .map_err(|e| err(format!("response is not valid JSON ({e})")))?;
    match &value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(non_empty(s)),
        Value::Object(o) => {
            let field = o.get("reply").or_else(|| o.get("text"));
            match field {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(non_empty(s)),
                Some(other) => Err(err(format!("\"reply\" must be a string, got {other}"))),
            }
        }
        other => Err(err(format!(
            "expected {{\"reply\": \"...\"}} or {{\"text\": \"...\"}}, got {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        Agent::Exec {
            command: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: Duration::from_millis(timeout_ms),
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
    async fn http_unreachable_is_an_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        drop(listener);
        let err = http(url.clone()).reply(&envelope("x")).await.unwrap_err();
        assert!(err.to_string().contains(&url), "{err}");
    }
}
