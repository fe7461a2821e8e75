//! `cargo bench --bench chunk`: the reply chunker's speed (DESIGN decision 4), one line per
//! figure, `chunk mode=.. input=.. limit=.. mb_per_s=..` (MB are 10^6 bytes of input), plus
//! the time for one grapheme cluster of 2,000,000 combining marks, `.. ms=..`.
//!
//! Inputs are generated here, deterministically: `prose` is 10 MB of English-like sentences in
//! paragraphs (a few accented words, dashes, emoji and parenthesised asides among them);
//! `nowhitespace` is 10 MB of URL- or base64-like text with no whitespace at all, so every
//! chunk is a hard cut. Each figure is the best of several runs.

use std::hint::black_box;
use std::time::{Duration, Instant};

use imsg_gateway::config::ChunkMode;
use imsg_gateway::outbound::chunk_text;

const SIZE: usize = 10_000_000;
const MARKS: usize = 2_000_000;

/// A small LCG, so the inputs are the same on every run and machine.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize
    }
}

fn prose() -> String {
    const WORDS: &[&str] = &[
        "the", "gateway", "sends", "a", "reply", "to", "every", "chat", "and", "then", "waits",
        "for", "the", "next", "message", "from", "imsg", "while", "an", "agent", "thinks", "about",
        "what", "to", "say", "in", "return", "it", "is", "quick", "enough", "that", "nobody",
        "notices", "café", "naïve", "résumé", "—", "😀", "👍🏽", "of", "with", "we",
    ];
    let mut rng = Lcg(0x5eed);
    let mut s = String::with_capacity(SIZE + 64);
    while s.len() < SIZE {
        let sentences = 2 + rng.next() % 7;
        for _ in 0..sentences {
            let words = 5 + rng.next() % 20;
            for w in 0..words {
                if w > 0 {
                    s.push(' ');
                }
                if rng.next().is_multiple_of(60) {
                    s.push_str("(as said before) ");
                }
                s.push_str(WORDS[rng.next() % WORDS.len()]);
            }
            let stop = if rng.next().is_multiple_of(8) {
                "? "
            } else {
                ". "
            };
            s.push_str(stop);
        }
        s.push_str("\n\n");
    }
    s
}

fn no_whitespace() -> String {
    const ALPHABET: &[u8] =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_.?&%";
    let mut rng = Lcg(0xb10b);
    (0..SIZE)
        .map(|_| ALPHABET[rng.next() % ALPHABET.len()] as char)
        .collect()
}

/// The best wall time of `f` over at least three runs and about a second (one run if a single
/// run already takes longer than that).
fn best_time(mut f: impl FnMut()) -> Duration {
    let started = Instant::now();
    let mut best = Duration::MAX;
    let mut runs = 0;
    while runs < 3 || started.elapsed() < Duration::from_secs(1) {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed());
        runs += 1;
        if runs == 1 && best > Duration::from_secs(1) {
            break;
        }
    }
    best
}

fn mode_name(mode: ChunkMode) -> &'static str {
    match mode {
        ChunkMode::Length => "length",
        ChunkMode::Newline => "newline",
    }
}

fn main() {
    let inputs = [("prose", prose()), ("nowhitespace", no_whitespace())];
    for mode in [ChunkMode::Length, ChunkMode::Newline] {
        for (name, text) in &inputs {
            for limit in [4000, 100] {
                let t = best_time(|| {
                    black_box(chunk_text(black_box(text), limit, mode));
                });
                let mb_per_s = text.len() as f64 / 1e6 / t.as_secs_f64();
                println!(
                    "chunk mode={} input={name} limit={limit} mb_per_s={mb_per_s:.1}",
                    mode_name(mode)
                );
            }
        }
    }
    let cluster = format!("a{}", "\u{301}".repeat(MARKS));
    let t = best_time(|| {
        black_box(chunk_text(black_box(&cluster), 4000, ChunkMode::Length));
    });
    println!(
        "chunk mode=length input=one_cluster marks={MARKS} limit=4000 ms={:.1}",
        t.as_secs_f64() * 1e3
    );
}
