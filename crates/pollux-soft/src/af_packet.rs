//! `af_packet`: a Linux network interface through PACKET_MMAP rings
//! (DPDK's `net_af_packet`).
//!
//! # Design
//!
//! Each queue pair is one `AF_PACKET` socket with a TPACKET_V2 rx ring and
//! tx ring mapped into our memory, both of `frame_count` frames of
//! `frame_size` bytes. The frames are shared with the kernel, so this module
//! never makes a Rust reference to them: a frame is a raw pointer, its
//! status word is read and written atomically, and the other header fields
//! and packet bytes are touched only while the status word says the frame
//! is ours, with an explicit fence between the two (see `FrameRing`).
//!
//! - **rx** copies each frame the kernel has filled into an mbuf of the rx
//!   pool and hands the frame straight back. When the pool is empty,
//!   `rx_nombuf` counts it and the frame *stays in the ring* to be taken
//!   next time, as a NIC keeps its descriptors; if the application does not
//!   catch up, the kernel drops further packets and `imissed` (the socket's
//!   `PACKET_STATISTICS` `tp_drops`) counts them. A frame the kernel had to
//!   truncate (longer than the ring frame) or longer than an mbuf is dropped
//!   and counted in `ierrors`, never delivered cut short.
//! - **VLAN.** Linux always takes the outer VLAN tag off a received frame
//!   and reports it beside the frame (`TP_STATUS_VLAN_VALID`). Like DPDK, we
//!   give the application what was on the wire: the tag is put back into
//!   the frame, unless the port was configured with
//!   [`RxOffloads::VLAN_STRIP`], in which case the frame stays untagged and
//!   the tag goes to `RxMeta::vlan_tci` with [`RxFlags::VLAN_STRIPPED`]. On
//!   tx, [`TxOffloads::VLAN_INSERT`] is done in software while copying.
//! - **Checksums.** A frame another local socket sent (over a veth, for
//!   example) may arrive with its TCP/UDP checksum not yet computed
//!   (`TP_STATUS_CSUMNOTREADY`: the kernel left it to an offload that never
//!   ran). We compute it, so the frame is correct if we forward it to a
//!   wire, and flag it [`RxFlags::L4_CKSUM_GOOD`], as we do when the
//!   kernel says the checksum was verified (`TP_STATUS_CSUM_VALID`). DPDK
//!   passes such frames on with the partial checksum.
//! - **tx** copies each mbuf into the next free frame, marks it
//!   `TP_STATUS_SEND_REQUEST`, frees the mbuf, and at the end of the burst
//!   kicks the kernel with a non-blocking `sendto`. When the next frame is
//!   still the kernel's, the rest of the burst stays with the caller.
//!   Frames longer than the interface MTU allows (or than a ring frame) are
//!   dropped and counted in `oerrors`. `PACKET_LOSS` is set so one bad
//!   frame can never stall the ring.
//! - **start/stop.** The sockets are bound at open with a drop-everything
//!   BPF filter; `start` removes it and `stop` puts it back (rebinding is not
//!   possible for a socket in a fanout group). `stop` discards frames
//!   waiting in the rx ring, gives the tx ring up to a second to drain and
//!   discards what the kernel has not taken by then (counted in `oerrors`
//!   and the `tx_discarded_on_stop` xstat). Only the ring's owner may touch
//!   its frames, so for a ring a live handle still holds, `stop` only waits
//!   for the kernel (reading status words and kicking, which is safe
//!   beside a burst); its rx frames are discarded by the next `start`, and
//!   tx frames the kernel never took are taken back and counted by the
//!   next `start` or [`Port::service`] after the handle is dropped. Rings
//!   stay mapped until the port and its handles are all dropped.
//! - **Queues.** `qpairs` sockets join one `PACKET_FANOUT_HASH` group, so
//!   the kernel spreads flows over rx queues by flow hash (like RSS); each
//!   socket's tx ring is a tx queue. [`Port::take_queues`] moves each rx
//!   ring into an rx handle and each tx ring (with the socket, for the
//!   kick) into a tx handle; a burst touches only its ring and its own
//!   counters, and a dropped handle gives its ring back to the port.
//!   Memberships, MAC, MTU, link and the kernel's drop counters stay with
//!   the port (the control side), on the sockets both share.
//! - **Filters.** Promiscuous, all-multicast and the multicast list are
//!   socket memberships (`PACKET_ADD_MEMBERSHIP`), which the kernel
//!   reference-counts and removes when the socket closes, so a crashed
//!   application leaves no interface in promiscuous mode. Virtual
//!   interfaces such as veth have no address filter: frames for other
//!   hosts arrive even when promiscuous mode is off, as with DPDK.
//! - **Outgoing frames** that other programs send on the interface are not
//!   received (`PACKET_IGNORE_OUTGOING`, [`AfPacketOpts::ignore_outgoing`]):
//!   a NIC port does not see what the host sends. DPDK receives them.
//!
//! # Differences from DPDK
//!
//! Besides the above: the link state is the interface's (`IFF_UP` and
//! `IFF_RUNNING`, speed from ethtool), MAC and MTU changes are applied to
//! the interface, descriptor counts in [`PortConf`] are accepted and
//! ignored (the ring size is fixed at open, as in DPDK), and there is no
//! TPACKET_V3 rx (V3 batches frames into blocks that are retired by a
//! timer, trading latency for fewer cache misses).

use std::cell::Cell;
use std::ffi::c_int;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::ptr::{self, NonNull};
use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pollux_core::mbuf::HEADROOM;
use pollux_core::net::{internet_checksum, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_VLAN};
use pollux_core::wire::{
    l3_of, EthernetFrame, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket, VlanTag, IPPROTO_TCP,
    IPPROTO_UDP,
};
use pollux_core::{
    Burst, Capabilities, Duplex, Lease, LinkStatus, MacAddr, Mbuf, Mempool, Port, PortConf,
    PortError, PortInfo, PortStats, QueueCounters, QueueStats, Queues, RunFlag, RxFlags,
    RxOffloads, RxQueue, TxFlags, TxOffloads, TxQueue, Xstat,
};

use crate::control::{Counters, Lifecycle};
use crate::{Counter, Dock, Docked, SoftError};

/// Largest number of queue pairs (sockets in one fanout group).
pub const MAX_QPAIRS: u16 = 16;

/// Largest multicast list (our cap; the kernel has none).
pub const MAX_MC_ADDRS: u16 = 256;

/// Ethernet header without tags.
const ETH_HLEN: usize = EthernetFrame::<&[u8]>::HEADER_LEN;
/// One 802.1Q tag.
const VLAN_HLEN: usize = 4;

/// `TPACKET_ALIGN` of `<linux/if_packet.h>`: headers in a frame are aligned
/// to 16 bytes.
const fn tpacket_align(x: usize) -> usize {
    (x + libc::TPACKET_ALIGNMENT - 1) & !(libc::TPACKET_ALIGNMENT - 1)
}

/// Where a V2 tx frame's data starts: after the aligned `tpacket2_hdr`
/// (`tp_hdrlen - sizeof(struct sockaddr_ll)` in `tpacket_parse_header`,
/// net/packet/af_packet.c).
const TX_DATA_OFFSET: usize = libc::TPACKET2_HDRLEN - size_of::<libc::sockaddr_ll>();

/// Where the kernel puts an Ethernet frame in a V2 rx frame:
/// `TPACKET_ALIGN(tp_hdrlen + max(maclen, 16)) - maclen` (`tpacket_rcv`,
/// net/packet/af_packet.c). The frame itself says (`tp_mac`); this is only
/// to know the largest frame that fits.
const RX_DATA_OFFSET: usize = tpacket_align(libc::TPACKET2_HDRLEN + 16) - ETH_HLEN;

const _: () = assert!(size_of::<libc::tpacket2_hdr>() == 32);
const _: () = assert!(TX_DATA_OFFSET == 32);
const _: () = assert!(RX_DATA_OFFSET == 66);

/// Options of an af_packet port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AfPacketOpts {
    /// Bytes per ring frame, header included; a multiple of 16. The largest
    /// frame is `frame_size - 66` bytes. DPDK's `framesz`, default 2048.
    pub frame_size: u32,
    /// Frames in each ring (rx and tx, per queue pair); a multiple of the
    /// frames per block. DPDK's `framecnt`, default 512.
    pub frame_count: u32,
    /// Bytes per ring block, a multiple of the page size; 0 picks the
    /// smallest power of two that is at least a page and a frame. DPDK's
    /// `blocksz`.
    pub block_size: u32,
    /// Queue pairs, each one socket; more than one join a fanout group.
    /// DPDK's `qpairs`, default 1.
    pub qpairs: u16,
    /// Send without the interface's queueing discipline
    /// (`PACKET_QDISC_BYPASS`): faster, but no traffic shaping and no copy
    /// to other packet sockets such as tcpdump. DPDK's `qdisc_bypass`.
    pub qdisc_bypass: bool,
    /// Put the interface in promiscuous mode at open.
    pub promiscuous: bool,
    /// Do not receive frames the host itself sends on the interface.
    pub ignore_outgoing: bool,
}

impl Default for AfPacketOpts {
    fn default() -> AfPacketOpts {
        AfPacketOpts {
            frame_size: 2048,
            frame_count: 512,
            block_size: 0,
            qpairs: 1,
            qdisc_bypass: false,
            promiscuous: false,
            ignore_outgoing: true,
        }
    }
}

/// Ring geometry derived from the options.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    frame_size: usize,
    frames: usize,
    block_size: usize,
    frames_per_block: usize,
    blocks: usize,
}

impl Geometry {
    fn new(name: &str, o: &AfPacketOpts) -> Result<Geometry, SoftError> {
        let bad = |why: String| SoftError::Other(format!("{name}: {why}"));
        let page = page_size();
        let fs = o.frame_size as usize;
        let min = RX_DATA_OFFSET + 64;
        if fs < min || fs % libc::TPACKET_ALIGNMENT != 0 {
            return Err(bad(format!(
                "frame size {fs} must be at least {min} and a multiple of {}",
                libc::TPACKET_ALIGNMENT
            )));
        }
        let bs = match o.block_size as usize {
            0 => fs.max(page).next_power_of_two(),
            b => b,
        };
        if bs % page != 0 || bs < fs {
            return Err(bad(format!(
                "block size {bs} must be a multiple of the {page}-byte page and hold a {fs}-byte frame"
            )));
        }
        let fpb = bs / fs;
        let frames = o.frame_count as usize;
        if frames == 0 || frames % fpb != 0 {
            return Err(bad(format!(
                "frame count {frames} must be a positive multiple of {fpb} \
                 (the {fs}-byte frames per {bs}-byte block)"
            )));
        }
        let blocks = frames / fpb;
        if blocks
            .checked_mul(bs)
            .map_or(true, |b| b > u32::MAX as usize)
        {
            return Err(bad(format!(
                "{frames} frames of {fs} bytes is too large a ring"
            )));
        }
        Ok(Geometry {
            frame_size: fs,
            frames,
            block_size: bs,
            frames_per_block: fpb,
            blocks,
        })
    }

    fn ring_bytes(&self) -> usize {
        self.blocks * self.block_size
    }

    fn req(&self) -> libc::tpacket_req {
        libc::tpacket_req {
            tp_block_size: self.block_size as u32,
            tp_block_nr: self.blocks as u32,
            tp_frame_size: self.frame_size as u32,
            tp_frame_nr: self.frames as u32,
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

/// Where one PACKET_MMAP ring (rx or tx) lies inside a socket's mapping,
/// and the mapping kept alive with it.
///
/// Frames are shared with the kernel. Ownership of frame `i` is decided by
/// its status word alone: rx frames are ours while `TP_STATUS_USER` is set,
/// tx frames while the status is `TP_STATUS_AVAILABLE`. Only then may the
/// rest of the frame be read or written, after an Acquire fence; a frame is
/// handed (back) to the kernel by a Release fence and a status store.
///
/// "Ours" means the one [`FrameRing`] of the ring: only it writes status
/// words or touches frames. A bare `RingView` (the control side's look at
/// a tx ring a handle holds) only loads status words.
struct RingView {
    base: NonNull<u8>,
    geo: Geometry,
    /// Keeps the mapping (and the socket) alive as long as the view.
    sock: Arc<Socket>,
}

// SAFETY: a RingView is an address inside a mapping it keeps alive (the
// Arc<Socket>) and a geometry; what may be done through it from any thread
// is governed by the status-word protocol above, whose status accesses are
// atomic, not by which thread holds the view.
unsafe impl Send for RingView {}
// SAFETY: as above; `&RingView` gives only the frame addresses and atomic
// status words.
unsafe impl Sync for RingView {}

impl RingView {
    /// # Safety
    /// `base` must point to a PACKET_MMAP ring of geometry `geo` inside the
    /// mapping of `sock`.
    unsafe fn new(base: NonNull<u8>, geo: Geometry, sock: Arc<Socket>) -> RingView {
        RingView { base, geo, sock }
    }

    /// Start of frame `i`, which must be `< geo.frames`.
    fn frame(&self, i: usize) -> *mut u8 {
        assert!(i < self.geo.frames);
        let off = (i / self.geo.frames_per_block) * self.geo.block_size
            + (i % self.geo.frames_per_block) * self.geo.frame_size;
        // SAFETY: off + frame_size <= blocks * block_size, the ring's length
        // (see `new`), so the result stays inside the mapping.
        unsafe { self.base.as_ptr().add(off) }
    }

    fn hdr(&self, i: usize) -> *mut libc::tpacket2_hdr {
        self.frame(i).cast()
    }

    /// The status word of frame `i`.
    fn status(&self, i: usize) -> &AtomicU32 {
        // SAFETY: tp_status is the first field of the tpacket2_hdr at the
        // start of frame i; frames are 16-byte aligned, so the word is
        // aligned for AtomicU32, and it lives as long as the mapping, which
        // `self.sock` keeps alive for at least `&self`. AtomicU32 is an
        // UnsafeCell, so a shared reference to it permits the kernel's (and
        // the ring owner's) concurrent writes, and every access made through
        // it is atomic.
        unsafe { AtomicU32::from_ptr(self.frame(i).cast::<u32>()) }
    }

    /// Tx frames the kernel was asked to send and has not taken, and frames
    /// it is sending. Status loads only: fine while a handle owns the ring.
    fn tx_in_flight(&self) -> (usize, usize) {
        let (mut requested, mut sending) = (0, 0);
        for i in 0..self.geo.frames {
            match self.status(i).load(Ordering::Relaxed) {
                libc::TP_STATUS_SEND_REQUEST => requested += 1,
                libc::TP_STATUS_SENDING => sending += 1,
                _ => {}
            }
        }
        (requested, sending)
    }

    /// Waits up to `timeout` for the kernel to send what the tx ring holds,
    /// kicking it; returns what is still requested and still being sent.
    /// Status loads and kicks only, so it may run while a handle owns the
    /// ring.
    fn wait_tx(&self, timeout: Duration) -> (usize, usize) {
        let deadline = Instant::now() + timeout;
        loop {
            let (requested, sending) = self.tx_in_flight();
            if (requested == 0 && sending == 0) || Instant::now() >= deadline {
                return (requested, sending);
            }
            if requested > 0 {
                let _ = sys::kick(self.sock.fd.as_raw_fd());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// The one owner of a PACKET_MMAP ring (see [`RingView`]): a queue handle
/// while it lives, else the port.
struct FrameRing {
    view: RingView,
    /// Next frame to look at.
    next: usize,
}

impl FrameRing {
    /// # Safety
    /// As [`RingView::new`]; and no other `FrameRing` of the same ring may
    /// exist.
    unsafe fn new(base: NonNull<u8>, geo: Geometry, sock: Arc<Socket>) -> FrameRing {
        FrameRing {
            // SAFETY: the caller's promise.
            view: unsafe { RingView::new(base, geo, sock) },
            next: 0,
        }
    }

    fn geo(&self) -> &Geometry {
        &self.view.geo
    }

    fn frame(&self, i: usize) -> *mut u8 {
        self.view.frame(i)
    }

    fn hdr(&self, i: usize) -> *mut libc::tpacket2_hdr {
        self.view.hdr(i)
    }

    fn status(&self, i: usize) -> &AtomicU32 {
        self.view.status(i)
    }

    fn fd(&self) -> RawFd {
        self.view.sock.fd.as_raw_fd()
    }

    fn advance(&mut self) {
        self.next = (self.next + 1) % self.geo().frames;
    }

    /// Hands every frame waiting in the rx ring back to the kernel.
    fn flush_rx(&mut self) -> usize {
        let mut n = 0;
        while n < self.geo().frames {
            let i = self.next;
            if self.status(i).load(Ordering::Relaxed) & libc::TP_STATUS_USER == 0 {
                break;
            }
            // Release: nothing of the frame is read here, but keep the rule
            // that a frame goes back only after a fence.
            fence(Ordering::Release);
            self.status(i)
                .store(libc::TP_STATUS_KERNEL, Ordering::Relaxed);
            self.advance();
            n += 1;
        }
        n
    }

    /// Takes back the tx frames the kernel was asked to send and never
    /// took; returns how many. The kernel takes frames only inside a
    /// `sendto`, so the caller must be the only one kicking now.
    fn discard_tx(&mut self) -> usize {
        // The kernel's position is the oldest requested frame, so ours must
        // go back there too.
        let n = self.geo().frames;
        let mut first = None;
        let mut count = 0;
        for k in 0..n {
            let i = (self.next + k) % n;
            let st = self.status(i);
            if st.load(Ordering::Relaxed) == libc::TP_STATUS_SEND_REQUEST {
                first.get_or_insert(i);
                st.store(libc::TP_STATUS_AVAILABLE, Ordering::Relaxed);
                count += 1;
            }
        }
        if let Some(i) = first {
            self.next = i;
        }
        count
    }

    /// Waits up to `timeout` for the kernel to send what the tx ring holds;
    /// returns how many frames it never took (now discarded) and how many
    /// are still being sent.
    fn drain_tx(&mut self, timeout: Duration) -> (usize, usize) {
        let (requested, sending) = self.view.wait_tx(timeout);
        if requested == 0 {
            return (0, sending);
        }
        (self.discard_tx(), sending)
    }
}

/// A `mmap`ed region, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a Mapping is an address range it unmaps on drop; it never reads
// or writes the memory itself (the rings do, under their own rules), so it
// may be dropped on, and referred to from, any thread.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` allows nothing.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned, and every ring
        // that points into the mapping holds the Arc<Socket> that owns it,
        // so none is left.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A queue pair's socket and the mapping of its two rings, shared by the
/// port and the rings (so by the pair's handles).
struct Socket {
    /// Unmapped on drop.
    _map: Mapping,
    fd: OwnedFd,
}

/// One queue pair: its socket, its two rings (each in its handle while that
/// lives, else docked here), and its counters beyond [`QueueCounters`].
struct QueuePair {
    sock: Arc<Socket>,
    rx: Dock<FrameRing>,
    tx: Dock<FrameRing>,
    /// The control side's look at the tx ring's status words, for `stop`
    /// to wait for the kernel while a handle holds the ring.
    tx_view: RingView,
    tx_kick_errors: Arc<Counter>,
    /// `tp_drops` read so far (the kernel zeroes it on every read).
    drops: Cell<u64>,
    /// `stop` left tx frames the kernel never took in a ring a handle
    /// held; they are taken back (and counted) once the ring is docked.
    discard_pending: bool,
}

impl QueuePair {
    /// Adds the kernel's drop count since the last read.
    fn poll_drops(&self) -> u64 {
        if let Ok(s) = sys::getsockopt::<libc::tpacket_stats>(
            self.sock.fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
        ) {
            self.drops.set(self.drops.get() + s.tp_drops as u64);
        }
        self.drops.get()
    }

    /// Takes back the tx frames `stop` could not, if the ring is docked;
    /// returns how many.
    fn reclaim_tx(&mut self) -> usize {
        if !self.discard_pending {
            return 0;
        }
        match self.tx.with(FrameRing::discard_tx) {
            Some(n) => {
                self.discard_pending = false;
                n
            }
            None => 0,
        }
    }
}

/// An af_packet port. See the [module docs](self).
pub struct AfPacketPort {
    life: Lifecycle,
    iface: String,
    ifindex: c_int,
    opts: AfPacketOpts,
    geo: Geometry,
    qps: Vec<QueuePair>,
    /// MAC read at open or last set; reported if the interface cannot be
    /// asked.
    mac: MacAddr,
    /// MTU as last read from the interface.
    mtu: u32,
    port_id: u16,
    pool: Option<Mempool>,
    rx_room: usize,
    rx_queues: u16,
    tx_queues: u16,
    rx_offloads: RxOffloads,
    tx_offloads: TxOffloads,
    /// One rx and one tx per queue pair, by queue.
    counters: Counters,
    promiscuous: bool,
    allmulti: bool,
    mc_addrs: Vec<MacAddr>,
    /// Tx frames discarded at stop (also in `oerrors`); counted by the
    /// control side, never zeroed (resets are baselines).
    tx_discarded_on_stop: u64,
}

impl std::fmt::Debug for AfPacketPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfPacketPort")
            .field("name", &self.life.name())
            .field("iface", &self.iface)
            .field("ifindex", &self.ifindex)
            .field("geometry", &self.geo)
            .field("qpairs", &self.qps.len())
            .field("started", &self.life.is_started())
            .field("handles", &self.life.handles())
            .finish()
    }
}

fn io_err(context: String, e: io::Error) -> SoftError {
    SoftError::io(context, e)
}

impl AfPacketPort {
    /// Opens interface `iface` (of the calling thread's network namespace)
    /// as port `name`: one socket per queue pair with its rx and tx rings
    /// mapped, bound to the interface but receiving nothing until
    /// [`Port::start`].
    ///
    /// Needs `CAP_NET_RAW`; the error says so when it is missing.
    pub fn open(name: &str, iface: &str, opts: AfPacketOpts) -> Result<AfPacketPort, SoftError> {
        let geo = Geometry::new(name, &opts)?;
        if opts.qpairs == 0 || opts.qpairs > MAX_QPAIRS {
            return Err(SoftError::Other(format!(
                "{name}: {} queue pairs (1..={MAX_QPAIRS})",
                opts.qpairs
            )));
        }
        if iface.is_empty() || iface.len() >= libc::IFNAMSIZ || iface.contains(['\0', '/']) {
            return Err(SoftError::Other(format!(
                "{name}: {iface:?} is not an interface name (1 to {} bytes)",
                libc::IFNAMSIZ - 1
            )));
        }
        let probe = sys::packet_socket().map_err(|e| open_error(name, e))?;
        let fd = probe.as_raw_fd();
        let ifindex = sys::if_index(fd, iface).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENODEV) {
                io_err(
                    format!("{name}: no interface named {iface:?} in this network namespace"),
                    e,
                )
            } else {
                io_err(format!("{name}: looking up interface {iface:?}"), e)
            }
        })?;
        let (family, mac) = sys::hw_addr(fd, iface)
            .map_err(|e| io_err(format!("{name}: reading the MAC address of {iface}"), e))?;
        if family != libc::ARPHRD_ETHER && family != libc::ARPHRD_LOOPBACK {
            return Err(SoftError::Other(format!(
                "{name}: {iface} is not an Ethernet interface (ARPHRD type {family}); \
                 an af_packet port sends and receives Ethernet frames"
            )));
        }
        let mtu = sys::mtu(fd, iface)
            .map_err(|e| io_err(format!("{name}: reading the MTU of {iface}"), e))?;
        drop(probe);

        let mut qps = Vec::with_capacity(opts.qpairs as usize);
        let mut fanout_id = None;
        for q in 0..opts.qpairs {
            let queue = open_queue(name, iface, ifindex, &opts, geo).map_err(|e| match e {
                SoftError::Io { context, source } => SoftError::Io {
                    context: format!("{context} (queue {q})"),
                    source,
                },
                e => e,
            })?;
            if opts.qpairs > 1 {
                let id =
                    sys::join_fanout(queue.sock.fd.as_raw_fd(), fanout_id, opts.ignore_outgoing)
                        .map_err(|e| {
                            io_err(
                                format!("{name}: joining the fanout group of {iface} (queue {q})"),
                                e,
                            )
                        })?;
                fanout_id = Some(id);
            }
            qps.push(queue);
        }
        let mut port = AfPacketPort {
            life: Lifecycle::new(name),
            iface: iface.to_string(),
            ifindex,
            opts,
            geo,
            qps,
            mac: MacAddr(mac),
            mtu,
            port_id: 0,
            pool: None,
            rx_room: 0,
            rx_queues: 0,
            tx_queues: 0,
            rx_offloads: RxOffloads::empty(),
            tx_offloads: TxOffloads::empty(),
            counters: Counters::new(opts.qpairs, opts.qpairs),
            promiscuous: false,
            allmulti: false,
            mc_addrs: Vec::new(),
            tx_discarded_on_stop: 0,
        };
        if opts.promiscuous {
            port.set_promiscuous(true).map_err(|e| {
                SoftError::Other(format!("{name}: promiscuous mode on {iface}: {e}"))
            })?;
        }
        Ok(port)
    }

    /// The interface this port runs on.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// The options the port was opened with.
    pub fn opts(&self) -> &AfPacketOpts {
        &self.opts
    }

    /// Largest frame (without FCS) the rings carry.
    pub fn max_frame(&self) -> usize {
        self.geo.frame_size - RX_DATA_OFFSET
    }

    /// Largest frame the kernel will send: MTU plus Ethernet header, plus a
    /// VLAN tag when the frame carries one (`tpacket_snd` allows it).
    fn tx_limit(&self, tagged: bool) -> usize {
        let by_mtu = self.mtu as usize + ETH_HLEN + if tagged { VLAN_HLEN } else { 0 };
        by_mtu.min(self.geo.frame_size - TX_DATA_OFFSET)
    }

    fn fd0(&self) -> RawFd {
        self.qps[0].sock.fd.as_raw_fd()
    }

    fn membership(&self, add: bool, kind: c_int, addr: Option<MacAddr>) -> Result<(), PortError> {
        sys::membership(self.fd0(), self.ifindex, add, kind, addr.map(|a| a.0)).map_err(|e| {
            let what = match kind {
                libc::PACKET_MR_PROMISC => "promiscuous mode".to_string(),
                libc::PACKET_MR_ALLMULTI => "all-multicast mode".to_string(),
                _ => format!("multicast address {}", addr.unwrap_or_default()),
            };
            let verb = if add { "enabling" } else { "disabling" };
            PortError::io(
                format!("{}: {verb} {what} on {}", self.life.name(), self.iface),
                e,
            )
        })
    }

    /// Counters of every queue pair and the kernel's drops, never zeroed
    /// (resets are baselines).
    fn raw_stats(&self) -> PortStats {
        let mut s = self.counters.sum();
        s.oerrors += self.tx_discarded_on_stop;
        s.imissed = self.qps.iter().map(QueuePair::poll_drops).sum();
        s
    }

    /// `tx_kick_errors` and `tx_discarded_on_stop`, never zeroed.
    fn raw_xstats(&self) -> [(&'static str, u64); 2] {
        let kicks = self.qps.iter().map(|q| q.tx_kick_errors.get()).sum();
        [
            ("tx_kick_errors", kicks),
            ("tx_discarded_on_stop", self.tx_discarded_on_stop),
        ]
    }

    /// Takes back tx frames `stop` left in rings that handles held then and
    /// that are docked now, and counts them.
    fn reclaim(&mut self) {
        for (i, q) in self.qps.iter_mut().enumerate() {
            let n = q.reclaim_tx();
            if n > 0 {
                tracing::warn!(port = %self.life.name(), queue = i, discarded = n, "tx frames the kernel did not take within 1 s of stop were discarded");
                self.tx_discarded_on_stop += n as u64;
            }
        }
    }
}

/// The rx queue of an [`AfPacketPort`]: one socket's rx ring.
struct AfPacketRx {
    ring: Docked<FrameRing>,
    pool: Mempool,
    rx_room: usize,
    strip: bool,
    port_id: u16,
    queue: u16,
    run: RunFlag,
    c: Arc<QueueCounters>,
    /// Last, so the ring is back in its dock before the lease goes.
    _lease: Lease,
}

impl RxQueue for AfPacketRx {
    fn rx_burst(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
        if !self.run.is_running() {
            return 0;
        }
        let ring = self.ring.get();
        let strip = self.strip;
        let want = pkts.spare();
        let mut got = 0;
        let (mut bytes, mut errors, mut nombuf) = (0u64, 0u64, 0u64);
        while got < want {
            let i = ring.next;
            let status = ring.status(i).load(Ordering::Relaxed);
            if status & libc::TP_STATUS_USER == 0 {
                break;
            }
            // Acquire: the kernel wrote the header fields and the packet
            // before setting TP_STATUS_USER (smp_wmb in tpacket_rcv); this
            // orders our reads of them after our read of the status.
            fence(Ordering::Acquire);
            let h = ring.hdr(i);
            // SAFETY: h is the header of frame i, inside the mapping; the
            // frame is ours (TP_STATUS_USER, and this handle is the ring's
            // one FrameRing) so nobody else writes these fields now;
            // addr_of! makes no reference.
            let (len, snaplen, mac_off, tci, tpid) = unsafe {
                (
                    ptr::addr_of!((*h).tp_len).read_volatile() as usize,
                    ptr::addr_of!((*h).tp_snaplen).read_volatile() as usize,
                    ptr::addr_of!((*h).tp_mac).read_volatile() as usize,
                    ptr::addr_of!((*h).tp_vlan_tci).read_volatile(),
                    ptr::addr_of!((*h).tp_vlan_tpid).read_volatile(),
                )
            };
            let hdr = RxHdr {
                status,
                len,
                snaplen,
                mac_off,
                tci,
                tpid,
            };
            let Some(plan) = rx_plan(&hdr, strip, ring.geo().frame_size, self.rx_room) else {
                // Cut short by the ring, longer than an mbuf, or nonsense.
                errors += 1;
                release_rx(ring, i);
                continue;
            };
            let Some(mut m) = self.pool.alloc() else {
                // The frame stays in the ring for the next call.
                nombuf += 1;
                break;
            };
            let out_len = plan.out_len;
            let fits = m.set_len(out_len);
            debug_assert!(fits, "out_len <= rx_room");
            let dst = m.data_mut();
            for run in plan.runs {
                // SAFETY: the source bytes lie inside frame i (rx_plan
                // checked mac_off + snaplen <= frame_size and every run
                // lies within mac_off..mac_off + snaplen), which is ours
                // until released; the destination run lies inside dst, the
                // mbuf's own buffer of out_len bytes; they cannot overlap.
                // Raw copies make no reference to the shared frame.
                unsafe {
                    ptr::copy_nonoverlapping(
                        ring.frame(i).add(run.src),
                        dst[run.dst..run.dst + run.len].as_mut_ptr(),
                        run.len,
                    );
                }
            }
            release_rx(ring, i);
            let (flags, stripped) = rx_finish(m.data_mut(), &hdr, strip);
            let meta = m.rx_mut();
            meta.port = self.port_id;
            meta.queue = self.queue;
            if let Some(tci) = stripped {
                meta.vlan_tci = tci;
            }
            meta.flags = flags;
            if pkts.push(m).is_err() {
                break; // cannot happen: got < spare
            }
            bytes += out_len as u64;
            got += 1;
        }
        if got > 0 {
            self.c.add(got as u64, bytes);
        }
        if errors > 0 {
            self.c.add_errors(errors);
        }
        if nombuf > 0 {
            self.c.add_dropped(nombuf);
        }
        got
    }
}

/// The tx queue of an [`AfPacketPort`]: one socket's tx ring.
struct AfPacketTx {
    ring: Docked<FrameRing>,
    insert_ok: bool,
    /// Largest frame untagged and tagged (`AfPacketPort::tx_limit`).
    limits: (usize, usize),
    run: RunFlag,
    c: Arc<QueueCounters>,
    kick_errors: Arc<Counter>,
    /// Last, so the ring is back in its dock before the lease goes.
    _lease: Lease,
}

impl TxQueue for AfPacketTx {
    fn tx_burst(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
        if !self.run.is_running() {
            return 0;
        }
        let (insert_ok, limits) = (self.insert_ok, self.limits);
        let ring = self.ring.get();
        let mut taken = 0;
        let mut queued = 0;
        let mut full = false;
        let (mut bytes, mut errors) = (0u64, 0u64);
        while let Some(m) = pkts.pop_front() {
            let insert = insert_ok && m.tx().flags.contains(TxFlags::VLAN_INSERT);
            let data = m.data();
            let wire_len = data.len() + if insert { VLAN_HLEN } else { 0 };
            let tagged =
                insert || matches!(data.get(12..14), Some(&[0x81, 0x00]) | Some(&[0x88, 0xa8]));
            let limit = if tagged { limits.1 } else { limits.0 };
            if wire_len > limit || data.len() < ETH_HLEN {
                // The kernel would refuse it: drop it here and say so.
                errors += 1;
                taken += 1;
                continue;
            }
            let i = ring.next;
            let status = ring.status(i).load(Ordering::Relaxed);
            if status != libc::TP_STATUS_AVAILABLE && status != libc::TP_STATUS_WRONG_FORMAT {
                // The ring is full: the rest stays with the caller.
                let back = pkts.push_front(m);
                debug_assert!(back.is_ok(), "room left by pop_front");
                full = true;
                break;
            }
            if status == libc::TP_STATUS_WRONG_FORMAT {
                // Only without PACKET_LOSS; counted, and the frame reused.
                errors += 1;
            }
            // Acquire: the kernel set AVAILABLE after its last read of the
            // frame (the skb destructor); this orders our writes below
            // after our read of that status.
            fence(Ordering::Acquire);
            let frame = ring.frame(i);
            // SAFETY: the frame is ours (AVAILABLE, and this handle is the
            // ring's one FrameRing); TX_DATA_OFFSET +
            // wire_len <= frame_size (wire_len <= limit); the source is the
            // mbuf's own buffer. addr_of! and raw copies make no reference
            // to the shared frame.
            unsafe {
                let out = frame.add(TX_DATA_OFFSET);
                if insert {
                    ptr::copy_nonoverlapping(data.as_ptr(), out, 12);
                    let tag =
                        [ETHERTYPE_VLAN.to_be_bytes(), m.tx().vlan_tci.to_be_bytes()].concat();
                    ptr::copy_nonoverlapping(tag.as_ptr(), out.add(12), VLAN_HLEN);
                    ptr::copy_nonoverlapping(data.as_ptr().add(12), out.add(16), data.len() - 12);
                } else {
                    ptr::copy_nonoverlapping(data.as_ptr(), out, data.len());
                }
                let h = ring.hdr(i);
                ptr::addr_of_mut!((*h).tp_len).write_volatile(wire_len as u32);
                ptr::addr_of_mut!((*h).tp_snaplen).write_volatile(wire_len as u32);
            }
            // Release: orders the frame's bytes and tp_len before the status
            // store that hands the frame to the kernel.
            fence(Ordering::Release);
            ring.status(i)
                .store(libc::TP_STATUS_SEND_REQUEST, Ordering::Relaxed);
            ring.advance();
            bytes += wire_len as u64;
            queued += 1;
            taken += 1;
        }
        if queued > 0 || full {
            if let Err(e) = sys::kick(ring.fd()) {
                // EAGAIN/ENOBUFS: the queue is busy, frames wait for the next
                // kick. Others (ENETDOWN, ENXIO) mean the link is gone.
                if !matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::ENOBUFS)) {
                    self.kick_errors.add(1);
                }
            }
        }
        if queued > 0 {
            self.c.add(queued, bytes);
        }
        if errors > 0 {
            self.c.add_errors(errors);
        }
        taken
    }
}

/// Returns rx frame `i` to the kernel and moves on.
fn release_rx(ring: &mut FrameRing, i: usize) {
    // Release: orders every read of the frame above before the store that
    // lets the kernel write it again.
    fence(Ordering::Release);
    ring.status(i)
        .store(libc::TP_STATUS_KERNEL, Ordering::Relaxed);
    ring.advance();
}

fn open_error(name: &str, e: io::Error) -> SoftError {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => io_err(
            format!(
                "{name}: opening an AF_PACKET socket needs CAP_NET_RAW: run as root \
                 or grant it (setcap cap_net_raw,cap_net_admin+ep <binary>)"
            ),
            e,
        ),
        Some(libc::EAFNOSUPPORT) => io_err(
            format!("{name}: this kernel has no AF_PACKET support (CONFIG_PACKET)"),
            e,
        ),
        _ => io_err(format!("{name}: opening an AF_PACKET socket"), e),
    }
}

fn open_queue(
    name: &str,
    iface: &str,
    ifindex: c_int,
    opts: &AfPacketOpts,
    geo: Geometry,
) -> Result<QueuePair, SoftError> {
    let fd = sys::packet_socket().map_err(|e| open_error(name, e))?;
    let raw = fd.as_raw_fd();
    let opt = |what: &str, e: io::Error| {
        io_err(
            format!("{name}: setting {what} on the socket for {iface}"),
            e,
        )
    };
    // Nothing is received until start() lifts this filter.
    sys::attach_drop_filter(raw).map_err(|e| opt("a drop-all filter", e))?;
    let v2 = libc::tpacket_versions::TPACKET_V2 as c_int;
    sys::setsockopt(raw, libc::SOL_PACKET, libc::PACKET_VERSION, &v2)
        .map_err(|e| opt("TPACKET_V2", e))?;
    // Skip malformed tx frames instead of stopping the ring at them.
    sys::setsockopt(raw, libc::SOL_PACKET, libc::PACKET_LOSS, &1 as &c_int)
        .map_err(|e| opt("PACKET_LOSS", e))?;
    if opts.qdisc_bypass {
        sys::setsockopt(
            raw,
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            &1 as &c_int,
        )
        .map_err(|e| opt("PACKET_QDISC_BYPASS", e))?;
    }
    if opts.ignore_outgoing {
        sys::setsockopt(
            raw,
            libc::SOL_PACKET,
            libc::PACKET_IGNORE_OUTGOING,
            &1 as &c_int,
        )
        .map_err(|e| opt("PACKET_IGNORE_OUTGOING (Linux 4.20 or later)", e))?;
    }
    let req = geo.req();
    let ring_err = |which: &str, e: io::Error| {
        io_err(
            format!(
                "{name}: setting up the {which} ring ({} frames of {} bytes in {} blocks of {} bytes) for {iface}",
                geo.frames, geo.frame_size, geo.blocks, geo.block_size
            ),
            e,
        )
    };
    sys::setsockopt(raw, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)
        .map_err(|e| ring_err("rx", e))?;
    sys::setsockopt(raw, libc::SOL_PACKET, libc::PACKET_TX_RING, &req)
        .map_err(|e| ring_err("tx", e))?;
    let ring = geo.ring_bytes();
    let map = sys::mmap_rings(raw, 2 * ring)
        .map_err(|e| io_err(format!("{name}: mapping the rings of {iface}"), e))?;
    sys::bind(raw, ifindex).map_err(|e| io_err(format!("{name}: binding to {iface}"), e))?;
    let base = map.ptr;
    let sock = Arc::new(Socket { _map: map, fd });
    // SAFETY: the mapping is 2 * ring bytes: the rx ring then the tx ring
    // (the layout packet_mmap gives when both rings are set), each of
    // geometry `geo`; `sock` owns the mapping, and these are the only
    // FrameRings made for the two rings.
    let (rx, tx, tx_view) = unsafe {
        let tx_base = NonNull::new_unchecked(base.as_ptr().add(ring));
        (
            FrameRing::new(base, geo, sock.clone()),
            FrameRing::new(tx_base, geo, sock.clone()),
            RingView::new(tx_base, geo, sock.clone()),
        )
    };
    Ok(QueuePair {
        sock,
        rx: Dock::new(rx),
        tx: Dock::new(tx),
        tx_view,
        tx_kick_errors: Arc::default(),
        drops: Cell::new(0),
        discard_pending: false,
    })
}

/// What the tpacket2 header and status word say about one received frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RxHdr {
    /// The status word (`TP_STATUS_*`).
    pub(crate) status: u32,
    /// `tp_len`: the frame's length on the wire.
    pub(crate) len: usize,
    /// `tp_snaplen`: the bytes the ring holds.
    pub(crate) snaplen: usize,
    /// `tp_mac`: where the frame starts, from the start of the ring frame.
    pub(crate) mac_off: usize,
    pub(crate) tci: u16,
    pub(crate) tpid: u16,
}

/// One copy from the ring frame into the mbuf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    /// Offset in the ring frame.
    pub(crate) src: usize,
    /// Offset in the mbuf.
    pub(crate) dst: usize,
    pub(crate) len: usize,
}

/// How a received frame is copied out of the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RxPlan {
    /// The mbuf's length: the snaplen, plus a tag when one goes back in.
    pub(crate) out_len: usize,
    /// The bytes to copy (the second run is empty unless a tag goes back
    /// in: it leaves `12..16` of the mbuf to [`rx_finish`]). An array, not
    /// a `Vec`: this is planned for every received frame.
    pub(crate) runs: [Run; 2],
}

/// Checks a received frame's header against the ring frame's size (the
/// kernel's word is not trusted to stay inside it) and the mbuf's room.
/// `None`: the frame was cut short by the ring, is longer than an mbuf,
/// or the header is nonsense; it is counted as an error and dropped.
pub(crate) fn rx_plan(h: &RxHdr, strip: bool, frame_size: usize, rx_room: usize) -> Option<RxPlan> {
    let vlan = h.status & libc::TP_STATUS_VLAN_VALID != 0;
    let reinsert = vlan && !strip;
    let out_len = h.snaplen + if reinsert { VLAN_HLEN } else { 0 };
    let sane = h
        .mac_off
        .checked_add(h.snaplen)
        .is_some_and(|end| end <= frame_size)
        && !(reinsert && h.snaplen < 12);
    if !sane || h.snaplen < h.len || out_len > rx_room {
        return None;
    }
    let runs = if reinsert {
        [
            Run {
                src: h.mac_off,
                dst: 0,
                len: 12,
            },
            Run {
                src: h.mac_off + 12,
                dst: 16,
                len: h.snaplen - 12,
            },
        ]
    } else {
        [
            Run {
                src: h.mac_off,
                dst: 0,
                len: h.snaplen,
            },
            Run {
                src: h.mac_off,
                dst: 0,
                len: 0,
            },
        ]
    };
    Some(RxPlan { out_len, runs })
}

/// Finishes a frame copied as [`rx_plan`] said: puts the tag the kernel
/// took off back between the addresses and the original EtherType (unless
/// `strip`), completes a checksum the kernel left partial. Returns the
/// mbuf's flags and, when the tag was stripped, its TCI.
pub(crate) fn rx_finish(dst: &mut [u8], h: &RxHdr, strip: bool) -> (RxFlags, Option<u16>) {
    let vlan = h.status & libc::TP_STATUS_VLAN_VALID != 0;
    if vlan && !strip {
        let tpid = if h.status & libc::TP_STATUS_VLAN_TPID_VALID != 0 && h.tpid != 0 {
            h.tpid
        } else {
            ETHERTYPE_VLAN
        };
        EthernetFrame::new_unchecked(&mut *dst).set_ethertype(tpid);
        VlanTag::new_unchecked(&mut dst[ETH_HLEN..]).set_tci(h.tci);
    }
    let mut flags = RxFlags::empty();
    if h.status & libc::TP_STATUS_CSUMNOTREADY != 0 {
        if complete_l4_checksum(dst) {
            flags |= RxFlags::L4_CKSUM_GOOD;
        }
    } else if h.status & libc::TP_STATUS_CSUM_VALID != 0 {
        flags |= RxFlags::L4_CKSUM_GOOD;
    }
    let mut stripped = None;
    if vlan && strip {
        stripped = Some(h.tci);
        flags |= RxFlags::VLAN_STRIPPED;
    }
    (flags, stripped)
}

/// The receive path of one ring frame, on a copy of it: [`rx_plan`], the
/// copies, [`rx_finish`]. For the fuzz harness and tests; `rx_burst` does
/// the same with raw copies out of the shared ring.
#[cfg(any(test, feature = "testing"))]
pub(crate) fn rx_frame(
    ring_frame: &[u8],
    h: &RxHdr,
    strip: bool,
    rx_room: usize,
) -> Option<(Vec<u8>, RxFlags, Option<u16>)> {
    let plan = rx_plan(h, strip, ring_frame.len(), rx_room)?;
    let mut out = vec![0u8; plan.out_len];
    for r in &plan.runs {
        out[r.dst..r.dst + r.len].copy_from_slice(&ring_frame[r.src..r.src + r.len]);
    }
    let (flags, tci) = rx_finish(&mut out, h, strip);
    Some((out, flags, tci))
}

/// Computes the TCP or UDP checksum of an Ethernet frame (IPv4 without
/// fragmentation or IPv6 without extension headers, after at most two
/// VLAN tags), replacing whatever the checksum field held. Returns false,
/// leaving the frame alone, for anything else, including a header whose
/// length fields the core's checked views refuse.
fn complete_l4_checksum(f: &mut [u8]) -> bool {
    let Ok(l3) = l3_of(f) else {
        return false;
    };
    let l3buf = &mut f[l3.offset..];
    let (pseudo, proto, seg) = match l3.ethertype {
        ETHERTYPE_IPV4 => {
            let Ok(ip) = Ipv4Packet::new_checked(l3buf) else {
                return false;
            };
            if ip.is_fragment() {
                return false;
            }
            let (pseudo, proto) = (ip.pseudo_header_sum(), ip.protocol());
            let (h, t) = (ip.header_len(), ip.total_len() as usize);
            (pseudo, proto, &mut ip.into_inner()[h..t])
        }
        ETHERTYPE_IPV6 => {
            let Ok(ip) = Ipv6Packet::new_checked(l3buf) else {
                return false;
            };
            let (pseudo, proto) = (ip.pseudo_header_sum(), ip.next_header());
            let end = IPV6_HLEN + ip.payload_len() as usize;
            (pseudo, proto, &mut ip.into_inner()[IPV6_HLEN..end])
        }
        _ => return false,
    };
    // The sum covers the whole IP payload, as the kernel's
    // CHECKSUM_PARTIAL does from csum_start to the end of the packet.
    let c = match proto {
        IPPROTO_TCP => {
            let Ok(mut tcp) = TcpPacket::new_checked(&mut *seg) else {
                return false;
            };
            tcp.set_checksum(0);
            internet_checksum(seg, pseudo)
        }
        IPPROTO_UDP => {
            let Ok(mut udp) = UdpPacket::new_checked(&mut *seg) else {
                return false;
            };
            udp.set_checksum(0);
            // RFC 768: zero means "no checksum".
            match internet_checksum(seg, pseudo) {
                0 => 0xffff,
                c => c,
            }
        }
        _ => return false,
    };
    if proto == IPPROTO_TCP {
        TcpPacket::new_unchecked(seg).set_checksum(c);
    } else {
        UdpPacket::new_unchecked(seg).set_checksum(c);
    }
    true
}

const IPV6_HLEN: usize = Ipv6Packet::<&[u8]>::HEADER_LEN;

impl Port for AfPacketPort {
    fn info(&self) -> PortInfo {
        let q = self.qps.len() as u16;
        PortInfo {
            driver: "net_af_packet".into(),
            name: self.life.name().to_string(),
            capabilities: Capabilities {
                max_rx_queues: q,
                max_tx_queues: q,
                // The rings are sized at open; descriptor counts are unused.
                min_desc: 1,
                max_desc: u16::MAX,
                desc_align: 1,
                max_frame: self.max_frame() as u32,
                rx_offloads: RxOffloads::VLAN_STRIP,
                tx_offloads: TxOffloads::VLAN_INSERT,
                max_mc_addrs: MAX_MC_ADDRS,
                promiscuous: true,
                allmulticast: true,
            },
        }
    }

    fn configure(&mut self, conf: &PortConf) -> Result<(), PortError> {
        self.life.check_configure(conf, &self.info().capabilities)?;
        let q = self.qps.len() as u16;
        if conf.rx_queues != q {
            // Every socket of the fanout group gets a share of the flows,
            // so each must be polled.
            return Err(PortError::InvalidConfig(format!(
                "{} was opened with {q} queue pairs: configure {q} rx queues, not {}",
                self.life.name(),
                conf.rx_queues
            )));
        }
        let room = conf.rx_pool.data_room().saturating_sub(HEADROOM) as usize;
        if room < 64 {
            return Err(PortError::InvalidConfig(format!(
                "the rx pool's buffers hold {room} bytes; at least 64 are needed"
            )));
        }
        if let Some(mtu) = conf.mtu {
            let need = mtu as usize + ETH_HLEN;
            if need > self.max_frame() {
                return Err(PortError::InvalidConfig(format!(
                    "MTU {mtu} needs {need}-byte frames; the rings hold {} (raise frame_size)",
                    self.max_frame()
                )));
            }
            if mtu as u32 != self.mtu {
                sys::set_mtu(self.fd0(), &self.iface, mtu as u32).map_err(|e| {
                    PortError::io(
                        format!(
                            "{}: setting MTU {mtu} on {} (needs CAP_NET_ADMIN)",
                            self.life.name(),
                            self.iface
                        ),
                        e,
                    )
                })?;
                self.mtu = mtu as u32;
            }
        }
        self.rx_room = room;
        self.pool = Some(conf.rx_pool.clone());
        self.port_id = conf.port_id;
        self.rx_queues = conf.rx_queues;
        self.tx_queues = conf.tx_queues;
        self.rx_offloads = conf.rx_offloads;
        self.tx_offloads = conf.tx_offloads;
        self.life.set_configured();
        Ok(())
    }

    fn start(&mut self) -> Result<(), PortError> {
        if !self.life.begin_start()? {
            return Ok(());
        }
        // Every ring is docked now: take back what the last stop could not.
        self.reclaim();
        if let Ok(mtu) = sys::mtu(self.fd0(), &self.iface) {
            self.mtu = mtu;
        }
        for (i, q) in self.qps.iter_mut().enumerate() {
            q.rx.with(FrameRing::flush_rx);
            sys::detach_filter(q.sock.fd.as_raw_fd()).map_err(|e| {
                PortError::io(format!("{}: starting queue {i}", self.life.name()), e)
            })?;
        }
        self.life.finish_start();
        Ok(())
    }

    /// Stops receiving (the drop-all filter goes back on) and waits up to
    /// a second per queue for the kernel to send what the tx rings hold.
    /// Rings no handle holds are cleaned up here as the module docs say;
    /// a ring a handle still holds is left to the next `start` (rx frames
    /// are flushed then) and to [`Port::service`] or `start` for tx frames
    /// the kernel did not take, which are counted when they are taken
    /// back.
    fn stop(&mut self) -> Result<(), PortError> {
        if !self.life.stop() {
            return Ok(());
        }
        let mut first_err = None;
        for (i, q) in self.qps.iter_mut().enumerate() {
            if let Err(e) = sys::attach_drop_filter(q.sock.fd.as_raw_fd()) {
                first_err.get_or_insert(PortError::io(
                    format!("{}: stopping queue {i}", self.life.name()),
                    e,
                ));
            }
            q.rx.with(FrameRing::flush_rx);
            let timeout = Duration::from_secs(1);
            let (discarded, sending) = match q.tx.with(|t| t.drain_tx(timeout)) {
                Some(r) => r,
                None => {
                    // A handle holds the ring: wait for the kernel all the
                    // same (status loads and kicks only), and leave what it
                    // did not take to be taken back once the ring is docked.
                    let (left, sending) = q.tx_view.wait_tx(timeout);
                    if left > 0 {
                        q.discard_pending = true;
                        tracing::warn!(port = %self.life.name(), queue = i, left, "tx frames the kernel did not take within 1 s will be discarded once the tx handle is dropped");
                    }
                    (0, sending)
                }
            };
            if discarded > 0 {
                tracing::warn!(port = %self.life.name(), queue = i, discarded, "tx frames the kernel did not take within 1 s were discarded");
                self.tx_discarded_on_stop += discarded as u64;
            }
            if sending > 0 {
                tracing::warn!(port = %self.life.name(), queue = i, sending, "tx frames are still being sent after 1 s");
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn take_queues(&mut self) -> Result<Queues, PortError> {
        let limits = (self.tx_limit(false), self.tx_limit(true));
        self.life.take_queues(|life| {
            let Some(pool) = &self.pool else {
                return Err(PortError::NotConfigured);
            };
            let qps = &self.qps[..];
            let rx: Option<Vec<_>> = qps[..self.rx_queues as usize]
                .iter()
                .map(|q| q.rx.undock())
                .collect();
            let tx: Option<Vec<_>> = qps[..self.tx_queues as usize]
                .iter()
                .map(|q| q.tx.undock())
                .collect();
            let (Some(rx), Some(tx)) = (rx, tx) else {
                // Cannot happen: start checked that no handle is alive.
                // Whatever was undocked goes back when dropped here.
                return Err(PortError::QueuesTaken(format!(
                    "{}: a ring is still held by a queue handle",
                    life.name()
                )));
            };
            let strip = self.rx_offloads.contains(RxOffloads::VLAN_STRIP);
            let rx = rx
                .into_iter()
                .zip(self.counters.rx())
                .enumerate()
                .map(|(i, (ring, c))| {
                    Box::new(AfPacketRx {
                        ring,
                        pool: pool.clone(),
                        rx_room: self.rx_room,
                        strip,
                        port_id: self.port_id,
                        queue: i as u16,
                        run: life.run(),
                        c: c.clone(),
                        _lease: life.lease(),
                    }) as Box<dyn RxQueue>
                })
                .collect();
            let insert_ok = self.tx_offloads.contains(TxOffloads::VLAN_INSERT);
            let tx = tx
                .into_iter()
                .zip(qps.iter().zip(self.counters.tx()))
                .map(|(ring, (q, c))| {
                    Box::new(AfPacketTx {
                        ring,
                        insert_ok,
                        limits,
                        run: life.run(),
                        c: c.clone(),
                        kick_errors: q.tx_kick_errors.clone(),
                        _lease: life.lease(),
                    }) as Box<dyn TxQueue>
                })
                .collect();
            Ok(Queues { rx, tx })
        })
    }

    /// Takes back, once their handles are gone, tx frames a `stop` could
    /// not.
    fn service(&mut self) {
        if !self.life.is_started() {
            self.reclaim();
        }
    }

    fn link(&mut self) -> LinkStatus {
        let fd = self.fd0();
        let Ok(flags) = sys::flags(fd, &self.iface) else {
            return LinkStatus::DOWN;
        };
        let up = flags & libc::IFF_UP != 0 && flags & libc::IFF_RUNNING != 0;
        if !up {
            return LinkStatus::DOWN;
        }
        let (speed_mbps, duplex) =
            sys::ethtool_link(fd, &self.iface).unwrap_or((0, Duplex::Unknown));
        LinkStatus {
            up,
            speed_mbps,
            duplex,
        }
    }

    fn mac_addr(&self) -> MacAddr {
        match sys::hw_addr(self.fd0(), &self.iface) {
            Ok((_, mac)) => MacAddr(mac),
            Err(_) => self.mac,
        }
    }

    fn set_mac_addr(&mut self, mac: MacAddr) -> Result<(), PortError> {
        pollux_core::port::require_unicast(mac)?;
        sys::set_hw_addr(self.fd0(), &self.iface, mac.0).map_err(|e| {
            PortError::io(
                format!("{}: setting the MAC address of {} (needs CAP_NET_ADMIN; some drivers need the interface down)", self.life.name(), self.iface),
                e,
            )
        })?;
        self.mac = mac;
        Ok(())
    }

    fn set_promiscuous(&mut self, on: bool) -> Result<(), PortError> {
        if on != self.promiscuous {
            self.membership(on, libc::PACKET_MR_PROMISC, None)?;
            self.promiscuous = on;
        }
        Ok(())
    }

    fn set_allmulticast(&mut self, on: bool) -> Result<(), PortError> {
        if on != self.allmulti {
            self.membership(on, libc::PACKET_MR_ALLMULTI, None)?;
            self.allmulti = on;
        }
        Ok(())
    }

    fn set_mc_addr_list(&mut self, addrs: &[MacAddr]) -> Result<(), PortError> {
        pollux_core::port::require_multicast(addrs)?;
        if addrs.len() > MAX_MC_ADDRS as usize {
            return Err(PortError::InvalidConfig(format!(
                "{} multicast addresses, at most {MAX_MC_ADDRS}",
                addrs.len()
            )));
        }
        let mut want: Vec<MacAddr> = addrs.to_vec();
        want.sort();
        want.dedup();
        let old = std::mem::take(&mut self.mc_addrs);
        // Keep every address that is both in the old and new list joined
        // throughout, so its frames are never missed.
        let mut added = Vec::new();
        for a in want.iter().filter(|a| !old.contains(a)) {
            if let Err(e) = self.membership(true, libc::PACKET_MR_MULTICAST, Some(*a)) {
                for b in added {
                    let _ = self.membership(false, libc::PACKET_MR_MULTICAST, Some(b));
                }
                self.mc_addrs = old;
                return Err(e);
            }
            added.push(*a);
        }
        let gone: Vec<MacAddr> = old.iter().filter(|a| !want.contains(a)).copied().collect();
        for a in gone {
            if let Err(e) = self.membership(false, libc::PACKET_MR_MULTICAST, Some(a)) {
                // Still joined: keep it on our list so a later call retries.
                tracing::warn!(port = %self.life.name(), "{e}");
                want.push(a);
            }
        }
        self.mc_addrs = want;
        Ok(())
    }

    fn stats(&self) -> PortStats {
        self.counters.since(self.raw_stats())
    }

    fn queue_stats(&self) -> Vec<QueueStats> {
        self.counters.queue_stats()
    }

    fn xstats(&self) -> Vec<Xstat> {
        self.counters.xstats(self.stats(), &self.raw_xstats())
    }

    fn reset_stats(&mut self) {
        self.counters.reset_to(self.raw_stats());
        self.counters.reset_extra(&self.raw_xstats());
    }
}

/// Every system call of this module: socket options, interface ioctls, the
/// ring mapping and the tx kick.
mod sys {
    use std::ffi::c_int;
    use std::io;
    use std::mem::{size_of, MaybeUninit};
    use std::os::fd::{FromRawFd, OwnedFd, RawFd};
    use std::ptr::{self, NonNull};

    use pollux_core::Duplex;

    use super::Mapping;

    fn check(ret: c_int) -> io::Result<c_int> {
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(ret)
        }
    }

    /// An AF_PACKET raw socket that receives nothing until bound with a
    /// protocol.
    pub(super) fn packet_socket() -> io::Result<OwnedFd> {
        // SAFETY: socket has no memory-safety preconditions.
        let fd = check(unsafe {
            libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0)
        })?;
        // SAFETY: fd is a new descriptor nobody else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    pub(super) fn setsockopt<T>(fd: RawFd, level: c_int, opt: c_int, val: &T) -> io::Result<()> {
        // SAFETY: val points to a live T of size_of::<T>() bytes, which the
        // kernel only reads.
        check(unsafe {
            libc::setsockopt(
                fd,
                level,
                opt,
                (val as *const T).cast(),
                size_of::<T>() as libc::socklen_t,
            )
        })
        .map(drop)
    }

    /// Reads a socket option of type `T` (plain old data).
    pub(super) fn getsockopt<T: Copy>(fd: RawFd, level: c_int, opt: c_int) -> io::Result<T> {
        let mut val = MaybeUninit::<T>::zeroed();
        let mut len = size_of::<T>() as libc::socklen_t;
        // SAFETY: val has room for len bytes; the kernel writes at most len.
        check(unsafe { libc::getsockopt(fd, level, opt, val.as_mut_ptr().cast(), &mut len) })?;
        // SAFETY: T is plain old data (integers), so any bytes, including
        // the zeroes the kernel did not overwrite, are a valid T.
        Ok(unsafe { val.assume_init() })
    }

    /// Classic BPF "ret #0": accept nothing.
    pub(super) fn attach_drop_filter(fd: RawFd) -> io::Result<()> {
        let mut insn = [libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        }];
        let prog = libc::sock_fprog {
            len: 1,
            filter: insn.as_mut_ptr(),
        };
        // The kernel copies the program during the call.
        setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
    }

    pub(super) fn detach_filter(fd: RawFd) -> io::Result<()> {
        match setsockopt(fd, libc::SOL_SOCKET, libc::SO_DETACH_FILTER, &0 as &c_int) {
            // No filter attached: already receiving.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            r => r,
        }
    }

    pub(super) fn mmap_rings(fd: RawFd, len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh shared mapping of the socket's rings; the kernel
        // checks that len matches them. Nothing else aliases it.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mapping { ptr, len })
    }

    fn sockaddr(ifindex: c_int, protocol: u16) -> libc::sockaddr_ll {
        libc::sockaddr_ll {
            sll_family: libc::AF_PACKET as u16,
            sll_protocol: protocol.to_be(),
            sll_ifindex: ifindex,
            sll_hatype: 0,
            sll_pkttype: 0,
            sll_halen: 0,
            sll_addr: [0; 8],
        }
    }

    /// Binds to the interface for every protocol (`ETH_P_ALL`).
    pub(super) fn bind(fd: RawFd, ifindex: c_int) -> io::Result<()> {
        let sa = sockaddr(ifindex, libc::ETH_P_ALL as u16);
        // SAFETY: sa is a valid sockaddr_ll of the length given.
        check(unsafe {
            libc::bind(
                fd,
                (&sa as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })
        .map(drop)
    }

    /// Joins fanout group `id`, or creates one with a fresh id when `None`;
    /// returns the group's id.
    pub(super) fn join_fanout(
        fd: RawFd,
        id: Option<u16>,
        ignore_outgoing: bool,
    ) -> io::Result<u16> {
        let mut flags = libc::PACKET_FANOUT_HASH | libc::PACKET_FANOUT_FLAG_DEFRAG;
        if ignore_outgoing {
            flags |= libc::PACKET_FANOUT_FLAG_IGNORE_OUTGOING;
        }
        let arg = match id {
            Some(id) => id as u32 | (flags << 16),
            None => (flags | libc::PACKET_FANOUT_FLAG_UNIQUEID) << 16,
        };
        setsockopt(fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &(arg as c_int))?;
        let got: c_int = getsockopt(fd, libc::SOL_PACKET, libc::PACKET_FANOUT)?;
        Ok(got as u32 as u16)
    }

    /// Hands every `TP_STATUS_SEND_REQUEST` frame to the kernel without
    /// waiting.
    pub(super) fn kick(fd: RawFd) -> io::Result<()> {
        // SAFETY: a zero-length send with no buffer and no address; the
        // kernel reads the frames from the tx ring.
        let r = unsafe { libc::sendto(fd, ptr::null(), 0, libc::MSG_DONTWAIT, ptr::null(), 0) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    pub(super) fn membership(
        fd: RawFd,
        ifindex: c_int,
        add: bool,
        kind: c_int,
        addr: Option<[u8; 6]>,
    ) -> io::Result<()> {
        let mut mr = libc::packet_mreq {
            mr_ifindex: ifindex,
            mr_type: kind as u16,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        if let Some(a) = addr {
            mr.mr_alen = 6;
            mr.mr_address[..6].copy_from_slice(&a);
        }
        let opt = if add {
            libc::PACKET_ADD_MEMBERSHIP
        } else {
            libc::PACKET_DROP_MEMBERSHIP
        };
        setsockopt(fd, libc::SOL_PACKET, opt, &mr)
    }

    fn ifreq(name: &str) -> libc::ifreq {
        // SAFETY: ifreq is plain old data (a name array and a union of
        // integers, sockaddrs and a pointer); all zeroes is a valid value.
        let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
        // The caller checked that name is shorter than IFNAMSIZ.
        for (d, s) in r.ifr_name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        r
    }

    fn ioctl(fd: RawFd, req: libc::c_ulong, r: &mut libc::ifreq) -> io::Result<()> {
        // SAFETY: r is a valid ifreq for the interface requests used here,
        // which read and write only inside it (or, for SIOCETHTOOL, the
        // buffer its ifru_data points to, which the caller keeps alive).
        check(unsafe { libc::ioctl(fd, req as _, r as *mut libc::ifreq) }).map(drop)
    }

    pub(super) fn if_index(fd: RawFd, name: &str) -> io::Result<c_int> {
        let mut r = ifreq(name);
        ioctl(fd, libc::SIOCGIFINDEX, &mut r)?;
        // SAFETY: SIOCGIFINDEX filled the ifindex member.
        Ok(unsafe { r.ifr_ifru.ifru_ifindex })
    }

    /// The hardware type (ARPHRD_*) and address.
    pub(super) fn hw_addr(fd: RawFd, name: &str) -> io::Result<(u16, [u8; 6])> {
        let mut r = ifreq(name);
        ioctl(fd, libc::SIOCGIFHWADDR, &mut r)?;
        // SAFETY: SIOCGIFHWADDR filled the hwaddr member.
        let sa = unsafe { r.ifr_ifru.ifru_hwaddr };
        let mut mac = [0u8; 6];
        for (d, s) in mac.iter_mut().zip(sa.sa_data.iter()) {
            *d = *s as u8;
        }
        Ok((sa.sa_family, mac))
    }

    pub(super) fn set_hw_addr(fd: RawFd, name: &str, mac: [u8; 6]) -> io::Result<()> {
        let mut r = ifreq(name);
        // SAFETY: writing plain data into the hwaddr member of the union.
        unsafe {
            r.ifr_ifru.ifru_hwaddr.sa_family = libc::ARPHRD_ETHER;
            for (d, s) in r.ifr_ifru.ifru_hwaddr.sa_data.iter_mut().zip(mac) {
                *d = s as libc::c_char;
            }
        }
        ioctl(fd, libc::SIOCSIFHWADDR, &mut r)
    }

    pub(super) fn mtu(fd: RawFd, name: &str) -> io::Result<u32> {
        let mut r = ifreq(name);
        ioctl(fd, libc::SIOCGIFMTU, &mut r)?;
        // SAFETY: SIOCGIFMTU filled the mtu member.
        Ok(unsafe { r.ifr_ifru.ifru_mtu } as u32)
    }

    pub(super) fn set_mtu(fd: RawFd, name: &str, mtu: u32) -> io::Result<()> {
        let mut r = ifreq(name);
        r.ifr_ifru.ifru_mtu = mtu as c_int;
        ioctl(fd, libc::SIOCSIFMTU, &mut r)
    }

    /// Interface flags (IFF_*).
    pub(super) fn flags(fd: RawFd, name: &str) -> io::Result<i32> {
        let mut r = ifreq(name);
        ioctl(fd, libc::SIOCGIFFLAGS, &mut r)?;
        // SAFETY: SIOCGIFFLAGS filled the flags member.
        Ok(unsafe { r.ifr_ifru.ifru_flags } as u16 as i32)
    }

    /// `struct ethtool_cmd` of `<linux/ethtool.h>` (the ETHTOOL_GSET
    /// layout, deprecated but answered by every driver through the
    /// link-ksettings compatibility path).
    #[repr(C)]
    #[derive(Default)]
    struct EthtoolCmd {
        cmd: u32,
        supported: u32,
        advertising: u32,
        speed: u16,
        duplex: u8,
        port: u8,
        phy_address: u8,
        transceiver: u8,
        autoneg: u8,
        mdio_support: u8,
        maxtxpkt: u32,
        maxrxpkt: u32,
        speed_hi: u16,
        eth_tp_mdix: u8,
        eth_tp_mdix_ctrl: u8,
        lp_advertising: u32,
        reserved: [u32; 2],
    }
    const _: () = assert!(size_of::<EthtoolCmd>() == 44);

    /// `ETHTOOL_GSET`, `SPEED_UNKNOWN`, `DUPLEX_*` of `<linux/ethtool.h>`.
    const ETHTOOL_GSET: u32 = 0x1;
    const SPEED_UNKNOWN: u32 = u32::MAX;
    const DUPLEX_HALF: u8 = 0;
    const DUPLEX_FULL: u8 = 1;

    /// Speed in Mbit/s (0 when unknown) and duplex.
    pub(super) fn ethtool_link(fd: RawFd, name: &str) -> io::Result<(u32, Duplex)> {
        let mut cmd = EthtoolCmd {
            cmd: ETHTOOL_GSET,
            ..Default::default()
        };
        let mut r = ifreq(name);
        r.ifr_ifru.ifru_data = (&mut cmd as *mut EthtoolCmd).cast();
        ioctl(fd, libc::SIOCETHTOOL, &mut r)?;
        let speed = (cmd.speed_hi as u32) << 16 | cmd.speed as u32;
        let speed = if speed == SPEED_UNKNOWN || speed == 0xffff {
            0
        } else {
            speed
        };
        let duplex = match cmd.duplex {
            DUPLEX_HALF => Duplex::Half,
            DUPLEX_FULL => Duplex::Full,
            _ => Duplex::Unknown,
        };
        Ok((speed, duplex))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pollux_core::net::{udp_frame, UdpFrameSpec};

    /// The one's-complement sum over the pseudo-header and segment of a
    /// correct TCP/UDP checksum is 0xffff; computed here independently of
    /// `complete_l4_checksum`.
    fn verifies(f: &[u8], l3: usize, v6: bool) -> bool {
        let mut words: Vec<u16> = Vec::new();
        let push = |w: &mut Vec<u16>, b: &[u8]| {
            for c in b.chunks(2) {
                w.push(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
            }
        };
        let (l4, len, proto) = if v6 {
            push(&mut words, &f[l3 + 8..l3 + 40]);
            let len = u16::from_be_bytes([f[l3 + 4], f[l3 + 5]]) as usize;
            (l3 + 40, len, f[l3 + 6])
        } else {
            push(&mut words, &f[l3 + 12..l3 + 20]);
            let total = u16::from_be_bytes([f[l3 + 2], f[l3 + 3]]) as usize;
            (l3 + 20, total - 20, f[l3 + 9])
        };
        words.push(proto as u16);
        words.push(len as u16);
        push(&mut words, &f[l4..l4 + len]);
        let mut s: u32 = words.iter().map(|&w| w as u32).sum();
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s == 0xffff
    }

    #[test]
    fn completes_udp_over_ipv4_with_and_without_a_tag() {
        let mut f = vec![0u8; 75];
        assert!(udp_frame(&mut f, &UdpFrameSpec::default()));
        for (i, b) in f[42..].iter_mut().enumerate() {
            *b = i as u8 * 7 + 1;
        }
        // A partial pseudo-header sum, as the kernel leaves it.
        f[40..42].copy_from_slice(&[0x12, 0x34]);
        assert!(!verifies(&f, 14, false));
        assert!(complete_l4_checksum(&mut f));
        assert!(verifies(&f, 14, false));

        let mut t = f[..12].to_vec();
        t.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
        t.extend_from_slice(&f[12..]);
        t[16 + 40..16 + 42].fill(0xaa);
        assert!(complete_l4_checksum(&mut t));
        assert!(verifies(&t, 18, false));
    }

    #[test]
    fn completes_tcp_over_ipv6() {
        let mut f = vec![0u8; 14 + 40 + 20 + 5];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
        f[14] = 0x60;
        f[18..20].copy_from_slice(&25u16.to_be_bytes());
        f[20] = 6;
        f[21] = 64;
        for (i, b) in f[22..54].iter_mut().enumerate() {
            *b = 0xfe ^ i as u8;
        }
        f[54 + 12] = 5 << 4;
        f[74..].copy_from_slice(b"hello");
        assert!(complete_l4_checksum(&mut f));
        assert!(verifies(&f, 14, true));
    }

    #[test]
    fn leaves_other_frames_alone() {
        let mut arp = vec![0u8; 60];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        let before = arp.clone();
        assert!(!complete_l4_checksum(&mut arp));
        assert_eq!(arp, before);
        // A fragment, a lying total length, a runt: no panic, no change.
        let mut f = vec![0u8; 60];
        assert!(udp_frame(&mut f, &UdpFrameSpec::default()));
        let mut frag = f.clone();
        frag[20] = 0x20; // more fragments
        assert!(!complete_l4_checksum(&mut frag));
        let mut long = f.clone();
        long[16..18].copy_from_slice(&1500u16.to_be_bytes());
        assert!(!complete_l4_checksum(&mut long));
        for n in 0..f.len() {
            let mut cut = f[..n].to_vec();
            let _ = complete_l4_checksum(&mut cut);
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let mut b = bytes;
            let _ = complete_l4_checksum(&mut b);
        }
    }

    #[test]
    fn geometry_checks_the_options() {
        let ok = Geometry::new("t", &AfPacketOpts::default()).unwrap();
        assert_eq!((ok.frames, ok.frame_size), (512, 2048));
        assert_eq!(ok.blocks * ok.frames_per_block, 512);
        for (fs, fc, bs, why) in [
            (2040, 512, 0, "multiple of 16"),
            (64, 512, 0, "at least"),
            (2048, 3, 4096, "multiple of 2"),
            (2048, 512, 1000, "page"),
            (8192, 8, 4096, "hold a 8192-byte frame"),
        ] {
            let o = AfPacketOpts {
                frame_size: fs,
                frame_count: fc,
                block_size: bs,
                ..Default::default()
            };
            let e = Geometry::new("t", &o).unwrap_err().to_string();
            assert!(e.contains(why), "{fs}/{fc}/{bs}: {e}");
        }
    }
}
