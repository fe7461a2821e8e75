//! A one-shot health probe of an account's imsg (`status --probe`, and `chats`' connect step):
//! start `imsg rpc`, negotiate, ask `status` (v1) or `chats.list {limit:1}` (legacy), and say
//! what is wrong in plain words.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::client::RpcError;
use super::process::{locate, ImsgProcess, SpawnError, SpawnSpec};
use super::protocol::{negotiate, ErrorCode, Protocol, Request};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProbeReport {
    pub ok: bool,
    pub cli_path: String,
    pub db_path: Option<PathBuf>,
    /// `v1` or `legacy`, when it spoke rpc at all.
    pub protocol: Option<String>,
    pub version: Option<String>,
    pub database_ready: Option<bool>,
    /// What is wrong, in plain words (None when ok).
    pub problem: Option<String>,
}

/// Connects, negotiates and reports. `timeout` bounds each request.
pub async fn probe(cli_path: &str, db_path: Option<PathBuf>, timeout: Duration) -> ProbeReport {
    let mut report = ProbeReport {
        ok: false,
        cli_path: cli_path.to_string(),
        db_path: db_path.clone(),
        protocol: None,
        version: None,
        database_ready: None,
        problem: None,
    };
    let db_shown = db_path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "the default Messages database (~/Library/Messages/chat.db)".into());
    if locate(cli_path).is_none() {
        report.problem = Some(format!("imsg not found at {cli_path}"));
        return report;
    }
    let spec = SpawnSpec {
        cli_path: cli_path.to_string(),
        db_path,
        label: "probe".into(),
        request_timeout: timeout,
    };
    let proc_ = match ImsgProcess::spawn(&spec) {
        Ok(p) => p,
        Err(e @ SpawnError::NotFound { .. }) => {
            report.problem = Some(format!("imsg not found at {cli_path} ({e})"));
            return report;
        }
        Err(e) => {
            report.problem = Some(e.to_string());
            return report;
        }
    };
    let client = proc_.client.clone();
    let outcome = async {
        let n = match negotiate(&client, timeout).await {
            Ok(n) => n,
            // A legacy (0.8.2+) child that cannot open the database answers every request,
            // `initialize` included, with -32603 and the permission text.
            Err(e) if e.error_code() == Some(ErrorCode::Internal) => {
                return Ok((Protocol::Legacy, None, false, None));
            }
            Err(e) => return Err(e),
        };
        match n.protocol {
            Protocol::V1 => Ok((n.protocol, n.version, n.database_ready, n.database_error)),
            Protocol::Legacy => match client
                .call_with_timeout(Protocol::Legacy, &Request::ChatsList { limit: 1 }, timeout)
                .await
            {
                Ok(_) => Ok((Protocol::Legacy, None, true, None)),
                // Legacy children answer everything with -32603 when the database cannot open.
                Err(e) if e.error_code() == Some(ErrorCode::Internal) => {
                    Ok((Protocol::Legacy, None, false, None))
                }
                Err(e) => Err(e),
            },
        }
    }
    .await;
    proc_.shutdown(Duration::from_millis(500)).await;
    match outcome {
        Ok((protocol, version, ready, db_error)) => {
            report.protocol = Some(protocol.label().to_string());
            report.version = version;
            report.database_ready = Some(ready);
            if ready {
                report.ok = true;
            } else {
                report.problem = Some(format!(
                    "no Full Disk Access / database unavailable at {db_shown}{}",
                    db_error.map(|d| format!(": {d}")).unwrap_or_default()
                ));
            }
        }
        Err(RpcError::Timeout { .. }) => {
            report.problem = Some(format!(
                "{cli_path} does not speak rpc (no answer to initialize within {} ms)",
                timeout.as_millis()
            ));
        }
        Err(RpcError::Closed | RpcError::NotConnected | RpcError::Io(_)) => {
            report.problem = Some(format!(
                "{cli_path} does not speak rpc (it exited without answering `{cli_path} rpc`)"
            ));
        }
        Err(e) => {
            report.problem = Some(format!("{cli_path} does not speak rpc as expected: {e}"));
        }
    }
    report
}
