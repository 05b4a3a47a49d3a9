//! Receive, transmit and admin queue descriptors, and rings of them in DMA
//! memory.
//!
//! Layouts: DPDK `drivers/common/iavf/iavf_type.h` and Linux
//! `iavf_type.h` (`union iavf_32byte_rx_desc`, `struct iavf_tx_desc`),
//! `iavf_adminq_cmd.h` (`struct iavf_aq_desc`). All fields are little
//! endian.
//!
//! The device owns the ring memory as much as the driver does, so no Rust
//! reference to it ever exists: a [`DescRing`] holds the region and reads
//! and writes whole descriptors, or single qwords, with volatile accesses.

use std::marker::PhantomData;
use std::mem::size_of;

use pollux_core::{DmaRegion, Iova};

use crate::regs;

/// Legacy 32-byte receive descriptor. Read format: `qw0` = packet buffer
/// address, `qw1` = header buffer address (0: no header split; bit 0 is
/// where the device writes DD), `qw2`/`qw3` reserved. Write-back:
/// `qw0` = mirroring status (15:0), L2TAG1 (31:16), RSS hash (63:32);
/// `qw1` = status (18:0), error (26:19), packet type (37:30), packet
/// buffer length (51:38); `qw2` = extended status, L2TAG2s; `qw3` = flex
/// bytes / flow director id.
#[repr(C, align(32))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxDesc {
    pub qw0: u64,
    pub qw1: u64,
    pub qw2: u64,
    pub qw3: u64,
}

const _: () = assert!(size_of::<RxDesc>() == 32);

impl RxDesc {
    /// A descriptor handing the buffer at `pkt_addr` to the device.
    #[inline(always)]
    pub const fn read_format(pkt_addr: Iova) -> RxDesc {
        RxDesc {
            qw0: pkt_addr.0,
            qw1: 0,
            qw2: 0,
            qw3: 0,
        }
    }

    /// A write-back descriptor as the device writes it (tests, benches and
    /// the software device): `status` holds status and error bits of qword
    /// 1; DD is not added.
    pub const fn writeback(status: u64, len: u16, ptype: u8, l2tag1: u16, rss: u32) -> RxDesc {
        RxDesc {
            qw0: (l2tag1 as u64) << 16 | (rss as u64) << 32,
            qw1: status
                | (ptype as u64) << regs::RXD_PTYPE_SHIFT
                | ((len as u64) << regs::RXD_LEN_PBUF_SHIFT) & regs::RXD_LEN_PBUF_MASK,
            qw2: 0,
            qw3: 0,
        }
    }

    #[inline(always)]
    pub const fn length(&self) -> u16 {
        ((self.qw1 & regs::RXD_LEN_PBUF_MASK) >> regs::RXD_LEN_PBUF_SHIFT) as u16
    }
    #[inline(always)]
    pub const fn ptype(&self) -> u8 {
        ((self.qw1 & regs::RXD_PTYPE_MASK) >> regs::RXD_PTYPE_SHIFT) as u8
    }
    #[inline(always)]
    pub const fn l2tag1(&self) -> u16 {
        (self.qw0 >> 16) as u16
    }
    #[inline(always)]
    pub const fn rss_hash(&self) -> u32 {
        (self.qw0 >> 32) as u32
    }
}

/// Transmit data descriptor: buffer address, and DTYPE (3:0), CMD (13:4),
/// OFFSET (33:16), TX_BUF_SZ (47:34), L2TAG1 (63:48). The device writes
/// DTYPE 0xF (DESC_DONE) into a descriptor with RS once done with it.
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxDesc {
    pub buffer_addr: u64,
    pub cmd_type_offset_bsz: u64,
}

const _: () = assert!(size_of::<TxDesc>() == 16);

impl TxDesc {
    /// A data descriptor.
    #[inline(always)]
    pub const fn data(addr: u64, cmd: u64, offset: u64, size: usize, l2tag1: u16) -> TxDesc {
        TxDesc {
            buffer_addr: addr,
            cmd_type_offset_bsz: regs::TXD_DTYPE_DATA
                | cmd << regs::TXD_CMD_SHIFT
                | offset << regs::TXD_OFFSET_SHIFT
                | (size as u64 & regs::TXD_MAX_BUF as u64) << regs::TXD_BUF_SZ_SHIFT
                | (l2tag1 as u64) << regs::TXD_L2TAG1_SHIFT,
        }
    }
    #[inline(always)]
    pub const fn dtype(&self) -> u64 {
        self.cmd_type_offset_bsz & regs::TXD_DTYPE_MASK
    }
    #[inline(always)]
    pub const fn cmd(&self) -> u64 {
        (self.cmd_type_offset_bsz >> regs::TXD_CMD_SHIFT) & 0x3FF
    }
    #[inline(always)]
    pub const fn offset(&self) -> u64 {
        (self.cmd_type_offset_bsz >> regs::TXD_OFFSET_SHIFT) & 0x3FFFF
    }
    #[inline(always)]
    pub const fn buf_size(&self) -> usize {
        ((self.cmd_type_offset_bsz >> regs::TXD_BUF_SZ_SHIFT) & regs::TXD_MAX_BUF as u64) as usize
    }
    #[inline(always)]
    pub const fn l2tag1(&self) -> u16 {
        (self.cmd_type_offset_bsz >> regs::TXD_L2TAG1_SHIFT) as u16
    }
}

/// A 32-byte admin queue descriptor slot (see [`crate::proto::AqDesc`] for
/// its fields).
#[repr(C, align(32))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AqSlot(pub [u64; 4]);

const _: () = assert!(size_of::<AqSlot>() == 32);

/// A descriptor ring in DMA memory.
pub struct DescRing<D> {
    region: DmaRegion,
    len: u16,
    _d: PhantomData<D>,
}

impl<D: Copy> DescRing<D> {
    /// A ring of `len` descriptors at the start of `region`, zeroed. `None`
    /// when the region is too small, `len` is 0, or the region is not
    /// aligned for `D`.
    pub fn new(region: DmaRegion, len: u16) -> Option<DescRing<D>> {
        if len == 0
            || region.len() < len as usize * size_of::<D>()
            || region.as_ptr() as usize % std::mem::align_of::<D>() != 0
            || size_of::<D>() % 8 != 0
        {
            return None;
        }
        let ring: DescRing<D> = DescRing {
            region,
            len,
            _d: PhantomData,
        };
        for i in 0..len {
            for h in 0..size_of::<D>() / 8 {
                ring.write_qword(i, h, 0);
            }
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

    /// Size in bytes.
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
        // SAFETY: an in-bounds slot aligned for D (checked in `new`);
        // volatile because the device writes it.
        unsafe { self.slot(i).read_volatile() }
    }

    /// Writes descriptor `i`.
    #[inline(always)]
    pub fn write(&self, i: u16, d: D) {
        // SAFETY: as in `read`.
        unsafe { self.slot(i).write_volatile(d) }
    }

    /// Reads qword `h` of descriptor `i` (`h` wraps inside the slot).
    #[inline(always)]
    pub fn read_qword(&self, i: u16, h: usize) -> u64 {
        let h = h % (size_of::<D>() / 8);
        // SAFETY: as in `read`; h < size_of::<D>() / 8 keeps the 8-byte
        // access inside the slot, which is 8-byte aligned.
        u64::from_le(unsafe { self.slot(i).cast::<u64>().add(h).read_volatile() })
    }

    /// Writes qword `h` of descriptor `i`.
    #[inline(always)]
    pub fn write_qword(&self, i: u16, h: usize, v: u64) {
        let h = h % (size_of::<D>() / 8);
        // SAFETY: as in `read_qword`.
        unsafe { self.slot(i).cast::<u64>().add(h).write_volatile(v.to_le()) }
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

#[cfg(test)]
mod tests {
    use super::*;
    use pollux_core::{AnonMemory, HugePages, MemoryProvider};

    #[test]
    fn rx_writeback_fields_decode() {
        let d = RxDesc::writeback(
            regs::RXD_STATUS_DD | regs::RXD_STATUS_EOF | regs::RXD_STATUS_L2TAG1P,
            1514,
            regs::PTYPE_IPV4_TCP,
            0x0064,
            0xdead_beef,
        );
        assert_eq!(d.length(), 1514);
        assert_eq!(d.ptype(), 26);
        assert_eq!(d.l2tag1(), 0x64);
        assert_eq!(d.rss_hash(), 0xdead_beef);
        assert_eq!(d.qw1 & 0x7, 0x7);
        assert_eq!(RxDesc::writeback(0, 0x3FFF, 0, 0, 0).length(), 0x3FFF);
    }

    #[test]
    fn tx_fields_encode() {
        let d = TxDesc::data(0x1000, regs::TXD_CMD_EOP | regs::TXD_CMD_RS, 7, 60, 100);
        assert_eq!(d.dtype(), 0);
        assert_eq!(d.cmd(), 3);
        assert_eq!(d.offset(), 7);
        assert_eq!(d.buf_size(), 60);
        assert_eq!(d.l2tag1(), 100);
        assert_eq!(d.cmd_type_offset_bsz >> 34 & 0x3FFF, 60);
    }

    #[test]
    fn rings_are_zeroed_and_wrap_indices() {
        let r = AnonMemory::new(HugePages::Never).allocate(4096).unwrap();
        let ring: DescRing<RxDesc> = DescRing::new(r, 8).unwrap();
        assert_eq!(ring.bytes(), 256);
        ring.write(9, RxDesc::read_format(Iova(0x42)));
        assert_eq!(ring.read(1).qw0, 0x42, "index 9 of 8 is slot 1");
        ring.write_qword(2, 5, 7);
        assert_eq!(ring.read(2).qw1, 7, "qword 5 of 4 is qword 1");
        let small = AnonMemory::new(HugePages::Never).allocate(64).unwrap();
        assert!(DescRing::<RxDesc>::new(small, 4096).is_none());
    }
}
