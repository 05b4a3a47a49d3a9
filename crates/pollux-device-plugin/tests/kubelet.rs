//! The plugin against a kubelet stand-in over real unix sockets, on a fake
//! node: registration, ListAndWatch, GetPreferredAllocation, Allocate (the
//! answers read back the way a pod's data plane reads them, with
//! pollux-sriov), CDI, health changes, and restarts of either side.
//! Every wait has a deadline ([`common::DEADLINE`]).

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{a, dpdk_devices, Dev, Kubelet, Node, DEADLINE, DPDK, KERNEL};
use pollux_device_plugin::api::v1beta1 as api;
use pollux_device_plugin::config::{Config, DEFAULT_RESOURCE_PREFIX};
use pollux_device_plugin::plugin::{self, Options};
use tokio_util::sync::CancellationToken;

const DPDK_SOCK: &str = "pollux.example_igb_vf_dpdk.sock";
const KERNEL_SOCK: &str = "pollux.example_igb_vf_kernel.sock";

struct Running {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<pollux_device_plugin::Result<()>>,
}

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("the plugin stops in time")
            .unwrap()
            .unwrap();
    }
}

fn options(node: &Node, kubelet: &Kubelet, use_cdi: bool) -> Options {
    let config = Config::load(&node.config_file(), DEFAULT_RESOURCE_PREFIX).unwrap();
    Options {
        kubelet_socket: kubelet.socket(),
        plugin_dir: node.plugins(),
        sysfs_root: node.sys(),
        dev_root: node.dev(),
        devinfo_dir: node.devinfo(),
        use_cdi,
        cdi_dir: node.cdi(),
        poll_interval: Duration::from_millis(100),
        watch_interval: Duration::from_millis(100),
        ..Options::new(config)
    }
}

fn start(node: &Node, kubelet: &Kubelet, use_cdi: bool) -> Running {
    let stop = CancellationToken::new();
    let task = tokio::spawn(plugin::run(options(node, kubelet, use_cdi), stop.clone()));
    Running { stop, task }
}

fn one_container(ids: &[&str]) -> api::AllocateRequest {
    api::AllocateRequest {
        container_requests: vec![api::ContainerAllocateRequest {
            devices_ids: ids.iter().map(|s| s.to_string()).collect(),
        }],
    }
}

fn health_of(list: &[Dev], id: &str) -> String {
    list.iter()
        .find(|d| d.0 == id)
        .map(|d| d.1.clone())
        .unwrap_or_else(|| panic!("{id} not listed in {list:?}"))
}

fn all_healthy_but(list: &[Dev], sick: &[&str]) -> bool {
    list.iter()
        .all(|d| (d.1 == "Unhealthy") == sick.contains(&d.0.as_str()))
}

/// Registration, the device lists with NUMA nodes, the preferred
/// allocation, and Allocate's answer checked the way its consumers read it:
/// the `PCIDEVICE_*` variable through pollux-sriov's `vfs_from_env`, the
/// device-info files through pollux-sriov's `read_device_info`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_advertises_and_allocates() {
    let node = Node::new();
    // A spec of an earlier run with CDI on: removed by a run with CDI off.
    std::fs::create_dir_all(node.cdi()).unwrap();
    let stale = node.cdi().join("pollux-dp-pollux.example_igb_vf_dpdk.json");
    std::fs::write(&stale, "{}").unwrap();
    let kubelet = Kubelet::start(&node.plugins()).await;
    let plugin = start(&node, &kubelet, false);

    let regs = kubelet
        .wait("both resources registered", |s| {
            (s.registrations.len() >= 2).then(|| s.registrations.clone())
        })
        .await;
    let dpdk = regs.iter().find(|r| r.resource_name == DPDK).unwrap();
    assert_eq!(dpdk.version, "v1beta1");
    assert_eq!(dpdk.endpoint, DPDK_SOCK);
    let opts = dpdk.options.unwrap();
    assert!(opts.get_preferred_allocation_available && !opts.pre_start_required);
    assert_eq!(
        regs.iter()
            .find(|r| r.resource_name == KERNEL)
            .unwrap()
            .endpoint,
        KERNEL_SOCK
    );
    assert!(node.plugins().join(DPDK_SOCK).exists());
    assert!(!stale.exists());

    let list = kubelet.wait_list(DPDK, "the first list", |_| true).await;
    assert_eq!(list, dpdk_devices());
    let list = kubelet.wait_list(KERNEL, "the first list", |_| true).await;
    assert_eq!(list, [("0000:03:10.4".into(), "Healthy".into(), Some(1))]);
    let served = kubelet
        .wait("the options", |s| s.options.get(DPDK).copied())
        .await;
    assert_eq!(served, opts);

    let mut client = kubelet.client(DPDK).await;
    let all: Vec<String> = dpdk_devices().into_iter().map(|d| d.0).collect();
    let pref = client
        .get_preferred_allocation(api::PreferredAllocationRequest {
            container_requests: vec![
                api::ContainerPreferredAllocationRequest {
                    available_device_i_ds: all.clone(),
                    must_include_device_i_ds: vec![],
                    allocation_size: 2,
                },
                api::ContainerPreferredAllocationRequest {
                    available_device_i_ds: all.clone(),
                    must_include_device_i_ds: vec!["0000:03:10.2".into()],
                    allocation_size: 2,
                },
            ],
        })
        .await
        .unwrap()
        .into_inner();
    let picks: Vec<Vec<String>> = pref
        .container_responses
        .into_iter()
        .map(|c| c.device_i_ds)
        .collect();
    // NUMA node 0 (most devices), one VF of each of its PFs; then the
    // must-have's node 1.
    assert_eq!(
        picks,
        [
            vec!["0000:01:10.0", "0000:02:10.0"],
            vec!["0000:03:10.2", "0000:03:10.0"]
        ]
    );

    let resp = client
        .allocate(one_container(&["0000:01:10.0", "0000:02:10.0"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.container_responses.len(), 1);
    let c = &resp.container_responses[0];
    let dev = node.dev();
    let specs: Vec<(String, PathBuf, String)> = c
        .devices
        .iter()
        .map(|d| {
            (
                d.container_path.clone(),
                PathBuf::from(&d.host_path),
                d.permissions.clone(),
            )
        })
        .collect();
    assert_eq!(
        specs,
        [
            ("/dev/vfio/vfio".into(), dev.join("vfio/vfio"), "rw".into()),
            ("/dev/vfio/11".into(), dev.join("vfio/11"), "rw".into()),
            ("/dev/vfio/21".into(), dev.join("vfio/21"), "rw".into()),
        ]
    );
    assert!(c.cdi_devices.is_empty() && c.mounts.is_empty());
    // What `pollux testpmd --pci-from-env pollux.example/igb_vf_dpdk` reads.
    let from_env = pollux_sriov::pod::vfs_from_env(c.envs.clone(), Some(DPDK)).unwrap();
    assert_eq!(from_env, [a("0000:01:10.0"), a("0000:02:10.0")]);
    assert_eq!(
        c.envs["PCIDEVICE_POLLUX_EXAMPLE_IGB_VF_DPDK"],
        "0000:01:10.0,0000:02:10.0"
    );
    let info: serde_json::Value =
        serde_json::from_str(&c.envs["PCIDEVICE_POLLUX_EXAMPLE_IGB_VF_DPDK_INFO"]).unwrap();
    assert_eq!(info["0000:02:10.0"]["vfio"]["dev-mount"], "/dev/vfio/21");
    // What `pollux testpmd --device-info FILE` and Multus read.
    for (vf, pf) in [
        ("0000:01:10.0", "0000:01:00.0"),
        ("0000:02:10.0", "0000:02:00.0"),
    ] {
        let path = node
            .devinfo()
            .join(format!("pollux.example-igb_vf_dpdk-{vf}-device.json"));
        let (di, addr) = pollux_sriov::pod::read_device_info(&path).unwrap();
        assert_eq!(addr, a(vf));
        assert_eq!(di.kind, "pci");
        assert_eq!(di.version, "1.1.0");
        assert_eq!(di.pci.unwrap().pf_pci_address.as_deref(), Some(pf));
    }

    let err = client
        .allocate(one_container(&["0000:01:10.0", "0000:09:00.0"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("0000:09:00.0"), "{err}");
    // The kernel resource's VF is not this resource's.
    let err = client
        .allocate(one_container(&["0000:03:10.4"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    // A VF on a kernel driver: no device nodes, the variable all the same.
    let mut kclient = kubelet.client(KERNEL).await;
    let k = kclient
        .allocate(one_container(&["0000:03:10.4"]))
        .await
        .unwrap()
        .into_inner();
    let k = &k.container_responses[0];
    assert!(k.devices.is_empty());
    assert_eq!(
        k.envs["PCIDEVICE_POLLUX_EXAMPLE_IGB_VF_KERNEL"],
        "0000:03:10.4"
    );

    client
        .pre_start_container(api::PreStartContainerRequest {
            devices_ids: vec!["0000:01:10.0".into()],
        })
        .await
        .unwrap();

    plugin.stop().await;
    assert!(!node.plugins().join(DPDK_SOCK).exists());
    assert!(!node.plugins().join(KERNEL_SOCK).exists());
    kubelet
        .wait("both streams ended", |s| {
            (s.streams_ended.contains_key(DPDK) && s.streams_ended.contains_key(KERNEL))
                .then_some(())
        })
        .await;
    assert!(
        kubelet.seen(|s| s.errors.is_empty()),
        "{:?}",
        kubelet.seen(|s| s.errors.clone())
    );
}

/// With CDI: the spec file in the CDI directory (cdiVersion 0.5.0, kind
/// `<prefix>/<name>`, a device per vfio-pci VF with its nodes), Allocate's
/// CDI names that resolve to devices of that spec, and the spec following
/// a VF that leaves vfio-pci.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdi_names_match_the_spec_written() {
    let node = Node::new();
    let kubelet = Kubelet::start(&node.plugins()).await;
    let plugin = start(&node, &kubelet, true);
    kubelet.wait_list(DPDK, "the first list", |_| true).await;

    let spec_path = node.cdi().join("pollux-dp-pollux.example_igb_vf_dpdk.json");
    let read_spec = || -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(&spec_path).unwrap()).unwrap()
    };
    let spec = read_spec();
    assert_eq!(spec["cdiVersion"], "0.5.0");
    assert_eq!(spec["kind"], DPDK);
    let names: Vec<&str> = spec["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    let want: Vec<String> = dpdk_devices().into_iter().map(|d| d.0).collect();
    assert_eq!(names, want);
    let dev = node.dev();
    assert_eq!(
        spec["devices"][0]["containerEdits"]["deviceNodes"],
        serde_json::json!([
            {"path": "/dev/vfio/vfio", "hostPath": dev.join("vfio/vfio"), "permissions": "rw"},
            {"path": "/dev/vfio/11", "hostPath": dev.join("vfio/11"), "permissions": "rw"}
        ])
    );
    // The kernel resource has no vfio-pci device, so no spec.
    assert!(!node
        .cdi()
        .join("pollux-dp-pollux.example_igb_vf_kernel.json")
        .exists());

    let mut client = kubelet.client(DPDK).await;
    let resp = client
        .allocate(one_container(&["0000:01:10.2", "0000:03:10.0"]))
        .await
        .unwrap()
        .into_inner();
    let c = &resp.container_responses[0];
    let cdi: Vec<&str> = c.cdi_devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        cdi,
        [
            "pollux.example/igb_vf_dpdk=0000:01:10.2",
            "pollux.example/igb_vf_dpdk=0000:03:10.0"
        ]
    );
    for name in cdi {
        let (kind, dev) = name.split_once('=').unwrap();
        assert_eq!(kind, spec["kind"]);
        assert!(names.contains(&dev), "{name} is not in the spec");
    }
    // The device specs stay, for runtimes with CDI off.
    assert_eq!(c.devices.len(), 3);
    assert_eq!(
        c.envs["PCIDEVICE_POLLUX_EXAMPLE_IGB_VF_DPDK"],
        "0000:01:10.2,0000:03:10.0"
    );

    // A VF moved to a kernel driver leaves the spec.
    node.fake.bind(a("0000:01:10.4"), "igbvf").unwrap();
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        let spec = read_spec();
        let listed = spec["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"] == "0000:01:10.4");
        if !listed {
            assert_eq!(spec["devices"].as_array().unwrap().len(), 6);
            break;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "the CDI spec still lists 0000:01:10.4"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    plugin.stop().await;
}

/// Health changes reach the kubelet as new lists: a VF unbound (and
/// refused by Allocate meanwhile), its `/dev/vfio` group node removed, its
/// PF's link down; and a VF created later is added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_changes_are_streamed() {
    let node = Node::new();
    let kubelet = Kubelet::start(&node.plugins()).await;
    let plugin = start(&node, &kubelet, false);
    let first = kubelet.wait_list(DPDK, "the first list", |_| true).await;
    assert_eq!(first, dpdk_devices());
    let mut client = kubelet.client(DPDK).await;

    node.fake.unbind(a("0000:01:10.2")).unwrap();
    kubelet
        .wait_list(DPDK, "0000:01:10.2 unhealthy", |l| {
            all_healthy_but(l, &["0000:01:10.2"])
        })
        .await;
    let err = client
        .allocate(one_container(&["0000:01:10.2"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().contains("not bound"), "{err}");
    node.fake.bind(a("0000:01:10.2"), "vfio-pci").unwrap();
    kubelet
        .wait_list(DPDK, "0000:01:10.2 healthy again", |l| {
            all_healthy_but(l, &[])
        })
        .await;

    std::fs::remove_file(node.dev().join("vfio/13")).unwrap();
    let l = kubelet
        .wait_list(DPDK, "0000:01:10.4 unhealthy", |l| {
            all_healthy_but(l, &["0000:01:10.4"])
        })
        .await;
    assert_eq!(health_of(&l, "0000:01:10.4"), "Unhealthy");
    std::fs::write(node.dev().join("vfio/13"), "").unwrap();
    kubelet
        .wait_list(DPDK, "0000:01:10.4 healthy again", |l| {
            all_healthy_but(l, &[])
        })
        .await;

    node.set_netdev_attr(a("0000:02:00.0"), "enp2s0", "operstate", "down");
    kubelet
        .wait_list(DPDK, "enp2s0's VFs unhealthy", |l| {
            all_healthy_but(l, &["0000:02:10.0", "0000:02:10.2"])
        })
        .await;
    node.set_netdev_attr(a("0000:02:00.0"), "enp2s0", "operstate", "up");
    kubelet
        .wait_list(DPDK, "enp2s0's VFs healthy again", |l| {
            all_healthy_but(l, &[])
        })
        .await;

    node.add_vf(1, 3, "vfio-pci");
    let l = kubelet
        .wait_list(DPDK, "the new VF 0000:01:10.6", |l| l.len() == 8)
        .await;
    assert_eq!(l[3], ("0000:01:10.6".into(), "Healthy".into(), Some(0)));
    // Each change was sent once: no list repeats the one before it.
    let lists = kubelet.seen(|s| {
        s.lists
            .iter()
            .filter(|(r, _, _)| r == DPDK)
            .map(|(_, _, l)| common::devs(l))
            .collect::<Vec<_>>()
    });
    assert!(lists.windows(2).all(|w| w[0] != w[1]), "{lists:#?}");
    plugin.stop().await;
}

/// The kubelet restarts: its socket is removed with the plugins' (as the
/// kubelet's device manager does at start) and created again; then only
/// `kubelet.sock` is replaced. Each time both resources register again,
/// the new kubelet gets the same devices, the old streams end, and
/// Allocate works through the new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_restart_is_followed() {
    let node = Node::new();
    let mut kubelet = Kubelet::start(&node.plugins()).await;
    let plugin = start(&node, &kubelet, false);
    kubelet
        .wait("both resources registered", |s| {
            (s.registrations.len() == 2).then_some(())
        })
        .await;
    let before = kubelet.wait_list(DPDK, "the first list", |_| true).await;
    assert_eq!(before, dpdk_devices());

    for wipe in [true, false] {
        let (regs, ended) = kubelet.seen(|s| {
            (
                [DPDK, KERNEL].map(|r| s.registrations_of(r)),
                s.streams_ended.get(DPDK).copied().unwrap_or(0),
            )
        });
        kubelet.restart(wipe).await;
        for (r, n) in [DPDK, KERNEL].into_iter().zip(regs) {
            kubelet
                .wait(&format!("{r} registered again (wipe {wipe})"), |s| {
                    (s.registrations_of(r) > n).then_some(())
                })
                .await;
        }
        let round = kubelet.seen(|s| s.registrations_of(DPDK));
        let after = kubelet
            .wait(&format!("a list after registration {round}"), |s| {
                s.latest_after(DPDK, round)
            })
            .await;
        assert_eq!(after, before, "wipe {wipe}");
        kubelet
            .wait("the old stream ended", |s| {
                (s.streams_ended.get(DPDK).copied().unwrap_or(0) > ended).then_some(())
            })
            .await;
        assert!(node.plugins().join(DPDK_SOCK).exists());
        let mut client = kubelet.client(DPDK).await;
        let resp = client
            .allocate(one_container(&["0000:03:10.2"]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            resp.container_responses[0].envs["PCIDEVICE_POLLUX_EXAMPLE_IGB_VF_DPDK"],
            "0000:03:10.2"
        );
    }
    plugin.stop().await;
    assert!(
        kubelet.seen(|s| s.errors.is_empty()),
        "{:?}",
        kubelet.seen(|s| s.errors.clone())
    );
}

/// The binary, killed with SIGKILL (its sockets left behind) and started
/// again, registers again and advertises the same devices; SIGTERM stops
/// it cleanly and removes its sockets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_restart_reregisters_the_same_devices() {
    let node = Node::new();
    let kubelet = Kubelet::start(&node.plugins()).await;
    let spawn = |n: u32| {
        Guard(
            Command::new(env!("CARGO_BIN_EXE_pollux-device-plugin"))
                .arg("--config-file")
                .arg(node.config_file())
                .arg("--kubelet-socket")
                .arg(kubelet.socket())
                .arg("--sysfs-root")
                .arg(node.sys())
                .arg("--dev-root")
                .arg(node.dev())
                .arg("--devinfo-dir")
                .arg(node.devinfo())
                .args(["--poll-interval", "100ms", "--watch-interval", "100ms"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(
                    std::fs::File::create(node.tmp.path().join(format!("plugin{n}.log"))).unwrap(),
                )
                .spawn()
                .unwrap(),
        )
    };
    let mut first = spawn(1);
    kubelet
        .wait("both resources registered", |s| {
            (s.registrations.len() == 2).then_some(())
        })
        .await;
    let before = kubelet.wait_list(DPDK, "the first list", |_| true).await;
    let before_kernel = kubelet.wait_list(KERNEL, "the first list", |_| true).await;
    assert_eq!(before, dpdk_devices());

    first.0.kill().unwrap();
    first.0.wait().unwrap();
    assert!(
        node.plugins().join(DPDK_SOCK).exists(),
        "SIGKILL leaves the socket"
    );
    kubelet
        .wait("the streams of the killed plugin ended", |s| {
            (s.streams_ended.contains_key(DPDK) && s.streams_ended.contains_key(KERNEL))
                .then_some(())
        })
        .await;

    let mut second = spawn(2);
    kubelet
        .wait("both resources registered again", |s| {
            (s.registrations.len() >= 4).then_some(())
        })
        .await;
    let after = kubelet
        .wait("a list from the new plugin", |s| s.latest_after(DPDK, 2))
        .await;
    assert_eq!(after, before);
    let after_kernel = kubelet
        .wait("a list from the new plugin", |s| s.latest_after(KERNEL, 2))
        .await;
    assert_eq!(after_kernel, before_kernel);

    let pid = second.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let end = std::time::Instant::now() + DEADLINE;
    let status = loop {
        if let Some(s) = second.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < end,
            "the plugin did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
    assert!(!node.plugins().join(DPDK_SOCK).exists());
    assert!(!node.plugins().join(KERNEL_SOCK).exists());
}

/// Kills the child if a test fails before it does.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The binary refuses a configuration with a key it does not implement,
/// and a missing file, with messages that name them.
#[test]
fn the_binary_refuses_bad_configurations() {
    let t = tempfile::tempdir().unwrap();
    let cfg = t.path().join("config.json");
    std::fs::write(
        &cfg,
        r#"{"resourceList":[{"resourceName":"mlnx_sriov_rdma","resourcePrefix":"mellanox.com",
            "selectors":{"vendors":["15b3"],"devices":["1018"],"drivers":["mlx5_ib"],"isRdma":true}}]}"#,
    )
    .unwrap();
    let run = |cfg: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_pollux-device-plugin"))
            .arg("--config-file")
            .arg(cfg)
            .arg("--kubelet-socket")
            .arg(t.path().join("kubelet.sock"))
            .output()
            .unwrap()
    };
    let out = run(&cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("resourceList[0].selectors.isRdma") && err.contains("not supported"),
        "{err}"
    );
    let out = run(&t.path().join("missing.json"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("reading config file") && err.contains("missing.json"),
        "{err}"
    );
    assert!(!t.path().join("mellanox.com_mlnx_sriov_rdma.sock").exists());
}
