//! Entry points shared by the cargo-fuzz targets (crates/pollux-sriov/fuzz)
//! and the corpus replay test, so the stable test suite runs every input
//! the fuzzer ever kept. Each asserts invariants beyond "does not panic".

use netlink_packet_route::link::{LinkAttribute, LinkMessage, LinkVfInfo, VfInfo};
use netlink_packet_route::RouteNetlinkMessage;

use crate::netlink::{decode_replies, parse_vfs, set_vf_message, VfAttr, VfState, VlanProto};
use crate::pci::PciAddr;
use crate::pod::{vfs_from_env, DeviceInfo, PCIDEVICE_PREFIX};

/// One datagram of rtnetlink replies, as `Rtnl` receives it (the request's
/// sequence number is taken from the first header so replies match): the
/// decode refuses it or yields messages whose VF info decodes to one state
/// per IFLA_VF_INFO, with distinct VF numbers the message itself named,
/// VLAN ids and priorities in range, and states that survive a JSON round
/// trip (what `pollux vf show --json` prints) and our own SETLINK encoding.
pub fn vf_info(data: &[u8]) {
    let seq = data
        .get(8..12)
        .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    let Ok((_, msgs)) = decode_replies("fuzz", seq, data) else {
        return;
    };
    for m in msgs {
        if let RouteNetlinkMessage::NewLink(l) = m {
            link(&l);
        }
    }
}

fn link(l: &LinkMessage) {
    let infos: Vec<&LinkVfInfo> = l
        .attributes
        .iter()
        .filter_map(|a| match a {
            LinkAttribute::VfInfoList(v) => Some(v),
            _ => None,
        })
        .flatten()
        .collect();
    let Ok(vfs) = parse_vfs(l) else { return };
    assert_eq!(vfs.len(), infos.len(), "one state per IFLA_VF_INFO");
    for (pos, (vf, LinkVfInfo(attrs))) in vfs.iter().zip(&infos).enumerate() {
        let named: Vec<u32> = attrs.iter().filter_map(vf_id).collect();
        match named.first() {
            Some(&id) => assert_eq!(vf.index, id, "the index the message named"),
            None => assert_eq!(vf.index as usize, pos, "unnamed: its position"),
        }
        assert!(
            vfs[..pos].iter().all(|o| o.index != vf.index),
            "distinct VFs"
        );
        assert!(vf.vlan.id < 4096 && vf.vlan.qos < 8, "{vf:?}");
        let json = serde_json::to_string(vf).expect("a VfState serialises");
        let back: VfState = serde_json::from_str(&json).expect("and parses back");
        assert_eq!(&back, vf);
        // What we would send to set this VLAN decodes to the same VF.
        let mut vlan = vf.vlan;
        vlan.proto = VlanProto::Dot1Q;
        let set = set_vf_message(l.header.index, vf.index, VfAttr::Vlan(vlan));
        let again = parse_vfs(&set).expect("our own SETLINK decodes");
        assert_eq!((again[0].index, again[0].vlan), (vf.index, vlan));
    }
}

fn vf_id(a: &VfInfo) -> Option<u32> {
    Some(match a {
        VfInfo::Mac(m) => m.vf_id,
        VfInfo::Vlan(v) => v.vf_id,
        VfInfo::Rate(r) => r.vf_id,
        VfInfo::SpoofCheck(s) => s.vf_id,
        VfInfo::Trust(t) => t.vf_id,
        VfInfo::LinkState(s) => s.vf_id,
        _ => return None,
    })
}

/// What a pod reads to find its VFs, from text: the whole input as a
/// device-info file, and its `KEY=VALUE` lines as the environment the
/// device plugin sets.
///
/// Asserts: an accepted device-info file is type `pci`, version 1.x, and
/// reads back the same after being written out again (what the CNI plugin
/// writes), with an address that prints and parses to itself; the VFs
/// from the environment are non-empty, without duplicates, and each one
/// is listed in a `PCIDEVICE_*` variable.
pub fn pod(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((di, addr)) = DeviceInfo::parse("fuzz", text) {
        assert_eq!(di.kind, "pci");
        assert!(di.version.starts_with("1."));
        assert_eq!(addr.to_string().parse::<PciAddr>().ok(), Some(addr));
        let again = serde_json::to_string(&di).expect("a DeviceInfo serialises");
        let (di2, addr2) = DeviceInfo::parse("again", &again).expect("what we write reads back");
        assert_eq!((di2, addr2), (di, addr));
    }
    let vars: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once('=')).collect();
    let resources = [None, vars.first().map(|(k, _)| *k)];
    for resource in resources {
        let Ok(vfs) = vfs_from_env(vars.iter().copied(), resource) else {
            continue;
        };
        assert!(!vfs.is_empty());
        for (i, a) in vfs.iter().enumerate() {
            assert!(!vfs[..i].contains(a), "{a} twice");
            assert!(
                vars.iter().any(|(k, v)| k.starts_with(PCIDEVICE_PREFIX)
                    && v.split(',')
                        .any(|p| p.trim().parse::<PciAddr>().ok() == Some(*a))),
                "{a} not in the environment"
            );
        }
    }
}
