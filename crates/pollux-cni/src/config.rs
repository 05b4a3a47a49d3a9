//! sriov-cni's network configuration, read as is, validated with the same
//! rules (k8snetworkplumbingwg/sriov-cni pkg/config/config.go LoadConf) and
//! clearer messages.
//!
//! Fields: `deviceID` (the VF's PCI address, required), `vlan` (0-4094),
//! `vlanQoS` (0-7, needs `vlan`; non-zero needs a non-zero `vlan`),
//! `vlanProto` (`802.1Q` or `802.1ad`, case-insensitive, needs `vlan`;
//! 802.1ad needs a non-zero `vlan`), `mac`, `spoofchk` and `trust` (`on` or
//! `off`), `link_state` (`auto`, `enable`, `disable`), `min_tx_rate` and
//! `max_tx_rate` (Mbit/s), `logLevel`, `logFile`, `ipam`, and
//! `runtimeConfig.mac` / `runtimeConfig.CNIDeviceInfoFile`. The MAC comes
//! from, in rising precedence, `mac`, `MAC` in CNI_ARGS, and
//! `runtimeConfig.mac` (sriov-cni's cmdAdd order).
//!
//! Pollux additions, all optional: `mtu` (netdevice mode), `cacheDir`
//! (default /var/lib/cni/pollux), `sysfsRoot` (default /sys, for tests),
//! `lockTimeoutMs` (default 10000).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use pollux_core::MacAddr;
use pollux_pci::PciAddr;
use pollux_sriov::netlink::{LinkState, Vlan, VlanProto};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Result};

/// Default cache directory (sriov-cni uses /var/lib/cni/sriov).
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/cni/pollux";

/// The validated plugin configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conf {
    pub name: String,
    pub cni_version: String,
    pub device_id: PciAddr,
    pub vlan: Option<Vlan>,
    pub mac: Option<MacAddr>,
    pub spoofchk: Option<bool>,
    pub trust: Option<bool>,
    pub link_state: Option<LinkState>,
    pub min_tx_rate: Option<u32>,
    pub max_tx_rate: Option<u32>,
    pub mtu: Option<u32>,
    pub device_info_file: Option<PathBuf>,
    pub log_level: LogLevel,
    pub log_file: Option<PathBuf>,
    pub cache_dir: PathBuf,
    pub sysfs_root: PathBuf,
    pub lock_timeout: Duration,
    /// The `ipam` object, passed to the IPAM plugin unchanged.
    pub ipam: Option<Value>,
}

/// sriov-cni's log levels (pkg/logging).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub enum LogLevel {
    Panic,
    Error,
    Warning,
    #[default]
    Info,
    Debug,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidConfig(msg.into())
}

fn get_str<'a>(m: &'a HashMap<String, Value>, key: &str) -> Result<Option<&'a str>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(other) => Err(invalid(format!("{key} must be a string, not {other}"))),
    }
}

fn get_int(m: &HashMap<String, Value>, key: &str) -> Result<Option<i64>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| invalid(format!("{key} must be an integer, not {n}"))),
        Some(other) => Err(invalid(format!("{key} must be an integer, not {other}"))),
    }
}

fn on_off(m: &HashMap<String, Value>, key: &str) -> Result<Option<bool>> {
    match get_str(m, key)? {
        None | Some("") => Ok(None),
        Some("on") => Ok(Some(true)),
        Some("off") => Ok(Some(false)),
        Some(v) => Err(invalid(format!(
            "{key} is {v:?}: must be \"on\" or \"off\""
        ))),
    }
}

fn rate(m: &HashMap<String, Value>, key: &str) -> Result<Option<u32>> {
    match get_int(m, key)? {
        None => Ok(None),
        Some(v) if (0..=u32::MAX as i64).contains(&v) => Ok(Some(v as u32)),
        Some(v) => Err(invalid(format!(
            "{key} {v} invalid: must be 0 or more Mbit/s"
        ))),
    }
}

/// Parses `CNI_ARGS` (`K=V;K=V`) and returns the `MAC` value if any.
/// Unknown keys are ignored, as `IgnoreUnknown` is the usual practice.
pub fn mac_from_cni_args(args: Option<&str>) -> Result<Option<MacAddr>> {
    let Some(args) = args else { return Ok(None) };
    let mut mac = None;
    for pair in args.split(';').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| Error::InvalidEnv(format!("CNI_ARGS: {pair:?} is not KEY=VALUE")))?;
        if k == "MAC" {
            mac = Some(
                v.parse::<MacAddr>()
                    .map_err(|e| Error::InvalidEnv(format!("CNI_ARGS MAC: {e}")))?,
            );
        }
    }
    Ok(mac)
}

fn check_mac(m: MacAddr, from: &str) -> Result<MacAddr> {
    if m.is_zero() || m.is_multicast() {
        return Err(invalid(format!("{from} {m} is not a unicast address")));
    }
    Ok(m)
}

impl Conf {
    /// Validates a configuration.
    ///
    /// `custom` are the plugin-specific keys of the stdin document (everything
    /// the spec does not define), `runtime` the keys of `runtimeConfig`,
    /// `cni_args` the CNI_ARGS variable.
    pub fn parse(
        name: &str,
        cni_version: &str,
        custom: &HashMap<String, Value>,
        runtime: Option<&HashMap<String, Value>>,
        ipam: Option<Value>,
        cni_args: Option<&str>,
    ) -> Result<Self> {
        let device_id = match get_str(custom, "deviceID")? {
            None | Some("") => {
                return Err(invalid(
                    "deviceID (the VF's PCI address) is required; the SR-IOV device plugin \
                     normally supplies it through the runtime",
                ))
            }
            Some(s) => s
                .parse::<PciAddr>()
                .map_err(|e| invalid(format!("deviceID: {e}")))?,
        };

        // VLAN rules, in sriov-cni's order.
        let vlan_id = get_int(custom, "vlan")?;
        let qos = get_int(custom, "vlanQoS")?;
        let proto = get_str(custom, "vlanProto")?;
        let vlan = match vlan_id {
            None => {
                if qos.is_some() {
                    return Err(invalid(
                        "vlanQoS is set but vlan is not: a VLAN QoS needs a VLAN id",
                    ));
                }
                if proto.is_some() {
                    return Err(invalid(
                        "vlanProto is set but vlan is not: a VLAN protocol needs a VLAN id",
                    ));
                }
                None
            }
            Some(id) => {
                if !(0..=4094).contains(&id) {
                    return Err(invalid(format!(
                        "vlan {id} invalid: must be in the range 0-4094"
                    )));
                }
                let qos = qos.unwrap_or(0);
                if !(0..=7).contains(&qos) {
                    return Err(invalid(format!(
                        "vlanQoS {qos} invalid: must be in the range 0-7"
                    )));
                }
                if qos != 0 && id == 0 {
                    return Err(invalid(
                        "vlanQoS is non-zero but vlan is 0: a VLAN QoS needs a non-zero VLAN id",
                    ));
                }
                let proto = match proto {
                    None => VlanProto::Dot1Q,
                    Some(p) => p.parse::<VlanProto>().map_err(|_| {
                        invalid(format!(
                            "vlanProto {p:?} invalid: must be \"802.1Q\" or \"802.1ad\""
                        ))
                    })?,
                };
                if proto == VlanProto::Dot1Ad && id == 0 {
                    return Err(invalid("vlanProto 802.1ad needs a non-zero vlan"));
                }
                Some(Vlan {
                    id: id as u16,
                    qos: qos as u8,
                    proto,
                })
            }
        };

        let link_state = match get_str(custom, "link_state")? {
            None | Some("") => None,
            Some(s) => Some(s.parse::<LinkState>().map_err(|_| {
                invalid(format!(
                    "link_state {s:?} invalid: must be auto, enable or disable"
                ))
            })?),
        };

        let min_tx_rate = rate(custom, "min_tx_rate")?;
        let max_tx_rate = rate(custom, "max_tx_rate")?;
        if let (Some(min), Some(max)) = (min_tx_rate, max_tx_rate) {
            if max != 0 && min > max {
                return Err(invalid(format!(
                    "min_tx_rate {min} is above max_tx_rate {max}"
                )));
            }
        }

        // MAC: conf < CNI_ARGS < runtimeConfig.
        let mut mac = None;
        for key in ["mac", "MAC"] {
            if let Some(s) = get_str(custom, key)?.filter(|s| !s.is_empty()) {
                mac = Some(check_mac(
                    s.parse::<MacAddr>()
                        .map_err(|e| invalid(format!("{key}: {e}")))?,
                    key,
                )?);
            }
        }
        if let Some(m) = mac_from_cni_args(cni_args)? {
            mac = Some(check_mac(m, "CNI_ARGS MAC").map_err(|e| Error::InvalidEnv(e.to_string()))?);
        }
        let mut device_info_file = None;
        if let Some(rt) = runtime {
            if let Some(s) = get_str(rt, "mac")?.filter(|s| !s.is_empty()) {
                mac = Some(check_mac(
                    s.parse::<MacAddr>()
                        .map_err(|e| invalid(format!("runtimeConfig.mac: {e}")))?,
                    "runtimeConfig.mac",
                )?);
            }
            if let Some(p) = get_str(rt, "CNIDeviceInfoFile")?.filter(|s| !s.is_empty()) {
                let p = PathBuf::from(p);
                if !p.is_absolute() {
                    return Err(invalid(
                        "runtimeConfig.CNIDeviceInfoFile must be an absolute path",
                    ));
                }
                device_info_file = Some(p);
            }
        }

        let spoofchk = on_off(custom, "spoofchk")?;
        let trust = on_off(custom, "trust")?;

        let mtu = match get_int(custom, "mtu")? {
            None => None,
            Some(m) if (68..=65535).contains(&m) => Some(m as u32),
            Some(m) => return Err(invalid(format!("mtu {m} invalid: must be 68-65535"))),
        };

        let log_level = match get_str(custom, "logLevel")? {
            None | Some("") => LogLevel::Info,
            Some("panic") => LogLevel::Panic,
            Some("error") => LogLevel::Error,
            Some("warning") => LogLevel::Warning,
            Some("info") => LogLevel::Info,
            Some("debug") => LogLevel::Debug,
            Some(l) => {
                return Err(invalid(format!(
                    "logLevel {l:?} invalid: must be panic, error, warning, info or debug"
                )))
            }
        };
        let log_file = get_str(custom, "logFile")?
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        if let Some(f) = &log_file {
            if !f.is_absolute() {
                return Err(invalid("logFile must be an absolute path"));
            }
        }
        let abs_dir = |key: &str, default: &str| -> Result<PathBuf> {
            let p = PathBuf::from(
                get_str(custom, key)?
                    .filter(|s| !s.is_empty())
                    .unwrap_or(default),
            );
            if !p.is_absolute() {
                return Err(invalid(format!("{key} must be an absolute path")));
            }
            Ok(p)
        };
        let cache_dir = abs_dir("cacheDir", DEFAULT_CACHE_DIR)?;
        let sysfs_root = abs_dir("sysfsRoot", "/sys")?;
        let lock_timeout = match get_int(custom, "lockTimeoutMs")? {
            None => Duration::from_secs(10),
            Some(ms) if (1..=600_000).contains(&ms) => Duration::from_millis(ms as u64),
            Some(ms) => {
                return Err(invalid(format!(
                    "lockTimeoutMs {ms} invalid: must be 1-600000"
                )))
            }
        };

        if let Some(ipam) = &ipam {
            match ipam.get("type") {
                Some(Value::String(t)) if is_plugin_name(t) => {}
                Some(Value::String(t)) if t.is_empty() => {}
                _ => return Err(invalid("ipam.type must name a plugin binary (no '/')")),
            }
        }
        let ipam = ipam.filter(|i| {
            i.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| !t.is_empty())
        });

        Ok(Conf {
            name: name.to_owned(),
            cni_version: cni_version.to_owned(),
            device_id,
            vlan,
            mac,
            spoofchk,
            trust,
            link_state,
            min_tx_rate,
            max_tx_rate,
            mtu,
            device_info_file,
            log_level,
            log_file,
            cache_dir,
            sysfs_root,
            lock_timeout,
            ipam,
        })
    }
}

/// A plugin binary name: non-empty, no path separator, not `.`/`..`.
pub fn is_plugin_name(s: &str) -> bool {
    !s.is_empty() && !s.contains('/') && s != "." && s != ".." && !s.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Conf> {
        parse_with(v, None, None)
    }

    fn parse_with(v: Value, rt: Option<Value>, args: Option<&str>) -> Result<Conf> {
        let m: HashMap<String, Value> = serde_json::from_value(v).unwrap();
        let rt: Option<HashMap<String, Value>> = rt.map(|r| serde_json::from_value(r).unwrap());
        Conf::parse("net1", "1.0.0", &m, rt.as_ref(), None, args)
    }

    #[test]
    fn full_sriov_cni_config() {
        let c = parse(json!({
            "deviceID": "0000:00:10.0", "vlan": 100, "vlanQoS": 3, "vlanProto": "802.1Q",
            "mac": "02:00:00:00:00:01", "spoofchk": "off", "trust": "on", "link_state": "enable",
            "min_tx_rate": 0, "max_tx_rate": 100, "logLevel": "debug", "logFile": "/tmp/x.log"
        }))
        .unwrap();
        assert_eq!(c.device_id.to_string(), "0000:00:10.0");
        assert_eq!(
            c.vlan,
            Some(Vlan {
                id: 100,
                qos: 3,
                proto: VlanProto::Dot1Q
            })
        );
        assert_eq!(c.mac.unwrap().to_string(), "02:00:00:00:00:01");
        assert_eq!((c.spoofchk, c.trust), (Some(false), Some(true)));
        assert_eq!(c.link_state, Some(LinkState::Enable));
        assert_eq!((c.min_tx_rate, c.max_tx_rate), (Some(0), Some(100)));
        assert_eq!(c.log_level, LogLevel::Debug);
        assert_eq!(c.cache_dir, PathBuf::from(DEFAULT_CACHE_DIR));
    }

    #[test]
    fn vlan_rules_match_sriov_cni() {
        let dev = |extra: Value| {
            let mut v = json!({"deviceID": "0000:00:10.0"});
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            parse(v)
        };
        let cases = [
            (json!({"vlan": -1}), "range 0-4094"),
            (json!({"vlan": 4095}), "range 0-4094"),
            (json!({"vlan": 10, "vlanQoS": 8}), "range 0-7"),
            (json!({"vlan": 10, "vlanQoS": -1}), "range 0-7"),
            (json!({"vlan": 0, "vlanQoS": 1}), "non-zero VLAN id"),
            (json!({"vlanQoS": 1}), "needs a VLAN id"),
            (json!({"vlanProto": "802.1Q"}), "needs a VLAN id"),
            (
                json!({"vlan": 0, "vlanProto": "802.1ad"}),
                "802.1ad needs a non-zero vlan",
            ),
            (
                json!({"vlan": 5, "vlanProto": "qinq"}),
                "must be \"802.1Q\" or \"802.1ad\"",
            ),
            (json!({"vlan": "5"}), "must be an integer"),
            (json!({"vlan": 1.5}), "must be an integer"),
            (json!({"link_state": "up"}), "auto, enable or disable"),
            (json!({"spoofchk": "yes"}), "\"on\" or \"off\""),
            (json!({"trust": true}), "must be a string"),
            (json!({"max_tx_rate": -5}), "0 or more"),
            (
                json!({"min_tx_rate": 200, "max_tx_rate": 100}),
                "above max_tx_rate",
            ),
            (json!({"mac": "02:00:00:00:00"}), "invalid MAC"),
            (json!({"mac": "01:00:5e:00:00:01"}), "not a unicast"),
            (json!({"mtu": 10}), "68-65535"),
            (json!({"logLevel": "verbose"}), "logLevel"),
            (json!({"cacheDir": "relative"}), "absolute"),
            (json!({"lockTimeoutMs": 0}), "lockTimeoutMs"),
        ];
        for (extra, want) in cases {
            let e = dev(extra.clone()).unwrap_err();
            assert_eq!(e.code(), 7, "{extra}: {e}");
            assert!(e.to_string().contains(want), "{extra}: {e}");
        }
        let ok = dev(json!({"vlan": 0})).unwrap();
        assert_eq!(ok.vlan, Some(Vlan::default()));
        let ok = dev(json!({"vlan": 4094, "vlanQoS": 7, "vlanProto": "802.1AD"})).unwrap();
        assert_eq!(ok.vlan.unwrap().proto, VlanProto::Dot1Ad);
    }

    #[test]
    fn device_id_required_and_checked() {
        let e = parse(json!({})).unwrap_err();
        assert!(e.to_string().contains("deviceID"), "{e}");
        let e = parse(json!({"deviceID": "0000:00:10"})).unwrap_err();
        assert!(
            e.to_string().contains("deviceID: invalid PCI address"),
            "{e}"
        );
        assert_eq!(e.code(), 7);
    }

    #[test]
    fn mac_precedence_conf_args_runtime() {
        let base = json!({"deviceID": "0000:00:10.0", "mac": "02:00:00:00:00:01"});
        assert_eq!(
            parse(base.clone()).unwrap().mac.unwrap().to_string(),
            "02:00:00:00:00:01"
        );
        let c = parse_with(
            base.clone(),
            None,
            Some("IgnoreUnknown=1;MAC=02:00:00:00:00:02;K8S_POD_NAME=x"),
        )
        .unwrap();
        assert_eq!(c.mac.unwrap().to_string(), "02:00:00:00:00:02");
        let c = parse_with(
            base.clone(),
            Some(json!({"mac": "02:00:00:00:00:03"})),
            Some("MAC=02:00:00:00:00:02"),
        )
        .unwrap();
        assert_eq!(c.mac.unwrap().to_string(), "02:00:00:00:00:03");
        let e = parse_with(base.clone(), None, Some("MAC")).unwrap_err();
        assert_eq!(e.code(), 4, "{e}");
        let e = parse_with(base.clone(), None, Some("MAC=zz")).unwrap_err();
        assert_eq!(e.code(), 4, "{e}");
        let c = parse_with(
            base,
            Some(json!({"CNIDeviceInfoFile": "/run/x.json"})),
            None,
        )
        .unwrap();
        assert_eq!(c.device_info_file, Some(PathBuf::from("/run/x.json")));
    }
}
