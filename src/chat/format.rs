//! From a conversation to the tokens a model sees: the template (the GGUF's own, a
//! built-in by name, or a file), the vocabulary's BOS/EOS texts, and llama.cpp's rule
//! against doubled special tokens.

use super::{builtin, builtin_names, ChatMessage, ChatTemplate};
use crate::gguf::GgufFile;
use crate::tokenizer::Tokenizer;
use std::path::PathBuf;

/// Where a chat template came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateSource {
    /// The model's `tokenizer.chat_template`.
    Gguf,
    /// A built-in template by name ([`super::builtin`]).
    Builtin(String),
    /// A Jinja file.
    File(PathBuf),
}

impl std::fmt::Display for TemplateSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Gguf => write!(f, "the model's (tokenizer.chat_template)"),
            Self::Builtin(n) => write!(f, "built-in {n}"),
            Self::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A chat template bound to a vocabulary.
#[derive(Debug)]
pub struct ChatFormat {
    template: ChatTemplate,
    source: TemplateSource,
    bos: String,
    eos: String,
    add_bos: bool,
    add_eos: bool,
    /// Whether the template shows a system message (else it is merged into the next one).
    system_role: bool,
}

/// The GGUF key holding a model's Jinja chat template.
pub const GGUF_TEMPLATE_KEY: &str = "tokenizer.chat_template";

impl ChatFormat {
    /// The template for `tok`'s model: `spec` (`--chat-template`: a built-in name, else a
    /// Jinja file) when given, else the GGUF's `tokenizer.chat_template`. Errors say which
    /// template failed and why, or that the model has none.
    pub fn for_model(gguf: &GgufFile, tok: &Tokenizer, spec: Option<&str>) -> Result<Self, String> {
        match spec {
            Some(s) if builtin(s).is_some() => Self::new(builtin(s).unwrap_or_default(), TemplateSource::Builtin(s.to_owned()), tok),
            Some(s) => {
                let path = PathBuf::from(s);
                let src = std::fs::read_to_string(&path).map_err(|e| {
                    format!(
                        "--chat-template {s:?} is neither a built-in template ({}) nor a readable file: {e}",
                        builtin_names().collect::<Vec<_>>().join(", ")
                    )
                })?;
                Self::new(&src, TemplateSource::File(path), tok)
            }
            None => match gguf.get_str(GGUF_TEMPLATE_KEY) {
                Ok(Some(src)) => Self::new(src, TemplateSource::Gguf, tok),
                Ok(None) => Err(format!(
                    "the model has no chat template ({GGUF_TEMPLATE_KEY}); give one with --chat-template NAME|FILE \
                     (built-in: {})",
                    builtin_names().collect::<Vec<_>>().join(", ")
                )),
                Err(e) => Err(format!("{GGUF_TEMPLATE_KEY}: {e}")),
            },
        }
    }

    /// Compiles `source` with `tok`'s BOS/EOS texts and flags.
    pub fn new(source: &str, origin: TemplateSource, tok: &Tokenizer) -> Result<Self, String> {
        let text = |id: Option<u32>| {
            id.map(|t| String::from_utf8_lossy(&tok.token_to_piece_with(t, true, 0)).into_owned()).unwrap_or_default()
        };
        let (bos, eos) = (text(tok.bos()), text(tok.eos()));
        let template = ChatTemplate::new(source, &bos, &eos).map_err(|e| format!("{origin}: {e}"))?;
        // As llama.cpp probes a template: does a system message's text come out?
        const PROBE: &str = "clex system prompt probe";
        let probe = [ChatMessage::new("system", PROBE), ChatMessage::new("user", "hello")];
        let system_role = template.render(&probe, false).is_ok_and(|t| t.contains(PROBE));
        Ok(Self { template, source: origin, bos, eos, add_bos: tok.add_bos(), add_eos: tok.add_eos(), system_role })
    }

    /// Whether the template renders system messages itself.
    pub fn has_system_role(&self) -> bool {
        self.system_role
    }

    /// Where the template came from.
    pub fn source(&self) -> &TemplateSource {
        &self.source
    }

    /// The prompt text of `messages`. When the tokenizer adds BOS (EOS) itself, a BOS text
    /// the template put at the start (an EOS text at the end) is removed, as llama.cpp does,
    /// so the token is not doubled.
    ///
    /// A template that has no system role (it refuses or drops a system message, as
    /// Gemma's) gets the system text at the start of the next message, on its own line,
    /// as llama.cpp does.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String, String> {
        let merged;
        let messages = match messages {
            [sys, rest @ ..] if !self.system_role && sys.role == "system" => {
                merged = match rest {
                    [next, tail @ ..] => {
                        let first = ChatMessage::new(next.role.clone(), format!("{}\n{}", sys.content, next.content));
                        std::iter::once(first).chain(tail.iter().cloned()).collect()
                    }
                    [] => Vec::new(),
                };
                &merged[..]
            }
            _ => messages,
        };
        let mut s = self.template.render(messages, add_generation_prompt)?;
        if self.add_bos && !self.bos.is_empty() && s.starts_with(&self.bos) {
            s.drain(..self.bos.len());
        }
        if self.add_eos && !self.eos.is_empty() && s.ends_with(&self.eos) {
            s.truncate(s.len() - self.eos.len());
        }
        Ok(s)
    }

    /// The tokens of `messages`: [`ChatFormat::render`], then the vocabulary's special
    /// tokens added and special-token texts parsed (`llama_tokenize(…, true, true)`).
    pub fn tokens(&self, tok: &Tokenizer, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<Vec<u32>, String> {
        Ok(tok.encode(&self.render(messages, add_generation_prompt)?, true, true))
    }
}
