//! The host end to end over a real vfio-user socket, judged by rust-vmm's
//! own vfio-user client (someone else's implementation of the protocol):
//! config space, a DMA through two page maps, an MSI-X eventfd, a DMA to
//! an unmapped IOVA refused and logged, and a clean end when the client
//! goes. (The client waits forever for the payload of a read the server
//! refused, so accesses outside a BAR are tested on the host directly.)

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use pollux_model::dma_test::{self, pattern, reg, DmaTest};
use pollux_model::model::ViolationLog;
use pollux_model::pci::{CMD_BUS_MASTER, CMD_MEMORY, MSIX_CAP, MSIX_ENABLE};
use vfio_bindings::bindings::vfio::{
    VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_PCI_BAR0_REGION_INDEX,
    VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_MSIX_IRQ_INDEX,
};

fn eventfd() -> File {
    // SAFETY: eventfd(2) with valid flags returns a new descriptor or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: a fresh descriptor owned by nobody else.
    unsafe { File::from_raw_fd(fd) }
}

fn wr(c: &mut vfio_user::Client, off: u64, v: u32) {
    c.region_write(VFIO_PCI_BAR0_REGION_INDEX, off, &v.to_le_bytes())
        .unwrap();
}

fn rd(c: &mut vfio_user::Client, region: u32, off: u64) -> u32 {
    let mut b = [0u8; 4];
    c.region_read(region, off, &mut b).unwrap();
    u32::from_le_bytes(b)
}

#[test]
fn dma_test_over_a_real_socket_with_rust_vmms_client() {
    let dir = std::env::temp_dir().join(format!("pollux-model-proto-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("dma-test.sock");
    let _ = std::fs::remove_file(&sock);
    let path = sock.clone();
    let server = std::thread::spawn(move || {
        pollux_model::host::serve(
            DmaTest::new(),
            ViolationLog::default(),
            &path,
            &Default::default(),
        )
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "the server never listened");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut c = vfio_user::Client::new(&sock).expect("client connects");

    // Config space: the IDs, then the driver's enables.
    assert_eq!(
        rd(&mut c, VFIO_PCI_CONFIG_REGION_INDEX, 0),
        (dma_test::ID.1 as u32) << 16 | dma_test::ID.0 as u32
    );
    c.region_write(
        VFIO_PCI_CONFIG_REGION_INDEX,
        4,
        &(CMD_MEMORY | CMD_BUS_MASTER).to_le_bytes(),
    )
    .unwrap();
    c.region_write(
        VFIO_PCI_CONFIG_REGION_INDEX,
        MSIX_CAP as u64 + 2,
        &MSIX_ENABLE.to_le_bytes(),
    )
    .unwrap();
    assert_eq!(
        rd(&mut c, VFIO_PCI_BAR0_REGION_INDEX, reg::MAGIC),
        dma_test::MAGIC
    );

    // Guest memory: a file; two IOVA pages mapped to distant file pages.
    let ram = tempfile::tempfile().unwrap();
    ram.set_len(1 << 20).unwrap();
    c.dma_map(0x2000, 0x10_0000, 0x1000, ram.as_raw_fd())
        .unwrap();
    c.dma_map(0x5000, 0x10_1000, 0x1000, ram.as_raw_fd())
        .unwrap();
    let efd = eventfd();
    c.set_irqs(
        VFIO_PCI_MSIX_IRQ_INDEX,
        VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
        0,
        1,
        &[efd.as_raw_fd()],
    )
    .unwrap();

    // 0x200 bytes across the page boundary.
    wr(&mut c, reg::ADDR_LO, 0x10_0f00);
    wr(&mut c, reg::ADDR_HI, 0);
    wr(&mut c, reg::LEN, 0x200);
    wr(&mut c, reg::SEED, 0x42);
    wr(&mut c, reg::VECTOR, 0);
    wr(&mut c, reg::DOORBELL, 1);
    assert_eq!(
        rd(&mut c, VFIO_PCI_BAR0_REGION_INDEX, reg::STATUS),
        dma_test::STATUS_DONE
    );
    assert_eq!(rd(&mut c, VFIO_PCI_BAR0_REGION_INDEX, reg::DONE), 1);
    let mut got = vec![0u8; 0x200];
    ram.read_exact_at(&mut got[..0x100], 0x2f00).unwrap();
    ram.read_exact_at(&mut got[0x100..], 0x5000).unwrap();
    let want: Vec<u8> = (0..0x200).map(|i| pattern(0x42, i)).collect();
    assert_eq!(got, want, "the pattern, split over the two file pages");
    let mut n = [0u8; 8];
    (&efd).read_exact(&mut n).expect("MSI-X vector 0 signalled");
    assert_eq!(u64::from_ne_bytes(n), 1);

    // An unmapped IOVA: refused, nothing written, logged.
    wr(&mut c, reg::ADDR_LO, 0x20_0000);
    wr(&mut c, reg::DOORBELL, 1);
    assert_eq!(
        rd(&mut c, VFIO_PCI_BAR0_REGION_INDEX, reg::STATUS),
        dma_test::STATUS_ERROR
    );
    assert_eq!(rd(&mut c, VFIO_PCI_BAR0_REGION_INDEX, reg::DONE), 1);

    drop(c);
    let host = server
        .join()
        .unwrap()
        .expect("the server ends cleanly when the client goes");
    let host = host.lock().unwrap();
    let log: Vec<String> = host.log().entries().iter().map(|v| v.to_string()).collect();
    assert!(
        log.iter().any(|v| v.contains("0x200000 is not mapped")),
        "{log:#?}"
    );
    assert_eq!(host.log().total(), 1, "{log:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}
