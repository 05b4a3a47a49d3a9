//! The queues of one configuration, shared by a PMD's control side and the
//! per-queue handles it gives the lcores, and the handshake between them
//! for stop, start and PF-reset recovery.
//!
//! `state` is the only thing a burst reads besides its own ring: one
//! acquire load. Its low bit says whether the queues run; the rest is an
//! epoch that the control side advances whenever it has stopped the
//! queues (stop, PF-reset recovery), which stops the device's DMA and
//! forgets the rings' positions.
//!
//! When it brings the queues up again, the control side programs every
//! ring register with head and tail at 0 and re-arms the rings parked in
//! their slots itself (their rx tails are set too). A handle that holds
//! its ring sees the new epoch at its next burst and resynchronises in
//! software: every rx descriptor rewritten with its buffer, in-flight
//! transmits freed (the device no longer owns them), positions back to 0.
//! Only once it sees the running bit does an rx handle move its tail,
//! which is when the device may fetch its descriptors again. So the device
//! never sees a descriptor the driver is rewriting, no burst waits, the
//! control side waits for no handle (an idle one resynchronises whenever it
//! next runs), and buffers are freed only after the queues stopped.
//!
//! A dropped handle parks its ring in its slot: the device may still own
//! its buffers, so they are freed only by the control side after a VF
//! reset.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use pollux_core::{
    Burst, Lease, Leases, Mbuf, PortStats, QueueCounters, QueueCounts, Queues, RxQueue, TxQueue,
};
use pollux_vfio::Bar;

use crate::family::Family;
use crate::rx::RxRing;
use crate::tx::TxRing;

/// One queue of a [`QueueSet`]: its ring while no handle holds it, and
/// the counters its handle publishes.
pub struct Slot<R> {
    ring: Mutex<Option<R>>,
    pub counters: QueueCounters,
}

impl<R> Slot<R> {
    pub fn new(ring: R) -> Slot<R> {
        Slot {
            ring: Mutex::new(Some(ring)),
            counters: QueueCounters::default(),
        }
    }

    /// The ring, if no handle holds it. A poisoned lock (a handle panicked
    /// while giving its ring back) still holds a consistent `Option`.
    pub fn parked(&self) -> MutexGuard<'_, Option<R>> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<R> std::fmt::Debug for Slot<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("counters", &self.counters.get())
            .finish()
    }
}

/// Where a ring is, for its registers: fixed from configure on.
#[derive(Clone, Copy, Debug)]
pub struct RingLayout {
    /// The queue's register index (ixgbevf with DCB: the tx queue the PF
    /// names; otherwise the queue's index).
    pub reg: u16,
    pub iova: u64,
    pub bytes: u32,
    pub initial_tail: u32,
}

/// Running bit of [`QueueSet`]'s state; the other bits are the epoch.
const RUNNING: u32 = 1;
const EPOCH: u32 = 2;

/// The queues of one configuration, shared by the control side and the
/// handles (see the module documentation for the handshake).
pub struct QueueSet<F: Family> {
    pub bar: Arc<Bar>,
    state: AtomicU32,
    pub rx_layout: Vec<RingLayout>,
    pub tx_layout: Vec<RingLayout>,
    /// Bytes of each rx buffer the device may write.
    pub rx_buf_size: u32,
    pub rx: Vec<Slot<RxRing<F>>>,
    pub tx: Vec<Slot<TxRing<F>>>,
}

impl<F: Family> QueueSet<F> {
    /// A queue set with every ring parked, in epoch 0, "never armed": the
    /// first start arms every ring.
    pub fn new(
        bar: Arc<Bar>,
        rx_layout: Vec<RingLayout>,
        tx_layout: Vec<RingLayout>,
        rx_buf_size: u32,
        rx: Vec<RxRing<F>>,
        tx: Vec<TxRing<F>>,
    ) -> QueueSet<F> {
        QueueSet {
            bar,
            state: AtomicU32::new(0),
            rx_layout,
            tx_layout,
            rx_buf_size,
            rx: rx.into_iter().map(Slot::new).collect(),
            tx: tx.into_iter().map(Slot::new).collect(),
        }
    }

    pub fn epoch(&self) -> u32 {
        self.state.load(Ordering::Acquire) & !RUNNING
    }

    /// Advances the epoch with the queues stopped; returns the new epoch.
    /// Call after the VF reset that stopped the device.
    pub fn next_epoch(&self) -> u32 {
        let e = self.epoch().wrapping_add(EPOCH);
        // Release: the VF reset above happens before any handle acts on
        // the new epoch (frees transmit buffers, rewrites descriptors).
        self.state.store(e, Ordering::Release);
        e
    }

    pub fn set_running(&self, epoch: u32) {
        // Release: the ring registers and tails written before this are in
        // place before a handle moves a tail again.
        self.state.store(epoch | RUNNING, Ordering::Release);
    }

    /// Re-arms every parked ring (rx: every slot given a buffer; tx:
    /// in-flight packets freed). `Err` with the queue whose pool ran dry.
    pub fn arm_parked(&self) -> Result<(), (u16, usize)> {
        for (i, s) in self.rx.iter().enumerate() {
            if let Some(r) = s.parked().as_mut() {
                let missing = r.arm();
                if missing > 0 {
                    return Err((i as u16, missing));
                }
            }
        }
        for s in &self.tx {
            if let Some(t) = s.parked().as_mut() {
                t.reset();
                s.counters.store(counts_tx(t));
            }
        }
        Ok(())
    }

    /// Returns the buffers of every parked ring. Only after a VF reset.
    pub fn release_parked(&self) {
        for s in &self.rx {
            if let Some(r) = s.parked().as_mut() {
                r.release();
            }
        }
        for s in &self.tx {
            if let Some(t) = s.parked().as_mut() {
                t.reset();
                s.counters.store(counts_tx(t));
            }
        }
    }

    pub fn counters(&self) -> PortStats {
        pollux_core::port::sum_queue_counters(
            self.rx.iter().map(|s| &s.counters),
            self.tx.iter().map(|s| &s.counters),
        )
    }

    /// A handle for every queue, each holding a lease of `leases`
    /// (`Port::take_queues`). A handle takes its ring if it is parked.
    pub fn handles(self: &Arc<Self>, leases: &Leases) -> Queues {
        let seen = self.state.load(Ordering::Acquire);
        let rx = (0..self.rx.len())
            .map(|i| {
                Box::new(VfRx {
                    ring: self.rx[i].parked().take(),
                    set: self.clone(),
                    queue: i,
                    seen,
                    kick: false,
                    _lease: leases.lease(),
                }) as Box<dyn RxQueue>
            })
            .collect();
        let tx = (0..self.tx.len())
            .map(|i| {
                Box::new(VfTx {
                    ring: self.tx[i].parked().take(),
                    set: self.clone(),
                    queue: i,
                    seen,
                    _lease: leases.lease(),
                }) as Box<dyn TxQueue>
            })
            .collect();
        Queues { rx, tx }
    }
}

impl<F: Family> std::fmt::Debug for QueueSet<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueSet")
            .field("state", &self.state.load(Ordering::Relaxed))
            .field("rx_layout", &self.rx_layout)
            .field("tx_layout", &self.tx_layout)
            .finish()
    }
}

pub fn counts_rx<F: Family>(r: &RxRing<F>) -> QueueCounts {
    QueueCounts {
        packets: r.stats.packets,
        bytes: r.stats.bytes,
        errors: r.stats.errors,
        dropped: r.stats.nombuf,
    }
}

pub fn counts_tx<F: Family>(t: &TxRing<F>) -> QueueCounts {
    QueueCounts {
        packets: t.stats.packets,
        bytes: t.stats.bytes,
        errors: t.stats.errors,
        dropped: 0,
    }
}

/// A receive queue of a VF, owned by the lcore that polls it.
pub struct VfRx<F: Family> {
    ring: Option<RxRing<F>>,
    set: Arc<QueueSet<F>>,
    queue: usize,
    seen: u32,
    /// Re-armed for the current epoch; the tail is still to be given to
    /// the device once the queues run.
    kick: bool,
    _lease: Lease,
}

/// A transmit queue of a VF, owned by the lcore that polls it.
pub struct VfTx<F: Family> {
    ring: Option<TxRing<F>>,
    set: Arc<QueueSet<F>>,
    queue: usize,
    seen: u32,
    _lease: Lease,
}

impl<F: Family> VfRx<F> {
    /// A state change (see [`QueueSet`]). Not inlined: it runs once per
    /// stop, start or recovery.
    #[cold]
    fn sync(&mut self, st: u32) {
        let Some(r) = self.ring.as_mut() else {
            self.seen = st;
            return;
        };
        if (st ^ self.seen) & !RUNNING != 0 {
            // A new epoch: the queues were stopped. Every slot of a ring a
            // handle holds has its buffer (a burst swaps in a fresh one
            // before it gives one away), so this only rewrites the
            // descriptors. Should one be missing, `seen` stays behind and
            // the next burst tries again: the device is never given a
            // descriptor without a buffer.
            if r.arm() > 0 {
                return;
            }
            self.kick = true;
        }
        if st & RUNNING != 0 && self.kick {
            // The control side programmed the queue (head and tail 0)
            // before it set the running bit, which the acquire load of
            // `st` saw; the rewritten descriptors must be visible to the
            // device before the tail lets it fetch them.
            pollux_core::barrier::dma_wmb();
            self.set
                .bar
                .write32(F::rdt(self.queue as u16), r.initial_tail());
            self.kick = false;
        }
        self.seen = st;
    }
}

impl<F: Family> RxQueue for VfRx<F> {
    #[inline]
    fn rx_burst(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
        let st = self.set.state.load(Ordering::Acquire);
        if st != self.seen {
            self.sync(st);
        }
        if self.seen & RUNNING == 0 || self.kick {
            return 0;
        }
        let Some(r) = self.ring.as_mut() else {
            return 0;
        };
        let n = r.rx_burst(&*self.set.bar, pkts);
        self.set.rx[self.queue].counters.store(counts_rx(r));
        n
    }
}

impl<F: Family> VfTx<F> {
    #[cold]
    fn sync(&mut self, st: u32) {
        if (st ^ self.seen) & !RUNNING != 0 {
            if let Some(t) = self.ring.as_mut() {
                // The queues were stopped before the epoch moved and are
                // programmed anew with head and tail 0: what the device had
                // not sent is freed here and the ring starts over at 0.
                t.reset();
                self.set.tx[self.queue].counters.store(counts_tx(t));
            }
        }
        self.seen = st;
    }
}

impl<F: Family> TxQueue for VfTx<F> {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
        let st = self.set.state.load(Ordering::Acquire);
        if st != self.seen {
            self.sync(st);
        }
        if st & RUNNING == 0 {
            return 0;
        }
        let Some(t) = self.ring.as_mut() else {
            return 0;
        };
        let n = t.tx_burst(&*self.set.bar, pkts);
        self.set.tx[self.queue].counters.store(counts_tx(t));
        n
    }
}

// A dropped handle parks its ring in its slot: the device may still own its
// buffers, so they are freed only by the control side after a VF reset.
impl<F: Family> Drop for VfRx<F> {
    fn drop(&mut self) {
        let s = &self.set.rx[self.queue];
        // The control side re-arms parked rings itself when it brings the
        // queues up.
        *s.parked() = self.ring.take();
    }
}

impl<F: Family> Drop for VfTx<F> {
    fn drop(&mut self) {
        *self.set.tx[self.queue].parked() = self.ring.take();
    }
}

impl<F: Family> std::fmt::Debug for VfRx<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(F::RX_HANDLE)
            .field("queue", &self.queue)
            .finish()
    }
}

impl<F: Family> std::fmt::Debug for VfTx<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(F::TX_HANDLE)
            .field("queue", &self.queue)
            .finish()
    }
}

/// The queue set's checks, run by each PMD with its own family (and here
/// with a stand-in): `testing` only.
#[cfg(any(test, feature = "testing"))]
pub mod checks {
    use super::*;
    use pollux_core::{AnonMemory, HugePages, MemoryProvider, Mempool, MempoolConfig};
    use std::sync::atomic::AtomicBool;
    use std::time::{Duration, Instant};

    use crate::desc::DescRing;

    fn ring<D: Copy>(n: u16) -> DescRing<D> {
        let r = AnonMemory::new(HugePages::Never)
            .allocate(n as usize * 16)
            .unwrap();
        DescRing::new(r, n).unwrap()
    }

    /// A queue set over rings in plain memory, as configure builds it.
    fn set<F: Family>(pool: &Mempool) -> Arc<QueueSet<F>> {
        let rx = RxRing::<F>::new(ring(64), pool.clone(), 0, 0);
        let tx = TxRing::<F>::new(ring(64), 0);
        let layout = |iova: u64, initial_tail| RingLayout {
            reg: 0,
            iova,
            bytes: 64 * 16,
            initial_tail,
        };
        Arc::new(QueueSet::new(
            Arc::new(Bar::plain_memory(0x4000)),
            vec![layout(rx.ring().iova().0, rx.initial_tail())],
            vec![layout(tx.ring().iova().0, 0)],
            2048,
            vec![rx],
            vec![tx],
        ))
    }

    fn handles<F: Family>(
        q: &Arc<QueueSet<F>>,
        leases: &Leases,
    ) -> (Box<dyn RxQueue>, Box<dyn TxQueue>) {
        let mut h = q.handles(leases);
        (h.rx.remove(0), h.tx.remove(0))
    }

    /// What bring_up does to the registers of a ring a handle holds
    /// (`rdh0`: queue 0's receive head register).
    fn program<F: Family>(q: &QueueSet<F>, rdh0: u32) {
        q.bar.write32(rdh0, 0);
        q.bar.write32(F::rdt(0), 0);
    }

    /// PF-reset recovery against handles polled on another thread: the
    /// control side never waits for a handle and a burst never waits for
    /// the control side; each handle resynchronises at its next burst and
    /// gives the device its rx tail only once the queues run; in-flight
    /// transmits are freed at each new epoch; every buffer is back at the
    /// end. Under the old design the recovery ran inside the burst and
    /// took the whole port.
    pub fn recovery_against_handles_polled_elsewhere<F: Family>(rdh0: u32) {
        let mut cfg = MempoolConfig::new("vf-test", 512);
        cfg.cache_size = 0;
        let pool = Mempool::new(cfg, &AnonMemory::new(HugePages::Never)).unwrap();
        let q = set::<F>(&pool);
        let leases = Leases::new();
        // Start: every ring parked, armed by the control side.
        let e = q.next_epoch();
        q.arm_parked().unwrap();
        q.set_running(e);
        assert_eq!(pool.available(), 512 - 64, "rx ring armed");
        let (mut rx, mut tx) = handles(&q, &leases);
        let done = Arc::new(AtomicBool::new(false));
        let (done2, pool2) = (done.clone(), pool.clone());
        let poller = std::thread::spawn(move || {
            let mut bursts = 0u64;
            let mut refused = 0u64;
            let mut b = Burst::new(8);
            while !done2.load(Ordering::Relaxed) {
                assert_eq!(rx.rx_burst(&mut b), 0, "no device writes here");
                pool2.alloc_bulk(&mut b, 8);
                b.iter_mut().for_each(|m| assert!(m.set_len(60)));
                if tx.tx_burst(&mut b) == 0 && !b.is_empty() {
                    refused += 1;
                }
                b.clear();
                bursts += 1;
            }
            (bursts, refused, rx, tx)
        });
        for _ in 0..50 {
            // What recovery_step does: stop, new epoch, program, run.
            let e = q.next_epoch();
            q.arm_parked().unwrap();
            program(&q, rdh0);
            std::thread::sleep(Duration::from_millis(1));
            assert_eq!(q.bar.read32(F::rdt(0)), 0, "no tail while stopped");
            q.set_running(e);
            let t0 = Instant::now();
            while q.bar.read32(F::rdt(0)) != 63 {
                assert!(
                    t0.elapsed() < Duration::from_secs(5),
                    "the handle never kicked"
                );
                std::thread::yield_now();
            }
        }
        done.store(true, Ordering::Relaxed);
        let (bursts, refused, rx, tx) = poller.join().unwrap();
        assert!(
            bursts > 50 && refused > 0,
            "{bursts} bursts, {refused} refused"
        );
        // The transmit ring never completes here (no device): what it held
        // was freed at each epoch.
        assert!(
            q.tx[0].counters.get().errors > 0,
            "in-flight frames dropped"
        );
        drop((rx, tx));
        assert!(q.rx[0].parked().is_some() && q.tx[0].parked().is_some());
        assert_eq!(leases.outstanding(), 0);
        q.next_epoch();
        q.release_parked();
        assert_eq!(pool.available(), 512, "every buffer back");
    }

    /// A handle that has not run since the queues stopped is no obstacle:
    /// the control side brings them up without it, and the handle catches
    /// up at its next burst.
    pub fn an_idle_handle_catches_up_later<F: Family>(rdh0: u32, tdt_after_restart: u32) {
        let pool = Mempool::new(
            MempoolConfig::new("vf-test2", 256),
            &AnonMemory::new(HugePages::Never),
        )
        .unwrap();
        let q = set::<F>(&pool);
        let leases = Leases::new();
        let e = q.next_epoch();
        q.arm_parked().unwrap();
        let (mut rx, mut tx) = handles(&q, &leases);
        let mut b = Burst::new(4);
        assert!(pool.alloc_bulk(&mut b, 4));
        b.iter_mut().for_each(|m| assert!(m.set_len(60)));
        assert_eq!(tx.tx_burst(&mut b), 0, "armed but not running");
        assert_eq!(b.len(), 4, "the packets stay the caller's");
        q.set_running(e);
        assert_eq!(tx.tx_burst(&mut b), 4);
        // Three stops and starts while the handles sleep.
        for _ in 0..3 {
            let e = q.next_epoch();
            program(&q, rdh0);
            q.set_running(e);
        }
        assert_eq!(q.bar.read32(F::rdt(0)), 0);
        assert_eq!(rx.rx_burst(&mut b), 0);
        assert_eq!(q.bar.read32(F::rdt(0)), 63, "tail given on the first burst");
        assert!(pool.alloc_bulk(&mut b, 4));
        b.iter_mut().for_each(|m| assert!(m.set_len(60)));
        assert_eq!(tx.tx_burst(&mut b), 4);
        assert_eq!(
            q.bar.read32(F::tdt(0)),
            tdt_after_restart,
            "the tx ring started over at 0"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::checks;
    use crate::desc::AdvTxDesc;
    use crate::Family;

    /// A stand-in family with igbvf's queue registers and no context
    /// descriptors.
    #[derive(Debug)]
    enum Plain {}

    impl Family for Plain {
        const RX_HANDLE: &'static str = "PlainRx";
        const TX_HANDLE: &'static str = "PlainTx";
        const RXD_ERR_FRAME: u32 = 0x0100_0000;
        const RXD_ERR_IPE: u32 = 0x4000_0000;
        const RXD_ERR_TCPE: u32 = 0x2000_0000;
        const RXD_L4_CHECKED: u32 = crate::adv::RXD_STAT_L4CS;
        const RSSTYPE_MASK: u16 = 0;
        const LB_VLAN_SWAP: bool = false;
        const TXD_CC: u32 = 0;
        fn rdt(q: u16) -> u32 {
            0x2818 + q as u32 * 0x100
        }
        fn tdt(q: u16) -> u32 {
            0x3818 + q as u32 * 0x100
        }
        type TxCtx = ();
        fn context_for(_: &pollux_core::TxOffload) -> Option<()> {
            None
        }
        fn ctx_desc(_: &()) -> AdvTxDesc {
            AdvTxDesc::default()
        }
    }

    #[test]
    fn recovery_against_handles_polled_elsewhere() {
        checks::recovery_against_handles_polled_elsewhere::<Plain>(0x2810);
    }

    #[test]
    fn an_idle_handle_catches_up_later() {
        checks::an_idle_handle_catches_up_later::<Plain>(0x2810, 4);
    }
}
