//! The wire protocol between the host and the guest agent.
//!
//! One JSON object per line in each direction over a virtio-serial port
//! (guest: `/dev/vportNpM` named [`PORT_NAME`]; host: a QEMU unix socket
//! chardev). The host sends [`Envelope<Request>`]s with ids it chooses; the
//! agent answers each with one [`Envelope<Reply>`] carrying the same id, in
//! any order (requests run concurrently). The agent's first line is an
//! [`Envelope<Reply>`] with id 0 and [`Reply::Hello`].
//!
//! Output is carried as UTF-8 text (invalid bytes replaced); binary data goes
//! through the lab's shared folder instead (see [`crate::Lab::shared_dir`]).

use serde::{Deserialize, Serialize};

/// Name of the virtio-serial port the agent talks on.
pub const PORT_NAME: &str = "pollux.agent";

/// Bumped when requests or replies change incompatibly.
pub const VERSION: u32 = 1;

/// A message with its request id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// Chosen by the host; 0 is the agent's hello.
    pub id: u64,
    /// The message.
    pub body: T,
}

/// What the host asks the agent to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// Run `sh -c cmd` to completion; kill its process group after
    /// `timeout_ms`. Replies [`Reply::Finished`] or [`Reply::TimedOut`].
    Run {
        /// Shell command.
        cmd: String,
        /// Written to its stdin, which is then closed.
        stdin: Option<String>,
        /// Kill the command after this long.
        timeout_ms: u64,
    },
    /// Start `sh -c cmd` in the background in a process group of its own, with
    /// stdin, stdout and stderr piped. Replies [`Reply::Spawned`].
    Spawn {
        /// Shell command.
        cmd: String,
    },
    /// Write to a background process's stdin (and optionally close it).
    /// Replies [`Reply::Ok`].
    Stdin {
        /// From [`Reply::Spawned`].
        handle: u64,
        /// Text to write.
        data: String,
        /// Close stdin after writing.
        close: bool,
    },
    /// Send a signal to a background process's whole process group.
    /// Replies [`Reply::Ok`].
    Signal {
        /// From [`Reply::Spawned`].
        handle: u64,
        /// Signal number (e.g. 2 for SIGINT, 15 for SIGTERM, 9 for SIGKILL).
        signal: i32,
    },
    /// Output of a background process from the given byte offsets on, and
    /// its exit status if it has ended. Replies [`Reply::Progress`].
    Poll {
        /// From [`Reply::Spawned`].
        handle: u64,
        /// Bytes of stdout the host already has.
        stdout_from: u64,
        /// Bytes of stderr the host already has.
        stderr_from: u64,
    },
    /// Wait up to `timeout_ms` for a background process to end, then reply
    /// [`Reply::Progress`] like `Poll` (with `status` None if still running).
    Wait {
        /// From [`Reply::Spawned`].
        handle: u64,
        /// How long to wait.
        timeout_ms: u64,
        /// Bytes of stdout the host already has.
        stdout_from: u64,
        /// Bytes of stderr the host already has.
        stderr_from: u64,
    },
    /// Forget an ended background process (kills it first if it still runs).
    /// Replies [`Reply::Ok`].
    Release {
        /// From [`Reply::Spawned`].
        handle: u64,
    },
}

/// How a guest process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitStatus {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl ExitStatus {
    /// True for exit code 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// What the agent answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Reply {
    /// First message after the agent starts.
    Hello {
        /// The agent's [`VERSION`].
        version: u32,
        /// `uname -r` of the guest.
        kernel: String,
        /// Guest uptime in seconds when the agent started.
        uptime_s: f64,
    },
    /// A `Run` command ended.
    Finished {
        /// How it ended.
        status: ExitStatus,
        /// Its stdout.
        stdout: String,
        /// Its stderr.
        stderr: String,
    },
    /// A `Run` command was killed after its timeout.
    TimedOut {
        /// What it printed on stdout before.
        stdout: String,
        /// What it printed on stderr before.
        stderr: String,
    },
    /// A background process started.
    Spawned {
        /// Handle for later requests.
        handle: u64,
        /// Its guest pid (also its process group id).
        pid: u32,
    },
    /// Output of a background process since the given offsets.
    Progress {
        /// New stdout bytes.
        stdout: String,
        /// New stderr bytes.
        stderr: String,
        /// Total stdout bytes so far (the next `stdout_from`).
        stdout_len: u64,
        /// Total stderr bytes so far.
        stderr_len: u64,
        /// Exit status once it has ended and its output is complete.
        status: Option<ExitStatus>,
    },
    /// Done.
    Ok,
    /// The request failed.
    Error {
        /// Why.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_survive_a_round_trip_as_one_line() {
        let req = Envelope {
            id: 7,
            body: Request::Run {
                cmd: "echo 'a\nb'".into(),
                stdin: None,
                timeout_ms: 5,
            },
        };
        let line = serde_json::to_string(&req).unwrap();
        assert!(!line.contains('\n'), "a request is one line: {line}");
        let back: Envelope<Request> = serde_json::from_str(&line).unwrap();
        assert_eq!(back.id, 7);
        assert!(matches!(back.body, Request::Run { ref cmd, .. } if cmd == "echo 'a\nb'"));

        let rep = Envelope {
            id: 7,
            body: Reply::Finished {
                status: ExitStatus::Signal(9),
                stdout: "x\n".into(),
                stderr: String::new(),
            },
        };
        let line = serde_json::to_string(&rep).unwrap();
        let back: Envelope<Reply> = serde_json::from_str(&line).unwrap();
        assert!(matches!(
            back.body,
            Reply::Finished {
                status: ExitStatus::Signal(9),
                ..
            }
        ));
    }

    #[test]
    fn exit_status_reads_well() {
        assert!(ExitStatus::Code(0).success());
        assert!(!ExitStatus::Code(1).success());
        assert!(!ExitStatus::Signal(15).success());
        assert_eq!(ExitStatus::Signal(15).to_string(), "killed by signal 15");
    }
}
