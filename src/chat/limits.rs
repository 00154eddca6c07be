//! Bounds on what a chat template may cost. A template comes from the model file, so it is
//! untrusted input: without these, a one-line template can loop for hours
//! (`{% for i in range(99999) %}{% for j in range(99999) %}…`), abort the process on an
//! allocation (`{{ x|indent(10**15) }}`), or spend minutes in one operator
//! (`messages * 4188651 ~ x`). minijinja itself bounds recursion (500 frames), `range`
//! (100,000 items) and `'x' * n` (100 MB); these add the rest:
//!
//! * fuel: at most [`FUEL`] VM instructions per render (ample for real templates:
//!   tests/limits.rs renders a 2,000-turn conversation through Qwen2.5's);
//! * work: what one instruction costs is metered (`super::meter` routes `+`, `*`, `~`,
//!   comparisons and the inputs and results of filters, methods, calls, `[…]` through
//!   [`op`] and [`read`]); a render may build or read at most [`WORK_BASE`] bytes plus
//!   [`WORK_PER_INPUT_BYTE`] per byte of its messages and special tokens (a string costs
//!   its bytes, a list or map [`ITEM_COST`] per item, anything at least 1);
//! * size: a value built by `+`, `*`, `~`, `replace`, `join`, `indent`, `format`, `tojson`
//!   may hold at most [`MAX_OUTPUT`] bytes, or [`MAX_ITEMS`] items for a list, checked
//!   before it is built; the rendered prompt at most [`MAX_OUTPUT`] bytes;
//! * size arguments: widths and counts of `indent`, `slice`, `batch`, `tojson(indent=…)`,
//!   and of `format` / `str.format` specs, at most [`MAX_WIDTH`].
//!
//! Each limit fails the render with an error that names it. What compiling a template
//! costs is bounded before it is compiled (`super::precheck`). What is left unmetered is
//! what costs more than the size of its input or result: sorting, `unique` and `select`
//! over lists of long strings read every string but are charged per item (see
//! docs/RELIABILITY.md).

use minijinja::value::{Kwargs, Rest, StringInput, Value, ValueKind};
use minijinja::{context, Environment, Error, ErrorKind, State};
use std::cell::Cell;
use std::fmt::Write as _;

/// VM instructions a render may execute.
pub const FUEL: u64 = 20_000_000;
/// Bytes a render may produce.
pub const MAX_OUTPUT: usize = 64 << 20;
/// The largest width or count a size argument may have.
pub const MAX_WIDTH: usize = 100_000;
/// Items a list built by `+` or `*` may hold.
pub const MAX_ITEMS: usize = 100_000;
/// Work units (bytes or items) every render may spend, whatever its input: a quarter of
/// a second or so of work, and no more memory than that (captured output, `{% set %}`
/// blocks and macros, is charged as it is emitted).
pub const WORK_BASE: u64 = 256 << 20;
/// Work units a render may spend per byte of its input.
pub const WORK_PER_INPUT_BYTE: u64 = 16;
/// Work units an item of a list or map costs (a byte costs 1: handling an item, a sort's
/// comparison for one, takes some 30 times as long as copying a byte).
pub const ITEM_COST: u64 = 64;

thread_local! {
    /// Work units left to the render running on this thread.
    static WORK_LEFT: Cell<u64> = const { Cell::new(WORK_BASE) };
    /// The work budget of the render running on this thread, and whether it ran out.
    static WORK_BUDGET: Cell<(u64, bool)> = const { Cell::new((WORK_BASE, false)) };
}

/// Starts the work meter of a render whose messages and special tokens take
/// `input_bytes`.
pub(super) fn start_render(input_bytes: usize) {
    let budget = WORK_BASE.saturating_add(WORK_PER_INPUT_BYTE.saturating_mul(input_bytes as u64));
    WORK_LEFT.set(budget);
    WORK_BUDGET.set((budget, false));
}

/// Spends `units` of the render's work budget.
fn charge(units: u64) -> Result<(), Error> {
    let left = WORK_LEFT.get();
    if units > left {
        return Err(out_of_work());
    }
    WORK_LEFT.set(left - units);
    Ok(())
}

/// Marks the render's work budget as spent; the error `render_error` turns into its message.
fn out_of_work() -> Error {
    WORK_LEFT.set(0);
    WORK_BUDGET.set((WORK_BUDGET.get().0, true));
    Error::new(ErrorKind::InvalidOperation, "chat template work limit")
}

/// What reading `v` costs: a string's bytes, [`ITEM_COST`] per item of a list or map (with
/// `items`), at least 1.
fn size(v: &Value, items: bool) -> u64 {
    let n = match (v.as_str(), v.as_bytes()) {
        (Some(s), _) => s.len() as u64,
        (_, Some(b)) => b.len() as u64,
        _ if items && matches!(v.kind(), ValueKind::Seq | ValueKind::Map | ValueKind::Iterable) => {
            v.len().unwrap_or(0) as u64 * ITEM_COST
        }
        _ => 0,
    };
    n.max(1)
}

/// `__clex_read(x)`: charges the size of `x` and returns it (see `super::meter`).
pub fn read(v: Value) -> Result<Value, Error> {
    charge(size(&v, true))?;
    Ok(v)
}

/// `__clex_str(x)`: [`read`] for where only a string costs its size.
pub fn read_str(v: Value) -> Result<Value, Error> {
    charge(size(&v, false))?;
    Ok(v)
}

/// `__clex_loop(items, k)`: charges [`ITEM_COST`] plus `k` (the bytes of text the loop's
/// body emits) per item, and returns the items (see `super::meter`). Items whose number
/// is not known up front (a one-shot iterator) are collected first, at most
/// [`MAX_ITEMS`] of them.
pub fn for_loop(items: Value, k: u64) -> Result<Value, Error> {
    let (items, n) = match items.len() {
        Some(n) => (items, n),
        None => match items.try_iter() {
            Ok(iter) if matches!(items.kind(), ValueKind::Iterable) => {
                let v: Vec<Value> = iter.take(MAX_ITEMS + 1).collect();
                if v.len() > MAX_ITEMS {
                    return Err(too_large("a for loop", "a list", MAX_ITEMS, "items"));
                }
                let n = v.len();
                (Value::from(v), n)
            }
            // not iterable, or nothing to count: minijinja decides
            _ => return Ok(items),
        },
    };
    charge((n as u64).saturating_mul(ITEM_COST.saturating_add(k)).max(1))?;
    Ok(items)
}

/// `__clex_op(op, a, b, …)`: `a op b op …`, left to right, for `+`, `*` and `~`, with the
/// size of each result checked before it is built and charged (see `super::meter`).
pub fn op(name: &str, operands: Rest<Value>) -> Result<Value, Error> {
    let mut it = operands.0.into_iter();
    let mut acc = it.next().ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "operator without operands"))?;
    for v in it {
        acc = match name {
            "~" => concat(&acc, &v)?,
            "+" | "*" => arith(name, acc, v)?,
            _ => return Err(Error::new(ErrorKind::InvalidOperation, format!("unknown operator {name:?}"))),
        };
    }
    Ok(acc)
}

/// The length of `v`'s text, up to a little over [`MAX_OUTPUT`].
fn display_len(v: &Value) -> usize {
    if let Some(s) = v.as_str() {
        return s.len();
    }
    let mut out = CappedString { s: String::new(), cap: MAX_OUTPUT };
    match write!(out, "{v}") {
        Ok(()) => out.s.len(),
        Err(_) => MAX_OUTPUT + 1,
    }
}

/// A string sink that stops at `cap` bytes.
struct CappedString {
    s: String,
    cap: usize,
}

impl std::fmt::Write for CappedString {
    fn write_str(&mut self, x: &str) -> std::fmt::Result {
        if self.s.len() + x.len() > self.cap {
            return Err(std::fmt::Error);
        }
        self.s.push_str(x);
        Ok(())
    }
}

/// `a ~ b` as minijinja does it (both formatted), stopping at the size limit.
fn concat(a: &Value, b: &Value) -> Result<Value, Error> {
    let left = WORK_LEFT.get();
    let mut out = CappedString { s: String::new(), cap: MAX_OUTPUT.min(usize::try_from(left).unwrap_or(usize::MAX)) };
    if write!(out, "{a}{b}").is_err() {
        if out.cap < MAX_OUTPUT {
            return Err(out_of_work());
        }
        return Err(too_large("~", "a string", MAX_OUTPUT, "bytes"));
    }
    charge(out.s.len() as u64)?;
    Ok(Value::from(out.s))
}

fn too_large(op: &str, what: &str, limit: usize, unit: &str) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("{op} would build {what} of more than {limit} {unit}, over the chat-template limit"),
    )
}

/// `a + b` and `a * b`: the size of a string or list result is checked and charged, then
/// minijinja computes it.
fn arith(name: &str, a: Value, b: Value) -> Result<Value, Error> {
    let seq = |v: &Value| matches!(v.kind(), ValueKind::Seq | ValueKind::Iterable);
    let (mut bytes, mut items) = (0u128, 0u128);
    if name == "+" {
        if let (Some(x), Some(y)) = (a.as_str(), b.as_str()) {
            bytes = x.len() as u128 + y.len() as u128;
        } else if seq(&a) && seq(&b) {
            items = a.len().unwrap_or(0) as u128 + b.len().unwrap_or(0) as u128;
        }
    } else {
        let repeated = a.as_str().map(|s| (s, &b)).or_else(|| b.as_str().map(|s| (s, &a)));
        if let Some((s, n)) = repeated {
            bytes = s.len() as u128 * n.as_usize().unwrap_or(0) as u128;
        } else if let Some((l, n)) = [(&a, &b), (&b, &a)].into_iter().find(|(l, _)| seq(l)) {
            items = l.len().unwrap_or(0) as u128 * n.as_usize().unwrap_or(0) as u128;
        }
    }
    if bytes > MAX_OUTPUT as u128 {
        return Err(too_large(name, "a string", MAX_OUTPUT, "bytes"));
    }
    if items > MAX_ITEMS as u128 {
        return Err(too_large(name, "a list", MAX_ITEMS, "items"));
    }
    charge((bytes + items * ITEM_COST as u128).clamp(1, u64::MAX as u128) as u64)?;
    evaluate(name, a, b)
}

/// minijinja's own `a + b` / `a * b`, so that every other case behaves as it does.
fn evaluate(name: &str, a: Value, b: Value) -> Result<Value, Error> {
    static ENV: std::sync::OnceLock<Environment<'static>> = std::sync::OnceLock::new();
    static EXPRS: std::sync::OnceLock<[minijinja::Expression<'static, 'static>; 2]> = std::sync::OnceLock::new();
    let exprs = EXPRS.get_or_init(|| {
        let env = ENV.get_or_init(Environment::new);
        ["a + b", "a * b"].map(|src| env.compile_expression(src).expect("a constant expression compiles"))
    });
    let expr = &exprs[usize::from(name != "+")];
    // without the helper's location, so that minijinja gives the template's line
    expr.eval(context! { a => a, b => b })
        .map_err(|e| Error::new(e.kind(), e.detail().map(str::to_owned).unwrap_or_else(|| e.kind().to_string())))
}

/// Sets the fuel and replaces the size-taking builtins with checked ones.
pub(super) fn install(env: &mut Environment<'static>) {
    env.set_fuel(Some(FUEL));
    env.add_function(super::meter::OP_FN, op);
    env.add_function(super::meter::READ_FN, read);
    env.add_filter(super::meter::READ_FN, read);
    env.add_function(super::meter::STR_FN, read_str);
    env.add_function(super::meter::LOOP_FN, for_loop);
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
        check_spec("format", f, &args[..])?;
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
            ("format", _) => check_spec("str.format", v, args)?,
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
    let lines = v.as_str().bytes().filter(|&b| b == b'\n').count() as u128 + 1;
    let w = width.or(kw.peek::<Option<usize>>("width").ok().flatten()).unwrap_or(4) as u128;
    check_result_len("indent", v.as_str().len() as u128 + lines * w)?;
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
fn check_spec(what: &str, v: &Value, args: &[Value]) -> Result<(), Error> {
    let Some(s) = v.as_str() else { return Ok(()) };
    check_keys(what, s)?;
    let mut rest = s;
    let (mut widths, mut fields) = (0u128, 0u128);
    while let Some(i) = rest.find(['%', '{']) {
        fields += 1;
        let close = |c: char| if rest.as_bytes()[i] == b'%' { c.is_ascii_alphabetic() || c == '%' } else { c == '}' };
        let spec = &rest[i + 1..];
        let end = spec.find(close).unwrap_or(spec.len());
        for run in spec[..end].split(|c: char| !c.is_ascii_digit()).filter(|r| !r.is_empty()) {
            let digits = run.trim_start_matches('0');
            if digits.len() > 6 || digits.parse::<usize>().is_ok_and(|n| n > MAX_WIDTH) {
                return Err(too_big(&format!("{what}: a width or precision in the format string ({run})")));
            }
            widths += digits.parse::<u128>().unwrap_or(0);
        }
        rest = &spec[end.min(spec.len())..];
    }
    // each field is an argument's text (the longest, at worst), padded to at most its
    // width or printed with that many digits
    let longest = args.iter().map(display_len).max().unwrap_or(0) as u128;
    check_result_len(what, s.len() as u128 + widths + fields * longest)
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
    } else if let (budget, true) = WORK_BUDGET.get() {
        format!(
            "chat template error: the template built or read more than {} MiB of values (work limit; \
             it repeats costly operations on long strings or lists)",
            budget >> 20
        )
    } else if e.kind() == ErrorKind::OutOfFuel {
        format!(
            "chat template error: the template ran more than {FUEL} steps without finishing (fuel limit; a loop that does not end?)"
        )
    } else {
        format!("chat template error: {e:#}")
    }
}
