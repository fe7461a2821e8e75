//! The Gherkin steps: the scenario's world (`GatewayWorld`) and every phrase the features use.
//!
//! Steps touch imsg only in ways that work for fake and real imsg alike: inbound rows are
//! written into the world file through `fake_imsg::world`, outbound assertions read the tap
//! log. Checks that only the fake can answer (its `sent` rows) run only against the fake.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cucumber::{given, then, when};
use fake_imsg::world::{InjectSpec, MessageRow, NewChat, World};
use serde_json::{json, Value};

use crate::harness::{
    self, binaries, describe_target, find_key, read_tap, subscriptions, tail, wait, Agent, ChatRef,
    Exchange, Gateway, Launch, POLL, QUIET,
};
use crate::support::{alive, signal};

/// One scenario: its directory, world, declared chats, gateway, and what was already checked.
#[derive(cucumber::World)]
#[world(init = Self::new)]
pub struct GatewayWorld {
    /// Removed at the end unless the scenario failed (then kept for inspection).
    pub dir: Option<tempfile::TempDir>,
    pub launch: Launch,
    pub world: World,
    pub chats: Vec<ChatRef>,
    pub gateway: Option<Gateway>,
    /// Per chat (index in `chats`): how many sends to it the scenario has already accounted for.
    pub consumed: Vec<usize>,
    /// The last reply a step matched: (chat index, the send).
    pub last_reply: Option<(usize, Exchange)>,
    /// The last row a step wrote into the world.
    pub last_message: Option<MessageRow>,
    /// Set by "the gateway is stopped": rows are then written without starting it.
    pub stopped: bool,
    /// Successful `watch.subscribe` calls seen when the imsg child was last killed.
    pub subscriptions_at_kill: usize,
    /// The scenario's config text (JSON5, placeholders unresolved until the gateway starts).
    pub config_text: Option<String>,
    /// Pairing codes the gateway sent, in order.
    pub codes: Vec<String>,
    /// The last `imsg-gateway` command an operator step ran: exit code and output.
    pub last_command: Option<(i32, String)>,
    /// The text of the last message a generating step sent (long texts, paragraphs).
    pub last_text: Option<String>,
    /// The messages the last "replies in N messages" step matched, in order.
    pub last_replies: Vec<Exchange>,
}

impl fmt::Debug for GatewayWorld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayWorld")
            .field("dir", &self.launch.dir)
            .field("chats", &self.chats)
            .field("gateway_pid", &self.gateway.as_ref().map(|g| g.pid))
            .finish()
    }
}

impl GatewayWorld {
    fn new() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("imsg-conformance-")
            .tempdir()?;
        let launch = Launch {
            dir: dir.path().to_path_buf(),
            agent: Agent::Echo,
            protocol: None,
            faults: None,
            config: None,
        };
        let world = World::create(&launch.world_path())
            .map_err(|e| anyhow::anyhow!("cannot create the world: {e}"))?;
        Ok(GatewayWorld {
            dir: Some(dir),
            launch,
            world,
            chats: Vec::new(),
            gateway: None,
            consumed: Vec::new(),
            last_reply: None,
            last_message: None,
            stopped: false,
            subscriptions_at_kill: 0,
            config_text: None,
            codes: Vec::new(),
            last_command: None,
            last_text: None,
            last_replies: Vec::new(),
        })
    }

    /// Starts the gateway if no step has yet.
    async fn ensure_gateway(&mut self) {
        if self.gateway.is_none() {
            self.resolve_config();
            match Gateway::start(&self.launch).await {
                Ok(g) => self.gateway = Some(g),
                Err(e) => panic!("{e:#}"),
            }
        }
    }

    /// Turns the scenario's config text into the launch's config, with `<chat_id of X>`
    /// replaced by the id of a chat that has its first row already.
    fn resolve_config(&mut self) {
        let Some(text) = self.config_text.clone() else {
            return;
        };
        let mut text = text;
        while let Some(start) = text.find("<chat_id of ") {
            let end = start
                + text[start..]
                    .find('>')
                    .unwrap_or_else(|| panic!("unclosed placeholder in {text}"));
            let phrase = text[start + "<chat_id of ".len()..end].to_string();
            let chat = self.chat(&phrase);
            let id = self.chats[chat].chat_id.unwrap_or_else(|| {
                panic!("{phrase} has no chat_id yet: give it a message first (\"already said\")")
            });
            text.replace_range(start..=end, &id.to_string());
        }
        let value: Value = json5::from_str(&text)
            .unwrap_or_else(|e| panic!("the scenario's config is not JSON5: {e}\n{text}"));
        self.launch.config = Some(value);
    }

    /// Replaces `<code>` (the last pairing code) and `<CODE in lower case>` in a command.
    fn expand(&self, s: &str) -> String {
        let last = self.codes.last().cloned().unwrap_or_default();
        s.replace("<code in lower case>", &last.to_lowercase())
            .replace("<code>", &last)
    }

    fn declare(&mut self, chat: ChatRef) -> usize {
        self.chats.push(chat);
        self.consumed.push(0);
        self.chats.len() - 1
    }

    /// Resolves a chat phrase: `the DM`, `the DM with "+1555..."`, `the group`, `"Family"`.
    fn chat(&self, phrase: &str) -> usize {
        let quoted = |s: &str| s.trim().trim_matches('"').to_string();
        let only = |group: bool| {
            let mut matching = (0..self.chats.len()).filter(|&i| self.chats[i].group == group);
            let first = matching.next();
            assert!(
                matching.next().is_none(),
                "{phrase:?} is ambiguous: name the chat; declared: {:?}",
                self.labels()
            );
            first
        };
        let found = if phrase == "the DM" {
            only(false)
        } else if let Some(handle) = phrase.strip_prefix("the DM with ") {
            let handle = quoted(handle);
            self.chats
                .iter()
                .rposition(|c| !c.group && c.participants == [handle.clone()])
        } else if phrase == "the group" {
            only(true)
        } else {
            let name = quoted(phrase.strip_prefix("the group ").unwrap_or(phrase));
            self.chats
                .iter()
                .rposition(|c| c.group && c.display_name.as_deref() == Some(name.as_str()))
        };
        found.unwrap_or_else(|| {
            panic!(
                "no chat declared for {phrase:?}; declared: {:?}",
                self.labels()
            )
        })
    }

    /// The envelope the recording agent got for the message the last reply answers.
    fn envelope_of_last_reply(&self) -> Value {
        let (_, send) = self.last_reply.clone().expect("a reply was seen before");
        let reply = send.params["text"].as_str().unwrap_or_default();
        let asked = reply.strip_prefix("echo: ").unwrap_or(reply);
        let envelopes = self.envelopes();
        envelopes
            .iter()
            .rev()
            .find(|e| e["text"].as_str() == Some(asked))
            .cloned()
            .unwrap_or_else(|| {
                panic!(
                    "no envelope for {asked:?} (is the recording agent configured?): {envelopes:?}"
                )
            })
    }

    fn labels(&self) -> Vec<&str> {
        self.chats.iter().map(|c| c.label.as_str()).collect()
    }

    /// Writes a row into the world (creating the chat with its first row) and starts the
    /// gateway first if needed, so the row is new to its watch.
    async fn inject(&mut self, chat: usize, mut spec: InjectSpec) -> MessageRow {
        if !self.stopped {
            self.ensure_gateway().await;
        }
        let c = &self.chats[chat];
        match c.chat_id {
            Some(id) => spec.chat_id = Some(id),
            None => {
                spec.new_chat = Some(NewChat {
                    group: c.group,
                    display_name: c.display_name.clone(),
                    participants: c.participants.clone(),
                    service: "iMessage".to_string(),
                })
            }
        }
        let row = self
            .world
            .inject(&spec)
            .unwrap_or_else(|e| panic!("cannot write a row into {}: {e}", c.label));
        if c.chat_id.is_none() {
            let id = row
                .chat_id
                .unwrap_or_else(|| panic!("the first row of {} was not joined to a chat", c.label));
            let info = self
                .world
                .chat(id)
                .unwrap_or_else(|e| panic!("cannot read chat {id}: {e}"))
                .unwrap_or_else(|| panic!("chat {id} vanished"));
            let c = &mut self.chats[chat];
            c.chat_id = Some(id);
            c.guid = Some(info.guid).filter(|g| !g.is_empty());
            c.identifier = Some(info.identifier).filter(|i| !i.is_empty());
        }
        self.last_message = Some(row.clone());
        row
    }

    fn sends_to(&self, chat: usize) -> Vec<Exchange> {
        read_tap(&self.launch.tap_log())
            .into_iter()
            .filter(|e| e.method == "send" && self.chats[chat].is_target_of(&e.params))
            .collect()
    }

    /// Context for a failure message: every send so far and the gateway's last log lines.
    fn report(&self) -> String {
        let sends: Vec<String> = read_tap(&self.launch.tap_log())
            .iter()
            .filter(|e| e.method == "send")
            .map(|e| {
                format!(
                    "  {} text={} -> {}",
                    describe_target(&e.params),
                    e.params.get("text").unwrap_or(&Value::Null),
                    e.response
                        .as_ref()
                        .map_or("(no answer yet)".to_string(), Value::to_string)
                )
            })
            .collect();
        format!(
            "chats: {:?}\nsends so far:\n{}\ngateway stderr (last lines):\n{}",
            self.chats
                .iter()
                .map(|c| format!("{} = chat_id {:?}", c.label, c.chat_id))
                .collect::<Vec<_>>(),
            if sends.is_empty() {
                "  (none)".to_string()
            } else {
                sends.join("\n")
            },
            tail(&self.launch.stderr_path(), 15)
        )
    }

    /// Waits for the next not yet accounted-for send to `chat` and returns it.
    async fn next_reply(&mut self, chat: usize) -> Exchange {
        let deadline = Instant::now() + wait();
        loop {
            let sends = self.sends_to(chat);
            if let Some(send) = sends.get(self.consumed[chat]) {
                self.consumed[chat] += 1;
                return send.clone();
            }
            if Instant::now() > deadline {
                panic!(
                    "the gateway sent nothing (more) to {} within {:?}\n{}",
                    self.chats[chat].label,
                    wait(),
                    self.report()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Against the fake, imsg's answer to a send must be success and the world must hold
    /// the outgoing row, exactly as Messages would.
    async fn check_sent_row(&self, chat: usize, send: &Exchange, text: &str) {
        if binaries().real {
            return;
        }
        let deadline = Instant::now() + wait();
        let mut send = send.clone();
        while send.response.is_none() && Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
            if let Some(again) = read_tap(&self.launch.tap_log())
                .into_iter()
                .rfind(|e| e.method == "send" && e.id == send.id && e.params == send.params)
            {
                send = again;
            }
        }
        let result = send.result().unwrap_or_else(|| {
            panic!(
                "fake-imsg did not acknowledge the send of {text:?} with a result: {:?}\n{}",
                send.response,
                self.report()
            )
        });
        assert_eq!(
            result.get("ok"),
            Some(&json!(true)),
            "send result lacks ok:true: {result}"
        );
        let chat_id = self.chats[chat].chat_id.expect("a replied-to chat exists");
        let rows = self.world.sent(0).expect("read the world's sent rows");
        assert!(
            rows.iter()
                .any(|r| r.chat_id == Some(chat_id) && r.text == text),
            "the world has no sent row {text:?} in chat {chat_id}; sent rows: {:?}",
            rows.iter()
                .map(|r| (r.chat_id, r.text.as_str()))
                .collect::<Vec<_>>()
        );
    }

    fn envelopes(&self) -> Vec<Value> {
        std::fs::read_to_string(self.launch.envelopes())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn set_fault(&mut self, key: &str, value: Value) {
        assert!(
            self.gateway.is_none(),
            "faults are set before the gateway starts (put this step before the first message)"
        );
        let faults = self.launch.faults.get_or_insert_with(|| json!({}));
        faults[key] = value;
    }
}

// ---------------------------------------------------------------- Given

#[given(regex = r#"^a(?:nother)? DM chat with "([^"]+)"$"#)]
fn a_dm(w: &mut GatewayWorld, handle: String) {
    w.declare(ChatRef {
        label: format!("the DM with {handle}"),
        group: false,
        participants: vec![handle],
        display_name: None,
        chat_id: None,
        guid: None,
        identifier: None,
    });
}

#[given(regex = r#"^a(?:nother)? group chat "([^"]+)" with (.+)$"#)]
fn a_group(w: &mut GatewayWorld, name: String, members: String) {
    let participants: Vec<String> = members
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    assert!(
        participants.len() >= 2,
        "a group needs two or more quoted handles: {members}"
    );
    w.declare(ChatRef {
        label: format!("the group {name:?}"),
        group: true,
        participants,
        display_name: Some(name),
        chat_id: None,
        guid: None,
        identifier: None,
    });
}

#[given("the assistant records every envelope it is given")]
fn recording_agent(w: &mut GatewayWorld) {
    assert!(
        w.gateway.is_none(),
        "the agent is chosen before the gateway starts"
    );
    w.launch.agent = Agent::Recording;
}

#[given(regex = r#"^fake-imsg speaks protocol "(v1|legacy)"$"#)]
fn speaks_protocol(w: &mut GatewayWorld, protocol: String) {
    assert!(
        w.gateway.is_none(),
        "the protocol is chosen before the gateway starts"
    );
    w.launch.protocol = Some(protocol);
}

#[given("fake-imsg mirrors every message it sends back as an incoming row")]
fn mirror_fault(w: &mut GatewayWorld) {
    w.set_fault("mirror_echo", json!("text"));
}

#[given("fake-imsg mirrors every message it sends back as an incoming reply to it")]
fn mirror_reply_fault(w: &mut GatewayWorld) {
    w.set_fault("mirror_echo", json!("reply_to"));
}

#[given(regex = r"^fake-imsg writes a garbage line to stdout after (\d+) requests?$")]
fn garbage_fault(w: &mut GatewayWorld, after: u64) {
    w.set_fault("garbage_line_after", json!(after));
}

#[given("fake-imsg reports every new message twice")]
fn duplicate_fault(w: &mut GatewayWorld) {
    w.set_fault("duplicate_notification", json!(true));
}

#[given(regex = r"^the config says:$")]
fn config_says(w: &mut GatewayWorld, step: &cucumber::gherkin::Step) {
    let text = step
        .docstring
        .clone()
        .expect("the config step takes a docstring with a JSON5 object");
    w.config_text = Some(text);
}

#[given(
    regex = r#"^"([^"]+)" already said "([^"]*)" in (the DM(?: with "[^"]+")?|the group(?: "[^"]+")?|"[^"]+")$"#
)]
async fn already_said(w: &mut GatewayWorld, from: String, text: String, chat: String) {
    // Before the gateway starts: history, not a new message (a fresh gateway starts at the tail).
    assert!(
        w.gateway.is_none(),
        "\"already said\" is for history, before the gateway runs"
    );
    let chat = w.chat(&chat);
    let was = std::mem::replace(&mut w.stopped, true);
    w.inject(
        chat,
        InjectSpec {
            from,
            text,
            ..Default::default()
        },
    )
    .await;
    w.stopped = was;
}

#[given("the gateway is running")]
async fn gateway_running(w: &mut GatewayWorld) {
    w.ensure_gateway().await;
}

// ---------------------------------------------------------------- When

#[when(
    regex = r#"^"([^"]+)" sends "([^"]*)" in (the DM(?: with "[^"]+")?|the group(?: "[^"]+")?|"[^"]+")$"#
)]
async fn someone_sends(w: &mut GatewayWorld, from: String, text: String, chat: String) {
    // `\n` in a step stands for a line break (a step is one line).
    let text = text.replace("\\n", "\n");
    let chat = w.chat(&chat);
    w.inject(
        chat,
        InjectSpec {
            from,
            text,
            ..Default::default()
        },
    )
    .await;
}

#[when(
    regex = r#"^I send "([^"]*)" from my phone in (the DM(?: with "[^"]+")?|the group(?: "[^"]+")?|"[^"]+")$"#
)]
async fn i_send(w: &mut GatewayWorld, text: String, chat: String) {
    let chat = w.chat(&chat);
    let c = &w.chats[chat];
    // A DM row from me still names the other party's handle, as Messages writes it.
    let from = if c.group {
        String::new()
    } else {
        c.participants[0].clone()
    };
    w.inject(
        chat,
        InjectSpec {
            from,
            text,
            is_from_me: true,
            ..Default::default()
        },
    )
    .await;
}

#[when(
    regex = r#"^"([^"]+)" reacts "(love|like|dislike|laugh|emphasis|question)" to the last message$"#
)]
async fn someone_reacts(w: &mut GatewayWorld, from: String, kind: String) {
    let target = w
        .last_message
        .clone()
        .expect("a message was written before the reaction");
    let chat = w
        .chats
        .iter()
        .position(|c| c.chat_id.is_some() && c.chat_id == target.chat_id)
        .expect("the last message's chat is declared");
    w.inject(
        chat,
        InjectSpec {
            from,
            text: String::new(),
            reaction: Some((kind, target.guid)),
            ..Default::default()
        },
    )
    .await;
}

#[when(
    regex = r#"^Messages reports the gateway's last reply again as an incoming message from "([^"]+)"$"#
)]
async fn mirror_row(w: &mut GatewayWorld, from: String) {
    let (chat, send) = w.last_reply.clone().expect("a reply was seen before");
    let text = send.params["text"].as_str().unwrap_or_default().to_string();
    w.inject(
        chat,
        InjectSpec {
            from,
            text,
            ..Default::default()
        },
    )
    .await;
}

#[when(regex = r#"^the operator runs "imsg-gateway ([^"]+)"$"#)]
async fn operator_runs(w: &mut GatewayWorld, args: String) {
    let args = w.expand(&args);
    if w.gateway.is_none() {
        w.resolve_config();
        w.launch
            .write_files()
            .expect("the scenario's files are written");
    }
    let out = tokio::process::Command::new(&binaries().gateway)
        .arg("--config")
        .arg(w.launch.config_path())
        .args(args.split_whitespace())
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("imsg-gateway runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    w.last_command = Some((out.status.code().unwrap_or(-1), text));
}

#[when(regex = r#"^the pairing request of "([^"]+)" is (\d+) minutes old$"#)]
fn request_aged(w: &mut GatewayWorld, sender: String, minutes: i64) {
    // The gateway's clock is its own: age the request in the scenario's state database, so
    // this works against a real imsg too.
    let db = rusqlite::Connection::open(w.launch.state_db()).expect("the state database opens");
    let now = chrono::Utc::now().timestamp_millis();
    let n = db
        .execute(
            "UPDATE pairing SET created_ms = ?2, last_seen_ms = ?2 WHERE sender = ?1",
            rusqlite::params![sender, now - minutes * 60_000],
        )
        .expect("the pairing table is updated");
    assert_eq!(
        n,
        1,
        "no pairing request of {sender} in {}",
        w.launch.state_db().display()
    );
}

#[when("the imsg child is killed")]
async fn kill_child(w: &mut GatewayWorld) {
    w.ensure_gateway().await;
    let pid_file = w.launch.pid_file();
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap_or_else(|e| panic!("fake-imsg wrote no pid file {}: {e}", pid_file.display()))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("pid file {} holds no pid: {e}", pid_file.display()));
    w.subscriptions_at_kill = subscriptions(&read_tap(&w.launch.tap_log()));
    signal(pid, "KILL");
    let deadline = Instant::now() + wait();
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "imsg (pid {pid}) survived SIGKILL"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[when("the gateway is stopped")]
async fn stop_gateway(w: &mut GatewayWorld) {
    let g = w.gateway.take().expect("the gateway was started");
    let status = g.stop().await;
    assert!(
        status == "exit status: 0",
        "the gateway did not exit cleanly on SIGTERM: {status}\n{}",
        tail(&w.launch.stderr_path(), 40)
    );
    w.stopped = true;
}

#[when("the gateway is started again")]
async fn start_again(w: &mut GatewayWorld) {
    w.stopped = false;
    w.ensure_gateway().await;
}

// ---------------------------------------------------------------- Then

#[then(
    regex = r#"^the gateway replies "([^"]*)" in (the DM(?: with "[^"]+")?|the group(?: "[^"]+")?|"[^"]+")$"#
)]
async fn replies(w: &mut GatewayWorld, text: String, chat: String) {
    let chat = w.chat(&chat);
    let send = w.next_reply(chat).await;
    let got = send
        .params
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or_default();
    assert_eq!(
        got,
        text,
        "the next reply in {} is not the expected one\n{}",
        w.chats[chat].label,
        w.report()
    );
    w.check_sent_row(chat, &send, &text).await;
    w.last_reply = Some((chat, send));
}

#[then(
    regex = r#"^the gateway replies nothing(?: else)? in (the DM(?: with "[^"]+")?|the group(?: "[^"]+")?|"[^"]+")(?: within (\d+(?:\.\d+)?) seconds?)?$"#
)]
async fn replies_nothing(w: &mut GatewayWorld, chat: String, secs: String) {
    let chat = w.chat(&chat);
    let quiet = if secs.is_empty() {
        QUIET
    } else {
        Duration::from_secs_f64(secs.parse().expect("seconds"))
    };
    tokio::time::sleep(quiet).await;
    let sends = w.sends_to(chat);
    let extra: Vec<&Value> = sends[w.consumed[chat].min(sends.len())..]
        .iter()
        .map(|e| &e.params)
        .collect();
    assert!(
        extra.is_empty(),
        "the gateway sent to {} what it should not have: {extra:?}\n{}",
        w.chats[chat].label,
        w.report()
    );
}

#[then(
    regex = r#"^the gateway replies with a (new )?pairing code in (the DM(?: with "[^"]+")?|the group(?: "[^"]+")?|"[^"]+")$"#
)]
async fn replies_with_code(w: &mut GatewayWorld, new: String, chat: String) {
    let chat = w.chat(&chat);
    let send = w.next_reply(chat).await;
    let text = send.params["text"].as_str().unwrap_or_default().to_string();
    let who = w.chats[chat].participants[0].clone();
    assert!(
        text.contains(&format!("Your iMessage sender id: {who}")),
        "the reply does not name the sender {who}: {text:?}"
    );
    let code = text
        .lines()
        .find_map(|l| l.strip_prefix("Pairing code: "))
        .unwrap_or_else(|| panic!("no \"Pairing code:\" line in {text:?}"))
        .trim()
        .to_string();
    assert_eq!(code.len(), 8, "{code:?}");
    assert!(
        code.bytes()
            .all(|b| b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789".contains(&b)),
        "{code:?} uses characters outside the pairing alphabet"
    );
    assert!(
        text.contains(&format!("imsg-gateway pairing approve {code}")),
        "the reply does not say how to approve: {text:?}"
    );
    if !new.is_empty() {
        assert!(!w.codes.contains(&code), "{code} was sent before");
    }
    w.check_sent_row(chat, &send, &text).await;
    w.codes.push(code);
    w.last_reply = Some((chat, send));
}

#[then(regex = r"^the command exits (\d+)$")]
fn command_exits(w: &mut GatewayWorld, code: i32) {
    let (got, out) = w.last_command.clone().expect("a command ran");
    assert_eq!(
        got, code,
        "the command exited {got}, not {code}; it said:\n{out}"
    );
}

#[then(regex = r#"^the command says "(.*)"$"#)]
fn command_says(w: &mut GatewayWorld, text: String) {
    // `\"` in the feature stands for a quote in the output.
    let text = w.expand(&text.replace("\\\"", "\""));
    let (_, out) = w.last_command.clone().expect("a command ran");
    assert!(
        out.contains(&text),
        "the command did not say {text:?}; it said:\n{out}"
    );
}

#[then(regex = r#"^the command does not say "([^"]*)"$"#)]
fn command_does_not_say(w: &mut GatewayWorld, text: String) {
    let text = w.expand(&text);
    let (_, out) = w.last_command.clone().expect("a command ran");
    assert!(!out.contains(&text), "the command said {text:?}:\n{out}");
}

#[then(regex = r#"^the gateway's log says "([^"]*)"$"#)]
async fn log_says(w: &mut GatewayWorld, text: String) {
    let deadline = Instant::now() + wait();
    loop {
        let log = std::fs::read_to_string(w.launch.stderr_path()).unwrap_or_default();
        if log.contains(&text) {
            return;
        }
        if Instant::now() > deadline {
            panic!("the gateway's log never said {text:?}\n{}", w.report());
        }
        tokio::time::sleep(POLL).await;
    }
}

#[then(regex = r#"^that reply's envelope carries (no context|the context (.+))$"#)]
fn envelope_context(w: &mut GatewayWorld, _what: String, list: String) {
    let envelope = w.envelope_of_last_reply();
    let context: Vec<String> = envelope["context"]
        .as_array()
        .unwrap_or_else(|| panic!("the envelope has no context array: {envelope}"))
        .iter()
        .map(|c| c["text"].as_str().unwrap_or_default().to_string())
        .collect();
    let want: Vec<String> = list
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    assert_eq!(
        context, want,
        "the envelope's context; envelope: {envelope}"
    );
}

#[then(regex = r"^that reply's envelope says the assistant was (mentioned|not mentioned)$")]
fn envelope_mentioned(w: &mut GatewayWorld, what: String) {
    let envelope = w.envelope_of_last_reply();
    assert_eq!(
        envelope["was_mentioned"].as_bool(),
        Some(what == "mentioned"),
        "envelope: {envelope}"
    );
}

#[then("that reply was addressed by chat_id")]
fn addressed_by_chat_id(w: &mut GatewayWorld) {
    let (chat, send) = w.last_reply.clone().expect("a reply was seen before");
    let id = w.chats[chat].chat_id;
    assert_eq!(
        send.params.get("chat_id").and_then(Value::as_i64),
        id,
        "the reply's target is {}, not the chat_id of {}",
        describe_target(&send.params),
        w.chats[chat].label
    );
    for other in ["to", "chat_guid", "chat_identifier"] {
        assert!(
            send.params.get(other).is_none(),
            "a chat_id send carries a second target key {other}: {}",
            send.params
        );
    }
}

#[then(regex = r#"^the session of that reply is "([^"]+)"$"#)]
async fn session_of_reply(w: &mut GatewayWorld, expected: String) {
    let (chat, send) = w.last_reply.clone().expect("a reply was seen before");
    let expected = match w.chats[chat].chat_id {
        Some(id) => expected.replace("<chat_id>", &id.to_string()),
        None => expected,
    };
    let reply = send.params["text"].as_str().unwrap_or_default();
    let asked = reply.strip_prefix("echo: ").unwrap_or(reply);
    // The agent writes the envelope before it answers, so it is on disk by now.
    let envelopes = w.envelopes();
    let envelope = envelopes
        .iter()
        .rev()
        .find(|e| find_key(e, &["text"]).and_then(Value::as_str) == Some(asked))
        .unwrap_or_else(|| {
            panic!(
                "no envelope for the message {asked:?} (is the recording agent configured?); envelopes: {envelopes:?}"
            )
        });
    let session = find_key(envelope, &["sessionkey", "session", "sessionid"])
        .unwrap_or_else(|| panic!("the envelope has no session key field: {envelope}"));
    let session = session
        .as_str()
        .map(str::to_string)
        .or_else(|| {
            find_key(session, &["key", "id"])
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| panic!("the envelope's session is not a string: {envelope}"));
    assert_eq!(
        session, expected,
        "wrong session for {asked:?}; envelope: {envelope}"
    );
}

#[then("imsg refused none of the gateway's requests")]
async fn no_refusals(w: &mut GatewayWorld) {
    let tap = read_tap(&w.launch.tap_log());
    let refused: Vec<String> = tap
        .iter()
        .filter_map(|e| {
            let err = e.error()?;
            // A legacy imsg answers the `initialize` probe with Method not found; that is
            // the negotiation working, not a refusal.
            if e.method == "initialize" && err.get("code") == Some(&json!(-32601)) {
                return None;
            }
            // A real imsg cannot find its sent rows in the scenario's world (Messages writes
            // them to the Mac's own chat.db) and may lack the Automation permission, so its
            // sends fail at delivery; only a refusal of the request itself counts there.
            let shape = [-32600, -32601, -32602].map(|c| json!(c));
            if binaries().real
                && e.method == "send"
                && !err.get("code").is_some_and(|c| shape.contains(c))
            {
                return None;
            }
            Some(format!("{} {} -> {}", e.method, e.params, err))
        })
        .collect();
    assert!(
        refused.is_empty(),
        "imsg refused requests:\n{}",
        refused.join("\n")
    );
}

#[then(regex = r#"^the gateway asked imsg for "([^"]+)" first$"#)]
fn asked_first(w: &mut GatewayWorld, method: String) {
    let tap = read_tap(&w.launch.tap_log());
    let first = tap.first().map(|e| e.method.as_str());
    assert_eq!(
        first,
        Some(method.as_str()),
        "requests: {:?}",
        methods(&tap)
    );
}

#[then(regex = r#"^the gateway never asked imsg for "([^"]+)"$"#)]
fn never_asked(w: &mut GatewayWorld, method: String) {
    let tap = read_tap(&w.launch.tap_log());
    assert!(
        tap.iter().all(|e| e.method != method),
        "requests: {:?}",
        methods(&tap)
    );
}

fn methods(tap: &[Exchange]) -> Vec<&str> {
    tap.iter().map(|e| e.method.as_str()).collect()
}

#[then("imsg has been restarted")]
async fn restarted(w: &mut GatewayWorld) {
    let deadline = Instant::now() + wait();
    loop {
        let subs = subscriptions(&read_tap(&w.launch.tap_log()));
        if subs > w.subscriptions_at_kill {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "imsg was not started again and re-subscribed within {:?} ({subs} subscription(s))\n{}",
            wait(),
            w.report()
        );
        tokio::time::sleep(POLL).await;
    }
}

#[then("the gateway is still running")]
fn still_running(w: &mut GatewayWorld) {
    let g = w.gateway.as_mut().expect("the gateway was started");
    assert!(g.is_running(), "the gateway exited\n{}", w.report());
}

/// Stops the scenario's gateway; keeps the directory of a failed scenario and says where.
pub async fn finish(w: &mut GatewayWorld, failed: bool) {
    let status = match w.gateway.take() {
        Some(g) => g.stop().await,
        None => "not started".to_string(),
    };
    if failed {
        let dir: PathBuf = match w.dir.take() {
            Some(d) => d.keep(),
            None => w.launch.dir.clone(),
        };
        eprintln!(
            "---- failed scenario: gateway {status}; files kept in {}\n---- gateway stderr (last 80 lines):\n{}\n---- end",
            dir.display(),
            harness::tail(&w.launch.stderr_path(), 80)
        );
    }
}

// ---------------------------------------------------------------- Chunking, targets, files

/// Deterministic prose of exactly `n` chars, words and spaces, ending in a letter.
fn prose(n: usize) -> String {
    const WORDS: &[&str] = &[
        "lorem",
        "ipsum",
        "dolor",
        "sit",
        "amet",
        "consectetur",
        "adipiscing",
        "elit",
    ];
    let mut s = String::new();
    let mut i = 0;
    while s.len() < n {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(WORDS[i % WORDS.len()]);
        i += 1;
    }
    s.truncate(n);
    if s.ends_with(' ') {
        s.pop();
        s.push('x');
    }
    s
}

#[when(
    regex = r#"^"([^"]+)" sends a text of (\d+) characters in (the DM(?: with "[^"]+")?|the group(?: "[^"]+")?|"[^"]+")$"#
)]
async fn sends_long(w: &mut GatewayWorld, from: String, n: usize, chat: String) {
    let text = prose(n);
    w.last_text = Some(text.clone());
    let chat = w.chat(&chat);
    w.inject(
        chat,
        InjectSpec {
            from,
            text,
            ..Default::default()
        },
    )
    .await;
}

#[when(
    regex = r#"^"([^"]+)" sends (\d+) paragraphs of (\d+) characters in (the DM(?: with "[^"]+")?|the group(?: "[^"]+")?|"[^"]+")$"#
)]
async fn sends_paragraphs(w: &mut GatewayWorld, from: String, k: usize, n: usize, chat: String) {
    let text = (0..k).map(|_| prose(n)).collect::<Vec<_>>().join("\n\n");
    w.last_text = Some(text.clone());
    let chat = w.chat(&chat);
    w.inject(
        chat,
        InjectSpec {
            from,
            text,
            ..Default::default()
        },
    )
    .await;
}

#[then(
    regex = r#"^the gateway replies in (\d+) messages? in (the DM(?: with "[^"]+")?|the group(?: "[^"]+")?|"[^"]+")$"#
)]
async fn replies_in_n(w: &mut GatewayWorld, n: usize, chat: String) {
    let chat = w.chat(&chat);
    let mut got = Vec::new();
    for _ in 0..n {
        got.push(w.next_reply(chat).await);
    }
    tokio::time::sleep(QUIET).await;
    let extra = w.sends_to(chat).len() - w.consumed[chat];
    assert_eq!(
        extra,
        0,
        "more than {n} messages were sent to {}\n{}",
        w.chats[chat].label,
        w.report()
    );
    w.last_replies = got;
}

fn texts_of(w: &GatewayWorld) -> Vec<String> {
    w.last_replies
        .iter()
        .map(|e| e.params["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[then(regex = r"^each of those messages is at most (\d+) characters$")]
fn each_at_most(w: &mut GatewayWorld, n: usize) {
    for (i, t) in texts_of(w).iter().enumerate() {
        assert!(
            t.chars().count() <= n,
            "message {} is {} chars",
            i + 1,
            t.chars().count()
        );
        assert!(!t.trim().is_empty(), "message {} is empty", i + 1);
    }
}

#[then(regex = r#"^those messages, in order, are "([^"]*)" followed by the text sent$"#)]
fn in_order_whole(w: &mut GatewayWorld, prefix: String) {
    let want = format!("{prefix}{}", w.last_text.clone().expect("a text was sent"));
    let squash = |s: &str| s.split_whitespace().collect::<String>();
    assert_eq!(
        squash(&texts_of(w).concat()),
        squash(&want),
        "the messages do not add up to the reply"
    );
}

#[then(regex = r#"^only the first of those messages starts with "([^"]*)"$"#)]
fn only_first_prefixed(w: &mut GatewayWorld, prefix: String) {
    let t = texts_of(w);
    assert!(t[0].starts_with(&prefix), "{:?}", t[0]);
    for (i, m) in t.iter().enumerate().skip(1) {
        assert!(
            !m.starts_with(&prefix),
            "message {} starts with {prefix:?}",
            i + 1
        );
    }
}

#[then("every break between those messages falls between paragraphs")]
fn breaks_at_paragraphs(w: &mut GatewayWorld) {
    let text = w.last_text.clone().expect("paragraphs were sent");
    let paragraphs: Vec<&str> = text.split("\n\n").collect();
    for (i, m) in texts_of(w).iter().enumerate() {
        let body = m.strip_prefix("echo: ").unwrap_or(m);
        for part in body.split("\n\n") {
            assert!(
                paragraphs.contains(&part.trim()),
                "message {} cuts a paragraph: {part:?}",
                i + 1
            );
        }
    }
}

#[then(regex = r#"^those messages are (".*")$"#)]
fn those_messages_are(w: &mut GatewayWorld, list: String) {
    let want: Vec<String> = list
        .split('"')
        .skip(1)
        .step_by(2)
        .map(|t| t.replace("\\n", "\n"))
        .collect();
    assert_eq!(texts_of(w), want);
}

#[then("the command prints the send params:")]
fn prints_params(w: &mut GatewayWorld, step: &cucumber::gherkin::Step) {
    let want: Value = json5::from_str(step.docstring.as_deref().expect("a docstring"))
        .expect("the expected params are JSON5");
    let (code, out) = w.last_command.clone().expect("a command ran");
    assert_eq!(code, 0, "the command failed:\n{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with('['))
        .unwrap_or_else(|| panic!("no JSON array in:\n{out}"));
    let got: Value = serde_json::from_str(line).expect("the printed params are JSON");
    assert_eq!(got, want, "printed:\n{out}");
}

/// A small file in the scenario dir, `bytes` long.
fn scenario_file(w: &GatewayWorld, name: &str, bytes: usize) -> PathBuf {
    let path = w.launch.dir.join("files").join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, vec![b'x'; bytes]).unwrap();
    path
}

#[when(
    regex = r#"^"([^"]+)" sends the file "([^"]+)" of (\d+) bytes(?: with the caption "([^"]*)")? in (the DM(?: with "[^"]+")?|the group(?: "[^"]+")?|"[^"]+")$"#
)]
async fn sends_file(
    w: &mut GatewayWorld,
    from: String,
    name: String,
    bytes: usize,
    caption: String,
    chat: String,
) {
    let path = scenario_file(w, &name, bytes);
    let chat = w.chat(&chat);
    let text = if caption.is_empty() {
        "\u{FFFC}".to_string()
    } else {
        format!("{caption} \u{FFFC}")
    };
    w.inject(
        chat,
        InjectSpec {
            from,
            text,
            attachments: vec![path],
            ..Default::default()
        },
    )
    .await;
}

#[when(regex = r#"^the Mac's copy of "([^"]+)" is deleted$"#)]
fn mac_copy_deleted(w: &mut GatewayWorld, name: String) {
    let mut gone = 0;
    let mut stack = vec![w.world.attachments_dir()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n.to_string_lossy() == name) {
                std::fs::remove_file(&p).unwrap();
                gone += 1;
            }
        }
    }
    assert!(
        gone > 0,
        "no copy of {name} under {}",
        w.world.attachments_dir().display()
    );
}

#[given(regex = r#"^a file "([^"]+)" of (\d+) bytes$"#)]
fn a_file(w: &mut GatewayWorld, name: String, bytes: usize) {
    scenario_file(w, &name, bytes);
}

#[when(
    regex = r#"^"([^"]+)" asks for (only )?the file "([^"]+)" in (the DM(?: with "[^"]+")?|the group(?: "[^"]+")?|"[^"]+")$"#
)]
async fn asks_for_file(
    w: &mut GatewayWorld,
    from: String,
    only: String,
    name: String,
    chat: String,
) {
    let path = w.launch.dir.join("files").join(&name);
    let text = format!(
        "attach {}{}",
        if only.is_empty() { "" } else { "only " },
        path.display()
    );
    let chat = w.chat(&chat);
    w.inject(
        chat,
        InjectSpec {
            from,
            text,
            ..Default::default()
        },
    )
    .await;
}

#[then(
    regex = r#"^the gateway sends the file "([^"]+)" in (the DM(?: with "[^"]+")?|the group(?: "[^"]+")?|"[^"]+")$"#
)]
async fn sends_the_file(w: &mut GatewayWorld, name: String, chat: String) {
    let chat = w.chat(&chat);
    let send = w.next_reply(chat).await;
    let file = send
        .params
        .get("file")
        .and_then(Value::as_str)
        .unwrap_or_default();
    assert!(
        file.ends_with(&format!("/{name}")),
        "the next send is not the file {name}: {}",
        send.params
    );
    assert!(
        send.params.get("text").is_none(),
        "a file send carries no text: {}",
        send.params
    );
    w.last_reply = Some((chat, send));
}

#[then(
    regex = r#"^the gateway's next message in (the DM(?: with "[^"]+")?|the group(?: "[^"]+")?|"[^"]+") says "([^"]*)"$"#
)]
async fn next_message_says(w: &mut GatewayWorld, chat: String, text: String) {
    let chat = w.chat(&chat);
    let send = w.next_reply(chat).await;
    let got = send.params["text"].as_str().unwrap_or_default();
    assert!(
        got.contains(&text),
        "the next message is {got:?}, without {text:?}"
    );
    w.last_reply = Some((chat, send));
}

#[then(regex = r#"^imsg was asked to send "([^"]+)" exactly once$"#)]
fn sent_once(w: &mut GatewayWorld, name: String) {
    let n = read_tap(&w.launch.tap_log())
        .iter()
        .filter(|e| e.method == "send")
        .filter(|e| {
            e.params
                .get("file")
                .and_then(Value::as_str)
                .is_some_and(|f| f.ends_with(&format!("/{name}")))
        })
        .count();
    assert_eq!(n, 1, "sends of {name}: {n}\n{}", w.report());
}

/// The envelope's attachment called `name`.
fn envelope_attachment(w: &GatewayWorld, name: &str) -> Value {
    let env = w.envelope_of_last_reply();
    env["attachments"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"].as_str() == Some(name)).cloned())
        .unwrap_or_else(|| panic!("no attachment {name:?} in the envelope: {env}"))
}

#[then(
    regex = r#"^that reply's envelope hands over "([^"]+)" as "([^"]+)" at a path that exists$"#
)]
fn hands_over(w: &mut GatewayWorld, name: String, mime: String) {
    let a = envelope_attachment(w, &name);
    assert_eq!(a["mime_type"].as_str(), Some(mime.as_str()), "{a}");
    let path = a["path"].as_str().unwrap_or_else(|| panic!("no path: {a}"));
    assert!(
        std::path::Path::new(path).is_file(),
        "{path} does not exist"
    );
    assert!(a.get("omitted").is_none(), "{a}");
}

#[then(regex = r#"^that reply's envelope omits "([^"]+)" because "([^"]*)"$"#)]
fn omits(w: &mut GatewayWorld, name: String, why: String) {
    let a = envelope_attachment(w, &name);
    assert!(a["path"].is_null(), "the path is handed over: {a}");
    let omitted = a["omitted"].as_str().unwrap_or_default();
    assert!(omitted.contains(&why), "omitted {omitted:?}, not {why:?}");
}
