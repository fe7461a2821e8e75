//! `imsg-gateway send` as an operator uses it, against fake-imsg: one line per message sent,
//! the messages in the world's chat in order, a file after the text, an attachment-only send
//! reported as unverified, and, while a gateway runs, the send going through that gateway's
//! imsg rather than a second one.

mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fake_imsg::world::World;
use support::{fake_imsg_bin, stop, Gw};

struct Setup {
    dir: tempfile::TempDir,
    world: std::path::PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let world = dir.path().join("world.db");
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/worlds/family-group.json5");
        World::build_from_scenario_file(&fixture, &world).expect("world builds");
        let config = format!(
            r#"{{ imessage: {{ cliPath: "{}", dbPath: "{}", textChunkLimit: 12 }},
                 messages: {{ responsePrefix: "[ops]" }}, state: {{ dir: "{}" }} }}"#,
            fake_imsg_bin().display(),
            world.display(),
            dir.path().join("state").display()
        );
        fs::write(dir.path().join("config.json5"), config).unwrap();
        Setup { dir, world }
    }

    fn gateway_cmd(&self) -> Command {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("imsg-gateway"));
        c.arg("--config")
            .arg(self.dir.path().join("config.json5"))
            .env_remove("FAKE_IMSG_FAULTS")
            .env_remove("FAKE_IMSG_PROTOCOL");
        c
    }

    fn send(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.gateway_cmd().arg("send").args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Texts (or attachment names) of the world's from-me rows after `since`, in chat 1.
    fn sent(&self, since: i64) -> Vec<String> {
        World::open(&self.world)
            .unwrap()
            .sent(since)
            .unwrap()
            .into_iter()
            .filter(|r| r.chat_id == Some(1))
            .map(|r| r.text)
            .collect()
    }

    fn top(&self) -> i64 {
        World::open(&self.world).unwrap().max_rowid().unwrap()
    }
}

#[test]
fn a_long_text_is_sent_in_order_one_line_per_message() {
    let s = Setup::new();
    let before = s.top();
    let (code, out, err) = s.send(&["--to", "chat_id:1", "one two three four five"]);
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("sent 1/3 chat_id:1 text (9 chars): [ops] one"),
        "{out}"
    );
    assert_eq!(s.sent(before), ["[ops] one", "two three", "four five"]);
}

#[test]
fn a_file_goes_after_the_text_and_a_file_alone_is_unverified() {
    let s = Setup::new();
    let file = s.dir.path().join("note.txt");
    fs::write(&file, b"hello").unwrap();
    let f = file.display().to_string();
    let (code, out, err) = s.send(&["--to", "chat_id:1", "--file", &f, "see"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.lines().nth(1).unwrap().contains("file"), "{out}");
    let (code, out, err) = s.send(&["--to", "chat_id:1", "--file", &f]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("imsg cannot verify an attachment-only send"),
        "{out}"
    );
    let (code, _, err) = s.send(&["--to", "chat_id:1", "--file", "/no/such/file"]);
    assert_eq!(code, 2);
    assert!(err.contains("/no/such/file: no such file"), "{err}");
}

#[test]
fn an_unknown_chat_is_a_failure_naming_what_was_not_sent() {
    let s = Setup::new();
    let (code, _, err) = s.send(&["--to", "chat_id:999", "hello there you"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("send 1 of 2 failed"), "{err}");
    assert!(err.contains("the 1 after it was not sent"), "{err}");
}

#[test]
fn while_a_gateway_runs_the_send_goes_through_its_imsg() {
    let s = Setup::new();
    let log = fs::File::create(s.dir.path().join("gateway.log")).unwrap();
    let gw = Gw(s
        .gateway_cmd()
        .args(["--log", "debug", "run"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap());
    let start = Instant::now();
    while !fs::read_to_string(s.dir.path().join("gateway.log"))
        .unwrap_or_default()
        .contains("connected to imsg")
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the gateway did not connect"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = s.top();
    let (code, out, err) = s.send(&["--to", "chat_id:1", "via the gateway"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("sending through its imsg"), "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert_eq!(s.sent(before), ["[ops] via", "the gateway"]);
    stop(gw);
    let log = fs::read_to_string(s.dir.path().join("gateway.log")).unwrap();
    assert!(log.contains("sending a message queued by the CLI"), "{log}");
}
