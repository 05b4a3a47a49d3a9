//! The af_packet port against the Linux kernel on the other end of a veth
//! pair: each test makes its own network namespace and veth pair (names
//! carry the pid and a counter; removed on drop, also when a test fails),
//! and the kernel in the namespace is the judge. Frames we send must reach
//! a UDP socket there; frames its sockets send must reach our rx_burst;
//! promiscuous mode, multicast memberships, MAC and MTU are checked with
//! iproute2; checksums we complete are checked by tshark.
//!
//! These tests need root (CAP_NET_ADMIN for namespaces and links,
//! CAP_NET_RAW for AF_PACKET) and fail, not skip, without it.

use std::collections::BTreeSet;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use pollux_core::net::{udp_frame, UdpFrameSpec};
use pollux_core::{
    AnonMemory, Burst, Duplex, MacAddr, Mbuf, Mempool, MempoolConfig, Polled, Port, PortConf,
    PortError, PortStats, RxFlags, RxOffloads, TxFlags, TxOffloads,
};
use pollux_soft::af_packet::{AfPacketOpts, AfPacketPort};
use pollux_soft::pcap::{PcapOpts, PcapPort};

const TIMEOUT: Duration = Duration::from_secs(3);
const PEER_IP: [u8; 4] = [10, 77, 0, 2];
const OUR_IP: [u8; 4] = [10, 77, 0, 1];
const VLAN_PEER_IP: [u8; 4] = [10, 78, 0, 2];
const VLAN_OUR_IP: [u8; 4] = [10, 78, 0, 1];

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!(
            "the af_packet tests need root: they create network namespaces and veth pairs \
             (CAP_NET_ADMIN) and open AF_PACKET sockets (CAP_NET_RAW); run them as root, \
             e.g. `sudo -E cargo test -p pollux-soft --test af_packet`"
        );
    }
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd} (is iproute2 installed?): {e}"));
    assert!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A veth pair: `ours` in this namespace (no address), `peer` in namespace
/// `ns` with 10.77.0.2/24 and a permanent neighbour entry for 10.77.0.1 at
/// our MAC, so its kernel sends to us without ARP.
struct Lab {
    ns: String,
    ours: String,
    peer: String,
    our_mac: MacAddr,
    peer_mac: MacAddr,
}

static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

impl Lab {
    fn new() -> Lab {
        require_root();
        let n = NEXT_LAB.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let p = pid.to_be_bytes();
        let lab = Lab {
            ns: format!("pollux-af-{pid}-{n}"),
            ours: format!("pxa{pid}n{n}"),
            peer: format!("pxb{pid}n{n}"),
            our_mac: MacAddr([0x02, 0xaf, p[2], p[3], n as u8, 0x01]),
            peer_mac: MacAddr([0x02, 0xaf, p[2], p[3], n as u8, 0x02]),
        };
        // From here on Drop cleans up whatever was made.
        run("ip", &["netns", "add", &lab.ns]);
        run(
            "ip",
            &[
                "link",
                "add",
                &lab.ours,
                "address",
                &lab.our_mac.to_string(),
                "type",
                "veth",
                "peer",
                "name",
                &lab.peer,
                "address",
                &lab.peer_mac.to_string(),
                "netns",
                &lab.ns,
            ],
        );
        // No IPv6 chatter (router solicitations, MLD) in the captures.
        let _ = std::fs::write(
            format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", lab.ours),
            "1",
        );
        let _ = Command::new("ip")
            .args(["netns", "exec", &lab.ns, "sysctl", "-qw"])
            .arg(format!("net.ipv6.conf.{}.disable_ipv6=1", lab.peer))
            .status();
        lab.ns_ip(&["addr", "add", "10.77.0.2/24", "dev", &lab.peer]);
        lab.ns_ip(&["link", "set", "lo", "up"]);
        lab.ns_ip(&["link", "set", &lab.peer, "up"]);
        lab.ns_ip(&[
            "neigh",
            "replace",
            "10.77.0.1",
            "lladdr",
            &lab.our_mac.to_string(),
            "dev",
            &lab.peer,
            "nud",
            "permanent",
        ]);
        run("ip", &["link", "set", &lab.ours, "up"]);
        lab
    }

    /// `ip -n <ns> args...`
    fn ns_ip(&self, args: &[&str]) -> String {
        let mut v = vec!["-n", self.ns.as_str()];
        v.extend_from_slice(args);
        run("ip", &v)
    }

    /// Runs `f` on a thread that has entered the namespace; sockets made
    /// there stay in it.
    fn in_ns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.ns);
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = std::fs::File::open(&path).expect("namespace file");
                // SAFETY: setns on this thread only (a fresh thread, not the
                // test's); the fd is open for the call.
                let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .expect("namespace thread")
        })
    }

    /// A UDP socket in the namespace bound to `ip:port`.
    fn udp(&self, ip: [u8; 4], port: u16) -> UdpSocket {
        self.in_ns(|| {
            let s = UdpSocket::bind(SocketAddrV4::new(ip.into(), port)).unwrap();
            s.set_read_timeout(Some(TIMEOUT)).unwrap();
            s
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.ours])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

fn pool(n: usize) -> Mempool {
    Mempool::new(
        MempoolConfig::new("af-packet-test", n),
        &AnonMemory::default(),
    )
    .unwrap()
}

/// A configured af_packet port on `lab`, not started.
fn configured(
    lab: &Lab,
    opts: AfPacketOpts,
    pool: &Mempool,
    conf: impl FnOnce(&mut PortConf),
) -> AfPacketPort {
    let mut p = AfPacketPort::open("af_packet0", &lab.ours, opts).unwrap();
    let mut c = PortConf::new(pool.clone());
    c.port_id = 9;
    conf(&mut c);
    p.configure(&c).unwrap();
    p
}

/// A started af_packet port on `lab` with its queues.
fn open(
    lab: &Lab,
    opts: AfPacketOpts,
    pool: &Mempool,
    conf: impl FnOnce(&mut PortConf),
) -> Polled<AfPacketPort> {
    Polled::start(configured(lab, opts, pool, conf)).unwrap()
}

/// A UDP frame from us to `dst_ip:dst_port` carrying `seq`.
fn frame_to(lab: &Lab, dst_ip: [u8; 4], dst_port: u16, seq: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    let spec = UdpFrameSpec {
        src_mac: lab.our_mac,
        dst_mac: lab.peer_mac,
        src_ip: if dst_ip == VLAN_PEER_IP {
            VLAN_OUR_IP
        } else {
            OUR_IP
        },
        dst_ip,
        src_port: 4000,
        dst_port,
    };
    assert!(udp_frame(&mut f, &spec));
    f[42..46].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in f[46..].iter_mut().enumerate() {
        *b = (seq as usize + i) as u8;
    }
    f
}

fn burst_of(pool: &Mempool, frames: &[Vec<u8>]) -> Burst<Mbuf> {
    let mut b = Burst::new(frames.len().max(1));
    for f in frames {
        let mut m = pool.alloc().unwrap();
        assert!(m.copy_from(f));
        b.push(m).unwrap();
    }
    b
}

/// Receives datagrams on `sock` until `n` arrived; returns their payloads.
fn recv_n(sock: &UdpSocket, n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while out.len() < n {
        match sock.recv_from(&mut buf) {
            Ok((len, _)) => out.push(buf[..len].to_vec()),
            Err(e) => panic!(
                "the peer kernel got {} of {n} datagrams, then: {e}",
                out.len()
            ),
        }
    }
    out
}

/// Polls `queue` until `n` frames matching `want` arrived or the timeout;
/// other frames are dropped.
fn rx_until(
    port: &mut Polled<AfPacketPort>,
    queue: u16,
    n: usize,
    want: impl Fn(&[u8]) -> bool,
) -> Vec<Mbuf> {
    let mut got = Vec::new();
    let mut b = Burst::new(32);
    let deadline = Instant::now() + TIMEOUT;
    while got.len() < n && Instant::now() < deadline {
        if port.rx_burst(queue, &mut b) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        got.extend(b.drain().filter(|m| want(m.data())));
    }
    got
}

/// UDP over IPv4 (after at most one tag) to `port`.
fn is_udp_to(f: &[u8], port: u16) -> bool {
    let l3 = if f.get(12..14) == Some(&[0x81, 0x00]) {
        18
    } else {
        14
    };
    f.len() >= l3 + 28
        && f[l3 - 2..l3] == [0x08, 0x00]
        && f[l3 + 9] == 17
        && u16::from_be_bytes([f[l3 + 22], f[l3 + 23]]) == port
}

/// UDP checksum check over the pseudo-header, written independently of the
/// port's code.
fn udp_checksum_ok(f: &[u8], l3: usize) -> bool {
    let ihl = (f[l3] & 0xf) as usize * 4;
    let udp = &f[l3 + ihl..];
    let len = u16::from_be_bytes([udp[4], udp[5]]) as usize;
    let mut sum: u64 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            sum += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u64;
        }
    };
    add(&f[l3 + 12..l3 + 20]);
    add(&[0, 17]);
    add(&(len as u16).to_be_bytes());
    add(&udp[..len]);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

#[test]
fn frames_we_send_reach_the_peer_kernel() {
    let lab = Lab::new();
    let pool = pool(512);
    let sock = lab.udp(PEER_IP, 5001);
    let mut port = open(&lab, AfPacketOpts::default(), &pool, |_| {});
    let frames: Vec<Vec<u8>> = (0..64)
        .map(|i| frame_to(&lab, PEER_IP, 5001, i, 60 + i as usize * 20))
        .collect();
    for chunk in frames.chunks(16) {
        let mut b = burst_of(&pool, chunk);
        assert_eq!(port.tx_burst(0, &mut b), 16);
        assert!(b.is_empty());
    }
    let got = recv_n(&sock, 64);
    let want: BTreeSet<Vec<u8>> = frames.iter().map(|f| f[42..].to_vec()).collect();
    let got: BTreeSet<Vec<u8>> = got.into_iter().collect();
    assert_eq!(got, want, "the peer's UDP socket got exactly our payloads");
    let s = port.port().stats();
    assert_eq!(s.opackets, 64);
    assert_eq!(s.obytes, frames.iter().map(|f| f.len() as u64).sum::<u64>());
    assert_eq!(s.oerrors, 0);
    // The kernel's own interface counters agree.
    let link = lab.ns_ip(&["-s", "link", "show", &lab.peer]);
    let rx_line = link
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("RX:"))
        .nth(1)
        .unwrap();
    let rx_packets: u64 = rx_line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(rx_packets >= 64, "peer counted {rx_packets}:\n{link}");
    drop(port.stop().unwrap());
    assert_eq!(pool.available(), 512);
}

#[test]
fn frames_the_kernel_sends_arrive_in_rx_burst() {
    let lab = Lab::new();
    let pool = pool(512);
    let mut port = open(&lab, AfPacketOpts::default(), &pool, |_| {});
    let sock = lab.udp(PEER_IP, 6000);
    let payloads: Vec<Vec<u8>> = (0..32u8).map(|i| vec![i; 10 + i as usize * 40]).collect();
    for p in &payloads {
        sock.send_to(p, SocketAddrV4::new(OUR_IP.into(), 6001))
            .unwrap();
    }
    let got = rx_until(&mut port, 0, 32, |f| is_udp_to(f, 6001));
    assert_eq!(got.len(), 32, "frames the kernel sent");
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("rx.pcap");
    let mut dump = PcapPort::open("pcap0", None, Some(&cap), PcapOpts::default()).unwrap();
    dump.configure(&PortConf::new(pool.clone())).unwrap();
    let mut dump = Polled::start(dump).unwrap();
    let mut all = Burst::new(32);
    for (m, p) in got.into_iter().zip(&payloads) {
        let f = m.data();
        assert_eq!(&f[0..6], &lab.our_mac.0, "destination");
        assert_eq!(&f[6..12], &lab.peer_mac.0, "source");
        assert_eq!(&f[26..30], &PEER_IP, "source IP");
        assert_eq!(&f[30..34], &OUR_IP, "destination IP");
        assert_eq!(u16::from_be_bytes([f[34], f[35]]), 6000);
        assert_eq!(&f[42..], &p[..], "payload");
        assert_eq!(f.len(), 42 + p.len());
        assert!(
            udp_checksum_ok(f, 14),
            "UDP checksum of a {}-byte frame",
            f.len()
        );
        assert_eq!((m.rx().port, m.rx().queue), (9, 0));
        assert!(m.rx().flags.contains(RxFlags::L4_CKSUM_GOOD));
        all.push(m).unwrap();
    }
    assert_eq!(dump.tx_burst(0, &mut all), 32);
    // Stops and drops the handles, so the file is complete.
    let dump = dump.stop().unwrap();
    // tshark is an independent judge of the checksums we completed.
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&cap)
        .args([
            "-o",
            "udp.check_checksum:TRUE",
            "-T",
            "fields",
            "-e",
            "udp.checksum.status",
        ])
        .output()
        .expect("tshark is installed");
    let status = String::from_utf8_lossy(&out.stdout);
    assert_eq!(status.lines().count(), 32, "{status}");
    assert!(
        status.lines().all(|l| l.trim() == "1"),
        "tshark: checksum status (1 = good):\n{status}"
    );
    let s = port.port().stats();
    assert!(
        s.ipackets >= 32 && s.ierrors == 0 && s.rx_nombuf == 0,
        "{s:?}"
    );

    // A stopped port receives nothing, and what came meanwhile is gone.
    port.port_mut().stop().unwrap();
    for _ in 0..5 {
        sock.send_to(b"while stopped", SocketAddrV4::new(OUR_IP.into(), 6001))
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(port.rx_burst(0, &mut Burst::new(8)), 0, "stopped");
    assert!(
        matches!(port.port_mut().start(), Err(PortError::QueuesTaken(_))),
        "the handles of the last start are alive"
    );
    let mut port = Polled::start(port.stop().unwrap()).unwrap();
    sock.send_to(b"after restart", SocketAddrV4::new(OUR_IP.into(), 6001))
        .unwrap();
    let got = rx_until(&mut port, 0, 1, |f| is_udp_to(f, 6001));
    assert_eq!(got.len(), 1);
    assert_eq!(
        &got[0].data()[42..],
        b"after restart",
        "nothing from while stopped"
    );
    std::thread::sleep(Duration::from_millis(50));
    let mut late = Burst::new(32);
    port.rx_burst(0, &mut late);
    assert!(
        !late.iter().any(|m| is_udp_to(m.data(), 6001)),
        "nothing after it"
    );
    drop(late);
    drop(got);
    drop(dump);
    drop(port);
    assert_eq!(pool.available(), 512);
}

/// Sends `frame` on the peer with a plain AF_PACKET socket (no ring, none
/// of the port's code), as a host with a VLAN device would.
fn raw_send_from_peer(lab: &Lab, frame: &[u8]) {
    lab.in_ns(|| {
        let name = std::ffi::CString::new(lab.peer.clone()).unwrap();
        // SAFETY: name is a NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert!(ifindex > 0);
        // SAFETY: socket has no memory-safety preconditions.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        assert!(fd >= 0);
        // SAFETY: sockaddr_ll is plain data; zeroes are valid.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_ifindex = ifindex as i32;
        sa.sll_halen = 6;
        sa.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: frame and sa are valid for the lengths given; fd is ours.
        let r = unsafe {
            libc::sendto(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        let err = std::io::Error::last_os_error();
        // SAFETY: fd is open and ours.
        unsafe { libc::close(fd) };
        assert_eq!(r, frame.len() as isize, "raw send: {err}");
    })
}

/// `frame` with an 802.1Q tag after the addresses.
fn tagged(frame: &[u8], tci: u16) -> Vec<u8> {
    let mut t = frame[..12].to_vec();
    t.extend_from_slice(&[0x81, 0x00]);
    t.extend_from_slice(&tci.to_be_bytes());
    t.extend_from_slice(&frame[12..]);
    t
}

/// Runs tcpdump on the peer until it has seen one frame matching `filter`
/// (or the timeout), calling `send` once it is listening; returns its
/// output.
fn tcpdump_on_peer(lab: &Lab, filter: &str, send: impl FnOnce()) -> String {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = Command::new("ip")
        .args([
            "netns", "exec", &lab.ns, "tcpdump", "-i", &lab.peer, "-nn", "-e", "-l", "-c", "1",
        ])
        .arg(filter)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump is installed (apt-get install -y tcpdump)");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let listening = line.contains("listening on");
            let _ = tx.send(line);
            if listening {
                break;
            }
        }
    });
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains("listening on") => break,
            Ok(_) => {}
            Err(e) => {
                let _ = child.kill();
                panic!("tcpdump did not start: {e}");
            }
        }
    }
    send();
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline + TIMEOUT {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn vlan_tags_are_reinserted_or_stripped_and_inserted() {
    let lab = Lab::new();
    let pool = pool(256);
    let mut plain = frame_to(&lab, VLAN_OUR_IP, 7001, 5, 70);
    plain[0..6].copy_from_slice(&lab.our_mac.0);
    plain[6..12].copy_from_slice(&lab.peer_mac.0);
    let wire = tagged(&plain, 100);

    // Without VLAN_STRIP: the frame exactly as it was on the wire (Linux
    // took the tag off; the port puts it back).
    let mut port = open(&lab, AfPacketOpts::default(), &pool, |_| {});
    raw_send_from_peer(&lab, &wire);
    let got = rx_until(&mut port, 0, 1, |f| is_udp_to(f, 7001));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data(), &wire[..]);
    assert!(!got[0].rx().flags.contains(RxFlags::VLAN_STRIPPED));
    drop(got);

    // With VLAN_STRIP: untagged frame, tag in the metadata.
    let mut p = port.stop().unwrap();
    let mut c = PortConf::new(pool.clone());
    c.rx_offloads = RxOffloads::VLAN_STRIP;
    c.tx_offloads = TxOffloads::VLAN_INSERT;
    p.configure(&c).unwrap();
    let mut port = Polled::start(p).unwrap();
    let pcp_wire = tagged(&plain, 0xa064); // priority 5, VLAN 100
    raw_send_from_peer(&lab, &pcp_wire);
    let got = rx_until(&mut port, 0, 1, |f| is_udp_to(f, 7001));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data(), &plain[..]);
    assert!(got[0].rx().flags.contains(RxFlags::VLAN_STRIPPED));
    assert_eq!(got[0].rx().vlan_tci, 0xa064);
    drop(got);

    // VLAN_INSERT: an untagged mbuf leaves tagged; tcpdump on the peer
    // sees VLAN 100 around our UDP datagram.
    let f = frame_to(&lab, VLAN_PEER_IP, 7000, 77, 80);
    let mut b = burst_of(&pool, std::slice::from_ref(&f));
    let m = &mut b.as_mut_slice()[0];
    m.tx_mut().flags = TxFlags::VLAN_INSERT;
    m.tx_mut().vlan_tci = 100;
    let seen = tcpdump_on_peer(&lab, "vlan 100 and udp port 7000", || {
        assert_eq!(port.tx_burst(0, &mut b), 1);
    });
    assert!(
        seen.contains("length 84: vlan 100, p 0, ethertype IPv4")
            && seen.contains("10.78.0.1.4000 > 10.78.0.2.7000"),
        "tcpdump on the peer saw: {seen:?}"
    );
    assert_eq!(port.port().stats().obytes, 84, "80 bytes plus the tag");
    drop(port.stop().unwrap());
    assert_eq!(pool.available(), 256);
}

#[test]
fn a_burst_larger_than_the_ring_leaves_the_rest_with_the_caller() {
    let lab = Lab::new();
    let pool = pool(256);
    let sock = lab.udp(PEER_IP, 5002);
    let opts = AfPacketOpts {
        frame_count: 8,
        ..Default::default()
    };
    let mut port = open(&lab, opts, &pool, |_| {});
    let frames: Vec<Vec<u8>> = (0..32)
        .map(|i| frame_to(&lab, PEER_IP, 5002, i, 100))
        .collect();
    let mut b = burst_of(&pool, &frames);
    assert_eq!(port.tx_burst(0, &mut b), 8, "an 8-frame ring takes 8");
    assert_eq!(b.len(), 24);
    assert_eq!(
        b.as_slice()[0].data(),
        &frames[8][..],
        "the rest, in order, still ours"
    );
    let deadline = Instant::now() + TIMEOUT;
    while !b.is_empty() && Instant::now() < deadline {
        if port.tx_burst(0, &mut b) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert!(b.is_empty(), "the ring drained within {TIMEOUT:?}");
    let got = recv_n(&sock, 32);
    let want: Vec<Vec<u8>> = frames.iter().map(|f| f[42..].to_vec()).collect();
    assert_eq!(got, want, "all 32, in order, intact");

    // Longer than the MTU allows: dropped and counted, not sent.
    let big = frame_to(&lab, PEER_IP, 5002, 99, 1515);
    let ok = frame_to(&lab, PEER_IP, 5002, 100, 1514);
    let mut b = burst_of(&pool, &[big, ok.clone()]);
    assert_eq!(port.tx_burst(0, &mut b), 2);
    assert_eq!(port.port().stats().oerrors, 1);
    assert_eq!(recv_n(&sock, 1), vec![ok[42..].to_vec()]);
    drop(b);
    drop(port.stop().unwrap());
    assert_eq!(pool.available(), 256);
}

#[test]
fn a_missing_interface_is_a_clear_error() {
    require_root();
    let e = AfPacketPort::open("af_packet0", "pxnosuchif0", AfPacketOpts::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("no interface named \"pxnosuchif0\""), "{e}");
    let e = AfPacketPort::open(
        "af_packet0",
        "this-name-is-far-too-long",
        AfPacketOpts::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("not an interface name"), "{e}");
}

/// `struct __user_cap_header_struct` and `__user_cap_data_struct` of
/// `<linux/capability.h>`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
const CAP_NET_RAW: u32 = 13;

#[test]
fn without_cap_net_raw_open_says_so() {
    require_root();
    // Capabilities are per thread: drop CAP_NET_RAW on a scratch thread.
    let e = std::thread::spawn(|| {
        let mut hdr = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let mut data = [CapData::default(); 2];
        // SAFETY: hdr and two data structs, as capget with version 3 wants.
        let r = unsafe {
            libc::syscall(
                libc::SYS_capget,
                &mut hdr as *mut CapHeader,
                data.as_mut_ptr(),
            )
        };
        assert_eq!(r, 0);
        data[0].effective &= !(1 << CAP_NET_RAW);
        // SAFETY: as above; capset changes only this thread's credentials.
        let r =
            unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) };
        assert_eq!(r, 0, "capset: {}", std::io::Error::last_os_error());
        AfPacketPort::open("af_packet0", "lo", AfPacketOpts::default())
            .unwrap_err()
            .to_string()
    })
    .join()
    .unwrap();
    assert!(e.contains("needs CAP_NET_RAW"), "{e}");
}

#[test]
fn fanout_spreads_flows_over_two_queues() {
    let lab = Lab::new();
    let pool = pool(512);
    let opts = AfPacketOpts {
        qpairs: 2,
        ..Default::default()
    };
    let mut port = AfPacketPort::open("af_packet0", &lab.ours, opts).unwrap();
    let mut c = PortConf::new(pool.clone());
    assert!(
        port.configure(&c).is_err(),
        "one rx queue on a two-socket fanout group"
    );
    c.rx_queues = 2;
    c.tx_queues = 2;
    port.configure(&c).unwrap();
    let mut port = Polled::start(port).unwrap();
    let socks: Vec<UdpSocket> = (0..64).map(|i| lab.udp(PEER_IP, 8000 + i)).collect();
    for (i, s) in socks.iter().enumerate() {
        s.send_to(&[i as u8; 20], SocketAddrV4::new(OUR_IP.into(), 8100))
            .unwrap();
    }
    let mut seen = BTreeSet::new();
    let mut per_queue = [0usize; 2];
    let deadline = Instant::now() + TIMEOUT;
    let mut b = Burst::new(32);
    while seen.len() < 64 && Instant::now() < deadline {
        for q in 0..2u16 {
            port.rx_burst(q, &mut b);
            for m in b.drain() {
                if is_udp_to(m.data(), 8100) {
                    assert_eq!(m.rx().queue, q);
                    assert!(seen.insert(m.data()[42]), "delivered twice");
                    per_queue[q as usize] += 1;
                }
            }
        }
    }
    assert_eq!(seen.len(), 64, "every flow arrived once");
    assert!(
        per_queue[0] > 0 && per_queue[1] > 0,
        "both queues got flows: {per_queue:?}"
    );
    assert_eq!(port.port().queue_stats().len(), 2);
    // Both tx queues send.
    for q in 0..2u16 {
        let mut b = burst_of(&pool, &[frame_to(&lab, PEER_IP, 8000, q as u32, 64)]);
        assert_eq!(port.tx_burst(q, &mut b), 1);
    }
    assert_eq!(recv_n(&socks[0], 2).len(), 2);
    drop(port.stop().unwrap());
    assert_eq!(pool.available(), 512);
}

/// The interface's `promiscuity` or `allmulti` reference count, as
/// `ip -d link` shows it (socket memberships raise the counts, not the
/// administrative flags `ip link` prints).
fn count(lab: &Lab, what: &str) -> u32 {
    let out = run("ip", &["-d", "link", "show", &lab.ours]);
    let mut words = out.split_whitespace();
    while let Some(w) = words.next() {
        if w == what {
            return words
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{out}"));
        }
    }
    panic!("no {what} in:\n{out}");
}

fn maddrs(lab: &Lab) -> String {
    run("ip", &["maddr", "show", "dev", &lab.ours])
}

#[test]
fn promiscuous_allmulti_and_multicast_memberships_reach_the_interface() {
    let lab = Lab::new();
    let pool = pool(64);
    let mut polled = open(&lab, AfPacketOpts::default(), &pool, |_| {});
    let port = polled.port_mut();
    assert_eq!(count(&lab, "promiscuity"), 0);
    port.set_promiscuous(true).unwrap();
    assert_eq!(count(&lab, "promiscuity"), 1);
    port.set_promiscuous(true).unwrap();
    assert_eq!(
        count(&lab, "promiscuity"),
        1,
        "twice on is still one reference"
    );
    port.set_promiscuous(false).unwrap();
    assert_eq!(count(&lab, "promiscuity"), 0);

    port.set_allmulticast(true).unwrap();
    assert_eq!(count(&lab, "allmulti"), 1);
    port.set_allmulticast(false).unwrap();
    assert_eq!(count(&lab, "allmulti"), 0);

    let slow: MacAddr = "01:80:c2:00:00:02".parse().unwrap();
    let other: MacAddr = "01:00:5e:01:02:03".parse().unwrap();
    port.set_mc_addr_list(&[slow, other]).unwrap();
    let m = maddrs(&lab);
    assert!(
        m.contains("01:80:c2:00:00:02") && m.contains("01:00:5e:01:02:03"),
        "{m}"
    );
    port.set_mc_addr_list(&[slow]).unwrap();
    let m = maddrs(&lab);
    assert!(
        m.contains("01:80:c2:00:00:02") && !m.contains("01:00:5e:01:02:03"),
        "{m}"
    );
    assert!(
        port.set_mc_addr_list(&[lab.peer_mac]).is_err(),
        "unicast refused"
    );
    assert!(
        maddrs(&lab).contains("01:80:c2:00:00:02"),
        "a refused list changes nothing"
    );
    port.set_mc_addr_list(&[]).unwrap();
    assert!(!maddrs(&lab).contains("01:80:c2:00:00:02"));

    // Memberships belong to the socket: closing it undoes them.
    port.set_promiscuous(true).unwrap();
    port.set_mc_addr_list(&[slow]).unwrap();
    drop(polled);
    assert_eq!(count(&lab, "promiscuity"), 0);
    assert!(!maddrs(&lab).contains("01:80:c2:00:00:02"));

    let opts = AfPacketOpts {
        promiscuous: true,
        ..Default::default()
    };
    let port = AfPacketPort::open("af_packet0", &lab.ours, opts).unwrap();
    assert_eq!(count(&lab, "promiscuity"), 1, "promiscuous at open");
    drop(port);
    assert_eq!(pool.available(), 64);
}

#[test]
fn link_mac_and_mtu_are_the_interfaces() {
    let lab = Lab::new();
    let pool = pool(64);
    let mut port = open(&lab, AfPacketOpts::default(), &pool, |c| c.mtu = Some(1400));
    assert!(run("ip", &["link", "show", &lab.ours]).contains("mtu 1400"));

    // The MTU bounds tx: 1414 bytes go, 1415 do not.
    let sock = lab.udp(PEER_IP, 5003);
    let f = frame_to(&lab, PEER_IP, 5003, 1, 1414);
    let mut b = burst_of(&pool, &[frame_to(&lab, PEER_IP, 5003, 2, 1415), f.clone()]);
    assert_eq!(port.tx_burst(0, &mut b), 2);
    assert_eq!(port.port().stats().oerrors, 1);
    assert_eq!(recv_n(&sock, 1), vec![f[42..].to_vec()]);
    drop(b);

    let mut port = port.stop().unwrap();
    port.start().unwrap();
    assert_eq!(port.mac_addr(), lab.our_mac);
    let new = MacAddr([0x02, 0xaf, 0, 0, 0xee, 0x01]);
    port.set_mac_addr(new).unwrap();
    assert!(run("ip", &["link", "show", &lab.ours]).contains("02:af:00:00:ee:01"));
    assert_eq!(port.mac_addr(), new);
    assert!(port.set_mac_addr(MacAddr::BROADCAST).is_err());

    let l = port.link();
    assert!(l.up, "{l}");
    assert_eq!(
        (l.speed_mbps, l.duplex),
        (10_000, Duplex::Full),
        "veth reports 10 Gbps full duplex"
    );
    // Link changes are applied by the kernel's linkwatch work, so wait.
    let wait_link = |port: &mut AfPacketPort, up: bool| {
        let deadline = Instant::now() + TIMEOUT;
        while port.link().up != up && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(port.link().up, up);
    };
    run("ip", &["link", "set", &lab.ours, "down"]);
    wait_link(&mut port, false);
    run("ip", &["link", "set", &lab.ours, "up"]);
    wait_link(&mut port, true);

    let mut c = PortConf::new(pool.clone());
    c.mtu = Some(9000);
    assert!(port.configure(&c).is_err(), "configure while started");
    port.stop().unwrap();
    let e = port.configure(&c).unwrap_err().to_string();
    assert!(e.contains("raise frame_size"), "{e}");
    drop(port);
    assert_eq!(pool.available(), 64);
}

#[test]
fn a_full_ring_counts_imissed_and_an_empty_pool_counts_nombuf() {
    let lab = Lab::new();
    let pool = pool(8);
    let opts = AfPacketOpts {
        frame_count: 8,
        ..Default::default()
    };
    let mut port = open(&lab, opts, &pool, |_| {});
    let sock = lab.udp(PEER_IP, 6100);
    let to_us = SocketAddrV4::new(OUR_IP.into(), 6101);

    // Hold every buffer: the frame waits in the ring.
    let mut held = Vec::new();
    while let Some(m) = pool.alloc() {
        held.push(m);
    }
    sock.send_to(b"first", to_us).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(port.rx_burst(0, &mut Burst::new(4)), 0);
    assert!(port.port().stats().rx_nombuf >= 1);
    drop(held);
    let got = rx_until(&mut port, 0, 1, |f| is_udp_to(f, 6101));
    assert_eq!(got.len(), 1, "the frame stayed in the ring");
    assert_eq!(&got[0].data()[42..], b"first");
    drop(got);

    // 100 datagrams into an 8-frame ring nobody reads.
    for i in 0..100u32 {
        sock.send_to(&i.to_be_bytes(), to_us).unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    let s = port.port().stats();
    assert!(s.imissed >= 92, "kernel drops (tp_drops): {s:?}");
    let got = rx_until(&mut port, 0, 8, |f| is_udp_to(f, 6101));
    assert_eq!(got.len(), 8, "the ring's worth");
    assert_eq!(port.rx_burst(0, &mut Burst::new(8)), 0, "and no more");
    assert_eq!(got.len() as u64 + port.port().stats().imissed, 100);
    drop(got);
    port.port_mut().reset_stats();
    assert_eq!(port.port().stats(), PortStats::default());
    assert!(port.port().queue_stats().iter().all(|q| q.rx_packets == 0));
    drop(port);
    assert_eq!(pool.available(), 8);
}

#[test]
fn each_queue_runs_on_its_own_thread_while_control_reads_stats() {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    let lab = Lab::new();
    let pool = pool(512);
    let opts = AfPacketOpts {
        qpairs: 2,
        ..Default::default()
    };
    let mut port = configured(&lab, opts, &pool, |c| {
        c.rx_queues = 2;
        c.tx_queues = 2;
    });
    assert!(matches!(port.take_queues(), Err(PortError::NotStarted)));
    port.start().unwrap();
    let q = port.take_queues().unwrap();
    assert!(matches!(port.take_queues(), Err(PortError::QueuesTaken(_))));
    let socks: Vec<UdpSocket> = (0..64).map(|i| lab.udp(PEER_IP, 8000 + i)).collect();

    // One lcore per queue pair: receive until told to stop, then send one
    // frame on the pair's own tx queue.
    let done = Arc::new(AtomicBool::new(false));
    let lcores: Vec<_> =
        q.rx.into_iter()
            .zip(q.tx)
            .enumerate()
            .map(|(i, (mut rx, mut tx))| {
                let done = done.clone();
                let pool = pool.clone();
                let f = frame_to(&lab, PEER_IP, 8000, 1000 + i as u32, 64);
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    let mut b = Burst::new(32);
                    while !done.load(Ordering::Relaxed) {
                        if rx.rx_burst(&mut b) == 0 {
                            std::thread::sleep(Duration::from_micros(200));
                        }
                        for m in b.drain() {
                            if is_udp_to(m.data(), 8100) {
                                assert_eq!(m.rx().queue, i as u16);
                                seen.push(m.data()[42]);
                            }
                        }
                    }
                    let mut b = burst_of(&pool, std::slice::from_ref(&f));
                    assert_eq!(tx.tx_burst(&mut b), 1);
                    (seen, rx, tx)
                })
            })
            .collect();
    for (i, s) in socks.iter().enumerate() {
        s.send_to(&[i as u8; 20], SocketAddrV4::new(OUR_IP.into(), 8100))
            .unwrap();
    }
    // The control side watches the counters grow while the lcores run.
    let deadline = Instant::now() + TIMEOUT;
    let mut last = 0;
    loop {
        let s = port.stats();
        assert!(s.ipackets >= last, "counters never go back");
        last = s.ipackets;
        let per_queue: u64 = port.queue_stats().iter().map(|q| q.rx_packets).sum();
        assert!(per_queue <= port.stats().ipackets);
        if last >= 64 || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    done.store(true, Ordering::Relaxed);
    let mut seen = BTreeSet::new();
    let mut per_queue = Vec::new();
    let mut handles = Vec::new();
    for t in lcores {
        let (got, rx, tx) = t.join().unwrap();
        per_queue.push(got.len());
        for g in got {
            assert!(seen.insert(g), "delivered twice");
        }
        handles.push((rx, tx));
    }
    assert_eq!(seen.len(), 64, "every flow arrived once");
    assert!(
        per_queue.iter().all(|&n| n > 0),
        "both queues got flows: {per_queue:?}"
    );
    assert_eq!(recv_n(&socks[0], 2).len(), 2, "both tx queues sent");
    assert_eq!(port.stats().opackets, 2);
    let qs = port.queue_stats();
    assert_eq!((qs[0].tx_packets, qs[1].tx_packets), (1, 1));

    // Stop while the handles are alive: they do nothing from now on, and
    // the port starts again only once they are gone.
    port.stop().unwrap();
    let mut b = Burst::new(8);
    for (rx, tx) in &mut handles {
        assert_eq!(rx.rx_burst(&mut b), 0);
        let mut one = burst_of(&pool, &[frame_to(&lab, PEER_IP, 8000, 7, 64)]);
        assert_eq!(tx.tx_burst(&mut one), 0, "stopped");
        assert_eq!(one.len(), 1);
    }
    assert!(matches!(port.start(), Err(PortError::QueuesTaken(_))));
    drop(handles);
    port.start().unwrap();
    let mut port = Polled::new(port).unwrap();
    socks[1]
        .send_to(b"again", SocketAddrV4::new(OUR_IP.into(), 8100))
        .unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    while got.is_empty() && Instant::now() < deadline {
        for q in 0..2 {
            port.rx_burst(q, &mut b);
            got.extend(b.drain().filter(|m| is_udp_to(m.data(), 8100)));
        }
    }
    assert_eq!(got.len(), 1, "the rings came back to the port");
    assert_eq!(&got[0].data()[42..], b"again");
    drop(got);
    drop(port);
    assert_eq!(pool.available(), 512);
}

/// The `name` xstat.
fn xstat(port: &AfPacketPort, name: &str) -> u64 {
    port.xstats()
        .into_iter()
        .find(|x| x.name == name)
        .unwrap_or_else(|| panic!("no xstat {name}"))
        .value
}

#[test]
fn stop_takes_back_tx_frames_the_kernel_never_took() {
    // With the interface down the kernel refuses every kick (ENETDOWN), so
    // frames stay requested in the tx ring until stop takes them back.
    let lab = Lab::new();
    let pool = pool(64);
    let frames: Vec<Vec<u8>> = (0..5)
        .map(|i| frame_to(&lab, PEER_IP, 5004, i, 80))
        .collect();

    // The ring is docked at stop (the handles are gone): stop discards.
    let mut port = open(&lab, AfPacketOpts::default(), &pool, |_| {});
    run("ip", &["link", "set", &lab.ours, "down"]);
    let mut b = burst_of(&pool, &frames);
    assert_eq!(port.tx_burst(0, &mut b), 5, "queued in the ring");
    assert!(xstat(port.port(), "tx_kick_errors") >= 1);
    let (mut port, queues) = port.into_parts();
    drop(queues);
    port.stop().unwrap();
    assert_eq!(xstat(&port, "tx_discarded_on_stop"), 5);
    assert_eq!(port.stats().oerrors, 5);

    // A tx handle holds the ring at stop: stop only waits, and the frames
    // are taken back and counted once the handle is gone.
    port.reset_stats();
    port.start().unwrap();
    let mut port = Polled::new(port).unwrap();
    let mut b = burst_of(&pool, &frames[..3]);
    assert_eq!(port.tx_burst(0, &mut b), 3);
    port.port_mut().stop().unwrap();
    let (mut port, queues) = port.into_parts();
    assert_eq!(xstat(&port, "tx_discarded_on_stop"), 0, "not yet");
    port.service();
    assert_eq!(
        xstat(&port, "tx_discarded_on_stop"),
        0,
        "the handle holds the ring"
    );
    drop(queues);
    port.service();
    assert_eq!(xstat(&port, "tx_discarded_on_stop"), 3);
    assert_eq!(port.stats().oerrors, 3);

    // Nothing of it is sent after a restart: the ring holds only what is
    // sent from then on.
    run("ip", &["link", "set", &lab.ours, "up"]);
    let sock = lab.udp(PEER_IP, 5004);
    // Counted when queued, as before the stop took them back.
    let queued_before = port.stats().opackets;
    assert_eq!(queued_before, 3);
    let mut port = Polled::start(port).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while !port.port_mut().link().up {
        assert!(Instant::now() < deadline, "link up again");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Two bursts: the link going down left ENETDOWN pending on the socket
    // (sk_err), which fails the first kick after it comes back; that frame
    // waits in the ring for the second burst's kick.
    let new: Vec<Vec<u8>> = (99..101)
        .map(|i| frame_to(&lab, PEER_IP, 5004, i, 80))
        .collect();
    for f in &new {
        let mut b = burst_of(&pool, std::slice::from_ref(f));
        assert_eq!(port.tx_burst(0, &mut b), 1);
    }
    let want: Vec<Vec<u8>> = new.iter().map(|f| f[42..].to_vec()).collect();
    assert_eq!(recv_n(&sock, 2), want, "the new frames, in order");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    assert!(
        sock.recv_from(&mut [0u8; 2048]).is_err(),
        "and none of the discarded ones"
    );
    assert_eq!(port.port().stats().opackets, queued_before + 2);
    drop(port);
    assert_eq!(pool.available(), 64);
}
