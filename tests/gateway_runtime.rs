//! The running gateway (`imsg-gateway run`) against a tiny scripted `imsg rpc` stand-in
//! (python3, embedded below), so the runtime can be checked without fake-imsg: the reply
//! goes to the chat it came from, the first start subscribes at the tail, a crashed child is
//! restarted and caught up from the durable cursor, and nothing is ever answered twice,
//! across a child crash and across a gateway restart.

mod support;
use support::{signal, stop, Gw};

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const MOCK: &str = r#"#!/usr/bin/env python3
# A minimal `imsg rpc` stand-in for the runtime tests: messages live in $MOCK_DIR/world.jsonl
# (one message object per line, ids increasing), sends go to $MOCK_DIR/sent.jsonl, every
# request is logged to $MOCK_DIR/requests.jsonl, the pid is written to $MOCK_DIR/pid.
import json, os, sys, threading, time
d = os.environ["MOCK_DIR"]
legacy = os.environ.get("MOCK_PROTOCOL") == "legacy"
lock = threading.Lock()
open(os.path.join(d, "pid"), "w").write(str(os.getpid()))
def out(obj):
    with lock:
        sys.stdout.write(json.dumps(obj) + "\n"); sys.stdout.flush()
def world():
    try:
        with open(os.path.join(d, "world.jsonl")) as f:
            return [json.loads(l) for l in f if l.strip()]
    except FileNotFoundError:
        return []
def log(req):
    with open(os.path.join(d, "requests.jsonl"), "a") as f:
        f.write(json.dumps(req) + "\n")
subs = {}
def once(name):
    # True the first time in this MOCK_DIR (across restarts of the child).
    marker = os.path.join(d, "once-" + name)
    if os.path.exists(marker): return False
    open(marker, "w").close(); return True
# A restarted child comes up a second late (as the gateway's backoff used to be stretched
# for), so a test can write a message while imsg is down.
if not once("started"): time.sleep(1.0)
def watch(sub, cursor):
    while sub in subs:
        for m in world():
            if m["id"] > cursor:
                if str(m["id"]) == os.environ.get("MOCK_OVERFLOW_AT") and once("overflow"):
                    out({"jsonrpc": "2.0", "method": "watch.overflow", "params": {"subscription": sub,
                         "resume_after_rowid": cursor, "reason": "buffer_limit_exceeded", "terminal": True}})
                    subs.pop(sub, None); return
                if str(m["id"]) == os.environ.get("MOCK_ERROR_AT") and once("error"):
                    out({"jsonrpc": "2.0", "method": "error", "params": {"subscription": sub,
                         "error": {"message": "database is locked (code: 5)"}}})
                    subs.pop(sub, None); return
                cursor = m["id"]
                for _ in range(2 if os.environ.get("MOCK_DUPLICATE") else 1):
                    out({"jsonrpc": "2.0", "method": "message", "params": {"subscription": sub, "message": m}})
        time.sleep(0.05)
status = {"version": "0.14.0", "protocol_version": 1, "database": {"path": "/mock", "ready": True},
          "methods": ["initialize", "status", "watch.subscribe", "watch.unsubscribe", "messages.after", "send", "chats.list"]}
nsub = 0
not_ready = int(os.environ.get("MOCK_DB_READY_AFTER", "0"))
hung = False
for line in sys.stdin:
    line = line.strip()
    if not line: continue
    req = json.loads(line); log(req)
    m, p, i = req.get("method"), req.get("params") or {}, req.get("id")
    if hung: continue
    if m in ("initialize", "status") and not legacy and not_ready > 0:
        not_ready -= 1
        down = {"version": "0.14.0", "protocol_version": 1,
                "database": {"path": "/mock", "ready": False, "error": "The configured Messages database does not exist."},
                "methods": ["initialize", "status", "watch.unsubscribe", "send"]}
        out({"jsonrpc": "2.0", "id": i, "result": down}); continue
    if m in ("initialize", "status", "messages.after") and legacy:
        out({"jsonrpc": "2.0", "id": i, "error": {"code": -32601, "message": "Method not found", "data": m}}); continue
    if m in ("initialize", "status"):
        out({"jsonrpc": "2.0", "id": i, "result": status})
    elif m == "messages.after":
        since, limit = p["since_rowid"], p.get("limit", 100)
        rows = [x for x in world() if x["id"] > since]
        page = rows[:limit]
        nxt = page[-1]["id"] if page else since
        out({"jsonrpc": "2.0", "id": i, "result": {"messages": page, "next_rowid": nxt, "has_more": len(rows) > limit}})
    elif m == "watch.subscribe":
        nsub += 1
        since = p.get("since_rowid")
        # imsg: a positive cursor resumes after it, a negative one replays from the first
        # row, 0 or none starts at the tail.
        if since and since > 0: cursor = since
        elif since and since < 0: cursor = 0
        else: cursor = max([x["id"] for x in world()] or [0])
        out({"jsonrpc": "2.0", "id": i, "result": {"subscription": nsub}})
        subs[nsub] = True
        threading.Thread(target=watch, args=(nsub, cursor), daemon=True).start()
    elif m == "watch.unsubscribe":
        subs.pop(p.get("subscription"), None)
        out({"jsonrpc": "2.0", "id": i, "result": {"ok": True}})
    elif m == "send":
        with open(os.path.join(d, "sent.jsonl"), "a") as f:
            f.write(json.dumps(p) + "\n")
        out({"jsonrpc": "2.0", "id": i, "result": {"ok": True, "guid": "sent-%d" % time.time_ns()}})
        if os.environ.get("MOCK_HANG_AFTER_SEND") and once("hang"):
            hung = True; subs.clear()
    elif m == "chats.list":
        last = {}
        for x in world(): last[x["chat_id"]] = x["id"]
        chats = [{"id": c, "name": "", "identifier": "", "service": "iMessage", "is_group": False,
                  "participants": []} for c in sorted(last, key=lambda c: -last[c])]
        out({"jsonrpc": "2.0", "id": i, "result": {"chats": chats[: p.get("limit", 20)]}})
    elif m == "messages.history":
        rows = [x for x in world() if x["chat_id"] == p["chat_id"]][::-1]
        out({"jsonrpc": "2.0", "id": i, "result": {"messages": rows[: p.get("limit", 50)]}})
    else:
        out({"jsonrpc": "2.0", "id": i, "error": {"code": -32601, "message": "Method not found", "data": m}})
"#;

struct Env {
    dir: tempfile::TempDir,
    vars: Vec<(String, String)>,
}

impl Env {
    fn new(protocol: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let mock = dir.path().join("imsg");
        fs::write(&mock, MOCK).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&mock, fs::Permissions::from_mode(0o755)).unwrap();
        let config = format!(
            r#"{{ imessage: {{ cliPath: "{}", dmPolicy: "open", allowFrom: ["*"] }},
                 agent: {{ kind: "echo" }}, state: {{ dir: "{}" }} }}"#,
            mock.display(),
            dir.path().join("state").display()
        );
        fs::write(dir.path().join("config.json5"), config).unwrap();
        fs::write(dir.path().join("protocol"), protocol).unwrap();
        Env {
            dir,
            vars: Vec::new(),
        }
    }

    fn with(mut self, key: &str, value: &str) -> Env {
        self.vars.push((key.to_string(), value.to_string()));
        self
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Replaces `agent: { kind: "echo" }` in the config.
    fn set_agent(&self, agent: &str) {
        let p = self.path("config.json5");
        let text = fs::read_to_string(&p).unwrap();
        let start = text.find("agent:").unwrap();
        let end = start + text[start..].find('}').unwrap() + 1;
        fs::write(
            &p,
            format!("{}agent: {agent}{}", &text[..start], &text[end..]),
        )
        .unwrap();
    }

    fn gateway(&self) -> Gw {
        Gw(Command::new(assert_cmd::cargo::cargo_bin("imsg-gateway"))
            .arg("--config")
            .arg(self.path("config.json5"))
            .arg("--log")
            .arg("debug")
            .arg("run")
            .env("MOCK_DIR", self.dir.path())
            .env(
                "MOCK_PROTOCOL",
                fs::read_to_string(self.path("protocol")).unwrap(),
            )
            .envs(self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(fs::File::create(self.path(&format!("gateway-{}.log", now_ns()))).unwrap())
            .spawn()
            .unwrap())
    }

    fn add(&self, msg: Value) {
        use std::io::Write;
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("world.jsonl"))
            .unwrap();
        writeln!(f, "{msg}").unwrap();
    }

    fn lines(&self, name: &str) -> Vec<Value> {
        read_lines(&self.path(name))
    }

    fn sent_texts(&self) -> Vec<String> {
        self.lines("sent.jsonl")
            .iter()
            .map(|s| s["text"].as_str().unwrap_or("").to_string())
            .collect()
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        for e in fs::read_dir(self.dir.path()).unwrap() {
            let p = e.unwrap().path();
            if p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("gateway-")
            {
                all += &fs::read_to_string(p).unwrap_or_default();
            }
        }
        all
    }

    fn wait_for(&self, what: &str, mut cond: impl FnMut(&Env) -> bool) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if cond(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "timed out waiting for {what}\nsent: {:?}\nlogs:\n{}",
            self.sent_texts(),
            self.logs()
        );
    }

    fn mock_pid(&self) -> Option<String> {
        fs::read_to_string(self.path("pid")).ok()
    }
}

fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn read_lines(p: &Path) -> Vec<Value> {
    fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn dm(id: i64, text: &str) -> Value {
    json!({"id": id, "chat_id": 7, "guid": format!("GUID-{id}"), "sender": "+15550001111",
           "is_from_me": false, "text": text, "created_at": "2026-01-01T00:00:00.000Z",
           "attachments": [], "reactions": [], "chat_identifier": "+15550001111",
           "chat_guid": "iMessage;-;+15550001111", "chat_name": "",
           "participants": ["+15550001111"], "is_group": false})
}

fn subscribes(env: &Env) -> Vec<Value> {
    env.lines("requests.jsonl")
        .into_iter()
        .filter(|r| r["method"] == "watch.subscribe")
        .collect()
}

#[test]
fn v1_answers_once_across_child_crash_and_gateway_restart() {
    let env = Env::new("v1");
    env.add(dm(1, "old history"));
    let gw = env.gateway();
    env.wait_for("the first subscription", |e| !subscribes(e).is_empty());
    // First start: no cursor, so the watch starts at the tail, pinned down as a rowid (so a
    // restart replays what arrives from here on), and history is not answered.
    assert_eq!(subscribes(&env)[0]["params"]["since_rowid"], 1);
    env.add(dm(2, "hello"));
    env.wait_for("the echo reply", |e| e.sent_texts().len() == 1);
    let sent = env.lines("sent.jsonl");
    assert_eq!(sent[0]["text"], "echo: hello");
    assert_eq!(
        sent[0]["chat_id"], 7,
        "the reply goes back to the chat it came from"
    );
    assert!(sent[0].get("to").is_none());

    // Kill the child; a message arrives while it is down.
    let pid = env.mock_pid().unwrap();
    signal(&pid, "KILL");
    env.add(dm(3, "while down"));
    env.wait_for("the message sent while imsg was down", |e| {
        e.sent_texts().len() == 2
    });
    assert_eq!(env.sent_texts(), vec!["echo: hello", "echo: while down"]);
    assert_ne!(env.mock_pid().unwrap(), pid, "the child was restarted");
    let reqs = env.lines("requests.jsonl");
    assert!(
        reqs.iter()
            .any(|r| r["method"] == "messages.after" && r["params"]["since_rowid"] == 2),
        "catch-up from the durable cursor: {reqs:?}"
    );
    let subs = subscribes(&env);
    assert_eq!(
        subs.last().unwrap()["params"]["since_rowid"],
        3,
        "re-subscribed after the catch-up: {subs:?}\n{}",
        env.logs()
    );

    // Restart the whole gateway: nothing is answered again, new messages still are.
    stop(gw);
    let gw = env.gateway();
    env.add(dm(4, "after restart"));
    env.wait_for("the reply after the restart", |e| e.sent_texts().len() >= 3);
    stop(gw);
    assert_eq!(
        env.sent_texts(),
        vec!["echo: hello", "echo: while down", "echo: after restart"],
        "each message answered exactly once"
    );
}

#[test]
fn legacy_child_is_resubscribed_from_the_cursor() {
    let env = Env::new("legacy");
    let gw = env.gateway();
    env.wait_for("the first subscription", |e| !subscribes(e).is_empty());
    env.add(dm(1, "one"));
    env.wait_for("the first reply", |e| e.sent_texts().len() == 1);
    let pid = env.mock_pid().unwrap();
    signal(&pid, "KILL");
    env.add(dm(2, "two"));
    env.wait_for("the reply to the message sent while down", |e| {
        e.sent_texts().len() == 2
    });
    stop(gw);
    assert_eq!(env.sent_texts(), vec!["echo: one", "echo: two"]);
    let reqs = env.lines("requests.jsonl");
    assert_eq!(
        reqs.last().unwrap()["method"],
        "watch.unsubscribe",
        "a graceful stop unsubscribes before closing stdin"
    );
    assert!(
        reqs.iter().all(|r| r["method"] != "messages.after"),
        "legacy has no messages.after"
    );
    let subs = subscribes(&env);
    assert_eq!(subs.last().unwrap()["params"]["since_rowid"], 1);
    // Legacy knows no `buffer_limit` etc.; only documented keys were sent.
    for s in &subs {
        for k in s["params"].as_object().unwrap().keys() {
            assert!(
                ["since_rowid", "attachments", "include_reactions"].contains(&k.as_str()),
                "unexpected key {k}"
            );
        }
    }
}

#[test]
fn v1_database_not_ready_is_polled_not_restarted() {
    let env = Env::new("v1").with("MOCK_DB_READY_AFTER", "3");
    let gw = env.gateway();
    env.wait_for("the subscription once the database is ready", |e| {
        !subscribes(e).is_empty()
    });
    env.add(dm(1, "ready now"));
    env.wait_for("the reply", |e| e.sent_texts().len() == 1);
    stop(gw);
    let reqs = env.lines("requests.jsonl");
    let inits = reqs.iter().filter(|r| r["method"] == "initialize").count();
    let statuses = reqs.iter().filter(|r| r["method"] == "status").count();
    assert_eq!(inits, 1, "one child, never restarted: {reqs:?}");
    assert!(statuses >= 3, "status was polled until ready: {reqs:?}");
    let first_sub = reqs
        .iter()
        .position(|r| r["method"] == "watch.subscribe")
        .unwrap();
    let polls_before = reqs[..first_sub]
        .iter()
        .filter(|r| r["method"] == "status")
        .count();
    assert_eq!(
        polls_before, 3,
        "subscribed only once status said ready: {reqs:?}"
    );
    assert!(
        env.logs().contains("database not ready"),
        "the wait is logged"
    );
}

#[test]
fn overflow_is_caught_up_then_resubscribed() {
    let env = Env::new("v1").with("MOCK_OVERFLOW_AT", "2");
    let gw = env.gateway();
    env.wait_for("the first subscription", |e| !subscribes(e).is_empty());
    env.add(dm(1, "one"));
    env.wait_for("the first reply", |e| e.sent_texts().len() == 1);
    env.add(dm(2, "two"));
    env.add(dm(3, "three"));
    env.wait_for("both replies after the overflow", |e| {
        e.sent_texts().len() == 3
    });
    env.add(dm(4, "four"));
    env.wait_for("a live reply on the new subscription", |e| {
        e.sent_texts().len() == 4
    });
    stop(gw);
    assert_eq!(
        env.sent_texts(),
        vec!["echo: one", "echo: two", "echo: three", "echo: four"]
    );
    let reqs = env.lines("requests.jsonl");
    assert!(
        reqs.iter()
            .any(|r| r["method"] == "messages.after" && r["params"]["since_rowid"] == 1),
        "caught up from resume_after_rowid: {reqs:?}"
    );
    assert!(subscribes(&env).len() >= 2, "re-subscribed");
    assert_eq!(
        env.lines("requests.jsonl")
            .iter()
            .filter(|r| r["method"] == "initialize")
            .count(),
        1,
        "an overflow does not restart the child"
    );
}

#[test]
fn a_watch_error_resubscribes_without_losing_the_message() {
    let env = Env::new("v1").with("MOCK_ERROR_AT", "2");
    let gw = env.gateway();
    env.wait_for("the first subscription", |e| !subscribes(e).is_empty());
    env.add(dm(1, "one"));
    env.wait_for("the first reply", |e| e.sent_texts().len() == 1);
    env.add(dm(2, "two"));
    env.wait_for("the reply after the watch error", |e| {
        e.sent_texts().len() == 2
    });
    stop(gw);
    assert_eq!(env.sent_texts(), vec!["echo: one", "echo: two"]);
    assert!(env.logs().contains("watch error"), "{}", env.logs());
}

#[test]
fn a_message_admitted_before_a_gateway_stop_is_answered_after_the_restart() {
    let env = Env::new("v1");
    // An agent that never answers in time: the message stays `received` in the journal.
    env.set_agent(r#"{ kind: "exec", command: ["sh", "-c", "exec sleep 60"] }"#);
    let gw = env.gateway();
    env.wait_for("the first subscription", |e| !subscribes(e).is_empty());
    env.add(dm(1, "are you there"));
    env.wait_for("the message to be admitted", |e| {
        e.logs().contains("admitted message 1")
    });
    stop(gw);
    assert!(env.sent_texts().is_empty());
    env.set_agent(r#"{ kind: "echo" }"#);
    let gw = env.gateway();
    env.wait_for("the resumed reply", |e| e.sent_texts().len() == 1);
    env.add(dm(2, "next"));
    env.wait_for("the next reply", |e| e.sent_texts().len() == 2);
    stop(gw);
    assert_eq!(env.sent_texts(), vec!["echo: are you there", "echo: next"]);
}

#[test]
fn a_replaced_messages_database_rewinds_the_cursor() {
    let env = Env::new("v1");
    let gw = env.gateway();
    env.wait_for("the first subscription", |e| !subscribes(e).is_empty());
    for (id, text) in [(1, "a"), (2, "b"), (3, "c")] {
        env.add(dm(id, text));
    }
    env.wait_for("three replies", |e| e.sent_texts().len() == 3);
    stop(gw);
    // A different chat.db at the same path: rowids restart, GUIDs are new.
    let mut fresh = dm(1, "new database");
    fresh["guid"] = json!("NEW-GUID-1");
    fs::write(env.path("world.jsonl"), format!("{fresh}\n")).unwrap();
    let gw = env.gateway();
    env.wait_for("a subscription on the new database", |e| {
        subscribes(e).len() >= 2
    });
    let mut next = dm(2, "after the swap");
    next["guid"] = json!("NEW-GUID-2");
    env.add(next);
    env.wait_for("the reply on the new database", |e| {
        e.sent_texts().len() == 4
    });
    stop(gw);
    assert_eq!(env.sent_texts()[3], "echo: after the swap");
    assert!(env.logs().contains("looks replaced"), "{}", env.logs());
    assert_eq!(subscribes(&env).last().unwrap()["params"]["since_rowid"], 1);
}

#[test]
fn a_restart_on_the_same_database_does_not_rewind() {
    let env = Env::new("v1");
    let gw = env.gateway();
    env.wait_for("the first subscription", |e| !subscribes(e).is_empty());
    env.add(dm(1, "a"));
    env.add(dm(2, "b"));
    env.wait_for("two replies", |e| e.sent_texts().len() == 2);
    stop(gw);
    let gw = env.gateway();
    env.wait_for("a second subscription", |e| subscribes(e).len() >= 2);
    env.add(dm(3, "c"));
    env.wait_for("the third reply", |e| e.sent_texts().len() == 3);
    stop(gw);
    assert!(!env.logs().contains("looks replaced"), "{}", env.logs());
    assert_eq!(env.sent_texts(), vec!["echo: a", "echo: b", "echo: c"]);
    // The exact probe: the cursor's own row (2) is asked for with since_rowid 1.
    assert!(env
        .lines("requests.jsonl")
        .iter()
        .any(|r| r["method"] == "messages.after"
            && r["params"]["since_rowid"] == 1
            && r["params"]["limit"] == 1));
}

#[test]
fn duplicate_notifications_are_answered_once() {
    let env = Env::new("v1").with("MOCK_DUPLICATE", "1");
    let gw = env.gateway();
    env.wait_for("the first subscription", |e| !subscribes(e).is_empty());
    env.add(dm(1, "one"));
    env.add(dm(2, "two"));
    env.wait_for("two replies", |e| e.sent_texts().len() >= 2);
    env.add(dm(3, "three"));
    env.wait_for("the third reply", |e| e.sent_texts().len() >= 3);
    stop(gw);
    assert_eq!(
        env.sent_texts(),
        vec!["echo: one", "echo: two", "echo: three"]
    );
    assert!(
        env.logs().contains("already handled"),
        "the duplicates were seen and skipped"
    );
}

fn group(id: i64, chat_id: i64, text: &str) -> Value {
    json!({"id": id, "chat_id": chat_id, "guid": format!("GUID-{id}"), "sender": "+15550001111",
           "is_from_me": false, "text": text, "created_at": "2026-01-01T00:00:00.000Z",
           "attachments": [], "reactions": [], "chat_identifier": format!("chat{chat_id}"),
           "chat_guid": format!("iMessage;+;chat{chat_id}"), "chat_name": "Team",
           "participants": ["+15550001111", "+15550002222"], "is_group": true})
}

/// An exec agent that answers `reply: <text>`, taking 2 s for texts starting with "slow", and
/// logs `start <text>` / `end <text>` to $MOCK_DIR/agent.log.
const SLOW_AGENT: &str = r#"{ kind: "exec", maxConcurrency: MAXC, command: ["python3", "-c",
  "import json,os,sys,time\nt=json.load(sys.stdin)['text']\nlog=lambda w: open(os.environ['MOCK_DIR']+'/agent.log','a').write(w+' '+t+'\\n')\nlog('start')\ntime.sleep(2 if t.startswith('slow') else 0.2)\nlog('end')\nprint('reply: ' + t)"] }"#;

/// Runs a1 (slow), a2 in one group and b1 in another; returns the replies in send order and
/// the agent's start/end log.
fn sessions_scenario(max_concurrency: usize) -> (Vec<String>, Vec<String>) {
    let env = Env::new("v1");
    // Groups answered without a mention, so the access seam admits them today and later.
    let p = env.path("config.json5");
    let text = fs::read_to_string(&p).unwrap().replace(
        "dmPolicy: \"open\"",
        "groups: { \"*\": { requireMention: false } }, dmPolicy: \"open\"",
    );
    fs::write(&p, text).unwrap();
    env.set_agent(&SLOW_AGENT.replace("MAXC", &max_concurrency.to_string()));
    let gw = env.gateway();
    env.wait_for("the first subscription", |e| !subscribes(e).is_empty());
    env.add(group(1, 20, "slow a1"));
    env.add(group(2, 20, "a2"));
    env.add(group(3, 30, "b1"));
    env.wait_for("three replies", |e| e.sent_texts().len() == 3);
    stop(gw);
    let sent = env.lines("sent.jsonl");
    for s in &sent {
        let chat = s["chat_id"].as_i64().unwrap();
        let text = s["text"].as_str().unwrap();
        assert_eq!(
            chat == 30,
            text == "reply: b1",
            "each reply goes to its own group: {sent:?}"
        );
    }
    let agent_log = fs::read_to_string(env.path("agent.log"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    (env.sent_texts(), agent_log)
}

#[test]
fn one_session_is_in_order_and_sessions_run_concurrently() {
    let (order, log) = sessions_scenario(8);
    let pos = |t: &str| order.iter().position(|x| x == t).unwrap();
    assert!(
        pos("reply: slow a1") < pos("reply: a2"),
        "in order within a group: {order:?}"
    );
    let at = |t: &str| log.iter().position(|x| x == t).unwrap();
    assert!(
        at("end slow a1") < at("start a2"),
        "a2 waits for a1: {log:?}"
    );
    assert!(
        at("start b1") < at("end slow a1"),
        "b1 runs while a1 runs: {log:?}"
    );
}

#[test]
fn max_concurrency_one_never_overlaps_agent_runs() {
    let (order, log) = sessions_scenario(1);
    let pos = |t: &str| order.iter().position(|x| x == t).unwrap();
    assert!(pos("reply: slow a1") < pos("reply: a2"), "{order:?}");
    assert_eq!(log.len(), 6, "{log:?}");
    for pair in log.chunks(2) {
        let text = pair[0].strip_prefix("start ").expect("a start");
        assert_eq!(
            pair[1],
            format!("end {text}"),
            "runs never overlap: {log:?}"
        );
    }
}
