//! The pcap port against independent readers and writers of the format:
//! files we write are read back by tshark, files text2pcap writes are
//! replayed by us, and bad files are refused with a reason.

use std::path::{Path, PathBuf};
use std::process::Command;

use pollux_core::net::{udp_frame, UdpFrameSpec};
use pollux_core::{
    AnonMemory, Burst, MacAddr, Mbuf, Mempool, MempoolConfig, Polled, Port, PortConf, PortError,
};
use pollux_soft::pcap::{PcapOpts, PcapPort};

fn pool(n: usize) -> Mempool {
    Mempool::new(MempoolConfig::new("pcap-test", n), &AnonMemory::default()).unwrap()
}

fn small_pool(n: usize, data_room: u16) -> Mempool {
    let mut cfg = MempoolConfig::new("pcap-test-small", n);
    cfg.data_room = data_room;
    Mempool::new(cfg, &AnonMemory::default()).unwrap()
}

/// Frame `i`: a UDP frame whose length, destination MAC and payload all
/// depend on `i`, so reordering or mixing up frames cannot go unnoticed.
fn frame(i: usize) -> Vec<u8> {
    let len = 60 + (i * 37) % (1514 - 60 + 1);
    let mut f = vec![0u8; len];
    let spec = UdpFrameSpec {
        dst_mac: dst_mac(i),
        src_port: 1000 + i as u16,
        ..UdpFrameSpec::default()
    };
    assert!(udp_frame(&mut f, &spec));
    for (j, b) in f[42..].iter_mut().enumerate() {
        *b = (i + j) as u8;
    }
    f
}

fn dst_mac(i: usize) -> MacAddr {
    MacAddr([0x02, 0x00, 0x5e, 0x00, (i >> 8) as u8, i as u8])
}

fn mbufs(pool: &Mempool, frames: &[Vec<u8>]) -> Burst<Mbuf> {
    let mut b = Burst::new(frames.len());
    for f in frames {
        let mut m = pool.alloc().expect("pool has room");
        assert!(m.copy_from(f));
        b.push(m).unwrap();
    }
    b
}

fn configured(mut port: PcapPort, pool: &Mempool) -> PcapPort {
    let mut conf = PortConf::new(pool.clone());
    conf.port_id = 7;
    port.configure(&conf).unwrap();
    port
}

fn started(port: PcapPort, pool: &Mempool) -> Polled<PcapPort> {
    Polled::start(configured(port, pool)).unwrap()
}

/// Writes `frames` through a tx-only pcap port to `path`.
fn write_with_port(path: &Path, frames: &[Vec<u8>]) {
    let pool = pool(256);
    let tx = PcapPort::open("pcap_tx", None, Some(path), PcapOpts::default()).unwrap();
    let mut tx = started(tx, &pool);
    for chunk in frames.chunks(32) {
        let mut b = mbufs(&pool, chunk);
        assert_eq!(tx.tx_burst(0, &mut b), chunk.len());
        assert!(b.is_empty());
    }
    // Stops and drops the handles: the tx handle flushes the file.
    let tx = tx.stop().unwrap();
    let s = tx.stats();
    assert_eq!(s.opackets, frames.len() as u64);
    assert_eq!(s.obytes, frames.iter().map(|f| f.len() as u64).sum::<u64>());
    drop(tx);
    assert_eq!(pool.available(), 256, "tx freed every mbuf");
}

/// Receives until `rx_burst` returns 0.
fn read_all(port: &mut Polled<PcapPort>, limit: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut b = Burst::new(32);
    loop {
        let n = port.rx_burst(0, &mut b);
        if n == 0 {
            break;
        }
        for m in b.drain() {
            assert_eq!(m.rx().port, 7);
            out.push(m.data().to_vec());
        }
        assert!(out.len() <= limit, "more packets than expected");
    }
    out
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn frames_written_by_tx_replay_byte_for_byte() {
    let dir = tmp();
    let path = dir.path().join("rt.pcap");
    // About 1.5 MB, so streaming crosses its 1 MiB read boundary.
    let frames: Vec<Vec<u8>> = (0..2000).map(frame).collect();
    write_with_port(&path, &frames);

    for opts in [
        PcapOpts::default(),
        PcapOpts {
            preload: true,
            ..Default::default()
        },
    ] {
        let pool = pool(64);
        let rx = PcapPort::open("pcap_rx", Some(&path), None, opts).unwrap();
        let mut rx = started(rx, &pool);
        let got = read_all(&mut rx, frames.len());
        assert_eq!(got.len(), frames.len(), "{opts:?}");
        for (i, (g, f)) in got.iter().zip(&frames).enumerate() {
            assert_eq!(g, f, "frame {i} differs ({opts:?})");
        }
        assert_eq!(
            rx.rx_burst(0, &mut Burst::new(4)),
            0,
            "end of file stays the end"
        );
        let s = rx.port().stats();
        assert_eq!((s.ipackets, s.ierrors, s.rx_nombuf), (2000, 0, 0));
        drop(rx);
        assert_eq!(pool.available(), 64);
    }
}

#[test]
fn tshark_reads_our_file_with_the_same_lengths_and_addresses() {
    let dir = tmp();
    let path = dir.path().join("out.pcap");
    let frames: Vec<Vec<u8>> = (0..50).map(frame).collect();
    write_with_port(&path, &frames);

    let out = Command::new("tshark")
        .args(["-r"])
        .arg(&path)
        .args([
            "-T",
            "fields",
            "-e",
            "frame.len",
            "-e",
            "eth.dst",
            "-e",
            "udp.srcport",
        ])
        .output()
        .expect("tshark is installed (apt-get install -y tshark)");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), frames.len(), "tshark saw:\n{text}");
    for (i, line) in lines.iter().enumerate() {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 3, "{line:?}");
        assert_eq!(fields[0], frames[i].len().to_string(), "frame {i} length");
        assert_eq!(fields[1], dst_mac(i).to_string(), "frame {i} destination");
        assert_eq!(
            fields[2],
            (1000 + i).to_string(),
            "frame {i} UDP source port"
        );
    }

    // The header says nanosecond timestamps; tshark must see times of today,
    // not garbage from a resolution mix-up.
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&path)
        .args(["-T", "fields", "-e", "frame.time_epoch", "-c", "1"])
        .output()
        .unwrap();
    let t: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - t).abs() < 600.0, "timestamp {t} vs now {now}");
}

/// Writes `frames` as a hex dump and has text2pcap turn it into a capture.
fn text2pcap(dir: &Path, name: &str, frames: &[Vec<u8>], format: &str) -> PathBuf {
    let mut dump = String::new();
    for f in frames {
        for (off, chunk) in f.chunks(16).enumerate() {
            dump.push_str(&format!("{:06x}", off * 16));
            for b in chunk {
                dump.push_str(&format!(" {b:02x}"));
            }
            dump.push('\n');
        }
        dump.push('\n');
    }
    let txt = dir.join(format!("{name}.txt"));
    std::fs::write(&txt, dump).unwrap();
    let out = dir.join(name);
    let st = Command::new("text2pcap")
        .args(["-q", "-F", format])
        .arg(&txt)
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("text2pcap is installed (it comes with tshark)");
    assert!(st.success());
    out
}

#[test]
fn replays_a_file_written_by_text2pcap() {
    let dir = tmp();
    let frames: Vec<Vec<u8>> = (0..20).map(frame).collect();
    let path = text2pcap(dir.path(), "in.pcap", &frames, "pcap");
    let pool = pool(64);
    let rx = PcapPort::open("pcap0", Some(&path), None, PcapOpts::default()).unwrap();
    let mut rx = started(rx, &pool);
    assert_eq!(read_all(&mut rx, 20), frames);
    drop(rx);
    assert_eq!(pool.available(), 64);
}

#[test]
fn infinite_rx_loops_over_the_file() {
    let dir = tmp();
    let path = dir.path().join("three.pcap");
    let frames: Vec<Vec<u8>> = (0..3).map(frame).collect();
    write_with_port(&path, &frames);

    let pool = pool(64);
    let opts = PcapOpts {
        infinite_rx: true,
        ..Default::default()
    };
    let rx = PcapPort::open("pcap0", Some(&path), None, opts).unwrap();
    let mut rx = started(rx, &pool);
    let mut b = Burst::new(10);
    let mut seen = Vec::new();
    for _ in 0..5 {
        assert_eq!(
            rx.rx_burst(0, &mut b),
            10,
            "an infinite replay always fills the burst"
        );
        seen.extend(b.drain().map(|m| m.data().to_vec()));
    }
    for (k, f) in seen.iter().enumerate() {
        assert_eq!(f, &frames[k % 3], "packet {k}");
    }
    let s = rx.port().stats();
    assert_eq!(s.ipackets, 50);
    let loops = rx
        .port()
        .xstats()
        .into_iter()
        .find(|x| x.name == "rx_file_loops")
        .unwrap();
    assert_eq!(
        loops.value, 16,
        "50 packets from a 3-record file wrap 16 times"
    );
    drop(b);
    drop(rx);
    assert_eq!(pool.available(), 64);
}

#[test]
fn records_larger_than_a_buffer_are_counted_and_skipped() {
    let dir = tmp();
    let path = dir.path().join("mixed.pcap");
    // Buffers of 100 data bytes: frames 0 (60 B) and 1 (97 B) fit, the
    // others (134 to 245 B) do not.
    let frames: Vec<Vec<u8>> = (0..6).map(frame).collect();
    write_with_port(&path, &frames);
    let fits: Vec<&Vec<u8>> = frames.iter().filter(|f| f.len() <= 100).collect();
    assert_eq!(fits.len(), 2);

    let pool = small_pool(16, 128 + 100);
    let rx = PcapPort::open("pcap0", Some(&path), None, PcapOpts::default()).unwrap();
    let mut rx = started(rx, &pool);
    let got = read_all(&mut rx, 6);
    assert_eq!(got.iter().collect::<Vec<_>>(), fits);
    assert_eq!(rx.port().stats().ierrors, 4);
    drop(rx);

    // In an infinite replay of records that never fit, rx returns instead
    // of spinning.
    let path = dir.path().join("big.pcap");
    write_with_port(&path, &[frame(30), frame(31)]);
    let opts = PcapOpts {
        infinite_rx: true,
        ..Default::default()
    };
    let rx = PcapPort::open("pcap0", Some(&path), None, opts).unwrap();
    let mut rx = started(rx, &pool);
    assert_eq!(rx.rx_burst(0, &mut Burst::new(8)), 0);
    assert!(rx.port().stats().ierrors >= 2);
    drop(rx);
    assert_eq!(pool.available(), 16);
}

#[test]
fn an_empty_pool_counts_nombuf_and_loses_nothing() {
    let dir = tmp();
    let path = dir.path().join("ten.pcap");
    let frames: Vec<Vec<u8>> = (0..10).map(frame).collect();
    write_with_port(&path, &frames);

    let pool = pool(4);
    let rx = PcapPort::open("pcap0", Some(&path), None, PcapOpts::default()).unwrap();
    let mut rx = started(rx, &pool);
    let mut b = Burst::new(8);
    assert_eq!(rx.rx_burst(0, &mut b), 4);
    assert_eq!(rx.port().stats().rx_nombuf, 1);
    let mut got: Vec<Vec<u8>> = b.drain().map(|m| m.data().to_vec()).collect();
    got.extend(read_all(&mut rx, 10));
    assert_eq!(got, frames, "the record that found no buffer came next");
    drop(rx);
    assert_eq!(pool.available(), 4);
}

#[test]
fn with_promiscuous_off_only_our_frames_are_delivered() {
    let dir = tmp();
    let path = dir.path().join("filter.pcap");
    let mut frames: Vec<Vec<u8>> = (0..4).map(frame).collect();
    let ours = MacAddr([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
    let slow = MacAddr([0x01, 0x80, 0xc2, 0x00, 0x00, 0x02]);
    frames[1][0..6].copy_from_slice(&ours.0);
    frames[2][0..6].copy_from_slice(&slow.0);
    frames[3][0..6].copy_from_slice(&MacAddr::BROADCAST.0);
    write_with_port(&path, &frames);

    let pool = pool(16);
    let mut rx = PcapPort::open("pcap0", Some(&path), None, PcapOpts::default()).unwrap();
    rx.set_mac_addr(ours).unwrap();
    rx.set_promiscuous(false).unwrap();
    rx.set_mc_addr_list(&[slow]).unwrap();
    let mut rx = started(rx, &pool);
    let got = read_all(&mut rx, 4);
    assert_eq!(got, frames[1..].to_vec());
    let filtered = rx
        .port()
        .xstats()
        .into_iter()
        .find(|x| x.name == "rx_filtered")
        .unwrap();
    assert_eq!(filtered.value, 1);
    assert!(
        rx.port_mut().set_mc_addr_list(&[ours]).is_err(),
        "unicast in the multicast list"
    );
    drop(rx);
    assert_eq!(pool.available(), 16);
}

fn open_err(path: &Path, opts: PcapOpts) -> String {
    match PcapPort::open("pcap0", Some(path), None, opts) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_files_give_clear_errors() {
    let dir = tmp();
    let d = dir.path();
    let inf = PcapOpts {
        infinite_rx: true,
        ..Default::default()
    };

    let text = d.join("text.pcap");
    std::fs::write(&text, b"this is not a capture file, just some text\n").unwrap();
    for opts in [PcapOpts::default(), inf] {
        let e = open_err(&text, opts);
        assert!(
            e.contains("not a pcap file") && e.contains("text.pcap"),
            "{e}"
        );
    }

    let empty = d.join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    assert!(open_err(&empty, PcapOpts::default()).contains("shorter than the 24-byte"));

    let ng = text2pcap(d, "in.pcapng", &[frame(1)], "pcapng");
    assert!(open_err(&ng, PcapOpts::default()).contains("pcapng"));

    let missing = d.join("missing.pcap");
    let e = open_err(&missing, PcapOpts::default());
    assert!(
        e.contains("cannot open rx file") && e.contains("missing.pcap"),
        "{e}"
    );

    // A capture cut short in its third record.
    let good = d.join("good.pcap");
    let frames: Vec<Vec<u8>> = (0..3).map(frame).collect();
    write_with_port(&good, &frames);
    let bytes = std::fs::read(&good).unwrap();
    let cut = d.join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    let e = open_err(&cut, inf);
    assert!(e.contains("record 2") && e.contains("truncated"), "{e}");

    // Streamed, the same file delivers the complete records, then counts
    // the cut one as an error and ends.
    let pool = pool(8);
    let rx = PcapPort::open("pcap0", Some(&cut), None, PcapOpts::default()).unwrap();
    let mut rx = started(rx, &pool);
    assert_eq!(read_all(&mut rx, 3), frames[..2].to_vec());
    assert_eq!(rx.port().stats().ierrors, 1);
    assert_eq!(rx.rx_burst(0, &mut Burst::new(4)), 0);
    drop(rx);

    // A record header claiming 4 GiB.
    let mut huge = bytes.clone();
    huge[24 + 8..24 + 12].copy_from_slice(&u32::MAX.to_ne_bytes());
    let hp = d.join("huge.pcap");
    std::fs::write(&hp, &huge).unwrap();
    assert!(open_err(&hp, inf).contains("corrupt length"));
    let rx = PcapPort::open("pcap0", Some(&hp), None, PcapOpts::default()).unwrap();
    let mut rx = started(rx, &pool);
    assert_eq!(read_all(&mut rx, 0), Vec::<Vec<u8>>::new());
    assert_eq!(rx.port().stats().ierrors, 1);
    drop(rx);
    assert_eq!(pool.available(), 8);

    // A record longer than the header's snaplen (found by the pcap fuzz
    // target: pcap-file's raw records do not check it, and the port
    // delivered a frame longer than the capture allows).
    let mut over = bytes.clone();
    over[16..20].copy_from_slice(&100u32.to_ne_bytes());
    assert_eq!((frames[1].len(), frames[2].len()), (97, 134));
    let op = d.join("over.pcap");
    std::fs::write(&op, &over).unwrap();
    let e = open_err(&op, inf);
    assert!(
        e.contains("record 2") && e.contains("snaplen 100") && e.contains("corrupt length"),
        "{e}"
    );
    let rx = PcapPort::open("pcap0", Some(&op), None, PcapOpts::default()).unwrap();
    let mut rx = started(rx, &pool);
    assert_eq!(read_all(&mut rx, 2), frames[..2].to_vec());
    assert_eq!(rx.port().stats().ierrors, 1);
    drop(rx);
    assert_eq!(pool.available(), 8);

    // Nothing to do at all.
    let e = PcapPort::open("pcap0", None, None, PcapOpts::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs an rx file, a tx file or both"), "{e}");
}

#[test]
fn port_contract() {
    let dir = tmp();
    let path = dir.path().join("c.pcap");
    let pool = pool(8);
    let mut p = PcapPort::open("pcap0", None, Some(&path), PcapOpts::default()).unwrap();
    assert!(p.start().is_err(), "start before configure");
    let mut p = configured(p, &pool);
    assert!(
        matches!(p.take_queues(), Err(PortError::NotStarted)),
        "a stopped port hands out no queues"
    );
    p.start().unwrap();
    assert!(p.link().up);
    assert_eq!(p.link().speed_mbps, 10_000);
    let mut q = p.take_queues().unwrap();
    assert_eq!((q.rx.len(), q.tx.len()), (1, 1), "one queue each way");
    assert!(matches!(p.take_queues(), Err(PortError::QueuesTaken(_))));
    let mut b = mbufs(&pool, &[frame(0)]);
    assert_eq!(q.rx[0].rx_burst(&mut Burst::new(4)), 0, "no rx file");
    assert_eq!(q.tx[0].tx_burst(&mut b), 1);
    assert!(p.mac_addr().is_local() && p.mac_addr().is_valid_unicast());
    let mut conf = PortConf::new(pool.clone());
    assert!(p.configure(&conf).is_err(), "configure while started");
    assert!(
        matches!(p.flush(), Err(PortError::QueuesTaken(_))),
        "the tx handle holds the file"
    );
    p.stop().unwrap();
    assert!(!p.link().up);
    let mut b = mbufs(&pool, &[frame(1)]);
    assert_eq!(q.tx[0].tx_burst(&mut b), 0, "a stopped port takes nothing");
    assert_eq!(b.len(), 1);
    assert!(
        matches!(p.start(), Err(PortError::QueuesTaken(_))),
        "the last start's handles are alive"
    );
    drop(q);
    p.flush().unwrap();
    conf.rx_queues = 2;
    assert!(p.configure(&conf).is_err(), "two rx queues");
    assert_eq!(p.stats().opackets, 1);
    p.reset_stats();
    assert_eq!(p.stats().opackets, 0);
    assert_eq!(p.queue_stats()[0].tx_packets, 0);

    // A restart carries on writing the same file.
    p.start().unwrap();
    let mut p = Polled::new(p).unwrap();
    assert_eq!(p.tx_burst(0, &mut b), 1);
    let p = p.stop().unwrap();
    assert_eq!(p.stats().opackets, 1);
    assert_eq!(tshark_count(&path), 2, "both records in the file");
    drop(p);
    assert_eq!(pool.available(), 8);
}

/// Number of packets tshark reads from `path`.
fn tshark_count(path: &Path) -> usize {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(path)
        .args(["-T", "fields", "-e", "frame.number"])
        .output()
        .expect("tshark is installed (apt-get install -y tshark)");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn a_tx_handle_on_another_thread_writes_while_control_reads_stats() {
    const N: usize = 3000;
    let dir = tmp();
    let path = dir.path().join("thread.pcap");
    let pool = pool(512);
    let frames: Vec<Vec<u8>> = (0..N).map(frame).collect();
    let p = PcapPort::open("pcap0", None, Some(&path), PcapOpts::default()).unwrap();
    let mut p = configured(p, &pool);
    p.start().unwrap();
    let mut q = p.take_queues().unwrap();
    let mut tx = q.tx.pop().unwrap();
    let writer = {
        let (pool, frames) = (pool.clone(), frames.clone());
        std::thread::spawn(move || {
            for chunk in frames.chunks(32) {
                let mut b = mbufs(&pool, chunk);
                assert_eq!(tx.tx_burst(&mut b), chunk.len());
            }
            // Still holding the handle: the port is stopped under it.
            tx
        })
    };
    let mut last = 0;
    while !writer.is_finished() {
        // Two reads while the handle writes: the later one may be ahead.
        let per_queue = p.queue_stats()[0].tx_packets;
        let s = p.stats();
        assert!(s.opackets >= last, "counters never go back");
        assert!(per_queue <= s.opackets, "{per_queue} > {}", s.opackets);
        last = s.opackets;
        std::thread::yield_now();
    }
    let mut tx = writer.join().unwrap();
    let s = p.stats();
    assert_eq!(s.opackets, N as u64);
    assert_eq!(
        p.queue_stats()[0].tx_packets,
        s.opackets,
        "equal once quiet"
    );
    assert_eq!(s.obytes, frames.iter().map(|f| f.len() as u64).sum::<u64>());

    // Stop with the handle still out: the port cannot flush what the
    // handle buffers, but the handle's first burst after the stop does.
    p.stop().unwrap();
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    let buffered = size(&path);
    let mut b = mbufs(&pool, &[frame(0)]);
    assert_eq!(tx.tx_burst(&mut b), 0);
    assert_eq!(b.len(), 1, "still the caller's");
    assert!(size(&path) > buffered, "the stopped handle flushed");
    assert_eq!(tshark_count(&path), N);
    drop(b);
    drop((tx, q));
    p.start().unwrap();
    assert!(
        p.take_queues().is_ok(),
        "handles gone: the port starts again"
    );
    drop(p);
    assert_eq!(pool.available(), 512);
}

#[test]
fn rx_and_tx_handles_run_on_two_threads() {
    // Replays a file on one thread, and each packet goes out through the
    // tx handle on another: the output file equals the input.
    let dir = tmp();
    let input = dir.path().join("in.pcap");
    let output = dir.path().join("out.pcap");
    let frames: Vec<Vec<u8>> = (0..1000).map(frame).collect();
    write_with_port(&input, &frames);
    let pool = pool(256);
    let p = PcapPort::open("pcap0", Some(&input), Some(&output), PcapOpts::default()).unwrap();
    let mut p = configured(p, &pool);
    p.start().unwrap();
    let q = p.take_queues().unwrap();
    let (to_tx, from_rx) = std::sync::mpsc::sync_channel::<Burst<Mbuf>>(4);
    let [mut rx]: [_; 1] = q.rx.try_into().ok().unwrap();
    let [mut tx]: [_; 1] = q.tx.try_into().ok().unwrap();
    let reader = std::thread::spawn(move || {
        let mut got = 0;
        while got < 1000 {
            let mut b = Burst::new(32);
            // 0 while the pool is out of buffers (in the channel or with the
            // writer): try again.
            got += rx.rx_burst(&mut b);
            if !b.is_empty() {
                to_tx.send(b).unwrap();
            }
        }
        assert_eq!(rx.rx_burst(&mut Burst::new(32)), 0, "end of the file");
        rx
    });
    let writer = std::thread::spawn(move || {
        for mut b in from_rx {
            let n = b.len();
            assert_eq!(tx.tx_burst(&mut b), n);
        }
        // The tx handle is dropped here, which completes the file.
    });
    let rx = reader.join().unwrap();
    writer.join().unwrap();
    let s = p.stats();
    assert_eq!((s.ipackets, s.opackets), (1000, 1000));
    drop(rx);
    p.stop().unwrap();
    drop(p);
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    assert_eq!(size(&input), size(&output), "same records, same lengths");
    let back = PcapPort::open("pcap1", Some(&output), None, PcapOpts::default()).unwrap();
    let mut back = started(back, &pool);
    assert_eq!(read_all(&mut back, 1000), frames);
    drop(back);
    assert_eq!(pool.available(), 256);
}
