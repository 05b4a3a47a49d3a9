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

    /// Sends one frame to the far end. A far end that is not there yet
    /// (QEMU not started, a unix peer not bound) loses the frame, as a
    /// cable with nobody at the other end would.
    pub fn send(&self, frame: &[u8]) -> io::Result<bool> {
        let r = match self {
            Wire::Udp(s, r) => s.send_to(frame, r),
            Wire::Unix(s, r) => s.send_to(frame, r),
        };
        match r {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound
                ) =>
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
