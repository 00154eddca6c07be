//! Where chat input comes from: a line editor with history on a terminal, or stdin's lines
//! otherwise; and how lines make up one message (`"""` blocks, a trailing `\`).

use super::commands::COMMANDS;
use rustyline::completion::Completer;
use rustyline::config::Config;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::FileHistory;
use rustyline::validate::Validator;
use rustyline::{Cmd, ConditionalEventHandler, Editor, Event, EventContext, EventHandler, KeyEvent, Movement, RepeatCount};
use std::borrow::Cow;
use std::io::BufRead;
use std::path::PathBuf;

/// One read from the user.
pub enum Line {
    Text(String),
    /// Ctrl-C on an empty line.
    Interrupted,
    /// Ctrl-D, or the end of stdin.
    Eof,
}

/// Messages come from a terminal (line editing) or a pipe.
pub enum Source {
    Editor { ed: Box<Editor<ChatHelper, FileHistory>>, history: Option<PathBuf> },
    Piped(std::io::StdinLock<'static>),
}

impl Source {
    /// A line editor with the history file loaded (a missing or unreadable file is not an
    /// error: the chat goes on without saved history, and says why).
    pub fn editor(history: Option<PathBuf>, color: bool, warn: &mut dyn FnMut(&str)) -> Result<Self, String> {
        let cfg = Config::builder()
            .auto_add_history(false)
            .history_ignore_space(true)
            .max_history_size(2000)
            .map_err(|e| e.to_string())?
            .history_ignore_dups(true)
            .map_err(|e| e.to_string())?
            .build();
        let mut ed = Editor::<ChatHelper, FileHistory>::with_config(cfg).map_err(|e| format!("line editor: {e}"))?;
        ed.set_helper(Some(ChatHelper { color }));
        ed.bind_sequence(KeyEvent::ctrl('C'), EventHandler::Conditional(Box::new(CtrlC)));
        let mut history = history;
        if let Some(p) = &history {
            if let Some(dir) = p.parent() {
                if let Err(e) = std::fs::create_dir_all(dir) {
                    warn(&format!("history off: cannot create {}: {e}", dir.display()));
                    history = None;
                }
            }
        }
        if let Some(p) = &history {
            if p.exists() {
                if let Err(e) = ed.load_history(p) {
                    warn(&format!("history: cannot read {}: {e}", p.display()));
                }
            }
        }
        Ok(Self::Editor { ed: Box::new(ed), history })
    }

    pub fn piped() -> Self {
        Self::Piped(std::io::stdin().lock())
    }

    /// Reads one line (showing `prompt` on a terminal).
    pub fn read(&mut self, prompt: &str) -> Result<Line, String> {
        match self {
            Self::Editor { ed, .. } => match ed.readline(prompt) {
                Ok(s) => Ok(Line::Text(s)),
                Err(ReadlineError::Interrupted) => Ok(Line::Interrupted),
                Err(ReadlineError::Eof) => Ok(Line::Eof),
                Err(e) => Err(format!("reading input: {e}")),
            },
            Self::Piped(r) => {
                let mut s = String::new();
                match r.read_line(&mut s) {
                    Ok(0) => Ok(Line::Eof),
                    Ok(_) => {
                        if s.ends_with('\n') {
                            s.pop();
                            if s.ends_with('\r') {
                                s.pop();
                            }
                        }
                        Ok(Line::Text(s))
                    }
                    Err(e) => Err(format!("reading stdin: {e}")),
                }
            }
        }
    }

    /// Records a whole message (or command) in the history, and appends it to the file.
    pub fn remember(&mut self, entry: &str) -> Option<String> {
        let Self::Editor { ed, history } = self else { return None };
        if !matches!(ed.add_history_entry(entry), Ok(true)) {
            return None;
        }
        let path = history.as_ref()?;
        ed.append_history(path).err().map(|e| format!("history: cannot write {}: {e}", path.display()))
    }
}

/// The history file: `$CLEX_HISTORY`, else `$XDG_DATA_HOME/clex/history`, else
/// `~/.local/share/clex/history`. `CLEX_HISTORY=` (empty) turns history off.
pub fn history_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CLEX_HISTORY") {
        return (!p.is_empty()).then(|| PathBuf::from(p));
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
    Some(data.join("clex/history"))
}

/// Ctrl-C clears a line that has text; on an empty line it interrupts (the chat exits,
/// or leaves a multi-line block).
struct CtrlC;

impl ConditionalEventHandler for CtrlC {
    fn handle(&self, _: &Event, _: RepeatCount, _: bool, ctx: &EventContext<'_>) -> Option<Cmd> {
        Some(if ctx.line().is_empty() { Cmd::Interrupt } else { Cmd::Kill(Movement::WholeBuffer) })
    }
}

/// Completion and grey hints for slash commands; a bold prompt.
pub struct ChatHelper {
    color: bool,
}

impl ChatHelper {
    fn matches(line: &str) -> Vec<&'static str> {
        if !line.starts_with('/') || line.contains(char::is_whitespace) {
            return Vec::new();
        }
        COMMANDS.iter().map(|c| c.name).filter(|n| n.starts_with(line)).collect()
    }
}

impl Completer for ChatHelper {
    type Candidate = String;
    fn complete(&self, line: &str, pos: usize, _: &rustyline::Context<'_>) -> rustyline::Result<(usize, Vec<String>)> {
        Ok((0, Self::matches(&line[..pos]).into_iter().map(str::to_owned).collect()))
    }
}

impl Hinter for ChatHelper {
    type Hint = String;
    fn hint(&self, line: &str, pos: usize, _: &rustyline::Context<'_>) -> Option<String> {
        if pos < line.len() {
            return None;
        }
        match Self::matches(line)[..] {
            [one] if one.len() > line.len() => Some(one[line.len()..].to_owned()),
            _ => None,
        }
    }
}

impl Highlighter for ChatHelper {
    fn highlight_hint<'h>(&self, hint: &'h str) -> Cow<'h, str> {
        if self.color {
            Cow::Owned(format!("\x1b[2m{hint}\x1b[0m"))
        } else {
            Cow::Borrowed(hint)
        }
    }

    fn highlight_prompt<'b, 's: 'b, 'p: 'b>(&'s self, prompt: &'p str, default: bool) -> Cow<'b, str> {
        if self.color && default {
            Cow::Owned(format!("\x1b[1;32m{prompt}\x1b[0m"))
        } else {
            Cow::Borrowed(prompt)
        }
    }
}

impl Validator for ChatHelper {}
impl rustyline::Helper for ChatHelper {}

/// What one line added to the message being typed.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// A complete input: the message text, and the form to keep in the history.
    Done { text: String, history: String },
    /// The input goes on (inside a `"""` block or after a trailing `\`).
    More,
}

/// Gathers lines into messages: `"""` opens a block closed by a line ending in `"""`;
/// a line ending in `\` continues on the next. A whole block recalled from the history
/// (one entry with newlines) is complete by itself.
#[derive(Debug, Default)]
pub struct Assembler {
    pending: Option<(bool, String)>,
}

const FENCE: &str = "\"\"\"";

impl Assembler {
    /// Whether a message is half-typed.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Forgets a half-typed message.
    pub fn clear(&mut self) {
        self.pending = None;
    }

    pub fn push(&mut self, line: &str) -> Step {
        match self.pending.take() {
            None => {
                if let Some(rest) = line.trim_start().strip_prefix(FENCE) {
                    if let Some(body) = rest.trim_end().strip_suffix(FENCE) {
                        return done_block(body);
                    }
                    self.pending = Some((true, rest.to_owned()));
                    return Step::More;
                }
                if let Some(head) = line.strip_suffix('\\') {
                    self.pending = Some((false, head.to_owned()));
                    return Step::More;
                }
                let text = line.trim().to_owned();
                Step::Done { history: text.clone(), text }
            }
            Some((true, mut body)) => {
                body.push('\n');
                match line.trim_end().strip_suffix(FENCE) {
                    Some(last) => {
                        body.push_str(last);
                        done_block(&body)
                    }
                    None => {
                        body.push_str(line);
                        self.pending = Some((true, body));
                        Step::More
                    }
                }
            }
            Some((false, mut body)) => {
                body.push('\n');
                match line.strip_suffix('\\') {
                    Some(head) => {
                        body.push_str(head);
                        self.pending = Some((false, body));
                        Step::More
                    }
                    None => {
                        body.push_str(line);
                        done_block(&body)
                    }
                }
            }
        }
    }
}

/// A finished block: the text without the blank first/last lines the fences leave; kept
/// in the history as one fenced entry, so that recalling it sends the same text.
fn done_block(body: &str) -> Step {
    let text = body.strip_prefix('\n').unwrap_or(body);
    let text = text.strip_suffix('\n').unwrap_or(text).to_owned();
    Step::Done { history: format!("{FENCE}\n{text}\n{FENCE}"), text }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(lines: &[&str]) -> Vec<Step> {
        let mut a = Assembler::default();
        lines.iter().map(|l| a.push(l)).collect()
    }

    fn done(text: &str, history: &str) -> Step {
        Step::Done { text: text.into(), history: history.into() }
    }

    #[test]
    fn lines_blocks_and_continuations() {
        assert_eq!(feed(&["  hello  "]), [done("hello", "hello")]);
        let fenced = "\"\"\"\na\n  b\n\"\"\"";
        assert_eq!(feed(&["\"\"\"", "a", "  b", "\"\"\""]), [Step::More, Step::More, Step::More, done("a\n  b", fenced)]);
        assert_eq!(feed(&["\"\"\"a", "b\"\"\""]), [Step::More, done("a\nb", "\"\"\"\na\nb\n\"\"\"")]);
        assert_eq!(feed(&["\"\"\"one line\"\"\""]), [done("one line", "\"\"\"\none line\n\"\"\"")]);
        assert_eq!(feed(&["a\\", "b\\", "c"]), [Step::More, Step::More, done("a\nb\nc", "\"\"\"\na\nb\nc\n\"\"\"")]);
        // A block recalled from the history is one line with newlines: complete at once.
        assert_eq!(feed(&[fenced]), [done("a\n  b", fenced)]);
    }
}
