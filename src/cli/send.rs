//! `imsg-gateway send --to TARGET [--account ID] [--file PATH]... [TEXT | -]`: sends a message
//! with the same chunking, prefix and file checks as replies. `--dry-run` sends nothing and
//! needs no imsg; with `--json` it prints the `send` params it would issue, as one JSON array,
//! so an operator can see what a long reply will look like. While a gateway runs on the state
//! dir, the message goes through that gateway's imsg (its outbox), never a second imsg.
//! Exit codes: 0 sent, 1 imsg refused or failed, 2 bad usage (the message names the value).

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::config::{AccountConfig, Config};
use crate::imsg::negotiate;
use crate::imsg::protocol::{Request, SendReceipt};
use crate::outbound::{files, parse_target, plan_send, SendParams, SendTo};
use crate::state::{DirLock, JournalStatus, StateError, Store};

/// The longest text `send` reads (argument or stdin), as for agent replies.
const MAX_TEXT_BYTES: usize = crate::config::DEFAULT_AGENT_MAX_REPLY_BYTES;

#[derive(Debug, Args)]
pub struct SendArgs {
    /// chat_id:N (preferred), chat_guid:G, chat_identifier:X, or a phone number or email,
    /// optionally after imessage:, sms: or auto:.
    #[arg(long, value_name = "TARGET")]
    pub to: String,
    /// The account to send from (default: the first enabled one).
    #[arg(long, value_name = "ID")]
    pub account: Option<String>,
    /// A file to send after the text (repeatable).
    #[arg(long = "file", value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// Print what would be sent; send nothing (imsg is not needed).
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: the `send` params as one JSON array.
    #[arg(long)]
    pub json: bool,
    /// The text, or `-` to read it from stdin.
    #[arg(value_name = "TEXT")]
    pub text: Option<String>,
}

fn usage(msg: impl std::fmt::Display) -> i32 {
    eprintln!("error: {msg}");
    2
}

fn read_text(arg: Option<&str>) -> Result<String, i32> {
    let text = match arg {
        Some("-") => {
            let mut buf = Vec::new();
            std::io::stdin()
                .take(MAX_TEXT_BYTES as u64 + 1)
                .read_to_end(&mut buf)
                .map_err(|e| usage(format!("cannot read the text from stdin: {e}")))?;
            String::from_utf8(buf).map_err(|_| usage("the text on stdin is not UTF-8"))?
        }
        Some(t) => t.to_string(),
        None => String::new(),
    };
    if text.len() > MAX_TEXT_BYTES {
        return Err(usage(format!(
            "the text is longer than {MAX_TEXT_BYTES} bytes; send it in parts"
        )));
    }
    Ok(text)
}

fn pick_account<'a>(config: &'a Config, id: Option<&str>) -> Result<&'a AccountConfig, i32> {
    match id {
        Some(id) => config.accounts.iter().find(|a| a.id == id).ok_or_else(|| {
            let known: Vec<&str> = config.accounts.iter().map(|a| a.id.as_str()).collect();
            usage(format!(
                "--account: no account \"{id}\" in the config (accounts: {})",
                known.join(", ")
            ))
        }),
        None => config
            .accounts
            .iter()
            .find(|a| a.enabled)
            .ok_or_else(|| usage("no enabled iMessage account in the config")),
    }
}

/// One line about one planned send, for people.
fn describe(i: usize, n: usize, p: &SendParams) -> String {
    let target = match &p.to {
        SendTo::ChatId(id) => format!("chat_id:{id}"),
        SendTo::ChatGuid(g) => format!("chat_guid:{g}"),
        SendTo::ChatIdentifier(c) => format!("chat_identifier:{c}"),
        SendTo::Handle(h) => format!("to:{h}"),
    };
    if let Some(f) = &p.file {
        return format!("{i}/{n} {target} file {f}");
    }
    let text = p.text.as_deref().unwrap_or_default();
    let chars = text.chars().count();
    let head: String = text.chars().take(60).collect();
    let more = if chars > 60 { "…" } else { "" };
    format!(
        "{i}/{n} {target} text ({chars} chars): {}{more}",
        head.replace('\n', "⏎")
    )
}

pub async fn run(config: &Config, args: &SendArgs) -> i32 {
    let account = match pick_account(config, args.account.as_deref()) {
        Ok(a) => a,
        Err(c) => return c,
    };
    let target = match parse_target(&args.to) {
        Ok(t) => t,
        Err(e) => return usage(format!("--to: {e}")),
    };
    let text = match read_text(args.text.as_deref()) {
        Ok(t) => t,
        Err(c) => return c,
    };
    let mut paths = Vec::new();
    for f in &args.files {
        let abs = std::path::absolute(f).unwrap_or_else(|_| f.clone());
        let shown = abs.display().to_string();
        if let Err(e) = files::check(&shown, account.media_max_mb) {
            return usage(format!("--file {e}"));
        }
        paths.push(shown);
    }
    if text.trim().is_empty() && paths.is_empty() {
        return usage("nothing to send: give the TEXT (or - to read it from stdin) or --file PATH");
    }
    if args.json && !args.dry_run {
        return usage("--json goes with --dry-run (a real send prints one line per message sent)");
    }
    let plan = plan_send(&text, &paths, &target, account);
    let n = plan.len();
    if args.dry_run {
        if args.json {
            println!(
                "{}",
                serde_json::to_string(&plan).expect("a plan serialises")
            );
        } else {
            for (i, p) in plan.iter().enumerate() {
                println!("{}", describe(i + 1, n, p));
            }
            println!("(dry run: nothing sent)");
        }
        return 0;
    }
    match DirLock::acquire(&config.state_dir) {
        Ok(lock) => {
            // No gateway runs: this process is the only imsg user for the duration.
            let code = send_direct(account, &plan).await;
            drop(lock);
            code
        }
        Err(StateError::Locked { pid, .. }) => send_via_gateway(config, account, &plan, &pid).await,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

async fn send_direct(account: &AccountConfig, plan: &[SendParams]) -> i32 {
    let n = plan.len();
    let proc_ = match super::spawn_imsg(account, crate::imsg::DEFAULT_TIMEOUT) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let client = proc_.client.clone();
    let code = async {
        let protocol = match negotiate(&client, Duration::from_secs(10)).await {
            Ok(p) => p.protocol,
            Err(e) => {
                eprintln!("error: imsg did not start: {e}");
                return 1;
            }
        };
        for (i, p) in plan.iter().enumerate() {
            let line = describe(i + 1, n, p);
            let file_only = p.is_file_only();
            match client.call(protocol, &Request::Send(p.to_json())).await {
                Ok(r) => {
                    let guid = SendReceipt::from_result(&r)
                        .guid
                        .unwrap_or_else(|| "?".into());
                    println!("sent {line} (guid {guid})");
                }
                Err(e) if file_only && e.may_have_completed() => {
                    println!("sent {line} (handed to Messages; imsg cannot verify an attachment-only send)");
                }
                Err(e) => {
                    eprintln!(
                        "error: send {} of {n} failed: {e}; {} not sent",
                        i + 1,
                        match n - i - 1 {
                            0 => "nothing else was".to_string(),
                            1 => "the 1 after it was".to_string(),
                            k => format!("the {k} after it were"),
                        }
                    );
                    return 1;
                }
            }
        }
        0
    }
    .await;
    proc_.shutdown(Duration::from_millis(500)).await;
    code
}

async fn send_via_gateway(
    config: &Config,
    account: &AccountConfig,
    plan: &[SendParams],
    pid: &str,
) -> i32 {
    let n = plan.len();
    let store = match Store::open(&config.state_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let stored = serde_json::to_string(plan).expect("a plan serialises");
    let key = match store.queue_outbox(&account.id, &stored) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    eprintln!("the gateway (pid {pid}) is running: sending through its imsg");
    let mut printed = 0usize;
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let e = match store.entry(&account.id, &key) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        };
        let Some(e) = e else { continue };
        let sent = if e.status == JournalStatus::Answered {
            n
        } else {
            (e.sent.max(0) as usize).min(n)
        };
        while printed < sent {
            println!("sent {}", describe(printed + 1, n, &plan[printed]));
            printed += 1;
        }
        match e.status {
            JournalStatus::Answered => return 0,
            JournalStatus::Failed | JournalStatus::Skipped => {
                eprintln!(
                    "error: {}; {} of {n} sent",
                    e.reason.unwrap_or_else(|| "the send failed".into()),
                    printed
                );
                return 1;
            }
            _ => {}
        }
    }
    eprintln!("the gateway has not confirmed every send within 60 s ({printed} of {n} so far); it keeps trying (see its log, key {key})");
    1
}
