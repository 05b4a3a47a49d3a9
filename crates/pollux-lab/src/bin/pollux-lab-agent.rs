//! The guest agent of the Pollux lab.
//!
//! Started inside the guest by the lab's boot (virtme-ng runs it as the
//! guest's command; when it exits the guest powers off). It opens the
//! virtio-serial port named [`pollux_lab::proto::PORT_NAME`], greets the host
//! and then serves [`Request`]s, each on a thread of its own, until the host
//! goes away. The host binary is visible in the guest because virtme-ng
//! shares the host's root filesystem read-only.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{ChildStdin, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use pollux_lab::proto::{Envelope, ExitStatus, Reply, Request, PORT_NAME, VERSION};

/// After a command exits, how long to wait for its stdout/stderr to reach EOF
/// (a daemon it started may hold them open forever).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// How long the host may stay disconnected before the agent concludes it is
/// gone and exits (which powers the guest off).
const HOST_GONE_AFTER: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    match serve() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pollux-lab-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking handler thread must not take the whole agent down.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Finds `/dev/vportNpM` whose sysfs name is ours, waiting up to 30 s for it.
fn find_port() -> Result<PathBuf, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(entries) = std::fs::read_dir("/sys/class/virtio-ports") {
            for e in entries.flatten() {
                let name = std::fs::read_to_string(e.path().join("name")).unwrap_or_default();
                if name.trim() == PORT_NAME {
                    return Ok(PathBuf::from("/dev").join(e.file_name()));
                }
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no virtio-serial port named {PORT_NAME} in /sys/class/virtio-ports after 30 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Agent {
    out: Mutex<File>,
    procs: Mutex<HashMap<u64, Arc<Proc>>>,
    next_handle: AtomicU64,
}

impl Agent {
    fn send(&self, id: u64, body: Reply) {
        let env = Envelope { id, body };
        let mut line = match serde_json::to_string(&env) {
            Ok(l) => l,
            Err(e) => format!(
                "{{\"id\":{id},\"body\":{{\"Error\":{{\"message\":\"cannot encode reply: {e}\"}}}}}}"
            ),
        };
        line.push('\n');
        let mut out = lock(&self.out);
        if let Err(e) = out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
            eprintln!("pollux-lab-agent: cannot send reply {id}: {e}");
        }
    }

    fn proc(&self, handle: u64) -> Result<Arc<Proc>, String> {
        lock(&self.procs)
            .get(&handle)
            .cloned()
            .ok_or_else(|| format!("no background process with handle {handle}"))
    }

    fn handle(&self, req: Request) -> Reply {
        match self.try_handle(req) {
            Ok(r) => r,
            Err(message) => Reply::Error { message },
        }
    }

    fn try_handle(&self, req: Request) -> Result<Reply, String> {
        match req {
            Request::Run {
                cmd,
                stdin,
                timeout_ms,
            } => {
                let p = Proc::start(&cmd)?;
                match stdin {
                    Some(data) => p.write_stdin(&data, true)?,
                    None => p.close_stdin(),
                }
                let done = p.wait(Duration::from_millis(timeout_ms));
                if !done {
                    p.signal(Signal::SIGKILL);
                    p.wait(Duration::from_secs(5));
                }
                let st = lock(&p.state);
                let stdout = String::from_utf8_lossy(&st.stdout).into_owned();
                let stderr = String::from_utf8_lossy(&st.stderr).into_owned();
                Ok(match (done, st.status) {
                    (true, Some(status)) => Reply::Finished {
                        status,
                        stdout,
                        stderr,
                    },
                    _ => Reply::TimedOut { stdout, stderr },
                })
            }
            Request::Spawn { cmd } => {
                let p = Proc::start(&cmd)?;
                let handle = self.next_handle.fetch_add(1, Ordering::Relaxed);
                let pid = p.pid;
                lock(&self.procs).insert(handle, p);
                Ok(Reply::Spawned { handle, pid })
            }
            Request::Stdin {
                handle,
                data,
                close,
            } => {
                self.proc(handle)?.write_stdin(&data, close)?;
                Ok(Reply::Ok)
            }
            Request::Signal { handle, signal } => {
                let sig = Signal::try_from(signal).map_err(|e| format!("signal {signal}: {e}"))?;
                self.proc(handle)?.signal(sig);
                Ok(Reply::Ok)
            }
            Request::Poll {
                handle,
                stdout_from,
                stderr_from,
            } => Ok(self.proc(handle)?.progress(stdout_from, stderr_from)),
            Request::Wait {
                handle,
                timeout_ms,
                stdout_from,
                stderr_from,
            } => {
                let p = self.proc(handle)?;
                p.wait(Duration::from_millis(timeout_ms));
                Ok(p.progress(stdout_from, stderr_from))
            }
            Request::Release { handle } => {
                if let Some(p) = lock(&self.procs).remove(&handle) {
                    if lock(&p.state).status.is_none() {
                        p.signal(Signal::SIGKILL);
                    }
                }
                Ok(Reply::Ok)
            }
        }
    }
}

#[derive(Default)]
struct ProcState {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: Option<ExitStatus>,
    exited_at: Option<Instant>,
    open_streams: u8,
}

impl ProcState {
    /// Ended, and its output is complete (or the grace period for daemons
    /// holding the pipes is over).
    fn complete(&self) -> bool {
        match self.exited_at {
            Some(t) => self.open_streams == 0 || t.elapsed() >= DRAIN_GRACE,
            None => false,
        }
    }
}

/// A guest process started with `sh -c`, leading a process group of its own.
struct Proc {
    pid: u32,
    stdin: Mutex<Option<ChildStdin>>,
    state: Mutex<ProcState>,
    changed: Condvar,
}

impl Proc {
    fn start(cmd: &str) -> Result<Arc<Proc>, String> {
        use std::os::unix::process::CommandExt;
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(cmd)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start /bin/sh -c {cmd:?}: {e}"))?;
        let p = Arc::new(Proc {
            pid: child.id(),
            stdin: Mutex::new(child.stdin.take()),
            state: Mutex::new(ProcState {
                open_streams: 2,
                ..ProcState::default()
            }),
            changed: Condvar::new(),
        });
        let streams: [(Option<Box<dyn Read + Send>>, bool); 2] = [
            (child.stdout.take().map(|s| Box::new(s) as _), true),
            (child.stderr.take().map(|s| Box::new(s) as _), false),
        ];
        for (stream, is_stdout) in streams {
            let p2 = Arc::clone(&p);
            std::thread::spawn(move || {
                if let Some(mut s) = stream {
                    let mut buf = [0u8; 16384];
                    loop {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                let mut st = lock(&p2.state);
                                let sink = if is_stdout {
                                    &mut st.stdout
                                } else {
                                    &mut st.stderr
                                };
                                sink.extend_from_slice(&buf[..n]);
                                p2.changed.notify_all();
                            }
                        }
                    }
                }
                lock(&p2.state).open_streams -= 1;
                p2.changed.notify_all();
            });
        }
        let p2 = Arc::clone(&p);
        std::thread::spawn(move || {
            use std::os::unix::process::ExitStatusExt;
            let status = match child.wait() {
                Ok(s) => match (s.code(), s.signal()) {
                    (Some(c), _) => ExitStatus::Code(c),
                    (None, Some(sig)) => ExitStatus::Signal(sig),
                    (None, None) => ExitStatus::Code(-1),
                },
                Err(_) => ExitStatus::Code(-1),
            };
            let mut st = lock(&p2.state);
            st.status = Some(status);
            st.exited_at = Some(Instant::now());
            p2.changed.notify_all();
        });
        Ok(p)
    }

    fn write_stdin(&self, data: &str, close: bool) -> Result<(), String> {
        let mut stdin = lock(&self.stdin);
        match stdin.as_mut() {
            Some(s) => s
                .write_all(data.as_bytes())
                .and_then(|()| s.flush())
                .map_err(|e| format!("cannot write to stdin of pid {}: {e}", self.pid))?,
            None if data.is_empty() => {}
            None => return Err(format!("stdin of pid {} is closed", self.pid)),
        }
        if close {
            *stdin = None;
        }
        Ok(())
    }

    fn close_stdin(&self) {
        *lock(&self.stdin) = None;
    }

    fn signal(&self, sig: Signal) {
        // The whole group: `sh -c` may have children of its own. Failure means
        // the group is gone already.
        let _ = killpg(Pid::from_raw(self.pid as i32), sig);
    }

    /// Waits until the process is complete; false on timeout.
    fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = lock(&self.state);
        loop {
            if st.complete() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            // Wake at least every 100 ms to re-check the drain grace period.
            let step = (deadline - now).min(Duration::from_millis(100));
            st = self
                .changed
                .wait_timeout(st, step)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn progress(&self, stdout_from: u64, stderr_from: u64) -> Reply {
        let st = lock(&self.state);
        let complete = st.complete();
        let part = |buf: &[u8], from: u64| -> (String, u64) {
            let from = (from as usize).min(buf.len());
            // While the process runs, hold back a UTF-8 sequence cut in half.
            let end = if complete {
                buf.len()
            } else {
                complete_utf8_prefix(buf)
            }
            .max(from);
            (
                String::from_utf8_lossy(&buf[from..end]).into_owned(),
                end as u64,
            )
        };
        let (stdout, stdout_len) = part(&st.stdout, stdout_from);
        let (stderr, stderr_len) = part(&st.stderr, stderr_from);
        Reply::Progress {
            stdout,
            stderr,
            stdout_len,
            stderr_len,
            status: if complete { st.status } else { None },
        }
    }
}

/// Length of `buf` without a trailing UTF-8 sequence that is not complete yet.
fn complete_utf8_prefix(buf: &[u8]) -> usize {
    let n = buf.len();
    for back in 1..=n.min(4) {
        let b = buf[n - back];
        if b & 0xC0 == 0x80 {
            continue; // continuation byte: look further back for the lead byte
        }
        let need = match b {
            0xF0..=0xFF => 4,
            0xE0..=0xEF => 3,
            0xC0..=0xDF => 2,
            _ => 1,
        };
        return if need > back { n - back } else { n };
    }
    n
}

fn uptime() -> f64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

fn serve() -> Result<(), String> {
    let path = find_port()?;
    let open = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))
    };
    let port = open()?;
    let agent = Arc::new(Agent {
        out: Mutex::new(port.try_clone().map_err(|e| e.to_string())?),
        procs: Mutex::new(HashMap::new()),
        next_handle: AtomicU64::new(1),
    });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    agent.send(
        0,
        Reply::Hello {
            version: VERSION,
            kernel,
            uptime_s: uptime(),
        },
    );

    // virtio-serial reads return EOF while the host side is not connected;
    // keep trying for a while before deciding the host is gone for good.
    let mut reader = BufReader::new(port);
    let mut disconnected_since: Option<Instant> = None;
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => {
                let since = *disconnected_since.get_or_insert_with(Instant::now);
                if since.elapsed() > HOST_GONE_AFTER {
                    return Err("host disconnected; powering off".into());
                }
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Ok(_) => disconnected_since = None,
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        }
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let env: Envelope<Request> = match serde_json::from_str(text) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("pollux-lab-agent: bad request {text:?}: {e}");
                continue;
            }
        };
        let a = Arc::clone(&agent);
        std::thread::spawn(move || {
            let reply = a.handle(env.body);
            a.send(env.id, reply);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_tails_cut_in_half_are_held_back() {
        let s = "aé€😀".as_bytes();
        assert_eq!(complete_utf8_prefix(s), s.len());
        assert_eq!(complete_utf8_prefix(&s[..s.len() - 1]), s.len() - 4);
        assert_eq!(complete_utf8_prefix(&s[..s.len() - 3]), s.len() - 4);
        assert_eq!(complete_utf8_prefix(&s[..2]), 1, "half of é");
        assert_eq!(complete_utf8_prefix(b""), 0);
        assert_eq!(complete_utf8_prefix(b"ab"), 2);
    }

    #[test]
    fn run_collects_output_and_status_and_kills_on_timeout() {
        let agent = Agent {
            out: Mutex::new(File::open("/dev/null").unwrap()),
            procs: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
        };
        let r = agent.handle(Request::Run {
            cmd: "echo out; echo err >&2; exit 3".into(),
            stdin: None,
            timeout_ms: 10_000,
        });
        match r {
            Reply::Finished {
                status,
                stdout,
                stderr,
            } => {
                assert_eq!(status, ExitStatus::Code(3));
                assert_eq!(stdout, "out\n");
                assert_eq!(stderr, "err\n");
            }
            other => panic!("{other:?}"),
        }
        let t = Instant::now();
        let r = agent.handle(Request::Run {
            cmd: "echo before; sleep 30".into(),
            stdin: None,
            timeout_ms: 300,
        });
        assert!(t.elapsed() < Duration::from_secs(10));
        assert!(
            matches!(r, Reply::TimedOut { ref stdout, .. } if stdout == "before\n"),
            "{r:?}"
        );

        let r = agent.handle(Request::Run {
            cmd: "tr a-z A-Z".into(),
            stdin: Some("shout\n".into()),
            timeout_ms: 10_000,
        });
        assert!(
            matches!(r, Reply::Finished { ref stdout, .. } if stdout == "SHOUT\n"),
            "{r:?}"
        );
    }

    #[test]
    fn background_processes_stream_output_and_take_signals() {
        let agent = Agent {
            out: Mutex::new(File::open("/dev/null").unwrap()),
            procs: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
        };
        let Reply::Spawned { handle, .. } = agent.handle(Request::Spawn {
            cmd: "echo ready; while read l; do echo got $l; done; sleep 30".into(),
        }) else {
            panic!("spawn failed");
        };
        let r = agent.handle(Request::Stdin {
            handle,
            data: "x\n".into(),
            close: true,
        });
        assert!(matches!(r, Reply::Ok), "{r:?}");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = String::new();
        let mut from = 0;
        while !seen.contains("got x") && Instant::now() < deadline {
            if let Reply::Progress {
                stdout, stdout_len, ..
            } = agent.handle(Request::Poll {
                handle,
                stdout_from: from,
                stderr_from: 0,
            }) {
                seen.push_str(&stdout);
                from = stdout_len;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(seen, "ready\ngot x\n");
        agent.handle(Request::Signal { handle, signal: 15 });
        let r = agent.handle(Request::Wait {
            handle,
            timeout_ms: 10_000,
            stdout_from: from,
            stderr_from: 0,
        });
        assert!(
            matches!(r, Reply::Progress { status: Some(ExitStatus::Signal(15)), ref stdout, .. } if stdout.is_empty()),
            "{r:?}"
        );
        assert!(matches!(
            agent.handle(Request::Release { handle }),
            Reply::Ok
        ));
        assert!(matches!(
            agent.handle(Request::Poll {
                handle,
                stdout_from: 0,
                stderr_from: 0
            }),
            Reply::Error { .. }
        ));
    }
}
