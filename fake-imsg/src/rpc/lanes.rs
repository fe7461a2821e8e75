//! Method catalogue and lane assignment (imsg-rpc-v1.md §1.7, §3 descriptor order; imsg-rpc.md
//! §7 for legacy's 22 names). Pure tables.

/// The v1 feature level being emulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiLevel {
    /// The 0.14.0 release.
    V014,
    /// `main` after 0.14.0: adds `chats.get`, `send.tracked`, `capabilities`.
    Main,
}

/// Which worker runs a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Mutation,
    Read,
    Control,
}

/// Every compiled v1 method in descriptor order (`supported_methods`).
const SUPPORTED: &[&str] = &[
    "initialize",
    "status",
    "watch.unsubscribe",
    "chats.list",
    "chats.get",
    "messages.stats",
    "messages.history",
    "messages.search",
    "messages.after",
    "messages.scheduled",
    "watch.subscribe",
    "bridge.events.subscribe",
    "message.send_status",
    "send",
    "send.tracked",
    "chats.create",
    "chats.delete",
    "chats.markUnread",
    "send.rich",
    "send.attachment",
    "send.multipart",
    "send.sticker",
    "poll.send",
    "messages.poll.send",
    "poll.vote",
    "messages.poll.vote",
    "poll.unvote",
    "polls.unvote",
    "messages.poll.unvote",
    "tapback",
    "typing",
    "read",
    "message.edit",
    "message.unsend",
    "message.delete",
    "message.notifyAnyways",
    "group.rename",
    "group.setIcon",
    "group.addParticipant",
    "group.removeParticipant",
    "group.leave",
    "contacts.shouldShareContact",
    "contacts.shareContactCard",
    "handles.check",
];

/// The 22 legacy method names.
pub const LEGACY_METHODS: &[&str] = &[
    "chats.list",
    "chats.create",
    "chats.delete",
    "chats.markUnread",
    "messages.history",
    "watch.subscribe",
    "watch.unsubscribe",
    "send",
    "send.rich",
    "send.attachment",
    "tapback",
    "typing",
    "read",
    "message.edit",
    "message.unsend",
    "message.delete",
    "message.notifyAnyways",
    "group.rename",
    "group.setIcon",
    "group.addParticipant",
    "group.removeParticipant",
    "group.leave",
];

/// The version imsg reports (`status`, `imsg --version`) at this surface.
pub fn imsg_version(protocol: super::framing::Protocol, level: ApiLevel) -> &'static str {
    match (protocol, level) {
        (super::framing::Protocol::Legacy, _) => "0.9.0",
        (_, ApiLevel::V014) => "0.14.0",
        (_, ApiLevel::Main) => "0.15.10",
    }
}

/// `supported_methods` for a level.
pub fn supported(level: ApiLevel) -> Vec<&'static str> {
    SUPPORTED
        .iter()
        .copied()
        .filter(|m| level == ApiLevel::Main || !matches!(*m, "chats.get" | "send.tracked"))
        .collect()
}

/// Whether `method` exists at this level.
pub fn is_known(method: &str, level: ApiLevel) -> bool {
    supported(level).contains(&method)
}

/// `methods` usable now on a stock Mac without the bridge.
pub fn usable(level: ApiLevel, db_ready: bool) -> Vec<&'static str> {
    let mut v = vec!["initialize", "status", "watch.unsubscribe"];
    if db_ready {
        v.push("chats.list");
        if level == ApiLevel::Main {
            v.push("chats.get");
        }
        v.extend([
            "messages.stats",
            "messages.history",
            "messages.search",
            "messages.after",
            "messages.scheduled",
            "watch.subscribe",
            "message.send_status",
        ]);
    }
    v.extend(["send", "typing", "read"]);
    v
}

/// Methods that only work through the IMCore bridge (answered "not started" here).
pub fn bridge_only_mutation(method: &str) -> bool {
    matches!(
        method,
        "chats.create"
            | "chats.delete"
            | "chats.markUnread"
            | "send.rich"
            | "send.attachment"
            | "send.multipart"
            | "send.sticker"
            | "poll.send"
            | "messages.poll.send"
            | "poll.vote"
            | "messages.poll.vote"
            | "poll.unvote"
            | "polls.unvote"
            | "messages.poll.unvote"
            | "tapback"
            | "message.edit"
            | "message.unsend"
            | "message.delete"
            | "message.notifyAnyways"
            | "group.rename"
            | "group.setIcon"
            | "group.addParticipant"
            | "group.removeParticipant"
            | "group.leave"
            | "contacts.shareContactCard"
    )
}

/// The lane of a v1 method (unknown methods go to control).
pub fn lane(method: &str, level: ApiLevel) -> Lane {
    if !is_known(method, level) {
        return Lane::Control;
    }
    match method {
        "send" | "send.tracked" | "typing" | "read" => Lane::Mutation,
        m if bridge_only_mutation(m) => Lane::Mutation,
        "status"
        | "chats.list"
        | "chats.get"
        | "messages.history"
        | "messages.search"
        | "messages.after"
        | "messages.stats"
        | "messages.scheduled"
        | "message.send_status"
        | "handles.check"
        | "contacts.shouldShareContact" => Lane::Read,
        _ => Lane::Control,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_and_levels() {
        assert_eq!(lane("send", ApiLevel::V014), Lane::Mutation);
        assert_eq!(lane("typing", ApiLevel::V014), Lane::Mutation);
        assert_eq!(lane("chats.list", ApiLevel::V014), Lane::Read);
        assert_eq!(lane("watch.unsubscribe", ApiLevel::V014), Lane::Control);
        assert_eq!(lane("chats.get", ApiLevel::V014), Lane::Control);
        assert_eq!(lane("chats.get", ApiLevel::Main), Lane::Read);
        assert_eq!(
            supported(ApiLevel::V014).len() + 2,
            supported(ApiLevel::Main).len()
        );
        assert_eq!(
            usable(ApiLevel::V014, false),
            vec![
                "initialize",
                "status",
                "watch.unsubscribe",
                "send",
                "typing",
                "read"
            ]
        );
        assert_eq!(LEGACY_METHODS.len(), 22);
    }
}
