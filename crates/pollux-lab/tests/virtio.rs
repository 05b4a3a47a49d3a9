//! Lab tests of virtio-net SR-IOV (QEMU 10.1 and later): a virtio-net PF
//! whose VFs the guest creates, one bound to vfio-pci for a userspace
//! driver and one driven by the guest's own virtio_net.
//!
//! One boot for the whole file: every check runs in the same guest. The
//! judges are the guest kernel (sysfs, its virtio_net answering ping, its
//! pktgen, the peers' interface counters), DPDK 22.11's own net_virtio PMD,
//! and QEMU's virtio-net device itself, which nobody on this project wrote.
//! Pollux's virtio PMD (`pollux-virtio`) runs on VF 0 after DPDK's did.

use std::time::{Duration, Instant};

use pollux_lab::{
    host_binary, Lab, Peer, PeerInfo, Pktgen, Segment, Topology, VfInfo, VirtioPf, WireKind,
};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

fn rx_packets(lab: &Lab, peer: &PeerInfo) -> u64 {
    lab.peer_counter(peer, "rx_packets").expect("peer counters")
}

/// A virtio-net PF with 2 VFs: the guest sees both as SR-IOV VFs in IOMMU
/// groups of their own; VF 0 on vfio-pci gets its `/dev/vfio/N` and DPDK's
/// net_virtio sends through it (DMA through the vIOMMU) frames its peer's
/// kernel counts; VF 1 on virtio-pci becomes a virtio_net interface that
/// pings its peer.
#[test]
fn virtio_checks_in_one_boot() {
    // No huge pages in the guest: the virtqueues are in 4 KiB pages, where
    // QEMU's IOMMU path misplaces a used element that straddles two pages
    // (pollux_virtio::vring::used_offset), so the rxonly check below judges
    // the layout that avoids it.
    // Segment 0: a plain virtio-net-pci with packed virtqueues, made for
    // vfio (Peer::virtio_vfio), wired to a kernel virtio-net peer.
    // Segment 1: a tap wire (a bridge in a host namespace of the run's
    // own): a plain virtio-net-pci with 2 queue pairs and RSS, made for
    // vfio, and a kernel peer that checks every checksum itself
    // (guest_csum=off: its virtio_net gets no checksum flags from QEMU).
    let topo = Topology::new()
        .virtio_pf(VirtioPf::new(2))
        .segment(
            Segment::new(WireKind::Dgram)
                .peer(Peer::virtio_vfio(true).root_netns())
                .peer(Peer::virtio()),
        )
        .segment(
            Segment::new(WireKind::Tap)
                .peer(Peer::virtio_vfio(false).root_netns().queues(2))
                .peer(Peer::virtio().device_props("guest_csum=off")),
        );
    let lab = match Lab::boot(&topo) {
        Ok(l) => l,
        Err(e) => panic!("the lab did not boot: {e}"),
    };
    let lab = &lab;
    pollux_lab::run_checks(
        "virtio",
        vec![
            (
                "virtio_net_vfs_on_vfio_and_on_the_kernel_driver",
                Box::new(move || virtio_net_vfs_on_vfio_and_on_the_kernel_driver(lab)),
            ),
            (
                "pollux_rxonly_counts_exactly_what_pktgen_sent",
                Box::new(move || pollux_rxonly_counts_exactly_what_pktgen_sent(lab)),
            ),
            (
                "pollux_txonly_counted_by_the_peer",
                Box::new(move || pollux_txonly_counted_by_the_peer(lab)),
            ),
            (
                "pollux_responder_answers_ping_and_follows_set_link",
                Box::new(move || pollux_responder_answers_ping_and_follows_set_link(lab)),
            ),
            (
                "pollux_macswap_and_sigint",
                Box::new(move || pollux_macswap_and_sigint(lab)),
            ),
            (
                "plain_virtio_net_pci_with_packed_queues",
                Box::new(move || plain_virtio_net_pci_with_packed_queues(lab)),
            ),
            (
                "two_queue_pairs_on_a_multi_queue_tap",
                Box::new(move || two_queue_pairs_on_a_multi_queue_tap(lab)),
            ),
            (
                "side_by_side_with_dpdk_net_virtio",
                Box::new(move || side_by_side_with_dpdk_net_virtio(lab)),
            ),
        ],
    );
}

fn virtio_net_vfs_on_vfio_and_on_the_kernel_driver(lab: &Lab) {
    let pf = lab.virtio_pf(0).expect("virtio PF 0").clone();
    let dev = format!("/sys/bus/pci/devices/{}", pf.pci);

    // SR-IOV as the guest kernel sees it: the capability offers exactly the
    // VFs QEMU was given, both are enabled, and virtfn* name them.
    let s = lab
        .run_ok(
            &format!(
                "cat {dev}/vendor {dev}/device {dev}/sriov_totalvfs {dev}/sriov_numvfs; ls -d {dev}/virtfn*"
            ),
            T,
        )
        .expect("sysfs");
    let lines: Vec<&str> = s.stdout.lines().collect();
    assert_eq!(
        &lines[..4],
        &["0x1af4", "0x1041", "2", "2"],
        "PF ids, sriov_totalvfs, sriov_numvfs: {}",
        s.stdout
    );
    assert_eq!(
        &lines[4..],
        &[format!("{dev}/virtfn0"), format!("{dev}/virtfn1")],
        "{}",
        s.stdout
    );
    assert_eq!(pf.vfs.len(), 2);
    let pf_group = lab
        .run_ok(&format!("basename $(readlink {dev}/iommu_group)"), T)
        .expect("PF group")
        .stdout
        .trim()
        .to_owned();
    let groups: Vec<u32> = pf
        .vfs
        .iter()
        .map(|v| v.iommu_group.expect("every VF has an IOMMU group"))
        .collect();
    assert_ne!(groups[0], groups[1], "VFs share an IOMMU group");
    assert!(
        !groups.iter().any(|g| g.to_string() == pf_group),
        "a VF shares the PF's IOMMU group {pf_group}"
    );
    for vf in &pf.vfs {
        let o = lab
            .run_ok(
                &format!(
                    "cat /sys/bus/pci/devices/{0}/vendor /sys/bus/pci/devices/{0}/device; [ ! -e /sys/bus/pci/devices/{0}/driver ] && echo unbound",
                    vf.pci
                ),
                T,
            )
            .expect("VF sysfs");
        assert_eq!(o.stdout, "0x1af4\n0x1041\nunbound\n", "VF {}", vf.pci);
    }

    // VF 0 on vfio-pci: its group's device node appears.
    let vf0 = &pf.vfs[0];
    let node = lab.bind_vfio(vf0).expect("bind VF 0 to vfio-pci");
    assert_eq!(
        node.display().to_string(),
        format!("/dev/vfio/{}", groups[0])
    );

    // DPDK's net_virtio on VF 0 through vfio and the vIOMMU: what it sends
    // arrives at the peer (iommu_platform=on makes the device translate the
    // IOVAs it is given; without it nothing sane would arrive). The peer
    // counts at least one frame and never more than DPDK says it sent.
    let peer0 = &pf.vf_peers[0];
    // DPDK's txonly once stalled after its first burst (sent 32 in 15 s,
    // 1 of 9 runs; docs/lab.md): a stalled run is measured again once and
    // both runs are printed.
    let mut attempt = 0;
    let (d, sent, got) = loop {
        let before = rx_packets(lab, peer0);
        let d = lab
            .run(
                &format!(
                    "timeout -s INT 15 stdbuf -o0 dpdk-testpmd -l 0-1 -n 1 --no-huge -m 256 --iova-mode=va -a {} -- \
                     --forward-mode=txonly --eth-peer=0,{} --total-num-mbufs=4096 --stats-period 5",
                    vf0.pci, peer0.mac
                ),
                Duration::from_secs(120),
            )
            .expect("dpdk-testpmd ran");
        let got = rx_packets(lab, peer0) - before;
        // Non-interactive testpmd without a stats period ends at once when
        // stdin is empty ("Press enter to exit"); with one it runs until
        // SIGINT and prints the accumulated totals last.
        let sent: u64 = d
            .stdout
            .rsplit("TX-packets:")
            .next()
            .filter(|_| d.stdout.contains("Accumulated forward statistics"))
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "no TX-packets in dpdk-testpmd's output:\n{}\n{}",
                    d.stdout, d.stderr
                )
            });
        attempt += 1;
        if sent > 1000 || attempt == 2 {
            break (d, sent, got);
        }
        eprintln!(
            "DPDK's txonly stalled (sent {sent}, the peer received {got}); once more:\n{}",
            d.stdout
        );
    };
    eprintln!(
        "{}\nnet_virtio on VF 0 sent {sent}; the peer's kernel received {got}",
        d.stdout
    );
    assert!(
        d.stdout.contains("net_virtio") || d.stderr.contains("net_virtio"),
        "DPDK did not use net_virtio:\n{}\n{}",
        d.stdout,
        d.stderr
    );
    assert!(got > 1000, "the peer received only {got}:\n{}", d.stdout);
    assert!(
        got <= sent,
        "the peer received {got}, more than DPDK sent ({sent})"
    );

    // VF 1 on the guest's virtio_net: an interface that pings its peer.
    let vf1 = &pf.vfs[1];
    lab.bind_driver(&vf1.pci, "virtio-pci")
        .expect("bind VF 1 to virtio-pci");
    let ifname = {
        let glob = format!("/sys/bus/pci/devices/{}/virtio*/net/*", vf1.pci);
        lab.wait_until(&format!("[ -e $(echo {glob}) ]"), T)
            .expect("VF 1's netdev appears");
        // udev renames it (eth0 to enp1s0v1) right after it appears.
        lab.run_ok("udevadm settle --timeout=30", T)
            .expect("udev settles");
        let o = lab
            .run_ok(&format!("basename {glob}"), T)
            .expect("VF 1's netdev");
        o.stdout.trim().to_owned()
    };
    let mac = lab
        .run_ok(&format!("cat /sys/class/net/{ifname}/address"), T)
        .expect("VF 1's MAC");
    assert_eq!(mac.stdout.trim(), pf.vf_macs[1], "VIRTIO_NET_F_MAC");
    let peer1 = &pf.vf_peers[1];
    lab.run_ok(
        &format!(
            "ip addr add 169.254.30.1/24 dev {ifname} && ip link set {ifname} up && {}",
            peer1.wrap(&format!("ip addr add 169.254.30.2/24 dev {}", peer1.ifname))
        ),
        T,
    )
    .expect("addresses");
    let ping = lab
        .run(
            "ping -c 20 -i 0.2 -W 2 169.254.30.2",
            Duration::from_secs(60),
        )
        .expect("ping ran");
    assert!(
        ping.stdout
            .contains("20 packets transmitted, 20 received, 0% packet loss"),
        "{}\n{}",
        ping.stdout,
        ping.stderr
    );
}

// ---- Pollux's virtio PMD on VF 0 (bound to vfio-pci by the first check) ----

const VF_IP: &str = "169.254.31.1";
const PEER_IP: &str = "169.254.31.2";
/// An address on the peers' subnet that no NIC has.
const FAR_IP: &str = "169.254.31.77";

fn pollux() -> String {
    host_binary("pollux")
        .expect("pollux binary built")
        .display()
        .to_string()
}

/// VF 0 (on vfio-pci) and its peer, the peer addressed once.
fn vf0(lab: &Lab) -> (VfInfo, PeerInfo, String) {
    let pf = lab.virtio_pf(0).expect("virtio PF 0");
    let vf = pf.vfs[0].clone();
    let peer = pf.vf_peers[0].clone();
    lab.run_ok(
        &peer.wrap(&format!(
            "sysctl -qw net.ipv6.conf.{0}.disable_ipv6=1; ip addr replace {PEER_IP}/24 dev {0} && ip link set {0} up",
            peer.ifname
        )),
        T,
    )
    .expect("peer address");
    (vf, peer, pf.vf_netdevs[0].clone())
}

/// The final JSON line of `pollux testpmd --json`.
fn report(stdout: &str) -> Value {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON report in:\n{stdout}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON {line}: {e}"))
}

fn port0(r: &Value, key: &str) -> u64 {
    r["ports"][0][key]
        .as_u64()
        .unwrap_or_else(|| panic!("no ports[0].{key} in {r}"))
}

/// `pollux testpmd` on VF 0 drove it with net_virtio (the registry found
/// Pollux's virtio PMD for 1af4:1041).
fn assert_virtio_pmd(stderr: &str) {
    assert!(
        stderr.contains("net_virtio"),
        "testpmd did not use net_virtio:\n{stderr}"
    );
}

/// pktgen on the peer's kernel sends N frames to VF 0's MAC, received by
/// DPDK's net_virtio (rxonly) and then by Pollux's virtio PMD (`pollux
/// testpmd --fwd rxonly`, 1024-entry queues in 4 KiB pages) on the same VF:
/// both count exactly N, with no error, and Pollux gives every buffer back.
///
/// This check found the QEMU fault `pollux_virtio::vring::used_offset`
/// works around: with the used ring page-aligned, descriptor 511 came back
/// with length 0 every time (9 of 5000 frames lost), while DPDK, whose
/// memory is THP-backed and so physically contiguous, lost none.
fn pollux_rxonly_counts_exactly_what_pktgen_sent(lab: &Lab) {
    let (vf, peer, _) = vf0(lab);
    let mac = lab.virtio_pf(0).expect("PF").vf_macs[0].clone();
    let n = 5_000;

    let mut dp = lab
        .spawn(&format!(
            "exec stdbuf -o0 -e0 dpdk-testpmd -l 0-1 -n 1 --no-huge -m 256 --iova-mode=va -a {} -- \
             --forward-mode=rxonly --rxd=1024 --total-num-mbufs=8192 --stats-period 1",
            vf.pci
        ))
        .expect("dpdk-testpmd");
    if let Err(e) = dp.wait_for_output("pps", T) {
        panic!("dpdk-testpmd rxonly did not start: {e}");
    }
    let (sent, _) = lab.pktgen(&peer, &mac, VF_IP, n).expect("pktgen ran");
    assert_eq!(sent, n, "pktgen sent {sent}");
    std::thread::sleep(Duration::from_secs(2));
    let d = dp
        .stop_with(2, Duration::from_secs(20))
        .expect("dpdk-testpmd ended");
    let dpdk_rx = dpdk_stat(&d.stdout, "RX-packets:");
    let dpdk_missed = n - dpdk_rx.min(n);

    let mut secs = 0.0;
    let (r, stderr) = pollux_rxonly(lab, &vf.pci, "", || {
        let (sent, s) = lab.pktgen(&peer, &mac, VF_IP, n).expect("pktgen ran");
        assert_eq!(sent, n, "pktgen sent {sent}");
        secs = s;
    });
    let (rx, errors) = (port0(&r, "rx_packets"), port0(&r, "errors"));
    eprintln!(
        "pktgen: {n} frames in {secs:.3} s; DPDK net_virtio received {dpdk_rx}; \
         Pollux received {rx} and counted {errors} errors\n{r}\n{stderr}"
    );
    assert_eq!(dpdk_missed, 0, "DPDK's net_virtio missed {dpdk_missed}");
    assert_eq!((rx, errors), (n, 0), "{r}");
    assert_eq!(r["mbufs_free_at_exit"], r["mbufs_total"], "{r}");
}

/// `<key>: <number>` from DPDK testpmd's accumulated statistics.
fn dpdk_stat(text: &str, key: &str) -> u64 {
    let acc = text
        .rfind("Accumulated forward statistics")
        .map(|i| &text[i..])
        .unwrap_or(text);
    acc.split(key)
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in DPDK output:\n{text}"))
}

/// `pollux testpmd --fwd txonly` on VF 0 for 2 s: the peer's kernel counts
/// the frames; it never counts more than testpmd says it sent, and not
/// fewer than 99 % (the wire is a unix datagram pair inside QEMU).
fn pollux_txonly_counted_by_the_peer(lab: &Lab) {
    let (vf, peer, _) = vf0(lab);
    // The debug build (the suite's) and the release build (the
    // side-by-side's): a faster driver must lose no more.
    for bin in [pollux(), pollux_release()] {
        let before = rx_packets(lab, &peer);
        let out = lab
            .run(
                &format!(
                    "{bin} --log pollux_virtio=info testpmd -a {} --fwd txonly --eth-peer 0,{} --duration 2 --json --stats-period 0",
                    vf.pci, peer.mac
                ),
                Duration::from_secs(120),
            )
            .expect("testpmd ran");
        assert!(
            out.success(),
            "testpmd failed:\n{}\n{}",
            out.stdout,
            out.stderr
        );
        assert_virtio_pmd(&out.stderr);
        let r = report(&out.stdout);
        std::thread::sleep(Duration::from_secs(1));
        let got = rx_packets(lab, &peer) - before;
        let sent = port0(&r, "tx_packets");
        eprintln!(
            "{bin}: {r}\nthe peer's kernel received {got} of {sent}; the driver: {}",
            closing_line(&out.stderr)
        );
        assert!(sent > 1000, "testpmd sent only {sent}: {r}");
        assert!(
            got <= sent,
            "the peer received {got}, more than sent ({sent})"
        );
        assert!(
            got * 100 >= sent * 99,
            "{bin}: the peer received {got} of {sent}: {r}"
        );
        assert_eq!(r["mbufs_free_at_exit"], r["mbufs_total"], "{r}");
    }
}

/// The driver's "closing" log line (counts and notifications), without
/// the terminal colour codes the log carries.
fn closing_line(stderr: &str) -> String {
    let mut plain = String::new();
    let mut chars = stderr.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... final letter
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
        .lines()
        .find(|l| l.contains("closing"))
        .unwrap_or("(none)")
        .to_owned()
}

/// `examples/responder` on VF 0 answers the peer kernel's pings (ARP and
/// ICMP echo), and its link follows QMP `set_link` on the VF's netdev
/// (QEMU clears VIRTIO_NET_S_LINK_UP) within 1.5 s each way; pings are
/// answered again after.
fn pollux_responder_answers_ping_and_follows_set_link(lab: &Lab) {
    let (vf, peer, netdev) = vf0(lab);
    let mut app = lab
        .start_responder("", &vf.pci, &format!("--ip {VF_IP} --report-link"))
        .unwrap_or_else(|e| panic!("responder did not come up: {e:?}"));
    app.wait_for_output("link up", T).expect("link up at start");
    let ping = |count: u32| {
        lab.run(
            &peer.wrap(&format!("ping -c {count} -i 0.05 -W 2 {VF_IP}")),
            Duration::from_secs(120),
        )
        .expect("ping ran")
    };
    let p = ping(100);
    assert!(
        p.stdout
            .contains("100 packets transmitted, 100 received, 0% packet loss"),
        "{}\n{}",
        p.stdout,
        app.stderr()
    );
    let t0 = Instant::now();
    lab.set_link(&netdev, false).expect("set_link off");
    app.wait_for_output("link down", Duration::from_millis(1500))
        .unwrap_or_else(|e| panic!("link did not go down within 1.5 s: {e}"));
    let down = t0.elapsed();
    let t1 = Instant::now();
    lab.set_link(&netdev, true).expect("set_link on");
    app.wait_for_output("link up (2)", Duration::from_millis(1500))
        .unwrap_or_else(|e| panic!("link did not come back within 1.5 s: {e}"));
    eprintln!("link down seen after {down:?}, up after {:?}", t1.elapsed());
    let p = ping(20);
    assert!(
        p.stdout.contains("20 received"),
        "after set_link: {}",
        p.stdout
    );
    app.write_stdin("stop\n").expect("stop the responder");
    let out = app.wait(T).expect("responder ended");
    eprintln!("{}", out.stdout);
    assert!(out.status.success(), "responder failed: {}", out.stderr);
    assert!(out.stdout.contains("icmp=120"), "{}", out.stdout);
    assert!(
        out.stdout.contains("pool_free=2048/2048"),
        "leaked buffers: {}",
        out.stdout
    );
}

/// `pollux testpmd --fwd macswap` on VF 0 while the peer pings it through
/// (each echo request comes back with the addresses swapped, which the
/// peer's kernel counts as received frames); SIGINT mid-traffic ends it
/// cleanly with every buffer back; a second run on the same VF works.
fn pollux_macswap_and_sigint(lab: &Lab) {
    let (vf, peer, _) = vf0(lab);
    for round in 0..2 {
        let mut tp = lab
            .spawn(&format!(
                "exec {} testpmd -a {} --fwd macswap --json --stats-period 0",
                pollux(),
                vf.pci
            ))
            .expect("start testpmd");
        if let Err(e) = tp.wait_for_output("forwarding:", T) {
            panic!("testpmd did not start (round {round}): {e:?}");
        }
        let before = rx_packets(lab, &peer);
        let mac = lab.virtio_pf(0).expect("PF").vf_macs[0].clone();
        let (sent, _) = lab.pktgen(&peer, &mac, VF_IP, 2000).expect("pktgen");
        std::thread::sleep(Duration::from_secs(1));
        let back = rx_packets(lab, &peer) - before;
        let out = tp
            .stop_with(2, Duration::from_secs(20))
            .expect("testpmd ended on SIGINT");
        assert!(
            out.status.success(),
            "round {round}: {}\n{}",
            out.stdout,
            out.stderr
        );
        let r = report(&out.stdout);
        eprintln!("round {round}: pktgen sent {sent}, the peer got {back} back\n{r}");
        // What the transmit queue had no room for, testpmd drops and counts
        // (as DPDK's does without --retry): QEMU empties a virtio transmit
        // queue in batches, so a pktgen flood can fill it.
        let (tx, dropped) = (port0(&r, "tx_packets"), port0(&r, "tx_dropped"));
        let rx = port0(&r, "rx_packets");
        assert_eq!(rx, sent, "{r}");
        assert_eq!(tx + dropped, rx, "{r}");
        assert!(tx * 2 > sent, "most frames go back: {r}");
        assert_eq!(back, tx, "frames swapped back to the peer: {r}");
        assert_eq!(r["mbufs_free_at_exit"], r["mbufs_total"], "{r}");
    }
}

// ---- side by side with DPDK's net_virtio on VF 0 ----

/// The release `pollux` binary (performance runs need an optimised build;
/// `cargo xtask lab test` builds it).
fn pollux_release() -> String {
    let p = pollux_lab::target_dir().join("release/pollux");
    assert!(
        p.is_file(),
        "{} is not built: run `cargo build --release -p pollux-cli` first",
        p.display()
    );
    p.display().to_string()
}

/// One PMD's txonly on VF 0: frames per second the peer's kernel received
/// over `secs` seconds of steady state (after 1 s of warm-up).
fn tx_rate(lab: &Lab, vf: &VfInfo, peer: &PeerInfo, dpdk: bool, secs: u64) -> f64 {
    let cmd = if dpdk {
        format!(
            "exec stdbuf -o0 -e0 dpdk-testpmd -l 0-1 -n 1 --no-huge -m 256 --iova-mode=va -a {} -- \
             --forward-mode=txonly --eth-peer=0,{} --total-num-mbufs=8192 --burst=32 --stats-period 1",
            vf.pci, peer.mac
        )
    } else {
        format!(
            "exec {} --log pollux_virtio=info testpmd -a {} --fwd txonly --eth-peer 0,{} --duration {} --json --stats-period 0",
            pollux_release(),
            vf.pci,
            peer.mac,
            secs + 3
        )
    };
    let mut p = lab.spawn(&cmd).expect("testpmd");
    let ready = if dpdk { "pps" } else { "forwarding:" };
    if let Err(e) = p.wait_for_output(ready, T) {
        panic!("txonly (dpdk={dpdk}) did not start: {e:?}");
    }
    std::thread::sleep(Duration::from_secs(1));
    let rate = lab.peer_rx_rate(peer, secs).expect("peer rx rate");
    let out = p
        .stop_with(2, Duration::from_secs(30))
        .expect("txonly ended");
    if !dpdk {
        let r = report(&out.stdout);
        assert_eq!(r["mbufs_free_at_exit"], r["mbufs_total"], "{r}");
        eprintln!(
            "pollux txonly: {} sent, {rate:.0} pps on the wire; the driver: {}",
            port0(&r, "tx_packets"),
            closing_line(&out.stderr)
        );
    }
    rate
}

/// One PMD's rxonly on VF 0 while pktgen sends `n` frames: (received,
/// pktgen's seconds).
fn rx_run(lab: &Lab, vf: &VfInfo, peer: &PeerInfo, mac: &str, dpdk: bool, n: u64) -> (u64, f64) {
    let cmd = if dpdk {
        format!(
            "exec stdbuf -o0 -e0 dpdk-testpmd -l 0-1 -n 1 --no-huge -m 256 --iova-mode=va -a {} -- \
             --forward-mode=rxonly --rxd=1024 --total-num-mbufs=8192 --burst=32 --stats-period 1",
            vf.pci
        )
    } else {
        format!(
            "exec {} testpmd -a {} --fwd rxonly --rxd 1024 --json --stats-period 0",
            pollux_release(),
            vf.pci
        )
    };
    let mut p = lab.spawn(&cmd).expect("testpmd");
    let ready = if dpdk { "pps" } else { "forwarding:" };
    if let Err(e) = p.wait_for_output(ready, T) {
        panic!("rxonly (dpdk={dpdk}) did not start: {e:?}");
    }
    let (sent, t) = lab.pktgen(peer, mac, VF_IP, n).expect("pktgen");
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

/// Pollux's virtio PMD and DPDK 22.11's net_virtio on the same VF in the
/// same boot, measured the same way, in interleaved pairs (the order
/// alternates, so the host's drift hits both alike): 7 pairs under `cargo
/// xtask lab bench` (`POLLUX_LAB_BENCH=1`), 1 in the suite (which checks
/// that both move traffic and prints the figures, asserting no ratio).
/// - txonly, 64-byte frames: frames per second the peer's kernel received
///   (its rx_packets counter over 4 s, 2 s in the suite), both with 4 KiB
///   pages for rings (DPDK `--no-huge`, Pollux with no huge pages in the
///   guest) and pools.
/// - rxonly: pktgen offers N 60-byte frames as fast as it can; pps =
///   received / pktgen's time (bounded by pktgen), and the share received.
///
/// Both forward on guest CPU 1 (DPDK `-l 0-1`: main lcore 0; Pollux's
/// testpmd puts its main lcore on the CPU the forwarding lcore leaves).
/// txonly is measured twice: with the peer's interrupts where the guest
/// put them, then steered to CPU 0 (as the igbvf comparison does); rxonly
/// with them steered. Printed: every sample, each
/// side's median and spread, and the median and spread of the per-pair
/// ratios, for docs/performance.md.
fn side_by_side_with_dpdk_net_virtio(lab: &Lab) {
    let (vf, peer, _) = vf0(lab);
    let mac = lab.virtio_pf(0).expect("PF").vf_macs[0].clone();
    let long = std::env::var_os("POLLUX_LAB_BENCH").is_some();
    let (pairs, secs, n) = if long {
        (7, 4, 100_000)
    } else {
        (1, 2, 20_000)
    };
    // txonly first with the peer's interrupts where the guest put them,
    // then (below) with them steered to CPU 0: the two placements give
    // different answers (docs/performance.md), so both are kept.
    let mut tx_free = Vec::new();
    for k in 0..pairs {
        let mut t = [0.0; 2];
        for i in 0..2 {
            let dpdk = (i + k) % 2 == 1;
            t[dpdk as usize] = tx_rate(lab, &vf, &peer, dpdk, secs);
        }
        eprintln!(
            "pair {k}, peer interrupts unsteered: txonly delivered pps pollux {:.0} dpdk {:.0}",
            t[0], t[1]
        );
        tx_free.push((t[0], t[1]));
    }
    let steered = lab
        .run_ok(
            &format!(
                "n=0; for i in $(ls /sys/bus/pci/devices/{}/msi_irqs); do \
                 echo 0 > /proc/irq/$i/smp_affinity_list 2>/dev/null && n=$((n+1)); done; echo $n",
                peer.pci
            ),
            T,
        )
        .expect("steer the peer's interrupts");
    assert_ne!(
        steered.stdout.trim(),
        "0",
        "no interrupt of the peer steered"
    );
    let (mut tx, mut rx_pps, mut rx_share) = (Vec::new(), Vec::new(), Vec::new());
    for k in 0..pairs {
        let mut t = [0.0; 2];
        let mut r = [(0u64, 0.0f64); 2];
        // Pair k: Pollux first when k is even, DPDK first when odd.
        for i in 0..2 {
            let dpdk = (i + k) % 2 == 1;
            t[dpdk as usize] = tx_rate(lab, &vf, &peer, dpdk, secs);
        }
        for i in 0..2 {
            let dpdk = (i + k) % 2 == 1;
            r[dpdk as usize] = rx_run(lab, &vf, &peer, &mac, dpdk, n);
        }
        eprintln!("pair {k}: txonly delivered pps pollux {:.0} dpdk {:.0}; rxonly (received, pktgen s) pollux {:?} dpdk {:?}", t[0], t[1], r[0], r[1]);
        tx.push((t[0], t[1]));
        rx_pps.push((r[0].0 as f64 / r[0].1, r[1].0 as f64 / r[1].1));
        rx_share.push((r[0].0 as f64 / n as f64, r[1].0 as f64 / n as f64));
    }
    let line = pollux_lab::samples::pair_row;
    let pps = |x: f64| format!("{x:.0}");
    let pct = |x: f64| format!("{:.2}%", 100.0 * x);
    let table = format!(
        "| mode ({pairs} interleaved pairs; median (min–max)) | pollux virtio | DPDK net_virtio | pollux / DPDK per pair |\n\
         | --- | ---: | ---: | ---: |\n{}\n{}\n{}\n{}\n\
         samples (pollux, DPDK): txonly unsteered {tx_free:.0?}; txonly steered {tx:.0?}; rxonly pps {rx_pps:.0?}; rxonly share {rx_share:.4?}",
        line(
            "txonly, 64 B, received by the peer kernel (pps), peer interrupts unsteered",
            &tx_free,
            pps
        ),
        line(
            "txonly, 64 B, received by the peer kernel (pps), peer interrupts on CPU 0",
            &tx,
            pps
        ),
        line(&format!("rxonly, 60 B, pps (bounded by pktgen, {n} frames)"), &rx_pps, pps),
        line("rxonly, share of pktgen's frames received", &rx_share, pct),
    );
    println!("SIDE-BY-SIDE virtio\n{table}");
    assert!(
        tx.iter().chain(&tx_free).all(|p| p.0 > 0.0 && p.1 > 0.0),
        "a PMD put nothing on the wire:\n{table}"
    );
    assert!(
        rx_share.iter().all(|p| p.0 > 0.0 && p.1 > 0.0),
        "a PMD received nothing:\n{table}"
    );
    if !long {
        println!("(one pair: `cargo xtask lab bench` gives the figures)");
    }
}

// ---- a plain virtio-net-pci (not an SR-IOV VF), packed virtqueues ----

/// Segment 0's first NIC: a plain virtio-net-pci with `iommu_platform=on`
/// and `packed=on`, taken from the guest's virtio_net and bound to
/// vfio-pci; its kernel peer is segment 0's second NIC. Pollux's virtio PMD
/// negotiates packed virtqueues (VIRTIO_F_RING_PACKED, in its log), and:
/// pktgen's N frames are counted exactly by rxonly; txonly's frames are
/// counted by the peer's kernel (never more than sent); the responder
/// follows QMP set_link off and on and answers the peer's pings; every
/// buffer comes back.
fn plain_virtio_net_pci_with_packed_queues(lab: &Lab) {
    let seg = lab.segment(0).expect("segment 0").to_vec();
    let (nic, peer) = (&seg[0], &seg[1]);
    let f = vfio_function(lab, nic);
    address_peer(lab, peer);

    // rxonly, exactly N.
    let n = 5_000;
    let (r, stderr) = pollux_rxonly(lab, &f.pci, "", || {
        let (sent, _) = lab.pktgen(peer, &nic.mac, VF_IP, n).expect("pktgen");
        assert_eq!(sent, n);
    });
    assert!(
        stderr.contains("RING_PACKED"),
        "packed virtqueues not negotiated:\n{stderr}"
    );
    eprintln!("plain virtio-net-pci, packed: {r}");
    assert_eq!(
        (port0(&r, "rx_packets"), port0(&r, "errors")),
        (n, 0),
        "{r}"
    );
    assert_eq!(r["mbufs_free_at_exit"], r["mbufs_total"], "{r}");

    // txonly, counted by the peer.
    let before = rx_packets(lab, peer);
    let out = lab
        .run(
            &format!(
                "{} testpmd -a {} --fwd txonly --eth-peer 0,{} --duration 2 --json --stats-period 0",
                pollux(),
                f.pci,
                peer.mac
            ),
            Duration::from_secs(120),
        )
        .expect("testpmd ran");
    assert!(out.success(), "{}\n{}", out.stdout, out.stderr);
    let r = report(&out.stdout);
    std::thread::sleep(Duration::from_secs(1));
    let got = rx_packets(lab, peer) - before;
    let sent = port0(&r, "tx_packets");
    eprintln!("packed txonly: sent {sent}, the peer received {got}");
    assert!(
        sent > 1000 && got <= sent && got * 100 >= sent * 99,
        "{got} of {sent}: {r}"
    );
    assert_eq!(r["mbufs_free_at_exit"], r["mbufs_total"], "{r}");

    // The responder answers ping, and its link follows QMP set_link on
    // the NIC's netdev.
    let mut app = lab
        .start_responder("", &f.pci, &format!("--ip {VF_IP} --report-link"))
        .unwrap_or_else(|e| panic!("responder did not come up: {e:?}"));
    app.wait_for_output("link up", T).expect("link up at start");
    lab.set_link(&nic.netdev, false).expect("set_link off");
    app.wait_for_output("link down", Duration::from_millis(1500))
        .unwrap_or_else(|e| panic!("packed: link did not go down within 1.5 s: {e}"));
    lab.set_link(&nic.netdev, true).expect("set_link on");
    app.wait_for_output("link up (2)", Duration::from_millis(1500))
        .unwrap_or_else(|e| panic!("packed: link did not come back within 1.5 s: {e}"));
    let p = lab
        .run(
            &peer.wrap(&format!("ping -c 50 -i 0.05 -W 2 {VF_IP}")),
            Duration::from_secs(120),
        )
        .expect("ping ran");
    app.write_stdin("stop\n").expect("stop the responder");
    let out = app.wait(T).expect("responder ended");
    assert!(
        p.stdout
            .contains("50 packets transmitted, 50 received, 0% packet loss"),
        "{}\n{}",
        p.stdout,
        out.stdout
    );
    assert!(out.stdout.contains("pool_free=2048/2048"), "{}", out.stdout);
}

/// A segment NIC taken from the guest's virtio_net and bound to vfio-pci.
fn vfio_function(lab: &Lab, nic: &PeerInfo) -> VfInfo {
    let group = lab
        .run_ok(
            &format!(
                "basename $(readlink /sys/bus/pci/devices/{}/iommu_group)",
                nic.pci
            ),
            T,
        )
        .expect("IOMMU group")
        .stdout
        .trim()
        .parse()
        .ok();
    let f = VfInfo {
        pf: 0,
        index: 0,
        pci: nic.pci.clone(),
        iommu_group: group,
    };
    lab.bind_vfio(&f)
        .expect("bind the virtio-net-pci to vfio-pci");
    f
}

/// The kernel peer of a segment: [`PEER_IP`], up, no IPv6 (so it sends
/// nothing of its own that a count could include).
fn address_peer(lab: &Lab, peer: &PeerInfo) {
    lab.run_ok(
        &peer.wrap(&format!(
            "sysctl -qw net.ipv6.conf.{0}.disable_ipv6=1; ip addr replace {PEER_IP}/24 dev {0} && ip link set {0} up",
            peer.ifname
        )),
        T,
    )
    .expect("peer address");
}

/// `Udp:` counters of the peer's namespace (`/proc/net/snmp`), by name.
fn udp_counters(lab: &Lab, peer: &PeerInfo) -> std::collections::BTreeMap<String, u64> {
    let out = lab
        .run_ok(&peer.wrap("grep '^Udp:' /proc/net/snmp"), T)
        .expect("snmp");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    lines[0]
        .split_whitespace()
        .zip(lines[1].split_whitespace())
        .skip(1)
        .map(|(k, v)| (k.to_owned(), v.parse().unwrap_or(0)))
        .collect()
}

fn queue_rx(r: &Value, q: usize) -> u64 {
    r["ports"][0]["queues"][q]["rx_packets"]
        .as_u64()
        .unwrap_or_else(|| panic!("no ports[0].queues[{q}].rx_packets in {r}"))
}

/// Segment 1: a plain virtio-net-pci with 2 queue pairs and RSS on a
/// multi-queue tap (QEMU's device behind a tap, the only netdev with
/// several queues and a vnet header), bound to vfio-pci, and a kernel peer
/// whose virtio_net checks every checksum itself. Judges: pktgen and the
/// peer kernel's interface and UDP counters, QEMU's RSS.
/// - rxonly on 2 lcores (2 pairs, RSS negotiated): pktgen's N frames over
///   64 UDP flows are counted exactly, both queues get some, and no flow
///   is seen on two queues; pktgen's UDP checksums, which the peer left to
///   be completed, come with their checksum flagged good.
/// - macswap on 2 lcores: N frames over 64 flows at a pace the peer's
///   kernel can take come back exactly N, none dropped or doubled.
/// - txonly on both pairs with UDP checksum offload: the peer's kernel,
///   checking each checksum in software, counts no checksum error and
///   takes every datagram it received.
fn two_queue_pairs_on_a_multi_queue_tap(lab: &Lab) {
    let seg = lab.segment(1).expect("segment 1").to_vec();
    let (nic, peer) = (&seg[0], &seg[1]);
    eprintln!("host namespace of the tap wire: {:?}", lab.host_netns());
    let f = vfio_function(lab, nic);
    address_peer(lab, peer);
    // The peer's virtio_net did not negotiate VIRTIO_NET_F_GUEST_CSUM
    // (bit 1 of the features sysfs shows as a 0/1 string), so QEMU hands it
    // no checksum flag and its kernel checks every checksum in software.
    let feat = lab
        .run_ok(
            &format!("cat /sys/bus/pci/devices/{}/virtio*/features", peer.pci),
            T,
        )
        .expect("peer features");
    assert_eq!(
        feat.stdout.trim().as_bytes().get(1),
        Some(&b'0'),
        "the peer must check checksums itself (GUEST_CSUM off): {}",
        feat.stdout
    );
    let flows = 64u16;
    let two = "--rxq 2 --txq 2 --nb-cores 2 --no-pin";

    // rxonly: exact, spread, each flow on one queue, checksums flagged.
    // Paced: an unpaced pktgen outruns QEMU's reading of the taps (TCG),
    // and the host's tap queue drops what QEMU has not read yet (1050 of
    // 6400 in the first run), before any frame reaches the device.
    let n = 6_400;
    let opts = Pktgen {
        flows,
        delay_ns: 100_000,
        udp_csum: true,
        src_ip: None,
    };
    let (r, stderr) = pollux_rxonly(
        lab,
        &f.pci,
        &format!("{two} --flow-queues --rx-offloads udp_cksum"),
        || {
            let (sent, _) = lab
                .pktgen_with(peer, &nic.mac, VF_IP, n, &opts)
                .expect("pktgen");
            assert_eq!(sent, n);
        },
    );
    assert!(stderr.contains("RSS"), "RSS not negotiated:\n{stderr}");
    eprintln!("rxonly, 2 pairs, {flows} flows: {r}\n{}", host_taps(lab));
    // pktgen's frames are the ones with a UDP checksum, which the device
    // flags: exactly N of them. A frame the tap held from before the
    // driver started (an ARP, in one run) may come on top.
    assert_eq!(port0(&r, "rx_l4_cksum_good"), n, "{r}");
    assert_eq!(port0(&r, "errors"), 0, "{r}");
    assert!(
        (n..n + 4).contains(&port0(&r, "rx_packets")),
        "pktgen's {n} frames and a few of the wire's: {r}"
    );
    let (q0, q1) = (queue_rx(&r, 0), queue_rx(&r, 1));
    assert!(q0 > 0 && q1 > 0, "RSS used one queue only: {q0}/{q1}: {r}");
    // Every pktgen flow, and any of the wire's own (as above).
    let total = r["flows"][0]["total"].as_u64().unwrap_or(0);
    assert!(
        (u64::from(flows)..u64::from(flows) + 4).contains(&total),
        "{total} flows: {r}"
    );
    assert_eq!(r["flows"][0]["on_several_queues"], 0, "{r}");
    assert_eq!(r["mbufs_free_at_exit"], r["mbufs_total"], "{r}");

    // macswap: every frame back once. pktgen's frames go from a source
    // address no one has (FAR_IP) to the peer's own, so each one that
    // comes back swapped is a UDP datagram for the peer to port 9, where
    // nothing listens: its UDP stack counts each in NoPorts, exactly,
    // whatever else the wire carries.
    let mut tp = lab
        .spawn(&format!(
            "exec {} testpmd -a {} --fwd macswap --rxd 1024 {two} --json --stats-period 0",
            pollux(),
            f.pci
        ))
        .expect("start testpmd");
    if let Err(e) = tp.wait_for_output("forwarding:", T) {
        panic!("testpmd macswap (2 pairs) did not start: {e:?}");
    }
    let before = udp_counters(lab, peer);
    let n = 4_000;
    let opts = Pktgen {
        flows,
        delay_ns: 100_000,
        udp_csum: false,
        src_ip: Some(FAR_IP.into()),
    };
    let (sent, _) = lab
        .pktgen_with(peer, &nic.mac, PEER_IP, n, &opts)
        .expect("pktgen");
    assert_eq!(sent, n);
    std::thread::sleep(Duration::from_secs(2));
    let back = udp_counters(lab, peer)["NoPorts"] - before["NoPorts"];
    let out = tp
        .stop_with(2, Duration::from_secs(20))
        .expect("testpmd ended");
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    let r = report(&out.stdout);
    eprintln!(
        "macswap, 2 pairs: pktgen sent {n}, the peer got {back} back: {r}\n{}",
        host_taps(lab)
    );
    // Everything received went back out, nothing dropped; what the wire
    // carried besides pktgen's frames (a held ARP) is at most a few.
    let rx = port0(&r, "rx_packets");
    assert!((n..n + 4).contains(&rx), "{r}");
    assert_eq!(
        (port0(&r, "tx_packets"), port0(&r, "tx_dropped")),
        (rx, 0),
        "{r}"
    );
    assert!(queue_rx(&r, 0) > 0 && queue_rx(&r, 1) > 0, "{r}");
    assert_eq!(back, n, "the peer's UDP counted {back} of {n} back: {r}");
    assert_eq!(r["mbufs_free_at_exit"], r["mbufs_total"], "{r}");

    // txonly with UDP checksum offload, judged by the peer's UDP stack.
    let (udp0, rx0) = (udp_counters(lab, peer), rx_packets(lab, peer));
    let out = lab
        .run(
            &format!(
                "{} --log pollux_virtio=info testpmd -a {} --fwd txonly {two} --json --stats-period 0 --eth-peer 0,{} \
                 --tx-ip {VF_IP},{PEER_IP} --tx-offloads udp_cksum --duration 2",
                pollux(),
                f.pci,
                peer.mac
            ),
            Duration::from_secs(120),
        )
        .expect("testpmd ran");
    assert!(out.success(), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("CSUM"),
        "VIRTIO_NET_F_CSUM not negotiated:\n{}",
        out.stderr
    );
    let r = report(&out.stdout);
    std::thread::sleep(Duration::from_secs(1));
    let (udp1, rx1) = (udp_counters(lab, peer), rx_packets(lab, peer));
    let d = |k: &str| udp1[k] - udp0[k];
    let got = rx1 - rx0;
    let sent = port0(&r, "tx_packets");
    eprintln!(
        "txonly, 2 pairs, UDP checksum offload: sent {sent}, the peer received {got}; \
         Udp InDatagrams +{} NoPorts +{} InErrors +{} InCsumErrors +{}",
        d("InDatagrams"),
        d("NoPorts"),
        d("InErrors"),
        d("InCsumErrors")
    );
    assert!(sent > 1000 && got <= sent, "{got} of {sent}: {r}");
    assert_eq!(d("InCsumErrors"), 0, "checksum errors at the peer: {r}");
    // Every datagram the peer took passed its checksum check: to no socket
    // (NoPorts) or, were one listening, to it.
    assert!(
        (d("NoPorts") + d("InDatagrams")) * 100 >= got * 99,
        "the peer's UDP took {} + {} of {got} frames",
        d("NoPorts"),
        d("InDatagrams")
    );
    assert!(queue_tx(&r, 0) > 0 && queue_tx(&r, 1) > 0, "{r}");
    assert_eq!(r["mbufs_free_at_exit"], r["mbufs_total"], "{r}");
}

/// The host side of the tap wires: each tap's and bridge's counters in the
/// run's host namespace (where frames the guest's NICs did not take in
/// time are dropped and counted), for messages.
fn host_taps(lab: &Lab) -> String {
    let Some(ns) = lab.host_netns() else {
        return "(no host namespace)".into();
    };
    match std::process::Command::new("ip")
        .args(["-n", ns, "-s", "link"])
        .output()
    {
        Ok(o) => format!("host taps ({ns}):\n{}", String::from_utf8_lossy(&o.stdout)),
        Err(e) => format!("host taps ({ns}): {e}"),
    }
}

fn queue_tx(r: &Value, q: usize) -> u64 {
    r["ports"][0]["queues"][q]["tx_packets"]
        .as_u64()
        .unwrap_or_else(|| panic!("no ports[0].queues[{q}].tx_packets in {r}"))
}

/// `pollux testpmd --fwd rxonly` (1024 receive descriptors, `extra`
/// options) on `pci` while `send` runs, stopped with SIGINT 2 s after: its
/// JSON report and its log, after checking it ended well on Pollux's
/// virtio PMD.
fn pollux_rxonly(lab: &Lab, pci: &str, extra: &str, send: impl FnOnce()) -> (Value, String) {
    let mut tp = lab
        .spawn(&format!(
            "exec {} --log pollux_virtio=info testpmd -a {pci} --fwd rxonly --rxd 1024 --json \
             --stats-period 0 {extra}",
            pollux()
        ))
        .expect("start testpmd");
    if let Err(e) = tp.wait_for_output("forwarding:", T) {
        panic!("testpmd rxonly {extra} did not start: {e:?}");
    }
    send();
    std::thread::sleep(Duration::from_secs(2));
    let out = tp
        .stop_with(2, Duration::from_secs(20))
        .expect("testpmd ended");
    assert!(
        out.status.success(),
        "testpmd failed:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    assert_virtio_pmd(&out.stderr);
    (report(&out.stdout), out.stderr)
}
