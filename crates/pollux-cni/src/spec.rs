//! The CNI spec versions pollux-cni speaks, and the ADD result in the
//! layout of each.
//!
//! The plugin works on one result model, rscni's [`CNIResult`] (the spec
//! 1.1.0 layout, the richest), and converts at the edges:
//!
//! - [`render`] prints a result in the layout of the configuration's
//!   version (spec 1.1.0 section 5 "ADD Success": "`cniVersion`: The same
//!   version supplied on input"), keeping only the fields that version
//!   defines;
//! - [`parse`] reads a result written in any supported version's layout: a
//!   `prevResult` from the plugin before this one in a chain, or an IPAM
//!   plugin's answer.
//!
//! The layouts, from the spec texts:
//!
//! | versions | layout |
//! | --- | --- |
//! | 0.1.0, 0.2.0 | `ip4` / `ip6` objects (`ip`, `gateway`, `routes`) and `dns` (spec 0.2.0, "Result"); no interfaces |
//! | 0.3.0, 0.3.1, 0.4.0 | `interfaces` (`name`, `mac`, `sandbox`), `ips` (`version` "4"/"6", `address`, `gateway`, `interface`), `routes` (`dst`, `gw`), `dns` (spec 0.4.0, "Result" and "Well-known Structures") |
//! | 1.0.0 | as 0.4.0 without `ips[].version` (spec 1.0.0 section 5, "Success") |
//! | 1.1.0 | 1.0.0 plus `interfaces[].mtu`, `socketPath`, `pciID` and `routes[].mtu`, `advmss`, `priority`, `table`, `scope` (spec 1.1.0 section 5, "ADD Success") |
//!
//! Spec 0.3.0's text names the list `ip`; 0.3.1 is the typo fix ("none
//! (typo fix only)" in the spec's own table of versions), and the reference
//! library reads and writes `ips` for 0.3.0 as well, so this module does
//! too.

use std::fmt;
use std::net::IpAddr;

use rscni_plugin::types::{CNIResult, Cmd, Dns, Interface, IpConfig, Route};
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

/// A CNI spec version this plugin supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    V0_1_0,
    V0_2_0,
    V0_3_0,
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

/// The result layout of a version (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// 0.1.0 and 0.2.0: `ip4` / `ip6`.
    Ip4Ip6,
    /// 0.3.0 to 0.4.0: `interfaces` and `ips` with `version`.
    Ips04,
    /// 1.0.0.
    V1_0,
    /// 1.1.0.
    V1_1,
}

impl Version {
    /// Every supported version, oldest first (the VERSION answer).
    pub const ALL: [Version; 7] = [
        Version::V0_1_0,
        Version::V0_2_0,
        Version::V0_3_0,
        Version::V0_3_1,
        Version::V0_4_0,
        Version::V1_0_0,
        Version::V1_1_0,
    ];

    /// The newest supported version: what is printed when the
    /// configuration's own version cannot be read.
    pub const NEWEST: Version = Version::V1_1_0;

    pub fn as_str(self) -> &'static str {
        match self {
            Version::V0_1_0 => "0.1.0",
            Version::V0_2_0 => "0.2.0",
            Version::V0_3_0 => "0.3.0",
            Version::V0_3_1 => "0.3.1",
            Version::V0_4_0 => "0.4.0",
            Version::V1_0_0 => "1.0.0",
            Version::V1_1_0 => "1.1.0",
        }
    }

    /// The version a `cniVersion` string names, exactly as the spec spells
    /// its versions ("Semantic Version 2.0 of CNI specification"); `None`
    /// for anything else, "1.0" and "1.2.0" included.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The version a configuration declares: an absent or empty
    /// `cniVersion` means 0.1.0, which had no such key in practice (the
    /// reference library reads it so too).
    pub fn declared(s: Option<&str>) -> Option<Self> {
        match s {
            None | Some("") => Some(Version::V0_1_0),
            Some(s) => Self::parse(s),
        }
    }

    pub fn layout(self) -> Layout {
        match self {
            Version::V0_1_0 | Version::V0_2_0 => Layout::Ip4Ip6,
            Version::V0_3_0 | Version::V0_3_1 | Version::V0_4_0 => Layout::Ips04,
            Version::V1_0_0 => Layout::V1_0,
            Version::V1_1_0 => Layout::V1_1,
        }
    }

    /// Whether the version defines `cmd`: CHECK came with spec 0.4.0
    /// ("Introduce the CHECK command", the spec's table of versions), GC
    /// and STATUS with 1.1.0 (spec 1.1.0 section 2); ADD, DEL and VERSION
    /// are in every version.
    pub fn allows(self, cmd: Cmd) -> bool {
        match cmd {
            Cmd::Check => self >= Version::V0_4_0,
            Cmd::Gc | Cmd::Status => self >= Version::V1_1_0,
            Cmd::Add | Cmd::Del | Cmd::Version => true,
        }
    }

    /// The supported versions as the VERSION answer lists them.
    pub fn all_strings() -> Vec<&'static str> {
        Self::ALL.iter().map(|v| v.as_str()).collect()
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_v4(a: IpAddr) -> bool {
    // An IPv4-mapped IPv6 address counts as IPv4, as the reference
    // library's To4() does.
    matches!(a.to_canonical(), IpAddr::V4(_))
}

fn family(a: IpAddr) -> &'static str {
    if is_v4(a) {
        "4"
    } else {
        "6"
    }
}

fn dns_json(d: &Dns) -> Value {
    let mut m = Map::new();
    if !d.nameservers.is_empty() {
        m.insert("nameservers".into(), json!(d.nameservers));
    }
    if let Some(x) = &d.domain {
        m.insert("domain".into(), json!(x));
    }
    if let Some(x) = &d.search {
        m.insert("search".into(), json!(x));
    }
    if let Some(x) = &d.options {
        m.insert("options".into(), json!(x));
    }
    Value::Object(m)
}

fn dns_is_empty(d: &Option<Dns>) -> bool {
    d.as_ref().is_none_or(|d| {
        d.nameservers.is_empty() && d.domain.is_none() && d.search.is_none() && d.options.is_none()
    })
}

/// `dst` and `gw`, the route fields of every version before 1.1.0.
fn route_basic(r: &Route) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("dst".into(), json!(r.dst.to_string()));
    if let Some(gw) = r.gw {
        m.insert("gw".into(), json!(gw.to_string()));
    }
    m
}

fn put_opt<T: serde::Serialize>(m: &mut Map<String, Value>, key: &str, v: &Option<T>) {
    if let Some(v) = v {
        m.insert(key.into(), json!(v));
    }
}

/// `result` in the layout of `v`, with `cniVersion` set to `v`. Fields the
/// version does not define are left out; lists that would be empty are
/// left out, as the spec marks them optional (`routes`, `dns`) or as the
/// reference library omits them (`interfaces`, `ips`).
///
/// For 0.1.0 and 0.2.0, which can carry one address per family and no
/// interfaces, the first address of each family is reported with the
/// routes of its family (spec 0.2.0, "Result"), as the reference library's
/// conversion does; callers make sure there is an address to report (see
/// [`Layout::Ip4Ip6`] uses in the plugin).
pub fn render(v: Version, result: &CNIResult) -> Value {
    let mut out = Map::new();
    out.insert("cniVersion".into(), json!(v.as_str()));
    let layout = v.layout();
    if layout == Layout::Ip4Ip6 {
        for (key, want4) in [("ip4", true), ("ip6", false)] {
            let Some(ip) = result.ips.iter().find(|i| is_v4(i.address.addr()) == want4) else {
                continue;
            };
            let mut o = Map::new();
            o.insert("ip".into(), json!(ip.address.to_string()));
            if let Some(gw) = ip.gateway {
                o.insert("gateway".into(), json!(gw.to_string()));
            }
            let routes: Vec<Value> = result
                .routes
                .iter()
                .filter(|r| is_v4(r.dst.addr()) == want4)
                .map(|r| Value::Object(route_basic(r)))
                .collect();
            if !routes.is_empty() {
                o.insert("routes".into(), Value::Array(routes));
            }
            out.insert(key.into(), Value::Object(o));
        }
        // The 0.2.0 layout shows `dns` without "(optional)".
        out.insert(
            "dns".into(),
            result
                .dns
                .as_ref()
                .map(dns_json)
                .unwrap_or_else(|| json!({})),
        );
        return Value::Object(out);
    }
    let interfaces: Vec<Value> = result
        .interfaces
        .iter()
        .map(|i| {
            let mut m = Map::new();
            m.insert("name".into(), json!(i.name));
            if !i.mac.is_empty() {
                m.insert("mac".into(), json!(i.mac));
            }
            if layout == Layout::V1_1 {
                put_opt(&mut m, "mtu", &i.mtu);
            }
            if let Some(s) = i.sandbox.as_ref().filter(|s| !s.is_empty()) {
                m.insert("sandbox".into(), json!(s));
            }
            if layout == Layout::V1_1 {
                put_opt(&mut m, "socketPath", &i.socket_path);
                put_opt(&mut m, "pciID", &i.pci_id);
            }
            Value::Object(m)
        })
        .collect();
    let ips: Vec<Value> = result
        .ips
        .iter()
        .map(|ip| {
            let mut m = Map::new();
            if layout == Layout::Ips04 {
                // Spec 0.4.0, "Well-known Structures", IPs: `version` is
                // "4" or "6" and corresponds to the address.
                m.insert("version".into(), json!(family(ip.address.addr())));
            }
            put_opt(&mut m, "interface", &ip.interface);
            m.insert("address".into(), json!(ip.address.to_string()));
            if let Some(gw) = ip.gateway {
                m.insert("gateway".into(), json!(gw.to_string()));
            }
            Value::Object(m)
        })
        .collect();
    let routes: Vec<Value> = result
        .routes
        .iter()
        .map(|r| {
            let mut m = route_basic(r);
            if layout == Layout::V1_1 {
                put_opt(&mut m, "mtu", &r.mtu);
                put_opt(&mut m, "advmss", &r.advmss);
                put_opt(&mut m, "priority", &r.priority);
                put_opt(&mut m, "table", &r.table);
                put_opt(&mut m, "scope", &r.scope);
            }
            Value::Object(m)
        })
        .collect();
    for (k, list) in [("interfaces", interfaces), ("ips", ips), ("routes", routes)] {
        if !list.is_empty() {
            out.insert(k.into(), Value::Array(list));
        }
    }
    if !dns_is_empty(&result.dns) {
        if let Some(d) = &result.dns {
            out.insert("dns".into(), dns_json(d));
        }
    }
    Value::Object(out)
}

fn field<T: DeserializeOwned>(v: &Value, what: &str) -> Result<T, String> {
    serde_json::from_value(v.clone()).map_err(|e| format!("{what}: {e}"))
}

fn opt_field<T: DeserializeOwned>(
    obj: &Map<String, Value>,
    key: &str,
    what: &str,
) -> Result<Option<T>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => field(v, &format!("{what}.{key}")).map(Some),
    }
}

fn list<T: DeserializeOwned>(obj: &Map<String, Value>, key: &str) -> Result<Vec<T>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, v)| field(v, &format!("{key}[{i}]")))
            .collect(),
        Some(other) => Err(format!("{key} must be a list, not {other}")),
    }
}

fn check_gateway_family(what: &str, addr: IpAddr, gw: Option<IpAddr>) -> Result<(), String> {
    match gw {
        Some(g) if is_v4(g) != is_v4(addr) => Err(format!(
            "{what}: gateway {g} is not of the address's family ({addr})"
        )),
        _ => Ok(()),
    }
}

/// Reads a result written in `v`'s layout. It is checked against what the
/// layout requires (a 0.3.x/0.4.0 `ips[].version` that is given matches
/// the address, 0.2.0 `ip4` holds an IPv4 address, gateways are of their
/// address's family); keys a layout does not define are ignored, as the
/// reference library ignores them.
pub fn parse(v: Version, value: &Value) -> Result<CNIResult, String> {
    let obj = value
        .as_object()
        .ok_or_else(|| format!("a result must be a JSON object, not {value}"))?;
    let dns: Option<Dns> = opt_field(obj, "dns", "result")?;
    match v.layout() {
        Layout::Ip4Ip6 => {
            let mut r = CNIResult {
                dns,
                ..Default::default()
            };
            for (key, want4) in [("ip4", true), ("ip6", false)] {
                let Some(o) = obj.get(key).filter(|o| !o.is_null()) else {
                    continue;
                };
                let o = o
                    .as_object()
                    .ok_or_else(|| format!("{key} must be an object, not {o}"))?;
                let ip = match o.get("ip") {
                    Some(Value::String(s)) => {
                        s.parse().map_err(|e| format!("{key}.ip {s:?}: {e}"))?
                    }
                    other => {
                        return Err(format!(
                            "{key}.ip must be an address in CIDR notation, not {}",
                            other.unwrap_or(&Value::Null)
                        ))
                    }
                };
                let gateway: Option<IpAddr> = opt_field(o, "gateway", key)?;
                let ipc = IpConfig {
                    interface: None,
                    address: ip,
                    gateway,
                };
                if is_v4(ipc.address.addr()) != want4 {
                    return Err(format!(
                        "{key}.ip {} is not an IPv{} address",
                        ipc.address,
                        if want4 { 4 } else { 6 }
                    ));
                }
                check_gateway_family(key, ipc.address.addr(), ipc.gateway)?;
                let routes: Vec<Route> = list(o, "routes").map_err(|e| format!("{key}.{e}"))?;
                r.ips.push(ipc);
                r.routes.extend(routes);
            }
            Ok(r)
        }
        Layout::Ips04 => {
            let interfaces: Vec<Interface> = list(obj, "interfaces")?;
            let raw_ips: Vec<Map<String, Value>> = list(obj, "ips")?;
            let mut ips = Vec::with_capacity(raw_ips.len());
            for (i, mut m) in raw_ips.into_iter().enumerate() {
                let ver = m.remove("version");
                let ip: IpConfig = field(&Value::Object(m), &format!("ips[{i}]"))?;
                let fam = family(ip.address.addr());
                // The spec requires `version`, but real results lack it:
                // Debian's loopback (containernetworking-plugins 1.1.1) at
                // 0.3.1 prints a 1.0.0-shaped result labelled 0.3.1, which
                // libcni hands on with `"version": ""` (seen in the lab).
                // The reference library ignores the field when reading, so
                // an absent or empty one is taken from the address; one
                // that contradicts the address is refused.
                match ver {
                    None | Some(Value::Null) => {}
                    Some(Value::String(f)) if f.is_empty() || f == fam => {}
                    Some(f) => {
                        return Err(format!(
                            "ips[{i}]: version {f} does not match address {} (IPv{fam})",
                            ip.address
                        ))
                    }
                }
                check_gateway_family(&format!("ips[{i}]"), ip.address.addr(), ip.gateway)?;
                ips.push(ip);
            }
            let routes: Vec<Route> = list(obj, "routes")?;
            Ok(CNIResult {
                interfaces,
                ips,
                routes,
                dns,
            })
        }
        Layout::V1_0 | Layout::V1_1 => {
            let r = CNIResult {
                interfaces: list(obj, "interfaces")?,
                ips: list(obj, "ips")?,
                routes: list(obj, "routes")?,
                dns,
            };
            for (i, ip) in r.ips.iter().enumerate() {
                check_gateway_family(&format!("ips[{i}]"), ip.address.addr(), ip.gateway)?;
            }
            Ok(r)
        }
    }
}

/// The version a result is written in: its own `cniVersion` when it has
/// one (the reference library reads a `prevResult` by it), else the
/// configuration's (the reference library's ParsePrevResult puts the
/// configuration's in when the result has none). `Err` names a version
/// this plugin cannot read.
pub fn result_version(value: &Value, conf: Version) -> Result<Version, String> {
    match value.get("cniVersion") {
        None | Some(Value::Null) => Ok(conf),
        Some(Value::String(s)) if s.is_empty() => Ok(conf),
        Some(Value::String(s)) => Version::parse(s).ok_or_else(|| {
            format!(
                "its cniVersion {s:?} is not one pollux-cni reads ({})",
                Version::all_strings().join(", ")
            )
        }),
        Some(other) => Err(format!("its cniVersion must be a string, not {other}")),
    }
}

/// Checks what a full (not delegated) result promises: every
/// `ips[].interface` is an index into its `interfaces` (spec 1.0.0
/// section 5, "Success": "the index into the `interfaces` list").
pub fn check_interface_indices(r: &CNIResult) -> Result<(), String> {
    for (i, ip) in r.ips.iter().enumerate() {
        if let Some(n) = ip.interface {
            if n as usize >= r.interfaces.len() {
                return Err(format!(
                    "ips[{i}].interface is {n}, but there are {} interfaces",
                    r.interfaces.len()
                ));
            }
        }
    }
    Ok(())
}

/// DNS of a chained result: what the previous plugins reported, plus what
/// this plugin's IPAM adds (nameservers, search domains and options not
/// yet listed, appended in order; the earlier `domain` stays).
pub fn merge_dns(prev: Option<Dns>, add: Option<Dns>) -> Option<Dns> {
    let (mut d, add) = match (prev, add) {
        (None, a) => return a,
        (p, None) => return p,
        (Some(p), Some(a)) => (p, a),
    };
    for n in add.nameservers {
        if !d.nameservers.contains(&n) {
            d.nameservers.push(n);
        }
    }
    if d.domain.as_deref().is_none_or(str::is_empty) {
        d.domain = add.domain;
    }
    for (mine, theirs) in [(&mut d.search, add.search), (&mut d.options, add.options)] {
        for x in theirs.into_iter().flatten() {
            let l = mine.get_or_insert_with(Vec::new);
            if !l.contains(&x) {
                l.push(x);
            }
        }
    }
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_exactly_and_gate_commands() {
        for v in Version::ALL {
            assert_eq!(Version::parse(v.as_str()), Some(v));
        }
        for bad in [
            "1.0",
            "1.2.0",
            "2.0.0",
            "0.5.0",
            "1.0.0-rc1",
            " 1.0.0",
            "v1.0.0",
        ] {
            assert_eq!(Version::parse(bad), None, "{bad}");
        }
        assert_eq!(Version::declared(None), Some(Version::V0_1_0));
        assert_eq!(Version::declared(Some("")), Some(Version::V0_1_0));
        assert!(!Version::V0_3_1.allows(Cmd::Check));
        assert!(Version::V0_4_0.allows(Cmd::Check));
        assert!(!Version::V1_0_0.allows(Cmd::Gc) && !Version::V1_0_0.allows(Cmd::Status));
        assert!(Version::V1_1_0.allows(Cmd::Gc) && Version::V1_1_0.allows(Cmd::Status));
        assert!(Version::ALL
            .iter()
            .all(|v| v.allows(Cmd::Add) && v.allows(Cmd::Del)));
    }

    fn sample() -> CNIResult {
        serde_json::from_value(json!({
            "interfaces": [
                {"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": "/run/netns/p"},
                {"name": "net1", "mac": "02:00:00:00:00:01", "mtu": 1400, "sandbox": "/run/netns/p",
                 "socketPath": "/run/x.sock", "pciID": "0000:00:10.0"}
            ],
            "ips": [
                {"interface": 0, "address": "127.0.0.1/8"},
                {"interface": 1, "address": "169.254.1.2/24", "gateway": "169.254.1.1"},
                {"interface": 1, "address": "fd00::2/64"}
            ],
            "routes": [
                {"dst": "169.254.9.0/24", "gw": "169.254.1.1", "mtu": 1300, "priority": 5},
                {"dst": "fd01::/64"}
            ],
            "dns": {"nameservers": ["169.254.1.53"], "search": ["pod.local"]}
        }))
        .unwrap()
    }

    #[test]
    fn each_layout_renders_its_own_fields() {
        let r = sample();
        let v04 = render(Version::V0_4_0, &r);
        assert_eq!(
            v04,
            json!({
                "cniVersion": "0.4.0",
                "interfaces": [
                    {"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": "/run/netns/p"},
                    {"name": "net1", "mac": "02:00:00:00:00:01", "sandbox": "/run/netns/p"}
                ],
                "ips": [
                    {"version": "4", "interface": 0, "address": "127.0.0.1/8"},
                    {"version": "4", "interface": 1, "address": "169.254.1.2/24", "gateway": "169.254.1.1"},
                    {"version": "6", "interface": 1, "address": "fd00::2/64"}
                ],
                "routes": [{"dst": "169.254.9.0/24", "gw": "169.254.1.1"}, {"dst": "fd01::/64"}],
                "dns": {"nameservers": ["169.254.1.53"], "search": ["pod.local"]}
            })
        );
        let mut v031 = v04.clone();
        v031["cniVersion"] = json!("0.3.1");
        assert_eq!(render(Version::V0_3_1, &r), v031);
        let v10 = render(Version::V1_0_0, &r);
        assert_eq!(v10["interfaces"], v04["interfaces"]);
        assert_eq!(v10["routes"], v04["routes"]);
        assert!(v10["ips"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i.get("version").is_none()));
        let v11 = render(Version::V1_1_0, &r);
        assert_eq!(v11["interfaces"][1]["pciID"], "0000:00:10.0");
        assert_eq!(v11["interfaces"][1]["mtu"], 1400);
        assert_eq!(v11["interfaces"][1]["socketPath"], "/run/x.sock");
        assert_eq!(v11["routes"][0]["mtu"], 1300);
        assert_eq!(v11["routes"][0]["priority"], 5);
        assert_eq!(
            render(Version::V0_2_0, &r),
            json!({
                "cniVersion": "0.2.0",
                "ip4": {"ip": "127.0.0.1/8",
                        "routes": [{"dst": "169.254.9.0/24", "gw": "169.254.1.1"}]},
                "ip6": {"ip": "fd00::2/64", "routes": [{"dst": "fd01::/64"}]},
                "dns": {"nameservers": ["169.254.1.53"], "search": ["pod.local"]}
            })
        );
        // An empty result: only the version (and 0.2.0's dns object).
        let empty = CNIResult::default();
        assert_eq!(
            render(Version::V1_0_0, &empty),
            json!({"cniVersion": "1.0.0"})
        );
        assert_eq!(
            render(Version::V0_1_0, &empty),
            json!({"cniVersion": "0.1.0", "dns": {}})
        );
    }

    #[test]
    fn every_layout_reads_back_what_it_writes() {
        let r = sample();
        for v in Version::ALL {
            let back = parse(v, &render(v, &r)).unwrap();
            let want = match v.layout() {
                Layout::V1_1 => r.clone(),
                // One address per family, no interfaces, basic routes.
                Layout::Ip4Ip6 => serde_json::from_value(json!({
                    "ips": [{"address": "127.0.0.1/8"}, {"address": "fd00::2/64"}],
                    "routes": [{"dst": "169.254.9.0/24", "gw": "169.254.1.1"}, {"dst": "fd01::/64"}],
                    "dns": {"nameservers": ["169.254.1.53"], "search": ["pod.local"]}
                }))
                .unwrap(),
                _ => {
                    // What 1.0.0 and earlier cannot carry is gone.
                    let mut w = r.clone();
                    for i in &mut w.interfaces {
                        (i.mtu, i.socket_path, i.pci_id) = (None, None, None);
                    }
                    for rt in &mut w.routes {
                        (rt.mtu, rt.priority) = (None, None);
                    }
                    w
                }
            };
            assert_eq!(back, want, "{v}");
        }
    }

    #[test]
    fn malformed_results_are_refused_with_the_reason() {
        let cases = [
            (
                Version::V0_4_0,
                json!({"ips": [{"version": 4, "address": "10.0.0.2/24"}]}),
                "does not match",
            ),
            (
                Version::V0_3_1,
                json!({"ips": [{"version": "6", "address": "10.0.0.2/24"}]}),
                "does not match",
            ),
            (
                Version::V0_3_0,
                json!({"ips": [{"version": "4", "address": "10.0.0.2"}]}),
                "ips[0]",
            ),
            (
                Version::V1_0_0,
                json!({"ips": [{"address": "10.0.0.2/24", "gateway": "fd00::1"}]}),
                "family",
            ),
            (
                Version::V1_1_0,
                json!({"interfaces": {"name": "x"}}),
                "list",
            ),
            (
                Version::V1_1_0,
                json!({"interfaces": [{"mac": "x"}]}),
                "name",
            ),
            (
                Version::V0_2_0,
                json!({"ip4": {"ip": "fd00::2/64"}}),
                "IPv4",
            ),
            (
                Version::V0_2_0,
                json!({"ip6": {"gateway": "fd00::1"}}),
                "ip6.ip",
            ),
            (Version::V0_1_0, json!({"ip4": "10.0.0.2/24"}), "object"),
            (Version::V1_0_0, json!([1]), "JSON object"),
            (Version::V1_0_0, json!({"dns": {"nameservers": "x"}}), "dns"),
        ];
        for (v, val, needle) in cases {
            let e = parse(v, &val).unwrap_err();
            assert!(e.contains(needle), "{v} {val}: {e}");
        }
        let bad_index: CNIResult = serde_json::from_value(
            json!({"interfaces": [{"name": "a"}], "ips": [{"interface": 1, "address": "10.0.0.2/24"}]}),
        )
        .unwrap();
        assert!(check_interface_indices(&bad_index)
            .unwrap_err()
            .contains("ips[0].interface is 1"));
    }

    #[test]
    fn an_empty_or_absent_ip_version_is_taken_from_the_address() {
        // Debian's loopback at 0.3.1, as libcni 1.1.2 handed it on in the
        // lab.
        let lo = json!({"cniVersion": "0.3.1",
            "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": "/var/run/netns/pod6"}],
            "ips": [{"version": "", "interface": 0, "address": "127.0.0.1/8"},
                    {"interface": 0, "address": "::1/128"}],
            "dns": {}});
        let r = parse(Version::V0_3_1, &lo).unwrap();
        assert_eq!(r.ips.len(), 2);
        let out = render(Version::V0_3_1, &r);
        assert_eq!(out["ips"][0]["version"], "4");
        assert_eq!(out["ips"][1]["version"], "6");
        assert_eq!(out["interfaces"], lo["interfaces"]);
    }

    #[test]
    fn result_version_prefers_the_results_own() {
        assert_eq!(
            result_version(&json!({"cniVersion": "0.3.1"}), Version::V1_0_0),
            Ok(Version::V0_3_1)
        );
        assert_eq!(
            result_version(&json!({}), Version::V0_4_0),
            Ok(Version::V0_4_0)
        );
        assert!(
            result_version(&json!({"cniVersion": "7.0.0"}), Version::V0_4_0)
                .unwrap_err()
                .contains("7.0.0")
        );
        assert!(result_version(&json!({"cniVersion": 1}), Version::V0_4_0).is_err());
    }

    #[test]
    fn dns_merge_appends_what_is_new() {
        let a = Dns {
            nameservers: vec!["1.1.1.1".into()],
            domain: Some("a".into()),
            search: None,
            options: Some(vec!["ndots:2".into()]),
        };
        let b = Dns {
            nameservers: vec!["1.1.1.1".into(), "8.8.8.8".into()],
            domain: Some("b".into()),
            search: Some(vec!["s".into()]),
            options: Some(vec!["ndots:2".into(), "rotate".into()]),
        };
        let m = merge_dns(Some(a.clone()), Some(b.clone())).unwrap();
        assert_eq!(m.nameservers, ["1.1.1.1", "8.8.8.8"]);
        assert_eq!(m.domain.as_deref(), Some("a"));
        assert_eq!(m.search, Some(vec!["s".to_owned()]));
        assert_eq!(
            m.options,
            Some(vec!["ndots:2".to_owned(), "rotate".to_owned()])
        );
        assert_eq!(merge_dns(None, Some(b.clone())), Some(b));
        assert_eq!(merge_dns(Some(a.clone()), None), Some(a));
    }
}
