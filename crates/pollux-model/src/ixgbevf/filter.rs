//! The receive switch as the PF programs it for the VF's pool (82599
//! datasheet 7.10.3, pool selection; the PF's VMOLR, MTA, VLVF and MAXFRS
//! settings from ixgbe_sriov.c):
//! - unicast to the VF's MAC or one of its MACVLANs (promiscuous mode,
//!   VMOLR.UPE, takes every unicast);
//! - broadcast (VMOLR.BAM, always set by ixgbe_set_vmolr);
//! - multicast: every one in ALLMULTI/PROMISC (VMOLR.MPE), else those whose
//!   12-bit MTA vector (filter type 0) is in the VF's hash list while
//!   VMOLR.ROMPE is set (SET_MULTICAST, or xcast MULTI);
//! - VLAN: a tagged frame only if its VID is in the VF's table (VID 0, a
//!   priority tag, is always there); untagged frames pass (VMOLR.AUPE,
//!   set when there is no port VLAN);
//! - length: frames whose size with FCS exceeds MAXFRS (plus 4 per VLAN
//!   tag) are dropped.

use super::mbx::{mta_vector, VfFilters};
use super::pkt::TPID_8021Q;
use super::regs::xcast;

/// Why the switch did not give a frame to the VF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxDrop {
    /// Shorter than an Ethernet header.
    Runt,
    /// Destination address not for this VF.
    Address,
    /// VLAN not in the VF's table.
    Vlan,
    /// Longer than the max frame.
    TooLong,
    /// The PF has the VF's receive disabled (before VF_RESET, PF reset).
    Disabled,
}

/// What the switch found out about an accepted frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxClass {
    /// Multicast (not broadcast).
    pub multicast: bool,
    /// Broadcast.
    pub broadcast: bool,
    /// Passed an inexact (hash) filter.
    pub inexact: bool,
    /// The outer VLAN TCI, if tagged.
    pub tci: Option<u16>,
}

/// The switch's decision on `frame` (no FCS) for the VF.
pub fn classify(f: &VfFilters, frame: &[u8]) -> Result<RxClass, RxDrop> {
    if !f.rx_tx_enabled {
        return Err(RxDrop::Disabled);
    }
    if frame.len() < 14 {
        return Err(RxDrop::Runt);
    }
    let dst = &frame[0..6];
    let mut tags = 0u32;
    let mut tci = None;
    let mut off = 12;
    while off + 4 <= frame.len() && u16::from_be_bytes([frame[off], frame[off + 1]]) == TPID_8021Q {
        if tci.is_none() {
            tci = Some(u16::from_be_bytes([frame[off + 2], frame[off + 3]]));
        }
        tags += 1;
        off += 4;
        if tags == 2 {
            break;
        }
    }
    if frame.len() as u32 + 4 > f.max_frame + 4 * tags {
        return Err(RxDrop::TooLong);
    }
    if let Some(t) = tci {
        if !f.has_vlan(t & 0xfff) {
            return Err(RxDrop::Vlan);
        }
    }
    let broadcast = dst.iter().all(|&b| b == 0xff);
    let multicast = !broadcast && dst[0] & 1 != 0;
    let mut inexact = false;
    let ok = if broadcast {
        true
    } else if multicast {
        if f.xcast >= xcast::ALLMULTI {
            true
        } else if f.rompe && f.mc_hashes.contains(&mta_vector(dst)) {
            inexact = true;
            true
        } else {
            false
        }
    } else {
        f.is_own_unicast(dst) || f.xcast == xcast::PROMISC
    };
    if !ok {
        return Err(RxDrop::Address);
    }
    Ok(RxClass {
        multicast,
        broadcast,
        inexact,
        tci,
    })
}

#[cfg(test)]
mod tests {
    use super::super::mbx::{MacType, Pf, PfConfig};
    use super::*;

    fn filters() -> VfFilters {
        let p = Pf::new(PfConfig {
            mac_type: MacType::M82599,
            queues: 2,
            trusted: false,
            mac: [2, 0, 0, 0, 0, 1],
            rss_key: [0; 40],
            reta: [0; 128],
        });
        let mut f = p.filters.clone();
        f.rx_tx_enabled = true;
        f
    }

    fn frame(dst: [u8; 6], vlan: Option<u16>, len: usize) -> Vec<u8> {
        let mut v = dst.to_vec();
        v.extend_from_slice(&[2, 0, 0, 0, 0, 9]);
        if let Some(t) = vlan {
            v.extend_from_slice(&TPID_8021Q.to_be_bytes());
            v.extend_from_slice(&t.to_be_bytes());
        }
        v.extend_from_slice(&0x0800u16.to_be_bytes());
        v.resize(len, 0);
        v
    }

    #[test]
    fn unicast_broadcast_multicast_vlan_and_length() {
        let mut f = filters();
        assert!(classify(&f, &frame([2, 0, 0, 0, 0, 1], None, 60)).is_ok());
        assert_eq!(
            classify(&f, &frame([2, 0, 0, 0, 0, 2], None, 60)),
            Err(RxDrop::Address)
        );
        assert!(classify(&f, &frame([0xff; 6], None, 60)).unwrap().broadcast);
        let mc = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01];
        assert_eq!(classify(&f, &frame(mc, None, 60)), Err(RxDrop::Address));
        f.mc_hashes.push(mta_vector(&mc));
        f.rompe = true;
        assert!(classify(&f, &frame(mc, None, 60)).unwrap().inexact);
        assert!(
            classify(&f, &frame([2, 0, 0, 0, 0, 1], Some(0), 60)).is_ok(),
            "VID 0"
        );
        assert_eq!(
            classify(&f, &frame([2, 0, 0, 0, 0, 1], Some(5), 60)),
            Err(RxDrop::Vlan)
        );
        assert_eq!(
            classify(&f, &frame([2, 0, 0, 0, 0, 1], None, 1515)),
            Err(RxDrop::TooLong)
        );
        assert!(classify(&f, &frame([2, 0, 0, 0, 0, 1], None, 1514)).is_ok());
        assert_eq!(classify(&f, &[0u8; 10]), Err(RxDrop::Runt));
    }
}
