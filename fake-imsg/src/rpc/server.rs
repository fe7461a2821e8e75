//! The scheduler: reads stdin lines, parses them, admits requests under the 128 outstanding
//! bound and runs them on the three lanes (mutation FIFO, read pool of 4, control), then the
//! EOF sequence of imsg-rpc-v1.md §1.8. Legacy runs every request on one sequential worker.

use std::collections::HashMap;
use std::io::BufRead;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::db::Db;
use super::errors::{error_envelope, lane_blocked, result_envelope, RpcError};
use super::faults::Faults;
use super::framing::{parse_line, Parsed, Protocol};
use super::lanes::{lane, ApiLevel, Lane};
use super::out::Out;
use super::watch::Registry;

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
}

impl From<Result<Value, RpcError>> for Reply {
    fn from(result: Result<Value, RpcError>) -> Reply {
        Reply {
            result,
            after: None,
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
            poison: Mutex::new(None),
            watch: Registry::default(),
            shutting_down: AtomicBool::new(false),
            sends: AtomicU64::new(0),
            calls: Mutex::new(HashMap::new()),
            startup_max_rowid,
            first_seen: Mutex::new(HashMap::new()),
            memo: Mutex::new(HashMap::new()),
        }
    }

    fn answer(&self, id: &Option<Value>, result: &Result<Value, RpcError>) {
        match (id, result) {
            (Some(id), Ok(v)) => self.out.respond(&result_envelope(id, v.clone())),
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
    if let (Some((key, tag)), Ok(v)) = (&job.memo, &reply.result) {
        let encoded = super::out::encode(v);
        sh.memo
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), (*tag, encoded));
    }
    if sh.faults.drops(&job.method, nth) {
        tracing::warn!("fault drop_response: not answering {} #{nth}", job.method);
    } else {
        sh.answer(&job.id, &reply.result);
    }
    if let Some(after) = reply.after {
        after();
    }
    sh.outstanding.fetch_sub(1, Ordering::SeqCst);
}

fn spawn_worker(sh: &Arc<Shared>, rx: Arc<Mutex<Receiver<Job>>>, lane: Lane) -> JoinHandle<()> {
    let sh = sh.clone();
    std::thread::spawn(move || loop {
        let job = {
            let r = rx.lock().unwrap_or_else(|e| e.into_inner());
            r.recv()
        };
        match job {
            Ok(job) => execute(&sh, job, lane),
            Err(_) => return,
        }
    })
}

/// Serves lines from `input` until EOF; returns the exit status.
pub fn serve(sh: Arc<Shared>, input: impl BufRead, startup_error: Option<String>) -> i32 {
    let mut workers = Vec::new();
    let (mut_tx, mut_rx) = channel::<Job>();
    workers.push(spawn_worker(
        &sh,
        Arc::new(Mutex::new(mut_rx)),
        Lane::Mutation,
    ));
    let (read_tx, read_rx) = channel::<Job>();
    let read_rx = Arc::new(Mutex::new(read_rx));
    for _ in 0..4 {
        workers.push(spawn_worker(&sh, read_rx.clone(), Lane::Read));
    }
    let (ctl_tx, ctl_rx) = channel::<Job>();
    workers.push(spawn_worker(
        &sh,
        Arc::new(Mutex::new(ctl_rx)),
        Lane::Control,
    ));
    let senders: [&Sender<Job>; 3] = [&mut_tx, &read_tx, &ctl_tx];

    read_loop(&sh, input, startup_error.as_deref(), |job, l| {
        let idx = match l {
            Lane::Mutation => 0,
            Lane::Read => 1,
            Lane::Control => 2,
        };
        let _ = senders[idx].send(job);
    });

    // EOF: stop admitting, end every subscription silently, drain the lanes, flush.
    sh.shutting_down.store(true, Ordering::SeqCst);
    sh.watch.cancel_all();
    drop(mut_tx);
    drop(read_tx);
    drop(ctl_tx);
    for w in workers {
        let _ = w.join();
    }
    sh.watch.cancel_all();
    sh.out.flush();
    if startup_error.is_some() {
        1
    } else {
        0
    }
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
