//! Access control: decides whether an inbound message may reach the agent.

use crate::config::AccountConfig;
use crate::inbound::InboundMessage;

/// The outcome of an access decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Admit,
    Drop { reason: String },
}

/// The seam for access control. For now every message is admitted; the access-control issue
/// fills this in (DM policy, pairing, allowlists, group policy, mention gating).
pub fn decide(_msg: &InboundMessage, _account: &AccountConfig) -> Decision {
    Decision::Admit
}
