//! Helpers shared by the integration tests that run `imsg-gateway run` as a child process,
//! the conformance harness included: a guard that never lets a gateway outlive its test,
//! signals, a stop on SIGTERM (graceful, killed after a grace period), and the gateway and
//! fake-imsg binaries.

// Every test binary includes this module and uses a part of it.
#![allow(dead_code)]

use std::fmt::Display;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The gateway child; killed if a test fails before stopping it, so no process outlives a test.
pub struct Gw(pub Child);

impl Drop for Gw {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `sig` (e.g. `TERM`, `KILL`, `0` to ask whether it exists) to `pid` with kill(1),
/// which every Linux and macOS machine has; whether it was delivered.
pub fn try_signal(pid: impl Display, sig: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string().trim())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Sends `sig` to `pid`; the test fails if it cannot be delivered.
pub fn signal(pid: impl Display, sig: &str) {
    let shown = pid.to_string();
    assert!(try_signal(pid, sig), "kill -{sig} {}", shown.trim());
}

/// Whether a process exists (kill -0).
pub fn alive(pid: impl Display) -> bool {
    try_signal(pid, "0")
}

/// SIGTERM, then up to `grace` for the child to exit; killed after that. Returns its exit
/// status, or what went wrong as text.
pub fn terminate(child: &mut Child, grace: Duration) -> Result<ExitStatus, String> {
    try_signal(child.id(), "TERM");
    let start = Instant::now();
    while start.elapsed() < grace {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("wait failed: {e}")),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(format!(
        "did not exit within {} s of SIGTERM; killed",
        grace.as_secs()
    ))
}

/// SIGTERM, then waits up to 20 s for a clean exit (status 0).
pub fn stop(mut gw: Gw) {
    match terminate(&mut gw.0, Duration::from_secs(20)) {
        Ok(status) => assert!(status.success(), "gateway exited with {status}"),
        Err(e) => panic!("the gateway did not stop on SIGTERM: {e}"),
    }
}

/// The gateway binary cargo built for this test.
pub fn gateway_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_imsg-gateway"))
}

/// The fake-imsg binary beside the gateway's, built first (same profile and target dir):
/// `cargo test` builds only fake-imsg's library for us (it is a dependency, not a binary of
/// this package), and building it here means it is never stale.
pub fn build_fake_imsg() -> Result<PathBuf, String> {
    let ours = gateway_bin();
    let bin_dir = ours
        .parent()
        .ok_or_else(|| format!("no directory for {}", ours.display()))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "-q", "-p", "fake-imsg", "--bin", "fake-imsg"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if bin_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    if let Some(target_dir) = bin_dir.parent() {
        build.arg("--target-dir").arg(target_dir);
    }
    let status = build
        .status()
        .map_err(|e| format!("cannot run cargo build -p fake-imsg: {e}"))?;
    if !status.success() {
        return Err(format!(
            "`cargo build -p fake-imsg --bin fake-imsg` failed: {status}"
        ));
    }
    let bin = bin_dir.join(format!("fake-imsg{}", std::env::consts::EXE_SUFFIX));
    if !bin.is_file() {
        return Err(format!("fake-imsg binary not found at {}", bin.display()));
    }
    Ok(bin)
}

/// [`build_fake_imsg`], failing the test if it cannot.
pub fn fake_imsg_bin() -> PathBuf {
    build_fake_imsg().unwrap_or_else(|e| panic!("{e}"))
}
