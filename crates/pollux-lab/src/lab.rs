//! A booted guest: [`Lab::boot`] and everything a test does with it.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use crate::client::{connect_unix, AgentClient};
use crate::env::{target_dir, LabEnv};
use crate::error::{Error, IoContext, Result};
use crate::hostns::HostNetns;
use crate::process::{GuestProcess, REPLY_MARGIN};
use crate::proto::{ExitStatus, Reply, Request, PORT_NAME, VERSION};
use crate::qmp::Qmp;
use crate::topology::{NicModel, NicPlan, NicRole, Topology};

/// What a finished guest command returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// How it ended.
    pub status: ExitStatus,
    /// Its stdout (UTF-8, invalid bytes replaced).
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl Output {
    /// True for exit code 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// How to boot, beyond the topology. `LabOptions::default()` reads the
/// `POLLUX_LAB_*` environment.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Label of the run folder (default: the current thread's name, which in
    /// a test is the test's name).
    pub name: String,
    /// From starting QEMU to the agent's hello (default 300 s, or
    /// `POLLUX_LAB_BOOT_TIMEOUT` in seconds). TCG boots take 15-40 s here,
    /// more while the machine builds.
    pub boot_timeout: Duration,
    /// Each setup step after the hello (default 60 s).
    pub setup_timeout: Duration,
    /// Keep the run folder even when the test passes (default: set if
    /// `POLLUX_LAB_KEEP` is set).
    pub keep_run_dir: bool,
    /// The parts to boot with (default: [`LabEnv::discover`]).
    pub env: Option<LabEnv>,
    /// How long to wait for another process's lab guest to end before
    /// booting (default 3600 s, or `POLLUX_LAB_LOCK_TIMEOUT` in seconds).
    pub lock_timeout: Duration,
}

impl Default for LabOptions {
    fn default() -> Self {
        let boot_timeout =
            secs_from_env("POLLUX_LAB_BOOT_TIMEOUT").unwrap_or(Duration::from_secs(300));
        LabOptions {
            name: std::thread::current().name().unwrap_or("lab").to_owned(),
            boot_timeout,
            setup_timeout: Duration::from_secs(60),
            keep_run_dir: std::env::var_os("POLLUX_LAB_KEEP").is_some(),
            env: None,
            lock_timeout: secs_from_env("POLLUX_LAB_LOCK_TIMEOUT")
                .unwrap_or(Duration::from_secs(3600)),
        }
    }
}

fn secs_from_env(name: &str) -> Option<Duration> {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// A VF as the guest sees it after boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfInfo {
    /// Index of its PF.
    pub pf: usize,
    /// VF number on that PF (0-based, as in `ip link set <pf> vf N`).
    pub index: usize,
    /// PCI address, e.g. `0000:01:10.2`.
    pub pci: String,
    /// Its IOMMU group (the N of `/dev/vfio/N` once bound to vfio-pci).
    pub iommu_group: Option<u32>,
}

/// Options of [`Lab::pktgen_with`]; the default is [`Lab::pktgen`]'s: one
/// flow, no gap, no UDP checksum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pktgen {
    /// UDP flows: source ports [`Pktgen::FIRST_PORT`] and up, in turn (0 or
    /// 1: pktgen's single flow, source port 9).
    pub flows: u16,
    /// Nanoseconds between frames (pktgen's `delay`).
    pub delay_ns: u64,
    /// Frames carry a UDP checksum (pktgen's `UDPCSUM`; a NIC with
    /// checksum offload is asked to complete it).
    pub udp_csum: bool,
    /// Source IPv4 address (default: the peer's own).
    pub src_ip: Option<String>,
}

impl Pktgen {
    /// The first UDP source port of several flows.
    pub const FIRST_PORT: u16 = 1024;
}

/// A NIC driven by the guest kernel, on the far side of a wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// QEMU netdev id, for [`Lab::set_link`].
    pub netdev: String,
    /// Its model.
    pub model: NicModel,
    /// PCI address.
    pub pci: String,
    /// Kernel interface name (inside `netns`).
    pub ifname: String,
    /// MAC address.
    pub mac: String,
    /// Guest network namespace it lives in (None: the root namespace).
    pub netns: Option<String>,
}

impl PeerInfo {
    /// `cmd` wrapped to run inside the peer's namespace.
    pub fn wrap(&self, cmd: &str) -> String {
        in_netns(self.netns.as_deref(), cmd)
    }
}

/// An igb PF as the guest sees it after boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PfInfo {
    /// PF index in the topology.
    pub index: usize,
    /// QEMU netdev id of its port, for [`Lab::set_link`].
    pub netdev: String,
    /// PCI address, e.g. `0000:01:00.0`.
    pub pci: String,
    /// Kernel interface name (root namespace).
    pub ifname: String,
    /// MAC address.
    pub mac: String,
    /// Its VFs, by VF number.
    pub vfs: Vec<VfInfo>,
    /// The peers on its wire.
    pub peers: Vec<PeerInfo>,
}

/// A virtio-net SR-IOV PF as the guest sees it after boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtioPfInfo {
    /// Virtio PF index in the topology.
    pub index: usize,
    /// QEMU netdev id of the PF (alone on its hub).
    pub netdev: String,
    /// PCI address of the PF (function 0 on its root port's bus).
    pub pci: String,
    /// The PF's kernel interface (root namespace, down).
    pub ifname: String,
    /// Its VFs, by VF number; `pf` in each is this PF's index.
    pub vfs: Vec<VfInfo>,
    /// QEMU netdev id of each VF's end of its wire, by VF number.
    pub vf_netdevs: Vec<String>,
    /// The MAC QEMU gives each VF (its `VIRTIO_NET_F_MAC`), by VF number.
    pub vf_macs: Vec<String>,
    /// The peer on each VF's wire, by VF number.
    pub vf_peers: Vec<PeerInfo>,
}

/// A function served by `pollux-model`, as the guest sees it after boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// Model index in the topology.
    pub index: usize,
    /// The model kind (`dma-test`, ...).
    pub kind: String,
    /// PCI address in the guest.
    pub pci: String,
    /// Its IOMMU group.
    pub iommu_group: Option<u32>,
    /// The vfio-user socket on the host.
    pub socket: PathBuf,
    /// The model's violation log on the host (one line per violation).
    pub violations: PathBuf,
    /// The model's own log (stderr) on the host.
    pub log: PathBuf,
    /// Its control channel (`pollux-model --control`).
    pub control: PathBuf,
    /// The kernel NIC on its wire, if it has one.
    pub peer: Option<PeerInfo>,
}

/// A `pollux-model` process the lab started; killed when dropped.
#[derive(Debug)]
struct ModelProc {
    child: Mutex<Child>,
}

impl Drop for ModelProc {
    fn drop(&mut self) {
        let mut c = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// `cmd` wrapped in `ip netns exec NS sh -c '...'` (unchanged for None).
pub fn in_netns(netns: Option<&str>, cmd: &str) -> String {
    match netns {
        Some(ns) => format!(
            "ip netns exec {} sh -c {}",
            shell_quote(ns),
            shell_quote(cmd)
        ),
        None => cmd.to_owned(),
    }
}

/// Quotes `s` for `/bin/sh`.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(crate::topology::is_shell_safe) {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// QEMU under virtme-ng, in a process group of its own.
#[derive(Debug)]
struct Vm {
    child: Mutex<Child>,
    pgid: i32,
    /// The threads copying vng's stdout and stderr (the guest console and
    /// QEMU's own messages) into console.log; they end when QEMU has exited
    /// and every byte is in the file.
    console_copiers: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Vm {
    /// Err if vng/QEMU has exited.
    fn alive(&self) -> std::result::Result<(), String> {
        let mut c = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        match c.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(st)) => Err(format!("vng/QEMU exited ({st})")),
            Err(e) => Err(format!("cannot check on vng/QEMU: {e}")),
        }
    }

    /// Kills the whole group (vng, virtme-run, QEMU) and reaps vng.
    fn kill(&self) {
        let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
        let mut c = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match c.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                _ => return,
            }
        }
    }

    /// Waits up to `timeout` for every console byte to reach console.log
    /// (QEMU must have exited); true if they all did.
    fn flush_console(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut copiers = self
            .console_copiers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            if copiers.iter().all(|h| h.is_finished()) {
                for h in copiers.drain(..) {
                    let _ = h.join();
                }
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `timeout` for vng to exit by itself.
    fn wait_exit(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.alive().is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A booted lab guest. Dropping it kills QEMU; the run folder (console log,
/// transcript, shared folder) is deleted when the test passed and kept, with
/// its path printed, when the thread is panicking or [`Lab::keep_run_dir`]
/// was called.
#[derive(Debug)]
pub struct Lab {
    topology: Topology,
    env: LabEnv,
    vm: Vm,
    agent: AgentClient,
    qmp: Qmp,
    run_dir: PathBuf,
    console: PathBuf,
    shared: PathBuf,
    transcript: Mutex<File>,
    _sock_dir: tempfile::TempDir,
    pfs: Vec<PfInfo>,
    virtio_pfs: Vec<VirtioPfInfo>,
    models: Vec<ModelInfo>,
    model_procs: Vec<ModelProc>,
    segments: Vec<Vec<PeerInfo>>,
    /// The host namespace of tap wires; deleted after `vm` is killed.
    host_netns: Option<HostNetns>,
    boot_time: Duration,
    ready_time: Duration,
    keep: AtomicBool,
    guest_kernel: String,
    // Last: released only after `vm` (declared earlier) has been dropped.
    _machine: MachineLock,
}

static RUN_SEQ: AtomicU32 = AtomicU32::new(0);

/// One lab guest per machine at a time, across processes: two TCG guests on
/// two cores starve each other into RCU stalls and boot timeouts (seen when
/// two engineers' suites overlapped). Guests of the same process share the
/// lock, so a test may hold two labs.
static MACHINE_LOCK: Mutex<Option<(nix::fcntl::Flock<File>, usize)>> = Mutex::new(None);

/// Holds [`MACHINE_LOCK`] while a guest lives.
#[derive(Debug)]
struct MachineLock;

impl MachineLock {
    fn acquire(timeout: Duration) -> Result<MachineLock> {
        use nix::fcntl::{Flock, FlockArg};
        let mut held = MACHINE_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, n)) = held.as_mut() {
            *n += 1;
            return Ok(MachineLock);
        }
        let path = std::env::temp_dir().join("pollux-lab.lock");
        let deadline = Instant::now() + timeout;
        let mut told = false;
        loop {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .ctx(|| format!("cannot open {}", path.display()))?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => {
                    *held = Some((lock, 1));
                    return Ok(MachineLock);
                }
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                    if Instant::now() >= deadline {
                        return Err(Error::Timeout {
                            what: format!(
                                "another process's lab guest to finish ({} is locked; POLLUX_LAB_LOCK_TIMEOUT raises the limit)",
                                path.display()
                            ),
                            after: timeout,
                        });
                    }
                    if !told {
                        eprintln!(
                            "pollux-lab: another lab guest runs on this machine; waiting for it ({})",
                            path.display()
                        );
                        told = true;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err((_, e)) => {
                    return Err(Error::Setup(format!("cannot lock {}: {e}", path.display())))
                }
            }
        }
    }
}

impl Drop for MachineLock {
    fn drop(&mut self) {
        let mut held = MACHINE_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, n)) = held.as_mut() {
            *n -= 1;
            if *n == 0 {
                *held = None; // unlocks
            }
        }
    }
}

fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let s = s.trim_matches('-');
    let head: String = s.chars().take(48).collect();
    if head.is_empty() {
        "lab".into()
    } else {
        head
    }
}

/// QEMU's trace event for a frame the igb model could not write to a
/// receive queue for lack of descriptors (hw/net/trace-events:
/// `e1000e_rx_not_written_to_guest(int queue_idx) "Received packet NOT
/// written to guest (queue %d)"`).
const RX_DROP_EVENT: &str = "e1000e_rx_not_written_to_guest";

/// QEMU's log in the run folder: [`RX_DROP_EVENT`] lines and CPU resets.
const QEMU_LOG: &str = "qemu.log";

/// What QEMU's log says about CPU resets: how many, whether one was a
/// triple fault, and the last one's header and instruction pointer.
fn reset_summary(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let resets: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("CPU Reset"))
        .collect();
    let triple = lines.iter().filter(|l| l.contains("Triple fault")).count();
    let mut out = format!(
        "{} CPU resets logged (a boot makes a few), {triple} triple faults",
        resets.len()
    );
    if let Some(&i) = resets.last() {
        let ip = lines[i..]
            .iter()
            .take(8)
            .flat_map(|l| l.split_whitespace())
            .find(|w| w.starts_with("RIP=") || w.starts_with("EIP="));
        out.push_str(&format!("; last: {}", lines[i]));
        if let Some(ip) = ip {
            out.push_str(&format!(" at {ip}"));
        }
    }
    out
}

/// Counts [`RX_DROP_EVENT`] lines of QEMU's log trace backend by the queue
/// index, the line's last number (`... (queue 3)`). A line of that event
/// with no `(queue N)` is an error (the event's format changed), not a
/// silent zero; a partial last line (QEMU writing as we read) is skipped.
fn parse_rx_drops(text: &str) -> Result<BTreeMap<u32, u64>> {
    let mut out = BTreeMap::new();
    let complete = match text.rfind('\n') {
        Some(i) => &text[..i],
        None => "",
    };
    for line in complete.lines().filter(|l| l.contains(RX_DROP_EVENT)) {
        let q: u32 = line
            .rsplit_once("(queue ")
            .and_then(|(_, w)| w.trim_end().strip_suffix(')')?.parse().ok())
            .ok_or_else(|| {
                Error::Setup(format!(
                    "QEMU's {RX_DROP_EVENT} line does not end in a queue number: {line:?}"
                ))
            })?;
        *out.entry(q).or_insert(0) += 1;
    }
    Ok(out)
}

/// The last `lines` lines of a file.
pub fn tail_of(path: &Path, lines: usize) -> String {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) => return format!("(cannot read {}: {e})", path.display()),
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    let mut out = all[start..].join("\n");
    out.push('\n');
    out
}

/// Copies vng's stdout and stderr into the console log as they arrive (and to
/// our stderr too when `POLLUX_LAB_CONSOLE` is set). The threads end when
/// QEMU and vng have exited.
fn copy_console(
    stdout: Option<std::process::ChildStdout>,
    stderr: Option<std::process::ChildStderr>,
    file: File,
) -> Vec<std::thread::JoinHandle<()>> {
    let mut copiers = Vec::new();
    let file = std::sync::Arc::new(Mutex::new(file));
    let echo = std::env::var_os("POLLUX_LAB_CONSOLE").is_some();
    let streams: [Option<Box<dyn Read + Send>>; 2] = [
        stdout.map(|s| Box::new(s) as _),
        stderr.map(|s| Box::new(s) as _),
    ];
    for mut s in streams.into_iter().flatten() {
        let f = std::sync::Arc::clone(&file);
        let copier = std::thread::Builder::new()
            .name("pollux-lab-console".into())
            .spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let _ = f
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .write_all(&buf[..n]);
                    if echo {
                        let _ = std::io::stderr().write_all(&buf[..n]);
                    }
                }
            });
        copiers.extend(copier);
    }
    copiers
}

/// Asks the OS for a free TCP port on 127.0.0.1 (for socket wires).
/// Starts `pollux-model serve` for each modelled function and waits (10 s
/// at most each) for its socket; a model that exits or never listens fails
/// the boot with its own log.
fn start_models(
    topology: &Topology,
    sock: &str,
    run_dir: &Path,
) -> Result<(Vec<ModelInfo>, Vec<ModelProc>)> {
    let (mut infos, mut procs) = (Vec::new(), Vec::new());
    if topology.models().is_empty() {
        return Ok((infos, procs));
    }
    let bin = crate::env::host_binary("pollux-model")?;
    for (i, m) in topology.models().iter().enumerate() {
        let socket = PathBuf::from(format!("{sock}/model{i}.sock"));
        let violations = run_dir.join(format!("model{i}.violations"));
        let control = PathBuf::from(format!("{sock}/model{i}.ctl"));
        let log = run_dir.join(format!("model{i}.log"));
        let err = File::create(&log).ctx(|| format!("cannot create {}", log.display()))?;
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new(&bin)
                .args(["serve", m.kind()])
                .arg("--socket")
                .arg(&socket)
                .arg("--violations")
                .arg(&violations)
                .arg("--control")
                .arg(&control)
                .args(
                    m.has_peer()
                        .then(|| {
                            let (peer, me) = crate::topology::model_wire_paths(sock, i);
                            ["--wire".to_owned(), format!("unix:{me},{peer}")]
                        })
                        .into_iter()
                        .flatten(),
                )
                .args(m.args())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(err)
                .process_group(0)
                .spawn()
                .ctx(|| format!("cannot start {}", bin.display()))?
        };
        let proc = ModelProc {
            child: Mutex::new(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            let exited = proc
                .child
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .try_wait()
                .ok()
                .flatten();
            if exited.is_some() || Instant::now() >= deadline {
                return Err(Error::Setup(format!(
                    "model {i} ({}) {}: {}",
                    m.kind(),
                    match exited {
                        Some(st) => format!("exited ({st})"),
                        None => "did not listen within 10 s".into(),
                    },
                    tail_of(&log, 20)
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        infos.push(ModelInfo {
            index: i,
            kind: m.kind().to_owned(),
            pci: String::new(),
            iommu_group: None,
            socket,
            violations,
            log,
            control,
            peer: None,
        });
        procs.push(proc);
    }
    Ok((infos, procs))
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .ctx(|| "cannot find a free port on 127.0.0.1".into())?;
    Ok(l.local_addr()
        .ctx(|| "cannot read a local address".into())?
        .port())
}

impl Lab {
    /// Boots `topology` with [`LabOptions::default`].
    pub fn boot(topology: &Topology) -> Result<Lab> {
        Lab::boot_with(topology, LabOptions::default())
    }

    /// Boots `topology`: starts QEMU (TCG) under virtme-ng with the guest
    /// agent as the guest's command, waits for the agent, loads the NIC
    /// drivers, vfio-pci and vfio_iommu_type1, moves peers into their
    /// namespaces, creates the VFs (with `sriov_drivers_autoprobe` off, so no
    /// guest driver grabs them), sets PFs up, and binds VFs to vfio-pci where
    /// the topology asks.
    ///
    /// On failure QEMU is killed and the error names the kept console log.
    pub fn boot_with(topology: &Topology, opts: LabOptions) -> Result<Lab> {
        topology.validate()?;
        let env = match opts.env.clone() {
            Some(e) => e,
            None => LabEnv::discover()?,
        };

        let machine = MachineLock::acquire(opts.lock_timeout)?;
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let run_dir = target_dir().join("pollux-lab/runs").join(format!(
            "{}-{stamp}-{}-{}",
            sanitize(&opts.name),
            std::process::id(),
            RUN_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let shared = run_dir.join("shared");
        std::fs::create_dir_all(&shared)
            .ctx(|| format!("cannot create the run folder {}", shared.display()))?;
        let console = run_dir.join("console.log");
        let transcript = File::create(run_dir.join("transcript.log"))
            .ctx(|| format!("cannot create {}", run_dir.join("transcript.log").display()))?;
        // Unix socket paths must stay short (108 bytes), so not under target/.
        let sock_dir = tempfile::Builder::new()
            .prefix("pollux-lab-")
            .tempdir()
            .ctx(|| "cannot create a socket folder".into())?;
        let sock = sock_dir.path().to_string_lossy().into_owned();
        for p in [
            &sock,
            &shared.to_string_lossy().into_owned(),
            &run_dir.to_string_lossy().into_owned(),
        ] {
            if !p.chars().all(crate::topology::is_shell_safe) {
                return Err(Error::Setup(format!(
                    "path {p:?} has characters vng's shell would split; move the checkout or set TMPDIR/CARGO_TARGET_DIR to a plain path"
                )));
            }
        }

        let mut qemu_opts = topology.qemu_args(&sock, &mut free_port)?;
        // Tap wires and model wires: QEMU runs in a host namespace of the
        // run's own (see hostns for why model wires need one too).
        let taps = topology.host_taps();
        let model_wires = topology.models().iter().any(|m| m.has_peer());
        let host_netns = if taps.is_empty() && !model_wires {
            None
        } else {
            Some(HostNetns::create(
                RUN_SEQ.fetch_add(1, Ordering::Relaxed),
                &taps,
            )?)
        };
        let qemu = match &host_netns {
            Some(ns) => ns.qemu_wrapper(&run_dir.join("qemu"), &env.qemu)?,
            None => env.qemu.clone(),
        };
        let (models, model_procs) = start_models(topology, &sock, &run_dir)?;
        for (m, (port, _)) in models.iter().zip(topology.model_ports()) {
            // JSON (the socket is a struct); single-quoted for vng's shell.
            let dev = json!({
                "driver": "vfio-user-pci",
                "id": format!("model{}", m.index),
                "bus": format!("rp{port}"),
                "socket": {"type": "unix", "path": m.socket.to_string_lossy()},
            });
            qemu_opts.push("-device".into());
            qemu_opts.push(shell_quote(&dev.to_string()));
        }
        // QEMU's own log, in the run folder: the igb model's record of
        // every frame it had to drop because the target queue had no free
        // descriptor (trace event `e1000e_rx_not_written_to_guest`, with the
        // queue index; the judge of whether a receive test's missing frames
        // were lost in a driver or never reached its ring, see
        // `rx_queue_drops`), and every CPU reset with the registers before
        // it, "Triple fault" included (`-d cpu_reset`), for the post-mortem
        // of a guest that went down.
        let qemu_log = run_dir.join(QEMU_LOG);
        qemu_opts.extend([
            "-trace".to_owned(),
            format!("enable={RX_DROP_EVENT},file={}", qemu_log.to_string_lossy()),
            "-d".to_owned(),
            "cpu_reset".to_owned(),
        ]);
        let qmp_path = format!("{sock}/qmp.sock");
        let agent_path = format!("{sock}/agent.sock");
        for (k, v) in [
            (
                "-chardev",
                format!("socket,id=polluxqmp,path={qmp_path},server=on,wait=off"),
            ),
            ("-mon", "chardev=polluxqmp,mode=control".to_owned()),
            ("-device", "virtio-serial-pci,id=polluxser".to_owned()),
            (
                "-chardev",
                format!("socket,id=polluxagent,path={agent_path},server=on,wait=off"),
            ),
            (
                "-device",
                format!("virtserialport,bus=polluxser.0,chardev=polluxagent,name={PORT_NAME}"),
            ),
        ] {
            qemu_opts.push(k.to_owned());
            qemu_opts.push(v);
        }

        let mut append = vec!["intel_iommu=on".to_owned()];
        append.extend(topology.kernel_args().iter().cloned());
        let mut args: Vec<String> = vec![
            "--run".into(),
            env.kernel.to_string_lossy().into_owned(),
            "--disable-kvm".into(),
            "--verbose".into(),
            "--name".into(),
            "pollux-lab".into(),
            "--qemu".into(),
            qemu.to_string_lossy().into_owned(),
            "--memory".into(),
            format!("{}M", topology.guest_memory_mib()),
            "--cpus".into(),
            topology.guest_cpus().to_string(),
            "--append".into(),
            append.join(" "),
            "--rwdir".into(),
            shared.to_string_lossy().into_owned(),
            "--exec".into(),
            env.agent.to_string_lossy().into_owned(),
        ];
        // vng hands --qemu-opts to a shell as the last thing on its command line.
        args.push(format!("--qemu-opts={}", qemu_opts.join(" ")));

        let mut cmdline = String::from("# the vng command this run used\n");
        cmdline.push_str(&shell_quote(&env.vng.to_string_lossy()));
        for a in &args {
            cmdline.push(' ');
            cmdline.push_str(&shell_quote(a));
        }
        cmdline.push('\n');
        std::fs::write(run_dir.join("command.sh"), cmdline)
            .ctx(|| format!("cannot write {}", run_dir.join("command.sh").display()))?;

        let con = File::create(&console).ctx(|| format!("cannot create {}", console.display()))?;
        let venv_bin = env.vng.parent().map(Path::to_path_buf).unwrap_or_default();
        let path = std::env::join_paths(std::iter::once(venv_bin).chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )))
        .map_err(|e| Error::Setup(format!("cannot build PATH: {e}")))?;

        let start = Instant::now();
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new(&env.vng)
                .args(&args)
                .env("PATH", path)
                .stdin(Stdio::null())
                // Pipes, not the file: QEMU reopens /proc/self/fd/1 and /2
                // for its console chardevs, and reopening a regular file gives
                // each chardev its own offset (and truncates), so their
                // writes would overwrite each other.
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0)
                .spawn()
                .ctx(|| format!("cannot start {}", env.vng.display()))?
        };
        let mut child = child;
        let copiers = copy_console(child.stdout.take(), child.stderr.take(), con);
        let vm = Vm {
            pgid: child.id() as i32,
            child: Mutex::new(child),
            console_copiers: Mutex::new(copiers),
        };
        let boot_err = |reason: String| {
            vm.kill();
            vm.flush_console(Duration::from_secs(5));
            eprintln!(
                "pollux-lab: boot failed; run folder kept: {}",
                run_dir.display()
            );
            Error::Boot {
                reason,
                console: console.clone(),
                tail: tail_of(&console, 40),
            }
        };
        let mut alive = || vm.alive().map_err(Error::Protocol);

        let deadline = start + opts.boot_timeout;
        let connected = (|| {
            let qmp_stream = connect_unix(Path::new(&qmp_path), deadline, &mut alive)?;
            let qmp = Qmp::new(qmp_stream, Duration::from_secs(30))?;
            let agent_stream = connect_unix(Path::new(&agent_path), deadline, &mut alive)?;
            let agent = AgentClient::new(agent_stream, console.clone())?;
            let left = deadline.saturating_duration_since(Instant::now());
            let hello = agent.wait_hello(left, &mut alive)?;
            Ok::<_, Error>((qmp, agent, hello))
        })();
        let (qmp, agent, hello) = match connected {
            Ok(v) => v,
            Err(Error::Timeout { what, .. }) => {
                return Err(boot_err(format!(
                    "no {what} within {:.0} s (POLLUX_LAB_BOOT_TIMEOUT raises the limit)",
                    opts.boot_timeout.as_secs_f64()
                )))
            }
            Err(e) => return Err(boot_err(e.to_string())),
        };
        let boot_time = start.elapsed();
        let guest_kernel = match hello {
            Reply::Hello {
                version, kernel, ..
            } if version == VERSION => kernel,
            Reply::Hello { version, .. } => {
                return Err(boot_err(format!(
                    "guest agent speaks protocol {version}, the host {VERSION}: rebuild with `cargo build -p pollux-lab --bins`"
                )))
            }
            other => return Err(boot_err(format!("unexpected first agent message {other:?}"))),
        };

        let mut lab = Lab {
            topology: topology.clone(),
            env,
            vm,
            agent,
            qmp,
            run_dir,
            console,
            shared,
            transcript: Mutex::new(transcript),
            _sock_dir: sock_dir,
            pfs: Vec::new(),
            virtio_pfs: Vec::new(),
            models,
            model_procs,
            segments: Vec::new(),
            host_netns,
            boot_time,
            ready_time: Duration::ZERO,
            keep: AtomicBool::new(opts.keep_run_dir),
            guest_kernel,
            _machine: machine,
        };
        if let Err(e) = lab.setup(opts.setup_timeout) {
            lab.keep_run_dir();
            return Err(Error::Boot {
                reason: format!("guest setup failed: {e}"),
                console: lab.console.clone(),
                tail: tail_of(&lab.console, 40),
            });
        }
        lab.ready_time = start.elapsed();
        eprintln!(
            "pollux-lab: guest {} up in {:.1} s (agent hello), ready in {:.1} s; run folder {}",
            lab.guest_kernel,
            lab.boot_time.as_secs_f64(),
            lab.ready_time.as_secs_f64(),
            lab.run_dir.display()
        );
        Ok(lab)
    }

    /// Loads modules, finds every NIC, builds namespaces, VFs and bindings.
    fn setup(&mut self, t: Duration) -> Result<()> {
        let mods = self.topology.guest_modules().join(" ");
        self.run_ok(&format!("modprobe -a {mods}"), t)?;
        // Drivers loaded just now rename their netdevs through udev.
        self.run("udevadm settle --timeout=30", t)?;

        let all = self.topology.nics();
        // VFs appear only when their PF's sriov_numvfs is written, below.
        let plan: Vec<NicPlan> = all
            .iter()
            .filter(|n| n.present_at_boot())
            .cloned()
            .collect();
        let found = self.find_nics(&plan, t)?;
        let mut pfs: Vec<PfInfo> = Vec::new();
        let mut virtio_pfs: Vec<VirtioPfInfo> = Vec::new();
        let mut segments: Vec<Vec<PeerInfo>> = Vec::new();
        let mut script = String::new();
        for (nic, (pci, ifname)) in plan.iter().zip(found) {
            let peer = PeerInfo {
                netdev: nic.netdev.clone(),
                model: nic.model,
                pci: pci.clone(),
                ifname: ifname.clone(),
                mac: nic.mac.clone(),
                netns: nic.netns.clone(),
            };
            if let Some(ns) = &nic.netns {
                let q = shell_quote(ns);
                let i = shell_quote(&ifname);
                script.push_str(&format!(
                    "[ -e /run/netns/{q} ] || ip netns add {q}\nip -n {q} link set lo up\nip link set {i} netns {q}\nip -n {q} link set {i} up\n"
                ));
            } else if !matches!(nic.role, NicRole::Pf { .. } | NicRole::VirtioPf { .. }) {
                script.push_str(&format!("ip link set {} up\n", shell_quote(&ifname)));
            }
            match nic.role {
                NicRole::Pf { pf } => pfs.push(PfInfo {
                    index: pf,
                    netdev: nic.netdev.clone(),
                    pci,
                    ifname,
                    mac: nic.mac.clone(),
                    vfs: Vec::new(),
                    peers: Vec::new(),
                }),
                NicRole::PfPeer { pf, .. } => pfs[pf].peers.push(peer),
                NicRole::VirtioPf { pf } => {
                    let vfs: Vec<&NicPlan> = all
                        .iter()
                        .filter(|n| matches!(n.role, NicRole::VirtioVf { pf: p, .. } if p == pf))
                        .collect();
                    virtio_pfs.push(VirtioPfInfo {
                        index: pf,
                        netdev: nic.netdev.clone(),
                        pci,
                        ifname,
                        vfs: Vec::new(),
                        vf_netdevs: vfs.iter().map(|n| n.netdev.clone()).collect(),
                        vf_macs: vfs.iter().map(|n| n.mac.clone()).collect(),
                        vf_peers: Vec::new(),
                    })
                }
                NicRole::VirtioVfPeer { pf, .. } => virtio_pfs[pf].vf_peers.push(peer),
                NicRole::ModelPeer { model } => self.models[model].peer = Some(peer),
                // Not present at boot (filtered out above).
                NicRole::VirtioVf { .. } => {}
                NicRole::SegmentPeer { segment, .. } => {
                    if segments.len() <= segment {
                        segments.resize(segment + 1, Vec::new());
                    }
                    segments[segment].push(peer);
                }
            }
        }
        if !script.is_empty() {
            self.run_ok(&script, t)?;
        }

        for pf in &mut pfs {
            let n = self.topology.pf_spec(pf.index).vfs();
            if n > 0 {
                pf.vfs = self.create_vfs(pf.index, &pf.pci, n, t)?;
            }
            if self.topology.pf_up(pf.index) {
                // After the VFs exist: a PF open is what sets RSTD for them.
                self.run_ok(&format!("ip link set {} up", shell_quote(&pf.ifname)), t)?;
            }
        }
        for ((_, rp), m) in self
            .topology
            .model_ports()
            .into_iter()
            .zip(0..self.models.len())
        {
            // The function behind the port (not the port's own
            // `0000:00:10.0:pcie001` service devices).
            let f = format!("/sys/bus/pci/devices/0000:00:{rp}/0000:??:??.?");
            self.wait_until(&format!("[ -e \"$(echo {f})\" ]"), t)?;
            let o = self.run_ok(
                &format!("for p in {f}; do echo $(basename $p) $(basename $(readlink $p/iommu_group)); done"),
                t,
            )?;
            let mut w = o.stdout.split_whitespace();
            self.models[m].pci = w.next().unwrap_or_default().to_owned();
            self.models[m].iommu_group = w.next().and_then(|g| g.parse().ok());
        }
        for pf in &mut virtio_pfs {
            let n = self.topology.virtio_pfs()[pf.index].vfs();
            pf.vfs = self.create_vfs(pf.index, &pf.pci, n, t)?;
        }
        self.pfs = pfs;
        self.virtio_pfs = virtio_pfs;
        self.segments = segments;
        for i in 0..self.pfs.len() {
            if self.topology.pf_bind_vfio(i) {
                for vf in self.pfs[i].vfs.clone() {
                    self.bind_vfio(&vf)?;
                }
            }
        }
        Ok(())
    }

    /// Creates `n` VFs of the PF at `pci` and reads their addresses and IOMMU
    /// groups.
    fn create_vfs(&self, pf_index: usize, pci: &str, n: u8, t: Duration) -> Result<Vec<VfInfo>> {
        let dev = format!("/sys/bus/pci/devices/{pci}");
        // Autoprobe off first: otherwise the guest's VF driver grabs the VFs
        // asynchronously and races any later unbind (LAB.md).
        self.run_ok(
            &format!("echo 0 > {dev}/sriov_drivers_autoprobe && echo {n} > {dev}/sriov_numvfs"),
            t,
        )?;
        let out = self.run_ok(
            &format!(
                "cd {dev} && for v in virtfn*; do g=$(readlink $v/iommu_group); echo ${{v#virtfn}} $(basename $(readlink $v)) ${{g##*/}}; done"
            ),
            t,
        )?;
        let mut vfs: Vec<VfInfo> = out
            .stdout
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let index = it.next()?.parse().ok()?;
                let pci = it.next()?.to_owned();
                let iommu_group = it.next().and_then(|g| g.parse().ok());
                Some(VfInfo {
                    pf: pf_index,
                    index,
                    pci,
                    iommu_group,
                })
            })
            .collect();
        vfs.sort_by_key(|v| v.index);
        if vfs.len() != n as usize {
            return Err(Error::Protocol(format!(
                "PF {pf_index} ({pci}) shows {} VFs after asking for {n}: {:?}",
                vfs.len(),
                out.stdout
            )));
        }
        Ok(vfs)
    }

    /// PCI address and interface name of each planned NIC, found under its
    /// root port; waits (up to `t`) for the netdevs to appear.
    fn find_nics(&self, plan: &[NicPlan], t: Duration) -> Result<Vec<(String, String)>> {
        // Globs only: every fork costs tens of milliseconds under TCG.
        let script = plan
            .iter()
            .map(|n| {
                // virtio-net hangs its netdev one level lower, under virtioN/.
                let d = format!("/sys/bus/pci/devices/0000:00:{}/0000:*", n.root_port);
                format!("for p in {d}/net/* {d}/virtio*/net/*; do echo $p; done")
            })
            .collect::<Vec<_>>()
            .join("; ");
        let deadline = Instant::now() + t;
        loop {
            let out = self.run_ok(&script, t)?;
            let mut found: Vec<Option<(String, String)>> = vec![None; plan.len()];
            for line in out.stdout.lines() {
                // /sys/bus/pci/devices/0000:00:10.0/0000:01:00.0/[virtio3/]net/enp1s0
                if line.contains('*') {
                    continue; // a glob that matched nothing (yet)
                }
                let parts: Vec<&str> = line.split('/').collect();
                if let [_, "sys", "bus", "pci", "devices", rp, pci, .., "net", ifname] =
                    parts.as_slice()
                {
                    if let Some(i) = plan
                        .iter()
                        .position(|n| *rp == format!("0000:00:{}", n.root_port))
                    {
                        found[i] = Some(((*pci).to_owned(), (*ifname).to_owned()));
                    }
                }
            }
            if found.iter().all(Option::is_some) {
                return Ok(found.into_iter().flatten().collect());
            }
            if Instant::now() >= deadline {
                let missing: Vec<String> = plan
                    .iter()
                    .zip(&found)
                    .filter(|(_, f)| f.is_none())
                    .map(|(n, _)| {
                        format!("{} behind root port 0000:00:{}", n.device_id, n.root_port)
                    })
                    .collect();
                return Err(Error::Timeout {
                    what: format!(
                        "the netdevs of {} in the guest (found: {:?})",
                        missing.join(", "),
                        out.stdout
                    ),
                    after: t,
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub(crate) fn request(&self, req: Request, timeout: Duration) -> Result<Reply> {
        // A dead model leaves the guest's accesses to its function hanging
        // in QEMU: say so within a second instead of at the timeout.
        let watch = || (0..self.models.len()).try_for_each(|i| self.model_alive(i));
        match self.agent.request_watched(req, timeout, &watch) {
            Err(Error::Disconnected { console, .. }) => Err(Error::Disconnected {
                console,
                detail: self.why_disconnected(),
            }),
            r => r,
        }
    }

    /// After the agent connection broke: how QEMU ended (given a few
    /// seconds to finish dying) and the console's last lines once QEMU's
    /// final output (a kernel panic, an assertion in a device model) is in
    /// the file.
    fn why_disconnected(&self) -> String {
        let qemu = if self.vm.wait_exit(Duration::from_secs(10)) {
            self.vm
                .alive()
                .err()
                .unwrap_or_else(|| "vng/QEMU exited".into())
        } else {
            "QEMU still running 10 s after the connection broke (the guest agent died?)".into()
        };
        let flushed = if self.vm.flush_console(Duration::from_secs(5)) {
            ""
        } else {
            " (console still being written)"
        };
        let events: Vec<String> = self
            .qmp
            .take_events(Duration::from_secs(1))
            .iter()
            .filter(|e| e["event"] != "NIC_RX_FILTER_CHANGED")
            .map(|e| format!("{} {}", e["event"].as_str().unwrap_or("?"), e["data"]))
            .collect();
        let events = if events.is_empty() {
            "none".to_owned()
        } else {
            events.join("; ")
        };
        let resets = std::fs::read_to_string(self.run_dir.join(QEMU_LOG))
            .map(|l| reset_summary(&l))
            .unwrap_or_else(|e| format!("no QEMU log: {e}"));
        let models: String = (0..self.models.len())
            .filter_map(|i| self.model_alive(i).err())
            .map(|e| format!("\n{e}"))
            .collect();
        format!(
            ": {qemu}{models}\nQEMU's QMP events: {events}\nQEMU's log: {resets}\nlast console lines{flushed}:\n{}",
            tail_of(&self.console, 40)
        )
    }

    /// Kills model `i`'s process (SIGKILL), as a crash would.
    pub fn kill_model(&self, i: usize) -> Result<()> {
        self.model(i)?;
        let mut c = self.model_procs[i]
            .child
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        c.kill().ctx(|| format!("cannot kill model {i}"))?;
        let _ = c.wait();
        Ok(())
    }

    /// Whether model `i`'s process still runs; if it ended, an error that
    /// names it, with how it ended and its log's last lines.
    pub fn model_alive(&self, i: usize) -> Result<()> {
        let m = self.model(i)?;
        let st = self.model_procs[i]
            .child
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_wait()
            .ok()
            .flatten();
        match st {
            None => Ok(()),
            Some(st) => Err(Error::Protocol(format!(
                "model {i} ({}) died ({st}); its log:\n{}",
                m.kind,
                tail_of(&m.log, 20)
            ))),
        }
    }

    pub(crate) fn log(&self, text: &str) {
        let mut f = self
            .transcript
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let _ = writeln!(f, "{text}");
    }

    /// Runs `cmd` with `/bin/sh -c` in the guest (as root, in the root
    /// network namespace) and returns its exit status and output, whatever
    /// the status. Kills it and fails with [`Error::Timeout`] after `timeout`.
    pub fn run(&self, cmd: &str, timeout: Duration) -> Result<Output> {
        self.run_input(cmd, None, timeout)
    }

    /// Like [`Lab::run`], writing `stdin` to the command's standard input.
    pub fn run_input(&self, cmd: &str, stdin: Option<&str>, timeout: Duration) -> Result<Output> {
        let t0 = Instant::now();
        let reply = self.request(
            Request::Run {
                cmd: cmd.to_owned(),
                stdin: stdin.map(str::to_owned),
                timeout_ms: timeout.as_millis() as u64,
            },
            timeout + REPLY_MARGIN,
        );
        let took = t0.elapsed().as_secs_f64();
        match reply {
            Ok(Reply::Finished {
                status,
                stdout,
                stderr,
            }) => {
                self.log(&format!(
                    "$ {cmd}\n# {status} after {took:.2} s\n{stdout}{}{stderr}",
                    if stderr.is_empty() { "" } else { "# stderr:\n" }
                ));
                Ok(Output {
                    status,
                    stdout,
                    stderr,
                })
            }
            Ok(Reply::TimedOut { stdout, stderr }) => {
                self.log(&format!(
                    "$ {cmd}\n# killed after {took:.2} s\n{stdout}{stderr}"
                ));
                Err(Error::Timeout {
                    what: format!(
                        "guest command {cmd:?} (killed); stdout so far:\n{stdout}\nstderr so far:\n{stderr}"
                    ),
                    after: timeout,
                })
            }
            Ok(other) => Err(Error::Protocol(format!(
                "guest agent answered run with {other:?}"
            ))),
            Err(e) => {
                self.log(&format!("$ {cmd}\n# error: {e}"));
                Err(e)
            }
        }
    }

    /// Like [`Lab::run`], but a non-zero exit is an [`Error::Command`] that
    /// carries the output.
    pub fn run_ok(&self, cmd: &str, timeout: Duration) -> Result<Output> {
        let out = self.run(cmd, timeout)?;
        if out.success() {
            Ok(out)
        } else {
            Err(Error::Command {
                cmd: cmd.to_owned(),
                status: out.status.to_string(),
                stdout: out.stdout,
                stderr: out.stderr,
            })
        }
    }

    /// Runs `cmd` inside a guest network namespace (None: the root one).
    pub fn run_in(&self, netns: Option<&str>, cmd: &str, timeout: Duration) -> Result<Output> {
        self.run(&in_netns(netns, cmd), timeout)
    }

    /// Starts `cmd` in the background (see [`GuestProcess`]).
    pub fn spawn(&self, cmd: &str) -> Result<GuestProcess<'_>> {
        match self.request(
            Request::Spawn {
                cmd: cmd.to_owned(),
            },
            REPLY_MARGIN,
        )? {
            Reply::Spawned { handle, pid } => {
                self.log(&format!("$ {cmd} &\n# pid {pid}"));
                Ok(GuestProcess::new(self, cmd.to_owned(), handle, pid))
            }
            other => Err(Error::Protocol(format!(
                "guest agent answered spawn with {other:?}"
            ))),
        }
    }

    /// Starts `examples/responder` on the PCI function `pci` with `args`
    /// (`--ip`, `--report-link`, ...) and the environment assignments in
    /// `env` (e.g. `RUST_LOG=...`), and waits until it says it is ready;
    /// an error carries what it printed. Stop it with `stop` on its stdin.
    pub fn start_responder(&self, env: &str, pci: &str, args: &str) -> Result<GuestProcess<'_>> {
        let exe = crate::env::host_example("responder")?;
        let mut app = self.spawn(&format!(
            "{env} exec {} -a {} {args}",
            shell_quote(&exe.display().to_string()),
            shell_quote(pci)
        ))?;
        app.wait_for_output("responder ready", Duration::from_secs(60))?;
        Ok(app)
    }

    /// Runs a QMP command (`arguments` may be `Value::Null` for none) and
    /// returns its `return` value.
    pub fn qmp(&self, command: &str, arguments: Value) -> Result<Value> {
        let args = if arguments.is_null() {
            None
        } else {
            Some(arguments)
        };
        self.qmp.execute(command, args, Duration::from_secs(30))
    }

    /// Runs a human monitor (HMP) command, e.g. `info network`, and returns
    /// what it printed.
    pub fn hmp(&self, command_line: &str) -> Result<String> {
        let v = self.qmp(
            "human-monitor-command",
            json!({ "command-line": command_line }),
        )?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// Cuts (`up == false`) or restores a wire end, as QEMU's `set_link`:
    /// the NIC on that netdev sees its link go down/up and frames stop/flow.
    /// `netdev` is a [`PfInfo::netdev`] or [`PeerInfo::netdev`] id.
    pub fn set_link(&self, netdev: &str, up: bool) -> Result<()> {
        if !self.topology.nics().iter().any(|n| n.netdev == netdev) {
            let known: Vec<String> = self.topology.nics().into_iter().map(|n| n.netdev).collect();
            return Err(Error::Topology(format!(
                "no netdev {netdev:?} in this topology (have {known:?})"
            )));
        }
        self.log(&format!(
            "# QMP set_link {netdev} {}",
            if up { "on" } else { "off" }
        ));
        self.qmp("set_link", json!({ "name": netdev, "up": up }))
            .map(drop)
    }

    /// Unplugs (`up == false`) or replugs PF `pf`'s cable: [`Lab::set_link`]
    /// on the PF's netdev and on every peer's, so both ends lose carrier, as
    /// with a real cable. With only the PF's end cut on a hub wire, the hub
    /// holds the peer's frames while the igb cannot receive and delivers them
    /// when the link returns (measured: pings answered 3 s late); cutting both
    /// ends makes the peer's kernel drop them instead.
    pub fn set_wire_link(&self, pf: usize, up: bool) -> Result<()> {
        let p = self.pf(pf)?;
        self.set_link(&p.netdev, up)?;
        for peer in &p.peers {
            self.set_link(&peer.netdev, up)?;
        }
        Ok(())
    }

    /// Sets a PF's netdev down or up in the guest (`ip link set`), the
    /// guest-side fault: VFs lose their PF until it is up again.
    pub fn set_pf_link(&self, pf: usize, up: bool) -> Result<()> {
        let name = self.pf(pf)?.ifname.clone();
        self.run_ok(
            &format!(
                "ip link set {} {}",
                shell_quote(&name),
                if up { "up" } else { "down" }
            ),
            Duration::from_secs(30),
        )
        .map(drop)
    }

    /// Runs the shell `condition` in the guest every 100 ms until it
    /// succeeds, for up to `timeout`, and returns how long that took; fails
    /// with the condition in the message. One guest command, however long
    /// the wait.
    pub fn wait_until(&self, condition: &str, timeout: Duration) -> Result<Duration> {
        let t0 = Instant::now();
        let tries = timeout.as_millis().div_ceil(100);
        let why = shell_quote(&format!(
            "still false after {:.1} s: {condition}",
            timeout.as_secs_f64()
        ));
        self.run_ok(
            &format!(
                "i=0; until {condition}; do i=$((i+1)); \
                 [ $i -ge {tries} ] && {{ echo {why} >&2; exit 1; }}; sleep 0.1; done"
            ),
            timeout + Duration::from_secs(30),
        )?;
        Ok(t0.elapsed())
    }

    /// Waits up to `timeout` for PF `pf`'s netdev to report carrier (the
    /// igb model's link comes up a second or more after `ip link set up`,
    /// longer on a loaded host) and returns how long it took. Frames a VF
    /// sends before that are dropped by the model without reaching the wire.
    pub fn wait_pf_carrier(&self, pf: usize, timeout: Duration) -> Result<Duration> {
        let name = shell_quote(&self.pf(pf)?.ifname);
        self.wait_until(
            &format!("[ \"$(cat /sys/class/net/{name}/carrier 2>/dev/null)\" = 1 ]"),
            timeout,
        )
    }

    /// Frames the igb model dropped since boot because the receive queue
    /// they were for had no free descriptor, by queue index, as QEMU's own
    /// trace recorded them (it counts nothing else for a VF's queue: the
    /// VF's good-packets counter only sees frames written to the ring).
    /// Queue `n` of the igb model is VF `n`'s queue 0 (`n + 8` its queue 1,
    /// QEMU `igb_vf_reset`), or a queue of the PF's own pool.
    ///
    /// The trace names no device, so with two or more PFs the counts are
    /// sums over all of them; [`vf_rx_drops`](Self::vf_rx_drops) refuses
    /// that case.
    pub fn rx_queue_drops(&self) -> Result<BTreeMap<u32, u64>> {
        let path = self.run_dir.join(QEMU_LOG);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            // QEMU creates the file at its first event.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(Error::Setup(format!(
                    "cannot read QEMU's rx-drop trace {}: {e}",
                    path.display()
                )))
            }
        };
        parse_rx_drops(&text)
    }

    /// Frames the igb model dropped since boot for lack of descriptors on
    /// either receive queue of `vf` (see [`rx_queue_drops`](Self::rx_queue_drops)).
    /// Fails on a topology with more than one PF, where the trace cannot
    /// tell the PFs apart.
    pub fn vf_rx_drops(&self, vf: &VfInfo) -> Result<u64> {
        if self.pfs.len() != 1 {
            return Err(Error::Topology(format!(
                "QEMU's rx-drop trace names no device: per-VF counts need a single PF, this topology has {}",
                self.pfs.len()
            )));
        }
        let q = vf.index as u32;
        let d = self.rx_queue_drops()?;
        Ok(d.get(&q).copied().unwrap_or(0) + d.get(&(q + 8)).copied().unwrap_or(0))
    }

    /// PF `i`.
    pub fn pf(&self, i: usize) -> Result<&PfInfo> {
        self.pfs.get(i).ok_or_else(|| {
            Error::Topology(format!("no PF {i}; this topology has {}", self.pfs.len()))
        })
    }

    /// All PFs.
    pub fn pfs(&self) -> &[PfInfo] {
        &self.pfs
    }

    /// VF `vf` of PF `pf`.
    pub fn vf(&self, pf: usize, vf: usize) -> Result<&VfInfo> {
        let p = self.pf(pf)?;
        p.vfs.get(vf).ok_or_else(|| {
            Error::Topology(format!("PF {pf} has no VF {vf}; it has {}", p.vfs.len()))
        })
    }

    /// Peer `j` on PF `pf`'s wire.
    pub fn peer(&self, pf: usize, j: usize) -> Result<&PeerInfo> {
        let p = self.pf(pf)?;
        p.peers.get(j).ok_or_else(|| {
            Error::Topology(format!("PF {pf} has no peer {j}; it has {}", p.peers.len()))
        })
    }

    /// Virtio-net SR-IOV PF `i`.
    pub fn virtio_pf(&self, i: usize) -> Result<&VirtioPfInfo> {
        self.virtio_pfs.get(i).ok_or_else(|| {
            Error::Topology(format!(
                "no virtio PF {i}; this topology has {}",
                self.virtio_pfs.len()
            ))
        })
    }

    /// Frames per second `peer`'s kernel received over `secs` seconds (its
    /// `rx_packets` counter and the guest clock, sampled in the guest).
    pub fn peer_rx_rate(&self, peer: &PeerInfo, secs: u64) -> Result<f64> {
        let c = format!("/sys/class/net/{}/statistics/rx_packets", peer.ifname);
        let out = self.run_ok(
            &peer.wrap(&format!(
                "a=$(cat {c}); t1=$(date +%s%N); sleep {secs}; b=$(cat {c}); t2=$(date +%s%N); echo $a $b $t1 $t2"
            )),
            Duration::from_secs(secs + 60),
        )?;
        let v: Vec<f64> = out
            .stdout
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        if v.len() != 4 || v[3] <= v[2] {
            return Err(Error::Protocol(format!(
                "peer counter sample: {}",
                out.stdout
            )));
        }
        Ok((v[1] - v[0]) / ((v[3] - v[2]) / 1e9))
    }

    /// Sends `count` 60-byte UDP frames to `dst_mac` / `dst_ip` with the
    /// guest kernel's pktgen on `peer`'s NIC, as fast as it can; returns how
    /// many pktgen says it sent and its elapsed seconds, from its
    /// "Result: OK: 1234(c1200+d34) usec, 1000 (60byte,0frags)" line.
    pub fn pktgen(
        &self,
        peer: &PeerInfo,
        dst_mac: &str,
        dst_ip: &str,
        count: u64,
    ) -> Result<(u64, f64)> {
        self.pktgen_with(peer, dst_mac, dst_ip, count, &Pktgen::default())
    }

    /// [`Lab::pktgen`] with options: several UDP flows, a gap between
    /// frames, UDP checksums.
    pub fn pktgen_with(
        &self,
        peer: &PeerInfo,
        dst_mac: &str,
        dst_ip: &str,
        count: u64,
        opts: &Pktgen,
    ) -> Result<(u64, f64)> {
        let mut extra = String::new();
        if opts.flows > 1 {
            // pktgen steps the source port from min up to, not including,
            // max, one per frame (no UDPSRC_RND; measured: max - 1 flows
            // with an inclusive max), so N frames spread evenly over the
            // flows.
            extra.push_str(&format!(
                "echo 'udp_src_min {}' > $PG/{if}\necho 'udp_src_max {}' > $PG/{if}\n",
                Pktgen::FIRST_PORT,
                Pktgen::FIRST_PORT + opts.flows,
                if = peer.ifname
            ));
        }
        if opts.udp_csum {
            extra.push_str(&format!("echo 'flag UDPCSUM' > $PG/{}\n", peer.ifname));
        }
        if let Some(src) = &opts.src_ip {
            extra.push_str(&format!(
                "echo 'src_min {src}' > $PG/{if}\necho 'src_max {src}' > $PG/{if}\n",
                if = peer.ifname
            ));
        }
        let script = format!(
            "modprobe pktgen || exit 1
PG=/proc/net/pktgen
echo rem_device_all > $PG/kpktgend_0
echo 'add_device {if}' > $PG/kpktgend_0
echo 'count {count}' > $PG/{if}
echo 'pkt_size 60' > $PG/{if}
echo 'delay {delay}' > $PG/{if}
echo 'dst {dst_ip}' > $PG/{if}
echo 'dst_mac {dst_mac}' > $PG/{if}
{extra}echo start > $PG/pgctrl
cat $PG/{if}",
            if = peer.ifname,
            delay = opts.delay_ns
        );
        let out = self.run_ok(&peer.wrap(&script), Duration::from_secs(600))?;
        let bad = |what: &str| Error::Protocol(format!("pktgen: {what}:\n{}", out.stdout));
        let line = out
            .stdout
            .lines()
            .find(|l| l.contains("Result: OK"))
            .ok_or_else(|| bad("no \"Result: OK\" line"))?;
        let usec: f64 = line
            .split("OK: ")
            .nth(1)
            .and_then(|s| s.split('(').next())
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| bad("no elapsed time"))?;
        let sent: u64 = line
            .split(", ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no count"))?;
        Ok((sent, usec / 1e6))
    }

    /// Counter `name` of a kernel NIC (`/sys/class/net/<if>/statistics/`:
    /// `rx_packets`, `tx_packets`, ...), read in its namespace: the kernel's
    /// own account of what a wire carried.
    pub fn peer_counter(&self, peer: &PeerInfo, name: &str) -> Result<u64> {
        let o = self.run_ok(
            &peer.wrap(&format!(
                "cat /sys/class/net/{}/statistics/{}",
                shell_quote(&peer.ifname),
                shell_quote(name)
            )),
            Duration::from_secs(30),
        )?;
        o.stdout.trim().parse().map_err(|_| {
            Error::Protocol(format!(
                "{} {name}: not a number: {:?}",
                peer.ifname, o.stdout
            ))
        })
    }

    /// Modelled function `i`.
    pub fn model(&self, i: usize) -> Result<&ModelInfo> {
        self.models.get(i).ok_or_else(|| {
            Error::Topology(format!(
                "no model {i}; this topology has {}",
                self.models.len()
            ))
        })
    }

    /// One control-channel command to model `i` (`counters`, `link up`,
    /// `pf reset`, ...); its reply without the final `ok`, or an error with
    /// the model's own words.
    pub fn model_control(&self, i: usize, command: &str) -> Result<String> {
        use std::io::BufRead;
        let m = self.model(i)?;
        let what = || format!("model {i}'s control channel {}", m.control.display());
        let s = std::os::unix::net::UnixStream::connect(&m.control).ctx(what)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .ctx(what)?;
        let mut w = s.try_clone().ctx(what)?;
        writeln!(w, "{command}").ctx(what)?;
        let mut out = String::new();
        for line in std::io::BufReader::new(s).lines() {
            let line = line.ctx(what)?;
            if line == "ok" {
                return Ok(out);
            }
            if let Some(e) = line.strip_prefix("error: ") {
                return Err(Error::Protocol(format!("model {i}: {command}: {e}")));
            }
            out.push_str(&line);
            out.push('\n');
        }
        Err(Error::Protocol(format!("model {i}: {command}: no answer")))
    }

    /// Model `i`'s counter `name` (`frames_in`, `dma_done`, ...).
    pub fn model_counter(&self, i: usize, name: &str) -> Result<u64> {
        let c = self.model_control(i, "counters")?;
        c.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .ok_or_else(|| Error::Protocol(format!("model {i} has no counter {name}: {c}")))
    }

    /// The violations model `i` logged so far (its `--violations` file).
    pub fn model_violations(&self, i: usize) -> Result<String> {
        let m = self.model(i)?;
        Ok(std::fs::read_to_string(&m.violations).unwrap_or_default())
    }

    /// The NICs of standalone segment `k`.
    pub fn segment(&self, k: usize) -> Result<&[PeerInfo]> {
        self.segments
            .get(k)
            .map(Vec::as_slice)
            .ok_or_else(|| Error::Topology(format!("no segment {k}")))
    }

    /// Binds a VF to vfio-pci (unbinding any driver first) and returns its
    /// `/dev/vfio/<group>` once it exists.
    pub fn bind_vfio(&self, vf: &VfInfo) -> Result<PathBuf> {
        self.bind_driver(&vf.pci, "vfio-pci")?;
        let group = vf.iommu_group.ok_or_else(|| {
            Error::Protocol(format!(
                "VF {} has no IOMMU group (is intel_iommu on?)",
                vf.pci
            ))
        })?;
        let dev = format!("/dev/vfio/{group}");
        self.wait_until(&format!("[ -c {dev} ]"), Duration::from_secs(10))?;
        Ok(PathBuf::from(dev))
    }

    /// Binds the PCI device `pci` to `driver` (e.g. `igbvf`, `vfio-pci`) via
    /// `driver_override`, unbinding its current driver first.
    pub fn bind_driver(&self, pci: &str, driver: &str) -> Result<()> {
        let dev = format!("/sys/bus/pci/devices/{}", shell_quote(pci));
        let drv = shell_quote(driver);
        self.run_ok(
            &format!(
                "[ -e {dev}/driver ] && echo {pci} > {dev}/driver/unbind; \
                 echo {drv} > {dev}/driver_override && echo {pci} > /sys/bus/pci/drivers_probe && \
                 [ \"$(basename $(readlink {dev}/driver))\" = {drv} ]",
                pci = shell_quote(pci)
            ),
            Duration::from_secs(30),
        )
        .map(drop)
    }

    /// Unbinds the PCI device `pci` from its driver and clears its override.
    pub fn unbind_driver(&self, pci: &str) -> Result<()> {
        let dev = format!("/sys/bus/pci/devices/{}", shell_quote(pci));
        self.run_ok(
            &format!(
                "[ -e {dev}/driver ] && echo {} > {dev}/driver/unbind; echo > {dev}/driver_override",
                shell_quote(pci)
            ),
            Duration::from_secs(30),
        )
        .map(drop)
    }

    /// The host network namespace QEMU runs in when the topology has tap
    /// wires (its bridges and taps are there; `ip netns exec` into it to
    /// look at them), else `None`.
    pub fn host_netns(&self) -> Option<&str> {
        self.host_netns.as_ref().map(HostNetns::name)
    }

    /// The topology this guest was booted with.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The parts it was booted with.
    pub fn env(&self) -> &LabEnv {
        &self.env
    }

    /// The guest's kernel release.
    pub fn guest_kernel(&self) -> &str {
        &self.guest_kernel
    }

    /// From starting QEMU to the agent's hello.
    pub fn boot_time(&self) -> Duration {
        self.boot_time
    }

    /// From starting QEMU to the end of setup (VFs made, links up).
    pub fn ready_time(&self) -> Duration {
        self.ready_time
    }

    /// This run's folder under `target/pollux-lab/runs/`.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The guest console log (kernel messages, agent errors).
    pub fn console_path(&self) -> &Path {
        &self.console
    }

    /// A host folder the guest can write, at the same path in the guest
    /// (virtme-ng `--rwdir`): the way to bring files (pcaps, logs) back.
    pub fn shared_dir(&self) -> &Path {
        &self.shared
    }

    /// Keep the run folder when the lab is dropped, even if the test passes.
    pub fn keep_run_dir(&self) {
        self.keep.store(true, Ordering::Relaxed);
    }

    /// Asks QEMU to quit and waits up to 10 s; the lab is then dropped.
    pub fn shutdown(self) -> Result<()> {
        // QEMU may close the socket before answering `quit`.
        let _ = self.qmp("quit", Value::Null);
        if self.vm.wait_exit(Duration::from_secs(10)) {
            Ok(())
        } else {
            Err(Error::Timeout {
                what: "QEMU to quit".into(),
                after: Duration::from_secs(10),
            })
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.vm.kill();
        if std::thread::panicking() || self.keep.load(Ordering::Relaxed) {
            self.vm.flush_console(Duration::from_secs(5));
            eprintln!(
                "pollux-lab: run folder kept: {}\npollux-lab: console log: {}\npollux-lab: last console lines:\n{}",
                self.run_dir.display(),
                self.console.display(),
                tail_of(&self.console, 40)
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.run_dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_shell_words_whole() {
        assert_eq!(shell_quote("enp1s0"), "enp1s0");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(
            in_netns(Some("pf0-peer0"), "ping -c 1 169.254.0.1 && echo 'ok'"),
            r"ip netns exec pf0-peer0 sh -c 'ping -c 1 169.254.0.1 && echo '\''ok'\'''"
        );
        assert_eq!(in_netns(None, "true"), "true");
    }

    #[test]
    fn run_folder_names_come_from_test_names() {
        assert_eq!(sanitize("lab::two_pfs"), "lab--two-pfs");
        assert_eq!(sanitize("???"), "lab");
        assert_eq!(sanitize(&"x".repeat(100)).len(), 48);
    }

    #[test]
    fn tail_reads_the_last_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        std::fs::write(&p, "a\nb\nc\nd\n").unwrap();
        assert_eq!(tail_of(&p, 2), "c\nd\n");
        assert!(tail_of(&d.path().join("none"), 2).contains("cannot read"));
    }

    #[test]
    fn resets_are_summarised_with_the_triple_fault() {
        let log = "CPU Reset (CPU 0)\nEAX=00000000 EBX=00000000\nEIP=0000fff0 EFL=00000002\n\
                   e1000e_rx_not_written_to_guest Received packet NOT written to guest (queue 0)\n\
                   Triple fault\nCPU Reset (CPU 1)\nRAX=0000000000000000 RBX=0000000000000001\n\
                   RIP=ffffffff81e5a4c2 RFL=00000046 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1\n";
        let s = reset_summary(log);
        assert!(s.starts_with("2 CPU resets logged"), "{s}");
        assert!(s.contains("1 triple faults"), "{s}");
        assert!(
            s.contains("last: CPU Reset (CPU 1) at RIP=ffffffff81e5a4c2"),
            "{s}"
        );
        assert!(reset_summary("").starts_with("0 CPU resets"));
    }

    #[test]
    fn rx_drop_trace_is_counted_by_queue() {
        // As QEMU 10.0's log backend writes them (seen in the lab), with
        // and without the pid@time prefix, and a line cut mid-write.
        let text = "e1000e_rx_not_written_to_guest Received packet NOT written to guest (queue 0)\n\
                    e1000e_rx_not_written_to_guest Received packet NOT written to guest (queue 8)\n\
                    12@1.5:e1000e_rx_not_written_to_guest Received packet NOT written to guest (queue 0)\n\
                    e1000e_rx_not_written_to_guest Received packet NOT written to gue";
        let d = parse_rx_drops(text).unwrap();
        assert_eq!(d, BTreeMap::from([(0, 2), (8, 1)]));
        assert!(parse_rx_drops("").unwrap().is_empty());
        let e = parse_rx_drops("e1000e_rx_not_written_to_guest (queue x)\n").unwrap_err();
        assert!(e.to_string().contains("queue number"), "{e}");
    }
}
