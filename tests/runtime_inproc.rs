//! The runtime's promises, in process and under tokio's paused clock: the real gateway
//! (`gateway::run_with`: supervisor, journal, sessions, sends) against an in-memory imsg
//! (`support/mem_imsg.rs`) through the connector seam. Minutes of outage and thousands of
//! kills run in seconds of wall time, and every check reads what the imsg's world holds:
//! the from-me rows the gateway's sends wrote, per chat.

#[path = "support/mem_imsg.rs"]
mod mem_imsg;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use imsg_gateway::config::Config;
use imsg_gateway::gateway::{run_with, ConnectorFor, GatewayOptions};
use imsg_gateway::imsg::{Connector, Link, SpawnError};
use imsg_gateway::state::{JournalStatus, Store};
use mem_imsg::{Faults, HistoryFault, Level, MemImsg};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A state dir on tmpfs when there is one: the journal's fsyncs cost nothing there, and
/// what is tested is the order of commits, not the disk.
fn state_dir() -> tempfile::TempDir {
    if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

fn config(state: &Path, extra: &str) -> Config {
    let text = format!(
        r#"{{ imessage: {{ cliPath: "mem-imsg", dmPolicy: "open", allowFrom: ["*"],
                          groups: {{ "*": {{ requireMention: false }} }} {extra} }},
             agent: {{ kind: "echo" }}, state: {{ dir: "{}" }} }}"#,
        state.display()
    );
    Config::from_json5_str(&text, "test").expect("test config")
}

struct Gw {
    task: JoinHandle<anyhow::Result<()>>,
    stop: watch::Sender<bool>,
}

impl Gw {
    fn start(cfg: Config, imsg: &MemImsg) -> Gw {
        let opts = GatewayOptions {
            request_timeout: Duration::from_secs(2),
            ..GatewayOptions::default()
        };
        let conn = imsg.connector();
        let connect: ConnectorFor = Arc::new(move |_, _| conn.clone());
        let (stop, rx) = watch::channel(false);
        Gw {
            task: tokio::spawn(run_with(cfg, opts, connect, rx)),
            stop,
        }
    }

    /// Starts it and waits until it watches imsg.
    async fn watching(cfg: Config, imsg: &MemImsg) -> Gw {
        let gw = Gw::start(cfg, imsg);
        until("the watch", Duration::from_secs(30), || {
            subscribed(imsg) > 0
        })
        .await;
        gw
    }

    /// Graceful stop; the gateway must exit cleanly.
    async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.unwrap().expect("the gateway exits cleanly");
    }

    /// Like SIGKILL: the gateway's futures are dropped wherever they are.
    async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Polls `cond` every 50 ms of (paused, auto-advancing) time, for up to `limit`.
async fn until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} (virtual) waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn replies_in(imsg: &MemImsg, chat: i64) -> Vec<String> {
    imsg.sent()
        .into_iter()
        .filter(|r| r.chat_id == chat)
        .map(|r| r.text)
        .collect()
}

fn subscribed(imsg: &MemImsg) -> usize {
    imsg.requests()
        .iter()
        .filter(|r| r["method"] == "watch.subscribe")
        .count()
}

#[tokio::test(start_paused = true)]
async fn replies_waiting_through_a_ten_minute_outage_are_delivered_once_afterwards() {
    let dir = state_dir();
    let imsg = MemImsg::new(Level::V1, 1);
    let gw = Gw::watching(config(dir.path(), ""), &imsg).await;
    imsg.inject(1, false, "+15550100001", "before");
    until("the first reply", Duration::from_secs(30), || {
        replies_in(&imsg, 1).len() == 1
    })
    .await;
    // imsg comes up and watches, but for five minutes every send kills it, then for five
    // more it stops reading as soon as it has answered `initialize` (sends hit a broken
    // pipe): the reply waits, reconnect after reconnect, for ten minutes.
    imsg.set_faults(Faults {
        die_on_send: true,
        ..Faults::default()
    });
    // Replies wait in DMs (one session) and in two groups (a session each).
    imsg.inject(1, false, "+15550100001", "during the outage");
    imsg.inject(20, true, "+15550100020", "group during the outage");
    tokio::time::sleep(Duration::from_secs(150)).await;
    imsg.inject(2, false, "+15550100002", "a DM in the outage");
    tokio::time::sleep(Duration::from_secs(150)).await;
    imsg.set_faults(Faults {
        deaf_after_initialize: true,
        ..Faults::default()
    });
    imsg.inject(1, false, "+15550100001", "still out?");
    imsg.inject(
        21,
        true,
        "+15550100021",
        "another group, late in the outage",
    );
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert_eq!(imsg.sent_count(), 1, "nothing more got through");
    assert!(imsg.connections() > 20, "imsg was reconnected throughout");
    imsg.set_faults(Faults::default());
    until("every waiting reply", Duration::from_secs(60), || {
        imsg.sent_count() == 6
    })
    .await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        replies_in(&imsg, 1),
        vec![
            "echo: before",
            "echo: during the outage",
            "echo: still out?"
        ]
    );
    assert_eq!(replies_in(&imsg, 2), vec!["echo: a DM in the outage"]);
    assert_eq!(replies_in(&imsg, 20), vec!["echo: group during the outage"]);
    assert_eq!(
        replies_in(&imsg, 21),
        vec!["echo: another group, late in the outage"]
    );
    assert_eq!(imsg.sent_count(), 6, "each once");
    gw.stop().await;
}

/// Rows from me (the gateway's own replies coming back through the watch, and what I send
/// from my other devices) are never answered and leave nothing in the journal, which keeps
/// what others sent; the cursor still moves past them, so a restart does not read them again.
#[tokio::test(start_paused = true)]
async fn rows_from_me_move_the_cursor_but_are_not_journaled() {
    let dir = state_dir();
    let imsg = MemImsg::new(Level::V1, 3);
    let gw = Gw::watching(config(dir.path(), ""), &imsg).await;
    imsg.inject(1, false, "+15550100001", "hello");
    until("the reply", Duration::from_secs(30), || {
        replies_in(&imsg, 1).len() == 1
    })
    .await;
    let mine = imsg.inject_from_me(1, "sent from my phone");
    let store = Store::open(dir.path()).unwrap();
    until(
        "the cursor past my own row",
        Duration::from_secs(30),
        || store.cursor("default").unwrap() >= mine,
    )
    .await;
    gw.stop().await;
    let counts = store.counts(Some("default")).unwrap();
    assert_eq!(
        counts,
        BTreeMap::from([("answered".to_string(), 1)]),
        "only the message from the other party is journaled"
    );
    assert_eq!(
        replies_in(&imsg, 1),
        vec!["echo: hello", "sent from my phone"],
        "my own row is not answered"
    );
}

#[tokio::test(start_paused = true)]
async fn with_no_cursor_yet_a_restart_replays_what_arrived_meanwhile() {
    let dir = state_dir();
    let imsg = MemImsg::new(Level::V1, 2);
    imsg.inject(1, false, "+15550100001", "old history, never answered");
    let gw = Gw::watching(config(dir.path(), ""), &imsg).await;
    // Nothing journaled yet; imsg dies and a message arrives while it is away.
    imsg.set_faults(Faults {
        down: true,
        ..Faults::default()
    });
    imsg.kill();
    imsg.inject(2, false, "+15550100002", "while imsg was down");
    tokio::time::sleep(Duration::from_secs(5)).await;
    imsg.set_faults(Faults::default());
    until("the reply", Duration::from_secs(60), || {
        replies_in(&imsg, 2).len() == 1
    })
    .await;
    assert_eq!(replies_in(&imsg, 2), vec!["echo: while imsg was down"]);
    assert!(replies_in(&imsg, 1).is_empty(), "history is not answered");
    gw.stop().await;
    // And across a gateway restart before the first message: the tail was recorded.
    let store = Store::open_existing(dir.path()).unwrap().unwrap();
    assert!(store.cursor_opt("default").unwrap().is_some());
}

#[tokio::test(start_paused = true)]
async fn a_fresh_gateway_restarted_before_its_first_message_misses_nothing() {
    let dir = state_dir();
    let imsg = MemImsg::new(Level::Legacy, 3);
    imsg.inject(1, false, "+15550100001", "old");
    let gw = Gw::watching(config(dir.path(), ""), &imsg).await;
    gw.crash().await;
    imsg.kill();
    imsg.inject(1, false, "+15550100001", "while the gateway was down");
    let gw = Gw::start(config(dir.path(), ""), &imsg);
    until("the reply", Duration::from_secs(60), || {
        replies_in(&imsg, 1).len() == 1
    })
    .await;
    assert_eq!(
        replies_in(&imsg, 1),
        vec!["echo: while the gateway was down"]
    );
    gw.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_fresh_gateway_records_the_tail_even_when_a_chats_newest_row_is_unreadable() {
    for level in [Level::V1, Level::Legacy] {
        let dir = state_dir();
        let imsg = MemImsg::new(level, 7);
        imsg.inject(2, false, "+15550100002", "old history, never answered");
        imsg.inject_unreadable(1, "+15550100001");
        let gw = Gw::start(config(dir.path(), ""), &imsg);
        until(
            &format!("{level:?}: the watch"),
            Duration::from_secs(60),
            || subscribed(&imsg) > 0,
        )
        .await;
        gw.stop().await;
        assert!(
            replies_in(&imsg, 2).is_empty(),
            "{level:?}: history is not answered"
        );
        // The tail was recorded, so a restart replays what arrives meanwhile.
        let store = Store::open_existing(dir.path()).unwrap().unwrap();
        assert!(
            store.cursor_opt("default").unwrap().is_some(),
            "{level:?}: no cursor recorded"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_gateway_killed_mid_reply_sends_only_the_missing_chunks_after_a_restart() {
    killed_mid_reply(AfterCrash::Nothing).await;
}

#[tokio::test(start_paused = true)]
async fn the_history_check_reads_around_a_row_imsg_cannot_read() {
    // A row of the chat that imsg cannot read arrives while the gateway is down: the
    // history page the check reads fails on it, and the check reads around it instead
    // of giving the reply up.
    killed_mid_reply(AfterCrash::UnreadableRow).await;
}

#[tokio::test(start_paused = true)]
async fn the_history_check_reads_back_past_the_newest_hundred_rows() {
    // The chat moved on while the gateway was down (or resumed the reply behind a long
    // queue): its chunk is older than the newest page of history, and must still be found.
    killed_mid_reply(AfterCrash::Busy).await;
}

#[tokio::test(start_paused = true)]
async fn a_history_check_that_is_never_answered_gets_a_new_imsg_not_a_wedged_session() {
    // imsg answers its health checks but not the check's history read: the read times out,
    // the child is replaced, and the check runs again on the new one.
    killed_mid_reply(AfterCrash::HistoryUnanswered).await;
}

#[tokio::test(start_paused = true)]
async fn a_busy_or_unavailable_history_is_read_again_not_given_up() {
    killed_mid_reply(AfterCrash::HistoryBusy).await;
}

#[tokio::test(start_paused = true)]
async fn a_busy_answer_while_reading_back_past_the_newest_rows_is_read_again() {
    killed_mid_reply(AfterCrash::ReadBackBusy).await;
}

/// What happens in the chat between the crash and the restart.
enum AfterCrash {
    Nothing,
    UnreadableRow,
    Busy,
    /// imsg never answers the first history read after the restart.
    HistoryUnanswered,
    /// imsg is busy, then its database unavailable, for the first two history reads.
    HistoryBusy,
    /// `Busy`'s rows, and imsg busy for the read-back's first page.
    ReadBackBusy,
}

/// Rows sent from my phone, which the gateway neither answers nor counts as its own.
const FROM_MY_PHONE: &str = "from my phone";

async fn killed_mid_reply(after: AfterCrash) {
    for level in [Level::V1, Level::Legacy] {
        let dir = state_dir();
        let imsg = MemImsg::new(level, 4);
        // A 12-character limit: "echo: " + 30 characters is three chunks.
        let cfg = || config(dir.path(), ", textChunkLimit: 12");
        let gw = Gw::watching(cfg(), &imsg).await;
        // imsg carries out the second chunk's send and then freezes: the gateway dies
        // with chunk 2 on the wire, its outcome unknown to it.
        imsg.set_faults(Faults {
            freeze_after_sends: Some(2),
            ..Faults::default()
        });
        imsg.inject(5, false, "+15550100005", "aaaaa bbbbb ccccc ddddd");
        until("two chunks out", Duration::from_secs(30), || {
            replies_in(&imsg, 5).len() == 2
        })
        .await;
        gw.crash().await;
        imsg.kill();
        imsg.set_faults(Faults::default());
        match after {
            AfterCrash::Nothing => {}
            AfterCrash::UnreadableRow => {
                imsg.inject_unreadable(5, "+15550100005");
            }
            AfterCrash::Busy | AfterCrash::ReadBackBusy => {
                for i in 0..150 {
                    imsg.inject_from_me(5, &format!("{FROM_MY_PHONE} {i}"));
                }
            }
            AfterCrash::HistoryUnanswered | AfterCrash::HistoryBusy => {}
        }
        let history = match after {
            AfterCrash::HistoryUnanswered => vec![HistoryFault::Unanswered],
            AfterCrash::HistoryBusy => vec![HistoryFault::Busy, HistoryFault::Unavailable],
            AfterCrash::ReadBackBusy => vec![HistoryFault::Answered, HistoryFault::Busy],
            _ => Vec::new(),
        };
        let misanswered = history.len();
        imsg.set_faults(Faults {
            history,
            ..Faults::default()
        });
        let journal = Store::open_existing(dir.path()).unwrap().unwrap();
        let answering = journal
            .entries_with("default", JournalStatus::Answering)
            .unwrap();
        assert_eq!(answering.len(), 1, "{level:?}: caught mid-reply");
        // Acknowledgements are not waited for, so chunk 1's may not have landed either;
        // the history check after the restart settles whatever is missing.
        assert!(answering[0].sent <= 1, "chunk 2 was never acknowledged");
        let gw = Gw::start(cfg(), &imsg);
        let gateways = |imsg: &MemImsg| -> Vec<String> {
            replies_in(imsg, 5)
                .into_iter()
                .filter(|t| !t.starts_with(FROM_MY_PHONE))
                .collect()
        };
        until("the last chunk", Duration::from_secs(60), || {
            gateways(&imsg).len() >= 3
        })
        .await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let got = gateways(&imsg);
        assert_eq!(got.len(), 3, "{level:?}: each chunk exactly once: {got:?}");
        assert_eq!(got.concat().replace(' ', ""), "echo:aaaaabbbbbcccccddddd");
        let e = journal
            .entry("default", &imsg.rows()[0].guid)
            .unwrap()
            .unwrap();
        assert_eq!(e.status, JournalStatus::Answered, "{level:?}");
        assert!(
            imsg.faults().history.is_empty(),
            "{level:?}: all {misanswered} misanswered history reads were made"
        );
        gw.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn an_imsg_that_stops_answering_is_replaced_and_nothing_is_sent_twice() {
    let dir = state_dir();
    let imsg = MemImsg::new(Level::V1, 6);
    let gw = Gw::watching(config(dir.path(), ""), &imsg).await;
    // imsg carries out the first send and then answers nothing at all, health checks
    // included, until the gateway replaces it.
    imsg.set_faults(Faults {
        freeze_after_sends: Some(1),
        ..Faults::default()
    });
    imsg.inject(1, false, "+15550100001", "first");
    until("the first reply", Duration::from_secs(30), || {
        replies_in(&imsg, 1).len() == 1
    })
    .await;
    imsg.inject(1, false, "+15550100001", "second");
    until(
        "the reply from the replacement",
        Duration::from_secs(120),
        || replies_in(&imsg, 1).len() == 2,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(replies_in(&imsg, 1), vec!["echo: first", "echo: second"]);
    assert!(imsg.connections() >= 2, "the frozen imsg was replaced");
    gw.stop().await;
}

/// The bad row is journaled as skipped, unreadable, under its rowid, and counted in health.
fn assert_skipped_unreadable(dir: &Path, bad: i64, level: Level) {
    let store = Store::open_existing(dir).unwrap().unwrap();
    let e = store
        .entry("default", &format!("rowid:{bad}"))
        .unwrap()
        .unwrap_or_else(|| panic!("{level:?}: the bad row {bad} is journaled"));
    assert_eq!(e.status, JournalStatus::Skipped, "{level:?}");
    assert!(e.reason.unwrap().contains("unreadable"), "{level:?}");
    let health = store.health("default").unwrap().unwrap();
    assert_eq!(health.skipped_rows, 1, "{level:?}");
    assert_eq!(health.last_skipped_rowid, Some(bad), "{level:?}");
}

#[tokio::test(start_paused = true)]
async fn an_unreadable_row_is_skipped_loudly_and_the_account_goes_on() {
    for level in [Level::V1, Level::Legacy] {
        let dir = state_dir();
        let imsg = MemImsg::new(level, 5);
        let gw = Gw::watching(config(dir.path(), ""), &imsg).await;
        imsg.inject(1, false, "+15550100001", "first");
        until("the first reply", Duration::from_secs(30), || {
            replies_in(&imsg, 1).len() == 1
        })
        .await;
        let bad = imsg.inject_unreadable(1, "+15550100001");
        imsg.inject(1, false, "+15550100001", "after the bad row");
        until(
            &format!("{level:?}: the reply after the bad row"),
            Duration::from_secs(120),
            || replies_in(&imsg, 1).len() == 2,
        )
        .await;
        assert_eq!(
            replies_in(&imsg, 1),
            vec!["echo: first", "echo: after the bad row"]
        );
        assert_skipped_unreadable(dir.path(), bad, level);
        gw.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn rows_caught_up_with_an_unreadable_one_are_all_answered_but_it() {
    for level in [Level::V1, Level::Legacy] {
        let dir = state_dir();
        let imsg = MemImsg::new(level, 7);
        let gw = Gw::watching(config(dir.path(), ""), &imsg).await;
        imsg.inject(1, false, "+15550100001", "first");
        until("the first reply", Duration::from_secs(30), || {
            replies_in(&imsg, 1).len() == 1
        })
        .await;
        // While the gateway is down, rows of two chats pile up around a bad one: on legacy
        // the whole watch batch that holds it fails, rows before it included.
        gw.crash().await;
        imsg.kill();
        imsg.inject(1, false, "+15550100001", "one before");
        imsg.inject(2, true, "+15550100002", "two before");
        let bad = imsg.inject_unreadable(1, "+15550100001");
        imsg.inject(1, false, "+15550100001", "one after");
        imsg.inject(2, true, "+15550100002", "two after");
        let gw = Gw::start(config(dir.path(), ""), &imsg);
        until(
            &format!("{level:?}: the replies around the bad row"),
            Duration::from_secs(300),
            || replies_in(&imsg, 1).len() == 3 && replies_in(&imsg, 2).len() == 2,
        )
        .await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(
            replies_in(&imsg, 1),
            vec!["echo: first", "echo: one before", "echo: one after"],
            "{level:?}"
        );
        assert_eq!(
            replies_in(&imsg, 2),
            vec!["echo: two before", "echo: two after"],
            "{level:?}"
        );
        assert_skipped_unreadable(dir.path(), bad, level);
        gw.stop().await;
    }
}

/// The chaos run: `messages` messages across DMs and groups, with imsg killed about
/// `kills` times (some right after it starts, some with a send carried out but not
/// answered), garbage lines, dropped, delayed and duplicated lines. Every message must be
/// answered exactly once, in its own chat.
async fn chaos(level: Level, seed: u64, messages: usize, kills: usize) {
    let dir = state_dir();
    let imsg = MemImsg::new(level, seed);
    let gw = Gw::watching(config(dir.path(), ""), &imsg).await;
    imsg.set_faults(Faults {
        kill_per_mille: 2,
        kill_at_start_per_mille: 100,
        die_after_send_per_mille: 10,
        garbage_per_mille: 20,
        drop_per_mille: 2,
        max_delay_ms: 30,
        duplicate: true,
        ..Faults::default()
    });
    let mut rng = seed.max(1);
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut expected: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    let every = (messages / kills.max(1)).max(1);
    let mut killed = 0;
    for i in 0..messages {
        let chat = (next() % 24) as i64 + 1;
        let group = chat > 16;
        let sender = format!("+1555010{:04}", next() % 50);
        let text = format!("m{i}");
        imsg.inject(chat, group, &sender, &text);
        expected
            .entry(chat)
            .or_default()
            .push(format!("echo: {text}"));
        if i % every == every - 1 && killed < kills {
            // Kill a live imsg: one a fault ended already does not count, its successor is
            // killed instead.
            loop {
                let before = imsg.connections();
                let was_alive = imsg.kill();
                until("imsg to be restarted", Duration::from_secs(60), || {
                    imsg.connections() > before
                })
                .await;
                if was_alive {
                    killed += 1;
                    break;
                }
            }
        }
        if next() % 4 == 0 {
            tokio::time::sleep(Duration::from_millis(next() % 200)).await;
        }
    }
    imsg.set_faults(Faults::default());
    let total = messages;
    // Polled every 5 s (virtual): cheap, and a lost message fails after an hour, not a day.
    let start = tokio::time::Instant::now();
    while imsg.sent_count() < total && start.elapsed() < Duration::from_secs(3600) {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    tokio::time::sleep(Duration::from_secs(30)).await;
    // Texts are unique, so each reply names the message it answers.
    let mut got: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    let all = imsg.sent();
    for r in &all {
        got.entry(r.text.as_str()).or_default().push(r.chat_id);
    }
    let (mut lost, mut twice, mut wrong_chat) = (0, 0, 0);
    for (chat, want) in &expected {
        for w in want {
            let chats = got.get(w.as_str()).map(Vec::as_slice).unwrap_or(&[]);
            match chats.iter().filter(|c| *c == chat).count() {
                0 => lost += 1,
                1 => {}
                _ => twice += 1,
            }
            wrong_chat += chats.iter().filter(|c| *c != chat).count();
        }
    }
    let sent = all.len();
    eprintln!(
        "chaos {level:?} seed {seed}: {messages} messages, {killed} kills by the test, {} deaths by faults, {} connections, {sent} replies",
        imsg.deaths(),
        imsg.connections()
    );
    assert_eq!(
        (lost, twice, wrong_chat, sent),
        (0, 0, 0, messages),
        "(lost, answered twice, wrong chat, replies)"
    );
    assert_eq!(killed, kills, "every kill by the test ended a live imsg");
    gw.stop().await;
}

#[tokio::test(start_paused = true)]
async fn chaos_kills_and_faults_lose_nothing_and_answer_nothing_twice() {
    chaos(Level::V1, 0x5eed, 10_000, 1_000).await;
}

#[tokio::test(start_paused = true)]
async fn chaos_on_legacy_imsg_loses_nothing_and_answers_nothing_twice() {
    // imsg 0.9: no messages.after, so every restart resumes through the watch's since_rowid.
    chaos(Level::Legacy, 0x1e9a, 2_000, 200).await;
}

#[tokio::test(start_paused = true)]
async fn a_flood_waits_for_its_replies_instead_of_piling_up_and_loses_nothing() {
    const FLOOD: usize = 3_000;
    let dir = state_dir();
    let imsg = MemImsg::new(Level::V1, 11);
    let gw = Gw::watching(config(dir.path(), ""), &imsg).await;
    // Each answer takes up to 4 ms: the four chats' replies go far slower than the flood.
    imsg.set_faults(Faults {
        max_delay_ms: 4,
        ..Faults::default()
    });
    let mut expected: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for i in 0..FLOOD {
        let chat = (i % 4) as i64 + 1;
        imsg.inject(chat, false, &format!("+155501000{chat}"), &format!("f{i}"));
        expected
            .entry(chat)
            .or_default()
            .push(format!("echo: f{i}"));
    }
    // Messages taken in but not answered yet, as the journal holds them, stay within the
    // in-flight budget (plus a few whose final mark is still on its way to the store: the
    // credit is released when the reply is sent, the mark is written after).
    let store = Store::open(dir.path()).unwrap();
    let mut most = 0;
    until("every reply", Duration::from_secs(600), || {
        let counts = store.counts(Some("default")).unwrap();
        let waiting = [JournalStatus::Received, JournalStatus::Answering]
            .iter()
            .map(|s| counts.get(s.as_str()).copied().unwrap_or(0))
            .sum::<u64>() as usize;
        most = most.max(waiting);
        imsg.sent_count() >= FLOOD
    })
    .await;
    eprintln!(
        "flood: at most {most} waiting, {} subscriptions",
        subscribed(&imsg)
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    for (chat, want) in &expected {
        assert_eq!(
            &replies_in(&imsg, *chat),
            want,
            "chat {chat}: each once, in order"
        );
    }
    assert!(
        most <= imsg_gateway::imsg::supervisor::MAX_INFLIGHT + 64,
        "{most} messages were waiting at once"
    );
    assert!(
        subscribed(&imsg) > 1,
        "the live watch was cut off and resumed at least once"
    );
    gw.stop().await;
}

/// Hands out `inner`'s connections, but panics on the first `fail` attempts: a bug in the
/// runtime of one account, as the gateway sees it.
struct PanicsFirst {
    inner: Arc<dyn Connector>,
    fail: std::sync::atomic::AtomicU32,
}

impl Connector for PanicsFirst {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn connect(&self) -> Result<Link, SpawnError> {
        use std::sync::atomic::Ordering;
        if self
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            panic!("a bug while connecting");
        }
        self.inner.connect()
    }
}

#[tokio::test(start_paused = true)]
async fn an_account_whose_runtime_panics_is_restarted_and_answers() {
    let dir = state_dir();
    let imsg = MemImsg::new(Level::V1, 8);
    let conn: Arc<dyn Connector> = Arc::new(PanicsFirst {
        inner: imsg.connector(),
        fail: 3.into(),
    });
    let connect: ConnectorFor = Arc::new(move |_, _| conn.clone());
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(run_with(
        config(dir.path(), ""),
        GatewayOptions::default(),
        connect,
        rx,
    ));
    until(
        "the watch after the restarts",
        Duration::from_secs(60),
        || subscribed(&imsg) > 0,
    )
    .await;
    imsg.inject(1, false, "+15550100001", "still there?");
    until("the reply", Duration::from_secs(30), || {
        replies_in(&imsg, 1).len() == 1
    })
    .await;
    assert_eq!(replies_in(&imsg, 1), vec!["echo: still there?"]);
    let _ = stop.send(true);
    task.await.unwrap().expect("the gateway exits cleanly");
}
