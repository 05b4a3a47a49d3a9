//! PCI configuration space of a modelled function, as a VF shows it: a
//! type 0 header, memory BARs, a PCI Express capability (endpoint, FLR) and
//! an MSI-X capability; no INTx (Interrupt Pin 0), no I/O BARs.
//!
//! Offsets and bits: PCI Local Bus Specification 3.0 chapter 6 (header,
//! BAR sizing), PCI Express Base Specification 4.0 section 7.5.3 (the PCI
//! Express capability; Device Capabilities bit 28 FLR, Device Control bit
//! 15 Initiate FLR) and section 7.7.2 (MSI-X: Message Control, Table and
//! PBA offset/BIR).
//!
//! The space is 4 KiB (extended configuration space reads as zero: no
//! extended capabilities). Writes go through a per-byte writable mask; a
//! write to a read-only byte is ignored, as on hardware.

/// Standard header offsets (PCI 3.0, 6.1).
pub mod off {
    /// Vendor ID (16 bits).
    pub const VENDOR: usize = 0x00;
    /// Device ID (16 bits).
    pub const DEVICE: usize = 0x02;
    /// Command (16 bits).
    pub const COMMAND: usize = 0x04;
    /// Status (16 bits).
    pub const STATUS: usize = 0x06;
    /// Revision ID.
    pub const REVISION: usize = 0x08;
    /// Class code: programming interface, subclass, base class.
    pub const CLASS: usize = 0x09;
    /// Header type.
    pub const HEADER_TYPE: usize = 0x0e;
    /// BAR 0; BAR n at `BAR0 + 4 n`.
    pub const BAR0: usize = 0x10;
    /// Subsystem vendor ID.
    pub const SUBSYS_VENDOR: usize = 0x2c;
    /// Subsystem ID.
    pub const SUBSYS: usize = 0x2e;
    /// Capabilities pointer.
    pub const CAP_PTR: usize = 0x34;
    /// Interrupt pin (0: none).
    pub const INT_PIN: usize = 0x3d;
}

/// Command register: memory space enable (PCI 3.0, 6.2.2).
pub const CMD_MEMORY: u16 = 1 << 1;
/// Command register: bus master enable; without it a function must not DMA.
pub const CMD_BUS_MASTER: u16 = 1 << 2;
/// Command register: INTx disable.
pub const CMD_INTX_DISABLE: u16 = 1 << 10;
/// Status register: capabilities list present.
pub const STATUS_CAP_LIST: u16 = 1 << 4;

/// Capability ID of PCI Express (PCIe 4.0, 7.5.3.1).
pub const CAP_ID_PCIE: u8 = 0x10;
/// Capability ID of MSI-X (PCIe 4.0, 7.7.2.1).
pub const CAP_ID_MSIX: u8 = 0x11;
/// Where the PCI Express capability sits (60 bytes, v2).
pub const PCIE_CAP: usize = 0x40;
/// Where the MSI-X capability sits (12 bytes).
pub const MSIX_CAP: usize = 0x80;
/// Device Capabilities: Function Level Reset capability (bit 28).
pub const DEVCAP_FLR: u32 = 1 << 28;
/// Device Control: Initiate Function Level Reset (bit 15, reads 0).
pub const DEVCTL_FLR: u16 = 1 << 15;
/// MSI-X Message Control: enable (bit 15).
pub const MSIX_ENABLE: u16 = 1 << 15;
/// MSI-X Message Control: function mask (bit 14).
pub const MSIX_FUNCTION_MASK: u16 = 1 << 14;

/// Size of the configuration space this model serves.
pub const CONFIG_SIZE: usize = 4096;

/// One memory BAR: its size (a power of two, at least 16 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarSpec {
    /// BAR index 0..=5.
    pub index: u8,
    /// Size in bytes.
    pub size: u64,
    /// 64-bit BAR (takes two slots).
    pub is_64: bool,
}

/// Identity and layout of a modelled function.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Class code (base, sub, prog-if), e.g. (0x02, 0x00, 0x00) Ethernet.
    pub class: (u8, u8, u8),
    /// Revision.
    pub revision: u8,
    /// Memory BARs.
    pub bars: Vec<BarSpec>,
    /// MSI-X vectors (1..=2048).
    pub msix_vectors: u16,
    /// BAR holding the MSI-X table and PBA.
    pub msix_bar: u8,
    /// Table offset in that BAR (8-byte aligned).
    pub msix_table: u32,
    /// PBA offset in that BAR (8-byte aligned).
    pub msix_pba: u32,
}

/// Something the function's driver did through config space that the
/// device must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigEvent {
    /// Initiate Function Level Reset was written.
    Flr,
}

/// The configuration space.
#[derive(Debug, Clone)]
pub struct ConfigSpace {
    bytes: Vec<u8>,
    writable: Vec<u8>,
    bars: Vec<BarSpec>,
}

impl ConfigSpace {
    /// The reset state of a function described by `spec`.
    pub fn new(spec: &FunctionSpec) -> Self {
        let mut c = ConfigSpace {
            bytes: vec![0; CONFIG_SIZE],
            writable: vec![0; CONFIG_SIZE],
            bars: spec.bars.clone(),
        };
        c.put16(off::VENDOR, spec.vendor);
        c.put16(off::DEVICE, spec.device);
        c.put16(off::SUBSYS_VENDOR, spec.vendor);
        c.put16(off::SUBSYS, spec.device);
        c.bytes[off::REVISION] = spec.revision;
        c.bytes[off::CLASS] = spec.class.2;
        c.bytes[off::CLASS + 1] = spec.class.1;
        c.bytes[off::CLASS + 2] = spec.class.0;
        c.put16(off::STATUS, STATUS_CAP_LIST);
        c.bytes[off::CAP_PTR] = PCIE_CAP as u8;
        c.bytes[off::INT_PIN] = 0;
        c.mask16(off::COMMAND, CMD_MEMORY | CMD_BUS_MASTER | CMD_INTX_DISABLE);
        for b in &spec.bars {
            let at = off::BAR0 + 4 * b.index as usize;
            let type_bits: u32 = if b.is_64 { 0b100 } else { 0 };
            c.put32(at, type_bits);
            let mask = !(b.size - 1);
            c.mask32(at, mask as u32 & !0xf);
            if b.is_64 {
                c.mask32(at + 4, (mask >> 32) as u32);
            }
        }
        // PCI Express capability v2, endpoint (PCIe 4.0, 7.5.3.2: version
        // 2 in bits 3:0, device/port type 0 in bits 7:4).
        c.bytes[PCIE_CAP] = CAP_ID_PCIE;
        c.bytes[PCIE_CAP + 1] = MSIX_CAP as u8;
        c.put16(PCIE_CAP + 2, 0x0002);
        c.put32(PCIE_CAP + 4, DEVCAP_FLR);
        c.mask16(PCIE_CAP + 8, 0x7fff | DEVCTL_FLR);
        // MSI-X (PCIe 4.0, 7.7.2).
        c.bytes[MSIX_CAP] = CAP_ID_MSIX;
        c.bytes[MSIX_CAP + 1] = 0;
        c.put16(MSIX_CAP + 2, spec.msix_vectors.saturating_sub(1) & 0x7ff);
        c.mask16(MSIX_CAP + 2, MSIX_ENABLE | MSIX_FUNCTION_MASK);
        c.put32(MSIX_CAP + 4, spec.msix_table | spec.msix_bar as u32);
        c.put32(MSIX_CAP + 8, spec.msix_pba | spec.msix_bar as u32);
        c
    }

    /// Reads `data.len()` bytes at `offset`; beyond the space reads 0xff
    /// as an absent register would.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        for (i, d) in data.iter_mut().enumerate() {
            *d = offset
                .checked_add(i as u64)
                .and_then(|o| self.bytes.get(o as usize))
                .copied()
                .unwrap_or(0xff);
        }
    }

    /// Writes through the writable mask; returns what the device must do.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Option<ConfigEvent> {
        for (i, d) in data.iter().enumerate() {
            let Some(o) = offset.checked_add(i as u64).map(|o| o as usize) else {
                break;
            };
            if o >= CONFIG_SIZE {
                break;
            }
            let m = self.writable[o];
            self.bytes[o] = (self.bytes[o] & !m) | (d & m);
        }
        let devctl = PCIE_CAP + 8;
        if self.get16(devctl) & DEVCTL_FLR != 0 {
            // Initiate FLR always reads 0 (PCIe 4.0, 7.5.3.4).
            let v = self.get16(devctl) & !DEVCTL_FLR;
            self.put16(devctl, v);
            return Some(ConfigEvent::Flr);
        }
        None
    }

    /// Back to the reset state (FLR or a vfio-user reset): command, BAR
    /// addresses, device control and MSI-X control clear.
    pub fn reset(&mut self) {
        for o in 0..CONFIG_SIZE {
            let m = self.writable[o];
            self.bytes[o] &= !m;
        }
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        self.get16(off::COMMAND)
    }

    /// Bus mastering on: the device may DMA.
    pub fn bus_master(&self) -> bool {
        self.command() & CMD_BUS_MASTER != 0
    }

    /// MSI-X Message Control.
    pub fn msix_control(&self) -> u16 {
        self.get16(MSIX_CAP + 2)
    }

    /// The BARs.
    pub fn bars(&self) -> &[BarSpec] {
        &self.bars
    }

    fn get16(&self, o: usize) -> u16 {
        u16::from_le_bytes([self.bytes[o], self.bytes[o + 1]])
    }
    fn put16(&mut self, o: usize, v: u16) {
        self.bytes[o..o + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn put32(&mut self, o: usize, v: u32) {
        self.bytes[o..o + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn mask16(&mut self, o: usize, m: u16) {
        self.writable[o..o + 2].copy_from_slice(&m.to_le_bytes());
    }
    fn mask32(&mut self, o: usize, m: u32) {
        self.writable[o..o + 4].copy_from_slice(&m.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> FunctionSpec {
        FunctionSpec {
            vendor: 0x8086,
            device: 0x10ed,
            class: (0x02, 0x00, 0x00),
            revision: 1,
            bars: vec![
                BarSpec {
                    index: 0,
                    size: 0x4000,
                    is_64: true,
                },
                BarSpec {
                    index: 3,
                    size: 0x4000,
                    is_64: true,
                },
            ],
            msix_vectors: 3,
            msix_bar: 3,
            msix_table: 0,
            msix_pba: 0x2000,
        }
    }

    fn rd32(c: &ConfigSpace, o: u64) -> u32 {
        let mut b = [0u8; 4];
        c.read(o, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn header_and_capabilities_read_as_a_vf_shows_them() {
        let c = ConfigSpace::new(&spec());
        assert_eq!(rd32(&c, 0), 0x10ed_8086);
        assert_eq!(rd32(&c, 8) >> 8, 0x02_00_00, "class: Ethernet controller");
        assert_eq!(c.bytes[off::INT_PIN], 0, "no INTx");
        assert_ne!(rd32(&c, 4) >> 16 & STATUS_CAP_LIST as u32, 0);
        // Walk the capability list from the pointer, as a driver does.
        let mut at = c.bytes[off::CAP_PTR] as usize;
        let mut ids = Vec::new();
        while at != 0 {
            ids.push(c.bytes[at]);
            at = c.bytes[at + 1] as usize;
        }
        assert_eq!(ids, vec![CAP_ID_PCIE, CAP_ID_MSIX]);
        assert_eq!(rd32(&c, PCIE_CAP as u64 + 4) & DEVCAP_FLR, DEVCAP_FLR);
        assert_eq!(rd32(&c, MSIX_CAP as u64) >> 16 & 0x7ff, 2, "3 vectors: N-1");
        assert_eq!(rd32(&c, MSIX_CAP as u64 + 8), 0x2000 | 3, "PBA in BAR 3");
        assert_eq!(rd32(&c, 0x100), 0, "no extended capabilities");
        let mut b = [0u8; 4];
        c.read(4094, &mut b);
        assert_eq!(b, [0, 0, 0xff, 0xff], "beyond the space reads as absent");
    }

    #[test]
    fn bar_sizing_and_read_only_fields() {
        let mut c = ConfigSpace::new(&spec());
        // BAR sizing (PCI 3.0, 6.2.5.1): all ones, read back the mask.
        c.write(0x10, &u32::MAX.to_le_bytes());
        c.write(0x14, &u32::MAX.to_le_bytes());
        assert_eq!(rd32(&c, 0x10), 0xffff_c004, "16 KiB, 64-bit, memory");
        assert_eq!(rd32(&c, 0x14), 0xffff_ffff);
        c.write(0x10, &0xfe80_0000u32.to_le_bytes());
        assert_eq!(rd32(&c, 0x10), 0xfe80_0004);
        assert_eq!(rd32(&c, 0x18), 0, "BAR 2 does not exist");
        c.write(0x18, &u32::MAX.to_le_bytes());
        assert_eq!(rd32(&c, 0x18), 0, "and stays 0");
        // IDs do not change.
        c.write(0, &[0, 0, 0, 0]);
        assert_eq!(rd32(&c, 0), 0x10ed_8086);
        // Command: memory and bus master stick; others do not.
        c.write(4, &0xffffu16.to_le_bytes());
        assert_eq!(c.command(), CMD_MEMORY | CMD_BUS_MASTER | CMD_INTX_DISABLE);
        assert!(c.bus_master());
        c.write(MSIX_CAP as u64 + 2, &0xffffu16.to_le_bytes());
        assert_eq!(c.msix_control(), MSIX_ENABLE | MSIX_FUNCTION_MASK | 2);
        // Writes beyond the space or wrapping are ignored, not a panic.
        c.write(4095, &[1, 2, 3]);
        c.write(u64::MAX, &[1, 2, 3]);
    }

    #[test]
    fn flr_is_reported_reads_zero_and_reset_clears_the_driver_state() {
        let mut c = ConfigSpace::new(&spec());
        c.write(4, &(CMD_MEMORY | CMD_BUS_MASTER).to_le_bytes());
        c.write(MSIX_CAP as u64 + 2, &MSIX_ENABLE.to_le_bytes());
        assert_eq!(c.write(PCIE_CAP as u64 + 8, &0x0010u16.to_le_bytes()), None);
        assert_eq!(
            c.write(PCIE_CAP as u64 + 8, &(DEVCTL_FLR | 0x10).to_le_bytes()),
            Some(ConfigEvent::Flr)
        );
        assert_eq!(rd32(&c, PCIE_CAP as u64 + 8) & DEVCTL_FLR as u32, 0);
        c.reset();
        assert_eq!(c.command(), 0);
        assert_eq!(c.msix_control() & MSIX_ENABLE, 0);
        assert_eq!(c.msix_control() & 0x7ff, 2, "table size is read-only");
        assert_eq!(rd32(&c, 0), 0x10ed_8086);
    }
}
