//! The conformance harness: one running gateway per scenario, behind the stdio recorder.
//!
//! Owns everything a step touches outside the process: the binaries under test (fake-imsg,
//! or a real imsg), the scenario directory (world, state, config, wrapper script, logs), the
//! gateway process, and reading the tap log back into request/response exchanges. Building
//! binaries, signals and stopping a child are `tests/support`'s. Nothing here knows Gherkin;
//! `steps` turns phrases into calls on this module.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{self, Gw};

/// How long a step waits for something that should happen. Generous: it only guards against
/// hangs, it never measures speed. A real imsg waits up to 8 s to verify each send (and
/// cannot verify it in the scenario's world), so replies queue behind it there.
pub fn wait() -> Duration {
    if binaries().real {
        Duration::from_secs(40)
    } else {
        Duration::from_secs(10)
    }
}
/// How often a waiting step looks again.
pub const POLL: Duration = Duration::from_millis(50);
/// How long "nothing (else) is sent" is watched when a step names no period.
pub const QUIET: Duration = Duration::from_millis(1500);

/// The programs under test, found once per run.
#[derive(Debug)]
pub struct Binaries {
    pub gateway: PathBuf,
    pub fake_imsg: PathBuf,
    /// The imsg the gateway talks to through the tap: fake-imsg, or `$IMSG_CONFORMANCE_CLI`.
    pub imsg: PathBuf,
    /// True when `imsg` is a real imsg (the `@fake-only` scenarios are skipped).
    pub real: bool,
    pub agent_script: PathBuf,
}

static BINARIES: OnceLock<Binaries> = OnceLock::new();

/// The binaries; `init_binaries` must have run.
pub fn binaries() -> &'static Binaries {
    BINARIES.get().expect("init_binaries runs before the suite")
}

/// Locates (and if needed builds) the binaries. Called once from `main` before any scenario.
pub fn init_binaries() -> anyhow::Result<&'static Binaries> {
    // IMSG_GATEWAY_BIN runs the suite against another build (an installed release).
    let gateway =
        std::env::var_os("IMSG_GATEWAY_BIN").map_or_else(support::gateway_bin, PathBuf::from);
    let fake_imsg = match std::env::var_os("FAKE_IMSG_BIN") {
        Some(p) => {
            let p = PathBuf::from(p);
            if !p.is_file() {
                anyhow::bail!("fake-imsg binary not found at {}", p.display());
            }
            p
        }
        None => support::build_fake_imsg().map_err(anyhow::Error::msg)?,
    };
    let (imsg, real) = match std::env::var_os("IMSG_CONFORMANCE_CLI") {
        Some(p) if !p.is_empty() => (PathBuf::from(p), true),
        _ => (fake_imsg.clone(), false),
    };
    let agent_script = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/conformance/agent.py"
    ));
    Ok(BINARIES.get_or_init(|| Binaries {
        gateway,
        fake_imsg,
        imsg,
        real,
        agent_script,
    }))
}

/// One request the gateway wrote to imsg, with imsg's answer if one came.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: String,
    pub params: Value,
    pub id: Option<Value>,
    /// The whole response object (`result` or `error`).
    pub response: Option<Value>,
}

impl Exchange {
    pub fn result(&self) -> Option<&Value> {
        self.response.as_ref().and_then(|r| r.get("result"))
    }
    pub fn error(&self) -> Option<&Value> {
        self.response.as_ref().and_then(|r| r.get("error"))
    }
}

/// Reads the tap log into exchanges, in the order the gateway wrote the requests. A response
/// is paired with the latest unanswered request with its id (ids may repeat across child
/// restarts). Lines that are not JSON (garbage faults) are ignored.
pub fn read_tap(path: &Path) -> Vec<Exchange> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out: Vec<Exchange> = Vec::new();
    let mut pending: HashMap<String, usize> = HashMap::new();
    for rec in text.lines() {
        let Ok(rec) = serde_json::from_str::<Value>(rec) else {
            continue;
        };
        let Some(line) = rec.get("line").and_then(Value::as_str) else {
            continue;
        };
        let Ok(msg) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        match rec.get("dir").and_then(Value::as_str) {
            Some("in") => {
                let Some(method) = msg.get("method").and_then(Value::as_str) else {
                    continue;
                };
                let id = msg.get("id").cloned();
                if let Some(id) = &id {
                    pending.insert(id.to_string(), out.len());
                }
                out.push(Exchange {
                    method: method.to_string(),
                    params: msg.get("params").cloned().unwrap_or(Value::Null),
                    id,
                    response: None,
                });
            }
            Some("out") => {
                if msg.get("method").is_some() {
                    continue; // a notification
                }
                let Some(id) = msg.get("id") else { continue };
                if let Some(idx) = pending.remove(&id.to_string()) {
                    out[idx].response = Some(msg);
                }
            }
            _ => {}
        }
    }
    out
}

/// The last `n` lines of a text file, for failure messages, without ANSI colour codes.
pub fn tail(path: &Path, n: usize) -> String {
    let text = strip_ansi(&std::fs::read_to_string(path).unwrap_or_default());
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Which agent the gateway is configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agent {
    /// The built-in echo agent.
    Echo,
    /// `agent.py`: the exec agent that records each envelope and answers like echo.
    Recording,
}

/// Everything a gateway start needs to know about the scenario.
#[derive(Debug, Clone)]
pub struct Launch {
    pub dir: PathBuf,
    pub agent: Agent,
    pub protocol: Option<String>,
    pub faults: Option<Value>,
    /// Config a scenario sets (`Given the config says:`), merged over the suite's defaults:
    /// each `imessage` key replaces the default's, other top-level keys are set whole.
    pub config: Option<Value>,
}

impl Launch {
    pub fn world_path(&self) -> PathBuf {
        self.dir.join("world.db")
    }
    pub fn tap_log(&self) -> PathBuf {
        self.dir.join("tap.jsonl")
    }
    pub fn stderr_path(&self) -> PathBuf {
        self.dir.join("gateway.stderr")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("imsg.pid")
    }
    pub fn state_db(&self) -> PathBuf {
        self.dir.join("state").join("state.db")
    }
    pub fn envelopes(&self) -> PathBuf {
        self.dir.join("envelopes.jsonl")
    }
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json5")
    }

    /// Writes the wrapper script (cliPath) and the config; returns the config path.
    pub fn write_files(&self) -> anyhow::Result<PathBuf> {
        let bins = binaries();
        let wrapper = self.dir.join("imsg");
        let script = format!(
            "#!/bin/sh\n# The gateway's imsg: the recorder in front of the imsg under test.\nexec {} tap --log {} -- {} \"$@\"\n",
            sh_quote(&bins.fake_imsg),
            sh_quote(&self.tap_log()),
            sh_quote(&bins.imsg),
        );
        std::fs::write(&wrapper, script)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
        }
        if let Some(faults) = &self.faults {
            std::fs::write(self.dir.join("faults.json"), faults.to_string())?;
        }
        let agent = match self.agent {
            Agent::Echo => serde_json::json!({ "kind": "echo" }),
            Agent::Recording => serde_json::json!({
                "kind": "exec",
                "command": ["python3", bins.agent_script, self.envelopes()],
            }),
        };
        // Open DMs and unmentioned group messages: the suite is about routing and echo
        // handling; access control has its own tests.
        let config = serde_json::json!({
            "imessage": {
                "cliPath": wrapper,
                "dbPath": self.world_path(),
                "dmPolicy": "open",
                "allowFrom": ["*"],
                "groupPolicy": "open",
                "groups": { "*": { "requireMention": false } },
            },
            "agent": agent,
            "state": { "dir": self.dir.join("state") },
        });
        let mut config = config;
        if let Some(Value::Object(extra)) = &self.config {
            for (k, v) in extra {
                match (k.as_str(), v) {
                    ("imessage", Value::Object(keys)) => {
                        for (ik, iv) in keys {
                            config["imessage"][ik] = iv.clone();
                        }
                    }
                    _ => config[k] = v.clone(),
                }
            }
        }
        let path = self.config_path();
        std::fs::write(&path, serde_json::to_string_pretty(&config)?)?;
        Ok(path)
    }
}

fn sh_quote(p: &Path) -> String {
    format!("'{}'", p.to_string_lossy().replace('\'', "'\\''"))
}

/// A running `imsg-gateway run`.
pub struct Gateway {
    gw: Gw,
    pub pid: u32,
}

impl fmt::Debug for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gateway").field("pid", &self.pid).finish()
    }
}

impl Gateway {
    /// Starts the gateway and waits until it has subscribed to the watch once more than the
    /// tap log already shows.
    pub async fn start(launch: &Launch) -> anyhow::Result<Gateway> {
        let bins = binaries();
        let config = launch.write_files()?;
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(launch.stderr_path())?;
        let before = subscriptions(&read_tap(&launch.tap_log()));
        let mut cmd = Command::new(&bins.gateway);
        cmd.arg("--config")
            .arg(&config)
            .arg("run")
            .env("FAKE_IMSG_PID_FILE", launch.pid_file())
            .env("RUST_LOG", "debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(stderr.try_clone()?)
            .stderr(stderr);
        match &launch.protocol {
            Some(p) => cmd.env("FAKE_IMSG_PROTOCOL", p),
            None => cmd.env_remove("FAKE_IMSG_PROTOCOL"),
        };
        if launch.faults.is_some() {
            cmd.env("FAKE_IMSG_FAULTS", launch.dir.join("faults.json"));
        } else {
            cmd.env_remove("FAKE_IMSG_FAULTS");
        }
        let mut gw = Gw(cmd.spawn()?);
        let pid = gw.0.id();
        let deadline = Instant::now() + wait();
        loop {
            if subscriptions(&read_tap(&launch.tap_log())) > before {
                return Ok(Gateway { gw, pid });
            }
            if let Some(status) = gw.0.try_wait()? {
                anyhow::bail!(
                    "imsg-gateway exited ({status}) before subscribing to imsg's watch; its stderr:\n{}",
                    tail(&launch.stderr_path(), 60)
                );
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "imsg-gateway did not subscribe to imsg's watch within {:?}; its stderr:\n{}\n--- tap log:\n{}",
                    wait(),
                    tail(&launch.stderr_path(), 60),
                    tail(&launch.tap_log(), 20)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// SIGTERM, then up to 5 s for a clean exit, then SIGKILL. Returns the exit status text.
    pub async fn stop(mut self) -> String {
        // Waiting is blocking; scenarios run concurrently on the runtime.
        let ended = tokio::task::spawn_blocking(move || {
            support::terminate(&mut self.gw.0, Duration::from_secs(5))
        })
        .await;
        match ended {
            Ok(Ok(status)) => status.to_string(),
            Ok(Err(e)) => e,
            Err(e) => format!("wait failed: {e}"),
        }
    }

    /// Whether the gateway process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.gw.0.try_wait(), Ok(None))
    }
}

/// Number of `watch.subscribe` requests imsg accepted.
pub fn subscriptions(tap: &[Exchange]) -> usize {
    tap.iter()
        .filter(|e| e.method == "watch.subscribe" && e.result().is_some())
        .count()
}

/// A chat as the suite knows it: declared by a step, created in the world by its first row.
#[derive(Debug, Clone)]
pub struct ChatRef {
    /// "DM with +1555..." or the group's display name, for messages.
    pub label: String,
    pub group: bool,
    pub participants: Vec<String>,
    pub display_name: Option<String>,
    pub chat_id: Option<i64>,
    pub guid: Option<String>,
    pub identifier: Option<String>,
}

impl ChatRef {
    /// Whether a `send` request's params address this chat, by any selector imsg accepts.
    pub fn is_target_of(&self, params: &Value) -> bool {
        let s = |k: &str| params.get(k).and_then(Value::as_str);
        if let (Some(id), Some(p)) = (self.chat_id, params.get("chat_id")) {
            if p.as_i64() == Some(id) || p.as_str() == Some(id.to_string().as_str()) {
                return true;
            }
        }
        if self.guid.is_some() && s("chat_guid") == self.guid.as_deref() {
            return true;
        }
        if self.identifier.is_some() && s("chat_identifier") == self.identifier.as_deref() {
            return true;
        }
        !self.group
            && self.participants.len() == 1
            && s("to") == Some(self.participants[0].as_str())
    }
}

/// The target of a `send`, for failure messages.
pub fn describe_target(params: &Value) -> String {
    for k in ["chat_id", "chat_guid", "chat_identifier", "to"] {
        if let Some(v) = params.get(k) {
            return format!("{k}={v}");
        }
    }
    "no target".to_string()
}

/// Recursively finds the first string under a key whose name, lower-cased and without `_`,
/// is one of `names` (the envelope's exact field names belong to the agent module).
pub fn find_key<'a>(value: &'a Value, names: &[&str]) -> Option<&'a Value> {
    let mut queue = vec![value];
    while !queue.is_empty() {
        let mut next = Vec::new();
        for v in queue {
            match v {
                Value::Object(map) => {
                    for (k, v) in map {
                        let norm = k.to_lowercase().replace(['_', '-'], "");
                        if names.contains(&norm.as_str()) {
                            return Some(v);
                        }
                        next.push(v);
                    }
                }
                Value::Array(items) => next.extend(items.iter()),
                _ => {}
            }
        }
        queue = next;
    }
    None
}
