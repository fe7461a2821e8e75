//! `cargo bench -p fake-imsg --bench rpc`: throughput and latency of `fake-imsg rpc` over
//! pipes, against the ceiling of a trivial line echo (`cat`) over the same kind of pipes.
//! Prints one JSON line per figure: {"bench":"rpc","figure":..,"value":..,"unit":..}.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use fake_imsg::world::{InjectSpec, NewChat, World};

struct Pipe {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    line: String,
}

impl Pipe {
    fn spawn(cmd: &mut Command) -> Pipe {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        Pipe {
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            child,
            line: String::new(),
        }
    }

    fn rpc(db: &Path) -> Pipe {
        Pipe::spawn(
            Command::new(env!("CARGO_BIN_EXE_fake-imsg"))
                .arg("rpc")
                .arg("--db")
                .arg(db),
        )
    }

    fn write(&mut self, line: &str) {
        self.stdin.write_all(line.as_bytes()).unwrap();
        self.stdin.write_all(b"\n").unwrap();
        self.stdin.flush().unwrap();
    }

    fn read(&mut self) -> &str {
        self.line.clear();
        let n = self.stdout.read_line(&mut self.line).unwrap();
        assert!(n > 0, "child closed stdout");
        &self.line
    }

    /// Round trips per second of `make(i)` requests, one at a time.
    fn rate(&mut self, n: usize, make: impl Fn(usize) -> String, check: &str) -> f64 {
        for i in 0..n.min(50) {
            self.write(&make(i));
            let l = self.read();
            assert!(l.contains(check), "unexpected answer: {l}");
        }
        let t = Instant::now();
        for i in 0..n {
            self.write(&make(i));
            let l = self.read();
            assert!(l.contains(check), "unexpected answer: {l}");
        }
        n as f64 / t.elapsed().as_secs_f64()
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn figure(name: &str, value: f64, unit: &str) {
    println!(
        "{}",
        serde_json::json!({"bench": "rpc", "figure": name, "value": (value * 10.0).round() / 10.0, "unit": unit})
    );
}

fn spec(chat_id: Option<i64>, new_chat: Option<NewChat>, from: &str, text: &str) -> InjectSpec {
    InjectSpec {
        chat_id,
        new_chat,
        from: from.into(),
        text: text.into(),
        ..Default::default()
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chat.db");
    let world = World::create(&db).unwrap();
    for i in 0..20 {
        let handle = format!("+1555000{i:04}");
        let nc = NewChat {
            group: false,
            display_name: None,
            participants: vec![],
            service: "iMessage".into(),
        };
        world
            .inject(&spec(None, Some(nc), &handle, "hello"))
            .unwrap();
    }

    let mut echo = Pipe::spawn(&mut Command::new("cat"));
    let ceiling = echo.rate(
        20_000,
        |i| {
            format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"chats.list","params":{{"limit":20}}}}"#)
        },
        "chats.list",
    );
    figure("echo_ceiling_rt_per_s", ceiling, "round_trips/s");
    drop(echo);

    let t = Instant::now();
    let n = 2_000;
    for _ in 0..n {
        std::hint::black_box(world.chats(20, false).unwrap());
    }
    figure(
        "world_chats_direct_per_s",
        n as f64 / t.elapsed().as_secs_f64(),
        "calls/s (in-process library, no rpc)",
    );

    let mut rpc = Pipe::rpc(&db);
    let unsub = rpc.rate(
        10_000,
        |i| format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"watch.unsubscribe","params":{{"subscription":999}}}}"#),
        "\"ok\":true",
    );
    figure(
        "unsubscribe_rt_per_s",
        unsub,
        "round_trips/s (server overhead, no database)",
    );
    let chats = rpc.rate(
        5_000,
        |i| {
            format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"chats.list","params":{{"limit":20}}}}"#)
        },
        "\"chats\"",
    );
    figure("chats_list_rt_per_s", chats, "round_trips/s");
    figure(
        "chats_list_vs_echo_pct",
        100.0 * chats / ceiling,
        "percent (budget >= 30)",
    );

    // Every request a different limit, so none is answered from the unchanged-world cache.
    let uncached = rpc.rate(
        2_000,
        |i| {
            format!(
                r#"{{"jsonrpc":"2.0","id":{i},"method":"chats.list","params":{{"limit":{}}}}}"#,
                1000 + i
            )
        },
        "\"chats\"",
    );
    figure(
        "chats_list_uncached_rt_per_s",
        uncached,
        "round_trips/s (world query every time)",
    );

    let sends = rpc.rate(
        1_000,
        |i| format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"send","params":{{"chat_id":1,"text":"bench {i}"}}}}"#),
        "\"ok\":true",
    );
    figure("send_rt_per_s", sends, "round_trips/s");

    rpc.write(
        r#"{"jsonrpc":"2.0","id":"w","method":"watch.subscribe","params":{"debounce_ms":0}}"#,
    );
    assert!(rpc.read().contains("\"subscription\""));
    let mut lat = Vec::new();
    for i in 0..300 {
        let t = Instant::now();
        world
            .inject(&spec(Some(2), None, "+15550000001", &format!("lat {i}")))
            .unwrap();
        let l = rpc.read();
        assert!(l.contains("\"message\""), "expected a notification: {l}");
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(3));
    }
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    figure(
        "inject_to_notification_p50_ms",
        percentile(&lat, 0.50),
        "ms",
    );
    figure(
        "inject_to_notification_p99_ms",
        percentile(&lat, 0.99),
        "ms (budget < 20)",
    );
}
