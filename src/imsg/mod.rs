//! Everything that talks to `imsg rpc`: the JSON-RPC client over any byte stream (`client`),
//! protocol negotiation and key sets (`protocol`), the child process (`process`) and its
//! supervision with restart, catch-up and re-subscription (`supervisor`).

pub mod client;
pub mod probe;
pub mod process;
pub mod protocol;
pub mod supervisor;

pub use client::{Client, Notification, RpcError, DEFAULT_TIMEOUT};
pub use process::{ImsgProcess, SpawnError, SpawnSpec};
pub use protocol::{negotiate, sanitize_params, Negotiated, Protocol};
pub use supervisor::{Connection, ConnectionSlot, SupervisorEvent, SupervisorOptions};
