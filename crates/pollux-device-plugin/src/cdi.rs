//! The CDI (Container Device Interface) spec of each resource.
//!
//! One file per resource in the CDI directory (`/var/run/cdi` by default),
//! `pollux-dp-<prefix>_<name>.json`, kind `<prefix>/<name>`, one device per
//! vfio-pci function named by its PCI address, with the device nodes
//! `/dev/vfio/vfio` and `/dev/vfio/<group>`. A container asks for
//! `<prefix>/<name>=<address>`.
//!
//! `cdiVersion` is 0.5.0, the newest the CDI library in Debian 12's podman
//! 4.3 accepts (container-device-interface v0.5.x, `validSpecVersions`);
//! nothing here needs a later one. The names follow that library's rules
//! (`pkg/cdi/qualified-device.go`): the vendor may hold letters, digits,
//! `_`, `-` and `.`, the class letters, digits, `_` and `-`, both starting
//! with a letter and ending with a letter or digit; a device name may also
//! hold `:` (since CDI 0.5.0), so a PCI address is a device name as it is.
//!
//! The `PCIDEVICE_*` variable is not in the spec: CDI applies each device's
//! environment in turn, so with two devices one `PCIDEVICE_*` would
//! overwrite the other and the container would see one address. It comes
//! from the Allocate response, which holds them all.
//!
//! A spec is written to a temporary file beside it (ending `.tmp`, which
//! CDI does not load) and renamed over the old one, so a runtime never reads
//! half a spec.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::allocate::VFIO_CONTAINER;
use crate::config::Resource;
use crate::devices::{DeviceState, Host, VFIO_PCI};
use crate::{Error, Result};

/// The CDI spec version written.
pub const CDI_VERSION: &str = "0.5.0";

/// The default CDI spec directory (the one for generated specs).
pub const DEFAULT_CDI_DIR: &str = "/var/run/cdi";

/// Every spec file of this plugin starts so.
pub const FILE_PREFIX: &str = "pollux-dp-";

/// A CDI spec, the subset this plugin writes (CDI SPEC.md, "Specification").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    #[serde(rename = "cdiVersion")]
    pub cdi_version: String,
    pub kind: String,
    pub devices: Vec<Device>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub name: String,
    #[serde(rename = "containerEdits")]
    pub container_edits: ContainerEdits,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerEdits {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(rename = "deviceNodes", default, skip_serializing_if = "Vec::is_empty")]
    pub device_nodes: Vec<DeviceNode>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceNode {
    /// Path in the container.
    pub path: String,
    /// Path on the host (CDI 0.5.0).
    #[serde(rename = "hostPath", default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<String>,
}

/// `<prefix>/<name>`.
pub fn kind(res: &Resource) -> String {
    res.full_name()
}

/// `<prefix>/<name>=<id>`.
pub fn qualified_name(res: &Resource, id: &str) -> String {
    format!("{}={id}", kind(res))
}

/// The spec file of a resource.
pub fn file_name(res: &Resource) -> String {
    format!("{FILE_PREFIX}{}_{}.json", res.prefix, res.name)
}

/// Refuses a resource whose prefix or name CDI 0.5 cannot take as vendor and
/// class.
pub fn check_names(res: &Resource) -> Result<(), String> {
    let check = |what: &str, s: &str, extra: &[u8]| -> Result<(), String> {
        let b = s.as_bytes();
        let ok = b.first().is_some_and(u8::is_ascii_alphabetic)
            && b.last().is_some_and(u8::is_ascii_alphanumeric)
            && b.iter().all(|c| {
                c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-' || extra.contains(c)
            });
        if ok {
            Ok(())
        } else {
            Err(format!(
                "resource {}: {what} {s:?} cannot be a CDI {what} (it must start with a letter, end with a letter or digit, and hold only letters, digits, '_', '-'{})",
                res.full_name(),
                if extra.is_empty() { "" } else { " and '.'" }
            ))
        }
    };
    check("vendor", &res.prefix, b".")?;
    check("class", &res.name, b"")
}

/// The spec for a resource's devices: every device bound to vfio-pci with
/// an IOMMU group.
pub fn spec(res: &Resource, devices: &[DeviceState], host: &Host) -> Spec {
    let node = |host_path: PathBuf, path: String| DeviceNode {
        path,
        host_path: Some(host_path.to_string_lossy().into_owned()),
        permissions: Some("rw".into()),
    };
    Spec {
        cdi_version: CDI_VERSION.into(),
        kind: kind(res),
        devices: devices
            .iter()
            .filter(|d| d.function.driver.as_deref() == Some(VFIO_PCI))
            .filter_map(|d| {
                let g = d.function.iommu_group?;
                Some(Device {
                    name: d.id(),
                    container_edits: ContainerEdits {
                        env: Vec::new(),
                        device_nodes: vec![
                            node(host.vfio_container(), VFIO_CONTAINER.into()),
                            node(host.vfio_group(g), format!("/dev/vfio/{g}")),
                        ],
                    },
                })
            })
            .collect(),
    }
}

/// Writes (atomically) or, when it has no device, removes a resource's
/// spec file.
pub fn write(dir: &Path, res: &Resource, spec: &Spec) -> Result<()> {
    let path = dir.join(file_name(res));
    let io = |op, path: &Path, source| Error::Io {
        op,
        path: path.to_owned(),
        source,
    };
    if spec.devices.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io("removing CDI spec", &path, e))
            }
            _ => Ok(()),
        };
    }
    std::fs::create_dir_all(dir).map_err(|e| io("creating CDI directory", dir, e))?;
    let mut bytes = serde_json::to_vec_pretty(spec)
        .map_err(|e| io("encoding CDI spec", &path, std::io::Error::other(e)))?;
    bytes.push(b'\n');
    let tmp = dir.join(format!(".{}.tmp", file_name(res)));
    std::fs::write(&tmp, bytes).map_err(|e| io("writing CDI spec", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io("renaming CDI spec", &path, e))
}

/// Removes this plugin's spec files that belong to none of `resources` (a
/// resource dropped from the configuration since the last run).
pub fn remove_stale(dir: &Path, resources: &[Resource]) -> Result<()> {
    let keep: Vec<String> = resources.iter().map(file_name).collect();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::Io {
                op: "listing CDI directory",
                path: dir.to_owned(),
                source,
            })
        }
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(FILE_PREFIX) && name.ends_with(".json") && !keep.contains(&name) {
            tracing::info!("removing stale CDI spec {}", e.path().display());
            std::fs::remove_file(e.path()).map_err(|source| Error::Io {
                op: "removing stale CDI spec",
                path: e.path(),
                source,
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, DEFAULT_RESOURCE_PREFIX};
    use crate::devices::{Function, Link};

    fn res(prefix: &str, name: &str) -> Resource {
        Config::parse(
            &format!(r#"{{"resourceList":[{{"resourceName":"{name}","resourcePrefix":"{prefix}","selectors":{{}}}}]}}"#),
            DEFAULT_RESOURCE_PREFIX,
        )
        .unwrap()
        .resources
        .remove(0)
    }

    #[test]
    fn names_follow_cdi_rules() {
        assert!(check_names(&res("pollux.example", "igb_vf-dpdk")).is_ok());
        let e = check_names(&res("1und1.de", "vf")).unwrap_err();
        assert!(e.contains("vendor \"1und1.de\""), "{e}");
        let e = check_names(&res("intel.com", "10g")).unwrap_err();
        assert!(e.contains("class \"10g\""), "{e}");
        let r = res("pollux.example", "vf");
        assert_eq!(
            qualified_name(&r, "0000:01:10.0"),
            "pollux.example/vf=0000:01:10.0"
        );
        assert_eq!(file_name(&r), "pollux-dp-pollux.example_vf.json");
    }

    #[test]
    fn spec_lists_vfio_devices_and_is_written_atomically() {
        let t = tempfile::tempdir().unwrap();
        let host = Host::new("/sys", "/dev");
        let r = res("pollux.example", "vf");
        let f = |a: &str, driver: &str, g| DeviceState {
            function: Function {
                addr: a.parse().unwrap(),
                vendor: 0x8086,
                device: 0x10ca,
                driver: Some(driver.into()),
                iommu_group: g,
                vfio_node: true,
                numa_node: None,
                pf: None,
                vf_index: None,
                pf_netdev: None,
                link_type: None,
                pf_link: Link::Unknown,
            },
            selector: 0,
            health: Ok(()),
        };
        let devs = [
            f("0000:01:10.0", "vfio-pci", Some(12)),
            f("0000:01:10.2", "igbvf", Some(13)),
            f("0000:01:10.4", "vfio-pci", None),
        ];
        let s = spec(&r, &devs, &host);
        write(t.path(), &r, &s).unwrap();
        let text = std::fs::read_to_string(t.path().join(file_name(&r))).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"cdiVersion": "0.5.0", "kind": "pollux.example/vf", "devices": [
                {"name": "0000:01:10.0", "containerEdits": {"deviceNodes": [
                    {"path": "/dev/vfio/vfio", "hostPath": "/dev/vfio/vfio", "permissions": "rw"},
                    {"path": "/dev/vfio/12", "hostPath": "/dev/vfio/12", "permissions": "rw"}]}}]})
        );
        let names: Vec<_> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [file_name(&r)], "no temporary file is left");
        // No device left: the file goes.
        write(t.path(), &r, &spec(&r, &devs[1..], &host)).unwrap();
        assert!(!t.path().join(file_name(&r)).exists());
        // Stale files of this plugin go, other files stay.
        std::fs::write(t.path().join("pollux-dp-old_x.json"), "{}").unwrap();
        std::fs::write(t.path().join("vendor.json"), "{}").unwrap();
        write(t.path(), &r, &s).unwrap();
        remove_stale(t.path(), std::slice::from_ref(&r)).unwrap();
        assert!(!t.path().join("pollux-dp-old_x.json").exists());
        assert!(t.path().join("vendor.json").exists());
        assert!(t.path().join(file_name(&r)).exists());
        remove_stale(&t.path().join("none"), &[]).unwrap();
    }
}
