//! Unicode classes and the BPE pre-tokenizers (word splitters) as llama.cpp runs them.
//!
//! llama.cpp does not run the pre-tokenizer regexes with a regex engine for the common
//! models: it has hand-written splitters for the GPT-2, Llama-3 and Qwen2 patterns whose
//! behaviour (for instance on non-ASCII whitespace and at fragment ends) is the reference
//! the token ids are compared against. These splitters follow the same rules, over the
//! same character classes: `\p{L}`, `\p{N}`, `\p{P}` from the Unicode general categories
//! (tables taken from `regex-syntax`) and llama.cpp's whitespace set.

use std::ops::Range;
use std::sync::OnceLock;

use regex_syntax::hir::{Class, HirKind};

const LETTER: u8 = 1;
const NUMBER: u8 = 2;
const WHITESPACE: u8 = 4;
const PUNCT: u8 = 8;

/// llama.cpp's `\s`: Unicode White_Space.
const WHITESPACE_SET: [u32; 25] = [
    0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004,
    0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000,
];

struct Tables {
    letter: Vec<(u32, u32)>,
    number: Vec<(u32, u32)>,
    punct: Vec<(u32, u32)>,
    ascii: [u8; 128],
}

/// The ranges of a Unicode class expression such as `\p{L}`.
fn class_ranges(pattern: &str) -> Vec<(u32, u32)> {
    match regex_syntax::parse(pattern).map(|h| h.kind().clone()) {
        Ok(HirKind::Class(Class::Unicode(c))) => c
            .ranges()
            .iter()
            .map(|r| (u32::from(r.start()), u32::from(r.end())))
            .collect(),
        // The patterns are constants known to parse to a class; an empty table only
        // makes every character "other", it cannot fail open.
        _ => Vec::new(),
    }
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| {
        let mut t = Tables {
            letter: class_ranges(r"\p{L}"),
            number: class_ranges(r"\p{N}"),
            punct: class_ranges(r"\p{P}"),
            ascii: [0; 128],
        };
        for c in 0u32..128 {
            t.ascii[c as usize] = slow_flags(&t, c);
        }
        t
    })
}

fn in_ranges(r: &[(u32, u32)], c: u32) -> bool {
    r.binary_search_by(|&(lo, hi)| {
        if hi < c {
            std::cmp::Ordering::Less
        } else if lo > c {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    })
    .is_ok()
}

fn slow_flags(t: &Tables, c: u32) -> u8 {
    let mut f = 0;
    if in_ranges(&t.letter, c) {
        f |= LETTER;
    }
    if in_ranges(&t.number, c) {
        f |= NUMBER;
    }
    if in_ranges(&t.punct, c) {
        f |= PUNCT;
    }
    if WHITESPACE_SET.contains(&c) {
        f |= WHITESPACE;
    }
    f
}

fn flags_of(t: &Tables, c: char) -> u8 {
    let u = u32::from(c);
    match t.ascii.get(u as usize) {
        Some(f) => *f,
        None => slow_flags(t, u),
    }
}

/// The pre-tokenizer of a BPE vocabulary (`tokenizer.ggml.pre`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizer {
    /// llama.cpp's "default": punctuation runs, the GPT-2 pattern, number runs, digit triples.
    Default,
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    Gpt2,
    /// The Llama-3 pattern (case-insensitive contractions, digits in groups of up to three).
    Llama3,
    /// The Llama-3 pattern with single digits (Qwen2).
    Qwen2,
}

/// One character of the text being split, with its classes.
struct Cp {
    c: char,
    f: u8,
}

/// A view of one chunk `[ini, end)` of the characters: outside it, nothing matches.
struct Chunk<'a> {
    cps: &'a [Cp],
    ini: usize,
    end: usize,
}

impl Chunk<'_> {
    fn cpt(&self, pos: usize) -> Option<char> {
        (self.ini <= pos && pos < self.end)
            .then(|| self.cps.get(pos).map(|c| c.c))
            .flatten()
    }
    /// Flags at `pos`, and whether `pos` is inside the chunk.
    fn flags(&self, pos: usize) -> (u8, bool) {
        if self.ini <= pos && pos < self.end {
            (self.cps.get(pos).map_or(0, |c| c.f), true)
        } else {
            (0, false)
        }
    }
    fn is(&self, pos: usize, f: u8) -> bool {
        self.flags(pos).0 & f != 0
    }
    /// `[^\s\p{L}\p{N}]`: any character of the chunk that is none of those.
    fn is_other(&self, pos: usize) -> bool {
        let (f, inside) = self.flags(pos);
        inside && f & (WHITESPACE | LETTER | NUMBER) == 0
    }
}

/// Splits `text` into words (byte ranges) the way llama.cpp's pre-tokenizer `pre` does.
pub fn split(pre: PreTokenizer, text: &str) -> Vec<Range<usize>> {
    let t = tables();
    let mut cps = Vec::with_capacity(text.len());
    let mut offs = Vec::with_capacity(text.len() + 1);
    for (i, c) in text.char_indices() {
        cps.push(Cp {
            c,
            f: flags_of(t, c),
        });
        offs.push(i);
    }
    offs.push(text.len());
    let all = 0..cps.len();
    let whole = std::slice::from_ref(&all);
    let chunks = match pre {
        PreTokenizer::Gpt2 => custom(&cps, whole, gpt2),
        PreTokenizer::Llama3 => custom(&cps, whole, |c, s| llama3(c, s, 3)),
        PreTokenizer::Qwen2 => custom(&cps, whole, |c, s| llama3(c, s, 1)),
        PreTokenizer::Default => {
            let punct = |cp: &Cp| cp.f & PUNCT != 0 || "$+<=>^~|".contains(cp.c);
            let a = runs(&cps, whole, punct);
            let b = custom(&cps, &a, gpt2);
            let c = runs(&cps, &b, |cp: &Cp| cp.f & NUMBER != 0);
            digit_triples(&cps, &c)
        }
    };
    chunks
        .into_iter()
        .filter_map(|r| Some(*offs.get(r.start)?..*offs.get(r.end)?))
        .collect()
}

/// Applies a hand-written splitter to every chunk.
fn custom(
    cps: &[Cp],
    chunks: &[Range<usize>],
    f: impl Fn(&Chunk<'_>, &mut Vec<Range<usize>>),
) -> Vec<Range<usize>> {
    let mut out = Vec::with_capacity(cps.len() / 3 + 1);
    for r in chunks {
        f(
            &Chunk {
                cps,
                ini: r.start,
                end: r.end,
            },
            &mut out,
        );
    }
    out
}

/// Emits `[*prev, end)` when non-empty and moves `prev` to `end`; returns the length.
fn emit(out: &mut Vec<Range<usize>>, prev: &mut usize, end: usize) -> usize {
    let len = end.saturating_sub(*prev);
    if len > 0 {
        out.push(*prev..end);
    }
    *prev = end;
    len
}

/// The contraction at `pos` (`'s`, `'t`, `'m`, `'d`: 2; `'re`, `'ve`, `'ll`: 3).
fn contraction(c: &Chunk<'_>, pos: usize, ignore_case: bool) -> Option<usize> {
    if c.cpt(pos)? != '\'' {
        return None;
    }
    let low = |p| {
        c.cpt(p).map(|x: char| {
            if ignore_case {
                x.to_ascii_lowercase()
            } else {
                x
            }
        })
    };
    let n1 = low(pos + 1)?;
    if matches!(n1, 's' | 't' | 'm' | 'd') {
        return Some(2);
    }
    let n2 = low(pos + 2)?;
    matches!((n1, n2), ('r', 'e') | ('v', 'e') | ('l', 'l')).then_some(3)
}

/// Whitespace run at `pos`: its length and the end of its last `\r`/`\n` (0 if none).
fn whitespace_run(c: &Chunk<'_>, pos: usize) -> (usize, usize) {
    let mut n = 0;
    let mut last_nl = 0;
    while c.is(pos + n, WHITESPACE) {
        if matches!(c.cpt(pos + n), Some('\r' | '\n')) {
            last_nl = pos + n + 1;
        }
        n += 1;
    }
    (n, last_nl)
}

fn gpt2(c: &Chunk<'_>, out: &mut Vec<Range<usize>>) {
    let mut prev = c.ini;
    let mut pos = c.ini;
    while pos < c.end {
        if let Some(n) = contraction(c, pos, false) {
            pos += emit(out, &mut prev, pos + n);
            continue;
        }
        // <space>?\p{L}+ | <space>?\p{N}+ | <space>?[^\s\p{L}\p{N}]+
        let probe = if c.cpt(pos) == Some(' ') {
            pos + 1
        } else {
            pos
        };
        let (f, _) = c.flags(probe);
        let class: Option<&dyn Fn(usize) -> bool> = if f & LETTER != 0 {
            Some(&|p| c.is(p, LETTER))
        } else if f & NUMBER != 0 {
            Some(&|p| c.is(p, NUMBER))
        } else if c.is_other(probe) {
            Some(&|p| c.is_other(p))
        } else {
            None
        };
        if let Some(class) = class {
            pos = probe;
            while class(pos) {
                pos += 1;
            }
            emit(out, &mut prev, pos);
            continue;
        }
        let (n, _) = whitespace_run(c, pos);
        // \s+(?!\S)
        if n > 1 && c.cpt(pos + n).is_some() {
            pos += n - 1;
            emit(out, &mut prev, pos);
            continue;
        }
        // \s+
        if n > 0 {
            pos += n;
            emit(out, &mut prev, pos);
            continue;
        }
        pos += 1;
        emit(out, &mut prev, pos);
    }
}

fn llama3(c: &Chunk<'_>, out: &mut Vec<Range<usize>>, max_digits: usize) {
    let mut prev = c.ini;
    let mut pos = c.ini;
    while pos < c.end {
        if let Some(n) = contraction(c, pos, true) {
            pos += emit(out, &mut prev, pos + n);
            continue;
        }
        let cpt = c.cpt(pos);
        let (f, _) = c.flags(pos);
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if !matches!(cpt, Some('\r' | '\n'))
            && f & NUMBER == 0
            && (f & LETTER != 0 || c.is(pos + 1, LETTER))
        {
            pos += 1;
            while c.is(pos, LETTER) {
                pos += 1;
            }
            emit(out, &mut prev, pos);
            continue;
        }
        // \p{N}{1,max}
        if f & NUMBER != 0 {
            let mut ini = pos;
            while c.is(pos, NUMBER) {
                pos += 1;
                if pos - ini >= max_digits {
                    emit(out, &mut prev, pos);
                    ini = pos;
                }
            }
            emit(out, &mut prev, pos);
            continue;
        }
        // <space>?[^\s\p{L}\p{N}]+[\r\n]*
        let probe = if cpt == Some(' ') { pos + 1 } else { pos };
        if c.is_other(probe) {
            pos = probe;
            while c.is_other(pos) {
                pos += 1;
            }
            while matches!(c.cpt(pos), Some('\r' | '\n')) {
                pos += 1;
            }
            emit(out, &mut prev, pos);
            continue;
        }
        let (n, last_nl) = whitespace_run(c, pos);
        // \s*[\r\n]+
        if last_nl > 0 {
            pos = last_nl;
            emit(out, &mut prev, pos);
            continue;
        }
        // \s+(?!\S)
        if n > 1 && c.cpt(pos + n).is_some() {
            pos += n - 1;
            emit(out, &mut prev, pos);
            continue;
        }
        // \s+
        if n > 0 {
            pos += n;
            emit(out, &mut prev, pos);
            continue;
        }
        pos += 1;
        emit(out, &mut prev, pos);
    }
}

/// Regex-style split by maximal runs of `class`: matches and the gaps between them.
fn runs(cps: &[Cp], chunks: &[Range<usize>], class: impl Fn(&Cp) -> bool) -> Vec<Range<usize>> {
    let mut out = Vec::with_capacity(chunks.len());
    for r in chunks {
        let mut start = r.start;
        let mut pos = r.start;
        while pos < r.end {
            if cps.get(pos).is_some_and(&class) {
                let m = pos;
                while pos < r.end && cps.get(pos).is_some_and(&class) {
                    pos += 1;
                }
                if m > start {
                    out.push(start..m);
                }
                out.push(m..pos);
                start = pos;
            } else {
                pos += 1;
            }
        }
        if start < r.end {
            out.push(start..r.end);
        }
    }
    out
}

/// Regex-style split by `[0-9][0-9][0-9]` (ASCII digits), leftmost matches first.
fn digit_triples(cps: &[Cp], chunks: &[Range<usize>]) -> Vec<Range<usize>> {
    let digit = |p: usize| cps.get(p).is_some_and(|c| c.c.is_ascii_digit());
    let mut out = Vec::with_capacity(chunks.len());
    for r in chunks {
        let mut start = r.start;
        let mut pos = r.start;
        while pos + 3 <= r.end {
            if digit(pos) && digit(pos + 1) && digit(pos + 2) {
                if pos > start {
                    out.push(start..pos);
                }
                out.push(pos..pos + 3);
                pos += 3;
                start = pos;
            } else {
                pos += 1;
            }
        }
        if start < r.end {
            out.push(start..r.end);
        }
    }
    out
}

fn gpt2_printable(b: u32) -> bool {
    (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
}

/// GPT-2's reversible byte-to-character map (printable bytes map to themselves, the
/// others to U+0100.. in byte order) and its inverse over U+0000..U+01FF.
struct ByteMap {
    to_char: [char; 256],
    to_byte: [Option<u8>; 512],
}

fn byte_map() -> &'static ByteMap {
    static M: OnceLock<ByteMap> = OnceLock::new();
    M.get_or_init(|| {
        let mut m = ByteMap {
            to_char: ['\0'; 256],
            to_byte: [None; 512],
        };
        let mut n = 0u32;
        for b in 0u8..=255 {
            let cp = if gpt2_printable(b.into()) {
                u32::from(b)
            } else {
                n += 1;
                255 + n
            };
            if let (Some(slot), Some(c)) = (m.to_char.get_mut(usize::from(b)), char::from_u32(cp)) {
                *slot = c;
            }
            if let Some(slot) = m.to_byte.get_mut(cp as usize) {
                *slot = Some(b);
            }
        }
        m
    })
}

/// Appends the GPT-2 mapped characters of `bytes` to `out`.
pub fn byte_encode(bytes: &[u8], out: &mut String) {
    let m = byte_map();
    for b in bytes {
        if let Some(c) = m.to_char.get(usize::from(*b)) {
            out.push(*c);
        }
    }
}

/// The byte a GPT-2 mapped character stands for.
pub fn char_to_byte(c: char) -> Option<u8> {
    byte_map()
        .to_byte
        .get(u32::from(c) as usize)
        .copied()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::{PreTokenizer, byte_encode, char_to_byte, split};

    fn words(pre: PreTokenizer, text: &str) -> Vec<&str> {
        split(pre, text)
            .into_iter()
            .filter_map(|r| text.get(r))
            .collect()
    }

    #[test]
    fn pre_tokenizers() {
        let t = "Hello, world! 123456 x";
        assert_eq!(
            words(PreTokenizer::Default, t),
            ["Hello", ",", " world", "!", " ", "123", "456", " x"]
        );
        assert_eq!(
            words(PreTokenizer::Gpt2, t),
            ["Hello", ",", " world", "!", " 123456", " x"]
        );
        assert_eq!(
            words(PreTokenizer::Llama3, t),
            ["Hello", ",", " world", "!", " ", "123", "456", " x"]
        );
        assert_eq!(
            words(PreTokenizer::Qwen2, "I'M 42\n\n  x  "),
            ["I", "'M", " ", "4", "2", "\n\n", " ", " x", "  "]
        );
        assert_eq!(
            words(PreTokenizer::Gpt2, "I'M it's"),
            ["I", "'", "M", " it", "'s"]
        );
        // Non-ASCII whitespace and letters use the Unicode classes.
        assert_eq!(
            words(PreTokenizer::Llama3, "über\u{3000}日本"),
            ["über", "\u{3000}日本"]
        );
    }

    #[test]
    fn byte_map_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        let mut s = String::new();
        byte_encode(&all, &mut s);
        assert_eq!(s.chars().count(), 256);
        assert_eq!(
            s.chars()
                .map(|c| char_to_byte(c).unwrap())
                .collect::<Vec<_>>(),
            all
        );
        assert_eq!(s.chars().nth(32), Some('Ġ'));
    }
}
