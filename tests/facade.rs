//! What an application sees through the facade alone: open ports by device
//! string, configure, split them into per-queue handles, forward on two
//! lcores while the control side works, stop, and get every mbuf back.

use std::time::{Duration, Instant};

use pollux::core::lcore::{self, StopFlag};
use pollux::core::{
    AnonMemory, Burst, MacAddr, Mempool, MempoolConfig, Port, PortConf, PortError, RxQueue, TxQueue,
};
use pollux::vfio::PciOpenOpts;

fn pool(n: usize) -> Mempool {
    Mempool::new(MempoolConfig::new("facade", n), &AnonMemory::default()).unwrap()
}

#[test]
fn open_by_device_string_and_forward_on_two_lcores() {
    let pool = pool(8192);
    let opts = PciOpenOpts::default();
    let mut a = pollux::open("null0,size=60", &opts).expect("null port by device string");
    let mut b = pollux::open("null1", &opts).unwrap();
    assert_eq!(a.info().driver, "net_null");
    for (id, p) in [&mut a, &mut b].into_iter().enumerate() {
        let mut conf = PortConf::new(pool.clone());
        conf.port_id = id as u16;
        conf.rx_queues = 2;
        conf.tx_queues = 2;
        p.configure(&conf).unwrap();
        p.start().unwrap();
    }
    let qa = a.take_queues().unwrap();
    let qb = b.take_queues().unwrap();
    assert!(matches!(a.take_queues(), Err(PortError::QueuesTaken(_))));

    // Lcore i owns rx queue i of port a and tx queue i of port b: nothing
    // is shared between the two but the pool.
    let stop = StopFlag::new();
    let mut lcores = Vec::new();
    for (i, (mut rx, mut tx)) in qa.rx.into_iter().zip(qb.tx).enumerate() {
        let s = stop.clone();
        lcores.push(
            lcore::launch(i, None, stop.clone(), move |_| {
                let mut burst = Burst::new(32);
                let mut moved = 0u64;
                while !s.is_stopped() {
                    rx.rx_burst(&mut burst);
                    moved += tx.tx_burst(&mut burst) as u64;
                    burst.clear();
                }
                moved
            })
            .unwrap(),
        );
    }
    // The control side works while the queues run.
    let until = Instant::now() + Duration::from_millis(300);
    let mut last = 0;
    while Instant::now() < until {
        a.service();
        assert!(a.link().up);
        let rx = a.stats().ipackets;
        assert!(rx >= last, "counters move forward while read");
        last = rx;
        a.set_mac_addr(MacAddr([2, 0, 0, 0, 0, 9])).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.stop();
    let moved: u64 = lcores.into_iter().map(|l| l.join().unwrap()).sum();
    assert!(moved > 0);
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(sb.opackets, moved, "port b sent what the lcores moved");
    assert_eq!(sa.ipackets, moved, "and port a received it, all 60 bytes");
    assert_eq!(sa.ibytes, moved * 60);
    let per_queue = a.queue_stats();
    assert_eq!(per_queue.len(), 2);
    assert!(
        per_queue.iter().all(|q| q.rx_packets > 0),
        "both queues polled: {per_queue:?}"
    );
    drop(qb.rx);
    drop(qa.tx);
    a.stop().unwrap();
    b.stop().unwrap();
    drop((a, b));
    assert_eq!(pool.available(), pool.size(), "every mbuf back");
}

#[test]
fn unknown_devices_are_clear_errors() {
    let opts = PciOpenOpts {
        vfio: pollux::vfio::OpenOpts {
            sysfs_root: "/nonexistent-sysfs".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let e = pollux::open("0000:00:1f.7", &opts)
        .err()
        .expect("no such function");
    assert!(e.to_string().contains("0000:00:1f.7"), "{e}");
    let e = pollux::open("nosuchkind0", &opts)
        .err()
        .expect("not a device kind");
    assert!(!e.to_string().is_empty());
    assert!(pollux::pci_driver(0x8086, 0x10ca).is_some_and(|d| d.name == "net_igbvf"));
    assert!(
        pollux::pci_driver(0x8086, 0x10c9).is_none(),
        "the PF is not ours"
    );
}
