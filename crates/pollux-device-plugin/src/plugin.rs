//! Running the plugin: a scanner that keeps every resource's device list
//! (and CDI spec) current, and per resource a supervisor that serves its
//! socket, registers it with the kubelet and starts over when the kubelet
//! restarts.
//!
//! The kubelet, when it starts, removes every socket in its device plugin
//! directory and creates `kubelet.sock` anew; plugins are expected to notice
//! and register again (the SR-IOV plugin watches for its own socket
//! disappearing). A supervisor here notices either: its own socket gone or
//! replaced, or `kubelet.sock` replaced by another file (compared by inode
//! and change time, since a file system may give the new socket the old
//! one's inode number). Then it stops its server, which ends the
//! `ListAndWatch` streams of the old kubelet, creates its socket again and
//! registers again, retrying until the kubelet answers.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;

use crate::api::v1beta1 as api;
use crate::api::v1beta1::device_plugin_server::DevicePluginServer;
use crate::api::v1beta1::registration_client::RegistrationClient;
use crate::config::{Config, Resource};
use crate::devices::{DeviceState, Host, Inventory};
use crate::server::{ResourceService, Shared};
use crate::{cdi, Error, Result};

/// How long one registration attempt may take.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a stopped server may take to finish its connections.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything the plugin needs to run.
#[derive(Clone, Debug)]
pub struct Options {
    pub config: Config,
    /// The kubelet's registration socket.
    pub kubelet_socket: PathBuf,
    /// Where this plugin's sockets go; the kubelet resolves the registered
    /// endpoint in its own directory, so this is that directory.
    pub plugin_dir: PathBuf,
    pub sysfs_root: PathBuf,
    pub dev_root: PathBuf,
    /// Where device-info files are written at Allocate.
    pub devinfo_dir: PathBuf,
    /// Write CDI specs and name CDI devices in Allocate.
    pub use_cdi: bool,
    pub cdi_dir: PathBuf,
    /// How often sysfs is read for health and new devices.
    pub poll_interval: Duration,
    /// How often the sockets are checked for a kubelet restart, and how
    /// often an unanswered registration is retried.
    pub watch_interval: Duration,
}

impl Options {
    /// The defaults of a real node for `config`.
    pub fn new(config: Config) -> Self {
        let kubelet_socket = PathBuf::from(crate::api::KUBELET_SOCKET);
        Self {
            config,
            plugin_dir: PathBuf::from(crate::api::DEVICE_PLUGIN_PATH),
            kubelet_socket,
            sysfs_root: PathBuf::from("/sys"),
            dev_root: PathBuf::from("/dev"),
            devinfo_dir: PathBuf::from(crate::allocate::DEFAULT_DEVINFO_DIR),
            use_cdi: false,
            cdi_dir: PathBuf::from(cdi::DEFAULT_CDI_DIR),
            poll_interval: Duration::from_secs(2),
            watch_interval: Duration::from_secs(1),
        }
    }
}

/// Runs until `shutdown` is cancelled, then stops every server and removes
/// the plugin's sockets. Fails at start only: an unreadable sysfs, a CDI
/// name CDI refuses, an unwritable CDI directory. Everything after that
/// (the kubelet absent or restarting, a device vanishing) is logged and
/// waited out.
pub async fn run(opts: Options, shutdown: CancellationToken) -> Result<()> {
    if opts.use_cdi {
        for r in &opts.config.resources {
            cdi::check_names(r).map_err(Error::Cdi)?;
        }
    }
    let host = Host::new(&opts.sysfs_root, &opts.dev_root);
    let mut inventory = Inventory::default();
    let scan = {
        let host = host.clone();
        tokio::task::spawn_blocking(move || host.scan())
            .await
            .map_err(|e| Error::Task(e.to_string()))??
    };
    let states = inventory.update(&opts.config, scan, &opts.dev_root);
    for (r, devs) in opts.config.resources.iter().zip(&states) {
        if devs.is_empty() {
            tracing::warn!(
                "{}: no device matches its selectors yet (it is advertised with none, and picks up devices that appear)",
                r.full_name()
            );
            continue;
        }
        let healthy = devs.iter().filter(|d| d.healthy()).count();
        tracing::info!(
            "{}: {} devices ({healthy} healthy){}",
            r.full_name(),
            devs.len(),
            devs.iter()
                .map(|d| format!("\n  {}{}", d.id(), health_note(d)))
                .collect::<String>()
        );
    }
    let mut cdi_written: Vec<Option<cdi::Spec>> = vec![None; states.len()];
    if !opts.use_cdi {
        // Specs of an earlier run with CDI on would name devices nobody
        // keeps current.
        if let Err(e) = cdi::remove_stale(&opts.cdi_dir, &[]) {
            tracing::warn!("{e}");
        }
    } else {
        cdi::remove_stale(&opts.cdi_dir, &opts.config.resources)?;
        for (i, (r, devs)) in opts.config.resources.iter().zip(&states).enumerate() {
            let spec = cdi::spec(r, devs, &host);
            cdi::write(&opts.cdi_dir, r, &spec)?;
            cdi_written[i] = Some(spec);
        }
    }
    let shared = Arc::new(Shared {
        config: opts.config.clone(),
        host,
        use_cdi: opts.use_cdi,
        devinfo_dir: opts.devinfo_dir.clone(),
        states: states.into_iter().map(|s| watch::channel(s).0).collect(),
    });
    let opts = Arc::new(opts);
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(scanner(
        shared.clone(),
        opts.clone(),
        inventory,
        cdi_written,
        shutdown.clone(),
    )));
    for index in 0..shared.config.resources.len() {
        tasks.push(tokio::spawn(supervise(
            shared.clone(),
            opts.clone(),
            index,
            shutdown.clone(),
        )));
    }
    shutdown.cancelled().await;
    for t in tasks {
        let _ = t.await;
    }
    tracing::info!("stopped");
    Ok(())
}

fn health_note(d: &DeviceState) -> String {
    match &d.health {
        Ok(()) => String::new(),
        Err(why) => format!(": unhealthy, {why}"),
    }
}

/// Reads sysfs every poll interval and publishes what changed.
async fn scanner(
    shared: Arc<Shared>,
    opts: Arc<Options>,
    mut inventory: Inventory,
    mut cdi_written: Vec<Option<cdi::Spec>>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(opts.poll_interval) => {}
        }
        let host = shared.host.clone();
        let scan = match tokio::task::spawn_blocking(move || host.scan()).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::warn!("reading sysfs: {e}");
                continue;
            }
            Err(e) => {
                tracing::warn!("reading sysfs: {e}");
                continue;
            }
        };
        let new = inventory.update(&shared.config, scan, &opts.dev_root);
        for (i, devs) in new.into_iter().enumerate() {
            let res = &shared.config.resources[i];
            log_changes(res, &shared.states[i].borrow(), &devs);
            if opts.use_cdi {
                let spec = cdi::spec(res, &devs, &shared.host);
                if cdi_written[i].as_ref() != Some(&spec) {
                    match cdi::write(&opts.cdi_dir, res, &spec) {
                        Ok(()) => cdi_written[i] = Some(spec),
                        Err(e) => tracing::error!("{}: {e}", res.full_name()),
                    }
                }
            }
            let exclude = res.exclude_topology;
            shared.states[i].send_if_modified(|cur| {
                let seen =
                    |v: &[DeviceState]| v.iter().map(|d| d.to_api(exclude)).collect::<Vec<_>>();
                let changed = seen(cur) != seen(&devs);
                *cur = devs;
                changed
            });
        }
    }
}

fn log_changes(res: &Resource, old: &[DeviceState], new: &[DeviceState]) {
    let name = res.full_name();
    for d in new {
        match old.iter().find(|o| o.function.addr == d.function.addr) {
            None => tracing::info!("{name}: new device {}{}", d.id(), health_note(d)),
            Some(o) if o.health != d.health => match &d.health {
                Ok(()) => tracing::info!("{name}: {} is healthy again", d.id()),
                Err(why) => tracing::warn!("{name}: {} is unhealthy: {why}", d.id()),
            },
            Some(_) => {}
        }
    }
    for o in old {
        if !new.iter().any(|d| d.function.addr == o.function.addr) {
            tracing::info!("{name}: device {} is gone", o.id());
        }
    }
}

/// Identity of a file: a socket removed and created again is another file
/// even if the file system reuses its inode number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    ctime: i64,
    ctime_nsec: i64,
}

fn file_id(path: &Path) -> Option<FileId> {
    std::fs::symlink_metadata(path).ok().map(|m| FileId {
        dev: m.dev(),
        ino: m.ino(),
        ctime: m.ctime(),
        ctime_nsec: m.ctime_nsec(),
    })
}

/// Waits `d`, or returns `false` at once when `shutdown` is cancelled.
async fn pause(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// One resource's socket, registration and restarts.
async fn supervise(
    shared: Arc<Shared>,
    opts: Arc<Options>,
    index: usize,
    shutdown: CancellationToken,
) {
    let res = &shared.config.resources[index];
    let name = res.full_name();
    let sock = opts.plugin_dir.join(res.socket_name());
    let mut quiet = false;
    'serve: while !shutdown.is_cancelled() {
        // A socket left by a plugin that was killed, or ours after the
        // kubelet's restart replaced nothing: either way, ours now.
        let _ = std::fs::remove_file(&sock);
        let listener = match UnixListener::bind(&sock) {
            Ok(l) => l,
            Err(e) => {
                if !quiet {
                    tracing::warn!("{name}: cannot listen on {}: {e}; retrying", sock.display());
                    quiet = true;
                }
                if pause(opts.watch_interval, &shutdown).await {
                    continue;
                }
                break;
            }
        };
        let sock_id = file_id(&sock);
        let stop = shutdown.child_token();
        let service = ResourceService::new(shared.clone(), index, stop.clone());
        let server = tokio::spawn({
            let stop = stop.clone();
            async move {
                tonic::transport::Server::builder()
                    .add_service(DevicePluginServer::new(service))
                    .serve_with_incoming_shutdown(
                        UnixListenerStream::new(listener),
                        stop.cancelled_owned(),
                    )
                    .await
            }
        });
        tracing::info!("{name}: serving on {}", sock.display());

        let mut quiet_register = false;
        let kubelet_id = loop {
            let id = file_id(&opts.kubelet_socket);
            match register(&opts, res).await {
                Ok(()) => {
                    tracing::info!(
                        "{name}: registered with the kubelet at {} (endpoint {})",
                        opts.kubelet_socket.display(),
                        res.socket_name()
                    );
                    break id;
                }
                Err(e) if !quiet_register => {
                    tracing::warn!("{name}: {e}; retrying every {:?}", opts.watch_interval);
                    quiet_register = true;
                }
                Err(e) => tracing::debug!("{name}: {e}"),
            }
            if !pause(opts.watch_interval, &shutdown).await {
                stop_server(&name, stop, server).await;
                break 'serve;
            }
            if file_id(&sock) != sock_id {
                tracing::info!(
                    "{name}: {} was removed before registering; creating it again",
                    sock.display()
                );
                stop_server(&name, stop, server).await;
                continue 'serve;
            }
        };
        quiet = false;

        loop {
            if !pause(opts.watch_interval, &shutdown).await {
                stop_server(&name, stop, server).await;
                break 'serve;
            }
            if file_id(&sock) != sock_id {
                tracing::info!(
                    "{name}: {} was removed (the kubelet restarted); creating it again and registering again",
                    sock.display()
                );
                break;
            }
            let now = file_id(&opts.kubelet_socket);
            if now.is_some() && now != kubelet_id {
                tracing::info!(
                    "{name}: {} was created again (the kubelet restarted); registering again",
                    opts.kubelet_socket.display()
                );
                break;
            }
        }
        stop_server(&name, stop, server).await;
    }
    if file_id(&sock).is_some() {
        let _ = std::fs::remove_file(&sock);
    }
}

type ServerTask = tokio::task::JoinHandle<Result<(), tonic::transport::Error>>;

async fn stop_server(name: &str, stop: CancellationToken, mut server: ServerTask) {
    stop.cancel();
    match tokio::time::timeout(STOP_TIMEOUT, &mut server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!("{name}: server: {e}"),
        Ok(Err(e)) => tracing::warn!("{name}: server task: {e}"),
        Err(_) => {
            tracing::warn!("{name}: server did not stop within {STOP_TIMEOUT:?}; dropping it");
            server.abort();
        }
    }
}

/// One `Register` call to the kubelet.
async fn register(opts: &Options, res: &Resource) -> Result<(), String> {
    let socket = &opts.kubelet_socket;
    let attempt = async {
        let channel = crate::uds::connect(socket, REGISTER_TIMEOUT)
            .await
            .map_err(|e| {
                format!(
                    "cannot reach the kubelet at {}: {}",
                    socket.display(),
                    chain(&e)
                )
            })?;
        RegistrationClient::new(channel)
            .register(api::RegisterRequest {
                version: crate::api::VERSION.into(),
                endpoint: res.socket_name(),
                resource_name: res.full_name(),
                options: Some(Shared::options()),
            })
            .await
            .map_err(|s| format!("the kubelet refused the registration: {}", s.message()))
    };
    match tokio::time::timeout(REGISTER_TIMEOUT, attempt).await {
        Ok(r) => r.map(|_| ()),
        Err(_) => Err(format!(
            "registration at {} timed out after {REGISTER_TIMEOUT:?}",
            socket.display()
        )),
    }
}

/// An error with its causes, `a: b: c` (tonic's transport errors say little
/// on their own).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let c_text = c.to_string();
        if !s.ends_with(&c_text) {
            s.push_str(": ");
            s.push_str(&c_text);
        }
        src = c.source();
    }
    s
}
