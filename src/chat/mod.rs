//! Chat templates: Hugging Face–style Jinja templates rendered with `minijinja`, plus
//! built-in named templates that reproduce llama.cpp's `llama_chat_apply_template`.
//!
//! The environment mirrors what `transformers` gives templates: `trim_blocks` and
//! `lstrip_blocks` on, Python string/dict methods (`.strip()`, `.startswith()`,
//! `.split()`, `.items()`, … via `minijinja-contrib`'s pycompat), `raise_exception(msg)`,
//! `strftime_now(fmt)`, a Python-compatible `tojson` filter (`json.dumps` spacing, no
//! HTML escaping, `indent`/`separators`/`sort_keys`/`ensure_ascii`), and the variables
//! `messages`, `add_generation_prompt`, `bos_token`, `eos_token`, and `tools` and
//! `documents` as none. `{% generation %}` blocks (assistant masks) render their content.

use minijinja::value::Value;
use minijinja::{context, Environment, Error, ErrorKind};
use serde::{Deserialize, Serialize};

mod format;
mod json;
pub mod limits;
mod meter;
pub mod precheck;
mod time;

pub use format::{ChatFormat, TemplateSource};
pub use time::format_time;
use json::tojson;
use time::strftime_now;

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, `tool`, …
    pub role: String,
    /// The message text.
    pub content: String,
}

impl ChatMessage {
    /// Builds a message from a role and its content.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A compiled chat template with its special tokens.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish()
    }
}

const NAME: &str = "chat_template";

impl ChatTemplate {
    /// Compiles a Jinja chat template. Syntax errors come back as
    /// `"chat template syntax error: …"` with the line and a source excerpt; a template
    /// that would cost too much to compile (`precheck`) as `"chat template error: …"`.
    /// The template is compiled with its operators and reads metered (`meter`, `limits`).
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, String> {
        Self::build(source, bos_token, eos_token, true)
    }

    /// [`ChatTemplate::new`] without the metering rewrite (the other limits stay): the
    /// reference that tests and the fuzzer compare the metered template against.
    #[doc(hidden)]
    pub fn new_unmetered(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, String> {
        Self::build(source, bos_token, eos_token, false)
    }

    fn build(source: &str, bos_token: &str, eos_token: &str, metered: bool) -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        // Python's: None is not iterable (minijinja's none iterates as empty).
        env.add_test("iterable", |v: Value| !v.is_none() && v.try_iter().is_ok());
        limits::install(&mut env);
        let source = generation_blocks_as_if(source);
        guarded("chat template error", || precheck::check(&source))?;
        let compile = |env: &mut Environment<'static>, src: String| {
            guarded("chat template syntax error", || {
                env.add_template_owned(NAME, src).map_err(|e| format!("chat template syntax error: {e:#}"))
            })
        };
        if metered {
            let metered_source = guarded("chat template error", || meter::instrument(&source))?;
            if let Err(e) = compile(&mut env, metered_source) {
                // Report the original's own syntax error; else the metered one failed to
                // compile where the original does not (too deeply nested once wrapped).
                compile(&mut env, source)?;
                return Err(format!(
                    "chat template error: the template's expressions nest too deeply for clex to meter them \
                     (a limit of clex; {e})"
                ));
            }
        } else {
            compile(&mut env, source)?;
        }
        Ok(Self {
            env,
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
        })
    }

    /// Renders `messages`; with `add_generation_prompt` the template appends the opening
    /// of an assistant turn (if it supports that). Errors (including `raise_exception`)
    /// come back as `"chat template error: …"`.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, String> {
        let tmpl = self
            .env
            .get_template(NAME)
            .map_err(|e| format!("chat template error: {e:#}"))?;
        let mut out = limits::CappedOutput::default();
        let input = messages.iter().map(|m| m.role.len() + m.content.len()).sum::<usize>()
            + self.bos_token.len()
            + self.eos_token.len();
        limits::start_render(input);
        guarded("chat template error", || {
            tmpl.render_captured_to(context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token,
                eos_token => self.eos_token,
                // As transformers passes them when the caller has none.
                tools => Value::from(()),
                documents => Value::from(()),
            }, &mut out)
            .map(drop)
            .map_err(|e| limits::render_error(&e, &out))
        })?;
        String::from_utf8(out.bytes).map_err(|e| format!("chat template error: output is not UTF-8: {e}"))
    }
}

/// Runs `f`, turning a panic inside the template engine into an error that starts with
/// `prefix`: the template comes from the model file, and a bug that a crafted template
/// reaches in minijinja must not take the process down (one was found by fuzzing; see
/// `limits::check_spec`).
fn guarded<T>(prefix: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        Err(format!("{prefix}: the template engine failed on this template (internal error: {msg})"))
    })
}

/// `{% generation %}…{% endgeneration %}` (transformers' marker for the assistant's tokens,
/// no effect on the text) becomes `{% if true %}…{% endif %}`, keeping any whitespace
/// control (`{%-`, `-%}`) of the tags.
fn generation_blocks_as_if(src: &str) -> String {
    static RE: std::sync::OnceLock<fancy_regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        fancy_regex::Regex::new(r"\{%([-+]?)\s*(end)?generation\s*([-+]?)%\}").expect("valid regex")
    });
    re.replace_all(src, |c: &fancy_regex::Captures<'_, str>| {
        let stmt = if c.get(2).is_some() { "endif" } else { "if true" };
        format!("{{%{} {stmt} {}%}}", &c[1], &c[3])
    })
    .into_owned()
}

fn raise_exception(msg: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, msg))
}

// ---------------------------------------------------------------------------------------
// Built-in templates

const CHATML: &str = "{%- for m in messages -%}{{- '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' -}}{%- endfor -%}\
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}";

const LLAMA3: &str = "{%- for m in messages -%}\
{{- '<|start_header_id|>' + m.role + '<|end_header_id|>\\n\\n' + m.content|trim + '<|eot_id|>' -}}{%- endfor -%}\
{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}";

/// llama.cpp's llama2 family: `[INST] ` opens the first turn, the assistant turn ends with
/// `</s>`; `$sys_open`/`$sys_close` wrap the system text, `$reopen` starts later turns,
/// `$c` is the (possibly trimmed) content expression.
#[rustfmt::skip]
macro_rules! llama2_template {
    ($sys_open:literal, $sys_close:literal, $reopen:literal, $c:literal) => { concat!(
        "{{- '[INST] ' -}}{%- set ns = namespace(inside=true) -%}{%- for m in messages -%}",
        "{%- if not ns.inside -%}{{- '", $reopen, "' -}}{%- set ns.inside = true -%}{%- endif -%}",
        "{%- if m.role == 'system' -%}{{- '", $sys_open, "' + ", $c, " + '", $sys_close, "' -}}",
        "{%- elif m.role == 'user' -%}{{- ", $c, " + ' [/INST]' -}}",
        "{%- else -%}{{- ", $c, " + '</s>' -}}{%- set ns.inside = false -%}{%- endif -%}{%- endfor -%}"
    ) };
}

/// llama.cpp's Mistral v1/v3/v3-tekken: `$l` leading space, `$t` trailing space, `$a` the
/// assistant content expression.
#[rustfmt::skip]
macro_rules! mistral_template {
    ($l:literal, $t:literal, $a:literal) => { concat!(
        "{%- set ns = namespace(inside=false) -%}{%- for m in messages -%}",
        "{%- if not ns.inside -%}{{- '", $l, "[INST]", $t, "' -}}{%- set ns.inside = true -%}{%- endif -%}",
        "{%- if m.role == 'system' -%}{{- m.content + '\\n\\n' -}}",
        "{%- elif m.role == 'user' -%}{{- m.content + '", $l, "[/INST]' -}}",
        "{%- else -%}{{- '", $t, "' + ", $a, " + '</s>' -}}{%- set ns.inside = false -%}{%- endif -%}{%- endfor -%}"
    ) };
}

/// llama.cpp's Mistral v7 / v7-tekken: `$t` is the space after each opening tag.
#[rustfmt::skip]
macro_rules! mistral_v7_template {
    ($t:literal) => { concat!(
        "{%- for m in messages -%}",
        "{%- if m.role == 'system' -%}{{- '[SYSTEM_PROMPT]", $t, "' + m.content + '[/SYSTEM_PROMPT]' -}}",
        "{%- elif m.role == 'user' -%}{{- '[INST]", $t, "' + m.content + '[/INST]' -}}",
        "{%- else -%}{{- '", $t, "' + m.content + '</s>' -}}{%- endif -%}{%- endfor -%}"
    ) };
}

#[rustfmt::skip]
const BUILTINS: &[(&str, &str)] = &[
    ("chatml", CHATML),
    ("llama2", llama2_template!("", "\\n", "[INST] ", "m.content")),
    ("llama2-sys", llama2_template!("<<SYS>>\\n", "\\n<</SYS>>\\n\\n", "[INST] ", "m.content")),
    ("llama2-sys-bos", llama2_template!("<<SYS>>\\n", "\\n<</SYS>>\\n\\n", "<s>[INST] ", "m.content")),
    ("llama2-sys-strip", llama2_template!("<<SYS>>\\n", "\\n<</SYS>>\\n\\n", "[INST] ", "m.content|trim")),
    ("llama3", LLAMA3),
    // llama.cpp has no "mistral" entry; its detector sends that string to plain llama2.
    ("mistral", llama2_template!("", "\\n", "[INST] ", "m.content")),
    ("mistral-v1", mistral_template!(" ", " ", "m.content")),
    ("mistral-v3", mistral_template!("", " ", "m.content|trim")),
    ("mistral-v3-tekken", mistral_template!("", "", "m.content")),
    ("mistral-v7", mistral_v7_template!(" ")),
    ("mistral-v7-tekken", mistral_v7_template!("")),
];

/// Jinja source of a built-in template (`--chat-template NAME`), written to produce exactly
/// what llama.cpp's `llama_chat_apply_template` produces for that name — no BOS, and the
/// llama2/mistral formats ignore `add_generation_prompt` as llama.cpp does. Content
/// trimming (`llama3`, `mistral-v3`, `llama2-sys-strip`) uses Unicode whitespace where
/// llama.cpp uses C `isspace`; they differ only on non-ASCII whitespace.
pub fn builtin(name: &str) -> Option<&'static str> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// Names accepted by [`builtin`].
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().map(|(n, _)| *n)
}

#[cfg(test)]
mod tests {
    use super::guarded;

    #[test]
    fn a_panic_in_the_engine_becomes_an_error() {
        let r: Result<(), String> = guarded("chat template error", || panic!("byte index 1 is not a char boundary"));
        let e = r.unwrap_err();
        assert!(e.starts_with("chat template error: the template engine failed"), "{e}");
        assert!(e.contains("not a char boundary"), "{e}");
        assert_eq!(guarded("x", || Ok::<_, String>(7)), Ok(7));
    }
}
