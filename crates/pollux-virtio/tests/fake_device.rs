//! The driver against the software device of the `testing` feature: bring-up
//! and feature negotiation, frames both ways with their bytes, the control
//! queue, link, a confused device, DEVICE_NEEDS_RESET recovery with live
//! handles, and every buffer back in its pool at the end.

use std::sync::Arc;

use pollux_core::{
    AnonMemory, Burst, HugePages, Mbuf, Mempool, MempoolConfig, Port, PortConf, Queues, TxOffloads,
};
use pollux_virtio::spec::{self, bit};
use pollux_virtio::testing::FakeDevice;
use pollux_virtio::{VirtioNet, VirtioOpts};

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

fn open(dev: &Arc<FakeDevice>) -> Result<VirtioNet, pollux_virtio::VirtioError> {
    VirtioNet::from_transport(
        "fake0".into(),
        dev.transport(),
        Arc::new(AnonMemory::new(HugePages::Never)),
        VirtioOpts::default(),
    )
}

fn pool(n: usize) -> Mempool {
    Mempool::new(
        MempoolConfig::new("vq", n),
        &AnonMemory::new(HugePages::Never),
    )
    .unwrap()
}

fn frame(i: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&MAC);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f[14..18].copy_from_slice(&i.to_be_bytes());
    f
}

/// A started port over a QEMU-like device, its queues, and the pool.
fn started(
    features: u64,
    pairs: u16,
    conf: impl FnOnce(&mut PortConf),
) -> (Arc<FakeDevice>, VirtioNet, Queues, Mempool) {
    let dev = FakeDevice::new(features, pairs, 256, MAC);
    let mut net = open(&dev).expect("open");
    let p = pool(2048);
    let mut c = PortConf::new(p.clone());
    c.rx_desc = 256;
    c.tx_desc = 256;
    conf(&mut c);
    net.configure(&c).expect("configure");
    // SAFETY: the port's queues and buffers are AnonMemory that outlives
    // the server (dropped at the end of each test, before the port).
    let server = unsafe { dev.serve_control() };
    net.start().expect("start");
    drop(server);
    let q = net.take_queues().expect("queues");
    (dev, net, q, p)
}

#[test]
fn bring_up_negotiates_what_the_driver_uses_and_sets_the_filters() {
    let (dev, net, _q, _p) = started(FakeDevice::qemu_like_features(), 1, |_| {});
    let s = dev.state();
    // Event indices are offered but not taken unless asked for
    // (VirtioOpts::event_idx).
    let want = bit(spec::F_VERSION_1)
        | bit(spec::F_ACCESS_PLATFORM)
        | bit(spec::NET_F_MAC)
        | bit(spec::NET_F_STATUS)
        | bit(spec::NET_F_CTRL_VQ)
        | bit(spec::NET_F_CTRL_RX)
        | bit(spec::NET_F_CTRL_MAC_ADDR);
    assert_eq!(
        s.driver_features,
        want,
        "{:?}",
        spec::feature_names(s.driver_features)
    );
    assert_eq!(
        s.status,
        spec::STATUS_ACKNOWLEDGE
            | spec::STATUS_DRIVER
            | spec::STATUS_FEATURES_OK
            | spec::STATUS_DRIVER_OK
    );
    assert!(s.queues[0].enabled && s.queues[1].enabled && s.queues[2].enabled);
    // Every rx buffer posted at start.
    assert_eq!(s.queues[0].size, 256);
    drop(s);
    assert_eq!(net.mac_addr().0, MAC, "VIRTIO_NET_F_MAC");
    // QEMU's device starts promiscuous; the port says it is not.
    assert_eq!(
        dev.ctrl_log(),
        vec![(0, 0, vec![0]), (0, 1, vec![0])],
        "RX_PROMISC off, RX_ALLMULTI off"
    );
}

#[test]
fn frames_arrive_with_their_bytes_and_leave_with_theirs() {
    let (dev, mut net, mut q, p) = started(FakeDevice::qemu_like_features(), 1, |_| {});
    // 1000 frames through a 256-entry queue: the driver must refill.
    let mut got = Vec::new();
    let mut b = Burst::new(32);
    let mut sent = 0u32;
    while got.len() < 1000 {
        while sent < 1000 {
            // SAFETY: the queue and buffers are the port's AnonMemory.
            if !unsafe { dev.deliver(0, &frame(sent, 60 + (sent as usize % 1400)), 0) } {
                break;
            }
            sent += 1;
        }
        q.rx[0].rx_burst(&mut b);
        while let Some(m) = b.pop_front() {
            got.push(m.data().to_vec());
        }
    }
    for (i, f) in got.iter().enumerate() {
        assert_eq!(f, &frame(i as u32, 60 + (i % 1400)), "frame {i}");
    }
    let s = net.stats();
    assert_eq!(s.ipackets, 1000);
    assert_eq!(s.ierrors, 0);

    // And back out: 1000 frames, bytes and headers as sent.
    let mut out = Vec::new();
    for i in 0..1000u32 {
        let mut m = p.alloc().expect("buffer");
        assert!(m.copy_from(&frame(i, 64)));
        let mut one = Burst::new(1);
        one.push(m).unwrap();
        while q.tx[0].tx_burst(&mut one) == 0 {
            // SAFETY: as above.
            out.extend(unsafe { dev.transmit(0) });
        }
    }
    // SAFETY: as above.
    out.extend(unsafe { dev.transmit(0) });
    assert_eq!(out.len(), 1000);
    for (i, f) in out.iter().enumerate() {
        assert_eq!(f, &frame(i as u32, 64), "frame {i}");
    }
    assert!(dev.state().tx_headers.iter().all(|h| *h == (0, 0, 0)));
    assert_eq!(net.stats().opackets, 1000);
    // Everything back once the port is gone.
    drop(q);
    net.stop().unwrap();
    drop(net);
    assert_eq!(p.available(), p.size(), "every buffer back in the pool");
}

#[test]
fn checksum_offload_asks_the_device_to_complete_l4_checksums() {
    let f = FakeDevice::qemu_like_features() | bit(spec::NET_F_CSUM);
    let (dev, _net, mut q, p) = started(f, 1, |c| {
        c.tx_offloads = TxOffloads::UDP_CKSUM;
    });
    assert!(dev.state().driver_features & bit(spec::NET_F_CSUM) != 0);
    let mut m = p.alloc().unwrap();
    assert!(m.copy_from(&[0u8; 60]));
    let t = m.tx_mut();
    t.flags = pollux_core::TxFlags::UDP_CKSUM | pollux_core::TxFlags::IPV4;
    t.l2_len = 14;
    t.l3_len = 20;
    let mut b = Burst::new(1);
    b.push(m).unwrap();
    assert_eq!(q.tx[0].tx_burst(&mut b), 1);
    // SAFETY: the port's AnonMemory.
    assert_eq!(unsafe { dev.transmit(0) }.len(), 1);
    assert_eq!(
        dev.state().tx_headers,
        vec![(spec::NET_HDR_F_NEEDS_CSUM, 34, 6)]
    );
}

#[test]
fn a_device_without_access_platform_is_refused_with_what_to_change() {
    let dev = FakeDevice::new(
        FakeDevice::qemu_like_features() & !bit(spec::F_ACCESS_PLATFORM),
        1,
        256,
        MAC,
    );
    let e = open(&dev).unwrap_err().to_string();
    assert!(
        e.contains("VIRTIO_F_ACCESS_PLATFORM") && e.contains("iommu_platform=on"),
        "{e}"
    );
    let dev = FakeDevice::new(
        FakeDevice::qemu_like_features() & !bit(spec::F_VERSION_1),
        1,
        256,
        MAC,
    );
    assert!(open(&dev).unwrap_err().to_string().contains("VERSION_1"));
}

#[test]
fn refused_features_fail_the_start_cleanly() {
    let dev = FakeDevice::new(FakeDevice::qemu_like_features(), 1, 256, MAC);
    let mut net = open(&dev).unwrap();
    let p = pool(1024);
    net.configure(&PortConf::new(p.clone())).unwrap();
    dev.state().accept_features = false;
    let e = net.start().unwrap_err().to_string();
    assert!(e.contains("refused the features"), "{e}");
    assert_eq!(
        p.available(),
        p.size(),
        "no buffer kept after a failed start"
    );
    // The device takes them again: the port starts.
    dev.state().accept_features = true;
    // SAFETY: the port's AnonMemory.
    let _server = unsafe { dev.serve_control() };
    net.start().expect("start after the device agrees");
}

#[test]
fn link_follows_the_configuration_status() {
    let (dev, mut net, _q, _p) = started(FakeDevice::qemu_like_features(), 1, |_| {});
    assert!(net.link().up);
    dev.set_link(false);
    assert!(!net.link().up);
    dev.set_link(true);
    assert!(net.link().up);
}

#[test]
fn a_confused_device_is_counted_not_trusted() {
    let (dev, net, mut q, p) = started(FakeDevice::qemu_like_features(), 1, |_| {});
    let (used_rx, used_tx) = {
        let s = dev.state();
        (s.queues[0].device, s.queues[1].device)
    };
    let used_idx = |addr: u64| addr as usize as *mut u16;
    let elem = |addr: u64, i: usize| (addr as usize + 4 + 8 * i) as *mut u32;
    let mut b = Burst::new(32);
    // A used index far ahead: nothing taken, a fault counted.
    // SAFETY: the device area of the port's own rx queue (AnonMemory);
    // the driver reads it with volatile loads and never holds a reference.
    unsafe { used_idx(used_rx).add(1).write_volatile(1000) };
    assert_eq!(q.rx[0].rx_burst(&mut b), 0);
    // A used entry naming a descriptor out of range, and one with a length
    // shorter than the header: both dropped and counted.
    // SAFETY: as above.
    unsafe {
        elem(used_rx, 0).write_volatile(9999);
        elem(used_rx, 1).write_volatile(0);
        elem(used_rx, 1).add(1).write_volatile(4);
        used_idx(used_rx).add(1).write_volatile(2);
    }
    assert_eq!(q.rx[0].rx_burst(&mut b), 0);
    assert_eq!(net.stats().ierrors, 3, "{:?}", net.stats());
    // A transmit completion naming a descriptor that is not in flight:
    // descriptors are handed out from 0 up, and reclaim runs once fewer
    // than 32 are free, before descriptor 250 was ever used.
    // SAFETY: the tx queue's device area, as above.
    unsafe {
        elem(used_tx, 0).write_volatile(250);
        used_idx(used_tx).add(1).write_volatile(1);
    }
    for i in 0..240 {
        let mut m = p.alloc().unwrap();
        assert!(m.copy_from(&frame(i, 60)));
        let mut one = Burst::new(1);
        one.push(m).unwrap();
        assert_eq!(q.tx[0].tx_burst(&mut one), 1);
    }
    assert_eq!(
        net.stats().oerrors,
        1,
        "the completion of descriptor 7, never sent"
    );
}

#[test]
fn device_needs_reset_is_recovered_with_the_handles_alive() {
    let (dev, mut net, mut q, p) = started(FakeDevice::qemu_like_features(), 1, |_| {});
    let mut b = Burst::new(32);
    // SAFETY: the port's AnonMemory.
    assert!(unsafe { dev.deliver(0, &frame(1, 60), 0) });
    dev.needs_reset();
    // SAFETY: as above.
    let server = unsafe { dev.serve_control() };
    net.service();
    assert!(!net.link().up, "down while re-initialising");
    // The handles start their queues over at their next burst; then the
    // device gets DRIVER_OK again.
    q.rx[0].rx_burst(&mut b);
    q.tx[0].tx_burst(&mut Burst::<Mbuf>::new(1));
    net.service();
    drop(server);
    assert_eq!(net.recoveries(), 1);
    assert_eq!(dev.state().resets, 3, "open, start, recovery");
    assert!(net.link().up);
    // The frame delivered before the reset was dropped by it; traffic
    // flows again.
    b.clear();
    q.rx[0].rx_burst(&mut b);
    // SAFETY: as above.
    assert!(unsafe { dev.deliver(0, &frame(2, 60), 0) });
    q.rx[0].rx_burst(&mut b);
    let got: Vec<_> = b.iter().map(|m| m.data().to_vec()).collect();
    assert!(got.contains(&frame(2, 60)), "{} frames", got.len());
    drop(b);
    drop(q);
    net.stop().unwrap();
    drop(net);
    assert_eq!(p.available(), p.size());
}

#[test]
fn two_queue_pairs_are_set_over_the_control_queue() {
    let f = FakeDevice::qemu_like_features() | bit(spec::NET_F_MQ);
    let (dev, net, mut q, _p) = started(f, 4, |c| {
        c.rx_queues = 2;
        c.tx_queues = 2;
    });
    assert_eq!(net.info().capabilities.max_rx_queues, 4);
    assert!(
        dev.ctrl_log().contains(&(4, 0, vec![2, 0])),
        "{:?}",
        dev.ctrl_log()
    );
    // Control queue at 2 * max pairs = 8.
    assert!(dev.state().queues[8].enabled);
    // Frames on pair 1 arrive on rx queue 1.
    // SAFETY: the port's AnonMemory.
    assert!(unsafe { dev.deliver(1, &frame(5, 60), 0) });
    let mut b = Burst::new(4);
    assert_eq!(q.rx[0].rx_burst(&mut b), 0);
    assert_eq!(q.rx[1].rx_burst(&mut b), 1);
    assert_eq!(b.iter().next().unwrap().rx().queue, 1);
}

/// A device offering RSS (what QEMU's `rss=on` puts in the configuration:
/// 40-byte keys, 128-entry tables, every hash type) with several pairs
/// gets one `MQ_RSS_CONFIG` instead of `VQ_PAIRS_SET`: the IP, TCP and UDP
/// hash types it supports, 128 entries spreading the pairs, both pairs for
/// transmit, and the key.
#[test]
fn several_pairs_on_an_rss_device_get_an_rss_configuration() {
    let f = FakeDevice::qemu_like_features() | bit(spec::NET_F_MQ) | bit(spec::NET_F_RSS);
    let dev = FakeDevice::new(f, 4, 256, MAC);
    {
        let mut s = dev.state();
        s.config[17] = 40;
        s.config[18..20].copy_from_slice(&128u16.to_le_bytes());
        s.config[20..24].copy_from_slice(&0x1ffu32.to_le_bytes());
    }
    let mut net = open(&dev).expect("open");
    let p = pool(2048);
    let mut c = PortConf::new(p.clone());
    (c.rx_queues, c.tx_queues, c.rx_desc, c.tx_desc) = (2, 2, 256, 256);
    net.configure(&c).expect("configure");
    // SAFETY: the port's queues are AnonMemory that outlives the server.
    let server = unsafe { dev.serve_control() };
    net.start().expect("start");
    drop(server);
    assert_ne!(net.negotiated_features() & bit(spec::NET_F_RSS), 0);
    let log = dev.ctrl_log();
    assert!(!log.iter().any(|(c, k, _)| (*c, *k) == (4, 0)), "{log:?}");
    let rss: Vec<&Vec<u8>> = log
        .iter()
        .filter(|(c, k, _)| (*c, *k) == (4, 1))
        .map(|(_, _, d)| d)
        .collect();
    assert_eq!(rss.len(), 1, "{log:?}");
    let d = rss[0];
    assert_eq!(u32::from_le_bytes(d[0..4].try_into().unwrap()), 0x3f);
    assert_eq!(
        u16::from_le_bytes([d[4], d[5]]),
        127,
        "indirection_table_mask"
    );
    assert_eq!(u16::from_le_bytes([d[6], d[7]]), 0, "unclassified_queue");
    let table: Vec<u16> = d[8..8 + 256]
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    assert!(table.iter().enumerate().all(|(i, q)| *q == (i % 2) as u16));
    let rest = &d[8 + 256..];
    assert_eq!(u16::from_le_bytes([rest[0], rest[1]]), 2, "max_tx_vq");
    assert_eq!(rest[2], 40);
    assert_eq!(&rest[3..], &pollux_virtio::net::RSS_KEY[..]);
}

/// RSS is left off when the device's limits allow no configuration (no
/// supported hash type), and on one pair: VQ_PAIRS_SET, or nothing.
#[test]
fn rss_needs_pairs_and_usable_limits() {
    for (pairs, types) in [(2u16, 0u32), (1, 0x3f)] {
        let f = FakeDevice::qemu_like_features() | bit(spec::NET_F_MQ) | bit(spec::NET_F_RSS);
        let dev = FakeDevice::new(f, 4, 256, MAC);
        {
            let mut s = dev.state();
            s.config[17] = 40;
            s.config[18..20].copy_from_slice(&128u16.to_le_bytes());
            s.config[20..24].copy_from_slice(&types.to_le_bytes());
        }
        let mut net = open(&dev).expect("open");
        let mut c = PortConf::new(pool(2048));
        (c.rx_queues, c.tx_queues, c.rx_desc, c.tx_desc) = (pairs, pairs, 256, 256);
        net.configure(&c).expect("configure");
        // SAFETY: as above.
        let server = unsafe { dev.serve_control() };
        net.start().expect("start");
        drop(server);
        assert_eq!(net.negotiated_features() & bit(spec::NET_F_RSS), 0);
        let log = dev.ctrl_log();
        assert!(!log.iter().any(|(c, k, _)| (*c, *k) == (4, 1)), "{log:?}");
        assert_eq!(
            log.contains(&(4, 0, pairs.to_le_bytes().to_vec())),
            pairs > 1,
            "{log:?}"
        );
    }
}

#[test]
fn mismatched_queue_counts_and_big_mtus_are_refused() {
    let dev = FakeDevice::new(
        FakeDevice::qemu_like_features() | bit(spec::NET_F_MQ),
        4,
        256,
        MAC,
    );
    let mut net = open(&dev).unwrap();
    let mut c = PortConf::new(pool(1024));
    c.rx_queues = 2;
    c.tx_queues = 1;
    assert!(net.configure(&c).unwrap_err().to_string().contains("pairs"));
    let mut c = PortConf::new(pool(1024));
    c.mtu = Some(9000);
    assert!(net
        .configure(&c)
        .unwrap_err()
        .to_string()
        .contains("MRG_RXBUF"));
    // No MQ: one pair only.
    let dev = FakeDevice::new(FakeDevice::qemu_like_features(), 1, 256, MAC);
    let mut net = open(&dev).unwrap();
    let mut c = PortConf::new(pool(1024));
    c.rx_queues = 2;
    c.tx_queues = 2;
    assert!(net.configure(&c).is_err());
}

#[test]
fn promiscuous_and_multicast_go_over_the_control_queue() {
    let (dev, mut net, _q, _p) = started(FakeDevice::qemu_like_features(), 1, |_| {});
    // SAFETY: the port's AnonMemory.
    let _server = unsafe { dev.serve_control() };
    net.set_promiscuous(true).unwrap();
    net.set_allmulticast(true).unwrap();
    let g = pollux_core::MacAddr([1, 0, 0x5e, 0, 0, 1]);
    net.set_mc_addr_list(&[g]).unwrap();
    let log = dev.ctrl_log();
    assert_eq!(&log[2..4], &[(0, 0, vec![1]), (0, 1, vec![1])]);
    assert_eq!(log[4].0, 1);
    assert_eq!(log[4].1, 0);
    // A refused command is an error, and the state is kept as it was.
    dev.state().ctrl_ack = spec::CTRL_ERR;
    assert!(net.set_promiscuous(false).is_err());
    assert!(net
        .set_mc_addr_list(&[pollux_core::MacAddr([2, 0, 0, 0, 0, 1])])
        .unwrap_err()
        .to_string()
        .contains("not a multicast"));
}

#[test]
fn event_indices_when_asked_for_move_frames_both_ways() {
    let dev = FakeDevice::new(FakeDevice::qemu_like_features(), 1, 64, MAC);
    let mut net = VirtioNet::from_transport(
        "fake0".into(),
        dev.transport(),
        Arc::new(AnonMemory::new(HugePages::Never)),
        VirtioOpts {
            event_idx: true,
            ..VirtioOpts::default()
        },
    )
    .unwrap();
    let p = pool(1024);
    let mut c = PortConf::new(p.clone());
    c.rx_desc = 64;
    c.tx_desc = 64;
    net.configure(&c).unwrap();
    // SAFETY: the port's AnonMemory.
    let server = unsafe { dev.serve_control() };
    net.start().unwrap();
    drop(server);
    assert!(dev.state().driver_features & bit(spec::F_RING_EVENT_IDX) != 0);
    let mut q = net.take_queues().unwrap();
    let (mut got, mut b) = (0, Burst::new(32));
    for i in 0..300u32 {
        // SAFETY: as above.
        while !unsafe { dev.deliver(0, &frame(i, 60), 0) } {
            got += q.rx[0].rx_burst(&mut b);
            b.clear();
        }
    }
    loop {
        let n = q.rx[0].rx_burst(&mut b);
        b.clear();
        if n == 0 {
            break;
        }
        got += n;
    }
    assert_eq!(got, 300);
    let mut sent = 0;
    for i in 0..300u32 {
        let mut m = p.alloc().unwrap();
        assert!(m.copy_from(&frame(i, 60)));
        let mut one = Burst::new(1);
        one.push(m).unwrap();
        while q.tx[0].tx_burst(&mut one) == 0 {
            // SAFETY: as above.
            sent += unsafe { dev.transmit(0) }.len();
        }
    }
    // SAFETY: as above.
    sent += unsafe { dev.transmit(0) }.len();
    assert_eq!(sent, 300);
}

/// Packed virtqueues (VIRTIO_F_RING_PACKED offered): frames through every
/// wrap of both queues, a queue size that is not a power of two, control
/// commands over a packed control queue (two-descriptor chains), and a
/// DEVICE_NEEDS_RESET recovery that starts the packed queues over.
#[test]
fn packed_queues_move_frames_commands_and_recover() {
    let f = FakeDevice::qemu_like_features() | bit(spec::F_RING_PACKED);
    let (dev, mut net, mut q, p) = started(f, 1, |c| {
        c.rx_desc = 200;
        c.tx_desc = 200;
    });
    {
        let s = dev.state();
        assert!(s.driver_features & bit(spec::F_RING_PACKED) != 0);
        // 200 rounds down to a power of two here (128): the driver keeps
        // one rule for both layouts.
        assert_eq!(s.queues[0].size, 128);
    }
    let mut b = Burst::new(32);
    let mut got = Vec::new();
    let mut sent = 0u32;
    while got.len() < 1000 {
        while sent < 1000 {
            // SAFETY: the port's AnonMemory.
            if !unsafe { dev.deliver(0, &frame(sent, 60 + sent as usize % 700), 0) } {
                break;
            }
            sent += 1;
        }
        q.rx[0].rx_burst(&mut b);
        while let Some(m) = b.pop_front() {
            got.push(m.data().to_vec());
        }
    }
    for (i, f) in got.iter().enumerate() {
        assert_eq!(f, &frame(i as u32, 60 + i % 700), "frame {i}");
    }
    let mut out = Vec::new();
    for i in 0..1000u32 {
        let mut m = p.alloc().unwrap();
        assert!(m.copy_from(&frame(i, 64)));
        let mut one = Burst::new(1);
        one.push(m).unwrap();
        while q.tx[0].tx_burst(&mut one) == 0 {
            // SAFETY: as above.
            out.extend(unsafe { dev.transmit(0) });
        }
    }
    // SAFETY: as above.
    out.extend(unsafe { dev.transmit(0) });
    assert_eq!(out.len(), 1000);
    assert!(out
        .iter()
        .enumerate()
        .all(|(i, f)| f == &frame(i as u32, 64)));
    // SAFETY: as above.
    let server = unsafe { dev.serve_control() };
    for _ in 0..150 {
        // More commands than the control queue has entries: its wrap.
        net.set_promiscuous(true).unwrap();
    }
    // Recovery with the handles alive.
    dev.needs_reset();
    net.service();
    q.rx[0].rx_burst(&mut b);
    q.tx[0].tx_burst(&mut Burst::<Mbuf>::new(1));
    net.service();
    drop(server);
    assert_eq!(net.recoveries(), 1);
    b.clear();
    // SAFETY: as above.
    assert!(unsafe { dev.deliver(0, &frame(7, 60), 0) });
    q.rx[0].rx_burst(&mut b);
    assert_eq!(
        b.iter().map(|m| m.data().to_vec()).collect::<Vec<_>>(),
        vec![frame(7, 60)]
    );
    drop(b);
    drop(q);
    net.stop().unwrap();
    drop(net);
    assert_eq!(p.available(), p.size());
}
