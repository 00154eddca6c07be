//! `clex::tokenizer` against llama.cpp: the reference tokenizations that ship with
//! llama.cpp's vocab files (`ggml-vocab-*.gguf.inp/.out`, compared as
//! `tests/test-tokenizer-0.cpp` does: add_special = false, parse_special = false),
//! and llama.cpp itself (llama-cpp-2, same ggml build) on every vocab file, the Qwen
//! model and the tiny LLaMA-2 fixture: tokens under all flag combinations, pieces,
//! detokenized text, special ids, EOG set and token attributes.
mod common;

use clex::gguf::GgufFile;
use clex::tokenizer::{StreamDecoder, Tokenizer};
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use std::num::NonZeroU16;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Tests here take turns: the timing test then measures the tokenizer, not its neighbours.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// llama.cpp with only the vocabulary loaded (the backend lives in a `OnceLock`).
fn llama(path: &Path) -> LlamaModel {
    let params = LlamaModelParams::default().with_vocab_only(true);
    LlamaModel::load_from_file(common::oracle::backend(), path, &params).expect("llama.cpp loads the vocab")
}

/// The vocab files, sorted (empty, after a loud skip, if the test data is missing).
fn vocab_files() -> Vec<PathBuf> {
    let Some(dir) = common::test_file("vocab") else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    files.sort();
    files
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// Our tokenizer, or `None` after printing why the vocab kind is skipped.
fn ours(p: &Path) -> Option<Tokenizer> {
    let f = GgufFile::open(p).unwrap();
    match Tokenizer::from_gguf(&f) {
        Ok(t) => Some(t),
        Err(e) if e.contains("unsupported") => {
            println!("SKIPPED {}: {e}", name(p));
            None
        }
        Err(e) => panic!("{}: {e}", name(p)),
    }
}

/// `read_tests` of test-tokenizer-0.cpp.
fn read_cases(p: &Path) -> Option<Vec<(String, Vec<u32>)>> {
    let inp = std::fs::read_to_string(format!("{}.inp", p.display())).ok()?;
    let out = std::fs::read_to_string(format!("{}.out", p.display())).ok()?;
    let sep = "\n__ggml_vocab_test__\n";
    let mut inputs = Vec::new();
    let mut pos = 0;
    while pos < inp.len() {
        match inp[pos..].find(sep) {
            Some(n) => {
                inputs.push(inp[pos..pos + n].to_string());
                pos += n + sep.len();
            }
            None => {
                inputs.push(inp[pos..].to_string());
                break;
            }
        }
    }
    let outputs: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
        .collect();
    assert_eq!(
        inputs.len(),
        outputs.len(),
        "{}: .inp and .out disagree on the number of tests",
        name(p)
    );
    Some(inputs.into_iter().zip(outputs).collect())
}

#[test]
fn reference_vectors_of_every_vocab() {
    let _turn = serial();
    let mut table = Vec::new();
    let mut failures = Vec::new();
    for p in vocab_files() {
        let Some(cases) = read_cases(&p) else { continue };
        let Some(t) = ours(&p) else {
            table.push(format!("{:<34} skipped (unsupported kind)", name(&p)));
            continue;
        };
        let mut pass = 0;
        for (text, want) in &cases {
            let got = t.encode(text, false, false);
            if &got == want {
                pass += 1;
            } else {
                failures.push(format!("{}: {text:?}\n   want {want:?}\n   got  {got:?}", name(&p)));
            }
        }
        table.push(format!(
            "{:<34} {pass:>3}/{:<3} {:?}",
            name(&p),
            cases.len(),
            t.model_names()
        ));
    }
    println!("reference vectors:\n  {}", table.join("\n  "));
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Inputs for the comparisons with llama.cpp: every reference input, hand-picked
/// edge cases, the vocabulary's own special tokens in context, and pseudo-random mixes.
fn inputs(t: &Tokenizer) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for p in vocab_files() {
        if let Some(cases) = read_cases(&p) {
            v.extend(cases.into_iter().map(|c| c.0));
        }
    }
    for s in [
        "<s>Hello</s> world",
        "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\n",
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
        "<|user|>\n Hi <|end|>\n<|assistant|>  ok",
        " <mask> x <unk> y",
        "\u{a0}\u{3000}x\u{2028}y\u{85}z \u{200b}w",
        "ſ'S 'LL 'Ve 're I'D",
        "1234567890123 ١٢٣٤ ⅷ ½",
        "👩‍👩‍👧 🇫🇷 e\u{301}\u{302} ก่ำ नमस्ते",
        "\r\n\r\n  \t\n x  \n\n\n   ",
        "fn main() {\n    println!(\"{}\", a[0] <= b);\n}\n",
        "\u{fffd}\u{e000}\u{10ffff}\u{1}\u{7f}",
        "Hello\u{2581}world ▁▁ Ġ Ċ",
    ] {
        v.push(s.to_string());
    }
    let specials: Vec<u32> = (0..t.n_vocab() as u32)
        .filter(|&id| t.token_attr(id) & (clex::tokenizer::attr::CONTROL | clex::tokenizer::attr::USER_DEFINED) != 0)
        .take(40)
        .collect();
    for id in specials {
        let s = t.token_text(id);
        v.push(format!("a{s}b {s} c\n{s}\n {s}  {s}{s}d"));
    }
    let pool: Vec<char> =
        "aAzZ09 _-.,;:!?'\"()[]{}<>|/\\\n\t\r éÅßøĳ€£∑√你好世界こんにちは한국어Привет🙂👍🏽\u{301}\u{a0}\u{3000}٣"
            .chars()
            .collect();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..60 {
        let mut s = String::new();
        for _ in 0..120 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let c = pool[(x % pool.len() as u64) as usize];
            // favour runs of letters so words form
            let rep = if c.is_alphabetic() { 1 + (x >> 40) % 4 } else { 1 };
            for _ in 0..rep {
                s.push(c);
            }
        }
        v.push(s);
    }
    v.sort();
    v.dedup();
    v
}

fn toks(v: Vec<LlamaToken>) -> Vec<u32> {
    v.into_iter().map(|t| t.0 as u32).collect()
}

fn opt(t: LlamaToken) -> Option<u32> {
    (t.0 >= 0).then_some(t.0 as u32)
}

/// Everything the tokenizer exposes, against llama.cpp on the same file. Returns
/// the number of comparisons made; panics listing the first mismatches.
fn compare_with_llama(p: &Path, t: &Tokenizer, extra: &[&str]) -> usize {
    let lm = llama(p);
    let lv = lm.vocab();
    let mut bad = Vec::new();
    let mut n = 0;
    let mut check = |ok: bool, what: String| {
        n += 1;
        if !ok && bad.len() < 25 {
            bad.push(what);
        }
    };
    check(
        lv.n_tokens() as usize == t.n_vocab(),
        format!("n_vocab {} vs {}", lv.n_tokens(), t.n_vocab()),
    );
    for (what, want, got) in [
        ("bos", opt(lv.bos()), t.bos()),
        ("eos", opt(lv.eos()), t.eos()),
        ("eot", opt(lv.eot()), t.eot()),
        ("pad", opt(lv.pad()), t.pad()),
        ("sep", opt(lv.sep()), t.sep()),
        ("nl", opt(lv.nl()), t.nl()),
        ("fim_pre", opt(lv.fim_pre()), t.fim()[0]),
        ("fim_suf", opt(lv.fim_suf()), t.fim()[1]),
        ("fim_mid", opt(lv.fim_mid()), t.fim()[2]),
        ("fim_pad", opt(lv.fim_pad()), t.fim()[3]),
        ("fim_rep", opt(lv.fim_rep()), t.fim()[4]),
        ("fim_sep", opt(lv.fim_sep()), t.fim()[5]),
    ] {
        check(want == got, format!("{what}: llama.cpp {want:?}, ours {got:?}"));
    }
    check(lv.should_add_bos() == t.add_bos(), "add_bos".into());
    check(lv.should_add_eos() == t.add_eos(), "add_eos".into());
    let lstrip = NonZeroU16::new(1);
    for id in 0..t.n_vocab() as u32 {
        let tok = LlamaToken(id as i32);
        let (want, got) = (lv.attr(tok).bits() as u16, t.token_attr(id));
        check(
            want == got,
            format!(
                "attr of {id} {:?}: llama.cpp {want:#x}, ours {got:#x}",
                t.token_text(id)
            ),
        );
        check(
            lv.is_eog(tok) == t.is_eog(id),
            format!("is_eog({id}) {:?}", t.token_text(id)),
        );
        for special in [false, true] {
            let want = lv.token_to_piece(tok, special, None);
            let got = t.token_to_piece_with(id, special, 0);
            check(
                want == got,
                format!("piece({id}, special={special}): {want:?} vs {got:?}"),
            );
        }
        if id % 7 == 0 {
            check(
                lv.token_to_piece(tok, false, lstrip) == t.token_to_piece_with(id, false, 1),
                format!("lstrip piece {id}"),
            );
        }
    }
    let mut texts = inputs(t);
    texts.extend(extra.iter().map(|s| s.to_string()));
    for s in &texts {
        for (add, parse) in [(false, false), (true, false), (false, true), (true, true)] {
            let want = toks(lv.tokenize(s.as_bytes(), add, parse));
            let got = t.encode(s, add, parse);
            if want != got {
                check(
                    false,
                    format!("encode({s:?}, add={add}, parse={parse})\n     llama.cpp {want:?}\n     ours      {got:?}"),
                );
                continue;
            }
            check(true, String::new());
            // (llama-cpp-2's detokenize cannot take an empty list with remove_special)
            if add && parse && !got.is_empty() {
                let ltoks: Vec<LlamaToken> = want.iter().map(|&i| LlamaToken(i as i32)).collect();
                for (rm, un) in [(false, false), (true, false), (false, true), (true, true)] {
                    let w = lv.detokenize(&ltoks, rm, un);
                    let g = t.detokenize(&got, rm, un);
                    check(
                        w == g,
                        format!(
                            "detokenize({s:?}, remove={rm}, unparse={un}): {:?} vs {:?}",
                            String::from_utf8_lossy(&w),
                            String::from_utf8_lossy(&g)
                        ),
                    );
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{}: {} mismatches with llama.cpp (first {}):\n{}",
        name(p),
        bad.len(),
        bad.len(),
        bad.join("\n")
    );
    n
}

#[test]
fn every_vocab_matches_llama_cpp() {
    let _turn = serial();
    let mut table = Vec::new();
    for p in vocab_files() {
        let Some(t) = ours(&p) else {
            table.push(format!("{:<34} skipped (unsupported kind)", name(&p)));
            continue;
        };
        let n = compare_with_llama(&p, &t, &[]);
        table.push(format!("{:<34} {n:>7} checks ok", name(&p)));
    }
    println!("against llama.cpp:\n  {}", table.join("\n  "));
}

const CHAT: &[&str] = &[
    "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud.<|im_end|>\n<|im_start|>user\nWrite quicksort in Rust.<|im_end|>\n<|im_start|>assistant\n",
    "<|fim_prefix|>def add(a, b):\n    <|fim_suffix|>\n<|fim_middle|>",
    "Once upon a time",
    "The capital of France is",
    "fn main() {\n    let x =",
    "   leading and trailing   ",
];

#[test]
fn qwen_model_matches_llama_cpp() {
    let _turn = serial();
    let Some(p) = common::qwen() else { return };
    let t = Tokenizer::from_gguf(&GgufFile::open(&p).unwrap()).unwrap();
    assert_eq!(t.eot(), t.token_id("<|im_end|>"));
    assert!(t.is_eog(t.token_id("<|im_end|>").unwrap()) && t.is_eog(t.token_id("<|endoftext|>").unwrap()));
    let n = compare_with_llama(&p, &t, CHAT);
    println!("qwen model: {n} checks ok");
}

#[test]
fn tiny_llama_fixture_matches_llama_cpp() {
    let _turn = serial();
    let p = common::fixtures().join("llama-2-tiny-random.gguf");
    if !p.exists() {
        eprintln!("SKIPPED: {} not found", p.display());
        return;
    }
    let t = Tokenizer::from_gguf(&GgufFile::open(&p).unwrap()).unwrap();
    assert_eq!((t.bos(), t.eos(), t.add_bos()), (Some(1), Some(2), true));
    assert_eq!(t.encode("Hello world", true, false)[0], 1);
    let n = compare_with_llama(&p, &t, CHAT);
    println!("llama-2-tiny-random: {n} checks ok");
}

#[test]
fn streaming_pieces_rebuild_the_text() {
    let _turn = serial();
    let Some(p) = common::qwen() else { return };
    let t = Tokenizer::from_gguf(&GgufFile::open(&p).unwrap()).unwrap();
    let text = "Grüße, 世界! 👩‍👩‍👧 naïve café — done.\n";
    let ids = t.encode(text, false, false);
    let mut d = StreamDecoder::new();
    let mut out = String::new();
    for &id in &ids {
        let s = d.push(&t.token_to_piece(id));
        assert!(!s.contains('\u{fffd}'));
        out += &s;
    }
    out += &d.finish();
    assert_eq!(out, text);
    assert_eq!(t.decode(&ids), text);
}

#[test]
fn load_and_encode_are_fast() {
    let _turn = serial();
    let Some(p) = common::qwen() else { return };
    let f = GgufFile::open(&p).unwrap();
    // best of a few runs: tests (and other work) share the machine
    let best = |n: usize, mut f: Box<dyn FnMut() + '_>| {
        (0..n)
            .map(|_| {
                let t0 = Instant::now();
                f();
                t0.elapsed()
            })
            .min()
            .unwrap()
    };
    let load = best(5, Box::new(|| drop(Tokenizer::from_gguf(&f).unwrap())));
    let t = Tokenizer::from_gguf(&f).unwrap();
    // ~1 MB of varied text: pseudo-random words (few repeats), code, numbers, non-ASCII
    let syll = ["ka", "lo", "mi", "th", "str", "ee", "on", "qu", "ß", "é", "世", "界", "ing", "x", "zz", "pr", "ay"];
    let seps = [" ", " ", " ", ", ", ". ", "\n", "(", ") ", " = ", " 42 ", "\t", " — ", "'s ", "::"];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut text = String::with_capacity(1 << 20);
    while text.len() < 1 << 20 {
        for _ in 0..1 + next() % 4 {
            text.push_str(syll[(next() % syll.len() as u64) as usize]);
        }
        text.push_str(seps[(next() % seps.len() as u64) as usize]);
    }
    let mut ids = Vec::new();
    let enc = best(3, Box::new(|| ids = t.encode(&text, true, true)));
    println!(
        "qwen vocab ({} tokens) loaded in {load:?}; {} bytes encoded in {enc:?} ({} tokens)",
        t.n_vocab(),
        text.len(),
        ids.len()
    );
    // targets: 100 ms and well under a second; the bounds leave room for a busy machine
    assert!(load.as_millis() < 300, "load took {load:?}");
    assert!(enc.as_millis() < 1500, "encoding 1 MB took {enc:?}");
}
