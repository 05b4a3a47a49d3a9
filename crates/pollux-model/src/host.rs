//! The vfio-user side: a [`Model`] with its config space, DMA maps and
//! MSI-X vectors, behind rust-vmm's `vfio_user::Server` (which owns the
//! socket, the message framing and the file descriptors).
//!
//! Every BAR access is trapped (one message each): no region is offered for
//! mmap, so the model sees every register write in order. What the client
//! gets wrong (an access outside a region, a DMA map without a file) is
//! refused with an error reply and logged as a violation.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use vfio_bindings::bindings::vfio::{
    vfio_region_info, VFIO_IRQ_INFO_EVENTFD, VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_MSIX_IRQ_INDEX,
    VFIO_PCI_NUM_IRQS, VFIO_PCI_NUM_REGIONS, VFIO_REGION_INFO_FLAG_READ,
    VFIO_REGION_INFO_FLAG_WRITE,
};
use vfio_user::{DmaMapFlags, DmaUnmapFlags, IrqInfo, Server, ServerBackend, ServerRegion};

use crate::iova::IovaMap;
use crate::irq::Irqs;
use crate::model::{Ctx, Model, ViolationLog, WireStats};
use crate::pci::{ConfigEvent, ConfigSpace, CONFIG_SIZE};
use crate::wire::{Wire, WireSpec, MAX_FRAME};

/// Runs `$body` with `$ctx` a [`Ctx`] over `$h`'s state (split borrows:
/// the model is borrowed apart from what the context holds).
macro_rules! with_ctx {
    ($h:expr, $ctx:ident, $body:expr) => {{
        let mut $ctx = Ctx {
            dma: &$h.dma,
            irqs: &mut $h.irqs,
            config: &$h.config,
            log: &mut $h.log,
            wire: $h.wire.as_ref(),
            link_up: $h.link_up,
            stats: &mut $h.stats,
        };
        $body
    }};
}

/// A model and the state the host keeps for it.
#[derive(Debug)]
pub struct Host<M: Model> {
    model: M,
    config: ConfigSpace,
    dma: IovaMap,
    irqs: Irqs,
    log: ViolationLog,
    wire: Option<Wire>,
    link_up: bool,
    stats: WireStats,
}

impl<M: Model> Host<M> {
    /// Wraps `model`; violations go to `log`.
    pub fn new(model: M, log: ViolationLog) -> Self {
        let spec = model.spec();
        Host {
            config: ConfigSpace::new(&spec),
            irqs: Irqs::new(spec.msix_vectors as usize),
            dma: IovaMap::new(),
            model,
            log,
            wire: None,
            link_up: true,
            stats: WireStats::default(),
        }
    }

    /// Gives the model a wire (frames to and from the far end).
    pub fn set_wire(&mut self, wire: Wire) {
        self.wire = Some(wire);
    }

    /// Sets the link state and tells the model.
    pub fn set_link(&mut self, up: bool) {
        self.link_up = up;
        with_ctx!(self, ctx, self.model.link_changed(&mut ctx, up));
    }

    /// Wire counters.
    pub fn stats(&self) -> WireStats {
        self.stats
    }

    /// A frame from the far end: to the model while the link is up,
    /// counted as dropped otherwise.
    pub fn frame_in(&mut self, frame: &[u8]) {
        self.stats.frames_in += 1;
        if !self.link_up {
            self.stats.rx_dropped += 1;
            return;
        }
        let taken = with_ctx!(self, ctx, self.model.frame_in(&mut ctx, frame));
        if !taken {
            self.stats.rx_dropped += 1;
        }
    }

    /// One control-channel command, I/O-free: the reply's lines, the last
    /// one `ok` or `error: ...`.
    ///
    /// - `counters`: `name value` lines (wire counters, violations, the
    ///   model's own);
    /// - `link up|down`;
    /// - `pf EVENT`: something the PF side does (e.g. `pf reset`);
    /// - `violations`: the violation log, one line each.
    pub fn control(&mut self, line: &str) -> String {
        let words: Vec<&str> = line.split_whitespace().collect();
        let mut out = String::new();
        let r: Result<(), String> = match words.as_slice() {
            ["counters"] => {
                let s = self.stats;
                let mut c: Vec<(String, u64)> = vec![
                    ("frames_in".into(), s.frames_in),
                    ("frames_out".into(), s.frames_out),
                    ("rx_dropped".into(), s.rx_dropped),
                    ("tx_dropped".into(), s.tx_dropped),
                    ("violations".into(), self.log.total()),
                    ("link_up".into(), self.link_up as u64),
                ];
                c.extend(self.model.counters());
                for (k, v) in c {
                    out.push_str(&format!("{k} {v}\n"));
                }
                Ok(())
            }
            ["link", "up"] => {
                self.set_link(true);
                Ok(())
            }
            ["link", "down"] => {
                self.set_link(false);
                Ok(())
            }
            ["pf", event] => with_ctx!(self, ctx, self.model.pf_event(&mut ctx, event)),
            ["violations"] => {
                for v in self.log.entries() {
                    out.push_str(&format!("{v}\n"));
                }
                Ok(())
            }
            _ => Err(format!(
                "unknown command {:?}; commands: counters, link up|down, pf EVENT, violations",
                line.trim()
            )),
        };
        match r {
            Ok(()) => out.push_str("ok\n"),
            Err(e) => out.push_str(&format!("error: {e}\n")),
        }
        out
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The violation log.
    pub fn log(&self) -> &ViolationLog {
        &self.log
    }

    /// The DMA maps.
    pub fn dma(&self) -> &IovaMap {
        &self.dma
    }

    /// The MSI-X vectors.
    pub fn irqs(&self) -> &Irqs {
        &self.irqs
    }

    /// The regions to announce: config space (4 KiB) and each BAR, all
    /// read-write and trapped.
    pub fn regions(&self) -> Vec<ServerRegion> {
        (0..VFIO_PCI_NUM_REGIONS)
            .map(|index| {
                let size = if index == VFIO_PCI_CONFIG_REGION_INDEX {
                    CONFIG_SIZE as u64
                } else {
                    self.bar_size(index)
                };
                let flags = if size > 0 {
                    VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE
                } else {
                    0
                };
                ServerRegion {
                    region_info: vfio_region_info {
                        argsz: std::mem::size_of::<vfio_region_info>() as u32,
                        index,
                        size,
                        flags,
                        ..Default::default()
                    },
                    sparse_areas: Vec::new(),
                    mmap_fd: None,
                }
            })
            .collect()
    }

    /// The interrupts to announce: MSI-X only (a VF has no INTx).
    pub fn irq_infos(&self) -> Vec<IrqInfo> {
        (0..VFIO_PCI_NUM_IRQS)
            .map(|index| {
                let (count, flags) = if index == VFIO_PCI_MSIX_IRQ_INDEX {
                    (self.irqs.count() as u32, VFIO_IRQ_INFO_EVENTFD)
                } else {
                    (0, 0)
                };
                IrqInfo {
                    index,
                    flags,
                    count,
                }
            })
            .collect()
    }

    fn bar_size(&self, index: u32) -> u64 {
        self.config
            .bars()
            .iter()
            .find(|b| b.index as u32 == index)
            .map_or(0, |b| b.size)
    }

    fn reset_all(&mut self) {
        self.config.reset();
        self.irqs.reset();
        self.model.reset();
    }

    /// Checks a BAR access against the BAR's size; logs and refuses one
    /// that runs outside it.
    fn bar_access(&mut self, region: u32, offset: u64, len: usize) -> io::Result<u8> {
        let size = self.bar_size(region);
        let inside = offset
            .checked_add(len as u64)
            .is_some_and(|end| size > 0 && end <= size);
        if !inside {
            self.log.log(
                format!("region {region} access of {len} bytes at {offset:#x}"),
                format!("outside the region's {size} bytes"),
            );
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("region {region}: {len} bytes at {offset:#x} outside its {size} bytes"),
            ));
        }
        Ok(region as u8)
    }
}

impl<M: Model> ServerBackend for Host<M> {
    fn region_read(&mut self, region: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
        if region == VFIO_PCI_CONFIG_REGION_INDEX {
            self.config.read(offset, data);
            return Ok(());
        }
        let bar = self.bar_access(region, offset, data.len())?;
        with_ctx!(self, ctx, self.model.bar_read(&mut ctx, bar, offset, data));
        Ok(())
    }

    fn region_write(&mut self, region: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        if region == VFIO_PCI_CONFIG_REGION_INDEX {
            if self.config.write(offset, data) == Some(ConfigEvent::Flr) {
                tracing::info!("function level reset");
                self.reset_all();
            }
            return Ok(());
        }
        let bar = self.bar_access(region, offset, data.len())?;
        with_ctx!(self, ctx, self.model.bar_write(&mut ctx, bar, offset, data));
        Ok(())
    }

    fn dma_map(
        &mut self,
        flags: DmaMapFlags,
        offset: u64,
        address: u64,
        size: u64,
        fd: Option<File>,
    ) -> io::Result<()> {
        let Some(fd) = fd else {
            // Memory the client cannot share (QEMU sends the BIOS and
            // option ROM ranges this way) and would serve through
            // DMA_READ/DMA_WRITE messages. Allowed by the protocol, so not
            // a violation; this host does not implement those messages, so
            // a DMA there is refused as unmapped (and logged then).
            tracing::debug!(
                address,
                size,
                "DMA_MAP without a file: not reachable by DMA"
            );
            return Ok(());
        };
        let (read, write) = (
            flags.contains(DmaMapFlags::READ),
            flags.contains(DmaMapFlags::WRITE),
        );
        self.dma
            .map(address, size, &fd, offset, read, write)
            .map_err(|e| {
                self.log.log("DMA_MAP", e.to_string());
                io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
            })
    }

    fn dma_unmap(&mut self, flags: DmaUnmapFlags, address: u64, size: u64) -> io::Result<()> {
        if flags.contains(DmaUnmapFlags::UNMAP_ALL) {
            self.dma.unmap_all();
            return Ok(());
        }
        self.dma.unmap(address, size).map(drop).map_err(|e| {
            self.log.log("DMA_UNMAP", e.to_string());
            io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
        })
    }

    fn reset(&mut self) -> io::Result<()> {
        tracing::info!("device reset");
        self.reset_all();
        Ok(())
    }

    fn set_irqs(
        &mut self,
        index: u32,
        flags: u32,
        start: u32,
        count: u32,
        fds: Vec<File>,
    ) -> io::Result<()> {
        if index != VFIO_PCI_MSIX_IRQ_INDEX {
            if count == 0 {
                return Ok(());
            }
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("IRQ index {index}: this function has MSI-X only"),
            ));
        }
        self.irqs
            .set_irqs(flags, start, count, fds)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
    }
}

/// How to serve a model besides its vfio-user socket.
#[derive(Debug, Clone, Default)]
pub struct ServeOpts {
    /// Its wire, if any.
    pub wire: Option<WireSpec>,
    /// Link down at start (default up).
    pub link_down: bool,
    /// A unix stream socket for the control channel.
    pub control: Option<PathBuf>,
}

/// The host shared by the vfio-user thread, the wire's receive thread and
/// the control channel.
pub type SharedHost<M> = Arc<Mutex<Host<M>>>;

/// The vfio-user backend over a [`SharedHost`].
struct Locked<M: Model>(SharedHost<M>);

impl<M: Model> Locked<M> {
    fn host(&self) -> std::sync::MutexGuard<'_, Host<M>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<M: Model> ServerBackend for Locked<M> {
    fn region_read(&mut self, region: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
        self.host().region_read(region, offset, data)
    }
    fn region_write(&mut self, region: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        self.host().region_write(region, offset, data)
    }
    fn dma_map(
        &mut self,
        flags: DmaMapFlags,
        offset: u64,
        address: u64,
        size: u64,
        fd: Option<File>,
    ) -> io::Result<()> {
        self.host().dma_map(flags, offset, address, size, fd)
    }
    fn dma_unmap(&mut self, flags: DmaUnmapFlags, address: u64, size: u64) -> io::Result<()> {
        self.host().dma_unmap(flags, address, size)
    }
    fn reset(&mut self) -> io::Result<()> {
        ServerBackend::reset(&mut *self.host())
    }
    fn set_irqs(
        &mut self,
        index: u32,
        flags: u32,
        start: u32,
        count: u32,
        fds: Vec<File>,
    ) -> io::Result<()> {
        self.host().set_irqs(index, flags, start, count, fds)
    }
}

/// Serves `model` on a new unix socket at `socket` to one client (QEMU's
/// `vfio-user-pci`) until it disconnects, with the wire's receive thread
/// and the control channel running beside it. The socket path must not
/// exist. Returns the host (its counters and violation log).
pub fn serve<M: Model + 'static>(
    model: M,
    log: ViolationLog,
    socket: &Path,
    opts: &ServeOpts,
) -> Result<SharedHost<M>, String> {
    let mut host = Host::new(model, log);
    host.link_up = !opts.link_down;
    let rx_wire = match &opts.wire {
        Some(spec) => {
            let w = Wire::open(spec).map_err(|e| format!("wire {spec:?}: {e}"))?;
            let rx = w.try_clone().map_err(|e| format!("wire: {e}"))?;
            host.set_wire(w);
            Some(rx)
        }
        None => None,
    };
    let server = Server::new(socket, true, host.irq_infos(), host.regions())
        .map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
    let shared: SharedHost<M> = Arc::new(Mutex::new(host));
    if let Some(rx) = rx_wire {
        let h = shared.clone();
        std::thread::Builder::new()
            .name("wire-rx".into())
            .spawn(move || {
                // Blocks in recv: the model works only when a frame comes.
                let mut buf = vec![0u8; MAX_FRAME];
                while let Ok(n) = rx.recv(&mut buf) {
                    h.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .frame_in(&buf[..n]);
                }
            })
            .map_err(|e| format!("cannot start the wire thread: {e}"))?;
    }
    if let Some(path) = &opts.control {
        let _ = std::fs::remove_file(path);
        let l = UnixListener::bind(path)
            .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
        let h = shared.clone();
        std::thread::Builder::new()
            .name("control".into())
            .spawn(move || {
                for conn in l.incoming().flatten() {
                    let mut w = match conn.try_clone() {
                        Ok(w) => w,
                        Err(_) => continue,
                    };
                    for line in BufReader::new(conn).lines() {
                        let Ok(line) = line else { break };
                        let reply = h
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .control(&line);
                        if w.write_all(reply.as_bytes()).is_err() {
                            break;
                        }
                    }
                }
            })
            .map_err(|e| format!("cannot start the control thread: {e}"))?;
    }
    tracing::info!(socket = %socket.display(), "waiting for the vfio-user client");
    let r = server.run(&mut Locked(shared.clone()));
    let _ = std::fs::remove_file(socket);
    if let Some(path) = &opts.control {
        let _ = std::fs::remove_file(path);
    }
    r.map_err(|e| format!("vfio-user: {e}"))?;
    Ok(shared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dma_test::{reg, DmaTest, STATUS_DONE, STATUS_ERROR};
    use crate::pci::{CMD_BUS_MASTER, CMD_MEMORY, DEVCTL_FLR, PCIE_CAP};
    use vfio_bindings::bindings::vfio::VFIO_PCI_BAR0_REGION_INDEX;

    const BAR0: u32 = VFIO_PCI_BAR0_REGION_INDEX;

    fn rd(h: &mut Host<DmaTest>, off: u64) -> u32 {
        let mut b = [0u8; 4];
        h.region_read(BAR0, off, &mut b).unwrap();
        u32::from_le_bytes(b)
    }

    fn wr(h: &mut Host<DmaTest>, off: u64, v: u32) {
        h.region_write(BAR0, off, &v.to_le_bytes()).unwrap();
    }

    #[test]
    fn regions_and_irqs_announce_a_trapped_bar_and_msix_only() {
        let h = Host::new(DmaTest::new(), ViolationLog::default());
        let r = h.regions();
        assert_eq!(r.len(), VFIO_PCI_NUM_REGIONS as usize);
        assert_eq!(r[0].region_info.size, 4096);
        assert_eq!(r[1].region_info.size, 0);
        assert_eq!(
            r[VFIO_PCI_CONFIG_REGION_INDEX as usize].region_info.size,
            4096
        );
        assert!(r
            .iter()
            .all(|x| x.mmap_fd.is_none() && x.sparse_areas.is_empty()));
        let irqs = h.irq_infos();
        assert_eq!(irqs[VFIO_PCI_MSIX_IRQ_INDEX as usize].count, 2);
        assert_eq!(
            irqs.iter().map(|i| i.count).sum::<u32>(),
            2,
            "no INTx, no MSI"
        );
    }

    #[test]
    fn dma_needs_bus_mastering_and_a_map_and_flr_resets() {
        let mut h = Host::new(DmaTest::new(), ViolationLog::default());
        let f = crate::iova::tests::ram(1 << 16);
        h.dma_map(
            DmaMapFlags::READ_WRITE,
            0,
            0x1000,
            0x1000,
            Some(f.try_clone().unwrap()),
        )
        .unwrap();
        wr(&mut h, reg::ADDR_LO, 0x1000);
        wr(&mut h, reg::LEN, 16);
        wr(&mut h, reg::DOORBELL, 1);
        assert_eq!(rd(&mut h, reg::STATUS), STATUS_ERROR, "bus mastering off");
        assert!(h.log().entries()[0].reason.contains("bus mastering is off"));
        h.region_write(
            VFIO_PCI_CONFIG_REGION_INDEX,
            4,
            &(CMD_MEMORY | CMD_BUS_MASTER).to_le_bytes(),
        )
        .unwrap();
        wr(&mut h, reg::DOORBELL, 1);
        assert_eq!(rd(&mut h, reg::STATUS), STATUS_DONE);
        // MSI-X not enabled: the vector stays undelivered.
        assert_eq!(h.irqs().fired(0), 0);
        // Outside the BAR and a DMA map without a file: refused and logged.
        let mut b = [0u8; 8];
        assert!(h.region_read(BAR0, 4092, &mut b).is_err());
        assert!(h.region_write(2, 0, &[0; 4]).is_err(), "no BAR 2");
        // A map without a file is accepted, and unreachable by DMA.
        h.dma_map(DmaMapFlags::READ_WRITE, 0, 0x9000, 0x1000, None)
            .unwrap();
        assert_eq!(h.dma().len(), 1);
        assert!(h
            .dma_map(DmaMapFlags::READ_WRITE, 0, 0x1800, 0x1000, Some(f))
            .is_err());
        assert_eq!(h.log().total(), 4, "{:#?}", h.log());
        // FLR: registers and the command register back to reset.
        h.region_write(
            VFIO_PCI_CONFIG_REGION_INDEX,
            PCIE_CAP as u64 + 8,
            &DEVCTL_FLR.to_le_bytes(),
        )
        .unwrap();
        assert_eq!(rd(&mut h, reg::DONE), 0);
        assert_eq!(rd(&mut h, reg::ADDR_LO), 0);
        let mut cmd = [0u8; 2];
        h.region_read(VFIO_PCI_CONFIG_REGION_INDEX, 4, &mut cmd)
            .unwrap();
        assert_eq!(cmd, [0, 0]);
        assert_eq!(h.dma().len(), 1, "the client's maps outlive a reset");
        h.dma_unmap(DmaUnmapFlags::UNMAP_ALL, 0, 0).unwrap();
        assert!(h.dma().is_empty());
    }
}
