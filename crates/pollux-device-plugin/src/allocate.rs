//! What `GetPreferredAllocation` and `Allocate` answer, computed without
//! I/O from the devices as last scanned (or as read at the call).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use pollux_pci::PciAddr;

use crate::api::v1beta1 as api;
use crate::config::Resource;
use crate::devices::{DeviceState, Host};

/// Where the device plugin's device-info files go (the Network Plumbing WG
/// device-info-spec's `/var/run/k8s.cni.cncf.io/devinfo/dp`).
pub const DEFAULT_DEVINFO_DIR: &str = "/var/run/k8s.cni.cncf.io/devinfo/dp";

/// The VFIO container node every vfio-pci device needs in the container.
pub const VFIO_CONTAINER: &str = "/dev/vfio/vfio";

/// The preferred devices for one container: those it must have, then the
/// rest from one NUMA node (the node of most of the must-haves, else the
/// node with the most available devices), spread over the PFs of that node
/// (the PF with the fewest devices picked so far first, so two VFs of a
/// container land on two ports where they can), then from the other nodes
/// in the same way, devices without NUMA information last.
///
/// IDs the plugin does not know (not in `devices`) are offered last, each
/// as if it had a PF of its own. Deterministic: ties go to the lower PCI
/// address.
pub fn preferred(
    available: &[String],
    must_include: &[String],
    size: i32,
    devices: &[DeviceState],
) -> Vec<String> {
    let size = usize::try_from(size).unwrap_or(0);
    let known: HashMap<String, (Option<u32>, String)> = devices
        .iter()
        .map(|d| {
            let f = &d.function;
            (d.id(), (f.numa_node, f.pf.unwrap_or(f.addr).to_string()))
        })
        .collect();
    let info = |id: &str| {
        known
            .get(id)
            .cloned()
            .unwrap_or_else(|| (None, format!("~{id}")))
    };
    let mut chosen: Vec<String> = Vec::new();
    for m in must_include {
        if !chosen.contains(m) {
            chosen.push(m.clone());
        }
    }
    if chosen.len() >= size {
        return chosen;
    }
    let mut candidates: Vec<&String> = available.iter().filter(|a| !chosen.contains(a)).collect();
    candidates.sort();
    candidates.dedup();

    let mut tally: HashMap<String, usize> = HashMap::new();
    let mut chosen_nodes: BTreeMap<u32, usize> = BTreeMap::new();
    for c in &chosen {
        let (numa, pf) = info(c);
        *tally.entry(pf).or_default() += 1;
        if let Some(n) = numa {
            *chosen_nodes.entry(n).or_default() += 1;
        }
    }
    let mut node_counts: BTreeMap<Option<u32>, usize> = BTreeMap::new();
    for c in &candidates {
        *node_counts.entry(info(c).0).or_default() += 1;
    }
    let most = |m: &BTreeMap<u32, usize>| {
        m.iter()
            .max_by_key(|(n, c)| (**c, std::cmp::Reverse(**n)))
            .map(|(n, _)| *n)
    };
    let target = most(&chosen_nodes).or_else(|| {
        most(
            &node_counts
                .iter()
                .filter_map(|(n, c)| n.map(|n| (n, *c)))
                .collect(),
        )
    });
    let mut nodes: Vec<(Option<u32>, usize)> = node_counts.into_iter().collect();
    nodes.sort_by_key(|(n, count)| {
        (
            *n != target || n.is_none(),
            n.is_none(),
            std::cmp::Reverse(*count),
            *n,
        )
    });

    for (node, _) in nodes {
        let mut pool: Vec<(&String, String)> = candidates
            .iter()
            .filter(|c| info(c).0 == node)
            .map(|c| (*c, info(c).1))
            .collect();
        while chosen.len() < size && !pool.is_empty() {
            let (i, _) = pool
                .iter()
                .enumerate()
                .min_by_key(|(i, (_, pf))| (tally.get(pf).copied().unwrap_or(0), pf.clone(), *i))
                .expect("pool is not empty");
            let (id, pf) = pool.remove(i);
            *tally.entry(pf).or_default() += 1;
            chosen.push(id.clone());
        }
    }
    chosen
}

/// The environment variable(s) that carry a resource's PCI addresses:
/// `PCIDEVICE_<PREFIX>_<NAME>`, upper-cased with every character that is not
/// a letter, a digit or `_` turned into `_` (pollux-sriov's
/// [`env_var_name`](pollux_sriov::pod::env_var_name), which `pollux testpmd
/// --pci-from-env` looks up). The SR-IOV plugin turns only `.` into `_`
/// (`pkg/resources/pool_stub.go`, `GetEnvs`), so for a name with a `-` its
/// spelling differs; then both are set, with the same value.
pub fn env_names(full_name: &str) -> Vec<String> {
    let ours = pollux_sriov::pod::env_var_name(full_name);
    let sriov = format!("PCIDEVICE_{}", full_name.replace(['/', '.'], "_")).to_uppercase();
    if sriov == ours {
        vec![ours]
    } else {
        vec![ours, sriov]
    }
}

/// The device plugin's device-info file for one device:
/// `<dir>/<prefix>-<name>-<id>-device.json`, the name
/// network-attachment-definition-client's `SaveDeviceInfoForDP` gives it
/// (and Multus looks for), `/` replaced by `-`.
pub fn device_info_path(dir: &Path, full_name: &str, id: &str) -> PathBuf {
    dir.join(format!(
        "{}-{}-device.json",
        full_name.replace('/', "-"),
        id.replace('/', "-")
    ))
}

/// One device granted to a container, as read at Allocate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Granted {
    pub addr: PciAddr,
    pub pf: Option<PciAddr>,
    /// The IOMMU group of a vfio-pci device; `None` for a kernel driver's.
    pub vfio_group: Option<u32>,
}

/// The answer for one container: `/dev/vfio/vfio` and each vfio-pci
/// device's group node (once each, `rw`), the `PCIDEVICE_*` variable(s)
/// with the addresses in the order asked, the SR-IOV plugin's
/// `PCIDEVICE_*_INFO` JSON, and with CDI the qualified CDI names of the
/// vfio-pci devices (which are what the CDI spec lists).
///
/// With CDI the device specs stay: a runtime with CDI turned off (the
/// default of containerd 1.7) still gets the nodes, and CDI replaces a
/// device node of the same path rather than adding it twice.
pub fn container_response(
    res: &Resource,
    granted: &[Granted],
    host: &Host,
    use_cdi: bool,
) -> api::ContainerAllocateResponse {
    let mut devices: Vec<api::DeviceSpec> = Vec::new();
    let mut spec = |host_path: PathBuf, container_path: String| {
        if !devices.iter().any(|d| d.container_path == container_path) {
            devices.push(api::DeviceSpec {
                container_path,
                host_path: host_path.to_string_lossy().into_owned(),
                permissions: "rw".into(),
            });
        }
    };
    let mut info = serde_json::Map::new();
    for g in granted {
        let id = g.addr.to_string();
        let mut providers = serde_json::Map::new();
        providers.insert("generic".into(), serde_json::json!({ "deviceID": id }));
        if let Some(group) = g.vfio_group {
            spec(host.vfio_container(), VFIO_CONTAINER.into());
            spec(host.vfio_group(group), format!("/dev/vfio/{group}"));
            providers.insert(
                "vfio".into(),
                serde_json::json!({ "mount": VFIO_CONTAINER, "dev-mount": format!("/dev/vfio/{group}") }),
            );
        }
        info.insert(id, serde_json::Value::Object(providers));
    }
    let full = res.full_name();
    let list = granted
        .iter()
        .map(|g| g.addr.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let info = serde_json::Value::Object(info).to_string();
    let mut envs = std::collections::HashMap::new();
    for name in env_names(&full) {
        envs.insert(format!("{name}_INFO"), info.clone());
        envs.insert(name, list.clone());
    }
    let cdi_devices = if use_cdi {
        granted
            .iter()
            .filter(|g| g.vfio_group.is_some())
            .map(|g| api::CdiDevice {
                name: crate::cdi::qualified_name(res, &g.addr.to_string()),
            })
            .collect()
    } else {
        Vec::new()
    };
    api::ContainerAllocateResponse {
        envs,
        mounts: Vec::new(),
        devices,
        annotations: Default::default(),
        cdi_devices,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, DEFAULT_RESOURCE_PREFIX};
    use crate::devices::{Function, Link};

    fn dev(addr: &str, pf: &str, numa: Option<u32>) -> DeviceState {
        DeviceState {
            function: Function {
                addr: addr.parse().unwrap(),
                vendor: 0x8086,
                device: 0x10ca,
                driver: Some("vfio-pci".into()),
                iommu_group: Some(1),
                vfio_node: true,
                numa_node: numa,
                pf: Some(pf.parse().unwrap()),
                vf_index: Some(0),
                pf_netdev: None,
                link_type: None,
                pf_link: Link::Unknown,
            },
            selector: 0,
            health: Ok(()),
        }
    }

    /// NUMA 0: PF A (3 VFs) and PF B (2 VFs); NUMA 1: PF C (4 VFs).
    fn node() -> Vec<DeviceState> {
        let mut v = Vec::new();
        for i in 0..3 {
            v.push(dev(&format!("0000:01:10.{i}"), "0000:01:00.0", Some(0)));
        }
        for i in 0..2 {
            v.push(dev(&format!("0000:02:10.{i}"), "0000:02:00.0", Some(0)));
        }
        for i in 0..4 {
            v.push(dev(&format!("0000:03:10.{i}"), "0000:03:00.0", Some(1)));
        }
        v
    }

    fn ids(d: &[DeviceState]) -> Vec<String> {
        d.iter().map(DeviceState::id).collect()
    }

    #[test]
    fn one_numa_node_first_then_spread_over_pfs() {
        let d = node();
        let all = ids(&d);
        assert_eq!(
            preferred(&all, &[], 2, &d),
            ["0000:01:10.0", "0000:02:10.0"]
        );
        assert_eq!(
            preferred(&all, &[], 3, &d),
            ["0000:01:10.0", "0000:02:10.0", "0000:01:10.1"]
        );
        let six = preferred(&all, &[], 6, &d);
        assert_eq!(six.len(), 6);
        assert!(six[..5].iter().all(|i| !i.starts_with("0000:03")));
        assert_eq!(six[5], "0000:03:10.0");
        // A must-have on node 1 pulls the rest there.
        assert_eq!(
            preferred(&all, &["0000:03:10.1".into()], 2, &d),
            ["0000:03:10.1", "0000:03:10.0"]
        );
        // A must-have on PF A: the next one comes from PF B.
        assert_eq!(
            preferred(&all, &["0000:01:10.2".into()], 2, &d),
            ["0000:01:10.2", "0000:02:10.0"]
        );
        // Only node 1 offered.
        let node1: Vec<String> = all[5..].to_vec();
        assert_eq!(preferred(&node1, &[], 1, &d), ["0000:03:10.0"]);
    }

    #[test]
    fn odd_requests() {
        let d = node();
        let all = ids(&d);
        assert!(preferred(&all, &[], 0, &d).is_empty());
        assert!(preferred(&all, &[], -3, &d).is_empty());
        assert_eq!(preferred(&all, &[], 20, &d).len(), all.len());
        // Unknown IDs come last.
        let mut with_unknown = vec!["x".to_string()];
        with_unknown.extend(all[..1].iter().cloned());
        assert_eq!(preferred(&with_unknown, &[], 2, &d), ["0000:01:10.0", "x"]);
        // Must-haves beyond the size are all kept; duplicates dropped.
        let must = vec![all[0].clone(), all[0].clone(), all[1].clone()];
        assert_eq!(preferred(&all, &must, 1, &d), all[..2]);
        // No NUMA information anywhere: still spread over PFs.
        let flat: Vec<DeviceState> = node()
            .into_iter()
            .map(|mut s| {
                s.function.numa_node = None;
                s
            })
            .collect();
        assert_eq!(
            preferred(&all, &[], 3, &flat),
            ["0000:01:10.0", "0000:02:10.0", "0000:03:10.0"]
        );
    }

    #[test]
    fn env_names_and_device_info_paths() {
        assert_eq!(
            env_names("pollux.example/igb_vf_dpdk"),
            ["PCIDEVICE_POLLUX_EXAMPLE_IGB_VF_DPDK"]
        );
        assert_eq!(
            env_names("my-corp.io/vf-dpdk"),
            [
                "PCIDEVICE_MY_CORP_IO_VF_DPDK",
                "PCIDEVICE_MY-CORP_IO_VF-DPDK"
            ]
        );
        assert_eq!(
            device_info_path(Path::new("/d"), "intel.com/sriov", "0000:03:02.1"),
            Path::new("/d/intel.com-sriov-0000:03:02.1-device.json")
        );
    }

    #[test]
    fn container_response_dedups_nodes_and_names_cdi_devices() {
        let c = Config::parse(
            r#"{"resourceList":[{"resourceName":"vf","resourcePrefix":"pollux.example","selectors":{}}]}"#,
            DEFAULT_RESOURCE_PREFIX,
        )
        .unwrap();
        let host = Host::new("/sys", "/dev");
        let g = |a: &str, group| Granted {
            addr: a.parse().unwrap(),
            pf: None,
            vfio_group: group,
        };
        let granted = [
            g("0000:01:10.2", Some(7)),
            g("0000:01:10.0", Some(7)),
            g("0000:01:10.4", Some(9)),
            g("0000:01:10.6", None),
        ];
        let r = container_response(&c.resources[0], &granted, &host, true);
        let nodes: Vec<(&str, &str, &str)> = r
            .devices
            .iter()
            .map(|d| {
                (
                    d.container_path.as_str(),
                    d.host_path.as_str(),
                    d.permissions.as_str(),
                )
            })
            .collect();
        assert_eq!(
            nodes,
            [
                ("/dev/vfio/vfio", "/dev/vfio/vfio", "rw"),
                ("/dev/vfio/7", "/dev/vfio/7", "rw"),
                ("/dev/vfio/9", "/dev/vfio/9", "rw")
            ]
        );
        assert_eq!(
            r.envs["PCIDEVICE_POLLUX_EXAMPLE_VF"],
            "0000:01:10.2,0000:01:10.0,0000:01:10.4,0000:01:10.6"
        );
        let info: serde_json::Value =
            serde_json::from_str(&r.envs["PCIDEVICE_POLLUX_EXAMPLE_VF_INFO"]).unwrap();
        assert_eq!(info["0000:01:10.4"]["vfio"]["dev-mount"], "/dev/vfio/9");
        assert_eq!(info["0000:01:10.6"]["generic"]["deviceID"], "0000:01:10.6");
        assert!(info["0000:01:10.6"].get("vfio").is_none());
        let cdi: Vec<&str> = r.cdi_devices.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            cdi,
            [
                "pollux.example/vf=0000:01:10.2",
                "pollux.example/vf=0000:01:10.0",
                "pollux.example/vf=0000:01:10.4"
            ]
        );
        assert!(container_response(&c.resources[0], &granted, &host, false)
            .cdi_devices
            .is_empty());
    }
}
