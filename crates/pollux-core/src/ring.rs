//! Bounded lock-free rings with the semantics of DPDK's `rte_ring`.
//!
//! The algorithm is the classic one: producers and consumers each have a
//! `head` (claimed) and a `tail` (published) index that run freely and wrap
//! with the integer type. A producer claims slots by moving `prod.head`
//! (a plain store when it is the only producer, a compare-and-swap when it
//! is one of many), writes them, waits until earlier producers have
//! published, and publishes by moving `prod.tail`. Consumers mirror this.
//!
//! - *bulk* operations move all the items asked for or none;
//! - *burst* operations move as many as fit or are there.
//!
//! [`Ring`] is the multi-producer/multi-consumer form, usable through `&self`
//! from any thread (the mempool's free list). [`channel`] splits a ring into a
//! [`Producer`] and a [`Consumer`] whose single/multi mode is chosen at
//! creation: a single-mode handle cannot be cloned, so the cheaper
//! single-thread path is only ever taken by one thread.
//!
//! Why not `crossbeam::queue::ArrayQueue`: it moves one item per atomic
//! operation and has no bulk or burst form; a packet ring moves 32 at a time
//! for the cost of one.

use std::cell::UnsafeCell;
use std::fmt;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;

use crate::Burst;

/// Whether one thread or many use a side of a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Exactly one thread at a time.
    Single,
    /// Any number of threads at once.
    Multi,
}

/// Largest capacity a ring accepts.
pub const MAX_CAPACITY: usize = 1 << 28;

/// The ring could not be created.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("ring capacity must be between 1 and {MAX_CAPACITY}, got {0}")]
pub struct CapacityError(pub usize);

#[derive(Default)]
struct HeadTail {
    head: AtomicUsize,
    tail: AtomicUsize,
}

/// A bounded multi-producer, multi-consumer ring.
pub struct Ring<T> {
    prod: CachePadded<HeadTail>,
    cons: CachePadded<HeadTail>,
    capacity: usize,
    mask: usize,
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
}

// SAFETY: items move between threads through the ring, so T must be Send;
// each slot is accessed by one thread at a time, handed over by the
// release/acquire pairs on the tail indices.
unsafe impl<T: Send> Send for Ring<T> {}
// SAFETY: as above; `&Ring` only allows the synchronised operations.
unsafe impl<T: Send> std::marker::Sync for Ring<T> {}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Amount {
    Exact,
    UpTo,
}

impl<T> Ring<T> {
    /// A ring that holds exactly `capacity` items.
    pub fn new(capacity: usize) -> Result<Ring<T>, CapacityError> {
        if capacity == 0 || capacity > MAX_CAPACITY {
            return Err(CapacityError(capacity));
        }
        let size = capacity.next_power_of_two();
        let slots = (0..size)
            .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
            .collect();
        Ok(Ring {
            prod: CachePadded::new(HeadTail::default()),
            cons: CachePadded::new(HeadTail::default()),
            capacity,
            mask: size - 1,
            slots,
        })
    }

    /// Maximum number of items.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Items currently published and not yet consumed (a snapshot).
    pub fn len(&self) -> usize {
        // Producer's tail first: a consumer that moves on between the two
        // loads makes the count smaller, never larger (a stale consumer
        // tail read first would count entries already taken). The
        // consumer's tail can then be ahead of the producer's we read:
        // that is an empty ring, not a wrapped one.
        let prod = self.prod.tail.load(Ordering::Acquire);
        let cons = self.cons.tail.load(Ordering::Acquire);
        let n = prod.wrapping_sub(cons);
        if n > self.capacity {
            0
        } else {
            n
        }
    }

    /// True when [`Ring::len`] is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Free room (a snapshot).
    pub fn free(&self) -> usize {
        self.capacity - self.len()
    }

    #[inline(always)]
    fn slot(&self, index: usize) -> *mut T {
        // SAFETY: slots.len() == mask + 1, so `index & mask` is in bounds;
        // skipping the bounds check keeps the copy loops branch-free.
        unsafe { self.slots.get_unchecked(index & self.mask).get().cast() }
    }

    /// Claims up to `n` slots for writing; returns the first index and count.
    #[inline]
    fn prod_claim(&self, n: usize, amount: Amount, mode: Mode) -> (usize, usize) {
        let mut head = self.prod.head.load(Ordering::Relaxed);
        loop {
            // Acquire: the consumer's reads of the slots we are about to
            // overwrite happen before our writes.
            let cons_tail = self.cons.tail.load(Ordering::Acquire);
            let free = free_entries(self.capacity, head, cons_tail);
            let n = if n <= free {
                n
            } else if amount == Amount::UpTo {
                free
            } else {
                0
            };
            if n == 0 {
                return (head, 0);
            }
            let new_head = head.wrapping_add(n);
            match mode {
                Mode::Single => {
                    self.prod.head.store(new_head, Ordering::Relaxed);
                    return (head, n);
                }
                Mode::Multi => match self.prod.head.compare_exchange_weak(
                    head,
                    new_head,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return (head, n),
                    Err(actual) => head = actual,
                },
            }
        }
    }

    #[inline]
    fn prod_publish(&self, head: usize, n: usize, mode: Mode) {
        if mode == Mode::Multi {
            // Earlier producers publish first, so the tail only ever covers
            // written slots.
            while self.prod.tail.load(Ordering::Relaxed) != head {
                std::hint::spin_loop();
            }
        }
        // Release: our slot writes happen before a consumer that sees the
        // new tail reads them.
        self.prod
            .tail
            .store(head.wrapping_add(n), Ordering::Release);
    }

    #[inline]
    fn cons_claim(&self, n: usize, amount: Amount, mode: Mode) -> (usize, usize) {
        let mut head = self.cons.head.load(Ordering::Relaxed);
        loop {
            // Acquire: the producer's slot writes happen before our reads.
            let prod_tail = self.prod.tail.load(Ordering::Acquire);
            let avail = prod_tail.wrapping_sub(head);
            let n = if n <= avail {
                n
            } else if amount == Amount::UpTo {
                avail
            } else {
                0
            };
            if n == 0 {
                return (head, 0);
            }
            let new_head = head.wrapping_add(n);
            match mode {
                Mode::Single => {
                    self.cons.head.store(new_head, Ordering::Relaxed);
                    return (head, n);
                }
                Mode::Multi => match self.cons.head.compare_exchange_weak(
                    head,
                    new_head,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return (head, n),
                    Err(actual) => head = actual,
                },
            }
        }
    }

    #[inline]
    fn cons_publish(&self, head: usize, n: usize, mode: Mode) {
        if mode == Mode::Multi {
            while self.cons.tail.load(Ordering::Relaxed) != head {
                std::hint::spin_loop();
            }
        }
        // Release: our slot reads happen before a producer that sees the
        // new tail overwrites them.
        self.cons
            .tail
            .store(head.wrapping_add(n), Ordering::Release);
    }

    /// Moves items from the front of `src` into the ring.
    ///
    /// # Safety
    /// With `mode == Single`, no other thread may enqueue concurrently.
    #[inline]
    unsafe fn enqueue_from(&self, src: &mut Burst<T>, amount: Amount, mode: Mode) -> usize {
        let (head, n) = self.prod_claim(src.len(), amount, mode);
        if n == 0 {
            return 0;
        }
        let from = src.front_ptr();
        for i in 0..n {
            // SAFETY: slots head..head+n are claimed by us and hold no live
            // item (consumers published past them); src's first n items are
            // initialised and are moved out exactly once (consume_front below).
            unsafe { self.slot(head.wrapping_add(i)).write(from.add(i).read()) };
        }
        // SAFETY: the first n items were moved out above.
        unsafe { src.consume_front(n) };
        self.prod_publish(head, n, mode);
        n
    }

    /// Moves up to `n` items into the back of `dst`.
    ///
    /// # Safety
    /// With `mode == Single`, no other thread may dequeue concurrently.
    #[inline]
    unsafe fn dequeue_into(
        &self,
        dst: &mut Burst<T>,
        n: usize,
        amount: Amount,
        mode: Mode,
    ) -> usize {
        let n = if amount == Amount::Exact && n > dst.spare() {
            return 0;
        } else {
            n.min(dst.spare())
        };
        let (head, n) = self.cons_claim(n, amount, mode);
        if n == 0 {
            return 0;
        }
        let to = dst.back_ptr();
        for i in 0..n {
            // SAFETY: slots head..head+n were published by producers and are
            // claimed by us; each item is moved out once. `to` has room for
            // spare() >= n items.
            unsafe { to.add(i).write(self.slot(head.wrapping_add(i)).read()) };
        }
        // SAFETY: n items were written at the back with no call in between.
        unsafe { dst.commit_back(n) };
        self.cons_publish(head, n, mode);
        n
    }

    /// Enqueues one item, or gives it back when the ring is full.
    pub fn enqueue(&self, item: T) -> Result<(), T> {
        let (head, n) = self.prod_claim(1, Amount::Exact, Mode::Multi);
        if n == 0 {
            return Err(item);
        }
        // SAFETY: the slot is claimed by us and empty.
        unsafe { self.slot(head).write(item) };
        self.prod_publish(head, 1, Mode::Multi);
        Ok(())
    }

    /// Dequeues one item.
    pub fn dequeue(&self) -> Option<T> {
        let (head, n) = self.cons_claim(1, Amount::Exact, Mode::Multi);
        if n == 0 {
            return None;
        }
        // SAFETY: the slot was published by a producer and is claimed by us.
        let item = unsafe { self.slot(head).read() };
        self.cons_publish(head, 1, Mode::Multi);
        Some(item)
    }

    /// Moves all of `src` into the ring, or nothing. Returns the count moved.
    pub fn enqueue_bulk(&self, src: &mut Burst<T>) -> usize {
        // SAFETY: Multi mode is safe from any number of threads.
        unsafe { self.enqueue_from(src, Amount::Exact, Mode::Multi) }
    }

    /// Moves as much of `src` (from the front) as fits. Returns the count.
    pub fn enqueue_burst(&self, src: &mut Burst<T>) -> usize {
        // SAFETY: Multi mode is safe from any number of threads.
        unsafe { self.enqueue_from(src, Amount::UpTo, Mode::Multi) }
    }

    /// Moves exactly `n` items into `dst`, or nothing.
    pub fn dequeue_bulk(&self, dst: &mut Burst<T>, n: usize) -> usize {
        // SAFETY: Multi mode is safe from any number of threads.
        unsafe { self.dequeue_into(dst, n, Amount::Exact, Mode::Multi) }
    }

    /// Moves up to `n` items into `dst` (bounded by its spare room).
    pub fn dequeue_burst(&self, dst: &mut Burst<T>, n: usize) -> usize {
        // SAFETY: Multi mode is safe from any number of threads.
        unsafe { self.dequeue_into(dst, n, Amount::UpTo, Mode::Multi) }
    }
}

impl<T: Copy> Ring<T> {
    /// Copies all of `src` into the ring, or nothing.
    #[inline]
    pub fn enqueue_bulk_copy(&self, src: &[T]) -> bool {
        let (head, n) = self.prod_claim(src.len(), Amount::Exact, Mode::Multi);
        if n == 0 {
            return src.is_empty();
        }
        for (i, item) in src.iter().enumerate() {
            // SAFETY: the slot is claimed by us and empty.
            unsafe { self.slot(head.wrapping_add(i)).write(*item) };
        }
        self.prod_publish(head, n, Mode::Multi);
        true
    }

    /// Fills all of `dst` from the ring, or nothing.
    #[inline]
    pub fn dequeue_bulk_copy(&self, dst: &mut [T]) -> bool {
        let (head, n) = self.cons_claim(dst.len(), Amount::Exact, Mode::Multi);
        if n == 0 {
            return dst.is_empty();
        }
        for (i, item) in dst.iter_mut().enumerate() {
            // SAFETY: the slot was published and is claimed by us.
            *item = unsafe { self.slot(head.wrapping_add(i)).read() };
        }
        self.cons_publish(head, n, Mode::Multi);
        true
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        if !std::mem::needs_drop::<T>() {
            return;
        }
        let cons = *self.cons.tail.get_mut();
        let prod = *self.prod.tail.get_mut();
        let mut i = cons;
        while i != prod {
            // SAFETY: with `&mut self` no operation is in flight; slots
            // between the consumer and producer tails hold live items.
            unsafe { self.slot(i).drop_in_place() };
            i = i.wrapping_add(1);
        }
    }
}

impl<T> fmt::Debug for Ring<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish()
    }
}

/// Creates a ring and returns its two ends.
///
/// A [`Mode::Single`] end takes the cheaper path with no compare-and-swap
/// and cannot be cloned; a [`Mode::Multi`] end can be cloned to other
/// threads.
pub fn channel<T>(
    capacity: usize,
    producers: Mode,
    consumers: Mode,
) -> Result<(Producer<T>, Consumer<T>), CapacityError> {
    let ring = Arc::new(Ring::new(capacity)?);
    Ok((
        Producer {
            ring: ring.clone(),
            mode: producers,
        },
        Consumer {
            ring,
            mode: consumers,
        },
    ))
}

/// The enqueue end of a [`channel`].
pub struct Producer<T> {
    ring: Arc<Ring<T>>,
    mode: Mode,
}

/// The dequeue end of a [`channel`].
pub struct Consumer<T> {
    ring: Arc<Ring<T>>,
    mode: Mode,
}

impl<T> Producer<T> {
    /// Another handle, for multi-producer rings only.
    pub fn try_clone(&self) -> Option<Producer<T>> {
        (self.mode == Mode::Multi).then(|| Producer {
            ring: self.ring.clone(),
            mode: Mode::Multi,
        })
    }

    /// The ring behind this end.
    pub fn ring(&self) -> &Ring<T> {
        &self.ring
    }

    /// Moves all of `src` or nothing.
    #[inline]
    pub fn enqueue_bulk(&mut self, src: &mut Burst<T>) -> usize {
        // SAFETY: a Single-mode producer is not cloneable and enqueues take
        // `&mut self`, so only one thread enqueues.
        unsafe { self.ring.enqueue_from(src, Amount::Exact, self.mode) }
    }

    /// Moves as many items of `src` as fit.
    #[inline]
    pub fn enqueue_burst(&mut self, src: &mut Burst<T>) -> usize {
        // SAFETY: as in `enqueue_bulk`.
        unsafe { self.ring.enqueue_from(src, Amount::UpTo, self.mode) }
    }

    /// Enqueues one item.
    pub fn enqueue(&mut self, item: T) -> Result<(), T> {
        let (head, n) = self.ring.prod_claim(1, Amount::Exact, self.mode);
        if n == 0 {
            return Err(item);
        }
        // SAFETY: the slot is claimed by us and empty.
        unsafe { self.ring.slot(head).write(item) };
        self.ring.prod_publish(head, 1, self.mode);
        Ok(())
    }
}

impl<T> Consumer<T> {
    /// Another handle, for multi-consumer rings only.
    pub fn try_clone(&self) -> Option<Consumer<T>> {
        (self.mode == Mode::Multi).then(|| Consumer {
            ring: self.ring.clone(),
            mode: Mode::Multi,
        })
    }

    /// The ring behind this end.
    pub fn ring(&self) -> &Ring<T> {
        &self.ring
    }

    /// Moves exactly `n` items into `dst`, or none.
    #[inline]
    pub fn dequeue_bulk(&mut self, dst: &mut Burst<T>, n: usize) -> usize {
        // SAFETY: a Single-mode consumer is not cloneable and dequeues take
        // `&mut self`, so only one thread dequeues.
        unsafe { self.ring.dequeue_into(dst, n, Amount::Exact, self.mode) }
    }

    /// Moves up to `n` items into `dst`.
    #[inline]
    pub fn dequeue_burst(&mut self, dst: &mut Burst<T>, n: usize) -> usize {
        // SAFETY: as in `dequeue_bulk`.
        unsafe { self.ring.dequeue_into(dst, n, Amount::UpTo, self.mode) }
    }

    /// Dequeues one item.
    pub fn dequeue(&mut self) -> Option<T> {
        let (head, n) = self.ring.cons_claim(1, Amount::Exact, self.mode);
        if n == 0 {
            return None;
        }
        // SAFETY: the slot was published and is claimed by us.
        let item = unsafe { self.ring.slot(head).read() };
        self.ring.cons_publish(head, 1, self.mode);
        Some(item)
    }
}

impl<T> fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("mode", &self.mode)
            .field("ring", &self.ring)
            .finish()
    }
}

impl<T> fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("mode", &self.mode)
            .field("ring", &self.ring)
            .finish()
    }
}

/// Free slots for a producer whose head is `head`, as rte_ring computes
/// them (`capacity + cons_tail - head`, modular). A multi-producer head
/// loaded before `cons_tail` may be stale, with the consumer already past
/// it: the result is then larger than the capacity, the claim's
/// compare-and-swap fails on the stale head and the loop retries. Plain
/// subtraction would overflow there (a panic in debug builds).
#[inline(always)]
fn free_entries(capacity: usize, head: usize, cons_tail: usize) -> usize {
    capacity.wrapping_add(cons_tail).wrapping_sub(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_exact_and_bulk_is_all_or_nothing() {
        let r: Ring<u32> = Ring::new(5).unwrap();
        let mut b = Burst::new(8);
        b.extend(0..4);
        assert_eq!(r.enqueue_bulk(&mut b), 4);
        b.extend(4..6);
        assert_eq!(r.enqueue_bulk(&mut b), 0, "2 do not fit in 1");
        assert_eq!(b.len(), 2);
        assert_eq!(r.enqueue_burst(&mut b), 1);
        assert_eq!(b.as_slice(), &[5]);
        assert_eq!(r.len(), 5);
        let mut out = Burst::new(8);
        assert_eq!(r.dequeue_bulk(&mut out, 6), 0);
        assert_eq!(r.dequeue_burst(&mut out, 6), 5);
        assert_eq!(out.as_slice(), &[0, 1, 2, 3, 4]);
        assert!(r.is_empty());
    }

    #[test]
    fn bad_capacity_is_an_error() {
        assert_eq!(Ring::<u8>::new(0).unwrap_err(), CapacityError(0));
        assert!(Ring::<u8>::new(MAX_CAPACITY + 1).is_err());
    }

    #[test]
    fn single_ends_cannot_be_cloned() {
        let (p, c) = channel::<u8>(4, Mode::Single, Mode::Multi).unwrap();
        assert!(p.try_clone().is_none());
        assert!(c.try_clone().is_some());
    }

    #[test]
    fn dropping_a_ring_drops_its_items() {
        let token = std::sync::Arc::new(());
        {
            let r = Ring::new(4).unwrap();
            r.enqueue(token.clone()).unwrap();
            r.enqueue(token.clone()).unwrap();
            drop(r.dequeue());
            assert_eq!(std::sync::Arc::strong_count(&token), 2);
        }
        assert_eq!(std::sync::Arc::strong_count(&token), 1);
    }

    #[test]
    fn indices_wrap() {
        let r: Ring<usize> = Ring::new(3).unwrap();
        for i in 0..10_000usize {
            r.enqueue(i).unwrap();
            assert_eq!(r.dequeue(), Some(i));
        }
    }

    /// Hammers a ring from two (or four) threads and checks that every item
    /// arrives exactly once: the sum and xor of everything sent and received
    /// must match, and per producer the order is kept.
    fn hammer(prod: Mode, cons: Mode, producers: usize, consumers: usize) {
        const PER_PRODUCER: usize = 200_000;
        let (p, c) = channel::<u64>(64, prod, cons).unwrap();
        let mut threads = Vec::new();
        let mut p = Some(p);
        for id in 0..producers {
            let mut p = if id + 1 == producers {
                p.take().unwrap()
            } else {
                p.as_ref().unwrap().try_clone().unwrap()
            };
            threads.push(std::thread::spawn(move || {
                let mut b = Burst::new(32);
                let mut next = 0usize;
                while next < PER_PRODUCER || !b.is_empty() {
                    while !b.is_full() && next < PER_PRODUCER {
                        b.push(((id as u64) << 32) | next as u64).unwrap();
                        next += 1;
                    }
                    if p.enqueue_burst(&mut b) == 0 {
                        std::thread::yield_now();
                    }
                }
                (0u64, 0u64, 0usize)
            }));
        }
        let total = producers * PER_PRODUCER;
        let received = std::sync::Arc::new(AtomicUsize::new(0));
        let mut c = Some(c);
        for id in 0..consumers {
            let mut c = if id + 1 == consumers {
                c.take().unwrap()
            } else {
                c.as_ref().unwrap().try_clone().unwrap()
            };
            let received = received.clone();
            threads.push(std::thread::spawn(move || {
                let mut sum = 0u64;
                let mut xor = 0u64;
                let mut last = vec![None::<u64>; producers];
                let mut b = Burst::new(32);
                let mut mine = 0;
                while received.load(Ordering::Relaxed) < total {
                    let n = c.dequeue_burst(&mut b, 32);
                    if n == 0 {
                        std::thread::yield_now();
                        continue;
                    }
                    received.fetch_add(n, Ordering::Relaxed);
                    for v in b.drain() {
                        sum = sum.wrapping_add(v);
                        xor ^= v.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                        let (pid, seq) = ((v >> 32) as usize, v & 0xffff_ffff);
                        if consumers == 1 {
                            assert!(last[pid].map_or(true, |l| seq == l + 1), "order broken");
                            last[pid] = Some(seq);
                        }
                        mine += 1;
                    }
                }
                (sum, xor, mine)
            }));
        }
        let (mut sum, mut xor, mut count) = (0u64, 0u64, 0usize);
        for t in threads {
            let (s, x, n) = t.join().unwrap();
            sum = sum.wrapping_add(s);
            xor ^= x;
            count += n;
        }
        let (mut esum, mut exor) = (0u64, 0u64);
        for id in 0..producers {
            for i in 0..PER_PRODUCER {
                let v = ((id as u64) << 32) | i as u64;
                esum = esum.wrapping_add(v);
                exor ^= v.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            }
        }
        assert_eq!(count, total);
        assert_eq!(sum, esum);
        assert_eq!(xor, exor);
    }

    #[test]
    fn hammer_spsc() {
        hammer(Mode::Single, Mode::Single, 1, 1);
    }

    #[test]
    fn hammer_mpmc() {
        hammer(Mode::Multi, Mode::Multi, 2, 2);
    }

    #[test]
    fn hammer_mpsc() {
        hammer(Mode::Multi, Mode::Single, 3, 1);
    }

    proptest::proptest! {
        #[test]
        fn matches_a_bounded_queue(ops in proptest::collection::vec((0u8..4, 0usize..10), 0..100)) {
            let r: Ring<u32> = Ring::new(7).unwrap();
            let mut model = std::collections::VecDeque::new();
            let mut next = 0u32;
            for (op, n) in ops {
                let mut b = Burst::new(16);
                match op {
                    0 | 1 => {
                        b.extend((0..n as u32).map(|i| next + i));
                        let moved = if op == 0 { r.enqueue_bulk(&mut b) } else { r.enqueue_burst(&mut b) };
                        let room = 7 - model.len();
                        let expect = if op == 0 { if n <= room { n } else { 0 } } else { n.min(room) };
                        proptest::prop_assert_eq!(moved, expect);
                        for i in 0..moved as u32 { model.push_back(next + i); }
                        next += n as u32;
                    }
                    _ => {
                        let moved = if op == 2 { r.dequeue_bulk(&mut b, n) } else { r.dequeue_burst(&mut b, n) };
                        let expect = if op == 2 { if n <= model.len() { n } else { 0 } } else { n.min(model.len()) };
                        proptest::prop_assert_eq!(moved, expect);
                        for v in b.drain() { proptest::prop_assert_eq!(Some(v), model.pop_front()); }
                    }
                }
                proptest::prop_assert_eq!(r.len(), model.len());
            }
        }
    }

    #[test]
    fn a_stale_producer_head_does_not_overflow() {
        // The consumer tail (103) is past a stale head (100) of a
        // capacity-8 ring: 11 "free", and the CAS on the stale head fails.
        assert_eq!(free_entries(8, 100, 103), 11);
        assert_eq!(free_entries(8, 103, 100), 5);
        // Across the wrap of the indices.
        assert_eq!(free_entries(8, usize::MAX, 2), 11);
        assert_eq!(free_entries(8, 1, usize::MAX - 1), 5);
    }
}
