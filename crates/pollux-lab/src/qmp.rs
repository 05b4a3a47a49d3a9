//! A small QMP (QEMU Machine Protocol) client over a unix socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::error::{Error, IoContext, Result};

/// A QMP session in command mode.
#[derive(Debug)]
pub(crate) struct Qmp {
    conn: Mutex<Conn>,
}

#[derive(Debug)]
struct Conn {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
    /// The last [`MAX_EVENTS`] asynchronous events seen while waiting for
    /// answers, kept for a post-mortem (how QEMU ended, `SHUTDOWN`'s reason).
    events: std::collections::VecDeque<Value>,
}

/// How many asynchronous events a session keeps.
const MAX_EVENTS: usize = 64;

impl Conn {
    /// Reads one JSON line, giving up at `deadline`.
    fn read_value(&mut self, deadline: Instant, what: &str) -> Result<Value> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout {
                what: format!("QMP answer to {what}"),
                after: Duration::ZERO,
            });
        }
        self.reader
            .get_ref()
            .set_read_timeout(Some(left))
            .ctx(|| "cannot set the QMP read timeout".into())?;
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err(Error::Protocol(format!(
                "QMP connection closed while waiting for {what} (QEMU exited?)"
            ))),
            Ok(_) => serde_json::from_str(&line)
                .map_err(|e| Error::Protocol(format!("bad QMP line {line:?}: {e}"))),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err(Error::Timeout {
                    what: format!("QMP answer to {what}"),
                    after: left,
                })
            }
            Err(e) => Err(Error::Io {
                what: format!("reading QMP answer to {what}"),
                source: e,
            }),
        }
    }

    fn keep_event(&mut self, v: Value) {
        if self.events.len() == MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(v);
    }

    fn execute(&mut self, cmd: &str, args: Option<Value>, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        // QMP echoes "id": a late answer to a command that timed out is
        // skipped instead of being taken for the answer to this one.
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "execute": cmd, "id": id });
        if let Some(a) = args {
            msg["arguments"] = a;
        }
        let mut line = msg.to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .ctx(|| format!("cannot send QMP command {cmd}"))?;
        loop {
            let v = self.read_value(deadline, cmd)?;
            if v.get("event").is_some() {
                self.keep_event(v);
                continue;
            }
            if v.get("id") != Some(&json!(id)) {
                continue; // a late answer to a command that timed out
            }
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(Error::Protocol(format!(
                    "QMP {cmd} failed: {}",
                    e.get("desc")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown error")
                )));
            }
            return Err(Error::Protocol(format!(
                "unexpected QMP answer to {cmd}: {v}"
            )));
        }
    }
}

impl Qmp {
    /// Reads the greeting and leaves capabilities-negotiation mode.
    pub(crate) fn new(stream: UnixStream, timeout: Duration) -> Result<Qmp> {
        let writer = stream
            .try_clone()
            .ctx(|| "cannot clone the QMP socket".into())?;
        let mut conn = Conn {
            reader: BufReader::new(stream),
            writer,
            next_id: 0,
            events: Default::default(),
        };
        let deadline = Instant::now() + timeout;
        let greeting = conn.read_value(deadline, "the QMP greeting")?;
        if greeting.get("QMP").is_none() {
            return Err(Error::Protocol(format!(
                "expected a QMP greeting, got {greeting}"
            )));
        }
        conn.execute("qmp_capabilities", None, timeout)?;
        Ok(Qmp {
            conn: Mutex::new(conn),
        })
    }

    /// The events QEMU sent without being asked: those seen while waiting
    /// for answers, then whatever is still unread on the socket, read for up
    /// to `wait` or until QEMU closes it. After QEMU died this is how it
    /// ended: its last words on QMP are a `SHUTDOWN` event with the reason
    /// (`guest-reset`, `guest-panic`, `host-signal`, ...).
    pub(crate) fn take_events(&self, wait: Duration) -> Vec<Value> {
        let mut c = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let deadline = Instant::now() + wait;
        // Ends at EOF, at the deadline, or at a line that is not JSON.
        while let Ok(v) = c.read_value(deadline, "events") {
            if v.get("event").is_some() {
                c.keep_event(v);
            }
        }
        c.events.drain(..).collect()
    }

    pub(crate) fn execute(
        &self,
        cmd: &str,
        args: Option<Value>,
        timeout: Duration,
    ) -> Result<Value> {
        self.conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .execute(cmd, args, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A scripted QMP server: answers each command line with the next reply.
    fn fake_qemu(replies: Vec<&'static str>) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut w = s.try_clone().unwrap();
            w.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n")
                .unwrap();
            let mut r = BufReader::new(s);
            for reply in replies {
                let mut l = String::new();
                if r.read_line(&mut l).unwrap() == 0 {
                    return;
                }
                let req: Value = serde_json::from_str(&l).unwrap();
                let id = req["id"].to_string();
                // A stale answer first: it must be skipped.
                w.write_all(b"{\"return\": \"stale\", \"id\": 999}\n")
                    .unwrap();
                w.write_all(reply.replace("ID", &id).as_bytes()).unwrap();
            }
            // Keep the connection open without answering.
            std::thread::sleep(Duration::from_secs(5));
        });
        (dir, path)
    }

    #[test]
    fn commands_skip_events_and_report_errors() {
        let (_d, path) = fake_qemu(vec![
            "{\"return\": {}, \"id\": ID}\n",
            "{\"event\": \"NIC_RX_FILTER_CHANGED\"}\n{\"return\": \"ok\", \"id\": ID}\n",
            "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Device 'nope' not found\"}, \"id\": ID}\n",
        ]);
        let qmp = Qmp::new(UnixStream::connect(&path).unwrap(), Duration::from_secs(5)).unwrap();
        let v = qmp
            .execute(
                "set_link",
                Some(json!({"name": "pf0", "up": false})),
                Duration::from_secs(5),
            )
            .unwrap();
        assert_eq!(v, json!("ok"));
        let e = qmp
            .execute(
                "set_link",
                Some(json!({"name": "nope", "up": false})),
                Duration::from_secs(5),
            )
            .unwrap_err();
        assert!(e.to_string().contains("Device 'nope' not found"), "{e}");
        let t = Instant::now();
        let e = qmp
            .execute("query-status", None, Duration::from_millis(300))
            .unwrap_err();
        assert!(matches!(e, Error::Timeout { .. }), "{e}");
        assert!(t.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn events_are_kept_for_the_post_mortem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut w = s.try_clone().unwrap();
            w.write_all(b"{\"QMP\": {}}\n").unwrap();
            let mut r = BufReader::new(s);
            let mut l = String::new();
            r.read_line(&mut l).unwrap(); // qmp_capabilities
            let id = serde_json::from_str::<Value>(&l).unwrap()["id"].to_string();
            w.write_all(b"{\"event\": \"NIC_RX_FILTER_CHANGED\"}\n")
                .unwrap();
            w.write_all(format!("{{\"return\": {{}}, \"id\": {id}}}\n").as_bytes())
                .unwrap();
            // How QEMU ends when the guest resets under -no-reboot.
            w.write_all(
                b"{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, \"reason\": \"guest-reset\"}}\n",
            )
            .unwrap();
            // Dropping both ends closes the connection.
        });
        let qmp = Qmp::new(UnixStream::connect(&path).unwrap(), Duration::from_secs(5)).unwrap();
        let t = Instant::now();
        let ev = qmp.take_events(Duration::from_secs(5));
        assert!(t.elapsed() < Duration::from_secs(3), "EOF ends the wait");
        let names: Vec<&str> = ev.iter().filter_map(|e| e["event"].as_str()).collect();
        assert_eq!(names, ["NIC_RX_FILTER_CHANGED", "SHUTDOWN"]);
        assert_eq!(ev[1]["data"]["reason"], "guest-reset");
        assert!(qmp.take_events(Duration::from_millis(50)).is_empty());
    }
}
