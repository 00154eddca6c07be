//! The embedding API (docs/LIBRARY.md): shared models, concurrent sessions, streaming
//! generation and its stop reasons, cancellation from another thread, chat turns, state
//! files, and silence without a tracing subscriber.

mod common;

use clex::session::Logits;
use clex::{CancelToken, ChatMessage, Error, Event, GenerateOptions, LoadProgress, Model, ModelOptions, Session, SessionOptions, StopReason};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

fn tiny_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/clex-tiny-random.gguf")
}

fn load(path: &Path) -> Arc<Model> {
    Arc::new(Model::load_with(path, &ModelOptions::default()).expect("model loads"))
}

fn session(model: &Arc<Model>, n_ctx: usize) -> Session {
    Session::new(Arc::clone(model), SessionOptions { n_ctx, n_threads: 1, ..Default::default() }).expect("session")
}

/// Greedy tokens after `prompt`.
fn greedy(s: &mut Session, prompt: &str, n: usize) -> Vec<u32> {
    s.prompt(prompt).unwrap();
    collect(s, GenerateOptions::greedy(n)).0
}

fn collect(s: &mut Session, opts: GenerateOptions) -> (Vec<u32>, String, StopReason) {
    let (mut toks, mut text) = (Vec::new(), String::new());
    for ev in s.generate(opts).unwrap() {
        match ev.unwrap() {
            Event::Token(t) => {
                toks.push(t.token);
                text.push_str(&t.text);
            }
            Event::Finished { reason, text: tail, .. } => {
                text.push_str(&tail);
                return (toks, text, reason);
            }
        }
    }
    panic!("no Finished event");
}

/// The models to run on: the tiny fixture, and the fetched Qwen when present.
fn models() -> Vec<PathBuf> {
    let mut v = vec![tiny_path()];
    v.extend(common::qwen());
    v
}

#[test]
fn api_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Model>();
    send_sync::<CancelToken>();
    send_sync::<LoadProgress>();
    send::<Session>();
    send::<Error>();
}

#[test]
fn generate_matches_the_plain_eval_argmax_loop() {
    for path in models() {
        let model = load(&path);
        let mut s = session(&model, 256);
        let got = greedy(&mut s, "The capital of France is", 12);
        // Oracle: the CLI's loop, by hand (whole prompt, then one token at a time).
        let mut r = session(&model, 256);
        let prompt = model.tokenizer.encode("The capital of France is", true, true);
        let mut logits = r.eval(&prompt, Logits::Last).unwrap();
        let mut want = Vec::new();
        while want.len() < 12 {
            let t = clex::sample::argmax(&logits);
            if model.tokenizer.is_eog(t) {
                break;
            }
            want.push(t);
            logits = r.eval(&[t], Logits::Last).unwrap();
        }
        assert_eq!(got, want, "{}", path.display());
        assert_eq!(s.tokens(), r.tokens(), "every delivered token is in the cache");
    }
}

#[test]
fn two_sessions_on_one_model_run_concurrently_as_sequentially() {
    for path in models() {
        let model = load(&path);
        let prompts = ["Once upon a time", "fn main() {"];
        let seq: Vec<Vec<u32>> = prompts.iter().map(|p| greedy(&mut session(&model, 256), p, 10)).collect();
        assert_ne!(seq[0], seq[1], "different prompts should continue differently");
        let par: Vec<Vec<u32>> = std::thread::scope(|sc| {
            let hs: Vec<_> = prompts
                .iter()
                .map(|p| {
                    let m = Arc::clone(&model);
                    sc.spawn(move || greedy(&mut session(&m, 256), p, 10))
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(par, seq, "{}", path.display());
    }
}

#[test]
fn cancel_from_another_thread_stops_within_one_token() {
    let model = load(&tiny_path());
    // A context far longer than the 5 tokens awaited (CLEX clamped past L·T = 512), so
    // only the cancel can end the generation, however late the canceller runs.
    let rope = clex::RopeSettings { overflow: Some(clex::clex::Overflow::Clamp), ..Default::default() };
    let mut s = Session::new(Arc::clone(&model), SessionOptions { n_ctx: 8192, n_threads: 1, rope, ..Default::default() }).unwrap();
    s.prompt("Once upon a time").unwrap();
    let cancel = CancelToken::new();
    let produced = Arc::new(AtomicUsize::new(0));
    let at_cancel = Arc::new(AtomicUsize::new(usize::MAX));
    let canceller = {
        let (c, p, a) = (cancel.clone(), Arc::clone(&produced), Arc::clone(&at_cancel));
        std::thread::spawn(move || {
            while p.load(Ordering::SeqCst) < 5 {
                std::thread::yield_now();
            }
            c.cancel();
            a.store(p.load(Ordering::SeqCst), Ordering::SeqCst);
        })
    };
    let opts = GenerateOptions { cancel: Some(cancel.clone()), ignore_eos: true, ..GenerateOptions::greedy(10_000) };
    let mut reason = None;
    for ev in s.generate(opts).unwrap() {
        match ev.unwrap() {
            Event::Token(_) => {
                produced.fetch_add(1, Ordering::SeqCst);
            }
            Event::Finished { reason: r, .. } => reason = Some(r),
        }
    }
    canceller.join().unwrap();
    let (total, seen) = (produced.load(Ordering::SeqCst), at_cancel.load(Ordering::SeqCst));
    assert_eq!(reason, Some(StopReason::Cancelled));
    assert!(seen >= 5 && total - seen <= 1, "{total} tokens, {seen} when the cancel was made");
    // A sticky flag: the next generation stops at once, until reset.
    let opts = GenerateOptions { cancel: Some(cancel.clone()), ..GenerateOptions::greedy(3) };
    assert_eq!(collect(&mut s, opts.clone()).2, StopReason::Cancelled);
    cancel.reset();
    assert_eq!(collect(&mut s, opts).0.len(), 3);
}

#[test]
fn stop_reasons_max_tokens_stop_string_and_context_full() {
    let model = load(&tiny_path());
    let mut s = session(&model, 64);
    s.prompt("The quick brown fox").unwrap();
    let n_prompt = s.n_past();
    let base = GenerateOptions { ignore_eos: true, ..GenerateOptions::greedy(20) };
    let (toks, text, reason) = collect(&mut s, base.clone());
    assert_eq!((toks.len(), reason), (20, StopReason::MaxTokens));
    assert_eq!(s.n_past(), n_prompt + 20);
    // Text is the tokens' pieces, streamed in whole characters.
    let pieces: Vec<u8> = toks.iter().flat_map(|&t| model.tokenizer.token_to_piece(t)).collect();
    assert_eq!(text, String::from_utf8_lossy(&pieces));

    // A stop string taken from the middle of the text: generation stops just before it.
    let cut = text.char_indices().map(|(i, _)| i).find(|&i| i >= text.len() / 2).unwrap();
    let stop: String = text[cut..].chars().take(3).collect();
    let want = &text[..text.find(&stop).unwrap()];
    s.truncate(n_prompt);
    let (_, got, reason) = collect(&mut s, GenerateOptions { stop: vec!["\u{1}never".into(), stop.clone()], ..base.clone() });
    assert_eq!((got.as_str(), reason), (want, StopReason::StopString(1)), "stop {stop:?}");

    // Context full: exactly the room that was left.
    s.truncate(n_prompt);
    let (toks, _, reason) = collect(&mut s, GenerateOptions { max_tokens: None, ..base });
    assert_eq!((toks.len(), reason), (64 - n_prompt, StopReason::ContextFull));
    assert_eq!(s.n_past(), 64);
}

#[test]
fn bad_calls_are_errors_not_panics() {
    let model = load(&tiny_path());
    let mut s = session(&model, 32);
    assert!(matches!(s.generate(GenerateOptions::greedy(1)), Err(Error::InvalidArgument(_))));
    let long = "word ".repeat(100);
    assert!(matches!(s.prompt(&long), Err(Error::Context(_))));
    assert_eq!(s.n_past(), 0, "a refused prompt leaves the session as it was");
    s.prompt("hi").unwrap();
    let opts = GenerateOptions { stop: vec![String::new()], ..GenerateOptions::greedy(1) };
    assert!(matches!(s.generate(opts), Err(Error::InvalidArgument(_))));
    // The tiny model has no chat template of its own.
    let e = s.chat(&[ChatMessage::new("user", "hi")]).unwrap_err();
    assert!(matches!(e, Error::Chat(_)) && e.to_string().contains("no chat template"), "{e}");
    assert!(matches!(s.chat_with(&model.chat_format(Some("chatml")).unwrap(), &[]), Err(Error::InvalidArgument(_))));
}

#[test]
fn load_progress_rises_to_one_and_can_abandon_the_load() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = Arc::clone(&seen);
    let opts = ModelOptions { progress: Some(LoadProgress::new(move |f| s2.lock().unwrap().push(f) == ())), ..Default::default() };
    Model::load_with(&tiny_path(), &opts).unwrap();
    let v = seen.lock().unwrap().clone();
    assert_eq!((v.first(), v.last()), (Some(&0.0), Some(&1.0)), "{v:?}");
    assert!(v.windows(2).all(|w| w[0] <= w[1]), "{v:?}");
    let opts = ModelOptions { progress: Some(LoadProgress::new(|f| f < 0.5)), ..Default::default() };
    assert!(matches!(Model::load_with(&tiny_path(), &opts), Err(Error::Cancelled)));
}

#[test]
fn chat_turns_reuse_the_cached_prefix() {
    let model = load(&tiny_path());
    let fmt = model.chat_format(Some("chatml")).unwrap();
    let mut s = session(&model, 512);
    let mut msgs = vec![ChatMessage::new("system", "Be brief."), ChatMessage::new("user", "Hello!")];
    let first = s.chat_with(&fmt, &msgs).unwrap();
    assert_eq!((first.n_reused, first.n_evaluated), (0, s.n_past()));
    let (_, reply, _) = collect(&mut s, GenerateOptions::greedy(8));
    msgs.push(ChatMessage::new("assistant", reply));
    msgs.push(ChatMessage::new("user", "And then?"));
    let second = s.chat_with(&fmt, &msgs).unwrap();
    let want = fmt.tokens(&model.tokenizer, &msgs, true).unwrap();
    assert_eq!(s.tokens(), &want[..], "the cache holds exactly the rendered conversation");
    assert!(second.n_reused >= first.n_evaluated, "{second:?} vs {first:?}");
    assert_eq!(second.n_reused + second.n_evaluated, want.len());
    // The same conversation again: nothing to evaluate.
    assert_eq!(s.chat_with(&fmt, &msgs).unwrap().n_evaluated, 0);
}

#[test]
fn save_restore_then_continue_equals_an_uninterrupted_run() {
    for path in models() {
        let model = load(&path);
        let opts = GenerateOptions { ignore_eos: true, ..GenerateOptions::greedy(24) };
        // The tiny CLEX model (L = 64) crosses a bucket boundary after the restore.
        let prompt = "It was the best of times, it was the worst of times, it was the age of wisdom";
        let mut a = session(&model, 256);
        a.prompt(prompt).unwrap();
        let whole = collect(&mut a, GenerateOptions { max_tokens: Some(48), ..opts.clone() }).0;
        let mut b = session(&model, 256);
        b.prompt(prompt).unwrap();
        let mut got = collect(&mut b, opts.clone()).0;
        let file = common::temp_path(&format!("state-{}.bin", path.file_stem().unwrap().to_string_lossy()));
        b.save(&file).unwrap();
        let mut c = session(&model, 256);
        c.restore(&file).unwrap();
        assert_eq!((c.tokens(), c.bucket()), (b.tokens(), b.bucket()));
        got.extend(collect(&mut c, opts).0);
        assert_eq!(got, whole, "{}", path.display());
        assert_eq!(c.tokens(), a.tokens());
    }
}

#[test]
fn restore_refuses_other_options_models_and_corrupt_files() {
    let model = load(&tiny_path());
    let mut s = session(&model, 128);
    s.prompt("A saved conversation").unwrap();
    let file = common::temp_path("state-refuse.bin");
    s.save(&file).unwrap();
    let state_err = |s: &mut Session, f: &Path| match s.restore(f) {
        Err(Error::State(m)) => m,
        other => panic!("expected a state error, got {other:?}"),
    };
    assert!(state_err(&mut session(&model, 256), &file).contains("context of 128 tokens"));
    let fa = SessionOptions { n_ctx: 128, flash_attn: true, ..Default::default() };
    assert!(state_err(&mut Session::new(Arc::clone(&model), fa).unwrap(), &file).contains("flash attention"));

    // Another model: the same file with one metadata byte changed (general.name).
    let mut bytes = std::fs::read(tiny_path()).unwrap();
    let at = bytes.windows(12).position(|w| w == b"general.name").unwrap() + 12 + 4 + 8;
    bytes[at] ^= 1;
    let other_path = common::temp_path("other-model.gguf");
    std::fs::write(&other_path, &bytes).unwrap();
    let other = load(&other_path);
    assert!(state_err(&mut session(&other, 128), &file).contains("another model"));

    let good = std::fs::read(&file).unwrap();
    let mut t = session(&model, 128);
    t.prompt("something else").unwrap();
    let before = t.tokens().to_vec();
    for (name, data, want) in [
        ("truncated", good[..good.len() - 40].to_vec(), "truncated"),
        ("magic", b"not a state file at all, not at all".to_vec(), "not a clex session state"),
        ("version", [&good[..8], &[9, 0, 0, 0], &good[12..]].concat(), "format version 9"),
    ] {
        let f = common::temp_path(&format!("state-{name}.bin"));
        std::fs::write(&f, data).unwrap();
        assert!(state_err(&mut t, &f).contains(want), "{name}");
    }
    assert_eq!(t.tokens(), &before[..], "refused before anything changed");
    // A flipped bit in the KV cache: caught by the checksum; the session is left empty.
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 100] ^= 0x10;
    let f = common::temp_path("state-flipped.bin");
    std::fs::write(&f, bad).unwrap();
    assert!(state_err(&mut t, &f).contains("checksum"));
    assert_eq!(t.n_past(), 0);
    t.restore(&file).unwrap();
    assert_eq!(t.tokens(), s.tokens());
}

#[test]
fn nothing_is_printed_without_a_subscriber() {
    let root = env!("CARGO_MANIFEST_DIR");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| option_env!("CARGO").unwrap_or("cargo").into());
    let st = std::process::Command::new(cargo)
        .args(["build", "--release", "--quiet", "--example", "generate"])
        .current_dir(root)
        .status()
        .unwrap();
    assert!(st.success(), "building examples/generate.rs");
    let exe = PathBuf::from(root).join("target/release/examples/generate");
    let out = std::process::Command::new(exe)
        .args([tiny_path().to_str().unwrap(), "Once upon a time", "16"])
        .env_remove("CLEX_LOG")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "stderr must stay empty");
    // Standard output is exactly the generated text: the library adds nothing.
    let model = load(&tiny_path());
    let mut s = Session::new(model, SessionOptions { n_ctx: 512, ..Default::default() }).unwrap();
    s.prompt("Once upon a time").unwrap();
    let (text, _) = s.generate(GenerateOptions::greedy(16)).unwrap().text().unwrap();
    assert!(!text.is_empty());
    assert_eq!(String::from_utf8_lossy(&out.stdout), text);
}
