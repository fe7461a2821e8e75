//! `fake-imsg tap`: a transparent stdio recorder in front of a real (or fake) `imsg rpc`.
//!
//! The conformance suite uses it as the gateway's `imessage.cliPath` (through a wrapper script)
//! so outbound assertions can read what the gateway asked imsg to do, whichever imsg runs
//! behind it. It owns the pass-through and the log format: one JSON object per line,
//! `{"dir":"in"|"out","ts_ms":<unix ms>,"ts_us":<unix µs>,"line":"<raw line>"}` (µs for
//! latency figures), where `in` is what the caller
//! wrote to the child's stdin and `out` what the child wrote to its stdout. stderr passes
//! through unrecorded. Each record is written with a single append so several taps (an old
//! child and its restarted successor) can share one log file.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;

/// Arguments of `fake-imsg tap`.
#[derive(Debug, clap::Args)]
pub struct TapArgs {
    /// JSON-lines file to append the recorded traffic to (created if absent).
    #[arg(long, value_name = "FILE")]
    pub log: PathBuf,
    /// The command to run and record, after `--` (for example `-- imsg rpc --db chat.db`).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// Which way a recorded line travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Written by the caller to the child's stdin.
    In,
    /// Written by the child to its stdout.
    Out,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// Builds one log record (without the trailing newline). Invalid UTF-8 is replaced, since
/// the log is JSON; the pass-through itself forwards the exact bytes.
pub fn record(dir: Direction, ts_ms: u64, raw: &[u8]) -> String {
    let line = String::from_utf8_lossy(strip_eol(raw));
    serde_json::json!({ "dir": dir.as_str(), "ts_ms": ts_ms, "line": line }).to_string()
}

/// [`record`] with a microsecond timestamp, also given as `ts_us`.
pub fn record_us(dir: Direction, ts_us: u64, raw: &[u8]) -> String {
    let line = String::from_utf8_lossy(strip_eol(raw));
    serde_json::json!({ "dir": dir.as_str(), "ts_ms": ts_us / 1000, "ts_us": ts_us, "line": line })
        .to_string()
}

fn strip_eol(raw: &[u8]) -> &[u8] {
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    raw.strip_suffix(b"\r").unwrap_or(raw)
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The shared, append-only log.
#[derive(Clone)]
struct Log(Arc<Mutex<File>>);

impl Log {
    fn write(&self, dir: Direction, raw: &[u8]) {
        let mut rec = record_us(dir, now_us(), raw);
        rec.push('\n');
        // One write per record: O_APPEND keeps concurrent writers' records whole.
        let mut file = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(err) = file.write_all(rec.as_bytes()).and_then(|_| file.flush()) {
            eprintln!("fake-imsg tap: cannot write the log: {err}");
        }
    }
}

/// Copies `from` to `to` line by line, recording each line; returns at EOF or a write error.
fn pump(from: impl Read, mut to: impl Write, log: &Log, dir: Direction) {
    let mut reader = BufReader::new(from);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => return,
            Ok(_) => {
                log.write(dir, &buf);
                if to.write_all(&buf).and_then(|_| to.flush()).is_err() {
                    return;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}

/// Exit code a shell would report for a child status (128 + signal when killed).
fn exit_code(status: std::process::ExitStatus) -> i32 {
    if let Some(code) = status.code() {
        return code;
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return 128 + sig;
        }
    }
    1
}

/// Runs the recorder; returns the exit code of the wrapped command.
pub fn run_cli(args: TapArgs) -> anyhow::Result<i32> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.log)
        .with_context(|| format!("cannot open tap log {}", args.log.display()))?;
    let log = Log(Arc::new(Mutex::new(file)));

    let (program, rest) = args
        .command
        .split_first()
        .context("no command given after `--`")?;
    let mut child = Command::new(program)
        .args(rest)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", program.to_string_lossy()))?;

    let child_stdin = child.stdin.take().context("child stdin")?;
    let child_stdout = child.stdout.take().context("child stdout")?;
    let mut child_stderr = child.stderr.take().context("child stderr")?;

    // Our stdin -> child's stdin. Dropping child_stdin at EOF closes the child's stdin,
    // which is how imsg learns the caller is gone. Not joined: it may stay blocked reading
    // our stdin after the child has exited, and process exit ends it.
    let in_log = log.clone();
    std::thread::spawn(move || pump(io::stdin(), child_stdin, &in_log, Direction::In));

    let out_log = log.clone();
    let out =
        std::thread::spawn(move || pump(child_stdout, io::stdout(), &out_log, Direction::Out));
    let err = std::thread::spawn(move || {
        let _ = io::copy(&mut child_stderr, &mut io::stderr());
    });

    let status = child
        .wait()
        .with_context(|| format!("waiting for {}", program.to_string_lossy()))?;
    // Everything the child wrote before exiting reaches the caller and the log first.
    let _ = out.join();
    let _ = err.join();
    Ok(exit_code(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_is_one_json_object_with_the_raw_line() {
        let rec = record(Direction::Out, 42, b"{\"id\":1}\r\n");
        let v: serde_json::Value = serde_json::from_str(&rec).unwrap();
        assert_eq!(v["dir"], "out");
        assert_eq!(v["ts_ms"], 42);
        assert_eq!(v["line"], "{\"id\":1}");
        assert!(!rec.contains('\n'));
    }

    #[test]
    fn records_carry_microseconds_beside_milliseconds() {
        let rec = record_us(Direction::In, 1_234_567, b"x\n");
        assert_eq!(
            rec,
            r#"{"dir":"in","line":"x","ts_ms":1234,"ts_us":1234567}"#
        );
    }

    #[test]
    fn invalid_utf8_is_replaced_in_the_log() {
        let rec = record(Direction::In, 1, b"a\xffb\n");
        let v: serde_json::Value = serde_json::from_str(&rec).unwrap();
        assert_eq!(v["line"], "a\u{fffd}b");
    }
}
