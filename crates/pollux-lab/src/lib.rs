//! The Pollux lab: SR-IOV hardware that nobody here has, built from QEMU.
//!
//! No machine of the project has an SR-IOV NIC. The lab boots a Linux guest
//! under QEMU (TCG; KVM is unusable on these machines) with QEMU's `igb`
//! device (an Intel 82576 with up to 7 usable VFs, VF id 8086:10ca), QEMU's
//! `intel-iommu`, Debian's kernel with its igb, vfio-pci and bonding drivers,
//! and peer NICs (virtio-net or e1000e) wired to the igb ports. Tests drive the
//! guest from the host: run commands, start background processes, cut wires.
//!
//! # Parts
//! - QEMU >= 10.1 (Debian trixie-backports' 11.1, run from a trixie tree in
//!   the lab cache through that tree's loader), the guest kernel (Debian
//!   backports `linux-image-6.12*`, extracted into a cache folder), and
//!   virtme-ng (PyPI, in a venv). `cargo xtask setup` installs them; see
//!   [`env`](mod@env) for where they are looked up and the `POLLUX_LAB_*` overrides.
//! - virtme-ng boots the kernel with the **host's root filesystem shared
//!   read-only**: the guest runs the host's `ip`, `ping`, `tcpdump`,
//!   `dpdk-testpmd`, and the workspace's own binaries at their host paths
//!   ([`host_binary`], [`host_example`]). Guest writes to `/tmp`, `/etc`, ...
//!   go to overlays that the host never sees; use [`Lab::shared_dir`] to bring
//!   files back.
//! - A guest agent (`pollux-lab-agent`, a binary of this crate) is the
//!   guest's command. It talks JSON lines over a virtio-serial port ([`proto`]);
//!   every request has a timeout on both sides.
//! - QMP on a unix socket gives the monitor: [`Lab::set_link`], [`Lab::hmp`],
//!   [`Lab::qmp`].
//!
//! # Topology
//! A [`Topology`] lists igb PFs ([`Pf`]: VF count, peers, wire kind, vfio
//! binding) and standalone [`Segment`]s of peer NICs. Each wire is a QEMU hub
//! (default), a TCP socket pair on 127.0.0.1 or a unix dgram pair; never
//! slirp or tap. Names are fixed by position:
//!
//! | thing | QEMU netdev id ([`Lab::set_link`]) | MAC |
//! | --- | --- | --- |
//! | PF `i` | `pf{i}` | `52:54:00:10:{i}:00` |
//! | peer `j` on PF `i`'s wire | `pf{i}-peer{j}` | `52:54:00:20:{i}:{j}` |
//! | NIC `j` of segment `k` | `seg{k}-peer{j}` | `52:54:00:30:{k}:{j}` |
//!
//! Each peer is moved into a guest network namespace, by default one named
//! after its netdev id ([`Peer::netns`] to share one, e.g. for a bond), so
//! traffic between a PF and its peer really crosses the wire. PCI addresses
//! and interface names are discovered at boot: [`Lab::pf`], [`Lab::vf`],
//! [`Lab::peer`]. Each NIC sits behind its own PCIe root port, so a PF is
//! `0000:BB:00.0` and its VFs `0000:BB:10.0`, `BB:10.2`, ... each in an IOMMU
//! group of its own.
//!
//! # Boot
//! [`Lab::boot`] starts QEMU, waits for the agent, loads the drivers (plus
//! `vfio-pci` and `vfio_iommu_type1`, which modprobe does not pull in),
//! moves peers into their namespaces, creates VFs with
//! `sriov_drivers_autoprobe` off (no guest driver touches them), sets PFs up
//! after that (a PF open is what gives the VFs their reset-done bit in this
//! model), and binds VFs to vfio-pci where asked. The machine options that
//! make VFs work (`kernel-irqchip=split`, `intremap=on`) are always set; see
//! `docs/lab.md` for why. [`VirtioPf`] adds a virtio-net PF whose SR-IOV VFs
//! the guest creates the same way.
//!
//! # Failures
//! Everything waits with a timeout and fails with an [`Error`] that says
//! what it waited for. Each boot writes a run folder under
//! `target/pollux-lab/runs/` with `console.log` (kernel and agent messages),
//! `transcript.log` (every command and its output) and `command.sh` (the
//! exact vng command). Dropping the [`Lab`] kills QEMU and deletes the
//! folder, unless the thread is panicking (a failed test) or
//! [`Lab::keep_run_dir`] / `POLLUX_LAB_KEEP=1` asks to keep it; a kept folder's
//! path and the console's last lines are printed.
//!
//! # Writing a lab test
//! Lab tests are integration tests of this crate that only build with the
//! `lab` feature, so `cargo test --workspace` never boots QEMU. Add
//! `tests/<name>.rs` and declare it in this crate's `Cargo.toml`:
//!
//! ```toml
//! [[test]]
//! name = "igbvf"
//! path = "tests/igbvf.rs"
//! required-features = ["lab"]
//! ```
//!
//! `cargo xtask lab test [FILTER]` builds the workspace's binaries and
//! examples, then runs every such test one at a time (`--test-threads=1`:
//! the machine has 2 cores and one TCG guest at a time is what fits).
//!
//! ```no_run
//! use std::time::Duration;
//! use pollux_lab::{host_binary, Lab, Peer, Pf, Topology};
//!
//! # fn main() -> pollux_lab::Result<()> {
//! let lab = Lab::boot(&Topology::new().pf(Pf::new(2).peer(Peer::virtio())))?;
//! let t = Duration::from_secs(30);
//! let vf = lab.vf(0, 0)?.clone();
//! let dev = lab.bind_vfio(&vf)?; // /dev/vfio/N
//! let peer = lab.peer(0, 0)?.clone();
//! lab.run_ok(&peer.wrap(&format!("ip addr add 169.254.1.2/16 dev {}", peer.ifname)), t)?;
//!
//! // A data-plane app on the VF, in the background, while the peer pings it.
//! let pollux = host_binary("pollux")?;
//! let mut app = lab.spawn(&format!("{} testpmd --vf {}", pollux.display(), vf.pci))?;
//! app.wait_for_output("forwarding", t)?;
//! let ping = lab.run(&peer.wrap("ping -c 3 -W 1 169.254.1.1"), t)?;
//! lab.set_link(&peer.netdev, false)?; // cut the wire
//! let out = app.stop_with(2, t)?; // SIGINT, collect its summary
//! assert!(out.stdout.contains("rx"), "{}", out.stdout);
//! # let _ = (dev, ping); Ok(()) }
//! ```

#![deny(unsafe_code)]

mod checks;
mod client;
pub mod env;
mod error;
mod hostns;
mod lab;
mod process;
pub mod proto;
mod qmp;
pub mod samples;
pub mod topology;

pub use checks::{run_checks, Check, CHECKS_ENV};
pub use env::{host_binary, host_example, target_dir, LabEnv};
pub use error::{is_guest_loss, Error, Result};
pub use lab::{
    in_netns, shell_quote, tail_of, Lab, LabOptions, ModelInfo, Output, PeerInfo, PfInfo, Pktgen,
    VfInfo, VirtioPfInfo,
};
pub use process::GuestProcess;
pub use proto::ExitStatus;
pub use topology::{
    ModelFn, NicModel, Peer, Pf, Segment, Topology, VirtioPf, WireKind, MAX_QUEUES, MAX_VFS_PER_PF,
    MAX_VIRTIO_VFS,
};

#[cfg(test)]
mod manifest_tests {
    /// Cargo also builds a `tests/*.rs` file that `Cargo.toml` does not
    /// declare, without the feature gate: a lab test forgotten there would
    /// boot QEMU inside plain `cargo test --workspace`. Catch that here.
    #[test]
    fn every_test_file_is_declared_as_a_lab_test() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        let blocks: Vec<&str> = manifest.split("[[test]]").skip(1).collect();
        for entry in std::fs::read_dir(dir.join("tests")).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".rs") else {
                continue;
            };
            let declared = blocks.iter().any(|b| {
                b.contains(&format!("path = \"tests/{name}\""))
                    && b.contains("required-features = [\"lab\"]")
            });
            assert!(
                declared,
                "tests/{name} is not declared in crates/pollux-lab/Cargo.toml; add\n\n\
                 [[test]]\nname = \"{stem}\"\npath = \"tests/{name}\"\nrequired-features = [\"lab\"]\n"
            );
        }
    }
}
