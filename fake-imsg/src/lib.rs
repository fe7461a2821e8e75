//! fake-imsg: an emulator of the macOS `imsg rpc` CLI.
//!
//! The world lives in a SQLite file shaped like Messages' `chat.db` (`world`), and the
//! JSON-RPC server (`rpc`) reads and writes it exactly as imsg would.
