//! Arbitrary text and token ids through every vocabulary kind clex supports, checked
//! against llama.cpp (the same ggml build, through llama-cpp-2) on the same file.
//!
//! Input: byte 0 picks the vocabulary, byte 1 the mode and flags, the rest is the payload.
//! * text mode: the payload as UTF-8 (invalid bytes replaced) → `encode` with the flags'
//!   `add_special` / `parse_special`; the tokens must be in range, at most 3 per input
//!   byte (+ BOS/EOS/space prefix), and equal llama.cpp's; `detokenize` under every flag
//!   pair must equal llama.cpp's; without special handling the text must come back
//!   unchanged where llama.cpp guarantees it (see `round_trips`); streaming the pieces
//!   through `StreamDecoder` must give the lossy UTF-8 of the detokenized bytes.
//! * ids mode: the payload as little-endian u32 ids (some past the vocabulary) →
//!   `detokenize` / `token_to_piece_with` must not panic; in-range ids must detokenize as
//!   llama.cpp does; the text is encoded again.
//!
//! The vocabularies are the llama.cpp `ggml-vocab-*.gguf` files of the fetched test data
//! (`$CLEX_TEST_DATA/vocab`, default `~/.cache/clex-test-data/vocab`; 0.6–16 MB each, so
//! they are read from there, not copied into fuzz/); `CLEX_FUZZ_VOCABS=llama-spm,qwen2`
//! narrows the set. Unsupported kinds (WPM, UGM) are left out.
#![no_main]
use clex::gguf::GgufFile;
use clex::tokenizer::{attr, StreamDecoder, Tokenizer, VocabType};
use libfuzzer_sys::fuzz_target;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use std::path::PathBuf;
use std::sync::OnceLock;

struct Vocab {
    name: String,
    ours: Tokenizer,
    theirs: LlamaModel,
    /// Whether `detokenize(encode(s)) == s` is checked (see `round_trips`).
    round_trips: bool,
}

fn vocab_dir() -> Option<PathBuf> {
    let base = std::env::var_os("CLEX_TEST_DATA")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/clex-test-data")))?;
    let d = base.join("vocab");
    d.is_dir().then_some(d)
}

/// llama.cpp's guarantee (test-tokenizer-1-{bpe,spm}: every token's text and every code
/// point comes back unchanged) extended to whole strings, for the vocabularies where it
/// holds: not with `clean_up_tokenization_spaces` (it rewrites " ," etc.), and only if
/// every byte has a token (byte-level BPE, or SPM / escaped BPE with `<0xXX>` fallback).
fn round_trips(t: &Tokenizer) -> bool {
    let clean = {
        // clean_spaces shows as " ," → "," on a text that tokenizes losslessly otherwise
        let ids = t.encode("a ,b", false, false);
        t.detokenize(&ids, false, false) != b"a ,b"
    };
    let bytes = (0..=255u8).all(|b| t.token_id(&format!("<0x{b:02X}>")).is_some());
    !clean && (bytes || t.vocab_type() == VocabType::Bpe && t.token_id("\u{120}").is_some())
}

fn vocabs() -> &'static [Vocab] {
    static V: OnceLock<Vec<Vocab>> = OnceLock::new();
    V.get_or_init(|| {
        let Some(dir) = vocab_dir() else {
            eprintln!("tokenizer fuzz: SKIP: no vocab files (run ../shared/scripts/fetch-test-data.sh or set CLEX_TEST_DATA)");
            return Vec::new();
        };
        let only: Option<Vec<String>> =
            std::env::var("CLEX_FUZZ_VOCABS").ok().map(|s| s.split(',').map(str::to_owned).collect());
        let backend = {
            static B: OnceLock<LlamaBackend> = OnceLock::new();
            B.get_or_init(|| {
                let mut b = LlamaBackend::init().expect("llama backend");
                b.void_logs();
                b
            })
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("read the vocab dir")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
            .collect();
        files.sort();
        let mut out = Vec::new();
        for p in files {
            let name = p.file_stem().unwrap().to_string_lossy().trim_start_matches("ggml-vocab-").to_owned();
            if only.as_ref().is_some_and(|o| !o.contains(&name)) {
                continue;
            }
            let f = GgufFile::open(&p).expect("vocab GGUF");
            let Ok(ours) = Tokenizer::from_gguf(&f) else { continue }; // WPM, UGM: unsupported
            let params = LlamaModelParams::default().with_vocab_only(true);
            let theirs = LlamaModel::load_from_file(backend, &p, &params).expect("llama.cpp loads the vocab");
            let round_trips = round_trips(&ours);
            eprintln!("tokenizer fuzz: {name}: {:?} {:?}, round trip checked: {round_trips}", ours.vocab_type(), ours.pre());
            out.push(Vocab { name, ours, theirs, round_trips });
        }
        out
    })
}

fn lt(ids: &[u32]) -> Vec<LlamaToken> {
    ids.iter().map(|&i| LlamaToken(i as i32)).collect()
}

/// Our detokenization under every flag pair, against llama.cpp's.
fn same_detokenize(v: &Vocab, ids: &[u32], what: &dyn Fn() -> String) {
    if ids.is_empty() {
        return; // (llama-cpp-2's detokenize cannot take an empty list with remove_special)
    }
    let theirs = v.theirs.vocab();
    for (rm, un) in [(false, false), (true, false), (false, true), (true, true)] {
        let want = theirs.detokenize(&lt(ids), rm, un);
        let got = v.ours.detokenize(ids, rm, un);
        assert!(
            want == got,
            "{}: detokenize({ids:?}, remove_special={rm}, unparse_special={un}) of {}:\n llama.cpp {:?}\n ours      {:?}",
            v.name,
            what(),
            String::from_utf8_lossy(&want),
            String::from_utf8_lossy(&got)
        );
    }
}

fn text_mode(v: &Vocab, text: &str, add: bool, parse: bool) {
    let t = &v.ours;
    let ids = t.encode(text, add, parse);
    let n_vocab = t.n_vocab() as u32;
    assert!(ids.iter().all(|&i| i < n_vocab), "{}: encode({text:?}) gave an id out of range: {ids:?}", v.name);
    assert!(ids.len() <= 3 * text.len() + 4, "{}: encode({text:?}) gave {} tokens", v.name, ids.len());
    let want: Vec<u32> = v.theirs.vocab().tokenize(text.as_bytes(), add, parse).iter().map(|t| t.0 as u32).collect();
    assert!(
        want == ids,
        "{}: encode({text:?}, add_special={add}, parse_special={parse}):\n llama.cpp {want:?}\n ours      {ids:?}",
        v.name
    );
    same_detokenize(v, &ids, &|| format!("{text:?}"));
    let back = t.detokenize(&ids, false, false);
    let escapes = t.vocab_type() == VocabType::Spm || t.token_id("\u{2581}").is_some();
    if v.round_trips && !add && !parse && !(escapes && text.contains('\u{2581}')) && !strips_spaces(t, &ids) {
        assert!(
            back == text.as_bytes(),
            "{}: detokenize(encode({text:?})) = {:?}",
            v.name,
            String::from_utf8_lossy(&back)
        );
    }
    let mut dec = StreamDecoder::new();
    let mut streamed = String::new();
    let mut pieces = Vec::new();
    for &id in &ids {
        let p = t.token_to_piece(id);
        streamed += &dec.push(&p);
        pieces.extend(p);
    }
    streamed += &dec.finish();
    assert_eq!(streamed, String::from_utf8_lossy(&pieces), "{}: streamed pieces of {text:?}", v.name);
}

/// Special tokens that eat the spaces around them (`lstrip` / `rstrip`, e.g. `<mask>`) do
/// not round-trip in llama.cpp either; user-defined ones are matched even without
/// `parse_special`.
fn strips_spaces(t: &Tokenizer, ids: &[u32]) -> bool {
    ids.iter().any(|&id| t.token_attr(id) & (attr::LSTRIP | attr::RSTRIP) != 0)
}

fn ids_mode(v: &Vocab, payload: &[u8], special: bool) {
    let t = &v.ours;
    let n = t.n_vocab() as u32;
    let ids: Vec<u32> = payload
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) % (n + 16))
        .collect();
    for &id in &ids {
        for lstrip in 0..3 {
            std::hint::black_box(t.token_to_piece_with(id, special, lstrip));
        }
        std::hint::black_box((t.token_text(id), t.token_attr(id), t.is_eog(id), t.score(id)));
    }
    for (rm, un) in [(false, false), (true, false), (false, true), (true, true)] {
        std::hint::black_box(t.detokenize(&ids, rm, un));
    }
    let in_range: Vec<u32> = ids.iter().copied().filter(|&i| i < n).collect();
    same_detokenize(v, &in_range, &|| "ids".into());
    let text = t.decode(&ids);
    std::hint::black_box(t.encode(&text, special, special));
}

fuzz_target!(
    // Loading the vocabularies takes seconds each under ASan: done before the fuzzing
    // starts (and outside libFuzzer's per-input timeout).
    init: {
        vocabs();
    },
    |data: &[u8]| {
        let vs = vocabs();
        let [sel, flags, payload @ ..] = data else { return };
        if vs.is_empty() {
            return;
        }
        let v = &vs[*sel as usize % vs.len()];
        let (add, parse) = (flags & 1 != 0, flags & 2 != 0);
        if flags & 4 == 0 {
            text_mode(v, &String::from_utf8_lossy(payload), add, parse);
        } else {
            ids_mode(v, payload, parse);
        }
    }
);
