//! fake-imsg in process, behind the runtime's connector seam: each connection is fake-imsg's
//! real JSON-RPC server on its own threads, reading and writing OS pipes, so the simulator
//! runs the same supervisor, client and gateway as `run` with no child process and no
//! fake-imsg binary on PATH.

use std::io::BufReader;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fake_imsg::rpc::db::Db;
use fake_imsg::rpc::faults::Faults;
use fake_imsg::rpc::framing::Protocol;
use fake_imsg::rpc::out::Out;
use fake_imsg::rpc::server::{serve, Shared};
use tokio::sync::oneshot;

use crate::imsg::client::Client;
use crate::imsg::connector::{BoxFuture, Connector, Link, Peer};
use crate::imsg::process::SpawnError;

/// Connects to fake-imsg serving `world`.
#[derive(Debug, Clone)]
pub struct InProcessImsg {
    pub world: PathBuf,
    pub timeout: Duration,
}

fn io(e: std::io::Error) -> SpawnError {
    SpawnError::Other {
        path: "fake-imsg (in process)".into(),
        source: e,
    }
}

impl Connector for InProcessImsg {
    fn describe(&self) -> String {
        format!("fake-imsg rpc --db {} (in process)", self.world.display())
    }

    fn connect(&self) -> Result<Link, SpawnError> {
        let (to_imsg_r, to_imsg_w) = std::io::pipe().map_err(io)?;
        let (from_imsg_r, from_imsg_w) = std::io::pipe().map_err(io)?;
        let writer = tokio::net::unix::pipe::Sender::from_owned_fd(to_imsg_w.into()).map_err(io)?;
        let reader =
            tokio::net::unix::pipe::Receiver::from_owned_fd(from_imsg_r.into()).map_err(io)?;
        let (client, notifications) = Client::new(reader, writer, self.timeout, "simulator");
        let faults = Faults::default();
        let level = fake_imsg::rpc::LevelArg::V1_0_14_0.api_level();
        let out = Out::new(Box::new(from_imsg_w), faults.clone());
        let db = Db {
            path: self.world.clone(),
            forced_down: false,
        };
        let shared = Arc::new(Shared::new(Protocol::V1, level, db, faults, out));
        let (done_tx, done_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("fake-imsg".into())
            .spawn(move || {
                // Ends when the gateway closes its end (EOF), as a child's stdin would.
                let code = serve(shared, BufReader::new(to_imsg_r), None);
                let _ = done_tx.send(code);
            })
            .map_err(io)?;
        Ok(Link {
            client,
            notifications,
            pid: None,
            peer: Box::new(InProcessPeer {
                done: Some(done_rx),
            }),
        })
    }
}

struct InProcessPeer {
    done: Option<oneshot::Receiver<i32>>,
}

impl Peer for InProcessPeer {
    fn ended(&mut self) -> BoxFuture<'_, String> {
        Box::pin(async move {
            match self.done.as_mut() {
                Some(rx) => match rx.await {
                    Ok(code) => format!("fake-imsg stopped (status {code})"),
                    Err(_) => "fake-imsg stopped".to_string(),
                },
                None => std::future::pending().await,
            }
        })
    }

    fn shutdown(self: Box<Self>, _grace: Duration) -> BoxFuture<'static, ()> {
        // The client closing its pipe is what stops the server; nothing else to do.
        Box::pin(async {})
    }

    fn kill(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}
