//! How a simulated conversation is shown: a person's message, each chunk the assistant sent
//! (one bubble per chunk, as a phone shows them), the gateway's policy decisions (dimmer), and
//! command output. Colour only on a terminal and never with `NO_COLOR`; `--json` prints one
//! event per line. Nothing here prints a wall-clock time or a random id, so a scripted
//! transcript is the same on every run.

use std::io::Write;

use serde_json::json;

/// One thing that happened in a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message a person typed into a chat.
    Typed {
        chat: String,
        from: String,
        text: String,
    },
    /// One chunk the assistant sent.
    Reply {
        chat: String,
        chunk: usize,
        of: usize,
        text: String,
    },
    /// Why a message was not answered, or that a pairing code went out.
    Policy { chat: String, text: String },
    /// A command as written in a script.
    Command(String),
    /// What a command printed.
    Output(String),
}

/// Writes events to stdout.
pub struct Renderer {
    json: bool,
    colour: bool,
    /// The interactive session already shows what was typed at its prompt.
    echo_typed: bool,
}

const DIM: &str = "\x1b[2m";
const BOLD: &str = "\x1b[1m";
const CYAN: &str = "\x1b[36m";
const RESET: &str = "\x1b[0m";

/// Continuation lines of a multi-line text, indented under the bubble.
fn indent(text: &str) -> String {
    text.split('\n')
        .enumerate()
        .map(|(i, l)| {
            if i == 0 || l.is_empty() {
                l.to_string()
            } else {
                format!("    {l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Renderer {
    /// A transcript: plain text (or JSON lines), every event shown.
    pub fn plain(json: bool) -> Renderer {
        Renderer {
            json,
            colour: false,
            echo_typed: true,
        }
    }

    /// A terminal session: colour when stdout is a terminal and `NO_COLOR` is unset.
    pub fn terminal() -> Renderer {
        use std::io::IsTerminal;
        let colour = std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        Renderer {
            json: false,
            colour,
            echo_typed: true,
        }
    }

    /// The text of one event, without a newline.
    pub fn line(&self, e: &Event) -> String {
        if self.json {
            return match e {
                Event::Typed { chat, from, text } => {
                    json!({"event": "typed", "chat": chat, "from": from, "text": text})
                }
                Event::Reply {
                    chat,
                    chunk,
                    of,
                    text,
                } => {
                    json!({"event": "reply", "chat": chat, "chunk": chunk, "of": of, "text": text})
                }
                Event::Policy { chat, text } => {
                    json!({"event": "policy", "chat": chat, "text": text})
                }
                Event::Command(c) => json!({"event": "command", "text": c}),
                Event::Output(t) => json!({"event": "output", "text": t}),
            }
            .to_string();
        }
        let (dim, bold, cyan, reset) = if self.colour {
            (DIM, BOLD, CYAN, RESET)
        } else {
            ("", "", "", "")
        };
        match e {
            Event::Typed { chat, from, text } => {
                format!("[{chat}] {bold}{from}{reset}: {}", indent(text))
            }
            Event::Reply {
                chat,
                chunk,
                of,
                text,
            } => {
                let part = if *of > 1 {
                    format!(" ({chunk}/{of})")
                } else {
                    String::new()
                };
                format!("[{chat}] {cyan}assistant{part}{reset}: {}", indent(text))
            }
            Event::Policy { chat, text } => format!("{dim}  · [{chat}] {text}{reset}"),
            Event::Command(c) => format!("> {c}"),
            Event::Output(t) => t.clone(),
        }
    }

    pub fn emit(&mut self, e: Event) {
        if !self.echo_typed && matches!(e, Event::Typed { .. }) {
            return;
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", self.line(&e));
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_are_stable_and_json_is_one_object_per_event() {
        let r = Renderer::plain(false);
        assert_eq!(
            r.line(&Event::Reply {
                chat: "Family".into(),
                chunk: 2,
                of: 3,
                text: "a\nb".into()
            }),
            "[Family] assistant (2/3): a\n    b"
        );
        assert_eq!(
            r.line(&Event::Policy {
                chat: "DM Mom".into(),
                text: "x".into()
            }),
            "  · [DM Mom] x"
        );
        let j = Renderer::plain(true);
        let v: serde_json::Value = serde_json::from_str(&j.line(&Event::Typed {
            chat: "F".into(),
            from: "Mom".into(),
            text: "hi".into(),
        }))
        .unwrap();
        assert_eq!(
            v,
            json!({"event": "typed", "chat": "F", "from": "Mom", "text": "hi"})
        );
    }
}
