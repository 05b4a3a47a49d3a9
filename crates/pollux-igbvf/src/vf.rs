//! [`IgbVf`]: one 82576 / I350 virtual function as a [`Port`].
//!
//! Life of a VF:
//! 1. [`IgbVf::open`]: identify the function, open it through VFIO (in the
//!    process's shared container unless told otherwise), map BAR 0, reset
//!    the VF and do the reset handshake with the PF over the mailbox, which
//!    yields the MAC address the PF assigned, if any; set the MAC.
//! 2. [`Port::configure`]: descriptor rings in DMA memory of the container.
//! 3. [`Port::start`]: max frame size, multicast, VLAN and multicast
//!    promiscuous requests to the PF, then the rings, armed with buffers.
//! 4. Bursts. Every few dozen bursts the driver looks at the mailbox: a PF
//!    reset (RSTI/RSTD) or a PF message without clear-to-send means the PF
//!    forgot this VF, and the driver re-initialises the VF by itself (reset
//!    handshake, filters, rings) once the PF is back, so traffic resumes
//!    without the application doing anything.
//! 5. [`Port::stop`] / drop: queues disabled, the VF reset (which stops its
//!    DMA), bus mastering off, buffers back to their pools, rings unmapped.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use pollux_core::{
    Burst, Capabilities, Duplex, HugePages, LinkStatus, MacAddr, Mbuf, Port, PortConf, PortError,
    PortInfo, PortStats, QueueStats, RxOffloads, TxOffloads, Xstat,
};
use pollux_vfio::pci::{PciAddr, Sysfs};
use pollux_vfio::{Bar, Container, Device, DmaMemory, OpenOpts};

use crate::desc::DescRing;
use crate::error::IgbVfError;
use crate::mbx::{self, Mailbox};
use crate::regs;
use crate::rx::RxQueue;
use crate::stats::HwStats;
use crate::tx::TxQueue;

/// Which VF this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// 82576 VF (8086:10ca), the one QEMU's igb emulates.
    I82576,
    /// I350 VF (8086:1520).
    I350,
}

impl Model {
    /// The model of a PCI ID, if this driver handles it.
    pub fn from_ids(vendor: u16, device: u16) -> Option<Model> {
        match (vendor, device) {
            (regs::VENDOR_INTEL, regs::DEV_ID_82576_VF | regs::DEV_ID_82576_VF_HV) => {
                Some(Model::I82576)
            }
            (regs::VENDOR_INTEL, regs::DEV_ID_I350_VF | regs::DEV_ID_I350_VF_HV) => {
                Some(Model::I350)
            }
            _ => None,
        }
    }
}

/// How to open a VF.
#[derive(Clone, Debug)]
pub struct IgbVfOpts {
    /// sysfs root, `/dev/vfio`, noiommu opt-in.
    pub vfio: OpenOpts,
    /// Container to open the VF in; `None`: [`Container::process_default`],
    /// so every VF of the process shares one IOMMU domain and one mempool
    /// can serve them all.
    pub container: Option<Container>,
    /// How long one mailbox step may take.
    pub mbx_timeout: Duration,
    /// How long the PF may keep its reset-in-progress bit set at open.
    pub reset_timeout: Duration,
    /// MAC address to set when the PF assigned none. `None`: a locally
    /// administered address derived from the PCI address
    /// ([`default_mac`]).
    pub mac: Option<MacAddr>,
    /// Page size for descriptor rings (small: 4 KiB pages waste less).
    pub ring_pages: HugePages,
}

impl Default for IgbVfOpts {
    fn default() -> Self {
        IgbVfOpts {
            vfio: OpenOpts::default(),
            container: None,
            mbx_timeout: Duration::from_secs(2),
            reset_timeout: Duration::from_secs(2),
            mac: None,
            ring_pages: HugePages::Never,
        }
    }
}

/// The MAC used when neither the PF nor the caller gives one: locally
/// administered, unicast, `02:50:` + domain low byte, bus, device, function.
pub fn default_mac(addr: PciAddr) -> MacAddr {
    MacAddr([
        0x02,
        0x50,
        addr.domain() as u8,
        addr.bus(),
        addr.device(),
        addr.function(),
    ])
}

/// How often the driver looks at the mailbox while polled.
const CHECK_EVERY: Duration = Duration::from_millis(50);
/// How often the polled driver folds the 32-bit hardware counters into its
/// totals: well inside the fastest wrap (VFGORC at 1 Gbit/s wraps after
/// 34 s), and rare enough that the seven MMIO reads cost the polling loop
/// nothing measurable (each is an uncached PCIe read on hardware and a trip
/// through the device model under QEMU).
const STATS_EVERY: Duration = Duration::from_secs(1);
/// How long to wait before retrying a failed re-initialisation.
const RETRY_AFTER: Duration = Duration::from_millis(250);
/// How long a queue may take to report itself enabled or disabled.
const QUEUE_TIMEOUT: Duration = Duration::from_millis(100);
/// Ethernet header + FCS + one VLAN tag, added to the MTU for RLPML.
const FRAME_OVERHEAD: u32 = 14 + 4 + 4;

struct Queues {
    rx: Vec<RxQueue>,
    tx: Vec<TxQueue>,
}

/// An 82576 or I350 virtual function. See the [module docs](self).
pub struct IgbVf {
    addr: PciAddr,
    model: Model,
    bar: Bar,
    dev: Device,
    mbx: Mailbox,
    opts: IgbVfOpts,
    mac: MacAddr,
    /// The MAC the PF assigned in its last reset reply.
    pf_mac: Option<MacAddr>,
    /// The application chose `mac` (over the PF's).
    user_mac: bool,
    mc: Vec<MacAddr>,
    vlans: BTreeSet<u16>,
    allmulti: bool,
    max_frame: u32,
    queues: Option<Queues>,
    started: bool,
    /// The PF reset or lost our clear-to-send: re-initialise when it is back.
    pf_lost: bool,
    next_check: Instant,
    next_stats: Instant,
    polls: u32,
    recoveries: u64,
    hw: Cell<HwStats>,
    base: PortStats,
}

impl IgbVf {
    /// Opens the VF at `addr`: VFIO, BAR 0, reset handshake with the PF, MAC.
    pub fn open(addr: PciAddr, opts: IgbVfOpts) -> Result<IgbVf, IgbVfError> {
        let model = identify(addr, &opts.vfio)?;
        let container = match &opts.container {
            Some(c) => c.clone(),
            None => Container::process_default()?,
        };
        let dev = Device::open(&container, addr, &opts.vfio)?;
        dev.set_bus_master(true)?;
        let bar = dev.map_bar(0)?;
        if bar.len() < regs::BAR0_MIN_LEN {
            return Err(IgbVfError::Config(format!(
                "{addr}: BAR 0 is {} bytes, an igb VF has {}",
                bar.len(),
                regs::BAR0_MIN_LEN
            )));
        }
        let mut vf = IgbVf {
            addr,
            model,
            bar,
            dev,
            mbx: Mailbox::new(addr, opts.mbx_timeout),
            mac: opts.mac.unwrap_or_else(|| default_mac(addr)),
            pf_mac: None,
            user_mac: false,
            mc: Vec::new(),
            vlans: BTreeSet::new(),
            allmulti: false,
            max_frame: 1500 + FRAME_OVERHEAD,
            queues: None,
            started: false,
            pf_lost: false,
            next_check: Instant::now(),
            next_stats: Instant::now(),
            polls: 0,
            recoveries: 0,
            hw: Cell::new(HwStats::default()),
            base: PortStats::default(),
            opts,
        };
        // Polled driver: no interrupts, ever.
        vf.bar.write32(regs::EIMC, regs::EIMC_ALL);
        vf.reset_handshake(vf.opts.reset_timeout)?;
        vf.restore_filters()?;
        let mut hw = vf.hw.get();
        hw.sample(&vf.bar);
        vf.hw.set(hw);
        tracing::info!(vf = %addr, mac = %vf.mac, pf_assigned = vf.pf_mac.is_some(), "igbvf up");
        Ok(vf)
    }

    /// The PCI address.
    pub fn addr(&self) -> PciAddr {
        self.addr
    }

    /// 82576 or I350.
    pub fn model(&self) -> Model {
        self.model
    }

    /// The container the VF is open in; mempools for it must come from
    /// [`IgbVf::dma_memory`] (or another VF of the same container).
    pub fn container(&self) -> &Container {
        self.dev.container()
    }

    /// A memory provider the VF can DMA to: give it to `Mempool::new` for
    /// the pool in [`PortConf::rx_pool`] and for packets to send.
    pub fn dma_memory(&self, huge: HugePages) -> DmaMemory {
        self.container().dma_memory(huge)
    }

    /// The MAC address the PF assigned (`ip link set <pf> vf N mac ...`),
    /// if any.
    pub fn pf_assigned_mac(&self) -> Option<MacAddr> {
        self.pf_mac
    }

    /// How often the driver re-initialised the VF after a PF reset.
    pub fn recoveries(&self) -> u64 {
        self.recoveries
    }

    /// Adds or removes a VLAN from the VF's filter (SET_VLAN).
    pub fn vlan_filter(&mut self, vid: u16, on: bool) -> Result<(), IgbVfError> {
        let vid = vid & 0x0FFF;
        let mut msg = [regs::MSG_SET_VLAN, vid as u32];
        if on {
            msg[0] |= regs::SET_VLAN_ADD;
        }
        self.request(
            "SET_VLAN",
            &msg,
            "; the PF refuses VLAN changes when it set a port VLAN with `ip link set <pf> vf N vlan`",
        )?;
        if on {
            self.vlans.insert(vid);
        } else {
            self.vlans.remove(&vid);
        }
        Ok(())
    }

    // ---- mailbox conversations ----

    /// Sends one request and checks the reply; PF messages arriving
    /// meanwhile are looked at for a lost clear-to-send.
    fn request(
        &mut self,
        what: &'static str,
        msg: &[u32],
        hint: &'static str,
    ) -> Result<u32, IgbVfError> {
        let mut reply = [0u32; 3];
        let mut pings = Vec::new();
        let r = self.mbx.request(&self.bar, msg, &mut reply, &mut pings);
        for p in pings {
            self.note_pf_message(p);
        }
        let r = r?;
        if r & regs::MSGTYPE_ACK != 0 {
            return Ok(r);
        }
        if r & regs::MSGTYPE_CTS == 0 {
            // Linux igb NACKs without CTS every request of a VF it does not
            // consider reset: it forgot us.
            self.pf_lost = true;
        }
        Err(IgbVfError::Refused {
            addr: self.addr,
            request: what,
            reply: r,
            hint,
        })
    }

    /// Looks at an unsolicited PF message.
    fn note_pf_message(&mut self, w: u32) {
        if w & 0xFFFF == regs::MSG_PF_CONTROL && w & regs::MSGTYPE_CTS == 0 {
            tracing::warn!(vf = %self.addr, msg = format_args!("{w:#010x}"), "PF reset notice");
            self.pf_lost = true;
        } else {
            tracing::debug!(vf = %self.addr, msg = format_args!("{w:#010x}"), "PF message");
        }
    }

    /// VF reset and the VF_RESET handshake (DPDK e1000_reset_hw_vf, Linux
    /// igbvf e1000_reset_hw_vf).
    ///
    /// After VTCTRL.RST, Linux and DPDK poll V2PMAILBOX until neither RSTI
    /// (PF reset in progress) nor RSTD (PF reset done, read-to-clear) shows,
    /// then send VF_RESET. We do the same with a deadline: RSTI that stays
    /// set means the PF driver is not up, a typed error. RSTD is not waited
    /// for: a VF reset does not raise it (it reports a PF reset), and QEMU's
    /// model raises it only when the PF writes CTRL_EXT.PFRSTD. The PF's
    /// ACK or NACK to VF_RESET is what says the VF may proceed, on hardware
    /// and in the model alike.
    fn reset_handshake(&mut self, rsti_timeout: Duration) -> Result<(), IgbVfError> {
        // Stale bits (an RSTD from the PF's open long ago, an old PFSTS) say
        // nothing about the reset about to happen.
        self.mbx.read_ctl(&self.bar);
        self.mbx.forget();
        self.bar.write32(regs::CTRL, regs::CTRL_RST);
        let deadline = Instant::now() + rsti_timeout;
        while self.mbx.read_ctl(&self.bar) & regs::MBX_RSTI != 0 {
            if Instant::now() >= deadline {
                return Err(IgbVfError::PfNotReady {
                    addr: self.addr,
                    ms: rsti_timeout.as_millis() as u64,
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.mbx.forget();
        let mut reply = [0u32; 3];
        let mut pings = Vec::new();
        let r = self
            .mbx
            .request(&self.bar, &[regs::MSG_VF_RESET], &mut reply, &mut pings)?;
        // Pings before the reset reply are about the state we are leaving.
        drop(pings);
        self.pf_mac = match r & !regs::MSGTYPE_CTS {
            x if x == regs::MSG_VF_RESET | regs::MSGTYPE_ACK => {
                let m = MacAddr(mbx::words_mac(reply[1], reply[2]));
                m.is_valid_unicast().then_some(m)
            }
            // The PF has no MAC for this VF (Linux igb forgets it at every
            // VF reset unless the administrator set one).
            x if x == regs::MSG_VF_RESET | regs::MSGTYPE_NACK => None,
            _ => {
                return Err(IgbVfError::Protocol {
                    addr: self.addr,
                    request: "VF_RESET",
                    reply: r,
                })
            }
        };
        self.pf_lost = false;
        Ok(())
    }

    /// Everything the PF forgets at a VF reset: MAC, max frame, multicast
    /// list, VLANs, multicast promiscuous.
    fn restore_filters(&mut self) -> Result<(), IgbVfError> {
        match self.pf_mac {
            // The administrator's MAC wins unless the application asked for
            // another one (which the PF accepts only for a trusted VF).
            Some(pf) if !self.user_mac || self.mac == pf => self.mac = pf,
            _ => self.send_mac(self.mac)?,
        }
        self.request(
            "SET_LPE",
            &[regs::MSG_SET_LPE, self.max_frame],
            "; the PF accepts at most 9728 bytes",
        )?;
        if !self.mc.is_empty() {
            self.send_multicast()?;
        }
        for vid in self.vlans.clone() {
            self.request(
                "SET_VLAN",
                &[regs::MSG_SET_VLAN | regs::SET_VLAN_ADD, vid as u32],
                "",
            )?;
        }
        if self.allmulti {
            self.send_promisc()?;
        }
        Ok(())
    }

    fn send_mac(&mut self, mac: MacAddr) -> Result<(), IgbVfError> {
        let w = mbx::mac_words(mac.0);
        self.request(
            "SET_MAC_ADDR",
            &[regs::MSG_SET_MAC_ADDR, w[0], w[1]],
            "; the administrator set this VF's MAC: change it with `ip link set <pf> vf N mac ...` \
             or allow the VF to with `ip link set <pf> vf N trust on`",
        )?;
        Ok(())
    }

    fn send_multicast(&mut self) -> Result<(), IgbVfError> {
        let addrs: Vec<[u8; 6]> = self.mc.iter().map(|m| m.0).collect();
        let msg = mbx::set_multicast_msg(&addrs);
        self.request("SET_MULTICAST", &msg, "")?;
        Ok(())
    }

    fn send_promisc(&mut self) -> Result<(), IgbVfError> {
        let mut msg = regs::MSG_SET_PROMISC;
        if self.allmulti {
            msg |= regs::SET_PROMISC_MULTICAST;
        }
        self.request("SET_PROMISC", &[msg], "")?;
        Ok(())
    }

    // ---- queues ----

    fn wait_dctl(
        &self,
        reg: u32,
        enabled: bool,
        dir: &'static str,
        q: u16,
    ) -> Result<(), IgbVfError> {
        let deadline = Instant::now() + QUEUE_TIMEOUT;
        loop {
            let v = self.bar.read32(reg);
            if (v & regs::DCTL_ENABLE != 0) == enabled && v != u32::MAX {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(IgbVfError::QueueTimeout {
                    addr: self.addr,
                    dir,
                    queue: q,
                    action: if enabled { "enable" } else { "disable" },
                    ms: QUEUE_TIMEOUT.as_millis() as u64,
                });
            }
            std::hint::spin_loop();
        }
    }

    /// Disables every queue and waits for the device to agree.
    fn disable_queues(&self) -> Result<(), IgbVfError> {
        let Some(q) = &self.queues else { return Ok(()) };
        for i in 0..q.rx.len() as u16 {
            self.bar.write32(regs::rxdctl(i), 0);
        }
        for i in 0..q.tx.len() as u16 {
            self.bar.write32(regs::txdctl(i), 0);
        }
        let mut res = Ok(());
        for i in 0..q.rx.len() as u16 {
            res = res.and(self.wait_dctl(regs::rxdctl(i), false, "rx", i));
        }
        for i in 0..q.tx.len() as u16 {
            res = res.and(self.wait_dctl(regs::txdctl(i), false, "tx", i));
        }
        res
    }

    /// Programs and enables every queue (after a reset of the VF: the model
    /// and the hardware keep or lose ring registers differently, so all are
    /// rewritten).
    fn program_queues(&mut self) -> Result<(), IgbVfError> {
        self.disable_queues()?;
        let addr = self.addr;
        let Some(q) = self.queues.as_mut() else {
            return Err(IgbVfError::Config("not configured".into()));
        };
        for (i, rx) in q.rx.iter_mut().enumerate() {
            let i = i as u16;
            let missing = rx.arm();
            if missing > 0 {
                return Err(IgbVfError::PoolEmpty {
                    addr,
                    queue: i,
                    need: missing,
                });
            }
            let ring = rx.ring();
            self.bar.write32(regs::rdbal(i), ring.iova().0 as u32);
            self.bar
                .write32(regs::rdbah(i), (ring.iova().0 >> 32) as u32);
            self.bar.write32(regs::rdlen(i), ring.bytes());
            let kib = (rx.buf_size() >> regs::SRRCTL_BSIZEPKT_SHIFT) & regs::SRRCTL_BSIZEPKT_MASK;
            self.bar.write32(
                regs::srrctl(i),
                kib | regs::SRRCTL_DESCTYPE_ADV_ONEBUF | regs::SRRCTL_DROP_EN,
            );
            self.bar.write32(regs::rdh(i), 0);
            self.bar.write32(regs::rdt(i), 0);
        }
        for (i, tx) in q.tx.iter_mut().enumerate() {
            let i = i as u16;
            tx.reset();
            let ring = tx.ring();
            self.bar.write32(regs::tdbal(i), ring.iova().0 as u32);
            self.bar
                .write32(regs::tdbah(i), (ring.iova().0 >> 32) as u32);
            self.bar.write32(regs::tdlen(i), ring.bytes());
            self.bar.write32(regs::tdh(i), 0);
            self.bar.write32(regs::tdt(i), 0);
        }
        let (nrx, ntx) = (q.rx.len() as u16, q.tx.len() as u16);
        let tails: Vec<u32> = q.rx.iter().map(|r| r.initial_tail()).collect();
        // Thresholds as Linux igbvf and DPDK use them for this VF: prefetch
        // 16/8, host 8/1, write back 1 (the 82576 needs WTHRESH 1 for the
        // DD-based completion used here).
        for i in 0..nrx {
            self.bar.write32(
                regs::rxdctl(i),
                regs::DCTL_ENABLE | regs::dctl_thresholds(16, 8, 1),
            );
            self.wait_dctl(regs::rxdctl(i), true, "rx", i)?;
        }
        for i in 0..ntx {
            self.bar.write32(
                regs::txdctl(i),
                regs::DCTL_ENABLE | regs::dctl_thresholds(8, 1, 1),
            );
            self.wait_dctl(regs::txdctl(i), true, "tx", i)?;
        }
        // Descriptors were written above; the device may fetch them once
        // the tail moves.
        crate::desc::wmb_before_doorbell();
        for (i, t) in tails.into_iter().enumerate() {
            self.bar.write32(regs::rdt(i as u16), t);
        }
        Ok(())
    }

    /// The PF came back from a reset: redo everything it forgot.
    fn recover(&mut self) -> Result<(), IgbVfError> {
        // A short wait: this runs from the data path, and the next
        // housekeeping round retries.
        self.reset_handshake(Duration::from_millis(10))?;
        self.restore_filters()?;
        self.program_queues()?;
        Ok(())
    }

    /// Mailbox watch and recovery at most every [`CHECK_EVERY`], statistics
    /// sampling every [`STATS_EVERY`]; cheap when there is nothing to do.
    fn housekeeping(&mut self, now: Instant) {
        if now < self.next_check {
            return;
        }
        self.next_check = now + CHECK_EVERY;
        let ctl = self.mbx.read_ctl(&self.bar);
        if ctl & regs::MBX_RSTI != 0 || self.mbx.take(&self.bar, regs::MBX_RSTD) {
            if !self.pf_lost {
                tracing::warn!(vf = %self.addr, "PF reset detected");
            }
            self.pf_lost = true;
        }
        loop {
            match self.mbx.poll_message(&self.bar) {
                Ok(Some(w)) => self.note_pf_message(w),
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(vf = %self.addr, error = %e, "mailbox busy");
                    break;
                }
            }
        }
        if now >= self.next_stats {
            self.next_stats = now + STATS_EVERY;
            let mut hw = self.hw.get();
            hw.sample(&self.bar);
            self.hw.set(hw);
        }
        if self.pf_lost && self.started && ctl & regs::MBX_RSTI == 0 {
            match self.recover() {
                Ok(()) => {
                    self.recoveries += 1;
                    tracing::info!(vf = %self.addr, mac = %self.mac, "re-initialised after PF reset");
                }
                Err(e) => {
                    self.pf_lost = true;
                    self.next_check = now + RETRY_AFTER;
                    tracing::debug!(vf = %self.addr, error = %e, "re-initialisation failed; will retry");
                }
            }
        }
    }

    #[inline(always)]
    fn tick(&mut self) {
        self.polls = self.polls.wrapping_add(1);
        if self.polls % 64 == 0 {
            self.housekeeping(Instant::now());
        }
    }

    fn sw_stats(&self) -> PortStats {
        let mut s = PortStats::default();
        if let Some(q) = &self.queues {
            for r in &q.rx {
                s.ipackets += r.stats.packets;
                s.ibytes += r.stats.bytes;
                s.ierrors += r.stats.errors;
                s.rx_nombuf += r.stats.nombuf;
            }
            for t in &q.tx {
                s.opackets += t.stats.packets;
                s.obytes += t.stats.bytes;
                s.oerrors += t.stats.errors;
            }
        }
        s
    }
}

/// Reads the PCI ID from sysfs and checks that this driver handles it.
pub fn identify(addr: PciAddr, opts: &OpenOpts) -> Result<Model, IgbVfError> {
    let sysfs = Sysfs::new(&opts.sysfs_root);
    if !sysfs.exists(addr) {
        return Err(IgbVfError::Vfio(
            pollux_vfio::pci::Error::NoSuchFunction {
                addr,
                root: opts.sysfs_root.clone(),
            }
            .into(),
        ));
    }
    let vendor = sysfs.vendor(addr).map_err(pollux_vfio::VfioError::from)?;
    let device = sysfs.device(addr).map_err(pollux_vfio::VfioError::from)?;
    Model::from_ids(vendor, device).ok_or(IgbVfError::UnknownDevice {
        addr,
        vendor,
        device,
    })
}

impl Port for IgbVf {
    fn info(&self) -> PortInfo {
        PortInfo {
            driver: "net_igbvf".into(),
            name: self.addr.to_string(),
            capabilities: Capabilities {
                // Queue 1 receives only when the PF enables RSS for the
                // pool; QEMU's model never delivers to it (LAB.md).
                max_rx_queues: 2,
                max_tx_queues: 2,
                min_desc: 32,
                max_desc: 4096,
                desc_align: 8,
                // No scatter: a frame must fit one buffer of the rx pool
                // (2048 bytes with the default data room).
                max_frame: 2048,
                rx_offloads: RxOffloads::VLAN_STRIP
                    | RxOffloads::IPV4_CKSUM
                    | RxOffloads::UDP_CKSUM
                    | RxOffloads::TCP_CKSUM
                    | RxOffloads::VLAN_FILTER,
                tx_offloads: TxOffloads::VLAN_INSERT
                    | TxOffloads::IPV4_CKSUM
                    | TxOffloads::UDP_CKSUM
                    | TxOffloads::TCP_CKSUM,
                max_mc_addrs: regs::MAX_MC_HASHES as u16,
                promiscuous: false,
                allmulticast: true,
            },
        }
    }

    fn configure(&mut self, conf: &PortConf) -> Result<(), PortError> {
        if self.started {
            return Err(PortError::Started);
        }
        conf.validate(&self.info().capabilities)?;
        let (pool_iova, pool_len) = conf.rx_pool.iova_range();
        if !self.container().maps(pool_iova, pool_len as u64) {
            return Err(PortError::InvalidConfig(format!(
                "rx pool {:?} is not DMA memory of this VF's VFIO container, so the VF cannot \
                 write into it; build the pool with IgbVf::dma_memory (or Container::dma_memory \
                 of the same container)",
                conf.rx_pool.name()
            )));
        }
        let data =
            (conf.rx_pool.data_room() as u32).saturating_sub(pollux_core::mbuf::HEADROOM as u32);
        if data < 1024 {
            return Err(PortError::InvalidConfig(format!(
                "rx pool buffers hold {data} bytes after the headroom; the VF needs at least 1024"
            )));
        }
        let max_frame = conf
            .mtu
            .map(|m| m as u32 + FRAME_OVERHEAD)
            .unwrap_or(1500 + FRAME_OVERHEAD);
        // The device writes whole KiB units of the buffer.
        let usable = data & !0x3FF;
        if max_frame > usable {
            return Err(PortError::InvalidConfig(format!(
                "MTU {} needs {max_frame}-byte frames but rx buffers hold {usable} (no scatter)",
                conf.mtu.unwrap_or(1500)
            )));
        }
        self.queues = None;
        let mem = self.dma_memory(self.opts.ring_pages);
        let ring_mem = |n: u16| -> Result<pollux_core::DmaRegion, PortError> {
            mem.allocate_region((n as usize * 16).next_multiple_of(4096))
                .map_err(|e| PortError::Other(crate::error::chain(&e)))
        };
        let mut rx = Vec::new();
        for q in 0..conf.rx_queues {
            let ring = DescRing::new(ring_mem(conf.rx_desc)?, conf.rx_desc)
                .ok_or_else(|| PortError::Other("rx ring region too small".into()))?;
            let mut r = RxQueue::new(ring, conf.rx_pool.clone(), conf.port_id, q);
            r.set_vlan_swap_on_loopback(self.model == Model::I350);
            rx.push(r);
        }
        let mut tx = Vec::new();
        for q in 0..conf.tx_queues {
            let ring = DescRing::new(ring_mem(conf.tx_desc)?, conf.tx_desc)
                .ok_or_else(|| PortError::Other("tx ring region too small".into()))?;
            tx.push(TxQueue::new(ring, q));
        }
        self.queues = Some(Queues { rx, tx });
        self.max_frame = max_frame;
        self.base = PortStats::default();
        Ok(())
    }

    fn start(&mut self) -> Result<(), PortError> {
        if self.queues.is_none() {
            return Err(PortError::NotConfigured);
        }
        if self.started {
            return Ok(());
        }
        if self.pf_lost {
            self.reset_handshake(self.opts.reset_timeout)?;
            self.restore_filters()?;
        } else {
            // The max frame size may have changed with configure.
            self.request("SET_LPE", &[regs::MSG_SET_LPE, self.max_frame], "")?;
        }
        if let Err(e) = self.program_queues() {
            let _ = self.disable_queues();
            if let Some(q) = self.queues.as_mut() {
                q.rx.iter_mut().for_each(RxQueue::release);
            }
            return Err(e.into());
        }
        self.started = true;
        self.next_check = Instant::now() + CHECK_EVERY;
        Ok(())
    }

    fn stop(&mut self) -> Result<(), PortError> {
        if !self.started {
            return Ok(());
        }
        self.started = false;
        let res = self.disable_queues();
        if let Some(q) = self.queues.as_mut() {
            for r in &mut q.rx {
                r.release();
            }
            for t in &mut q.tx {
                t.reset();
            }
        }
        res.map_err(PortError::from)
    }

    #[inline]
    fn rx_burst(&mut self, queue: u16, pkts: &mut Burst<Mbuf>) -> usize {
        self.tick();
        if !self.started {
            return 0;
        }
        match self
            .queues
            .as_mut()
            .and_then(|q| q.rx.get_mut(queue as usize))
        {
            Some(rx) => rx.rx_burst(&self.bar, pkts),
            None => 0,
        }
    }

    #[inline]
    fn tx_burst(&mut self, queue: u16, pkts: &mut Burst<Mbuf>) -> usize {
        self.tick();
        if !self.started {
            return 0;
        }
        match self
            .queues
            .as_mut()
            .and_then(|q| q.tx.get_mut(queue as usize))
        {
            Some(tx) => tx.tx_burst(&self.bar, pkts),
            None => 0,
        }
    }

    fn link(&mut self) -> LinkStatus {
        self.next_check = Instant::now();
        self.housekeeping(Instant::now());
        if self.pf_lost {
            return LinkStatus::DOWN;
        }
        let s = self.bar.read32(regs::STATUS);
        if s == u32::MAX || s & regs::STATUS_LU == 0 {
            return LinkStatus::DOWN;
        }
        let speed = if s & regs::STATUS_SPEED_1000 != 0 {
            1000
        } else if s & regs::STATUS_SPEED_100 != 0 {
            100
        } else {
            10
        };
        LinkStatus {
            up: true,
            speed_mbps: speed,
            duplex: if s & regs::STATUS_FD != 0 {
                Duplex::Full
            } else {
                Duplex::Half
            },
        }
    }

    fn mac_addr(&self) -> MacAddr {
        self.mac
    }

    fn set_mac_addr(&mut self, mac: MacAddr) -> Result<(), PortError> {
        if !mac.is_valid_unicast() {
            return Err(PortError::InvalidConfig(format!(
                "{mac} is not a unicast address"
            )));
        }
        self.send_mac(mac)?;
        self.mac = mac;
        self.user_mac = true;
        Ok(())
    }

    fn set_promiscuous(&mut self, on: bool) -> Result<(), PortError> {
        if on {
            // Linux igb refuses E1000_VF_SET_PROMISC_UNICAST for VFs.
            return Err(PortError::Unsupported(
                "unicast promiscuous mode: the igb PF does not grant it to VFs".into(),
            ));
        }
        Ok(())
    }

    fn set_allmulticast(&mut self, on: bool) -> Result<(), PortError> {
        let old = self.allmulti;
        self.allmulti = on;
        if let Err(e) = self.send_promisc() {
            self.allmulti = old;
            return Err(e.into());
        }
        Ok(())
    }

    fn set_mc_addr_list(&mut self, addrs: &[MacAddr]) -> Result<(), PortError> {
        if let Some(bad) = addrs.iter().find(|a| !a.is_multicast()) {
            return Err(PortError::InvalidConfig(format!(
                "{bad} is not a multicast address"
            )));
        }
        let old = std::mem::replace(&mut self.mc, addrs.to_vec());
        if let Err(e) = self.send_multicast() {
            self.mc = old;
            return Err(e.into());
        }
        Ok(())
    }

    fn stats(&self) -> PortStats {
        let s = self.sw_stats();
        let b = &self.base;
        PortStats {
            ipackets: s.ipackets - b.ipackets,
            opackets: s.opackets - b.opackets,
            ibytes: s.ibytes - b.ibytes,
            obytes: s.obytes - b.obytes,
            imissed: 0,
            ierrors: s.ierrors - b.ierrors,
            oerrors: s.oerrors - b.oerrors,
            rx_nombuf: s.rx_nombuf - b.rx_nombuf,
        }
    }

    fn queue_stats(&self) -> Vec<QueueStats> {
        let Some(q) = &self.queues else {
            return Vec::new();
        };
        let n = q.rx.len().max(q.tx.len());
        (0..n)
            .map(|i| {
                let r = q.rx.get(i).map(|r| r.stats).unwrap_or_default();
                let t = q.tx.get(i).map(|t| t.stats).unwrap_or_default();
                QueueStats {
                    rx_packets: r.packets,
                    rx_bytes: r.bytes,
                    tx_packets: t.packets,
                    tx_bytes: t.bytes,
                    rx_errors: r.errors,
                }
            })
            .collect()
    }

    fn xstats(&self) -> Vec<Xstat> {
        let s = self.stats();
        let mut hw = self.hw.get();
        hw.sample(&self.bar);
        self.hw.set(hw);
        vec![
            Xstat::new("rx_good_packets", s.ipackets),
            Xstat::new("tx_good_packets", s.opackets),
            Xstat::new("rx_good_bytes", s.ibytes),
            Xstat::new("tx_good_bytes", s.obytes),
            Xstat::new("rx_errors", s.ierrors),
            Xstat::new("tx_errors", s.oerrors),
            Xstat::new("rx_mbuf_allocation_errors", s.rx_nombuf),
            Xstat::new("hw_rx_packets", hw.rx_packets.total()),
            Xstat::new("hw_tx_packets", hw.tx_packets.total()),
            Xstat::new("hw_rx_bytes_with_fcs", hw.rx_octets.total()),
            Xstat::new("hw_tx_bytes_with_fcs", hw.tx_octets.total()),
            Xstat::new("hw_rx_multicast_packets", hw.rx_multicast.total()),
            Xstat::new("hw_rx_loopback_packets", hw.rx_loopback.total()),
            Xstat::new("hw_tx_loopback_packets", hw.tx_loopback.total()),
            Xstat::new("pf_reset_recoveries", self.recoveries),
        ]
    }

    fn reset_stats(&mut self) {
        self.base = self.sw_stats();
        let mut hw = self.hw.get();
        hw.sample(&self.bar);
        hw.reset();
        self.hw.set(hw);
    }
}

impl Drop for IgbVf {
    fn drop(&mut self) {
        // Queues off, then a VF reset, which also clears the VF's rx/tx
        // enables in the PF: after it the device issues no more DMA to our
        // buffers and rings, which are unmapped when the fields drop.
        let _ = self.disable_queues();
        self.bar.write32(regs::CTRL, regs::CTRL_RST);
        let _ = self.dev.set_bus_master(false);
        if let Some(q) = self.queues.as_mut() {
            q.rx.iter_mut().for_each(RxQueue::release);
            q.tx.iter_mut().for_each(TxQueue::reset);
        }
    }
}

impl std::fmt::Debug for IgbVf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IgbVf")
            .field("addr", &self.addr)
            .field("model", &self.model)
            .field("mac", &self.mac)
            .field("started", &self.started)
            .field("pf_lost", &self.pf_lost)
            .finish()
    }
}
