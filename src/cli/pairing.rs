//! `imsg-gateway pairing list | approve | reject | revoke | approved`: the operator's side of
//! DM pairing, on the same state database the running gateway uses (approvals count from the
//! sender's next message, no restart). A leading `imessage` channel word, `--provider
//! imessage` and `--channel imessage` are accepted, so commands typed from Clawdbot/OpenClaw
//! habits work. Exit codes: 0 done, 1 the code or handle was not usable (unknown, expired,
//! used, rejected, not approved) or the store failed, 2 bad usage.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::access::pairing::{approval_message, expires_at};
use crate::clock::{Clock, SystemClock};
use crate::config::{AccountConfig, Config};
use crate::outbound::{handle_target, normalize_handle, plan_reply, Target};
use crate::state::{iso_ms, DirLock, JournalStatus, PairingError, StateError, Store};

#[derive(Debug, Subcommand)]
pub enum PairingAction {
    /// Pending requests: code, sender, chat, when created, how long until it expires.
    List {
        #[command(flatten)]
        channel: ChannelArgs,
        /// Only this account's requests.
        #[arg(long, value_name = "ID")]
        account: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Approve a pending request: its sender's DMs are answered from their next message.
    Approve {
        #[command(flatten)]
        channel: ChannelArgs,
        /// Also tell the sender, through the running gateway's imsg.
        #[arg(long)]
        notify: bool,
    },
    /// Reject a pending request: its sender gets nothing until the request would have expired.
    Reject {
        #[command(flatten)]
        channel: ChannelArgs,
    },
    /// Remove a sender's approval (its DMs go back to the pairing flow).
    Revoke {
        #[command(flatten)]
        channel: ChannelArgs,
        /// Only in this account.
        #[arg(long, value_name = "ID")]
        account: Option<String>,
    },
    /// Approved senders.
    Approved {
        #[command(flatten)]
        channel: ChannelArgs,
        #[arg(long, value_name = "ID")]
        account: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

/// `[imessage] <VALUE>` plus `--provider`/`--channel`, as the reference CLI takes them.
#[derive(Debug, Args)]
pub struct ChannelArgs {
    /// `[imessage] CODE` (approve, reject), `[imessage] HANDLE` (revoke), `[imessage]` (list).
    #[arg(value_name = "ARGS")]
    args: Vec<String>,
    /// The channel; only `imessage` (or `imsg`) is known here.
    #[arg(long, alias = "channel", value_name = "CHANNEL")]
    provider: Option<String>,
}

fn usage(msg: impl std::fmt::Display) -> i32 {
    eprintln!("error: {msg}");
    2
}

fn check_channel(c: &str) -> Result<(), i32> {
    match c.trim().to_ascii_lowercase().as_str() {
        "imessage" | "imsg" => Ok(()),
        other => Err(usage(format!(
            "imsg-gateway pairs iMessage senders only; got channel \"{other}\" (use imessage, or leave it out)"
        ))),
    }
}

impl ChannelArgs {
    /// The positional values after an optional channel word; `want` is how many.
    fn values(&self, want: usize, what: &str) -> Result<Vec<String>, i32> {
        if let Some(p) = &self.provider {
            check_channel(p)?;
        }
        let mut args = self.args.clone();
        if args.len() > want {
            let first = args.remove(0);
            check_channel(&first)?;
        }
        if args.len() > want {
            return Err(usage(format!("too many arguments: expected {what}")));
        }
        if args.len() < want || args.iter().any(|a| a.trim().is_empty()) {
            return Err(usage(format!("missing {what}")));
        }
        Ok(args)
    }
}

fn open(config: &Config) -> Result<Store, i32> {
    Store::open(&config.state_dir).map_err(|e| {
        eprintln!("error: {e}");
        1
    })
}

fn now_ms() -> i64 {
    SystemClock.now_ms() as i64
}

fn account_of<'a>(config: &'a Config, id: &str) -> Result<&'a AccountConfig, i32> {
    config.accounts.iter().find(|a| a.id == id).ok_or_else(|| {
        let known: Vec<&str> = config.accounts.iter().map(|a| a.id.as_str()).collect();
        usage(format!(
            "no account \"{id}\" in the config (accounts: {})",
            known.join(", ")
        ))
    })
}

fn state_err(e: StateError) -> i32 {
    eprintln!("error: {e}");
    1
}

/// "59m", "1h0m", "expired".
fn until(expires_ms: i64, now_ms: i64) -> String {
    match crate::access::pairing::minutes_left(expires_ms, now_ms) {
        0 => "expired".into(),
        m if m >= 60 => format!("{}h{}m", m / 60, m % 60),
        m => format!("{m}m"),
    }
}

pub async fn run(config: &Config, action: &PairingAction) -> i32 {
    match action {
        PairingAction::List {
            channel,
            account,
            json,
        } => {
            if let Err(c) = channel.values(0, "no arguments besides the channel") {
                return c;
            }
            if let Some(a) = account {
                if let Err(c) = account_of(config, a) {
                    return c;
                }
            }
            list(config, account.as_deref(), *json)
        }
        PairingAction::Approve { channel, notify } => match channel.values(1, "the pairing CODE") {
            Ok(v) => approve(config, &v[0], *notify).await,
            Err(c) => c,
        },
        PairingAction::Reject { channel } => match channel.values(1, "the pairing CODE") {
            Ok(v) => reject(config, &v[0]),
            Err(c) => c,
        },
        PairingAction::Revoke { channel, account } => {
            match channel.values(1, "the HANDLE to revoke") {
                Ok(v) => revoke(config, account.as_deref(), &v[0]),
                Err(c) => c,
            }
        }
        PairingAction::Approved {
            channel,
            account,
            json,
        } => {
            if let Err(c) = channel.values(0, "no arguments besides the channel") {
                return c;
            }
            approved(config, account.as_deref(), *json)
        }
    }
}

fn list(config: &Config, account: Option<&str>, as_json: bool) -> i32 {
    let store = match open(config) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let now = now_ms();
    let requests = match store.pairing_list(account, now) {
        Ok(r) => r,
        Err(e) => return state_err(e),
    };
    if as_json {
        let items: Vec<Value> = requests
            .iter()
            .map(|r| {
                json!({
                    "account": r.account, "code": r.code, "sender": r.sender,
                    "chat_id": r.chat_id, "created": iso_ms(r.created_ms),
                    "expires": iso_ms(r.expires_ms),
                    "expires_in_s": (r.expires_ms - now).max(0) / 1000,
                })
            })
            .collect();
        println!("{}", json!({"channel": "imessage", "requests": items}));
        return 0;
    }
    if requests.is_empty() {
        println!("No pending pairing requests.");
        return 0;
    }
    println!("Pending pairing requests ({}):", requests.len());
    println!(
        "{:<10}{:<28}{:<8}{:<12}{:<22}EXPIRES IN",
        "CODE", "SENDER", "CHAT", "ACCOUNT", "CREATED"
    );
    for r in &requests {
        println!(
            "{:<10}{:<28}{:<8}{:<12}{:<22}{}",
            r.code,
            r.sender,
            r.chat_id
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            r.account,
            iso_ms(r.created_ms),
            until(r.expires_ms, now)
        );
    }
    println!("Approve with: imsg-gateway pairing approve <CODE>");
    0
}

fn pairing_failed(e: PairingError) -> i32 {
    eprintln!("error: {e}");
    1
}

async fn approve(config: &Config, code: &str, notify: bool) -> i32 {
    let mut store = match open(config) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let a = match store.pairing_approve(code, now_ms()) {
        Ok(a) => a,
        Err(e) => return pairing_failed(e),
    };
    let where_ = if a.account == "default" {
        String::new()
    } else {
        format!(" (account {})", a.account)
    };
    println!("Approved iMessage sender {}{where_}.", a.sender);
    if !notify {
        return 0;
    }
    // The running gateway's imsg sends it: a second imsg process would race the first.
    match DirLock::acquire(&config.state_dir) {
        Ok(lock) => {
            drop(lock);
            eprintln!(
                "warning: the gateway is not running, so {} was not notified; the approval stands",
                a.sender
            );
            return 0;
        }
        Err(StateError::Locked { .. }) => {}
        Err(e) => return state_err(e),
    }
    let Some(account) = config.accounts.iter().find(|c| c.id == a.account) else {
        eprintln!(
            "warning: account {} is no longer in the config, so {} was not notified; the approval stands",
            a.account, a.sender
        );
        return 0;
    };
    let target = match a.chat_id {
        Some(id) => Target::ChatId(id),
        None => handle_target(&a.sender),
    };
    let plain = AccountConfig {
        response_prefix: None,
        ..account.clone()
    };
    let plan = serde_json::to_string(&plan_reply(&approval_message(), &target, &plain))
        .expect("a plan serialises");
    let key = match store.queue_outbox(&a.account, &plan) {
        Ok(k) => k,
        Err(e) => return state_err(e),
    };
    // Wait a little for the gateway to say how it went; it keeps trying after we give up.
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        match store.entry(&a.account, &key) {
            Ok(Some(e)) if e.status == JournalStatus::Answered => {
                println!("Notified {}.", a.sender);
                return 0;
            }
            Ok(Some(e)) if matches!(e.status, JournalStatus::Failed | JournalStatus::Skipped) => {
                eprintln!(
                    "error: could not notify {}: {}; the approval stands",
                    a.sender,
                    e.reason.unwrap_or_else(|| "unknown error".into())
                );
                return 1;
            }
            Ok(_) => {}
            Err(e) => return state_err(e),
        }
    }
    println!(
        "The notification to {} is queued; the gateway sends it as soon as imsg is connected.",
        a.sender
    );
    0
}

fn reject(config: &Config, code: &str) -> i32 {
    let mut store = match open(config) {
        Ok(s) => s,
        Err(c) => return c,
    };
    match store.pairing_reject(code, now_ms()) {
        Ok(r) => {
            println!(
                "Rejected the pairing request of {}; it gets no reply until {}.",
                r.sender,
                iso_ms(expires_at(r.created_ms))
            );
            0
        }
        Err(e) => pairing_failed(e),
    }
}

fn revoke(config: &Config, account: Option<&str>, handle: &str) -> i32 {
    let accounts: Vec<&AccountConfig> = match account {
        Some(id) => match account_of(config, id) {
            Ok(a) => vec![a],
            Err(c) => return c,
        },
        None => config.accounts.iter().collect(),
    };
    let mut store = match open(config) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let mut gone = Vec::new();
    for a in accounts {
        let sender = normalize_handle(handle, &a.region);
        match store.pairing_revoke(Some(&a.id), &sender) {
            Ok(g) => gone.extend(g),
            Err(e) => return state_err(e),
        }
    }
    if gone.is_empty() {
        eprintln!("error: {handle} has no pairing approval (see imsg-gateway pairing approved)");
        return 1;
    }
    for g in gone {
        println!(
            "Revoked the approval of {} (account {}).",
            g.sender, g.account
        );
    }
    0
}

fn approved(config: &Config, account: Option<&str>, as_json: bool) -> i32 {
    let store = match open(config) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let list = match store.approvals(account) {
        Ok(l) => l,
        Err(e) => return state_err(e),
    };
    if as_json {
        let items: Vec<Value> = list
            .iter()
            .map(|a| {
                json!({"account": a.account, "sender": a.sender, "code": a.code,
                       "chat_id": a.chat_id, "approved": iso_ms(a.approved_ms)})
            })
            .collect();
        println!("{}", json!({"channel": "imessage", "approved": items}));
        return 0;
    }
    if list.is_empty() {
        println!("No approved senders (allowFrom in the config is not listed here).");
        return 0;
    }
    println!("Approved senders ({}):", list.len());
    println!("{:<28}{:<12}APPROVED", "SENDER", "ACCOUNT");
    for a in &list {
        println!("{:<28}{:<12}{}", a.sender, a.account, iso_ms(a.approved_ms));
    }
    0
}
