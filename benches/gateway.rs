//! `cargo bench --bench gateway`: the gateway's figures against fake-imsg, release binaries,
//! one JSON line per figure: {"bench":"gateway","figure":..,"value":..,"unit":..}.
//!
//! - fake-imsg's own `send` round trips/s on the family fixture and on the same world with
//!   20,000 messages more (the ceiling any gateway can reach on that world);
//! - catch-up throughput: 20,000 messages waiting, the gateway answering all of them, with
//!   its CPU time per message, peak RSS, idle RSS afterwards and cold start to subscribed;
//! - gateway-added latency: from a `message` notification leaving imsg to the `send` of its
//!   reply, from `fake-imsg tap`'s µs timestamps, echo agent, one message at a time; the
//!   gateway's state on the disk and the world on tmpfs where there is one (it stands in for
//!   Messages.app's chat.db, whose writes are not the gateway's), then again with the world
//!   on the disk too (`_world_on_disk`).
//!
//! `GATEWAY_BENCH_PARTS=catchup,latency` (any of `send`, `catchup`, `latency`) runs only
//! those parts, for profiling one of them; the catch-up's share of the send ceiling needs
//! `send` too. `GATEWAY_BENCH_LOG=debug` runs the gateway at that log level and keeps its
//! last log (and the latency run's tap) in the temporary directory. `GATEWAY_BENCH_CACHE=DIR` builds the 20,000-message
//! world once, in DIR, and reuses it (interleaved runs of two binaries start in seconds).

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use fake_imsg::world::{InjectSpec, World};
use serde_json::Value;

const BACKLOG: usize = 20_000;
const LATENCY_MESSAGES: usize = 1_000;

fn figure(name: &str, value: f64, unit: &str) {
    println!(
        "{}",
        serde_json::json!({"bench": "gateway", "figure": name,
                           "value": (value * 100.0).round() / 100.0, "unit": unit})
    );
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn gateway_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_imsg-gateway"))
}

/// fake-imsg, built in the same profile as this bench.
fn fake_imsg_bin() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut c = Command::new(cargo);
    c.args(["build", "-q", "-p", "fake-imsg", "--bin", "fake-imsg"]);
    if !cfg!(debug_assertions) {
        c.arg("--release");
    }
    assert!(c.current_dir(root()).status().unwrap().success());
    let bin = gateway_bin().parent().unwrap().join("fake-imsg");
    assert!(bin.is_file(), "no fake-imsg at {}", bin.display());
    bin
}

fn family(out: &Path) -> World {
    World::build_from_scenario_file(&root().join("fixtures/worlds/family-group.json5"), out)
        .expect("the family fixture builds")
}

/// Chat 1 is the family group, 2 a DM with Mom, 3 an SMS DM with Dad.
const SENDERS: [(i64, &str); 4] = [
    (1, "+15551110001"),
    (1, "sister@example.com"),
    (2, "+15551110001"),
    (3, "+15551110002"),
];

fn inject(w: &World, i: usize, text: &str) {
    let (chat, from) = SENDERS[i % SENDERS.len()];
    w.inject(&InjectSpec {
        chat_id: Some(chat),
        from: from.into(),
        text: text.into(),
        ..Default::default()
    })
    .unwrap();
}

/// Runs of each `send` measurement; the figure is their median.
const SEND_RUNS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `send` round trips per second on a copy of `db`, one at a time.
fn send_rate(fake: &Path, db: &Path, n: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("chat.db");
    fs::copy(db, &copy).unwrap();
    // On the disk before the run: else fake-imsg's first checkpoint fsync writes the whole
    // fresh copy out, a cost that grows with the world and is not the send's.
    fs::File::open(&copy).unwrap().sync_all().unwrap();
    let mut child = Command::new(fake)
        .args(["rpc", "--db"])
        .arg(&copy)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin: ChildStdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let mut round = |i: usize| {
        writeln!(
            stdin,
            r#"{{"jsonrpc":"2.0","id":{i},"method":"send","params":{{"chat_id":2,"text":"bench {i}"}}}}"#
        )
        .unwrap();
        stdin.flush().unwrap();
        line.clear();
        stdout.read_line(&mut line).unwrap();
        assert!(line.contains("\"ok\":true"), "send failed: {line}");
    };
    for i in 0..50 {
        round(i);
    }
    let t = Instant::now();
    for i in 0..n {
        round(1000 + i);
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    rate
}

/// `/proc/<pid>/status` field in kB.
fn proc_kb(pid: u32, field: &str) -> f64 {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The direct children of a process (the gateway's imsg child, here).
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for task in fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let list = fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(
            list.split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok()),
        );
    }
    out
}

/// utime + stime of a process, in seconds (clock ticks of 1/100 s on Linux).
fn cpu_seconds(pid: u32) -> f64 {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

struct Gateway {
    child: Child,
    log: PathBuf,
}

impl Gateway {
    fn start(dir: &Path, cli_path: &Path, db: &Path, envs: &[(&str, &str)]) -> Gateway {
        let config = format!(
            r#"{{ imessage: {{ cliPath: "{}", dbPath: "{}", dmPolicy: "open", allowFrom: ["*"],
                            groups: {{ "*": {{ requireMention: false }} }} }},
                 agent: {{ kind: "echo" }}, state: {{ dir: "{}" }} }}"#,
            cli_path.display(),
            db.display(),
            dir.join("state").display()
        );
        fs::write(dir.join("config.json5"), config).unwrap();
        let log = dir.join("gateway.log");
        let child = Command::new(gateway_bin())
            .arg("--config")
            .arg(dir.join("config.json5"))
            .arg("--log")
            .arg(std::env::var("GATEWAY_BENCH_LOG").unwrap_or_else(|_| "info".into()))
            .arg("run")
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Gateway { child, log }
    }

    fn wait_watching(&self, limit: Duration) -> Duration {
        let t = Instant::now();
        loop {
            let log = fs::read_to_string(&self.log).unwrap_or_default();
            if log.contains(" watching") {
                return t.elapsed();
            }
            assert!(
                t.elapsed() < limit,
                "the gateway did not start watching:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        if std::env::var_os("GATEWAY_BENCH_LOG").is_some() {
            // The run's log outlives its temporary directory, for reading after a profile.
            let keep = std::env::temp_dir().join("imsg-gateway-bench.log");
            let _ = fs::copy(&self.log, &keep);
            eprintln!("gateway log: {}", keep.display());
        }
    }
}

/// Counts the world's sent rows as they land, reading only the rows new since its last look:
/// re-reading every reply so far on each poll cost the measured processes a share of the
/// machine that grew with the run (20,000 rows every 100 ms in the catch-up).
struct SentRows {
    after: i64,
    count: usize,
}

impl SentRows {
    fn after(rowid: i64) -> SentRows {
        SentRows {
            after: rowid,
            count: 0,
        }
    }

    fn count(&mut self, world: &World) -> usize {
        let new = world.sent(self.after).unwrap();
        if let Some(last) = new.last() {
            self.after = last.id;
        }
        self.count += new.len();
        self.count
    }
}

fn main() {
    let parts =
        std::env::var("GATEWAY_BENCH_PARTS").unwrap_or_else(|_| "send,catchup,latency".into());
    let part = |name: &str| parts.split(',').any(|p| p.trim() == name);
    let fake = fake_imsg_bin();
    let dir = tempfile::tempdir().unwrap();

    // fake-imsg's send ceiling, small world and big world.
    let small = dir.path().join("family.db");
    family(&small);
    let big = dir.path().join("big.db");
    let base = big_world(&big, part("send") || part("catchup"));
    let mut big_rate = None;
    if part("send") {
        // The median of interleaved runs each: single runs of the same tree on this shared
        // machine differ by up to 2x, and interleaving gives both worlds the same noise.
        let (mut smalls, mut bigs) = (Vec::new(), Vec::new());
        for _ in 0..SEND_RUNS {
            smalls.push(send_rate(&fake, &small, 3_000));
            bigs.push(send_rate(&fake, &big, 3_000));
        }
        let (small_rate, rate) = (median(smalls), median(bigs));
        big_rate = Some(rate);
        figure(
            "fake_imsg_send_rt_per_s_family",
            small_rate,
            "round_trips/s, median of 5 runs (budget >= 5000)",
        );
        figure(
            "fake_imsg_send_rt_per_s_family_plus_20000",
            rate,
            "round_trips/s, median of 5 runs (budget >= 5000)",
        );
        figure(
            "fake_imsg_send_cost_growth_pct",
            100.0 * (small_rate / rate - 1.0),
            "percent slower on the big world (budget <= 20)",
        );
    }
    if part("catchup") {
        catch_up(&fake, &big, base, big_rate);
    }
    if part("latency") {
        let lat = tempfile::tempdir().unwrap();
        disk_fsync(lat.path());
        // The budget's figure: fake-imsg's world (Messages.app's chat.db, in production
        // written by another process) on tmpfs, so its checkpoints' fsyncs do not queue the
        // gateway's on the disk. The same run with the world on the disk is printed after it.
        match shm_dir() {
            Some(shm) => {
                latency(&fake, lat.path(), shm.path(), "");
                let disk = tempfile::tempdir().unwrap();
                latency(&fake, lat.path(), disk.path(), "_world_on_disk");
            }
            None => latency(&fake, lat.path(), lat.path(), ""),
        }
    }
}

/// The family world with the backlog after it (when `backlog`), at `out`; returns the
/// family world's last rowid. `GATEWAY_BENCH_CACHE=DIR` keeps the world in DIR and copies it
/// from there on later runs: a minute of writes saved per run when alternating binaries.
fn big_world(out: &Path, backlog: bool) -> i64 {
    let cache = std::env::var_os("GATEWAY_BENCH_CACHE").map(PathBuf::from);
    if let Some(dir) = cache.as_ref().filter(|_| backlog) {
        if let Ok(base) = fs::read_to_string(dir.join("base")) {
            fs::copy(dir.join("big.db"), out).unwrap();
            return base
                .trim()
                .parse()
                .expect("a rowid in the cache's base file");
        }
    }
    let w = family(out);
    let base = w.max_rowid().unwrap();
    // A minute of writes on this machine: only for the parts that read the big world.
    if backlog {
        for i in 0..BACKLOG {
            inject(&w, i, &format!("backlog {i}"));
        }
    }
    // Closed first: the last connection folds the WAL into the file that is copied.
    drop(w);
    if let Some(dir) = cache.filter(|_| backlog) {
        fs::create_dir_all(&dir).unwrap();
        fs::copy(out, dir.join("big.db")).unwrap();
        fs::write(dir.join("base"), base.to_string()).unwrap();
    }
    base
}

/// Attaches `GATEWAY_BENCH_PROFILE`, when set, to the gateway `pid`: e.g.
/// `perf record -g -o /tmp/gw.perf -p` (the pid is appended).
fn profile(pid: u32) {
    if let Ok(cmd) = std::env::var("GATEWAY_BENCH_PROFILE") {
        let mut parts = cmd.split_whitespace();
        let prog = parts.next().unwrap();
        let _ = Command::new(prog)
            .args(parts)
            .arg(pid.to_string())
            .stderr(Stdio::null())
            .spawn();
    }
}

/// 20,000 messages waiting after the cursor, answered from a cold start.
fn catch_up(fake: &Path, big: &Path, base: i64, big_rate: Option<f64>) {
    // Catch-up: 20,000 messages waiting after the cursor.
    let run = tempfile::tempdir().unwrap();
    {
        let store = imsg_gateway::state::Store::open(&run.path().join("state")).unwrap();
        store.reset_cursor("default", base).unwrap();
    }
    let world = World::open(big).unwrap();
    let before = world.max_rowid().unwrap();
    let t0 = Instant::now();
    let gw = Gateway::start(run.path(), fake, big, &[]);
    let pid = gw.child.id();
    profile(pid);
    let mut peak = 0.0f64;
    let mut sent = SentRows::after(before);
    while sent.count(&world) < BACKLOG {
        peak = peak.max(proc_kb(pid, "VmHWM:"));
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "catch-up took over 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid);
    // fake-imsg serves every read and send of the run: its share says whether it, not the
    // gateway, is what the catch-up waits on.
    let imsg_cpu: f64 = children(pid).into_iter().map(cpu_seconds).sum();
    peak = peak.max(proc_kb(pid, "VmHWM:"));
    std::thread::sleep(Duration::from_secs(2));
    let idle = proc_kb(pid, "VmRSS:");
    gw.stop();
    let rate = BACKLOG as f64 / took;
    figure(
        "catchup_msgs_per_s",
        rate,
        "messages/s, from start to the last reply",
    );
    if let Some(big_rate) = big_rate {
        figure(
            "catchup_vs_fake_imsg_send_pct",
            100.0 * rate / big_rate,
            "percent of fake-imsg's send round trips/s on the same world (budget >= 70)",
        );
    }
    figure(
        "gateway_cpu_us_per_message",
        cpu * 1e6 / BACKLOG as f64,
        "µs CPU (user+sys) per answered message (budget <= 100)",
    );
    figure(
        "fake_imsg_cpu_us_per_message",
        imsg_cpu * 1e6 / BACKLOG as f64,
        "µs CPU (user+sys) fake-imsg spent per answered message in the same run",
    );
    figure(
        "gateway_peak_rss_mb",
        peak / 1024.0,
        "MB VmHWM during the catch-up (budget <= 40)",
    );
    figure(
        "gateway_idle_rss_mb",
        idle / 1024.0,
        "MB VmRSS, idle after it",
    );
}

/// The disk's own fsync time (8 KiB written, then fsync, 500 times), p50 and p99: a reply is
/// sent only once its plan is durable, so one fsync is on every reply's path and its tail
/// is a floor under the gateway's.
fn disk_fsync(dir: &Path) {
    use std::os::unix::fs::FileExt;
    let f = fs::File::create(dir.join("fsync.bin")).unwrap();
    let block = [7u8; 8192];
    let mut took: Vec<f64> = (0..500u64)
        .map(|i| {
            f.write_all_at(&block, (i % 64) * 8192).unwrap();
            let t = Instant::now();
            f.sync_all().unwrap();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    took.sort_by(|a, b| a.partial_cmp(b).unwrap());
    figure(
        "disk_fsync_p50_ms",
        took[250],
        "ms, this disk, 8 KiB + fsync",
    );
    figure(
        "disk_fsync_p99_ms",
        took[495],
        "ms: one fsync is on every reply's path (its plan is durable before the send)",
    );
}

/// A directory on tmpfs (`/dev/shm`), when this machine has one.
fn shm_dir() -> Option<tempfile::TempDir> {
    tempfile::tempdir_in("/dev/shm").ok()
}

/// Latency, one message at a time, through the tap, watch debounce 0: the gateway and its
/// state in `dir`, the world and the tap's log in `world_dir`; figures named with `suffix`.
fn latency(fake: &Path, dir: &Path, world_dir: &Path, suffix: &str) {
    let lat = tempfile::tempdir_in(dir).unwrap();
    let wdir = tempfile::tempdir_in(world_dir).unwrap();
    let db = wdir.path().join("chat.db");
    let world = family(&db);
    let tap = wdir.path().join("tap.jsonl");
    let wrapper = lat.path().join("imsg");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec '{}' tap --log '{}' -- '{}' \"$@\"\n",
            fake.display(),
            tap.display(),
            fake.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    let faults = lat.path().join("faults.json5");
    fs::write(&faults, "{ default_debounce_ms: 0 }").unwrap();
    let gw = Gateway::start(
        lat.path(),
        &wrapper,
        &db,
        &[("FAKE_IMSG_FAULTS", faults.to_str().unwrap())],
    );
    let cold = gw.wait_watching(Duration::from_secs(60));
    profile(gw.child.id());
    figure(
        &format!("gateway_cold_start_ms{suffix}"),
        cold.as_secs_f64() * 1000.0,
        "ms from spawn to subscribed (family world, fresh state, through the tap)",
    );
    let mut sent = SentRows::after(world.max_rowid().unwrap());
    for i in 0..LATENCY_MESSAGES {
        inject(&world, i, &format!("lat {i}"));
        let t = Instant::now();
        while sent.count(&world) <= i {
            assert!(t.elapsed() < Duration::from_secs(10), "no reply to lat {i}");
            // The figure comes from the tap's timestamps, not from this loop: polling the world
            // more often would only take CPU from the processes being measured.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    gw.stop();
    if std::env::var_os("GATEWAY_BENCH_LOG").is_some() {
        // The tap's lines, for reading which replies were slow and what ran meanwhile.
        let keep = std::env::temp_dir().join(format!("imsg-gateway-bench-tap{suffix}.jsonl"));
        let _ = fs::copy(&tap, &keep);
        eprintln!("latency tap: {}", keep.display());
    }
    let mut noted = std::collections::HashMap::new();
    let mut lats = Vec::new();
    for line in fs::read_to_string(&tap).unwrap().lines() {
        let rec: Value = serde_json::from_str(line).unwrap();
        let Ok(msg) = serde_json::from_str::<Value>(rec["line"].as_str().unwrap_or("")) else {
            continue;
        };
        let ts = rec["ts_us"].as_f64().unwrap_or(0.0);
        match (rec["dir"].as_str(), msg["method"].as_str()) {
            (Some("out"), Some("message")) => {
                if let Some(t) = msg["params"]["message"]["text"].as_str() {
                    noted.entry(t.to_string()).or_insert(ts);
                }
            }
            (Some("in"), Some("send")) => {
                if let Some(t) = msg["params"]["text"]
                    .as_str()
                    .and_then(|t| t.strip_prefix("echo: "))
                {
                    if let Some(n) = noted.get(t) {
                        lats.push((ts - n) / 1000.0);
                    }
                }
            }
            _ => {}
        }
    }
    assert!(
        lats.len() >= LATENCY_MESSAGES,
        "matched {} of {LATENCY_MESSAGES}",
        lats.len()
    );
    lats.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| lats[((lats.len() as f64 - 1.0) * p).round() as usize];
    figure(
        &format!("added_latency_p50_ms{suffix}"),
        pct(0.50),
        "ms, notification out of imsg to the reply's send",
    );
    figure(
        &format!("added_latency_p99_ms{suffix}"),
        pct(0.99),
        if suffix.is_empty() {
            "ms (budget <= 2 on an idle 2-core machine)"
        } else {
            "ms, the world on the state's disk: fake-imsg's checkpoints share it"
        },
    );
    figure(&format!("added_latency_p999_ms{suffix}"), pct(0.999), "ms");
    figure(&format!("added_latency_max_ms{suffix}"), pct(1.0), "ms");
    let over = lats.iter().filter(|l| **l > 2.0).count();
    figure(
        &format!("added_latency_over_2ms{suffix}"),
        over as f64,
        "messages",
    );
}
