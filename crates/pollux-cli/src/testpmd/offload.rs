//! `--tx-offloads` and `--rx-offloads`: checksum offloads by their DPDK
//! names (`RTE_ETH_TX_OFFLOAD_UDP_CKSUM` is `udp_cksum`, as testpmd's
//! `port config <port> tx_offload udp_cksum on` spells it), and the names
//! of what a port offers, for the error that says it cannot.

use pollux_core::port::{RxOffloads, TxOffloads};

/// The checksum offloads the options take: name, transmit flag, receive
/// flag.
const CKSUM: [(&str, TxOffloads, RxOffloads); 3] = [
    ("udp_cksum", TxOffloads::UDP_CKSUM, RxOffloads::UDP_CKSUM),
    ("tcp_cksum", TxOffloads::TCP_CKSUM, RxOffloads::TCP_CKSUM),
    ("ipv4_cksum", TxOffloads::IPV4_CKSUM, RxOffloads::IPV4_CKSUM),
];

/// Names of every transmit offload a port may offer.
const TX_NAMES: [(&str, TxOffloads); 4] = [
    ("vlan_insert", TxOffloads::VLAN_INSERT),
    ("ipv4_cksum", TxOffloads::IPV4_CKSUM),
    ("udp_cksum", TxOffloads::UDP_CKSUM),
    ("tcp_cksum", TxOffloads::TCP_CKSUM),
];

/// Names of every receive offload a port may offer.
const RX_NAMES: [(&str, RxOffloads); 6] = [
    ("vlan_strip", RxOffloads::VLAN_STRIP),
    ("ipv4_cksum", RxOffloads::IPV4_CKSUM),
    ("udp_cksum", RxOffloads::UDP_CKSUM),
    ("tcp_cksum", RxOffloads::TCP_CKSUM),
    ("rss_hash", RxOffloads::RSS_HASH),
    ("vlan_filter", RxOffloads::VLAN_FILTER),
];

/// A parsed checksum offload list, as the transmit and the receive flags
/// of the same names: `--tx-offloads` uses one, `--rx-offloads` the other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CksumOffloads {
    pub tx: TxOffloads,
    pub rx: RxOffloads,
}

/// Parses `udp_cksum,ipv4_cksum` (clap's value parser: the error becomes
/// one line that names the valid offloads).
pub fn parse_cksum_offloads(list: &str) -> Result<CksumOffloads, String> {
    let valid = || {
        CKSUM
            .iter()
            .map(|(n, _, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = CksumOffloads::default();
    for name in list.split(',') {
        let name = name.trim();
        let Some((_, tx, rx)) = CKSUM.iter().find(|(n, _, _)| *n == name) else {
            return Err(if name.is_empty() {
                format!(
                    "empty offload name in {list:?}; valid offloads: {}",
                    valid()
                )
            } else {
                format!("unknown offload {name:?}; valid offloads: {}", valid())
            });
        };
        out.tx |= *tx;
        out.rx |= *rx;
    }
    Ok(out)
}

/// `a,b` for a set of transmit offloads, `none` for the empty set.
pub fn tx_names(o: TxOffloads) -> String {
    names(
        TX_NAMES
            .iter()
            .filter(|(_, f)| o.contains(*f))
            .map(|(n, _)| *n),
    )
}

/// `a,b` for a set of receive offloads, `none` for the empty set.
pub fn rx_names(o: RxOffloads) -> String {
    names(
        RX_NAMES
            .iter()
            .filter(|(_, f)| o.contains(*f))
            .map(|(n, _)| *n),
    )
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = it.collect();
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dpdk_names_and_refuses_others() {
        let o = parse_cksum_offloads("udp_cksum, ipv4_cksum").unwrap();
        assert_eq!(o.tx, TxOffloads::UDP_CKSUM | TxOffloads::IPV4_CKSUM);
        assert_eq!(o.rx, RxOffloads::UDP_CKSUM | RxOffloads::IPV4_CKSUM);
        let o = parse_cksum_offloads("tcp_cksum,tcp_cksum").unwrap();
        assert_eq!(o.tx, TxOffloads::TCP_CKSUM);
        for bad in [
            "",
            "udp",
            "udp_cksum,",
            "UDP_CKSUM",
            "vlan_insert",
            "udp_cksum,sctp_cksum",
        ] {
            let e = parse_cksum_offloads(bad).unwrap_err();
            assert!(
                e.contains("valid offloads: udp_cksum, tcp_cksum, ipv4_cksum"),
                "{bad:?}: {e}"
            );
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn names_every_offered_offload() {
        assert_eq!(tx_names(TxOffloads::empty()), "none");
        assert_eq!(
            tx_names(TxOffloads::all()),
            "vlan_insert,ipv4_cksum,udp_cksum,tcp_cksum"
        );
        assert_eq!(rx_names(RxOffloads::UDP_CKSUM), "udp_cksum");
        assert_eq!(rx_names(RxOffloads::all()).split(',').count(), 6);
    }
}
