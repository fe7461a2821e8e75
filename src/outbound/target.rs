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
    /// A handle, as written (not normalised), with the service the prefix asked for.
    Handle {
        to: String,
        service: Service,
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
            return Ok(Target::Handle {
                to: rest.to_string(),
                service,
            });
        }
    }
    if let Some((canon, rest)) = split_chat_prefix(s) {
        let value = rest.trim();
        return match canon {
            "chat_id:" => parse_leading_int(value)
                .map(Target::ChatId)
                .ok_or_else(|| TargetError(format!("Invalid chat_id: {value}"))),
            "chat_guid:" if value.is_empty() => Err(TargetError("chat_guid is required".into())),
            "chat_guid:" => Ok(Target::ChatGuid(value.to_string())),
            _ if value.is_empty() => Err(TargetError("chat_identifier is required".into())),
            _ => Ok(Target::ChatIdentifier(value.to_string())),
        };
    }
    Ok(Target::Handle {
        to: s.to_string(),
        service: Service::Auto,
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
                service: Service::Sms
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
                service: Service::Imessage
            })
        );
        assert_eq!(
            parse_target("+1 555 222 3333"),
            Ok(Target::Handle {
                to: "+1 555 222 3333".into(),
                service: Service::Auto
            })
        );
    }

    #[test]
    fn reference_errors() {
        assert_eq!(err(""), "iMessage target is required");
        assert_eq!(err("   "), "iMessage target is required");
        assert_eq!(err("sms:"), "sms: target is required");
        assert_eq!(err("imessage:  "), "imessage: target is required");
        assert_eq!(err("chat_id:abc"), "Invalid chat_id: abc");
        assert_eq!(err("chat_id:"), "Invalid chat_id: ");
        assert_eq!(err("chat_guid: "), "chat_guid is required");
        assert_eq!(err("chatident:"), "chat_identifier is required");
    }
}
