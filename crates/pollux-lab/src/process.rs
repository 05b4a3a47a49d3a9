//! Long-running guest processes: start one, talk to it, read its output while
//! it runs, signal it, wait for it.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::lab::{Lab, Output};
use crate::proto::{ExitStatus, Reply, Request};

/// Extra time the host grants the agent beyond a guest-side timeout.
pub(crate) const REPLY_MARGIN: Duration = Duration::from_secs(15);

/// A process started with [`Lab::spawn`] (`sh -c CMD` in a process group of
/// its own, stdin/stdout/stderr piped to the host).
///
/// Output is collected as it arrives: [`GuestProcess::poll`] fetches what is
/// new, [`GuestProcess::stdout`] shows everything so far. Dropping a process
/// that still runs kills its process group.
#[derive(Debug)]
pub struct GuestProcess<'lab> {
    lab: &'lab Lab,
    cmd: String,
    handle: u64,
    pid: u32,
    stdout: String,
    stderr: String,
    stdout_len: u64,
    stderr_len: u64,
    status: Option<ExitStatus>,
    released: bool,
}

impl<'lab> GuestProcess<'lab> {
    pub(crate) fn new(lab: &'lab Lab, cmd: String, handle: u64, pid: u32) -> Self {
        GuestProcess {
            lab,
            cmd,
            handle,
            pid,
            stdout: String::new(),
            stderr: String::new(),
            stdout_len: 0,
            stderr_len: 0,
            status: None,
            released: false,
        }
    }

    /// Its guest pid (also its process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The command it runs.
    pub fn cmd(&self) -> &str {
        &self.cmd
    }

    /// Stdout received so far (call [`GuestProcess::poll`] to fetch more).
    pub fn stdout(&self) -> &str {
        &self.stdout
    }

    /// Stderr received so far.
    pub fn stderr(&self) -> &str {
        &self.stderr
    }

    /// How it ended, once it has.
    pub fn status(&self) -> Option<ExitStatus> {
        self.status
    }

    fn absorb(&mut self, reply: Reply) -> Result<()> {
        match reply {
            Reply::Progress {
                stdout,
                stderr,
                stdout_len,
                stderr_len,
                status,
            } => {
                self.stdout.push_str(&stdout);
                self.stderr.push_str(&stderr);
                self.stdout_len = stdout_len;
                self.stderr_len = stderr_len;
                if status.is_some() {
                    self.status = status;
                }
                Ok(())
            }
            other => Err(Error::Protocol(format!(
                "guest agent answered a poll with {other:?}"
            ))),
        }
    }

    /// Fetches new output; returns the exit status if the process has ended.
    pub fn poll(&mut self) -> Result<Option<ExitStatus>> {
        let r = self.lab.request(
            Request::Poll {
                handle: self.handle,
                stdout_from: self.stdout_len,
                stderr_from: self.stderr_len,
            },
            REPLY_MARGIN,
        )?;
        self.absorb(r)?;
        Ok(self.status)
    }

    /// Writes `data` to its stdin (e.g. a command for an interactive
    /// `dpdk-testpmd -i`).
    pub fn write_stdin(&self, data: &str) -> Result<()> {
        self.stdin(data, false)
    }

    /// Closes its stdin.
    pub fn close_stdin(&self) -> Result<()> {
        self.stdin("", true)
    }

    fn stdin(&self, data: &str, close: bool) -> Result<()> {
        self.lab
            .request(
                Request::Stdin {
                    handle: self.handle,
                    data: data.to_owned(),
                    close,
                },
                REPLY_MARGIN,
            )
            .map(drop)
    }

    /// Sends a signal (`libc`-style number) to its process group.
    pub fn signal(&self, signal: i32) -> Result<()> {
        self.lab
            .request(
                Request::Signal {
                    handle: self.handle,
                    signal,
                },
                REPLY_MARGIN,
            )
            .map(drop)
    }

    /// SIGINT, as Ctrl-C would (most tools print their summary on it).
    pub fn interrupt(&self) -> Result<()> {
        self.signal(2)
    }

    /// Polls until stdout or stderr contains `needle`. Fails if the process
    /// ends first or `timeout` passes; the error carries the output so far.
    pub fn wait_for_output(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.poll()?;
            if self.stdout.contains(needle) || self.stderr.contains(needle) {
                return Ok(());
            }
            if let Some(st) = status {
                return Err(Error::Command {
                    cmd: format!("{} (waiting for {needle:?} in its output)", self.cmd),
                    status: st.to_string(),
                    stdout: self.stdout.clone(),
                    stderr: self.stderr.clone(),
                });
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!(
                        "{needle:?} in the output of {:?}; stdout so far:\n{}\nstderr so far:\n{}",
                        self.cmd, self.stdout, self.stderr
                    ),
                    after: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits up to `timeout` for the process to end and returns all its
    /// output. On timeout the process keeps running (stop it with
    /// [`GuestProcess::stop`] or by dropping it).
    pub fn wait(&mut self, timeout: Duration) -> Result<Output> {
        if self.status.is_none() {
            let r = self.lab.request(
                Request::Wait {
                    handle: self.handle,
                    timeout_ms: timeout.as_millis() as u64,
                    stdout_from: self.stdout_len,
                    stderr_from: self.stderr_len,
                },
                timeout + REPLY_MARGIN,
            )?;
            self.absorb(r)?;
        }
        match self.status {
            Some(status) => {
                self.lab.log(&format!(
                    "# background {:?} (pid {}) ended: {status}\n{}{}",
                    self.cmd, self.pid, self.stdout, self.stderr
                ));
                Ok(Output {
                    status,
                    stdout: self.stdout.clone(),
                    stderr: self.stderr.clone(),
                })
            }
            None => Err(Error::Timeout {
                what: format!("guest process {:?} to end", self.cmd),
                after: timeout,
            }),
        }
    }

    /// Ends the process: `signal` (e.g. 2 for SIGINT so it prints its
    /// summary), then SIGKILL if it has not ended after `grace`. Returns all
    /// its output.
    pub fn stop_with(mut self, signal: i32, grace: Duration) -> Result<Output> {
        if self.status.is_none() {
            self.signal(signal)?;
            if self.wait(grace).is_err() {
                self.signal(9)?;
                self.wait(Duration::from_secs(10))?;
            }
        }
        self.wait(Duration::ZERO)
    }

    /// [`GuestProcess::stop_with`] SIGTERM and a 10 s grace period.
    pub fn stop(self) -> Result<Output> {
        self.stop_with(15, Duration::from_secs(10))
    }
}

impl Drop for GuestProcess<'_> {
    fn drop(&mut self) {
        if !self.released {
            self.released = true;
            // Kills it if it still runs; the guest may already be gone.
            let _ = self.lab.request(
                Request::Release {
                    handle: self.handle,
                },
                Duration::from_secs(5),
            );
        }
    }
}
