//! `fake-imsg tap`: a transparent stdio recorder in front of a real `imsg rpc`. (being written)

/// Arguments of `fake-imsg tap`.
#[derive(Debug, clap::Args)]
pub struct TapArgs {}

/// Runs the recorder; returns the exit code of the wrapped command.
pub fn run_cli(_args: TapArgs) -> anyhow::Result<i32> {
    Ok(0)
}
