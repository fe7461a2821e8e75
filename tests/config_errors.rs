//! Config loading as a user meets it: the example configs in `fixtures/configs/` load, bad
//! configs fail with an error naming the key path and the bad value, and `resolved_json`
//! spells out every key and loads back to the same config.

use std::path::{Path, PathBuf};

use imsg_gateway::config::{
    AgentConfig, ChunkMode, Config, ConfigError, DmPolicy, GroupPolicy, Service,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/configs")
        .join(name)
}

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_json5_str(text, "test.json5")
}

fn error(text: &str) -> String {
    match load(text) {
        Ok(c) => panic!("expected an error for {text}, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn minimal_fixture_gets_every_default() {
    let c = Config::load(&fixture("minimal.json5")).unwrap();
    assert_eq!(c.accounts.len(), 1);
    let a = &c.accounts[0];
    assert_eq!(a.id, "default");
    assert!(a.enabled);
    assert_eq!(a.cli_path, "imsg");
    assert_eq!(a.db_path, None);
    assert_eq!(a.service, Service::Auto);
    assert_eq!(a.region, "US");
    assert_eq!(a.dm_policy, DmPolicy::Pairing);
    assert_eq!(a.group_policy, GroupPolicy::Open);
    assert!(!a.include_attachments);
    assert_eq!(a.media_max_mb, 16);
    assert_eq!(a.text_chunk_limit, 4000);
    assert_eq!(a.chunk_mode, ChunkMode::Length);
    assert_eq!(c.agent, AgentConfig::Echo);
    assert_eq!(c.agent_max_concurrency, 8);
    assert_eq!(
        c.state_dir,
        PathBuf::from("/tmp/imsg-gateway-example/state")
    );
    // Decision 8: groups need a mention by default, and there are no patterns.
    assert!(
        c.warnings.iter().any(|w| w.contains("mentionPatterns")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn full_fixture_sets_every_key() {
    let c = Config::load(&fixture("full.json5")).unwrap();
    let a = &c.accounts[0];
    assert_eq!(a.cli_path, "/usr/local/bin/imsg");
    let db = a.db_path.as_ref().unwrap();
    assert!(
        db.is_absolute() && db.ends_with("Library/Messages/chat.db"),
        "{db:?}"
    );
    assert!(!db.to_string_lossy().contains('~'));
    assert_eq!(a.dm_policy, DmPolicy::Allowlist);
    assert_eq!(
        a.allow_from,
        ["+15555550123", "user@example.com", "chat_id:123"]
    );
    assert_eq!(a.group_policy, GroupPolicy::Allowlist);
    assert_eq!(a.history_limit, 20);
    assert_eq!(a.remote_host.as_deref(), Some("me@mac-mini.local"));
    assert_eq!(a.groups["123"].require_mention, Some(false));
    assert_eq!(a.groups["*"].require_mention, Some(true));
    assert!(a.include_attachments);
    assert_eq!(a.mention_patterns.sources(), ["@assistant", "\\bclawd\\b"]);
    assert_eq!(a.response_prefix.as_deref(), Some("[bot]"));
    assert_eq!(
        c.agent,
        AgentConfig::Exec {
            command: vec!["/usr/local/bin/my-agent".into(), "--json".into()],
            timeout_ms: 60000,
            max_reply_bytes: 1_048_576,
        }
    );
    assert!(c.state_dir.is_absolute() && c.state_dir.ends_with(".imsg-gateway/state"));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn multi_account_fixture_overrides_key_by_key() {
    let c = Config::load(&fixture("multi-account.json5")).unwrap();
    let ids: Vec<_> = c.accounts.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["home", "work"]);
    let (home, work) = (&c.accounts[0], &c.accounts[1]);
    assert_eq!(home.name.as_deref(), Some("Home Mac"));
    // Inherited from the top level, not replaced by schema defaults (reference quirk §7.2).
    assert_eq!(home.group_policy, GroupPolicy::Disabled);
    assert_eq!(home.region, "GB");
    assert_eq!(home.media_max_mb, 8);
    assert_eq!(home.dm_policy, DmPolicy::Pairing);
    assert_eq!(work.group_policy, GroupPolicy::Open);
    assert_eq!(work.dm_policy, DmPolicy::Open);
    assert_eq!(work.text_chunk_limit, 1500);
    assert_eq!(work.chunk_mode, ChunkMode::Newline);
    assert_eq!(work.region, "GB");
    assert_eq!(
        c.agent,
        AgentConfig::Http {
            url: "http://127.0.0.1:8080/reply".into(),
            timeout_ms: 30000,
            max_reply_bytes: 1_048_576,
        }
    );
}

#[test]
fn resolved_json_has_every_key_and_loads_back_the_same() {
    for name in ["minimal.json5", "full.json5", "multi-account.json5"] {
        let c = Config::load(&fixture(name)).unwrap();
        let json = c.resolved_json();
        for a in &c.accounts {
            let obj = json["imessage"]["accounts"][&a.id].as_object().unwrap();
            for key in [
                "name",
                "enabled",
                "cliPath",
                "dbPath",
                "service",
                "region",
                "dmPolicy",
                "allowFrom",
                "groupPolicy",
                "groupAllowFrom",
                "groups",
                "includeAttachments",
                "mediaMaxMb",
                "textChunkLimit",
                "chunkMode",
            ] {
                assert!(obj.contains_key(key), "{name}: {key} missing in {obj:?}");
            }
        }
        assert!(json["agent"]["maxConcurrency"].is_u64());
        assert!(json["state"]["dir"].is_string());
        let again = load(&json.to_string()).unwrap();
        assert_eq!(again.accounts, c.accounts, "{name}");
        assert_eq!(again.agent, c.agent, "{name}");
        assert_eq!(again.state_dir, c.state_dir, "{name}");
    }
}

#[test]
fn bad_values_name_the_key_path_and_the_value() {
    assert_eq!(
        error(r#"{imessage: {textChunkLimit: "big"}}"#),
        r#"test.json5: imessage.textChunkLimit: expected a positive integer, got "big""#
    );
    assert!(error("{imessage: {textChunkLimit: 0}}")
        .contains("imessage.textChunkLimit: expected a positive integer, got 0"));
    assert!(error("{imessage: {mediaMaxMb: -3}}")
        .contains("imessage.mediaMaxMb: expected a positive integer, got -3"));
    assert!(error("{imessage: {mediaMaxMb: 1.5}}").contains("imessage.mediaMaxMb"));
    let e = error(r#"{imessage: {dmPolicy: "opne"}}"#);
    assert!(
        e.contains(r#"imessage.dmPolicy: expected one of "pairing", "allowlist", "open", "disabled", got "opne""#),
        "{e}"
    );
    assert!(error("{imessage: {enabled: \"yes\"}}")
        .contains("imessage.enabled: expected true or false, got \"yes\""));
    assert!(error("{imessage: {service: \"iMessage\"}}").contains("imessage.service"));
    assert!(error("{imessage: {region: \"Narnia\"}}").contains("imessage.region"));
    assert!(error("{imessage: {allowFrom: \"+1555\"}}")
        .contains("imessage.allowFrom: expected an array of strings"));
    assert!(error("{imessage: {allowFrom: [\"+1555\", true]}}").contains("imessage.allowFrom[1]"));
    assert!(error("{imessage: {allowFrom: [\"chat_id:abc\"]}}").contains("imessage.allowFrom[0]"));
    assert!(error("{imessage: {groups: {general: {}}}}").contains("imessage.groups.general"));
    assert!(error("{imessage: {groups: {\"12\": {requireMention: 1}}}}")
        .contains("imessage.groups.12.requireMention"));
    assert!(error("{imessage: {chunkMode: \"paragraph\"}}").contains("imessage.chunkMode"));
    assert!(error("{routing: {groupChat: {mentionPatterns: [1]}}}")
        .contains("routing.groupChat.mentionPatterns[0]"));
    assert!(error("{messages: {responsePrefix: 5}}").contains("messages.responsePrefix"));
    assert!(error("{state: {dir: 5}}").contains("state.dir: expected a string, got 5"));
    assert!(error("{agent: {maxConcurrency: 0}}").contains("agent.maxConcurrency"));
    assert!(error("{agent: {kind: \"exec\"}}").contains("agent.command: required"));
    assert!(error("{agent: {kind: \"http\", url: \"ftp://x\"}}").contains("agent.url"));
    assert!(error("{agent: {kind: \"magic\"}}").contains("agent.kind"));
    assert!(
        error("{imessage: {accounts: {work: {textChunkLimit: \"big\"}}}}")
            .contains("imessage.accounts.work.textChunkLimit: expected a positive integer")
    );
}

#[test]
fn unknown_keys_are_errors_with_a_suggestion() {
    assert_eq!(
        error("{imessage: {dmPolcy: \"open\"}}"),
        "test.json5: unknown key imessage.dmPolcy (did you mean dmPolicy?)"
    );
    assert!(error("{imesage: {}}").contains("unknown key imesage (did you mean imessage?)"));
    assert!(error("{channels: {imessage: {}}}").contains("unknown key channels"));
    assert!(error("{imessage: {accounts: {a: {accounts: {}}}}}")
        .contains("unknown key imessage.accounts.a.accounts"));
    assert!(error("{imessage: {name: \"x\"}}").contains("unknown key imessage.name"));
    assert!(error("{imessage: {groups: {\"*\": {tools: {}}}}}")
        .contains("unknown key imessage.groups.*.tools"));
    assert!(error("{agent: {comand: []}}").contains("did you mean command?"));
}

#[test]
fn several_problems_are_all_reported() {
    let e = error("{imessage: {dmPolcy: 1, textChunkLimit: \"big\"}, agent: {kind: \"x\"}}");
    assert!(e.contains("3 problems"), "{e}");
    assert!(
        e.contains("imessage.dmPolcy")
            && e.contains("imessage.textChunkLimit")
            && e.contains("agent.kind")
    );
}

#[test]
fn open_dm_policy_requires_a_star_per_account() {
    assert_eq!(
        error("{imessage: {dmPolicy: \"open\"}}"),
        r#"test.json5: imessage.dmPolicy: "open" requires imessage.allowFrom to include "*""#
    );
    assert!(load("{imessage: {dmPolicy: \"open\", allowFrom: [\"*\"]}}").is_ok());
    let e = error(
        "{imessage: {accounts: {ok: {dmPolicy: \"open\", allowFrom: [\"*\"]}, bad: {dmPolicy: \"open\", allowFrom: [\"+1555\"]}}}}",
    );
    assert!(
        e.contains(r#"imessage.accounts.bad.dmPolicy: "open" requires imessage.accounts.bad.allowFrom to include "*""#),
        "{e}"
    );
    assert!(!e.contains("accounts.ok"), "{e}");
    // An account that overrides allowFrom loses the inherited star.
    let e = error(
        "{imessage: {dmPolicy: \"open\", allowFrom: [\"*\"], accounts: {w: {allowFrom: [\"+1555\"]}}}}",
    );
    assert!(e.contains("imessage.accounts.w.allowFrom"), "{e}");
}

#[test]
fn cli_path_must_be_a_safe_executable() {
    for bad in [
        "imsg; rm -rf /",
        "imsg && x",
        "$(evil)",
        "a|b",
        "-imsg",
        "imsg rpc",
        "a\"b",
    ] {
        let e = error(&format!(
            "{{imessage: {{cliPath: {}}}}}",
            serde_json::json!(bad)
        ));
        assert!(e.contains("imessage.cliPath"), "{bad}: {e}");
    }
    for good in [
        "imsg",
        "/opt/imsg/bin/imsg",
        "./wrapper.sh",
        "imsg-0.14",
        "C:\\imsg\\imsg.exe",
    ] {
        let c = load(&format!(
            "{{imessage: {{cliPath: {}}}}}",
            serde_json::json!(good)
        ))
        .unwrap();
        assert_eq!(c.accounts[0].cli_path, good);
    }
    let c = load("{imessage: {cliPath: \"~/bin/imsg\"}}").unwrap();
    assert!(!c.accounts[0].cli_path.starts_with('~'));
    assert!(c.accounts[0].cli_path.ends_with("/bin/imsg"));
}

#[test]
fn syntax_errors_and_missing_files_are_clear() {
    let e = error("{imessage: {cliPath: \"imsg\",,}}");
    assert!(e.starts_with("test.json5: invalid JSON5"), "{e}");
    let e = Config::load(Path::new("/nonexistent/imsg-gateway.json5")).unwrap_err();
    assert!(
        e.to_string().contains("/nonexistent/imsg-gateway.json5"),
        "{e}"
    );
    assert!(error("[]").contains("the config: expected an object"));
}

#[test]
fn warnings_for_mentions_that_cannot_be_detected() {
    let c = load("{imessage: {groups: {\"7\": {requireMention: true}}}}").unwrap();
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("\"7\"") && w.contains("mentionPatterns")),
        "{:?}",
        c.warnings
    );
    let c = load("{imessage: {groups: {\"*\": {requireMention: false}}}}").unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let c = load("{imessage: {groupPolicy: \"disabled\"}}").unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let c = load("{routing: {groupChat: {mentionPatterns: [\"@bot\"]}}}").unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn relative_db_path_is_made_absolute() {
    let c = load("{imessage: {dbPath: \"worlds/chat.db\"}, state: {dir: \"st\"}}").unwrap();
    let db = c.accounts[0].db_path.clone().unwrap();
    assert!(db.is_absolute() && db.ends_with("worlds/chat.db"), "{db:?}");
    assert!(c.state_dir.is_absolute() && c.state_dir.ends_with("st"));
}

#[test]
fn top_level_enabled_false_disables_every_account() {
    let c = load("{imessage: {enabled: false, accounts: {a: {enabled: true}, b: {}}}}").unwrap();
    assert!(c.accounts.iter().all(|a| !a.enabled));
    let c = load("{imessage: {accounts: {a: {enabled: false}, b: {}}}}").unwrap();
    assert_eq!(
        c.accounts.iter().map(|a| a.enabled).collect::<Vec<_>>(),
        [false, true]
    );
}

#[test]
fn default_path_honours_the_environment() {
    // Only read here; no other test in this binary touches the variable.
    let p = Config::default_path();
    match std::env::var_os("IMSG_GATEWAY_CONFIG") {
        Some(v) if !v.is_empty() => assert_eq!(p, PathBuf::from(v)),
        _ => assert!(p.ends_with(".imsg-gateway/config.json5")),
    }
}

/// `{a: {b: <value>}}` for the key path `a.b`.
fn at(path: &str, value: &str) -> String {
    path.split('.').rev().fold(value.to_string(), |inner, key| {
        format!("{{{key}: {inner}}}")
    })
}

/// Every key that takes a number, at the top level and in an account.
const NUMBER_KEYS: &[&str] = &[
    "imessage.textChunkLimit",
    "imessage.mediaMaxMb",
    "agent.timeoutMs",
    "agent.maxConcurrency",
    "imessage.accounts.work.textChunkLimit",
    "imessage.accounts.work.mediaMaxMb",
];

#[test]
fn non_finite_numbers_are_errors_not_defaults() {
    // serde_json has no NaN or infinity: they used to become null, i.e. the default.
    for key in NUMBER_KEYS {
        for value in [
            "NaN",
            "Infinity",
            "-Infinity",
            "+Infinity",
            "1e309",
            "-1e309",
        ] {
            assert_eq!(
                error(&at(key, value)),
                format!("test.json5: {key}: {value} is not a finite number")
            );
        }
    }
    assert_eq!(
        error("{imessage: {allowFrom: [\"+15550001111\", NaN]}}"),
        "test.json5: imessage.allowFrom[1]: NaN is not a finite number"
    );
    assert_eq!(
        error("{imessage: {enabled: Infinity}}"),
        "test.json5: imessage.enabled: Infinity is not a finite number"
    );
    // Where the number sits in the file does not matter (json5 reports it by line and column).
    assert_eq!(
        error("// config\r\n{\n  agent: {\n\ttimeoutMs:   1e400,\n  },\n}\n"),
        "test.json5: agent.timeoutMs: 1e400 is not a finite number"
    );
}

#[test]
fn numbers_out_of_range_are_errors_naming_the_key() {
    for key in NUMBER_KEYS {
        for value in ["-1", "0", "-0", "1.5", "-2.5", "0.0001", "-Infinity"] {
            let e = error(&at(key, value));
            assert!(e.starts_with(&format!("test.json5: {key}: ")), "{e}");
        }
        // Integers and floats are judged by one bound (1e10 was refused, 10000000000 kept).
        for (value, shown) in [
            ("4294967296", "4294967296"),
            ("10000000000", "10000000000"),
            ("1e10", "10000000000.0"),
            ("18446744073709551615", "18446744073709551615"),
            ("18446744073709551616", "1.8446744073709552e+19"),
            ("2305843009213693952", "2305843009213693952"),
            ("0x100000000", "4294967296"),
        ] {
            assert_eq!(
                error(&at(key, value)),
                format!(
                    "test.json5: {key}: expected a positive integer of at most 4294967295, got {shown}"
                ),
                "{value}"
            );
        }
        assert_eq!(
            error(&at(key, "-7")),
            format!("test.json5: {key}: expected a positive integer, got -7")
        );
        assert_eq!(
            error(&at(key, "2.5")),
            format!("test.json5: {key}: expected a positive integer, got 2.5")
        );
    }
    let c = load(
        "{imessage: {textChunkLimit: 4294967295, mediaMaxMb: 4e3}, agent: {maxConcurrency: 0x10, timeoutMs: +1}}",
    )
    .unwrap();
    assert_eq!(c.accounts[0].text_chunk_limit, 4_294_967_295);
    assert_eq!(c.accounts[0].media_max_mb, 4000);
    assert_eq!(c.agent_max_concurrency, 16);
}

#[test]
fn duplicate_keys_are_errors_naming_the_key_path() {
    assert_eq!(
        error(r#"{imessage: {dmPolicy: "open", dmPolicy: "pairing"}}"#),
        "test.json5: duplicate key imessage.dmPolicy"
    );
    // However the key is spelled.
    assert_eq!(
        error(r#"{agent: {kind: "echo"}, 'agent': {}}"#),
        "test.json5: duplicate key agent"
    );
    assert_eq!(
        error(r#"{imessage: {groups: {"12": {}, '\u0031\u0032': {requireMention: true}}}}"#),
        "test.json5: duplicate key imessage.groups.12"
    );
    assert_eq!(
        error("{imessage: {accounts: {work: {region: \"GB\", region: \"US\"}}}}"),
        "test.json5: duplicate key imessage.accounts.work.region"
    );
    // Listed with the other problems; keys in strings, comments and sibling objects are not
    // duplicates.
    let e = error(
        "{imessage: {textChunkLimit: 1, /* textChunkLimit: 2 */ dmPolicy: 'a, dmPolicy: b', textChunkLimit: 3},\n agent: {timeoutMs: 1}, state: {dir: 'x'}, routing: {groupChat: {}}, state: {dir: 'y'}}",
    );
    assert_eq!(
        e,
        "test.json5: 3 problems:\n  - duplicate key imessage.textChunkLimit\n  - duplicate key state\n  - imessage.dmPolicy: expected one of \"pairing\", \"allowlist\", \"open\", \"disabled\", got \"a, dmPolicy: b\""
    );
    assert!(
        load("{imessage: {accounts: {a: {region: 'GB'}, b: {region: 'GB'}}, region: 'US'}}")
            .is_ok()
    );
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    // Runs on a test thread (2 MiB of stack): the parse must refuse before recursing.
    for (open, close) in [("{a:", "}"), ("[", "]"), ("{a:[", "]}")] {
        let deep = format!("{}1{}", open.repeat(50_000), close.repeat(50_000));
        assert_eq!(
            error(&deep),
            "test.json5: config nests deeper than 64 levels"
        );
    }
    // Unterminated, too: the depth is refused on the way in.
    assert_eq!(
        error(&"[".repeat(50_000)),
        "test.json5: config nests deeper than 64 levels"
    );
    // 64 levels are fine as far as the parse goes (the walk then names the unknown key).
    let deep_ok = format!("{{x: {}{}}}", "[".repeat(63), "]".repeat(63));
    assert_eq!(
        error(&deep_ok),
        "test.json5: unknown key x (known keys: imessage, routing, messages, agent, state)"
    );
}

#[test]
fn config_files_over_1_mib_are_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json5");
    // Valid JSON5 of exactly the limit loads; one byte more does not.
    let padded = |size: usize| format!("{{}}{}", " ".repeat(size - 2));
    std::fs::write(&path, padded(1024 * 1024)).unwrap();
    assert!(Config::load(&path).is_ok());
    std::fs::write(&path, padded(1024 * 1024 + 1)).unwrap();
    assert_eq!(
        Config::load(&path).unwrap_err().to_string(),
        format!(
            "{}: config file is too large: 1048577 bytes (the limit is 1 MiB)",
            path.display()
        )
    );
    // A 10 GiB (sparse) file: only the first MiB is read, so this is quick.
    let huge = std::fs::File::create(&path).unwrap();
    huge.set_len(10 << 30).unwrap();
    drop(huge);
    assert_eq!(
        Config::load(&path).unwrap_err().to_string(),
        format!(
            "{}: config file is too large: 10737418240 bytes (the limit is 1 MiB)",
            path.display()
        )
    );
    // Reading in bounded pieces keeps the old message for a file that is not UTF-8.
    std::fs::write(&path, b"{\xff}").unwrap();
    assert_eq!(
        Config::load(&path).unwrap_err().to_string(),
        format!(
            "{}: cannot read config: stream did not contain valid UTF-8",
            path.display()
        )
    );
}

#[test]
fn max_chunks_per_reply_defaults_to_20_and_is_per_account() {
    let c = load("{}").unwrap();
    assert_eq!(c.accounts[0].max_chunks_per_reply, 20);
    let json = c.resolved_json();
    assert_eq!(
        json["imessage"]["accounts"]["default"]["maxChunksPerReply"],
        20
    );

    let c =
        load("{imessage: {maxChunksPerReply: 5, accounts: {a: {}, b: {maxChunksPerReply: 50}}}}")
            .unwrap();
    assert_eq!(c.accounts[0].max_chunks_per_reply, 5);
    assert_eq!(c.accounts[1].max_chunks_per_reply, 50);
    let again = load(&c.resolved_json().to_string()).unwrap();
    assert_eq!(again.accounts, c.accounts);
}

#[test]
fn max_reply_bytes_defaults_to_1_mib_and_is_shown_resolved() {
    let c = load(r#"{agent: {kind: "exec", command: ["my-agent"]}}"#).unwrap();
    assert_eq!(
        c.agent,
        AgentConfig::Exec {
            command: vec!["my-agent".into()],
            timeout_ms: 60_000,
            max_reply_bytes: 1_048_576,
        }
    );
    assert_eq!(c.resolved_json()["agent"]["maxReplyBytes"], 1_048_576);

    let c = load(r#"{agent: {kind: "http", url: "http://127.0.0.1:1/", maxReplyBytes: 4096}}"#)
        .unwrap();
    assert!(
        matches!(
            c.agent,
            AgentConfig::Http {
                max_reply_bytes: 4096,
                ..
            }
        ),
        "{:?}",
        c.agent
    );
    let again = load(&c.resolved_json().to_string()).unwrap();
    assert_eq!(again.agent, c.agent);

    let c = load("{agent: {maxReplyBytes: 10}}").unwrap();
    assert!(
        c.warnings
            .iter()
            .any(|w| w.starts_with("agent.maxReplyBytes is ignored")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn the_new_limits_must_be_positive_integers() {
    assert!(error("{imessage: {maxChunksPerReply: 0}}")
        .contains("imessage.maxChunksPerReply: expected a positive integer, got 0"));
    assert!(
        error("{imessage: {accounts: {work: {maxChunksPerReply: \"many\"}}}}").contains(
            "imessage.accounts.work.maxChunksPerReply: expected a positive integer, got \"many\""
        )
    );
    assert!(
        error(r#"{agent: {kind: "exec", command: ["a"], maxReplyBytes: -1}}"#)
            .contains("agent.maxReplyBytes: expected a positive integer, got -1")
    );
    assert!(error("{agent: {maxReplyByte: 1}}").contains("did you mean maxReplyBytes?"));
}

#[test]
fn the_full_fixture_sets_both_limits() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/configs/full.json5");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("maxChunksPerReply:") && text.contains("maxReplyBytes:"));
    Config::load(&path).unwrap();
}
