//! The VSI counters GET_STATS returns, accumulated into wrap-safe 64-bit
//! totals.
//!
//! The PF reads them from the hardware's VSI statistics registers: the
//! byte and packet counters are 48 bits wide, the discard and error
//! counters 32 (DPDK iavf_update_stats folds them with
//! iavf_stat_update_48 and iavf_stat_update_32). The driver samples them
//! from `Port::service` (once a second), far inside the fastest wrap, and
//! adds the wrapping difference. After a VF reset the PF may start them
//! over: the driver then takes the next sample as a new baseline
//! ([`VfStats::rebaseline`]) instead of reading a drop as a wrap.

use crate::proto::EthStats;

/// One counter of `BITS` bits seen as a 64-bit one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WrapCounter<const BITS: u32> {
    last: Option<u64>,
    total: u64,
}

impl<const BITS: u32> WrapCounter<BITS> {
    const MASK: u64 = if BITS >= 64 {
        u64::MAX
    } else {
        (1u64 << BITS) - 1
    };

    /// Feeds a new value (bits above `BITS` ignored); returns the total.
    pub fn update(&mut self, now: u64) -> u64 {
        let now = now & Self::MASK;
        if let Some(last) = self.last {
            self.total = self.total.wrapping_add(now.wrapping_sub(last) & Self::MASK);
        }
        self.last = Some(now);
        self.total
    }

    /// Total counted since the first sample (or the last reset).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Zeroes the total; the last sample stays the baseline.
    pub fn reset(&mut self) {
        self.total = 0;
    }

    /// Forgets the baseline: the next sample only sets it.
    pub fn rebaseline(&mut self) {
        self.last = None;
    }
}

/// The VF's counters as the PF reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VfStats {
    pub rx_bytes: WrapCounter<48>,
    pub rx_unicast: WrapCounter<48>,
    pub rx_multicast: WrapCounter<48>,
    pub rx_broadcast: WrapCounter<48>,
    pub rx_discards: WrapCounter<32>,
    pub rx_unknown_protocol: WrapCounter<32>,
    pub tx_bytes: WrapCounter<48>,
    pub tx_unicast: WrapCounter<48>,
    pub tx_multicast: WrapCounter<48>,
    pub tx_broadcast: WrapCounter<48>,
    pub tx_discards: WrapCounter<32>,
    pub tx_errors: WrapCounter<32>,
    /// Samples taken.
    pub samples: u64,
}

impl VfStats {
    /// Folds in one GET_STATS reply.
    pub fn update(&mut self, s: &EthStats) {
        self.rx_bytes.update(s.rx_bytes);
        self.rx_unicast.update(s.rx_unicast);
        self.rx_multicast.update(s.rx_multicast);
        self.rx_broadcast.update(s.rx_broadcast);
        self.rx_discards.update(s.rx_discards);
        self.rx_unknown_protocol.update(s.rx_unknown_protocol);
        self.tx_bytes.update(s.tx_bytes);
        self.tx_unicast.update(s.tx_unicast);
        self.tx_multicast.update(s.tx_multicast);
        self.tx_broadcast.update(s.tx_broadcast);
        self.tx_discards.update(s.tx_discards);
        self.tx_errors.update(s.tx_errors);
        self.samples += 1;
    }

    /// Zeroes every total.
    pub fn reset(&mut self) {
        let s = self.samples;
        self.apply(|c48| c48.reset(), |c32| c32.reset());
        self.samples = s;
    }

    /// The next sample is a new baseline for every counter (after a VF
    /// reset).
    pub fn rebaseline(&mut self) {
        self.apply(|c48| c48.rebaseline(), |c32| c32.rebaseline());
    }

    fn apply(&mut self, f48: impl Fn(&mut WrapCounter<48>), f32: impl Fn(&mut WrapCounter<32>)) {
        for c in [
            &mut self.rx_bytes,
            &mut self.rx_unicast,
            &mut self.rx_multicast,
            &mut self.rx_broadcast,
            &mut self.tx_bytes,
            &mut self.tx_unicast,
            &mut self.tx_multicast,
            &mut self.tx_broadcast,
        ] {
            f48(c);
        }
        for c in [
            &mut self.rx_discards,
            &mut self.rx_unknown_protocol,
            &mut self.tx_discards,
            &mut self.tx_errors,
        ] {
            f32(c);
        }
    }

    pub fn rx_packets(&self) -> u64 {
        self.rx_unicast.total() + self.rx_multicast.total() + self.rx_broadcast.total()
    }

    pub fn tx_packets(&self) -> u64 {
        self.tx_unicast.total() + self.tx_multicast.total() + self.tx_broadcast.total()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forty_eight_bit_counters_wrap_at_2_pow_48() {
        let top = (1u64 << 48) - 1;
        let mut c = WrapCounter::<48>::default();
        assert_eq!(c.update(top - 9), 0, "first sample is the baseline");
        assert_eq!(c.update(top), 9);
        assert_eq!(c.update(5), 9 + 1 + 5, "wrapped at 2^48");
        // Above 2^32 is no wrap for a 48-bit counter.
        let mut c = WrapCounter::<48>::default();
        c.update(u32::MAX as u64);
        assert_eq!(c.update(u32::MAX as u64 + 100), 100);
        assert_eq!(
            c.update((1 << 60) | (u32::MAX as u64 + 100)),
            100,
            "high bits ignored"
        );
    }

    #[test]
    fn thirty_two_bit_counters_and_baselines() {
        let mut c = WrapCounter::<32>::default();
        c.update(u32::MAX as u64 - 1);
        assert_eq!(c.update(3), 5);
        c.reset();
        assert_eq!(c.update(13), 10);
        c.rebaseline();
        assert_eq!(
            c.update(2),
            10,
            "a counter that started over is a new baseline"
        );
        assert_eq!(c.update(7), 15);
    }

    #[test]
    fn stats_accumulate_from_replies() {
        let mut v = VfStats::default();
        let mut s = EthStats {
            rx_unicast: 100,
            rx_broadcast: 5,
            tx_unicast: (1 << 48) - 2,
            rx_discards: u32::MAX as u64,
            ..EthStats::default()
        };
        v.update(&s);
        s.rx_unicast = 150;
        s.rx_broadcast = 6;
        s.tx_unicast = 3;
        s.rx_discards = 1;
        v.update(&s);
        assert_eq!(v.rx_packets(), 51);
        assert_eq!(v.tx_packets(), 5);
        assert_eq!(v.rx_discards.total(), 2);
        v.reset();
        assert_eq!(v.rx_packets(), 0);
        v.rebaseline();
        s.rx_unicast = 0;
        v.update(&s);
        assert_eq!(v.rx_packets(), 0, "no jump after the PF started over");
        assert_eq!(v.samples, 3);
    }
}
