//! Routing: which agent session a message belongs to and where its reply goes.
//!
//! DMs share the agent's main session; each group is its own session. Replies go back to the
//! chat they came from, preferring the stable `chat_id`, as the one target type sends use
//! (`outbound::Target`).

use crate::inbound::InboundMessage;
use crate::outbound::{handle_target, Target};

/// The agent session for a message: `main` for DMs, `imessage:group:<chat_id>` for groups.
///
/// A group without a usable chat_id falls back to its guid, then identifier, so two
/// different groups never share a session (and never share the DM session).
pub fn session_key(msg: &InboundMessage) -> String {
    if !msg.is_group {
        return "main".to_string();
    }
    if let Some(id) = msg.chat_id.filter(|id| *id > 0) {
        return format!("imessage:group:{id}");
    }
    let fallback = non_empty(msg.chat_guid.as_deref())
        .or_else(|| non_empty(msg.chat_identifier.as_deref()))
        .unwrap_or("unknown");
    format!("imessage:group:{}", fallback.to_lowercase())
}

/// Where the reply to `msg` goes: chat_id, then chat_guid, then chat_identifier, then (DMs only)
/// the sender's handle.
///
/// A group message never falls back to the sender: that would turn a group reply into a
/// private message to one participant. Such a message has no target (`None`).
pub fn reply_target(msg: &InboundMessage) -> Option<Target> {
    if let Some(id) = msg.chat_id.filter(|id| *id > 0) {
        return Some(Target::ChatId(id));
    }
    if let Some(guid) = non_empty(msg.chat_guid.as_deref()) {
        return Some(Target::ChatGuid(guid.to_string()));
    }
    if let Some(ident) = non_empty(msg.chat_identifier.as_deref()) {
        return Some(Target::ChatIdentifier(ident.to_string()));
    }
    if msg.is_group {
        return None;
    }
    non_empty(Some(msg.sender.as_str())).map(handle_target)
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dm() -> InboundMessage {
        InboundMessage {
            rowid: 1,
            guid: "g1".into(),
            chat_id: Some(7),
            chat_guid: Some("iMessage;-;+15550001111".into()),
            chat_identifier: Some("+15550001111".into()),
            sender: "+15550001111".into(),
            text: "hi".into(),
            ..Default::default()
        }
    }

    fn group() -> InboundMessage {
        InboundMessage {
            chat_id: Some(42),
            chat_guid: Some("iMessage;+;chat123".into()),
            chat_identifier: Some("chat123".into()),
            is_group: true,
            ..dm()
        }
    }

    #[test]
    fn dm_session_is_main_and_group_session_is_per_chat() {
        assert_eq!(session_key(&dm()), "main");
        assert_eq!(session_key(&group()), "imessage:group:42");
    }

    #[test]
    fn reply_target_prefers_chat_id_then_guid_then_identifier_then_handle() {
        let mut m = dm();
        assert_eq!(reply_target(&m), Some(Target::ChatId(7)));
        m.chat_id = Some(0);
        assert_eq!(
            reply_target(&m),
            Some(Target::ChatGuid("iMessage;-;+15550001111".into()))
        );
        m.chat_guid = Some(String::new());
        assert_eq!(
            reply_target(&m),
            Some(Target::ChatIdentifier("+15550001111".into()))
        );
        m.chat_identifier = None;
        m.chat_id = None;
        assert_eq!(reply_target(&m), Some(handle_target("+15550001111")));
        m.sender = "  ".into();
        assert_eq!(reply_target(&m), None);
    }

    #[test]
    fn group_without_chat_fields_never_falls_back_to_the_sender() {
        let mut g = group();
        g.chat_id = None;
        g.chat_guid = None;
        g.chat_identifier = Some(" ".into());
        assert_eq!(reply_target(&g), None);
        g.chat_guid = Some("iMessage;+;chat9".into());
        assert_eq!(
            reply_target(&g),
            Some(Target::ChatGuid("iMessage;+;chat9".into()))
        );
    }
}
