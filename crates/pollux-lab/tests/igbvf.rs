//! Lab tests of the igbvf PMD (issue 4) on QEMU's emulated 82576 VF.
//!
//! One boot runs every check that leaves the VFs and the PF as it found them
//! ([`igbvf_checks_in_one_boot`], each check timed; a failing check does not
//! hide the others' results); the side-by-side measurement against DPDK
//! boots a guest of its own. Each check judges the driver by someone else's
//! account: the guest kernel answering or counting (ping, pktgen, interface
//! counters), tcpdump reading the wire, DPDK's own igbvf PMD on the same VF.
//! None skips: a lab that cannot start fails the test with the reason.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use pollux_lab::{host_binary, Lab, Peer, PeerInfo, Pf, Topology, VfInfo};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);
const VF_IP: &str = "169.254.1.1";
const PEER_IP: &str = "169.254.1.2";

fn boot(vfs: u8) -> Lab {
    match Lab::boot(&Topology::new().pf(Pf::new(vfs).peer(Peer::virtio()))) {
        Ok(l) => l,
        Err(e) => panic!("the lab did not boot: {e}"),
    }
}

/// VF 0 bound to vfio-pci and the peer with an address, IPv6 off (so it
/// sends nothing on its own that could reach the VF).
fn setup(lab: &Lab) -> (VfInfo, PeerInfo) {
    let vf = lab.vf(0, 0).expect("VF 0").clone();
    lab.bind_vfio(&vf).expect("bind VF 0 to vfio-pci");
    let peer = lab.peer(0, 0).expect("peer").clone();
    lab.run_ok(
        &peer.wrap(&format!(
            "sysctl -qw net.ipv6.conf.{0}.disable_ipv6=1; ip addr add {PEER_IP}/16 dev {0} && ip link set {0} up",
            peer.ifname
        )),
        T,
    )
    .expect("peer address");
    (vf, peer)
}

fn pollux() -> String {
    host_binary("pollux")
        .expect("pollux binary built")
        .display()
        .to_string()
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

/// The MAC testpmd printed for port 0 (`Port 0 (...): MAC xx:.. link ...`).
fn port_mac(text: &str) -> String {
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix("Port 0")?;
            let i = rest.find("MAC ")?;
            Some(rest[i + 4..i + 4 + 17].to_string())
        })
        .unwrap_or_else(|| panic!("no port 0 MAC in:\n{text}"))
}

/// Sends `count` 60-byte frames to `dst_mac` with the kernel's pktgen from
/// the peer; returns how many pktgen says it sent.
fn pktgen(lab: &Lab, peer: &PeerInfo, dst_mac: &str, count: u64) -> u64 {
    pktgen_run(lab, peer, dst_mac, count).0
}

/// The checks below, in this order, in one guest: VF 0 on vfio-pci, the
/// virtio peer addressed. Order matters only at the end: the kernel's
/// igbvf takes VF 1 (after the error paths, which need it driverless), and
/// the PF reset comes last.
const CHECKS: &[(&str, Check)] = &[
    (
        "kernel_ping_answered_by_the_responder",
        kernel_ping_answered_by_the_responder,
    ),
    (
        "rxonly_counts_exactly_what_pktgen_sent",
        rxonly_counts_exactly_what_pktgen_sent,
    ),
    (
        "txonly_frames_are_on_the_wire_as_sent",
        txonly_frames_are_on_the_wire_as_sent,
    ),
    (
        "multicast_joined_through_the_pf_is_delivered",
        multicast_joined_through_the_pf_is_delivered,
    ),
    (
        "vf_throughput_bench_runs_on_the_emulated_vf",
        vf_throughput_bench_runs_on_the_emulated_vf,
    ),
    (
        "sigint_mid_traffic_and_error_paths",
        sigint_mid_traffic_and_error_paths,
    ),
    (
        "kernel_igbvf_on_a_sibling_vf_agrees_with_ours",
        kernel_igbvf_on_a_sibling_vf_agrees_with_ours,
    ),
    (
        "link_follows_set_link_and_traffic_resumes_after_a_pf_reset",
        link_follows_set_link_and_traffic_resumes_after_a_pf_reset,
    ),
];

type Check = fn(&Lab, &VfInfo, &PeerInfo);

/// Every check of [`CHECKS`] in one boot ([`pollux_lab::run_checks`]).
#[test]
fn igbvf_checks_in_one_boot() {
    let lab = boot(2);
    let (vf, peer) = setup(&lab);
    let (lab, vf, peer) = (&lab, &vf, &peer);
    pollux_lab::run_checks(
        "igbvf",
        CHECKS
            .iter()
            .map(|&(name, check)| -> pollux_lab::Check<'_> {
                (name, Box::new(move || check(lab, vf, peer)))
            })
            .collect(),
    );
}

/// Test 1: the guest kernel pings `examples/responder` on a VF over a
/// virtio-net NIC wired to the igb port: 200 of 200 answered. The responder
/// gives every buffer back at the end (test 7's check for this program).
fn kernel_ping_answered_by_the_responder(lab: &Lab, vf: &VfInfo, peer: &PeerInfo) {
    ping_the_responder(lab, vf, peer, 200);
}

/// Starts `examples/responder` on `vf` at [`VF_IP`], pings it `count`
/// times from the kernel NIC `from`, stops it, and checks that every ping
/// was answered, that the responder counted the same echoes, and that it
/// gave every buffer back.
fn ping_the_responder(lab: &Lab, vf: &VfInfo, from: &PeerInfo, count: u32) {
    let mut app = lab
        .start_responder("", &vf.pci, &format!("--ip {VF_IP}"))
        .unwrap_or_else(|e| panic!("responder did not come up: {e:?}"));
    let ping = lab
        .run(
            &from.wrap(&format!("ping -c {count} -i 0.02 -W 2 {VF_IP}")),
            Duration::from_secs(180),
        )
        .expect("ping ran");
    app.write_stdin("stop\n").expect("stop the responder");
    let out = app.wait(T).expect("responder ended");
    eprintln!("{}\n{}", ping.stdout, out.stdout);
    assert!(
        ping.stdout.contains(&format!(
            "{count} packets transmitted, {count} received, 0% packet loss"
        )),
        "ping from {}:\n{}\n{}\nresponder:\n{}\n{}",
        from.ifname,
        ping.stdout,
        ping.stderr,
        out.stdout,
        out.stderr
    );
    assert!(out.status.success(), "responder failed: {}", out.stderr);
    assert!(
        out.stdout.contains(&format!("icmp={count}")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("pool_free=2048/2048"),
        "leaked buffers: {}",
        out.stdout
    );
}

/// Test 2: pktgen in the guest kernel sends N frames to the VF's MAC;
/// `pollux testpmd --fwd rxonly` counts exactly N. pktgen floods and the
/// host may keep guest CPU 1 off a core for milliseconds, so the ring is
/// 4096 descriptors (the 82576's maximum) and N = 10,000 wraps it twice:
/// with the default 512 one CI run counted 1938 of 2000. Every miss is
/// also checked against what the igb model itself recorded dropping for
/// want of a free descriptor (QEMU's trace, `Lab::vf_rx_drops`), so a
/// failure says whether the ring overflowed or a frame got lost in the
/// driver; and that judge is checked with the poller stopped. Test 7: no
/// mbuf leaked.
fn rxonly_counts_exactly_what_pktgen_sent(lab: &Lab, vf: &VfInfo, peer: &PeerInfo) {
    let (vf, peer) = (vf.clone(), peer.clone());
    let tp = start_rxonly(lab, &pollux(), &vf, 4096);
    let mac = port_mac(tp.stderr());
    let n = 10_000;
    let dropped_before = lab.vf_rx_drops(&vf).expect("the model's rx drops");
    let sent = pktgen(lab, &peer, &mac, n);
    assert_eq!(sent, n, "pktgen sent {sent}");
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
    let dropped = lab.vf_rx_drops(&vf).expect("the model's rx drops") - dropped_before;
    let r = report(&out.stdout);
    eprintln!("{r}\nthe igb model dropped {dropped} for want of descriptors");
    let rx = port0(&r, "rx_packets");
    assert_eq!(
        rx + dropped,
        n,
        "received + dropped by the model != sent, so frames were lost or counted twice in the driver: {r}"
    );
    assert_eq!(
        rx, n,
        "the model dropped {dropped} at a full 4096-descriptor ring: the poller was off the CPU for thousands of frames"
    );
    assert_eq!(r["mbufs_free_at_exit"], r["mbufs_total"], "{r}");

    // The judge itself: with the poller stopped (SIGSTOP) the ring fills
    // and the model must record dropping the rest; after SIGCONT testpmd
    // counts what the ring held, and the two still add up to what was sent.
    let tp = start_rxonly(lab, &pollux(), &vf, 512);
    let dropped_before = lab.vf_rx_drops(&vf).expect("the model's rx drops");
    tp.signal(Signal::SIGSTOP as i32).expect("SIGSTOP testpmd");
    assert_eq!(pktgen(lab, &peer, &mac, n), n);
    tp.signal(Signal::SIGCONT as i32).expect("SIGCONT testpmd");
    std::thread::sleep(Duration::from_secs(2));
    let out = tp
        .stop_with(2, Duration::from_secs(20))
        .expect("testpmd ended");
    let dropped = lab.vf_rx_drops(&vf).expect("the model's rx drops") - dropped_before;
    let r = report(&out.stdout);
    eprintln!("stopped poller: {r}\nthe igb model dropped {dropped}");
    let rx = port0(&r, "rx_packets");
    assert_eq!(
        rx + dropped,
        n,
        "received + dropped by the model != sent: {r}"
    );
    assert!(
        (400..=512).contains(&rx),
        "a stopped poller's 512-descriptor ring took {rx}"
    );
    assert_eq!(r["mbufs_free_at_exit"], r["mbufs_total"], "{r}");
}

/// `<pollux> testpmd --fwd rxonly` on `vf` with `rxd` descriptors,
/// started and forwarding.
fn start_rxonly<'a>(
    lab: &'a Lab,
    pollux: &str,
    vf: &VfInfo,
    rxd: u16,
) -> pollux_lab::GuestProcess<'a> {
    let mut tp = lab
        .spawn(&format!(
            "exec {pollux} testpmd -a {} --fwd rxonly --rxd {rxd} --json --stats-period 0",
            vf.pci
        ))
        .expect("start testpmd");
    // `{e:?}`, as `expect` prints it: `is_guest_loss` reads that form.
    if let Err(e) = tp.wait_for_output("forwarding:", T) {
        panic!("testpmd did not start: {e:?}");
    }
    tp
}

/// Test 3: `pollux testpmd --fwd txonly` frames, captured on the peer by
/// tcpdump: as many as testpmd says it sent, from the VF's MAC to the
/// peer's, of the length asked for. Test 7: no mbuf leaked.
fn txonly_frames_are_on_the_wire_as_sent(lab: &Lab, vf: &VfInfo, peer: &PeerInfo) {
    let (vf, peer) = (vf.clone(), peer.clone());
    let mut dump = lab
        .spawn(&peer.wrap(&format!(
            "tcpdump -i {} -n -B 65536 -w /tmp/tx.pcap ether dst {}",
            peer.ifname, peer.mac
        )))
        .expect("start tcpdump");
    if let Err(e) = dump.wait_for_output("listening on", T) {
        panic!("tcpdump did not start: {e}");
    }
    let out = lab
        .run(
            &format!(
                "{} testpmd -a {} --fwd txonly --txpkts 100 --eth-peer 0,{} --duration 1 --json --stats-period 0",
                pollux(),
                vf.pci,
                peer.mac
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
    let r = report(&out.stdout);
    let mac = port_mac(&out.stderr);
    std::thread::sleep(Duration::from_secs(2));
    let d = dump
        .stop_with(2, Duration::from_secs(20))
        .expect("tcpdump ended");
    let sent = port0(&r, "tx_packets");
    eprintln!("{r}\n{}", d.stderr);
    assert!(sent > 100, "testpmd sent only {sent}: {r}");
    assert!(
        d.stderr.contains(&format!("{sent} packets captured")),
        "tcpdump:\n{}\ntestpmd: {r}",
        d.stderr
    );
    assert!(
        d.stderr.contains("0 packets dropped by kernel"),
        "{}",
        d.stderr
    );
    // Every captured frame from the VF's MAC to the peer's, 100 bytes long:
    // counted in the guest in one pass (the capture is large).
    let want = format!("{mac} > {}", peer.mac);
    let o = lab
        .run_ok(
            &peer.wrap(&format!(
                "tcpdump -r /tmp/tx.pcap -n -e 2>/dev/null | awk -v w='{want}' 'index($0, w) && /length 100:/ {{m++}} END {{print NR, m+0}}'"
            )),
            Duration::from_secs(600),
        )
        .expect("read capture");
    let counts: Vec<u64> = o
        .stdout
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    assert_eq!(
        counts,
        vec![sent, sent],
        "(frames, frames with the addresses and length sent): {}",
        o.stdout
    );
    assert_eq!(r["mbufs_free_at_exit"], r["mbufs_total"], "{r}");
}

/// Test 5a: the QEMU monitor cuts and restores the igb port's wire; the
/// PMD's link follows within 1 s each way. Test 5b: the PF goes down and
/// up in the guest kernel; the PMD re-initialises the VF by itself and the
/// kernel's pings get answered again.
fn link_follows_set_link_and_traffic_resumes_after_a_pf_reset(
    lab: &Lab,
    vf: &VfInfo,
    peer: &PeerInfo,
) {
    let (vf, peer) = (vf.clone(), peer.clone());
    let pf = lab.pf(0).expect("PF").clone();
    // The responder prints its link state changes; see below for the probe.
    let mut app = lab
        .start_responder(
            "RUST_LOG=pollux_igbvf=debug",
            &vf.pci,
            &format!("--ip {VF_IP} --report-link"),
        )
        .unwrap_or_else(|e| panic!("responder did not come up: {e:?}"));
    app.wait_for_output("link up", T).expect("link up at start");
    let t0 = Instant::now();
    lab.set_link(&pf.netdev, false).expect("set_link off");
    app.wait_for_output(
        "link down",
        Duration::from_secs(1) + Duration::from_millis(500),
    )
    .unwrap_or_else(|e| panic!("link did not go down within 1 s: {e}"));
    let down_after = t0.elapsed();
    let t1 = Instant::now();
    lab.set_link(&pf.netdev, true).expect("set_link on");
    app.wait_for_output(
        "link up (2)",
        Duration::from_secs(1) + Duration::from_millis(500),
    )
    .unwrap_or_else(|e| panic!("link did not come back within 1 s: {e}"));
    let up_after = t1.elapsed();
    eprintln!("link down seen after {down_after:?}, up after {up_after:?}");

    let ping = |what: &str| {
        let p = lab
            .run(
                &peer.wrap(&format!("ping -c 20 -i 0.1 -W 2 {VF_IP}")),
                Duration::from_secs(120),
            )
            .expect("ping ran");
        assert!(
            p.stdout.contains("20 received"),
            "{what}: ping:\n{}",
            p.stdout
        );
    };
    ping("before the PF reset");
    lab.run_ok(&format!("ip link set {} down", pf.ifname), T)
        .expect("PF down");
    std::thread::sleep(Duration::from_secs(2));
    lab.run_ok(&format!("ip link set {} up", pf.ifname), T)
        .expect("PF up");
    // The PF's link comes back (autonegotiation) and the PMD re-initialises.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let p = lab
            .run(&peer.wrap(&format!("ping -c 3 -i 0.2 -W 1 {VF_IP}")), T)
            .expect("ping ran");
        if p.stdout.contains(" 3 received") {
            break;
        }
        // Fetch what the responder said so far, for the message below.
        let _ = app.poll();
        assert!(
            Instant::now() < deadline,
            "no answer 60 s after the PF came back:\n{}\nresponder so far:\n{}\nits log:\n{}",
            p.stdout,
            app.stdout(),
            app.stderr()
        );
    }
    ping("after the PF reset");
    app.write_stdin("stop\n").expect("stop");
    let out = app.wait(T).expect("responder ended");
    eprintln!("{}", out.stdout);
    assert!(
        out.stdout.contains("recoveries=1") || out.stdout.contains("recoveries=2"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("pool_free=2048/2048"), "{}", out.stdout);
}

/// Test 6: SIGINT in the middle of txonly: testpmd exits cleanly with its
/// report, and the next run on the same VF works. Error paths, each a clear
/// message and a non-zero exit: VF not bound to vfio-pci, a virtio NIC on its
/// kernel driver, a PCI function no Pollux driver handles, a missing
/// /dev/vfio/N.
fn sigint_mid_traffic_and_error_paths(lab: &Lab, vf: &VfInfo, peer: &PeerInfo) {
    let (vf, peer) = (vf.clone(), peer.clone());
    let run = |extra: &str| {
        format!(
            "{} testpmd -a {} --fwd txonly --eth-peer 0,{} --json --stats-period 0 {extra}",
            pollux(),
            vf.pci,
            peer.mac
        )
    };
    let rx_before = peer_rx(lab, &peer);
    let mut tp = lab
        .spawn(&format!("exec {}", run("")))
        .expect("start testpmd");
    tp.wait_for_output("forwarding:", T)
        .expect("testpmd started");
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
    let rx_mid = peer_rx(lab, &peer);
    assert!(rx_mid > rx_before, "the peer saw nothing of the first run");
    // The same VF again.
    let again = lab
        .run(&run("--duration 2"), Duration::from_secs(120))
        .expect("second run");
    assert!(
        again.success(),
        "second run: {}\n{}",
        again.stdout,
        again.stderr
    );
    let r2 = report(&again.stdout);
    let sent2 = port0(&r2, "tx_packets");
    assert!(sent2 > 0, "{r2}");
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        peer_rx(lab, &peer) >= rx_mid + sent2,
        "the peer did not get the second run's frames"
    );

    // VF 1 is bound to no driver (autoprobe is off in the lab).
    let vf1 = lab.vf(0, 1).expect("VF 1").clone();
    let e = lab
        .run(
            &format!(
                "{} testpmd -a {} --fwd rxonly --duration 1",
                pollux(),
                vf1.pci
            ),
            T,
        )
        .expect("ran");
    assert!(!e.success(), "unbound VF accepted");
    assert!(
        e.stderr.contains("not vfio-pci") && e.stderr.contains("driver_override"),
        "unbound VF: {}",
        e.stderr
    );
    // The peer NIC (virtio-net) has a Pollux driver (net_virtio) but is
    // bound to the guest's virtio-pci: the message says how to rebind it.
    let e = lab
        .run(
            &format!(
                "{} testpmd -a {} --fwd rxonly --duration 1",
                pollux(),
                peer.pci
            ),
            T,
        )
        .expect("ran");
    assert!(!e.success(), "kernel-bound virtio NIC accepted");
    assert!(
        e.stderr.contains("net_virtio") && e.stderr.contains("not vfio-pci"),
        "kernel-bound virtio NIC: {}",
        e.stderr
    );
    // Q35's host bridge (0000:00:00.0, 8086:29c0) is no NIC at all.
    let e = lab
        .run(
            &format!(
                "{} testpmd -a 0000:00:00.0 --fwd rxonly --duration 1",
                pollux()
            ),
            T,
        )
        .expect("ran");
    assert!(!e.success(), "host bridge accepted");
    assert!(
        e.stderr.contains("no Pollux driver for PCI ID"),
        "unknown device: {}",
        e.stderr
    );
    // VF 1 bound to vfio-pci but its group node gone.
    let node = lab.bind_vfio(&vf1).expect("bind VF 1");
    lab.run_ok(&format!("mv {0} {0}.away", node.display()), T)
        .expect("hide node");
    let e = lab
        .run(
            &format!(
                "{} testpmd -a {} --fwd rxonly --duration 1",
                pollux(),
                vf1.pci
            ),
            T,
        )
        .expect("ran");
    assert!(!e.success(), "missing group node accepted");
    assert!(
        e.stderr
            .contains(&format!("{} does not exist", node.display())),
        "missing node: {}",
        e.stderr
    );
}

fn peer_rx(lab: &Lab, peer: &PeerInfo) -> u64 {
    lab.peer_counter(peer, "rx_packets").expect("peer counters")
}

/// The release `pollux` binary (performance runs need an optimised build).
fn pollux_release() -> String {
    let p = pollux_lab::target_dir().join("release/pollux");
    assert!(
        p.is_file(),
        "{} is not built: run `cargo build --release -p pollux-cli` first",
        p.display()
    );
    p.display().to_string()
}

/// Like [`pktgen`], also returning pktgen's elapsed time in seconds.
fn pktgen_run(lab: &Lab, peer: &PeerInfo, dst_mac: &str, count: u64) -> (u64, f64) {
    lab.pktgen(peer, dst_mac, VF_IP, count).expect("pktgen ran")
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

/// Parses testpmd-style rates: `86.9k`, `1.20M`, `512`.
fn parse_si(v: &str) -> Option<f64> {
    let (num, mul) = match v.chars().last()? {
        'k' => (&v[..v.len() - 1], 1e3),
        'M' => (&v[..v.len() - 1], 1e6),
        'G' => (&v[..v.len() - 1], 1e9),
        _ => (v, 1.0),
    };
    num.parse::<f64>().ok().map(|x| x * mul)
}

fn median(v: Vec<f64>) -> Option<f64> {
    pollux_lab::samples::median(&v)
}

struct Bench<'a> {
    lab: &'a Lab,
    vf: VfInfo,
    peer: PeerInfo,
    pf_if: String,
    pollux: String,
    vf_mac: &'static str,
}

impl Bench<'_> {
    /// Frames per second the peer's kernel received over `secs` (its
    /// rx_packets counter, sampled in the guest): what a PMD's txonly put
    /// on the wire, judged by the kernel at the far end.
    fn peer_rx_rate(&self, secs: u64) -> f64 {
        self.lab
            .peer_rx_rate(&self.peer, secs)
            .expect("peer rx counter")
    }

    /// pollux txonly: (frames per second it sent, the median of the
    /// per-second rates of its live table like DPDK's below; frames per
    /// second the peer received over `secs` of steady state).
    fn ours_tx(&self, secs: u64) -> (f64, f64) {
        self.lab
            .wait_pf_carrier(0, Duration::from_secs(60))
            .expect("PF carrier");
        let mut tp = self
            .lab
            .spawn(&format!(
                "exec {} testpmd -a {} --fwd txonly --eth-peer 0,{} --duration {} --json --stats-period 1",
                self.pollux,
                self.vf.pci,
                self.peer.mac,
                secs + 4
            ))
            .expect("pollux txonly");
        tp.wait_for_output("forwarding:", T)
            .expect("testpmd started");
        std::thread::sleep(Duration::from_secs(1));
        let delivered = self.peer_rx_rate(secs);
        let out = tp
            .wait(Duration::from_secs(120))
            .expect("pollux txonly ended");
        assert!(out.success(), "{}\n{}", out.stdout, out.stderr);
        assert!(
            out.stderr.contains(&format!("MAC {}", self.vf_mac)),
            "{}",
            out.stderr
        );
        let rates: Vec<f64> = out
            .stderr
            .lines()
            .filter_map(|l| {
                let c: Vec<&str> = l.split_whitespace().collect();
                (c.len() == 7 && c[0] == "0")
                    .then(|| parse_si(c[5]))
                    .flatten()
            })
            .skip(1)
            .collect();
        let r = report(&out.stdout);
        assert_eq!(r["mbufs_free_at_exit"], r["mbufs_total"], "{r}");
        let sent =
            median(rates).unwrap_or_else(|| r["ports"][0]["tx_pps"].as_f64().expect("tx_pps"));
        (sent, delivered)
    }

    /// pollux rxonly while pktgen sends `n`: (received, offered, pktgen s).
    fn ours_rx(&self, n: u64) -> (u64, u64, f64) {
        // 512 descriptors, testpmd's default, like DPDK's.
        let tp = start_rxonly(self.lab, &self.pollux, &self.vf, 512);
        let before = self.lab.vf_rx_drops(&self.vf).expect("model drops");
        let (sent, t) = pktgen_run(self.lab, &self.peer, self.vf_mac, n);
        std::thread::sleep(Duration::from_secs(1));
        let out = tp
            .stop_with(2, Duration::from_secs(20))
            .expect("pollux rxonly ended");
        let dropped = self.lab.vf_rx_drops(&self.vf).expect("model drops") - before;
        let r = report(&out.stdout);
        assert_eq!(r["mbufs_free_at_exit"], r["mbufs_total"], "{r}");
        let rx = port0(&r, "rx_packets");
        eprintln!("pollux rxonly: {rx} received, {dropped} dropped by the model, {sent} sent");
        // Whatever ours missed, the model dropped at a full ring.
        assert_eq!(rx + dropped, sent, "received + model drops != sent: {r}");
        (rx, sent, t)
    }

    /// DPDK's igbvf PMD (dpdk-testpmd, non-interactive like
    /// benches/compare-dpdk.sh, ended by SIGINT). LAB.md's recipe: the PF is
    /// bounced right before the PMD resets the VF (DPDK reports the link up
    /// only after a PF message with clear-to-send). stdbuf: stdout is a pipe.
    fn dpdk(&self, mode: &str) -> pollux_lab::GuestProcess<'_> {
        self.lab
            .run_ok(
                &format!(
                    "ip link set {0} down; sleep 1; ip link set {0} up",
                    self.pf_if
                ),
                T,
            )
            .expect("bounce PF");
        // Until the model's link is up again it drops what the VF sends
        // without putting it on the wire. The second after carrier is for
        // the PF's mailbox message to the VF.
        self.lab
            .wait_pf_carrier(0, Duration::from_secs(60))
            .expect("PF carrier after the bounce");
        std::thread::sleep(Duration::from_secs(1));
        let mut p = self
            .lab
            .spawn(&format!(
                "exec stdbuf -o0 -e0 dpdk-testpmd -l 0-1 -n 1 --no-huge -m 256 --iova-mode=va -a {} -- \
                 --forward-mode={mode} --eth-peer=0,{} --total-num-mbufs=8192 --burst=32 --stats-period 1",
                self.vf.pci, self.peer.mac
            ))
            .expect("dpdk-testpmd");
        if let Err(e) = p.wait_for_output("pps", T) {
            panic!("dpdk-testpmd {mode} did not start: {e}");
        }
        p
    }

    /// DPDK txonly: (the median of its per-second Tx-pps; frames per
    /// second the peer received over `secs` of steady state).
    fn dpdk_tx(&self, secs: u64) -> (f64, f64) {
        let dp = self.dpdk("txonly");
        std::thread::sleep(Duration::from_secs(1));
        let delivered = self.peer_rx_rate(secs);
        let d = dp
            .stop_with(2, Duration::from_secs(30))
            .expect("dpdk txonly ended");
        let n = dpdk_stat(&d.stdout, "TX-packets:");
        assert!(n > 0, "DPDK sent nothing:\n{}", d.stdout);
        let rates: Vec<f64> = d
            .stdout
            .split("Tx-pps:")
            .skip(2)
            .filter_map(|s| s.split_whitespace().next()?.parse().ok())
            .collect();
        (median(rates).expect("DPDK Tx-pps lines"), delivered)
    }

    /// DPDK rxonly while pktgen sends `n`: (received, offered, pktgen s).
    fn dpdk_rx(&self, n: u64) -> (u64, u64, f64) {
        let dp = self.dpdk("rxonly");
        let before = self.lab.vf_rx_drops(&self.vf).expect("model drops");
        let (sent, t) = pktgen_run(self.lab, &self.peer, self.vf_mac, n);
        std::thread::sleep(Duration::from_secs(1));
        let d = dp
            .stop_with(2, Duration::from_secs(30))
            .expect("dpdk rxonly ended");
        let dropped = self.lab.vf_rx_drops(&self.vf).expect("model drops") - before;
        let rx = dpdk_stat(&d.stdout, "RX-packets:");
        eprintln!("DPDK rxonly: {rx} received, {dropped} dropped by the model, {sent} sent");
        (rx, sent, t)
    }
}

/// Test 4 (and the performance goal): txonly and rxonly rates of
/// `pollux testpmd` (release build) and of DPDK's own igbvf PMD
/// (`dpdk-testpmd`) on the same VF in the same boot, measured the same way
/// and, under `cargo xtask lab bench`, in 5 interleaved pairs (the order
/// alternating, every pair kept, median and spread) so that the host's
/// load drifts over both alike; the suite runs one short pair (3 s, 50k
/// frames) that checks both PMDs move traffic, so the comparison cannot
/// rot. Both forward on guest CPU 1; the peer's
/// interrupts are steered to CPU 0 so its kernel drains its ring on a CPU
/// of its own whichever PMD runs.
/// - txonly, 64-byte frames: frames per second the peer's kernel received
///   (its rx_packets counter over 6 s of steady state, 3 s in the suite), and, for
///   information, the median of the per-second rates each testpmd prints.
///   The two differ: the model sends synchronously on the tail write, and
///   when the peer's queue is full QEMU drops the frame cheaply, so the
///   PMD's own count can run four times above what arrives (measured).
/// - rxonly: the peer kernel's pktgen sends 200k (suite: 50k) 60-byte frames to the VF's
///   MAC as fast as it can; pps = frames received / pktgen's time, and the
///   share of the offered frames each PMD received. What a PMD missed, the
///   igb model's trace must show it dropped at a full ring (asserted for
///   ours, printed for DPDK's).
///
/// The VF gets an administrator MAC so both PMDs use the same one. Prints
/// the table for docs/performance.md; asserts both PMDs moved traffic and,
/// in the long form, that ours is not measurably slower on the wire (txonly, within the lab's
/// 10 % resolution) and loses no more (rxonly, where the generator, not the
/// PMD, sets the rate under TCG).
///
/// The guest of this test (the longest and busiest in the suite) died in 3
/// of 7 CI runs with vCPU 1's timer no longer firing and QEMU exiting 255
/// (docs/lab.md). When, and only when, the guest is lost that way, the
/// measurement is repeated once in a fresh boot; the first attempt's
/// failure is printed. Any other failure, and a second guest loss, fails.
#[test]
fn side_by_side_with_dpdk_igbvf() {
    let first = std::panic::catch_unwind(side_by_side_once);
    let Err(e) = first else { return };
    let msg = e
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    if !pollux_lab::is_guest_loss(&msg) {
        std::panic::resume_unwind(e);
    }
    eprintln!("side by side: the guest was lost (QEMU exited); measuring again in a fresh boot. First attempt:\n{msg}");
    side_by_side_once();
}

fn side_by_side_once() {
    // The default 2 GiB: with 3 GiB no VF driver, ours, the kernel's igbvf
    // or DPDK's, gets through the mailbox handshake (docs/lab.md).
    let lab = boot(2);
    let (vf, peer) = setup(&lab);
    let pf = lab.pf(0).expect("PF").clone();
    let vf_mac = "02:00:00:00:00:10";
    lab.run_ok(&format!("ip link set {} vf 0 mac {vf_mac}", pf.ifname), T)
        .expect("admin MAC");
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
        "no interrupt of the peer {} could be steered to CPU 0",
        peer.pci
    );
    let b = Bench {
        lab: &lab,
        vf,
        peer,
        pf_if: pf.ifname.clone(),
        pollux: pollux_release(),
        vf_mac,
    };
    // `cargo xtask lab bench` (POLLUX_LAB_BENCH=1): interleaved pairs,
    // the figures for docs/performance.md and the ratio asserted. The
    // suite: one short pair, so the comparison keeps running.
    let long = std::env::var_os("POLLUX_LAB_BENCH").is_some();
    let (pairs, secs, n_rx) = if long {
        (5, 6, 200_000)
    } else {
        (1, 3, 50_000)
    };
    // The host is shared: the same run measured 90k or 220k pps from one
    // minute to the next. Pairs alternate which PMD goes first, so drift
    // falls on both, and every pair is kept: median and spread.
    let (mut wire, mut sent, mut rx_pps, mut rx_share) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let share = |r: (u64, u64, f64)| r.0 as f64 / r.1 as f64;
    let pps = |r: (u64, u64, f64)| r.0 as f64 / r.2;
    for k in 0..pairs {
        let (o, d) = if k % 2 == 0 {
            let o = b.ours_tx(secs);
            (o, b.dpdk_tx(secs))
        } else {
            let d = b.dpdk_tx(secs);
            (b.ours_tx(secs), d)
        };
        let (ro, rd) = if k % 2 == 0 {
            let ro = b.ours_rx(n_rx);
            (ro, b.dpdk_rx(n_rx))
        } else {
            let rd = b.dpdk_rx(n_rx);
            (b.ours_rx(n_rx), rd)
        };
        eprintln!(
            "pair {k}: tx sent/delivered {:.0}/{:.0} | {:.0}/{:.0}; rx {ro:?} | {rd:?}",
            o.0, o.1, d.0, d.1
        );
        sent.push((o.0, d.0));
        wire.push((o.1, d.1));
        rx_pps.push((pps(ro), pps(rd)));
        rx_share.push((share(ro), share(rd)));
    }
    let row = pollux_lab::samples::pair_row;
    let n = |x: f64| format!("{x:.0}");
    let pct = |x: f64| format!("{:.2}%", 100.0 * x);
    let table = format!(
        "| mode ({pairs} interleaved pairs; median (min–max)) | pollux igbvf | DPDK igbvf | pollux / DPDK per pair |\n\
         | --- | ---: | ---: | ---: |\n{}\n{}\n{}\n{}\n\
         samples (pollux, DPDK): txonly on the wire {wire:.0?}; txonly as counted {sent:.0?}; \
         rxonly pps {rx_pps:.0?}; rxonly share {rx_share:.4?}",
        row(
            "txonly, 64 B, received by the peer kernel (pps)",
            &wire,
            n
        ),
        row("txonly, 64 B, as each testpmd counts it (pps)", &sent, n),
        row(
            &format!("rxonly, 60 B, pps (bounded by pktgen, {n_rx} frames)"),
            &rx_pps,
            n
        ),
        row("rxonly, share of pktgen's frames received", &rx_share, pct),
    );
    println!("SIDE-BY-SIDE\n{table}");
    assert!(
        rx_share.iter().all(|p| p.0 > 0.0 && p.1 > 0.0),
        "a PMD received nothing:\n{table}"
    );
    assert!(
        wire.iter().all(|p| p.0 > 0.0 && p.1 > 0.0),
        "the peer received nothing from a PMD:\n{table}"
    );
    if !long {
        println!("(one short pair: `cargo xtask lab bench` gives the figures)");
        return;
    }
    // The goal is ratio >= 1.0; this lab resolves throughput to about 10 %
    // (TCG on a shared 2-core host), so the test fails only when ours is
    // measurably slower or loses measurably more, by the medians.
    let wire_ratio = pollux_lab::samples::median_ratio(&wire).unwrap_or(0.0);
    assert!(
        wire_ratio >= 0.9,
        "txonly measurably below DPDK on the wire:\n{table}"
    );
    let med = |f: fn(&(f64, f64)) -> f64| {
        pollux_lab::samples::median(&rx_share.iter().map(f).collect::<Vec<_>>()).unwrap_or(0.0)
    };
    assert!(
        med(|p| p.0) >= med(|p| p.1) - 0.005,
        "rxonly lost measurably more than DPDK:\n{table}"
    );
}

/// Multicast to a VF (what the bond's LACP needs): the PMD joins
/// 01:80:c2:00:00:02 through the PF (SET_MULTICAST); the Linux PF programs
/// the hash into the shared MTA and sets VMOLR.ROMPE for the VF's pool; the
/// peer's pktgen sends frames to that group and to one the VF did not join.
/// The joined group's frames all arrive, the other group's none.
fn multicast_joined_through_the_pf_is_delivered(lab: &Lab, vf: &VfInfo, peer: &PeerInfo) {
    let (vf, peer) = (vf.clone(), peer.clone());
    let mut app = lab
        .start_responder(
            "",
            &vf.pci,
            &format!("--ip {VF_IP} --mcast 01:80:c2:00:00:02"),
        )
        .unwrap_or_else(|e| panic!("responder did not come up: {e:?}"));
    let joined = pktgen(lab, &peer, "01:80:c2:00:00:02", 500);
    // Not joined, and its MTA hash (0x563) collides with no group the PF's
    // kernel joins (01:00:5e:00:00:01 and 33:33:00:00:00:01 hash to 0x010):
    // the MTA is shared by all pools, so a colliding group would arrive too.
    let other = pktgen(lab, &peer, "01:00:5e:12:34:56", 500);
    assert_eq!((joined, other), (500, 500));
    std::thread::sleep(Duration::from_secs(2));
    app.write_stdin("stop\n").expect("stop");
    let out = app.wait(T).expect("responder ended");
    eprintln!("{}", out.stdout);
    assert!(
        out.stdout
            .contains("responder mcast 01:80:c2:00:00:02=500\n"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("responder mcast 01:00:5e:12:34:56="),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("pool_free=2048/2048"), "{}", out.stdout);
}

/// The newest `vf_throughput` criterion bench executable (release), built by
/// `cargo bench -p pollux-igbvf --bench vf_throughput --no-run`.
fn vf_bench_binary() -> std::path::PathBuf {
    let deps = pollux_lab::target_dir().join("release/deps");
    let mut found: Vec<(std::time::SystemTime, std::path::PathBuf)> = std::fs::read_dir(&deps)
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().to_string();
                    n.starts_with("vf_throughput-") && !n.ends_with(".d")
                })
                .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().map(|(_, p)| p).unwrap_or_else(|| {
        panic!(
            "no vf_throughput bench in {}: run `cargo bench -p pollux-igbvf --bench vf_throughput --no-run` first",
            deps.display()
        )
    })
}

/// The hardware throughput bench (`POLLUX_BENCH_VF`) runs once on the
/// emulated VF so it cannot rot: it opens the VF, sends, polls, and reports
/// frames the VF accepted; the peer kernel counts them arriving.
fn vf_throughput_bench_runs_on_the_emulated_vf(lab: &Lab, vf: &VfInfo, peer: &PeerInfo) {
    let (vf, peer) = (vf.clone(), peer.clone());
    let bench = vf_bench_binary();
    let before = peer_rx(lab, &peer);
    let out = lab
        .run(
            &format!(
                "CRITERION_HOME=/tmp/criterion POLLUX_BENCH_VF={} {} --bench --warm-up-time 1 --measurement-time 2",
                vf.pci,
                bench.display()
            ),
            Duration::from_secs(300),
        )
        .expect("bench ran");
    eprintln!("{}", out.stdout);
    assert!(out.success(), "{}\n{}", out.stdout, out.stderr);
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("vf_throughput on"))
        .unwrap_or_else(|| panic!("no summary:\n{}", out.stdout));
    let sent: u64 = line
        .split("tx ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line}"));
    assert!(sent > 0, "{line}");
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        peer_rx(lab, &peer) > before,
        "the peer saw none of the bench's frames"
    );
}

/// Linux's own igbvf as a second, independent implementation of the VF
/// side (QEMU 11): the guest kernel's igbvf drives VF 1 of the same PF as
/// our VF 0, from a network namespace of its own so its frames go through
/// the PF's switch rather than the guest's routing table. It pings the
/// responder on VF 0 (100 of 100 answered, the responder counting the same
/// 100), and its pktgen sends 4000 frames to VF 0's MAC that rxonly counts
/// exactly. Both VFs' traffic stays inside the 82576's VF-to-VF switch.
fn kernel_igbvf_on_a_sibling_vf_agrees_with_ours(lab: &Lab, vf: &VfInfo, peer: &PeerInfo) {
    let (vf, _peer) = (vf.clone(), peer.clone());
    let sibling = lab.vf(0, 1).expect("VF 1").clone();
    // Where the guest put the VFs' BAR 0 (QEMU 10.0.2 needed them below
    // 4 GiB, docs/lab.md): printed so a run shows what it tested.
    let bars = lab
        .run_ok(
            &format!(
                "head -1 /sys/bus/pci/devices/{}/resource /sys/bus/pci/devices/{}/resource",
                vf.pci, sibling.pci
            ),
            T,
        )
        .expect("VF BARs");
    eprintln!("VF BAR 0 (start end flags):\n{}", bars.stdout);
    lab.run_ok("modprobe igbvf", T).expect("load igbvf");
    lab.bind_driver(&sibling.pci, "igbvf")
        .expect("bind VF 1 to the kernel's igbvf");
    let glob = format!("/sys/bus/pci/devices/{}/net/*", sibling.pci);
    lab.wait_until(&format!("[ -e $(echo {glob}) ]"), T)
        .expect("igbvf's netdev appears");
    // udev may rename it right after it appears.
    lab.run_ok("udevadm settle --timeout=30", T)
        .expect("udev settles");
    let ifname = lab
        .run_ok(&format!("basename {glob}"), T)
        .expect("igbvf's netdev")
        .stdout
        .trim()
        .to_owned();
    let kvf = PeerInfo {
        netdev: String::new(),
        model: pollux_lab::NicModel::Igb,
        pci: sibling.pci.clone(),
        mac: lab
            .run_ok(&format!("cat /sys/class/net/{ifname}/address"), T)
            .expect("igbvf MAC")
            .stdout
            .trim()
            .to_owned(),
        ifname: ifname.clone(),
        netns: Some("kvf".to_owned()),
    };
    lab.run_ok(
        &format!(
            "ip netns add kvf && ip -n kvf link set lo up && ip link set {ifname} netns kvf && {}",
            kvf.wrap(&format!(
                "sysctl -qw net.ipv6.conf.{ifname}.disable_ipv6=1; ip addr add 169.254.1.3/16 dev {ifname} && ip link set {ifname} up"
            ))
        ),
        T,
    )
    .expect("igbvf's namespace and address");
    // The kernel driver's own account of its link.
    if let Err(e) = lab.wait_until(
        &kvf.wrap(&format!("grep -qx 1 /sys/class/net/{ifname}/carrier")),
        Duration::from_secs(30),
    ) {
        let log = lab.run("dmesg | grep -i igbvf | tail -20", T);
        panic!("the kernel's igbvf never reported carrier: {e}\n{log:?}");
    }

    ping_the_responder(lab, &vf, &kvf, 100);

    // pktgen on the kernel's VF, counted by ours.
    let tp = start_rxonly(lab, &pollux(), &vf, 4096);
    let mac = port_mac(tp.stderr());
    let n = 4000;
    let before = lab.vf_rx_drops(&vf).expect("the model's rx drops");
    let sent = pktgen(lab, &kvf, &mac, n);
    assert_eq!(sent, n, "pktgen on igbvf sent {sent}");
    std::thread::sleep(Duration::from_secs(2));
    let out = tp
        .stop_with(2, Duration::from_secs(20))
        .expect("testpmd ended");
    let dropped = lab.vf_rx_drops(&vf).expect("the model's rx drops") - before;
    let r = report(&out.stdout);
    eprintln!("{r}\nthe igb model dropped {dropped}");
    assert_eq!(
        port0(&r, "rx_packets"),
        n,
        "frames from the kernel's igbvf (model drops {dropped}): {r}"
    );
    assert_eq!(r["mbufs_free_at_exit"], r["mbufs_total"], "{r}");
}
