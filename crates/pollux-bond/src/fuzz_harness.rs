//! Entry points shared by the cargo-fuzz targets (crates/pollux-bond/fuzz)
//! and the corpus replay test, so the stable test suite runs every input
//! the fuzzer ever kept. Each asserts invariants beyond "does not panic".

use std::time::{Duration, Instant};

use pollux_core::MacAddr;

use crate::config::{AdSelect, LacpRate, XmitHashPolicy};
use crate::lacp::{Lacp, LacpSettings};
use crate::wire::{Lacpdu, MarkerPdu, FRAME_LEN};

/// LACPDU parsing: a frame that parses re-emits to bytes that parse to
/// the same fields.
pub fn lacpdu(data: &[u8]) {
    if let Ok(p) = Lacpdu::new_checked(data) {
        let (a, b, d) = (p.actor(), p.partner(), p.collector_max_delay());
        let mut out = [0u8; FRAME_LEN];
        Lacpdu::new_unchecked(&mut out[..]).emit(p.src(), &a, &b, d);
        let q = Lacpdu::new_checked(&out[..]).expect("emitted LACPDU must parse");
        assert_eq!((q.actor(), q.partner(), q.collector_max_delay()), (a, b, d));
    }
}

/// Marker PDU parsing, with the same round trip.
pub fn marker(data: &[u8]) {
    if let Ok(p) = MarkerPdu::new_checked(data) {
        let info = p.info();
        let mut out = [0u8; FRAME_LEN];
        MarkerPdu::new_unchecked(&mut out[..]).emit(p.src(), &info);
        assert_eq!(
            MarkerPdu::new_checked(&out[..])
                .expect("emitted marker must parse")
                .info(),
            info
        );
    }
}

/// Every hash policy over arbitrary frames.
pub fn xmit_hash(data: &[u8]) {
    for p in [
        XmitHashPolicy::Layer2,
        XmitHashPolicy::Layer23,
        XmitHashPolicy::Layer34,
        XmitHashPolicy::Encap23,
        XmitHashPolicy::Encap34,
        XmitHashPolicy::VlanSrcMac,
    ] {
        let h = crate::hash::xmit_hash(p, data, Some(1));
        // Layer-2 hashing only ever depends on the Ethernet header.
        if p == XmitHashPolicy::Layer2 && data.len() >= 14 {
            assert_eq!(h, crate::hash::xmit_hash(p, &data[..14], None));
        }
    }
}

/// Arbitrary slow-protocol frames and link events into a two-port LACP
/// instance: no panic, and its invariants hold after every step. The
/// input is split into records: 1 control byte, then a frame.
pub fn lacp_rx(data: &[u8]) {
    let t0 = Instant::now();
    let mut now = t0;
    let settings = LacpSettings {
        system_priority: 65535,
        system: MacAddr([2, 0, 0, 0, 0, 1]),
        rate: LacpRate::Fast,
        active: true,
        ad_select: AdSelect::Stable,
        user_port_key: 0,
    };
    let mut l = Lacp::new(
        settings,
        &[MacAddr([2, 0, 0, 0, 1, 1]), MacAddr([2, 0, 0, 0, 1, 2])],
        now,
    );
    l.set_link(0, true, 1000, true, now);
    l.set_link(1, true, 1000, true, now);
    for rec in data.split(|&b| b == 0xa5).take(64) {
        let Some((&ctl, frame)) = rec.split_first() else {
            continue;
        };
        let port = (ctl & 1) as usize;
        match ctl >> 5 {
            0 => l.set_link(
                port,
                ctl & 2 != 0,
                [10, 1000, 10_000, 0][(ctl as usize >> 2) & 3],
                ctl & 16 != 0,
                now,
            ),
            1..=2 => now += Duration::from_millis(ctl as u64 * 40),
            _ => {
                let _ = l.handle_frame(port, frame, now);
            }
        }
        l.handle_timeout(now);
        while let Some((p, f)) = l.poll_transmit() {
            assert!(p < 2);
            assert!(Lacpdu::new_checked(&f[..]).is_ok() || MarkerPdu::new_checked(&f[..]).is_ok());
        }
        assert!(l.aggregators.iter().filter(|a| a.active).count() <= 1);
        for (i, p) in l.ports.iter().enumerate() {
            if let Some(a) = p.aggregator {
                assert!(l.aggregators[a].ports.contains(&i));
            }
            if l.collecting_distributing(i) {
                assert!(p.port_enabled());
            }
        }
        if let Some(t) = l.poll_timeout() {
            assert!(t >= t0);
        }
    }
}
