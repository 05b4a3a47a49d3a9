//! The node's network functions as sysfs shows them, which resource each
//! belongs to, and whether it is healthy.
//!
//! [`Host::scan`] reads sysfs (through pollux-pci, under a configurable
//! root) into plain [`Function`] values; [`Inventory::update`] does the rest
//! without I/O, so the selection and health rules are tested on values.
//!
//! Candidates are what the SR-IOV plugin's netDevice provider takes: PCI
//! functions of class 02 (network), except SR-IOV PFs that have VFs enabled
//! (their VFs are the devices). A function belongs to the first resource
//! with a selector object that matches it, and stays there while it exists,
//! even if its driver changes: a VF unbound from vfio-pci is still that
//! resource's device, only unhealthy. A function that appears later (VFs
//! created, or bound to the selected driver after the plugin started) is
//! picked up at the next scan; one that disappears from sysfs is dropped.
//!
//! Healthy means: bound to one of its selector's `drivers`; for vfio-pci, an
//! IOMMU group whose `/dev/vfio/<group>` exists; and, where the PF has a
//! netdev with a known operstate, the PF's link not down.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};

use pollux_pci::{PciAddr, Sysfs};

use crate::api::v1beta1 as api;
use crate::config::{Config, Selector};
use crate::Result;

/// The driver whose devices get `/dev/vfio` nodes.
pub const VFIO_PCI: &str = "vfio-pci";

/// Where the plugin looks: sysfs and `/dev`.
#[derive(Clone, Debug)]
pub struct Host {
    pub sysfs: Sysfs,
    /// `/dev` on a real node.
    pub dev_root: PathBuf,
}

/// The link state of a PF netdev (`operstate`, Documentation/ABI/testing/
/// sysfs-class-net).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Link {
    Up,
    /// `down`, `lowerlayerdown` or `notpresent`: the operstate is kept for
    /// the health message.
    Down(String),
    /// No PF netdev, or an operstate that says nothing (`unknown`,
    /// `dormant`, `testing`).
    Unknown,
}

/// What sysfs says about one candidate function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    pub addr: PciAddr,
    pub vendor: u16,
    pub device: u16,
    pub driver: Option<String>,
    pub iommu_group: Option<u32>,
    /// `<dev>/vfio/<group>` exists.
    pub vfio_node: bool,
    pub numa_node: Option<u32>,
    /// For a VF: its PF.
    pub pf: Option<PciAddr>,
    /// For a VF: its index under the PF (`virtfnN`).
    pub vf_index: Option<u32>,
    /// For a VF: the PF's (first) netdev.
    pub pf_netdev: Option<String>,
    /// The link type of the function's own netdev, else of its PF's
    /// (`ether`, `infiniband`), as the SR-IOV plugin takes it.
    pub link_type: Option<String>,
    /// For a VF: its PF's link.
    pub pf_link: Link,
}

impl Host {
    pub fn new(sysfs_root: impl Into<PathBuf>, dev_root: impl Into<PathBuf>) -> Self {
        Self {
            sysfs: Sysfs::new(sysfs_root),
            dev_root: dev_root.into(),
        }
    }

    /// `<dev>/vfio/vfio`, the VFIO container node.
    pub fn vfio_container(&self) -> PathBuf {
        self.dev_root.join("vfio/vfio")
    }

    /// `<dev>/vfio/<group>`.
    pub fn vfio_group(&self, group: u32) -> PathBuf {
        self.dev_root.join("vfio").join(group.to_string())
    }

    /// Every candidate function, sorted by address. A function that
    /// vanishes while it is read (VFs being destroyed) is left out; one that
    /// cannot be read for another reason is left out with a warning.
    pub fn scan(&self) -> Result<Vec<Function>> {
        let mut pfs = PfCache::default();
        let mut out = Vec::new();
        for addr in self.sysfs.list()? {
            match self.read(addr, &mut pfs) {
                Ok(Some(f)) => out.push(f),
                Ok(None) => {}
                Err(e) if !self.sysfs.exists(addr) => {
                    tracing::debug!("{addr} disappeared while being read: {e}");
                }
                Err(e) => tracing::warn!("skipping {addr}: {e}"),
            }
        }
        Ok(out)
    }

    /// One function, read now; `None` if it is gone or no candidate.
    pub fn function(&self, addr: PciAddr) -> Result<Option<Function>> {
        if !self.sysfs.exists(addr) {
            return Ok(None);
        }
        self.read(addr, &mut PfCache::default())
    }

    fn read(&self, addr: PciAddr, pfs: &mut PfCache) -> Result<Option<Function>> {
        let s = &self.sysfs;
        if s.class(addr)? >> 16 != 0x02 {
            return Ok(None);
        }
        if s.sriov(addr)?.is_some_and(|c| c.num_vfs > 0) {
            return Ok(None);
        }
        let iommu_group = s.iommu_group(addr)?;
        let pf = s.physfn(addr)?;
        let (vf_index, pf_netdev, pf_link) = match pf {
            None => (None, None, Link::Unknown),
            Some(pf) => {
                let info = pfs.get(self, pf)?;
                let index = info
                    .virtfns
                    .iter()
                    .find(|(_, a)| *a == addr)
                    .map(|(i, _)| *i);
                (index, info.netdev.clone(), info.link.clone())
            }
        };
        let own_netdev = s.netdevs(addr)?.into_iter().next();
        let link_type = match own_netdev.as_deref().or(pf_netdev.as_deref()) {
            Some(n) => self.link_type(n)?,
            None => None,
        };
        Ok(Some(Function {
            addr,
            vendor: s.vendor(addr)?,
            device: s.device(addr)?,
            driver: s.driver(addr)?,
            vfio_node: iommu_group.is_some_and(|g| self.vfio_group(g).exists()),
            iommu_group,
            numa_node: s.numa_node(addr)?,
            pf,
            vf_index,
            pf_netdev,
            link_type,
            pf_link,
        }))
    }

    fn net_attr(&self, ifname: &str, attr: &str) -> Result<Option<String>> {
        let path = self.sysfs.root().join("class/net").join(ifname).join(attr);
        match std::fs::read_to_string(&path) {
            Ok(v) => Ok(Some(v.trim().to_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(pollux_pci::Error::Read { path, source }.into()),
        }
    }

    /// `class/net/<if>/type` (an ARPHRD_* number) named as netlink's
    /// `EncapType` names it, which is what `linkTypes` is compared with.
    fn link_type(&self, ifname: &str) -> Result<Option<String>> {
        Ok(self.net_attr(ifname, "type")?.map(|t| {
            match t.as_str() {
                "1" => "ether",
                "32" => "infiniband",
                "772" => "loopback",
                "65534" => "none",
                _ => "unknown",
            }
            .to_owned()
        }))
    }

    fn operstate(&self, ifname: &str) -> Result<Link> {
        Ok(match self.net_attr(ifname, "operstate")?.as_deref() {
            Some("up") => Link::Up,
            Some(s @ ("down" | "lowerlayerdown" | "notpresent")) => Link::Down(s.to_owned()),
            _ => Link::Unknown,
        })
    }
}

/// What a scan reads once per PF.
#[derive(Default)]
struct PfCache(HashMap<PciAddr, PfInfo>);

#[derive(Clone)]
struct PfInfo {
    virtfns: Vec<(u32, PciAddr)>,
    netdev: Option<String>,
    link: Link,
}

impl PfCache {
    fn get(&mut self, host: &Host, pf: PciAddr) -> Result<&PfInfo> {
        match self.0.entry(pf) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(v) => {
                let netdev = host.sysfs.netdevs(pf)?.into_iter().next();
                let link = match &netdev {
                    Some(n) => host.operstate(n)?,
                    None => Link::Unknown,
                };
                Ok(v.insert(PfInfo {
                    virtfns: host.sysfs.virtfns(pf)?,
                    netdev,
                    link,
                }))
            }
        }
    }
}

impl Selector {
    /// Does this selector object take `f`? Every non-empty list must match,
    /// as the SR-IOV plugin's filters are applied one after the other.
    pub fn matches(&self, f: &Function) -> bool {
        let any = |list_empty: bool, hit: bool| list_empty || hit;
        any(self.vendors.is_empty(), self.vendors.contains(&f.vendor))
            && any(self.devices.is_empty(), self.devices.contains(&f.device))
            && f.driver.as_ref().is_some_and(|d| self.drivers.contains(d))
            && any(
                self.pci_addresses.is_empty(),
                self.pci_addresses.contains(&f.addr),
            )
            && any(
                self.pf_names.is_empty(),
                match (&f.pf_netdev, f.vf_index) {
                    (Some(n), Some(i)) => self
                        .pf_names
                        .iter()
                        .any(|p| p.pf.eq_ignore_ascii_case(n) && p.includes(i)),
                    _ => false,
                },
            )
            && any(
                self.root_devices.is_empty(),
                match (f.pf, f.vf_index) {
                    (Some(pf), Some(i)) => self
                        .root_devices
                        .iter()
                        .any(|p| p.pf == pf && p.includes(i)),
                    _ => false,
                },
            )
            && any(
                self.link_types.is_empty(),
                f.link_type
                    .as_ref()
                    .is_some_and(|t| self.link_types.iter().any(|l| l.eq_ignore_ascii_case(t))),
            )
    }

    /// `Ok` when `f` is healthy for this selector, else why not: usable,
    /// and its PF's link not known to be down.
    pub fn health(&self, f: &Function, host_dev: &Path) -> Result<(), String> {
        self.usable(f, host_dev)?;
        if let Link::Down(state) = &f.pf_link {
            return Err(format!(
                "PF {} link is {state}",
                f.pf_netdev.as_deref().unwrap_or("?")
            ));
        }
        Ok(())
    }

    /// `Ok` when `f` can be handed to a container: bound to one of the
    /// selector's drivers and, on vfio-pci, with its group node present.
    pub fn usable(&self, f: &Function, host_dev: &Path) -> Result<(), String> {
        let expected = || self.drivers.join(" or ");
        match f.driver.as_deref() {
            None => return Err(format!("not bound to a driver (expected {})", expected())),
            Some(d) if !self.drivers.iter().any(|e| e == d) => {
                return Err(format!("bound to {d}, expected {}", expected()))
            }
            Some(VFIO_PCI) => match f.iommu_group {
                None => return Err("vfio-pci without an IOMMU group".into()),
                Some(g) if !f.vfio_node => {
                    return Err(format!(
                        "IOMMU group {g} has no {}",
                        host_dev.join("vfio").join(g.to_string()).display()
                    ))
                }
                Some(_) => {}
            },
            Some(_) => {}
        }
        Ok(())
    }
}

/// One device of a resource, as last scanned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceState {
    pub function: Function,
    /// Index of the selector object that took it.
    pub selector: usize,
    /// `Err(reason)` when unhealthy.
    pub health: Result<(), String>,
}

impl DeviceState {
    /// The device ID: its PCI address, as the SR-IOV plugin uses.
    pub fn id(&self) -> String {
        self.function.addr.to_string()
    }

    pub fn healthy(&self) -> bool {
        self.health.is_ok()
    }

    /// The device as the kubelet sees it.
    pub fn to_api(&self, exclude_topology: bool) -> api::Device {
        api::Device {
            id: self.id(),
            health: if self.healthy() {
                crate::api::HEALTHY
            } else {
                crate::api::UNHEALTHY
            }
            .to_owned(),
            topology: match self.function.numa_node {
                Some(n) if !exclude_topology => Some(api::TopologyInfo {
                    nodes: vec![api::NumaNode { id: i64::from(n) }],
                }),
                _ => None,
            },
        }
    }
}

/// Which resource each function belongs to, kept across scans.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    /// Function -> (resource index, selector index).
    owner: BTreeMap<PciAddr, (usize, usize)>,
}

impl Inventory {
    /// Takes a new scan: drops functions that are gone, gives new ones to
    /// the first resource that selects them, and returns every resource's
    /// devices (in address order) with their health.
    pub fn update(
        &mut self,
        config: &Config,
        mut scan: Vec<Function>,
        dev_root: &Path,
    ) -> Vec<Vec<DeviceState>> {
        scan.sort_by_key(|f| f.addr);
        let mut out = vec![Vec::new(); config.resources.len()];
        self.owner
            .retain(|a, _| scan.binary_search_by(|f| f.addr.cmp(a)).is_ok());
        for f in scan {
            let owner = match self.owner.get(&f.addr) {
                Some(o) => Some(*o),
                None => config.resources.iter().enumerate().find_map(|(ri, r)| {
                    r.selectors
                        .iter()
                        .position(|s| s.matches(&f))
                        .map(|si| (ri, si))
                }),
            };
            let Some((ri, si)) = owner else { continue };
            let Some(sel) = config.resources.get(ri).and_then(|r| r.selectors.get(si)) else {
                continue;
            };
            self.owner.insert(f.addr, (ri, si));
            out[ri].push(DeviceState {
                health: sel.health(&f, dev_root),
                selector: si,
                function: f,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_RESOURCE_PREFIX;
    use pollux_pci::fake::{FakeFn, FakeSysfs};

    fn a(s: &str) -> PciAddr {
        s.parse().unwrap()
    }

    fn vf(addr: &str, index: u32) -> Function {
        Function {
            addr: a(addr),
            vendor: 0x8086,
            device: 0x10ca,
            driver: Some(VFIO_PCI.into()),
            iommu_group: Some(10 + index),
            vfio_node: true,
            numa_node: Some(0),
            pf: Some(a("0000:01:00.0")),
            vf_index: Some(index),
            pf_netdev: Some("enp1s0".into()),
            link_type: Some("ether".into()),
            pf_link: Link::Up,
        }
    }

    fn config(text: &str) -> Config {
        Config::parse(text, DEFAULT_RESOURCE_PREFIX).unwrap()
    }

    #[test]
    fn selectors_match_as_the_sriov_plugin_filters() {
        let c = config(
            r#"{"resourceList":[{"resourceName":"a","selectors":[
            {"vendors":["8086"],"devices":["10ca"],"pfNames":["ENP1S0#1,3-4"],"linkTypes":["ether"]},
            {"rootDevices":["0000:01:00.0#0"],"drivers":["igbvf"]},
            {"pciAddresses":["0000:01:10.2"]}]}]}"#,
        );
        let s = &c.resources[0].selectors;
        let names: Vec<bool> = (0..6)
            .map(|i| s[0].matches(&vf(&format!("0000:01:1{}.0", i), i)))
            .collect();
        assert_eq!(names, [false, true, false, true, true, false]);
        let mut f = vf("0000:01:10.0", 0);
        assert!(!s[1].matches(&f), "vfio-pci is not igbvf");
        f.driver = Some("igbvf".into());
        assert!(s[1].matches(&f));
        f.link_type = Some("infiniband".into());
        f.driver = Some(VFIO_PCI.into());
        f.vf_index = Some(1);
        assert!(!s[0].matches(&f), "link type");
        let mut pf_less = vf("0000:01:10.2", 1);
        pf_less.pf = None;
        pf_less.pf_netdev = None;
        pf_less.vf_index = None;
        assert!(!s[0].matches(&pf_less) && !s[1].matches(&pf_less));
        assert!(s[2].matches(&pf_less), "pciAddresses needs no PF");
        pf_less.driver = None;
        assert!(
            !s[2].matches(&pf_less),
            "an unbound function is never selected"
        );
    }

    #[test]
    fn health_rules() {
        let c = config(r#"{"resourceList":[{"resourceName":"a","selectors":{}}]}"#);
        let s = &c.resources[0].selectors[0];
        let dev = Path::new("/dev");
        assert_eq!(s.health(&vf("0000:01:10.0", 0), dev), Ok(()));
        let mut f = vf("0000:01:10.0", 0);
        f.driver = None;
        assert!(s.health(&f, dev).unwrap_err().contains("not bound"));
        f.driver = Some("igbvf".into());
        assert!(s
            .health(&f, dev)
            .unwrap_err()
            .contains("bound to igbvf, expected vfio-pci"));
        let mut f = vf("0000:01:10.0", 0);
        f.vfio_node = false;
        assert!(s.health(&f, dev).unwrap_err().contains("/dev/vfio/10"));
        let mut f = vf("0000:01:10.0", 0);
        f.pf_link = Link::Down("down".into());
        assert_eq!(s.health(&f, dev).unwrap_err(), "PF enp1s0 link is down");
        f.pf_link = Link::Unknown;
        assert_eq!(s.health(&f, dev), Ok(()));
    }

    #[test]
    fn inventory_keeps_owners_and_follows_changes() {
        let c = config(
            r#"{"resourceList":[
            {"resourceName":"first","selectors":{"pfNames":["enp1s0#0-1"]}},
            {"resourceName":"rest","selectors":{"vendors":["8086"]}}]}"#,
        );
        let mut inv = Inventory::default();
        let scan: Vec<Function> = (0..3).map(|i| vf(&format!("0000:01:1{i}.0"), i)).collect();
        let out = inv.update(&c, scan.clone(), Path::new("/dev"));
        let ids = |v: &Vec<DeviceState>| v.iter().map(DeviceState::id).collect::<Vec<_>>();
        assert_eq!(ids(&out[0]), ["0000:01:10.0", "0000:01:11.0"]);
        assert_eq!(ids(&out[1]), ["0000:01:12.0"]);
        // Unbound: still the first resource's, now unhealthy.
        let mut scan2 = scan.clone();
        scan2[0].driver = None;
        let out = inv.update(&c, scan2, Path::new("/dev"));
        assert_eq!(ids(&out[0]), ["0000:01:10.0", "0000:01:11.0"]);
        assert!(!out[0][0].healthy() && out[0][1].healthy());
        assert_eq!(out[0][0].to_api(false).health, "Unhealthy");
        // Gone from sysfs: dropped.
        let out = inv.update(&c, scan[1..].to_vec(), Path::new("/dev"));
        assert_eq!(ids(&out[0]), ["0000:01:11.0"]);
        // A function unbound at the first scan is picked up once bound.
        let mut inv = Inventory::default();
        let mut late = scan.clone();
        late[2].driver = None;
        assert_eq!(inv.update(&c, late, Path::new("/dev"))[1].len(), 0);
        assert_eq!(
            ids(&inv.update(&c, scan, Path::new("/dev"))[1]),
            ["0000:01:12.0"]
        );
    }

    #[test]
    fn topology_is_advertised_unless_excluded() {
        let d = DeviceState {
            function: vf("0000:01:10.0", 0),
            selector: 0,
            health: Ok(()),
        };
        let api = d.to_api(false);
        assert_eq!(api.id, "0000:01:10.0");
        assert_eq!(api.health, "Healthy");
        assert_eq!(api.topology.unwrap().nodes[0].id, 0);
        assert!(d.to_api(true).topology.is_none());
    }

    #[test]
    fn scan_reads_a_fake_sysfs_tree() {
        let t = tempfile::tempdir().unwrap();
        let fake = FakeSysfs::new(&t.path().join("sys")).unwrap();
        let pf = a("0000:01:00.0");
        let base = FakeFn {
            addr: pf,
            vendor: 0x8086,
            device: 0x10c9,
            class: 0x020000,
            driver: Some("igb"),
            iommu_group: Some(5),
            numa_node: 1,
            netdevs: &["enp1s0"],
            total_vfs: Some(7),
        };
        fake.add(&base).unwrap();
        std::fs::write(fake.real_dir(pf).join("net/enp1s0/type"), "1\n").unwrap();
        std::fs::write(fake.real_dir(pf).join("net/enp1s0/operstate"), "up\n").unwrap();
        for i in 0..2u8 {
            fake.add_vf(
                pf,
                u32::from(i),
                &FakeFn {
                    addr: PciAddr::new(0, 1, 0x10, i * 2).unwrap(),
                    device: 0x10ca,
                    driver: Some(VFIO_PCI),
                    iommu_group: Some(20 + u32::from(i)),
                    netdevs: &[],
                    total_vfs: None,
                    ..base.clone()
                },
            )
            .unwrap();
        }
        // Not network: left out.
        fake.add(&FakeFn {
            addr: a("0000:00:1f.0"),
            class: 0x060100,
            netdevs: &[],
            total_vfs: None,
            iommu_group: None,
            ..base.clone()
        })
        .unwrap();
        let dev = t.path().join("dev");
        std::fs::create_dir_all(dev.join("vfio")).unwrap();
        std::fs::write(dev.join("vfio/20"), "").unwrap();
        let host = Host::new(t.path().join("sys"), &dev);
        let scan = host.scan().unwrap();
        let addrs: Vec<String> = scan.iter().map(|f| f.addr.to_string()).collect();
        // The PF has VFs enabled, so only the VFs are candidates.
        assert_eq!(addrs, ["0000:01:10.0", "0000:01:10.2"]);
        let f = &scan[1];
        assert_eq!((f.vendor, f.device), (0x8086, 0x10ca));
        assert_eq!(f.pf, Some(pf));
        assert_eq!(f.vf_index, Some(1));
        assert_eq!(f.pf_netdev.as_deref(), Some("enp1s0"));
        assert_eq!(f.link_type.as_deref(), Some("ether"));
        assert_eq!(f.pf_link, Link::Up);
        assert_eq!(f.numa_node, Some(1));
        assert_eq!(f.iommu_group, Some(21));
        assert!(scan[0].vfio_node && !scan[1].vfio_node);
        assert_eq!(host.function(a("0000:01:10.2")).unwrap().as_ref(), Some(f));
        assert_eq!(host.function(a("0000:01:00.0")).unwrap(), None);
        assert_eq!(host.function(a("0000:09:00.0")).unwrap(), None);
        std::fs::write(
            fake.real_dir(pf).join("net/enp1s0/operstate"),
            "lowerlayerdown\n",
        )
        .unwrap();
        assert_eq!(
            host.scan().unwrap()[0].pf_link,
            Link::Down("lowerlayerdown".into())
        );
    }
}
