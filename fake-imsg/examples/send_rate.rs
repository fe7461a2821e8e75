//! `send` round trips per second of a `fake-imsg rpc` child, one request at a time, on the
//! family fixture world and on the same world with 20,000 more messages: the measurement of
//! the gateway bench (`benches/gateway.rs`, `send_rate`), runnable on its own so fake-imsg's
//! send path can be tuned without building the gateway.
//!
//! ```sh
//! cargo build --release -p fake-imsg --bin fake-imsg --example send_rate
//! target/release/examples/send_rate [--fake PATH]... [--runs N] [--sends N] [--world family|big]
//!     [--save DIR]
//! ```
//!
//! Each run copies the world, starts a fresh child and prints its rate; the median of the
//! runs of each world comes last. Several `--fake` binaries (say, before and after a change)
//! and the worlds take turns, run by run. `--save` keeps a copy of the worlds built.
//! `--sends 200000 --runs 1` leaves the child busy long enough to attach `perf record -p` to
//! it (its pid is printed on stderr).

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use fake_imsg::world::{InjectSpec, World};

/// Chat 1 is the family group, 2 a DM with Mom, 3 an SMS DM with Dad.
const SENDERS: [(i64, &str); 4] = [
    (1, "+15551110001"),
    (1, "sister@example.com"),
    (2, "+15551110001"),
    (3, "+15551110002"),
];

const BACKLOG: usize = 20_000;

fn family(out: &Path) -> World {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/worlds/family-group.json5");
    World::build_from_scenario_file(&fixture, out).expect("the family fixture builds")
}

/// CPU seconds (user + system, every thread) of a process so far, and its context switches.
fn usage(pid: u32) -> (f64, u64) {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| f.get(*i)?.parse::<f64>().ok())
        .sum();
    let mut switches = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let status = fs::read_to_string(task.path().join("status")).unwrap_or_default();
        switches += status
            .lines()
            .filter(|l| l.contains("ctxt_switches"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    (ticks / 100.0, switches)
}

/// Round trips per second, and the child's CPU µs and context switches per round trip.
fn send_rate(fake: &Path, db: &Path, n: usize) -> (f64, f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("chat.db");
    fs::copy(db, &copy).unwrap();
    // On the disk before the run: else the child's first checkpoint fsync writes the whole
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
    eprintln!("child pid {}", child.id());
    let mut stdin = child.stdin.take().unwrap();
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
    let pid = child.id();
    let (cpu0, sw0) = usage(pid);
    let t = Instant::now();
    for i in 0..n {
        round(1000 + i);
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    let (cpu1, sw1) = usage(pid);
    let per = |d: f64| d / n as f64;
    // EOF rather than a kill, so a wrapper (strace, perf) around the child can report.
    drop(stdin);
    let _ = child.wait();
    (rate, per(cpu1 - cpu0) * 1e6, per((sw1 - sw0) as f64))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.is_empty() {
        f64::NAN
    } else if v.len().is_multiple_of(2) {
        (v[m - 1] + v[m]) / 2.0
    } else {
        v[m]
    }
}

fn main() {
    let built = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("fake-imsg"))
        .unwrap_or_else(|| PathBuf::from("fake-imsg"));
    let mut fakes = Vec::new();
    let mut save = None;
    let (mut runs, mut sends, mut worlds) = (5usize, 3_000usize, vec!["family", "big"]);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().expect("a value after the flag");
        match a.as_str() {
            "--fake" => fakes.push(PathBuf::from(value())),
            "--runs" => runs = value().parse().expect("--runs N"),
            "--sends" => sends = value().parse().expect("--sends N"),
            "--world" => worlds = vec![if value() == "big" { "big" } else { "family" }],
            "--save" => save = Some(PathBuf::from(value())),
            other => panic!("unknown argument {other}"),
        }
    }
    if fakes.is_empty() {
        fakes.push(built);
    }
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("family.db");
    drop(family(&small));
    let big = dir.path().join("big.db");
    if worlds.contains(&"big") {
        let w = family(&big);
        for i in 0..BACKLOG {
            let (chat, from) = SENDERS[i % SENDERS.len()];
            w.inject(&InjectSpec {
                chat_id: Some(chat),
                from: from.into(),
                text: format!("backlog {i}"),
                ..Default::default()
            })
            .unwrap();
        }
    }
    if let Some(dir) = &save {
        for db in [&small, &big].into_iter().filter(|db| db.exists()) {
            fs::copy(db, dir.join(db.file_name().unwrap())).unwrap();
        }
    }
    // Every world and binary gets one run per round, so the machine's swings fall on all.
    let mut rates = vec![vec![Vec::new(); fakes.len()]; worlds.len()];
    for _ in 0..runs {
        for (name, rates) in worlds.iter().zip(&mut rates) {
            let db = if *name == "big" { &big } else { &small };
            for (fake, rates) in fakes.iter().zip(rates.iter_mut()) {
                let (r, cpu, switches) = send_rate(fake, db, sends);
                println!(
                    "{name} {}: {r:.0} round trips/s ({cpu:.0} µs CPU, {switches:.1} context switches each)",
                    fake.display()
                );
                rates.push(r);
            }
        }
    }
    let mut medians = Vec::new();
    for (name, rates) in worlds.iter().zip(rates) {
        for (fake, rates) in fakes.iter().zip(rates) {
            medians.push((name, fake, median(rates)));
        }
    }
    for (name, fake, m) in medians {
        println!("median {name} {}: {m:.0} round trips/s", fake.display());
    }
}
