//! The virtio 1.x PCI transport (virtio 1.2, 4.1): where the device's
//! configuration structures are, and the control-side register access the
//! driver does through them.
//!
//! [`find_caps`] reads the vendor-specific capabilities of a function's
//! configuration space (4.1.4) as a checked view: any length, any pointer
//! loop, any out-of-range field gives an error, never a panic.
//! [`Transport`] is what the driver needs of a device on its control side;
//! [`PciTransport`] does it over the function's mapped BARs, and the
//! `testing` feature's device double does it in software. The data path
//! needs only the notify address ([`Notifier`]).

use std::sync::Arc;

use pollux_vfio::Bar;

use crate::spec::{self, common};

/// Where one configuration structure is: BAR, offset and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapLoc {
    pub bar: u8,
    pub offset: u32,
    pub length: u32,
}

/// The virtio structures a function's capabilities point to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioCaps {
    pub common: CapLoc,
    pub notify: CapLoc,
    /// Bytes between the notify addresses of consecutive `queue_notify_off`
    /// values (4.1.4.4).
    pub notify_off_multiplier: u32,
    pub isr: Option<CapLoc>,
    pub device: Option<CapLoc>,
}

/// Why a configuration space does not describe a usable modern virtio
/// device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapError {
    #[error("the function has no capability list")]
    NoCapList,
    #[error(
        "no virtio common configuration capability: a legacy-only (virtio 0.9) device, which \
         this driver does not drive; give QEMU's virtio-net-pci `disable-modern=off` (the default \
         since QEMU 2.7) or use a virtio 1.x device"
    )]
    LegacyOnly,
    #[error("no virtio notify capability")]
    NoNotify,
    #[error("the capability list loops or runs past 48 entries")]
    Loop,
    #[error("capability at {at:#x} is malformed: {what}")]
    Malformed { at: usize, what: &'static str },
}

/// Finds the virtio capabilities in the first 256 bytes of a function's
/// configuration space (`cfg` may be shorter; what lies past it is absent).
/// The first usable capability of each type wins (4.1.4: "the driver SHOULD
/// use the first instance of each type it can support").
pub fn find_caps(cfg: &[u8]) -> Result<VirtioCaps, CapError> {
    let b = |o: usize| cfg.get(o).copied();
    let le32 =
        |o: usize| -> Option<u32> { Some(u32::from_le_bytes(cfg.get(o..o + 4)?.try_into().ok()?)) };
    // Status register bit 4: capabilities list (PCI 3.0, 6.2.3).
    let status = b(0x06).ok_or(CapError::NoCapList)?;
    if status & 0x10 == 0 {
        return Err(CapError::NoCapList);
    }
    let mut ptr = b(0x34).ok_or(CapError::NoCapList)? as usize & !3;
    let (mut common, mut notify, mut isr, mut device) = (None, None, None, None);
    let mut seen = 0;
    while ptr != 0 {
        seen += 1;
        if seen > 48 || ptr < 0x40 {
            return Err(CapError::Loop);
        }
        let bad = |what| CapError::Malformed { at: ptr, what };
        let id = b(ptr).ok_or(bad("past the end of configuration space"))?;
        let next = b(ptr + 1).ok_or(bad("past the end of configuration space"))? as usize & !3;
        if id == spec::PCI_CAP_ID_VNDR {
            let len = b(ptr + 2).ok_or(bad("no length"))? as usize;
            if len < 16 {
                return Err(bad("a virtio capability is at least 16 bytes"));
            }
            let cfg_type = b(ptr + 3).ok_or(bad("no type"))?;
            let bar = b(ptr + 4).ok_or(bad("no BAR"))?;
            let offset = le32(ptr + 8).ok_or(bad("truncated"))?;
            let length = le32(ptr + 12).ok_or(bad("truncated"))?;
            // BARs 0-5 only (4.1.4: values 0x6 to 0xff are reserved; a
            // driver ignores capabilities it cannot use).
            let loc = (bar <= 5).then_some(CapLoc {
                bar,
                offset,
                length,
            });
            match (cfg_type, loc) {
                (spec::PCI_CAP_COMMON_CFG, Some(l)) if common.is_none() => {
                    if l.length < common::LEN {
                        return Err(bad("common configuration shorter than the spec's"));
                    }
                    common = Some(l);
                }
                (spec::PCI_CAP_NOTIFY_CFG, Some(l)) if notify.is_none() => {
                    if len < 20 {
                        return Err(bad("a notify capability is at least 20 bytes"));
                    }
                    let mult = le32(ptr + 16).ok_or(bad("truncated"))?;
                    notify = Some((l, mult));
                }
                (spec::PCI_CAP_ISR_CFG, Some(l)) if isr.is_none() => isr = Some(l),
                (spec::PCI_CAP_DEVICE_CFG, Some(l)) if device.is_none() => device = Some(l),
                _ => {}
            }
        }
        ptr = next;
    }
    let common = common.ok_or(CapError::LegacyOnly)?;
    let (notify, notify_off_multiplier) = notify.ok_or(CapError::NoNotify)?;
    Ok(VirtioCaps {
        common,
        notify,
        notify_off_multiplier,
        isr,
        device,
    })
}

/// Where the driver tells the device that a queue has new buffers: one
/// 16-bit store of the queue index (4.1.4.4; without
/// `VIRTIO_F_NOTIFICATION_DATA`, which this driver does not negotiate).
#[derive(Clone, Debug)]
pub struct Notifier {
    bar: Arc<Bar>,
    off: u32,
    queue: u16,
}

impl Notifier {
    /// The notifier at `off` in `bar` for queue `queue`.
    pub fn new(bar: Arc<Bar>, off: u32, queue: u16) -> Notifier {
        Notifier { bar, off, queue }
    }

    /// Notifies the device.
    #[inline(always)]
    pub fn notify(&self) {
        self.bar.write16(self.off, self.queue);
    }

    /// The queue index it notifies.
    pub fn queue(&self) -> u16 {
        self.queue
    }
}

/// What the driver does with a virtio device on its control side (4.1.4.3
/// for the common configuration, 4.1.4.6 for the device configuration).
pub trait Transport: Send {
    /// `device_status`.
    fn status(&self) -> u8;
    /// Writes `device_status` (0 resets the device).
    fn set_status(&self, status: u8);
    /// The 64 feature bits the device offers.
    fn device_features(&self) -> u64;
    /// Writes the 64 feature bits the driver accepts.
    fn set_driver_features(&self, features: u64);
    /// `num_queues`.
    fn num_queues(&self) -> u16;
    /// `config_generation`.
    fn config_generation(&self) -> u8;
    /// Reads `buf.len()` bytes of the device configuration at `off` (one
    /// access per byte, as the device configuration's width rules allow).
    fn read_device_config(&self, off: u32, buf: &mut [u8]);
    /// Selects queue `q` and reads its maximum size (0: no such queue).
    fn queue_max_size(&self, q: u16) -> u16;
    /// Programs queue `q`: size, the three area addresses, no MSI-X vector.
    /// The queue is not enabled yet.
    fn setup_queue(&self, q: u16, size: u16, desc: u64, driver: u64, device: u64);
    /// Where queue `q`'s notifications go (fixed by the device).
    fn notifier(&self, q: u16) -> Notifier;
    /// Sets `queue_enable` of queue `q`.
    fn enable_queue(&self, q: u16);
}

/// A virtio PCI function's structures, mapped.
#[derive(Debug)]
pub struct PciTransport {
    common: Arc<Bar>,
    common_off: u32,
    notify: Arc<Bar>,
    notify_off: u32,
    notify_len: u32,
    notify_mult: u32,
    device: Option<(Arc<Bar>, u32, u32)>,
}

impl PciTransport {
    /// The transport over `caps`; `bar(i)` gives mapped BAR `i`. Fails when
    /// a structure lies outside its BAR.
    pub fn new(
        caps: &VirtioCaps,
        mut bar: impl FnMut(u8) -> Result<Arc<Bar>, String>,
    ) -> Result<PciTransport, String> {
        let check = |what: &str, l: &CapLoc, b: &Bar| {
            if l.offset as u64 + l.length as u64 > b.len() as u64 {
                Err(format!(
                    "the {what} structure ({} bytes at {:#x}) lies outside BAR {} ({} bytes)",
                    l.length,
                    l.offset,
                    l.bar,
                    b.len()
                ))
            } else {
                Ok(())
            }
        };
        let common = bar(caps.common.bar)?;
        check("common configuration", &caps.common, &common)?;
        let notify = bar(caps.notify.bar)?;
        check("notify", &caps.notify, &notify)?;
        let device = match caps.device {
            Some(l) => {
                let b = bar(l.bar)?;
                check("device configuration", &l, &b)?;
                Some((b, l.offset, l.length))
            }
            None => None,
        };
        Ok(PciTransport {
            common,
            common_off: caps.common.offset,
            notify,
            notify_off: caps.notify.offset,
            notify_len: caps.notify.length,
            notify_mult: caps.notify_off_multiplier,
            device,
        })
    }

    fn c(&self, field: u32) -> u32 {
        self.common_off + field
    }
}

impl Transport for PciTransport {
    fn status(&self) -> u8 {
        self.common.read8(self.c(common::DEVICE_STATUS))
    }

    fn set_status(&self, status: u8) {
        self.common.write8(self.c(common::DEVICE_STATUS), status);
    }

    fn device_features(&self) -> u64 {
        let mut f = 0u64;
        for sel in 0..2u32 {
            self.common
                .write32(self.c(common::DEVICE_FEATURE_SELECT), sel);
            f |= (self.common.read32(self.c(common::DEVICE_FEATURE)) as u64) << (32 * sel);
        }
        f
    }

    fn set_driver_features(&self, features: u64) {
        for sel in 0..2u32 {
            self.common
                .write32(self.c(common::DRIVER_FEATURE_SELECT), sel);
            self.common.write32(
                self.c(common::DRIVER_FEATURE),
                (features >> (32 * sel)) as u32,
            );
        }
    }

    fn num_queues(&self) -> u16 {
        self.common.read16(self.c(common::NUM_QUEUES))
    }

    fn config_generation(&self) -> u8 {
        self.common.read8(self.c(common::CONFIG_GENERATION))
    }

    fn read_device_config(&self, off: u32, buf: &mut [u8]) {
        let Some((bar, base, len)) = &self.device else {
            buf.fill(0);
            return;
        };
        for (i, b) in buf.iter_mut().enumerate() {
            let o = off + i as u32;
            *b = if o < *len { bar.read8(base + o) } else { 0 };
        }
    }

    fn queue_max_size(&self, q: u16) -> u16 {
        self.common.write16(self.c(common::QUEUE_SELECT), q);
        self.common.read16(self.c(common::QUEUE_SIZE))
    }

    fn setup_queue(&self, q: u16, size: u16, desc: u64, driver: u64, device: u64) {
        let w32 = |f: u32, v: u64| self.common.write32(self.c(f), v as u32);
        self.common.write16(self.c(common::QUEUE_SELECT), q);
        self.common.write16(self.c(common::QUEUE_SIZE), size);
        self.common
            .write16(self.c(common::QUEUE_MSIX_VECTOR), spec::MSI_NO_VECTOR);
        w32(common::QUEUE_DESC_LO, desc);
        w32(common::QUEUE_DESC_HI, desc >> 32);
        w32(common::QUEUE_DRIVER_LO, driver);
        w32(common::QUEUE_DRIVER_HI, driver >> 32);
        w32(common::QUEUE_DEVICE_LO, device);
        w32(common::QUEUE_DEVICE_HI, device >> 32);
    }

    fn notifier(&self, q: u16) -> Notifier {
        self.common.write16(self.c(common::QUEUE_SELECT), q);
        let off = self.common.read16(self.c(common::QUEUE_NOTIFY_OFF)) as u32;
        let at = off.saturating_mul(self.notify_mult);
        // 4.1.4.4: the notify address lies within the notify structure; a
        // device that says otherwise gets its notifications at the
        // structure's start rather than a store outside it.
        let at = if at.saturating_add(2) <= self.notify_len {
            at
        } else {
            tracing::warn!(
                queue = q,
                off,
                "queue_notify_off outside the notify structure"
            );
            0
        };
        Notifier::new(self.notify.clone(), self.notify_off + at, q)
    }

    fn enable_queue(&self, q: u16) {
        self.common.write16(self.c(common::QUEUE_SELECT), q);
        self.common.write16(self.c(common::QUEUE_ENABLE), 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU's virtio-net-pci capability chain as a guest reads it (modern
    /// BAR 4: common 0x0, ISR 0x1000, device 0x2000, notify 0x3000 with
    /// multiplier 4; MSI-X first in the list).
    pub(crate) fn qemu_like_config() -> Vec<u8> {
        let mut c = vec![0u8; 256];
        c[0x06] = 0x10;
        c[0x34] = 0x98;
        // MSI-X at 0x98 -> 0x84
        c[0x98] = 0x11;
        c[0x99] = 0x84;
        let mut vcap = |at: usize, next: u8, len: u8, t: u8, bar: u8, off: u32, l: u32| {
            c[at] = 0x09;
            c[at + 1] = next;
            c[at + 2] = len;
            c[at + 3] = t;
            c[at + 4] = bar;
            c[at + 8..at + 12].copy_from_slice(&off.to_le_bytes());
            c[at + 12..at + 16].copy_from_slice(&l.to_le_bytes());
        };
        vcap(0x84, 0x70, 20, 2, 4, 0x3000, 0x1000);
        vcap(0x70, 0x60, 16, 4, 4, 0x2000, 0x1000);
        vcap(0x60, 0x50, 16, 3, 4, 0x1000, 0x1000);
        vcap(0x50, 0x40, 16, 1, 4, 0x0, 0x1000);
        vcap(0x40, 0x00, 20, 5, 0, 0, 0);
        c[0x84 + 16..0x84 + 20].copy_from_slice(&4u32.to_le_bytes());
        c
    }

    #[test]
    fn finds_qemus_capabilities() {
        let caps = find_caps(&qemu_like_config()).unwrap();
        assert_eq!(
            caps.common,
            CapLoc {
                bar: 4,
                offset: 0,
                length: 0x1000
            }
        );
        assert_eq!(caps.notify.offset, 0x3000);
        assert_eq!(caps.notify_off_multiplier, 4);
        assert_eq!(caps.isr.unwrap().offset, 0x1000);
        assert_eq!(caps.device.unwrap().offset, 0x2000);
    }

    #[test]
    fn legacy_only_is_named() {
        let mut c = qemu_like_config();
        c[0x50 + 3] = 9; // the common capability becomes a vendor one
        let e = find_caps(&c).unwrap_err();
        assert_eq!(e, CapError::LegacyOnly);
        assert!(e.to_string().contains("legacy-only"), "{e}");
    }

    #[test]
    fn loops_and_short_spaces_are_errors() {
        let mut c = qemu_like_config();
        c[0x41] = 0x98; // the last capability points back to the first
        assert_eq!(find_caps(&c).unwrap_err(), CapError::Loop);
        let c = qemu_like_config();
        assert!(find_caps(&c[..0x60]).is_err());
        assert_eq!(find_caps(&[]).unwrap_err(), CapError::NoCapList);
    }

    #[test]
    fn any_bytes_give_an_answer_not_a_panic() {
        // A cheap stand-in for fuzzing: every single-byte corruption of a
        // real chain, and every truncation.
        let base = qemu_like_config();
        for i in 0..base.len() {
            for v in [0u8, 0x03, 0x09, 0x40, 0xff] {
                let mut c = base.clone();
                c[i] = v;
                let _ = find_caps(&c);
            }
            let _ = find_caps(&base[..i]);
        }
    }
}
