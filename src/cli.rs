//! The command line: `imsg-gateway [--config PATH] [--log LEVEL] run | config check |
//! status [--probe] [--json] | chats [--limit N] | pairing …` ([`pairing`]) | send …`
//! ([`send`]).
//!
//! Exit codes: 0 ok, 1 a runtime failure (imsg unreachable, probe found a problem), 2 bad
//! usage or an invalid config (the message names the key path).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::config::Config;
use crate::gateway::{self, GatewayOptions};
use crate::imsg::probe::probe;
use crate::imsg::{negotiate, ImsgProcess, SpawnSpec};
use crate::state::Store;

pub mod pairing;
pub mod send;

#[derive(Debug, Parser)]
#[command(
    name = "imsg-gateway",
    version,
    about = "An iMessage gateway for an AI assistant"
)]
pub struct Cli {
    /// Config file (default: $IMSG_GATEWAY_CONFIG, else ~/.imsg-gateway/config.json5).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Log level or filter (trace, debug, info, warn, error; default: $RUST_LOG, else info).
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway in the foreground until SIGINT/SIGTERM.
    Run,
    /// Work with the config file.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Show the state store (cursor, journal counts); --probe also checks imsg.
    Status {
        /// Also start imsg and report its version, protocol and database readiness.
        #[arg(long)]
        probe: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// DM pairing: list, approve, reject, revoke and show approved senders.
    Pairing {
        #[command(subcommand)]
        action: pairing::PairingAction,
    },
    /// Send a message (chunked and prefixed like replies); --dry-run shows it without sending.
    Send(send::SendArgs),
    /// Simulate group chats locally: the real gateway against fake-imsg, typed into by you.
    Simulate(crate::simulate::SimArgs),
    /// List chats through imsg (`chats.list`).
    Chats {
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Print JSON (one chat per line).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Validate the config and print it resolved, with every default filled in.
    Check,
}

/// Entry point for `main.rs`; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    // A simulated session is a conversation on the terminal; the gateway's log would drown it.
    let level = match (&cli.command, cli.log.as_deref()) {
        (Command::Simulate(_), None) => Some("off"),
        (_, l) => l,
    };
    init_logging(level);
    // One thread: the gateway's work is short async steps, and on a small machine handing
    // them between worker threads cost more than it bought (measured with the bench: about
    // 10 % more CPU per message, 7 % lower catch-up). Whatever blocks (the store's
    // transactions, the REPL's editor) runs on threads of its own.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    runtime.block_on(dispatch(cli))
}

fn init_logging(level: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => EnvFilter::try_new(l).unwrap_or_else(|e| {
            eprintln!("warning: bad --log value {l:?} ({e}); using info");
            EnvFilter::new("info")
        }),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

fn config_path(cli: &Cli) -> PathBuf {
    cli.config.clone().unwrap_or_else(Config::default_path)
}

fn load_config(cli: &Cli) -> Result<Config, i32> {
    let path = config_path(cli);
    Config::load(&path).map_err(|e| {
        eprintln!("error: {e}");
        2
    })
}

async fn dispatch(cli: Cli) -> i32 {
    match &cli.command {
        Command::Config {
            action: ConfigAction::Check,
        } => config_check(&cli),
        Command::Run => run(&cli).await,
        Command::Status { probe, json } => status(&cli, *probe, *json).await,
        Command::Chats { limit, json } => chats(&cli, *limit, *json).await,
        Command::Simulate(args) => crate::simulate::run(args).await,
        Command::Send(args) => match load_config(&cli) {
            Ok(config) => send::run(&config, args).await,
            Err(code) => code,
        },
        Command::Pairing { action } => match load_config(&cli) {
            Ok(config) => pairing::run(&config, action).await,
            Err(code) => code,
        },
    }
}

fn config_check(cli: &Cli) -> i32 {
    let config = match load_config(cli) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let text = serde_json::to_string_pretty(&config.resolved_json()).unwrap_or_default();
    println!("{text}");
    for w in &config.warnings {
        eprintln!("warning: {w}");
    }
    0
}

async fn run(cli: &Cli) -> i32 {
    let config = match load_config(cli) {
        Ok(c) => c,
        Err(code) => return code,
    };
    for w in &config.warnings {
        tracing::warn!("config: {w}");
    }
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    match gateway::run(config, GatewayOptions::default(), rx).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn status(cli: &Cli, do_probe: bool, as_json: bool) -> i32 {
    let config = match load_config(cli) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let state_file = Store::file_in(&config.state_dir);
    let store = match Store::open_existing(&config.state_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let mut code = 0;
    let mut accounts = Vec::new();
    for account in &config.accounts {
        let (cursor, counts, health) = match &store {
            Some(s) => match (
                s.cursor(&account.id),
                s.counts(Some(&account.id)),
                s.health(&account.id),
            ) {
                (Ok(c), Ok(n), Ok(h)) => (c, n, h),
                (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                    eprintln!("error: {e}");
                    return 1;
                }
            },
            None => (0, Default::default(), None),
        };
        let mut entry = json!({
            "id": account.id,
            "enabled": account.enabled,
            "cli_path": account.cli_path,
            "db_path": account.db_path,
            "cursor": cursor,
            "journal": counts,
            "health": health,
            "problem": health.as_ref().and_then(health_problem),
        });
        if do_probe && account.enabled {
            let report = probe(
                &account.cli_path,
                account.db_path.clone(),
                Duration::from_secs(5),
            )
            .await;
            if !report.ok {
                code = 1;
            }
            entry["probe"] = serde_json::to_value(&report).unwrap_or(Value::Null);
        }
        accounts.push(entry);
    }
    let out = json!({
        "state_file": state_file,
        "state_exists": store.is_some(),
        "accounts": accounts,
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return code;
    }
    if store.is_some() {
        println!("state: {}", state_file.display());
    } else {
        println!(
            "state: {} (not created yet; `run` creates it)",
            state_file.display()
        );
    }
    for a in out["accounts"].as_array().into_iter().flatten() {
        let journal = a["journal"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "empty".into());
        println!(
            "account {}{}: cursor {}, journal {}",
            a["id"].as_str().unwrap_or("?"),
            if a["enabled"].as_bool() == Some(false) {
                " (disabled)"
            } else {
                ""
            },
            a["cursor"],
            journal
        );
        if let Some(p) = a["problem"].as_str() {
            println!("  problem: {p}");
        }
        if let Some(p) = a.get("probe") {
            if p["ok"].as_bool() == Some(true) {
                println!(
                    "  imsg ok: version {}, protocol {}, database ready",
                    p["version"].as_str().unwrap_or("unknown"),
                    p["protocol"].as_str().unwrap_or("?")
                );
            } else {
                println!(
                    "  imsg problem: {}",
                    p["problem"].as_str().unwrap_or("unknown")
                );
            }
        }
    }
    code
}

/// Failures in a row that count as "restarting in a loop".
const RESTART_LOOP: i64 = 3;

/// What `status` should shout about an account, from what the running gateway recorded.
fn health_problem(h: &crate::state::Health) -> Option<String> {
    let mut parts = Vec::new();
    if h.failures_in_a_row >= RESTART_LOOP {
        parts.push(format!(
            "imsg is restarting in a loop ({} failures in a row, {} since the gateway started); last error at {}: {}",
            h.failures_in_a_row,
            h.restarts,
            h.last_error_at.as_deref().unwrap_or("?"),
            h.last_error.as_deref().unwrap_or("unknown")
        ));
    }
    if h.skipped_rows > 0 {
        let mut line = format!(
            "{} row(s) imsg could not read were skipped (last: rowid {}); they were not answered",
            h.skipped_rows,
            h.last_skipped_rowid.map_or("?".into(), |r| r.to_string())
        );
        // Said once: the restart loop above already carries the last error.
        if let (true, Some(e)) = (h.failures_in_a_row < RESTART_LOOP, &h.last_error) {
            line.push_str(&format!(
                "; last error at {}: {e}",
                h.last_error_at.as_deref().unwrap_or("?")
            ));
        }
        parts.push(line);
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// A one-off imsg for an account (commands run while no gateway holds the state dir);
/// `Err` is the exit code, the reason already printed.
pub(crate) fn spawn_imsg(
    account: &crate::config::AccountConfig,
    request_timeout: Duration,
) -> Result<ImsgProcess, i32> {
    let spec = SpawnSpec {
        cli_path: account.cli_path.clone(),
        db_path: account.db_path.clone(),
        label: account.id.clone(),
        request_timeout,
    };
    ImsgProcess::spawn(&spec).map_err(|e| {
        eprintln!("error: {e}");
        1
    })
}

async fn chats(cli: &Cli, limit: u32, as_json: bool) -> i32 {
    let config = match load_config(cli) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(account) = config.accounts.iter().find(|a| a.enabled) else {
        eprintln!("error: no enabled iMessage account in the config");
        return 2;
    };
    let proc_ = match spawn_imsg(account, Duration::from_secs(10)) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let client = proc_.client.clone();
    let result = async {
        let n = negotiate(&client, Duration::from_secs(10)).await?;
        client
            .call(
                n.protocol,
                &crate::imsg::protocol::Request::ChatsList {
                    limit: limit.max(1),
                },
            )
            .await
    }
    .await;
    proc_.shutdown(Duration::from_millis(500)).await;
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: chats.list failed: {e}");
            return 1;
        }
    };
    for chat in result
        .get("chats")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if as_json {
            println!("{chat}");
            continue;
        }
        let s = |k: &str| chat.get(k).and_then(Value::as_str).unwrap_or("");
        println!(
            "[{}] {} ({}){}{}",
            chat.get("id").and_then(Value::as_i64).unwrap_or(0),
            s("name"),
            s("identifier"),
            if chat.get("is_group").and_then(Value::as_bool) == Some(true) {
                " group"
            } else {
                ""
            },
            match s("last_message_at") {
                "" => String::new(),
                t => format!(" last={t}"),
            }
        );
    }
    0
}
