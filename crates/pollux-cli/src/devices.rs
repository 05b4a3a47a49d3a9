//! `pollux devices`: network PCI functions grouped by driver kind, like
//! `dpdk-devbind.py --status`, with the SR-IOV relation, IOMMU group, NUMA
//! node and netdev of each.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use pollux_pci::{self as pci, DriverKind, PciAddr, PciFunction, Sysfs};
use serde::Serialize;

#[derive(clap::Args, Debug)]
pub struct DevicesArgs {
    /// Print JSON (an array of functions) instead of the grouped table.
    #[arg(long)]
    json: bool,
    /// List every PCI function, not only network controllers (class 0x02).
    #[arg(long)]
    all: bool,
    /// Root of the sysfs tree to read (for tests on a fake tree).
    #[arg(long, default_value = "/sys", value_name = "DIR")]
    sysfs_root: PathBuf,
    /// pci.ids file for device names; the built-in table is used when absent.
    #[arg(long, default_value = "/usr/share/misc/pci.ids", value_name = "FILE")]
    pci_ids: PathBuf,
}

/// One line of output; also the JSON schema.
#[derive(Serialize, Debug, PartialEq)]
struct Entry {
    address: PciAddr,
    vendor: String,
    device: String,
    class: String,
    name: Option<String>,
    driver: Option<String>,
    driver_kind: &'static str,
    /// The Pollux poll-mode driver for this function's ID, if any.
    pmd: Option<&'static str>,
    driver_override: Option<String>,
    iommu_group: Option<u32>,
    numa_node: Option<u32>,
    netdevs: Vec<String>,
    /// For a VF: its PF.
    physfn: Option<PciAddr>,
    /// For a VF: its index under the PF.
    vf_index: Option<u32>,
    sriov_totalvfs: Option<u32>,
    sriov_numvfs: Option<u32>,
    /// For a PF: its VFs in index order.
    virtfns: Vec<PciAddr>,
}

fn kind_name(k: DriverKind) -> &'static str {
    match k {
        DriverKind::Kernel => "kernel",
        DriverKind::Userspace => "userspace",
        DriverKind::None => "none",
    }
}

fn entry(f: PciFunction, vf_index: Option<u32>, pci_ids: &Path) -> Entry {
    let name =
        pci::pci_ids_name(pci_ids, f.vendor, f.device).or_else(|| f.name().map(str::to_owned));
    Entry {
        address: f.addr,
        vendor: format!("{:04x}", f.vendor),
        device: format!("{:04x}", f.device),
        class: format!("{:06x}", f.class),
        name,
        driver_kind: kind_name(f.driver_kind()),
        pmd: pollux::pci_driver(f.vendor, f.device).map(|d| d.name),
        driver: f.driver,
        driver_override: f.driver_override,
        iommu_group: f.iommu_group,
        numa_node: f.numa_node,
        netdevs: f.netdevs,
        physfn: f.physfn,
        vf_index,
        sriov_totalvfs: f.sriov.map(|s| s.total_vfs),
        sriov_numvfs: f.sriov.map(|s| s.num_vfs),
        virtfns: f.virtfns.into_iter().map(|(_, a)| a).collect(),
    }
}

fn collect(args: &DevicesArgs) -> anyhow::Result<Vec<Entry>> {
    let sysfs = Sysfs::new(&args.sysfs_root);
    let mut out = Vec::new();
    for addr in sysfs.list().context("listing PCI functions")? {
        let f = sysfs.function(addr)?;
        if !args.all && !f.is_network() {
            continue;
        }
        let vf_index = match f.physfn {
            Some(_) => sysfs.vf_index(addr)?.map(|(_, i)| i),
            None => None,
        };
        out.push(entry(f, vf_index, &args.pci_ids));
    }
    Ok(out)
}

fn render(entries: &[Entry]) -> String {
    let mut s = String::new();
    let groups = [
        (
            "userspace",
            "Network devices using a userspace driver (vfio-pci, uio)",
        ),
        ("kernel", "Network devices using a kernel driver"),
        ("none", "Network devices with no driver"),
    ];
    for (kind, title) in groups {
        let _ = writeln!(s, "{title}");
        let _ = writeln!(s, "{}", "=".repeat(title.len()));
        let mut any = false;
        for e in entries.iter().filter(|e| e.driver_kind == kind) {
            any = true;
            let _ = write!(s, "{} {}:{}", e.address, e.vendor, e.device);
            if let Some(n) = &e.name {
                let _ = write!(s, " '{n}'");
            }
            if let Some(d) = &e.driver {
                let _ = write!(s, " drv={d}");
            }
            if let Some(o) = &e.driver_override {
                let _ = write!(s, " override={o}");
            }
            if let Some(p) = e.pmd {
                let _ = write!(s, " pmd={p}");
            }
            if !e.netdevs.is_empty() {
                let _ = write!(s, " if={}", e.netdevs.join(","));
            }
            match (e.physfn, e.vf_index) {
                (Some(pf), Some(i)) => {
                    let _ = write!(s, " vf={i} of {pf}");
                }
                (Some(pf), None) => {
                    let _ = write!(s, " vf of {pf}");
                }
                _ => {}
            }
            if let (Some(t), Some(n)) = (e.sriov_totalvfs, e.sriov_numvfs) {
                let _ = write!(s, " vfs={n}/{t}");
            }
            match e.iommu_group {
                Some(g) => {
                    let _ = write!(s, " iommu_group={g}");
                }
                None => s.push_str(" iommu_group=none"),
            }
            match e.numa_node {
                Some(n) => {
                    let _ = write!(s, " numa={n}");
                }
                None => s.push_str(" numa=none"),
            }
            s.push('\n');
        }
        if !any {
            s.push_str("<none>\n");
        }
        s.push('\n');
    }
    s
}

pub fn run(args: &DevicesArgs) -> anyhow::Result<()> {
    let entries = collect(args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
    } else {
        print!("{}", render(&entries));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pollux_pci::fake::{FakeFn, FakeSysfs};

    fn a(s: &str) -> PciAddr {
        s.parse().unwrap()
    }

    fn args(root: &Path, json: bool) -> DevicesArgs {
        DevicesArgs {
            json,
            all: false,
            sysfs_root: root.to_owned(),
            pci_ids: root.join("no-pci.ids"),
        }
    }

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let f = FakeSysfs::new(t.path()).unwrap();
        let base = FakeFn {
            addr: a("0000:00:02.0"),
            vendor: 0x8086,
            device: 0x10c9,
            class: 0x020000,
            driver: Some("igb"),
            iommu_group: Some(3),
            numa_node: 0,
            netdevs: &["eth0"],
            total_vfs: Some(7),
        };
        f.add(&base).unwrap();
        let vf = |addr, driver, group, netdevs| FakeFn {
            addr: a(addr),
            device: 0x10ca,
            driver,
            iommu_group: Some(group),
            netdevs,
            total_vfs: None,
            ..base.clone()
        };
        f.add_vf(
            a("0000:00:02.0"),
            0,
            &vf("0000:00:10.0", Some("vfio-pci"), 10, &[]),
        )
        .unwrap();
        f.add_vf(a("0000:00:02.0"), 1, &vf("0000:00:10.2", None, 11, &[]))
            .unwrap();
        f.add_vf(
            a("0000:00:02.0"),
            2,
            &vf("0000:00:10.4", Some("igbvf"), 12, &["enp0s16f4"]),
        )
        .unwrap();
        let disk = FakeFn {
            addr: a("0000:00:1f.2"),
            class: 0x010601,
            driver: Some("ahci"),
            netdevs: &[],
            total_vfs: None,
            ..base.clone()
        };
        f.add(&disk).unwrap();
        t
    }

    #[test]
    fn groups_by_driver_kind() {
        let t = tree();
        let out = render(&collect(&args(t.path(), false)).unwrap());
        let expect = "\
Network devices using a userspace driver (vfio-pci, uio)
========================================================
0000:00:10.0 8086:10ca '82576 Virtual Function' drv=vfio-pci pmd=net_igbvf vf=0 of 0000:00:02.0 iommu_group=10 numa=0

Network devices using a kernel driver
=====================================
0000:00:02.0 8086:10c9 '82576 Gigabit Network Connection' drv=igb if=eth0 vfs=3/7 iommu_group=3 numa=0
0000:00:10.4 8086:10ca '82576 Virtual Function' drv=igbvf pmd=net_igbvf if=enp0s16f4 vf=2 of 0000:00:02.0 iommu_group=12 numa=0

Network devices with no driver
==============================
0000:00:10.2 8086:10ca '82576 Virtual Function' pmd=net_igbvf vf=1 of 0000:00:02.0 iommu_group=11 numa=0

";
        assert_eq!(out, expect);
    }

    #[test]
    fn json_is_machine_readable() {
        let t = tree();
        let entries = collect(&args(t.path(), true)).unwrap();
        let v: serde_json::Value = serde_json::to_value(&entries).unwrap();
        let arr = v.as_array().unwrap();
        assert_eq!(arr.len(), 4, "the SATA controller is not listed");
        assert_eq!(arr[0]["address"], "0000:00:02.0");
        assert_eq!(
            arr[0]["virtfns"],
            serde_json::json!(["0000:00:10.0", "0000:00:10.2", "0000:00:10.4"])
        );
        assert_eq!(arr[0]["sriov_numvfs"], 3);
        assert_eq!(arr[1]["physfn"], "0000:00:02.0");
        assert_eq!(arr[1]["vf_index"], 0);
        assert_eq!(arr[1]["driver_kind"], "userspace");
        assert_eq!(arr[1]["pmd"], "net_igbvf", "found through the registry");
        assert_eq!(arr[0]["pmd"], serde_json::Value::Null, "no PMD for the PF");
        assert_eq!(arr[2]["driver"], serde_json::Value::Null);
        assert_eq!(arr[3]["netdevs"], serde_json::json!(["enp0s16f4"]));
    }

    #[test]
    fn all_includes_other_classes_and_bad_root_errors() {
        let t = tree();
        let mut a = args(t.path(), false);
        a.all = true;
        assert_eq!(collect(&a).unwrap().len(), 5);
        let empty = tempfile::tempdir().unwrap();
        let e = collect(&args(empty.path(), false)).unwrap_err();
        assert!(format!("{e:#}").contains("listing PCI functions"), "{e:#}");
    }
}
