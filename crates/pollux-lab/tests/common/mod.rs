//! Helpers shared by the lab test files of the VF families served by
//! `pollux-model` (ixgbevf, iavf): a wired model and its kernel peer, the
//! kernel's view of a netdev, testpmd's JSON report, DPDK's statistics.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use pollux_lab::{host_binary, host_example, Lab, ModelInfo, PeerInfo};
use serde_json::Value;

/// How long a guest command may take.
pub const T: Duration = Duration::from_secs(60);

/// The namespace the wired models' peers live in (the 802.3ad check bonds
/// them there).
pub const PEER_NS: &str = "lnx";

/// What differs between the model-served families in the shared checks.
#[derive(Debug)]
pub struct Family {
    /// The family (`ixgbevf`), in messages and the side-by-side title.
    pub name: &'static str,
    /// The Pollux PMD's tracing target (`pollux_ixgbevf`).
    pub log_target: &'static str,
    /// DPDK's PMD (`net_ixgbe_vf`), in the side-by-side table.
    pub dpdk_pmd: &'static str,
    /// The PMD crate's fault-injection example (`ixgbevf_misbehave`).
    pub misbehave: &'static str,
    /// The transmit tail register's name in the model's violation log.
    pub tail_reg: &'static str,
}

/// After everything before it the violation logs of models `0..models`
/// are empty; then the PMD is made to misbehave on purpose (the family's
/// `*_misbehave` example: a transmit tail one past the ring) on `w` and the
/// log catches it.
pub fn violations_empty_then_caught(lab: &Lab, w: &Wired, models: usize, fam: &Family) {
    for i in 0..models {
        assert_no_violations(lab, i, "every check");
    }
    to_vfio(lab, w);
    let exe = host_example(fam.misbehave).expect("the misbehave example built");
    let out = lab
        .run(
            &format!("{} {} tail-past-ring", exe.display(), w.model.pci),
            T,
        )
        .expect("ran");
    assert!(out.success(), "{}\n{}", out.stdout, out.stderr);
    std::thread::sleep(Duration::from_millis(500));
    let v = lab.model_violations(w.index).expect("log");
    assert!(
        v.contains(fam.tail_reg) && v.to_lowercase().contains("ring"),
        "the model did not log the tail past the ring:\n{v}\n{}",
        out.stdout
    );
}

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

/// The model's frames dropped for want of a receive descriptor.
pub fn model_rx_no_desc(lab: &Lab, w: &Wired) -> u64 {
    lab.model_counter(w.index, "rx_drop_no_descriptor")
        .expect("the model's rx_no_desc")
}

/// pktgen's N frames counted exactly by `pollux testpmd --fwd rxonly`;
/// whatever it missed the model must have dropped at a full ring, and with
/// 4096 descriptors it missed none. Every mbuf back at the end.
pub fn pollux_rxonly_exact(lab: &Lab, w: &Wired) {
    to_vfio(lab, w);
    address_peer(lab, w);
    let tp = start_testpmd(lab, w, "--fwd rxonly --rxd 4096");
    let n = 10_000;
    let d0 = model_rx_no_desc(lab, w);
    let (sent, _) = lab.pktgen(&w.peer, w.mac, w.ip, n).expect("pktgen");
    assert_eq!(sent, n);
    std::thread::sleep(Duration::from_secs(2));
    let out = tp
        .stop_with(2, Duration::from_secs(20))
        .expect("testpmd ended");
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    let dropped = model_rx_no_desc(lab, w) - d0;
    let r = report(&out.stdout);
    eprintln!("{r}\nthe model dropped {dropped} for want of descriptors");
    let rx = port0(&r, "rx_packets");
    assert_eq!(
        rx + dropped,
        n,
        "received + dropped by the model != sent: {r}"
    );
    assert_eq!(
        rx, n,
        "the model dropped {dropped} at a full 4096-descriptor ring"
    );
    assert_eq!(r["mbufs_free_at_exit"], r["mbufs_total"], "{r}");
    assert_no_violations(lab, w.index, "pollux rxonly");
}

/// txonly: every frame testpmd counts is one the model took from a
/// descriptor, and the peer's kernel counts no more than that.
pub fn pollux_txonly_counted(lab: &Lab, w: &Wired) {
    to_vfio(lab, w);
    let peer_rx = || lab.peer_counter(&w.peer, "rx_packets").expect("peer rx");
    let model_tx = || {
        lab.model_counter(w.index, "frames_out")
            .expect("frames_out")
            + lab
                .model_counter(w.index, "tx_dropped")
                .expect("tx_dropped")
    };
    let (p0, m0) = (peer_rx(), model_tx());
    let out = lab
        .run(
            &format!(
                "{} testpmd -a {} --fwd txonly --txpkts 100 --eth-peer 0,{} --duration 3 --json --stats-period 0",
                pollux(),
                w.model.pci,
                w.peer.mac
            ),
            Duration::from_secs(120),
        )
        .expect("testpmd ran");
    assert!(out.success(), "{}\n{}", out.stdout, out.stderr);
    std::thread::sleep(Duration::from_secs(1));
    let r = report(&out.stdout);
    let claimed = port0(&r, "tx_packets");
    let (delivered, modelled) = (peer_rx() - p0, model_tx() - m0);
    eprintln!("pollux txonly: {claimed} claimed, {modelled} taken by the model, {delivered} counted by the peer");
    assert!(claimed > 1000, "{r}");
    assert_eq!(
        modelled, claimed,
        "frames the model took vs testpmd's count"
    );
    assert!(
        delivered > 0 && delivered <= claimed,
        "peer counted {delivered} of {claimed}"
    );
    assert_eq!(r["mbufs_free_at_exit"], r["mbufs_total"], "{r}");
    assert_no_violations(lab, w.index, "pollux txonly");
}

/// `examples/responder` on the VF answers `count` kernel pings from the
/// peer, counts them, and gives every buffer back.
pub fn responder_ping(lab: &Lab, w: &Wired, count: u32) {
    to_vfio(lab, w);
    address_peer(lab, w);
    let mut app = lab
        .start_responder("", &w.model.pci, &format!("--ip {}", w.ip))
        .unwrap_or_else(|e| panic!("responder did not come up: {e:?}"));
    let ping = lab
        .run(
            &w.peer
                .wrap(&format!("ping -c {count} -i 0.02 -W 2 -q {}", w.ip)),
            Duration::from_secs(180),
        )
        .expect("ping ran");
    app.write_stdin("stop\n").expect("stop the responder");
    let out = app.wait(T).expect("responder ended");
    assert!(
        ping.stdout
            .contains(&format!("{count} packets transmitted, {count} received")),
        "ping:\n{}\nresponder:\n{}\n{}",
        ping.stdout,
        out.stdout,
        out.stderr
    );
    assert!(out.status.success(), "responder failed: {}", out.stderr);
    assert!(
        out.stdout.contains(&format!("icmp={count}")),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("pool_free=2048/2048"), "{}", out.stdout);
    assert_no_violations(lab, w.index, "responder");
}

/// macswap against pktgen: frames from an address nobody has to the
/// peer's own port 9 come back swapped, and the peer's UDP stack counts
/// each in NoPorts, exactly; the pool is full at the end.
pub fn pollux_macswap(lab: &Lab, w: &Wired) {
    to_vfio(lab, w);
    address_peer(lab, w);
    let noports = || -> u64 {
        let out = lab
            .run_ok(&w.peer.wrap("grep '^Udp:' /proc/net/snmp"), T)
            .expect("snmp");
        let lines: Vec<&str> = out.stdout.lines().collect();
        lines[0]
            .split_whitespace()
            .zip(lines[1].split_whitespace())
            .find(|(k, _)| *k == "NoPorts")
            .and_then(|(_, v)| v.parse().ok())
            .expect("NoPorts")
    };
    let tp = start_testpmd(lab, w, "--fwd macswap --rxd 1024");
    let before = noports();
    let n = 4000;
    let (sent, _) = lab
        .pktgen_with(
            &w.peer,
            w.mac,
            w.peer_ip,
            n,
            &pollux_lab::Pktgen {
                delay_ns: 100_000,
                src_ip: Some("169.254.200.1".into()),
                ..Default::default()
            },
        )
        .expect("pktgen");
    assert_eq!(sent, n);
    std::thread::sleep(Duration::from_secs(2));
    let out = tp
        .stop_with(2, Duration::from_secs(20))
        .expect("testpmd ended");
    let r = report(&out.stdout);
    let back = noports() - before;
    eprintln!("macswap: {r}; the peer's NoPorts grew by {back}");
    assert_eq!(back, n, "frames back at the peer: {r}");
    assert_eq!(r["mbufs_free_at_exit"], r["mbufs_total"], "{r}");
    assert_no_violations(lab, w.index, "macswap");
}

/// Link off and on at the model is followed within a second each way; a
/// PF-initiated reset while the peer pings is recovered by the PMD by
/// itself, and pings are answered again without restarting anything.
pub fn pollux_link_and_pf_reset(lab: &Lab, w: &Wired, fam: &Family) {
    to_vfio(lab, w);
    address_peer(lab, w);
    let mut app = lab
        .start_responder(
            &format!("RUST_LOG={}=debug", fam.log_target),
            &w.model.pci,
            &format!("--ip {} --report-link", w.ip),
        )
        .unwrap_or_else(|e| panic!("responder did not come up: {e:?}"));
    app.wait_for_output("link up", T).expect("link up at start");
    let within = Duration::from_millis(1500);
    let t0 = Instant::now();
    lab.model_control(w.index, "link down").expect("link down");
    app.wait_for_output("link down", within)
        .unwrap_or_else(|e| panic!("link down not seen within 1 s: {e}"));
    let down = t0.elapsed();
    let t1 = Instant::now();
    lab.model_control(w.index, "link up").expect("link up");
    app.wait_for_output("link up (2)", within)
        .unwrap_or_else(|e| panic!("link up not seen within 1 s: {e}"));
    eprintln!("link down seen after {down:?}, up after {:?}", t1.elapsed());

    // Pings running across a PF reset.
    let mut pinger = lab
        .spawn(
            &w.peer
                .wrap(&format!("exec ping -c 100 -i 0.1 -W 1 {}", w.ip)),
        )
        .expect("ping");
    std::thread::sleep(Duration::from_secs(3));
    lab.model_control(w.index, "pf reset").expect("pf reset");
    let p = pinger
        .wait(Duration::from_secs(60))
        .map(|o| o.stdout)
        .unwrap_or_else(|e| format!("ping: {e}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let q = lab
            .run(&w.peer.wrap(&format!("ping -c 3 -i 0.2 -W 1 {}", w.ip)), T)
            .expect("ping ran");
        if q.stdout.contains(" 3 received") {
            break;
        }
        let _ = app.poll();
        assert!(
            Instant::now() < deadline,
            "no answer 30 s after the PF reset:\n{}\nresponder:\n{}\n{}",
            q.stdout,
            app.stdout(),
            app.stderr()
        );
    }
    app.write_stdin("stop\n").expect("stop");
    let out = app.wait(T).expect("responder ended");
    eprintln!("pings across the PF reset: {p}\n{}", out.stdout);
    assert!(
        out.stdout.contains("recoveries=1") || out.stdout.contains("recoveries=2"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(out.stdout.contains("pool_free=2048/2048"), "{}", out.stdout);
    assert_no_violations(lab, w.index, "link and PF reset");
}

/// RSS on the X550 VF's two queue pairs, one lcore each: pktgen's N frames
/// over 64 UDP flows are counted exactly, both queues get some, no flow is
/// seen on two queues, and each queue got exactly what the model's hash
/// sent it (the model's per-queue counters).
pub fn pollux_rss(lab: &Lab, w: &Wired) {
    to_vfio(lab, w);
    address_peer(lab, w);
    let q = |i: usize| {
        lab.model_counter(w.index, &format!("rx_q{i}_frames"))
            .expect("the model's per-queue counter")
    };
    let (q0, q1) = (q(0), q(1));
    let tp = start_testpmd(
        lab,
        w,
        "--fwd rxonly --rxq 2 --txq 2 --nb-cores 2 --no-pin --flow-queues --rxd 1024",
    );
    let n = 6_400;
    let (sent, _) = lab
        .pktgen_with(
            &w.peer,
            w.mac,
            w.ip,
            n,
            &pollux_lab::Pktgen {
                flows: 64,
                delay_ns: 100_000,
                ..Default::default()
            },
        )
        .expect("pktgen");
    assert_eq!(sent, n);
    std::thread::sleep(Duration::from_secs(2));
    let out = tp
        .stop_with(2, Duration::from_secs(20))
        .expect("testpmd ended");
    let r = report(&out.stdout);
    let (m0, m1) = (q(0) - q0, q(1) - q1);
    eprintln!("RSS: {r}\nthe model hashed {m0} to queue 0 and {m1} to queue 1");
    assert_eq!(port0(&r, "rx_packets"), n, "{r}");
    let (r0, r1) = (queue_rx(&r, 0), queue_rx(&r, 1));
    assert!(r0 > 0 && r1 > 0, "one queue only: {r0}/{r1}");
    assert_eq!((r0, r1), (m0, m1), "per queue: Pollux vs the model's hash");
    assert_eq!(r["flows"][0]["on_several_queues"], 0, "{r}");
    assert_eq!(r["mbufs_free_at_exit"], r["mbufs_total"], "{r}");
    assert_no_violations(lab, w.index, "RSS");
}

/// A Pollux 802.3ad bond over the two modelled VFs negotiates with Linux
/// bonding over their two peers, answers ping through the aggregate, and
/// survives a cut link (the model's and the peer's both go down).
pub fn pollux_lacp_bond(lab: &Lab, a: &Wired, b: &Wired) {
    to_vfio(lab, a);
    to_vfio(lab, b);
    // The bond gives both VFs its MAC while each member's LACPDUs leave
    // from the member's own (802.1AX 6.2.11, as Linux bonding does): the
    // PF's anti-spoofing would drop the second VF's, so the administrator
    // turns it off (`ip link set PF vf N spoofchk off trust on`), as the
    // igbvf bond test does.
    // And trusts them, so the second may take the bond's MAC (a PF lets
    // an untrusted VF keep only the MAC it assigned: i40e; ixgbe grants it
    // when the administrator set none).
    for w in [a, b] {
        lab.model_control(w.index, "pf spoofchk-off")
            .expect("spoofchk off");
        lab.model_control(w.index, "pf trust-on").expect("trust on");
    }
    let (pa, pb) = (&a.peer.ifname, &b.peer.ifname);
    let bond_ip = "169.254.20.1";
    let script = format!(
        "set -e
ip netns exec {PEER_NS} sysctl -qw net.ipv6.conf.all.disable_ipv6=1
ip netns exec {PEER_NS} ethtool -s {pa} speed 10000 duplex full
ip netns exec {PEER_NS} ethtool -s {pb} speed 10000 duplex full
ip -n {PEER_NS} link set {pa} down
ip -n {PEER_NS} link set {pb} down
ip -n {PEER_NS} addr flush dev {pa}
ip -n {PEER_NS} addr flush dev {pb}
ip -n {PEER_NS} link add bond0 type bond mode 802.3ad lacp_rate fast miimon 100 xmit_hash_policy layer3+4
ip -n {PEER_NS} link set {pa} master bond0
ip -n {PEER_NS} link set {pb} master bond0
ip -n {PEER_NS} link set bond0 up
ip -n {PEER_NS} addr add 169.254.20.2/24 dev bond0"
    );
    lab.run_ok(&format!("sh -c {}", pollux_lab::shell_quote(&script)), T)
        .expect("the Linux bond");
    let exe = host_example("bond_responder").expect("bond_responder built");
    let mut p = lab
        .spawn(&format!(
            "{} --vf {} --vf {} --bond mode=802.3ad,lacp_rate=fast,xmit_hash_policy=layer3+4,miimon=100 --ip {bond_ip} --status-every 2",
            exe.display(),
            a.model.pci,
            b.model.pci
        ))
        .expect("bond_responder starts");
    p.wait_for_output("answering for", T)
        .expect("bond_responder is up");
    let mac = p
        .stdout()
        .lines()
        .find_map(|l| l.split(" as ").nth(1))
        .expect("the responder prints its MAC")
        .trim()
        .to_string();
    let proc_bond = || {
        lab.run_ok(
            &format!("ip netns exec {PEER_NS} cat /proc/net/bonding/bond0"),
            T,
        )
        .expect("/proc/net/bonding")
        .stdout
    };
    // Both Linux slaves in one aggregator with Pollux as partner.
    let aggregated = |text: &str, ports: &str| {
        text.contains(&format!("Number of ports: {ports}"))
            && text.contains(&format!("Partner Mac Address: {mac}"))
    };
    let wait = |ports: &str, within: Duration| {
        let deadline = Instant::now() + within;
        loop {
            let t = proc_bond();
            if aggregated(&t, ports) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{ports} ports not aggregated within {within:?}:\n{t}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    let ping_ok = |within: Duration| {
        let deadline = Instant::now() + within;
        loop {
            let o = lab
                .run(
                    &format!("ip netns exec {PEER_NS} ping -n -c 3 -i 0.3 -W 2 {bond_ip}"),
                    T,
                )
                .expect("ping");
            if o.stdout.contains(" 3 received") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no clean ping within {within:?}:\n{}",
                o.stdout
            );
        }
    };
    wait("2", Duration::from_secs(90));
    ping_ok(Duration::from_secs(30));
    // Cut model b's wire at both ends.
    lab.model_control(b.index, "link down").expect("link down");
    lab.set_link(&b.peer.netdev, false).expect("peer link down");
    wait("1", Duration::from_secs(30));
    ping_ok(Duration::from_secs(20));
    lab.model_control(b.index, "link up").expect("link up");
    lab.set_link(&b.peer.netdev, true).expect("peer link up");
    wait("2", Duration::from_secs(60));
    // Linux may count the port back before Pollux's side has sat out
    // 802.1AX's Aggregate_Wait_Time: wait for Pollux's own status (printed
    // every 2 s) to show both ports collecting and distributing.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        p.poll().expect("poll bond_responder");
        let out = p.stdout();
        let last = out
            .rsplit("=== pollux bond status ===")
            .find_map(|b| b.split_once("=== end ===").map(|(block, _)| block))
            .unwrap_or_default();
        if last.contains("Number of ports: 2") && last.matches("port state: 63").count() == 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Pollux's side did not aggregate both ports again within 60 s:\n{last}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    ping_ok(Duration::from_secs(20));
    let out = p
        .stop_with(2, Duration::from_secs(10))
        .expect("bond_responder stops");
    let last = out
        .stdout
        .rsplit("=== pollux bond status ===")
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(last.contains("Number of ports: 2"), "{last}");
    assert_eq!(last.matches("port state: 63").count(), 4, "{last}");
    lab.run_ok(&format!("ip -n {PEER_NS} link del bond0"), T)
        .expect("delete the Linux bond");
    for w in [a, b] {
        lab.model_control(w.index, "pf spoofchk-on")
            .expect("spoofchk on");
        lab.model_control(w.index, "pf trust-off")
            .expect("trust off");
    }
    assert_no_violations(lab, a.index, "802.3ad");
    assert_no_violations(lab, b.index, "802.3ad");
}

/// One PMD's txonly on model `w` for `secs` of steady state: (frames per
/// second the model took from the PMD's descriptors, frames per second the
/// peer's kernel received).
pub fn tx_rate(lab: &Lab, w: &Wired, dpdk: bool, secs: u64) -> (f64, f64) {
    let cmd = if dpdk {
        format!(
            "exec stdbuf -o0 -e0 dpdk-testpmd -l 0-1 -n 1 --no-huge -m 256 --iova-mode=va -a {} -- \
             --forward-mode=txonly --eth-peer=0,{} --total-num-mbufs=8192 --burst=32 --stats-period 1",
            w.model.pci, w.peer.mac
        )
    } else {
        format!(
            "exec {} testpmd -a {} --no-huge --fwd txonly --eth-peer 0,{} --duration {} --json --stats-period 0",
            pollux_release(),
            w.model.pci,
            w.peer.mac,
            secs + 3
        )
    };
    let mut p = lab.spawn(&cmd).expect("testpmd");
    let ready = if dpdk { "pps" } else { "forwarding:" };
    if let Err(e) = p.wait_for_output(ready, T) {
        panic!("txonly (dpdk={dpdk}) did not start: {e:?}");
    }
    std::thread::sleep(Duration::from_secs(1));
    let taken = || {
        lab.model_counter(w.index, "tx_frames").expect("tx_frames")
            + lab
                .model_counter(w.index, "tx_drop_spoofed")
                .expect("spoofed")
    };
    let peer_rx = || lab.peer_counter(&w.peer, "rx_packets").expect("peer rx");
    let (m0, p0, t0) = (taken(), peer_rx(), Instant::now());
    std::thread::sleep(Duration::from_secs(secs));
    let (m1, p1, dt) = (taken(), peer_rx(), t0.elapsed().as_secs_f64());
    let out = p
        .stop_with(2, Duration::from_secs(30))
        .expect("txonly ended");
    if !dpdk {
        let r = report(&out.stdout);
        assert_eq!(r["mbufs_free_at_exit"], r["mbufs_total"], "{r}");
    }
    ((m1 - m0) as f64 / dt, (p1 - p0) as f64 / dt)
}

/// One PMD's rxonly on model `w` while pktgen sends `n` frames as fast as
/// it can: (received, pktgen's seconds).
pub fn rx_run(lab: &Lab, w: &Wired, dpdk: bool, n: u64) -> (u64, f64) {
    let cmd = if dpdk {
        format!(
            "exec stdbuf -o0 -e0 dpdk-testpmd -l 0-1 -n 1 --no-huge -m 256 --iova-mode=va -a {} -- \
             --forward-mode=rxonly --rxd=1024 --total-num-mbufs=8192 --burst=32 --stats-period 1",
            w.model.pci
        )
    } else {
        format!(
            "exec {} testpmd -a {} --no-huge --fwd rxonly --rxd 1024 --json --stats-period 0",
            pollux_release(),
            w.model.pci
        )
    };
    let mut p = lab.spawn(&cmd).expect("testpmd");
    let ready = if dpdk { "pps" } else { "forwarding:" };
    if let Err(e) = p.wait_for_output(ready, T) {
        panic!("rxonly (dpdk={dpdk}) did not start: {e:?}");
    }
    let (sent, t) = lab.pktgen(&w.peer, w.mac, w.ip, n).expect("pktgen");
    assert_eq!(sent, n);
    std::thread::sleep(Duration::from_secs(1));
    let out = p
        .stop_with(2, Duration::from_secs(30))
        .expect("rxonly ended");
    let rx = if dpdk {
        dpdk_stat(&out.stdout, "RX-packets:")
    } else {
        let r = report(&out.stdout);
        assert_eq!(r["mbufs_free_at_exit"], r["mbufs_total"], "{r}");
        port0(&r, "rx_packets")
    };
    (rx, t)
}

/// Pollux's ixgbevf PMD (release build) and DPDK 22.11's net_ixgbe_vf on
/// the 82599 model in the same boot, measured the same way, in interleaved
/// pairs (the order alternating): 5 pairs under `cargo xtask lab bench`
/// (`POLLUX_LAB_BENCH=1`), 1 in the suite, which checks that both move
/// traffic and prints the figures. Both with 4 KiB pages (DPDK `--no-huge`,
/// Pollux `--no-huge`), 32-frame bursts, 8192 mbufs.
/// - txonly, 64-byte frames: frames per second the model took from the
///   PMD's descriptors (its own count, over 4 s of steady state; 2 s in the
///   suite), and, for information, what the peer's kernel received.
/// - rxonly: pktgen offers N 60-byte frames unpaced; pps = received /
///   pktgen's time, and the share received.
///
/// What this measures is mostly the lab: every register access is a
/// vfio-user message to the model, and the model does each DMA in a host
/// process while the guest runs under TCG. A PMD that rings fewer
/// doorbells and reads fewer registers per frame does better here; the
/// per-frame descriptor work is measured apart, in plain memory
/// (crates/pollux-ixgbevf/benches/desc_path.rs).
pub fn side_by_side(lab: &Lab, w: &Wired, fam: &Family) {
    to_vfio(lab, w);
    address_peer(lab, w);
    let long = std::env::var_os("POLLUX_LAB_BENCH").is_some();
    let (pairs, secs, n) = if long {
        (5, 4, 100_000)
    } else {
        (1, 2, 20_000)
    };
    let (mut taken, mut delivered, mut rx_pps, mut rx_share) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for k in 0..pairs {
        let mut t = [(0.0, 0.0); 2];
        let mut r = [(0u64, 0.0f64); 2];
        for i in 0..2 {
            let dpdk = (i + k) % 2 == 1;
            t[dpdk as usize] = tx_rate(lab, w, dpdk, secs);
        }
        for i in 0..2 {
            let dpdk = (i + k) % 2 == 1;
            r[dpdk as usize] = rx_run(lab, w, dpdk, n);
        }
        eprintln!(
            "pair {k}: txonly (taken pps, delivered pps) pollux {:?} dpdk {:?}; rxonly (received, pktgen s) pollux {:?} dpdk {:?}",
            t[0], t[1], r[0], r[1]
        );
        taken.push((t[0].0, t[1].0));
        delivered.push((t[0].1, t[1].1));
        rx_pps.push((r[0].0 as f64 / r[0].1, r[1].0 as f64 / r[1].1));
        rx_share.push((r[0].0 as f64 / n as f64, r[1].0 as f64 / n as f64));
    }
    let line = pollux_lab::samples::pair_row;
    let pps = |x: f64| format!("{x:.0}");
    let pct = |x: f64| format!("{:.2}%", 100.0 * x);
    let table = format!(
        "| mode ({pairs} interleaved pairs; median (min–max)) | pollux {} | DPDK {} | pollux / DPDK per pair |\n\
         | --- | ---: | ---: | ---: |\n{}\n{}\n{}\n{}\n\
         samples (pollux, DPDK): txonly taken {taken:.0?}; txonly delivered {delivered:.0?}; rxonly pps {rx_pps:.0?}; rxonly share {rx_share:.4?}",
        fam.name,
        fam.dpdk_pmd,
        line("txonly, 64 B, frames the model took (pps)", &taken, pps),
        line("txonly, 64 B, received by the peer kernel (pps)", &delivered, pps),
        line(&format!("rxonly, 60 B, pps (bounded by pktgen, {n} frames)"), &rx_pps, pps),
        line("rxonly, share of pktgen's frames received", &rx_share, pct),
    );
    println!("SIDE-BY-SIDE {}\n{table}", fam.name);
    assert!(
        taken.iter().all(|p| p.0 > 0.0 && p.1 > 0.0),
        "a PMD put nothing on the wire:\n{table}"
    );
    assert!(
        rx_share.iter().all(|p| p.0 > 0.0 && p.1 > 0.0),
        "a PMD received nothing:\n{table}"
    );
    if !long {
        println!("(one pair: `cargo xtask lab bench` gives the figures)");
    }
    assert_no_violations(lab, w.index, "side by side");
}
