//! Pre-tokenizer splitters: text → words, as llama.cpp's `unicode_regex_split`.
//!
//! llama.cpp applies its regexes one after another, each refining the pieces the
//! previous one left (matches and the gaps between them both become pieces). The
//! common GPT-2 / LLaMA-3 / Qwen2 / Qwen3.5 regexes and the newline splitter are
//! hand-written there and here, transcribed branch for branch. The others run on
//! a "collapsed" text in which every codepoint ≥ 128 becomes one character naming
//! its category, with `\p{..}` in the regex rewritten to match that character
//! (llama.cpp does this to use `std::regex`), or, for regexes without `\p{..}`,
//! on the text with non-ASCII whitespace turned into `\x0B`. Both are reproduced
//! here with `fancy-regex` so that results agree with llama.cpp's, quirks included.

use super::unicode_data::RANGES;
use fancy_regex::{Regex, RegexBuilder};
use std::sync::OnceLock;

pub(crate) const F_NUMBER: u16 = 0x02;
pub(crate) const F_LETTER: u16 = 0x04;
pub(crate) const F_ACCENT: u16 = 0x10;
pub(crate) const F_PUNCT: u16 = 0x20;
pub(crate) const F_SYMBOL: u16 = 0x40;
pub(crate) const F_WS: u16 = 0x100;

const OUT_OF_RANGE: u32 = u32::MAX;

fn is_whitespace(c: u32) -> bool {
    matches!(c, 0x09..=0x0D | 0x20 | 0x85 | 0xA0 | 0x1680 | 0x2000..=0x200A | 0x2028 | 0x2029 | 0x202F | 0x205F | 0x3000)
}

fn flags_slow(c: u32) -> u16 {
    if c >= 0x110000 {
        return 0x01;
    }
    let i = RANGES.partition_point(|&(start, _)| start <= c) - 1;
    RANGES[i].1 as u16 | if is_whitespace(c) { F_WS } else { 0 }
}

/// llama.cpp's `unicode_cpt_flags_from_cpt`: category bits plus whitespace.
pub(crate) fn cpt_flags(c: u32) -> u16 {
    static BMP: OnceLock<Vec<u16>> = OnceLock::new();
    if c < 0x10000 {
        BMP.get_or_init(|| (0..0x10000).map(flags_slow).collect())[c as usize]
    } else {
        flags_slow(c)
    }
}

/// One splitting step.
enum Step {
    Gpt2,
    /// LLaMA-3 (`digits` = 3), Qwen2 (1) and Qwen3.5 (1, marks count as letters).
    Llama3 {
        digits: usize,
        marks: bool,
    },
    Newlines,
    Regex {
        re: Regex,
        collapsed: bool,
    },
}

/// A compiled pre-tokenizer: the steps of one [`super::Pre`] kind.
pub(crate) struct PreTokenizer {
    steps: Vec<Step>,
}

const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3_A: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const LLAMA3_B: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const NEWLINES: &str = r"[^\n]+|[\n]+";

/// `\p{..}` names llama.cpp collapses, with the category they stand for.
#[rustfmt::skip]
const UCATS: [(&str, u16); 10] = [
    (r"\p{N}", F_NUMBER), (r"\p{L}", F_LETTER), (r"\p{P}", F_PUNCT), (r"\p{M}", F_ACCENT), (r"\p{S}", F_SYMBOL),
    (r"\p{Lu}", F_LETTER), (r"\p{Ll}", F_LETTER), (r"\p{Lt}", F_LETTER), (r"\p{Lm}", F_LETTER), (r"\p{Lo}", F_LETTER),
];

/// The character standing for a category in collapsed text (llama.cpp uses bytes
/// 0xD0..0xD5; private-use codepoints keep the text a valid `str`).
fn collapsed_char(cat: u16) -> char {
    match cat {
        F_NUMBER => '\u{E0D1}',
        F_LETTER => '\u{E0D2}',
        F_PUNCT => '\u{E0D3}',
        F_ACCENT => '\u{E0D4}',
        F_SYMBOL => '\u{E0D5}',
        _ => '\u{E0D0}',
    }
}

/// The ASCII members of a category, as class items (llama.cpp's `k_ucat_map`).
fn ascii_members(cat: u16) -> &'static str {
    match cat {
        F_NUMBER => "0-9",
        F_LETTER => "A-Za-z",
        F_PUNCT => r"!-#%-*,-/:-;?-@\[-\]_\{\}",
        F_SYMBOL => r"\$\+<->\^`\|\~",
        _ => "",
    }
}

/// Rewrites `\p{..}` as llama.cpp does for its collapsed text.
fn collapse_regex(expr: &str) -> Result<String, String> {
    if !expr.is_ascii() {
        return Err(format!(
            "regex mixes unicode categories and non-ASCII characters: {expr:?}"
        ));
    }
    let b = expr.as_bytes();
    let mut out = String::with_capacity(expr.len() * 2);
    let mut inside = false;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'[' && (i == 0 || b[i - 1] != b'\\') {
            out.push('[');
            inside = true;
        } else if inside && b[i] == b']' && b[i - 1] != b'\\' {
            out.push(']');
            inside = false;
        } else if b[i] == b'\\' && i + 3 < b.len() && b[i + 1] == b'p' && b[i + 2] == b'{' {
            let close = expr[i + 3..].find('}').map(|c| c + i + 3).filter(|&c| c <= i + 10);
            let cat = close.and_then(|c| UCATS.iter().find(|(p, _)| *p == &expr[i..=c]).map(|&(_, cat)| (c, cat)));
            match cat {
                Some((close, cat)) => {
                    if !inside {
                        out.push('[');
                    }
                    out.push(collapsed_char(cat));
                    out.push_str(ascii_members(cat));
                    if !inside {
                        out.push(']');
                    }
                    i = close;
                }
                None => out.push('\\'),
            }
        } else {
            out.push(b[i] as char);
        }
        i += 1;
    }
    Ok(out)
}

impl PreTokenizer {
    pub(crate) fn new(exprs: &[&str]) -> Result<Self, String> {
        let mut steps = Vec::with_capacity(exprs.len());
        for &e in exprs {
            steps.push(match e {
                GPT2 => Step::Gpt2,
                LLAMA3_A | LLAMA3_B => Step::Llama3 {
                    digits: 3,
                    marks: false,
                },
                QWEN2 => Step::Llama3 {
                    digits: 1,
                    marks: false,
                },
                QWEN35 => Step::Llama3 { digits: 1, marks: true },
                NEWLINES => Step::Newlines,
                _ => {
                    let collapsed = UCATS.iter().any(|(p, _)| e.contains(p));
                    let pattern = if collapsed { collapse_regex(e)? } else { e.to_string() };
                    let re = RegexBuilder::new(&pattern)
                        .backtrack_limit(usize::MAX / 2)
                        .build()
                        .map_err(|err| format!("pre-tokenizer regex {e:?}: {err}"))?;
                    Step::Regex { re, collapsed }
                }
            });
        }
        Ok(Self { steps })
    }

    /// Splits `text` into words, returned as byte ranges of `text`.
    pub(crate) fn split(&self, text: &str) -> Vec<(usize, usize)> {
        let cpts: Vec<u32> = text.chars().map(|c| c as u32).collect();
        let flags: Vec<u16> = cpts.iter().map(|&c| cpt_flags(c)).collect();
        let mut collapsed: Option<String> = None;
        let mut plain: Option<String> = None;
        let mut offsets = vec![cpts.len()];
        for step in &self.steps {
            let cx = Ctx {
                cpts: &cpts,
                flags: &flags,
            };
            offsets = match step {
                Step::Gpt2 => cx.gpt2(&offsets),
                Step::Llama3 { digits, marks } => cx.llama3(&offsets, *digits, *marks),
                Step::Newlines => cx.newlines(&offsets),
                Step::Regex { re, collapsed: true } => regex_split(
                    re,
                    collapsed.get_or_insert_with(|| collapse_text(&cpts, &flags)),
                    &offsets,
                ),
                Step::Regex { re, collapsed: false } => {
                    regex_split(re, plain.get_or_insert_with(|| plain_text(&cpts, &flags)), &offsets)
                }
            };
        }
        // codepoint lengths → byte ranges of the original text
        let mut ranges = Vec::with_capacity(offsets.len());
        let mut chars = text.char_indices().map(|(i, _)| i).chain(std::iter::once(text.len()));
        let mut byte = chars.next().unwrap_or(0);
        for len in offsets {
            let start = byte;
            for _ in 0..len {
                byte = chars.next().unwrap_or(text.len());
            }
            ranges.push((start, byte));
        }
        ranges
    }
}

/// Collapsed text: ASCII kept, other whitespace → `\x0B`, the rest → its category character.
fn collapse_text(cpts: &[u32], flags: &[u16]) -> String {
    cpts.iter()
        .zip(flags)
        .map(|(&c, &f)| match c {
            0..=0x7F => c as u8 as char,
            _ if f & F_WS != 0 => '\x0B',
            _ => collapsed_char(f & 0xFF),
        })
        .collect()
}

/// The text as it is, but with non-ASCII whitespace → `\x0B` (llama.cpp's wregex path).
fn plain_text(cpts: &[u32], flags: &[u16]) -> String {
    cpts.iter()
        .zip(flags)
        .map(|(&c, &f)| {
            if c > 0x7F && f & F_WS != 0 {
                '\x0B'
            } else {
                char::from_u32(c).unwrap_or('\u{FFFD}')
            }
        })
        .collect()
}

/// `unicode_regex_split_stl`: every match and every gap between matches becomes a piece.
fn regex_split(re: &Regex, text: &str, offsets: &[usize]) -> Vec<usize> {
    let mut out = Vec::with_capacity(offsets.len());
    let mut bytes = text.char_indices().map(|(i, _)| i).chain(std::iter::once(text.len()));
    let mut seg_byte = bytes.next().unwrap_or(0);
    for &len in offsets {
        let start = seg_byte;
        for _ in 0..len {
            seg_byte = bytes.next().unwrap_or(text.len());
        }
        let seg = &text[start..seg_byte];
        // matches come in order: count characters incrementally
        let (mut at_byte, mut at_char) = (0usize, 0usize);
        let mut to_char = |b: usize| {
            at_char += seg[at_byte..b].chars().count();
            at_byte = b;
            at_char
        };
        let mut last = 0;
        for m in re.find_iter(seg) {
            let Ok(m) = m else { break };
            let (ms, me) = (to_char(m.start()), to_char(m.end()));
            if ms > last {
                out.push(ms - last);
            }
            out.push(me - ms);
            last = me;
        }
        if last < len {
            out.push(len - last);
        }
    }
    out
}

/// The hand-written splitters, over one text's codepoints and their flags.
struct Ctx<'a> {
    cpts: &'a [u32],
    flags: &'a [u16],
}

/// Range bookkeeping of one segment: `cpt`/`flags` outside it read as "nothing".
struct Seg<'a> {
    cx: &'a Ctx<'a>,
    ini: usize,
    end: usize,
    prev_end: usize,
    out: &'a mut Vec<usize>,
}

impl Seg<'_> {
    fn cpt(&self, pos: usize) -> u32 {
        if self.ini <= pos && pos < self.end {
            self.cx.cpts[pos]
        } else {
            OUT_OF_RANGE
        }
    }
    fn flags(&self, pos: usize) -> u16 {
        if self.ini <= pos && pos < self.end {
            self.cx.flags[pos]
        } else {
            0
        }
    }
    fn add(&mut self, end: usize) -> usize {
        let len = end - self.prev_end;
        if len > 0 {
            self.out.push(len);
        }
        self.prev_end = end;
        len
    }
    /// `'s|'t|'re|'ve|'m|'ll|'d`, optionally case-insensitive: the end of the match.
    fn contraction(&self, pos: usize, fold: bool) -> Option<usize> {
        if self.cpt(pos) != '\'' as u32 || pos + 1 >= self.end {
            return None;
        }
        let low = |c: u32| if fold && (0x41..=0x5A).contains(&c) { c + 32 } else { c };
        let n1 = low(self.cpt(pos + 1));
        if [b's', b't', b'm', b'd'].iter().any(|&b| n1 == b as u32) {
            return Some(pos + 2);
        }
        if pos + 2 < self.end {
            let n2 = low(self.cpt(pos + 2));
            let pair = |a: u8, b: u8| n1 == a as u32 && n2 == b as u32;
            if pair(b'r', b'e') || pair(b'v', b'e') || pair(b'l', b'l') {
                return Some(pos + 3);
            }
        }
        None
    }
}

impl Ctx<'_> {
    fn segments(&self, offsets: &[usize], mut f: impl FnMut(&mut Seg)) -> Vec<usize> {
        let mut out = Vec::with_capacity(offsets.len());
        let mut start = 0;
        for &len in offsets {
            let mut seg = Seg {
                cx: self,
                ini: start,
                end: start + len,
                prev_end: start,
                out: &mut out,
            };
            f(&mut seg);
            start += len;
        }
        out
    }

    /// `unicode_regex_split_custom_gpt2`.
    fn gpt2(&self, offsets: &[usize]) -> Vec<usize> {
        self.segments(offsets, |s| {
            let mut pos = s.ini;
            while pos < s.end {
                let cpt = s.cpt(pos);
                let flags = s.flags(pos);
                if let Some(e) = s.contraction(pos, false) {
                    pos += s.add(e);
                    continue;
                }
                let space = cpt == ' ' as u32;
                let mut f2 = if space { s.flags(pos + 1) } else { flags };
                let runs: [&dyn Fn(u16) -> bool; 3] = [&|f| f & F_LETTER != 0, &|f| f & F_NUMBER != 0, &|f| {
                    f & (F_WS | F_LETTER | F_NUMBER) == 0 && f != 0
                }];
                if let Some(run) = runs.iter().find(|run| run(f2)) {
                    pos += space as usize;
                    while run(f2) {
                        pos += 1;
                        f2 = s.flags(pos);
                    }
                    s.add(pos);
                    continue;
                }
                let mut n_ws = 0;
                while s.flags(pos + n_ws) & F_WS != 0 {
                    n_ws += 1;
                }
                if n_ws > 1 && s.cpt(pos + n_ws) != OUT_OF_RANGE {
                    pos += n_ws - 1;
                } else if n_ws > 0 {
                    pos += n_ws;
                } else {
                    pos += 1;
                }
                s.add(pos);
            }
        })
    }

    /// `unicode_regex_split_custom_llama3` (digits 3), `_qwen2` (1) and `_qwen35` (marks).
    fn llama3(&self, offsets: &[usize], digits: usize, marks: bool) -> Vec<usize> {
        let letter = if marks { F_LETTER | F_ACCENT } else { F_LETTER };
        self.segments(offsets, |s| {
            let mut pos = s.ini;
            while pos < s.end {
                let cpt = s.cpt(pos);
                let flags = s.flags(pos);
                if let Some(e) = s.contraction(pos, true) {
                    pos += s.add(e);
                    continue;
                }
                let is_rn = |c: u32| c == '\r' as u32 || c == '\n' as u32;
                // [^\r\n\p{L}\p{N}]?\p{L}+
                if !(is_rn(cpt) || flags & F_NUMBER != 0) && (flags & letter != 0 || s.flags(pos + 1) & letter != 0) {
                    pos += 1;
                    while s.flags(pos) & letter != 0 {
                        pos += 1;
                    }
                    s.add(pos);
                    continue;
                }
                // \p{N}{1,digits}
                if flags & F_NUMBER != 0 {
                    let mut ini = pos;
                    while s.flags(pos) & F_NUMBER != 0 {
                        pos += 1;
                        if pos - ini >= digits {
                            s.add(pos);
                            ini = pos;
                        }
                    }
                    s.add(pos);
                    continue;
                }
                // <space>?[^\s\p{L}\p{N}]+[\r\n]*
                let not_word = |f: u16| f & (F_WS | letter | F_NUMBER) == 0;
                let mut f2 = if cpt == ' ' as u32 { s.flags(pos + 1) } else { flags };
                if not_word(f2) && flags != 0 {
                    pos += (cpt == ' ' as u32) as usize;
                    while not_word(f2) && f2 != 0 {
                        pos += 1;
                        f2 = s.flags(pos);
                    }
                    while is_rn(s.cpt(pos)) {
                        pos += 1;
                    }
                    s.add(pos);
                    continue;
                }
                let mut n_ws = 0;
                let mut last_rn = 0;
                while s.flags(pos + n_ws) & F_WS != 0 {
                    if is_rn(s.cpt(pos + n_ws)) {
                        last_rn = pos + n_ws + 1;
                    }
                    n_ws += 1;
                }
                if last_rn > 0 {
                    pos = last_rn;
                } else if n_ws > 1 && s.cpt(pos + n_ws) != OUT_OF_RANGE {
                    pos += n_ws - 1;
                } else if n_ws > 0 {
                    pos += n_ws;
                } else {
                    pos += 1;
                }
                s.add(pos);
            }
        })
    }

    /// `unicode_regex_split_custom_newlines`: runs of newlines and runs of the rest.
    fn newlines(&self, offsets: &[usize]) -> Vec<usize> {
        self.segments(offsets, |s| {
            let mut pos = s.ini;
            while pos < s.end {
                let nl = s.cx.cpts[pos] == '\n' as u32;
                while pos < s.end && (s.cx.cpts[pos] == '\n' as u32) == nl {
                    pos += 1;
                }
                s.add(pos);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_compiles() {
        for pre in super::super::pretype::ALL {
            PreTokenizer::new(super::super::pretype::exprs(*pre)).unwrap_or_else(|e| panic!("{pre:?}: {e}"));
        }
    }

    #[test]
    fn gpt2_splits() {
        let p = PreTokenizer::new(&[GPT2]).unwrap();
        let t = "Hello world's  3 apples!!\n";
        let words: Vec<&str> = p.split(t).into_iter().map(|(a, b)| &t[a..b]).collect();
        assert_eq!(words, ["Hello", " world", "'s", " ", " 3", " apples", "!!", "\n"]);
    }
}
