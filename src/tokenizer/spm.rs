//! SentencePiece-style tokenizing (llama.cpp's `llm_tokenizer_spm_session`): start
//! from UTF-8 characters, keep merging the adjacent pair whose concatenation is the
//! highest-scoring token (leftmost first on ties), then fall back to byte tokens
//! for whatever is not a token.

use super::vocab::Vocab;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Length of a UTF-8 sequence from its first byte (llama.cpp's `unicode_len_utf8`).
pub(crate) fn utf8_len(b: u8) -> usize {
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4][(b >> 4) as usize]
}

#[derive(Clone, Copy)]
struct Sym {
    start: u32,
    n: u32,
    prev: i32,
    next: i32,
}

/// One candidate merge; the heap pops the highest score, then the leftmost.
struct Bigram {
    score: f32,
    left: u32,
    right: u32,
    size: u32,
}

impl PartialEq for Bigram {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Bigram {
    fn cmp(&self, o: &Self) -> Ordering {
        self.score
            .partial_cmp(&o.score)
            .unwrap_or(Ordering::Equal)
            .then(o.left.cmp(&self.left))
    }
}

/// Splits `text` into symbols, one per UTF-8 character.
pub(crate) fn symbols(text: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(text.len());
    let mut offs = 0;
    while offs < text.len() {
        let n = utf8_len(text[offs]).min(text.len() - offs);
        out.push((offs, n));
        offs += n;
    }
    out
}

/// Tokenizes `text` (spaces already escaped as `▁`), appending to `out`.
/// `byte_tokens[b]` is the token for byte `b` (`<0xXX>`), used for the leftovers.
pub(crate) fn tokenize(v: &Vocab, byte_tokens: &[Option<u32>; 256], text: &[u8], out: &mut Vec<u32>) {
    let mut syms: Vec<Sym> = symbols(text)
        .into_iter()
        .enumerate()
        .map(|(i, (start, n))| Sym {
            start: start as u32,
            n: n as u32,
            prev: i as i32 - 1,
            next: i as i32 + 1,
        })
        .collect();
    if let Some(last) = syms.last_mut() {
        last.next = -1;
    }
    let piece = |s: Sym, n: u32| &text[s.start as usize..(s.start + n) as usize];
    let mut queue = BinaryHeap::with_capacity(syms.len());
    let try_add = |syms: &[Sym], queue: &mut BinaryHeap<Bigram>, left: i32, right: i32| {
        if left < 0 || right < 0 {
            return;
        }
        let (l, r) = (syms[left as usize], syms[right as usize]);
        let size = l.n + r.n;
        if let Some(tok) = v.text_to_token(piece(l, size)) {
            let score = v.scores[tok as usize];
            queue.push(Bigram {
                score,
                left: left as u32,
                right: right as u32,
                size,
            });
        }
    };
    for i in 1..syms.len() as i32 {
        try_add(&syms, &mut queue, i - 1, i);
    }
    while let Some(b) = queue.pop() {
        let (left, right) = (b.left as usize, b.right as usize);
        let (l, r) = (syms[left], syms[right]);
        if l.n == 0 || r.n == 0 || l.n + r.n != b.size {
            continue;
        }
        syms[left].n += r.n;
        syms[right].n = 0;
        syms[left].next = r.next;
        if r.next >= 0 {
            syms[r.next as usize].prev = left as i32;
        }
        try_add(&syms, &mut queue, l.prev, left as i32);
        try_add(&syms, &mut queue, left as i32, r.next);
    }
    // Every merged symbol is a token; a single character may not be: bytes then.
    let mut i = if syms.is_empty() { -1 } else { 0 };
    while i >= 0 {
        let s = syms[i as usize];
        let piece = piece(s, s.n);
        match v.text_to_token(piece) {
            Some(t) => out.push(t),
            None => out.extend(piece.iter().filter_map(|&b| byte_tokens[b as usize].or(v.unk))),
        }
        i = s.next;
    }
}
