//! End to end against fake-imsg: `imsg-gateway run` drives `fake-imsg rpc` over a world
//! built with `fake_imsg::world::World`; a DM injected with `fake-imsg inject` gets its echo
//! reply in the same chat (`fake-imsg sent`), and after the child is killed a message that
//! arrived while it was down is answered exactly once. A row fake-imsg cannot read (its text
//! made invalid UTF-8 in the world file) is skipped on both protocols, the rows around it
//! answered.

mod support;
use support::{fake_imsg_bin, signal, stop, Gw};

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const WORLD: &str = r#"{
  now: "2026-01-15T18:00:00Z",
  me: "me@icloud.com",
  people: { alice: { handle: "+15551234567", name: "Alice" } },
  chats: [ { participants: ["alice"], messages: [ { from: "alice", text: "old news", at: "-1h" } ] } ],
}"#;

struct E2e {
    dir: tempfile::TempDir,
    fake: PathBuf,
    /// The wrapper used as `cliPath`.
    cli: PathBuf,
    protocol: &'static str,
}

impl E2e {
    fn new(protocol: &'static str) -> E2e {
        let dir = tempfile::tempdir().unwrap();
        let world = dir.path().join("world.db");
        fake_imsg::world::World::build_from_scenario_str(WORLD, &world).expect("world builds");
        let fake = fake_imsg_bin();
        // imsg as a wrapper that comes up a second late when restarted (per database, so
        // two accounts do not delay each other), so a test can write while it is down.
        let cli = dir.path().join("imsg");
        fs::write(
            &cli,
            format!(
                "#!/bin/sh\nm='{d}/started-'$(echo \"$@\" | cksum | cut -d' ' -f1)\nif [ -e \"$m\" ]; then sleep 1; fi\ntouch \"$m\"\nexec '{f}' \"$@\"\n",
                d = dir.path().display(),
                f = fake.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&cli, fs::Permissions::from_mode(0o755)).unwrap();
        let config = format!(
            r#"{{ imessage: {{ cliPath: "{}", dbPath: "{}", dmPolicy: "open", allowFrom: ["*"] }},
                 agent: {{ kind: "echo" }}, state: {{ dir: "{}" }} }}"#,
            cli.display(),
            world.display(),
            dir.path().join("state").display()
        );
        fs::write(dir.path().join("config.json5"), config).unwrap();
        E2e {
            dir,
            fake,
            cli,
            protocol,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn gateway(&self) -> Gw {
        Gw(Command::new(assert_cmd::cargo::cargo_bin("imsg-gateway"))
            .arg("--config")
            .arg(self.path("config.json5"))
            .args(["--log", "debug", "run"])
            .env("FAKE_IMSG_PID_FILE", self.path("fake.pid"))
            .env("FAKE_IMSG_PROTOCOL", self.protocol)
            .stdout(Stdio::null())
            .stderr(fs::File::create(self.path("gateway.log")).unwrap())
            .spawn()
            .unwrap())
    }

    /// Runs a `fake-imsg` world command on the world at `db`.
    fn fake_on(&self, db: &Path, args: &[&str]) -> Output {
        let out = Command::new(&self.fake)
            .args(args)
            .arg("--db")
            .arg(db)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "fake-imsg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn inject(&self, text: &str) -> Value {
        self.inject_into(&self.path("world.db"), text)
    }

    /// A DM from +15551234567 in chat 1 of the world at `db`.
    fn inject_into(&self, db: &Path, text: &str) -> Value {
        let out = self.fake_on(
            db,
            &[
                "inject",
                "--chat-id",
                "1",
                "--from",
                "+15551234567",
                "--text",
                text,
            ],
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Echo replies the gateway sent: (chat_id, text).
    fn replies(&self) -> Vec<(i64, String)> {
        self.sent_in(&self.path("world.db"))
            .into_iter()
            .filter(|(_, text)| text.starts_with("echo: "))
            .collect()
    }

    /// Non-empty `sent` rows of the world at `db`: (chat_id, text).
    fn sent_in(&self, db: &Path) -> Vec<(i64, String)> {
        let out = self.fake_on(db, &["sent"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|m| !m["text"].as_str().unwrap_or("").is_empty())
            .map(|m| {
                (
                    m["chat_id"].as_i64().unwrap(),
                    m["text"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    fn wait_for(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if cond() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "timed out waiting for {what}\nreplies: {:?}\ngateway log:\n{}",
            self.replies(),
            fs::read_to_string(self.path("gateway.log")).unwrap_or_default()
        );
    }

    fn log_has(&self, needle: &str) -> bool {
        fs::read_to_string(self.path("gateway.log"))
            .unwrap_or_default()
            .contains(needle)
    }
}

fn read_pid(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().filter(|s| !s.trim().is_empty())
}

#[test]
fn v1_echo_reply_in_the_same_chat_and_exactly_once_across_a_child_kill() {
    echo_and_restart("v1");
}

#[test]
fn legacy_echo_reply_in_the_same_chat_and_exactly_once_across_a_child_kill() {
    echo_and_restart("legacy");
}

fn echo_and_restart(protocol: &'static str) {
    let e = E2e::new(protocol);
    let gw = e.gateway();
    e.wait_for("the gateway to subscribe", || e.log_has("watching"));
    assert!(
        e.log_has(&format!("protocol={protocol:?}")),
        "negotiated {protocol}"
    );

    let first = e.inject("hello gateway");
    assert_eq!(first["chat_id"], 1);
    e.wait_for("the echo reply", || !e.replies().is_empty());
    assert_eq!(e.replies(), vec![(1, "echo: hello gateway".to_string())]);

    // Kill the child; a message arrives while it is down; it is answered once, after restart.
    let pid = read_pid(&e.path("fake.pid")).expect("fake-imsg wrote its pid");
    signal(&pid, "KILL");
    e.inject("sent while imsg was down");
    e.wait_for("the reply to the message sent while down", || {
        e.replies().len() >= 2
    });
    let new_pid = read_pid(&e.path("fake.pid")).unwrap();
    assert_ne!(new_pid.trim(), pid.trim(), "the child was restarted");

    // One more live message proves the new subscription works and nothing is repeated.
    e.inject("after the restart");
    e.wait_for("the third reply", || e.replies().len() >= 3);
    stop(gw);
    assert_eq!(
        e.replies(),
        vec![
            (1, "echo: hello gateway".to_string()),
            (1, "echo: sent while imsg was down".to_string()),
            (1, "echo: after the restart".to_string()),
        ],
        "history is not answered and each new message is answered exactly once"
    );
}

#[test]
fn v1_an_unreadable_row_is_skipped_and_the_rows_around_it_answered() {
    unreadable_row("v1");
}

#[test]
fn legacy_an_unreadable_row_is_skipped_and_the_rows_around_it_answered() {
    unreadable_row("legacy");
}

fn unreadable_row(protocol: &'static str) {
    let e = E2e::new(protocol);
    let gw = e.gateway();
    e.wait_for("the gateway to subscribe", || e.log_has("watching"));
    e.inject("hello gateway");
    e.wait_for("the echo reply", || !e.replies().is_empty());
    stop(gw);
    // Caught up after a restart, all in one watch batch on legacy: the batch fails whole.
    e.inject("before the bad row");
    let bad = e.inject("soon unreadable")["id"].as_i64().unwrap();
    let world = rusqlite::Connection::open(e.path("world.db")).unwrap();
    let changed = world
        .execute(
            "UPDATE message SET text = CAST(X'ff' AS TEXT) WHERE ROWID = ?1",
            [bad],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(world);
    e.inject("after the bad row");
    let gw = e.gateway();
    e.wait_for("the replies around the bad row", || e.replies().len() >= 3);
    e.wait_for("the skip to be logged", || {
        e.log_has(&format!("SKIPPING rowid {bad}"))
    });
    stop(gw);
    assert_eq!(
        e.replies(),
        vec![
            (1, "echo: hello gateway".to_string()),
            (1, "echo: before the bad row".to_string()),
            (1, "echo: after the bad row".to_string()),
        ],
        "{protocol}"
    );
    let store = imsg_gateway::state::Store::open_existing(&e.path("state"))
        .unwrap()
        .unwrap();
    let skipped = store
        .entry("default", &format!("rowid:{bad}"))
        .unwrap()
        .expect("the bad row is journaled");
    assert!(skipped.reason.unwrap().contains("unreadable"));
}

#[test]
fn two_accounts_each_run_their_own_imsg_and_answer_only_their_own_world() {
    let e = E2e::new("v1");
    let home = e.path("world.db");
    let work = e.path("work.db");
    fake_imsg::world::World::build_from_scenario_str(WORLD, &work).expect("second world");
    let before_home = e.sent_in(&home).len();
    let before_work = e.sent_in(&work).len();
    fs::write(
        e.path("config.json5"),
        format!(
            r#"{{ imessage: {{ cliPath: "{}", dmPolicy: "open", allowFrom: ["*"],
                   accounts: {{ home: {{ dbPath: "{}" }}, work: {{ dbPath: "{}", textChunkLimit: 8 }} }} }},
                 agent: {{ kind: "echo" }}, state: {{ dir: "{}" }} }}"#,
            e.cli.display(),
            home.display(),
            work.display(),
            e.path("state").display()
        ),
    )
    .unwrap();
    let gw = e.gateway();
    e.wait_for("both accounts watching", || {
        let log = fs::read_to_string(e.path("gateway.log")).unwrap_or_default();
        log.matches("watching").count() >= 2
    });
    e.inject_into(&home, "hi home");
    e.inject_into(&work, "hi work");
    e.wait_for("a reply in each world", || {
        e.sent_in(&home).len() > before_home && e.sent_in(&work).len() > before_work + 1
    });
    stop(gw);
    // Each account answered in its own world, with its own settings: work chunks at 8 chars,
    // breaking at the last whitespace inside the 8-char window "echo: hi".
    assert_eq!(
        e.sent_in(&home)[before_home..].to_vec(),
        vec![(1, "echo: hi home".to_string())]
    );
    assert_eq!(
        e.sent_in(&work)[before_work..].to_vec(),
        vec![(1, "echo:".to_string()), (1, "hi work".to_string())]
    );
    let pids = fs::read_to_string(e.path("gateway.log")).unwrap();
    assert!(pids.contains("account=home") && pids.contains("account=work"));
}
