//! The `fake-imsg` command line: `rpc` and `tap` (owned by their modules), imsg's `status`,
//! `chats` and `--version` (`crate::imsg_cli`), plus the world controls `world build|chats`,
//! `inject` and `sent`. Parsing only; the work is in
//! `crate::world` and `crate::payload`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::payload::{self, Level, MessageOpts};
use crate::world::{InjectSpec, NewChat, World, WorldError};

/// An emulator of the macOS `imsg rpc` CLI over a chat.db-shaped world.
#[derive(Debug, Parser)]
#[command(name = "fake-imsg", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve JSON-RPC over stdin/stdout, like `imsg rpc`.
    Rpc(crate::rpc::RpcArgs),
    /// Print imsg's status report (`--json`: one JSON object, with `rpc_methods`).
    Status(crate::imsg_cli::StatusArgs),
    /// List recent chats like `imsg chats` (`--json`: one chat object per line).
    Chats(crate::imsg_cli::ChatsArgs),
    /// Record a real `imsg rpc` session: pass stdio through and log every line.
    Tap(crate::tap::TapArgs),
    /// Build or inspect a world (a chat.db-shaped SQLite file).
    #[command(subcommand)]
    World(WorldCommand),
    /// Append a message row to a world and print it as one JSON line.
    ///
    /// Writes the row as Messages would on receipt (handle, chat join, attachments copied
    /// into the world's Attachments folder) and prints the v1 message object with
    /// attachments and reactions filled (tapback rows carry the reaction fields).
    /// Unknown chat ids, missing files and unknown reaction targets exit with code 2.
    ///
    /// Examples:
    ///   fake-imsg inject --db world.db --chat-id 1 --from +15551234567 --text "hi"
    ///   fake-imsg inject --db world.db --new-chat --from +15557654321 --text "new DM"
    ///   fake-imsg inject --db world.db --new-chat --group --name "Trip" --participant +15550000001
    ///       --participant +15550000002 --from +15550000001 --text "hello all"
    ///   fake-imsg inject --db world.db --chat-id 1 --from +15551234567 --reaction love --to GUID
    #[command(verbatim_doc_comment)]
    Inject(InjectArgs),
    /// Print outgoing (is_from_me = 1) messages, one JSON line each, oldest first.
    Sent(SentArgs),
}

#[derive(Debug, Subcommand)]
pub enum WorldCommand {
    /// Compile a JSON5 scenario into a world file; prints a one-line summary.
    Build(BuildArgs),
    /// Print every chat of a world, one JSON line each (the v1 chat object).
    Chats(DbArg),
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The scenario file (JSON5; see fixtures/worlds/ and the README).
    pub scenario: PathBuf,
    /// The world file to write. Attachments go to an `Attachments/` folder beside it.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace `--out` (and its -wal/-shm files) if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct DbArg {
    /// The world file.
    #[arg(long)]
    pub db: PathBuf,
}

#[derive(Debug, Args)]
pub struct InjectArgs {
    /// The world file.
    #[arg(long)]
    pub db: PathBuf,
    /// The chat (chat.ROWID) to write into. Unknown ids are an error (exit 2).
    #[arg(long)]
    pub chat_id: Option<i64>,
    /// The sender's handle (+15551234567 or a@b.com). Optional with --from-me.
    #[arg(long, default_value = "")]
    pub from: String,
    /// The message text (may be empty).
    #[arg(long, default_value = "")]
    pub text: String,
    /// A file to attach; copied into the world's Attachments folder. Repeatable.
    #[arg(long = "attach")]
    pub attach: Vec<PathBuf>,
    /// Write a tapback instead of a message: love, like, dislike, laugh, emphasis, question,
    /// custom:<emoji>; prefix with '-' to remove one. Needs --to.
    #[arg(long, requires = "to", allow_hyphen_values = true)]
    pub reaction: Option<String>,
    /// The guid of the message the tapback targets.
    #[arg(long, requires = "reaction")]
    pub to: Option<String>,
    /// Make this an inline reply to the message with this guid.
    #[arg(long)]
    pub reply_to: Option<String>,
    /// Create the chat if needed. Without --group: the DM with --from (or the first
    /// --participant) on --service, reused if it exists.
    #[arg(long)]
    pub new_chat: bool,
    /// With --new-chat: create a group chat (--participant..., --from is added).
    #[arg(long, requires = "new_chat")]
    pub group: bool,
    /// With --new-chat: the group's display name.
    #[arg(long, requires = "new_chat")]
    pub name: Option<String>,
    /// With --new-chat: a participant handle. Repeatable.
    #[arg(long = "participant", requires = "new_chat")]
    pub participants: Vec<String>,
    /// With --new-chat: the chat's service.
    #[arg(long, default_value = "iMessage", value_parser = ["iMessage", "SMS"])]
    pub service: String,
    /// Write an outgoing row (is_from_me = 1), e.g. a mirror of something the gateway sent.
    #[arg(long)]
    pub from_me: bool,
    /// Write the row without its chat_message_join (a row not yet joined to its chat).
    #[arg(long)]
    pub unjoined: bool,
    /// The message date (RFC 3339, e.g. 2026-01-15T18:04:05Z); default now.
    #[arg(long)]
    pub date: Option<String>,
}

#[derive(Debug, Args)]
pub struct SentArgs {
    /// The world file.
    #[arg(long)]
    pub db: PathBuf,
    /// Only rows with ROWID greater than this.
    #[arg(long, default_value_t = 0)]
    pub since_rowid: i64,
}

/// Parses argv and runs the command; returns the exit code. `exit` is how `rpc`'s faults
/// end the process mid-run: the binary hands in `std::process::exit`, and nothing in the
/// library ends a process on its own.
pub fn main(exit: fn(i32) -> !) -> i32 {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // imsg answers `--version` anywhere in argv with the bare version, before any parsing.
    if let Some(v) = crate::imsg_cli::bare_version(&args) {
        println!("{v}");
        return 0;
    }
    let cli = Cli::parse_from(args);
    let result = match cli.command {
        Command::Rpc(args) => crate::rpc::run_cli(args, exit),
        Command::Status(args) => crate::imsg_cli::status_cli(args),
        Command::Chats(args) => crate::imsg_cli::chats_cli(args),
        Command::Tap(args) => crate::tap::run_cli(args),
        Command::World(cmd) => world_cli(cmd),
        Command::Inject(args) => inject_cli(args),
        Command::Sent(args) => sent_cli(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("fake-imsg: {err:#}");
            // Bad input the caller named (unknown chat, missing file, bad scenario) is a
            // usage error; anything else is a failure.
            match err.downcast_ref::<WorldError>() {
                Some(
                    WorldError::NotFound(_) | WorldError::Invalid(_) | WorldError::Scenario(_),
                ) => 2,
                _ => 1,
            }
        }
    }
}

fn world_cli(cmd: WorldCommand) -> anyhow::Result<i32> {
    match cmd {
        WorldCommand::Build(a) => {
            if a.force && a.out.exists() {
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = a.out.clone().into_os_string();
                    p.push(suffix);
                    let _ = std::fs::remove_file(PathBuf::from(p));
                }
            } else if a.out.exists() {
                return Err(WorldError::Invalid(format!(
                    "{} already exists (use --force to replace it)",
                    a.out.display()
                ))
                .into());
            }
            let world = World::build_from_scenario_file(&a.scenario, &a.out)?;
            let s = world.summary()?;
            println!(
                "built {}: {} chats, {} messages, {} attachments, {} reactions",
                world.path().display(),
                s.chats,
                s.messages,
                s.attachments,
                s.reactions
            );
            Ok(0)
        }
        WorldCommand::Chats(a) => {
            let world = World::open(&a.db)?;
            for c in world.all_chats()? {
                println!("{}", payload::chat_json(&c, Level::V1));
            }
            Ok(0)
        }
    }
}

fn inject_cli(a: InjectArgs) -> anyhow::Result<i32> {
    let world = World::open(&a.db)?;
    let date = match &a.date {
        Some(d) => Some(payload::parse_iso8601(d).ok_or_else(|| {
            WorldError::Invalid(format!("bad --date {d:?}: expected RFC 3339 with a zone"))
        })?),
        None => None,
    };
    let spec = InjectSpec {
        chat_id: a.chat_id,
        new_chat: a.new_chat.then(|| NewChat {
            group: a.group,
            display_name: a.name.clone(),
            participants: a.participants.clone(),
            service: a.service.clone(),
        }),
        from: a.from,
        text: a.text,
        attachments: a.attach,
        reaction: a.reaction.zip(a.to),
        reply_to_guid: a.reply_to,
        is_from_me: a.from_me,
        date,
        unjoined: a.unjoined,
    };
    let m = world.inject(&spec)?;
    println!(
        "{}",
        payload::message_json(&world, &m, None, Level::V1, &cli_opts())
    );
    Ok(0)
}

fn sent_cli(a: SentArgs) -> anyhow::Result<i32> {
    let world = World::open(&a.db)?;
    for m in world.sent(a.since_rowid)? {
        println!(
            "{}",
            payload::message_json(&world, &m, None, Level::V1, &cli_opts())
        );
    }
    Ok(0)
}

fn cli_opts() -> MessageOpts {
    MessageOpts {
        attachments: true,
        include_reactions: true,
        reaction_fields: true,
    }
}
