//! The forwarding engines: what one lcore does with its streams.
//!
//! A stream is DPDK testpmd's unit of work: receive from one port queue,
//! forward to one port queue (or only receive, or only send). A stream owns
//! the queue handles it uses ([`StreamQueues`]), and every handle belongs
//! to exactly one stream, so the lcore that runs a stream polls its queues
//! with no lock. Each lcore runs its streams round-robin until told to stop
//! and publishes its counters after every pass with plain relaxed stores,
//! so the stats thread can read them without slowing the loop.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_utils::CachePadded;
use pollux_core::lcore::StopFlag;
use pollux_core::net::{udp_frame, UdpFrameSpec, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use pollux_core::port::TxOffloads;
use pollux_core::wire::{
    l3_of, EthernetFrame, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket, IPPROTO_TCP, IPPROTO_UDP,
};
use pollux_core::{Burst, MacAddr, Mbuf, Mempool, RxFlags, RxQueue, TxFlags, TxOffload, TxQueue};

/// Forwarding modes, named as in dpdk-testpmd.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FwdMode {
    /// Forward packets unchanged to the paired port.
    Io,
    /// Rewrite source and destination MAC, then forward.
    Mac,
    /// Swap source and destination MAC, then forward.
    Macswap,
    /// Send generated UDP packets, receive nothing.
    Txonly,
    /// Receive and free.
    Rxonly,
    /// Like txonly, spreading packets over many flows (source addresses).
    Flowgen,
}

impl FwdMode {
    /// Whether the mode receives.
    pub fn receives(self) -> bool {
        !matches!(self, FwdMode::Txonly | FwdMode::Flowgen)
    }
}

/// What one stream publishes: `rx`, `tx` and `dropped` after every pass;
/// what rxonly recorded of the frames (when asked, see [`FwdConfig`])
/// once, when its lcore stops.
#[derive(Debug, Default)]
pub struct StreamCounters {
    pub rx: AtomicU64,
    pub tx: AtomicU64,
    pub dropped: AtomicU64,
    /// Frames the port flagged [`RxFlags::L4_CKSUM_GOOD`].
    pub rx_l4_cksum_good: AtomicU64,
    /// Frames the port flagged [`RxFlags::L4_CKSUM_BAD`].
    pub rx_l4_cksum_bad: AtomicU64,
    /// Frames the port flagged [`RxFlags::IP_CKSUM_BAD`].
    pub rx_ip_cksum_bad: AtomicU64,
    /// The distinct flows received.
    pub flows: Mutex<HashSet<FlowKey>>,
}

/// A flow as RSS tells flows apart: addresses, IP protocol and, for TCP
/// and UDP, the ports (0 for other protocols, fragments, and a transport
/// header too short to read).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
}

impl FlowKey {
    /// The flow of an Ethernet frame, through up to two VLAN tags: None
    /// for a frame that is not IPv4 or IPv6, or whose IP header is
    /// truncated. IPv6 extension headers are not walked: the flow's
    /// protocol is then the first Next Header, with no ports.
    pub fn of(frame: &[u8]) -> Option<FlowKey> {
        let l3 = l3_of(frame).ok()?;
        let pkt = &frame[l3.offset..];
        match l3.ethertype {
            ETHERTYPE_IPV4 => {
                let ip = Ipv4Packet::new_checked(pkt).ok()?;
                let proto = ip.protocol();
                let (src_port, dst_port) = if ip.is_fragment() {
                    (0, 0)
                } else {
                    l4_ports(proto, ip.payload())
                };
                Some(FlowKey {
                    src: ip.src_addr().into(),
                    dst: ip.dst_addr().into(),
                    proto,
                    src_port,
                    dst_port,
                })
            }
            ETHERTYPE_IPV6 => {
                let ip = Ipv6Packet::new_checked(pkt).ok()?;
                let proto = ip.next_header();
                let (src_port, dst_port) = l4_ports(proto, ip.payload());
                Some(FlowKey {
                    src: ip.src_addr().into(),
                    dst: ip.dst_addr().into(),
                    proto,
                    src_port,
                    dst_port,
                })
            }
            _ => None,
        }
    }
}

/// Source and destination port of a TCP or UDP header, (0, 0) for other
/// protocols and for a header the checked view refuses.
fn l4_ports(proto: u8, l4: &[u8]) -> (u16, u16) {
    match proto {
        IPPROTO_UDP => UdpPacket::new_checked(l4)
            .map(|u| (u.src_port(), u.dst_port()))
            .unwrap_or_default(),
        IPPROTO_TCP => TcpPacket::new_checked(l4)
            .map(|t| (t.src_port(), t.dst_port()))
            .unwrap_or_default(),
        _ => (0, 0),
    }
}

/// One stream's fixed description.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    pub rx_port: usize,
    pub rx_queue: u16,
    pub tx_port: usize,
    pub tx_queue: u16,
    pub counters: Arc<CachePadded<StreamCounters>>,
}

/// What every stream of a run shares.
#[derive(Debug, Clone)]
pub struct FwdConfig {
    pub mode: FwdMode,
    pub burst: usize,
    pub txpkts: usize,
    pub pool: Mempool,
    /// Source MAC per port (the port's own address).
    pub port_macs: Vec<MacAddr>,
    /// Destination MAC per port (`--eth-peer`).
    pub peer_macs: Vec<MacAddr>,
    pub udp: UdpFrameSpec,
    pub flows: u32,
    /// Transmit offloads the ports were configured with (`--tx-offloads`):
    /// txonly and flowgen leave the checksums asked to the port.
    pub tx_offloads: TxOffloads,
    /// rxonly counts the checksum flags of what it receives
    /// (`--rx-offloads`).
    pub count_rx_cksum: bool,
    /// rxonly records the flows each stream receives (`--flow-queues`).
    pub flow_queues: bool,
    /// txonly does DPDK's `--txonly-multi-flow` per-packet work (see
    /// [`generate_multi_flow`]); refused with `tx_offloads`.
    pub multi_flow: bool,
}

/// The queue handles one stream polls: its receive queue (none for
/// txonly/flowgen) and its transmit queue. rxonly sends nothing on its
/// transmit queue but calls it with an empty burst now and then, as every
/// mode does when idle: a port may send its own control frames then (a
/// bond whose members have no transmit queue to spare sends its LACPDUs
/// with queue 0, as DPDK's bonding does without dedicated queues).
pub struct StreamQueues {
    pub rx: Option<Box<dyn RxQueue>>,
    pub tx: Option<Box<dyn TxQueue>>,
}

impl std::fmt::Debug for StreamQueues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamQueues")
            .field("rx", &self.rx.is_some())
            .field("tx", &self.tx.is_some())
            .finish()
    }
}

struct Stream {
    spec: StreamSpec,
    q: StreamQueues,
    burst: Burst<Mbuf>,
    rx: u64,
    tx: u64,
    dropped: u64,
    /// Destination and source MAC for `mac` mode.
    macs: (MacAddr, MacAddr),
    /// The frame txonly and flowgen copy into every packet.
    template: Vec<u8>,
    /// The offload request every generated packet carries; None when no
    /// checksum is left to the port.
    tx_offload: Option<TxOffload>,
    next_flow: u32,
    /// txonly with `--txonly-multi-flow`: decided once, per stream.
    multi_flow: bool,
    /// Polls that received nothing, for the idle transmit call.
    idle: u32,
    /// What rxonly records of the frames it receives; None when nothing
    /// is asked.
    record: Option<RxRecord>,
}

/// What rxonly records of each frame it receives, when asked: the
/// checksum flags the port set, and the flows. Kept in the stream and
/// published once, at the end.
#[derive(Debug, Default)]
struct RxRecord {
    count_cksum: bool,
    record_flows: bool,
    l4_cksum_good: u64,
    l4_cksum_bad: u64,
    ip_cksum_bad: u64,
    flows: HashSet<FlowKey>,
}

impl RxRecord {
    #[inline]
    fn note(&mut self, m: &Mbuf) {
        if self.count_cksum {
            let f = m.rx().flags;
            self.l4_cksum_good += u64::from(f.contains(RxFlags::L4_CKSUM_GOOD));
            self.l4_cksum_bad += u64::from(f.contains(RxFlags::L4_CKSUM_BAD));
            self.ip_cksum_bad += u64::from(f.contains(RxFlags::IP_CKSUM_BAD));
        }
        if self.record_flows {
            if let Some(k) = FlowKey::of(m.data()) {
                self.flows.insert(k);
            }
        }
    }

    fn publish(&mut self, c: &StreamCounters) {
        c.rx_l4_cksum_good
            .store(self.l4_cksum_good, Ordering::Release);
        c.rx_l4_cksum_bad
            .store(self.l4_cksum_bad, Ordering::Release);
        c.rx_ip_cksum_bad
            .store(self.ip_cksum_bad, Ordering::Release);
        let mut flows = c.flows.lock().unwrap_or_else(|e| e.into_inner());
        *flows = std::mem::take(&mut self.flows);
    }
}

/// Idle polls between two empty transmit calls.
const IDLE_TX_EVERY: u32 = 64;

/// Calls the transmit queue with an empty burst every [`IDLE_TX_EVERY`]
/// idle polls.
#[inline(always)]
fn idle_tx(s: &mut Stream) {
    s.idle = s.idle.wrapping_add(1);
    if s.idle % IDLE_TX_EVERY == 0 {
        if let Some(tx) = s.q.tx.as_mut() {
            debug_assert!(s.burst.is_empty());
            tx.tx_burst(&mut s.burst);
        }
    }
}

/// The state DPDK 22.11 testpmd keeps per lcore for `--txonly-multi-flow`
/// (app/test-pmd/txonly.c): the per-lcore `_ip_var`, a u8 that starts at
/// 0, and what `pkt_burst_prepare` adds it to.
#[derive(Debug)]
struct MultiFlowSrc {
    /// `tx_ip_dst_addr`: the destination address, host order.
    dst: u32,
    /// `rte_lcore_id()`: the lcore id `run_lcore` was given (testpmd gives
    /// forwarding lcores 1 and up, as DPDK's does under `-l 0,1,..`).
    lcore: u32,
    ip_var: u8,
}

impl MultiFlowSrc {
    /// The next packet's source address, `(dst | ip_var++ << 8) + lcore`
    /// in 32-bit arithmetic, as txonly.c computes it.
    #[inline(always)]
    fn next(&mut self) -> Ipv4Addr {
        let a = (self.dst | (u32::from(self.ip_var) << 8)).wrapping_add(self.lcore);
        self.ip_var = self.ip_var.wrapping_add(1);
        Ipv4Addr::from(a)
    }

    /// Takes back the addresses of `n` packets the port did not take, as
    /// txonly.c does after the transmit call (`_ip_var -= nb_pkt - nb_tx`),
    /// so the next burst gives them again.
    #[inline(always)]
    fn unsent(&mut self, n: usize) {
        self.ip_var = self.ip_var.wrapping_sub(n as u8);
    }
}

/// Runs `streams` on forwarding lcore `lcore` until `stop` is set.
pub fn run_lcore(
    lcore: usize,
    streams: Vec<(StreamSpec, StreamQueues)>,
    cfg: &FwdConfig,
    stop: &StopFlag,
) {
    let hdr_len = pollux_core::net::UDP_FRAME_MIN;
    // Per lcore, as DPDK's is: the streams of one lcore share the counter.
    let mut multi_flow_src = MultiFlowSrc {
        dst: u32::from_be_bytes(cfg.udp.dst_ip),
        lcore: lcore as u32,
        ip_var: 0,
    };
    let mut streams: Vec<Stream> = streams
        .into_iter()
        .map(|(spec, q)| {
            let macs = (cfg.peer_macs[spec.tx_port], cfg.port_macs[spec.tx_port]);
            let mut udp = cfg.udp;
            udp.src_mac = cfg.port_macs[spec.tx_port];
            udp.dst_mac = cfg.peer_macs[spec.tx_port];
            // Build the whole frame once so the IP and UDP lengths are
            // right, then keep the header bytes that every packet gets.
            let mut frame = vec![0u8; cfg.txpkts];
            let ok = udp_frame(&mut frame, &udp);
            debug_assert!(ok, "txpkts validated by the caller");
            let tx_offload = if cfg.mode.receives() {
                None
            } else {
                offload_template(&mut frame, cfg.tx_offloads)
            };
            frame.truncate(hdr_len);
            let record = (cfg.mode == FwdMode::Rxonly && (cfg.count_rx_cksum || cfg.flow_queues))
                .then(|| RxRecord {
                    count_cksum: cfg.count_rx_cksum,
                    record_flows: cfg.flow_queues,
                    ..RxRecord::default()
                });
            Stream {
                spec,
                q,
                burst: Burst::new(cfg.burst),
                rx: 0,
                tx: 0,
                dropped: 0,
                macs,
                template: frame,
                tx_offload,
                next_flow: 0,
                multi_flow: cfg.mode == FwdMode::Txonly && cfg.multi_flow,
                idle: 0,
                record,
            }
        })
        .collect();
    while !stop.is_stopped() {
        for s in streams.iter_mut() {
            match cfg.mode {
                FwdMode::Io => forward(s, |_| {}),
                FwdMode::Mac => {
                    let (dst, src) = s.macs;
                    forward(s, |m| {
                        // A frame shorter than an Ethernet header goes out as it came.
                        if let Ok(mut eth) = EthernetFrame::new_checked(m.data_mut()) {
                            eth.set_dst_addr(dst);
                            eth.set_src_addr(src);
                        }
                    })
                }
                FwdMode::Macswap => forward(s, |m| {
                    if let Ok(mut eth) = EthernetFrame::new_checked(m.data_mut()) {
                        eth.swap_addrs();
                    }
                }),
                FwdMode::Rxonly => rxonly(s),
                // The offload and multi-flow choices are the stream's, made
                // once: a run without either runs the loop it always ran.
                FwdMode::Txonly if s.multi_flow => generate_multi_flow(s, cfg, &mut multi_flow_src),
                FwdMode::Txonly if s.tx_offload.is_none() => generate::<false, false>(s, cfg),
                FwdMode::Txonly => generate::<false, true>(s, cfg),
                FwdMode::Flowgen if s.tx_offload.is_none() => generate::<true, false>(s, cfg),
                FwdMode::Flowgen => generate::<true, true>(s, cfg),
            }
            let c = &s.spec.counters;
            c.rx.store(s.rx, Ordering::Relaxed);
            c.tx.store(s.tx, Ordering::Relaxed);
            c.dropped.store(s.dropped, Ordering::Relaxed);
        }
    }
    for s in &mut streams {
        let c = &s.spec.counters;
        c.rx.store(s.rx, Ordering::Release);
        c.tx.store(s.tx, Ordering::Release);
        c.dropped.store(s.dropped, Ordering::Release);
        if let Some(r) = s.record.as_mut() {
            r.publish(c);
        }
    }
}

/// Receives and frees, recording what the stream was asked to record.
#[inline(always)]
fn rxonly(s: &mut Stream) {
    let Some(rx) = s.q.rx.as_mut() else {
        return;
    };
    let n = rx.rx_burst(&mut s.burst);
    s.rx += n as u64;
    if let Some(r) = s.record.as_mut() {
        for m in s.burst.iter() {
            r.note(m);
        }
    }
    s.burst.clear();
    if n == 0 {
        idle_tx(s);
    }
}

#[inline(always)]
fn forward(s: &mut Stream, mut edit: impl FnMut(&mut Mbuf)) {
    let Some(rx) = s.q.rx.as_mut() else {
        return;
    };
    let n = rx.rx_burst(&mut s.burst);
    if n == 0 {
        idle_tx(s);
        return;
    }
    let Some(tx) = s.q.tx.as_mut() else {
        s.burst.clear();
        return;
    };
    s.rx += n as u64;
    for m in s.burst.iter_mut() {
        edit(m);
    }
    let sent = tx.tx_burst(&mut s.burst);
    s.tx += sent as u64;
    if !s.burst.is_empty() {
        // As testpmd without --retry: what the port did not take is dropped.
        s.dropped += s.burst.len() as u64;
        s.burst.clear();
    }
}

/// Sends a burst of generated packets: txonly's fixed frame, or with
/// `FLOWS` flowgen's, whose source address varies over `cfg.flows` flows.
/// With `OFFLOAD` every packet carries the stream's offload request.
#[inline(always)]
fn generate<const FLOWS: bool, const OFFLOAD: bool>(s: &mut Stream, cfg: &FwdConfig) {
    if s.q.tx.is_none() || !cfg.pool.alloc_bulk(&mut s.burst, cfg.burst) {
        return;
    }
    let len = cfg.txpkts;
    let off = s.tx_offload.unwrap_or_default();
    // What flowgen keeps right as the source address varies: the IPv4
    // header checksum, unless the port computes it (the field stays 0);
    // the UDP checksum field's pseudo-header sum, when the port completes
    // the UDP checksum.
    let fix_ip = !(OFFLOAD && off.flags.contains(TxFlags::IPV4_CKSUM));
    let fix_udp = OFFLOAD && off.flags.contains(TxFlags::UDP_CKSUM);
    let udp_at = ETH_HLEN + off.l3_len as usize;
    // The template is udp_frame()'s Ethernet + IPv4 + UDP header, so both
    // IPv4 views hold a whole fixed header and the UDP views a whole UDP
    // header.
    let (src, ip_sum, pseudo) = if FLOWS {
        let tmpl = Ipv4Packet::new_unchecked(&s.template[ETH_HLEN..]);
        let pseudo = if fix_udp {
            UdpPacket::new_unchecked(&s.template[udp_at..]).checksum()
        } else {
            0
        };
        (u32::from(tmpl.src_addr()), !tmpl.checksum(), pseudo)
    } else {
        (0, 0, 0)
    };
    for m in s.burst.iter_mut() {
        m.set_len(len);
        if OFFLOAD {
            *m.tx_mut() = off;
        }
        let d = m.data_mut();
        d[..s.template.len()].copy_from_slice(&s.template);
        if FLOWS {
            // Vary the low 16 bits of the source IPv4 address over `flows`
            // flows, and update the sums that cover it incrementally (RFC
            // 1624).
            let f = s.next_flow as u16;
            s.next_flow += 1;
            if s.next_flow == cfg.flows {
                s.next_flow = 0;
            }
            let old = src as u16;
            let new = old.wrapping_add(f);
            let mut ip = Ipv4Packet::new_unchecked(&mut d[ETH_HLEN..]);
            ip.set_src_addr(Ipv4Addr::from(src & 0xffff_0000 | new as u32));
            if fix_ip {
                ip.set_checksum(!replace_word(ip_sum, old, new));
            }
            if fix_udp {
                UdpPacket::new_unchecked(&mut d[udp_at..])
                    .set_checksum(replace_word(pseudo, old, new));
            }
        }
    }
    let sent = match s.q.tx.as_mut() {
        Some(tx) => tx.tx_burst(&mut s.burst),
        None => 0,
    };
    s.tx += sent as u64;
    if !s.burst.is_empty() {
        s.dropped += s.burst.len() as u64;
        s.burst.clear();
    }
}

/// Sends a burst of txonly packets as DPDK 22.11 testpmd's txonly does
/// with `--txonly-multi-flow`, with the same per-packet work
/// (app/test-pmd/txonly.c, `pkt_burst_prepare` and `update_pkt_header`):
/// copy the Ethernet and IPv4 headers, write the next source address
/// (see [`MultiFlowSrc`]), copy the UDP header, then write the UDP length
/// and the IPv4 total length and compute the whole IPv4 header checksum
/// anew (`rte_ipv4_cksum`, the field zeroed first). The UDP checksum stays
/// 0, and no offload is asked of the port.
#[inline(always)]
fn generate_multi_flow(s: &mut Stream, cfg: &FwdConfig, src: &mut MultiFlowSrc) {
    debug_assert!(s.tx_offload.is_none(), "refused with --tx-offloads");
    if s.q.tx.is_none() || !cfg.pool.alloc_bulk(&mut s.burst, cfg.burst) {
        return;
    }
    let len = cfg.txpkts;
    // The template is udp_frame()'s Ethernet + 20-byte IPv4 + UDP header.
    let udp_at = ETH_HLEN + IPV4_HLEN;
    let (l3, l4) = s.template.split_at(udp_at);
    let nb_pkt = s.burst.len();
    for m in s.burst.iter_mut() {
        m.set_len(len);
        let d = m.data_mut();
        d[..udp_at].copy_from_slice(l3);
        Ipv4Packet::new_unchecked(&mut d[ETH_HLEN..]).set_src_addr(src.next());
        d[udp_at..udp_at + l4.len()].copy_from_slice(l4);
        update_pkt_header(d, len);
    }
    let sent = match s.q.tx.as_mut() {
        Some(tx) => tx.tx_burst(&mut s.burst),
        None => 0,
    };
    src.unsent(nb_pkt - sent);
    s.tx += sent as u64;
    if !s.burst.is_empty() {
        s.dropped += s.burst.len() as u64;
        s.burst.clear();
    }
}

/// DPDK testpmd's `update_pkt_header` for a UDP/IPv4 frame of `len`
/// bytes with a 20-byte IPv4 header: the UDP length, then the IPv4 total
/// length and the header checksum over the whole header, computed anew.
#[inline(always)]
fn update_pkt_header(frame: &mut [u8], len: usize) {
    let udp_len = (len - ETH_HLEN - IPV4_HLEN) as u16;
    UdpPacket::new_unchecked(&mut frame[ETH_HLEN + IPV4_HLEN..]).set_len(udp_len);
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[ETH_HLEN..]);
    ip.set_total_len(udp_len + IPV4_HLEN as u16);
    // Zeroes the field, then sums the IHL octets: rte_ipv4_cksum's work.
    ip.fill_checksum();
}

/// Folds a ones'-complement sum to 16 bits (RFC 1071), uncomplemented.
#[inline(always)]
fn fold(sum: u32) -> u16 {
    let sum = (sum & 0xffff) + (sum >> 16);
    ((sum & 0xffff) + (sum >> 16)) as u16
}

/// A folded ones'-complement sum with the 16-bit word `old` replaced by
/// `new`: RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'), on the uncomplemented
/// sum ~HC.
#[inline(always)]
fn replace_word(sum: u16, old: u16, new: u16) -> u16 {
    fold(sum as u32 + (!old) as u32 + new as u32)
}

/// Readies a whole `udp_frame()` for the checksum offloads in `offloads`
/// and returns the request each packet built from it carries, or None
/// when none applies to a UDP/IPv4 frame (`tcp_cksum` alone).
///
/// `udp_cksum`: the UDP checksum field holds the IPv4 pseudo-header sum,
/// folded and not complemented, which is what an offloading NIC (and a
/// virtio device asked for NEEDS_CSUM) adds the rest of the datagram to.
/// `ipv4_cksum`: the header checksum is 0, as DPDK's
/// `RTE_MBUF_F_TX_IP_CKSUM` asks. Both also set [`TxFlags::IPV4`], and
/// the header lengths are the frame's own.
fn offload_template(frame: &mut [u8], offloads: TxOffloads) -> Option<TxOffload> {
    // udp_frame() wrote a whole, consistent IPv4 header: this parses.
    let mut ip = Ipv4Packet::new_checked(frame.get_mut(ETH_HLEN..)?).ok()?;
    let mut o = TxOffload {
        l2_len: ETH_HLEN as u8,
        l3_len: ip.header_len() as u16,
        ..TxOffload::default()
    };
    if offloads.contains(TxOffloads::UDP_CKSUM) {
        let pseudo = fold(ip.pseudo_header_sum());
        UdpPacket::new_unchecked(ip.payload_mut()).set_checksum(pseudo);
        o.flags |= TxFlags::UDP_CKSUM | TxFlags::IPV4;
    }
    if offloads.contains(TxOffloads::IPV4_CKSUM) {
        ip.set_checksum(0);
        o.flags |= TxFlags::IPV4_CKSUM | TxFlags::IPV4;
    }
    (!o.flags.is_empty()).then_some(o)
}

const ETH_HLEN: usize = EthernetFrame::<&[u8]>::HEADER_LEN;
/// The IPv4 header udp_frame() writes: the fixed header, no options.
const IPV4_HLEN: usize = Ipv4Packet::<&[u8]>::HEADER_LEN;

/// DPDK testpmd's stream layout: ports paired 0-1, 2-3, ...; an odd last
/// port is paired with itself; one stream per port and queue.
pub fn build_streams(nb_ports: usize, queues: u16, mode: FwdMode) -> Vec<StreamSpec> {
    let mut out = Vec::new();
    for p in 0..nb_ports {
        let peer = if p % 2 == 0 {
            if p + 1 < nb_ports {
                p + 1
            } else {
                p
            }
        } else {
            p - 1
        };
        // txonly/flowgen send on the port itself, as testpmd does.
        let tx_port = if mode.receives() && mode != FwdMode::Rxonly {
            peer
        } else {
            p
        };
        for q in 0..queues {
            out.push(StreamSpec {
                rx_port: p,
                rx_queue: q,
                tx_port,
                tx_queue: q,
                counters: Arc::new(CachePadded::new(StreamCounters::default())),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pollux_core::net::internet_checksum;
    use pollux_core::{AnonMemory, MempoolConfig};

    #[test]
    fn flowgen_headers_verify_for_every_flow() {
        let pool = Mempool::new(MempoolConfig::new("t", 1024), &AnonMemory::default()).unwrap();
        let q = StreamQueues {
            rx: None,
            tx: Some(Box::new(CaptureTx::default())),
        };
        let cfg = FwdConfig {
            mode: FwdMode::Flowgen,
            burst: 32,
            txpkts: 64,
            pool: pool.clone(),
            port_macs: vec![MacAddr([2, 0, 0, 0, 0, 1])],
            peer_macs: vec![MacAddr([2, 0, 0, 0, 0, 2])],
            // 255.255 low bytes: adding the flow number wraps the word.
            udp: UdpFrameSpec {
                src_ip: [10, 0, 0xff, 0xf0],
                ..UdpFrameSpec::default()
            },
            flows: 100,
            tx_offloads: TxOffloads::empty(),
            count_rx_cksum: false,
            flow_queues: false,
            multi_flow: false,
        };
        let mut streams = build_streams(1, 1, FwdMode::Flowgen);
        let stop = StopFlag::new();
        let stop2 = stop.clone();
        let spec = streams.remove(0);
        let counters = spec.counters.clone();
        let t = std::thread::spawn(move || run_lcore(0, vec![(spec, q)], &cfg, &stop2));
        std::thread::sleep(std::time::Duration::from_millis(50));
        stop.stop();
        t.join().unwrap();
        assert!(counters.tx.load(Ordering::Acquire) > 0, "flowgen sent");
        assert_eq!(pool.available(), pool.size());
    }

    /// Checks every frame it is given, then frees it.
    #[derive(Default)]
    struct CaptureTx {
        seen: std::collections::HashSet<[u8; 4]>,
    }

    impl TxQueue for CaptureTx {
        fn tx_burst(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
            let n = pkts.len();
            for m in pkts.drain() {
                let d = m.data();
                assert_eq!(internet_checksum(&d[14..34], 0), 0, "IPv4 header checksum");
                self.seen.insert([d[26], d[27], d[28], d[29]]);
            }
            assert!(self.seen.len() <= 100, "at most `flows` sources");
            n
        }
    }

    /// Hands out `frames` once, each with its receive flags, then nothing.
    struct OnceRx {
        pool: Mempool,
        frames: Vec<(Vec<u8>, RxFlags)>,
    }

    impl RxQueue for OnceRx {
        fn rx_burst(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
            let n = self.frames.len();
            for (f, flags) in self.frames.drain(..) {
                let mut m = self.pool.alloc().unwrap();
                assert!(m.set_len(f.len()));
                m.data_mut().copy_from_slice(&f);
                m.rx_mut().flags = flags;
                pkts.push(m).unwrap();
            }
            n
        }
    }

    /// Keeps a copy of every frame sent.
    struct KeepTx(std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

    impl TxQueue for KeepTx {
        fn tx_burst(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
            let n = pkts.len();
            let mut v = self.0.lock().unwrap();
            v.extend(pkts.drain().map(|m| m.data().to_vec()));
            n
        }
    }

    /// What `mode` makes of `frames` on the way from port 0 to port 1.
    fn forwarded(mode: FwdMode, frames: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        let pool = Mempool::new(MempoolConfig::new("f", 64), &AnonMemory::default()).unwrap();
        let sent = std::sync::Arc::default();
        let q = StreamQueues {
            rx: Some(Box::new(OnceRx {
                pool: pool.clone(),
                frames: frames.into_iter().map(|f| (f, RxFlags::empty())).collect(),
            })),
            tx: Some(Box::new(KeepTx(std::sync::Arc::clone(&sent)))),
        };
        let cfg = FwdConfig {
            mode,
            burst: 32,
            txpkts: 64,
            pool: pool.clone(),
            port_macs: vec![
                MacAddr([2, 0, 0, 0, 0, 0xa0]),
                MacAddr([2, 0, 0, 0, 0, 0xa1]),
            ],
            peer_macs: vec![
                MacAddr([2, 0, 0, 0, 0, 0xb0]),
                MacAddr([2, 0, 0, 0, 0, 0xb1]),
            ],
            udp: UdpFrameSpec::default(),
            flows: 1,
            tx_offloads: TxOffloads::empty(),
            count_rx_cksum: false,
            flow_queues: false,
            multi_flow: false,
        };
        let spec = build_streams(2, 1, mode).remove(0);
        let stop = StopFlag::new();
        let stop2 = stop.clone();
        let t = std::thread::spawn(move || run_lcore(0, vec![(spec, q)], &cfg, &stop2));
        std::thread::sleep(std::time::Duration::from_millis(30));
        stop.stop();
        t.join().unwrap();
        assert_eq!(pool.available(), pool.size());
        let v = std::mem::take(&mut *sent.lock().unwrap());
        v
    }

    #[test]
    fn mac_modes_rewrite_the_ethernet_header_only() {
        let mut f = vec![0u8; 60];
        assert!(udp_frame(&mut f, &UdpFrameSpec::default()));
        let runt = vec![0xee; 13];
        let out = forwarded(FwdMode::Macswap, vec![f.clone(), runt.clone()]);
        let mut want = f.clone();
        want[..6].copy_from_slice(&f[6..12]);
        want[6..12].copy_from_slice(&f[..6]);
        assert_eq!(out, vec![want, runt.clone()]);
        let out = forwarded(FwdMode::Mac, vec![f.clone(), runt.clone()]);
        // Stream 0 receives on port 0 and sends on port 1: its peer, its MAC.
        let mut want = f.clone();
        want[..12].copy_from_slice(&[2, 0, 0, 0, 0, 0xb1, 2, 0, 0, 0, 0, 0xa1]);
        assert_eq!(out, vec![want, runt]);
    }

    #[test]
    fn streams_pair_ports_like_testpmd() {
        let s = build_streams(3, 1, FwdMode::Io);
        let pairs: Vec<_> = s.iter().map(|s| (s.rx_port, s.tx_port)).collect();
        assert_eq!(pairs, vec![(0, 1), (1, 0), (2, 2)]);
        let s = build_streams(2, 2, FwdMode::Txonly);
        let pairs: Vec<_> = s
            .iter()
            .map(|s| (s.rx_port, s.tx_port, s.tx_queue))
            .collect();
        assert_eq!(pairs, vec![(0, 0, 0), (0, 0, 1), (1, 1, 0), (1, 1, 1)]);
    }

    /// Keeps a copy of the first [`SampleTx::KEEP`] frames sent, with
    /// their offload requests; frees the rest.
    struct SampleTx(Arc<Mutex<Vec<Sent>>>);

    /// A frame sent and its offload request.
    type Sent = (Vec<u8>, TxOffload);

    impl SampleTx {
        const KEEP: usize = 256;
    }

    impl TxQueue for SampleTx {
        fn tx_burst(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
            let n = pkts.len();
            let mut v = self.0.lock().unwrap();
            for m in pkts.drain() {
                if v.len() < Self::KEEP {
                    v.push((m.data().to_vec(), *m.tx()));
                }
            }
            n
        }
    }

    /// The first frames `mode` (txonly or flowgen) generates over `flows`
    /// flows from `src_ip` with `tx_offloads`, and their offload requests.
    fn generated(mode: FwdMode, tx_offloads: TxOffloads, flows: u32, src_ip: [u8; 4]) -> Vec<Sent> {
        let pool = Mempool::new(MempoolConfig::new("g", 1024), &AnonMemory::default()).unwrap();
        let sent = Arc::default();
        let q = StreamQueues {
            rx: None,
            tx: Some(Box::new(SampleTx(Arc::clone(&sent)))),
        };
        let cfg = FwdConfig {
            mode,
            burst: 32,
            // An odd length: the checksum covers a last, lone byte.
            txpkts: 101,
            pool: pool.clone(),
            port_macs: vec![MacAddr([2, 0, 0, 0, 0, 1])],
            peer_macs: vec![MacAddr([2, 0, 0, 0, 0, 2])],
            udp: UdpFrameSpec {
                src_ip,
                ..UdpFrameSpec::default()
            },
            flows,
            tx_offloads,
            count_rx_cksum: false,
            flow_queues: false,
            multi_flow: false,
        };
        let spec = build_streams(1, 1, mode).remove(0);
        let stop = StopFlag::new();
        let stop2 = stop.clone();
        let t = std::thread::spawn(move || run_lcore(0, vec![(spec, q)], &cfg, &stop2));
        while sent.lock().unwrap().len() < SampleTx::KEEP {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        stop.stop();
        t.join().unwrap();
        assert_eq!(pool.available(), pool.size());
        let v = std::mem::take(&mut *sent.lock().unwrap());
        v
    }

    /// The IPv4 pseudo-header sum of a UDP/IPv4 frame with a 20-byte IP
    /// header, folded, from the bytes: source, destination, protocol 17,
    /// UDP length.
    fn pseudo_sum_of(f: &[u8]) -> u16 {
        let word = |at: usize| u16::from_be_bytes([f[at], f[at + 1]]) as u32;
        let mut sum = word(26) + word(28) + word(30) + word(32) + 17 + word(38);
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    /// Completes the UDP checksum as an offloading NIC does (the ones'
    /// complement of the sum over the datagram, whose checksum field holds
    /// the pseudo-header sum; 0 goes out as 0xffff), then checks it as a
    /// receiver does, over pseudo-header, header and payload.
    fn complete_udp_checksum(f: &mut [u8]) {
        let ip = Ipv4Packet::new_checked(&f[ETH_HLEN..]).unwrap();
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let pseudo = ip.pseudo_header_sum();
        let at = ETH_HLEN + ip.header_len();
        let end = ETH_HLEN + ip.total_len() as usize;
        let udp = &mut f[at..end];
        let c = match internet_checksum(udp, 0) {
            0 => 0xffff,
            c => c,
        };
        udp[6..8].copy_from_slice(&c.to_be_bytes());
        assert_eq!(internet_checksum(udp, pseudo), 0, "completed UDP checksum");
        let u = UdpPacket::new_checked(&*udp).unwrap();
        assert!(u.checksum() != 0 && u.verify_checksum_v4(src, dst));
    }

    #[test]
    fn txonly_without_offloads_asks_nothing_of_the_port() {
        for (f, off) in generated(FwdMode::Txonly, TxOffloads::empty(), 1, [10, 0, 0, 1]) {
            assert_eq!(off, TxOffload::default());
            assert_eq!(internet_checksum(&f[14..34], 0), 0, "IPv4 header checksum");
            assert_eq!(&f[40..42], &[0, 0], "no UDP checksum");
        }
    }

    #[test]
    fn txonly_with_udp_cksum_leaves_the_pseudo_header_sum_to_the_port() {
        let frames = generated(FwdMode::Txonly, TxOffloads::UDP_CKSUM, 1, [10, 0, 0, 1]);
        assert_eq!(frames.len(), SampleTx::KEEP);
        for (mut f, off) in frames {
            assert_eq!(f.len(), 101);
            assert_eq!(off.flags, TxFlags::UDP_CKSUM | TxFlags::IPV4);
            assert_eq!((off.l2_len, off.l3_len), (14, 20));
            let field = u16::from_be_bytes([f[40], f[41]]);
            assert_eq!(field, pseudo_sum_of(&f), "folded, not complemented");
            assert_eq!(internet_checksum(&f[14..34], 0), 0, "IPv4 header checksum");
            complete_udp_checksum(&mut f);
        }
    }

    #[test]
    fn txonly_with_ipv4_cksum_leaves_the_header_checksum_zero() {
        let both = TxOffloads::UDP_CKSUM | TxOffloads::IPV4_CKSUM;
        for (mut f, off) in generated(FwdMode::Txonly, both, 1, [10, 0, 0, 1]) {
            assert_eq!(
                off.flags,
                TxFlags::UDP_CKSUM | TxFlags::IPV4_CKSUM | TxFlags::IPV4
            );
            assert_eq!(&f[24..26], &[0, 0], "IPv4 header checksum left to the port");
            let c = internet_checksum(&f[14..34], 0);
            f[24..26].copy_from_slice(&c.to_be_bytes());
            assert!(Ipv4Packet::new_checked(&f[14..]).unwrap().verify_checksum());
            complete_udp_checksum(&mut f);
        }
        // tcp_cksum alone has nothing to do in a UDP frame.
        for (f, off) in generated(FwdMode::Txonly, TxOffloads::TCP_CKSUM, 1, [10, 0, 0, 1]) {
            assert_eq!(off, TxOffload::default());
            assert_eq!(&f[40..42], &[0, 0]);
        }
    }

    #[test]
    fn flowgen_with_udp_cksum_completes_to_a_valid_checksum_for_every_flow() {
        for extra in [TxOffloads::empty(), TxOffloads::IPV4_CKSUM] {
            // 255.240 low bytes: adding the flow number wraps the word.
            let frames = generated(
                FwdMode::Flowgen,
                TxOffloads::UDP_CKSUM | extra,
                100,
                [10, 0, 0xff, 0xf0],
            );
            let mut sources = HashSet::new();
            for (mut f, off) in frames {
                assert!(off.flags.contains(TxFlags::UDP_CKSUM | TxFlags::IPV4));
                assert_eq!((off.l2_len, off.l3_len), (14, 20));
                sources.insert([f[26], f[27], f[28], f[29]]);
                assert_eq!(u16::from_be_bytes([f[40], f[41]]), pseudo_sum_of(&f));
                if extra.is_empty() {
                    assert_eq!(internet_checksum(&f[14..34], 0), 0, "IPv4 header checksum");
                } else {
                    assert_eq!(&f[24..26], &[0, 0], "left to the port");
                }
                complete_udp_checksum(&mut f);
            }
            assert_eq!(sources.len(), 100, "every flow checked");
        }
    }

    /// Takes at most `take` frames of each burst (the rest stay for the
    /// caller to drop), keeping a copy of the first [`SampleTx::KEEP`]
    /// taken, in order, in a list ports may share.
    struct TakeTx {
        take: usize,
        sent: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    impl TxQueue for TakeTx {
        fn tx_burst(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
            let mut v = self.sent.lock().unwrap();
            let mut n = 0;
            while n < self.take {
                let Some(m) = pkts.pop_front() else { break };
                if v.len() < SampleTx::KEEP {
                    v.push(m.data().to_vec());
                }
                n += 1;
            }
            n
        }
    }

    /// txonly with --txonly-multi-flow to `dst_ip` on forwarding lcore
    /// `lcore`: `ports` streams on that lcore (one per port), each port
    /// taking at most `take` frames of a burst of 32. The first
    /// [`SampleTx::KEEP`] frames the ports took, in the order they took them.
    fn multi_flow_frames(lcore: usize, dst_ip: [u8; 4], ports: usize, take: usize) -> Vec<Vec<u8>> {
        let pool = Mempool::new(MempoolConfig::new("m", 1024), &AnonMemory::default()).unwrap();
        let sent: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let streams = build_streams(ports, 1, FwdMode::Txonly)
            .into_iter()
            .map(|spec| {
                let tx: Box<dyn TxQueue> = Box::new(TakeTx {
                    take,
                    sent: Arc::clone(&sent),
                });
                (
                    spec,
                    StreamQueues {
                        rx: None,
                        tx: Some(tx),
                    },
                )
            })
            .collect();
        let cfg = FwdConfig {
            mode: FwdMode::Txonly,
            burst: 32,
            txpkts: 101,
            pool: pool.clone(),
            port_macs: vec![MacAddr([2, 0, 0, 0, 0, 1]); ports],
            peer_macs: vec![MacAddr([2, 0, 0, 0, 0, 2]); ports],
            udp: UdpFrameSpec {
                dst_ip,
                ..UdpFrameSpec::default()
            },
            flows: 1,
            tx_offloads: TxOffloads::empty(),
            count_rx_cksum: false,
            flow_queues: false,
            multi_flow: true,
        };
        let stop = StopFlag::new();
        let stop2 = stop.clone();
        let t = std::thread::spawn(move || run_lcore(lcore, streams, &cfg, &stop2));
        while sent.lock().unwrap().len() < SampleTx::KEEP {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        stop.stop();
        t.join().unwrap();
        assert_eq!(pool.available(), pool.size());
        let v = std::mem::take(&mut *sent.lock().unwrap());
        v
    }

    /// Checks that frame `i` of `frames` is txonly's 101-byte frame to
    /// `dst_ip` from DPDK's multi-flow source for the `i`th packet of
    /// `lcore`, `(dst | (i mod 256) << 8) + lcore`, with every length
    /// right and a whole IPv4 header checksum that verifies.
    fn assert_dpdk_multi_flow(frames: &[Vec<u8>], lcore: u32, dst_ip: [u8; 4]) {
        assert_eq!(frames.len(), SampleTx::KEEP);
        let dst = u32::from_be_bytes(dst_ip);
        for (i, f) in frames.iter().enumerate() {
            let src = (dst | ((i as u32 % 256) << 8)).wrapping_add(lcore);
            let ip = Ipv4Packet::new_checked(&f[ETH_HLEN..]).unwrap();
            assert_eq!(ip.src_addr(), Ipv4Addr::from(src), "frame {i}");
            assert!(ip.verify_checksum(), "frame {i}: IPv4 header checksum");
            assert_eq!(internet_checksum(&f[14..34], 0), 0, "frame {i}");
            assert_eq!(ip.total_len(), 101 - 14, "frame {i}");
            let udp = UdpPacket::new_checked(ip.payload()).unwrap();
            assert_eq!((udp.len(), udp.checksum()), (101 - 34, 0), "frame {i}");
            // Byte for byte the frame plain txonly builds for that source.
            let mut want = vec![0u8; 101];
            assert!(udp_frame(
                &mut want,
                &UdpFrameSpec {
                    src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
                    dst_mac: MacAddr([2, 0, 0, 0, 0, 2]),
                    src_ip: src.to_be_bytes(),
                    dst_ip,
                    ..UdpFrameSpec::default()
                }
            ));
            assert_eq!(f, &want, "frame {i}");
        }
    }

    #[test]
    fn multi_flow_sources_follow_dpdks_formula_and_every_header_verifies() {
        // Low byte 0xfe plus lcore 3 carries into the third byte, and for
        // ip_var 255 into the second: the sum is over the whole address.
        let dst = [10, 1, 15, 0xfe];
        let frames = multi_flow_frames(3, dst, 1, 32);
        assert_dpdk_multi_flow(&frames, 3, dst);
        let src = |i: usize| {
            Ipv4Packet::new_checked(&frames[i][14..])
                .unwrap()
                .src_addr()
        };
        assert_eq!(src(0), Ipv4Addr::new(10, 1, 16, 1));
        assert_eq!(src(0x10), Ipv4Addr::new(10, 1, 32, 1));
        assert_eq!(src(255), Ipv4Addr::new(10, 2, 0, 1));
        // The counter is ORed into the third byte, not added: bits the
        // destination has there (0x0f) take no part, so 1..=15 give the
        // address 0 gives, and 256 packets make 16 flows.
        assert_eq!(src(1), src(0));
        let distinct: HashSet<_> = (0..frames.len()).map(src).collect();
        assert_eq!(distinct.len(), 16);
        let dst = [10, 1, 0, 0xfe];
        let frames = multi_flow_frames(3, dst, 1, 32);
        assert_dpdk_multi_flow(&frames, 3, dst);
        let distinct: HashSet<_> = frames
            .iter()
            .map(|f| Ipv4Packet::new_checked(&f[14..]).unwrap().src_addr())
            .collect();
        assert_eq!(distinct.len(), 256, "one flow per value of the u8 counter");
    }

    #[test]
    fn multi_flow_gives_the_sources_of_unsent_packets_again() {
        // The port takes 20 of every 32: the 12 it leaves are dropped, and
        // their sources go to the next burst, as in DPDK's txonly.
        let dst = [198, 18, 0, 2];
        assert_dpdk_multi_flow(&multi_flow_frames(0, dst, 1, 20), 0, dst);
    }

    #[test]
    fn multi_flow_streams_of_one_lcore_share_its_counter_as_in_dpdk() {
        // Two streams on lcore 1 take turns, one burst each: the counter
        // runs on across them (DPDK's is per lcore, not per stream).
        let dst = [198, 18, 0, 2];
        assert_dpdk_multi_flow(&multi_flow_frames(1, dst, 2, 32), 1, dst);
    }

    /// An IPv4 (or, with `v6`, IPv6) frame of `proto` from `src` port
    /// `sport` to port 9, behind `tags` 802.1Q tags.
    fn ip_frame(v6: bool, proto: u8, src: u8, sport: u16, tags: usize) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        for _ in 0..tags {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
        }
        let l4_len = if proto == IPPROTO_TCP { 20 } else { 8 };
        if v6 {
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend_from_slice(&(l4_len as u16).to_be_bytes());
            f.extend_from_slice(&[proto, 64]);
            f.extend_from_slice(&[0xfd; 15]);
            f.push(src);
            f.extend_from_slice(&[0xfd; 16]);
        } else {
            f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
            f.extend_from_slice(&(20 + l4_len as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0, 10, 0, 0, src, 10, 0, 0, 2]);
        }
        let mut l4 = vec![0u8; l4_len];
        l4[..2].copy_from_slice(&sport.to_be_bytes());
        l4[2..4].copy_from_slice(&9u16.to_be_bytes());
        if proto == IPPROTO_TCP {
            l4[12] = 0x50;
        } else {
            l4[4..6].copy_from_slice(&8u16.to_be_bytes());
        }
        f.extend_from_slice(&l4);
        f
    }

    #[test]
    fn flow_keys_of_ip_frames_through_tags() {
        let k = FlowKey::of(&ip_frame(false, IPPROTO_UDP, 1, 1000, 0)).unwrap();
        assert_eq!(
            k,
            FlowKey {
                src: IpAddr::from([10, 0, 0, 1]),
                dst: IpAddr::from([10, 0, 0, 2]),
                proto: IPPROTO_UDP,
                src_port: 1000,
                dst_port: 9,
            }
        );
        assert_eq!(
            FlowKey::of(&ip_frame(false, IPPROTO_UDP, 1, 1000, 1)),
            Some(k)
        );
        assert_eq!(
            FlowKey::of(&ip_frame(false, IPPROTO_UDP, 1, 1000, 2)),
            Some(k)
        );
        let t = FlowKey::of(&ip_frame(false, IPPROTO_TCP, 1, 1000, 0)).unwrap();
        assert_eq!((t.proto, t.src_port, t.dst_port), (IPPROTO_TCP, 1000, 9));
        let v6 = FlowKey::of(&ip_frame(true, IPPROTO_UDP, 7, 53, 1)).unwrap();
        assert!(v6.src.is_ipv6() && (v6.src_port, v6.dst_port) == (53, 9));
        // A fragment (MF set) is an L3 flow; an ICMP packet has no ports.
        let mut frag = ip_frame(false, IPPROTO_UDP, 1, 1000, 0);
        frag[20] |= 0x20;
        let k = FlowKey::of(&frag).unwrap();
        assert_eq!((k.src_port, k.dst_port), (0, 0));
        let k = FlowKey::of(&ip_frame(false, 1, 1, 1000, 0)).unwrap();
        assert_eq!((k.proto, k.src_port), (1, 0));
        // Not IP, or cut short within the IP header: no flow.
        let mut arp = ip_frame(false, IPPROTO_UDP, 1, 1000, 0);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(FlowKey::of(&arp), None);
        assert_eq!(
            FlowKey::of(&ip_frame(false, IPPROTO_UDP, 1, 1000, 0)[..30]),
            None
        );
        assert_eq!(FlowKey::of(&[0xee; 13]), None);
    }

    /// Runs rxonly streams, one per queue of one port, each receiving
    /// its frames once; returns the streams' specs (their counters).
    fn received(
        count_rx_cksum: bool,
        flow_queues: bool,
        per_queue: Vec<Vec<(Vec<u8>, RxFlags)>>,
    ) -> Vec<StreamSpec> {
        let pool = Mempool::new(MempoolConfig::new("r", 256), &AnonMemory::default()).unwrap();
        let specs = build_streams(1, per_queue.len() as u16, FwdMode::Rxonly);
        let streams = specs
            .iter()
            .cloned()
            .zip(per_queue)
            .map(|(spec, frames)| {
                let rx: Box<dyn RxQueue> = Box::new(OnceRx {
                    pool: pool.clone(),
                    frames,
                });
                (
                    spec,
                    StreamQueues {
                        rx: Some(rx),
                        tx: None,
                    },
                )
            })
            .collect();
        let cfg = FwdConfig {
            mode: FwdMode::Rxonly,
            burst: 32,
            txpkts: 64,
            pool: pool.clone(),
            port_macs: vec![MacAddr([2, 0, 0, 0, 0, 1])],
            peer_macs: vec![MacAddr([2, 0, 0, 0, 0, 2])],
            udp: UdpFrameSpec::default(),
            flows: 1,
            tx_offloads: TxOffloads::empty(),
            count_rx_cksum,
            flow_queues,
            multi_flow: false,
        };
        let stop = StopFlag::new();
        let stop2 = stop.clone();
        let t = std::thread::spawn(move || run_lcore(0, streams, &cfg, &stop2));
        std::thread::sleep(std::time::Duration::from_millis(30));
        stop.stop();
        t.join().unwrap();
        assert_eq!(pool.available(), pool.size());
        specs
    }

    #[test]
    fn rxonly_records_each_queues_flows_and_checksum_flags() {
        let a = ip_frame(false, IPPROTO_UDP, 1, 1000, 0);
        let b = ip_frame(false, IPPROTO_UDP, 1, 1001, 0);
        let c = ip_frame(false, IPPROTO_UDP, 3, 1000, 1);
        let d = ip_frame(true, IPPROTO_UDP, 4, 1000, 0);
        let e = ip_frame(false, IPPROTO_TCP, 1, 1000, 0);
        let mut not_ip = a.clone();
        not_ip[12..14].copy_from_slice(&[0x88, 0xb5]);
        let good = RxFlags::L4_CKSUM_GOOD | RxFlags::IP_CKSUM_GOOD;
        let bad = RxFlags::L4_CKSUM_BAD | RxFlags::IP_CKSUM_BAD;
        let per_queue = vec![
            vec![
                (a.clone(), good),
                (b.clone(), bad),
                (a.clone(), good),
                (not_ip, RxFlags::empty()),
                (c.clone(), RxFlags::IP_CKSUM_BAD),
            ],
            vec![
                (b.clone(), good),
                (d.clone(), RxFlags::L4_CKSUM_GOOD),
                (e.clone(), RxFlags::empty()),
                (vec![0xee; 13], RxFlags::L4_CKSUM_BAD),
            ],
        ];
        let specs = received(true, true, per_queue.clone());
        let keys = |fs: &[&Vec<u8>]| -> HashSet<FlowKey> {
            fs.iter().map(|f| FlowKey::of(f).unwrap()).collect()
        };
        let c0 = &specs[0].counters;
        let c1 = &specs[1].counters;
        assert_eq!(c0.rx.load(Ordering::Acquire), 5);
        assert_eq!(*c0.flows.lock().unwrap(), keys(&[&a, &b, &c]));
        assert_eq!(*c1.flows.lock().unwrap(), keys(&[&b, &d, &e]));
        let counts = |c: &StreamCounters| {
            [
                c.rx_l4_cksum_good.load(Ordering::Acquire),
                c.rx_l4_cksum_bad.load(Ordering::Acquire),
                c.rx_ip_cksum_bad.load(Ordering::Acquire),
            ]
        };
        assert_eq!(counts(c0), [2, 1, 2]);
        assert_eq!(counts(c1), [2, 1, 0]);
        // Not asked, not done.
        let specs = received(false, false, per_queue);
        assert_eq!(specs[0].counters.rx.load(Ordering::Acquire), 5);
        assert_eq!(counts(&specs[0].counters), [0, 0, 0]);
        assert!(specs[1].counters.flows.lock().unwrap().is_empty());
    }
}
