//! Outbound: everything between an agent's reply text and the `send` calls: handle
//! normalisation ([`normalize_handle`]), send-target parsing ([`parse_target`]), chunking
//! ([`chunk_text`]) and the reply plan ([`plan_reply`]: response prefix, one `send` params
//! object per chunk). Pure: nothing here talks to imsg.

mod chunk;
mod handle;
mod target;

pub use chunk::chunk_text;
pub use handle::normalize_handle;
pub use target::{parse_target, Target, TargetError};

use serde_json::{json, Map, Value};

use crate::config::AccountConfig;
use crate::routing::ReplyTarget;

/// Applies `messages.responsePrefix` (DESIGN decision 5, reference §5.4): `<prefix> <text>`,
/// unless the prefix is empty, the text is blank, or the text already starts with it.
pub fn apply_prefix(text: &str, prefix: Option<&str>) -> String {
    match prefix {
        Some(p) if !p.is_empty() && !text.trim().is_empty() && !text.starts_with(p) => {
            format!("{p} {text}")
        }
        _ => text.to_string(),
    }
}

/// Prefix on the first chunk only, then chunks; one `send` params object per chunk.
///
/// Chat targets carry exactly one selector (`chat_id`, `chat_guid` or `chat_identifier`) and
/// the account's service; handle targets carry `to`, with the service its prefix names
/// (`sms:+1555...`) or else the account's. Every object carries the account's `region`.
/// A blank reply plans no sends.
pub fn plan_reply(text: &str, target: &ReplyTarget, account: &AccountConfig) -> Vec<Value> {
    let full = apply_prefix(text, account.response_prefix.as_deref());
    if full.trim().is_empty() {
        return Vec::new();
    }
    let mut service = account.service;
    let (key, value): (&str, Value) = match target {
        ReplyTarget::ChatId(id) => ("chat_id", json!(id)),
        ReplyTarget::ChatGuid(g) => ("chat_guid", json!(g)),
        ReplyTarget::ChatIdentifier(i) => ("chat_identifier", json!(i)),
        ReplyTarget::Handle(h) => match parse_target(h) {
            Ok(Target::ChatId(id)) => ("chat_id", json!(id)),
            Ok(Target::ChatGuid(g)) => ("chat_guid", json!(g)),
            Ok(Target::ChatIdentifier(i)) => ("chat_identifier", json!(i)),
            Ok(Target::Handle { to, service: s }) => {
                if has_service_prefix(h) {
                    service = s;
                }
                ("to", json!(to))
            }
            Err(_) => ("to", json!(h.trim())),
        },
    };
    chunk_text(&full, account.text_chunk_limit, account.chunk_mode)
        .into_iter()
        .map(|chunk| {
            let mut params = Map::new();
            params.insert(key.to_string(), value.clone());
            params.insert("text".into(), Value::String(chunk));
            params.insert("service".into(), json!(service.as_str()));
            params.insert("region".into(), json!(account.region));
            Value::Object(params)
        })
        .collect()
}

fn has_service_prefix(h: &str) -> bool {
    let h = h.trim();
    handle::SERVICE_PREFIXES
        .iter()
        .any(|p| handle::strip_prefix_ci(h, p).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ChunkMode, Service};

    fn account() -> AccountConfig {
        AccountConfig::default()
    }

    #[test]
    fn one_params_object_per_chunk_for_a_chat_id_target() {
        let mut a = account();
        a.text_chunk_limit = 10;
        let plan = plan_reply("hello there world", &ReplyTarget::ChatId(12), &a);
        assert_eq!(
            plan,
            vec![
                json!({"chat_id":12,"text":"hello","service":"auto","region":"US"}),
                json!({"chat_id":12,"text":"there","service":"auto","region":"US"}),
                json!({"chat_id":12,"text":"world","service":"auto","region":"US"}),
            ]
        );
    }

    #[test]
    fn prefix_goes_on_the_first_chunk_only() {
        let mut a = account();
        a.response_prefix = Some("PFX".into());
        a.text_chunk_limit = 12;
        let plan = plan_reply("final reply and more", &ReplyTarget::ChatId(1), &a);
        let texts: Vec<_> = plan.iter().map(|p| p["text"].as_str().unwrap()).collect();
        assert_eq!(texts, ["PFX final", "reply and", "more"]);
        a.text_chunk_limit = 4000;
        let plan = plan_reply("final reply", &ReplyTarget::ChatId(1), &a);
        assert_eq!(plan[0]["text"], "PFX final reply");
        let plan = plan_reply("PFX already", &ReplyTarget::ChatId(1), &a);
        assert_eq!(plan[0]["text"], "PFX already");
        assert!(plan_reply("  ", &ReplyTarget::ChatId(1), &a).is_empty());
    }

    #[test]
    fn selectors_service_and_region_follow_the_target_and_account() {
        let mut a = account();
        a.service = Service::Sms;
        a.region = "GB".into();
        let p = &plan_reply("x", &ReplyTarget::ChatGuid("iMessage;+;c".into()), &a)[0];
        assert_eq!(
            p,
            &json!({"chat_guid":"iMessage;+;c","text":"x","service":"sms","region":"GB"})
        );
        let p = &plan_reply("x", &ReplyTarget::ChatIdentifier("c1".into()), &a)[0];
        assert_eq!(p["chat_identifier"], "c1");
        assert!(p.get("chat_id").is_none() && p.get("to").is_none());
        let p = &plan_reply("x", &ReplyTarget::Handle("+15550001111".into()), &a)[0];
        assert_eq!(
            p,
            &json!({"to":"+15550001111","text":"x","service":"sms","region":"GB"})
        );
        let p = &plan_reply("x", &ReplyTarget::Handle("imessage:a@b.c".into()), &a)[0];
        assert_eq!(p["to"], "a@b.c");
        assert_eq!(p["service"], "imessage");
    }

    #[test]
    fn newline_mode_is_used_when_configured() {
        let mut a = account();
        a.chunk_mode = ChunkMode::Newline;
        a.text_chunk_limit = 9;
        let plan = plan_reply("Para one\n\nPara two", &ReplyTarget::ChatId(3), &a);
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[1]["text"], "Para two");
    }
}
