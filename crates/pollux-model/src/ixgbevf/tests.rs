//! The model driven through the host, register access by register access,
//! the way ixgbevf and DPDK's net_ixgbe_vf do it (no QEMU): guest memory is
//! a temporary file mapped as DMA, MSI-X vectors are files the host writes
//! 8 bytes to per interrupt, the wire is a pair of unix datagram sockets.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixDatagram;

use vfio_bindings::bindings::vfio::{
    VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_PCI_CONFIG_REGION_INDEX,
    VFIO_PCI_MSIX_IRQ_INDEX,
};
use vfio_user::{DmaMapFlags, ServerBackend};

use super::pkt::{self, tests::ipv4_frame, IPPROTO_TCP, IPPROTO_UDP};
use super::regs::*;
use super::*;
use crate::host::Host;
use crate::model::ViolationLog;
use crate::pci::{CMD_BUS_MASTER, CMD_MEMORY, MSIX_CAP, MSIX_ENABLE};
use crate::wire::{Wire, WireSpec};

const RAM: u64 = 0x10_0000;
const RAM_LEN: u64 = 4 << 20;
const MAC: [u8; 6] = DEFAULT_MAC;
const PEER: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];

struct Rig {
    h: Host<Ixgbevf>,
    ram: File,
    irqs: Vec<File>,
    peer: UnixDatagram,
    _dir: tempfile::TempDir,
    /// The driver's cache of read-to-clear mailbox bits (hw->mbx.vf_mailbox).
    cache: u32,
    v15: bool,
}

impl Rig {
    fn new(m: Ixgbevf) -> Rig {
        let mut h = Host::new(m, ViolationLog::default());
        h.region_write(
            VFIO_PCI_CONFIG_REGION_INDEX,
            4,
            &(CMD_MEMORY | CMD_BUS_MASTER).to_le_bytes(),
        )
        .unwrap();
        h.region_write(
            VFIO_PCI_CONFIG_REGION_INDEX,
            MSIX_CAP as u64 + 2,
            &MSIX_ENABLE.to_le_bytes(),
        )
        .unwrap();
        let ram = crate::iova::tests::ram(RAM_LEN);
        h.dma_map(
            DmaMapFlags::READ_WRITE,
            0,
            RAM,
            RAM_LEN,
            Some(ram.try_clone().unwrap()),
        )
        .unwrap();
        let irqs: Vec<File> = (0..3).map(|_| tempfile::tempfile().unwrap()).collect();
        h.set_irqs(
            VFIO_PCI_MSIX_IRQ_INDEX,
            VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
            0,
            3,
            irqs.iter().map(|f| f.try_clone().unwrap()).collect(),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("vf"), dir.path().join("peer"));
        let peer = UnixDatagram::bind(&b).unwrap();
        peer.set_nonblocking(true).unwrap();
        h.set_wire(Wire::open(&WireSpec::Unix(a, b)).unwrap());
        Rig {
            h,
            ram,
            irqs,
            peer,
            _dir: dir,
            cache: 0,
            v15: false,
        }
    }

    fn rd(&mut self, off: u64) -> u32 {
        let mut b = [0u8; 4];
        self.h.region_read(0, off, &mut b).unwrap();
        u32::from_le_bytes(b)
    }

    fn wr(&mut self, off: u64, v: u32) {
        self.h.region_write(0, off, &v.to_le_bytes()).unwrap();
    }

    fn put(&self, iova: u64, data: &[u8]) {
        self.ram.write_all_at(data, iova - RAM).unwrap();
    }

    fn get(&self, iova: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.ram.read_exact_at(&mut v, iova - RAM).unwrap();
        v
    }

    fn fired(&self, v: usize) -> u64 {
        self.irqs[v].metadata().unwrap().len() / 8
    }

    fn sent(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut b = vec![0u8; 70000];
        while let Ok(n) = self.peer.recv(&mut b) {
            out.push(b[..n].to_vec());
        }
        out
    }

    fn violations(&self) -> Vec<String> {
        self.h
            .log()
            .entries()
            .iter()
            .map(|v| v.to_string())
            .collect()
    }

    fn counter(&self, name: &str) -> u64 {
        self.h
            .model()
            .counters()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no counter {name}"))
    }

    // --- the VF driver's mailbox code (ixgbevf mbx.c) ---

    fn read_mbx(&mut self) -> u32 {
        let v = self.rd(VFMAILBOX) | self.cache;
        self.cache |= v & MB_R2C_BITS;
        v
    }

    fn poll(&mut self, bit: u32) {
        for _ in 0..100 {
            if self.read_mbx() & bit != 0 {
                return;
            }
        }
        panic!(
            "mailbox bit {bit:#x} never set; log {:#?}",
            self.violations()
        );
    }

    fn send(&mut self, msg: &[u32]) {
        if self.v15 {
            // ixgbevf_write_mbx_vf
            let v = self.read_mbx();
            self.wr(VFMAILBOX, v | MB_VFU);
            assert_ne!(self.read_mbx() & MB_VFU, 0, "lock obtained");
            self.read_mbx();
            self.cache &= !MB_PFSTS;
            self.read_mbx();
            self.cache &= !MB_PFACK;
            for (i, w) in msg.iter().enumerate() {
                self.wr(VFMBMEM + 4 * i as u64, *w);
            }
            let v = self.read_mbx();
            self.wr(VFMAILBOX, v | MB_REQ);
            self.poll(MB_PFACK);
            self.read_mbx();
            self.cache &= !MB_PFACK;
            let v = self.read_mbx();
            self.wr(VFMAILBOX, v & !MB_VFU);
        } else {
            // ixgbevf_write_mbx_vf_legacy (and DPDK's ixgbe_write_mbx_vf)
            self.wr(VFMAILBOX, MB_VFU);
            assert_ne!(self.read_mbx() & MB_VFU, 0, "lock obtained");
            self.read_mbx();
            self.cache &= !MB_PFSTS;
            self.read_mbx();
            self.cache &= !MB_PFACK;
            for (i, w) in msg.iter().enumerate() {
                self.wr(VFMBMEM + 4 * i as u64, *w);
            }
            self.wr(VFMAILBOX, MB_REQ);
            self.poll(MB_PFACK);
            self.cache &= !MB_PFACK;
        }
    }

    fn recv(&mut self, n: usize) -> Vec<u32> {
        self.poll(MB_PFSTS);
        self.cache &= !MB_PFSTS;
        if self.v15 {
            let r = (0..n).map(|i| self.rd(VFMBMEM + 4 * i as u64)).collect();
            let v = self.read_mbx();
            self.wr(VFMAILBOX, v | MB_ACK);
            r
        } else {
            self.wr(VFMAILBOX, MB_VFU);
            assert_ne!(self.read_mbx() & MB_VFU, 0);
            let r = (0..n).map(|i| self.rd(VFMBMEM + 4 * i as u64)).collect();
            self.wr(VFMAILBOX, MB_ACK);
            r
        }
    }

    fn call(&mut self, msg: &[u32], n: usize) -> Vec<u32> {
        self.send(msg);
        self.recv(n)
    }

    /// ixgbevf_reset_hw_vf then ixgbevf_negotiate_api (Linux: 1.5 first;
    /// DPDK 22.11: 1.3 first).
    fn bring_up(&mut self, apis: &[u32]) {
        self.v15 = false;
        self.wr(VFCTRL, CTRL_RST);
        for _ in 0..200 {
            if self.read_mbx() & (MB_RSTD | MB_RSTI) == 0 {
                break;
            }
            self.read_mbx();
            self.cache &= !(MB_RSTD | MB_RSTI);
        }
        let r = self.call(&[VF_RESET], 4);
        assert_eq!(r[0], VF_RESET | MSG_SUCCESS);
        let mut m = r[1].to_le_bytes().to_vec();
        m.extend_from_slice(&r[2].to_le_bytes()[..2]);
        assert_eq!(m, MAC);
        assert_eq!(r[3], 0, "multicast filter type");
        for &a in apis {
            let r = self.call(&[VF_API_NEGOTIATE, a, 0], 3);
            if r[0] & !MSG_CTS == VF_API_NEGOTIATE | MSG_SUCCESS {
                self.v15 = a >= api::V15;
                break;
            }
        }
    }

    fn rx_ring(&mut self, q: u64, base: u64, count: u32, bsize_kb: u32, vme: bool) {
        let b = RX_BASE + Q_STRIDE * q;
        self.wr(b + rxq::RXDCTL, 0);
        self.wr(b + rxq::BAL, base as u32);
        self.wr(b + rxq::BAH, (base >> 32) as u32);
        self.wr(b + rxq::LEN, count * 16);
        self.wr(b + rxq::HEAD, 0);
        self.wr(b + rxq::TAIL, 0);
        self.wr(b + rxq::SRRCTL, SRRCTL_DESCTYPE_ADV_ONEBUF | bsize_kb);
        for i in 0..count as u64 {
            let mut d = [0u8; 16];
            d[0..8].copy_from_slice(&(base + 0x10000 + i * 0x4000).to_le_bytes());
            self.put(base + i * 16, &d);
        }
        self.wr(
            b + rxq::RXDCTL,
            DCTL_ENABLE | if vme { RXDCTL_VME } else { 0 },
        );
        assert_ne!(self.rd(b + rxq::RXDCTL) & DCTL_ENABLE, 0);
        self.wr(b + rxq::TAIL, count - 1);
    }

    fn tx_ring(&mut self, q: u64, base: u64, count: u32) {
        let b = TX_BASE + Q_STRIDE * q;
        self.wr(b + txq::TXDCTL, TXDCTL_SWFLSH);
        self.wr(b + txq::BAL, base as u32);
        self.wr(b + txq::BAH, (base >> 32) as u32);
        self.wr(b + txq::LEN, count * 16);
        self.wr(b + txq::WBAH, 0);
        self.wr(b + txq::WBAL, 0);
        self.wr(b + txq::HEAD, 0);
        self.wr(b + txq::TAIL, 0);
        self.wr(b + txq::TXDCTL, DCTL_ENABLE | (8 << 16) | (1 << 8) | 32);
        assert_ne!(self.rd(b + txq::TXDCTL) & DCTL_ENABLE, 0);
    }

    /// ixgbevf_configure_msix with two queue vectors: queue n's rx and tx
    /// on vector n, the mailbox on vector 2; then ixgbevf_irq_enable.
    fn msix(&mut self) {
        for q in 0..2u32 {
            let shift = 16 * (q & 1);
            let v = self.rd(VTIVAR0);
            self.wr(
                VTIVAR0,
                v | ((0x80 | q) << shift) | ((0x80 | q) << (shift + 8)),
            );
        }
        let v = self.rd(VTIVAR_MISC);
        self.wr(VTIVAR_MISC, (v & !0xff) | 0x82);
        self.rd(VTEICR);
        self.wr(VTEIAM, 7);
        self.wr(VTEIAC, 7);
        self.wr(VTEIMS, 7);
    }

    fn desc(&self, base: u64, i: u64) -> [u8; 16] {
        self.get(base + 16 * i, 16).try_into().unwrap()
    }
}

fn linux() -> Rig {
    let mut r = Rig::new(Ixgbevf::default_82599());
    r.bring_up(&[api::V15, api::V14, api::V13, api::V12, api::V11, api::V10]);
    assert!(r.v15, "1.5 negotiated");
    r
}

fn w32(d: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(d[i..i + 4].try_into().unwrap())
}

#[test]
fn spec_ids_and_bars() {
    let m = Ixgbevf::default_82599();
    let s = m.spec();
    assert_eq!((s.vendor, s.device, s.class), (0x8086, 0x10ed, (2, 0, 0)));
    assert_eq!(s.msix_vectors, 3);
    assert_eq!((s.msix_bar, s.msix_table, s.msix_pba), (3, 0, 0x2000));
    assert!(s.bars.iter().all(|b| b.size == 0x4000 && b.is_64));
    for d in [0x1515, 0x1565, 0x15a8, 0x15c5] {
        assert_eq!(Ixgbevf::new(d, MAC, 2).unwrap().spec().device, d);
    }
    assert!(Ixgbevf::new(0x1234, MAC, 2).is_err());
    assert!(Ixgbevf::new(0x10ed, MAC, 0).is_err());
    assert!(Ixgbevf::new(0x10ed, [1, 0, 0, 0, 0, 0], 2).is_err());
    assert_eq!(
        crate::model::parse_unicast_mac("02:00:00:10:ed:00").unwrap(),
        MAC
    );
    assert!(crate::model::parse_unicast_mac("01:00:00:10:ed:00").is_err());
}

#[test]
fn legacy_handshake_as_dpdk_does_it() {
    let mut r = Rig::new(Ixgbevf::default_82599());
    r.bring_up(&[api::V13, api::V12, api::V11, api::V10]);
    assert!(!r.v15);
    assert_eq!(r.h.model().pf().api(), api::V13);
    let q = r.call(&[VF_GET_QUEUES, 0, 0, 0, 0], 5);
    assert_eq!(q, vec![VF_GET_QUEUES | MSG_SUCCESS | MSG_CTS, 2, 2, 0, 0]);
    // The legacy link check reads the mailbox without PFSTS (vf.c
    // ixgbevf_check_mac_link_vf): the last reply, with CTS.
    r.wr(VFMAILBOX, MB_VFU);
    assert_ne!(r.read_mbx() & MB_VFU, 0);
    assert_ne!(r.rd(VFMBMEM) & MSG_CTS, 0);
    r.wr(VFMAILBOX, MB_ACK);
    assert_eq!(r.rd(VFLINKS), LINKS_UP | LINKS_SPEED_10G);
    // An unsupported API is refused, the old one stays.
    let n = r.call(&[VF_API_NEGOTIATE, api::V20, 0], 3);
    assert_eq!(n[0], VF_API_NEGOTIATE | MSG_FAILURE | MSG_CTS);
    assert_eq!(r.h.model().pf().api(), api::V13);
    assert!(r.violations().is_empty(), "{:#?}", r.violations());
}

#[test]
fn linux_15_handshake_and_bring_up_messages() {
    let mut r = linux();
    assert_eq!(r.h.model().pf().api(), api::V15);
    let q = r.call(&[VF_GET_QUEUES, 0, 0, 0, 0], 5);
    assert_eq!(q, vec![VF_GET_QUEUES | MSG_SUCCESS | MSG_CTS, 2, 2, 0, 0]);
    // ixgbevf_set_rx_mode: xcast (untrusted: ALLMULTI becomes MULTI),
    // the multicast list, the unicast list.
    let x = r.call(&[VF_UPDATE_XCAST_MODE, xcast::ALLMULTI], 2);
    assert_eq!(
        x,
        vec![VF_UPDATE_XCAST_MODE | MSG_SUCCESS | MSG_CTS, xcast::MULTI]
    );
    let mc = [0x33, 0x33, 0, 0, 0, 1];
    let h = mbx::mta_vector(&mc) as u32;
    let m = r.call(&[VF_SET_MULTICAST | (1 << 16), h], 1);
    assert_eq!(m[0], VF_SET_MULTICAST | (1 << 16) | MSG_SUCCESS | MSG_CTS);
    let u = r.call(&[VF_SET_MACVLAN, 0, 0], 1);
    assert_eq!(u[0], VF_SET_MACVLAN | MSG_SUCCESS | MSG_CTS);
    let l = r.call(&[VF_SET_LPE, 1518], 2);
    assert_eq!(l[0], VF_SET_LPE | MSG_SUCCESS | MSG_CTS);
    // ixgbevf_up_complete: set_rar with the permanent MAC, link state.
    let mac = [
        VF_SET_MAC_ADDR,
        u32::from_le_bytes([MAC[0], MAC[1], MAC[2], MAC[3]]),
        u32::from_le_bytes([MAC[4], MAC[5], 0, 0]),
    ];
    assert_eq!(r.call(&mac, 3)[0], VF_SET_MAC_ADDR | MSG_SUCCESS | MSG_CTS);
    assert_eq!(
        r.call(&[VF_GET_LINK_STATE, 0], 2),
        vec![VF_GET_LINK_STATE | MSG_SUCCESS | MSG_CTS, 1]
    );
    // RETA and key (82599 at 1.2+).
    let reta = r.call(&[VF_GET_RETA], 9);
    assert_eq!(reta[0], VF_GET_RETA | MSG_SUCCESS | MSG_CTS);
    assert_eq!(
        reta[1], 0xe4e4_e4e4,
        "entries 0,1,2,3 repeating, 2 bits each"
    );
    let key = r.call(&[VF_GET_RSS_KEY], 11);
    assert_eq!(key[1].to_le_bytes(), [0x6d, 0x5a, 0x56, 0xda]);
    // The 1.5 check_link read finds no message: link up.
    assert_eq!(r.read_mbx() & MB_PFSTS, 0);
    assert_eq!(r.counter("mbx_reset"), 1);
    assert!(r.violations().is_empty(), "{:#?}", r.violations());
}

#[test]
fn x550_refuses_rss_queries() {
    let mut r = Rig::new(Ixgbevf::new(DEV_X550_VF, MAC, 2).unwrap());
    r.bring_up(&[api::V15]);
    let reta = r.call(&[VF_GET_RETA], 9);
    assert_eq!(reta[0], VF_GET_RETA | MSG_FAILURE | MSG_CTS);
    assert!(r.violations().is_empty(), "{:#?}", r.violations());
}

#[test]
fn interrupts_follow_ivar_eims_eiac_eiam() {
    let mut r = linux();
    r.msix();
    let before = r.fired(2);
    // A link change: the PF pings, the mailbox cause goes to vector 2.
    r.h.set_link(false);
    assert_eq!(r.rd(VFLINKS), 0);
    assert_eq!(r.fired(2), before + 1);
    assert_eq!(r.rd(VTEIMS) & 4, 0, "EIAM masked it");
    assert_eq!(r.rd(VTEICR) & 4, 0, "EIAC cleared it");
    // The ping carries CTS.
    let p = r.recv(1);
    assert_eq!(p[0], PF_CONTROL_MSG | MSG_CTS);
    // While masked, a cause waits; EIMS delivers it.
    r.h.set_link(true);
    assert_eq!(r.fired(2), before + 1);
    r.wr(VTEIMS, 4);
    assert_eq!(r.fired(2), before + 2);
    // EICS raises queue vectors (the watchdog's kick).
    r.wr(VTEICS, 1);
    assert_eq!(r.fired(0), 1);
    assert!(r.violations().is_empty(), "{:#?}", r.violations());
}

#[test]
fn rx_one_buffer_writeback() {
    let mut r = linux();
    r.msix();
    let ring = RAM + 0x1000;
    r.rx_ring(0, ring, 8, 2, true);
    let f = ipv4_frame(
        MAC,
        PEER,
        IPPROTO_UDP,
        [10, 0, 0, 2],
        [10, 0, 0, 1],
        7,
        9,
        b"hello",
    );
    r.h.frame_in(&f);
    let d = r.desc(ring, 0);
    let st = w32(&d, 8);
    assert_eq!(
        st & 0xfffff,
        RXD_STAT_DD | RXD_STAT_EOP | RXD_STAT_IPCS | RXD_STAT_L4CS | RXD_STAT_UDPCS
    );
    assert_eq!(st & 0xfff0_0000, 0, "no errors");
    assert_eq!(u16::from_le_bytes([d[12], d[13]]) as usize, f.len());
    assert_eq!(w32(&d, 0) & 0xfff0, PKTTYPE_IPV4 | PKTTYPE_UDP);
    assert_eq!(r.get(ring + 0x10000, f.len()), f);
    assert_eq!(r.rd(RX_BASE + rxq::HEAD), 1);
    assert_eq!(r.rd(VFGPRC), 1);
    assert_eq!(r.rd(VFGORC_LSB), f.len() as u32);
    assert_eq!(r.fired(0), 1, "rx of queue 0 on vector 0");
    // Not for us: filtered, counted, nothing written.
    let other = ipv4_frame(
        [2, 0, 0, 0, 0, 5],
        PEER,
        IPPROTO_UDP,
        [1; 4],
        [2; 4],
        1,
        2,
        b"x",
    );
    r.h.frame_in(&other);
    assert_eq!(r.counter("rx_drop_filtered_address"), 1);
    assert_eq!(r.rd(RX_BASE + rxq::HEAD), 1);
    assert!(r.violations().is_empty(), "{:#?}", r.violations());
}

#[test]
fn rx_jumbo_frame_spans_buffers_and_ring_full_drops() {
    let mut r = linux();
    let l = r.call(&[VF_SET_LPE, 9018], 2);
    assert_eq!(l[0], VF_SET_LPE | MSG_SUCCESS | MSG_CTS);
    let ring = RAM + 0x1000;
    r.rx_ring(0, ring, 8, 2, true);
    let payload = vec![0xab; 5000];
    let f = ipv4_frame(
        MAC,
        PEER,
        IPPROTO_UDP,
        [10, 0, 0, 2],
        [10, 0, 0, 1],
        7,
        9,
        &payload,
    );
    r.h.frame_in(&f);
    let lens: Vec<usize> = (0..3)
        .map(|i| {
            let d = r.desc(ring, i);
            u16::from_le_bytes([d[12], d[13]]) as usize
        })
        .collect();
    assert_eq!(lens, vec![2048, 2048, f.len() - 4096]);
    for i in 0..3 {
        let st = w32(&r.desc(ring, i), 8);
        assert_ne!(st & RXD_STAT_DD, 0);
        assert_eq!(st & RXD_STAT_EOP != 0, i == 2, "EOP on the last only");
    }
    let mut got = r.get(ring + 0x10000, 2048);
    got.extend(r.get(ring + 0x14000, 2048));
    got.extend(r.get(ring + 0x18000, f.len() - 4096));
    assert_eq!(got, f);
    // 7 descriptors were free, 3 used: 4 left, a second jumbo fits, a
    // third does not.
    r.h.frame_in(&f);
    r.h.frame_in(&f);
    assert_eq!(r.counter("rx_drop_no_descriptor"), 1);
    // Beyond the max frame: dropped.
    let big = ipv4_frame(MAC, PEER, IPPROTO_UDP, [1; 4], [2; 4], 1, 2, &vec![0; 9100]);
    r.h.frame_in(&big);
    assert_eq!(r.counter("rx_drop_too_long"), 1);
    assert!(r.violations().is_empty(), "{:#?}", r.violations());
}

/// Writes a context and one data descriptor for `frame` at TDT and
/// bumps TDT, as ixgbevf_tx_csum + ixgbevf_tx_map do.
#[allow(clippy::too_many_arguments)]
fn xmit(
    r: &mut Rig,
    ring: u64,
    at: &mut u32,
    count: u32,
    frame: &[u8],
    vlan: Option<u16>,
    csum: Option<(usize, u32, bool)>,
) {
    let buf = ring + 0x10000 + *at as u64 * 0x1000;
    r.put(buf, frame);
    let mut vml = (14u32 << CTX_MACLEN_SHIFT) | vlan.map_or(0, |v| (v as u32) << 16);
    let mut tucmd = TXD_CMD_DEXT | TXD_DTYP_CTXT;
    let mut olinfo = (frame.len() as u32) << TXD_PAYLEN_SHIFT | 0x80;
    if let Some((iplen, l4t, ipv4)) = csum {
        vml |= iplen as u32;
        tucmd |= l4t | if ipv4 { TUCMD_IPV4 } else { 0 };
        olinfo |= TXD_POPTS_TXSM | if ipv4 { TXD_POPTS_IXSM } else { 0 };
    }
    let mut c = [0u8; 16];
    c[0..4].copy_from_slice(&vml.to_le_bytes());
    c[8..12].copy_from_slice(&tucmd.to_le_bytes());
    r.put(ring + *at as u64 * 16, &c);
    *at = (*at + 1) % count;
    let mut cmd = TXD_DTYP_DATA | TXD_CMD_DEXT | TXD_CMD_IFCS | TXD_CMD_EOP | TXD_CMD_RS;
    cmd |= frame.len() as u32;
    if vlan.is_some() {
        cmd |= TXD_CMD_VLE;
    }
    let mut d = [0u8; 16];
    d[0..8].copy_from_slice(&buf.to_le_bytes());
    d[8..12].copy_from_slice(&cmd.to_le_bytes());
    d[12..16].copy_from_slice(&olinfo.to_le_bytes());
    r.put(ring + *at as u64 * 16, &d);
    *at = (*at + 1) % count;
    r.wr(TX_BASE + txq::TAIL, *at);
}

#[test]
fn tx_checksum_offload_and_writeback() {
    let mut r = linux();
    r.msix();
    let ring = RAM + 0x20_0000;
    r.tx_ring(0, ring, 64);
    let mut f = ipv4_frame(
        PEER,
        MAC,
        IPPROTO_TCP,
        [10, 0, 0, 1],
        [10, 0, 0, 2],
        1000,
        80,
        b"payload!",
    );
    // As the stack hands it over with CHECKSUM_PARTIAL: the TCP field
    // holds the pseudo-header sum (with length), the IP checksum is left
    // for IXSM.
    let l4len = f.len() - 34;
    let l3 = pkt::parse_l3(&f, pkt::ETH_P_IP, 14).l3.unwrap();
    let seed = pkt::fold(pkt::pseudo_sum(&l3, IPPROTO_TCP, l4len as u32));
    f[50..52].copy_from_slice(&seed.to_be_bytes());
    f[24] = 0;
    f[25] = 0;
    let mut at = 0;
    xmit(
        &mut r,
        ring,
        &mut at,
        64,
        &f,
        None,
        Some((20, TUCMD_L4T_TCP, true)),
    );
    let sent = r.sent();
    assert_eq!(sent.len(), 1);
    let p = pkt::parse_l3(&sent[0], pkt::ETH_P_IP, 14);
    assert_eq!(p.l4_ok, Some(true), "TCP checksum inserted");
    assert!(
        matches!(p.l3, Some(pkt::L3::V4 { csum_ok: true, .. })),
        "IP checksum inserted"
    );
    assert_eq!(sent[0].len(), 60.max(f.len()), "padded to 60");
    assert_eq!(
        w32(&r.desc(ring, 1), 12) & TXD_STAT_DD,
        TXD_STAT_DD,
        "DD on the RS descriptor"
    );
    assert_eq!(r.rd(TX_BASE + txq::HEAD), 2);
    assert_eq!(r.rd(VFGPTC), 1);
    assert_eq!(r.fired(0), 1, "tx of queue 0 on vector 0");
    assert!(r.violations().is_empty(), "{:#?}", r.violations());
}

#[test]
fn vlan_insert_on_tx_and_strip_on_rx() {
    let mut r = linux();
    let v = r.call(&[VF_SET_VLAN | (1 << 16), 100], 2);
    assert_eq!(v[0], VF_SET_VLAN | (1 << 16) | MSG_SUCCESS | MSG_CTS);
    let ring = RAM + 0x20_0000;
    r.tx_ring(0, ring, 64);
    let f = ipv4_frame(
        PEER,
        MAC,
        IPPROTO_UDP,
        [10, 0, 0, 1],
        [10, 0, 0, 2],
        1,
        2,
        &[7; 40],
    );
    let mut at = 0;
    xmit(&mut r, ring, &mut at, 64, &f, Some(100), None);
    let sent = r.sent();
    assert_eq!(&sent[0][12..16], &[0x81, 0x00, 0, 100]);
    assert_eq!(&sent[0][16..], &f[12..]);
    // A VLAN not ours is a spoof.
    xmit(&mut r, ring, &mut at, 64, &f, Some(200), None);
    assert!(r.sent().is_empty());
    assert_eq!(r.counter("tx_drop_spoofed"), 1);
    // Rx: tagged 100 arrives stripped with VP and the tag.
    let rxr = RAM + 0x1000;
    r.rx_ring(0, rxr, 8, 2, true);
    let mut tagged = f[..12].to_vec();
    tagged[0..6].copy_from_slice(&MAC);
    tagged[6..12].copy_from_slice(&PEER);
    tagged.extend_from_slice(&[0x81, 0x00, 0x20, 100]);
    tagged.extend_from_slice(&f[12..]);
    r.h.frame_in(&tagged);
    let d = r.desc(rxr, 0);
    assert_ne!(w32(&d, 8) & RXD_STAT_VP, 0);
    assert_eq!(u16::from_le_bytes([d[14], d[15]]), 0x2064);
    let len = u16::from_le_bytes([d[12], d[13]]) as usize;
    assert_eq!(len, tagged.len() - 4);
    assert_eq!(&r.get(rxr + 0x10000, len)[12..14], &[0x08, 0x00]);
    // VLAN 5 is not in the table.
    tagged[15] = 5;
    r.h.frame_in(&tagged);
    assert_eq!(r.counter("rx_drop_filtered_vlan"), 1);
    assert!(r.violations().is_empty(), "{:#?}", r.violations());
}

#[test]
fn spoofed_source_is_dropped() {
    let mut r = linux();
    let ring = RAM + 0x20_0000;
    r.tx_ring(0, ring, 64);
    let f = ipv4_frame(
        PEER,
        [2, 0, 0, 0, 0, 0x42],
        IPPROTO_UDP,
        [1; 4],
        [2; 4],
        1,
        2,
        b"spoof",
    );
    let mut at = 0;
    xmit(&mut r, ring, &mut at, 64, &f, None, None);
    assert!(r.sent().is_empty());
    assert_eq!(r.counter("tx_drop_spoofed"), 1);
    assert_eq!(r.rd(TX_BASE + txq::HEAD), 2, "descriptors still completed");
    // A MACVLAN makes the address ours.
    let mv = [
        VF_SET_MACVLAN | (1 << 16),
        u32::from_le_bytes([2, 0, 0, 0]),
        u32::from_le_bytes([0, 0x42, 0, 0]),
    ];
    assert_eq!(
        r.call(&mv, 1)[0],
        VF_SET_MACVLAN | (1 << 16) | MSG_SUCCESS | MSG_CTS
    );
    xmit(&mut r, ring, &mut at, 64, &f, None, None);
    assert_eq!(r.sent().len(), 1);
    assert!(r.violations().is_empty(), "{:#?}", r.violations());
}

#[test]
fn with_spoofchk_off_a_foreign_source_goes_out() {
    let mut r = Rig::new(Ixgbevf::default_82599().with_spoofchk(false));
    r.bring_up(&[api::V15, api::V14, api::V13, api::V12, api::V11, api::V10]);
    let ring = RAM + 0x20_0000;
    r.tx_ring(0, ring, 64);
    let f = ipv4_frame(
        PEER,
        [2, 0, 0, 0, 0, 0x42],
        IPPROTO_UDP,
        [1; 4],
        [2; 4],
        1,
        2,
        b"not ours",
    );
    let mut at = 0;
    xmit(&mut r, ring, &mut at, 64, &f, None, None);
    assert_eq!(r.sent().len(), 1);
    assert_eq!(r.counter("tx_drop_spoofed"), 0);
    assert!(r.violations().is_empty(), "{:#?}", r.violations());
}

#[test]
fn tail_past_the_ring_is_a_violation() {
    let mut r = linux();
    let ring = RAM + 0x20_0000;
    r.tx_ring(0, ring, 64);
    r.wr(TX_BASE + txq::TAIL, 64);
    assert_eq!(r.rd(TX_BASE + txq::TAIL), 0);
    let v = r.violations();
    assert_eq!(v.len(), 1, "{v:#?}");
    assert!(v[0].contains("VFTDT(0) = 64"), "{v:#?}");
    // Sub-dword accesses too.
    r.h.region_write(0, 0x2018, &[1, 0]).unwrap();
    assert_eq!(r.violations().len(), 2);
}

#[test]
fn tso_end_to_end() {
    let mut r = linux();
    let ring = RAM + 0x20_0000;
    r.tx_ring(0, ring, 64);
    let payload: Vec<u8> = (0..4000u32).map(|i| (i * 7) as u8).collect();
    let mut f = ipv4_frame(
        PEER,
        MAC,
        IPPROTO_TCP,
        [10, 0, 0, 1],
        [10, 0, 0, 2],
        5,
        6,
        &payload,
    );
    let l3 = pkt::parse_l3(&f, pkt::ETH_P_IP, 14).l3.unwrap();
    // As ixgbevf_tso leaves it.
    f[16] = 0;
    f[17] = 0;
    f[24] = 0;
    f[25] = 0;
    let seed = pkt::fold(pkt::pseudo_sum(&l3, IPPROTO_TCP, 0));
    f[50..52].copy_from_slice(&seed.to_be_bytes());
    let buf = ring + 0x10000;
    r.put(buf, &f);
    let mut c = [0u8; 16];
    c[0..4].copy_from_slice(&((14u32 << CTX_MACLEN_SHIFT) | 20).to_le_bytes());
    c[8..12].copy_from_slice(
        &(TXD_CMD_DEXT | TXD_DTYP_CTXT | TUCMD_L4T_TCP | TUCMD_IPV4).to_le_bytes(),
    );
    c[12..16].copy_from_slice(&((1448u32 << 16) | (20 << 8) | (1 << 4)).to_le_bytes());
    r.put(ring, &c);
    // Two data descriptors: headers, then payload.
    let cmd = TXD_DTYP_DATA | TXD_CMD_DEXT | TXD_CMD_IFCS | TXD_CMD_TSE;
    let olinfo = ((payload.len() as u32) << TXD_PAYLEN_SHIFT)
        | 0x80
        | (1 << 4)
        | TXD_POPTS_TXSM
        | TXD_POPTS_IXSM;
    let mut d = [0u8; 16];
    d[0..8].copy_from_slice(&buf.to_le_bytes());
    d[8..12].copy_from_slice(&(cmd | 54).to_le_bytes());
    d[12..16].copy_from_slice(&olinfo.to_le_bytes());
    r.put(ring + 16, &d);
    let mut d = [0u8; 16];
    d[0..8].copy_from_slice(&(buf + 54).to_le_bytes());
    d[8..12]
        .copy_from_slice(&(cmd | TXD_CMD_EOP | TXD_CMD_RS | payload.len() as u32).to_le_bytes());
    r.put(ring + 32, &d);
    r.wr(TX_BASE + txq::TAIL, 3);
    let sent = r.sent();
    assert_eq!(sent.len(), 3);
    let mut data = Vec::new();
    for s in &sent {
        let p = pkt::parse_l3(s, pkt::ETH_P_IP, 14);
        assert_eq!(p.l4_ok, Some(true));
        data.extend_from_slice(&s[54..]);
    }
    assert_eq!(data, payload);
    assert_eq!(r.counter("tx_tso_packets"), 1);
    assert!(r.violations().is_empty(), "{:#?}", r.violations());
}

#[test]
fn rss_queue_choice_matches_toeplitz() {
    let mut r = linux();
    // ixgbevf_setup_psrtype with two queues: RQPL 1.
    r.wr(VFPSRTYPE, 0x1330 | (1 << 29));
    r.rx_ring(0, RAM + 0x1000, 8, 2, true);
    r.rx_ring(1, RAM + 0x8_0000, 8, 2, true);
    let mut seen = [false; 2];
    for sport in 1000..1016u16 {
        let f = ipv4_frame(
            MAC,
            PEER,
            IPPROTO_TCP,
            [66, 9, 149, 187],
            [161, 142, 100, 80],
            sport,
            1766,
            b"",
        );
        let input = crate::toeplitz::ipv4_input(
            [66, 9, 149, 187].into(),
            [161, 142, 100, 80].into(),
            Some((sport, 1766)),
        );
        let h = crate::toeplitz::hash(&crate::toeplitz::MS_KEY, &input);
        let q = (((h & 0x7f) % 4) & 1) as u64;
        let base = if q == 0 { RAM + 0x1000 } else { RAM + 0x8_0000 };
        let head = r.rd(RX_BASE + Q_STRIDE * q + rxq::HEAD) as u64;
        r.h.frame_in(&f);
        let d = r.desc(base, head);
        assert_eq!(w32(&d, 4), h, "hash in the descriptor");
        assert_eq!(w32(&d, 0) & 0xf, RSSTYPE_IPV4_TCP);
        assert_eq!(
            r.rd(RX_BASE + Q_STRIDE * q + rxq::HEAD) as u64,
            (head + 1) % 8
        );
        seen[q as usize] = true;
        // Give the descriptor back.
        let mut rd = [0u8; 16];
        rd[0..8].copy_from_slice(&(base + 0x10000 + head * 0x4000).to_le_bytes());
        r.put(base + head * 16, &rd);
        r.wr(RX_BASE + Q_STRIDE * q + rxq::TAIL, head as u32);
    }
    assert!(seen[0] && seen[1], "both queues used");
    // The Microsoft vector itself.
    let input = crate::toeplitz::ipv4_input(
        [66, 9, 149, 187].into(),
        [161, 142, 100, 80].into(),
        Some((2794, 1766)),
    );
    assert_eq!(
        crate::toeplitz::hash(&r.h.model().pf().config().rss_key, &input),
        0x51cc_c178
    );
    assert!(r.violations().is_empty(), "{:#?}", r.violations());
}

#[test]
fn pf_reset_is_noticed_and_recovered() {
    let mut r = linux();
    r.msix();
    let out = r.h.control("pf reset-start");
    assert!(out.ends_with("ok\n"), "{out}");
    assert_eq!(r.rd(VFLINKS), 0, "link down while the PF resets");
    assert_eq!(r.recv(1)[0], PF_CONTROL_MSG, "ping without CTS");
    // The ACK of a VF that is not clear to send brings a FAILURE (the
    // VF's watchdog then reports an error and resets).
    r.poll(MB_PFSTS);
    assert_eq!(r.rd(VFMBMEM), MSG_FAILURE);
    r.cache &= !MB_PFSTS;
    // Messages fail without CTS.
    let m = r.call(&[VF_SET_VLAN | (1 << 16), 7], 1);
    assert_eq!(m[0], VF_SET_VLAN | (1 << 16) | MSG_FAILURE);
    assert!(r.read_mbx() & MB_RSTI != 0);
    assert!(r.h.control("pf reset-done").ends_with("ok\n"));
    assert_ne!(r.read_mbx() & MB_RSTD, 0);
    // The VF resets and comes back.
    r.cache = 0;
    r.bring_up(&[api::V15]);
    assert!(r.h.model().pf().cts());
    assert_eq!(r.counter("pf_resets"), 1);
    assert!(r.h.control("pf bogus").starts_with("error"));
    assert!(r.violations().is_empty(), "{:#?}", r.violations());
}

#[test]
fn malformed_driver_input_is_logged_not_fatal() {
    let mut r = Rig::new(Ixgbevf::default_82599());
    // Mailbox misuse.
    r.wr(VFMBMEM, 1);
    r.wr(VFMAILBOX, MB_REQ);
    assert_eq!(r.violations().len(), 2, "{:#?}", r.violations());
    // A pseudo-random storm of register writes and frames: no panic.
    let mut x: u64 = 0x1234_5678_9abc_def0;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..20_000 {
        let off = (next() % 0x4000) & !3;
        let v = next() as u32;
        if off == VFCTRL || off == VFMAILBOX && v & MB_VFU == 0 {
            continue;
        }
        let v = if (RX_BASE..TX_BASE + 0x200).contains(&off) && next() % 2 == 0 {
            (v % 64) | if next() % 3 == 0 { DCTL_ENABLE } else { 0 }
        } else {
            v
        };
        r.wr(off, v);
        let mut b = [0u8; 4];
        r.h.region_read(0, (next() % 0x4000) & !3, &mut b).unwrap();
        if next() % 50 == 0 {
            let n = (next() % 200) as usize;
            let f: Vec<u8> = (0..n).map(|_| next() as u8).collect();
            r.h.frame_in(&f);
        }
    }
    assert!(!r.violations().is_empty());
}
