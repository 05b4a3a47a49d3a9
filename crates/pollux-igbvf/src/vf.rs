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
//! 4. [`Port::take_queues`]: one [`IgbVfRx`] and one [`IgbVfTx`] per queue,
//!    each owning its descriptor ring and buffers, polled by one lcore. A
//!    burst touches its ring and its own tail register, nothing else: no
//!    mailbox, no lock, no clock.
//! 5. [`Port::service`] on the control thread (every 10 to 100 ms) looks at
//!    the mailbox: a PF reset (RSTI/RSTD) or a PF message without
//!    clear-to-send means the PF forgot this VF, and the driver
//!    re-initialises the VF by itself once the PF is back, so traffic
//!    resumes without the application doing anything. That recovery is a
//!    handshake with the handles, described at pollux-intel's `QueueSet`;
//!    no burst waits for it.
//! 6. [`Port::stop`] / drop: the VF reset (which stops its DMA), bus
//!    mastering off; buffers go back to their pools only after that, when
//!    the rings are released or their handles dropped.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pollux_core::{
    Capabilities, Duplex, HugePages, Leases, LinkStatus, MacAddr, Port, PortConf, PortError,
    PortInfo, PortStats, QueueStats, Queues, RxOffloads, StatsBase, TxOffloads, Xstat,
};
use pollux_intel::queues::RingLayout;
use pollux_vfio::pci::{PciAddr, Sysfs};
use pollux_vfio::{Bar, Container, Device, DmaMemory, OpenOpts};

use crate::desc::DescRing;
use crate::error::IgbVfError;
use crate::mbx::{self, Mailbox};
use crate::regs;
use crate::rx::RxRing;
use crate::stats::HwStats;
use crate::tx::TxRing;

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

/// The queues of one configuration, shared by the control side and the
/// handles: pollux-intel's queue set, whose documentation describes the
/// handshake for stop, start and PF-reset recovery.
type QueueSet = pollux_intel::queues::QueueSet<crate::Igbvf>;

/// A receive queue of an [`IgbVf`], owned by the lcore that polls it.
pub type IgbVfRx = pollux_intel::queues::VfRx<crate::Igbvf>;

/// A transmit queue of an [`IgbVf`], owned by the lcore that polls it.
pub type IgbVfTx = pollux_intel::queues::VfTx<crate::Igbvf>;

/// A PF-reset recovery in progress: the VF was reset and the epoch moved;
/// waiting for the handles to re-arm their rings.
#[derive(Clone, Copy, Debug)]
struct Recovery {
    epoch: u32,
}

/// An 82576 or I350 virtual function. See the [module docs](self).
pub struct IgbVf {
    addr: PciAddr,
    model: Model,
    bar: Arc<Bar>,
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
    queues: Option<Arc<QueueSet>>,
    started: bool,
    leases: Leases,
    taken: bool,
    /// The PF reset or lost our clear-to-send: re-initialise when it is back.
    pf_lost: bool,
    recovery: Option<Recovery>,
    next_check: Instant,
    next_stats: Instant,
    recoveries: u64,
    hw: Cell<HwStats>,
    base: StatsBase,
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
        let bar = Arc::new(dev.map_bar(0)?);
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
            leases: Leases::new(),
            taken: false,
            pf_lost: false,
            recovery: None,
            next_check: Instant::now(),
            next_stats: Instant::now(),
            recoveries: 0,
            hw: Cell::new(HwStats::default()),
            base: StatsBase::default(),
            opts,
        };
        // Polled driver: no interrupts, ever.
        vf.bar.write32(regs::EIMC, regs::EIMC_ALL);
        vf.reset_handshake(vf.opts.reset_timeout)?;
        vf.restore_filters()?;
        let mut hw = vf.hw.get();
        hw.sample(&*vf.bar);
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
        let r = self.mbx.request(&*self.bar, msg, &mut reply, &mut pings);
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
        self.mbx.read_ctl(&*self.bar);
        self.mbx.forget();
        self.bar.write32(regs::CTRL, regs::CTRL_RST);
        let deadline = Instant::now() + rsti_timeout;
        while self.mbx.read_ctl(&*self.bar) & regs::MBX_RSTI != 0 {
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
            .request(&*self.bar, &[regs::MSG_VF_RESET], &mut reply, &mut pings)?;
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

    /// Stops the device's DMA: a VF reset (VTCTRL.RST), which also clears
    /// the VF's queue enables and VFRE/VFTE in the PF, read back so the
    /// posted write has reached the device, then the queue disables waited
    /// for. After this the device writes no buffer and reads no descriptor
    /// of ours until the queues are programmed again.
    fn quiesce(&mut self) -> Result<(), IgbVfError> {
        self.bar.write32(regs::CTRL, regs::CTRL_RST);
        let _ = self.bar.read32(regs::STATUS);
        // The PF has to redo the reset handshake with us after this.
        self.pf_lost = true;
        self.disable_queues()
    }

    /// Writes the ring registers of every queue and enables them; the rings
    /// must be re-armed for the current epoch (see [`QueueSet`]). The rx
    /// tails go last, giving the device every descriptor but one.
    fn program_queues(&self) -> Result<(), IgbVfError> {
        let Some(q) = &self.queues else {
            return Err(IgbVfError::Config("not configured".into()));
        };
        self.disable_queues()?;
        // Ring addresses and sizes are fixed by configure; the handles may
        // hold the rings, so take them from the layout, not the rings.
        let rx_buf = q.rx_buf_size;
        for (i, l) in q.rx_layout.iter().enumerate() {
            let i = i as u16;
            self.bar.write32(regs::rdbal(i), l.iova as u32);
            self.bar.write32(regs::rdbah(i), (l.iova >> 32) as u32);
            self.bar.write32(regs::rdlen(i), l.bytes);
            let kib = (rx_buf >> regs::SRRCTL_BSIZEPKT_SHIFT) & regs::SRRCTL_BSIZEPKT_MASK;
            self.bar.write32(
                regs::srrctl(i),
                kib | regs::SRRCTL_DESCTYPE_ADV_ONEBUF | regs::SRRCTL_DROP_EN,
            );
            self.bar.write32(regs::rdh(i), 0);
            self.bar.write32(regs::rdt(i), 0);
        }
        for (i, l) in q.tx_layout.iter().enumerate() {
            let i = i as u16;
            self.bar.write32(regs::tdbal(i), l.iova as u32);
            self.bar.write32(regs::tdbah(i), (l.iova >> 32) as u32);
            self.bar.write32(regs::tdlen(i), l.bytes);
            self.bar.write32(regs::tdh(i), 0);
            self.bar.write32(regs::tdt(i), 0);
        }
        // Thresholds as Linux igbvf and DPDK use them for this VF: prefetch
        // 16/8, host 8/1, write back 1 (the 82576 needs WTHRESH 1 for the
        // DD-based completion used here).
        for i in 0..q.rx_layout.len() as u16 {
            self.bar.write32(
                regs::rxdctl(i),
                regs::DCTL_ENABLE | regs::dctl_thresholds(16, 8, 1),
            );
            self.wait_dctl(regs::rxdctl(i), true, "rx", i)?;
        }
        for i in 0..q.tx_layout.len() as u16 {
            self.bar.write32(
                regs::txdctl(i),
                regs::DCTL_ENABLE | regs::dctl_thresholds(8, 1, 1),
            );
            self.wait_dctl(regs::txdctl(i), true, "tx", i)?;
        }
        // Parked rings were re-armed on this thread; their descriptors must
        // be visible to the device before the tail lets it fetch them. A
        // ring a handle holds keeps tail 0 until its handle has
        // resynchronised and moves the tail itself (see [`QueueSet`]).
        pollux_core::barrier::dma_wmb();
        for (i, l) in q.rx_layout.iter().enumerate() {
            if q.rx[i].parked().is_some() {
                self.bar.write32(regs::rdt(i as u16), l.initial_tail);
            }
        }
        Ok(())
    }

    /// Brings the queues up for `epoch`: parked rings re-armed, every
    /// register programmed, the running bit set.
    fn bring_up(&mut self, epoch: u32) -> Result<(), IgbVfError> {
        let addr = self.addr;
        let Some(q) = self.queues.clone() else {
            return Err(IgbVfError::Config("not configured".into()));
        };
        q.arm_parked()
            .map_err(|(queue, need)| IgbVfError::PoolEmpty { addr, queue, need })?;
        self.program_queues()?;
        q.set_running(epoch);
        Ok(())
    }

    /// One step of PF-reset recovery: stop the queues (once), then the
    /// reset handshake and bring-up, retried until the PF answers. Never
    /// waits for the handles.
    fn recovery_step(&mut self, now: Instant) {
        let Some(q) = self.queues.clone() else { return };
        let rec = match self.recovery {
            Some(r) => r,
            None => {
                // Stop the queues and the handles: the PF reset left the
                // rings where the device no longer expects them. Disabled
                // queues fetch no descriptor and write no buffer; the VF
                // reset comes with the reset handshake below, once the PF
                // is back. Should the queues not report disabled, a VF
                // reset now.
                if let Err(e) = self.disable_queues() {
                    tracing::debug!(vf = %self.addr, error = %e, "queues did not stop; VF reset");
                    self.bar.write32(regs::CTRL, regs::CTRL_RST);
                    let _ = self.bar.read32(regs::STATUS);
                }
                let r = Recovery {
                    epoch: q.next_epoch(),
                };
                self.recovery = Some(r);
                r
            }
        };
        let res = (|| {
            // A short wait: the next service call retries.
            self.reset_handshake(Duration::from_millis(10))?;
            self.restore_filters()?;
            self.bring_up(rec.epoch)
        })();
        match res {
            Ok(()) => {
                self.recovery = None;
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

    /// Mailbox watch and recovery at most every [`CHECK_EVERY`], statistics
    /// sampling every [`STATS_EVERY`]; cheap when there is nothing to do.
    fn housekeeping(&mut self, now: Instant) {
        if now < self.next_check {
            return;
        }
        self.next_check = now + CHECK_EVERY;
        let ctl = self.mbx.read_ctl(&*self.bar);
        if ctl & regs::MBX_RSTI != 0 || self.mbx.take(&*self.bar, regs::MBX_RSTD) {
            if !self.pf_lost {
                tracing::warn!(vf = %self.addr, "PF reset detected");
            }
            self.pf_lost = true;
        }
        loop {
            match self.mbx.poll_message(&*self.bar) {
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
            hw.sample(&*self.bar);
            self.hw.set(hw);
        }
        // RSTI is no reason to wait: QEMU's igb model keeps it set after the
        // PF is back until the VF resets itself, as Linux igbvf's watchdog
        // does when it sees RSTI or RSTD. The reset handshake in the
        // recovery step resets the VF and fails fast (PfNotReady, retried
        // every RETRY_AFTER) while the PF is still down.
        if (self.pf_lost || self.recovery.is_some()) && self.started {
            if ctl & regs::MBX_RSTI != 0 {
                tracing::debug!(vf = %self.addr, "recovery: PF reset indication (RSTI) set");
            }
            self.recovery_step(now);
        }
    }

    fn sw_stats(&self) -> PortStats {
        self.queues
            .as_ref()
            .map(|q| q.counters())
            .unwrap_or_default()
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
        self.leases.check_none(&self.addr.to_string())?;
        if let Some(q) = self.queues.take() {
            // The old rings are parked (no handle is alive) and the VF is
            // stopped; their buffers go back now.
            q.release_parked();
        }
        let mem = self.dma_memory(self.opts.ring_pages);
        let ring_mem = |n: u16| -> Result<pollux_core::DmaRegion, PortError> {
            mem.allocate_region((n as usize * 16).next_multiple_of(4096))
                .map_err(|e| PortError::Other(crate::error::chain(&e)))
        };
        let mut rx = Vec::new();
        let mut rx_layout = Vec::new();
        for q in 0..conf.rx_queues {
            let ring = DescRing::new(ring_mem(conf.rx_desc)?, conf.rx_desc)
                .ok_or_else(|| PortError::Other("rx ring region too small".into()))?;
            let mut r = RxRing::new(ring, conf.rx_pool.clone(), conf.port_id, q);
            r.set_vlan_swap_on_loopback(self.model == Model::I350);
            rx_layout.push(RingLayout {
                reg: q,
                iova: r.ring().iova().0,
                bytes: r.ring().bytes(),
                initial_tail: r.initial_tail(),
            });
            rx.push(r);
        }
        let mut tx = Vec::new();
        let mut tx_layout = Vec::new();
        for q in 0..conf.tx_queues {
            let ring = DescRing::new(ring_mem(conf.tx_desc)?, conf.tx_desc)
                .ok_or_else(|| PortError::Other("tx ring region too small".into()))?;
            let mut t = TxRing::new(ring, q);
            let container = self.container().clone();
            t.set_dma_check(Box::new(move |iova, len| container.maps(iova, len)));
            tx_layout.push(RingLayout {
                reg: q,
                iova: t.ring().iova().0,
                bytes: t.ring().bytes(),
                initial_tail: 0,
            });
            tx.push(t);
        }
        // Epoch 0 is "never armed": the first start arms every ring.
        self.queues = Some(Arc::new(QueueSet::new(
            self.bar.clone(),
            rx_layout,
            tx_layout,
            data,
            rx,
            tx,
        )));
        self.max_frame = max_frame;
        self.base.clear();
        Ok(())
    }

    fn start(&mut self) -> Result<(), PortError> {
        let Some(q) = self.queues.clone() else {
            return Err(PortError::NotConfigured);
        };
        if self.started {
            return Ok(());
        }
        self.leases.check_none(&self.addr.to_string())?;
        if self.pf_lost {
            self.reset_handshake(self.opts.reset_timeout)?;
            self.restore_filters()?;
        } else {
            // The max frame size may have changed with configure.
            self.request("SET_LPE", &[regs::MSG_SET_LPE, self.max_frame], "")?;
        }
        // Every ring is parked (no handle is alive): a new epoch re-arms
        // them all here.
        let epoch = q.next_epoch();
        match self.bring_up(epoch) {
            Ok(()) => {}
            Err(e) => {
                let _ = self.quiesce();
                q.release_parked();
                return Err(e.into());
            }
        }
        self.started = true;
        self.taken = false;
        self.recovery = None;
        self.next_check = Instant::now() + CHECK_EVERY;
        Ok(())
    }

    fn stop(&mut self) -> Result<(), PortError> {
        if !self.started {
            return Ok(());
        }
        self.started = false;
        self.recovery = None;
        let res = self.quiesce();
        if let Some(q) = &self.queues {
            // Handles still out see the new epoch, stop, and free what
            // they had in flight at their next burst; parked rings give
            // their buffers back now.
            q.next_epoch();
            q.release_parked();
        }
        res.map_err(PortError::from)
    }

    fn take_queues(&mut self) -> Result<Queues, PortError> {
        if !self.started {
            return Err(PortError::NotStarted);
        }
        let Some(q) = self.queues.clone() else {
            return Err(PortError::NotConfigured);
        };
        if self.taken {
            return Err(PortError::QueuesTaken(self.addr.to_string()));
        }
        self.taken = true;
        Ok(q.handles(&self.leases))
    }

    fn service(&mut self) {
        self.housekeeping(Instant::now());
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
        let mut s = self.base.since(self.sw_stats());
        s.imissed = 0;
        s
    }

    fn queue_stats(&self) -> Vec<QueueStats> {
        let Some(q) = &self.queues else {
            return Vec::new();
        };
        (0..q.rx.len().max(q.tx.len()))
            .map(|i| {
                let r = q.rx.get(i).map(|s| s.counters.get()).unwrap_or_default();
                let t = q.tx.get(i).map(|s| s.counters.get()).unwrap_or_default();
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
        hw.sample(&*self.bar);
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
        self.base.reset(self.sw_stats());
        let mut hw = self.hw.get();
        hw.sample(&*self.bar);
        hw.reset();
        self.hw.set(hw);
    }
}

impl Drop for IgbVf {
    fn drop(&mut self) {
        // A VF reset first: after it the device issues no more DMA to our
        // buffers and rings. Parked rings give their buffers back now;
        // handles still alive free theirs when dropped (they see the new
        // epoch and stop). The rings' memory stays mapped until the last
        // handle is gone.
        let _ = self.quiesce();
        let _ = self.dev.set_bus_master(false);
        if let Some(q) = &self.queues {
            q.next_epoch();
            q.release_parked();
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

#[cfg(test)]
mod tests {
    //! The queue set's handshake (pollux-intel's), run with this family's
    //! registers.
    use super::*;
    use pollux_intel::queues::checks;

    /// PF-reset recovery against handles polled on another thread: the
    /// control side never waits for a handle and a burst never waits for
    /// the control side; each handle resynchronises at its next burst and
    /// gives the device its rx tail only once the queues run; in-flight
    /// transmits are freed at each new epoch; every buffer is back at the
    /// end. Under the old design the recovery ran inside the burst and
    /// took the whole port.
    #[test]
    fn recovery_against_handles_polled_elsewhere() {
        checks::recovery_against_handles_polled_elsewhere::<crate::Igbvf>(regs::rdh(0));
    }

    /// A handle that has not run since the queues stopped is no obstacle:
    /// the control side brings them up without it, and the handle catches
    /// up at its next burst.
    #[test]
    fn an_idle_handle_catches_up_later() {
        checks::an_idle_handle_catches_up_later::<crate::Igbvf>(regs::rdh(0), 4);
    }
}
