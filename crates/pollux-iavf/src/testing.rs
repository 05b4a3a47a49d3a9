//! Software stand-ins for the hardware, for tests and benches that run
//! without it (the `testing` feature).
//!
//! - [`SimPf`]: a PF and its firmware behind the VF's admin queue
//!   registers, answering virtchnl as the Linux i40e PF does (replies with
//!   a status in the descriptor cookie, RESET_VF unanswered, REQUEST_QUEUES
//!   answered only when refused, a LINK_CHANGE after ENABLE_QUEUES, a
//!   reset that disables the admin queue and walks VFGEN_RSTAT), checking
//!   the VF's messages as `virtchnl_vc_validate_vf_msg` does and logging
//!   what the VF got wrong. It reads descriptors and buffers through the
//!   addresses the driver programs, but only inside a [`SimMemory`] arena
//!   it keeps alive, so it is safe to use.
//! - [`SimRx`] / [`SimTx`]: the device side of the data rings. Like a
//!   device they write and read through whatever address a descriptor
//!   holds, so they are `unsafe`.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use pollux_core::{AnonMemory, DmaRegion, HugePages, Iova, MemError, MemoryProvider};
use pollux_vfio::Bar;

use crate::desc::{DescRing, RxDesc, TxDesc};
use crate::proto::{self, AddrType, AqDesc, EthStats, LinkInfo, PfEvent, VfResources};
use crate::regs::{self, Regs};

// ---------------------------------------------------------------------------
// Memory the software PF can reach.

struct Arena {
    region: DmaRegion,
}

/// A [`MemoryProvider`] carving regions out of one anonymous arena whose
/// IOVA is its address. The arena lives as long as any region or any
/// [`SimPf`] using it, so the PF may read and write any address inside it.
#[derive(Clone)]
pub struct SimMemory {
    arena: Arc<Arena>,
    next: Arc<Mutex<usize>>,
}

impl SimMemory {
    /// An arena of `len` bytes (page multiple).
    pub fn new(len: usize) -> SimMemory {
        let region = AnonMemory::new(HugePages::Never)
            .allocate(len.next_multiple_of(4096))
            .expect("arena memory for the software PF");
        SimMemory {
            arena: Arc::new(Arena { region }),
            next: Arc::new(Mutex::new(0)),
        }
    }

    /// Whether `iova..iova+len` lies inside the arena; its pointer if so.
    fn ptr(&self, iova: u64, len: usize) -> Option<*mut u8> {
        let base = self.arena.region.iova().0;
        let off = iova.checked_sub(base)? as usize;
        if off.checked_add(len)? > self.arena.region.len() {
            return None;
        }
        // SAFETY: off + len <= region.len(): inside the arena's mapping.
        Some(unsafe { self.arena.region.as_ptr().add(off) })
    }

    fn read(&self, iova: u64, len: usize) -> Option<Vec<u8>> {
        let p = self.ptr(iova, len)?;
        Some(
            (0..len)
                // SAFETY: `ptr` checked the range is inside the arena,
                // which `self` keeps mapped; volatile byte reads, as the
                // driver accesses this memory only with volatile accesses
                // too and never concurrently (the PF runs inside the
                // driver's register writes).
                .map(|i| unsafe { p.add(i).read_volatile() })
                .collect(),
        )
    }

    fn write(&self, iova: u64, data: &[u8]) -> bool {
        let Some(p) = self.ptr(iova, data.len()) else {
            return false;
        };
        for (i, b) in data.iter().enumerate() {
            // SAFETY: as in `read`.
            unsafe { p.add(i).write_volatile(*b) };
        }
        true
    }

    fn read_desc(&self, iova: u64) -> Option<AqDesc> {
        let b = self.read(iova, 32)?;
        let q = |i: usize| u64::from_le_bytes(b[8 * i..8 * i + 8].try_into().unwrap_or([0; 8]));
        Some(AqDesc::from_qwords([q(0), q(1), q(2), q(3)]))
    }

    fn write_desc(&self, iova: u64, d: &AqDesc) -> bool {
        let mut b = [0u8; 32];
        for (i, q) in d.to_qwords().iter().enumerate() {
            b[8 * i..8 * i + 8].copy_from_slice(&q.to_le_bytes());
        }
        self.write(iova, &b)
    }
}

impl MemoryProvider for SimMemory {
    fn allocate(&self, len: usize) -> Result<DmaRegion, MemError> {
        if len == 0 {
            return Err(MemError::Empty);
        }
        let len = len.next_multiple_of(4096);
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let off = *next;
        if off + len > self.arena.region.len() {
            return Err(MemError::Empty);
        }
        *next = off + len;
        // SAFETY: off + len is inside the arena (checked above).
        let ptr = unsafe { self.arena.region.as_ptr().add(off) };
        let ptr = NonNull::new(ptr).ok_or(MemError::Empty)?;
        let iova = Iova(self.arena.region.iova().0 + off as u64);
        // SAFETY: the range is inside the arena, which the owner (an Arc
        // of it) keeps mapped; regions never overlap (bump allocation);
        // the IOVA is the address, as AnonMemory's.
        Ok(unsafe {
            DmaRegion::from_raw_parts(ptr, len, iova, false, Box::new(self.arena.clone()))
        })
    }

    fn name(&self) -> &str {
        "sim"
    }
}

impl std::fmt::Debug for SimMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimMemory")
            .field("len", &self.arena.region.len())
            .finish()
    }
}

// ---------------------------------------------------------------------------
// The software PF.

/// What the simulated PF does with one request instead of answering it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Takes the message (ATQH moves) and never answers.
    Silent,
    /// Never takes it (ATQH stays).
    Deaf,
    /// Answers with this status.
    Status(i32),
    /// Answers SUCCESS with this payload.
    Payload(Vec<u8>),
    /// Answers with another opcode.
    WrongOpcode(u32),
    /// Sends this event before the reply.
    EventFirst(PfEvent),
    /// Sends RESET_IMPENDING and resets the VF instead of answering.
    ResetInstead,
}

/// How the simulated PF is set up, as an administrator and a PF driver
/// would have it.
#[derive(Clone, Debug)]
pub struct PfSetup {
    /// The version the PF answers VERSION with.
    pub version: (u32, u32),
    /// Capabilities the PF can grant.
    pub caps: u32,
    pub queue_pairs: u16,
    /// REQUEST_QUEUES grants up to this.
    pub max_queue_pairs: u16,
    pub max_vectors: u16,
    pub max_mtu: u16,
    pub rss_key_size: u16,
    pub rss_lut_size: u16,
    /// `ip link set <pf> vf N mac ...`.
    pub admin_mac: Option<[u8; 6]>,
    /// `ip link set <pf> vf N trust on`.
    pub trusted: bool,
    /// A port VLAN: VLAN filter changes are refused.
    pub port_vlan: bool,
    /// The link reported after ENABLE_QUEUES.
    pub link: LinkInfo,
    /// A reset completes at once (VFGEN_RSTAT back to VFACTIVE); false:
    /// only on [`SimPf::complete_reset`].
    pub reset_completes: bool,
}

impl Default for PfSetup {
    fn default() -> Self {
        PfSetup {
            version: (1, 1),
            caps: proto::DRIVER_CAPS,
            queue_pairs: 4,
            max_queue_pairs: 16,
            max_vectors: 5,
            max_mtu: 9000,
            rss_key_size: 52,
            rss_lut_size: 64,
            admin_mac: None,
            trusted: false,
            port_vlan: false,
            link: LinkInfo {
                up: true,
                speed_mbps: 25_000,
            },
            reset_completes: true,
        }
    }
}

/// What the PF knows about the VF.
#[derive(Debug, Default)]
pub struct PfState {
    pub setup: PfSetup,
    regs: HashMap<u32, u32>,
    atq_head: u16,
    arq_head: u16,
    /// The version the VF announced, and the capabilities granted.
    pub vf_version: Option<(u32, u32)>,
    pub granted: u32,
    /// GET_VF_RESOURCES answered since the last reset.
    pub active: bool,
    /// Every message the PF took: opcode and payload.
    pub log: Vec<(u32, Vec<u8>)>,
    /// Rules the VF broke.
    pub violations: Vec<String>,
    pub faults: Vec<(u32, Fault)>,
    pub macs: Vec<([u8; 6], u8)>,
    pub vlans: BTreeSet<u16>,
    pub promisc_flags: u16,
    pub vlan_strip: Option<bool>,
    /// CONFIG_VSI_QUEUES: (queue, tx ring len, rx ring len, rx buffer, max
    /// packet) of each pair.
    pub queues: Vec<(u16, u16, u32, u32, u32)>,
    pub irq_map: Vec<(u16, u16, u16)>,
    pub enabled: (u32, u32),
    pub rss_key: Vec<u8>,
    pub rss_lut: Vec<u8>,
    pub hena: u64,
    pub stats: EthStats,
    pub resets: u32,
    /// A reset announced and due: done at the VF's next look at ARQLEN,
    /// ATQLEN or VFGEN_RSTAT (the PF resets shortly after announcing).
    pub reset_due: bool,
    /// Messages lost because the ARQ had no buffer.
    pub overflows: u32,
}

/// A PF behind the admin queue registers of a VF. See the module docs.
#[derive(Debug)]
pub struct SimPf {
    pub st: RefCell<PfState>,
    mem: SimMemory,
}

const VSI_ID: u16 = 3;
const HENA_CAPS: u64 = 0x0000_7FFF_0000_0000 | 0x3FFF;

impl SimPf {
    /// A PF whose VF takes its admin queue memory from `mem`.
    pub fn new(setup: PfSetup, mem: &SimMemory) -> SimPf {
        let pf = SimPf {
            st: RefCell::new(PfState {
                setup,
                ..PfState::default()
            }),
            mem: mem.clone(),
        };
        pf.st
            .borrow_mut()
            .regs
            .insert(regs::VFGEN_RSTAT, regs::VFR_VFACTIVE);
        pf
    }

    /// Sets a plain register.
    pub fn set_reg(&self, off: u32, val: u32) {
        self.st.borrow_mut().regs.insert(off, val);
    }

    fn reg(st: &PfState, off: u32) -> u32 {
        st.regs.get(&off).copied().unwrap_or(0)
    }

    /// Sends an event to the VF.
    pub fn event(&self, ev: PfEvent) {
        let mut st = self.st.borrow_mut();
        let adv = st.granted & proto::CAP_ADV_LINK_SPEED != 0;
        self.post(&mut st, proto::OP_EVENT, 0, &ev.encode(adv));
    }

    /// Sends any message to the VF (stale replies, garbage).
    pub fn send_raw(&self, opcode: u32, status: i32, payload: &[u8]) {
        let mut st = self.st.borrow_mut();
        self.post(&mut st, opcode, status, payload);
    }

    /// The PF resets the VF: admin queue disabled, VFGEN_RSTAT INPROGRESS,
    /// everything the VF configured forgotten; done at once when the setup
    /// says so.
    pub fn reset_vf(&self) {
        let mut st = self.st.borrow_mut();
        Self::do_reset(&mut st);
    }

    fn do_reset(st: &mut PfState) {
        st.resets += 1;
        st.reset_due = false;
        for r in [
            regs::VF_ATQLEN,
            regs::VF_ARQLEN,
            regs::VF_ATQH,
            regs::VF_ARQH,
        ] {
            st.regs.insert(r, 0);
        }
        st.atq_head = 0;
        st.arq_head = 0;
        st.active = false;
        st.vf_version = None;
        st.granted = 0;
        st.macs.clear();
        st.vlans.clear();
        st.promisc_flags = 0;
        st.vlan_strip = None;
        st.queues.clear();
        st.irq_map.clear();
        st.enabled = (0, 0);
        let done = st.setup.reset_completes;
        st.regs.insert(
            regs::VFGEN_RSTAT,
            if done {
                regs::VFR_VFACTIVE
            } else {
                regs::VFR_INPROGRESS
            },
        );
    }

    /// Ends a reset started with `reset_completes` false.
    pub fn complete_reset(&self) {
        self.st
            .borrow_mut()
            .regs
            .insert(regs::VFGEN_RSTAT, regs::VFR_VFACTIVE);
    }

    /// Writes a message into the next ARQ element, as the firmware does.
    fn post(&self, st: &mut PfState, opcode: u32, status: i32, payload: &[u8]) {
        let len = Self::reg(st, regs::VF_ARQLEN);
        if len & regs::AQLEN_ENABLE == 0 {
            return;
        }
        let n = (len & regs::AQLEN_LEN_MASK) as u16;
        if n == 0 || st.arq_head >= n {
            return;
        }
        let tail = Self::reg(st, regs::VF_ARQT) as u16;
        if st.arq_head == tail {
            st.overflows += 1;
            st.regs.insert(regs::VF_ARQLEN, len | regs::AQLEN_OVFL);
            return;
        }
        let base =
            (Self::reg(st, regs::VF_ARQBAH) as u64) << 32 | Self::reg(st, regs::VF_ARQBAL) as u64;
        let at = base + 32 * st.arq_head as u64;
        let Some(posted) = self.mem.read_desc(at) else {
            st.violations
                .push(format!("ARQ descriptor at {at:#x} outside DMA memory"));
            return;
        };
        if posted.flags & regs::AQ_FLAG_BUF == 0 {
            st.violations
                .push("ARQ descriptor posted without BUF".into());
        }
        let room = posted.datalen as usize;
        let data = &payload[..payload.len().min(room)];
        if !self.mem.write(posted.addr(), data) {
            st.violations.push(format!(
                "ARQ buffer {:#x} outside DMA memory",
                posted.addr()
            ));
            return;
        }
        let wb = AqDesc {
            flags: posted.flags | regs::AQ_FLAG_DD | regs::AQ_FLAG_CMP,
            opcode: regs::AQC_OPC_SEND_MSG_TO_VF,
            datalen: data.len() as u16,
            retval: 0,
            cookie_high: opcode,
            cookie_low: status as u32,
            ..posted
        };
        self.mem.write_desc(at, &wb);
        st.arq_head = (st.arq_head + 1) % n;
        st.regs.insert(regs::VF_ARQH, st.arq_head as u32);
    }

    /// Takes the ATQ descriptors up to the new tail.
    fn run_atq(&self, st: &mut PfState) {
        let len = Self::reg(st, regs::VF_ATQLEN);
        if len & regs::AQLEN_ENABLE == 0 {
            st.violations
                .push("ATQT written with the send queue disabled".into());
            return;
        }
        let n = (len & regs::AQLEN_LEN_MASK) as u16;
        let tail = Self::reg(st, regs::VF_ATQT) as u16;
        if n == 0 || tail >= n {
            st.violations
                .push(format!("ATQT {tail} outside a ring of {n}"));
            return;
        }
        let base =
            (Self::reg(st, regs::VF_ATQBAH) as u64) << 32 | Self::reg(st, regs::VF_ATQBAL) as u64;
        while st.atq_head != tail {
            let at = base + 32 * st.atq_head as u64;
            let Some(d) = self.mem.read_desc(at) else {
                st.violations
                    .push(format!("ATQ descriptor at {at:#x} outside DMA memory"));
                return;
            };
            let op = d.cookie_high;
            if st.faults.iter().any(|(o, f)| *o == op && *f == Fault::Deaf) {
                let i = st
                    .faults
                    .iter()
                    .position(|(o, f)| *o == op && *f == Fault::Deaf);
                if let Some(i) = i {
                    st.faults.remove(i);
                }
                return;
            }
            if d.opcode != regs::AQC_OPC_SEND_MSG_TO_PF {
                st.violations
                    .push(format!("ATQ descriptor with admin opcode {:#x}", d.opcode));
            }
            let payload = if d.datalen > 0 {
                if d.flags & regs::AQ_FLAG_BUF == 0 || d.flags & regs::AQ_FLAG_RD == 0 {
                    st.violations.push("indirect message without BUF|RD".into());
                }
                if d.datalen as usize > regs::AQ_LARGE_BUF && d.flags & regs::AQ_FLAG_LB == 0 {
                    st.violations
                        .push("buffer over 512 bytes without LB".into());
                }
                self.mem.read(d.addr(), d.datalen as usize)
            } else {
                Some(Vec::new())
            };
            let wb = AqDesc {
                flags: d.flags | regs::AQ_FLAG_DD | regs::AQ_FLAG_CMP,
                retval: 0,
                ..d
            };
            self.mem.write_desc(at, &wb);
            st.atq_head = (st.atq_head + 1) % n;
            st.regs.insert(regs::VF_ATQH, st.atq_head as u32);
            match payload {
                Some(p) => {
                    st.log.push((op, p.clone()));
                    self.handle(st, op, &p);
                }
                None => st
                    .violations
                    .push(format!("message buffer {:#x} outside DMA memory", d.addr())),
            }
            if Self::reg(st, regs::VF_ATQLEN) & regs::AQLEN_ENABLE == 0 {
                // The message reset the VF.
                return;
            }
        }
    }

    /// virtchnl_vc_validate_vf_msg: the exact length each message must have
    /// (the list messages with their legacy one-element padding).
    fn valid_len(st: &PfState, op: u32, p: &[u8]) -> bool {
        let n = p.len();
        let u16_at = |o: usize| {
            p.get(o..o + 2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
        };
        match op {
            proto::OP_VERSION => n == proto::VERSION_INFO_LEN,
            proto::OP_RESET_VF
            | proto::OP_GET_RSS_HENA_CAPS
            | proto::OP_ENABLE_VLAN_STRIPPING
            | proto::OP_DISABLE_VLAN_STRIPPING => n == 0,
            proto::OP_GET_VF_RESOURCES => {
                n == if st.vf_version == Some((1, 1)) && st.setup.version.1 >= 1 {
                    4
                } else {
                    0
                }
            }
            proto::OP_CONFIG_VSI_QUEUES => u16_at(2).is_some_and(|q| {
                q > 0 && n == proto::VSI_QUEUE_CONFIG_HDR_LEN + (q + 1) * proto::QUEUE_PAIR_INFO_LEN
            }),
            proto::OP_CONFIG_IRQ_MAP => {
                u16_at(0).is_some_and(|v| v > 0 && n == 2 + (v + 1) * proto::VECTOR_MAP_LEN)
            }
            proto::OP_ENABLE_QUEUES | proto::OP_DISABLE_QUEUES | proto::OP_GET_STATS => {
                n == proto::QUEUE_SELECT_LEN
            }
            proto::OP_ADD_ETH_ADDR | proto::OP_DEL_ETH_ADDR => {
                u16_at(2).is_some_and(|k| k > 0 && n == 4 + (k + 1) * proto::ETHER_ADDR_LEN)
            }
            proto::OP_ADD_VLAN | proto::OP_DEL_VLAN => {
                u16_at(2).is_some_and(|k| k > 0 && n == 4 + 2 * (k + 1))
            }
            proto::OP_CONFIG_PROMISCUOUS_MODE => n == proto::PROMISC_INFO_LEN,
            proto::OP_CONFIG_RSS_KEY | proto::OP_CONFIG_RSS_LUT => {
                u16_at(2).is_some_and(|k| n == 6 + k - 1)
            }
            proto::OP_SET_RSS_HENA => n == proto::RSS_HENA_LEN,
            proto::OP_REQUEST_QUEUES => n == proto::VF_RES_REQUEST_LEN,
            _ => false,
        }
    }

    fn handle(&self, st: &mut PfState, op: u32, p: &[u8]) {
        let fault = st
            .faults
            .iter()
            .position(|(o, _)| *o == op)
            .map(|i| st.faults.remove(i).1);
        match fault {
            Some(Fault::Silent) | Some(Fault::Deaf) => return,
            Some(Fault::Status(s)) => return self.post(st, op, s, &[]),
            Some(Fault::Payload(b)) => return self.post(st, op, 0, &b),
            Some(Fault::WrongOpcode(o)) => return self.post(st, o, 0, &[0; 16]),
            Some(Fault::EventFirst(ev)) => {
                let adv = st.granted & proto::CAP_ADV_LINK_SPEED != 0;
                self.post(st, proto::OP_EVENT, 0, &ev.encode(adv));
            }
            Some(Fault::ResetInstead) => {
                self.post(
                    st,
                    proto::OP_EVENT,
                    0,
                    &PfEvent::ResetImpending.encode(false),
                );
                st.reset_due = true;
                return;
            }
            None => {}
        }
        if !Self::valid_len(st, op, p) {
            st.violations.push(format!(
                "{}: {} bytes is not its length",
                proto::op_name(op),
                p.len()
            ));
            return self.post(st, op, proto::STATUS_ERR_OPCODE_MISMATCH, &[]);
        }
        let needs_active = !matches!(
            op,
            proto::OP_VERSION | proto::OP_RESET_VF | proto::OP_GET_VF_RESOURCES
        );
        if needs_active && !st.active {
            st.violations
                .push(format!("{} before GET_VF_RESOURCES", proto::op_name(op)));
            return self.post(st, op, proto::STATUS_ERR_PARAM, &[]);
        }
        let vsi_ok = |o: usize| p.get(o..o + 2) == Some(&VSI_ID.to_le_bytes()[..]);
        let u16_at = |o: usize| u16::from_le_bytes([p[o], p[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes([p[o], p[o + 1], p[o + 2], p[o + 3]]);
        let u64_at = |o: usize| u64::from_le_bytes(p[o..o + 8].try_into().unwrap_or([0; 8]));
        let ok = |st: &mut PfState| self.post(st, op, 0, &[]);
        let refuse = |st: &mut PfState| self.post(st, op, proto::STATUS_ERR_PARAM, &[]);
        match op {
            proto::OP_VERSION => {
                st.vf_version = Some((u32_at(0), u32_at(4)));
                let (ma, mi) = st.setup.version;
                let mut b = ma.to_le_bytes().to_vec();
                b.extend_from_slice(&mi.to_le_bytes());
                self.post(st, op, 0, &b);
            }
            // The firmware completes the descriptor; the PF resets the VF
            // right after.
            proto::OP_RESET_VF => st.reset_due = true,
            proto::OP_GET_VF_RESOURCES => {
                let asked = if p.len() == 4 {
                    u32_at(0)
                } else {
                    proto::CAP_L2 | proto::CAP_VLAN | proto::CAP_RSS_REG
                };
                st.granted = asked & st.setup.caps;
                st.active = true;
                let s = &st.setup;
                let r = VfResources {
                    caps: st.granted,
                    vsi_id: VSI_ID,
                    num_queue_pairs: s.queue_pairs,
                    max_vectors: s.max_vectors,
                    max_mtu: s.max_mtu,
                    rss_key_size: s.rss_key_size,
                    rss_lut_size: s.rss_lut_size,
                    mac: s.admin_mac,
                };
                let b = r.encode(proto::VSI_SRIOV);
                self.post(st, op, 0, &b);
            }
            _ if !vsi_ok(0)
                && !matches!(
                    op,
                    proto::OP_CONFIG_IRQ_MAP
                        | proto::OP_GET_RSS_HENA_CAPS
                        | proto::OP_SET_RSS_HENA
                        | proto::OP_ENABLE_VLAN_STRIPPING
                        | proto::OP_DISABLE_VLAN_STRIPPING
                        | proto::OP_REQUEST_QUEUES
                ) =>
            {
                st.violations
                    .push(format!("{}: wrong VSI", proto::op_name(op)));
                refuse(st);
            }
            proto::OP_CONFIG_VSI_QUEUES => {
                let k = u16_at(2) as usize;
                if k > st.setup.queue_pairs as usize {
                    st.violations.push("more queue pairs than granted".into());
                    return refuse(st);
                }
                st.queues = (0..k)
                    .map(|i| {
                        let q = 8 + 64 * i;
                        let tx = u16_at(q + 4);
                        let rx = q + 24;
                        (
                            u16_at(q + 2),
                            tx,
                            u32_at(rx + 4),
                            u32_at(rx + 12),
                            u32_at(rx + 16),
                        )
                    })
                    .collect();
                for &(_, tx, rx, buf, max) in &st.queues.clone() {
                    if tx % 8 != 0 || rx % 32 != 0 || buf % 128 != 0 || !(64..16384).contains(&max)
                    {
                        st.violations.push(format!(
                            "queue config tx {tx} rx {rx} buf {buf} max {max} out of range"
                        ));
                    }
                }
                ok(st);
            }
            proto::OP_CONFIG_IRQ_MAP => {
                let v = u16_at(0) as usize;
                st.irq_map = (0..v)
                    .map(|i| {
                        let o = 2 + 12 * i;
                        (u16_at(o + 2), u16_at(o + 4), u16_at(o + 6))
                    })
                    .collect();
                ok(st);
            }
            proto::OP_ENABLE_QUEUES => {
                st.enabled = (u32_at(4), u32_at(8));
                ok(st);
                // i40e_vc_process_vf_msg: the link state follows.
                let l = st.setup.link;
                let adv = st.granted & proto::CAP_ADV_LINK_SPEED != 0;
                self.post(st, proto::OP_EVENT, 0, &PfEvent::LinkChange(l).encode(adv));
            }
            proto::OP_DISABLE_QUEUES => {
                st.enabled = (st.enabled.0 & !u32_at(4), st.enabled.1 & !u32_at(8));
                ok(st);
            }
            proto::OP_ADD_ETH_ADDR | proto::OP_DEL_ETH_ADDR => {
                let k = u16_at(2) as usize;
                let list: Vec<([u8; 6], u8)> = (0..k)
                    .map(|i| {
                        let o = 4 + 8 * i;
                        let mut a = [0u8; 6];
                        a.copy_from_slice(&p[o..o + 6]);
                        (a, p[o + 6])
                    })
                    .collect();
                if op == proto::OP_ADD_ETH_ADDR {
                    let admin = st.setup.admin_mac;
                    if list.iter().any(|(a, t)| {
                        *t == AddrType::Primary as u8
                            && admin.is_some_and(|m| m != *a)
                            && !st.setup.trusted
                    }) {
                        return refuse(st);
                    }
                    for e in list {
                        if !st.macs.contains(&e) {
                            st.macs.push(e);
                        }
                    }
                } else {
                    st.macs.retain(|e| !list.contains(e));
                }
                ok(st);
            }
            proto::OP_ADD_VLAN | proto::OP_DEL_VLAN => {
                if st.setup.port_vlan {
                    return refuse(st);
                }
                for i in 0..u16_at(2) as usize {
                    let v = u16_at(4 + 2 * i);
                    if op == proto::OP_ADD_VLAN {
                        st.vlans.insert(v);
                    } else {
                        st.vlans.remove(&v);
                    }
                }
                ok(st);
            }
            proto::OP_CONFIG_PROMISCUOUS_MODE => {
                // i40e: an untrusted VF is told SUCCESS and ignored.
                if st.setup.trusted {
                    st.promisc_flags = u16_at(2);
                }
                ok(st);
            }
            proto::OP_GET_STATS => {
                let b = st.stats.encode();
                self.post(st, op, 0, &b);
            }
            proto::OP_CONFIG_RSS_KEY | proto::OP_CONFIG_RSS_LUT => {
                let k = u16_at(2) as usize;
                let want = if op == proto::OP_CONFIG_RSS_KEY {
                    st.setup.rss_key_size
                } else {
                    st.setup.rss_lut_size
                };
                if k != want as usize {
                    st.violations.push(format!(
                        "{}: {k} entries, {want} expected",
                        proto::op_name(op)
                    ));
                    return refuse(st);
                }
                let v = p[4..4 + k].to_vec();
                if op == proto::OP_CONFIG_RSS_KEY {
                    st.rss_key = v;
                } else {
                    st.rss_lut = v;
                }
                ok(st);
            }
            proto::OP_GET_RSS_HENA_CAPS => self.post(st, op, 0, &HENA_CAPS.to_le_bytes()),
            proto::OP_SET_RSS_HENA => {
                st.hena = u64_at(0);
                ok(st);
            }
            proto::OP_ENABLE_VLAN_STRIPPING | proto::OP_DISABLE_VLAN_STRIPPING => {
                st.vlan_strip = Some(op == proto::OP_ENABLE_VLAN_STRIPPING);
                ok(st);
            }
            proto::OP_REQUEST_QUEUES => {
                let n = u16_at(0);
                if n > st.setup.max_queue_pairs {
                    let m = st.setup.max_queue_pairs;
                    self.post(st, op, 0, &m.to_le_bytes());
                } else {
                    st.setup.queue_pairs = n;
                    self.post(
                        st,
                        proto::OP_EVENT,
                        0,
                        &PfEvent::ResetImpending.encode(false),
                    );
                    st.reset_due = true;
                }
            }
            _ => refuse(st),
        }
    }
}

impl Regs for SimPf {
    fn read32(&self, off: u32) -> u32 {
        let mut st = self.st.borrow_mut();
        if st.reset_due && matches!(off, regs::VF_ARQLEN | regs::VF_ATQLEN | regs::VFGEN_RSTAT) {
            st.reset_due = false;
            Self::do_reset(&mut st);
        }
        Self::reg(&st, off)
    }

    fn write32(&self, off: u32, val: u32) {
        let mut st = self.st.borrow_mut();
        match off {
            regs::VF_ATQH | regs::VF_ARQH => {
                if val != 0 {
                    st.violations.push("the VF wrote a head register".into());
                }
                st.regs.insert(off, val);
                if off == regs::VF_ATQH {
                    st.atq_head = 0;
                } else {
                    st.arq_head = 0;
                }
            }
            regs::VF_ATQT => {
                st.regs.insert(off, val);
                if Self::reg(&st, regs::VF_ATQLEN) & regs::AQLEN_ENABLE != 0 {
                    self.run_atq(&mut st);
                }
            }
            regs::VF_ARQT => {
                let n = Self::reg(&st, regs::VF_ARQLEN) & regs::AQLEN_LEN_MASK;
                if n != 0 && val >= n {
                    st.violations
                        .push(format!("ARQT {val} outside a ring of {n}"));
                }
                st.regs.insert(off, val);
            }
            regs::VFGEN_RSTAT => {
                st.regs.insert(off, val & regs::RSTAT_STATE_MASK);
            }
            o => {
                st.regs.insert(o, val);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The device side of the data rings.

/// The device side of one receive ring.
#[derive(Debug, Default)]
pub struct SimRx {
    /// The device's head.
    pub head: u16,
}

impl SimRx {
    /// Delivers one frame as the device would: false when the ring has no
    /// descriptor the driver gave it (head == QRX_TAIL). `status` is OR-ed
    /// into qword 1 (DD and EOF are added).
    ///
    /// # Safety
    /// Every descriptor between the device's head and the tail must hold,
    /// as its buffer address, a pointer to memory the caller owns that is
    /// writable for `frame.len()` bytes and that nothing reads or writes
    /// during the call: a ring armed by [`crate::rx::RxRing`] over a pool of
    /// [`pollux_core::AnonMemory`] (IOVA = address) is.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn deliver(
        &mut self,
        bar: &Bar,
        queue: u16,
        ring: &DescRing<RxDesc>,
        frame: &[u8],
        status: u64,
        ptype: u8,
        l2tag1: u16,
        rss: u32,
    ) -> bool {
        let tail = bar.read32(regs::qrx_tail(queue)) as u16;
        if self.head == tail {
            return false;
        }
        let d = ring.read(self.head);
        let addr = d.qw0 as usize as *mut u8;
        // SAFETY: the caller guarantees the descriptor's address is a
        // writable buffer of at least frame.len() bytes (IOVA = VA).
        unsafe { std::ptr::copy_nonoverlapping(frame.as_ptr(), addr, frame.len()) };
        let wb = RxDesc::writeback(
            status | regs::RXD_STATUS_DD | regs::RXD_STATUS_EOF,
            frame.len() as u16,
            ptype,
            l2tag1,
            rss,
        );
        // Like the hardware: everything but DD first, then qword 1 with DD.
        ring.write(
            self.head,
            RxDesc {
                qw1: wb.qw1 & !regs::RXD_STATUS_DD,
                ..wb
            },
        );
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
        ring.write_qword(self.head, 1, wb.qw1);
        self.head = if self.head + 1 == ring.len() {
            0
        } else {
            self.head + 1
        };
        true
    }

    /// Writes an arbitrary write-back at the head (a confused device), with
    /// DD set, and advances.
    pub fn deliver_raw(&mut self, ring: &DescRing<RxDesc>, qw0: u64, qw1: u64) {
        ring.write(
            self.head,
            RxDesc {
                qw0,
                qw1: qw1 | regs::RXD_STATUS_DD,
                qw2: 0,
                qw3: 0,
            },
        );
        self.head = if self.head + 1 == ring.len() {
            0
        } else {
            self.head + 1
        };
    }
}

/// One frame the simulated device sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentFrame {
    pub bytes: Vec<u8>,
    pub desc: TxDesc,
}

/// The device side of one transmit ring.
#[derive(Debug, Default)]
pub struct SimTx {
    pub head: u16,
}

impl SimTx {
    /// Processes every descriptor up to QTX_TAIL, like a tail write makes
    /// the device do; returns how many frames it sent, and writes DTYPE
    /// DESC_DONE back where RS is set. With `copy` false the frames' bytes
    /// are not copied (benches).
    ///
    /// # Safety
    /// Every data descriptor between the device's head and the tail must
    /// point at memory readable for its size that nothing writes during
    /// the call: descriptors written by [`crate::tx::TxRing`] for mbufs of
    /// a pool of [`pollux_core::AnonMemory`] (IOVA = address) are.
    pub unsafe fn process(
        &mut self,
        bar: &Bar,
        queue: u16,
        ring: &DescRing<TxDesc>,
        copy: bool,
        out: &mut Vec<SentFrame>,
    ) -> usize {
        let tail = bar.read32(regs::qtx_tail(queue)) as u16;
        let mut n = 0;
        while self.head != tail && tail < ring.len() {
            let i = self.head;
            let d = ring.read(i);
            let mut bytes = Vec::new();
            if copy {
                let len = d.buf_size();
                bytes.resize(len, 0);
                // SAFETY: the caller guarantees the descriptor points at
                // `len` readable bytes (IOVA = VA).
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        d.buffer_addr as usize as *const u8,
                        bytes.as_mut_ptr(),
                        len,
                    )
                };
            }
            out.push(SentFrame { bytes, desc: d });
            n += 1;
            if d.cmd() & regs::TXD_CMD_RS != 0 {
                ring.write_qword(
                    i,
                    1,
                    (d.cmd_type_offset_bsz & !regs::TXD_DTYPE_MASK) | regs::TXD_DTYPE_DESC_DONE,
                );
            }
            self.head = if i + 1 == ring.len() { 0 } else { i + 1 };
        }
        n
    }
}
