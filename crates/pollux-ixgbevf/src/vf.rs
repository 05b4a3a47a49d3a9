//! [`IxgbeVf`]: one 82599 / X540 / X550 virtual function as a [`Port`].
//!
//! Life of a VF, as pollux-igbvf's (same queue handles, same recovery):
//! 1. [`IxgbeVf::open`]: identify the function, open it through VFIO (in
//!    the process's shared container unless told otherwise), map BAR 0,
//!    reset the VF and run the bring-up conversation with the PF
//!    ([`crate::proto::BringUp`]: VF_RESET, SET_MAC_ADDR if needed, API
//!    negotiation from 1.5 down, GET_QUEUES).
//! 2. [`Port::configure`]: as many queue pairs as asked, up to what the PF
//!    gave; descriptor rings in DMA memory of the container.
//! 3. [`Port::start`]: SET_LPE, multicast, VLAN and xcast requests to the
//!    PF, PSRTYPE, X550 RSS, then the rings, armed with buffers.
//! 4. [`Port::take_queues`]: one [`IxgbeVfRx`] and one [`IxgbeVfTx`] per
//!    queue, each owning its ring and buffers, polled by one lcore. A burst
//!    touches its ring and its own tail register, nothing else.
//! 5. [`Port::service`] on the control thread (every 10 to 100 ms) watches
//!    the mailbox: a PF reset (RSTI/RSTD) or a PF control message without
//!    clear-to-send means the PF forgot this VF, and the driver
//!    re-initialises it by itself once the PF is back (see pollux-intel's
//!    `QueueSet`); no burst waits for it.
//! 6. [`Port::stop`] / drop: VF reset (which stops its DMA), bus mastering
//!    off; buffers go back to their pools only after that.

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
use crate::error::IxgbeVfError;
use crate::mbx::Mailbox;
use crate::proto::{
    self, Answer, Api, BringUpConfig, Handshake, MbxError, PfEvent, QueueConfig, Request,
    Transaction, XcastMode,
};
use crate::regs::{self, Regs};
use crate::rx::RxRing;
use crate::stats::HwStats;
use crate::tx::TxRing;

/// Which VF this is: the MAC type of Linux's ixgbevf_info tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Model {
    /// 82599 VF (8086:10ed, Hyper-V 152e).
    I82599,
    /// X540 VF (8086:1515, Hyper-V 1530).
    X540,
    /// X550 VF (8086:1565, Hyper-V 1564).
    X550,
    /// X550EM_x VF (8086:15a8).
    X550EmX,
    /// X550EM_a VF (8086:15c5).
    X550EmA,
}

impl Model {
    /// The model of a PCI ID, if this driver handles it.
    pub fn from_ids(vendor: u16, device: u16) -> Option<Model> {
        if vendor != regs::VENDOR_INTEL {
            return None;
        }
        Some(match device {
            regs::DEV_ID_82599_VF | regs::DEV_ID_82599_VF_HV => Model::I82599,
            regs::DEV_ID_X540_VF | regs::DEV_ID_X540_VF_HV => Model::X540,
            regs::DEV_ID_X550_VF | regs::DEV_ID_X550_VF_HV => Model::X550,
            regs::DEV_ID_X550EM_X_VF => Model::X550EmX,
            regs::DEV_ID_X550EM_A_VF => Model::X550EmA,
            _ => return None,
        })
    }

    /// X550 family: the VF has its own RSS registers (VFMRQC, VFRSSRK,
    /// VFRETA) and programs them (Linux ixgbevf_configure_rx:
    /// `mac.type >= ixgbe_mac_X550_vf`). 82599/X540 VFs use the PF's RSS and
    /// may only read it (GET_RSS_KEY, GET_RETA).
    pub fn own_rss(self) -> bool {
        self >= Model::X550
    }
}

/// How to open a VF.
#[derive(Clone, Debug)]
pub struct IxgbeVfOpts {
    /// sysfs root, `/dev/vfio`, noiommu opt-in.
    pub vfio: OpenOpts,
    /// Container to open the VF in; `None`: [`Container::process_default`].
    pub container: Option<Container>,
    /// How long one mailbox transaction may take.
    pub mbx_timeout: Duration,
    /// How long the PF may keep its reset bits set at open.
    pub reset_timeout: Duration,
    /// MAC address to set when the PF assigned none. `None`: a locally
    /// administered address derived from the PCI address ([`default_mac`]).
    /// Given, it is asked for even over the PF's (which the PF grants only
    /// to a trusted VF; otherwise the PF's stays).
    pub mac: Option<MacAddr>,
    /// The highest mailbox API version to propose.
    pub max_api: Api,
    /// X550 family: the RSS key to program (40 bytes). `None`: the key of
    /// the Microsoft RSS specification, which every Toeplitz test suite
    /// uses.
    pub rss_key: Option<[u8; 40]>,
    /// Page size for descriptor rings.
    pub ring_pages: HugePages,
}

impl Default for IxgbeVfOpts {
    fn default() -> Self {
        IxgbeVfOpts {
            vfio: OpenOpts::default(),
            container: None,
            mbx_timeout: Duration::from_secs(2),
            reset_timeout: Duration::from_secs(2),
            mac: None,
            max_api: Api::V15,
            rss_key: None,
            ring_pages: HugePages::Never,
        }
    }
}

/// The default RSS key (Microsoft's "Verifying the RSS Hash Calculation"
/// key).
pub const DEFAULT_RSS_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// The MAC used when neither the PF nor the caller gives one: locally
/// administered, unicast, `02:58:` + domain low byte, bus, device, function.
pub fn default_mac(addr: PciAddr) -> MacAddr {
    MacAddr([
        0x02,
        0x58,
        addr.domain() as u8,
        addr.bus(),
        addr.device(),
        addr.function(),
    ])
}

/// How often the driver looks at the mailbox while polled.
const CHECK_EVERY: Duration = Duration::from_millis(50);
/// How often the 32/36-bit hardware counters are folded into the totals:
/// well inside the fastest wrap (VFGORC at 10 Gbit/s wraps after 55 s).
const STATS_EVERY: Duration = Duration::from_secs(1);
/// How long to wait before retrying a failed re-initialisation.
const RETRY_AFTER: Duration = Duration::from_millis(250);
/// How long a queue may take to report itself enabled or disabled (Linux
/// polls 10 times 1-2 ms).
const QUEUE_TIMEOUT: Duration = Duration::from_millis(100);
/// Ethernet header + FCS added to the MTU for SET_LPE (Linux
/// ixgbevf_configure_rx: `mtu + ETH_HLEN + ETH_FCS_LEN`).
const FRAME_OVERHEAD: u32 = 14 + 4;
/// Largest frame the PF accepts in SET_LPE (IXGBE_MAX_JUMBO_FRAME_SIZE).
const MAX_JUMBO_FRAME: u32 = 9728;
/// DCA_TXCTRL as Linux writes it: descriptor and data read relaxed
/// ordering, descriptor write-back ordered (IXGBE_DCA_TXCTRL_DESC_RRO_EN,
/// _DATA_RRO_EN).
const DCA_TXCTRL_VALUE: u32 = 1 << 9 | 1 << 13;
/// DCA_RXCTRL as Linux writes it (IXGBE_DCA_RXCTRL_DESC_RRO_EN).
const DCA_RXCTRL_VALUE: u32 = 1 << 9;

/// The queues of one configuration, shared by the control side and the
/// handles: pollux-intel's queue set, whose documentation describes the
/// handshake for stop, start and PF-reset recovery.
type QueueSet = pollux_intel::queues::QueueSet<crate::Ixgbevf>;

/// A receive queue of an [`IxgbeVf`], owned by the lcore that polls it.
pub type IxgbeVfRx = pollux_intel::queues::VfRx<crate::Ixgbevf>;

/// A transmit queue of an [`IxgbeVf`], owned by the lcore that polls it.
pub type IxgbeVfTx = pollux_intel::queues::VfTx<crate::Ixgbevf>;

#[cfg(feature = "testing")]
impl IxgbeVf {
    /// Fault injection (`testing` only): writes `tail` to transmit queue
    /// `queue`'s doorbell (VFTDT) as is, whatever its ring holds, as a
    /// confused driver would (e.g. one past the ring). The lab uses it to
    /// show a device model's violation log catching it.
    pub fn write_tx_tail_unchecked(&self, queue: u16, tail: u32) {
        self.bar.write32(regs::tdt(queue), tail);
    }
}

/// A PF-reset recovery in progress: the VF was reset and the epoch moved;
/// waiting for the handles to re-arm their rings.
#[derive(Clone, Copy, Debug)]
struct Recovery {
    epoch: u32,
}

/// The VF's control plane over any register access: the mailbox
/// conversations and what the PF must be told again after each VF reset.
/// [`IxgbeVf`] runs it over its BAR; tests run it over
/// `testing::SimPf` (feature `testing`).
#[derive(Debug)]
pub struct Ctl {
    addr: PciAddr,
    model: Model,
    mbx: Mailbox,
    max_api: Api,
    hs: Handshake,
    api: Api,
    qcfg: QueueConfig,
    mc_filter_type: u8,
    /// The MAC in force, the PF's, and whether the application chose ours.
    mac: MacAddr,
    pf_mac: Option<MacAddr>,
    user_mac: bool,
    mc: Vec<MacAddr>,
    vlans: BTreeSet<u16>,
    xcast: XcastMode,
    max_frame: u32,
    /// The PF reset or lost our clear-to-send: re-initialise when it is back.
    pub pf_lost: bool,
    /// PF control messages seen.
    pub pings: u64,
}

impl Ctl {
    /// A control plane that has not talked to the PF yet.
    pub fn new(addr: PciAddr, model: Model, opts: &IxgbeVfOpts) -> Ctl {
        Ctl {
            addr,
            model,
            mbx: Mailbox::new(opts.mbx_timeout),
            max_api: opts.max_api,
            hs: Handshake::Legacy,
            api: Api::V10,
            qcfg: QueueConfig::SINGLE,
            mc_filter_type: 0,
            mac: opts.mac.unwrap_or_else(|| default_mac(addr)),
            pf_mac: None,
            user_mac: opts.mac.is_some(),
            mc: Vec::new(),
            vlans: BTreeSet::new(),
            xcast: XcastMode::Multi,
            max_frame: 1500 + FRAME_OVERHEAD,
            pf_lost: false,
            pings: 0,
        }
    }

    pub fn api(&self) -> Api {
        self.api
    }
    pub fn handshake(&self) -> Handshake {
        self.hs
    }
    pub fn queue_config(&self) -> QueueConfig {
        self.qcfg
    }
    pub fn mac(&self) -> MacAddr {
        self.mac
    }
    pub fn pf_mac(&self) -> Option<MacAddr> {
        self.pf_mac
    }
    pub fn xcast(&self) -> XcastMode {
        self.xcast
    }
    pub fn mailbox(&self) -> &Mailbox {
        &self.mbx
    }

    fn err(&self, error: MbxError, hint: &'static str) -> IxgbeVfError {
        IxgbeVfError::Mailbox {
            addr: self.addr,
            error,
            hint,
        }
    }

    fn note(&mut self, ev: PfEvent) {
        match ev {
            PfEvent::ResetNotice => {
                if !self.pf_lost {
                    tracing::warn!(vf = %self.addr, "PF reset notice (control message without CTS)");
                }
                self.pf_lost = true;
            }
            PfEvent::Ping => self.pings += 1,
            PfEvent::Other(w) => {
                tracing::debug!(vf = %self.addr, msg = format_args!("{w:#010x}"), "stray PF message")
            }
        }
    }

    /// One request after bring-up.
    pub fn request(
        &mut self,
        r: &impl Regs,
        req: Request,
        hint: &'static str,
    ) -> Result<Answer, IxgbeVfError> {
        let mut txn = Transaction::new(req, self.api).map_err(|e| self.err(e, hint))?;
        let mut events = Vec::new();
        let res = self.mbx.transact(r, self.hs, &mut txn, &mut events);
        for ev in events {
            self.note(ev);
        }
        res.map_err(|e| {
            if e.lost_cts() {
                self.pf_lost = true;
            }
            self.err(e, hint)
        })
    }

    /// VF reset and the bring-up conversation (Linux ixgbevf_reset_hw_vf,
    /// then ixgbevf_negotiate_api and ixgbevf_get_queues).
    ///
    /// After VFCTRL.RST, Linux polls until a read of VFMAILBOX shows
    /// neither RSTI nor RSTD ("we cannot reset while the RSTI / RSTD bits
    /// are asserted"; RSTD clears on that read), giving up after 200 polls
    /// of 5 us. The same here with `rsti_timeout`: RSTI that stays set
    /// means the PF driver is not up, a typed error.
    pub fn reset_handshake(
        &mut self,
        r: &impl Regs,
        rsti_timeout: Duration,
    ) -> Result<(), IxgbeVfError> {
        // Stale bits say nothing about the reset about to happen.
        self.mbx.read_ctl(r);
        self.mbx.forget();
        self.hs = Handshake::Legacy;
        self.api = Api::V10;
        r.write32(regs::VFCTRL, regs::CTRL_RST);
        let _ = r.read32(regs::VFSTATUS);
        let deadline = Instant::now() + rsti_timeout;
        while self.mbx.take(r, regs::MBX_RSTI | regs::MBX_RSTD) {
            if Instant::now() >= deadline {
                return Err(IxgbeVfError::PfNotReady {
                    addr: self.addr,
                    ms: rsti_timeout.as_millis() as u64,
                });
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        self.mbx.forget();
        let cfg = BringUpConfig {
            fallback_mac: self.mac.0,
            prefer_mac: self.user_mac,
            max_api: self.max_api,
        };
        let (o, events) = self.mbx.bring_up(r, cfg).map_err(|e| {
            self.err(
                e,
                "; the administrator set this VF's MAC: change it with `ip link set <pf> vf N mac ...` \
                 or allow the VF to with `ip link set <pf> vf N trust on`",
            )
        })?;
        // Messages before the reset reply are about the state we left.
        drop(events);
        self.pf_mac = o.perm_mac.map(MacAddr);
        self.mac = MacAddr(o.mac);
        if o.mac_refused {
            tracing::warn!(vf = %self.addr, mac = %self.mac, "the PF refused our MAC; using the one it assigned");
            self.user_mac = false;
        }
        self.mc_filter_type = o.mc_filter_type;
        self.api = o.api;
        self.hs = o.api.handshake();
        self.qcfg = o.queues;
        self.pf_lost = false;
        tracing::debug!(vf = %self.addr, api = %self.api, queues = ?self.qcfg, "PF agreed");
        Ok(())
    }

    /// Everything the PF forgets at a VF reset: max frame, multicast list,
    /// VLANs, xcast mode (the MAC came with bring-up).
    pub fn restore_filters(&mut self, r: &impl Regs) -> Result<(), IxgbeVfError> {
        self.request(
            r,
            Request::SetLpe {
                max_frame: self.max_frame,
            },
            "; the PF accepts at most 9728-byte frames",
        )?;
        if !self.mc.is_empty() {
            self.send_multicast(r)?;
        }
        for vid in self.vlans.clone() {
            self.request(r, Request::SetVlan { vid, add: true }, "")?;
        }
        if self.xcast != XcastMode::Multi && self.api >= Api::V12 {
            self.send_xcast(r, self.xcast)?;
        }
        Ok(())
    }

    /// Sets the max frame size (SET_LPE).
    pub fn set_max_frame(&mut self, r: &impl Regs, max_frame: u32) -> Result<(), IxgbeVfError> {
        self.request(
            r,
            Request::SetLpe { max_frame },
            "; the PF accepts at most 9728-byte frames",
        )?;
        self.max_frame = max_frame;
        Ok(())
    }

    /// Changes the MAC (SET_MAC_ADDR).
    pub fn set_mac(&mut self, r: &impl Regs, mac: MacAddr) -> Result<(), IxgbeVfError> {
        self.request(
            r,
            Request::SetMac(mac.0),
            "; the administrator set this VF's MAC: change it with `ip link set <pf> vf N mac ...` \
             or allow the VF to with `ip link set <pf> vf N trust on`",
        )?;
        self.mac = mac;
        self.user_mac = true;
        Ok(())
    }

    fn send_multicast(&mut self, r: &impl Regs) -> Result<(), IxgbeVfError> {
        let hashes = self
            .mc
            .iter()
            .take(proto::MAX_MC_HASHES)
            .map(|m| proto::mta_vector(self.mc_filter_type, m.0))
            .collect();
        self.request(r, Request::SetMulticast(hashes), "")?;
        Ok(())
    }

    /// Replaces the multicast list. More than 30 groups: the first 30 go
    /// to the MTA and the VF asks for all-multicast (API >= 1.2), the way
    /// the PF has no overflow flag for ixgbe VFs.
    pub fn set_multicast(&mut self, r: &impl Regs, addrs: &[MacAddr]) -> Result<(), IxgbeVfError> {
        if addrs.len() > proto::MAX_MC_HASHES && self.api < Api::V12 {
            return Err(self.err(
                MbxError::Unsupported {
                    request: "UPDATE_XCAST_MODE (more than 30 multicast groups)",
                    api: self.api,
                    needs: Api::V12,
                },
                "",
            ));
        }
        let old = std::mem::replace(&mut self.mc, addrs.to_vec());
        if let Err(e) = self.send_multicast(r) {
            self.mc = old;
            return Err(e);
        }
        if addrs.len() > proto::MAX_MC_HASHES && self.xcast < XcastMode::AllMulti {
            self.send_xcast(r, XcastMode::AllMulti)?;
        }
        Ok(())
    }

    fn send_xcast(&mut self, r: &impl Regs, mode: XcastMode) -> Result<(), IxgbeVfError> {
        let hint = "; the PF grants all-multicast and promiscuous only to a trusted VF \
                    (`ip link set <pf> vf N trust on`), and no promiscuous mode on 82599";
        match self.request(r, Request::UpdateXcast(mode), hint)? {
            Answer::Xcast(Some(granted)) if granted < mode => Err(self.err(
                MbxError::Nack {
                    request: "UPDATE_XCAST_MODE",
                    reply: granted as u32,
                },
                hint,
            )),
            _ => {
                self.xcast = mode;
                Ok(())
            }
        }
    }

    /// Asks for an xcast mode; `Multi` is the default after reset.
    pub fn set_xcast(&mut self, r: &impl Regs, mode: XcastMode) -> Result<(), IxgbeVfError> {
        let old = self.xcast;
        if let Err(e) = self.send_xcast(r, mode) {
            self.xcast = old;
            return Err(e);
        }
        Ok(())
    }

    /// Adds or removes a VLAN from the VF's filter (SET_VLAN).
    pub fn vlan_filter(&mut self, r: &impl Regs, vid: u16, on: bool) -> Result<(), IxgbeVfError> {
        let vid = vid & 0x0FFF;
        self.request(
            r,
            Request::SetVlan { vid, add: on },
            "; the PF refuses VLAN changes when it set a port VLAN with `ip link set <pf> vf N vlan`",
        )?;
        if on {
            self.vlans.insert(vid);
        } else {
            self.vlans.remove(&vid);
        }
        Ok(())
    }

    /// The PF's RSS key and redirection table, for 82599/X540 VFs under
    /// API >= 1.2 whose PF allows it (`ip link set <pf> vf N query_rss on`).
    pub fn pf_rss(&mut self, r: &impl Regs) -> Result<([u8; 40], Vec<u8>), IxgbeVfError> {
        if self.model.own_rss() {
            return Err(IxgbeVfError::Config(format!(
                "{}: an X550-family VF programs its own RSS; GET_RETA/GET_RSS_KEY are for 82599/X540 VFs",
                self.addr
            )));
        }
        let hint = "; the PF answers only with `ip link set <pf> vf N query_rss on`";
        let key = match self.request(r, Request::GetRssKey, hint)? {
            Answer::RssKey(k) => k,
            _ => [0; 40],
        };
        let reta = match self.request(r, Request::GetReta, hint)? {
            Answer::Reta(t) => t,
            _ => Vec::new(),
        };
        Ok((key, reta))
    }

    /// Looks at the mailbox without waiting: reset bits and PF messages.
    pub fn watch(&mut self, r: &impl Regs) {
        let ctl = self.mbx.read_ctl(r);
        if ctl & regs::MBX_RSTI != 0 || self.mbx.take(r, regs::MBX_RSTD) {
            if !self.pf_lost {
                tracing::warn!(vf = %self.addr, "PF reset detected (RSTI/RSTD)");
            }
            self.pf_lost = true;
        }
        for _ in 0..4 {
            match self.mbx.poll_message(r, self.hs) {
                Ok(Some(w)) => self.note(proto::classify_unsolicited(w)),
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(vf = %self.addr, error = %e, "mailbox busy");
                    break;
                }
            }
        }
    }

    /// Link from VFLINKS (up bit 30, speed bits 29:28, DPDK ixgbe_read_vflinks).
    pub fn link(&self, r: &impl Regs) -> LinkStatus {
        if self.pf_lost {
            return LinkStatus::DOWN;
        }
        link_from_vflinks(r.read32(regs::VFLINKS), self.model)
    }
}

/// Decodes VFLINKS.
pub fn link_from_vflinks(v: u32, model: Model) -> LinkStatus {
    if v == u32::MAX || v & regs::LINKS_UP == 0 {
        return LinkStatus::DOWN;
    }
    let non_std = model.own_rss() && v & regs::LINKS_SPEED_NON_STD != 0;
    let speed = match v & regs::LINKS_SPEED_MASK {
        regs::LINKS_SPEED_10G if non_std => 2_500,
        regs::LINKS_SPEED_10G => 10_000,
        regs::LINKS_SPEED_1G => 1_000,
        regs::LINKS_SPEED_100 if non_std && model == Model::X550 => 5_000,
        regs::LINKS_SPEED_100 => 100,
        _ if model.own_rss() => 10,
        _ => 0,
    };
    LinkStatus {
        up: true,
        speed_mbps: speed,
        duplex: Duplex::Full,
    }
}

/// An 82599, X540 or X550 virtual function. See the [module docs](self).
pub struct IxgbeVf {
    addr: PciAddr,
    model: Model,
    bar: Arc<Bar>,
    dev: Device,
    ctl: Ctl,
    opts: IxgbeVfOpts,
    queues: Option<Arc<QueueSet>>,
    /// RXDCTL.VME on every rx queue (the configuration of `queues`).
    vlan_strip: bool,
    started: bool,
    leases: Leases,
    taken: bool,
    recovery: Option<Recovery>,
    next_check: Instant,
    next_stats: Instant,
    recoveries: u64,
    hw: Cell<HwStats>,
    base: StatsBase,
}

impl IxgbeVf {
    /// Opens the VF at `addr`: VFIO, BAR 0, reset and bring-up with the PF.
    pub fn open(addr: PciAddr, opts: IxgbeVfOpts) -> Result<IxgbeVf, IxgbeVfError> {
        let model = identify(addr, &opts.vfio)?;
        let container = match &opts.container {
            Some(c) => c.clone(),
            None => Container::process_default()?,
        };
        let dev = Device::open(&container, addr, &opts.vfio)?;
        dev.set_bus_master(true)?;
        let bar = Arc::new(dev.map_bar(0)?);
        if bar.len() < regs::BAR0_MIN_LEN {
            return Err(IxgbeVfError::Config(format!(
                "{addr}: BAR 0 is {} bytes, an ixgbe VF has {}",
                bar.len(),
                regs::BAR0_MIN_LEN
            )));
        }
        let mut vf = IxgbeVf {
            addr,
            model,
            bar,
            dev,
            ctl: Ctl::new(addr, model, &opts),
            queues: None,
            vlan_strip: false,
            started: false,
            leases: Leases::new(),
            taken: false,
            recovery: None,
            next_check: Instant::now(),
            next_stats: Instant::now(),
            recoveries: 0,
            hw: Cell::new(HwStats::default()),
            base: StatsBase::default(),
            opts,
        };
        vf.mask_irqs();
        vf.ctl.reset_handshake(&*vf.bar, vf.opts.reset_timeout)?;
        vf.ctl.restore_filters(&*vf.bar)?;
        let mut hw = vf.hw.get();
        hw.sample(&*vf.bar);
        vf.hw.set(hw);
        tracing::info!(
            vf = %addr, model = ?model, mac = %vf.ctl.mac(), api = %vf.ctl.api(),
            queues = ?vf.ctl.queue_config(), pf_assigned = vf.ctl.pf_mac().is_some(), "ixgbevf up"
        );
        Ok(vf)
    }

    /// Polled driver: no interrupts, ever (Linux ixgbevf_irq_disable).
    fn mask_irqs(&self) {
        self.bar.write32(regs::VTEIAM, 0);
        self.bar.write32(regs::VTEIMC, !0);
        self.bar.write32(regs::VTEIAC, 0);
    }

    pub fn addr(&self) -> PciAddr {
        self.addr
    }

    pub fn model(&self) -> Model {
        self.model
    }

    /// The mailbox API version the PF agreed to.
    pub fn api(&self) -> Api {
        self.ctl.api()
    }

    /// The queues the PF gives this VF.
    pub fn pf_queues(&self) -> QueueConfig {
        self.ctl.queue_config()
    }

    /// The container the VF is open in; mempools for it must come from
    /// [`IxgbeVf::dma_memory`] (or another VF of the same container).
    pub fn container(&self) -> &Container {
        self.dev.container()
    }

    /// A memory provider the VF can DMA to.
    pub fn dma_memory(&self, huge: HugePages) -> DmaMemory {
        self.container().dma_memory(huge)
    }

    /// The MAC address the PF assigned, if any.
    pub fn pf_assigned_mac(&self) -> Option<MacAddr> {
        self.ctl.pf_mac()
    }

    /// How often the driver re-initialised the VF after a PF reset.
    pub fn recoveries(&self) -> u64 {
        self.recoveries
    }

    /// Adds or removes a VLAN from the VF's filter (SET_VLAN).
    pub fn vlan_filter(&mut self, vid: u16, on: bool) -> Result<(), IxgbeVfError> {
        self.ctl.vlan_filter(&*self.bar, vid, on)
    }

    /// 82599/X540: the PF's RSS key and RETA (API >= 1.2, query_rss on).
    pub fn pf_rss(&mut self) -> Result<([u8; 40], Vec<u8>), IxgbeVfError> {
        self.ctl.pf_rss(&*self.bar)
    }

    // ---- queues ----

    fn wait_dctl(
        &self,
        reg: u32,
        enabled: bool,
        dir: &'static str,
        q: u16,
    ) -> Result<(), IxgbeVfError> {
        let deadline = Instant::now() + QUEUE_TIMEOUT;
        loop {
            let v = self.bar.read32(reg);
            if (v & regs::DCTL_ENABLE != 0) == enabled && v != u32::MAX {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(IxgbeVfError::QueueTimeout {
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
    fn disable_queues(&self) -> Result<(), IxgbeVfError> {
        let Some(q) = &self.queues else { return Ok(()) };
        for l in &q.rx_layout {
            self.bar.write32(regs::rxdctl(l.reg), 0);
        }
        for l in &q.tx_layout {
            // Linux disables a tx queue by writing SWFLSH alone.
            self.bar.write32(regs::txdctl(l.reg), regs::TXDCTL_SWFLSH);
        }
        let mut res = Ok(());
        for l in &q.rx_layout {
            res = res.and(self.wait_dctl(regs::rxdctl(l.reg), false, "rx", l.reg));
        }
        for l in &q.tx_layout {
            res = res.and(self.wait_dctl(regs::txdctl(l.reg), false, "tx", l.reg));
        }
        res
    }

    /// Stops the device's DMA: a VF reset (VFCTRL.RST, flushed by a read of
    /// VFSTATUS), then the queue disables waited for.
    fn quiesce(&mut self) -> Result<(), IxgbeVfError> {
        self.bar.write32(regs::VFCTRL, regs::CTRL_RST);
        let _ = self.bar.read32(regs::VFSTATUS);
        // The PF has to redo the bring-up with us after this.
        self.ctl.pf_lost = true;
        self.disable_queues()
    }

    /// X550 family: key, RETA spreading over the rx queues, and hashing on
    /// IPv4/IPv6 with and without TCP (Linux ixgbevf_setup_vfmrqc).
    fn program_rss(&self, rx_queues: u16) {
        let key = self.opts.rss_key.unwrap_or(DEFAULT_RSS_KEY);
        for i in 0..regs::VFRSSRK_REGS {
            let w =
                u32::from_le_bytes([key[4 * i], key[4 * i + 1], key[4 * i + 2], key[4 * i + 3]]);
            self.bar.write32(regs::vfrssrk(i as u32), w);
        }
        let n = rx_queues.max(1) as u32;
        let mut reta = 0u32;
        for i in 0..regs::X550_VFRETA_SIZE as u32 {
            reta |= (i % n) << ((i & 3) * 8);
            if i & 3 == 3 {
                self.bar.write32(regs::vfreta(i >> 2), reta);
                reta = 0;
            }
        }
        self.bar.write32(
            regs::VFMRQC,
            regs::VFMRQC_RSSEN
                | regs::VFMRQC_RSS_FIELD_IPV4
                | regs::VFMRQC_RSS_FIELD_IPV4_TCP
                | regs::VFMRQC_RSS_FIELD_IPV6
                | regs::VFMRQC_RSS_FIELD_IPV6_TCP
                // UDP by ports too, as pollux-virtio's RSS does: flows of
                // one address pair spread over the queues. Linux leaves it
                // to ethtool because a fragmented datagram's first
                // fragment (ports) and the rest (addresses only) may then
                // land on different queues.
                | regs::VFMRQC_RSS_FIELD_IPV4_UDP
                | regs::VFMRQC_RSS_FIELD_IPV6_UDP,
        );
    }

    /// Writes the ring registers of every queue and enables them; the rings
    /// must be re-armed for the current epoch (see [`QueueSet`]). The rx
    /// tails go last.
    fn program_queues(&self) -> Result<(), IxgbeVfError> {
        let Some(q) = &self.queues else {
            return Err(IxgbeVfError::Config("not configured".into()));
        };
        self.disable_queues()?;
        let mut psrtype = regs::PSRTYPE_HEADERS;
        if q.rx_layout.len() > 1 {
            psrtype |= regs::PSRTYPE_RQPL_2Q;
        }
        self.bar.write32(regs::VFPSRTYPE, psrtype);
        if self.model.own_rss() {
            self.program_rss(q.rx_layout.len() as u16);
        }
        let kib = (q.rx_buf_size >> regs::SRRCTL_BSIZEPKT_SHIFT) & regs::SRRCTL_BSIZEPKT_MASK;
        for l in &q.rx_layout {
            let i = l.reg;
            self.bar.write32(regs::rdbal(i), l.iova as u32);
            self.bar.write32(regs::rdbah(i), (l.iova >> 32) as u32);
            self.bar.write32(regs::rdlen(i), l.bytes);
            self.bar.write32(regs::dca_rxctrl(i), DCA_RXCTRL_VALUE);
            self.bar.write32(regs::rdh(i), 0);
            self.bar.write32(regs::rdt(i), 0);
            self.bar.write32(
                regs::srrctl(i),
                kib | regs::SRRCTL_DESCTYPE_ADV_ONEBUF | regs::SRRCTL_DROP_EN,
            );
        }
        for l in &q.tx_layout {
            let i = l.reg;
            self.bar.write32(regs::tdbal(i), l.iova as u32);
            self.bar.write32(regs::tdbah(i), (l.iova >> 32) as u32);
            self.bar.write32(regs::tdlen(i), l.bytes);
            // No head write-back (Linux: "disable head writeback").
            self.bar.write32(regs::tdwbah(i), 0);
            self.bar.write32(regs::tdwbal(i), 0);
            self.bar.write32(
                regs::dca_txctrl(i),
                DCA_TXCTRL_VALUE & !regs::DCA_TXCTRL_DESC_WRO_EN,
            );
            self.bar.write32(regs::tdh(i), 0);
            self.bar.write32(regs::tdt(i), 0);
        }
        let vme = if self.vlan_strip { regs::RXDCTL_VME } else { 0 };
        for l in &q.rx_layout {
            self.bar
                .write32(regs::rxdctl(l.reg), regs::DCTL_ENABLE | vme);
            self.wait_dctl(regs::rxdctl(l.reg), true, "rx", l.reg)?;
        }
        // Thresholds as DPDK's ixgbe defaults: PTHRESH 32, HTHRESH 0,
        // WTHRESH 0 (every RS descriptor written back as it completes, which
        // the DD-based reclaim relies on; Linux uses WTHRESH 8 with its own
        // completion scheme).
        for l in &q.tx_layout {
            self.bar.write32(
                regs::txdctl(l.reg),
                regs::DCTL_ENABLE | regs::dctl_thresholds(32, 0, 0),
            );
            self.wait_dctl(regs::txdctl(l.reg), true, "tx", l.reg)?;
        }
        // Parked rings were re-armed on this thread; their descriptors must
        // be visible to the device before the tail lets it fetch them. A
        // ring a handle holds keeps tail 0 until its handle moves it.
        pollux_core::barrier::dma_wmb();
        for (i, l) in q.rx_layout.iter().enumerate() {
            if q.rx[i].parked().is_some() {
                self.bar.write32(regs::rdt(l.reg), l.initial_tail);
            }
        }
        Ok(())
    }

    /// Brings the queues up for `epoch`.
    fn bring_up(&mut self, epoch: u32) -> Result<(), IxgbeVfError> {
        let addr = self.addr;
        let Some(q) = self.queues.clone() else {
            return Err(IxgbeVfError::Config("not configured".into()));
        };
        q.arm_parked()
            .map_err(|(queue, need)| IxgbeVfError::PoolEmpty { addr, queue, need })?;
        self.program_queues()?;
        q.set_running(epoch);
        Ok(())
    }

    /// One step of PF-reset recovery (as igbvf's): stop the queues once,
    /// then VF reset, bring-up and queue bring-up, retried until the PF
    /// answers. Never waits for the handles.
    fn recovery_step(&mut self, now: Instant) {
        let Some(q) = self.queues.clone() else { return };
        let rec = match self.recovery {
            Some(r) => r,
            None => {
                if let Err(e) = self.disable_queues() {
                    tracing::debug!(vf = %self.addr, error = %e, "queues did not stop; VF reset");
                    self.bar.write32(regs::VFCTRL, regs::CTRL_RST);
                    let _ = self.bar.read32(regs::VFSTATUS);
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
            self.ctl
                .reset_handshake(&*self.bar, Duration::from_millis(10))?;
            self.ctl.restore_filters(&*self.bar)?;
            self.bring_up(rec.epoch)
        })();
        match res {
            Ok(()) => {
                self.recovery = None;
                self.recoveries += 1;
                tracing::info!(vf = %self.addr, mac = %self.ctl.mac(), api = %self.ctl.api(), "re-initialised after PF reset");
            }
            Err(e) => {
                self.ctl.pf_lost = true;
                self.next_check = now + RETRY_AFTER;
                tracing::debug!(vf = %self.addr, error = %e, "re-initialisation failed; will retry");
            }
        }
    }

    /// Mailbox watch and recovery at most every [`CHECK_EVERY`], statistics
    /// every [`STATS_EVERY`].
    fn housekeeping(&mut self, now: Instant) {
        if now < self.next_check {
            return;
        }
        self.next_check = now + CHECK_EVERY;
        self.ctl.watch(&*self.bar);
        if now >= self.next_stats {
            self.next_stats = now + STATS_EVERY;
            let mut hw = self.hw.get();
            hw.sample(&*self.bar);
            self.hw.set(hw);
        }
        if (self.ctl.pf_lost || self.recovery.is_some()) && self.started {
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
pub fn identify(addr: PciAddr, opts: &OpenOpts) -> Result<Model, IxgbeVfError> {
    let sysfs = Sysfs::new(&opts.sysfs_root);
    if !sysfs.exists(addr) {
        return Err(IxgbeVfError::Vfio(
            pollux_vfio::pci::Error::NoSuchFunction {
                addr,
                root: opts.sysfs_root.clone(),
            }
            .into(),
        ));
    }
    let vendor = sysfs.vendor(addr).map_err(pollux_vfio::VfioError::from)?;
    let device = sysfs.device(addr).map_err(pollux_vfio::VfioError::from)?;
    Model::from_ids(vendor, device).ok_or(IxgbeVfError::UnknownDevice {
        addr,
        vendor,
        device,
    })
}

impl Port for IxgbeVf {
    fn info(&self) -> PortInfo {
        let qc = self.ctl.queue_config();
        PortInfo {
            driver: "net_ixgbevf".into(),
            name: self.addr.to_string(),
            capabilities: Capabilities {
                // What the PF gave (GET_QUEUES; one each under API 1.0).
                max_rx_queues: qc.rx_queues().max(1),
                max_tx_queues: qc.tx_queue_regs().len().max(1) as u16,
                // Linux: IXGBEVF_MIN_RXD 64 .. IXGBEVF_MAX_RXD 4096, "must be
                // a multiple of 8" (IXGBE_REQ_RX_DESCRIPTOR_MULTIPLE).
                min_desc: 64,
                max_desc: 4096,
                desc_align: 8,
                // No scatter: a frame must fit one buffer of the rx pool.
                max_frame: 2048,
                rx_offloads: RxOffloads::VLAN_STRIP
                    | RxOffloads::IPV4_CKSUM
                    | RxOffloads::UDP_CKSUM
                    | RxOffloads::TCP_CKSUM
                    | RxOffloads::RSS_HASH
                    | RxOffloads::VLAN_FILTER,
                tx_offloads: TxOffloads::VLAN_INSERT
                    | TxOffloads::IPV4_CKSUM
                    | TxOffloads::UDP_CKSUM
                    | TxOffloads::TCP_CKSUM,
                max_mc_addrs: proto::MAX_MC_HASHES as u16,
                promiscuous: self.ctl.api() >= Api::V13,
                allmulticast: self.ctl.api() >= Api::V12,
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
                 write into it; build the pool with IxgbeVf::dma_memory (or Container::dma_memory \
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
        // The device writes whole KiB units of the buffer; a VLAN tag it
        // does not strip needs 4 more bytes.
        let usable = data & !0x3FF;
        if max_frame + 4 > usable || max_frame > MAX_JUMBO_FRAME {
            return Err(PortError::InvalidConfig(format!(
                "MTU {} needs {max_frame}-byte frames (+4 for a VLAN tag) but rx buffers hold \
                 {usable} (no scatter) and the PF at most {MAX_JUMBO_FRAME}",
                conf.mtu.unwrap_or(1500)
            )));
        }
        self.leases.check_none(&self.addr.to_string())?;
        if let Some(q) = self.queues.take() {
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
            let r = RxRing::new(ring, conf.rx_pool.clone(), conf.port_id, q);
            rx_layout.push(RingLayout {
                reg: q,
                iova: r.ring().iova().0,
                bytes: r.ring().bytes(),
                initial_tail: r.initial_tail(),
            });
            rx.push(r);
        }
        let tx_regs = self.ctl.queue_config().tx_queue_regs();
        let mut tx = Vec::new();
        let mut tx_layout = Vec::new();
        for q in 0..conf.tx_queues {
            let reg = tx_regs.get(q as usize).copied().unwrap_or(q);
            let ring = DescRing::new(ring_mem(conf.tx_desc)?, conf.tx_desc)
                .ok_or_else(|| PortError::Other("tx ring region too small".into()))?;
            let mut t = TxRing::new(ring, reg);
            let container = self.container().clone();
            t.set_dma_check(Box::new(move |iova, len| container.maps(iova, len)));
            tx_layout.push(RingLayout {
                reg,
                iova: t.ring().iova().0,
                bytes: t.ring().bytes(),
                initial_tail: 0,
            });
            tx.push(t);
        }
        self.queues = Some(Arc::new(QueueSet::new(
            self.bar.clone(),
            rx_layout,
            tx_layout,
            data,
            rx,
            tx,
        )));
        self.vlan_strip = conf.rx_offloads.contains(RxOffloads::VLAN_STRIP);
        if self.ctl.max_frame != max_frame {
            // Told to the PF now if it listens, else at start.
            if let Err(e) = self.ctl.set_max_frame(&*self.bar, max_frame) {
                tracing::debug!(vf = %self.addr, error = %e, "SET_LPE deferred to start");
                self.ctl.max_frame = max_frame;
            }
        }
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
        if self.ctl.pf_lost {
            self.ctl
                .reset_handshake(&*self.bar, self.opts.reset_timeout)?;
            self.ctl.restore_filters(&*self.bar)?;
        } else {
            let mf = self.ctl.max_frame;
            self.ctl.set_max_frame(&*self.bar, mf)?;
        }
        let epoch = q.next_epoch();
        if let Err(e) = self.bring_up(epoch) {
            let _ = self.quiesce();
            q.release_parked();
            return Err(e.into());
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
        self.ctl.link(&*self.bar)
    }

    fn mac_addr(&self) -> MacAddr {
        self.ctl.mac()
    }

    fn set_mac_addr(&mut self, mac: MacAddr) -> Result<(), PortError> {
        pollux_core::port::require_unicast(mac)?;
        self.ctl.set_mac(&*self.bar, mac)?;
        Ok(())
    }

    fn set_promiscuous(&mut self, on: bool) -> Result<(), PortError> {
        let mode = if on {
            XcastMode::Promisc
        } else if self.ctl.xcast() == XcastMode::Promisc {
            XcastMode::Multi
        } else {
            return Ok(());
        };
        self.ctl.set_xcast(&*self.bar, mode)?;
        Ok(())
    }

    fn set_allmulticast(&mut self, on: bool) -> Result<(), PortError> {
        let mode = if on {
            XcastMode::AllMulti
        } else {
            XcastMode::Multi
        };
        if self.ctl.xcast() == mode || (on && self.ctl.xcast() == XcastMode::Promisc) {
            return Ok(());
        }
        self.ctl.set_xcast(&*self.bar, mode)?;
        Ok(())
    }

    fn set_mc_addr_list(&mut self, addrs: &[MacAddr]) -> Result<(), PortError> {
        pollux_core::port::require_multicast(addrs)?;
        self.ctl.set_multicast(&*self.bar, addrs)?;
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
            Xstat::new("pf_reset_recoveries", self.recoveries),
            Xstat::new("pf_pings", self.ctl.pings),
            Xstat::new("mbx_messages_sent", self.ctl.mailbox().sent),
            Xstat::new("mbx_messages_received", self.ctl.mailbox().received),
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

impl Drop for IxgbeVf {
    fn drop(&mut self) {
        // A VF reset first: after it the device issues no more DMA.
        let _ = self.quiesce();
        let _ = self.dev.set_bus_master(false);
        if let Some(q) = &self.queues {
            q.next_epoch();
            q.release_parked();
        }
    }
}

impl std::fmt::Debug for IxgbeVf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IxgbeVf")
            .field("addr", &self.addr)
            .field("model", &self.model)
            .field("mac", &self.ctl.mac())
            .field("api", &self.ctl.api())
            .field("started", &self.started)
            .field("pf_lost", &self.ctl.pf_lost)
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
    /// end.
    #[test]
    fn recovery_against_handles_polled_elsewhere() {
        checks::recovery_against_handles_polled_elsewhere::<crate::Ixgbevf>(regs::rdh(0));
    }

    /// A handle that has not run since the queues stopped is no obstacle:
    /// the control side brings them up without it, and the handle catches
    /// up at its next burst. After the restart the tx ring starts over at
    /// 0: a context descriptor (the device's context was lost with the
    /// reset) and four data descriptors.
    #[test]
    fn an_idle_handle_catches_up_later() {
        checks::an_idle_handle_catches_up_later::<crate::Ixgbevf>(regs::rdh(0), 5);
    }
}

/// The control plane against a software PF, through the mailbox registers,
/// in both handshakes.
#[cfg(test)]
mod ctl_tests {
    use super::*;
    use crate::testing::{Fault, PfSetup, SimPf};

    fn ctl(model: Model, mac: Option<MacAddr>) -> Ctl {
        let opts = IxgbeVfOpts {
            mbx_timeout: Duration::from_millis(50),
            mac,
            ..IxgbeVfOpts::default()
        };
        Ctl::new("0000:03:10.0".parse().unwrap(), model, &opts)
    }

    fn up(setup: PfSetup) -> (SimPf, Ctl) {
        let pf = SimPf::new(setup);
        let mut c = ctl(Model::X550, None);
        c.reset_handshake(&pf, Duration::from_millis(50)).unwrap();
        (pf, c)
    }

    fn clean(pf: &SimPf) {
        let v = &pf.0.borrow().violations;
        assert!(v.is_empty(), "handshake violations: {v:?}");
    }

    #[test]
    fn api_15_switches_both_sides_to_the_new_handshake() {
        let (pf, mut c) = up(PfSetup::default());
        assert_eq!((c.api(), c.handshake()), (Api::V15, Handshake::V15));
        assert_eq!(pf.0.borrow().handshake, Some(Handshake::V15));
        assert_eq!(
            c.mac(),
            default_mac("0000:03:10.0".parse().unwrap()),
            "no admin MAC: ours"
        );
        assert_eq!(pf.0.borrow().mac, Some(c.mac().0));
        // Requests after the switch go through the 1.5 handshake.
        c.set_max_frame(&pf, 9018).unwrap();
        c.vlan_filter(&pf, 100, true).unwrap();
        c.set_multicast(&pf, &[MacAddr([1, 0, 0x5e, 0, 0xab, 0xcd])])
            .unwrap();
        assert_eq!(pf.0.borrow().max_frame, 9018);
        assert!(pf.0.borrow().vlans.contains(&100));
        assert_eq!(
            pf.0.borrow().mc_hashes,
            vec![proto::mta_vector(0, [1, 0, 0x5e, 0, 0xab, 0xcd])]
        );
        assert_eq!(c.queue_config().rx, 2);
        clean(&pf);
    }

    #[test]
    fn each_pf_version_is_negotiated_in_the_legacy_handshake() {
        for max in Api::NEGOTIATION_ORDER {
            let (pf, mut c) = up(PfSetup {
                max_api: max,
                ..PfSetup::default()
            });
            assert_eq!(c.api(), max);
            assert_eq!(c.handshake(), max.handshake());
            let proposed: Vec<u32> =
                pf.0.borrow()
                    .log
                    .iter()
                    .filter(|m| m[0] & 0xFFFF == proto::MSG_API_NEGOTIATE)
                    .map(|m| m[1])
                    .collect();
            let want: Vec<u32> = Api::NEGOTIATION_ORDER
                .iter()
                .take_while(|a| **a >= max)
                .map(|a| a.wire())
                .collect();
            assert_eq!(proposed, want, "highest first, down to {max}");
            let gq =
                pf.0.borrow()
                    .log
                    .iter()
                    .any(|m| m[0] & 0xFFFF == proto::MSG_GET_QUEUES);
            assert_eq!(gq, max >= Api::V11, "GET_QUEUES only from 1.1");
            if max == Api::V10 {
                assert_eq!(c.queue_config(), QueueConfig::SINGLE);
            }
            c.restore_filters(&pf).unwrap();
            clean(&pf);
        }
    }

    #[test]
    fn the_admin_mac_wins_unless_the_vf_is_trusted() {
        let admin = [2, 0xaa, 0xbb, 0xcc, 0xdd, 0xee];
        let (pf, c) = up(PfSetup {
            admin_mac: Some(admin),
            ..PfSetup::default()
        });
        assert_eq!(c.mac().0, admin);
        assert_eq!(c.pf_mac(), Some(MacAddr(admin)));
        assert!(!pf
            .0
            .borrow()
            .log
            .iter()
            .any(|m| m[0] & 0xFFFF == proto::MSG_SET_MAC_ADDR));
        // An application MAC: asked for, refused, the admin's kept.
        let mine = MacAddr([2, 1, 2, 3, 4, 5]);
        let pf = SimPf::new(PfSetup {
            admin_mac: Some(admin),
            ..PfSetup::default()
        });
        let mut c = ctl(Model::I82599, Some(mine));
        c.reset_handshake(&pf, Duration::from_millis(50)).unwrap();
        assert_eq!(c.mac().0, admin);
        // Trusted: granted.
        let pf = SimPf::new(PfSetup {
            admin_mac: Some(admin),
            trusted: true,
            ..PfSetup::default()
        });
        let mut c = ctl(Model::I82599, Some(mine));
        c.reset_handshake(&pf, Duration::from_millis(50)).unwrap();
        assert_eq!(c.mac(), mine);
        clean(&pf);
    }

    #[test]
    fn refusals_timeouts_and_garbage_are_typed_errors() {
        let (pf, mut c) = up(PfSetup {
            port_vlan: true,
            ..PfSetup::default()
        });
        let e = c.vlan_filter(&pf, 5, true).unwrap_err();
        assert!(matches!(e.mailbox(), Some(MbxError::Nack { .. })), "{e}");
        assert!(e.to_string().contains("port VLAN"), "{e}");
        for (fault, check) in [
            (Fault::Silent, "silent"),
            (Fault::Deaf, "deaf"),
            (Fault::Garbage(0x0042_0007), "garbage"),
        ] {
            pf.0.borrow_mut().faults.push((proto::MSG_SET_LPE, fault));
            let t = Instant::now();
            let e = c.set_max_frame(&pf, 1518).unwrap_err();
            let m = e.mailbox().cloned().unwrap();
            match fault {
                Fault::Garbage(_) => {
                    assert!(matches!(m, MbxError::OutOfOrder { .. }), "{check}: {e}")
                }
                _ => {
                    assert!(
                        matches!(m, MbxError::Timeout { ms: 50, .. }),
                        "{check}: {e}"
                    );
                    assert!(t.elapsed() >= Duration::from_millis(50));
                    assert!(t.elapsed() < Duration::from_secs(2), "bounded");
                }
            }
            // The mailbox works again afterwards.
            c.set_max_frame(&pf, 1518).unwrap();
        }
        clean(&pf);
    }

    #[test]
    fn a_ping_before_the_reply_is_set_aside() {
        for max in [Api::V14, Api::V15] {
            let (pf, mut c) = up(PfSetup {
                max_api: max,
                ..PfSetup::default()
            });
            pf.0.borrow_mut()
                .faults
                .push((proto::MSG_SET_LPE, Fault::PingFirst));
            c.set_max_frame(&pf, 2000).unwrap();
            assert_eq!(pf.0.borrow().max_frame, 2000);
            assert_eq!(c.pings, 1);
            assert!(!c.pf_lost);
            clean(&pf);
        }
    }

    #[test]
    fn lost_cts_and_pf_reset_mark_the_pf_lost_and_a_reset_recovers() {
        for max in [Api::V13, Api::V15] {
            let (pf, mut c) = up(PfSetup {
                max_api: max,
                ..PfSetup::default()
            });
            pf.0.borrow_mut()
                .faults
                .push((proto::MSG_SET_VLAN, Fault::LostCts));
            let e = c.vlan_filter(&pf, 7, true).unwrap_err();
            assert!(
                matches!(e.mailbox(), Some(MbxError::NotClearToSend { .. })),
                "{e}"
            );
            assert!(c.pf_lost);
            c.reset_handshake(&pf, Duration::from_millis(50)).unwrap();
            assert!(!c.pf_lost);

            // The PF resets: down (RSTI), then back with RSTD and a control
            // message without CTS.
            pf.pf_reset(false);
            c.watch(&pf);
            assert!(c.pf_lost, "RSTI seen");
            let e = c
                .reset_handshake(&pf, Duration::from_millis(20))
                .unwrap_err();
            assert!(matches!(e, IxgbeVfError::PfNotReady { ms: 20, .. }), "{e}");
            pf.pf_reset(true);
            c.reset_handshake(&pf, Duration::from_millis(50)).unwrap();
            c.restore_filters(&pf).unwrap();
            assert_eq!((c.api(), c.pf_lost), (max, false));
            // Only a notice after that: still caught by watch.
            pf.pf_reset(true);
            c.watch(&pf);
            assert!(c.pf_lost);
            c.reset_handshake(&pf, Duration::from_millis(50)).unwrap();
            assert_eq!(c.handshake(), max.handshake());
            clean(&pf);
        }
    }

    #[test]
    fn xcast_modes_follow_api_and_trust() {
        let (pf, mut c) = up(PfSetup::default());
        let e = c.set_xcast(&pf, XcastMode::AllMulti).unwrap_err();
        assert!(
            e.to_string().contains("trust"),
            "the untrusted VF was downgraded: {e}"
        );
        assert_eq!(c.xcast(), XcastMode::Multi);
        let (pf, mut c) = up(PfSetup {
            trusted: true,
            ..PfSetup::default()
        });
        c.set_xcast(&pf, XcastMode::AllMulti).unwrap();
        c.set_xcast(&pf, XcastMode::Promisc).unwrap();
        assert_eq!(pf.0.borrow().xcast, 3);
        let (pf, mut c) = up(PfSetup {
            trusted: true,
            max_api: Api::V12,
            ..PfSetup::default()
        });
        let e = c.set_xcast(&pf, XcastMode::Promisc).unwrap_err();
        assert!(
            matches!(
                e.mailbox(),
                Some(MbxError::Unsupported {
                    needs: Api::V13,
                    ..
                })
            ),
            "{e}"
        );
        let n = pf.0.borrow().log.len();
        c.set_xcast(&pf, XcastMode::AllMulti).unwrap();
        assert_eq!(
            pf.0.borrow().log.len(),
            n + 1,
            "the refused mode sent nothing"
        );
        // More than 30 groups: 30 hashes and all-multicast.
        let groups: Vec<MacAddr> = (0..40).map(|i| MacAddr([1, 0, 0x5e, 0, 1, i])).collect();
        c.set_xcast(&pf, XcastMode::Multi).unwrap();
        c.set_multicast(&pf, &groups).unwrap();
        assert_eq!(pf.0.borrow().mc_hashes.len(), 30);
        assert_eq!(c.xcast(), XcastMode::AllMulti);
        clean(&pf);
    }

    #[test]
    fn an_82599_vf_reads_the_pfs_rss() {
        let pf = SimPf::new(PfSetup::default());
        let mut c = ctl(Model::I82599, None);
        c.reset_handshake(&pf, Duration::from_millis(50)).unwrap();
        let (key, reta) = c.pf_rss(&pf).unwrap();
        assert_eq!(&key[4..8], &[1, 1, 1, 1]);
        assert_eq!(reta.len(), 128);
        let pf = SimPf::new(PfSetup {
            rss_query: false,
            ..PfSetup::default()
        });
        let mut c = ctl(Model::X540, None);
        c.reset_handshake(&pf, Duration::from_millis(50)).unwrap();
        let e = c.pf_rss(&pf).unwrap_err();
        assert!(e.to_string().contains("query_rss"), "{e}");
        let (pf, mut c) = up(PfSetup::default());
        assert!(
            matches!(c.pf_rss(&pf), Err(IxgbeVfError::Config(_))),
            "X550 has its own"
        );
    }

    #[test]
    fn link_decodes_vflinks() {
        let l = |v, m| link_from_vflinks(v, m);
        assert_eq!(l(0, Model::I82599), LinkStatus::DOWN);
        assert_eq!(l(u32::MAX, Model::X550), LinkStatus::DOWN);
        assert_eq!(
            l(regs::LINKS_UP | regs::LINKS_SPEED_10G, Model::I82599).speed_mbps,
            10_000
        );
        assert_eq!(
            l(regs::LINKS_UP | regs::LINKS_SPEED_1G, Model::X540).speed_mbps,
            1_000
        );
        assert_eq!(
            l(regs::LINKS_UP | regs::LINKS_SPEED_100, Model::I82599).speed_mbps,
            100
        );
        let ns = regs::LINKS_UP | regs::LINKS_SPEED_NON_STD;
        assert_eq!(l(ns | regs::LINKS_SPEED_10G, Model::X550).speed_mbps, 2_500);
        assert_eq!(l(ns | regs::LINKS_SPEED_100, Model::X550).speed_mbps, 5_000);
        assert_eq!(
            l(ns | regs::LINKS_SPEED_10G, Model::I82599).speed_mbps,
            10_000,
            "82599 has no NON_STD"
        );
        assert_eq!(l(regs::LINKS_UP, Model::X550EmA).speed_mbps, 10);
        let pf = SimPf::new(PfSetup::default());
        pf.set_reg(regs::VFLINKS, regs::LINKS_UP | regs::LINKS_SPEED_10G);
        let mut c = ctl(Model::I82599, None);
        c.reset_handshake(&pf, Duration::from_millis(50)).unwrap();
        assert!(c.link(&pf).up);
        c.pf_lost = true;
        assert!(!c.link(&pf).up, "no link while the PF is lost");
    }

    #[test]
    fn models_from_every_id() {
        for (id, m) in [
            (0x10ED, Model::I82599),
            (0x152E, Model::I82599),
            (0x1515, Model::X540),
            (0x1530, Model::X540),
            (0x1565, Model::X550),
            (0x1564, Model::X550),
            (0x15A8, Model::X550EmX),
            (0x15C5, Model::X550EmA),
        ] {
            assert_eq!(Model::from_ids(0x8086, id), Some(m));
            assert!(crate::DRIVER.handles(0x8086, id));
            assert_eq!(m.own_rss(), m >= Model::X550);
        }
        assert_eq!(Model::from_ids(0x8086, 0x10CA), None, "an igb VF");
        assert_eq!(Model::from_ids(0x1af4, 0x10ED), None);
    }
}
