//! Helpers shared by the lab test files of the VF families served by
//! `pollux-model` (ixgbevf, iavf): a wired model and its kernel peer, the
//! kernel's view of a netdev, testpmd's JSON report, DPDK's statistics.

#![allow(dead_code)]

use std::time::Duration;

use pollux_lab::{host_binary, Lab, ModelInfo, PeerInfo};
use serde_json::Value;

/// How long a guest command may take.
pub const T: Duration = Duration::from_secs(60);

/// One wired model as the checks see it.
pub struct Wired {
    pub index: usize,
    pub model: ModelInfo,
    pub peer: PeerInfo,
    pub mac: &'static str,
    pub ip: &'static str,
    pub peer_ip: &'static str,
}

/// The kernel netdev a PCI function's driver made.
pub fn netdev_of(lab: &Lab, pci: &str) -> String {
    let out = lab
        .run_ok(&format!("ls /sys/bus/pci/devices/{pci}/net"), T)
        .unwrap_or_else(|e| panic!("{pci} has no netdev: {e}"));
    out.stdout
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("{pci} has no netdev"))
        .to_owned()
}

pub fn driver_of(lab: &Lab, pci: &str) -> String {
    lab.run(
        &format!("basename $(readlink /sys/bus/pci/devices/{pci}/driver) 2>/dev/null"),
        T,
    )
    .map(|o| o.stdout.trim().to_owned())
    .unwrap_or_default()
}

pub fn assert_no_violations(lab: &Lab, i: usize, after: &str) {
    let v = lab.model_violations(i).expect("violation log");
    assert!(
        v.trim().is_empty(),
        "model {i} logged violations (after {after}):\n{v}"
    );
}

/// Kernel log lines since the mark `m` (a count of lines seen before).
pub fn dmesg_since(lab: &Lab, m: usize) -> String {
    let out = lab.run_ok("dmesg", T).expect("dmesg");
    out.stdout.lines().skip(m).collect::<Vec<_>>().join("\n")
}

pub fn dmesg_mark(lab: &Lab) -> usize {
    lab.run_ok("dmesg", T)
        .expect("dmesg")
        .stdout
        .lines()
        .count()
}

pub fn counter(lab: &Lab, ifname: &str, name: &str) -> u64 {
    let o = lab
        .run_ok(&format!("cat /sys/class/net/{ifname}/statistics/{name}"), T)
        .expect("counter");
    o.stdout.trim().parse().expect("a number")
}

/// Pings from the VF's kernel netdev to its peer: (sent, received).
pub fn ping(lab: &Lab, w: &Wired, count: u32, size: u32) -> (u32, u32) {
    let out = lab
        .run(
            &format!(
                "ping -c {count} -i 0.02 -W 2 -s {size} -M do -q {}",
                w.peer_ip
            ),
            Duration::from_secs(120),
        )
        .expect("ping ran");
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no ping summary:\n{}{}", out.stdout, out.stderr));
    let n = |i: usize| -> u32 {
        line.split(", ")
            .nth(i)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad ping summary {line:?}"))
    };
    (n(0), n(1))
}

/// Waits for the kernel netdev's carrier (at most `timeout`).
pub fn wait_carrier(lab: &Lab, ifname: &str, timeout: Duration) {
    lab.wait_until(
        &format!("[ \"$(cat /sys/class/net/{ifname}/carrier 2>/dev/null)\" = 1 ]"),
        timeout,
    )
    .unwrap_or_else(|e| panic!("{ifname}: no carrier within {timeout:?}: {e}"));
}

/// The first "KEY <n>" in DPDK testpmd's final statistics.
pub fn dpdk_stat(text: &str, key: &str) -> u64 {
    let tail = text
        .rsplit("Accumulated forward statistics for all ports")
        .next()
        .unwrap_or(text);
    tail.split(key)
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in DPDK's output:\n{text}"))
}

pub fn pollux() -> String {
    host_binary("pollux")
        .expect("pollux binary built")
        .display()
        .to_string()
}

/// The final JSON line of `pollux testpmd --json`.
pub fn report(stdout: &str) -> Value {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON report in:\n{stdout}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON {line}: {e}"))
}

pub fn port0(r: &Value, key: &str) -> u64 {
    r["ports"][0][key]
        .as_u64()
        .unwrap_or_else(|| panic!("no ports[0].{key} in {r}"))
}

pub fn queue_rx(r: &Value, q: usize) -> u64 {
    r["ports"][0]["queues"][q]["rx_packets"]
        .as_u64()
        .unwrap_or_else(|| panic!("no ports[0].queues[{q}].rx_packets in {r}"))
}

/// Binds model `w`'s function to vfio-pci (from whatever driver has it).
pub fn to_vfio(lab: &Lab, w: &Wired) {
    if driver_of(lab, &w.model.pci) != "vfio-pci" {
        lab.bind_driver(&w.model.pci, "vfio-pci")
            .expect("vfio-pci binds the model's function");
    }
}

/// The peer's address and static neighbour entry for the VF (set by the
/// Linux checks; set again here so each check stands alone).
pub fn address_peer(lab: &Lab, w: &Wired) {
    lab.run_ok(
        &w.peer.wrap(&format!(
            "sysctl -qw net.ipv6.conf.{0}.disable_ipv6=1; ip link set {0} mtu 1500; \
             ip addr replace {1}/24 dev {0} && ip link set {0} up && \
             ip neigh replace {2} lladdr {3} dev {0} nud permanent",
            w.peer.ifname, w.peer_ip, w.ip, w.mac
        )),
        T,
    )
    .expect("peer address");
}

pub fn start_testpmd<'a>(lab: &'a Lab, w: &Wired, args: &str) -> pollux_lab::GuestProcess<'a> {
    let mut tp = lab
        .spawn(&format!(
            "exec {} testpmd -a {} {args} --json --stats-period 0",
            pollux(),
            w.model.pci
        ))
        .expect("start testpmd");
    if let Err(e) = tp.wait_for_output("forwarding:", T) {
        panic!("testpmd did not start: {e:?}");
    }
    tp
}

/// The release `pollux` binary (performance runs need an optimised build).
pub fn pollux_release() -> String {
    let p = pollux_lab::target_dir().join("release/pollux");
    assert!(
        p.is_file(),
        "{} is not built: run `cargo build --release -p pollux-cli` first",
        p.display()
    );
    p.display().to_string()
}
