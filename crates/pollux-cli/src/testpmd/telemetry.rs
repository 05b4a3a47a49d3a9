//! A small control socket so other processes can ask a running testpmd for
//! the status of its bonds (`pollux bond show`).
//!
//! The bond's control side stays with testpmd's main thread while the lcores
//! poll its queues; it is wrapped in a [`Published`] port whose
//! [`Port::service`] runs the bond's own service and refreshes a shared
//! snapshot of its status about ten times a second. The main thread answers
//! one line commands on a Unix socket from that snapshot:
//!
//! - `bond show` — every bond in the layout of /proc/net/bonding/bondN
//! - `bond show json` — the same as one JSON array
//!
//! Sockets live in [`run_dir`] as `testpmd-<pid>.sock`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pollux_bond::{BondPort, BondStatus};
use pollux_core::{
    LinkStatus, MacAddr, Port, PortConf, PortError, PortInfo, PortStats, QueueStats, Queues, Xstat,
};

/// Where control sockets live: `$POLLUX_RUN_DIR`, else `/run/pollux` for
/// root, else `$TMPDIR/pollux-<uid>`.
pub fn run_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("POLLUX_RUN_DIR") {
        return PathBuf::from(d);
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        PathBuf::from("/run/pollux")
    } else {
        std::env::temp_dir().join(format!("pollux-{uid}"))
    }
}

/// The latest status of one bond, shared between its lcore and the socket.
pub type Snapshot = Arc<Mutex<BondStatus>>;

/// A bond whose status is published for the control socket.
pub struct Published {
    bond: BondPort,
    snapshot: Snapshot,
    next: Instant,
}

const REFRESH: Duration = Duration::from_millis(100);

impl Published {
    pub fn new(bond: BondPort) -> (Published, Snapshot) {
        let snapshot = Arc::new(Mutex::new(bond.status()));
        (
            Published {
                bond,
                snapshot: snapshot.clone(),
                next: Instant::now() + REFRESH,
            },
            snapshot,
        )
    }

    fn publish(&mut self) {
        let st = self.bond.status();
        *self.snapshot.lock().unwrap_or_else(|e| e.into_inner()) = st;
    }
}

impl Port for Published {
    fn info(&self) -> PortInfo {
        self.bond.info()
    }
    fn configure(&mut self, conf: &PortConf) -> Result<(), PortError> {
        self.bond.configure(conf)
    }
    fn start(&mut self) -> Result<(), PortError> {
        let r = self.bond.start();
        self.publish();
        r
    }
    fn stop(&mut self) -> Result<(), PortError> {
        self.publish();
        self.bond.stop()
    }
    fn take_queues(&mut self) -> Result<Queues, PortError> {
        self.bond.take_queues()
    }
    fn service(&mut self) {
        self.bond.service();
        let now = Instant::now();
        if now >= self.next {
            self.publish();
            self.next = now + REFRESH;
        }
    }
    fn link(&mut self) -> LinkStatus {
        self.bond.link()
    }
    fn mac_addr(&self) -> MacAddr {
        self.bond.mac_addr()
    }
    fn set_mac_addr(&mut self, mac: MacAddr) -> Result<(), PortError> {
        self.bond.set_mac_addr(mac)
    }
    fn set_promiscuous(&mut self, on: bool) -> Result<(), PortError> {
        self.bond.set_promiscuous(on)
    }
    fn set_allmulticast(&mut self, on: bool) -> Result<(), PortError> {
        self.bond.set_allmulticast(on)
    }
    fn set_mc_addr_list(&mut self, addrs: &[MacAddr]) -> Result<(), PortError> {
        self.bond.set_mc_addr_list(addrs)
    }
    fn stats(&self) -> PortStats {
        self.bond.stats()
    }
    fn queue_stats(&self) -> Vec<QueueStats> {
        self.bond.queue_stats()
    }
    fn xstats(&self) -> Vec<Xstat> {
        self.bond.xstats()
    }
    fn reset_stats(&mut self) {
        self.bond.reset_stats()
    }
}

/// The listening side, polled by testpmd's main thread.
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    bonds: Vec<Snapshot>,
}

impl Server {
    /// Listens at `path` (its folder is created with mode 0700).
    pub fn bind(path: &Path, bonds: Vec<Snapshot>) -> std::io::Result<Server> {
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(Server {
            listener,
            path: path.to_path_buf(),
            bonds,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Answers every client that is waiting; never blocks for long.
    pub fn serve_pending(&self) {
        while let Ok((stream, _)) = self.listener.accept() {
            if let Err(e) = self.answer(stream) {
                tracing::debug!("control socket client: {e}");
            }
        }
    }

    fn answer(&self, stream: UnixStream) -> std::io::Result<()> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(Duration::from_millis(500)))?;
        stream.set_write_timeout(Some(Duration::from_millis(500)))?;
        let mut line = String::new();
        BufReader::new(&stream).take_line(&mut line)?;
        let mut out = &stream;
        let statuses: Vec<BondStatus> = self
            .bonds
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect();
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["bond", "show"] => {
                if statuses.is_empty() {
                    writeln!(out, "no bonds in this testpmd")?;
                }
                for s in &statuses {
                    writeln!(out, "{s}")?;
                }
            }
            ["bond", "show", "json"] => {
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string(&statuses).unwrap_or_default()
                )?;
            }
            other => writeln!(
                out,
                "error: unknown command {:?}; try `bond show`",
                other.join(" ")
            )?,
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

trait TakeLine {
    fn take_line(self, line: &mut String) -> std::io::Result<()>;
}

impl<R: std::io::Read> TakeLine for BufReader<R> {
    /// Reads one line of at most 256 bytes.
    fn take_line(self, line: &mut String) -> std::io::Result<()> {
        use std::io::Read;
        self.take(256).read_line(line).map(|_| ())
    }
}
