//! The JSON-RPC 2.0 client: one JSON object per line over any `AsyncRead`/`AsyncWrite` pair.
//!
//! Owns request ids (from 1), correlation of responses by id, per-request timeouts, error
//! mapping and the routing of server notifications to a bounded channel. It knows nothing
//! about processes: `process.rs` hands it a child's stdio, unit tests hand it a
//! `tokio::io::duplex`.
//!
//! Responses and notifications share one pipe, so the reader never waits for the consumer of
//! notifications (a send waiting for its answer behind them would deadlock). When the queue
//! is full, notifications are dropped and the client says so ([`Client::overflowed`]); the
//! supervisor then resumes the stream from the last row it handled, so nothing is lost.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot, watch, Notify};

use super::protocol::{ErrorCode, Protocol, Request};

/// Default per-request timeout (the reference client's 10 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request did not produce a result.
#[derive(Debug, Clone, PartialEq)]
pub enum RpcError {
    /// The server answered with a JSON-RPC error object.
    Remote {
        code: i64,
        message: String,
        data: Option<Value>,
    },
    /// No answer within the timeout; the pending entry is dropped, a late answer is ignored.
    Timeout { method: String, after: Duration },
    /// The peer's stdout closed (child exited) after the request was written, before the
    /// answer arrived: whether it was carried out is unknown.
    Closed,
    /// The connection was already closed: the request was never written, so it never reached
    /// imsg and is safe to retry on the next connection.
    NotConnected,
    /// Writing the request failed (broken pipe): nobody read it, so it never reached imsg.
    Io(String),
}

impl RpcError {
    pub fn code(&self) -> Option<i64> {
        match self {
            RpcError::Remote { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The code of an answer imsg gave, told apart.
    pub fn error_code(&self) -> Option<ErrorCode> {
        self.code().map(ErrorCode::from_code)
    }

    pub fn is_method_not_found(&self) -> bool {
        self.error_code() == Some(ErrorCode::MethodNotFound)
    }

    /// A field of the error's `data` object (`disposition`, `retry_safe`, ...).
    fn data_field(&self, key: &str) -> Option<&Value> {
        match self {
            RpcError::Remote { data: Some(d), .. } => d.get(key),
            _ => None,
        }
    }

    /// imsg said "not now": busy (`-32000`), database unavailable (`-32002`), or
    /// `retry_safe` in its delivery data.
    pub fn retryable(&self) -> bool {
        matches!(
            self.error_code(),
            Some(ErrorCode::ServerBusy | ErrorCode::DatabaseUnavailable)
        ) || self.data_field("retry_safe").and_then(Value::as_bool) == Some(true)
    }

    /// `-32001` with `disposition: "may_have_completed"`: imsg handed it over and cannot
    /// tell.
    pub fn may_have_completed(&self) -> bool {
        self.error_code() == Some(ErrorCode::DeliveryOutcomeUnknown)
            && self.data_field("disposition").and_then(Value::as_str) == Some("may_have_completed")
    }

    /// `-32004`, or a `-32001` whose send is still in flight: every later send on this child
    /// fails until it is restarted (imsg-rpc-v1 §1.7, §6.6).
    pub fn lane_blocked(&self) -> bool {
        match self.error_code() {
            Some(ErrorCode::MutationLaneBlocked) => true,
            Some(ErrorCode::DeliveryOutcomeUnknown) => {
                self.data_field("disposition").and_then(Value::as_str) == Some("still_in_flight")
            }
            _ => false,
        }
    }

    /// A failure of one read that another read may not share (a row imsg cannot decode), as
    /// opposed to the connection or the database being down, imsg being busy, or a method
    /// it does not have.
    pub fn row_level(&self) -> bool {
        !matches!(
            self.error_code(),
            None | Some(
                ErrorCode::DatabaseUnavailable
                    | ErrorCode::MutationLaneBlocked
                    | ErrorCode::ServerBusy
                    | ErrorCode::MethodNotFound
            )
        )
    }

    /// True when the request certainly never reached imsg (retry it on the next connection).
    pub fn never_sent(&self) -> bool {
        matches!(self, RpcError::NotConnected | RpcError::Io(_))
    }

    /// True when the connection is gone (the child must be replaced before a retry).
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            RpcError::NotConnected | RpcError::Io(_) | RpcError::Closed | RpcError::Timeout { .. }
        )
    }

    /// True when the failure says nothing about whether the request was carried out.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, RpcError::Timeout { .. } | RpcError::Closed)
            || self.error_code() == Some(ErrorCode::DeliveryOutcomeUnknown)
    }

    /// `data` as text: strings as they are, objects as compact JSON.
    pub fn data_text(&self) -> Option<String> {
        match self {
            RpcError::Remote { data: Some(d), .. } => Some(match d {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            }),
            _ => None,
        }
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcError::Remote { code, message, .. } => {
                write!(f, "imsg rpc error {code} {message}")?;
                if let Some(d) = self.data_text() {
                    write!(f, ": {d}")?;
                }
                Ok(())
            }
            RpcError::Timeout { method, after } => {
                write!(
                    f,
                    "imsg rpc timeout ({method}) after {} ms",
                    after.as_millis()
                )
            }
            RpcError::Closed => write!(f, "imsg rpc closed"),
            RpcError::NotConnected => write!(f, "imsg rpc not connected (request not sent)"),
            RpcError::Io(e) => write!(f, "imsg rpc write failed: {e}"),
        }
    }
}

impl std::error::Error for RpcError {}

/// How many notifications wait for the supervisor before more are dropped (and the stream is
/// resumed from the last handled row): a burst of a few hundred messages passes untouched, a
/// flood costs at most this many payloads of memory.
pub const NOTIFICATION_QUEUE: usize = 1024;

/// The notifications of one connection, in the order imsg wrote them.
pub type Notifications = mpsc::Receiver<Notification>;

/// A server-to-client notification (`method` without `id`).
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub method: String,
    pub params: Value,
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, RpcError>>>>>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

struct Inner {
    next_id: AtomicU64,
    pending: Pending,
    writer: tokio::sync::Mutex<Option<Writer>>,
    closed: AtomicBool,
    closed_rx: watch::Receiver<bool>,
    default_timeout: Duration,
    label: String,
    /// Set when a notification was dropped because the queue was full; cleared by the
    /// supervisor once it has resumed the stream.
    overflow: AtomicBool,
    overflow_signal: Notify,
}

/// A cheap, cloneable handle on one JSON-RPC connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("label", &self.inner.label)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Client {
    /// Starts the reader task. Notifications go to the returned receiver, which closes when the
    /// peer's output ends.
    pub fn new<R, W>(
        reader: R,
        writer: W,
        default_timeout: Duration,
        label: &str,
    ) -> (Client, Notifications)
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let (note_tx, note_rx) = mpsc::channel(NOTIFICATION_QUEUE);
        let (closed_tx, closed_rx) = watch::channel(false);
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let inner = Arc::new(Inner {
            next_id: AtomicU64::new(1),
            pending: pending.clone(),
            writer: tokio::sync::Mutex::new(Some(Box::new(writer))),
            closed: AtomicBool::new(false),
            closed_rx,
            default_timeout,
            label: label.to_string(),
            overflow: AtomicBool::new(false),
            overflow_signal: Notify::new(),
        });
        let reader_inner = inner.clone();
        tokio::spawn(async move {
            read_loop(reader, &reader_inner, note_tx).await;
            reader_inner.closed.store(true, Ordering::SeqCst);
            let drained: Vec<_> = reader_inner.pending.lock().unwrap().drain().collect();
            for (_, tx) in drained {
                let _ = tx.send(Err(RpcError::Closed));
            }
            let _ = closed_tx.send(true);
        });
        (Client { inner }, note_rx)
    }

    /// True once the peer's output has ended.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    /// Resolves when the peer's output has ended.
    pub async fn closed(&self) {
        let mut rx = self.inner.closed_rx.clone();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Resolves once notifications have been dropped because the queue was full (at once if
    /// that happened already and was not cleared).
    pub async fn overflowed(&self) {
        loop {
            let signal = self.inner.overflow_signal.notified();
            if self.has_overflowed() {
                return;
            }
            signal.await;
        }
    }

    /// Whether notifications were dropped since the last [`Client::clear_overflow`].
    pub fn has_overflowed(&self) -> bool {
        self.inner.overflow.load(Ordering::SeqCst)
    }

    /// The stream has been resumed from a known row: later drops count as a new overflow.
    pub fn clear_overflow(&self) {
        self.inner.overflow.store(false, Ordering::SeqCst);
    }

    /// Number of requests waiting for an answer (for tests and status).
    pub fn pending_count(&self) -> usize {
        self.inner.pending.lock().unwrap().len()
    }

    /// A request with the default timeout.
    pub async fn request(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        self.request_with_timeout(method, params, self.inner.default_timeout)
            .await
    }

    /// A typed request, its params built for `protocol`.
    pub async fn call(&self, protocol: Protocol, req: &Request) -> Result<Value, RpcError> {
        self.call_with_timeout(protocol, req, self.inner.default_timeout)
            .await
    }

    /// [`Client::call`] with its own timeout.
    pub async fn call_with_timeout(
        &self,
        protocol: Protocol,
        req: &Request,
        timeout: Duration,
    ) -> Result<Value, RpcError> {
        self.request_with_timeout(req.method(), req.params(protocol), timeout)
            .await
    }

    /// A request with raw params, as given (no key set applied): for callers that speak
    /// for imsg's protocol themselves, such as tests.
    pub async fn request_with_timeout(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, RpcError> {
        if self.is_closed() {
            return Err(RpcError::NotConnected);
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = oneshot::channel();
        self.inner.pending.lock().unwrap().insert(id, tx);
        let line = serde_json::to_vec(&RequestLine {
            id,
            jsonrpc: "2.0",
            method,
            params: &params,
        })
        .expect("a request serialises");
        tracing::trace!(target: "imsg_gateway::imsg::wire", client = %self.inner.label,
            "-> {}", String::from_utf8_lossy(&line));
        // The write is inside the timeout too: a child that stops reading its stdin fills the
        // pipe, and a blocked write must not outlive the request.
        let exchange = async {
            self.write_line(line).await?;
            rx.await.unwrap_or(Err(RpcError::Closed))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Err(e)) => {
                self.inner.pending.lock().unwrap().remove(&id);
                Err(e)
            }
            Ok(Ok(result)) => Ok(result),
            Err(_) => {
                self.inner.pending.lock().unwrap().remove(&id);
                Err(RpcError::Timeout {
                    method: method.to_string(),
                    after: timeout,
                })
            }
        }
    }

    /// Closes our side of the pipe (the child's stdin): an imsg child drains and exits at EOF.
    pub async fn close_input(&self) {
        let mut guard = self.inner.writer.lock().await;
        if let Some(mut w) = guard.take() {
            let _ = w.shutdown().await;
        }
    }

    async fn write_line(&self, mut text: Vec<u8>) -> Result<(), RpcError> {
        text.push(b'\n');
        let mut guard = self.inner.writer.lock().await;
        let w = guard.as_mut().ok_or(RpcError::NotConnected)?;
        w.write_all(&text)
            .await
            .map_err(|e| RpcError::Io(e.to_string()))?;
        w.flush().await.map_err(|e| RpcError::Io(e.to_string()))
    }
}

/// A request as written to imsg, serialised straight into bytes: no `Value` map is built only
/// to be thrown away, and no `Display` (which goes through `fmt` a few bytes at a time, at
/// twice the cost). The keys keep the order a `Value` map gave them.
#[derive(serde::Serialize)]
struct RequestLine<'a> {
    id: u64,
    jsonrpc: &'static str,
    method: &'a str,
    params: &'a Value,
}

/// The longest line read from imsg's stdout. A longer line is thrown away as it arrives (never
/// buffered whole) and reading resumes after its newline: a child that writes without ever
/// ending the line must not grow the gateway's memory without bound. 4 MiB is far above any
/// message or chats list imsg sends.
pub const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;

/// What [`LineReader::next_frame`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A whole line (newline included, or the last bytes before end of stream) is in the buffer.
    Line,
    /// The line passed the cap: the buffer holds its first `max` bytes and the rest of the line
    /// is being discarded. Reported once per line, as soon as the cap is passed.
    TooLong { so_far: usize },
    /// The end of an over-long line was reached after `total` bytes; the next frame starts
    /// a fresh line.
    Resynced { total: usize },
    /// End of stream.
    Eof,
}

/// Splits a byte stream into lines of at most `max` bytes, in memory bounded by `max` plus
/// the read buffer whatever the stream sends.
pub(crate) struct LineReader<R> {
    inner: BufReader<R>,
    max: usize,
    state: Overlong,
}

/// Where the reader is with respect to an over-long line.
#[derive(Debug, Clone, Copy)]
enum Overlong {
    None,
    /// Discarding the rest of a line; bytes of it seen so far.
    Discarding(usize),
    /// The line's newline has been consumed; `Resynced` is still to be reported.
    Ended(usize),
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub(crate) fn new(reader: R, max: usize) -> Self {
        LineReader {
            inner: BufReader::new(reader),
            max,
            state: Overlong::None,
        }
    }

    /// Clears `buf` and reads the next frame into it.
    pub(crate) async fn next_frame(&mut self, buf: &mut Vec<u8>) -> std::io::Result<Frame> {
        buf.clear();
        if let Overlong::Ended(total) = self.state {
            self.state = Overlong::None;
            return Ok(Frame::Resynced { total });
        }
        loop {
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                if let Overlong::Discarding(total) = self.state {
                    self.state = Overlong::None;
                    return Ok(Frame::Resynced { total });
                }
                return Ok(if buf.is_empty() {
                    Frame::Eof
                } else {
                    Frame::Line
                });
            }
            let newline = memchr::memchr(b'\n', available);
            let take = newline.map_or(available.len(), |i| i + 1);
            if let Overlong::Discarding(seen) = self.state {
                let seen = seen + take;
                self.inner.consume(take);
                if newline.is_some() {
                    self.state = Overlong::None;
                    return Ok(Frame::Resynced { total: seen });
                }
                self.state = Overlong::Discarding(seen);
                continue;
            }
            if buf.len() + take > self.max {
                // Keep the head (for the log line) and drop the rest as it comes.
                let room = self.max - buf.len();
                buf.extend_from_slice(&available[..room]);
                let so_far = buf.len() + (take - room);
                self.inner.consume(take);
                self.state = if newline.is_some() {
                    Overlong::Ended(so_far)
                } else {
                    Overlong::Discarding(so_far)
                };
                return Ok(Frame::TooLong { so_far });
            }
            buf.extend_from_slice(&available[..take]);
            self.inner.consume(take);
            if newline.is_some() {
                return Ok(Frame::Line);
            }
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    reader: R,
    inner: &Inner,
    note_tx: mpsc::Sender<Notification>,
) {
    let mut lines = LineReader::new(reader, MAX_LINE_BYTES);
    let mut buf = Vec::new();
    loop {
        // Bytes, not `lines()`: a non-UTF-8 line is one bad line, not the end of the stream.
        match lines.next_frame(&mut buf).await {
            Ok(Frame::Line) => {}
            Ok(Frame::Eof) => return,
            Ok(Frame::TooLong { so_far }) => {
                // Whatever it was (a response, a notification), it is lost: a request it
                // answered times out as usual; nothing else is failed because of it.
                tracing::warn!(client = %inner.label,
                    "imsg rpc: discarding a stdout line longer than {MAX_LINE_BYTES} bytes ({so_far} bytes so far): {}",
                    clip(&String::from_utf8_lossy(&buf)));
                // The head was only for the log line; do not keep 4 MiB allocated for it.
                buf = Vec::new();
                continue;
            }
            Ok(Frame::Resynced { total }) => {
                tracing::debug!(client = %inner.label, "imsg rpc: discarded a {total}-byte stdout line; reading on");
                continue;
            }
            Err(e) => {
                tracing::warn!(client = %inner.label, "imsg rpc: reading stdout failed: {e}");
                return;
            }
        }
        // Validating first is the fast path: `from_utf8_lossy` walks a valid line chunk by
        // chunk, which cost 2 % of a catch-up's instructions; only a bad line pays for it.
        let text = match std::str::from_utf8(&buf) {
            Ok(s) => std::borrow::Cow::Borrowed(s),
            Err(_) => String::from_utf8_lossy(&buf),
        };
        let line = text.trim();
        if line.is_empty() {
            continue;
        }
        tracing::trace!(target: "imsg_gateway::imsg::wire", client = %inner.label, "<- {line}");
        let value: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(client = %inner.label, "imsg rpc: skipping a stdout line that is not JSON ({e}): {}", clip(line));
                continue;
            }
        };
        dispatch(value, inner, &note_tx);
    }
}

fn dispatch(value: Value, inner: &Inner, note_tx: &mpsc::Sender<Notification>) {
    // Taken apart, not cloned: a result can be a 500-message page.
    let mut obj = match value {
        Value::Object(obj) => obj,
        other => {
            tracing::warn!(client = %inner.label, "imsg rpc: skipping a stdout line that is not an object: {}", clip(&other.to_string()));
            return;
        }
    };
    match obj.get("id") {
        Some(id) if !id.is_null() => {
            let Some(id) = id_as_u64(id) else {
                tracing::warn!(client = %inner.label, "imsg rpc: response with an id we never use: {id}");
                return;
            };
            let Some(tx) = inner.pending.lock().unwrap().remove(&id) else {
                tracing::debug!(client = %inner.label, "imsg rpc: response {id} has no pending request (timed out?)");
                return;
            };
            let outcome = match obj.get("error") {
                Some(err) => Err(map_error(err)),
                None => Ok(obj.remove("result").unwrap_or(Value::Null)),
            };
            let _ = tx.send(outcome);
        }
        _ => {
            if let Some(Value::String(method)) = obj.remove("method") {
                let note = Notification {
                    method,
                    params: obj.remove("params").unwrap_or(Value::Null),
                };
                if let Err(mpsc::error::TrySendError::Full(_)) = note_tx.try_send(note) {
                    if !inner.overflow.swap(true, Ordering::SeqCst) {
                        tracing::warn!(client = %inner.label,
                            "imsg rpc: {NOTIFICATION_QUEUE} notifications are waiting to be handled; dropping more until the watch is resumed from the last row handled");
                    }
                    inner.overflow_signal.notify_waiters();
                }
            } else if let Some(err) = obj.get("error") {
                // Framing errors come back with id null: our own line was malformed.
                tracing::warn!(client = %inner.label, "imsg rpc: error without id: {}", map_error(err));
            } else {
                let line = serde_json::Value::Object(obj).to_string();
                tracing::debug!(client = %inner.label, "imsg rpc: ignoring line: {}", clip(&line));
            }
        }
    }
}

fn id_as_u64(id: &Value) -> Option<u64> {
    match id {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn map_error(err: &Value) -> RpcError {
    RpcError::Remote {
        code: err.get("code").and_then(Value::as_i64).unwrap_or(-32603),
        message: err
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("imsg rpc error")
            .to_string(),
        data: err.get("data").cloned(),
    }
}

fn clip(s: &str) -> String {
    const MAX: usize = 200;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};

    /// The scripted peer: reads our request lines, writes whatever the test says.
    struct Peer {
        lines: tokio::io::Lines<BufReader<tokio::io::ReadHalf<DuplexStream>>>,
        out: tokio::io::WriteHalf<DuplexStream>,
    }

    impl Peer {
        async fn next_request(&mut self) -> Value {
            let line = tokio::time::timeout(Duration::from_secs(5), self.lines.next_line())
                .await
                .expect("request within 5 s")
                .unwrap()
                .expect("a line");
            serde_json::from_str(&line).expect("requests are JSON")
        }
        async fn send(&mut self, line: &str) {
            self.out.write_all(line.as_bytes()).await.unwrap();
            self.out.write_all(b"\n").await.unwrap();
        }
    }

    fn pair(timeout: Duration) -> (Client, Notifications, Peer) {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let (r, w) = tokio::io::split(ours);
        let (client, notes) = Client::new(r, w, timeout, "test");
        let (tr, tw) = tokio::io::split(theirs);
        let peer = Peer {
            lines: BufReader::new(tr).lines(),
            out: tw,
        };
        (client, notes, peer)
    }

    #[tokio::test]
    async fn ids_start_at_one_and_responses_correlate_out_of_order() {
        let (client, _notes, mut peer) = pair(DEFAULT_TIMEOUT);
        let c1 = client.clone();
        let c2 = client.clone();
        let a = tokio::spawn(async move { c1.request("chats.list", json!({"limit": 1})).await });
        let r1 = peer.next_request().await;
        let b = tokio::spawn(async move { c2.request("status", json!({})).await });
        let r2 = peer.next_request().await;
        assert_eq!(r1["jsonrpc"], "2.0");
        assert_eq!(r1["id"], 1);
        assert_eq!(r1["method"], "chats.list");
        assert_eq!(r1["params"], json!({"limit": 1}));
        assert_eq!(r2["id"], 2);
        // Answer the second first.
        peer.send(r#"{"jsonrpc":"2.0","id":2,"result":{"version":"0.14.0"}}"#)
            .await;
        peer.send(r#"{"jsonrpc":"2.0","id":1,"result":{"chats":[]}}"#)
            .await;
        assert_eq!(b.await.unwrap().unwrap(), json!({"version": "0.14.0"}));
        assert_eq!(a.await.unwrap().unwrap(), json!({"chats": []}));
        assert_eq!(client.pending_count(), 0);
    }

    #[tokio::test]
    async fn timeout_drops_the_pending_entry_and_a_late_answer_is_ignored() {
        let (client, _notes, mut peer) = pair(Duration::from_millis(100));
        let err = client
            .request("send", json!({"text": "x"}))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, RpcError::Timeout { method, .. } if method == "send"),
            "{err:?}"
        );
        assert!(err.outcome_unknown());
        assert_eq!(client.pending_count(), 0);
        let req = peer.next_request().await;
        peer.send(&format!(
            r#"{{"jsonrpc":"2.0","id":{},"result":{{"ok":true}}}}"#,
            req["id"]
        ))
        .await;
        // The connection still works afterwards.
        let c = client.clone();
        let next = tokio::spawn(async move {
            c.request_with_timeout("status", json!({}), DEFAULT_TIMEOUT)
                .await
        });
        let req = peer.next_request().await;
        assert_eq!(req["id"], 2);
        peer.send(r#"{"jsonrpc":"2.0","id":2,"result":{"ok":1}}"#)
            .await;
        assert_eq!(next.await.unwrap().unwrap(), json!({"ok": 1}));
    }

    #[tokio::test]
    async fn garbage_lines_are_skipped_not_fatal() {
        let (client, mut notes, mut peer) = pair(DEFAULT_TIMEOUT);
        let c = client.clone();
        let call = tokio::spawn(async move { c.request("status", json!({})).await });
        peer.next_request().await;
        peer.send("this is not json").await;
        peer.send("{\"jsonrpc\":\"2.0\",\"id\":1,\"res").await;
        peer.out.write_all(&[0xff, 0xfe, b'\n']).await.unwrap();
        peer.send("").await;
        peer.send("42").await;
        peer.send(r#"{"jsonrpc":"2.0","method":"message","params":{"subscription":1}}"#)
            .await;
        peer.send(r#"{"jsonrpc":"2.0","id":1,"result":{"ok":true}}"#)
            .await;
        assert_eq!(call.await.unwrap().unwrap(), json!({"ok": true}));
        let n = notes.recv().await.unwrap();
        assert_eq!(n.method, "message");
        assert!(!client.is_closed());
    }

    #[tokio::test]
    async fn notifications_go_to_the_channel_in_order() {
        let (_client, mut notes, mut peer) = pair(DEFAULT_TIMEOUT);
        peer.send(r#"{"jsonrpc":"2.0","method":"message","params":{"subscription":1,"message":{"id":5}}}"#).await;
        peer.send(r#"{"jsonrpc":"2.0","method":"watch.overflow","params":{"subscription":1,"resume_after_rowid":5}}"#).await;
        peer.send(r#"{"jsonrpc":"2.0","method":"error","params":{"subscription":1,"error":{"message":"locked"}}}"#).await;
        let a = notes.recv().await.unwrap();
        let b = notes.recv().await.unwrap();
        let c = notes.recv().await.unwrap();
        assert_eq!(
            (a.method.as_str(), a.params["message"]["id"].as_i64()),
            ("message", Some(5))
        );
        assert_eq!(b.method, "watch.overflow");
        assert_eq!(b.params["resume_after_rowid"], 5);
        assert_eq!(c.method, "error");
        assert_eq!(c.params["error"]["message"], "locked");
    }

    #[tokio::test]
    async fn a_flood_of_notifications_is_cut_off_at_the_queue_and_answers_still_arrive() {
        let (client, mut notes, mut peer) = pair(DEFAULT_TIMEOUT);
        // Nobody reads the notifications while a request waits behind twice the queue of them.
        let c = client.clone();
        let call = tokio::spawn(async move { c.request("status", json!({})).await });
        peer.next_request().await;
        for i in 0..2 * NOTIFICATION_QUEUE {
            peer.send(&format!(
                r#"{{"jsonrpc":"2.0","method":"message","params":{{"subscription":1,"message":{{"id":{i}}}}}}}"#
            ))
            .await;
        }
        peer.send(r#"{"jsonrpc":"2.0","id":1,"result":{"ok":true}}"#)
            .await;
        assert_eq!(call.await.unwrap().unwrap(), json!({"ok": true}));
        tokio::time::timeout(Duration::from_secs(5), client.overflowed())
            .await
            .expect("the overflow is signalled");
        let mut got = Vec::new();
        while let Ok(n) = notes.try_recv() {
            got.push(n.params["message"]["id"].as_i64().unwrap());
        }
        // The first ones, in order; the rest were dropped, not buffered.
        assert_eq!(got, (0..NOTIFICATION_QUEUE as i64).collect::<Vec<_>>());
        client.clear_overflow();
        assert!(!client.has_overflowed());
        peer.send(r#"{"jsonrpc":"2.0","method":"message","params":{"subscription":2,"message":{"id":9999}}}"#).await;
        let n = notes.recv().await.unwrap();
        assert_eq!(n.params["message"]["id"], 9999);
        assert!(!client.has_overflowed());
    }

    #[tokio::test]
    async fn errors_carry_code_message_and_data() {
        let (client, _notes, mut peer) = pair(DEFAULT_TIMEOUT);
        let c = client.clone();
        let call =
            tokio::spawn(
                async move { c.request("send", json!({"chat_id": 99, "text": "x"})).await },
            );
        peer.next_request().await;
        peer.send(r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"Invalid params","data":"unknown chat_id 99"}}"#).await;
        let err = call.await.unwrap().unwrap_err();
        assert_eq!(
            err,
            RpcError::Remote {
                code: -32602,
                message: "Invalid params".into(),
                data: Some(json!("unknown chat_id 99"))
            }
        );
        assert_eq!(
            err.to_string(),
            "imsg rpc error -32602 Invalid params: unknown chat_id 99"
        );
        assert!(!err.outcome_unknown());

        let c = client.clone();
        let call = tokio::spawn(async move { c.request("send", json!({"text": "y"})).await });
        peer.next_request().await;
        peer.send(r#"{"jsonrpc":"2.0","id":2,"error":{"code":-32001,"message":"Delivery outcome unknown","data":{"retry_safe":false,"disposition":"may_have_completed"}}}"#).await;
        let err = call.await.unwrap().unwrap_err();
        assert_eq!(err.error_code(), Some(ErrorCode::DeliveryOutcomeUnknown));
        assert!(err.outcome_unknown());
        assert_eq!(
            err.data_text().unwrap(),
            r#"{"disposition":"may_have_completed","retry_safe":false}"#
        );
    }

    #[tokio::test]
    async fn legacy_fallback_on_method_not_found() {
        let (client, _notes, mut peer) = pair(DEFAULT_TIMEOUT);
        let c = client.clone();
        let neg = tokio::spawn(async move { crate::imsg::negotiate(&c, DEFAULT_TIMEOUT).await });
        let req = peer.next_request().await;
        assert_eq!(req["method"], "initialize");
        assert_eq!(req["params"], json!({"protocol_version": 1}));
        peer.send(r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"Method not found","data":"initialize"}}"#).await;
        let n = neg.await.unwrap().unwrap();
        assert_eq!(n.protocol, crate::imsg::Protocol::Legacy);
        assert!(n.can_watch());
    }

    #[tokio::test]
    async fn v1_negotiation_reads_database_readiness() {
        let (client, _notes, mut peer) = pair(DEFAULT_TIMEOUT);
        let c = client.clone();
        let neg = tokio::spawn(async move { crate::imsg::negotiate(&c, DEFAULT_TIMEOUT).await });
        peer.next_request().await;
        peer.send(r#"{"jsonrpc":"2.0","id":1,"result":{"version":"0.14.0","protocol_version":1,"database":{"path":"/x/chat.db","ready":false,"error":"The configured Messages database does not exist."},"methods":["initialize","status","watch.unsubscribe","send","typing","read"]}}"#).await;
        let n = neg.await.unwrap().unwrap();
        assert_eq!(n.protocol, crate::imsg::Protocol::V1);
        assert_eq!(n.version.as_deref(), Some("0.14.0"));
        assert!(!n.database_ready);
        assert!(!n.can_watch());
        assert_eq!(n.database_path.as_deref(), Some("/x/chat.db"));
    }

    #[tokio::test]
    async fn closing_the_peer_fails_pending_and_later_requests_fast() {
        let (client, mut notes, mut peer) = pair(DEFAULT_TIMEOUT);
        let c = client.clone();
        let call = tokio::spawn(async move { c.request("status", json!({})).await });
        peer.next_request().await;
        drop(peer);
        assert_eq!(call.await.unwrap().unwrap_err(), RpcError::Closed);
        client.closed().await;
        assert!(notes.recv().await.is_none());
        // Written before the close: outcome unknown. Asked after it: never sent, retry-safe.
        assert!(RpcError::Closed.outcome_unknown());
        let late = client.request("status", json!({})).await.unwrap_err();
        assert_eq!(late, RpcError::NotConnected);
        assert!(late.never_sent() && !late.outcome_unknown());
    }

    #[tokio::test]
    async fn a_peer_that_stops_reading_still_times_out() {
        // A tiny pipe nobody reads: the request line cannot be written in full.
        let (ours, _theirs) = tokio::io::duplex(8);
        let (r, w) = tokio::io::split(ours);
        let (client, _notes) = Client::new(r, w, Duration::from_millis(200), "test");
        let err = client
            .request(
                "send",
                json!({"text": "a long enough text to fill the pipe"}),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, RpcError::Timeout { .. }), "{err:?}");
        assert_eq!(client.pending_count(), 0);
    }

    /// 10 MiB without a newline, written in pieces by a task (the pipe holds 64 KiB).
    fn write_overlong_then(mut out: impl AsyncWrite + Unpin + Send + 'static, after: &'static str) {
        tokio::spawn(async move {
            let piece = vec![b'x'; 64 * 1024];
            for _ in 0..160 {
                out.write_all(&piece).await.unwrap();
            }
            out.write_all(b"\n").await.unwrap();
            out.write_all(after.as_bytes()).await.unwrap();
        });
    }

    #[tokio::test]
    async fn an_overlong_line_is_discarded_without_buffering_it() {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        write_overlong_then(theirs, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n");
        let mut lines = LineReader::new(ours, MAX_LINE_BYTES);
        let mut buf = Vec::new();
        let frame = lines.next_frame(&mut buf).await.unwrap();
        assert!(
            matches!(frame, Frame::TooLong { so_far } if so_far > MAX_LINE_BYTES),
            "{frame:?}"
        );
        // Only the head is kept, never the whole line.
        assert_eq!(buf.len(), MAX_LINE_BYTES);
        assert!(buf.capacity() <= 2 * MAX_LINE_BYTES);
        let frame = lines.next_frame(&mut buf).await.unwrap();
        assert_eq!(
            frame,
            Frame::Resynced {
                total: 10 * 1024 * 1024 + 1
            }
        );
        assert!(buf.is_empty());
        assert_eq!(lines.next_frame(&mut buf).await.unwrap(), Frame::Line);
        assert_eq!(buf, b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n");
        assert_eq!(lines.next_frame(&mut buf).await.unwrap(), Frame::Eof);
    }

    #[tokio::test]
    async fn line_reader_keeps_lines_up_to_the_cap_and_resyncs_after_longer_ones() {
        let input: &[u8] = b"12345678\n123456789\nok\nlast";
        let mut lines = LineReader::new(input, 9);
        let mut buf = Vec::new();
        let mut seen = Vec::new();
        loop {
            let frame = lines.next_frame(&mut buf).await.unwrap();
            seen.push((frame, String::from_utf8(buf.clone()).unwrap()));
            if frame == Frame::Eof {
                break;
            }
        }
        let want = [
            (Frame::Line, "12345678\n"),
            (Frame::TooLong { so_far: 10 }, "123456789"),
            (Frame::Resynced { total: 10 }, ""),
            (Frame::Line, "ok\n"),
            (Frame::Line, "last"),
            (Frame::Eof, ""),
        ];
        let want: Vec<_> = want.iter().map(|(f, t)| (*f, t.to_string())).collect();
        assert_eq!(seen, want);
    }

    #[tokio::test]
    async fn a_request_is_answered_after_an_overlong_line() {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let (r, w) = tokio::io::split(ours);
        let (client, _notes) = Client::new(r, w, DEFAULT_TIMEOUT, "test");
        let (tr, tw) = tokio::io::split(theirs);
        let c = client.clone();
        let call = tokio::spawn(async move { c.request("status", json!({})).await });
        let mut requests = BufReader::new(tr).lines();
        let req = requests.next_line().await.unwrap().unwrap();
        assert!(req.contains("\"id\":1"), "{req}");
        write_overlong_then(
            tw,
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"ok\":true}}\n",
        );
        let answer = tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .expect("answered within 5 s")
            .unwrap();
        assert_eq!(answer.unwrap(), json!({"ok": true}));
        assert!(!client.is_closed());
    }

    #[test]
    fn v1_send_params_keep_only_documented_keys() {
        use crate::imsg::{sanitize_params, Protocol};
        let p = json!({"chat_id": 1, "text": "hi", "service": "auto", "region": "US",
                       "chatId": 1, "reply_to": null, "attempt_id": "x"});
        assert_eq!(
            sanitize_params(Protocol::V1, "send", p.clone()),
            json!({"chat_id": 1, "text": "hi", "service": "auto", "region": "US"})
        );
        let w = json!({"since_rowid": 4, "attachments": false, "buffer_limit": 10});
        assert_eq!(
            sanitize_params(Protocol::Legacy, "watch.subscribe", w),
            json!({"since_rowid": 4, "attachments": false})
        );
    }
}
