//! The imsg commands a gateway runs outside RPC, as it sees them, and stderr without colour
//! codes when it is not a terminal.

use assert_cmd::Command;

fn fake() -> Command {
    let mut c = Command::cargo_bin("fake-imsg").unwrap();
    for k in [
        "FAKE_IMSG_PROTOCOL",
        "FAKE_IMSG_LEVEL",
        "FAKE_IMSG_FAULTS",
        "FAKE_IMSG_LOG",
        "IMSG_VERSION",
    ] {
        c.env_remove(k);
    }
    c
}

/// Diagnostics on stderr carry no ANSI colour codes when stderr is a pipe or a file.
#[test]
fn stderr_has_no_colour_when_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let out = fake()
        .args(["rpc", "--protocol", "legacy", "-v", "--db"])
        .arg(dir.path().join("absent.db"))
        .write_stdin("")
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("startup-error server"), "{err}");
    assert!(!err.contains('\u{1b}'), "ANSI escape in {err:?}");
}
