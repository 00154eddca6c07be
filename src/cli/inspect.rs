//! `clex-run inspect MODEL.gguf`: metadata, tensors, RoPE/CLEX settings.

use super::args::InspectArgs;
use clex::gguf::{Array, GgufFile, Value};
use clex::Result;
use std::collections::BTreeMap;
use std::fmt::Write as _;

fn show_value(v: &Value, full: bool) -> String {
    match v {
        Value::Array(a) if full || a.len() <= 16 => show_array(a),
        _ => v.to_string(),
    }
}

fn show_array(a: &Array) -> String {
    match a {
        Array::String(v) => format!("{v:?}"),
        Array::Array(v) => format!("[{}]", v.iter().map(show_array).collect::<Vec<_>>().join(", ")),
        other => match (other.to_i64(), other.to_f32()) {
            (Some(i), _) => format!("{i:?}"),
            (None, Some(f)) => format!("{f:?}"),
            _ => format!("{other:?}"),
        },
    }
}

/// Renders the report.
pub fn report(f: &GgufFile, args: &InspectArgs) -> Result<String> {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "GGUF v{} · {} metadata keys · {} tensors · alignment {} · data at byte {}",
        f.version(), f.metadata().len(), f.tensors().len(), f.alignment(), f.data_offset());
    let _ = writeln!(w, "\n## Metadata");
    for (k, v) in f.metadata() {
        if k == "tokenizer.chat_template" && !args.full {
            let _ = writeln!(w, "{k:48} <{} bytes of Jinja>", v.as_str().map_or(0, str::len));
            continue;
        }
        let _ = writeln!(w, "{k:48} {}", show_value(v, args.full));
    }
    let _ = writeln!(w, "\n## Tensors");
    let mut by_type: BTreeMap<&str, (usize, u64, u64)> = BTreeMap::new();
    for t in f.tensors() {
        let e = by_type.entry(t.ty.name).or_default();
        e.0 += 1;
        e.1 += t.n_elements();
        e.2 += t.size;
        if args.tensors {
            let _ = writeln!(w, "{:40} {:8} {:?} @ {}", t.name, t.ty.name, t.dims, t.offset);
        }
    }
    let total: u64 = by_type.values().map(|v| v.2).sum();
    let params: u64 = by_type.values().map(|v| v.1).sum();
    for (ty, (n, el, bytes)) in &by_type {
        let _ = writeln!(w, "{ty:8} {n:5} tensors {:>14} params {:>10.2} MiB", el, *bytes as f64 / 1048576.0);
    }
    let _ = writeln!(w, "total    {:5} tensors {params:>14} params {:>10.2} MiB", f.tensors().len(), total as f64 / 1048576.0);
    let _ = writeln!(w, "\n## RoPE / CLEX");
    out.push_str(&super::common::rope_report(f)?);
    Ok(out)
}

pub fn run(args: &InspectArgs) -> Result<()> {
    let f = GgufFile::open(&args.model)?;
    print!("{}", report(&f, args)?);
    Ok(())
}
