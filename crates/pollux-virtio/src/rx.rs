//! Receive virtqueue: buffers posted in bursts, frames taken from the used
//! ring.
//!
//! Descriptor `i` always carries the buffer held in software slot `i`; it is
//! one device-writable descriptor over the mbuf's buffer from 12 bytes
//! before its data offset, so the device writes the `virtio_net_hdr` into
//! the headroom and the frame lands where the mbuf's data starts, with no
//! copy (DPDK's virtio PMD lays its buffers out the same way). Without
//! `VIRTIO_NET_F_MRG_RXBUF` every frame fits one buffer (5.1.6.3.1: at
//! least 1526 bytes each).
//!
//! Nothing the device writes is trusted: a used index that runs more than
//! a queue ahead, a descriptor id out of range or not posted, a length
//! shorter than the header or longer than the buffer each drop the entry,
//! are counted, and never panic.

use pollux_core::mbuf::HEADROOM;
use pollux_core::{Burst, Mbuf, Mempool, PacketType, RxFlags};

use crate::spec;
use crate::transport::Notifier;
use crate::vq::{Seg, Vq};

/// Counters of one receive queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxVqStats {
    pub packets: u64,
    pub bytes: u64,
    /// Used entries dropped: bad id, bad length.
    pub errors: u64,
    /// Times the pool had no buffer to refill a slot.
    pub nombuf: u64,
    /// Times the used index ran more than a queue ahead of the driver.
    pub device_faults: u64,
    /// Notifications sent to the device (the driver refilled a queue the
    /// device had asked to hear about).
    pub notifies: u64,
}

/// One receive virtqueue.
pub struct RxVq {
    vq: Vq,
    notifier: Notifier,
    sw: Box<[Option<Mbuf>]>,
    pool: Mempool,
    /// A used entry taken when the pool had no buffer to put in its place;
    /// handled first at the next burst.
    stash: Option<(u32, u32)>,
    /// Checksum flags in the header are to be reported (GUEST_CSUM).
    csum: bool,
    port: u16,
    queue: u16,
    pub stats: RxVqStats,
}

impl RxVq {
    /// A queue over `vq` filled from `pool`; `queue` is the port's rx
    /// queue number, `port` what mbufs are stamped with.
    pub fn new(vq: Vq, notifier: Notifier, pool: Mempool, port: u16, queue: u16) -> RxVq {
        RxVq {
            sw: (0..vq.size()).map(|_| None).collect(),
            vq,
            notifier,
            pool,
            stash: None,
            csum: false,
            port,
            queue,
            stats: RxVqStats::default(),
        }
    }

    /// Report checksum flags (`VIRTIO_NET_F_GUEST_CSUM` negotiated).
    pub fn set_csum(&mut self, csum: bool) {
        self.csum = csum;
    }

    /// The virtqueue.
    pub fn vq(&self) -> &Vq {
        &self.vq
    }

    /// Bytes the device may write into each buffer: header and frame.
    pub fn buf_len(&self) -> u32 {
        (self.pool.data_room() as u32).saturating_sub(HEADROOM as u32) + spec::NET_HDR_LEN as u32
    }

    /// Starts the queue over for a device that has just been reset: the
    /// rings zeroed, every slot given a buffer (allocating where empty) and
    /// made available. Call only while the device does not own the queue.
    /// Returns how many buffers the pool could not give (0 on success).
    pub fn arm(&mut self) -> usize {
        self.vq.reset();
        self.stash = None;
        let len = self.buf_len();
        let mut missing = 0;
        for i in 0..self.vq.size() {
            let slot = &mut self.sw[i as usize];
            if slot.is_none() {
                *slot = self.pool.alloc();
            }
            match slot {
                Some(m) => {
                    let addr = m.data_iova().0 - spec::NET_HDR_LEN as u64;
                    self.vq.post(
                        i,
                        &[Seg {
                            addr,
                            len,
                            write: true,
                        }],
                    );
                }
                None => missing += 1,
            }
        }
        // The device is told at DRIVER_OK (kick), not here.
        let _ = self.vq.publish();
        missing
    }

    /// Tells the device buffers are there (after DRIVER_OK).
    pub fn kick(&self) {
        self.notifier.notify();
    }

    /// Returns every buffer to its pool. Only while the device does not own
    /// the queue.
    pub fn release(&mut self) {
        for s in self.sw.iter_mut() {
            *s = None;
        }
    }

    /// Appends up to `out.spare()` received frames to `out`.
    #[inline]
    pub fn rx_burst(&mut self, out: &mut Burst<Mbuf>) -> usize {
        let max = out.spare();
        let len = self.buf_len();
        let mut got = 0;
        let mut posted = false;
        while got < max {
            let (id, used_len) = match self.stash.take() {
                Some(e) => e,
                None => match self.vq.pop_used() {
                    Ok(Some(e)) => e,
                    Ok(None) => break,
                    Err(_) => {
                        // The device claims more completions than there are
                        // buffers: take nothing from it.
                        self.stats.device_faults += 1;
                        break;
                    }
                },
            };
            let Some(fresh) = self.pool.alloc() else {
                self.stash = Some((id, used_len));
                self.stats.nombuf += 1;
                break;
            };
            let Some(m) = self.take_slot(id) else {
                // Not a descriptor of ours that the device had: drop the
                // entry (the fresh buffer goes back to the pool).
                self.stats.errors += 1;
                tracing::debug!(
                    queue = self.queue,
                    id,
                    used_len,
                    "used entry names no posted buffer"
                );
                continue;
            };
            let i = id as u16;
            let addr = fresh.data_iova().0 - spec::NET_HDR_LEN as u64;
            self.vq.post(
                i,
                &[Seg {
                    addr,
                    len,
                    write: true,
                }],
            );
            posted = true;
            self.sw[i as usize] = Some(fresh);
            if let Some(m) = self.complete(m, used_len) {
                if out.push(m).is_ok() {
                    got += 1;
                }
            }
        }
        if posted && self.vq.publish() {
            self.notifier.notify();
            self.stats.notifies += 1;
        }
        got
    }

    /// The buffer of descriptor `id`, if the device had it.
    #[inline(always)]
    fn take_slot(&mut self, id: u32) -> Option<Mbuf> {
        self.sw.get_mut(id as usize)?.take()
    }

    /// Turns a used buffer into a frame, or drops it.
    #[inline(always)]
    fn complete(&mut self, mut m: Mbuf, len: u32) -> Option<Mbuf> {
        let hdr = spec::NET_HDR_LEN as u32;
        if len <= hdr || len > self.buf_len() {
            self.stats.errors += 1;
            tracing::debug!(
                queue = self.queue,
                len,
                buf = self.buf_len(),
                "used length out of range"
            );
            return None;
        }
        let frame = (len - hdr) as usize;
        // The header the device wrote sits in the headroom, just before the
        // frame: read its flags through the mbuf's own window, then move the
        // window onto the frame.
        let Some(start) = m.headroom().checked_sub(spec::NET_HDR_LEN) else {
            self.stats.errors += 1;
            return None;
        };
        if !m.set_window(start, frame + spec::NET_HDR_LEN) {
            self.stats.errors += 1;
            return None;
        }
        let flags = if self.csum {
            csum_flags(m.data()[0])
        } else {
            RxFlags::empty()
        };
        m.adj(spec::NET_HDR_LEN);
        let meta = m.rx_mut();
        meta.port = self.port;
        meta.queue = self.queue;
        meta.flags = flags;
        meta.packet_type = PacketType::ETHER;
        self.stats.packets += 1;
        self.stats.bytes += frame as u64;
        Some(m)
    }
}

/// Receive checksum flags from the header (5.1.6.4): DATA_VALID means the
/// device checked it; NEEDS_CSUM means the frame came from a local sender
/// that left the checksum to be completed, so it has no wire error.
#[inline(always)]
pub fn csum_flags(hdr_flags: u8) -> RxFlags {
    if hdr_flags & (spec::NET_HDR_F_DATA_VALID | spec::NET_HDR_F_NEEDS_CSUM) != 0 {
        RxFlags::L4_CKSUM_GOOD
    } else {
        RxFlags::empty()
    }
}

impl std::fmt::Debug for RxVq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RxVq")
            .field("queue", &self.queue)
            .field("vq", &self.vq)
            .field("stats", &self.stats)
            .finish()
    }
}
