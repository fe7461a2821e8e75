//! Access control: whether an inbound message may reach the agent, and if not, why and which
//! setting would change that. [`decide`] is pure: it takes the account's compiled
//! [`Policy`], the message, and whether the sender holds a pairing approval (the gateway reads
//! that from the state store), and returns a [`Decision`]. DMs follow `dmPolicy` (reference
//! §3.5), groups the gates of §3.6 and the mention gate of §3.7, with DESIGN decisions 1, 2,
//! 7, 8 and 13.

pub mod allow;
pub mod context;
pub mod mention;
pub mod pairing;

use std::collections::{BTreeMap, HashMap};

use crate::config::{AccountConfig, DmPolicy, GroupConfig, GroupPolicy};
use crate::inbound::InboundMessage;
use crate::outbound::normalize_handle;

pub use allow::{AllowEntry, AllowList, Origin};
pub use context::GroupContext;
pub use mention::MentionPatterns;

/// What happens to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// It goes to the agent.
    Admit { was_mentioned: bool },
    /// An unknown DM sender under `dmPolicy: "pairing"`: the pairing flow runs (a code when
    /// a request is newly created), and the message never reaches the agent.
    Pair { sender: String },
    /// A group message that is not answered but kept as context for the next mention.
    Context(Skip),
    /// Not answered.
    Drop(Skip),
}

/// Why a message is not answered: a kind (for counting and throttling) and a sentence that
/// names the chat, the sender where it matters, and the setting that would change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub kind: SkipKind,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipKind {
    DmDisabled,
    DmNotAllowed,
    NoSender,
    GroupDisabled,
    GroupAllowlistEmpty,
    GroupSenderNotAllowed,
    GroupNotListed,
    GroupWithoutChatId,
    NoMention,
    NoMentionPatterns,
    PairingPending,
    PairingRejected,
    PairingFull,
}

impl SkipKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipKind::DmDisabled => "dm-disabled",
            SkipKind::DmNotAllowed => "dm-not-allowed",
            SkipKind::NoSender => "no-sender",
            SkipKind::GroupDisabled => "group-disabled",
            SkipKind::GroupAllowlistEmpty => "group-allowlist-empty",
            SkipKind::GroupSenderNotAllowed => "group-sender-not-allowed",
            SkipKind::GroupNotListed => "group-not-listed",
            SkipKind::GroupWithoutChatId => "group-without-chat-id",
            SkipKind::NoMention => "no-mention",
            SkipKind::NoMentionPatterns => "no-mention-patterns",
            SkipKind::PairingPending => "pairing-pending",
            SkipKind::PairingRejected => "pairing-rejected",
            SkipKind::PairingFull => "pairing-full",
        }
    }
}

/// An account's access settings, parsed and compiled once when the account starts.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Where this account's keys live: `imessage` or `imessage.accounts.<id>`.
    pub keys: String,
    pub region: String,
    pub dm_policy: DmPolicy,
    pub allow_from: AllowList,
    pub group_policy: GroupPolicy,
    /// `groupAllowFrom` (the config resolves an unset one to `allowFrom`, reference §3.1).
    pub group_allow_from: AllowList,
    pub groups: BTreeMap<String, GroupConfig>,
    pub mentions: MentionPatterns,
}

/// The key prefix of an account's settings, for messages that name one.
pub fn key_prefix(account_id: &str) -> String {
    if account_id == "default" {
        "imessage".to_string()
    } else {
        format!("imessage.accounts.{account_id}")
    }
}

impl Policy {
    pub fn new(a: &AccountConfig) -> Policy {
        // The config already put allowFrom here when groupAllowFrom is unset.
        let group_raw = &a.group_allow_from;
        Policy {
            keys: key_prefix(&a.id),
            region: a.region.clone(),
            dm_policy: a.dm_policy,
            allow_from: AllowList::parse(&a.allow_from, &a.region),
            group_policy: a.group_policy,
            group_allow_from: AllowList::parse(group_raw, &a.region),
            groups: a.groups.clone(),
            mentions: a.mention_patterns.clone(),
        }
    }

    /// The sender as allowlists, approvals and pairing requests spell it.
    pub fn sender_id(&self, msg: &InboundMessage) -> String {
        normalize_handle(&msg.sender, &self.region)
    }

    /// Whether a pairing approval can change this message's decision: only DMs under
    /// `dmPolicy` "pairing" or "allowlist" consult them, so a batch without such a DM needs
    /// no read of the approvals.
    pub fn consults_approvals(&self, msg: &InboundMessage) -> bool {
        !self.is_group(msg) && !matches!(self.dm_policy, DmPolicy::Disabled | DmPolicy::Open)
    }

    /// A chat listed by id in `groups` is a group even when imsg says it is not (reference
    /// §1.4): the operator said so. `"*"` alone does not make a chat a group.
    pub fn is_group(&self, msg: &InboundMessage) -> bool {
        msg.is_group
            || msg
                .chat_id
                .is_some_and(|id| self.groups.contains_key(&id.to_string()))
    }

    /// `requireMention` for a chat: its own entry, else `"*"`, else true.
    pub fn require_mention(&self, chat_id: i64) -> bool {
        self.groups
            .get(&chat_id.to_string())
            .and_then(|g| g.require_mention)
            .or_else(|| self.groups.get("*").and_then(|g| g.require_mention))
            .unwrap_or(true)
    }

    /// Whether the message mentions the assistant (always true in a DM).
    pub fn mentioned(&self, msg: &InboundMessage) -> bool {
        !self.is_group(msg) || self.mentions.is_mentioned(&msg.text)
    }
}

/// The access decision for one message. `approved` says whether the sender holds a pairing
/// approval for this account; it admits DMs only (DESIGN decision 7).
pub fn decide(p: &Policy, msg: &InboundMessage, approved: bool) -> Decision {
    let sender = p.sender_id(msg);
    let origin = Origin {
        sender: &sender,
        chat_id: msg.chat_id,
        chat_guid: msg.chat_guid.as_deref(),
        chat_identifier: msg.chat_identifier.as_deref(),
    };
    if p.is_group(msg) {
        decide_group(p, msg, &origin)
    } else {
        decide_dm(p, &origin, approved)
    }
}

fn skip(kind: SkipKind, text: String) -> Skip {
    Skip { kind, text }
}

fn decide_dm(p: &Policy, o: &Origin<'_>, approved: bool) -> Decision {
    let k = &p.keys;
    let who = if o.sender.is_empty() {
        "a sender with no handle".to_string()
    } else {
        o.sender.to_string()
    };
    if p.dm_policy == DmPolicy::Disabled {
        return Decision::Drop(skip(
            SkipKind::DmDisabled,
            format!("DMs are disabled, so {who} is not answered (set {k}.dmPolicy to \"pairing\", \"allowlist\" or \"open\")"),
        ));
    }
    if p.dm_policy == DmPolicy::Open {
        return Decision::Admit {
            was_mentioned: true,
        };
    }
    let authorised = p.allow_from.admits(o) || (approved && !o.sender.is_empty());
    if authorised {
        return Decision::Admit {
            was_mentioned: true,
        };
    }
    if o.sender.is_empty() {
        return Decision::Drop(skip(
            SkipKind::NoSender,
            format!("a DM in chat {} has no sender handle to allow or pair (add \"chat_id:{}\" to {k}.allowFrom)",
                o.chat_id.unwrap_or_default(), o.chat_id.unwrap_or_default()),
        ));
    }
    match p.dm_policy {
        DmPolicy::Pairing => Decision::Pair {
            sender: o.sender.to_string(),
        },
        _ => Decision::Drop(skip(
            SkipKind::DmNotAllowed,
            format!("{who} is not in {k}.allowFrom (dmPolicy \"allowlist\"; add \"{who}\" to {k}.allowFrom, or approve it with imsg-gateway pairing)"),
        )),
    }
}

fn decide_group(p: &Policy, msg: &InboundMessage, o: &Origin<'_>) -> Decision {
    let k = &p.keys;
    let Some(id) = msg.chat_id.filter(|id| *id > 0) else {
        return Decision::Drop(skip(
            SkipKind::GroupWithoutChatId,
            "a group message without a chat id cannot be answered in its group".to_string(),
        ));
    };
    match p.group_policy {
        GroupPolicy::Disabled => {
            return Decision::Drop(skip(
                SkipKind::GroupDisabled,
                format!("group {id}: group messages are disabled (set {k}.groupPolicy to \"open\" or \"allowlist\")"),
            ))
        }
        GroupPolicy::Allowlist if p.group_allow_from.is_empty() => {
            return Decision::Drop(skip(
                SkipKind::GroupAllowlistEmpty,
                format!("group {id}: groupPolicy is \"allowlist\" and {k}.groupAllowFrom is empty (add \"chat_id:{id}\" or a sender to {k}.groupAllowFrom)"),
            ))
        }
        GroupPolicy::Allowlist if !p.group_allow_from.admits(o) => {
            let who = if o.sender.is_empty() { "the sender" } else { o.sender };
            return Decision::Drop(skip(
                SkipKind::GroupSenderNotAllowed,
                format!("group {id}: {who} is not in {k}.groupAllowFrom (add \"{who}\" or \"chat_id:{id}\" to {k}.groupAllowFrom)"),
            ));
        }
        _ => {}
    }
    if !p.groups.is_empty()
        && !p.groups.contains_key("*")
        && !p.groups.contains_key(&id.to_string())
    {
        return Decision::Drop(skip(
            SkipKind::GroupNotListed,
            format!("group {id} is not in {k}.groups, which lists the groups to answer (add \"{id}\" or \"*\" to {k}.groups)"),
        ));
    }
    let mentioned = p.mentions.is_mentioned(&msg.text);
    if p.require_mention(id) && !mentioned {
        return Decision::Context(if p.mentions.is_empty() {
            skip(
                SkipKind::NoMentionPatterns,
                format!("group {id} requires a mention, but routing.groupChat.mentionPatterns is empty, so nothing counts as one (add a mentionPatterns entry or set {k}.groups.\"{id}\".requireMention=false)"),
            )
        } else {
            skip(
                SkipKind::NoMention,
                format!("group {id} requires a mention (set {k}.groups.\"{id}\".requireMention=false or add a mentionPatterns entry)"),
            )
        });
    }
    Decision::Admit {
        was_mentioned: mentioned,
    }
}

/// Throttles "not answered" log lines: the first skip of a chat for a reason is logged, then
/// at most one line per `interval_ms` with how many were not logged meanwhile. Pure: the
/// caller passes the time. Bounded: at most `capacity` (chat, reason) pairs are remembered.
#[derive(Debug)]
pub struct SkipLog {
    interval_ms: u64,
    capacity: usize,
    seen: HashMap<(String, SkipKind), (u64, u64)>,
}

impl SkipLog {
    pub fn new(interval_ms: u64) -> SkipLog {
        SkipLog {
            interval_ms,
            capacity: 4096,
            seen: HashMap::new(),
        }
    }

    /// `Some(n)` when this skip should be logged now, `n` being how many like it were not
    /// logged since the last line; `None` to stay quiet.
    pub fn should_log(&mut self, chat: &str, kind: SkipKind, now_ms: u64) -> Option<u64> {
        let key = (chat.to_string(), kind);
        if let Some((last, quiet)) = self.seen.get_mut(&key) {
            if now_ms.saturating_sub(*last) < self.interval_ms {
                *quiet += 1;
                return None;
            }
            let n = *quiet;
            *last = now_ms;
            *quiet = 0;
            return Some(n);
        }
        if self.seen.len() >= self.capacity {
            let cutoff = now_ms.saturating_sub(self.interval_ms);
            self.seen.retain(|_, (last, _)| *last >= cutoff);
            if self.seen.len() >= self.capacity {
                self.seen.clear();
            }
        }
        self.seen.insert(key, (now_ms, 0));
        Some(0)
    }
}

#[cfg(test)]
mod tests;
