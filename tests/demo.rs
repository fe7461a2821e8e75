//! The README's first command, `bash fixtures/demo.sh`, run as a newcomer runs it: it builds
//! both programs, starts the gateway against fake-imsg and prints the reply. Run here with
//! an absolute `CARGO_TARGET_DIR` (the common way to share one build between checkouts),
//! which the script once turned into a path under the checkout and then waited for a reply
//! that never came.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn the_demo_prints_the_reply_with_an_absolute_target_dir() {
    // This test's own binaries live in `<target>/debug`; the demo builds into the same place,
    // so its `cargo build` has little or nothing to do.
    let target: PathBuf = PathBuf::from(env!("CARGO_BIN_EXE_imsg-gateway"))
        .parent()
        .and_then(|debug| debug.parent())
        .expect("the binary is in <target>/debug")
        .to_path_buf();
    assert!(target.is_absolute(), "{}", target.display());
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg("fixtures/demo.sh")
        .arg("Hi from the demo test")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CARGO_TARGET_DIR", &target)
        .env("TMPDIR", tmp.path())
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("chat 1 (+15551234567): echo: Hi from the demo test"),
        "no reply line in the demo's output:\n{stdout}\n{stderr}"
    );
}
