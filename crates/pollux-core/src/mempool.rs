//! [`Mempool`]: fixed-size packet buffers with a lock-free free list and a
//! per-lcore cache.
//!
//! Buffers are carved from one [`DmaRegion`] that a [`MemoryProvider`] maps
//! (anonymous memory for software ports, IOMMU-mapped memory for NICs).
//! Their headers live in ordinary memory beside it. Free buffers sit in an
//! MPMC [`Ring`] of header addresses; in front of it each lcore slot (see
//! [`crate::lcore`]) has a cache, as in DPDK's `rte_mempool`: allocations and
//! frees touch only the calling thread's cache until it runs empty or past
//! 1.5 times its size, and then move a whole batch to or from the ring.

use std::cell::UnsafeCell;
use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;

use crate::lcore::{self, MAX_LCORES};
use crate::mbuf::{MbufHeader, HEADROOM};
use crate::mem::{DmaRegion, Iova, MemError, MemoryProvider};
use crate::ring::Ring;
use crate::{Burst, Mbuf};

/// Largest per-lcore cache (DPDK's `RTE_MEMPOOL_CACHE_MAX_SIZE`).
pub const MAX_CACHE_SIZE: usize = 512;

/// Default buffer size: 2 KiB of data room plus the headroom
/// (DPDK's `RTE_MBUF_DEFAULT_BUF_SIZE`).
pub const DEFAULT_DATA_ROOM: u16 = 2048 + HEADROOM;

/// How to build a [`Mempool`].
#[derive(Clone, Debug)]
pub struct MempoolConfig {
    /// Name for logs and stats.
    pub name: String,
    /// Number of buffers.
    pub size: usize,
    /// Bytes per buffer, headroom included.
    pub data_room: u16,
    /// Buffers each lcore keeps in its cache (0 disables the caches).
    pub cache_size: usize,
}

impl MempoolConfig {
    /// `size` buffers of the default size with a 256-buffer cache.
    pub fn new(name: impl Into<String>, size: usize) -> MempoolConfig {
        MempoolConfig {
            name: name.into(),
            size,
            data_room: DEFAULT_DATA_ROOM,
            cache_size: 256.min(size / 2),
        }
    }
}

/// Why a pool could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MempoolError {
    #[error("mempool {name}: size must be at least 1")]
    Empty { name: String },
    #[error("mempool {name}: data room {data_room} is smaller than the {HEADROOM}-byte headroom")]
    DataRoom { name: String, data_room: u16 },
    #[error(
        "mempool {name}: cache size {cache} exceeds {max} (and must not exceed the pool size)"
    )]
    Cache {
        name: String,
        cache: usize,
        max: usize,
    },
    #[error("mempool {name}: {size} buffers is more than a pool can hold")]
    TooLarge { name: String, size: usize },
    #[error("mempool {name}: cannot get memory from the {provider} provider")]
    Memory {
        name: String,
        provider: String,
        #[source]
        source: MemError,
    },
}

struct LocalCache {
    /// Number of cached objects. Written only by the slot's owner; read by
    /// anyone for [`Mempool::available`].
    len: AtomicUsize,
    /// Odd while the owner moves buffers between this cache and the ring
    /// (a seqlock written only by the owner): a count read across such a
    /// move could see the moved buffers in both places, or in neither.
    moving: AtomicUsize,
    /// Header addresses; only the slot's owner touches them.
    objs: UnsafeCell<Box<[usize]>>,
}

impl LocalCache {
    /// Starts a move between this cache and the ring (owner only).
    #[inline]
    fn begin_move(&self) -> usize {
        let seq = self.moving.load(Ordering::Relaxed);
        self.moving.store(seq.wrapping_add(1), Ordering::Relaxed);
        // Release fence: the odd value is ordered before the moves' writes
        // (the cache length, the ring's indices), so a reader that sees
        // any of them sees the move under way (the seqlock of crossbeam's
        // AtomicCell and of Linux's seqcount: a store, then smp_wmb()).
        std::sync::atomic::fence(Ordering::Release);
        seq
    }

    /// Ends a move (owner only).
    #[inline]
    fn end_move(&self, seq: usize) {
        // Release: the moves' writes happen before the even value.
        self.moving.store(seq.wrapping_add(2), Ordering::Release);
    }
}

pub(crate) struct PoolInner {
    name: String,
    size: usize,
    data_room: u16,
    cache_size: usize,
    flush_threshold: usize,
    ring: Ring<usize>,
    caches: Box<[CachePadded<LocalCache>]>,
    headers: Box<[UnsafeCell<MbufHeader>]>,
    pub(crate) region: DmaRegion,
}

// SAFETY: headers are reached only through the Mbuf that owns them or,
// while free, through the ring or the cache of exactly one lcore slot;
// cache storage is touched only by the thread that owns the slot.
unsafe impl Send for PoolInner {}
// SAFETY: as above.
unsafe impl Sync for PoolInner {}

impl PoolInner {
    #[inline(always)]
    fn cache(&self) -> Option<&LocalCache> {
        if self.cache_size == 0 {
            return None;
        }
        lcore::slot().map(|s| &*self.caches[s])
    }

    /// Returns a buffer to the pool.
    ///
    /// # Safety
    /// `hdr` must be a header of this pool that no Mbuf refers to anymore.
    #[inline]
    pub(crate) unsafe fn put(&self, hdr: NonNull<MbufHeader>) {
        let addr = hdr.as_ptr() as usize;
        if let Some(cache) = self.cache() {
            // SAFETY: this thread owns its lcore slot, so nobody else touches
            // this cache's storage.
            let objs = unsafe { &mut *cache.objs.get() };
            let mut len = cache.len.load(Ordering::Relaxed);
            objs[len] = addr;
            len += 1;
            if len >= self.flush_threshold {
                // Keep `cache_size`, hand the rest back. The ring holds every
                // buffer of the pool, so it always has room.
                let seq = cache.begin_move();
                cache.len.store(self.cache_size, Ordering::Relaxed);
                let ok = self.ring.enqueue_bulk_copy(&objs[self.cache_size..len]);
                debug_assert!(ok);
                cache.end_move(seq);
                return;
            }
            // Release: pairs with the Acquire in `available`, so a count that
            // includes this buffer is seen only after the buffer is back.
            cache.len.store(len, Ordering::Release);
        } else {
            let ok = self.ring.enqueue_bulk_copy(&[addr]);
            debug_assert!(ok);
        }
    }

    #[inline(always)]
    fn make_mbuf(addr: usize) -> Mbuf {
        let mut hdr = NonNull::new(addr as *mut MbufHeader).expect("null header in free list");
        // SAFETY: addresses in the free list are headers of this pool that no
        // Mbuf holds; taking one out of the list makes us the sole owner.
        unsafe {
            hdr.as_mut().reset();
            Mbuf::from_header(hdr)
        }
    }

    /// Free buffers: exact when the pool is quiet, never more than the
    /// truth while buffers move, because the pool is freed when this
    /// reaches its size (see `PoolOwner`). A count taken while an owner
    /// moves buffers between its cache and the ring is retried; when no
    /// clean count comes after many tries, 0 (the pool is then leaked, not
    /// freed).
    fn available(&self) -> usize {
        for _ in 0..10_000 {
            // Seqlock reader: the move counters before and after the
            // counts; equal and even means no move overlapped them.
            let (before, moving) = self
                .caches
                .iter()
                .map(|c| c.moving.load(Ordering::Acquire))
                .fold((0usize, false), |(a, odd), m| {
                    (a.wrapping_add(m), odd || m & 1 == 1)
                });
            let cached: usize = self
                .caches
                .iter()
                .map(|c| c.len.load(Ordering::Acquire))
                .sum();
            let free = self.ring.len() + cached;
            std::sync::atomic::fence(Ordering::Acquire);
            // Counters only grow, so an unchanged sum means no cache
            // changed its counter in between.
            let after: usize = self
                .caches
                .iter()
                .map(|c| c.moving.load(Ordering::Relaxed))
                .fold(0, |a, m| a.wrapping_add(m));
            if before == after && !moving {
                return free.min(self.size);
            }
            std::hint::spin_loop();
        }
        0
    }
}

/// Owns the pool; frees it when the last handle goes, unless buffers are
/// still out, in which case it is leaked so those buffers stay valid.
struct PoolOwner(NonNull<PoolInner>);

// SAFETY: PoolInner is Send + Sync; the owner only frees it.
unsafe impl Send for PoolOwner {}
// SAFETY: as above.
unsafe impl Sync for PoolOwner {}

impl Drop for PoolOwner {
    fn drop(&mut self) {
        // SAFETY: the pointer came from Box::into_raw and is freed only here.
        let inner = unsafe { self.0.as_ref() };
        let free = inner.available();
        if free == inner.size {
            // SAFETY: every buffer is back, so no Mbuf points into the pool
            // and no other handle exists (this is the last one).
            drop(unsafe { Box::from_raw(self.0.as_ptr()) });
        } else {
            tracing::warn!(
                pool = inner.name,
                outstanding = inner.size - free,
                "mempool dropped with buffers still in use; leaking it so they stay valid"
            );
        }
    }
}

/// A pool of packet buffers. Cloning gives another handle to the same pool.
#[derive(Clone)]
pub struct Mempool {
    owner: Arc<PoolOwner>,
}

impl Mempool {
    /// Builds a pool with memory from `provider`.
    pub fn new(cfg: MempoolConfig, provider: &dyn MemoryProvider) -> Result<Mempool, MempoolError> {
        let MempoolConfig {
            name,
            size,
            data_room,
            cache_size,
        } = cfg;
        if size == 0 {
            return Err(MempoolError::Empty { name });
        }
        if data_room < HEADROOM {
            return Err(MempoolError::DataRoom { name, data_room });
        }
        if cache_size > MAX_CACHE_SIZE || cache_size > size {
            return Err(MempoolError::Cache {
                name,
                cache: cache_size,
                max: MAX_CACHE_SIZE,
            });
        }
        let ring = Ring::new(size).map_err(|_| MempoolError::TooLarge {
            name: name.clone(),
            size,
        })?;
        // Each buffer starts on a cache line.
        let elt = (data_room as usize).next_multiple_of(64);
        let region = provider
            .allocate(elt * size)
            .map_err(|source| MempoolError::Memory {
                name: name.clone(),
                provider: provider.name().to_string(),
                source,
            })?;
        let pool_ptr: *mut PoolInner = Box::into_raw(Box::new(PoolInner {
            name,
            size,
            data_room,
            cache_size,
            flush_threshold: cache_size + cache_size / 2,
            ring,
            caches: (0..MAX_LCORES)
                .map(|_| {
                    CachePadded::new(LocalCache {
                        len: AtomicUsize::new(0),
                        moving: AtomicUsize::new(0),
                        objs: UnsafeCell::new(vec![0; cache_size * 2].into_boxed_slice()),
                    })
                })
                .collect(),
            headers: Box::new([]),
            region,
        }));
        // SAFETY: just allocated, not shared yet.
        let inner = unsafe { &mut *pool_ptr };
        let base = inner.region.as_ptr();
        let iova = inner.region.iova();
        inner.headers = (0..size)
            .map(|i| {
                UnsafeCell::new(MbufHeader {
                    // SAFETY: i * elt + elt <= region length.
                    buf_addr: unsafe { base.add(i * elt) },
                    buf_iova: iova.offset((i * elt) as u64),
                    pool: pool_ptr,
                    data_off: HEADROOM,
                    data_len: 0,
                    buf_len: data_room,
                    rx: Default::default(),
                    tx: Default::default(),
                })
            })
            .collect();
        for h in inner.headers.iter() {
            let ok = inner.ring.enqueue_bulk_copy(&[h.get() as usize]);
            debug_assert!(ok);
        }
        Ok(Mempool {
            // SAFETY: Box::into_raw never returns null.
            owner: Arc::new(PoolOwner(unsafe { NonNull::new_unchecked(pool_ptr) })),
        })
    }

    #[inline(always)]
    fn inner(&self) -> &PoolInner {
        // SAFETY: the owner keeps the pool alive at least as long as this handle.
        unsafe { self.owner.0.as_ref() }
    }

    pub(crate) fn inner_ptr(&self) -> *const PoolInner {
        self.owner.0.as_ptr()
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.inner().name
    }

    /// Number of buffers in the pool.
    pub fn size(&self) -> usize {
        self.inner().size
    }

    /// Bytes per buffer, headroom included.
    pub fn data_room(&self) -> u16 {
        self.inner().data_room
    }

    /// Buffers free right now, in the shared list and in every lcore cache.
    ///
    /// Exact when no other thread is allocating or freeing (after joining the
    /// lcores, for example); tests use it to prove nothing leaked.
    pub fn available(&self) -> usize {
        self.inner().available()
    }

    /// Buffers currently held by mbufs.
    pub fn in_use(&self) -> usize {
        self.size() - self.available()
    }

    /// Device address and length of the memory the buffers are carved from,
    /// so a driver can check that its device can reach it.
    pub fn iova_range(&self) -> (Iova, usize) {
        let r = &self.inner().region;
        (r.iova(), r.len())
    }

    /// Whether the buffers are backed by huge pages.
    pub fn is_huge(&self) -> bool {
        self.inner().region.is_huge()
    }

    /// One buffer, or `None` when the pool is empty.
    #[inline]
    pub fn alloc(&self) -> Option<Mbuf> {
        let mut one = [0usize];
        self.take(&mut one).then(|| PoolInner::make_mbuf(one[0]))
    }

    /// Appends exactly `n` fresh mbufs to `dst`, or none (when the pool has
    /// fewer than `n` free or `dst` has no room for them). Like
    /// `rte_pktmbuf_alloc_bulk`.
    #[inline]
    pub fn alloc_bulk(&self, dst: &mut Burst<Mbuf>, n: usize) -> bool {
        if n > dst.spare() {
            return false;
        }
        let inner = self.inner();
        if let Some(cache) = inner.cache() {
            if n <= inner.cache_size {
                // SAFETY: this thread owns its lcore slot and so this cache.
                let objs = unsafe { &mut *cache.objs.get() };
                let mut len = cache.len.load(Ordering::Relaxed);
                if len < n {
                    // Refill to cache_size + n, or at least to n.
                    let want = inner.cache_size + n - len;
                    let seq = cache.begin_move();
                    let got = if inner.ring.dequeue_bulk_copy(&mut objs[len..len + want]) {
                        len += want;
                        true
                    } else if inner.ring.dequeue_bulk_copy(&mut objs[len..n]) {
                        len = n;
                        true
                    } else {
                        false
                    };
                    cache.len.store(len, Ordering::Relaxed);
                    cache.end_move(seq);
                    if !got {
                        return false;
                    }
                }
                let to = dst.back_ptr();
                for i in 0..n {
                    // SAFETY: `to` has room for spare() >= n mbufs.
                    unsafe { to.add(i).write(PoolInner::make_mbuf(objs[len - 1 - i])) };
                }
                // SAFETY: n slots were written at the back just above.
                unsafe { dst.commit_back(n) };
                cache.len.store(len - n, Ordering::Release);
                return true;
            }
        }
        // Bursts larger than the cache (or threads without a cache) go to the
        // shared ring. Up to testpmd's largest burst the addresses fit on the
        // stack, so this path does not allocate either.
        const STACK: usize = 512;
        let mut on_stack = [0usize; STACK];
        let mut on_heap = Vec::new();
        let addrs: &mut [usize] = if n <= STACK {
            &mut on_stack[..n]
        } else {
            on_heap.resize(n, 0);
            &mut on_heap
        };
        if !self.take(addrs) {
            return false;
        }
        dst.extend(addrs.iter().map(|&a| PoolInner::make_mbuf(a)));
        true
    }

    /// Fills `out` with free header addresses, all or none.
    fn take(&self, out: &mut [usize]) -> bool {
        let inner = self.inner();
        let n = out.len();
        if let Some(cache) = inner.cache() {
            // SAFETY: this thread owns its lcore slot and so this cache.
            let objs = unsafe { &*cache.objs.get() };
            let len = cache.len.load(Ordering::Relaxed);
            if len >= n {
                out.copy_from_slice(&objs[len - n..len]);
                cache.len.store(len - n, Ordering::Release);
                return true;
            }
        }
        inner.ring.dequeue_bulk_copy(out)
    }
}

impl fmt::Debug for Mempool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mempool")
            .field("name", &self.name())
            .field("size", &self.size())
            .field("available", &self.available())
            .field("data_room", &self.data_room())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::{AnonMemory, HugePages};

    fn pool(size: usize, cache: usize) -> Mempool {
        let mut cfg = MempoolConfig::new("test", size);
        cfg.cache_size = cache;
        Mempool::new(cfg, &AnonMemory::new(HugePages::Never)).unwrap()
    }

    #[test]
    fn alloc_until_empty_then_all_come_back() {
        let p = pool(100, 8);
        let mut held = Vec::new();
        while let Some(m) = p.alloc() {
            held.push(m);
        }
        assert_eq!(held.len(), 100);
        assert_eq!(p.available(), 0);
        let mut b = Burst::new(4);
        assert!(!p.alloc_bulk(&mut b, 1));
        drop(held);
        assert_eq!(p.available(), 100);
    }

    #[test]
    fn bulk_is_all_or_nothing() {
        let p = pool(10, 4);
        let mut b = Burst::new(16);
        assert!(p.alloc_bulk(&mut b, 8));
        assert!(!p.alloc_bulk(&mut b, 3), "only 2 left");
        assert_eq!(b.len(), 8);
        assert!(p.alloc_bulk(&mut b, 2));
        assert_eq!(p.available(), 0);
        b.clear();
        assert_eq!(p.available(), 10);
    }

    #[test]
    fn buffers_are_distinct_and_windows_are_checked() {
        let p = pool(64, 0);
        let mut b = Burst::new(64);
        assert!(p.alloc_bulk(&mut b, 64));
        let mut iovas: Vec<_> = b.iter().map(|m| m.buf_iova()).collect();
        iovas.sort();
        iovas.dedup();
        assert_eq!(iovas.len(), 64);
        let m = &mut b.as_mut_slice()[0];
        assert_eq!(m.headroom(), HEADROOM as usize);
        assert!(m.append(100).is_some());
        assert_eq!(m.len(), 100);
        assert!(m.prepend(14).is_some());
        assert_eq!(m.len(), 114);
        assert!(m.prepend(200).is_none());
        assert!(!m.set_len(5000));
        assert!(m.adj(14) && m.trim(50));
        assert_eq!(m.len(), 50);
        assert_eq!(m.tailroom(), 2048 - 50);
    }

    #[test]
    fn a_freed_buffer_comes_back_reset() {
        let p = pool(1, 0);
        let mut m = p.alloc().unwrap();
        m.copy_from(&[1, 2, 3]);
        m.rx_mut().vlan_tci = 7;
        m.adj(1);
        drop(m);
        let m = p.alloc().unwrap();
        assert_eq!(m.len(), 0);
        assert_eq!(m.headroom(), HEADROOM as usize);
        assert_eq!(m.rx().vlan_tci, 0);
    }

    #[test]
    fn bad_configs_are_errors() {
        let mem = AnonMemory::default();
        assert!(matches!(
            Mempool::new(MempoolConfig::new("a", 0), &mem),
            Err(MempoolError::Empty { .. })
        ));
        let mut c = MempoolConfig::new("b", 10);
        c.data_room = 64;
        assert!(matches!(
            Mempool::new(c, &mem),
            Err(MempoolError::DataRoom { .. })
        ));
        let mut c = MempoolConfig::new("c", 10_000);
        c.cache_size = 513;
        assert!(matches!(
            Mempool::new(c, &mem),
            Err(MempoolError::Cache { .. })
        ));
    }

    #[test]
    fn threads_share_a_pool_without_losing_buffers() {
        let p = pool(4096, 64);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let p = p.clone();
                std::thread::spawn(move || {
                    let mut b = Burst::new(32);
                    for i in 0..20_000 {
                        let n = 1 + (i + t) % 32;
                        if p.alloc_bulk(&mut b, n) {
                            for m in b.iter_mut() {
                                m.set_len(60);
                                m.data_mut()[0] = t as u8;
                            }
                            assert!(b.iter().all(|m| m.data()[0] == t as u8));
                            b.clear();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(p.available(), 4096);
    }

    #[test]
    fn mbufs_cross_threads_and_return_to_the_right_pool() {
        let a = pool(64, 16);
        let b = pool(64, 16);
        let mut burst = Burst::new(64);
        assert!(a.alloc_bulk(&mut burst, 32));
        assert!(b.alloc_bulk(&mut burst, 32));
        assert!(burst.as_slice()[0].is_from(&a) && burst.as_slice()[40].is_from(&b));
        std::thread::spawn(move || drop(burst)).join().unwrap();
        assert_eq!((a.available(), b.available()), (64, 64));
    }

    #[test]
    fn dropping_the_pool_before_its_mbufs_is_safe() {
        let p = pool(8, 0);
        let mut m = p.alloc().unwrap();
        drop(p);
        m.copy_from(b"still valid");
        assert_eq!(m.data(), b"still valid");
    }
}

#[cfg(test)]
mod count_tests {
    use super::*;
    use crate::mem::{AnonMemory, HugePages};
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    /// `available()` must never count a buffer twice: the pool is freed
    /// when it reports every buffer back, so an over-count frees it under
    /// an mbuf still in use. Two workers each keep 8 mbufs for the whole
    /// test while cycling enough buffers through their caches to flush to
    /// and refill from the ring; a third thread checks the count all along.
    #[test]
    fn available_never_counts_a_buffer_twice() {
        let mut cfg = MempoolConfig::new("count", 2048);
        cfg.cache_size = 64;
        let pool = Mempool::new(cfg, &AnonMemory::new(HugePages::Never)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let ready = Arc::new(std::sync::Barrier::new(3));
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (pool, stop, ready) = (pool.clone(), stop.clone(), ready.clone());
                std::thread::spawn(move || {
                    let mut kept = Burst::new(8);
                    assert!(pool.alloc_bulk(&mut kept, 8));
                    ready.wait();
                    let mut b = Burst::new(256);
                    while !stop.load(Ordering::Relaxed) {
                        // 256 out, then back: the cache flushes and refills.
                        for _ in 0..8 {
                            assert!(pool.alloc_bulk(&mut b, 32));
                        }
                        b.clear();
                    }
                    drop(kept);
                })
            })
            .collect();
        ready.wait();
        let t0 = std::time::Instant::now();
        let mut checks = 0u64;
        while t0.elapsed() < std::time::Duration::from_secs(2) {
            let a = pool.available();
            assert!(
                a <= 2048 - 16,
                "counted {a} free with 16 held: a buffer counted twice"
            );
            checks += 1;
        }
        stop.store(true, Ordering::Relaxed);
        workers.into_iter().for_each(|w| w.join().unwrap());
        assert!(checks > 1000);
        assert_eq!(pool.available(), 2048);
    }
}

/// Whether a device can read `len` bytes at an IOVA (its IOMMU domain maps
/// them): what a transmit path asks before it hands a packet's address to
/// the device.
pub type DmaCheck = Box<dyn Fn(Iova, u64) -> bool + Send + Sync>;

/// A transmit queue's answer to "can the device reach this packet's
/// buffer?", asked of its [`DmaCheck`] once per pool the queue sees in a
/// row, not per packet (pools are one region each:
/// [`crate::Mbuf::pool_iova_range`]).
/// Without a check (plain-memory tests) every pool is reachable.
#[derive(Default)]
pub struct PoolReach {
    check: Option<DmaCheck>,
    last_pool: usize,
    last_ok: bool,
}

impl PoolReach {
    /// Reachability judged by `check`.
    pub fn new(check: DmaCheck) -> PoolReach {
        PoolReach {
            check: Some(check),
            last_pool: 0,
            last_ok: true,
        }
    }

    /// Whether the device can read `m`'s buffer.
    #[inline(always)]
    pub fn reachable(&mut self, m: &crate::Mbuf) -> bool {
        let pool = m.pool_id();
        if pool != self.last_pool {
            let (iova, len) = m.pool_iova_range();
            self.last_ok = self.check.as_ref().map_or(true, |f| f(iova, len as u64));
            self.last_pool = pool;
        }
        self.last_ok
    }
}

impl std::fmt::Debug for PoolReach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolReach")
            .field("checked", &self.check.is_some())
            .field("last_ok", &self.last_ok)
            .finish()
    }
}
