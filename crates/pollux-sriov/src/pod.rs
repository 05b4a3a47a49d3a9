//! How a pod's data plane finds its VFs.
//!
//! The SR-IOV network device plugin hands a container its devices in
//! environment variables named `PCIDEVICE_<RESOURCE>`, the resource name
//! upper-cased with `.`, `/` and `-` turned into `_`
//! (`intel.com/sriov_dpdk` gives `PCIDEVICE_INTEL_COM_SRIOV_DPDK`), holding
//! comma-separated PCI addresses. Newer versions add
//! `PCIDEVICE_<RESOURCE>_INFO` with a JSON object; those are not address
//! lists and are skipped here.
//!
//! Device-info files follow the Network Plumbing WG device-info-spec
//! (version 1.1.0): `{"type": "pci", "version": "1.1.0", "pci":
//! {"pci-address": ..., "pf-pci-address": ..., ...}}`.

use std::path::Path;

use pollux_pci::PciAddr;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The device-info-spec version this crate writes.
pub const DEVICE_INFO_VERSION: &str = "1.1.0";

/// Prefix of the device plugin's variables.
pub const PCIDEVICE_PREFIX: &str = "PCIDEVICE_";

/// The variable name the device plugin uses for `resource`.
pub fn env_var_name(resource: &str) -> String {
    let mut s = String::from(PCIDEVICE_PREFIX);
    s.extend(resource.chars().map(|c| match c {
        '.' | '/' | '-' => '_',
        c => c.to_ascii_uppercase(),
    }));
    s
}

fn pod_err(what: impl Into<String>, detail: impl Into<String>) -> Error {
    Error::Pod {
        what: what.into(),
        detail: detail.into(),
    }
}

/// Parses one `PCIDEVICE_*` value: comma-separated PCI addresses, blanks
/// around commas allowed, empty entries refused.
pub fn parse_pci_list(var: &str, value: &str) -> Result<Vec<PciAddr>> {
    if value.trim().is_empty() {
        return Err(pod_err(var, "holds no PCI address"));
    }
    value
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<PciAddr>()
                .map_err(|e| pod_err(var, e.to_string()))
        })
        .collect()
}

/// The VFs given to this pod by the device plugin.
///
/// With `resource` (e.g. `intel.com/sriov_dpdk`) only that resource's
/// variable is read and must exist; without, every `PCIDEVICE_*` variable
/// (except `*_INFO`) is read, in name order. Duplicates are dropped keeping
/// the first. Call with `std::env::vars()`.
pub fn vfs_from_env<I, K, V>(vars: I, resource: Option<&str>) -> Result<Vec<PciAddr>>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut found: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(k, _)| {
            let k = k.as_ref();
            k.starts_with(PCIDEVICE_PREFIX) && !k.ends_with("_INFO")
        })
        .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
        .collect();
    found.sort();
    if let Some(r) = resource {
        let name = env_var_name(r);
        found.retain(|(k, _)| *k == name);
        if found.is_empty() {
            return Err(pod_err(
                name,
                format!("not set: the pod was given no {r} device"),
            ));
        }
    } else if found.is_empty() {
        return Err(pod_err(
            "PCIDEVICE_*",
            "no device plugin variable is set: the pod was given no PCI device",
        ));
    }
    let mut out: Vec<PciAddr> = Vec::new();
    for (k, v) in &found {
        for a in parse_pci_list(k, v)? {
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    Ok(out)
}

/// The `pci` object of a device-info file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciDeviceInfo {
    #[serde(rename = "pci-address")]
    pub pci_address: String,
    #[serde(rename = "vhost-net", default, skip_serializing_if = "Option::is_none")]
    pub vhost_net: Option<String>,
    #[serde(
        rename = "rdma-device",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub rdma_device: Option<String>,
    #[serde(
        rename = "pf-pci-address",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub pf_pci_address: Option<String>,
    #[serde(
        rename = "representor-device",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub representor_device: Option<String>,
}

/// A device-info file (device-info-spec 1.x), type `pci` only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    #[serde(rename = "type")]
    pub kind: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci: Option<PciDeviceInfo>,
}

impl DeviceInfo {
    /// A version-1.1.0 `pci` device-info.
    pub fn pci(addr: PciAddr, pf: Option<PciAddr>) -> Self {
        Self {
            kind: "pci".into(),
            version: DEVICE_INFO_VERSION.into(),
            pci: Some(PciDeviceInfo {
                pci_address: addr.to_string(),
                pf_pci_address: pf.map(|p| p.to_string()),
                ..Default::default()
            }),
        }
    }

    /// Parses and checks a device-info document: type `pci`, a 1.x
    /// version, a valid `pci-address`.
    pub fn parse(what: &str, text: &str) -> Result<(Self, PciAddr)> {
        let di: DeviceInfo =
            serde_json::from_str(text).map_err(|e| pod_err(what, e.to_string()))?;
        if di.kind != "pci" {
            return Err(pod_err(
                what,
                format!("device type {:?} is not \"pci\"", di.kind),
            ));
        }
        if !di.version.starts_with("1.") {
            return Err(pod_err(
                what,
                format!("device-info version {:?} is not 1.x", di.version),
            ));
        }
        let addr = di
            .pci
            .as_ref()
            .ok_or_else(|| pod_err(what, "no \"pci\" object"))?
            .pci_address
            .parse::<PciAddr>()
            .map_err(|e| pod_err(what, e.to_string()))?;
        Ok((di, addr))
    }
}

/// Reads a device-info file and returns its PCI address.
pub fn read_device_info(path: &Path) -> Result<(DeviceInfo, PciAddr)> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        op: "reading device-info file",
        path: path.to_owned(),
        source,
    })?;
    DeviceInfo::parse(&path.display().to_string(), &text)
}

/// Writes a device-info file atomically (a temporary file beside it, then a
/// rename), creating its directory. The one writer of the format
/// [`read_device_info`] reads: pollux-cni writes the CNI's files with it and
/// pollux-device-plugin the device plugin's, so a reader never sees half a
/// file and both always agree on the layout.
pub fn write_device_info(path: &Path, di: &DeviceInfo) -> Result<()> {
    let io = |op, source| Error::Io {
        op,
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("creating the directory of", e))?;
    }
    let bytes = serde_json::to_vec(di).map_err(|e| io("encoding", std::io::Error::other(e)))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(|e| io("writing device-info file", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("renaming device-info file", e))
}

/// The PCI addresses of several device-info files, in the order given.
pub fn vfs_from_device_info_files<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<PciAddr>> {
    paths
        .iter()
        .map(|p| read_device_info(p.as_ref()).map(|(_, a)| a))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn resource_names_map_like_the_device_plugin() {
        assert_eq!(
            env_var_name("intel.com/sriov_dpdk"),
            "PCIDEVICE_INTEL_COM_SRIOV_DPDK"
        );
        assert_eq!(
            env_var_name("openshift.io/igb-vf"),
            "PCIDEVICE_OPENSHIFT_IO_IGB_VF"
        );
    }

    #[test]
    fn reads_addresses_from_env() {
        let e = env(&[
            ("PATH", "/bin"),
            (
                "PCIDEVICE_INTEL_COM_SRIOV_DPDK",
                "0000:00:10.0, 0000:00:10.2",
            ),
            (
                "PCIDEVICE_INTEL_COM_SRIOV_DPDK_INFO",
                "{\"0000:00:10.0\":{}}",
            ),
            ("PCIDEVICE_A_B", "00:11.0,0000:00:10.0"),
        ]);
        let all = vfs_from_env(e.clone(), None).unwrap();
        let s: Vec<String> = all.iter().map(|a| a.to_string()).collect();
        assert_eq!(s, ["0000:00:11.0", "0000:00:10.0", "0000:00:10.2"]);
        let one = vfs_from_env(e.clone(), Some("intel.com/sriov_dpdk")).unwrap();
        assert_eq!(one.len(), 2);
        let err = vfs_from_env(e, Some("intel.com/other")).unwrap_err();
        assert!(
            err.to_string().contains("PCIDEVICE_INTEL_COM_OTHER"),
            "{err}"
        );
    }

    #[test]
    fn bad_env_values_are_clear_errors() {
        for (v, want) in [
            ("", "no PCI address"),
            ("0000:00:10.0,", "empty"),
            ("0000:00:10.9", "function is above 7"),
            ("eth0", "no '.'"),
        ] {
            let e = vfs_from_env(env(&[("PCIDEVICE_X", v)]), None)
                .unwrap_err()
                .to_string();
            assert!(e.contains("PCIDEVICE_X") && e.contains(want), "{v:?}: {e}");
        }
        let e = vfs_from_env(env(&[("HOME", "/")]), None).unwrap_err();
        assert!(e.to_string().contains("no device plugin variable"), "{e}");
    }

    #[test]
    fn device_info_round_trip_and_checks() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("d.json");
        let di = DeviceInfo::pci(
            "0000:00:10.0".parse().unwrap(),
            Some("0000:00:02.0".parse().unwrap()),
        );
        write_device_info(&p, &di).unwrap();
        assert!(!t.path().join("d.json.tmp").exists());
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "pci", "version": "1.1.0",
                "pci": {"pci-address": "0000:00:10.0", "pf-pci-address": "0000:00:02.0"}})
        );
        let (back, addr) = read_device_info(&p).unwrap();
        assert_eq!(back, di);
        assert_eq!(addr.to_string(), "0000:00:10.0");
        // A file as the device plugin writes it (version 1.0.0, vhost-net).
        let dp = t.path().join("dp.json");
        std::fs::write(&dp, r#"{"type":"pci","version":"1.0.0","pci":{"pci-address":"0000:03:02.1","vhost-net":"/dev/vhost-net"}}"#).unwrap();
        assert_eq!(vfs_from_device_info_files(&[&p, &dp]).unwrap().len(), 2);
        for (text, want) in [
            ("{", "EOF"),
            (r#"{"type":"vdpa","version":"1.1.0"}"#, "not \"pci\""),
            (
                r#"{"type":"pci","version":"2.0.0","pci":{"pci-address":"0000:00:10.0"}}"#,
                "not 1.x",
            ),
            (r#"{"type":"pci","version":"1.1.0"}"#, "no \"pci\""),
            (
                r#"{"type":"pci","version":"1.1.0","pci":{"pci-address":"x"}}"#,
                "invalid PCI address",
            ),
        ] {
            let e = DeviceInfo::parse("f", text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
        assert!(read_device_info(&t.path().join("none")).is_err());
    }
}
