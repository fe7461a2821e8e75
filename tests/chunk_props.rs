//! Properties of the reply chunker (DESIGN decision 4), checked on generated text:
//! chunks fit the limit, lose nothing but whitespace at the cuts, never split a grapheme
//! cluster that fits, and on BMP text equal the reference chunker (reimplemented below on
//! UTF-16 units, the way the TypeScript original counts). The chunker as it was before it was
//! made fast is kept at the bottom (`old`), and the fast one must equal it on every input.

use imsg_gateway::config::ChunkMode;
use imsg_gateway::outbound::chunk_text;
use proptest::prelude::*;
use unicode_segmentation::UnicodeSegmentation;

/// JavaScript's `\s` / `trim()` whitespace.
fn js_ws(c: char) -> bool {
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

fn unit_ws(u: u16) -> bool {
    char::from_u32(u as u32).is_some_and(js_ws)
}

fn trim_end_units(s: &[u16]) -> &[u16] {
    let end = s.iter().rposition(|u| !unit_ws(*u)).map_or(0, |i| i + 1);
    &s[..end]
}

fn trim_start_units(s: &[u16]) -> &[u16] {
    let start = s.iter().position(|u| !unit_ws(*u)).unwrap_or(s.len());
    &s[start..]
}

/// The reference `chunkText` (reference §5.3), on UTF-16 code units.
fn reference_chunk(text: &str, limit: usize) -> Vec<String> {
    let units: Vec<u16> = text.encode_utf16().collect();
    if units.is_empty() {
        return vec![];
    }
    if limit == 0 || units.len() <= limit {
        return vec![text.to_string()];
    }
    let mut out = vec![];
    let mut rem: &[u16] = &units;
    while rem.len() > limit {
        let window = &rem[..limit];
        let mut depth = 0usize;
        let (mut last_nl, mut last_ws) = (-1i64, -1i64);
        for (i, &u) in window.iter().enumerate() {
            if u == b'(' as u16 {
                depth += 1;
            } else if u == b')' as u16 && depth > 0 {
                depth -= 1;
            } else if depth == 0 {
                if u == b'\n' as u16 {
                    last_nl = i as i64;
                } else if unit_ws(u) {
                    last_ws = i as i64;
                }
            }
        }
        let mut brk = if last_nl > 0 { last_nl } else { last_ws };
        if brk <= 0 {
            brk = limit as i64;
        }
        let brk = brk as usize;
        let chunk = trim_end_units(&rem[..brk]);
        if !chunk.is_empty() {
            out.push(String::from_utf16(chunk).unwrap());
        }
        let mut next = &rem[brk..];
        if next.first().is_some_and(|u| unit_ws(*u)) {
            next = &next[1..];
        }
        rem = trim_start_units(next);
    }
    if !rem.is_empty() {
        out.push(String::from_utf16(rem).unwrap());
    }
    out
}

/// Finds each chunk in `text` in order; everything between and around them must be
/// whitespace. Returns each chunk's byte range.
fn locate(text: &str, chunks: &[String]) -> Vec<(usize, usize)> {
    let mut pos = 0;
    let mut ranges = vec![];
    for c in chunks {
        assert!(!c.is_empty(), "empty chunk in {chunks:?}");
        // The chunk starts somewhere in the whitespace run at `pos` (a first chunk keeps
        // its leading whitespace, later ones lose it).
        let ws_end = pos + (text[pos..].len() - text[pos..].trim_start_matches(js_ws).len());
        let at = text[pos..ws_end]
            .char_indices()
            .map(|(i, _)| pos + i)
            .chain([ws_end])
            .find(|&at| text[at..].starts_with(c.as_str()));
        let Some(at) = at else {
            panic!(
                "chunk {c:?} is not next in {:?} (after whitespace); chunks {chunks:?}",
                &text[pos..]
            );
        };
        ranges.push((at, at + c.len()));
        pos = at + c.len();
    }
    assert!(
        text[pos..].chars().all(js_ws),
        "lost text {:?}; chunks {chunks:?}",
        &text[pos..]
    );
    ranges
}

/// Byte offsets where grapheme clusters start, plus the end; and each cluster's char count.
fn clusters(text: &str) -> Vec<(usize, usize, usize)> {
    text.grapheme_indices(true)
        .map(|(i, g)| (i, i + g.len(), g.chars().count()))
        .collect()
}

/// Asserts no cut lies strictly inside a cluster, unless that cluster is longer than the limit.
fn assert_no_split_clusters(
    text: &str,
    ranges: &[(usize, usize)],
    limit: usize,
    chunks: &[String],
) {
    let cl = clusters(text);
    for &(s, e) in ranges {
        for cut in [s, e] {
            if let Some(&(cs, ce, n)) = cl.iter().find(|(cs, ce, _)| *cs < cut && cut < *ce) {
                assert!(
                    n > limit,
                    "cut at {cut} splits cluster {:?} (fits limit {limit}); chunks {chunks:?}",
                    &text[cs..ce]
                );
            }
        }
    }
}

/// Text pieces that exercise every rule: words, whitespace kinds, parentheses, CRLF, combining
/// marks, emoji ZWJ sequences, flags, astral and CJK characters, fences.
fn piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "a",
        "b",
        "word",
        "Supercalifragilistic",
        " ",
        "  ",
        "\n",
        "\n\n",
        "\r\n",
        "\t",
        "(",
        ")",
        "(aside)",
        "é",
        "e\u{301}",
        "中文",
        "\u{a0}",
        "\u{3000}",
        "😀",
        "👨\u{200d}👩\u{200d}👧\u{200d}👦",
        "🇫🇷",
        "a\u{301}\u{302}\u{303}",
        "```\n",
        "x y z",
        "👍🏽",
    ])
}

fn rich_text() -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 0..60).prop_map(|v| v.concat())
}

/// BMP text in which every char is its own grapheme cluster (CRLF apart, which is whitespace).
fn bmp_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            'a', 'b', 'c', 'x', ' ', ' ', '\n', '\r', '\t', '(', ')', 'é', '中', '\u{a0}',
            '\u{3000}', '\u{2028}', '\u{feff}', '-', '.',
        ]),
        0..120,
    )
    .prop_map(|v| v.into_iter().collect())
}

/// ASCII words separated by spaces and newlines, no parentheses: where the break rules are
/// easy to state.
fn plain_lines() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        ("[a-z]{1,8}", prop_oneof![3 => Just(" "), 1 => Just("\n")]),
        1..60,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(|(w, sep)| format!("{w}{sep}"))
            .collect::<String>()
            .trim_end()
            .to_string()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// The same text and limit always give the same chunks, none of them empty or blank
    /// (a blank text is never chunked: a blank reply plans no sends).
    #[test]
    fn chunking_is_deterministic_and_never_empty(text in rich_text(), limit in 1usize..40) {
        prop_assume!(!text.trim().is_empty());
        for mode in [ChunkMode::Length, ChunkMode::Newline] {
            let a = chunk_text(&text, limit, mode);
            prop_assert_eq!(&a, &chunk_text(&text, limit, mode));
            prop_assert!(a.iter().all(|c| !c.trim().is_empty()), "{:?}", a);
        }
    }

    /// When the window of `limit` chars holds a newline (not at its start), the chunk ends
    /// at the last one: a newline is always preferred to a space or a hard cut.
    #[test]
    fn a_newline_in_the_window_is_always_preferred(text in plain_lines(), limit in 2usize..40) {
        let chunks = chunk_text(&text, limit, ChunkMode::Length);
        let mut rest: &str = &text;
        for c in &chunks {
            rest = rest.trim_start();
            if rest.len() > limit {
                let window = &rest[..limit];
                if let Some(nl) = window.rfind('\n').filter(|i| *i > 0) {
                    prop_assert_eq!(c.as_str(), window[..nl].trim_end(), "window {:?}", window);
                }
            }
            let at = rest.find(c.as_str()).expect("chunks come from the text in order");
            rest = &rest[at + c.len()..];
        }
    }

    #[test]
    fn length_chunks_fit_keep_everything_and_respect_clusters(text in rich_text(), limit in 1usize..40) {
        let chunks = chunk_text(&text, limit, ChunkMode::Length);
        for c in &chunks {
            prop_assert!(c.chars().count() <= limit, "{c:?} longer than {limit}");
        }
        let ranges = locate(&text, &chunks);
        assert_no_split_clusters(&text, &ranges, limit, &chunks);
    }

    #[test]
    fn newline_chunks_fit_keep_everything_and_respect_clusters(text in rich_text(), limit in 1usize..40) {
        let chunks = chunk_text(&text, limit, ChunkMode::Newline);
        let normalised = text.replace("\r\n", "\n").replace('\r', "\n");
        for c in &chunks {
            prop_assert!(c.chars().count() <= limit, "{c:?} longer than {limit}");
        }
        let ranges = locate(&normalised, &chunks);
        assert_no_split_clusters(&normalised, &ranges, limit, &chunks);
    }

    #[test]
    fn bmp_text_chunks_exactly_like_the_reference(text in bmp_text(), limit in 1usize..50) {
        prop_assert_eq!(chunk_text(&text, limit, ChunkMode::Length), reference_chunk(&text, limit));
    }

    #[test]
    fn arbitrary_bmp_words_chunk_like_the_reference(
        words in prop::collection::vec("[a-zA-Z()]{0,12}", 0..40),
        seps in prop::collection::vec(prop::sample::select(vec![" ", "\n", "  ", "\n\n", " (", ") "]), 0..40),
        limit in 1usize..60,
    ) {
        let text: String = words.iter().zip(seps.iter().chain(std::iter::repeat(&" ")))
            .map(|(w, s)| format!("{w}{s}")).collect();
        prop_assert_eq!(chunk_text(&text, limit, ChunkMode::Length), reference_chunk(&text, limit));
    }
}

#[test]
fn the_reimplemented_reference_passes_the_reference_vectors() {
    // Guards the oracle itself, so the equality property means something.
    assert_eq!(
        reference_chunk("Heads up now (Though now I'm curious)ok", 35),
        ["Heads up now", "(Though now I'm curious)ok"]
    );
    assert_eq!(
        reference_chunk(
            "This is a message that should break nicely near a word boundary.",
            30
        ),
        [
            "This is a message that should",
            "break nicely near a word",
            "boundary."
        ]
    );
    assert_eq!(
        reference_chunk("Hello) world (ok)", 12),
        ["Hello)", "world (ok)"]
    );
    // And it counts UTF-16 units, which is why astral text is not compared.
    assert_eq!(reference_chunk(&"😀".repeat(10), 10).len(), 2);
    assert_eq!(chunk_text(&"😀".repeat(10), 10, ChunkMode::Length).len(), 1);
}

/// Pieces for the comparison with the old chunker: everything `piece()` has, plus what decides
/// a boundary in rarer ways (a space joined by a mark, a Prepend or a SpacingMark, a lone CR,
/// an odd regional indicator, Indic conjuncts, Hangul jamo, a lone ZWJ), more whitespace
/// kinds, fences of both kinds, and blank lines holding spaces.
fn oracle_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => piece().prop_map(str::to_string),
        6 => prop::sample::select(vec![
            " \u{301}",
            "\u{600}",
            "\u{600} ",
            " \u{903}",
            "\u{915}\u{903}",
            "\r",
            "\r\r\n",
            "\u{1F1EB}",
            "\u{915}\u{94d}\u{937}",
            "\u{928}\u{94d}\u{926}\u{940}",
            "\u{915}\u{94d}\u{200d}\u{937}",
            "\u{1100}\u{1161}\u{11a8}",
            "\u{d55c}\u{ad6d}",
            "\u{200d}",
            " \u{200d}😀",
            "😀\u{301}\u{200d}😀",
            "\u{feff}",
            "\u{2028}",
            "\u{2029}",
            "\u{200a}",
            "\u{202f}",
            "\u{1680}",
            "\u{b}",
            "\u{c}",
            "\u{85}",
            "\u{200b}",
            "~~~\n",
            "````\n",
            "   ```js\n",
            "    ```\n",
            "\n \t\n",
            "\n  \n\n",
            "((",
            "))",
            ") (",
            "(\u{301}",
            "日本語のテキスト",
        ])
        .prop_map(str::to_string),
        1 => (0usize..70).prop_map(|n| format!("e{}", "\u{301}".repeat(n))),
        1 => (1usize..40).prop_map(|n| "word ".repeat(n)),
        1 => (1usize..20).prop_map(|n| "🇫🇷".repeat(n)),
        1 => (1usize..20).prop_map(|n| "👨\u{200d}👩\u{200d}👧 ".repeat(n)),
        1 => (1usize..80).prop_map(|n| "x".repeat(n)),
    ]
}

fn oracle_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::collection::vec(oracle_piece(), 0..60),
        1 => prop::collection::vec(oracle_piece(), 0..400),
    ]
    .prop_map(|v| v.concat())
}

fn oracle_limit() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 1usize..50,
        1 => prop::sample::select(vec![64usize, 100, 257, 1000, 4000]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn length_mode_chunks_exactly_as_before(text in oracle_text(), limit in oracle_limit()) {
        prop_assert_eq!(
            chunk_text(&text, limit, ChunkMode::Length),
            old::chunk_text(&text, limit, ChunkMode::Length)
        );
    }

    #[test]
    fn newline_mode_chunks_exactly_as_before(text in oracle_text(), limit in oracle_limit()) {
        prop_assert_eq!(
            chunk_text(&text, limit, ChunkMode::Newline),
            old::chunk_text(&text, limit, ChunkMode::Newline)
        );
    }

    #[test]
    fn arbitrary_unicode_chunks_exactly_as_before(
        chars in prop::collection::vec(
            prop_oneof![
                3 => any::<char>(),
                2 => prop::sample::select(vec![' ', '\n', '\r', '(', ')', '\u{301}', '\u{200d}', '\u{3000}']),
            ],
            0..120,
        ),
        limit in 1usize..50,
    ) {
        let text: String = chars.into_iter().collect();
        for mode in [ChunkMode::Length, ChunkMode::Newline] {
            prop_assert_eq!(chunk_text(&text, limit, mode), old::chunk_text(&text, limit, mode));
        }
    }

    #[test]
    fn rich_text_chunks_exactly_as_before(text in rich_text(), limit in 0usize..40) {
        for mode in [ChunkMode::Length, ChunkMode::Newline] {
            prop_assert_eq!(chunk_text(&text, limit, mode), old::chunk_text(&text, limit, mode));
        }
    }
}

/// What the old chunker makes of one grapheme cluster longer than the limit (checked against
/// it below): runs of exactly `limit` chars, the last one shorter, nothing trimmed.
fn hard_cut(text: &str, limit: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(limit).map(|c| c.iter().collect()).collect()
}

#[test]
fn the_hard_cut_expectation_is_what_the_old_chunker_does() {
    let text = format!("a{}", "\u{301}".repeat(20_000));
    for mode in [ChunkMode::Length, ChunkMode::Newline] {
        assert_eq!(old::chunk_text(&text, 400, mode), hard_cut(&text, 400));
    }
}

#[test]
fn an_enormous_cluster_is_hard_cut_at_the_limit_as_before() {
    // One base letter and 200,000 combining marks: a single cluster of 200,001 chars.
    let text = format!("a{}", "\u{301}".repeat(200_000));
    let expected = hard_cut(&text, 4000);
    assert_eq!(expected.len(), 51);
    assert_eq!(expected[50], "\u{301}");
    for mode in [ChunkMode::Length, ChunkMode::Newline] {
        assert_eq!(chunk_text(&text, 4000, mode), expected);
    }
}

#[test]
fn an_enormous_cluster_inside_prose_chunks_as_before() {
    // Small enough that the old chunker, quadratic in a cluster's length, stays quick.
    let cluster = format!("a{}", "\u{301}".repeat(1_500));
    let text =
        format!("Hello there, (an aside) world.\n\n{cluster} and more words\r\nafter it {cluster}");
    for limit in [3, 100, 1000, 4000] {
        for mode in [ChunkMode::Length, ChunkMode::Newline] {
            assert_eq!(
                chunk_text(&text, limit, mode),
                old::chunk_text(&text, limit, mode),
                "limit {limit}, {mode:?}"
            );
        }
    }
}

/// Deterministic prose: sentences of words (a few accented, a few emoji), some parenthesised
/// asides, paragraphs, now and then a fence; the shape the bench times, only smaller.
fn prose(bytes: usize, seed: u64) -> String {
    const WORDS: &[&str] = &[
        "the", "gateway", "sends", "a", "reply", "to", "every", "chat", "and", "waits", "for",
        "imsg", "café", "naïve", "😀", "message", "chunk", "limit", "is", "of", "👍🏽", "—",
    ];
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    let mut s = String::new();
    while s.len() < bytes {
        match next() % 40 {
            0 => s.push_str("\n\n"),
            1 => s.push_str(" (as noted before) "),
            2 => s.push('\n'),
            3 if next() % 10 == 0 => s.push_str("\n```\ncode\n\nmore code\n```\n"),
            _ => {
                s.push_str(WORDS[next() % WORDS.len()]);
                s.push(' ');
            }
        }
    }
    s
}

#[test]
fn larger_texts_chunk_exactly_as_before() {
    let texts = [
        prose(200_000, 1),
        prose(50_000, 2).replace(' ', ""),
        prose(50_000, 3).replace('\n', "\r\n"),
    ];
    for text in &texts {
        for limit in [1, 10, 100, 333, 4000] {
            for mode in [ChunkMode::Length, ChunkMode::Newline] {
                let new = chunk_text(text, limit, mode);
                let old = old::chunk_text(text, limit, mode);
                assert!(new == old, "limit {limit}, {mode:?}: the chunks differ");
            }
        }
    }
}

/// The chunker as it was before it was rewritten for speed, kept verbatim as the oracle the
/// fast one must equal output for output (it walks every grapheme cluster of each window, so
/// it is slow on huge clusters, which is why it lives only here).
mod old {
    use imsg_gateway::config::ChunkMode;
    use unicode_segmentation::UnicodeSegmentation;

    pub fn chunk_text(text: &str, limit: usize, mode: ChunkMode) -> Vec<String> {
        match mode {
            ChunkMode::Length => chunk_by_length(text, limit),
            ChunkMode::Newline => chunk_by_paragraph(text, limit),
        }
    }

    /// Whitespace as JavaScript's `\s` and `trim()` see it, so cuts match the reference.
    fn is_js_whitespace(c: char) -> bool {
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
}
