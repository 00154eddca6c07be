//! `clex-run chat` end to end: in a pseudo-terminal (line editing, Ctrl-C, slash
//! commands, history, exit status) and with stdin piped; replies checked against
//! llama.cpp's greedy replies to the same conversation; context-full policies. The
//! context shift itself is checked against its oracles in `chat_repl/shift.rs`.
mod common;
#[path = "chat_repl/shift.rs"]
mod shift;

use clex::gguf::GgufFile;
use clex::tokenizer::Tokenizer;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::{LlamaChatMessage, LlamaModel};
use llama_cpp_2::token::LlamaToken;
use rexpect::process::wait::WaitStatus;
use rexpect::reader::Options;
use rexpect::session::{spawn_with_options, PtySession};
use std::io::Write;
use std::num::NonZeroU32;
use std::path::Path;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_clex-run");
const SYSTEM: &str = "You are a helpful assistant. Answer briefly.";

/// llama.cpp's greedy reply (until end of generation, at most `n` tokens) to the
/// conversation `msgs`, rendered by llama.cpp's template code, as text.
fn llama_cpp_reply(lm: &LlamaModel, tok: &Tokenizer, msgs: &[(&str, &str)], n: usize) -> String {
    let tmpl = lm.chat_template(None).expect("the model has a template");
    let chat: Vec<LlamaChatMessage> = msgs.iter().map(|(r, c)| LlamaChatMessage::new(r.to_string(), c.to_string()).unwrap()).collect();
    let text = lm.apply_chat_template(&tmpl, &chat, true).unwrap();
    let prompt = common::oracle::tokenize(lm, &text, true);
    let params = LlamaContextParams::default().with_n_ctx(NonZeroU32::new(1024)).with_n_threads(2).with_n_threads_batch(2);
    let mut ctx = lm.new_context(common::oracle::backend(), params).unwrap();
    let mut batch = LlamaBatch::new(prompt.len(), 1);
    for (i, &t) in prompt.iter().enumerate() {
        batch.add(LlamaToken(t as i32), i as i32, &[0], i + 1 == prompt.len()).unwrap();
    }
    ctx.decode(&mut batch).unwrap();
    let mut logits = ctx.get_logits_ith(batch.n_tokens() - 1).to_vec();
    let mut out = Vec::new();
    while out.len() < n {
        let t = common::oracle::argmax(&logits);
        if tok.is_eog(t) {
            break;
        }
        out.push(t);
        batch.clear();
        batch.add(LlamaToken(t as i32), (prompt.len() + out.len() - 1) as i32, &[0], true).unwrap();
        ctx.decode(&mut batch).unwrap();
        logits = ctx.get_logits_ith(0).to_vec();
    }
    String::from_utf8_lossy(&tok.detokenize(&out, false, false)).into_owned()
}

fn qwen_tokenizer(path: &Path) -> Tokenizer {
    Tokenizer::from_gguf(&GgufFile::open(path).unwrap()).unwrap()
}

fn spawn(args: &[&str], data_home: &Path) -> PtySession {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env("XDG_DATA_HOME", data_home).env("NO_COLOR", "1").env_remove("CLEX_HISTORY");
    let opts = Options { timeout_ms: Some(180_000), strip_ansi_escape_codes: true };
    spawn_with_options(cmd, opts).expect("spawn clex-run in a pty")
}

/// Waits for the next prompt; returns the screen text before it (CR LF → LF).
fn until_prompt(p: &mut PtySession) -> String {
    p.exp_string(">>> ").expect("the prompt").replace("\r\n", "\n")
}

/// rexpect reads the terminal byte by byte as Latin-1: what UTF-8 text looks like there.
fn latin1(s: &str) -> String {
    s.bytes().map(char::from).collect()
}

/// Waits for `what` on the screen (rustyline redraws the input line as it is typed, so
/// tests wait for output, not for the next prompt), then for the prompt after it.
fn expect_then_prompt(p: &mut PtySession, what: &str) -> String {
    let before = p.exp_string(&latin1(what)).unwrap_or_else(|e| panic!("waiting for {what:?}: {e}"));
    until_prompt(p);
    before.replace("\r\n", "\n")
}

/// `/ctx`: (tokens in the cache, messages in the conversation).
fn ctx(p: &mut PtySession, n_ctx: usize) -> (usize, usize) {
    p.send_line("/ctx").unwrap();
    let re = format!(r"context: (\d+) of {n_ctx} tokens cached \(\d+%\) \S+ conversation: \d+ tokens, (\d+) message");
    let (_, line) = p.exp_regex(&re).expect("the /ctx report");
    let nums: Vec<usize> = line.split(|c: char| !c.is_ascii_digit()).filter_map(|s| s.parse().ok()).collect();
    let rest = expect_then_prompt(p, "when full: ");
    assert!(!rest.contains("error"), "{rest}");
    (nums[0], *nums.last().unwrap())
}

fn exit_code(p: &PtySession) -> i32 {
    match p.process().wait().unwrap() {
        WaitStatus::Exited(_, code) => code,
        other => panic!("clex-run did not exit normally: {other:?}"),
    }
}

/// Two turns answered as llama.cpp answers them, Ctrl-C in the middle of a third reply,
/// /ctx, /reset, /exit; the history file keeps what was typed.
#[test]
fn terminal_session_turns_ctrl_c_ctx_reset_exit() {
    let Some(q) = common::qwen() else { return };
    let (lm, tok) = (common::oracle::load(&q), qwen_tokenizer(&q));
    let (q1, q2, q3) = ("What is the capital of France? One word.", "And of Italy?", "Write a long poem about the sea.");
    let a1 = llama_cpp_reply(&lm, &tok, &[("system", SYSTEM), ("user", q1)], 400);
    let a2 = llama_cpp_reply(&lm, &tok, &[("system", SYSTEM), ("user", q1), ("assistant", &a1), ("user", q2)], 400);
    let a3 = llama_cpp_reply(&lm, &tok, &[("system", SYSTEM), ("user", q1), ("assistant", &a1), ("user", q2), ("assistant", &a2), ("user", q3)], 12);
    eprintln!("llama.cpp replies: {a1:?} / {a2:?} / {a3:?}…");
    let home = common::temp_path("repl-home");
    let q = q.to_str().unwrap();
    let mut p = spawn(&["chat", q, "-c", "1024", "-t", "2", "--temp", "0", "-n", "400", "--system", SYSTEM], &home);
    let banner = until_prompt(&mut p);
    assert!(banner.contains("clex-run chat") && banner.contains("/help"), "banner: {banner}");

    p.send_line(q1).unwrap();
    expect_then_prompt(&mut p, &format!("{}\r\n", a1.trim_end()));
    p.send_line(q2).unwrap();
    expect_then_prompt(&mut p, &format!("{}\r\n", a2.trim_end()));

    // Ctrl-C once the reply has begun.
    p.send_line(q3).unwrap();
    let begin: String = a3.chars().take(12).collect();
    p.exp_string(&latin1(&begin)).expect("the third reply begins as llama.cpp's");
    p.send_control('c').unwrap();
    expect_then_prompt(&mut p, "[stopped; the reply so far stays in the conversation]");

    let (used, n_msgs) = ctx(&mut p, 1024);
    assert_eq!(n_msgs, 7, "system, three questions, two replies and the stopped one");
    assert!(used > 40);

    p.send_line("/reset").unwrap();
    expect_then_prompt(&mut p, "conversation cleared; the system prompt stays");
    let (after, n_msgs) = ctx(&mut p, 1024);
    assert_eq!(n_msgs, 1);
    assert!(after > 0 && after < used, "the system prompt stays cached: {after} of {used}");

    p.send_line("/exit").unwrap();
    p.exp_eof().unwrap();
    assert_eq!(exit_code(&p), 0);
    let hist = std::fs::read_to_string(home.join("clex/history")).expect("history file");
    for entry in [q1, q2, q3, "/ctx", "/reset", "/exit"] {
        assert!(hist.lines().any(|l| l == entry), "history lacks {entry:?}:\n{hist}");
    }
}

fn tiny() -> String {
    common::fixtures().join("llama-2-tiny-random.gguf").to_str().unwrap().to_owned()
}

/// Line editing details on a fast model: a `"""` block, Ctrl-C clearing a half-typed
/// line, Ctrl-C on an empty line quitting with status 0.
#[test]
fn terminal_blocks_and_ctrl_c_on_empty_line() {
    let home = common::temp_path("repl-home-2");
    let m = tiny();
    let mut p = spawn(&[&m, "-i", "--chat-template", "chatml", "-c", "256", "-n", "8", "-s", "1"], &home);
    until_prompt(&mut p);
    p.send_line("\"\"\"").unwrap();
    p.exp_string("... ").unwrap();
    p.send_line("first line").unwrap();
    p.exp_string("... ").unwrap();
    p.send_line("second line\"\"\"").unwrap();
    expect_then_prompt(&mut p, "\r\n\r\n");
    p.send("half typed").unwrap();
    p.flush().unwrap();
    p.exp_string("half typed").unwrap();
    p.send_control('c').unwrap();
    let (_, n_msgs) = ctx(&mut p, 256);
    assert_eq!(n_msgs, 2, "Ctrl-C cleared the half-typed line; the block was one message");
    p.send_control('c').unwrap();
    p.exp_eof().unwrap();
    assert_eq!(exit_code(&p), 0);
    let hist = std::fs::read_to_string(home.join("clex/history")).unwrap();
    assert!(hist.contains(r#""""\nfirst line\nsecond line\n""""#), "the block is one history entry:\n{hist}");
    assert!(!hist.contains("half typed"));
}

/// Runs `clex-run` with `input` on stdin; returns (status, stdout, stderr).
fn piped(args: &[&str], input: &str) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("CLEX_HISTORY", "")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), s(&out.stdout), s(&out.stderr))
}

#[test]
fn piped_turns_equal_llama_cpp_replies() {
    let Some(q) = common::qwen() else { return };
    let (lm, tok) = (common::oracle::load(&q), qwen_tokenizer(&q));
    let (q1, q2) = ("Name a prime number below 10. Just the number.", "Now double it. Just the number.");
    let a1 = llama_cpp_reply(&lm, &tok, &[("user", q1)], 64);
    let a2 = llama_cpp_reply(&lm, &tok, &[("user", q1), ("assistant", &a1), ("user", q2)], 64);
    let (code, out, err) = piped(&["chat", q.to_str().unwrap(), "-c", "512", "-t", "2", "--temp", "0", "-n", "64"], &format!("{q1}\n\n{q2}\n/ctx\n"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("{a1}\n{a2}\n"), "stdout holds the replies only; stderr: {err}");
    assert!(err.contains("context: ") && err.contains("of 512 tokens"), "/ctx answers on stderr: {err}");
}

#[test]
fn clex_model_reports_its_bucket() {
    let m = concat!(env!("CARGO_MANIFEST_DIR"), "/models/clex-tiny-random.gguf");
    let input = "one two three\nfour five six\nseven eight nine\n/ctx\n";
    let (code, _, err) = piped(&["chat", m, "--chat-template", "chatml", "-c", "512", "-n", "40", "-s", "3"], input);
    assert_eq!(code, 0, "{err}");
    let used: usize = err.split("context: ").nth(1).and_then(|s| s.split(' ').next()).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{err}"));
    let t = used.div_ceil(64);
    assert!(t >= 2, "three turns pass L = 64: {err}");
    assert!(err.contains(&format!("rope: clex · bucket t = {t} · L = 64")) && err.contains("hard limit L·T = 512"), "{err}");
}

#[test]
fn ctx_full_stop_says_so() {
    let m = tiny();
    // The first reply runs into the end of the 48-token context; the second message cannot
    // be sent at all.
    let (code, out, err) = piped(&[&m, "-cnv", "--chat-template", "chatml", "-c", "48", "-s", "2"], "hello there\nanother message\n");
    assert!(!out.is_empty(), "the cut reply is still printed");
    assert!(err.contains("context full (48 tokens): the reply was cut here"), "{err}");
    assert!(err.contains("context full: the conversation with this message is") && err.contains("Nothing was sent"), "{err}");
    assert_eq!(code, 4, "a refused message ends a piped chat with the context exit code: {err}");
}

#[test]
fn ctx_full_shift_drops_oldest_turns_and_goes_on() {
    let m = tiny();
    // 128 tokens and replies of 30: each new question still fits, its reply runs into the
    // end of the context and the oldest exchange goes mid-reply.
    let args = [m.as_str(), "-cnv", "--chat-template", "chatml", "-c", "128", "-n", "30", "-s", "5", "--ctx-full", "shift", "--system", "be brief"];
    let input = "first question\nsecond question\nthird question\nfourth question\n/ctx\n";
    let (code, out, err) = piped(&args, input);
    assert_eq!(code, 0, "{err}");
    assert!(!out.is_empty());
    assert!(err.contains("context full during the reply: dropped the") && err.contains("kept the system prompt"), "{err}");
    assert!(!err.contains("alone fills") && !err.contains("error"), "{err}");
    let shifts: usize = err.split("shifts so far ").nth(1).and_then(|s| s.split(' ').next()).and_then(|n| n.parse().ok()).unwrap();
    assert!(shifts >= 2, "{err}");
    // A long first exchange fills the context by itself: said, and the reply is cut.
    let (code, _, err) = piped(&[m.as_str(), "-cnv", "--chat-template", "chatml", "-c", "64", "-n", "200", "--ctx-full", "shift"], "hello\n");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("this exchange alone fills the 64-token context"), "{err}");
    // The system prompt alone with a message longer than the context: refused, not cut.
    let long = "word ".repeat(200);
    let (code, _, err) = piped(&args, &format!("{long}\n"));
    assert_eq!(code, 4);
    assert!(err.contains("this message does not fit") && err.contains("nothing was sent"), "{err}");
}

#[test]
fn missing_template_and_bad_flags_are_clear() {
    let m = tiny();
    let (code, _, err) = piped(&["chat", &m], "hi\n");
    assert_eq!(code, 3);
    assert!(err.contains("no chat template") && err.contains("--chat-template"), "{err}");
    let (code, _, err) = piped(&["chat", &m, "--chat-template", "no-such-template"], "hi\n");
    assert_eq!(code, 3);
    assert!(err.contains("neither a built-in template"), "{err}");
    let (code, _, err) = piped(&["chat", &m, "--ctx-full", "wrap"], "");
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = piped(&["chat", &m, "--chat-template", "chatml"], "/load /no/such.json\n/nonsense\n");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("cannot read /no/such.json") && err.contains("unknown command /nonsense"), "{err}");
}

#[test]
fn save_and_load_round_trip() {
    let m = tiny();
    let file = common::temp_path("conversation.json");
    let f = file.to_str().unwrap();
    let (code, _, err) = piped(&["chat", &m, "--chat-template", "chatml", "-n", "6", "--system", "sys"], &format!("hello\n/save {f}\n"));
    assert_eq!(code, 0, "{err}");
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let msgs = saved["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3);
    assert_eq!((msgs[0]["role"].as_str(), msgs[1]["content"].as_str()), (Some("system"), Some("hello")));
    let (code, _, err) = piped(&["chat", &m, "--chat-template", "chatml", "-n", "6"], &format!("/load {f}\n/ctx\n"));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("loaded 3 messages") && err.contains("tokens, 3 messages"), "{err}");
}
