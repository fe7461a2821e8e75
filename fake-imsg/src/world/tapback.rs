//! Tapback kinds: the `associated_message_type` codes Messages writes (2000-2006 add,
//! 3000-3006 remove), their read-side names and emoji, and the row text Messages shows.

use super::{Result, WorldError};

/// Read-side names in code order 0..=5 (2000..=2005); 2006 is `custom`.
pub const KINDS: [&str; 6] = ["love", "like", "dislike", "laugh", "emphasis", "question"];
const EMOJI: [&str; 6] = ["❤️", "👍", "👎", "😂", "‼️", "❓"];
const VERBS: [&str; 6] = [
    "Loved",
    "Liked",
    "Disliked",
    "Laughed at",
    "Emphasized",
    "Questioned",
];
const REMOVED: [&str; 6] = [
    "a heart",
    "a like",
    "a dislike",
    "a laugh",
    "an exclamation",
    "a question mark",
];

/// A parsed tapback: the associated_message_type and, for custom ones, the emoji.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tapback {
    pub code: i64,
    pub emoji: Option<String>,
}

/// Parses `love|like|dislike|laugh|emphasis|question` (also `emphasize`), `custom:<emoji>`,
/// each optionally prefixed by `-` (a removal).
pub fn parse_kind(kind: &str) -> Result<Tapback> {
    let k = kind.trim();
    let (remove, name) = match k.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, k),
    };
    let base = if let Some(emoji) = name.strip_prefix("custom:") {
        if emoji.is_empty() {
            return Err(bad(kind));
        }
        Tapback {
            code: 2006,
            emoji: Some(emoji.to_string()),
        }
    } else {
        let name = if name == "emphasize" {
            "emphasis"
        } else {
            name
        };
        let idx = KINDS
            .iter()
            .position(|n| *n == name)
            .ok_or_else(|| bad(kind))?;
        Tapback {
            code: 2000 + idx as i64,
            emoji: None,
        }
    };
    Ok(Tapback {
        code: base.code + if remove { 1000 } else { 0 },
        ..base
    })
}

fn bad(kind: &str) -> WorldError {
    WorldError::Invalid(format!(
        "unknown reaction kind {kind:?}: expected one of love, like, dislike, laugh, emphasis, question, custom:<emoji>, optionally prefixed by '-' to remove"
    ))
}

/// `(name, emoji)` of a tapback code; custom ones use the row's emoji (None if unreadable).
pub fn describe(code: i64, custom_emoji: Option<&str>) -> Option<(&'static str, String)> {
    let base = match code {
        2000..=2006 => code - 2000,
        3000..=3006 => code - 3000,
        _ => return None,
    };
    if base == 6 {
        return custom_emoji.map(|e| ("custom", e.to_string()));
    }
    Some((KINDS[base as usize], EMOJI[base as usize].to_string()))
}

/// The text Messages stores on a tapback row, e.g. `Loved “hello”`.
pub fn row_text(code: i64, custom_emoji: Option<&str>, target_text: &str) -> String {
    let quoted = format!("\u{201c}{target_text}\u{201d}");
    match code {
        2000..=2005 => format!("{} {quoted}", VERBS[(code - 2000) as usize]),
        2006 => format!("Reacted {} to {quoted}", custom_emoji.unwrap_or("")),
        3000..=3005 => format!("Removed {} from {quoted}", REMOVED[(code - 3000) as usize]),
        3006 => format!(
            "Removed {} from {quoted}",
            custom_emoji.unwrap_or("a reaction")
        ),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_to_codes() {
        assert_eq!(parse_kind("love").unwrap().code, 2000);
        assert_eq!(parse_kind("question").unwrap().code, 2005);
        assert_eq!(parse_kind("-like").unwrap().code, 3001);
        let c = parse_kind("custom:🎉").unwrap();
        assert_eq!((c.code, c.emoji.as_deref()), (2006, Some("🎉")));
        let err = parse_kind("hearted").unwrap_err().to_string();
        assert!(err.contains("\"hearted\""), "{err}");
    }

    #[test]
    fn describe_and_text() {
        assert_eq!(describe(2001, None), Some(("like", "👍".to_string())));
        assert_eq!(describe(3004, None), Some(("emphasis", "‼️".to_string())));
        assert_eq!(describe(2006, None), None);
        assert_eq!(row_text(2001, None, "hello"), "Liked \u{201c}hello\u{201d}");
    }
}
