//! Chunking reply text (DESIGN decision 4).
//!
//! `Length` mode is the reference chunker (`chunkText`, reference §5.3) with two changes: the
//! limit counts chars (Unicode scalar values) instead of UTF-16 units, and a cut never falls
//! inside a grapheme cluster unless that one cluster is longer than the limit. Breaks prefer
//! the last newline in the window, then the last other whitespace, then a hard cut; both are
//! looked for only outside parentheses (a parenthesised aside stays whole when it can). Text
//! whose characters are all in the BMP and that has no multi-char clusters (other than CRLF)
//! chunks exactly as the reference does. When one cluster is longer than the limit it is cut
//! at exactly the limit, and the remainder is segmented afresh from the cut, as the slice it
//! now is (so marks left over from a cut cluster start a cluster of their own).
//!
//! `Newline` mode splits at paragraph breaks (a blank line) outside fenced code blocks and
//! packs whole paragraphs into a chunk while they fit; a paragraph longer than the limit is
//! chunked by length. (The reference never packs; DESIGN decision 4 asks for packing.)
//!
//! Replies can be megabytes (`agent.maxReplyBytes`), so both modes take time linear in the
//! text, whatever the limit and however long its clusters: windows are scanned as bytes (chars
//! counted a vector of bytes at a time, `memchr` for newlines and parentheses, whitespace
//! searched backwards from the window's end), and grapheme boundaries are asked of
//! `GraphemeCursor` only at the few places a cut could fall, never by walking every cluster of
//! a window (which made one cluster of millions of marks quadratic).

use std::borrow::Cow;

use memchr::{memchr, memchr2_iter, memchr_iter, memrchr};
use unicode_segmentation::GraphemeCursor;

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

/// Bytes that can begin a whitespace char other than `\n`: the ASCII ones and the UTF-8 lead
/// bytes of the others (U+00A0: C2; U+1680: E1; U+2000..U+205F: E2; U+3000: E3; U+FEFF: EF).
/// Most text has few of them, so blocks without one are skipped whole.
fn may_start_space(b: u8) -> bool {
    matches!(
        b,
        b'\t' | 0x0B | 0x0C | b'\r' | b' ' | 0xC2 | 0xE1..=0xE3 | 0xEF
    )
}

/// A UTF-8 continuation byte (`0b10xx_xxxx`): every other byte starts a char.
fn is_continuation(b: u8) -> bool {
    (b as i8) < -64
}

/// Whether a grapheme cluster boundary lies at byte `at` of `s`, `s` segmented on its own (as
/// `grapheme_indices` on that slice would). The cursor is given the whole of `s`, so it never
/// asks for more context; the ends are boundaries by definition (and the cursor refuses them).
fn is_boundary(s: &str, at: usize) -> bool {
    at == 0
        || at == s.len()
        || GraphemeCursor::new(at, s.len(), true)
            .is_boundary(s, 0)
            .expect("the whole string is given")
}

/// The last cluster boundary of `s` before byte `at` (`at` > 0).
fn prev_boundary(s: &str, at: usize) -> usize {
    GraphemeCursor::new(at, s.len(), true)
        .prev_boundary(s, 0)
        .expect("the whole string is given")
        .unwrap_or(0)
}

/// The byte offset of char `n` (0-based) in `bytes`, or `None` when `bytes` holds `n` chars
/// or fewer (so `Some` also says the text is longer than a limit of `n`).
fn char_offset(bytes: &[u8], n: usize) -> Option<usize> {
    // Chars are counted by the bytes that start them, whole blocks at a time while char `n`
    // lies beyond them: big blocks first, then small ones, so few bytes are left one by one.
    let (i, seen) = skip_blocks::<64>(bytes, 0, 0, n);
    let (i, mut seen) = skip_blocks::<8>(bytes, i, seen, n);
    for (j, &b) in bytes[i..].iter().enumerate() {
        if !is_continuation(b) {
            if seen == n {
                return Some(i + j);
            }
            seen += 1;
        }
    }
    None
}

/// From byte `i`, where `seen` chars have started, skips whole blocks of `N` bytes while char
/// `n` does not start in them; returns the new `i` and `seen`.
fn skip_blocks<const N: usize>(
    bytes: &[u8],
    mut i: usize,
    mut seen: usize,
    n: usize,
) -> (usize, usize) {
    // A block's count fits a `u8` (N <= 255), which keeps the loop in byte-wide vector lanes
    // (a `usize` count widens every byte to 64 bits and runs at a third of the speed).
    while let Some(block) = bytes.get(i..i + N) {
        let starts = usize::from(
            block
                .iter()
                .map(|&b| u8::from(!is_continuation(b)))
                .sum::<u8>(),
        );
        if seen + starts > n {
            break;
        }
        seen += starts;
        i += N;
    }
    (i, seen)
}

/// Where the trailing whitespace clusters of `s` begin (`s.len()` if there are none).
fn trim_end_blank(s: &str) -> usize {
    // Clusters lying wholly in the trailing whitespace chars are blank; the one holding the
    // last other char is not, so the trim stops at the first boundary at or after that char.
    let mut end = s.trim_end_matches(is_js_whitespace).len();
    while !is_boundary(s, end) {
        end += s[end..].chars().next().map_or(1, char::len_utf8);
    }
    end
}

/// Where the leading whitespace clusters of `s` end (`s.len()` if `s` is all of them).
fn trim_start_blank(s: &str) -> usize {
    // The mirror of `trim_end_blank`: a whitespace char joined to the first other char (by a
    // mark after it, say) belongs to that char's cluster and stays.
    let at = s.len() - s.trim_start_matches(is_js_whitespace).len();
    if is_boundary(s, at) {
        at
    } else {
        prev_boundary(s, at)
    }
}

/// Whether the whitespace char at byte `at` of `s` is in a cluster of whitespace only, so that
/// dropping that cluster at a cut never leaves half a cluster behind.
fn in_blank_cluster(s: &str, at: usize) -> bool {
    let mut start = at;
    while !is_boundary(s, start) {
        match s[..start].chars().next_back() {
            Some(c) if is_js_whitespace(c) => start -= c.len_utf8(),
            _ => return false,
        }
    }
    let mut end = at + s[at..].chars().next().map_or(1, char::len_utf8);
    while !is_boundary(s, end) {
        match s[end..].chars().next() {
            Some(c) if is_js_whitespace(c) => end += c.len_utf8(),
            _ => return false,
        }
    }
    true
}

fn chunk_by_length(text: &str, limit: usize) -> Vec<String> {
    if text.is_empty() {
        return Vec::new();
    }
    if limit == 0 {
        return vec![text.to_string()];
    }
    let mut out = Vec::new();
    let mut spans = Vec::new();
    let mut rest = text;
    while let Some(window_end) = char_offset(rest.as_bytes(), limit) {
        let cut = find_cut(rest, window_end, &mut spans);
        let end = trim_end_blank(&rest[..cut]);
        if end > 0 {
            out.push(rest[..end].to_string());
        }
        // The remainder is segmented on its own from the cut (see the module docs on hard
        // cuts), so the cursors below are given the remainder, not the whole text.
        rest = &rest[cut..];
        rest = &rest[trim_start_blank(rest)..];
    }
    if !rest.is_empty() {
        out.push(rest.to_string());
    }
    out
}

/// The byte offset where the next chunk ends, for a `rest` longer than the limit, whose
/// window (the first `limit` chars) ends at byte `window_end`. `spans` is scratch space.
///
/// The window is scanned as bytes: parentheses are ASCII, so `memchr` finds them and with
/// them the spans at depth 0; the last newline and the last other whitespace are searched
/// backwards from the window's end, and grapheme boundaries are consulted only at the few
/// places a cut could go. Grapheme work stays inside the window (at most a walk back over the
/// cluster the window ends in) plus the whitespace just past it, so a huge cluster costs what
/// ordinary text costs.
fn find_cut(rest: &str, window_end: usize, spans: &mut Vec<(usize, usize)>) -> usize {
    let window = &rest.as_bytes()[..window_end];
    depth_zero_spans(window, spans);
    // A newline is always a cluster of its own (or CR LF's second half), so it needs no
    // grapheme check; one at index 0 does not count, and then neither does an earlier one.
    for &(lo, hi) in spans.iter().rev() {
        if let Some(i) = memrchr(b'\n', &window[lo..hi]) {
            if lo + i > 0 {
                return lo + i;
            }
            break;
        }
    }
    for &(lo, hi) in spans.iter().rev() {
        let mut hi = hi;
        while let Some(at) = rfind_space(rest, lo, hi) {
            if at == 0 {
                break;
            }
            if in_blank_cluster(rest, at) {
                return at;
            }
            hi = at;
        }
    }
    // A hard cut at the last cluster boundary in the window; a single cluster longer than the
    // limit is the only thing that gets split.
    let hard = if is_boundary(rest, window_end) {
        window_end
    } else {
        prev_boundary(rest, window_end)
    };
    if hard == 0 {
        window_end
    } else {
        hard
    }
}

/// Fills `spans` with the byte ranges of `window` whose chars are at parenthesis depth 0, the
/// only ones where the reference looks for a break: `(` opens a level, `)` closes one if any
/// is open and is an ordinary char otherwise.
fn depth_zero_spans(window: &[u8], spans: &mut Vec<(usize, usize)>) {
    spans.clear();
    let mut depth = 0usize;
    let mut start = 0;
    for i in memchr2_iter(b'(', b')', window) {
        if window[i] == b'(' {
            if depth == 0 {
                spans.push((start, i));
            }
            depth += 1;
        } else if depth > 0 {
            depth -= 1;
            if depth == 0 {
                start = i + 1;
            }
        }
    }
    if depth == 0 {
        spans.push((start, window.len()));
    }
}

/// The start of the last whitespace char other than `\n` that starts in bytes `lo..hi` of `s`.
fn rfind_space(s: &str, lo: usize, hi: usize) -> Option<usize> {
    const BLOCK: usize = 32;
    let bytes = s.as_bytes();
    let mut end = hi;
    while end > lo {
        let start = end.saturating_sub(BLOCK).max(lo);
        // `fold`, not `any`: without the early exit the compiler vectorises the test.
        if bytes[start..end]
            .iter()
            .fold(false, |seen, &b| seen | may_start_space(b))
        {
            for i in (start..end).rev() {
                // A byte in this set is ASCII or a lead byte, so `i` starts a char.
                if may_start_space(bytes[i]) && s[i..].chars().next().is_some_and(is_js_whitespace)
                {
                    return Some(i);
                }
            }
        }
        end = start;
    }
    None
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

/// The fenced code blocks of `text`, in order and disjoint.
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
    // Breaks come in order and fences are in order and disjoint, so one pass over both
    // finds the fence that could hold each break (a text full of fences stays linear).
    let mut fence = 0;
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(off) = memchr(b'\n', &bytes[from..]) {
        let i = from + off;
        let mut j = i + 1;
        while j < bytes.len() && (bytes[j] == b' ' || bytes[j] == b'\t') {
            j += 1;
        }
        if j < bytes.len() && bytes[j] == b'\n' {
            while j < bytes.len() && bytes[j] == b'\n' {
                j += 1;
            }
            while fences.get(fence).is_some_and(|f| f.end <= i) {
                fence += 1;
            }
            if !fences.get(fence).is_some_and(|f| f.start < i && i < f.end) {
                out.push((i, j));
            }
            from = j;
        } else {
            from = i + 1;
        }
    }
    out
}

/// `\r\n` and then any other `\r` become `\n`, as the reference normalises; no copy when
/// there is no `\r`.
fn normalise_newlines(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut crs = memchr_iter(b'\r', bytes).peekable();
    if crs.peek().is_none() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    for i in crs {
        out.push_str(&text[from..i]);
        // A `\n` right after goes out with the next piece, and stands for the pair.
        if bytes.get(i + 1) != Some(&b'\n') {
            out.push('\n');
        }
        from = i + 1;
    }
    out.push_str(&text[from..]);
    Cow::Owned(out)
}

/// Char counts at increasing byte offsets of one text, each counted from the previous one,
/// so counting every paragraph costs one pass over the text.
struct CharCounter<'a> {
    text: &'a str,
    byte: usize,
    chars: usize,
}

impl CharCounter<'_> {
    fn at(&mut self, byte: usize) -> usize {
        self.chars += self.text[self.byte..byte].chars().count();
        self.byte = byte;
        self.chars
    }
}

fn chunk_by_paragraph(text: &str, limit: usize) -> Vec<String> {
    if text.is_empty() {
        return Vec::new();
    }
    if limit == 0 {
        return vec![text.to_string()];
    }
    let text = normalise_newlines(text);
    let text = text.as_ref();
    let breaks = paragraph_breaks(text);
    if breaks.is_empty() {
        return chunk_by_length(text, limit);
    }
    // Paragraphs as (start, end) byte ranges, trailing whitespace trimmed, blanks dropped
    // (a part left non-empty by the trim ends in a cluster that is not whitespace).
    let mut paragraphs = Vec::new();
    let mut start = 0;
    for (b, e) in breaks.iter().copied().chain([(text.len(), text.len())]) {
        let end = start + trim_end_blank(&text[start..b]);
        if end > start {
            paragraphs.push((start, end));
        }
        start = e;
    }
    let mut counter = CharCounter {
        text,
        byte: 0,
        chars: 0,
    };
    let mut out = Vec::new();
    // The paragraphs packed so far: start byte, end byte, start char.
    let mut pending: Option<(usize, usize, usize)> = None;
    for (s, e) in paragraphs {
        let (s_char, e_char) = (counter.at(s), counter.at(e));
        if let Some((ps, pe, ps_char)) = pending {
            if e_char - ps_char <= limit {
                pending = Some((ps, e, ps_char));
                continue;
            }
            out.push(text[ps..pe].to_string());
            pending = None;
        }
        if e_char - s_char <= limit {
            pending = Some((s, e, s_char));
        } else {
            out.extend(chunk_by_length(&text[s..e], limit));
        }
    }
    if let Some((ps, pe, _)) = pending {
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
    fn char_offset_counts_chars_across_blocks() {
        // Two-byte chars and then ASCII, so char `n` falls in 64-byte blocks, 8-byte blocks
        // and the bytes after them, at odd and even offsets.
        let t = format!("{}abc", "é".repeat(100));
        for n in 0..103 {
            let expected = t.char_indices().nth(n).map(|(b, _)| b);
            assert_eq!(char_offset(t.as_bytes(), n), expected, "char {n}");
        }
        assert_eq!(char_offset(t.as_bytes(), 103), None);
        assert_eq!(char_offset(b"", 0), None);
    }

    #[test]
    fn newlines_normalise_like_the_reference() {
        for t in ["a\r\nb", "a\rb", "\r\r\n\n\r", "\r", "no returns"] {
            let reference = t.replace("\r\n", "\n").replace('\r', "\n");
            assert_eq!(normalise_newlines(t), reference.as_str(), "{t:?}");
        }
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
