//! The CNI operations, on any [`Host`].
//!
//! ADD: take the VF's lock; refuse a VF allocated to a live attachment,
//! free one whose netns is gone; detect the mode from the VF's driver;
//! record the VF's original state (before changing anything); set the VF's
//! attributes through the PF; run IPAM; in netdevice mode move the netdev
//! into the pod; in DPDK mode write the device-info file; return the
//! interface with its MAC and `pciID`. A failure undoes what was done.
//!
//! DEL: restore every attribute from the record (only those that differ,
//! so unsupported attributes that ADD could not change are not touched),
//! bring a netdev home under its old name, release IPAM, drop the records.
//! Without a record, the mode is re-detected from sysfs. DEL of something
//! never added succeeds.
//!
//! CHECK compares the VF's live state with the configuration. GC releases
//! every attachment of the network not in `cni.dev/valid-attachments`.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use pollux_core::MacAddr;
use pollux_pci::{DriverKind, PciAddr};
use pollux_sriov::netlink::{VfAttr, VfState, Vlan};
use pollux_sriov::pod::DeviceInfo;
use rscni_plugin::types::{CNIResult, Interface};
use serde_json::Value;

use crate::config::{Conf, LogLevel};
use crate::host::{Host, IpSetup};
use crate::ipam::{self, Invocation, IPAM_TIMEOUT};
use crate::spec::{self, Layout, Version};
use crate::state::{Alloc, Cache, LinkOrig, Mode, Phase, Record};
use crate::{Error, Result};

/// The CNI_* environment of a call.
#[derive(Clone, Debug, Default)]
pub struct Env {
    pub container_id: String,
    pub netns: Option<PathBuf>,
    pub ifname: String,
    pub args: Option<String>,
    pub path: Vec<PathBuf>,
}

/// Appends a line to `logFile` (0600) or, for warnings and errors without
/// one, stderr; never fails the operation.
pub fn log(conf: Option<&Conf>, level: LogLevel, msg: &str) {
    let (max, file) = match conf {
        Some(c) => (c.log_level, c.log_file.as_deref()),
        None => (LogLevel::Info, None),
    };
    if level > max {
        return;
    }
    let line = format!("pollux-cni [{level:?}] {msg}\n");
    match file {
        Some(f) => {
            if let Ok(mut fh) = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(f)
            {
                let _ = fh.write_all(line.as_bytes());
            }
        }
        None if level <= LogLevel::Warning => eprint!("{line}"),
        None => {}
    }
}

/// The VF's PF, index and PF netdev.
fn locate<H: Host>(host: &H, vf: PciAddr) -> Result<(PciAddr, u32, String)> {
    let sysfs = host.sysfs();
    let (pf, idx) = sysfs
        .vf_index(vf)
        .map_err(pollux_sriov::Error::from)?
        .ok_or(pollux_sriov::Error::NotVf(vf))?;
    let pf_if = sysfs
        .netdevs(pf)
        .map_err(pollux_sriov::Error::from)?
        .into_iter()
        .next()
        .ok_or(pollux_sriov::Error::NoNetdev(pf))?;
    Ok((pf, idx, pf_if))
}

/// DPDK mode if the VF is on a userspace driver, netdevice mode if it has
/// a netdev in the host namespace.
fn detect_mode<H: Host>(host: &H, vf: PciAddr) -> Result<Mode> {
    let sysfs = host.sysfs();
    let driver = sysfs.driver(vf).map_err(pollux_sriov::Error::from)?;
    if DriverKind::of(driver.as_deref()) == DriverKind::Userspace {
        return Ok(Mode::Dpdk {
            driver: driver.unwrap_or_default(),
        });
    }
    if let Some(n) = sysfs
        .netdevs(vf)
        .map_err(pollux_sriov::Error::from)?
        .into_iter()
        .next()
    {
        return Ok(Mode::Netdev { host_ifname: n });
    }
    Err(Error::Device(format!(
        "VF {vf} has neither a netdev in the host namespace nor a userspace driver \
         (vfio-pci, uio_pci_generic, igb_uio); driver: {}",
        driver.as_deref().unwrap_or("none")
    )))
}

/// Sets the configured attributes, in sriov-cni's order (vlan, mac,
/// rate, spoofchk, trust, link state).
fn apply_vf<H: Host>(
    host: &mut H,
    pf_if: &str,
    idx: u32,
    conf: &Conf,
    orig: &VfState,
) -> Result<()> {
    if let Some(v) = conf.vlan {
        host.set_vf(pf_if, idx, VfAttr::Vlan(v))?;
    }
    if let Some(m) = conf.mac {
        host.set_vf(pf_if, idx, VfAttr::Mac(m))?;
    }
    if conf.min_tx_rate.is_some() || conf.max_tx_rate.is_some() {
        host.set_vf(
            pf_if,
            idx,
            VfAttr::Rate {
                min: conf.min_tx_rate.unwrap_or(orig.min_tx_rate),
                max: conf.max_tx_rate.unwrap_or(orig.max_tx_rate),
            },
        )?;
    }
    if let Some(s) = conf.spoofchk {
        host.set_vf(pf_if, idx, VfAttr::SpoofCheck(s))?;
    }
    if let Some(t) = conf.trust {
        host.set_vf(pf_if, idx, VfAttr::Trust(t))?;
    }
    if let Some(l) = conf.link_state {
        host.set_vf(pf_if, idx, VfAttr::LinkState(l))?;
    }
    Ok(())
}

/// Puts back every attribute whose live value differs from `orig`.
fn restore_vf<H: Host>(host: &mut H, pf_if: &str, idx: u32, orig: &VfState) -> Result<()> {
    let cur = host.vf_state(pf_if, idx)?;
    if cur.vlan != orig.vlan {
        host.set_vf(pf_if, idx, VfAttr::Vlan(orig.vlan))?;
    }
    if cur.mac != orig.mac {
        host.set_vf(pf_if, idx, VfAttr::Mac(orig.mac))?;
    }
    if (cur.min_tx_rate, cur.max_tx_rate) != (orig.min_tx_rate, orig.max_tx_rate) {
        host.set_vf(
            pf_if,
            idx,
            VfAttr::Rate {
                min: orig.min_tx_rate,
                max: orig.max_tx_rate,
            },
        )?;
    }
    if let Some(s) = orig.spoofchk.filter(|s| cur.spoofchk != Some(*s)) {
        host.set_vf(pf_if, idx, VfAttr::SpoofCheck(s))?;
    }
    if let Some(t) = orig.trust.filter(|t| cur.trust != Some(*t)) {
        host.set_vf(pf_if, idx, VfAttr::Trust(t))?;
    }
    if let Some(l) = orig.link_state.filter(|l| cur.link_state != Some(*l)) {
        host.set_vf(pf_if, idx, VfAttr::LinkState(l))?;
    }
    Ok(())
}

/// Differences between the live VF and the configuration.
fn vf_mismatches(conf: &Conf, cur: &VfState) -> Vec<String> {
    let mut d = Vec::new();
    if let Some(v) = conf.vlan {
        if cur.vlan != v {
            d.push(format!(
                "vlan {}/qos {}/{} configured, VF has {}/{}/{}",
                v.id, v.qos, v.proto, cur.vlan.id, cur.vlan.qos, cur.vlan.proto
            ));
        }
    }
    if let Some(m) = conf.mac {
        if cur.mac != m {
            d.push(format!("mac {m} configured, VF has {}", cur.mac));
        }
    }
    if let Some(r) = conf.min_tx_rate.filter(|r| *r != cur.min_tx_rate) {
        d.push(format!(
            "min_tx_rate {r} configured, VF has {}",
            cur.min_tx_rate
        ));
    }
    if let Some(r) = conf.max_tx_rate.filter(|r| *r != cur.max_tx_rate) {
        d.push(format!(
            "max_tx_rate {r} configured, VF has {}",
            cur.max_tx_rate
        ));
    }
    if let Some(s) = conf.spoofchk.filter(|s| cur.spoofchk != Some(*s)) {
        d.push(format!(
            "spoofchk {} configured, VF has {:?}",
            on_off(s),
            cur.spoofchk.map(on_off)
        ));
    }
    if let Some(t) = conf.trust.filter(|t| cur.trust != Some(*t)) {
        d.push(format!(
            "trust {} configured, VF has {:?}",
            on_off(t),
            cur.trust.map(on_off)
        ));
    }
    if let Some(l) = conf.link_state.filter(|l| cur.link_state != Some(*l)) {
        d.push(format!(
            "link_state {l} configured, VF has {:?}",
            cur.link_state
        ));
    }
    d
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

fn invocation(
    command: &'static str,
    cid: &str,
    netns: &str,
    ifname: &str,
    args: Option<&str>,
    path: &[PathBuf],
) -> Invocation {
    Invocation {
        command,
        container_id: Some(cid.to_owned()),
        netns: (!netns.is_empty()).then(|| netns.to_owned()),
        ifname: Some(ifname.to_owned()),
        args: args.map(str::to_owned),
        path: path.to_vec(),
    }
}

fn ipam_type(ipam: &Option<Value>) -> Option<&str> {
    ipam.as_ref()?.get("type")?.as_str()
}

/// Releases an attachment: netdev home, VF attributes back, IPAM released,
/// device-info file and records removed. The caller holds the VF lock.
/// Every step is tried; the first failure is returned and the records stay
/// so a later DEL can finish.
pub fn release<H: Host>(host: &mut H, cache: &Cache, rec: &Record, path: &[PathBuf]) -> Result<()> {
    release_with(host, cache, rec, path, true)
}

/// [`release`], with IPAM DEL only if `ipam` (an ADD whose IPAM ADD failed
/// holds no lease, and its IPAM plugin may refuse DEL the same way).
fn release_with<H: Host>(
    host: &mut H,
    cache: &Cache,
    rec: &Record,
    path: &[PathBuf],
    ipam: bool,
) -> Result<()> {
    let vf = rec.conf.device_id;
    let mut errs: Vec<Error> = Vec::new();
    // The PF side first: putting back a zero administrative MAC is what lets
    // the VF netdev take its own MAC back (the reverse of ADD's order).
    if let Err(e) = restore_vf(host, &rec.pf_ifname, rec.vf_index, &rec.orig_vf) {
        errs.push(e);
    }
    if let Mode::Netdev { host_ifname } = &rec.mode {
        let orig = rec.orig_link.clone().unwrap_or(LinkOrig {
            name: host_ifname.clone(),
            mac: None,
            mtu: None,
            up: false,
        });
        let ns = Path::new(&rec.netns);
        let mut home = false;
        if host.netns_live(ns) {
            match host.detach_netdev(ns, &rec.ifname, &orig) {
                Ok(b) => home = b,
                Err(e) => errs.push(e),
            }
        }
        if !home {
            // The namespace died and the kernel moved the netdev home under
            // whatever name it had (or a dev%d name); find it by its PCI
            // function.
            match host.sysfs().netdevs(vf) {
                Ok(n) => {
                    if let Some(cur) = n.first() {
                        if let Err(e) = host.restore_host_netdev(cur, &orig) {
                            errs.push(e);
                        }
                    }
                }
                Err(e) => errs.push(pollux_sriov::Error::from(e).into()),
            }
        }
    }
    if let Some(t) = ipam_type(&rec.conf.ipam).filter(|_| ipam) {
        let inv = invocation(
            "DEL",
            &rec.container_id,
            &rec.netns,
            &rec.ifname,
            None,
            path,
        );
        if let Err(e) = ipam::exec(t, &inv, &rec.stdin, IPAM_TIMEOUT) {
            errs.push(e);
        }
    }
    if let Some(f) = &rec.conf.device_info_file {
        if let Err(e) = std::fs::remove_file(f) {
            if e.kind() != std::io::ErrorKind::NotFound {
                errs.push(Error::Io {
                    op: "removing device-info file",
                    path: f.clone(),
                    source: e,
                });
            }
        }
    }
    if let Some(e) = errs.into_iter().next() {
        log(
            Some(&rec.conf),
            LogLevel::Error,
            &format!("release of {vf} incomplete: {e}"),
        );
        return Err(e);
    }
    if let Some(a) = cache.read_alloc(vf)? {
        if a.container_id == rec.container_id && a.ifname == rec.ifname {
            cache.remove_alloc(vf)?;
        }
    }
    cache.remove_state(&rec.container_id, &rec.ifname)?;
    log(
        Some(&rec.conf),
        LogLevel::Info,
        &format!("released {vf} from {} {}", rec.container_id, rec.ifname),
    );
    Ok(())
}

fn mac_string(m: MacAddr) -> String {
    m.to_string()
}

/// The spec version of a validated configuration (the protocol layer has
/// already refused the others).
fn version_of(conf: &Conf) -> Version {
    Version::declared(Some(&conf.cni_version)).unwrap_or(Version::NEWEST)
}

/// Does `iface` name the interface `ifname` in `netns`? An interface
/// without a sandbox is on the host (spec 1.0.0 section 5: "empty if on
/// the host").
fn is_ours(iface: &Interface, ifname: &str, netns: &str) -> bool {
    iface.name == ifname && iface.sandbox.as_deref() == Some(netns)
}

/// ADD. `prev` is the `prevResult` when pollux-cni is not first in a
/// chain; the result is that result with this attachment's interface,
/// addresses, routes and DNS added (spec 1.0.0 section 5, "Success":
/// "Plugins provided a `prevResult` key as part of their request
/// configuration must output it as their result, with any possible
/// modifications made by that plugin included").
pub fn add<H: Host>(
    host: &mut H,
    conf: &Conf,
    stdin: &Value,
    prev: Option<&CNIResult>,
    env: &Env,
) -> Result<CNIResult> {
    let netns = env
        .netns
        .as_ref()
        .ok_or_else(|| Error::InvalidEnv("CNI_NETNS is required for ADD".into()))?;
    let netns_s = netns.to_string_lossy().into_owned();
    // Refusals that need nothing from the host come first, before any
    // state is touched.
    if version_of(conf).layout() == Layout::Ip4Ip6 && conf.ipam.is_none() {
        return Err(Error::InvalidConfig(format!(
            "a cniVersion {} result holds only IP configuration (ip4/ip6; spec 0.2.0, \
             Result), so this attachment would have nothing to report: configure ipam, \
             or use cniVersion 0.3.0 or later, whose results name the interface",
            conf.cni_version
        )));
    }
    if let Some(p) = prev {
        if p.interfaces
            .iter()
            .any(|i| is_ours(i, &env.ifname, &netns_s))
        {
            return Err(Error::InvalidConfig(format!(
                "prevResult already lists interface {} in {netns_s}: an earlier plugin in \
                 the chain made it, and pollux-cni would make a second one of that name",
                env.ifname
            )));
        }
    }
    if !host.netns_live(netns) {
        return Err(Error::InvalidEnv(format!(
            "CNI_NETNS {} is not a network namespace",
            netns.display()
        )));
    }
    let cache = Cache::open(&conf.cache_dir)?;
    let vf = conf.device_id;
    let (pf, idx, pf_if) = locate(host, vf)?;
    let _lock = cache.lock_vf(vf, conf.lock_timeout)?;

    if let Some(a) = cache.read_alloc(vf)? {
        if a.container_id == env.container_id && a.ifname == env.ifname {
            if let Some(rec) = cache.read_state(&a.container_id, &a.ifname)? {
                if rec.phase == Phase::Added {
                    if let Some(r) = rec.result.clone() {
                        // A repeated ADD of the same attachment: same answer.
                        return serde_json::from_value(r).map_err(|e| Error::Io {
                            op: "decoding cached result in",
                            path: cache.root().to_owned(),
                            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                        });
                    }
                }
            }
        } else if host.netns_live(Path::new(&a.netns)) {
            return Err(Error::Allocated {
                vf: vf.to_string(),
                owner: a.container_id,
                ifname: a.ifname,
                netns: a.netns,
            });
        } else {
            // The owner's pod is gone without a DEL: free the VF first.
            log(
                Some(conf),
                LogLevel::Warning,
                &format!(
                    "{vf} was allocated to {} whose netns {} is gone; freeing it",
                    a.container_id, a.netns
                ),
            );
            match cache.read_state(&a.container_id, &a.ifname) {
                Ok(Some(old)) => release(host, &cache, &old, &env.path)?,
                _ => cache.remove_alloc(vf)?,
            }
        }
    }
    // An interrupted earlier ADD of this very attachment: undo it first,
    // so the original state recorded below is the true original.
    if let Some(old) = cache.read_state(&env.container_id, &env.ifname)? {
        release(host, &cache, &old, &env.path)?;
    }

    let mode = detect_mode(host, vf)?;
    let orig_vf = host.vf_state(&pf_if, idx)?;
    let orig_link = match &mode {
        Mode::Netdev { host_ifname } => {
            let l = host
                .host_link(host_ifname)?
                .ok_or_else(|| Error::Device(format!("VF netdev {host_ifname} not found")))?;
            Some(LinkOrig {
                name: l.name,
                mac: l.mac,
                mtu: l.mtu,
                up: l.up,
            })
        }
        Mode::Dpdk { .. } => None,
    };
    let mut rec = Record {
        network: conf.name.clone(),
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
        netns: netns_s.clone(),
        conf: conf.clone(),
        stdin: stdin.clone(),
        mode: mode.clone(),
        pf,
        pf_ifname: pf_if.clone(),
        vf_index: idx,
        orig_vf: orig_vf.clone(),
        orig_link,
        phase: Phase::Adding,
        result: None,
    };
    // Write-ahead: the record exists before the first change.
    cache.write_state(&rec)?;
    cache.write_alloc(
        vf,
        &Alloc {
            container_id: env.container_id.clone(),
            ifname: env.ifname.clone(),
            netns: netns_s.clone(),
            network: conf.name.clone(),
        },
    )?;

    let mut ipam_failed = false;
    let outcome = add_apply(host, conf, stdin, prev, env, &rec, &mut ipam_failed);
    match outcome {
        Ok(result) => {
            rec.phase = Phase::Added;
            rec.result = Some(serde_json::to_value(&result).unwrap_or(Value::Null));
            cache.write_state(&rec)?;
            log(
                Some(conf),
                LogLevel::Info,
                &format!("ADD {vf} to {} {} ok", env.container_id, env.ifname),
            );
            Ok(result)
        }
        Err(e) => {
            log(
                Some(conf),
                LogLevel::Error,
                &format!("ADD {vf} failed: {e}; undoing"),
            );
            if let Err(e2) = release_with(host, &cache, &rec, &env.path, !ipam_failed) {
                log(
                    Some(conf),
                    LogLevel::Error,
                    &format!("undoing ADD of {vf}: {e2}"),
                );
            }
            Err(e)
        }
    }
}

fn add_apply<H: Host>(
    host: &mut H,
    conf: &Conf,
    stdin: &Value,
    prev: Option<&CNIResult>,
    env: &Env,
    rec: &Record,
    ipam_failed: &mut bool,
) -> Result<CNIResult> {
    let (pf_if, idx) = (rec.pf_ifname.as_str(), rec.vf_index);
    // A PF driver may refuse a VF netdev's own MAC change once an
    // administrative MAC is set (igb: "VF attempted to override
    // administratively set MAC address"), so in netdevice mode the netdev
    // gets its MAC first and the PF's administrative MAC follows.
    let netdev_mode = matches!(rec.mode, Mode::Netdev { .. });
    let vf_conf = if netdev_mode {
        Conf {
            mac: None,
            ..conf.clone()
        }
    } else {
        conf.clone()
    };
    apply_vf(host, pf_if, idx, &vf_conf, &rec.orig_vf)?;
    // What this attachment's IPAM assigned (the abbreviated result of a
    // delegated plugin, spec 1.0.0 section 5, "Delegated plugins (IPAM)").
    let mut own = CNIResult::default();
    if let Some(t) = ipam_type(&conf.ipam) {
        let inv = invocation(
            "ADD",
            &env.container_id,
            &rec.netns,
            &env.ifname,
            env.args.as_deref(),
            &env.path,
        );
        let r = ipam::exec(t, &inv, stdin, IPAM_TIMEOUT)
            .inspect_err(|_| *ipam_failed = true)?
            .ok_or_else(|| Error::Ipam {
                plugin: t.to_owned(),
                code: crate::codes::IPAM,
                msg: "ADD printed no result".into(),
                details: String::new(),
            })?;
        // The IPAM plugin answers in the configuration's version; read it
        // in the layout its own cniVersion names.
        own = spec::result_version(&r, version_of(conf))
            .and_then(|v| spec::parse(v, &r))
            .map_err(|e| Error::Ipam {
                plugin: t.to_owned(),
                code: crate::codes::IPAM,
                msg: format!("unreadable ADD result: {e}"),
                details: String::new(),
            })?;
        if own.ips.is_empty() {
            return Err(Error::Ipam {
                plugin: t.to_owned(),
                code: crate::codes::IPAM,
                msg: "ADD result has no IP addresses".into(),
                details: String::new(),
            });
        }
    }
    let mut iface = Interface {
        name: env.ifname.clone(),
        mac: String::new(),
        mtu: None,
        sandbox: Some(rec.netns.clone()),
        socket_path: None,
        pci_id: Some(conf.device_id.to_string()),
    };
    match &rec.mode {
        Mode::Netdev { host_ifname } => {
            let setup = IpSetup {
                addrs: own
                    .ips
                    .iter()
                    .map(|i| (i.address.addr(), i.address.prefix_len()))
                    .collect(),
                routes: own
                    .routes
                    .iter()
                    .map(|r| (r.dst.network(), r.dst.prefix_len(), r.gw))
                    .collect(),
            };
            let l = host.attach_netdev(
                host_ifname,
                Path::new(&rec.netns),
                &env.ifname,
                conf.mac,
                conf.mtu,
                &setup,
            )?;
            iface.mac = l.mac.map(mac_string).unwrap_or_default();
            iface.mtu = l.mtu;
            if let Some(m) = conf.mac {
                host.set_vf(pf_if, idx, VfAttr::Mac(m))?;
            }
        }
        Mode::Dpdk { .. } => {
            // sriov-cni's GetMacAddressForResult: the configured MAC, else
            // the PF's administrative MAC for the VF if one is set.
            iface.mac = conf
                .mac
                .or(Some(rec.orig_vf.mac).filter(|m| !m.is_zero()))
                .map(mac_string)
                .unwrap_or_default();
            if let Some(f) = &conf.device_info_file {
                write_device_info(f, &DeviceInfo::pci(conf.device_id, Some(rec.pf)))?;
            }
        }
    }
    // The previous plugins' result, this attachment appended: its
    // interface after theirs, its addresses pointing at it (an IPAM result
    // has no `interface` entries, spec 1.0.0 section 5), its routes and DNS
    // after theirs.
    let mut result = prev.cloned().unwrap_or_default();
    let index = u32::try_from(result.interfaces.len())
        .map_err(|_| Error::InvalidConfig("prevResult has too many interfaces".into()))?;
    result.interfaces.push(iface);
    result.ips.extend(own.ips.into_iter().map(|mut ip| {
        ip.interface = Some(index);
        ip
    }));
    result.routes.extend(own.routes);
    result.dns = spec::merge_dns(result.dns.take(), own.dns);
    Ok(result)
}

/// The shared writer (pollux-sriov's, which the device plugin uses too); its
/// I/O errors stay local I/O errors (code 100) as before.
fn write_device_info(path: &Path, di: &DeviceInfo) -> Result<()> {
    pollux_sriov::pod::write_device_info(path, di).map_err(|e| match e {
        pollux_sriov::Error::Io { op, path, source } => Error::Io { op, path, source },
        other => Error::Sriov(other),
    })
}

/// The cache directory a DEL or GC should look in, from a configuration
/// that may not validate.
pub fn cache_dir_of(custom: &serde_json::Map<String, Value>) -> PathBuf {
    custom
        .get("cacheDir")
        .and_then(Value::as_str)
        .filter(|s| s.starts_with('/'))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_CACHE_DIR))
}

/// DEL. `conf` is `None` when the stdin configuration does not validate:
/// then only a cached record can guide it.
pub fn del<H: Host>(
    host: &mut H,
    cache: &Cache,
    conf: Option<&Conf>,
    stdin: &Value,
    env: &Env,
) -> Result<()> {
    if let Some(rec) = cache.read_state(&env.container_id, &env.ifname)? {
        let _lock = cache.lock_vf(rec.conf.device_id, rec.conf.lock_timeout)?;
        // Re-read under the lock: a concurrent DEL may have finished it.
        return match cache.read_state(&env.container_id, &env.ifname)? {
            Some(rec) => release(host, cache, &rec, &env.path),
            None => Ok(()),
        };
    }
    let Some(conf) = conf else {
        log(
            None,
            LogLevel::Info,
            "DEL: nothing cached and no usable configuration; nothing to do",
        );
        return Ok(());
    };
    // No record: the cache was lost, or ADD never got as far as writing it.
    let vf = conf.device_id;
    let netns_s = env
        .netns
        .as_ref()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let located = locate(host, vf);
    if let Ok((_pf, idx, pf_if)) = &located {
        let _lock = cache.lock_vf(vf, conf.lock_timeout)?;
        let ours = match cache.read_alloc(vf)? {
            None => true,
            Some(a) => a.container_id == env.container_id && a.ifname == env.ifname,
        };
        if ours {
            // Mode from sysfs: a VF on a userspace driver never moved; a VF
            // on a kernel driver with no netdev in the host namespace is in
            // the pod's, and goes home under a name derived from the PF's
            // (its old name is not known).
            let in_pod = matches!(detect_mode(host, vf), Err(Error::Device(_)));
            if let Some(ns) = env.netns.as_ref().filter(|n| in_pod && host.netns_live(n)) {
                let name: String = format!("{pf_if}v{idx}").chars().take(15).collect();
                let orig = LinkOrig {
                    name,
                    mac: None,
                    mtu: None,
                    up: false,
                };
                if let Err(e) = host.detach_netdev(ns, &env.ifname, &orig) {
                    log(
                        Some(conf),
                        LogLevel::Warning,
                        &format!("DEL without cache: {e}"),
                    );
                }
            }
            // Put what the configuration sets back to the kernel's
            // defaults for a new VF (the original values are unknown).
            let neutral = VfState {
                index: *idx,
                mac: MacAddr::default(),
                vlan: Vlan::default(),
                min_tx_rate: 0,
                max_tx_rate: 0,
                spoofchk: Some(true),
                trust: Some(false),
                link_state: Some(pollux_sriov::netlink::LinkState::Auto),
            };
            if let Ok(cur) = host.vf_state(pf_if, *idx) {
                let mut target = cur.clone();
                if conf.vlan.is_some() {
                    target.vlan = neutral.vlan;
                }
                if conf.min_tx_rate.is_some() || conf.max_tx_rate.is_some() {
                    target.min_tx_rate = 0;
                    target.max_tx_rate = 0;
                }
                if conf.spoofchk.is_some() {
                    target.spoofchk = neutral.spoofchk;
                }
                if conf.trust.is_some() {
                    target.trust = neutral.trust;
                }
                if conf.link_state.is_some() {
                    target.link_state = neutral.link_state;
                }
                restore_vf(host, pf_if, *idx, &target)?;
            }
            cache.remove_alloc(vf)?;
        }
    }
    if let Some(t) = ipam_type(&conf.ipam) {
        let inv = invocation(
            "DEL",
            &env.container_id,
            &netns_s,
            &env.ifname,
            env.args.as_deref(),
            &env.path,
        );
        ipam::exec(t, &inv, stdin, IPAM_TIMEOUT)?;
    }
    if let Some(f) = &conf.device_info_file {
        let _ = std::fs::remove_file(f);
    }
    Ok(())
}

/// CHECK. `prev` is the result of the attachment's ADD, which the runtime
/// must pass (spec 1.0.0 section 2, CHECK: "A runtime must include a
/// `prevResult` field"; "The plugin must consult the `prevResult` to
/// determine the expected interfaces and addresses").
pub fn check<H: Host>(
    host: &mut H,
    conf: &Conf,
    stdin: &Value,
    prev: Option<&CNIResult>,
    env: &Env,
) -> Result<()> {
    let prev = prev.ok_or_else(|| {
        Error::InvalidConfig(
            "CHECK needs prevResult, the result of the attachment's ADD (the spec requires \
             the runtime to pass it)"
                .into(),
        )
    })?;
    let cache = Cache::open(&conf.cache_dir)?;
    let rec = cache
        .read_state(&env.container_id, &env.ifname)?
        .ok_or_else(|| {
            Error::Check(format!(
                "no attachment of {} {} is known",
                env.container_id, env.ifname
            ))
        })?;
    if rec.phase != Phase::Added {
        return Err(Error::Check(
            "the ADD of this attachment did not complete".into(),
        ));
    }
    let vf = conf.device_id;
    if rec.conf.device_id != vf {
        return Err(Error::Check(format!(
            "attached VF is {}, configuration names {vf}",
            rec.conf.device_id
        )));
    }
    let _lock = cache.lock_vf(vf, conf.lock_timeout)?;
    let mut diffs = Vec::new();
    match cache.read_alloc(vf)? {
        Some(a) if a.container_id == env.container_id && a.ifname == env.ifname => {}
        Some(a) => diffs.push(format!(
            "VF {vf} is allocated to {} {}",
            a.container_id, a.ifname
        )),
        None => diffs.push(format!("VF {vf} has no allocation record")),
    }
    let cur = host.vf_state(&rec.pf_ifname, rec.vf_index)?;
    diffs.extend(vf_mismatches(conf, &cur));
    let mut want_mac = conf.mac;
    match &rec.mode {
        Mode::Dpdk { driver } => {
            let now = host.sysfs().driver(vf).map_err(pollux_sriov::Error::from)?;
            if now.as_deref() != Some(driver.as_str()) {
                diffs.push(format!("VF driver is {:?}, was {driver} at ADD", now));
            }
        }
        Mode::Netdev { .. } => {
            let ns = env
                .netns
                .as_ref()
                .ok_or_else(|| Error::InvalidEnv("CNI_NETNS is required for CHECK".into()))?;
            match host.netns_link(ns, &env.ifname)? {
                None => diffs.push(format!("no interface {} in {}", env.ifname, ns.display())),
                Some(l) => {
                    if !l.up {
                        diffs.push(format!("{} is down", env.ifname));
                    }
                    if let (Some(m), Some(have)) = (conf.mac, l.mac) {
                        if m != have {
                            diffs.push(format!("{} has MAC {have}, configured {m}", env.ifname));
                        }
                    }
                    if let (Some(m), Some(have)) = (conf.mtu, l.mtu) {
                        if m != have {
                            diffs.push(format!("{} has MTU {have}, configured {m}", env.ifname));
                        }
                    }
                    want_mac = want_mac.or(l.mac);
                }
            }
        }
    }
    // Our interface in the result: this interface name in this sandbox
    // (a chain's result may list other plugins' interfaces before and
    // after it).
    match prev
        .interfaces
        .iter()
        .find(|i| is_ours(i, &env.ifname, &rec.netns))
    {
        None => diffs.push(format!(
            "prevResult has no interface {} in {}",
            env.ifname, rec.netns
        )),
        Some(i) => {
            if i.pci_id.as_deref().is_some_and(|p| p != vf.to_string()) {
                diffs.push(format!("prevResult pciID {:?} is not {vf}", i.pci_id));
            }
            if let Some(m) = want_mac {
                if !i.mac.is_empty() && !i.mac.eq_ignore_ascii_case(&m.to_string()) {
                    diffs.push(format!("prevResult mac {} is not {m}", i.mac));
                }
            }
        }
    }
    if !diffs.is_empty() {
        return Err(Error::Check(diffs.join("; ")));
    }
    if let Some(t) = ipam_type(&conf.ipam) {
        let inv = invocation(
            "CHECK",
            &env.container_id,
            &rec.netns,
            &env.ifname,
            env.args.as_deref(),
            &env.path,
        );
        ipam::exec(t, &inv, stdin, IPAM_TIMEOUT)?;
    }
    Ok(())
}

/// GC: releases every attachment of network `network` that is not in
/// `valid` (container ID, interface name).
pub fn gc<H: Host>(
    host: &mut H,
    cache: &Cache,
    network: &str,
    valid: &[(String, String)],
    path: &[PathBuf],
) -> Result<()> {
    let (recs, mut errs) = cache.states()?;
    for rec in recs {
        if rec.network != network
            || valid
                .iter()
                .any(|(c, i)| *c == rec.container_id && *i == rec.ifname)
        {
            continue;
        }
        let r = cache
            .lock_vf(rec.conf.device_id, rec.conf.lock_timeout)
            .and_then(
                |_lock| match cache.read_state(&rec.container_id, &rec.ifname)? {
                    Some(rec) => release(host, cache, &rec, path),
                    None => Ok(()),
                },
            );
        if let Err(e) = r {
            errs.push(e);
        }
    }
    // Allocations left without an attachment record (the record was lost):
    // nothing to restore from, but the VF is free again.
    for (vf, a) in cache.allocs()? {
        let valid_one = valid
            .iter()
            .any(|(c, i)| *c == a.container_id && *i == a.ifname);
        if a.network != network || valid_one {
            continue;
        }
        let r = cache
            .lock_vf(vf, std::time::Duration::from_secs(10))
            .and_then(|_lock| {
                match cache.read_state(&a.container_id, &a.ifname)? {
                    Some(_) => Ok(()), // an attachment being made right now
                    None => cache.remove_alloc(vf),
                }
            });
        if let Err(e) = r {
            errs.push(e);
        }
    }
    match errs.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Addresses of an IPAM result, for tests and callers.
pub fn result_ips(r: &CNIResult) -> Vec<IpAddr> {
    r.ips.iter().map(|i| i.address.addr()).collect()
}
