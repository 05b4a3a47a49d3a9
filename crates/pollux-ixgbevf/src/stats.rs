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

/// One hardware counter of `BITS` bits (32 or 36) seen as a 64-bit one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WrapCounter<const BITS: u32 = 32> {
    last: Option<u64>,
    total: u64,
}

impl<const BITS: u32> WrapCounter<BITS> {
    const MASK: u64 = (1u64 << BITS) - 1;

    /// Feeds a new register value (bits above `BITS` ignored); returns the
    /// running total.
    #[inline]
    pub fn update(&mut self, now: u64) -> u64 {
        let now = now & Self::MASK;
        if let Some(last) = self.last {
            self.total += now.wrapping_sub(last) & Self::MASK;
        }
        self.last = Some(now);
        self.total
    }

    /// Total counted since the first sample (or the last [`reset`](Self::reset)).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Starts counting from zero at the last sampled value.
    pub fn reset(&mut self) {
        self.total = 0;
    }
}

/// Reads a 36-bit counter from its LSB and MSB registers. The MSB is read
/// around the LSB so a carry between the two reads is not lost: if the MSB
/// changed, the LSB is read again.
pub fn read36(r: &impl Regs, lsb: u32, msb: u32) -> u64 {
    let hi = r.read32(msb) & 0xF;
    let lo = r.read32(lsb);
    let hi2 = r.read32(msb) & 0xF;
    if hi2 == hi {
        (hi as u64) << 32 | lo as u64
    } else {
        (hi2 as u64) << 32 | r.read32(lsb) as u64
    }
}

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

    #[test]
    fn thirty_two_bit_counters_accumulate_across_wrap() {
        let mut c = WrapCounter::<32>::default();
        assert_eq!(
            c.update(u32::MAX as u64 - 5),
            0,
            "first sample is the baseline"
        );
        assert_eq!(c.update(u32::MAX as u64), 5);
        assert_eq!(c.update(10), 16, "wrapped: 1 to reach 0, then 10 more");
        assert_eq!(c.update(10), 16);
        c.reset();
        assert_eq!(c.update(20), 10);
        let mut c = WrapCounter::<32>::default();
        let mut v = 0u32;
        c.update(v as u64);
        for _ in 0..10 {
            v = v.wrapping_add(3_000_000_000);
            c.update(v as u64);
        }
        assert_eq!(c.total(), 30_000_000_000);
    }

    #[test]
    fn thirty_six_bit_counters_wrap_at_2_pow_36() {
        let top = (1u64 << 36) - 1;
        let mut c = WrapCounter::<36>::default();
        c.update(top - 99);
        assert_eq!(c.update(top), 99);
        assert_eq!(c.update(50), 99 + 1 + 50, "wrapped at 2^36, not 2^32");
        // A value past 2^32 is not a wrap for a 36-bit counter.
        let mut c = WrapCounter::<36>::default();
        c.update(u32::MAX as u64);
        assert_eq!(c.update(u32::MAX as u64 + 1000), 1000);
        // Bits above 36 from a confused register are ignored.
        assert_eq!(c.update((1 << 40) | (u32::MAX as u64 + 1000)), 1000);
    }

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
