//! `imsg-gateway simulate --script` transcripts, checked as golden files in
//! `fixtures/simulations/` (`NAME.sim` is the script, `NAME.out` what it must print; run with
//! `UPDATE_GOLDEN=1` to rewrite the `.out` files after an intended change, and review the diff).
//! Each run is the real gateway against fake-imsg in process, so these are end-to-end.

use std::path::Path;
use std::process::Command;

fn simulate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(assert_cmd::cargo::cargo_bin("imsg-gateway"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("simulate")
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .output()
        .expect("imsg-gateway runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn golden(name: &str, extra: &[&str]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/simulations");
    let script = format!("fixtures/simulations/{name}.sim");
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(["--script", &script]);
    let (code, out, err) = simulate(&args);
    assert_eq!(code, 0, "{name}: exit {code}\n{err}");
    let want_path = dir.join(format!("{name}.out"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&want_path, &out).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&want_path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            want_path.display()
        )
    });
    if out != want {
        let first = out
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(out.lines().count().min(want.lines().count()));
        panic!(
            "{name}: the transcript differs from {} at line {}\n--- got:\n{out}\n--- want:\n{want}\n(UPDATE_GOLDEN=1 rewrites it after an intended change)",
            want_path.display(),
            first + 1
        );
    }
}

#[test]
fn the_readme_session() {
    golden("readme", &[]);
}

#[test]
fn a_pairing_code_expires_after_an_hour_of_wait() {
    golden("pairing-expiry", &[]);
}

#[test]
fn attachments_and_tapbacks() {
    golden("attachments", &[]);
}

#[test]
fn a_long_reply_is_one_bubble_per_chunk() {
    golden(
        "long-reply",
        &["--config", "fixtures/simulations/short-chunks.json5"],
    );
}

#[test]
fn json_transcripts_are_one_event_per_line() {
    let (code, out, err) = simulate(&["--json", "--script", "fixtures/simulations/readme.sim"]);
    assert_eq!(code, 0, "{err}");
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let kinds = |k: &str| events.iter().filter(|e| e["event"] == k).count();
    assert!(
        kinds("typed") >= 5 && kinds("reply") >= 4 && kinds("policy") >= 3 && kinds("command") >= 5,
        "{out}"
    );
    assert!(events
        .iter()
        .any(|e| e["event"] == "reply" && e["text"].as_str().unwrap().contains("Pairing code: ")));
}

#[test]
fn bad_input_is_a_clear_line_and_the_session_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("bad.sim");
    std::fs::write(
        &script,
        "/aprove ABCD\n/chat Nowhere\n/as Grandpa\n/attach /no/such/file.jpg\n/wait soon\n/why\n",
    )
    .unwrap();
    let (code, out, err) = simulate(&["--script", script.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    for want in [
        "line 1: unknown command /aprove (did you mean /approve?)",
        "no chat \"Nowhere\"",
        "nobody called \"Grandpa\" here",
        "no such file: /no/such/file.jpg",
        "line 5: not a duration: \"soon\"",
        "no message yet",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}

#[test]
fn a_world_or_config_that_cannot_be_used_is_exit_2_naming_it() {
    let (code, _, err) = simulate(&["--world", "/no/such/world.db", "--script", "/dev/null"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--world /no/such/world.db: no such file"),
        "{err}"
    );
    let (code, _, err) = simulate(&["--agent", "carrier-pigeon", "--script", "/dev/null"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("expected echo, exec:COMMAND or http:URL"),
        "{err}"
    );
    let (code, _, err) = simulate(&["--json"]);
    assert_eq!(code, 2);
    assert!(err.contains("--json goes with --script"), "{err}");
}

#[test]
fn a_copy_of_a_chat_db_continues_its_history_and_is_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chat.db");
    fake_imsg::world::World::build_from_scenario_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/worlds/family-group.json5"),
        &db,
    )
    .unwrap();
    let before = std::fs::read(&db).unwrap();
    let script = dir.path().join("s.sim");
    std::fs::write(&script, "/history 2\n@assistant still there?\n").unwrap();
    let (code, out, err) = simulate(&[
        "--world",
        db.to_str().unwrap(),
        "--script",
        script.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Dad: Who's picking up grandma?"), "{out}");
    assert!(
        out.contains("[Family] assistant: echo: @assistant still there?"),
        "{out}"
    );
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "the given chat.db was written"
    );
}
