//! `pollux vf`: SR-IOV VF lifecycle (create, bind, unbind, reset) in sysfs
//! and per-VF configuration through the PF over rtnetlink (set, show).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use pollux_core::MacAddr;
use pollux_pci::{PciAddr, Sysfs};
use pollux_sriov::lifecycle::{self, CreateOpts, Timeouts};
use pollux_sriov::netlink::{LinkState, Rtnl, VfAttr, VfState, Vlan, VlanProto};

/// Options every `pollux vf` subcommand shares.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// Root of the sysfs tree (for tests on a fake tree).
    #[arg(long, default_value = "/sys", value_name = "DIR")]
    sysfs_root: PathBuf,
    /// Seconds to wait for each sysfs write and for the kernel to settle.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    timeout: u64,
}

impl Common {
    fn sysfs(&self) -> Sysfs {
        Sysfs::new(&self.sysfs_root)
    }
    fn timeouts(&self) -> Timeouts {
        let t = Duration::from_secs(self.timeout.max(1));
        Timeouts {
            write: t,
            settle: t,
            ..Timeouts::default()
        }
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum VfCommand {
    /// Set the number of VFs of a PF (0 first, then N) and wait for them.
    Create {
        /// The PF, as a PCI address or a netdev name.
        pf: String,
        /// How many VFs.
        #[arg(long)]
        num: u32,
        /// Change a non-zero count even while VFs are in use.
        #[arg(long)]
        force: bool,
        /// Set sriov_drivers_autoprobe first: off leaves new VFs unbound.
        #[arg(long, value_parser = ["on", "off"])]
        autoprobe: Option<String>,
        /// pollux-cni's cache directory, whose allocation records mark VFs
        /// in use.
        #[arg(long, default_value = "/var/lib/cni/pollux", value_name = "DIR")]
        cni_cache_dir: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Bind a function to a driver through driver_override.
    Bind {
        vf: PciAddr,
        driver: String,
        #[command(flatten)]
        common: Common,
    },
    /// Unbind a function, clear driver_override and let the default driver
    /// probe it again.
    Unbind {
        vf: PciAddr,
        /// Leave it without a driver.
        #[arg(long)]
        no_probe: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Reset a function through its sysfs reset attribute.
    Reset {
        vf: PciAddr,
        #[command(flatten)]
        common: Common,
    },
    /// Configure VF INDEX of a PF: mac, vlan, qos, proto, min_tx_rate,
    /// max_tx_rate, spoofchk, trust, state (as `ip link set PF vf N ...`).
    Set {
        /// The PF, as a PCI address or a netdev name.
        pf: String,
        index: u32,
        /// KEY VALUE pairs: mac X, vlan N, qos N, proto 802.1Q|802.1ad,
        /// min_tx_rate N, max_tx_rate N, spoofchk on|off, trust on|off,
        /// state auto|enable|disable.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        settings: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Show the VFs of a PF as the kernel reports them.
    Show {
        pf: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },
}

/// The PF as (PCI address, netdev name).
fn resolve_pf(sysfs: &Sysfs, pf: &str) -> anyhow::Result<(PciAddr, Option<String>)> {
    if let Ok(addr) = pf.parse::<PciAddr>() {
        let netdev = sysfs.netdevs(addr)?.into_iter().next();
        return Ok((addr, netdev));
    }
    match sysfs.netdev_pci_addr(pf)? {
        Some(addr) => Ok((addr, Some(pf.to_owned()))),
        None => bail!("{pf:?} is neither a PCI address nor the netdev of a PCI function"),
    }
}

fn pf_netdev(sysfs: &Sysfs, pf: &str) -> anyhow::Result<(PciAddr, String)> {
    let (addr, netdev) = resolve_pf(sysfs, pf)?;
    let netdev = netdev.with_context(|| {
        format!("PF {addr} has no netdev: VF configuration goes through the PF's kernel driver")
    })?;
    Ok((addr, netdev))
}

/// What `vf set` was asked to do.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SetRequest {
    pub mac: Option<MacAddr>,
    pub vlan: Option<u16>,
    pub qos: Option<u8>,
    pub proto: Option<VlanProto>,
    pub min_tx_rate: Option<u32>,
    pub max_tx_rate: Option<u32>,
    pub spoofchk: Option<bool>,
    pub trust: Option<bool>,
    pub state: Option<LinkState>,
}

fn on_off(key: &str, v: &str) -> anyhow::Result<bool> {
    match v {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => bail!("{key} takes on or off, not {v:?}"),
    }
}

/// Parses `KEY VALUE ...` pairs.
pub fn parse_settings(args: &[String]) -> anyhow::Result<SetRequest> {
    let mut r = SetRequest::default();
    if args.len() % 2 != 0 {
        bail!(
            "settings come in KEY VALUE pairs; {:?} has no value",
            args.last().map(String::as_str).unwrap_or("")
        );
    }
    let num = |k: &str, v: &str, max: u32| -> anyhow::Result<u32> {
        match v.parse::<u32>() {
            Ok(n) if n <= max => Ok(n),
            _ => bail!("{k} takes a number 0-{max}, not {v:?}"),
        }
    };
    for kv in args.chunks(2) {
        let (k, v) = (kv[0].as_str(), kv[1].as_str());
        let dup = match k {
            "mac" => r.mac.replace(v.parse()?).is_some(),
            "vlan" => r.vlan.replace(num(k, v, 4095)? as u16).is_some(),
            "qos" => r.qos.replace(num(k, v, 7)? as u8).is_some(),
            "proto" => r.proto.replace(v.parse()?).is_some(),
            "min_tx_rate" => r.min_tx_rate.replace(num(k, v, u32::MAX)?).is_some(),
            "max_tx_rate" => r.max_tx_rate.replace(num(k, v, u32::MAX)?).is_some(),
            "spoofchk" => r.spoofchk.replace(on_off(k, v)?).is_some(),
            "trust" => r.trust.replace(on_off(k, v)?).is_some(),
            "state" => r.state.replace(v.parse()?).is_some(),
            _ => bail!(
                "unknown setting {k:?}; known: mac vlan qos proto min_tx_rate max_tx_rate spoofchk trust state"
            ),
        };
        if dup {
            bail!("{k} given twice");
        }
    }
    if r.vlan.is_none() && (r.qos.is_some() || r.proto.is_some()) {
        bail!("qos and proto go with vlan (as in ip link): give vlan N too");
    }
    if r.proto == Some(VlanProto::Dot1Ad) && r.vlan == Some(0) {
        bail!("proto 802.1ad needs a non-zero vlan");
    }
    Ok(r)
}

impl SetRequest {
    /// The attribute writes, in iproute2's order; rates not given keep
    /// their current values.
    pub fn attrs(&self, cur: &VfState) -> Vec<VfAttr> {
        let mut v = Vec::new();
        if let Some(m) = self.mac {
            v.push(VfAttr::Mac(m));
        }
        if let Some(id) = self.vlan {
            v.push(VfAttr::Vlan(Vlan {
                id,
                qos: self.qos.unwrap_or(0),
                proto: self.proto.unwrap_or_default(),
            }));
        }
        if self.min_tx_rate.is_some() || self.max_tx_rate.is_some() {
            v.push(VfAttr::Rate {
                min: self.min_tx_rate.unwrap_or(cur.min_tx_rate),
                max: self.max_tx_rate.unwrap_or(cur.max_tx_rate),
            });
        }
        if let Some(s) = self.spoofchk {
            v.push(VfAttr::SpoofCheck(s));
        }
        if let Some(t) = self.trust {
            v.push(VfAttr::Trust(t));
        }
        if let Some(s) = self.state {
            v.push(VfAttr::LinkState(s));
        }
        v
    }
}

fn show_line(v: &VfState, pci: Option<PciAddr>, driver: Option<&str>) -> String {
    let onoff = |b: Option<bool>| match b {
        Some(true) => "on",
        Some(false) => "off",
        None => "n/a",
    };
    format!(
        "vf {} mac {} vlan {} qos {} proto {} min_tx_rate {} max_tx_rate {} spoofchk {} trust {} state {} pci {} driver {}",
        v.index,
        v.mac,
        v.vlan.id,
        v.vlan.qos,
        v.vlan.proto,
        v.min_tx_rate,
        v.max_tx_rate,
        onoff(v.spoofchk),
        onoff(v.trust),
        v.link_state.map(|s| s.to_string()).unwrap_or_else(|| "n/a".into()),
        pci.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
        driver.unwrap_or("none"),
    )
}

pub fn run(cmd: VfCommand) -> anyhow::Result<()> {
    match cmd {
        VfCommand::Create {
            pf,
            num,
            force,
            autoprobe,
            cni_cache_dir,
            common,
        } => {
            let sysfs = common.sysfs();
            let (addr, _) = resolve_pf(&sysfs, &pf)?;
            let opts = CreateOpts {
                force,
                autoprobe: autoprobe.map(|a| a == "on"),
                alloc_dir: Some(cni_cache_dir.join("alloc")),
                timeouts: common.timeouts(),
            };
            let vfs = lifecycle::create_vfs(&sysfs, addr, num, &opts)?;
            for (i, vf) in vfs {
                println!("vf {i} {vf}");
            }
        }
        VfCommand::Bind { vf, driver, common } => {
            lifecycle::bind(&common.sysfs(), vf, &driver, common.timeouts())?;
            println!("{vf} bound to {driver}");
        }
        VfCommand::Unbind {
            vf,
            no_probe,
            common,
        } => {
            let d = lifecycle::restore_default_driver(
                &common.sysfs(),
                vf,
                !no_probe,
                common.timeouts(),
            )?;
            match d {
                Some(d) => println!("{vf} bound to {d}"),
                None if !no_probe && lifecycle::autoprobe_blocked(&common.sysfs(), vf)? => println!(
                    "{vf} has no driver: its PF has sriov_drivers_autoprobe off, so the kernel binds \
                     none without an override; use `pollux vf bind {vf} <driver>`"
                ),
                None => println!("{vf} has no driver"),
            }
        }
        VfCommand::Reset { vf, common } => {
            lifecycle::reset(&common.sysfs(), vf, common.timeouts())?;
            println!("{vf} reset");
        }
        VfCommand::Set {
            pf,
            index,
            settings,
            common,
        } => {
            let req = parse_settings(&settings)?;
            let sysfs = common.sysfs();
            let (addr, netdev) = pf_netdev(&sysfs, &pf)?;
            let mut rtnl = Rtnl::open(Duration::from_secs(common.timeout.max(1)))?;
            let link = rtnl
                .link_by_name(&netdev)?
                .with_context(|| format!("PF netdev {netdev} not found"))?;
            let cur = link
                .vfs
                .iter()
                .find(|v| v.index == index)
                .cloned()
                .with_context(|| {
                    format!(
                        "{netdev} ({addr}) has no VF {index} ({} VFs)",
                        link.vfs.len()
                    )
                })?;
            for attr in req.attrs(&cur) {
                rtnl.set_vf(link.index, index, attr)
                    .with_context(|| format!("{netdev} vf {index}"))?;
            }
        }
        VfCommand::Show { pf, json, common } => {
            let sysfs = common.sysfs();
            let (addr, netdev) = pf_netdev(&sysfs, &pf)?;
            let mut rtnl = Rtnl::open(Duration::from_secs(common.timeout.max(1)))?;
            let link = rtnl
                .link_by_name(&netdev)?
                .with_context(|| format!("PF netdev {netdev} not found"))?;
            let mut rows = Vec::new();
            for v in &link.vfs {
                let pci = sysfs.virtfn(addr, v.index)?;
                let driver = match pci {
                    Some(p) => sysfs.driver(p)?,
                    None => None,
                };
                rows.push((v.clone(), pci, driver));
            }
            if json {
                let out: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|(v, p, d)| {
                        let mut j = serde_json::to_value(v).expect("VfState serializes");
                        j["pci"] = serde_json::json!(p);
                        j["driver"] = serde_json::json!(d);
                        j
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("{netdev} ({addr}): {} VFs", rows.len());
                for (v, p, d) in &rows {
                    println!("{}", show_line(v, *p, d.as_deref()));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_every_setting() {
        let r = parse_settings(&s(&[
            "mac",
            "02:00:00:00:00:01",
            "vlan",
            "100",
            "qos",
            "3",
            "proto",
            "802.1ad",
            "min_tx_rate",
            "0",
            "max_tx_rate",
            "100",
            "spoofchk",
            "off",
            "trust",
            "on",
            "state",
            "disable",
        ]))
        .unwrap();
        assert_eq!(r.vlan, Some(100));
        assert_eq!(r.proto, Some(VlanProto::Dot1Ad));
        let attrs = r.attrs(&VfState::default());
        assert_eq!(attrs.len(), 6);
        assert_eq!(
            attrs[1],
            VfAttr::Vlan(Vlan {
                id: 100,
                qos: 3,
                proto: VlanProto::Dot1Ad
            })
        );
        assert_eq!(attrs[2], VfAttr::Rate { min: 0, max: 100 });
    }

    #[test]
    fn rate_keeps_the_other_bound() {
        let r = parse_settings(&s(&["max_tx_rate", "50"])).unwrap();
        let cur = VfState {
            min_tx_rate: 10,
            ..Default::default()
        };
        assert_eq!(r.attrs(&cur), vec![VfAttr::Rate { min: 10, max: 50 }]);
    }

    #[test]
    fn bad_settings_are_clear_errors() {
        for (args, want) in [
            (&["vlan"][..], "no value"),
            (&["vlan", "4096"], "0-4095"),
            (&["vlan", "-1"], "0-4095"),
            (&["qos", "1"], "give vlan"),
            (&["vlan", "1", "qos", "8"], "0-7"),
            (&["vlan", "0", "proto", "802.1ad"], "non-zero"),
            (&["proto", "802.1ad"], "give vlan"),
            (&["mac", "xx"], "invalid MAC"),
            (&["spoofchk", "yes"], "on or off"),
            (&["state", "up"], "auto, enable or disable"),
            (&["speed", "10"], "unknown setting"),
            (&["trust", "on", "trust", "off"], "twice"),
        ] {
            let e = parse_settings(&s(args)).unwrap_err().to_string();
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }

    #[test]
    fn pf_resolution_on_fake_tree() {
        use pollux_pci::fake::{FakeFn, FakeSysfs};
        let t = tempfile::tempdir().unwrap();
        let f = FakeSysfs::new(t.path()).unwrap();
        f.add(&FakeFn {
            addr: "0000:00:02.0".parse().unwrap(),
            vendor: 0x8086,
            device: 0x10c9,
            class: 0x020000,
            driver: Some("igb"),
            iommu_group: None,
            numa_node: -1,
            netdevs: &["eth0"],
            total_vfs: Some(7),
        })
        .unwrap();
        let sysfs = Sysfs::new(t.path());
        let (a, n) = pf_netdev(&sysfs, "eth0").unwrap();
        assert_eq!((a.to_string(), n.as_str()), ("0000:00:02.0".into(), "eth0"));
        let (a, n) = pf_netdev(&sysfs, "00:02.0").unwrap();
        assert_eq!((a.to_string(), n.as_str()), ("0000:00:02.0".into(), "eth0"));
        let e = pf_netdev(&sysfs, "wlan9").unwrap_err().to_string();
        assert!(e.contains("neither a PCI address"), "{e}");
    }
}
