//! Chat templates: Hugging Face–style Jinja templates rendered with `minijinja`, plus
//! built-in named templates that reproduce llama.cpp's `llama_chat_apply_template`.
//!
//! The environment mirrors what `transformers` gives templates: `trim_blocks` and
//! `lstrip_blocks` on, Python string/dict methods (`.strip()`, `.startswith()`,
//! `.split()`, `.items()`, … via `minijinja-contrib`'s pycompat), `raise_exception(msg)`,
//! `strftime_now(fmt)`, a Python-compatible `tojson` filter (`json.dumps` spacing, no
//! HTML escaping, `indent`/`separators`/`sort_keys`/`ensure_ascii`), and the variables
//! `messages`, `add_generation_prompt`, `bos_token`, `eos_token`.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{context, Environment, Error, ErrorKind};
use serde::{Deserialize, Serialize};

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
    /// `"chat template syntax error: …"` with the line and a source excerpt.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_template_owned(NAME, source.to_owned())
            .map_err(|e| format!("chat template syntax error: {e:#}"))?;
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
        tmpl.render(context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token,
            eos_token => self.eos_token,
        })
        .map_err(|e| format!("chat template error: {e:#}"))
    }
}

fn raise_exception(msg: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, msg))
}

// ---------------------------------------------------------------------------------------
// strftime_now

/// Civil date (y, m, d) from days since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// Seconds since the epoch: from `CLEX_DATE` (`YYYY-MM-DD`, optionally followed by
/// `THH:MM:SS` or ` HH:MM:SS`) when set, for reproducible tests; otherwise the clock (UTC).
fn now_secs() -> Result<i64, Error> {
    if let Ok(s) = std::env::var("CLEX_DATE") {
        let bad = || {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("CLEX_DATE={s:?} is not YYYY-MM-DD[THH:MM:SS]"),
            )
        };
        let num = |r: std::ops::Range<usize>| {
            s.get(r).and_then(|t| t.parse::<i64>().ok()).ok_or_else(bad)
        };
        let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
            return Err(bad());
        }
        let hms = if s.len() >= 19 {
            num(11..13)? * 3600 + num(14..16)? * 60 + num(17..19)?
        } else {
            0
        };
        return Ok(days_from_civil(y, m as u32, d as u32) * 86_400 + hms);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    Ok(now.as_secs() as i64)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// C `strftime` subset over a UTC timestamp: `%Y %y %m %d %e %H %I %M %S %p %B %b %h %A
/// %a %j %F %T %%`, with glibc's `%-X` (no padding). Unknown directives are kept verbatim.
pub fn format_time(fmt: &str, secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (sod / 3600, sod / 60 % 60, sod % 60);
    let wday = (days + 4).rem_euclid(7) as usize;
    let yday = days - days_from_civil(y, 1, 1) + 1;
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = chars.next();
        let no_pad = spec == Some('-');
        if no_pad {
            spec = chars.next();
        }
        let num = |out: &mut String, v: i64, w: usize| {
            let _ = if no_pad {
                write!(out, "{v}")
            } else {
                write!(out, "{v:0w$}")
            };
        };
        match spec {
            Some('Y') => num(&mut out, y, 0),
            Some('y') => num(&mut out, y.rem_euclid(100), 2),
            Some('m') => num(&mut out, m.into(), 2),
            Some('d') => num(&mut out, d.into(), 2),
            Some('e') => out.push_str(&if no_pad {
                d.to_string()
            } else {
                format!("{d:2}")
            }),
            Some('H') => num(&mut out, hh, 2),
            Some('I') => num(&mut out, (hh + 11) % 12 + 1, 2),
            Some('M') => num(&mut out, mm, 2),
            Some('S') => num(&mut out, ss, 2),
            Some('j') => num(&mut out, yday, 3),
            Some('p') => out.push_str(if hh < 12 { "AM" } else { "PM" }),
            Some('B') => out.push_str(MONTHS[m as usize - 1]),
            Some('b') | Some('h') => out.push_str(&MONTHS[m as usize - 1][..3]),
            Some('A') => out.push_str(DAYS[wday]),
            Some('a') => out.push_str(&DAYS[wday][..3]),
            Some('F') => out.push_str(&format!("{y:04}-{m:02}-{d:02}")),
            Some('T') => out.push_str(&format!("{hh:02}:{mm:02}:{ss:02}")),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                if no_pad {
                    out.push('-');
                }
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

fn strftime_now(fmt: String) -> Result<String, Error> {
    Ok(format_time(&fmt, now_secs()?))
}

// ---------------------------------------------------------------------------------------
// tojson, Python style

struct JsonOpts {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
    ensure_ascii: bool,
}

/// Python `repr(float)` (what `json.dumps` prints): shortest round-trip digits,
/// scientific notation outside 1e-4 ≤ |x| < 1e16.
fn py_float(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let sci = format!("{x:e}"); // e.g. "-1.2345e-7"
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let s = format!("{x}");
        if s.contains('.') {
            s
        } else {
            s + ".0"
        }
    } else {
        format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    }
}

fn json_str(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ensure_ascii && !c.is_ascii()) => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_value(out: &mut String, v: &Value, o: &JsonOpts, depth: usize) -> Result<(), Error> {
    let newline = |out: &mut String, depth: usize| {
        if let Some(ind) = &o.indent {
            out.push('\n');
            for _ in 0..depth {
                out.push_str(ind);
            }
        }
    };
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number if v.is_integer() => out.push_str(&v.to_string()),
        ValueKind::Number => out.push_str(&py_float(f64::try_from(v.clone())?)),
        ValueKind::String => json_str(out, v.as_str().unwrap_or_default(), o.ensure_ascii),
        ValueKind::Bytes => json_str(
            out,
            &String::from_utf8_lossy(v.as_bytes().unwrap_or_default()),
            o.ensure_ascii,
        ),
        ValueKind::Map | ValueKind::Seq | ValueKind::Iterable => {
            let is_map = v.kind() == ValueKind::Map;
            let mut items: Vec<Value> = v.try_iter()?.collect();
            if is_map && o.sort_keys {
                items.sort_by_key(|k| k.to_string());
            }
            out.push(if is_map { '{' } else { '[' });
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&o.item_sep);
                }
                newline(out, depth + 1);
                if is_map {
                    // Python turns None/bool/number keys into their JSON spelling.
                    let key = item.as_str().map(str::to_owned);
                    let key = key.unwrap_or_else(|| {
                        if item.is_none() {
                            "null".into()
                        } else {
                            item.to_string()
                        }
                    });
                    json_str(out, &key, o.ensure_ascii);
                    out.push_str(&o.key_sep);
                    json_value(out, &v.get_item(item)?, o, depth + 1)?;
                } else {
                    json_value(out, item, o, depth + 1)?;
                }
            }
            if !items.is_empty() {
                newline(out, depth);
            }
            out.push(if is_map { '}' } else { ']' });
        }
        ValueKind::Plain | ValueKind::Invalid | _ => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: cannot serialise {}", v.kind()),
            ));
        }
    }
    Ok(())
}

/// `tojson` as `transformers` defines it: `json.dumps(x, ensure_ascii=False, indent=None,
/// separators=None, sort_keys=False)`.
fn tojson(value: &Value, indent: Option<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let indent = match kwargs.get::<Option<Value>>("indent")?.or(indent) {
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) if v.is_integer() => Some(" ".repeat(i64::try_from(v)?.max(0) as usize)),
        Some(v) => Some(
            v.as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string()),
        ),
        None => None,
    };
    let (mut item_sep, mut key_sep) = (
        if indent.is_some() { "," } else { ", " }.to_owned(),
        ": ".to_owned(),
    );
    if let Some(seps) = kwargs.get::<Option<Vec<String>>>("separators")? {
        if seps.len() != 2 {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a pair",
            ));
        }
        (item_sep, key_sep) = (seps[0].clone(), seps[1].clone());
    }
    let opts = JsonOpts {
        indent,
        item_sep,
        key_sep,
        sort_keys: kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false),
        ensure_ascii: kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false),
    };
    kwargs.assert_all_used()?;
    let mut out = String::new();
    json_value(&mut out, value, &opts, 0)?;
    Ok(Value::from_safe_string(out))
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
