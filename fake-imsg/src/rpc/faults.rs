//! The faults file (`--faults FILE`, JSON5): which misbehaviours of a real Mac the server
//! should produce on demand. Parsing only; the server consults the values where they apply.

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

/// Every supported fault; absent keys mean "behave normally".
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Exit (status 1) right after the Nth response line is written.
    pub exit_after_requests: Option<u64>,
    /// Exit (status 1) N ms after start.
    pub exit_after_ms: Option<u64>,
    /// Write one non-JSON line on stdout after the Nth response.
    pub garbage_line_after: Option<u64>,
    /// Write the first half of a JSON line (then a newline) after the Nth response.
    pub partial_line_after: Option<u64>,
    /// Sleep before answering (every method, or only `method`).
    pub delay_ms: Option<DelaySpec>,
    /// Run the call but never answer it (every call of `method`, or only its `nth`).
    pub drop_response: Option<DropSpec>,
    /// Behave as if the database could not be opened.
    #[serde(default)]
    pub database_unavailable: bool,
    /// The Nth `send` writes its row but answers -32001 `may_have_completed`.
    pub send_outcome_unknown_on: Option<u64>,
    /// The Nth `send` writes its row, answers -32001 `still_in_flight` and poisons the lane.
    pub send_poison_on: Option<u64>,
    /// Write every `message` notification twice.
    #[serde(default)]
    pub duplicate_notification: bool,
    /// After each send, write an inbound row mirroring it: `"text"` or `"reply_to"`.
    pub mirror_echo: Option<MirrorEcho>,
    /// Watch treats rows injected by others as unjoined for this many ms.
    pub unjoined_ms: Option<u64>,
    /// The debounce of a subscription that does not ask for one, instead of imsg's 500 ms
    /// (benchmarks measure the gateway one message at a time without waiting on it).
    pub default_debounce_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DelaySpec {
    pub method: Option<String>,
    pub ms: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DropSpec {
    pub method: String,
    pub nth: Option<u64>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MirrorEcho {
    Text,
    ReplyTo,
}

impl Faults {
    pub fn parse(text: &str) -> anyhow::Result<Faults> {
        json5::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))
    }

    pub fn load(path: &Path) -> anyhow::Result<Faults> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read faults file {}", path.display()))?;
        Faults::parse(&text).with_context(|| format!("bad faults file {}", path.display()))
    }

    /// Milliseconds to sleep before answering `method`.
    pub fn delay_for(&self, method: &str) -> u64 {
        match &self.delay_ms {
            Some(d) if d.method.as_deref().is_none_or(|m| m == method) => d.ms,
            _ => 0,
        }
    }

    /// Whether the `nth` (1-based) call of `method` must go unanswered.
    pub fn drops(&self, method: &str, nth: u64) -> bool {
        match &self.drop_response {
            Some(d) if d.method == method => d.nth.is_none_or(|n| n == nth),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_fault() {
        let f = Faults::parse(
            r#"{exit_after_requests: 3, exit_after_ms: 10, garbage_line_after: 1,
                partial_line_after: 2, delay_ms: {ms: 5}, drop_response: {method: "send", nth: 2},
                database_unavailable: true, send_outcome_unknown_on: 1, send_poison_on: 2,
                duplicate_notification: true, mirror_echo: "reply_to", unjoined_ms: 300}"#,
        )
        .unwrap();
        assert_eq!(f.mirror_echo, Some(MirrorEcho::ReplyTo));
        assert_eq!(f.delay_for("x"), 5);
        assert!(f.drops("send", 2) && !f.drops("send", 1));
        assert!(Faults::parse("{bogus: 1}").is_err());
    }
}
