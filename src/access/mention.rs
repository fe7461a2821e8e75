//! Mention detection for group chats (reference §3.7 steps 2 and 4). iMessage has no mention
//! metadata, so a mention is a configured pattern (`routing.groupChat.mentionPatterns`)
//! matching the message text. The patterns are compiled once, when the config is loaded; an
//! invalid one is a config error, never skipped.

use regex::{RegexSet, RegexSetBuilder};

/// Characters a phone or a copy-paste can slip into a name without it showing: zero-width
/// spaces and joiners, direction marks and embeddings, word joiners and invisible operators.
/// They are removed before matching, so `@cl\u{200B}awd` still mentions `@clawd`.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}')
}

/// The text as mention patterns see it: invisible characters removed, lower-cased.
pub fn normalize_for_mention(text: &str) -> String {
    text.chars()
        .filter(|c| !is_invisible(*c))
        .collect::<String>()
        .to_lowercase()
}

/// A pattern that does not compile: its index in the list and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPattern {
    pub index: usize,
    pub pattern: String,
    pub error: String,
}

/// The compiled `mentionPatterns`, case-insensitive. Compares equal by source, so a config
/// holding it can still be compared.
#[derive(Debug, Clone)]
pub struct MentionPatterns {
    sources: Vec<String>,
    set: RegexSet,
}

impl PartialEq for MentionPatterns {
    fn eq(&self, other: &Self) -> bool {
        self.sources == other.sources
    }
}

impl Eq for MentionPatterns {}

impl Default for MentionPatterns {
    fn default() -> Self {
        MentionPatterns {
            sources: Vec::new(),
            set: RegexSet::empty(),
        }
    }
}

/// Bound on one compiled pattern, so a config cannot make the gateway build a huge automaton.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

impl MentionPatterns {
    /// Compiles every pattern, or reports each one that does not compile.
    pub fn compile(patterns: &[String]) -> Result<MentionPatterns, Vec<BadPattern>> {
        // A `"\b"` in a JSON string is a backspace, not a word boundary; nobody means the
        // backspace, so it is read as the boundary they wrote.
        let sources: Vec<String> = patterns.iter().map(|p| p.replace('\u{8}', "\\b")).collect();
        let bad: Vec<BadPattern> = sources
            .iter()
            .enumerate()
            .filter_map(|(index, p)| {
                builder(std::slice::from_ref(p))
                    .build()
                    .err()
                    .map(|e| BadPattern {
                        index,
                        pattern: patterns[index].clone(),
                        error: first_line(&e.to_string()),
                    })
            })
            .collect();
        if !bad.is_empty() {
            return Err(bad);
        }
        let set = builder(&sources).build().map_err(|e| {
            vec![BadPattern {
                index: 0,
                pattern: patterns.join(", "),
                error: first_line(&e.to_string()),
            }]
        })?;
        Ok(MentionPatterns { sources, set })
    }

    /// The patterns as configured (backspaces read as `\b`).
    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Whether `text` mentions the assistant. An empty text, or no patterns, never does.
    pub fn is_mentioned(&self, text: &str) -> bool {
        if self.is_empty() {
            return false;
        }
        let text = normalize_for_mention(text.trim());
        !text.is_empty() && self.set.is_match(&text)
    }
}

fn builder(patterns: &[String]) -> RegexSetBuilder {
    let mut b = RegexSetBuilder::new(patterns);
    b.case_insensitive(true).size_limit(PATTERN_SIZE_LIMIT);
    b
}

/// regex's errors draw the pattern with a caret over several lines; a log line wants one.
fn first_line(e: &str) -> String {
    e.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or(e)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(list: &[&str]) -> MentionPatterns {
        MentionPatterns::compile(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn case_insensitive_and_invisible_characters_removed() {
        let m = p(&["@clawd", r"\bbot\b"]);
        assert!(m.is_mentioned("@clawd hi"));
        assert!(m.is_mentioned("hey @CLAWD"));
        assert!(m.is_mentioned("@cl\u{200B}awd ping"));
        assert!(m.is_mentioned("@\u{202E}clawd\u{2060}"));
        assert!(m.is_mentioned("BOT: status"));
        assert!(!m.is_mentioned("robotics"));
        assert!(!m.is_mentioned("hello everyone"));
        assert!(!m.is_mentioned(""));
        assert!(!m.is_mentioned("   "));
    }

    #[test]
    fn no_patterns_means_nothing_is_a_mention() {
        let m = MentionPatterns::default();
        assert!(m.is_empty());
        assert!(!m.is_mentioned("@clawd hi"));
    }

    #[test]
    fn a_json_backspace_is_read_as_a_word_boundary() {
        let m = p(&["\u{8}clawd\u{8}"]);
        assert_eq!(m.sources(), [r"\bclawd\b"]);
        assert!(m.is_mentioned("ok clawd, go"));
        assert!(!m.is_mentioned("clawdbot"));
    }

    #[test]
    fn every_invalid_pattern_is_reported_with_its_index() {
        let err = MentionPatterns::compile(&[
            r"\bclawd\b".to_string(),
            "(invalid".to_string(),
            "[z-a]".to_string(),
        ])
        .unwrap_err();
        assert_eq!(
            err.iter().map(|b| b.index).collect::<Vec<_>>(),
            [1, 2],
            "{err:?}"
        );
        assert_eq!(err[0].pattern, "(invalid");
        assert!(!err[0].error.contains('\n'));
    }

    #[test]
    fn equal_by_source() {
        assert_eq!(p(&["a"]), p(&["a"]));
        assert_ne!(p(&["a"]), p(&["b"]));
    }

    proptest! {
        /// Whatever invisible characters are sprinkled into a mention, it still matches, and
        /// normalisation never leaves one behind.
        #[test]
        fn invisible_characters_never_hide_a_mention(
            cuts in proptest::collection::vec((0usize..7, 0u32..3), 0..6)
        ) {
            let invisible = ['\u{200B}', '\u{200D}', '\u{200F}', '\u{202A}', '\u{202E}', '\u{2060}', '\u{206F}'];
            let mut s: Vec<char> = "@clawd".chars().collect();
            for (pos, which) in cuts {
                let at = pos.min(s.len());
                s.insert(at, invisible[which as usize * 2 % invisible.len()]);
            }
            let text: String = s.into_iter().collect();
            prop_assert!(p(&["@clawd"]).is_mentioned(&text));
            prop_assert!(!normalize_for_mention(&text).chars().any(is_invisible));
        }
    }
}
