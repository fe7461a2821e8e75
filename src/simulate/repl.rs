//! The interactive session: rustyline for line editing, history and tab completion of
//! commands, chat names and people. The editor runs on its own thread (it blocks on the
//! terminal) and asks for the next line only after the gateway has dealt with the last one,
//! so replies never land in the middle of what a person is typing.

use std::sync::{Arc, Mutex};

use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};
use tokio::sync::mpsc;

use super::command::{self, Command};
use super::render::{Event, Renderer};
use super::Session;

struct Complete {
    words: Arc<Mutex<Vec<String>>>,
}

impl Completer for Complete {
    type Candidate = String;
    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let start = line[..pos]
            .rfind(char::is_whitespace)
            .map(|i| i + 1)
            .unwrap_or(0);
        let word = &line[start..pos];
        let first = start == 0;
        let words = self.words.lock().unwrap();
        let found = words
            .iter()
            .filter(|w| {
                (first || !w.starts_with('/')) && w.to_lowercase().starts_with(&word.to_lowercase())
            })
            .cloned()
            .collect();
        Ok((start, found))
    }
}

impl Hinter for Complete {
    type Hint = String;
}
impl Highlighter for Complete {}
impl Validator for Complete {}
impl Helper for Complete {}

enum Input {
    Line(String),
    Eof,
}

pub async fn run(s: &mut Session) -> i32 {
    let mut out = Renderer::terminal();
    out.emit(Event::Output(format!(
        "Simulating {} chat(s) with the real gateway and fake-imsg. You are {} in {}.\nType a message, or /help for commands; Ctrl-D or /quit leaves.",
        s.chats.len(),
        s.name_of(&s.as_handle),
        s.label(s.current)
    )));
    let words = Arc::new(Mutex::new(s.words()));
    let (line_tx, mut line_rx) = mpsc::unbounded_channel::<Input>();
    let (prompt_tx, prompt_rx) = std::sync::mpsc::channel::<Option<String>>();
    let helper_words = words.clone();
    let editor = std::thread::spawn(move || {
        let mut ed = match Editor::<Complete, rustyline::history::DefaultHistory>::new() {
            Ok(e) => e,
            Err(e) => {
                eprintln!("error: cannot open the terminal: {e}");
                let _ = line_tx.send(Input::Eof);
                return;
            }
        };
        ed.set_helper(Some(Complete {
            words: helper_words,
        }));
        while let Ok(Some(prompt)) = prompt_rx.recv() {
            match ed.readline(&prompt) {
                Ok(l) => {
                    if !l.trim().is_empty() {
                        let _ = ed.add_history_entry(l.as_str());
                    }
                    if line_tx.send(Input::Line(l)).is_err() {
                        return;
                    }
                }
                // Ctrl-C drops the line being typed, as in a shell.
                Err(ReadlineError::Interrupted) => {
                    if line_tx.send(Input::Line(String::new())).is_err() {
                        return;
                    }
                }
                Err(_) => {
                    let _ = line_tx.send(Input::Eof);
                    return;
                }
            }
        }
    });
    loop {
        if prompt_tx.send(Some(s.prompt())).is_err() {
            break;
        }
        let Some(Input::Line(line)) = line_rx.recv().await else {
            break;
        };
        match command::parse(&line) {
            Ok(Command::Nothing) => {}
            Ok(cmd) => {
                if !s.execute(cmd, &mut out).await {
                    break;
                }
            }
            Err(e) => out.emit(Event::Output(e)),
        }
        *words.lock().unwrap() = s.words();
    }
    let _ = prompt_tx.send(None);
    drop(prompt_tx);
    let _ = editor.join();
    out.emit(Event::Output("bye".into()));
    0
}
