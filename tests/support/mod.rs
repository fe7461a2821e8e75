//! Helpers shared by the integration tests that run `imsg-gateway run` as a child process:
//! a guard that never lets a gateway outlive its test, signals, and a graceful stop that
//! asserts the gateway exits 0 on SIGTERM, and the fake-imsg binary built beside ours.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The gateway child; killed if a test fails before stopping it, so no process outlives a test.
pub struct Gw(pub Child);

impl Drop for Gw {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `sig` (e.g. `TERM`, `KILL`) to `pid`.
pub fn signal(pid: &str, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.trim())
        .status()
        .unwrap();
    assert!(ok.success(), "kill -{sig} {pid}");
}

/// SIGTERM, then waits up to 20 s for a clean exit (status 0).
pub fn stop(mut gw: Gw) {
    let gw = &mut gw.0;
    signal(&gw.id().to_string(), "TERM");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if let Some(status) = gw.try_wait().unwrap() {
            assert!(status.success(), "gateway exited with {status}");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = gw.kill();
    panic!("the gateway did not stop on SIGTERM");
}

/// The fake-imsg binary beside ours, built first (in the same profile) so it is never stale.
#[allow(dead_code)]
pub fn fake_imsg_bin() -> PathBuf {
    let ours = assert_cmd::cargo::cargo_bin("imsg-gateway");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "-q", "-p", "fake-imsg", "--bin", "fake-imsg"]);
    if !cfg!(debug_assertions) {
        build.arg("--release");
    }
    let status = build
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo build -p fake-imsg");
    assert!(status.success(), "building fake-imsg failed");
    let bin = ours.parent().unwrap().join("fake-imsg");
    assert!(bin.is_file(), "no fake-imsg at {}", bin.display());
    bin
}
