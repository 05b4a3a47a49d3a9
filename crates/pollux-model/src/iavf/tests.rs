//! The model driven as Linux iavf and DPDK net_iavf drive it, through a
//! [`Ctx`] over a DMA map, without QEMU.

use std::os::unix::net::UnixDatagram;

use super::filter::{self, parse};
use super::regs::*;
use super::virtchnl::{cap, op, status};
use super::*;
use crate::iova::IovaMap;
use crate::irq::Irqs;
use crate::model::{ViolationLog, WireStats};
use crate::pci::{ConfigSpace, CMD_BUS_MASTER, CMD_MEMORY, MSIX_CAP, MSIX_ENABLE};
use crate::wire::{Wire, WireSpec};

const RAM: u64 = 0x10_0000;
const RAM_LEN: u64 = 4 << 20;
const ATQ: u64 = RAM;
const ARQ: u64 = RAM + 0x1000;
const ATQ_BUF: u64 = RAM + 0x2_0000;
const ARQ_BUF: u64 = RAM + 0x4_0000;
const RXR: u64 = RAM + 0x10_0000;
const RXB: u64 = RAM + 0x11_0000;
const TXR: u64 = RAM + 0x20_0000;
const TXB: u64 = RAM + 0x21_0000;
const AQN: u32 = 32;
const MAC: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
const PEER: [u8; 6] = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee];

/// Linux 6.12 iavf's capability request (iavf_send_vf_config_msg).
const LINUX_CAPS: u32 = cap::L2
    | cap::RSS_PF
    | cap::RSS_AQ
    | cap::RSS_REG
    | cap::VLAN
    | cap::WB_ON_ITR
    | (1 << 18)
    | (1 << 20)
    | cap::VLAN_V2
    | (1 << 10)
    | (1 << 21)
    | cap::REQ_QUEUES
    | (1 << 23)
    | (1 << 25)
    | (1 << 28)
    | (1 << 27)
    | cap::ADV_LINK_SPEED;

struct Bench {
    m: Iavf,
    dma: IovaMap,
    irqs: Irqs,
    config: ConfigSpace,
    log: ViolationLog,
    wire: Option<Wire>,
    stats: WireStats,
    peer: Option<UnixDatagram>,
    _dir: tempfile::TempDir,
    atq_ntu: u32,
    arq_ntc: u32,
}

impl Bench {
    fn new(queues: u16) -> Bench {
        let m = Iavf::new(IavfConfig {
            mac: MAC,
            queues,
            ..IavfConfig::default()
        });
        let spec = m.spec();
        let mut config = ConfigSpace::new(&spec);
        config.write(4, &(CMD_MEMORY | CMD_BUS_MASTER).to_le_bytes());
        config.write(MSIX_CAP as u64 + 2, &MSIX_ENABLE.to_le_bytes());
        let mut dma = IovaMap::new();
        let f = crate::iova::tests::ram(RAM_LEN);
        dma.map(RAM, RAM_LEN, &f, 0, true, true).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (local, remote) = (dir.path().join("model"), dir.path().join("peer"));
        let peer = UnixDatagram::bind(&remote).unwrap();
        peer.set_nonblocking(true).unwrap();
        let wire = Wire::open(&WireSpec::Unix(local, remote)).unwrap();
        Bench {
            irqs: Irqs::new(spec.msix_vectors as usize),
            m,
            dma,
            config,
            log: ViolationLog::default(),
            wire: Some(wire),
            stats: WireStats::default(),
            peer: Some(peer),
            _dir: dir,
            atq_ntu: 0,
            arq_ntc: 0,
        }
    }

    fn with<R>(&mut self, f: impl FnOnce(&mut Iavf, &mut Ctx<'_>) -> R) -> R {
        let mut ctx = Ctx {
            dma: &self.dma,
            irqs: &mut self.irqs,
            config: &self.config,
            log: &mut self.log,
            wire: self.wire.as_ref(),
            link_up: true,
            stats: &mut self.stats,
        };
        f(&mut self.m, &mut ctx)
    }

    fn wr(&mut self, off: u64, v: u32) {
        self.with(|m, c| m.bar_write(c, 0, off, &v.to_le_bytes()));
    }

    fn rd(&mut self, off: u64) -> u32 {
        let mut b = [0u8; 4];
        self.with(|m, c| m.bar_read(c, 0, off, &mut b));
        u32::from_le_bytes(b)
    }

    fn put(&self, at: u64, data: &[u8]) {
        self.dma.write(at, data).unwrap();
    }

    fn get(&self, at: u64, n: usize) -> Vec<u8> {
        let mut b = vec![0u8; n];
        self.dma.read(at, &mut b).unwrap();
        b
    }

    fn violations(&self) -> Vec<String> {
        self.log.entries().iter().map(|v| v.to_string()).collect()
    }

    /// iavf_init_adminq: iavf_config_asq_regs, iavf_alloc_arq_bufs,
    /// iavf_config_arq_regs.
    fn init_adminq(&mut self) {
        self.wr(VF_ATQH1, 0);
        self.wr(VF_ATQT1, 0);
        self.wr(VF_ATQLEN1, AQN | AQLEN_ENABLE);
        self.wr(VF_ATQBAL1, ATQ as u32);
        self.wr(VF_ATQBAH1, (ATQ >> 32) as u32);
        for i in 0..AQN as u64 {
            let d = adminq::Desc {
                flags: AQ_FLAG_BUF | AQ_FLAG_LB,
                datalen: 4096,
                addr_low: (ARQ_BUF + i * 4096) as u32,
                ..Default::default()
            };
            self.put(ARQ + i * 32, &d.to_bytes());
        }
        self.wr(VF_ARQH1, 0);
        self.wr(VF_ARQT1, 0);
        self.wr(VF_ARQLEN1, AQN | AQLEN_ENABLE);
        self.wr(VF_ARQBAL1, ARQ as u32);
        self.wr(VF_ARQBAH1, (ARQ >> 32) as u32);
        self.wr(VF_ARQT1, AQN - 1);
        self.atq_ntu = 0;
        self.arq_ntc = 0;
    }

    /// iavf_aq_send_msg_to_pf (asynchronous: no wait).
    fn send(&mut self, opcode: u32, msg: &[u8]) -> adminq::Desc {
        let i = self.atq_ntu as u64;
        let mut d = adminq::Desc {
            flags: AQ_FLAG_SI,
            opcode: AQC_SEND_MSG_TO_PF,
            cookie_high: opcode,
            ..Default::default()
        };
        if !msg.is_empty() {
            d.flags |= AQ_FLAG_BUF | AQ_FLAG_RD;
            d.datalen = msg.len() as u16;
            d.addr_low = (ATQ_BUF + i * 4096) as u32;
            self.put(ATQ_BUF + i * 4096, msg);
        }
        self.put(ATQ + i * 32, &d.to_bytes());
        self.atq_ntu = (self.atq_ntu + 1) % AQN;
        self.wr(VF_ATQT1, self.atq_ntu);
        let wb = self.get(ATQ + i * 32, 32);
        adminq::Desc::from_bytes(&wb.try_into().unwrap())
    }

    /// iavf_clean_arq_element.
    fn recv(&mut self) -> Option<(u32, i32, Vec<u8>)> {
        let head = self.rd(VF_ARQH1);
        if head == self.arq_ntc {
            return None;
        }
        let i = self.arq_ntc as u64;
        let d = adminq::Desc::from_bytes(&self.get(ARQ + i * 32, 32).try_into().unwrap());
        assert_eq!(
            d.flags & (AQ_FLAG_DD | AQ_FLAG_CMP),
            AQ_FLAG_DD | AQ_FLAG_CMP
        );
        assert_eq!(d.opcode, AQC_SEND_MSG_TO_VF);
        let data = self.get(d.addr(), d.datalen as usize);
        let r = adminq::Desc {
            flags: AQ_FLAG_BUF | AQ_FLAG_LB,
            datalen: 4096,
            addr_low: (ARQ_BUF + i * 4096) as u32,
            ..Default::default()
        };
        self.put(ARQ + i * 32, &r.to_bytes());
        self.wr(VF_ARQT1, self.arq_ntc);
        self.arq_ntc = (self.arq_ntc + 1) % AQN;
        Some((d.cookie_high, d.cookie_low as i32, data))
    }

    /// Sends and returns the reply (skipping events).
    fn call(&mut self, opcode: u32, msg: &[u8]) -> (i32, Vec<u8>) {
        let wb = self.send(opcode, msg);
        assert_eq!(
            wb.flags & AQ_FLAG_DD,
            AQ_FLAG_DD,
            "ATQ descriptor written back"
        );
        assert_eq!(wb.retval, 0);
        while let Some((o, s, d)) = self.recv() {
            if o == opcode {
                return (s, d);
            }
        }
        panic!("no reply to opcode {opcode}");
    }

    /// Linux iavf bring-up: VERSION, GET_VF_RESOURCES, CONFIG_VSI_QUEUES,
    /// CONFIG_IRQ_MAP, ENABLE_QUEUES, ADD_ETH_ADDR.
    fn bring_up(&mut self, pairs: u16, buf: u32) {
        self.init_adminq();
        let mut v = 1u32.to_le_bytes().to_vec();
        v.extend_from_slice(&1u32.to_le_bytes());
        let (s, d) = self.call(op::VERSION, &v);
        assert_eq!((s, d), (0, v.clone()), "PF answers 1.1");
        let (s, res) = self.call(op::GET_VF_RESOURCES, &LINUX_CAPS.to_le_bytes());
        assert_eq!(s, 0);
        assert_eq!(res.len(), 36);
        // The PF follows GET_VF_RESOURCES with a LINK_CHANGE event.
        let (o, _, ev) = self.recv().expect("link event");
        assert_eq!((o, ev[0]), (op::EVENT, 1));
        let mut q = Vec::new();
        q.extend_from_slice(&virtchnl::VSI_ID.to_le_bytes());
        q.extend_from_slice(&pairs.to_le_bytes());
        q.extend_from_slice(&[0; 4]);
        for i in 0..pairs as u64 {
            let mut tx = [0u8; 24];
            tx[0..2].copy_from_slice(&virtchnl::VSI_ID.to_le_bytes());
            tx[2..4].copy_from_slice(&(i as u16).to_le_bytes());
            tx[4..6].copy_from_slice(&64u16.to_le_bytes());
            tx[8..16].copy_from_slice(&(TXR + i * 0x1000).to_le_bytes());
            let mut rx = [0u8; 40];
            rx[0..2].copy_from_slice(&virtchnl::VSI_ID.to_le_bytes());
            rx[2..4].copy_from_slice(&(i as u16).to_le_bytes());
            rx[4..8].copy_from_slice(&32u32.to_le_bytes());
            rx[12..16].copy_from_slice(&buf.to_le_bytes());
            rx[16..20].copy_from_slice(&9706u32.to_le_bytes());
            rx[24..32].copy_from_slice(&(RXR + i * 0x1000).to_le_bytes());
            q.extend_from_slice(&tx);
            q.extend_from_slice(&rx);
        }
        q.extend_from_slice(&[0; 64]); // legacy padding element
        assert_eq!(self.call(op::CONFIG_VSI_QUEUES, &q).0, 0);
        let nv = self.m.vectors();
        let mut im = nv.to_le_bytes().to_vec();
        for v in 1..nv {
            let mask: u16 = (0..pairs)
                .filter(|q| q % (nv - 1) == v - 1)
                .fold(0, |m, q| m | 1 << q);
            for x in [virtchnl::VSI_ID, v, mask, mask, 0, 1] {
                im.extend_from_slice(&x.to_le_bytes());
            }
        }
        for x in [virtchnl::VSI_ID, 0, 0, 0, 0, 0] {
            im.extend_from_slice(&x.to_le_bytes());
        }
        im.extend_from_slice(&[0; 12]);
        assert_eq!(self.call(op::CONFIG_IRQ_MAP, &im).0, 0);
        let all = (1u32 << pairs) - 1;
        let mut qs = virtchnl::VSI_ID.to_le_bytes().to_vec();
        qs.extend_from_slice(&[0; 2]);
        qs.extend_from_slice(&all.to_le_bytes());
        qs.extend_from_slice(&all.to_le_bytes());
        assert_eq!(self.call(op::ENABLE_QUEUES, &qs).0, 0);
        let (o, _, ev) = self.recv().expect("link event after ENABLE_QUEUES");
        assert_eq!(o, op::EVENT);
        assert_eq!(u32::from_le_bytes(ev[4..8].try_into().unwrap()), 10_000);
        assert_eq!(ev[8], 1, "link up, in link_event_adv form");
        let mut al = virtchnl::VSI_ID.to_le_bytes().to_vec();
        al.extend_from_slice(&2u16.to_le_bytes());
        for a in [MAC, [0x33, 0x33, 0, 0, 0, 1]] {
            al.extend_from_slice(&a);
            al.extend_from_slice(&[1, 0]);
        }
        al.extend_from_slice(&[0; 8]);
        assert_eq!(self.call(op::ADD_ETH_ADDR, &al).0, 0);
        // iavf_irq_enable.
        self.wr(VFINT_DYN_CTL01, DYN_INTENA | (3 << 3));
        self.wr(VFINT_ICR0_ENA1, ICR0_ADMINQ);
        for v in 0..nv as u64 - 1 {
            self.wr(VFINT_DYN_CTLN1 + 4 * v, DYN_INTENA | (3 << 3));
        }
    }

    /// Gives the driver's Rx buffers for queue `q` and moves the tail.
    fn post_rx(&mut self, q: u64, n: u32, buf: u64) {
        for i in 0..n as u64 {
            let mut d = [0u8; 32];
            d[0..8].copy_from_slice(&(RXB + q * 0x10_000 + i * buf).to_le_bytes());
            self.put(RXR + q * 0x1000 + i * 32, &d);
        }
        self.wr(QRX_TAIL1 + 4 * q, n);
    }

    fn rx_desc(&self, q: u64, i: u64) -> (u64, u64) {
        let d = self.get(RXR + q * 0x1000 + i * 32, 16);
        (
            u64::from_le_bytes(d[0..8].try_into().unwrap()),
            u64::from_le_bytes(d[8..16].try_into().unwrap()),
        )
    }
}

fn udp4(
    dst: [u8; 6],
    src_ip: [u8; 4],
    dst_ip: [u8; 4],
    ports: (u16, u16),
    payload: usize,
) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&PEER);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let total = 20 + 8 + payload;
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip.extend_from_slice(&src_ip);
    ip.extend_from_slice(&dst_ip);
    let c = !filter::fold(filter::ones_sum(&ip, 0));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&ports.0.to_be_bytes());
    f.extend_from_slice(&ports.1.to_be_bytes());
    f.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend((0..payload).map(|i| i as u8));
    let p = parse(&f);
    let s = filter::ones_sum(&f[p.l4..], filter::pseudo_sum(&f, &p, 8 + payload));
    let c = !filter::fold(s);
    f[p.l4 + 6..p.l4 + 8].copy_from_slice(&c.to_be_bytes());
    f
}

fn tcp4(src: ([u8; 4], u16), dst: ([u8; 4], u16)) -> Vec<u8> {
    let mut f = MAC.to_vec();
    f.extend_from_slice(&PEER);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let mut ip = vec![0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0];
    ip.extend_from_slice(&src.0);
    ip.extend_from_slice(&dst.0);
    let c = !filter::fold(filter::ones_sum(&ip, 0));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&src.1.to_be_bytes());
    tcp[2..4].copy_from_slice(&dst.1.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x10;
    f.extend_from_slice(&tcp);
    let p = parse(&f);
    let c = !filter::fold(filter::ones_sum(&f[p.l4..], filter::pseudo_sum(&f, &p, 20)));
    f[p.l4 + 16..p.l4 + 18].copy_from_slice(&c.to_be_bytes());
    f
}

#[test]
fn linux_bring_up_negotiates_and_answers_in_order() {
    let mut b = Bench::new(4);
    assert_eq!(
        b.rd(VFGEN_RSTAT),
        VFR_VFACTIVE,
        "iavf_startup's check passes"
    );
    b.bring_up(4, 2048);
    let pf = b.m.pf();
    assert_eq!(
        pf.caps,
        cap::L2 | cap::RSS_PF | cap::VLAN | cap::WB_ON_ITR | cap::REQ_QUEUES | cap::ADV_LINK_SPEED
    );
    assert!(pf.macs.contains(&[0x33, 0x33, 0, 0, 0, 1]));
    assert_eq!(pf.rx_vector[3], Some(4));
    assert_eq!(pf.tx_vector[0], Some(1));
    assert!(b.violations().is_empty(), "{:#?}", b.violations());
    // GET_VF_RESOURCES content.
    let mut b2 = Bench::new(2);
    b2.init_adminq();
    b2.call(op::VERSION, &[1, 0, 0, 0, 1, 0, 0, 0]);
    let (_, r) = b2.call(op::GET_VF_RESOURCES, &LINUX_CAPS.to_le_bytes());
    let v = virtchnl::View(&r);
    assert_eq!((v.u16(0), v.u16(2), v.u16(4), v.u16(6)), (1, 2, 3, 9706));
    assert_eq!((v.u32(12), v.u32(16)), (52, 64));
    assert_eq!((v.u16(20), v.u16(22), v.u32(24)), (virtchnl::VSI_ID, 2, 6));
    assert_eq!(&r[30..36], &MAC);
    // GET_STATS after traffic-free bring-up: 96 bytes of zeros.
    let mut b3 = Bench::new(1);
    b3.bring_up(1, 2048);
    let mut qs = virtchnl::VSI_ID.to_le_bytes().to_vec();
    qs.extend_from_slice(&[0; 10]);
    let (s, st) = b3.call(op::GET_STATS, &qs);
    assert_eq!((s, st.len()), (0, 96));
}

#[test]
fn a_frame_is_received_with_a_correct_write_back_and_interrupt() {
    let mut b = Bench::new(1);
    b.bring_up(1, 2048);
    b.post_rx(0, 31, 2048);
    let f = udp4(MAC, [10, 0, 0, 2], [10, 0, 0, 1], (1000, 2000), 100);
    assert!(b.with(|m, c| m.frame_in(c, &f)));
    let (q0, q1) = b.rx_desc(0, 0);
    assert_eq!(
        q1 & (RX_STATUS_DD | RX_STATUS_EOF),
        RX_STATUS_DD | RX_STATUS_EOF
    );
    assert_eq!((q1 >> RX_LEN_SHIFT) & 0x3fff, f.len() as u64);
    assert_eq!(
        (q1 >> RX_PTYPE_SHIFT) & 0xff,
        filter::ptype::IPV4_UDP as u64
    );
    assert_ne!(q1 & RX_STATUS_L3L4P, 0, "checksums checked");
    assert_eq!((q1 >> RX_ERROR_SHIFT) & 0xff, 0, "and good");
    // Key and LUT are zero until the VF sets them: hash 0, FLTSTAT RSS.
    assert_eq!(q1 & RX_STATUS_FLTSTAT_RSS, RX_STATUS_FLTSTAT_RSS);
    assert_eq!(q0 >> 32, 0);
    assert_eq!(b.get(RXB, f.len()), f);
    assert!(b.irqs.pending(1), "queue vector raised");
    assert_eq!(
        b.rd(VFINT_DYN_CTLN1) & DYN_INTENA,
        0,
        "auto-masked until re-armed"
    );
    // A bad UDP checksum is reported as L4E; a frame for someone else is
    // filtered; a tagged frame is stripped into L2TAG1.
    let mut bad = udp4(MAC, [10, 0, 0, 2], [10, 0, 0, 1], (1, 2), 10);
    let n = bad.len();
    bad[n - 1] ^= 0xff;
    assert!(b.with(|m, c| m.frame_in(c, &bad)));
    let (_, q1) = b.rx_desc(0, 1);
    assert_ne!((q1 >> RX_ERROR_SHIFT) & RX_ERROR_L4E, 0);
    let other = udp4(PEER, [10, 0, 0, 2], [10, 0, 0, 1], (1, 2), 10);
    assert!(!b.with(|m, c| m.frame_in(c, &other)));
    let mut tagged = f.clone();
    tagged.splice(12..12, [0x81, 0x00, 0x20, 0x05]);
    assert!(b.with(|m, c| m.frame_in(c, &tagged)));
    let (q0, q1) = b.rx_desc(0, 2);
    assert_ne!(q1 & RX_STATUS_L2TAG1P, 0);
    assert_eq!((q0 >> 16) & 0xffff, 0x2005);
    assert_eq!(b.get(RXB + 2 * 2048, f.len()), f, "tag stripped");
    assert!(b.violations().is_empty(), "{:#?}", b.violations());
}

#[test]
fn a_frame_longer_than_a_buffer_spans_descriptors() {
    let mut b = Bench::new(1);
    b.bring_up(1, 2048);
    b.post_rx(0, 31, 2048);
    let f = udp4(MAC, [10, 0, 0, 2], [10, 0, 0, 1], (1000, 2000), 4500);
    assert!(b.with(|m, c| m.frame_in(c, &f)));
    let lens: Vec<(u64, bool)> = (0..3)
        .map(|i| {
            let (_, q1) = b.rx_desc(0, i);
            assert_ne!(q1 & RX_STATUS_DD, 0);
            ((q1 >> RX_LEN_SHIFT) & 0x3fff, q1 & RX_STATUS_EOF != 0)
        })
        .collect();
    assert_eq!(
        lens,
        vec![(2048, false), (2048, false), (f.len() as u64 - 4096, true)]
    );
    let mut got = b.get(RXB, 2048);
    got.extend(b.get(RXB + 2048, 2048));
    got.extend(b.get(RXB + 4096, f.len() - 4096));
    assert_eq!(got, f);
    // Not enough descriptors left: dropped, counted, no partial write.
    b.wr(QRX_TAIL1, 4);
    assert!(!b.with(|m, c| m.frame_in(c, &f)));
    assert!(b
        .m
        .counters()
        .contains(&("rx_drop_no_descriptor".to_string(), 1)));
}

#[test]
fn a_frame_is_sent_with_checksum_offload_and_done_written_back() {
    let mut b = Bench::new(1);
    b.bring_up(1, 2048);
    let mut f = udp4(PEER, [10, 0, 0, 1], [10, 0, 0, 2], (5000, 53), 64);
    let want = f.clone();
    let p = parse(&f);
    // What the driver leaves: IPv4 checksum zero, the UDP field seeded
    // with the pseudo-header sum (rte_net_intel_cksum_prepare).
    f[6..12].copy_from_slice(&MAC);
    f[p.l3 + 10] = 0;
    f[p.l3 + 11] = 0;
    let seed = filter::fold(filter::pseudo_sum(&f, &p, p.l4_len));
    f[p.l4 + 6..p.l4 + 8].copy_from_slice(&seed.to_be_bytes());
    b.put(TXB, &f);
    let cmd = TX_CMD_EOP | TX_CMD_RS | TX_CMD_ICRC | TX_CMD_IIPT_IPV4_CSUM | TX_CMD_L4T_UDP;
    let offset = 7 | (5 << 7) | (2 << 14);
    let q1 = (cmd << 4) | (offset << 16) | ((f.len() as u64) << 34);
    let mut d = TXB.to_le_bytes().to_vec();
    d.extend_from_slice(&q1.to_le_bytes());
    b.put(TXR, &d);
    b.wr(QTX_TAIL1, 1);
    let mut got = vec![0u8; 2048];
    let n = b
        .peer
        .as_ref()
        .unwrap()
        .recv(&mut got)
        .expect("frame on the wire");
    got.truncate(n);
    let mut want = want;
    want[6..12].copy_from_slice(&MAC);
    assert_eq!(got, want, "checksums filled in as the sender computed them");
    let pp = parse(&got);
    assert!(filter::ipv4_header_ok(&got, &pp));
    assert_eq!(filter::l4_ok(&got, &pp), Some(true));
    let wb = b.get(TXR + 8, 8);
    assert_eq!(
        u64::from_le_bytes(wb.try_into().unwrap()) & 0xf,
        TX_DTYPE_DESC_DONE
    );
    assert!(b.irqs.pending(1), "Tx completion raised the vector");
    // A spoofed source MAC is dropped and counted.
    let mut s = f.clone();
    s[6..12].copy_from_slice(&PEER);
    b.put(TXB + 0x800, &s);
    let mut d = (TXB + 0x800).to_le_bytes().to_vec();
    d.extend_from_slice(
        &(((TX_CMD_EOP | TX_CMD_RS) << 4) | ((s.len() as u64) << 34)).to_le_bytes(),
    );
    b.put(TXR + 16, &d);
    b.wr(QTX_TAIL1, 2);
    assert!(b.peer.as_ref().unwrap().recv(&mut got).is_err());
    assert!(b.m.counters().contains(&("tx_drop_spoofed".to_string(), 1)));
    // With spoof checking off (`ip link set PF vf N spoofchk off`) the
    // same frame goes out.
    b.with(|m, c| m.pf_event(c, "spoofchk-off")).unwrap();
    let mut d = (TXB + 0x800).to_le_bytes().to_vec();
    d.extend_from_slice(
        &(((TX_CMD_EOP | TX_CMD_RS) << 4) | ((s.len() as u64) << 34)).to_le_bytes(),
    );
    b.put(TXR + 32, &d);
    b.wr(QTX_TAIL1, 3);
    let n = b
        .peer
        .as_ref()
        .unwrap()
        .recv(&mut got)
        .expect("the foreign source went out");
    assert_eq!(&got[6..12], &PEER, "{n} bytes");
    assert!(b.m.counters().contains(&("tx_drop_spoofed".to_string(), 1)));
    assert!(b.violations().is_empty(), "{:#?}", b.violations());
}

#[test]
fn tso_splits_a_tcp_packet_into_checksummed_segments() {
    let mut big = tcp4(([10, 0, 0, 1], 40000), ([10, 0, 0, 2], 80));
    big[6..12].copy_from_slice(&MAC);
    big.extend((0..3000).map(|i| (i * 7) as u8));
    let lens = queues::Lens::from_offset(7 | (5 << 7) | (5 << 14));
    let segs = queues::tso(&big, lens, 1448, true).unwrap();
    assert_eq!(
        segs.iter().map(|s| s.len() - 54).collect::<Vec<_>>(),
        vec![1448, 1448, 104]
    );
    for s in &segs {
        let p = parse(s);
        assert!(filter::ipv4_header_ok(s, &p));
        assert_eq!(filter::l4_ok(s, &p), Some(true));
    }
}

#[test]
fn rss_picks_the_queue_from_the_lut_with_the_microsoft_vectors() {
    // Microsoft "Verifying the RSS Hash Calculation": key and expected
    // hashes.
    let key: [u8; 40] = [
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f,
        0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
        0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
    ];
    let v4 = |s: [u8; 4], d: [u8; 4], sp: u16, dp: u16| {
        let mut i = s.to_vec();
        i.extend_from_slice(&d);
        let ip = crate::toeplitz::hash(&key, &i);
        i.extend_from_slice(&sp.to_be_bytes());
        i.extend_from_slice(&dp.to_be_bytes());
        (ip, crate::toeplitz::hash(&key, &i))
    };
    assert_eq!(
        v4([66, 9, 149, 187], [161, 142, 100, 80], 2794, 1766),
        (0x323e8fc2, 0x51ccc178)
    );
    assert_eq!(
        v4([199, 92, 111, 2], [65, 69, 140, 83], 14230, 4739),
        (0xd718262a, 0xc626b0ea)
    );
    let a6 = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
    let mut i = a6("3ffe:2501:200:1fff::7").to_vec();
    i.extend_from_slice(&a6("3ffe:2501:200:3::1"));
    assert_eq!(crate::toeplitz::hash(&key, &i), 0x2cc18cd5);
    i.extend_from_slice(&2794u16.to_be_bytes());
    i.extend_from_slice(&1766u16.to_be_bytes());
    assert_eq!(crate::toeplitz::hash(&key, &i), 0x40207d3d);

    // Through the model: key and LUT by virtchnl, then a TCP frame.
    let mut b = Bench::new(4);
    b.bring_up(4, 2048);
    for q in 0..4 {
        b.post_rx(q, 31, 2048);
    }
    let mut k = virtchnl::VSI_ID.to_le_bytes().to_vec();
    k.extend_from_slice(&52u16.to_le_bytes());
    k.extend_from_slice(&key);
    k.extend_from_slice(&[0; 12]);
    k.push(0); // legacy padding byte
    assert_eq!(b.call(op::CONFIG_RSS_KEY, &k).0, 0);
    let mut l = virtchnl::VSI_ID.to_le_bytes().to_vec();
    l.extend_from_slice(&64u16.to_le_bytes());
    l.extend((0..64u8).map(|i| i / 16));
    l.push(0);
    assert_eq!(b.call(op::CONFIG_RSS_LUT, &l).0, 0);
    let f = tcp4(([66, 9, 149, 187], 2794), ([161, 142, 100, 80], 1766));
    assert!(b.with(|m, c| m.frame_in(c, &f)));
    // 0x51ccc178 % 64 = 56 -> LUT[56] = 3.
    let (q0, q1) = b.rx_desc(3, 0);
    assert_ne!(q1 & RX_STATUS_DD, 0, "queue 3 got it");
    assert_eq!(q0 >> 32, 0x51ccc178);
    assert_eq!(
        (q1 >> RX_PTYPE_SHIFT) & 0xff,
        filter::ptype::IPV4_TCP as u64
    );
    // HENA without IPv4 TCP: no hash, queue 0.
    let hena = virtchnl::pctype::DEFAULT_HENA & !(1 << virtchnl::pctype::IPV4_TCP);
    assert_eq!(b.call(op::SET_RSS_HENA, &hena.to_le_bytes()).0, 0);
    assert!(b.with(|m, c| m.frame_in(c, &f)));
    let (_, q1) = b.rx_desc(0, 0);
    assert_ne!(q1 & RX_STATUS_DD, 0);
    assert_eq!(q1 & RX_STATUS_FLTSTAT_RSS, 0);
    assert!(b.violations().is_empty(), "{:#?}", b.violations());
}

#[test]
fn bad_sizes_unknown_opcodes_and_order_get_the_pf_error_codes() {
    let mut b = Bench::new(2);
    b.init_adminq();
    // Before GET_VF_RESOURCES.
    let (s, _) = b.call(op::CONFIG_IRQ_MAP, &[0; 26]);
    assert_eq!(s, status::ERR_PARAM);
    // VERSION of the wrong size.
    assert_eq!(b.call(op::VERSION, &[1, 0, 0, 0]).0, status::ERR_PARAM);
    b.call(op::VERSION, &[1, 0, 0, 0, 1, 0, 0, 0]);
    // GET_VF_RESOURCES of a 1.1 VF needs its 4 bytes of caps.
    assert_eq!(b.call(op::GET_VF_RESOURCES, &[]).0, status::ERR_PARAM);
    assert_eq!(b.call(op::GET_VF_RESOURCES, &LINUX_CAPS.to_le_bytes()).0, 0);
    while b.recv().is_some() {}
    // Unknown opcode; an EVENT from the VF.
    assert_eq!(b.call(99, &[]).0, status::ERR_PARAM);
    assert_eq!(b.call(op::EVENT, &[0; 16]).0, status::ERR_PARAM);
    // Known but not negotiated: VLAN v2 caps.
    assert_eq!(
        b.call(op::GET_OFFLOAD_VLAN_V2_CAPS, &[]).0,
        status::ERR_NOT_SUPPORTED
    );
    // CONFIG_VSI_QUEUES without the legacy padding element.
    let mut q = virtchnl::VSI_ID.to_le_bytes().to_vec();
    q.extend_from_slice(&1u16.to_le_bytes());
    q.extend_from_slice(&[0; 4 + 64]);
    assert_eq!(b.call(op::CONFIG_VSI_QUEUES, &q).0, status::ERR_PARAM);
    // A bad ring length in a well-formed message.
    let mut q = virtchnl::VSI_ID.to_le_bytes().to_vec();
    q.extend_from_slice(&1u16.to_le_bytes());
    q.extend_from_slice(&[0; 4]);
    let mut pair = [0u8; 128];
    pair[0..2].copy_from_slice(&virtchnl::VSI_ID.to_le_bytes());
    pair[4..6].copy_from_slice(&12u16.to_le_bytes()); // not a multiple of 8
    pair[24..26].copy_from_slice(&virtchnl::VSI_ID.to_le_bytes());
    q.extend_from_slice(&pair);
    assert_eq!(b.call(op::CONFIG_VSI_QUEUES, &q).0, status::ERR_PARAM);
    let v = b.violations();
    assert_eq!(v.len(), 8, "{v:#?}");
    // The PF errors are counted.
    assert!(b
        .m
        .counters()
        .iter()
        .any(|(k, n)| k == "vc_errors" && *n == 8));
}

#[test]
fn reset_vf_clears_the_admin_queue_and_rstat_walks_to_active() {
    let mut b = Bench::new(2);
    b.bring_up(2, 2048);
    b.post_rx(0, 31, 2048);
    b.send(op::RESET_VF, &[]);
    assert_eq!(
        b.rd(VF_ARQLEN1) & AQLEN_ENABLE,
        0,
        "iavf_reset_task sees the reset"
    );
    assert_eq!(
        [b.rd(VFGEN_RSTAT), b.rd(VFGEN_RSTAT), b.rd(VFGEN_RSTAT)],
        [VFR_INPROGRESS, VFR_COMPLETED, VFR_VFACTIVE]
    );
    let f = udp4(MAC, [10, 0, 0, 2], [10, 0, 0, 1], (1, 2), 10);
    assert!(!b.with(|m, c| m.frame_in(c, &f)), "queues are stopped");
    assert!(!b.m.pf().active && b.m.pf().macs.is_empty());
    // The driver starts over without VERSION (the PF keeps it).
    b.init_adminq();
    assert_eq!(b.call(op::GET_VF_RESOURCES, &LINUX_CAPS.to_le_bytes()).0, 0);
    assert!(b.violations().is_empty(), "{:#?}", b.violations());
}

#[test]
fn a_pf_reset_sends_reset_impending_then_resets_when_it_is_taken() {
    let mut b = Bench::new(2);
    b.bring_up(2, 2048);
    b.with(|m, c| m.pf_event(c, "reset")).unwrap();
    assert!(b.m.pf().active, "not yet: the event waits in the ARQ");
    let head = b.rd(VF_ARQH1);
    assert_eq!(head, b.arq_ntc + 1);
    let (o, _, ev) = b.recv().unwrap();
    assert_eq!((o, ev[0], ev[12]), (op::EVENT, 2, 255));
    assert_eq!(b.rd(VF_ARQLEN1), 0, "reset once the event was taken");
    // REQUEST_QUEUES takes the same path and changes the queue count.
    b.init_adminq();
    b.call(op::GET_VF_RESOURCES, &LINUX_CAPS.to_le_bytes());
    while b.recv().is_some() {}
    b.send(op::REQUEST_QUEUES, &3u16.to_le_bytes());
    let (o, _, ev) = b.recv().unwrap();
    assert_eq!((o, ev[0]), (op::EVENT, 2));
    assert_eq!(b.rd(VF_ARQLEN1), 0);
    assert_eq!(b.m.pf().num_qps, 3);
    assert!(b.with(|m, c| m.pf_event(c, "bogus")).is_err());
    assert!(b.violations().is_empty(), "{:#?}", b.violations());
}

#[test]
fn malformed_accesses_and_descriptors_are_logged_without_panicking() {
    let mut b = Bench::new(1);
    b.bring_up(1, 2048);
    let base = b.log.total();
    // 16-bit and unaligned register accesses.
    let mut two = [0u8; 2];
    b.with(|m, c| m.bar_read(c, 0, VFGEN_RSTAT, &mut two));
    b.with(|m, c| m.bar_write(c, 0, 0x8802, &[0; 4]));
    assert_eq!(b.log.total() - base, 2);
    // VFR_STATE is the VF's to write (FreeBSD's iavf writes INPROGRESS
    // before RESET_VF): no violation, and it reads back.
    b.with(|m, c| m.bar_write(c, 0, VFGEN_RSTAT, &[0; 4]));
    assert_eq!(b.log.total() - base, 2);
    assert_eq!(b.rd(VFGEN_RSTAT), 0, "INPROGRESS, as written");
    // An ATQ descriptor with a firmware opcode a VF may not use.
    let i = b.atq_ntu as u64;
    let d = adminq::Desc {
        opcode: 0x0110,
        ..Default::default()
    };
    b.put(ATQ + i * 32, &d.to_bytes());
    b.atq_ntu += 1;
    b.wr(VF_ATQT1, b.atq_ntu);
    let wb = adminq::Desc::from_bytes(&b.get(ATQ + i * 32, 32).try_into().unwrap());
    assert_ne!(wb.flags & AQ_FLAG_ERR, 0);
    // Tx: an unknown DTYPE, a buffer outside guest memory, a huge tail.
    let mut d = 0u64.to_le_bytes().to_vec();
    d.extend_from_slice(&0x5u64.to_le_bytes());
    b.put(TXR, &d);
    let mut d = 0xdead_0000u64.to_le_bytes().to_vec();
    d.extend_from_slice(&(((TX_CMD_EOP | TX_CMD_RS) << 4) | (100 << 34)).to_le_bytes());
    b.put(TXR + 16, &d);
    b.wr(QTX_TAIL1, 2);
    b.wr(QTX_TAIL1, 5000);
    b.wr(QRX_TAIL1, 5000);
    // Runt and garbage frames.
    for f in [&[1u8, 2, 3][..], &[0u8; 0][..], &[0xffu8; 60][..]] {
        b.with(|m, c| m.frame_in(c, f));
    }
    assert!(b.log.total() - base >= 7, "{:#?}", b.violations());
    // Garbage messages of every opcode do not panic.
    for opc in 0..120u32 {
        for len in [0usize, 1, 6, 14, 72, 200] {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + opc as usize) as u8).collect();
            b.send(opc, &junk);
            if b.rd(VF_ARQLEN1) & AQLEN_ENABLE == 0 {
                // RESET_VF or a granted REQUEST_QUEUES: start over.
                b.init_adminq();
                b.call(op::GET_VF_RESOURCES, &LINUX_CAPS.to_le_bytes());
            }
            while b.recv().is_some() {}
        }
    }
}
