//! The host network namespace of a run with tap wires or model wires.
//!
//! QEMU's virtio-net offers several queue pairs and checksum offloads only
//! over a netdev that has them, and of the netdevs the lab may use only a
//! `tap` does (../shared/LAB.md: hub, socket and dgram carry one queue and no
//! vnet header). So for a topology with [`WireKind::Tap`] wires the lab
//! makes a network namespace on the host for the run, with one Linux bridge
//! per tap wire and one tap per NIC on it (`multi_queue` when the NIC has
//! several queue pairs), and runs QEMU inside it with `ip netns exec`.
//! Nothing else is in that namespace: no route, no address, no link to the
//! host's own network, IPv6 off so the bridge itself sends nothing. Every
//! frame on such a wire comes from a NIC of the guest.
//!
//! A run with device models on wires gets one too, for the length of its
//! unix datagram queues: a model sends each frame to the peer's QEMU
//! `dgram` netdev socket without blocking (it answers QEMU's register
//! accesses on the same thread, and QEMU reads that socket only once the
//! access is answered), and a unix datagram socket queues
//! `net.unix.max_dgram_qlen` datagrams, 10 by default: a burst of 32 frames
//! back from a forwarding PMD lost 2076 of 4000 (measured, macswap on the
//! ixgbevf model). The knob is per network namespace and taken when a
//! socket is made, so QEMU's sockets in this namespace queue
//! [`UNIX_DGRAM_QLEN`] without the host's own setting changing.
//!
//! The namespace (and its bridges and taps with it) is deleted when the
//! [`HostNetns`] is dropped; namespaces left by runs whose process is gone
//! are swept at the next creation.
//!
//! [`WireKind::Tap`]: crate::WireKind::Tap

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// Prefix of the namespaces the lab makes: `pollux-lab-<pid>-<seq>`.
const PREFIX: &str = "pollux-lab-";

/// `net.unix.max_dgram_qlen` in the run's namespace: a few rings' worth of
/// frames queued on a model wire.
pub const UNIX_DGRAM_QLEN: u32 = 4096;

/// A host network namespace with the run's bridges and taps; deleted on drop.
#[derive(Debug)]
pub struct HostNetns {
    name: String,
    ip: PathBuf,
}

/// The `ip` binary (iproute2, which `cargo xtask setup` installs).
fn ip_binary() -> Result<PathBuf> {
    ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::Setup(
                "tap wires need iproute2's `ip` on the host (cargo xtask setup installs it)".into(),
            )
        })
}

fn run(ip: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new(ip).args(args).output().map_err(|e| {
        Error::Setup(format!(
            "cannot run {} {}: {e}",
            ip.display(),
            args.join(" ")
        ))
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Setup(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Whether a namespace name is one of ours whose process has exited.
fn is_stale(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(PREFIX) else {
        return false;
    };
    let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    !Path::new(&format!("/proc/{pid}")).exists()
}

impl HostNetns {
    /// Creates namespace `pollux-lab-<pid>-<seq>` with `bridges`: each a
    /// bridge name and its taps (name, queue pairs). Fails with what is
    /// missing when the host cannot make taps (no `/dev/net/tun`, not root).
    pub fn create(seq: u32, bridges: &[(String, Vec<(String, u8)>)]) -> Result<HostNetns> {
        if !Path::new("/dev/net/tun").exists() {
            return Err(Error::Setup(
                "tap wires need /dev/net/tun on the host (modprobe tun)".into(),
            ));
        }
        let ip = ip_binary()?;
        Self::sweep(&ip);
        let ns = HostNetns {
            name: format!("{PREFIX}{}-{seq}", std::process::id()),
            ip,
        };
        run(&ns.ip, &["netns", "add", &ns.name]).map_err(|e| {
            Error::Setup(format!(
                "cannot create the host namespace for tap wires (the lab needs root for it): {e}"
            ))
        })?;
        // From here on, dropping `ns` deletes the namespace.
        ns.ip_in(&["link", "set", "lo", "up"])?;
        let knobs = ["all", "default"]
            .map(|k| format!("net.ipv6.conf.{k}.disable_ipv6=1"))
            .into_iter()
            .chain([format!("net.unix.max_dgram_qlen={UNIX_DGRAM_QLEN}")]);
        for knob in knobs {
            run(&ns.ip, &["netns", "exec", &ns.name, "sysctl", "-qw", &knob])?;
        }
        for (bridge, taps) in bridges {
            // No STP, so ports forward at once; forward_delay 0 all the same.
            ns.ip_in(&[
                "link",
                "add",
                bridge,
                "type",
                "bridge",
                "forward_delay",
                "0",
                "stp_state",
                "0",
            ])?;
            for (tap, queues) in taps {
                // QEMU opens a multi_queue tap only when it asks for several
                // queues (IFF_MULTI_QUEUE), and the flags must match.
                let mut add = vec!["tuntap", "add", "dev", tap.as_str(), "mode", "tap"];
                if *queues > 1 {
                    add.push("multi_queue");
                }
                ns.ip_in(&add)?;
                ns.ip_in(&["link", "set", tap, "master", bridge, "up"])?;
            }
            ns.ip_in(&["link", "set", bridge, "up"])?;
        }
        Ok(ns)
    }

    /// Its name, for `ip netns exec`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <ns> args...`.
    fn ip_in(&self, args: &[&str]) -> Result<()> {
        let mut a = vec!["-n", self.name.as_str()];
        a.extend_from_slice(args);
        run(&self.ip, &a)
    }

    /// Writes an executable at `dir/qemu-system-x86_64` that runs `qemu`
    /// inside this namespace, for vng's `--qemu`; returns its path.
    pub fn qemu_wrapper(&self, dir: &Path, qemu: &Path) -> Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Setup(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join("qemu-system-x86_64");
        let script = format!(
            "#!/bin/sh\n# QEMU in the run's host namespace (tap wires)\nexec {} netns exec {} {} \"$@\"\n",
            crate::lab::shell_quote(&self.ip.to_string_lossy()),
            self.name,
            crate::lab::shell_quote(&qemu.to_string_lossy())
        );
        std::fs::write(&path, script)
            .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)))
            .map_err(|e| Error::Setup(format!("cannot write {}: {e}", path.display())))?;
        Ok(path)
    }

    /// Deletes namespaces of earlier runs whose process is gone.
    fn sweep(ip: &Path) {
        let Ok(out) = Command::new(ip).args(["netns", "list"]).output() else {
            return;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if is_stale(name) {
                let _ = run(ip, &["netns", "del", name]);
            }
        }
    }
}

impl Drop for HostNetns {
    fn drop(&mut self) {
        if let Err(e) = run(&self.ip, &["netns", "del", &self.name]) {
            eprintln!("pollux-lab: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_namespaces_of_exited_processes_are_stale() {
        let me = std::process::id();
        assert!(!is_stale(&format!("pollux-lab-{me}-0")));
        assert!(!is_stale("someone-else-1-0"));
        assert!(!is_stale("pollux-lab-notapid-0"));
        // Above the kernel's pid_max limit (4194304): never a live process.
        assert!(is_stale("pollux-lab-4194305-3"));
    }
}
