//! `imsg-gateway simulate`: a group chat on any machine, with no Messages account. It builds
//! or opens a world, runs the real gateway (`gateway::run_with`: the same ingest, access,
//! routing, agent and outbound code as `run`) against fake-imsg in process ([`inproc`]), and
//! lets a person type as the participants. Replies appear as they are sent, one bubble per
//! chunk; policy decisions appear beside them, read from the journal. `/wait` moves the
//! gateway's clock ([`OffsetClock`]), so a pairing code visibly expires. `--script` runs the
//! same commands from a file and prints a deterministic transcript ([`render`]).

pub mod command;
pub mod inproc;
pub mod render;
mod repl;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use fake_imsg::world::{HistoryQuery, InjectSpec, NewChat, World};
use tokio::sync::watch;

use crate::clock::{Clock, OffsetClock};
use crate::config::{AgentConfig, Config, DEFAULT_AGENT_MAX_REPLY_BYTES, DEFAULT_AGENT_TIMEOUT_MS};
use crate::gateway::{self, ConnectorFor, GatewayOptions, PairingCodes};
use crate::imsg::Connector;
use crate::state::{JournalStatus, Store};
use command::Command;
use render::{Event, Renderer};

/// The world `simulate` uses without `--world`: a family group, two DMs, some history.
pub const BUNDLED_WORLD: &str = include_str!("../../fixtures/worlds/family-group.json5");
/// The config `simulate` uses without `--config`: pairing DMs, groups that need a mention.
pub const BUNDLED_CONFIG: &str = include_str!("../../fixtures/simulations/config.json5");

#[derive(Debug, Args)]
pub struct SimArgs {
    /// A scenario (.json5) to build, or a chat.db to copy (never written back). Default: a
    /// bundled family group.
    #[arg(long, value_name = "SCENARIO.json5|world.db")]
    pub world: Option<PathBuf>,
    /// The gateway config to simulate. Default: a bundled one (pairing DMs, groups that need
    /// a mention of "assistant", the echo agent). Its state.dir is replaced by a scratch one.
    #[arg(long, value_name = "CONFIG.json5")]
    pub config: Option<PathBuf>,
    /// Override the agent: echo, exec:COMMAND ARGS…, or http:URL.
    #[arg(long, value_name = "echo|exec:CMD|http:URL")]
    pub agent: Option<String>,
    /// Run the commands in FILE instead of a terminal session; prints a plain transcript.
    #[arg(long, value_name = "FILE")]
    pub script: Option<PathBuf>,
    /// With --script: the transcript as JSON lines, one event per line.
    #[arg(long)]
    pub json: bool,
}

fn usage(msg: impl std::fmt::Display) -> i32 {
    eprintln!("error: {msg}");
    2
}

fn parse_agent(spec: &str) -> Result<AgentConfig, String> {
    let spec = spec.trim();
    if spec == "echo" {
        return Ok(AgentConfig::Echo);
    }
    if let Some(cmd) = spec.strip_prefix("exec:") {
        let command: Vec<String> = cmd.split_whitespace().map(String::from).collect();
        if command.is_empty() {
            return Err("--agent exec: needs a command, as in exec:./my-agent --json".into());
        }
        return Ok(AgentConfig::Exec {
            command,
            timeout_ms: DEFAULT_AGENT_TIMEOUT_MS,
            max_reply_bytes: DEFAULT_AGENT_MAX_REPLY_BYTES,
        });
    }
    if let Some(url) = spec.strip_prefix("http:").map(|u| format!("http:{u}")) {
        let url = url.strip_prefix("http:").unwrap_or(&url).to_string();
        if url.starts_with("http://") || url.starts_with("https://") {
            return Ok(AgentConfig::Http {
                url,
                timeout_ms: DEFAULT_AGENT_TIMEOUT_MS,
                max_reply_bytes: DEFAULT_AGENT_MAX_REPLY_BYTES,
            });
        }
        return Err(format!("--agent {spec:?}: expected http:http://host/path"));
    }
    Err(format!(
        "--agent {spec:?}: expected echo, exec:COMMAND or http:URL"
    ))
}

/// A fixed, uniform-looking sequence of codes for scripted runs (their transcripts are
/// compared byte for byte).
fn scripted_codes() -> PairingCodes {
    let n = std::sync::atomic::AtomicU64::new(0);
    PairingCodes(Arc::new(move || {
        let mut x = n
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            .wrapping_add(1)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^= x >> 31;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        crate::access::pairing::code_from_bytes(x.to_le_bytes())
    }))
}

fn build_world(arg: Option<&Path>, dir: &Path) -> Result<PathBuf, String> {
    let out = dir.join("world.db");
    match arg {
        None => World::build_from_scenario_str(BUNDLED_WORLD, &out)
            .map(|_| out)
            .map_err(|e| format!("the bundled world does not build: {e}")),
        Some(p) if p.extension().is_some_and(|e| e == "json5" || e == "json") => {
            World::build_from_scenario_file(p, &out)
                .map(|_| out)
                .map_err(|e| format!("--world {}: {e}", p.display()))
        }
        Some(p) => {
            if !p.is_file() {
                return Err(format!("--world {}: no such file", p.display()));
            }
            std::fs::copy(p, &out)
                .map_err(|e| format!("--world {}: cannot copy it: {e}", p.display()))?;
            // A live chat.db keeps recent rows in its WAL; they belong to the copy too.
            for ext in ["-wal", "-shm"] {
                let side = PathBuf::from(format!("{}{ext}", p.display()));
                if side.is_file() {
                    let _ = std::fs::copy(&side, format!("{}{ext}", out.display()));
                }
            }
            World::open(&out)
                .map(|_| out)
                .map_err(|e| format!("--world {}: not a usable chat.db: {e}", p.display()))
        }
    }
}

fn load_config(args: &SimArgs, state: &Path) -> Result<Config, String> {
    let mut config = match &args.config {
        None => Config::from_json5_str(BUNDLED_CONFIG, "the bundled simulator config")
            .map_err(|e| e.to_string())?,
        Some(p) => Config::load(p).map_err(|e| e.to_string())?,
    };
    config.state_dir = state.to_path_buf();
    // One account: each would otherwise answer the same world.
    let mut first = true;
    for a in &mut config.accounts {
        if a.enabled && first {
            first = false;
        } else {
            a.enabled = false;
        }
    }
    if first {
        return Err("the config has no enabled iMessage account".into());
    }
    if let Some(spec) = &args.agent {
        config.agent = parse_agent(spec)?;
    }
    Ok(config)
}

/// A chat as the simulator knows it.
#[derive(Debug, Clone)]
struct Chat {
    id: Option<i64>,
    group: bool,
    name: Option<String>,
    participants: Vec<String>,
    sms: bool,
}

struct Session {
    world: World,
    world_path: PathBuf,
    state: PathBuf,
    store: Option<Store>,
    account: String,
    agent_timeout: Duration,
    clock: Arc<OffsetClock>,
    chats: Vec<Chat>,
    current: usize,
    as_handle: String,
    names: HashMap<String, String>,
    last_guid: Option<String>,
    /// The last pairing code the assistant sent, for `/approve <code>` in scripts.
    last_code: Option<String>,
    seen_rowid: i64,
    scratch: PathBuf,
}

impl Session {
    fn name_of(&self, handle: &str) -> String {
        self.names
            .get(handle)
            .cloned()
            .unwrap_or_else(|| handle.to_string())
    }

    fn label(&self, i: usize) -> String {
        let c = &self.chats[i];
        if c.group {
            c.name.clone().unwrap_or_else(|| "group".into())
        } else {
            format!(
                "DM {}",
                self.name_of(c.participants.first().map(String::as_str).unwrap_or("?"))
            )
        }
    }

    fn store(&mut self) -> &Store {
        if self.store.is_none() {
            self.store = Store::open_existing(&self.state).ok().flatten();
        }
        self.store
            .as_ref()
            .expect("the gateway created its store before the session began")
    }

    fn load_chats(&mut self) {
        let rows = self.world.all_chats().unwrap_or_default();
        for r in rows {
            if self.chats.iter().any(|c| c.id == Some(r.id)) {
                continue;
            }
            for p in &r.participants {
                if let Some(n) = self.world.contact_name(p) {
                    self.names.insert(p.clone(), n);
                }
            }
            self.chats.push(Chat {
                id: Some(r.id),
                group: r.participants.len() > 1 || r.guid.contains(";+;"),
                name: r.display_name.clone().filter(|n| !n.is_empty()),
                participants: r.participants.clone(),
                sms: r.service == "SMS",
            });
        }
    }

    /// Words for tab completion: commands, chat names, people.
    fn words(&self) -> Vec<String> {
        let mut w: Vec<String> = command::COMMANDS
            .iter()
            .map(|(c, _)| c.to_string())
            .collect();
        w.extend(self.chats.iter().filter_map(|c| c.name.clone()));
        w.extend(self.names.values().cloned());
        w.extend(self.chats.iter().flat_map(|c| c.participants.clone()));
        w.sort();
        w.dedup();
        w
    }

    fn find_chat(&self, q: &str) -> Option<usize> {
        let q = q.trim();
        if let Ok(id) = q.parse::<i64>() {
            return self.chats.iter().position(|c| c.id == Some(id));
        }
        let lq = q.to_lowercase();
        self.chats.iter().enumerate().position(|(i, c)| {
            c.name.as_deref().is_some_and(|n| n.to_lowercase() == lq)
                || self.label(i).to_lowercase() == lq
                || (!c.group
                    && c.participants
                        .iter()
                        .any(|p| p.to_lowercase() == lq || self.name_of(p).to_lowercase() == lq))
        })
    }

    fn find_person(&self, q: &str) -> Option<String> {
        let lq = q.trim().to_lowercase();
        self.chats
            .iter()
            .flat_map(|c| c.participants.iter())
            .find(|p| p.to_lowercase() == lq || self.name_of(p).to_lowercase() == lq)
            .cloned()
    }

    fn prompt(&self) -> String {
        format!(
            "{} in {}> ",
            self.name_of(&self.as_handle),
            self.label(self.current)
        )
    }

    /// Writes a row as the current participant and waits until the gateway has dealt with it.
    async fn inject(&mut self, mut spec: InjectSpec, shown: String, out: &mut Renderer) {
        let i = self.current;
        let chat = self.chats[i].clone();
        spec.from = self.as_handle.clone();
        match chat.id {
            Some(id) => spec.chat_id = Some(id),
            None => {
                spec.new_chat = Some(NewChat {
                    group: chat.group,
                    display_name: chat.name.clone(),
                    participants: chat.participants.clone(),
                    service: "iMessage".into(),
                })
            }
        }
        let row = match self.world.inject(&spec) {
            Ok(r) => r,
            Err(e) => return out.emit(Event::Output(format!("cannot write the message: {e}"))),
        };
        if chat.id.is_none() {
            self.chats[i].id = row.chat_id;
        }
        if spec.reaction.is_none() {
            out.emit(Event::Typed {
                chat: self.label(i),
                from: self.name_of(&self.as_handle),
                text: shown,
            });
        }
        self.last_guid = Some(row.guid.clone());
        self.settle(&row.guid, out).await;
    }

    /// Waits for the journal to say what became of `guid` (and of a pairing reply to it),
    /// then shows what was sent and why anything was not answered.
    async fn settle(&mut self, guid: &str, out: &mut Renderer) {
        let deadline = Instant::now() + self.agent_timeout + Duration::from_secs(10);
        let account = self.account.clone();
        let entry = loop {
            let store = self.store();
            let e = store.entry(&account, guid).ok().flatten();
            let pairing = store
                .entry(&account, &format!("pairing:{guid}"))
                .ok()
                .flatten();
            let done = e.as_ref().is_some_and(|e| {
                matches!(
                    e.status,
                    JournalStatus::Answered | JournalStatus::Skipped | JournalStatus::Failed
                )
            }) && pairing
                .as_ref()
                .is_none_or(|p| p.status != JournalStatus::Answering);
            if done {
                break e;
            }
            if Instant::now() > deadline {
                out.emit(Event::Output(
                    "(still waiting for the gateway; see /why later)".into(),
                ));
                break e;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.show_sent(out);
        if let Some(e) = entry {
            if let Some(p) = policy_line(e.status, e.reason.as_deref()) {
                let chat = e
                    .chat_id
                    .and_then(|id| self.chats.iter().position(|c| c.id == Some(id)))
                    .map(|i| self.label(i))
                    .unwrap_or_else(|| self.label(self.current));
                out.emit(Event::Policy { chat, text: p });
            }
        }
    }

    /// Everything the gateway sent since the last look, one bubble per chunk.
    fn show_sent(&mut self, out: &mut Renderer) {
        let rows = self.world.sent(self.seen_rowid).unwrap_or_default();
        self.seen_rowid = self
            .world
            .max_rowid()
            .unwrap_or(self.seen_rowid)
            .max(self.seen_rowid);
        let rows: Vec<_> = rows.into_iter().filter(|r| !r.is_reaction()).collect();
        let mut per_chat: Vec<(Option<i64>, Vec<String>)> = Vec::new();
        for r in rows {
            let mut text = r.text.replace('\u{FFFC}', "").trim().to_string();
            if let Some(code) = text.lines().find_map(|l| l.strip_prefix("Pairing code: ")) {
                self.last_code = Some(code.trim().to_string());
            }
            for a in &r.attachments {
                let name = if a.transfer_name.is_empty() {
                    "file"
                } else {
                    a.transfer_name.as_str()
                };
                text = if text.is_empty() {
                    format!("[{name}]")
                } else {
                    format!("{text} [{name}]")
                };
            }
            match per_chat.last_mut() {
                Some((c, v)) if *c == r.chat_id => v.push(text),
                _ => per_chat.push((r.chat_id, vec![text])),
            }
        }
        for (chat_id, texts) in per_chat {
            self.load_chats();
            let chat = chat_id
                .and_then(|id| self.chats.iter().position(|c| c.id == Some(id)))
                .map(|i| self.label(i))
                .unwrap_or_else(|| "?".into());
            let n = texts.len();
            for (k, text) in texts.into_iter().enumerate() {
                out.emit(Event::Reply {
                    chat: chat.clone(),
                    chunk: k + 1,
                    of: n,
                    text,
                });
            }
        }
    }

    async fn execute(&mut self, cmd: Command, out: &mut Renderer) -> bool {
        match cmd {
            Command::Nothing => {}
            Command::Quit => return false,
            Command::Help => {
                let lines: Vec<String> = std::iter::once(
                    "Type a line to send it as the current person. Commands:".to_string(),
                )
                .chain(command::COMMANDS.iter().map(|(c, h)| format!("  {c} {h}")))
                .collect();
                out.emit(Event::Output(lines.join("\n")));
            }
            Command::Say(text) => {
                self.inject(
                    InjectSpec {
                        text: text.clone(),
                        ..Default::default()
                    },
                    text,
                    out,
                )
                .await;
            }
            Command::Chats => {
                self.load_chats();
                let lines: Vec<String> = (0..self.chats.len())
                    .map(|i| {
                        let c = &self.chats[i];
                        let mark = if i == self.current { "*" } else { " " };
                        let id = c.id.map(|i| i.to_string()).unwrap_or_else(|| "new".into());
                        let who: Vec<String> =
                            c.participants.iter().map(|p| self.name_of(p)).collect();
                        let kind = if c.group {
                            "group"
                        } else if c.sms {
                            "DM, SMS"
                        } else {
                            "DM"
                        };
                        format!(
                            "{mark} {id:>3}  {} ({kind}: {})",
                            self.label(i),
                            who.join(", ")
                        )
                    })
                    .collect();
                out.emit(Event::Output(lines.join("\n")));
            }
            Command::Chat(q) => {
                self.load_chats();
                match self.find_chat(&q) {
                    Some(i) => {
                        self.current = i;
                        let c = &self.chats[i];
                        if !c.participants.contains(&self.as_handle) {
                            self.as_handle = c.participants.first().cloned().unwrap_or_default();
                        }
                        out.emit(Event::Output(format!(
                            "now in {}, as {}",
                            self.label(i),
                            self.name_of(&self.as_handle)
                        )));
                    }
                    None => out.emit(Event::Output(format!("no chat {q:?}; /chats lists them"))),
                }
            }
            Command::As(q) => match self.find_person(&q).or_else(|| {
                crate::outbound::parse_handle(&q, "US").filter(|_| !self.chats[self.current].group)
            }) {
                Some(h) if self.chats[self.current].participants.contains(&h) => {
                    self.as_handle = h;
                    out.emit(Event::Output(format!(
                        "typing as {}",
                        self.name_of(&self.as_handle)
                    )));
                }
                Some(h) => out.emit(Event::Output(format!(
                    "{} is not in {}; /chat to another chat first",
                    self.name_of(&h),
                    self.label(self.current)
                ))),
                None => out.emit(Event::Output(format!("nobody called {q:?} here"))),
            },
            Command::NewDm(h) => {
                let Some(handle) = crate::outbound::parse_handle(&h, "US") else {
                    out.emit(Event::Output(format!(
                        "{h:?} is not a phone number or an email"
                    )));
                    return true;
                };
                self.load_chats();
                let existing = self
                    .chats
                    .iter()
                    .position(|c| !c.group && c.participants == [handle.clone()]);
                self.current = existing.unwrap_or_else(|| {
                    self.chats.push(Chat {
                        id: None,
                        group: false,
                        name: None,
                        participants: vec![handle.clone()],
                        sms: false,
                    });
                    self.chats.len() - 1
                });
                self.as_handle = handle;
                out.emit(Event::Output(format!(
                    "now in {}, as {}",
                    self.label(self.current),
                    self.name_of(&self.as_handle)
                )));
            }
            Command::NewGroup { name, members } => {
                let mut handles = Vec::new();
                for m in &members {
                    match self
                        .find_person(m)
                        .or_else(|| crate::outbound::parse_handle(m, "US"))
                    {
                        Some(h) => handles.push(h),
                        None => {
                            out.emit(Event::Output(format!(
                                "{m:?} is not a person here, a phone number or an email"
                            )));
                            return true;
                        }
                    }
                }
                self.chats.push(Chat {
                    id: None,
                    group: true,
                    name: Some(name),
                    participants: handles.clone(),
                    sms: false,
                });
                self.current = self.chats.len() - 1;
                self.as_handle = handles[0].clone();
                out.emit(Event::Output(format!(
                    "now in {}, as {}",
                    self.label(self.current),
                    self.name_of(&self.as_handle)
                )));
            }
            Command::Attach { path, caption } => {
                let p = PathBuf::from(&path);
                let p = if p.is_absolute() {
                    p
                } else {
                    self.scratch.join(&p)
                };
                if !p.is_file() {
                    out.emit(Event::Output(format!("no such file: {path}")));
                    return true;
                }
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let text = if caption.is_empty() {
                    "\u{FFFC}".to_string()
                } else {
                    format!("{caption} \u{FFFC}")
                };
                let shown = if caption.is_empty() {
                    format!("[{name}]")
                } else {
                    format!("{caption} [{name}]")
                };
                self.inject(
                    InjectSpec {
                        text,
                        attachments: vec![p],
                        ..Default::default()
                    },
                    shown,
                    out,
                )
                .await;
            }
            Command::React { kind, nth } => {
                let Some(chat_id) = self.chats[self.current].id else {
                    out.emit(Event::Output("nothing to react to yet".into()));
                    return true;
                };
                let mut rows = self
                    .world
                    .history(&HistoryQuery {
                        chat_id,
                        limit: nth,
                        participants: vec![],
                        start: None,
                        end: None,
                    })
                    .unwrap_or_default();
                rows.sort_by_key(|r| std::cmp::Reverse(r.id));
                let Some(target) = rows.get(nth - 1).cloned() else {
                    out.emit(Event::Output(format!(
                        "there is no message {nth} back in this chat"
                    )));
                    return true;
                };
                let who = if target.is_from_me {
                    "assistant".to_string()
                } else {
                    self.name_of(&target.sender)
                };
                out.emit(Event::Typed {
                    chat: self.label(self.current),
                    from: self.name_of(&self.as_handle),
                    text: format!("({kind} on {who}: {:?})", short(&target.text)),
                });
                self.inject(
                    InjectSpec {
                        text: String::new(),
                        reaction: Some((kind, target.guid)),
                        ..Default::default()
                    },
                    String::new(),
                    out,
                )
                .await;
            }
            Command::Pairing => {
                let now = self.clock.now_ms() as i64;
                let account = self.account.clone();
                let list = self
                    .store()
                    .pairing_list(Some(&account), now)
                    .unwrap_or_default();
                if list.is_empty() {
                    out.emit(Event::Output("no pending pairing requests".into()));
                } else {
                    let lines: Vec<String> = list
                        .iter()
                        .map(|r| {
                            let mins = (r.expires_ms - now + 59_999) / 60_000;
                            format!(
                                "{}  {}  expires in {}m",
                                r.code,
                                self.name_of(&r.sender),
                                mins.max(0)
                            )
                        })
                        .collect();
                    out.emit(Event::Output(lines.join("\n")));
                }
            }
            Command::Approve(code) => {
                let code = match (code.as_str(), &self.last_code) {
                    ("<code>", Some(c)) => c.clone(),
                    _ => code,
                };
                let now = self.clock.now_ms() as i64;
                let state = self.state.clone();
                let r = match Store::open(&state) {
                    Ok(mut s) => s.pairing_approve(&code, now).map_err(|e| match e {
                        // The store's text has the wall-clock time; a transcript must not.
                        crate::state::PairingError::Expired { code, sender, .. } => format!(
                            "the code {code} of {} has expired; their next message gets a new code",
                            self.name_of(&sender)
                        ),
                        e => e.to_string(),
                    }),
                    Err(e) => Err(e.to_string()),
                };
                out.emit(Event::Output(match r {
                    Ok(a) => format!(
                        "approved {}: their next message is answered",
                        self.name_of(&a.sender)
                    ),
                    Err(e) => format!("not approved: {e}"),
                }));
            }
            Command::Wait(d) => {
                self.clock.advance(d.as_millis() as u64);
                out.emit(Event::Output(format!(
                    "(the gateway's clock moved {} ahead)",
                    human(d)
                )));
            }
            Command::Why => {
                let Some(guid) = self.last_guid.clone() else {
                    out.emit(Event::Output("no message yet".into()));
                    return true;
                };
                let account = self.account.clone();
                let e = self.store().entry(&account, &guid).ok().flatten();
                out.emit(Event::Output(match e {
                    None => "the gateway has not seen the last message yet".into(),
                    Some(e) => match (e.status, e.reason) {
                        (JournalStatus::Answered, _) => "the last message was answered".into(),
                        (s, Some(r)) => format!(
                            "the last message was {}: {}",
                            s.as_str(),
                            r.trim_start_matches("access: ")
                        ),
                        (s, None) => format!("the last message is {}", s.as_str()),
                    },
                }));
            }
            Command::History(n) => {
                let Some(chat_id) = self.chats[self.current].id else {
                    out.emit(Event::Output("no messages yet".into()));
                    return true;
                };
                let mut rows = self
                    .world
                    .history(&HistoryQuery {
                        chat_id,
                        limit: n,
                        participants: vec![],
                        start: None,
                        end: None,
                    })
                    .unwrap_or_default();
                rows.sort_by_key(|r| r.id);
                let lines: Vec<String> = rows
                    .iter()
                    .map(|r| {
                        let who = if r.is_from_me {
                            "me".to_string()
                        } else {
                            self.name_of(&r.sender)
                        };
                        let mut text = r.text.replace('\u{FFFC}', "").trim().to_string();
                        if !r.attachments.is_empty() {
                            text = format!("{text} [{} attachment(s)]", r.attachments.len())
                                .trim()
                                .to_string();
                        }
                        format!("{who}: {text}")
                    })
                    .collect();
                out.emit(Event::Output(if lines.is_empty() {
                    "no messages yet".into()
                } else {
                    lines.join("\n")
                }));
            }
        }
        true
    }
}

fn short(s: &str) -> String {
    let t: String = s.chars().take(40).collect();
    if s.chars().count() > 40 {
        format!("{t}…")
    } else {
        t
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, sec) = (s / 3600, s % 3600 / 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if sec > 0 || out.is_empty() {
        out.push_str(&format!("{sec}s"));
    }
    out
}

/// What a journal entry says about a message that was not simply answered.
fn policy_line(status: JournalStatus, reason: Option<&str>) -> Option<String> {
    let reason = reason.unwrap_or("").trim_start_matches("access: ");
    match status {
        JournalStatus::Answered => None,
        JournalStatus::Skipped if reason.starts_with("pairing code sent") => {
            Some(reason.to_string())
        }
        JournalStatus::Skipped if reason == "reaction" => Some("not answered: a tapback".into()),
        JournalStatus::Skipped => Some(format!("not answered: {reason}")),
        JournalStatus::Failed => Some(format!("not answered (failed): {reason}")),
        _ => None,
    }
}

/// Entry point of `imsg-gateway simulate`; returns the exit code.
pub async fn run(args: &SimArgs) -> i32 {
    if args.json && args.script.is_none() {
        return usage("--json goes with --script (an interactive session is for people)");
    }
    let script = match &args.script {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(s) => Some(s),
            Err(e) => return usage(format!("--script {}: {e}", p.display())),
        },
        None => None,
    };
    let dir = match tempfile::Builder::new().prefix("imsg-simulate-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: cannot create a scratch directory: {e}");
            return 1;
        }
    };
    let world_path = match build_world(args.world.as_deref(), dir.path()) {
        Ok(p) => p,
        Err(e) => return usage(e),
    };
    let state = dir.path().join("state");
    let config = match load_config(args, &state) {
        Ok(c) => c,
        Err(e) => return usage(e),
    };
    let account = config
        .accounts
        .iter()
        .find(|a| a.enabled)
        .map(|a| a.id.clone())
        .unwrap_or_default();
    let agent_timeout = match &config.agent {
        AgentConfig::Echo => Duration::from_secs(1),
        AgentConfig::Exec { timeout_ms, .. } | AgentConfig::Http { timeout_ms, .. } => {
            Duration::from_millis(*timeout_ms)
        }
    };
    let clock = Arc::new(OffsetClock::default());
    let mut opts = GatewayOptions {
        clock: clock.clone(),
        ..GatewayOptions::default()
    };
    if script.is_some() {
        opts.pairing_codes = scripted_codes();
    }
    let world_for = world_path.clone();
    let connect: ConnectorFor = Arc::new(move |_a, o| {
        Arc::new(inproc::InProcessImsg {
            world: world_for.clone(),
            timeout: o.request_timeout,
        }) as Arc<dyn Connector>
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let gw = tokio::spawn(gateway::run_with(config, opts, connect, stop_rx));

    // The gateway is ready once it has recorded where the world's tail is.
    let ready = Instant::now() + Duration::from_secs(60);
    loop {
        let cursor = Store::open_existing(&state)
            .ok()
            .flatten()
            .and_then(|s| s.cursor_opt(&account).ok().flatten());
        if cursor.is_some() {
            break;
        }
        if gw.is_finished() || Instant::now() > ready {
            eprintln!(
                "error: the simulated gateway did not start ({})",
                if gw.is_finished() {
                    "it stopped"
                } else {
                    "no cursor after 60 s"
                }
            );
            let _ = stop_tx.send(true);
            return match gw.await {
                Ok(Err(e)) => {
                    eprintln!("error: {e:#}");
                    1
                }
                Err(e) => {
                    eprintln!("error: the gateway task failed: {e}");
                    1
                }
                Ok(Ok(())) => 1,
            };
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let world = match World::open(&world_path) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let seen = world.max_rowid().unwrap_or(0);
    let mut s = Session {
        world,
        world_path,
        state,
        store: None,
        account,
        agent_timeout,
        clock,
        chats: Vec::new(),
        current: 0,
        as_handle: String::new(),
        names: HashMap::new(),
        last_guid: None,
        last_code: None,
        seen_rowid: seen,
        scratch: std::env::current_dir().unwrap_or_else(|_| dir.path().to_path_buf()),
    };
    s.load_chats();
    s.current = s.chats.iter().position(|c| c.group).unwrap_or(0);
    if s.chats.is_empty() {
        s.chats.push(Chat {
            id: None,
            group: false,
            name: None,
            participants: vec!["+15550100001".into()],
            sms: false,
        });
    }
    s.as_handle = s.chats[s.current]
        .participants
        .first()
        .cloned()
        .unwrap_or_default();
    let _ = &s.world_path;

    let code = match script {
        Some(text) => {
            let mut out = Renderer::plain(args.json);
            out.emit(Event::Output(format!(
                "simulating {} chat(s); you are {} in {}",
                s.chats.len(),
                s.name_of(&s.as_handle),
                s.label(s.current)
            )));
            for (n, line) in text.lines().enumerate() {
                match command::parse(line) {
                    Ok(Command::Nothing) => {}
                    Ok(Command::Say(t)) => {
                        let _ = s.execute(Command::Say(t), &mut out).await;
                    }
                    Ok(cmd) => {
                        out.emit(Event::Command(line.trim().to_string()));
                        if !s.execute(cmd, &mut out).await {
                            break;
                        }
                    }
                    Err(e) => out.emit(Event::Output(format!("line {}: {e}", n + 1))),
                }
            }
            0
        }
        None => repl::run(&mut s).await,
    };
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), gw).await;
    code
}
