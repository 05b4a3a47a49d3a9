//! `pcap`: rx replays a pcap file, tx writes one (DPDK's `net_pcap` with
//! `rx_pcap=` / `tx_pcap=`).
//!
//! # Design
//!
//! - **Files are parsed with `pcap-file`** (its `PcapParser` over our own
//!   buffer rather than its `PcapReader`, whose packet validation rejects
//!   ordinary snaplen-truncated captures where `orig_len > snaplen`). Classic
//!   pcap only, either byte order, micro- or nanosecond timestamps, link type
//!   Ethernet; a pcapng file or another link type is refused at open with a
//!   message saying so.
//! - **Two ways to read.** With [`PcapOpts::infinite_rx`] (or
//!   [`PcapOpts::preload`]) the whole file is read and every record header
//!   validated at open, so a truncated or corrupt file is an error at open
//!   and `rx_burst` never makes a system call: it copies from memory and
//!   wraps to the first record at the end. Otherwise the file is streamed in
//!   1 MiB reads (one `read` per ~700 full-size packets); a corrupt or
//!   truncated record met while streaming counts one `ierrors`, is logged,
//!   and ends the replay.
//! - **Records that do not fit** the rx pool's buffers are counted in
//!   `ierrors` and skipped, never truncated. When the pool is empty,
//!   `rx_nombuf` counts it and the record stays next in line.
//! - **tx** appends each packet as a record stamped with the wall-clock time
//!   of the burst (nanosecond-resolution pcap, native byte order, snaplen
//!   65535, like DPDK's nanosecond dumper), through a 1 MiB buffer, and
//!   frees the mbuf. A write error is logged once; from then on every
//!   packet counts in `oerrors` and is dropped. A port without a tx file
//!   frees what it is given and counts it as sent (DPDK's `tx_drop`).
//! - **Queues and files.** One rx and one tx queue. The rx handle owns the
//!   rx file while it lives and the tx handle the tx file and its buffer,
//!   so a burst touches nothing shared but its counters; a dropped handle
//!   gives its file back to the port, and the next start carries on where
//!   it left off (the replay position, the same output file).
//! - **When the tx file is complete.** Whoever holds the file flushes it:
//!   [`Port::stop`] flushes it (and reports a failed flush) when no tx
//!   handle is alive, and so do [`PcapPort::flush`] and `Drop`. While a tx
//!   handle is alive it holds the buffer, and the control side cannot
//!   flush it without racing a burst: the handle flushes it itself when it
//!   is dropped, and on its first `tx_burst` after the stop. So stop, then
//!   drop the handles ([`Polled::stop`](pollux_core::Polled::stop) does
//!   both), before reading the file; `flush` with a live tx handle is an
//!   error that says so.
//! - **Filtering.** A fresh port is promiscuous: every record is delivered.
//!   Turning promiscuous mode off makes rx act like a NIC's address filter:
//!   only records whose destination is the port's MAC, broadcast, an address
//!   of the multicast list or (with all-multicast) any multicast address are
//!   delivered; the others are skipped and counted in the `rx_filtered`
//!   xstat. DPDK's pcap PMD has no filter. The filter can be changed while
//!   the rx queue runs: it is kept in atomics the rx handle reads with
//!   plain loads, so a change applies from the next burst on (a burst that
//!   races a multicast-list change may match against part of either list,
//!   as a NIC rewriting its filter table would).
//!
//! # Differences from DPDK
//!
//! One rx and one tx queue (DPDK takes one file per queue); no rx
//! timestamps in the mbuf (there is no timestamp field in Pollux's mbuf);
//! no live-interface mode (`iface=`: use [`crate::af_packet`]); the link is
//! up at 10 Gbps full duplex while the port is started and down while it is
//! stopped, as DPDK's pcap PMD reports it.

use std::fs::File;
use std::io::{BufWriter, ErrorKind, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pcap_file::pcap::{PcapHeader, PcapParser};
use pcap_file::{DataLink, Endianness, PcapError, TsResolution};
use pollux_core::mbuf::HEADROOM;
use pollux_core::{
    Burst, Capabilities, Lease, LinkStatus, MacAddr, Mbuf, Mempool, Port, PortConf, PortError,
    PortInfo, PortStats, QueueCounters, QueueStats, Queues, RunFlag, RxOffloads, RxQueue,
    TxOffloads, TxQueue, Xstat,
};

use crate::control::{Counters, Lifecycle};
use crate::{Counter, Dock, Docked, SoftError};

/// Link speed a started pcap port reports, in Mbit/s (DPDK's pcap PMD
/// reports 10 Gbps).
pub const PCAP_SPEED_MBPS: u32 = 10_000;

/// Bytes read from the file at a time when streaming.
const STREAM_CHUNK: usize = 1 << 20;

/// Size of the tx file's write buffer.
const TX_BUFFER: usize = 1 << 20;

/// Largest record length accepted as sane. libpcap's largest snaplen is
/// 262144; anything beyond this is a corrupt length field, not a packet.
const MAX_RECORD_LEN: u32 = 16 << 20;

/// Length of a pcap record header (ts_sec, ts_frac, incl_len, orig_len).
const RECORD_HEADER_LEN: usize = 16;

/// Magic number at the start of a pcapng file (its section header block).
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// Snaplen written in the header of tx files: the largest mbuf.
const TX_SNAPLEN: u32 = u16::MAX as u32;

/// Largest multicast list.
const MAX_MC_ADDRS: usize = 64;

/// Options of a pcap port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PcapOpts {
    /// At the end of the rx file, start again from the first record
    /// (DPDK's `infinite_rx=1`). Implies [`PcapOpts::preload`].
    pub infinite_rx: bool,
    /// Read and validate the whole rx file at open and replay it from
    /// memory, so rx makes no system calls (for benchmarks).
    pub preload: bool,
}

/// A pcap port. See the [module docs](self).
#[derive(Debug)]
pub struct PcapPort {
    life: Lifecycle,
    mac: MacAddr,
    port_id: u16,
    pool: Option<Mempool>,
    /// Largest record that fits an rx buffer.
    rx_room: usize,
    rx_path: Option<PathBuf>,
    tx_path: Option<PathBuf>,
    rx: Option<Dock<RxFile>>,
    tx: Option<Dock<TxFile>>,
    filter: Arc<Filter>,
    /// One rx and one tx queue, made at open: a new `configure` carries
    /// on counting.
    counters: Counters,
    rx_extra: Arc<RxExtra>,
}

/// Receive counters beyond [`QueueCounters`], written by the rx handle.
#[derive(Debug, Default)]
struct RxExtra {
    filtered: Counter,
    file_loops: Counter,
}

impl RxExtra {
    /// The xstats, for [`Counters::xstats`].
    fn xstats(&self) -> [(&'static str, u64); 2] {
        [
            ("rx_filtered", self.filtered.get()),
            ("rx_file_loops", self.file_loops.get()),
        ]
    }
}

fn mac_to_u64(mac: MacAddr) -> u64 {
    let m = mac.0;
    u64::from_le_bytes([m[0], m[1], m[2], m[3], m[4], m[5], 0, 0])
}

fn u64_to_mac(v: u64) -> MacAddr {
    let b = v.to_le_bytes();
    MacAddr([b[0], b[1], b[2], b[3], b[4], b[5]])
}

/// The rx address filter: written by the control side, read by the rx
/// handle with relaxed loads (see the module docs).
#[derive(Debug)]
struct Filter {
    promiscuous: AtomicBool,
    allmulti: AtomicBool,
    mac: AtomicU64,
    mc_len: AtomicUsize,
    mc: [AtomicU64; MAX_MC_ADDRS],
}

/// The filter's flags and address, read once per burst.
#[derive(Clone, Copy)]
struct FilterView {
    promiscuous: bool,
    allmulti: bool,
    mac: MacAddr,
}

impl Filter {
    fn new(mac: MacAddr) -> Filter {
        Filter {
            promiscuous: AtomicBool::new(true),
            allmulti: AtomicBool::new(false),
            mac: AtomicU64::new(mac_to_u64(mac)),
            mc_len: AtomicUsize::new(0),
            mc: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Replaces the multicast list (at most `MAX_MC_ADDRS`, checked by the
    /// caller).
    fn set_mc(&self, addrs: &[MacAddr]) {
        let n = addrs.len().min(MAX_MC_ADDRS);
        // Shrink first, so a reader never counts entries being rewritten
        // beyond the new length.
        if n < self.mc_len.load(Ordering::Relaxed) {
            self.mc_len.store(n, Ordering::Release);
        }
        for (slot, a) in self.mc.iter().zip(&addrs[..n]) {
            slot.store(mac_to_u64(*a), Ordering::Relaxed);
        }
        self.mc_len.store(n, Ordering::Release);
    }

    fn in_mc_list(&self, dst: MacAddr) -> bool {
        let n = self.mc_len.load(Ordering::Acquire).min(MAX_MC_ADDRS);
        let d = mac_to_u64(dst);
        self.mc[..n].iter().any(|a| a.load(Ordering::Relaxed) == d)
    }

    #[inline]
    fn view(&self) -> FilterView {
        FilterView {
            promiscuous: self.promiscuous.load(Ordering::Relaxed),
            allmulti: self.allmulti.load(Ordering::Relaxed),
            mac: u64_to_mac(self.mac.load(Ordering::Relaxed)),
        }
    }

    fn accepts(&self, v: FilterView, frame: &[u8]) -> bool {
        if v.promiscuous {
            return true;
        }
        let Some(dst) = frame.get(..6) else {
            // Too short to have a destination: nothing to filter on; let the
            // application see the runt as it is.
            return true;
        };
        let mut d = [0u8; 6];
        d.copy_from_slice(dst);
        let dst = MacAddr(d);
        if dst == v.mac || dst == MacAddr::BROADCAST {
            return true;
        }
        dst.is_multicast() && (v.allmulti || self.in_mc_list(dst))
    }
}

#[derive(Debug)]
struct RxFile {
    path: PathBuf,
    infinite: bool,
    source: Source,
}

#[derive(Debug)]
enum Source {
    Memory(MemoryRecords),
    Stream(StreamRecords),
}

/// What is next in the rx file.
enum Next {
    /// A record's bytes, at `data` in the source's buffer.
    Record(Range<usize>),
    End,
    /// The rest of the file is unusable.
    Corrupt(String),
}

/// The whole file in memory with the position of every record.
#[derive(Debug)]
struct MemoryRecords {
    data: Vec<u8>,
    records: Vec<Range<usize>>,
    next: usize,
}

/// A file read in chunks.
#[derive(Debug)]
struct StreamRecords {
    file: File,
    parser: PcapParser,
    endianness: Endianness,
    /// The header's snaplen: no record may be longer.
    snaplen: u32,
    buf: Vec<u8>,
    /// Unparsed bytes are `buf[pos..len]`.
    pos: usize,
    len: usize,
    /// File offset of `buf[0]`, for error messages.
    buf_offset: u64,
    /// Index of the next record, for error messages.
    record: u64,
    eof: bool,
    /// The replay is over (end of file or a corrupt record).
    done: bool,
}

#[derive(Debug)]
struct TxFile {
    path: PathBuf,
    /// The header is written by pcap-file; records are written here in
    /// the same (native) byte order, because pcap-file 2's `PcapWriter`
    /// gives no access to its writer for flushing.
    writer: BufWriter<File>,
    /// Set after the first write error; later packets are dropped.
    failed: bool,
}

impl TxFile {
    /// Writes what is buffered to the file.
    fn flush(&mut self, port: &str) -> Result<(), PortError> {
        self.writer
            .flush()
            .map_err(|e| PortError::io(format!("{port}: flushing {}", self.path.display()), e))
    }
}

impl Source {
    fn peek(&mut self) -> Next {
        match self {
            Source::Memory(m) => match m.records.get(m.next) {
                Some(r) => Next::Record(r.clone()),
                None => Next::End,
            },
            Source::Stream(s) => s.peek(),
        }
    }

    fn data(&self) -> &[u8] {
        match self {
            Source::Memory(m) => &m.data,
            Source::Stream(s) => &s.buf,
        }
    }

    /// Moves past the record `peek` returned.
    fn advance(&mut self, rec: &Range<usize>) {
        match self {
            Source::Memory(m) => m.next += 1,
            Source::Stream(s) => {
                s.pos = rec.end;
                s.record += 1;
            }
        }
    }

    /// Back to the first record; false when there is none to go back to.
    fn rewind(&mut self) -> bool {
        match self {
            Source::Memory(m) => {
                m.next = 0;
                !m.records.is_empty()
            }
            Source::Stream(_) => false,
        }
    }

    /// Number of records, when known.
    fn record_count(&self) -> Option<usize> {
        match self {
            Source::Memory(m) => Some(m.records.len()),
            Source::Stream(_) => None,
        }
    }
}

/// Reads a record's `incl_len` from its header.
fn incl_len(hdr: &[u8], endianness: Endianness) -> u32 {
    let b = [hdr[8], hdr[9], hdr[10], hdr[11]];
    match endianness {
        Endianness::Big => u32::from_be_bytes(b),
        Endianness::Little => u32::from_le_bytes(b),
    }
}

impl StreamRecords {
    fn peek(&mut self) -> Next {
        if self.done {
            return Next::End;
        }
        loop {
            // The length is checked before asking the parser, so a corrupt
            // length field cannot make us buffer gigabytes looking for it.
            if self.len - self.pos >= RECORD_HEADER_LEN {
                let want = incl_len(&self.buf[self.pos..], self.endianness);
                if want > MAX_RECORD_LEN {
                    return self.corrupt(format!(
                        "record {} claims {want} bytes (more than {MAX_RECORD_LEN}): corrupt length",
                        self.record
                    ));
                }
                if want > self.snaplen {
                    return self.corrupt(over_snaplen(self.record, want, self.snaplen));
                }
                let need = RECORD_HEADER_LEN + want as usize;
                if need > self.buf.len() {
                    self.buf.resize(need, 0);
                }
            }
            match self.parser.next_raw_packet(&self.buf[self.pos..self.len]) {
                Ok((rem, raw)) => {
                    let end = self.len - rem.len();
                    return Next::Record(end - raw.data.len()..end);
                }
                Err(PcapError::IncompleteBuffer) => {}
                Err(e) => return self.corrupt(format!("record {}: {e}", self.record)),
            }
            if self.eof {
                if self.pos == self.len {
                    self.done = true;
                    return Next::End;
                }
                return self.corrupt(format!(
                    "record {} is truncated: the file ends {} bytes into it",
                    self.record,
                    self.len - self.pos
                ));
            }
            if let Err(e) = self.fill() {
                return self.corrupt(format!("read failed: {e}"));
            }
        }
    }

    /// Moves the unparsed bytes to the front and reads more after them.
    fn fill(&mut self) -> std::io::Result<()> {
        self.buf.copy_within(self.pos..self.len, 0);
        self.buf_offset += self.pos as u64;
        self.len -= self.pos;
        self.pos = 0;
        while self.len < self.buf.len() {
            match self.file.read(&mut self.buf[self.len..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.len += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn corrupt(&mut self, why: String) -> Next {
        self.done = true;
        Next::Corrupt(format!(
            "{why} (at byte {})",
            self.buf_offset + self.pos as u64
        ))
    }
}

/// A record longer than the header's snaplen: pcap-file's raw records do
/// not check it. libpcap trims such a record to the snaplen; we never
/// deliver part of a record (see "Records that do not fit" above), so it
/// is a corrupt length, like one over `MAX_RECORD_LEN`.
fn over_snaplen(record: u64, incl: u32, snaplen: u32) -> String {
    format!("record {record} claims {incl} bytes, more than the file's snaplen {snaplen}: corrupt length")
}

/// Reads the global header; `bytes` is the start of the file.
fn parse_header(path: &Path, bytes: &[u8]) -> Result<(usize, PcapParser), SoftError> {
    let bad = |why: String| SoftError::Other(format!("{}: {why}", path.display()));
    if bytes.starts_with(&PCAPNG_MAGIC) {
        return Err(bad(
            "this is a pcapng file; only classic pcap is supported \
             (convert it with `editcap -F pcap in.pcapng out.pcap`)"
                .into(),
        ));
    }
    let (rest, parser) = match PcapParser::new(bytes) {
        Ok(v) => v,
        Err(PcapError::IncompleteBuffer) => {
            return Err(bad(format!(
                "not a pcap file: {} bytes, shorter than the 24-byte pcap header",
                bytes.len()
            )))
        }
        Err(e) => return Err(bad(format!("not a pcap file ({e})"))),
    };
    let dl = parser.header().datalink;
    if dl != DataLink::ETHERNET {
        return Err(bad(format!(
            "link type {dl:?} is not Ethernet; a port replays Ethernet frames only"
        )));
    }
    Ok((bytes.len() - rest.len(), parser))
}

fn open_rx(path: &Path, infinite: bool, preload: bool) -> Result<RxFile, SoftError> {
    let ctx = |what: &str| format!("{}: {what}", path.display());
    let source = if infinite || preload {
        let data = std::fs::read(path).map_err(|e| SoftError::io(ctx("cannot read rx file"), e))?;
        let (mut pos, parser) = parse_header(path, &data)?;
        let endianness = parser.header().endianness;
        let snaplen = parser.header().snaplen;
        let mut records = Vec::new();
        while pos < data.len() {
            let rest = &data[pos..];
            let n = records.len();
            if rest.len() >= RECORD_HEADER_LEN && incl_len(rest, endianness) > MAX_RECORD_LEN {
                return Err(SoftError::Other(ctx(&format!(
                    "record {n} at byte {pos} claims {} bytes: corrupt length",
                    incl_len(rest, endianness)
                ))));
            }
            if rest.len() >= RECORD_HEADER_LEN && incl_len(rest, endianness) > snaplen {
                let why = over_snaplen(n as u64, incl_len(rest, endianness), snaplen);
                return Err(SoftError::Other(ctx(&format!("{why} (at byte {pos})"))));
            }
            match parser.next_raw_packet(rest) {
                Ok((rem, raw)) => {
                    let end = data.len() - rem.len();
                    records.push(end - raw.data.len()..end);
                    pos = end;
                }
                Err(PcapError::IncompleteBuffer) => {
                    return Err(SoftError::Other(ctx(&format!(
                        "record {n} at byte {pos} is truncated: the file ends {} bytes into it",
                        rest.len()
                    ))))
                }
                Err(e) => {
                    return Err(SoftError::Other(ctx(&format!(
                        "record {n} at byte {pos}: {e}"
                    ))))
                }
            }
        }
        Source::Memory(MemoryRecords {
            data,
            records,
            next: 0,
        })
    } else {
        let mut file =
            File::open(path).map_err(|e| SoftError::io(ctx("cannot open rx file"), e))?;
        let mut head = [0u8; 24];
        let mut got = 0;
        while got < head.len() {
            match file.read(&mut head[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(SoftError::io(ctx("cannot read rx file"), e)),
            }
        }
        let (used, parser) = parse_header(path, &head[..got])?;
        let endianness = parser.header().endianness;
        Source::Stream(StreamRecords {
            file,
            endianness,
            snaplen: parser.header().snaplen,
            parser,
            buf: vec![0; STREAM_CHUNK],
            pos: 0,
            len: 0,
            buf_offset: used as u64,
            record: 0,
            eof: false,
            done: false,
        })
    };
    Ok(RxFile {
        path: path.to_path_buf(),
        infinite,
        source,
    })
}

fn open_tx(path: &Path) -> Result<TxFile, SoftError> {
    let ctx = |what: &str| format!("{}: {what}", path.display());
    let file = File::create(path).map_err(|e| SoftError::io(ctx("cannot create tx file"), e))?;
    let header = PcapHeader {
        snaplen: TX_SNAPLEN,
        datalink: DataLink::ETHERNET,
        ts_resolution: TsResolution::NanoSecond,
        endianness: Endianness::native(),
        ..PcapHeader::default()
    };
    let mut writer = BufWriter::with_capacity(TX_BUFFER, file);
    header
        .write_to(&mut writer)
        .map_err(|e| SoftError::Other(ctx(&format!("cannot write the pcap header: {e}"))))?;
    Ok(TxFile {
        path: path.to_path_buf(),
        writer,
        failed: false,
    })
}

impl PcapPort {
    /// A port named `name` that replays `rx` and writes `tx`; at least one
    /// must be given. The rx file's header (and, with `infinite_rx` or
    /// `preload`, every record) is checked here; the tx file is created
    /// (truncated if it exists) and its header written.
    pub fn open(
        name: &str,
        rx: Option<&Path>,
        tx: Option<&Path>,
        opts: PcapOpts,
    ) -> Result<PcapPort, SoftError> {
        if rx.is_none() && tx.is_none() {
            return Err(SoftError::Other(format!(
                "{name}: a pcap port needs an rx file, a tx file or both"
            )));
        }
        if opts.infinite_rx && rx.is_none() {
            return Err(SoftError::Other(format!(
                "{name}: infinite_rx needs an rx file"
            )));
        }
        let rx_file = rx
            .map(|p| open_rx(p, opts.infinite_rx, opts.preload))
            .transpose()?;
        let tx_file = tx.map(open_tx).transpose()?;
        let mac = crate::next_mac();
        Ok(PcapPort {
            life: Lifecycle::new(name),
            mac,
            port_id: 0,
            pool: None,
            rx_room: 0,
            rx_path: rx.map(Path::to_path_buf),
            tx_path: tx.map(Path::to_path_buf),
            rx: rx_file.map(Dock::new),
            tx: tx_file.map(Dock::new),
            filter: Arc::new(Filter::new(mac)),
            counters: Counters::new(1, 1),
            rx_extra: Arc::default(),
        })
    }

    /// The rx file, if any.
    pub fn rx_path(&self) -> Option<&Path> {
        self.rx_path.as_deref()
    }

    /// The tx file, if any.
    pub fn tx_path(&self) -> Option<&Path> {
        self.tx_path.as_deref()
    }

    /// Writes buffered tx records to the file. Only while no tx handle is
    /// alive ([`PortError::QueuesTaken`] otherwise): a live handle holds the
    /// buffer and flushes it itself (see the module docs).
    pub fn flush(&mut self) -> Result<(), PortError> {
        let Some(tx) = &self.tx else { return Ok(()) };
        let name = self.life.name();
        tx.with(|t| t.flush(name)).unwrap_or_else(|| {
            Err(PortError::QueuesTaken(format!(
                "{name}: the tx queue handle holds {}; it flushes it when dropped \
                 or on its first tx_burst after stop",
                self.tx_path.as_deref().unwrap_or(Path::new("")).display()
            )))
        })
    }
}

/// The rx queue of a [`PcapPort`]: replays the rx file, if there is one.
struct PcapRx {
    file: Option<Docked<RxFile>>,
    name: String,
    pool: Mempool,
    rx_room: usize,
    port_id: u16,
    filter: Arc<Filter>,
    run: RunFlag,
    counters: Arc<QueueCounters>,
    extra: Arc<RxExtra>,
    /// Last, so the file is back in its dock before the lease goes.
    _lease: Lease,
}

impl RxQueue for PcapRx {
    fn rx_burst(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
        if !self.run.is_running() {
            return 0;
        }
        let Some(rx) = &mut self.file else { return 0 };
        let rx = rx.get();
        let filter = self.filter.view();
        let want = pkts.spare();
        // Records skipped since the last delivery; a full pass of skips in
        // an infinite replay means nothing in the file can be delivered.
        let mut skipped_in_row = 0usize;
        let mut got = 0;
        let (mut bytes, mut errors, mut nombuf, mut filtered, mut loops) = (0u64, 0, 0, 0, 0);
        while got < want {
            let rec = match rx.source.peek() {
                Next::Record(r) => r,
                Next::End => {
                    if rx.infinite
                        && skipped_in_row < rx.source.record_count().unwrap_or(0)
                        && rx.source.rewind()
                    {
                        loops += 1;
                        continue;
                    }
                    break;
                }
                Next::Corrupt(why) => {
                    tracing::warn!(port = %self.name, file = %rx.path.display(), "{why}; replay ends here");
                    errors += 1;
                    break;
                }
            };
            let len = rec.len();
            let frame = &rx.source.data()[rec.clone()];
            if len > self.rx_room {
                errors += 1;
                skipped_in_row += 1;
                rx.source.advance(&rec);
                continue;
            }
            if !self.filter.accepts(filter, frame) {
                filtered += 1;
                skipped_in_row += 1;
                rx.source.advance(&rec);
                continue;
            }
            let Some(mut m) = self.pool.alloc() else {
                // The record stays next in line.
                nombuf += 1;
                break;
            };
            let fits = m.copy_from(frame);
            debug_assert!(fits, "checked against rx_room");
            let meta = m.rx_mut();
            meta.port = self.port_id;
            meta.queue = 0;
            if pkts.push(m).is_err() {
                break; // cannot happen: got < spare
            }
            rx.source.advance(&rec);
            got += 1;
            skipped_in_row = 0;
            bytes += len as u64;
        }
        if got > 0 {
            self.counters.add(got as u64, bytes);
        }
        if errors > 0 {
            self.counters.add_errors(errors);
        }
        if nombuf > 0 {
            self.counters.add_dropped(nombuf);
        }
        if filtered > 0 {
            self.extra.filtered.add(filtered);
        }
        if loops > 0 {
            self.extra.file_loops.add(loops);
        }
        got
    }
}

/// The tx queue of a [`PcapPort`]: writes the tx file, or frees what it is
/// given when there is none.
struct PcapTx {
    file: Option<Docked<TxFile>>,
    name: String,
    run: RunFlag,
    /// The file was flushed after the port stopped.
    flushed_after_stop: bool,
    counters: Arc<QueueCounters>,
    /// Last, so the file is back in its dock before the lease goes.
    _lease: Lease,
}

impl PcapTx {
    fn flush(&mut self) {
        if let Some(tx) = &mut self.file {
            if let Err(e) = tx.get().flush(&self.name) {
                tracing::error!(port = %self.name, "{e}: the tx file may be incomplete");
            }
        }
    }

    /// The first burst after a stop: nothing will be written any more (the
    /// port starts again only once this handle is gone), so complete the
    /// file now rather than when the handle is dropped.
    #[cold]
    fn stopped(&mut self) {
        if !self.flushed_after_stop {
            self.flushed_after_stop = true;
            self.flush();
        }
    }
}

impl TxQueue for PcapTx {
    fn tx_burst(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
        if !self.run.is_running() {
            self.stopped();
            return 0;
        }
        let n = pkts.len();
        let Some(tx) = &mut self.file else {
            // No file: DPDK's tx_drop.
            let bytes: u64 = pkts.drain().map(|m| m.len() as u64).sum();
            self.counters.add(n as u64, bytes);
            return n;
        };
        let tx = tx.get();
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let (mut sent, mut bytes, mut errors) = (0u64, 0u64, 0u64);
        for m in pkts.drain() {
            if tx.failed {
                errors += 1;
                continue;
            }
            let data = m.data();
            match write_record(&mut tx.writer, now, data) {
                Ok(_) => {
                    sent += 1;
                    bytes += data.len() as u64;
                }
                Err(e) => {
                    tracing::error!(port = %self.name, file = %tx.path.display(), "write failed: {e}; dropping tx packets from now on");
                    tx.failed = true;
                    errors += 1;
                }
            }
        }
        self.counters.add(sent, bytes);
        if errors > 0 {
            self.counters.add_errors(errors);
        }
        n
    }
}

impl Drop for PcapTx {
    fn drop(&mut self) {
        // Before the file goes back to the port (a field, dropped after
        // this): whatever this handle wrote is in the file once it is gone.
        self.flush();
    }
}

/// Appends one record in native byte order (the header's, see `open_tx`):
/// seconds, nanoseconds, captured length, original length, bytes.
fn write_record(w: &mut impl Write, ts: Duration, data: &[u8]) -> std::io::Result<()> {
    // u32 seconds last until 2106; the pcap format has no wider field.
    let sec = ts.as_secs() as u32;
    let len = data.len() as u32;
    let mut hdr = [0u8; RECORD_HEADER_LEN];
    hdr[0..4].copy_from_slice(&sec.to_ne_bytes());
    hdr[4..8].copy_from_slice(&ts.subsec_nanos().to_ne_bytes());
    hdr[8..12].copy_from_slice(&len.to_ne_bytes());
    hdr[12..16].copy_from_slice(&len.to_ne_bytes());
    w.write_all(&hdr)?;
    w.write_all(data)
}

impl Port for PcapPort {
    fn info(&self) -> PortInfo {
        PortInfo {
            driver: "net_pcap".into(),
            name: self.life.name().to_string(),
            capabilities: Capabilities {
                max_rx_queues: 1,
                max_tx_queues: 1,
                // There are no descriptors; any count is accepted and unused.
                min_desc: 1,
                max_desc: u16::MAX,
                desc_align: 1,
                max_frame: TX_SNAPLEN,
                rx_offloads: RxOffloads::empty(),
                tx_offloads: TxOffloads::empty(),
                max_mc_addrs: MAX_MC_ADDRS as u16,
                promiscuous: true,
                allmulticast: true,
            },
        }
    }

    fn configure(&mut self, conf: &PortConf) -> Result<(), PortError> {
        self.life.check_configure(conf, &self.info().capabilities)?;
        self.rx_room = (conf.rx_pool.data_room() - HEADROOM) as usize;
        self.pool = Some(conf.rx_pool.clone());
        self.port_id = conf.port_id;
        self.life.set_configured();
        Ok(())
    }

    fn start(&mut self) -> Result<(), PortError> {
        self.life.start()
    }

    /// Stops, and flushes the tx file if no tx handle holds it; a live tx
    /// handle flushes it itself (see the module docs).
    fn stop(&mut self) -> Result<(), PortError> {
        self.life.stop();
        match &self.tx {
            Some(tx) => tx.with(|t| t.flush(self.life.name())).unwrap_or(Ok(())),
            None => Ok(()),
        }
    }

    fn take_queues(&mut self) -> Result<Queues, PortError> {
        self.life.take_queues(|life| {
            let Some(pool) = &self.pool else {
                return Err(PortError::NotConfigured);
            };
            let rx_file = self.rx.as_ref().map(Dock::undock);
            let tx_file = self.tx.as_ref().map(Dock::undock);
            if matches!(rx_file, Some(None)) || matches!(tx_file, Some(None)) {
                // Cannot happen: start checked that no handle is alive.
                // Whatever was undocked goes back when dropped here.
                return Err(PortError::QueuesTaken(format!(
                    "{}: a file is still held by a queue handle",
                    life.name()
                )));
            }
            let rx = PcapRx {
                file: rx_file.flatten(),
                name: life.name().to_string(),
                pool: pool.clone(),
                rx_room: self.rx_room,
                port_id: self.port_id,
                filter: self.filter.clone(),
                run: life.run(),
                counters: self.counters.rx()[0].clone(),
                extra: self.rx_extra.clone(),
                _lease: life.lease(),
            };
            let tx = PcapTx {
                file: tx_file.flatten(),
                name: life.name().to_string(),
                run: life.run(),
                flushed_after_stop: false,
                counters: self.counters.tx()[0].clone(),
                _lease: life.lease(),
            };
            Ok(Queues {
                rx: vec![Box::new(rx)],
                tx: vec![Box::new(tx)],
            })
        })
    }

    fn link(&mut self) -> LinkStatus {
        if self.life.is_started() {
            LinkStatus::up(PCAP_SPEED_MBPS)
        } else {
            LinkStatus::DOWN
        }
    }

    fn mac_addr(&self) -> MacAddr {
        self.mac
    }

    fn set_mac_addr(&mut self, mac: MacAddr) -> Result<(), PortError> {
        pollux_core::port::require_unicast(mac)?;
        self.mac = mac;
        self.filter.mac.store(mac_to_u64(mac), Ordering::Relaxed);
        Ok(())
    }

    fn set_promiscuous(&mut self, on: bool) -> Result<(), PortError> {
        self.filter.promiscuous.store(on, Ordering::Relaxed);
        Ok(())
    }

    fn set_allmulticast(&mut self, on: bool) -> Result<(), PortError> {
        self.filter.allmulti.store(on, Ordering::Relaxed);
        Ok(())
    }

    fn set_mc_addr_list(&mut self, addrs: &[MacAddr]) -> Result<(), PortError> {
        pollux_core::port::require_multicast(addrs)?;
        let max = self.info().capabilities.max_mc_addrs as usize;
        if addrs.len() > max {
            return Err(PortError::InvalidConfig(format!(
                "{} multicast addresses, at most {max}",
                addrs.len()
            )));
        }
        self.filter.set_mc(addrs);
        Ok(())
    }

    fn stats(&self) -> PortStats {
        self.counters.stats()
    }

    fn queue_stats(&self) -> Vec<QueueStats> {
        self.counters.queue_stats()
    }

    fn xstats(&self) -> Vec<Xstat> {
        self.counters.xstats(self.stats(), &self.rx_extra.xstats())
    }

    fn reset_stats(&mut self) {
        self.counters.reset();
        self.counters.reset_extra(&self.rx_extra.xstats());
    }
}

impl Drop for PcapPort {
    fn drop(&mut self) {
        // A live tx handle holds the file and flushes it when it is dropped.
        if let Some(Err(e)) = self
            .tx
            .as_ref()
            .and_then(|t| t.with(|t| t.flush(self.life.name())))
        {
            tracing::error!(port = %self.life.name(), "{e}: the tx file may be incomplete");
        }
    }
}
