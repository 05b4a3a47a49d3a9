//! The rscni-plugin `Cni` implementation: environment and stdin as the CNI
//! spec defines them (parsed and checked by rscni-plugin, which also
//! answers VERSION and writes results and error results), mapped onto
//! [`crate::plugin`] with the real host.

use std::path::PathBuf;

use pollux_pci::Sysfs;
use rscni_plugin::cni::Cni;
use rscni_plugin::types::{Args, CNIResult, NetConf};
use serde_json::Value;

use crate::config::Conf;
use crate::host::{Host, RealHost};
use crate::plugin::{self, Env};
use crate::state::Cache;
use crate::{Error, Result};

/// The plugin.
#[derive(Debug, Default)]
pub struct Pollux;

fn stdin_of(nc: &NetConf) -> Result<Value> {
    serde_json::to_value(nc)
        .map_err(|e| Error::Cni(rscni_plugin::error::Error::FailedToDecode(e.to_string())))
}

fn conf_of(args: &Args) -> Result<Conf> {
    let nc = args.config();
    let runtime = nc.runtime_config.as_ref().map(|r| &r.custom);
    let ipam = nc
        .ipam
        .as_ref()
        .map(serde_json::to_value)
        .transpose()
        .map_err(|e| Error::InvalidConfig(format!("ipam: {e}")))?;
    Conf::parse(
        &nc.name,
        &nc.cni_version,
        &nc.custom,
        runtime,
        ipam,
        args.args(),
    )
}

fn env_of(args: &Args) -> Env {
    Env {
        container_id: args
            .container_id()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        netns: args.netns().cloned(),
        ifname: args.ifname().map(|i| i.to_string()).unwrap_or_default(),
        args: args.args().map(str::to_owned),
        path: args.path().to_vec(),
    }
}

fn checked_env(args: &Args) -> Result<Env> {
    let env = env_of(args);
    crate::state::check_container_id(&env.container_id)?;
    crate::state::check_ifname(&env.ifname)?;
    Ok(env)
}

fn custom_map(nc: &NetConf) -> serde_json::Map<String, Value> {
    nc.custom
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn host_for(root: PathBuf) -> RealHost {
    RealHost::new(Sysfs::new(root))
}

fn sysfs_root_of(custom: &serde_json::Map<String, Value>) -> PathBuf {
    custom
        .get("sysfsRoot")
        .and_then(Value::as_str)
        .filter(|s| s.starts_with('/'))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/sys"))
}

impl Pollux {
    fn add(&self, args: &Args) -> Result<CNIResult> {
        let env = checked_env(args)?;
        let conf = conf_of(args)?;
        let mut host = host_for(conf.sysfs_root.clone());
        plugin::add(&mut host, &conf, &stdin_of(args.config())?, &env)
    }

    fn del(&self, args: &Args) -> Result<()> {
        let env = checked_env(args)?;
        let custom = custom_map(args.config());
        let conf = match conf_of(args) {
            Ok(c) => Some(c),
            Err(e) => {
                plugin::log(
                    None,
                    crate::config::LogLevel::Info,
                    &format!("DEL: configuration does not validate ({e}); using the cache only"),
                );
                None
            }
        };
        let cache = Cache::open(&plugin::cache_dir_of(&custom))?;
        let mut host = host_for(sysfs_root_of(&custom));
        plugin::del(
            &mut host,
            &cache,
            conf.as_ref(),
            &stdin_of(args.config())?,
            &env,
        )
    }

    fn check(&self, args: &Args) -> Result<()> {
        let env = checked_env(args)?;
        let conf = conf_of(args)?;
        let mut host = host_for(conf.sysfs_root.clone());
        let prev = args.config().prev_result.as_ref();
        plugin::check(&mut host, &conf, &stdin_of(args.config())?, prev, &env)
    }

    fn gc(&self, args: &Args) -> Result<()> {
        let nc = args.config();
        let custom = custom_map(nc);
        let cache = Cache::open(&plugin::cache_dir_of(&custom))?;
        let mut host = host_for(sysfs_root_of(&custom));
        let valid: Vec<(String, String)> = nc
            .valid_attachments
            .iter()
            .flatten()
            .map(|a| (a.container_id.clone(), a.ifname.clone()))
            .collect();
        let r = plugin::gc(&mut host, &cache, &nc.name, &valid, args.path());
        // Delegate GC to the IPAM plugin only if it speaks this version
        // (GC exists from spec 1.1.0; Debian's host-local 1.1.1 does not
        // know it). Stale attachments' addresses were already released by
        // IPAM DEL above.
        if let Some(t) = nc.ipam.as_ref().map(|i| i.r#type.clone()) {
            if let Ok(v) =
                crate::ipam::supported_versions(&t, args.path(), crate::ipam::IPAM_TIMEOUT)
            {
                if v.contains(&nc.cni_version) {
                    let inv = crate::ipam::Invocation {
                        command: "GC",
                        path: args.path().to_vec(),
                        ..Default::default()
                    };
                    crate::ipam::exec(&t, &inv, &stdin_of(nc)?, crate::ipam::IPAM_TIMEOUT)?;
                }
            }
        }
        r
    }

    fn status(&self, args: &Args) -> Result<()> {
        let nc = args.config();
        let custom = custom_map(nc);
        let not_ready = |e: Error| {
            Error::Cni(rscni_plugin::error::Error::PluginNotAvailable(format!(
                "{e:#}"
            )))
        };
        Cache::open(&plugin::cache_dir_of(&custom)).map_err(not_ready)?;
        let mut host = host_for(sysfs_root_of(&custom));
        host.sysfs()
            .list()
            .map_err(|e| not_ready(pollux_sriov::Error::from(e).into()))?;
        host.ready().map_err(not_ready)?;
        if let Some(t) = nc.ipam.as_ref().map(|i| i.r#type.clone()) {
            crate::ipam::find_plugin(&t, args.path()).map_err(not_ready)?;
            if let Ok(v) =
                crate::ipam::supported_versions(&t, args.path(), crate::ipam::IPAM_TIMEOUT)
            {
                if v.contains(&nc.cni_version) {
                    let inv = crate::ipam::Invocation {
                        command: "STATUS",
                        path: args.path().to_vec(),
                        ..Default::default()
                    };
                    crate::ipam::exec(&t, &inv, &stdin_of(nc)?, crate::ipam::IPAM_TIMEOUT)?;
                }
            }
        }
        Ok(())
    }
}

impl Cni for Pollux {
    fn add(&self, args: Args) -> Result<CNIResult, rscni_plugin::error::Error> {
        Pollux::add(self, &args).map_err(Error::into_cni)
    }
    fn del(&self, args: Args) -> Result<(), rscni_plugin::error::Error> {
        Pollux::del(self, &args).map_err(Error::into_cni)
    }
    fn check(&self, args: Args) -> Result<(), rscni_plugin::error::Error> {
        Pollux::check(self, &args).map_err(Error::into_cni)
    }
    fn status(&self, args: Args) -> Result<(), rscni_plugin::error::Error> {
        Pollux::status(self, &args).map_err(Error::into_cni)
    }
    fn gc(&self, args: Args) -> Result<(), rscni_plugin::error::Error> {
        Pollux::gc(self, &args).map_err(Error::into_cni)
    }
}

/// Runs the plugin on the process's environment and stdin; returns the
/// exit code (0 on success; 1 with the error result on stdout otherwise).
pub fn main() -> i32 {
    use rscni_plugin::version::SpecVersion;
    let p = rscni_plugin::cni::Plugin::new(
        SpecVersion::new(1, 1, 0),
        vec![SpecVersion::new(1, 0, 0), SpecVersion::new(1, 1, 0)],
    )
    .msg(concat!(
        "pollux-cni ",
        env!("CARGO_PKG_VERSION"),
        ": SR-IOV VFs for pods (DPDK and netdevice mode)"
    ));
    match p.run(&Pollux) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}
