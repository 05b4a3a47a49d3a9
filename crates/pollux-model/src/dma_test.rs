//! `dma-test`: the host's own test device. A driver writes a buffer's IOVA,
//! a length, a seed and an MSI-X vector into BAR 0 and rings the doorbell;
//! the model writes a pattern into that buffer by DMA, counts it and raises
//! the vector. It proves the host (config space, BARs, DMA maps, MSI-X)
//! before any NIC model exists.
//!
//! The IDs are 1234:7011: vendor 0x1234 is the informal ID QEMU's own test
//! devices use (edu is 1234:11e8), and no Linux driver claims this device,
//! so the guest leaves it for vfio-pci.
//!
//! BAR 0 (4 KiB, 32-bit little-endian registers):
//!
//! | offset | register | |
//! | --- | --- | --- |
//! | 0x00 | MAGIC | reads 0x504c_5844 ("PLXD") |
//! | 0x04 | STATUS | bit 0 done, bit 1 error (cleared by the doorbell) |
//! | 0x08 / 0x0c | ADDR_LO / ADDR_HI | IOVA of the buffer |
//! | 0x10 | LEN | bytes to write, at most 1 MiB |
//! | 0x14 | SEED | pattern seed |
//! | 0x18 | VECTOR | MSI-X vector raised when done |
//! | 0x1c | DOORBELL | write 1: do the DMA |
//! | 0x20 | DONE | DMAs completed (read-only) |
//!
//! Its wire (if given one) echoes every frame back. The pattern: byte `i` is `seed.wrapping_add(i * 7)` truncated to 8 bits
//! ([`pattern`]). MSI-X: 2 vectors, table at 0x800 and PBA at 0xc00 of BAR 0.

use crate::model::{Ctx, Model};
use crate::pci::{BarSpec, FunctionSpec};

/// Register offsets of BAR 0.
pub mod reg {
    /// Magic.
    pub const MAGIC: u64 = 0x00;
    /// Status.
    pub const STATUS: u64 = 0x04;
    /// Buffer IOVA, low half.
    pub const ADDR_LO: u64 = 0x08;
    /// Buffer IOVA, high half.
    pub const ADDR_HI: u64 = 0x0c;
    /// Length.
    pub const LEN: u64 = 0x10;
    /// Seed.
    pub const SEED: u64 = 0x14;
    /// Vector.
    pub const VECTOR: u64 = 0x18;
    /// Doorbell.
    pub const DOORBELL: u64 = 0x1c;
    /// Completed DMAs.
    pub const DONE: u64 = 0x20;
}

/// What MAGIC reads.
pub const MAGIC: u32 = 0x504c_5844;
/// STATUS: the last doorbell's DMA completed.
pub const STATUS_DONE: u32 = 1;
/// STATUS: the last doorbell's DMA was refused (see the violation log).
pub const STATUS_ERROR: u32 = 2;
/// Largest DMA one doorbell does.
pub const MAX_LEN: u32 = 1 << 20;
/// Vendor and device ID.
pub const ID: (u16, u16) = (0x1234, 0x7011);

/// Byte `i` of the pattern for `seed`.
pub fn pattern(seed: u32, i: usize) -> u8 {
    seed.wrapping_add((i as u32).wrapping_mul(7)) as u8
}

/// The dma-test device.
#[derive(Debug, Default)]
pub struct DmaTest {
    id: Option<(u16, u16)>,
    status: u32,
    addr: u64,
    len: u32,
    seed: u32,
    vector: u32,
    done: u32,
    echoed: u64,
}

impl DmaTest {
    /// With its default IDs.
    pub fn new() -> Self {
        Self::default()
    }

    /// With other IDs (`--device-id`).
    pub fn with_id(vendor: u16, device: u16) -> Self {
        DmaTest {
            id: Some((vendor, device)),
            ..Self::default()
        }
    }

    /// DMAs completed since the last reset.
    pub fn done(&self) -> u32 {
        self.done
    }

    fn ring(&mut self, ctx: &mut Ctx<'_>) {
        self.status = 0;
        if self.len > MAX_LEN {
            ctx.log.log(
                format!("LEN = {:#x}", self.len),
                format!("beyond dma-test's {MAX_LEN:#x}-byte maximum"),
            );
            self.status = STATUS_ERROR;
            return;
        }
        let buf: Vec<u8> = (0..self.len as usize)
            .map(|i| pattern(self.seed, i))
            .collect();
        if ctx.dma_write(self.addr, &buf).is_err() {
            self.status = STATUS_ERROR;
            return;
        }
        self.done = self.done.wrapping_add(1);
        self.status = STATUS_DONE;
        ctx.interrupt(self.vector as usize);
    }
}

impl Model for DmaTest {
    fn spec(&self) -> FunctionSpec {
        let (vendor, device) = self.id.unwrap_or(ID);
        FunctionSpec {
            vendor,
            device,
            // "Other" system peripheral: no class driver binds it.
            class: (0x08, 0x80, 0x00),
            revision: 0,
            bars: vec![BarSpec {
                index: 0,
                size: 4096,
                is_64: false,
            }],
            msix_vectors: 2,
            msix_bar: 0,
            msix_table: 0x800,
            msix_pba: 0xc00,
        }
    }

    fn bar_read(&mut self, _ctx: &mut Ctx<'_>, bar: u8, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if bar != 0 || data.len() != 4 || offset % 4 != 0 {
            return;
        }
        let v = match offset {
            reg::MAGIC => MAGIC,
            reg::STATUS => self.status,
            reg::ADDR_LO => self.addr as u32,
            reg::ADDR_HI => (self.addr >> 32) as u32,
            reg::LEN => self.len,
            reg::SEED => self.seed,
            reg::VECTOR => self.vector,
            reg::DONE => self.done,
            _ => 0,
        };
        data.copy_from_slice(&v.to_le_bytes());
    }

    fn bar_write(&mut self, ctx: &mut Ctx<'_>, bar: u8, offset: u64, data: &[u8]) {
        let Ok(b) = <[u8; 4]>::try_from(data) else {
            ctx.log.log(
                format!("BAR {bar} write of {} bytes at {offset:#x}", data.len()),
                "dma-test registers are 32-bit",
            );
            return;
        };
        if bar != 0 || offset % 4 != 0 {
            ctx.log.log(
                format!("BAR {bar} write at {offset:#x}"),
                "unaligned or outside the registers",
            );
            return;
        }
        let v = u32::from_le_bytes(b);
        match offset {
            reg::ADDR_LO => self.addr = (self.addr & !0xffff_ffff) | v as u64,
            reg::ADDR_HI => self.addr = (self.addr & 0xffff_ffff) | (v as u64) << 32,
            reg::LEN => self.len = v,
            reg::SEED => self.seed = v,
            reg::VECTOR => self.vector = v,
            reg::DOORBELL if v == 1 => self.ring(ctx),
            reg::MAGIC | reg::STATUS | reg::DONE => ctx.log.log(
                format!("write {v:#x} to read-only register {offset:#x}"),
                "dma-test register table (crate docs)",
            ),
            _ => {}
        }
    }

    /// dma-test's wire: every frame that arrives goes straight back out,
    /// so the host's wire and link handling can be tested end to end.
    fn frame_in(&mut self, ctx: &mut Ctx<'_>, frame: &[u8]) -> bool {
        self.echoed += 1;
        ctx.send_frame(frame);
        true
    }

    /// `pf reset`: what a PF-initiated reset does to dma-test's registers.
    fn pf_event(&mut self, _ctx: &mut Ctx<'_>, event: &str) -> Result<(), String> {
        match event {
            "reset" => {
                self.reset();
                Ok(())
            }
            _ => Err(format!(
                "dma-test knows the PF event \"reset\" only, not {event:?}"
            )),
        }
    }

    fn counters(&self) -> Vec<(String, u64)> {
        vec![
            ("dma_done".into(), self.done as u64),
            ("frames_echoed".into(), self.echoed),
        ]
    }

    fn reset(&mut self) {
        *self = DmaTest {
            echoed: self.echoed,
            id: self.id,
            ..DmaTest::default()
        };
    }
}
