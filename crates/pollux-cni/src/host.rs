//! What the plugin asks of the host, as a trait: VF state through the PF,
//! netdev moves between namespaces, addresses. [`RealHost`] does it with
//! rtnetlink (pollux-sriov) and setns; unit tests use an in-memory model.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use pollux_core::MacAddr;
use pollux_pci::Sysfs;
use pollux_sriov::netlink::{LinkChange, LinkInfo, Rtnl, VfAttr, VfState};
use pollux_sriov::netns;

use crate::state::LinkOrig;
use crate::{Error, Result};

/// An address and the routes to put on an interface in the pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpSetup {
    pub addrs: Vec<(IpAddr, u8)>,
    /// Destination, prefix, gateway.
    pub routes: Vec<(IpAddr, u8, Option<IpAddr>)>,
}

/// Host operations of the plugin.
pub trait Host {
    fn sysfs(&self) -> &Sysfs;
    /// The state of VF `vf` of PF netdev `pf`.
    fn vf_state(&mut self, pf: &str, vf: u32) -> Result<VfState>;
    fn set_vf(&mut self, pf: &str, vf: u32, attr: VfAttr) -> Result<()>;
    /// A link in the host namespace.
    fn host_link(&mut self, name: &str) -> Result<Option<LinkInfo>>;
    /// A link in the namespace at `netns`.
    fn netns_link(&mut self, netns: &Path, name: &str) -> Result<Option<LinkInfo>>;
    /// Moves host netdev `host_name` into `netns` as `ifname`, sets MAC and
    /// MTU if given, configures `ip`, brings it up; returns its final state.
    fn attach_netdev(
        &mut self,
        host_name: &str,
        netns: &Path,
        ifname: &str,
        mac: Option<MacAddr>,
        mtu: Option<u32>,
        ip: &IpSetup,
    ) -> Result<LinkInfo>;
    /// Moves `ifname` out of `netns` back to the host as `orig.name` with
    /// its original MAC, MTU and up state. `Ok(false)` if it is not there.
    fn detach_netdev(&mut self, netns: &Path, ifname: &str, orig: &LinkOrig) -> Result<bool>;
    /// Renames a host netdev back to its original name, MAC, MTU, state
    /// (after its namespace died and the kernel moved it home).
    fn restore_host_netdev(&mut self, current: &str, orig: &LinkOrig) -> Result<()>;
    /// Is `netns` a live network namespace?
    fn netns_live(&self, netns: &Path) -> bool;
    /// Can the host side work at all (netlink socket)?
    fn ready(&mut self) -> Result<()>;
}

/// The host through rtnetlink and setns.
#[derive(Debug)]
pub struct RealHost {
    sysfs: Sysfs,
    timeout: Duration,
    rtnl: Option<Rtnl>,
}

impl RealHost {
    pub fn new(sysfs: Sysfs) -> Self {
        Self {
            sysfs,
            timeout: Duration::from_secs(5),
            rtnl: None,
        }
    }

    fn rtnl(&mut self) -> Result<&mut Rtnl> {
        if self.rtnl.is_none() {
            self.rtnl = Some(Rtnl::open(self.timeout)?);
        }
        Ok(self.rtnl.as_mut().expect("just set"))
    }

    fn pf_index(&mut self, pf: &str) -> Result<u32> {
        self.rtnl()?
            .link_by_name(pf)?
            .map(|l| l.index)
            .ok_or_else(|| Error::Device(format!("PF netdev {pf} not found")))
    }
}

fn link_in(rtnl: &mut Rtnl, name: &str) -> Result<LinkInfo> {
    rtnl.link_by_name(name)?
        .ok_or_else(|| Error::Device(format!("interface {name} not found")))
}

impl Host for RealHost {
    fn sysfs(&self) -> &Sysfs {
        &self.sysfs
    }

    fn vf_state(&mut self, pf: &str, vf: u32) -> Result<VfState> {
        let link = self
            .rtnl()?
            .link_by_name(pf)?
            .ok_or_else(|| Error::Device(format!("PF netdev {pf} not found")))?;
        link.vfs
            .into_iter()
            .find(|v| v.index == vf)
            .ok_or_else(|| Error::Device(format!("PF {pf} reports no VF {vf}")))
    }

    fn set_vf(&mut self, pf: &str, vf: u32, attr: VfAttr) -> Result<()> {
        let idx = self.pf_index(pf)?;
        self.rtnl()?.set_vf(idx, vf, attr).map_err(Into::into)
    }

    fn host_link(&mut self, name: &str) -> Result<Option<LinkInfo>> {
        self.rtnl()?.link_by_name(name).map_err(Into::into)
    }

    fn netns_link(&mut self, ns: &Path, name: &str) -> Result<Option<LinkInfo>> {
        let timeout = self.timeout;
        let name = name.to_owned();
        netns::run_in(ns, move || Rtnl::open(timeout)?.link_by_name(&name)).map_err(Into::into)
    }

    fn attach_netdev(
        &mut self,
        host_name: &str,
        ns: &Path,
        ifname: &str,
        mac: Option<MacAddr>,
        mtu: Option<u32>,
        ip: &IpSetup,
    ) -> Result<LinkInfo> {
        let target = netns::open(ns)?;
        let rtnl = self.rtnl()?;
        let link = link_in(rtnl, host_name)?;
        use std::os::fd::AsRawFd;
        rtnl.set_link(
            link.index,
            &LinkChange {
                up: Some(false),
                ..Default::default()
            },
        )?;
        // One RTM_SETLINK moves and renames: do_setlink hands IFLA_IFNAME
        // to __dev_change_net_namespace as the name in the new namespace,
        // so no clash with a host name can occur on the way.
        rtnl.set_link(
            link.index,
            &LinkChange {
                name: Some(ifname.to_owned()),
                netns_fd: Some(target.as_raw_fd()),
                ..Default::default()
            },
        )?;
        let timeout = self.timeout;
        let ifname = ifname.to_owned();
        let ip = ip.clone();
        netns::run_in(ns, move || {
            let mut r = Rtnl::open(timeout)?;
            let l = r.link_by_name(&ifname)?.ok_or_else(|| {
                pollux_sriov::Error::Invalid(format!("{ifname} vanished after the move"))
            })?;
            // Only what differs: a VF netdev's MAC change is a request to
            // the PF, which may refuse it.
            r.set_link(
                l.index,
                &LinkChange {
                    mac: mac.filter(|m| Some(*m) != l.mac),
                    mtu: mtu.filter(|m| Some(*m) != l.mtu),
                    ..Default::default()
                },
            )?;
            r.set_link(
                l.index,
                &LinkChange {
                    up: Some(true),
                    ..Default::default()
                },
            )?;
            for (a, p) in &ip.addrs {
                r.add_address(l.index, *a, *p)?;
            }
            for (d, p, g) in &ip.routes {
                r.add_route(l.index, *d, *p, *g)?;
            }
            Ok(r.link_by_index(l.index)?.unwrap_or(l))
        })
        .map_err(Into::into)
    }

    fn detach_netdev(&mut self, ns: &Path, ifname: &str, orig: &LinkOrig) -> Result<bool> {
        use std::os::fd::AsRawFd;
        let home = netns::open(Path::new("/proc/thread-self/ns/net"))?;
        let home_fd = home.as_raw_fd();
        let timeout = self.timeout;
        let ifname = ifname.to_owned();
        let name = orig.name.clone();
        let moved = netns::run_in(ns, move || {
            let mut r = Rtnl::open(timeout)?;
            let Some(l) = r.link_by_name(&ifname)? else {
                return Ok(false);
            };
            r.set_link(
                l.index,
                &LinkChange {
                    up: Some(false),
                    ..Default::default()
                },
            )?;
            r.set_link(
                l.index,
                &LinkChange {
                    name: Some(name),
                    netns_fd: Some(home_fd),
                    ..Default::default()
                },
            )?;
            Ok(true)
        })?;
        drop(home);
        if moved {
            self.restore_host_netdev(&orig.name, orig)?;
        }
        Ok(moved)
    }

    fn restore_host_netdev(&mut self, current: &str, orig: &LinkOrig) -> Result<()> {
        let rtnl = self.rtnl()?;
        let l = link_in(rtnl, current)?;
        rtnl.set_link(
            l.index,
            &LinkChange {
                up: Some(false),
                ..Default::default()
            },
        )?;
        rtnl.set_link(
            l.index,
            &LinkChange {
                name: (current != orig.name).then(|| orig.name.clone()),
                mac: orig.mac.filter(|m| Some(*m) != l.mac),
                mtu: orig.mtu.filter(|m| Some(*m) != l.mtu),
                ..Default::default()
            },
        )?;
        if orig.up {
            rtnl.set_link(
                l.index,
                &LinkChange {
                    up: Some(true),
                    ..Default::default()
                },
            )?;
        }
        Ok(())
    }

    fn netns_live(&self, ns: &Path) -> bool {
        netns::is_live(ns)
    }

    fn ready(&mut self) -> Result<()> {
        self.rtnl().map(drop)
    }
}
