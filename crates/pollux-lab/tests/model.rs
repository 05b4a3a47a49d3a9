//! Lab tests of the model host (`pollux-model`) on QEMU 11's vfio-user
//! client: a modelled function in the guest, driven through the guest's
//! vfio-pci and vIOMMU by an example of ours, with the model's violation
//! log as a witness that the guest's kernel and our example used it as
//! specified.

use std::time::Duration;

use pollux_lab::{host_example, Lab, ModelFn, Peer, Topology};

const T: Duration = Duration::from_secs(60);

/// The `dma-test` function: it appears with its ID in its own IOMMU group,
/// vfio-pci binds it behind the vIOMMU, and `dma_test_client` maps a
/// 100,000-byte buffer (25 pages, each its own DMA_MAP at the model), rings
/// the doorbell, sees the MSI-X interrupt and reads the model's pattern
/// back byte-exact; twice, with an FLR between (vfio-pci resets the
/// function when the device is opened). The violation log stays empty.
/// Then the model is killed: the lab says so within 10 s.
#[test]
fn dma_test_function_through_vfio_and_the_viommu() {
    let topo = Topology::new()
        .model(ModelFn::dma_test().peer(Peer::virtio()))
        .module("pktgen");
    let lab = match Lab::boot(&topo) {
        Ok(l) => l,
        Err(e) => panic!("the lab did not boot: {e}"),
    };
    let m = lab.model(0).expect("model 0").clone();
    let ids = lab
        .run_ok(&format!("lspci -n -s {}", m.pci), T)
        .expect("lspci");
    assert!(ids.stdout.contains("1234:7011"), "{}", ids.stdout);
    let group = m.iommu_group.expect("the function has an IOMMU group");
    let others = lab
        .run_ok(&format!("ls /sys/kernel/iommu_groups/{group}/devices"), T)
        .expect("group members");
    assert_eq!(others.stdout.trim(), m.pci, "alone in its IOMMU group");
    lab.bind_driver(&m.pci, "vfio-pci")
        .expect("vfio-pci binds it");
    let client = host_example("dma_test_client").expect("dma_test_client built");
    for (len, seed) in [(100_000, 7), (4096, 200)] {
        let out = lab
            .run(
                &format!("{} {} {len} {seed}", client.display(), m.pci),
                Duration::from_secs(120),
            )
            .expect("dma_test_client ran");
        eprintln!("{}{}", out.stdout, out.stderr);
        assert!(out.success(), "{}\n{}", out.stdout, out.stderr);
        assert!(
            out.stdout.contains(&format!("{len} bytes at IOVA")),
            "{}",
            out.stdout
        );
        assert!(out.stdout.contains("match the pattern"), "{}", out.stdout);
        assert!(
            out.stdout.contains("MSI-X vector 0 fired 1 time(s)"),
            "{}",
            out.stdout
        );
    }
    // The model's wire, judged by the kernel at its far end: pktgen on the
    // peer sends 500 frames addressed to the peer itself; dma-test echoes
    // each, and the peer's own rx counter sees exactly 500 come back.
    let peer = m.peer.clone().expect("the model's peer");
    let rx = |lab: &Lab| lab.peer_counter(&peer, "rx_packets").expect("peer counter");
    lab.run_ok(
        &peer.wrap(&format!(
            "sysctl -qw net.ipv6.conf.{0}.disable_ipv6=1; ip link set {0} up",
            peer.ifname
        )),
        T,
    )
    .expect("peer up");
    std::thread::sleep(Duration::from_secs(1));
    let before = rx(&lab);
    let pg = format!(
        "PG=/proc/net/pktgen; echo rem_device_all > $PG/kpktgend_0; echo 'add_device {i}' > $PG/kpktgend_0; \
         echo 'count 500' > $PG/{i}; echo 'pkt_size 60' > $PG/{i}; echo 'delay 100000' > $PG/{i}; \
         echo 'dst_mac {mac}' > $PG/{i}; echo start > $PG/pgctrl; grep -o 'Result: OK.*' $PG/{i}",
        i = peer.ifname,
        mac = peer.mac
    );
    let out = lab
        .run_ok(&peer.wrap(&pg), Duration::from_secs(120))
        .expect("pktgen");
    assert!(out.stdout.contains("Result: OK"), "{}", out.stdout);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        rx(&lab) - before,
        500,
        "echoed frames the peer's kernel counted"
    );
    let frames_in = lab.model_counter(0, "frames_in").expect("counter");
    let echoed = lab.model_counter(0, "frames_echoed").expect("counter");
    assert!(
        frames_in >= 500 && echoed == frames_in,
        "in {frames_in}, echoed {echoed}"
    );
    // Link down from the control channel: nothing comes back.
    lab.model_control(0, "link down").expect("link down");
    let before = rx(&lab);
    lab.run_ok(
        &peer.wrap(&pg.replace("count 500", "count 50")),
        Duration::from_secs(60),
    )
    .expect("pktgen");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(rx(&lab), before, "frames came back over a downed link");
    assert!(lab.model_counter(0, "rx_dropped").expect("counter") >= 50);
    lab.model_control(0, "link up").expect("link up");
    assert!(lab.model_control(0, "pf bogus").is_err());

    let v = lab.model_violations(0).expect("violations");
    assert!(v.is_empty(), "the model logged violations:\n{v}");
    lab.model_alive(0).expect("the model still runs");

    // The model dies mid-run. QEMU's client then leaves the guest's next
    // access to the function hanging; the lab must not: the command that
    // hangs ends with an error naming the model's death, within 10 s, not
    // at its 60 s timeout.
    lab.kill_model(0).expect("kill the model");
    let t0 = std::time::Instant::now();
    let r = lab.run(
        &format!("{} {} 4096 1", client.display(), m.pci),
        Duration::from_secs(60),
    );
    let took = t0.elapsed();
    let e = r.expect_err("a command through a dead model cannot succeed");
    eprintln!("after the model's death, in {took:?}: {e}");
    assert!(
        e.to_string().contains("model 0 (dma-test) died"),
        "the error names the model's death: {e}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
}
