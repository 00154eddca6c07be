//! The C ABI (capi/, include/clex.h): the C examples compile against the committed header
//! and the built library, stream what the Rust API generates, and answer bad input with
//! status codes and messages; the header is what cbindgen makes of capi/src.

mod common;

use clex::{ChatMessage, Event, GenerateOptions, Model, ModelOptions, Session, SessionOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, OnceLock};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn tiny() -> String {
    root().join("models/clex-tiny-random.gguf").to_string_lossy().into_owned()
}

/// Builds libclex.a / libclex.so once per test run (release, as everything here).
fn build_capi() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| option_env!("CARGO").unwrap_or("cargo").into());
        let st = Command::new(cargo).args(["build", "--release", "--quiet", "-p", "clex-capi"]).current_dir(root()).status().unwrap();
        assert!(st.success(), "cargo build --release -p clex-capi");
    });
}

/// Compiles `examples/c/{name}.c` with warnings as errors; `link` are the linker arguments.
fn compile(name: &str, link: &[String]) -> PathBuf {
    build_capi();
    let exe = common::temp_path(name);
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let src = root().join(format!("examples/c/{name}.c"));
    let out = Command::new(cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-I"])
        .arg(root().join("include"))
        .arg(&src)
        .args(link)
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap();
    assert!(out.status.success(), "cc {}: {}", src.display(), String::from_utf8_lossy(&out.stderr));
    exe
}

/// examples/c/chat.c linked statically (libclex.a holds ggml; these are the system
/// libraries `--print native-static-libs` lists for it).
fn chat_exe() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let mut link = vec![root().join("target/release/libclex.a").to_string_lossy().into_owned()];
        link.extend("-lgomp -lstdc++ -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc".split(' ').map(String::from));
        compile("chat", &link)
    })
}

fn run(exe: &Path, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child =
        Command::new(exe).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // A program that fails early may close its input first (a broken pipe is fine).
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

#[test]
fn c_chat_streams_what_the_rust_api_generates() {
    let out = run(chat_exe(), &[&tiny(), "chatml", "12"], "Hello there\n\nTell me more\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr, "", "the library prints nothing");

    // Oracle: the same conversation through the Rust API.
    let model = Arc::new(Model::load_with(Path::new(&tiny()), &ModelOptions::default()).unwrap());
    let fmt = model.chat_format(Some("chatml")).unwrap();
    let mut s = Session::new(Arc::clone(&model), SessionOptions { n_ctx: 512, ..Default::default() }).unwrap();
    let (mut msgs, mut want) = (Vec::new(), String::new());
    for line in ["Hello there", "Tell me more"] {
        msgs.push(ChatMessage::new("user", line));
        s.chat_with(&fmt, &msgs).unwrap();
        let mut reply = String::new();
        for ev in s.generate(GenerateOptions::greedy(12)).unwrap() {
            match ev.unwrap() {
                Event::Token(t) => reply.push_str(&t.text),
                Event::Finished { text, .. } => reply.push_str(&text),
            }
        }
        want.push_str(&reply);
        want.push('\n');
        msgs.push(ChatMessage::new("assistant", reply));
    }
    assert!(want.len() > 4, "{want:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
}

#[test]
fn c_chat_reports_a_bad_model_path() {
    let out = run(chat_exe(), &["/nonexistent/dir/model.gguf"], "hi\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // An exit status (not a signal), the status code and clex's message naming the file.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("clex_model_load failed (status 2)"), "{stderr}");
    assert!(stderr.contains("/nonexistent/dir/model.gguf"), "{stderr}");
    let out = run(chat_exe(), &[&tiny()], "hi\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("clex_session_chat failed") && stderr.contains("no chat template"), "{stderr}");
}

#[test]
fn c_threads_and_errors_hold_with_the_shared_library() {
    let lib = root().join("target/release");
    let link = [
        format!("-L{}", lib.display()),
        "-lclex".into(),
        format!("-Wl,-rpath,{}", lib.display()),
        "-lpthread".into(),
    ];
    let exe = compile("cancel", &link);
    let state = common::temp_path("capi-state.bin");
    let out = run(&exe, &[&tiny(), state.to_str().unwrap()], "");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("all checks passed"), "{stdout}");
    assert_eq!(stderr, "");
}

#[test]
fn header_is_what_cbindgen_makes_of_capi() {
    let cbindgen = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cargo/bin/cbindgen"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("cbindgen"));
    let fresh = common::temp_path("clex.h");
    let st = Command::new(&cbindgen)
        .args(["--quiet", "--config", "capi/cbindgen.toml", "--crate", "clex-capi", "--output"])
        .arg(&fresh)
        .arg("capi")
        .current_dir(root())
        .status();
    match st {
        Err(e) => eprintln!("SKIPPED: cbindgen not found ({e}); `cargo install cbindgen` to check include/clex.h"),
        Ok(st) => {
            assert!(st.success(), "cbindgen failed");
            let committed = std::fs::read_to_string(root().join("include/clex.h")).unwrap();
            let fresh = std::fs::read_to_string(&fresh).unwrap();
            assert!(committed == fresh, "include/clex.h is stale: regenerate it (see capi/cbindgen.toml)");
        }
    }
}
