//! Properties of the reply chunker (DESIGN decision 4), checked on generated text:
//! chunks fit the limit, lose nothing but whitespace at the cuts, never split a grapheme
//! cluster that fits, and on BMP text equal the reference chunker (reimplemented below on
//! UTF-16 units, the way the TypeScript original counts).

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

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

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
