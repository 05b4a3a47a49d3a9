//! A virtio-net device in software, for tests and benches that run without
//! a device: the common configuration's semantics (feature selection,
//! status, per-queue registers behind `queue_select`), the network device
//! configuration, and the device side of the split virtqueues as the spec
//! describes it (2.7.13-2.7.14, 5.1.6).
//!
//! Like a device, it reads and writes through whatever address a
//! descriptor holds, so its queue operations are `unsafe`: the driver's
//! memory must come from [`pollux_core::AnonMemory`] (IOVA = address). The
//! module exists only with the `testing` feature.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use pollux_vfio::Bar;

use crate::packed::{self, PackedView};
use crate::spec::{self, bit};
use crate::transport::{Notifier, Transport};
use crate::vring::RingView;

/// One queue's registers and the device's position in it.
#[derive(Clone, Debug, Default)]
pub struct QueueRegs {
    pub max: u16,
    pub size: u16,
    pub desc: u64,
    pub driver: u64,
    pub device: u64,
    pub enabled: bool,
    /// Next available entry the device will take (split: free-running
    /// index; packed: ring position, with `avail_wrap`).
    pub last_avail: u16,
    /// The device's used index (split: free-running; packed: ring
    /// position, with `used_wrap`).
    pub used_idx: u16,
    /// Packed: the device's wrap counters (2.8.1; start at 1).
    pub avail_wrap: bool,
    pub used_wrap: bool,
}

/// A buffer's descriptors as the device read them: (address, length, flags).
type Chain = Vec<(u64, u32, u16)>;

/// One queue as the device reaches it.
enum DevRing {
    Split(RingView),
    Packed(PackedView),
}

/// The device's state.
#[derive(Debug)]
pub struct State {
    pub status: u8,
    pub offered: u64,
    pub driver_features: u64,
    /// Whether FEATURES_OK is accepted (a device may refuse features).
    pub accept_features: bool,
    /// `struct virtio_net_config`.
    pub config: [u8; 24],
    pub generation: u8,
    pub queues: Vec<QueueRegs>,
    /// Control commands received: (class, command, data).
    pub ctrl_log: Vec<(u8, u8, Vec<u8>)>,
    /// The ack the device answers control commands with.
    pub ctrl_ack: u8,
    /// Headers of the frames transmitted, in order (flags, csum_start,
    /// csum_offset).
    pub tx_headers: Vec<(u8, u16, u16)>,
    /// Resets seen.
    pub resets: u32,
}

/// A virtio-net device in software. Share it (`Arc`) between the test and
/// the [`FakeTransport`] the driver is given.
#[derive(Debug)]
pub struct FakeDevice {
    state: Mutex<State>,
    notify: Arc<Bar>,
}

/// Bytes between two queues' notify addresses.
const NOTIFY_MULT: u32 = 4;

impl FakeDevice {
    /// A device offering `features`, with `pairs` queue pairs (plus a
    /// control queue) of `queue_size` entries and MAC `mac`, link up.
    pub fn new(features: u64, pairs: u16, queue_size: u16, mac: [u8; 6]) -> Arc<FakeDevice> {
        let mut config = [0u8; 24];
        config[0..6].copy_from_slice(&mac);
        config[6..8].copy_from_slice(&spec::NET_S_LINK_UP.to_le_bytes());
        config[8..10].copy_from_slice(&pairs.to_le_bytes());
        config[12..16].copy_from_slice(&10_000u32.to_le_bytes());
        config[16] = 1;
        let queues = (0..2 * pairs + 1)
            .map(|_| QueueRegs {
                max: queue_size,
                avail_wrap: true,
                used_wrap: true,
                ..QueueRegs::default()
            })
            .collect();
        Arc::new(FakeDevice {
            state: Mutex::new(State {
                status: 0,
                offered: features,
                driver_features: 0,
                accept_features: true,
                config,
                generation: 0,
                queues,
                ctrl_log: Vec::new(),
                ctrl_ack: spec::CTRL_OK,
                tx_headers: Vec::new(),
                resets: 0,
            }),
            notify: Arc::new(Bar::plain_memory(
                NOTIFY_MULT as usize * (2 * pairs as usize + 2),
            )),
        })
    }

    /// What QEMU's virtio-net offers a guest through a vIOMMU with
    /// `iommu_platform=on` on a single-queue netdev (no MQ, no offloads).
    pub fn qemu_like_features() -> u64 {
        bit(spec::F_VERSION_1)
            | bit(spec::F_ACCESS_PLATFORM)
            | bit(spec::F_RING_EVENT_IDX)
            | bit(spec::F_RING_INDIRECT_DESC)
            | bit(spec::NET_F_MAC)
            | bit(spec::NET_F_STATUS)
            | bit(spec::NET_F_CTRL_VQ)
            | bit(spec::NET_F_CTRL_RX)
            | bit(spec::NET_F_CTRL_VLAN)
            | bit(spec::NET_F_CTRL_MAC_ADDR)
            | bit(spec::NET_F_MRG_RXBUF)
    }

    /// The device's state, to look at or change.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A transport over this device, for [`crate::VirtioNet::from_transport`].
    pub fn transport(self: &Arc<Self>) -> Box<dyn Transport> {
        Box::new(FakeTransport(self.clone()))
    }

    /// Sets the link bit of the configuration's status.
    pub fn set_link(&self, up: bool) {
        let mut s = self.state();
        let v: u16 = if up { spec::NET_S_LINK_UP } else { 0 };
        s.config[6..8].copy_from_slice(&v.to_le_bytes());
        s.generation = s.generation.wrapping_add(1);
    }

    /// Sets DEVICE_NEEDS_RESET, as a device does after an error it cannot
    /// recover from by itself.
    pub fn needs_reset(&self) {
        self.state().status |= spec::STATUS_DEVICE_NEEDS_RESET;
    }

    /// The queue's rings at the addresses the driver programmed, split or
    /// packed as negotiated.
    fn ring(s: &State, q: &QueueRegs) -> Option<DevRing> {
        if !q.enabled || q.size == 0 {
            return None;
        }
        let p = |a: u64| std::ptr::NonNull::new(a as usize as *mut u8);
        if s.driver_features & bit(spec::F_RING_PACKED) != 0 {
            // SAFETY: the caller of the unsafe device operations promises
            // the driver's queue memory is at these addresses (AnonMemory)
            // and sized for `size` entries.
            return Some(DevRing::Packed(unsafe {
                PackedView::from_raw(p(q.desc)?, p(q.driver)?, p(q.device)?, q.size)
            }));
        }
        if !q.size.is_power_of_two() {
            return None;
        }
        // SAFETY: as above.
        Some(DevRing::Split(unsafe {
            RingView::from_raw(p(q.desc)?, p(q.driver)?, p(q.device)?, q.size)
        }))
    }

    fn running(s: &State) -> bool {
        s.status & spec::STATUS_DRIVER_OK != 0 && s.status & spec::STATUS_DEVICE_NEEDS_RESET == 0
    }

    /// Takes the next available buffer: its id and its descriptors
    /// (address, length, flags), as 2.7.13 / 2.8.4 describe.
    fn take_avail(q: &mut QueueRegs, r: &DevRing) -> Option<(u16, Chain)> {
        let mut descs = Vec::new();
        match r {
            DevRing::Split(v) => {
                if v.avail_idx() == q.last_avail {
                    return None;
                }
                std::sync::atomic::fence(Ordering::Acquire);
                let head = v.avail_ring(q.last_avail);
                q.last_avail = q.last_avail.wrapping_add(1);
                let mut i = head;
                for _ in 0..v.size() {
                    let (addr, len, flags, next) = v.read_desc(i);
                    descs.push((addr, len, flags));
                    if flags & spec::VRING_DESC_F_NEXT == 0 {
                        break;
                    }
                    i = next;
                }
                Some((head, descs))
            }
            DevRing::Packed(v) => {
                let f = v.flags(q.last_avail);
                let avail = f & packed::DESC_F_AVAIL != 0;
                let used = f & packed::DESC_F_USED != 0;
                if avail != q.avail_wrap || used == q.avail_wrap {
                    return None;
                }
                std::sync::atomic::fence(Ordering::Acquire);
                let mut id = 0;
                for _ in 0..v.size() {
                    let (addr, len, bid, flags) = v.read(q.last_avail);
                    descs.push((addr, len, flags));
                    id = bid;
                    q.last_avail += 1;
                    if q.last_avail == v.size() {
                        q.last_avail = 0;
                        q.avail_wrap = !q.avail_wrap;
                    }
                    if flags & spec::VRING_DESC_F_NEXT == 0 {
                        break;
                    }
                }
                Some((id, descs))
            }
        }
    }

    /// Marks buffer `id` used with `len` bytes written, as 2.7.14 / 2.8.9
    /// order it (the entry before the index or flags that publish it).
    fn put_used(s: &State, q: &mut QueueRegs, r: &DevRing, id: u16, len: u32, chain: u16) {
        match r {
            DevRing::Split(v) => {
                v.set_used_elem(q.used_idx, id as u32, len);
                std::sync::atomic::fence(Ordering::Release);
                q.used_idx = q.used_idx.wrapping_add(1);
                v.set_used_idx(q.used_idx);
                if s.driver_features & bit(spec::F_RING_EVENT_IDX) != 0 {
                    v.set_avail_event(q.last_avail);
                }
            }
            DevRing::Packed(v) => {
                v.write_body(q.used_idx, 0, len, id);
                std::sync::atomic::fence(Ordering::Release);
                let f = if q.used_wrap {
                    packed::DESC_F_AVAIL | packed::DESC_F_USED
                } else {
                    0
                };
                v.write_flags(q.used_idx, f);
                let mut next = q.used_idx as u32 + chain.max(1) as u32;
                if next >= v.size() as u32 {
                    next -= v.size() as u32;
                    q.used_wrap = !q.used_wrap;
                }
                q.used_idx = next as u16;
            }
        }
    }

    /// Receives one frame on rx queue `pair`: false when the device does
    /// not run or the driver has no buffer available.
    ///
    /// # Safety
    /// The queue's programmed addresses and every buffer its descriptors
    /// name must be memory the driver allocated from
    /// [`pollux_core::AnonMemory`] (IOVA = address), alive, and not
    /// accessed by anything else during the call (the driver does not touch
    /// a buffer it made available).
    pub unsafe fn deliver(&self, pair: u16, frame: &[u8], hdr_flags: u8) -> bool {
        let mut guard = self.state();
        let s = &mut *guard;
        if !Self::running(s) {
            return false;
        }
        let qi = 2 * pair as usize;
        let mut q = s.queues[qi].clone();
        let Some(r) = Self::ring(s, &q) else {
            return false;
        };
        let Some((id, descs)) = Self::take_avail(&mut q, &r) else {
            return false;
        };
        let (addr, len, flags) = descs[0];
        let total = spec::NET_HDR_LEN + frame.len();
        if flags & spec::VRING_DESC_F_WRITE == 0 || (len as usize) < total {
            Self::put_used(s, &mut q, &r, id, 0, descs.len() as u16);
            s.queues[qi] = q;
            return false;
        }
        let mut hdr = [0u8; spec::NET_HDR_LEN];
        hdr[0] = hdr_flags;
        hdr[10] = 1; // num_buffers
        let dst = addr as usize as *mut u8;
        // SAFETY: the caller promises the descriptor names a buffer of `len`
        // >= total bytes of live AnonMemory that nothing else touches.
        unsafe {
            std::ptr::copy_nonoverlapping(hdr.as_ptr(), dst, hdr.len());
            std::ptr::copy_nonoverlapping(frame.as_ptr(), dst.add(hdr.len()), frame.len());
        }
        Self::put_used(s, &mut q, &r, id, total as u32, descs.len() as u16);
        s.queues[qi] = q;
        true
    }

    /// Sends every frame tx queue `pair` has available; returns them
    /// without their `virtio_net_hdr` (recorded in `tx_headers`).
    ///
    /// # Safety
    /// As [`FakeDevice::deliver`], for the buffers the transmit descriptors
    /// name (read, not written).
    pub unsafe fn transmit(&self, pair: u16) -> Vec<Vec<u8>> {
        let mut guard = self.state();
        let s = &mut *guard;
        let mut out = Vec::new();
        if !Self::running(s) {
            return out;
        }
        let qi = 2 * pair as usize + 1;
        let mut q = s.queues[qi].clone();
        let Some(r) = Self::ring(s, &q) else {
            return out;
        };
        while let Some((id, descs)) = Self::take_avail(&mut q, &r) {
            // SAFETY: as the caller promises.
            let bytes = unsafe { Self::read_chain(&descs) };
            if bytes.len() >= spec::NET_HDR_LEN {
                let h = &bytes[..spec::NET_HDR_LEN];
                s.tx_headers.push((
                    h[0],
                    u16::from_le_bytes([h[6], h[7]]),
                    u16::from_le_bytes([h[8], h[9]]),
                ));
                out.push(bytes[spec::NET_HDR_LEN..].to_vec());
            }
            Self::put_used(s, &mut q, &r, id, 0, descs.len() as u16);
        }
        s.queues[qi] = q;
        out
    }

    /// The device-readable bytes of a chain.
    ///
    /// # Safety
    /// As [`FakeDevice::transmit`].
    unsafe fn read_chain(descs: &[(u64, u32, u16)]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for &(addr, len, flags) in descs {
            if flags & spec::VRING_DESC_F_WRITE == 0 {
                let src = addr as usize as *const u8;
                // SAFETY: the caller promises `len` readable bytes there.
                bytes.extend_from_slice(unsafe { std::slice::from_raw_parts(src, len as usize) });
            }
        }
        bytes
    }

    /// Answers every command on the control queue: logs it and writes the
    /// configured ack into the chain's device-writable byte.
    ///
    /// # Safety
    /// As [`FakeDevice::deliver`], for the control queue's buffers.
    pub unsafe fn serve_control_once(&self) {
        let mut guard = self.state();
        let s = &mut *guard;
        if !Self::running(s) {
            return;
        }
        // 5.1.2: the control queue is queue 2 unless MQ is negotiated, then
        // 2 * max_virtqueue_pairs (the last one).
        let qi = if s.driver_features & bit(spec::NET_F_MQ) != 0 {
            match s.queues.len().checked_sub(1) {
                Some(qi) => qi,
                None => return,
            }
        } else {
            2
        };
        if qi >= s.queues.len() {
            return;
        }
        let mut q = s.queues[qi].clone();
        let Some(r) = Self::ring(s, &q) else {
            return;
        };
        while let Some((id, descs)) = Self::take_avail(&mut q, &r) {
            // SAFETY: as the caller promises.
            let cmd = unsafe { Self::read_chain(&descs) };
            if cmd.len() >= 2 {
                s.ctrl_log.push((cmd[0], cmd[1], cmd[2..].to_vec()));
            }
            // The first device-writable descriptor gets the ack.
            if let Some(&(addr, _, _)) = descs.iter().find(|d| d.2 & spec::VRING_DESC_F_WRITE != 0)
            {
                // SAFETY: as the caller promises; one byte.
                unsafe { (addr as usize as *mut u8).write_volatile(s.ctrl_ack) };
            }
            Self::put_used(s, &mut q, &r, id, 1, descs.len() as u16);
        }
        s.queues[qi] = q;
    }

    /// Queues the device shows: like QEMU's virtio-net
    /// (virtio_net_set_multiqueue), one pair and the control queue until
    /// the driver's features include MQ, then every pair and the control
    /// queue.
    fn queues_present(s: &State) -> usize {
        if s.driver_features & bit(spec::NET_F_MQ) != 0 {
            s.queues.len()
        } else {
            s.queues.len().min(3)
        }
    }

    /// Answers control commands from a thread until the guard is dropped:
    /// the driver waits for each command's completion.
    ///
    /// # Safety
    /// As [`FakeDevice::serve_control_once`], for as long as the guard lives.
    pub unsafe fn serve_control(self: &Arc<Self>) -> ControlServer {
        let stop = Arc::new(AtomicBool::new(false));
        let (dev, flag) = (self.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                // SAFETY: the caller of serve_control promised it for the
                // guard's life, and the guard joins this thread on drop.
                unsafe { dev.serve_control_once() };
                std::thread::sleep(Duration::from_micros(50));
            }
        });
        ControlServer {
            stop,
            thread: Some(thread),
        }
    }

    /// Decoded control commands received so far.
    pub fn ctrl_log(&self) -> Vec<(u8, u8, Vec<u8>)> {
        self.state().ctrl_log.clone()
    }
}

/// Stops [`FakeDevice::serve_control`]'s thread when dropped.
#[derive(Debug)]
pub struct ControlServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// [`Transport`] over a [`FakeDevice`].
#[derive(Debug)]
pub struct FakeTransport(pub Arc<FakeDevice>);

impl Transport for FakeTransport {
    fn status(&self) -> u8 {
        self.0.state().status
    }

    fn set_status(&self, status: u8) {
        let mut s = self.0.state();
        if status == 0 {
            // 4.1.4.3: writing 0 resets the device.
            s.status = 0;
            s.driver_features = 0;
            s.resets += 1;
            for q in &mut s.queues {
                *q = QueueRegs {
                    max: q.max,
                    avail_wrap: true,
                    used_wrap: true,
                    ..QueueRegs::default()
                };
            }
            return;
        }
        let mut st = status;
        if st & spec::STATUS_FEATURES_OK != 0 && s.status & spec::STATUS_FEATURES_OK == 0 {
            // FEATURES_OK stays set only for features the device offered.
            let ok = s.accept_features && s.driver_features & !s.offered == 0;
            if !ok {
                st &= !spec::STATUS_FEATURES_OK;
            }
        }
        // DEVICE_NEEDS_RESET is the device's; the driver cannot clear it.
        s.status = st | (s.status & spec::STATUS_DEVICE_NEEDS_RESET);
    }

    fn device_features(&self) -> u64 {
        self.0.state().offered
    }

    fn set_driver_features(&self, features: u64) {
        self.0.state().driver_features = features;
    }

    fn num_queues(&self) -> u16 {
        let s = self.0.state();
        FakeDevice::queues_present(&s) as u16
    }

    fn config_generation(&self) -> u8 {
        self.0.state().generation
    }

    fn read_device_config(&self, off: u32, buf: &mut [u8]) {
        let s = self.0.state();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = s.config.get(off as usize + i).copied().unwrap_or(0);
        }
    }

    fn queue_max_size(&self, q: u16) -> u16 {
        let s = self.0.state();
        if q as usize >= FakeDevice::queues_present(&s) {
            return 0;
        }
        s.queues.get(q as usize).map_or(0, |r| r.max)
    }

    fn setup_queue(&self, q: u16, size: u16, desc: u64, driver: u64, device: u64) {
        let mut s = self.0.state();
        if let Some(r) = s.queues.get_mut(q as usize) {
            r.size = size;
            r.desc = desc;
            r.driver = driver;
            r.device = device;
        }
    }

    fn notifier(&self, q: u16) -> Notifier {
        Notifier::new(self.0.notify.clone(), q as u32 * NOTIFY_MULT, q)
    }

    fn enable_queue(&self, q: u16) {
        let mut s = self.0.state();
        if let Some(r) = s.queues.get_mut(q as usize) {
            r.enabled = true;
        }
    }
}
