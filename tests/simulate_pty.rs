//! The interactive `simulate` session in a real pseudo-terminal (driven by
//! `tests/support/pty_session.py`, Python's `pty`): start, type as two people, see a reply, use
//! a command with tab completion, and quit cleanly with `/quit` and with Ctrl-D.

use std::process::Command;

fn drive(how: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/pty_session.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(assert_cmd::cargo::cargo_bin("imsg-gateway"))
        .arg(how)
        .output()
        .expect("python3 runs (the conformance suite needs it too)");
    assert!(
        out.status.success(),
        "the terminal session failed ({how}):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_terminal_session_ends_with_quit() {
    drive("quit");
}

#[test]
fn a_terminal_session_ends_with_ctrl_d() {
    drive("ctrl-d");
}
