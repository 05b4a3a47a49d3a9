//! Accumulating a VF's statistics registers into 64-bit counters.
//!
//! The VF counters are 32 bits wide (82576 / I350: all of them; 82599 /
//! X540 / X550: the packet counters) or 36 bits, split over an LSB register
//! (bits 31:0) and an MSB register (bits 35:32) (82599 / X540 / X550: the
//! octet counters). None clears on read or at a VF reset; all wrap (82576
//! datasheet, VF statistics registers; Linux ixgbevf_update_stats,
//! UPDATE_VF_COUNTER_32bit and UPDATE_VF_COUNTER_36bit). A driver samples
//! them often enough that at most one wrap happens between samples and adds
//! the wrapping difference.

use crate::regs::Regs;

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
            if off == LSB && *self.1.borrow() == 0 {
                *self.1.borrow_mut() = 1;
                self.0.borrow_mut().insert(MSB, 3);
                return 5;
            }
            self.0.borrow().get(&off).copied().unwrap_or(0)
        }
        fn write32(&self, _: u32, _: u32) {}
    }

    const LSB: u32 = 0x1020;
    const MSB: u32 = 0x1024;

    #[test]
    fn a_carry_between_the_halves_is_not_lost() {
        let r = Counters(
            RefCell::new(HashMap::from([(MSB, 2), (LSB, 7)])),
            RefCell::new(0),
        );
        assert_eq!(read36(&r, LSB, MSB), 3 << 32 | 7);
    }
}
