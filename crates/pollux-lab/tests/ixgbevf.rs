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

use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use pollux_lab::{Lab, ModelFn, Peer, Topology};

/// This family, in the shared checks.
const FAMILY: Family = Family {
    name: "ixgbevf",
    log_target: "pollux_ixgbevf",
    dpdk_pmd: "net_ixgbe_vf",
    misbehave: "ixgbevf_misbehave",
    tail_reg: "TDT",
};

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
            |lab, w| pollux_link_and_pf_reset(lab, w, &FAMILY),
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
        Box::new(move || side_by_side(lab, w0, &FAMILY)),
    ));
    checks.push((
        "violation_log_empty_and_catches_a_tail_past_the_ring",
        Box::new(move || {
            violations_empty_then_caught(lab, w0, WIRED.len() + BRING_UP_ONLY.len(), &FAMILY)
        }),
    ));
    pollux_lab::run_checks("ixgbevf", checks);
}

// ---------------------------------------------------------------------
// Pollux's PMD, judged by the model, the peer's kernel and pktgen.

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

// ---------------------------------------------------------------------
// Side by side with DPDK's net_ixgbe_vf on the same model.
