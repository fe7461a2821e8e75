//! The stdout writer: one complete JSON line per record, written and flushed under one lock
//! so concurrent lanes and watchers never interleave. Applies the output faults
//! (garbage/partial lines, exit after N responses) because they are defined by what has
//! been written. The faults that end fake-imsg end it through an [`Ending`] it is handed:
//! the library never ends the process itself, so its server also runs inside another one.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

use serde::Serialize;
use serde_json::Value;

use super::errors::result_envelope;
use super::faults::Faults;

struct Inner {
    w: Box<dyn Write + Send>,
    responses: u64,
}

/// Shared writer of JSON lines.
pub struct Out {
    inner: Mutex<Inner>,
    faults: Faults,
    ending: Ending,
}

/// What a fault that ends fake-imsg (`exit_after_requests`, `exit_after_ms`) does.
#[derive(Clone, Copy)]
pub enum Ending {
    /// Ends the process with this function, handed in by the binary (`std::process::exit`).
    Process(fn(i32) -> !),
    /// In another process: closes the output, which is all a client sees of an imsg that
    /// died; later lines are dropped.
    CloseOutput,
}

/// Serializes like Apple's JSONSerialization as far as a reader can see: compact, with `/`
/// escaped as `\/` (a `/` can only occur inside JSON strings, so a plain replace is exact).
/// Besides a `Value`, a result can come as a struct whose fields are in the order
/// serde_json's map keeps keys, so it encodes to the same bytes without a tree to build.
pub fn encode<T: Serialize + ?Sized>(v: &T) -> String {
    let s = serde_json::to_string(v).unwrap_or_else(|_| {
        r#"{"jsonrpc":"2.0","error":{"code":-32603,"message":"write failed"}}"#.to_string()
    });
    if s.contains('/') {
        s.replace('/', "\\/")
    } else {
        s
    }
}

/// The line of `encode(&result_envelope(id, result))` from an encoded `result`: `result` is
/// the envelope's last member whichever order the map keeps (sorted or inserted), and
/// escaping `/` commutes with splicing because it only ever acts inside strings. Built in
/// one buffer with room for the newline `respond_line` adds.
pub fn result_line(id: &Value, result: &str) -> String {
    let (before_id, before_result) = envelope_layout();
    let id = encode(id);
    let mut line =
        String::with_capacity(before_id.len() + id.len() + before_result.len() + result.len() + 2);
    line.push_str(before_id);
    line.push_str(&id);
    line.push_str(before_result);
    line.push_str(result);
    line.push('}');
    line
}

/// The result envelope's text before the id and between the id and the result: it depends
/// only on the order serde_json's map keeps, so it is worked out once from a real envelope.
fn envelope_layout() -> &'static (String, String) {
    static LAYOUT: OnceLock<(String, String)> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let line = encode(&result_envelope(&Value::Null, Value::Null));
        let id = line.find("\"id\":null").expect("an id member") + "\"id\":".len();
        let rest = &line[id + "null".len()..];
        let result = rest
            .strip_suffix("null}")
            .expect("result is the last member");
        debug_assert!(result.ends_with("\"result\":"));
        (line[..id].to_string(), result.to_string())
    })
}

impl Out {
    /// A writer inside another process: a fault that ends fake-imsg closes the output.
    pub fn new(w: Box<dyn Write + Send>, faults: Faults) -> Out {
        Out::ending_with(w, faults, Ending::CloseOutput)
    }

    pub fn ending_with(w: Box<dyn Write + Send>, faults: Faults, ending: Ending) -> Out {
        Out {
            inner: Mutex::new(Inner { w, responses: 0 }),
            faults,
            ending,
        }
    }

    /// Writes a notification line.
    pub fn notify(&self, v: &Value) {
        let line = encode(v);
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        write_line(&mut g.w, line);
    }

    /// Writes several lines under one lock (e.g. a notification and its duplicate).
    pub fn notify_all(&self, vs: &[Value]) {
        let lines: Vec<String> = vs.iter().map(encode).collect();
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for l in lines {
            write_line(&mut g.w, l);
        }
    }

    /// Writes a response line, then any output fault due after it.
    pub fn respond(&self, v: &Value) {
        self.respond_line(encode(v));
    }

    /// Writes the success response `encode(&result_envelope(id, result))` from a result
    /// already encoded with `encode`, so a result that is also memoized is serialized once.
    pub fn respond_result(&self, id: &Value, result: &str) {
        self.respond_line(result_line(id, result));
    }

    /// Writes a success response whose result is already encoded.
    pub fn respond_encoded(&self, id: &Value, result: &str) {
        self.respond_line(format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":{result}}}",
            encode(id)
        ));
    }

    fn respond_line(&self, line: String) {
        // Kept only when a fault will cut it in half.
        let partial = self.faults.partial_line_after.map(|_| line.clone());
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        write_line(&mut g.w, line);
        g.responses += 1;
        let n = g.responses;
        if self.faults.garbage_line_after == Some(n) {
            write_line(&mut g.w, "fake-imsg: garbage line <<not json>>".into());
        }
        if let (Some(line), true) = (partial, self.faults.partial_line_after == Some(n)) {
            let half = &line[..line.len() / 2];
            let cut = (0..=half.len())
                .rev()
                .find(|i| half.is_char_boundary(*i))
                .unwrap_or(0);
            write_line(&mut g.w, half[..cut].to_string());
        }
        if self.faults.exit_after_requests == Some(n) {
            tracing::warn!("fault exit_after_requests={n}: exiting");
            self.end_locked(&mut g, 1);
        }
    }

    /// Ends fake-imsg under the writer lock (the `exit_after_ms` fault), so no line is cut.
    pub fn end(&self, code: i32) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        self.end_locked(&mut g, code);
    }

    fn end_locked(&self, g: &mut Inner, code: i32) {
        let _ = g.w.flush();
        match self.ending {
            Ending::Process(exit) => exit(code),
            // Dropping the writer closes the pipe: the client reads EOF.
            Ending::CloseOutput => g.w = Box::new(std::io::sink()),
        }
    }

    pub fn flush(&self) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let _ = g.w.flush();
    }
}

/// Writes `line` and its newline in one `write` (the line's own buffer, grown by one byte if
/// it has no room left).
fn write_line(w: &mut Box<dyn Write + Send>, mut line: String) {
    line.push('\n');
    // A closed stdout means the client is gone; stdin EOF will end the process.
    let _ = w.write_all(line.as_bytes()).and_then(|_| w.flush());
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_fault_that_ends_fake_imsg_in_process_closes_its_output_and_nothing_more() {
        use std::io::Read;
        let (mut r, w) = std::io::pipe().unwrap();
        let faults = Faults {
            exit_after_requests: Some(1),
            ..Faults::default()
        };
        let out = Out::new(Box::new(w), faults);
        out.respond(&json!({"jsonrpc": "2.0", "id": 1, "result": {}}));
        out.respond(&json!({"jsonrpc": "2.0", "id": 2, "result": {}}));
        // Reaching EOF at all means the writer was dropped; this process is still here.
        let mut got = String::new();
        r.read_to_string(&mut got).unwrap();
        assert_eq!(got, "{\"id\":1,\"jsonrpc\":\"2.0\",\"result\":{}}\n");
    }

    #[test]
    fn a_spliced_result_line_is_the_encoded_envelope() {
        let results = [
            json!({"chats": [{"guid": "iMessage;-;a/b", "id": 1, "name": "x\"/y"}]}),
            json!(null),
            json!([]),
            json!("a/b"),
        ];
        for id in [json!(7), json!("id/with/slashes"), json!(null)] {
            for r in &results {
                assert_eq!(
                    result_line(&id, &encode(r)),
                    encode(&result_envelope(&id, r.clone()))
                );
            }
        }
    }
}
