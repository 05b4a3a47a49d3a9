//! Lab tests of the iavf family (issue 17) on `pollux-model serve iavf`, a
//! model of the Intel Ethernet Adaptive VF (700 and 800 series) served to
//! the guest over vfio-user.
//!
//! The model judges nothing until stock drivers have judged it: the
//! guest's Linux `iavf` (virtchnl bring-up, link with the advertised
//! speed, ping, pktgen counted exactly by the kernel's counters, down/up,
//! an `ethtool -L` queue change, a PF-initiated reset) and DPDK 22.11's
//! `net_iavf` (txonly counted by the model and the peer, rxonly with exact
//! counts with 1 and with 4 queues), each with the violation log empty.
//!
//! Topology: model 0 is an AVF (8086:1889) and model 1 an X710 VF
//! (8086:154c), 4 queue pairs each, wired to virtio-net peers in the
//! namespace `lnx` (one /24 each).
//!
//! Once judged, the model judges Pollux's `pollux-iavf` with the igbvf
//! matrix on both IDs (rxonly exact, txonly counted by the model and the
//! peer, the responder answering ping, macswap, link follow and a PF reset
//! mid-traffic), RSS over 4 queue pairs on 2 lcores, an 802.3ad bond with
//! Linux bonding, the side-by-side with DPDK, and the violation log, empty
//! after all of it, catching a tail past the ring.

mod common;

use std::time::Duration;

use common::*;
use pollux_lab::{Lab, ModelFn, Peer, Topology};

/// This family, in the shared checks.
const FAMILY: Family = Family {
    name: "iavf",
    log_target: "pollux_iavf",
    dpdk_pmd: "net_iavf",
    misbehave: "iavf_misbehave",
    tail_reg: "QTX_TAIL",
};

/// The two models: (device ID, MAC, VF address, peer address).
const WIRED: [(&str, &str, &str, &str); 2] = [
    (
        "8086:1889",
        "02:00:00:18:89:01",
        "169.254.30.1",
        "169.254.30.2",
    ),
    (
        "8086:154c",
        "02:00:00:15:4c:02",
        "169.254.31.1",
        "169.254.31.2",
    ),
];

fn topology() -> Topology {
    let mut t = Topology::new().module("pktgen").module("bonding");
    for (id, mac, _, _) in WIRED {
        t = t.model(
            ModelFn::new("iavf")
                .arg("--device-id")
                .arg(id)
                .arg("--mac")
                .arg(mac)
                .arg("--queues")
                .arg("4")
                .peer(Peer::virtio().netns(PEER_NS)),
        );
    }
    t
}

/// Linux iavf on one model: its MAC, ping 200/200, pktgen counted exactly
/// (iavf's counters come from GET_STATS, sampled by its watchdog), MTU
/// 9000, down/up, `ethtool -L combined 2`, and a PF-initiated reset the
/// kernel recovers from; the violation log empty throughout.
fn linux_iavf_judges(lab: &Lab, w: &Wired) {
    let pci = &w.model.pci;
    assert_eq!(driver_of(lab, pci), "iavf", "iavf bound {pci}");
    let ifname = netdev_of(lab, pci);
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
    address_peer(lab, w);
    lab.run_ok(
        &format!(
            "ip neigh replace {} lladdr {} dev {ifname} nud permanent",
            w.peer_ip, w.peer.mac
        ),
        T,
    )
    .expect("static neighbour");
    wait_carrier(lab, &ifname, Duration::from_secs(20));
    let speed = lab
        .run_ok(&format!("cat /sys/class/net/{ifname}/speed"), T)
        .expect("speed");
    assert_eq!(speed.stdout.trim(), "10000", "the advertised speed");

    let (sent, got) = ping(lab, w, 200, 56);
    assert_eq!((sent, got), (200, 200), "ping through Linux iavf");
    assert_no_violations(lab, w.index, "ping");

    // pktgen's frames counted exactly by the VF's kernel counters.
    std::thread::sleep(Duration::from_secs(3));
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
    std::thread::sleep(Duration::from_secs(4));
    let got = counter(lab, &ifname, "rx_packets") - before;
    assert_eq!(got, n, "frames the kernel's iavf counted");
    assert_no_violations(lab, w.index, "pktgen");

    // Jumbo frames.
    lab.run_ok(&format!("ip link set {ifname} mtu 9000"), T)
        .expect("VF MTU 9000");
    lab.run_ok(
        &w.peer
            .wrap(&format!("ip link set {} mtu 9000", w.peer.ifname)),
        T,
    )
    .expect("peer MTU 9000");
    wait_carrier(lab, &ifname, Duration::from_secs(20));
    let (sent, got) = ping(lab, w, 20, 8000);
    assert_eq!((sent, got), (20, 20), "8000-byte pings at MTU 9000");
    lab.run_ok(&format!("ip link set {ifname} mtu 1500"), T)
        .expect("MTU back");
    lab.run_ok(
        &w.peer
            .wrap(&format!("ip link set {} mtu 1500", w.peer.ifname)),
        T,
    )
    .expect("peer MTU back");
    assert_no_violations(lab, w.index, "MTU 9000");

    // Down and up.
    lab.run_ok(
        &format!("ip link set {ifname} down; sleep 1; ip link set {ifname} up"),
        T,
    )
    .expect("down/up");
    wait_carrier(lab, &ifname, Duration::from_secs(20));
    let (_, got) = ping(lab, w, 20, 56);
    assert_eq!(got, 20, "ping after down/up");

    // A queue change (REQUEST_QUEUES is not needed for fewer; iavf
    // reconfigures its VSI queues).
    let out = lab
        .run(&format!("ethtool -L {ifname} combined 2"), T)
        .expect("ethtool ran");
    assert!(out.success(), "ethtool -L: {}{}", out.stdout, out.stderr);
    wait_carrier(lab, &ifname, Duration::from_secs(30));
    let ch = lab
        .run_ok(&format!("ethtool -l {ifname}"), T)
        .expect("ethtool -l");
    eprintln!("{}", ch.stdout);
    let (_, got) = ping(lab, w, 20, 56);
    assert_eq!(got, 20, "ping after ethtool -L combined 2");
    assert_no_violations(lab, w.index, "down/up and ethtool -L");

    // A PF-initiated reset.
    let mark = dmesg_mark(lab);
    lab.model_control(w.index, "pf reset").expect("pf reset");
    std::thread::sleep(Duration::from_secs(5));
    wait_carrier(lab, &ifname, Duration::from_secs(60));
    let mut got = 0;
    for _ in 0..6 {
        got = ping(lab, w, 10, 56).1;
        if got == 10 {
            break;
        }
    }
    let log = dmesg_since(lab, mark);
    eprintln!("kernel log after the PF reset:\n{log}");
    assert_eq!(got, 10, "ping after the PF reset; kernel log:\n{log}");
    assert!(
        lab.model_counter(w.index, "pf_resets").expect("counter") > 0,
        "the model saw no PF reset"
    );
    assert_no_violations(lab, w.index, "PF reset");
}

/// DPDK 22.11's net_iavf on model `w` (moved to vfio-pci): txonly counted
/// by the model and the peer's kernel (never more than DPDK claims), rxonly
/// with pktgen's frames counted exactly, with 1 queue and with 4.
fn dpdk_judges(lab: &Lab, w: &Wired) {
    lab.bind_driver(&w.model.pci, "vfio-pci")
        .expect("vfio-pci binds the model's function");
    let testpmd = |mode: &str, queues: u16| {
        let mut p = lab
            .spawn(&format!(
                "exec stdbuf -o0 -e0 dpdk-testpmd -l 0-1 -n 1 --no-huge -m 256 --iova-mode=va -a {} -- \
                 --forward-mode={mode} --eth-peer=0,{} --rxq={queues} --txq={queues} \
                 --total-num-mbufs=8192 --burst=32 --stats-period 1",
                w.model.pci, w.peer.mac
            ))
            .expect("dpdk-testpmd");
        if let Err(e) = p.wait_for_output("pps", T) {
            panic!("dpdk-testpmd {mode} did not start: {e}");
        }
        p
    };
    let peer_rx = || lab.peer_counter(&w.peer, "rx_packets").expect("peer rx");
    let model_tx = || lab.model_counter(w.index, "tx_frames").expect("tx_frames");

    let (p0, m0) = (peer_rx(), model_tx());
    let tp = testpmd("txonly", 1);
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

    for queues in [1, 4] {
        let tp = testpmd("rxonly", queues);
        let (n, _) = lab
            .pktgen_with(
                &w.peer,
                w.mac,
                w.ip,
                3000,
                &pollux_lab::Pktgen {
                    flows: 64,
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
            "DPDK rxonly with {queues} queues received of pktgen's {n}:\n{}",
            out.stdout
        );
        assert_no_violations(lab, w.index, "DPDK rxonly");
    }
}

/// The checks, in one boot.
#[test]
fn iavf_checks_in_one_boot() {
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
        "linux_iavf_binds_both_device_ids",
        Box::new(move || {
            lab.run_ok("modprobe iavf", T).expect("modprobe iavf");
            std::thread::sleep(Duration::from_secs(3));
            for i in 0..WIRED.len() {
                let m = lab.model(i).expect("model");
                assert_eq!(driver_of(lab, &m.pci), "iavf", "model {i} at {}", m.pci);
                let ifname = netdev_of(lab, &m.pci);
                lab.run_ok(
                    &format!(
                        "sysctl -qw net.ipv6.conf.{ifname}.disable_ipv6=1; ip link set {ifname} up"
                    ),
                    T,
                )
                .expect("up");
                wait_carrier(lab, &ifname, Duration::from_secs(20));
                assert_no_violations(lab, i, "bring-up");
            }
            let log = dmesg_since(lab, 0);
            for i in 0..WIRED.len() {
                let pci = &lab.model(i).expect("model").pci;
                assert!(
                    log.lines().any(|l| l.contains(pci.as_str())
                        && l.contains("NIC Link is Up Speed is 10 Gbps Full Duplex")),
                    "the kernel did not report {pci}'s link at 10 Gb/s:\n{log}"
                );
            }
        }),
    )];
    for w in &wired {
        checks.push((
            [
                "linux_iavf_judges_the_avf_model",
                "linux_iavf_judges_the_x710_vf_model",
            ][w.index],
            Box::new(move || linux_iavf_judges(lab, w)),
        ));
    }
    for w in &wired {
        checks.push((
            ["dpdk_judges_the_avf_model", "dpdk_judges_the_x710_vf_model"][w.index],
            Box::new(move || dpdk_judges(lab, w)),
        ));
    }
    let (w0, w1) = (&wired[0], &wired[1]);
    type OnOne = fn(&Lab, &Wired);
    let matrix: [([&'static str; 2], OnOne); 5] = [
        (
            [
                "pollux_rxonly_counts_exactly_what_pktgen_sent_avf",
                "pollux_rxonly_counts_exactly_what_pktgen_sent_x710",
            ],
            pollux_rxonly_exact,
        ),
        (
            [
                "pollux_txonly_counted_by_the_model_and_the_peer_avf",
                "pollux_txonly_counted_by_the_model_and_the_peer_x710",
            ],
            pollux_txonly_counted,
        ),
        (
            [
                "pollux_responder_answers_kernel_ping_avf",
                "pollux_responder_answers_kernel_ping_x710",
            ],
            |lab, w| responder_ping(lab, w, 200),
        ),
        (
            [
                "pollux_macswap_returns_every_frame_avf",
                "pollux_macswap_returns_every_frame_x710",
            ],
            pollux_macswap,
        ),
        (
            [
                "pollux_link_follows_and_a_pf_reset_mid_traffic_is_recovered_avf",
                "pollux_link_follows_and_a_pf_reset_mid_traffic_is_recovered_x710",
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
        Box::new(move || pollux_sigint_and_errors(lab, w0, w1)),
    ));
    checks.push((
        "pollux_rss_over_four_queues_on_two_lcores_as_the_model_hashes",
        Box::new(move || pollux_rss_4(lab, w0)),
    ));
    checks.push((
        "pollux_8023ad_bond_with_linux_bonding",
        Box::new(move || pollux_lacp_bond(lab, w0, w1)),
    ));
    checks.push((
        "side_by_side_with_dpdk_net_iavf",
        Box::new(move || side_by_side(lab, w0, &FAMILY)),
    ));
    checks.push((
        "violation_log_empty_and_catches_a_tail_past_the_ring",
        Box::new(move || violations_empty_then_caught(lab, w0, WIRED.len(), &FAMILY)),
    ));
    pollux_lab::run_checks("iavf", checks);
}

/// RSS on 4 queue pairs polled by 2 lcores: pktgen's N frames over 64 UDP
/// flows are counted exactly, no flow is seen on two queues, and each queue
/// got exactly what the model's Toeplitz hash (over the key, LUT and HENA
/// Pollux configured) sent it.
fn pollux_rss_4(lab: &Lab, w: &Wired) {
    to_vfio(lab, w);
    address_peer(lab, w);
    let q = |i: usize| {
        lab.model_counter(w.index, &format!("rx_q{i}_frames"))
            .expect("the model's per-queue counter")
    };
    let before: Vec<u64> = (0..4).map(q).collect();
    let tp = start_testpmd(
        lab,
        w,
        "--fwd rxonly --rxq 4 --txq 4 --nb-cores 2 --no-pin --flow-queues --rxd 1024",
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
    let model: Vec<u64> = (0..4).map(|i| q(i) - before[i]).collect();
    let ours: Vec<u64> = (0..4).map(|i| queue_rx(&r, i)).collect();
    eprintln!("RSS: {r}\nthe model hashed {model:?} to queues 0-3; Pollux counted {ours:?}");
    assert_eq!(port0(&r, "rx_packets"), n, "{r}");
    assert_eq!(ours, model, "per queue: Pollux vs the model's hash");
    assert!(
        ours.iter().filter(|&&x| x > 0).count() >= 3,
        "RSS spread over too few queues: {ours:?}"
    );
    assert_eq!(r["flows"][0]["on_several_queues"], 0, "{r}");
    assert_eq!(r["mbufs_free_at_exit"], r["mbufs_total"], "{r}");
    assert_no_violations(lab, w.index, "RSS");
}

/// SIGINT mid-txonly exits clean with every mbuf back, and the next run on
/// the same VF works; the error paths each say what is wrong: a VF bound
/// to no driver, one on the kernel's iavf, a function no Pollux driver
/// handles, a missing /dev/vfio/N. Model `other` is used for them and left
/// on vfio-pci.
fn pollux_sigint_and_errors(lab: &Lab, w: &Wired, other: &Wired) {
    to_vfio(lab, w);
    let tp = start_testpmd(lab, w, &format!("--fwd txonly --eth-peer 0,{}", w.peer.mac));
    std::thread::sleep(Duration::from_secs(3));
    let out = tp
        .stop_with(2, Duration::from_secs(20))
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
    let pci = other.model.pci.clone();
    // On the kernel's iavf.
    lab.bind_driver(&pci, "iavf").expect("iavf binds it");
    let e = run(&pci);
    assert!(!e.success(), "a kernel-bound VF accepted");
    assert!(
        e.stderr.contains("net_iavf") && e.stderr.contains("not vfio-pci"),
        "kernel-bound VF: {}",
        e.stderr
    );
    // On no driver at all.
    lab.unbind_driver(&pci).expect("unbind");
    let e = run(&pci);
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
    // On vfio-pci, its group node gone.
    lab.bind_driver(&pci, "vfio-pci")
        .expect("vfio-pci binds it");
    let group = other.model.iommu_group.expect("group");
    let node = format!("/dev/vfio/{group}");
    lab.run_ok(&format!("mv {node} {node}.away"), T)
        .expect("hide node");
    let e = run(&pci);
    lab.run_ok(&format!("mv {node}.away {node}"), T)
        .expect("restore node");
    assert!(!e.success(), "missing group node accepted");
    assert!(
        e.stderr.contains(&format!("{node} does not exist")),
        "{}",
        e.stderr
    );
    assert_no_violations(lab, w.index, "SIGINT and the error paths");
    assert_no_violations(lab, other.index, "SIGINT and the error paths");
}
