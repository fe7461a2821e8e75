//! Chunking reply text (DESIGN decision 4).
//!
//! `Length` mode is the reference chunker (`chunkText`, reference §5.3) with two changes: the
//! limit counts chars (Unicode scalar values) instead of UTF-16 units, and a cut never falls
//! inside a grapheme cluster unless that one cluster is longer than the limit. Breaks prefer
//! the last newline in the window, then the last other whitespace, then a hard cut; both are
//! looked for only outside parentheses (a parenthesised aside stays whole when it can). Text
//! whose characters are all in the BMP and that has no multi-char clusters (other than CRLF)
//! chunks exactly as the reference does.
//!
//! `Newline` mode splits at paragraph breaks (a blank line) outside fenced code blocks and
//! packs whole paragraphs into a chunk while they fit; a paragraph longer than the limit is
//! chunked by length. (The reference never packs; DESIGN decision 4 asks for packing.)

use unicode_segmentation::UnicodeSegmentation;

use crate::config::ChunkMode;

/// Splits `text` into chunks of at most `limit` chars (see the module docs). An empty text
/// gives no chunks; a `limit` of 0 disables chunking.
pub fn chunk_text(text: &str, limit: usize, mode: ChunkMode) -> Vec<String> {
    match mode {
        ChunkMode::Length => chunk_by_length(text, limit),
        ChunkMode::Newline => chunk_by_paragraph(text, limit),
    }
}

/// Whitespace as JavaScript's `\s` and `trim()` see it, so cuts match the reference.
pub(crate) fn is_js_whitespace(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | ' ' | '\u{A0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200A}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202F}'
                | '\u{205F}'
                | '\u{3000}'
                | '\u{FEFF}'
    )
}

fn is_blank_cluster(g: &str) -> bool {
    g.chars().all(is_js_whitespace)
}

/// Drops trailing clusters made only of whitespace (never half a cluster).
fn trim_end_clusters(s: &str) -> &str {
    let mut end = s.len();
    for (i, g) in s.grapheme_indices(true).rev() {
        if is_blank_cluster(g) {
            end = i;
        } else {
            break;
        }
    }
    &s[..end]
}

/// Drops leading clusters made only of whitespace (never half a cluster).
fn trim_start_clusters(s: &str) -> &str {
    for (i, g) in s.grapheme_indices(true) {
        if !is_blank_cluster(g) {
            return &s[i..];
        }
    }
    ""
}

/// Byte offset of char index `n` in `s` (or `s.len()`).
fn byte_at_char(s: &str, n: usize) -> usize {
    s.char_indices().nth(n).map_or(s.len(), |(b, _)| b)
}

fn chunk_by_length(text: &str, limit: usize) -> Vec<String> {
    if text.is_empty() {
        return Vec::new();
    }
    let total = text.chars().count();
    if limit == 0 || total <= limit {
        return vec![text.to_string()];
    }
    let mut out = Vec::new();
    let mut rest = text;
    let mut rest_chars = total;
    while rest_chars > limit {
        let cut = find_cut(rest, limit);
        let chunk = trim_end_clusters(&rest[..cut]);
        if !chunk.is_empty() {
            out.push(chunk.to_string());
        }
        let next = trim_start_clusters(&rest[cut..]);
        rest_chars -= rest[..rest.len() - next.len()].chars().count();
        rest = next;
    }
    if !rest.is_empty() {
        out.push(rest.to_string());
    }
    out
}

/// The byte offset where the next chunk ends, for a `rest` longer than `limit` chars.
fn find_cut(rest: &str, limit: usize) -> usize {
    // Walk the clusters that start inside the char window [0, limit). `hard` is the last
    // cluster boundary within the window; candidates are whitespace outside parentheses whose
    // whole cluster is whitespace (so dropping it at the cut never leaves half a cluster).
    let mut depth = 0usize;
    let mut last_newline: Option<(usize, usize)> = None; // (char index, byte offset)
    let mut last_space: Option<(usize, usize)> = None;
    let mut hard = 0usize;
    let mut char_index = 0usize;
    'clusters: for (start, g) in rest.grapheme_indices(true) {
        let blank = is_blank_cluster(g);
        for (off, c) in g.char_indices() {
            if char_index >= limit {
                break 'clusters;
            }
            match c {
                '(' => depth += 1,
                ')' if depth > 0 => depth -= 1,
                _ if depth == 0 && blank && c == '\n' => {
                    last_newline = Some((char_index, start + off));
                }
                _ if depth == 0 && blank && is_js_whitespace(c) => {
                    last_space = Some((char_index, start + off));
                }
                _ => {}
            }
            char_index += 1;
        }
        hard = start + g.len();
    }
    match (last_newline, last_space) {
        (Some((i, b)), _) if i > 0 => b,
        (_, Some((i, b))) if i > 0 => b,
        // A single cluster longer than the limit is the only thing that gets split.
        _ if hard == 0 => byte_at_char(rest, limit),
        _ => hard,
    }
}

/// A fenced code block as byte offsets (start of the opening line, end of the closing line).
struct Fence {
    start: usize,
    end: usize,
}

/// `^( {0,3})(```+|~~~+)`: the marker char and its run length.
fn fence_marker(line: &str) -> Option<(char, usize)> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let body = &line[indent..];
    let c = body.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let n = body.len() - body.trim_start_matches(c).len();
    (n >= 3).then_some((c, n))
}

fn fences(text: &str) -> Vec<Fence> {
    let mut out = Vec::new();
    let mut open: Option<(char, usize, usize)> = None;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let content = line.strip_suffix('\n').unwrap_or(line);
        if let Some((c, n)) = fence_marker(content) {
            match open {
                None => open = Some((c, n, pos)),
                Some((oc, on, start)) if oc == c && n >= on => {
                    out.push(Fence {
                        start,
                        end: pos + content.len(),
                    });
                    open = None;
                }
                Some(_) => {}
            }
        }
        pos += line.len();
    }
    if let Some((_, _, start)) = open {
        out.push(Fence {
            start,
            end: text.len(),
        });
    }
    out
}

/// Byte ranges of the paragraph breaks `\n[\t ]*\n+` outside fenced code blocks.
fn paragraph_breaks(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let fences = fences(text);
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\n' {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while j < bytes.len() && (bytes[j] == b' ' || bytes[j] == b'\t') {
            j += 1;
        }
        if j < bytes.len() && bytes[j] == b'\n' {
            while j < bytes.len() && bytes[j] == b'\n' {
                j += 1;
            }
            if !fences.iter().any(|f| f.start < i && i < f.end) {
                out.push((i, j));
            }
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

fn chunk_by_paragraph(text: &str, limit: usize) -> Vec<String> {
    if text.is_empty() {
        return Vec::new();
    }
    if limit == 0 {
        return vec![text.to_string()];
    }
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let breaks = paragraph_breaks(&text);
    if breaks.is_empty() {
        return chunk_by_length(&text, limit);
    }
    // Paragraphs as (start, end) byte ranges, trailing whitespace trimmed, blanks dropped.
    let mut paragraphs = Vec::new();
    let mut start = 0;
    for (b, e) in breaks.iter().copied().chain([(text.len(), text.len())]) {
        let part = trim_end_clusters(&text[start..b]);
        if !part.chars().all(is_js_whitespace) {
            paragraphs.push((start, start + part.len()));
        }
        start = e;
    }
    let mut out = Vec::new();
    let mut pending: Option<(usize, usize)> = None;
    for (s, e) in paragraphs {
        if let Some((ps, _)) = pending {
            if text[ps..e].chars().count() <= limit {
                pending = Some((ps, e));
                continue;
            }
            out.push(text[ps..pending.unwrap().1].to_string());
            pending = None;
        }
        if text[s..e].chars().count() <= limit {
            pending = Some((s, e));
        } else {
            out.extend(chunk_by_length(&text[s..e], limit));
        }
    }
    if let Some((ps, pe)) = pending {
        out.push(text[ps..pe].to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn len(text: &str, limit: usize) -> Vec<String> {
        chunk_text(text, limit, ChunkMode::Length)
    }

    fn nl(text: &str, limit: usize) -> Vec<String> {
        chunk_text(text, limit, ChunkMode::Newline)
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn reference_chunk_text_vectors() {
        let t = "Line one\n\nLine two\n\nLine three";
        assert_eq!(len(t, 1600), s(&[t]));
        assert_eq!(
            len(&"a".repeat(100), 60),
            vec!["a".repeat(60), "a".repeat(40)]
        );
        assert_eq!(
            len(
                "paragraph one line\n\nparagraph two starts here and continues",
                40
            ),
            s(&[
                "paragraph one line",
                "paragraph two starts here and continues"
            ])
        );
        assert_eq!(
            len(
                "This is a message that should break nicely near a word boundary.",
                30
            ),
            s(&[
                "This is a message that should",
                "break nicely near a word",
                "boundary."
            ])
        );
        assert_eq!(
            len("Supercalifragilisticexpialidocious", 10),
            s(&["Supercalif", "ragilistic", "expialidoc", "ious"])
        );
        assert_eq!(
            len("Heads up now (Though now I'm curious)ok", 35),
            s(&["Heads up now", "(Though now I'm curious)ok"])
        );
        assert_eq!(
            len("Hello (outer (inner) end) world", 26),
            s(&["Hello (outer (inner) end)", "world"])
        );
        assert_eq!(len("Hello) world (ok)", 12), s(&["Hello)", "world (ok)"]));
        let t = format!("({})", "a".repeat(80));
        let out = len(&t, 20);
        assert_eq!(out[0].chars().count(), 20);
        assert_eq!(out.concat(), t);
    }

    #[test]
    fn reference_edge_rules() {
        assert_eq!(len("", 10), Vec::<String>::new());
        assert_eq!(len("  keep  ", 0), s(&["  keep  "]));
        assert_eq!(len("  fits  ", 8), s(&["  fits  "]));
        // The last remainder keeps its trailing whitespace; cut chunks lose theirs.
        assert_eq!(len("aaaa bbbb  ", 6), s(&["aaaa", "bbbb  "]));
    }

    #[test]
    fn derived_imessage_vectors() {
        assert_eq!(
            len(&"a".repeat(4500), 4000),
            vec!["a".repeat(4000), "a".repeat(500)]
        );
        assert_eq!(len(&"b".repeat(4000), 4000).len(), 1);
    }

    #[test]
    fn limit_counts_chars_not_utf16_units() {
        // 10 emoji are 20 UTF-16 units but 10 chars: one chunk at limit 10.
        let t = "😀".repeat(10);
        assert_eq!(len(&t, 10), s(&[&t]));
        assert_eq!(len(&"😀".repeat(11), 10).len(), 2);
    }

    #[test]
    fn never_splits_a_grapheme_cluster_that_fits() {
        // A family emoji is 7 chars (4 people and 3 joiners); limit 10 cannot cut it.
        let family = "👨\u{200d}👩\u{200d}👧\u{200d}👦";
        let t = format!("abcdef{family}{family}");
        let out = len(&t, 10);
        assert_eq!(out, s(&["abcdef", family, family]));
        // Combining accents stay on their letter.
        let t = "e\u{301}".repeat(6);
        let out = len(&t, 5);
        assert!(out.iter().all(|c| !c.starts_with('\u{301}')), "{out:?}");
        assert_eq!(out.concat(), t);
    }

    #[test]
    fn a_cluster_longer_than_the_limit_is_hard_cut() {
        let family = "👨\u{200d}👩\u{200d}👧\u{200d}👦";
        let out = len(family, 3);
        assert!(out.iter().all(|c| c.chars().count() <= 3));
        assert_eq!(out.concat(), family);
    }

    #[test]
    fn crlf_breaks_like_the_reference() {
        assert_eq!(len("abc\r\nd", 4), s(&["abc", "d"]));
        assert_eq!(len("a bc\r\nd", 5), s(&["a bc", "d"]));
    }

    #[test]
    fn newline_mode_reference_vectors_that_do_not_pack() {
        assert_eq!(nl("Line one\nLine two", 1000), s(&["Line one\nLine two"]));
        assert_eq!(nl("Para one\n\nPara two", 10), s(&["Para one", "Para two"]));
        assert_eq!(nl("A\n\nB\n\n\nC", 1), s(&["A", "B", "C"]));
        assert_eq!(nl("one\r\n\r\ntwo", 3), s(&["one", "two"]));
        assert_eq!(nl("", 100), Vec::<String>::new());
        assert_eq!(nl("   \n\n   ", 100), Vec::<String>::new());
        let fence = "```python\ndef my_function():\n    x = 1\n\n    y = 2\n    return x + y\n```";
        assert_eq!(nl(fence, 1000), s(&[fence]));
        assert_eq!(
            nl(&format!("{fence}\n\nAfter"), fence.len() + 2),
            s(&[fence, "After"])
        );
        let t = "```js\nconst a = 1;\nconst b = 2;\n```\nAfter";
        assert_eq!(nl(t, 1000), s(&[t]));
    }

    #[test]
    fn newline_mode_packs_whole_paragraphs_up_to_the_limit() {
        assert_eq!(
            nl("Para one\n\nPara two", 1000),
            s(&["Para one\n\nPara two"])
        );
        assert_eq!(nl("A\n\nB\n\n\nC", 100), s(&["A\n\nB\n\n\nC"]));
        assert_eq!(nl("one\r\n\r\ntwo", 100), s(&["one\n\ntwo"]));
        assert_eq!(nl("aa\n\nbb\n\ncc", 6), s(&["aa\n\nbb", "cc"]));
        // An oversized paragraph is chunked by length and not packed with its neighbours.
        assert_eq!(
            nl("hi\n\nabcdefgh ijk\n\nyo", 8),
            s(&["hi", "abcdefgh", "ijk", "yo"])
        );
    }
}
