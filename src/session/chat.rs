//! Chat turns on a session: the conversation rendered with the model's template, only
//! the part that differs from the cache evaluated.

use super::Session;
use crate::chat::{ChatFormat, ChatMessage};
use crate::generate::PromptStats;
use crate::model::Model;
use crate::session::Logits;
use crate::{Error, Result};
use std::time::Instant;

impl Model {
    /// The chat format for this model: `spec` is a built-in template name (`chatml`,
    /// `llama3`, …) or a Jinja file; `None` takes the model's own
    /// (`tokenizer.chat_template`), an [`Error::Chat`] when it has none.
    pub fn chat_format(&self, spec: Option<&str>) -> Result<ChatFormat> {
        ChatFormat::for_model(&self.gguf, &self.tokenizer, spec).map_err(Error::Chat)
    }
}

impl Session {
    /// Makes the cache hold the whole conversation `messages`, rendered with the model's
    /// chat template and the opening of the assistant's reply, ready for
    /// [`Session::generate`]. The tokens the rendering shares with the cache are kept;
    /// only the rest is evaluated (a reply generated on this session and then passed back
    /// as an `assistant` message is mostly reused).
    pub fn chat(&mut self, messages: &[ChatMessage]) -> Result<PromptStats> {
        let format = self.model().chat_format(None)?;
        self.chat_with(&format, messages)
    }

    /// [`Session::chat`] with a given format (e.g. [`Model::chat_format`] with a built-in
    /// template for a model that has none; build it once and reuse it).
    pub fn chat_with(&mut self, format: &ChatFormat, messages: &[ChatMessage]) -> Result<PromptStats> {
        if messages.is_empty() {
            return Err(Error::InvalidArgument("a chat needs at least one message".into()));
        }
        let tokens = format.tokens(&self.model().tokenizer, messages, true).map_err(Error::Chat)?;
        self.sync_tokens(&tokens)
    }

    /// Makes the cache hold exactly `tokens`: keeps the longest prefix it shares with the
    /// cache and evaluates the rest. A conversation longer than the context is refused
    /// ([`Error::Context`]) and the cache is left as it was.
    pub fn sync_tokens(&mut self, tokens: &[u32]) -> Result<PromptStats> {
        let t0 = Instant::now();
        if tokens.is_empty() {
            return Err(Error::InvalidArgument("nothing to evaluate (no tokens)".into()));
        }
        if tokens.len() > self.n_ctx() {
            return Err(Error::Context(format!(
                "the conversation is {} tokens but the context holds {}",
                tokens.len(),
                self.n_ctx()
            )));
        }
        let common = self.tokens.iter().zip(tokens).take_while(|(a, b)| a == b).count();
        self.truncate(common);
        if common < tokens.len() {
            self.eval(&tokens[common..], Logits::Last)?;
        }
        Ok(PromptStats { n_evaluated: tokens.len() - common, n_reused: common, elapsed: t0.elapsed() })
    }
}
