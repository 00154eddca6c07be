//! Byte-pair tokenizing (llama.cpp's `llm_tokenizer_bpe_session`): pre-tokenize
//! into words, GPT-2 byte-encode them, then within each word keep merging the
//! adjacent pair with the lowest merge rank (leftmost first on ties).

use super::intern::{fmix64, hash};
use super::pretok::PreTokenizer;
use super::pretype::{byte_encode, exprs, Pre};
use super::spm::utf8_len;
use super::vocab::Vocab;
use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

/// GPT-2's byte → printable character map.
pub(crate) fn byte_to_char(b: u8) -> char {
    let c = match b {
        0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF => b as u32,
        0x00..=0x20 => 256 + b as u32,
        0x7F..=0xA0 => 256 + 33 + (b - 0x7F) as u32,
        0xAD => 256 + 67,
    };
    char::from_u32(c).unwrap_or('\u{FFFD}')
}

/// The inverse of [`byte_to_char`].
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    match c as u32 {
        c @ (0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF) => Some(c as u8),
        c @ 256..=288 => Some((c - 256) as u8),
        c @ 289..=322 => Some((c - 289 + 0x7F) as u8),
        323 => Some(0xAD),
        _ => None,
    }
}

/// Hasher for keys that are already hashes.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = hash(bytes);
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = x;
    }
}

/// Merge ranks and the pre-tokenizer of a BPE vocabulary.
pub(crate) struct Bpe {
    /// Key of (left hash, right hash) → rank (the merge's index; the first of
    /// duplicates wins). A hit is confirmed against the merge's text.
    ranks: HashMap<u64, u32, BuildHasherDefault<KeyHasher>>,
    merges: Vec<u8>,
    merge_ends: Vec<u32>,
    /// Merges whose key another merge already holds (in practice none).
    spill: HashMap<(Vec<u8>, Vec<u8>), u32>,
    pretok: PreTokenizer,
    byte_encode: bool,
    /// Gemma 4: a word of newlines that is a token stays whole.
    newline_words: bool,
}

impl std::fmt::Debug for Bpe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bpe")
            .field("merges", &self.merge_ends.len())
            .field("byte_encode", &self.byte_encode)
            .finish()
    }
}

/// A merge's two parts: llama.cpp splits at the first space after the first byte.
fn split(m: &[u8]) -> (&[u8], &[u8]) {
    match m.iter().skip(1).position(|&c| c == b' ') {
        Some(p) => (&m[..p + 1], &m[p + 2..]),
        None => (b"", b""),
    }
}

fn key(hl: u64, hr: u64) -> u64 {
    fmix64(hl.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ hr)
}

impl Bpe {
    /// Reads `merges` ("left right", rank = index).
    pub(crate) fn new(merges: &[String], pre: Pre) -> Result<Self, String> {
        let mut b = Self {
            ranks: HashMap::with_capacity_and_hasher(merges.len(), Default::default()),
            merges: Vec::with_capacity(merges.iter().map(|m| m.len()).sum()),
            merge_ends: Vec::with_capacity(merges.len()),
            spill: HashMap::new(),
            pretok: PreTokenizer::new(exprs(pre))?,
            byte_encode: byte_encode(pre),
            newline_words: pre == Pre::Gemma4,
        };
        for (i, m) in merges.iter().enumerate() {
            b.merges.extend_from_slice(m.as_bytes());
            b.merge_ends.push(b.merges.len() as u32);
            let (l, r) = split(m.as_bytes());
            match b.ranks.entry(key(hash(l), hash(r))) {
                Entry::Vacant(e) => {
                    e.insert(i as u32);
                }
                Entry::Occupied(e) => {
                    let j = *e.get() as usize;
                    let start = if j == 0 { 0 } else { b.merge_ends[j - 1] as usize };
                    if split(&b.merges[start..b.merge_ends[j] as usize]) != (l, r) {
                        b.spill.entry((l.to_vec(), r.to_vec())).or_insert(i as u32);
                    }
                }
            }
        }
        Ok(b)
    }

    /// The rank of merging `l` and `r` (hashes `hl`, `hr`), if they merge.
    fn rank(&self, l: &[u8], hl: u64, r: &[u8], hr: u64) -> Option<u32> {
        if let Some(&i) = self.ranks.get(&key(hl, hr)) {
            let i = i as usize;
            let start = if i == 0 { 0 } else { self.merge_ends[i - 1] as usize };
            if split(&self.merges[start..self.merge_ends[i] as usize]) == (l, r) {
                return Some(i as u32);
            }
        }
        if self.spill.is_empty() {
            return None;
        }
        self.spill.get(&(l.to_vec(), r.to_vec())).copied()
    }

    /// Tokenizes one raw-text fragment, appending to `out`.
    pub(crate) fn tokenize(&self, v: &Vocab, byte_tokens: &[Option<u32>; 256], text: &str, out: &mut Vec<u32>) {
        let mut word = Vec::new();
        let mut buf = [0u8; 4];
        let mut scratch = Scratch::default();
        // A word always tokenizes the same way: remember the words seen in this text.
        // (hash of the word → its byte range in `text` and its range in `out`)
        let mut seen: HashMap<u64, (usize, usize, usize, usize), BuildHasherDefault<KeyHasher>> = HashMap::default();
        for (a, b) in self.pretok.split(text) {
            let raw = &text.as_bytes()[a..b];
            let h = hash(raw);
            if let Some(&(wa, wb, ta, tb)) = seen.get(&h) {
                if &text.as_bytes()[wa..wb] == raw {
                    out.extend_from_within(ta..tb);
                    continue;
                }
            }
            word.clear();
            if self.byte_encode {
                for &c in raw {
                    word.extend_from_slice(byte_to_char(c).encode_utf8(&mut buf).as_bytes());
                }
            } else {
                word.extend_from_slice(raw);
            }
            let start = out.len();
            self.word(v, byte_tokens, &word, out, &mut scratch);
            seen.entry(h).or_insert((a, b, start, out.len()));
        }
    }

    fn word(&self, v: &Vocab, byte_tokens: &[Option<u32>; 256], w: &[u8], out: &mut Vec<u32>, sc: &mut Scratch) {
        if v.ignore_merges || (self.newline_words && w.iter().all(|&c| c == b'\n')) {
            if let Some(t) = v.text_to_token(w) {
                out.push(t);
                return;
            }
        }
        let Scratch { syms, queue } = sc;
        syms.clear();
        queue.clear();
        let mut offs = 0;
        while offs < w.len() {
            let n = utf8_len(w[offs]).min(w.len() - offs);
            let i = syms.len() as i32;
            syms.push(Sym {
                start: offs as u32,
                n: n as u32,
                prev: i - 1,
                next: i + 1,
                h: hash(&w[offs..offs + n]),
            });
            offs += n;
        }
        if let Some(last) = syms.last_mut() {
            last.next = -1;
        }
        let text = |s: &Sym| &w[s.start as usize..(s.start + s.n) as usize];
        let add = |syms: &[Sym], queue: &mut BinaryHeap<_>, left: i32, right: i32| {
            if left < 0 || right < 0 {
                return;
            }
            let (l, r) = (&syms[left as usize], &syms[right as usize]);
            if let Some(rank) = self.rank(text(l), l.h, text(r), r.h) {
                queue.push(Reverse((rank, left as u32, right as u32, l.n + r.n)));
            }
        };
        for i in 1..syms.len() as i32 {
            add(syms, queue, i - 1, i);
        }
        while let Some(Reverse((_, left, right, size))) = queue.pop() {
            let (left, right) = (left as usize, right as usize);
            let (ln, rn) = (syms[left].n, syms[right].n);
            if ln == 0 || rn == 0 || ln + rn != size {
                continue;
            }
            let next = syms[right].next;
            syms[right].n = 0;
            let l = &mut syms[left];
            l.n += rn;
            l.next = next;
            l.h = hash(&w[l.start as usize..(l.start + l.n) as usize]);
            let prev = l.prev;
            if next >= 0 {
                syms[next as usize].prev = left as i32;
            }
            add(syms, queue, prev, left as i32);
            add(syms, queue, left as i32, next);
        }
        for s in syms.iter().filter(|s| s.n > 0) {
            let piece = text(s);
            match v.text_to_token_hashed(piece, s.h) {
                Some(t) => out.push(t),
                None => {
                    if self.byte_encode {
                        // llama.cpp looks each raw byte up as a one-byte text
                        out.extend(piece.iter().filter_map(|b| v.text_to_token(std::slice::from_ref(b))));
                    } else {
                        out.extend(piece.iter().filter_map(|&b| byte_tokens[b as usize]));
                    }
                }
            }
        }
    }
}

/// One symbol of a word being merged: a byte range, its neighbours, its text's hash.
struct Sym {
    start: u32,
    n: u32,
    prev: i32,
    next: i32,
    h: u64,
}

/// Buffers reused from word to word.
#[derive(Default)]
struct Scratch {
    syms: Vec<Sym>,
    /// (rank, left, right, size): smallest rank, then leftmost, first.
    queue: BinaryHeap<Reverse<(u32, u32, u32, u32)>>,
}
