//! `convert` and `export-llamacpp`.

use super::args::{ConvertArgs, ExportArgs};
use clex::convert::{convert, export_llamacpp, ConvertOptions, OutType};
use clex::{Error, Result};
use indicatif::{ProgressBar, ProgressStyle};

pub fn run(a: &ConvertArgs) -> Result<()> {
    let outtype: OutType = a.outtype.parse().map_err(|e: String| Error::Other(e))?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:40}] {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let b2 = bar.clone();
    let opts = ConvertOptions::new(a.hf_dir.clone(), a.out.clone(), outtype).with_threads(a.threads).with_progress(
        move |p: &clex::convert::Progress<'_>| {
            b2.set_length(p.bytes_total);
            b2.set_position(p.bytes_done);
            b2.set_message(p.tensor.to_string());
        },
    );
    let r = convert(&opts)?;
    bar.finish_and_clear();
    eprintln!(
        "clex-run: wrote {} ({} {}, {} tensors, {} params, vocab {} {}, CLEX {}, {:.1} MB) in {:.2} s",
        a.out.display(),
        r.arch,
        r.outtype.name(),
        r.n_tensors,
        r.n_params,
        r.n_vocab,
        r.vocab_model,
        if r.clex { "yes" } else { "no" },
        r.file_bytes as f64 / 1e6,
        r.elapsed.as_secs_f64()
    );
    Ok(())
}

pub fn export(a: &ExportArgs) -> Result<()> {
    let ff = export_llamacpp(&a.input, a.clex_t, &a.out)?;
    eprintln!("clex-run: wrote {} with rope_freqs for t = {} ({} pairs)", a.out.display(), a.clex_t, ff.len());
    Ok(())
}
