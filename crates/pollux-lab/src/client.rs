//! Host side of the agent protocol: one unix-socket connection to QEMU's
//! chardev, a reader thread that routes replies to their waiting callers.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext, Result};
use crate::proto::{Envelope, Reply, Request};

#[derive(Default)]
struct Routes {
    waiting: HashMap<u64, Sender<Reply>>,
    closed: bool,
}

pub(crate) struct AgentClient {
    writer: Mutex<UnixStream>,
    routes: Arc<Mutex<Routes>>,
    next_id: AtomicU64,
    hello: Mutex<Option<Receiver<Reply>>>,
    console: PathBuf,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient").finish_non_exhaustive()
    }
}

/// Connects to a QEMU server socket, retrying until it exists, the deadline
/// passes, or `alive` says QEMU is gone.
pub(crate) fn connect_unix(
    path: &Path,
    deadline: Instant,
    alive: &mut dyn FnMut() -> Result<()>,
) -> Result<UnixStream> {
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return Ok(s),
            Err(e) => {
                alive()?;
                if Instant::now() >= deadline {
                    return Err(Error::Protocol(format!(
                        "cannot connect to {}: {e}",
                        path.display()
                    )));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl AgentClient {
    pub(crate) fn new(stream: UnixStream, console: PathBuf) -> Result<AgentClient> {
        let reader = stream
            .try_clone()
            .ctx(|| "cannot clone the agent socket".into())?;
        let routes = Arc::new(Mutex::new(Routes::default()));
        let (hello_tx, hello_rx) = mpsc::channel();
        let r2 = Arc::clone(&routes);
        std::thread::Builder::new()
            .name("pollux-lab-agent-reader".into())
            .spawn(move || read_replies(reader, r2, hello_tx))
            .ctx(|| "cannot start the agent reader thread".into())?;
        Ok(AgentClient {
            writer: Mutex::new(stream),
            routes,
            next_id: AtomicU64::new(1),
            hello: Mutex::new(Some(hello_rx)),
            console,
        })
    }

    /// Waits for the agent's hello, checking `alive` every 200 ms.
    pub(crate) fn wait_hello(
        &self,
        timeout: Duration,
        alive: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Reply> {
        let rx = self
            .hello
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| Error::Protocol("hello already received".into()))?;
        let deadline = Instant::now() + timeout;
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(r) => return Ok(r),
                Err(RecvTimeoutError::Disconnected) => return Err(self.disconnected()),
                Err(RecvTimeoutError::Timeout) => {
                    alive()?;
                    if Instant::now() >= deadline {
                        return Err(Error::Timeout {
                            what: "the guest agent's hello".into(),
                            after: timeout,
                        });
                    }
                }
            }
        }
    }

    /// Sends one request and waits up to `timeout` for its reply, calling
    /// `watch` every 500 ms while it waits: an error from it (a model
    /// process that died, say) ends the wait at once with that error
    /// instead of at the timeout.
    pub(crate) fn request_watched(
        &self,
        body: Request,
        timeout: Duration,
        watch: &dyn Fn() -> Result<()>,
    ) -> Result<Reply> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        {
            let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
            if routes.closed {
                return Err(self.disconnected());
            }
            routes.waiting.insert(id, tx);
        }
        let what = describe(&body);
        let mut line = serde_json::to_string(&Envelope { id, body })
            .map_err(|e| Error::Protocol(format!("cannot encode {what}: {e}")))?;
        line.push('\n');
        let sent = {
            let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
            w.write_all(line.as_bytes()).and_then(|()| w.flush())
        };
        if sent.is_err() {
            self.forget(id);
            return Err(self.disconnected());
        }
        let deadline = std::time::Instant::now() + timeout;
        let got = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(500))) {
                Err(RecvTimeoutError::Timeout) if !left.is_zero() => {
                    if let Err(e) = watch() {
                        self.forget(id);
                        return Err(e);
                    }
                }
                r => break r,
            }
        };
        match got {
            Ok(Reply::Error { message }) => {
                Err(Error::Protocol(format!("guest agent: {what}: {message}")))
            }
            Ok(r) => Ok(r),
            Err(RecvTimeoutError::Timeout) => {
                self.forget(id);
                Err(Error::Timeout {
                    what: format!("the guest agent's answer to {what}"),
                    after: timeout,
                })
            }
            Err(RecvTimeoutError::Disconnected) => Err(self.disconnected()),
        }
    }

    fn disconnected(&self) -> Error {
        Error::Disconnected {
            console: self.console.clone(),
            detail: String::new(),
        }
    }

    fn forget(&self, id: u64) {
        self.routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .waiting
            .remove(&id);
    }
}

fn describe(r: &Request) -> String {
    match r {
        Request::Run { cmd, .. } => format!("run {cmd:?}"),
        Request::Spawn { cmd } => format!("spawn {cmd:?}"),
        Request::Stdin { handle, .. } => format!("stdin of process {handle}"),
        Request::Signal { handle, signal } => format!("signal {signal} to process {handle}"),
        Request::Poll { handle, .. } => format!("poll of process {handle}"),
        Request::Wait { handle, .. } => format!("wait for process {handle}"),
        Request::Release { handle } => format!("release of process {handle}"),
    }
}

fn read_replies(stream: UnixStream, routes: Arc<Mutex<Routes>>, hello: Sender<Reply>) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let Ok(env) = serde_json::from_str::<Envelope<Reply>>(line.trim()) else {
            // Not ours (the port carries nothing else), so a corrupted line;
            // the request it answered will time out with a clear message.
            continue;
        };
        if env.id == 0 {
            let _ = hello.send(env.body);
            continue;
        }
        let tx = routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .waiting
            .remove(&env.id);
        if let Some(tx) = tx {
            let _ = tx.send(env.body);
        }
    }
    let mut r = routes.lock().unwrap_or_else(PoisonError::into_inner);
    r.closed = true;
    // Dropping the senders wakes every waiter with "disconnected".
    r.waiting.clear();
}
