//! The gateway SIGKILLed at random moments while messages stream in, with the real binaries:
//! `imsg-gateway run` driving `fake-imsg rpc` over the family fixture world. After every
//! kill a new gateway starts on the same state dir; in the end every message must have
//! exactly one reply in its own chat, counted from the world's sent rows (what Messages
//! would have delivered), so a reply caught mid-send by the kill is reconciled with
//! fake-imsg's real `messages.history`, not guessed.
//!
//! CI runs a reduced form (300 messages, 8 kills). The full run (2,000 messages, 50 kills)
//! is `bash fixtures/soak/sigkill.sh`, or set `IMSG_SOAK_MESSAGES` / `IMSG_SOAK_KILLS`.

mod support;
use support::{fake_imsg_bin, signal, stop, Gw};

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fake_imsg::world::{InjectSpec, World};
use imsg_gateway::config::ChunkMode;
use imsg_gateway::outbound::chunk_text;

/// Small enough that every reply is two chunks, so kills land mid-reply; large enough
/// that every chunk holds its message's name (`k17a`), so each is unique.
const LIMIT: usize = 16;

fn env_or(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

struct Soak {
    dir: tempfile::TempDir,
    world: PathBuf,
}

impl Soak {
    fn new() -> Soak {
        let dir = tempfile::tempdir().unwrap();
        let world = dir.path().join("world.db");
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/worlds/family-group.json5");
        World::build_from_scenario_file(&fixture, &world).expect("world builds");
        let config = format!(
            r#"{{ imessage: {{ cliPath: "{}", dbPath: "{}", dmPolicy: "open", allowFrom: ["*"],
                              groups: {{ "*": {{ requireMention: false }} }}, textChunkLimit: {LIMIT} }},
                 agent: {{ kind: "echo" }}, state: {{ dir: "{}" }} }}"#,
            fake_imsg_bin().display(),
            world.display(),
            dir.path().join("state").display()
        );
        fs::write(dir.path().join("config.json5"), config).unwrap();
        Soak { dir, world }
    }

    fn gateway(&self) -> Gw {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("gateway.log"))
            .unwrap();
        Gw(Command::new(assert_cmd::cargo::cargo_bin("imsg-gateway"))
            .arg("--config")
            .arg(self.dir.path().join("config.json5"))
            .args(["--log", "debug", "run"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap())
    }

    fn watching(&self) -> bool {
        imsg_gateway::state::Store::open_existing(&self.dir.path().join("state"))
            .ok()
            .flatten()
            .and_then(|s| s.cursor_opt("default").ok().flatten())
            .is_some()
    }

    /// Reply chunks in the world (rows from me since the fixture): text → the chats it
    /// was sent to. Every chunk names its message (`k17a`), so each is unique.
    fn replies(&self, after: i64) -> BTreeMap<String, Vec<i64>> {
        let w = World::open(&self.world).unwrap();
        let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for r in w.sent(after).unwrap() {
            out.entry(r.text).or_default().push(r.chat_id.unwrap_or(0));
        }
        out
    }

    fn sent_count(&self, after: i64) -> usize {
        World::open(&self.world).unwrap().sent(after).unwrap().len()
    }
}

fn soak(messages: usize, kills: usize, seed: u64) {
    let s = Soak::new();
    let mut gw = s.gateway();
    let start = Instant::now();
    while !s.watching() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the gateway never started watching"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let world = World::open(&s.world).unwrap();
    let base = world.max_rowid().unwrap();
    // Chat 1 is the family group, 2 a DM with Mom, 3 an SMS DM with Dad.
    let senders = [
        (1, "+15551110001"),
        (1, "sister@example.com"),
        (2, "+15551110001"),
        (3, "+15551110002"),
    ];
    let mut rng = seed;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    let mut killed = 0;
    let every = (messages / kills.max(1)).max(1);
    for i in 0..messages {
        let (chat, from) = senders[(next() % senders.len() as u64) as usize];
        let text = format!("k{i}a\nk{i}b\nk{i}c");
        world
            .inject(&InjectSpec {
                chat_id: Some(chat),
                from: from.to_string(),
                text: text.clone(),
                ..Default::default()
            })
            .unwrap();
        for chunk in chunk_text(&format!("echo: {text}"), LIMIT, ChunkMode::Length) {
            assert!(
                chunk.contains(&format!("k{i}")),
                "chunk {chunk:?} names its message"
            );
            expected.insert(chunk, chat);
        }
        std::thread::sleep(Duration::from_millis(next() % 6));
        if killed < kills && i % every == every / 2 {
            if killed % 2 == 0 {
                // A random moment: mid-ingest, mid-agent, mid-send or between messages.
                std::thread::sleep(Duration::from_millis(next() % 40));
            } else {
                // Right after a chunk lands: most likely in the middle of a reply.
                let seen = s.sent_count(base);
                let t = Instant::now();
                while s.sent_count(base) == seen && t.elapsed() < Duration::from_secs(2) {
                    std::thread::sleep(Duration::from_micros(300));
                }
            }
            signal(gw.0.id(), "KILL");
            let _ = gw.0.wait();
            killed += 1;
            gw = s.gateway();
        }
    }
    let start = Instant::now();
    while s.sent_count(base) < expected.len() && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    stop(gw);
    let replies = s.replies(base);
    let (mut lost, mut twice, mut wrong) = (0, 0, 0);
    let mut examples = Vec::new();
    for (text, chat) in &expected {
        let chats = replies.get(text).map(Vec::as_slice).unwrap_or(&[]);
        let here = chats.iter().filter(|c| *c == chat).count();
        match here {
            0 => lost += 1,
            1 => {}
            _ => twice += 1,
        }
        wrong += chats.iter().filter(|c| *c != chat).count();
        if (here != 1 || chats.len() != 1) && examples.len() < 12 {
            examples.push(format!("{text:?} in chat {chat}: sent to {chats:?}"));
        }
    }
    for e in &examples {
        eprintln!("  {e}");
    }
    let log = fs::read_to_string(s.dir.path().join("gateway.log")).unwrap_or_default();
    let count = |p: &str| log.matches(p).count();
    eprintln!(
        "sigkill soak: {messages} messages ({} reply chunks), {killed} gateway SIGKILLs: {lost} chunks lost, {twice} sent twice, {wrong} in the wrong chat; \
         {} replies resumed mid-send ({} chunks found already delivered), {} admitted messages resumed",
        expected.len(),
        count("resuming a reply interrupted"),
        count("was delivered before the interruption"),
        count("resuming a message admitted before the restart"),
    );
    if (lost, twice, wrong) != (0, 0, 0) {
        eprintln!("kept for a look: {}", s.dir.keep().display());
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        panic!(
            "(lost, twice, wrong chat) = ({lost}, {twice}, {wrong}); the log ends:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}

#[test]
fn gateway_sigkills_lose_nothing_and_answer_nothing_twice() {
    soak(
        env_or("IMSG_SOAK_MESSAGES", 300),
        env_or("IMSG_SOAK_KILLS", 8),
        0x9e3779b97f4a7c15,
    );
}
