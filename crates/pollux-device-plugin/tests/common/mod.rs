//! Test doubles for the device plugin's integration tests: a kubelet
//! stand-in that follows the published device plugin protocol over real
//! unix sockets, and a fake node (sysfs tree from pollux-pci's builder,
//! `/dev/vfio` nodes as plain files).
//!
//! The stand-in does what the kubelet's device manager does: it serves
//! `Registration` on `kubelet.sock` in its directory, refuses a request of
//! another API version, answers `Register` at once and then dials the
//! plugin's socket (`endpoint`, relative to its own directory), asks for
//! the options and keeps a `ListAndWatch` stream open, recording every list.
//! Restarting it removes `kubelet.sock` and (as the kubelet does at start)
//! every other socket in the directory, then serves a new `kubelet.sock`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use pollux_device_plugin::api::v1beta1 as api;
use pollux_device_plugin::api::v1beta1::device_plugin_client::DevicePluginClient;
use pollux_device_plugin::api::v1beta1::registration_server::{Registration, RegistrationServer};
use pollux_pci::fake::{FakeFn, FakeSysfs};
use pollux_pci::PciAddr;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Request, Response, Status};

/// How long any wait in these tests may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A device as the kubelet sees it: ID, health, NUMA node.
pub type Dev = (String, String, Option<i64>);

pub fn devs(list: &[api::Device]) -> Vec<Dev> {
    list.iter()
        .map(|d| {
            (
                d.id.clone(),
                d.health.clone(),
                d.topology
                    .as_ref()
                    .and_then(|t| t.nodes.first())
                    .map(|n| n.id),
            )
        })
        .collect()
}

/// What the stand-in has seen.
#[derive(Debug, Default)]
pub struct Seen {
    /// Every accepted registration, in order.
    pub registrations: Vec<api::RegisterRequest>,
    /// Every ListAndWatch message: resource, the registration it follows
    /// (its index in `registrations`), the devices.
    pub lists: Vec<(String, usize, Vec<api::Device>)>,
    /// The options each resource's plugin reported.
    pub options: HashMap<String, api::DevicePluginOptions>,
    /// ListAndWatch streams that ended, per resource.
    pub streams_ended: HashMap<String, usize>,
    /// Failures of the stand-in's own calls.
    pub errors: Vec<String>,
    /// Calls that found the registered endpoint's server already gone (the
    /// plugin restarting it); the kubelet waits for a new registration.
    pub endpoints_gone: Vec<String>,
}

impl Seen {
    pub fn registrations_of(&self, resource: &str) -> usize {
        self.registrations
            .iter()
            .filter(|r| r.resource_name == resource)
            .count()
    }

    /// The last list received for `resource`.
    pub fn latest(&self, resource: &str) -> Option<Vec<Dev>> {
        self.lists
            .iter()
            .rev()
            .find(|(r, _, _)| r == resource)
            .map(|(_, _, l)| devs(l))
    }

    /// The last list received for `resource` after its `n`th registration
    /// (counting from 1).
    pub fn latest_after(&self, resource: &str, n: usize) -> Option<Vec<Dev>> {
        let reg = self
            .registrations
            .iter()
            .enumerate()
            .filter(|(_, r)| r.resource_name == resource)
            .nth(n.checked_sub(1)?)?
            .0;
        self.lists
            .iter()
            .rev()
            .find(|(r, g, _)| r == resource && *g >= reg)
            .map(|(_, _, l)| devs(l))
    }
}

struct Shared {
    dir: PathBuf,
    seen: Mutex<Seen>,
    version: watch::Sender<u64>,
    clients: Mutex<HashMap<String, DevicePluginClient<Channel>>>,
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut Seen)) {
        f(&mut self.seen.lock().unwrap());
        self.version.send_modify(|v| *v += 1);
    }
}

/// The kubelet stand-in.
pub struct Kubelet {
    shared: Arc<Shared>,
    server: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
}

impl Kubelet {
    /// Serves `kubelet.sock` in `dir` (created if needed).
    pub async fn start(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let mut k = Self {
            shared: Arc::new(Shared {
                dir: dir.to_owned(),
                seen: Mutex::new(Seen::default()),
                version: watch::channel(0).0,
                clients: Mutex::new(HashMap::new()),
            }),
            server: None,
        };
        k.serve();
        k
    }

    pub fn socket(&self) -> PathBuf {
        self.shared.dir.join("kubelet.sock")
    }

    fn serve(&mut self) {
        let listener = UnixListener::bind(self.socket()).unwrap();
        let stop = CancellationToken::new();
        let reg = Reg(self.shared.clone());
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                tonic::transport::Server::builder()
                    .add_service(RegistrationServer::new(reg))
                    .serve_with_incoming_shutdown(
                        UnixListenerStream::new(listener),
                        stop.cancelled_owned(),
                    )
                    .await
                    .unwrap();
            }
        });
        self.server = Some((stop, task));
    }

    async fn stop(&mut self) {
        if let Some((stop, task)) = self.server.take() {
            stop.cancel();
            tokio::time::timeout(DEADLINE, task).await.unwrap().unwrap();
        }
        let _ = std::fs::remove_file(self.socket());
    }

    /// A kubelet restart: stop, remove `kubelet.sock` and, with `wipe`, every
    /// other socket in the directory (what the kubelet's device manager
    /// does when it starts), then serve a new `kubelet.sock`.
    pub async fn restart(&mut self, wipe: bool) {
        self.stop().await;
        if wipe {
            for e in std::fs::read_dir(&self.shared.dir).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_socket() {
                    std::fs::remove_file(e.path()).unwrap();
                }
            }
        }
        self.serve();
    }

    /// Calls `check` on what has been seen until it returns `Some`, for at
    /// most [`DEADLINE`]; panics naming `what` and showing what was seen.
    pub async fn wait<T>(&self, what: &str, check: impl Fn(&Seen) -> Option<T>) -> T {
        let mut rx = self.shared.version.subscribe();
        let end = tokio::time::Instant::now() + DEADLINE;
        loop {
            rx.borrow_and_update();
            if let Some(v) = check(&self.shared.seen.lock().unwrap()) {
                return v;
            }
            if tokio::time::timeout_at(end, rx.changed()).await.is_err() {
                panic!(
                    "timed out after {DEADLINE:?} waiting for {what}; seen: {:#?}",
                    self.shared.seen.lock().unwrap()
                );
            }
        }
    }

    /// Waits for the list of `resource` to satisfy `pred`, and returns it.
    pub async fn wait_list(
        &self,
        resource: &str,
        what: &str,
        pred: impl Fn(&[Dev]) -> bool,
    ) -> Vec<Dev> {
        self.wait(&format!("{resource}: {what}"), |s| {
            s.latest(resource).filter(|l| pred(l))
        })
        .await
    }

    /// A client of the plugin serving `resource`, as the stand-in dialled it.
    pub async fn client(&self, resource: &str) -> DevicePluginClient<Channel> {
        let shared = self.shared.clone();
        self.wait(&format!("a connection to {resource}"), |_| {
            shared.clients.lock().unwrap().get(resource).cloned()
        })
        .await
    }

    /// Bumped on everything the stand-in sees.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.version.subscribe()
    }

    pub fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.shared.seen.lock().unwrap())
    }
}

struct Reg(Arc<Shared>);

#[tonic::async_trait]
impl Registration for Reg {
    async fn register(
        &self,
        request: Request<api::RegisterRequest>,
    ) -> Result<Response<api::Empty>, Status> {
        let r = request.into_inner();
        if r.version != pollux_device_plugin::api::VERSION {
            return Err(Status::invalid_argument(format!(
                "unsupported API version {:?}",
                r.version
            )));
        }
        if r.resource_name.split_once('/').is_none() || r.endpoint.contains('/') {
            return Err(Status::invalid_argument(format!("bad registration {r:?}")));
        }
        let mut index = 0;
        self.0.update(|s| {
            index = s.registrations.len();
            s.registrations.push(r.clone());
        });
        tokio::spawn(dial(self.0.clone(), r, index));
        Ok(Response::new(api::Empty {}))
    }
}

/// Connects to a plugin's socket as the kubelet does.
pub async fn connect(path: &Path) -> Result<Channel, tonic::transport::Error> {
    let path = path.to_owned();
    Endpoint::from_static("http://kubelet.invalid")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
}

async fn dial(shared: Arc<Shared>, r: api::RegisterRequest, index: usize) {
    let name = r.resource_name.clone();
    let fail = |e: String| {
        shared.update(|s| s.errors.push(format!("{name}: {e}")));
    };
    let channel = match tokio::time::timeout(DEADLINE, connect(&shared.dir.join(&r.endpoint))).await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return fail(format!("dial: {e:?}")),
        Err(_) => return fail("dial timed out".into()),
    };
    // A plugin that notices the kubelet's restart a second time (the
    // socket wipe, then the new kubelet.sock) restarts its server right
    // after registering, so a call on the connection of that registration
    // can find the server gone (Unavailable: connection refused). The
    // kubelet treats that as the endpoint stopping and waits for the
    // plugin to register again (devicemanager's endpoint run loop); the
    // tests then check that it did. Anything else is an error.
    let gone = |shared: &Shared, what: &str, e: &Status| {
        if e.code() == tonic::Code::Unavailable {
            shared.update(|s| s.endpoints_gone.push(format!("{name}: {what}: {e}")));
            true
        } else {
            false
        }
    };
    let mut client = DevicePluginClient::new(channel);
    match client.get_device_plugin_options(api::Empty {}).await {
        Ok(o) => shared.update(|s| {
            s.options.insert(name.clone(), o.into_inner());
        }),
        Err(e) if gone(&shared, "GetDevicePluginOptions", &e) => return,
        Err(e) => return fail(format!("GetDevicePluginOptions: {e}")),
    }
    shared
        .clients
        .lock()
        .unwrap()
        .insert(name.clone(), client.clone());
    let mut stream = match client.list_and_watch(api::Empty {}).await {
        Ok(s) => s.into_inner(),
        Err(e) if gone(&shared, "ListAndWatch", &e) => return,
        Err(e) => return fail(format!("ListAndWatch: {e}")),
    };
    // The stream ends (or fails) when the plugin stops its server.
    while let Ok(Some(m)) = stream.message().await {
        shared.update(|s| s.lists.push((name.clone(), index, m.devices)));
    }
    shared.update(|s| *s.streams_ended.entry(name.clone()).or_default() += 1);
}

pub fn a(s: &str) -> PciAddr {
    s.parse().unwrap()
}

/// A node with three igb PFs and their VFs:
/// - PF 0000:01:00.0 `enp1s0`, NUMA 0: VFs 0000:01:10.0, .2, .4 on
///   vfio-pci, IOMMU groups 11, 12, 13;
/// - PF 0000:02:00.0 `enp2s0`, NUMA 0: VFs 0000:02:10.0, .2 on vfio-pci,
///   groups 21, 22;
/// - PF 0000:03:00.0 `enp3s0`, NUMA 1: VFs 0000:03:10.0, .2 on vfio-pci,
///   groups 31, 32, and VF 0000:03:10.4 on igbvf (netdev `enp3s0v2`),
///   group 33.
///
/// Every PF link is up; `/dev/vfio/vfio` and every group node exist.
pub struct Node {
    pub tmp: tempfile::TempDir,
    pub fake: FakeSysfs,
}

pub const DPDK: &str = "pollux.example/igb_vf_dpdk";
pub const KERNEL: &str = "pollux.example/igb_vf_kernel";

/// The configuration the tests run with: the DPDK resource takes the VFs
/// of enp1s0 and enp2s0 by PF name and VFs 0-1 of the third PF by PCI
/// address; the kernel resource takes igbvf VFs.
pub const CONFIG: &str = r#"{
  "resourceList": [
    {
      "resourcePrefix": "pollux.example",
      "resourceName": "igb_vf_dpdk",
      "selectors": [
        { "vendors": ["8086"], "devices": ["10ca"], "drivers": ["vfio-pci"], "pfNames": ["enp1s0", "enp2s0"] },
        { "rootDevices": ["0000:03:00.0#0-1"] }
      ]
    },
    {
      "resourcePrefix": "pollux.example",
      "resourceName": "igb_vf_kernel",
      "selectors": { "drivers": ["igbvf"] }
    }
  ]
}"#;

impl Node {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let fake = FakeSysfs::new(&tmp.path().join("sys")).unwrap();
        let node = Self { tmp, fake };
        std::fs::create_dir_all(node.dev().join("vfio")).unwrap();
        std::fs::write(node.dev().join("vfio/vfio"), "").unwrap();
        for (bus, numa, nvfs) in [(1u8, 0, 3u8), (2, 0, 2), (3, 1, 3)] {
            let pf = PciAddr::new(0, bus, 0, 0).unwrap();
            let ifname = format!("enp{bus}s0");
            let base = FakeFn {
                addr: pf,
                vendor: 0x8086,
                device: 0x10c9,
                class: 0x020000,
                driver: Some("igb"),
                iommu_group: Some(u32::from(bus)),
                numa_node: numa,
                netdevs: &[],
                total_vfs: Some(7),
            };
            node.fake.add(&base).unwrap();
            node.fake.add_netdev(pf, &ifname).unwrap();
            node.set_netdev_attr(pf, &ifname, "type", "1");
            node.set_netdev_attr(pf, &ifname, "operstate", "up");
            for i in 0..nvfs {
                let kernel = bus == 3 && i == 2;
                node.add_vf(bus, i, if kernel { "igbvf" } else { "vfio-pci" });
                if kernel {
                    node.fake
                        .add_netdev(PciAddr::new(0, bus, 0x10, i * 2).unwrap(), "enp3s0v2")
                        .unwrap();
                }
            }
        }
        node
    }

    /// Adds VF `index` of PF `0000:<bus>:00.0` at `0000:<bus>:10.<2*index>`,
    /// IOMMU group `10*bus + index + 1`, with its `/dev/vfio` node.
    pub fn add_vf(&self, bus: u8, index: u8, driver: &str) -> PciAddr {
        let pf = PciAddr::new(0, bus, 0, 0).unwrap();
        let addr = PciAddr::new(0, bus, 0x10, index * 2).unwrap();
        let group = 10 * u32::from(bus) + u32::from(index) + 1;
        self.fake
            .add_vf(
                pf,
                u32::from(index),
                &FakeFn {
                    addr,
                    vendor: 0x8086,
                    device: 0x10ca,
                    class: 0x020000,
                    driver: Some(driver),
                    iommu_group: Some(group),
                    numa_node: if bus == 3 { 1 } else { 0 },
                    netdevs: &[],
                    total_vfs: None,
                },
            )
            .unwrap();
        std::fs::write(self.dev().join(format!("vfio/{group}")), "").unwrap();
        addr
    }

    pub fn set_netdev_attr(&self, addr: PciAddr, ifname: &str, attr: &str, value: &str) {
        std::fs::write(
            self.fake.real_dir(addr).join("net").join(ifname).join(attr),
            format!("{value}\n"),
        )
        .unwrap();
    }

    pub fn sys(&self) -> PathBuf {
        self.tmp.path().join("sys")
    }

    pub fn dev(&self) -> PathBuf {
        self.tmp.path().join("dev")
    }

    pub fn devinfo(&self) -> PathBuf {
        self.tmp.path().join("devinfo/dp")
    }

    pub fn cdi(&self) -> PathBuf {
        self.tmp.path().join("cdi")
    }

    /// The kubelet's device plugin directory.
    pub fn plugins(&self) -> PathBuf {
        self.tmp.path().join("device-plugins")
    }

    pub fn config_file(&self) -> PathBuf {
        let p = self.tmp.path().join("config.json");
        if !p.exists() {
            std::fs::write(&p, CONFIG).unwrap();
        }
        p
    }
}

/// The DPDK resource's devices on the fresh node, all healthy.
pub fn dpdk_devices() -> Vec<Dev> {
    [
        ("0000:01:10.0", 0),
        ("0000:01:10.2", 0),
        ("0000:01:10.4", 0),
        ("0000:02:10.0", 0),
        ("0000:02:10.2", 0),
        ("0000:03:10.0", 1),
        ("0000:03:10.2", 1),
    ]
    .iter()
    .map(|(id, n)| (id.to_string(), "Healthy".to_string(), Some(*n)))
    .collect()
}
