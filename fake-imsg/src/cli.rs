//! The `fake-imsg` command line. (being written)

use clap::{Parser, Subcommand};

/// An emulator of the macOS `imsg rpc` CLI over a chat.db-shaped world.
#[derive(Debug, Parser)]
#[command(name = "fake-imsg", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve JSON-RPC over stdin/stdout, like `imsg rpc`.
    Rpc(crate::rpc::RpcArgs),
    /// Record a real `imsg rpc` session: pass stdio through and log every line.
    Tap(crate::tap::TapArgs),
}

/// Parses argv and runs the command; returns the exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Rpc(args) => crate::rpc::run_cli(args),
        Command::Tap(args) => crate::tap::run_cli(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("fake-imsg: {err:#}");
            1
        }
    }
}
