//! `fake-imsg rpc`: an `imsg rpc` JSON-RPC 2.0 server over stdin/stdout, faithful to protocol
//! v1 (imsg 0.14+, `imsg-rpc-v1.md`) and to the legacy 0.9 surface (`imsg-rpc.md`), over a
//! chat.db-shaped world, with faults on demand.
//!
//! Submodules: `framing` (line parser), `params` (strict and lenient params), `lanes`
//! (method tables), `server` (scheduler and EOF sequence), `out` (stdout writer), `db`
//! (database resource), `methods` (v1 reads/control), `watch`, `send` (send/typing/read and
//! legacy bridge stubs), `faults`, `errors`.

pub mod db;
pub mod errors;
pub mod faults;
pub mod framing;
pub mod lanes;
pub mod methods;
pub mod out;
pub mod params;
pub mod send;
pub mod server;
pub mod watch;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::payload::{chat_json, Level};
use crate::world::HistoryQuery;

use errors::RpcError;
use framing::Protocol;
use lanes::{bridge_only_mutation, is_known, ApiLevel, LEGACY_METHODS};
use params::Lenient;
use server::{Reply, Shared};

const FAULTS_HELP: &str = "\
Faults file (JSON5 object, every key optional):
  exit_after_requests: N        exit with status 1 right after the Nth response line
  exit_after_ms: N              exit with status 1 N ms after start
  garbage_line_after: N         write one non-JSON line after the Nth response
  partial_line_after: N         write the first half of a JSON line (then a newline) after the Nth response
  delay_ms: {method?: M, ms: N} sleep N ms before answering M (or every method)
  drop_response: {method: M, nth?: N}  run the Nth call of M (or every call) but never answer it
  database_unavailable: true    behave as if chat.db cannot be opened (v1: -32002; legacy: startup-error server)
  send_outcome_unknown_on: N    the Nth send writes its row but answers -32001 may_have_completed
  send_poison_on: N             the Nth send writes its row, answers -32001 still_in_flight, and every later mutation gets -32004
  duplicate_notification: true  write every watch `message` notification twice
  mirror_echo: \"text\"|\"reply_to\"  after each send, write an inbound row in the same chat with the same text, or with U+FFFC text and reply_to_guid = the sent guid
  unjoined_ms: N                watchers treat rows injected after start as not yet joined to a chat for N ms
  default_debounce_ms: N        a subscription that names no debounce_ms gets N instead of imsg's 500 (benchmarks)";

/// Protocol choice on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProtocolArg {
    V1,
    Legacy,
}

impl ProtocolArg {
    pub fn protocol(self) -> Protocol {
        match self {
            ProtocolArg::V1 => Protocol::V1,
            ProtocolArg::Legacy => Protocol::Legacy,
        }
    }
}

/// Feature level of protocol v1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LevelArg {
    #[value(name = "v1-0.14.0")]
    V1_0_14_0,
    #[value(name = "v1-main")]
    V1Main,
}

impl LevelArg {
    pub fn api_level(self) -> ApiLevel {
        match self {
            LevelArg::V1_0_14_0 => ApiLevel::V014,
            LevelArg::V1Main => ApiLevel::Main,
        }
    }
}

/// Arguments of `fake-imsg rpc`.
#[derive(Debug, clap::Args)]
#[command(after_help = FAULTS_HELP)]
pub struct RpcArgs {
    /// Path to chat.db (the world); `~` is expanded.
    #[arg(long, default_value = "~/Library/Messages/chat.db")]
    pub db: String,
    /// Protocol surface: v1 (imsg 0.14+) or legacy (imsg 0.9).
    #[arg(long, env = "FAKE_IMSG_PROTOCOL", value_enum, default_value = "v1")]
    pub protocol: ProtocolArg,
    /// Faults file (JSON5); see below.
    #[arg(long, env = "FAKE_IMSG_FAULTS")]
    pub faults: Option<PathBuf>,
    /// v1 feature level: the 0.14.0 release or post-release main.
    #[arg(long, env = "FAKE_IMSG_LEVEL", value_enum, default_value = "v1-0.14.0")]
    pub level: LevelArg,
    /// Write the process id to this file at start.
    #[arg(long, env = "FAKE_IMSG_PID_FILE")]
    pub pid_file: Option<PathBuf>,
    /// Accepted and ignored, like imsg (also enables debug diagnostics on stderr).
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Accepted and ignored, like imsg.
    #[arg(short = 'j', long, alias = "json-output", alias = "jsonOutput")]
    pub json: bool,
    /// Accepted and ignored, like imsg.
    #[arg(long = "log-level", alias = "logLevel")]
    pub log_level: Option<String>,
}

/// The legacy startup-error text (imsg-rpc.md §10) for a database path.
pub fn permission_text(path: &str) -> String {
    format!(
        "unable to open database file (code: 14)\n\n\u{26a0}\u{fe0f}  Permission Error: Cannot access Messages database\n\nThe Messages database at {path} requires Full Disk Access permission.\n\nTo fix:\n1. Open System Settings \u{2192} Privacy & Security \u{2192} Full Disk Access\n2. Add your terminal application and any parent launcher (VS Code, Node, gateway, etc.)\n3. Also add the built-in Terminal.app if you normally use another terminal\n4. Toggle stale entries off and on after terminal/Homebrew/app updates\n5. Restart the terminal or parent app, then try again\n\nNote: This is required because macOS protects the Messages database.\nFor more details, see: https://github.com/steipete/imsg#permissions-troubleshooting"
    )
}

/// Runs the server on stdin/stdout; returns the process exit code.
/// `exit` ends the process for the faults that end fake-imsg (the binary hands in
/// `std::process::exit`).
pub fn run_cli(args: RpcArgs, exit: fn(i32) -> !) -> anyhow::Result<i32> {
    let filter = if args.verbose { "debug" } else { "warn" };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes are for a person at a terminal; a gateway that logs the child's
        // stderr would store them as garbage.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FAKE_IMSG_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .try_init();
    if let Some(p) = &args.pid_file {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .map_err(|e| anyhow::anyhow!("cannot write pid file {}: {e}", p.display()))?;
    }
    let faults = match &args.faults {
        Some(p) => faults::Faults::load(p)?,
        None => faults::Faults::default(),
    };
    let protocol = args.protocol.protocol();
    let level = args.level.api_level();
    let db = db::Db {
        path: db::expand_path(&args.db),
        forced_down: faults.database_unavailable,
    };
    let startup_error = (protocol == Protocol::Legacy && db.probe().is_err())
        .then(|| permission_text(&db.path_str()));
    if startup_error.is_some() {
        tracing::warn!(
            "database {} unreadable: startup-error server",
            db.path_str()
        );
    }
    let exit_after = faults.exit_after_ms;
    let out = out::Out::ending_with(
        Box::new(std::io::stdout()),
        faults.clone(),
        out::Ending::Process(exit),
    );
    let sh = Arc::new(Shared::new(protocol, level, db, faults, out));
    if let Some(ms) = exit_after {
        let sh2 = sh.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(ms));
            tracing::warn!("fault exit_after_ms={ms}: exiting");
            sh2.out.end(1);
        });
    }
    let stdin = std::io::stdin();
    Ok(server::serve(sh, stdin.lock(), startup_error))
}

/// Routes one request to its handler.
pub(crate) fn dispatch(sh: &Arc<Shared>, method: &str, params: &Map<String, Value>) -> Reply {
    match sh.protocol {
        Protocol::V1 => dispatch_v1(sh, method, params),
        Protocol::Legacy => {
            let mut reply = dispatch_legacy(sh, method, params);
            // Legacy has no -32002: a database failure mid-run is a generic internal error.
            if let Err(e) = &reply.result {
                if e.code == -32002 {
                    reply.result = Err(RpcError::internal(
                        "The operation couldn\u{2019}t be completed. (SQLite.Result error 14.)",
                    ));
                }
            }
            reply
        }
    }
}

fn dispatch_v1(sh: &Arc<Shared>, method: &str, params: &Map<String, Value>) -> Reply {
    if !is_known(method, sh.level) {
        return Err(RpcError::method_not_found(method)).into();
    }
    match method {
        "initialize" => methods::initialize(sh, params),
        "status" => methods::status(sh, params),
        "chats.list" => return Reply::memoized(methods::chats_list(sh, params)),
        "chats.get" => methods::chats_get(sh, params),
        "messages.history" => methods::messages_history(sh, params),
        "messages.after" => methods::messages_after(sh, params),
        "messages.search" => methods::messages_search(sh, params),
        "messages.stats" => methods::messages_stats(sh, params),
        "messages.scheduled" => methods::messages_scheduled(sh, params),
        "message.send_status" => methods::send_status(sh, params),
        "watch.subscribe" => return watch::subscribe_v1(sh, params),
        "watch.unsubscribe" => watch::unsubscribe(sh, params),
        "send" => return Reply::encoded(send::send_v1(sh, params)),
        "send.tracked" => methods::send_tracked(sh, params),
        "typing" | "read" => send::typing_or_read(sh, method, params),
        "bridge.events.subscribe" => Err(RpcError::bridge_events_unavailable()),
        "handles.check" | "contacts.shouldShareContact" => Err(RpcError::bridge_unavailable()),
        m if bridge_only_mutation(m) => methods::bridge_mutation(m),
        _ => Err(RpcError::method_not_found(method)),
    }
    .into()
}

fn dispatch_legacy(sh: &Arc<Shared>, method: &str, params: &Map<String, Value>) -> Reply {
    if !LEGACY_METHODS.contains(&method) {
        return Err(RpcError::method_not_found(method)).into();
    }
    let p = Lenient { map: params };
    match method {
        "chats.list" => {
            let limit = p.int(&["limit"]).unwrap_or(20).max(1) as usize;
            return Reply::memoized(sh.db.run_memo(&format!("chats.list/legacy/{limit}"), |w| {
                let chats = w
                    .chats(limit, false)
                    .map_err(|e| RpcError::internal(e.to_string()))?;
                let list: Vec<Value> = chats
                    .into_iter()
                    .map(|c| chat_json(&sh.describe_chat(c), Level::Legacy))
                    .collect();
                Ok(methods::chats_result(list))
            }));
        }
        "messages.history" => legacy_history(sh, &p),
        "watch.subscribe" => return watch::subscribe_legacy(sh, params),
        "watch.unsubscribe" => watch::unsubscribe(sh, params),
        "send" => return Reply::encoded(send::send_legacy(sh, params)),
        "typing" | "read" => send::typing_or_read(sh, method, params),
        m => send::legacy_bridge(sh, m, params),
    }
    .into()
}

fn legacy_history(sh: &Shared, p: &Lenient) -> Result<Value, RpcError> {
    let chat_id = p
        .int(&["chat_id"])
        .ok_or_else(|| RpcError::invalid_params("chat_id is required"))?;
    let limit = p.int(&["limit"]).unwrap_or(50).max(1) as usize;
    let mut dates = [None, None];
    for (i, k) in ["start", "end"].iter().enumerate() {
        if p.has(k) {
            let s = p.string(&[k]).unwrap_or_default();
            dates[i] = Some(
                crate::payload::parse_iso8601(&s)
                    .ok_or_else(|| RpcError::internal(format!("Invalid ISO8601 date: {s}")))?,
            );
        }
    }
    let q = HistoryQuery {
        chat_id,
        limit,
        participants: p.strings(&["participants"]),
        start: dates[0],
        end: dates[1],
    };
    let attachments = p.bool(&["attachments"]).unwrap_or(false);
    sh.db
        .run(|w| methods::history(sh, w, Level::Legacy, q, attachments))
}
