//! Parsing user-written send targets (reference §5.2): `chat_id:123`, `chat_guid:...`,
//! `chat_identifier:...`, `imessage:+1555...`, `sms:...`, `auto:...` or a bare handle.

use crate::config::Service;

use super::handle::{split_chat_prefix, strip_prefix_ci};

/// A parsed send target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    ChatId(i64),
    ChatGuid(String),
    ChatIdentifier(String),
    /// A handle, as written (not normalised), with the service its prefix asked for (`None`:
    /// no prefix, the account's `imessage.service` decides).
    Handle {
        to: String,
        service: Option<Service>,
    },
}

/// Why a target string is not usable; the message is the reference's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TargetError(pub String);

/// Parses a target the way the reference does, including its error texts.
pub fn parse_target(raw: &str) -> Result<Target, TargetError> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(TargetError("iMessage target is required".into()));
    }
    for (prefix, service) in [
        ("imessage:", Service::Imessage),
        ("sms:", Service::Sms),
        ("auto:", Service::Auto),
    ] {
        if let Some(rest) = strip_prefix_ci(s, prefix) {
            let rest = rest.trim();
            if rest.is_empty() {
                return Err(TargetError(format!("{prefix} target is required")));
            }
            if split_chat_prefix(rest).is_some() {
                return parse_target(rest);
            }
            return handle(rest, Some(service), raw);
        }
    }
    if let Some((canon, rest)) = split_chat_prefix(s) {
        let value = rest.trim();
        return match canon {
            "chat_id:" => parse_leading_int(value)
                .filter(|n| *n > 0)
                .map(Target::ChatId)
                .ok_or_else(|| {
                    TargetError(format!(
                        "Invalid chat_id: {value:?} (expected a positive number, as in chat_id:12)"
                    ))
                }),
            "chat_guid:" if value.is_empty() => Err(TargetError("chat_guid is required".into())),
            "chat_guid:" => Ok(Target::ChatGuid(value.to_string())),
            _ if value.is_empty() => Err(TargetError("chat_identifier is required".into())),
            _ => Ok(Target::ChatIdentifier(value.to_string())),
        };
    }
    handle(s, None, raw)
}

/// A direct handle must be one: a phone number or an email address. Anything else would
/// reach imsg and fail there, or worse, reach the wrong person.
fn handle(to: &str, service: Option<Service>, raw: &str) -> Result<Target, TargetError> {
    // The region only matters for normalising, which this check does not keep.
    if super::handle::parse_handle(to, "US").is_none() {
        return Err(TargetError(format!(
            "not a phone number, an email address or a chat target: {:?} (expected chat_id:N, chat_guid:G, chat_identifier:X, a phone number or an email, optionally after imessage:, sms: or auto:)",
            raw.trim()
        )));
    }
    Ok(Target::Handle {
        to: to.to_string(),
        service,
    })
}

/// `parseInt(v, 10)`: an optional sign and the leading decimal digits.
fn parse_leading_int(v: &str) -> Option<i64> {
    let (sign, digits) = match v.as_bytes().first() {
        Some(b'-') => (-1, &v[1..]),
        Some(b'+') => (1, &v[1..]),
        _ => (1, v),
    };
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse::<i64>().ok().map(|n| sign * n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        parse_target(s).unwrap_err().to_string()
    }

    #[test]
    fn reference_vectors() {
        assert_eq!(parse_target("chat_id:123"), Ok(Target::ChatId(123)));
        assert_eq!(parse_target("chat:456"), Ok(Target::ChatId(456)));
        assert_eq!(
            parse_target("sms:+1555"),
            Ok(Target::Handle {
                to: "+1555".into(),
                service: Some(Service::Sms)
            })
        );
    }

    #[test]
    fn prefixes_are_case_insensitive_and_service_is_dropped_for_chats() {
        assert_eq!(parse_target(" CHATID:7 "), Ok(Target::ChatId(7)));
        assert_eq!(parse_target("chat_id:12abc"), Ok(Target::ChatId(12)));
        assert_eq!(parse_target("sms:chat_id:123"), Ok(Target::ChatId(123)));
        assert_eq!(
            parse_target("imessage:CHAT_GUID:abc"),
            Ok(Target::ChatGuid("abc".into()))
        );
        assert_eq!(
            parse_target("auto:ChatIdentifier:foo"),
            Ok(Target::ChatIdentifier("foo".into()))
        );
        assert_eq!(
            parse_target("guid:iMessage;+;chat1"),
            Ok(Target::ChatGuid("iMessage;+;chat1".into()))
        );
        assert_eq!(
            parse_target("iMessage: User@Example.com"),
            Ok(Target::Handle {
                to: "User@Example.com".into(),
                service: Some(Service::Imessage)
            })
        );
        assert_eq!(
            parse_target("+1 555 222 3333"),
            Ok(Target::Handle {
                to: "+1 555 222 3333".into(),
                service: None
            })
        );
    }

    #[test]
    fn reference_errors() {
        assert_eq!(err(""), "iMessage target is required");
        assert_eq!(err("   "), "iMessage target is required");
        assert_eq!(err("sms:"), "sms: target is required");
        assert_eq!(err("imessage:  "), "imessage: target is required");
        assert!(err("chat_id:abc").starts_with("Invalid chat_id: \"abc\""));
        assert!(err("chat_id:").starts_with("Invalid chat_id: \"\""));
        assert!(err("chat_id:0").starts_with("Invalid chat_id: \"0\""));
        assert!(err("chat_id:-3").starts_with("Invalid chat_id: \"-3\""));
        assert_eq!(err("chat_guid: "), "chat_guid is required");
        assert_eq!(err("chatident:"), "chat_identifier is required");
    }

    #[test]
    fn a_direct_handle_must_be_a_phone_number_or_an_email() {
        for bad in ["grandma", "sms:grandma", "auto:@", "imessage:not an email@"] {
            let e = err(bad);
            assert!(e.contains(&format!("{:?}", bad)), "{bad}: {e}");
            assert!(e.contains("chat_id:N"), "{e}");
        }
        assert_eq!(
            parse_target("auto:ann@example.com"),
            Ok(Target::Handle {
                to: "ann@example.com".into(),
                service: Some(Service::Auto)
            })
        );
    }
}
