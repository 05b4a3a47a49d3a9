//! What a device model is to the host: a function description, BAR
//! accesses and resets, and a context through which it does DMA, raises
//! interrupts and reports what a driver did wrong. A model holds no socket
//! code, so the same model runs in unit tests without QEMU.

use std::time::Instant;

use crate::iova::{IovaError, IovaMap};
use crate::irq::Irqs;
use crate::pci::{ConfigSpace, FunctionSpec, MSIX_ENABLE, MSIX_FUNCTION_MASK};

/// A device model served over vfio-user.
pub trait Model: Send {
    /// Identity, BARs and MSI-X layout. Called once, at start.
    fn spec(&self) -> FunctionSpec;
    /// A driver's read of `data.len()` bytes at `offset` of BAR `bar`;
    /// the host has checked that the access lies inside the BAR.
    fn bar_read(&mut self, ctx: &mut Ctx<'_>, bar: u8, offset: u64, data: &mut [u8]);
    /// A driver's write.
    fn bar_write(&mut self, ctx: &mut Ctx<'_>, bar: u8, offset: u64, data: &[u8]);
    /// Function Level Reset or a vfio-user device reset: back to the
    /// power-on state of the function's registers.
    fn reset(&mut self);
    /// A frame arrived on the wire (only while the link is up). The default
    /// drops it (counted by the host).
    fn frame_in(&mut self, ctx: &mut Ctx<'_>, frame: &[u8]) -> bool {
        let _ = (ctx, frame);
        false
    }
    /// The link went up or down (control channel `link up|down`).
    fn link_changed(&mut self, ctx: &mut Ctx<'_>, up: bool) {
        let _ = (ctx, up);
    }
    /// Something the PF side can do to the function (control channel
    /// `pf EVENT`, e.g. a PF-initiated reset); the default knows none.
    fn pf_event(&mut self, ctx: &mut Ctx<'_>, event: &str) -> Result<(), String> {
        let _ = ctx;
        Err(format!("this model has no PF event {event:?}"))
    }
    /// The model's own counters (descriptors refused and why, ...).
    fn counters(&self) -> Vec<(String, u64)> {
        Vec::new()
    }
}

/// Frames on the wire, counted by the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WireStats {
    /// Frames that arrived from the far end.
    pub frames_in: u64,
    /// Frames the model sent that went out.
    pub frames_out: u64,
    /// Frames that arrived while the link was down, or that the model did
    /// not take.
    pub rx_dropped: u64,
    /// Frames the model sent while the link was down, with no wire, or
    /// with nobody at the far end.
    pub tx_dropped: u64,
}

/// One protocol or specification violation the model saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Milliseconds since the model started.
    pub at_ms: u64,
    /// The register, descriptor or message concerned.
    pub what: String,
    /// Why it is a violation (the rule, with its source).
    pub reason: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ms: {}: {}", self.at_ms, self.what, self.reason)
    }
}

/// Where each violation goes as it happens.
pub type Sink = Box<dyn FnMut(&Violation) + Send>;

/// The violations seen so far (the most recent [`ViolationLog::CAP`]), and
/// a sink that also gets each one as it happens (a file, a test).
pub struct ViolationLog {
    start: Instant,
    entries: Vec<Violation>,
    total: u64,
    sink: Option<Sink>,
}

impl std::fmt::Debug for ViolationLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViolationLog")
            .field("total", &self.total)
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}

impl Default for ViolationLog {
    fn default() -> Self {
        ViolationLog {
            start: Instant::now(),
            entries: Vec::new(),
            total: 0,
            sink: None,
        }
    }
}

impl ViolationLog {
    /// Entries kept in memory.
    pub const CAP: usize = 1024;

    /// A log that also hands every violation to `sink` as it happens.
    pub fn with_sink(sink: Sink) -> Self {
        ViolationLog {
            sink: Some(sink),
            ..Self::default()
        }
    }

    /// Records one violation.
    pub fn log(&mut self, what: impl Into<String>, reason: impl Into<String>) {
        let v = Violation {
            at_ms: self.start.elapsed().as_millis() as u64,
            what: what.into(),
            reason: reason.into(),
        };
        tracing::warn!(what = %v.what, reason = %v.reason, "violation");
        if let Some(s) = &mut self.sink {
            s(&v);
        }
        if self.entries.len() == Self::CAP {
            self.entries.remove(0);
        }
        self.entries.push(v);
        self.total += 1;
    }

    /// The kept entries, oldest first.
    pub fn entries(&self) -> &[Violation] {
        &self.entries
    }

    /// Violations seen since start.
    pub fn total(&self) -> u64 {
        self.total
    }
}

/// What a model may touch while it handles an access.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// The client's DMA maps.
    pub dma: &'a IovaMap,
    /// MSI-X vectors.
    pub irqs: &'a mut Irqs,
    /// Config space (command register, MSI-X control).
    pub config: &'a ConfigSpace,
    /// Where violations go.
    pub log: &'a mut ViolationLog,
    /// The wire, if the model has one.
    pub wire: Option<&'a crate::wire::Wire>,
    /// Link state (set from the control channel).
    pub link_up: bool,
    /// Wire counters.
    pub stats: &'a mut WireStats,
}

impl Ctx<'_> {
    /// DMA from guest memory, if the driver allowed bus mastering; each
    /// refusal is logged as a violation and returned.
    pub fn dma_read(&mut self, iova: u64, buf: &mut [u8]) -> Result<(), DmaRefused> {
        self.check_bus_master(iova, buf.len())?;
        self.dma.read(iova, buf).map_err(|e| self.refuse(e))
    }

    /// DMA into guest memory, as [`Ctx::dma_read`].
    pub fn dma_write(&mut self, iova: u64, data: &[u8]) -> Result<(), DmaRefused> {
        self.check_bus_master(iova, data.len())?;
        self.dma.write(iova, data).map_err(|e| self.refuse(e))
    }

    /// Raises MSI-X vector `v` if MSI-X is enabled and not function-masked
    /// (PCIe 4.0, 7.7.2.2); otherwise it stays pending. Returns whether it
    /// was delivered.
    pub fn interrupt(&mut self, v: usize) -> bool {
        let ctl = self.config.msix_control();
        if ctl & MSIX_ENABLE == 0 || ctl & MSIX_FUNCTION_MASK != 0 {
            return false;
        }
        self.irqs.fire(v)
    }

    /// Sends `frame` on the wire; returns whether it went out (a down
    /// link, no wire or nobody at the far end loses it, counted).
    pub fn send_frame(&mut self, frame: &[u8]) -> bool {
        let sent = match (self.wire, self.link_up) {
            (Some(w), true) => w.send(frame).unwrap_or_else(|e| {
                tracing::warn!("wire send: {e}");
                false
            }),
            _ => false,
        };
        if sent {
            self.stats.frames_out += 1;
        } else {
            self.stats.tx_dropped += 1;
        }
        sent
    }

    fn check_bus_master(&mut self, iova: u64, len: usize) -> Result<(), DmaRefused> {
        if self.config.bus_master() {
            return Ok(());
        }
        self.log.log(
            format!("DMA of {len} bytes at IOVA {iova:#x}"),
            "bus mastering is off in the command register (PCI 3.0, 6.2.2): the function may not DMA",
        );
        Err(DmaRefused(None))
    }

    fn refuse(&mut self, e: IovaError) -> DmaRefused {
        self.log
            .log("DMA", format!("{e}: a device would raise a DMA fault"));
        DmaRefused(Some(e))
    }
}

/// A DMA the model did not do (already logged as a violation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmaRefused(pub Option<IovaError>);

/// A NIC model's `--mac`: six hex bytes separated by ':', a nonzero
/// unicast address (the group bit clear), as a PF gives a VF.
pub fn parse_unicast_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(format!("{s:?}: expected six hex bytes aa:bb:cc:dd:ee:ff"));
    }
    let mut m = [0u8; 6];
    for (b, p) in m.iter_mut().zip(parts) {
        if p.is_empty() || p.len() > 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("{s:?}: {p:?} is not a hex byte"));
        }
        *b = u8::from_str_radix(p, 16).map_err(|e| format!("{s:?}: {p:?}: {e}"))?;
    }
    if m[0] & 1 != 0 || m == [0; 6] {
        return Err(format!(
            "{s:?}: a VF's MAC must be a nonzero unicast address"
        ));
    }
    Ok(m)
}

#[cfg(test)]
mod mac_tests {
    use super::parse_unicast_mac;

    #[test]
    fn unicast_macs_parse_and_others_say_why() {
        assert_eq!(
            parse_unicast_mac("02:00:00:10:ed:00"),
            Ok([2, 0, 0, 0x10, 0xed, 0])
        );
        for bad in [
            "",
            "02:00:00:10:ed",
            "01:00:00:10:ed:00",
            "00:00:00:00:00:00",
            "02:00:00:10:ed:+1",
            "02:00:00:10:ed:100",
        ] {
            assert!(parse_unicast_mac(bad).is_err(), "{bad}");
        }
    }
}
