//! Bounds on what a chat template may cost. A template comes from the model file, so it is
//! untrusted input: without these, a one-line template can loop for hours
//! (`{% for i in range(99999) %}{% for j in range(99999) %}…`) or abort the process on an
//! allocation (`{{ x|indent(10**15) }}`). minijinja itself bounds recursion (500 frames),
//! `range` (100,000 items) and `'x' * n` (100 MB); these add the rest:
//!
//! * fuel: at most [`FUEL`] VM instructions per render (ample for real templates:
//!   tests/limits.rs renders a 2,000-turn conversation through Qwen2.5's);
//! * output: at most [`MAX_OUTPUT`] bytes per render;
//! * size arguments: widths and counts of `indent`, `slice`, `batch`, `tojson(indent=…)`,
//!   and of `format` / `str.format` specs, at most [`MAX_WIDTH`];
//! * `replace` and `join` (filters and Python methods): a result over [`MAX_OUTPUT`] bytes
//!   is refused before it is built (`'ab'|replace('', big)` multiplies sizes).
//!
//! Each limit fails the render with an error that names it. What compiling a template
//! costs is bounded before it is compiled (`super::precheck`). Left unbounded: strings
//! built by repeated concatenation (`{% set ns.s = ns.s ~ ns.s %}` doubles per step), and
//! the time of many large operations within the fuel (each `'x' * n` may build 100 MB);
//! minijinja has no hook on its operators, so a hostile template can still exhaust memory
//! or keep a render busy for hours (see docs/RELIABILITY.md).

use minijinja::value::{Kwargs, Rest, StringInput, Value};
use minijinja::{Environment, Error, ErrorKind, State};

/// VM instructions a render may execute.
pub const FUEL: u64 = 20_000_000;
/// Bytes a render may produce.
pub const MAX_OUTPUT: usize = 64 << 20;
/// The largest width or count a size argument may have.
pub const MAX_WIDTH: usize = 100_000;

/// Sets the fuel and replaces the size-taking builtins with checked ones.
pub(super) fn install(env: &mut Environment<'static>) {
    env.set_fuel(Some(FUEL));
    env.add_filter("indent", indent);
    env.add_filter("slice", |state: &State, v: Value, count: Value, fill: Option<Value>| {
        check_size("slice", "count", &count)?;
        minijinja::filters::slice(state, v, usize::try_from(count)?, fill)
    });
    env.add_filter("batch", |state: &State, v: Value, count: Value, fill: Option<Value>| {
        check_size("batch", "count", &count)?;
        minijinja::filters::batch(state, v, usize::try_from(count)?, fill)
    });
    env.add_filter("format", |state: &State, f: &Value, args: Rest<Value>| {
        check_spec("format", f)?;
        minijinja::filters::format(state, f, args)
    });
    env.add_filter("replace", |state: &State, v: &Value, from: &Value, to: &Value| {
        check_replace("replace", v, from, to)?;
        minijinja::filters::replace(
            state,
            StringInput::new(state, v)?,
            StringInput::new(state, from)?,
            StringInput::new(state, to)?,
        )
    });
    env.add_filter("join", |state: &State, v: &Value, joiner: Option<Value>| {
        check_join("join", v, joiner.as_ref())?;
        minijinja::filters::join(state, v, joiner.as_ref().map(|j| StringInput::new(state, j)).transpose()?)
    });
    env.set_unknown_method_callback(|state: &State, v: &Value, method: &str, args: &[Value]| {
        match (method, args) {
            ("format", _) => check_spec("str.format", v)?,
            ("replace", [from, to, ..]) if v.as_str().is_some() => check_replace("str.replace", v, from, to)?,
            ("join", [items]) if v.as_str().is_some() => check_join("str.join", items, Some(v))?,
            _ => {}
        }
        minijinja_contrib::pycompat::unknown_method_callback(state, v, method, args)
    });
}

/// A string a builtin would build must stay under [`MAX_OUTPUT`] bytes.
fn check_result_len(what: &str, len: u128) -> Result<(), Error> {
    if len > MAX_OUTPUT as u128 {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("{what} would build a string of {len} bytes, over the chat-template limit of {MAX_OUTPUT}"),
        ));
    }
    Ok(())
}

/// `s.replace(from, to)`: each match (every char boundary for an empty `from`) adds `to`.
fn check_replace(what: &str, v: &Value, from: &Value, to: &Value) -> Result<(), Error> {
    let (s, from, to) = (v.to_string(), from.to_string(), to.to_string());
    let n = if from.is_empty() { s.chars().count() + 1 } else { s.matches(from.as_str()).count() };
    check_result_len(what, s.len() as u128 + n as u128 * to.len() as u128)
}

/// `joiner.join(items)`: the items' text plus a joiner between each two.
fn check_join(what: &str, items: &Value, joiner: Option<&Value>) -> Result<(), Error> {
    let j = joiner.map_or(0, |j| j.to_string().len()) as u128;
    let (mut len, mut n) = (0u128, 0u128);
    if let Ok(iter) = items.try_iter() {
        for item in iter {
            len += item.as_str().map_or_else(|| item.to_string().len(), str::len) as u128 + if n > 0 { j } else { 0 };
            n += 1;
            check_result_len(what, len)?;
        }
    }
    Ok(())
}

/// `indent` with its width bounded (given as an argument or as `width=`).
fn indent(
    v: StringInput<'_>,
    width: Option<Value>,
    first: Option<bool>,
    blank: Option<bool>,
    kw: Kwargs,
) -> Result<Value, Error> {
    for w in [width.clone(), kw.peek::<Option<Value>>("width")?].iter().flatten() {
        check_size("indent", "width", w)?;
    }
    let width = width.map(usize::try_from).transpose()?;
    minijinja::filters::indent(v, width, first, blank, kw)
}

fn too_big(what: &str) -> Error {
    Error::new(ErrorKind::InvalidOperation, format!("{what} is over the chat-template limit of {MAX_WIDTH}"))
}

/// A width/count argument must be an integer ≤ [`MAX_WIDTH`].
fn check_size(filter: &str, arg: &str, v: &Value) -> Result<(), Error> {
    match i128::try_from(v.clone()) {
        Ok(n) if n > MAX_WIDTH as i128 => Err(too_big(&format!("{filter}: {arg} {n}"))),
        _ => Ok(()),
    }
}

/// A format string's widths and precisions (digit runs inside `%…` and `{…}` specs) must
/// be ≤ [`MAX_WIDTH`]; and its keys (`%(key)s`, `{0[key]}`) must be ASCII: minijinja
/// 2.24's format parser slices those by bytes and panics inside a multi-byte character
/// (found by fuzzing: `'{0[é]}'.format(x)`, `'%(é)s'|format(x)`).
fn check_spec(what: &str, v: &Value) -> Result<(), Error> {
    let Some(s) = v.as_str() else { return Ok(()) };
    check_keys(what, s)?;
    let mut rest = s;
    while let Some(i) = rest.find(['%', '{']) {
        let close = |c: char| if rest.as_bytes()[i] == b'%' { c.is_ascii_alphabetic() || c == '%' } else { c == '}' };
        let spec = &rest[i + 1..];
        let end = spec.find(close).unwrap_or(spec.len());
        for run in spec[..end].split(|c: char| !c.is_ascii_digit()).filter(|r| !r.is_empty()) {
            let digits = run.trim_start_matches('0');
            if digits.len() > 6 || digits.parse::<usize>().is_ok_and(|n| n > MAX_WIDTH) {
                return Err(too_big(&format!("{what}: a width or precision in the format string ({run})")));
            }
        }
        rest = &spec[end.min(spec.len())..];
    }
    Ok(())
}

/// See [`check_spec`]: a non-ASCII character in a `%(…)` mapping key or in the `[…]` index
/// of a `{…}` field name is refused.
fn check_keys(what: &str, s: &str) -> Result<(), Error> {
    let bad = || {
        Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("{what}: a non-ASCII key in the format string {:?} is not supported", short(s)),
        ))
    };
    let mut rest = s;
    while let Some(i) = rest.find(['%', '{']) {
        let open = rest.as_bytes()[i];
        let after = &rest[i + 1..];
        if after.as_bytes().first() == Some(&open) {
            rest = &after[1..]; // `%%` or `{{`: a literal
            continue;
        }
        if open == b'%' {
            if let Some(k) = after.strip_prefix('(').map(|k| k.split(')').next().unwrap_or("")) {
                if !k.is_ascii() {
                    return bad();
                }
            }
        } else {
            // The field name runs to a `}`, `:` or `!` outside brackets; every `[…]` index
            // in it (there may be several) must be ASCII.
            let mut in_index = false;
            for c in after.chars() {
                match c {
                    '[' => in_index = true,
                    ']' => in_index = false,
                    '}' | ':' | '!' if !in_index => break,
                    c if in_index && !c.is_ascii() => return bad(),
                    _ => {}
                }
            }
        }
        rest = after;
    }
    Ok(())
}

/// At most the first 60 characters of `s`, with "…" when cut.
fn short(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// An output sink that refuses to grow past [`MAX_OUTPUT`] bytes.
#[derive(Default)]
pub(super) struct CappedOutput {
    pub bytes: Vec<u8>,
    pub overflowed: bool,
}

impl std::io::Write for CappedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > MAX_OUTPUT {
            self.overflowed = true;
            return Err(std::io::Error::other("chat template output limit"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The message for a failed render: the limit hit, else minijinja's error.
pub(super) fn render_error(e: &Error, out: &CappedOutput) -> String {
    if out.overflowed {
        format!("chat template error: the rendered prompt is over {} MiB (output limit)", MAX_OUTPUT >> 20)
    } else if e.kind() == ErrorKind::OutOfFuel {
        format!(
            "chat template error: the template ran more than {FUEL} steps without finishing (fuel limit; a loop that does not end?)"
        )
    } else {
        format!("chat template error: {e:#}")
    }
}
