//! The `imsg rpc` JSON-RPC server. (being written)

/// Arguments of `fake-imsg rpc`.
#[derive(Debug, clap::Args)]
pub struct RpcArgs {}

/// Runs the server on stdin/stdout; returns the process exit code.
pub fn run_cli(_args: RpcArgs) -> anyhow::Result<i32> {
    Ok(0)
}
