//! Register access: a mapped BAR, or a test double that plays the device.

/// Register access: a mapped BAR, or a test double that plays the device.
pub trait Regs {
    /// One 32-bit load.
    fn read32(&self, off: u32) -> u32;
    /// One 32-bit store.
    fn write32(&self, off: u32, val: u32);
}

impl Regs for pollux_vfio::Bar {
    #[inline(always)]
    fn read32(&self, off: u32) -> u32 {
        pollux_vfio::Bar::read32(self, off)
    }
    #[inline(always)]
    fn write32(&self, off: u32, val: u32) {
        pollux_vfio::Bar::write32(self, off, val)
    }
}
