//! Shared harness for the `rpc_*` tests: builds worlds through the library API in a tempdir
//! and drives the `fake-imsg rpc` binary over pipes, line by line.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use fake_imsg::world::{InjectSpec, MessageRow, NewChat, World};
use serde_json::{json, Value};

/// Guards against hangs only; never a performance assertion.
pub const TIMEOUT: Duration = Duration::from_secs(20);

pub const ALICE: &str = "+15551234567";
pub const BOB: &str = "+15550000001";
pub const CAROL: &str = "+15550000002";

/// A world with chat 1 (DM with Alice, one inbound "hello") and chat 2 (group "Trip" with
/// Bob and Carol, one inbound "hi all" from Bob).
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("chat.db");
        let w = World::create(&db).unwrap();
        inject(&w, None, Some((false, vec![], None)), ALICE, "hello");
        inject(
            &w,
            None,
            Some((true, vec![BOB.into(), CAROL.into()], Some("Trip".into()))),
            BOB,
            "hi all",
        );
        Fixture { dir, db }
    }

    /// An empty directory with no chat.db yet.
    pub fn empty() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("chat.db");
        Fixture { dir, db }
    }

    pub fn world(&self) -> World {
        World::open(&self.db).unwrap()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a faults file and returns its path.
    pub fn faults(&self, json5: &str) -> PathBuf {
        let p = self.path("faults.json5");
        std::fs::write(&p, json5).unwrap();
        p
    }

    /// `fake-imsg rpc` on this world with `args` (e.g. `--protocol legacy`) and the faults
    /// file `json5`.
    pub fn rpc_with_faults(&self, json5: &str, args: &[&str]) -> Rpc {
        let p = self.faults(json5);
        let mut all = args.to_vec();
        all.extend(["--faults", p.to_str().unwrap()]);
        Rpc::start(&self.db, &all)
    }
}

/// Injects an inbound message into an existing chat (`chat_id`) or a new one
/// (`(group, participants, name)`).
pub fn inject(
    w: &World,
    chat_id: Option<i64>,
    new_chat: Option<(bool, Vec<String>, Option<String>)>,
    from: &str,
    text: &str,
) -> MessageRow {
    w.inject(&InjectSpec {
        chat_id,
        new_chat: new_chat.map(|(group, participants, display_name)| NewChat {
            group,
            display_name,
            participants,
            service: "iMessage".into(),
        }),
        from: from.into(),
        text: text.into(),
        ..Default::default()
    })
    .unwrap()
}

/// Plain inbound message into a chat.
pub fn say(w: &World, chat_id: i64, from: &str, text: &str) -> MessageRow {
    inject(w, Some(chat_id), None, from, text)
}

/// A running `fake-imsg rpc` child.
pub struct Rpc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    pending: VecDeque<Value>,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_fake-imsg")
}

impl Rpc {
    pub fn start(db: &Path, args: &[&str]) -> Rpc {
        Rpc::start_env(db, args, &[])
    }

    pub fn start_env(db: &Path, args: &[&str], env: &[(&str, &str)]) -> Rpc {
        let mut cmd = Command::new(bin());
        cmd.arg("rpc").arg("--db").arg(db).args(args);
        cmd.env_remove("FAKE_IMSG_PROTOCOL")
            .env_remove("FAKE_IMSG_FAULTS")
            .env_remove("FAKE_IMSG_LEVEL");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn fake-imsg rpc");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut buf = Vec::new();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let s = String::from_utf8_lossy(&buf)
                            .trim_end_matches('\n')
                            .to_string();
                        if tx.send(s).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Rpc {
            stdin: child.stdin.take(),
            child,
            lines: rx,
            pending: VecDeque::new(),
        }
    }

    pub fn v1(db: &Path) -> Rpc {
        Rpc::start(db, &[])
    }

    pub fn legacy(db: &Path) -> Rpc {
        Rpc::start(db, &["--protocol", "legacy"])
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        let s = self.stdin.as_mut().expect("stdin open");
        s.write_all(bytes).unwrap();
        s.write_all(b"\n").unwrap();
        s.flush().unwrap();
    }

    pub fn send(&mut self, v: &Value) {
        self.send_raw(v.to_string().as_bytes());
    }

    /// Sends a request with `id` and returns its response (notifications are queued).
    pub fn call(&mut self, id: Value, method: &str, params: Value) -> Value {
        self.send(&json!({"jsonrpc": "2.0", "id": id.clone(), "method": method, "params": params}));
        self.response(&id)
    }

    /// The result of a call that must succeed.
    pub fn ok(&mut self, method: &str, params: Value) -> Value {
        let r = self.call(json!(method), method, params);
        match r.get("result") {
            Some(v) => v.clone(),
            None => panic!("{method} failed: {r}"),
        }
    }

    /// The error object of a call that must fail.
    pub fn err(&mut self, method: &str, params: Value) -> Value {
        let r = self.call(json!("e"), method, params);
        match r.get("error") {
            Some(v) => v.clone(),
            None => panic!("{method} did not fail: {r}"),
        }
    }

    /// Whether a response with this id has already been read.
    pub fn has_response(&self, id: &Value) -> bool {
        self.pending.iter().any(|v| v.get("id") == Some(id))
    }

    /// Next raw stdout line.
    pub fn raw_line(&mut self) -> String {
        self.lines
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("no line within {TIMEOUT:?}"))
    }

    /// Next line parsed as JSON (queued lines first).
    pub fn next(&mut self) -> Value {
        if let Some(v) = self.pending.pop_front() {
            return v;
        }
        let line = self.raw_line();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
    }

    /// Waits for the response with this id.
    pub fn response(&mut self, id: &Value) -> Value {
        if let Some(i) = self
            .pending
            .iter()
            .position(|v| v.get("id") == Some(id) && v.get("method").is_none())
        {
            return self.pending.remove(i).unwrap();
        }
        let deadline = Instant::now() + TIMEOUT;
        loop {
            assert!(Instant::now() < deadline, "no response for id {id}");
            let line = self.raw_line();
            let v: Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
            if v.get("id") == Some(id) && v.get("method").is_none() {
                return v;
            }
            self.pending.push_back(v);
        }
    }

    /// Next server notification (skipping nothing: a response here is a test failure).
    pub fn notification(&mut self) -> Value {
        if let Some(i) = self.pending.iter().position(|v| v.get("method").is_some()) {
            return self.pending.remove(i).unwrap();
        }
        let v = self.next();
        assert!(
            v.get("method").is_some(),
            "expected a notification, got {v}"
        );
        v
    }

    /// True if no line arrives within `ms` (and nothing is queued).
    pub fn quiet_for(&mut self, ms: u64) -> bool {
        if !self.pending.is_empty() {
            return false;
        }
        match self.lines.recv_timeout(Duration::from_millis(ms)) {
            Ok(l) => {
                self.pending
                    .push_back(serde_json::from_str(&l).unwrap_or(json!({"raw": l})));
                false
            }
            Err(RecvTimeoutError::Timeout) => true,
            Err(RecvTimeoutError::Disconnected) => true,
        }
    }

    /// Closes stdin and returns the exit status and every remaining line.
    pub fn finish(mut self) -> (i32, Vec<Value>) {
        drop(self.stdin.take());
        let mut rest: Vec<Value> = self.pending.drain(..).collect();
        while let Ok(l) = self.lines.recv_timeout(TIMEOUT) {
            rest.push(serde_json::from_str(&l).unwrap_or(json!({"raw": l})));
        }
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return (st.code().unwrap_or(-1), rest);
            }
            assert!(Instant::now() < deadline, "child did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the child to exit on its own (faults) and returns its status.
    pub fn wait_exit(&mut self) -> i32 {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "child did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Rpc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `{"jsonrpc":"2.0","id":id,"error":{"code","message","data"}}` as literal JSON.
pub fn error(id: Value, code: i64, message: &str, data: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message, "data": data}})
}

/// Asserts a string is an imsg timestamp like `2026-01-15T18:04:05.123Z`.
pub fn assert_iso(v: &Value) {
    let s = v.as_str().unwrap_or_else(|| panic!("not a string: {v}"));
    let b = s.as_bytes();
    assert!(
        s.len() == 24 && b[4] == b'-' && b[10] == b'T' && b[19] == b'.' && s.ends_with('Z'),
        "not an ISO timestamp: {s}"
    );
}

/// Replaces placeholder-shaped fields (ids, guids, dates) after checking their shape, so the
/// rest can be compared literally.
pub fn scrub_message(m: &mut Value) {
    assert!(m["id"].as_i64().is_some_and(|i| i > 0), "id: {m}");
    m["id"] = json!("<id>");
    let g = m["guid"].as_str().unwrap_or_else(|| panic!("guid: {m}"));
    assert!(!g.is_empty());
    m["guid"] = json!("<guid>");
    assert_iso(&m["created_at"]);
    m["created_at"] = json!("<date>");
}
