//! Lab tests of the ixgbevf family (issue 16) on `pollux-model serve
//! ixgbevf`, a model of the 82599/X540/X550 VF served to the guest over
//! vfio-user.
//!
//! A model judges nothing until stock drivers have judged it, so the
//! checks of [`ixgbevf_checks_in_one_boot`] start with the guest's own
//! Linux `ixgbevf` (bring-up on every device ID, ping, pktgen counted by
//! the kernel's interface counters, jumbo frames, down/up, a PF reset) and
//! DPDK 22.11's `net_ixgbe_vf` (txonly counted by the peer, rxonly with
//! exact counts), each with the model's violation log empty. The judges
//! are the guest kernel at both ends of the wire and DPDK's PMD.
//!
//! Topology: model 0 is an 82599 VF (8086:10ed) and model 1 an X550 VF
//! (8086:1565) with 2 queue pairs, each wired to a virtio-net NIC in the
//! namespace `lnx` (one /24 each); models 2-4 are the X540, X550EM_x and
//! X550EM_a VFs, for bring-up and the error paths.
//!
//! Once judged, the model judges Pollux's `pollux-ixgbevf` with the igbvf
//! matrix: rxonly exact, txonly counted by the model and the peer, the
//! responder answering ping, macswap, link follow and a PF reset
//! mid-traffic, SIGINT and the error paths, RSS over two queues on two
//! lcores, an 802.3ad bond negotiated with Linux bonding, and the model's
//! violation log, empty after all of it, catching a tail past the ring.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;
use pollux_lab::{host_example, Lab, ModelFn, Peer, Topology};

/// The namespace both wired models' peers live in (the 802.3ad check
/// bonds them there).
const PEER_NS: &str = "lnx";

/// The two wired models: (device ID, MAC, VF address, peer address).
const WIRED: [(&str, &str, &str, &str); 2] = [
    (
        "8086:10ed",
        "02:00:00:ed:00:01",
        "169.254.10.1",
        "169.254.10.2",
    ),
    (
        "8086:1565",
        "02:00:00:ed:00:02",
        "169.254.11.1",
        "169.254.11.2",
    ),
];

/// The IDs that get a bring-up check only.
const BRING_UP_ONLY: [&str; 3] = ["8086:1515", "8086:15a8", "8086:15c5"];

fn topology() -> Topology {
    let mut t = Topology::new().module("pktgen").module("bonding");
    for (i, (id, mac, _, _)) in WIRED.into_iter().enumerate() {
        let m = ModelFn::new("ixgbevf")
            .arg("--device-id")
            .arg(id)
            .arg("--mac")
            .arg(mac)
            .peer(Peer::virtio().netns(PEER_NS));
        // The X550 VF gets two queue pairs for the RSS check.
        t = t.model(if i == 1 {
            m.arg("--queues").arg("2")
        } else {
            m
        });
    }
    for id in BRING_UP_ONLY {
        t = t.model(ModelFn::new("ixgbevf").arg("--device-id").arg(id));
    }
    t
}

/// Checks 1-5 on one wired model with the guest's Linux ixgbevf: bound,
/// link up at 10 Gb/s, ping 200/200, pktgen counted exactly, MTU 9000,
/// down/up, a PF reset recovered; the violation log empty throughout.
fn linux_ixgbevf_judges(lab: &Lab, w: &Wired) {
    let pci = &w.model.pci;
    assert_eq!(driver_of(lab, pci), "ixgbevf", "ixgbevf bound {pci}");
    let ifname = netdev_of(lab, pci);
    // The MAC the model's VF_RESET reply carried.
    let mac = lab
        .run_ok(&format!("cat /sys/class/net/{ifname}/address"), T)
        .expect("address");
    assert_eq!(mac.stdout.trim(), w.mac, "{ifname}'s MAC");
    lab.run_ok(
        &format!(
            "sysctl -qw net.ipv6.conf.{ifname}.disable_ipv6=1; ip addr add {}/24 dev {ifname} && ip link set {ifname} up",
            w.ip
        ),
        T,
    )
    .expect("VF netdev up");
    lab.run_ok(
        &w.peer.wrap(&format!(
            "sysctl -qw net.ipv6.conf.{0}.disable_ipv6=1; ip addr add {1}/24 dev {0} && ip link set {0} up && \
             ip neigh replace {2} lladdr {3} dev {0} nud permanent",
            w.peer.ifname, w.peer_ip, w.ip, w.mac
        )),
        T,
    )
    .expect("peer up");
    lab.run_ok(
        &format!(
            "ip neigh replace {} lladdr {} dev {ifname} nud permanent",
            w.peer_ip, w.peer.mac
        ),
        T,
    )
    .expect("static neighbour");
    wait_carrier(lab, &ifname, Duration::from_secs(15));
    let speed = lab
        .run_ok(&format!("cat /sys/class/net/{ifname}/speed"), T)
        .expect("speed");
    assert_eq!(speed.stdout.trim(), "10000", "ethtool speed");

    // Linux 6.12 negotiated mailbox API 1.5, the VFU-lock handshake (the
    // model's counter holds enum ixgbe_pfvf_api_rev: 6 is 1.5).
    assert_eq!(
        lab.model_counter(w.index, "mbx_api").expect("mbx_api"),
        6,
        "the API Linux negotiated"
    );

    // Ping, 200 of 200.
    let (sent, got) = ping(lab, w, 200, 56);
    assert_eq!((sent, got), (200, 200), "ping through Linux ixgbevf");
    assert_no_violations(lab, w.index, "ping");

    // pktgen's frames counted exactly by the VF's kernel counters.
    let before = counter(lab, &ifname, "rx_packets");
    let (n, _) = lab
        .pktgen_with(
            &w.peer,
            w.mac,
            w.ip,
            2000,
            &pollux_lab::Pktgen {
                delay_ns: 100_000,
                ..Default::default()
            },
        )
        .expect("pktgen");
    assert_eq!(n, 2000, "pktgen sent");
    std::thread::sleep(Duration::from_secs(1));
    let got = counter(lab, &ifname, "rx_packets") - before;
    assert_eq!(got, n, "frames the kernel's ixgbevf counted");
    assert_no_violations(lab, w.index, "pktgen");

    // Jumbo frames: MTU 9000 at both ends, 8000-byte pings unfragmented.
    lab.run_ok(&format!("ip link set {ifname} mtu 9000"), T)
        .expect("VF MTU 9000");
    lab.run_ok(
        &w.peer
            .wrap(&format!("ip link set {} mtu 9000", w.peer.ifname)),
        T,
    )
    .expect("peer MTU 9000");
    wait_carrier(lab, &ifname, Duration::from_secs(15));
    let (sent, got) = ping(lab, w, 20, 8000);
    assert_eq!((sent, got), (20, 20), "8000-byte pings at MTU 9000");
    assert_no_violations(lab, w.index, "MTU 9000");

    // Down and up.
    lab.run_ok(
        &format!("ip link set {ifname} down; sleep 1; ip link set {ifname} up"),
        T,
    )
    .expect("down/up");
    wait_carrier(lab, &ifname, Duration::from_secs(15));
    let (_, got) = ping(lab, w, 20, 56);
    assert_eq!(got, 20, "ping after down/up");

    // A PF-initiated reset: the kernel notices, resets, and traffic
    // resumes.
    let mark = dmesg_mark(lab);
    lab.model_control(w.index, "pf reset").expect("pf reset");
    std::thread::sleep(Duration::from_secs(5));
    wait_carrier(lab, &ifname, Duration::from_secs(30));
    let (_, got) = ping(lab, w, 20, 56);
    let log = dmesg_since(lab, mark);
    eprintln!("kernel log after the PF reset:\n{log}");
    assert_eq!(got, 20, "ping after the PF reset; kernel log:\n{log}");
    // The driver saw the reset (the PF's FAILURE message without CTS) as
    // a link loss, reset the VF and came back.
    for state in ["Down", "Up 10 Gbps"] {
        assert!(
            log.contains(&format!("ixgbevf {pci}: NIC Link is {state}")),
            "the kernel log has no \"Link is {state}\" for {pci} after the PF reset:\n{log}"
        );
    }
    assert!(
        lab.model_counter(w.index, "vf_resets").expect("counter") > 0,
        "the model saw no VF reset after the PF reset"
    );
    assert_no_violations(lab, w.index, "down/up and PF reset");
}

/// DPDK 22.11's net_ixgbe_vf on model `w` (moved to vfio-pci): txonly
/// counted by the model and the peer's kernel (never more than DPDK
/// claims), rxonly with pktgen's frames counted exactly.
fn dpdk_judges(lab: &Lab, w: &Wired) {
    lab.bind_driver(&w.model.pci, "vfio-pci")
        .expect("vfio-pci binds the model's function");
    let testpmd = |mode: &str| {
        let mut p = lab
            .spawn(&format!(
                "exec stdbuf -o0 -e0 dpdk-testpmd -l 0-1 -n 1 --no-huge -m 256 --iova-mode=va -a {} -- \
                 --forward-mode={mode} --eth-peer=0,{} --total-num-mbufs=8192 --burst=32 --stats-period 1",
                w.model.pci, w.peer.mac
            ))
            .expect("dpdk-testpmd");
        if let Err(e) = p.wait_for_output("pps", T) {
            panic!("dpdk-testpmd {mode} did not start: {e}");
        }
        p
    };
    let peer_rx = || lab.peer_counter(&w.peer, "rx_packets").expect("peer rx");
    let model_tx = || {
        lab.model_counter(w.index, "frames_out")
            .expect("frames_out")
            + lab
                .model_counter(w.index, "tx_dropped")
                .expect("tx_dropped")
    };

    // txonly.
    let (p0, m0) = (peer_rx(), model_tx());
    let tp = testpmd("txonly");
    // DPDK 22.11 negotiates at most API 1.3 (enum value 4), with the
    // legacy handshake (read while it runs: closing the function resets
    // it, and the model with it).
    let api = lab.model_counter(w.index, "mbx_api").expect("mbx_api");
    std::thread::sleep(Duration::from_secs(5));
    let out = tp
        .stop_with(2, Duration::from_secs(30))
        .expect("txonly ended");
    std::thread::sleep(Duration::from_secs(1));
    let claimed = dpdk_stat(&out.stdout, "TX-packets:");
    let (delivered, modelled) = (peer_rx() - p0, model_tx() - m0);
    eprintln!("DPDK txonly: {claimed} claimed, {modelled} taken by the model, {delivered} counted by the peer");
    assert!(claimed > 1000, "DPDK sent {claimed}:\n{}", out.stdout);
    assert_eq!(modelled, claimed, "frames the model took vs DPDK's count");
    assert!(
        delivered > 0 && delivered <= claimed,
        "peer counted {delivered} of {claimed}"
    );
    assert_no_violations(lab, w.index, "DPDK txonly");
    assert_eq!(api, 4, "the API DPDK negotiated");

    // rxonly: paced so no ring ever fills; every frame counted.
    let tp = testpmd("rxonly");
    let (n, _) = lab
        .pktgen_with(
            &w.peer,
            w.mac,
            w.ip,
            3000,
            &pollux_lab::Pktgen {
                delay_ns: 100_000,
                ..Default::default()
            },
        )
        .expect("pktgen");
    std::thread::sleep(Duration::from_secs(1));
    let out = tp
        .stop_with(2, Duration::from_secs(30))
        .expect("rxonly ended");
    let rx = dpdk_stat(&out.stdout, "RX-packets:");
    assert_eq!(
        rx, n,
        "DPDK rxonly received of pktgen's {n}:\n{}",
        out.stdout
    );
    assert_no_violations(lab, w.index, "DPDK rxonly");
}

/// The checks, in one boot: Linux ixgbevf on every device ID, then Linux on
/// each wired model, then DPDK on each.
#[test]
fn ixgbevf_checks_in_one_boot() {
    let lab = match Lab::boot(&topology()) {
        Ok(l) => l,
        Err(e) => panic!("the lab did not boot: {e}"),
    };
    let wired: Vec<Wired> = WIRED
        .iter()
        .enumerate()
        .map(|(i, &(_, mac, ip, peer_ip))| {
            let model = lab.model(i).expect("model").clone();
            let peer = model.peer.clone().expect("a wired model has a peer");
            Wired {
                index: i,
                model,
                peer,
                mac,
                ip,
                peer_ip,
            }
        })
        .collect();
    let lab = &lab;
    let mut checks: Vec<pollux_lab::Check<'_>> = vec![(
        "linux_ixgbevf_binds_every_device_id",
        Box::new(move || {
            lab.run_ok("modprobe ixgbevf", T).expect("modprobe ixgbevf");
            std::thread::sleep(Duration::from_secs(3));
            let n = WIRED.len() + BRING_UP_ONLY.len();
            for i in 0..n {
                let m = lab.model(i).expect("model");
                assert_eq!(driver_of(lab, &m.pci), "ixgbevf", "model {i} at {}", m.pci);
                let ifname = netdev_of(lab, &m.pci);
                lab.run_ok(
                    &format!(
                        "sysctl -qw net.ipv6.conf.{ifname}.disable_ipv6=1; ip link set {ifname} up"
                    ),
                    T,
                )
                .expect("up");
                wait_carrier(lab, &ifname, Duration::from_secs(15));
                assert_no_violations(lab, i, "bring-up");
            }
            let log = dmesg_since(lab, 0);
            for i in 0..n {
                let pci = &lab.model(i).expect("model").pci;
                assert!(
                    log.contains(&format!("ixgbevf {pci}: NIC Link is Up 10 Gbps")),
                    "the kernel did not report {pci}'s link at 10 Gb/s:\n{log}"
                );
            }
        }),
    )];
    for w in &wired {
        checks.push((
            [
                "linux_ixgbevf_judges_the_82599_model",
                "linux_ixgbevf_judges_the_x550_model",
            ][w.index],
            Box::new(move || linux_ixgbevf_judges(lab, w)),
        ));
    }
    for w in &wired {
        checks.push((
            ["dpdk_judges_the_82599_model", "dpdk_judges_the_x550_model"][w.index],
            Box::new(move || dpdk_judges(lab, w)),
        ));
    }
    // Pollux on the judged models: model 0 (82599) for the single-queue
    // matrix, model 1 (X550, two pairs) for RSS, both for the bond.
    let w0 = &wired[0];
    let w1 = &wired[1];
    // The single-queue matrix on both the 82599 and the X550.
    type OnOne = fn(&Lab, &Wired);
    let matrix: [([&'static str; 2], OnOne); 5] = [
        (
            [
                "pollux_rxonly_counts_exactly_what_pktgen_sent_82599",
                "pollux_rxonly_counts_exactly_what_pktgen_sent_x550",
            ],
            pollux_rxonly_exact,
        ),
        (
            [
                "pollux_txonly_counted_by_the_model_and_the_peer_82599",
                "pollux_txonly_counted_by_the_model_and_the_peer_x550",
            ],
            pollux_txonly_counted,
        ),
        (
            [
                "pollux_responder_answers_kernel_ping_82599",
                "pollux_responder_answers_kernel_ping_x550",
            ],
            |lab, w| responder_ping(lab, w, 200),
        ),
        (
            [
                "pollux_macswap_returns_every_frame_82599",
                "pollux_macswap_returns_every_frame_x550",
            ],
            pollux_macswap,
        ),
        (
            [
                "pollux_link_follows_and_a_pf_reset_mid_traffic_is_recovered_82599",
                "pollux_link_follows_and_a_pf_reset_mid_traffic_is_recovered_x550",
            ],
            pollux_link_and_pf_reset,
        ),
    ];
    for (names, check) in matrix {
        for w in [w0, w1] {
            checks.push((names[w.index], Box::new(move || check(lab, w))));
        }
    }
    checks.push((
        "pollux_sigint_mid_traffic_and_error_paths",
        Box::new(move || pollux_sigint_and_errors(lab, w0)),
    ));
    checks.push((
        "pollux_rss_over_two_queues_as_the_model_hashes",
        Box::new(move || pollux_rss(lab, w1)),
    ));
    checks.push((
        "pollux_8023ad_bond_with_linux_bonding",
        Box::new(move || pollux_lacp_bond(lab, w0, w1)),
    ));
    checks.push((
        "side_by_side_with_dpdk_net_ixgbe_vf",
        Box::new(move || side_by_side(lab, w0)),
    ));
    checks.push((
        "violation_log_empty_and_catches_a_tail_past_the_ring",
        Box::new(move || violations_empty_then_caught(lab, w0)),
    ));
    pollux_lab::run_checks("ixgbevf", checks);
}

// ---------------------------------------------------------------------
// Pollux's PMD, judged by the model, the peer's kernel and pktgen.

/// The model's frames dropped for want of a receive descriptor.
fn model_rx_no_desc(lab: &Lab, w: &Wired) -> u64 {
    lab.model_counter(w.index, "rx_drop_no_descriptor")
        .expect("the model's rx_no_desc")
}

/// pktgen's N frames counted exactly by `pollux testpmd --fwd rxonly`;
/// whatever it missed the model must have dropped at a full ring, and with
/// 4096 descriptors it missed none. Every mbuf back at the end.
fn pollux_rxonly_exact(lab: &Lab, w: &Wired) {
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
fn pollux_txonly_counted(lab: &Lab, w: &Wired) {
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
fn responder_ping(lab: &Lab, w: &Wired, count: u32) {
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
fn pollux_macswap(lab: &Lab, w: &Wired) {
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
fn pollux_link_and_pf_reset(lab: &Lab, w: &Wired) {
    to_vfio(lab, w);
    address_peer(lab, w);
    let mut app = lab
        .start_responder(
            "RUST_LOG=pollux_ixgbevf=debug",
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

/// SIGINT mid-txonly exits clean with every mbuf back, and the next run on
/// the same VF works; the error paths each say what is wrong.
fn pollux_sigint_and_errors(lab: &Lab, w: &Wired) {
    to_vfio(lab, w);
    let tp = start_testpmd(lab, w, &format!("--fwd txonly --eth-peer 0,{}", w.peer.mac));
    std::thread::sleep(Duration::from_secs(3));
    let out = tp
        .stop_with(Signal::SIGINT as i32, Duration::from_secs(20))
        .expect("testpmd ended");
    assert!(
        out.status.success(),
        "SIGINT: {}\n{}",
        out.stdout,
        out.stderr
    );
    let r = report(&out.stdout);
    assert!(port0(&r, "tx_packets") > 0, "{r}");
    assert_eq!(r["mbufs_free_at_exit"], r["mbufs_total"], "{r}");
    let again = lab
        .run(
            &format!(
                "{} testpmd -a {} --fwd txonly --eth-peer 0,{} --duration 2 --json --stats-period 0",
                pollux(),
                w.model.pci,
                w.peer.mac
            ),
            Duration::from_secs(120),
        )
        .expect("second run");
    assert!(
        again.success(),
        "second run: {}\n{}",
        again.stdout,
        again.stderr
    );
    assert!(port0(&report(&again.stdout), "tx_packets") > 0);

    let run = |pci: &str| {
        lab.run(
            &format!("{} testpmd -a {pci} --fwd rxonly --duration 1", pollux()),
            T,
        )
        .expect("ran")
    };
    // Model 4 (X550EM_a) is on the kernel's ixgbevf.
    let m4 = lab.model(4).expect("model 4").pci.clone();
    let e = run(&m4);
    assert!(!e.success(), "a kernel-bound VF accepted");
    assert!(
        e.stderr.contains("net_ixgbevf") && e.stderr.contains("not vfio-pci"),
        "kernel-bound VF: {}",
        e.stderr
    );
    // Model 3 (X550EM_x) on no driver at all.
    let m3 = lab.model(3).expect("model 3").pci.clone();
    lab.unbind_driver(&m3).expect("unbind model 3");
    let e = run(&m3);
    assert!(!e.success(), "unbound VF accepted");
    assert!(
        e.stderr.contains("not vfio-pci") && e.stderr.contains("driver_override"),
        "unbound VF: {}",
        e.stderr
    );
    // A function no Pollux driver handles (Q35's host bridge).
    let e = run("0000:00:00.0");
    assert!(!e.success(), "host bridge accepted");
    assert!(
        e.stderr.contains("no Pollux driver for PCI ID"),
        "{}",
        e.stderr
    );
    // Bound to vfio-pci, its group node gone.
    lab.bind_driver(&m3, "vfio-pci").expect("bind model 3");
    let group = lab.model(3).expect("model 3").iommu_group.expect("group");
    let node = format!("/dev/vfio/{group}");
    lab.run_ok(&format!("mv {node} {node}.away"), T)
        .expect("hide node");
    let e = run(&m3);
    lab.run_ok(&format!("mv {node}.away {node}"), T)
        .expect("restore node");
    assert!(!e.success(), "missing group node accepted");
    assert!(
        e.stderr.contains(&format!("{node} does not exist")),
        "{}",
        e.stderr
    );
    for i in [0, 3, 4] {
        assert_no_violations(lab, i, "SIGINT and the error paths");
    }
}

/// RSS on the X550 VF's two queue pairs, one lcore each: pktgen's N frames
/// over 64 UDP flows are counted exactly, both queues get some, no flow is
/// seen on two queues, and each queue got exactly what the model's hash
/// sent it (the model's per-queue counters).
fn pollux_rss(lab: &Lab, w: &Wired) {
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
fn pollux_lacp_bond(lab: &Lab, a: &Wired, b: &Wired) {
    to_vfio(lab, a);
    to_vfio(lab, b);
    // The bond gives both VFs its MAC while each member's LACPDUs leave
    // from the member's own (802.1AX 6.2.11, as Linux bonding does): the
    // PF's anti-spoofing would drop the second VF's, so the administrator
    // turns it off (`ip link set PF vf N spoofchk off`), as with igbvf.
    for w in [a, b] {
        lab.model_control(w.index, "pf spoofchk-off")
            .expect("spoofchk off");
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
    }
    assert_no_violations(lab, a.index, "802.3ad");
    assert_no_violations(lab, b.index, "802.3ad");
}

/// After everything above the violation logs are empty; then the PMD is
/// made to misbehave on purpose (`ixgbevf_misbehave`: a transmit tail one
/// past the ring) and the log catches it.
fn violations_empty_then_caught(lab: &Lab, w: &Wired) {
    for i in 0..WIRED.len() + BRING_UP_ONLY.len() {
        assert_no_violations(lab, i, "every check");
    }
    to_vfio(lab, w);
    let exe = host_example("ixgbevf_misbehave").expect("ixgbevf_misbehave built");
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
        v.contains("TDT") && v.to_lowercase().contains("ring"),
        "the model did not log the tail past the ring:\n{v}\n{}",
        out.stdout
    );
}

// ---------------------------------------------------------------------
// Side by side with DPDK's net_ixgbe_vf on the same model.

/// One PMD's txonly on model `w` for `secs` of steady state: (frames per
/// second the model took from the PMD's descriptors, frames per second the
/// peer's kernel received).
fn tx_rate(lab: &Lab, w: &Wired, dpdk: bool, secs: u64) -> (f64, f64) {
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
fn rx_run(lab: &Lab, w: &Wired, dpdk: bool, n: u64) -> (u64, f64) {
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
fn side_by_side(lab: &Lab, w: &Wired) {
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
        "| mode ({pairs} interleaved pairs; median (min–max)) | pollux ixgbevf | DPDK net_ixgbe_vf | pollux / DPDK per pair |\n\
         | --- | ---: | ---: | ---: |\n{}\n{}\n{}\n{}\n\
         samples (pollux, DPDK): txonly taken {taken:.0?}; txonly delivered {delivered:.0?}; rxonly pps {rx_pps:.0?}; rxonly share {rx_share:.4?}",
        line("txonly, 64 B, frames the model took (pps)", &taken, pps),
        line("txonly, 64 B, received by the peer kernel (pps)", &delivered, pps),
        line(&format!("rxonly, 60 B, pps (bounded by pktgen, {n} frames)"), &rx_pps, pps),
        line("rxonly, share of pktgen's frames received", &rx_share, pct),
    );
    println!("SIDE-BY-SIDE ixgbevf\n{table}");
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
