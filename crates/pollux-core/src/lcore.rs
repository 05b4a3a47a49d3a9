//! Lcores: polling threads pinned to cores, and the per-thread slot that
//! indexes per-lcore caches.
//!
//! Every thread that touches a [`Mempool`](crate::Mempool) takes one of
//! [`MAX_LCORES`] slots the first time it needs one and gives it back when it
//! exits. A slot belongs to exactly one live thread, which is what makes the
//! per-lcore mempool caches safe without locks. Threads beyond the limit get
//! no slot and use the shared free list directly.

use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Number of lcore slots (DPDK's default `RTE_MAX_LCORE` is 128 too).
pub const MAX_LCORES: usize = 128;

const UNSET: u32 = u32::MAX;
const NO_SLOT: u32 = u32::MAX - 1;

static SLOTS: [AtomicBool; MAX_LCORES] = [const { AtomicBool::new(false) }; MAX_LCORES];

thread_local! {
    // No destructor, so it stays readable while other thread-locals are torn
    // down (an mbuf dropped from a TLS destructor still finds it).
    static SLOT: Cell<u32> = const { Cell::new(UNSET) };
    static GUARD: SlotGuard = const { SlotGuard { slot: Cell::new(UNSET) } };
}

struct SlotGuard {
    slot: Cell<u32>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let s = self.slot.get();
        if (s as usize) < MAX_LCORES {
            // Forget the slot before releasing it, so nothing on this thread
            // can use a slot another thread may take next.
            let _ = SLOT.try_with(|c| c.set(NO_SLOT));
            SLOTS[s as usize].store(false, Ordering::Release);
        }
    }
}

/// This thread's lcore slot, taking a free one on first use.
///
/// `None` when all [`MAX_LCORES`] slots are taken or the thread is exiting.
#[inline]
pub fn slot() -> Option<usize> {
    let s = SLOT.with(|c| c.get());
    if (s as usize) < MAX_LCORES {
        Some(s as usize)
    } else if s == NO_SLOT {
        None
    } else {
        acquire_slot()
    }
}

#[cold]
fn acquire_slot() -> Option<usize> {
    for (i, flag) in SLOTS.iter().enumerate() {
        if flag
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            // Register the guard first; if this thread is already tearing
            // down its thread-locals, give the slot back at once.
            let registered = GUARD.try_with(|g| g.slot.set(i as u32)).is_ok();
            if !registered {
                flag.store(false, Ordering::Release);
                SLOT.with(|c| c.set(NO_SLOT));
                return None;
            }
            SLOT.with(|c| c.set(i as u32));
            return Some(i);
        }
    }
    SLOT.with(|c| c.set(NO_SLOT));
    None
}

/// A stop signal shared by the polling loops of one application.
#[derive(Clone, Debug, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// A new, unset flag.
    pub fn new() -> StopFlag {
        StopFlag::default()
    }

    /// Asks every loop watching this flag to stop.
    pub fn stop(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether [`StopFlag::stop`] was called.
    #[inline]
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// The flag itself, for signal handlers (`signal_hook::flag::register`).
    pub fn as_atomic(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }
}

/// What a polling loop is told about where it runs.
#[derive(Clone, Debug)]
pub struct LcoreCtx {
    /// Index of this lcore among those the application launched.
    pub index: usize,
    /// The CPU it is pinned to, if any.
    pub cpu: Option<usize>,
    /// Stop signal.
    pub stop: StopFlag,
}

/// A running lcore.
#[derive(Debug)]
pub struct Lcore<R> {
    handle: JoinHandle<R>,
    cpu: Option<usize>,
}

impl<R> Lcore<R> {
    /// The CPU this lcore is pinned to.
    pub fn cpu(&self) -> Option<usize> {
        self.cpu
    }

    /// Waits for the loop to return. A panic in the loop is returned as an
    /// error, not propagated.
    pub fn join(self) -> Result<R, String> {
        self.handle.join().map_err(|e| {
            e.downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| e.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "lcore panicked".to_string())
        })
    }
}

/// CPUs this process may run on.
pub fn available_cpus() -> Vec<usize> {
    core_affinity::get_core_ids()
        .map(|ids| ids.into_iter().map(|c| c.id).collect())
        .unwrap_or_default()
}

/// Pins the calling thread to `cpu` (the main lcore, in DPDK's terms), so
/// that it and the threads it starts afterwards stay off the forwarding
/// CPUs. False if the OS refused.
pub fn pin_current(cpu: usize) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
}

/// Starts a polling loop on its own thread, pinned to `cpu` when given.
///
/// The thread takes its lcore slot before calling `f`, so the first packet
/// it allocates already uses its own mempool cache.
pub fn launch<F, R>(index: usize, cpu: Option<usize>, stop: StopFlag, f: F) -> io::Result<Lcore<R>>
where
    F: FnOnce(&LcoreCtx) -> R + Send + 'static,
    R: Send + 'static,
{
    let handle = std::thread::Builder::new()
        .name(format!("lcore-{index}"))
        .spawn(move || {
            if let Some(id) = cpu {
                if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
                    tracing::warn!(cpu = id, "could not pin lcore {index}; it runs unpinned");
                }
            }
            let _ = slot();
            let ctx = LcoreCtx { index, cpu, stop };
            f(&ctx)
        })?;
    Ok(Lcore { handle, cpu })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_threads_have_distinct_slots_and_exited_ones_give_them_back() {
        let barrier = Arc::new(std::sync::Barrier::new(4));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let b = barrier.clone();
                std::thread::spawn(move || {
                    let s = slot().unwrap();
                    b.wait(); // all four alive at once
                    s
                })
            })
            .collect();
        let mut slots: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        slots.sort();
        slots.dedup();
        assert_eq!(slots.len(), 4);
        // Threads exited: their slots are free again.
        for s in slots {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while SLOTS[s].load(Ordering::Acquire) && std::time::Instant::now() < deadline {
                std::thread::yield_now();
            }
        }
    }

    #[test]
    fn launch_runs_until_stopped() {
        let stop = StopFlag::new();
        let l = launch(0, None, stop.clone(), |ctx| {
            let mut n = 0u64;
            while !ctx.stop.is_stopped() {
                n += 1;
                std::hint::spin_loop();
            }
            n
        })
        .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        stop.stop();
        assert!(l.join().unwrap() > 0);
    }

    #[test]
    fn a_panicking_loop_is_an_error() {
        let l = launch(1, None, StopFlag::new(), |_| -> u32 { panic!("boom") }).unwrap();
        assert_eq!(l.join().unwrap_err(), "boom");
    }
}
