//! Handle normalisation (DESIGN decision 3): one canonical spelling per sender, so allowlists,
//! pairing approvals and replies compare equal. Phone numbers become E.164 in the account's
//! region (libphonenumber metadata via the `phonenumber` crate), emails are lower-cased, the
//! service prefixes `imessage:`/`sms:`/`auto:` are stripped and chat prefixes are spelled the
//! canonical way (reference §5.1). Anything else is kept as it is: unlike the reference, a
//! word never collapses to `+`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::str::FromStr;

use phonenumber::country;

/// Service prefixes that say how to send, not who to send to.
pub(crate) const SERVICE_PREFIXES: [&str; 3] = ["imessage:", "sms:", "auto:"];

/// Chat-target prefixes (all spellings, lower case) with their canonical form.
pub(crate) const CHAT_PREFIXES: [(&str, &str); 9] = [
    ("chat_id:", "chat_id:"),
    ("chatid:", "chat_id:"),
    ("chat:", "chat_id:"),
    ("chat_guid:", "chat_guid:"),
    ("chatguid:", "chat_guid:"),
    ("guid:", "chat_guid:"),
    ("chat_identifier:", "chat_identifier:"),
    ("chatidentifier:", "chat_identifier:"),
    ("chatident:", "chat_identifier:"),
];

/// Strips `prefix` from `s`, ignoring ASCII case.
pub(crate) fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// The canonical chat prefix of `s` and the rest after it, if `s` starts with one.
pub(crate) fn split_chat_prefix(s: &str) -> Option<(&'static str, &str)> {
    CHAT_PREFIXES
        .iter()
        .find_map(|(p, canon)| strip_prefix_ci(s, p).map(|rest| (*canon, rest)))
}

/// The normalised form of a handle or chat reference. `region` is an ISO 3166 code such as
/// `US`; an unknown region only affects numbers written without a `+` country code.
pub fn normalize_handle(raw: &str, region: &str) -> String {
    let s = raw.trim();
    if s.is_empty() {
        return String::new();
    }
    for p in SERVICE_PREFIXES {
        if let Some(rest) = strip_prefix_ci(s, p) {
            return normalize_handle(rest, region);
        }
    }
    if let Some((canon, rest)) = split_chat_prefix(s) {
        return format!("{canon}{}", rest.trim());
    }
    if s.contains('@') {
        return s.to_lowercase();
    }
    let phone = strip_prefix_ci(s, "whatsapp:").map(str::trim).unwrap_or(s);
    normalize_phone(phone, region).unwrap_or_else(|| s.to_string())
}

/// The normalised handle when `raw` is one: a phone number or an email address, with or
/// without a service prefix. `None` for chat selectors and for anything else (a word, a
/// name), which no allowlist entry may stand for (DESIGN decision 3).
pub fn parse_handle(raw: &str, region: &str) -> Option<String> {
    let mut s = raw.trim();
    while let Some(rest) = SERVICE_PREFIXES.iter().find_map(|p| strip_prefix_ci(s, p)) {
        s = rest.trim();
    }
    if s.is_empty() || split_chat_prefix(s).is_some() {
        return None;
    }
    if let Some((user, domain)) = s.split_once('@') {
        let plausible = !user.is_empty() && !domain.is_empty() && !s.contains(char::is_whitespace);
        return plausible.then(|| s.to_lowercase());
    }
    normalize_phone(s, region)
}

/// E.164 for anything written like a phone number (digits with the usual separators);
/// `None` for everything else, which the caller keeps verbatim.
fn normalize_phone(s: &str, region: &str) -> Option<String> {
    let looks_like_phone = !s.is_empty()
        && s.chars().any(|c| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '(' | ')' | '.' | ' '));
    if !looks_like_phone {
        return None;
    }
    let digits: String = s.chars().filter(|c| c.is_ascii_digit()).collect();
    // SMS short codes (`12345`) are not phone numbers; E.164 would invent a country code.
    if !s.starts_with('+') && digits.len() <= 6 {
        return Some(digits);
    }
    // libphonenumber's parse is most of a message's CPU time in the gateway (its patterns
    // run on every sender and participant), and a gateway sees the same few numbers over
    // and over: the answers are kept, per thread, a bounded number of them.
    let cached = PHONES.with(|c| {
        c.borrow()
            .get(&(s.to_string(), region.to_string()))
            .cloned()
    });
    if let Some(hit) = cached {
        return Some(hit);
    }
    let out = parse_phone(s, region, digits);
    PHONES.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= PHONE_CACHE {
            c.clear();
        }
        c.insert((s.to_string(), region.to_string()), out.clone());
    });
    Some(out)
}

/// Phone numbers normalised per thread, at most this many (then it starts over).
const PHONE_CACHE: usize = 1024;

thread_local! {
    static PHONES: RefCell<HashMap<(String, String), String>> = RefCell::new(HashMap::new());
}

fn parse_phone(s: &str, region: &str, digits: String) -> String {
    let id = country::Id::from_str(&region.trim().to_ascii_uppercase()).ok();
    match phonenumber::parse(id, s) {
        Ok(n) => n.format().mode(phonenumber::Mode::E164).to_string(),
        // Not a number libphonenumber understands (too short, bad `+` placement, ...): keep
        // the digits so spacing and punctuation differences still compare equal.
        Err(_) => {
            if s.starts_with('+') {
                format!("+{digits}")
            } else {
                digits
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        normalize_handle(s, "US")
    }

    #[test]
    fn a_remembered_number_is_still_read_in_the_region_asked_for() {
        for _ in 0..2 {
            assert_eq!(normalize_handle("020 7946 0018", "GB"), "+442079460018");
            assert_eq!(normalize_handle("020 7946 0018", "US"), "+102079460018");
            assert_eq!(normalize_handle("(201) 555-0101", "US"), "+12015550101");
        }
    }

    #[test]
    fn reference_vectors() {
        assert_eq!(n("Name@Example.com"), "name@example.com");
        assert_eq!(n(" +1 (555) 222-3333 "), "+15552223333");
        for (i, o) in [
            ("CHAT_ID:123", "chat_id:123"),
            ("Chat_Id:456", "chat_id:456"),
            ("chatid:789", "chat_id:789"),
            ("CHAT:42", "chat_id:42"),
            ("CHAT_GUID:abc-def", "chat_guid:abc-def"),
            ("ChatGuid:XYZ", "chat_guid:XYZ"),
            ("GUID:test-guid", "chat_guid:test-guid"),
            (
                "CHAT_IDENTIFIER:iMessage;-;chat123",
                "chat_identifier:iMessage;-;chat123",
            ),
            ("ChatIdentifier:test", "chat_identifier:test"),
            ("CHATIDENT:foo", "chat_identifier:foo"),
        ] {
            assert_eq!(n(i), o, "{i}");
        }
    }

    #[test]
    fn derived_vectors_with_decision_3() {
        assert_eq!(n("15550001111"), "+15550001111");
        assert_eq!(n("5550001111"), "+15550001111");
        assert_eq!(n("whatsapp:+15550001111"), "+15550001111");
        assert_eq!(n("sms:SMS:+15550001111"), "+15550001111");
        assert_eq!(n("imessage: +1 555 000 1111"), "+15550001111");
        assert_eq!(n("Auto:User@Example.COM"), "user@example.com");
        // Decision 3: neither phone nor email stays as it is, never `+`.
        assert_eq!(n("foo"), "foo");
        assert_eq!(n("iMessage;-;chat1"), "iMessage;-;chat1");
        assert_eq!(n(""), "");
        assert_eq!(n("   "), "");
        assert_ne!(n("alice"), n("bob"));
    }

    #[test]
    fn only_phone_numbers_and_emails_are_handles() {
        let h = |s: &str| parse_handle(s, "US");
        for phone in [
            "+1 (201) 555-0101",
            "201-555-0101",
            "2015550101",
            "+12015550101",
            "imessage:+12015550101",
            "sms: 201.555.0101",
        ] {
            assert_eq!(h(phone).as_deref(), Some("+12015550101"), "{phone}");
        }
        assert_eq!(
            h("Auto:Alice@Example.COM").as_deref(),
            Some("alice@example.com")
        );
        for not in [
            "alice",
            "chat_id:12",
            "chat_guid:x",
            "",
            "imessage:",
            "@",
            "a@",
            "1-800-FLOWERS",
            "*",
        ] {
            assert_eq!(h(not), None, "{not}");
        }
    }

    #[test]
    fn region_decides_numbers_without_country_code() {
        assert_eq!(normalize_handle("020 7946 0018", "GB"), "+442079460018");
        assert_eq!(normalize_handle("+44 20 7946 0018", "US"), "+442079460018");
        assert_eq!(normalize_handle("(555) 222-3333", "us"), "+15552223333");
    }

    #[test]
    fn odd_numbers_keep_their_digits() {
        assert_eq!(n("12345"), "12345", "short code");
        assert_eq!(n("555-123"), "555123");
        assert_eq!(n("555-1234"), "+15551234");
        assert_eq!(n("+1+2"), "+12");
        assert_eq!(n("1-800-FLOWERS"), "1-800-FLOWERS");
        assert_eq!(
            n("+"),
            "+",
            "kept as written, not produced from something else"
        );
    }
}
