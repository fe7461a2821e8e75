//! Inbound attachments on their way to the agent (DESIGN decision 9, reference §3.8–3.9):
//! a path is handed over only when the file is really there. When imsg runs on another Mac
//! behind an SSH wrapper (`imessage.remoteHost`, or detected from a `cliPath` script that runs
//! `ssh HOST … imsg`), the paths imsg reports are that Mac's, so each file is copied with
//! `scp` into the state dir (owner-only) first. A file that is missing or cannot be copied
//! becomes an omitted attachment with the reason, never an error.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::agent::EnvelopeAttachment;
use crate::imsg::process::ProcessGroup;

/// How long one copy may take before it is given up (and its scp killed).
pub const COPY_TIMEOUT: Duration = Duration::from_secs(60);

/// The SSH host a `cliPath` wrapper script reaches imsg on, if it is one: the first line
/// that runs `ssh` and mentions `imsg`, its first argument that is not an option.
pub fn detect_remote_host(script: &str) -> Option<String> {
    // ssh options that take a value, so the value is not mistaken for the host.
    const WITH_VALUE: &str = "BbcDEeFIiJLlmOopQRSWw";
    for line in script.lines() {
        let line = line.trim();
        if line.starts_with('#') || !line.contains("imsg") {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(at) = words
            .iter()
            .position(|w| *w == "ssh" || w.ends_with("/ssh"))
        else {
            continue;
        };
        let mut rest = words[at + 1..].iter();
        while let Some(w) = rest.next() {
            if let Some(opt) = w.strip_prefix('-') {
                // `-p 22` takes the next word; `-p22` and flag clusters (`-tt`) do not.
                if opt.len() == 1 && WITH_VALUE.contains(opt) {
                    rest.next();
                }
                continue;
            }
            let host = w.trim_matches(|c| c == '"' || c == '\'');
            let ok = !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
            return ok.then(|| host.to_string());
        }
    }
    None
}

/// The remote host for an account: the configured one, else one detected in its `cliPath`
/// script (read once, at start).
pub fn remote_host_for(configured: Option<&str>, cli_path: &str) -> Option<String> {
    if let Some(h) = configured.map(str::trim).filter(|h| !h.is_empty()) {
        return Some(h.to_string());
    }
    if cli_path == "imsg" {
        return None;
    }
    let path = crate::imsg::process::locate(cli_path)?;
    let meta = std::fs::metadata(&path).ok()?;
    // A script is small; a binary is not read.
    if meta.len() > 64 * 1024 {
        return None;
    }
    let text = std::fs::read(&path).ok()?;
    detect_remote_host(&String::from_utf8_lossy(&text))
}

fn expand_home(p: &str) -> PathBuf {
    match p.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(rest),
        None => PathBuf::from(p),
    }
}

/// A name safe to use as one path component.
fn component(s: &str) -> String {
    let c: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    if c.is_empty() || c.chars().all(|c| c == '.') {
        "_".into()
    } else {
        c
    }
}

/// Makes every handed-over attachment usable where the agent runs: a local file must exist
/// (else omitted, "missing on disk"); a remote one is copied to
/// `<state_dir>/attachments/<account>/<message>/` first (else omitted with why).
pub async fn prepare(
    atts: &mut [EnvelopeAttachment],
    remote_host: Option<&str>,
    state_dir: &Path,
    account: &str,
    message_guid: &str,
) {
    prepare_with("scp", atts, remote_host, state_dir, account, message_guid).await
}

/// [`prepare`] with another copy program (tests use a stand-in for scp).
pub async fn prepare_with(
    scp: &str,
    atts: &mut [EnvelopeAttachment],
    remote_host: Option<&str>,
    state_dir: &Path,
    account: &str,
    message_guid: &str,
) {
    for (i, a) in atts.iter_mut().enumerate() {
        let Some(path) = a.path.clone() else { continue };
        let size = a
            .size_bytes
            .map(|n| format!(", {n} bytes"))
            .unwrap_or_default();
        match remote_host {
            None => {
                let local = expand_home(&path);
                if !local.is_file() {
                    a.path = None;
                    a.omitted = Some(format!("missing on disk{size}"));
                } else {
                    a.path = Some(local.display().to_string());
                }
            }
            Some(host) => {
                let dir = state_dir
                    .join("attachments")
                    .join(component(account))
                    .join(component(message_guid));
                let name = a
                    .name
                    .clone()
                    .or_else(|| {
                        Path::new(&path)
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                    })
                    .unwrap_or_else(|| format!("attachment-{i}"));
                let dest = dir.join(format!("{i}-{}", component(&name)));
                match copy(scp, host, &path, &dir, &dest).await {
                    Ok(()) => a.path = Some(dest.display().to_string()),
                    Err(why) => {
                        tracing::warn!(
                            account,
                            guid = message_guid,
                            "attachment {path} on {host} not handed over: {why}"
                        );
                        a.path = None;
                        a.omitted = Some(format!("could not be copied from {host}: {why}{size}"));
                    }
                }
            }
        }
    }
}

async fn copy(scp: &str, host: &str, remote: &str, dir: &Path, dest: &Path) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut cmd = tokio::process::Command::new(scp);
    cmd.arg("-q")
        .arg("-B")
        .arg("-o")
        .arg("ConnectTimeout=10")
        .arg(format!("{host}:{remote}"))
        .arg(dest)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = cmd.spawn().map_err(|e| format!("cannot run scp: {e}"))?;
    let mut group = ProcessGroup::of(&child);
    let out = tokio::time::timeout(COPY_TIMEOUT, child.wait_with_output()).await;
    group.kill();
    let out = match out {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return Err(format!("scp failed: {e}")),
        Err(_) => return Err(format!("scp took longer than {} s", COPY_TIMEOUT.as_secs())),
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let err: String = err.trim().chars().take(300).collect();
        return Err(format!("scp exited with {}: {err}", out.status));
    }
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot make {} owner-only: {e}", dest.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_found_in_ssh_wrappers() {
        let h = |s: &str| detect_remote_host(s);
        assert_eq!(
            h("#!/bin/sh\nexec ssh -T mac-mini imsg \"$@\"\n").as_deref(),
            Some("mac-mini")
        );
        assert_eq!(
            h("exec ssh -p 2222 -i ~/.ssh/k me@studio.local /opt/homebrew/bin/imsg \"$@\"")
                .as_deref(),
            Some("me@studio.local")
        );
        assert_eq!(
            h("exec /usr/bin/ssh -o BatchMode=yes mini imsg rpc").as_deref(),
            Some("mini")
        );
        assert_eq!(
            h("# ssh old-host imsg\nexec imsg \"$@\""),
            None,
            "comments do not count"
        );
        assert_eq!(h("exec imsg \"$@\""), None);
        assert_eq!(h("ssh mini uptime"), None, "not an imsg line");
    }

    #[test]
    fn configured_host_wins_and_plain_imsg_is_local() {
        assert_eq!(
            remote_host_for(Some("mini"), "/nonexistent").as_deref(),
            Some("mini")
        );
        assert_eq!(remote_host_for(None, "imsg"), None);
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("imsg-remote");
        std::fs::write(&script, "#!/bin/sh\nexec ssh -T studio imsg \"$@\"\n").unwrap();
        assert_eq!(
            remote_host_for(None, script.to_str().unwrap()).as_deref(),
            Some("studio")
        );
    }

    #[test]
    fn components_are_safe() {
        assert_eq!(component("../../etc/passwd"), ".._.._etc_passwd");
        assert_eq!(component(".."), "_");
        assert_eq!(component(""), "_");
        assert_eq!(component("IMG 0001.HEIC"), "IMG_0001.HEIC");
    }

    #[tokio::test]
    async fn a_local_file_that_is_not_there_is_omitted() {
        let dir = tempfile::tempdir().unwrap();
        let here = dir.path().join("here.jpg");
        std::fs::write(&here, b"x").unwrap();
        let mut atts = vec![
            EnvelopeAttachment {
                path: Some(here.display().to_string()),
                mime_type: None,
                name: None,
                size_bytes: Some(1),
                missing: false,
                omitted: None,
            },
            EnvelopeAttachment {
                path: Some(dir.path().join("gone.jpg").display().to_string()),
                mime_type: None,
                name: None,
                size_bytes: Some(9),
                missing: false,
                omitted: None,
            },
        ];
        prepare(&mut atts, None, dir.path(), "default", "G").await;
        assert_eq!(atts[0].path.as_deref(), Some(here.to_str().unwrap()));
        assert_eq!(atts[1].path, None);
        assert_eq!(atts[1].omitted.as_deref(), Some("missing on disk, 9 bytes"));
    }

    #[tokio::test]
    async fn remote_files_are_copied_owner_only_or_omitted_with_why() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let remote = dir.path().join("remote.jpg");
        std::fs::write(&remote, b"jpeg").unwrap();
        // scp -q -B -o ConnectTimeout=10 HOST:PATH DEST, copied locally.
        let fake = dir.path().join("fake-scp");
        std::fs::write(&fake, "#!/bin/sh\nsrc=\"${5#*:}\"\n[ -f \"$src\" ] || { echo \"$src: No such file\" >&2; exit 1; }\ncp \"$src\" \"$6\"\n").unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let att = |p: &Path, name: &str| EnvelopeAttachment {
            path: Some(p.display().to_string()),
            mime_type: None,
            name: Some(name.into()),
            size_bytes: Some(4),
            missing: false,
            omitted: None,
        };
        let mut atts = vec![
            att(&remote, "remote.jpg"),
            att(&dir.path().join("nope.jpg"), "nope.jpg"),
        ];
        let state = dir.path().join("state");
        prepare_with(
            fake.to_str().unwrap(),
            &mut atts,
            Some("mini"),
            &state,
            "default",
            "G/1",
        )
        .await;
        let copied = atts[0].path.clone().expect("copied");
        assert!(
            copied.starts_with(state.join("attachments/default/G_1").to_str().unwrap()),
            "{copied}"
        );
        assert_eq!(std::fs::read(&copied).unwrap(), b"jpeg");
        let mode = std::fs::metadata(&copied).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(atts[1].path, None);
        let why = atts[1].omitted.as_deref().unwrap();
        assert!(
            why.starts_with("could not be copied from mini: scp exited with"),
            "{why}"
        );
        assert!(why.contains("No such file"), "{why}");
    }
}
