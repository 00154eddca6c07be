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
use super::sentencepiece::SpModel;

mod bpe_json;
use bpe_json::bpe_vocab;
pub use bpe_json::{chkhsh, identify_pre, sha256};

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

pub(super) fn tok_err(msg: impl std::fmt::Display) -> Error {
    Error::Tokenizer(msg.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::sentencepiece::SpPiece;
    use bpe_json::{hex, CHKTXT, PRE_TOKENIZERS};

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
