//! Advanced receive and transmit descriptors, and rings of them in DMA
//! memory.
//!
//! Layouts: 82576 datasheet, advanced receive descriptor (read and
//! write-back formats) and advanced transmit data descriptor (`union
//! e1000_adv_rx_desc`, `e1000_adv_tx_desc` in DPDK `e1000_82575.h` and QEMU
//! `igb_regs.h`); the 82599's are the same (`union ixgbe_adv_rx_desc`,
//! `union ixgbe_adv_tx_desc` in Linux ixgbevf `defines.h`). All fields are
//! little endian. The transmit context descriptors differ in one word and
//! stay with their PMDs.
//!
//! The device owns the ring memory as much as the driver does, so no Rust
//! reference to it ever exists: a [`DescRing`] holds the region and reads
//! and writes whole descriptors, or single words, with volatile accesses.

use std::marker::PhantomData;
use std::mem::size_of;

use pollux_core::{DmaRegion, Iova};

/// Advanced receive descriptor. Read format: `qw0` = packet buffer address,
/// `qw1` = header buffer address (0: no header split; its low bit is where
/// the device writes DD). Write-back format: `qw0` = pkt_info (bits 15:0),
/// hdr_info (31:16), RSS hash or IP id/checksum (63:32); `qw1` =
/// status/error (31:0), length (47:32), VLAN tag (63:48).
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdvRxDesc {
    pub qw0: u64,
    pub qw1: u64,
}

const _: () = assert!(size_of::<AdvRxDesc>() == 16);

impl AdvRxDesc {
    /// A descriptor handing the buffer at `pkt_addr` to the device.
    #[inline(always)]
    pub const fn read_format(pkt_addr: Iova) -> AdvRxDesc {
        AdvRxDesc {
            qw0: pkt_addr.0,
            qw1: 0,
        }
    }

    /// A write-back descriptor as the device writes it (tests and benches).
    pub const fn writeback(status_error: u32, len: u16, vlan: u16, pkt_info: u16) -> AdvRxDesc {
        AdvRxDesc {
            qw0: pkt_info as u64,
            qw1: status_error as u64 | (len as u64) << 32 | (vlan as u64) << 48,
        }
    }

    /// A write-back descriptor with an RSS hash (tests and benches).
    pub const fn writeback_rss(
        status_error: u32,
        len: u16,
        vlan: u16,
        pkt_info: u16,
        rss: u32,
    ) -> AdvRxDesc {
        AdvRxDesc {
            qw0: pkt_info as u64 | (rss as u64) << 32,
            qw1: status_error as u64 | (len as u64) << 32 | (vlan as u64) << 48,
        }
    }

    #[inline(always)]
    pub const fn status_error(&self) -> u32 {
        self.qw1 as u32
    }
    #[inline(always)]
    pub const fn length(&self) -> u16 {
        (self.qw1 >> 32) as u16
    }
    #[inline(always)]
    pub const fn vlan(&self) -> u16 {
        (self.qw1 >> 48) as u16
    }
    #[inline(always)]
    pub const fn pkt_info(&self) -> u16 {
        self.qw0 as u16
    }
    /// The RSS hash (`wb.lower.hi_dword.rss`), meaningful when the RSS type
    /// in `pkt_info` is not 0.
    #[inline(always)]
    pub const fn rss_hash(&self) -> u32 {
        (self.qw0 >> 32) as u32
    }
}

/// Advanced transmit data descriptor (read format). Write-back reuses the
/// last word: `olinfo_status` bit 0 becomes DD.
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdvTxDesc {
    pub buffer_addr: u64,
    pub cmd_type_len: u32,
    pub olinfo_status: u32,
}

const _: () = assert!(size_of::<AdvTxDesc>() == 16);

/// A descriptor ring in DMA memory.
pub struct DescRing<D> {
    region: DmaRegion,
    len: u16,
    _d: PhantomData<D>,
}

impl<D: Copy> DescRing<D> {
    /// A ring of `len` descriptors at the start of `region`, zeroed. `None`
    /// when the region is too small or `len` is 0.
    pub fn new(region: DmaRegion, len: u16) -> Option<DescRing<D>> {
        if len == 0 || region.len() < len as usize * size_of::<D>() {
            return None;
        }
        let ring: DescRing<D> = DescRing {
            region,
            len,
            _d: PhantomData,
        };
        for i in 0..len {
            // SAFETY: in-bounds slot of the ring, see `slot`.
            unsafe { ring.slot(i).cast::<[u64; 2]>().write_volatile([0, 0]) };
        }
        Some(ring)
    }

    /// Number of descriptors.
    #[inline(always)]
    pub fn len(&self) -> u16 {
        self.len
    }

    /// Never true (a ring has at least one slot).
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Device address of descriptor 0.
    pub fn iova(&self) -> Iova {
        self.region.iova()
    }

    /// Size in bytes (what RDLEN/TDLEN get).
    pub fn bytes(&self) -> u32 {
        self.len as u32 * size_of::<D>() as u32
    }

    /// Pointer to slot `i`, wrapped into the ring so no index can leave it.
    ///
    /// # Safety
    /// Only for volatile accesses of at most `size_of::<D>()` bytes.
    #[inline(always)]
    unsafe fn slot(&self, i: u16) -> *mut D {
        let i = if i < self.len { i } else { i % self.len };
        // SAFETY: i < len and len * size_of::<D>() <= region.len().
        unsafe { self.region.as_ptr().cast::<D>().add(i as usize) }
    }

    /// Reads descriptor `i`.
    #[inline(always)]
    pub fn read(&self, i: u16) -> D {
        // SAFETY: an in-bounds, aligned (region is page aligned, D is 16
        // bytes) slot; volatile because the device writes it.
        unsafe { self.slot(i).read_volatile() }
    }

    /// Writes descriptor `i`.
    #[inline(always)]
    pub fn write(&self, i: u16, d: D) {
        // SAFETY: as in `read`.
        unsafe { self.slot(i).write_volatile(d) }
    }

    /// Reads the 32-bit word `w` (0..4) of descriptor `i`.
    #[inline(always)]
    pub fn read_word(&self, i: u16, w: usize) -> u32 {
        // SAFETY: as in `read`; w & 3 keeps the word inside the 16-byte slot.
        u32::from_le(unsafe { self.slot(i).cast::<u32>().add(w & 3).read_volatile() })
    }

    /// Writes the 32-bit word `w` (0..4) of descriptor `i`.
    #[inline(always)]
    pub fn write_word(&self, i: u16, w: usize, val: u32) {
        // SAFETY: as in `read_word`.
        unsafe {
            self.slot(i)
                .cast::<u32>()
                .add(w & 3)
                .write_volatile(val.to_le())
        }
    }

    /// Reads the 64-bit half `h` (0 or 1) of descriptor `i`.
    #[inline(always)]
    pub fn read_qword(&self, i: u16, h: usize) -> u64 {
        // SAFETY: as in `read`; h & 1 keeps it inside the slot.
        u64::from_le(unsafe { self.slot(i).cast::<u64>().add(h & 1).read_volatile() })
    }
}

impl<D> std::fmt::Debug for DescRing<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DescRing")
            .field("len", &self.len)
            .field("iova", &self.region.iova())
            .finish()
    }
}
