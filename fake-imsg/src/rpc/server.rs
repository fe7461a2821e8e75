//! The scheduler: reads stdin lines, parses them, admits requests under the 128 outstanding
//! bound and runs them on the three lanes (mutation FIFO, read pool of 4, control), then the
//! EOF sequence of imsg-rpc-v1.md §1.8. Legacy runs every request on one sequential worker.
//! A send, typing or read that finds no other mutation outstanding runs on the reader itself.

use std::collections::{HashMap, VecDeque};
use std::io::BufRead;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::db::{remember, Db, Down, Writer};
use super::errors::{error_envelope, lane_blocked, RpcError};
use super::faults::Faults;
use super::framing::{parse_line, Parsed, Protocol};
use super::lanes::{lane, ApiLevel, Lane};
use super::out::Out;
use super::watch::Registry;
use crate::world::{ChatRow, World};

/// The outstanding request bound of §1.7.
pub const MAX_OUTSTANDING: usize = 128;

/// State shared by every lane and watcher.
pub struct Shared {
    pub protocol: Protocol,
    pub level: ApiLevel,
    pub db: Db,
    pub faults: Faults,
    pub out: Out,
    pub outstanding: AtomicUsize,
    /// Admitted mutation-lane jobs not yet answered (the FIFO an inline send must not jump).
    mutations: AtomicUsize,
    /// Delivery data of the failure that poisoned the mutation lane.
    pub poison: Mutex<Option<Value>>,
    pub watch: Registry,
    pub shutting_down: AtomicBool,
    /// `send` calls that passed validation (for the send faults).
    pub sends: AtomicU64,
    calls: Mutex<HashMap<String, u64>>,
    /// ROWID high-water mark at start (rows above it count as "injected later").
    pub startup_max_rowid: i64,
    /// When the watcher first saw a row (for the `unjoined_ms` fault).
    pub first_seen: Mutex<HashMap<i64, Instant>>,
    /// Encoded results of repeatable reads, tagged with the reader thread's database version
    /// at admission (the worker's answer is at least that fresh).
    memo: Mutex<HashMap<String, (MemoTag, String)>>,
    /// Legacy only: chat identity (identifier, guid, name, service, participants) as first
    /// seen, kept for the process lifetime like imsg 0.9 (imsg-rpc.md §7.1).
    legacy_chats: Mutex<HashMap<i64, ChatRow>>,
    /// The connection sends write through.
    writer: Writer,
}

/// File identity and the reader thread's `data_version`.
type MemoTag = ((u64, u64), i64);

/// One admitted request.
pub struct Job {
    pub id: Option<Value>,
    pub method: String,
    pub params: Result<Map<String, Value>, RpcError>,
    /// Where to remember the result (key and the version it is at least as fresh as).
    pub memo: Option<(String, MemoTag)>,
}

/// Something to run after the response line is written (a subscription's start).
pub type After = Box<dyn FnOnce() + Send>;

/// What a handler produced.
pub struct Reply {
    pub result: Result<Value, RpcError>,
    pub after: Option<After>,
    /// `out::encode` of the Ok value when the handler already has it (a memoized read, or a
    /// handler that encodes its result itself). When present it is what is written, and the
    /// value may be a placeholder (`Reply::encoded`).
    pub encoded: Option<String>,
}

impl From<Result<Value, RpcError>> for Reply {
    fn from(result: Result<Value, RpcError>) -> Reply {
        Reply {
            result,
            after: None,
            encoded: None,
        }
    }
}

impl Reply {
    /// The reply of a handler that encodes its own result (a `send`: no `Value` to build for
    /// a result nobody reads before it is written).
    pub fn encoded(result: Result<String, RpcError>) -> Reply {
        match result {
            Ok(encoded) => Reply {
                result: Ok(Value::Null),
                after: None,
                encoded: Some(encoded),
            },
            Err(e) => Reply::from(Err(e)),
        }
    }

    /// The reply of a memoizable read, carrying its encoding along.
    pub fn memoized(result: Result<super::db::Memoized, RpcError>) -> Reply {
        match result {
            Ok(m) => Reply {
                result: Ok(m.value),
                after: None,
                encoded: Some(m.encoded),
            },
            Err(e) => Reply::from(Err(e)),
        }
    }
}

impl Shared {
    pub fn new(protocol: Protocol, level: ApiLevel, db: Db, faults: Faults, out: Out) -> Shared {
        let startup_max_rowid = db.with(|w| w.max_rowid().unwrap_or(0)).unwrap_or(0);
        Shared {
            protocol,
            level,
            db,
            faults,
            out,
            outstanding: AtomicUsize::new(0),
            mutations: AtomicUsize::new(0),
            poison: Mutex::new(None),
            watch: Registry::default(),
            shutting_down: AtomicBool::new(false),
            sends: AtomicU64::new(0),
            calls: Mutex::new(HashMap::new()),
            startup_max_rowid,
            first_seen: Mutex::new(HashMap::new()),
            memo: Mutex::new(HashMap::new()),
            legacy_chats: Mutex::new(HashMap::new()),
            writer: Writer::default(),
        }
    }

    /// Runs `f` on the server's writing connection (`db::Writer`).
    pub fn write<T>(&self, f: impl FnOnce(&World) -> T) -> Result<T, Down> {
        self.db.write(&self.writer, f)
    }

    /// The chat as the protocol describes it. Legacy (imsg-rpc.md §7.1) caches identifier,
    /// guid, display name, service and participants for the life of the process, in
    /// `chats.list` and in message payloads alike; `last_message_at` stays fresh. A chat
    /// that is not found is not cached. v1 returns `fresh` unchanged.
    pub fn describe_chat(&self, fresh: ChatRow) -> ChatRow {
        if self.protocol != Protocol::Legacy {
            return fresh;
        }
        let mut cache = self.legacy_chats.lock().unwrap_or_else(|e| e.into_inner());
        match cache.get(&fresh.id) {
            Some(c) => ChatRow {
                identifier: c.identifier.clone(),
                guid: c.guid.clone(),
                display_name: c.display_name.clone(),
                service: c.service.clone(),
                participants: c.participants.clone(),
                ..fresh
            },
            None => {
                cache.insert(fresh.id, fresh.clone());
                fresh
            }
        }
    }

    fn answer(&self, id: &Option<Value>, result: &Result<Value, RpcError>) {
        match (id, result) {
            (Some(id), Ok(v)) => self.out.respond_result(id, &super::out::encode(v)),
            (Some(id), Err(e)) => self.out.respond(&error_envelope(id, e)),
            // Legacy answers failed notifications with a null id; v1 never answers them.
            (None, Err(e)) if self.protocol == Protocol::Legacy => {
                self.out.respond(&error_envelope(&Value::Null, e))
            }
            (None, _) => {}
        }
    }

    fn nth_call(&self, method: &str) -> u64 {
        let mut c = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        let n = c.entry(method.to_string()).or_insert(0);
        *n += 1;
        *n
    }
}

/// Runs one job on the current worker and answers it.
fn execute(sh: &Arc<Shared>, job: Job, lane: Lane) {
    let nth = sh.nth_call(&job.method);
    let delay = sh.faults.delay_for(&job.method);
    if delay > 0 {
        std::thread::sleep(Duration::from_millis(delay));
    }
    let reply: Reply = match &job.params {
        Err(e) => Err(e.clone()).into(),
        Ok(params) => {
            let poisoned = if lane == Lane::Mutation && sh.protocol == Protocol::V1 {
                sh.poison.lock().unwrap_or_else(|e| e.into_inner()).clone()
            } else {
                None
            };
            match poisoned {
                Some(p) => Err(lane_blocked(&p)).into(),
                None => super::dispatch(sh, &job.method, params),
            }
        }
    };
    // A success is encoded once, for both the memo and the response line.
    let encoded = match (&reply.result, reply.encoded) {
        (Ok(_), Some(enc)) => Some(enc),
        (Ok(v), None) if job.id.is_some() || job.memo.is_some() => Some(super::out::encode(v)),
        _ => None,
    };
    if let (Some((key, tag)), Some(enc)) = (&job.memo, &encoded) {
        let mut memo = sh.memo.lock().unwrap_or_else(|e| e.into_inner());
        remember(&mut memo, key, *tag, enc.clone());
    }
    if sh.faults.drops(&job.method, nth) {
        tracing::warn!("fault drop_response: not answering {} #{nth}", job.method);
    } else {
        match (&job.id, &encoded) {
            (Some(id), Some(enc)) => sh.out.respond_result(id, enc),
            _ => sh.answer(&job.id, &reply.result),
        }
    }
    if let Some(after) = reply.after {
        after();
    }
    if lane == Lane::Mutation {
        sh.mutations.fetch_sub(1, Ordering::SeqCst);
    }
    sh.outstanding.fetch_sub(1, Ordering::SeqCst);
}

/// A lane's FIFO of admitted jobs, shared by the lane's workers. Idle workers wait on the
/// condition variable, so a job wakes exactly one of them (a `Mutex<Receiver>` pool wakes a
/// second worker to take the receiver each time the first one leaves with a job).
#[derive(Default)]
struct Queue {
    state: Mutex<(VecDeque<Job>, bool)>,
    ready: Condvar,
}

impl Queue {
    fn push(&self, job: Job) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .push_back(job);
        self.ready.notify_one();
    }

    /// No more jobs: workers finish what is queued, then end.
    fn close(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
        self.ready.notify_all();
    }

    /// The next job, waiting for one; None once closed and drained.
    fn pop(&self) -> Option<Job> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(job) = st.0.pop_front() {
                return Some(job);
            }
            if st.1 {
                return None;
            }
            st = self.ready.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }
}

fn spawn_worker(sh: &Arc<Shared>, queue: Arc<Queue>, lane: Lane) -> JoinHandle<()> {
    let sh = sh.clone();
    std::thread::spawn(move || {
        while let Some(job) = queue.pop() {
            execute(&sh, job, lane);
        }
    })
}

/// Serves lines from `input` until EOF; returns the exit status.
pub fn serve(sh: Arc<Shared>, input: impl BufRead, startup_error: Option<String>) -> i32 {
    let mut workers = Vec::new();
    let queues: [Arc<Queue>; 3] = Default::default();
    let [mutation, read, control] = &queues;
    workers.push(spawn_worker(&sh, mutation.clone(), Lane::Mutation));
    for _ in 0..4 {
        workers.push(spawn_worker(&sh, read.clone(), Lane::Read));
    }
    workers.push(spawn_worker(&sh, control.clone(), Lane::Control));

    read_loop(&sh, input, startup_error.as_deref(), |job, l| {
        if runs_inline(&sh, &job, l) {
            execute(&sh, job, l);
            return;
        }
        let q = match l {
            Lane::Mutation => mutation,
            Lane::Read => read,
            Lane::Control => control,
        };
        q.push(job);
    });

    // EOF: stop admitting, end every subscription silently, drain the lanes, flush.
    sh.shutting_down.store(true, Ordering::SeqCst);
    sh.watch.cancel_all();
    for q in &queues {
        q.close();
    }
    for w in workers {
        let _ = w.join();
    }
    sh.watch.cancel_all();
    // Checkpoints what is left of the WAL now, not whenever the last reference goes.
    sh.writer.close();
    sh.out.flush();
    if startup_error.is_some() {
        1
    } else {
        0
    }
}

/// Whether the reader runs this job itself instead of handing it to its lane: a send,
/// typing or read when no other mutation is outstanding, so it overtakes nothing in the
/// mutation FIFO. Reads and control requests run on lanes of their own either way, so one
/// still running does not stop it (a client catching up keeps a page read outstanding
/// beside its sends). Handing over cost a wake-up and a context switch on every round trip
/// of a client that sends one request at a time; the price is that lines arriving meanwhile
/// are read once it is done, which for a short write only shifts when they start. A delayed
/// method (the `delay_ms` fault) always takes its lane: the other lanes must go on reading
/// while it sleeps.
fn runs_inline(sh: &Shared, job: &Job, lane: Lane) -> bool {
    lane == Lane::Mutation
        && matches!(job.method.as_str(), "send" | "typing" | "read")
        && sh.mutations.load(Ordering::SeqCst) == 1
        && sh.faults.delay_for(&job.method) == 0
}

fn read_loop(
    sh: &Arc<Shared>,
    mut input: impl BufRead,
    startup_error: Option<&str>,
    mut submit: impl FnMut(Job, Lane),
) {
    let mut buf = Vec::with_capacity(4096);
    loop {
        buf.clear();
        match input.read_until(b'\n', &mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("stdin read failed: {e}");
                return;
            }
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        let req = match parse_line(&buf, sh.protocol) {
            Parsed::Blank => continue,
            Parsed::Framing { id, error } => {
                tracing::debug!("framing error: {:?}", error.data);
                sh.out.respond(&error_envelope(&id, &error));
                continue;
            }
            Parsed::Request(r) => r,
        };
        if let Some(text) = startup_error {
            let id = req.id.clone().unwrap_or(Value::Null);
            sh.out
                .respond(&error_envelope(&id, &RpcError::internal(text)));
            continue;
        }
        let mut job = Job {
            id: req.id,
            method: req.method,
            params: req.params,
            memo: None,
        };
        if fast_path(sh, &mut job) {
            continue;
        }
        let l = match sh.protocol {
            Protocol::Legacy => Lane::Mutation,
            Protocol::V1 => {
                if job.id.is_none() && job.params.is_err() {
                    tracing::debug!("dropping notification {} with bad params", job.method);
                    continue;
                }
                lane(&job.method, sh.level)
            }
        };
        if sh.protocol == Protocol::V1 && sh.outstanding.load(Ordering::SeqCst) >= MAX_OUTSTANDING {
            match &job.id {
                Some(id) => sh.out.respond(&error_envelope(
                    id,
                    &RpcError::busy("outstanding request limit exceeded"),
                )),
                None => tracing::warn!("busy: dropping notification {}", job.method),
            }
            continue;
        }
        sh.outstanding.fetch_add(1, Ordering::SeqCst);
        if l == Lane::Mutation {
            sh.mutations.fetch_add(1, Ordering::SeqCst);
        }
        submit(job, l);
    }
}

/// Answers a repeatable read from the memo on the reader thread when nothing changed since
/// it was computed (no lane hop); otherwise tags the job so its worker fills the memo.
/// Faulted methods and a busy legacy queue (strictly sequential) always take the lanes.
fn fast_path(sh: &Shared, job: &mut Job) -> bool {
    let Ok(params) = &job.params else {
        return false;
    };
    if sh.faults.delay_for(&job.method) > 0
        || sh.faults.drop_response.is_some()
        || sh.faults.exit_after_requests.is_some()
    {
        return false;
    }
    let Some(key) = super::methods::memo_key(sh, &job.method, params) else {
        return false;
    };
    if sh.protocol == Protocol::Legacy && sh.outstanding.load(Ordering::SeqCst) > 0 {
        return false;
    }
    let Some(tag) = sh.db.version() else {
        return false;
    };
    let hit = {
        let memo = sh.memo.lock().unwrap_or_else(|e| e.into_inner());
        memo.get(&key)
            .filter(|(t, _)| *t == tag)
            .map(|(_, enc)| enc.clone())
    };
    match (hit, &job.id) {
        (Some(enc), Some(id)) => {
            sh.out.respond_encoded(id, &enc);
            true
        }
        (Some(_), None) => true,
        (None, _) => {
            job.memo = Some((key, tag));
            false
        }
    }
}
