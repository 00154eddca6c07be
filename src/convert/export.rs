//! `export-llamacpp`: a CLEX GGUF with one bucket frozen into `rope_freqs`, for stock llama.cpp.

use super::*;

/// Writes a copy of the CLEX GGUF `input` that stock llama.cpp runs with CLEX bucket `t`
/// frozen: the CLEX keys (`{arch}.rope.clex.*`, `rope.scaling.original_context_length`) and
/// tensors (`clex.*`) are dropped, `{arch}.rope.scaling.type` = "none", and
/// `rope_freqs.weight` = θ_j / z_j(t) (F32, [d/2]; all ones for t = 1) is added, θ_j being
/// ggml's inverse frequencies for the file's `rope.freq_base`. `{arch}.context_length` becomes
/// L·t. Returns the factors written.
pub fn export_llamacpp(input: &Path, t: u32, output: &Path) -> Result<Vec<f32>> {
    let f = GgufFile::open(input)?;
    let hp = crate::model::HParams::from_gguf(&f)?;
    let table = crate::model::load_clex(&f, &hp)?.ok_or_else(|| {
        Error::Clex(format!("{}: not a CLEX model ({{arch}}.rope.scaling.type is not \"clex\")", input.display()))
    })?;
    if t < 1 || t > table.max_factor() {
        return Err(Error::Clex(format!("t = {t} is outside the model's buckets 1..={}", table.max_factor())));
    }
    if f.tensor("rope_freqs.weight").is_some() {
        return Err(Error::Clex("the model already has a rope_freqs.weight tensor".into()));
    }
    let arch = hp.arch.name();
    let base = f.get_f32(&format!("{arch}.rope.freq_base"))?.unwrap_or(10000.0);
    let factors = table.freq_factors_for_base(t, base).unwrap_or_else(|| vec![1.0; table.head_dim() / 2]);

    let mut w = GgufWriter::from_gguf(&f)?;
    let clex_prefix = format!("{arch}.rope.clex.");
    let drop: Vec<String> =
        w.metadata().iter().map(|(k, _)| k.clone()).filter(|k| k.starts_with(&clex_prefix)).collect();
    for k in drop {
        w.remove_kv(&k);
    }
    w.remove_kv(&format!("{arch}.rope.scaling.original_context_length"));
    w.set_kv(format!("{arch}.rope.scaling.type"), Value::String("none".into()))?;
    w.set_kv(format!("{arch}.context_length"), Value::U32(table.orig_ctx().saturating_mul(t)))?;
    for n in ["clex.ode_up_proj", "clex.ode_down_proj", "clex.inv_freq"] {
        w.remove_tensor(n);
    }
    let idx = w.add_tensor("rope_freqs.weight", ggml_sys::GGML_TYPE_F32, &[factors.len() as u64])?;
    let names: Vec<String> = w.tensors().iter().map(|t| t.name.clone()).collect();
    w.write(output, |i, out| {
        if i == idx {
            for x in &factors {
                out.write_all(&x.to_le_bytes())?;
            }
            Ok(())
        } else {
            let src = f.tensor(&names[i]).expect("copied from the input");
            out.write_all(f.tensor_data(src))
        }
    })
    .map_err(|e| Error::Io { path: output.to_path_buf(), source: e })?;
    Ok(factors)
}
