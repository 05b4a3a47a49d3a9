//! Frame parsing and the checksum/segmentation arithmetic the VF's offloads
//! do: Internet checksums (RFC 1071), the receive status a NIC reports for
//! IPv4/IPv6 with TCP/UDP/SCTP, the transmit checksum insertion and TCP
//! segmentation as the 82599 datasheet describes them (section 7.2 of the
//! 82599 datasheet: TCP/UDP checksum offload and TSO), and CRC32c for
//! SCTP (RFC 4960 appendix B).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::regs::*;

/// 802.1Q TPID.
pub const TPID_8021Q: u16 = 0x8100;
/// IPv4 ethertype.
pub const ETH_P_IP: u16 = 0x0800;
/// IPv6 ethertype.
pub const ETH_P_IPV6: u16 = 0x86DD;
/// IP protocol numbers.
pub const IPPROTO_TCP: u8 = 6;
pub use crate::checksum::{crc32c, fold, ones_sum};

/// UDP.
pub const IPPROTO_UDP: u8 = 17;
/// SCTP.
pub const IPPROTO_SCTP: u8 = 132;

/// The IPv4 header checksum of `hdr` with its checksum field as is
/// (0 when the header is right, if the field was filled in).
pub fn ipv4_header_sum(hdr: &[u8]) -> u16 {
    !fold(ones_sum(hdr, 0))
}

/// Pseudo-header sum for an L4 segment of `len` bytes.
pub fn pseudo_sum(l3: &L3, proto: u8, len: u32) -> u32 {
    match l3 {
        L3::V4 { src, dst, .. } => {
            let mut s = ones_sum(&src.octets(), 0);
            s = ones_sum(&dst.octets(), s);
            s = s.wrapping_add(proto as u32).wrapping_add(len);
            s
        }
        L3::V6 { src, dst, .. } => {
            let mut s = ones_sum(&src.octets(), 0);
            s = ones_sum(&dst.octets(), s);
            s = s
                .wrapping_add(proto as u32)
                .wrapping_add(len >> 16)
                .wrapping_add(len & 0xffff);
            s
        }
    }
}

/// A parsed network layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum L3 {
    /// IPv4.
    V4 {
        /// Source.
        src: Ipv4Addr,
        /// Destination.
        dst: Ipv4Addr,
        /// Header length.
        ihl: usize,
        /// A fragment (MF or offset): no L4 parsing.
        frag: bool,
        /// Header checksum right.
        csum_ok: bool,
    },
    /// IPv6 (base header only; extension headers end the parse).
    V6 {
        /// Source.
        src: Ipv6Addr,
        /// Destination.
        dst: Ipv6Addr,
    },
}

/// What receive parsing finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Offset of the L3 header.
    pub l3_off: usize,
    /// Network layer.
    pub l3: Option<L3>,
    /// L4 protocol and offset.
    pub l4: Option<(u8, usize)>,
    /// L4 ports (TCP/UDP).
    pub ports: Option<(u16, u16)>,
    /// L4 checksum right (TCP/UDP with a checksum), None when not checked.
    pub l4_ok: Option<bool>,
}

/// Parses an Ethernet frame whose L3 header starts at `l3_off` with
/// ethertype `etype`.
pub fn parse_l3(frame: &[u8], etype: u16, l3_off: usize) -> Parsed {
    let mut p = Parsed {
        l3_off,
        l3: None,
        l4: None,
        ports: None,
        l4_ok: None,
    };
    let Some(ip) = frame.get(l3_off..) else {
        return p;
    };
    let (proto, l4_off, l4_end) = match etype {
        ETH_P_IP if ip.len() >= 20 && ip[0] >> 4 == 4 => {
            let ihl = ((ip[0] & 0xf) as usize) * 4;
            let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
            if ihl < 20 || ip.len() < ihl || total < ihl {
                return p;
            }
            let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
            p.l3 = Some(L3::V4 {
                src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
                dst: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
                ihl,
                frag,
                csum_ok: ipv4_header_sum(&ip[..ihl]) == 0,
            });
            if frag {
                return p;
            }
            (ip[9], l3_off + ihl, l3_off + total.min(ip.len()))
        }
        ETH_P_IPV6 if ip.len() >= 40 && ip[0] >> 4 == 6 => {
            let mut s = [0u8; 16];
            s.copy_from_slice(&ip[8..24]);
            let mut d = [0u8; 16];
            d.copy_from_slice(&ip[24..40]);
            p.l3 = Some(L3::V6 {
                src: Ipv6Addr::from(s),
                dst: Ipv6Addr::from(d),
            });
            let plen = u16::from_be_bytes([ip[4], ip[5]]) as usize;
            (ip[6], l3_off + 40, (l3_off + 40 + plen).min(frame.len()))
        }
        _ => return p,
    };
    if l4_end < l4_off {
        return p;
    }
    let seg = &frame[l4_off..l4_end];
    p.l4 = Some((proto, l4_off));
    match proto {
        IPPROTO_TCP if seg.len() >= 20 => {
            p.ports = Some((
                u16::from_be_bytes([seg[0], seg[1]]),
                u16::from_be_bytes([seg[2], seg[3]]),
            ));
            let l3 = p.l3.as_ref().expect("set above");
            let s = ones_sum(seg, pseudo_sum(l3, proto, seg.len() as u32));
            p.l4_ok = Some(fold(s) == 0xffff);
        }
        IPPROTO_UDP if seg.len() >= 8 => {
            p.ports = Some((
                u16::from_be_bytes([seg[0], seg[1]]),
                u16::from_be_bytes([seg[2], seg[3]]),
            ));
            let csum = u16::from_be_bytes([seg[6], seg[7]]);
            let l3 = p.l3.as_ref().expect("set above");
            if csum == 0 && matches!(l3, L3::V4 { .. }) {
                // No checksum (RFC 768): nothing to report.
            } else {
                let s = ones_sum(seg, pseudo_sum(l3, proto, seg.len() as u32));
                p.l4_ok = Some(fold(s) == 0xffff);
            }
        }
        _ => {}
    }
    p
}

/// The receive descriptor fields a parse gives: (pkt_info packet type
/// bits, status bits, error bits).
pub fn rx_offload_bits(p: &Parsed) -> (u32, u32, u32) {
    let (mut ptype, mut status, mut err) = (0u32, 0u32, 0u32);
    match &p.l3 {
        Some(L3::V4 { ihl, csum_ok, .. }) => {
            ptype |= if *ihl > 20 {
                PKTTYPE_IPV4_EX
            } else {
                PKTTYPE_IPV4
            };
            status |= RXD_STAT_IPCS;
            if !csum_ok {
                err |= RXDADV_ERR_IPE;
            }
        }
        Some(L3::V6 { .. }) => ptype |= PKTTYPE_IPV6,
        None => {}
    }
    match p.l4 {
        Some((IPPROTO_TCP, _)) => ptype |= PKTTYPE_TCP,
        Some((IPPROTO_UDP, _)) => ptype |= PKTTYPE_UDP,
        Some((IPPROTO_SCTP, _)) => ptype |= PKTTYPE_SCTP,
        _ => {}
    }
    if let Some(ok) = p.l4_ok {
        status |= RXD_STAT_L4CS;
        if matches!(p.l4, Some((IPPROTO_UDP, _))) {
            status |= RXD_STAT_UDPCS;
        }
        if !ok {
            err |= RXDADV_ERR_TCPE;
        }
    }
    (ptype, status, err)
}

/// The RSS hash input and type of a parse under the hash fields `mrqc`
/// (regs::MRQC_*): None when the frame is not hashed.
pub fn rss_input(p: &Parsed, mrqc: u32) -> Option<(Vec<u8>, u32)> {
    use crate::toeplitz::{ipv4_input, ipv6_input};
    let proto = p.l4.map(|(pr, _)| pr);
    match p.l3.as_ref()? {
        L3::V4 { src, dst, frag, .. } => {
            if !frag && proto == Some(IPPROTO_TCP) && mrqc & MRQC_IPV4_TCP != 0 {
                if let Some(ports) = p.ports {
                    return Some((ipv4_input(*src, *dst, Some(ports)), RSSTYPE_IPV4_TCP));
                }
            }
            if !frag && proto == Some(IPPROTO_UDP) && mrqc & MRQC_IPV4_UDP != 0 {
                if let Some(ports) = p.ports {
                    return Some((ipv4_input(*src, *dst, Some(ports)), RSSTYPE_IPV4_UDP));
                }
            }
            (mrqc & MRQC_IPV4 != 0).then(|| (ipv4_input(*src, *dst, None), RSSTYPE_IPV4))
        }
        L3::V6 { src, dst } => {
            if proto == Some(IPPROTO_TCP) && mrqc & MRQC_IPV6_TCP != 0 {
                if let Some(ports) = p.ports {
                    return Some((ipv6_input(*src, *dst, Some(ports)), RSSTYPE_IPV6_TCP));
                }
            }
            if proto == Some(IPPROTO_UDP) && mrqc & MRQC_IPV6_UDP != 0 {
                if let Some(ports) = p.ports {
                    return Some((ipv6_input(*src, *dst, Some(ports)), RSSTYPE_IPV6_UDP));
                }
            }
            (mrqc & MRQC_IPV6 != 0).then(|| (ipv6_input(*src, *dst, None), RSSTYPE_IPV6))
        }
    }
}

/// Transmit offload parameters from a context descriptor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxContext {
    /// MAC header length.
    pub maclen: usize,
    /// IP header length (for checksums: up to the L4 header).
    pub iplen: usize,
    /// VLAN tag to insert.
    pub vlan: u16,
    /// TUCMD.IPV4.
    pub ipv4: bool,
    /// TUCMD.L4T.
    pub l4t: u32,
    /// L4 header length (TSO).
    pub l4len: usize,
    /// MSS (TSO).
    pub mss: usize,
}

impl TxContext {
    /// From the context descriptor's first, third and fourth dwords.
    pub fn from_desc(vlan_macip_lens: u32, type_tucmd: u32, mss_l4len_idx: u32) -> Self {
        TxContext {
            iplen: (vlan_macip_lens & 0x1ff) as usize,
            maclen: ((vlan_macip_lens >> CTX_MACLEN_SHIFT) & 0x7f) as usize,
            vlan: (vlan_macip_lens >> CTX_VLAN_SHIFT) as u16,
            ipv4: type_tucmd & TUCMD_IPV4 != 0,
            l4t: type_tucmd & TUCMD_L4T_MASK,
            l4len: ((mss_l4len_idx >> CTX_L4LEN_SHIFT) & 0xff) as usize,
            mss: (mss_l4len_idx >> CTX_MSS_SHIFT) as usize,
        }
    }
}

/// Inserts the IPv4 header checksum (IXSM) and/or the L4 checksum (TXSM)
/// into `frame` as the context describes. The L4 checksum field holds the
/// pseudo-header sum the driver seeded (Linux CHECKSUM_PARTIAL, DPDK
/// rte_ipv4_phdr_cksum); the device sums from the L4 header to the end of
/// the frame and stores the complement. Errors name what does not fit.
pub fn insert_checksums(
    frame: &mut [u8],
    c: &TxContext,
    ixsm: bool,
    txsm: bool,
) -> Result<(), String> {
    let l3 = c.maclen;
    if ixsm {
        let end = l3 + c.iplen;
        if !c.ipv4 || c.iplen < 20 || end > frame.len() {
            return Err(format!(
                "IXSM with MACLEN {} IPLEN {} IPV4 {} on a {}-byte frame",
                c.maclen,
                c.iplen,
                c.ipv4,
                frame.len()
            ));
        }
        // The device sums the IPLEN bytes from MACLEN with the checksum
        // field as the driver left it: 0 for a plain header (DPDK zeroes
        // it, ixgbevf_tso zeroes it), or the negated sum of tunnel headers
        // that IPLEN also covers (ixgbevf_tso with GSO_PARTIAL).
        let s = !fold(ones_sum(&frame[l3..end], 0));
        frame[l3 + 10..l3 + 12].copy_from_slice(&s.to_be_bytes());
    }
    if txsm {
        let l4 = l3 + c.iplen;
        let off = match c.l4t {
            TUCMD_L4T_TCP => 16,
            TUCMD_L4T_UDP => 6,
            TUCMD_L4T_SCTP => 8,
            _ => return Err(format!("TXSM with reserved L4T {:#x}", c.l4t)),
        };
        let field = if c.l4t == TUCMD_L4T_SCTP { 4 } else { 2 };
        if l4 + off + field > frame.len() {
            return Err(format!(
                "TXSM with the L4 checksum at {} beyond the {}-byte frame",
                l4 + off,
                frame.len()
            ));
        }
        if c.l4t == TUCMD_L4T_SCTP {
            frame[l4 + 8..l4 + 12].fill(0);
            let crc = crc32c(&frame[l4..]);
            frame[l4 + 8..l4 + 12].copy_from_slice(&crc.to_le_bytes());
        } else {
            let mut s = !fold(ones_sum(&frame[l4..], 0));
            if c.l4t == TUCMD_L4T_UDP && s == 0 {
                s = 0xffff;
            }
            frame[l4 + off..l4 + off + 2].copy_from_slice(&s.to_be_bytes());
        }
    }
    Ok(())
}

/// TCP segmentation (82599 datasheet 7.2.4): `frame` is the header
/// (MACLEN + IPLEN + L4LEN bytes) followed by the payload. Each segment
/// gets the header with the IPv4 total length / IPv6 payload length, IPv4
/// identification (+1 per segment), TCP sequence number and flags fixed
/// (FIN and PSH only in the last segment, CWR only in the first), the
/// IPv4 header checksum and the TCP checksum (the driver seeded the field
/// with the pseudo-header sum without the length: ixgbevf_tso's
/// csum_replace_by_diff).
pub fn tso_segments(frame: &[u8], c: &TxContext) -> Result<Vec<Vec<u8>>, String> {
    let hdr = c.maclen + c.iplen + c.l4len;
    if c.l4t != TUCMD_L4T_TCP {
        return Err(format!(
            "TSE with L4T {:#x}: the 82599 segments TCP only",
            c.l4t
        ));
    }
    if c.mss == 0 || c.l4len < 20 || c.iplen < 20 || hdr > frame.len() {
        return Err(format!(
            "TSE with MSS {} MACLEN {} IPLEN {} L4LEN {} on a {}-byte frame",
            c.mss,
            c.maclen,
            c.iplen,
            c.l4len,
            frame.len()
        ));
    }
    let (l3, l4) = (c.maclen, c.maclen + c.iplen);
    if c.ipv4 && frame[l3] >> 4 != 4 || !c.ipv4 && frame[l3] >> 4 != 6 {
        return Err("TSE: the IP version does not match TUCMD.IPV4".into());
    }
    let payload = &frame[hdr..];
    let seed = u16::from_be_bytes([frame[l4 + 16], frame[l4 + 17]]) as u32;
    let seq0 = u32::from_be_bytes([frame[l4 + 4], frame[l4 + 5], frame[l4 + 6], frame[l4 + 7]]);
    let id0 = u16::from_be_bytes([frame[l3 + 4], frame[l3 + 5]]);
    let flags0 = frame[l4 + 13];
    let chunks: Vec<&[u8]> = if payload.is_empty() {
        vec![&[][..]]
    } else {
        payload.chunks(c.mss).collect()
    };
    let n = chunks.len();
    let mut segs = Vec::with_capacity(n);
    for (i, chunk) in chunks.into_iter().enumerate() {
        let mut s = Vec::with_capacity(hdr + chunk.len());
        s.extend_from_slice(&frame[..hdr]);
        s.extend_from_slice(chunk);
        let l4_len = (c.l4len + chunk.len()) as u32;
        if c.ipv4 {
            let total = (c.iplen as u32 + l4_len) as u16;
            s[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
            s[l3 + 4..l3 + 6].copy_from_slice(&id0.wrapping_add(i as u16).to_be_bytes());
            // As for IXSM: the IPLEN bytes with the field as the driver
            // seeded it.
            let cs = !fold(ones_sum(&s[l3..l3 + c.iplen], 0));
            s[l3 + 10..l3 + 12].copy_from_slice(&cs.to_be_bytes());
        } else {
            let plen = (c.iplen as u32 + l4_len - 40) as u16;
            s[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
        }
        let seq = seq0.wrapping_add((i * c.mss) as u32);
        s[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
        let mut flags = flags0;
        if i + 1 != n {
            flags &= !(0x01 | 0x08); // FIN, PSH
        }
        if i != 0 {
            flags &= !0x80; // CWR
        }
        s[l4 + 13] = flags;
        s[l4 + 16..l4 + 18].copy_from_slice(&(seed as u16).to_be_bytes());
        let sum = ones_sum(&s[l4..], l4_len);
        let cs = !fold(sum);
        s[l4 + 16..l4 + 18].copy_from_slice(&cs.to_be_bytes());
        segs.push(s);
    }
    Ok(segs)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A UDP/IPv4 or TCP/IPv4 frame with correct checksums.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn ipv4_frame(
        dst: [u8; 6],
        src: [u8; 6],
        proto: u8,
        sip: [u8; 4],
        dip: [u8; 4],
        sport: u16,
        dport: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let l4len = if proto == IPPROTO_TCP { 20 } else { 8 };
        let mut f = Vec::new();
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&ETH_P_IP.to_be_bytes());
        let total = (20 + l4len + payload.len()) as u16;
        let mut ip = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, proto, 0, 0];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&sip);
        ip.extend_from_slice(&dip);
        let cs = ipv4_header_sum(&ip);
        ip[10..12].copy_from_slice(&cs.to_be_bytes());
        f.extend_from_slice(&ip);
        let mut l4 = Vec::new();
        l4.extend_from_slice(&sport.to_be_bytes());
        l4.extend_from_slice(&dport.to_be_bytes());
        if proto == IPPROTO_TCP {
            l4.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        } else {
            l4.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            l4.extend_from_slice(&[0, 0]);
        }
        l4.extend_from_slice(payload);
        let l3 = L3::V4 {
            src: sip.into(),
            dst: dip.into(),
            ihl: 20,
            frag: false,
            csum_ok: true,
        };
        let cs = !fold(ones_sum(&l4, pseudo_sum(&l3, proto, l4.len() as u32)));
        let off = if proto == IPPROTO_TCP { 16 } else { 6 };
        l4[off..off + 2].copy_from_slice(&cs.to_be_bytes());
        f.extend_from_slice(&l4);
        f
    }

    #[test]
    fn rx_parse_reports_good_and_bad_checksums() {
        let f = ipv4_frame(
            [1; 6],
            [2; 6],
            IPPROTO_UDP,
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            5,
            6,
            b"hi",
        );
        let p = parse_l3(&f, ETH_P_IP, 14);
        assert_eq!(p.l4_ok, Some(true));
        let (t, s, e) = rx_offload_bits(&p);
        assert_eq!(t, PKTTYPE_IPV4 | PKTTYPE_UDP);
        assert_eq!(s, RXD_STAT_IPCS | RXD_STAT_L4CS | RXD_STAT_UDPCS);
        assert_eq!(e, 0);
        let mut bad = f.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        bad[24] ^= 1; // IP checksum
        let (_, _, e) = rx_offload_bits(&parse_l3(&bad, ETH_P_IP, 14));
        assert_eq!(e, RXDADV_ERR_IPE | RXDADV_ERR_TCPE);
    }

    #[test]
    fn crc32c_check_value() {
        // RFC 3720 B.4 / the usual "123456789" check value.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn tso_splits_and_fixes_headers() {
        let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let mut f = ipv4_frame(
            [1; 6],
            [2; 6],
            IPPROTO_TCP,
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            1,
            2,
            &payload,
        );
        // As ixgbevf_tso leaves it: tot_len 0, IP csum 0, TCP csum = the
        // pseudo-header sum without the length.
        f[16] = 0;
        f[17] = 0;
        f[24] = 0;
        f[25] = 0;
        let l3 = L3::V4 {
            src: [10, 0, 0, 1].into(),
            dst: [10, 0, 0, 2].into(),
            ihl: 20,
            frag: false,
            csum_ok: true,
        };
        let seed = fold(pseudo_sum(&l3, IPPROTO_TCP, 0));
        f[50..52].copy_from_slice(&seed.to_be_bytes());
        f[47] |= 0x01; // FIN
        let c = TxContext {
            maclen: 14,
            iplen: 20,
            ipv4: true,
            l4t: TUCMD_L4T_TCP,
            l4len: 20,
            mss: 1448,
            vlan: 0,
        };
        let segs = tso_segments(&f, &c).unwrap();
        assert_eq!(segs.len(), 3);
        for (i, s) in segs.iter().enumerate() {
            let p = parse_l3(s, ETH_P_IP, 14);
            assert_eq!(p.l4_ok, Some(true), "segment {i}");
            assert!(matches!(p.l3, Some(L3::V4 { csum_ok: true, .. })));
            let seq = u32::from_be_bytes([s[38], s[39], s[40], s[41]]);
            assert_eq!(seq, 1 + 1448 * i as u32);
            assert_eq!(s[47] & 1 != 0, i == 2, "FIN only last");
        }
        assert_eq!(segs[2].len(), 54 + 3000 - 2 * 1448);
    }
}
