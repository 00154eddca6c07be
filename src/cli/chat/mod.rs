//! `clex-run chat MODEL.gguf` (or `clex-run MODEL.gguf -i` / `-cnv`): an interactive chat
//! with the model's chat template. On a terminal: line editing, persistent history,
//! multi-line input, slash commands, streamed replies that Ctrl-C stops. With stdin not a
//! terminal: one message per line (or `"""` block) from stdin, each reply on stdout.

mod commands;
mod engine;
mod input;
mod term;

use super::args::GenerateArgs;
use super::common;
use clex::chat::{ChatFormat, ChatMessage};
use clex::sample::Sampler;
use clex::session::Session;
use clex::{Error, Result};
use engine::{Chat, CtxFull, Outcome, StopReason};
use input::{Assembler, Line, Source, Step};
use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Where text goes: replies to stdout; on a terminal, notes and command output too (notes
/// dimmed), otherwise those go to stderr so that stdout holds only the replies.
pub struct Ui {
    interactive: bool,
    color: bool,
    mid_line: bool,
}

impl Ui {
    fn style(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }

    /// A piece of the reply.
    pub fn reply(&mut self, s: &str) {
        if s.is_empty() {
            return;
        }
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(s.as_bytes());
        let _ = out.flush();
        self.mid_line = !s.ends_with('\n');
    }

    /// Ends the reply's current line (before a note).
    pub fn reply_break(&mut self) {
        if self.mid_line {
            println!();
            self.mid_line = false;
        }
    }

    /// Something the user should know (a limit hit, a shift done).
    pub fn note(&mut self, s: &str) {
        self.reply_break();
        if self.interactive {
            println!("{}", self.style("2", &format!("[{s}]")));
        } else {
            eprintln!("clex-run: {s}");
        }
    }

    /// A command's output.
    pub fn info(&mut self, s: &str) {
        if self.interactive {
            println!("{s}");
        } else {
            eprintln!("{s}");
        }
    }

    pub fn error(&mut self, s: &str) {
        self.reply_break();
        if self.interactive {
            println!("{}", self.style("31", &format!("error: {s}")));
        } else {
            eprintln!("clex-run: error: {s}");
        }
    }
}

pub fn run(a: &GenerateArgs) -> Result<()> {
    let first = match (&a.prompt, &a.file) {
        (Some(p), None) => Some(p.clone()),
        (None, Some(f)) => Some(std::fs::read_to_string(f).map_err(|e| Error::Io { path: f.clone(), source: e })?),
        (Some(_), Some(_)) => return Err(Error::Other("give the first message with -p or -f, not both".into())),
        (None, None) => None,
    };
    let interactive = std::io::stdin().is_terminal();
    let color = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var("TERM").map_or(true, |t| t != "dumb");
    let mut ui = Ui { interactive, color, mid_line: false };

    let path = common::model_path(&a.model)?;
    let opts = common::session_options(&a.model)?;
    let model = Arc::new(common::load_model(&a.model)?);
    let format = ChatFormat::for_model(model.gguf(), &model.tokenizer, a.chat.chat_template.as_deref())
        .map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
    let session = Session::new(Arc::clone(&model), opts)?;
    let sampler = Sampler::new(common::sampler_config(&a.sample), model.hparams.n_vocab);
    let messages = a.chat.system.iter().map(|s| ChatMessage::new("system", s.clone())).collect();
    let mut chat = Chat {
        model: Arc::clone(&model),
        session,
        format,
        sampler,
        messages,
        policy: if a.chat.ctx_full == "shift" { CtxFull::Shift } else { CtxFull::Stop },
        max_reply: (a.n_predict >= 0).then(|| a.n_predict.max(1) as usize),
        last: None,
        shifts: 0,
        dropped_messages: 0,
    };
    // A Ctrl-C during a reply stops it; outside one (or a second one) ends the program.
    let _ = ctrlc::set_handler(|| {
        if !engine::REPLYING.load(Ordering::SeqCst) || engine::INTERRUPTED.swap(true, Ordering::SeqCst) {
            term::restore();
            std::process::exit(super::exit::INTERRUPTED as i32);
        }
    });

    let mut source = if interactive {
        banner(&chat, &path, &mut ui);
        Source::editor(input::history_path(), ui.color, &mut |w| eprintln!("clex-run: {w}")).map_err(Error::Other)?
    } else {
        Source::piped()
    };
    if let Some(p) = first {
        if interactive {
            println!("{}{p}", ui.style("1;32", prompt_text(false)));
        }
        send(&mut chat, p, &mut ui, a.verbose)?;
    }
    let mut asm = Assembler::default();
    loop {
        let line = source.read(prompt_text(asm.is_pending())).map_err(Error::Other)?;
        let (text, history) = match line {
            Line::Eof if asm.is_pending() && !interactive => {
                // An unclosed block at the end of stdin is still a message.
                match asm.push("\"\"\"") {
                    Step::Done { text, history } => (text, history),
                    Step::More => break,
                }
            }
            Line::Eof => break,
            Line::Interrupted if asm.is_pending() => {
                asm.clear();
                continue;
            }
            Line::Interrupted => break,
            Line::Text(l) => match asm.push(&l) {
                Step::More => continue,
                Step::Done { text, history } => (text, history),
            },
        };
        if text.trim().is_empty() {
            continue;
        }
        if let Some(w) = source.remember(&history) {
            ui.note(&w);
        }
        if let Some(msg) = text.strip_prefix("//") {
            send(&mut chat, format!("/{msg}"), &mut ui, a.verbose)?;
        } else if text.starts_with('/') {
            match commands::run(&mut chat, text.trim(), &mut ui) {
                Ok(commands::Action::Exit) => break,
                Ok(commands::Action::Continue) => {}
                Err(e) if interactive => ui.error(&e.to_string()),
                Err(e) => return Err(e),
            }
        } else {
            send(&mut chat, text, &mut ui, a.verbose)?;
        }
    }
    if interactive {
        ui.reply_break();
    }
    Ok(())
}

/// The prompt (coloured by the line editor's highlighter, which keeps its width right).
fn prompt_text(continuation: bool) -> &'static str {
    if continuation {
        "... "
    } else {
        ">>> "
    }
}

/// Sends one message and reports how its reply ended. On a terminal, errors are shown and
/// the chat goes on; otherwise they end the program.
fn send(chat: &mut Chat, text: String, ui: &mut Ui, verbose: bool) -> Result<()> {
    let n_ctx = chat.session.n_ctx();
    if ui.interactive {
        term::echo_off();
    }
    let outcome = chat.turn(text, ui);
    term::restore();
    match outcome {
        Ok(Outcome::Replied(s)) => {
            ui.reply_break();
            match s.stop {
                StopReason::EndOfTurn => {}
                StopReason::Limit => ui.note(&format!("reply cut at the -n limit of {} tokens", s.generated)),
                StopReason::Interrupted => ui.note("stopped; the reply so far stays in the conversation"),
                StopReason::ContextFull if chat.policy == CtxFull::Stop => ui.note(&format!(
                    "context full ({n_ctx} tokens): the reply was cut here. /reset starts over (the system prompt stays), \
                     /save FILE keeps the conversation; or run with a larger -c, or --ctx-full shift"
                )),
                StopReason::ContextFull => {
                    ui.note(&format!("context full: this exchange alone fills the {n_ctx}-token context; the reply was cut"))
                }
            }
            if verbose {
                let rate = s.generated as f64 / s.gen_s.max(1e-9);
                ui.note(&format!("{} tokens, {rate:.1} tok/s; prompt {} evaluated of {}", s.generated, s.prompt_evaluated, s.prompt_tokens));
            }
            if ui.interactive {
                println!();
            }
            Ok(())
        }
        Ok(Outcome::Withdrawn(msg)) if ui.interactive => {
            ui.note(&msg);
            Ok(())
        }
        Ok(Outcome::Withdrawn(msg)) => Err(Error::Context(msg)),
        Err(e) if ui.interactive => {
            ui.error(&e.to_string());
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn banner(chat: &Chat, path: &std::path::Path, ui: &mut Ui) {
    let m = &chat.model;
    let name = m.gguf().get_str("general.name").ok().flatten().map(str::to_owned);
    let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let mut s = format!("clex-run chat · {} · context {} tokens", name.as_deref().unwrap_or(&file), chat.session.n_ctx());
    if let Some(t) = chat.session.rope().table() {
        s += &format!(" · CLEX L = {}, T = {}", t.orig_ctx(), t.max_factor());
    }
    s += &format!("\n{file} · template: {}", chat.format.source());
    if let Some(sys) = chat.messages.first() {
        let cut: String = sys.content.chars().take(70).collect();
        s += &format!("\nsystem: {cut}{}", if cut.len() < sys.content.len() { "…" } else { "" });
    }
    let hint = "/help for commands · \"\"\" for multi-line input · Ctrl-C stops a reply · Ctrl-D or /exit quits";
    println!("{}\n{}\n", s, ui.style("2", hint));
}
