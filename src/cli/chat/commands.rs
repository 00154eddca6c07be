//! Slash commands.

use super::engine::{Chat, StopReason};
use super::Ui;
use clex::chat::ChatMessage;
use clex::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub struct CommandInfo {
    pub name: &'static str,
    pub args: &'static str,
    pub help: &'static str,
}

const fn cmd(name: &'static str, args: &'static str, help: &'static str) -> CommandInfo {
    CommandInfo { name, args, help }
}

/// Every command, as /help lists them.
pub const COMMANDS: &[CommandInfo] = &[
    cmd("/help", "", "this list"),
    cmd("/reset", "", "forget the conversation; the system prompt stays (also /clear)"),
    cmd("/system", "[TEXT]", "set the system prompt; without TEXT, show it"),
    cmd("/save", "FILE", "write the conversation to FILE as JSON"),
    cmd("/load", "FILE", "replace the conversation with one saved by /save"),
    cmd("/stats", "", "speed of the last reply"),
    cmd("/ctx", "", "context use, CLEX bucket, what happens when it is full"),
    cmd("/exit", "", "quit (also /quit, /bye, Ctrl-D, Ctrl-C on an empty line)"),
];

pub enum Action {
    Continue,
    Exit,
}

/// The file /save writes and /load reads.
#[derive(Serialize, Deserialize)]
struct Saved {
    messages: Vec<ChatMessage>,
}

/// Runs the command line `line` (it starts with `/`).
pub fn run(chat: &mut Chat, line: &str, ui: &mut Ui) -> Result<Action> {
    let (name, arg) = match line.split_once(char::is_whitespace) {
        Some((n, a)) => (n, a.trim()),
        None => (line, ""),
    };
    match name {
        "/help" | "/?" => ui.info(&help()),
        "/exit" | "/quit" | "/bye" => return Ok(Action::Exit),
        "/reset" | "/clear" => {
            chat.messages.retain(|m| m.role == "system");
            chat.trim_cache();
            ui.info(if chat.messages.is_empty() { "conversation cleared" } else { "conversation cleared; the system prompt stays" });
        }
        "/system" if arg.is_empty() => match chat.messages.first().filter(|m| m.role == "system") {
            Some(m) => ui.info(&format!("system prompt: {}", m.content)),
            None => ui.info("no system prompt (set one with /system TEXT)"),
        },
        "/system" => {
            let sys = ChatMessage::new("system", arg);
            match chat.messages.first_mut().filter(|m| m.role == "system") {
                Some(m) => *m = sys,
                None => chat.messages.insert(0, sys),
            }
            chat.trim_cache();
            let kept = if chat.messages.len() > 1 { "; the conversation is kept and read again with it on the next turn" } else { "" };
            ui.info(&format!("system prompt set{kept}"));
        }
        "/save" | "/load" if arg.is_empty() => ui.error(&format!("{name} needs a file name: {name} FILE")),
        "/save" => save(chat, Path::new(arg), ui)?,
        "/load" => load(chat, Path::new(arg), ui)?,
        "/stats" => ui.info(&stats(chat)),
        "/ctx" => ui.info(&chat.ctx_report()),
        _ => ui.error(&format!("unknown command {name}; /help lists them (start a message with // to send a leading /)")),
    }
    Ok(Action::Continue)
}

fn help() -> String {
    let mut s = String::from("commands:\n");
    for c in COMMANDS {
        s += &format!("  {:<14} {}\n", format!("{} {}", c.name, c.args).trim_end(), c.help);
    }
    s += "input:\n  \"\"\" opens a multi-line message, a line ending in \"\"\" closes it; a line ending in \\ goes on\n";
    s += "  Ctrl-C stops a reply (what came so far is kept); Up/Down recall earlier messages";
    s
}

fn save(chat: &Chat, path: &Path, ui: &mut Ui) -> Result<()> {
    let saved = Saved { messages: chat.messages.clone() };
    let json = serde_json::to_string_pretty(&saved).map_err(|e| Error::Other(e.to_string()))?;
    match std::fs::write(path, json + "\n") {
        Ok(()) => ui.info(&format!("saved {} messages to {}", chat.messages.len(), path.display())),
        Err(e) => ui.error(&format!("cannot write {}: {e}", path.display())),
    }
    Ok(())
}

/// Reads a conversation: `{"messages": [{"role": …, "content": …}, …]}` or the bare list.
pub fn read_conversation(path: &Path) -> std::result::Result<Vec<ChatMessage>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
    let list = if v.is_array() { v } else { v.get("messages").cloned().unwrap_or(serde_json::Value::Null) };
    let msgs: Vec<ChatMessage> = serde_json::from_value(list).map_err(|e| {
        format!("{}: expected {{\"messages\": [{{\"role\": …, \"content\": …}}, …]}}: {e}", path.display())
    })?;
    if let Some((i, _)) = msgs.iter().enumerate().find(|(_, m)| m.role.trim().is_empty()) {
        return Err(format!("{}: message {} has an empty role", path.display(), i + 1));
    }
    Ok(msgs)
}

fn load(chat: &mut Chat, path: &Path, ui: &mut Ui) -> Result<()> {
    let msgs = match read_conversation(path) {
        Ok(m) => m,
        Err(e) => {
            ui.error(&e);
            return Ok(());
        }
    };
    let old = std::mem::replace(&mut chat.messages, msgs);
    let n_tokens = match chat.tokens(&chat.messages, false) {
        Ok(t) => t.len(),
        Err(e) => {
            chat.messages = old;
            ui.error(&format!("{}: the chat template refuses this conversation: {e}", path.display()));
            return Ok(());
        }
    };
    chat.trim_cache();
    let mut s = format!("loaded {} messages ({n_tokens} tokens) from {}", chat.messages.len(), path.display());
    if let Some(m) = chat.messages.last() {
        let first = m.content.lines().next().unwrap_or("");
        let cut: String = first.chars().take(70).collect();
        let more = if cut.len() < m.content.len() { "…" } else { "" };
        s += &format!("\nlast ({}): {cut}{more}", m.role);
    }
    if n_tokens >= chat.session.n_ctx() {
        s += &format!("\nit is longer than the context ({}): the next turn will {}", chat.session.n_ctx(), match chat.policy {
            super::engine::CtxFull::Stop => "be refused (raise -c, or --ctx-full shift)",
            super::engine::CtxFull::Shift => "drop the oldest turns",
        });
    }
    ui.info(&s);
    Ok(())
}

fn stats(chat: &Chat) -> String {
    let Some(s) = &chat.last else { return "no reply yet".into() };
    let rate = |n: usize, t: f64| if t > 0.0 { n as f64 / t } else { 0.0 };
    format!(
        "last reply: {} tokens in {:.2} s ({:.1} tok/s) · stopped: {}\nprompt: {} tokens, {} reused from the cache, {} evaluated in {:.2} s ({:.1} tok/s)",
        s.generated,
        s.gen_s,
        rate(s.generated, s.gen_s),
        match s.stop {
            StopReason::EndOfTurn => "end of turn",
            StopReason::Limit => "the -n limit",
            StopReason::Interrupted => "Ctrl-C",
            StopReason::ContextFull => "context full",
        },
        s.prompt_tokens,
        s.prompt_tokens.saturating_sub(s.prompt_evaluated),
        s.prompt_evaluated,
        s.prompt_s,
        rate(s.prompt_evaluated, s.prompt_s),
    )
}
