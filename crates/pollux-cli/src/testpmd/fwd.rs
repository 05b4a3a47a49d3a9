//! The forwarding engines: what one lcore does with its streams.
//!
//! A stream is DPDK testpmd's unit of work: receive from one port queue,
//! forward to one port queue (or only receive, or only send). A stream owns
//! the queue handles it uses ([`StreamQueues`]), and every handle belongs
//! to exactly one stream, so the lcore that runs a stream polls its queues
//! with no lock. Each lcore runs its streams round-robin until told to stop
//! and publishes its counters after every pass with plain relaxed stores,
//! so the stats thread can read them without slowing the loop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;
use pollux_core::lcore::StopFlag;
use std::net::Ipv4Addr;

use pollux_core::net::{udp_frame, UdpFrameSpec};
use pollux_core::wire::{EthernetFrame, Ipv4Packet};
use pollux_core::{Burst, MacAddr, Mbuf, Mempool, RxQueue, TxQueue};

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

/// Counters one stream publishes.
#[derive(Debug, Default)]
pub struct StreamCounters {
    pub rx: AtomicU64,
    pub tx: AtomicU64,
    pub dropped: AtomicU64,
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
    next_flow: u32,
    /// Polls that received nothing, for the idle transmit call.
    idle: u32,
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

/// Runs `streams` on this lcore until `stop` is set.
pub fn run_lcore(streams: Vec<(StreamSpec, StreamQueues)>, cfg: &FwdConfig, stop: &StopFlag) {
    let hdr_len = pollux_core::net::UDP_FRAME_MIN;
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
            frame.truncate(hdr_len);
            Stream {
                spec,
                q,
                burst: Burst::new(cfg.burst),
                rx: 0,
                tx: 0,
                dropped: 0,
                macs,
                template: frame,
                next_flow: 0,
                idle: 0,
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
                FwdMode::Rxonly => {
                    if let Some(rx) = s.q.rx.as_mut() {
                        let n = rx.rx_burst(&mut s.burst);
                        s.rx += n as u64;
                        s.burst.clear();
                        if n == 0 {
                            idle_tx(s);
                        }
                    }
                }
                FwdMode::Txonly => generate(s, cfg, false),
                FwdMode::Flowgen => generate(s, cfg, true),
            }
            let c = &s.spec.counters;
            c.rx.store(s.rx, Ordering::Relaxed);
            c.tx.store(s.tx, Ordering::Relaxed);
            c.dropped.store(s.dropped, Ordering::Relaxed);
        }
    }
    for s in &streams {
        let c = &s.spec.counters;
        c.rx.store(s.rx, Ordering::Release);
        c.tx.store(s.tx, Ordering::Release);
        c.dropped.store(s.dropped, Ordering::Release);
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

#[inline(always)]
fn generate(s: &mut Stream, cfg: &FwdConfig, flows: bool) {
    if s.q.tx.is_none() || !cfg.pool.alloc_bulk(&mut s.burst, cfg.burst) {
        return;
    }
    let len = cfg.txpkts;
    for m in s.burst.iter_mut() {
        m.set_len(len);
        let d = m.data_mut();
        d[..s.template.len()].copy_from_slice(&s.template);
        if flows {
            // Vary the low 16 bits of the source IPv4 address over `flows`
            // flows, and update the header checksum incrementally (RFC
            // 1624: HC' = ~(~HC + ~m + m')). The template is udp_frame()'s
            // Ethernet + IPv4 + UDP header, so both IPv4 views hold a
            // whole fixed header.
            let f = s.next_flow as u16;
            s.next_flow += 1;
            if s.next_flow == cfg.flows {
                s.next_flow = 0;
            }
            let tmpl = Ipv4Packet::new_unchecked(&s.template[ETH_HLEN..]);
            let src = u32::from(tmpl.src_addr());
            let m = src as u16;
            let m2 = m.wrapping_add(f);
            let hc = tmpl.checksum();
            let mut sum = (!hc) as u32 + (!m) as u32 + m2 as u32;
            sum = (sum & 0xffff) + (sum >> 16);
            sum = (sum & 0xffff) + (sum >> 16);
            let mut ip = Ipv4Packet::new_unchecked(&mut d[ETH_HLEN..]);
            ip.set_src_addr(Ipv4Addr::from(src & 0xffff_0000 | m2 as u32));
            ip.set_checksum(!(sum as u16));
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

const ETH_HLEN: usize = EthernetFrame::<&[u8]>::HEADER_LEN;

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
        };
        let mut streams = build_streams(1, 1, FwdMode::Flowgen);
        let stop = StopFlag::new();
        let stop2 = stop.clone();
        let spec = streams.remove(0);
        let counters = spec.counters.clone();
        let t = std::thread::spawn(move || run_lcore(vec![(spec, q)], &cfg, &stop2));
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

    /// Hands out `frames` once, then nothing.
    struct OnceRx {
        pool: Mempool,
        frames: Vec<Vec<u8>>,
    }

    impl RxQueue for OnceRx {
        fn rx_burst(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
            let n = self.frames.len();
            for f in self.frames.drain(..) {
                let mut m = self.pool.alloc().unwrap();
                assert!(m.set_len(f.len()));
                m.data_mut().copy_from_slice(&f);
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
                frames,
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
        };
        let spec = build_streams(2, 1, mode).remove(0);
        let stop = StopFlag::new();
        let stop2 = stop.clone();
        let t = std::thread::spawn(move || run_lcore(vec![(spec, q)], &cfg, &stop2));
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
}
