//! Everything that talks to `imsg rpc`: the JSON-RPC client over any byte stream (`client`),
//! protocol negotiation and key sets (`protocol`), the child process (`process`), the seam
//! that opens a connection (`connector`: a process, or an in-memory imsg in tests) and the
//! supervision with restart, catch-up and re-subscription (`supervisor`), and finding the rows
//! imsg cannot read on either protocol (`unreadable`). Nothing here reads or writes the state
//! store: the durable cursor comes in on a watch channel.

pub mod client;
pub mod connector;
pub mod probe;
pub mod process;
pub mod protocol;
pub mod supervisor;
mod unreadable;

pub use client::{Client, Notification, RpcError, DEFAULT_TIMEOUT};
pub use connector::{Connector, Link, Peer, ProcessConnector};
pub use process::{ImsgProcess, SpawnError, SpawnSpec};
pub use protocol::{negotiate, sanitize_params, ErrorCode, Negotiated, Protocol, Request};
pub use supervisor::{Connection, ConnectionSlot, CursorRx, SupervisorEvent, SupervisorOptions};
pub use unreadable::{readable_rows_after, ReadError};
