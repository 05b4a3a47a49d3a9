//! [`Burst`]: the packet vector of `rx_burst` and `tx_burst`.
//!
//! A fixed-capacity queue: receive appends at the back, transmit takes from
//! the front, and whatever a port could not send stays in the burst, still
//! owned by the caller (DPDK's "unsent mbufs remain the caller's" contract,
//! expressed with ownership instead of an array and a count).

use std::fmt;
use std::mem::MaybeUninit;
use std::ptr;

use crate::Mbuf;

/// A fixed-capacity FIFO of owned items, [`Mbuf`]s by default.
///
/// Invariant: `slots[head..tail]` are initialised, everything else is not.
pub struct Burst<T = Mbuf> {
    slots: Box<[MaybeUninit<T>]>,
    head: usize,
    tail: usize,
}

impl<T> Burst<T> {
    /// An empty burst that holds at most `capacity` items.
    pub fn new(capacity: usize) -> Burst<T> {
        let mut v = Vec::with_capacity(capacity);
        v.resize_with(capacity, MaybeUninit::uninit);
        Burst {
            slots: v.into_boxed_slice(),
            head: 0,
            tail: 0,
        }
    }

    /// Number of items held.
    #[inline]
    pub fn len(&self) -> usize {
        self.tail - self.head
    }

    /// True when no item is held.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.tail == self.head
    }

    /// Maximum number of items.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// How many more items fit.
    #[inline]
    pub fn spare(&self) -> usize {
        self.capacity() - self.len()
    }

    /// True when no more items fit.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.len() == self.capacity()
    }

    /// Appends an item, or gives it back when the burst is full.
    #[inline]
    pub fn push(&mut self, item: T) -> Result<(), T> {
        if self.tail == self.slots.len() {
            if self.head == 0 {
                return Err(item);
            }
            self.compact();
        }
        self.slots[self.tail].write(item);
        self.tail += 1;
        Ok(())
    }

    /// Removes the first item.
    #[inline]
    pub fn pop_front(&mut self) -> Option<T> {
        if self.head == self.tail {
            return None;
        }
        // SAFETY: slots[head] is initialised (head < tail) and is logically
        // removed by the increment below, so it is read exactly once.
        let item = unsafe { self.slots[self.head].assume_init_read() };
        self.head += 1;
        if self.head == self.tail {
            self.head = 0;
            self.tail = 0;
        }
        Some(item)
    }

    /// Puts an item back at the front (a driver that took a packet and then
    /// found its ring full). Gives it back when there is no room.
    #[inline]
    pub fn push_front(&mut self, item: T) -> Result<(), T> {
        if self.head == 0 {
            if self.tail == self.slots.len() {
                return Err(item);
            }
            // Move everything one place up to open slot 0.
            // SAFETY: slots[0..tail] initialised, tail + 1 <= capacity; the
            // regions may overlap, which `copy` allows.
            unsafe {
                let p = self.slots.as_mut_ptr();
                ptr::copy(p, p.add(1), self.tail);
            }
            self.tail += 1;
        } else {
            self.head -= 1;
        }
        self.slots[self.head].write(item);
        Ok(())
    }

    /// The items, front first.
    #[inline]
    pub fn as_slice(&self) -> &[T] {
        // SAFETY: slots[head..tail] are initialised; MaybeUninit<T> has T's layout.
        unsafe {
            std::slice::from_raw_parts(self.slots.as_ptr().add(self.head) as *const T, self.len())
        }
    }

    /// The items, front first, mutably.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        let len = self.len();
        // SAFETY: as in `as_slice`, and `&mut self` gives exclusive access.
        unsafe {
            std::slice::from_raw_parts_mut(self.slots.as_mut_ptr().add(self.head) as *mut T, len)
        }
    }

    /// Iterates over the items, front first.
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.as_slice().iter()
    }

    /// Iterates mutably over the items, front first.
    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, T> {
        self.as_mut_slice().iter_mut()
    }

    /// Drops every item.
    pub fn clear(&mut self) {
        let (head, tail) = (self.head, self.tail);
        // Reset first: a panicking destructor leaves an empty burst, leaking
        // the rest instead of dropping anything twice.
        self.head = 0;
        self.tail = 0;
        for slot in &mut self.slots[head..tail] {
            // SAFETY: slots[head..tail] were initialised and are no longer
            // reachable through head/tail.
            unsafe { slot.assume_init_drop() };
        }
    }

    /// Drops the items from position `keep` on.
    pub fn truncate(&mut self, keep: usize) {
        if keep >= self.len() {
            return;
        }
        let old_tail = self.tail;
        self.tail = self.head + keep;
        for slot in &mut self.slots[self.tail..old_tail] {
            // SAFETY: these slots were initialised and are now outside head..tail.
            unsafe { slot.assume_init_drop() };
        }
    }

    /// Removes and yields the items front first, until the iterator is
    /// dropped; items not yet yielded stay in the burst.
    pub fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(move || self.pop_front())
    }

    /// Appends up to `n` items made by `f`, stopping early when it returns
    /// `None` or the burst is full. Returns how many were appended.
    #[inline]
    pub fn fill_with(&mut self, n: usize, mut f: impl FnMut() -> Option<T>) -> usize {
        let n = n.min(self.spare());
        self.make_tail_room();
        let mut done = 0;
        while done < n {
            match f() {
                Some(item) => {
                    self.slots[self.tail].write(item);
                    self.tail += 1;
                    done += 1;
                }
                None => break,
            }
        }
        done
    }

    /// Moves the items to the start so all spare room is at the back.
    #[inline]
    fn make_tail_room(&mut self) {
        if self.head != 0 {
            self.compact();
        }
    }

    #[cold]
    fn compact(&mut self) {
        let len = self.len();
        // SAFETY: moves the initialised range head..tail to 0..len; the
        // ranges may overlap, which `copy` allows; afterwards 0..len is the
        // initialised range.
        unsafe {
            let p = self.slots.as_mut_ptr();
            ptr::copy(p.add(self.head), p, len);
        }
        self.head = 0;
        self.tail = len;
    }

    /// For rings and drivers: the first `n <= len()` items as raw pointers,
    /// to be moved out with `ptr::read`, after which the caller must call
    /// [`Burst::consume_front`] with the number moved.
    #[inline]
    pub(crate) fn front_ptr(&self) -> *const T {
        // SAFETY: head <= capacity, so the pointer is in bounds or one past.
        unsafe { self.slots.as_ptr().add(self.head) as *const T }
    }

    /// Forgets the first `n` items, which the caller has moved out.
    ///
    /// # Safety
    /// `n <= len()`, and the first `n` items were moved out with `ptr::read`.
    #[inline]
    pub(crate) unsafe fn consume_front(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.head += n;
        if self.head == self.tail {
            self.head = 0;
            self.tail = 0;
        }
    }

    /// Room at the back for `spare()` items, as a raw pointer; fill with
    /// `ptr::write` and then call [`Burst::commit_back`].
    #[inline]
    pub(crate) fn back_ptr(&mut self) -> *mut T {
        self.make_tail_room();
        // SAFETY: tail <= capacity, so the pointer is in bounds or one past.
        unsafe { self.slots.as_mut_ptr().add(self.tail) as *mut T }
    }

    /// Marks `n` more items at the back as initialised.
    ///
    /// # Safety
    /// `n <= spare()`, and the `n` slots after the old back were written
    /// through the pointer of [`Burst::back_ptr`] with no call in between.
    #[inline]
    pub(crate) unsafe fn commit_back(&mut self, n: usize) {
        debug_assert!(self.tail + n <= self.capacity());
        self.tail += n;
    }
}

impl<T> Drop for Burst<T> {
    fn drop(&mut self) {
        self.clear();
    }
}

impl<T: fmt::Debug> fmt::Debug for Burst<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T> Extend<T> for Burst<T> {
    /// Appends until the burst is full; further items are dropped.
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        for item in iter {
            if self.push(item).is_err() {
                break;
            }
        }
    }
}

// SAFETY: a Burst owns its items like a Vec does.
unsafe impl<T: Send> Send for Burst<T> {}
// SAFETY: shared access only hands out `&T`.
unsafe impl<T: Sync> Sync for Burst<T> {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn fifo_with_push_front() {
        let mut b: Burst<u32> = Burst::new(3);
        assert!(b.push(1).is_ok() && b.push(2).is_ok() && b.push(3).is_ok());
        assert_eq!(b.push(4), Err(4));
        assert_eq!(b.pop_front(), Some(1));
        b.push_front(9).unwrap();
        assert_eq!(b.as_slice(), &[9, 2, 3]);
        assert_eq!(b.pop_front(), Some(9));
        b.push(5).unwrap(); // compacts
        assert_eq!(b.as_slice(), &[2, 3, 5]);
        assert_eq!(b.drain().collect::<Vec<_>>(), vec![2, 3, 5]);
        assert!(b.is_empty());
    }

    #[test]
    fn push_front_into_unpopped_burst_shifts() {
        let mut b: Burst<u8> = Burst::new(3);
        b.push(1).unwrap();
        b.push(2).unwrap();
        b.push_front(0).unwrap();
        assert_eq!(b.as_slice(), &[0, 1, 2]);
        assert_eq!(b.push_front(7), Err(7));
    }

    #[test]
    fn every_item_is_dropped_exactly_once() {
        let token = Rc::new(());
        {
            let mut b = Burst::new(8);
            for _ in 0..8 {
                b.push(token.clone()).unwrap();
            }
            drop(b.pop_front());
            b.truncate(5);
            assert_eq!(Rc::strong_count(&token), 6);
            let n = b.fill_with(10, || Some(token.clone()));
            assert_eq!(n, 3);
            assert_eq!(Rc::strong_count(&token), 9);
        }
        assert_eq!(Rc::strong_count(&token), 1);
    }

    proptest::proptest! {
        #[test]
        fn behaves_like_a_bounded_vecdeque(ops in proptest::collection::vec(0u8..4, 0..200)) {
            let mut b: Burst<u32> = Burst::new(16);
            let mut model = std::collections::VecDeque::new();
            for (i, op) in ops.into_iter().enumerate() {
                let i = i as u32;
                match op {
                    0 => { let r = b.push(i); if model.len() < 16 { model.push_back(i); proptest::prop_assert!(r.is_ok()) } else { proptest::prop_assert_eq!(r, Err(i)) } }
                    1 => proptest::prop_assert_eq!(b.pop_front(), model.pop_front()),
                    2 => { let r = b.push_front(i); if model.len() < 16 { model.push_front(i); proptest::prop_assert!(r.is_ok()) } else { proptest::prop_assert_eq!(r, Err(i)) } }
                    _ => { let n = b.fill_with(3, || Some(i)); for _ in 0..n { model.push_back(i) } }
                }
                let expect: Vec<u32> = model.iter().copied().collect();
                proptest::prop_assert_eq!(b.as_slice(), expect.as_slice());
            }
        }
    }
}
