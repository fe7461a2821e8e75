//! Outbound: everything between an agent's reply text and the `send` calls: handle
//! normalisation ([`normalize_handle`]), send-target parsing ([`parse_target`]), chunking
//! ([`chunk_text`]) and the reply plan ([`plan_reply`]: response prefix, one `send` params
//! object per chunk, at most `imessage.maxChunksPerReply` of them, then one per file;
//! [`plan_send`] for any target). Pure: nothing here talks to imsg; [`files`] is the one
//! part that looks at the disk (checking files before they are sent).

mod chunk;
pub mod files;
pub(crate) mod handle;
mod target;

pub use chunk::chunk_text;
pub use handle::{normalize_handle, parse_handle};
pub use target::{parse_target, Target, TargetError};

use serde::{Deserialize, Serialize};
use unicode_segmentation::UnicodeSegmentation;

use crate::config::AccountConfig;

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

/// Ends the last chunk of a reply cut at `imessage.maxChunksPerReply`, so the person reading
/// it knows there was more.
pub const TRUNCATION_MARKER: &str = "… [reply truncated]";

/// Keeps the first `max` chunks; when some are dropped, the last kept chunk is shortened so
/// that it still fits `limit` chars (0 = no limit) with [`TRUNCATION_MARKER`] at its end.
/// Returns the chunks and how many were dropped.
fn cap_chunks(mut chunks: Vec<String>, max: usize, limit: usize) -> (Vec<String>, usize) {
    let max = max.max(1);
    if chunks.len() <= max {
        return (chunks, 0);
    }
    let dropped = chunks.len() - max;
    chunks.truncate(max);
    let last = chunks.pop().expect("max >= 1");
    let marker_chars = TRUNCATION_MARKER.chars().count();
    let (budget, marker) = match limit {
        0 => (usize::MAX, TRUNCATION_MARKER),
        // A chunk limit too small for the marker and some text: a bare ellipsis still says it.
        l if l <= marker_chars => (l - 1, "…"),
        l => (l - marker_chars, TRUNCATION_MARKER),
    };
    // Cut at a grapheme cluster boundary, as the chunker does.
    let mut end = 0;
    let mut used = 0;
    for (i, g) in last.grapheme_indices(true) {
        let n = g.chars().count();
        if used + n > budget {
            break;
        }
        used += n;
        end = i + g.len();
    }
    chunks.push(format!("{}{marker}", last[..end].trim_end()));
    (chunks, dropped)
}

/// Prefix on the first chunk only, then chunks; one `send` params object per chunk.
///
/// A reply of more than `imessage.maxChunksPerReply` chunks is cut to that many (see
/// [`TRUNCATION_MARKER`]) with a warning: a runaway agent must not flood a chat.
///
/// Chat targets carry exactly one selector (`chat_id`, `chat_guid` or `chat_identifier`) and
/// the account's service; handle targets carry `to`, with the service its prefix names
/// (`sms:+1555...`) or else the account's. Every object carries the account's `region`.
/// A blank reply plans no sends.
pub fn plan_reply(text: &str, target: &Target, account: &AccountConfig) -> Vec<SendParams> {
    plan_send(text, &[], target, account)
}

/// One planned `send`: imsg's params for it, typed. It becomes JSON only where it leaves the
/// gateway: the journal (a reply's plan, the CLI's outbox) and the `send` request, and it
/// reads back from what the journal holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendParams {
    /// Exactly one selector.
    #[serde(flatten)]
    pub to: SendTo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub service: String,
    pub region: String,
}

/// Where a `send` goes, as imsg's params name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SendTo {
    #[serde(rename = "chat_id")]
    ChatId(i64),
    #[serde(rename = "chat_guid")]
    ChatGuid(String),
    #[serde(rename = "chat_identifier")]
    ChatIdentifier(String),
    #[serde(rename = "to")]
    Handle(String),
}

impl SendParams {
    /// The params object of the `send` request.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("send params serialise")
    }

    /// A chunk that is a file and nothing else.
    pub fn is_file_only(&self) -> bool {
        self.text.is_none() && self.file.is_some()
    }
}

/// The [`Target`] of a reply to a handle (a DM without a chat selector, a pairing code). It
/// is parsed like a user-written target, so a service prefix in it decides the service; one
/// that does not parse is sent as written.
pub fn handle_target(handle: &str) -> Target {
    parse_target(handle).unwrap_or_else(|_| Target::Handle {
        to: handle.trim().to_string(),
        service: None,
    })
}

/// The `send` params of a message to `target`: the text's chunks (prefix on the first, at
/// most `maxChunksPerReply`), then one `send` per file, in order. The files are taken as
/// given: checking them on disk is the caller's job ([`files::check`]).
pub fn plan_send(
    text: &str,
    files: &[String],
    target: &Target,
    account: &AccountConfig,
) -> Vec<SendParams> {
    let to = match target {
        Target::ChatId(id) => SendTo::ChatId(*id),
        Target::ChatGuid(g) => SendTo::ChatGuid(g.clone()),
        Target::ChatIdentifier(i) => SendTo::ChatIdentifier(i.clone()),
        Target::Handle { to, .. } => SendTo::Handle(to.clone()),
    };
    let service = match target {
        Target::Handle {
            service: Some(s), ..
        } => *s,
        _ => account.service,
    };
    let params = |text: Option<String>, file: Option<String>| SendParams {
        to: to.clone(),
        text,
        file,
        service: service.as_str().to_string(),
        region: account.region.clone(),
    };
    let mut out = Vec::new();
    let full = apply_prefix(text, account.response_prefix.as_deref());
    if !full.trim().is_empty() {
        let chunks = chunk_text(&full, account.text_chunk_limit, account.chunk_mode);
        let total = chunks.len();
        let (chunks, dropped) = cap_chunks(
            chunks,
            account.max_chunks_per_reply,
            account.text_chunk_limit,
        );
        if dropped > 0 {
            tracing::warn!(account = %account.id,
                "reply is {total} chunks, more than imessage.maxChunksPerReply ({}): sending {}, dropping {dropped}",
                account.max_chunks_per_reply, chunks.len());
        }
        out.extend(chunks.into_iter().map(|c| params(Some(c), None)));
    }
    out.extend(files.iter().map(|f| params(None, Some(f.clone()))));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ChunkMode, Service};
    use serde_json::{json, Value};

    /// The plan as the journal and imsg see it.
    fn wire(plan: &[SendParams]) -> Vec<Value> {
        plan.iter().map(SendParams::to_json).collect()
    }

    fn account() -> AccountConfig {
        AccountConfig::default()
    }

    #[test]
    fn one_params_object_per_chunk_for_a_chat_id_target() {
        let mut a = account();
        a.text_chunk_limit = 10;
        let plan = wire(&plan_reply("hello there world", &Target::ChatId(12), &a));
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
        let plan = wire(&plan_reply("final reply and more", &Target::ChatId(1), &a));
        let texts: Vec<_> = plan.iter().map(|p| p["text"].as_str().unwrap()).collect();
        assert_eq!(texts, ["PFX final", "reply and", "more"]);
        a.text_chunk_limit = 4000;
        let plan = wire(&plan_reply("final reply", &Target::ChatId(1), &a));
        assert_eq!(plan[0]["text"], "PFX final reply");
        let plan = wire(&plan_reply("PFX already", &Target::ChatId(1), &a));
        assert_eq!(plan[0]["text"], "PFX already");
        assert!(plan_reply("  ", &Target::ChatId(1), &a).is_empty());
    }

    #[test]
    fn selectors_service_and_region_follow_the_target_and_account() {
        let mut a = account();
        a.service = Service::Sms;
        a.region = "GB".into();
        let p = &wire(&plan_reply(
            "x",
            &Target::ChatGuid("iMessage;+;c".into()),
            &a,
        ))[0];
        assert_eq!(
            p,
            &json!({"chat_guid":"iMessage;+;c","text":"x","service":"sms","region":"GB"})
        );
        let p = &wire(&plan_reply("x", &Target::ChatIdentifier("c1".into()), &a))[0];
        assert_eq!(p["chat_identifier"], "c1");
        assert!(p.get("chat_id").is_none() && p.get("to").is_none());
        let p = &wire(&plan_reply("x", &handle_target("+15550001111"), &a))[0];
        assert_eq!(
            p,
            &json!({"to":"+15550001111","text":"x","service":"sms","region":"GB"})
        );
        let p = &wire(&plan_reply("x", &handle_target("imessage:a@b.c"), &a))[0];
        assert_eq!(p["to"], "a@b.c");
        assert_eq!(p["service"], "imessage");
    }

    /// `n` words of 29 chars: with a 30-char chunk limit, one chunk each.
    fn words(n: usize) -> String {
        (0..n)
            .map(|i| format!("{i:0>29}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn texts(plan: &[SendParams]) -> Vec<String> {
        plan.iter().map(|p| p.text.clone().unwrap()).collect()
    }

    #[test]
    fn a_plan_reads_back_from_what_the_journal_holds() {
        let mut a = account();
        a.text_chunk_limit = 10;
        let plan = plan_send(
            "hello there",
            &["/tmp/a.jpg".into()],
            &handle_target("sms:+15550001111"),
            &a,
        );
        let stored = serde_json::to_string(&plan).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&stored).unwrap(),
            json!([{"to":"+15550001111","text":"hello","service":"sms","region":"US"},
                   {"to":"+15550001111","text":"there","service":"sms","region":"US"},
                   {"to":"+15550001111","file":"/tmp/a.jpg","service":"sms","region":"US"}])
        );
        assert_eq!(
            serde_json::from_str::<Vec<SendParams>>(&stored).unwrap(),
            plan
        );
        assert!(plan[2].is_file_only() && !plan[0].is_file_only());
    }

    #[test]
    fn a_reply_over_max_chunks_is_cut_with_a_visible_marker() {
        let mut a = account();
        a.text_chunk_limit = 30;
        assert_eq!(a.max_chunks_per_reply, 20);
        let plan = texts(&plan_reply(&words(21), &Target::ChatId(1), &a));
        assert_eq!(plan.len(), 20);
        let whole = texts(&plan_reply(&words(20), &Target::ChatId(1), &a));
        assert_eq!(plan[..19], whole[..19]);
        let last = &plan[19];
        assert!(last.ends_with(TRUNCATION_MARKER), "{last}");
        assert!(last.chars().count() <= 30, "{last}");
        // What is left of chunk 20 is its start.
        assert!(whole[19].starts_with(last.trim_end_matches(TRUNCATION_MARKER)));
        // Every chunk stays within the limit.
        assert!(plan.iter().all(|c| c.chars().count() <= 30));
    }

    #[test]
    fn a_reply_of_exactly_max_chunks_is_unchanged() {
        let mut a = account();
        a.text_chunk_limit = 30;
        let plan = texts(&plan_reply(&words(20), &Target::ChatId(1), &a));
        assert_eq!(plan.len(), 20);
        assert_eq!(plan[19], format!("{:0>29}", 19));
        assert!(plan.iter().all(|c| !c.contains(TRUNCATION_MARKER)));
    }

    #[test]
    fn max_chunks_is_per_account_and_survives_tiny_chunk_limits() {
        let mut a = account();
        a.text_chunk_limit = 30;
        a.max_chunks_per_reply = 2;
        let plan = texts(&plan_reply(&words(5), &Target::ChatId(1), &a));
        assert_eq!(plan.len(), 2);
        assert!(plan[1].ends_with(TRUNCATION_MARKER));
        // A limit too small for the marker: an ellipsis, still within the limit.
        a.text_chunk_limit = 5;
        a.max_chunks_per_reply = 1;
        let plan = texts(&plan_reply("aaaaa bbbbb", &Target::ChatId(1), &a));
        assert_eq!(plan, ["aaaa…"]);
    }

    #[test]
    fn newline_mode_is_used_when_configured() {
        let mut a = account();
        a.chunk_mode = ChunkMode::Newline;
        a.text_chunk_limit = 9;
        let plan = plan_reply("Para one\n\nPara two", &Target::ChatId(3), &a);
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[1].text.as_deref(), Some("Para two"));
    }
}
