//! The envelope: what an agent receives for one admitted message, as one JSON object (the
//! `exec` agent's stdin, the `http` agent's POST body). Built from the normalised
//! [`InboundMessage`] plus what only the raw payload or the account config knows.
//!
//! ```json
//! {
//!   "account": "default",
//!   "chat_type": "group",                       // "direct" | "group"
//!   "chat_id": 12, "chat_guid": "iMessage;+;chat123", "chat_identifier": "chat123",
//!   "group_name": "Team",                       // groups only, else null
//!   "group_members": ["+15550001111", "alice@example.com"],   // groups only, else []
//!   "sender": "+15550001111",                   // normalised (E.164 / lower-case email)
//!   "sender_raw": "+1 (555) 000-1111",          // as imsg reported it
//!   "sender_name": "Alice",                     // when Contacts knows it, else null
//!   "text": "@bot what's for lunch?",
//!   "attachments": [{"path": "/Users/me/Library/Messages/Attachments/…/a.jpg",
//!                    "mime_type": "image/jpeg", "name": "a.jpg", "size_bytes": 123456,
//!                    "missing": false}],        // "omitted": "<why>" (and path null) when
//!                                               // larger than imessage.mediaMaxMb
//!   "session_key": "imessage:group:12",         // "main" for DMs
//!   "message_guid": "7E2B1C4A-…", "message_id": 4821,
//!   "timestamp": "2026-01-15T18:04:05.123Z",
//!   "was_mentioned": false,
//!   "context": [],                              // unanswered group messages since the last mention
//!   "reply_to": {"guid": "…", "text": "…", "sender": "…"}     // only on inline replies
//! }
//! ```
//!
//! The reply: `exec` prints it on stdout (trimmed; empty = no reply); `http` answers
//! `{"reply": "..."}` or `{"text": "..."}` (JSON) or a `text/plain` body.

use serde::{Deserialize, Serialize};

use crate::config::AccountConfig;
use crate::inbound::InboundMessage;
use crate::outbound::normalize_handle;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatType {
    Direct,
    Group,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvelopeAttachment {
    pub path: Option<String>,
    pub mime_type: Option<String>,
    pub name: Option<String>,
    pub size_bytes: Option<u64>,
    pub missing: bool,
    /// Set when the file is not handed over, with why (e.g. larger than `mediaMaxMb`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub omitted: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyTo {
    pub guid: Option<String>,
    pub text: Option<String>,
    pub sender: Option<String>,
}

/// An earlier message given as context (recent unanswered group messages).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextMessage {
    pub sender: String,
    pub text: String,
    pub message_guid: String,
    pub timestamp: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The account id (`default` with a single account).
    pub account: String,
    pub chat_type: ChatType,
    pub chat_id: Option<i64>,
    pub chat_guid: Option<String>,
    pub chat_identifier: Option<String>,
    /// Groups: the chat's display name.
    pub group_name: Option<String>,
    /// Groups: the participants' handles (normalised).
    pub group_members: Vec<String>,
    /// Normalised handle (E.164 phone or lower-case email).
    pub sender: String,
    /// The handle exactly as imsg reported it.
    pub sender_raw: String,
    pub sender_name: Option<String>,
    pub text: String,
    pub attachments: Vec<EnvelopeAttachment>,
    /// `main` for DMs, `imessage:group:<chat_id>` for groups.
    pub session_key: String,
    pub message_guid: String,
    /// The Messages ROWID.
    pub message_id: i64,
    /// ISO 8601 UTC.
    pub timestamp: Option<String>,
    pub was_mentioned: bool,
    pub context: Vec<ContextMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<ReplyTo>,
}

impl Envelope {
    /// Builds the envelope from the normalised message.
    pub fn from_inbound(
        msg: &InboundMessage,
        account: &AccountConfig,
        session_key: &str,
        was_mentioned: bool,
    ) -> Envelope {
        let max_bytes = account.media_max_mb.saturating_mul(1024 * 1024);
        let attachments = msg
            .attachments
            .iter()
            .map(|a| {
                let size = a
                    .total_bytes
                    .map(|n| format!(", {n} bytes"))
                    .unwrap_or_default();
                let omitted = match a.total_bytes {
                    _ if !account.include_attachments => {
                        Some("not handed over (imessage.includeAttachments is false)".to_string())
                    }
                    _ if a.missing => Some(format!("missing on disk{size}")),
                    _ if a.path.as_deref().is_none_or(|p| p.trim().is_empty()) => {
                        Some(format!("imsg gave no path{size}"))
                    }
                    Some(size) if max_bytes > 0 && size > max_bytes => Some(format!(
                        "larger than mediaMaxMb ({size} bytes > {} MB)",
                        account.media_max_mb
                    )),
                    _ => None,
                };
                EnvelopeAttachment {
                    path: if omitted.is_some() {
                        None
                    } else {
                        a.path.clone()
                    },
                    mime_type: a.mime_type.clone(),
                    name: a.transfer_name.clone(),
                    size_bytes: a.total_bytes,
                    missing: a.missing,
                    omitted,
                }
            })
            .collect();
        let reply_to = if msg.reply_to_guid.is_some()
            || msg.reply_to_text.is_some()
            || msg.reply_to_sender.is_some()
        {
            Some(ReplyTo {
                guid: msg.reply_to_guid.clone(),
                text: msg.reply_to_text.clone(),
                sender: msg.reply_to_sender.clone(),
            })
        } else {
            None
        };
        let region = account.region.as_str();
        Envelope {
            account: account.id.clone(),
            chat_type: if msg.is_group {
                ChatType::Group
            } else {
                ChatType::Direct
            },
            chat_id: msg.chat_id,
            chat_guid: msg.chat_guid.clone(),
            chat_identifier: msg.chat_identifier.clone(),
            group_name: if msg.is_group {
                msg.chat_name.clone()
            } else {
                None
            },
            group_members: if msg.is_group {
                msg.participants
                    .iter()
                    .map(|p| normalize_handle(p, region))
                    .collect()
            } else {
                Vec::new()
            },
            sender: normalize_handle(&msg.sender, region),
            sender_raw: msg.sender.clone(),
            sender_name: msg.sender_name.clone(),
            text: body_text(msg),
            attachments,
            session_key: session_key.to_string(),
            message_guid: msg.guid.clone(),
            message_id: msg.rowid,
            timestamp: msg.created_at.as_deref().map(iso_utc),
            was_mentioned,
            context: Vec::new(),
            reply_to,
        }
    }
}

/// The text the agent sees: the message's text without the object-replacement characters
/// Messages puts where attachments sit, or, for an attachment-only message, a placeholder
/// by the first attachment's kind (`<media:image>`, reference §3.8; DESIGN decision 12).
pub fn body_text(msg: &InboundMessage) -> String {
    let had_object = msg.text.contains('\u{FFFC}');
    let text = msg.text.replace('\u{FFFC}', "");
    let text = text.trim();
    if !text.is_empty() || (msg.attachments.is_empty() && !had_object) {
        return if had_object {
            text.to_string()
        } else {
            msg.text.clone()
        };
    }
    let first = msg
        .attachments
        .iter()
        .find(|a| !a.missing && a.path.as_deref().is_some_and(|p| !p.is_empty()))
        .or(msg.attachments.first());
    let mime = first
        .and_then(|a| a.mime_type.as_deref())
        .unwrap_or("")
        .to_ascii_lowercase();
    let kind = match mime.split('/').next().unwrap_or("") {
        "image" => "image",
        "audio" => "audio",
        "video" => "video",
        "application" => "document",
        _ => "unknown",
    };
    format!("<media:{kind}>")
}

/// Normalises a timestamp to `YYYY-MM-DDTHH:MM:SS.mmmZ`; leaves an unparseable one as it is.
fn iso_utc(s: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(s.trim()) {
        Ok(t) => t
            .with_timezone(&chrono::Utc)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        Err(_) => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn account() -> AccountConfig {
        AccountConfig {
            media_max_mb: 1,
            include_attachments: true,
            ..AccountConfig::default()
        }
    }

    fn with_attachments(text: &str, atts: Value) -> InboundMessage {
        let raw = json!({"id": 1, "chat_id": 3, "guid": "G", "sender": "+15551234567",
            "text": text, "attachments": atts});
        crate::inbound::parse_message(&raw).unwrap()
    }

    #[test]
    fn attachment_only_messages_get_a_placeholder_by_kind() {
        for (mime, want) in [
            ("image/jpeg", "<media:image>"),
            ("audio/x-m4a", "<media:audio>"),
            ("video/quicktime", "<media:video>"),
            ("application/pdf", "<media:document>"),
            ("text/vcard", "<media:unknown>"),
        ] {
            let m = with_attachments(
                "\u{FFFC}",
                json!([{"original_path": "/a/x", "mime_type": mime}]),
            );
            assert_eq!(body_text(&m), want, "{mime}");
        }
        let m = with_attachments("", json!([{"original_path": "/a/x"}]));
        assert_eq!(body_text(&m), "<media:unknown>", "no MIME type");
        let m = with_attachments(
            "look \u{FFFC}",
            json!([{"original_path": "/a/x", "mime_type": "image/png"}]),
        );
        assert_eq!(body_text(&m), "look", "a caption is the text");
        let m = with_attachments("\u{FFFC}", json!([]));
        assert_eq!(
            body_text(&m),
            "<media:unknown>",
            "an attachment imsg did not describe"
        );
        let m = with_attachments("  plain  ", json!([]));
        assert_eq!(
            body_text(&m),
            "  plain  ",
            "text without attachments is untouched"
        );
    }

    #[test]
    fn include_attachments_decides_only_whether_paths_are_handed_over() {
        let m = with_attachments(
            "\u{FFFC}",
            json!([{"original_path": "/a/p.jpg", "mime_type": "image/jpeg",
            "transfer_name": "p.jpg", "total_bytes": 10}]),
        );
        let off = AccountConfig {
            include_attachments: false,
            ..account()
        };
        let env = Envelope::from_inbound(&m, &off, "main", true);
        assert_eq!(env.text, "<media:image>");
        assert_eq!(env.attachments[0].path, None);
        assert_eq!(env.attachments[0].mime_type.as_deref(), Some("image/jpeg"));
        assert!(env.attachments[0]
            .omitted
            .as_deref()
            .unwrap()
            .contains("includeAttachments is false"));
        let env = Envelope::from_inbound(&m, &account(), "main", true);
        assert_eq!(env.attachments[0].path.as_deref(), Some("/a/p.jpg"));
        assert_eq!(env.attachments[0].omitted, None);
    }

    #[test]
    fn missing_files_are_omitted_with_the_reason_and_size() {
        let m = with_attachments(
            "x",
            json!([{"original_path": "/a/gone.jpg", "missing": true, "total_bytes": 77}]),
        );
        let env = Envelope::from_inbound(&m, &account(), "main", true);
        assert_eq!(env.attachments[0].path, None);
        assert_eq!(
            env.attachments[0].omitted.as_deref(),
            Some("missing on disk, 77 bytes")
        );
    }

    #[test]
    fn a_group_message_becomes_a_group_envelope() {
        let raw = json!({"id": 4821, "chat_id": 12, "guid": "G-1", "sender": "Alice@Example.COM",
            "sender_name": "Alice", "is_from_me": false, "text": "@bot ping",
            "created_at": "2026-01-15T19:04:05.1+01:00",
            "attachments": [
                {"original_path": "/a/small.jpg", "mime_type": "image/jpeg", "transfer_name": "small.jpg",
                 "total_bytes": 1000, "missing": false},
                {"original_path": "/a/big.mov", "mime_type": "video/quicktime", "transfer_name": "big.mov",
                 "total_bytes": 5_000_000, "missing": false}],
            "reactions": [], "chat_identifier": "chat123", "chat_guid": "iMessage;+;chat123",
            "chat_name": "Team", "participants": ["+1 (555) 000-1111", "alice@example.com"],
            "is_group": true, "reply_to_guid": "G-0", "reply_to_text": "earlier", "reply_to_sender": "+15550001111"});
        let msg = crate::inbound::parse_message(&raw).unwrap();
        let env = Envelope::from_inbound(&msg, &account(), "imessage:group:12", true);
        assert_eq!(env.chat_type, ChatType::Group);
        assert_eq!(env.group_name.as_deref(), Some("Team"));
        assert_eq!(env.group_members, vec!["+15550001111", "alice@example.com"]);
        assert_eq!(env.sender, "alice@example.com");
        assert_eq!(env.sender_raw, "Alice@Example.COM");
        assert_eq!(env.sender_name.as_deref(), Some("Alice"));
        assert_eq!(env.timestamp.as_deref(), Some("2026-01-15T18:04:05.100Z"));
        assert_eq!(env.message_id, 4821);
        assert_eq!(env.session_key, "imessage:group:12");
        assert!(env.was_mentioned);
        assert_eq!(env.attachments[0].path.as_deref(), Some("/a/small.jpg"));
        assert_eq!(env.attachments[0].omitted, None);
        assert_eq!(
            env.attachments[1].path, None,
            "oversized files are not handed over"
        );
        assert!(env.attachments[1]
            .omitted
            .as_deref()
            .unwrap()
            .contains("5000000 bytes"));
        let reply_to = env.reply_to.as_ref().unwrap();
        assert_eq!(reply_to.guid.as_deref(), Some("G-0"));
        assert_eq!(reply_to.text.as_deref(), Some("earlier"));
        let v = serde_json::to_value(&env).unwrap();
        assert_eq!(v["chat_type"], "group");
        assert_eq!(v["attachments"][0]["name"], "small.jpg");
        assert_eq!(v["attachments"][0]["size_bytes"], 1000);
    }

    #[test]
    fn a_dm_has_no_group_fields() {
        let raw = json!({"id": 1, "chat_id": 3, "guid": "G", "sender": "+15551234567", "is_from_me": false,
            "text": "hi", "created_at": "2026-01-15T18:04:05.123Z", "attachments": [], "reactions": [],
            "chat_identifier": "+15551234567", "chat_guid": "iMessage;-;+15551234567",
            "chat_name": "", "participants": ["+15551234567"], "is_group": false});
        let msg = crate::inbound::parse_message(&raw).unwrap();
        let env = Envelope::from_inbound(&msg, &account(), "main", false);
        assert_eq!(env.chat_type, ChatType::Direct);
        assert_eq!(env.group_name, None);
        assert!(env.group_members.is_empty());
        assert_eq!(env.reply_to, None);
        assert_eq!(env.sender_name, None);
        let v = serde_json::to_value(&env).unwrap();
        assert_eq!(v["chat_type"], "direct");
        assert!(v.get("reply_to").is_none());
        assert_eq!(v["context"], json!([]));
    }
}
