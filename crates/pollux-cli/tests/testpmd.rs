//! `pollux testpmd` end to end: the binary as a user runs it.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn pollux(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pollux"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run pollux")
}

fn json_line(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8(out.stdout.clone()).expect("utf-8");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line on stdout, got {stdout:?}");
    serde_json::from_str(lines[0]).expect("valid JSON")
}

#[test]
fn io_between_two_null_ports_prints_one_json_line() {
    let out = pollux(&[
        "testpmd",
        "--vdev",
        "null0",
        "--vdev",
        "null1",
        "--fwd",
        "io",
        "--duration",
        "1",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = json_line(&out);
    let d = r["duration_s"].as_f64().unwrap();
    assert!((0.9..3.0).contains(&d), "duration {d}");
    let ports = r["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 2);
    for (p, name) in ports.iter().zip(["null0", "null1"]) {
        assert_eq!(p["name"], name);
        for key in [
            "rx_packets",
            "tx_packets",
            "rx_dropped",
            "tx_dropped",
            "errors",
        ] {
            assert!(p[key].is_u64(), "{key} in {p}");
        }
        assert!(p["rx_packets"].as_u64().unwrap() > 1000);
        assert!(p["rx_pps"].as_f64().unwrap() > 0.0 && p["tx_pps"].as_f64().unwrap() > 0.0);
    }
    // io forwarding: what null0 received, null1 sent, and the other way.
    assert_eq!(ports[0]["rx_packets"], ports[1]["tx_packets"]);
    assert_eq!(ports[1]["rx_packets"], ports[0]["tx_packets"]);
    let total: f64 = ports.iter().map(|p| p["rx_pps"].as_f64().unwrap()).sum();
    assert!((r["total_rx_pps"].as_f64().unwrap() - total).abs() < 1.0);
    assert_eq!(r["mbufs_free_at_exit"], r["mbufs_total"], "no mbuf leaked");
}

#[test]
fn txonly_and_rxonly_count_one_direction() {
    let out = pollux(&[
        "testpmd",
        "--vdev",
        "null0",
        "--fwd",
        "txonly",
        "--duration",
        "0.5",
        "--json",
        "--txpkts",
        "128",
    ]);
    assert!(out.status.success());
    let r = json_line(&out);
    let p = &r["ports"][0];
    assert_eq!(p["rx_packets"], 0);
    assert!(p["tx_packets"].as_u64().unwrap() > 0);
    let out = pollux(&[
        "testpmd",
        "--vdev",
        "null0",
        "--fwd",
        "rxonly",
        "--duration",
        "0.5",
        "--json",
    ]);
    let r = json_line(&out);
    assert_eq!(r["ports"][0]["tx_packets"], 0);
    assert!(r["ports"][0]["rx_packets"].as_u64().unwrap() > 0);
}

#[test]
fn every_mode_runs_on_two_lcores_without_leaking() {
    for mode in ["io", "mac", "macswap", "txonly", "rxonly", "flowgen"] {
        let out = pollux(&[
            "testpmd",
            "--vdev",
            "null0",
            "--vdev",
            "null1",
            "--fwd",
            mode,
            "--nb-cores",
            "2",
            "--duration",
            "0.3",
            "--json",
        ]);
        assert!(
            out.status.success(),
            "{mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r = json_line(&out);
        assert_eq!(r["mbufs_free_at_exit"], r["mbufs_total"], "{mode}");
        assert_eq!(r["nb_cores"], 2);
    }
}

#[test]
fn a_ring_pair_carries_txonly_traffic_to_its_peer() {
    // ring0 sends, ring1 receives (rxonly polls both ports, txonly only
    // sends, so use io: ring1 receives ring0's frames and sends them back).
    let out = pollux(&[
        "testpmd",
        "--vdev",
        "ring0,peer=ring1",
        "--vdev",
        "ring1",
        "--vdev",
        "null0",
        "--fwd",
        "io",
        "--duration",
        "0.5",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = json_line(&out);
    assert_eq!(r["ports"].as_array().unwrap().len(), 3);
    assert_eq!(r["mbufs_free_at_exit"], r["mbufs_total"]);
}

#[test]
fn live_stats_and_summary_without_json() {
    let out = pollux(&[
        "testpmd",
        "--vdev",
        "null0",
        "--vdev",
        "null1",
        "--duration",
        "1.3",
    ]);
    assert!(out.status.success());
    let s = String::from_utf8(out.stdout).unwrap();
    assert!(s.contains("rx-pps"), "live table: {s}");
    assert!(s.contains("summary"), "{s}");
    assert!(
        s.contains("8192 of 8192 back in the pool") || s.contains("back in the pool"),
        "{s}"
    );
}

#[test]
fn sigint_stops_cleanly_with_a_report() {
    let child = Command::new(env!("CARGO_BIN_EXE_pollux"))
        .args(["testpmd", "--vdev", "null0", "--vdev", "null1", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: plain kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let start = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = json_line(&out);
    assert!(r["ports"][0]["rx_packets"].as_u64().unwrap() > 0);
}

#[test]
fn bad_arguments_give_one_clear_line_and_no_panic() {
    let cases: &[(&[&str], i32, &str)] = &[
        (&["testpmd", "--vdev", "null0", "--bogus"], 2, "--bogus"),
        (&["testpmd", "--vdev", "null0", "--burst", "0"], 2, "burst"),
        (&["testpmd", "--vdev", "null0", "--burst", "x"], 2, "burst"),
        (
            &["testpmd", "--vdev", "null0", "--fwd", "teleport"],
            2,
            "teleport",
        ),
        (&["testpmd"], 1, "no ports"),
        (&["testpmd", "--vdev", "eth0"], 1, "bad device string"),
        (
            &["testpmd", "--vdev", "null0,sise=64"],
            1,
            "unknown argument",
        ),
        (
            &["testpmd", "--vdev", "null0", "--txpkts", "10"],
            1,
            "--txpkts",
        ),
        (
            &["testpmd", "--vdev", "null0", "--duration", "0"],
            1,
            "--duration",
        ),
        (&["testpmd", "--vdev", "null0", "--duration", "-1"], 2, "-1"),
        (
            &[
                "testpmd",
                "--vdev",
                "null0",
                "--eth-peer",
                "5,02:00:00:00:00:01",
            ],
            1,
            "no port 5",
        ),
        (
            &["testpmd", "--vdev", "null0", "--eth-peer", "0,zz"],
            1,
            "invalid MAC",
        ),
        (
            &["testpmd", "--vdev", "null0", "--tx-ip", "1.2.3.4"],
            1,
            "--tx-ip",
        ),
        (
            &["testpmd", "--vdev", "null0", "--rxq", "99"],
            1,
            "rx queues",
        ),
        (
            &["testpmd", "--vdev", "null0", "--tx-offloads", "bogus"],
            2,
            "valid offloads: udp_cksum, tcp_cksum, ipv4_cksum",
        ),
        (
            &["testpmd", "--vdev", "null0", "--rx-offloads", "udp_cksum,"],
            2,
            "--rx-offloads",
        ),
        (
            &["testpmd", "--vdev", "null0", "--flow-queues"],
            1,
            "use it with --fwd rxonly, not --fwd io",
        ),
        (
            &["testpmd", "--vdev", "null0", "--txonly-multi-flow"],
            1,
            "use it with --fwd txonly, not --fwd io",
        ),
        (
            &[
                "testpmd",
                "--vdev",
                "null0",
                "--fwd",
                "flowgen",
                "--txonly-multi-flow",
            ],
            1,
            "use it with --fwd txonly, not --fwd flowgen",
        ),
        (
            &[
                "testpmd",
                "--vdev",
                "null0",
                "--fwd",
                "txonly",
                "--txonly-multi-flow",
                "--tx-offloads",
                "udp_cksum",
            ],
            1,
            "does not combine with --tx-offloads",
        ),
        // A null port offers no checksum offload: its configure says so.
        (
            &["testpmd", "--vdev", "null0", "--tx-offloads", "udp_cksum"],
            1,
            "port 0 (null0): configure with --tx-offloads udp_cksum (it offers none)",
        ),
        (
            &[
                "testpmd",
                "--vdev",
                "null0",
                "--fwd",
                "rxonly",
                "--rx-offloads",
                "ipv4_cksum",
            ],
            1,
            "--rx-offloads ipv4_cksum (it offers none)",
        ),
        (&["frobnicate"], 2, "frobnicate"),
    ];
    for (args, code, needle) in cases {
        let out = pollux(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(
            err.lines().count() <= 2,
            "{args:?}: one line of error, got {err}"
        );
    }
}

#[test]
fn json_report_has_the_rates_of_every_stats_period() {
    let run = |period: &str| {
        let out = pollux(&[
            "testpmd",
            "--vdev",
            "null0",
            "--vdev",
            "null1",
            "--fwd",
            "io",
            "--duration",
            "1",
            "--stats-period",
            period,
            "--json",
        ]);
        assert!(
            out.status.success(),
            "stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let out = run("0.2");
    // The live tables go to stderr; stdout holds the one JSON line.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.matches("rx-pps").count() >= 4, "{stderr}");
    let r = json_line(&out);
    let periods = r["periods"].as_array().unwrap();
    // Ticks at 0.2, 0.4, ... 1.0 s: the one at the deadline counts too.
    assert!((4..=6).contains(&periods.len()), "{periods:?}");
    let duration = r["duration_s"].as_f64().unwrap();
    let mut prev_t = 0.0;
    // Per port, the packets the periods account for: rate times length.
    let mut counted = [0.0f64; 2];
    for (k, p) in periods.iter().enumerate() {
        let t = p["t"].as_f64().unwrap();
        assert!(
            t > prev_t && t <= duration,
            "t {t} after {prev_t}, run {duration}"
        );
        assert!(t >= 0.2 * (k + 1) as f64 - 1e-3, "period {k} ends at {t}");
        for key in ["rx_pps", "tx_pps"] {
            let rates: Vec<f64> = p[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert_eq!(rates.len(), 2, "{key} per port: {p}");
            assert!(rates.iter().all(|v| v.is_finite() && *v > 0.0), "{p}");
            if key == "rx_pps" {
                for (c, v) in counted.iter_mut().zip(&rates) {
                    *c += v * (t - prev_t);
                }
            }
        }
        prev_t = t;
    }
    for (i, c) in counted.iter().enumerate() {
        let rx = r["ports"][i]["rx_packets"].as_u64().unwrap() as f64;
        assert!(
            *c <= rx * (1.0 + 1e-9) + 1.0 && *c >= 0.5 * rx,
            "port {i}: periods account for {c} of {rx} packets"
        );
    }
    let r = json_line(&run("0"));
    assert_eq!(r["periods"], serde_json::json!([]), "no tables, no periods");
}

#[test]
fn no_huge_puts_the_mbuf_pool_in_normal_pages() {
    let out = pollux(&[
        "testpmd",
        "--no-huge",
        "--vdev",
        "null0",
        "--fwd",
        "txonly",
        "--duration",
        "0.3",
        "--stats-period",
        "0",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("mbufs in 4 KiB pages"));
    let r = json_line(&out);
    assert_eq!(r["huge_pages"], false);
    assert!(r["ports"][0]["tx_packets"].as_u64().unwrap() > 0);
    assert_eq!(r["mbufs_free_at_exit"], r["mbufs_total"]);
}

#[test]
fn txonly_multi_flow_frames_are_read_back_by_tshark() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.pcap");
    let tx = format!("pcap0,tx={}", output.display());
    let out = pollux(&[
        "testpmd",
        "--vdev",
        &tx,
        "--fwd",
        "txonly",
        "--txonly-multi-flow",
        "--tx-ip",
        "198.18.0.1,198.18.0.2",
        "--txpkts",
        "101",
        "--duration",
        "0.1",
        "--stats-period",
        "0",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = json_line(&out);
    assert!(r["ports"][0]["tx_packets"].as_u64().unwrap() >= 512);
    let t = Command::new("tshark")
        .args(["-r"])
        .arg(&output)
        .args(["-c", "512", "-o", "ip.check_checksum:TRUE", "-T", "fields"])
        .args(["-e", "ip.src", "-e", "ip.dst", "-e", "ip.checksum.status"])
        .args(["-e", "ip.len", "-e", "udp.length", "-e", "udp.checksum"])
        .args(["-e", "frame.len"])
        .output()
        .expect("tshark is installed by `cargo xtask setup` (apt-get install tshark)");
    assert!(
        t.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&t.stderr)
    );
    let text = String::from_utf8(t.stdout).unwrap();
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 512);
    for (i, row) in rows.iter().enumerate() {
        // DPDK's (dst | n << 8) + lcore id, n the packet's number mod
        // 256, on the first forwarding lcore, whose id is 1 as under
        // dpdk-testpmd -l 0,1; checksum status 1 is "Good".
        let src = format!("198.18.{}.3", i % 256);
        assert_eq!(
            row[..],
            [&src, "198.18.0.2", "1", "87", "67", "0x0000", "101"],
            "frame {i}"
        );
    }
}

/// Writes a classic pcap file (microsecond timestamps, Ethernet link type)
/// by hand, so the input does not come from our own writer.
fn write_pcap(path: &std::path::Path, frames: &[Vec<u8>]) {
    let mut f = Vec::new();
    f.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    f.extend_from_slice(&0i32.to_le_bytes());
    f.extend_from_slice(&0u32.to_le_bytes());
    f.extend_from_slice(&65535u32.to_le_bytes());
    f.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    for (i, fr) in frames.iter().enumerate() {
        f.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        f.extend_from_slice(&(i as u32).to_le_bytes());
        f.extend_from_slice(&(fr.len() as u32).to_le_bytes());
        f.extend_from_slice(&(fr.len() as u32).to_le_bytes());
        f.extend_from_slice(fr);
    }
    std::fs::write(path, f).unwrap();
}

#[test]
fn rxonly_flow_queues_reports_the_flows_each_queue_received() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("flows.pcap");
    // 10 UDP/IPv4 flows (source port 1000 + i), three frames each, and
    // frames that are not IP, which no flow counts.
    let mut frames = Vec::new();
    for round in 0..3u8 {
        for i in 0..10u16 {
            let mut f = vec![0u8; 60];
            f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
            f[12..14].copy_from_slice(&[0x08, 0x00]);
            f[14..24].copy_from_slice(&[0x45, 0, 0, 46, 0, 0, 0x40, 0, 64, 17]);
            f[26..34].copy_from_slice(&[198, 18, 0, 1, 198, 18, 0, 2]);
            f[34..36].copy_from_slice(&(1000 + i).to_be_bytes());
            f[36..38].copy_from_slice(&9u16.to_be_bytes());
            f[38..40].copy_from_slice(&26u16.to_be_bytes());
            frames.push(f);
        }
        let mut other = vec![round; 60];
        other[12..14].copy_from_slice(&[0x88, 0xb5]);
        frames.push(other);
    }
    write_pcap(&input, &frames);
    let rx = format!("pcap0,rx={}", input.display());
    let run = |extra: &[&str]| {
        let mut args = vec!["testpmd", "--vdev", &rx, "--fwd", "rxonly"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--duration", "0.5", "--stats-period", "0", "--json"]);
        let out = pollux(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        json_line(&out)
    };
    let r = run(&["--flow-queues"]);
    assert_eq!(r["ports"][0]["rx_packets"], 33);
    assert_eq!(
        r["flows"],
        serde_json::json!([{
            "port": 0,
            "name": "pcap0",
            "queues": [{"queue": 0, "flows": 10}],
            "total": 10,
            "on_several_queues": 0
        }])
    );
    assert!(r["ports"][0].get("rx_l4_cksum_good").is_none());
    let r = run(&[]);
    assert!(r.get("flows").is_none(), "no flows without --flow-queues");
}

#[test]
fn mac_forwarding_through_pcap_ports_is_read_back_by_tshark() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.pcap");
    let output = dir.path().join("out.pcap");
    let frames: Vec<Vec<u8>> = (0..100u8)
        .map(|i| {
            let mut f = vec![0u8; 60 + i as usize];
            f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x99]);
            f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, i]);
            f[12..14].copy_from_slice(&[0x88, 0xb5]); // local experimental EtherType
            f
        })
        .collect();
    write_pcap(&input, &frames);
    let rx = format!("pcap0,rx={}", input.display());
    let tx = format!("pcap1,tx={}", output.display());
    let out = pollux(&[
        "testpmd",
        "--vdev",
        &rx,
        "--vdev",
        &tx,
        "--fwd",
        "mac",
        "--eth-peer",
        "1,02:aa:bb:cc:dd:ee",
        "--duration",
        "1",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = json_line(&out);
    assert_eq!(r["ports"][0]["rx_packets"], 100);
    assert_eq!(r["ports"][1]["tx_packets"], 100);
    let src_mac = String::from_utf8_lossy(&out.stderr)
        .lines()
        .find(|l| l.starts_with("Port 1 "))
        .and_then(|l| l.split("MAC ").nth(1))
        .and_then(|l| l.split_whitespace().next())
        .expect("port 1 MAC in the banner")
        .to_string();

    let t = Command::new("tshark")
        .args(["-r"])
        .arg(&output)
        .args([
            "-T",
            "fields",
            "-e",
            "eth.dst",
            "-e",
            "eth.src",
            "-e",
            "frame.len",
        ])
        .output()
        .expect("tshark is installed by `cargo xtask setup` (apt-get install tshark)");
    assert!(
        t.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&t.stderr)
    );
    let text = String::from_utf8(t.stdout).unwrap();
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 100, "tshark counts every frame");
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row[0], "02:aa:bb:cc:dd:ee", "destination rewritten");
        assert_eq!(row[1], src_mac, "source is port 1's MAC");
        assert_eq!(row[2], (60 + i).to_string(), "length kept, order kept");
    }
}

#[test]
fn two_lacp_bonds_negotiate_and_pollux_bond_show_reports_it() {
    let run = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pollux"))
        .env("POLLUX_RUN_DIR", run.path())
        .args([
            "testpmd",
            "--vdev",
            "ring0,peer=ring2",
            "--vdev",
            "ring1,peer=ring3",
            "--vdev",
            "ring2",
            "--vdev",
            "ring3",
            "--vdev",
            "bond0,mode=802.3ad,member=ring0,member=ring1,lacp_rate=fast,xmit_hash_policy=layer3+4",
            "--vdev",
            "bond1,mode=802.3ad,member=ring2,member=ring3,lacp_rate=fast",
            "--fwd",
            "io",
            "--duration",
            "20",
            "--stats-period",
            "0",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Fast LACP converges within a few seconds; ask until both members of
    // bond0 are collecting and distributing with bond1's system as partner.
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        let out = Command::new(env!("CARGO_BIN_EXE_pollux"))
            .env("POLLUX_RUN_DIR", run.path())
            .args(["bond", "show", "--json"])
            .output()
            .unwrap();
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            // 802.1AX port state bits: sync 0x08, collecting 0x10,
            // distributing 0x20; the partner must be bond1's system.
            let converged = v[0]["members"].as_array().is_some_and(|m| {
                m.len() == 2
                    && m.iter().all(|m| {
                        let l = &m["lacp"];
                        l["mux_state"] == "COLLECTING_DISTRIBUTING"
                            && l["actor"]["state"]
                                .as_u64()
                                .is_some_and(|s| s & 0x38 == 0x38)
                            && l["partner"]["state"]
                                .as_u64()
                                .is_some_and(|s| s & 0x38 == 0x38)
                            && l["partner"]["system"] == v[1]["mac"]
                    })
            });
            if converged {
                break v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "bonds did not converge: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(status.as_array().unwrap().len(), 2);
    assert_eq!(status[0]["name"], "bond0");
    assert_eq!(status[0]["mode"], "802.3ad");
    let text = Command::new(env!("CARGO_BIN_EXE_pollux"))
        .env("POLLUX_RUN_DIR", run.path())
        .args(["bond", "show"])
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("Bonding Mode: IEEE 802.3ad Dynamic link aggregation"),
        "{text}"
    );
    assert!(text.contains("Slave Interface: ring1"), "{text}");
    // SAFETY: plain kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let status = child.wait().unwrap();
    assert!(status.success());
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    let r: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        r["ports"].as_array().unwrap().len(),
        2,
        "members are inside their bonds"
    );
    assert_eq!(r["mbufs_free_at_exit"], r["mbufs_total"]);
    assert!(
        std::fs::read_dir(run.path()).unwrap().next().is_none(),
        "socket removed at exit"
    );
}

#[test]
fn bond_show_without_a_testpmd_says_so() {
    let run = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pollux"))
        .env("POLLUX_RUN_DIR", run.path())
        .args(["bond", "show"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no running pollux testpmd"));
}

#[test]
fn bad_bonds_and_pod_devices_are_clear_errors() {
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "--vdev",
                "null0",
                "--vdev",
                "bond0,mode=802.3ad,member=null0,member=null9",
            ],
            "member null9",
        ),
        (
            &[
                "--vdev",
                "null0",
                "--vdev",
                "bond0,mode=fastest,member=null0",
            ],
            "fastest",
        ),
        (
            &[
                "--vdev",
                "null0",
                "--vdev",
                "bond0,mode=balance-xor,member=null0,colour=blue",
            ],
            "colour",
        ),
        (&["--vdev", "bond0,mode=balance-rr"], "member"),
        (
            &["--device-info", "/nonexistent/pollux-device-info.json"],
            "/nonexistent/pollux-device-info.json",
        ),
        (&["-a", "not-a-pci-address"], "not-a-pci-address"),
    ];
    for (args, needle) in cases {
        let mut all = vec!["testpmd"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--duration", "0.2"]);
        let out = pollux(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_pollux"))
        .env("PCIDEVICE_INTEL_COM_SRIOV_DPDK", "0000:00:04.0,,bogus")
        .args([
            "testpmd",
            "--pci-from-env",
            "intel.com/sriov_dpdk",
            "--duration",
            "0.2",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("PCIDEVICE_INTEL_COM_SRIOV_DPDK"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_pollux"))
        .env_remove("PCIDEVICE_INTEL_COM_SRIOV_DPDK")
        .args([
            "testpmd",
            "--pci-from-env",
            "intel.com/sriov_dpdk",
            "--duration",
            "0.2",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not set"), "{err}");
}

#[test]
fn tlb_and_alb_bonds_run_and_pollux_bond_show_reports_them() {
    let run = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_pollux"))
        .env("POLLUX_RUN_DIR", run.path())
        .args([
            "testpmd",
            "--vdev",
            "null0",
            "--vdev",
            "null1",
            "--vdev",
            "null2",
            "--vdev",
            "null3",
            "--vdev",
            "bond0,mode=balance-tlb,member=null0,member=null1,xmit_hash_policy=layer3+4",
            "--vdev",
            "bond1,mode=6,member=null2,member=null3,ip=169.254.0.1,ip=169.254.0.2",
            "--fwd",
            "flowgen",
            "--duration",
            "4",
            "--stats-period",
            "0",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    let status = loop {
        let out = Command::new(env!("CARGO_BIN_EXE_pollux"))
            .env("POLLUX_RUN_DIR", run.path())
            .args(["bond", "show", "--json"])
            .output()
            .unwrap();
        if out.status.success() {
            break serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap();
        }
        assert!(Instant::now() < deadline, "no bond status");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status[0]["mode"], "balance-tlb");
    assert_eq!(status[1]["mode"], "balance-alb");
    assert_eq!(status[0]["active_member"], "null0");
    assert_eq!(status[1]["alb"]["ip"][1], "169.254.0.2");
    assert_eq!(status[0]["alb"]["tlb_dynamic_lb"], true);
    let text = Command::new(env!("CARGO_BIN_EXE_pollux"))
        .env("POLLUX_RUN_DIR", run.path())
        .args(["bond", "show"])
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    for want in [
        "Bonding Mode: transmit load balancing",
        "Bonding Mode: adaptive load balancing",
        "Primary Slave: None",
        "Currently Active Slave: null0",
        "Currently Active Slave: null2",
    ] {
        assert!(text.contains(want), "{want:?} in\n{text}");
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(r["mbufs_free_at_exit"], r["mbufs_total"]);
    // balance-alb without an address to answer for is refused.
    let out = Command::new(env!("CARGO_BIN_EXE_pollux"))
        .args([
            "testpmd",
            "--vdev",
            "null0",
            "--vdev",
            "null1",
            "--vdev",
            "bond0,mode=balance-alb,member=null0,member=null1",
            "--duration",
            "1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ip=A.B.C.D"), "{err}");
}
