//! The vocabulary as llama.cpp's `llama_vocab::impl::load` builds it: token texts,
//! scores and attributes, the special ids (from metadata, then found by text), the
//! end-of-generation set and the special-token list used for partitioning.

use super::intern::Interner;
use super::pretype::{bpe_pre, Pre};
use crate::gguf::GgufFile;
use std::collections::BTreeSet;

/// Token attributes (llama.cpp's `llama_token_attr` bits).
pub mod attr {
    pub const UNKNOWN: u16 = 1 << 0;
    pub const UNUSED: u16 = 1 << 1;
    pub const NORMAL: u16 = 1 << 2;
    pub const CONTROL: u16 = 1 << 3;
    pub const USER_DEFINED: u16 = 1 << 4;
    pub const BYTE: u16 = 1 << 5;
    pub const NORMALIZED: u16 = 1 << 6;
    pub const LSTRIP: u16 = 1 << 7;
    pub const RSTRIP: u16 = 1 << 8;
    pub const SINGLE_WORD: u16 = 1 << 9;
}

/// The tokenizer algorithm of a vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VocabType {
    /// SentencePiece-style merges by score (`tokenizer.ggml.model = "llama"`).
    Spm,
    /// Byte-pair merges by rank (`"gpt2"`, and `"gemma4"`).
    Bpe,
}

const NONE: u32 = u32::MAX;

/// Everything llama.cpp's vocabulary holds that tokenizing and rendering need.
#[derive(Debug)]
pub(crate) struct Vocab {
    pub ty: VocabType,
    /// `tokenizer.ggml.model` and `tokenizer.ggml.pre` as found.
    pub model: String,
    pub pre_name: String,
    pub pre: Option<Pre>,
    /// The token texts (duplicates once).
    pub texts: Interner,
    tok_iid: Vec<u32>,
    /// Text id → token id; the last of duplicate texts wins, as in llama.cpp.
    iid_tok: Vec<u32>,
    pub scores: Vec<f32>,
    pub attrs: Vec<u16>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub sep: Option<u32>,
    pub pad: Option<u32>,
    pub mask: Option<u32>,
    pub fim: [Option<u32>; 6],
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_sep: bool,
    pub add_space_prefix: bool,
    pub ignore_merges: bool,
    pub clean_spaces: bool,
    pub escape_whitespaces: bool,
    pub eog: BTreeSet<u32>,
    /// Control, user-defined and unknown tokens, longest text first.
    pub special: Vec<u32>,
}

fn err(e: crate::gguf::GgufError) -> String {
    e.to_string()
}

#[rustfmt::skip]
const EOT: &[&str] = &[
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>",
    "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>",
];
#[rustfmt::skip]
const FIM: [&[&str]; 6] = [
    &["<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>"],
    &["<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>"],
    &["<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>"],
    &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
    &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"],
    &["<|file_sep|>"],
];
#[rustfmt::skip]
const EOG: &[&str] = &[
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
    "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
    "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~[",
];

impl Vocab {
    pub(crate) fn n_tokens(&self) -> usize {
        self.tok_iid.len()
    }

    pub(crate) fn token_text(&self, id: u32) -> &[u8] {
        self.texts.text(self.tok_iid[id as usize])
    }

    /// llama.cpp's `text_to_token`.
    pub(crate) fn text_to_token(&self, s: &[u8]) -> Option<u32> {
        self.iid_to_token(self.texts.get(s)?)
    }

    /// [`Self::text_to_token`] with `h = hash(s)` already known.
    pub(crate) fn text_to_token_hashed(&self, s: &[u8], h: u64) -> Option<u32> {
        self.iid_to_token(self.texts.get_hashed(s, h)?)
    }

    pub(crate) fn iid_to_token(&self, iid: u32) -> Option<u32> {
        self.iid_tok.get(iid as usize).copied().filter(|&t| t != NONE)
    }

    pub(crate) fn attr(&self, id: u32) -> u16 {
        self.attrs.get(id as usize).copied().unwrap_or(0)
    }

    /// Reads the vocabulary (not the merges) from a GGUF file.
    pub(crate) fn load(f: &GgufFile) -> Result<Self, String> {
        let model = f
            .get_str("tokenizer.ggml.model")
            .map_err(err)?
            .ok_or("no tokenizer.ggml.model")?
            .to_string();
        let mut pre_name = f.get_str("tokenizer.ggml.pre").map_err(err)?.unwrap_or("").to_string();
        // defaults: bos, eos, unk, sep, pad, mask
        let (ty, mut ids) = match model.as_str() {
            "llama" => (VocabType::Spm, [1, 2, 0, -1, -1, -1]),
            "gpt2" => (VocabType::Bpe, [11, 11, -1, -1, -1, -1]),
            "gemma4" => {
                pre_name = "gemma4".into();
                (VocabType::Bpe, [-1; 6])
            }
            "bert" | "t5" | "rwkv" | "plamo2" | "hybriddna" | "whitespace" | "no_vocab" | "none" | "test" => {
                return Err(format!("unsupported vocab type: tokenizer.ggml.model = {model:?}"))
            }
            _ => return Err(format!("unknown tokenizer: {model:?}")),
        };
        let (mut add_bos, mut add_space_prefix, mut clean_spaces, mut ignore_merges, mut escape_whitespaces) =
            (true, true, false, false, true);
        let mut pre = None;
        if ty == VocabType::Bpe {
            let c = bpe_pre(&pre_name)?;
            (add_bos, add_space_prefix, clean_spaces, ignore_merges) =
                (c.add_bos, false, c.clean_spaces, c.ignore_merges);
            escape_whitespaces = c.escape_whitespaces;
            if c.no_bos {
                ids[0] = -1;
            }
            pre = Some(c.pre);
        }
        if let Some(b) = f.get_bool("tokenizer.ggml.add_space_prefix").map_err(err)? {
            add_space_prefix = b;
        }

        let tokens = f
            .get_array("tokenizer.ggml.tokens")
            .map_err(err)?
            .and_then(|a| a.as_strings())
            .ok_or("cannot find tokenizer vocab (tokenizer.ggml.tokens) in model file")?;
        let n = tokens.len();
        let scores = match f.get_array("tokenizer.ggml.scores").map_err(err)? {
            Some(a) => a.to_f32().filter(|s| s.len() >= n).ok_or("bad tokenizer.ggml.scores")?,
            None => vec![0.0; n],
        };
        let attrs: Vec<u16> = match f.get_array("tokenizer.ggml.token_type").map_err(err)? {
            Some(a) => {
                let t = a
                    .to_i64()
                    .filter(|t| t.len() >= n)
                    .ok_or("bad tokenizer.ggml.token_type")?;
                t[..n]
                    .iter()
                    .map(|&t| match t {
                        1 => attr::NORMAL,
                        2 => attr::UNKNOWN,
                        3 => attr::CONTROL,
                        4 => attr::USER_DEFINED,
                        5 => attr::UNUSED,
                        6 => attr::BYTE,
                        _ => 0,
                    })
                    .collect()
            }
            None => vec![attr::NORMAL; n],
        };

        let bytes = tokens.iter().map(|t| t.len()).sum();
        let mut texts = Interner::with_capacity(n, bytes);
        let mut tok_iid = Vec::with_capacity(n);
        let mut iid_tok = Vec::with_capacity(n);
        for (i, t) in tokens.iter().enumerate() {
            let iid = if t.is_empty() {
                texts.insert(format!("[EMPTY_{i}]").as_bytes())
            } else {
                texts.insert(t.as_bytes())
            };
            if iid as usize == iid_tok.len() {
                iid_tok.push(i as u32);
            } else {
                iid_tok[iid as usize] = i as u32;
            }
            tok_iid.push(iid);
        }

        let mut v = Vocab {
            ty,
            model,
            pre_name,
            pre,
            texts,
            tok_iid,
            iid_tok,
            scores: scores[..n].to_vec(),
            attrs,
            bos: None,
            eos: None,
            eot: None,
            eom: None,
            unk: None,
            sep: None,
            pad: None,
            mask: None,
            fim: [None; 6],
            add_bos,
            add_eos: false,
            add_sep: false,
            add_space_prefix,
            ignore_merges,
            clean_spaces,
            escape_whitespaces,
            eog: BTreeSet::new(),
            special: Vec::new(),
        };
        v.special_ids(f, ids)?;
        v.find_by_text();
        v.set_eog();
        v.set_special(f)?;
        Ok(v)
    }

    /// Special ids: defaults, then metadata (ids out of range are ignored).
    fn special_ids(&mut self, f: &GgufFile, defaults: [i64; 6]) -> Result<(), String> {
        let n = self.n_tokens() as i64;
        // bos eos eot eom unk sep pad mask fim×6
        let mut ids = [-1i64; 14];
        let [bos, eos, unk, sep, pad, mask] = defaults;
        (ids[0], ids[1], ids[4], ids[5], ids[6], ids[7]) = (bos, eos, unk, sep, pad, mask);
        let keys: [(&str, usize); 17] = [
            ("bos_token_id", 0),
            ("eos_token_id", 1),
            ("eot_token_id", 2),
            ("eom_token_id", 3),
            ("unknown_token_id", 4),
            ("seperator_token_id", 5),
            ("padding_token_id", 6),
            ("mask_token_id", 7),
            ("fim_pre_token_id", 8),
            ("fim_suf_token_id", 9),
            ("fim_mid_token_id", 10),
            ("fim_pad_token_id", 11),
            ("fim_rep_token_id", 12),
            ("fim_sep_token_id", 13),
            ("prefix_token_id", 8),
            ("suffix_token_id", 9),
            ("middle_token_id", 10),
        ];
        for (key, i) in keys {
            if ids[i] >= n {
                ids[i] = -1;
            }
            if let Some(id) = f.get_i64(&format!("tokenizer.ggml.{key}")).map_err(err)? {
                if (0..n).contains(&id) {
                    ids[i] = id;
                }
            }
        }
        let id = |i: usize| u32::try_from(ids[i]).ok();
        (self.bos, self.eos, self.eot, self.eom) = (id(0), id(1), id(2), id(3));
        (self.unk, self.sep, self.pad, self.mask) = (id(4), id(5), id(6), id(7));
        self.fim = [id(8), id(9), id(10), id(11), id(12), id(13)];

        for (key, flag) in [
            ("add_bos_token", &mut self.add_bos),
            ("add_eos_token", &mut self.add_eos),
            ("add_sep_token", &mut self.add_sep),
        ] {
            if let Some(b) = f.get_bool(&format!("tokenizer.ggml.{key}")).map_err(err)? {
                *flag = b;
            }
        }
        if self.pre == Some(Pre::Gemma4) {
            self.add_bos = true;
        }
        Ok(())
    }

    /// The first of `cands` that is a token, marked as control.
    fn find_control(&mut self, cands: &[&str]) -> Option<u32> {
        let id = cands.iter().find_map(|c| self.text_to_token(c.as_bytes()))?;
        self.attrs[id as usize] |= attr::CONTROL;
        Some(id)
    }

    /// EOT, EOM and FIM tokens found by their text, where metadata did not name them.
    /// (llama.cpp takes the first candidate in hash-map order; here, in list order.)
    fn find_by_text(&mut self) {
        if self.eot.is_none() {
            self.eot = self.find_control(EOT);
        }
        if self.eom.is_none() {
            self.eom = self.find_control(&["<|eom_id|>"]);
        }
        for (i, cands) in FIM.iter().enumerate() {
            if self.fim[i].is_none() {
                self.fim[i] = self.find_control(cands);
            }
        }
        // control tokens named "unused…" are unused
        for id in 0..self.n_tokens() as u32 {
            if self.iid_to_token(self.tok_iid[id as usize]) == Some(id)
                && self.attrs[id as usize] & attr::CONTROL != 0
                && self.token_text(id).windows(6).any(|w| w == b"unused")
            {
                self.attrs[id as usize] |= attr::UNUSED;
            }
        }
    }

    /// The end-of-generation set, with llama.cpp's corrections.
    fn set_eog(&mut self) {
        let mut eog: BTreeSet<u32> = self.fim[3..].iter().flatten().copied().collect();
        for t in EOG {
            if let Some(id) = self.text_to_token(t.as_bytes()) {
                eog.insert(id);
                self.attrs[id as usize] |= attr::CONTROL;
            }
        }
        for t in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let Some(id) = self.text_to_token(t.as_bytes()) {
                self.attrs[id as usize] = attr::USER_DEFINED;
            }
        }
        eog.extend([self.eos, self.eot, self.eom].into_iter().flatten());
        let end = self.find_in(&eog, "<|end|>");
        let call = self.find_in(&eog, "<|call|>").or(self.find_in(&eog, "<|calls|>"));
        let ret = self.find_in(&eog, "<|return|>").or(self.find_in(&eog, "<|flush|>"));
        if let (Some(end), Some(_), Some(_)) = (end, call, ret) {
            eog.remove(&end);
            self.attrs[end as usize] = attr::USER_DEFINED;
        }
        let s = self.find_in(&eog, "</s>");
        let normal_s = self
            .find_in(&eog, "<|tool_response>")
            .or(self.find_in(&eog, "<|plamo:eos|>"));
        if let (Some(s), Some(_)) = (s, normal_s) {
            eog.remove(&s);
            self.attrs[s as usize] = attr::NORMAL;
        }
        self.eog = eog;
    }

    fn find_in(&self, ids: &BTreeSet<u32>, text: &str) -> Option<u32> {
        ids.iter().copied().find(|&id| self.token_text(id) == text.as_bytes())
    }

    /// The special-token list and the per-model strip attributes.
    fn set_special(&mut self, f: &GgufFile) -> Result<(), String> {
        let mut special: Vec<u32> = (0..self.n_tokens() as u32)
            .filter(|&id| self.attrs[id as usize] & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0)
            .collect();
        special.sort_by_key(|&id| std::cmp::Reverse(self.token_text(id).len()));
        self.special = special;

        let name = f.get_str("general.name").map_err(err)?.unwrap_or("").to_lowercase();
        let pre = f.get_str("tokenizer.ggml.pre").map_err(err)?.unwrap_or("");
        let arch = f.get_str("general.architecture").map_err(err)?.unwrap_or("");
        let set = |v: &mut Self, text: &str, a: u16, on: bool| {
            if let Some(id) = v.text_to_token(text.as_bytes()) {
                let x = &mut v.attrs[id as usize];
                *x = if on { *x | a } else { *x & !a };
            }
        };
        if ["jina-v2-de", "jina-v2-es", "jina-v2-code", "mmbert"]
            .iter()
            .any(|p| pre.contains(p))
            || ["nomic-bert-moe", "jina-bert-v3"].iter().any(|a| arch.contains(a))
        {
            set(self, "<mask>", attr::LSTRIP, true);
        } else if name.contains("phi-3") || name.contains("phi3") {
            for i in 0..self.special.len() {
                let id = self.special[i] as usize;
                self.attrs[id] |= attr::RSTRIP;
            }
            set(self, "</s>", attr::RSTRIP, true);
            for t in ["<unk>", "<s>", "<|endoftext|>"] {
                set(self, t, attr::RSTRIP, false);
            }
        } else if name.contains("modern-bert") {
            set(self, "[MASK]", attr::LSTRIP, true);
        }
        Ok(())
    }
}
