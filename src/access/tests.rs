//! The decision table (reference §3.5), the group gates in order (§3.6, §3.7) and DESIGN
//! decisions 7, 8 and 13, on plain data.

use super::*;
use crate::config::GroupConfig;
use proptest::prelude::*;

fn account() -> AccountConfig {
    AccountConfig {
        mention_patterns: MentionPatterns::compile(&["@clawd".to_string()]).unwrap(),
        ..AccountConfig::default()
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn dm(sender: &str) -> InboundMessage {
    InboundMessage {
        rowid: 1,
        guid: "g1".into(),
        chat_id: Some(77),
        chat_guid: Some(format!("iMessage;-;{sender}")),
        chat_identifier: Some(sender.to_string()),
        sender: sender.into(),
        text: "hello".into(),
        ..Default::default()
    }
}

fn group(chat_id: i64, sender: &str, text: &str) -> InboundMessage {
    InboundMessage {
        rowid: 2,
        guid: "g2".into(),
        chat_id: Some(chat_id),
        chat_guid: Some(format!("iMessage;+;chat{chat_id}")),
        is_group: true,
        sender: sender.into(),
        text: text.into(),
        ..Default::default()
    }
}

fn decide_with(a: &AccountConfig, m: &InboundMessage, approved: bool) -> Decision {
    decide(&Policy::new(a), m, approved)
}

fn kind(d: &Decision) -> Option<SkipKind> {
    match d {
        Decision::Drop(s) | Decision::Context(s) => Some(s.kind),
        _ => None,
    }
}

const ADMIT_DM: Decision = Decision::Admit {
    was_mentioned: true,
};

#[test]
fn the_dm_table() {
    let alice = "+15550001111";
    // (policy, allowFrom, approved, expected)
    let rows: Vec<(DmPolicy, Vec<&str>, bool, Decision)> = vec![
        (
            DmPolicy::Disabled,
            vec!["*"],
            true,
            Decision::Drop(Skip {
                kind: SkipKind::DmDisabled,
                text: String::new(),
            }),
        ),
        (
            DmPolicy::Disabled,
            vec![],
            false,
            Decision::Drop(Skip {
                kind: SkipKind::DmDisabled,
                text: String::new(),
            }),
        ),
        (DmPolicy::Open, vec!["*"], false, ADMIT_DM),
        (DmPolicy::Allowlist, vec![alice], false, ADMIT_DM),
        (DmPolicy::Allowlist, vec!["*"], false, ADMIT_DM),
        (
            DmPolicy::Allowlist,
            vec![],
            false,
            Decision::Drop(Skip {
                kind: SkipKind::DmNotAllowed,
                text: String::new(),
            }),
        ),
        (
            DmPolicy::Allowlist,
            vec!["+15550002222"],
            false,
            Decision::Drop(Skip {
                kind: SkipKind::DmNotAllowed,
                text: String::new(),
            }),
        ),
        (DmPolicy::Allowlist, vec![], true, ADMIT_DM),
        (DmPolicy::Pairing, vec![alice], false, ADMIT_DM),
        (DmPolicy::Pairing, vec!["chat_id:77"], false, ADMIT_DM),
        (DmPolicy::Pairing, vec![], true, ADMIT_DM),
        (
            DmPolicy::Pairing,
            vec![],
            false,
            Decision::Pair {
                sender: alice.into(),
            },
        ),
        (
            DmPolicy::Pairing,
            vec!["+15550002222"],
            false,
            Decision::Pair {
                sender: alice.into(),
            },
        ),
    ];
    for (policy, allow, approved, want) in rows {
        let a = AccountConfig {
            dm_policy: policy,
            allow_from: strings(&allow),
            ..account()
        };
        let got = decide_with(&a, &dm(alice), approved);
        match (&got, &want) {
            (Decision::Drop(g), Decision::Drop(w)) => {
                assert_eq!(g.kind, w.kind, "{policy:?} {allow:?} {approved}")
            }
            _ => assert_eq!(got, want, "{policy:?} {allow:?} {approved}"),
        }
    }
}

#[test]
fn pairing_normalises_the_sender_id() {
    let a = account();
    assert_eq!(
        decide_with(&a, &dm("(555) 000-1111"), false),
        Decision::Pair {
            sender: "+15550001111".into()
        }
    );
    assert_eq!(
        decide_with(&a, &dm("Alice@Example.com"), false),
        Decision::Pair {
            sender: "alice@example.com".into()
        }
    );
}

#[test]
fn drop_reasons_name_the_setting_that_changes_them() {
    let a = AccountConfig {
        dm_policy: DmPolicy::Allowlist,
        ..account()
    };
    let Decision::Drop(s) = decide_with(&a, &dm("+15550001111"), false) else {
        panic!()
    };
    assert!(s.text.contains("imessage.allowFrom"), "{}", s.text);
    assert!(s.text.contains("+15550001111"), "{}", s.text);

    let a = AccountConfig {
        id: "work".into(),
        dm_policy: DmPolicy::Disabled,
        ..account()
    };
    let Decision::Drop(s) = decide_with(&a, &dm("+15550001111"), false) else {
        panic!()
    };
    assert!(
        s.text.contains("imessage.accounts.work.dmPolicy"),
        "{}",
        s.text
    );
}

#[test]
fn a_pairing_approval_admits_dms_only() {
    let a = AccountConfig {
        group_policy: GroupPolicy::Allowlist,
        group_allow_from: strings(&["+15550009999"]),
        ..account()
    };
    let d = decide_with(&a, &group(12, "+15550001111", "@clawd hi"), true);
    assert_eq!(kind(&d), Some(SkipKind::GroupSenderNotAllowed));
    assert_eq!(decide_with(&a, &dm("+15550001111"), true), ADMIT_DM);
}

#[test]
fn dm_policy_is_never_consulted_for_groups() {
    let a = AccountConfig {
        dm_policy: DmPolicy::Disabled,
        ..account()
    };
    assert_eq!(
        decide_with(&a, &group(12, "+15550001111", "@clawd hi"), false),
        Decision::Admit {
            was_mentioned: true
        }
    );
}

#[test]
fn group_gates_in_order() {
    let m = group(12, "+15550001111", "@clawd hi");
    // 1. disabled wins over everything.
    let a = AccountConfig {
        group_policy: GroupPolicy::Disabled,
        group_allow_from: strings(&["*"]),
        groups: [(
            "*".to_string(),
            GroupConfig {
                require_mention: Some(false),
            },
        )]
        .into(),
        ..account()
    };
    assert_eq!(
        kind(&decide_with(&a, &m, false)),
        Some(SkipKind::GroupDisabled)
    );
    // 2. allowlist with an empty list drops all.
    let a = AccountConfig {
        group_policy: GroupPolicy::Allowlist,
        ..account()
    };
    assert_eq!(
        kind(&decide_with(&a, &m, false)),
        Some(SkipKind::GroupAllowlistEmpty)
    );
    // ... a handle entry allows that person in any group, a chat_id entry everyone there.
    for (entries, sender, chat, admitted) in [
        (vec!["+15550001111"], "+15550001111", 12, true),
        (vec!["+15550001111"], "+15550001111", 99, true),
        (vec!["+15550001111"], "+15550002222", 12, false),
        (vec!["chat_id:12"], "+15550002222", 12, true),
        (vec!["chat_id:12"], "+15550002222", 13, false),
        (vec!["chat_id:101"], "+15550001111", 202, false),
    ] {
        let a = AccountConfig {
            group_policy: GroupPolicy::Allowlist,
            group_allow_from: strings(&entries),
            ..account()
        };
        let d = decide_with(&a, &group(chat, sender, "@clawd hi"), false);
        assert_eq!(
            matches!(d, Decision::Admit { .. }),
            admitted,
            "{entries:?} {sender} {chat}: {d:?}"
        );
        if !admitted {
            assert_eq!(kind(&d), Some(SkipKind::GroupSenderNotAllowed));
        }
    }
    // ... and an unset groupAllowFrom is allowFrom, an explicit [] admits no one.
    let from_config = |text: &str| {
        let mut a = crate::config::Config::from_json5_str(text, "test")
            .unwrap()
            .accounts
            .remove(0);
        a.mention_patterns = account().mention_patterns;
        a
    };
    let unset =
        from_config(r#"{imessage: {groupPolicy: "allowlist", allowFrom: ["+15550001111"]}}"#);
    assert!(matches!(
        decide_with(&unset, &m, false),
        Decision::Admit { .. }
    ));
    let empty = from_config(
        r#"{imessage: {groupPolicy: "allowlist", allowFrom: ["+15550001111"], groupAllowFrom: []}}"#,
    );
    assert_eq!(
        kind(&decide_with(&empty, &m, false)),
        Some(SkipKind::GroupAllowlistEmpty)
    );
    // 3. a non-empty groups map without "*" is a chat allowlist under every policy.
    for policy in [GroupPolicy::Open, GroupPolicy::Allowlist] {
        let a = AccountConfig {
            group_policy: policy,
            group_allow_from: strings(&["*"]),
            groups: [(
                "99".to_string(),
                GroupConfig {
                    require_mention: Some(false),
                },
            )]
            .into(),
            ..account()
        };
        assert_eq!(
            kind(&decide_with(&a, &m, false)),
            Some(SkipKind::GroupNotListed),
            "{policy:?}"
        );
        assert!(matches!(
            decide_with(&a, &group(99, "+1", "no mention needed"), false),
            Decision::Admit {
                was_mentioned: false
            }
        ));
    }
    // 4. then the mention gate.
    let d = decide_with(&account(), &group(12, "+15550001111", "hello group"), false);
    assert_eq!(kind(&d), Some(SkipKind::NoMention));
    assert!(
        matches!(d, Decision::Context(_)),
        "kept as context, not dropped"
    );
}

#[test]
fn require_mention_resolution() {
    let groups = |entries: &[(&str, Option<bool>)]| -> BTreeMap<String, GroupConfig> {
        entries
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    GroupConfig {
                        require_mention: *v,
                    },
                )
            })
            .collect()
    };
    let plain = |g: BTreeMap<String, GroupConfig>, chat: i64| {
        let a = AccountConfig {
            groups: g,
            ..account()
        };
        decide_with(&a, &group(chat, "+15550001111", "hello"), false)
    };
    // Default: required.
    assert_eq!(kind(&plain(groups(&[]), 5)), Some(SkipKind::NoMention));
    // "*" decides for chats without their own entry.
    assert!(matches!(
        plain(groups(&[("*", Some(false))]), 5),
        Decision::Admit {
            was_mentioned: false
        }
    ));
    // A chat's own entry wins over "*".
    assert_eq!(
        kind(&plain(groups(&[("*", Some(false)), ("5", Some(true))]), 5)),
        Some(SkipKind::NoMention)
    );
    assert!(matches!(
        plain(groups(&[("*", Some(true)), ("5", Some(false))]), 5),
        Decision::Admit { .. }
    ));
    // An entry without requireMention falls through to "*", then true.
    assert!(matches!(
        plain(groups(&[("*", Some(false)), ("5", None)]), 5),
        Decision::Admit { .. }
    ));
    assert_eq!(
        kind(&plain(groups(&[("5", None)]), 5)),
        Some(SkipKind::NoMention)
    );
}

#[test]
fn mentions_are_case_and_invisible_character_blind() {
    let a = account();
    for text in [
        "@clawd hi",
        "@CLAWD hi",
        "hey @Clawd",
        "@cl\u{200B}awd hi",
        "@\u{200F}clawd",
    ] {
        assert_eq!(
            decide_with(&a, &group(12, "+1", text), false),
            Decision::Admit {
                was_mentioned: true
            },
            "{text:?}"
        );
    }
    assert_eq!(
        kind(&decide_with(&a, &group(12, "+1", "clawd hi"), false)),
        Some(SkipKind::NoMention)
    );
}

#[test]
fn no_patterns_means_not_answered_unlike_the_reference() {
    let a = AccountConfig {
        mention_patterns: MentionPatterns::default(),
        ..AccountConfig::default()
    };
    let d = decide_with(&a, &group(777, "+1", "hello group"), false);
    assert_eq!(kind(&d), Some(SkipKind::NoMentionPatterns));
    let Decision::Context(s) = d else { panic!() };
    assert!(s.text.contains("mentionPatterns is empty"), "{}", s.text);
    assert!(
        s.text
            .contains("imessage.groups.\"777\".requireMention=false"),
        "{}",
        s.text
    );
    // With mentions not required, it is answered.
    let a = AccountConfig {
        groups: [(
            "*".to_string(),
            GroupConfig {
                require_mention: Some(false),
            },
        )]
        .into(),
        ..a
    };
    assert!(matches!(
        decide_with(&a, &group(777, "+1", "hello group"), false),
        Decision::Admit { .. }
    ));
}

#[test]
fn a_chat_listed_in_groups_is_a_group_even_when_imsg_says_dm() {
    let a = AccountConfig {
        groups: [(
            "2".to_string(),
            GroupConfig {
                require_mention: Some(false),
            },
        )]
        .into(),
        ..account()
    };
    let mut m = dm("+15550001111");
    m.chat_id = Some(2);
    let p = Policy::new(&a);
    assert!(p.is_group(&m));
    assert_eq!(
        decide(&p, &m, false),
        Decision::Admit {
            was_mentioned: false
        }
    );
    // "*" alone does not make a DM a group.
    let a = AccountConfig {
        groups: [(
            "*".to_string(),
            GroupConfig {
                require_mention: Some(false),
            },
        )]
        .into(),
        ..account()
    };
    assert!(!Policy::new(&a).is_group(&m));
}

#[test]
fn the_reference_monitor_vectors() {
    // §6.1, with this gateway's decisions where they differ.
    let base = AccountConfig {
        dm_policy: DmPolicy::Open,
        allow_from: strings(&["*"]),
        groups: [(
            "*".to_string(),
            GroupConfig {
                require_mention: Some(true),
            },
        )]
        .into(),
        ..account()
    };
    let no_mention = group(99, "+15550001111", "hello group");
    assert!(!matches!(
        decide_with(&base, &no_mention, false),
        Decision::Admit { .. }
    ));
    let off = AccountConfig {
        groups: [(
            "*".to_string(),
            GroupConfig {
                require_mention: Some(false),
            },
        )]
        .into(),
        ..base.clone()
    };
    assert!(matches!(
        decide_with(&off, &group(123, "+1", "hello group"), false),
        Decision::Admit { .. }
    ));
    let listed = AccountConfig {
        groups: [(
            "99".to_string(),
            GroupConfig {
                require_mention: Some(false),
            },
        )]
        .into(),
        ..base.clone()
    };
    assert_eq!(
        kind(&decide_with(
            &listed,
            &group(123, "+1", "@clawd hello"),
            false
        )),
        Some(SkipKind::GroupNotListed)
    );
    let pairing = AccountConfig {
        dm_policy: DmPolicy::Pairing,
        allow_from: vec![],
        ..base.clone()
    };
    assert_eq!(
        decide_with(&pairing, &dm("+15550001111"), false),
        Decision::Pair {
            sender: "+15550001111".into()
        }
    );
    assert!(matches!(
        decide_with(&base, &group(42, "+15550002222", "@clawd ping"), false),
        Decision::Admit {
            was_mentioned: true
        }
    ));
    let allow = AccountConfig {
        group_policy: GroupPolicy::Allowlist,
        group_allow_from: strings(&["chat_id:101"]),
        ..base.clone()
    };
    assert!(!matches!(
        decide_with(&allow, &group(202, "+1", "@clawd hi"), false),
        Decision::Admit { .. }
    ));
    let disabled = AccountConfig {
        group_policy: GroupPolicy::Disabled,
        ..base
    };
    assert_eq!(
        kind(&decide_with(
            &disabled,
            &group(303, "+1", "@clawd hi"),
            false
        )),
        Some(SkipKind::GroupDisabled)
    );
}

#[test]
fn skip_log_says_once_a_minute_with_a_count() {
    let mut l = SkipLog::new(60_000);
    assert_eq!(l.should_log("12", SkipKind::NoMention, 0), Some(0));
    for t in 1..=10 {
        assert_eq!(l.should_log("12", SkipKind::NoMention, t * 1000), None);
    }
    assert_eq!(
        l.should_log("13", SkipKind::NoMention, 11_000),
        Some(0),
        "another chat"
    );
    assert_eq!(
        l.should_log("12", SkipKind::GroupNotListed, 11_000),
        Some(0),
        "another reason"
    );
    assert_eq!(l.should_log("12", SkipKind::NoMention, 59_999), None);
    assert_eq!(l.should_log("12", SkipKind::NoMention, 60_000), Some(11));
    assert_eq!(l.should_log("12", SkipKind::NoMention, 60_001), None);
}

proptest! {
    /// `disabled` DMs are dropped whatever else is configured; `open` admits everyone.
    #[test]
    fn disabled_and_open_do_not_depend_on_lists(
        entries in proptest::collection::vec("[a-z0-9+@:*._-]{0,12}", 0..4),
        approved in proptest::bool::ANY,
        sender in "[+0-9a-z@.]{0,14}",
    ) {
        let mut a = AccountConfig { dm_policy: DmPolicy::Disabled, allow_from: entries.clone(), ..account() };
        prop_assert_eq!(kind(&decide_with(&a, &dm(&sender), approved)), Some(SkipKind::DmDisabled));
        a.dm_policy = DmPolicy::Open;
        prop_assert_eq!(decide_with(&a, &dm(&sender), approved), ADMIT_DM);
    }

    /// Under `pairing`, a DM either reaches the agent or starts pairing: never a silent drop
    /// (a sender with a handle can always ask for access).
    #[test]
    fn pairing_never_drops_a_sender_silently(
        entries in proptest::collection::vec("[a-z0-9+@:._-]{1,12}", 0..4),
        sender in "\\+1[2-9][0-9]{9}",
    ) {
        let a = AccountConfig { allow_from: entries, ..account() };
        let d = decide_with(&a, &dm(&sender), false);
        prop_assert!(matches!(d, Decision::Admit { .. } | Decision::Pair { .. }), "{:?}", d);
    }
}
