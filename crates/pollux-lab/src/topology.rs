//! What the guest's network looks like: igb PFs, their VFs, and the peer NICs
//! wired to each igb port.
//!
//! A [`Topology`] is plain data. [`Topology::qemu_args`] turns it into QEMU
//! options, and [`crate::Lab::boot`] into a running guest.
//!
//! Layout decisions, and why:
//! - Every NIC (igb PF or peer) sits alone behind its own `pcie-root-port`.
//!   An igb VF's routing ID is the PF's plus 0x80 (+2 per VF), so on the root
//!   bus the VFs land in slots that collide with whatever else QEMU placed
//!   there; behind its own port a PF owns its bus and its VFs are always at
//!   `BB:10.0, BB:10.2, ... BB:11.4`. It also gives each device its own IOMMU
//!   group. VF registers behind a root port were checked to read the same as
//!   on the root bus (VTSTATUS, V2PMAILBOX.RSTD).
//! - Wires are QEMU `hubport` pairs (default), TCP `socket` netdevs on
//!   127.0.0.1, unix-domain `dgram` netdevs, or (for several queue pairs
//!   and a vnet header, which only a tap gives QEMU's virtio-net) `tap`
//!   netdevs on a bridge inside a network namespace the lab creates on the
//!   host for the run and connects to nothing else ([`WireKind::Tap`]).
//!   Never slirp, and never a tap that reaches the host's own network.
//! - Each peer NIC is moved into a guest network namespace (by default one of
//!   its own, named after its netdev id), so traffic between an igb port and
//!   its peer crosses the wire instead of being short-cut by the guest's local
//!   routing table.

use crate::error::{Error, Result};

/// Linux's igb driver enables at most 7 VFs on an 82576 (the eighth pool
/// belongs to the PF); QEMU's model offers 8, but writing 8 to `sriov_numvfs`
/// fails with EINVAL (measured).
pub const MAX_VFS_PER_PF: u8 = 7;

/// How many NICs the lab places behind root ports (slots 0x10..=0x1e, eight
/// functions each).
pub const MAX_NICS: usize = 15 * 8;

/// First root-bus slot used for the lab's root ports. vng's own devices (9p,
/// virtio-serial, watchdog) take the low slots automatically.
const FIRST_ROOT_PORT_SLOT: usize = 0x10;

/// A NIC model QEMU emulates and the guest kernel drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NicModel {
    /// Intel 82576 with SR-IOV (`-device igb`), PF id 8086:10c9, VF id 8086:10ca.
    Igb,
    /// `virtio-net-pci`, driven by the guest's `virtio_net`.
    VirtioNet,
    /// Intel 82574 (`-device e1000e`), driven by the guest's `e1000e`; reports
    /// 1000/full by itself (virtio-net needs `ethtool -s .. speed 1000 duplex full`
    /// before 802.3ad bonding accepts it).
    E1000e,
    /// `virtio-net-pci` made for a userspace driver behind the vIOMMU:
    /// `iommu_platform=on` (without it the device ignores the IOMMU),
    /// QEMU's largest receive queue (1024), and with `packed` QEMU's
    /// `packed=on` (it then offers `VIRTIO_F_RING_PACKED`). The guest's
    /// virtio_net drives it at boot; rebind it with `Lab::bind_driver`.
    VirtioNetVfio {
        /// Offer packed virtqueues.
        packed: bool,
    },
}

impl NicModel {
    /// The QEMU `-device` driver name.
    pub fn qemu_device(self) -> &'static str {
        match self {
            NicModel::Igb => "igb",
            NicModel::VirtioNet | NicModel::VirtioNetVfio { .. } => "virtio-net-pci",
            NicModel::E1000e => "e1000e",
        }
    }

    /// Extra `-device` properties this model gets.
    pub fn qemu_properties(self) -> &'static str {
        match self {
            NicModel::VirtioNetVfio { packed: false } => ",iommu_platform=on,rx_queue_size=1024",
            NicModel::VirtioNetVfio { packed: true } => {
                ",iommu_platform=on,rx_queue_size=1024,packed=on"
            }
            _ => "",
        }
    }

    /// The guest kernel module that drives it.
    pub fn kernel_module(self) -> &'static str {
        match self {
            NicModel::Igb => "igb",
            NicModel::VirtioNet | NicModel::VirtioNetVfio { .. } => "virtio_net",
            NicModel::E1000e => "e1000e",
        }
    }
}

/// How the NICs on one wire are connected inside QEMU. All of them stay on
/// this host: hubs inside QEMU, sockets on 127.0.0.1 or unix sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WireKind {
    /// A QEMU hub: every NIC on the wire sees every frame (`-netdev hubport`).
    /// With [`WireKind::Tap`], the only kinds that take more than two NICs.
    #[default]
    Hub,
    /// A TCP stream between two netdevs on 127.0.0.1 (`-netdev socket,listen=/connect=`).
    Socket,
    /// Unix-domain datagrams between two netdevs (`-netdev dgram`).
    Dgram,
    /// One `tap` netdev per NIC, the taps on one Linux bridge in a network
    /// namespace of the host that the lab creates for the run (QEMU runs
    /// in it) and deletes after; nothing else is in that namespace. The
    /// only wire on which a NIC can have several queue pairs
    /// ([`Peer::queues`]) and QEMU's virtio-net offers checksum offloads
    /// (the tap carries the vnet header). Takes any number of NICs.
    Tap,
}

/// A NIC driven by the guest kernel on the far side of a wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    model: NicModel,
    netns: NetnsChoice,
    /// Queue pairs (virtio-net on a tap wire only).
    queues: u8,
    /// Extra QEMU `-device` properties, each starting with a comma.
    props: String,
}

/// Most queue pairs a lab NIC gets (the guest has 2 vCPUs; 8 leaves room).
pub const MAX_QUEUES: u8 = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
enum NetnsChoice {
    /// A namespace of its own, named after the netdev id.
    Own,
    Named(String),
    Root,
}

impl Peer {
    /// A virtio-net peer.
    pub fn virtio() -> Self {
        Peer {
            model: NicModel::VirtioNet,
            netns: NetnsChoice::Own,
            queues: 1,
            props: String::new(),
        }
    }

    /// A virtio-net NIC made for a userspace driver behind the vIOMMU
    /// ([`NicModel::VirtioNetVfio`]), packed virtqueues offered or not.
    pub fn virtio_vfio(packed: bool) -> Self {
        Peer {
            model: NicModel::VirtioNetVfio { packed },
            netns: NetnsChoice::Own,
            queues: 1,
            props: String::new(),
        }
    }

    /// An e1000e peer.
    pub fn e1000e() -> Self {
        Peer {
            model: NicModel::E1000e,
            netns: NetnsChoice::Own,
            queues: 1,
            props: String::new(),
        }
    }

    /// Puts the peer into the guest network namespace `name` (created if
    /// needed). Peers given the same name share a namespace: that is how a
    /// Linux bond over two peers is built on the far side of two wires.
    pub fn netns(mut self, name: &str) -> Self {
        self.netns = NetnsChoice::Named(name.to_owned());
        self
    }

    /// Leaves the peer in the guest's root namespace (next to the PFs).
    pub fn root_netns(mut self) -> Self {
        self.netns = NetnsChoice::Root;
        self
    }

    /// Gives a virtio-net NIC `n` queue pairs (QEMU `mq=on` with a vector
    /// per queue, its tap `queues=n`); a [`NicModel::VirtioNetVfio`] NIC
    /// also gets `rss=on`, so it offers `VIRTIO_NET_F_RSS`. Only on a
    /// [`WireKind::Tap`] wire: the other netdevs carry one queue.
    pub fn queues(mut self, n: u8) -> Self {
        self.queues = n;
        self
    }

    /// Adds QEMU `-device` properties, e.g. `guest_csum=off` (a kernel
    /// peer that must check every checksum itself).
    pub fn device_props(mut self, props: &str) -> Self {
        self.props.push(',');
        self.props.push_str(props);
        self
    }

    /// The NIC model.
    pub fn model(&self) -> NicModel {
        self.model
    }
}

/// One igb physical function: an 82576 port with its VFs and its wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pf {
    vfs: u8,
    peers: Vec<Peer>,
    wire: WireKind,
    bind_vfio: bool,
    up: bool,
}

impl Pf {
    /// A PF that will get `vfs` VFs at boot (0 for none; at most
    /// [`MAX_VFS_PER_PF`]). Its netdev is brought up; VFs are left unbound.
    pub fn new(vfs: u8) -> Self {
        Pf {
            vfs,
            peers: Vec::new(),
            wire: WireKind::Hub,
            bind_vfio: false,
            up: true,
        }
    }

    /// Wires a peer NIC to this port. A hub wire takes any number of peers;
    /// socket and dgram wires take one.
    pub fn peer(mut self, peer: Peer) -> Self {
        self.peers.push(peer);
        self
    }

    /// Chooses how the port is wired to its peers (default: hub).
    pub fn wire(mut self, wire: WireKind) -> Self {
        self.wire = wire;
        self
    }

    /// Binds every VF of this PF to vfio-pci at boot, so `/dev/vfio/<group>`
    /// exists when the test starts.
    pub fn bind_vfs_to_vfio(mut self, bind: bool) -> Self {
        self.bind_vfio = bind;
        self
    }

    /// Whether the PF netdev is set up at boot (default true). Nothing flows
    /// through a VF until its PF is up.
    pub fn link_up(mut self, up: bool) -> Self {
        self.up = up;
        self
    }

    /// Number of VFs created at boot.
    pub fn vfs(&self) -> u8 {
        self.vfs
    }
}

/// Most VFs a virtio-net PF gets: its VFs sit at functions 1..=7 of the PF's
/// own bus (no ARI behind a `pcie-root-port`).
pub const MAX_VIRTIO_VFS: u8 = 7;

/// A virtio-net PF with SR-IOV VFs (QEMU 10.1 and later: `virtio-net-pci`'s
/// `sriov-pf` property names the PF a VF belongs to).
///
/// The PF and its VFs share one `pcie-root-port`: the VFs at functions
/// 1..=N of its bus, declared before the PF at function 0 (QEMU collects a
/// PF's VFs when the PF is realized). Every function has
/// `iommu_platform=on`, so a function bound to vfio-pci in the guest does
/// its DMA through the vIOMMU (without it the device ignores the IOMMU and
/// the IOVAs a userspace driver programs would be wrong). Each VF is on a
/// wire of its own to a kernel peer NIC (a unix `dgram` pair; on a hub one
/// port that cannot receive stalls every sender, LAB.md); the PF's netdev
/// is alone on a hub of its own.
///
/// VFs are created at boot with `sriov_drivers_autoprobe` off, so they start
/// unbound like the igb VFs; bind them with [`crate::Lab::bind_vfio`] or
/// [`crate::Lab::bind_driver`] (`virtio-pci` for the guest's `virtio_net`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtioPf {
    vfs: u8,
    peer: Peer,
}

impl VirtioPf {
    /// A virtio-net PF offering `vfs` VFs (1..=[`MAX_VIRTIO_VFS`]), all of
    /// them created at boot, each wired to a virtio-net peer in a namespace
    /// of its own.
    pub fn new(vfs: u8) -> Self {
        VirtioPf {
            vfs,
            peer: Peer::virtio(),
        }
    }

    /// The kind of peer NIC on each VF's wire (default: virtio-net in its
    /// own namespace). A named namespace is shared by every VF's peer.
    pub fn peer(mut self, peer: Peer) -> Self {
        self.peer = peer;
        self
    }

    /// Number of VFs.
    pub fn vfs(&self) -> u8 {
        self.vfs
    }
}

/// A PCI function served by `pollux-model` over vfio-user (QEMU 11's
/// `vfio-user-pci`). The lab starts `pollux-model serve <kind>` before
/// QEMU, on a socket in the run's socket folder, with its violation log in
/// the run folder; guest memory becomes a shared memfd so the model can
/// reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFn {
    kind: String,
    args: Vec<String>,
    peer: Option<Peer>,
}

impl ModelFn {
    /// `pollux-model serve <kind>` (e.g. `dma-test`).
    pub fn new(kind: &str) -> Self {
        ModelFn {
            kind: kind.to_owned(),
            args: Vec::new(),
            peer: None,
        }
    }

    /// The host's own test device.
    pub fn dma_test() -> Self {
        Self::new("dma-test")
    }

    /// Extra `pollux-model serve` arguments (e.g. `--device-id`).
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_owned());
        self
    }

    /// Wires the model to a kernel NIC in the guest: the peer's QEMU
    /// `dgram` netdev and the model's `--wire` are the two ends of a unix
    /// datagram pair.
    pub fn peer(mut self, peer: Peer) -> Self {
        self.peer = Some(peer);
        self
    }

    /// Whether the model has a wire to a peer NIC.
    pub fn has_peer(&self) -> bool {
        self.peer.is_some()
    }

    /// The model kind.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The extra arguments.
    pub fn args(&self) -> &[String] {
        &self.args
    }
}

/// A wire that joins peer NICs only, with no igb port on it (for example a
/// kernel-to-kernel reference link).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    wire: WireKind,
    peers: Vec<Peer>,
}

impl Segment {
    /// An empty segment of the given kind.
    pub fn new(wire: WireKind) -> Self {
        Segment {
            wire,
            peers: Vec::new(),
        }
    }

    /// Adds a NIC to the segment.
    pub fn peer(mut self, peer: Peer) -> Self {
        self.peers.push(peer);
        self
    }
}

/// The whole guest: PFs, standalone segments, guest size and kernel options.
///
/// ```
/// use pollux_lab::{Pf, Peer, Topology, WireKind};
/// let topo = Topology::new()
///     .pf(Pf::new(2).peer(Peer::virtio()))
///     .pf(Pf::new(2).peer(Peer::e1000e()).wire(WireKind::Dgram));
/// assert_eq!(topo.pfs().len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pfs: Vec<Pf>,
    virtio_pfs: Vec<VirtioPf>,
    models: Vec<ModelFn>,
    segments: Vec<Segment>,
    memory_mib: u32,
    cpus: u8,
    kernel_args: Vec<String>,
    modules: Vec<String>,
}

impl Default for Topology {
    fn default() -> Self {
        Self::new()
    }
}

impl Topology {
    /// An empty topology: 2 GiB of guest memory, 2 vCPUs.
    pub fn new() -> Self {
        Topology {
            pfs: Vec::new(),
            virtio_pfs: Vec::new(),
            models: Vec::new(),
            segments: Vec::new(),
            memory_mib: 2048,
            cpus: 2,
            kernel_args: Vec::new(),
            modules: Vec::new(),
        }
    }

    /// The lab's default: one PF with two VFs and a virtio-net peer on a hub
    /// wire (what `cargo xtask lab demo` boots).
    pub fn default_demo() -> Self {
        Topology::new().pf(Pf::new(2).peer(Peer::virtio()))
    }

    /// Adds an igb PF; PFs are numbered in the order they are added.
    pub fn pf(mut self, pf: Pf) -> Self {
        self.pfs.push(pf);
        self
    }

    /// Adds a virtio-net PF with SR-IOV VFs; virtio PFs are numbered in the
    /// order they are added, apart from the igb PFs.
    pub fn virtio_pf(mut self, pf: VirtioPf) -> Self {
        self.virtio_pfs.push(pf);
        self
    }

    /// Adds a function served by `pollux-model` over vfio-user; models are
    /// numbered in the order they are added.
    pub fn model(mut self, m: ModelFn) -> Self {
        self.models.push(m);
        self
    }

    /// The modelled functions.
    pub fn models(&self) -> &[ModelFn] {
        &self.models
    }

    /// The virtio-net PFs, in index order.
    pub fn virtio_pfs(&self) -> &[VirtioPf] {
        &self.virtio_pfs
    }

    /// Adds a standalone wire between peer NICs.
    pub fn segment(mut self, segment: Segment) -> Self {
        self.segments.push(segment);
        self
    }

    /// Guest memory in MiB (default 2048).
    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }

    /// Guest vCPUs (default 2; TCG runs each on a host thread).
    pub fn cpus(mut self, cpus: u8) -> Self {
        self.cpus = cpus;
        self
    }

    /// Appends a guest kernel command-line argument.
    pub fn kernel_arg(mut self, arg: &str) -> Self {
        self.kernel_args.push(arg.to_owned());
        self
    }

    /// Loads an extra guest kernel module at boot (e.g. `bonding`, `pktgen`).
    pub fn module(mut self, name: &str) -> Self {
        self.modules.push(name.to_owned());
        self
    }

    /// The PFs, in index order.
    pub fn pfs(&self) -> &[Pf] {
        &self.pfs
    }

    /// Guest memory in MiB.
    pub fn guest_memory_mib(&self) -> u32 {
        self.memory_mib
    }

    /// Guest vCPUs.
    pub fn guest_cpus(&self) -> u8 {
        self.cpus
    }

    /// Extra kernel arguments.
    pub fn kernel_args(&self) -> &[String] {
        &self.kernel_args
    }

    /// Checks the topology for things QEMU or the guest would reject later
    /// with a less clear message.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Topology(m));
        for (i, pf) in self.pfs.iter().enumerate() {
            if pf.vfs > MAX_VFS_PER_PF {
                return bad(format!(
                    "PF {i} asks for {} VFs; Linux igb enables at most {MAX_VFS_PER_PF} on an 82576",
                    pf.vfs
                ));
            }
            if pf.bind_vfio && pf.vfs == 0 {
                return bad(format!("PF {i} binds its VFs to vfio-pci but has no VFs"));
            }
            if !matches!(pf.wire, WireKind::Hub | WireKind::Tap) && pf.peers.len() != 1 {
                return bad(format!(
                    "PF {i}: a {:?} wire joins exactly two NICs, but it has {} peers",
                    pf.wire,
                    pf.peers.len()
                ));
            }
        }
        for (i, pf) in self.virtio_pfs.iter().enumerate() {
            if pf.vfs == 0 || pf.vfs > MAX_VIRTIO_VFS {
                return bad(format!(
                    "virtio PF {i} asks for {} VFs; a virtio-net PF here has 1 to {MAX_VIRTIO_VFS}",
                    pf.vfs
                ));
            }
        }
        for (k, seg) in self.segments.iter().enumerate() {
            if seg.peers.is_empty() {
                return bad(format!("segment {k} has no NICs"));
            }
            if !matches!(seg.wire, WireKind::Hub | WireKind::Tap) && seg.peers.len() != 2 {
                return bad(format!(
                    "segment {k}: a {:?} wire joins exactly two NICs, but it has {}",
                    seg.wire,
                    seg.peers.len()
                ));
            }
        }
        let wire_of = |netdev: &str| {
            self.wires()
                .into_iter()
                .find(|(_, ids)| ids.iter().any(|i| i == netdev))
                .map(|(k, _)| k)
        };
        for nic in self.nics() {
            if nic.queues == 1 {
                continue;
            }
            if nic.queues == 0 || nic.queues > MAX_QUEUES {
                return bad(format!(
                    "{}: {} queue pairs (1 to {MAX_QUEUES})",
                    nic.netdev, nic.queues
                ));
            }
            if !matches!(
                nic.model,
                NicModel::VirtioNet | NicModel::VirtioNetVfio { .. }
            ) {
                return bad(format!(
                    "{}: several queue pairs are for virtio-net NICs",
                    nic.netdev
                ));
            }
            if wire_of(&nic.netdev) != Some(WireKind::Tap) {
                return bad(format!(
                    "{}: {} queue pairs need a tap wire (WireKind::Tap); hub, socket and dgram \
                     netdevs carry one queue",
                    nic.netdev, nic.queues
                ));
            }
        }
        let nics = self.nics().len() + self.models.len();
        if nics > MAX_NICS {
            return bad(format!("{nics} NICs; the lab places at most {MAX_NICS}"));
        }
        if self.memory_mib < 512 {
            return bad(format!(
                "{} MiB of guest memory; the guest needs at least 512",
                self.memory_mib
            ));
        }
        if self.cpus == 0 {
            return bad("0 vCPUs".to_owned());
        }
        for name in self
            .modules
            .iter()
            .chain(&self.kernel_args)
            .chain(
                self.models
                    .iter()
                    .flat_map(|m| std::iter::once(&m.kind).chain(&m.args)),
            )
            .chain(self.nics().iter().filter_map(|n| n.netns.as_ref()))
        {
            if name.is_empty() || !name.chars().all(is_shell_safe) {
                return bad(format!(
                    "{name:?}: module names, kernel arguments and namespace names may only use [A-Za-z0-9._,=:/+-]"
                ));
            }
        }
        Ok(())
    }

    /// Every NIC, in PCI placement order: each igb PF followed by its peers,
    /// then each virtio PF's VFs, the PF itself and the VFs' peers, then the
    /// segments' NICs.
    pub fn nics(&self) -> Vec<NicPlan> {
        let mut out = Vec::new();
        // Root ports handed out so far; the NICs of one virtio PF share one.
        let mut ports = 0usize;
        let mut push = |role: NicRole,
                        model: NicModel,
                        netdev: String,
                        mac: String,
                        netns,
                        sriov: Option<SriovPlace>,
                        peer: Option<&Peer>| {
            let port = match &sriov {
                // A virtio PF's VFs come first and take the port their PF
                // (function 0, next in line) will close.
                Some(SriovPlace { function, .. }) if *function != 0 => ports,
                _ => {
                    ports += 1;
                    ports - 1
                }
            };
            out.push(NicPlan {
                role,
                model,
                device_id: format!("nic-{netdev}"),
                netdev,
                mac,
                port,
                root_port: format!("{:02x}.{}", FIRST_ROOT_PORT_SLOT + port / 8, port % 8),
                netns,
                sriov,
                queues: peer.map_or(1, |p| p.queues),
                props: peer.map(|p| p.props.clone()).unwrap_or_default(),
            });
        };
        for (i, pf) in self.pfs.iter().enumerate() {
            push(
                NicRole::Pf { pf: i },
                NicModel::Igb,
                format!("pf{i}"),
                format!("52:54:00:10:{i:02x}:00"),
                None,
                None,
                None,
            );
            for (j, peer) in pf.peers.iter().enumerate() {
                let netdev = format!("pf{i}-peer{j}");
                let ns = peer.netns.resolve(&netdev);
                push(
                    NicRole::PfPeer { pf: i, peer: j },
                    peer.model,
                    netdev,
                    format!("52:54:00:20:{i:02x}:{j:02x}"),
                    ns,
                    None,
                    Some(peer),
                );
            }
        }
        for (i, pf) in self.virtio_pfs.iter().enumerate() {
            let pf_dev = format!("nic-vpf{i}");
            for j in 0..pf.vfs {
                push(
                    NicRole::VirtioVf {
                        pf: i,
                        vf: j as usize,
                    },
                    NicModel::VirtioNet,
                    format!("vpf{i}-vf{j}"),
                    format!("52:54:00:40:{i:02x}:{:02x}", j + 1),
                    None,
                    Some(SriovPlace {
                        function: j + 1,
                        pf_device: Some(pf_dev.clone()),
                    }),
                    None,
                );
            }
            push(
                NicRole::VirtioPf { pf: i },
                NicModel::VirtioNet,
                format!("vpf{i}"),
                format!("52:54:00:40:{i:02x}:00"),
                None,
                Some(SriovPlace {
                    function: 0,
                    pf_device: None,
                }),
                None,
            );
            for j in 0..pf.vfs {
                let netdev = format!("vpf{i}-vf{j}-peer");
                let ns = pf.peer.netns.resolve(&netdev);
                push(
                    NicRole::VirtioVfPeer {
                        pf: i,
                        vf: j as usize,
                    },
                    pf.peer.model,
                    netdev,
                    format!("52:54:00:50:{i:02x}:{j:02x}"),
                    ns,
                    None,
                    Some(&pf.peer),
                );
            }
        }
        for (i, m) in self.models.iter().enumerate() {
            if let Some(peer) = &m.peer {
                let netdev = format!("model{i}-peer");
                let ns = peer.netns.resolve(&netdev);
                push(
                    NicRole::ModelPeer { model: i },
                    peer.model,
                    netdev,
                    format!("52:54:00:60:00:{i:02x}"),
                    ns,
                    None,
                    Some(peer),
                );
            }
        }
        for (k, seg) in self.segments.iter().enumerate() {
            for (j, peer) in seg.peers.iter().enumerate() {
                let netdev = format!("seg{k}-peer{j}");
                let ns = peer.netns.resolve(&netdev);
                push(
                    NicRole::SegmentPeer {
                        segment: k,
                        peer: j,
                    },
                    peer.model,
                    netdev,
                    format!("52:54:00:30:{k:02x}:{j:02x}"),
                    ns,
                    None,
                    Some(peer),
                );
            }
        }
        out
    }

    /// Root port index and `slot.function` on bus 0 of each modelled
    /// function: after every NIC's port, one port each.
    pub fn model_ports(&self) -> Vec<(usize, String)> {
        let first = self.nics().last().map_or(0, |n| n.port + 1);
        (0..self.models.len())
            .map(|i| {
                let p = first + i;
                (p, format!("{:02x}.{}", FIRST_ROOT_PORT_SLOT + p / 8, p % 8))
            })
            .collect()
    }

    /// The wires: their kind and the netdev ids on each, one per igb PF, one
    /// per virtio PF and per virtio VF, one per segment.
    fn wires(&self) -> Vec<(WireKind, Vec<String>)> {
        let mut wires = Vec::new();
        for (i, pf) in self.pfs.iter().enumerate() {
            let mut ids = vec![format!("pf{i}")];
            ids.extend((0..pf.peers.len()).map(|j| format!("pf{i}-peer{j}")));
            wires.push((pf.wire, ids));
        }
        for (i, pf) in self.virtio_pfs.iter().enumerate() {
            wires.push((WireKind::Hub, vec![format!("vpf{i}")]));
            for j in 0..pf.vfs {
                wires.push((
                    WireKind::Dgram,
                    vec![format!("vpf{i}-vf{j}"), format!("vpf{i}-vf{j}-peer")],
                ));
            }
        }
        for (k, seg) in self.segments.iter().enumerate() {
            let ids = (0..seg.peers.len())
                .map(|j| format!("seg{k}-peer{j}"))
                .collect();
            wires.push((seg.wire, ids));
        }
        wires
    }

    /// The bridges and taps the host's run namespace needs, one entry per
    /// [`WireKind::Tap`] wire: (bridge, [(tap, queue pairs)]). Empty when
    /// no wire is a tap, and then QEMU runs in the host's own namespace.
    pub fn host_taps(&self) -> Vec<(String, Vec<(String, u8)>)> {
        let nics = self.nics();
        self.wires()
            .into_iter()
            .enumerate()
            .filter(|(_, (kind, _))| *kind == WireKind::Tap)
            .map(|(w, (_, ids))| {
                let taps = ids
                    .iter()
                    .enumerate()
                    .map(|(j, id)| {
                        let q = nics
                            .iter()
                            .find(|n| &n.netdev == id)
                            .map_or(1, |n| n.queues);
                        (tap_name(w, j), q)
                    })
                    .collect();
                (bridge_name(w), taps)
            })
            .collect()
    }

    /// Guest kernel modules to load at boot: the drivers of every NIC in the
    /// topology, vfio-pci with its IOMMU backend, and any extra modules.
    pub fn guest_modules(&self) -> Vec<String> {
        let mut mods: Vec<String> = vec![
            "igb".into(),
            "vfio-pci".into(),
            // modprobe vfio-pci does not pull this in (LAB.md).
            "vfio_iommu_type1".into(),
        ];
        for nic in self.nics() {
            let m = nic.model.kernel_module().to_owned();
            if !mods.contains(&m) {
                mods.push(m);
            }
        }
        for m in &self.modules {
            if !mods.contains(m) {
                mods.push(m.clone());
            }
        }
        mods
    }

    /// QEMU options for the devices and wires, plus the fixed machine options
    /// that the igb VFs need. `sock_dir` holds unix sockets of dgram wires and
    /// must be a short path; `free_port` yields a free TCP port on 127.0.0.1
    /// for each socket wire.
    pub fn qemu_args(
        &self,
        sock_dir: &str,
        free_port: &mut dyn FnMut() -> Result<u16>,
    ) -> Result<Vec<String>> {
        self.validate()?;
        let mut a: Vec<String> = Vec::new();
        let mut opt = |k: &str, v: String| {
            a.push(k.to_owned());
            a.push(v);
        };
        // Interrupt remapping: without it VFIO_SET_IOMMU fails with EPERM
        // (type1 refuses unsafe interrupts), which needs the split irqchip.
        opt("-machine", "kernel-irqchip=split".into());
        opt("-device", "intel-iommu,intremap=on,caching-mode=on".into());

        let nics = self.nics();
        let mut last_port = None;
        for nic in &nics {
            let n = nic.port;
            let (slot, func) = (FIRST_ROOT_PORT_SLOT + n / 8, n % 8);
            // One port per NIC, except that a virtio PF's VFs share their
            // PF's; NICs on one port are consecutive.
            if last_port != Some(n) {
                last_port = Some(n);
                let multi = if func == 0 { ",multifunction=on" } else { "" };
                opt(
                    "-device",
                    format!(
                        "pcie-root-port,id=rp{n},bus=pcie.0,chassis={},addr={slot:#04x}.{func}{multi}",
                        n + 1
                    ),
                );
            }
            let mut dev = format!(
                "{},id={},netdev={},mac={},bus=rp{n}{}",
                nic.model.qemu_device(),
                nic.device_id,
                nic.netdev,
                nic.mac,
                nic.model.qemu_properties()
            );
            if nic.queues > 1 {
                // A vector per queue, the control queue and the
                // configuration (QEMU's own rule for virtio-net-pci).
                dev.push_str(&format!(",mq=on,vectors={}", 2 * nic.queues as u32 + 2));
                if matches!(nic.model, NicModel::VirtioNetVfio { .. }) {
                    dev.push_str(",rss=on");
                }
            }
            dev.push_str(&nic.props);
            if let Some(place) = &nic.sriov {
                dev.push_str(&format!(",addr=0x0.{:#x}", place.function));
                if let Some(pf) = &place.pf_device {
                    // A VF's receive queue gets QEMU's largest size (1024,
                    // VIRTQUEUE_MAX_SIZE) so a userspace poller that the host
                    // keeps off the CPU for a while does not run dry.
                    dev.push_str(&format!(",sriov-pf={pf},rx_queue_size=1024"));
                }
                dev.push_str(",iommu_platform=on");
            }
            opt("-device", dev);
        }

        // Root ports for the modelled functions; their `vfio-user-pci`
        // devices are JSON (a socket address is a struct) and are added by
        // the lab, which owns the sockets.
        for (n, _) in self.model_ports() {
            let (slot, func) = (FIRST_ROOT_PORT_SLOT + n / 8, n % 8);
            let multi = if func == 0 { ",multifunction=on" } else { "" };
            opt(
                "-device",
                format!(
                    "pcie-root-port,id=rp{n},bus=pcie.0,chassis={},addr={slot:#04x}.{func}{multi}",
                    n + 1
                ),
            );
        }
        if !self.models.is_empty() {
            // Guest RAM shared with the model processes (they DMA into it
            // through the memfd QEMU passes with each DMA_MAP).
            opt(
                "-object",
                format!(
                    "memory-backend-memfd,id=pollux-mem,size={}M,share=on",
                    self.memory_mib
                ),
            );
            opt("-machine", "memory-backend=pollux-mem".into());
        }

        // A model's peer: one end of a unix datagram pair whose other end
        // is the model's own socket (`pollux-model --wire unix:...`).
        for (i, m) in self.models.iter().enumerate() {
            if m.peer.is_some() {
                let (me, model) = model_wire_paths(sock_dir, i);
                opt(
                    "-netdev",
                    format!(
                        "dgram,id=model{i}-peer,local.type=unix,local.path={me},remote.type=unix,remote.path={model}"
                    ),
                );
            }
        }

        let wires = self.wires();
        for (hub, (kind, ids)) in wires.iter().enumerate() {
            match kind {
                WireKind::Hub => {
                    for id in ids {
                        opt("-netdev", format!("hubport,id={id},hubid={hub}"));
                    }
                }
                WireKind::Socket => {
                    let port = free_port()?;
                    opt(
                        "-netdev",
                        format!("socket,id={},listen=127.0.0.1:{port}", ids[0]),
                    );
                    opt(
                        "-netdev",
                        format!("socket,id={},connect=127.0.0.1:{port}", ids[1]),
                    );
                }
                WireKind::Tap => {
                    for (j, id) in ids.iter().enumerate() {
                        let queues = nics
                            .iter()
                            .find(|n| &n.netdev == id)
                            .map_or(1, |n| n.queues);
                        opt(
                            "-netdev",
                            format!(
                                "tap,id={id},ifname={},script=no,downscript=no,vhost=off,queues={queues}",
                                tap_name(hub, j)
                            ),
                        );
                    }
                }
                WireKind::Dgram => {
                    let path = |id: &str| format!("{sock_dir}/{id}.dgram");
                    for (me, other) in [(&ids[0], &ids[1]), (&ids[1], &ids[0])] {
                        opt(
                            "-netdev",
                            format!(
                                "dgram,id={me},local.type=unix,local.path={},remote.type=unix,remote.path={}",
                                path(me),
                                path(other)
                            ),
                        );
                    }
                }
            }
        }
        for arg in &a {
            if !arg.chars().all(is_shell_safe) {
                return Err(Error::Topology(format!(
                    "QEMU option {arg:?} has characters that vng's shell would split; use paths made of [A-Za-z0-9._,=:/+-]"
                )));
            }
        }
        Ok(a)
    }

    pub(crate) fn pf_spec(&self, i: usize) -> &Pf {
        &self.pfs[i]
    }

    pub(crate) fn pf_bind_vfio(&self, i: usize) -> bool {
        self.pfs[i].bind_vfio
    }

    pub(crate) fn pf_up(&self, i: usize) -> bool {
        self.pfs[i].up
    }
}

impl NetnsChoice {
    fn resolve(&self, netdev: &str) -> Option<String> {
        match self {
            NetnsChoice::Own => Some(netdev.to_owned()),
            NetnsChoice::Named(n) => Some(n.clone()),
            NetnsChoice::Root => None,
        }
    }
}

/// The host tap of NIC `j` on wire `w` (short: interface names have at
/// most 15 bytes; unique inside the run's own namespace).
pub fn tap_name(w: usize, j: usize) -> String {
    format!("plt{w}n{j}")
}

/// The bridge of wire `w` in the run's host namespace.
pub fn bridge_name(w: usize) -> String {
    format!("plbr{w}")
}

/// The unix datagram sockets of model `i`'s wire: (the peer NIC's netdev
/// end, the model's end).
pub fn model_wire_paths(sock_dir: &str, i: usize) -> (String, String) {
    (
        format!("{sock_dir}/model{i}-peer.dgram"),
        format!("{sock_dir}/model{i}-wire.dgram"),
    )
}

/// Characters that pass through vng's `/bin/sh` command line unquoted.
pub(crate) fn is_shell_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._,=:/+-".contains(c)
}

/// Which part of the topology a NIC plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NicRole {
    /// The igb PF with this index.
    Pf {
        /// PF index.
        pf: usize,
    },
    /// Peer `peer` on PF `pf`'s wire.
    PfPeer {
        /// PF index.
        pf: usize,
        /// Peer index on that wire.
        peer: usize,
    },
    /// The virtio-net PF with this index.
    VirtioPf {
        /// Virtio PF index.
        pf: usize,
    },
    /// VF `vf` of virtio PF `pf` (absent until the guest enables its VFs).
    VirtioVf {
        /// Virtio PF index.
        pf: usize,
        /// VF number.
        vf: usize,
    },
    /// The peer on the wire of VF `vf` of virtio PF `pf`.
    VirtioVfPeer {
        /// Virtio PF index.
        pf: usize,
        /// VF number.
        vf: usize,
    },
    /// The kernel NIC on model `model`'s wire.
    ModelPeer {
        /// Model index.
        model: usize,
    },
    /// NIC `peer` of standalone segment `segment`.
    SegmentPeer {
        /// Segment index.
        segment: usize,
        /// NIC index on that segment.
        peer: usize,
    },
}

/// Where and how one NIC is placed: the host-side plan, before boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicPlan {
    /// Its role.
    pub role: NicRole,
    /// Its model.
    pub model: NicModel,
    /// QEMU netdev id: the name to give [`crate::Lab::set_link`].
    pub netdev: String,
    /// QEMU device id.
    pub device_id: String,
    /// MAC address QEMU gives the NIC.
    pub mac: String,
    /// Index of its root port (`rp<port>` in QEMU).
    pub port: usize,
    /// `slot.function` of its root port on bus 0.
    pub root_port: String,
    /// Guest network namespace the NIC is moved into (None: root namespace).
    pub netns: Option<String>,
    /// Where a virtio SR-IOV function sits on its port's bus (None: alone
    /// at function 0, no SR-IOV role).
    pub sriov: Option<SriovPlace>,
    /// Queue pairs ([`Peer::queues`]).
    pub queues: u8,
    /// Extra `-device` properties ([`Peer::device_props`]), comma first.
    pub props: String,
}

impl NicPlan {
    /// Whether the guest sees this NIC at boot (a VF only appears once its
    /// PF's `sriov_numvfs` is written).
    pub fn present_at_boot(&self) -> bool {
        !matches!(self.role, NicRole::VirtioVf { .. })
    }
}

/// The place of one function of a virtio-net SR-IOV PF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SriovPlace {
    /// PCI function on the root port's bus (0 for the PF).
    pub function: u8,
    /// QEMU device id of the PF (None for the PF itself).
    pub pf_device: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_port() -> Result<u16> {
        Err(Error::Topology("no ports in this test".into()))
    }

    #[test]
    fn two_pfs_with_virtio_peers_make_hub_wires_and_root_ports() {
        let topo = Topology::new()
            .pf(Pf::new(2).peer(Peer::virtio()))
            .pf(Pf::new(3).peer(Peer::virtio()));
        let args = topo.qemu_args("/tmp/s", &mut no_port).unwrap();
        let joined = args.join(" ");
        assert!(joined.contains("-device igb,id=nic-pf0,netdev=pf0,mac=52:54:00:10:00:00,bus=rp0"));
        assert!(joined.contains("-device virtio-net-pci,id=nic-pf0-peer0,netdev=pf0-peer0,mac=52:54:00:20:00:00,bus=rp1"));
        assert!(joined.contains("-device igb,id=nic-pf1,netdev=pf1,mac=52:54:00:10:01:00,bus=rp2"));
        assert!(
            joined.contains("-netdev hubport,id=pf0,hubid=0 -netdev hubport,id=pf0-peer0,hubid=0")
        );
        assert!(
            joined.contains("-netdev hubport,id=pf1,hubid=1 -netdev hubport,id=pf1-peer0,hubid=1")
        );
        assert!(joined
            .contains("pcie-root-port,id=rp0,bus=pcie.0,chassis=1,addr=0x10.0,multifunction=on"));
        assert!(joined.contains("pcie-root-port,id=rp3,bus=pcie.0,chassis=4,addr=0x10.3 "));
        assert!(!joined.contains("pci-hole64-size"));
        assert!(!joined.contains("user,"), "no slirp netdevs");
        assert!(!joined.contains("tap"), "no tap netdevs");
    }

    #[test]
    fn tap_wires_carry_queue_pairs_and_are_planned_for_the_host_namespace() {
        let topo = Topology::new().pf(Pf::new(1).peer(Peer::virtio())).segment(
            Segment::new(WireKind::Tap)
                .peer(Peer::virtio_vfio(false).root_netns().queues(2))
                .peer(Peer::virtio().queues(2).device_props("guest_csum=off")),
        );
        let args = topo.qemu_args("/tmp/s", &mut no_port).unwrap().join(" ");
        assert!(args.contains("-device virtio-net-pci,id=nic-seg0-peer0,netdev=seg0-peer0,mac=52:54:00:30:00:00,bus=rp2,iommu_platform=on,rx_queue_size=1024,mq=on,vectors=6,rss=on "), "{args}");
        assert!(args.contains("-device virtio-net-pci,id=nic-seg0-peer1,netdev=seg0-peer1,mac=52:54:00:30:00:01,bus=rp3,mq=on,vectors=6,guest_csum=off "), "{args}");
        // Wire 0 is the PF's hub; the segment is wire 1.
        assert!(args.contains(
            "-netdev tap,id=seg0-peer0,ifname=plt1n0,script=no,downscript=no,vhost=off,queues=2"
        ));
        assert!(args.contains(
            "-netdev tap,id=seg0-peer1,ifname=plt1n1,script=no,downscript=no,vhost=off,queues=2"
        ));
        assert_eq!(
            topo.host_taps(),
            vec![(
                "plbr1".to_owned(),
                vec![("plt1n0".to_owned(), 2), ("plt1n1".to_owned(), 2)]
            )]
        );
        assert!(Topology::new().pf(Pf::new(1)).host_taps().is_empty());
    }

    #[test]
    fn queue_pairs_need_a_tap_wire_and_a_virtio_nic() {
        let on = |wire, peer: Peer| {
            Topology::new()
                .segment(Segment::new(wire).peer(peer).peer(Peer::virtio()))
                .validate()
        };
        let e = on(WireKind::Dgram, Peer::virtio().queues(2)).unwrap_err();
        assert!(e.to_string().contains("need a tap wire"), "{e}");
        let e = on(WireKind::Tap, Peer::e1000e().queues(2)).unwrap_err();
        assert!(e.to_string().contains("virtio-net"), "{e}");
        let e = on(WireKind::Tap, Peer::virtio().queues(MAX_QUEUES + 1)).unwrap_err();
        assert!(e.to_string().contains("queue pairs"), "{e}");
        on(WireKind::Tap, Peer::virtio().queues(2)).unwrap();
        // A tap wire takes three NICs too.
        Topology::new()
            .segment(
                Segment::new(WireKind::Tap)
                    .peer(Peer::virtio())
                    .peer(Peer::virtio())
                    .peer(Peer::virtio()),
            )
            .validate()
            .unwrap();
    }

    #[test]
    fn virtio_vfs_share_their_pf_port_come_first_and_get_wires_of_their_own() {
        let topo = Topology::new()
            .pf(Pf::new(1).peer(Peer::virtio()))
            .virtio_pf(VirtioPf::new(2));
        let nics = topo.nics();
        let roles: Vec<_> = nics.iter().map(|n| (n.netdev.as_str(), n.port)).collect();
        assert_eq!(
            roles,
            vec![
                ("pf0", 0),
                ("pf0-peer0", 1),
                ("vpf0-vf0", 2),
                ("vpf0-vf1", 2),
                ("vpf0", 2),
                ("vpf0-vf0-peer", 3),
                ("vpf0-vf1-peer", 4)
            ]
        );
        assert!(!nics[2].present_at_boot() && nics[4].present_at_boot());
        let args = topo.qemu_args("/tmp/s", &mut no_port).unwrap().join(" ");
        // One root port for the PF and its VFs, declared once.
        assert_eq!(args.matches("pcie-root-port,id=rp2,").count(), 1);
        assert!(!args.contains("id=rp5"));
        let vf0 = args.find("id=nic-vpf0-vf0,").unwrap();
        let pf = args.find("id=nic-vpf0,").unwrap();
        assert!(vf0 < pf, "VFs are declared before their PF: {args}");
        assert!(args.contains("virtio-net-pci,id=nic-vpf0-vf1,netdev=vpf0-vf1,mac=52:54:00:40:00:02,bus=rp2,addr=0x0.0x2,sriov-pf=nic-vpf0,rx_queue_size=1024,iommu_platform=on"));
        assert!(args.contains("virtio-net-pci,id=nic-vpf0,netdev=vpf0,mac=52:54:00:40:00:00,bus=rp2,addr=0x0.0x0,iommu_platform=on"));
        assert!(args.contains("dgram,id=vpf0-vf1,local.type=unix,local.path=/tmp/s/vpf0-vf1.dgram,remote.type=unix,remote.path=/tmp/s/vpf0-vf1-peer.dgram"));
        assert!(args.contains("-netdev hubport,id=vpf0,hubid=1"));
        assert!(!args.contains("tap"), "no tap netdevs");
        let e = Topology::new()
            .virtio_pf(VirtioPf::new(0))
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("1 to 7"), "{e}");
    }

    #[test]
    fn models_get_a_port_after_the_nics_shared_memory_and_a_wire_to_their_peer() {
        let topo = Topology::new()
            .pf(Pf::new(1).peer(Peer::virtio()))
            .model(ModelFn::dma_test().peer(Peer::virtio()))
            .model(ModelFn::dma_test());
        // pf0, pf0-peer0, model0-peer: ports 0..=2; the models 3 and 4.
        assert_eq!(
            topo.model_ports(),
            vec![(3, "10.3".to_owned()), (4, "10.4".to_owned())]
        );
        let args = topo.qemu_args("/tmp/s", &mut no_port).unwrap().join(" ");
        assert!(args.contains("pcie-root-port,id=rp3,bus=pcie.0,chassis=4,addr=0x10.3"));
        assert!(args.contains("pcie-root-port,id=rp4,"));
        assert!(args.contains("-object memory-backend-memfd,id=pollux-mem,size=2048M,share=on -machine memory-backend=pollux-mem"));
        assert!(args.contains("-netdev dgram,id=model0-peer,local.type=unix,local.path=/tmp/s/model0-peer.dgram,remote.type=unix,remote.path=/tmp/s/model0-wire.dgram"));
        assert!(!args.contains("model1-peer"));
        assert!(!Topology::new()
            .pf(Pf::new(1))
            .qemu_args("/tmp/s", &mut no_port)
            .unwrap()
            .join(" ")
            .contains("memory-backend"));
        let e = Topology::new()
            .model(ModelFn::new("dma-test; reboot"))
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("may only use"), "{e}");
    }

    #[test]
    fn ninth_nic_moves_to_the_next_slot() {
        let mut topo = Topology::new();
        for _ in 0..5 {
            topo = topo.pf(Pf::new(0).peer(Peer::e1000e()));
        }
        let nics = topo.nics();
        assert_eq!(nics[7].root_port, "10.7");
        assert_eq!(nics[8].root_port, "11.0");
        let args = topo.qemu_args("/tmp/s", &mut no_port).unwrap().join(" ");
        assert!(args.contains("addr=0x11.0,multifunction=on"));
        assert!(args.contains("-device e1000e,id=nic-pf4-peer0"));
    }

    #[test]
    fn socket_and_dgram_wires_stay_on_this_host() {
        let topo = Topology::new()
            .pf(Pf::new(1).peer(Peer::virtio()).wire(WireKind::Socket))
            .pf(Pf::new(1).peer(Peer::virtio()).wire(WireKind::Dgram));
        let mut port = 40000;
        let args = topo
            .qemu_args("/tmp/s", &mut || {
                port += 1;
                Ok(port)
            })
            .unwrap()
            .join(" ");
        assert!(args.contains("-netdev socket,id=pf0,listen=127.0.0.1:40001"));
        assert!(args.contains("-netdev socket,id=pf0-peer0,connect=127.0.0.1:40001"));
        assert!(args.contains("dgram,id=pf1,local.type=unix,local.path=/tmp/s/pf1.dgram,remote.type=unix,remote.path=/tmp/s/pf1-peer0.dgram"));
        assert!(args.contains("dgram,id=pf1-peer0,local.type=unix,local.path=/tmp/s/pf1-peer0.dgram,remote.type=unix,remote.path=/tmp/s/pf1.dgram"));
    }

    #[test]
    fn peers_get_their_own_namespace_unless_told_otherwise() {
        let topo = Topology::new()
            .pf(Pf::new(0).peer(Peer::virtio()))
            .pf(Pf::new(0).peer(Peer::virtio().netns("far")))
            .pf(Pf::new(0).peer(Peer::virtio().root_netns()));
        let ns: Vec<_> = topo.nics().into_iter().map(|n| n.netns).collect();
        assert_eq!(
            ns,
            vec![
                None,
                Some("pf0-peer0".to_owned()),
                None,
                Some("far".to_owned()),
                None,
                None
            ]
        );
    }

    #[test]
    fn bad_topologies_are_refused_with_a_reason() {
        let e = Topology::new().pf(Pf::new(8)).validate().unwrap_err();
        assert!(e.to_string().contains("at most 7"), "{e}");
        let e = Topology::new()
            .pf(Pf::new(1).wire(WireKind::Socket))
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("exactly two NICs"), "{e}");
        let e = Topology::new()
            .pf(Pf::new(0).bind_vfs_to_vfio(true))
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("no VFs"), "{e}");
        let e = Topology::new()
            .module("bonding; reboot")
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("may only use"), "{e}");
        let e = Topology::new()
            .segment(Segment::new(WireKind::Hub))
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("no NICs"), "{e}");
    }

    #[test]
    fn modules_cover_every_nic_model_once() {
        let topo = Topology::new()
            .pf(Pf::new(0).peer(Peer::virtio()).peer(Peer::e1000e()))
            .pf(Pf::new(0).peer(Peer::virtio()))
            .module("bonding");
        assert_eq!(
            topo.guest_modules(),
            vec![
                "igb",
                "vfio-pci",
                "vfio_iommu_type1",
                "virtio_net",
                "e1000e",
                "bonding"
            ]
        );
    }
}
