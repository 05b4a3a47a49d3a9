//! The one error type of the lab.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while provisioning, booting or driving a lab guest.
///
/// Messages are written for the person reading a failed test: they say what
/// was attempted, why it failed and, where the cause is on the host, what to
/// run to fix it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A part of the lab (QEMU, the guest kernel, virtme-ng, the agent) is
    /// missing or unusable on this host.
    #[error("lab cannot start: {0}")]
    Setup(String),

    /// The topology asks for something the lab cannot build.
    #[error("invalid topology: {0}")]
    Topology(String),

    /// The guest did not come up.
    #[error("guest did not boot: {reason}; console log: {}\n--- last console lines ---\n{tail}", console.display())]
    Boot {
        /// What went wrong.
        reason: String,
        /// The console log, kept on disk.
        console: PathBuf,
        /// The last lines of the console log.
        tail: String,
    },

    /// A wait ran out of time.
    #[error("timed out after {:.1} s: {what}", after.as_secs_f64())]
    Timeout {
        /// What was being waited for.
        what: String,
        /// How long it waited.
        after: Duration,
    },

    /// A guest command ran but failed (non-zero exit or killed by a signal).
    #[error(
        "guest command failed ({status}): {cmd}\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}"
    )]
    Command {
        /// The shell command.
        cmd: String,
        /// How it ended.
        status: String,
        /// What it printed on stdout.
        stdout: String,
        /// What it printed on stderr.
        stderr: String,
    },

    /// The guest agent or the QEMU monitor answered with an error or broke
    /// the protocol.
    #[error("{0}")]
    Protocol(String),

    /// The agent connection is gone: the guest crashed, powered off or QEMU died.
    #[error("guest agent connection lost (guest crashed or QEMU exited){detail}; console log: {}", console.display())]
    Disconnected {
        /// The console log, kept on disk.
        console: PathBuf,
        /// What the lab found out afterwards: how QEMU ended and the last
        /// console lines once every console byte was written (empty when
        /// the connection broke before the lab could look).
        detail: String,
    },

    /// A host-side I/O operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What the lab was doing.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The lab's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds a description of the operation to an I/O error.
pub(crate) trait IoContext<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            what: what(),
            source,
        })
    }
}

/// Whether a panic message is that of a test that lost its guest: an
/// [`Error::Disconnected`] (as `expect`/`unwrap` print it, `{:?}`) after
/// which vng/QEMU had exited. A test whose measurement is worth one more
/// boot when the emulator dies under it (docs/lab.md's known fault) uses it
/// to tell that case from every other failure, which must stand.
pub fn is_guest_loss(panic_message: &str) -> bool {
    panic_message.contains("Disconnected {") && panic_message.contains("vng/QEMU exited")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_lost_guest_counts_as_one() {
        let lost = Error::Disconnected {
            console: "/r/console.log".into(),
            detail: ": vng/QEMU exited (exit status: 255)\nQEMU's QMP events: none".into(),
        };
        assert!(is_guest_loss(&format!("pollux rxonly: {lost:?}")));
        // The agent died but QEMU did not: a real failure.
        let agent = Error::Disconnected {
            console: "/r/console.log".into(),
            detail: ": QEMU still running 10 s after the connection broke".into(),
        };
        assert!(!is_guest_loss(&format!("{agent:?}")));
        let t = Error::Timeout {
            what: "vng/QEMU exited".into(),
            after: std::time::Duration::from_secs(1),
        };
        assert!(!is_guest_loss(&format!("{t:?}")));
        assert!(!is_guest_loss(
            "assertion failed: ours_wire / dpdk_wire >= 0.9"
        ));
    }
}
