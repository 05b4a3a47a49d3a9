//! The SR-IOV network device plugin's `config.json`, read unchanged.
//!
//! The format is k8snetworkplumbingwg/sriov-network-device-plugin's
//! (README, "Configurations"; `pkg/types/types.go` `ResourceConfList`,
//! `ResourceConfig`, `NetDeviceSelectors`): `{"resourceList": [...]}`, each
//! resource with `resourceName`, an optional `resourcePrefix` (default: the
//! command line's, `intel.com`), `deviceType` (`netDevice`), `excludeTopology`
//! and `selectors`, either one object or (the preferred form) a list of
//! objects tried in order.
//!
//! Keys are matched as Go's `encoding/json` matches them, case-insensitively
//! (the SR-IOV plugin's own docs/config-file example writes `"IsRdma"`).
//! Where the Go plugin silently ignores what it does not know, this reader
//! refuses it and names it: a misspelt selector would otherwise select every
//! function of the node. Keys of the SR-IOV plugin that Pollux does not
//! implement are refused the same way, unless their value changes nothing
//! (`"isRdma": false`, an empty list).
//!
//! Differences from the Go plugin, each on purpose:
//! - A resource without `drivers` selects `vfio-pci` functions only:
//!   Pollux's plugin is for DPDK-mode VFs, and the driver it selects by is
//!   also the driver a device must stay bound to to be healthy.
//! - `vendors` and `devices` must be 4-digit hex IDs (the Go plugin compares
//!   strings, so `"0x8086"` would silently match nothing there).
//! - Several `pfNames` (or `rootDevices`) entries for the same PF are all
//!   honoured (`["ens1f0#0-1", "ens1f0#4"]`); the Go plugin uses the first.
//! - Resource names are also checked against the kubelet's rules for
//!   extended resource names, so a name the kubelet would refuse at
//!   registration is refused at start.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;
use std::path::Path;

use pollux_pci::PciAddr;
use serde_json::{Map, Value};

use crate::{Error, Result};

/// The SR-IOV network device plugin's default `--resource-prefix`.
pub const DEFAULT_RESOURCE_PREFIX: &str = "intel.com";

/// The SR-IOV network device plugin's default `--config-file`.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/pcidp/config.json";

/// The driver a selector without `drivers` stands for.
pub const DEFAULT_DRIVER: &str = "vfio-pci";

/// uio drivers: device nodes (`/dev/uioN`) this plugin does not hand out.
const UIO_DRIVERS: [&str; 2] = ["uio_pci_generic", "igb_uio"];

/// A whole configuration: the resources in file order (a device matching
/// several belongs to the first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub resources: Vec<Resource>,
}

/// One resource pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// `resourcePrefix`, or the default prefix.
    pub prefix: String,
    /// `resourceName`.
    pub name: String,
    /// `excludeTopology`: advertise no NUMA node.
    pub exclude_topology: bool,
    /// The selector objects, in order; never empty.
    pub selectors: Vec<Selector>,
}

impl Resource {
    /// `<prefix>/<name>`, the name the kubelet and pods know.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.prefix, self.name)
    }

    /// File name of the resource's socket in the plugin directory,
    /// `<prefix>_<name>.sock` as the SR-IOV plugin names it.
    pub fn socket_name(&self) -> String {
        format!("{}_{}.sock", self.prefix, self.name)
    }
}

/// Functions of one PF, by PF netdev name or PF PCI address, optionally
/// restricted to VF indexes (`ens1f0#0-3`, `0000:86:00.0#0,2-7,9`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PfFunctions<T> {
    pub pf: T,
    /// `None`: every VF of the PF.
    pub indexes: Option<Vec<RangeInclusive<u32>>>,
}

impl<T> PfFunctions<T> {
    /// Does VF `index` belong?
    pub fn includes(&self, index: u32) -> bool {
        match &self.indexes {
            None => true,
            Some(r) => r.iter().any(|r| r.contains(&index)),
        }
    }
}

/// One selector object. Every non-empty list narrows the selection; an empty
/// or absent one selects everything (except `drivers`, see
/// [`DEFAULT_DRIVER`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    pub vendors: Vec<u16>,
    pub devices: Vec<u16>,
    /// Never empty: `[DEFAULT_DRIVER]` when the configuration has none.
    pub drivers: Vec<String>,
    pub pci_addresses: Vec<PciAddr>,
    pub pf_names: Vec<PfFunctions<String>>,
    pub root_devices: Vec<PfFunctions<PciAddr>>,
    pub link_types: Vec<String>,
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path, default_prefix: &str) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            op: "reading config file",
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, default_prefix)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// Parses and checks a configuration. The error names where in the
    /// document the problem is (`resourceList[1].selectors[0].pfNames[2]`).
    pub fn parse(text: &str, default_prefix: &str) -> Result<Self, String> {
        let doc: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
        let top = as_object(&doc, "the document")?;
        let mut list = None;
        for (key, v) in top {
            match canonical(key, &["resourceList"]) {
                Some("resourceList") => list = Some(v),
                _ => return Err(unknown_key("the document", key, &["resourceList"])),
            }
        }
        let list = list
            .and_then(|v| if v.is_null() { None } else { Some(v) })
            .ok_or("no \"resourceList\"")?
            .as_array()
            .ok_or("\"resourceList\" is not a list")?;
        if list.is_empty() {
            return Err("\"resourceList\" is empty: nothing to advertise".into());
        }
        check_prefix(default_prefix).map_err(|e| format!("the default resource prefix: {e}"))?;
        let mut resources: Vec<Resource> = Vec::new();
        for (i, r) in list.iter().enumerate() {
            let at = format!("resourceList[{i}]");
            let res = parse_resource(&at, r, default_prefix)?;
            if let Some(j) = resources
                .iter()
                .position(|o| o.full_name() == res.full_name())
            {
                return Err(format!(
                    "{at}: resource {} is also resourceList[{j}]",
                    res.full_name()
                ));
            }
            resources.push(res);
        }
        Ok(Self { resources })
    }
}

const RESOURCE_KEYS: [&str; 8] = [
    "resourceName",
    "resourcePrefix",
    "deviceType",
    "excludeTopology",
    "selectors",
    "additionalInfo",
    "selectorObj",
    "selectorObjs",
];

const SELECTOR_KEYS: [&str; 14] = [
    "vendors",
    "devices",
    "drivers",
    "pciAddresses",
    "pfNames",
    "rootDevices",
    "linkTypes",
    // The SR-IOV plugin's, not implemented here:
    "acpiIndexes",
    "isRdma",
    "needVhostNet",
    "vdpaType",
    "pKeys",
    "ddpProfiles",
    "auxTypes",
];

fn parse_resource(at: &str, v: &Value, default_prefix: &str) -> Result<Resource, String> {
    let obj = as_object(v, at)?;
    let mut name = None;
    let mut prefix = None;
    let mut exclude_topology = false;
    let mut selectors = None;
    let mut seen = BTreeSet::new();
    for (key, v) in obj {
        let Some(k) = canonical(key, &RESOURCE_KEYS) else {
            return Err(unknown_key(at, key, &RESOURCE_KEYS[..5]));
        };
        if !seen.insert(k) {
            return Err(format!("{at}: {k:?} is given twice"));
        }
        let here = format!("{at}.{k}");
        match k {
            "resourceName" => name = Some(as_str(v, &here)?.to_owned()),
            "resourcePrefix" => prefix = opt_str(v, &here)?.filter(|s| !s.is_empty()),
            "deviceType" => match opt_str(v, &here)?.as_deref() {
                None | Some("") | Some("netDevice") => {}
                Some(t @ ("accelerator" | "auxNetDevice")) => {
                    return Err(unsupported(
                        &here,
                        &format!("deviceType {t:?} (only \"netDevice\")"),
                    ))
                }
                Some(t) => {
                    return Err(format!(
                        "{here}: unknown device type {t:?} (the SR-IOV plugin knows \"netDevice\", \"accelerator\" and \"auxNetDevice\"; this one \"netDevice\")"
                    ))
                }
            },
            "excludeTopology" => exclude_topology = opt_bool(v, &here)?.unwrap_or(false),
            "selectors" => selectors = Some(v),
            "additionalInfo" => {
                if !is_nothing(v) {
                    return Err(unsupported(&here, "additionalInfo"));
                }
            }
            // The Go plugin's internal field leaks into its own docs as
            // `"SelectorObj": null` (docs/config-file/README.md).
            _ => {
                if !v.is_null() {
                    return Err(format!(
                        "{here}: is the SR-IOV plugin's internal field; only null is accepted here"
                    ));
                }
            }
        }
    }
    let name = name.ok_or_else(|| format!("{at}: no \"resourceName\""))?;
    check_name(&name).map_err(|e| format!("{at}.resourceName {name:?}: {e}"))?;
    let prefix = prefix.unwrap_or_else(|| default_prefix.to_owned());
    check_prefix(&prefix).map_err(|e| format!("{at}.resourcePrefix {prefix:?}: {e}"))?;
    let sel_at = format!("{at}.selectors");
    let selectors = match selectors {
        None | Some(Value::Null) => {
            return Err(format!(
                "{at}: no \"selectors\" (a resource without selectors would take every network function of the node)"
            ))
        }
        Some(Value::Array(list)) => {
            if list.is_empty() {
                return Err(format!("{sel_at}: empty list, at least one selector is needed"));
            }
            list.iter()
                .enumerate()
                .map(|(i, s)| parse_selector(&format!("{sel_at}[{i}]"), s))
                .collect::<Result<Vec<_>, _>>()?
        }
        Some(s @ Value::Object(_)) => vec![parse_selector(&sel_at, s)?],
        Some(_) => return Err(format!("{sel_at}: neither an object nor a list of objects")),
    };
    Ok(Resource {
        prefix,
        name,
        exclude_topology,
        selectors,
    })
}

fn parse_selector(at: &str, v: &Value) -> Result<Selector, String> {
    let obj = as_object(v, at)?;
    let mut s = Selector {
        vendors: Vec::new(),
        devices: Vec::new(),
        drivers: Vec::new(),
        pci_addresses: Vec::new(),
        pf_names: Vec::new(),
        root_devices: Vec::new(),
        link_types: Vec::new(),
    };
    let mut seen = BTreeSet::new();
    for (key, v) in obj {
        let Some(k) = canonical(key, &SELECTOR_KEYS) else {
            return Err(unknown_key(at, key, &SELECTOR_KEYS[..7]));
        };
        if !seen.insert(k) {
            return Err(format!("{at}: {k:?} is given twice"));
        }
        let here = format!("{at}.{k}");
        match k {
            "vendors" => s.vendors = hex_ids(v, &here)?,
            "devices" => s.devices = hex_ids(v, &here)?,
            "drivers" => {
                for (i, d) in strings(v, &here)?.into_iter().enumerate() {
                    if d.is_empty() {
                        return Err(format!("{here}[{i}]: empty driver name"));
                    }
                    if UIO_DRIVERS.contains(&d.as_str()) {
                        return Err(unsupported(
                            &format!("{here}[{i}]"),
                            &format!("driver {d:?} (its /dev/uioN nodes are not handed out; bind the VFs to vfio-pci)"),
                        ));
                    }
                    s.drivers.push(d);
                }
            }
            "pciAddresses" => {
                for (i, a) in strings(v, &here)?.into_iter().enumerate() {
                    s.pci_addresses
                        .push(a.parse().map_err(|e| format!("{here}[{i}] {a:?}: {e}"))?);
                }
            }
            "pfNames" => {
                for (i, e) in strings(v, &here)?.into_iter().enumerate() {
                    let here = format!("{here}[{i}] {e:?}");
                    s.pf_names.push(pf_functions(&e, &here, |name| {
                        if name.is_empty() || name.contains('/') {
                            Err("not an interface name".into())
                        } else {
                            Ok(name.to_owned())
                        }
                    })?);
                }
            }
            "rootDevices" => {
                for (i, e) in strings(v, &here)?.into_iter().enumerate() {
                    let here = format!("{here}[{i}] {e:?}");
                    s.root_devices.push(pf_functions(&e, &here, |a| {
                        a.parse::<PciAddr>().map_err(|e| e.to_string())
                    })?);
                }
            }
            "linkTypes" => {
                for (i, t) in strings(v, &here)?.into_iter().enumerate() {
                    if t.is_empty() {
                        return Err(format!("{here}[{i}]: empty link type"));
                    }
                    s.link_types.push(t);
                }
            }
            _ => {
                if !is_nothing(v) {
                    return Err(unsupported(&here, k));
                }
            }
        }
    }
    if s.drivers.is_empty() {
        s.drivers.push(DEFAULT_DRIVER.to_owned());
    }
    Ok(s)
}

/// `NAME`, or `NAME#<list>` where the list is comma-separated VF indexes
/// and inclusive ranges (`0,2-7,9`), as the SR-IOV plugin's README
/// describes for `pfNames` and `rootDevices`.
fn pf_functions<T>(
    entry: &str,
    at: &str,
    pf: impl Fn(&str) -> Result<T, String>,
) -> Result<PfFunctions<T>, String> {
    let (name, list) = match entry.split_once('#') {
        None => (entry, None),
        Some((n, l)) => (n, Some(l)),
    };
    let pf = pf(name).map_err(|e| format!("{at}: {e}"))?;
    let Some(list) = list else {
        return Ok(PfFunctions { pf, indexes: None });
    };
    let index = |s: &str| {
        s.trim().parse::<u32>().map_err(|_| {
            format!("{at}: {s:?} is not a VF index (expected PF#N, PF#N-M or a comma-separated list of them)")
        })
    };
    let mut ranges = Vec::new();
    for part in list.split(',') {
        let r = match part.split_once('-') {
            None => {
                let n = index(part)?;
                n..=n
            }
            Some((a, b)) => {
                let (a, b) = (index(a)?, index(b)?);
                if a > b {
                    return Err(format!("{at}: range {part:?} runs backwards"));
                }
                a..=b
            }
        };
        ranges.push(r);
    }
    Ok(PfFunctions {
        pf,
        indexes: Some(ranges),
    })
}

/// The canonical spelling of `key` among `known`, matched as Go's
/// encoding/json does: exactly, else ignoring ASCII case.
fn canonical<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .find(|k| **k == key)
        .or_else(|| known.iter().find(|k| k.eq_ignore_ascii_case(key)))
        .copied()
}

fn unknown_key(at: &str, key: &str, supported: &[&str]) -> String {
    format!(
        "{at}: unknown key {key:?} (supported: {})",
        supported.join(", ")
    )
}

fn unsupported(at: &str, what: &str) -> String {
    format!(
        "{at}: {what} is not supported by pollux-device-plugin (the SR-IOV network device plugin has it; Pollux does not implement it, so it is refused rather than ignored)"
    )
}

/// null, false, "", [] and {}: values of an unsupported key that change
/// nothing in the SR-IOV plugin either.
fn is_nothing(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(_) => false,
    }
}

fn as_object<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("{at}: not a JSON object"))
}

fn as_str<'a>(v: &'a Value, at: &str) -> Result<&'a str, String> {
    v.as_str().ok_or_else(|| format!("{at}: not a string"))
}

fn opt_str(v: &Value, at: &str) -> Result<Option<String>, String> {
    match v {
        Value::Null => Ok(None),
        v => as_str(v, at).map(|s| Some(s.to_owned())),
    }
}

fn opt_bool(v: &Value, at: &str) -> Result<Option<bool>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        _ => Err(format!("{at}: not true or false")),
    }
}

/// A list of strings (null: none).
fn strings(v: &Value, at: &str) -> Result<Vec<String>, String> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, s)| as_str(s, &format!("{at}[{i}]")).map(str::to_owned))
            .collect(),
        _ => Err(format!("{at}: not a list of strings")),
    }
}

/// PCI vendor or device IDs: 4 hex digits, as the kernel shows them in
/// sysfs without the `0x` (`"8086"`, `"10ca"`), any case.
fn hex_ids(v: &Value, at: &str) -> Result<Vec<u16>, String> {
    strings(v, at)?
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            if s.len() == 4 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
                u16::from_str_radix(&s, 16).map_err(|e| e.to_string())
            } else {
                Err(format!(
                    "{at}[{i}]: {s:?} is not a 4-digit hex PCI ID (like \"8086\")"
                ))
            }
        })
        .collect()
}

/// `resourceName`: the SR-IOV plugin's `^[a-zA-Z0-9_-]+$`, and the
/// kubelet's rule for the name part of an extended resource (a qualified
/// name: at most 63 characters, alphanumeric at both ends).
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "character {c:?} is not allowed (letters, digits, '_' and '-')"
        ));
    }
    if name.len() > 63 {
        return Err("longer than 63 characters".into());
    }
    let ends = [name.as_bytes()[0], name.as_bytes()[name.len() - 1]];
    if !ends.iter().all(u8::is_ascii_alphanumeric) {
        return Err("must begin and end with a letter or digit".into());
    }
    Ok(())
}

/// `resourcePrefix`: a DNS-1123 subdomain, as the kubelet requires of an
/// extended resource's domain.
fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() || prefix.len() > 253 {
        return Err("must be a DNS subdomain of 1 to 253 characters".into());
    }
    for label in prefix.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "label {label:?} is not a DNS label (lower-case letters, digits and '-', alphanumeric at both ends)"
            ));
        }
    }
    if prefix == "kubernetes.io" || prefix.ends_with(".kubernetes.io") {
        return Err("the kubernetes.io domain is reserved for native resources".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, String> {
        Config::parse(s, DEFAULT_RESOURCE_PREFIX)
    }

    fn refused(s: &str, want: &[&str]) {
        let e = parse(s).expect_err(s);
        for w in want {
            assert!(e.contains(w), "{s}\n  error: {e}\n  wanted: {w}");
        }
    }

    /// The SR-IOV plugin's deployments/configMap.yaml without its RDMA
    /// resource: object-form selectors, the default prefix.
    #[test]
    fn deployment_example_is_read() {
        let c = parse(
            r#"{
        "resourceList": [{
                "resourceName": "intel_sriov_netdevice",
                "selectors": {
                    "vendors": ["8086"],
                    "devices": ["154c", "10ed", "1889"],
                    "drivers": ["i40evf", "iavf", "ixgbevf"]
                }
            },
            {
                "resourceName": "intel_sriov_dpdk",
                "selectors": {
                    "vendors": ["8086"],
                    "devices": ["154c", "10ed", "1889"],
                    "drivers": ["vfio-pci"],
                    "pfNames": ["enp0s0f0","enp2s2f1"]
                }
            },
            {
                "resourceName": "brcm_sriov_bnxt",
                "selectors": {
                    "vendors": ["14e4"],
                    "devices": ["1750"],
                    "drivers": ["bnxt_en"]
                }
            }
        ]
    }"#,
        )
        .unwrap();
        assert_eq!(c.resources.len(), 3);
        let dpdk = &c.resources[1];
        assert_eq!(dpdk.full_name(), "intel.com/intel_sriov_dpdk");
        assert_eq!(dpdk.socket_name(), "intel.com_intel_sriov_dpdk.sock");
        let s = &dpdk.selectors[0];
        assert_eq!(s.vendors, [0x8086]);
        assert_eq!(s.devices, [0x154c, 0x10ed, 0x1889]);
        assert_eq!(s.drivers, ["vfio-pci"]);
        assert_eq!(s.pf_names.len(), 2);
        assert_eq!(s.pf_names[1].pf, "enp2s2f1");
        assert!(s.pf_names[1].includes(17));
        assert_eq!(c.resources[0].selectors[0].drivers.len(), 3);
    }

    /// README "Config parameters": list-form selectors, a per-resource
    /// prefix, several selector objects; docs/dpdk/configMap-all-nics.yaml's
    /// vfio-pci part; the README's pfNames and rootDevices range examples.
    #[test]
    fn readme_forms_are_read() {
        let c = parse(
            r#"{"resourceList": [
            {"resourceName": "intel_sriov_dpdk", "resourcePrefix": "intel.com",
             "selectors": [{"vendors": ["8086"], "devices": ["154c", "10ed", "1889"],
                            "drivers": ["vfio-pci"], "pfNames": ["enp0s0f0","enp2s2f1"]}]},
            {"resourcePrefix": "dpdk.org", "resourceName": "nic",
             "selectors": [{"vendors": ["15b3"], "devices": ["1016"], "drivers": ["vfio-pci"]},
                           {"vendors": ["8086"], "devices": ["154c"], "drivers": ["vfio-pci"]}]},
            {"resourceName": "ranges", "excludeTopology": true,
             "selectors": [{"pfNames": ["netpf0#0,2-7,9"], "rootDevices": ["0000:86:00.0#0-1,3,4"],
                            "linkTypes": ["ether"]}]},
            {"resourceName": "x710", "deviceType": "netDevice",
             "selectors": [{"pciAddresses": ["0000:00:09.0", "0000:00:0a.0"], "drivers": ["vfio-pci"]}]}
        ]}"#,
        )
        .unwrap();
        assert_eq!(c.resources[1].full_name(), "dpdk.org/nic");
        assert_eq!(c.resources[1].selectors.len(), 2);
        let r = &c.resources[2];
        assert!(r.exclude_topology);
        let pf = &r.selectors[0].pf_names[0];
        assert_eq!(pf.pf, "netpf0");
        let picked: Vec<u32> = (0..12).filter(|i| pf.includes(*i)).collect();
        assert_eq!(picked, [0, 2, 3, 4, 5, 6, 7, 9]);
        let root = &r.selectors[0].root_devices[0];
        assert_eq!(root.pf.to_string(), "0000:86:00.0");
        let picked: Vec<u32> = (0..8).filter(|i| root.includes(*i)).collect();
        assert_eq!(picked, [0, 1, 3, 4]);
        assert_eq!(r.selectors[0].drivers, [DEFAULT_DRIVER]);
        assert_eq!(r.selectors[0].link_types, ["ether"]);
        assert_eq!(c.resources[3].selectors[0].pci_addresses.len(), 2);
    }

    /// docs/config-file/README.md: Go field names in Go's case and the
    /// internal `SelectorObj` as null, harmless false booleans.
    #[test]
    fn go_spellings_from_the_config_file_doc_are_read() {
        let c = parse(r#"{"resourceList":[{"resourceName":"sriovnics","selectors":{"pfNames":["ens785f0#0-4","ens785f1#0-9"],"IsRdma":false,"NeedVhostNet":false},"SelectorObj":null}]}"#).unwrap();
        let s = &c.resources[0].selectors[0];
        assert!(s.pf_names[0].includes(4) && !s.pf_names[0].includes(5));
        assert!(s.pf_names[1].includes(9));
        let c =
            parse(r#"{"ResourceList":[{"ResourceName":"a","Selectors":[{"Vendors":["8086"]}]}]}"#)
                .unwrap();
        assert_eq!(c.resources[0].selectors[0].vendors, [0x8086]);
    }

    #[test]
    fn unsupported_keys_are_refused_by_name() {
        for (key, value) in [
            ("isRdma", "true"),
            ("needVhostNet", "true"),
            ("vdpaType", "\"vhost\""),
            ("acpiIndexes", "[\"101\"]"),
            ("ddpProfiles", "[\"GTPv1-C/U IPv4/IPv6 payload\"]"),
            ("pKeys", "[\"0x1\"]"),
            ("auxTypes", "[\"sf\"]"),
        ] {
            refused(
                &format!(
                    r#"{{"resourceList":[{{"resourceName":"a","selectors":[{{"vendors":["8086"],"{key}":{value}}}]}}]}}"#
                ),
                &[
                    &format!("resourceList[0].selectors[0].{key}"),
                    "not supported by pollux-device-plugin",
                ],
            );
        }
        refused(
            r#"{"resourceList":[{"resourceName":"intel_fpga","deviceType":"accelerator","selectors":[{"vendors":["8086"],"devices":["0d90"]}]}]}"#,
            &[
                "resourceList[0].deviceType",
                "\"accelerator\"",
                "not supported",
            ],
        );
        refused(
            r#"{"resourceList":[{"resourceName":"a","selectors":{"vendors":["8086"]},"additionalInfo":{"*":{"token":"x"}}}]}"#,
            &["resourceList[0].additionalInfo", "not supported"],
        );
        refused(
            r#"{"resourceList":[{"resourceName":"a","selectors":{"drivers":["igb_uio"]}}]}"#,
            &["selectors.drivers[0]", "igb_uio", "not supported"],
        );
        // The README's full example (its stray comma removed) stops at the
        // first key Pollux does not implement.
        refused(
            r#"{"resourceList": [
            {"resourceName": "intel_sriov_netdevice", "selectors": [{"vendors": ["8086"], "devices": ["154c", "10ed", "1889"], "drivers": ["i40evf", "ixgbevf", "iavf"]}]},
            {"resourceName": "intel_sriov_dpdk", "resourcePrefix": "intel.com", "selectors": [{"vendors": ["8086"], "devices": ["154c", "10ed", "1889"], "drivers": ["vfio-pci"], "pfNames": ["enp0s0f0","enp2s2f1"], "needVhostNet": true}]}
            ]}"#,
            &["resourceList[1].selectors[0].needVhostNet"],
        );
    }

    #[test]
    fn unknown_and_malformed_input_is_refused() {
        for (text, want) in [
            ("", "not valid JSON"),
            ("[]", "not a JSON object"),
            ("{}", "no \"resourceList\""),
            (r#"{"resourceList": {}}"#, "not a list"),
            (r#"{"resourceList": []}"#, "empty"),
            (r#"{"resourceList": [], "x": 1}"#, "unknown key \"x\""),
            (
                r#"{"resourceList":[{"selectors":{}}]}"#,
                "no \"resourceName\"",
            ),
            (
                r#"{"resourceList":[{"resourceName":"a"}]}"#,
                "no \"selectors\"",
            ),
            (
                r#"{"resourceList":[{"resourceName":"a","selectors":[]}]}"#,
                "at least one selector",
            ),
            (
                r#"{"resourceList":[{"resourceName":"a","selectors":"x"}]}"#,
                "neither an object",
            ),
            (
                r#"{"resourceList":[{"resourceName":"a","selector":{}}]}"#,
                "unknown key \"selector\"",
            ),
            (
                r#"{"resourceList":[{"resourceName":"a","selectors":{"vendor":["8086"]}}]}"#,
                "selectors: unknown key \"vendor\"",
            ),
            (
                r#"{"resourceList":[{"resourceName":"a","selectors":{"vendors":"8086"}}]}"#,
                "selectors.vendors: not a list",
            ),
            (
                r#"{"resourceList":[{"resourceName":"a","selectors":{"vendors":[8086]}}]}"#,
                "vendors[0]: not a string",
            ),
            (
                r#"{"resourceList":[{"resourceName":"a","selectors":{"vendors":["0x8086"]}}]}"#,
                "not a 4-digit hex",
            ),
            (
                r#"{"resourceList":[{"resourceName":"a","selectors":{"devices":["10c"]}}]}"#,
                "devices[0]",
            ),
            (
                r#"{"resourceList":[{"resourceName":"a","selectors":{"pfNames":["ens1f0#3-1"]}}]}"#,
                "runs backwards",
            ),
            (
                r#"{"resourceList":[{"resourceName":"a","selectors":{"pfNames":["ens1f0#a"]}}]}"#,
                "not a VF index",
            ),
            (
                r#"{"resourceList":[{"resourceName":"a","selectors":{"pfNames":["ens1f0#"]}}]}"#,
                "not a VF index",
            ),
            (
                r##"{"resourceList":[{"resourceName":"a","selectors":{"pfNames":["#1"]}}]}"##,
                "not an interface name",
            ),
            (
                r#"{"resourceList":[{"resourceName":"a","selectors":{"rootDevices":["0000:86:00#1"]}}]}"#,
                "rootDevices[0]",
            ),
            (
                r#"{"resourceList":[{"resourceName":"a","selectors":{"pciAddresses":["eth0"]}}]}"#,
                "pciAddresses[0]",
            ),
            (
                r#"{"resourceList":[{"resourceName":"a","selectors":{"isRdma":"no"}}]}"#,
                "isRdma",
            ),
            (
                r#"{"resourceList":[{"resourceName":"a","excludeTopology":"yes","selectors":{}}]}"#,
                "not true or false",
            ),
            (
                r#"{"resourceList":[{"resourceName":"a","deviceType":"gpu","selectors":{}}]}"#,
                "unknown device type \"gpu\"",
            ),
            (
                r#"{"resourceList":[{"resourceName":"a b","selectors":{}}]}"#,
                "character ' '",
            ),
            (
                r#"{"resourceList":[{"resourceName":"_a","selectors":{}}]}"#,
                "begin and end",
            ),
            (
                r#"{"resourceList":[{"resourceName":"a","resourcePrefix":"Intel.com","selectors":{}}]}"#,
                "resourcePrefix \"Intel.com\"",
            ),
            (
                r#"{"resourceList":[{"resourceName":"a","resourcePrefix":"kubernetes.io","selectors":{}}]}"#,
                "reserved",
            ),
            (
                r#"{"resourceList":[{"resourceName":"a","selectors":{}},{"resourceName":"a","resourcePrefix":"intel.com","selectors":{}}]}"#,
                "resourceList[1]: resource intel.com/a is also resourceList[0]",
            ),
            (
                r#"{"resourceList":[{"resourceName":"a","ResourceName":"b","selectors":{}}]}"#,
                "given twice",
            ),
            (
                r#"{"resourceList":[{"resourceName":"a","SelectorObj":[1],"selectors":{}}]}"#,
                "internal field",
            ),
        ] {
            refused(text, &[want]);
        }
        // docs/dpdk/configMap-virt.yaml as published: trailing commas, which
        // Go's encoding/json refuses as well.
        refused(
            r#"{"resourceList": [{"resourceName": "intelnics_radio_downlink",
                "selectors": [{"drivers": ["vfio-pci"], "pciAddresses": ["0000:00:09.0", "0000:00:0a.0"],}],}]}"#,
            &["not valid JSON", "line 2"],
        );
        assert!(Config::parse(
            r#"{"resourceList":[{"resourceName":"a","selectors":{}}]}"#,
            "Bad"
        )
        .unwrap_err()
        .contains("default resource prefix"));
    }

    #[test]
    fn harmless_values_of_unsupported_keys_pass() {
        let c = parse(r#"{"resourceList":[{"resourceName":"a","additionalInfo":{},"selectors":[{"isRdma":false,"needVhostNet":false,"vdpaType":"","acpiIndexes":[],"pKeys":null}]}]}"#).unwrap();
        assert_eq!(c.resources[0].selectors[0].drivers, [DEFAULT_DRIVER]);
    }
}
