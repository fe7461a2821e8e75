//! The invariants ARCHITECTURE.md states as absences, checked on the source: what `imsg/`
//! does not reach into, and the I/O the pure decision modules do not do. A change that
//! breaks one fails here with the file and the line.

use std::fs;
use std::path::Path;

fn sources(rel: &str) -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let p = root.join(rel);
    let mut out = Vec::new();
    if p.is_dir() {
        for e in fs::read_dir(&p).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "rs") {
                out.push((
                    path.display().to_string(),
                    fs::read_to_string(&path).unwrap(),
                ));
            }
        }
    } else {
        out.push((p.display().to_string(), fs::read_to_string(&p).unwrap()));
    }
    out
}

/// Lines of code (not comments) that mention any of `needles`.
fn offending(files: &[(String, String)], needles: &[&str]) -> Vec<String> {
    let mut bad = Vec::new();
    for (path, text) in files {
        for (i, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            if needles.iter().any(|n| code.contains(n)) {
                bad.push(format!("{path}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    bad
}

#[test]
fn imsg_talks_to_imsg_only_never_to_the_store_the_gateway_or_agents() {
    let bad = offending(
        &sources("imsg"),
        &[
            "crate::state",
            "crate::gateway",
            "crate::agent",
            "crate::access",
            "rusqlite",
        ],
    );
    assert!(
        bad.is_empty(),
        "imsg/ must not import these:\n{}",
        bad.join("\n")
    );
}

#[test]
fn decision_modules_do_no_io_and_read_no_clock() {
    let mut files = sources("access");
    files.extend(sources("routing.rs"));
    files.extend(sources("inbound.rs"));
    for f in ["chunk.rs", "handle.rs", "target.rs"] {
        files.extend(sources(&format!("outbound/{f}")));
    }
    let bad = offending(
        &files,
        &[
            "tokio",
            "std::fs",
            "std::env",
            "std::process",
            "SystemTime",
            "Instant::now",
            "Utc::now",
        ],
    );
    assert!(
        bad.is_empty(),
        "pure decision code must not do I/O or read clocks:\n{}",
        bad.join("\n")
    );
}

#[test]
fn fake_imsg_library_never_ends_the_process_itself() {
    // Its server also runs inside the simulator: a fault that "exits" must end only that
    // server. The binary hands the library `std::process::exit` instead.
    fn walk(dir: &Path, out: &mut Vec<(String, String)>) {
        for e in fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|x| x == "rs")
                && path.file_name().is_some_and(|n| n != "main.rs")
            {
                out.push((
                    path.display().to_string(),
                    fs::read_to_string(&path).unwrap(),
                ));
            }
        }
    }
    let mut files = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fake-imsg/src"),
        &mut files,
    );
    assert!(files.len() > 10, "fake-imsg's sources were found");
    let bad = offending(&files, &["process::exit", "process::abort"]);
    assert!(
        bad.is_empty(),
        "fake-imsg's library must not end the process:\n{}",
        bad.join("\n")
    );
}
