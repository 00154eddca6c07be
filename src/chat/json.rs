//! `tojson` for chat templates, as Python's `json.dumps` writes it.

use std::fmt::Write as _;

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Error, ErrorKind};

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
    if out.len() > super::limits::MAX_OUTPUT {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("tojson: the text is over the chat-template limit of {} bytes", super::limits::MAX_OUTPUT),
        ));
    }
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
pub(super) fn tojson(value: &Value, indent: Option<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let indent = match kwargs.get::<Option<Value>>("indent")?.or(indent) {
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) if v.is_integer() => {
            let n = i64::try_from(v)?.max(0) as usize;
            if n > super::limits::MAX_WIDTH {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson: indent {n} is over the chat-template limit of {}", super::limits::MAX_WIDTH),
                ));
            }
            Some(" ".repeat(n))
        }
        Some(v) if v.as_str().is_some_and(|s| s.len() > super::limits::MAX_WIDTH) => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: an indent string over the chat-template limit of {} bytes", super::limits::MAX_WIDTH),
            ))
        }
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
