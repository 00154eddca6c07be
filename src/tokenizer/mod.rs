//! GGUF vocabularies, tokenized exactly as llama.cpp tokenizes them.
//!
//! [`Tokenizer::from_gguf`] reads `tokenizer.ggml.*` the way llama.cpp's vocabulary
//! loader does (defaults, special ids, EOT/EOG detection by text, attribute fixes),
//! [`Tokenizer::encode`] follows `llama_tokenize` (special-token partitioning, BOS /
//! EOS, SPM's space prefix and byte fallback, BPE's pre-tokenizer regexes, byte-level
//! encoding and merges by rank), and [`Tokenizer::token_to_piece_with`] /
//! [`Tokenizer::detokenize`] follow `llama_token_to_piece` / `llama_detokenize`.
//! SPM (`"llama"`) and BPE (`"gpt2"`, `"gemma4"`) vocabularies are supported; WPM,
//! UGM, RWKV and the rest are refused with an "unsupported vocab type" error.

mod bpe;
mod decode;
mod intern;
mod pretok;
mod pretype;
mod spm;
mod unicode_data;
mod vocab;

pub use decode::StreamDecoder;
pub use pretype::Pre;
pub use vocab::{attr, VocabType};

use crate::gguf::GgufFile;
use bpe::Bpe;
use decode::{clean_spaces, decode_byte_level};
use vocab::Vocab;

/// A vocabulary and its tokenizer. Cheap to share by reference; `Send + Sync`.
pub struct Tokenizer {
    v: Vocab,
    bpe: Option<Bpe>,
    /// The token standing for each byte when nothing else fits.
    byte_tokens: [Option<u32>; 256],
    nl: Option<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("model", &self.v.model)
            .field("pre", &self.v.pre_name)
            .field("n_vocab", &self.n_vocab())
            .field("bos", &self.v.bos)
            .field("eos", &self.v.eos)
            .field("eot", &self.v.eot)
            .finish_non_exhaustive()
    }
}

/// A piece of input: raw text (a byte range) or an already-found special token.
#[derive(Debug, Clone, Copy)]
enum Frag {
    Text(usize, usize),
    Tok(u32),
}

/// C's `isspace` in the "C" locale.
fn c_isspace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

impl Tokenizer {
    /// Builds the tokenizer from a GGUF file's `tokenizer.ggml.*` metadata.
    pub fn from_gguf(f: &GgufFile) -> Result<Self, String> {
        let v = Vocab::load(f)?;
        let bpe = match v.pre {
            Some(pre) => {
                let merges = f
                    .get_array("tokenizer.ggml.merges")
                    .map_err(|e| e.to_string())?
                    .and_then(|a| a.as_strings())
                    .ok_or("cannot find tokenizer merges (tokenizer.ggml.merges) in model file")?;
                Some(Bpe::new(merges, pre)?)
            }
            None => None,
        };
        let hex = |b: usize| format!("<0x{b:02X}>");
        let byte_tokens = std::array::from_fn(|b| match &bpe {
            None => v
                .text_to_token(hex(b).as_bytes())
                .or_else(|| v.text_to_token(&[b as u8])),
            Some(_) if v.escape_whitespaces => v.text_to_token(hex(b).as_bytes()),
            Some(_) => v.text_to_token(bpe::byte_to_char(b as u8).to_string().as_bytes()),
        });
        let mut t = Tokenizer {
            v,
            bpe,
            byte_tokens,
            nl: None,
        };
        t.nl = match t.bpe {
            None => t.byte_tokens[b'\n' as usize].or(t.v.pad),
            Some(_) => t.encode("\n", false, false).first().copied().or(t.v.pad),
        };
        Ok(t)
    }

    /// `llama_tokenize(text, add_special, parse_special)`.
    ///
    /// `add_special` adds BOS/EOS as the vocabulary asks; `parse_special` lets control
    /// tokens written in the text (e.g. `<|im_start|>`) become those tokens (user-defined
    /// tokens always do).
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let v = &self.v;
        let frags = self.partition(text, parse_special);
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && v.add_bos {
            out.extend(v.bos);
        }
        match &self.bpe {
            None => {
                let mut prev_special = true;
                let mut buf = String::new();
                for f in frags {
                    match f {
                        Frag::Text(a, b) => {
                            buf.clear();
                            if v.add_space_prefix && prev_special {
                                buf.push(' ');
                            }
                            buf.push_str(&text[a..b]);
                            let escaped = buf.replace(' ', "\u{2581}");
                            spm::tokenize(v, &self.byte_tokens, escaped.as_bytes(), &mut out);
                            prev_special = false;
                        }
                        Frag::Tok(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                    }
                }
            }
            Some(bpe) => {
                for f in frags {
                    match f {
                        Frag::Text(a, b) if v.escape_whitespaces => {
                            bpe.tokenize(v, &self.byte_tokens, &text[a..b].replace(' ', "\u{2581}"), &mut out)
                        }
                        Frag::Text(a, b) => bpe.tokenize(v, &self.byte_tokens, &text[a..b], &mut out),
                        Frag::Tok(id) => out.push(id),
                    }
                }
            }
        }
        if add_special && v.add_eos {
            out.extend(v.eos);
        }
        out
    }

    /// `tokenizer_st_partition`: splits special tokens out of the text, longest first.
    fn partition(&self, text: &str, parse_special: bool) -> Vec<Frag> {
        if text.is_empty() {
            return Vec::new();
        }
        let mut frags = vec![Frag::Text(0, text.len())];
        let bytes = text.as_bytes();
        // byte pairs present in the text: most special tokens can be ruled out at once
        let mut pairs = vec![0u64; 1024];
        for w in bytes.windows(2) {
            let k = (w[0] as usize) << 8 | w[1] as usize;
            pairs[k >> 6] |= 1 << (k & 63);
        }
        for &id in &self.v.special {
            let a = self.v.attr(id);
            if !parse_special && a & (attr::CONTROL | attr::UNKNOWN) != 0 {
                continue;
            }
            let tok = std::str::from_utf8(self.v.token_text(id)).unwrap_or("");
            if let [b0, b1, ..] = *tok.as_bytes() {
                let k = (b0 as usize) << 8 | b1 as usize;
                if pairs[k >> 6] & (1 << (k & 63)) == 0 {
                    continue;
                }
            }
            if tok.is_empty() || !text.contains(tok) {
                continue;
            }
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                let Frag::Text(mut start, end) = f else {
                    next.push(f);
                    continue;
                };
                while let Some(m) = text[start..end].find(tok).map(|m| m + start) {
                    let mut left_end = m;
                    if a & attr::LSTRIP != 0 {
                        while left_end > start && c_isspace(bytes[left_end - 1]) {
                            left_end -= 1;
                        }
                    }
                    if left_end > start {
                        next.push(Frag::Text(start, left_end));
                    }
                    next.push(Frag::Tok(id));
                    start = m + tok.len();
                    if a & attr::RSTRIP != 0 && start < end {
                        while start < end && c_isspace(bytes[start]) {
                            start += 1;
                        }
                    }
                }
                if start < end {
                    next.push(Frag::Text(start, end));
                }
            }
            frags = next;
        }
        frags
    }

    /// `llama_token_to_piece(id, special = false)`: the bytes of one token (possibly
    /// part of a UTF-8 character); control tokens render empty.
    pub fn token_to_piece(&self, id: u32) -> Vec<u8> {
        self.token_to_piece_with(id, false, 0)
    }

    /// `llama_token_to_piece(id, lstrip, special)`: with `special`, control and unknown
    /// tokens render as their text; up to `lstrip` leading spaces are skipped.
    pub fn token_to_piece_with(&self, id: u32, special: bool, lstrip: usize) -> Vec<u8> {
        let v = &self.v;
        if id as usize >= v.n_tokens() {
            return Vec::new();
        }
        let a = v.attr(id);
        if !special && a & (attr::UNKNOWN | attr::CONTROL) != 0 {
            return Vec::new();
        }
        let text = v.token_text(id);
        let mut piece = if a & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
            text.to_vec()
        } else if a & attr::NORMAL != 0 {
            if self.bpe.is_none() || v.escape_whitespaces {
                String::from_utf8_lossy(text).replace('\u{2581}', " ").into_bytes()
            } else {
                decode_byte_level(text)
            }
        } else if a & attr::BYTE != 0 {
            let hex = text.get(3..5).and_then(|h| std::str::from_utf8(h).ok());
            vec![hex.and_then(|h| u8::from_str_radix(h, 16).ok()).unwrap_or(0)]
        } else {
            Vec::new()
        };
        let skip = piece.iter().take(lstrip).take_while(|&&b| b == b' ').count();
        piece.drain(..skip);
        piece
    }

    /// `llama_detokenize(ids, remove_special, unparse_special)`, bytes as llama.cpp
    /// produces them (including its `clean_up_tokenization_spaces` passes).
    pub fn detokenize(&self, ids: &[u32], remove_special: bool, unparse_special: bool) -> Vec<u8> {
        let v = &self.v;
        let mut ids = ids;
        let mut remove_space = v.add_space_prefix;
        if remove_special && v.add_bos && !ids.is_empty() && Some(ids[0]) == v.bos {
            remove_space = false;
            ids = &ids[1..];
        }
        if remove_special && v.add_eos && !ids.is_empty() && Some(ids[ids.len() - 1]) == v.eos {
            ids = &ids[..ids.len() - 1];
        }
        let mut text = Vec::new();
        for &id in ids {
            text.extend(self.token_to_piece_with(id, unparse_special, remove_space as usize));
            remove_space = false;
        }
        if v.clean_spaces {
            clean_spaces(&mut text);
        }
        text
    }

    /// The text of `ids` (control tokens left out), invalid UTF-8 replaced.
    pub fn decode(&self, ids: &[u32]) -> String {
        String::from_utf8_lossy(&self.detokenize(ids, false, false)).into_owned()
    }

    /// Number of tokens in the vocabulary.
    pub fn n_vocab(&self) -> usize {
        self.v.n_tokens()
    }
    /// SPM or BPE.
    pub fn vocab_type(&self) -> VocabType {
        self.v.ty
    }
    /// The BPE pre-tokenizer kind (`None` for SPM).
    pub fn pre(&self) -> Option<Pre> {
        self.v.pre
    }
    /// `tokenizer.ggml.model` and `tokenizer.ggml.pre` as read.
    pub fn model_names(&self) -> (&str, &str) {
        (&self.v.model, &self.v.pre_name)
    }
    pub fn bos(&self) -> Option<u32> {
        self.v.bos
    }
    pub fn eos(&self) -> Option<u32> {
        self.v.eos
    }
    /// End of turn: metadata's, else the first of `<|eot_id|>`, `<|im_end|>`, `<|end|>`,
    /// `<end_of_turn>`, `<|endoftext|>`, … present in the vocabulary.
    pub fn eot(&self) -> Option<u32> {
        self.v.eot
    }
    pub fn eom(&self) -> Option<u32> {
        self.v.eom
    }
    pub fn unk(&self) -> Option<u32> {
        self.v.unk
    }
    pub fn pad(&self) -> Option<u32> {
        self.v.pad
    }
    pub fn sep(&self) -> Option<u32> {
        self.v.sep
    }
    /// The newline token (llama.cpp's `linefeed_id`).
    pub fn nl(&self) -> Option<u32> {
        self.nl
    }
    /// FIM tokens: prefix, suffix, middle, pad, repo, file separator.
    pub fn fim(&self) -> [Option<u32>; 6] {
        self.v.fim
    }
    /// Whether `id` ends generation (EOS, EOT, EOM and the like).
    pub fn is_eog(&self, id: u32) -> bool {
        self.v.eog.contains(&id)
    }
    /// The end-of-generation set, ascending.
    pub fn eog_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.v.eog.iter().copied()
    }
    /// Whether `encode(.., add_special = true, ..)` prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.v.add_bos
    }
    /// Whether `encode(.., add_special = true, ..)` appends EOS.
    pub fn add_eos(&self) -> bool {
        self.v.add_eos
    }
    /// The token's vocabulary text (`▁` / byte-level characters as stored), "" if out of range.
    pub fn token_text(&self, id: u32) -> &str {
        if id as usize >= self.v.n_tokens() {
            return "";
        }
        std::str::from_utf8(self.v.token_text(id)).unwrap_or("")
    }
    /// The token whose text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.v.text_to_token(text.as_bytes())
    }
    /// The token's [`attr`] bits as llama.cpp holds them (0 if out of range).
    pub fn token_attr(&self, id: u32) -> u16 {
        self.v.attr(id)
    }
    pub fn is_control(&self, id: u32) -> bool {
        self.v.attr(id) & attr::CONTROL != 0
    }
    pub fn score(&self, id: u32) -> f32 {
        self.v.scores.get(id as usize).copied().unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Tokenizer>();
    }
}
