//! [`Mbuf`]: a handle to one packet buffer.
//!
//! The handle is one pointer wide. It points at a header kept in ordinary
//! memory beside the pool (never in device-visible memory); the header holds
//! the buffer's virtual address and IOVA, the data window and the packet's
//! metadata. Whoever holds the `Mbuf` owns the buffer: a driver that gives a
//! buffer to its device keeps the `Mbuf` in its software ring until the
//! device hands the buffer back, so application code can never hold a
//! `&[u8]` over memory the device is writing. Dropping an `Mbuf` returns the
//! buffer to its pool.

use std::fmt;
use std::ptr::NonNull;

use crate::mem::Iova;
use crate::mempool::PoolInner;

/// Headroom reserved in front of the data of a fresh mbuf (DPDK's
/// `RTE_PKTMBUF_HEADROOM`).
pub const HEADROOM: u16 = 128;

bitflags::bitflags! {
    /// What the receiver found out about a packet.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct RxFlags: u32 {
        /// `vlan_tci` holds a VLAN tag the NIC stripped.
        const VLAN_STRIPPED = 1 << 0;
        /// `rss_hash` is valid.
        const RSS_HASH = 1 << 1;
        /// The IPv4 header checksum was checked and is good.
        const IP_CKSUM_GOOD = 1 << 2;
        /// The IPv4 header checksum was checked and is bad.
        const IP_CKSUM_BAD = 1 << 3;
        /// The TCP/UDP checksum was checked and is good.
        const L4_CKSUM_GOOD = 1 << 4;
        /// The TCP/UDP checksum was checked and is bad.
        const L4_CKSUM_BAD = 1 << 5;
        /// The frame arrived with an error the NIC reported (CRC, length).
        const FRAME_ERROR = 1 << 6;
    }
}

bitflags::bitflags! {
    /// Offloads asked of the transmitter for one packet.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct TxFlags: u32 {
        /// Insert `vlan_tci` as an 802.1Q tag.
        const VLAN_INSERT = 1 << 0;
        /// Compute the IPv4 header checksum (needs `l2_len`, `l3_len`).
        const IPV4_CKSUM = 1 << 1;
        /// Compute the TCP checksum (needs `l2_len`, `l3_len`).
        const TCP_CKSUM = 1 << 2;
        /// Compute the UDP checksum (needs `l2_len`, `l3_len`).
        const UDP_CKSUM = 1 << 3;
        /// The packet is IPv4 (for the L4 checksum pseudo-header).
        const IPV4 = 1 << 4;
        /// The packet is IPv6.
        const IPV6 = 1 << 5;
    }
}

bitflags::bitflags! {
    /// Protocol layers a receiver recognised.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct PacketType: u32 {
        const ETHER = 1 << 0;
        const VLAN = 1 << 1;
        const IPV4 = 1 << 2;
        const IPV4_EXT = 1 << 3;
        const IPV6 = 1 << 4;
        const IPV6_EXT = 1 << 5;
        const TCP = 1 << 6;
        const UDP = 1 << 7;
        const SCTP = 1 << 8;
        const ARP = 1 << 9;
        const SLOW = 1 << 10;
    }
}

/// Receive metadata of a packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxMeta {
    /// Port the packet arrived on.
    pub port: u16,
    /// Queue it arrived on.
    pub queue: u16,
    /// Stripped VLAN tag, valid with [`RxFlags::VLAN_STRIPPED`].
    pub vlan_tci: u16,
    /// Status flags.
    pub flags: RxFlags,
    /// RSS hash, valid with [`RxFlags::RSS_HASH`].
    pub rss_hash: u32,
    /// Recognised layers.
    pub packet_type: PacketType,
}

/// Transmit offload requests of a packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxOffload {
    /// What to offload.
    pub flags: TxFlags,
    /// Tag to insert with [`TxFlags::VLAN_INSERT`].
    pub vlan_tci: u16,
    /// Length of the L2 header (Ethernet plus any VLAN tags).
    pub l2_len: u8,
    /// Length of the L3 header.
    pub l3_len: u16,
    /// Length of the L4 header.
    pub l4_len: u8,
}

/// The header behind an [`Mbuf`]: one cache line in ordinary memory.
#[repr(C, align(64))]
pub(crate) struct MbufHeader {
    pub(crate) buf_addr: *mut u8,
    pub(crate) buf_iova: Iova,
    pub(crate) pool: *const PoolInner,
    pub(crate) data_off: u16,
    pub(crate) data_len: u16,
    pub(crate) buf_len: u16,
    pub(crate) rx: RxMeta,
    pub(crate) tx: TxOffload,
}

const _: () = assert!(std::mem::size_of::<MbufHeader>() == 64);

impl MbufHeader {
    /// Back to the state of a freshly allocated mbuf.
    #[inline(always)]
    pub(crate) fn reset(&mut self) {
        self.data_off = HEADROOM.min(self.buf_len);
        self.data_len = 0;
        self.rx = RxMeta::default();
        self.tx = TxOffload::default();
    }
}

/// An owned packet buffer. See the [module docs](self).
pub struct Mbuf(NonNull<MbufHeader>);

// SAFETY: an Mbuf is the unique owner of its header and buffer; moving it to
// another thread moves that ownership. Its pool is thread-safe.
unsafe impl Send for Mbuf {}
// SAFETY: `&Mbuf` only gives shared reads of the header and buffer.
unsafe impl Sync for Mbuf {}

impl Mbuf {
    /// Wraps a header the pool has just handed out.
    ///
    /// # Safety
    /// `hdr` must be a header of a live pool that no other `Mbuf` holds.
    #[inline(always)]
    pub(crate) unsafe fn from_header(hdr: NonNull<MbufHeader>) -> Mbuf {
        Mbuf(hdr)
    }

    #[inline(always)]
    fn hdr(&self) -> &MbufHeader {
        // SAFETY: the header is valid while its pool lives, and the pool's
        // memory outlives every mbuf (a pool dropped with mbufs outstanding
        // is leaked, see `Mempool`). This Mbuf owns the header exclusively.
        unsafe { self.0.as_ref() }
    }

    #[inline(always)]
    fn hdr_mut(&mut self) -> &mut MbufHeader {
        // SAFETY: as in `hdr`, and `&mut self` makes the access exclusive.
        unsafe { self.0.as_mut() }
    }

    /// The packet bytes.
    #[inline]
    pub fn data(&self) -> &[u8] {
        let h = self.hdr();
        // SAFETY: data_off + data_len <= buf_len (every setter keeps this),
        // the buffer is initialised (pools zero their memory), and this
        // mbuf's owner is its only user: a device only writes a buffer while
        // its driver holds the Mbuf out of the application's reach.
        unsafe {
            std::slice::from_raw_parts(h.buf_addr.add(h.data_off as usize), h.data_len as usize)
        }
    }

    /// The packet bytes, mutably.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let h = self.hdr();
        // SAFETY: as in `data`, with `&mut self` for exclusivity.
        unsafe {
            std::slice::from_raw_parts_mut(h.buf_addr.add(h.data_off as usize), h.data_len as usize)
        }
    }

    /// Packet length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.hdr().data_len as usize
    }

    /// True for a zero-length packet.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.hdr().data_len == 0
    }

    /// Bytes free in front of the data.
    #[inline]
    pub fn headroom(&self) -> usize {
        self.hdr().data_off as usize
    }

    /// Bytes free after the data.
    #[inline]
    pub fn tailroom(&self) -> usize {
        let h = self.hdr();
        (h.buf_len - h.data_off - h.data_len) as usize
    }

    /// Size of the whole buffer.
    #[inline]
    pub fn buf_len(&self) -> usize {
        self.hdr().buf_len as usize
    }

    /// Sets the packet length, keeping the start. Returns false (and changes
    /// nothing) when it would not fit in the buffer.
    #[inline]
    pub fn set_len(&mut self, len: usize) -> bool {
        let h = self.hdr_mut();
        if len > (h.buf_len - h.data_off) as usize {
            return false;
        }
        h.data_len = len as u16;
        true
    }

    /// Grows the packet at the back by `n` bytes and returns them.
    #[inline]
    pub fn append(&mut self, n: usize) -> Option<&mut [u8]> {
        let old = self.len();
        if n > self.tailroom() {
            return None;
        }
        self.hdr_mut().data_len += n as u16;
        Some(&mut self.data_mut()[old..])
    }

    /// Grows the packet at the front by `n` bytes and returns them.
    #[inline]
    pub fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.headroom() {
            return None;
        }
        let h = self.hdr_mut();
        h.data_off -= n as u16;
        h.data_len += n as u16;
        Some(&mut self.data_mut()[..n])
    }

    /// Removes `n` bytes from the front. False when the packet is shorter.
    #[inline]
    pub fn adj(&mut self, n: usize) -> bool {
        let h = self.hdr_mut();
        if n > h.data_len as usize {
            return false;
        }
        h.data_off += n as u16;
        h.data_len -= n as u16;
        true
    }

    /// Removes `n` bytes from the back. False when the packet is shorter.
    #[inline]
    pub fn trim(&mut self, n: usize) -> bool {
        let h = self.hdr_mut();
        if n > h.data_len as usize {
            return false;
        }
        h.data_len -= n as u16;
        true
    }

    /// Replaces the packet with a copy of `bytes`, keeping the headroom.
    /// False when it does not fit.
    pub fn copy_from(&mut self, bytes: &[u8]) -> bool {
        if !self.set_len(bytes.len()) {
            return false;
        }
        self.data_mut().copy_from_slice(bytes);
        true
    }

    /// Device address of the start of the buffer.
    #[inline]
    pub fn buf_iova(&self) -> Iova {
        self.hdr().buf_iova
    }

    /// Device address of the first packet byte.
    #[inline]
    pub fn data_iova(&self) -> Iova {
        let h = self.hdr();
        h.buf_iova.offset(h.data_off as u64)
    }

    /// Moves the data start to `off` bytes into the buffer and sets the
    /// length, for drivers that received into a known offset. False when it
    /// does not fit.
    #[inline]
    pub fn set_window(&mut self, off: usize, len: usize) -> bool {
        let h = self.hdr_mut();
        if off + len > h.buf_len as usize {
            return false;
        }
        h.data_off = off as u16;
        h.data_len = len as u16;
        true
    }

    /// Receive metadata.
    #[inline]
    pub fn rx(&self) -> &RxMeta {
        &self.hdr().rx
    }

    /// Receive metadata, mutably (drivers fill it in).
    #[inline]
    pub fn rx_mut(&mut self) -> &mut RxMeta {
        &mut self.hdr_mut().rx
    }

    /// Transmit offload requests.
    #[inline]
    pub fn tx(&self) -> &TxOffload {
        &self.hdr().tx
    }

    /// Transmit offload requests, mutably.
    #[inline]
    pub fn tx_mut(&mut self) -> &mut TxOffload {
        &mut self.hdr_mut().tx
    }

    /// An identity of the pool this mbuf came from: equal for two mbufs
    /// of one pool, stable while the pool lives. For drivers that check a
    /// pool once and remember the answer.
    #[inline]
    pub fn pool_id(&self) -> usize {
        self.hdr().pool as usize
    }

    /// The IOVA range of the memory of this mbuf's pool (what a driver
    /// checks against its IOMMU domain before giving the buffer to its
    /// device).
    pub fn pool_iova_range(&self) -> (Iova, usize) {
        // SAFETY: the pool outlives its mbufs (see `hdr`); its region is
        // set at creation and never changes.
        let region = unsafe { &(*self.hdr().pool).region };
        (region.iova(), region.len())
    }

    /// Whether this mbuf came from `pool`.
    pub fn is_from(&self, pool: &crate::Mempool) -> bool {
        std::ptr::eq(self.hdr().pool, pool.inner_ptr())
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        let pool = self.hdr().pool;
        // SAFETY: the pool outlives its mbufs (see `hdr`), and this header
        // is owned by this Mbuf, which is going away.
        unsafe { (*pool).put(self.0) };
    }
}

impl fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mbuf")
            .field("len", &self.len())
            .field("headroom", &self.headroom())
            .field("iova", &self.data_iova())
            .field("rx", self.rx())
            .field("tx", self.tx())
            .finish()
    }
}
