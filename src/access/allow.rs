//! Allowlist entries (`allowFrom`, `groupAllowFrom`; reference §3.4): parsed once per account,
//! matched against a message's sender and chat. An entry is `"*"`, a handle (a phone number in
//! any common format or an email, normalised like senders) or a chat selector (`chat_id:`,
//! `chat_guid:`, `chat_identifier:`). Anything else never matches: the reference's
//! collapse-to-`+` quirk, which let `"alice"` match every non-phone sender, is not copied.

use crate::outbound::handle::{split_chat_prefix, strip_prefix_ci, SERVICE_PREFIXES};
use crate::outbound::parse_handle;

/// One parsed allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowEntry {
    /// `"*"`: everyone.
    Anyone,
    /// A normalised handle (E.164 phone or lower-case email).
    Handle(String),
    ChatId(i64),
    /// Compared exactly (case-sensitive), as imsg reports it.
    ChatGuid(String),
    ChatIdentifier(String),
    /// Neither a handle nor a chat selector; kept so `config check` can name it.
    Unusable(String),
}

impl AllowEntry {
    /// Parses one entry; `region` decides numbers written without a country code.
    pub fn parse(raw: &str, region: &str) -> AllowEntry {
        let s = raw.trim();
        if s == "*" {
            return AllowEntry::Anyone;
        }
        let mut rest = s;
        while let Some(r) = SERVICE_PREFIXES
            .iter()
            .find_map(|p| strip_prefix_ci(rest, p))
        {
            rest = r.trim();
        }
        if let Some((canon, value)) = split_chat_prefix(rest) {
            let value = value.trim();
            return match canon {
                "chat_id:" => value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .map(AllowEntry::ChatId)
                    .unwrap_or_else(|| AllowEntry::Unusable(s.to_string())),
                _ if value.is_empty() => AllowEntry::Unusable(s.to_string()),
                "chat_guid:" => AllowEntry::ChatGuid(value.to_string()),
                _ => AllowEntry::ChatIdentifier(value.to_string()),
            };
        }
        match parse_handle(rest, region) {
            Some(h) => AllowEntry::Handle(h),
            None => AllowEntry::Unusable(s.to_string()),
        }
    }
}

/// Who and where a message is from, as allowlists see it.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// The normalised sender.
    pub sender: &'a str,
    pub chat_id: Option<i64>,
    pub chat_guid: Option<&'a str>,
    pub chat_identifier: Option<&'a str>,
}

/// A parsed allowlist.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AllowList {
    entries: Vec<AllowEntry>,
}

impl AllowList {
    pub fn parse(raw: &[String], region: &str) -> AllowList {
        AllowList {
            entries: raw.iter().map(|e| AllowEntry::parse(e, region)).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn has_anyone(&self) -> bool {
        self.entries.contains(&AllowEntry::Anyone)
    }

    pub fn entries(&self) -> &[AllowEntry] {
        &self.entries
    }

    /// Whether an entry admits this origin. An empty list admits no one: callers that treat
    /// "no list" as "no restriction" decide that themselves.
    pub fn admits(&self, o: &Origin<'_>) -> bool {
        let sender = o.sender.trim();
        self.entries.iter().any(|e| match e {
            AllowEntry::Anyone => true,
            AllowEntry::Handle(h) => !sender.is_empty() && h == sender,
            AllowEntry::ChatId(id) => o.chat_id == Some(*id),
            AllowEntry::ChatGuid(g) => o.chat_guid.map(str::trim) == Some(g.as_str()),
            AllowEntry::ChatIdentifier(i) => o.chat_identifier.map(str::trim) == Some(i.as_str()),
            AllowEntry::Unusable(_) => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::normalize_handle;
    use proptest::prelude::*;

    fn from(sender: &str) -> Origin<'_> {
        Origin {
            sender,
            chat_id: Some(7),
            chat_guid: Some("iMessage;-;+12015550101"),
            chat_identifier: Some("+12015550101"),
        }
    }

    fn list(entries: &[&str]) -> AllowList {
        AllowList::parse(
            &entries.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "US",
        )
    }

    #[test]
    fn phone_formats_match_one_entry() {
        let sender = normalize_handle("+12015550101", "US");
        for entry in [
            "+1 (201) 555-0101",
            "201-555-0101",
            "2015550101",
            "+12015550101",
            "imessage:+1 201 555 0101",
            "SMS:201.555.0101",
        ] {
            assert!(list(&[entry]).admits(&from(&sender)), "{entry}");
        }
        // And a sender written any of those ways matches the canonical entry.
        for raw in ["+1 (201) 555-0101", "201-555-0101", "2015550101"] {
            let s = normalize_handle(raw, "US");
            assert!(list(&["+12015550101"]).admits(&from(&s)), "{raw}");
        }
        assert!(!list(&["+12015550102"]).admits(&from(&sender)));
    }

    #[test]
    fn emails_match_in_any_case() {
        let s = normalize_handle("Alice@Example.COM", "US");
        assert!(list(&["alice@example.com"]).admits(&from(&s)));
        assert!(list(&["ALICE@EXAMPLE.com"]).admits(&from(&s)));
        assert!(list(&["auto:Alice@example.com"]).admits(&from(&s)));
        assert!(!list(&["bob@example.com"]).admits(&from(&s)));
    }

    #[test]
    fn chat_selectors() {
        let o = from("+15550009999");
        assert!(list(&["chat_id:7"]).admits(&o));
        assert!(list(&["CHAT:7"]).admits(&o));
        assert!(!list(&["chat_id:8"]).admits(&o));
        assert!(list(&["chat_guid:iMessage;-;+12015550101"]).admits(&o));
        assert!(
            !list(&["chat_guid:imessage;-;+12015550101"]).admits(&o),
            "guids are case-sensitive"
        );
        assert!(list(&["chat_identifier:+12015550101"]).admits(&o));
    }

    #[test]
    fn words_never_match_anything() {
        let l = list(&["alice", "chat_id:abc", "chat_guid:"]);
        assert!(l
            .entries()
            .iter()
            .all(|e| matches!(e, AllowEntry::Unusable(_))));
        for s in ["bob", "alice", "+", "+15550001111", ""] {
            assert!(!l.admits(&from(s)), "{s}");
        }
    }

    #[test]
    fn star_and_empty() {
        assert!(list(&["*"]).admits(&from("anyone")));
        assert!(list(&["*"]).has_anyone());
        assert!(!AllowList::default().admits(&from("+12015550101")));
        assert!(!list(&["+12015550101"]).admits(&from("")), "no sender");
    }

    proptest! {
        /// However a US number is punctuated, entry and sender meet at one spelling.
        #[test]
        fn punctuation_never_changes_who_matches(
            area in 201u32..990, exch in 200u32..999, line in 0u32..10000,
            style in 0usize..5, country in proptest::bool::ANY,
        ) {
            prop_assume!(!(area % 100 == 11 || exch % 100 == 11));
            let digits = format!("{area}{exch}{line:04}");
            let written = match style {
                0 => format!("({area}) {exch}-{line:04}"),
                1 => format!("{area}-{exch}-{line:04}"),
                2 => format!("{area}.{exch}.{line:04}"),
                3 => format!("{area} {exch} {line:04}"),
                _ => digits.clone(),
            };
            let written = if country { format!("+1 {written}") } else { written };
            let canonical = normalize_handle(&format!("+1{digits}"), "US");
            prop_assert!(list(&[&written]).admits(&from(&canonical)), "{written} vs {canonical}");
        }
    }
}
