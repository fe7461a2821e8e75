//! fake-imsg: an emulator of the macOS `imsg rpc` CLI.
//!
//! The world lives in a SQLite file shaped like Messages' `chat.db` (`world`); `payload`
//! turns its rows into imsg's wire JSON; the JSON-RPC server (`rpc`) serves both protocol
//! levels over stdio; `imsg_cli` has the imsg commands beside `rpc` (`status`, `chats`,
//! `--version`); `cli` is the `fake-imsg` command line.

pub mod cli;
pub mod imsg_cli;
pub mod payload;
pub mod rpc;
pub mod tap;
pub mod world;
