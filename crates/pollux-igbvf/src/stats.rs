//! Accumulating the VF's 32-bit statistics registers into 64-bit counters.
//!
//! The VF counters (VFGPRC, VFGPTC, VFGORC, VFGOTC, VFMPRC) are 32 bits wide,
//! wrap, and are cleared neither on read nor by a VF reset (82576 datasheet,
//! VF statistics registers; QEMU models them the same way). The driver
//! samples them often enough that at most one wrap happens between samples
//! (at 1.5 Mpps a packet counter wraps after 48 minutes, an octet counter at
//! 1 Gb/s after 34 s; the driver samples every 50 ms while polled) and adds
//! the wrapping difference.

/// One 32-bit hardware counter seen as a 64-bit one (pollux-intel's).
pub use pollux_intel::stats::WrapCounter;

/// The VF's hardware counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HwStats {
    pub rx_packets: WrapCounter,
    pub tx_packets: WrapCounter,
    pub rx_octets: WrapCounter,
    pub tx_octets: WrapCounter,
    pub rx_multicast: WrapCounter,
    pub rx_loopback: WrapCounter,
    pub tx_loopback: WrapCounter,
}

impl HwStats {
    /// Samples every counter.
    pub fn sample(&mut self, r: &impl crate::regs::Regs) {
        use crate::regs::*;
        self.rx_packets.update(r.read32(VFGPRC) as u64);
        self.tx_packets.update(r.read32(VFGPTC) as u64);
        self.rx_octets.update(r.read32(VFGORC) as u64);
        self.tx_octets.update(r.read32(VFGOTC) as u64);
        self.rx_multicast.update(r.read32(VFMPRC) as u64);
        self.rx_loopback.update(r.read32(VFGPRLBC) as u64);
        self.tx_loopback.update(r.read32(VFGPTLBC) as u64);
    }

    /// Zeroes every total.
    pub fn reset(&mut self) {
        for c in [
            &mut self.rx_packets,
            &mut self.tx_packets,
            &mut self.rx_octets,
            &mut self.tx_octets,
            &mut self.rx_multicast,
            &mut self.rx_loopback,
            &mut self.tx_loopback,
        ] {
            c.reset();
        }
    }
}
