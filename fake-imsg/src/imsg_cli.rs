//! The imsg commands run beside `imsg rpc`, by gateways probing a Mac and by people following
//! the setup docs: `status [--json]`, `chats [--limit N] [--json]` and a bare `--version`
//! (imsg-rpc.md §11; the chat object of imsg-rpc-v1.md §5.2). They describe the same emulated
//! Mac as `fake-imsg rpc` given the same `--db`, `--protocol` and `--level`: a stock Mac, SIP
//! enabled, no IMCore bridge.

use std::ffi::OsString;

use clap::Args;
use serde_json::{json, Value};

use crate::payload::{chat_name, iso8601, Level};
use crate::rpc::framing::Protocol;
use crate::rpc::lanes::{imsg_version, supported, ApiLevel, LEGACY_METHODS};
use crate::rpc::{db, methods, LevelArg, ProtocolArg};
use crate::world::WorldError;

/// imsg's `message` when SIP blocks the bridge (IMCoreBridge.checkAvailability).
pub const SIP_MESSAGE: &str = "System Integrity Protection (SIP) is enabled.\nAdvanced IMCore features are intentionally disabled.\n\nTo enable advanced features:\n1. Disable SIP in Recovery mode (`csrutil disable`)\n2. Run `make build-dylib`\n3. Run `imsg launch`";

/// Which imsg is being emulated, plus imsg's runtime flags (accepted and ignored).
#[derive(Debug, Args)]
pub struct Surface {
    /// Protocol surface: v1 (imsg 0.14+) or legacy (imsg 0.9).
    #[arg(long, env = "FAKE_IMSG_PROTOCOL", value_enum, default_value = "v1")]
    pub protocol: ProtocolArg,
    /// v1 feature level: the 0.14.0 release or post-release main.
    #[arg(long, env = "FAKE_IMSG_LEVEL", value_enum, default_value = "v1-0.14.0")]
    pub level: LevelArg,
    /// Emit machine-readable JSON output.
    #[arg(short = 'j', long, alias = "json-output", alias = "jsonOutput")]
    pub json: bool,
    /// Accepted and ignored, like imsg.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Accepted and ignored, like imsg.
    #[arg(long = "log-level", alias = "logLevel")]
    pub log_level: Option<String>,
}

/// Arguments of `fake-imsg status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Path to chat.db; accepted like the other commands take it (status, like imsg's, does
    /// not read the database).
    #[arg(long, default_value = "~/Library/Messages/chat.db")]
    pub db: String,
    #[command(flatten)]
    pub surface: Surface,
}

/// Arguments of `fake-imsg chats`.
#[derive(Debug, Args)]
pub struct ChatsArgs {
    /// Path to chat.db (the world); `~` is expanded.
    #[arg(long, default_value = "~/Library/Messages/chat.db")]
    pub db: String,
    /// Number of chats to list (v1: at least 1; legacy: 0 lists none, a negative number all).
    #[arg(long, default_value_t = 20, allow_negative_numbers = true)]
    pub limit: i64,
    /// Only chats with unread inbound messages.
    #[arg(long)]
    pub unread_only: bool,
    #[command(flatten)]
    pub surface: Surface,
}

/// What `imsg status --json` prints on a Mac without the bridge.
pub fn status_json(protocol: Protocol, level: ApiLevel) -> Value {
    let version = imsg_version(protocol, level);
    let rpc_methods: Vec<&str> = match protocol {
        Protocol::Legacy => LEGACY_METHODS.to_vec(),
        // imsg advertises send.tracked only when the bridge reports its selector.
        Protocol::V1 => supported(level)
            .into_iter()
            .filter(|m| *m != "send.tracked")
            .collect(),
    };
    let mut v = json!({
        "version": version,
        "basic_features": true,
        "advanced_features": false,
        "typing_indicators": false,
        "read_receipts": false,
        "sip": "enabled",
        "message": SIP_MESSAGE,
        "bridge_version": 0,
        "v2_ready": false,
        "selectors": {},
        "rpc_methods": rpc_methods,
    });
    if protocol == Protocol::V1 && level == ApiLevel::Main {
        v["capabilities"] = methods::capabilities(version);
    }
    v
}

/// `fake-imsg status [--json]`.
pub fn status_cli(a: StatusArgs) -> anyhow::Result<i32> {
    let protocol = a.surface.protocol.protocol();
    let level = a.surface.level.api_level();
    if a.surface.json {
        println!("{}", status_json(protocol, level));
        return Ok(0);
    }
    let version = imsg_version(protocol, level);
    let report = [
        "imsg Status Report",
        "==================",
        "",
        "Version:",
        &format!("  {version}"),
        "",
        "Basic features (send, receive, history):",
        "  Available",
        "",
        "System Integrity Protection (SIP):",
        "  enabled",
        "",
        "Advanced features (typing, read receipts):",
        "  Not available",
        "",
        "To enable advanced features:",
        "  1. Disable System Integrity Protection (SIP)",
        "     - Restart Mac holding Cmd+R",
        "     - Open Terminal from Utilities menu",
        "     - Run: csrutil disable",
        "     - Restart normally",
        "",
        "  2. Grant Full Disk Access",
        "     - System Settings > Privacy & Security > Full Disk Access",
        "     - Add Terminal or your terminal app",
        "",
        "  3. Build and launch:",
        "     make build-dylib",
        "     imsg launch",
        "",
        "Note: Basic messaging features work without these steps.",
    ];
    for line in report {
        println!("{line}");
    }
    Ok(0)
}

/// `fake-imsg chats [--limit N] [--json]`.
pub fn chats_cli(a: ChatsArgs) -> anyhow::Result<i32> {
    let protocol = a.surface.protocol.protocol();
    let limit = match protocol {
        Protocol::V1 if a.limit < 1 => {
            return Err(WorldError::Invalid("--limit must be at least 1".into()).into())
        }
        // imsg 0.9 hands the number to SQLite unclamped: LIMIT -1 is no limit.
        Protocol::Legacy if a.limit < 0 => usize::MAX,
        _ => a.limit as usize,
    };
    let path = db::expand_path(&a.db);
    let world = match (db::Db {
        path: path.clone(),
        forced_down: false,
    })
    .open_own()
    {
        Ok(w) => w,
        Err(_) => {
            // imsg prints its permission text on stdout and fails (imsg-rpc.md §11).
            println!(
                "{}",
                crate::rpc::permission_text(&path.display().to_string())
            );
            return Ok(1);
        }
    };
    if limit == 0 {
        return Ok(0);
    }
    let chats = world.chats(limit, a.unread_only)?;
    let level = match protocol {
        Protocol::V1 => Level::V1,
        Protocol::Legacy => Level::Legacy,
    };
    if a.surface.json {
        for (c, mut v) in chats.iter().zip(methods::chat_items(&world, &chats)) {
            if let (Protocol::Legacy, Some(o)) = (protocol, v.as_object_mut()) {
                // 0.9's CLI chat: `display_name` repeats `name`; no unread count yet.
                let name = Value::String(chat_name(c, level));
                o.remove("unread_count");
                o.insert("name".into(), name.clone());
                o.insert("display_name".into(), name);
            }
            println!("{v}");
        }
        return Ok(0);
    }
    for c in &chats {
        let shown = match (&c.contact_name, c.is_group()) {
            (Some(n), false) => n.clone(),
            _ => chat_name(c, level),
        };
        println!(
            "[{}] {shown} ({}) last={}",
            c.id,
            c.identifier,
            iso8601(c.last_message_date.unwrap_or(0))
        );
    }
    Ok(0)
}

/// The bare version line when argv asks for it the way imsg reads it: `--version` or `-V`
/// anywhere before a `--` (after one, the words belong to a wrapped command, as in `tap`).
/// The surface comes from `--protocol`/`--level` in argv or their environment variables;
/// `IMSG_VERSION` overrides the string, as it does for imsg.
pub fn bare_version(args: &[OsString]) -> Option<String> {
    let words: Vec<&str> = args
        .iter()
        .skip(1)
        .map(|a| a.to_str().unwrap_or(""))
        .take_while(|a| *a != "--")
        .collect();
    if !words.iter().any(|a| *a == "--version" || *a == "-V") {
        return None;
    }
    if let Ok(v) = std::env::var("IMSG_VERSION") {
        return Some(v);
    }
    let named = |flag: &str, env: &str| -> Option<String> {
        let eq = format!("{flag}=");
        let mut found = std::env::var(env).ok();
        for (i, w) in words.iter().enumerate() {
            if *w == flag {
                found = words.get(i + 1).map(|s| s.to_string());
            } else if let Some(v) = w.strip_prefix(&eq) {
                found = Some(v.to_string());
            }
        }
        found
    };
    let protocol = match named("--protocol", "FAKE_IMSG_PROTOCOL").as_deref() {
        Some("legacy") => Protocol::Legacy,
        _ => Protocol::V1,
    };
    let level = match named("--level", "FAKE_IMSG_LEVEL").as_deref() {
        Some("v1-main") => ApiLevel::Main,
        _ => ApiLevel::V014,
    };
    Some(imsg_version(protocol, level).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<OsString> {
        std::iter::once("fake-imsg")
            .chain(words.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn version_words() {
        assert!(bare_version(&argv(&["rpc"])).is_none());
        assert!(bare_version(&argv(&["tap", "--log", "f", "--", "imsg", "--version"])).is_none());
        assert!(bare_version(&argv(&["rpc", "-V"])).is_some());
        assert!(bare_version(&argv(&["-v"])).is_none(), "-v is verbose");
    }
}
