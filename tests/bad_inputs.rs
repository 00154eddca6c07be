//! Malformed GGUF files (tests/bad_inputs/, written by tests/bad_inputs/make.py): each
//! must be refused with the error class and message its MANIFEST.tsv row names, never
//! a panic or a hang, and without the process's peak memory growing by more than 64 MiB. Plus
//! truncation properties: every prefix of the real fixture's first 64 KiB (and of the
//! small models, through `Model::load`) is refused cleanly.
mod common;
use clex::gguf::{GgufError, GgufFile};
use clex::model::Model;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

/// The peak-memory checks read a process-wide figure: run the tests one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const MAX_GROWTH_KIB: u64 = 64 * 1024;
/// A file that takes longer than this to be refused counts as a hang.
const TIMEOUT: Duration = Duration::from_secs(5);

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bad_inputs")
}

/// VmHWM (peak resident set) of this process, in KiB.
fn peak_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The variant name of a `Debug` rendering: `Truncated { .. }` → `Truncated`.
fn variant(debug: &str) -> String {
    debug.chars().take_while(|c| c.is_ascii_alphanumeric()).collect()
}

fn gguf_class(e: &GgufError) -> String {
    variant(&format!("{e:?}"))
}

fn model_class(e: &clex::Error) -> (String, String) {
    match e {
        clex::Error::Gguf(g) => (gguf_class(g), g.to_string()),
        clex::Error::Model(m) => ("Model".into(), m.clone()),
        clex::Error::Clex(m) => ("Clex".into(), m.clone()),
        clex::Error::Tokenizer(m) => ("Tokenizer".into(), m.clone()),
        other => (variant(&format!("{other:?}")), other.to_string()),
    }
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into())
}

/// Touches everything a caller of an accepted file may touch: every value, every
/// tensor's bytes.
fn exercise(f: &GgufFile) {
    for (k, v) in f.metadata() {
        std::hint::black_box(format!("{k} = {v}"));
    }
    for t in f.tensors() {
        let d = f.tensor_data(t);
        assert_eq!(d.len() as u64, t.size, "tensor {:?}", t.name);
    }
}

/// What happens to `path`: (class, message), or Err(description of a panic or an
/// inconsistency).
fn outcome(path: &Path) -> Result<(String, String), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let opened = catch_unwind(|| GgufFile::open(path)).map_err(|p| format!("GgufFile::open panicked: {}", panic_text(p)))?;
    let from_bytes =
        catch_unwind(|| GgufFile::from_bytes(bytes)).map_err(|p| format!("GgufFile::from_bytes panicked: {}", panic_text(p)))?;
    match (&opened, &from_bytes) {
        (Err(a), Err(b)) if a != b => return Err(format!("open says {a}, from_bytes says {b}")),
        (Ok(_), Err(e)) | (Err(e), Ok(_)) => return Err(format!("open and from_bytes disagree: {e}")),
        _ => {}
    }
    let loaded = catch_unwind(|| Model::load(path)).map_err(|p| format!("Model::load panicked: {}", panic_text(p)))?;
    match opened {
        Err(e) => {
            // Model::load must report the reader's error unchanged.
            match &loaded {
                Err(clex::Error::Gguf(g)) if *g == e => {}
                other => return Err(format!("open says {e}, Model::load says {other:?}")),
            }
            Ok((gguf_class(&e), e.to_string()))
        }
        Ok(f) => {
            catch_unwind(AssertUnwindSafe(|| exercise(&f)))
                .map_err(|p| format!("reading an accepted file panicked: {}", panic_text(p)))?;
            let from_bytes = from_bytes.unwrap();
            // (Debug, not ==: a NaN value is not equal to itself.)
            if format!("{:?}", from_bytes.tensors()) != format!("{:?}", f.tensors())
                || format!("{:?}", from_bytes.metadata()) != format!("{:?}", f.metadata())
            {
                return Err("open and from_bytes parse differently".into());
            }
            match loaded {
                Ok(m) => {
                    std::hint::black_box(m.n_params());
                    Ok(("Ok".into(), String::new()))
                }
                Err(e) => Ok(model_class(&e)),
            }
        }
    }
}

/// What happened to one file.
enum Outcome {
    /// An error class and message, or `Ok`.
    Done(String, String),
    /// A panic or an inconsistency between the entry points.
    Broken(String),
    /// No answer within [`TIMEOUT`]. The thread is left running: it ends with the process.
    Hung,
}

fn outcome_in_time(path: PathBuf) -> Outcome {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(outcome(&path));
    });
    match rx.recv_timeout(TIMEOUT) {
        Ok(Ok((class, msg))) => Outcome::Done(class, msg),
        Ok(Err(e)) => Outcome::Broken(e),
        Err(_) => Outcome::Hung,
    }
}

struct Row {
    file: String,
    what: String,
    class: String,
    substring: String,
    xfail: bool,
}

fn manifest() -> Vec<Row> {
    let text = std::fs::read_to_string(dir().join("MANIFEST.tsv")).expect("tests/bad_inputs/MANIFEST.tsv");
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            assert_eq!(c.len(), 5, "manifest row {l:?}");
            assert!(c[4] == "ok" || c[4] == "xfail", "status {:?}", c[4]);
            Row {
                file: c[0].into(),
                what: c[1].into(),
                class: c[2].into(),
                substring: c[3].into(),
                xfail: c[4] == "xfail",
            }
        })
        .collect()
}

#[test]
fn every_bad_input_is_refused_with_its_error() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rows = manifest();
    assert!(rows.len() >= 30, "only {} manifest rows", rows.len());
    // Every file in the folder is in the manifest, and the other way round.
    let mut on_disk: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".gguf"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = rows.iter().map(|r| r.file.clone()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "tests/bad_inputs: files and MANIFEST.tsv differ (rerun make.py)");

    let before = peak_kib();
    let mut failures = Vec::new();
    let mut xfails = Vec::new();
    for r in &rows {
        let got = outcome_in_time(dir().join(&r.file));
        let ok = matches!(&got, Outcome::Done(class, msg) if *class == r.class && msg.contains(&r.substring));
        let got_s = match &got {
            Outcome::Done(class, msg) => format!("{class}: {msg}"),
            Outcome::Broken(e) => format!("FAILURE: {e}"),
            Outcome::Hung => format!("no answer after {} s", TIMEOUT.as_secs()),
        };
        let broken = matches!(got, Outcome::Broken(_));
        match (ok, r.xfail) {
            (true, false) => {}
            (false, true) if !broken => xfails.push(format!("{} ({}): got {got_s}", r.file, r.what)),
            (true, true) => failures.push(format!(
                "{}: marked xfail but now gives the expected {} — set its status to ok in make.py",
                r.file, r.class
            )),
            _ => failures.push(format!(
                "{} ({}):\n    expected {}: …{}…\n    got      {got_s}",
                r.file, r.what, r.class, r.substring
            )),
        }
    }
    let growth = peak_kib().saturating_sub(before);
    for x in &xfails {
        eprintln!("XFAIL (known bug, docs/RELIABILITY.md): {x}");
    }
    eprintln!("{} bad inputs checked, {} known failures, peak memory growth {growth} KiB", rows.len(), xfails.len());
    assert!(failures.is_empty(), "{} of {} bad inputs failed:\n{}", failures.len(), rows.len(), failures.join("\n"));
    assert!(growth < MAX_GROWTH_KIB, "peak memory grew by {growth} KiB over the bad inputs");
}

/// Truncation must give one of these two errors, nothing else.
fn is_truncation(e: &GgufError) -> bool {
    matches!(e, GgufError::Truncated { .. } | GgufError::CountTooLarge { .. })
}

#[test]
fn every_prefix_of_the_fixture_is_refused() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let full = std::fs::read(common::fixtures().join("llama-2-tiny-random.gguf")).unwrap();
    let f = GgufFile::from_bytes(full.clone()).expect("the full fixture parses");
    // The tensor infos (about 700 bytes for 12 tensors), the padding, the first data.
    let tensor_infos = f.data_offset() as usize - 2048..f.data_offset() as usize + 64;
    drop(f);
    // Every length up to 64 KiB (all header: magic, counts, metadata, the vocabulary),
    // every length across the end of the tensor infos and the padding, then a sparse
    // walk through the rest of the vocabulary and the tensor data.
    let mut lengths: Vec<usize> = (0..=64 * 1024).collect();
    lengths.extend(tensor_infos);
    lengths.extend((64 * 1024..full.len()).step_by(4093));
    lengths.extend(full.len() - 64..full.len());
    let before = peak_kib();
    let mut bad = Vec::new();
    for &n in &lengths {
        match catch_unwind(|| GgufFile::from_bytes(full[..n].to_vec())) {
            Err(p) => bad.push(format!("length {n}: panicked: {}", panic_text(p))),
            Ok(Ok(_)) => bad.push(format!("length {n}: accepted")),
            Ok(Err(e)) if !is_truncation(&e) => bad.push(format!("length {n}: {e:?}")),
            Ok(Err(_)) => {}
        }
        if bad.len() > 20 {
            break;
        }
    }
    let growth = peak_kib().saturating_sub(before);
    assert!(bad.is_empty(), "prefixes of the fixture:\n{}", bad.join("\n"));
    assert!(growth < MAX_GROWTH_KIB, "peak memory grew by {growth} KiB over {} prefixes", lengths.len());
}

#[test]
fn every_prefix_of_the_small_models_is_refused_by_model_load() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut bad = Vec::new();
    for name in ["ok_small_llama.gguf", "ok_small_clex.gguf"] {
        let full = std::fs::read(dir().join(name)).unwrap();
        let tmp = common::temp_path(&format!("prefix-{name}"));
        for n in 0..full.len() {
            std::fs::write(&tmp, &full[..n]).unwrap();
            match catch_unwind(|| Model::load(&tmp)) {
                Err(p) => bad.push(format!("{name}[..{n}]: panicked: {}", panic_text(p))),
                Ok(Ok(_)) => bad.push(format!("{name}[..{n}]: accepted")),
                Ok(Err(clex::Error::Gguf(e))) if is_truncation(&e) => {}
                Ok(Err(e)) => bad.push(format!("{name}[..{n}]: {e:?}")),
            }
            if bad.len() > 20 {
                break;
            }
        }
        let _ = std::fs::remove_file(&tmp);
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
