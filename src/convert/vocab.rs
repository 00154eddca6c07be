//! Tokenizers to GGUF vocabularies, as llama.cpp's `convert_hf_to_gguf.py` writes them.
//!
//! * SentencePiece `tokenizer.model` → `tokenizer.ggml.model = "llama"`, `pre = "default"`,
//!   tokens / scores / token types from the protobuf (read here with a minimal wire-format
//!   parser: `ModelProto.pieces {piece, score, type}`, `trainer_spec` ids and
//!   `normalizer_spec.add_dummy_prefix`), then the overrides llama.cpp applies from
//!   `added_tokens.json` and `tokenizer_config.json`'s `added_tokens_decoder`.
//! * `tokenizer.json` with a byte-level BPE model → `model = "gpt2"`, tokens, token types,
//!   merges and `tokenizer.ggml.pre` identified as llama.cpp does: the ids of a fixed check
//!   text encoded by the Hugging Face tokenizer, hashed with SHA-256, looked up in llama.cpp's
//!   table (`qwen2`, `llama-bpe`, …; an unknown hash is an error naming it).
//!
//! Special tokens (bos/eos/unk/sep/pad/mask ids, add_bos/add_eos) come from `tokenizer.json`'s
//! post-processor, `tokenizer_config.json`, `special_tokens_map.json` and `config.json`, in
//! llama.cpp's order of precedence; the chat template from `tokenizer_config.json`
//! (`chat_template`, a string or a list of named templates) or `chat_template.jinja`.

use crate::gguf::{Array, Value};
use crate::{Error, Result};
use serde_json::{Map, Value as Json};
use std::collections::HashMap;
use std::path::Path;

use super::hf::read_json;

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
pub mod token_type {
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
    pub const BYTE: i32 = 6;
}
use token_type::*;

/// A vocabulary ready for GGUF: the `tokenizer.*` metadata in llama.cpp's order.
#[derive(Debug, Clone)]
pub struct Vocab {
    /// `tokenizer.ggml.model`: "llama" or "gpt2".
    pub model: String,
    /// `tokenizer.ggml.pre`.
    pub pre: String,
    pub tokens: Vec<String>,
    /// Present for SentencePiece vocabularies.
    pub scores: Option<Vec<f32>>,
    pub token_types: Vec<i32>,
    /// Present for BPE vocabularies.
    pub merges: Option<Vec<String>>,
    /// Every other `tokenizer.*` key (special ids, add_bos, chat template, …), in order.
    pub extra: Vec<(String, Value)>,
}

impl Vocab {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The metadata entries, in the order llama.cpp writes them.
    pub fn to_metadata(&self) -> Vec<(String, Value)> {
        let mut v = vec![
            ("tokenizer.ggml.model".to_string(), Value::String(self.model.clone())),
            ("tokenizer.ggml.pre".to_string(), Value::String(self.pre.clone())),
            ("tokenizer.ggml.tokens".to_string(), Value::Array(Array::String(self.tokens.clone()))),
        ];
        if let Some(s) = &self.scores {
            v.push(("tokenizer.ggml.scores".into(), Value::Array(Array::F32(s.clone()))));
        }
        v.push(("tokenizer.ggml.token_type".into(), Value::Array(Array::I32(self.token_types.clone()))));
        if let Some(m) = &self.merges {
            v.push(("tokenizer.ggml.merges".into(), Value::Array(Array::String(m.clone()))));
        }
        v.extend(self.extra.iter().cloned());
        v
    }
}

fn tok_err(msg: impl std::fmt::Display) -> Error {
    Error::Tokenizer(msg.to_string())
}

// ---------------------------------------------------------------------------------------
// SentencePiece protobuf
// ---------------------------------------------------------------------------------------

/// One `ModelProto.SentencePiece`.
#[derive(Debug, Clone, PartialEq)]
pub struct SpPiece {
    pub piece: String,
    pub score: f32,
    /// NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER_DEFINED = 4, UNUSED = 5, BYTE = 6.
    pub kind: i32,
}

/// The parts of a SentencePiece `ModelProto` a converter needs.
#[derive(Debug, Clone, PartialEq)]
pub struct SpModel {
    pub pieces: Vec<SpPiece>,
    /// `trainer_spec.model_type`: UNIGRAM = 1, BPE = 2, WORD = 3, CHAR = 4.
    pub model_type: i32,
    pub byte_fallback: bool,
    pub unk_id: i32,
    pub bos_id: i32,
    pub eos_id: i32,
    pub pad_id: i32,
    /// `normalizer_spec.add_dummy_prefix`.
    pub add_dummy_prefix: bool,
    /// `normalizer_spec.remove_extra_whitespaces`.
    pub remove_extra_whitespaces: bool,
}

/// A protobuf wire-format reader.
struct Pb<'a> {
    b: &'a [u8],
    pos: usize,
}

enum Field<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl<'a> Pb<'a> {
    fn new(b: &'a [u8]) -> Self {
        Pb { b, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.pos).ok_or_else(|| tok_err("tokenizer.model: truncated varint"))?;
            self.pos += 1;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(tok_err("tokenizer.model: varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.b.len() - self.pos {
            return Err(tok_err(format!("tokenizer.model: field of {n} bytes runs past the end")));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// The next (field number, value), or None at the end.
    fn next(&mut self) -> Result<Option<(u64, Field<'a>)>> {
        if self.pos >= self.b.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let (num, wt) = (key >> 3, key & 7);
        let f = match wt {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Field::Fixed64
            }
            2 => {
                let n = self.varint()?;
                Field::Bytes(self.take(usize::try_from(n).map_err(|_| tok_err("tokenizer.model: huge field"))?)?)
            }
            5 => Field::Fixed32(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"))),
            w => {
                return Err(tok_err(format!(
                    "tokenizer.model: unsupported wire type {w} (field {num}); not a SentencePiece model?"
                )))
            }
        };
        Ok(Some((num, f)))
    }
}

impl SpModel {
    /// Parses a serialized `ModelProto`.
    pub fn parse(bytes: &[u8]) -> Result<SpModel> {
        let mut m = SpModel {
            pieces: Vec::new(),
            model_type: 1,
            byte_fallback: false,
            unk_id: 0,
            bos_id: 1,
            eos_id: 2,
            pad_id: -1,
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
        };
        let mut pb = Pb::new(bytes);
        while let Some((num, f)) = pb.next()? {
            match (num, f) {
                (1, Field::Bytes(b)) => m.pieces.push(parse_piece(b, m.pieces.len())?),
                (2, Field::Bytes(b)) => {
                    let mut t = Pb::new(b);
                    while let Some((n, f)) = t.next()? {
                        let Field::Varint(v) = f else { continue };
                        match n {
                            3 => m.model_type = v as i32,
                            35 => m.byte_fallback = v != 0,
                            40 => m.unk_id = v as i32,
                            41 => m.bos_id = v as i32,
                            42 => m.eos_id = v as i32,
                            43 => m.pad_id = v as i32,
                            _ => {}
                        }
                    }
                }
                (3, Field::Bytes(b)) => {
                    let mut t = Pb::new(b);
                    while let Some((n, f)) = t.next()? {
                        match (n, f) {
                            (3, Field::Varint(v)) => m.add_dummy_prefix = v != 0,
                            (4, Field::Varint(v)) => m.remove_extra_whitespaces = v != 0,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if m.pieces.is_empty() {
            return Err(tok_err("tokenizer.model has no pieces; not a SentencePiece model?"));
        }
        Ok(m)
    }
}

fn parse_piece(b: &[u8], index: usize) -> Result<SpPiece> {
    let mut p = SpPiece { piece: String::new(), score: 0.0, kind: NORMAL };
    let mut pb = Pb::new(b);
    while let Some((n, f)) = pb.next()? {
        match (n, f) {
            (1, Field::Bytes(s)) => {
                p.piece = String::from_utf8(s.to_vec())
                    .map_err(|_| tok_err(format!("tokenizer.model: piece #{index} is not valid UTF-8")))?
            }
            (2, Field::Fixed32(x)) => p.score = f32::from_bits(x),
            (3, Field::Varint(v)) => p.kind = v as i32,
            _ => {}
        }
    }
    if !(1..=6).contains(&p.kind) {
        return Err(tok_err(format!("tokenizer.model: piece #{index} ({:?}) has unknown type {}", p.piece, p.kind)));
    }
    Ok(p)
}

/// llama.cpp's heuristic for added tokens that ought to be control tokens.
fn looks_special(t: &str) -> bool {
    matches!(t, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<｜") && t.ends_with("｜>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
}

/// Reads the optional JSON files of a tokenizer folder.
struct TokFiles {
    tokenizer_config: Option<Map<String, Json>>,
    special_tokens_map: Option<Map<String, Json>>,
    tokenizer_json: Option<Map<String, Json>>,
}

impl TokFiles {
    fn load(dir: &Path) -> Result<TokFiles> {
        let opt = |name: &str| -> Result<Option<Map<String, Json>>> {
            let p = dir.join(name);
            if p.is_file() {
                read_json(&p).map(Some).map_err(|e| tok_err(e.to_string()))
            } else {
                Ok(None)
            }
        };
        Ok(TokFiles {
            tokenizer_config: opt("tokenizer_config.json")?,
            special_tokens_map: opt("special_tokens_map.json")?,
            tokenizer_json: opt("tokenizer.json")?,
        })
    }
}

/// The vocabulary of the model in `dir`: `tokenizer.model` (SentencePiece) if present, else a
/// byte-level BPE `tokenizer.json`. `n_vocab` is the model's vocabulary size (the embedding's
/// rows): shorter tokenizers are padded with `[PADn]` tokens as llama.cpp does, longer ones
/// are an error. `config` is `config.json` (for its `*_token_id` fields).
pub fn load_vocab(dir: &Path, n_vocab: usize, config: &Map<String, Json>) -> Result<Vocab> {
    let files = TokFiles::load(dir)?;
    let sp_path = dir.join("tokenizer.model");
    if sp_path.is_file() {
        let bytes = std::fs::read(&sp_path).map_err(|e| Error::Io { path: sp_path.clone(), source: e })?;
        let sp = SpModel::parse(&bytes)?;
        return sentencepiece_vocab(dir, &sp, n_vocab, &files, config);
    }
    if files.tokenizer_json.is_some() {
        return bpe_vocab(dir, n_vocab, &files, config);
    }
    Err(tok_err(format!("{}: neither tokenizer.model nor tokenizer.json", dir.display())))
}

fn sentencepiece_vocab(
    dir: &Path,
    sp: &SpModel,
    n_vocab: usize,
    files: &TokFiles,
    config: &Map<String, Json>,
) -> Result<Vocab> {
    let mut tokens: Vec<String> = (0..n_vocab).map(|i| format!("[PAD{i}]")).collect();
    let mut scores = vec![-10000.0f32; n_vocab];
    let mut types = vec![UNUSED; n_vocab];
    if sp.pieces.len() > n_vocab {
        return Err(tok_err(format!(
            "tokenizer.model has {} pieces but the model's vocabulary (vocab_size / embedding rows) is {n_vocab}",
            sp.pieces.len()
        )));
    }
    for (i, p) in sp.pieces.iter().enumerate() {
        tokens[i] = p.piece.clone();
        scores[i] = p.score;
        // llama.cpp asks IsUnknown / IsControl / IsUnused / IsByte; everything else
        // (USER_DEFINED included) is NORMAL.
        types[i] = match p.kind {
            UNKNOWN | CONTROL | UNUSED | BYTE => p.kind,
            _ => NORMAL,
        };
    }
    let added = dir.join("added_tokens.json");
    if added.is_file() {
        for (text, id) in read_json(&added)? {
            let Some(id) = id.as_u64().map(|x| x as usize) else {
                return Err(tok_err(format!("added_tokens.json: id of {text:?} is not an integer")));
            };
            if id >= n_vocab {
                tracing::warn!("added_tokens.json: ignoring {text:?}, id {id} is out of range (vocabulary {n_vocab})");
                continue;
            }
            tokens[id] = text;
            scores[id] = -1000.0;
            types[id] = USER_DEFINED;
        }
    }
    if let Some(Json::Object(dec)) = files.tokenizer_config.as_ref().and_then(|c| c.get("added_tokens_decoder")) {
        for (id, data) in dec {
            let id: usize = id
                .parse()
                .map_err(|_| tok_err(format!("tokenizer_config.json: added_tokens_decoder key {id:?} is not an id")))?;
            let content = data.get("content").and_then(Json::as_str).ok_or_else(|| {
                tok_err(format!("tokenizer_config.json: added_tokens_decoder[{id}].content is missing"))
            })?;
            if id >= n_vocab {
                tracing::warn!("tokenizer_config.json: ignoring added token {content:?}, id {id} is out of range");
                continue;
            }
            let special = data.get("special").and_then(Json::as_bool).unwrap_or(false);
            if special || looks_special(content) {
                types[id] = CONTROL;
                tokens[id] = content.to_string();
            } else {
                types[id] = USER_DEFINED;
                tokens[id] = content.replace('\u{2581}', " ");
            }
            scores[id] = -1000.0;
        }
    }
    let mut extra = Vec::new();
    let lookup = |content: &str| tokens.iter().position(|t| t == content);
    special_ids(files, config, &lookup, n_vocab, &mut extra, Some(sp))?;
    // llama.cpp writes add_space_prefix only from tokenizer_config's add_prefix_space; a
    // model that disables SentencePiece's dummy prefix gets it too, or it would tokenize
    // differently.
    let add_prefix = files.tokenizer_config.as_ref().and_then(|c| c.get("add_prefix_space")).and_then(Json::as_bool);
    match add_prefix {
        Some(b) => extra.insert(0, ("tokenizer.ggml.add_space_prefix".into(), Value::Bool(b))),
        None if !sp.add_dummy_prefix => extra.insert(0, ("tokenizer.ggml.add_space_prefix".into(), Value::Bool(false))),
        None => {}
    }
    chat_template(dir, files, &mut extra)?;
    Ok(Vocab {
        model: "llama".into(),
        pre: "default".into(),
        tokens,
        scores: Some(scores),
        token_types: types,
        merges: None,
        extra,
    })
}

/// The special-token ids and add_* flags, appended to `extra`.
fn special_ids(
    files: &TokFiles,
    config: &Map<String, Json>,
    lookup: &dyn Fn(&str) -> Option<usize>,
    n_vocab: usize,
    extra: &mut Vec<(String, Value)>,
    sp: Option<&SpModel>,
) -> Result<()> {
    const TYPES: [(&str, &str); 6] = [
        ("bos", "tokenizer.ggml.bos_token_id"),
        ("eos", "tokenizer.ggml.eos_token_id"),
        ("unk", "tokenizer.ggml.unknown_token_id"),
        ("sep", "tokenizer.ggml.seperator_token_id"),
        ("pad", "tokenizer.ggml.padding_token_id"),
        ("mask", "tokenizer.ggml.mask_token_id"),
    ];
    let mut ids: HashMap<&str, u32> = HashMap::new();
    let mut add: Vec<(&str, bool)> = Vec::new();
    let set_add = |add: &mut Vec<(&str, bool)>, typ: &'static str, v: bool, overwrite: bool| match add
        .iter_mut()
        .find(|(t, _)| *t == typ)
    {
        Some(e) if overwrite => e.1 = v,
        Some(_) => {}
        None => add.push((typ, v)),
    };
    let content_of = |v: Option<&Json>| -> Option<String> {
        match v? {
            Json::String(s) => Some(s.clone()),
            Json::Object(o) => o.get("content")?.as_str().map(str::to_string),
            _ => None,
        }
    };
    let mut tc = files.tokenizer_config.clone().unwrap_or_default();
    // tokenizer.json's post-processor decides add_bos / add_eos first (llama.cpp's order).
    if let Some(tj) = &files.tokenizer_json {
        if let Some(pp) = tj.get("post_processor").filter(|p| !p.is_null()) {
            let procs: Vec<&Json> = match pp.get("processors").and_then(Json::as_array) {
                Some(a) => a.iter().collect(),
                None => vec![pp],
            };
            let bos_c = content_of(tc.get("bos_token"));
            let eos_c = content_of(tc.get("eos_token"));
            for p in procs {
                match p.get("type").and_then(Json::as_str) {
                    Some("ByteLevel") => {
                        set_add(&mut add, "bos", false, false);
                        set_add(&mut add, "eos", false, false);
                    }
                    Some("RobertaProcessing") => {
                        set_add(&mut add, "bos", true, true);
                        set_add(&mut add, "eos", true, true);
                        set_add(&mut add, "sep", true, true);
                    }
                    Some("TemplateProcessing") => {
                        let single = p.get("single").and_then(Json::as_array).cloned().unwrap_or_default();
                        if single.len() > 1 {
                            let sp_id = |j: &Json| {
                                j.get("SpecialToken")
                                    .and_then(|s| s.get("id"))
                                    .and_then(Json::as_str)
                                    .map(str::to_string)
                            };
                            if let Some(first) = sp_id(&single[0]) {
                                if bos_c.is_none() {
                                    tc.insert("bos_token".into(), Json::String(first.clone()));
                                }
                                let is_bos = bos_c.as_deref().is_none_or(|b| b == first);
                                set_add(&mut add, "bos", is_bos, true);
                            }
                            if let Some(last) = sp_id(&single[single.len() - 1]) {
                                if eos_c.is_none() {
                                    tc.insert("eos_token".into(), Json::String(last.clone()));
                                }
                                let is_eos = eos_c.as_deref().is_none_or(|e| e == last);
                                set_add(&mut add, "eos", is_eos, true);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    // add_{bos,eos,sep}_token from tokenizer_config where the post-processor said nothing.
    for (typ, _) in TYPES {
        if let Some(Json::Bool(b)) = tc.get(&format!("add_{typ}_token")) {
            set_add(&mut add, typ_static(typ), *b, false);
        }
    }
    // Ids: tokenizer_config's {typ}_token content, then special_tokens_map.json, then
    // config.json's {typ}_token_id, then (SentencePiece) the model's own unk/bos/eos.
    let mut set_id = |typ: &'static str, id: Option<usize>| {
        if let Some(id) = id {
            if id < n_vocab {
                ids.entry(typ).or_insert(id as u32);
            } else {
                tracing::warn!("special token {typ} id {id} is out of range (vocabulary {n_vocab}); skipped");
            }
        }
    };
    let added_tokens: Vec<(String, usize)> = files
        .tokenizer_json
        .as_ref()
        .and_then(|t| t.get("added_tokens"))
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| Some((t.get("content")?.as_str()?.to_string(), t.get("id")?.as_u64()? as usize)))
                .collect()
        })
        .unwrap_or_default();
    let resolve = |content: &str| -> Option<usize> {
        if files.tokenizer_json.is_some() {
            added_tokens.iter().find(|(c, _)| c == content).map(|(_, id)| *id).or_else(|| lookup(content))
        } else {
            lookup(content)
        }
    };
    for (typ, _) in TYPES {
        let key = format!("{typ}_token");
        if let Some(c) = content_of(tc.get(&key)) {
            set_id(typ_static(typ), resolve(&c));
        }
    }
    if let Some(stm) = &files.special_tokens_map {
        for (typ, _) in TYPES {
            if let Some(c) = content_of(stm.get(&format!("{typ}_token"))) {
                set_id(typ_static(typ), resolve(&c));
            }
        }
    }
    for (typ, _) in TYPES {
        let v = config.get(&format!("{typ}_token_id"));
        let id = match v {
            Some(Json::Number(n)) => n.as_u64().map(|x| x as usize),
            _ => None,
        };
        set_id(typ_static(typ), id);
    }
    if let Some(sp) = sp {
        for (typ, id) in [("unk", sp.unk_id), ("bos", sp.bos_id), ("eos", sp.eos_id)] {
            if id >= 0 {
                set_id(typ_static(typ), Some(id as usize));
            }
        }
    }
    for (typ, key) in TYPES {
        if let Some(&id) = ids.get(typ) {
            extra.push((key.to_string(), Value::U32(id)));
        }
    }
    for (typ, v) in add {
        extra.push((format!("tokenizer.ggml.add_{typ}_token"), Value::Bool(v)));
    }
    Ok(())
}

fn typ_static(t: &str) -> &'static str {
    match t {
        "bos" => "bos",
        "eos" => "eos",
        "unk" => "unk",
        "sep" => "sep",
        "pad" => "pad",
        _ => "mask",
    }
}

/// `tokenizer.chat_template` (and named templates) from tokenizer_config.json, else
/// `chat_template.jinja` / `chat_template.json`.
fn chat_template(dir: &Path, files: &TokFiles, extra: &mut Vec<(String, Value)>) -> Result<()> {
    let mut tmpl = files.tokenizer_config.as_ref().and_then(|c| c.get("chat_template")).cloned();
    if tmpl.is_none() || tmpl.as_ref().is_some_and(Json::is_null) {
        let jinja = dir.join("chat_template.jinja");
        let json = dir.join("chat_template.json");
        if jinja.is_file() {
            tmpl =
                Some(Json::String(std::fs::read_to_string(&jinja).map_err(|e| Error::Io { path: jinja, source: e })?));
        } else if json.is_file() {
            tmpl = read_json(&json)?.get("chat_template").cloned();
        }
    }
    match tmpl {
        None | Some(Json::Null) => {}
        Some(Json::String(s)) => extra.push(("tokenizer.chat_template".into(), Value::String(s))),
        Some(Json::Array(list)) => {
            let mut default = None;
            let mut names = Vec::new();
            for choice in list {
                let name: String = choice
                    .get("name")
                    .and_then(Json::as_str)
                    .unwrap_or("")
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                let Some(t) = choice.get("template").and_then(Json::as_str) else { continue };
                if name.is_empty() {
                    continue;
                }
                if name == "default" {
                    default = Some(t.to_string());
                } else if !names.contains(&name) {
                    extra.push((format!("tokenizer.chat_template.{name}"), Value::String(t.to_string())));
                    names.push(name);
                }
            }
            if !names.is_empty() {
                extra.push(("tokenizer.chat_templates".into(), Value::Array(Array::String(names))));
            }
            if let Some(d) = default {
                extra.push(("tokenizer.chat_template".into(), Value::String(d)));
            }
        }
        Some(v) => tracing::warn!("tokenizer_config.json: chat_template has an unexpected type ({v}); ignored"),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// BPE tokenizer.json
// ---------------------------------------------------------------------------------------

fn bpe_vocab(dir: &Path, n_vocab: usize, files: &TokFiles, config: &Map<String, Json>) -> Result<Vocab> {
    let tj = files.tokenizer_json.as_ref().expect("checked by caller");
    let model = tj.get("model").and_then(Json::as_object).ok_or_else(|| tok_err("tokenizer.json: model is missing"))?;
    match model.get("type").and_then(Json::as_str) {
        Some("BPE") => {}
        other => return Err(tok_err(format!("tokenizer.json: model.type {other:?} is not supported (only BPE)"))),
    }
    if model.get("byte_fallback").and_then(Json::as_bool) == Some(true) {
        return Err(tok_err(
            "tokenizer.json is a SentencePiece-style BPE (byte_fallback) and there is no tokenizer.model; \
             put the model's tokenizer.model in the folder",
        ));
    }
    let vocab = model
        .get("vocab")
        .and_then(Json::as_object)
        .ok_or_else(|| tok_err("tokenizer.json: model.vocab is missing"))?;
    let mut by_id: HashMap<usize, String> = HashMap::with_capacity(vocab.len());
    for (t, id) in vocab {
        let id = id.as_u64().ok_or_else(|| tok_err(format!("tokenizer.json: id of {t:?} is not an integer")))? as usize;
        by_id.insert(id, t.clone());
    }
    // Added tokens: content → (id, special, normalized).
    let mut added: HashMap<String, bool> = HashMap::new();
    if let Some(list) = tj.get("added_tokens").and_then(Json::as_array) {
        for a in list {
            let (Some(c), Some(id)) = (a.get("content").and_then(Json::as_str), a.get("id").and_then(Json::as_u64))
            else {
                return Err(tok_err("tokenizer.json: an added token lacks content or id"));
            };
            by_id.insert(id as usize, c.to_string());
            added.insert(c.to_string(), a.get("special").and_then(Json::as_bool).unwrap_or(false));
        }
    }
    if let Some(&max) = by_id.keys().max() {
        if max >= n_vocab {
            return Err(tok_err(format!(
                "tokenizer.json has token id {max} but the model's vocabulary (vocab_size / embedding rows) is {n_vocab}"
            )));
        }
    }
    let mut tokens = Vec::with_capacity(n_vocab);
    let mut types = Vec::with_capacity(n_vocab);
    for i in 0..n_vocab {
        match by_id.get(&i) {
            None => {
                tokens.push(format!("[PAD{i}]"));
                types.push(UNUSED);
            }
            Some(t) => match added.get(t) {
                Some(&special) if special || looks_special(t) => {
                    tokens.push(t.clone());
                    types.push(CONTROL);
                }
                Some(_) => {
                    tokens.push(t.replace('\u{2581}', " "));
                    types.push(USER_DEFINED);
                }
                None => {
                    tokens.push(t.clone());
                    types.push(NORMAL);
                }
            },
        }
    }
    let merges = match model.get("merges") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(list)) => list
            .iter()
            .map(|m| match m {
                Json::String(s) => Ok(s.clone()),
                Json::Array(pair) if pair.len() == 2 => {
                    let enc = |j: &Json| -> Option<String> {
                        Some(j.as_str()?.chars().map(|c| if c == ' ' { '\u{120}' } else { c }).collect())
                    };
                    Ok(format!(
                        "{} {}",
                        enc(&pair[0]).ok_or_else(|| tok_err("tokenizer.json: bad merge"))?,
                        enc(&pair[1]).ok_or_else(|| tok_err("tokenizer.json: bad merge"))?
                    ))
                }
                _ => Err(tok_err("tokenizer.json: unknown merges format")),
            })
            .collect::<Result<_>>()?,
        Some(_) => return Err(tok_err("tokenizer.json: model.merges is not a list")),
    };
    if merges.is_empty() {
        tracing::warn!("tokenizer.json has no merges; the vocabulary may not work");
    }
    let pre = identify_pre(&dir.join("tokenizer.json"))?;
    let mut extra = Vec::new();
    let lookup = |content: &str| -> Option<usize> { vocab.get(content).and_then(Json::as_u64).map(|x| x as usize) };
    special_ids(files, config, &lookup, n_vocab, &mut extra, None)?;
    chat_template(dir, files, &mut extra)?;
    Ok(Vocab { model: "gpt2".into(), pre, tokens, scores: None, token_types: types, merges: Some(merges), extra })
}

/// The text llama.cpp encodes to fingerprint a BPE pre-tokenizer (`get_vocab_base_pre`).
pub const CHKTXT: &str = include_str!("chktxt.txt");

/// llama.cpp's `tokenizer.ggml.pre` for a `tokenizer.json`: SHA-256 of the Python repr of
/// the ids of [`CHKTXT`] (special tokens added, as `AutoTokenizer.encode` does), looked up in
/// llama.cpp's table. Returns the hash in the error when it is unknown.
pub fn identify_pre(tokenizer_json: &Path) -> Result<String> {
    let hash = chkhsh(tokenizer_json)?;
    match PRE_TOKENIZERS.iter().rev().find(|(h, _)| *h == hash) {
        Some((_, name)) => Ok(name.to_string()),
        None => Err(tok_err(format!(
            "BPE pre-tokenizer not recognized (chkhsh {hash}); llama.cpp's convert_hf_to_gguf_update.py lists the known ones"
        ))),
    }
}

/// The fingerprint hash llama.cpp computes for a `tokenizer.json` (see [`identify_pre`]).
pub fn chkhsh(tokenizer_json: &Path) -> Result<String> {
    let tok = tokenizers::Tokenizer::from_file(tokenizer_json)
        .map_err(|e| tok_err(format!("{}: {e}", tokenizer_json.display())))?;
    let enc = tok
        .encode(CHKTXT, true)
        .map_err(|e| tok_err(format!("{}: encoding the check text: {e}", tokenizer_json.display())))?;
    let repr = format!("[{}]", enc.get_ids().iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", "));
    Ok(hex(&sha256(repr.as_bytes())))
}

/// (chkhsh, tokenizer.ggml.pre) from llama.cpp's `convert_hf_to_gguf.py` (MIT); where a hash
/// appears twice the later entry wins, as there.
const PRE_TOKENIZERS: &[(&str, &str)] = &[
    ("b6e8e1518dc4305be2fe39c313ed643381c4da5db34a98f6a04c093f8afbe99b", "chatglm-bpe"),
    ("81d72c7348a9f0ebe86f23298d37debe0a5e71149e29bd283904c02262b27516", "chatglm-bpe"),
    ("a1336059768a55c99a734006ffb02203cd450fed003e9a71886c88acf24fdbc2", "glm4"),
    ("9ca2dd618e8afaf09731a7cf6e2105b373ba6a1821559f258b272fe83e6eb902", "glm4"),
    ("cdf5f35325780597efd76153d4d1c16778f766173908894c04afc20108536267", "glm4"),
    ("1431a23e583c97432bc230bff598d103ddb5a1f89960c8f1d1051aaa944d0b35", "minerva-7b"),
    ("7e57df22b1fe23a7b1e1c7f3dc4e3f96d43a4eb0836d0c6bdc3436d7b2f1c664", "hunyuan"),
    ("bba3b3366b646dbdded5dbc42d59598b849371afc42f7beafa914afaa5b70aa6", "hunyuan-dense"),
    ("e6ddf9c6686791c12d698d34c31ab9be1fea9af5a3d9a6909783ab382198ae1c", "hy_v4"),
    ("a6b57017d60e6edb4d88ecc2845188e0eb333a70357e45dcc9b53964a73bbae6", "falcon-h1"),
    ("60476e1243776c4fb1b993dbd7a5f15ac22f83c80afdf425fa5ae01c8d44ef86", "falcon-h1"),
    ("3eda48b4c4dc7de733d1a8b3e3b4a85243dbbf704da2ee9d42c6beced8897896", "falcon-h1"),
    ("48f8e02c0359c0bbdd82f26909171fac1c18a457bb47573ed1fe3bbb2c1cfd4b", "falcon-h1"),
    ("81212dc7cdb7e0c1074ca62c5aeab0d43c9f52b8a737be7b12a777c953027890", "kimi-k2"),
    ("d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c", "qwen2"),
    ("1444df51289cfa8063b96f0e62b1125440111bc79a52003ea14b6eac7016fd5f", "qwen35"),
    ("66b8d4e19ab16c3bfd89bce5d785fb7e0155e8648708a1f42077cb9fe002c273", "grok-2"),
    ("b3d1dd861f1d4c5c0d2569ce36baf3f90fe8a102db3de50dd71ff860d91be3df", "jina-v2-de"),
    ("0fe1cf6eda062318a1af7270f3331a85c539a01778ff948e24388e949c5282f4", "gpt-2"),
    ("9e454714343b69b99b71795c1d27a68c2a1d15dab111f4d353109f966af29da7", "lfm2"),
    ("846deafc5b0fa786186fa4ae6c7b49903cf2f1d1895bdb80b9120d60be135252", "gemma4"),
    ("0a766d034107bc736a3f2dc4968fd62e54a3570f1454443e0c5a4cc6bd7941ed", "spark2_5"),
    ("0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5", "llama-bpe"),
    ("049ecf7629871e3041641907f3de7c733e4dbfdc736f57d882ba0b0845599754", "deepseek-llm"),
    ("347715f544604f9118bb75ed199f68779f423cabb20db6de6f31b908d04d7821", "deepseek-coder"),
    ("8aeee3860c56296a157a1fe2fad249ec40aa59b1bb5709f4ade11c4e6fe652ed", "falcon"),
    ("0876d13b50744004aa9aeae05e7b0647eac9d801b5ba4668afc01e709c15e19f", "jina-v2-en"),
    ("9d032fcbd5501f4a38150912590928bfb36091efb5df11b8e2124b0390e3fb1e", "falcon3"),
    ("8e62295832751ca1e8f92f2226f403dea30dc5165e448b5bfa05af5340c64ec7", "bert-bge-large"),
    ("b6dc8df998e1cfbdc4eac8243701a65afe638679230920b50d6f17d81c098166", "olmo"),
    ("35d91631860c815f952d711435f48d356ebac988362536bed955d43bfa436e34", "starcoder"),
    ("3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454", "gpt-2"),
    ("32d85c31273f8019248f2559fed492d929ea28b17e51d81d3bb36fff23ca72b3", "stablelm2"),
    ("6221ad2852e85ce96f791f476e0b390cf9b474c9e3d1362f53a24a06dc8220ff", "refact"),
    ("9c2227e4dd922002fb81bde4fc02b0483ca4f12911410dee2255e4987644e3f8", "command-r"),
    ("d772b220ace2baec124bed8cfafce0ead7d6c38a4b65ef11261cf9d5d62246d1", "tiny_aya"),
    ("52df12b4c8d4176e7481aab4b6e8454d1fd0a210a04a574f6d4e067d10e23c3e", "cohere2moe"),
    ("e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea", "qwen2"),
    ("a8594e3edff7c29c003940395316294b2c623e09894deebbc65f33f1515df79e", "dbrx"),
    ("c7699093ba4255a91e702aa38a596aa81669f3525dae06c2953267dde580f448", "jina-v1-en"),
    ("171aeeedd6fb548d418a7461d053f11b6f1f1fc9b387bd66640d28a4b9f5c643", "jina-v2-es"),
    ("27949a2493fc4a9f53f5b9b029c82689cfbe5d3a1929bb25e043089e28466de6", "jina-v2-de"),
    ("a023e9fdc5a11f034d3ef515b92350e56fb2af1f66c6b6811a4444ea9bf8763d", "jina-v5-nano"),
    ("c136ed14d01c2745d4f60a9596ae66800e2b61fa45643e72436041855ad4089d", "smaug-bpe"),
    ("c7ea5862a53e4272c035c8238367063e2b270d51faa48c0f09e9d5b54746c360", "poro-chat"),
    ("7967bfa498ade6b757b064f31e964dddbb80f8f9a4d68d4ba7998fcf281c531a", "jina-v2-code"),
    ("7fc505bd3104ca1083b150b17d088b59534ede9bde81f0dd2090967d7fe52cee", "viking"),
    ("b53802fb28e26d645c3a310b34bfe07da813026ec7c7716883404d5e0f8b1901", "jais"),
    ("bc5108ee1eb6a3d600cadd065f63190fbd0554dbc9e4bbd6a0d977970afc8d2a", "jais-2"),
    ("7b3e7548e4308f52a76e8229e4e6cc831195d0d1df43aed21ac6c93da05fec5f", "codeshell"),
    ("63b97e4253352e6f357cc59ea5b583e3a680eaeaf2632188c2b952de2588485e", "tekken"),
    ("855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249", "smollm"),
    ("3c30d3ad1d6b64202cd222813e7736c2db6e1bd6d67197090fc1211fbc612ae7", "bloom"),
    ("bc01ce58980e1db43859146dc51b1758b3b88729b217a74792e9f8d43e479d21", "gpt3-finnish"),
    ("4e2b24cc4770243d65a2c9ec19770a72f08cffc161adbb73fcbb6b7dd45a0aae", "exaone"),
    ("fcace8b9cac38ce847670c970cd5892031a753a1ef381abd1d9af00f713da085", "phi-2"),
    ("60824e3c0d9401f89943cbb2fff727f0e2d4c545ba4df2d6e4f09a6db0f5b450", "chameleon"),
    ("8b5a93ed704057481f240da0be7e7dca721d7f8f4755263b6807227a2cbeae65", "roberta-bpe"),
    ("ad851be1dba641f2e3711822f816db2c265f788b37c63b4e1aeacb9ee92de8eb", "gigachat"),
    ("d4c8f286ea6b520b3d495c4455483cfa2302c0cfcd4be05d781b6a8a0a7cdaf1", "megrez"),
    ("877081d19cf6996e2c4ff0e1236341e9b7bde288f5311a56a937f0afbbb3aeb5", "deepseek-v3"),
    ("b3f499bb4255f8ca19fccd664443283318f2fd2414d5e0b040fbdd0cc195d6c5", "deepseek-r1-qwen"),
    ("ccc2ef013c104be7bae2965776d611e1d7a8a2a9c547dd93a682c9a9fc80352e", "gpt-4o"),
    ("7dec86086fcc38b66b7bc1575a160ae21cf705be7718b9d5598190d7c12db76f", "superbpe"),
    ("1994ffd01900cfb37395608534236ecd63f2bd5995d6cb1004dda1af50240f15", "trillion"),
    ("96a5f08be6259352137b512d4157e333e21df7edd3fcd152990608735a65b224", "bailingmoe"),
    ("d353350c764d8c3b39c763113960e4fb4919bea5fbf208a0e3b22e8469dc7406", "llama4"),
    ("0e9433cbbb161f89e264eb32e8e64bfe69e834973ffca5d41d3948a604a3e2a3", "pixtral"),
    ("d5f1dd6f980fec569fb218a81a7658ac45fc56b38c5a0adeb1c232fbe04ef5ec", "seed-coder"),
    ("b0a6b1c0bd5998ebd9df08611efde34a4ff03faed45ae09c43e6b31ebd4b94cf", "a.x-4.0"),
    ("f6791d196f87ce6b56a7d234be618e0d58f8cda3549416635b2bebcd22cd95c4", "midm-2.0"),
    ("169bf0296a13c4d9b7672313f749eb36501d931022de052aad6e36f2bf34dd51", "lfm2"),
    ("2085e1638f6c377a0aa4ead21b27bb4cb941bf800df86ed391011769c1758dfb", "exaone4"),
    ("a1e163ecab2e718a4c829d1148b6e86824ec36163bb71941c3dca9cd5ac25756", "mellum"),
    ("a0b64b4385f123663873756336c085744376d015ff328bb1d901598f63c44152", "modern-bert"),
    ("49fc0303c9e0d2c2c565c510f64b2d9b271276acdcdadff733249eda9f7d59df", "afmoe"),
    ("9b1be57e70d20d9501b2b3186e792d81181ae36ada3903c26f9fea418cf87206", "bailingmoe2"),
    ("53e325976a6e142379c19b09afcae354f2f496f147afa8f9e189a33fe4e3024e", "granite-docling"),
    ("f4f37b6c8eb9ea29b3eac6bb8c8487c5ab7885f8d8022e67edc1c68ce8403e95", "minimax-m2"),
    ("4a2e2abae11ca2b86d570fc5b44be4d5eb5e72cc8f22dd136a94b37da83ab665", "kormo"),
    ("9d70134b369a70e5735009b6de918f7581b5211f7c074d1f89f753aea8248af1", "youtu"),
    ("16389f0a1f51ee53e562ffd51c371dc508639ab0e4261502071836e50e223e91", "solar-open"),
    ("6c81ce329e0802883b22eabab0d3fa48357337ef1ecb45443828bf1f6254833f", "exaone-moe"),
    ("d30d75d9059f1aa2c19359de71047b3ae408c70875e8a3ccf8c5fba56c9d8af4", "qwen35"),
    ("b4b8ca1f9769494fbd956ebc4c249de6131fb277a4a3345a7a92c7dd7a55808d", "joyai-llm"),
    ("e4d54df1ebc1f2b91acd986c5b51aa50837d5faf7c7398e73c1f9e9ee5d19869", "kanana2"),
    ("862f827721df956049dff5ca81a57f29e575280bc622e290d3bf4e35eca29015", "f2llmv2"),
    ("62f6fb0a6fd5098caeabb19b07a5c1099cafc8b9c40eab6ea89ece4ec02fbc57", "sarvam-moe"),
    ("f728162c1315c26e40249849799b4ba3fe584c32084b4795b03eb295e63cb5af", "talkie"),
    ("36f3066e97b7f3994b379aaacde306c1444c6ae84e81a5ae3cd2b7ed3b8c42d4", "minicpm5"),
    ("f241072145675bf8322086f115aebad05e9f869557a238bf2150a2a417d1bf60", "granite-embed-multi-97m"),
    ("789696f5946cc0fc59371f39f6097cafed196b3acded6140432f26bbb1ae1669", "granite-embed-multi-311m"),
    ("9dcf830ee9990cdbf78cc523a5f7bd9ad8f3f9890c2d3581d2785ad10f07049d", "mellum2"),
    ("972da7b59cec44d1f0a490a86c96df53859e486e481563e5dddac155013d87ac", "laguna"),
    ("653660222fb704f61cbf2b618a8ae6502b7f8b20c980f9a5de07ed78e13319cd", "ufakzeka"),
];

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// SHA-256 (FIPS 180-4), for the pre-tokenizer fingerprint.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
        0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
        0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
        0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
        0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
        0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
        0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] =
        [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for chunk in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, word) in chunk.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh.wrapping_add(s1).wrapping_add(ch).wrapping_add(K[i]).wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 32];
    for (i, x) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_vectors() {
        assert_eq!(hex(&sha256(b"")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(hex(&sha256(b"abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let long = vec![b'a'; 1000];
        assert_eq!(hex(&sha256(&long)), "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
    }

    #[test]
    fn check_text_is_llamas() {
        // sha256 of the UTF-8 check text as llama.cpp's Python source spells it.
        assert_eq!(CHKTXT.len(), 431);
        assert_eq!(hex(&sha256(CHKTXT.as_bytes())), "a36179c1e2b1cfcfbfad1dc779addad2ffc778201e4cf0d538bddeafa2c526da");
    }

    #[test]
    fn pre_table_has_the_usual_ones() {
        let find = |h: &str| PRE_TOKENIZERS.iter().rev().find(|(x, _)| *x == h).map(|(_, n)| *n);
        assert_eq!(find("0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5"), Some("llama-bpe"));
        assert_eq!(find("e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea"), Some("qwen2"));
    }

    #[test]
    fn protobuf_piece() {
        // piece "ab" score 1.5 type CONTROL, wrapped as ModelProto field 1.
        let mut piece = vec![0x0a, 2, b'a', b'b', 0x15];
        piece.extend_from_slice(&1.5f32.to_le_bytes());
        piece.extend_from_slice(&[0x18, 3]);
        let mut model = vec![0x0a, piece.len() as u8];
        model.extend_from_slice(&piece);
        // normalizer_spec { add_dummy_prefix: false }
        model.extend_from_slice(&[0x1a, 2, 0x18, 0]);
        let m = SpModel::parse(&model).unwrap();
        assert_eq!(m.pieces, vec![SpPiece { piece: "ab".into(), score: 1.5, kind: CONTROL }]);
        assert!(!m.add_dummy_prefix);
        assert!(SpModel::parse(&[0x0a, 5, 1]).is_err());
    }
}
