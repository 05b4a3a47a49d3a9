//! Accumulating the VF's 32-bit statistics registers into 64-bit counters.
//!
//! The VF counters (VFGPRC, VFGPTC, VFGORC, VFGOTC, VFMPRC) are 32 bits wide,
//! wrap, and are cleared neither on read nor by a VF reset (82576 datasheet,
//! VF statistics registers; QEMU models them the same way). The driver
//! samples them often enough that at most one wrap happens between samples
//! (at 1.5 Mpps a packet counter wraps after 48 minutes, an octet counter at
//! 1 Gb/s after 34 s; the driver samples every 50 ms while polled) and adds
//! the wrapping difference.

/// One 32-bit hardware counter seen as a 64-bit one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WrapCounter {
    last: Option<u32>,
    total: u64,
}

impl WrapCounter {
    /// Feeds a new register value; returns the running total.
    #[inline]
    pub fn update(&mut self, now: u32) -> u64 {
        if let Some(last) = self.last {
            self.total += now.wrapping_sub(last) as u64;
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
        self.rx_packets.update(r.read32(VFGPRC));
        self.tx_packets.update(r.read32(VFGPTC));
        self.rx_octets.update(r.read32(VFGORC));
        self.tx_octets.update(r.read32(VFGOTC));
        self.rx_multicast.update(r.read32(VFMPRC));
        self.rx_loopback.update(r.read32(VFGPRLBC));
        self.tx_loopback.update(r.read32(VFGPTLBC));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accumulates_across_wrap() {
        let mut c = WrapCounter::default();
        assert_eq!(c.update(u32::MAX - 5), 0, "first sample is the baseline");
        assert_eq!(c.update(u32::MAX), 5);
        assert_eq!(c.update(10), 16, "wrapped: 1 to reach 0, then 10 more");
        assert_eq!(c.update(10), 16);
        c.reset();
        assert_eq!(c.update(20), 10);
        // Many wraps worth of samples, each below one wrap apart.
        let mut c = WrapCounter::default();
        let mut v = 0u32;
        c.update(v);
        for _ in 0..10 {
            v = v.wrapping_add(3_000_000_000);
            c.update(v);
        }
        assert_eq!(c.total(), 30_000_000_000);
    }
}
