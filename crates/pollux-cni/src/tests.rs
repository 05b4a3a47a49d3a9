//! Plugin operations on a fake sysfs tree and an in-memory model of an
//! igb-like PF (it refuses rate limits and link state as the igb driver
//! does), with Debian's real host-local as the IPAM plugin when present.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use pollux_core::MacAddr;
use pollux_pci::fake::{FakeFn, FakeSysfs};
use pollux_pci::{PciAddr, Sysfs};
use pollux_sriov::netlink::{LinkInfo, LinkState, VfAttr, VfState, Vlan, VlanProto};
use serde_json::{json, Value};

use crate::config::Conf;
use crate::host::{Host, IpSetup};
use crate::plugin::{self, Env};
use crate::state::{Cache, LinkOrig, Phase};
use crate::{codes, Error, Result};

const PF: &str = "0000:00:02.0";
const VF0: &str = "0000:00:10.0"; // vfio-pci: DPDK mode
const VF1: &str = "0000:00:10.1"; // igbvf, netdev enp0s16f1: netdevice mode
const VF2: &str = "0000:00:10.2"; // vfio-pci

fn a(s: &str) -> PciAddr {
    s.parse().unwrap()
}

#[derive(Debug, Default)]
struct Model {
    vfs: HashMap<u32, VfState>,
    /// Host links by name.
    host: HashMap<String, LinkInfo>,
    /// Links per namespace path.
    ns: HashMap<PathBuf, HashMap<String, LinkInfo>>,
    live: HashSet<PathBuf>,
    /// Panic at the n-th set_vf (a kill -9 in the middle of ADD).
    crash_at: Option<usize>,
    sets: usize,
}

#[derive(Clone, Debug)]
struct FakeHost {
    sysfs: Sysfs,
    fake: Arc<FakeSysfs>,
    m: Arc<Mutex<Model>>,
}

fn refused(what: &str) -> Error {
    Error::Sriov(pollux_sriov::Error::Kernel {
        op: format!("setting {what} of VF"),
        hint: "the PF driver does not support this (EOPNOTSUPP)".into(),
        source: std::io::Error::from_raw_os_error(libc::EOPNOTSUPP),
    })
}

impl Host for FakeHost {
    fn sysfs(&self) -> &Sysfs {
        &self.sysfs
    }
    fn vf_state(&mut self, pf: &str, vf: u32) -> Result<VfState> {
        assert_eq!(pf, "eth0");
        Ok(self.m.lock().unwrap().vfs[&vf].clone())
    }
    fn set_vf(&mut self, pf: &str, vf: u32, attr: VfAttr) -> Result<()> {
        assert_eq!(pf, "eth0");
        let mut m = self.m.lock().unwrap();
        m.sets += 1;
        if m.crash_at == Some(m.sets) {
            drop(m);
            panic!("simulated kill -9");
        }
        let st = m.vfs.get_mut(&vf).unwrap();
        match attr {
            VfAttr::Mac(x) => st.mac = x,
            VfAttr::Vlan(v) if v.proto == VlanProto::Dot1Ad => return Err(refused("vlan proto")),
            VfAttr::Vlan(v) => st.vlan = v,
            VfAttr::Rate { min, max } if (min, max) != (0, 0) => return Err(refused("rate")),
            VfAttr::Rate { .. } => {}
            VfAttr::SpoofCheck(b) => st.spoofchk = Some(b),
            VfAttr::Trust(b) => st.trust = Some(b),
            VfAttr::LinkState(_) => return Err(refused("state")),
        }
        Ok(())
    }
    fn host_link(&mut self, name: &str) -> Result<Option<LinkInfo>> {
        Ok(self.m.lock().unwrap().host.get(name).cloned())
    }
    fn netns_link(&mut self, netns: &Path, name: &str) -> Result<Option<LinkInfo>> {
        Ok(self
            .m
            .lock()
            .unwrap()
            .ns
            .get(netns)
            .and_then(|n| n.get(name))
            .cloned())
    }
    fn attach_netdev(
        &mut self,
        host_name: &str,
        netns: &Path,
        ifname: &str,
        mac: Option<MacAddr>,
        mtu: Option<u32>,
        _ip: &IpSetup,
    ) -> Result<LinkInfo> {
        let mut m = self.m.lock().unwrap();
        let admin = m.vfs[&1].mac;
        // igb refuses every VF SET_MAC while an administrative MAC is set.
        if mac.is_some() && !admin.is_zero() {
            return Err(refused("netdev mac (administratively set)"));
        }
        let mut l = m.host.remove(host_name).unwrap();
        // The kernel hides a moved netdev from the host's sysfs.
        std::fs::remove_dir_all(self.fake.real_dir(a(VF1)).join("net").join(host_name)).unwrap();
        l.name = ifname.into();
        l.mac = mac.or(l.mac);
        l.mtu = mtu.or(l.mtu);
        l.up = true;
        m.ns.entry(netns.to_owned())
            .or_default()
            .insert(ifname.into(), l.clone());
        Ok(l)
    }
    fn detach_netdev(&mut self, netns: &Path, ifname: &str, orig: &LinkOrig) -> Result<bool> {
        let mut m = self.m.lock().unwrap();
        let admin = m.vfs[&1].mac;
        if orig.mac.is_some() && !admin.is_zero() {
            return Err(refused("netdev mac (administratively set)"));
        }
        let Some(mut l) = m.ns.get_mut(netns).and_then(|n| n.remove(ifname)) else {
            return Ok(false);
        };
        l.name = orig.name.clone();
        l.mac = orig.mac.or(l.mac);
        l.mtu = orig.mtu.or(l.mtu);
        l.up = orig.up;
        self.fake.add_netdev(a(VF1), &orig.name).unwrap();
        m.host.insert(orig.name.clone(), l);
        Ok(true)
    }
    fn restore_host_netdev(&mut self, current: &str, orig: &LinkOrig) -> Result<()> {
        let mut m = self.m.lock().unwrap();
        let mut l = m.host.remove(current).unwrap();
        std::fs::remove_dir_all(self.fake.real_dir(a(VF1)).join("net").join(current)).unwrap();
        self.fake.add_netdev(a(VF1), &orig.name).unwrap();
        l.name = orig.name.clone();
        l.mac = orig.mac.or(l.mac);
        l.up = orig.up;
        m.host.insert(orig.name.clone(), l);
        Ok(())
    }
    fn netns_live(&self, netns: &Path) -> bool {
        self.m.lock().unwrap().live.contains(netns)
    }
    fn ready(&mut self) -> Result<()> {
        Ok(())
    }
}

struct World {
    t: tempfile::TempDir,
    host: FakeHost,
}

fn orig_vf(i: u32) -> VfState {
    VfState {
        index: i,
        mac: MacAddr::default(),
        vlan: Vlan::default(),
        min_tx_rate: 0,
        max_tx_rate: 0,
        spoofchk: Some(true),
        trust: Some(false),
        link_state: Some(LinkState::Auto),
    }
}

fn world() -> World {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("sys");
    let f = FakeSysfs::new(&root).unwrap();
    let base = FakeFn {
        addr: a(PF),
        vendor: 0x8086,
        device: 0x10c9,
        class: 0x020000,
        driver: Some("igb"),
        iommu_group: Some(3),
        numa_node: -1,
        netdevs: &["eth0"],
        total_vfs: Some(7),
    };
    f.add(&base).unwrap();
    let vf = |addr, driver, netdevs| FakeFn {
        addr: a(addr),
        device: 0x10ca,
        driver: Some(driver),
        netdevs,
        total_vfs: None,
        ..base.clone()
    };
    f.add_vf(a(PF), 0, &vf(VF0, "vfio-pci", &[])).unwrap();
    f.add_vf(a(PF), 1, &vf(VF1, "igbvf", &["enp0s16f1"]))
        .unwrap();
    f.add_vf(a(PF), 2, &vf(VF2, "vfio-pci", &[])).unwrap();
    let mut m = Model::default();
    for i in 0..3 {
        m.vfs.insert(i, orig_vf(i));
    }
    m.host.insert(
        "enp0s16f1".into(),
        LinkInfo {
            index: 9,
            name: "enp0s16f1".into(),
            mac: Some("5a:00:00:00:00:01".parse().unwrap()),
            mtu: Some(1500),
            up: false,
            vfs: vec![],
        },
    );
    for n in ["ns1", "ns2", "ns3", "ns4"] {
        m.live.insert(t.path().join(n));
    }
    let host = FakeHost {
        sysfs: Sysfs::new(&root),
        fake: Arc::new(f),
        m: Arc::new(Mutex::new(m)),
    };
    World { t, host }
}

impl World {
    fn conf(&self, extra: Value) -> (Conf, Value) {
        let mut v = json!({
            "cniVersion": "1.0.0", "name": "sriov-net", "type": "pollux-cni",
            "cacheDir": self.t.path().join("cache").to_str().unwrap(),
            "sysfsRoot": self.t.path().join("sys").to_str().unwrap(),
            "lockTimeoutMs": 300,
        });
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let obj = v.as_object().unwrap();
        let custom: HashMap<String, Value> = obj
            .iter()
            .filter(|(k, _)| {
                !["cniVersion", "name", "type", "ipam", "runtimeConfig"].contains(&k.as_str())
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let rt: Option<HashMap<String, Value>> = obj
            .get("runtimeConfig")
            .map(|r| serde_json::from_value(r.clone()).unwrap());
        let c = Conf::parse(
            "sriov-net",
            "1.0.0",
            &custom,
            rt.as_ref(),
            obj.get("ipam").cloned(),
            None,
        )
        .unwrap();
        (c, v)
    }
    fn env(&self, cid: &str, ns: &str) -> Env {
        Env {
            container_id: cid.into(),
            netns: Some(self.t.path().join(ns)),
            ifname: "net1".into(),
            args: None,
            path: vec![PathBuf::from("/usr/lib/cni")],
        }
    }
    fn cache(&self) -> Cache {
        Cache::open(&self.t.path().join("cache")).unwrap()
    }
    fn vf(&self, i: u32) -> VfState {
        self.host.m.lock().unwrap().vfs[&i].clone()
    }
    fn del(&self, conf: Option<&Conf>, stdin: &Value, env: &Env) -> Result<()> {
        plugin::del(&mut self.host.clone(), &self.cache(), conf, stdin, env)
    }
}

fn host_local(w: &World) -> Option<Value> {
    Path::new("/usr/lib/cni/host-local").exists().then(|| {
        json!({"type": "host-local", "subnet": "169.254.77.0/24",
               "dataDir": w.t.path().join("ipam").to_str().unwrap()})
    })
}

#[test]
fn dpdk_add_then_del_restores_everything() {
    let w = world();
    let mut extra = json!({"deviceID": VF0, "vlan": 100, "vlanQoS": 2, "mac": "02:00:00:00:00:aa",
        "spoofchk": "off", "trust": "on",
        "runtimeConfig": {"CNIDeviceInfoFile": w.t.path().join("devinfo/net1.json").to_str().unwrap()}});
    if let Some(i) = host_local(&w) {
        extra["ipam"] = i;
    }
    let (c, stdin) = w.conf(extra);
    let env = w.env("c1", "ns1");
    let r = plugin::add(&mut w.host.clone(), &c, &stdin, None, &env).unwrap();
    let iface = &r.interfaces[0];
    assert_eq!(iface.name, "net1");
    assert_eq!(iface.pci_id.as_deref(), Some(VF0));
    assert_eq!(iface.mac, "02:00:00:00:00:aa");
    if host_local(&w).is_some() {
        assert_eq!(r.ips.len(), 1);
        let ip = r.ips[0].address.addr().to_string();
        assert!(
            w.t.path().join("ipam/sriov-net").join(ip).exists(),
            "host-local reserved it"
        );
        assert!(
            r.ips[0].address.to_string().starts_with("169.254.77."),
            "{:?}",
            r.ips
        );
        assert_eq!(r.ips[0].interface, Some(0));
    }
    let st = w.vf(0);
    assert_eq!(
        st.vlan,
        Vlan {
            id: 100,
            qos: 2,
            proto: VlanProto::Dot1Q
        }
    );
    assert_eq!(st.mac.to_string(), "02:00:00:00:00:aa");
    assert_eq!((st.spoofchk, st.trust), (Some(false), Some(true)));
    // Records, with private modes.
    let cache = w.cache();
    let rec = cache.read_state("c1", "net1").unwrap().unwrap();
    assert_eq!(rec.phase, Phase::Added);
    assert_eq!(rec.orig_vf, orig_vf(0));
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(w.t.path().join("cache")), 0o700);
    assert_eq!(mode(w.t.path().join("cache/state/c1:net1.json")), 0o600);
    assert_eq!(mode(w.t.path().join(format!("cache/alloc/{VF0}"))), 0o600);
    // Device-info file per device-info-spec 1.1.0.
    let di: Value = serde_json::from_str(
        &std::fs::read_to_string(w.t.path().join("devinfo/net1.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        di,
        json!({"type": "pci", "version": "1.1.0", "pci": {"pci-address": VF0, "pf-pci-address": PF}})
    );

    w.del(Some(&c), &stdin, &env).unwrap();
    assert_eq!(
        w.vf(0),
        orig_vf(0),
        "every attribute, the MAC included, is back"
    );
    assert!(cache.read_state("c1", "net1").unwrap().is_none());
    assert!(cache.read_alloc(a(VF0)).unwrap().is_none());
    assert!(!w.t.path().join("devinfo/net1.json").exists());
    // Idempotent, and fine with nothing cached or an unusable config.
    w.del(Some(&c), &stdin, &env).unwrap();
    w.del(None, &json!({}), &w.env("never-added", "ns2"))
        .unwrap();
    if host_local(&w).is_some() {
        // host-local keeps one file per reserved address; DEL released it.
        let ip = r.ips[0].address.addr().to_string();
        assert!(!w.t.path().join("ipam/sriov-net").join(ip).exists());
    }
}

#[test]
fn refused_attribute_is_a_clear_error_and_add_is_undone() {
    let w = world();
    for (extra, what) in [
        (json!({"vlan": 10, "max_tx_rate": 100}), "rate"),
        (json!({"vlan": 10, "link_state": "disable"}), "state"),
        (json!({"vlan": 10, "vlanProto": "802.1ad"}), "vlan proto"),
    ] {
        let mut e = extra.clone();
        e["deviceID"] = json!(VF0);
        let (c, stdin) = w.conf(e);
        let err =
            plugin::add(&mut w.host.clone(), &c, &stdin, None, &w.env("c1", "ns1")).unwrap_err();
        assert_eq!(err.code(), codes::VF_CONFIG, "{err}");
        let cni = err.into_cni();
        let text = format!("{cni}");
        assert!(text.contains(what) && text.contains("EOPNOTSUPP"), "{text}");
        assert_eq!(
            w.vf(0),
            orig_vf(0),
            "{extra}: the VLAN set before the refusal is undone"
        );
        assert!(w.cache().read_state("c1", "net1").unwrap().is_none());
        assert!(w.cache().read_alloc(a(VF0)).unwrap().is_none());
    }
}

#[test]
fn allocated_vf_is_refused_until_its_netns_dies() {
    let w = world();
    let (c1, s1) = w.conf(json!({"deviceID": VF0, "vlan": 5}));
    plugin::add(&mut w.host.clone(), &c1, &s1, None, &w.env("c1", "ns1")).unwrap();
    let (c2, s2) = w.conf(json!({"deviceID": VF0, "vlan": 6}));
    let e = plugin::add(&mut w.host.clone(), &c2, &s2, None, &w.env("c2", "ns2")).unwrap_err();
    assert_eq!(e.code(), codes::VF_ALLOCATED);
    assert!(
        e.to_string().contains("already allocated to container c1"),
        "{e}"
    );
    assert_eq!(w.vf(0).vlan.id, 5);
    // The first pod's namespace disappears without a DEL.
    w.host
        .m
        .lock()
        .unwrap()
        .live
        .remove(&w.t.path().join("ns1"));
    plugin::add(&mut w.host.clone(), &c2, &s2, None, &w.env("c2", "ns2")).unwrap();
    assert_eq!(w.vf(0).vlan.id, 6);
    assert!(
        w.cache().read_state("c1", "net1").unwrap().is_none(),
        "stale record freed"
    );
    assert_eq!(
        w.cache().read_alloc(a(VF0)).unwrap().unwrap().container_id,
        "c2"
    );
    // c2's original state is c1's original (c1 was undone first).
    assert_eq!(
        w.cache().read_state("c2", "net1").unwrap().unwrap().orig_vf,
        orig_vf(0)
    );
}

#[test]
fn kill_during_add_then_del_restores() {
    let w = world();
    let (c, stdin) =
        w.conf(json!({"deviceID": VF0, "vlan": 7, "mac": "02:00:00:00:00:07", "trust": "on"}));
    w.host.m.lock().unwrap().crash_at = Some(3); // vlan, mac done; dies at trust
    let h = w.host.clone();
    let env = w.env("c1", "ns1");
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        plugin::add(&mut h.clone(), &c, &stdin, None, &env)
    }));
    assert!(r.is_err(), "the ADD died");
    w.host.m.lock().unwrap().crash_at = None;
    assert_eq!(w.vf(0).vlan.id, 7, "half applied");
    assert_eq!(
        w.cache().read_state("c1", "net1").unwrap().unwrap().phase,
        Phase::Adding
    );
    w.del(Some(&c), &stdin, &env).unwrap();
    assert_eq!(w.vf(0), orig_vf(0));
    assert!(w.cache().read_alloc(a(VF0)).unwrap().is_none());
}

#[test]
fn netdevice_mode_moves_and_returns_the_netdev() {
    let w = world();
    let (c, stdin) = w.conf(json!({"deviceID": VF1, "mac": "02:00:00:00:01:01", "mtu": 9000}));
    let env = w.env("c1", "ns1");
    let r = plugin::add(&mut w.host.clone(), &c, &stdin, None, &env).unwrap();
    assert_eq!(r.interfaces[0].mac, "02:00:00:00:01:01");
    assert_eq!(r.interfaces[0].mtu, Some(9000));
    {
        let m = w.host.m.lock().unwrap();
        let l = &m.ns[&w.t.path().join("ns1")]["net1"];
        assert!(l.up);
        assert!(!m.host.contains_key("enp0s16f1"));
        assert_eq!(
            m.vfs[&1].mac.to_string(),
            "02:00:00:00:01:01",
            "admin MAC set through the PF"
        );
    }
    plugin::check(&mut w.host.clone(), &c, &stdin, Some(&r), &env).unwrap();
    w.del(Some(&c), &stdin, &env).unwrap();
    let m = w.host.m.lock().unwrap();
    let l = &m.host["enp0s16f1"];
    assert_eq!(l.mac.unwrap().to_string(), "5a:00:00:00:00:01");
    assert_eq!(l.mtu, Some(1500));
    assert!(!l.up);
    assert_eq!(m.vfs[&1], orig_vf(1));
    assert!(w.host.sysfs.netdevs(a(VF1)).unwrap() == ["enp0s16f1"]);
}

#[test]
fn netdevice_del_after_the_pod_died_renames_it_back() {
    let w = world();
    let (c, stdin) = w.conf(json!({"deviceID": VF1}));
    let env = w.env("c1", "ns1");
    plugin::add(&mut w.host.clone(), &c, &stdin, None, &env).unwrap();
    {
        // The namespace dies: the kernel moves the netdev home as "net1".
        let mut m = w.host.m.lock().unwrap();
        let ns = w.t.path().join("ns1");
        m.live.remove(&ns);
        let l = m.ns.get_mut(&ns).unwrap().remove("net1").unwrap();
        m.host.insert("net1".into(), l);
        w.host.fake.add_netdev(a(VF1), "net1").unwrap();
    }
    w.del(Some(&c), &stdin, &env).unwrap();
    assert!(w.host.m.lock().unwrap().host.contains_key("enp0s16f1"));
    assert_eq!(w.host.sysfs.netdevs(a(VF1)).unwrap(), ["enp0s16f1"]);
}

#[test]
fn check_compares_live_state() {
    let w = world();
    let (c, stdin) = w.conf(json!({"deviceID": VF0, "vlan": 100, "spoofchk": "off"}));
    let env = w.env("c1", "ns1");
    // Without prevResult (the runtime must pass it): a configuration error.
    let e = plugin::check(&mut w.host.clone(), &c, &stdin, None, &env).unwrap_err();
    assert_eq!(e.code(), 7, "{e}");
    assert!(e.to_string().contains("prevResult"), "{e}");
    // Before any ADD: nothing to check.
    let e = plugin::check(
        &mut w.host.clone(),
        &c,
        &stdin,
        Some(&Default::default()),
        &env,
    )
    .unwrap_err();
    assert_eq!(e.code(), codes::CHECK_MISMATCH);
    let r = plugin::add(&mut w.host.clone(), &c, &stdin, None, &env).unwrap();
    plugin::check(&mut w.host.clone(), &c, &stdin, Some(&r), &env).unwrap();
    w.host.m.lock().unwrap().vfs.get_mut(&0).unwrap().vlan.id = 200;
    w.host.m.lock().unwrap().vfs.get_mut(&0).unwrap().spoofchk = Some(true);
    let e = plugin::check(&mut w.host.clone(), &c, &stdin, Some(&r), &env).unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains("vlan 100") && s.contains("VF has 200") && s.contains("spoofchk off"),
        "{s}"
    );
    // Driver changed under the pod.
    w.host.m.lock().unwrap().vfs.get_mut(&0).unwrap().vlan.id = 100;
    w.host.m.lock().unwrap().vfs.get_mut(&0).unwrap().spoofchk = Some(false);
    w.host.fake.bind(a(VF0), "igbvf").unwrap();
    let e = plugin::check(&mut w.host.clone(), &c, &stdin, Some(&r), &env).unwrap_err();
    assert!(e.to_string().contains("VF driver"), "{e}");
}

#[test]
fn gc_releases_what_is_not_valid() {
    let w = world();
    let (c0, s0) = w.conf(json!({"deviceID": VF0, "vlan": 1}));
    let (c2, s2) = w.conf(json!({"deviceID": VF2, "vlan": 2}));
    plugin::add(&mut w.host.clone(), &c0, &s0, None, &w.env("keep", "ns1")).unwrap();
    plugin::add(&mut w.host.clone(), &c2, &s2, None, &w.env("stale", "ns2")).unwrap();
    let cache = w.cache();
    plugin::gc(&mut w.host.clone(), &cache, "other-net", &[], &[]).unwrap();
    assert_eq!(w.vf(2).vlan.id, 2, "another network's GC touches nothing");
    plugin::gc(
        &mut w.host.clone(),
        &cache,
        "sriov-net",
        &[("keep".into(), "net1".into())],
        &[],
    )
    .unwrap();
    assert_eq!(w.vf(0).vlan.id, 1);
    assert_eq!(w.vf(2), orig_vf(2));
    assert!(cache.read_state("stale", "net1").unwrap().is_none());
    assert!(cache.read_alloc(a(VF2)).unwrap().is_none());
    assert!(cache.read_state("keep", "net1").unwrap().is_some());
    // An allocation whose record was lost is freed too.
    std::fs::remove_file(w.t.path().join("cache/state/keep:net1.json")).unwrap();
    plugin::gc(&mut w.host.clone(), &cache, "sriov-net", &[], &[]).unwrap();
    assert!(cache.read_alloc(a(VF0)).unwrap().is_none());
}

#[test]
fn del_without_cache_redetects_from_sysfs() {
    let w = world();
    let (c, stdin) = w.conf(json!({"deviceID": VF0, "vlan": 9, "trust": "on"}));
    let env = w.env("c1", "ns1");
    plugin::add(&mut w.host.clone(), &c, &stdin, None, &env).unwrap();
    std::fs::remove_file(w.t.path().join("cache/state/c1:net1.json")).unwrap();
    w.del(Some(&c), &stdin, &env).unwrap();
    let st = w.vf(0);
    assert_eq!((st.vlan.id, st.trust), (0, Some(false)));
    assert!(w.cache().read_alloc(a(VF0)).unwrap().is_none());
}

#[test]
fn concurrent_adds_two_vfs_eight_pods() {
    let w = world();
    let results: Vec<(usize, Result<()>)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|i| {
                let w = &w;
                s.spawn(move || {
                    let dev = if i % 2 == 0 { VF0 } else { VF2 };
                    let (c, stdin) =
                        w.conf(json!({"deviceID": dev, "vlan": 100 + i, "lockTimeoutMs": 5000}));
                    let ns = format!("ns{}", i % 4 + 1);
                    let r = plugin::add(
                        &mut w.host.clone(),
                        &c,
                        &stdin,
                        None,
                        &w.env(&format!("pod{i}"), &ns),
                    )
                    .map(drop);
                    (i, r)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok: Vec<usize> = results
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(ok.len(), 2, "{results:?}");
    assert!(ok.iter().any(|i| i % 2 == 0) && ok.iter().any(|i| i % 2 == 1));
    for (_, r) in &results {
        if let Err(e) = r {
            assert_eq!(e.code(), codes::VF_ALLOCATED, "{e}");
        }
    }
    let cache = w.cache();
    assert!(cache.read_alloc(a(VF0)).unwrap().is_some());
    assert!(cache.read_alloc(a(VF2)).unwrap().is_some());
    assert_eq!(cache.states().unwrap().0.len(), 2);
}

#[test]
fn lock_timeout_is_try_again_later() {
    let w = world();
    let (c, stdin) = w.conf(json!({"deviceID": VF0}));
    let cache = w.cache();
    let _held = cache
        .lock_vf(a(VF0), std::time::Duration::from_secs(1))
        .unwrap();
    let e = plugin::add(&mut w.host.clone(), &c, &stdin, None, &w.env("c1", "ns1")).unwrap_err();
    assert_eq!(e.code(), codes::TRY_AGAIN_LATER, "{e}");
}

#[test]
fn unusable_devices_are_clear_errors() {
    let w = world();
    let (c, stdin) = w.conf(json!({"deviceID": PF}));
    let e = plugin::add(&mut w.host.clone(), &c, &stdin, None, &w.env("c1", "ns1")).unwrap_err();
    assert_eq!(e.code(), codes::DEVICE);
    assert!(
        e.to_string().contains("not an SR-IOV virtual function"),
        "{e}"
    );
    let (c, stdin) = w.conf(json!({"deviceID": "0000:00:11.0"}));
    let e = plugin::add(&mut w.host.clone(), &c, &stdin, None, &w.env("c1", "ns1")).unwrap_err();
    assert_eq!(e.code(), codes::DEVICE, "{e}");
    w.host.fake.unbind(a(VF0)).unwrap();
    let (c, stdin) = w.conf(json!({"deviceID": VF0}));
    let e = plugin::add(&mut w.host.clone(), &c, &stdin, None, &w.env("c1", "ns1")).unwrap_err();
    assert!(e.to_string().contains("neither a netdev"), "{e}");
    let e = plugin::add(
        &mut w.host.clone(),
        &c,
        &stdin,
        None,
        &w.env("c1", "dead-ns"),
    )
    .unwrap_err();
    assert_eq!(e.code(), codes::INVALID_ENV, "{e}");
}

#[test]
fn failed_ipam_add_is_undone_without_ipam_del() {
    let w = world();
    // An IPAM plugin that refuses every command, DEL included (as Debian's
    // host-local 1.1.1 refuses a 1.1.0 configuration).
    let bin = w.t.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let p = bin.join("refuser");
    write_test_script(
        &p,
        "#!/bin/sh\ncat >/dev/null\necho '{\"code\":1,\"msg\":\"incompatible CNI versions\"}'\nexit 1\n",
    );
    let (c, stdin) = w.conf(json!({"deviceID": VF0, "vlan": 8, "ipam": {"type": "refuser"}}));
    let mut env = w.env("c1", "ns1");
    env.path = vec![bin];
    let e = plugin::add(&mut w.host.clone(), &c, &stdin, None, &env).unwrap_err();
    assert_eq!(e.code(), 1, "the IPAM plugin's code is passed on: {e}");
    assert_eq!(w.vf(0), orig_vf(0));
    assert!(w.cache().read_state("c1", "net1").unwrap().is_none());
    assert!(
        w.cache().read_alloc(a(VF0)).unwrap().is_none(),
        "the VF is free again"
    );
}

/// Writes an executable script for a test to run, without this process
/// ever holding a writable descriptor to it: a sibling test thread that
/// forks while one is open hands it to its child until that child execs,
/// and exec of the script then fails with ETXTBSY ("Text file busy"). So
/// the bytes go to a side file and `install` (coreutils, its own process)
/// creates the script.
pub(crate) fn write_test_script(path: &std::path::Path, text: &str) {
    let side = path.with_extension("src");
    std::fs::write(&side, text).unwrap();
    let st = std::process::Command::new("install")
        .args(["-m", "0755"])
        .arg(&side)
        .arg(path)
        .status()
        .expect("run install(1)");
    assert!(st.success(), "install {} failed", path.display());
    std::fs::remove_file(&side).unwrap();
}

// The protocol at every spec version, through `cni::dispatch` (what the
// binary runs) on the fake host, with Debian's host-local as IPAM.

use crate::cni;
use crate::spec::{Layout, Version};

fn need_host_local() {
    assert!(
        Path::new("/usr/lib/cni/host-local").exists(),
        "these tests use Debian's host-local (package containernetworking-plugins)"
    );
}

/// One invocation of the plugin through the protocol layer.
fn call(w: &World, cmd: &str, cid: &str, ns: &str, stdin: &Value) -> (i32, Value) {
    let mut vars: HashMap<&str, String> = HashMap::from([
        ("CNI_COMMAND", cmd.to_owned()),
        ("CNI_CONTAINERID", cid.to_owned()),
        ("CNI_IFNAME", "net1".to_owned()),
        (
            "CNI_PATH",
            format!("{}:/usr/lib/cni", w.t.path().join("bin").display()),
        ),
    ]);
    if !ns.is_empty() {
        vars.insert(
            "CNI_NETNS",
            w.t.path().join(ns).to_string_lossy().into_owned(),
        );
    }
    let bytes = stdin.to_string().into_bytes();
    let mut read = move || Ok(bytes.clone());
    let host = w.host.clone();
    let r = cni::dispatch(&|k| vars.get(k).cloned(), &mut read, false, &|_root| {
        host.clone()
    });
    let v = if r.stdout.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("{cmd}: stdout is not JSON ({e}): {}", r.stdout))
    };
    (r.exit, v)
}

/// A configuration at `version` for this world, with host-local as IPAM;
/// at 1.1.0, which Debian's host-local (1.1.1) refuses, with `ipam-110`, a
/// script answering what host-local would, in the 1.1.0 layout.
fn conf_at(w: &World, version: &str, extra: Value) -> Value {
    let bin = w.t.path().join("bin");
    if !bin.join("ipam-110").exists() {
        std::fs::create_dir_all(&bin).unwrap();
        write_test_script(
            &bin.join("ipam-110"),
            "#!/bin/sh\ncat >/dev/null\n[ \"$CNI_COMMAND\" = ADD ] || exit 0\n\
             echo '{\"cniVersion\":\"1.1.0\",\"ips\":[{\"address\":\"169.254.77.110/24\"}],\
             \"routes\":[{\"dst\":\"169.254.88.0/24\"}],\
             \"dns\":{\"nameservers\":[\"10.1.0.10\",\"169.254.77.53\"],\"search\":[\"pods.example\"]}}'\n",
        );
    }
    let mut v = json!({
        "cniVersion": version, "name": "sriov-net", "type": "pollux-cni",
        "cacheDir": w.t.path().join("cache").to_str().unwrap(),
        "sysfsRoot": w.t.path().join("sys").to_str().unwrap(),
        "lockTimeoutMs": 300,
        "ipam": {"type": "host-local", "subnet": "169.254.77.0/24",
                 "routes": [{"dst": "169.254.88.0/24"}],
                 "dataDir": w.t.path().join("ipam").to_str().unwrap()},
    });
    if version == "1.1.0" {
        v["ipam"] = json!({"type": "ipam-110"});
    }
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

/// Addresses host-local still holds for the test network.
fn leases(w: &World) -> usize {
    std::fs::read_dir(w.t.path().join("ipam/sriov-net"))
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("169."))
            })
            .count()
        })
        .unwrap_or(0)
}

fn keys(v: &Value) -> Vec<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

fn only_keys(what: &str, v: &Value, allowed: &[&str]) {
    for k in keys(v) {
        assert!(
            allowed.contains(&k.as_str()),
            "{what}: key {k:?} is not in the spec's {allowed:?}: {v}"
        );
    }
}

/// Checks an ADD result against the fields its version's spec text
/// defines (see crate::spec for the table), and returns the entry of
/// interface `net1` (0.3.0 and later).
fn check_spec_fields(version: Version, r: &Value) -> Option<Value> {
    assert_eq!(r["cniVersion"], version.as_str(), "{r}");
    let dns = ["nameservers", "domain", "search", "options"];
    if let Some(d) = r.get("dns") {
        only_keys("dns", d, &dns);
    }
    let route_basic = ["dst", "gw"];
    let route_11 = ["dst", "gw", "mtu", "advmss", "priority", "table", "scope"];
    match version.layout() {
        Layout::Ip4Ip6 => {
            only_keys("result", r, &["cniVersion", "ip4", "ip6", "dns"]);
            let ip4 = &r["ip4"];
            only_keys("ip4", ip4, &["ip", "gateway", "routes"]);
            assert!(
                ip4["ip"].as_str().unwrap().starts_with("169.254.77."),
                "{r}"
            );
            for rt in ip4["routes"].as_array().into_iter().flatten() {
                only_keys("ip4.routes[]", rt, &route_basic);
            }
            None
        }
        layout => {
            only_keys(
                "result",
                r,
                &["cniVersion", "interfaces", "ips", "routes", "dns"],
            );
            let iface_keys: &[&str] = if layout == Layout::V1_1 {
                &["name", "mac", "mtu", "sandbox", "socketPath", "pciID"]
            } else {
                &["name", "mac", "sandbox"]
            };
            for i in r["interfaces"].as_array().unwrap() {
                only_keys("interfaces[]", i, iface_keys);
            }
            for ip in r["ips"].as_array().unwrap() {
                if layout == Layout::Ips04 {
                    only_keys("ips[]", ip, &["version", "address", "gateway", "interface"]);
                    // "either "4" or "6" and corresponds to the IP version
                    // of the addresses in the entry" (spec 0.4.0, IPs).
                    let fam = if ip["address"].as_str().unwrap().contains(':') {
                        "6"
                    } else {
                        "4"
                    };
                    assert_eq!(ip["version"], fam, "{r}");
                } else {
                    only_keys("ips[]", ip, &["address", "gateway", "interface"]);
                }
            }
            for rt in r["routes"].as_array().into_iter().flatten() {
                only_keys(
                    "routes[]",
                    rt,
                    if layout == Layout::V1_1 {
                        &route_11
                    } else {
                        &route_basic
                    },
                );
            }
            r["interfaces"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["name"] == "net1")
                .cloned()
        }
    }
}

#[test]
fn every_version_add_check_del_in_both_modes() {
    need_host_local();
    for version in Version::ALL {
        for (dev, netdev) in [(VF0, false), (VF1, true)] {
            let w = world();
            let what = format!("{version} {}", if netdev { "netdevice" } else { "DPDK" });
            let mut extra = json!({"deviceID": dev, "vlan": 42, "spoofchk": "off"});
            if !netdev {
                extra["mac"] = json!("02:00:00:00:00:42");
            }
            let conf = conf_at(&w, version.as_str(), extra);
            let (code, r) = call(&w, "ADD", "c1", "ns1", &conf);
            assert_eq!(code, 0, "{what}: {r}");
            if version != Version::V1_1_0 {
                assert_eq!(leases(&w), 1, "{what}: host-local gave the address");
            }
            let idx = if netdev { 1 } else { 0 };
            assert_eq!(w.vf(idx).vlan.id, 42, "{what}");
            assert_eq!(w.vf(idx).spoofchk, Some(false), "{what}");
            let ours = check_spec_fields(version, &r);
            if version.layout() != Layout::Ip4Ip6 {
                let ours = ours.unwrap_or_else(|| panic!("{what}: no net1 in {r}"));
                assert_eq!(
                    ours["sandbox"],
                    w.t.path().join("ns1").to_str().unwrap(),
                    "{what}"
                );
                if version.layout() == Layout::V1_1 {
                    assert_eq!(ours["pciID"], dev, "{what}: {r}");
                }
                if !netdev {
                    assert_eq!(ours["mac"], "02:00:00:00:00:42", "{what}");
                }
                assert_eq!(r["ips"][0]["interface"], 0, "{what}: {r}");
                assert_eq!(
                    r["routes"],
                    json!([{"dst": "169.254.88.0/24"}]),
                    "{what}: host-local's route"
                );
            }
            if netdev {
                let m = w.host.m.lock().unwrap();
                assert!(m.ns[&w.t.path().join("ns1")].contains_key("net1"), "{what}");
            }
            // CHECK with the ADD's result as prevResult, where the version
            // has CHECK; refused (code 1, in the version) where it has not.
            let mut chk = conf.clone();
            chk["prevResult"] = r.clone();
            let (code, out) = call(&w, "CHECK", "c1", "ns1", &chk);
            if version >= Version::V0_4_0 {
                assert_eq!(code, 0, "{what}: CHECK {out}");
                w.host.m.lock().unwrap().vfs.get_mut(&idx).unwrap().vlan.id = 7;
                let (code, out) = call(&w, "CHECK", "c1", "ns1", &chk);
                assert_eq!((code, &out["code"]), (1, &json!(104)), "{what}: {out}");
                assert_eq!(out["cniVersion"], version.as_str(), "{what}: {out}");
            } else {
                assert_eq!((code, &out["code"]), (1, &json!(1)), "{what}: {out}");
                assert_eq!(out["cniVersion"], version.as_str(), "{what}: {out}");
            }
            // DEL (with prevResult where the version passes one).
            let del = if version >= Version::V0_4_0 {
                chk.clone()
            } else {
                conf.clone()
            };
            let (code, out) = call(&w, "DEL", "c1", "ns1", &del);
            assert_eq!((code, &out), (0, &Value::Null), "{what}");
            assert_eq!(w.vf(idx), orig_vf(idx), "{what}: restored");
            assert_eq!(leases(&w), 0, "{what}: lease released");
            if netdev {
                assert!(w.host.m.lock().unwrap().host.contains_key("enp0s16f1"));
            }
        }
    }
}

#[test]
fn errors_are_in_the_configurations_version() {
    need_host_local();
    let w = world();
    for version in Version::ALL {
        // The VF is another pod's: code 101, printed in this version.
        let conf = conf_at(&w, version.as_str(), json!({"deviceID": VF0}));
        let (code, r) = call(&w, "ADD", "owner", "ns1", &conf);
        assert_eq!(code, 0, "{version}: {r}");
        let (code, e) = call(&w, "ADD", "other", "ns2", &conf);
        assert_eq!(code, 1);
        assert_eq!(e["code"], 101, "{e}");
        assert_eq!(e["cniVersion"], version.as_str(), "{e}");
        assert!(
            e["msg"].as_str().unwrap().contains("already allocated"),
            "{e}"
        );
        assert_eq!(call(&w, "DEL", "owner", "ns1", &conf).0, 0);
    }
    // Without cniVersion the configuration is 0.1.0, and so is its error.
    let mut conf = conf_at(&w, "", json!({"deviceID": "0000:00:1f.0"}));
    conf.as_object_mut().unwrap().remove("cniVersion");
    let (code, e) = call(&w, "ADD", "c1", "ns1", &conf);
    assert_eq!(
        (code, &e["code"], &e["cniVersion"]),
        (1, &json!(103), &json!("0.1.0")),
        "{e}"
    );
}

#[test]
fn unknown_too_new_and_unreadable_versions_are_refused() {
    let w = world();
    for v in [
        "2.0.0",
        "1.2.0",
        "1.1.1",
        "0.5.0",
        "1.0",
        "abc",
        "1.1.0-rc1",
    ] {
        for cmd in ["ADD", "DEL", "CHECK"] {
            let conf = conf_at(&w, v, json!({"deviceID": VF0, "vlan": 3}));
            let (code, e) = call(&w, cmd, "c1", "ns1", &conf);
            assert_eq!((code, &e["code"]), (1, &json!(1)), "{v} {cmd}: {e}");
            assert_eq!(e["cniVersion"], v, "{v} {cmd}: printed in its own version");
            assert_eq!(e["msg"], "Incompatible CNI version", "{e}");
            assert!(e["details"].as_str().unwrap().contains("0.3.1"), "{e}");
        }
    }
    assert_eq!(w.vf(0), orig_vf(0), "nothing touched");
    // A cniVersion that is not a string cannot be read: the newest version.
    let mut conf = conf_at(&w, "", json!({"deviceID": VF0}));
    conf["cniVersion"] = json!(1.0);
    let (code, e) = call(&w, "ADD", "c1", "ns1", &conf);
    assert_eq!(
        (code, &e["code"], &e["cniVersion"]),
        (1, &json!(6), &json!("1.1.0")),
        "{e}"
    );
    // Commands a version does not define: code 1, in that version.
    for (v, cmd) in [
        ("0.3.1", "CHECK"),
        ("0.2.0", "CHECK"),
        ("1.0.0", "GC"),
        ("0.4.0", "STATUS"),
    ] {
        let (code, e) = call(
            &w,
            cmd,
            "c1",
            "ns1",
            &conf_at(&w, v, json!({"deviceID": VF0})),
        );
        assert_eq!(
            (code, &e["code"], &e["cniVersion"]),
            (1, &json!(1), &json!(v)),
            "{e}"
        );
        assert!(e["details"].as_str().unwrap().contains(cmd), "{e}");
    }
    assert!(w.cache().states().unwrap().0.is_empty());
}

#[test]
fn version_0_2_0_needs_ipam_and_has_no_chaining() {
    let w = world();
    let mut conf = conf_at(&w, "0.2.0", json!({"deviceID": VF0, "vlan": 9}));
    conf.as_object_mut().unwrap().remove("ipam");
    let (code, e) = call(&w, "ADD", "c1", "ns1", &conf);
    assert_eq!(
        (code, &e["code"], &e["cniVersion"]),
        (1, &json!(7), &json!("0.2.0")),
        "{e}"
    );
    assert!(e["details"].as_str().unwrap().contains("ipam"), "{e}");
    let mut conf = conf_at(&w, "0.2.0", json!({"deviceID": VF0, "vlan": 9}));
    conf["prevResult"] = json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.9.0.2/24"}});
    let (code, e) = call(&w, "ADD", "c1", "ns1", &conf);
    assert_eq!((code, &e["code"]), (1, &json!(7)), "{e}");
    assert!(e["details"].as_str().unwrap().contains("chaining"), "{e}");
    assert_eq!(w.vf(0), orig_vf(0), "refused before anything was touched");
    assert!(w.cache().states().unwrap().0.is_empty());
}

/// A result of the previous plugins in a chain, written by hand in
/// `v`'s layout as its spec text shows it: a host-side and a container
/// interface, an IPv4 and an IPv6 address on the second (`version` fields
/// from 0.3.0 to 0.4.0), a route and DNS; 1.1.0 adds its fields.
fn prev_result(v: Version, ns: &str) -> Value {
    let mut ip4 = json!({"interface": 1, "address": "10.1.0.5/16", "gateway": "10.1.0.1"});
    let mut ip6 = json!({"interface": 1, "address": "fd00:1::5/64"});
    if v.layout() == Layout::Ips04 {
        ip4["version"] = json!("4");
        ip6["version"] = json!("6");
    }
    let mut r = json!({
        "cniVersion": v.as_str(),
        "interfaces": [
            {"name": "veth1234", "mac": "0a:58:0a:01:00:01"},
            {"name": "eth0", "mac": "0a:58:0a:01:00:05", "sandbox": ns}
        ],
        "ips": [ip4, ip6],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}],
        "dns": {"nameservers": ["10.1.0.10"], "domain": "cluster.local"}
    });
    if v.layout() == Layout::V1_1 {
        r["interfaces"][1]["mtu"] = json!(1450);
        r["routes"][0]["priority"] = json!(10);
    }
    r
}

#[test]
fn prev_result_of_every_version_is_read_merged_and_passed_on() {
    need_host_local();
    let chained = [
        Version::V0_3_0,
        Version::V0_3_1,
        Version::V0_4_0,
        Version::V1_0_0,
        Version::V1_1_0,
    ];
    for version in chained {
        for (dev, netdev) in [(VF0, false), (VF1, true)] {
            let w = world();
            let what = format!("{version} {}", if netdev { "netdevice" } else { "DPDK" });
            let ns = w.t.path().join("ns1").to_string_lossy().into_owned();
            let prev = prev_result(version, &ns);
            let mut conf = conf_at(&w, version.as_str(), json!({"deviceID": dev, "vlan": 5}));
            conf["ipam"]["resolvConf"] = json!(w.t.path().join("resolv.conf").to_str().unwrap());
            std::fs::write(
                w.t.path().join("resolv.conf"),
                "nameserver 10.1.0.10\nnameserver 169.254.77.53\nsearch pods.example\n",
            )
            .unwrap();
            conf["prevResult"] = prev.clone();
            let (code, r) = call(&w, "ADD", "c1", "ns1", &conf);
            assert_eq!(code, 0, "{what}: {r}");
            check_spec_fields(version, &r);
            // Passed on: the previous interfaces, addresses and routes come
            // first, unchanged and in the same layout, indices intact ...
            assert_eq!(r["interfaces"][0], prev["interfaces"][0], "{what}: {r}");
            assert_eq!(r["interfaces"][1], prev["interfaces"][1], "{what}: {r}");
            assert_eq!(r["ips"][0], prev["ips"][0], "{what}: {r}");
            assert_eq!(r["ips"][1], prev["ips"][1], "{what}: {r}");
            assert_eq!(r["routes"][0], prev["routes"][0], "{what}: {r}");
            // ... then this attachment: its interface at index 2, its
            // address pointing at it, host-local's route, DNS merged.
            assert_eq!(r["interfaces"].as_array().unwrap().len(), 3, "{what}: {r}");
            assert_eq!(r["interfaces"][2]["name"], "net1");
            assert_eq!(r["interfaces"][2]["sandbox"], ns.as_str());
            assert_eq!(r["ips"].as_array().unwrap().len(), 3, "{what}: {r}");
            assert_eq!(r["ips"][2]["interface"], 2, "{what}: {r}");
            assert!(r["ips"][2]["address"]
                .as_str()
                .unwrap()
                .starts_with("169.254.77."));
            assert_eq!(r["routes"][1], json!({"dst": "169.254.88.0/24"}));
            assert_eq!(
                r["dns"],
                json!({"nameservers": ["10.1.0.10", "169.254.77.53"], "domain": "cluster.local",
                       "search": ["pods.example"]}),
                "{what}"
            );
            // CHECK reads the final result (in this version) and finds its
            // own interface among the others.
            if version >= Version::V0_4_0 {
                let mut chk = conf.clone();
                chk["prevResult"] = r.clone();
                let (code, out) = call(&w, "CHECK", "c1", "ns1", &chk);
                assert_eq!(code, 0, "{what}: {out}");
                // A result that lost this attachment's interface fails.
                let mut lost = r.clone();
                lost["interfaces"].as_array_mut().unwrap().pop();
                lost["ips"].as_array_mut().unwrap().pop();
                chk["prevResult"] = lost;
                let (code, out) = call(&w, "CHECK", "c1", "ns1", &chk);
                assert_eq!((code, &out["code"]), (1, &json!(104)), "{what}: {out}");
                assert!(out["msg"].as_str().unwrap().contains("no interface net1"));
            }
            let (code, _) = call(&w, "DEL", "c1", "ns1", &conf);
            assert_eq!(code, 0, "{what}");
            assert_eq!(w.vf(if netdev { 1 } else { 0 }).vlan.id, 0, "{what}");
        }
    }
}

#[test]
fn prev_result_in_another_version_is_converted() {
    need_host_local();
    let w = world();
    let ns = w.t.path().join("ns1").to_string_lossy().into_owned();
    // A 0.4.0 result handed to a 1.0.0 configuration (and the reverse):
    // read in its own layout, printed in the configuration's.
    for (conf_v, prev_v) in [
        (Version::V1_0_0, Version::V0_4_0),
        (Version::V0_4_0, Version::V1_1_0),
        (Version::V1_1_0, Version::V0_2_0),
    ] {
        let prev = if prev_v == Version::V0_2_0 {
            json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.1.0.5/16", "gateway": "10.1.0.1",
                   "routes": [{"dst": "0.0.0.0/0"}]}, "dns": {}})
        } else {
            prev_result(prev_v, &ns)
        };
        let mut conf = conf_at(&w, conf_v.as_str(), json!({"deviceID": VF0}));
        conf["prevResult"] = prev;
        let (code, r) = call(&w, "ADD", "c1", "ns1", &conf);
        assert_eq!(code, 0, "{conf_v} <- {prev_v}: {r}");
        check_spec_fields(conf_v, &r);
        assert_eq!(r["ips"][0]["address"], "10.1.0.5/16");
        if prev_v == Version::V0_2_0 {
            // No interfaces in 0.2.0: its address belongs to none.
            assert!(r["ips"][0].get("interface").is_none(), "{r}");
            assert_eq!(r["interfaces"][0]["name"], "net1");
            assert_eq!(r["ips"][1]["interface"], 0, "{r}");
        } else {
            assert_eq!(r["interfaces"][2]["name"], "net1", "{r}");
        }
        assert_eq!(call(&w, "DEL", "c1", "ns1", &conf).0, 0);
    }
    // Unreadable prevResults: refused before anything is touched.
    for (prev, code) in [
        (
            json!({"cniVersion": "0.4.0", "ips": [{"version": "6", "address": "10.1.0.5/16"}]}),
            6,
        ),
        (json!({"cniVersion": "9.0.0"}), 1),
        (
            json!({"cniVersion": "1.0.0", "interfaces": [], "ips": [{"interface": 3, "address": "10.1.0.5/16"}]}),
            7,
        ),
        (json!("not a result"), 6),
    ] {
        let mut conf = conf_at(&w, "1.0.0", json!({"deviceID": VF0, "vlan": 4}));
        conf["prevResult"] = prev.clone();
        let (c, e) = call(&w, "ADD", "c1", "ns1", &conf);
        assert_eq!((c, &e["code"]), (1, &json!(code)), "{prev}: {e}");
        assert_eq!(e["cniVersion"], "1.0.0");
        assert!(e["details"].as_str().unwrap().contains("prevResult"), "{e}");
        assert_eq!(w.vf(0), orig_vf(0));
    }
    // An earlier plugin already made net1 in this pod: refused.
    let mut conf = conf_at(&w, "1.0.0", json!({"deviceID": VF0}));
    conf["prevResult"] =
        json!({"cniVersion": "1.0.0", "interfaces": [{"name": "net1", "sandbox": ns}]});
    let (c, e) = call(&w, "ADD", "c1", "ns1", &conf);
    assert_eq!((c, &e["code"]), (1, &json!(7)), "{e}");
    assert!(w.cache().states().unwrap().0.is_empty());
}
