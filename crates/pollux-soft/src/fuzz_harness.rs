//! Entry points shared by the cargo-fuzz targets (crates/pollux-soft/fuzz)
//! and the corpus replay test, so the stable test suite runs every input
//! the fuzzer ever kept. Each asserts invariants beyond "does not panic".

use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use pollux_core::{
    AnonMemory, Burst, Mbuf, Mempool, MempoolConfig, Polled, Port, PortConf, RxFlags,
};

use crate::af_packet::{rx_frame, RxHdr};
use crate::pcap::{PcapOpts, PcapPort};

/// The largest record the port accepts (`MAX_RECORD_LEN` in pcap.rs).
const MAX_RECORD_LEN: u64 = 16 << 20;

/// A pcap file made of `data[1..]`, replayed by a [`PcapPort`] opened with
/// the options and rx buffer size `data[0]` picks, and drained.
///
/// Asserts, against a reference reading of the file done here: the port
/// opens only files with a pcap header and Ethernet link type, and with
/// `preload` or `infinite_rx` only files whose every record is whole; no
/// frame is longer than the header's snaplen; frames come out in file
/// order, byte for byte, skipping only records too long for an rx buffer;
/// `ipackets`/`ibytes` count what was delivered and `ierrors` the skipped
/// records plus one for a corrupt record that ends a streamed replay.
pub fn pcap(data: &[u8]) {
    let Some((&mode, file)) = data.split_first() else {
        return;
    };
    let opts = PcapOpts {
        infinite_rx: mode & 1 != 0,
        preload: mode & 2 != 0,
    };
    let data_room = [2048u16, 1024, 256, 192][usize::from(mode >> 2) & 3];
    let reference = Reference::read(file);
    let path = TempFile::new(file);
    let port = match PcapPort::open("fuzz", Some(&path.0), None, opts) {
        Ok(p) => p,
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty());
            let Some(r) = &reference else { return };
            // A readable header: only a bad record may refuse it, and only
            // when the whole file is read at open.
            assert!(
                r.bad && (opts.preload || opts.infinite_rx),
                "refused a good file: {msg}"
            );
            return;
        }
    };
    let r = reference.expect("the port opened a file without a pcap header");
    if opts.preload || opts.infinite_rx {
        assert!(!r.bad, "a preloaded file with a bad record was accepted");
    }
    let mut cfg = MempoolConfig::new("fuzz-pcap", 64);
    cfg.data_room = data_room;
    let pool = Mempool::new(cfg, &AnonMemory::default()).expect("a pool");
    let mut port = port;
    port.configure(&PortConf::new(pool.clone()))
        .expect("configures");
    let mut port = Polled::start(port).expect("starts");
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut burst: Burst<Mbuf> = Burst::new(32);
    // An infinite replay never ends: two passes over the file are enough.
    let limit = if opts.infinite_rx {
        2 * r.records.len()
    } else {
        usize::MAX
    };
    let mut idle = 0;
    while got.len() < limit && idle < 2 {
        let n = port.rx_burst(0, &mut burst);
        idle = if n == 0 { idle + 1 } else { 0 };
        got.extend(burst.drain().map(|m| m.data().to_vec()));
    }
    let stats = port.port().stats();
    drop(port.stop());
    for f in &got {
        assert!(f.len() as u64 <= u64::from(r.snaplen), "frame over snaplen");
    }
    // In order, byte for byte, skipping only records that are longer than
    // every delivered one (they did not fit an rx buffer).
    let recs: Vec<&[u8]> = r.records.iter().map(|x| &file[x.clone()]).collect();
    let mut skipped = Vec::new();
    let mut at = 0usize;
    for f in &got {
        loop {
            let want = recs[at % recs.len()];
            at += 1;
            if want == &f[..] {
                break;
            }
            skipped.push(want.len());
            assert!(at < recs.len() * 3, "delivered a frame not in the file");
        }
    }
    let longest = got.iter().map(Vec::len).max().unwrap_or(0);
    assert!(
        skipped.iter().all(|&l| l > longest),
        "skipped a record that fits"
    );
    assert_eq!(stats.ipackets, got.len() as u64);
    assert_eq!(
        stats.ibytes,
        got.iter().map(|f| f.len() as u64).sum::<u64>()
    );
    if !opts.infinite_rx {
        let too_long = recs.iter().filter(|x| x.len() > longest).count() as u64;
        let corrupt = u64::from(r.bad);
        assert!(
            stats.ipackets + stats.ierrors == recs.len() as u64 + corrupt
                || got.is_empty() && stats.ierrors == too_long + corrupt,
            "{stats:?} for {} records (bad: {})",
            recs.len(),
            r.bad
        );
    }
}

/// The file as the pcap format (and libpcap's reader) defines it.
struct Reference {
    snaplen: u32,
    /// The data of each whole, valid record before the first bad one.
    records: Vec<Range<usize>>,
    /// A record is truncated or longer than the snaplen.
    bad: bool,
}

impl Reference {
    fn read(f: &[u8]) -> Option<Reference> {
        let magic = f.get(..4)?;
        let big = match magic {
            [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => false,
            [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => true,
            _ => return None,
        };
        let u32_at = |b: &[u8], i: usize| -> Option<u32> {
            let w: [u8; 4] = b.get(i..i + 4)?.try_into().ok()?;
            Some(if big {
                u32::from_be_bytes(w)
            } else {
                u32::from_le_bytes(w)
            })
        };
        let snaplen = u32_at(f, 16)?;
        if u32_at(f, 20)? != 1 {
            return None; // not LINKTYPE_ETHERNET
        }
        let mut records = Vec::new();
        let mut pos = 24;
        let mut bad = false;
        while pos < f.len() {
            let (Some(incl), true) = (u32_at(f, pos + 8), pos + 16 <= f.len()) else {
                bad = true;
                break;
            };
            let start = pos + 16;
            let end = start as u64 + u64::from(incl);
            if incl > snaplen || u64::from(incl) > MAX_RECORD_LEN || end > f.len() as u64 {
                bad = true;
                break;
            }
            records.push(start..end as usize);
            pos = end as usize;
        }
        Some(Reference {
            snaplen,
            records,
            bad,
        })
    }
}

/// A file in the temporary directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(data: &[u8]) -> TempFile {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "pollux-fuzz-{}-{}.pcap",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&p, data).expect("temporary file");
        TempFile(p)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One af_packet ring frame as the receive path meets it: `data[0]` holds
/// the status bits (VLAN_VALID, VLAN_TPID_VALID, CSUMNOTREADY, CSUM_VALID)
/// and the port's options (strip, rx buffer size), `data[1..11]` the
/// tpacket2 header fields (`tp_len`, `tp_snaplen`, `tp_mac`, TCI, TPID;
/// u16 little-endian each), the rest is the ring frame.
///
/// Asserts: a frame is delivered only when its header lies inside the
/// ring frame, it was not cut short and it fits the mbuf; the mbuf holds
/// the captured bytes, with the tag back in place unless stripped (then
/// its TCI is reported); checksum completion changes nothing but the L4
/// checksum field, and a completed frame completes to itself again.
pub fn af_packet_rx(data: &[u8]) {
    let Some((head, ring_frame)) = data.split_at_checked(11) else {
        return;
    };
    let u16_at = |i: usize| u16::from_le_bytes([head[i], head[i + 1]]);
    let bits = head[0];
    let mut status = libc::TP_STATUS_USER;
    for (bit, st) in [
        (1, libc::TP_STATUS_VLAN_VALID),
        (2, libc::TP_STATUS_VLAN_TPID_VALID),
        (4, libc::TP_STATUS_CSUMNOTREADY),
        (8, libc::TP_STATUS_CSUM_VALID),
    ] {
        if bits & bit != 0 {
            status |= st;
        }
    }
    let strip = bits & 16 != 0;
    let rx_room = [1920usize, 128, 64, 9000][usize::from(bits >> 5) & 3];
    let h = RxHdr {
        status,
        len: usize::from(u16_at(1)),
        snaplen: usize::from(u16_at(3)),
        mac_off: usize::from(u16_at(5)),
        tci: u16_at(7),
        tpid: u16_at(9),
    };
    let vlan = bits & 1 != 0;
    let reinsert = vlan && !strip;
    let out_len = h.snaplen + if reinsert { 4 } else { 0 };
    let deliverable = h.mac_off + h.snaplen <= ring_frame.len()
        && h.snaplen >= h.len
        && out_len <= rx_room
        && !(reinsert && h.snaplen < 12);
    let Some((out, flags, tci)) = rx_frame(ring_frame, &h, strip, rx_room) else {
        assert!(!deliverable, "dropped a good frame: {h:?}");
        return;
    };
    assert!(deliverable, "delivered a bad frame: {h:?}");
    assert_eq!(out.len(), out_len);
    let cap = &ring_frame[h.mac_off..h.mac_off + h.snaplen];
    // The frame as the wire carried it: the tag back in when not stripped.
    let mut want = cap.to_vec();
    if reinsert {
        let tpid = if bits & 2 != 0 && h.tpid != 0 {
            h.tpid
        } else {
            0x8100
        };
        want.splice(
            12..12,
            tpid.to_be_bytes().into_iter().chain(h.tci.to_be_bytes()),
        );
    }
    assert_eq!(tci, (vlan && strip).then_some(h.tci));
    assert_eq!(flags.contains(RxFlags::VLAN_STRIPPED), vlan && strip);
    let differ: Vec<usize> = (0..out.len()).filter(|&i| out[i] != want[i]).collect();
    if bits & 4 == 0 {
        assert!(differ.is_empty(), "bytes changed without completion");
        assert_eq!(flags.contains(RxFlags::L4_CKSUM_GOOD), bits & 8 != 0);
        return;
    }
    // Completion writes the two bytes of one checksum field.
    assert!(
        differ.len() <= 2 && differ.windows(2).all(|w| w[1] <= w[0] + 1),
        "completion changed {differ:?}"
    );
    if flags.contains(RxFlags::L4_CKSUM_GOOD) {
        // What was completed completes to itself.
        let again_hdr = RxHdr {
            status: libc::TP_STATUS_USER | libc::TP_STATUS_CSUMNOTREADY,
            len: out.len(),
            snaplen: out.len(),
            mac_off: 0,
            tci: 0,
            tpid: 0,
        };
        let (again, f2, _) =
            rx_frame(&out, &again_hdr, false, out.len()).expect("the same frame again");
        assert_eq!(again, out, "a completed checksum is stable");
        assert!(f2.contains(RxFlags::L4_CKSUM_GOOD));
    } else {
        assert!(differ.is_empty(), "a refused completion changed the frame");
    }
}
