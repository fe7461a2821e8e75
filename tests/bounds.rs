//! What the outside world can grow is bounded (DESIGN decision 11), as a user meets it:
//! nothing an exec agent or an imsg wrapper starts outlives it (process groups). The two
//! limits' config keys are checked with the other config tests, in `config_errors.rs`.

use std::path::Path;
use std::time::{Duration, Instant};

use imsg_gateway::agent::{Agent, AgentError, ChatType, Envelope};
use imsg_gateway::imsg::{ImsgProcess, SpawnSpec};

/// True once `pid` no longer runs: gone (ESRCH), or a zombie waiting for a parent that is not
/// us (a container's PID 1 may never reap it; it runs nothing either way).
fn process_gone(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
    }
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after_name = stat.rsplit_once(')')?.1;
            after_name.split_whitespace().next().map(|s| s == "Z")
        })
        .unwrap_or(false)
}

async fn wait_gone(pid: i32) {
    let until = Instant::now() + Duration::from_secs(5);
    while !process_gone(pid) {
        assert!(
            Instant::now() < until,
            "process {pid} still runs: its group was not killed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads the pid a script wrote to `file`, waiting for it to appear.
/// Spawns, retrying "text file busy": a script just written can still be open for writing in
/// a child another test thread forked meanwhile (it inherited the descriptor).
async fn spawn_imsg(spec: &SpawnSpec) -> ImsgProcess {
    for _ in 0..50 {
        match ImsgProcess::spawn(spec) {
            Ok(p) => return p,
            Err(e) if e.to_string().contains("os error 26") => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("spawn failed: {e}"),
        }
    }
    panic!("the wrapper stayed busy");
}

async fn read_pid(file: &Path) -> i32 {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(text) = std::fs::read_to_string(file) {
            if let Ok(pid) = text.trim().parse() {
                return pid;
            }
        }
        assert!(Instant::now() < until, "{} never written", file.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn envelope() -> Envelope {
    Envelope {
        account: "default".into(),
        chat_type: ChatType::Direct,
        chat_id: Some(1),
        chat_guid: None,
        chat_identifier: None,
        group_name: None,
        group_members: vec![],
        sender: "+15551234567".into(),
        sender_raw: "+15551234567".into(),
        sender_name: None,
        text: "hi".into(),
        attachments: vec![],
        session_key: "main".into(),
        message_guid: "GUID-1".into(),
        message_id: 1,
        timestamp: None,
        was_mentioned: false,
        context: vec![],
        reply_to: None,
    }
}

fn sh_agent(script: String, timeout: Duration) -> Agent {
    Agent::Exec {
        command: vec!["sh".into(), "-c".into(), script],
        timeout,
        max_reply_bytes: 1_048_576,
    }
}

#[tokio::test]
async fn an_exec_agent_that_times_out_takes_its_children_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    let agent = sh_agent(
        format!("sleep 1000 & echo $! > {}; sleep 1000", pidfile.display()),
        Duration::from_millis(500),
    );
    let err = agent.reply(&envelope()).await.unwrap_err();
    assert!(matches!(err, AgentError::Timeout { .. }), "{err}");
    wait_gone(read_pid(&pidfile).await).await;
}

#[tokio::test]
async fn an_exec_agent_that_exits_leaves_nothing_running() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    // The background job lets go of the pipes, so the agent's answer is complete at its exit.
    let agent = sh_agent(
        format!(
            "sleep 1000 >/dev/null 2>&1 </dev/null & echo $! > {}; echo done",
            pidfile.display()
        ),
        Duration::from_secs(10),
    );
    let reply = agent.reply(&envelope()).await.unwrap();
    assert_eq!(reply.as_deref(), Some("done"));
    wait_gone(read_pid(&pidfile).await).await;
}

#[tokio::test]
async fn an_exec_agent_whose_child_holds_stdout_answers_at_its_exit() {
    // Without the group kill at exit, the sleeping child keeps stdout open until the timeout.
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    let agent = sh_agent(
        format!("sleep 1000 & echo $! > {}; echo done", pidfile.display()),
        Duration::from_secs(30),
    );
    let reply = agent.reply(&envelope()).await.unwrap();
    assert_eq!(reply.as_deref(), Some("done"));
    wait_gone(read_pid(&pidfile).await).await;
}

/// A `cliPath` wrapper that runs "imsg" (here a sleep) without `exec`, and starts one more
/// background process, writing that one's pid to `pidfile`.
fn wrapper(dir: &Path, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("imsg-wrapper.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

fn spec(cli_path: String) -> SpawnSpec {
    SpawnSpec {
        cli_path,
        db_path: None,
        label: "bounds".into(),
        request_timeout: Duration::from_secs(1),
    }
}

#[tokio::test]
async fn killing_imsg_kills_what_a_wrapper_started() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("imsg.pid");
    let cli = wrapper(
        dir.path(),
        &format!("sleep 1000 & echo $! > {}\nsleep 1000", pidfile.display()),
    );
    let proc_ = spawn_imsg(&spec(cli)).await;
    let pid = read_pid(&pidfile).await;
    proc_.kill().await;
    wait_gone(pid).await;
}

#[tokio::test]
async fn a_graceful_shutdown_also_kills_what_the_wrapper_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("left.pid");
    // The wrapper itself exits at stdin EOF (as imsg does); its background job would not.
    let cli = wrapper(
        dir.path(),
        &format!(
            "sleep 1000 >/dev/null 2>&1 </dev/null & echo $! > {}\ncat >/dev/null",
            pidfile.display()
        ),
    );
    let proc_ = spawn_imsg(&spec(cli)).await;
    let pid = read_pid(&pidfile).await;
    proc_.shutdown(Duration::from_secs(5)).await;
    wait_gone(pid).await;
}
