//! `clex-run perplexity MODEL.gguf -f TEXT -c 512,1024,… --rope-scaling none,yarn,…`:
//! PPL per (window length, scaling), as a markdown table, JSON, CSV and a plot.

use super::args::PerplexityArgs;
use super::common;
use clex::perplexity::{self, Event, PerplexityConfig, PplResult, Protocol};
use clex::rope::RopeScaling;
use clex::{Error, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub fn run(a: &PerplexityArgs) -> Result<()> {
    if !a.from_json.is_empty() {
        return replot(a);
    }
    let mut lengths = Vec::new();
    for &n in &a.lengths {
        if n < 2 {
            return Err(Error::Other(format!("-c {n}: a window needs at least 2 tokens")));
        }
        if !lengths.contains(&n) {
            lengths.push(n);
        }
    }
    let scalings = parse_scalings(a.model.rope.rope_scaling.as_deref())?;
    if a.chunks == Some(0) {
        return Err(Error::Other("--chunks must be at least 1".into()));
    }
    // The shared flags, less the lists this command reads itself.
    let mut margs = a.model.clone();
    margs.rope.rope_scaling = None;
    let session = common::session_options(&margs)?;
    let n_threads = session.n_threads;
    let n_ubatch = session.n_ubatch;

    let t0 = Instant::now();
    let model = Arc::new(common::load_model(&a.model)?);
    let load_s = t0.elapsed().as_secs_f64();
    // (Built from the file here; `model.tokenizer` once the model carries one.)
    let tok = clex::tokenizer::Tokenizer::from_gguf(model.gguf()).map_err(Error::Tokenizer)?;
    let mut texts = Vec::new();
    for f in &a.files {
        let mut text = std::fs::read_to_string(f).map_err(|e| Error::Io { path: f.clone(), source: e })?;
        // As llama.cpp's -f: one trailing newline is dropped.
        if text.ends_with('\n') {
            text.pop();
        }
        texts.push(tok.encode(&text, true, false));
    }
    // llama-perplexity puts BOS first in every window when the vocabulary adds one.
    let bos = if tok.add_bos() { tok.bos() } else { None };
    let tok_s = t0.elapsed().as_secs_f64() - load_s;

    let protocol = if a.llama_compat { Protocol::LlamaCompat } else { Protocol::Full };
    let cfg = PerplexityConfig { lengths: lengths.clone(), scalings: scalings.clone(), protocol, max_windows: a.chunks, session };
    let model_path = common::model_path(&a.model)?;
    eprintln!(
        "clex-run: {} loaded in {load_s:.1} s · {} text(s), {} tokens (tokenized in {tok_s:.1} s) · BOS {} · protocol {} · {n_threads} threads · micro-batch {n_ubatch}",
        model_path.display(),
        texts.len(),
        texts.iter().map(Vec::len).sum::<usize>(),
        bos.map_or("none".to_string(), |b| b.to_string()),
        protocol.as_str(),
    );
    for &n in &lengths {
        let w = perplexity::plan_windows(&texts, n, a.chunks).len();
        if w == 0 {
            eprintln!("clex-run: warning: -c {n}: no text has {n} tokens; nothing is scored at this length");
        } else if protocol == Protocol::LlamaCompat && texts.iter().all(|t| t.len() < 2 * n) {
            eprintln!("clex-run: note: -c {n}: llama-perplexity would refuse (it wants 2×{n} tokens); scoring {w} window(s) anyway");
        }
    }

    let total = perplexity::total_eval_tokens(&texts, &cfg);
    let pb = ProgressBar::with_draw_target(
        Some(total),
        if a.no_progress { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() },
    );
    pb.set_style(
        ProgressStyle::with_template("{msg:24} [{wide_bar}] {human_pos}/{human_len} tok · {tps} · {elapsed_precise} · ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key("tps", |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.1} tok/s", s.per_sec());
            })
            .progress_chars("=> "),
    );
    let run_t = Instant::now();
    let results = perplexity::evaluate(&model, &texts, bos, &cfg, &mut |ev| match ev {
        Event::Start { n_ctx, rope_scaling, bucket, .. } => {
            pb.set_message(format!("c={n_ctx} {rope_scaling} t={bucket}"));
        }
        Event::Tokens(k) => pb.inc(k as u64),
        Event::Done(r) => {
            let line = match &r.skipped {
                Some(why) => format!("clex-run: c={} {}: skipped: {why}", r.n_ctx, r.rope_scaling),
                None => format!(
                    "clex-run: c={} {} t={}: PPL {:.4} ± {} over {} tokens in {} window(s) · {:.1} s · {:.1} tok/s",
                    r.n_ctx,
                    r.rope_scaling,
                    r.bucket,
                    r.ppl,
                    r.ppl_error.map_or("—".into(), |e| format!("{e:.4}")),
                    r.tokens,
                    r.windows,
                    r.seconds,
                    r.tokens_per_second
                ),
            };
            if pb.is_hidden() {
                eprintln!("{line}");
            } else {
                pb.println(line);
            }
        }
    });
    pb.finish_and_clear();
    let results = results?;
    let secs = run_t.elapsed().as_secs_f64();
    let evaluated: usize = results.iter().map(|r| r.eval_tokens).sum();
    eprintln!(
        "clex-run: {evaluated} tokens evaluated in {secs:.1} s ({:.1} tok/s overall){}",
        evaluated as f64 / secs.max(1e-9),
        peak_rss_mib().map_or(String::new(), |m| format!(" · peak RSS {m:.0} MiB"))
    );

    let files: Vec<serde_json::Value> = a
        .files
        .iter()
        .zip(&texts)
        .map(|(f, t)| serde_json::json!({ "path": f.display().to_string(), "tokens": t.len() }))
        .collect();
    let doc = serde_json::json!({
        "model": model_path.display().to_string(),
        "protocol": protocol,
        "bos": bos,
        "files": files,
        "threads": n_threads,
        "n_ubatch": n_ubatch,
        "results": results,
    });
    let names: Vec<String> = a.files.iter().map(|f| f.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned())).collect();
    let model_name = model_path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let subtitle = format!(
        "{model_name} · {} · {} protocol{}",
        if names.len() > 3 { format!("{} texts", names.len()) } else { names.join(", ") },
        protocol.as_str(),
        a.chunks.map_or(String::new(), |c| format!(" · ≤{c} window(s)/length"))
    );
    write_results(a, &results, &doc, &subtitle)
}

/// `--from-json`: the results of earlier runs, merged, written as a fresh run's would be.
fn replot(a: &PerplexityArgs) -> Result<()> {
    let mut results: Vec<PplResult> = Vec::new();
    let mut first: Option<serde_json::Value> = None;
    for p in &a.from_json {
        let text = std::fs::read_to_string(p).map_err(|e| Error::Io { path: p.clone(), source: e })?;
        let bad = |why: String| Error::Other(format!("{}: not a `perplexity --json` file: {why}", p.display()));
        let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let list = doc.get("results").cloned().ok_or_else(|| bad("no \"results\"".into()))?;
        let list: Vec<PplResult> = serde_json::from_value(list).map_err(|e| bad(e.to_string()))?;
        for r in list {
            match results.iter_mut().find(|o| o.n_ctx == r.n_ctx && o.rope_scaling == r.rope_scaling) {
                Some(o) => *o = r,
                None => results.push(r),
            }
        }
        first.get_or_insert(doc);
    }
    // Lengths ascending; scalings in the order they were first seen.
    let order: Vec<String> = results.iter().fold(Vec::new(), |mut v, r| {
        if !v.contains(&r.rope_scaling) {
            v.push(r.rope_scaling.clone());
        }
        v
    });
    results.sort_by_key(|r| (r.n_ctx, order.iter().position(|s| *s == r.rope_scaling)));
    let mut doc = first.unwrap_or_default();
    doc["results"] = serde_json::to_value(&results).map_err(|e| Error::Other(e.to_string()))?;
    doc["merged_from"] = serde_json::json!(a.from_json.iter().map(|p| p.display().to_string()).collect::<Vec<_>>());
    let name = |v: &serde_json::Value| {
        v.as_str().and_then(|s| Path::new(s).file_name()).map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    };
    let files: Vec<String> = doc["files"].as_array().map_or_else(Vec::new, |fs| fs.iter().map(|f| name(&f["path"])).collect());
    let protocol = doc["protocol"].as_str().unwrap_or("full").to_string();
    let subtitle = format!(
        "{} · {} · {protocol} protocol",
        name(&doc["model"]),
        if files.len() > 3 { format!("{} texts", files.len()) } else { files.join(", ") }
    );
    write_results(a, &results, &doc, &subtitle)
}

/// The table on stdout (unless JSON or CSV goes there), then `--json`, `--csv`, `--plot`.
fn write_results(a: &PerplexityArgs, results: &[PplResult], doc: &serde_json::Value, subtitle: &str) -> Result<()> {
    let to_stdout = |p: &Option<PathBuf>| p.as_deref().is_some_and(|p| p == Path::new("-"));
    if !to_stdout(&a.json) && !to_stdout(&a.csv) {
        print!("{}", perplexity::markdown_table(results));
        let pivot = perplexity::markdown_pivot(results);
        if !pivot.is_empty() {
            println!();
            print!("{pivot}");
        }
    }
    if let Some(p) = &a.json {
        let s = serde_json::to_string_pretty(doc).map_err(|e| Error::Other(e.to_string()))? + "\n";
        write_out(p, &s)?;
    }
    if let Some(p) = &a.csv {
        write_out(p, &perplexity::csv(results))?;
    }
    if let Some(p) = &a.plot {
        let (w, h) = parse_size(&a.plot_size)?;
        plot(results, p, (w, h), subtitle)?;
        eprintln!("clex-run: plot written to {}", p.display());
    }
    Ok(())
}

/// Peak resident set size (VmHWM) in MiB, on Linux.
fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = s.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// `none,yarn,…` → the scalings, in order, without repeats (empty: the model's own).
fn parse_scalings(s: Option<&str>) -> Result<Vec<Option<RopeScaling>>> {
    let mut out = Vec::new();
    for part in s.unwrap_or("").split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let k = Some(part.parse::<RopeScaling>().map_err(Error::Other)?);
        if !out.contains(&k) {
            out.push(k);
        }
    }
    if out.is_empty() {
        out.push(None);
    }
    Ok(out)
}

fn parse_size(s: &str) -> Result<(u32, u32)> {
    let bad = || Error::Other(format!("--plot-size {s:?}: expected WIDTHxHEIGHT, e.g. 1200x750"));
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let (w, h): (u32, u32) = (w.trim().parse().map_err(|_| bad())?, h.trim().parse().map_err(|_| bad())?);
    if !(200..=8000).contains(&w) || !(150..=8000).contains(&h) {
        return Err(bad());
    }
    Ok((w, h))
}

fn write_out(p: &Path, s: &str) -> Result<()> {
    if p == Path::new("-") {
        print!("{s}");
        Ok(())
    } else {
        std::fs::write(p, s).map_err(|e| Error::Io { path: p.to_path_buf(), source: e })
    }
}

/// Window lengths as axis labels: 512, 1k, 1.5k, 16k.
fn fmt_len(x: f64) -> String {
    if x >= 1024.0 {
        let k = x / 1024.0;
        if (k - k.round()).abs() < 1e-9 {
            format!("{}k", k.round())
        } else {
            format!("{k:.1}k")
        }
    } else {
        format!("{}", x.round())
    }
}

/// PPL against window length (log x), one line per scaling with ±1 s.e. bars.
fn plot(results: &[PplResult], path: &Path, size: (u32, u32), subtitle: &str) -> Result<()> {
    use plotters::prelude::*;
    let svg = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("svg"));
    let png = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if !svg && !png {
        return Err(Error::Other(format!("--plot {}: the file must end in .png or .svg", path.display())));
    }
    // Text needs a font; a pure-Rust one is compiled in (no fontconfig).
    static FONT: std::sync::Once = std::sync::Once::new();
    FONT.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, epaint_default_fonts::UBUNTU_LIGHT);
    });
    let err = |e: &dyn std::fmt::Display| Error::Other(format!("plot {}: {e}", path.display()));
    if svg {
        let root = SVGBackend::new(path, size).into_drawing_area();
        draw(root, results, subtitle).map_err(|e| err(&e))
    } else {
        let root = BitMapBackend::new(path, size).into_drawing_area();
        draw(root, results, subtitle).map_err(|e| err(&e))
    }
}

fn draw<DB: plotters::prelude::DrawingBackend>(
    root: plotters::prelude::DrawingArea<DB, plotters::coord::Shift>,
    results: &[PplResult],
    subtitle: &str,
) -> std::result::Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    use plotters::prelude::*;
    const COLORS: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(255, 127, 14),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(23, 190, 207),
    ];
    let ok: Vec<&PplResult> = results.iter().filter(|r| r.ppl.is_finite()).collect();
    if ok.is_empty() {
        return Err("nothing to plot (no length was scored)".into());
    }
    let mut lengths: Vec<f64> = ok.iter().map(|r| r.n_ctx as f64).collect();
    lengths.sort_by(f64::total_cmp);
    lengths.dedup();
    let (xmin, xmax) = (lengths[0] / 1.25, lengths[lengths.len() - 1] * 1.25);
    let lo = ok.iter().map(|r| r.ppl - r.ppl_error.unwrap_or(0.0)).fold(f64::INFINITY, f64::min).max(1e-3);
    let hi = ok.iter().map(|r| r.ppl + r.ppl_error.unwrap_or(0.0)).fold(0.0, f64::max);
    let log_y = hi / lo > 8.0;
    // Tick labels with as many decimals as the spread needs.
    let decimals = if hi - lo >= 100.0 { 0 } else if hi - lo >= 10.0 { 1 } else { 2 };
    let y_fmt = move |y: &f64| if y.abs() >= 1e6 { format!("{y:.2e}") } else { format!("{y:.decimals$}") };
    let mut names: Vec<&str> = Vec::new();
    for r in &ok {
        if !names.contains(&r.rope_scaling.as_str()) {
            names.push(&r.rope_scaling);
        }
    }

    root.fill(&WHITE)?;
    let (w, h) = root.dim_in_pixel();
    let scale = (w.min(h * 16 / 10) as f64 / 1200.0).max(0.5);
    let px = |v: f64| (v * scale).round() as u32;
    let font = |v: f64| ("sans-serif", v * scale).into_font();
    let root = root.margin(px(18.0), px(18.0), px(18.0), px(30.0));
    let (title_area, body) = root.split_vertically(px(70.0));
    title_area.draw(&Text::new(
        "Perplexity vs window length",
        (0, 0),
        font(34.0).color(&BLACK),
    ))?;
    title_area.draw(&Text::new(subtitle.to_string(), (0, px(40.0) as i32), font(20.0).color(&RGBColor(90, 90, 90))))?;

    macro_rules! series {
        ($chart:expr) => {{
            let chart = &mut $chart;
            for (ci, name) in names.iter().enumerate() {
                let color = COLORS[ci % COLORS.len()];
                let mut pts: Vec<&PplResult> = ok.iter().copied().filter(|r| r.rope_scaling == *name).collect();
                pts.sort_by_key(|r| r.n_ctx);
                // Series are nudged apart along x (a few % on the log axis) so that equal
                // values and their error bars stay visible.
                let dodge = 1.0 + 0.018 * (ci as f64 - (names.len() as f64 - 1.0) / 2.0);
                let at = |r: &PplResult| r.n_ctx as f64 * dodge;
                let stroke = color.stroke_width(px(3.0).max(1));
                chart
                    .draw_series(LineSeries::new(pts.iter().map(|r| (at(r), r.ppl)), stroke))?
                    .label(name.to_string())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 28, y)], color.stroke_width(4)));
                chart.draw_series(pts.iter().map(|r| Circle::new((at(r), r.ppl), px(6.0), color.filled())))?;
                chart.draw_series(pts.iter().filter_map(|r| {
                    let e = r.ppl_error?;
                    let x = at(r);
                    Some(PathElement::new(vec![(x, (r.ppl - e).max(lo)), (x, r.ppl + e)], color.stroke_width(px(2.0).max(1))))
                }))?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .margin(px(12.0))
                .label_font(font(22.0))
                .background_style(WHITE.mix(0.9))
                .border_style(RGBColor(160, 160, 160))
                .draw()?;
        }};
    }

    let x_range = (xmin..xmax).log_scale().with_key_points(lengths.clone());
    let mut builder = ChartBuilder::on(&body);
    builder.margin(px(10.0)).x_label_area_size(px(70.0)).y_label_area_size(px(110.0));
    if log_y {
        let mut chart = builder.build_cartesian_2d(x_range, ((lo / 1.15)..(hi * 1.15)).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("window length (tokens, log scale)")
            .y_desc("perplexity (log scale)")
            .x_label_formatter(&|x| fmt_len(*x))
            .y_label_formatter(&y_fmt)
            .axis_desc_style(font(24.0))
            .label_style(font(20.0))
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(205, 205, 205))
            .draw()?;
        series!(chart);
    } else {
        let pad = ((hi - lo) * 0.12).max(hi * 0.01);
        let mut chart = builder.build_cartesian_2d(x_range, (lo - pad).max(0.0)..(hi + pad))?;
        chart
            .configure_mesh()
            .x_desc("window length (tokens, log scale)")
            .y_desc("perplexity")
            .x_label_formatter(&|x| fmt_len(*x))
            .y_label_formatter(&y_fmt)
            .axis_desc_style(font(24.0))
            .label_style(font(20.0))
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(205, 205, 205))
            .draw()?;
        series!(chart);
    }
    root.present()?;
    Ok(())
}
