//! Lab tests of virtio-net SR-IOV (QEMU 10.1 and later): a virtio-net PF
//! whose VFs the guest creates, one bound to vfio-pci for a userspace
//! driver and one driven by the guest's own virtio_net.
//!
//! One boot for the whole file: every check runs in the same guest. The
//! judges are the guest kernel (sysfs, its virtio_net answering ping, the
//! peers' interface counters) and DPDK 22.11's own net_virtio PMD.

use std::time::Duration;

use pollux_lab::{Lab, PeerInfo, Topology, VirtioPf};

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
fn virtio_net_vfs_on_vfio_and_on_the_kernel_driver() {
    let lab = match Lab::boot(&Topology::new().virtio_pf(VirtioPf::new(2))) {
        Ok(l) => l,
        Err(e) => panic!("the lab did not boot: {e}"),
    };
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
    let before = rx_packets(&lab, peer0);
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
    let got = rx_packets(&lab, peer0) - before;
    // Non-interactive testpmd without a stats period ends at once when
    // stdin is empty ("Press enter to exit"); with one it runs until SIGINT
    // and prints the accumulated totals last.
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
    lab.shutdown().expect("clean shutdown");
}
