//! A model's wire: the far end is a kernel NIC in the guest behind one of
//! the lab's own wire kinds, QEMU `dgram` netdevs over UDP on 127.0.0.1 or
//! over unix datagram sockets. QEMU's dgram netdev sends each Ethernet
//! frame as one datagram, with no header (QEMU `net/dgram.c`).
//!
//! Spec syntax (`--wire`): `dgram:LOCAL_ADDR:PORT,REMOTE_ADDR:PORT` for UDP,
//! `unix:LOCAL_PATH,REMOTE_PATH` for unix datagram sockets.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

/// Largest frame carried (a jumbo frame with room to spare).
pub const MAX_FRAME: usize = 65536;

/// Where a wire's two ends are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireSpec {
    /// UDP, local and remote address.
    Udp(SocketAddr, SocketAddr),
    /// Unix datagram sockets, local and remote path.
    Unix(PathBuf, PathBuf),
}

impl std::str::FromStr for WireSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("--wire {s:?}: {why}; expected dgram:LOCAL_ADDR:PORT,REMOTE_ADDR:PORT or unix:LOCAL_PATH,REMOTE_PATH")
        };
        let (kind, rest) = s.split_once(':').ok_or_else(|| bad("no kind"))?;
        let (a, b) = rest.split_once(',').ok_or_else(|| bad("no ','"))?;
        match kind {
            "dgram" => {
                let addr = |x: &str| {
                    x.parse::<SocketAddr>()
                        .map_err(|e| bad(&format!("{x:?} is not ADDR:PORT ({e})")))
                };
                Ok(WireSpec::Udp(addr(a)?, addr(b)?))
            }
            "unix" if !a.is_empty() && !b.is_empty() => {
                Ok(WireSpec::Unix(PathBuf::from(a), PathBuf::from(b)))
            }
            "unix" => Err(bad("empty path")),
            _ => Err(bad(&format!("unknown kind {kind:?}"))),
        }
    }
}

/// An open wire.
#[derive(Debug)]
pub enum Wire {
    /// UDP.
    Udp(UdpSocket, SocketAddr),
    /// Unix datagrams.
    Unix(UnixDatagram, PathBuf),
}

impl Wire {
    /// Binds the local end (a unix path left over from an earlier run is
    /// removed first).
    pub fn open(spec: &WireSpec) -> io::Result<Wire> {
        match spec {
            WireSpec::Udp(local, remote) => Ok(Wire::Udp(UdpSocket::bind(local)?, *remote)),
            WireSpec::Unix(local, remote) => {
                let _ = std::fs::remove_file(local);
                Ok(Wire::Unix(UnixDatagram::bind(local)?, remote.clone()))
            }
        }
    }

    /// A second handle on the same socket (one thread receives, the device
    /// side sends).
    pub fn try_clone(&self) -> io::Result<Wire> {
        Ok(match self {
            Wire::Udp(s, r) => Wire::Udp(s.try_clone()?, *r),
            Wire::Unix(s, r) => Wire::Unix(s.try_clone()?, r.clone()),
        })
    }

    /// Sends one frame to the far end, without ever blocking. A far end
    /// that is not there yet (QEMU not started, a unix peer not bound)
    /// loses the frame, as a cable with nobody at the other end would, and
    /// so does one whose socket is full: the model answers QEMU's register
    /// accesses on the thread that sends, and QEMU drains the far end's
    /// socket only once that access is answered, so a blocking send would
    /// deadlock the two (seen with DPDK's txonly, which fills the wire
    /// faster than the far end's kernel takes frames).
    pub fn send(&self, frame: &[u8]) -> io::Result<bool> {
        let r = match self {
            Wire::Udp(s, r) => send_nowait_udp(s, frame, r),
            Wire::Unix(s, r) => send_nowait_unix(s, frame, r),
        };
        match r {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::NotFound
                        | io::ErrorKind::WouldBlock
                ) || e.raw_os_error() == Some(libc::ENOBUFS) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Blocks until a frame arrives; returns its length in `buf`.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Wire::Udp(s, _) => s.recv(buf),
            Wire::Unix(s, _) => s.recv(buf),
        }
    }
}

/// `sendto(2)` with `MSG_DONTWAIT` to a unix datagram socket's path.
fn send_nowait_unix(s: &UnixDatagram, frame: &[u8], to: &std::path::Path) -> io::Result<usize> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: sockaddr_un is plain old data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let path = to.as_os_str().as_bytes();
    if path.len() >= addr.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: longer than a unix socket path may be", to.display()),
        ));
    }
    for (d, b) in addr.sun_path.iter_mut().zip(path) {
        *d = *b as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + path.len() + 1;
    // SAFETY: the fd is the open socket `s` owns; `frame` is valid for
    // `frame.len()` bytes; `addr` is an initialised sockaddr_un of which
    // `len` bytes (family, path, NUL) are passed.
    let n = unsafe {
        libc::sendto(
            std::os::fd::AsRawFd::as_raw_fd(s),
            frame.as_ptr().cast(),
            frame.len(),
            libc::MSG_DONTWAIT,
            std::ptr::addr_of!(addr).cast(),
            len as libc::socklen_t,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `sendto(2)` with `MSG_DONTWAIT` to a UDP address.
fn send_nowait_udp(s: &UdpSocket, frame: &[u8], to: &SocketAddr) -> io::Result<usize> {
    let (storage, len) = sockaddr_of(to);
    // SAFETY: the fd is the open socket `s` owns; `frame` is valid for
    // `frame.len()` bytes; `storage` holds an initialised sockaddr_in or
    // sockaddr_in6 of `len` bytes.
    let n = unsafe {
        libc::sendto(
            std::os::fd::AsRawFd::as_raw_fd(s),
            frame.as_ptr().cast(),
            frame.len(),
            libc::MSG_DONTWAIT,
            std::ptr::addr_of!(storage).cast(),
            len,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn sockaddr_of(a: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all zeroes is valid.
    let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match a {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for
            // sockaddr_in; the write stays inside `st`.
            unsafe { std::ptr::write(std::ptr::addr_of_mut!(st).cast(), sin) };
            (
                st,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write(std::ptr::addr_of_mut!(st).cast(), sin6) };
            (
                st,
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_say_why() {
        assert_eq!(
            "dgram:127.0.0.1:5000,127.0.0.1:5001".parse::<WireSpec>(),
            Ok(WireSpec::Udp(
                "127.0.0.1:5000".parse().unwrap(),
                "127.0.0.1:5001".parse().unwrap()
            ))
        );
        assert_eq!(
            "unix:/tmp/a,/tmp/b".parse::<WireSpec>(),
            Ok(WireSpec::Unix("/tmp/a".into(), "/tmp/b".into()))
        );
        for bad in [
            "",
            "dgram",
            "dgram:1.2.3.4:5",
            "dgram:x:1,y:2",
            "unix:,/b",
            "tap:a,b",
        ] {
            let e = bad.parse::<WireSpec>().unwrap_err();
            assert!(e.contains("expected dgram:"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_full_far_end_loses_frames_instead_of_blocking() {
        let dir = std::env::temp_dir().join(format!("pollux-wire-full-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a"), dir.join("b"));
        let wa = Wire::open(&WireSpec::Unix(a.clone(), b.clone())).unwrap();
        let _wb = Wire::open(&WireSpec::Unix(b, a)).unwrap();
        // Nobody reads b: its queue fills, then sends report a loss.
        let (mut sent, mut lost) = (0, 0);
        for _ in 0..100_000 {
            if wa.send(&[0u8; 1500]).unwrap() {
                sent += 1;
            } else {
                lost += 1;
            }
            if lost > 10 {
                break;
            }
        }
        assert!(sent > 0 && lost > 10, "sent {sent}, lost {lost}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn udp_wire_carries_a_frame() {
        let pa = UdpSocket::bind("127.0.0.1:0").unwrap();
        let pb = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (la, lb) = (pa.local_addr().unwrap(), pb.local_addr().unwrap());
        drop((pa, pb));
        let wa = Wire::open(&WireSpec::Udp(la, lb)).unwrap();
        let wb = Wire::open(&WireSpec::Udp(lb, la)).unwrap();
        assert!(wa.send(&[7; 64]).unwrap());
        let mut buf = [0u8; MAX_FRAME];
        assert_eq!(wb.recv(&mut buf).unwrap(), 64);
        assert_eq!(buf[0], 7);
    }

    #[test]
    fn unix_wire_carries_a_frame_each_way_and_a_missing_peer_loses_it() {
        let dir = std::env::temp_dir().join(format!("pollux-wire-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a"), dir.join("b"));
        let wa = Wire::open(&WireSpec::Unix(a.clone(), b.clone())).unwrap();
        assert!(!wa.send(&[1, 2, 3]).unwrap(), "nobody at b yet");
        let wb = Wire::open(&WireSpec::Unix(b, a)).unwrap();
        assert!(wa.send(&[1, 2, 3]).unwrap());
        let mut buf = [0u8; MAX_FRAME];
        let n = wb.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[1, 2, 3]);
        assert!(wb.try_clone().unwrap().send(&[9; 60]).unwrap());
        assert_eq!(wa.recv(&mut buf).unwrap(), 60);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
