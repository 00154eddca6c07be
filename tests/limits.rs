//! The loud limits: what clex refuses up front, and how `clex-run` says it (exit codes of
//! docs/RELIABILITY.md: 0 ok, 1 failure, 2 usage, 3 bad input, 4 context limit,
//! 130 interrupted).
//!
//! * a KV cache that does not fit in memory (`kv::check_fits`, before any allocation);
//! * a prompt longer than `-c`, `-c` beyond a CLEX model's L·T;
//! * Ctrl-C during one-shot generation: exit 130, the text so far flushed;
//! * chat templates: fuel, output and size-argument limits (src/chat/limits.rs);
//! * config.json / safetensors problems through the converter's in-memory entry points.
mod common;

use clex::chat::{limits, ChatMessage, ChatTemplate};
use clex::convert::hf::{check_checkpoint, Checkpoint, HfConfig};
use clex::gguf::GgufFile;
use clex::kv::{check_fits, KV_ABSOLUTE_LIMIT};
use clex::model::HParams;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_clex-run");

/// The shipped CLEX model (L = 64, T = 8: hard limit 512 tokens).
fn clex_tiny() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/clex-tiny-random.gguf")
}

/// The llama.cpp-converted LLaMA-2 fixture (plain RoPE).
fn llama_tiny() -> PathBuf {
    common::fixtures().join("llama-2-tiny-random.gguf")
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env("CLEX_LOG", "warn").output().expect("run clex-run")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn hparams(p: &Path) -> HParams {
    HParams::from_gguf(&GgufFile::open(p).expect("open")).expect("hparams")
}

/// K + V bytes per cell and layer, f16 cache.
fn f16_cell_bytes(hp: &HParams) -> u64 {
    2 * 2 * hp.n_embd_kv() as u64
}

fn mem_available() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = s.lines().find(|l| l.starts_with("MemAvailable:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

// ---------------------------------------------------------------- KV cache guard

#[test]
fn kv_guard_compares_exact_bytes() {
    let hp = hparams(&llama_tiny());
    let f16 = ggml_sys::GGML_TYPE_F16;
    let q8 = clex::kv::parse_cache_type("q8_0").unwrap();
    let n_ctx = 4096;
    let need = f16_cell_bytes(&hp) * n_ctx as u64 * hp.n_layer as u64;
    assert!(check_fits(&hp, n_ctx, f16, f16, hp.n_layer, Some(need)).is_ok(), "exactly enough must pass");
    let e = check_fits(&hp, n_ctx, f16, f16, hp.n_layer, Some(need - 1)).unwrap_err();
    assert!(matches!(e, clex::Error::Context(_)), "{e:?}");
    let msg = e.to_string();
    for want in ["KV cache", "-c 4096", "needs", "available", "smaller -c", "-ctk q8_0"] {
        assert!(msg.contains(want), "{msg:?} lacks {want:?}");
    }
    // q8_0: 34 bytes a block of 32
    let q8_need = 2 * hp.n_embd_kv().div_ceil(32) as u64 * 34 * n_ctx as u64 * hp.n_layer as u64;
    assert!(check_fits(&hp, n_ctx, q8, q8, hp.n_layer, Some(q8_need)).is_ok());
    assert!(check_fits(&hp, n_ctx, q8, q8, hp.n_layer, Some(q8_need - 1)).is_err());
    // layers on a device do not count against host memory
    assert!(check_fits(&hp, n_ctx, f16, f16, 0, Some(0)).is_ok());
    // unknown free memory: the absolute bound, and never above it
    let huge = (KV_ABSOLUTE_LIMIT / (f16_cell_bytes(&hp) * hp.n_layer as u64)) as usize + 1;
    let e = check_fits(&hp, huge, f16, f16, hp.n_layer, None).unwrap_err().to_string();
    assert!(e.contains("free memory unknown"), "{e}");
    assert!(check_fits(&hp, huge, f16, f16, hp.n_layer, Some(u64::MAX)).is_err());
    // no overflow for any context size
    assert!(check_fits(&hp, usize::MAX, f16, f16, hp.n_layer, Some(u64::MAX)).is_err());
}

#[test]
fn kv_cache_beyond_memory_is_refused_with_the_figures() {
    let hp = hparams(&llama_tiny());
    let per_token = f16_cell_bytes(&hp) * hp.n_layer as u64;
    // twice what is free now (or beyond the absolute bound without /proc)
    let c = match mem_available() {
        Some(avail) => 2 * avail / per_token,
        None => 2 * KV_ABSOLUTE_LIMIT / per_token,
    };
    let t0 = Instant::now();
    let path = llama_tiny();
    let o = run(&[path.to_str().unwrap(), "-c", &c.to_string(), "-n", "1", "-p", "hi"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(err.contains(&format!("the KV cache for -c {c} needs")), "{err}");
    assert!(err.contains("GiB") && err.contains("available") && err.contains("smaller -c"), "{err}");
    // refused before allocating: fast, and no output
    assert!(t0.elapsed() < Duration::from_secs(20), "took {:?}", t0.elapsed());
    assert!(o.stdout.is_empty());
    // an absurd -c (beyond 1 TiB): the same, whatever the machine
    let o = run(&[path.to_str().unwrap(), "-c", "1000000000000", "-n", "1", "-p", "hi"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("the KV cache for -c 1000000000000 needs"), "{}", stderr(&o));
}

#[test]
fn kv_guard_on_the_qwen_model() {
    let Some(q) = common::qwen() else { return };
    let hp = hparams(&q);
    // f32 K and V, 2^21 cells: 2 · 4 · n_embd_kv · n_layer bytes a cell (48 GiB for
    // Qwen2.5-0.5B); refused if that is more than the free memory.
    let need = 2 * 4 * hp.n_embd_kv() as u64 * hp.n_layer as u64 * (1 << 21);
    if mem_available().is_some_and(|a| a >= need) {
        eprintln!("SKIPPED: this machine has {need} bytes free");
        return;
    }
    let o = run(&[q.to_str().unwrap(), "-c", "2097152", "-ctk", "f32", "-ctv", "f32", "-n", "1", "-p", "hi"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(err.contains(&format!("{} layers × 2097152 cells × {} bytes, K f32 + V f32", hp.n_layer, 8 * hp.n_embd_kv())), "{err}");
}

// ---------------------------------------------------------------- context limits

#[test]
fn prompt_longer_than_the_context_exits_4() {
    let model = clex_tiny();
    let prompt = "the quick brown fox jumps over the lazy dog ".repeat(8);
    let o = run(&[model.to_str().unwrap(), "-c", "16", "-n", "4", "-p", &prompt]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(err.contains("but the context holds 16") && err.contains("raise -c"), "{err}");
}

#[test]
fn context_beyond_clex_limit_exits_4() {
    let model = clex_tiny();
    let o = run(&[model.to_str().unwrap(), "-c", "1024", "-n", "4", "-p", "Hello"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(err.contains("-c 1024 exceeds") && err.contains("L·T = 64·8 = 512"), "{err}");
    assert!(err.contains("--clex-overflow clamp"), "{err}");
    // L·T itself is allowed
    let o = run(&[model.to_str().unwrap(), "-c", "512", "-n", "2", "-p", "Hello", "-s", "1"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn usage_and_bad_input_exit_codes() {
    let o = run(&["--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let bad = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bad_inputs/bad_magic_ggml.gguf");
    let o = run(&[bad.to_str().unwrap(), "-p", "hi"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let o = run(&["/nonexistent/model.gguf", "-p", "hi"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
}

// ---------------------------------------------------------------- Ctrl-C

#[test]
fn ctrl_c_exits_130_with_the_output_flushed() {
    let model = clex_tiny();
    // Far more tokens than can be made before the signal; clamp keeps CLEX going past L·T.
    let mut child = Command::new(BIN)
        .args([model.to_str().unwrap(), "-c", "100000", "--clex-overflow", "clamp", "-n", "100000"])
        .args(["--ignore-eos", "-s", "7", "-t", "1", "-p", "Once upon a time"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn clex-run");
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    // Wait for generated text beyond the prompt (the handler is installed by then).
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < "Once upon a time".len() + 200 {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(b) => out.extend(b),
            Err(_) => {
                let _ = child.kill();
                panic!("no generated output within 60 s: {:?}", String::from_utf8_lossy(&out));
            }
        }
    }
    let sent = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill -INT");
    assert!(sent.success());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline + Duration::from_secs(30) {
            let _ = child.kill();
            panic!("clex-run did not stop after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    reader.join().unwrap();
    out.extend(rx.try_iter().flatten());
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}; stderr: {err}");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("Once upon a time"), "{text:?}");
    assert!(text.ends_with('\n'), "the partial output ends with its newline: {:?}", &text[text.len().saturating_sub(40)..]);
    assert!(err.contains("stop: interrupted"), "{err}");
    // the reported count matches what was printed: more than the 200 bytes waited for
    let n: usize = err.split("generated ").nth(1).and_then(|s| s.split(' ').next()).and_then(|s| s.parse().ok()).unwrap();
    assert!(n > 0 && text.len() > 200, "{n} tokens, {} bytes", text.len());
}

// ---------------------------------------------------------------- chat templates

fn render(src: &str, messages: &[ChatMessage]) -> Result<String, String> {
    ChatTemplate::new(src, "<s>", "</s>").expect("compiles").render(messages, true)
}

/// Each template fails to render with a `chat template error` naming `want`, within `max`.
fn assert_render_refused(cases: &[(&str, &str)], m: &[ChatMessage], max: Duration) {
    for (src, want) in cases {
        let t0 = Instant::now();
        let e = render(src, m).expect_err(src);
        assert!(e.starts_with("chat template error") && e.contains(want), "{src}: {e}");
        eprintln!("{:>7.3} s  {}", t0.elapsed().as_secs_f64(), &src[..src.len().min(90)]);
        assert!(t0.elapsed() < max, "{src}: {:?}", t0.elapsed());
    }
}

#[test]
fn chat_template_limits_fail_with_a_named_error() {
    let m = [ChatMessage::new("user", "hi\nthere")];
    let cases: &[(&str, &str)] = &[
        ("{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}", "work limit"),
        (
            "{% for i in range(99999) %}{% for j in range(99999) %}{% set x = i - j - i - j - i - j - i - j - i - j %}{% endfor %}{% endfor %}",
            "fuel limit",
        ),
        ("{% set n = 60000000 %}{% for i in range(100) %}{{ 'x' * n }}{% endfor %}", "output limit"),
        ("{% set n = 99999999 %}{{ 'x' * n }}", "* would build a string of more than 67108864 bytes"),
        ("{{ messages[0].content|indent(1000000000000000) }}", "indent: width 1000000000000000 is over the chat-template limit"),
        ("{{ messages[0].content|indent(width=1000000000000000) }}", "indent: width"),
        ("{{ messages|slice(1000000000000) }}", "slice: count"),
        ("{{ messages|batch(1000000000000) }}", "batch: count"),
        ("{{ '%0999999999999d'|format(1) }}", "format: a width or precision"),
        ("{{ '{:>999999999999}'.format(1) }}", "str.format: a width or precision"),
        ("{{ messages|tojson(indent=1000000000000) }}", "tojson: indent"),
        ("{% set n = 200000 %}{{ messages|tojson(indent='x' * n) }}", "tojson: an indent string"),
        ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "recursion"),
        // (`n`, not a literal: a literal string that big is refused when the template is compiled)
        ("{% set n = 30000000 %}{{ 'ab'|replace('', 'x' * n) }}", "replace would build a string of 90000002 bytes"),
        ("{% set n = 30000000 %}{{ ('x' * n).replace('', 'yy') }}", "str.replace would build a string"),
        ("{% set n = 9999999 %}{{ ([('x' * n)] * 100)|join(',') }}", "join would build a string"),
        ("{% set n = 9999999 %}{{ ','.join([('x' * n)] * 100) }}", "str.join would build a string"),
        // minijinja 2.24 panicked on these (byte slicing inside a multi-byte key; fuzzing)
        ("{{ '{0[\u{e9}]}'.format({'a': 1}) }}", "str.format: a non-ASCII key"),
        ("{{ '{0[Z\u{FFFD}Z'.format(1) }}", "str.format: a non-ASCII key"),
        ("{{ '%(\u{e9})s'|format({'a': 1}) }}", "format: a non-ASCII key"),
        ("{{ '{{{ZZ[ZZAZ][titl|b\u{FFFD}tch('.format(1) }}", "str.format: a non-ASCII key"),
    ];
    assert_render_refused(cases, &m, Duration::from_secs(30));
    // ordinary sizes still work
    assert_eq!(render("{{ 'a\nb'|indent(2) }}", &m).unwrap(), "a\n  b");
    assert_eq!(render("{{ '%5d'|format(42) }}|{{ '{:>4}'.format('x') }}", &m).unwrap(), "   42|   x");
    assert_eq!(render("{{ [1,2,3]|batch(2)|list }}", &m).unwrap(), "[[1, 2], [3]]");
    assert_eq!(render("{{ 'a-b'|replace('-', '+') }} {{ 'ab'.replace('', '.') }}", &m).unwrap(), "a+b .a.b.");
    assert_eq!(render("{{ [1, 'x']|join(', ') }} {{ '-'.join(['a', 'b']) }}", &m).unwrap(), "1, x a-b");
    assert_eq!(render("{{ '{0[a]}|{1:\u{e9}^5}|{{[\u{e9}]}}'.format({'a': 1}, 2) }}", &m).unwrap(), "1|\u{e9}\u{e9}2\u{e9}\u{e9}|{[\u{e9}]}");
}

/// What minijinja does while compiling, before any fuel is spent (src/chat/precheck.rs):
/// it folds constant expressions (again at every level of an expression that does not
/// fold), and its compiler recurses through left-deep chains of operators.
#[test]
fn chat_templates_that_cost_too_much_to_compile_are_refused() {
    let deep = |op: &str, n: usize| format!("{{{{ x{} }}}}", op.repeat(n));
    let cases: Vec<(String, &str)> = vec![
        // found by the chat_template fuzzer: 100 MB built once per operator (2.8 s here;
        // 25 s with 160 more `- 1`)
        (
            "\u{1}{{00-'x' * 99999999-6---9223372036854775-00-'x' * 99999999-6---9808--------9999-----Q-----0}}d".into(),
            "builds a value of up to 99999999 bytes while the template is compiled",
        ),
        (format!("{{{{ 0 - 'x' * 99999999{} }}}}", " - 1".repeat(160)), "up to 99999999 bytes"),
        // each part is small, the whole is not (concatenated: 30 × 100 MB exhausted memory)
        (format!("{{{{ {} }}}}", ["'x' * 60000"; 2].join(" ~ ")), "up to 120000 bytes"),
        ("{{ ('ab' * 30000) * 30000 }}".into(), "up to 1800000000 bytes"),
        ("{{ ([1, 2] * 99999999) ~ 'x' }}".into(), "up to"),
        // 30,000 operators overflowed an 8 MiB stack (abort), every left-deep shape
        (deep("-1", 30000), "holds more than 1000 tokens"),
        (deep("|string", 30000), "holds more than 1000 tokens"),
        (deep(".a", 30000), "holds more than 1000 tokens"),
        (deep("[0]", 30000), "holds more than 1000 tokens"),
        (deep("()", 30000), "holds more than 1000 tokens"),
        (format!("{{{{ {}x }}}}", "not ".repeat(30000)), "holds more than 1000 tokens"),
    ];
    for (src, want) in &cases {
        let t0 = Instant::now();
        let e = ChatTemplate::new(src, "<s>", "</s>").err().unwrap_or_else(|| panic!("{}: compiled", &src[..60]));
        assert!(e.starts_with("chat template error") && e.contains(want), "{}: {e}", &src[..60]);
        assert!(t0.elapsed() < Duration::from_secs(1), "{}: {:?}", &src[..60], t0.elapsed());
    }
    // what real templates do still works, up to the limits (on a test thread's 2 MiB stack)
    let m = [ChatMessage::new("user", "hi")];
    assert_eq!(render("{{ '-' * 8 }}|{{ ('ab' ~ 'c') * 2 }}|{{ 2 ** 10 }}", &m).unwrap(), "--------|abcabc|1024");
    assert_eq!(render(&format!("{{{{ 1{} }}}}", "-1".repeat(490)), &m).unwrap(), "-489");
    assert_eq!(render(&format!("{{{{ 'x'{} }}}}", "|upper".repeat(490)), &m).unwrap(), "X");
    let n = (limits_fold_max() / 2) as usize;
    assert_eq!(render(&format!("{{{{ ('x' * {n} ~ 'y' * {n})|length }}}}"), &m).unwrap(), (2 * n).to_string());
}

/// What rendering costs, beyond the fuel: one instruction can build or read a value of
/// tens of MB (src/chat/meter.rs, src/chat/limits.rs). Each case took from 12 s to hours
/// before the meter; each must now fail with the limit's name in well under 10 s (the
/// bound is about a second of work on this machine; 10 s leaves room for a loaded CI).
#[test]
fn chat_template_render_cost_is_metered() {
    let m: Vec<ChatMessage> = (0..4).map(|i| ChatMessage::new("user", format!("m{i}"))).collect();
    let cases: &[(&str, &str)] = &[
        // found by the chat_template fuzzer (71 s, 2 GB): a list repeated 4 M times, formatted
        ("{{00------954775---72036854776.~messages[2:]*4188651-061-0------0}}", "* would build a list of more than 100000 items"),
        ("{% set n = 4188651 %}{{ 'x' ~ messages * n }}", "* would build a list"),
        ("{% set n = 99999 %}{{ messages + messages * n }}", "* would build a list"),
        // 100 MB per iteration, 200 iterations (33 s before)
        ("{% set n = 60000000 %}{% for i in range(200) %}{{ ('x' * n)|length }}{% endfor %}", "work limit"),
        // one 60 MB string, read 100,000 times (hours before)
        ("{% set n = 60000000 %}{% set s = 'x' * n %}{% for i in range(100000) %}{{ s|length }}{% endfor %}", "work limit"),
        ("{% set n = 60000000 %}{% set s = 'x' * n %}{% for i in range(100000) %}{% if s == s %}{% endif %}{% endfor %}", "work limit"),
        ("{% set n = 60000000 %}{% set s = 'x' * n %}{% for i in range(100000) %}{% if 'y' in s %}{% endif %}{% endfor %}", "work limit"),
        ("{% set n = 60000000 %}{% set s = 'x' * n %}{% for i in range(100000) %}{{ s.upper()[0] }}{% endfor %}", "work limit"),
        ("{% set n = 60000000 %}{% set s = 'x' * n %}{% for i in range(100000) %}{{ s[-1] }}{% endfor %}", "work limit"),
        ("{% set l = range(100000)|list %}{% for i in range(100000) %}{{ (l|sort)[0] }}{% endfor %}", "work limit"),
        // doubling: 2^40 bytes
        ("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "~ would build a string of more than"),
        ("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}", "+ would build a string of more than"),
        ("{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}", "+ would build a list"),
        // captured output, which the output limit does not see (1 GB of text per
        // `{% set %}` block; a macro's output is captured too)
        (
            "{% set x %}{% for i in range(99999) %}{% for j in range(99999) %}AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA{% endfor %}{% endfor %}{% endset %}",
            "work limit",
        ),
        (
            "{% macro m(s) %}{{ s }}{{ s }}{% endmacro %}{% set n = 60000000 %}{% set s = 'x' * n %}{% set x %}{% for i in range(100000) %}{{ m(s) }}{% endfor %}{% endset %}",
            "work limit",
        ),
        // builders whose result is many times their input
        ("{% set s = '\n' * 60000 %}{{ s|indent(100000) }}", "indent would build a string of"),
        ("{% set n = 10000 %}{% set f = '{:99999}' * n %}{{ f.format(1) }}", "str.format would build a string of"),
        ("{% set s = 'x' * 60000 %}{{ ('%s' * 2000)|format(*([s] * 2000)) }}", "format would build a string of"),
        ("{% set n = 60000 %}{{ ([[1]] * n)|tojson(indent=100000) }}", "tojson: the text is over the chat-template limit"),
    ];
    assert_render_refused(cases, &m, Duration::from_secs(10));
    // the same operations at ordinary sizes
    assert_eq!(render("{{ ([1] * 3 + [2])|list }} {{ 'ab' * 2 ~ 1 }} {{ 2 * 3 + 1 }} {{ 'a' + 'b' }}", &m).unwrap(), "[1, 1, 1, 2] abab1 7 ab");
    assert_eq!(render("{% set n = 1000000 %}{% set s = 'x' * n %}{% for i in range(30) %}{{ (s ~ s)|length }}{% endfor %}", &m).unwrap().len(), 210);
    assert_eq!(render("{{ '%s-%s'|format('a', 'b') }} {{ 'a\nb'|indent(3) }} {{ [1]|tojson(indent=2) }}", &m).unwrap(), "a-b a\n   b [\n  1\n]");
    // errors keep their line numbers through the rewrite
    let src = "{{ 'a'\n ~\n 'b' }}\n{{ 1 +\n'x' }}";
    let e = render(src, &m).unwrap_err();
    let plain = ChatTemplate::new_unmetered(src, "<s>", "</s>").unwrap().render(&m, true).unwrap_err();
    assert_eq!(e, plain);
    assert!(e.contains("chat_template:5"), "{e}");
}

fn limits_fold_max() -> u64 {
    clex::chat::precheck::MAX_FOLDED
}

#[test]
fn a_long_conversation_stays_far_below_the_fuel() {
    let src = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/templates/qwen2.5.jinja"))
        .expect("the Qwen2.5 template");
    let mut msgs = vec![ChatMessage::new("system", "You are a helpful assistant.")];
    for i in 0..2000 {
        msgs.push(ChatMessage::new(if i % 2 == 0 { "user" } else { "assistant" }, format!("message {i} with some text")));
    }
    let out = render(&src, &msgs).expect("2000 turns render");
    assert!(out.contains("message 1999") && out.len() < limits::MAX_OUTPUT);
    // the work budget grows with the input: one 20 MB message (a 256k-token prompt is
    // about 1 MB) renders through the same template
    let big = vec![ChatMessage::new("user", "word ".repeat(4 << 20))];
    assert!(render(&src, &big).expect("a 20 MB message renders").len() > 20 << 20);
}

// ---------------------------------------------------------------- config.json, safetensors

fn config(edit: impl FnOnce(&mut serde_json::Value)) -> Result<HfConfig, String> {
    let mut c = serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "hidden_size": 8, "intermediate_size": 12,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
        "max_position_embeddings": 64, "vocab_size": 16,
        "rope_scaling": {"type": "clex", "max_factor": 4, "param_factor": 1, "act": "tanh", "time_dt": 0.01}
    });
    edit(&mut c);
    HfConfig::from_json_text(&c.to_string()).map_err(|e| e.to_string())
}

#[test]
fn config_json_missing_or_contradictory_fields() {
    assert!(config(|_| {}).is_ok());
    type Edit = fn(&mut serde_json::Value);
    let cases: &[(Edit, &str)] = &[
        (|c| c["rope_scaling"]["time_dt"] = 1e-30.into(), "rope_scaling.time_dt must be in [1e-4, 1]"),
        (|c| c["rope_scaling"]["max_factor"] = 100000.into(), "rope_scaling.max_factor 100000 (at most 4096)"),
        (|c| c["rope_scaling"]["param_factor"] = 1000.into(), "rope_scaling.param_factor 1000 (at most 64)"),
        (
            |c| {
                c["max_position_embeddings"] = 4294967295u32.into();
                c["rope_scaling"]["max_factor"] = 2.into();
            },
            "overflows the context length",
        ),
        (
            |c| c["rope_scaling"] = serde_json::json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 1.0}),
            "0 < low_freq_factor < high_freq_factor",
        ),
        (
            |c| c["rope_scaling"] = serde_json::json!({"rope_type": "llama3", "factor": -1.0}),
            "factor > 0",
        ),
        (|c| c["rope_scaling"] = serde_json::json!({"type": "linear"}), "rope_scaling.factor is missing"),
        (|c| c["rope_scaling"] = serde_json::json!({"type": "yarn", "factor": 0}), "rope_scaling.factor must be > 0"),
        (|c| c["rope_scaling"] = serde_json::json!("clex"), "rope_scaling must be an object or null"),
        (|c| c["num_key_value_heads"] = 0.into(), "num_key_value_heads must be > 0"),
        (|c| c["head_dim"] = 3.into(), "head_dim (3) must be even"),
        (|c| c["vocab_size"] = 0.into(), "vocab_size must be > 0"),
        (|c| c["rms_norm_eps"] = (-1.0).into(), "rms_norm_eps must be > 0"),
        (|c| c["rope_theta"] = 1.0.into(), "rope_theta must be > 1"),
        (|c| c["num_attention_heads"] = serde_json::Value::Null, "num_attention_heads is missing"),
        (|c| c["hidden_size"] = (-8).into(), "hidden_size must be a non-negative integer"),
        (|c| c["architectures"] = serde_json::json!([]), "architectures must be a non-empty list"),
        (|c| c.as_object_mut().unwrap().remove("architectures").map_or((), |_| ()), "architectures is missing"),
        (|c| c["architectures"] = serde_json::json!([7]), "architectures[0] must be a string"),
    ];
    for (i, (edit, want)) in cases.iter().enumerate() {
        let e = config(*edit).expect_err(want);
        assert!(e.starts_with("config.json: ") && e.contains(want), "case {i}: {e:?} lacks {want:?}");
    }
    for (text, want) in [("[1, 2]", "not a JSON object"), ("{\"a\": ", "EOF"), ("", "EOF")] {
        let e = HfConfig::from_json_text(text).unwrap_err().to_string();
        assert!(e.contains(want), "{text:?}: {e}");
    }
}

/// A safetensors file: header JSON + data.
fn safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(data);
    v
}

#[test]
fn safetensors_problems_are_named() {
    let ok = safetensors(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, &[0; 8]);
    let ck = Checkpoint::from_bytes("m.safetensors", ok.clone()).expect("valid");
    assert_eq!(ck.to_f32(ck.get("a").unwrap()).unwrap(), vec![0.0, 0.0]);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "HeaderTooSmall"),
        (ok[..ok.len() - 1].to_vec(), "MetadataIncompleteBuffer"),
        (u64::MAX.to_le_bytes().to_vec(), "HeaderTooLarge"),
        (safetensors(r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, &[0; 8]), "TensorInvalidInfo"),
        (safetensors(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, &[0; 12]), "InvalidOffset"),
        (
            safetensors(r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,2],"data_offsets":[0,8]}}"#, &[0; 8]),
            "ValidationOverflow",
        ),
        (safetensors(r#"{"a":{"dtype":"Q9","shape":[2],"data_offsets":[0,8]}}"#, &[0; 8]), "InvalidHeaderDeserialization"),
        ([&7u64.to_le_bytes()[..], b"{\"a\":\xff}"].concat(), "InvalidHeader(Utf8Error"),
    ];
    for (i, (bytes, want)) in cases.into_iter().enumerate() {
        let e = Checkpoint::from_bytes("m.safetensors", bytes).unwrap_err().to_string();
        assert!(e.contains("m.safetensors: invalid safetensors") && e.contains(want), "case {i}: {e}");
    }
    // a dtype the converter does not read, then a checkpoint that lacks the model's tensors
    let i8 = safetensors(r#"{"a":{"dtype":"I8","shape":[2],"data_offsets":[0,2]}}"#, &[0; 2]);
    let ck = Checkpoint::from_bytes("m.safetensors", i8).unwrap();
    let e = ck.to_f32(ck.get("a").unwrap()).unwrap_err().to_string();
    assert!(e.contains("dtype I8") && e.contains("only F32, F16 and BF16"), "{e}");
    let cfg = config(|_| {}).unwrap();
    let e = check_checkpoint(&cfg, &Checkpoint::from_bytes("m.safetensors", ok).unwrap()).unwrap_err().to_string();
    assert!(e.contains("model.embed_tokens.weight") && e.contains("missing"), "{e}");
}
