//! The simulator's input language, parsed without touching anything: a plain line is a
//! message, a line starting with `/` a command. Bad input is an error naming what was wrong,
//! with a suggestion for a mistyped command.

use std::time::Duration;

/// One line of input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A message from the current participant into the current chat.
    Say(String),
    Chats,
    Chat(String),
    As(String),
    NewDm(String),
    NewGroup {
        name: String,
        members: Vec<String>,
    },
    Attach {
        path: String,
        caption: String,
    },
    React {
        kind: String,
        nth: usize,
    },
    Pairing,
    Approve(String),
    Wait(Duration),
    Why,
    History(usize),
    Help,
    Quit,
    /// An empty line or a comment (`# …` in a script).
    Nothing,
}

/// Every command, for `/help`, suggestions and tab completion.
pub const COMMANDS: &[(&str, &str)] = &[
    ("/chats", "list the chats (* marks the current one)"),
    ("/chat", "<id|name>: switch to a chat"),
    ("/as", "<handle|name>: type as this person"),
    ("/new", "dm <handle> | group <name> <handles…>: start a chat"),
    ("/attach", "<path> [caption]: send a file"),
    ("/react", "<love|like|dislike|laugh|emphasis|question> [n]: a tapback on the n-th last message (1 = the last)"),
    ("/pairing", "pending pairing requests"),
    ("/approve", "<code>: approve a pairing request (the word <code> itself: the last code sent)"),
    ("/wait", "<duration>: move the gateway's clock ahead (30s, 61m, 2h, 1h30m)"),
    ("/why", "why the last message was or was not answered"),
    ("/history", "[n]: the last n messages of this chat (default 10)"),
    ("/help", "this list"),
    ("/quit", "leave (Ctrl-D too)"),
];

const REACTIONS: &[&str] = &["love", "like", "dislike", "laugh", "emphasis", "question"];

/// Parses `30s`, `61m`, `2h`, `1h30m`, `1d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("not a duration: {s:?} (write 30s, 61m, 2h or 1h30m)");
    let mut total = 0u64;
    let mut num = String::new();
    let mut any = false;
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().map_err(|_| bad())?;
        num.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        total = total
            .checked_add(n.checked_mul(unit).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        any = true;
    }
    if !num.is_empty() || !any {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// The closest command to a mistyped one (edit distance at most 2).
pub fn suggest(word: &str) -> Option<&'static str> {
    COMMANDS
        .iter()
        .map(|(c, _)| (*c, crate::config::edit_distance(word, c)))
        .filter(|(_, d)| *d <= 2)
        // A tie goes to the command of the length typed (`/chta` is `/chat`, not `/chats`).
        .min_by_key(|(c, d)| (*d, c.len().abs_diff(word.len())))
        .map(|(c, _)| c)
}

/// Parses one line.
pub fn parse(line: &str) -> Result<Command, String> {
    let t = line.trim_end_matches(['\r', '\n']);
    if t.trim().is_empty() || t.trim_start().starts_with('#') {
        return Ok(Command::Nothing);
    }
    if !t.starts_with('/') {
        return Ok(Command::Say(t.to_string()));
    }
    let (word, rest) = match t.split_once(char::is_whitespace) {
        Some((w, r)) => (w, r.trim()),
        None => (t, ""),
    };
    let need = |what: &str| -> Result<String, String> {
        if rest.is_empty() {
            Err(format!("{word} needs {what}"))
        } else {
            Ok(rest.to_string())
        }
    };
    Ok(match word {
        "/chats" => Command::Chats,
        "/chat" => Command::Chat(need("a chat id or name")?),
        "/as" => Command::As(need("a handle or a name")?),
        "/new" => {
            let mut parts = rest.split_whitespace();
            match parts.next() {
                Some("dm") => match parts.next() {
                    Some(h) => Command::NewDm(h.to_string()),
                    None => return Err("/new dm needs a handle, as in /new dm +15550100001".into()),
                },
                Some("group") => {
                    let name = parts.next().ok_or("/new group needs a name and members")?;
                    let members: Vec<String> = parts.map(str::to_string).collect();
                    if members.is_empty() {
                        return Err(format!(
                            "/new group {name} needs at least one member handle"
                        ));
                    }
                    Command::NewGroup {
                        name: name.to_string(),
                        members,
                    }
                }
                _ => return Err("/new takes dm <handle> or group <name> <handles…>".into()),
            }
        }
        "/attach" => {
            let all = need("a file path")?;
            let (path, caption) = match all.split_once(char::is_whitespace) {
                Some((p, c)) => (p.to_string(), c.trim().to_string()),
                None => (all, String::new()),
            };
            Command::Attach { path, caption }
        }
        "/react" => {
            let mut parts = rest.split_whitespace();
            let kind = parts
                .next()
                .ok_or_else(|| format!("/react needs a kind: {}", REACTIONS.join(", ")))?;
            if !REACTIONS.contains(&kind) {
                return Err(format!(
                    "unknown tapback {kind:?}: use {}",
                    REACTIONS.join(", ")
                ));
            }
            let nth = match parts.next() {
                None => 1,
                Some(n) => n.parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    format!("/react: {n:?} is not a position (1 = the last message)")
                })?,
            };
            Command::React {
                kind: kind.to_string(),
                nth,
            }
        }
        "/pairing" => Command::Pairing,
        "/approve" => Command::Approve(need("a pairing code")?),
        "/wait" => Command::Wait(parse_duration(&need("a duration such as 61m")?)?),
        "/why" => Command::Why,
        "/history" => Command::History(if rest.is_empty() {
            10
        } else {
            rest.parse()
                .map_err(|_| format!("/history takes a number, not {rest:?}"))?
        }),
        "/help" | "/?" => Command::Help,
        "/quit" | "/exit" => Command::Quit,
        other => {
            let hint = suggest(other)
                .map(|s| format!(" (did you mean {s}?)"))
                .unwrap_or_default();
            return Err(format!("unknown command {other}{hint}; /help lists them"));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lines_and_commands() {
        assert_eq!(parse("hello there"), Ok(Command::Say("hello there".into())));
        assert_eq!(parse("  "), Ok(Command::Nothing));
        assert_eq!(parse("# a comment"), Ok(Command::Nothing));
        assert_eq!(parse("/chat Family"), Ok(Command::Chat("Family".into())));
        assert_eq!(parse("/as Mom"), Ok(Command::As("Mom".into())));
        assert_eq!(
            parse("/new dm +15550100001"),
            Ok(Command::NewDm("+15550100001".into()))
        );
        assert_eq!(
            parse("/new group Book +1 +2"),
            Ok(Command::NewGroup {
                name: "Book".into(),
                members: vec!["+1".into(), "+2".into()]
            })
        );
        assert_eq!(
            parse("/attach /tmp/a.jpg look at this"),
            Ok(Command::Attach {
                path: "/tmp/a.jpg".into(),
                caption: "look at this".into()
            })
        );
        assert_eq!(
            parse("/react love"),
            Ok(Command::React {
                kind: "love".into(),
                nth: 1
            })
        );
        assert_eq!(
            parse("/react laugh 3"),
            Ok(Command::React {
                kind: "laugh".into(),
                nth: 3
            })
        );
        assert_eq!(
            parse("/wait 61m"),
            Ok(Command::Wait(Duration::from_secs(3660)))
        );
        assert_eq!(parse("/history"), Ok(Command::History(10)));
        assert_eq!(parse("/quit"), Ok(Command::Quit));
    }

    #[test]
    fn bad_input_says_what_and_suggests() {
        assert_eq!(
            parse("/chta 1").unwrap_err(),
            "unknown command /chta (did you mean /chat?); /help lists them"
        );
        assert!(parse("/frobnicate")
            .unwrap_err()
            .starts_with("unknown command /frobnicate; "));
        assert!(parse("/react hug")
            .unwrap_err()
            .contains("unknown tapback \"hug\""));
        assert!(parse("/react love 0")
            .unwrap_err()
            .contains("not a position"));
        assert!(parse("/wait soon")
            .unwrap_err()
            .contains("not a duration: \"soon\""));
        assert!(parse("/chat")
            .unwrap_err()
            .contains("/chat needs a chat id or name"));
        assert!(parse("/new group Book")
            .unwrap_err()
            .contains("at least one member"));
    }

    #[test]
    fn durations() {
        for (s, secs) in [
            ("30s", 30),
            ("61m", 3660),
            ("2h", 7200),
            ("1h30m", 5400),
            ("1d", 86400),
        ] {
            assert_eq!(parse_duration(s), Ok(Duration::from_secs(secs)), "{s}");
        }
        for bad in ["", "5", "m", "5x", "1h30"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        /// Any line parses to something or to an error; nothing panics, and a line without a
        /// leading slash is always a message as typed.
        #[test]
        fn any_line_parses(line in "\\PC{0,40}") {
            let r = parse(&line);
            if !line.starts_with('/') && !line.trim().is_empty() && !line.trim_start().starts_with('#') {
                prop_assert_eq!(r, Ok(Command::Say(line.clone())));
            }
        }

        #[test]
        fn written_durations_round_trip(h in 0u64..48, m in 0u64..60, s in 0u64..60) {
            prop_assume!(h + m + s > 0);
            let text = format!("{}{}{}",
                if h > 0 { format!("{h}h") } else { String::new() },
                if m > 0 { format!("{m}m") } else { String::new() },
                if s > 0 { format!("{s}s") } else { String::new() });
            prop_assert_eq!(parse_duration(&text), Ok(Duration::from_secs(h * 3600 + m * 60 + s)));
        }
    }
}
