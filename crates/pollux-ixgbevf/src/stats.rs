//! Accumulating the VF's statistics registers into 64-bit counters.
//!
//! The packet counters (VFGPRC, VFGPTC, VFMPRC) are 32 bits wide; the octet
//! counters (VFGORC, VFGOTC) are 36 bits, split over an LSB register (bits
//! 31:0) and an MSB register (bits 35:32). None clears on read or at a VF
//! reset; all wrap (Linux ixgbevf_update_stats, UPDATE_VF_COUNTER_32bit and
//! UPDATE_VF_COUNTER_36bit). The driver samples them often enough that at
//! most one wrap happens between samples (a packet counter at 14.88 Mpps
//! wraps after 288 s, the octet counters at 10 Gbit/s after 55 s; the
//! driver samples every second while polled) and adds the wrapping
//! difference.

use crate::regs::{self, Regs};

/// One hardware counter of `BITS` bits (32 or 36) seen as a 64-bit one,
/// and the read of a 36-bit counter from its LSB and MSB registers
/// (pollux-intel's).
pub use pollux_intel::stats::{read36, WrapCounter};

/// The VF's hardware counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HwStats {
    pub rx_packets: WrapCounter<32>,
    pub tx_packets: WrapCounter<32>,
    pub rx_octets: WrapCounter<36>,
    pub tx_octets: WrapCounter<36>,
    pub rx_multicast: WrapCounter<32>,
}

impl HwStats {
    /// Samples every counter.
    pub fn sample(&mut self, r: &impl Regs) {
        self.rx_packets.update(r.read32(regs::VFGPRC) as u64);
        self.tx_packets.update(r.read32(regs::VFGPTC) as u64);
        self.rx_octets
            .update(read36(r, regs::VFGORC_LSB, regs::VFGORC_MSB));
        self.tx_octets
            .update(read36(r, regs::VFGOTC_LSB, regs::VFGOTC_MSB));
        self.rx_multicast.update(r.read32(regs::VFMPRC) as u64);
    }

    /// Zeroes every total.
    pub fn reset(&mut self) {
        self.rx_packets.reset();
        self.tx_packets.reset();
        self.rx_octets.reset();
        self.tx_octets.reset();
        self.rx_multicast.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    struct Counters(RefCell<HashMap<u32, u32>>, RefCell<u32>);
    impl Regs for Counters {
        fn read32(&self, off: u32) -> u32 {
            // The LSB wraps into the MSB between the first MSB read and the
            // LSB read, once.
            if off == regs::VFGORC_LSB && *self.1.borrow() == 0 {
                *self.1.borrow_mut() = 1;
                self.0.borrow_mut().insert(regs::VFGORC_MSB, 3);
                return 5;
            }
            self.0.borrow().get(&off).copied().unwrap_or(0)
        }
        fn write32(&self, _: u32, _: u32) {}
    }

    #[test]
    fn a_carry_between_the_halves_is_not_lost() {
        let r = Counters(
            RefCell::new(HashMap::from([
                (regs::VFGORC_MSB, 2),
                (regs::VFGORC_LSB, 7),
            ])),
            RefCell::new(0),
        );
        assert_eq!(read36(&r, regs::VFGORC_LSB, regs::VFGORC_MSB), 3 << 32 | 7);
        let mut hw = HwStats::default();
        hw.sample(&r);
        r.0.borrow_mut().insert(regs::VFGORC_LSB, 107);
        r.0.borrow_mut().insert(regs::VFGPRC, 4);
        hw.sample(&r);
        assert_eq!(hw.rx_octets.total(), 100);
        assert_eq!(hw.rx_packets.total(), 4);
    }
}
