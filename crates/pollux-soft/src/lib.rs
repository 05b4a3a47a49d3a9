//! Software ports: Pollux's counterparts of DPDK's `net_null`, `net_ring`,
//! `net_af_packet` and `net_pcap`.
//!
//! They implement [`pollux_core::Port`] like a NIC driver does, so every
//! application, the bond and the tests run without hardware: the port is
//! the control side, and [`Port::take_queues`](pollux_core::Port::take_queues)
//! hands out one `Send` [`RxQueue`](pollux_core::RxQueue) and
//! [`TxQueue`](pollux_core::TxQueue) per queue for the lcores to poll. A
//! burst takes no lock and does no atomic read-modify-write: per-queue
//! counters are [`QueueCounters`](pollux_core::QueueCounters) with one
//! writer, the started flag a [`RunFlag`](pollux_core::RunFlag), and what a
//! queue works on (a ring end, a file, a PACKET_MMAP ring) moves into its
//! handle at `take_queues` and back to the port when the handle is dropped.
//!
//! - [`null::NullPort`]: rx hands out fresh mbufs of a set length, tx frees.
//! - [`ring::RingPort`]: ports joined back to back through lock-free rings.
//! - [`af_packet::AfPacketPort`]: a Linux interface through PACKET_MMAP rings.
//! - [`pcap::PcapPort`]: rx replays a pcap file, tx writes one.
//! - [`vdev`]: builds any of them from a DPDK-style device string
//!   (`null0`, `ring0`, `af_packet0,iface=veth0`, `pcap0,rx=in.pcap`).

pub mod af_packet;
mod control;
/// Entry points for the fuzz targets and the corpus replay: a test double,
/// behind the `testing` feature.
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod fuzz_harness;
pub mod null;
pub mod pcap;
pub mod ring;
pub mod vdev;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// A fresh locally administered MAC address for a software port
/// (02:70:6f:xx:xx:xx, "po" for Pollux, then a process-wide counter).
pub(crate) fn next_mac() -> pollux_core::MacAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed).to_be_bytes();
    pollux_core::MacAddr([0x02, 0x70, 0x6f, n[1], n[2], n[3]])
}

/// Errors of building software ports.
#[derive(Debug, thiserror::Error)]
pub enum SoftError {
    #[error("bad device string {spec:?}: {why}")]
    BadSpec { spec: String, why: String },
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl SoftError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> SoftError {
        SoftError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Where the state of one queue (a ring end, a file, a PACKET_MMAP ring)
/// waits while no handle holds it: [`Dock::undock`] moves it into a handle
/// at `take_queues`, and the handle's [`Docked`] puts it back when it is
/// dropped, so the next start hands it out again and the control side can
/// work on it in between. The lock is taken at hand-out, at drop and by
/// the control side, never in a burst.
pub(crate) struct Dock<T>(Arc<Mutex<Option<T>>>);

impl<T> Dock<T> {
    pub(crate) fn new(item: T) -> Dock<T> {
        Dock(Arc::new(Mutex::new(Some(item))))
    }

    fn lock(&self) -> MutexGuard<'_, Option<T>> {
        // Nothing panics while holding the lock with the item half-changed
        // in a way that matters more than losing it would.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The item, moved out for a handle; `None` while a handle holds it.
    pub(crate) fn undock(&self) -> Option<Docked<T>> {
        let item = self.lock().take()?;
        Some(Docked {
            item: Some(item),
            home: self.0.clone(),
        })
    }

    /// Runs `f` on the item if it is here (no handle holds it).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        self.lock().as_mut().map(f)
    }

    /// Whether the item is here.
    pub(crate) fn is_docked(&self) -> bool {
        self.lock().is_some()
    }
}

impl<T> std::fmt::Debug for Dock<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_docked() {
            "Dock(docked)"
        } else {
            "Dock(out)"
        })
    }
}

/// A docked item held by a handle; goes back to its [`Dock`] on drop.
pub(crate) struct Docked<T> {
    /// `Some` until `drop`.
    item: Option<T>,
    home: Arc<Mutex<Option<T>>>,
}

impl<T> Docked<T> {
    #[inline(always)]
    pub(crate) fn get(&mut self) -> &mut T {
        match &mut self.item {
            Some(t) => t,
            None => unreachable!("a docked item is taken only by drop"),
        }
    }
}

impl<T> Drop for Docked<T> {
    fn drop(&mut self) {
        if let Some(item) = self.item.take() {
            *self.home.lock().unwrap_or_else(PoisonError::into_inner) = Some(item);
        }
    }
}

/// A counter with one writer (the handle that owns it) read by the control
/// side: an update is a relaxed load and store, not a read-modify-write,
/// like [`QueueCounters`](pollux_core::QueueCounters).
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owner calls this.
    #[inline(always)]
    pub(crate) fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
