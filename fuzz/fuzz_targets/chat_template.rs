//! Arbitrary Jinja chat templates and conversations through `clex::chat`: an error or a
//! rendered prompt, never a panic, an abort on allocation, or a render that does not end
//! (the renderer's fuel, work, output and size limits, src/chat/limits.rs).
//!
//! Differential: the metered template (src/chat/meter.rs rewrites its operators and reads)
//! must render exactly what the same template renders unmetered, and fail where it fails,
//! except where the metered render stopped at a limit the unmetered one does not count.
//!
//! Input: byte 0 holds flags (bit 0: `add_generation_prompt`; bit 1: use the built-in
//! template number `byte0 >> 2` instead of a source); the rest, as UTF-8 (invalid bytes
//! replaced), is split at NUL bytes: the template source first (absent with bit 1), then
//! one message per part, `role\x01content` (no \x01: a user message).
#![no_main]
use clex::chat::{builtin, builtin_names, limits, ChatMessage, ChatTemplate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    let mut parts = text.split('\0');
    let src = if flags & 2 != 0 {
        let names: Vec<&str> = builtin_names().collect();
        builtin(names[(flags >> 2) as usize % names.len()]).expect("a built-in").to_owned()
    } else {
        parts.next().unwrap_or("").to_owned()
    };
    let messages: Vec<ChatMessage> = parts
        .map(|p| match p.split_once('\x01') {
            Some((role, content)) => ChatMessage::new(role, content),
            None => ChatMessage::new("user", p),
        })
        .collect();
    let t = match ChatTemplate::new(&src, "<s>", "</s>") {
        Ok(t) => t,
        Err(e) => {
            // a syntax error, or a limit on what compiling costs (src/chat/precheck.rs)
            assert!(e.starts_with("chat template syntax error") || e.starts_with("chat template error"), "{e}");
            assert!(!e.contains("could not meter"), "{e}");
            return;
        }
    };
    let agp = flags & 1 != 0;
    let metered = t.render(&messages, agp);
    match &metered {
        Ok(out) => assert!(out.len() <= limits::MAX_OUTPUT),
        Err(e) => assert!(e.starts_with("chat template error"), "{e}"),
    }
    if let Err(e) = &metered {
        // limits only the metered render counts (its calls also spend fuel)
        if ["work limit", "would build", "fuel limit"].iter().any(|l| e.contains(l)) {
            return;
        }
    }
    let plain = ChatTemplate::new_unmetered(&src, "<s>", "</s>").expect("compiles unmetered where it compiles metered");
    match (&metered, plain.render(&messages, agp)) {
        (Ok(a), Ok(b)) => assert_eq!(a, &b, "metered and unmetered renders differ"),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("metered {a:?}, unmetered {b:?}"),
    }
});
