//! Software ports from DPDK-style device strings.
//!
//! `KIND<N>[,key=value]...`, where KIND is `null`, `ring`, `af_packet` or
//! `pcap` (DPDK's `net_` prefix is accepted too):
//!
//! | device string | port |
//! |---|---|
//! | `null0[,size=64][,no_rx=1]` | [`NullPort`] |
//! | `ring0` | a [`ring_loopback`] port |
//! | `ring0,peer=ring1` + `ring1` | the two ends of a [`ring_pair`] |
//! | `af_packet0,iface=veth0[,...]` | [`AfPacketPort`] |
//! | `pcap0,rx=in.pcap[,tx=out.pcap][,infinite_rx=1]` | [`PcapPort`] |
//!
//! Unknown keys are errors, so a typo never silently changes a benchmark.
//!
//! What is built is each port's control side: configure and start it, then
//! [`Port::take_queues`] hands out the queue handles for the lcores.

use std::collections::HashMap;
use std::path::PathBuf;

use pollux_core::Port;

use crate::af_packet::{AfPacketOpts, AfPacketPort};
use crate::null::{NullOpts, NullPort};
use crate::pcap::{PcapOpts, PcapPort};
use crate::ring::{ring_loopback, ring_pair, DEFAULT_CAPACITY};
use crate::SoftError;

/// Kinds of software port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Null,
    Ring,
    AfPacket,
    Pcap,
}

impl Kind {
    fn keys(self) -> &'static [&'static str] {
        match self {
            Kind::Null => &["size", "no_rx"],
            Kind::Ring => &["peer", "capacity"],
            Kind::AfPacket => &[
                "iface",
                "framesz",
                "framecnt",
                "blocksz",
                "qpairs",
                "qdisc_bypass",
                "promisc",
                "rx_outgoing",
            ],
            Kind::Pcap => &["rx", "tx", "rx_pcap", "tx_pcap", "infinite_rx", "preload"],
        }
    }
}

/// A parsed device string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VdevSpec {
    /// The device string as given.
    pub spec: String,
    /// Port name (`null0`), without DPDK's `net_` prefix.
    pub name: String,
    pub kind: Kind,
    /// Arguments in order.
    pub args: Vec<(String, String)>,
}

impl VdevSpec {
    /// The value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key` parsed, or `default` when absent.
    pub fn parse_or<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, SoftError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| self.bad(format!("invalid value {v:?} for {key}"))),
        }
    }

    /// A boolean flag given as 0/1 (DPDK style) or false/true.
    pub fn flag(&self, key: &str) -> Result<bool, SoftError> {
        match self.get(key) {
            None | Some("0") | Some("false") | Some("no") => Ok(false),
            Some("1") | Some("true") | Some("yes") | Some("") => Ok(true),
            Some(v) => Err(self.bad(format!("invalid value {v:?} for {key}: use 0 or 1"))),
        }
    }

    /// An error about this device string.
    pub fn bad(&self, why: impl Into<String>) -> SoftError {
        SoftError::BadSpec {
            spec: self.spec.clone(),
            why: why.into(),
        }
    }
}

/// Whether `spec` names a software port (so callers can route other
/// device strings, such as a bond, elsewhere).
pub fn is_soft(spec: &str) -> bool {
    parse(spec).is_ok()
}

/// Parses one device string.
pub fn parse(spec: &str) -> Result<VdevSpec, SoftError> {
    let bad = |why: String| SoftError::BadSpec {
        spec: spec.to_string(),
        why,
    };
    let mut parts = spec.split(',');
    let raw_name = parts.next().unwrap_or("").trim();
    let name = raw_name.strip_prefix("net_").unwrap_or(raw_name);
    let kind = [
        ("af_packet", Kind::AfPacket),
        ("null", Kind::Null),
        ("ring", Kind::Ring),
        ("pcap", Kind::Pcap),
    ]
    .into_iter()
    .find(|(p, _)| {
        name.strip_prefix(p).is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
    })
    .map(|(_, k)| k)
    .ok_or_else(|| {
        bad(
            "expected a name like null0, ring0, af_packet0 or pcap0 (kind followed by an id)"
                .into(),
        )
    })?;
    let mut args = Vec::new();
    for a in parts {
        let a = a.trim();
        if a.is_empty() {
            continue;
        }
        let (k, v) = a.split_once('=').unwrap_or((a, ""));
        if !kind.keys().contains(&k) {
            return Err(bad(format!(
                "unknown argument {k:?}; {name} takes: {}",
                kind.keys().join(", ")
            )));
        }
        if args.iter().any(|(seen, _): &(String, String)| seen == k) {
            return Err(bad(format!("argument {k:?} given twice")));
        }
        args.push((k.to_string(), v.to_string()));
    }
    Ok(VdevSpec {
        spec: spec.to_string(),
        name: name.to_string(),
        kind,
        args,
    })
}

/// Builds the ports of `specs`, in order. Ring ports that name each other
/// as `peer` are joined into a pair.
pub fn create_all(specs: &[VdevSpec]) -> Result<Vec<Box<dyn Port>>, SoftError> {
    let mut names = HashMap::new();
    for (i, s) in specs.iter().enumerate() {
        if names.insert(s.name.as_str(), i).is_some() {
            return Err(s.bad(format!("port name {} used twice", s.name)));
        }
    }
    let mut ports: Vec<Option<Box<dyn Port>>> = specs.iter().map(|_| None).collect();
    for (i, s) in specs.iter().enumerate() {
        if ports[i].is_some() {
            continue;
        }
        let port: Box<dyn Port> = match s.kind {
            Kind::Null => {
                let size: u16 = s.parse_or("size", 64)?;
                if size == 0 {
                    return Err(s.bad("size must be at least 1"));
                }
                Box::new(NullPort::new(
                    &s.name,
                    NullOpts {
                        size,
                        no_rx: s.flag("no_rx")?,
                    },
                ))
            }
            Kind::Ring => {
                let cap: usize = s.parse_or("capacity", DEFAULT_CAPACITY)?;
                match s.get("peer") {
                    None => Box::new(ring_loopback(&s.name, cap)?),
                    Some(peer) => {
                        let j = *names.get(peer).ok_or_else(|| {
                            s.bad(format!(
                                "peer {peer} is not among the devices; add --vdev {peer}"
                            ))
                        })?;
                        let other = &specs[j];
                        if j == i || other.kind != Kind::Ring {
                            return Err(s.bad(format!("peer {peer} must be another ring port")));
                        }
                        if other.get("peer").is_some_and(|p| p != s.name) {
                            return Err(
                                s.bad(format!("{peer} is already paired with another port"))
                            );
                        }
                        let (a, b) = ring_pair(&s.name, &other.name, cap)?;
                        ports[j] = Some(Box::new(b));
                        Box::new(a)
                    }
                }
            }
            Kind::AfPacket => Box::new(af_packet(s)?),
            Kind::Pcap => Box::new(pcap(s)?),
        };
        ports[i] = Some(port);
    }
    Ok(ports
        .into_iter()
        .map(|p| p.expect("every spec built"))
        .collect())
}

fn af_packet(s: &VdevSpec) -> Result<AfPacketPort, SoftError> {
    let iface = s
        .get("iface")
        .filter(|i| !i.is_empty())
        .ok_or_else(|| s.bad("af_packet needs iface=<interface>"))?;
    let d = AfPacketOpts::default();
    let opts = AfPacketOpts {
        frame_size: s.parse_or("framesz", d.frame_size)?,
        frame_count: s.parse_or("framecnt", d.frame_count)?,
        block_size: s.parse_or("blocksz", d.block_size)?,
        qpairs: s.parse_or("qpairs", d.qpairs)?,
        qdisc_bypass: s.flag("qdisc_bypass")?,
        promiscuous: s.flag("promisc")?,
        ignore_outgoing: !s.flag("rx_outgoing")?,
    };
    AfPacketPort::open(&s.name, iface, opts)
}

fn pcap(s: &VdevSpec) -> Result<PcapPort, SoftError> {
    // DPDK spells the files rx_pcap= and tx_pcap=; accept both spellings.
    let pick = |a: &str, b: &str| -> Result<Option<PathBuf>, SoftError> {
        match (s.get(a), s.get(b)) {
            (Some(_), Some(_)) => Err(s.bad(format!("give {a} or {b}, not both"))),
            (Some(""), _) | (_, Some("")) => Err(s.bad(format!("{a} needs a file name"))),
            (v, w) => Ok(v.or(w).map(PathBuf::from)),
        }
    };
    let rx = pick("rx", "rx_pcap")?;
    let tx = pick("tx", "tx_pcap")?;
    if rx.is_none() && tx.is_none() {
        return Err(s.bad("pcap needs rx=<file> and/or tx=<file>"));
    }
    let opts = PcapOpts {
        infinite_rx: s.flag("infinite_rx")?,
        preload: s.flag("preload")?,
    };
    PcapPort::open(&s.name, rx.as_deref(), tx.as_deref(), opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_arguments() {
        let s = parse("net_null3,size=128").unwrap();
        assert_eq!((s.name.as_str(), s.kind), ("null3", Kind::Null));
        assert_eq!(s.get("size"), Some("128"));
        assert_eq!(
            parse("ring0,peer=ring1").unwrap().get("peer"),
            Some("ring1")
        );
    }

    #[test]
    fn rejects_bad_strings_with_a_reason() {
        for (spec, why) in [
            ("", "expected a name"),
            ("null", "expected a name"),
            ("eth0", "expected a name"),
            ("null0,sise=3", "unknown argument \"sise\""),
            ("null0,size=1,size=2", "given twice"),
        ] {
            let e = parse(spec).unwrap_err().to_string();
            assert!(e.contains(why), "{spec}: {e}");
        }
        let e = create_all(&[parse("null0,size=x").unwrap()])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("invalid value \"x\" for size"), "{e}");
        for (spec, why) in [
            ("af_packet0", "needs iface="),
            ("af_packet0,iface=pollux-no-such-if", "pollux-no-such-if"),
            ("pcap0", "rx=<file> and/or tx=<file>"),
            ("pcap0,rx=a,rx_pcap=b", "not both"),
            ("pcap0,rx=/nonexistent/in.pcap", "/nonexistent/in.pcap"),
        ] {
            let e = create_all(&[parse(spec).unwrap()])
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains(why), "{spec}: {e}");
        }
    }

    #[test]
    fn ring_peers_are_joined() {
        let specs = [parse("ring0,peer=ring1").unwrap(), parse("ring1").unwrap()];
        let ports = create_all(&specs).unwrap();
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[1].info().name, "ring1");

        // What ring0's tx queue sends, ring1's rx queue receives.
        let pool = pollux_core::Mempool::new(
            pollux_core::MempoolConfig::new("vdev-test", 8),
            &pollux_core::AnonMemory::default(),
        )
        .unwrap();
        let mut polled: Vec<_> = ports
            .into_iter()
            .map(|mut p| {
                p.configure(&pollux_core::PortConf::new(pool.clone()))
                    .unwrap();
                pollux_core::Polled::start(p).unwrap()
            })
            .collect();
        let mut b = pollux_core::Burst::new(8);
        assert!(pool.alloc_bulk(&mut b, 3));
        assert_eq!(polled[0].tx_burst(0, &mut b), 3);
        assert_eq!(polled[1].rx_burst(0, &mut b), 3);
        assert_eq!(polled[1].port().stats().ipackets, 3);
        drop((b, polled));
        assert_eq!(pool.available(), 8);

        let e = create_all(&[parse("ring0,peer=ring9").unwrap()])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("add --vdev ring9"), "{e}");
        let e = create_all(&[parse("null0").unwrap(), parse("null0").unwrap()])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("used twice"), "{e}");
    }
}
