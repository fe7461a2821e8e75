//! The seam between the supervisor and imsg: a [`Connector`] opens one `imsg rpc`
//! connection ([`Link`]) each time the supervisor asks. In production that is a child process
//! ([`ProcessConnector`]); tests hand the supervisor an in-process imsg over an in-memory pipe,
//! so restart, catch-up and exactly-once logic run under a paused clock, in milliseconds.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::mpsc;

use super::client::{Client, Notifications};
use super::process::{ImsgProcess, SpawnError, SpawnSpec};

/// A boxed future, so the traits below stay object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One open connection to an imsg.
pub struct Link {
    pub client: Client,
    pub notifications: Notifications,
    /// For the log line; `None` when the peer is not a process.
    pub pid: Option<u32>,
    pub peer: Box<dyn Peer>,
}

/// The far end of a [`Link`]: something that can end, and be stopped.
pub trait Peer: Send {
    /// Resolves when the peer is gone (a child exited), saying how.
    fn ended(&mut self) -> BoxFuture<'_, String>;
    /// Graceful stop: close its input, wait up to `grace`, then kill.
    fn shutdown(self: Box<Self>, grace: Duration) -> BoxFuture<'static, ()>;
    /// Stop at once (it stopped answering, or a restart was asked for).
    fn kill(self: Box<Self>) -> BoxFuture<'static, ()>;
    /// What the peer last said on the side (a child's last stderr line), for the reason of a
    /// failure; resolves once it has said all it will.
    fn last_words(&self) -> BoxFuture<'static, Option<String>> {
        Box::pin(async { None })
    }
}

/// Opens connections to imsg.
pub trait Connector: Send + Sync {
    /// What is being connected to, for logs (`imsg rpc --db …`).
    fn describe(&self) -> String;
    fn connect(&self) -> Result<Link, SpawnError>;
}

/// Spawns `<cliPath> rpc [--db <dbPath>]` per connection.
#[derive(Debug, Clone)]
pub struct ProcessConnector {
    pub spec: SpawnSpec,
}

impl Connector for ProcessConnector {
    fn describe(&self) -> String {
        format!("{} {}", self.spec.cli_path, self.spec.args().join(" "))
    }

    fn connect(&self) -> Result<Link, SpawnError> {
        let mut p = ImsgProcess::spawn(&self.spec)?;
        let client = p.client.clone();
        let notifications = std::mem::replace(&mut p.notifications, mpsc::channel(1).1);
        let pid = p.child.id();
        Ok(Link {
            client,
            notifications,
            pid,
            peer: Box::new(ProcessPeer(p)),
        })
    }
}

struct ProcessPeer(ImsgProcess);

impl Peer for ProcessPeer {
    fn ended(&mut self) -> BoxFuture<'_, String> {
        Box::pin(async move {
            match self.0.child.wait().await {
                Ok(s) => format!("imsg rpc exited ({s})"),
                Err(e) => format!("imsg rpc wait failed: {e}"),
            }
        })
    }

    fn shutdown(self: Box<Self>, grace: Duration) -> BoxFuture<'static, ()> {
        Box::pin(self.0.shutdown(grace))
    }

    fn kill(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(self.0.kill())
    }

    fn last_words(&self) -> BoxFuture<'static, Option<String>> {
        Box::pin(self.0.last_words())
    }
}
